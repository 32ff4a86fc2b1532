//! Guest image loader: x86_64 ELF executables and flat binaries.
//!
//! Parsing ([`parse_elf`]) is separate from loading ([`load_elf`]) so the
//! CLI can reject a bad image before any guest memory exists, and so the
//! parser can be fuzzed on its own. Loading checks everything (file layout,
//! load window, guest memory backing) before it writes a single byte, so a
//! rejected image leaves guest memory untouched.
//!
//! The ELF reading itself is the `object` crate's, made for untrusted
//! input; kvmini adds its own checks on top ([`parse_elf`]). [`ElfFile`] also
//! reports what kvmini does not run yet (position-independent images, TLS,
//! stack flags, symbols), so that callers can explain a refusal or a crash.

mod elf;
mod error;
mod file;
mod linux;
mod load;
mod note;
mod symbols;

pub use elf::{parse_elf, ElfFile, ElfKind, Tls};
pub use error::{LoaderError, NotePlace};
pub use file::{read_image_file, ImageFileError};
pub use linux::{program_headers, ProgramHeaders};
pub use load::{load_elf, load_flat};
pub use symbols::{Location, Symbol, SymbolName, Symbols};

/// Where a static PIE Linux program (`ET_DYN` without an interpreter or
/// kvmini's note) is loaded: where fixed-address x86-64 executables are
/// usually linked (docs/linux.md).
pub const LINUX_PIE_BASE: u64 = 0x40_0000;

/// Segment flag: executable.
pub const PF_X: u32 = 1;
/// Segment flag: writable.
pub const PF_W: u32 = 2;
/// Segment flag: readable.
pub const PF_R: u32 = 4;

/// Where a loaded image may go: [start, end) in guest-physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadWindow {
    /// Lowest guest-physical address the image may occupy.
    pub start: u64,
    /// Exclusive upper bound of the image.
    pub end: u64,
}

/// An image as kvmini places it in guest memory: what [`parse_elf`]
/// checked, and what [`load_elf`] and [`load_flat`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// Guest address where execution starts; inside an executable segment.
    pub entry: u64,
    /// Lowest guest address occupied by the image.
    pub lowest: u64,
    /// Exclusive end of the image, bss included.
    pub highest: u64,
    /// The non-empty segments in program header order; never empty, never
    /// overlapping.
    pub segments: Vec<Segment>,
    /// The kvmini ABI version the image's note names (always this
    /// kvmini's); `None` for an image without the note and a flat binary.
    pub abi_version: Option<u32>,
}

/// One segment of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Offset of the segment's bytes in the file (0 for a flat binary).
    pub file_offset: u64,
    /// Guest address of the segment's first byte.
    pub vaddr: u64,
    /// Bytes copied from the file.
    pub file_size: u64,
    /// Bytes occupied in guest memory; the tail past `file_size` is zeroed (bss).
    pub mem_size: u64,
    /// Permission flags, a combination of [`PF_R`], [`PF_W`] and [`PF_X`].
    pub flags: u32,
}

impl Segment {
    /// Exclusive end of the segment in guest memory (cannot overflow:
    /// checked by the parser).
    #[must_use]
    pub fn end(&self) -> u64 {
        self.vaddr.saturating_add(self.mem_size)
    }
}

#[cfg(test)]
mod tests;
