//! Serving a Linux program's system calls: Linux numbers, arguments,
//! results and errno values. Every guest pointer goes through the
//! [`GuestView`] (overflow first, then bounds, then the page walk); a bad
//! one is `EFAULT`, never a host access outside guest memory. Files go
//! through the filesystem hypercalls' descriptor table and grants.

use super::attributes;
use super::futex;
use super::numbers::*;
use super::pipes;
use super::poll;
use super::process;
use super::sigframe::Cause;
use super::terminal::{TCGETS, TIOCGWINSZ};
use super::time;
use super::{Process, Syscall};
use crate::addr::Gva;
use crate::arch::x86_64::syscall::is_canonical;
use crate::errno::Errno;
use crate::fs::{Filesystem, StdioSinks, AT_FDCWD, O_CLOEXEC};
use crate::view::GuestView;
use kvmini_abi::Port;

/// Errno values the filesystem hypercalls never need.
const fn errno(code: i32) -> Errno {
    match Errno::new(code) {
        Some(e) => e,
        None => Errno::EINVAL,
    }
}
const ENOTTY: Errno = errno(libc::ENOTTY);
const ESRCH: Errno = errno(libc::ESRCH);
const ERANGE: Errno = errno(libc::ERANGE);

const AT_EMPTY_PATH: u64 = 0x1000;
const AT_REMOVEDIR: u64 = 0x200;
const AT_EACCESS: u64 = 0x200;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const F_DUPFD: u64 = 0;
const F_GETFD: u64 = 1;
const F_SETFD: u64 = 2;
const F_GETFL: u64 = 3;
const F_SETFL: u64 = 4;
const F_DUPFD_CLOEXEC: u64 = 1030;
const RENAME_NOREPLACE: u64 = 1;
const RENAME_EXCHANGE: u64 = 2;
const RENAME_WHITEOUT: u64 = 4;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const MAP_ANONYMOUS: u64 = 0x20;
const IOV_MAX: u64 = 1024;
const RLIMIT_STACK: u64 = 3;
const RLIMIT_NOFILE: u64 = 7;
const RLIM_NLIMITS: u64 = 16;
const RLIM_INFINITY: u64 = u64::MAX;
const GRND_ALL: u64 = 0x7;
/// The most bytes one `getrandom` returns (Linux may return fewer than
/// asked above 256).
const GETRANDOM_MAX: usize = 1 << 16;
/// What one field of `struct utsname` holds.
const UTS_FIELD: usize = 65;

/// What serving a call does besides its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Return this to the program (`-errno` for an error).
    Return(i64),
    /// Set the FS base, then return 0.
    SetFsBase(u64),
    /// End the run with this status.
    Exit(u32),
    /// A write found its reader gone and the program leaves SIGPIPE at its
    /// default action: the run ends as Linux ends such a program.
    BrokenPipe,
    /// A signal the program sent itself ends it, as Linux ends a program
    /// with no handler for it: status 128 + the signal's number.
    Killed(u8),
}

/// What calls on files need: the descriptor table and the standard output
/// streams.
pub struct Io<'a, 'b> {
    /// The descriptor table and grants.
    pub fs: &'a mut Filesystem,
    /// Descriptors 1 and 2.
    pub stdio: &'a mut StdioSinks<'b>,
}

/// A descriptor argument: Linux takes the low 32 bits as an int.
fn fd(arg: u64) -> i32 {
    i32::from_ne_bytes(arg.to_ne_bytes()[..4].try_into().unwrap_or([0xFF; 4]))
}

/// A length argument as `ssize_t`.
fn signed(arg: u64) -> i64 {
    i64::from_ne_bytes(arg.to_ne_bytes())
}

impl Process {
    /// Serves `call` for a program with FS base `fs_base`.
    pub fn serve(
        &mut self,
        call: &Syscall,
        view: &GuestView<'_>,
        io: &mut Io<'_, '_>,
        fs_base: u64,
    ) -> Effect {
        let [a0, a1, a2, a3, a4, _a5] = call.args;
        let result = match call.nr {
            READ => pipes::read_write(view, io, fd(a0), (a1, a2), false),
            WRITE => pipes::read_write(view, io, fd(a0), (a1, a2), true),
            PREAD64 => io.fs.linux_io(view, fd(a0), a1, a2, Some(signed(a3)), None),
            PWRITE64 => io
                .fs
                .linux_io(view, fd(a0), a1, a2, Some(signed(a3)), Some(io.stdio)),
            READV => vectored(view, io, fd(a0), a1, a2, false),
            WRITEV => vectored(view, io, fd(a0), a1, a2, true),
            OPEN => io
                .fs
                .linux_open_with_maps(view, (AT_FDCWD, a0), a1, self.masked(a2), &|| {
                    self.maps_text()
                }),
            OPENAT => io
                .fs
                .linux_open_with_maps(view, (fd(a0), a1), a2, self.masked(a3), &|| {
                    self.maps_text()
                }),
            CLOSE => io.fs.linux_close(fd(a0)),
            LSEEK => io.fs.linux_lseek(fd(a0), signed(a1), a2),
            FSTAT => io.fs.linux_stat(view, None, fd(a0), a1),
            STAT | LSTAT => io.fs.linux_stat(view, Some(a0), AT_FDCWD, a1),
            NEWFSTATAT => newfstatat(view, io.fs, fd(a0), a1, a2, a3),
            STATX => io.fs.linux_statx(view, (fd(a0), a1), a2, a4),
            GETCWD => getcwd(view, io.fs.linux_cwd(), a0, a1),
            CHDIR => io.fs.linux_chdir(view, a0),
            FCHDIR => io.fs.linux_fchdir(fd(a0)),
            MKDIR => self.mkdir(view, io.fs, AT_FDCWD, a0, a1),
            MKDIRAT => self.mkdir(view, io.fs, fd(a0), a1, a2),
            UNLINK => io.fs.linux_path_call(view, Port::Unlink, AT_FDCWD, a0, 0),
            RMDIR => io.fs.linux_path_call(view, Port::Rmdir, AT_FDCWD, a0, 0),
            UNLINKAT => unlinkat(view, io.fs, fd(a0), a1, a2),
            RENAME => io.fs.linux_rename(view, (AT_FDCWD, a0), (AT_FDCWD, a1), 0),
            RENAMEAT => io.fs.linux_rename(view, (fd(a0), a1), (fd(a2), a3), 0),
            RENAMEAT2 => renameat2(view, io.fs, (fd(a0), a1), (fd(a2), a3), a4),
            // A program never plants links or devices in a host directory.
            LINK | LINKAT | SYMLINK | SYMLINKAT | MKNOD | MKNODAT => Err(Errno::EPERM),
            GETDENTS64 => io.fs.linux_getdents(view, fd(a0), a1, a2),
            FSYNC | FDATASYNC => io.fs.linux_fsync(fd(a0)),
            FTRUNCATE => io.fs.linux_ftruncate(fd(a0), signed(a1)),
            UMASK => {
                let old = self.umask;
                self.umask = u32::try_from(a0 & 0o777).unwrap_or(0);
                Ok(i64::from(old))
            }
            DUP => io.fs.linux_dup(fd(a0), None, 0, false),
            DUP2 => io.fs.linux_dup(fd(a0), Some(fd(a1)), 0, false),
            DUP3 if fd(a0) == fd(a1) => Err(Errno::EINVAL),
            DUP3 if a2 & !u64::from(O_CLOEXEC) != 0 => Err(Errno::EINVAL),
            DUP3 => io.fs.linux_dup(fd(a0), Some(fd(a1)), 0, a2 != 0),
            FCNTL if a1 == pipes::F_GETPIPE_SZ => pipes::pipe_size(io, fd(a0)),
            FCNTL => fcntl(io.fs, fd(a0), a1, a2),
            READLINK => io
                .fs
                .linux_readlink(view, (AT_FDCWD, a0), (a1, a2), &self.exe),
            READLINKAT => io
                .fs
                .linux_readlink(view, (fd(a0), a1), (a2, a3), &self.exe),
            ACCESS => self.access(view, io.fs, (AT_FDCWD, a0), a1, 0),
            FACCESSAT => self.access(view, io.fs, (fd(a0), a1), a2, 0),
            FACCESSAT2 => self.access(view, io.fs, (fd(a0), a1), a2, a3),
            CLOCK_GETTIME => time::clock_gettime(view, a0, a1),
            CLOCK_GETRES => time::clock_getres(view, a0, a1),
            GETTIMEOFDAY => time::gettimeofday(view, a0, a1),
            TIME => time::time(view, a0),
            NANOSLEEP => time::sleep(view, (1, 0), (a0, a1), io.stdio.stop),
            CLOCK_NANOSLEEP => time::sleep(view, (a0, a1), (a2, a3), io.stdio.stop),
            IOCTL => pipes::ioctl(view, io, fd(a0), a1, a2)
                .unwrap_or_else(|| self.ioctl(view, io.fs, fd(a0), a1, a2)),
            FUTEX => futex::futex(view, io.stdio.stop, call.args),
            POLL => poll::poll(
                view,
                io.fs,
                io.stdio.stop,
                (a0, a1),
                poll::millis(a2),
                self.max_fds,
            ),
            PPOLL => poll::ppoll(view, io.fs, io.stdio.stop, call.args, self.max_fds),
            SELECT => poll::select_timed(view, io.fs, io.stdio.stop, call.args, 1000),
            PSELECT6 => poll::select_timed(view, io.fs, io.stdio.stop, call.args, 1),
            PIPE => pipes::pipe2(view, io, a0, 0),
            PIPE2 => pipes::pipe2(view, io, a0, a1),
            BRK => Ok(self.set_brk(view, a0)),
            MMAP if a3 & MAP_ANONYMOUS == 0 => {
                self.mmap_file(view, io.fs, (a0, a1, a2, a3), (fd(a4), call.args[5]))
            }
            MMAP => self.mmap(view, a0, a1, a2, a3),
            MUNMAP => self.munmap(view, a0, a1),
            MPROTECT => self.mprotect(a0, a1, a2),
            MREMAP => self.mremap(view, (a0, a1, a2), a3, a4),
            ARCH_PRCTL => match a0 {
                ARCH_SET_FS if is_canonical(a1) => return Effect::SetFsBase(a1),
                ARCH_SET_FS => Err(Errno::EPERM),
                ARCH_GET_FS => view
                    .write_obj(Gva::new(a1), fs_base)
                    .map(|()| 0)
                    .map_err(|_| Errno::EFAULT),
                _ => Err(Errno::EINVAL),
            },
            SET_TID_ADDRESS => {
                self.tid_address = a0;
                Ok(1)
            }
            SET_ROBUST_LIST if a1 == 24 => Ok(0),
            SET_ROBUST_LIST => Err(Errno::EINVAL),
            RT_SIGACTION => self.sigaction(view, a0, a1, a2, a3),
            RT_SIGPROCMASK => return self.sigprocmask(view, a0, a1, a2, a3),
            RT_SIGPENDING => return self.sigpending(view, a0, a1),
            RT_SIGRETURN => return self.sigreturn(),
            SIGALTSTACK => self.sigaltstack(view, a0, a1),
            KILL => return self.send(Process::kill_target(a0), a1, Cause::Kill),
            TKILL => return self.send(Process::thread_target(1, a0), a1, Cause::Tkill),
            TGKILL => return self.send(Process::thread_target(a0, a1), a2, Cause::Tkill),
            GETUID | GETEUID => Ok(i64::from(self.uid)),
            GETGID | GETEGID => Ok(i64::from(self.gid)),
            GETPID | GETTID => Ok(1),
            GETPPID => Ok(0),
            GETPGRP => Ok(1),
            GETPGID | GETSID => process::group_of(a0),
            SETSID => process::setsid(),
            PRCTL => self.prctl(view, a0, a1),
            SCHED_GETAFFINITY => process::sched_getaffinity(view, a0, a1, a2),
            SCHED_YIELD => Ok(0),
            SYSINFO => self.sysinfo(view, a0),
            UNAME => uname(view, a0),
            PRLIMIT64 => self.prlimit(view, a0, a1, a2, a3),
            GETRANDOM => getrandom(view, a0, a1, a2),
            EXIT | EXIT_GROUP => return Effect::Exit(u32::from(a0.to_le_bytes()[0])),
            // Restartable sequences: glibc and musl run without them.
            RSEQ => Err(Errno::ENOSYS),
            nr => attributes::serve(nr, call.args, view, io.fs).unwrap_or(Err(Errno::ENOSYS)),
        };
        if result == Err(Errno::EPIPE)
            && matches!(call.nr, WRITE | PWRITE64 | WRITEV)
            && self.sigpipe().is_some()
        {
            return Effect::BrokenPipe;
        }
        Effect::Return(result.unwrap_or_else(Errno::negated))
    }

    /// `access`, `faccessat`, `faccessat2`: `AT_EACCESS` changes nothing
    /// (the real and effective ids are one), `AT_SYMLINK_NOFOLLOW` checks
    /// a link itself; other flags are `EINVAL`.
    fn access(
        &self,
        view: &GuestView<'_>,
        fs: &mut Filesystem,
        at: (i32, u64),
        mode: u64,
        flags: u64,
    ) -> Result<i64, Errno> {
        if flags & !(AT_EACCESS | AT_SYMLINK_NOFOLLOW) != 0 {
            return Err(Errno::EINVAL);
        }
        let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
        fs.linux_access(view, at, mode, follow, (self.uid, self.gid))
    }

    /// The mode of a file `open` creates, under the program's umask.
    fn masked(&self, mode: u64) -> u64 {
        mode & !u64::from(self.umask)
    }

    /// `mkdir` and `mkdirat`, with the mode under the program's umask.
    fn mkdir(
        &self,
        view: &GuestView<'_>,
        fs: &mut Filesystem,
        dirfd: i32,
        path: u64,
        mode: u64,
    ) -> Result<i64, Errno> {
        let mode = u32::try_from(mode & 0o7777).unwrap_or(0) & !self.umask;
        fs.linux_path_call(view, Port::Mkdir, dirfd, path, mode)
    }

    /// `ioctl`: `TCGETS` and `TIOCGWINSZ` on the standard streams where
    /// they are the host's terminal; `ENOTTY` for everything else.
    fn ioctl(
        &self,
        view: &GuestView<'_>,
        fs: &Filesystem,
        fd: i32,
        request: u64,
        arg: u64,
    ) -> Result<i64, Errno> {
        let stream = fs.linux_std_stream(fd)?;
        let terminal = stream
            .and_then(|s| self.terminals.get(s).copied().flatten())
            .ok_or(ENOTTY)?;
        let answer: &[u8] = match request & 0xFFFF_FFFF {
            TCGETS => &terminal.termios,
            TIOCGWINSZ => terminal.winsize.as_ref().map(|w| &w[..]).ok_or(ENOTTY)?,
            _ => return Err(ENOTTY),
        };
        view.check_writable(Gva::new(arg), answer.len() as u64)
            .map_err(|_| Errno::EFAULT)?;
        view.write_bytes(Gva::new(arg), answer)
            .map_err(|_| Errno::EFAULT)?;
        Ok(0)
    }

    fn prlimit(
        &self,
        view: &GuestView<'_>,
        pid: u64,
        resource: u64,
        new: u64,
        old: u64,
    ) -> Result<i64, Errno> {
        if pid != 0 && pid != 1 {
            return Err(ESRCH);
        }
        if resource >= RLIM_NLIMITS {
            return Err(Errno::EINVAL);
        }
        if new != 0 {
            // Read first, as Linux does: a bad pointer is EFAULT.
            view.read_obj::<[u64; 2]>(Gva::new(new))
                .map_err(|_| Errno::EFAULT)?;
            return Err(Errno::EPERM);
        }
        if old != 0 {
            let limit = match resource {
                RLIMIT_STACK => [self.layout.stack_size(), self.layout.stack_size()],
                RLIMIT_NOFILE => [self.max_fds, self.max_fds],
                _ => [RLIM_INFINITY, RLIM_INFINITY],
            };
            view.write_obj(Gva::new(old), limit)
                .map_err(|_| Errno::EFAULT)?;
        }
        Ok(0)
    }
}

/// `readv`/`writev`: the whole iovec array is read (EFAULT) and its total
/// checked (EINVAL) before any byte moves; then each buffer in turn, up to
/// the first short transfer.
fn vectored(
    view: &GuestView<'_>,
    io: &mut Io<'_, '_>,
    fd: i32,
    iov: u64,
    count: u64,
    write: bool,
) -> Result<i64, Errno> {
    if count > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    io.fs.linux_check_fd(fd)?;
    let mut buffers = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut total = 0u64;
    for i in 0..count {
        let at = iov.checked_add(i * 16).ok_or(Errno::EFAULT)?;
        let [base, len]: [u64; 2] = view.read_obj(Gva::new(at)).map_err(|_| Errno::EFAULT)?;
        total = total
            .checked_add(len)
            .filter(|&t| t <= i64::MAX as u64)
            .ok_or(Errno::EINVAL)?;
        buffers.push((base, len));
    }
    if io.fs.linux_is_pipe(fd) {
        return pipes::transfer(view, io, fd, &buffers, write);
    }
    let mut done = 0i64;
    for (base, len) in buffers {
        if len == 0 {
            continue;
        }
        let stdio = if write { Some(&mut *io.stdio) } else { None };
        match io.fs.linux_io(view, fd, base, len, None, stdio) {
            Ok(n) => {
                done += n;
                if u64::try_from(n).unwrap_or(0) < len {
                    break;
                }
            }
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done)
}

/// `fcntl`: duplicating, and the descriptor and status flags (recorded
/// for the program, never applied to kvmini's own descriptors); other
/// commands are `EINVAL`.
fn fcntl(fs: &mut Filesystem, fd: i32, cmd: u64, arg: u64) -> Result<i64, Errno> {
    let arg32 = u32::try_from(arg & 0xFFFF_FFFF).unwrap_or(0);
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            let min = i32::from_ne_bytes(arg32.to_ne_bytes());
            fs.linux_dup(fd, None, min, cmd == F_DUPFD_CLOEXEC)
        }
        F_GETFD => fs
            .linux_fd_flags(fd, None)
            .map(|f| i64::from(f & i64::from(O_CLOEXEC) != 0)),
        F_GETFL => fs
            .linux_fd_flags(fd, None)
            .map(|f| f & !i64::from(O_CLOEXEC)),
        F_SETFD => fs.linux_fd_flags(fd, Some((true, arg32))),
        F_SETFL => fs.linux_fd_flags(fd, Some((false, arg32))),
        _ => Err(Errno::EINVAL),
    }
}

/// `unlinkat`: `AT_REMOVEDIR` makes it `rmdir`; other flags are `EINVAL`.
fn unlinkat(
    view: &GuestView<'_>,
    fs: &mut Filesystem,
    dirfd: i32,
    path: u64,
    flags: u64,
) -> Result<i64, Errno> {
    match flags {
        0 => fs.linux_path_call(view, Port::Unlink, dirfd, path, 0),
        AT_REMOVEDIR => fs.linux_path_call(view, Port::Rmdir, dirfd, path, 0),
        _ => Err(Errno::EINVAL),
    }
}

/// `renameat2`: without flags, `renameat`; `RENAME_NOREPLACE` and
/// `RENAME_EXCHANGE` as Linux does them; `RENAME_WHITEOUT` (a device node)
/// is `EPERM`, as for a program without `CAP_MKNOD`; anything else
/// (both of the first two together included) `EINVAL`.
fn renameat2(
    view: &GuestView<'_>,
    fs: &mut Filesystem,
    old: (i32, u64),
    new: (i32, u64),
    flags: u64,
) -> Result<i64, Errno> {
    match flags {
        f if f & RENAME_WHITEOUT != 0 => Err(Errno::EPERM),
        // Replacing nothing, or swapping two names: each name is checked
        // as for a plain rename, and the host does the rest.
        0 | RENAME_NOREPLACE | RENAME_EXCHANGE => fs.linux_rename(view, old, new, flags),
        _ => Err(Errno::EINVAL),
    }
}

/// `newfstatat`: `AT_EMPTY_PATH` with an empty path is `fstat`; otherwise
/// the path from `dirfd`, as `openat` resolves it.
fn newfstatat(
    view: &GuestView<'_>,
    fs: &mut Filesystem,
    dirfd: i32,
    path: u64,
    stat: u64,
    flags: u64,
) -> Result<i64, Errno> {
    if flags & AT_EMPTY_PATH != 0 && fs.linux_path_is_empty(view, path)? {
        return fs.linux_stat(view, None, dirfd, stat);
    }
    fs.linux_stat(view, Some(path), dirfd, stat)
}

/// `getcwd`: the working directory and its NUL, `ERANGE` when `size`
/// cannot hold them; the result is their length, as Linux's call gives.
fn getcwd(view: &GuestView<'_>, cwd: &[u8], buf: u64, size: u64) -> Result<i64, Errno> {
    let len = cwd.len() as u64 + 1;
    if size < len {
        return Err(ERANGE);
    }
    view.check_writable(Gva::new(buf), len)
        .map_err(|_| Errno::EFAULT)?;
    let mut answer = cwd.to_vec();
    answer.push(0);
    view.write_bytes(Gva::new(buf), &answer)
        .map_err(|_| Errno::EFAULT)?;
    i64::try_from(len).map_err(|_| ERANGE)
}

/// `uname`: Linux on x86_64, and nothing about the host.
fn uname(view: &GuestView<'_>, buf: u64) -> Result<i64, Errno> {
    let mut uts = [0u8; UTS_FIELD * 6];
    let fields: [&[u8]; 6] = [
        b"Linux",
        b"kvmini",
        b"6.1.0-kvmini",
        b"#1 kvmini",
        b"x86_64",
        b"(none)",
    ];
    for (i, field) in fields.iter().enumerate() {
        if let Some(slot) = uts.get_mut(i * UTS_FIELD..i * UTS_FIELD + field.len()) {
            slot.copy_from_slice(field);
        }
    }
    view.check_writable(Gva::new(buf), uts.len() as u64)
        .map_err(|_| Errno::EFAULT)?;
    view.write_bytes(Gva::new(buf), &uts)
        .map_err(|_| Errno::EFAULT)?;
    Ok(0)
}

fn getrandom(view: &GuestView<'_>, buf: u64, len: u64, flags: u64) -> Result<i64, Errno> {
    if flags & !GRND_ALL != 0 {
        return Err(Errno::EINVAL);
    }
    view.check_writable(Gva::new(buf), len)
        .map_err(|_| Errno::EFAULT)?;
    let n = usize::try_from(len)
        .unwrap_or(usize::MAX)
        .min(GETRANDOM_MAX);
    let mut bytes = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(k) => filled += k,
            Err(rustix::io::Errno::INTR) if filled > 0 => break,
            Err(e) => return Err(Errno::from(e)),
        }
    }
    view.write_bytes(Gva::new(buf), &bytes[..filled])
        .map_err(|_| Errno::EFAULT)?;
    i64::try_from(filled).map_err(|_| Errno::EINVAL)
}
