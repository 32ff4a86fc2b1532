//! The clocks a Linux program reads: the host's, through `clock_gettime`
//! (in the vCPU thread's seccomp filter already), never anything else of
//! the host's (docs/linux.md, "Time").

use crate::addr::Gva;
use crate::errno::Errno;
use crate::stop::StopHandle;
use crate::view::GuestView;

const CLOCK_REALTIME: u64 = 0;
const CLOCK_MONOTONIC: u64 = 1;
/// `clock_nanosleep`'s flag for a deadline rather than a duration.
const TIMER_ABSTIME: u64 = 1;
const NANOS_PER_SEC: i64 = 1_000_000_000;
const CLOCK_REALTIME_COARSE: u64 = 5;
const CLOCK_MONOTONIC_COARSE: u64 = 6;
const CLOCK_BOOTTIME: u64 = 7;
/// The resolution of the coarse clocks: a tick at 250 Hz, as a common
/// kernel configuration gives (not read from the host).
const COARSE_NS: i64 = 4_000_000;

/// The host's time on `clock`: REALTIME, MONOTONIC, the process and
/// thread CPU-time clocks (kvmini's, whose vCPU thread runs the program),
/// MONOTONIC_RAW, the coarse ones and BOOTTIME; any other is `EINVAL`.
fn now(clock: u64) -> Result<[i64; 2], Errno> {
    if clock > CLOCK_BOOTTIME {
        return Err(Errno::EINVAL);
    }
    let id = libc::clockid_t::try_from(clock).map_err(|_| Errno::EINVAL)?;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec the call only writes.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return Err(Errno::EINVAL);
    }
    Ok([ts.tv_sec, ts.tv_nsec])
}

fn put<T: zerocopy::IntoBytes + zerocopy::Immutable>(
    view: &GuestView<'_>,
    at: u64,
    value: T,
) -> Result<(), Errno> {
    view.write_obj(Gva::new(at), value)
        .map_err(|_| Errno::EFAULT)
}

/// `clock_gettime`.
pub(super) fn clock_gettime(view: &GuestView<'_>, clock: u64, ts: u64) -> Result<i64, Errno> {
    put(view, ts, now(clock)?).map(|()| 0)
}

/// `clock_getres`: 1 ns, 4 ms for the coarse clocks; a null pointer asks
/// only whether the clock exists.
pub(super) fn clock_getres(view: &GuestView<'_>, clock: u64, res: u64) -> Result<i64, Errno> {
    now(clock)?;
    let ns = match clock {
        CLOCK_REALTIME_COARSE | CLOCK_MONOTONIC_COARSE => COARSE_NS,
        _ => 1,
    };
    if res != 0 {
        put(view, res, [0i64, ns])?;
    }
    Ok(0)
}

/// `gettimeofday`: the real time in microseconds; the time zone, when
/// asked, is UTC.
pub(super) fn gettimeofday(view: &GuestView<'_>, tv: u64, tz: u64) -> Result<i64, Errno> {
    let [sec, nsec] = now(CLOCK_REALTIME)?;
    if tv != 0 {
        put(view, tv, [sec, nsec / 1000])?;
    }
    if tz != 0 {
        put(view, tz, [0i32, 0i32])?;
    }
    Ok(0)
}

/// `time`: the real time in seconds, also stored at `tloc` when given.
pub(super) fn time(view: &GuestView<'_>, tloc: u64) -> Result<i64, Errno> {
    let [sec, _] = now(CLOCK_REALTIME)?;
    if tloc != 0 {
        put(view, tloc, sec)?;
    }
    Ok(sec)
}

/// `nanosleep` (`clock` MONOTONIC, relative) and `clock_nanosleep`: the
/// host sleeps on REALTIME, MONOTONIC or BOOTTIME (CPU-time clocks are
/// `EINVAL` here). A stop (the timeout, a stop handle, SIGINT, SIGTERM)
/// interrupts the sleep: the program gets `EINTR`, with the time left in
/// `rem` for a relative sleep, as a signal gives on Linux, and the run then
/// ends.
pub(super) fn sleep(
    view: &GuestView<'_>,
    (clock, flags): (u64, u64),
    (req, rem): (u64, u64),
    stop: &StopHandle,
) -> Result<i64, Errno> {
    let [sec, nsec]: [i64; 2] = view.read_obj(Gva::new(req)).map_err(|_| Errno::EFAULT)?;
    if sec < 0 || !(0..NANOS_PER_SEC).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    let id = match clock {
        CLOCK_REALTIME => rustix::thread::ClockId::Realtime,
        CLOCK_MONOTONIC => rustix::thread::ClockId::Monotonic,
        CLOCK_BOOTTIME => rustix::thread::ClockId::Boottime,
        _ => return Err(Errno::EINVAL),
    };
    let absolute = flags & TIMER_ABSTIME != 0;
    let mut left = rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    loop {
        if stop.pending().is_some() {
            if !absolute && rem != 0 {
                put(view, rem, [left.tv_sec, left.tv_nsec])?;
            }
            return Err(Errno::EINTR);
        }
        if absolute {
            match rustix::thread::clock_nanosleep_absolute(id, &left) {
                Ok(()) => return Ok(0),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Errno::from(e)),
            }
        } else {
            match rustix::thread::clock_nanosleep_relative(id, &left) {
                rustix::thread::NanosleepRelativeResult::Ok => return Ok(0),
                rustix::thread::NanosleepRelativeResult::Interrupted(remaining) => left = remaining,
                rustix::thread::NanosleepRelativeResult::Err(e) => return Err(Errno::from(e)),
            }
        }
    }
}
