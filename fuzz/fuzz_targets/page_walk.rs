//! Page walks over guest-controlled page tables.
//!
//! The input builds a small guest memory image (2 or 4 MiB, optionally
//! starting from kvmini's own identity map) by writing table entries, whole
//! tables and raw byte runs at guest-chosen places, then translates a few
//! guest virtual addresses through an arbitrary CR3 in any paging mode
//! (off, 4-level long mode, 32-bit with and without PSE, PAE), on a CPU
//! of the fuzzer's choosing (MAXPHYADDR, 1 GiB pages, PSE-36, EFER.NXE).
//! Checked:
//!
//! * `paging::translate` never panics and agrees exactly with an
//!   independent model of each walk written from the Intel SDM (result or
//!   error), reserved bits included;
//! * every translation either lies inside guest memory or is refused by
//!   `GuestView` (`OutsideMemory`);
//! * `GuestView::read_obj`, `for_each_piece` and `read_c_string` never
//!   panic, never report a piece outside guest memory, report pieces that
//!   add up to the requested length, report nothing on failure, and refuse
//!   buffers longer than guest memory (which only tables that map pages
//!   more than once could produce);
//! * when the image holds kvmini's identity map and the edits left its
//!   tables as built, a ring-3 view through those tables with the identity
//!   range declared (`GuestView::with_identity`, as the sandbox makes for
//!   a ring-3 long-mode guest) answers every call exactly as the same view
//!   without it, which walks the tables: `read_obj`, `for_each_piece`,
//!   `pieces`, `check_writable`, `read_c_string`, `c_string_pieces`, and
//!   the bytes `write_bytes` and `write_obj` leave in memory.
#![no_main]

use arbitrary::Arbitrary;
use kvmini::addr::{Gpa, Gva as Va};
use kvmini::arch::x86_64::page_tables;
use kvmini::layout::Layout;
use kvmini::memory::{self, GuestMemory};
use kvmini::paging::{self, Access, CpuPaging, Paging, PagingError, PagingMode, Translation};
use kvmini::view::{GuestView, ViewError};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};

const PAGE: u64 = 0x1000;
/// Physical address bits of a table entry (12..51).
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Most walks per input.
const MAX_WALKS: usize = 16;
/// Most memory edits per input.
const MAX_EDITS: usize = 64;

/// A guest physical address or a table entry.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Value {
    /// Any 64-bit value.
    Raw(u64),
    /// A page of guest memory (or one of the 16 pages just past its end),
    /// with low bits (flags or offset) and high bits (NX, ignored bits).
    Page { page: u16, low: u16, high: u16 },
}

impl Value {
    fn resolve(self, pages: u64) -> u64 {
        match self {
            Value::Raw(v) => v,
            Value::Page { page, low, high } => {
                ((u64::from(page) % (pages + 16)) * PAGE)
                    | u64::from(low & 0xFFF)
                    | (u64::from(high) << 48)
            }
        }
    }
}

/// One change to the memory image.
#[derive(Arbitrary, Debug)]
enum Edit {
    /// One 8-byte entry: entry `index` of page `page`.
    Entry { page: u16, index: u16, value: Value },
    /// Every entry of page `page` set to `value`, whose address part grows
    /// by `stride` pages from one entry to the next.
    Table { page: u16, value: Value, stride: u8 },
    /// Raw bytes at `offset`, cut at the end of memory.
    Bytes { offset: u32, bytes: Vec<u8> },
}

/// A guest virtual address.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Gva {
    /// Any 64-bit value, canonical or not.
    Raw(u64),
    /// A 32-bit address (for the 32-bit modes).
    Low32(u32),
    /// Table indices and an offset, sign-extended from bit 47.
    Indices {
        l4: u16,
        l3: u16,
        l2: u16,
        l1: u16,
        offset: u16,
    },
}

impl Gva {
    fn resolve(self) -> u64 {
        match self {
            Gva::Raw(v) => v,
            Gva::Low32(v) => u64::from(v),
            Gva::Indices {
                l4,
                l3,
                l2,
                l1,
                offset,
            } => {
                let idx = |i: u16| u64::from(i & 511);
                let gva = (idx(l4) << 39)
                    | (idx(l3) << 30)
                    | (idx(l2) << 21)
                    | (idx(l1) << 12)
                    | u64::from(offset & 0xFFF);
                if gva & (1 << 47) != 0 {
                    gva | 0xFFFF_0000_0000_0000
                } else {
                    gva
                }
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Walk {
    gva: Gva,
    user: bool,
    write: bool,
    /// Length for `for_each_piece` and limit for `read_c_string`.
    len: u64,
}

#[derive(Arbitrary, Debug)]
struct Input {
    four_mib: bool,
    identity_map: bool,
    map_null_page: bool,
    mode: Mode,
    cpu: Cpu,
    cr3: Value,
    edits: Vec<Edit>,
    walks: Vec<Walk>,
}

/// The paging modes, as the fuzzer picks them.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Mode {
    Disabled,
    Long,
    Legacy32 { pse: bool },
    Pae32,
}

/// The CPU the walk is made for.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Cpu {
    /// MAXPHYADDR is 32 + this, at most 52.
    phys_bits: u8,
    gib_pages: bool,
    pse36: bool,
    nxe: bool,
}

impl Cpu {
    fn maxphyaddr(self) -> u32 {
        32 + u32::from(self.phys_bits % 21)
    }
}

impl Mode {
    fn paging(self, cpu: Cpu) -> Paging {
        let mode = match self {
            Mode::Disabled => PagingMode::Disabled,
            Mode::Long => PagingMode::Long,
            Mode::Legacy32 { pse } => PagingMode::Legacy32 { pse },
            Mode::Pae32 => PagingMode::Pae32,
        };
        let features = CpuPaging {
            phys_bits: u8::try_from(cpu.maxphyaddr()).expect("at most 52"),
            gib_pages: cpu.gib_pages,
            pse36: cpu.pse36,
        };
        Paging::new(mode, cpu.nxe, features)
    }
}

/// Bits `low..=high` of a word.
fn bits(low: u32, high: u32) -> u64 {
    if low > high {
        return 0;
    }
    (u64::MAX >> (63 - high)) & (u64::MAX << low)
}

/// The SDM's "reserved (must be 0)" bits of a present 4-level entry.
fn long_rsvd(cpu: Cpu, level: u8, e: u64) -> u64 {
    let ps = e & 0x80 != 0;
    let mut r = bits(cpu.maxphyaddr(), 51);
    if !cpu.nxe {
        r |= bits(63, 63);
    }
    r | match (level, ps) {
        (4, _) => bits(7, 7),
        (3, true) if !cpu.gib_pages => bits(7, 7),
        (3, true) => bits(13, 29),
        (2, true) => bits(13, 20),
        _ => 0,
    }
}

/// The SDM's reserved bits of a present PAE entry.
fn pae_rsvd(cpu: Cpu, level: u8, e: u64) -> u64 {
    let m = cpu.maxphyaddr();
    match level {
        3 => bits(1, 2) | bits(5, 8) | bits(m, 63),
        _ => {
            let xd = if cpu.nxe { 0 } else { bits(63, 63) };
            let large = if level == 2 && e & 0x80 != 0 {
                bits(13, 20)
            } else {
                0
            };
            bits(m, 62) | xd | large
        }
    }
}

/// Fails the walk with the CPU's reserved-bit fault when `e` sets any of
/// `rsvd`.
fn check_rsvd(gva: u64, level: u8, e: u64, rsvd: u64) -> Result<(), PagingError> {
    if e & rsvd == 0 {
        Ok(())
    } else {
        Err(PagingError::Reserved {
            gva: Va::new(gva),
            level,
            entry: e,
        })
    }
}

/// One table entry of `width` bytes (4 or 8) at `at`, or the error kvmini
/// reports when it lies outside memory.
fn entry(mem: &GuestMemory, size: u64, gva: u64, at: u64, width: u64) -> Result<u64, PagingError> {
    if at + width > size {
        return Err(PagingError::TableOutsideMemory {
            gva: Va::new(gva),
            table: Gpa::new(at),
        });
    }
    let mut bytes = [0u8; 8];
    let n = usize::try_from(width).expect("4 or 8");
    mem.read_slice(&mut bytes[..n], GuestAddress(at))
        .expect("entry inside memory");
    Ok(u64::from_le_bytes(bytes))
}

/// The leaf of a walk: a page of `page_size` bytes at `frame`.
fn leaf(gva: u64, frame: u64, page_size: u64, user: bool, writable: bool) -> Translation {
    let offset = gva & (page_size - 1);
    Translation {
        gpa: Gpa::new(frame | offset),
        len_in_page: page_size - offset,
        user,
        writable,
    }
}

/// 4-level paging (Intel SDM 4.5).
fn model_long(
    mem: &GuestMemory,
    size: u64,
    cpu: Cpu,
    cr3: u64,
    gva: u64,
) -> Result<Translation, PagingError> {
    let sign = gva >> 47;
    if sign != 0 && sign != (1 << 17) - 1 {
        return Err(PagingError::NonCanonical(Va::new(gva)));
    }
    let mut table = cr3 & ADDR_MASK;
    let (mut user, mut writable) = (true, true);
    for level in (1..=4u8).rev() {
        let shift = 3 + 9 * u32::from(level);
        let e = entry(mem, size, gva, table + ((gva >> shift) & 511) * 8, 8)?;
        if e & 1 == 0 {
            return Err(PagingError::NotPresent {
                gva: Va::new(gva),
                level,
            });
        }
        check_rsvd(gva, level, e, long_rsvd(cpu, level, e))?;
        writable &= e & 2 != 0;
        user &= e & 4 != 0;
        let large = (level == 2 || level == 3) && e & 0x80 != 0;
        if level == 1 || large {
            let page_size = 1u64 << shift;
            return Ok(leaf(
                gva,
                e & ADDR_MASK & !(page_size - 1),
                page_size,
                user,
                writable,
            ));
        }
        table = e & ADDR_MASK;
    }
    unreachable!("level 1 is a leaf")
}

/// 32-bit paging (Intel SDM 4.3), 4 MiB pages when `pse`, reaching past
/// 4 GiB with PSE-36.
fn model_legacy32(
    mem: &GuestMemory,
    size: u64,
    cpu: Cpu,
    cr3: u64,
    gva: u64,
    pse: bool,
) -> Result<Translation, PagingError> {
    if gva >> 32 != 0 {
        return Err(PagingError::Beyond32Bits(Va::new(gva)));
    }
    let pde = entry(mem, size, gva, (cr3 & 0xFFFF_F000) + (gva >> 22) * 4, 4)?;
    if pde & 1 == 0 {
        return Err(PagingError::NotPresent {
            gva: Va::new(gva),
            level: 2,
        });
    }
    if pse && pde & 0x80 != 0 {
        // M = min(MAXPHYADDR, 40) with PSE-36, else 32: entry bits
        // 13..M-20 are address bits 32..M-1, bits M-19..21 reserved.
        let m = if cpu.pse36 {
            cpu.maxphyaddr().min(40)
        } else {
            32
        };
        check_rsvd(gva, 2, pde, bits(m - 19, 21))?;
        let high = if m > 32 {
            (pde >> 13) & bits(0, m - 33)
        } else {
            0
        };
        let frame = ((pde >> 22) << 22) | (high << 32);
        return Ok(leaf(gva, frame, 4 << 20, pde & 4 != 0, pde & 2 != 0));
    }
    let pte = entry(
        mem,
        size,
        gva,
        (pde & 0xFFFF_F000) + ((gva >> 12) & 0x3FF) * 4,
        4,
    )?;
    if pte & 1 == 0 {
        return Err(PagingError::NotPresent {
            gva: Va::new(gva),
            level: 1,
        });
    }
    let user = pde & pte & 4 != 0;
    let writable = pde & pte & 2 != 0;
    Ok(leaf(gva, pte & 0xFFFF_F000, PAGE, user, writable))
}

/// PAE paging (Intel SDM 4.4): the PDPT entries carry no access bits.
fn model_pae32(
    mem: &GuestMemory,
    size: u64,
    cpu: Cpu,
    cr3: u64,
    gva: u64,
) -> Result<Translation, PagingError> {
    if gva >> 32 != 0 {
        return Err(PagingError::Beyond32Bits(Va::new(gva)));
    }
    let pdpte = entry(mem, size, gva, (cr3 & 0xFFFF_FFE0) + (gva >> 30) * 8, 8)?;
    if pdpte & 1 == 0 {
        return Err(PagingError::NotPresent {
            gva: Va::new(gva),
            level: 3,
        });
    }
    check_rsvd(gva, 3, pdpte, pae_rsvd(cpu, 3, pdpte))?;
    let pde = entry(
        mem,
        size,
        gva,
        (pdpte & ADDR_MASK) + ((gva >> 21) & 511) * 8,
        8,
    )?;
    if pde & 1 == 0 {
        return Err(PagingError::NotPresent {
            gva: Va::new(gva),
            level: 2,
        });
    }
    check_rsvd(gva, 2, pde, pae_rsvd(cpu, 2, pde))?;
    if pde & 0x80 != 0 {
        let frame = pde & ADDR_MASK & !((2 << 20) - 1);
        return Ok(leaf(gva, frame, 2 << 20, pde & 4 != 0, pde & 2 != 0));
    }
    let pte = entry(
        mem,
        size,
        gva,
        (pde & ADDR_MASK) + ((gva >> 12) & 511) * 8,
        8,
    )?;
    if pte & 1 == 0 {
        return Err(PagingError::NotPresent {
            gva: Va::new(gva),
            level: 1,
        });
    }
    check_rsvd(gva, 1, pte, pae_rsvd(cpu, 1, pte))?;
    let user = pde & pte & 4 != 0;
    let writable = pde & pte & 2 != 0;
    Ok(leaf(gva, pte & ADDR_MASK, PAGE, user, writable))
}

/// What a walk should give, written independently of kvmini from the
/// Intel SDM.
fn model(
    mem: &GuestMemory,
    size: u64,
    mode: Mode,
    cpu: Cpu,
    cr3: u64,
    gva: u64,
    a: Access,
) -> Result<Translation, PagingError> {
    let t = match mode {
        Mode::Disabled => leaf(gva, gva & !(PAGE - 1), PAGE, true, true),
        Mode::Long => model_long(mem, size, cpu, cr3, gva)?,
        Mode::Legacy32 { pse } => model_legacy32(mem, size, cpu, cr3, gva, pse)?,
        Mode::Pae32 => model_pae32(mem, size, cpu, cr3, gva)?,
    };
    if a.user && !t.user {
        Err(PagingError::NotUser(Va::new(gva)))
    } else if a.write && !t.writable {
        Err(PagingError::NotWritable(Va::new(gva)))
    } else {
        Ok(t)
    }
}

fn apply(mem: &GuestMemory, size: u64, edit: &Edit) {
    let pages = size / PAGE;
    let put = |at: u64, value: u64| {
        mem.write_obj(value, GuestAddress(at))
            .expect("entry inside memory");
    };
    match edit {
        Edit::Entry { page, index, value } => {
            let at = (u64::from(*page) % pages) * PAGE + u64::from(index & 511) * 8;
            put(at, value.resolve(pages));
        }
        Edit::Table {
            page,
            value,
            stride,
        } => {
            let base = (u64::from(*page) % pages) * PAGE;
            let first = value.resolve(pages);
            for i in 0..512 {
                put(
                    base + i * 8,
                    first.wrapping_add(i * u64::from(*stride) * PAGE),
                );
            }
        }
        Edit::Bytes { offset, bytes } => {
            let at = u64::from(*offset) % size;
            let room = usize::try_from(size - at).unwrap_or(usize::MAX);
            let bytes = &bytes[..bytes.len().min(room)];
            mem.write_slice(bytes, GuestAddress(at))
                .expect("bytes inside memory");
        }
    }
}

/// Lengths up to twice the memory size (longer ones are refused the same
/// way), or anything when the range wraps.
fn buffer_len(gva: u64, len: u64, size: u64) -> u64 {
    if gva.checked_add(len).is_none() {
        len
    } else {
        len % (2 * size + 1)
    }
}

/// kvmini's page tables: everything from its PML4 up to its GDT.
fn table_bytes(mem: &GuestMemory, layout: &Layout) -> Vec<u8> {
    let mut bytes = vec![0; usize::try_from(layout.gdt() - layout.pml4()).expect("32 KiB")];
    mem.read_slice(&mut bytes, GuestAddress(layout.pml4()))
        .expect("tables inside memory");
    bytes
}

/// A string as a view reads it, and as it finds its pieces.
type StringAnswer = (
    Result<(), ViewError>,
    Vec<u8>,
    Result<u64, ViewError>,
    Vec<(u64, u64)>,
);

fn string_answer(view: &GuestView<'_>, gva: u64, limit: u64) -> StringAnswer {
    let mut out = Vec::new();
    let read = view.read_c_string(Va::new(gva), limit, &mut out);
    let mut pieces = Vec::new();
    let found = view.c_string_pieces(Va::new(gva), limit, |gpa, n| pieces.push((gpa, n)));
    (read, out, found, pieces)
}

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
    short_string: StringAnswer,
    long_string: StringAnswer,
}

fn answers(view: &GuestView<'_>, gva: u64, len: u64, write: bool, limit: u64) -> Answers {
    let mut seen = Vec::new();
    let each = view
        .for_each_piece(Va::new(gva), len, write, |gpa, n| seen.push((gpa, n)))
        .map(|()| seen);
    // Not empty, so that a call that forgets to clear it shows.
    let mut pieces = vec![(1, 1)];
    let collected = view
        .pieces(Va::new(gva), len, write, &mut pieces)
        .map(|()| pieces);
    Answers {
        byte: view.read_obj(Va::new(gva)),
        word: view.read_obj(Va::new(gva)),
        block: view.read_obj(Va::new(gva)),
        each,
        pieces: collected,
        writable: view.check_writable(Va::new(gva), len),
        short_string: string_answer(view, gva, limit % (4 * PAGE + 1)),
        // kvmini's tables map each page once, and the view caps a limit
        // at the memory size, so any limit is cheap here.
        long_string: string_answer(view, gva, limit),
    }
}

/// The bytes of guest memory at `ranges`, cut at the end of memory.
fn bytes_at(mem: &GuestMemory, size: u64, ranges: &[(u64, u64)]) -> Vec<Vec<u8>> {
    ranges
        .iter()
        .map(|&(at, n)| {
            let n = n.min(size.saturating_sub(at));
            let mut buf = vec![0; usize::try_from(n).expect("small range")];
            if n > 0 {
                mem.read_slice(&mut buf, GuestAddress(at))
                    .expect("range inside memory");
            }
            buf
        })
        .collect()
}

/// Runs `write` and returns its result and what it left at `ranges`, then
/// puts back what was there before.
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
            mem.write_slice(old, GuestAddress(at)).expect("restore");
        }
    }
    (result, after)
}

/// The identity view `fast` and the walked view `walked` (the same, without
/// the identity range) agree on `walk`'s address, and on that address
/// folded into guest memory and just past it, where the identity range is.
fn check_identity(
    mem: &GuestMemory,
    size: u64,
    walked: &GuestView<'_>,
    fast: &GuestView<'_>,
    walk: &Walk,
) {
    let raw = walk.gva.resolve();
    for gva in [raw, raw % (size + 2 * PAGE)] {
        let len = buffer_len(gva, walk.len, size);
        let want = answers(walked, gva, len, walk.write, walk.len);
        let got = answers(fast, gva, len, walk.write, walk.len);
        assert_eq!(got, want, "identity view at {gva:#x}+{len:#x}");

        // Writes: where the walk puts the bytes, and where the identity
        // map would, so that a write to the wrong place shows either way.
        let n = len.min(3 * PAGE);
        let data: Vec<u8> = (0..n).map(|i| i.to_le_bytes()[0] ^ 0x5A).collect();
        let mut ranges = Vec::new();
        let _ = walked.pieces(Va::new(gva), n, true, &mut ranges);
        if gva < size {
            ranges.push((gva, n));
        }
        let want = written(mem, size, &ranges, || {
            walked.write_bytes(Va::new(gva), &data)
        });
        let got = written(mem, size, &ranges, || fast.write_bytes(Va::new(gva), &data));
        assert_eq!(got, want, "identity write at {gva:#x}+{n:#x}");
        let word = 0x0123_4567_89AB_CDEF_u64;
        let _ = walked.pieces(Va::new(gva), 8, true, &mut ranges);
        if gva < size {
            ranges.push((gva, 8));
        }
        let want = written(mem, size, &ranges, || walked.write_obj(Va::new(gva), word));
        let got = written(mem, size, &ranges, || fast.write_obj(Va::new(gva), word));
        assert_eq!(got, want, "identity write_obj at {gva:#x}");
    }
}

fn check_walk(mem: &GuestMemory, size: u64, mode: Mode, cpu: Cpu, cr3: u64, walk: &Walk) {
    let gva = walk.gva.resolve();
    let access = Access {
        user: walk.user,
        write: walk.write,
    };
    let got = paging::translate(mem, mode.paging(cpu), cr3, Va::new(gva), access);
    let want = model(mem, size, mode, cpu, cr3, gva, access);
    assert_eq!(got, want, "{mode:?} {cpu:?} cr3 {cr3:#x} gva {gva:#x}");
    let mode = mode.paging(cpu);

    let view = GuestView::new(mem, mode, cr3, walk.user);
    // A one-byte read is refused exactly when the translation fails or
    // lands outside memory, and otherwise reads the translated byte.
    let byte = view.read_obj::<u8>(Va::new(gva));
    match got {
        // The range [gva, gva + 1) wraps: refused before any walk.
        _ if gva == u64::MAX => assert!(byte.is_err()),
        Ok(t) if t.gpa.raw() < size => {
            let direct: u8 = mem
                .read_obj(GuestAddress(t.gpa.raw()))
                .expect("inside memory");
            assert_eq!(byte, Ok(direct), "gva {gva:#x} -> {:#x}", t.gpa);
        }
        Ok(t) => assert_eq!(
            byte,
            Err(ViewError::OutsideMemory {
                gva: Va::new(gva),
                gpa: t.gpa
            })
        ),
        // read_obj checks reading only, so it may succeed where a
        // write-checked translation failed.
        Err(_) if !walk.write => assert!(byte.is_err(), "gva {gva:#x}"),
        Err(_) => {}
    }

    // Lengths up to twice the memory size (longer ones are refused the
    // same way), or anything when the range wraps.
    let len = buffer_len(gva, walk.len, size);
    let mut pieces = Vec::new();
    let result = view.for_each_piece(Va::new(gva), len, walk.write, |gpa, n| {
        pieces.push((gpa, n))
    });
    // No buffer is longer than guest memory: tables that map pages more
    // than once must not make one call walk without end.
    assert!(
        len <= size || result.is_err(),
        "{len:#x}-byte buffer accepted"
    );
    match result {
        Ok(()) => {
            assert_eq!(pieces.iter().map(|p| p.1).sum::<u64>(), len);
            let mut at = gva;
            for &(gpa, n) in &pieces {
                assert!(n > 0, "empty piece");
                assert!(
                    gpa < size && n <= size - gpa,
                    "piece {gpa:#x}+{n:#x} outside {size:#x}"
                );
                // A piece is a run of physically contiguous pages: each
                // page in it translates to the next bytes of the piece.
                let mut done = 0;
                while done < n {
                    let t = paging::translate(mem, mode, cr3, Va::new(at + done), access)
                        .expect("piece translates");
                    assert_eq!(t.gpa.raw(), gpa + done, "piece at {:#x}", at + done);
                    done += t.len_in_page.min(n - done);
                }
                at += n;
            }
        }
        Err(_) => assert!(pieces.is_empty(), "failed walk reported pieces"),
    }

    // A small limit: `read_c_string` itself does not stop at the memory
    // size, so with tables that map one page again and again a large limit
    // means a walk (and a string) that long (see docs/fuzzing.md).
    let limit = walk.len % (4 * PAGE + 1);
    let mut out = Vec::new();
    match view.read_c_string(Va::new(gva), limit, &mut out) {
        Ok(()) => {
            assert!(
                (out.len() as u64) < limit,
                "string of {} within {limit}",
                out.len()
            );
            assert!(!out.contains(&0));
            // The string and its NUL are exactly what the pieces hold.
            let mut bytes = Vec::new();
            view.for_each_piece(Va::new(gva), out.len() as u64 + 1, false, |gpa, n| {
                let mut buf = vec![0; usize::try_from(n).expect("small piece")];
                mem.read_slice(&mut buf, GuestAddress(gpa))
                    .expect("piece inside memory");
                bytes.extend_from_slice(&buf);
            })
            .expect("a string that was read is mapped");
            assert_eq!(bytes.pop(), Some(0));
            assert_eq!(bytes, out);
        }
        Err(_) => assert!(out.len() as u64 <= limit),
    }
}

fuzz_target!(|input: Input| {
    let size: u64 = if input.four_mib { 4 << 20 } else { 2 << 20 };
    let mem = memory::allocate(size).expect("guest memory");
    let layout = Layout::new(size);
    let mut built = None;
    if input.identity_map {
        page_tables::build_identity_map(&mem, &layout, input.map_null_page).expect("identity map");
        built = Some(table_bytes(&mem, &layout));
    }
    for edit in input.edits.iter().take(MAX_EDITS) {
        apply(&mem, size, edit);
    }
    // The identity range is a promise about kvmini's tables: it holds only
    // while they are as kvmini built them (a ring-3 guest cannot change
    // them; these edits can).
    let identity = built
        .filter(|tables| *tables == table_bytes(&mem, &layout))
        .map(|_| {
            // kvmini's long mode leaves EFER.NXE clear.
            let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
            let walked = GuestView::new(&mem, long, layout.pml4(), true);
            let range = page_tables::user_identity_range(&layout, input.map_null_page);
            (walked, walked.with_identity(range))
        });
    let mode = input.mode;
    let cr3 = match input.cr3 {
        // Page 0 of the Value space is kvmini's own PML4 when the identity
        // map is built, so that walks start from real tables.
        Value::Page { page: 0, .. } if input.identity_map => layout.pml4(),
        other => other.resolve(size / PAGE),
    };
    for walk in input.walks.iter().take(MAX_WALKS) {
        check_walk(&mem, size, mode, input.cpu, cr3, walk);
        if let Some((walked, fast)) = &identity {
            check_identity(&mem, size, walked, fast, walk);
        }
    }
});
