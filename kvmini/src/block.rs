//! The argument-block protocol that every hypercall with a block follows
//! (the filesystem calls, host calls, argv and batches): read the block,
//! check that its result field is writable, run the call, write the result
//! back. A block that cannot be used means the call does not run; the run
//! loop then puts -EFAULT in RAX, the one place left to say so.

use zerocopy::{FromBytes, IntoBytes};

use crate::addr::Gva;
use crate::view::GuestView;

/// An argument block that is not readable and writable guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the argument block is not writable guest memory")]
pub struct Unusable;

/// Runs `call` on the block `T` at guest virtual `block`, whose `i64`
/// result lies `result_offset` bytes into it, and writes its result back:
/// the result, or [`Unusable`] when the block could not be read or its
/// result written (then `call` did not run, or its result is lost).
pub fn serve<T: FromBytes + IntoBytes>(
    view: &GuestView<'_>,
    block: u64,
    result_offset: usize,
    call: impl FnOnce(&T) -> i64,
) -> Result<i64, Unusable> {
    // A result that cannot be written back means no call.
    let (args, at) = view
        .read_block::<T>(Gva::new(block), result_offset)
        .map_err(|_| Unusable)?;
    let result = call(&args);
    view.write_obj(at, result).map_err(|_| Unusable)?;
    Ok(result)
}
