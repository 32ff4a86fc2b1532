//! Waiting for descriptors: `poll`, `ppoll`, `select` and `pselect6` over
//! the program's standard streams, files and pipes. Files are always
//! ready, as on Linux; a pipe is as its buffer and its ends say, which
//! nothing changes while the program (one thread) waits; the only thing
//! that can become ready later is kvmini's own stdin, which the host's
//! `ppoll` waits for. Every wait ends at a stop (the timeout, a stop
//! handle, SIGINT, SIGTERM): the program gets `EINTR` and the run ends, as
//! for a sleep. `ppoll`, `select` and `pselect6` write the time left back
//! to their timeout, as Linux does.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::addr::Gva;
use crate::errno::Errno;
use crate::fs::{host_poll, Filesystem};
use crate::stop::StopHandle;
use crate::view::GuestView;

const POLLIN: i16 = 0x1;
const POLLPRI: i16 = 0x2;
const POLLOUT: i16 = 0x4;
const POLLERR: i16 = 0x8;
const POLLHUP: i16 = 0x10;
const POLLNVAL: i16 = 0x20;
/// The most descriptors `select` looks at (`FD_SETSIZE`).
const FD_SETSIZE: u64 = 1024;
/// How long one wait without end sleeps before it looks again (a stop
/// interrupts it at once).
const IDLE: Duration = Duration::from_secs(60);

/// A wait's limit: `None` for none.
type Timeout = Option<Duration>;

/// `poll`'s timeout in milliseconds; negative waits without end.
pub(super) fn millis(arg: u64) -> Timeout {
    let ms = i32::from_ne_bytes(arg.to_ne_bytes()[..4].try_into().unwrap_or([0xFF; 4]));
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// A `timespec` (`unit` 1) or `timeval` (`unit` 1000) at `at`; null waits
/// without end; a negative or out-of-range one is `EINVAL`.
pub(super) fn timeout_at(view: &GuestView<'_>, at: u64, unit: i64) -> Result<Timeout, Errno> {
    if at == 0 {
        return Ok(None);
    }
    let [sec, frac]: [i64; 2] = view.read_obj(Gva::new(at)).map_err(|_| Errno::EFAULT)?;
    let nanos = frac.checked_mul(unit).ok_or(Errno::EINVAL)?;
    let (Ok(sec), Ok(nanos)) = (u64::try_from(sec), u32::try_from(nanos)) else {
        return Err(Errno::EINVAL);
    };
    if nanos >= 1_000_000_000 {
        return Err(Errno::EINVAL);
    }
    Ok(Some(Duration::new(sec, nanos)))
}

/// Looks at `wanted` (descriptor, events) until one is ready, the timeout
/// passes or a stop comes: the events found for each.
fn wait(
    fs: &Filesystem,
    stop: &StopHandle,
    wanted: &[(i32, i16)],
    timeout: Timeout,
) -> Result<Vec<i16>, Errno> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let mut found = Vec::with_capacity(wanted.len());
        let mut stdin: Option<BorrowedFd<'_>> = None;
        for &(fd, events) in wanted {
            let revents = if fd < 0 {
                0
            } else {
                match fs.linux_poll_one(fd, events) {
                    Some((revents, host)) => {
                        stdin = stdin.or(host);
                        revents
                    }
                    None => POLLNVAL,
                }
            };
            found.push(revents);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if found.iter().any(|&r| r != 0) || left == Some(Duration::ZERO) {
            return Ok(found);
        }
        if stop.pending().is_some() {
            return Err(Errno::EINTR);
        }
        let span = left.unwrap_or(IDLE);
        match stdin {
            Some(fd) => match host_poll(
                fd,
                POLLIN,
                u64::try_from(span.as_nanos()).unwrap_or(u64::MAX),
            ) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            },
            None => sleep(span),
        }
    }
}

/// Sleeps for `span` or until a signal (a stop) comes.
fn sleep(span: Duration) {
    let ts = rustix::fs::Timespec {
        tv_sec: i64::try_from(span.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(span.subsec_nanos()),
    };
    // Interrupted or not, the caller looks again.
    let _ = rustix::thread::clock_nanosleep_relative(rustix::thread::ClockId::Monotonic, &ts);
}

/// Waits for a stop, when nothing the program could wait for can change.
pub(super) fn until_stopped(stop: &StopHandle) {
    while stop.pending().is_none() {
        sleep(IDLE);
    }
}

/// When a wait of `timeout` that starts now ends; `None` when it has no
/// end or is zero (Linux writes no time left back for those).
fn deadline(timeout: Timeout) -> Option<Instant> {
    timeout.filter(|t| !t.is_zero()).map(|t| Instant::now() + t)
}

/// Writes the time left until `deadline` to the `timespec` (`unit` 1) or
/// `timeval` (`unit` 1000) at `at`; as on Linux, a timeout the program
/// cannot write is left as it is and the call's result stands.
fn write_left(view: &GuestView<'_>, at: u64, deadline: Option<Instant>, unit: u32) {
    if let Some(deadline) = deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let sec = i64::try_from(left.as_secs()).unwrap_or(i64::MAX);
        let _ = view.write_obj(Gva::new(at), [sec, i64::from(left.subsec_nanos() / unit)]);
    }
}

/// `ppoll(fds, nfds, timeout, sigmask, sigsetsize)`: as `poll`, with the
/// time left written back.
pub(super) fn ppoll(
    view: &GuestView<'_>,
    fs: &Filesystem,
    stop: &StopHandle,
    [fds, nfds, at, ..]: [u64; 6],
    max_fds: u64,
) -> Result<i64, Errno> {
    let timeout = timeout_at(view, at, 1)?;
    let end = deadline(timeout);
    let result = poll(view, fs, stop, (fds, nfds), timeout, max_fds);
    write_left(view, at, end, 1);
    result
}

/// `select(n, read, write, except, timeval)` (`unit` 1000) and
/// `pselect6(n, read, write, except, timespec, sigmask)` (`unit` 1), with
/// the time left written back.
pub(super) fn select_timed(
    view: &GuestView<'_>,
    fs: &Filesystem,
    stop: &StopHandle,
    [n, read, write, except, at, _]: [u64; 6],
    unit: u32,
) -> Result<i64, Errno> {
    let timeout = timeout_at(view, at, i64::from(unit))?;
    let end = deadline(timeout);
    let result = select(view, fs, stop, n, [read, write, except], timeout);
    write_left(view, at, end, unit);
    result
}

/// `poll` and `ppoll`: `nfds` entries of `struct pollfd` at `fds`; more
/// than the descriptor limit is `EINVAL`.
pub(super) fn poll(
    view: &GuestView<'_>,
    fs: &Filesystem,
    stop: &StopHandle,
    (fds, nfds): (u64, u64),
    timeout: Timeout,
    max_fds: u64,
) -> Result<i64, Errno> {
    if nfds > max_fds {
        return Err(Errno::EINVAL);
    }
    let len = usize::try_from(nfds * 8).map_err(|_| Errno::EINVAL)?;
    let mut entries = vec![0u8; len];
    view.check_writable(Gva::new(fds), len as u64)
        .map_err(|_| Errno::EFAULT)?;
    for (i, entry) in entries.chunks_exact_mut(8).enumerate() {
        let at = fds + i as u64 * 8;
        let bytes: [u8; 8] = view.read_obj(Gva::new(at)).map_err(|_| Errno::EFAULT)?;
        entry.copy_from_slice(&bytes);
    }
    let wanted: Vec<(i32, i16)> = entries
        .chunks_exact(8)
        .map(|e| {
            let fd = i32::from_ne_bytes([e[0], e[1], e[2], e[3]]);
            (fd, i16::from_ne_bytes([e[4], e[5]]))
        })
        .collect();
    let found = wait(fs, stop, &wanted, timeout)?;
    for (entry, revents) in entries.chunks_exact_mut(8).zip(&found) {
        entry[6..8].copy_from_slice(&revents.to_ne_bytes());
    }
    view.write_bytes(Gva::new(fds), &entries)
        .map_err(|_| Errno::EFAULT)?;
    i64::try_from(found.iter().filter(|&&r| r != 0).count()).map_err(|_| Errno::EINVAL)
}

/// `select` and `pselect6`: the three descriptor sets (each may be null)
/// of the first `n` descriptors; a descriptor in a set that is not open is
/// `EBADF`. The sets come back holding what is ready.
fn select(
    view: &GuestView<'_>,
    fs: &Filesystem,
    stop: &StopHandle,
    n: u64,
    sets: [u64; 3],
    timeout: Timeout,
) -> Result<i64, Errno> {
    let n = i32::from_ne_bytes(n.to_ne_bytes()[..4].try_into().unwrap_or([0xFF; 4]));
    let n = u64::try_from(n).map_err(|_| Errno::EINVAL)?.min(FD_SETSIZE);
    let words = usize::try_from(n.div_ceil(64)).unwrap_or(0);
    let mut bits = [vec![0u64; words], vec![0u64; words], vec![0u64; words]];
    for (set, &at) in bits.iter_mut().zip(&sets) {
        if at == 0 {
            continue;
        }
        for (i, word) in set.iter_mut().enumerate() {
            *word = view
                .read_obj(Gva::new(at + i as u64 * 8))
                .map_err(|_| Errno::EFAULT)?;
        }
    }
    let is_set = |set: &[u64], fd: u64| {
        set.get(usize::try_from(fd / 64).unwrap_or(0))
            .is_some_and(|w| w >> (fd % 64) & 1 != 0)
    };
    let mut wanted = Vec::new();
    for fd in 0..n {
        let mut events = 0;
        for (set, flag) in bits.iter().zip([POLLIN, POLLOUT, POLLPRI]) {
            if is_set(set, fd) {
                events |= flag;
            }
        }
        if events != 0 {
            let fd = i32::try_from(fd).map_err(|_| Errno::EINVAL)?;
            fs.linux_poll_one(fd, events).ok_or(Errno::EBADF)?;
            wanted.push((fd, events));
        }
    }
    let found = wait(fs, stop, &wanted, timeout)?;
    let mut ready = [vec![0u64; words], vec![0u64; words], vec![0u64; words]];
    let mut count = 0i64;
    for (&(fd, events), &revents) in wanted.iter().zip(&found) {
        let fd = u64::try_from(fd).unwrap_or(0);
        let word = usize::try_from(fd / 64).unwrap_or(0);
        for (set, (asked, answered)) in ready.iter_mut().zip([
            (POLLIN, POLLIN | POLLHUP | POLLERR),
            (POLLOUT, POLLOUT | POLLERR),
            (POLLPRI, POLLPRI),
        ]) {
            if events & asked != 0 && revents & answered != 0 {
                if let Some(w) = set.get_mut(word) {
                    *w |= 1 << (fd % 64);
                    count += 1;
                }
            }
        }
    }
    for (set, &at) in ready.iter().zip(&sets) {
        if at != 0 {
            for (i, word) in set.iter().enumerate() {
                view.write_obj(Gva::new(at + i as u64 * 8), *word)
                    .map_err(|_| Errno::EFAULT)?;
            }
        }
    }
    Ok(count)
}
