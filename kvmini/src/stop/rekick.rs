//! The `kvmini-stop` thread, which sends every pending stop again until its
//! run ends, so that a stop that landed just before a blocking call ends it.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::links::Links;
use super::{StopError, NO_STOP};

/// Every run in progress in the process, for the `kvmini-stop` thread.
pub(super) static RUNNING: Links = Links::new();

/// How often a stop is sent again until the run ends. It bounds how long
/// a stop that landed just before a blocking call takes to end it.
pub(super) const REKICK_INTERVAL: Duration = Duration::from_millis(20);

/// Bumped by every stop, to wake the `kvmini-stop` thread (a futex word).
pub(super) static WAKE: AtomicU32 = AtomicU32::new(0);
/// The process that started the `kvmini-stop` thread (a child made by
/// fork has the flag but not the thread).
pub(super) static REKICKER_PID: AtomicI32 = AtomicI32::new(0);

pub(super) fn wake_rekicker() {
    WAKE.fetch_add(1, Ordering::SeqCst);
    // SAFETY: FUTEX_WAKE on a static word; no other memory is touched.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            WAKE.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        )
    };
}

/// Starts the thread that sends every stop again every
/// [`REKICK_INTERVAL`] until its run ends, once per process.
pub(super) fn start_rekicker() -> Result<(), StopError> {
    static STARTING: Mutex<()> = Mutex::new(());
    // SAFETY: getpid has no preconditions.
    let here = unsafe { libc::getpid() };
    if REKICKER_PID.load(Ordering::SeqCst) == here {
        return Ok(());
    }
    let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
    if REKICKER_PID.load(Ordering::SeqCst) == here {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("kvmini-stop".into())
        .spawn(rekick)
        .map_err(StopError::Thread)?;
    REKICKER_PID.store(here, Ordering::SeqCst);
    Ok(())
}

pub(super) fn rekick() {
    let interval = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::c_long::try_from(REKICK_INTERVAL.as_nanos()).unwrap_or(20_000_000),
    };
    loop {
        let seen = WAKE.load(Ordering::SeqCst);
        let mut stopping = false;
        RUNNING.for_each(|run| stopping |= run.reason.load(Ordering::SeqCst) != NO_STOP);
        // Until the next stop, or one interval while one is pending: a stop
        // has just signalled its runs itself, and a second signal at once
        // would only cut short the call the first one interrupted.
        let timeout = if stopping {
            std::ptr::from_ref(&interval)
        } else {
            std::ptr::null()
        };
        // SAFETY: FUTEX_WAIT on a static word with a valid or null timeout;
        // it returns at once if the word changed since it was read.
        let waited = unsafe {
            libc::syscall(
                libc::SYS_futex,
                WAKE.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                seen,
                timeout,
            )
        };
        let timed_out =
            waited == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT);
        if timed_out {
            RUNNING.for_each(|run| {
                if run.reason.load(Ordering::SeqCst) != NO_STOP {
                    run.target.kick();
                }
            });
        }
    }
}
