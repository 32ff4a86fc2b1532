//! A run that panics (here a host function's panic, the one panic an
//! embedding program can cause) reaches the caller of `run`, and takes the
//! sandbox's VM with it, on a confined vCPU thread and on the caller's own
//! thread alike. After that, every method that needs the VM answers
//! `SandboxError::Poisoned`: none panics again, and none answers a made-up
//! value.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::panic::{self, AssertUnwindSafe};

use common::kvm_or_skip;
use kvmini::kvm::Kvm;
use kvmini::output::Output;
use kvmini::sandbox::{Sandbox, SandboxError};

const MESSAGE: &str = "a host function fails";

/// The test guest calling host function 1, which panics, on a sandbox
/// built with `seccomp` and `reusable` as given.
fn panicking_sandbox(kvm: &Kvm, seccomp: bool, reusable: bool) -> Sandbox {
    let path = common::built_guest("kvmini/tests/guests/host_functions.c", &[]);
    let elf = std::fs::read(path).expect("the guest was built");
    Sandbox::builder()
        .elf(elf)
        .args(["host_functions", "call", "1"])
        .stdout(Output::Null)
        .stderr(Output::Null)
        .seccomp(seccomp)
        .reusable(reusable)
        .host_function(1, |_| -> Result<u64, kvmini::host::Errno> {
            panic!("{MESSAGE}")
        })
        .build(kvm)
        .expect("the sandbox is built")
}

fn is_poisoned<T: std::fmt::Debug>(what: &str, result: Result<T, SandboxError>) {
    match result {
        Err(SandboxError::Poisoned) => {}
        other => panic!("{what}: expected Poisoned, got {other:?}"),
    }
}

#[test]
fn after_a_panicked_run_every_method_that_needs_the_vm_is_poisoned() {
    let Some(kvm) = kvm_or_skip() else { return };
    for seccomp in [true, false] {
        for reusable in [true, false] {
            let case = format!("seccomp {seccomp}, reusable {reusable}");
            let mut sandbox = panicking_sandbox(&kvm, seccomp, reusable);
            // Before the run, each of them answers.
            assert_eq!(sandbox.open_descriptors().expect(&case), 3, "{case}");
            assert!(sandbox.layout().expect(&case).mem_size > 0, "{case}");
            assert_ne!(sandbox.memory_host_address().expect(&case), 0, "{case}");
            assert_ne!(sandbox.kvm_run_host_address().expect(&case), 0, "{case}");
            assert!(sandbox.kvm_run_size().expect(&case) > 0, "{case}");
            assert!(!sandbox.regions().expect(&case).is_empty(), "{case}");
            assert!(sandbox.entry_system_registers().expect(&case).is_some());

            let caught = panic::catch_unwind(AssertUnwindSafe(|| sandbox.run()));
            let payload = caught.expect_err("the host function's panic reaches the caller");
            assert_eq!(
                payload.downcast_ref::<String>().map(String::as_str),
                Some(MESSAGE),
                "{case}"
            );

            is_poisoned(&case, sandbox.open_descriptors());
            is_poisoned(&case, sandbox.layout());
            is_poisoned(&case, sandbox.memory());
            is_poisoned(&case, sandbox.memory_host_address());
            is_poisoned(&case, sandbox.kvm_run_host_address());
            is_poisoned(&case, sandbox.kvm_run_size());
            is_poisoned(&case, sandbox.regions());
            is_poisoned(&case, sandbox.entry_system_registers());
            is_poisoned(&case, sandbox.run());
            if reusable {
                is_poisoned(&case, sandbox.reset());
            }
            // What does not need the VM still answers, and so does Debug.
            assert_eq!(sandbox.ring(), kvmini::cpu::Ring::Three, "{case}");
            assert!(format!("{sandbox:?}").starts_with("Sandbox"), "{case}");
        }
    }
}
