//! Files: [`File`], [`OpenOptions`], [`Metadata`] and the calls on one
//! path.

use core::ffi::CStr;
use core::fmt;

use super::sys::{
    self, Stat, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_RDONLY, O_RDWR, O_TRUNC,
    O_WRONLY, SEEK_CUR, SEEK_END, SEEK_SET, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
};
use super::{ptr, to_len, to_offset};
use crate::{check, Errno, Result};

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
        Ok(to_len(n))
    }

    /// Writes up to `buf.len()` bytes; returns how many were written.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize> {
        let n = check(sys::write(self.fd, buf.as_ptr(), buf.len()))?;
        Ok(to_len(n))
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
        Ok(to_len(n))
    }

    /// Writes up to `buf.len()` bytes at `offset` (`pwrite`), leaving the
    /// file offset alone.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        let offset = to_offset(offset)?;
        let n = check(sys::pwrite(self.fd, buf.as_ptr(), buf.len(), offset))?;
        Ok(to_len(n))
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

/// The options that are on or off, one setter each:
/// `pub fn NAME(&mut self, on: bool) -> &mut Self` sets the field `NAME`.
macro_rules! switches {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&mut self, on: bool) -> &mut Self {
                self.$name = on;
                self
            }
        )*
    };
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

    switches! {
        /// Open for reading.
        read;
        /// Open for writing.
        write;
        /// Open for writing at the end only (`O_APPEND`); implies write access.
        append;
        /// Truncate to length 0 (`O_TRUNC`).
        truncate;
        /// Create the file if it is missing (`O_CREAT`).
        create;
        /// Create the file, failing with `EEXIST` if it exists
        /// (`O_CREAT | O_EXCL`); `create` and `truncate` are then ignored.
        create_new;
        /// Fail with `ENOTDIR` unless the path is a directory (`O_DIRECTORY`).
        directory;
        /// Fail with `ELOOP` if the last component is a symlink (`O_NOFOLLOW`).
        nofollow;
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
        let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
        Ok(File { fd })
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
        u64::from_ne_bytes(self.0.st_size.to_ne_bytes())
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

/// Removes a file (`unlink`).
pub fn remove_file(path: &CStr) -> Result<()> {
    check(sys::unlink(ptr(path))).map(|_| ())
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
