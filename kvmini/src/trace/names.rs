//! The names a trace gives to numbers: Linux's flag bits and constants
//! for the arguments of system calls, and errno values with their
//! messages. Values are x86-64 Linux's.

/// A set of flag bits and their names, tried in order: an entry whose
/// bits are all set is named and taken out of the value.
pub type FlagTable = &'static [(u64, &'static str)];

/// One of several exclusive values by name.
pub type ValueTable = &'static [(u64, &'static str)];

/// `open` flags other than the access mode (`O_RDONLY`, `O_WRONLY`,
/// `O_RDWR`, named from the low two bits).
pub const OPEN_FLAGS: FlagTable = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
    (0o20000000, "O_TMPFILE"),
];

/// The access modes, the low two bits of `open` flags.
pub const ACCESS_MODES: [&str; 4] = ["O_RDONLY", "O_WRONLY", "O_RDWR", "0x3"];

/// `AT_*` flags of the `*at` calls.
pub const AT_FLAGS: FlagTable = &[
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x200, "AT_REMOVEDIR"),
    (0x400, "AT_SYMLINK_FOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
    (0x2000, "AT_STATX_FORCE_SYNC"),
    (0x4000, "AT_STATX_DONT_SYNC"),
];

/// `mmap` and `mprotect` protections (`PROT_NONE` when none is set).
pub const PROT: FlagTable = &[
    (0x1, "PROT_READ"),
    (0x2, "PROT_WRITE"),
    (0x4, "PROT_EXEC"),
    (0x0100_0000, "PROT_GROWSDOWN"),
    (0x0200_0000, "PROT_GROWSUP"),
];

/// `mmap` flags, after the mapping type in the low four bits.
pub const MAP_FLAGS: FlagTable = &[
    (0x10, "MAP_FIXED"),
    (0x20, "MAP_ANONYMOUS"),
    (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"),
    (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"),
    (0x8000, "MAP_POPULATE"),
    (0x10000, "MAP_NONBLOCK"),
    (0x20000, "MAP_STACK"),
    (0x40000, "MAP_HUGETLB"),
    (0x80000, "MAP_SYNC"),
    (0x100000, "MAP_FIXED_NOREPLACE"),
];

/// The mapping types, the low four bits of `mmap` flags.
pub const MAP_TYPES: ValueTable = &[
    (0x1, "MAP_SHARED"),
    (0x2, "MAP_PRIVATE"),
    (0x3, "MAP_SHARED_VALIDATE"),
];

/// `mremap` flags.
pub const MREMAP_FLAGS: FlagTable = &[
    (0x1, "MREMAP_MAYMOVE"),
    (0x2, "MREMAP_FIXED"),
    (0x4, "MREMAP_DONTUNMAP"),
];

/// Clock ids.
pub const CLOCKS: ValueTable = &[
    (0, "CLOCK_REALTIME"),
    (1, "CLOCK_MONOTONIC"),
    (2, "CLOCK_PROCESS_CPUTIME_ID"),
    (3, "CLOCK_THREAD_CPUTIME_ID"),
    (4, "CLOCK_MONOTONIC_RAW"),
    (5, "CLOCK_REALTIME_COARSE"),
    (6, "CLOCK_MONOTONIC_COARSE"),
    (7, "CLOCK_BOOTTIME"),
    (8, "CLOCK_REALTIME_ALARM"),
    (9, "CLOCK_BOOTTIME_ALARM"),
    (11, "CLOCK_TAI"),
];

/// `clock_nanosleep` flags.
pub const TIMER_FLAGS: FlagTable = &[(0x1, "TIMER_ABSTIME")];

/// `fcntl` commands.
pub const FCNTL_COMMANDS: ValueTable = &[
    (0, "F_DUPFD"),
    (1, "F_GETFD"),
    (2, "F_SETFD"),
    (3, "F_GETFL"),
    (4, "F_SETFL"),
    (5, "F_GETLK"),
    (6, "F_SETLK"),
    (7, "F_SETLKW"),
    (8, "F_SETOWN"),
    (9, "F_GETOWN"),
    (1024, "F_SETLEASE"),
    (1025, "F_GETLEASE"),
    (1030, "F_DUPFD_CLOEXEC"),
    (1031, "F_SETPIPE_SZ"),
    (1032, "F_GETPIPE_SZ"),
    (1033, "F_ADD_SEALS"),
    (1034, "F_GET_SEALS"),
];

/// `ioctl` requests.
pub const IOCTL_REQUESTS: ValueTable = &[
    (0x5401, "TCGETS"),
    (0x5402, "TCSETS"),
    (0x5403, "TCSETSW"),
    (0x5404, "TCSETSF"),
    (0x540F, "TIOCGPGRP"),
    (0x5410, "TIOCSPGRP"),
    (0x5413, "TIOCGWINSZ"),
    (0x5414, "TIOCSWINSZ"),
    (0x541B, "FIONREAD"),
    (0x5421, "FIONBIO"),
    (0x5451, "FIOCLEX"),
    (0x5450, "FIONCLEX"),
];

/// `lseek` origins.
pub const WHENCE: ValueTable = &[
    (0, "SEEK_SET"),
    (1, "SEEK_CUR"),
    (2, "SEEK_END"),
    (3, "SEEK_DATA"),
    (4, "SEEK_HOLE"),
];

/// `rt_sigprocmask` operations.
pub const SIGMASK_HOW: ValueTable = &[(0, "SIG_BLOCK"), (1, "SIG_UNBLOCK"), (2, "SIG_SETMASK")];

/// `arch_prctl` codes.
pub const ARCH_PRCTL_CODES: ValueTable = &[
    (0x1001, "ARCH_SET_GS"),
    (0x1002, "ARCH_SET_FS"),
    (0x1003, "ARCH_GET_FS"),
    (0x1004, "ARCH_GET_GS"),
    (0x1011, "ARCH_GET_CPUID"),
    (0x1012, "ARCH_SET_CPUID"),
];

/// `prctl` options kvmini knows.
pub const PRCTL_OPTIONS: ValueTable = &[
    (15, "PR_SET_NAME"),
    (16, "PR_GET_NAME"),
    (38, "PR_SET_NO_NEW_PRIVS"),
    (39, "PR_GET_NO_NEW_PRIVS"),
];

/// `futex` operations (the private flag, 128, is named apart).
pub const FUTEX_OPS: ValueTable = &[
    (0, "FUTEX_WAIT"),
    (1, "FUTEX_WAKE"),
    (2, "FUTEX_FD"),
    (3, "FUTEX_REQUEUE"),
    (4, "FUTEX_CMP_REQUEUE"),
    (5, "FUTEX_WAKE_OP"),
    (6, "FUTEX_LOCK_PI"),
    (7, "FUTEX_UNLOCK_PI"),
    (8, "FUTEX_TRYLOCK_PI"),
    (9, "FUTEX_WAIT_BITSET"),
    (10, "FUTEX_WAKE_BITSET"),
];

/// `prlimit64` resources.
pub const RESOURCES: ValueTable = &[
    (0, "RLIMIT_CPU"),
    (1, "RLIMIT_FSIZE"),
    (2, "RLIMIT_DATA"),
    (3, "RLIMIT_STACK"),
    (4, "RLIMIT_CORE"),
    (5, "RLIMIT_RSS"),
    (6, "RLIMIT_NPROC"),
    (7, "RLIMIT_NOFILE"),
    (8, "RLIMIT_MEMLOCK"),
    (9, "RLIMIT_AS"),
];

/// `madvise` advice.
pub const MADVISE: ValueTable = &[
    (0, "MADV_NORMAL"),
    (1, "MADV_RANDOM"),
    (2, "MADV_SEQUENTIAL"),
    (3, "MADV_WILLNEED"),
    (4, "MADV_DONTNEED"),
    (8, "MADV_FREE"),
];

/// `access` modes (`F_OK` when none is set).
pub const ACCESS_BITS: FlagTable = &[(4, "R_OK"), (2, "W_OK"), (1, "X_OK")];

/// `renameat2` flags.
pub const RENAME_FLAGS: FlagTable = &[
    (0x1, "RENAME_NOREPLACE"),
    (0x2, "RENAME_EXCHANGE"),
    (0x4, "RENAME_WHITEOUT"),
];

/// `getrandom` flags.
pub const GETRANDOM_FLAGS: FlagTable = &[(0x1, "GRND_NONBLOCK"), (0x2, "GRND_RANDOM")];

/// The errno values by number: name and message (as the C library's
/// `strerror` words them).
const ERRNOS: &[(i32, &str, &str)] = &[
    (1, "EPERM", "Operation not permitted"),
    (2, "ENOENT", "No such file or directory"),
    (3, "ESRCH", "No such process"),
    (4, "EINTR", "Interrupted system call"),
    (5, "EIO", "Input/output error"),
    (6, "ENXIO", "No such device or address"),
    (7, "E2BIG", "Argument list too long"),
    (8, "ENOEXEC", "Exec format error"),
    (9, "EBADF", "Bad file descriptor"),
    (10, "ECHILD", "No child processes"),
    (11, "EAGAIN", "Resource temporarily unavailable"),
    (12, "ENOMEM", "Cannot allocate memory"),
    (13, "EACCES", "Permission denied"),
    (14, "EFAULT", "Bad address"),
    (15, "ENOTBLK", "Block device required"),
    (16, "EBUSY", "Device or resource busy"),
    (17, "EEXIST", "File exists"),
    (18, "EXDEV", "Invalid cross-device link"),
    (19, "ENODEV", "No such device"),
    (20, "ENOTDIR", "Not a directory"),
    (21, "EISDIR", "Is a directory"),
    (22, "EINVAL", "Invalid argument"),
    (23, "ENFILE", "Too many open files in system"),
    (24, "EMFILE", "Too many open files"),
    (25, "ENOTTY", "Inappropriate ioctl for device"),
    (26, "ETXTBSY", "Text file busy"),
    (27, "EFBIG", "File too large"),
    (28, "ENOSPC", "No space left on device"),
    (29, "ESPIPE", "Illegal seek"),
    (30, "EROFS", "Read-only file system"),
    (31, "EMLINK", "Too many links"),
    (32, "EPIPE", "Broken pipe"),
    (33, "EDOM", "Numerical argument out of domain"),
    (34, "ERANGE", "Numerical result out of range"),
    (35, "EDEADLK", "Resource deadlock avoided"),
    (36, "ENAMETOOLONG", "File name too long"),
    (37, "ENOLCK", "No locks available"),
    (38, "ENOSYS", "Function not implemented"),
    (39, "ENOTEMPTY", "Directory not empty"),
    (40, "ELOOP", "Too many levels of symbolic links"),
    (61, "ENODATA", "No data available"),
    (75, "EOVERFLOW", "Value too large for defined data type"),
    (95, "EOPNOTSUPP", "Operation not supported"),
    (110, "ETIMEDOUT", "Connection timed out"),
];

/// The name and message of errno `code`, when it has them here.
pub fn errno(code: i32) -> Option<(&'static str, &'static str)> {
    ERRNOS
        .iter()
        .find(|(n, _, _)| *n == code)
        .map(|&(_, name, message)| (name, message))
}

/// The name of `value` in `table`.
pub fn value_name(table: ValueTable, value: u64) -> Option<&'static str> {
    table.iter().find(|(v, _)| *v == value).map(|&(_, n)| n)
}

/// The names of the bits of `value` in `table`, in the table's order, and
/// the bits no name covers.
pub fn flag_names(table: FlagTable, value: u64) -> (Vec<&'static str>, u64) {
    let mut rest = value;
    let mut names = Vec::new();
    for &(bits, name) in table {
        if bits != 0 && rest & bits == bits {
            names.push(name);
            rest &= !bits;
        }
    }
    (names, rest)
}
