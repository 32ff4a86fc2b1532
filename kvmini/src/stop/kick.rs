//! The signal that stops a run: which one, its handler, the thread's mask,
//! and sending it to a thread.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, PoisonError};

use super::StopError;

/// The signal kvmini stops runs with unless the embedding program chose
/// another: a standard signal (never queued, so never refused for a full
/// queue), ignored by default, and rarely used (sockets' out-of-band data).
pub(super) const DEFAULT_SIGNAL: i32 = libc::SIGURG;

/// The signals [`use_signal`] accepts.
pub(super) const SUITABLE: [i32; 11] = [
    libc::SIGURG,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGWINCH,
    libc::SIGIO,
    libc::SIGPWR,
    libc::SIGSTKFLT,
    libc::SIGXCPU,
];

pub(super) const SUITABLE_NAMES: &str =
    "SIGURG, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGWINCH, \
                              SIGIO, SIGPWR, SIGSTKFLT, SIGXCPU";

/// The chosen signal, 0 for [`DEFAULT_SIGNAL`].
pub(super) static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Whether a run has used the signal (then it is chosen for good).
pub(super) static CLAIMED: AtomicBool = AtomicBool::new(false);
/// Serializes choosing, installing and checking the handler.
pub(super) static CLAIMING: Mutex<()> = Mutex::new(());

/// The signal kvmini sends a vCPU thread to stop its run: SIGURG unless
/// [`use_signal`] chose another. kvmini installs its handler (which does
/// nothing) before a sandbox's first run, only while the signal has the
/// default disposition or is ignored; another handler for it makes every
/// run fail with [`StopError::SignalTaken`], and is never replaced.
pub fn signal() -> i32 {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => DEFAULT_SIGNAL,
        sig => sig,
    }
}

/// Chooses the signal kvmini stops runs with, before the first run: one of
/// SIGURG (the default), SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF,
/// SIGWINCH, SIGIO, SIGPWR, SIGSTKFLT or SIGXCPU. Real-time signals are
/// refused: they are queued, and a full queue refuses them.
pub fn use_signal(sig: i32) -> Result<(), StopError> {
    if !SUITABLE.contains(&sig) {
        return Err(StopError::Unsuitable(sig));
    }
    let _claiming = CLAIMING.lock().unwrap_or_else(PoisonError::into_inner);
    if CLAIMED.load(Ordering::SeqCst) && signal() != sig {
        return Err(StopError::InUse(signal()));
    }
    SIGNAL.store(sig, Ordering::SeqCst);
    Ok(())
}

pub(super) fn on_kick_address() -> libc::sighandler_t {
    on_kick as extern "C" fn(libc::c_int) as libc::sighandler_t
}

/// Installs kvmini's handler for the stop signal if the signal is free
/// (default or ignored), checks it is still there otherwise.
pub(super) fn claim_signal() -> Result<(), StopError> {
    let _claiming = CLAIMING.lock().unwrap_or_else(PoisonError::into_inner);
    let sig = signal();
    // SAFETY: a null new action only reads the current one into `old`.
    let current = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old);
        old.sa_sigaction
    };
    if current == on_kick_address() {
        CLAIMED.store(true, Ordering::SeqCst);
        return Ok(());
    }
    if current != libc::SIG_DFL && current != libc::SIG_IGN {
        return Err(StopError::SignalTaken(sig));
    }
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
    // the handler is async-signal-safe (it does nothing), and without
    // SA_RESTART an interrupted call returns EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_kick_address();
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut());
    }
    CLAIMED.store(true, Ordering::SeqCst);
    Ok(())
}

extern "C" fn on_kick(_: libc::c_int) {
    // Nothing to do: the signal's only job is to make KVM_RUN (or a host
    // call that waits) return EINTR.
}

/// Blocks or unblocks the stop signal on the calling thread.
pub(super) fn set_kick_blocked(how: libc::c_int) {
    // SAFETY: plain signal-set manipulation on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal());
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Unblocks the stop signal on the calling thread; true if it was blocked
/// (a mask inherited from the thread that started this one, or from the
/// parent process).
pub(super) fn unblock_kick() -> bool {
    // SAFETY: plain signal-set manipulation on local sigset_t values.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal());
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, &mut old);
        libc::sigismember(&old, signal()) == 1
    }
}

/// Makes the calling thread one that a stop can reach: kvmini's handler for
/// the stop signal, and the signal unblocked. For threads that wait on
/// behalf of a [`StopHandle`](super::StopHandle) outside a run (a command line's main thread
/// writing its messages), woken with [`kick_thread`].
pub fn prepare_thread() {
    // A handler the command line finds already installed is reported by
    // the run itself.
    let _ = claim_signal();
    let _ = unblock_kick();
}

/// Sends the stop signal to `thread`, so that a host call it waits in
/// returns EINTR (see [`prepare_thread`]).
///
/// # Safety
///
/// `thread` must be a thread of this process that has not ended and whose
/// ID will not be reused while the call runs: a thread that lives as long
/// as the process, such as its main thread.
pub unsafe fn kick_thread(thread: libc::pthread_t) {
    // SAFETY: the caller passes a live thread of this process.
    unsafe { libc::pthread_kill(thread, signal()) };
}
