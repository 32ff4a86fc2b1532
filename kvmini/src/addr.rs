//! Guest addresses as two distinct types: a guest virtual address
//! ([`Gva`]), what guest code hands kvmini and the page walk translates,
//! and a guest physical address ([`Gpa`]), an offset into guest memory.
//! One cannot be passed for the other, and arithmetic on either is
//! checked.

use std::fmt;

macro_rules! guest_address {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);

        impl $name {
            /// The address `addr`.
            pub const fn new(addr: u64) -> Self {
                $name(addr)
            }

            /// The address as a number.
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// The address `n` bytes further on; `None` past 2^64 - 1.
            pub const fn checked_add(self, n: u64) -> Option<Self> {
                match self.0.checked_add(n) {
                    Some(addr) => Some($name(addr)),
                    None => None,
                }
            }

            /// Bytes from `base` up to this address; `None` if it lies
            /// below `base`.
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

guest_address!(
    /// A guest virtual address: what guest code sees, translated through
    /// the guest's page tables (or equal to the physical address when
    /// paging is off).
    Gva
);

guest_address!(
    /// A guest physical address: an offset into guest memory.
    Gpa
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_checked_and_formatting_is_hex() {
        let top = Gva::new(u64::MAX - 1);
        assert_eq!(top.checked_add(1), Some(Gva::new(u64::MAX)));
        assert_eq!(top.checked_add(2), None);
        assert_eq!(Gpa::new(0x1000).offset_from(Gpa::new(0xF00)), Some(0x100));
        assert_eq!(Gpa::new(0xF00).offset_from(Gpa::new(0x1000)), None);
        assert_eq!(
            format!("{:#x} {}", Gva::new(0xAB), Gpa::new(0x10)),
            "0xab 0x10"
        );
        assert_eq!(Gva::new(7).raw(), 7);
    }
}
