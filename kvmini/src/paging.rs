//! x86 page tables: the identity map kvmini builds for a guest, and the
//! walker that translates a guest virtual address through whatever tables
//! the guest has in CR3 at the time of a hypercall.

use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use crate::layout::{Layout, PAGE_SIZE};
use crate::memory::GuestMemory;

/// Present.
pub const PTE_P: u64 = 1 << 0;
/// Writable.
pub const PTE_RW: u64 = 1 << 1;
/// Accessible from ring 3.
pub const PTE_US: u64 = 1 << 2;
/// Large page (2 MiB in a PD, 1 GiB in a PDPT).
pub const PTE_PS: u64 = 1 << 7;
/// Physical address bits 12..51 of a table or 4 KiB page entry.
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

const SIZE_2M: u64 = 2 << 20;
const SIZE_1G: u64 = 1 << 30;
const ENTRIES: u64 = 512;

/// Errors of building or walking page tables.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PagingError {
    /// The address is not canonical (bits 48..63 are not copies of bit 47).
    #[error("address {0:#x} is not canonical")]
    NonCanonical(u64),
    /// A table entry on the way has its present bit clear.
    #[error("address {gva:#x} is not mapped (level {level} entry not present)")]
    NotPresent {
        /// The address being translated.
        gva: u64,
        /// Table level of the entry (4 = PML4 .. 1 = PT).
        level: u8,
    },
    /// A table (or CR3) points outside guest memory.
    #[error("address {gva:#x}: page table at {table:#x} is outside guest memory")]
    TableOutsideMemory {
        /// The address being translated.
        gva: u64,
        /// Guest physical address of the bad table entry.
        table: u64,
    },
    /// The page exists but ring 3 may not touch it.
    #[error("address {0:#x} is not accessible from ring 3")]
    NotUser(u64),
    /// The page exists but is read-only.
    #[error("address {0:#x} is read-only")]
    NotWritable(u64),
}

/// How the guest's CPU translates addresses, read from its control registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// CR0.PG clear: virtual == physical.
    Disabled,
    /// Long mode, 4-level tables.
    Long,
}

impl PagingMode {
    /// Reads the paging mode from CR0 and EFER.
    pub fn from_registers(cr0: u64, efer: u64) -> Self {
        const CR0_PG: u64 = 1 << 31;
        const EFER_LMA: u64 = 1 << 10;
        if cr0 & CR0_PG == 0 {
            PagingMode::Disabled
        } else if efer & EFER_LMA != 0 {
            PagingMode::Long
        } else {
            // kvmini sets up only long mode; a guest that leaves it is
            // translated as unpaged, which at worst gives it EFAULT.
            PagingMode::Disabled
        }
    }
}

/// The result of one translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Guest physical address.
    pub gpa: u64,
    /// Bytes from `gpa` to the end of its page.
    pub len_in_page: u64,
    /// Every level allows ring 3.
    pub user: bool,
    /// Every level allows writes.
    pub writable: bool,
}

/// What kind of access a translation is for; checked against the entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The access is made on behalf of ring-3 code.
    pub user: bool,
    /// The access writes.
    pub write: bool,
}

/// Translates `gva` through the tables rooted at `cr3`, checking `access`.
pub fn translate(
    mem: &GuestMemory,
    mode: PagingMode,
    cr3: u64,
    gva: u64,
    access: Access,
) -> Result<Translation, PagingError> {
    let t = match mode {
        PagingMode::Disabled => Translation {
            gpa: gva,
            len_in_page: PAGE_SIZE - (gva & (PAGE_SIZE - 1)),
            user: true,
            writable: true,
        },
        PagingMode::Long => walk_long(mem, cr3, gva)?,
    };
    if access.user && !t.user {
        return Err(PagingError::NotUser(gva));
    }
    if access.write && !t.writable {
        return Err(PagingError::NotWritable(gva));
    }
    Ok(t)
}

fn walk_long(mem: &GuestMemory, cr3: u64, gva: u64) -> Result<Translation, PagingError> {
    // Bits 63..47 must all equal bit 47.
    let top = gva >> 47;
    if top != 0 && top != 0x1_FFFF {
        return Err(PagingError::NonCanonical(gva));
    }
    let mut table = cr3 & ADDR_MASK;
    let mut user = true;
    let mut writable = true;
    for level in (1..=4u8).rev() {
        let shift = 12 + 9 * u32::from(level - 1);
        let index = (gva >> shift) & (ENTRIES - 1);
        let entry_addr = table + index * 8;
        let entry =
            mem.read_obj::<u64>(GuestAddress(entry_addr))
                .map_err(|_: GuestMemoryError| PagingError::TableOutsideMemory {
                    gva,
                    table: entry_addr,
                })?;
        if entry & PTE_P == 0 {
            return Err(PagingError::NotPresent { gva, level });
        }
        user &= entry & PTE_US != 0;
        writable &= entry & PTE_RW != 0;
        let leaf = level == 1 || ((level == 2 || level == 3) && entry & PTE_PS != 0);
        if leaf {
            let page_size = 1u64 << shift;
            let offset = gva & (page_size - 1);
            let base = entry & ADDR_MASK & !(page_size - 1);
            return Ok(Translation {
                gpa: base + offset,
                len_in_page: page_size - offset,
                user,
                writable,
            });
        }
        table = entry & ADDR_MASK;
    }
    unreachable!("level 1 is always a leaf")
}

/// Builds the identity map of all guest memory: 2 MiB pages, except 4 KiB
/// pages in the first 2 MiB (to leave the null page unmapped when
/// `map_null_page` is false) and in the last 2 MiB (kvmini's own area is
/// supervisor-only, so a ring-3 guest can neither read nor write it).
pub fn build_identity_map(
    mem: &GuestMemory,
    layout: &Layout,
    map_null_page: bool,
) -> Result<(), GuestMemoryError> {
    let write = |addr: u64, value: u64| mem.write_obj(value, GuestAddress(addr));
    let table_flags = PTE_P | PTE_RW | PTE_US;
    write(layout.pml4(), layout.pdpt() | table_flags)?;
    let regions = layout.mem_size / SIZE_2M;
    let gibs = layout.mem_size.div_ceil(SIZE_1G);
    for gib in 0..gibs {
        write(layout.pdpt() + gib * 8, layout.pd(gib) | table_flags)?;
    }
    let page_flags = |gpa: u64| -> u64 {
        if gpa < PAGE_SIZE && !map_null_page {
            0
        } else if gpa >= layout.system_base {
            PTE_P | PTE_RW
        } else {
            PTE_P | PTE_RW | PTE_US
        }
    };
    for region in 0..regions {
        let base = region * SIZE_2M;
        let pde_addr = layout.pd(region / ENTRIES) + (region % ENTRIES) * 8;
        let first = page_flags(base);
        let uniform = (0..ENTRIES).all(|i| page_flags(base + i * PAGE_SIZE) == first);
        if uniform {
            write(pde_addr, base | first | PTE_PS)?;
            continue;
        }
        let pt = if region == 0 {
            layout.pt_low()
        } else {
            layout.pt_high()
        };
        for i in 0..ENTRIES {
            let gpa = base + i * PAGE_SIZE;
            let flags = page_flags(gpa);
            write(pt + i * 8, if flags == 0 { 0 } else { gpa | flags })?;
        }
        write(pde_addr, pt | table_flags)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory;

    const USER_READ: Access = Access {
        user: true,
        write: false,
    };

    fn mem(size: u64) -> GuestMemory {
        memory::allocate(size).unwrap()
    }

    fn put(mem: &GuestMemory, addr: u64, value: u64) {
        mem.write_obj(value, GuestAddress(addr)).unwrap();
    }

    #[test]
    fn identity_map_translates_every_page_to_itself() {
        for size in [2 << 20, 6 << 20, 1 << 30, (1 << 30) + (2 << 20)] {
            let m = mem(size);
            let layout = Layout::new(size);
            build_identity_map(&m, &layout, false).unwrap();
            let user_pages = [
                0x1000,
                0x10_0000,
                0x1F_FFFF,
                layout.system_base - 1,
                size / 2,
            ];
            for gva in user_pages.into_iter().filter(|&a| a < layout.system_base) {
                let t = translate(&m, PagingMode::Long, layout.pml4(), gva, USER_READ).unwrap();
                assert_eq!(t.gpa, gva, "size {size:#x} gva {gva:#x}");
            }
        }
    }

    #[test]
    fn null_page_is_unmapped_and_system_area_is_supervisor_only() {
        let size = 8 << 20;
        let m = mem(size);
        let layout = Layout::new(size);
        build_identity_map(&m, &layout, false).unwrap();
        let walk = |gva, access| translate(&m, PagingMode::Long, layout.pml4(), gva, access);
        assert_eq!(
            walk(0x10, USER_READ),
            Err(PagingError::NotPresent {
                gva: 0x10,
                level: 1
            })
        );
        assert_eq!(
            walk(layout.gdt(), USER_READ),
            Err(PagingError::NotUser(layout.gdt()))
        );
        let kernel = Access {
            user: false,
            write: true,
        };
        assert_eq!(walk(layout.gdt(), kernel).unwrap().gpa, layout.gdt());
        // The null page is mapped for flat images.
        build_identity_map(&m, &layout, true).unwrap();
        assert_eq!(walk(0x10, USER_READ).unwrap().gpa, 0x10);
    }

    #[test]
    fn one_gib_two_mib_and_four_kib_pages() {
        let m = mem(4 << 20);
        let (pml4, pdpt, pd, pt) = (0x1000, 0x2000, 0x3000, 0x4000);
        put(&m, pml4, pdpt | PTE_P | PTE_RW | PTE_US);
        // PDPT[1]: a 1 GiB page at physical 0.
        put(&m, pdpt + 8, PTE_P | PTE_US | PTE_PS);
        // PDPT[0] -> PD; PD[0] -> 2 MiB page at 0x200000; PD[1] -> PT.
        put(&m, pdpt, pd | PTE_P | PTE_RW | PTE_US);
        put(&m, pd, 0x20_0000 | PTE_P | PTE_RW | PTE_US | PTE_PS);
        put(&m, pd + 8, pt | PTE_P | PTE_RW | PTE_US);
        // PT[3]: virtual 0x203000 -> physical 0x7000, read-only.
        put(&m, pt + 3 * 8, 0x7000 | PTE_P | PTE_US);
        let walk = |gva| translate(&m, PagingMode::Long, pml4, gva, USER_READ).unwrap();
        let one_gib = walk((1 << 30) + 0x1234);
        assert_eq!(
            (one_gib.gpa, one_gib.len_in_page),
            (0x1234, (1 << 30) - 0x1234)
        );
        assert!(!one_gib.writable);
        let two_mib = walk(0x1F_FFF0);
        assert_eq!((two_mib.gpa, two_mib.len_in_page), (0x3F_FFF0, 0x10));
        let four_kib = walk(0x20_3008);
        assert_eq!((four_kib.gpa, four_kib.len_in_page), (0x7008, 0xFF8));
        let write = Access {
            user: true,
            write: true,
        };
        assert_eq!(
            translate(&m, PagingMode::Long, pml4, 0x20_3008, write),
            Err(PagingError::NotWritable(0x20_3008))
        );
    }

    #[test]
    fn tables_outside_memory_and_bad_addresses_are_errors() {
        let m = mem(2 << 20);
        // CR3 beyond guest memory.
        assert!(matches!(
            translate(&m, PagingMode::Long, 1 << 40, 0x1000, USER_READ),
            Err(PagingError::TableOutsideMemory { .. })
        ));
        // An entry pointing to a table beyond guest memory.
        put(&m, 0x1000, (3 << 30) | PTE_P | PTE_US);
        assert_eq!(
            translate(&m, PagingMode::Long, 0x1000, 0x1000, USER_READ),
            Err(PagingError::TableOutsideMemory {
                gva: 0x1000,
                table: 3 << 30
            })
        );
        for gva in [
            0x0000_8000_0000_0000,
            0x1234_0000_0000_0000,
            u64::MAX - 0xFFFF_FFFF_FFFF,
        ] {
            assert_eq!(
                translate(&m, PagingMode::Long, 0x1000, gva, USER_READ),
                Err(PagingError::NonCanonical(gva))
            );
        }
        // The top of the canonical range is walked, not rejected.
        assert!(matches!(
            translate(&m, PagingMode::Long, 0x1000, u64::MAX, USER_READ),
            Err(PagingError::NotPresent { level: 4, .. })
        ));
    }

    #[test]
    fn a_table_that_points_at_itself_terminates() {
        let m = mem(2 << 20);
        // Every level is the same page: PML4[0] -> PML4, so the walk reads the
        // same table four times and lands on the table itself.
        put(&m, 0x1000, 0x1000 | PTE_P | PTE_RW | PTE_US);
        let t = translate(&m, PagingMode::Long, 0x1000, 0x123, USER_READ).unwrap();
        assert_eq!(t.gpa, 0x1123);
    }

    #[test]
    fn unpaged_mode_is_identity() {
        let m = mem(2 << 20);
        let t = translate(&m, PagingMode::Disabled, 0, 0x1FFF, USER_READ).unwrap();
        assert_eq!((t.gpa, t.len_in_page), (0x1FFF, 1));
    }
}
