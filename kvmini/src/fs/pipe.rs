//! Pipes inside the sandbox (docs/linux.md, "Pipes"): the buffer is kept
//! by kvmini, in pages as Linux keeps it, and both ends are descriptors of
//! the program's table; no host pipe is made and no host call moves a
//! byte. How many descriptors refer to each end is counted in the table
//! itself, so a close, a `dup2` over an end or a reset can never leave a
//! count wrong; a pipe no descriptor refers to is dropped.
//!
//! Nothing here waits: an end that would block says so
//! ([`PipeIo::Blocked`]) and the caller decides (`O_NONBLOCK` is
//! `EAGAIN`; a Linux program's blocking call waits for a stop).

use std::collections::VecDeque;

use super::{lookup, stat, CallResult, Descriptor, Filesystem};
use crate::addr::Gva;
use crate::errno::Errno;
use crate::view::GuestView;
use kvmini_abi::fs::IoArgs;
use vm_memory::{Bytes, GuestAddress};

/// One page of a pipe's buffer, as Linux fills it.
const PAGE: usize = 4096;
/// The pages a pipe holds (Linux's default: 64 KiB).
const PAGES: usize = 16;
/// What `F_GETPIPE_SZ` answers.
pub(crate) const PIPE_SIZE: i64 = 16 * 4096;
/// A pipe end's access modes (`F_GETFL`).
const O_RDONLY: u32 = 0;
const O_WRONLY: u32 = 1;
/// The status flag that makes an end answer `EAGAIN` instead of waiting.
pub(crate) const O_NONBLOCK: u32 = 0o4000;
/// `S_IFIFO | 0600`, what `fstat` of either end answers.
const FIFO_MODE: u32 = 0o010_600;

/// A pipe: its unread bytes, page by page (each page's bytes not yet read
/// start at its `read` offset), and the status flags of each end (read,
/// write), shared by every descriptor of that end as Linux shares an open
/// file's.
#[derive(Debug)]
pub(super) struct Pipe {
    pages: VecDeque<(Vec<u8>, usize)>,
    status: [u32; 2],
}

/// What a transfer on a pipe end did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PipeIo {
    /// Moved this many bytes; done.
    Moved(u64),
    /// Moved this many bytes (maybe none), and a blocking end would now
    /// wait for room or for bytes.
    Blocked(u64),
}

impl Pipe {
    fn unread(&self) -> usize {
        self.pages
            .iter()
            .map(|(bytes, read)| bytes.len() - read)
            .sum()
    }

    /// How many of `total` bytes a write takes now, as Linux's pipe
    /// write: the part of the write past its last whole page merges into
    /// the last page when it fits there, the rest takes fresh pages while
    /// fewer than [`PAGES`] are in use. A write of at most a page is so
    /// taken whole or not at all (`PIPE_BUF`).
    fn room_for(&self, total: usize) -> usize {
        let tail = total % PAGE;
        let mut taken = 0;
        if tail != 0 {
            if let Some((last, _)) = self.pages.back() {
                if last.len() + tail <= PAGE {
                    taken = tail;
                }
            }
        }
        let free = PAGES - self.pages.len();
        taken + (total - taken).min(free * PAGE)
    }

    /// Appends `bytes`, the first part of a write of `total` bytes that
    /// [`Pipe::room_for`] allowed.
    fn push(&mut self, total: usize, mut bytes: &[u8]) {
        let tail = total % PAGE;
        if tail != 0 && bytes.len() >= tail {
            if let Some((last, _)) = self.pages.back_mut() {
                if last.len() + tail <= PAGE {
                    last.extend_from_slice(&bytes[..tail]);
                    bytes = &bytes[tail..];
                }
            }
        }
        for chunk in bytes.chunks(PAGE) {
            let mut page = Vec::with_capacity(PAGE);
            page.extend_from_slice(chunk);
            self.pages.push_back((page, 0));
        }
    }

    /// Takes up to `want` bytes from the front into `out`.
    fn pop(&mut self, want: usize, out: &mut Vec<u8>) {
        out.clear();
        while out.len() < want {
            let Some((page, read)) = self.pages.front_mut() else {
                break;
            };
            let n = (page.len() - *read).min(want - out.len());
            out.extend_from_slice(&page[*read..*read + n]);
            *read += n;
            if *read == page.len() {
                self.pages.pop_front();
            }
        }
    }
}

/// Which end of which pipe `descriptor` is.
fn end_of(descriptor: &Descriptor) -> Option<(usize, usize)> {
    match descriptor {
        Descriptor::Pipe(id, write) => Some((*id, usize::from(*write))),
        _ => None,
    }
}

impl Filesystem {
    /// Which pipe end descriptor `fd` is: the pipe's index and the end (0
    /// read, 1 write); `None` for anything else, or a closed descriptor.
    fn pipe_end(&self, fd: i32) -> Option<(usize, usize)> {
        lookup(&self.fds, fd).ok().and_then(end_of)
    }

    fn pipe(&self, id: usize) -> Option<&Pipe> {
        self.pipes.get(id).and_then(Option::as_ref)
    }

    /// How many descriptors refer to each end (read, write) of pipe `id`.
    fn pipe_ends(&self, id: usize) -> [usize; 2] {
        let mut ends = [0; 2];
        for (pipe, end) in self.fds.iter().flatten().filter_map(end_of) {
            if pipe == id {
                ends[end] += 1;
            }
        }
        ends
    }

    /// Drops every pipe that no descriptor refers to any more.
    pub(super) fn drop_unused_pipes(&mut self) {
        for id in 0..self.pipes.len() {
            if self.pipes[id].is_some() && self.pipe_ends(id) == [0, 0] {
                self.pipes[id] = None;
            }
        }
        while matches!(self.pipes.last(), Some(None)) {
            self.pipes.pop();
        }
    }

    /// `pipe2`: a new pipe whose read and write ends take the two lowest
    /// free descriptors, with `O_NONBLOCK` from `status` and `cloexec`
    /// (`O_CLOEXEC`, as the descriptor flags record it) on both;
    /// `EMFILE` when two are not free.
    pub(crate) fn linux_pipe2(&mut self, status: u32, cloexec: u32) -> Result<[i32; 2], Errno> {
        let read = self.lowest_free()?;
        let write = (read + 1..self.max_fds)
            .find(|&s| self.fds.get(s).is_none_or(Option::is_none))
            .ok_or(Errno::EMFILE)?;
        let id = match self.pipes.iter().position(Option::is_none) {
            Some(id) => id,
            None => {
                self.pipes.push(None);
                self.pipes.len() - 1
            }
        };
        let status = status & O_NONBLOCK;
        self.pipes[id] = Some(Pipe {
            pages: VecDeque::new(),
            status: [O_RDONLY | status, O_WRONLY | status],
        });
        let ends = [
            self.install(read, Descriptor::Pipe(id, false)),
            self.install(write, Descriptor::Pipe(id, true)),
        ];
        let mut fds = [0i32; 2];
        for (out, fd) in fds.iter_mut().zip(ends) {
            self.set_fd_flags(fd, cloexec);
            *out = i32::try_from(fd).map_err(|_| Errno::EMFILE)?;
        }
        Ok(fds)
    }

    /// Whether descriptor `fd` is a pipe end.
    pub(crate) fn linux_is_pipe(&self, fd: i32) -> bool {
        self.pipe_end(fd).is_some()
    }

    /// A read into, or a write from, the guest `buffers` (address,
    /// length) on pipe end `fd`, as one call moves them (a `readv` or
    /// `writev` is one transfer, as on Linux). Every buffer is checked
    /// before a byte moves (`EFAULT`). A read of an empty pipe whose write
    /// end is closed is end of file; a write whose read end is closed is
    /// `EPIPE` (SIGPIPE is the caller's). A write on the read end or a
    /// read on the write end is `EBADF`. An end with `O_NONBLOCK` answers
    /// `EAGAIN` where nothing moved and a blocking end would wait.
    pub(crate) fn linux_pipe_io(
        &mut self,
        view: &GuestView<'_>,
        fd: i32,
        buffers: &[(u64, u64)],
        write: bool,
    ) -> Result<PipeIo, Errno> {
        let (id, end) = self.pipe_end(fd).ok_or(Errno::EBADF)?;
        if end != usize::from(write) {
            return Err(Errno::EBADF);
        }
        let mut pieces = std::mem::take(&mut self.pieces);
        let mut all = Vec::new();
        let mut total = 0u64;
        for &(gva, len) in buffers {
            let checked = view.pieces(Gva::new(gva), len, !write, &mut pieces);
            if checked.is_err() {
                self.pieces = pieces;
                return Err(Errno::EFAULT);
            }
            all.extend_from_slice(&pieces);
            total = total.checked_add(len).ok_or(Errno::EINVAL)?;
        }
        self.pieces = pieces;
        let total = usize::try_from(total).map_err(|_| Errno::EINVAL)?;
        if total == 0 {
            return Ok(PipeIo::Moved(0));
        }
        let other_end = self.pipe_ends(id)[1 - end];
        let mut scratch = std::mem::take(&mut self.scratch);
        let pipe = self
            .pipes
            .get_mut(id)
            .and_then(Option::as_mut)
            .ok_or(Errno::EBADF)?;
        let moved = if write {
            if other_end == 0 {
                self.scratch = scratch;
                return Err(Errno::EPIPE);
            }
            let n = pipe.room_for(total);
            scratch.resize(n, 0);
            copy(view, &all, &mut scratch, true)?;
            pipe.push(total, &scratch);
            n
        } else {
            if pipe.pages.is_empty() && other_end == 0 {
                self.scratch = scratch;
                return Ok(PipeIo::Moved(0));
            }
            pipe.pop(total, &mut scratch);
            copy(view, &all, &mut scratch, false)?;
            scratch.len()
        };
        let nonblock = pipe.status[end] & O_NONBLOCK != 0;
        self.scratch = scratch;
        let moved = moved as u64;
        let done = if write {
            moved == total as u64
        } else {
            moved > 0
        };
        match (done, nonblock) {
            (true, _) => Ok(PipeIo::Moved(moved)),
            (false, true) if moved == 0 => Err(Errno::EAGAIN),
            (false, true) => Ok(PipeIo::Moved(moved)),
            (false, false) => Ok(PipeIo::Blocked(moved)),
        }
    }

    /// kvmini's own read and write ports on a pipe end: as a Linux
    /// program's call on an end with `O_NONBLOCK` (those ports never wait
    /// on a pipe); positioned, `ESPIPE`.
    pub(super) fn pipe_port_io(
        &mut self,
        view: &GuestView<'_>,
        args: &IoArgs,
        positioned: bool,
        write: bool,
    ) -> CallResult {
        if positioned {
            return Err(Errno::ESPIPE);
        }
        match self.linux_pipe_io(view, args.fd, &[(args.buf, args.len)], write)? {
            PipeIo::Moved(n) => i64::try_from(n).map_err(|_| Errno::EINVAL),
            PipeIo::Blocked(0) => Err(Errno::EAGAIN),
            PipeIo::Blocked(n) => i64::try_from(n).map_err(|_| Errno::EINVAL),
        }
    }

    /// The bytes waiting in the pipe of end `fd` (`FIONREAD`); `None`
    /// when `fd` is not a pipe end.
    pub(crate) fn linux_pipe_unread(&self, fd: i32) -> Option<i32> {
        let (id, _) = self.pipe_end(fd)?;
        let unread = self.pipe(id).map_or(0, Pipe::unread);
        Some(i32::try_from(unread).unwrap_or(i32::MAX))
    }

    /// The status flags of pipe end `fd` (`F_GETFL`), or with `set` those
    /// `F_SETFL` may change replaced (`mask`); `None` when `fd` is not a
    /// pipe end.
    pub(super) fn pipe_status(&mut self, fd: i32, set: Option<(u32, u32)>) -> Option<u32> {
        let (id, end) = self.pipe_end(fd)?;
        let pipe = self.pipes.get_mut(id).and_then(Option::as_mut)?;
        if let Some((status, mask)) = set {
            pipe.status[end] = pipe.status[end] & !mask | status & mask;
        }
        Some(pipe.status[end])
    }

    /// What `poll` finds on pipe end `(id, end)`, as Linux's pipe: the
    /// read end is `POLLIN` when bytes wait and `POLLHUP` when no write
    /// end is left; the write end `POLLOUT` while a page is free, and
    /// `POLLERR` when no read end is left.
    pub(super) fn pipe_poll(&self, descriptor: &Descriptor) -> i16 {
        const POLLIN: i16 = 0x1;
        const POLLOUT: i16 = 0x4;
        const POLLERR: i16 = 0x8;
        const POLLHUP: i16 = 0x10;
        let Some((id, end)) = end_of(descriptor) else {
            return 0;
        };
        let Some(pipe) = self.pipe(id) else {
            return 0;
        };
        let others = self.pipe_ends(id)[1 - end];
        let mut ready = 0;
        if end == 0 {
            if !pipe.pages.is_empty() {
                ready |= POLLIN;
            }
            if others == 0 {
                ready |= POLLHUP;
            }
        } else {
            if pipe.pages.len() < PAGES {
                ready |= POLLOUT;
            }
            if others == 0 {
                ready |= POLLERR;
            }
        }
        ready
    }

    /// `fstat` of a pipe end: a FIFO, mode 0600, owned by root, size 0,
    /// as a pipe on Linux (whose size is always 0); its inode number is
    /// one no other live pipe has.
    pub(super) fn pipe_stat(&self, descriptor: &Descriptor) -> rustix::fs::Stat {
        let ino = end_of(descriptor).map_or(0, |(id, _)| id as u64 + 1);
        stat::served(FIFO_MODE, ino, 1)
    }
}

/// Copies between guest-physical `pieces` and `bytes`: with `from_guest`,
/// the first `bytes.len()` bytes of the pieces into `bytes`; without,
/// `bytes` into the pieces' first bytes.
fn copy(
    view: &GuestView<'_>,
    pieces: &[(u64, u64)],
    bytes: &mut [u8],
    from_guest: bool,
) -> Result<(), Errno> {
    let mut done = 0usize;
    for &(gpa, len) in pieces {
        if done == bytes.len() {
            break;
        }
        let n = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(bytes.len() - done);
        let part = &mut bytes[done..done + n];
        let at = GuestAddress(gpa);
        let copied = if from_guest {
            view.memory().read_slice(part, at)
        } else {
            view.memory().write_slice(part, at)
        };
        copied.map_err(|_| Errno::EFAULT)?;
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "a test fails by panicking"
    )]

    use super::*;
    use crate::grant::Grants;
    use crate::output::Input;

    fn table(max_fds: u32) -> Filesystem {
        Filesystem::new(Grants::open(&[]).unwrap(), max_fds, Input::Null)
    }

    fn empty() -> Pipe {
        Pipe {
            pages: VecDeque::new(),
            status: [O_RDONLY, O_WRONLY],
        }
    }

    #[test]
    fn writes_fill_pages_as_linux_does() {
        let mut pipe = empty();
        // A page less 100 bytes, then a write of 200 does not fit in the
        // last page and no page is free: nothing of it is taken.
        let fill = vec![1u8; 16 * 4096 - 100];
        assert_eq!(pipe.room_for(fill.len()), fill.len());
        pipe.push(fill.len(), &fill);
        assert_eq!(pipe.pages.len(), 16);
        assert_eq!(pipe.room_for(200), 0);
        assert_eq!(pipe.room_for(100), 100);
        pipe.push(100, &[2; 100]);
        assert_eq!(pipe.room_for(1), 0);
        // A byte read leaves its page in use: still full.
        let mut out = Vec::new();
        pipe.pop(1, &mut out);
        assert_eq!((out, pipe.unread()), (vec![1], 16 * 4096 - 1));
        assert_eq!(pipe.room_for(1), 0);
        // A whole page read frees one.
        pipe.pop(4095, &mut Vec::new());
        assert_eq!(pipe.room_for(5000), 4096);
        // Into an empty pipe, a large write takes every page and no more;
        // its part past the last whole page merges into the last page.
        let mut pipe = empty();
        assert_eq!(pipe.room_for(100_000), 16 * 4096);
        pipe.push(10, &[3; 10]);
        assert_eq!(pipe.room_for(4096 + 10), 4096 + 10);
        pipe.push(4096 + 10, &[4; 4096 + 10]);
        assert_eq!(pipe.pages.len(), 2);
        assert_eq!(pipe.pages[0].0.len(), 20);
        let mut out = Vec::new();
        pipe.pop(30, &mut out);
        assert_eq!(out, [[3u8; 10], [4; 10], [4; 10]].concat());
    }

    #[test]
    fn ends_are_counted_in_the_table_and_an_unused_pipe_is_dropped() {
        let mut fs = table(8);
        assert_eq!(fs.linux_pipe2(O_NONBLOCK, 0), Ok([3, 4]));
        assert_eq!(fs.pipe_ends(0), [1, 1]);
        // A duplicate shares the end and its status flags.
        let dup = fs.linux_dup(3, None, 0, false).unwrap();
        assert_eq!(dup, 5);
        assert_eq!(fs.pipe_ends(0), [2, 1]);
        assert_eq!(fs.pipe_status(5, Some((0, O_NONBLOCK))), Some(O_RDONLY));
        assert_eq!(fs.pipe_status(3, None), Some(O_RDONLY));
        assert_eq!(fs.pipe_status(4, None), Some(O_WRONLY | O_NONBLOCK));
        // dup2 over the write end closes it: the read end sees a hang-up.
        fs.linux_dup(1, Some(4), 0, false).unwrap();
        assert_eq!(fs.pipe_ends(0), [2, 0]);
        let read_end = fs.descriptor(3).unwrap().clone();
        assert_eq!(fs.pipe_poll(&read_end), 0x10);
        fs.linux_close(3).unwrap();
        assert!(fs.pipes[0].is_some());
        fs.linux_close(5).unwrap();
        assert!(fs.pipes.is_empty());
        // Two free descriptors are needed.
        let mut fs = table(5);
        assert_eq!(fs.linux_pipe2(0, 0), Ok([3, 4]));
        assert_eq!(fs.linux_pipe2(0, 0), Err(Errno::EMFILE));
        let mut fs = table(6);
        fs.linux_pipe2(0, 0).unwrap();
        assert_eq!(fs.linux_pipe2(0, 0), Err(Errno::EMFILE));
        assert_eq!(fs.pipes.len(), 1);
        // A reset drops every pipe.
        fs.reset();
        assert!(fs.pipes.is_empty());
        assert_eq!(fs.linux_pipe2(0, 0), Ok([3, 4]));
    }
}
