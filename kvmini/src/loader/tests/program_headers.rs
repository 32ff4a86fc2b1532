//! Where a Linux program finds its program headers (`AT_PHDR`): at
//! `PT_PHDR`'s address, else where the loadable segment holding the
//! table's file bytes puts them, else 0; a static PIE's at kvmini's base.

use super::super::{program_headers, ProgramHeaders, LINUX_PIE_BASE, PF_R, PF_X};
use super::{build, load_ph, set16, Ph, ET_DYN, TEXT, TEXT_AT};

const PT_PHDR: u32 = 6;

fn header(p_type: u32, offset: u64, vaddr: u64, filesz: u64) -> Ph {
    Ph {
        p_type,
        flags: PF_R,
        offset,
        vaddr,
        filesz,
        memsz: filesz,
    }
}

#[test]
fn the_table_is_found_where_the_image_puts_it() {
    // The table is at file offset 64, three 56-byte entries.
    let at = |address| ProgramHeaders {
        address,
        entry_size: 56,
        count: 3,
    };
    let code = load_ph(PF_R | PF_X, 0, 0x40_0000, 0x200, 0x200);
    for (phdrs, want) in [
        // PT_PHDR says where, wherever it comes in the table.
        (
            [
                code,
                header(PT_PHDR, 64, 0x40_0040, 168),
                header(PT_PHDR, 64, 0x50_0000, 168),
            ],
            at(0x40_0040),
        ),
        // Without it: the PT_LOAD whose file bytes hold the table, not a
        // note that holds it too.
        (
            [
                header(4, 0, 0x70_0000, 0x200),
                load_ph(PF_R | PF_X, 0x100, 0x60_0000, 0x100, 0x100),
                load_ph(PF_R | PF_X, 0, 0x40_0000, 0x200, 0x200),
            ],
            at(0x40_0040),
        ),
        (
            [
                header(4, 0, 0x70_0000, 0x200),
                load_ph(PF_R | PF_X, 0x40, 0x40_1000, 0x1C0, 0x1C0),
                load_ph(PF_R | PF_X, 0, 0x40_0000, 0x200, 0x200),
            ],
            at(0x40_1000),
        ),
        // A segment that ends at the table's first byte does not hold it.
        (
            [
                load_ph(PF_R | PF_X, 0, 0x40_0000, 0x40, 0x40),
                load_ph(PF_R | PF_X, 0x41, 0x60_0000, 0x100, 0x100),
                header(4, 0, 0x70_0000, 0x200),
            ],
            at(0),
        ),
    ] {
        let image = build(TEXT_AT, &phdrs, &[0; 0x200]);
        assert_eq!(program_headers(&image).unwrap(), want);
    }
    // A static PIE: at kvmini's base.
    let mut pie = build(
        0x1000,
        &[
            load_ph(PF_R | PF_X, 0, 0, 0x200, 0x200),
            header(PT_PHDR, 64, 0x40, 112),
        ],
        &TEXT,
    );
    set16(&mut pie, 16, ET_DYN);
    assert_eq!(
        program_headers(&pie).unwrap(),
        ProgramHeaders {
            address: LINUX_PIE_BASE + 0x40,
            entry_size: 56,
            count: 2,
        }
    );
}
