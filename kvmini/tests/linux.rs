//! Static Linux programs through the library: Debian's busybox-static
//! applets compared with the same applets run natively on the same input
//! (output, errors, exit status), and a `musl-gcc -static` program that
//! prints its arguments and reads a granted file (docs/linux.md).
//!
//! busybox-static and musl-tools are part of the test toolchain (`.ci/run`
//! installs them): a test that needs them fails when they are missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::kvm_or_skip;
use kvmini::kvm::Kvm;
use kvmini::output::{Capture, Output};
use kvmini::sandbox::{Ending, Sandbox};

const BUSYBOX: &str = "/bin/busybox";

/// What a program did: exit status, stdout, stderr.
#[derive(Debug, PartialEq, Eq)]
struct Ran {
    status: i32,
    stdout: String,
    stderr: String,
}

fn busybox() -> &'static str {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install Debian's busybox-static (apt-get install busybox-static)"
    );
    BUSYBOX
}

/// Runs `program` with `args` in kvmini, with `dir` granted read-only at
/// `/` (so relative paths name the same files as natively in `dir`).
fn in_kvmini(kvm: &Kvm, program: &str, args: &[&str], dir: &Path) -> Ran {
    let (stdout, stderr) = (Capture::new(), Capture::new());
    let mut argv = vec![program];
    argv.extend(args);
    let mut sandbox = Sandbox::builder()
        .elf_file(program)
        .args(&argv)
        .dir(dir, "/", true)
        .stdout(Output::Writer(stdout.writer()))
        .stderr(Output::Writer(stderr.writer()))
        .build(kvm)
        .expect("the sandbox is built");
    let outcome = sandbox.run().expect("the run loop does not fail");
    let status = match outcome.ending {
        Ending::Exited(code) => i32::try_from(code & 0xFF).unwrap(),
        other => panic!("{program} {args:?} did not exit: {other:?}"),
    };
    Ran {
        status,
        stdout: String::from_utf8(stdout.contents()).unwrap(),
        stderr: String::from_utf8(stderr.contents()).unwrap(),
    }
}

/// Runs `program` with `args` natively in `dir`.
fn natively(program: &str, args: &[&str], dir: &Path) -> Ran {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the program runs natively");
    Ran {
        status: out.status.code().expect("an exit status"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.txt"),
        "one\ntwo words\n\nthree\nlast line without newline",
    )
    .unwrap();
    let long: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(dir.path().join("long.txt"), long).unwrap();
    std::fs::write(dir.path().join("empty.txt"), "").unwrap();
    dir
}

#[test]
fn busybox_applets_print_and_exit_as_natively() {
    let Some(kvm) = kvm_or_skip() else { return };
    let busybox = busybox();
    let dir = data_dir();
    let cases: &[&[&str]] = &[
        &["echo", "hello", "world"],
        &["echo", "-n", "no newline"],
        &["echo"],
        &["cat", "in.txt"],
        &["cat", "long.txt", "in.txt", "empty.txt"],
        &["wc", "-l", "in.txt"],
        &["wc", "-l", "long.txt", "in.txt"],
        &["wc", "-c", "in.txt"],
        &["wc", "-c", "long.txt"],
        &["wc", "in.txt"],
        &["head", "in.txt"],
        &["head", "-n", "2", "in.txt"],
        &["head", "-n", "1500", "long.txt"],
        &["head", "-c", "7", "in.txt"],
    ];
    for args in cases {
        let native = natively(busybox, args, dir.path());
        assert_eq!(native.status, 0, "{args:?} natively: {native:?}");
        assert_eq!(
            in_kvmini(&kvm, busybox, args, dir.path()),
            native,
            "busybox {args:?}"
        );
    }
}

#[test]
fn a_missing_file_fails_as_natively() {
    let Some(kvm) = kvm_or_skip() else { return };
    let busybox = busybox();
    let dir = data_dir();
    for args in [
        &["cat", "missing.txt"][..],
        &["wc", "-l", "missing.txt"],
        &["head", "missing.txt"],
        &["cat", "in.txt", "missing.txt"],
    ] {
        let native = natively(busybox, args, dir.path());
        assert_eq!(native.status, 1, "{args:?} natively: {native:?}");
        assert_eq!(
            in_kvmini(&kvm, busybox, args, dir.path()),
            native,
            "busybox {args:?}"
        );
    }
}

use common::linux_build::musl;

#[test]
fn a_musl_program_prints_its_arguments_and_reads_a_granted_file() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("args_and_file.c", build.path());
    let program = program.to_str().unwrap();
    let dir = data_dir();
    let ran = in_kvmini(&kvm, program, &["in.txt", "two words", ""], dir.path());
    let content = "one\ntwo words\n\nthree\nlast line without newline";
    assert_eq!(
        ran,
        Ran {
            status: 7,
            stdout: format!(
                "argc=4\nargv[0]={program}\nargv[1]=in.txt\nargv[2]=two words\nargv[3]=\n\
                 read {} bytes: {content}",
                content.len()
            ),
            stderr: String::new(),
        }
    );
    // Natively, the same (argv[0] is the same path).
    assert_eq!(
        natively(program, &["in.txt", "two words", ""], dir.path()),
        ran
    );
    // A file outside the grant does not exist for it.
    let ran = in_kvmini(&kvm, program, &["/etc/passwd"], dir.path());
    assert_eq!(ran.status, 1);
    assert_eq!(ran.stderr, "/etc/passwd: No such file or directory\n");
}

#[test]
fn a_reset_sandbox_runs_a_linux_program_again_from_its_start() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().unwrap();
    let program = musl("args_and_file.c", build.path());
    let dir = data_dir();
    let stdout = Capture::new();
    let mut sandbox = Sandbox::builder()
        .elf_file(&program)
        .args([program.to_str().unwrap(), "in.txt", "brk"])
        .dir(dir.path(), "/", true)
        .reusable(true)
        .stdout(Output::Writer(stdout.writer()))
        .build(&kvm)
        .expect("the sandbox is built");
    let mut runs = Vec::new();
    for _ in 0..3 {
        let before = stdout.contents().len();
        let outcome = sandbox.run().expect("the run loop does not fail");
        assert_eq!(outcome.ending, Ending::Exited(7));
        runs.push(String::from_utf8(stdout.contents()[before..].to_vec()).unwrap());
        // The break, the mappings, the FS base and the descriptors the
        // program changed all go back to where they started.
        sandbox.reset().expect("the sandbox resets");
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[1], runs[2]);
    let text = &runs[0];
    assert!(
        text.contains("three\nlast line without newline\nbrk=0x"),
        "{text}"
    );
    assert!(text.ends_with(" kept=1\n"), "{text}");
}
