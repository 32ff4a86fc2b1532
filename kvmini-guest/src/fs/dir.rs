//! Directories: creating and removing them, and listing them with
//! [`read_dir`].

use core::ffi::CStr;
use core::fmt;

use super::sys::{self, DT_DIR, DT_REG};
use super::{ptr, to_len, File, OpenOptions};
use crate::{check, Errno, Result};

/// Creates a directory with mode 0o755.
pub fn create_dir(path: &CStr) -> Result<()> {
    create_dir_with_mode(path, 0o755)
}

/// Creates a directory with the given permission bits.
pub fn create_dir_with_mode(path: &CStr, mode: u32) -> Result<()> {
    check(sys::mkdir(ptr(path), mode)).map(|_| ())
}

/// Removes an empty directory (`rmdir`).
pub fn remove_dir(path: &CStr) -> Result<()> {
    check(sys::rmdir(ptr(path))).map(|_| ())
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
                        self.filled = to_len(n).min(self.buf.len());
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
                // At most NAME_MAX, checked above.
                len: u8::try_from(len).unwrap_or(u8::MAX),
                name: [0; NAME_MAX + 1],
            };
            entry.name[..len].copy_from_slice(name);
            return Some(Ok(entry));
        }
    }
}

impl core::iter::FusedIterator for ReadDir<'_> {}
