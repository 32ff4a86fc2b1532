//! A Linux program's memory calls enforced while it runs (docs/linux.md,
//! "Memory"): `mprotect` to none, read-only and executable, `munmap`,
//! `mmap` with `PROT_EXEC` and `PROT_NONE`, hole reuse, `mremap`, each
//! compared with the same musl program run natively (output and status);
//! `MAP_FIXED` refused over the stub and kvmini's area; and a reused
//! sandbox whose program made a page `PROT_NONE` starts its next run with
//! the first run's permissions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::linux_build::musl;
use common::{kvm_or_skip, run_config};
use kvmini::arch::x86_64::live_tables::LiveTables;
use kvmini::arch::x86_64::memory_map::Permissions;
use kvmini::layout::{Layout, PAGE_SIZE};
use kvmini::memory::MEM_DEFAULT;
use kvmini::outcome::{Ending, Violation};
use kvmini::sandbox::Sandbox;

/// Output and shell status (128 + the signal) of `program args` natively.
fn native(program: &Path, args: &[&str]) -> (String, i32) {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new(program).args(args).output().unwrap();
    let status = out
        .status
        .code()
        .unwrap_or_else(|| 128 + out.status.signal().unwrap());
    (String::from_utf8(out.stdout).unwrap(), status)
}

fn in_kvmini(kvm: &kvmini::kvm::Kvm, program: &Path, args: &[&str]) -> common::Finished {
    let mut argv = vec!["memory_calls"];
    argv.extend_from_slice(args);
    run_config(
        kvm,
        Sandbox::builder()
            .elf_file(program.to_str().unwrap())
            .args(argv),
    )
}

#[test]
fn memory_calls_are_enforced_as_natively() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("memory_calls.c", build.path());
    let expected = [
        ("none-again", "mprotect none: 0\n", 139),
        (
            "none-back",
            "mprotect none: 0\nmprotect back: 0\ntouched: 2\n",
            0,
        ),
        ("read-only", "mprotect read: 0\nreads: 1\n", 139),
        ("munmap", "munmap: 0\nthe other page: 1\n", 139),
        (
            "exec",
            "PROT_EXEC mapping: 42\nmprotect exec: 0\nmade executable: 42\n",
            0,
        ),
        ("exec-denied", "calling\n", 139),
        (
            "mremap",
            "contents kept: 1, grown: 1\nshrunk in place: 1, first byte 7\n",
            0,
        ),
        ("reuse", "munmap: 0\nreused: 1, reads 0\nwrites 3\n", 0),
        (
            "errors",
            "unaligned: -1 22\nunknown bits: -1 22\npast the mapping: -1 12\n\
             munmap unaligned: -1 22\nmunmap nothing: -1 22\n",
            0,
        ),
    ];
    for (part, output, status) in expected {
        assert_eq!(
            native(&program, &[part]),
            (output.to_owned(), status),
            "{part} natively"
        );
        let run = in_kvmini(&kvm, &program, &[part]);
        assert_eq!(run.stdout_text(), output, "{part} in kvmini");
        assert_eq!(
            i32::from(run.outcome.ending.status()),
            status,
            "{part} in kvmini: {:?}",
            run.outcome.ending
        );
        if status == 139 {
            let Ending::Crashed(crash) = &run.outcome.ending else {
                panic!("{part}: {:?}", run.outcome.ending)
            };
            assert_eq!(crash.vector, 14, "{part}: a page fault");
            let addr = crash.cr2;
            let left = |read, write| Violation::ChangedByProgram {
                addr,
                permissions: Permissions {
                    read,
                    write,
                    execute: false,
                },
            };
            let want = match part {
                "read-only" => left(true, false),
                "exec-denied" => Violation::ExecuteNonExecutable {
                    addr,
                    kind: None,
                    permissions: Permissions::DATA,
                },
                _ => left(false, false),
            };
            assert_eq!(run.outcome.violation, Some(want), "{part}");
            assert!(crash.to_string().contains(&format!("{addr:#x}")), "{crash}");
        }
    }
}

#[test]
fn map_fixed_never_reaches_the_stub_or_kvmini_s_area() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("memory_calls.c", build.path());
    let layout = Layout::new(MEM_DEFAULT);
    let stub = layout.system_base - PAGE_SIZE;
    for at in [stub, layout.system_base, layout.pml4() + 0x6000, 0xF_0000] {
        let run = in_kvmini(&kvm, &program, &["fixed", &format!("{at:x}")]);
        assert_eq!(
            run.stdout_text(),
            "MAP_FIXED: failed 12\nMAP_FIXED_NOREPLACE: failed 12\n",
            "{at:#x}"
        );
        assert_eq!(run.outcome.ending, Ending::Exited(0));
    }
    // In the program's free memory both work (the second finds the first).
    let run = in_kvmini(&kvm, &program, &["fixed", "2000000"]);
    assert_eq!(
        run.stdout_text(),
        "MAP_FIXED: mapped 0\nMAP_FIXED_NOREPLACE: failed 17\n"
    );
}

/// A page the first run made PROT_NONE is read normally by the second run
/// of a reused sandbox: `reset()` brings the page tables back where KVM
/// sees them.
#[test]
fn a_reset_brings_back_the_first_run_s_permissions() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("memory_calls.c", build.path());
    let stdout = kvmini::output::Capture::new();
    let mut sandbox = Sandbox::builder()
        .elf_file(program.to_str().unwrap())
        .args(["memory_calls", "reset"])
        .stdout(kvmini::output::Output::Writer(stdout.writer()))
        .reusable(true)
        .build(&kvm)
        .unwrap();
    for _ in 0..3 {
        let outcome = sandbox.run().unwrap();
        assert_eq!(outcome.ending, Ending::Exited(0));
        sandbox.reset().unwrap();
    }
    assert_eq!(
        String::from_utf8(stdout.contents()).unwrap(),
        "reads 0\nmprotect none: 0\n".repeat(3)
    );
    // A run that ends in a fault on such a page leaves it the same way.
    // (Pages a reset makes accessible again would be found by KVM on the
    // next fault anyway; what a first run loosened and a reset must take
    // back is the case that needs the helper: see below.)
    let stdout = kvmini::output::Capture::new();
    let mut sandbox = Sandbox::builder()
        .elf_file(program.to_str().unwrap())
        .args(["memory_calls", "none-again"])
        .stdout(kvmini::output::Output::Writer(stdout.writer()))
        .reusable(true)
        .build(&kvm)
        .unwrap();
    let first = sandbox.run().unwrap();
    sandbox.reset().unwrap();
    let second = sandbox.run().unwrap();
    assert_eq!(first.ending.status(), 139);
    assert_eq!(first.ending, second.ending);
}

/// A read-only page the first run made writable is read-only again in the
/// next run of a reused sandbox, as a new process finds it on Linux:
/// without the reset's page-table writes made where KVM
/// sees them, the second run's write would go through.
#[test]
fn a_reset_takes_back_what_the_first_run_loosened() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("memory_calls.c", build.path());
    for (part, first, second) in [
        ("tighten", "mprotect write: 0\nloosened: 5\n", "writing\n"),
        ("tighten-exec", "mprotect exec: 0\ncalled\n", "calling\n"),
    ] {
        let data = tempfile::tempdir().unwrap();
        let stdout = kvmini::output::Capture::new();
        let mut sandbox = Sandbox::builder()
            .elf_file(program.to_str().unwrap())
            .args(["memory_calls", part])
            .dir(data.path(), "/data", false)
            .stdout(kvmini::output::Output::Writer(stdout.writer()))
            .reusable(true)
            .build(&kvm)
            .unwrap();
        let outcome = sandbox.run().unwrap();
        assert_eq!(outcome.ending, Ending::Exited(0), "{part}");
        assert_eq!(String::from_utf8(stdout.contents()).unwrap(), first);
        sandbox.reset().unwrap();
        let outcome = sandbox.run().unwrap();
        assert_eq!(
            String::from_utf8(stdout.contents()).unwrap(),
            format!("{first}{second}"),
            "{part}"
        );
        assert_eq!(outcome.ending.status(), 139, "{part}: {:?}", outcome.ending);
        let violation = outcome.violation.unwrap();
        if part == "tighten" {
            assert!(
                matches!(violation, Violation::WriteToReadOnly { .. }),
                "{violation}"
            );
        } else {
            assert!(
                matches!(violation, Violation::ExecuteNonExecutable { .. }),
                "{violation}"
            );
        }
    }
}

/// kvmini has sixteen spare page tables for 2 MiB pages that need 4 KiB
/// entries: once they are all in use, an `mprotect` that would split
/// another 2 MiB page is ENOMEM and changes nothing; a page given back
/// frees its table for the next.
#[test]
fn running_out_of_spare_page_tables_is_enomem() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("memory_calls.c", build.path());
    let stdout = kvmini::output::Capture::new();
    let mut sandbox = Sandbox::builder()
        .elf_file(program.to_str().unwrap())
        .args(["memory_calls", "exhaust"])
        .stdout(kvmini::output::Output::Writer(stdout.writer()))
        .build(&kvm)
        .unwrap();
    let layout = Layout::new(MEM_DEFAULT);
    let free = LiveTables::read(sandbox.memory().unwrap(), &layout)
        .unwrap()
        .free_tables();
    assert!(
        free > 0 && free < 16,
        "the image and the stack use some: {free}"
    );
    let outcome = sandbox.run().unwrap();
    assert_eq!(
        String::from_utf8(stdout.contents()).unwrap(),
        format!("protected {free}, then errno 12\nstill writable\ngiven back: 0\nthen: 0\n")
    );
    assert_eq!(outcome.ending.status(), 139);
}

/// A private file mapping reads the file into the program's pages; writes
/// to it stay there. A shared one is ENODEV (natively it would share the
/// file's pages, which kvmini never does).
#[test]
fn a_private_file_mapping_reads_the_file_as_natively() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("memory_calls.c", build.path());
    let want = "through the mapping: hello, mapped file\nafter the end: 0\n\
                mapping: Jello, file: hello\nwrite-only: 13\nunaligned offset: 22\n\
                not open: 9\n";
    let native_dir = tempfile::tempdir().unwrap();
    let native_file = native_dir.path().join("f");
    assert_eq!(
        native(&program, &["file", native_file.to_str().unwrap()]),
        (want.to_owned(), 0)
    );
    let data = tempfile::tempdir().unwrap();
    for (part, expected) in [("file", want), ("shared", "MAP_SHARED: 19\n")] {
        let run = run_config(
            &kvm,
            Sandbox::builder()
                .elf_file(program.to_str().unwrap())
                .args(["memory_calls", part, "/data/f"])
                .dir(data.path(), "/data", false),
        );
        assert_eq!(run.stdout_text(), expected, "{part}");
        assert_eq!(run.outcome.ending, Ending::Exited(0), "{part}");
    }
    assert_eq!(
        std::fs::read_to_string(data.path().join("f")).unwrap(),
        "hello, mapped file\n"
    );
}
