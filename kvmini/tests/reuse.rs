//! Reusable sandboxes: `reset` brings back the state before the first run,
//! and nothing a guest did in one run is visible in the next.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::kvm_or_skip;
use kvmini::cpu::Ring;
use kvmini::output::{Capture, Output};
use kvmini::sandbox::{Ending, Sandbox, SandboxError};
use vm_memory::{Bytes, GuestAddress};

/// A ring-3 flat guest that increments the counter at 0x1000, prints it
/// and exits 0:
///   mov rax, [0x1000]; inc rax; mov [0x1000], rax
///   mov dx, 0x400; out dx, eax        ; printVal
///   mov dx, 0x403; xor eax, eax; out dx, eax   ; exit(0)
const COUNTER: &[u8] = &[
    0x48, 0x8b, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00, 0x48, 0xff, 0xc0, 0x48, 0x89, 0x04, 0x25, 0x00,
    0x10, 0x00, 0x00, 0x66, 0xba, 0x00, 0x04, 0xef, 0x66, 0xba, 0x03, 0x04, 0x31, 0xc0, 0xef,
];

fn counter_sandbox(kvm: &kvmini::kvm::Kvm, out: &Capture) -> Sandbox {
    Sandbox::builder()
        .flat(COUNTER)
        .ring(Ring::Three)
        .memory(4 << 20)
        .reusable(true)
        .stdout(Output::Capture(out.clone()))
        .build(kvm)
        .expect("build")
}

fn counter(sandbox: &Sandbox) -> u64 {
    sandbox
        .memory()
        .expect("the sandbox has its VM")
        .read_obj(GuestAddress(0x1000))
        .expect("read the counter")
}

#[test]
fn reset_restores_memory_and_registers() {
    let Some(kvm) = kvm_or_skip() else {
        return;
    };
    let out = Capture::new();
    let mut sandbox = counter_sandbox(&kvm, &out);
    for _ in 0..3 {
        let outcome = sandbox.run().expect("run");
        assert_eq!(outcome.ending, Ending::Exited(0));
        assert_eq!(outcome.stats.exits, 2);
        assert_eq!(counter(&sandbox), 1);
        sandbox.reset().expect("reset");
        assert_eq!(counter(&sandbox), 0, "the guest's write survived reset");
    }
    // Every run started from the same state, so each printed 1.
    assert_eq!(out.contents(), b"1\n1\n1\n");
}

/// A ring-3 flat guest that prints the low half of XMM0 and EBX, then
/// changes both and exits: a run after a reset must print what the first
/// run printed.
///   movd eax, xmm0; printVal; mov eax, 0x12345; movd xmm0, eax
///   mov eax, ebx; printVal; mov ebx, 7
///   exit(0)
const CLOBBER: &[u8] = &[
    0x66, 0x0f, 0x7e, 0xc0, 0x66, 0xba, 0x00, 0x04, 0xef, // XMM0
    0xb8, 0x45, 0x23, 0x01, 0x00, 0x66, 0x0f, 0x6e, 0xc0, //
    0x89, 0xd8, 0x66, 0xba, 0x00, 0x04, 0xef, 0xbb, 0x07, 0x00, 0x00, 0x00, // EBX
    0x66, 0xba, 0x03, 0x04, 0x31, 0xc0, 0xef, // exit(0)
];

#[test]
fn reset_restores_sse_and_general_registers() {
    let Some(kvm) = kvm_or_skip() else {
        return;
    };
    let out = Capture::new();
    let mut sandbox = Sandbox::builder()
        .flat(CLOBBER)
        .ring(Ring::Three)
        .memory(2 << 20)
        .reusable(true)
        .stdout(Output::Capture(out.clone()))
        .build(&kvm)
        .expect("build");
    for _ in 0..3 {
        let outcome = sandbox.run().expect("run");
        assert_eq!(outcome.ending, Ending::Exited(0));
        assert_eq!(outcome.regs.rbx, 7);
        sandbox.reset().expect("reset");
    }
    // XMM0 and EBX are 0 at every start.
    assert_eq!(out.contents(), b"0\n0\n".repeat(3));
}

#[test]
fn host_writes_are_undone_too() {
    let Some(kvm) = kvm_or_skip() else {
        return;
    };
    let out = Capture::new();
    let mut sandbox = counter_sandbox(&kvm, &out);
    // A write from the host side (as hypercalls make) is also private to
    // the run.
    sandbox
        .memory()
        .expect("the sandbox has its VM")
        .write_obj(41u64, GuestAddress(0x1000))
        .expect("write");
    sandbox.run().expect("run");
    assert_eq!(out.contents(), b"42\n");
    sandbox.reset().expect("reset");
    assert_eq!(counter(&sandbox), 0);
}

/// The `keep_open.c` guest, built once.
fn keep_open_guest() -> Vec<u8> {
    std::fs::read(common::built_guest("kvmini/tests/guests/keep_open.c", &[]))
        .expect("the built guest")
}

/// This process's descriptors open on something under `dir`: the host
/// side of the guest's descriptors, whatever else the process has open.
fn host_fds_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

#[test]
fn descriptors_do_not_survive_reset() {
    let Some(kvm) = kvm_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().canonicalize().expect("the grant's real path");
    let out = Capture::new();
    let mut sandbox = Sandbox::builder()
        .elf(keep_open_guest())
        .dir(&root, "/", false)
        .reusable(true)
        .stdout(Output::Capture(out.clone()))
        .build(&kvm)
        .expect("build");
    // The grant's own directory is one descriptor before any run.
    let grant_only = host_fds_under(&root);
    for run in 0..3 {
        assert_eq!(sandbox.run().expect("run").ending, Ending::Exited(0));
        // The guest left four descriptors open, on the guest side and the
        // host side.
        assert_eq!(
            sandbox.open_descriptors().expect("the sandbox has its VM"),
            3 + 4,
            "run {run}"
        );
        assert_eq!(host_fds_under(&root), grant_only + 4, "run {run}");
        sandbox.reset().expect("reset");
        assert_eq!(
            sandbox.open_descriptors().expect("the sandbox has its VM"),
            3,
            "run {run}"
        );
        assert_eq!(host_fds_under(&root), grant_only, "run {run}");
    }
    // Every run got the same, lowest free, numbers: the table was fresh.
    assert_eq!(out.contents(), b"3\n4\n5\n6\n".repeat(3));
}

#[test]
fn only_reusable_ring_3_sandboxes_reset() {
    let Some(kvm) = kvm_or_skip() else {
        return;
    };
    let mut plain = Sandbox::builder()
        .elf(kvmini::guests::HELLO.elf)
        .stdout(Output::Null)
        .build(&kvm)
        .expect("build");
    assert!(matches!(plain.reset(), Err(SandboxError::NotResettable(_))));
    let mut ring0 = Sandbox::builder()
        .flat(COUNTER)
        .reusable(true)
        .stdout(Output::Null)
        .build(&kvm)
        .expect("build");
    assert!(matches!(ring0.reset(), Err(SandboxError::NotResettable(_))));
}
