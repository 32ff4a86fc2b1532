//! Calls that reach the program embedding kvmini: host functions and the
//! guest's arguments.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Number of integer arguments of a host function call.
pub const HOST_CALL_ARGS: usize = 6;

/// A call to host function `id` with up to six integer arguments (which may
/// be guest addresses the host function reads or writes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HostCallArgs {
    /// IN: the function's id, as the host registered it.
    pub id: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// IN: the arguments.
    pub args: [u64; HOST_CALL_ARGS],
    /// OUT: the function's result (>= 0), or -errno; -ENOSYS when no
    /// function has that id.
    pub result: i64,
}

/// The guest's arguments (argv), as NUL-terminated strings one after the
/// other. kvmini copies them only if all of them fit in `len` bytes; the
/// result is always the size they need, so a guest can ask with `len` 0
/// first.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArgvArgs {
    /// IN: address of the buffer.
    pub buf: u64,
    /// IN: its length.
    pub len: u64,
    /// OUT: bytes the arguments need (>= 0), or -errno.
    pub result: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn blocks_have_the_documented_layout() {
        assert_eq!(size_of::<HostCallArgs>(), 64);
        assert_eq!(size_of::<ArgvArgs>(), 24);
    }
}
