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

use crate::{Errno, Result};

mod dir;
mod file;
pub mod sys;

pub use dir::{
    create_dir, create_dir_with_mode, read_dir, remove_dir, DirEntry, ReadDir, NAME_MAX,
};
pub use file::{metadata, read, remove_file, rename, write, File, Metadata, OpenOptions, SeekFrom};

fn to_offset(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Errno::EINVAL)
}

/// A byte count kvmini returned, which is at most the length of a
/// buffer in this address space.
fn to_len(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn ptr(path: &CStr) -> *const u8 {
    path.as_ptr().cast()
}
