//! A Linux program's environment and working directory through the
//! library: what the builder gives (`env`, `cwd`), and a reset sandbox
//! that starts each run in the working directory it was built with
//! (docs/linux.md).
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
fn a_reset_sandbox_starts_each_run_in_its_cwd_with_its_env() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("cwd_env.c", build.path());
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("a/b")).unwrap();
    let stdout = Capture::new();
    let mut sandbox = Sandbox::builder()
        .elf_file(&program)
        .args([program.to_str().unwrap(), "b"])
        .dir(data.path(), "/data", true)
        .cwd("/data/a")
        .env("GREETING", "hello there")
        .env("OTHER", "x")
        .reusable(true)
        .stdout(Output::Writer(stdout.writer()))
        .build(&kvm)
        .expect("the sandbox is built");
    for _ in 0..3 {
        let before = stdout.contents().len();
        let outcome = sandbox.run().expect("the run loop does not fail");
        assert_eq!(outcome.ending, Ending::Exited(0));
        assert_eq!(
            String::from_utf8(stdout.contents()[before..].to_vec()).unwrap(),
            "start=/data/a GREETING=hello there vars=2\nnow=/data/a/b\n"
        );
        sandbox.reset().expect("the sandbox resets");
    }
}

#[test]
fn the_builder_refuses_a_cwd_the_program_cannot_see() {
    let Some(kvm) = kvm_or_skip() else { return };
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("file"), "").unwrap();
    for (cwd, message) in [
        ("/data/missing", "ENOENT (2)"),
        ("/data/file", "ENOTDIR (20)"),
        ("relative", "ENOENT (2)"),
    ] {
        let err = Sandbox::builder()
            .elf_file("/bin/busybox")
            .dir(data.path(), "/data", true)
            .cwd(cwd)
            .build(&kvm)
            .map(|_| ())
            .expect_err("the cwd is refused");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot start in working directory {cwd}: {message} \
                 (an absolute path under a grant, or /)"
            )
        );
    }
}
