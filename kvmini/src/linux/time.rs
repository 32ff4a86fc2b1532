//! The clocks a Linux program reads: the host's, through `clock_gettime`
//! (in the vCPU thread's seccomp filter already), never anything else of
//! the host's (docs/linux.md, "Time").

use crate::addr::Gva;
use crate::errno::Errno;
use crate::view::GuestView;

const CLOCK_REALTIME: u64 = 0;
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
