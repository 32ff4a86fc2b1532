//! The architectural bits kvmini sets or reads (Intel SDM vol. 3A: 2.5
//! "Control Registers", 2.2.1 "Extended Feature Enable Register", 2.3
//! "System Flags" of EFLAGS, 4.5 "4-Level Paging" entries), each defined
//! here once.

/// CR0.PE: protected mode.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.MP: `wait`/`fwait` honour CR0.TS.
pub const CR0_MP: u64 = 1 << 1;
/// CR0.ET: an x87 is present (hard-wired to 1 on modern CPUs).
pub const CR0_ET: u64 = 1 << 4;
/// CR0.NE: x87 errors are reported as #MF.
pub const CR0_NE: u64 = 1 << 5;
/// CR0.WP: supervisor writes honour read-only pages.
pub const CR0_WP: u64 = 1 << 16;
/// CR0.PG: paging.
pub const CR0_PG: u64 = 1 << 31;

/// CR4.PSE: 4 MiB pages in 32-bit paging.
pub const CR4_PSE: u64 = 1 << 4;
/// CR4.PAE: physical address extension (required by long mode).
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.OSFXSR: the OS saves SSE state with `fxsave` (SSE enabled).
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.OSXMMEXCPT: SIMD floating-point exceptions are reported as #XM.
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// CR4.FSGSBASE: `rdfsbase`/`wrfsbase` and the GS pair allowed at ring 3.
pub const CR4_FSGSBASE: u64 = 1 << 16;
/// CR4.OSXSAVE: the guest's OS has enabled XSAVE and XCR0.
pub const CR4_OSXSAVE: u64 = 1 << 18;

/// EFER.SCE: `syscall`/`sysret`.
pub const EFER_SCE: u64 = 1 << 0;
/// EFER.LME: long mode enabled.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// EFER.NXE: bit 63 of a 64-bit page-table entry is execute-disable.
pub const EFER_NXE: u64 = 1 << 11;

/// RFLAGS bit 1, which always reads as 1.
pub const RFLAGS_RESERVED: u64 = 1 << 1;
/// RFLAGS.IOPL = 3: `in`/`out` allowed at every privilege level.
pub const RFLAGS_IOPL3: u64 = 3 << 12;

/// Page-table entry: present.
pub const PTE_P: u64 = 1 << 0;
/// Page-table entry: writable.
pub const PTE_RW: u64 = 1 << 1;
/// Page-table entry: accessible from ring 3.
pub const PTE_US: u64 = 1 << 2;
/// Page-table entry: large page (4 MiB or 2 MiB in a page directory,
/// 1 GiB in a PDPT).
pub const PTE_PS: u64 = 1 << 7;
/// Bit 63 of a 64-bit entry: execute-disable with EFER.NXE, else reserved.
pub const PTE_XD: u64 = 1 << 63;

/// The CR0 bits by name, lowest first, for messages.
pub const CR0_NAMES: &[(u64, &str)] = &[
    (CR0_PE, "PE"),
    (CR0_MP, "MP"),
    (CR0_ET, "ET"),
    (CR0_NE, "NE"),
    (CR0_WP, "WP"),
    (CR0_PG, "PG"),
];

/// The CR4 bits by name, lowest first, for messages.
pub const CR4_NAMES: &[(u64, &str)] = &[
    (CR4_PSE, "PSE"),
    (CR4_PAE, "PAE"),
    (CR4_OSFXSR, "OSFXSR"),
    (CR4_OSXMMEXCPT, "OSXMMEXCPT"),
    (CR4_FSGSBASE, "FSGSBASE"),
    (CR4_OSXSAVE, "OSXSAVE"),
];

/// The EFER bits by name, lowest first, for messages.
pub const EFER_NAMES: &[(u64, &str)] = &[
    (EFER_SCE, "SCE"),
    (EFER_LME, "LME"),
    (EFER_LMA, "LMA"),
    (EFER_NXE, "NXE"),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDM's bit numbers, written out independently of the masks.
    #[test]
    fn bits_are_the_architectural_positions() {
        let positions = |names: &[(u64, &str)]| -> Vec<(u32, String)> {
            names
                .iter()
                .map(|&(bit, name)| (bit.trailing_zeros(), name.to_owned()))
                .collect()
        };
        let own = |list: &[(u32, &str)]| -> Vec<(u32, String)> {
            list.iter().map(|&(n, s)| (n, s.to_owned())).collect()
        };
        assert_eq!(
            positions(CR0_NAMES),
            own(&[
                (0, "PE"),
                (1, "MP"),
                (4, "ET"),
                (5, "NE"),
                (16, "WP"),
                (31, "PG")
            ])
        );
        assert_eq!(
            positions(CR4_NAMES),
            own(&[
                (4, "PSE"),
                (5, "PAE"),
                (9, "OSFXSR"),
                (10, "OSXMMEXCPT"),
                (16, "FSGSBASE"),
                (18, "OSXSAVE")
            ])
        );
        assert_eq!(
            positions(EFER_NAMES),
            own(&[(0, "SCE"), (8, "LME"), (10, "LMA"), (11, "NXE")])
        );
        assert_eq!(
            [PTE_P, PTE_RW, PTE_US, PTE_PS, PTE_XD],
            [0x1, 0x2, 0x4, 0x80, 0x8000_0000_0000_0000]
        );
        assert_eq!((RFLAGS_RESERVED, RFLAGS_IOPL3), (0x2, 0x3000));
        for names in [CR0_NAMES, CR4_NAMES, EFER_NAMES] {
            assert!(names.iter().all(|(bit, _)| bit.count_ones() == 1));
            assert!(names.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }
}
