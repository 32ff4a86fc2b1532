//! The filesystem calls: argument blocks, flags and record formats.
//!
//! A call is one `out` of the 32-bit guest address of its argument block to
//! the call's port. Fields marked IN are read by kvmini, fields marked OUT
//! are written back before the guest resumes. `result` is what the Linux
//! system call returns: `>= 0` on success, `-errno` on failure (see
//! [`crate::errno`]). Paths and buffers are 64-bit guest virtual addresses,
//! translated through the guest's page tables. Flag and mode values are
//! Linux's (x86_64).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Open for reading only.
pub const O_RDONLY: u32 = 0;
/// Open for writing only.
pub const O_WRONLY: u32 = 0o1;
/// Open for reading and writing.
pub const O_RDWR: u32 = 0o2;
/// Mask of the access mode bits.
pub const O_ACCMODE: u32 = 0o3;
/// Create the file if it does not exist.
pub const O_CREAT: u32 = 0o100;
/// With `O_CREAT`: fail with EEXIST if it exists.
pub const O_EXCL: u32 = 0o200;
/// Truncate to length 0.
pub const O_TRUNC: u32 = 0o1000;
/// Every write goes to the end.
pub const O_APPEND: u32 = 0o2000;
/// Fail with ENOTDIR unless the path is a directory.
pub const O_DIRECTORY: u32 = 0o200000;
/// Fail with ELOOP if the last component is a symbolic link.
pub const O_NOFOLLOW: u32 = 0o400000;
/// Accepted and ignored: guests have no `exec`.
pub const O_CLOEXEC: u32 = 0o2000000;
/// Every flag `open` accepts; others give EINVAL.
pub const O_SUPPORTED: u32 =
    O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

/// `lseek` from the start.
pub const SEEK_SET: u32 = 0;
/// `lseek` from the current offset.
pub const SEEK_CUR: u32 = 1;
/// `lseek` from the end.
pub const SEEK_END: u32 = 2;

/// File type mask of `st_mode`.
pub const S_IFMT: u32 = 0o170000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;
/// FIFO.
pub const S_IFIFO: u32 = 0o010000;

/// `d_type` of a directory entry: unknown.
pub const DT_UNKNOWN: u8 = 0;
/// `d_type`: FIFO.
pub const DT_FIFO: u8 = 1;
/// `d_type`: character device.
pub const DT_CHR: u8 = 2;
/// `d_type`: directory.
pub const DT_DIR: u8 = 4;
/// `d_type`: regular file.
pub const DT_REG: u8 = 8;
/// `d_type`: symbolic link.
pub const DT_LNK: u8 = 10;

/// Longest path kvmini reads, NUL included (Linux's PATH_MAX).
pub const PATH_MAX: u64 = 4096;
/// Descriptors 0, 1, 2: the guest's stdin, stdout and stderr.
pub const STDIO_FDS: i32 = 3;
/// Default limit on a guest's open descriptors, 0..2 included.
pub const DEFAULT_MAX_FDS: u32 = 64;

/// `open(path, flags, mode)`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct OpenArgs {
    /// IN: address of the NUL-terminated path.
    pub path: u64,
    /// IN: `O_*` flags.
    pub flags: u32,
    /// IN: permission bits for `O_CREAT`.
    pub mode: u32,
    /// OUT: the new descriptor, or -errno.
    pub result: i64,
}

/// `close(fd)` and `fsync(fd)`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct FdArgs {
    /// IN: the descriptor.
    pub fd: i32,
    /// Reserved, zero.
    pub reserved: u32,
    /// OUT: 0, or -errno.
    pub result: i64,
}

/// `read`, `write`, `pread`, `pwrite` and `getdents64`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct IoArgs {
    /// IN: the descriptor.
    pub fd: i32,
    /// Reserved, zero.
    pub reserved: u32,
    /// IN: address of the buffer.
    pub buf: u64,
    /// IN: its length in bytes.
    pub len: u64,
    /// IN: file offset (`pread`/`pwrite` only).
    pub offset: i64,
    /// OUT: bytes transferred, or -errno.
    pub result: i64,
}

/// `lseek(fd, offset, whence)`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SeekArgs {
    /// IN: the descriptor.
    pub fd: i32,
    /// IN: `SEEK_SET`, `SEEK_CUR` or `SEEK_END`.
    pub whence: u32,
    /// IN: the offset.
    pub offset: i64,
    /// OUT: the new offset, or -errno.
    pub result: i64,
}

/// `stat(path, buf)` and `fstat(fd, buf)`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct StatArgs {
    /// IN: address of the NUL-terminated path (`stat` only).
    pub path: u64,
    /// IN: the descriptor (`fstat` only).
    pub fd: i32,
    /// Reserved, zero.
    pub reserved: u32,
    /// IN: address of a [`Stat`] that kvmini fills in.
    pub stat: u64,
    /// OUT: 0, or -errno.
    pub result: i64,
}

/// `ftruncate(fd, length)`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TruncateArgs {
    /// IN: the descriptor.
    pub fd: i32,
    /// Reserved, zero.
    pub reserved: u32,
    /// IN: the new length.
    pub length: i64,
    /// OUT: 0, or -errno.
    pub result: i64,
}

/// `unlink(path)`, `rmdir(path)` and `mkdir(path, mode)`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PathArgs {
    /// IN: address of the NUL-terminated path.
    pub path: u64,
    /// IN: permission bits (`mkdir` only).
    pub mode: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// OUT: 0, or -errno.
    pub result: i64,
}

/// `rename(old, new)`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct RenameArgs {
    /// IN: address of the NUL-terminated old path.
    pub old: u64,
    /// IN: address of the NUL-terminated new path.
    pub new: u64,
    /// OUT: 0, or -errno.
    pub result: i64,
}

/// File status, laid out as Linux x86_64's `struct stat` (144 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Stat {
    /// Device.
    pub st_dev: u64,
    /// Inode.
    pub st_ino: u64,
    /// Hard links.
    pub st_nlink: u64,
    /// Type and permission bits (`S_IF*` | mode).
    pub st_mode: u32,
    /// Owner.
    pub st_uid: u32,
    /// Group.
    pub st_gid: u32,
    /// Padding.
    pub pad0: u32,
    /// Device number of a device file.
    pub st_rdev: u64,
    /// Size in bytes.
    pub st_size: i64,
    /// Preferred I/O size.
    pub st_blksize: i64,
    /// 512-byte blocks allocated.
    pub st_blocks: i64,
    /// Last access, seconds.
    pub st_atime: i64,
    /// Last access, nanoseconds.
    pub st_atime_nsec: i64,
    /// Last modification, seconds.
    pub st_mtime: i64,
    /// Last modification, nanoseconds.
    pub st_mtime_nsec: i64,
    /// Last status change, seconds.
    pub st_ctime: i64,
    /// Last status change, nanoseconds.
    pub st_ctime_nsec: i64,
    /// Reserved.
    pub reserved: [i64; 3],
}

/// The fixed part of one `getdents64` record, as Linux lays it out: the
/// NUL-terminated name follows at offset 19, and `d_reclen` (a multiple
/// of 8) is the distance to the next record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, Immutable, KnownLayout)]
pub struct Dirent64 {
    /// Inode.
    pub d_ino: u64,
    /// Opaque position of the next record.
    pub d_off: i64,
    /// Length of this record.
    pub d_reclen: u16,
    /// `DT_*` type.
    pub d_type: u8,
}

/// Offset of the name in a `getdents64` record.
pub const DIRENT64_NAME_OFFSET: usize = 19;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn blocks_have_the_documented_layout() {
        assert_eq!(size_of::<OpenArgs>(), 24);
        assert_eq!(size_of::<FdArgs>(), 16);
        assert_eq!(size_of::<IoArgs>(), 40);
        assert_eq!(offset_of!(IoArgs, result), 32);
        assert_eq!(size_of::<SeekArgs>(), 24);
        assert_eq!(size_of::<StatArgs>(), 32);
        assert_eq!(size_of::<TruncateArgs>(), 24);
        assert_eq!(size_of::<PathArgs>(), 24);
        assert_eq!(size_of::<RenameArgs>(), 24);
    }

    /// The open flags are Linux's (x86_64), and `open` accepts exactly
    /// these: the access mode, creation, truncation, appending, the
    /// directory and no-follow checks and close-on-exec.
    #[test]
    fn open_flags_are_linux_s_and_the_supported_set_is_exact() {
        assert_eq!(
            [O_RDONLY, O_WRONLY, O_RDWR, O_ACCMODE, O_CREAT, O_EXCL],
            [0, 1, 2, 3, 0o100, 0o200]
        );
        assert_eq!(
            [O_TRUNC, O_APPEND, O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC],
            [0o1000, 0o2000, 0o200000, 0o400000, 0o2000000]
        );
        assert_eq!(O_SUPPORTED, 0o2603303);
    }

    #[test]
    fn stat_matches_linux_x86_64() {
        assert_eq!(size_of::<Stat>(), 144);
        assert_eq!(offset_of!(Stat, st_mode), 24);
        assert_eq!(offset_of!(Stat, st_size), 48);
        assert_eq!(offset_of!(Stat, st_mtime), 88);
        assert_eq!(offset_of!(Dirent64, d_type), 18);
    }
}
