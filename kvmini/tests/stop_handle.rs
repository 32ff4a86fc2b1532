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
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{built_guest, kvm_or_skip};
use kvmini::kvm::Kvm;
use kvmini::output::{Capture, Input, Output};
use kvmini::sandbox::{Ending, Outcome, Sandbox, SandboxBuilder, SandboxError};
use kvmini::stop::{StopError, StopHandle, StopReason};

/// Longest anything here may take to end: a hang, not a slow host.
const HANG: Duration = Duration::from_secs(60);

/// The signal kvmini stops runs with.
fn kick_signal() -> i32 {
    kvmini::stop::signal()
}

/// `tests/guests/embedding.c`: its `loop` part prints "looping\n" and
/// then spins without exits.
fn embedding_guest() -> Vec<u8> {
    std::fs::read(built_guest("kvmini/tests/guests/embedding.c", &[]))
        .expect("the built guest is readable")
}

/// `tests/guests/stopping.c`: `exit N`, `host`, `console`.
fn stopping_guest() -> Vec<u8> {
    std::fs::read(built_guest("kvmini/tests/guests/stopping.c", &[]))
        .expect("the built guest is readable")
}

/// A guest that prints "looping\n" into `out`, then spins without exits.
fn looping(out: &Capture) -> SandboxBuilder {
    Sandbox::builder()
        .elf(embedding_guest())
        .args(["embedding", "loop"])
        .stdin(Input::Null)
        .stdout(Output::Capture(out.clone()))
}

/// A guest that exits with `code` at once.
fn exiting(code: u8) -> SandboxBuilder {
    Sandbox::builder()
        .elf(stopping_guest())
        .args(["stopping".to_owned(), "exit".to_owned(), code.to_string()])
        .stdin(Input::Null)
        .stdout(Output::Null)
}

/// Waits until the guest writing into `out` has printed "looping\n": its
/// run is in progress.
fn wait_looping(out: &Capture) {
    let start = Instant::now();
    while out.contents() != b"looping\n" {
        assert!(start.elapsed() < HANG, "the guest never started");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs `sandbox` on a thread of its own; the outcome comes on the
/// receiver. A run that never ends leaves its thread behind (the test
/// fails on it, and the process ends with the test run).
fn spawn_run(mut sandbox: Sandbox) -> Receiver<Outcome> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let outcome = sandbox.run().expect("the run loop does not fail");
        let _ = send.send(outcome);
    });
    receive
}

/// The outcome of a run started with [`spawn_run`], failing if it hangs.
fn outcome(run: &Receiver<Outcome>, what: &str) -> Ending {
    match run.recv_timeout(HANG) {
        Ok(outcome) => outcome.ending,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: still running after {HANG:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the run failed"),
    }
}

// ---------------------------------------------------------------------------
// Sharing a stop handle

/// How a second sandbox comes to share the first one's handle.
#[derive(Clone, Copy, Debug)]
enum Shared {
    /// Both built with `.stop_handle(h.clone())`.
    Explicit,
    /// The second built with the first one's `stop_handle()`.
    FromSandbox,
}

fn share(shared: Shared, first: &Sandbox, explicit: &StopHandle) -> StopHandle {
    match shared {
        Shared::Explicit => explicit.clone(),
        Shared::FromSandbox => first.stop_handle(),
    }
}

#[test]
fn a_run_that_ends_leaves_other_runs_of_its_handle_stoppable() {
    let Some(kvm) = kvm_or_skip() else { return };
    let limit = Duration::from_millis(1500);
    for shared in [Shared::Explicit, Shared::FromSandbox] {
        for (other_timeout, other_seccomp) in [(None, true), (Some(HANG), true), (None, false)] {
            let what =
                format!("{shared:?}, other timeout {other_timeout:?} seccomp {other_seccomp}");
            let handle = StopHandle::new();
            let out = Capture::new();
            let looper = looping(&out)
                .timeout(limit)
                .stop_handle(handle.clone())
                .build(&kvm)
                .expect("the sandbox is built");
            let mut other = exiting(3)
                .stop_handle(share(shared, &looper, &handle))
                .seccomp(other_seccomp);
            if let Some(t) = other_timeout {
                other = other.timeout(t);
            }
            let mut other = other.build(&kvm).expect("the sandbox is built");
            let run = spawn_run(looper);
            wait_looping(&out);
            // Two runs of the other one, each ending while the loop goes on.
            assert_eq!(other.run().unwrap().ending, Ending::Exited(3), "{what}");
            assert_eq!(outcome(&run, &what), Ending::TimedOut(limit), "{what}");
        }
    }
}

#[test]
fn runs_sharing_a_handle_each_end_at_their_own_timeout() {
    let Some(kvm) = kvm_or_skip() else { return };
    let handle = StopHandle::new();
    let limits = [
        Some(Duration::from_secs(1)),
        None,
        Some(Duration::from_millis(300)),
    ];
    let mut runs = Vec::new();
    for (i, limit) in limits.iter().enumerate() {
        let out = Capture::new();
        let mut builder = looping(&out).stop_handle(handle.clone()).seccomp(i != 2);
        if let Some(limit) = limit {
            builder = builder.timeout(*limit);
        }
        let run = spawn_run(builder.build(&kvm).expect("the sandbox is built"));
        wait_looping(&out);
        runs.push(run);
    }
    assert_eq!(
        outcome(&runs[0], "1 s"),
        Ending::TimedOut(Duration::from_secs(1))
    );
    assert_eq!(
        outcome(&runs[2], "300 ms"),
        Ending::TimedOut(Duration::from_millis(300))
    );
    // Neither timeout stopped the run that has none.
    assert_eq!(
        runs[1]
            .recv_timeout(Duration::from_millis(200))
            .map(|o| o.ending),
        Err(RecvTimeoutError::Timeout)
    );
    handle.stop(StopReason::Signal(libc::SIGINT));
    assert_eq!(
        outcome(&runs[1], "no timeout"),
        Ending::Stopped(libc::SIGINT)
    );
    assert_eq!(handle.pending(), None);
}

#[test]
fn a_stop_through_a_shared_handle_stops_every_run_in_progress() {
    let Some(kvm) = kvm_or_skip() else { return };
    let handle = StopHandle::new();
    let mut runs = Vec::new();
    for seccomp in [true, true, false] {
        let out = Capture::new();
        let sandbox = looping(&out)
            .stop_handle(handle.clone())
            .seccomp(seccomp)
            .build(&kvm)
            .expect("the sandbox is built");
        runs.push(spawn_run(sandbox));
        wait_looping(&out);
    }
    handle.stop(StopReason::Signal(libc::SIGTERM));
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(
            outcome(run, &format!("run {i}")),
            Ending::Stopped(libc::SIGTERM)
        );
    }
    // The stop was used up by the runs it stopped.
    assert_eq!(handle.pending(), None);
    let mut after = exiting(4)
        .stop_handle(handle.clone())
        .build(&kvm)
        .expect("the sandbox is built");
    assert_eq!(after.run().unwrap().ending, Ending::Exited(4));
}

#[test]
fn a_stop_with_no_run_in_progress_stops_the_next_run_only() {
    let Some(kvm) = kvm_or_skip() else { return };
    let handle = StopHandle::new();
    let mut first = exiting(3)
        .stop_handle(handle.clone())
        .build(&kvm)
        .expect("the sandbox is built");
    let mut second = exiting(4)
        .stop_handle(handle.clone())
        .timeout(HANG)
        .build(&kvm)
        .expect("the sandbox is built");
    handle.stop(StopReason::Signal(libc::SIGINT));
    assert_eq!(handle.pending(), Some(StopReason::Signal(libc::SIGINT)));
    assert_eq!(first.run().unwrap().ending, Ending::Stopped(libc::SIGINT));
    assert_eq!(handle.pending(), None);
    assert_eq!(second.run().unwrap().ending, Ending::Exited(4));
}

// ---------------------------------------------------------------------------
// Between a run and a reset

#[test]
fn a_stop_between_a_run_and_a_reset_stops_the_next_run() {
    let Some(kvm) = kvm_or_skip() else { return };
    for own_handle in [true, false] {
        for before_reset in [true, false] {
            let what = format!("own handle {own_handle}, stop before reset {before_reset}");
            let explicit = StopHandle::new();
            let mut builder = exiting(3).reusable(true);
            if !own_handle {
                builder = builder.stop_handle(explicit.clone());
            }
            let mut sandbox = builder.build(&kvm).expect("the sandbox is built");
            let handle = if own_handle {
                sandbox.stop_handle()
            } else {
                explicit
            };
            assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(3), "{what}");
            if before_reset {
                handle.stop(StopReason::Signal(libc::SIGINT));
                sandbox.reset().unwrap();
            } else {
                sandbox.reset().unwrap();
                handle.stop(StopReason::Signal(libc::SIGINT));
            }
            assert_eq!(
                handle.pending(),
                Some(StopReason::Signal(libc::SIGINT)),
                "{what}"
            );
            assert_eq!(
                sandbox.run().unwrap().ending,
                Ending::Stopped(libc::SIGINT),
                "{what}"
            );
            // The stop that ended that run does not carry over.
            assert_eq!(handle.pending(), None, "{what}");
            assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(3), "{what}");
            sandbox.reset().unwrap();
            assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(3), "{what}");
        }
    }
}

/// The `host` part of `stopping.c` calls host function 1 (here: it tells
/// the test it was called, then waits for `release` or `wait`, whichever
/// comes first) and 2, and exits 0.
fn host_waiter(entered: mpsc::Sender<()>, release: Receiver<()>, wait: Duration) -> SandboxBuilder {
    Sandbox::builder()
        .elf(stopping_guest())
        .args(["stopping", "host"])
        .stdin(Input::Null)
        .stdout(Output::Null)
        .reusable(true)
        .host_function(1, move |_| {
            let _ = entered.send(());
            let _ = release.recv_timeout(wait);
            Ok(0)
        })
        .host_function(2, |_| Ok(0))
}

#[test]
fn a_stop_or_timeout_that_ended_a_run_does_not_carry_over_to_the_next() {
    let Some(kvm) = kvm_or_skip() else { return };
    // A stop that came while the run waited in a host function.
    let (entered, was_entered) = mpsc::channel();
    let (release, released) = mpsc::channel();
    let mut sandbox = host_waiter(entered, released, HANG)
        .build(&kvm)
        .expect("the sandbox is built");
    let handle = sandbox.stop_handle();
    std::thread::scope(|scope| {
        let run = scope.spawn(|| sandbox.run().unwrap().ending);
        was_entered
            .recv_timeout(HANG)
            .expect("the host function runs");
        handle.stop(StopReason::Signal(libc::SIGTERM));
        release.send(()).unwrap();
        assert_eq!(run.join().unwrap(), Ending::Stopped(libc::SIGTERM));
    });
    sandbox.reset().unwrap();
    release.send(()).unwrap();
    assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(0));
    assert_eq!(handle.pending(), None);

    // A timeout that passed while the run waited in a host function.
    let limit = Duration::from_secs(1);
    let (entered, _was_entered) = mpsc::channel();
    let (release, released) = mpsc::channel();
    let mut sandbox = host_waiter(entered, released, Duration::from_secs(4))
        .timeout(limit)
        .build(&kvm)
        .expect("the sandbox is built");
    assert_eq!(sandbox.run().unwrap().ending, Ending::TimedOut(limit));
    sandbox.reset().unwrap();
    release.send(()).unwrap();
    assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(0));
}

// ---------------------------------------------------------------------------
// Child processes

/// The environment variable that names the child test to run.
const CHILD: &str = "KVMINI_STOP_CHILD";

/// Whether this process is the child that runs `name`.
fn is_child(name: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v == name)
}

/// Runs the ignored test `name` of this binary in a child process and
/// fails with its output unless it passed.
fn in_child(name: &str) {
    let out = tempfile::NamedTempFile::new().expect("a file for the child's output");
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--ignored",
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, name)
        .stdin(Stdio::null())
        .stdout(out.reopen().expect("reopen"))
        .stderr(out.reopen().expect("reopen"))
        .spawn()
        .expect("the child runs");
    let status = wait_or_kill(&mut child);
    let output = std::fs::read_to_string(out.path()).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "{name}: {status:?}\n{output}"
    );
    assert!(output.contains("1 passed"), "{name} did not run:\n{output}");
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

/// Blocks the filler signal on this thread and queues it to this thread
/// until the queue is full (`EAGAIN`); returns how many were queued.
fn fill_signal_queue() -> usize {
    block_on_this_thread(filler_signal());
    let mut queued = 0;
    loop {
        // SAFETY: sends a blocked signal to this thread, where it stays
        // pending.
        let sent = unsafe { libc::pthread_kill(libc::pthread_self(), filler_signal()) };
        match sent {
            0 => queued += 1,
            libc::EAGAIN => return queued,
            other => panic!("pthread_kill: {other}"),
        }
        assert!(queued < 1_000_000, "the signal queue never filled");
    }
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

// ---------------------------------------------------------------------------
// A full signal queue, and stops that do not queue up

/// Runs, with the user's signal queue full: a loop ends at its timeout
/// (with and without the seccomp filter) and at a stop handle.
fn runs_end_with_the_queue_full(kvm: &Kvm) {
    // The queue is full: a real-time signal cannot be queued.
    block_on_this_thread(filler_signal());
    // SAFETY: the signal is blocked on this thread.
    let sent = unsafe { libc::pthread_kill(libc::pthread_self(), filler_signal()) };
    assert_eq!(sent, libc::EAGAIN, "the queue is not full");
    let limit = Duration::from_millis(500);
    for seccomp in [true, false] {
        let out = Capture::new();
        let mut sandbox = looping(&out)
            .timeout(limit)
            .seccomp(seccomp)
            .build(kvm)
            .expect("the sandbox is built");
        assert_eq!(
            sandbox.run().unwrap().ending,
            Ending::TimedOut(limit),
            "seccomp {seccomp}"
        );
    }
    let out = Capture::new();
    let sandbox = looping(&out).build(kvm).expect("the sandbox is built");
    let handle = sandbox.stop_handle();
    let run = spawn_run(sandbox);
    wait_looping(&out);
    handle.stop(StopReason::Signal(libc::SIGTERM));
    assert_eq!(outcome(&run, "stop handle"), Ending::Stopped(libc::SIGTERM));
}

#[test]
#[ignore = "runs as a child of a_full_signal_queue_does_not_defeat_a_stop"]
fn queue_filled_by_this_process() {
    if !is_child("queue_filled_by_this_process") {
        return;
    }
    let kvm = Kvm::open().expect("KVM");
    lower_sigpending(LOW_SIGPENDING).expect("setrlimit");
    fill_signal_queue();
    runs_end_with_the_queue_full(&kvm);
}

#[test]
#[ignore = "runs as a child of a_full_signal_queue_does_not_defeat_a_stop"]
fn queue_filled_by_another_process() {
    if !is_child("queue_filled_by_another_process") {
        return;
    }
    let kvm = Kvm::open().expect("KVM");
    lower_sigpending(LOW_SIGPENDING).expect("setrlimit");
    runs_end_with_the_queue_full(&kvm);
}

#[test]
fn a_full_signal_queue_does_not_defeat_a_stop() {
    if kvm_or_skip().is_none() {
        return;
    }
    in_child("queue_filled_by_this_process");
    let _filler = QueueFiller::start();
    in_child("queue_filled_by_another_process");
}

/// A writer that, the first time it is written, blocks the stop signal on
/// its thread (the vCPU thread), tells the test, waits for it, then counts
/// how many stop signals are pending there and unblocks it.
struct Counting {
    first: bool,
    waiting: mpsc::Sender<()>,
    go: Receiver<()>,
    pending: mpsc::Sender<usize>,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if std::mem::take(&mut self.first) {
            let kick = kick_signal();
            // SAFETY: signal-set manipulation on this thread, and a
            // sigtimedwait that does not wait (a zero timeout).
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, kick);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                let _ = self.waiting.send(());
                let _ = self.go.recv_timeout(HANG);
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                let mut count = 0;
                while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == kick {
                    count += 1;
                }
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                let _ = self.pending.send(count);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn repeated_stops_leave_one_signal_pending() {
    let Some(kvm) = kvm_or_skip() else { return };
    let (waiting, is_waiting) = mpsc::channel();
    let (go, goes) = mpsc::channel();
    let (pending, pending_count) = mpsc::channel();
    let writer = Counting {
        first: true,
        waiting,
        go: goes,
        pending,
    };
    // Without the filter, to count with sigtimedwait on the vCPU thread.
    let sandbox = Sandbox::builder()
        .elf(stopping_guest())
        .args(["stopping", "console"])
        .stdin(Input::Null)
        .stdout(Output::Writer(Box::new(writer)))
        .seccomp(false)
        .build(&kvm)
        .expect("the sandbox is built");
    let handle = sandbox.stop_handle();
    let run = spawn_run(sandbox);
    is_waiting.recv_timeout(HANG).expect("the guest writes");
    for _ in 0..1000 {
        handle.stop(StopReason::Signal(libc::SIGTERM));
    }
    // Long enough for the stop to be sent again many times.
    std::thread::sleep(Duration::from_millis(300));
    go.send(()).unwrap();
    assert_eq!(pending_count.recv_timeout(HANG), Ok(1));
    assert_eq!(outcome(&run, "console"), Ending::Stopped(libc::SIGTERM));
}

// ---------------------------------------------------------------------------
// stop() from a signal handler

/// The handle the signal handler below stops.
static HANDLER_STOPS: OnceLock<StopHandle> = OnceLock::new();
/// How often the handler ran.
static HANDLED: AtomicU32 = AtomicU32::new(0);

extern "C" fn stop_from_handler(sig: libc::c_int) {
    if let Some(handle) = HANDLER_STOPS.get() {
        handle.stop(StopReason::Signal(sig));
    }
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// Installs `handler` for `sig` with sigaction; returns the action before.
fn install(sig: i32, handler: libc::sighandler_t, flags: libc::c_int) -> libc::sigaction {
    // SAFETY: a zeroed sigaction with an empty mask is valid; `handler` is
    // a function of the right type, SIG_DFL or SIG_IGN.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = flags;
        libc::sigemptyset(&mut action.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, &action, &mut old), 0);
        old
    }
}

/// The handler installed for `sig` now.
fn handler_of(sig: i32) -> libc::sighandler_t {
    // SAFETY: a null new action only reads the current one.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, std::ptr::null(), &mut old), 0);
        old.sa_sigaction
    }
}

fn stop_from_handler_address() -> libc::sighandler_t {
    stop_from_handler as extern "C" fn(libc::c_int) as libc::sighandler_t
}

/// Sends SIGUSR1 to `thread` every few microseconds until `done`.
fn storm(thread: libc::pthread_t, done: &AtomicBool) -> u32 {
    let mut sent = 0;
    while !done.load(Ordering::SeqCst) {
        // SAFETY: the thread is alive until `done` is set.
        assert_eq!(unsafe { libc::pthread_kill(thread, libc::SIGUSR1) }, 0);
        sent += 1;
        std::thread::sleep(Duration::from_micros(50));
    }
    sent
}

#[test]
#[ignore = "runs as a child of stop_is_safe_to_call_from_a_signal_handler"]
fn stop_from_a_signal_handler() {
    if !is_child("stop_from_a_signal_handler") {
        return;
    }
    let kvm = Kvm::open().expect("KVM");
    let handle = HANDLER_STOPS.get_or_init(StopHandle::new);
    install(libc::SIGUSR1, stop_from_handler_address(), libc::SA_RESTART);

    // The handler interrupts a thread that is calling stop() itself, over
    // and over.
    let done = AtomicBool::new(false);
    let (tell, thread) = mpsc::channel();
    std::thread::scope(|scope| {
        let stopper = scope.spawn(|| {
            // SAFETY: pthread_self has no preconditions.
            tell.send(unsafe { libc::pthread_self() }).unwrap();
            let mut calls = 0u64;
            while !done.load(Ordering::SeqCst) {
                handle.stop(StopReason::Signal(libc::SIGUSR1));
                calls += 1;
            }
            calls
        });
        let thread = thread.recv().unwrap();
        let start = Instant::now();
        while HANDLED.load(Ordering::SeqCst) < 2000 && start.elapsed() < HANG {
            // SAFETY: the stopper runs until `done` is set.
            assert_eq!(unsafe { libc::pthread_kill(thread, libc::SIGUSR1) }, 0);
            std::thread::sleep(Duration::from_micros(50));
        }
        done.store(true, Ordering::SeqCst);
        assert!(stopper.join().unwrap() > 0);
    });
    assert!(HANDLED.load(Ordering::SeqCst) >= 2000);
    // The stop is pending for the next run.
    let mut next = exiting(3)
        .stop_handle(handle.clone())
        .build(&kvm)
        .expect("the sandbox is built");
    assert_eq!(next.run().unwrap().ending, Ending::Stopped(libc::SIGUSR1));

    // The handler interrupts a thread that starts and ends runs (on itself,
    // without the filter, and on a vCPU thread) over and over. Each run
    // ends by itself or by the handler's stop, whichever comes first.
    for seccomp in [false, true] {
        let done = AtomicBool::new(false);
        let (tell, thread) = mpsc::channel();
        let endings = std::thread::scope(|scope| {
            let runner = scope.spawn(|| {
                // SAFETY: pthread_self has no preconditions.
                tell.send(unsafe { libc::pthread_self() }).unwrap();
                let mut sandbox = exiting(3)
                    .stop_handle(handle.clone())
                    .seccomp(seccomp)
                    .reusable(true)
                    .build(&kvm)
                    .expect("the sandbox is built");
                let mut endings = Vec::new();
                for _ in 0..200 {
                    endings.push(sandbox.run().unwrap().ending);
                    sandbox.reset().unwrap();
                }
                endings
            });
            let thread = thread.recv().unwrap();
            let done = &done;
            let sender = scope.spawn(move || storm(thread, done));
            let endings = runner.join().unwrap();
            done.store(true, Ordering::SeqCst);
            assert!(sender.join().unwrap() > 0);
            endings
        });
        for ending in &endings {
            assert!(
                matches!(ending, Ending::Exited(3) | Ending::Stopped(libc::SIGUSR1)),
                "{ending:?}"
            );
        }
    }
    // Use up a stop the storm may have left pending.
    let _ = exiting(3)
        .stop_handle(handle.clone())
        .build(&kvm)
        .expect("the sandbox is built")
        .run();

    // The handler running on the thread that waits for a run (and, without
    // the filter, on the thread in KVM_RUN) stops the run.
    for seccomp in [true, false] {
        let out = Capture::new();
        let mut sandbox = looping(&out)
            .stop_handle(handle.clone())
            .seccomp(seccomp)
            .build(&kvm)
            .expect("the sandbox is built");
        let (tell, thread) = mpsc::channel();
        let ending = std::thread::scope(|scope| {
            let runner = scope.spawn(|| {
                // SAFETY: pthread_self has no preconditions.
                tell.send(unsafe { libc::pthread_self() }).unwrap();
                sandbox.run().unwrap().ending
            });
            let thread = thread.recv().unwrap();
            wait_looping(&out);
            // SAFETY: the runner lives until its run ends.
            assert_eq!(unsafe { libc::pthread_kill(thread, libc::SIGUSR1) }, 0);
            runner.join().unwrap()
        });
        assert_eq!(ending, Ending::Stopped(libc::SIGUSR1), "seccomp {seccomp}");
    }

    // And timeouts still work.
    let limit = Duration::from_millis(300);
    let out = Capture::new();
    let mut sandbox = looping(&out)
        .stop_handle(handle.clone())
        .timeout(limit)
        .build(&kvm)
        .expect("the sandbox is built");
    assert_eq!(sandbox.run().unwrap().ending, Ending::TimedOut(limit));
}

#[test]
fn stop_is_safe_to_call_from_a_signal_handler() {
    if kvm_or_skip().is_none() {
        return;
    }
    in_child("stop_from_a_signal_handler");
}

// ---------------------------------------------------------------------------
// The signal kvmini takes

static EMBEDDER_HANDLED: AtomicU32 = AtomicU32::new(0);

extern "C" fn embedders_handler(_: libc::c_int) {
    EMBEDDER_HANDLED.fetch_add(1, Ordering::SeqCst);
}

fn embedders_handler_address() -> libc::sighandler_t {
    embedders_handler as extern "C" fn(libc::c_int) as libc::sighandler_t
}

/// Sends `sig` to this thread: the handler runs before this returns.
fn raise_here(sig: i32) {
    // SAFETY: raises a signal whose handler is installed.
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

fn assert_taken(result: Result<Outcome, SandboxError>, sig: i32) {
    match result {
        Err(SandboxError::Stop(StopError::SignalTaken(taken))) => assert_eq!(taken, sig),
        other => panic!("expected the signal to be refused, got {other:?}"),
    }
}

#[test]
#[ignore = "runs as a child of an_embedders_handler_for_the_stop_signal_is_never_replaced"]
fn handler_before_the_first_run() {
    if !is_child("handler_before_the_first_run") {
        return;
    }
    let kvm = Kvm::open().expect("KVM");
    let sig = kick_signal();
    install(sig, embedders_handler_address(), libc::SA_RESTART);
    let mut sandbox = exiting(3).build(&kvm).expect("the sandbox is built");
    assert_taken(sandbox.run(), sig);
    // The embedder's handler is still there, and still runs.
    assert_eq!(handler_of(sig), embedders_handler_address());
    raise_here(sig);
    assert_eq!(EMBEDDER_HANDLED.load(Ordering::SeqCst), 1);
    // Given back (default, or ignored), kvmini takes it.
    for free in [libc::SIG_IGN, libc::SIG_DFL] {
        install(sig, free, 0);
        let limit = Duration::from_millis(300);
        let out = Capture::new();
        let mut looper = looping(&out)
            .timeout(limit)
            .build(&kvm)
            .expect("the sandbox is built");
        assert_eq!(looper.run().unwrap().ending, Ending::TimedOut(limit));
        assert_ne!(handler_of(sig), free);
    }
    assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(3));
}

#[test]
#[ignore = "runs as a child of an_embedders_handler_for_the_stop_signal_is_never_replaced"]
fn handler_after_the_first_run() {
    if !is_child("handler_after_the_first_run") {
        return;
    }
    let kvm = Kvm::open().expect("KVM");
    let sig = kick_signal();
    let mut first = exiting(3).build(&kvm).expect("the sandbox is built");
    assert_eq!(first.run().unwrap().ending, Ending::Exited(3));
    let kvminis = handler_of(sig);
    install(sig, embedders_handler_address(), libc::SA_RESTART);
    let mut second = exiting(4).build(&kvm).expect("the sandbox is built");
    assert_taken(second.run(), sig);
    assert_eq!(handler_of(sig), embedders_handler_address());
    raise_here(sig);
    assert_eq!(EMBEDDER_HANDLED.load(Ordering::SeqCst), 1);
    // Put back as it was, kvmini's handler serves again.
    // SAFETY: reinstalls the action kvmini had installed.
    install(sig, kvminis, 0);
    assert_eq!(second.run().unwrap().ending, Ending::Exited(4));
}

#[test]
#[ignore = "runs as a child of an_embedders_handler_for_the_stop_signal_is_never_replaced"]
fn embedder_chooses_the_signal() {
    if !is_child("embedder_chooses_the_signal") {
        return;
    }
    let kvm = Kvm::open().expect("KVM");
    let default = kick_signal();
    // Queued, uncatchable, or the CPU's own faults: refused.
    for unsuitable in [
        libc::SIGRTMIN() + 3,
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGCHLD,
        libc::SIGPIPE,
        0,
        65,
    ] {
        assert!(
            matches!(
                kvmini::stop::use_signal(unsuitable),
                Err(StopError::Unsuitable(s)) if s == unsuitable
            ),
            "{unsuitable}"
        );
    }
    install(default, embedders_handler_address(), libc::SA_RESTART);
    kvmini::stop::use_signal(libc::SIGUSR2).expect("SIGUSR2 may be chosen");
    assert_eq!(kick_signal(), libc::SIGUSR2);
    let limit = Duration::from_millis(300);
    let out = Capture::new();
    let mut looper = looping(&out)
        .timeout(limit)
        .build(&kvm)
        .expect("the sandbox is built");
    assert_eq!(looper.run().unwrap().ending, Ending::TimedOut(limit));
    // The default signal is still the embedder's; SIGUSR2 is kvmini's.
    assert_eq!(handler_of(default), embedders_handler_address());
    assert_ne!(handler_of(libc::SIGUSR2), libc::SIG_DFL);
    // Once used, the choice is final.
    assert!(matches!(
        kvmini::stop::use_signal(libc::SIGUSR1),
        Err(StopError::InUse(s)) if s == libc::SIGUSR2
    ));
    kvmini::stop::use_signal(libc::SIGUSR2).expect("the same choice again");
}

#[test]
fn an_embedders_handler_for_the_stop_signal_is_never_replaced() {
    if kvm_or_skip().is_none() {
        return;
    }
    in_child("handler_before_the_first_run");
    in_child("handler_after_the_first_run");
    in_child("embedder_chooses_the_signal");
}

#[test]
fn kvmini_stops_runs_with_sigurg() {
    assert_eq!(kick_signal(), libc::SIGURG);
}
