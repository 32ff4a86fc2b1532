//! The signal state a Linux program sets, and the signals it sends itself
//! (docs/linux.md, "Signals"): actions, the blocked mask, pending signals
//! and the alternate stack. A signal with a handler stays pending until
//! the way back from the call, where [`super::delivery`] runs the handler;
//! one whose action is the default ends the program as Linux ends it when
//! that default ends programs; an ignored one is dropped; a blocked one
//! waits, pending, until it is unblocked.

use super::calls::Effect;
use super::sigframe::Cause;
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
pub(super) fn bit(sig: u64) -> u64 {
    1u64 << (sig - 1)
}

/// What `sigaltstack` keeps: the alternate stack handlers with
/// `SA_ONSTACK` run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct AltStack {
    sp: u64,
    flags: u64,
    size: u64,
}

impl Default for AltStack {
    /// No stack, flags 0 as Linux starts a program (`sigaltstack` reports
    /// `SS_DISABLE` for any stack of size 0).
    fn default() -> Self {
        AltStack {
            sp: 0,
            flags: 0,
            size: 0,
        }
    }
}

impl AltStack {
    /// The stack after `SS_DISABLE` or `SS_AUTODISARM`.
    pub(super) fn disabled() -> Self {
        AltStack {
            sp: 0,
            flags: SS_DISABLE,
            size: 0,
        }
    }

    /// Whether `sp` is inside the stack, whatever its flags.
    pub(super) fn contains(&self, sp: u64) -> bool {
        sp > self.sp && sp.wrapping_sub(self.sp) <= self.size
    }

    /// Whether code at `sp` runs on the stack, as Linux counts it (never
    /// with `SS_AUTODISARM`).
    pub(super) fn on(&self, sp: u64) -> bool {
        !self.autodisarm() && self.contains(sp)
    }

    /// `SS_DISABLE`, `SS_ONSTACK` or 0, for code at `sp`.
    pub(super) fn mode(&self, sp: u64) -> u64 {
        if self.size == 0 {
            SS_DISABLE
        } else if self.on(sp) {
            SS_ONSTACK
        } else {
            0
        }
    }

    pub(super) fn autodisarm(&self) -> bool {
        self.flags & SS_AUTODISARM != 0
    }

    /// The address just above the stack.
    pub(super) fn top(&self) -> u64 {
        self.sp.wrapping_add(self.size)
    }

    /// The `stack_t` a frame records: base, flags as set, size.
    pub(super) fn as_stack_t(&self) -> [u64; 3] {
        [self.sp, self.flags, self.size]
    }
}

impl Process {
    /// A write found its reader gone: Linux sends the writer SIGPIPE.
    /// `Some` when that ends the program.
    pub(super) fn sigpipe(&mut self) -> Option<Effect> {
        self.deliver(SIGPIPE, Cause::Kill)
    }

    /// The action of `sig` when it is a handler.
    pub(super) fn handler_of(&self, sig: u64) -> Option<[u64; 4]> {
        let slot = usize::try_from(sig.wrapping_sub(1)).ok()?;
        self.actions
            .get(slot)
            .copied()
            .filter(|a| a[0] != SIG_DFL && a[0] != SIG_IGN)
    }

    /// Takes `sig` off the pending set, with how it was sent.
    pub(super) fn take_pending(&mut self, sig: u64) -> Cause {
        self.pending &= !bit(sig);
        let tkill = self.pending_tkill & bit(sig) != 0;
        self.pending_tkill &= !bit(sig);
        if tkill {
            Cause::Tkill
        } else {
            Cause::Kill
        }
    }

    /// Sets the blocked mask; SIGKILL and SIGSTOP are never blocked.
    pub(super) fn set_mask(&mut self, mask: u64) {
        self.sigmask = mask & !(bit(SIGKILL) | bit(SIGSTOP));
    }

    /// `SA_RESETHAND`: the action goes back to the default.
    pub(super) fn reset_action(&mut self, sig: u64) {
        if let Some(action) = usize::try_from(sig.wrapping_sub(1))
            .ok()
            .and_then(|slot| self.actions.get_mut(slot))
        {
            action[0] = SIG_DFL;
        }
    }

    fn handler(&self, sig: u64) -> u64 {
        usize::try_from(sig.wrapping_sub(1))
            .ok()
            .and_then(|slot| self.actions.get(slot))
            .map_or(SIG_DFL, |action| action[0])
    }

    /// Signal `sig` (1..=64), sent as `cause` says, reaches the program:
    /// blocked, or with a handler, it is pending (a handler runs on the
    /// way back from the call); otherwise its action decides. `Some` when
    /// it ends the program.
    fn deliver(&mut self, sig: u64, cause: Cause) -> Option<Effect> {
        if sig == SIGKILL {
            return Some(Effect::Killed(9));
        }
        if self.sigmask & bit(sig) != 0 || self.handler_of(sig).is_some() {
            self.pending |= bit(sig);
            if cause == Cause::Tkill {
                self.pending_tkill |= bit(sig);
            } else {
                self.pending_tkill &= !bit(sig);
            }
            return None;
        }
        self.take(sig)
    }

    /// The action of unblocked signal `sig` when it is not a handler: the
    /// default one ends the program where that default ends programs; an
    /// ignored one is dropped.
    pub(super) fn take(&mut self, sig: u64) -> Option<Effect> {
        (self.handler(sig) == SIG_DFL && default_ends(sig))
            .then(|| Effect::Killed(u8::try_from(sig).unwrap_or(SIGSEGV)))
    }

    /// Acts on the pending signals the mask no longer blocks, lowest
    /// first, as Linux does on the way back from the call that unblocked
    /// them; those with handlers stay pending for that way back.
    fn deliver_unblocked(&mut self) -> Option<Effect> {
        let ready = self.pending & !self.sigmask;
        for sig in (1..=SIGNAL_MAX).filter(|&s| ready & bit(s) != 0) {
            if self.handler_of(sig).is_some() {
                continue;
            }
            self.take_pending(sig);
            if let Some(end) = self.take(sig) {
                return Some(end);
            }
        }
        None
    }

    /// `kill`, `tkill` and `tgkill` to the program itself: the process and
    /// thread ids are 1 (0 for `kill` is its own group, which is only it);
    /// any other target is `ESRCH`. Signal 0 only checks the target.
    pub(super) fn send(&mut self, target: Result<(), Errno>, sig: u64, cause: Cause) -> Effect {
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
        self.deliver(sig, cause).unwrap_or(Effect::Return(0))
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

    /// `rt_sigreturn` served without its registers (the run loop serves
    /// it before, [`Process::signal_exit`]): there is no frame to read, and
    /// Linux ends a program whose frame it cannot restore with SIGSEGV.
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
            self.set_mask(match how {
                SIG_BLOCK => self.sigmask | new,
                SIG_SETMASK => new,
                _ => self.sigmask & !new,
            });
        }
        Ok(())
    }

    /// `sigaltstack`, as Linux checks it: flags, size, and no change
    /// while the program runs on the stack (`EPERM`); the old stack's
    /// flags say `SS_ONSTACK` while it does.
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
        let rsp = self.frames.rsp;
        if old != 0 {
            let s = self.altstack;
            let flags = s.mode(rsp) | (s.flags & SS_AUTODISARM);
            view.write_obj(Gva::new(old), [s.sp, flags, s.size])
                .map_err(|_| Errno::EFAULT)?;
        }
        if let Some([sp, flags, size]) = wanted {
            self.set_altstack(sp, flags, size, rsp)?;
        }
        Ok(0)
    }

    /// Sets the alternate stack for code at `rsp`.
    pub(super) fn set_altstack(
        &mut self,
        sp: u64,
        flags: u64,
        size: u64,
        rsp: u64,
    ) -> Result<(), Errno> {
        if self.altstack.on(rsp) {
            return Err(Errno::EPERM);
        }
        // The flags are an int in the structure's second word.
        let flags = flags & 0xFFFF_FFFF;
        let mode = flags & !SS_AUTODISARM;
        if mode != 0 && mode != SS_DISABLE && mode != SS_ONSTACK {
            return Err(Errno::EINVAL);
        }
        self.altstack = if mode == SS_DISABLE {
            AltStack::disabled()
        } else if size < MINSIGSTKSZ {
            return Err(ENOMEM);
        } else {
            AltStack { sp, flags, size }
        };
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::page_tables;
    use crate::layout::Layout;
    use crate::linux::ProcessLayout;
    use crate::paging::{CpuPaging, Paging, PagingMode};
    use vm_memory::{Bytes as _, GuestAddress};

    const MEM: u64 = 16 << 20;
    const SIGUSR1: u64 = 10;
    const SIGTERM: u64 = 15;
    const SIGCHLD: u64 = 17;
    const SIG_UNBLOCK: u64 = 1;

    /// A process, its guest memory, and a scratch address in its stack.
    fn setup() -> (crate::memory::GuestMemory, Layout, Process, u64) {
        let mem = crate::memory::allocate(MEM).unwrap();
        let layout = Layout::new(MEM);
        page_tables::build_identity_map(&mem, &layout, false).unwrap();
        let p = ProcessLayout::new(&layout, 0x20_0000).unwrap();
        let scratch = p.stack_bottom;
        (mem, layout, Process::new(p, 0, 0, 64), scratch)
    }

    fn view<'a>(mem: &'a crate::memory::GuestMemory, layout: &Layout) -> GuestView<'a> {
        let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
        GuestView::new(mem, long, layout.pml4(), true)
            .with_identity(page_tables::user_identity_range(layout, false))
    }

    /// `rt_sigprocmask(how, {sig}, NULL, 8)` with the set at `at`.
    fn mask(process: &mut Process, view: &GuestView<'_>, how: u64, sig: u64, at: u64) -> Effect {
        view.memory().write_obj(bit(sig), GuestAddress(at)).unwrap();
        process.sigprocmask(view, how, at, 0, 8)
    }

    /// `rt_sigaction(sig, {handler}, NULL, 8)` with the action at `at`.
    fn act(process: &mut Process, view: &GuestView<'_>, sig: u64, handler: u64, at: u64) {
        view.memory()
            .write_obj([handler, 0u64, 0, 0], GuestAddress(at))
            .unwrap();
        assert_eq!(process.sigaction(view, sig, at, 0, 8), Ok(0));
    }

    #[test]
    fn a_default_action_that_ends_a_program_ends_it_with_the_signal() {
        let (mem, layout, mut process, _) = setup();
        let _view = view(&mem, &layout);
        assert_eq!(
            process.send(Ok(()), SIGTERM, Cause::Kill),
            Effect::Killed(15)
        );
        assert_eq!(process.send(Ok(()), 6, Cause::Kill), Effect::Killed(6));
        assert_eq!(process.send(Ok(()), 64, Cause::Kill), Effect::Killed(64));
        // Ignored by default, or a stop: the program goes on.
        for sig in [SIGCHLD, 18, 19, 20, 21, 22, 23, 28] {
            assert_eq!(
                process.send(Ok(()), sig, Cause::Kill),
                Effect::Return(0),
                "{sig}"
            );
        }
        // Signal 0 checks only; a bad number or target is an errno.
        assert_eq!(process.send(Ok(()), 0, Cause::Kill), Effect::Return(0));
        assert_eq!(
            process.send(Ok(()), 65, Cause::Kill),
            Effect::Return(Errno::EINVAL.negated())
        );
        assert_eq!(
            process.send(Err(ESRCH), SIGTERM, Cause::Kill),
            Effect::Return(ESRCH.negated())
        );
    }

    #[test]
    fn a_blocked_signal_waits_until_it_is_unblocked() {
        let (mem, layout, mut process, at) = setup();
        let view = view(&mem, &layout);
        assert_eq!(
            mask(&mut process, &view, SIG_BLOCK, SIGUSR1, at),
            Effect::Return(0)
        );
        assert_eq!(
            process.send(Ok(()), SIGUSR1, Cause::Kill),
            Effect::Return(0)
        );
        assert_eq!(process.sigpending(&view, at, 8), Effect::Return(0));
        let pending: u64 = mem.read_obj(GuestAddress(at)).unwrap();
        assert_eq!(pending, bit(SIGUSR1));
        // Unblocking another signal delivers nothing.
        assert_eq!(
            mask(&mut process, &view, SIG_UNBLOCK, SIGTERM, at),
            Effect::Return(0)
        );
        assert_eq!(
            mask(&mut process, &view, SIG_UNBLOCK, SIGUSR1, at),
            Effect::Killed(10)
        );
        // SIGKILL cannot be blocked.
        assert_eq!(
            mask(&mut process, &view, SIG_BLOCK, SIGKILL, at),
            Effect::Return(0)
        );
        assert_eq!(
            process.send(Ok(()), SIGKILL, Cause::Kill),
            Effect::Killed(9)
        );
    }

    #[test]
    fn ignored_and_handled_signals_are_dropped_and_ignoring_drops_a_pending_one() {
        let (mem, layout, mut process, at) = setup();
        let view = view(&mem, &layout);
        act(&mut process, &view, SIGTERM, SIG_IGN, at);
        assert_eq!(
            process.send(Ok(()), SIGTERM, Cause::Kill),
            Effect::Return(0)
        );
        act(&mut process, &view, SIGUSR1, 0x40_1000, at);
        assert_eq!(
            process.send(Ok(()), SIGUSR1, Cause::Kill),
            Effect::Return(0)
        );
        // Pending, then ignored: gone; back to the default, then unblocked:
        // nothing is left to deliver.
        act(&mut process, &view, SIGUSR1, SIG_DFL, at);
        assert_eq!(
            mask(&mut process, &view, SIG_BLOCK, SIGUSR1, at),
            Effect::Return(0)
        );
        assert_eq!(
            process.send(Ok(()), SIGUSR1, Cause::Kill),
            Effect::Return(0)
        );
        act(&mut process, &view, SIGUSR1, SIG_IGN, at);
        act(&mut process, &view, SIGUSR1, SIG_DFL, at);
        assert_eq!(
            mask(&mut process, &view, SIG_UNBLOCK, SIGUSR1, at),
            Effect::Return(0)
        );
        // SIGPIPE follows the same rules.
        assert_eq!(process.sigpipe(), Some(Effect::Killed(13)));
        act(&mut process, &view, SIGPIPE, SIG_IGN, at);
        assert_eq!(process.sigpipe(), None);
    }

    #[test]
    fn the_targets_are_the_program_itself() {
        assert_eq!(Process::kill_target(0), Ok(()));
        assert_eq!(Process::kill_target(1), Ok(()));
        assert_eq!(Process::kill_target(2), Err(ESRCH));
        assert_eq!(Process::kill_target(u64::MAX), Err(ESRCH));
        assert_eq!(Process::thread_target(1, 1), Ok(()));
        assert_eq!(Process::thread_target(1, 2), Err(ESRCH));
        assert_eq!(Process::thread_target(2, 1), Err(ESRCH));
        assert_eq!(Process::thread_target(0, 1), Err(Errno::EINVAL));
        assert_eq!(Process::thread_target(1, u64::MAX), Err(Errno::EINVAL));
    }

    #[test]
    fn sigaltstack_is_recorded_and_checked() {
        let (mem, layout, mut process, at) = setup();
        let view = view(&mem, &layout);
        let old = at + 64;
        assert_eq!(process.sigaltstack(&view, 0, old), Ok(0));
        let start: [u64; 3] = mem.read_obj(GuestAddress(old)).unwrap();
        assert_eq!(start, [0, SS_DISABLE, 0]);
        mem.write_obj([0x1234u64, 0, 4096], GuestAddress(at))
            .unwrap();
        assert_eq!(process.sigaltstack(&view, at, old), Ok(0));
        assert_eq!(process.sigaltstack(&view, 0, old), Ok(0));
        let set: [u64; 3] = mem.read_obj(GuestAddress(old)).unwrap();
        assert_eq!(set, [0x1234, 0, 4096]);
        mem.write_obj([0x1234u64, 0, 100], GuestAddress(at))
            .unwrap();
        assert_eq!(process.sigaltstack(&view, at, 0), Err(ENOMEM));
        mem.write_obj([0x1234u64, 0x40, 4096], GuestAddress(at))
            .unwrap();
        assert_eq!(process.sigaltstack(&view, at, 0), Err(Errno::EINVAL));
        assert_eq!(process.sigaltstack(&view, 8, 0), Err(Errno::EFAULT));
        assert_eq!(process.sigreturn(), Effect::Killed(11));
    }

    #[test]
    fn signals_have_their_linux_names() {
        assert_eq!(signal_name(6), Some("SIGABRT"));
        assert_eq!(signal_name(15), Some("SIGTERM"));
        assert_eq!(signal_name(31), Some("SIGSYS"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(34), None);
    }
}
