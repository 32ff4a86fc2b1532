//! Linux errno values (x86_64), as filesystem calls return them negated.

/// Operation not permitted.
pub const EPERM: i32 = 1;
/// No such file or directory.
pub const ENOENT: i32 = 2;
/// Interrupted (by kvmini stopping the guest).
pub const EINTR: i32 = 4;
/// I/O error.
pub const EIO: i32 = 5;
/// Bad file descriptor.
pub const EBADF: i32 = 9;
/// Try again.
pub const EAGAIN: i32 = 11;
/// Permission denied.
pub const EACCES: i32 = 13;
/// Bad address: a pointer not wholly inside mapped guest memory.
pub const EFAULT: i32 = 14;
/// Device or resource busy.
pub const EBUSY: i32 = 16;
/// File exists.
pub const EEXIST: i32 = 17;
/// Cross-device link, or a path that would leave its granted directory.
pub const EXDEV: i32 = 18;
/// Not a directory.
pub const ENOTDIR: i32 = 20;
/// Is a directory.
pub const EISDIR: i32 = 21;
/// Invalid argument.
pub const EINVAL: i32 = 22;
/// Too many open files.
pub const EMFILE: i32 = 24;
/// File too large.
pub const EFBIG: i32 = 27;
/// No space left on device.
pub const ENOSPC: i32 = 28;
/// Illegal seek.
pub const ESPIPE: i32 = 29;
/// Read-only file system.
pub const EROFS: i32 = 30;
/// Result out of range (a buffer too small for the answer).
pub const ERANGE: i32 = 34;
/// File name too long.
pub const ENAMETOOLONG: i32 = 36;
/// Function not implemented.
pub const ENOSYS: i32 = 38;
/// Directory not empty.
pub const ENOTEMPTY: i32 = 39;
/// Too many levels of symbolic links.
pub const ELOOP: i32 = 40;
/// Broken pipe: the reader went away.
pub const EPIPE: i32 = 32;
/// Value too large for defined data type.
pub const EOVERFLOW: i32 = 75;

/// The symbolic name of an errno value, for messages.
pub const fn name(errno: i32) -> &'static str {
    match errno {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        EINTR => "EINTR",
        EIO => "EIO",
        EBADF => "EBADF",
        EAGAIN => "EAGAIN",
        EACCES => "EACCES",
        EFAULT => "EFAULT",
        EBUSY => "EBUSY",
        EEXIST => "EEXIST",
        EXDEV => "EXDEV",
        ENOTDIR => "ENOTDIR",
        EISDIR => "EISDIR",
        EINVAL => "EINVAL",
        EMFILE => "EMFILE",
        EFBIG => "EFBIG",
        ENOSPC => "ENOSPC",
        ESPIPE => "ESPIPE",
        EROFS => "EROFS",
        EPIPE => "EPIPE",
        ERANGE => "ERANGE",
        ENAMETOOLONG => "ENAMETOOLONG",
        ENOSYS => "ENOSYS",
        ENOTEMPTY => "ENOTEMPTY",
        ELOOP => "ELOOP",
        EOVERFLOW => "EOVERFLOW",
        _ => "errno",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value is Linux's on x86_64 and has its own name; anything
    /// else is "errno".
    #[test]
    fn each_errno_has_linux_s_number_and_its_name() {
        let linux = [
            (1, "EPERM"),
            (2, "ENOENT"),
            (4, "EINTR"),
            (5, "EIO"),
            (9, "EBADF"),
            (11, "EAGAIN"),
            (13, "EACCES"),
            (14, "EFAULT"),
            (16, "EBUSY"),
            (17, "EEXIST"),
            (18, "EXDEV"),
            (20, "ENOTDIR"),
            (21, "EISDIR"),
            (22, "EINVAL"),
            (24, "EMFILE"),
            (27, "EFBIG"),
            (28, "ENOSPC"),
            (29, "ESPIPE"),
            (30, "EROFS"),
            (32, "EPIPE"),
            (34, "ERANGE"),
            (36, "ENAMETOOLONG"),
            (38, "ENOSYS"),
            (39, "ENOTEMPTY"),
            (40, "ELOOP"),
            (75, "EOVERFLOW"),
        ];
        for (number, want) in linux {
            assert_eq!(name(number), want, "{number}");
        }
        for other in [0, 3, 10, 41, 76, -1, -22, i32::MIN, i32::MAX] {
            assert_eq!(name(other), "errno", "{other}");
        }
        let consts = [
            EPERM,
            ENOENT,
            EINTR,
            EIO,
            EBADF,
            EAGAIN,
            EACCES,
            EFAULT,
            EBUSY,
            EEXIST,
            EXDEV,
            ENOTDIR,
            EISDIR,
            EINVAL,
            EMFILE,
            EFBIG,
            ENOSPC,
            ESPIPE,
            EROFS,
            EPIPE,
            ERANGE,
            ENAMETOOLONG,
            ENOSYS,
            ENOTEMPTY,
            ELOOP,
            EOVERFLOW,
        ];
        assert_eq!(consts, linux.map(|(number, _)| number));
    }
}
