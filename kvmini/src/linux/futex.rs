//! `futex` for the one thread a Linux program has: a wake finds no waiter;
//! a wait whose word no longer holds the value is `EAGAIN`, as on Linux,
//! and one that would wait waits for its timeout (then `ETIMEDOUT`) or,
//! without one, until a stop ends the run (no other thread could wake it:
//! natively the program would hang there).

use std::time::Duration;

use super::time;
use crate::addr::Gva;
use crate::errno::Errno;
use crate::stop::StopHandle;
use crate::view::GuestView;

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
/// The command bits of the operation (without `FUTEX_PRIVATE_FLAG` and
/// `FUTEX_CLOCK_REALTIME`).
const FUTEX_CMD_MASK: u64 = 0x7F;
const FUTEX_CLOCK_REALTIME: u64 = 256;
const CLOCK_REALTIME: u64 = 0;
const CLOCK_MONOTONIC: u64 = 1;
const TIMER_ABSTIME: u64 = 1;
/// How long a wait without end sleeps before it looks again (a stop
/// interrupts it at once).
const IDLE: Duration = Duration::from_secs(60);

fn errno(code: i32) -> Errno {
    Errno::new(code).unwrap_or(Errno::EINVAL)
}

/// `futex(uaddr, op, val, timeout, uaddr2, val3)`: the waits and wakes;
/// any other operation is `ENOSYS`.
pub(super) fn futex(
    view: &GuestView<'_>,
    stop: &StopHandle,
    [uaddr, op, val, timeout, _uaddr2, val3]: [u64; 6],
) -> Result<i64, Errno> {
    let cmd = op & FUTEX_CMD_MASK;
    let bitset = matches!(cmd, FUTEX_WAIT_BITSET | FUTEX_WAKE_BITSET);
    if bitset && val3 & 0xFFFF_FFFF == 0 {
        return Err(Errno::EINVAL);
    }
    match cmd {
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            if uaddr % 4 != 0 {
                return Err(Errno::EINVAL);
            }
            Ok(0)
        }
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            if uaddr % 4 != 0 {
                return Err(Errno::EINVAL);
            }
            let word: u32 = view.read_obj(Gva::new(uaddr)).map_err(|_| Errno::EFAULT)?;
            if u64::from(word) != val & 0xFFFF_FFFF {
                return Err(Errno::EAGAIN);
            }
            if timeout == 0 {
                return wait_for_a_stop(stop);
            }
            // FUTEX_WAIT's timeout is relative, on the monotonic clock;
            // FUTEX_WAIT_BITSET's a deadline, realtime when asked.
            let how = if cmd == FUTEX_WAIT {
                (CLOCK_MONOTONIC, 0)
            } else if op & FUTEX_CLOCK_REALTIME != 0 {
                (CLOCK_REALTIME, TIMER_ABSTIME)
            } else {
                (CLOCK_MONOTONIC, TIMER_ABSTIME)
            };
            time::sleep(view, how, (timeout, 0), stop)?;
            Err(errno(libc::ETIMEDOUT))
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// A wait no thread can end: it lasts until a stop, then `EINTR`.
fn wait_for_a_stop(stop: &StopHandle) -> Result<i64, Errno> {
    loop {
        if stop.pending().is_some() {
            return Err(Errno::EINTR);
        }
        let ts = rustix::fs::Timespec {
            tv_sec: i64::try_from(IDLE.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        // Interrupted or not, the loop looks again.
        let _ = rustix::thread::clock_nanosleep_relative(rustix::thread::ClockId::Monotonic, &ts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::page_tables;
    use crate::layout::Layout;
    use crate::paging::{CpuPaging, Paging, PagingMode};
    use vm_memory::{Bytes as _, GuestAddress};

    const MEM: u64 = 16 << 20;
    const WORD: u64 = 0x20_0000;
    const PRIVATE: u64 = 128;

    #[test]
    fn wakes_find_no_waiter_and_waits_check_the_word_then_time_out() {
        let mem = crate::memory::allocate(MEM).unwrap();
        let layout = Layout::new(MEM);
        page_tables::build_identity_map(&mem, &layout, false).unwrap();
        let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
        let view = GuestView::new(&mem, long, layout.pml4(), true)
            .with_identity(page_tables::user_identity_range(&layout, false));
        let stop = StopHandle::new();
        mem.write_obj(5u32, GuestAddress(WORD)).unwrap();
        // A relative timeout of 1 ns, just after the word.
        let timeout = WORD + 16;
        mem.write_obj([0i64, 1], GuestAddress(timeout)).unwrap();
        let call = |op: u64, val: u64, ts: u64, val3: u64| {
            futex(&view, &stop, [WORD, op, val, ts, 0, val3])
        };
        assert_eq!(call(FUTEX_WAKE | PRIVATE, 1, 0, 0), Ok(0));
        assert_eq!(call(FUTEX_WAKE_BITSET, 1, 0, u64::MAX), Ok(0));
        assert_eq!(call(FUTEX_WAKE_BITSET, 1, 0, 0), Err(Errno::EINVAL));
        assert_eq!(call(FUTEX_WAIT | PRIVATE, 4, 0, 0), Err(Errno::EAGAIN));
        assert_eq!(
            call(FUTEX_WAIT | PRIVATE, 5, timeout, 0),
            Err(errno(libc::ETIMEDOUT))
        );
        assert_eq!(call(3, 0, 0, 0), Err(Errno::ENOSYS), "FUTEX_REQUEUE");
        assert_eq!(
            futex(&view, &stop, [WORD + 1, FUTEX_WAIT, 5, 0, 0, 0]),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            futex(&view, &stop, [8, FUTEX_WAIT, 5, 0, 0, 0]),
            Err(Errno::EFAULT)
        );
        // A wait without end ends at a stop.
        stop.stop(crate::stop::StopReason::Signal(libc::SIGTERM));
        assert_eq!(call(FUTEX_WAIT, 5, 0, 0), Err(Errno::EINTR));
    }
}
