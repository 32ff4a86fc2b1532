//! Host functions: calls into the program that embeds kvmini, which
//! registers them by id (`SandboxBuilder::host_function` on the host side).
//!
//! A call is one `out` of the address of a [`HostCallArgs`] block (port
//! `0x0420`), so one VM exit. It carries the function's id and six integer
//! arguments; unused ones are zero. Pointers travel as integers
//! ([`addr`]) and the host function reads or writes guest memory through
//! them, with the guest's own page tables and privileges: a bad pointer
//! gives the error the host function chooses, `EFAULT` for kvmini's own
//! accessors.
//!
//! ```ignore
//! use kvmini_guest::host;
//!
//! let key = b"name";
//! let mut value = [0u8; 64];
//! // get(key_ptr, key_len, out_ptr, out_len) -> the value's length
//! let len = host::call(2, &[
//!     host::addr(key.as_ptr()), key.len() as u64,
//!     host::addr(value.as_mut_ptr()), value.len() as u64,
//! ])?;
//! ```
//!
//! What a host function may do with guest memory is a contract between the
//! guest and the program that embeds it: pass a writable buffer (from a
//! `&mut`) wherever the host function writes, never memory the guest holds
//! shared references to.

use core::ptr::addr_of;

use kvmini_abi::errno::{EINVAL, ENOSYS};
pub use kvmini_abi::host::{HostCallArgs, HOST_CALL_ARGS};
use kvmini_abi::Port;

use crate::{check, Errno};

/// A pointer as a host function argument. Guest memory lies below 4 GiB,
/// identity-mapped, so the guest virtual address is also what the host
/// function resolves.
pub fn addr<T: ?Sized>(ptr: *const T) -> u64 {
    ptr.cast::<u8>() as usize as u64
}

/// Calls host function `id` with up to [`HOST_CALL_ARGS`] (six) arguments;
/// missing ones are zero. Returns what kvmini wrote into the block: the
/// function's value (`>= 0`), or `-errno`: `-ENOSYS` when no function has
/// this id, `-EOVERFLOW` when it returned more than `i64::MAX`, and
/// `-EINVAL` (without calling) for more than six arguments.
pub fn call_raw(id: u32, args: &[u64]) -> i64 {
    if args.len() > HOST_CALL_ARGS {
        return -i64::from(EINVAL);
    }
    let mut block = HostCallArgs {
        id,
        reserved: 0,
        args: [0; HOST_CALL_ARGS],
        result: -i64::from(ENOSYS),
    };
    block.args[..args.len()].copy_from_slice(args);
    let address = &mut block as *mut HostCallArgs as usize as u64;
    // SAFETY: kvmini reads the block and writes its `result`; the host
    // function touches only the guest memory whose addresses the caller
    // passed (see the module's notes).
    let status = unsafe { crate::hypercall::block_call(Port::HostCall, address) };
    if status < 0 {
        return status;
    }
    // SAFETY: a field of a live local, read where kvmini wrote it.
    unsafe { addr_of!(block.result).read_volatile() }
}

/// Calls host function `id` with up to six arguments (missing ones are
/// zero): the function's value, or the errno it (or kvmini) returned.
/// See [`call_raw`] for the errors kvmini itself gives.
pub fn call(id: u32, args: &[u64]) -> Result<u64, Errno> {
    check(call_raw(id, args))
}
