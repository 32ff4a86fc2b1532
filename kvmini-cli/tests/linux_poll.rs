//! `poll`, `ppoll`, `select` and `pselect6` through the `kvmini` binary: a
//! musl program asks what is ready among its standard streams and a file,
//! in kvmini and natively (docs/linux.md); a wait on stdin ends when data
//! comes, and at the timeout or SIGTERM when none does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
mod linux_native;

use std::io::{BufRead as _, Write as _};
use std::process::{Command, Stdio};

use common::{kvm_or_skip, kvmini};
use linux_native::{in_kvmini, musl, outcome};

#[test]
fn poll_and_select_answer_as_natively_on_streams_and_files() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("poll.c", work.path());
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), "x\n").unwrap();
    // stdin empty (/dev/null), stdout and stderr pipes, in both runs.
    let native = Command::new(&program)
        .current_dir(&tree)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let guest = in_kvmini(&["--dir", tree.to_str().unwrap(), program.to_str().unwrap()]);
    let expected = "poll=5 errno=-\n\
                    fd 0 revents=0x1\n\
                    fd 1 revents=0x4\n\
                    fd 2 revents=0x4\n\
                    fd 3 revents=0x5\n\
                    fd 50 revents=0x20\n\
                    poll_nothing_100ms=0 errno=-\n\
                    ppoll_nothing_50ms=0 errno=-\n\
                    waited_at_least_150ms=1\n\
                    poll_bad_pointer=-1 errno=Bad address\n\
                    ppoll_bad_timeout=-1 errno=Invalid argument\n\
                    select=4 errno=-\n\
                    read: 0=1 file=1 write: 1=1 file=1\n\
                    select_closed=-1 errno=Bad file descriptor\n\
                    pselect_nothing_10ms=0 errno=-\n";
    assert_eq!(outcome(&native), (0, expected.to_owned(), String::new()));
    assert_eq!(outcome(&guest), outcome(&native));
}

#[test]
fn a_poll_on_stdin_waits_for_data_and_ends_at_the_timeout_or_sigterm() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("poll.c", work.path());
    let program = program.to_str().unwrap();
    // Data comes: the wait ends with it, as natively (stdin stays open
    // until the program has printed, so no hang-up is seen).
    let fed = |mut command: Command| {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hi\n").unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let printed: Vec<String> = stdout.lines().take(3).map(Result::unwrap).collect();
        drop(stdin);
        assert_eq!(child.wait().unwrap().code(), Some(0));
        printed
    };
    let mut native = Command::new(program);
    native.arg("wait");
    let mut guest = kvmini();
    guest.args(["run", program, "--", "wait"]);
    let expected = [
        "poll_stdin=1 errno=-",
        "read=3 errno=-",
        "revents=0x1 read=hi",
    ];
    assert_eq!(fed(native), expected);
    assert_eq!(fed(guest), expected);
    // None comes (stdin stays open): the timeout ends the run, with 124;
    // without it the test would hang.
    let mut child = kvmini()
        .args(["run", "--timeout", "1s", program, "--", "wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!((out.status.code(), out.stdout), (Some(124), Vec::new()));
    // SIGTERM ends it too, with 128 + 15, once the trace shows the wait.
    let mut child = kvmini()
        .args(["run", "--trace", program, "--", "wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let trace = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = trace.lines();
    assert!(
        lines.any(|line| line.unwrap().starts_with("poll(")),
        "the program polls"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(child.wait().unwrap().code(), Some(143));
    drop(stdin);
}
