//! A Linux program's pipes (docs/linux.md, "Pipes"): `pipe` and `pipe2`,
//! and the waits of its calls on them. The buffer and both ends are
//! kvmini's ([`crate::fs`]); what is left here is what Linux does when a
//! call would block. The program has one thread, so nothing can fill or
//! drain a pipe while it waits: a blocking read of an empty pipe whose
//! write end is open, or a blocking write to a full one, waits for a stop
//! (the timeout, a stop handle, SIGINT or SIGTERM), which ends the run.

use super::poll;
use super::Io;
use crate::addr::Gva;
use crate::errno::Errno;
use crate::fs::{PipeIo, O_CLOEXEC, O_NONBLOCK, PIPE_SIZE};
use crate::view::GuestView;

/// `O_DIRECT`: packet mode, which kvmini does not serve (`EINVAL`).
const O_DIRECT: u64 = 0o40000;
/// `FIONREAD`: the bytes waiting to be read.
const FIONREAD: u64 = 0x541B;
/// `fcntl`'s pipe size commands.
pub(super) const F_GETPIPE_SZ: u64 = 1032;

/// `pipe2` (and `pipe`, with no flags): the two descriptors go to the
/// `int[2]` at `fds`, checked writable before the pipe is made.
pub(super) fn pipe2(
    view: &GuestView<'_>,
    io: &mut Io<'_, '_>,
    fds: u64,
    flags: u64,
) -> Result<i64, Errno> {
    let known = u64::from(O_CLOEXEC | O_NONBLOCK);
    if flags & !known != 0 || flags & O_DIRECT != 0 {
        return Err(Errno::EINVAL);
    }
    view.check_writable(Gva::new(fds), 8)
        .map_err(|_| Errno::EFAULT)?;
    let flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    let ends = io.fs.linux_pipe2(flags & O_NONBLOCK, flags & O_CLOEXEC)?;
    if view.write_obj(Gva::new(fds), ends).is_err() {
        // Checked above; should the tables have changed, nothing is left
        // open that the program was not told of.
        for fd in ends {
            let _ = io.fs.linux_close(fd);
        }
        return Err(Errno::EFAULT);
    }
    Ok(0)
}

/// `read` or `write` of one buffer on any descriptor: on a pipe end, with
/// Linux's pipe semantics and waits; otherwise the filesystem's call.
pub(super) fn read_write(
    view: &GuestView<'_>,
    io: &mut Io<'_, '_>,
    fd: i32,
    (buf, len): (u64, u64),
    write: bool,
) -> Result<i64, Errno> {
    if io.fs.linux_is_pipe(fd) {
        return transfer(view, io, fd, &[(buf, len)], write);
    }
    let stdio = if write { Some(&mut *io.stdio) } else { None };
    io.fs.linux_io(view, fd, buf, len, None, stdio)
}

/// A transfer on pipe end `fd` from or into `buffers`: what moved, or
/// for a blocking end that would wait, a wait for a stop; a stop before
/// any byte moved is `EINTR`.
pub(super) fn transfer(
    view: &GuestView<'_>,
    io: &mut Io<'_, '_>,
    fd: i32,
    buffers: &[(u64, u64)],
    write: bool,
) -> Result<i64, Errno> {
    let moved = match io.fs.linux_pipe_io(view, fd, buffers, write)? {
        PipeIo::Moved(n) => n,
        PipeIo::Blocked(n) => {
            poll::until_stopped(io.stdio.stop);
            if n == 0 {
                return Err(Errno::EINTR);
            }
            n
        }
    };
    i64::try_from(moved).map_err(|_| Errno::EINVAL)
}

/// `ioctl(FIONREAD)` on a pipe end: the bytes waiting, as an `int` at
/// `arg`. `None` for any other request or descriptor.
pub(super) fn ioctl(
    view: &GuestView<'_>,
    io: &Io<'_, '_>,
    fd: i32,
    request: u64,
    arg: u64,
) -> Option<Result<i64, Errno>> {
    if request & 0xFFFF_FFFF != FIONREAD {
        return None;
    }
    let unread = io.fs.linux_pipe_unread(fd)?;
    Some(
        view.write_obj(Gva::new(arg), unread)
            .map(|()| 0)
            .map_err(|_| Errno::EFAULT),
    )
}

/// `fcntl(F_GETPIPE_SZ)`: the capacity of a pipe, `EBADF` for a
/// descriptor that is none.
pub(super) fn pipe_size(io: &Io<'_, '_>, fd: i32) -> Result<i64, Errno> {
    io.fs.linux_check_fd(fd)?;
    if io.fs.linux_is_pipe(fd) {
        Ok(PIPE_SIZE)
    } else {
        Err(Errno::EBADF)
    }
}
