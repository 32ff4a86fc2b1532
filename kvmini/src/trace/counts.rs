//! A Linux program's system calls counted by number, with the errors of
//! each, for a run's statistics: one slot per number, allocated once
//! with the counters, so counting a call allocates nothing.

use std::fmt;

use super::CallName;

/// Numbers below this have a slot of their own; the rest share the last.
pub const SLOTS: usize = 512;

/// Calls and errors by system-call number.
#[derive(Clone, PartialEq, Eq)]
pub struct SyscallCounts {
    /// `(calls, errors)` by number; numbers of `SLOTS - 1` and up in the
    /// last slot.
    slots: Box<[(u64, u64)]>,
}

impl Default for SyscallCounts {
    fn default() -> Self {
        SyscallCounts {
            slots: vec![(0, 0); SLOTS].into_boxed_slice(),
        }
    }
}

impl fmt::Debug for SyscallCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_count()).finish()
    }
}

/// One line of the counts: a call, how often it was made, how often it
/// failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallCount {
    /// The call's number (`SLOTS - 1` stands for it and every larger one).
    pub nr: u64,
    /// Calls made.
    pub calls: u64,
    /// Calls that returned an error.
    pub errors: u64,
}

impl CallCount {
    /// The call's name as the trace shows it.
    pub fn name(&self) -> CallName {
        CallName::Syscall(self.nr)
    }

    /// Whether this count is of its number and every larger one (the
    /// last slot).
    pub fn and_above(&self) -> bool {
        usize::try_from(self.nr).is_ok_and(|nr| nr == SLOTS - 1)
    }
}

impl SyscallCounts {
    /// Counts call `nr`, failed or not.
    pub fn count(&mut self, nr: u64, failed: bool) {
        let last = SLOTS - 1;
        let slot = usize::try_from(nr).map_or(last, |n| n.min(last));
        if let Some((calls, errors)) = self.slots.get_mut(slot) {
            *calls += 1;
            *errors += u64::from(failed);
        }
    }

    /// Every call made, most made first (then by number).
    pub fn by_count(&self) -> Vec<CallCount> {
        let mut counts: Vec<CallCount> = (0u64..)
            .zip(self.slots.iter())
            .filter(|(_, (calls, _))| *calls > 0)
            .map(|(nr, &(calls, errors))| CallCount { nr, calls, errors })
            .collect();
        counts.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.nr.cmp(&b.nr)));
        counts
    }

    /// All calls and all errors.
    pub fn total(&self) -> (u64, u64) {
        self.slots
            .iter()
            .fold((0, 0), |(c, e), &(calls, errors)| (c + calls, e + errors))
    }
}
