//! Stopping runs from an embedding program: stop handles shared between
//! sandboxes, timeouts that belong to their own run, a stop between a run
//! and a reset, stops that get through a full real-time signal queue and
//! do not queue up, `stop()` called from a signal handler, and the signal
//! kvmini takes for stopping (an embedder's own handler for it is never
//! replaced).
//!
//! Whatever changes signal state or resource limits of the whole process
//! runs in a child process of this test binary: an ignored test of the
//! same name, run by [`in_child`]. Time limits here only catch hangs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{built_guest, kvm_or_skip, kvmini};

/// Longest anything here may take to end: a hang, not a slow host.
const HANG: Duration = Duration::from_secs(60);

/// The environment variable that names the child test to run.
const CHILD: &str = "KVMINI_STOP_CHILD";

/// Whether this process is the child that runs `name`.
fn is_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == name)
}

/// Waits for `child`; `None` if it was still running after [`HANG`] (it is
/// killed then).
fn wait_or_kill(child: &mut Child) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        if start.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The real-time signal the tests queue to fill the queue of pending
/// signals (never one kvmini uses).
fn filler_signal() -> i32 {
    libc::SIGRTMIN() + 5
}

fn block_on_this_thread(sig: i32) {
    // SAFETY: plain signal-set manipulation on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
            0
        );
    }
}

/// Lowers this process's limit of queued signals (soft and hard).
fn lower_sigpending(limit: u64) -> io::Result<()> {
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads one rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_SIGPENDING, &rlimit) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The limit of queued signals the children run with: small, so that a
/// few signals pending anywhere for this user fill it.
const LOW_SIGPENDING: u64 = 16;

/// A process of the same user that keeps the user's queue of pending
/// signals above [`LOW_SIGPENDING`] until it is dropped.
struct QueueFiller {
    child: Child,
}

impl QueueFiller {
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "--ignored",
                "--exact",
                "queue_filler",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "queue_filler")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the filler runs");
        let mut line = Vec::new();
        if let Some(mut stdout) = child.stdout.take() {
            let mut byte = [0u8];
            while !line.ends_with(b"queue full\n")
                && io::Read::read(&mut stdout, &mut byte).is_ok_and(|n| n == 1)
            {
                line.push(byte[0]);
            }
        }
        let filler = QueueFiller { child };
        assert!(
            line.ends_with(b"queue full\n"),
            "the filler never filled its queue"
        );
        filler
    }
}

impl Drop for QueueFiller {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = wait_or_kill(&mut self.child);
    }
}

/// The process [`QueueFiller`] starts: queues more signals than
/// [`LOW_SIGPENDING`] to itself, blocked, says so, and keeps them pending
/// until its stdin closes.
#[test]
#[ignore = "runs as a child of the queue tests"]
fn queue_filler() {
    if !is_child("queue_filler") {
        return;
    }
    block_on_this_thread(filler_signal());
    for _ in 0..4 * LOW_SIGPENDING {
        // SAFETY: the signal is blocked on this thread and stays pending.
        let sent = unsafe { libc::pthread_kill(libc::pthread_self(), filler_signal()) };
        assert_eq!(sent, 0);
    }
    println!("queue full");
    io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = io::Read::read_to_end(&mut io::stdin(), &mut rest);
}

#[test]
fn the_command_line_stops_with_the_signal_queue_full() {
    use std::os::unix::process::ExitStatusExt;
    if kvm_or_skip().is_none() {
        return;
    }
    let guest = built_guest("kvmini/tests/guests/embedding.c", &[]);
    let _filler = QueueFiller::start();
    let command = |options: &[&str]| {
        let mut command = kvmini();
        command
            .arg("run")
            .args(options)
            .arg(&guest)
            .args(["--", "loop"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // SAFETY: setrlimit is async-signal-safe and touches no memory of
        // the parent.
        unsafe {
            command.pre_exec(|| lower_sigpending(LOW_SIGPENDING));
        }
        command
    };
    let mut child = command(&["--timeout", "300ms"]).spawn().unwrap();
    let status = wait_or_kill(&mut child);
    assert_eq!(status.and_then(|s| s.code()), Some(124), "{status:?}");
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let mut child = command(&[]).spawn().unwrap();
        // The guest printed its line: it runs.
        let mut stdout = child.stdout.take().unwrap();
        let mut line = [0u8; 8];
        io::Read::read_exact(&mut stdout, &mut line).unwrap();
        assert_eq!(&line, b"looping\n");
        // SAFETY: the child is ours and has not been waited for.
        let sent = unsafe { libc::kill(libc::pid_t::try_from(child.id()).unwrap(), sig) };
        assert_eq!(sent, 0);
        let status = wait_or_kill(&mut child);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(code),
            "{sig}: {status:?} {:?}",
            status.and_then(|s| s.signal())
        );
    }
}
