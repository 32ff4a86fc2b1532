//! Bounded property tests of the code that handles guest-controlled input:
//! page walks, guest buffers and strings, the ELF loader, the size and
//! duration parsers, guest path normalization, and the hypercall
//! dispatcher. The same properties, unbounded, are the fuzz targets in
//! `fuzz/` (see docs/fuzzing.md). None of these needs /dev/kvm.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use kvmini::addr::Gva;
use kvmini::arch::x86_64::page_tables;
use kvmini::fs::Filesystem;
use kvmini::grant::{normalize, GrantSpec, Grants};
use kvmini::hypercall::{Action, Hypercalls};
use kvmini::layout::Layout;
use kvmini::loader::{self, LoadWindow, LoaderError};
use kvmini::memory::{self, GuestMemory};
use kvmini::output::{Capture, Input};
use kvmini::paging::{self, Access, CpuPaging, Paging, PagingError, PagingMode, Translation};
use kvmini::stop::parse_duration;
use kvmini::view::{GuestView, ViewError};
use kvmini_abi::layout::ELF_LOAD_MIN;
use kvmini_abi::Port;
use proptest::collection::vec;
use proptest::prelude::*;
use vm_memory::{Bytes, GuestAddress};
use zerocopy::IntoBytes;

const PAGE: u64 = 0x1000;
const MEM_2M: u64 = 2 << 20;
const MEM_4M: u64 = 4 << 20;

/// `cases` cases (or `PROPTEST_CASES`, for a longer run by hand), and no
/// regression files written into the source tree.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).expect("fits in usize")
}

// ---------------------------------------------------------------------------
// Guest memory images.

/// One change to a memory image.
#[derive(Clone, Debug)]
enum Edit {
    /// An 8-byte value (a table entry) at `at`.
    Word { at: u64, value: u64 },
    /// Raw bytes at `at`.
    Bytes { at: u64, bytes: Vec<u8> },
}

/// A table entry: any value, or a page of (or just past) guest memory with
/// random flag bits.
fn entry(size: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (0..size / PAGE + 8, 0u64..0x1000, any::<bool>())
            .prop_map(|(page, flags, nx)| (page * PAGE) | flags | (u64::from(nx) << 63)),
    ]
}

fn edit(size: u64) -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (0..size / 8, entry(size)).prop_map(|(slot, value)| Edit::Word { at: slot * 8, value }),
        1 => (0..size, vec(any::<u8>(), 0..256)).prop_map(|(at, bytes)| Edit::Bytes { at, bytes }),
    ]
}

fn apply(mem: &GuestMemory, size: u64, edits: &[Edit]) {
    for e in edits {
        match e {
            Edit::Word { at, value } => mem.write_obj(*value, GuestAddress(*at)).unwrap(),
            Edit::Bytes { at, bytes } => {
                let n = bytes.len().min(usize_of(size - at));
                mem.write_slice(&bytes[..n], GuestAddress(*at)).unwrap();
            }
        }
    }
}

/// Guest memory with kvmini's identity map (or not), then `edits`.
fn image(size: u64, identity: bool, edits: &[Edit]) -> (GuestMemory, Layout) {
    let mem = memory::allocate(size).unwrap();
    let layout = Layout::new(size);
    if identity {
        page_tables::build_identity_map(&mem, &layout, false).unwrap();
    }
    apply(&mem, size, edits);
    (mem, layout)
}

/// kvmini's own long-mode paging (EFER.NXE clear), on any CPU.
/// The walk of the raw address `gva`.
fn translate(
    mem: &GuestMemory,
    paging: Paging,
    cr3: u64,
    gva: u64,
    access: Access,
) -> Result<Translation, PagingError> {
    paging::translate(mem, paging, cr3, Gva::new(gva), access)
}

const KVMINI_LONG: Paging = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);

/// A paging mode, EFER.NXE and a CPU (MAXPHYADDR 32..52, with and without
/// 1 GiB pages and PSE-36).
fn mode() -> impl Strategy<Value = Paging> {
    let mode = prop_oneof![
        Just(PagingMode::Disabled),
        Just(PagingMode::Long),
        any::<bool>().prop_map(|pse| PagingMode::Legacy32 { pse }),
        Just(PagingMode::Pae32),
    ];
    let cpu =
        (32u8..=52, any::<bool>(), any::<bool>()).prop_map(|(phys_bits, gib_pages, pse36)| {
            CpuPaging {
                phys_bits,
                gib_pages,
                pse36,
            }
        });
    (mode, any::<bool>(), cpu).prop_map(|(mode, nxe, cpu)| Paging::new(mode, nxe, cpu))
}

/// Guest virtual addresses, with the edges well represented: the top of
/// the address space (where ranges wrap), both sides of the canonical
/// hole, the 4 GiB line, guest memory itself and its null page.
fn gva() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0..MEM_4M,
        0..PAGE,
        (0u64..0x2000).prop_map(|d| u64::MAX - d),
        (0u64..0x2000).prop_map(|d| (1u64 << 47) - 1 - d),
        (0u64..0x2000).prop_map(|d| (1u64 << 47) + d),
        (0u64..0x2000).prop_map(|d| 0xFFFF_8000_0000_0000 + d),
        (0u64..0x2000).prop_map(|d| (1u64 << 32) - 1 - d),
    ]
}

/// Buffer lengths: small, large, and ones that make `gva + len` wrap.
fn len() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..0x3000,
        0..2 * MEM_4M,
        any::<u64>(),
        (0u64..0x2000).prop_map(|d| u64::MAX - d),
    ]
}

// ---------------------------------------------------------------------------
// Page walks and guest buffers.

proptest! {
    #![proptest_config(config(256))]

    /// `translate` never panics, and a translation either lies in guest
    /// memory (and reads the byte there) or is refused by `GuestView`.
    #[test]
    fn translations_stay_in_memory_or_are_refused(
        identity in any::<bool>(),
        edits in vec(edit(MEM_2M), 0..48),
        mode in mode(),
        cr3 in prop_oneof![entry(MEM_2M), Just(Layout::new(MEM_2M).pml4())],
        walks in vec((gva(), any::<bool>(), any::<bool>()), 1..16),
    ) {
        let (mem, _) = image(MEM_2M, identity, &edits);
        for (gva, user, write) in walks {
            let access = Access { user, write };
            let Ok(t) = translate(&mem, mode, cr3, gva, access) else {
                continue;
            };
            prop_assert!(t.len_in_page > 0);
            prop_assert_eq!(t.gpa.raw().wrapping_add(t.len_in_page) % PAGE, 0, "page end");
            prop_assert!(!user || t.user);
            prop_assert!(!write || t.writable);
            let view = GuestView::new(&mem, mode, cr3, user);
            let byte = view.read_obj::<u8>(Gva::new(gva));
            if gva == u64::MAX {
                // [gva, gva + 1) wraps: refused before any walk.
                prop_assert!(byte.is_err());
            } else if t.gpa.raw() < MEM_2M {
                let direct: u8 = mem.read_obj(GuestAddress(t.gpa.raw())).unwrap();
                prop_assert_eq!(byte, Ok(direct));
            } else {
                prop_assert_eq!(byte, Err(ViewError::OutsideMemory { gva: Gva::new(gva), gpa: t.gpa }));
            }
        }
    }

    /// As above, with the edits landing on the very entries a walk of
    /// `gva` through kvmini's tables reads (PML4, PDPT, PD and, in the
    /// small-page regions, PT), where a random edit of 2 MiB rarely lands.
    #[test]
    fn edits_on_the_entries_a_walk_reads_stay_in_memory_or_are_refused(
        gva in prop_oneof![0..MEM_2M, 0..PAGE, gva()],
        hits in vec((1u8..=4, entry(MEM_2M)), 1..4),
        mode in mode(),
        user in any::<bool>(),
        write in any::<bool>(),
    ) {
        let (mem, layout) = image(MEM_2M, true, &[]);
        let index = |level: u32| (gva >> (12 + 9 * (level - 1))) & 511;
        for (level, value) in hits {
            let at = match level {
                4 => layout.pml4() + index(4) * 8,
                3 => layout.pdpt() + index(3) * 8,
                2 => layout.pd(0) + index(2) * 8,
                _ => layout.pt_low() + index(1) * 8,
            };
            mem.write_obj(value, GuestAddress(at)).unwrap();
        }
        let mode = Paging { mode: PagingMode::Long, ..mode };
        let access = Access { user, write };
        if let Ok(t) = translate(&mem, mode, layout.pml4(), gva, access) {
            prop_assert!(t.len_in_page > 0);
            prop_assert!(!user || t.user);
            prop_assert!(!write || t.writable);
            let view = GuestView::new(&mem, mode, layout.pml4(), user);
            let byte = view.read_obj::<u8>(Gva::new(gva));
            if gva == u64::MAX {
                prop_assert!(byte.is_err());
            } else if t.gpa.raw() < MEM_2M {
                let direct: u8 = mem.read_obj(GuestAddress(t.gpa.raw())).unwrap();
                prop_assert_eq!(byte, Ok(direct));
            } else {
                prop_assert_eq!(byte, Err(ViewError::OutsideMemory { gva: Gva::new(gva), gpa: t.gpa }));
            }
        }
    }

    /// kvmini's identity map translates user memory to itself and keeps
    /// ring 3 out of kvmini's own area.
    #[test]
    fn the_identity_map_is_the_identity(
        size in (1u64..=4).prop_map(|n| n * MEM_2M),
        gva in 0x1000u64..4 * MEM_2M,
        write in any::<bool>(),
    ) {
        let (mem, layout) = image(size, true, &[]);
        let access = Access { user: true, write };
        let t = translate(&mem, KVMINI_LONG, layout.pml4(), gva, access);
        if gva < layout.system_base {
            prop_assert_eq!(t.map(|t| t.gpa.raw()), Ok(gva));
        } else {
            prop_assert!(t.is_err());
        }
    }

    /// `for_each_piece` never panics, reports nothing when it fails, and on
    /// success reports in-memory pieces, each what its address translates
    /// to, that add up to the length asked for.
    #[test]
    fn pieces_stay_in_memory_and_add_up(
        identity_only in any::<bool>(),
        edits in vec(edit(MEM_2M), 0..32),
        mode in mode(),
        gva in gva(),
        len in len(),
        user in any::<bool>(),
        write in any::<bool>(),
    ) {
        let edits: &[Edit] = if identity_only { &[] } else { &edits };
        let (mem, layout) = image(MEM_2M, true, edits);
        let mode = if identity_only { KVMINI_LONG } else { mode };
        let view = GuestView::new(&mem, mode, layout.pml4(), user);
        let mut pieces = Vec::new();
        let result = view.for_each_piece(Gva::new(gva), len, write, |gpa, n| pieces.push((gpa, n)));
        // No buffer is longer than guest memory, whatever the tables map.
        prop_assert!(len <= MEM_2M || result.is_err());
        match result {
            Ok(()) => {
                prop_assert_eq!(pieces.iter().map(|p| p.1).sum::<u64>(), len);
                let mut at = gva;
                for &(gpa, n) in &pieces {
                    prop_assert!(n > 0);
                    prop_assert!(gpa < MEM_2M && n <= MEM_2M - gpa, "{gpa:#x}+{n:#x}");
                    // Each page of a piece translates to the next bytes of it.
                    let mut done = 0;
                    while done < n {
                        let access = Access { user, write };
                        match translate(&mem, mode, layout.pml4(), at + done, access) {
                            Ok(t) => {
                                prop_assert_eq!(t.gpa.raw(), gpa + done);
                                done += t.len_in_page.min(n - done);
                            }
                            Err(e) => prop_assert!(false, "{:#x}: {e}", at + done),
                        }
                    }
                    at += n;
                }
            }
            Err(_) => prop_assert!(pieces.is_empty()),
        }
    }

    /// `read_c_string` never panics, never reads past its limit, and what
    /// it returns is exactly the guest's bytes up to the NUL.
    #[test]
    fn strings_are_the_guest_bytes_up_to_the_nul(
        identity_only in any::<bool>(),
        edits in vec(edit(MEM_2M), 0..32),
        runs in vec((0..MEM_2M, 1usize..6000, 1u8..=255), 0..4),
        mode in mode(),
        gva in gva(),
        limit in prop_oneof![0u64..0x3000, Just(u64::MAX), any::<u64>()],
        user in any::<bool>(),
    ) {
        let edits: &[Edit] = if identity_only { &[] } else { &edits };
        let (mem, layout) = image(MEM_2M, true, edits);
        // Long runs without a NUL, so that strings cross pages.
        for (at, n, byte) in runs {
            let n = n.min(usize_of(MEM_2M - at));
            mem.write_slice(&vec![byte; n], GuestAddress(at)).unwrap();
        }
        let mode = if identity_only { KVMINI_LONG } else { mode };
        // Made-up tables may map one page again and again, and
        // `read_c_string` does not stop at the memory size by itself: a
        // large limit there would mean a string that long (see
        // docs/fuzzing.md). kvmini's own tables map each page once.
        let limit = if identity_only { limit } else { limit % 0x4001 };
        let view = GuestView::new(&mem, mode, layout.pml4(), user);
        let mut out = Vec::new();
        match view.read_c_string(Gva::new(gva), limit, &mut out) {
            Ok(()) => {
                prop_assert!((out.len() as u64) < limit);
                prop_assert!(!out.contains(&0));
                let mut bytes = Vec::new();
                view.for_each_piece(Gva::new(gva), out.len() as u64 + 1, false, |gpa, n| {
                    let mut buf = vec![0; usize_of(n)];
                    mem.read_slice(&mut buf, GuestAddress(gpa)).unwrap();
                    bytes.extend_from_slice(&buf);
                })
                .unwrap();
                prop_assert_eq!(bytes.pop(), Some(0));
                prop_assert_eq!(bytes, out);
            }
            Err(_) => prop_assert!(out.len() as u64 <= limit),
        }
    }
}

/// Where a buffer of the identity-range property starts.
#[derive(Clone, Debug)]
enum Start {
    /// Anywhere, as [`gva`] picks.
    Any(u64),
    /// In guest memory or just past it (an offset, folded into it).
    Memory(u64),
    /// Near the start of the identity range (`top` false: the null page's
    /// end) or its end (`top`: kvmini's area).
    Edge { top: bool, delta: i64 },
}

fn start() -> impl Strategy<Value = Start> {
    prop_oneof![
        1 => gva().prop_map(Start::Any),
        2 => any::<u64>().prop_map(Start::Memory),
        2 => (any::<bool>(), prop_oneof![-2i64..=2, -0x40i64..0x40, -0x3000i64..0x3000])
            .prop_map(|(top, delta)| Start::Edge { top, delta }),
    ]
}

/// A string as a view reads it, and as it finds its pieces.
type StringAnswer = (
    Result<(), ViewError>,
    Vec<u8>,
    Result<u64, ViewError>,
    Vec<(u64, u64)>,
);

/// Everything a view answers about one buffer and one string, short of
/// writing.
#[derive(Debug, PartialEq)]
struct Answers {
    byte: Result<u8, ViewError>,
    word: Result<u64, ViewError>,
    block: Result<[u8; 32], ViewError>,
    each: Result<Vec<(u64, u64)>, ViewError>,
    pieces: Result<Vec<(u64, u64)>, ViewError>,
    writable: Result<(), ViewError>,
    string: StringAnswer,
}

fn answers(view: &GuestView<'_>, gva: u64, len: u64, write: bool, limit: u64) -> Answers {
    let mut seen = Vec::new();
    let each = view
        .for_each_piece(Gva::new(gva), len, write, |gpa, n| seen.push((gpa, n)))
        .map(|()| seen);
    // Not empty, so that a call that forgets to clear it shows.
    let mut pieces = vec![(1, 1)];
    let collected = view
        .pieces(Gva::new(gva), len, write, &mut pieces)
        .map(|()| pieces);
    let mut out = Vec::new();
    let read = view.read_c_string(Gva::new(gva), limit, &mut out);
    let mut string_pieces = Vec::new();
    let found = view.c_string_pieces(Gva::new(gva), limit, |gpa, n| string_pieces.push((gpa, n)));
    Answers {
        byte: view.read_obj(Gva::new(gva)),
        word: view.read_obj(Gva::new(gva)),
        block: view.read_obj(Gva::new(gva)),
        each,
        pieces: collected,
        writable: view.check_writable(Gva::new(gva), len),
        string: (read, out, found, string_pieces),
    }
}

/// The bytes of guest memory at `ranges`, cut at the end of memory.
fn bytes_at(mem: &GuestMemory, size: u64, ranges: &[(u64, u64)]) -> Vec<Vec<u8>> {
    ranges
        .iter()
        .map(|&(at, n)| {
            let mut buf = vec![0; usize_of(n.min(size.saturating_sub(at)))];
            if !buf.is_empty() {
                mem.read_slice(&mut buf, GuestAddress(at)).unwrap();
            }
            buf
        })
        .collect()
}

/// Runs `write`; returns its result and what it left at `ranges`, and puts
/// back what was there before.
fn written(
    mem: &GuestMemory,
    size: u64,
    ranges: &[(u64, u64)],
    write: impl FnOnce() -> Result<(), ViewError>,
) -> (Result<(), ViewError>, Vec<Vec<u8>>) {
    let before = bytes_at(mem, size, ranges);
    let result = write();
    let after = bytes_at(mem, size, ranges);
    for (&(at, _), old) in ranges.iter().zip(&before) {
        if !old.is_empty() {
            mem.write_slice(old, GuestAddress(at)).unwrap();
        }
    }
    (result, after)
}

proptest! {
    #![proptest_config(config(256))]

    /// On kvmini's own tables, a ring-3 view with the identity range
    /// declared (as the sandbox makes for a ring-3 long-mode guest) gives
    /// exactly the answers of the same view without it, which walks the
    /// tables: reads, pieces, writability, strings, and what writes leave
    /// in memory. The edits stay below kvmini's area, as a ring-3 guest's
    /// writes do.
    #[test]
    fn the_identity_range_agrees_with_the_walk(
        size in (1u64..=4).prop_map(|n| n * MEM_2M),
        map_null_page in any::<bool>(),
        edits in vec(edit(4 * MEM_2M), 0..16),
        runs in vec((prop_oneof![0..4 * MEM_2M, Just(u64::MAX)], 1usize..6000, 1u8..=255), 0..4),
        buffers in vec(
            (start(), len(), any::<bool>(), prop_oneof![0u64..0x3000, any::<u64>()]),
            1..8,
        ),
    ) {
        let mem = memory::allocate(size).unwrap();
        let layout = Layout::new(size);
        page_tables::build_identity_map(&mem, &layout, map_null_page).unwrap();
        let top = layout.system_base;
        let below: Vec<Edit> = edits
            .into_iter()
            .filter_map(|e| match e {
                Edit::Word { at, value } if at + 8 <= top => Some(Edit::Word { at, value }),
                Edit::Bytes { at, mut bytes } if at < top => {
                    bytes.truncate(usize_of(top - at));
                    Some(Edit::Bytes { at, bytes })
                }
                _ => None,
            })
            .collect();
        apply(&mem, size, &below);
        // Long runs without a NUL, so that strings cross pages; `u64::MAX`
        // is a run that ends where kvmini's area begins.
        for (at, n, byte) in runs {
            let at = if at == u64::MAX { top - n as u64 } else { at };
            if at < top {
                let n = n.min(usize_of(top - at));
                mem.write_slice(&vec![byte; n], GuestAddress(at)).unwrap();
            }
        }
        let walked = GuestView::new(&mem, KVMINI_LONG, layout.pml4(), true);
        let fast = walked.with_identity(page_tables::user_identity_range(&layout, map_null_page));
        for (start, len, write, limit) in buffers {
            let gva = match start {
                Start::Any(gva) => gva,
                Start::Memory(offset) => offset % (size + 2 * PAGE),
                Start::Edge { top: true, delta } => top.wrapping_add_signed(delta),
                Start::Edge { top: false, delta } => PAGE.wrapping_add_signed(delta),
            };
            prop_assert_eq!(
                answers(&fast, gva, len, write, limit),
                answers(&walked, gva, len, write, limit),
                "{:#x}+{:#x}", gva, len
            );
            // Writes: compared where the walk puts the bytes and where the
            // identity map would, so that a write to the wrong place shows.
            let n = len.min(0x3000);
            let data: Vec<u8> = (0..n).map(|i| i.to_le_bytes()[0] ^ 0x5A).collect();
            let mut ranges = Vec::new();
            let _ = walked.pieces(Gva::new(gva), n, true, &mut ranges);
            if gva < size {
                ranges.push((gva, n));
            }
            prop_assert_eq!(
                written(&mem, size, &ranges, || fast.write_bytes(Gva::new(gva), &data)),
                written(&mem, size, &ranges, || walked.write_bytes(Gva::new(gva), &data)),
                "write at {:#x}+{:#x}", gva, n
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The ELF loader.

use common::elf::{EHDR64 as EHDR, PHDR64 as PHDR};
const PATTERN: u8 = 0xA5;

/// A valid static x86_64 executable: text (R|X) at 1 MiB, data with bss
/// (R|W), a bss-only segment, and a PT_NOTE.
fn valid_elf() -> Vec<u8> {
    use common::elf::{header64, load64, phdr64, EM_X86_64, ET_EXEC, PF_R, PF_W, PF_X, PT_NOTE};
    let data_at = (EHDR + PHDR * 4) as u64;
    let mut v = header64(ET_EXEC, EM_X86_64, 0x10_0000, 4);
    v.extend(load64(PF_R | PF_X, data_at, 0x10_0000, 16, 16));
    v.extend(load64(PF_R | PF_W, data_at + 16, 0x10_1000, 8, 0x100));
    v.extend(load64(PF_R | PF_W, 0, 0x10_2000, 0, 0x2000));
    v.extend(phdr64(PT_NOTE, PF_R, [0; 6]));
    v.extend_from_slice(&[0x90; 14]);
    v.extend_from_slice(&[0xEB, 0xFE]); // jmp .
    v.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    v
}

/// The 64-bit fields of the header and of the first program header.
const WIDE_FIELDS: [usize; 8] = [
    24,
    32,
    EHDR + 8,
    EHDR + 16,
    EHDR + 32,
    EHDR + 40,
    EHDR + PHDR + 16,
    EHDR + PHDR + 40,
];

/// A mutated valid ELF: 64-bit fields replaced, bytes changed, maybe cut.
fn mutated_elf() -> impl Strategy<Value = Vec<u8>> {
    let len = valid_elf().len();
    let wide = prop_oneof![
        any::<u64>(),
        0u64..0x1000,
        0x10_0000u64..MEM_4M + 0x10_0000,
        (0u64..0x1000).prop_map(|d| u64::MAX - d),
    ];
    (
        vec((0..WIDE_FIELDS.len(), wide), 0..3),
        vec((0..len, any::<u8>()), 0..8),
        proptest::option::of(0..len),
    )
        .prop_map(|(fields, bytes, cut)| {
            let mut v = valid_elf();
            for (field, value) in fields {
                let at = WIDE_FIELDS[field];
                v[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
            for (at, byte) in bytes {
                v[at] = byte;
            }
            if let Some(cut) = cut {
                v.truncate(cut);
            }
            v
        })
}

fn window() -> impl Strategy<Value = LoadWindow> {
    let system_base = Layout::new(MEM_4M).system_base;
    prop_oneof![
        3 => Just(LoadWindow { start: ELF_LOAD_MIN, end: system_base }),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(start, end)| LoadWindow { start, end }),
        1 => (0..MEM_4M, 0..2 * MEM_4M).prop_map(|(start, end)| LoadWindow { start, end }),
    ]
}

/// The loadable segments of an ELF64 little-endian image, read straight
/// from its program headers (independently of kvmini's loader): `(vaddr,
/// file offset, file size, memory size)` of each `PT_LOAD`, in order.
fn pt_loads(bytes: &[u8]) -> Vec<(u64, u64, u64, u64)> {
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (usize_of(u64_at(32)), usize::from(u16_at(54)), u16_at(56));
    (0..usize::from(phnum))
        .map(|i| phoff + i * phentsize)
        .filter(|&ph| u32_at(ph) == 1)
        .map(|ph| {
            (
                u64_at(ph + 16),
                u64_at(ph + 8),
                u64_at(ph + 32),
                u64_at(ph + 40),
            )
        })
        .collect()
}

/// Loads `bytes` into 4 MiB of patterned memory and checks that exactly
/// the segments changed, each inside the window, and nothing at all on
/// failure.
fn check_load(bytes: &[u8], window: &LoadWindow) -> Result<(), TestCaseError> {
    let mem = memory::allocate(MEM_4M).unwrap();
    let mut expected = vec![PATTERN; usize_of(MEM_4M)];
    mem.write_slice(&expected, GuestAddress(0)).unwrap();
    let parsed = loader::parse_elf(bytes);
    let loaded = loader::load_elf(&mem, bytes, window);
    match (&parsed, &loaded) {
        (Ok(info), Ok(image)) => {
            // e_entry, at offset 24 of the header.
            let entry = u64::from_le_bytes(bytes[24..32].try_into().unwrap());
            prop_assert_eq!((image.entry, info.entry), (entry, entry));
            let segments = pt_loads(bytes);
            prop_assert_eq!(segments.len(), info.segments.len());
            for (vaddr, offset, file_size, mem_size) in segments {
                let end = vaddr + mem_size;
                prop_assert!(vaddr >= window.start && end <= window.end);
                prop_assert!(end <= MEM_4M);
                // A segment without file bytes may have any offset.
                let file = match file_size {
                    0 => &[][..],
                    n => &bytes[usize_of(offset)..usize_of(offset + n)],
                };
                let at = usize_of(vaddr);
                expected[at..at + file.len()].copy_from_slice(file);
                expected[at + file.len()..usize_of(end)].fill(0);
            }
        }
        (Ok(_), Err(e)) => prop_assert!(
            matches!(
                e,
                LoaderError::SegmentBelowWindow { .. }
                    | LoaderError::SegmentPastWindow { .. }
                    | LoaderError::NotInGuestMemory { .. }
            ),
            "{e:?}"
        ),
        (Err(p), Err(l)) => {
            prop_assert_eq!(std::mem::discriminant(p), std::mem::discriminant(l));
        }
        (Err(p), Ok(_)) => {
            return Err(TestCaseError::fail(format!(
                "parse_elf refused ({p:?}) what load_elf loaded"
            )));
        }
    }
    let mut actual = vec![0u8; usize_of(MEM_4M)];
    mem.read_slice(&mut actual, GuestAddress(0)).unwrap();
    // Slice equality is a memcmp: fast even in a debug build.
    if actual != expected {
        let at = actual.iter().zip(&expected).position(|(a, e)| a != e);
        return Err(TestCaseError::fail(format!(
            "guest memory at {at:#x?} differs from what was loaded"
        )));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn mutated_elfs_load_only_inside_the_window(bytes in mutated_elf(), window in window()) {
        check_load(&bytes, &window)?;
    }
}

#[test]
fn the_valid_elf_loads() {
    let system_base = Layout::new(MEM_4M).system_base;
    let window = LoadWindow {
        start: ELF_LOAD_MIN,
        end: system_base,
    };
    assert_eq!(pt_loads(&valid_elf()).len(), 3);
    check_load(&valid_elf(), &window).unwrap();
}

// ---------------------------------------------------------------------------
// Sizes, durations and paths.

const SIZE_SUFFIXES: [(&str, u32); 11] = [
    ("", 0),
    ("b", 0),
    ("K", 10),
    ("kb", 10),
    ("KiB", 10),
    ("m", 20),
    ("MB", 20),
    ("MiB", 20),
    ("G", 30),
    ("gb", 30),
    ("GiB", 30),
];

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn parse_size_never_panics(text in prop_oneof![".*", "[ 0-9]{0,24}[kKmMgGiIbB]{0,4} ?"]) {
        let _ = memory::parse_size(&text);
    }

    #[test]
    fn parse_size_round_trips(
        n in prop_oneof![any::<u64>(), 0u64..1 << 36],
        suffix in 0..SIZE_SUFFIXES.len(),
        pad in "[ \t]{0,2}",
    ) {
        let (unit, shift) = SIZE_SUFFIXES[suffix];
        let text = format!("{pad}{n}{unit}{pad}");
        match n.checked_mul(1 << shift) {
            Some(bytes) => prop_assert_eq!(memory::parse_size(&text).ok(), Some(bytes)),
            None => prop_assert!(memory::parse_size(&text).is_err()),
        }
    }

    #[test]
    fn parse_duration_never_panics(
        text in prop_oneof![".*", "[ 0-9.eE+-]{0,24}(ms|s|m|min|h|x)? ?"],
    ) {
        if let Ok(d) = parse_duration(&text) {
            prop_assert!(d > Duration::ZERO && d <= Duration::from_secs(1_000_000_000));
        }
    }

    #[test]
    fn parse_duration_round_trips(n in 1u64..1_000_000, unit in 0usize..5) {
        let (text, want) = match unit {
            0 => (format!("{n}"), Duration::from_secs(n)),
            1 => (format!("{n}s"), Duration::from_secs(n)),
            2 => (format!("{n}m"), Duration::from_secs(n * 60)),
            3 => (format!("{n}min"), Duration::from_secs(n * 60)),
            _ => (format!("{}h", n % 1000 + 1), Duration::from_secs((n % 1000 + 1) * 3600)),
        };
        prop_assert_eq!(parse_duration(&text), Ok(want));
        // Milliseconds go through a float: equal to within a microsecond.
        let ms = parse_duration(&format!("{n}ms")).unwrap();
        let diff = ms.abs_diff(Duration::from_millis(n));
        prop_assert!(diff <= Duration::from_micros(1), "{n}ms gave {ms:?}");
    }

    /// A name of up to 255 bytes is kept and one longer is ENAMETOOLONG,
    /// wherever it stands among short names, `.` and `..`.
    #[test]
    fn names_longer_than_255_bytes_are_refused(
        parts in vec(
            prop_oneof![
                Just(b".".to_vec()),
                Just(b"..".to_vec()),
                (1usize..4).prop_map(|n| vec![b'a'; n]),
                (253usize..258).prop_map(|n| vec![b'n'; n]),
            ],
            1..8,
        ),
    ) {
        let path = parts.join(&b'/');
        let too_long = parts.iter().any(|p| p.len() > 255);
        match normalize(&path) {
            Ok(components) => {
                prop_assert!(!too_long);
                prop_assert!(components.iter().all(|c| c.len() <= 255));
            }
            Err(e) => prop_assert_eq!((e.code(), too_long), (kvmini_abi::errno::ENAMETOOLONG, true)),
        }
    }

    /// Normalized paths have only real names, are already normal, and
    /// never climb above the root.
    #[test]
    fn normalized_paths_have_only_real_names(
        path in vec(
            prop_oneof![Just(b'/'), Just(b'.'), Just(b'a'), Just(b'b'), any::<u8>()],
            0..300,
        ),
    ) {
        let Ok(components) = normalize(&path) else {
            return Ok(());
        };
        for c in &components {
            prop_assert!(!c.is_empty() && c != b"." && c != b"..", "{c:?}");
            prop_assert!(!c.contains(&b'/') && c.len() <= 255);
        }
        let mut again = b"/".to_vec();
        again.extend(components.join(&b'/'));
        prop_assert_eq!(normalize(&again), Ok(components.clone()));
        if !path.is_empty() {
            let mut above = b"/../..".to_vec();
            above.push(b'/');
            above.extend(&path);
            prop_assert_eq!(normalize(&above), Ok(components));
        }
    }
}

// ---------------------------------------------------------------------------
// The hypercall dispatcher.

/// Paths the guest can point at, 32 bytes apart from this address.
const PATHS: u64 = 0x10_0000;
const PATH_LIST: [&[u8]; 14] = [
    b"/up/secret",
    b"/../secret",
    b"/a",
    b"/d",
    b"/d/x",
    b"/new",
    b"/up",
    b"/up/x",
    b"/../canary/x",
    b"/../../a",
    b"a/../../d",
    b"/self/a",
    b"/d/../new2",
    b"",
];
/// Argument blocks: 8 slots of 64 bytes.
const BLOCKS: u64 = 0x10_1000;
/// Buffers.
const BUFFERS: u64 = 0x10_2000;

/// The fields of a filesystem call; each call takes the ones it needs.
#[derive(Clone, Debug)]
struct FsCall {
    port: Port,
    path: u64,
    path2: u64,
    fd: i32,
    buf: u64,
    len: u64,
    flags: u32,
    mode: u32,
    offset: i64,
    whence: u32,
}

const FS_PORTS: [Port; 16] = [
    Port::Open,
    Port::Close,
    Port::Read,
    Port::Write,
    Port::Pread,
    Port::Pwrite,
    Port::Lseek,
    Port::Fstat,
    Port::Stat,
    Port::Fsync,
    Port::Ftruncate,
    Port::Unlink,
    Port::Mkdir,
    Port::Rmdir,
    Port::Rename,
    Port::Getdents,
];

fn path_ptr() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0..PATH_LIST.len() as u64).prop_map(|i| PATHS + i * 32),
        1 => any::<u64>(),
    ]
}

fn fs_call() -> impl Strategy<Value = FsCall> {
    use kvmini_abi::fs::{O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_RDWR, O_TRUNC, O_WRONLY};
    let flags = prop_oneof![
        Just(0),
        Just(O_WRONLY | O_CREAT),
        Just(O_RDWR | O_CREAT | O_TRUNC),
        Just(O_DIRECTORY),
        Just(O_WRONLY | O_CREAT | O_EXCL),
        Just(O_RDWR | O_APPEND),
        any::<u32>(),
    ];
    let buf = prop_oneof![3 => (0u64..0x4000).prop_map(|off| BUFFERS + off), 1 => gva()];
    let len = prop_oneof![3 => 0u64..0x3000, 1 => len()];
    (
        (
            0..FS_PORTS.len(),
            path_ptr(),
            path_ptr(),
            -1i32..8,
            buf,
            len,
        ),
        (
            flags,
            0u32..0o1000,
            prop_oneof![-2i64..0x2000, any::<i64>()],
            0u32..4,
        ),
    )
        .prop_map(
            |((port, path, path2, fd, buf, len), (flags, mode, offset, whence))| FsCall {
                port: FS_PORTS[port],
                path,
                path2,
                fd,
                buf,
                len,
                flags,
                mode,
                offset,
                whence,
            },
        )
}

/// Writes the argument block of `c` at `at`.
fn write_fs_block(mem: &GuestMemory, at: u64, c: &FsCall) {
    use kvmini_abi::fs::{
        FdArgs, IoArgs, OpenArgs, PathArgs, RenameArgs, SeekArgs, StatArgs, TruncateArgs,
    };
    let at = GuestAddress(at);
    match c.port {
        Port::Open => mem.write_slice(
            OpenArgs {
                path: c.path,
                flags: c.flags,
                mode: c.mode,
                result: 0,
            }
            .as_bytes(),
            at,
        ),
        Port::Close | Port::Fsync => mem.write_slice(
            FdArgs {
                fd: c.fd,
                reserved: 0,
                result: 0,
            }
            .as_bytes(),
            at,
        ),
        Port::Lseek => mem.write_slice(
            SeekArgs {
                fd: c.fd,
                whence: c.whence,
                offset: c.offset,
                result: 0,
            }
            .as_bytes(),
            at,
        ),
        Port::Fstat | Port::Stat => mem.write_slice(
            StatArgs {
                path: c.path,
                fd: c.fd,
                reserved: 0,
                stat: c.buf,
                result: 0,
            }
            .as_bytes(),
            at,
        ),
        Port::Ftruncate => mem.write_slice(
            TruncateArgs {
                fd: c.fd,
                reserved: 0,
                length: c.offset,
                result: 0,
            }
            .as_bytes(),
            at,
        ),
        Port::Unlink | Port::Mkdir | Port::Rmdir => mem.write_slice(
            PathArgs {
                path: c.path,
                mode: c.mode,
                reserved: 0,
                result: 0,
            }
            .as_bytes(),
            at,
        ),
        Port::Rename => mem.write_slice(
            RenameArgs {
                old: c.path,
                new: c.path2,
                result: 0,
            }
            .as_bytes(),
            at,
        ),
        _ => mem.write_slice(
            IoArgs {
                fd: c.fd,
                reserved: 0,
                buf: c.buf,
                len: c.len,
                offset: c.offset,
                result: 0,
            }
            .as_bytes(),
            at,
        ),
    }
    .unwrap();
}

/// One exit: any port and value, a filesystem call with a real block, or
/// a well-formed batch of such calls (stopping at the first error or not).
#[derive(Clone, Debug)]
enum Call {
    Raw(Port, u32),
    Fs(FsCall),
    Batch(Vec<FsCall>, bool),
}

/// Where a batch's entries and its own block go.
const BATCH_ENTRIES: u64 = 0x10_8000;
const BATCH_BLOCK: u64 = 0x10_9000;

/// What no call may ever bring into the guest or its output: the contents
/// of a file outside the grant.
const SECRET: &[u8] = b"kvmini-canary-secret-7f3c";

fn call() -> impl Strategy<Value = Call> {
    let value = prop_oneof![
        (0u32..14).prop_map(|i| 0x10_0000 + i * 32),
        0u32..0x20_0000,
        0u32..0x1000,
        any::<u32>(),
    ];
    prop_oneof![
        1 => ((0..Port::ALL.len()), value).prop_map(|(p, v)| Call::Raw(Port::ALL[p], v)),
        3 => fs_call().prop_map(Call::Fs),
        1 => (vec(fs_call(), 1..8), any::<bool>()).prop_map(|(calls, stop)| Call::Batch(calls, stop)),
    ]
}

/// Tables (at 1.75 MiB) that map all 2 MiB of guest memory at every 2 MiB
/// of the lower half of the address space, as a guest at ring 0 may: the
/// same bytes, reachable through 2^46 addresses.
fn aliased_tables(mem: &GuestMemory) -> u64 {
    use kvmini::arch::x86_64::bits::{PTE_P, PTE_PS, PTE_RW, PTE_US};
    let (pml4, pdpt, pd) = (0x1C_0000u64, 0x1C_1000u64, 0x1C_2000u64);
    let table = PTE_P | PTE_RW | PTE_US;
    for i in 0..512u64 {
        let put = |at: u64, value: u64| mem.write_obj(value, GuestAddress(at)).unwrap();
        put(pd + i * 8, PTE_PS | table);
        put(pdpt + i * 8, pd | table);
        put(pml4 + i * 8, if i < 256 { pdpt | table } else { 0 });
    }
    pml4
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

proptest! {
    #![proptest_config(config(96))]

    /// Random calls over random memory, through kvmini's tables or tables
    /// that map memory many times over, never panic or fail, and nothing
    /// outside the granted directory changes.
    #[test]
    fn hypercalls_never_panic_or_escape(
        edits in vec(edit(MEM_2M), 0..16),
        calls in vec(call(), 1..24),
        ring0 in any::<bool>(),
        aliased in any::<bool>(),
    ) {
        let root = tempfile::tempdir().unwrap();
        let grant = root.path().join("grant");
        fs::create_dir_all(grant.join("d")).unwrap();
        fs::write(grant.join("a"), b"hello").unwrap();
        fs::create_dir(root.path().join("canary")).unwrap();
        fs::write(root.path().join("canary/secret"), SECRET).unwrap();
        fs::write(root.path().join("secret"), SECRET).unwrap();
        std::os::unix::fs::symlink("../canary", grant.join("up")).unwrap();
        std::os::unix::fs::symlink(".", grant.join("self")).unwrap();
        let grants = Grants::open(&[GrantSpec {
            host: grant.clone(),
            guest: "/".into(),
            read_only: false,
        }])
        .unwrap();

        let (mem, layout) = image(MEM_2M, true, &edits);
        for (i, path) in (0u64..).zip(PATH_LIST) {
            let mut p = path.to_vec();
            p.push(0);
            mem.write_slice(&p, GuestAddress(PATHS + i * 32)).unwrap();
        }
        let output = Capture::new();
        let mut hypercalls = Hypercalls::new(
            output.writer(),
            Box::new(std::io::sink()),
            Filesystem::new(grants, 16, Input::Null),
        );
        let cr3 = if aliased {
            aliased_tables(&mem)
        } else {
            layout.pml4()
        };
        let view = GuestView::new(&mem, KVMINI_LONG, cr3, !ring0);
        for (i, call) in (0u64..).zip(calls) {
            let (port, value) = match call {
                Call::Raw(port, value) => (port, value),
                Call::Fs(c) => {
                    let at = BLOCKS + i % 8 * 64;
                    write_fs_block(&mem, at, &c);
                    (c.port, u32::try_from(at).unwrap())
                }
                Call::Batch(calls, stop_on_error) => {
                    use kvmini_abi::batch::{BatchArgs, BatchEntry, BATCH_STOP_ON_ERROR};
                    for (j, c) in (0u64..).zip(&calls) {
                        let at = BLOCKS + j * 64;
                        write_fs_block(&mem, at, c);
                        let entry = BatchEntry { port: c.port as u16, reserved: [0; 3], block: at };
                        mem.write_slice(entry.as_bytes(), GuestAddress(BATCH_ENTRIES + j * 16)).unwrap();
                    }
                    let args = BatchArgs {
                        entries: BATCH_ENTRIES,
                        count: u32::try_from(calls.len()).unwrap(),
                        flags: if stop_on_error { BATCH_STOP_ON_ERROR } else { 0 },
                        result: i64::MIN,
                    };
                    mem.write_slice(args.as_bytes(), GuestAddress(BATCH_BLOCK)).unwrap();
                    (Port::Batch, u32::try_from(BATCH_BLOCK).unwrap())
                }
            };
            let action = hypercalls.out(port, value, &view);
            prop_assert!(action.is_ok(), "{}: {action:?}", port.name());
            if matches!(action, Ok(Action::Exit(_) | Action::Halt)) {
                break;
            }
        }
        drop(hypercalls);
        let want: BTreeSet<String> = ["canary", "grant", "secret"].map(String::from).into();
        prop_assert_eq!(names(root.path()), want);
        prop_assert_eq!(names(&root.path().join("canary")), BTreeSet::from(["secret".to_owned()]));
        prop_assert_eq!(fs::read(root.path().join("canary/secret")).unwrap(), SECRET);
        // Nothing outside the grant was read: not into guest memory, not to
        // the output.
        let mut guest = vec![0u8; usize_of(MEM_2M)];
        mem.read_slice(&mut guest, GuestAddress(0)).unwrap();
        let leaked = |bytes: &[u8]| bytes.windows(SECRET.len()).any(|w| w == SECRET);
        prop_assert!(!leaked(&guest), "the secret reached guest memory");
        prop_assert!(!leaked(&output.contents()), "the secret reached the output");
    }
}
