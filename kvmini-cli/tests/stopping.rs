//! Stopping kvmini whatever it waits on: guest output nobody reads, input
//! nobody writes, FIFOs in a grant; a reader that went away; an inherited
//! signal mask or ignored signals; guest images that are not regular files
//! or too large; and kvmini's own messages on broken streams.
//!
//! Waits are checked with a pipe shrunk to one page: the tests that stop
//! kvmini with a signal or a stop handle wait until it is full, so that
//! kvmini is (or is about to be) blocked writing it, then stop it; a
//! timeout stops it the same way, at whatever point the limit comes. Time
//! limits here only catch hangs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::c_build::cc_guest;
use common::{kvm_or_skip, kvmini};
use kvmini::loader::ImageFileError;
use kvmini::sandbox::{BuildError, Sandbox};

/// Longest any kvmini here may take to stop: a hang, not a slow host.
const HANG: Duration = Duration::from_secs(60);

/// The pipes' size: one page, so that a guest fills one at once.
const PIPE_SIZE: usize = 4096;

/// `tests/guests/stopping.c`, built once per test run.
fn guest_path() -> &'static Path {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let elf = dir.join("stopping.elf");
        let partial = dir.join(format!("stopping.elf.{}", std::process::id()));
        cc_guest(
            &["-Wall", "-Wextra", "-Werror"],
            &partial,
            "kvmini/tests/guests/stopping.c",
        );
        std::fs::rename(&partial, &elf).expect("rename the built guest");
        elf
    })
}

/// A pipe of [`PIPE_SIZE`] bytes: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and are owned here only.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let size = libc::c_int::try_from(PIPE_SIZE).unwrap();
    // SAFETY: F_SETPIPE_SZ takes an int.
    let set = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
    assert_eq!(set, size);
    (read, write)
}

/// Bytes waiting in a pipe.
fn queued(read: &OwnedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let done = unsafe { libc::ioctl(read.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(done, 0);
    usize::try_from(n).unwrap()
}

/// Whether the pipe is full: it has no room for another line of the
/// guest's (at most 64 bytes), so a writer of one waits.
fn full(read: &OwnedFd) -> bool {
    queued(read) > PIPE_SIZE - 64
}

/// Waits until the pipe is full: its writer is blocked (or about to be).
fn wait_full(read: &OwnedFd) {
    let start = Instant::now();
    while !full(read) {
        assert!(start.elapsed() < HANG, "the guest never filled the pipe");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until kvmini runs a guest on a confined vCPU thread (so that its
/// signal handling is in place).
fn wait_running(child: &Child) {
    let start = Instant::now();
    let tasks = format!("/proc/{}/task", child.id());
    loop {
        let running = std::fs::read_dir(&tasks)
            .into_iter()
            .flatten()
            .flatten()
            .any(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "kvmini-vcpu")
            });
        if running {
            return;
        }
        assert!(start.elapsed() < HANG, "kvmini never started its guest");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` to exit, killing it (and failing) if it hangs.
fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for kvmini") {
            return status;
        }
        if start.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: kvmini did not stop");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: i32) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: the child is ours and has not been waited for.
    let sent = unsafe { libc::kill(pid, sig) };
    assert_eq!(sent, 0);
}

/// kvmini running `part` of the guest, with extra options before the image.
fn run_part(options: &[&str], part: &[&str]) -> Command {
    let mut command = kvmini();
    command
        .arg("run")
        .args(options)
        .arg(guest_path())
        .arg("--")
        .args(part)
        .stdin(Stdio::null());
    command
}

/// The parts that print for ever, and whether they print on stderr.
const SPAMMERS: [(&str, bool); 5] = [
    ("console", false),
    ("printval", false),
    ("display", false),
    ("write1", false),
    ("write2", true),
];

/// Starts `command` with stdout (or stderr) the write end of a pipe nobody
/// reads and the other stream discarded; returns the child and the read end.
fn spawn_unread(mut command: Command, on_stderr: bool) -> (Child, OwnedFd) {
    let (read, write) = pipe();
    if on_stderr {
        command.stderr(Stdio::from(write)).stdout(Stdio::null());
    } else {
        command.stdout(Stdio::from(write)).stderr(Stdio::null());
    }
    (command.spawn().expect("kvmini starts"), read)
}

#[test]
fn output_nobody_reads_ends_at_the_timeout() {
    if kvm_or_skip().is_none() {
        return;
    }
    for (part, on_stderr) in SPAMMERS {
        let (mut child, read) = spawn_unread(run_part(&["--timeout", "500ms"], &[part]), on_stderr);
        let status = wait_exit(&mut child, part);
        assert_eq!(status.code(), Some(124), "{part}");
        drop(read);
    }
}

#[test]
fn output_nobody_reads_ends_at_sigint_and_sigterm() {
    if kvm_or_skip().is_none() {
        return;
    }
    for (part, on_stderr) in SPAMMERS {
        for (sig, status) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
            let (mut child, read) = spawn_unread(run_part(&[], &[part]), on_stderr);
            wait_running(&child);
            wait_full(&read);
            signal(&child, sig);
            assert_eq!(
                wait_exit(&mut child, part).code(),
                Some(status),
                "{part} {sig}"
            );
        }
    }
}

#[test]
fn stdin_nobody_writes_ends_at_the_timeout_and_at_signals() {
    if kvm_or_skip().is_none() {
        return;
    }
    let stdin_pipe = || {
        let (read, write) = pipe();
        (Stdio::from(read), write)
    };
    let (stdin, _writer) = stdin_pipe();
    let mut child = run_part(&["--timeout", "300ms"], &["stdin"])
        .stdin(stdin)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(wait_exit(&mut child, "stdin").code(), Some(124));
    for (sig, status) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let (stdin, _writer) = stdin_pipe();
        let mut child = run_part(&[], &["stdin"])
            .stdin(stdin)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_running(&child);
        signal(&child, sig);
        assert_eq!(wait_exit(&mut child, "stdin").code(), Some(status));
    }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[test]
fn fifos_in_a_grant_end_at_the_timeout_and_at_signals() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("fifo"));
    let grant = format!("{}:/", dir.path().display());
    // Opening for writing with no reader, and for reading with no writer,
    // both wait in open.
    for part in ["fifo-write", "fifo-read"] {
        let mut child = run_part(&["--dir", &grant, "--timeout", "300ms"], &[part, "/fifo"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert_eq!(wait_exit(&mut child, part).code(), Some(124), "{part}");
        for (sig, status) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
            let mut child = run_part(&["--dir", &grant], &[part, "/fifo"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            wait_running(&child);
            signal(&child, sig);
            assert_eq!(wait_exit(&mut child, part).code(), Some(status), "{part}");
        }
    }
    // Writing with a reader that never reads: the guest fills the FIFO and
    // waits in write.
    let fifo = dir.path().join("fifo");
    let opener = std::thread::spawn(move || File::open(fifo).unwrap());
    let mut child = run_part(
        &["--dir", &grant, "--timeout", "1s"],
        &["fifo-write", "/fifo"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let reader = opener.join().unwrap();
    assert_eq!(wait_exit(&mut child, "full fifo").code(), Some(124));
    drop(reader);
}

#[test]
fn a_closed_stdout_ends_hypercall_output_quietly_and_is_epipe_for_write() {
    if kvm_or_skip().is_none() {
        return;
    }
    // console, printVal and display: status 141 and not a word; write(2)
    // gets EPIPE (32), which the guest makes its exit status.
    for (part, on_stderr, want) in [
        ("console", false, 141),
        ("printval", false, 141),
        ("display", false, 141),
        ("write1", false, 32),
        ("write2", true, 32),
    ] {
        // A reader that takes a little and goes away, as `head -c` does.
        let (read, write) = pipe();
        let mut command = run_part(&[], &[part]);
        let stderr = if on_stderr {
            command.stderr(Stdio::from(write)).stdout(Stdio::null());
            None
        } else {
            let (err_read, err_write) = pipe();
            command
                .stdout(Stdio::from(write))
                .stderr(Stdio::from(err_write));
            Some(err_read)
        };
        let mut child = command.spawn().unwrap();
        // The command holds the pipes' write ends until dropped.
        drop(command);
        let mut some = [0u8; 100];
        File::from(read).read_exact(&mut some).unwrap();
        let status = wait_exit(&mut child, part);
        assert_eq!(status.code(), Some(want), "{part}");
        if let Some(err_read) = stderr {
            let mut said = String::new();
            File::from(err_read).read_to_string(&mut said).unwrap();
            assert_eq!(said, "", "{part}");
        }
    }
    // No reader at all from the start.
    let (read, write) = pipe();
    drop(read);
    let status = run_part(&[], &["console"])
        .stdout(Stdio::from(write))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(141));
}

/// The signal kvmini uses to interrupt KVM_RUN.
fn kick_signal() -> i32 {
    kvmini::stop::signal()
}

/// A kvmini command that starts with `blocked` in its signal mask and
/// `ignored` set to SIG_IGN, as a parent process can leave them.
fn with_signal_state(mut command: Command, blocked: &[i32], ignored: &[i32]) -> Command {
    let (blocked, ignored) = (blocked.to_vec(), ignored.to_vec());
    // SAFETY: the closure only calls async-signal-safe functions on local
    // values between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &sig in &blocked {
                libc::sigaddset(&mut set, sig);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            for &sig in &ignored {
                libc::signal(sig, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    command
}

#[test]
fn an_inherited_signal_state_does_not_defeat_the_timeout_or_the_signals() {
    if kvm_or_skip().is_none() {
        return;
    }
    let kick = kick_signal();
    let states: [(&str, Vec<i32>, Vec<i32>); 4] = [
        ("kick signal blocked", vec![kick], vec![]),
        (
            "SIGINT and SIGTERM blocked",
            vec![libc::SIGINT, libc::SIGTERM],
            vec![],
        ),
        (
            "SIGINT and SIGTERM ignored",
            vec![],
            vec![libc::SIGINT, libc::SIGTERM],
        ),
        (
            "all three blocked and ignored",
            vec![kick, libc::SIGINT, libc::SIGTERM],
            vec![libc::SIGINT, libc::SIGTERM],
        ),
    ];
    for (what, blocked, ignored) in &states {
        for seccomp in [&[][..], &["--no-seccomp"][..]] {
            let options = [seccomp, &["--timeout", "300ms"][..]].concat();
            let command = with_signal_state(run_part(&options, &["loop"]), blocked, ignored);
            let mut child = { command }.stderr(Stdio::null()).spawn().unwrap();
            assert_eq!(
                wait_exit(&mut child, what).code(),
                Some(124),
                "{what} {seccomp:?}"
            );
        }
        for (sig, status) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
            let command = with_signal_state(run_part(&[], &["loop"]), blocked, ignored);
            let mut child = { command }.stderr(Stdio::null()).spawn().unwrap();
            wait_running(&child);
            signal(&child, sig);
            assert_eq!(
                wait_exit(&mut child, what).code(),
                Some(status),
                "{what} {sig}"
            );
        }
    }
}

#[test]
fn images_that_are_not_regular_files_or_too_large_are_refused_at_once() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("guest.fifo");
    mkfifo(&fifo);
    let big = dir.path().join("big.elf");
    File::create(&big).unwrap().set_len((2 << 20) + 1).unwrap();
    let fifo_s = fifo.to_str().unwrap();
    let big_s = big.to_str().unwrap();
    for (args, message) in [
        (
            vec!["run", fifo_s],
            format!("kvmini: guest {fifo_s} is a FIFO (named pipe), not a regular file: a guest image must be a regular file\n"),
        ),
        (
            vec!["run", "--flat", fifo_s],
            format!("kvmini: guest {fifo_s} is a FIFO (named pipe), not a regular file: a guest image must be a regular file\n"),
        ),
        (
            vec!["run", "/dev/zero"],
            "kvmini: guest /dev/zero is a character device, not a regular file: a guest image must be a regular file\n".to_owned(),
        ),
        (
            vec!["run", "--mem", "2M", big_s],
            format!("kvmini: guest {big_s} is larger than guest memory (2097152 bytes): not a guest image for this memory size\n"),
        ),
    ] {
        let mut child = kvmini()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_exit(&mut child, &args.join(" "));
        let mut said = String::new();
        child.stderr.take().unwrap().read_to_string(&mut said).unwrap();
        assert_eq!((status.code(), said), (Some(125), message), "{args:?}");
    }
    // The library reads files the same way.
    let kvm = kvm_or_skip().unwrap();
    let kind = |result: Result<Sandbox, BuildError>| match result {
        Err(BuildError::ImageFile(ImageFileError::NotRegular { kind, .. })) => kind.to_owned(),
        Err(BuildError::ImageFile(ImageFileError::TooLarge { limit, .. })) => {
            format!("over {limit}")
        }
        other => panic!("expected an image file error, got {other:?}"),
    };
    assert_eq!(
        kind(Sandbox::builder().elf_file(&fifo).build(&kvm)),
        "a FIFO (named pipe)"
    );
    assert_eq!(
        kind(Sandbox::builder().flat_file(&fifo).build(&kvm)),
        "a FIFO (named pipe)"
    );
    assert_eq!(
        kind(Sandbox::builder().flat_file("/dev/zero").build(&kvm)),
        "a character device"
    );
    assert_eq!(
        kind(Sandbox::builder().elf_file(dir.path()).build(&kvm)),
        "a directory"
    );
    assert_eq!(
        kind(
            Sandbox::builder()
                .elf_file(&big)
                .memory(2 << 20)
                .build(&kvm)
        ),
        "over 2097152"
    );
}

/// How one of kvmini's standard streams is broken for a run.
#[derive(Clone, Copy, Debug)]
enum Broken {
    /// Descriptor closed when kvmini starts.
    Closed,
    /// A pipe whose reader went away.
    ClosedPipe,
    /// /dev/full: every write fails with ENOSPC.
    Full,
}

fn break_stream(command: &mut Command, fd: i32, how: Broken) -> Option<OwnedFd> {
    let stdio = match how {
        Broken::Closed => {
            // SAFETY: close is async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    libc::close(fd);
                    Ok(())
                });
            }
            return None;
        }
        Broken::ClosedPipe => {
            let (read, write) = pipe();
            drop(read);
            Stdio::from(write)
        }
        Broken::Full => Stdio::from(File::options().write(true).open("/dev/full").unwrap()),
    };
    if fd == 1 {
        command.stdout(stdio);
    } else {
        command.stderr(stdio);
    }
    None
}

#[test]
fn exit_statuses_do_not_depend_on_whether_kvmini_could_report() {
    if kvm_or_skip().is_none() {
        return;
    }
    let report = ["--stats", "--verbose"];
    // (what, options, guest part, status): none of these guests prints;
    // kvmini reports on stderr (and with --stats, --verbose, more).
    let cases: [(&str, &[&str], &[&str], i32); 5] = [
        ("exit 0", &report, &["exit", "0"], 0),
        ("exit 7", &report, &["exit", "7"], 7),
        (
            "timeout",
            &["--stats", "--timeout", "300ms"],
            &["loop"],
            124,
        ),
        ("crash", &report, &["crash"], 126),
        ("bad option", &["--mem", "3M"], &["exit", "0"], 125),
    ];
    for fd in [1, 2] {
        for how in [Broken::Closed, Broken::ClosedPipe, Broken::Full] {
            for (what, options, part, want) in cases {
                let mut command = run_part(options, part);
                command.stdout(Stdio::null()).stderr(Stdio::null());
                break_stream(&mut command, fd, how);
                let mut child = command.spawn().unwrap();
                let status = wait_exit(&mut child, what);
                assert_eq!(
                    (status.code(), status.signal()),
                    (Some(want), None),
                    "{what} with fd {fd} {how:?}"
                );
            }
            for (sig, want) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
                let mut command = run_part(&["--stats"], &["loop"]);
                command.stdout(Stdio::null()).stderr(Stdio::null());
                break_stream(&mut command, fd, how);
                let mut child = command.spawn().unwrap();
                wait_running(&child);
                signal(&child, sig);
                let status = wait_exit(&mut child, "signal");
                assert_eq!(status.code(), Some(want), "{sig} with fd {fd} {how:?}");
            }
            // Usage errors from clap, and the tour's listing.
            let mut command = kvmini();
            command
                .args(["run", "--no-such-option"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            break_stream(&mut command, fd, how);
            assert_eq!(
                command.status().unwrap().code(),
                Some(125),
                "usage, fd {fd} {how:?}"
            );
            let mut command = kvmini();
            command
                .args(["demo", "--list"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            break_stream(&mut command, fd, how);
            assert_eq!(
                command.status().unwrap().code(),
                Some(0),
                "list, fd {fd} {how:?}"
            );
        }
    }
}

#[test]
fn a_terminal_paused_with_ctrl_s_ends_at_the_timeout_and_at_signals() {
    if kvm_or_skip().is_none() {
        return;
    }
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors; the other arguments may be
    // null.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0);
    // SAFETY: both descriptors were just opened and are owned here only.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // Ctrl-S typed at the terminal: its output stops (IXON is on by
    // default), so every write to it waits once its buffer is full.
    let mut terminal = File::from(master);
    std::io::Write::write_all(&mut terminal, b"\x13").unwrap();
    for part in ["console", "write1"] {
        let mut child = run_part(&["--timeout", "300ms"], &[part])
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert_eq!(wait_exit(&mut child, part).code(), Some(124), "{part}");
        for (sig, status) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
            let mut child = run_part(&[], &[part])
                .stdout(Stdio::from(slave.try_clone().unwrap()))
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            wait_running(&child);
            signal(&child, sig);
            assert_eq!(
                wait_exit(&mut child, part).code(),
                Some(status),
                "{part} {sig}"
            );
        }
    }
    drop(terminal);
}
