//! The built-in guests (`hello`, `hypercalls`), run through the library
//! and through the kvmini binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::{by_hypercall, kvm_or_skip, run_image, FILES_STDOUT, HYPERCALLS_STDOUT};
use kvmini::sandbox::{Ending, Image};
use kvmini_abi::Port;

const HELLO_OUTPUT: &str = "Hello, world!\n";

#[test]
fn hello_prints_halts_and_leaves_42_in_rax() {
    let Some(kvm) = kvm_or_skip() else { return };
    let run = run_image(&kvm, Image::Elf(kvmini::guests::HELLO.elf.to_vec()), None);
    assert_eq!(run.stdout_text(), HELLO_OUTPUT);
    assert_eq!(run.warnings_text(), "");
    assert_eq!(run.outcome.ending, Ending::Halted);
    assert_eq!(run.outcome.ending.status(), 0);
    let stats = &run.outcome.stats;
    assert_eq!(stats.exits, 15);
    // At ring 3 `hlt` is privileged, so the guest ends with the halt
    // hypercall: all 15 exits are port I/O.
    assert_eq!((stats.io_exits, stats.hlt_exits), (15, 0));
    assert_eq!(
        stats.by_hypercall,
        by_hypercall(&[(Port::Console, 14), (Port::Halt, 1)])
    );
    assert_eq!(run.outcome.regs.rax, 42);
}

#[test]
fn hypercalls_prints_exactly_and_exits_0() {
    let Some(kvm) = kvm_or_skip() else { return };
    let run = run_image(
        &kvm,
        Image::Elf(kvmini::guests::HYPERCALLS.elf.to_vec()),
        None,
    );
    assert_eq!(run.stdout_text(), HYPERCALLS_STDOUT);
    assert_eq!(run.warnings_text(), "");
    assert_eq!(run.outcome.ending, Ending::Exited(0));
    let stats = &run.outcome.stats;
    // display, printVal, display, getNumExits (4), printVal,
    // getNumExits (6), display, getNumExits (8), display (println), exit.
    assert_eq!(stats.exits, 10);
    assert_eq!((stats.io_exits, stats.hlt_exits), (10, 0));
    assert_eq!(
        stats.by_hypercall,
        by_hypercall(&[
            (Port::PrintVal, 2),
            (Port::GetNumExits, 3),
            (Port::Display, 4),
            (Port::Exit, 1),
        ])
    );
}

#[test]
fn files_guest_leaves_its_files_on_the_host() {
    let Some(kvm) = kvm_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let builder = kvmini::sandbox::Sandbox::builder()
        .elf(kvmini::guests::FILES.elf)
        .grant(
            kvmini::grant::GrantSpec::parse(dir.path().to_str().expect("utf-8 temp path"))
                .expect("grant"),
        );
    let done = common::run_config(&kvm, builder);
    assert_eq!(done.stdout_text(), FILES_STDOUT);
    assert_eq!(done.outcome.ending, Ending::Exited(0));
    let notes = std::fs::read_to_string(dir.path().join("notes.txt")).expect("notes.txt");
    assert_eq!(
        notes,
        "kvmini keeps this file on the host.\nline 1\nline 2\nline 3\nline 4\nline 5\n"
    );
    let squares =
        std::fs::read_to_string(dir.path().join("reports/squares.txt")).expect("squares.txt");
    assert_eq!(squares.lines().nth(2), Some("3 squared is 9"));
    assert!(!dir.path().join("squares.txt").exists());
    let batch = std::fs::read_to_string(dir.path().join("batch.txt")).expect("batch.txt");
    assert_eq!(batch, "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\n");
    // Every descriptor the guest opened was closed by the guest itself.
    assert_eq!(
        done.sandbox
            .open_descriptors()
            .expect("the sandbox has its VM"),
        3
    );
}
