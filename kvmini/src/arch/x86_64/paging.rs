//! The walker that translates a guest virtual address through whatever
//! page tables the guest has in CR3 at the time of a hypercall: run-time
//! work on hostile input, where a translation is given only where the
//! guest's CPU would make the same one. The tables kvmini builds itself
//! are in `page_tables.rs`.

use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use super::bits::{
    CR0_PG, CR4_PAE, CR4_PSE, EFER_LMA, EFER_NXE, PTE_P, PTE_PS, PTE_RW, PTE_US, PTE_XD,
};
use crate::addr::{Gpa, Gva};
use crate::layout::PAGE_SIZE;
use crate::memory::GuestMemory;

/// Physical address bits 12..51 of a table or 4 KiB page entry.
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

const SIZE_2M: u64 = 2 << 20;
const ENTRIES: u64 = 512;

/// Errors of walking page tables.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PagingError {
    /// The address is not canonical (bits 48..63 are not copies of bit 47).
    #[error("address {0:#x} is not canonical")]
    NonCanonical(Gva),
    /// A table entry on the way has its present bit clear.
    #[error("address {gva:#x} is not mapped (level {level} entry not present)")]
    NotPresent {
        /// The address being translated.
        gva: Gva,
        /// Table level of the entry (4 = PML4 .. 1 = PT).
        level: u8,
    },
    /// A table (or CR3) points outside guest memory.
    #[error("address {gva:#x}: page table at {table:#x} is outside guest memory")]
    TableOutsideMemory {
        /// The address being translated.
        gva: Gva,
        /// Guest physical address of the bad table entry.
        table: Gpa,
    },
    /// The page exists but ring 3 may not touch it.
    #[error("address {0:#x} is not accessible from ring 3")]
    NotUser(Gva),
    /// The page exists but is read-only.
    #[error("address {0:#x} is read-only")]
    NotWritable(Gva),
    /// A 32-bit paging mode was asked for an address of 4 GiB or more.
    #[error("address {0:#x} is beyond the 32-bit address space")]
    Beyond32Bits(Gva),
    /// A present entry on the way sets a bit that the guest's CPU reserves
    /// (the CPU answers such a walk with a page fault).
    #[error("address {gva:#x}: level {level} entry {entry:#x} sets reserved bits")]
    Reserved {
        /// The address being translated.
        gva: Gva,
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
    pub gpa: Gpa,
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
    gva: Gva,
    access: Access,
) -> Result<Translation, PagingError> {
    let t = match paging.mode {
        PagingMode::Disabled => Translation {
            gpa: Gpa::new(gva.raw()),
            len_in_page: PAGE_SIZE - (gva.raw() & (PAGE_SIZE - 1)),
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
    gva: Gva,
) -> Result<Translation, PagingError> {
    let va = gva.raw();
    // Bits 63..47 must all equal bit 47.
    let top = va >> 47;
    if top != 0 && top != 0x1_FFFF {
        return Err(PagingError::NonCanonical(gva));
    }
    let mut table = cr3 & ADDR_MASK;
    let mut user = true;
    let mut writable = true;
    // Level 1 entries are always leaves, so the walk ends there at the latest.
    let mut level = 4u8;
    loop {
        let shift = 12 + 9 * u32::from(level - 1);
        let index = (va >> shift) & (ENTRIES - 1);
        let entry = read_entry::<u64>(mem, gva, table + index * 8)?;
        if entry & PTE_P == 0 {
            return Err(PagingError::NotPresent { gva, level });
        }
        if entry & long_reserved(paging, level, entry) != 0 {
            return Err(PagingError::Reserved { gva, level, entry });
        }
        user &= entry & PTE_US != 0;
        writable &= entry & PTE_RW != 0;
        let is_leaf = level == 1 || ((level == 2 || level == 3) && entry & PTE_PS != 0);
        if is_leaf {
            let page_size = 1u64 << shift;
            let base = entry & ADDR_MASK & !(page_size - 1);
            return Ok(leaf(gva, base, page_size, user, writable));
        }
        table = entry & ADDR_MASK;
        level -= 1;
    }
}

/// Reads the table entry at `entry_addr`, an `E` (`u32` or `u64`).
fn read_entry<E: vm_memory::ByteValued + Into<u64>>(
    mem: &GuestMemory,
    gva: Gva,
    entry_addr: u64,
) -> Result<u64, PagingError> {
    mem.read_obj::<E>(GuestAddress(entry_addr))
        .map(Into::into)
        .map_err(|_: GuestMemoryError| PagingError::TableOutsideMemory {
            gva,
            table: Gpa::new(entry_addr),
        })
}

/// The leaf of a walk: `page_size` bytes from `base`.
fn leaf(gva: Gva, base: u64, page_size: u64, user: bool, writable: bool) -> Translation {
    // `base` is aligned to `page_size`, so this cannot carry.
    let offset = gva.raw() & (page_size - 1);
    Translation {
        gpa: Gpa::new(base | offset),
        len_in_page: page_size - offset,
        user,
        writable,
    }
}

/// The leaf of a walk that ends in a page table entry `pte`: the 4 KiB
/// page at `base`, allowed what the directory above (`user`, `writable`)
/// and the entry both allow.
fn page_leaf(gva: Gva, base: u64, pte: u64, user: bool, writable: bool) -> Translation {
    leaf(
        gva,
        base,
        PAGE_SIZE,
        user && pte & PTE_US != 0,
        writable && pte & PTE_RW != 0,
    )
}

/// The address of a walk in a 32-bit mode, which has no higher ones.
fn within_32_bits(gva: Gva) -> Result<u64, PagingError> {
    let va = gva.raw();
    if va > u64::from(u32::MAX) {
        return Err(PagingError::Beyond32Bits(gva));
    }
    Ok(va)
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
    gva: Gva,
    pse: bool,
) -> Result<Translation, PagingError> {
    let va = within_32_bits(gva)?;
    const TABLE_MASK: u64 = 0xFFFF_F000;
    let pde = read_entry::<u32>(mem, gva, (cr3 & TABLE_MASK) + ((va >> 22) & 0x3FF) * 4)?;
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
    let pte = read_entry::<u32>(mem, gva, (pde & TABLE_MASK) + ((va >> 12) & 0x3FF) * 4)?;
    if pte & PTE_P == 0 {
        return Err(PagingError::NotPresent { gva, level: 1 });
    }
    Ok(page_leaf(gva, pte & TABLE_MASK, pte, user, writable))
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
    gva: Gva,
) -> Result<Translation, PagingError> {
    let va = within_32_bits(gva)?;
    let present = |entry: u64, level: u8| {
        if entry & PTE_P == 0 {
            Err(PagingError::NotPresent { gva, level })
        } else if entry & pae_reserved(paging, level, entry) != 0 {
            Err(PagingError::Reserved { gva, level, entry })
        } else {
            Ok(entry)
        }
    };
    let pdpte = read_entry::<u64>(mem, gva, (cr3 & 0xFFFF_FFE0) + ((va >> 30) & 3) * 8)?;
    let pdpte = present(pdpte, 3)?;
    // The entry of `va` in the table `entry` points to, indexed by the
    // address bits from `shift` up.
    let below = |entry: u64, shift: u32| {
        read_entry::<u64>(
            mem,
            gva,
            (entry & ADDR_MASK) + ((va >> shift) & (ENTRIES - 1)) * 8,
        )
    };
    let pde = present(below(pdpte, 21)?, 2)?;
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
    let pte = present(below(pde, 12)?, 1)?;
    Ok(page_leaf(gva, pte & ADDR_MASK, pte, user, writable))
}

pub mod mappings;

#[cfg(test)]
pub(crate) mod tests;
