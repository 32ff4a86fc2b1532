//! Batched calls: several filesystem or host calls, each with its usual
//! argument block, made in one exit. An exit costs far more than a small
//! call's work (docs/performance.md has the cost of one on nested KVM), so
//! a guest making many small calls is bound by exits, not by work.
//!
//! The guest fills an array of [`BatchEntry`] (port and block address of
//! each call), then `out`s the address of a [`BatchArgs`]. kvmini checks
//! every entry first (an entry whose port cannot be batched fails the whole
//! batch with -EINVAL, and nothing runs), then runs them in order, writing
//! each call's `result` into its own block exactly as the unbatched call
//! would. With [`BATCH_STOP_ON_ERROR`], the first call with a negative
//! result ends the batch (like io_uring's linked requests).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Stop at the first call whose result is negative.
pub const BATCH_STOP_ON_ERROR: u32 = 1;
/// Most entries in one batch.
pub const BATCH_MAX: u32 = 4096;

/// One call of a batch.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BatchEntry {
    /// IN: the call's port (a filesystem port, host call or argv).
    pub port: u16,
    /// Reserved, zero.
    pub reserved: [u16; 3],
    /// IN: guest address of the call's argument block.
    pub block: u64,
}

/// A batch of calls.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BatchArgs {
    /// IN: guest address of the `BatchEntry` array.
    pub entries: u64,
    /// IN: number of entries (at most [`BATCH_MAX`]).
    pub count: u32,
    /// IN: [`BATCH_STOP_ON_ERROR`] or 0.
    pub flags: u32,
    /// OUT: number of calls run (with stop-on-error, the failing call
    /// included), or -errno if the batch itself is bad.
    pub result: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn blocks_have_the_documented_layout() {
        assert_eq!(size_of::<BatchEntry>(), 16);
        assert_eq!(size_of::<BatchArgs>(), 24);
    }
}
