//! A Linux program's per-process state through the library: a signal it
//! sends itself ends the run with the typed `Ending::Signaled`, and a
//! reset sandbox restores its name (docs/linux.md).
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

use common::linux_build::musl;

#[test]
fn a_reset_sandbox_gives_the_program_its_name_back() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("process.c", build.path());
    let stdout = Capture::new();
    let mut sandbox = Sandbox::builder()
        .elf_file(&program)
        .args([program.to_str().unwrap()])
        .reusable(true)
        .stdout(Output::Writer(stdout.writer()))
        .build(&kvm)
        .expect("the sandbox is built");
    let mut first = None;
    for _ in 0..3 {
        let before = stdout.contents().len();
        let outcome = sandbox.run().expect("the run loop does not fail");
        assert_eq!(outcome.ending, Ending::Exited(0));
        let text = String::from_utf8(stdout.contents()[before..].to_vec()).unwrap();
        // Each run starts with the name taken from the path, though the
        // run before set another.
        assert!(
            text.starts_with("get_name=0 errno=-\nname=process\n"),
            "{text}"
        );
        assert_eq!(first.get_or_insert_with(|| text.clone()), &text);
        sandbox.reset().expect("the sandbox resets");
    }
}

#[test]
fn a_signal_the_program_sends_itself_ends_the_run_as_a_typed_ending() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("signals.c", build.path());
    let path = program.to_str().unwrap();
    let outcome = |args: &[&str]| {
        let mut sandbox = Sandbox::builder()
            .elf_file(&program)
            .args(args)
            .stdout(Output::Writer(Capture::new().writer()))
            .build(&kvm)
            .expect("the sandbox is built");
        sandbox.run().expect("the run loop does not fail").ending
    };
    assert_eq!(outcome(&[path, "abort"]), Ending::Signaled(6));
    assert_eq!(Ending::Signaled(6).status(), 134);
    assert_eq!(outcome(&[path, "term"]), Ending::Signaled(15));
    assert_eq!(outcome(&[path, "none"]), Ending::Exited(5));
}
