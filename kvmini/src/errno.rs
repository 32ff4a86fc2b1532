//! The host side's one errno type: what a call made on the guest's behalf
//! (a filesystem call, a host function, a batch) returns as `-errno`.

use std::fmt;

use kvmini_abi::errno;

/// A Linux errno value a host function returns to the guest (as `-errno`).
/// Always one the guest can read as an error: 1..=4095, so that `-errno`
/// is never 0, positive, or outside the range Linux reserves for errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(errno::EPERM);
    /// No such entry.
    pub const ENOENT: Errno = Errno(errno::ENOENT);
    /// Input/output error: also what an invalid errno becomes.
    pub const EIO: Errno = Errno(errno::EIO);
    /// Try again.
    pub const EAGAIN: Errno = Errno(errno::EAGAIN);
    /// Permission denied.
    pub const EACCES: Errno = Errno(errno::EACCES);
    /// Bad address.
    pub const EFAULT: Errno = Errno(errno::EFAULT);
    /// Busy.
    pub const EBUSY: Errno = Errno(errno::EBUSY);
    /// Already exists.
    pub const EEXIST: Errno = Errno(errno::EEXIST);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(errno::EINVAL);
    /// No space left.
    pub const ENOSPC: Errno = Errno(errno::ENOSPC);
    /// Result out of range.
    pub const ERANGE: Errno = Errno(errno::ERANGE);
    /// No such function.
    pub const ENOSYS: Errno = Errno(errno::ENOSYS);
    /// Value too large.
    pub const EOVERFLOW: Errno = Errno(errno::EOVERFLOW);

    /// Bad file descriptor.
    pub const EBADF: Errno = Errno(errno::EBADF);
    /// Interrupted.
    pub const EINTR: Errno = Errno(errno::EINTR);
    /// Is a directory.
    pub const EISDIR: Errno = Errno(errno::EISDIR);
    /// Too many symbolic links.
    pub const ELOOP: Errno = Errno(errno::ELOOP);
    /// Too many open descriptors.
    pub const EMFILE: Errno = Errno(errno::EMFILE);
    /// Name too long.
    pub const ENAMETOOLONG: Errno = Errno(errno::ENAMETOOLONG);
    /// Not a directory.
    pub const ENOTDIR: Errno = Errno(errno::ENOTDIR);
    /// Broken pipe.
    pub const EPIPE: Errno = Errno(errno::EPIPE);
    /// Read-only file system.
    pub const EROFS: Errno = Errno(errno::EROFS);
    /// Illegal seek.
    pub const ESPIPE: Errno = Errno(errno::ESPIPE);
    /// Cross-device link.
    pub const EXDEV: Errno = Errno(errno::EXDEV);

    /// The largest errno: Linux returns -1..=-4095 for errors.
    pub const MAX: i32 = 4095;

    /// `code` as an errno, if it is one (1..=4095).
    pub const fn new(code: i32) -> Option<Errno> {
        if code >= 1 && code <= Self::MAX {
            Some(Errno(code))
        } else {
            None
        }
    }

    /// The errno's number (1..=4095).
    pub const fn code(self) -> i32 {
        self.0
    }

    /// What the guest reads in a result: `-errno`.
    pub const fn negated(self) -> i64 {
        -(self.0 as i64)
    }

    /// The OS error of `error`, or `otherwise` for an error with none.
    pub fn of_io(error: &std::io::Error, otherwise: Errno) -> Errno {
        error
            .raw_os_error()
            .and_then(Errno::new)
            .unwrap_or(otherwise)
    }
}

/// The error of a system call kvmini made on the guest's behalf.
impl From<rustix::io::Errno> for Errno {
    fn from(error: rustix::io::Errno) -> Self {
        Errno::new(error.raw_os_error()).unwrap_or(Errno::EIO)
    }
}

/// The OS error of `error`, or EIO for an error with none.
impl From<std::io::Error> for Errno {
    fn from(error: std::io::Error) -> Self {
        error
            .raw_os_error()
            .and_then(Errno::new)
            .unwrap_or(Errno::EIO)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", errno::name(self.0), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conversions the filesystem calls use (the range checks are
    /// tested with host functions, in `host`).
    #[test]
    fn os_errors_keep_their_number_and_have_a_chosen_fallback() {
        for code in [1, 2, 4095] {
            assert_eq!(Errno::new(code).map(Errno::negated), Some(-i64::from(code)));
        }
        let other = std::io::Error::other("no errno");
        assert_eq!(Errno::of_io(&other, Errno::EFAULT), Errno::EFAULT);
        let busy = std::io::Error::from_raw_os_error(libc::EBUSY);
        assert_eq!(Errno::of_io(&busy, Errno::EFAULT), Errno::EBUSY);
        let outside = std::io::Error::from_raw_os_error(5000);
        assert_eq!(Errno::of_io(&outside, Errno::EINVAL), Errno::EINVAL);
        assert_eq!(Errno::from(rustix::io::Errno::XDEV), Errno::EXDEV);
        assert_eq!(Errno::from(rustix::io::Errno::NOENT).code(), errno::ENOENT);
    }
}
