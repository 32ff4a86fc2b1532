//! Errors of the calls that reach the host: a Linux errno value, as a
//! failed filesystem, host or argument call returns it.

use core::fmt;

use kvmini_abi::errno;

/// A Linux errno value, as a failed filesystem call returns it (positive).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

/// The result of a call that can fail with an errno value.
pub type Result<T> = core::result::Result<T, Errno>;

macro_rules! errno_consts {
    ($($name:ident),* $(,)?) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`.")]
                pub const $name: Errno = Errno(errno::$name);
            )*
        }
    };
}

errno_consts!(
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
);

impl Errno {
    /// The symbolic name, such as `"ENOENT"`, or `"errno"` for a value
    /// the ABI does not name.
    pub const fn name(self) -> &'static str {
        errno::name(self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "errno" => write!(f, "errno {}", self.0),
            name => f.write_str(name),
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({} = {})", self.0, self.name())
    }
}

/// Turns a raw result (`>= 0`, or `-errno`) into a [`Result`].
pub fn check(ret: i64) -> Result<u64> {
    if ret < 0 {
        // Linux errno values are small; anything else still reads as an error.
        Err(Errno(i32::try_from(-ret).unwrap_or(i32::MAX)))
    } else {
        Ok(ret.unsigned_abs())
    }
}
