//! The guest view over hand-made and kvmini-built tables.

use super::*;
use crate::addr::{Gpa, Gva};
use crate::arch::x86_64::bits::{PTE_P, PTE_RW, PTE_US};
use crate::arch::x86_64::page_tables::{build_identity_map, user_identity_range};
use crate::layout::Layout;
use crate::memory;
use crate::paging::{CpuPaging, PagingMode};

fn paging(mode: PagingMode) -> Paging {
    Paging::new(mode, false, CpuPaging::ALL_FEATURES)
}

fn identity(size: u64) -> (GuestMemory, Layout) {
    let mem = memory::allocate(size).unwrap();
    let layout = Layout::new(size);
    build_identity_map(&mem, &layout, false).unwrap();
    (mem, layout)
}

/// A buffer may be as long as guest memory and no longer, whatever the
/// tables map (here: no paging, so every length up to memory's is a
/// real buffer), and one whose end wraps is refused before that.
#[test]
fn buffers_are_at_most_as_long_as_guest_memory() {
    let size = 2 << 20;
    let mem = memory::allocate(size).unwrap();
    let view = GuestView::new(&mem, paging(PagingMode::Disabled), 0, false);
    let mut total = 0;
    assert_eq!(
        view.for_each_piece(Gva::new(0), size, false, |_, n| total += n),
        Ok(())
    );
    assert_eq!(total, size);
    assert_eq!(
        view.for_each_piece(Gva::new(0), size + 1, false, |_, _| panic!("no piece")),
        Err(ViewError::TooLong {
            gva: Gva::new(0),
            len: size + 1
        })
    );
    assert_eq!(
        view.for_each_piece(Gva::new(u64::MAX), 2, false, |_, _| panic!("no piece")),
        Err(ViewError::Overflow {
            gva: Gva::new(u64::MAX),
            len: 2
        })
    );
}

/// A buffer whose end is past 2^64 is reported with its real start
/// and length, by every way in, in every paging mode (before, as a
/// non-canonical address u64::MAX).
#[test]
fn buffers_past_the_end_of_the_address_space_are_an_overflow() {
    let (mem, layout) = identity(2 << 20);
    for (mode, cr3) in [
        (PagingMode::Long, layout.pml4()),
        (PagingMode::Disabled, 0),
        (PagingMode::Pae32, layout.pml4()),
    ] {
        let view = GuestView::new(&mem, paging(mode), cr3, false);
        let fast = view.with_identity(0..u64::MAX);
        for view in [view, fast] {
            for (start, len) in [(u64::MAX, 2), (u64::MAX - 7, 9), (1, u64::MAX)] {
                let gva = Gva::new(start);
                let overflow = ViewError::Overflow { gva, len };
                let mut pieces = vec![(1, 1)];
                assert_eq!(
                    view.for_each_piece(gva, len, false, |_, _| panic!("no piece")),
                    Err(overflow.clone()),
                    "{mode:?} {start:#x}+{len:#x}"
                );
                assert_eq!(
                    view.pieces(gva, len, true, &mut pieces),
                    Err(overflow.clone())
                );
                assert!(pieces.is_empty());
                assert_eq!(view.check_writable(gva, len), Err(overflow.clone()));
            }
            let top = Gva::new(u64::MAX - 3);
            assert_eq!(
                view.read_obj::<u64>(top),
                Err(ViewError::Overflow { gva: top, len: 8 })
            );
            assert_eq!(
                view.write_bytes(top, &[0; 5]),
                Err(ViewError::Overflow { gva: top, len: 5 })
            );
            assert_eq!(
                view.write_obj(top, 0u64),
                Err(ViewError::Overflow { gva: top, len: 8 })
            );
            assert_eq!(
                view.read_block::<[u64; 4]>(top, 8),
                Err(ViewError::Overflow { gva: top, len: 32 })
            );
        }
    }
    assert_eq!(
        ViewError::Overflow {
            gva: Gva::new(u64::MAX),
            len: 2
        }
        .to_string(),
        "buffer at 0xffffffffffffffff of 2 bytes runs past the end of the address space"
    );
}

#[test]
fn strings_are_read_across_pages_and_to_the_end_of_memory() {
    let (mem, layout) = identity(4 << 20);
    let view = GuestView::new(&mem, paging(PagingMode::Long), layout.pml4(), true);
    let text = vec![b'x'; 10_000];
    mem.write_slice(&text, GuestAddress(0x10_0F00)).unwrap();
    let mut out = Vec::new();
    view.read_c_string(Gva::new(0x10_0F00), u64::MAX, &mut out)
        .unwrap();
    assert_eq!(out, text);
    // Unterminated right up to kvmini's area: refused, not overrun.
    let top = layout.system_base;
    mem.write_slice(&[b'y'; 16], GuestAddress(top - 16))
        .unwrap();
    out.clear();
    assert_eq!(
        view.read_c_string(Gva::new(top - 16), u64::MAX, &mut out),
        Err(ViewError::Fault(PagingError::NotUser(Gva::new(top))))
    );
}

#[test]
fn strings_follow_non_contiguous_physical_pages() {
    let (mem, _) = identity(4 << 20);
    // Virtual 0x400000 -> physical 0x20_3000 and virtual 0x401000 ->
    // physical 0x20_1000 (reversed order).
    let pml4 = map_user_pages(&mem, [0x20_3000, 0x20_1000]);
    mem.write_slice(b"ab", GuestAddress(0x20_3FFE)).unwrap();
    mem.write_slice(b"cd\0", GuestAddress(0x20_1000)).unwrap();
    let view = GuestView::new(&mem, paging(PagingMode::Long), pml4, true);
    let mut out = Vec::new();
    view.read_c_string(Gva::new(0x40_0FFE), 4096, &mut out)
        .unwrap();
    assert_eq!(out, b"abcd");
    let mut pieces = Vec::new();
    view.for_each_piece(Gva::new(0x40_0FFE), 5, false, |gpa, len| {
        pieces.push((gpa, len))
    })
    .unwrap();
    assert_eq!(pieces, [(0x20_3FFE, 2), (0x20_1000, 3)]);
    // Half-mapped buffer: nothing is visited.
    let mut visited = 0;
    assert!(view
        .for_each_piece(Gva::new(0x40_1000), 0x2000, false, |_, _| visited += 1)
        .is_err());
    assert_eq!(visited, 0);
}

#[test]
fn strings_through_aliased_tables_stop_at_the_memory_size() {
    // Every 4 KiB page of the lower half maps the same page of 'A's,
    // so the "string" there would be 2^47 bytes long.
    let mem = memory::allocate(4 << 20).unwrap();
    let (pml4, pdpt, pd, pt) = (0x20_0000, 0x20_1000, 0x20_2000, 0x20_3000);
    let t = PTE_P | PTE_RW | PTE_US;
    for i in 0..512u64 {
        for (table, next) in [(pt, 0x30_0000), (pd, pt), (pdpt, pd)] {
            mem.write_obj(next | t, GuestAddress(table + i * 8))
                .unwrap();
        }
        let top = if i < 256 { pdpt | t } else { 0 };
        mem.write_obj(top, GuestAddress(pml4 + i * 8)).unwrap();
    }
    mem.write_slice(&[b'A'; 4096], GuestAddress(0x30_0000))
        .unwrap();
    let view = GuestView::new(&mem, paging(PagingMode::Long), pml4, false);
    let mut out = Vec::new();
    assert_eq!(
        view.read_c_string(Gva::new(0), u64::MAX, &mut out),
        Err(ViewError::Unterminated {
            gva: Gva::new(0),
            limit: 4 << 20
        })
    );
    assert_eq!(out.len(), 4 << 20);
}

/// Everything a view says about one buffer: the pieces (or the error)
/// of `for_each_piece` and `pieces`, `check_writable`, and a `u64` read.
type Answers = (
    Result<Vec<(u64, u64)>, ViewError>,
    Result<Vec<(u64, u64)>, ViewError>,
    Result<(), ViewError>,
    Result<u64, ViewError>,
);

fn answers(view: &GuestView<'_>, gva: u64, len: u64, write: bool) -> Answers {
    let mut seen = Vec::new();
    let each = view
        .for_each_piece(Gva::new(gva), len, write, |gpa, n| seen.push((gpa, n)))
        .map(|()| seen);
    let mut pieces = vec![(1, 1)];
    let collected = view
        .pieces(Gva::new(gva), len, write, &mut pieces)
        .map(|()| pieces);
    (
        each,
        collected,
        view.check_writable(Gva::new(gva), len),
        view.read_obj::<u64>(Gva::new(gva)),
    )
}

/// The same string through both views: its bytes (or the error, with
/// what was appended) and its pieces.
fn same_string(walked: &GuestView<'_>, fast: &GuestView<'_>, gva: u64, limit: u64) {
    let read = |view: &GuestView<'_>| {
        let mut out = Vec::new();
        let result = view.read_c_string(Gva::new(gva), limit, &mut out);
        let mut pieces = Vec::new();
        let len = view.c_string_pieces(Gva::new(gva), limit, |gpa, n| pieces.push((gpa, n)));
        (result, out, len, pieces)
    };
    let want = read(walked);
    assert_eq!(read(fast), want, "string at {gva:#x} limit {limit:#x}");
    if let (Ok(()), Ok(len)) = (&want.0, want.2) {
        assert_eq!(len, want.1.len() as u64);
    }
}

#[test]
fn identity_and_walked_paths_agree_on_kvmins_identity_map() {
    for (size, map_null_page) in [(2 << 20, false), (8 << 20, false), (4 << 20, true)] {
        let mem = memory::allocate(size).unwrap();
        let layout = Layout::new(size);
        build_identity_map(&mem, &layout, map_null_page).unwrap();
        let range = user_identity_range(&layout, map_null_page);
        let walked = GuestView::new(&mem, paging(PagingMode::Long), layout.pml4(), true);
        let fast = walked.with_identity(range.clone());
        let (start, top) = (range.start, layout.system_base);
        // Strings: one across the null page's edge, one running into
        // kvmini's area.
        mem.write_slice(b"nul\0ab\0", GuestAddress(0xFFC)).unwrap();
        mem.write_slice(&[b'y'; 32], GuestAddress(top - 32))
            .unwrap();
        // And one across the 4 KiB / 2 MiB page boundary.
        if size > 2 << 20 {
            mem.write_slice(&[b'z'; 0x3000], GuestAddress(0x1F_E000))
                .unwrap();
            mem.write_slice(&[0], GuestAddress(0x20_1000)).unwrap();
        }
        let buffers = [
            (start, 1),
            (start, 0x10_0000),
            (start.wrapping_sub(1), 2),
            (0, 16),
            (0xFF0, 0x20),
            (0x10_2000, 1 << 20),
            (0x1F_F000, 0x3000),
            (top - 16, 16),
            (top - 16, 17),
            (top - 1, 2),
            (top, 1),
            (size - 1, 1),
            (size, 1),
            (start, top - start),
            (start, top - start + 1),
            (0, size),
            (0, size + 1),
            (0x1000, size),
            (top - 8, 0),
            (u64::MAX, 1),
            (u64::MAX, 0),
            (u64::MAX - 5, 10),
            (0, u64::MAX),
            (0x1000, u64::MAX),
            (0x8000_0000_0000_0000, 8),
            (0xFFFF_8000_0000_0000, 8),
        ];
        for (gva, len) in buffers {
            for write in [false, true] {
                let want = answers(&walked, gva, len, write);
                let got = answers(&fast, gva, len, write);
                assert_eq!(got, want, "{size:#x} {gva:#x}+{len:#x} write {write}");
            }
        }
        for gva in [
            0,
            0xFFC,
            0xFFF,
            0x1000,
            0x1002,
            0x1F_E000,
            0x20_0800,
            top - 32,
            top - 1,
            top,
            size - 1,
            size,
            u64::MAX,
            u64::MAX - 2,
        ] {
            for limit in [0, 1, 3, 4, 5, 0x1000, 0x3001, 0x3002, u64::MAX] {
                same_string(&walked, &fast, gva, limit);
            }
        }
    }
}

#[test]
fn the_identity_fast_path_gives_one_piece_and_the_walk_merges() {
    let (mem, layout) = identity(4 << 20);
    let walked = GuestView::new(&mem, paging(PagingMode::Long), layout.pml4(), true);
    let fast = walked.with_identity(user_identity_range(&layout, false));
    let mut pieces = Vec::new();
    for view in [walked, fast] {
        // 4 KiB pages, then a 2 MiB page: contiguous, so one piece.
        view.pieces(Gva::new(0x10_2000), 1 << 20, true, &mut pieces)
            .unwrap();
        assert_eq!(pieces, [(0x10_2000, 1 << 20)]);
    }
    // Page 0 is not in the range: the walk refuses it.
    assert_eq!(
        fast.pieces(Gva::new(0xFFF), 2, false, &mut pieces),
        Err(ViewError::Fault(PagingError::NotPresent {
            gva: Gva::new(0xFFF),
            level: 1
        }))
    );
    assert!(pieces.is_empty());
    // Inside the range nothing is walked: over tables that map nothing,
    // the claimed range still reads, and a byte past it does not.
    let blank = memory::allocate(2 << 20).unwrap();
    blank.write_slice(b"hi\0", GuestAddress(0x1FFD)).unwrap();
    let claimed = GuestView::new(&blank, paging(PagingMode::Long), 0x10_0000, true)
        .with_identity(0x1000..0x2000);
    assert_eq!(
        claimed.read_obj::<u16>(Gva::new(0x1FFD)),
        Ok(u16::from_le_bytes(*b"hi"))
    );
    assert_eq!(
        claimed.read_obj::<u32>(Gva::new(0x1FFD)),
        Err(ViewError::Fault(PagingError::NotPresent {
            gva: Gva::new(0x1FFD),
            level: 4
        }))
    );
    let mut out = Vec::new();
    claimed
        .read_c_string(Gva::new(0x1FFD), u64::MAX, &mut out)
        .unwrap();
    assert_eq!(out, b"hi");
    // A range claimed past guest memory does not let buffers out of it.
    let unpaged = GuestView::new(&mem, paging(PagingMode::Disabled), 0, true);
    let everything = unpaged.with_identity(0..u64::MAX);
    let size = 4 << 20;
    for (gva, len) in [(size - 1, 2), (size, 1), (u64::MAX - 1, 1), (0, size)] {
        for write in [false, true] {
            assert_eq!(
                answers(&everything, gva, len, write),
                answers(&unpaged, gva, len, write),
                "{gva:#x}+{len:#x}"
            );
        }
    }
    mem.write_slice(&[b'q'; 16], GuestAddress(size - 16))
        .unwrap();
    for gva in [size - 16, size - 1, size, u64::MAX] {
        same_string(&unpaged, &everything, gva, u64::MAX);
    }
    let mut out = Vec::new();
    assert_eq!(
        everything.read_c_string(Gva::new(size - 16), u64::MAX, &mut out),
        Err(ViewError::OutsideMemory {
            gva: Gva::new(size),
            gpa: Gpa::new(size)
        })
    );
    assert_eq!(out, [b'q'; 16]);
}

#[test]
fn many_discontiguous_runs_are_walked_past_the_stack_buffer() {
    let (mem, _) = identity(4 << 20);
    // Virtual 0x400000 + i pages, i < 80: pairs of physically
    // contiguous pages, the pairs in reverse order, so 40 runs.
    let physical = |i: u64| 0x20_0000 + ((39 - i / 2) * 2 + i % 2) * 0x1000;
    let pml4 = map_user_pages(&mem, (0..80).map(physical));
    let view = GuestView::new(&mem, paging(PagingMode::Long), pml4, true);
    let (gva, len) = (0x40_0800, 79 * 0x1000);
    let mut want = vec![(physical(0) + 0x800, 0x1800)];
    want.extend((1..39).map(|j| (physical(2 * j), 0x2000)));
    want.push((physical(78), 0x1800));
    assert!(want.len() > STACK_PIECES);
    let mut pieces = Vec::new();
    view.pieces(Gva::new(gva), len, true, &mut pieces).unwrap();
    assert_eq!(pieces, want);
    let mut seen = Vec::new();
    view.for_each_piece(Gva::new(gva), len, true, |gpa, n| seen.push((gpa, n)))
        .unwrap();
    assert_eq!(seen, want);
    // One more page, unmapped: nothing is visited, the error names it.
    let unmapped = 0x40_0000 + 80 * 0x1000;
    let missing = Err(ViewError::Fault(PagingError::NotPresent {
        gva: Gva::new(unmapped),
        level: 1,
    }));
    let mut visited = 0;
    assert_eq!(
        view.for_each_piece(Gva::new(gva), len + 0x1000, false, |_, _| visited += 1),
        missing
    );
    assert_eq!(visited, 0);
    assert_eq!(
        view.pieces(Gva::new(gva), len + 0x1000, false, &mut pieces),
        missing
    );
    assert!(pieces.is_empty());
    assert_eq!(view.check_writable(Gva::new(gva), len + 0x1000), missing);
    // A string across all of them, read and found piece by piece.
    let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    view.write_bytes(Gva::new(gva), &text).unwrap();
    view.write_obj(Gva::new(gva + len), 0u8).unwrap();
    let mut out = Vec::new();
    view.read_c_string(Gva::new(gva), u64::MAX, &mut out)
        .unwrap();
    assert_eq!(out, text);
    let mut string_pieces = Vec::new();
    let found = view.c_string_pieces(Gva::new(gva), u64::MAX, |gpa, n| {
        string_pieces.push((gpa, n))
    });
    assert_eq!(found, Ok(len));
    assert_eq!(string_pieces, want);
}

#[test]
fn bad_pointers_are_errors() {
    let (mem, layout) = identity(2 << 20);
    let view = GuestView::new(&mem, paging(PagingMode::Long), layout.pml4(), true);
    let mut out = Vec::new();
    for gva in [
        0,
        0x10,
        2 << 20,
        u64::MAX,
        0x8000_0000_0000_0000,
        layout.gdt(),
    ] {
        assert!(
            view.read_c_string(Gva::new(gva), u64::MAX, &mut out)
                .is_err(),
            "{gva:#x}"
        );
    }
    assert!(view
        .for_each_piece(Gva::new(0x10_0000), u64::MAX, false, |_, _| {})
        .is_err());
    assert!(view
        .for_each_piece(Gva::new(u64::MAX), 2, false, |_, _| {})
        .is_err());
    assert!(view
        .for_each_piece(Gva::new(0x10_0000), 2 << 20, false, |_, _| {})
        .is_err());
}

/// A buffer whose page starts inside guest memory and runs past its end
/// (a 1 GiB page over 4 MiB of memory) is reported with the virtual and
/// the physical address of the same byte: the first one outside memory.
#[test]
fn a_piece_running_past_memory_names_one_byte_by_both_addresses() {
    let mem = memory::allocate(4 << 20).unwrap();
    // PML4[0] -> PDPT at 0x1000; PDPT[1]: a 1 GiB page at physical 0.
    mem.write_obj(0x1000 | PTE_P | PTE_RW | PTE_US, GuestAddress(0))
        .unwrap();
    mem.write_obj(PTE_P | PTE_RW | PTE_US | (1 << 7), GuestAddress(0x1008))
        .unwrap();
    let view = GuestView::new(&mem, paging(PagingMode::Long), 0, true);
    let gib = 1 << 30;
    for (start, len) in [(0x3F_F000, 0x2000), (0x3F_FFFF, 2), (0x20_0000, 0x20_0001)] {
        let gva = Gva::new(gib + start);
        let want = Err(ViewError::OutsideMemory {
            gva: Gva::new(gib + 0x40_0000),
            gpa: Gpa::new(0x40_0000),
        });
        let mut pieces = Vec::new();
        assert_eq!(
            view.pieces(gva, len, false, &mut pieces),
            want,
            "{start:#x}"
        );
        assert_eq!(
            view.for_each_piece(gva, len, true, |_, _| panic!("no piece")),
            want
        );
        assert_eq!(view.check_writable(gva, len), want);
    }
    // A string there: the bytes up to the end of memory are looked at,
    // then the first byte past it is named.
    mem.write_slice(&[b'z'; 16], GuestAddress(0x3F_FFF0))
        .unwrap();
    let mut pieces = Vec::new();
    let got = view.c_string_pieces(Gva::new(gib + 0x3F_FFF0), u64::MAX, |gpa, n| {
        pieces.push((gpa, n))
    });
    assert_eq!(
        (got, pieces),
        (
            Err(ViewError::OutsideMemory {
                gva: Gva::new(gib + 0x40_0000),
                gpa: Gpa::new(0x40_0000),
            }),
            vec![(0x3F_FFF0, 16)]
        )
    );
}

/// An argument block is read whole and its result field checked for
/// writing: the result may be the block's last eight bytes, and a result
/// field that does not lie wholly inside its block (a mistake in kvmini's
/// own offsets) refuses the block instead of touching what follows it.
#[test]
fn a_block_s_result_lies_inside_the_block() {
    let size = 2 << 20;
    let mem = memory::allocate(size).unwrap();
    let view = GuestView::new(&mem, paging(PagingMode::Disabled), 0, false);
    let block = Gva::new(0x1000);
    mem.write_obj([1u64, 2, 3, 4], GuestAddress(0x1000))
        .unwrap();
    for offset in [0, 8, 24] {
        assert_eq!(
            view.read_block::<[u64; 4]>(block, offset),
            Ok(([1, 2, 3, 4], Gva::new(0x1000 + offset as u64)))
        );
    }
    let refused = Err(ViewError::Overflow {
        gva: block,
        len: 32,
    });
    for offset in [25, 31, 32, 4096, usize::MAX - 7, usize::MAX] {
        assert_eq!(
            view.read_block::<[u64; 4]>(block, offset),
            refused,
            "{offset}"
        );
    }
    // The block at the very end of memory: its result is its last bytes.
    let last = Gva::new(size - 32);
    assert_eq!(
        view.read_block::<[u64; 4]>(last, 24).map(|(_, at)| at),
        Ok(Gva::new(size - 8))
    );
    assert_eq!(
        view.read_block::<[u64; 4]>(Gva::new(size - 24), 0),
        Err(ViewError::OutsideMemory {
            gva: Gva::new(size),
            gpa: Gpa::new(size)
        })
    );
}

/// A block whose result field is on a read-only page is refused before
/// the call runs, wherever in the block the result lies; a read-only
/// part elsewhere in the block is fine (it is only read).
#[test]
fn a_block_whose_result_is_read_only_is_refused() {
    use crate::arch::x86_64::bits::{PTE_P, PTE_US};
    let mem = memory::allocate(4 << 20).unwrap();
    // 0x400000 -> 0x200000 writable, 0x401000 -> 0x201000 read-only.
    let cr3 = map_user_pages(&mem, [0x20_0000, 0x20_1000]);
    mem.write_obj(0x20_1000u64 | PTE_P | PTE_US, GuestAddress(0x10_3008))
        .unwrap();
    mem.write_obj([1u64, 2, 3, 4], GuestAddress(0x20_0FF0))
        .unwrap();
    let view = GuestView::new(&mem, paging(PagingMode::Long), cr3, true);
    let block = Gva::new(0x40_0FF0);
    for offset in [0, 8] {
        let (args, at) = view.read_block::<[u64; 4]>(block, offset).unwrap();
        assert_eq!(args[..2], [1, 2]);
        assert_eq!(at, Gva::new(0x40_0FF0 + offset as u64));
    }
    for offset in [16, 24] {
        assert_eq!(
            view.read_block::<[u64; 4]>(block, offset),
            Err(ViewError::Fault(PagingError::NotWritable(Gva::new(
                0x40_0FF0 + offset as u64
            )))),
            "{offset}"
        );
    }
    // A result straddling the two pages.
    assert_eq!(
        view.read_block::<[u64; 2]>(Gva::new(0x40_0FFC), 0),
        Err(ViewError::Fault(PagingError::NotWritable(Gva::new(
            0x40_1000
        ))))
    );
}

/// A value across two pages that are not physically contiguous is read
/// and written piece by piece, each piece at its own place.
#[test]
fn values_across_discontiguous_pages_are_whole() {
    let mem = memory::allocate(4 << 20).unwrap();
    // 0x400000 -> 0x203000 and 0x401000 -> 0x201000.
    let cr3 = map_user_pages(&mem, [0x20_3000, 0x20_1000]);
    mem.write_slice(&[1, 2, 3, 4], GuestAddress(0x20_3FFC))
        .unwrap();
    mem.write_slice(&[5, 6, 7, 8], GuestAddress(0x20_1000))
        .unwrap();
    let view = GuestView::new(&mem, paging(PagingMode::Long), cr3, true);
    let at = Gva::new(0x40_0FFC);
    assert_eq!(
        view.read_obj::<u64>(at),
        Ok(u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8]))
    );
    assert_eq!(view.write_bytes(at, &[9, 10, 11, 12, 13, 14]), Ok(()));
    let mut first = [0u8; 4];
    let mut second = [0u8; 4];
    mem.read_slice(&mut first, GuestAddress(0x20_3FFC)).unwrap();
    mem.read_slice(&mut second, GuestAddress(0x20_1000))
        .unwrap();
    assert_eq!((first, second), ([9, 10, 11, 12], [13, 14, 7, 8]));
}

/// A string that starts on a walked page and goes on into the identity
/// range stops at its limit there too: the limit counts the walked bytes.
#[test]
fn a_string_s_limit_counts_the_bytes_before_the_identity_range() {
    let (mem, layout) = identity(4 << 20);
    let walked = GuestView::new(&mem, paging(PagingMode::Long), layout.pml4(), true);
    let fast = walked.with_identity(0x20_1000..layout.system_base);
    // 16 bytes on the walked page, 24 in the identity range, the NUL.
    mem.write_slice(&[b'x'; 16], GuestAddress(0x20_0FF0))
        .unwrap();
    mem.write_slice(&[b'y'; 24], GuestAddress(0x20_1000))
        .unwrap();
    mem.write_slice(&[0], GuestAddress(0x20_1018)).unwrap();
    let gva = Gva::new(0x20_0FF0);
    for view in [&walked, &fast] {
        for (limit, want, looked_at) in [
            (17, Err(ViewError::Unterminated { gva, limit: 17 }), 17),
            (32, Err(ViewError::Unterminated { gva, limit: 32 }), 32),
            (40, Err(ViewError::Unterminated { gva, limit: 40 }), 40),
            (41, Ok(40), 40),
        ] {
            let mut pieces = Vec::new();
            let got = view.c_string_pieces(gva, limit, |gpa, n| pieces.push((gpa, n)));
            assert_eq!(
                (got, pieces),
                (want, vec![(0x20_0FF0, looked_at)]),
                "{limit}"
            );
        }
        same_string(&walked, view, 0x20_0FF0, 32);
        // The empty string has no piece at all.
        let mut pieces = Vec::new();
        let got = view.c_string_pieces(Gva::new(0x20_1018), 8, |gpa, n| pieces.push((gpa, n)));
        assert_eq!((got, pieces), (Ok(0), vec![]));
    }
}
