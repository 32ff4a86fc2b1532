//! Stopping a running guest from another thread: timeouts, Ctrl-C and
//! SIGTERM. A stop sets `kvm_run.immediate_exit` (so a `KVM_RUN` that is
//! about to start returns at once) and sends the vCPU thread a signal (so
//! one that is running returns with EINTR), the method the KVM API
//! documents for this.
//!
//! The same signal ends any host call the vCPU thread waits in (a write to
//! a pipe nobody reads, a read of a terminal, the open of a FIFO): the
//! handler is installed without `SA_RESTART`, so the call fails with EINTR
//! and kvmini's code sees the stop. A signal that lands just before the
//! thread enters such a call would be lost, so the stop is sent again at
//! short intervals until the run ends (`rekick`). The thread's signal
//! mask is set for each run, whatever the thread inherited.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Once, PoisonError, Weak};
use std::time::Duration;

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

/// The vCPU thread while a run is in progress.
struct Target {
    thread: libc::pthread_t,
    immediate_exit: *mut u8,
}

// SAFETY: the pointer is only written (volatile) while the Target is
// registered, which `RunGuard` guarantees is within the life of the vCPU
// mapping it points into; pthread_t is a plain thread id.
unsafe impl Send for Target {}

#[derive(Default)]
struct Inner {
    reason: AtomicI32,
    target: Mutex<Option<Target>>,
}

/// A handle that stops a sandbox's guest from any thread. Cloning it is
/// cheap; every clone stops the same sandbox.
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

    /// Stops the guest now, or the next run if none is in progress. The
    /// first reason given wins.
    pub fn stop(&self, reason: StopReason) {
        let _ = self.inner.reason.compare_exchange(
            NO_STOP,
            reason.encode(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        let target = self
            .inner
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(target) = target.as_ref() {
            kick(target);
            rekick(Arc::downgrade(&self.inner));
        }
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
    /// dropped, with the kick signal unblocked on it whatever mask it
    /// inherited. `immediate_exit` must point at the vCPU's
    /// `kvm_run.immediate_exit` and stay valid while the guard lives.
    pub(crate) fn attach(&self, immediate_exit: *mut u8) -> RunGuard<'_> {
        install_kick_handler();
        let reblock = unblock_kick();
        let mut target = self
            .inner
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // SAFETY: pthread_self has no preconditions.
        let thread = unsafe { libc::pthread_self() };
        let new = Target {
            thread,
            immediate_exit,
        };
        if self.pending().is_some() {
            kick(&new);
        }
        *target = Some(new);
        RunGuard {
            handle: self,
            reblock,
        }
    }
}

/// Unregisters the vCPU thread when a run ends, and puts back the mask it
/// had.
pub(crate) struct RunGuard<'a> {
    handle: &'a StopHandle,
    /// The kick signal was blocked before the run.
    reblock: bool,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        *self
            .handle
            .inner
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        if self.reblock {
            set_kick_blocked(libc::SIG_BLOCK);
        }
    }
}

impl Inner {
    /// Kicks the vCPU thread again if the stop has not been seen yet (the
    /// run that is stopping still runs); false once it has.
    fn kick_again(&self) -> bool {
        let target = self.target.lock().unwrap_or_else(PoisonError::into_inner);
        match target.as_ref() {
            Some(target) if self.reason.load(Ordering::SeqCst) != NO_STOP => {
                kick(target);
                true
            }
            _ => false,
        }
    }
}

/// How often a stop is sent again until the run ends. It bounds how long
/// a stop that landed just before a blocking call takes to end it.
const REKICK_INTERVAL: Duration = Duration::from_millis(20);

/// Sends a stop again every [`REKICK_INTERVAL`] until its run ends. One
/// thread of the process does this for every handle; it is started by the
/// first stop that finds a run in progress. Where no thread can be started
/// (a stop asked from a confined vCPU thread), the first kick is all there
/// is.
fn rekick(inner: Weak<Inner>) {
    static REKICKER: Mutex<Option<(u32, Sender<Weak<Inner>>)>> = Mutex::new(None);
    let mut rekicker = REKICKER.lock().unwrap_or_else(PoisonError::into_inner);
    // A child made by fork has the sender but not the thread.
    if let Some((pid, sender)) = rekicker.as_ref() {
        if *pid == std::process::id() && sender.send(inner.clone()).is_ok() {
            return;
        }
    }
    let (sender, watch) = mpsc::channel::<Weak<Inner>>();
    let started = std::thread::Builder::new()
        .name("kvmini-stop".into())
        .spawn(move || {
            let mut stopping: Vec<Weak<Inner>> = Vec::new();
            loop {
                let next = if stopping.is_empty() {
                    watch.recv().map_err(|_| RecvTimeoutError::Disconnected)
                } else {
                    watch.recv_timeout(REKICK_INTERVAL)
                };
                match next {
                    Ok(inner) => stopping.push(inner),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                stopping.retain(|inner| inner.upgrade().is_some_and(|inner| inner.kick_again()));
            }
        });
    if started.is_ok() && sender.send(inner).is_ok() {
        *rekicker = Some((std::process::id(), sender));
    }
}

/// The signal that interrupts KVM_RUN: a real-time signal kvmini owns.
fn kick_signal() -> i32 {
    libc::SIGRTMIN() + 2
}

fn kick(target: &Target) {
    // SAFETY: `immediate_exit` points into the vCPU's kvm_run mapping, valid
    // while the target is registered (see `attach`); a byte write cannot
    // tear, and KVM reads it on the next entry.
    unsafe { target.immediate_exit.write_volatile(1) };
    // SAFETY: the thread is alive: it unregisters itself (under the same
    // lock we hold) before it can exit the run.
    unsafe { libc::pthread_kill(target.thread, kick_signal()) };
}

extern "C" fn on_kick(_: libc::c_int) {
    // Nothing to do: the signal's only job is to make KVM_RUN return EINTR.
}

/// Blocks or unblocks the kick signal on the calling thread.
fn set_kick_blocked(how: libc::c_int) {
    // SAFETY: plain signal-set manipulation on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, kick_signal());
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Unblocks the kick signal on the calling thread; true if it was blocked
/// (a mask inherited from the thread that started this one, or from the
/// parent process).
fn unblock_kick() -> bool {
    // SAFETY: plain signal-set manipulation on local sigset_t values.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, kick_signal());
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, &mut old);
        libc::sigismember(&old, kick_signal()) == 1
    }
}

/// Makes the calling thread one that a stop can reach: kvmini's handler for
/// the kick signal, and the signal unblocked. For threads that wait on
/// behalf of a [`StopHandle`] outside a run (the command line's main
/// thread).
pub(crate) fn prepare_thread() {
    install_kick_handler();
    let _ = unblock_kick();
}

/// Sends the kick signal to `thread`, so that a host call it waits in
/// returns EINTR (see [`prepare_thread`]).
pub(crate) fn kick_thread(thread: libc::pthread_t) {
    // SAFETY: callers pass a thread that lives as long as the process (the
    // command line's main thread).
    unsafe { libc::pthread_kill(thread, kick_signal()) };
}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; the handler is async-signal-safe (it does nothing), and
        // without SA_RESTART the interrupted ioctl returns EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(kick_signal(), &action, std::ptr::null_mut());
        }
    });
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
