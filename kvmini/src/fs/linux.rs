//! The descriptor table as Linux programs' system calls reach it
//! ([`crate::linux`]): the same handlers, grants and checks as the
//! filesystem hypercalls, with arguments in registers instead of a block,
//! and Linux's open-flag rules (unknown flags ignored); and the working
//! directory and directory descriptors relative paths start from
//! (docs/linux.md, "Descriptors and directories").

use kvmini_abi::fs::{
    IoArgs, OpenArgs, PathArgs, RenameArgs, SeekArgs, StatArgs, TruncateArgs, O_SUPPORTED,
};
use kvmini_abi::Port;
use rustix::fs::{FileType, Mode, OFlags, RenameFlags};

use std::os::fd::{AsFd, BorrowedFd};

use super::{lookup, CallResult, Descriptor, Filesystem, StdinSource, StdioSinks, AT_FDCWD};
use crate::addr::Gva;
use crate::errno::Errno;
use crate::grant::{normalize, Location};
use crate::view::GuestView;

/// The host's `ppoll` of one descriptor for `events`, waiting at most
/// `timeout_ns` (`None`: without end): the events it found, 0 when the time
/// ran out; `EINTR` when a signal (a stop) came first.
pub(crate) fn host_poll(fd: BorrowedFd<'_>, events: i16, timeout_ns: u64) -> Result<i16, Errno> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: i64::try_from(timeout_ns / 1_000_000_000).unwrap_or(i64::MAX),
        tv_nsec: i64::try_from(timeout_ns % 1_000_000_000).unwrap_or(0),
    };
    // SAFETY: one live pollfd and a live timespec, read and written only
    // for the call; no signal mask is changed.
    let n = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    if n < 0 {
        return Err(Errno::of_io(&std::io::Error::last_os_error(), Errno::EINTR));
    }
    Ok(pfd.revents)
}

/// The flags `F_GETFL` answers for descriptors 0, 1 and 2 at the start.
pub(super) const STDIO_FLAGS: [u32; 3] = [0, 1, 1];

/// What `F_SETFL` may change: `O_APPEND`, `O_NONBLOCK`, `O_ASYNC`,
/// `O_DIRECT`, `O_NOATIME`, as on Linux.
const SETFL_MASK: u32 = 0o2000 | 0o4000 | 0o20000 | 0o40000 | 0o1000000;
/// What `F_GETFL` keeps of the open flags.
const GETFL_MASK: u32 = 0o3 | SETFL_MASK | O_CLOEXEC;
/// `O_LARGEFILE`: every open file has it on x86-64 Linux.
const O_LARGEFILE: u32 = 0o100000;
/// `FD_CLOEXEC`, kept with the status flags.
pub(crate) const O_CLOEXEC: u32 = 0o2000000;

/// The directory a relative path given with `dirfd` starts from: the
/// working directory for `AT_FDCWD`, else the guest path the descriptor
/// was opened by (`EBADF` when it is not open, `ENOTDIR` when it is not a
/// directory). An error matters only for a relative path.
pub(super) fn base<'a>(
    fds: &'a [Option<Descriptor>],
    cwd: &'a [u8],
    dirfd: i32,
) -> Result<&'a [u8], Errno> {
    if dirfd == AT_FDCWD {
        return Ok(cwd);
    }
    match lookup(fds, dirfd)? {
        Descriptor::File(file, path, _) if is_directory(file)? => Ok(path),
        Descriptor::Synthetic(path, _) => Ok(path),
        _ => Err(Errno::ENOTDIR),
    }
}

fn is_directory(file: &std::os::fd::OwnedFd) -> Result<bool, Errno> {
    let st = rustix::fs::fstat(file).map_err(Errno::from)?;
    Ok(FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

/// Puts a relative `path` after `base` (an empty one stays empty: it is
/// `ENOENT` when resolved); an absolute one is left as it is.
pub(super) fn join_base(base: Result<&[u8], Errno>, path: &mut Vec<u8>) -> Result<(), Errno> {
    if path.is_empty() || path.first() == Some(&b'/') {
        return Ok(());
    }
    let base = base?;
    let mut joined = Vec::with_capacity(base.len() + 1 + path.len());
    joined.extend_from_slice(base);
    joined.push(b'/');
    joined.extend_from_slice(path);
    *path = joined;
    Ok(())
}

/// `path` (absolute) with `.`, `..` and repeated slashes taken out
/// lexically: `/a/./b/../c/` is `/a/c`.
pub(super) fn lexical(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for component in normalize(path).unwrap_or_default() {
        out.push(b'/');
        out.extend_from_slice(&component);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

impl Filesystem {
    /// `read` or `pread64` (without `stdio`), `write` or `pwrite64` (with
    /// it), at `offset` when positioned.
    pub(crate) fn linux_io(
        &mut self,
        view: &GuestView<'_>,
        fd: i32,
        buf: u64,
        len: u64,
        offset: Option<i64>,
        stdio: Option<&mut StdioSinks<'_>>,
    ) -> CallResult {
        let args = IoArgs {
            fd,
            buf,
            len,
            offset: offset.unwrap_or(0),
            ..Default::default()
        };
        match stdio {
            Some(stdio) => self.write(view, &args, offset.is_some(), stdio),
            None => self.read(view, &args, offset.is_some()),
        }
    }

    /// `open` with Linux's flags: those kvmini does not act on
    /// (`O_LARGEFILE`, `O_NOCTTY`, `O_NONBLOCK`, ...) are ignored.
    pub(crate) fn linux_open(
        &mut self,
        view: &GuestView<'_>,
        dirfd: i32,
        path: u64,
        flags: u64,
        mode: u64,
    ) -> CallResult {
        let args = OpenArgs {
            path,
            flags: u32::try_from(flags & u64::from(O_SUPPORTED)).unwrap_or(0),
            mode: u32::try_from(mode & 0o7777).unwrap_or(0),
            ..Default::default()
        };
        let fd = self.open(view, &args, dirfd)?;
        let flags = u32::try_from(flags & 0xFFFF_FFFF).unwrap_or(0) & GETFL_MASK;
        self.set_fd_flags(fd, flags | O_LARGEFILE);
        Ok(fd)
    }

    /// `open` and `openat` of a Linux program: `/proc/self/maps` opens
    /// the text `maps` makes (see [`super::proc_maps`]); any other path as
    /// [`Filesystem::linux_open`] opens it.
    pub(crate) fn linux_open_with_maps(
        &mut self,
        view: &GuestView<'_>,
        (dirfd, path): (i32, u64),
        flags: u64,
        mode: u64,
        maps: &dyn Fn() -> Vec<u8>,
    ) -> CallResult {
        let mut name = std::mem::take(&mut self.path);
        let read = Self::read_path(view, path, base(&self.fds, &self.cwd, dirfd), &mut name);
        let named = read.and_then(|()| super::proc_maps::names(&name));
        self.path = name;
        if !named? {
            return self.linux_open(view, dirfd, path, flags, mode);
        }
        let status = u32::try_from(flags & 0xFFFF_FFFF).unwrap_or(0);
        let slot = self.lowest_free()?;
        let fd = self.open_maps(status, slot, maps)?;
        self.set_fd_flags(fd, status & GETFL_MASK | O_LARGEFILE);
        Ok(fd)
    }

    pub(super) fn set_fd_flags(&mut self, fd: i64, flags: u32) {
        if let Ok(slot) = usize::try_from(fd) {
            if slot >= self.fd_flags.len() {
                self.fd_flags.resize(slot + 1, 0);
            }
            self.fd_flags[slot] = flags;
        }
    }

    fn fd_flags(&self, fd: i32) -> u32 {
        usize::try_from(fd)
            .ok()
            .and_then(|s| self.fd_flags.get(s).copied())
            .unwrap_or(0)
    }

    /// `dup` (`to` `None`, from `min` up), `dup2` and `dup3` (`to` given):
    /// the new descriptor shares `fd`'s open file; `cloexec` sets its
    /// `FD_CLOEXEC`.
    pub(crate) fn linux_dup(
        &mut self,
        fd: i32,
        to: Option<i32>,
        min: i32,
        cloexec: bool,
    ) -> CallResult {
        let descriptor = self.descriptor(fd)?.clone();
        let slot = match to {
            Some(to) => {
                let slot = usize::try_from(to)
                    .ok()
                    .filter(|&s| s < self.max_fds)
                    .ok_or(Errno::EBADF)?;
                if to == fd {
                    return Ok(i64::from(to));
                }
                slot
            }
            None => {
                let min = usize::try_from(min)
                    .ok()
                    .filter(|&m| m < self.max_fds)
                    .ok_or(Errno::EINVAL)?;
                (min..self.max_fds)
                    .find(|&s| self.fds.get(s).is_none_or(Option::is_none))
                    .ok_or(Errno::EMFILE)?
            }
        };
        let flags = self.fd_flags(fd) & !O_CLOEXEC | if cloexec { O_CLOEXEC } else { 0 };
        let new = self.install(slot, descriptor);
        self.set_fd_flags(new, flags);
        Ok(new)
    }

    /// The flags of open descriptor `fd` (`O_CLOEXEC` for `FD_CLOEXEC`),
    /// or with `set` `F_SETFD` (`true`) or `F_SETFL` (`false`).
    pub(crate) fn linux_fd_flags(&mut self, fd: i32, set: Option<(bool, u32)>) -> CallResult {
        self.descriptor(fd)?;
        let flags = self.fd_flags(fd);
        let fd64 = i64::from(fd);
        Ok(match set {
            None => i64::from(match self.pipe_status(fd, None) {
                Some(pipe) => flags & O_CLOEXEC | pipe,
                None => flags,
            }),
            Some((true, fd_flags)) => {
                let cloexec = if fd_flags & 1 != 0 { O_CLOEXEC } else { 0 };
                self.set_fd_flags(fd64, flags & !O_CLOEXEC | cloexec);
                0
            }
            Some((false, status)) => {
                // A pipe end's status flags are the end's, shared by its
                // duplicates, as an open file's are on Linux.
                if self.pipe_status(fd, Some((status, SETFL_MASK))).is_none() {
                    self.set_fd_flags(fd64, flags & !SETFL_MASK | status & SETFL_MASK);
                }
                0
            }
        })
    }

    /// `close`.
    pub(crate) fn linux_close(&mut self, fd: i32) -> CallResult {
        self.close(fd)
    }

    /// `lseek`.
    pub(crate) fn linux_lseek(&mut self, fd: i32, offset: i64, whence: u64) -> CallResult {
        let whence = u32::try_from(whence).map_err(|_| Errno::EINVAL)?;
        self.lseek(&SeekArgs {
            fd,
            whence,
            offset,
            ..Default::default()
        })
    }

    /// `stat` of `path` from directory descriptor `fd`, or `fstat` of
    /// `fd` without a path, into `stat`.
    pub(crate) fn linux_stat(
        &mut self,
        view: &GuestView<'_>,
        path: Option<u64>,
        fd: i32,
        stat: u64,
    ) -> CallResult {
        let args = StatArgs {
            path: path.unwrap_or(0),
            fd,
            stat,
            ..Default::default()
        };
        self.stat(view, &args, path.map(|_| fd))
    }

    /// `mkdir` (`mode` already under the program's umask), `unlink` or
    /// `rmdir` of `path` from directory descriptor `dirfd`.
    pub(crate) fn linux_path_call(
        &mut self,
        view: &GuestView<'_>,
        port: Port,
        dirfd: i32,
        path: u64,
        mode: u32,
    ) -> CallResult {
        let args = PathArgs {
            path,
            mode,
            ..Default::default()
        };
        self.path_call(view, port, &args, dirfd)
    }

    /// `renameat2` of `old` from `old_dirfd` to `new` from `new_dirfd`
    /// with `flags` (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`, or none).
    pub(crate) fn linux_rename(
        &mut self,
        view: &GuestView<'_>,
        (old_dirfd, old): (i32, u64),
        (new_dirfd, new): (i32, u64),
        flags: u64,
    ) -> CallResult {
        let args = RenameArgs {
            old,
            new,
            ..Default::default()
        };
        let flags = RenameFlags::from_bits(u32::try_from(flags).map_err(|_| Errno::EINVAL)?)
            .ok_or(Errno::EINVAL)?;
        self.rename_with(view, &args, (old_dirfd, new_dirfd), flags)
    }

    /// `getdents64` of directory descriptor `fd` into `buf`.
    pub(crate) fn linux_getdents(
        &mut self,
        view: &GuestView<'_>,
        fd: i32,
        buf: u64,
        len: u64,
    ) -> CallResult {
        let args = IoArgs {
            fd,
            buf,
            len,
            ..Default::default()
        };
        self.getdents(view, &args)
    }

    /// `fsync` (and `fdatasync`, a full `fsync` here).
    pub(crate) fn linux_fsync(&mut self, fd: i32) -> CallResult {
        self.fsync(fd)
    }

    /// `ftruncate`.
    pub(crate) fn linux_ftruncate(&mut self, fd: i32, length: i64) -> CallResult {
        self.ftruncate(&TruncateArgs {
            fd,
            length,
            ..Default::default()
        })
    }

    /// `readlink` of `path` from `dirfd` into `buf` (at most `size`
    /// bytes, no NUL): `/proc/self/exe` answers `exe`, the program's path;
    /// anything else is read beneath its grant (`EINVAL` when it is not a
    /// symlink).
    pub(crate) fn linux_readlink(
        &mut self,
        view: &GuestView<'_>,
        (dirfd, path): (i32, u64),
        (buf, size): (u64, u64),
        exe: &[u8],
    ) -> CallResult {
        let size = i32::try_from(size & 0xFFFF_FFFF)
            .ok()
            .filter(|&s| s > 0)
            .ok_or(Errno::EINVAL)?;
        let base = base(&self.fds, &self.cwd, dirfd);
        let mut name = std::mem::take(&mut self.path);
        let read = Self::read_path(view, path, base, &mut name);
        let target = read.and_then(|()| {
            if name == b"/proc/self/exe" {
                return Ok(exe.to_vec());
            }
            match self.grants.resolve(&name)?.location(false)? {
                Location::Entry { dir, name } => {
                    rustix::fs::readlinkat(&dir, name.as_c_str(), Vec::new())
                        .map(std::ffi::CString::into_bytes)
                        .map_err(Errno::from)
                }
                Location::Directory(_) => Err(Errno::EINVAL),
            }
        });
        self.path = name;
        let target = target?;
        let n = target.len().min(usize::try_from(size).unwrap_or(0));
        let bytes = target.get(..n).unwrap_or_default();
        view.check_writable(Gva::new(buf), n as u64)
            .map_err(|_| Errno::EFAULT)?;
        view.write_bytes(Gva::new(buf), bytes)
            .map_err(|_| Errno::EFAULT)?;
        i64::try_from(n).map_err(|_| Errno::EINVAL)
    }

    /// `faccessat2` of `path` from `dirfd` for a program with `uid` and
    /// `gid`: `mode` (`R_OK`, `W_OK`, `X_OK`, or 0 for existence) against
    /// the file's permission bits as Linux checks them (root reads and
    /// writes everything, and executes what has an execute bit or is a
    /// directory); writing under a read-only grant is `EROFS`.
    pub(crate) fn linux_access(
        &mut self,
        view: &GuestView<'_>,
        (dirfd, path): (i32, u64),
        mode: u64,
        follow: bool,
        (uid, gid): (u32, u32),
    ) -> CallResult {
        if mode & !7 != 0 {
            return Err(Errno::EINVAL);
        }
        let base = base(&self.fds, &self.cwd, dirfd);
        let mut name = std::mem::take(&mut self.path);
        let read = Self::read_path(view, path, base, &mut name);
        let found = read.and_then(|()| {
            if super::null_device::names(&name)? {
                return Ok((super::null_device::stat(), false));
            }
            if super::proc_maps::names(&name)? {
                return Ok((super::proc_maps::stat(), false));
            }
            if self.synthetic_entries(&name)?.is_some() {
                return Ok((super::synthetic::stat(&name), true));
            }
            let resolved = self.grants.resolve(&name)?;
            let flags = if follow {
                OFlags::PATH
            } else {
                OFlags::PATH | OFlags::NOFOLLOW
            };
            let file = resolved.open(flags, Mode::empty())?;
            let st = rustix::fs::fstat(&file).map_err(Errno::from)?;
            Ok((st, resolved.grant.read_only()))
        });
        self.path = name;
        let (st, read_only) = found?;
        if mode & 2 != 0 && read_only {
            return Err(Errno::EROFS);
        }
        let bits = st.st_mode;
        let allowed = if uid == 0 {
            let executable =
                bits & 0o111 != 0 || FileType::from_raw_mode(bits) == FileType::Directory;
            6 | u64::from(executable)
        } else if st.st_uid == uid {
            u64::from(bits >> 6 & 7)
        } else if st.st_gid == gid {
            u64::from(bits >> 3 & 7)
        } else {
            u64::from(bits & 7)
        };
        if mode & !allowed != 0 {
            return Err(Errno::EACCES);
        }
        Ok(0)
    }

    /// The working directory (absolute, normalized).
    pub(crate) fn linux_cwd(&self) -> &[u8] {
        &self.cwd
    }

    /// Makes `path` (absolute) the working directory, now and at the start
    /// of every run: it must be a directory under a grant, or `/`.
    pub fn set_start_cwd(&mut self, path: &[u8]) -> Result<(), Errno> {
        let mut path = path.to_vec();
        join_base(Err(Errno::ENOENT), &mut path)?;
        self.enter(&path)?;
        self.start_cwd.clone_from(&self.cwd);
        Ok(())
    }

    /// `chdir`: the path, from the working directory, must name a
    /// directory (`/` always does).
    pub(crate) fn linux_chdir(&mut self, view: &GuestView<'_>, path: u64) -> CallResult {
        let mut buf = std::mem::take(&mut self.path);
        let result =
            Self::read_path(view, path, Ok(&self.cwd), &mut buf).and_then(|()| self.enter(&buf));
        self.path = buf;
        result.map(|()| 0)
    }

    /// `fchdir`: the directory descriptor's path becomes the working
    /// directory.
    pub(crate) fn linux_fchdir(&mut self, fd: i32) -> CallResult {
        let path = base(&self.fds, &self.cwd, fd)?.to_vec();
        self.cwd = path;
        Ok(0)
    }

    /// Makes the absolute `path` the working directory if it is one.
    fn enter(&mut self, path: &[u8]) -> Result<(), Errno> {
        let normal = lexical(path);
        if self.synthetic_entries(path)?.is_none() {
            let resolved = self.grants.resolve(path)?;
            resolved.open(OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
        }
        self.cwd = normal;
        Ok(())
    }

    /// Which standard stream (0, 1, 2) descriptor `fd` is, `None` for a
    /// file, `EBADF` when it is not open.
    pub(crate) fn linux_std_stream(&self, fd: i32) -> Result<Option<usize>, Errno> {
        Ok(match self.descriptor(fd)? {
            Descriptor::Stdin => Some(0),
            Descriptor::Stdout => Some(1),
            Descriptor::Stderr => Some(2),
            Descriptor::File(..)
            | Descriptor::Null(_)
            | Descriptor::Synthetic(..)
            | Descriptor::ProcMaps(_)
            | Descriptor::Pipe(..) => None,
        })
    }

    /// What `poll` finds on descriptor `fd` for `events`: files and
    /// directories are always ready to read and write, as on Linux; kvmini's
    /// stdout and stderr to write; stdin to read when it is empty or an
    /// embedding program's reader, and when it is kvmini's own, what the
    /// host's `ppoll` of it says at once. `None`: the descriptor is not
    /// open. The second value is kvmini's stdin when a wait for it makes
    /// sense.
    pub(crate) fn linux_poll_one(
        &self,
        fd: i32,
        events: i16,
    ) -> Option<(i16, Option<BorrowedFd<'_>>)> {
        const POLLIN: i16 = 0x1;
        const POLLOUT: i16 = 0x4;
        const ALWAYS: i16 = 0x8 | 0x10; // POLLERR | POLLHUP
        let (ready, host) = match (self.descriptor(fd).ok()?, &self.stdin) {
            (
                Descriptor::File(..)
                | Descriptor::Null(_)
                | Descriptor::Synthetic(..)
                | Descriptor::ProcMaps(_),
                _,
            ) => (POLLIN | POLLOUT, None),
            (Descriptor::Stdout | Descriptor::Stderr, _) => (POLLOUT, None),
            (Descriptor::Stdin, StdinSource::Inherit(stdin)) => {
                let fd = stdin.as_fd();
                (host_poll(fd, events, 0).unwrap_or(0), Some(fd))
            }
            (Descriptor::Stdin, _) => (POLLIN, None),
            (pipe @ Descriptor::Pipe(..), _) => (self.pipe_poll(pipe), None),
        };
        let revents = ready & (events | ALWAYS);
        Some((
            revents,
            host.filter(|_| revents == 0 && events & POLLIN != 0),
        ))
    }

    /// 0 for an open descriptor, else `EBADF`.
    pub(crate) fn linux_check_fd(&self, fd: i32) -> CallResult {
        self.descriptor(fd).map(|_| 0)
    }

    /// Whether the path at `path` is empty.
    pub(crate) fn linux_path_is_empty(
        &self,
        view: &GuestView<'_>,
        path: u64,
    ) -> Result<bool, Errno> {
        let first: u8 = view.read_obj(Gva::new(path)).map_err(|_| Errno::EFAULT)?;
        Ok(first == 0)
    }
}
