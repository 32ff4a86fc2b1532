//! The walker, checked against hand-made tables in every paging mode.

use super::*;
use crate::memory;

/// The walk of the raw address `gva` (for the tests of the modules that
/// build tables).
pub(crate) fn translate(
    mem: &GuestMemory,
    paging: Paging,
    cr3: u64,
    gva: u64,
    access: Access,
) -> Result<Translation, PagingError> {
    super::translate(mem, paging, cr3, Gva::new(gva), access)
}

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
        (one_gib.gpa.raw(), one_gib.len_in_page),
        (0x1234, (1 << 30) - 0x1234)
    );
    assert!(!one_gib.writable);
    let two_mib = walk(0x1F_FFF0);
    assert_eq!((two_mib.gpa.raw(), two_mib.len_in_page), (0x3F_FFF0, 0x10));
    let four_kib = walk(0x20_3008);
    assert_eq!((four_kib.gpa.raw(), four_kib.len_in_page), (0x7008, 0xFF8));
    let write = Access {
        user: true,
        write: true,
    };
    assert_eq!(
        translate(&m, paging(PagingMode::Long), pml4, 0x20_3008, write),
        Err(PagingError::NotWritable(Gva::new(0x20_3008)))
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
            gva: Gva::new(0x1000),
            table: Gpa::new(3 << 30)
        })
    );
    for gva in [
        0x0000_8000_0000_0000,
        0x1234_0000_0000_0000,
        u64::MAX - 0xFFFF_FFFF_FFFF,
    ] {
        assert_eq!(
            translate(&m, paging(PagingMode::Long), 0x1000, gva, USER_READ),
            Err(PagingError::NonCanonical(Gva::new(gva)))
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
    assert_eq!(t.gpa.raw(), 0x1123);
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
    assert_eq!((small.gpa.raw(), small.len_in_page), (0x9123, 0xEDD));
    assert!(small.user && !small.writable);
    let kernel = Access {
        user: false,
        write: true,
    };
    let big = translate(&m, pse, pd, 0x40_0010, kernel).unwrap();
    assert_eq!(
        (big.gpa.raw(), big.len_in_page),
        (0x80_0010, (4 << 20) - 0x10)
    );
    assert_eq!(
        walk(pse, 0x40_0010),
        Err(PagingError::NotUser(Gva::new(0x40_0010)))
    );
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
        Err(PagingError::NotWritable(Gva::new(0x5000)))
    );
    // CR3's low 12 bits are flags, not part of the directory address.
    assert_eq!(
        translate(&m, pse, pd | 0x18, 0x5000, kernel).map(|t| t.gpa.raw()),
        Err(PagingError::NotWritable(Gva::new(0x5000)))
    );
    assert_eq!(
        translate(&m, pse, pd | 0x18, 0x5000, KERNEL_READ)
            .unwrap()
            .gpa
            .raw(),
        0x9000
    );
    // Without CR4.PSE, PS is ignored: PD[1] points at a page table at
    // 8 MiB, whose entries are all zero.
    assert_eq!(
        walk(paging(PagingMode::Legacy32 { pse: false }), 0x40_0010),
        Err(PagingError::NotPresent {
            gva: Gva::new(0x40_0010),
            level: 1
        })
    );
    assert_eq!(
        walk(pse, 0x80_0000),
        Err(PagingError::NotPresent {
            gva: Gva::new(0x80_0000),
            level: 2
        })
    );
    assert_eq!(
        walk(pse, 0x6000),
        Err(PagingError::NotPresent {
            gva: Gva::new(0x6000),
            level: 1
        })
    );
    // The last directory entry covers the top of the 4 GiB space.
    put32(&m, pd + 1023 * 4, 0x40_0000 | 0x87);
    assert_eq!(walk(pse, 0xFFFF_FFFF).unwrap().gpa.raw(), 0x7F_FFFF);
    assert_eq!(
        walk(pse, 1 << 32),
        Err(PagingError::Beyond32Bits(Gva::new(1 << 32)))
    );
    // PSE-36: entry bits 13..20 are physical address bits 32..39.
    put32(&m, pd + 2 * 4, 0x2000 | 0x87);
    assert_eq!(walk(pse, 0x80_0000).unwrap().gpa.raw(), 1 << 32);
    // A directory outside guest memory.
    assert_eq!(
        translate(&m, pse, 0x4000_0000, 0x10, USER_READ),
        Err(PagingError::TableOutsideMemory {
            gva: Gva::new(0x10),
            table: Gpa::new(0x4000_0000)
        })
    );
}

/// `gva` is mapped for ring 0 only, read-only: a write is refused as one,
/// a ring-3 read as the other.
fn assert_kernel_read_only(m: &GuestMemory, paging: Paging, cr3: u64, gva: u64) {
    let write = Access {
        user: false,
        write: true,
    };
    assert_eq!(
        translate(m, paging, cr3, gva, write),
        Err(PagingError::NotWritable(Gva::new(gva)))
    );
    assert_eq!(
        translate(m, paging, cr3, gva, USER_READ),
        Err(PagingError::NotUser(Gva::new(gva)))
    );
}

/// Virtual 0x5000 is the page at 0x9000, for ring 0 only, read-only,
/// whichever level of `entries` (directory, table entry) took the rights.
fn assert_kernel_read_only_page(m: &GuestMemory, paging: Paging, cr3: u64, entries: (u64, u64)) {
    let t = translate(m, paging, cr3, 0x5000, KERNEL_READ).unwrap();
    assert_eq!(
        (t.gpa.raw(), t.user, t.writable),
        (0x9000, false, false),
        "{entries:#x?}"
    );
    assert_kernel_read_only(m, paging, cr3, 0x5000);
}

#[test]
fn legacy32_access_bits_are_those_of_every_level() {
    let m = mem(16 << 20);
    let pse = paging(PagingMode::Legacy32 { pse: true });
    let (pd, pt): (u64, u32) = (0x1000, 0x2000);
    // A 4 MiB page without R/W or U/S: neither written nor reached
    // from ring 3.
    put32(&m, pd + 4, 0x80_0000 | 0x81);
    assert_kernel_read_only(&m, pse, pd, 0x40_0010);
    // A directory entry without R/W or U/S over a page-table entry with
    // both, and the other way round: the page takes the narrower.
    for (pde, pte) in [(0x1, 0x7), (0x7, 0x1)] {
        put32(&m, pd, pt | pde);
        put32(&m, u64::from(pt) + 5 * 4, 0x9000 | pte);
        assert_kernel_read_only_page(&m, pse, pd, (pde.into(), pte.into()));
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
    assert_eq!(
        (big.gpa.raw(), big.len_in_page),
        (0x40_1234, (2 << 20) - 0x1234)
    );
    assert!(big.user && big.writable);
    let kernel = Access {
        user: false,
        write: true,
    };
    let top = walk(0xFFFF_FFF0, kernel).unwrap();
    assert_eq!((top.gpa.raw(), top.len_in_page), (0x7FF0, 0x10));
    assert_eq!(
        walk(0xFFFF_FFF0, USER_READ),
        Err(PagingError::NotUser(Gva::new(0xFFFF_FFF0)))
    );
    assert_eq!(
        walk(0x4000_0000, USER_READ),
        Err(PagingError::NotPresent {
            gva: Gva::new(0x4000_0000),
            level: 3
        })
    );
    assert_eq!(
        walk(0x40_0000, USER_READ),
        Err(PagingError::NotPresent {
            gva: Gva::new(0x40_0000),
            level: 2
        })
    );
    assert_eq!(
        walk(0xFFFF_E000, kernel),
        Err(PagingError::NotPresent {
            gva: Gva::new(0xFFFF_E000),
            level: 1
        })
    );
    assert_eq!(
        walk(1 << 32, USER_READ),
        Err(PagingError::Beyond32Bits(Gva::new(1 << 32)))
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
            matches!(got, Err(PagingError::Reserved { gva: g, level: l, .. }) if g == Gva::new(gva) && l == at),
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
            got.map(|t| t.gpa.raw()),
            Ok(gpa),
            "{cpu:?} level {level} bits {leaf_bits:#x}"
        );
    }
    // A physical address below MAXPHYADDR but past guest memory is the
    // view's business, not a reserved bit.
    long_tables(&m, 0, 1, 1 << 45);
    assert_eq!(
        translate(&m, paging(PagingMode::Long), 0x1000, 0x123, KERNEL_READ).map(|t| t.gpa.raw()),
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
            gva: Gva::new(0x123),
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
    assert_eq!(walk(true, cpu36, 0x123).map(|t| t.gpa.raw()), Ok(0x5123));
    assert_eq!(
        walk(true, cpu36, 0x20_0123).map(|t| t.gpa.raw()),
        Ok(0x20_0123)
    );
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
        walk(big | 1 << 16, cpu(36, true)).map(|t| t.gpa.raw()),
        Ok((1 << 35) | 0x123)
    );
    assert_eq!(
        walk(big | 1 << 20, cpu(46, true)).map(|t| t.gpa.raw()),
        Ok((1 << 39) | 0x123)
    );
    // Without CR4.PSE nothing is reserved: PS is ignored, and the
    // entry points at a page table.
    put32(&m, 0x1000, 0x2000 | 0x83);
    put32(&m, 0x2000, 0x7003);
    let no_pse = Paging::new(PagingMode::Legacy32 { pse: false }, false, cpu(32, false));
    assert_eq!(
        translate(&m, no_pse, 0x1000, 0x123, KERNEL_READ).map(|t| t.gpa.raw()),
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
    put(&m, pdpt, pd | PTE_P);
    // A 2 MiB page without R/W or U/S.
    put(&m, pd + 8, 0x40_0000 | PTE_P | PTE_PS);
    assert_kernel_read_only(&m, pae, pdpt, 0x20_0010);
    let all = PTE_P | PTE_RW | PTE_US;
    for (pde, pte) in [(PTE_P, all), (all, PTE_P)] {
        put(&m, pd, pt | pde);
        put(&m, pt + 5 * 8, 0x9000 | pte);
        assert_kernel_read_only_page(&m, pae, pdpt, (pde, pte));
    }
}

#[test]
fn unpaged_mode_is_identity() {
    let m = mem(2 << 20);
    let t = translate(&m, paging(PagingMode::Disabled), 0, 0x1FFF, USER_READ).unwrap();
    assert_eq!((t.gpa.raw(), t.len_in_page), (0x1FFF, 1));
}
