//! Memory protection inside the guest (docs/security.md, "Memory inside
//! the guest"): an SDK guest and a musl Linux program that overflow their
//! stack, write to their code and read-only data, and execute from the
//! stack and from data; each ends as Linux ends it (status 139 for the
//! Linux program, compared with the same program run natively; 126 for the
//! SDK guest) with a crash report naming what it broke. A read hypercall
//! into read-only memory is EFAULT, and guest memory is never executable
//! in kvmini's own process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{built_guest, kvm_or_skip, run_config};
use kvmini::arch::x86_64::memory_map::{AreaKind, Permissions, SDK_STACK_GUARD, SDK_STACK_SIZE};
use kvmini::kvm::Kvm;
use kvmini::layout::{Layout, PAGE_SIZE};
use kvmini::memory::MEM_DEFAULT;
use kvmini::outcome::{Crash, Ending, Violation};
use kvmini::sandbox::Sandbox;

const SDK_GUEST: &str = "kvmini/tests/guests/memory_protection.c";

const READ_ONLY: Permissions = Permissions {
    read: true,
    write: false,
    execute: false,
};

fn crash_of(ending: &Ending) -> &Crash {
    match ending {
        Ending::Crashed(crash) => crash,
        other => panic!("expected a crash, got {other:?}"),
    }
}

fn sdk_run(kvm: &Kvm, part: &str) -> common::Finished {
    let elf = built_guest(SDK_GUEST, &[]);
    run_config(
        kvm,
        Sandbox::builder()
            .elf_file(elf.to_str().unwrap())
            .args(["guest", part]),
    )
}

#[test]
fn an_sdk_guest_that_breaks_nothing_runs_as_before() {
    let Some(kvm) = kvm_or_skip() else { return };
    let run = sdk_run(&kvm, "none");
    assert_eq!(run.outcome.ending, Ending::Exited(0));
    assert_eq!(run.stdout_text(), "");
}

#[test]
fn an_sdk_guest_cannot_write_its_code_or_read_only_data() {
    let Some(kvm) = kvm_or_skip() else { return };
    for (part, kind) in [
        ("code", AreaKind::Segment(0)),
        ("rodata", AreaKind::Segment(1)),
    ] {
        let run = sdk_run(&kvm, part);
        let crash = crash_of(&run.outcome.ending);
        let permissions = if part == "code" {
            Permissions::CODE
        } else {
            READ_ONLY
        };
        assert_eq!(
            run.outcome.violation,
            Some(Violation::WriteToReadOnly {
                addr: crash.cr2,
                kind,
                permissions
            }),
            "{part}"
        );
        assert!(
            run.outcome.crash_report().unwrap().starts_with(&format!(
                "guest crashed: write to read-only memory at {:#x} ({kind}, {permissions}), at rip",
                crash.cr2
            )),
            "{crash}"
        );
        assert_eq!(run.outcome.ending.status(), 126);
        assert_eq!(run.stdout_text(), "", "{part} went on after the write");
    }
}

#[test]
fn an_sdk_guest_cannot_execute_its_stack_or_data() {
    let Some(kvm) = kvm_or_skip() else { return };
    for (part, kind) in [
        ("exec-stack", Some(AreaKind::Stack)),
        ("exec-data", Some(AreaKind::Segment(2))),
    ] {
        let run = sdk_run(&kvm, part);
        let crash = crash_of(&run.outcome.ending);
        assert_eq!(
            run.outcome.violation,
            Some(Violation::ExecuteNonExecutable {
                addr: crash.cr2,
                kind,
                permissions: Permissions::DATA
            }),
            "{part}"
        );
        assert_eq!(crash.rip, crash.cr2, "the fault is the fetch itself");
        assert_eq!(run.outcome.ending.status(), 126);
        assert_eq!(run.stdout_text(), "");
    }
}

#[test]
fn an_sdk_guest_stack_overflow_is_reported_with_the_stack_bounds() {
    let Some(kvm) = kvm_or_skip() else { return };
    let run = sdk_run(&kvm, "stack");
    let crash = crash_of(&run.outcome.ending);
    let top = Layout::new(MEM_DEFAULT).stack_top();
    let stack = top - SDK_STACK_SIZE..top;
    assert_eq!(
        run.outcome.violation,
        Some(Violation::StackOverflow {
            addr: crash.cr2,
            stack: stack.clone()
        })
    );
    assert!(
        stack.start - SDK_STACK_GUARD <= crash.cr2 && crash.cr2 < stack.start,
        "{crash}"
    );
    assert!(run.outcome.crash_report().unwrap().starts_with(&format!(
        "guest crashed: stack overflow at {:#x} (stack {:#x}..{:#x})",
        crash.cr2, stack.start, stack.end
    )));
    assert_eq!(run.outcome.ending.status(), 126);
}

#[test]
fn a_hypercall_read_into_read_only_memory_is_efault() {
    let Some(kvm) = kvm_or_skip() else { return };
    let run = sdk_run(&kvm, "efault");
    assert_eq!(run.outcome.ending, Ending::Exited(0));
    // argv and read answer -EFAULT, and the read-only bytes are unchanged.
    let efault = (-libc::EFAULT).cast_unsigned();
    assert_eq!(run.stdout_text(), format!("{efault}\n{efault}\n1\n"));
}

use common::linux_build::musl;

/// The shell's status of `program part` run natively: 128 + the signal
/// that ended it.
fn native_status(program: &Path, part: &str) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let status = Command::new(program)
        .arg(part)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap())
}

#[test]
fn a_linux_program_ends_as_natively_with_the_violation_named() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("memory_protection.c", build.path());
    let untouched = run_config(
        &kvm,
        Sandbox::builder()
            .elf_file(program.to_str().unwrap())
            .args(["memory_protection"]),
    );
    assert_eq!(untouched.outcome.ending, Ending::Exited(0));
    assert_eq!(untouched.stdout_text(), "untouched\n");
    for part in ["stack", "code", "rodata", "exec-stack", "exec-heap"] {
        assert_eq!(native_status(&program, part), 139, "{part} natively");
        let run = run_config(
            &kvm,
            Sandbox::builder()
                .elf_file(program.to_str().unwrap())
                .args(["memory_protection", part]),
        );
        assert_eq!(
            i32::from(run.outcome.ending.status()),
            139,
            "{part} in kvmini"
        );
        let crash = crash_of(&run.outcome.ending);
        let addr = crash.cr2;
        let violation = run.outcome.violation.clone().unwrap();
        match part {
            "stack" => {
                let Violation::StackOverflow { stack, .. } = &violation else {
                    panic!("{violation}")
                };
                let top = Layout::new(MEM_DEFAULT).system_base - PAGE_SIZE;
                assert_eq!(stack.end, top);
                assert_eq!(stack.end - stack.start, kvmini::linux::STACK_SIZE);
            }
            "code" | "rodata" => {
                let Violation::WriteToReadOnly { permissions, .. } = &violation else {
                    panic!("{violation}")
                };
                let want = if part == "code" {
                    Permissions::CODE
                } else {
                    READ_ONLY
                };
                assert_eq!(*permissions, want, "{part}");
            }
            "exec-stack" => assert_eq!(
                violation,
                Violation::ExecuteNonExecutable {
                    addr,
                    kind: Some(AreaKind::Stack),
                    permissions: Permissions::DATA
                }
            ),
            _ => assert_eq!(
                violation,
                Violation::ExecuteNonExecutable {
                    addr,
                    kind: None,
                    permissions: Permissions::DATA
                }
            ),
        }
    }
}

/// The permissions hold after a reset as before it: the page tables that
/// split a 2 MiB region of the program (kvmini's spare tables below the
/// image) are part of the pristine memory a reset brings back.
#[test]
fn a_reset_sandbox_keeps_the_permissions() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("memory_protection.c", build.path());
    for part in ["none", "rodata"] {
        let stdout = kvmini::output::Capture::new();
        let mut sandbox = Sandbox::builder()
            .elf_file(program.to_str().unwrap())
            .args(["memory_protection", part])
            .stdout(kvmini::output::Output::Writer(stdout.writer()))
            .reusable(true)
            .build(&kvm)
            .unwrap();
        let first = sandbox.run().unwrap();
        sandbox.reset().unwrap();
        let second = sandbox.run().unwrap();
        assert_eq!(first.ending, second.ending, "{part}");
        assert_eq!(first.violation, second.violation, "{part}");
        if part == "none" {
            assert_eq!(second.ending, Ending::Exited(0));
            assert_eq!(
                String::from_utf8(stdout.contents()).unwrap(),
                "untouched\nuntouched\n"
            );
        } else {
            assert_eq!(second.ending.status(), 139);
            assert!(matches!(
                second.violation,
                Some(Violation::WriteToReadOnly { .. })
            ));
        }
    }
}

/// `mprotect` is enforced (docs/linux.md, "Memory"): a page made
/// PROT_NONE after it was touched ends the program at the next touch, as
/// on Linux.
#[test]
fn mprotect_is_enforced() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("memory_protection.c", build.path());
    assert_eq!(native_status(&program, "mprotect"), 139, "natively");
    let run = run_config(
        &kvm,
        Sandbox::builder()
            .elf_file(program.to_str().unwrap())
            .args(["memory_protection", "mprotect"]),
    );
    assert_eq!(run.outcome.ending.status(), 139);
    assert_eq!(run.stdout_text(), "");
    let crash = crash_of(&run.outcome.ending);
    assert_eq!(
        run.outcome.violation,
        Some(Violation::ChangedByProgram {
            addr: crash.cr2,
            permissions: Permissions::NONE
        })
    );
}

#[test]
fn guest_memory_is_never_executable_in_kvmini_s_process() {
    let Some(kvm) = kvm_or_skip() else { return };
    let run = sdk_run(&kvm, "none");
    let host = kvmini::memory::host_address(run.sandbox.memory().unwrap()).unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| {
            // The kernel may merge the mapping with a neighbour of the same
            // kind (another test's guest memory), so look for the one that
            // holds it rather than one that starts at it.
            let range = l.split_whitespace().next().unwrap();
            let (start, end) = range.split_once('-').unwrap();
            let start = u64::from_str_radix(start, 16).unwrap();
            let end = u64::from_str_radix(end, 16).unwrap();
            (start..end).contains(&host)
        })
        .unwrap_or_else(|| panic!("no mapping holds {host:#x}:\n{maps}"));
    let perms = line.split_whitespace().nth(1).unwrap();
    assert_eq!(&perms[..3], "rw-", "{line}");
    drop(kvm);
}
