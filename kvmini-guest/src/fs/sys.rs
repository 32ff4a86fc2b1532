//! The raw filesystem calls, one per port, with the Linux system call's
//! signature and result: `>= 0` on success, `-errno` on failure. Paths are
//! NUL-terminated. The ABI's constants (`O_*`, `SEEK_*`, `S_IF*`, `DT_*`)
//! and blocks are re-exported here; errno values are in
//! [`kvmini_abi::errno`].
//!
//! Calls through which kvmini only reads guest memory are safe: a bad
//! pointer gives `-EFAULT`. Calls through which it writes guest memory
//! (`read`, `pread`, `fstat`, `stat`, `getdents64`) are `unsafe`.

use core::ptr::addr_of;

use kvmini_abi::errno::ENOSYS;
pub use kvmini_abi::fs::*;
use kvmini_abi::Port;

/// Sends the block's address to `port` through the SDK's one
/// hypercall primitive ([`crate::hypercall::block_call`]): 0 when
/// kvmini took the block and wrote its `result`, or -EFAULT when it
/// could not use the block.
///
/// # Safety
/// Every buffer the block names must be valid for kvmini to write as
/// much as the call may write.
unsafe fn call<T>(port: Port, block: &mut T) -> i64 {
    // SAFETY: kvmini reads the block and writes its `result` and the
    // buffers it names, which the caller vouches for.
    unsafe { crate::hypercall::block_call(port, addr(block)) }
}

fn addr<T>(ptr: *const T) -> u64 {
    ptr as usize as u64
}

/// The call's answer: -EFAULT from kvmini when it could not use the
/// block (`status`), else the `result` kvmini wrote in the block.
fn result(status: i64, field: &i64) -> i64 {
    if status < 0 {
        return status;
    }
    // SAFETY: a reference is valid for reads.
    unsafe { addr_of!(*field).read_volatile() }
}

/// `open(path, flags, mode)`: a new descriptor.
pub fn open(path: *const u8, flags: u32, mode: u32) -> i64 {
    let mut a = OpenArgs {
        path: addr(path),
        flags,
        mode,
        result: -i64::from(ENOSYS),
    };
    // SAFETY: kvmini only reads the path.
    let status = unsafe { call(Port::Open, &mut a) };
    result(status, &a.result)
}

fn fd_call(port: Port, fd: i32) -> i64 {
    let mut a = FdArgs {
        fd,
        reserved: 0,
        result: -i64::from(ENOSYS),
    };
    // SAFETY: the block names no buffer.
    let status = unsafe { call(port, &mut a) };
    result(status, &a.result)
}

/// `close(fd)`.
pub fn close(fd: i32) -> i64 {
    fd_call(Port::Close, fd)
}

/// `fsync(fd)`.
pub fn fsync(fd: i32) -> i64 {
    fd_call(Port::Fsync, fd)
}

/// # Safety
/// As for the calls that write guest memory: `buf` valid for `len` bytes.
unsafe fn io_call(port: Port, fd: i32, buf: u64, len: usize, offset: i64) -> i64 {
    let mut a = IoArgs {
        fd,
        reserved: 0,
        buf,
        len: len as u64,
        offset,
        result: -i64::from(ENOSYS),
    };
    // SAFETY: the caller vouches for the buffer.
    let status = unsafe { call(port, &mut a) };
    result(status, &a.result)
}

/// `read(fd, buf, len)`: bytes read, 0 at end of file.
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes.
pub unsafe fn read(fd: i32, buf: *mut u8, len: usize) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { io_call(Port::Read, fd, addr(buf), len, 0) }
}

/// `write(fd, buf, len)`: bytes written.
pub fn write(fd: i32, buf: *const u8, len: usize) -> i64 {
    // SAFETY: kvmini only reads the buffer.
    unsafe { io_call(Port::Write, fd, addr(buf), len, 0) }
}

/// `pread(fd, buf, len, offset)`: bytes read at `offset`; the file
/// offset is unchanged.
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes.
pub unsafe fn pread(fd: i32, buf: *mut u8, len: usize, offset: i64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { io_call(Port::Pread, fd, addr(buf), len, offset) }
}

/// `pwrite(fd, buf, len, offset)`: bytes written at `offset`; the file
/// offset is unchanged.
pub fn pwrite(fd: i32, buf: *const u8, len: usize, offset: i64) -> i64 {
    // SAFETY: kvmini only reads the buffer.
    unsafe { io_call(Port::Pwrite, fd, addr(buf), len, offset) }
}

/// `getdents64(fd, buf, len)`: bytes of [`Dirent64`] records written,
/// 0 at the end of the directory.
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes.
pub unsafe fn getdents64(fd: i32, buf: *mut u8, len: usize) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { io_call(Port::Getdents, fd, addr(buf), len, 0) }
}

/// `lseek(fd, offset, whence)`: the new offset.
pub fn lseek(fd: i32, offset: i64, whence: u32) -> i64 {
    let mut a = SeekArgs {
        fd,
        whence,
        offset,
        result: -i64::from(ENOSYS),
    };
    // SAFETY: the block names no buffer.
    let status = unsafe { call(Port::Lseek, &mut a) };
    result(status, &a.result)
}

/// `fstat(fd, stat)`.
///
/// # Safety
/// `stat` must be valid for a write of a [`Stat`].
pub unsafe fn fstat(fd: i32, stat: *mut Stat) -> i64 {
    let mut a = StatArgs {
        path: 0,
        fd,
        reserved: 0,
        stat: addr(stat),
        result: -i64::from(ENOSYS),
    };
    // SAFETY: the caller vouches for `stat`.
    let status = unsafe { call(Port::Fstat, &mut a) };
    result(status, &a.result)
}

/// `stat(path, stat)`; follows symbolic links.
///
/// # Safety
/// `stat` must be valid for a write of a [`Stat`].
pub unsafe fn stat(path: *const u8, stat: *mut Stat) -> i64 {
    let mut a = StatArgs {
        path: addr(path),
        fd: -1,
        reserved: 0,
        stat: addr(stat),
        result: -i64::from(ENOSYS),
    };
    // SAFETY: the caller vouches for `stat`; the path is only read.
    let status = unsafe { call(Port::Stat, &mut a) };
    result(status, &a.result)
}

/// `ftruncate(fd, length)`.
pub fn ftruncate(fd: i32, length: i64) -> i64 {
    let mut a = TruncateArgs {
        fd,
        reserved: 0,
        length,
        result: -i64::from(ENOSYS),
    };
    // SAFETY: the block names no buffer.
    let status = unsafe { call(Port::Ftruncate, &mut a) };
    result(status, &a.result)
}

fn path_call(port: Port, path: *const u8, mode: u32) -> i64 {
    let mut a = PathArgs {
        path: addr(path),
        mode,
        reserved: 0,
        result: -i64::from(ENOSYS),
    };
    // SAFETY: kvmini only reads the path.
    let status = unsafe { call(port, &mut a) };
    result(status, &a.result)
}

/// `unlink(path)`.
pub fn unlink(path: *const u8) -> i64 {
    path_call(Port::Unlink, path, 0)
}

/// `mkdir(path, mode)`.
pub fn mkdir(path: *const u8, mode: u32) -> i64 {
    path_call(Port::Mkdir, path, mode)
}

/// `rmdir(path)`.
pub fn rmdir(path: *const u8) -> i64 {
    path_call(Port::Rmdir, path, 0)
}

/// `rename(old, new)`.
pub fn rename(old: *const u8, new: *const u8) -> i64 {
    let mut a = RenameArgs {
        old: addr(old),
        new: addr(new),
        result: -i64::from(ENOSYS),
    };
    // SAFETY: kvmini only reads the paths.
    let status = unsafe { call(Port::Rename, &mut a) };
    result(status, &a.result)
}
