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
    /// A 32-bit paging mode was asked for an address of 4 GiB or more.
    #[error("address {0:#x} is beyond the 32-bit address space")]
    Beyond32Bits(u64),
}

/// How the guest's CPU translates addresses, read from its control registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// CR0.PG clear: virtual == physical.
    Disabled,
    /// Long mode, 4-level tables.
    Long,
    /// 32-bit paging without PAE (CR4.PAE clear): a page directory and
    /// page tables of 1024 4-byte entries, 4 KiB pages, and 4 MiB pages
    /// when `pse` (CR4.PSE) is set.
    Legacy32 {
        /// CR4.PSE: a directory entry with PS set maps a 4 MiB page
        /// (otherwise PS is ignored and the entry points at a page table).
        pse: bool,
    },
    /// 32-bit PAE paging (CR4.PAE set, EFER.LMA clear): a 4-entry PDPT,
    /// page directories and page tables of 512 8-byte entries, 4 KiB and
    /// 2 MiB pages.
    Pae32,
}

impl PagingMode {
    /// Reads the paging mode from CR0, CR4 and EFER.
    pub fn from_registers(cr0: u64, cr4: u64, efer: u64) -> Self {
        const CR0_PG: u64 = 1 << 31;
        const CR4_PSE: u64 = 1 << 4;
        const CR4_PAE: u64 = 1 << 5;
        const EFER_LMA: u64 = 1 << 10;
        if cr0 & CR0_PG == 0 {
            PagingMode::Disabled
        } else if efer & EFER_LMA != 0 {
            PagingMode::Long
        } else if cr4 & CR4_PAE != 0 {
            PagingMode::Pae32
        } else {
            PagingMode::Legacy32 {
                pse: cr4 & CR4_PSE != 0,
            }
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
        PagingMode::Legacy32 { pse } => walk_legacy32(mem, cr3, gva, pse)?,
        PagingMode::Pae32 => walk_pae32(mem, cr3, gva)?,
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

/// Reads the table entry at `entry_addr`, an `E` (`u32` or `u64`).
fn read_entry<E: vm_memory::ByteValued + Into<u64>>(
    mem: &GuestMemory,
    gva: u64,
    entry_addr: u64,
) -> Result<u64, PagingError> {
    mem.read_obj::<E>(GuestAddress(entry_addr))
        .map(Into::into)
        .map_err(|_: GuestMemoryError| PagingError::TableOutsideMemory {
            gva,
            table: entry_addr,
        })
}

/// The leaf of a walk: `page_size` bytes from `base`.
fn leaf(gva: u64, base: u64, page_size: u64, user: bool, writable: bool) -> Translation {
    let offset = gva & (page_size - 1);
    Translation {
        gpa: base + offset,
        len_in_page: page_size - offset,
        user,
        writable,
    }
}

/// 32-bit paging: CR3 bits 12..31 locate the page directory; address bits
/// 22..31 index it, bits 12..21 index the page table. A directory entry
/// with PS (and CR4.PSE) maps a 4 MiB page whose address bits 22..31 are
/// the entry's, and 32..39 its bits 13..20 (PSE-36).
fn walk_legacy32(
    mem: &GuestMemory,
    cr3: u64,
    gva: u64,
    pse: bool,
) -> Result<Translation, PagingError> {
    if gva > u64::from(u32::MAX) {
        return Err(PagingError::Beyond32Bits(gva));
    }
    const TABLE_MASK: u64 = 0xFFFF_F000;
    let pde = read_entry::<u32>(mem, gva, (cr3 & TABLE_MASK) + ((gva >> 22) & 0x3FF) * 4)?;
    if pde & PTE_P == 0 {
        return Err(PagingError::NotPresent { gva, level: 2 });
    }
    let (user, writable) = (pde & PTE_US != 0, pde & PTE_RW != 0);
    if pse && pde & PTE_PS != 0 {
        let base = (pde & 0xFFC0_0000) | ((pde & 0x001F_E000) << 19);
        return Ok(leaf(gva, base, 4 << 20, user, writable));
    }
    let pte = read_entry::<u32>(mem, gva, (pde & TABLE_MASK) + ((gva >> 12) & 0x3FF) * 4)?;
    if pte & PTE_P == 0 {
        return Err(PagingError::NotPresent { gva, level: 1 });
    }
    Ok(leaf(
        gva,
        pte & TABLE_MASK,
        PAGE_SIZE,
        user && pte & PTE_US != 0,
        writable && pte & PTE_RW != 0,
    ))
}

/// PAE paging: CR3 bits 5..31 locate the 4-entry PDPT, indexed by address
/// bits 30..31; then a page directory (bits 21..29, PS: a 2 MiB page) and
/// a page table (bits 12..20). PDPT entries have no R/W or U/S bits.
fn walk_pae32(mem: &GuestMemory, cr3: u64, gva: u64) -> Result<Translation, PagingError> {
    if gva > u64::from(u32::MAX) {
        return Err(PagingError::Beyond32Bits(gva));
    }
    let pdpte = read_entry::<u64>(mem, gva, (cr3 & 0xFFFF_FFE0) + ((gva >> 30) & 3) * 8)?;
    if pdpte & PTE_P == 0 {
        return Err(PagingError::NotPresent { gva, level: 3 });
    }
    let pde = read_entry::<u64>(
        mem,
        gva,
        (pdpte & ADDR_MASK) + ((gva >> 21) & (ENTRIES - 1)) * 8,
    )?;
    if pde & PTE_P == 0 {
        return Err(PagingError::NotPresent { gva, level: 2 });
    }
    let (user, writable) = (pde & PTE_US != 0, pde & PTE_RW != 0);
    if pde & PTE_PS != 0 {
        return Ok(leaf(
            gva,
            pde & ADDR_MASK & !(SIZE_2M - 1),
            SIZE_2M,
            user,
            writable,
        ));
    }
    let pte = read_entry::<u64>(
        mem,
        gva,
        (pde & ADDR_MASK) + ((gva >> 12) & (ENTRIES - 1)) * 8,
    )?;
    if pte & PTE_P == 0 {
        return Err(PagingError::NotPresent { gva, level: 1 });
    }
    Ok(leaf(
        gva,
        pte & ADDR_MASK,
        PAGE_SIZE,
        user && pte & PTE_US != 0,
        writable && pte & PTE_RW != 0,
    ))
}

/// The virtual addresses that [`build_identity_map`] (with the same
/// `map_null_page`) maps to themselves for ring 3, readable and writable:
/// guest memory below kvmini's own area, less the null page unless it is
/// mapped. For [`crate::view::GuestView::with_identity`].
pub fn user_identity_range(layout: &Layout, map_null_page: bool) -> std::ops::Range<u64> {
    let start = if map_null_page { 0 } else { PAGE_SIZE };
    start..layout.system_base
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
    build_identity_map_with(mem, layout, map_null_page, true)
}

/// As [`build_identity_map`]; with `protect_kvmini_area` false, kvmini's
/// own area is mapped like the rest of memory. That is for a ring-0 guest,
/// which the user/supervisor bit does not stop anyway (it may also load
/// its own CR3): a guest memory of one 2 MiB region is then one 2 MiB page
/// instead of 512 small ones, which makes KVM's emulation of ring-0 code
/// measurably faster (about 4% per exit at 2 MiB on kvm-pvm).
pub fn build_identity_map_with(
    mem: &GuestMemory,
    layout: &Layout,
    map_null_page: bool,
    protect_kvmini_area: bool,
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
        } else if gpa >= layout.system_base && protect_kvmini_area {
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
        // One write for the whole table: 512 separate ones cost more than
        // the rest of the tables together.
        let mut table = [0u8; 4096];
        for (i, entry) in (0u64..).zip(table.chunks_exact_mut(8)) {
            let gpa = base + i * PAGE_SIZE;
            let flags = page_flags(gpa);
            let value = if flags == 0 { 0 } else { gpa | flags };
            entry.copy_from_slice(&value.to_le_bytes());
        }
        mem.write_slice(&table, GuestAddress(pt))?;
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
    const KERNEL_READ: Access = Access {
        user: false,
        write: false,
    };

    fn mem(size: u64) -> GuestMemory {
        memory::allocate(size).unwrap()
    }

    fn put(mem: &GuestMemory, addr: u64, value: u64) {
        mem.write_obj(value, GuestAddress(addr)).unwrap();
    }

    #[test]
    fn without_the_protected_area_a_2_mib_guest_is_one_large_page() {
        let m = mem(2 << 20);
        let layout = Layout::new(2 << 20);
        build_identity_map_with(&m, &layout, true, false).unwrap();
        let t = translate(&m, PagingMode::Long, layout.pml4(), 0x1234, USER_READ).unwrap();
        assert_eq!((t.gpa, t.len_in_page), (0x1234, SIZE_2M - 0x1234));
        // kvmini's area is then reachable like the rest (for ring 0 only).
        let top = layout.system_base + 8;
        assert_eq!(
            translate(&m, PagingMode::Long, layout.pml4(), top, USER_READ).map(|t| t.gpa),
            Ok(top)
        );
        // Protected, the same memory needs small pages, and ring 3 is kept out.
        build_identity_map(&m, &layout, true).unwrap();
        let t = translate(&m, PagingMode::Long, layout.pml4(), 0x1234, USER_READ).unwrap();
        assert_eq!(t.len_in_page, PAGE_SIZE - 0x234);
        assert!(translate(&m, PagingMode::Long, layout.pml4(), top, USER_READ).is_err());
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

    fn put32(mem: &GuestMemory, addr: u64, value: u32) {
        mem.write_obj(value, GuestAddress(addr)).unwrap();
    }

    #[test]
    fn paging_mode_from_cr0_cr4_and_efer() {
        const PG: u64 = 1 << 31;
        const PSE: u64 = 1 << 4;
        const PAE: u64 = 1 << 5;
        const LMA: u64 = 1 << 10;
        let mode = PagingMode::from_registers;
        assert_eq!(mode(0x10, 0, 0), PagingMode::Disabled);
        assert_eq!(mode(0x11, PAE, 0), PagingMode::Disabled);
        assert_eq!(mode(PG | 1, 0, 0), PagingMode::Legacy32 { pse: false });
        assert_eq!(mode(PG | 1, PSE, 0), PagingMode::Legacy32 { pse: true });
        assert_eq!(mode(PG | 1, PAE | PSE, 0), PagingMode::Pae32);
        assert_eq!(mode(PG | 1, PAE, LMA | (1 << 8)), PagingMode::Long);
    }

    #[test]
    fn legacy32_four_mib_and_four_kib_pages() {
        let m = mem(16 << 20);
        let (pd, pt) = (0x1000, 0x2000);
        // PD[0] -> PT; PT[5]: virtual 0x5000 -> physical 0x9000, read-only.
        put32(&m, pd, 0x2000 | 0x7);
        put32(&m, pt + 5 * 4, 0x9000 | 0x5);
        // PD[1]: virtual 4 MiB -> a 4 MiB page at physical 8 MiB, supervisor.
        put32(&m, pd + 4, 0x80_0000 | 0x83);
        let pse = PagingMode::Legacy32 { pse: true };
        let walk = |mode, gva| translate(&m, mode, pd, gva, USER_READ);
        let small = walk(pse, 0x5123).unwrap();
        assert_eq!((small.gpa, small.len_in_page), (0x9123, 0xEDD));
        assert!(small.user && !small.writable);
        let kernel = Access {
            user: false,
            write: true,
        };
        let big = translate(&m, pse, pd, 0x40_0010, kernel).unwrap();
        assert_eq!((big.gpa, big.len_in_page), (0x80_0010, (4 << 20) - 0x10));
        assert_eq!(walk(pse, 0x40_0010), Err(PagingError::NotUser(0x40_0010)));
        assert_eq!(
            translate(
                &m,
                pse,
                pd,
                0x5000,
                Access {
                    user: true,
                    write: true
                }
            ),
            Err(PagingError::NotWritable(0x5000))
        );
        // CR3's low 12 bits are flags, not part of the directory address.
        assert_eq!(
            translate(&m, pse, pd | 0x18, 0x5000, kernel).map(|t| t.gpa),
            Err(PagingError::NotWritable(0x5000))
        );
        assert_eq!(
            translate(&m, pse, pd | 0x18, 0x5000, KERNEL_READ)
                .unwrap()
                .gpa,
            0x9000
        );
        // Without CR4.PSE, PS is ignored: PD[1] points at a page table at
        // 8 MiB, whose entries are all zero.
        assert_eq!(
            walk(PagingMode::Legacy32 { pse: false }, 0x40_0010),
            Err(PagingError::NotPresent {
                gva: 0x40_0010,
                level: 1
            })
        );
        assert_eq!(
            walk(pse, 0x80_0000),
            Err(PagingError::NotPresent {
                gva: 0x80_0000,
                level: 2
            })
        );
        assert_eq!(
            walk(pse, 0x6000),
            Err(PagingError::NotPresent {
                gva: 0x6000,
                level: 1
            })
        );
        // The last directory entry covers the top of the 4 GiB space.
        put32(&m, pd + 1023 * 4, 0x40_0000 | 0x87);
        assert_eq!(walk(pse, 0xFFFF_FFFF).unwrap().gpa, 0x7F_FFFF);
        assert_eq!(walk(pse, 1 << 32), Err(PagingError::Beyond32Bits(1 << 32)));
        // PSE-36: entry bits 13..20 are physical address bits 32..39.
        put32(&m, pd + 2 * 4, 0x2000 | 0x87);
        assert_eq!(walk(pse, 0x80_0000).unwrap().gpa, 1 << 32);
        // A directory outside guest memory.
        assert_eq!(
            translate(&m, pse, 0x4000_0000, 0x10, USER_READ),
            Err(PagingError::TableOutsideMemory {
                gva: 0x10,
                table: 0x4000_0000
            })
        );
    }

    #[test]
    fn pae32_two_mib_and_four_kib_pages() {
        let m = mem(8 << 20);
        // The PDPT need only be 32-byte aligned.
        let (pdpt, pd0, pd3, pt) = (0x1020, 0x2000, 0x3000, 0x4000);
        put(&m, pdpt, pd0 | PTE_P);
        put(&m, pdpt + 3 * 8, pd3 | PTE_P);
        // PD0[1]: virtual 2 MiB -> 2 MiB page at physical 4 MiB.
        put(&m, pd0 + 8, 0x40_0000 | PTE_P | PTE_RW | PTE_US | PTE_PS);
        // PD3[511] -> PT; PT[511]: the last 4 KiB of the 4 GiB space ->
        // physical 0x7000, writable, supervisor.
        put(&m, pd3 + 511 * 8, pt | PTE_P | PTE_RW | PTE_US);
        put(&m, pt + 511 * 8, 0x7000 | PTE_P | PTE_RW | (1 << 63));
        let walk = |gva, access| translate(&m, PagingMode::Pae32, pdpt, gva, access);
        let big = walk(0x20_1234, USER_READ).unwrap();
        assert_eq!((big.gpa, big.len_in_page), (0x40_1234, (2 << 20) - 0x1234));
        assert!(big.user && big.writable);
        let kernel = Access {
            user: false,
            write: true,
        };
        let top = walk(0xFFFF_FFF0, kernel).unwrap();
        assert_eq!((top.gpa, top.len_in_page), (0x7FF0, 0x10));
        assert_eq!(
            walk(0xFFFF_FFF0, USER_READ),
            Err(PagingError::NotUser(0xFFFF_FFF0))
        );
        assert_eq!(
            walk(0x4000_0000, USER_READ),
            Err(PagingError::NotPresent {
                gva: 0x4000_0000,
                level: 3
            })
        );
        assert_eq!(
            walk(0x40_0000, USER_READ),
            Err(PagingError::NotPresent {
                gva: 0x40_0000,
                level: 2
            })
        );
        assert_eq!(
            walk(0xFFFF_E000, kernel),
            Err(PagingError::NotPresent {
                gva: 0xFFFF_E000,
                level: 1
            })
        );
        assert_eq!(
            walk(1 << 32, USER_READ),
            Err(PagingError::Beyond32Bits(1 << 32))
        );
        assert!(matches!(
            translate(&m, PagingMode::Pae32, 0x4000_0000, 0, USER_READ),
            Err(PagingError::TableOutsideMemory { .. })
        ));
    }

    #[test]
    fn unpaged_mode_is_identity() {
        let m = mem(2 << 20);
        let t = translate(&m, PagingMode::Disabled, 0, 0x1FFF, USER_READ).unwrap();
        assert_eq!((t.gpa, t.len_in_page), (0x1FFF, 1));
    }
}
