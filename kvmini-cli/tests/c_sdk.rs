//! The C SDK (`sdk/c`): its examples and a test guest, built with the
//! documented `cc` command line and run by kvmini.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::path::{Path, PathBuf};

use common::c_build::{cc_guest, repo_root};
use common::{by_hypercall, kvm_or_skip, kvmini, run_image, text, Finished};
use kvmini::cpu::Ring;
use kvmini::sandbox::{Ending, Image};
use kvmini_abi::Port;

/// Builds `source` (relative to the repository root) into `dir` with the
/// SDK's flags plus `extra`, and returns the ELF's path.
fn build(source: &str, extra: &[&str], dir: &Path) -> PathBuf {
    let stem = Path::new(source)
        .file_stem()
        .expect("the source has a name");
    let elf = dir.join(stem).with_extension("elf");
    cc_guest(extra, &elf, source);
    elf
}

fn expected(name: &str) -> String {
    let path = repo_root().join("sdk/c/examples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read(elf: &Path) -> Vec<u8> {
    std::fs::read(elf).expect("the built guest is readable")
}

/// Runs `kvmini run FLAGS ELF` and checks that it prints exactly the
/// example's `expected_file`, nothing on stderr, and exits 0.
#[track_caller]
fn assert_cli_prints(flags: &[&str], elf: &Path, expected_file: &str) {
    let out = kvmini()
        .arg("run")
        .args(flags)
        .arg(elf)
        .output()
        .expect("kvmini runs");
    assert_eq!(text(&out.stdout), expected(expected_file));
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
}

/// Checks a library run of the hello example: 14 console_putc + exit(0),
/// as the example's comment says.
#[track_caller]
fn assert_hello_run(run: &Finished) {
    assert_eq!(run.stdout_text(), "Hello, world!\n");
    assert_eq!(run.outcome.ending, Ending::Exited(0));
    assert_eq!(run.outcome.stats.exits, 15);
    assert_eq!(
        run.outcome.stats.by_hypercall,
        by_hypercall(&[(Port::Console, 14), (Port::Exit, 1)])
    );
}

#[test]
fn hypercalls_example_prints_its_expected_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let elf = build("sdk/c/examples/hypercalls.c", &[], dir.path());
    let Some(kvm) = kvm_or_skip() else { return };

    assert_cli_prints(&[], &elf, "hypercalls.expected");

    // The example's closing comment lists its exits: 12 in all.
    let run = run_image(&kvm, Image::Elf(read(&elf)), None);
    assert_eq!(run.stdout_text(), expected("hypercalls.expected"));
    assert_eq!(run.outcome.ending, Ending::Exited(0));
    let stats = &run.outcome.stats;
    assert_eq!(stats.exits, 12);
    assert_eq!(stats.io_exits, 12);
    assert_eq!(
        stats.by_hypercall,
        by_hypercall(&[
            (Port::Console, 3),
            (Port::PrintVal, 3),
            (Port::GetNumExits, 3),
            (Port::Display, 2),
            (Port::Exit, 1),
        ])
    );
}

#[test]
fn hello_example_prints_its_expected_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let elf = build("sdk/c/examples/hello.c", &[], dir.path());
    let Some(kvm) = kvm_or_skip() else { return };

    assert_cli_prints(&[], &elf, "hello.expected");

    let run = run_image(&kvm, Image::Elf(read(&elf)), None);
    assert_hello_run(&run);
}

#[test]
fn hello_example_runs_at_ring_0() {
    // Without SSE, so that the guest needs nothing that KVM's instruction
    // emulator lacks when ring-0 code is emulated (nested KVM).
    let dir = tempfile::tempdir().expect("temp dir");
    let elf = build(
        "sdk/c/examples/hello.c",
        &["-mgeneral-regs-only"],
        dir.path(),
    );
    let Some(kvm) = kvm_or_skip() else { return };

    assert_cli_prints(&["--ring", "0"], &elf, "hello.expected");

    let run = run_image(&kvm, Image::Elf(read(&elf)), Some(Ring::Zero));
    assert_eq!(run.sandbox.ring(), Ring::Zero);
    assert_hello_run(&run);
}
