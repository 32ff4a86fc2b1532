//! Files and directories in the host directories that kvmini grants the
//! guest (`kvmini run --dir`), through the filesystem hypercalls of
//! [`kvmini_abi::fs`].
//!
//! Each call is one `out` of the address of a `#[repr(C)]` argument block,
//! so one VM exit. The API follows `std::fs` where it can without an
//! allocator: paths are `&CStr` (`c"/data/x.txt"`), buffers belong to the
//! caller, and errors are Linux errno values ([`Errno`]).
//!
//! ```ignore
//! use kvmini_guest::fs::{self, File, SeekFrom};
//!
//! let mut file = File::create(c"/hello.txt")?;
//! file.write_all(b"hello\n")?;
//! file.seek(SeekFrom::Start(0))?;
//! let mut buf = [0u8; 280];
//! for entry in fs::read_dir(c"/", &mut buf)? {
//!     kvmini_guest::println!("{:?}", entry?.name());
//! }
//! ```
//!
//! The raw calls, one per port and returning what kvmini returns
//! (`>= 0`, or `-errno`), are in [`sys`]. Descriptor 1 is the guest's
//! stdout: `sys::write(1, ..)` prints, like `print!` does.

use core::ffi::CStr;
use core::fmt;

use kvmini_abi::errno;
use kvmini_abi::fs::{
    Stat, DT_DIR, DT_REG, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_RDONLY, O_RDWR,
    O_TRUNC, O_WRONLY, SEEK_CUR, SEEK_END, SEEK_SET, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
};

/// A Linux errno value, as a failed filesystem call returns it (positive).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

/// The result of a filesystem call.
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
        Ok(ret as u64)
    }
}

fn to_offset(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Errno::EINVAL)
}

/// The raw filesystem calls, one per port, with the Linux system call's
/// signature and result: `>= 0` on success, `-errno` on failure. Paths are
/// NUL-terminated. The ABI's constants (`O_*`, `SEEK_*`, `S_IF*`, `DT_*`)
/// and blocks are re-exported here; errno values are in
/// [`kvmini_abi::errno`].
///
/// Calls through which kvmini only reads guest memory are safe: a bad
/// pointer gives `-EFAULT`. Calls through which it writes guest memory
/// (`read`, `pread`, `fstat`, `stat`, `getdents64`) are `unsafe`.
pub mod sys {
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
}

fn ptr(path: &CStr) -> *const u8 {
    path.as_ptr().cast()
}

/// Where [`File::seek`] measures from, as in `std::io::SeekFrom`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekFrom {
    /// From the start of the file.
    Start(u64),
    /// From the end of the file.
    End(i64),
    /// From the current offset.
    Current(i64),
}

/// An open file or directory: owns its descriptor and closes it on drop
/// (errors from that close are ignored; use [`File::close`] to see them).
#[derive(Debug)]
pub struct File {
    fd: i32,
}

impl File {
    /// Opens an existing file for reading.
    pub fn open(path: &CStr) -> Result<File> {
        OpenOptions::new().read(true).open(path)
    }

    /// Opens a file for writing, creating it (mode 0o644) or truncating it.
    pub fn create(path: &CStr) -> Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    /// A blank [`OpenOptions`], as `OpenOptions::new()`.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Reads up to `buf.len()` bytes; 0 means end of file.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        // SAFETY: `buf` is valid for writes of its length.
        let n = check(unsafe { sys::read(self.fd, buf.as_mut_ptr(), buf.len()) })?;
        Ok(n as usize)
    }

    /// Writes up to `buf.len()` bytes; returns how many were written.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize> {
        let n = check(sys::write(self.fd, buf.as_ptr(), buf.len()))?;
        Ok(n as usize)
    }

    /// Writes all of `buf`, in as many calls as it takes. A write that
    /// makes no progress gives `EIO`.
    pub fn write_all(&mut self, mut buf: &[u8]) -> Result<()> {
        while !buf.is_empty() {
            match self.write(buf)? {
                0 => return Err(Errno::EIO),
                n => buf = &buf[n.min(buf.len())..],
            }
        }
        Ok(())
    }

    /// Reads up to `buf.len()` bytes at `offset` (`pread`), leaving the
    /// file offset alone.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let offset = to_offset(offset)?;
        // SAFETY: `buf` is valid for writes of its length.
        let n = check(unsafe { sys::pread(self.fd, buf.as_mut_ptr(), buf.len(), offset) })?;
        Ok(n as usize)
    }

    /// Writes up to `buf.len()` bytes at `offset` (`pwrite`), leaving the
    /// file offset alone.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        let offset = to_offset(offset)?;
        let n = check(sys::pwrite(self.fd, buf.as_ptr(), buf.len(), offset))?;
        Ok(n as usize)
    }

    /// Moves the file offset; returns the new offset from the start.
    pub fn seek(&mut self, pos: SeekFrom) -> Result<u64> {
        let (offset, whence) = match pos {
            SeekFrom::Start(n) => (to_offset(n)?, SEEK_SET),
            SeekFrom::End(n) => (n, SEEK_END),
            SeekFrom::Current(n) => (n, SEEK_CUR),
        };
        check(sys::lseek(self.fd, offset, whence))
    }

    /// Moves the file offset back to the start.
    pub fn rewind(&mut self) -> Result<()> {
        self.seek(SeekFrom::Start(0)).map(|_| ())
    }

    /// The file's status (`fstat`).
    pub fn metadata(&self) -> Result<Metadata> {
        let mut stat = Stat::default();
        // SAFETY: `stat` is a valid, writable Stat.
        check(unsafe { sys::fstat(self.fd, &mut stat) })?;
        Ok(Metadata(stat))
    }

    /// Truncates or extends the file to `len` bytes (`ftruncate`).
    pub fn set_len(&self, len: u64) -> Result<()> {
        check(sys::ftruncate(self.fd, to_offset(len)?)).map(|_| ())
    }

    /// Flushes the file to the host's storage (`fsync`).
    pub fn sync_all(&self) -> Result<()> {
        check(sys::fsync(self.fd)).map(|_| ())
    }

    /// Closes the descriptor and reports what `close` returned.
    pub fn close(self) -> Result<()> {
        check(sys::close(self.into_raw_fd())).map(|_| ())
    }

    /// The descriptor, still owned by this `File`.
    pub fn as_raw_fd(&self) -> i32 {
        self.fd
    }

    /// The descriptor, which the caller now owns: it is not closed.
    pub fn into_raw_fd(self) -> i32 {
        let fd = self.fd;
        core::mem::forget(self);
        fd
    }

    /// Takes ownership of `fd`, which is closed when the `File` is dropped.
    /// For stdout (fd 1) use [`sys::write`] instead, or `into_raw_fd`
    /// before the drop, unless closing it is the point.
    pub fn from_raw_fd(fd: i32) -> File {
        File { fd }
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = sys::close(self.fd);
    }
}

/// `write!`/`writeln!` into a file; a failed write shows up as `fmt::Error`.
impl fmt::Write for File {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_all(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

/// How to open a file, as `std::fs::OpenOptions`. The access mode comes
/// from `read`/`write`/`append`; at least one must be set, and `truncate`,
/// `create` and `create_new` need `write` or `append` (else `EINVAL`, as in
/// std). The default mode for created files is 0o644.
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    directory: bool,
    nofollow: bool,
    custom_flags: u32,
    mode: u32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// Every option off, mode 0o644.
    pub const fn new() -> Self {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            directory: false,
            nofollow: false,
            custom_flags: 0,
            mode: 0o644,
        }
    }

    /// Open for reading.
    pub fn read(&mut self, on: bool) -> &mut Self {
        self.read = on;
        self
    }

    /// Open for writing.
    pub fn write(&mut self, on: bool) -> &mut Self {
        self.write = on;
        self
    }

    /// Open for writing at the end only (`O_APPEND`); implies write access.
    pub fn append(&mut self, on: bool) -> &mut Self {
        self.append = on;
        self
    }

    /// Truncate to length 0 (`O_TRUNC`).
    pub fn truncate(&mut self, on: bool) -> &mut Self {
        self.truncate = on;
        self
    }

    /// Create the file if it is missing (`O_CREAT`).
    pub fn create(&mut self, on: bool) -> &mut Self {
        self.create = on;
        self
    }

    /// Create the file, failing with `EEXIST` if it exists
    /// (`O_CREAT | O_EXCL`); `create` and `truncate` are then ignored.
    pub fn create_new(&mut self, on: bool) -> &mut Self {
        self.create_new = on;
        self
    }

    /// Fail with `ENOTDIR` unless the path is a directory (`O_DIRECTORY`).
    pub fn directory(&mut self, on: bool) -> &mut Self {
        self.directory = on;
        self
    }

    /// Fail with `ELOOP` if the last component is a symlink (`O_NOFOLLOW`).
    pub fn nofollow(&mut self, on: bool) -> &mut Self {
        self.nofollow = on;
        self
    }

    /// Extra `O_*` flags, or-ed into the computed ones.
    pub fn custom_flags(&mut self, flags: u32) -> &mut Self {
        self.custom_flags = flags;
        self
    }

    /// Permission bits of a created file.
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// The `open` flags these options stand for.
    pub fn flags(&self) -> Result<u32> {
        let access = match (self.read, self.write || self.append) {
            (true, false) => O_RDONLY,
            (false, true) => O_WRONLY,
            (true, true) => O_RDWR,
            (false, false) => return Err(Errno::EINVAL),
        };
        let writable = self.write || self.append;
        if !writable && (self.truncate || self.create || self.create_new) {
            return Err(Errno::EINVAL);
        }
        if self.append && self.truncate && !self.create_new {
            return Err(Errno::EINVAL);
        }
        let creation = match (self.create, self.truncate, self.create_new) {
            (_, _, true) => O_CREAT | O_EXCL,
            (true, true, false) => O_CREAT | O_TRUNC,
            (true, false, false) => O_CREAT,
            (false, true, false) => O_TRUNC,
            (false, false, false) => 0,
        };
        let mut flags = access | creation | self.custom_flags;
        if self.append {
            flags |= O_APPEND;
        }
        if self.directory {
            flags |= O_DIRECTORY;
        }
        if self.nofollow {
            flags |= O_NOFOLLOW;
        }
        Ok(flags)
    }

    /// Opens `path` with these options.
    pub fn open(&self, path: &CStr) -> Result<File> {
        let flags = self.flags()?;
        // As C's open(2) does: the mode means something only with O_CREAT.
        let mode = if flags & O_CREAT != 0 { self.mode } else { 0 };
        let fd = check(sys::open(ptr(path), flags, mode))?;
        // Descriptors are small non-negative ints.
        Ok(File { fd: fd as i32 })
    }
}

/// A file's status: a wrapper of the ABI's [`Stat`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata(pub Stat);

impl Metadata {
    /// The raw `struct stat`.
    pub fn stat(&self) -> &Stat {
        &self.0
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.0.st_size as u64
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.0.st_size == 0
    }

    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.0.st_mode & S_IFMT == S_IFDIR
    }

    /// True for a regular file.
    pub fn is_file(&self) -> bool {
        self.0.st_mode & S_IFMT == S_IFREG
    }

    /// True for a symbolic link (never, from `stat`, which follows links).
    pub fn is_symlink(&self) -> bool {
        self.0.st_mode & S_IFMT == S_IFLNK
    }

    /// `st_mode`: file type (`S_IF*`) and permission bits.
    pub fn mode(&self) -> u32 {
        self.0.st_mode
    }

    /// Permission bits only (`st_mode & 0o7777`).
    pub fn permissions(&self) -> u32 {
        self.0.st_mode & 0o7777
    }

    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.0.st_ino
    }

    /// Number of hard links.
    pub fn nlink(&self) -> u64 {
        self.0.st_nlink
    }

    /// Last modification: (seconds, nanoseconds) since the Unix epoch.
    pub fn modified(&self) -> (i64, i64) {
        (self.0.st_mtime, self.0.st_mtime_nsec)
    }

    /// Last access: (seconds, nanoseconds) since the Unix epoch.
    pub fn accessed(&self) -> (i64, i64) {
        (self.0.st_atime, self.0.st_atime_nsec)
    }

    /// Last status change: (seconds, nanoseconds) since the Unix epoch.
    pub fn changed(&self) -> (i64, i64) {
        (self.0.st_ctime, self.0.st_ctime_nsec)
    }
}

/// The status of `path` (`stat`, following symbolic links).
pub fn metadata(path: &CStr) -> Result<Metadata> {
    let mut stat = Stat::default();
    // SAFETY: `stat` is a valid, writable Stat.
    check(unsafe { sys::stat(ptr(path), &mut stat) })?;
    Ok(Metadata(stat))
}

/// Creates a directory with mode 0o755.
pub fn create_dir(path: &CStr) -> Result<()> {
    create_dir_with_mode(path, 0o755)
}

/// Creates a directory with the given permission bits.
pub fn create_dir_with_mode(path: &CStr, mode: u32) -> Result<()> {
    check(sys::mkdir(ptr(path), mode)).map(|_| ())
}

/// Removes a file (`unlink`).
pub fn remove_file(path: &CStr) -> Result<()> {
    check(sys::unlink(ptr(path))).map(|_| ())
}

/// Removes an empty directory (`rmdir`).
pub fn remove_dir(path: &CStr) -> Result<()> {
    check(sys::rmdir(ptr(path))).map(|_| ())
}

/// Renames `old` to `new`, replacing `new` if it exists, as Linux does.
pub fn rename(old: &CStr, new: &CStr) -> Result<()> {
    check(sys::rename(ptr(old), ptr(new))).map(|_| ())
}

/// Reads the file at `path` into `buf`, until `buf` is full or the file
/// ends; returns the bytes read. A file longer than `buf` is cut short.
pub fn read(path: &CStr, buf: &mut [u8]) -> Result<usize> {
    let mut file = File::open(path)?;
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Creates or truncates the file at `path` and writes all of `data`.
pub fn write(path: &CStr, data: &[u8]) -> Result<()> {
    File::create(path)?.write_all(data)
}

/// Longest name a directory entry holds (Linux's NAME_MAX).
pub const NAME_MAX: usize = 255;

/// One directory entry. The name is copied out of the getdents buffer so
/// that entries outlive the next refill of it.
#[derive(Clone, Copy)]
pub struct DirEntry {
    ino: u64,
    file_type: u8,
    len: u8,
    /// The name and its NUL, then zeros.
    name: [u8; NAME_MAX + 1],
}

impl DirEntry {
    /// The name, without the directory.
    pub fn name(&self) -> &CStr {
        // The array always holds a NUL after the name.
        CStr::from_bytes_until_nul(&self.name).unwrap_or_default()
    }

    /// The name's bytes, without the NUL.
    pub fn name_bytes(&self) -> &[u8] {
        &self.name[..usize::from(self.len)]
    }

    /// `d_type`: one of the `DT_*` constants (`DT_UNKNOWN` when the host
    /// filesystem does not say).
    pub fn file_type(&self) -> u8 {
        self.file_type
    }

    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// True if `d_type` says directory.
    pub fn is_dir(&self) -> bool {
        self.file_type == DT_DIR
    }

    /// True if `d_type` says regular file.
    pub fn is_file(&self) -> bool {
        self.file_type == DT_REG
    }
}

impl fmt::Debug for DirEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirEntry")
            .field("name", &self.name())
            .field("file_type", &self.file_type)
            .field("ino", &self.ino)
            .finish()
    }
}

/// Iterator over a directory's entries, `.` and `..` left out (as in std).
///
/// It owns the directory's descriptor and borrows the caller's buffer for
/// `getdents64` records, refilling it with another call whenever it runs
/// out, so any buffer that holds one record lists any directory: 280 bytes
/// fit the longest name; bigger buffers mean fewer exits. Each entry is
/// copied out of the buffer, which is why the iterator can refill it while
/// earlier entries are still in use. A too-small buffer gives `EINVAL`. The
/// iterator ends after the first error.
#[derive(Debug)]
pub struct ReadDir<'buf> {
    dir: File,
    buf: &'buf mut [u8],
    pos: usize,
    filled: usize,
    done: bool,
}

/// Opens the directory at `path` for iteration, with `buf` as the
/// `getdents64` buffer (see [`ReadDir`]).
pub fn read_dir<'buf>(path: &CStr, buf: &'buf mut [u8]) -> Result<ReadDir<'buf>> {
    let dir = OpenOptions::new().read(true).directory(true).open(path)?;
    Ok(ReadDir::new(dir, buf))
}

impl<'buf> ReadDir<'buf> {
    /// Iterates over an already open directory, from its current position.
    pub fn new(dir: File, buf: &'buf mut [u8]) -> Self {
        ReadDir {
            dir,
            buf,
            pos: 0,
            filled: 0,
            done: false,
        }
    }

    fn fail(&mut self, errno: Errno) -> Option<Result<DirEntry>> {
        self.done = true;
        Some(Err(errno))
    }
}

impl Iterator for ReadDir<'_> {
    type Item = Result<DirEntry>;

    fn next(&mut self) -> Option<Result<DirEntry>> {
        const NAME: usize = sys::DIRENT64_NAME_OFFSET;
        loop {
            if self.done {
                return None;
            }
            if self.pos >= self.filled {
                let fd = self.dir.as_raw_fd();
                // SAFETY: the buffer is valid for writes of its length.
                let ret = unsafe { sys::getdents64(fd, self.buf.as_mut_ptr(), self.buf.len()) };
                match check(ret) {
                    Err(e) => return self.fail(e),
                    Ok(0) => {
                        self.done = true;
                        return None;
                    }
                    Ok(n) => {
                        self.pos = 0;
                        self.filled = (n as usize).min(self.buf.len());
                    }
                }
            }
            let record = &self.buf[self.pos..self.filled];
            if record.len() <= NAME {
                return self.fail(Errno::EIO);
            }
            let reclen = usize::from(u16::from_ne_bytes([record[16], record[17]]));
            if reclen <= NAME || reclen > record.len() {
                return self.fail(Errno::EIO);
            }
            let field = &record[NAME..reclen];
            let Some(len) = field.iter().position(|&b| b == 0) else {
                return self.fail(Errno::EIO);
            };
            let mut ino = [0u8; 8];
            ino.copy_from_slice(&record[..8]);
            let file_type = record[18];
            let name = &field[..len];
            self.pos += reclen;
            if name == b"." || name == b".." {
                continue;
            }
            if len > NAME_MAX {
                return Some(Err(Errno::ENAMETOOLONG));
            }
            let mut entry = DirEntry {
                ino: u64::from_ne_bytes(ino),
                file_type,
                len: len as u8,
                name: [0; NAME_MAX + 1],
            };
            entry.name[..len].copy_from_slice(name);
            return Some(Ok(entry));
        }
    }
}

impl core::iter::FusedIterator for ReadDir<'_> {}
