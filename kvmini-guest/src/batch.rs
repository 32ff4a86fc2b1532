//! Batches: several filesystem or host calls made in one exit.
//!
//! An exit costs far more than a small call's work (docs/performance.md has
//! the cost of one on nested KVM), so a guest making many small calls is
//! bound by exits, not by work. A [`Batch`] collects calls (each with its
//! usual argument block, owned by the caller) and [`Batch::submit`] makes
//! one exit; afterwards each block holds its own `result`, exactly as if
//! the call had been made alone.
//!
//! ```ignore
//! use kvmini_guest::batch::Batch;
//! use kvmini_guest::fs::sys::IoArgs;
//! let mut blocks = [IoArgs::default(); 64];
//! let mut batch = Batch::<64>::new();
//! for block in blocks.iter_mut() {
//!     batch.write(block, fd, b"line\n")?;
//! }
//! let ran = batch.submit(false)?;
//! // blocks[i].result: bytes written by call i, or -errno.
//! ```

use core::marker::PhantomData;
use core::ptr::addr_of;

use kvmini_abi::batch::{BatchArgs, BatchEntry, BATCH_STOP_ON_ERROR};
use kvmini_abi::fs::{FdArgs, IoArgs, OpenArgs, PathArgs, RenameArgs, SeekArgs, TruncateArgs};
use kvmini_abi::host::HostCallArgs;
use kvmini_abi::Port;

use crate::Errno;

/// An argument block a batch entry may point to.
pub trait Block: sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! blocks {
    ($($ty:ty),*) => {$(
        impl sealed::Sealed for $ty {}
        impl Block for $ty {}
    )*};
}
blocks!(
    OpenArgs,
    FdArgs,
    IoArgs,
    SeekArgs,
    TruncateArgs,
    PathArgs,
    RenameArgs,
    kvmini_abi::fs::StatArgs,
    HostCallArgs
);

/// Up to `N` calls, submitted together. The blocks are borrowed until the
/// batch is submitted or dropped.
pub struct Batch<'a, const N: usize> {
    entries: [BatchEntry; N],
    len: usize,
    blocks: PhantomData<&'a mut ()>,
}

impl<const N: usize> Default for Batch<'_, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, const N: usize> Batch<'a, N> {
    /// An empty batch.
    pub const fn new() -> Self {
        Batch {
            entries: [BatchEntry {
                port: 0,
                reserved: [0; 3],
                block: 0,
            }; N],
            len: 0,
            blocks: PhantomData,
        }
    }

    /// Calls in the batch so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no call has been added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the call on `port` whose argument block is `block`; its result
    /// will be in `block.result`. EINVAL when the batch is full.
    pub fn push<T: Block>(&mut self, port: Port, block: &'a mut T) -> Result<(), Errno> {
        let entry = self.entries.get_mut(self.len).ok_or(Errno::EINVAL)?;
        *entry = BatchEntry {
            port: port as u16,
            reserved: [0; 3],
            block: block as *mut T as usize as u64,
        };
        self.len += 1;
        Ok(())
    }

    /// Adds `write(fd, data)`, using `block` for its arguments and result.
    pub fn write(&mut self, block: &'a mut IoArgs, fd: i32, data: &'a [u8]) -> Result<(), Errno> {
        *block = IoArgs {
            fd,
            buf: data.as_ptr() as usize as u64,
            len: data.len() as u64,
            result: -i64::from(Errno::ENOSYS.0),
            ..IoArgs::default()
        };
        self.push(Port::Write, block)
    }

    /// Adds `pwrite(fd, data, offset)`.
    pub fn pwrite(
        &mut self,
        block: &'a mut IoArgs,
        fd: i32,
        data: &'a [u8],
        offset: u64,
    ) -> Result<(), Errno> {
        *block = IoArgs {
            fd,
            buf: data.as_ptr() as usize as u64,
            len: data.len() as u64,
            offset: i64::try_from(offset).map_err(|_| Errno::EINVAL)?,
            result: -i64::from(Errno::ENOSYS.0),
            ..IoArgs::default()
        };
        self.push(Port::Pwrite, block)
    }

    /// Makes every call in one exit. Returns how many ran (with
    /// `stop_on_error`, up to and including the first that failed), or the
    /// batch's own error (nothing ran).
    pub fn submit(self, stop_on_error: bool) -> Result<usize, Errno> {
        let mut args = BatchArgs {
            entries: self.entries.as_ptr() as usize as u64,
            count: u32::try_from(self.len).map_err(|_| Errno::EINVAL)?,
            flags: if stop_on_error {
                BATCH_STOP_ON_ERROR
            } else {
                0
            },
            result: -i64::from(Errno::ENOSYS.0),
        };
        let address = &mut args as *mut BatchArgs as usize as u64;
        // SAFETY: kvmini reads the entries and the blocks they point to
        // (all borrowed mutably for 'a) and writes their results.
        let status = unsafe { crate::hypercall::block_call(Port::Batch, address) };
        let result = if status < 0 {
            status
        } else {
            // SAFETY: a reference is valid for reads; volatile because
            // kvmini wrote it behind the compiler's back.
            unsafe { addr_of!(args.result).read_volatile() }
        };
        crate::check(result).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }
}
