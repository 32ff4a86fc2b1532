//! Start-up: building a sandbox that runs under the seccomp filter starts
//! its confined vCPU thread, so that the thread's start and the filter's
//! installation overlap the build instead of delaying the first run; the
//! run then takes that thread and starts no other. One test in this
//! binary, so that no other test's threads come and go meanwhile.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::kvm_or_skip;
use kvmini::output::{Capture, Output};
use kvmini::sandbox::{Ending, Sandbox};

/// The names of this process's threads, but for those KVM itself starts
/// for a VM (`kvm-nx-lpage-recovery`, which come and go with VMs).
fn threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|task| {
            let comm = task.unwrap().path().join("comm");
            std::fs::read_to_string(comm).unwrap().trim_end().to_owned()
        })
        .filter(|name| !name.starts_with("kvm-"))
        .collect();
    names.sort();
    names
}

fn hello(seccomp: bool, stdout: &Capture) -> kvmini::sandbox::SandboxBuilder {
    Sandbox::builder()
        .elf(kvmini::guests::HELLO.elf)
        .stdout(Output::Capture(stdout.clone()))
        .seccomp(seccomp)
}

#[test]
fn the_vcpu_thread_starts_during_the_build_and_serves_the_run() {
    let Some(kvm) = kvm_or_skip() else { return };
    let before = threads().len();

    // Without the filter nothing runs confined: the build starts no thread.
    let unconfined = Capture::new();
    let sandbox = hello(false, &unconfined).build(&kvm).unwrap();
    assert_eq!(threads().len(), before, "{:?}", threads());
    drop(sandbox);

    let stdout = Capture::new();
    let mut sandbox = hello(true, &stdout).build(&kvm).unwrap();
    // The thread names itself once it runs: count it, not its name.
    assert_eq!(threads().len(), before + 1, "{:?}", threads());
    let outcome = sandbox.run().unwrap();
    assert_eq!(outcome.ending, Ending::Halted);
    assert_eq!(stdout.contents(), b"Hello, world!\n");
    // The run went to the thread started ahead (besides it, only the
    // thread that resends stops was started).
    let names = threads();
    assert_eq!(names.len(), before + 2, "{names:?}");
    assert_eq!(
        names.iter().filter(|n| *n == "kvmini-vcpu").count(),
        1,
        "{names:?}"
    );

    // A second sandbox finds the thread idle and starts none.
    let again = Capture::new();
    let mut second = hello(true, &again).build(&kvm).unwrap();
    assert_eq!(threads().len(), before + 2, "{:?}", threads());
    assert_eq!(second.run().unwrap().ending, Ending::Halted);
    assert_eq!(threads().len(), before + 2, "{:?}", threads());
}
