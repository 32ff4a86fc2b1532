//! Page walks over guest-controlled page tables.
//!
//! The input builds a small guest memory image (2 or 4 MiB, optionally
//! starting from kvmini's own identity map) by writing table entries, whole
//! tables and raw byte runs at guest-chosen places, then translates a few
//! guest virtual addresses through an arbitrary CR3 in any paging mode
//! (off, 4-level long mode, 32-bit with and without PSE, PAE). Checked:
//!
//! * `paging::translate` never panics and agrees exactly with an
//!   independent model of each walk written from the Intel SDM (result or
//!   error);
//! * every translation either lies inside guest memory or is refused by
//!   `GuestView` (`OutsideMemory`);
//! * `GuestView::read_obj`, `for_each_piece` and `read_c_string` never
//!   panic, never report a piece outside guest memory, report pieces that
//!   add up to the requested length, report nothing on failure, and refuse
//!   buffers longer than guest memory (which only tables that map pages
//!   more than once could produce).
#![no_main]

use arbitrary::Arbitrary;
use kvmini::layout::Layout;
use kvmini::memory::{self, GuestMemory};
use kvmini::paging::{self, Access, PagingError, PagingMode, Translation};
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

impl Mode {
    fn paging(self) -> PagingMode {
        match self {
            Mode::Disabled => PagingMode::Disabled,
            Mode::Long => PagingMode::Long,
            Mode::Legacy32 { pse } => PagingMode::Legacy32 { pse },
            Mode::Pae32 => PagingMode::Pae32,
        }
    }
}

/// One table entry of `width` bytes (4 or 8) at `at`, or the error kvmini
/// reports when it lies outside memory.
fn entry(mem: &GuestMemory, size: u64, gva: u64, at: u64, width: u64) -> Result<u64, PagingError> {
    if at + width > size {
        return Err(PagingError::TableOutsideMemory { gva, table: at });
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
        gpa: frame | offset,
        len_in_page: page_size - offset,
        user,
        writable,
    }
}

/// 4-level paging (Intel SDM 4.5), without reserved-bit checks (kvmini
/// makes none).
fn model_long(
    mem: &GuestMemory,
    size: u64,
    cr3: u64,
    gva: u64,
) -> Result<Translation, PagingError> {
    let sign = gva >> 47;
    if sign != 0 && sign != (1 << 17) - 1 {
        return Err(PagingError::NonCanonical(gva));
    }
    let mut table = cr3 & ADDR_MASK;
    let (mut user, mut writable) = (true, true);
    for level in (1..=4u8).rev() {
        let shift = 3 + 9 * u32::from(level);
        let e = entry(mem, size, gva, table + ((gva >> shift) & 511) * 8, 8)?;
        if e & 1 == 0 {
            return Err(PagingError::NotPresent { gva, level });
        }
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

/// 32-bit paging (Intel SDM 4.3), PSE-36 4 MiB pages when `pse`.
fn model_legacy32(
    mem: &GuestMemory,
    size: u64,
    cr3: u64,
    gva: u64,
    pse: bool,
) -> Result<Translation, PagingError> {
    if gva >> 32 != 0 {
        return Err(PagingError::Beyond32Bits(gva));
    }
    let pde = entry(mem, size, gva, (cr3 & 0xFFFF_F000) + (gva >> 22) * 4, 4)?;
    if pde & 1 == 0 {
        return Err(PagingError::NotPresent { gva, level: 2 });
    }
    if pse && pde & 0x80 != 0 {
        let frame = ((pde >> 22) << 22) | (((pde >> 13) & 0xFF) << 32);
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
        return Err(PagingError::NotPresent { gva, level: 1 });
    }
    let user = pde & pte & 4 != 0;
    let writable = pde & pte & 2 != 0;
    Ok(leaf(gva, pte & 0xFFFF_F000, PAGE, user, writable))
}

/// PAE paging (Intel SDM 4.4): the PDPT entries carry no access bits.
fn model_pae32(
    mem: &GuestMemory,
    size: u64,
    cr3: u64,
    gva: u64,
) -> Result<Translation, PagingError> {
    if gva >> 32 != 0 {
        return Err(PagingError::Beyond32Bits(gva));
    }
    let pdpte = entry(mem, size, gva, (cr3 & 0xFFFF_FFE0) + (gva >> 30) * 8, 8)?;
    if pdpte & 1 == 0 {
        return Err(PagingError::NotPresent { gva, level: 3 });
    }
    let pde = entry(
        mem,
        size,
        gva,
        (pdpte & ADDR_MASK) + ((gva >> 21) & 511) * 8,
        8,
    )?;
    if pde & 1 == 0 {
        return Err(PagingError::NotPresent { gva, level: 2 });
    }
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
        return Err(PagingError::NotPresent { gva, level: 1 });
    }
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
    cr3: u64,
    gva: u64,
    a: Access,
) -> Result<Translation, PagingError> {
    let t = match mode {
        Mode::Disabled => leaf(gva, gva & !(PAGE - 1), PAGE, true, true),
        Mode::Long => model_long(mem, size, cr3, gva)?,
        Mode::Legacy32 { pse } => model_legacy32(mem, size, cr3, gva, pse)?,
        Mode::Pae32 => model_pae32(mem, size, cr3, gva)?,
    };
    if a.user && !t.user {
        Err(PagingError::NotUser(gva))
    } else if a.write && !t.writable {
        Err(PagingError::NotWritable(gva))
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

fn check_walk(mem: &GuestMemory, size: u64, mode: Mode, cr3: u64, walk: &Walk) {
    let gva = walk.gva.resolve();
    let access = Access {
        user: walk.user,
        write: walk.write,
    };
    let got = paging::translate(mem, mode.paging(), cr3, gva, access);
    let want = model(mem, size, mode, cr3, gva, access);
    assert_eq!(got, want, "{mode:?} cr3 {cr3:#x} gva {gva:#x}");
    let mode = mode.paging();

    let view = GuestView::new(mem, mode, cr3, walk.user);
    // A one-byte read is refused exactly when the translation fails or
    // lands outside memory, and otherwise reads the translated byte.
    let byte = view.read_obj::<u8>(gva);
    match got {
        // The range [gva, gva + 1) wraps: refused before any walk.
        _ if gva == u64::MAX => assert!(byte.is_err()),
        Ok(t) if t.gpa < size => {
            let direct: u8 = mem.read_obj(GuestAddress(t.gpa)).expect("inside memory");
            assert_eq!(byte, Ok(direct), "gva {gva:#x} -> {:#x}", t.gpa);
        }
        Ok(t) => assert_eq!(byte, Err(ViewError::OutsideMemory { gva, gpa: t.gpa })),
        // read_obj checks reading only, so it may succeed where a
        // write-checked translation failed.
        Err(_) if !walk.write => assert!(byte.is_err(), "gva {gva:#x}"),
        Err(_) => {}
    }

    // Lengths up to twice the memory size (longer ones are refused the
    // same way), or anything when the range wraps.
    let len = if gva.checked_add(walk.len).is_none() {
        walk.len
    } else {
        walk.len % (2 * size + 1)
    };
    let mut pieces = Vec::new();
    let result = view.for_each_piece(gva, len, walk.write, |gpa, n| pieces.push((gpa, n)));
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
                    let t = paging::translate(mem, mode, cr3, at + done, access)
                        .expect("piece translates");
                    assert_eq!(t.gpa, gpa + done, "piece at {:#x}", at + done);
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
    match view.read_c_string(gva, limit, &mut out) {
        Ok(()) => {
            assert!(
                (out.len() as u64) < limit,
                "string of {} within {limit}",
                out.len()
            );
            assert!(!out.contains(&0));
            // The string and its NUL are exactly what the pieces hold.
            let mut bytes = Vec::new();
            view.for_each_piece(gva, out.len() as u64 + 1, false, |gpa, n| {
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
    if input.identity_map {
        paging::build_identity_map(&mem, &layout, input.map_null_page).expect("identity map");
    }
    for edit in input.edits.iter().take(MAX_EDITS) {
        apply(&mem, size, edit);
    }
    let mode = input.mode;
    let cr3 = match input.cr3 {
        // Page 0 of the Value space is kvmini's own PML4 when the identity
        // map is built, so that walks start from real tables.
        Value::Page { page: 0, .. } if input.identity_map => layout.pml4(),
        other => other.resolve(size / PAGE),
    };
    for walk in input.walks.iter().take(MAX_WALKS) {
        check_walk(&mem, size, mode, cr3, walk);
    }
});
