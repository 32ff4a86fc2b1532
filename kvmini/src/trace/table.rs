//! What each system call's arguments and result are, by the numbers of
//! [`crate::linux::numbers`]: the one table the trace decodes from. A
//! call kvmini names but this table does not describe shows its six
//! arguments in hexadecimal.

use crate::linux::numbers::*;

/// The kind of one argument: how the trace reads and shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A descriptor, in decimal.
    Fd,
    /// A directory descriptor: `AT_FDCWD` by name.
    DirFd,
    /// A NUL-terminated path, shown whole (up to `PATH_MAX`).
    Path,
    /// A NUL-terminated string, cut as buffers are.
    Str,
    /// A buffer the call reads, whose length is argument `n`.
    InBuf(usize),
    /// A buffer the call fills, as long as its result when that is not an
    /// error (the address otherwise).
    OutBuf,
    /// A size or count, unsigned decimal.
    Size,
    /// A signed number, decimal.
    Int,
    /// A number in hexadecimal.
    Hex,
    /// A guest address (`NULL` for 0).
    Ptr,
    /// Permission bits, octal.
    Mode,
    /// The mode of a file `open` may create: shown only when the flags at
    /// argument `n` have `O_CREAT` or `O_TMPFILE`, as strace shows it.
    CreateMode(usize),
    /// `open` flags.
    OpenFlags,
    /// `AT_*` flags.
    AtFlags,
    /// `PROT_*` bits.
    Prot,
    /// `MAP_*` type and flags.
    MapFlags,
    /// `MREMAP_*` flags.
    MremapFlags,
    /// A clock id.
    Clock,
    /// `TIMER_ABSTIME`.
    TimerFlags,
    /// An `fcntl` command.
    Fcntl,
    /// An `ioctl` request.
    Ioctl,
    /// A signal number.
    Signal,
    /// A pointer to a `struct timespec`, shown as its fields.
    Timespec,
    /// An array of `struct iovec` the call reads, as many as argument `n`
    /// says, each shown with its buffer.
    InIovec(usize),
    /// An array of `struct iovec` the call fills, as many as argument `n`
    /// says: the buffers shown hold what the call returned, in order.
    OutIovec(usize),
    /// An `lseek` origin.
    Whence,
    /// An `rt_sigprocmask` operation.
    SigHow,
    /// An `arch_prctl` code.
    ArchPrctl,
    /// A `prctl` option.
    Prctl,
    /// A `futex` operation.
    Futex,
    /// A `prlimit64` resource.
    Resource,
    /// `madvise` advice.
    Madvise,
    /// `access` mode bits.
    AccessMode,
    /// `renameat2` flags.
    RenameFlags,
    /// `getrandom` flags.
    RandomFlags,
}

/// How a call's result is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// Decimal (or an error).
    Int,
    /// Hexadecimal: an address (`brk`, `mmap`).
    Hex,
    /// Octal: a mode (`umask`).
    Octal,
}

/// Whether a call may wait before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waits {
    /// It answers at once.
    Never,
    /// It may wait (a sleep, a poll).
    Always,
    /// It may wait when its first argument is descriptor 0 (stdin, which
    /// may be a terminal or a pipe).
    OnStdin,
}

/// A system call's arguments and result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Its arguments, in order.
    pub args: &'static [Kind],
    /// How its result is shown.
    pub ret: Ret,
    /// Whether it may wait.
    pub waits: Waits,
}

const fn sig(args: &'static [Kind]) -> Signature {
    Signature {
        args,
        ret: Ret::Int,
        waits: Waits::Never,
    }
}

const fn with_ret(mut s: Signature, ret: Ret) -> Signature {
    s.ret = ret;
    s
}

const fn waiting(mut s: Signature, waits: Waits) -> Signature {
    s.waits = waits;
    s
}

/// The signature of system call `nr`, when the table has it.
pub fn signature(nr: u64) -> Option<Signature> {
    use Kind::*;
    Some(match nr {
        READ => waiting(sig(&[Fd, OutBuf, Size]), Waits::OnStdin),
        WRITE => sig(&[Fd, InBuf(2), Size]),
        OPEN => sig(&[Path, OpenFlags, CreateMode(1)]),
        CLOSE | FSYNC | FDATASYNC | FCHDIR | DUP => sig(&[Fd]),
        STAT | LSTAT => sig(&[Path, Ptr]),
        FSTAT => sig(&[Fd, Ptr]),
        POLL => waiting(sig(&[Ptr, Size, Int]), Waits::Always),
        LSEEK => sig(&[Fd, Int, Whence]),
        MMAP => with_ret(sig(&[Ptr, Size, Prot, MapFlags, Fd, Int]), Ret::Hex),
        MPROTECT => sig(&[Ptr, Size, Prot]),
        MUNMAP => sig(&[Ptr, Size]),
        BRK => with_ret(sig(&[Ptr]), Ret::Hex),
        PIPE => sig(&[Ptr]),
        MADVISE => sig(&[Ptr, Size, Madvise]),
        SENDFILE => sig(&[Fd, Fd, Ptr, Size]),
        SOCKET => sig(&[Int, Int, Int]),
        CLONE => sig(&[Hex, Ptr, Ptr, Ptr, Hex]),
        FORK | VFORK => sig(&[]),
        EXECVE => sig(&[Path, Ptr, Ptr]),
        WAIT4 => sig(&[Int, Ptr, Int, Ptr]),
        CLONE3 => sig(&[Ptr, Size]),
        PIPE2 => sig(&[Ptr, OpenFlags]),
        MREMAP => with_ret(sig(&[Ptr, Size, Size, MremapFlags, Ptr]), Ret::Hex),
        RT_SIGACTION => sig(&[Signal, Ptr, Ptr, Size]),
        RT_SIGPROCMASK => sig(&[SigHow, Ptr, Ptr, Size]),
        RT_SIGRETURN | SCHED_YIELD | GETPID | GETUID | GETGID | GETEUID | GETEGID | GETPPID
        | GETPGRP | SETSID | GETTID => sig(&[]),
        IOCTL => sig(&[Fd, Ioctl, Ptr]),
        PREAD64 => sig(&[Fd, OutBuf, Size, Int]),
        PWRITE64 => sig(&[Fd, InBuf(2), Size, Int]),
        READV => waiting(sig(&[Fd, OutIovec(2), Size]), Waits::OnStdin),
        WRITEV => sig(&[Fd, InIovec(2), Size]),
        ACCESS => sig(&[Path, AccessMode]),
        SELECT => waiting(sig(&[Int, Ptr, Ptr, Ptr, Ptr]), Waits::Always),
        DUP2 => sig(&[Fd, Fd]),
        NANOSLEEP => waiting(sig(&[Timespec, Ptr]), Waits::Always),
        KILL => sig(&[Int, Signal]),
        EXIT | EXIT_GROUP => sig(&[Int]),
        UNAME | SYSINFO | TIME | SET_TID_ADDRESS => sig(&[Ptr]),
        FCNTL => sig(&[Fd, Fcntl, Hex]),
        TRUNCATE => sig(&[Path, Int]),
        FTRUNCATE => sig(&[Fd, Int]),
        GETCWD => sig(&[Ptr, Size]),
        CHDIR | RMDIR | UNLINK => sig(&[Path]),
        RENAME | LINK | SYMLINK => sig(&[Path, Path]),
        MKDIR | CHMOD => sig(&[Path, Mode]),
        READLINK => sig(&[Path, OutBuf, Size]),
        FCHMOD => sig(&[Fd, Mode]),
        CHOWN | LCHOWN => sig(&[Path, Int, Int]),
        FCHOWN => sig(&[Fd, Int, Int]),
        UMASK => with_ret(sig(&[Mode]), Ret::Octal),
        GETTIMEOFDAY => sig(&[Ptr, Ptr]),
        MKNOD => sig(&[Path, Mode, Hex]),
        GETPGID | GETSID => sig(&[Int]),
        RT_SIGPENDING => sig(&[Ptr, Size]),
        PRCTL => sig(&[Prctl, Hex, Hex, Hex, Hex]),
        SIGALTSTACK => sig(&[Ptr, Ptr]),
        ARCH_PRCTL => sig(&[ArchPrctl, Hex]),
        TKILL => sig(&[Int, Signal]),
        SCHED_GETAFFINITY => sig(&[Int, Size, Ptr]),
        FUTEX => waiting(sig(&[Ptr, Futex, Int, Ptr, Ptr, Int]), Waits::Always),
        GETDENTS64 => sig(&[Fd, Ptr, Size]),
        CLOCK_GETTIME | CLOCK_GETRES => sig(&[Clock, Ptr]),
        CLOCK_NANOSLEEP => waiting(sig(&[Clock, TimerFlags, Timespec, Ptr]), Waits::Always),
        TGKILL => sig(&[Int, Int, Signal]),
        UTIMES => sig(&[Path, Ptr]),
        OPENAT => sig(&[DirFd, Path, OpenFlags, CreateMode(2)]),
        MKDIRAT => sig(&[DirFd, Path, Mode]),
        FCHOWNAT => sig(&[DirFd, Path, Int, Int, AtFlags]),
        FUTIMESAT => sig(&[DirFd, Path, Ptr]),
        MKNODAT => sig(&[DirFd, Path, Mode, Hex]),
        NEWFSTATAT => sig(&[DirFd, Path, Ptr, AtFlags]),
        UNLINKAT => sig(&[DirFd, Path, AtFlags]),
        RENAMEAT => sig(&[DirFd, Path, DirFd, Path]),
        READLINKAT => sig(&[DirFd, Path, OutBuf, Size]),
        FACCESSAT => sig(&[DirFd, Path, AccessMode]),
        FCHMODAT => sig(&[DirFd, Path, Mode]),
        PSELECT6 => waiting(sig(&[Int, Ptr, Ptr, Ptr, Timespec, Ptr]), Waits::Always),
        PPOLL => waiting(sig(&[Ptr, Size, Timespec, Ptr, Size]), Waits::Always),
        UTIMENSAT => sig(&[DirFd, Path, Ptr, AtFlags]),
        LINKAT => sig(&[DirFd, Path, DirFd, Path, AtFlags]),
        SYMLINKAT => sig(&[Path, DirFd, Path]),
        SET_ROBUST_LIST => sig(&[Ptr, Size]),
        PRLIMIT64 => sig(&[Int, Resource, Ptr, Ptr]),
        DUP3 => sig(&[Fd, Fd, OpenFlags]),
        RENAMEAT2 => sig(&[DirFd, Path, DirFd, Path, RenameFlags]),
        GETRANDOM => sig(&[OutBuf, Size, RandomFlags]),
        FACCESSAT2 => sig(&[DirFd, Path, AccessMode, AtFlags]),
        FCHMODAT2 => sig(&[DirFd, Path, Mode, AtFlags]),
        RSEQ => sig(&[Ptr, Size, Hex, Hex]),
        STATX => sig(&[DirFd, Path, AtFlags, Hex, Ptr]),
        _ => return None,
    })
}
