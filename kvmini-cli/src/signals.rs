//! SIGINT and SIGTERM for the command line: both stop the guest through
//! one [`StopHandle`], and end any wait of kvmini's own (its messages to a
//! pipe nobody reads) so that kvmini exits 130 or 143.
//!
//! Nothing is taken from the signal state kvmini inherits: the two signals
//! get their default disposition back (a parent may have ignored them, as a
//! shell does for a background job), are blocked in every thread and taken
//! by one thread with `sigtimedwait`, and the stop signal is unblocked on
//! the main thread ([`kvmini::stop`]).

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use kvmini::stop::{self, StopHandle, StopReason};

/// The first SIGINT or SIGTERM received, 0 before.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// How often the main thread is signalled again after a stop signal, so
/// that a wait it entered just as the signal came still ends.
const REKICK_INTERVAL: Duration = Duration::from_millis(20);

/// The first stop signal kvmini received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

fn stop_signals() -> libc::sigset_t {
    // SAFETY: plain signal-set manipulation on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Routes SIGINT and SIGTERM to `handle`. Call it on the main thread before
/// any other thread starts, so that every thread inherits the blocked
/// signals.
pub fn route(handle: &'static StopHandle) {
    let set = stop_signals();
    // SAFETY: `set` is a valid signal set; the null old-mask and old-action
    // pointers are allowed; SIG_DFL is a valid disposition for both
    // signals, and blocked as they are, they reach only `sigtimedwait`.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
    stop::prepare_thread();
    // SAFETY: pthread_self has no preconditions; the main thread lives as
    // long as the process.
    let main = unsafe { libc::pthread_self() };
    let _ = std::thread::Builder::new()
        .name("kvmini-signals".into())
        .spawn(move || wait_for_signals(&set, handle, main));
}

fn wait_for_signals(set: &libc::sigset_t, handle: &StopHandle, main: libc::pthread_t) {
    let interval = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::c_long::try_from(REKICK_INTERVAL.as_nanos()).unwrap_or(20_000_000),
    };
    loop {
        // Before the first signal, wait for it; after, wake up regularly to
        // signal the main thread again.
        let timeout = if received().is_some() {
            std::ptr::from_ref(&interval)
        } else {
            std::ptr::null()
        };
        // SAFETY: `set` is a valid signal set, a null info pointer is
        // allowed, and `timeout` is null or points at `interval`.
        let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), timeout) };
        if sig == libc::SIGINT || sig == libc::SIGTERM {
            let _ = RECEIVED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
            handle.stop(StopReason::Signal(sig));
        }
        if received().is_some() {
            // SAFETY: `main` is the main thread, which lives as long as the
            // process.
            unsafe { stop::kick_thread(main) };
        }
    }
}
