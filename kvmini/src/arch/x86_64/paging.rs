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
    /// A present entry on the way sets a bit that the guest's CPU reserves
    /// (the CPU answers such a walk with a page fault).
    #[error("address {gva:#x}: level {level} entry {entry:#x} sets reserved bits")]
    Reserved {
        /// The address being translated.
        gva: u64,
        /// Table level of the entry (4 = PML4 .. 1 = PT).
        level: u8,
        /// The entry as read.
        entry: u64,
    },
}

/// What the guest's CPU reports about translation in its CPUID, which
/// decides which bits of a table entry are reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuPaging {
    /// MAXPHYADDR: physical address bits (CPUID 8000_0008h EAX bits 0..7).
    pub phys_bits: u8,
    /// 1 GiB pages in long mode (CPUID 8000_0001h EDX bit 26).
    pub gib_pages: bool,
    /// PSE-36: 4 MiB pages of 32-bit paging reach past 4 GiB (CPUID 01h
    /// EDX bit 17).
    pub pse36: bool,
}

impl CpuPaging {
    /// Reads the features from the CPUID entries a vCPU is given. Without
    /// leaf 8000_0008h, MAXPHYADDR is 36 when PAE is reported and 32
    /// otherwise, as the SDM says.
    pub fn from_cpuid(entries: &[kvm_bindings::kvm_cpuid_entry2]) -> Self {
        let leaf = |function: u32| {
            entries
                .iter()
                .find(|e| e.function == function && e.index == 0)
        };
        let edx1 = leaf(1).map_or(0, |e| e.edx);
        let max_extended = leaf(0x8000_0000).map_or(0, |e| e.eax);
        let phys_bits = match leaf(0x8000_0008) {
            Some(e) if max_extended >= 0x8000_0008 => e.eax.to_le_bytes()[0],
            _ if edx1 & (1 << 6) != 0 => 36,
            _ => 32,
        };
        let gib_pages = max_extended >= 0x8000_0001
            && leaf(0x8000_0001).is_some_and(|e| e.edx & (1 << 26) != 0);
        CpuPaging {
            phys_bits: phys_bits.clamp(32, 52),
            gib_pages,
            pse36: edx1 & (1 << 17) != 0,
        }
    }

    /// A CPU with every feature and the widest physical address the
    /// architecture allows: it reserves the fewest bits. For walking tables
    /// with no vCPU behind them (tests, tools); a sandbox uses its vCPU's
    /// CPUID.
    pub const ALL_FEATURES: CpuPaging = CpuPaging {
        phys_bits: 52,
        gib_pages: true,
        pse36: true,
    };

    /// MAXPHYADDR within what the architecture allows (32..=52), so that
    /// no value of the public field makes a shift overflow.
    fn width(self) -> u32 {
        u32::from(self.phys_bits.clamp(32, 52))
    }

    /// Bits 63..MAXPHYADDR.
    fn above_phys(self) -> u64 {
        !((1u64 << self.width()) - 1)
    }
}

/// How the guest's CPU translates at one moment: its paging mode, whether
/// EFER.NXE makes bit 63 of an entry execute-disable rather than reserved,
/// and the CPU's features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    /// The paging mode.
    pub mode: PagingMode,
    /// EFER.NXE.
    pub nxe: bool,
    /// What the CPU reports.
    pub cpu: CpuPaging,
}

impl Paging {
    /// Paging in `mode`, with EFER.NXE as `nxe`, on a CPU with `cpu`.
    pub const fn new(mode: PagingMode, nxe: bool, cpu: CpuPaging) -> Self {
        Paging { mode, nxe, cpu }
    }

    /// Reads the paging from CR0, CR4 and EFER of a CPU with `cpu`.
    pub fn from_registers(cr0: u64, cr4: u64, efer: u64, cpu: CpuPaging) -> Self {
        const EFER_NXE: u64 = 1 << 11;
        Paging {
            mode: PagingMode::from_registers(cr0, cr4, efer),
            nxe: efer & EFER_NXE != 0,
            cpu,
        }
    }
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
/// A translation is given only where the guest's CPU would make the same
/// one: an entry with a reserved bit set ends the walk, as the CPU's page
/// fault would.
pub fn translate(
    mem: &GuestMemory,
    paging: Paging,
    cr3: u64,
    gva: u64,
    access: Access,
) -> Result<Translation, PagingError> {
    let t = match paging.mode {
        PagingMode::Disabled => Translation {
            gpa: gva,
            len_in_page: PAGE_SIZE - (gva & (PAGE_SIZE - 1)),
            user: true,
            writable: true,
        },
        PagingMode::Long => walk_long(mem, paging, cr3, gva)?,
        PagingMode::Legacy32 { pse } => walk_legacy32(mem, paging.cpu, cr3, gva, pse)?,
        PagingMode::Pae32 => walk_pae32(mem, paging, cr3, gva)?,
    };
    if access.user && !t.user {
        return Err(PagingError::NotUser(gva));
    }
    if access.write && !t.writable {
        return Err(PagingError::NotWritable(gva));
    }
    Ok(t)
}

/// Bit 63 of a 64-bit entry: execute-disable with EFER.NXE, else reserved.
const PTE_XD: u64 = 1 << 63;

/// The reserved bits of a present 4-level entry at `level` (Intel SDM
/// 4.5.4, "Format of ..."): bits 51..MAXPHYADDR at every level, bit 63
/// without NXE, PS in a PML4 entry, PS in a PDPT entry without 1 GiB
/// pages, and the address bits below the page size in a large page (bit
/// 12 is PAT there).
fn long_reserved(paging: Paging, level: u8, entry: u64) -> u64 {
    let mut reserved = paging.cpu.above_phys() & ADDR_MASK;
    if !paging.nxe {
        reserved |= PTE_XD;
    }
    let large = entry & PTE_PS != 0;
    match level {
        4 => reserved |= PTE_PS,
        3 if large && !paging.cpu.gib_pages => reserved |= PTE_PS,
        3 if large => reserved |= 0x3FFF_E000,
        2 if large => reserved |= 0x001F_E000,
        _ => {}
    }
    reserved
}

fn walk_long(
    mem: &GuestMemory,
    paging: Paging,
    cr3: u64,
    gva: u64,
) -> Result<Translation, PagingError> {
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
        let entry = read_entry::<u64>(mem, gva, table + index * 8)?;
        if entry & PTE_P == 0 {
            return Err(PagingError::NotPresent { gva, level });
        }
        if entry & long_reserved(paging, level, entry) != 0 {
            return Err(PagingError::Reserved { gva, level, entry });
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
/// the entry's, and bits 32..M-1 its bits 13..M-20 (PSE-36), where M is
/// MAXPHYADDR capped at 40 with PSE-36 and 32 without; the entry's bits
/// M-19..21 are reserved. Nothing else is reserved in 32-bit paging.
fn walk_legacy32(
    mem: &GuestMemory,
    cpu: CpuPaging,
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
        let m = if cpu.pse36 { cpu.width().min(40) } else { 32 };
        // Bits 21..(M-19): at most bit 21, at least bits 21..13.
        let reserved = 0x003F_E000 & !((1u64 << (m - 19)) - 1);
        if pde & reserved != 0 {
            return Err(PagingError::Reserved {
                gva,
                level: 2,
                entry: pde,
            });
        }
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

/// The reserved bits of a present PAE entry (Intel SDM 4.4.2): in a PDPT
/// entry, bits 1, 2, 5..8 and 63..MAXPHYADDR; in a directory or table
/// entry, bits 62..MAXPHYADDR, bit 63 without NXE, and in a 2 MiB page
/// bits 13..20.
fn pae_reserved(paging: Paging, level: u8, entry: u64) -> u64 {
    let above_phys = paging.cpu.above_phys();
    if level == 3 {
        return above_phys | 0x1E6;
    }
    let mut reserved = above_phys & !PTE_XD;
    if !paging.nxe {
        reserved |= PTE_XD;
    }
    if level == 2 && entry & PTE_PS != 0 {
        reserved |= 0x001F_E000;
    }
    reserved
}

/// PAE paging: CR3 bits 5..31 locate the 4-entry PDPT, indexed by address
/// bits 30..31; then a page directory (bits 21..29, PS: a 2 MiB page) and
/// a page table (bits 12..20). PDPT entries have no R/W or U/S bits.
fn walk_pae32(
    mem: &GuestMemory,
    paging: Paging,
    cr3: u64,
    gva: u64,
) -> Result<Translation, PagingError> {
    if gva > u64::from(u32::MAX) {
        return Err(PagingError::Beyond32Bits(gva));
    }
    let present = |entry: u64, level: u8| {
        if entry & PTE_P == 0 {
            Err(PagingError::NotPresent { gva, level })
        } else if entry & pae_reserved(paging, level, entry) != 0 {
            Err(PagingError::Reserved { gva, level, entry })
        } else {
            Ok(entry)
        }
    };
    let pdpte = read_entry::<u64>(mem, gva, (cr3 & 0xFFFF_FFE0) + ((gva >> 30) & 3) * 8)?;
    let pdpte = present(pdpte, 3)?;
    let pde = read_entry::<u64>(
        mem,
        gva,
        (pdpte & ADDR_MASK) + ((gva >> 21) & (ENTRIES - 1)) * 8,
    )?;
    let pde = present(pde, 2)?;
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
    let pte = present(pte, 1)?;
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

    const CPU: CpuPaging = CpuPaging {
        phys_bits: 46,
        gib_pages: true,
        pse36: true,
    };

    fn paging(mode: PagingMode) -> Paging {
        Paging {
            mode,
            nxe: true,
            cpu: CPU,
        }
    }

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
        let t = translate(
            &m,
            paging(PagingMode::Long),
            layout.pml4(),
            0x1234,
            USER_READ,
        )
        .unwrap();
        assert_eq!((t.gpa, t.len_in_page), (0x1234, SIZE_2M - 0x1234));
        // kvmini's area is then reachable like the rest (for ring 0 only).
        let top = layout.system_base + 8;
        assert_eq!(
            translate(&m, paging(PagingMode::Long), layout.pml4(), top, USER_READ).map(|t| t.gpa),
            Ok(top)
        );
        // Protected, the same memory needs small pages, and ring 3 is kept out.
        build_identity_map(&m, &layout, true).unwrap();
        let t = translate(
            &m,
            paging(PagingMode::Long),
            layout.pml4(),
            0x1234,
            USER_READ,
        )
        .unwrap();
        assert_eq!(t.len_in_page, PAGE_SIZE - 0x234);
        assert!(translate(&m, paging(PagingMode::Long), layout.pml4(), top, USER_READ).is_err());
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
                let t =
                    translate(&m, paging(PagingMode::Long), layout.pml4(), gva, USER_READ).unwrap();
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
        let walk =
            |gva, access| translate(&m, paging(PagingMode::Long), layout.pml4(), gva, access);
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
        let walk = |gva| translate(&m, paging(PagingMode::Long), pml4, gva, USER_READ).unwrap();
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
            translate(&m, paging(PagingMode::Long), pml4, 0x20_3008, write),
            Err(PagingError::NotWritable(0x20_3008))
        );
    }

    #[test]
    fn tables_outside_memory_and_bad_addresses_are_errors() {
        let m = mem(2 << 20);
        // CR3 beyond guest memory.
        assert!(matches!(
            translate(&m, paging(PagingMode::Long), 1 << 40, 0x1000, USER_READ),
            Err(PagingError::TableOutsideMemory { .. })
        ));
        // An entry pointing to a table beyond guest memory.
        put(&m, 0x1000, (3 << 30) | PTE_P | PTE_US);
        assert_eq!(
            translate(&m, paging(PagingMode::Long), 0x1000, 0x1000, USER_READ),
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
                translate(&m, paging(PagingMode::Long), 0x1000, gva, USER_READ),
                Err(PagingError::NonCanonical(gva))
            );
        }
        // The top of the canonical range is walked, not rejected.
        assert!(matches!(
            translate(&m, paging(PagingMode::Long), 0x1000, u64::MAX, USER_READ),
            Err(PagingError::NotPresent { level: 4, .. })
        ));
    }

    #[test]
    fn a_table_that_points_at_itself_terminates() {
        let m = mem(2 << 20);
        // Every level is the same page: PML4[0] -> PML4, so the walk reads the
        // same table four times and lands on the table itself.
        put(&m, 0x1000, 0x1000 | PTE_P | PTE_RW | PTE_US);
        let t = translate(&m, paging(PagingMode::Long), 0x1000, 0x123, USER_READ).unwrap();
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
        let pse = paging(PagingMode::Legacy32 { pse: true });
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
            walk(paging(PagingMode::Legacy32 { pse: false }), 0x40_0010),
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
    fn legacy32_access_bits_are_those_of_every_level() {
        let m = mem(16 << 20);
        let pse = paging(PagingMode::Legacy32 { pse: true });
        let (pd, pt): (u64, u32) = (0x1000, 0x2000);
        let write = Access {
            user: false,
            write: true,
        };
        let user = Access {
            user: true,
            write: false,
        };
        // A 4 MiB page without R/W or U/S: neither written nor reached
        // from ring 3.
        put32(&m, pd + 4, 0x80_0000 | 0x81);
        assert_eq!(
            translate(&m, pse, pd, 0x40_0010, write),
            Err(PagingError::NotWritable(0x40_0010))
        );
        assert_eq!(
            translate(&m, pse, pd, 0x40_0010, user),
            Err(PagingError::NotUser(0x40_0010))
        );
        // A directory entry without R/W or U/S over a page-table entry with
        // both, and the other way round: the page takes the narrower.
        for (pde, pte) in [(0x1, 0x7), (0x7, 0x1)] {
            put32(&m, pd, pt | pde);
            put32(&m, u64::from(pt) + 5 * 4, 0x9000 | pte);
            let t = translate(&m, pse, pd, 0x5000, KERNEL_READ).unwrap();
            assert_eq!(
                (t.gpa, t.user, t.writable),
                (0x9000, false, false),
                "{pde:#x} {pte:#x}"
            );
            assert_eq!(
                translate(&m, pse, pd, 0x5000, write),
                Err(PagingError::NotWritable(0x5000))
            );
            assert_eq!(
                translate(&m, pse, pd, 0x5000, user),
                Err(PagingError::NotUser(0x5000))
            );
        }
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
        let walk = |gva, access| translate(&m, paging(PagingMode::Pae32), pdpt, gva, access);
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
            translate(&m, paging(PagingMode::Pae32), 0x4000_0000, 0, USER_READ),
            Err(PagingError::TableOutsideMemory { .. })
        ));
    }

    /// Long-mode tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD) and
    /// 0x4000 (PT): virtual 0 -> PT[0], 2 MiB -> a 2 MiB page at 2 MiB,
    /// 1 GiB -> a 1 GiB page at 0; `leaf_bits` are ORed into the leaf
    /// under test (PT[0], PD[1] or PDPT[1]).
    fn long_tables(m: &GuestMemory, pml4_bits: u64, level: u8, leaf_bits: u64) {
        let table = PTE_P | PTE_RW | PTE_US;
        put(m, 0x1000, 0x2000 | table | pml4_bits);
        put(m, 0x2000, 0x3000 | table);
        put(
            m,
            0x2008,
            PTE_P | PTE_US | PTE_PS | if level == 3 { leaf_bits } else { 0 },
        );
        put(m, 0x3000, 0x4000 | table);
        put(
            m,
            0x3008,
            0x20_0000 | table | PTE_PS | if level == 2 { leaf_bits } else { 0 },
        );
        put(
            m,
            0x4000,
            0x5000 | table | if level == 1 { leaf_bits } else { 0 },
        );
    }

    #[test]
    fn long_mode_entries_with_reserved_bits_are_refused_as_the_cpu_would() {
        let m = mem(4 << 20);
        let gva_at = |level: u8| match level {
            1 => 0x123,
            2 => 0x20_0123,
            _ => (1 << 30) + 0x123,
        };
        let narrow = CpuPaging {
            phys_bits: 39,
            gib_pages: false,
            pse36: false,
        };
        // (CPU, NXE, PML4 bits, leaf level, leaf bits, the level refused).
        let refused = [
            // A PML4 entry with PS set.
            (CPU, true, PTE_PS, 1, 0, 4),
            // XD without EFER.NXE, at each level.
            (CPU, false, PTE_XD, 1, 0, 4),
            (CPU, false, 0, 1, PTE_XD, 1),
            (CPU, false, 0, 2, PTE_XD, 2),
            (CPU, false, 0, 3, PTE_XD, 3),
            // A 1 GiB page whose base has bits 13..29 set, and any 1 GiB
            // page on a CPU without them.
            (CPU, true, 0, 3, 1 << 13, 3),
            (CPU, true, 0, 3, 1 << 29, 3),
            (narrow, true, 0, 3, 0, 3),
            // A 2 MiB page whose base has bits 13..20 set.
            (CPU, true, 0, 2, 1 << 13, 2),
            (CPU, true, 0, 2, 1 << 20, 2),
            // Address bits at and above MAXPHYADDR (up to 51).
            (CPU, true, 0, 1, 1 << 46, 1),
            (CPU, true, 0, 1, 1 << 51, 1),
            (narrow, true, 0, 1, 1 << 39, 1),
            (narrow, true, 1 << 40, 1, 0, 4),
        ];
        for (cpu, nxe, pml4_bits, level, leaf_bits, at) in refused {
            long_tables(&m, pml4_bits, level, leaf_bits);
            let gva = gva_at(level);
            let got = translate(
                &m,
                Paging::new(PagingMode::Long, nxe, cpu),
                0x1000,
                gva,
                KERNEL_READ,
            );
            assert!(
                matches!(got, Err(PagingError::Reserved { gva: g, level: l, .. }) if g == gva && l == at),
                "{cpu:?} nxe {nxe} pml4 {pml4_bits:#x} level {level} bits {leaf_bits:#x}: {got:?}"
            );
        }
        // What the CPU allows: XD with NXE, PAT (bit 12) in large pages,
        // ignored bits 52..62, address bits below MAXPHYADDR.
        let allowed = [
            (CPU, true, PTE_XD, 1, PTE_XD, 0x5123),
            (CPU, true, 0, 2, 1 << 12, 0x20_0123),
            (CPU, true, 0, 3, 1 << 12, 0x123),
            (CPU, false, 0x7FF << 52, 1, 0x7FF << 52, 0x5123),
            (narrow, true, 0, 2, 0, 0x20_0123),
        ];
        for (cpu, nxe, pml4_bits, level, leaf_bits, gpa) in allowed {
            long_tables(&m, pml4_bits, level, leaf_bits);
            let got = translate(
                &m,
                Paging::new(PagingMode::Long, nxe, cpu),
                0x1000,
                gva_at(level),
                KERNEL_READ,
            );
            assert_eq!(
                got.map(|t| t.gpa),
                Ok(gpa),
                "{cpu:?} level {level} bits {leaf_bits:#x}"
            );
        }
        // A physical address below MAXPHYADDR but past guest memory is the
        // view's business, not a reserved bit.
        long_tables(&m, 0, 1, 1 << 45);
        assert_eq!(
            translate(&m, paging(PagingMode::Long), 0x1000, 0x123, KERNEL_READ).map(|t| t.gpa),
            Ok((1 << 45) | 0x5123)
        );
        // A reserved bit in an entry that is not present is never looked at.
        put(&m, 0x4000, PTE_XD | PTE_PS | (1 << 51));
        assert_eq!(
            translate(
                &m,
                Paging::new(PagingMode::Long, false, CPU),
                0x1000,
                0x123,
                KERNEL_READ
            ),
            Err(PagingError::NotPresent {
                gva: 0x123,
                level: 1
            })
        );
    }

    #[test]
    fn pae_entries_with_reserved_bits_are_refused_as_the_cpu_would() {
        let m = mem(4 << 20);
        let cpu36 = CpuPaging {
            phys_bits: 36,
            gib_pages: false,
            pse36: true,
        };
        // PDPT at 0x1000 -> PD at 0x2000: PD[0] -> PT at 0x3000, PT[0] ->
        // 0x5000; PD[1] -> a 2 MiB page at 2 MiB.
        let setup = |pdpte_bits: u64, pde_bits: u64, big_bits: u64, pte_bits: u64| {
            put(&m, 0x1000, 0x2000 | PTE_P | pdpte_bits);
            put(&m, 0x2000, 0x3000 | PTE_P | PTE_RW | pde_bits);
            put(&m, 0x2008, 0x20_0000 | PTE_P | PTE_RW | PTE_PS | big_bits);
            put(&m, 0x3000, 0x5000 | PTE_P | PTE_RW | pte_bits);
        };
        let walk = |nxe, cpu, gva| {
            translate(
                &m,
                Paging::new(PagingMode::Pae32, nxe, cpu),
                0x1000,
                gva,
                KERNEL_READ,
            )
        };
        let refused = [
            // PDPT entries: R/W, U/S, bits 5..8, and 63..MAXPHYADDR (bit
            // 63 even with NXE).
            ((PTE_RW, 0, 0, 0), true, CPU, 0x123, 3),
            ((PTE_US, 0, 0, 0), true, CPU, 0x123, 3),
            ((1 << 5, 0, 0, 0), true, CPU, 0x123, 3),
            ((1 << 8, 0, 0, 0), true, CPU, 0x123, 3),
            ((PTE_XD, 0, 0, 0), true, CPU, 0x123, 3),
            ((1 << 36, 0, 0, 0), true, cpu36, 0x123, 3),
            // Directory and table entries: bits 62..MAXPHYADDR (52..62 are
            // reserved here, unlike in long mode), 63 without NXE.
            ((0, 1 << 62, 0, 0), true, CPU, 0x123, 2),
            ((0, 0, 0, 1 << 52), true, CPU, 0x123, 1),
            ((0, 0, 0, 1 << 40), true, cpu36, 0x123, 1),
            ((0, 0, 0, PTE_XD), false, CPU, 0x123, 1),
            ((0, PTE_XD, 0, 0), false, CPU, 0x123, 2),
            // A 2 MiB page with bits 13..20 set.
            ((0, 0, 1 << 13, 0), true, CPU, 0x20_0123, 2),
            ((0, 0, 1 << 20, 0), true, CPU, 0x20_0123, 2),
        ];
        for ((a, b, c, d), nxe, cpu, gva, at) in refused {
            setup(a, b, c, d);
            let got = walk(nxe, cpu, gva);
            assert!(
                matches!(got, Err(PagingError::Reserved { level, .. }) if level == at),
                "bits {a:#x} {b:#x} {c:#x} {d:#x} nxe {nxe}: {got:?}"
            );
        }
        setup(1 << 3 | 1 << 4, PTE_XD, 1 << 12, PTE_XD);
        assert_eq!(walk(true, cpu36, 0x123).map(|t| t.gpa), Ok(0x5123));
        assert_eq!(walk(true, cpu36, 0x20_0123).map(|t| t.gpa), Ok(0x20_0123));
    }

    #[test]
    fn legacy32_four_mib_pages_reserve_the_bits_pse36_does_not_use() {
        let m = mem(4 << 20);
        let pse = PagingMode::Legacy32 { pse: true };
        let cpu = |phys_bits, pse36| CpuPaging {
            phys_bits,
            gib_pages: false,
            pse36,
        };
        let walk = |pde: u32, cpu| {
            put32(&m, 0x1000, pde);
            translate(&m, Paging::new(pse, false, cpu), 0x1000, 0x123, KERNEL_READ)
        };
        let big = 0x83;
        // Bit 21 is always reserved; with MAXPHYADDR 36 so are bits 17..20;
        // without PSE-36, bits 13..20 as well.
        for (pde, cpu) in [
            (big | 1 << 21, cpu(46, true)),
            (big | 1 << 17, cpu(36, true)),
            (big | 1 << 13, cpu(46, false)),
        ] {
            assert!(
                matches!(walk(pde, cpu), Err(PagingError::Reserved { level: 2, .. })),
                "{pde:#x}"
            );
        }
        assert_eq!(
            walk(big | 1 << 16, cpu(36, true)).map(|t| t.gpa),
            Ok((1 << 35) | 0x123)
        );
        assert_eq!(
            walk(big | 1 << 20, cpu(46, true)).map(|t| t.gpa),
            Ok((1 << 39) | 0x123)
        );
        // Without CR4.PSE nothing is reserved: PS is ignored, and the
        // entry points at a page table.
        put32(&m, 0x1000, 0x2000 | 0x83);
        put32(&m, 0x2000, 0x7003);
        let no_pse = Paging::new(PagingMode::Legacy32 { pse: false }, false, cpu(32, false));
        assert_eq!(
            translate(&m, no_pse, 0x1000, 0x123, KERNEL_READ).map(|t| t.gpa),
            Ok(0x7123)
        );
    }

    #[test]
    fn cpu_features_come_from_the_vcpus_cpuid() {
        use kvm_bindings::kvm_cpuid_entry2;
        let entry = |function, eax, edx| kvm_cpuid_entry2 {
            function,
            eax,
            edx,
            ..Default::default()
        };
        let full = [
            entry(1, 0, 1 << 6 | 1 << 17),
            entry(0x8000_0000, 0x8000_0008, 0),
            entry(0x8000_0001, 0, 1 << 26),
            entry(0x8000_0008, 0x3027, 0),
        ];
        assert_eq!(
            CpuPaging::from_cpuid(&full),
            CpuPaging {
                phys_bits: 39,
                gib_pages: true,
                pse36: true
            }
        );
        // Without leaf 8000_0008h: 36 bits with PAE, 32 without.
        let pae_only = [entry(1, 0, 1 << 6), entry(0x8000_0000, 0x8000_0001, 0)];
        assert_eq!(
            CpuPaging::from_cpuid(&pae_only),
            CpuPaging {
                phys_bits: 36,
                gib_pages: false,
                pse36: false
            }
        );
        assert_eq!(CpuPaging::from_cpuid(&[]).phys_bits, 32);
    }

    #[test]
    fn pae32_access_bits_are_those_of_every_level() {
        let m = mem(8 << 20);
        let pae = paging(PagingMode::Pae32);
        let (pdpt, pd, pt) = (0x1000u64, 0x2000u64, 0x3000u64);
        let write = Access {
            user: false,
            write: true,
        };
        let user = Access {
            user: true,
            write: false,
        };
        put(&m, pdpt, pd | PTE_P);
        // A 2 MiB page without R/W or U/S.
        put(&m, pd + 8, 0x40_0000 | PTE_P | PTE_PS);
        assert_eq!(
            translate(&m, pae, pdpt, 0x20_0010, write),
            Err(PagingError::NotWritable(0x20_0010))
        );
        assert_eq!(
            translate(&m, pae, pdpt, 0x20_0010, user),
            Err(PagingError::NotUser(0x20_0010))
        );
        let all = PTE_P | PTE_RW | PTE_US;
        for (pde, pte) in [(PTE_P, all), (all, PTE_P)] {
            put(&m, pd, pt | pde);
            put(&m, pt + 5 * 8, 0x9000 | pte);
            let t = translate(&m, pae, pdpt, 0x5000, KERNEL_READ).unwrap();
            assert_eq!(
                (t.gpa, t.user, t.writable),
                (0x9000, false, false),
                "{pde:#x} {pte:#x}"
            );
            assert_eq!(
                translate(&m, pae, pdpt, 0x5000, write),
                Err(PagingError::NotWritable(0x5000))
            );
            assert_eq!(
                translate(&m, pae, pdpt, 0x5000, user),
                Err(PagingError::NotUser(0x5000))
            );
        }
    }

    #[test]
    fn unpaged_mode_is_identity() {
        let m = mem(2 << 20);
        let t = translate(&m, paging(PagingMode::Disabled), 0, 0x1FFF, USER_READ).unwrap();
        assert_eq!((t.gpa, t.len_in_page), (0x1FFF, 1));
    }
}
