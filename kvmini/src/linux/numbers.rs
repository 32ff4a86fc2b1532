//! The x86-64 Linux system-call numbers kvmini knows by name.

macro_rules! numbers {
    ($($name:ident = $nr:literal, $text:literal;)*) => {
        $(#[doc = concat!("`", $text, "`")] pub const $name: u64 = $nr;)*

        /// The name of system call `nr`, for traces and messages.
        pub fn name(nr: u64) -> Option<&'static str> {
            match nr {
                $($nr => Some($text),)*
                _ => None,
            }
        }
    };
}

numbers! {
    READ = 0, "read";
    WRITE = 1, "write";
    OPEN = 2, "open";
    CLOSE = 3, "close";
    STAT = 4, "stat";
    FSTAT = 5, "fstat";
    POLL = 7, "poll";
    LSTAT = 6, "lstat";
    LSEEK = 8, "lseek";
    MMAP = 9, "mmap";
    MPROTECT = 10, "mprotect";
    MUNMAP = 11, "munmap";
    BRK = 12, "brk";
    MREMAP = 25, "mremap";
    RT_SIGACTION = 13, "rt_sigaction";
    RT_SIGPROCMASK = 14, "rt_sigprocmask";
    RT_SIGRETURN = 15, "rt_sigreturn";
    IOCTL = 16, "ioctl";
    PREAD64 = 17, "pread64";
    PWRITE64 = 18, "pwrite64";
    READV = 19, "readv";
    WRITEV = 20, "writev";
    ACCESS = 21, "access";
    PIPE = 22, "pipe";
    SELECT = 23, "select";
    DUP = 32, "dup";
    DUP2 = 33, "dup2";
    SCHED_YIELD = 24, "sched_yield";
    NANOSLEEP = 35, "nanosleep";
    GETPID = 39, "getpid";
    KILL = 62, "kill";
    EXIT = 60, "exit";
    UNAME = 63, "uname";
    FCNTL = 72, "fcntl";
    FSYNC = 74, "fsync";
    FDATASYNC = 75, "fdatasync";
    FTRUNCATE = 77, "ftruncate";
    TRUNCATE = 76, "truncate";
    GETCWD = 79, "getcwd";
    CHDIR = 80, "chdir";
    FCHDIR = 81, "fchdir";
    RENAME = 82, "rename";
    MKDIR = 83, "mkdir";
    RMDIR = 84, "rmdir";
    LINK = 86, "link";
    UNLINK = 87, "unlink";
    SYMLINK = 88, "symlink";
    READLINK = 89, "readlink";
    CHMOD = 90, "chmod";
    FCHMOD = 91, "fchmod";
    CHOWN = 92, "chown";
    FCHOWN = 93, "fchown";
    LCHOWN = 94, "lchown";
    UMASK = 95, "umask";
    GETTIMEOFDAY = 96, "gettimeofday";
    SYSINFO = 99, "sysinfo";
    MKNOD = 133, "mknod";
    GETUID = 102, "getuid";
    GETGID = 104, "getgid";
    GETPPID = 110, "getppid";
    GETPGRP = 111, "getpgrp";
    SETSID = 112, "setsid";
    GETPGID = 121, "getpgid";
    GETSID = 124, "getsid";
    GETEUID = 107, "geteuid";
    GETEGID = 108, "getegid";
    RT_SIGPENDING = 127, "rt_sigpending";
    PRCTL = 157, "prctl";
    SIGALTSTACK = 131, "sigaltstack";
    ARCH_PRCTL = 158, "arch_prctl";
    GETTID = 186, "gettid";
    TKILL = 200, "tkill";
    SCHED_GETAFFINITY = 204, "sched_getaffinity";
    TIME = 201, "time";
    FUTEX = 202, "futex";
    GETDENTS64 = 217, "getdents64";
    SET_TID_ADDRESS = 218, "set_tid_address";
    CLOCK_GETTIME = 228, "clock_gettime";
    CLOCK_GETRES = 229, "clock_getres";
    CLOCK_NANOSLEEP = 230, "clock_nanosleep";
    EXIT_GROUP = 231, "exit_group";
    TGKILL = 234, "tgkill";
    UTIMES = 235, "utimes";
    OPENAT = 257, "openat";
    MKDIRAT = 258, "mkdirat";
    FCHOWNAT = 260, "fchownat";
    FUTIMESAT = 261, "futimesat";
    MKNODAT = 259, "mknodat";
    NEWFSTATAT = 262, "newfstatat";
    UNLINKAT = 263, "unlinkat";
    RENAMEAT = 264, "renameat";
    READLINKAT = 267, "readlinkat";
    FACCESSAT = 269, "faccessat";
    FCHMODAT = 268, "fchmodat";
    PSELECT6 = 270, "pselect6";
    PPOLL = 271, "ppoll";
    UTIMENSAT = 280, "utimensat";
    LINKAT = 265, "linkat";
    SYMLINKAT = 266, "symlinkat";
    SET_ROBUST_LIST = 273, "set_robust_list";
    PRLIMIT64 = 302, "prlimit64";
    DUP3 = 292, "dup3";
    PIPE2 = 293, "pipe2";
    RENAMEAT2 = 316, "renameat2";
    GETRANDOM = 318, "getrandom";
    FACCESSAT2 = 439, "faccessat2";
    FCHMODAT2 = 452, "fchmodat2";
    RSEQ = 334, "rseq";
    STATX = 332, "statx";
    // Not served (`ENOSYS`): named so that traces and `--stats` name them.
    MADVISE = 28, "madvise";
    SENDFILE = 40, "sendfile";
    SOCKET = 41, "socket";
    CLONE = 56, "clone";
    FORK = 57, "fork";
    VFORK = 58, "vfork";
    EXECVE = 59, "execve";
    WAIT4 = 61, "wait4";
    CLONE3 = 435, "clone3";
}
