//! The ELF64 file header and program headers of a core file, little
//! endian, laid out by hand: the header, the program headers (the note
//! segment first), the notes, then the memory from a page boundary.

use super::segments::Segment;
use crate::layout::PAGE_SIZE;

const EHDR_SIZE: u16 = 64;
const PHDR_SIZE: u16 = 56;
const ET_CORE: u16 = 4;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

/// Where each part of the file lies.
pub(super) struct Layout {
    /// Program headers, the note segment's included.
    pub(super) headers: u16,
    pub(super) notes_offset: u64,
    pub(super) notes_size: u64,
    /// The first byte of memory, page-aligned.
    pub(super) data_offset: u64,
}

impl Layout {
    /// The layout of a core with `segments` load segments (at most
    /// [`super::segments::MAX_SEGMENTS`]) and `notes_size` bytes of notes.
    pub(super) fn new(segments: usize, notes_size: usize) -> Self {
        let headers = u16::try_from(segments + 1).unwrap_or(u16::MAX);
        let notes_offset = u64::from(EHDR_SIZE) + u64::from(headers) * u64::from(PHDR_SIZE);
        let notes_size = notes_size as u64;
        let data_offset = (notes_offset + notes_size).next_multiple_of(PAGE_SIZE);
        Layout {
            headers,
            notes_offset,
            notes_size,
            data_offset,
        }
    }
}

/// The ELF file header of a core.
pub(super) fn header(layout: &Layout) -> Vec<u8> {
    let mut b = Vec::with_capacity(usize::from(EHDR_SIZE));
    // Magic, 64-bit, little endian, version 1, System V ABI.
    b.extend_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1, 1, 0]);
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&ET_CORE.to_le_bytes());
    b.extend_from_slice(&EM_X86_64.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    // Entry, program header offset, section header offset.
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&u64::from(EHDR_SIZE).to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    // Flags, then the header, program header and section header sizes.
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&EHDR_SIZE.to_le_bytes());
    b.extend_from_slice(&PHDR_SIZE.to_le_bytes());
    b.extend_from_slice(&layout.headers.to_le_bytes());
    // No sections: their entry size, count and name table index are 0.
    b.extend_from_slice(&[0; 6]);
    b
}

/// A program header.
fn program_header(
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    size: u64,
    align: u64,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(usize::from(PHDR_SIZE));
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    b.extend_from_slice(&vaddr.to_le_bytes());
    // Physical address: unused in a core.
    b.extend_from_slice(&0u64.to_le_bytes());
    // The file size and memory size are the same: every page has bytes.
    b.extend_from_slice(&size.to_le_bytes());
    b.extend_from_slice(&size.to_le_bytes());
    b.extend_from_slice(&align.to_le_bytes());
    b
}

/// The note segment's header.
pub(super) fn note_header(layout: &Layout) -> Vec<u8> {
    program_header(PT_NOTE, 0, layout.notes_offset, 0, layout.notes_size, 4)
}

/// A load segment's header.
pub(super) fn load_header(layout: &Layout, segment: &Segment) -> Vec<u8> {
    program_header(
        PT_LOAD,
        segment.flags,
        layout.data_offset + segment.offset,
        segment.vaddr,
        segment.size,
        PAGE_SIZE,
    )
}
