//! x86 state in one place: the register bits, the descriptors, the boot
//! state of every CPU mode and ring, the page tables kvmini builds, and
//! the walker of the guest's own page tables.

pub mod cpu;
pub mod modes;
pub mod paging;
