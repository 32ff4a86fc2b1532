//! Reads that go through kvmini's scratch buffer (a reader's stdin, a
//! directory listing): the guest buffer is checked first, so that a bad
//! one consumes nothing, and filled after.

use kvmini_abi::fs::IoArgs;

use super::{CallResult, GETDENTS_MAX};
use crate::addr::Gva;
use crate::errno::Errno;
use crate::view::GuestView;

/// Checks that the whole guest buffer of a read is writable memory before
/// anything is read (so that a bad one moves no position and consumes no
/// input), and sizes `scratch` to what one read takes.
pub(super) fn prepare_read(
    view: &GuestView<'_>,
    args: &IoArgs,
    pieces: &mut Vec<(u64, u64)>,
    scratch: &mut Vec<u8>,
) -> Result<(), Errno> {
    view.pieces(Gva::new(args.buf), args.len, true, pieces)
        .map_err(|_| Errno::EFAULT)?;
    let len = usize::try_from(args.len)
        .unwrap_or(usize::MAX)
        .min(GETDENTS_MAX);
    scratch.resize(len, 0);
    Ok(())
}

/// Copies what a read got into the guest buffer checked by
/// [`prepare_read`]; the call's result is its length.
pub(super) fn copy_out(view: &GuestView<'_>, args: &IoArgs, data: &[u8]) -> CallResult {
    view.write_bytes(Gva::new(args.buf), data)
        .map_err(|_| Errno::EFAULT)?;
    i64::try_from(data.len()).map_err(|_| Errno::EINVAL)
}
