//! Stopping a running guest from another thread or a signal handler:
//! timeouts, stop handles, Ctrl-C and SIGTERM.
//!
//! A stop sets `kvm_run.immediate_exit` (so a `KVM_RUN` that is about to
//! start returns at once) and sends the vCPU thread a signal (so one that
//! is running returns with EINTR), the method the KVM API documents for
//! this. The signal is a standard one ([`signal`], SIGURG unless the
//! embedding program chose another with [`use_signal`]): the kernel keeps
//! at most one of it pending per thread and delivers it whatever the
//! queue of pending real-time signals holds, so stops never queue up and a
//! full queue never refuses one.
//!
//! The same signal ends any host call the vCPU thread waits in (a write to
//! a pipe nobody reads, a read of a terminal, the open of a FIFO): the
//! handler is installed without `SA_RESTART`, so the call fails with EINTR
//! and kvmini's code sees the stop. A signal that lands just before the
//! thread enters such a call would be lost, so the stop is sent again at
//! short intervals until the run ends (the `kvmini-stop` thread). The
//! thread's signal mask is set for each run, whatever the thread inherited.
//!
//! Each sandbox has a handle of its own that only kvmini holds; the one an
//! embedding program gives it (or gets from it) reaches it only while a
//! run is in progress, so one handle may stop many sandboxes and a
//! timeout, sent to the sandbox's own handle, stops no other.
//! [`StopHandle::stop`] takes no lock and allocates nothing: it is safe in
//! a signal handler.

mod kick;
mod links;
mod rekick;

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kick::{claim_signal, set_kick_blocked, unblock_kick, SUITABLE_NAMES};
pub use kick::{kick_thread, prepare_thread, signal, use_signal};
use links::{Link, Links, Target};
use rekick::{start_rekicker, wake_rekicker, RUNNING};

/// Why a guest was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// It ran past its time limit.
    Timeout,
    /// kvmini received this signal (SIGINT, SIGTERM).
    Signal(i32),
}

const NO_STOP: i32 = 0;
const TIMEOUT: i32 = -1;

impl StopReason {
    fn encode(self) -> i32 {
        match self {
            StopReason::Timeout => TIMEOUT,
            StopReason::Signal(sig) => sig,
        }
    }

    fn decode(raw: i32) -> Option<Self> {
        match raw {
            NO_STOP => None,
            TIMEOUT => Some(StopReason::Timeout),
            sig => Some(StopReason::Signal(sig)),
        }
    }
}

/// Errors of the stop signal and of starting a run that a stop can reach.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The embedding program has its own handler for the signal kvmini
    /// stops runs with: kvmini does not replace it, and runs nothing it
    /// could not stop.
    #[error(
        "signal {0} has a handler kvmini did not install; kvmini stops runs with it \
         (give it back with SIG_DFL, or choose another with kvmini::stop::use_signal)"
    )]
    SignalTaken(i32),
    /// A signal that cannot stop runs: real-time signals are queued (a full
    /// queue refuses them), and the others are uncatchable, the CPU's own
    /// faults, or kept for job control, children and pipes.
    #[error("signal {0} cannot stop runs; choose one of {SUITABLE_NAMES}")]
    Unsuitable(i32),
    /// The stop signal is chosen once, before the first run.
    #[error("kvmini already stops runs with signal {0}; choose the signal before the first run")]
    InUse(i32),
    /// The thread that sends stops again could not be started.
    #[error("cannot start the kvmini-stop thread")]
    Thread(#[source] std::io::Error),
}

struct Inner {
    reason: AtomicI32,
    /// The run in progress, for a sandbox's own handle.
    target: Target,
    /// The sandboxes' own handles of the runs in progress this handle
    /// stops.
    runs: Links,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            reason: AtomicI32::new(NO_STOP),
            target: Target::new(),
            runs: Links::new(),
        }
    }
}

impl Inner {
    /// Records `reason` unless a reason is recorded already: the first one
    /// wins.
    fn record(&self, reason: StopReason) {
        let _ = self.reason.compare_exchange(
            NO_STOP,
            reason.encode(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Records `reason` (the first one wins) and signals the run.
    fn stop(&self, reason: StopReason) {
        self.record(reason);
        self.target.kick();
    }
}

/// A handle that stops runs from any thread, or from a signal handler.
/// Cloning it is cheap; every clone is the same handle.
///
/// A handle stops every run in progress of the sandboxes it was given to
/// (or taken from): sharing one among sandboxes means "stop all of them".
/// With no run in progress, a stop is pending and ends the next run of any
/// of them as soon as it starts. A timeout is never sent through it: it
/// stops its own sandbox's run only.
#[derive(Clone, Default)]
pub struct StopHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("pending", &self.pending())
            .finish()
    }
}

impl StopHandle {
    /// A handle with no stop pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops every run in progress of this handle's sandboxes, or the next
    /// run to start if none is in progress. The first reason given wins.
    ///
    /// Async-signal-safe: it takes no lock and allocates nothing (atomics,
    /// `tgkill` and a futex wake), so a signal handler may call it.
    pub fn stop(&self, reason: StopReason) {
        let inner = &self.inner;
        inner.stop(reason);
        let reached = inner.runs.for_each(|run| run.stop(reason));
        if reached {
            // Used up by the runs it reached; a run that starts from now on
            // is not stopped by it.
            inner.reason.store(NO_STOP, Ordering::SeqCst);
        }
        wake_rekicker();
    }

    /// The stop that is pending, if any.
    pub fn pending(&self) -> Option<StopReason> {
        StopReason::decode(self.inner.reason.load(Ordering::SeqCst))
    }

    /// Takes the pending stop, so that the next run starts clean.
    pub(crate) fn take(&self) -> Option<StopReason> {
        StopReason::decode(self.inner.reason.swap(NO_STOP, Ordering::SeqCst))
    }

    /// Registers the calling thread as the vCPU thread until the guard is
    /// dropped, with the stop signal unblocked on it whatever mask it
    /// inherited. `immediate_exit` must point at the vCPU's
    /// `kvm_run.immediate_exit` and stay valid while the guard lives.
    pub(crate) fn attach(&self, immediate_exit: *mut u8) -> RunGuard<'_> {
        let reblock = unblock_kick();
        let target = &self.inner.target;
        // A sandbox runs one run at a time: its own handle's slot is free.
        let claimed = target.state.claim();
        if claimed {
            // SAFETY: getpid and gettid have no preconditions.
            let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
            target.pid.store(pid, Ordering::SeqCst);
            target.tid.store(tid, Ordering::SeqCst);
            target
                .immediate_exit
                .store(immediate_exit, Ordering::SeqCst);
            target.state.open();
            if self.pending().is_some() {
                target.kick();
            }
        }
        RunGuard {
            handle: self,
            reblock,
            claimed,
        }
    }
}

/// Unregisters the vCPU thread when a run ends, and puts back the mask it
/// had.
pub(crate) struct RunGuard<'a> {
    handle: &'a StopHandle,
    /// The stop signal was blocked before the run.
    reblock: bool,
    claimed: bool,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if self.claimed {
            self.handle.inner.target.state.close();
        }
        if self.reblock {
            set_kick_blocked(libc::SIG_BLOCK);
        }
    }
}

/// A run in progress, linked to the handle the embedding program stops it
/// with: made by [`begin_run`] on the caller's thread, before the run, and
/// unlinked when dropped (a run that panicked included).
pub(crate) struct Run<'a> {
    shared: &'a StopHandle,
    own: &'a StopHandle,
    links: Option<(&'a Link, &'static Link)>,
}

/// Prepares a run of the sandbox whose own handle is `own` and that
/// `shared` stops: the stop signal is kvmini's (or the run is refused),
/// the thread that sends stops again runs, and `shared` reaches the run
/// (a stop pending on it moves to the run). Called on the caller's thread,
/// which may start threads.
pub(crate) fn begin_run<'a>(
    shared: &'a StopHandle,
    own: &'a StopHandle,
) -> Result<Run<'a>, StopError> {
    claim_signal()?;
    start_rekicker()?;
    let running = RUNNING.link(&own.inner);
    let linked = shared.inner.runs.link(&own.inner);
    // Linked first, then checked: a concurrent stop either finds the link
    // or leaves its reason for this check.
    if let Some(reason) = shared.take() {
        own.inner.stop(reason);
    }
    Ok(Run {
        shared,
        own,
        links: Some((linked, running)),
    })
}

impl Run<'_> {
    fn unlink(&mut self) {
        if let Some((linked, running)) = self.links.take() {
            Links::unlink(linked);
            Links::unlink(running);
        }
    }

    /// Ends the run: `shared` no longer reaches it, and the sandbox's own
    /// handle starts the next run clean. `stopped` says whether the run
    /// ended by its stop (or failed after one); a stop that came while it
    /// ended some other way is pending again on `shared`, for the next
    /// run; a timeout never outlives its run.
    pub(crate) fn end(mut self, stopped: bool) {
        self.unlink();
        if let Some(StopReason::Signal(sig)) = self.own.take() {
            if !stopped {
                self.shared.inner.record(StopReason::Signal(sig));
            }
        }
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        self.unlink();
        self.own.take();
    }
}

/// Errors of parsing a duration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: expected a positive number with a unit, e.g. 500ms, 5s, 2m, 1h")]
pub struct DurationError(pub String);

/// Parses `500ms`, `5s`, `2m`, `1h` or `1.5s` (a bare number means seconds).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError(text.to_owned());
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let seconds = value * scale;
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "-1", "0", "0s", "abc", "5x", "1e400", "-5s", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_reason_wins_and_take_clears_it() {
        let handle = StopHandle::new();
        assert_eq!(handle.pending(), None);
        handle.stop(StopReason::Signal(libc::SIGINT));
        handle.stop(StopReason::Timeout);
        assert_eq!(handle.take(), Some(StopReason::Signal(libc::SIGINT)));
        assert_eq!(handle.pending(), None);
    }
}
