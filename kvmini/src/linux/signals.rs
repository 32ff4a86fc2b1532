//! The signal state a Linux program sets: actions and the blocked mask are
//! recorded and never run (docs/linux.md); SIGPIPE's decides what a write
//! to a closed pipe does.

use super::Process;
use crate::addr::Gva;
use crate::errno::Errno;
use crate::view::GuestView;

const SIGKILL: u64 = 9;
const SIGSTOP: u64 = 19;
const SIG_BLOCK: u64 = 0;
const SIG_SETMASK: u64 = 2;
/// SIGPIPE's slot in the action table and its bit in the mask (signal 13).
const SIGPIPE_SLOT: usize = 12;
/// The default action of a signal, as `rt_sigaction` records it.
const SIG_DFL: u64 = 0;

impl Process {
    /// Whether SIGPIPE would end the program: its action is the default one
    /// and it is not blocked (a blocked SIGPIPE stays pending on Linux and
    /// the write returns EPIPE).
    pub(super) fn sigpipe_is_default(&self) -> bool {
        let handler = self.actions.get(SIGPIPE_SLOT).map_or(0, |action| action[0]);
        handler == SIG_DFL && self.sigmask & (1 << SIGPIPE_SLOT) == 0
    }

    pub(super) fn sigaction(
        &mut self,
        view: &GuestView<'_>,
        sig: u64,
        act: u64,
        old: u64,
        size: u64,
    ) -> Result<i64, Errno> {
        if size != 8 || sig == 0 || sig > 64 || (act != 0 && (sig == SIGKILL || sig == SIGSTOP)) {
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
        }
        Ok(0)
    }

    pub(super) fn sigprocmask(
        &mut self,
        view: &GuestView<'_>,
        how: u64,
        set: u64,
        old: u64,
        size: u64,
    ) -> Result<i64, Errno> {
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
            let unblockable = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1));
            self.sigmask = match how {
                SIG_BLOCK => self.sigmask | new,
                SIG_SETMASK => new,
                _ => self.sigmask & !new,
            } & !unblockable;
        }
        Ok(0)
    }
}
