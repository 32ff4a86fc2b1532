//! The calls about the process itself, answered as a lone process on a
//! one-CPU machine answers them: its name (`prctl`), its CPU
//! (`sched_getaffinity`, `sched_yield`), its parent, group and session,
//! and `sysinfo` (kvmini's guest memory, never the host's).

use super::Process;
use crate::addr::Gva;
use crate::errno::Errno;
use crate::view::{GuestView, ViewError};

const PR_SET_NAME: u64 = 15;
const PR_GET_NAME: u64 = 16;
/// The size of a task's name, its NUL included.
pub(super) const NAME_SIZE: usize = 16;
/// The bytes of a CPU mask kvmini answers (one `long`, as Linux gives on a
/// machine configured for up to 64 CPUs).
const CPU_MASK_BYTES: u64 = 8;
const EPERM: Errno = Errno::EPERM;
const ESRCH: Errno = match Errno::new(libc::ESRCH) {
    Some(e) => e,
    None => Errno::EINVAL,
};

/// The name Linux gives a program at `execve`: the last part of its path,
/// cut to 15 bytes.
pub(super) fn initial_name(exe: &[u8]) -> [u8; NAME_SIZE] {
    let base = exe.rsplit(|&b| b == b'/').next().unwrap_or(exe);
    let mut name = [0u8; NAME_SIZE];
    for (slot, &byte) in name.iter_mut().zip(base).take(NAME_SIZE - 1) {
        *slot = byte;
    }
    name
}

/// Whether `pid` names the program (0 is "the caller").
fn is_self(pid: u64) -> bool {
    matches!(pid & 0xFFFF_FFFF, 0 | 1)
}

impl Process {
    /// `prctl`: `PR_SET_NAME` and `PR_GET_NAME` (the program's own name,
    /// 15 bytes and a NUL); every other option is `EINVAL`.
    pub(super) fn prctl(
        &mut self,
        view: &GuestView<'_>,
        option: u64,
        arg: u64,
    ) -> Result<i64, Errno> {
        match option & 0xFFFF_FFFF {
            PR_SET_NAME => {
                let mut name = Vec::with_capacity(NAME_SIZE);
                match view.read_c_string(Gva::new(arg), NAME_SIZE as u64 - 1, &mut name) {
                    // Linux takes the first 15 bytes of a longer name.
                    Ok(()) | Err(ViewError::Unterminated { .. }) => {}
                    Err(_) => return Err(Errno::EFAULT),
                }
                self.name = [0; NAME_SIZE];
                for (slot, byte) in self.name.iter_mut().zip(name) {
                    *slot = byte;
                }
                Ok(0)
            }
            PR_GET_NAME => view
                .write_obj(Gva::new(arg), self.name)
                .map(|()| 0)
                .map_err(|_| Errno::EFAULT),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `sysinfo`: the time since the program started as the uptime, no
    /// load, guest memory as the RAM (free: what the break and the
    /// mappings have not taken), no swap, one process. Nothing of the
    /// host's.
    pub(super) fn sysinfo(&self, view: &GuestView<'_>, buf: u64) -> Result<i64, Errno> {
        let free = self.free_memory();
        let mut info = [0u64; 14];
        info[0] = self.started.elapsed().as_secs();
        info[4] = view.memory_size();
        info[5] = free;
        // `procs` (a u16) and its padding share word 10; `mem_unit` (a u32)
        // is the low half of word 13.
        info[10] = 1;
        info[13] = 1;
        view.write_obj(Gva::new(buf), info)
            .map(|()| 0)
            .map_err(|_| Errno::EFAULT)
    }
}

/// `sched_getaffinity`: one CPU, CPU 0. A mask shorter than a `long` or of
/// a length that is not a multiple of one is `EINVAL`, as on Linux; the
/// result is the number of bytes written.
pub(super) fn sched_getaffinity(
    view: &GuestView<'_>,
    pid: u64,
    len: u64,
    mask: u64,
) -> Result<i64, Errno> {
    if !is_self(pid) {
        return Err(ESRCH);
    }
    if len < CPU_MASK_BYTES || len % CPU_MASK_BYTES != 0 {
        return Err(Errno::EINVAL);
    }
    view.write_obj(Gva::new(mask), 1u64)
        .map(|()| 8)
        .map_err(|_| Errno::EFAULT)
}

/// `getpgid` and `getsid`: the program leads its own group and session (1).
pub(super) fn group_of(pid: u64) -> Result<i64, Errno> {
    if is_self(pid) {
        Ok(1)
    } else {
        Err(ESRCH)
    }
}

/// `setsid`: a group leader cannot start a session; the program is one.
pub(super) fn setsid() -> Result<i64, Errno> {
    Err(EPERM)
}
