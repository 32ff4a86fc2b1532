//! The guest's arguments (argv), from the `argv` hypercall (port `0x0421`).
//!
//! kvmini copies the arguments into a buffer the guest provides, as
//! NUL-terminated strings one after the other, and only if all of them
//! fit; either way it returns the size they need. `kvmini run GUEST -- a b`
//! gives `GUEST` (the path as given), `a` and `b`; an embedding program
//! sets them with `SandboxBuilder::args` (none by default).
//!
//! ```ignore
//! use kvmini_guest::env;
//!
//! let mut buf = [0u8; 1024];
//! for arg in env::args(&mut buf)? {
//!     kvmini_guest::println!("{arg:?}");
//! }
//! ```

use core::ffi::CStr;
use core::iter::FusedIterator;
use core::ptr::addr_of;

use kvmini_abi::errno::ENOSYS;
use kvmini_abi::host::ArgvArgs;
use kvmini_abi::Port;

use crate::{check, Errno};

/// `ERANGE` (34): the buffer is too small for the arguments;
/// [`args_len`] says how large it must be.
pub const ERANGE: Errno = Errno(kvmini_abi::errno::ERANGE);

/// The `argv` hypercall: copies the arguments to `buf` if they fit in
/// `len` bytes; the bytes they need, or `-errno`.
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes.
unsafe fn argv_raw(buf: *mut u8, len: usize) -> i64 {
    let mut block = ArgvArgs {
        buf: buf as usize as u64,
        len: len as u64,
        result: -i64::from(ENOSYS),
    };
    let address = &mut block as *mut ArgvArgs as usize as u64;
    // SAFETY: kvmini reads the block, writes its `result` and at most `len`
    // bytes at `buf`, which the caller vouches for.
    let status = unsafe { crate::hypercall::block_call(Port::Argv, address) };
    if status < 0 {
        return status;
    }
    // SAFETY: a field of a live local, read where kvmini wrote it.
    unsafe { addr_of!(block.result).read_volatile() }
}

/// The bytes the arguments need: each one and its NUL (0 without
/// arguments).
pub fn args_len() -> Result<usize, Errno> {
    // SAFETY: with length 0 kvmini writes nothing to the buffer.
    let need = check(unsafe { argv_raw(core::ptr::null_mut(), 0) })?;
    usize::try_from(need).map_err(|_| Errno::EOVERFLOW)
}

/// The arguments, copied into `buf`: [`ERANGE`] if they do not fit
/// ([`args_len`] gives the size needed).
pub fn args(buf: &mut [u8]) -> Result<Args<'_>, Errno> {
    // SAFETY: the slice is valid for writes of its length.
    let need = check(unsafe { argv_raw(buf.as_mut_ptr(), buf.len()) })?;
    let need = usize::try_from(need).map_err(|_| Errno::EOVERFLOW)?;
    match buf.get(..need) {
        Some(strings) => Ok(Args::new(strings)),
        None => Err(ERANGE),
    }
}

/// The number of arguments, with `buf` to copy them into (as for [`args`]).
pub fn argc(buf: &mut [u8]) -> Result<usize, Errno> {
    args(buf).map(|args| args.len())
}

/// Iterator over the arguments, as `&CStr`, borrowed from the buffer they
/// were copied into.
#[derive(Clone, Debug)]
pub struct Args<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Args<'a> {
    /// The arguments in `strings`: NUL-terminated strings one after the
    /// other, as the `argv` hypercall writes them (bytes after the last NUL
    /// are ignored).
    pub fn new(strings: &'a [u8]) -> Self {
        Args {
            rest: strings,
            left: strings.iter().filter(|&&b| b == 0).count(),
        }
    }
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a CStr;

    fn next(&mut self) -> Option<&'a CStr> {
        if self.left == 0 {
            return None;
        }
        let arg = CStr::from_bytes_until_nul(self.rest).ok()?;
        self.rest = &self.rest[arg.to_bytes_with_nul().len()..];
        self.left -= 1;
        Some(arg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Args<'_> {}

impl FusedIterator for Args<'_> {}
