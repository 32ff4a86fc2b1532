//! The signal state a Linux program sets, and the signals it sends itself.
//! Actions and the blocked mask are recorded; handlers are never run
//! (docs/linux.md): a signal the program sends itself ends it as Linux ends
//! a program with no handler when its action is the default one and that
//! default ends a program; a blocked one waits, pending, until it is
//! unblocked; an ignored one, or one with a handler, is dropped.

use super::calls::Effect;
use super::Process;
use crate::addr::Gva;
use crate::errno::Errno;
use crate::view::GuestView;

const ESRCH: Errno = match Errno::new(libc::ESRCH) {
    Some(e) => e,
    None => Errno::EINVAL,
};
const ENOMEM: Errno = match Errno::new(libc::ENOMEM) {
    Some(e) => e,
    None => Errno::EINVAL,
};

const SIGKILL: u64 = 9;
const SIGSEGV: u8 = 11;
const SIGSTOP: u64 = 19;
const SIG_BLOCK: u64 = 0;
const SIG_SETMASK: u64 = 2;
/// The highest signal number (real-time signals included).
const SIGNAL_MAX: u64 = 64;
const SIGPIPE: u64 = 13;
/// The default action of a signal, as `rt_sigaction` records it.
const SIG_DFL: u64 = 0;
/// The ignoring action.
const SIG_IGN: u64 = 1;
/// `sigaltstack` flags.
const SS_ONSTACK: u64 = 1;
const SS_DISABLE: u64 = 2;
const SS_AUTODISARM: u64 = 1 << 31;
/// The smallest alternate stack Linux takes on x86-64.
const MINSIGSTKSZ: u64 = 2048;

/// The signals whose default action does not end a program: SIGCHLD,
/// SIGCONT, SIGURG and SIGWINCH are ignored; SIGSTOP, SIGTSTP, SIGTTIN and
/// SIGTTOU stop it, which a lone program in kvmini cannot be (it goes on,
/// as if continued at once).
fn default_ends(sig: u64) -> bool {
    !matches!(sig, 17..=23 | 28)
}

/// The bit of signal `sig` (1..=64) in a mask.
fn bit(sig: u64) -> u64 {
    1u64 << (sig - 1)
}

/// What `sigaltstack` keeps: the alternate stack, recorded (no handler
/// ever runs on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct AltStack {
    sp: u64,
    flags: u64,
    size: u64,
}

impl Default for AltStack {
    fn default() -> Self {
        AltStack {
            sp: 0,
            flags: SS_DISABLE,
            size: 0,
        }
    }
}

impl Process {
    /// A write found its reader gone: Linux sends the writer SIGPIPE.
    /// `Some` when that ends the program.
    pub(super) fn sigpipe(&mut self) -> Option<Effect> {
        self.deliver(SIGPIPE)
    }

    fn handler(&self, sig: u64) -> u64 {
        usize::try_from(sig.wrapping_sub(1))
            .ok()
            .and_then(|slot| self.actions.get(slot))
            .map_or(SIG_DFL, |action| action[0])
    }

    /// Signal `sig` (1..=64) reaches the program: blocked, it waits;
    /// otherwise its action decides. `Some` when it ends the program.
    fn deliver(&mut self, sig: u64) -> Option<Effect> {
        if sig == SIGKILL {
            return Some(Effect::Killed(9));
        }
        if self.sigmask & bit(sig) != 0 {
            self.pending |= bit(sig);
            return None;
        }
        self.take(sig)
    }

    /// The action of unblocked signal `sig`: the default one ends the
    /// program where that default ends programs; a handler is not run and
    /// the signal is dropped, as is an ignored one.
    fn take(&mut self, sig: u64) -> Option<Effect> {
        (self.handler(sig) == SIG_DFL && default_ends(sig))
            .then(|| Effect::Killed(u8::try_from(sig).unwrap_or(SIGSEGV)))
    }

    /// Delivers the pending signals the mask no longer blocks, lowest
    /// first, as Linux does on the way back from the call that unblocked
    /// them.
    fn deliver_unblocked(&mut self) -> Option<Effect> {
        while self.pending & !self.sigmask != 0 {
            let sig = u64::from((self.pending & !self.sigmask).trailing_zeros()) + 1;
            self.pending &= !bit(sig);
            if let Some(end) = self.take(sig) {
                return Some(end);
            }
        }
        None
    }

    /// `kill`, `tkill` and `tgkill` to the program itself: the process and
    /// thread ids are 1 (0 for `kill` is its own group, which is only it);
    /// any other target is `ESRCH`. Signal 0 only checks the target.
    pub(super) fn send(&mut self, target: Result<(), Errno>, sig: u64) -> Effect {
        let result = if sig > SIGNAL_MAX {
            Err(Errno::EINVAL)
        } else {
            target
        };
        if let Err(e) = result {
            return Effect::Return(e.negated());
        }
        if sig == 0 {
            return Effect::Return(0);
        }
        self.deliver(sig).unwrap_or(Effect::Return(0))
    }

    /// Which program `kill(pid, ...)` names: itself for 0 and 1.
    pub(super) fn kill_target(pid: u64) -> Result<(), Errno> {
        match i32::from_ne_bytes(pid.to_ne_bytes()[..4].try_into().unwrap_or([0xFF; 4])) {
            0 | 1 => Ok(()),
            _ => Err(ESRCH),
        }
    }

    /// Which thread `tgkill(tgid, tid, ...)` (or `tkill`, with `tgid` 1)
    /// names: non-positive ids are `EINVAL`; the one thread is 1 in 1.
    pub(super) fn thread_target(tgid: u64, tid: u64) -> Result<(), Errno> {
        let id = |v: u64| i32::from_ne_bytes(v.to_ne_bytes()[..4].try_into().unwrap_or([0xFF; 4]));
        match (id(tgid), id(tid)) {
            (g, t) if g <= 0 || t <= 0 => Err(Errno::EINVAL),
            (1, 1) => Ok(()),
            _ => Err(ESRCH),
        }
    }

    /// `rt_sigreturn`: kvmini never builds a signal frame, so there is none
    /// to return from; Linux ends a program whose frame it cannot restore
    /// with SIGSEGV.
    pub(super) fn sigreturn(&self) -> Effect {
        Effect::Killed(SIGSEGV)
    }

    /// `rt_sigpending`: the blocked signals sent and not yet delivered.
    pub(super) fn sigpending(&self, view: &GuestView<'_>, set: u64, size: u64) -> Effect {
        if size > 8 {
            return Effect::Return(Errno::EINVAL.negated());
        }
        let bytes = self.pending.to_le_bytes();
        let part = bytes
            .get(..usize::try_from(size).unwrap_or(0))
            .unwrap_or(&[]);
        match view.write_bytes(Gva::new(set), part) {
            Ok(()) => Effect::Return(0),
            Err(_) => Effect::Return(Errno::EFAULT.negated()),
        }
    }

    pub(super) fn sigaction(
        &mut self,
        view: &GuestView<'_>,
        sig: u64,
        act: u64,
        old: u64,
        size: u64,
    ) -> Result<i64, Errno> {
        if size != 8
            || sig == 0
            || sig > SIGNAL_MAX
            || (act != 0 && (sig == SIGKILL || sig == SIGSTOP))
        {
            return Err(Errno::EINVAL);
        }
        let slot = usize::try_from(sig - 1).map_err(|_| Errno::EINVAL)?;
        let new: Option<[u64; 4]> = if act == 0 {
            None
        } else {
            Some(view.read_obj(Gva::new(act)).map_err(|_| Errno::EFAULT)?)
        };
        let previous = self.actions.get(slot).copied().unwrap_or_default();
        if old != 0 {
            view.write_obj(Gva::new(old), previous)
                .map_err(|_| Errno::EFAULT)?;
        }
        if let (Some(new), Some(entry)) = (new, self.actions.get_mut(slot)) {
            *entry = new;
            // A pending signal whose action becomes "ignore" is dropped.
            if new[0] == SIG_IGN || (new[0] == SIG_DFL && !default_ends(sig)) {
                self.pending &= !bit(sig);
            }
        }
        Ok(0)
    }

    /// `rt_sigprocmask`; a pending signal it unblocks is delivered.
    pub(super) fn sigprocmask(
        &mut self,
        view: &GuestView<'_>,
        how: u64,
        set: u64,
        old: u64,
        size: u64,
    ) -> Effect {
        match self.change_mask(view, how, set, old, size) {
            Ok(()) => self.deliver_unblocked().unwrap_or(Effect::Return(0)),
            Err(e) => Effect::Return(e.negated()),
        }
    }

    fn change_mask(
        &mut self,
        view: &GuestView<'_>,
        how: u64,
        set: u64,
        old: u64,
        size: u64,
    ) -> Result<(), Errno> {
        if size != 8 {
            return Err(Errno::EINVAL);
        }
        let new: Option<u64> = if set == 0 {
            None
        } else {
            if how > SIG_SETMASK {
                return Err(Errno::EINVAL);
            }
            Some(view.read_obj(Gva::new(set)).map_err(|_| Errno::EFAULT)?)
        };
        if old != 0 {
            view.write_obj(Gva::new(old), self.sigmask)
                .map_err(|_| Errno::EFAULT)?;
        }
        if let Some(new) = new {
            // SIGKILL and SIGSTOP are never blocked.
            let unblockable = bit(SIGKILL) | bit(SIGSTOP);
            self.sigmask = match how {
                SIG_BLOCK => self.sigmask | new,
                SIG_SETMASK => new,
                _ => self.sigmask & !new,
            } & !unblockable;
        }
        Ok(())
    }

    /// `sigaltstack`: the alternate stack is recorded and answered (no
    /// handler runs on it); Linux's checks on flags and size apply.
    pub(super) fn sigaltstack(
        &mut self,
        view: &GuestView<'_>,
        new: u64,
        old: u64,
    ) -> Result<i64, Errno> {
        let wanted: Option<[u64; 3]> = if new == 0 {
            None
        } else {
            Some(view.read_obj(Gva::new(new)).map_err(|_| Errno::EFAULT)?)
        };
        if old != 0 {
            let s = self.altstack;
            view.write_obj(Gva::new(old), [s.sp, s.flags, s.size])
                .map_err(|_| Errno::EFAULT)?;
        }
        if let Some([sp, flags, size]) = wanted {
            // The flags are an int in the structure's second word.
            let flags = flags & 0xFFFF_FFFF;
            let mode = flags & !SS_AUTODISARM;
            if mode != 0 && mode != SS_DISABLE && mode != SS_ONSTACK {
                return Err(Errno::EINVAL);
            }
            self.altstack = if mode == SS_DISABLE {
                AltStack::default()
            } else if size < MINSIGSTKSZ {
                return Err(ENOMEM);
            } else {
                AltStack {
                    sp,
                    flags: flags & SS_AUTODISARM,
                    size,
                }
            };
        }
        Ok(0)
    }
}

/// The name of Linux signal `sig` on x86-64 (`SIGABRT` for 6), for
/// messages; `None` for the real-time signals and numbers that are none.
pub fn signal_name(sig: u8) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES.get(usize::from(sig).checked_sub(1)?).copied()
}
