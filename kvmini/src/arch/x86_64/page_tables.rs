//! The page tables kvmini builds for a guest at setup, from its own
//! trusted layout: the long-mode identity map, and the identity maps of
//! the 32-bit paged modes. Walking the guest's tables at run time, from
//! hostile input, is [`super::paging`]'s business.

use vm_memory::GuestMemoryError;

use super::bits::{PTE_P, PTE_PS, PTE_RW, PTE_US, PTE_XD};
use super::memory_map::MemoryMap;
use super::table_helper;
use super::tables::Tables;
use kvmini_abi::layout::ELF_LOAD_MIN;

use crate::layout::{Layout, PAGE_SIZE, SPARE_PAGE_TABLES, SPARE_PAGE_TABLES_START};
use crate::memory::GuestMemory;

const SIZE_2M: u64 = 2 << 20;
const SIZE_4M: u64 = 4 << 20;
const SIZE_1G: u64 = 1 << 30;
/// Entries in a 4 KiB table of 8-byte entries.
const ENTRIES: u64 = 512;

/// The virtual addresses that [`identity_map`] (with the same
/// `map_null_page`, protecting kvmini's area) maps to themselves for
/// ring 3, readable and writable: guest memory below kvmini's own area,
/// less the null page unless it is mapped. For the guest view's
/// identity fast path (`GuestView::with_identity`).
pub fn user_identity_range(layout: &Layout, map_null_page: bool) -> std::ops::Range<u64> {
    let start = if map_null_page { 0 } else { PAGE_SIZE };
    start..layout.system_base
}

/// Writes the long-mode identity map of all guest memory into `mem`, with
/// kvmini's own area supervisor-only (see [`identity_map`]).
pub fn build_identity_map(
    mem: &GuestMemory,
    layout: &Layout,
    map_null_page: bool,
) -> Result<(), GuestMemoryError> {
    identity_map(layout, map_null_page, true).write_to(mem)
}

/// The long-mode identity map of all guest memory: 2 MiB pages, except
/// 4 KiB pages in the first 2 MiB (to leave the null page unmapped when
/// `map_null_page` is false) and in the last 2 MiB (kvmini's own area is
/// supervisor-only, so a ring-3 guest can neither read nor write it).
///
/// With `protect_kvmini_area` false, kvmini's own area is mapped like the
/// rest of memory. That is for a ring-0 guest, which the user/supervisor
/// bit does not stop anyway (it may also load its own CR3): a guest
/// memory of one 2 MiB region is then one 2 MiB page instead of 512 small
/// ones, which makes KVM's emulation of ring-0 code faster
/// (docs/performance.md).
pub fn identity_map(layout: &Layout, map_null_page: bool, protect_kvmini_area: bool) -> Tables {
    let page_flags = |gpa: u64| -> u64 {
        if gpa < PAGE_SIZE && !map_null_page {
            0
        } else if gpa >= layout.system_base && protect_kvmini_area {
            PTE_P | PTE_RW
        } else {
            PTE_P | PTE_RW | PTE_US
        }
    };
    map_with(layout, page_flags)
}

/// The long-mode identity map of a ring-3 ELF guest whose memory has the
/// permissions of `map` (to be run with EFER.NXE): the null page
/// unmapped, each page below kvmini's area with its permissions (the
/// guard not present, XD where not executable), the spare page tables
/// below the image supervisor-only, kvmini's area
/// supervisor-only and not executable but for its exception handlers,
/// which are read-only: the exception stack above them cannot run into
/// them unnoticed. The ring-0 helper that changes these tables while the
/// guest runs ([`super::table_helper`]) goes in the handlers' page.
pub fn protected_map(layout: &Layout, map: &MemoryMap) -> Tables {
    let page_flags = |gpa: u64| -> u64 {
        if gpa < PAGE_SIZE {
            return 0;
        }
        if (SPARE_PAGE_TABLES_START..ELF_LOAD_MIN).contains(&gpa) {
            return PTE_P | PTE_RW | PTE_XD;
        }
        if gpa >= layout.system_base {
            let handlers = layout.handlers()..layout.exception_stack_bottom();
            return if handlers.contains(&gpa) {
                PTE_P
            } else {
                PTE_P | PTE_RW | PTE_XD
            };
        }
        let p = map.permissions_at(gpa);
        if !p.read {
            return 0;
        }
        let mut flags = PTE_P | PTE_US;
        if p.write {
            flags |= PTE_RW;
        }
        if !p.execute {
            flags |= PTE_XD;
        }
        flags
    };
    let mut tables = map_with(layout, page_flags);
    tables.put(
        table_helper::code_address(layout),
        table_helper::HELPER_CODE.to_vec(),
    );
    tables
}

/// The identity map of all guest memory with `page_flags` for each 4 KiB
/// page (0: not present): a 2 MiB page where all 512 agree, else a page
/// table (the first and last 2 MiB have their own; others take one of
/// kvmini's spare tables in order). When the spares run out, a 2 MiB
/// region gets one large page with what any of its pages allows.
fn map_with(layout: &Layout, page_flags: impl Fn(u64) -> u64) -> Tables {
    let mut tables = Tables::new();
    let table_flags = PTE_P | PTE_RW | PTE_US;
    tables.put_u64(layout.pml4(), layout.pdpt() | table_flags);
    let gibs = layout.mem_size.div_ceil(SIZE_1G);
    let pdpt: Vec<u64> = (0..gibs).map(|gib| layout.pd(gib) | table_flags).collect();
    tables.put(layout.pdpt(), le_bytes(&pdpt));
    let regions = layout.mem_size / SIZE_2M;
    let mut directory = Vec::with_capacity(usize::try_from(regions).unwrap_or(0));
    let mut spares = (0..SPARE_PAGE_TABLES).map(|i| layout.spare_page_table(i));
    for region in 0..regions {
        let base = region * SIZE_2M;
        let flags: Vec<u64> = (0..ENTRIES)
            .map(|i| page_flags(base + i * PAGE_SIZE))
            .collect();
        let first = flags[0];
        let pt = if flags.iter().all(|&f| f == first) {
            None
        } else if region == 0 {
            Some(layout.pt_low())
        } else if region == regions - 1 {
            Some(layout.pt_high())
        } else {
            spares.next()
        };
        let Some(pt) = pt else {
            directory.push(large_page(base, &flags));
            continue;
        };
        let table: Vec<u64> = (0..ENTRIES)
            .zip(&flags)
            .map(|(i, &f)| {
                if f == 0 {
                    0
                } else {
                    (base + i * PAGE_SIZE) | f
                }
            })
            .collect();
        tables.put(pt, le_bytes(&table));
        directory.push(pt | table_flags);
    }
    // The page directories are consecutive pages, one per GiB.
    tables.put(layout.pd(0), le_bytes(&directory));
    tables
}

/// A 2 MiB page at `base` allowing what any of its pages' `flags` allows
/// (present, writable, user; executable if any is).
fn large_page(base: u64, flags: &[u64]) -> u64 {
    let present: Vec<u64> = flags.iter().copied().filter(|&f| f != 0).collect();
    if present.is_empty() {
        return 0;
    }
    let any = present.iter().fold(0, |acc, f| acc | f) & !PTE_XD;
    let all_xd = present.iter().all(|f| f & PTE_XD != 0);
    base | any | PTE_PS | if all_xd { PTE_XD } else { 0 }
}

/// The paged32 identity map: one page directory at CR3 (kvmini's PML4
/// slot), one 4-byte entry per 4 MiB, physical base | P | RW | PS. The
/// last page may reach 2 MiB past the end of memory (sizes are multiples
/// of 2 MiB); an access there is one to no memory, as without paging.
/// 4 GiB / 4 MiB = 1024 entries at most, the whole directory; every base
/// is below 4 GiB.
pub fn paged32_identity_map(layout: &Layout) -> Tables {
    let directory: Vec<u8> = (0..layout.mem_size.div_ceil(SIZE_4M))
        .flat_map(|page| {
            let entry = (page * SIZE_4M) | PTE_P | PTE_RW | PTE_PS;
            u32::try_from(entry).unwrap_or(0).to_le_bytes()
        })
        .collect();
    let mut tables = Tables::new();
    tables.put(layout.pml4(), directory);
    tables
}

/// The pae32 identity map: a PDPT at CR3 (kvmini's PML4 slot) with one
/// entry per GiB, present only (bits 1 and 2 are reserved in PAE PDPT
/// entries), and page directories at kvmini's page-directory slots, one
/// 8-byte entry per 2 MiB: base | P | RW | PS.
pub fn pae32_identity_map(layout: &Layout) -> Tables {
    let gibs = layout.mem_size.div_ceil(SIZE_1G);
    let pdpt: Vec<u64> = (0..gibs).map(|gib| layout.pd(gib) | PTE_P).collect();
    let directory: Vec<u64> = (0..layout.mem_size / SIZE_2M)
        .map(|region| (region * SIZE_2M) | PTE_P | PTE_RW | PTE_PS)
        .collect();
    let mut tables = Tables::new();
    tables.put(layout.pml4(), le_bytes(&pdpt));
    tables.put(layout.pd(0), le_bytes(&directory));
    tables
}

fn le_bytes(entries: &[u64]) -> Vec<u8> {
    // Sized once: collecting a flat_map grows the vector step by step, a
    // visible part of a sandbox's start.
    let mut bytes = Vec::with_capacity(entries.len() * 8);
    for entry in entries {
        bytes.extend_from_slice(&entry.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Gva;
    use crate::arch::x86_64::paging::tests::translate;
    use crate::arch::x86_64::paging::{Access, CpuPaging, Paging, PagingError, PagingMode};
    use crate::memory;

    const USER_READ: Access = Access {
        user: true,
        write: false,
    };

    fn paging(mode: PagingMode) -> Paging {
        Paging::new(mode, true, CpuPaging::ALL_FEATURES)
    }

    fn mem(size: u64) -> GuestMemory {
        memory::allocate(size).unwrap()
    }

    #[test]
    fn without_the_protected_area_a_2_mib_guest_is_one_large_page() {
        let m = mem(2 << 20);
        let layout = Layout::new(2 << 20);
        let walk = |gva| translate(&m, paging(PagingMode::Long), layout.pml4(), gva, USER_READ);
        identity_map(&layout, true, false).write_to(&m).unwrap();
        let t = walk(0x1234).unwrap();
        assert_eq!((t.gpa.raw(), t.len_in_page), (0x1234, SIZE_2M - 0x1234));
        // kvmini's area is then reachable like the rest (for ring 0 only).
        let top = layout.system_base + 8;
        assert_eq!(walk(top).map(|t| t.gpa.raw()), Ok(top));
        // Protected, the same memory needs small pages, and ring 3 is kept out.
        build_identity_map(&m, &layout, true).unwrap();
        let t = walk(0x1234).unwrap();
        assert_eq!(t.len_in_page, PAGE_SIZE - 0x234);
        assert!(walk(top).is_err());
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
                assert_eq!(t.gpa.raw(), gva, "size {size:#x} gva {gva:#x}");
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
                gva: Gva::new(0x10),
                level: 1
            })
        );
        assert_eq!(
            walk(layout.gdt(), USER_READ),
            Err(PagingError::NotUser(Gva::new(layout.gdt())))
        );
        let kernel = Access {
            user: false,
            write: true,
        };
        assert_eq!(walk(layout.gdt(), kernel).unwrap().gpa.raw(), layout.gdt());
        // The null page is mapped for flat images.
        build_identity_map(&m, &layout, true).unwrap();
        assert_eq!(walk(0x10, USER_READ).unwrap().gpa.raw(), 0x10);
    }
}
