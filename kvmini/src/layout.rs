//! The guest physical memory map: where kvmini puts the guest image, the
//! stack, and its own structures (page tables, GDT, IDT, TSS, exception
//! handlers).
//!
//! ```text
//!  0                     the null page: not mapped for ELF guests
//!  0xF0000..0x100000     a ring-3 ELF guest's sixteen spare page tables, for
//!                        2 MiB regions that need 4 KiB pages (segment
//!                        permissions), supervisor-only
//!  0x100000              ELF guests load here or above (flat images load at 0)
//!  ...                   guest memory, ring-3 accessible
//!  system_base - 1       top of the guest stack (RSP starts at system_base)
//!  system_base           kvmini's own 64 KiB, supervisor-only:
//!    +0x0000               PML4
//!    +0x1000               PDPT
//!    +0x2000..+0x6000      four page directories (one per GiB)
//!    +0x6000               page table for the first 2 MiB
//!    +0x7000               page table for the last 2 MiB
//!    +0x8000               GDT
//!    +0x8800               IDT
//!    +0x9000..+0xC000      TSS and its I/O permission bitmap
//!    +0xC000               exception handler code; +0x400 the ring-0
//!                          helper that changes page tables while a Linux
//!                          program runs, +0x800 its list of writes
//!    +0xD000..+0x10000     exception stack (IST1)
//!  mem_size              end of guest memory
//! ```

use kvmini_abi::layout::{ELF_LOAD_MIN, SYSTEM_AREA_SIZE};

/// Size of a small page.
pub const PAGE_SIZE: u64 = 0x1000;

/// How many page tables kvmini keeps for 2 MiB regions other than the
/// first and the last that need 4 KiB pages.
pub const SPARE_PAGE_TABLES: u64 = 16;

/// Where the spare page tables start: they end at
/// [`kvmini_abi::layout::ELF_LOAD_MIN`].
pub const SPARE_PAGE_TABLES_START: u64 = ELF_LOAD_MIN - SPARE_PAGE_TABLES * PAGE_SIZE;

/// The addresses of everything kvmini places in guest physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Guest memory size in bytes (a multiple of 2 MiB).
    pub mem_size: u64,
    /// First byte of kvmini's own area at the top of guest memory.
    pub system_base: u64,
}

impl Layout {
    /// The layout for `mem_size` bytes of guest memory (already validated by
    /// [`crate::memory::check_size`]).
    pub const fn new(mem_size: u64) -> Self {
        Layout {
            mem_size,
            system_base: mem_size - SYSTEM_AREA_SIZE,
        }
    }
    /// The top-level page table (CR3).
    pub const fn pml4(&self) -> u64 {
        self.system_base
    }
    /// The page-directory-pointer table.
    pub const fn pdpt(&self) -> u64 {
        self.system_base + 0x1000
    }
    /// The page directory for the `gib`-th GiB (0..4).
    pub const fn pd(&self, gib: u64) -> u64 {
        self.system_base + 0x2000 + gib * PAGE_SIZE
    }
    /// The page table that maps the first 2 MiB in 4 KiB pages.
    pub const fn pt_low(&self) -> u64 {
        self.system_base + 0x6000
    }
    /// The page table that maps the last 2 MiB in 4 KiB pages.
    pub const fn pt_high(&self) -> u64 {
        self.system_base + 0x7000
    }
    /// The global descriptor table.
    pub const fn gdt(&self) -> u64 {
        self.system_base + 0x8000
    }
    /// The interrupt descriptor table.
    pub const fn idt(&self) -> u64 {
        self.system_base + 0x8800
    }
    /// The task-state segment (ring-0 and IST stack pointers) followed by
    /// its I/O permission bitmap.
    pub const fn tss(&self) -> u64 {
        self.system_base + 0x9000
    }
    /// The exception handler stubs.
    pub const fn handlers(&self) -> u64 {
        self.system_base + 0xC000
    }
    /// Lowest address of the exception stack.
    pub const fn exception_stack_bottom(&self) -> u64 {
        self.system_base + 0xD000
    }
    /// Top of the exception stack (IST1 and RSP0).
    pub const fn exception_stack_top(&self) -> u64 {
        self.mem_size
    }
    /// The `n`-th spare page table (`n` < [`SPARE_PAGE_TABLES`]): in the
    /// free memory below where ELF images load, which only a ring-3 ELF
    /// guest's tables use (supervisor-only there).
    pub const fn spare_page_table(&self, n: u64) -> u64 {
        SPARE_PAGE_TABLES_START + n * PAGE_SIZE
    }
    /// Initial RSP of the guest: the stack grows down from kvmini's area.
    pub const fn stack_top(&self) -> u64 {
        self.system_base
    }
}

/// One region of the memory map.
#[derive(Clone, Debug)]
pub struct Region {
    /// What lives there.
    pub name: &'static str,
    /// First guest physical address.
    pub start: u64,
    /// End (exclusive).
    pub end: u64,
}
