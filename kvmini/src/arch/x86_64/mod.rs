//! x86 state in one place: the register bits ([`bits`]), the segment
//! descriptors ([`descriptor`]), the structures of a long-mode guest
//! ([`cpu`]), the CPU modes ([`modes`]), the boot state of every mode and
//! ring ([`boot`]) with the page tables kvmini builds ([`page_tables`])
//! and the bytes it writes ([`tables`]), the record of a ring-3 guest's
//! tables while it runs ([`live_tables`]) with the ring-0 helper that
//! changes them ([`table_helper`]), and the walker of the guest's own page
//! tables ([`paging`]). Nothing here talks to KVM.

pub mod bits;
pub mod boot;
pub mod cpu;
pub mod descriptor;
pub mod live_tables;
pub mod memory_map;
pub mod modes;
pub mod page_tables;
pub mod paging;
pub mod syscall;
pub mod table_helper;
pub mod tables;
