//! Guest image loader: static x86_64 ELF executables and flat binaries.
//!
//! Parsing ([`parse_elf`]) is separate from loading ([`load_elf`]) so the
//! CLI can reject a bad image before any guest memory exists, and so the
//! parser can be fuzzed on its own. Loading checks everything (file layout,
//! load window, guest memory backing) before it writes a single byte, so a
//! rejected image leaves guest memory untouched.

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError, GuestMemoryMmap, Permissions};

/// Segment flag: executable.
pub const PF_X: u32 = 1;
/// Segment flag: writable.
pub const PF_W: u32 = 2;
/// Segment flag: readable.
pub const PF_R: u32 = 4;

/// Size of the ELF64 file header.
const EHDR_SIZE: usize = 64;
/// Minimum size of one ELF64 program header.
const PHDR_SIZE: u16 = 56;
const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ELFDATA2MSB: u8 = 2;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;

/// Errors of reading a guest image from a file.
#[derive(Debug, thiserror::Error)]
pub enum ImageFileError {
    /// The file could not be opened or read.
    #[error("cannot read guest {}", .path.display())]
    Read {
        /// The path given.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The path names something other than a regular file.
    #[error("guest {} is {kind}, not a regular file: a guest image must be a regular file", .path.display())]
    NotRegular {
        /// The path given.
        path: std::path::PathBuf,
        /// What it is instead ("a FIFO (named pipe)", "a character device", ...).
        kind: &'static str,
    },
    /// The file is larger than guest memory, so it cannot be a guest.
    #[error("guest {} is larger than guest memory ({limit} bytes): not a guest image for this memory size", .path.display())]
    TooLarge {
        /// The path given.
        path: std::path::PathBuf,
        /// Guest memory in bytes.
        limit: u64,
    },
}

/// What a file that is not a regular file is, for messages.
fn file_kind(file_type: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a directory")
    } else if file_type.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if file_type.is_char_device() {
        Some("a character device")
    } else if file_type.is_block_device() {
        Some("a block device")
    } else if file_type.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

/// Reads the guest image at `path`: a regular file of at most `limit`
/// bytes (the guest memory it is for). Nothing here waits on another
/// party: the file is checked before it is opened (so that a FIFO, a
/// terminal or a device with side effects on open is never opened), opened
/// with `O_NONBLOCK` in case it was replaced in between, checked again, and
/// read for at most `limit + 1` bytes, so that a file that grows cannot
/// make kvmini read without end.
pub fn read_image_file(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, ImageFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read = |source| ImageFileError::Read {
        path: path.to_owned(),
        source,
    };
    let not_regular = |kind| ImageFileError::NotRegular {
        path: path.to_owned(),
        kind,
    };
    let too_large = || ImageFileError::TooLarge {
        path: path.to_owned(),
        limit,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if let Some(kind) = file_kind(meta.file_type()) {
        return Err(not_regular(kind));
    }
    if meta.len() > limit {
        return Err(too_large());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read)?;
    let meta = file.metadata().map_err(read)?;
    if let Some(kind) = file_kind(meta.file_type()) {
        return Err(not_regular(kind));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Where a loaded image may go: [start, end) in guest-physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadWindow {
    /// Lowest guest-physical address the image may occupy.
    pub start: u64,
    /// Exclusive upper bound of the image.
    pub end: u64,
}

/// A loaded image: its entry point and the guest-physical range it occupies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// Guest address where execution starts.
    pub entry: u64,
    /// Lowest guest address occupied by the image.
    pub lowest: u64,
    /// Exclusive end of the image, bss included.
    pub highest: u64,
    /// The segments placed in guest memory, in program header order.
    pub segments: Vec<Segment>,
}

/// One segment placed in guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Guest address of the segment's first byte.
    pub vaddr: u64,
    /// Bytes copied from the image.
    pub file_size: u64,
    /// Bytes occupied in guest memory; the tail past `file_size` is zeroed.
    pub mem_size: u64,
    /// Permission flags, a combination of [`PF_R`], [`PF_W`] and [`PF_X`].
    pub flags: u32,
}

/// One loadable segment as described by the ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfSegment {
    /// Offset of the segment's bytes in the file.
    pub file_offset: u64,
    /// Guest address of the segment's first byte.
    pub vaddr: u64,
    /// Bytes stored in the file.
    pub file_size: u64,
    /// Bytes occupied in guest memory; the tail past `file_size` is bss.
    pub mem_size: u64,
    /// Permission flags, a combination of [`PF_R`], [`PF_W`] and [`PF_X`].
    pub flags: u32,
}

impl ElfSegment {
    /// Exclusive end of the segment in guest memory (cannot overflow: checked by [`parse_elf`]).
    #[must_use]
    pub fn end(&self) -> u64 {
        self.vaddr.saturating_add(self.mem_size)
    }
}

impl From<&ElfSegment> for Segment {
    fn from(s: &ElfSegment) -> Self {
        Segment {
            vaddr: s.vaddr,
            file_size: s.file_size,
            mem_size: s.mem_size,
            flags: s.flags,
        }
    }
}

/// A parsed and checked static x86_64 ELF executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// Entry point; lies inside an executable segment.
    pub entry: u64,
    /// Lowest guest address of any loadable segment.
    pub lowest: u64,
    /// Exclusive end of the highest loadable segment, bss included.
    pub highest: u64,
    /// Non-empty PT_LOAD segments in program header order; never empty, never overlapping.
    pub segments: Vec<ElfSegment>,
}

/// Why an image could not be parsed or loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// The file ends before the 64-byte ELF header does.
    #[error("file too short for an ELF header: {}, need 64", crate::memory::ByteSize(*len as u64))]
    TruncatedHeader {
        /// File length in bytes.
        len: usize,
    },
    /// The file does not start with the ELF magic.
    #[error("not an ELF file")]
    NotElf,
    /// ELFCLASS32 file.
    #[error("32-bit ELF: kvmini runs 64-bit (x86_64) guests")]
    Elf32,
    /// EI_CLASS is neither 32- nor 64-bit.
    #[error("unknown ELF class {0}: kvmini runs 64-bit (x86_64) guests")]
    BadClass(u8),
    /// ELFDATA2MSB file.
    #[error("big-endian ELF: kvmini runs little-endian x86_64 guests")]
    BigEndian,
    /// EI_DATA is neither little- nor big-endian.
    #[error("unknown ELF data encoding {0}: kvmini runs little-endian x86_64 guests")]
    BadDataEncoding(u8),
    /// e_machine is not EM_X86_64.
    #[error(
        "guest is built for machine {machine} ({name}): kvmini runs x86_64 (62) guests",
        name = machine_name(*.machine)
    )]
    WrongMachine {
        /// The file's e_machine.
        machine: u16,
    },
    /// ET_DYN without an interpreter: a static PIE or a shared library.
    #[error(
        "position-independent executable (static PIE) or shared object: kvmini runs \
         executables linked at a fixed address; link the guest with -static -no-pie"
    )]
    PositionIndependent,
    /// e_type is neither ET_EXEC nor ET_DYN.
    #[error(
        "not an executable (ELF type {e_type}, {name}): link the guest as a static executable",
        name = type_name(*.e_type)
    )]
    NotExecutable {
        /// The file's e_type.
        e_type: u16,
    },
    /// A PT_INTERP program header is present: the file asks for a dynamic
    /// loader, as an ordinary Linux program does (PIE or not).
    #[error(
        "this is a dynamically linked Linux program: kvmini runs static programs written \
         for it, with its guest SDK (link the guest with -static -no-pie)"
    )]
    DynamicallyLinked,
    /// An ET_EXEC file with a PT_DYNAMIC program header and no interpreter:
    /// dynamic relocations kvmini would not apply.
    #[error(
        "the executable has a dynamic section (PT_DYNAMIC): link the guest with -static -no-pie"
    )]
    DynamicSection,
    /// e_phentsize is smaller than an ELF64 program header.
    #[error("program header entry size {size} is too small: ELF64 needs at least 56")]
    BadPhentsize {
        /// The file's e_phentsize.
        size: u16,
    },
    /// The program header table does not lie within the file.
    #[error(
        "program header table ({count} {} of {entsize} bytes at offset {offset:#x}) \
         lies outside the {file_len}-byte file",
        if *.count == 1 { "entry" } else { "entries" }
    )]
    PhdrsOutOfFile {
        /// e_phoff.
        offset: u64,
        /// e_phnum.
        count: u16,
        /// e_phentsize.
        entsize: u16,
        /// File length in bytes.
        file_len: u64,
    },
    /// No PT_LOAD segment with a non-zero memory size.
    #[error("no loadable (PT_LOAD) segments: nothing to run")]
    NoLoadSegments,
    /// p_filesz > p_memsz.
    #[error("program header {index}: file size {file_size:#x} exceeds memory size {mem_size:#x}")]
    FileSizeExceedsMemSize {
        /// Program header index.
        index: usize,
        /// p_filesz.
        file_size: u64,
        /// p_memsz.
        mem_size: u64,
    },
    /// p_offset + p_filesz lies past the end of the file.
    #[error(
        "program header {index}: {file_size:#x} bytes at offset {offset:#x} run past the end \
         of the {file_len}-byte file (truncated?)"
    )]
    SegmentOutOfFile {
        /// Program header index.
        index: usize,
        /// p_offset.
        offset: u64,
        /// p_filesz.
        file_size: u64,
        /// File length in bytes.
        file_len: u64,
    },
    /// p_vaddr + p_memsz does not fit in 64 bits.
    #[error(
        "program header {index}: segment of {mem_size:#x} bytes at {vaddr:#x} wraps past \
         the top of the address space"
    )]
    SegmentAddressOverflow {
        /// Program header index.
        index: usize,
        /// p_vaddr.
        vaddr: u64,
        /// p_memsz.
        mem_size: u64,
    },
    /// Two PT_LOAD segments share guest addresses.
    #[error("segments {a_start:#x}..{a_end:#x} and {b_start:#x}..{b_end:#x} overlap")]
    SegmentOverlap {
        /// Start of the lower segment.
        a_start: u64,
        /// End of the lower segment.
        a_end: u64,
        /// Start of the higher segment.
        b_start: u64,
        /// End of the higher segment.
        b_end: u64,
    },
    /// The entry point is not inside a PF_X segment.
    #[error("entry point {entry:#x} is not inside an executable loaded segment")]
    EntryNotExecutable {
        /// e_entry.
        entry: u64,
    },
    /// A segment starts below the load window.
    #[error(
        "segment {start:#x}..{end:#x} lies below the load window: allowed \
         {win_start:#x}..{win_end:#x} (link the guest at {win_start:#x} or above)"
    )]
    SegmentBelowWindow {
        /// Segment start.
        start: u64,
        /// Segment end.
        end: u64,
        /// Window start.
        win_start: u64,
        /// Window end.
        win_end: u64,
    },
    /// A segment ends past the load window.
    #[error(
        "segment {start:#x}..{end:#x} does not fit in guest memory: allowed \
         {win_start:#x}..{win_end:#x}"
    )]
    SegmentPastWindow {
        /// Segment start.
        start: u64,
        /// Segment end.
        end: u64,
        /// Window start.
        win_start: u64,
        /// Window end.
        win_end: u64,
    },
    /// Part of the image's range has no guest memory behind it.
    #[error("image range {start:#x}..{end:#x} is not backed by guest memory")]
    NotInGuestMemory {
        /// Range start.
        start: u64,
        /// Range end.
        end: u64,
    },
    /// A flat image of zero bytes.
    #[error("flat image is empty")]
    FlatEmpty,
    /// A flat image larger than the load window.
    #[error(
        "flat image of {size:#x} bytes does not fit in guest memory: allowed \
         {win_start:#x}..{win_end:#x}"
    )]
    FlatTooLarge {
        /// Image size in bytes.
        size: u64,
        /// Window start.
        win_start: u64,
        /// Window end.
        win_end: u64,
    },
    /// Writing to guest memory failed.
    #[error("could not write the image into guest memory")]
    GuestMemory(#[from] GuestMemoryError),
}

/// Human name of an ELF e_machine value, for error messages.
fn machine_name(machine: u16) -> &'static str {
    match machine {
        0 => "none",
        2 => "sparc",
        3 => "i386",
        8 => "mips",
        20 => "powerpc",
        21 => "powerpc64",
        22 => "s390",
        40 => "arm",
        43 => "sparc64",
        50 => "ia-64",
        62 => "x86_64",
        183 => "aarch64",
        243 => "risc-v",
        258 => "loongarch",
        _ => "unknown",
    }
}

/// Human name of an ELF e_type value, for error messages.
fn type_name(e_type: u16) -> &'static str {
    match e_type {
        0 => "no file type",
        1 => "relocatable object",
        2 => "executable",
        3 => "shared object",
        4 => "core dump",
        _ => "unknown",
    }
}

/// File lengths are compared in u64; a usize always fits on supported hosts.
fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Reads a little-endian `N`-byte field at `off`, or `None` if it runs past `b`.
fn field<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

fn rd_u16(b: &[u8], off: usize) -> Option<u16> {
    field(b, off).map(u16::from_le_bytes)
}

fn rd_u32(b: &[u8], off: usize) -> Option<u32> {
    field(b, off).map(u32::from_le_bytes)
}

fn rd_u64(b: &[u8], off: usize) -> Option<u64> {
    field(b, off).map(u64::from_le_bytes)
}

/// Parses and checks a static x86_64 ELF without touching guest memory (fuzzable, used by the CLI to validate early).
pub fn parse_elf(bytes: &[u8]) -> Result<ElfInfo, LoaderError> {
    parse(bytes).map(|(info, _)| info)
}

/// [`parse_elf`], also returning each segment's file bytes so loading cannot disagree with parsing.
fn parse(bytes: &[u8]) -> Result<(ElfInfo, Vec<&[u8]>), LoaderError> {
    let truncated = LoaderError::TruncatedHeader { len: bytes.len() };
    // A file shorter than the magic is only "truncated" if what is there matches it.
    if bytes.len() < ELF_MAGIC.len() {
        return Err(if ELF_MAGIC.starts_with(bytes) {
            truncated
        } else {
            LoaderError::NotElf
        });
    }
    if bytes[..ELF_MAGIC.len()] != ELF_MAGIC {
        return Err(LoaderError::NotElf);
    }
    // The class byte comes first: a 32-bit ELF header is only 52 bytes,
    // and should be called 32-bit rather than truncated.
    match bytes.get(4) {
        Some(&ELFCLASS64) => {}
        Some(&ELFCLASS32) => return Err(LoaderError::Elf32),
        Some(&c) => return Err(LoaderError::BadClass(c)),
        None => return Err(truncated),
    }
    let Some(hdr) = bytes.get(..EHDR_SIZE) else {
        return Err(truncated);
    };
    match hdr[5] {
        ELFDATA2LSB => {}
        ELFDATA2MSB => return Err(LoaderError::BigEndian),
        d => return Err(LoaderError::BadDataEncoding(d)),
    }

    // The header is 64 bytes long, so every fixed-offset read below succeeds.
    let short = || LoaderError::TruncatedHeader { len: bytes.len() };
    let e_type = rd_u16(hdr, 16).ok_or_else(short)?;
    let e_machine = rd_u16(hdr, 18).ok_or_else(short)?;
    let e_entry = rd_u64(hdr, 24).ok_or_else(short)?;
    let e_phoff = rd_u64(hdr, 32).ok_or_else(short)?;
    let e_phentsize = rd_u16(hdr, 54).ok_or_else(short)?;
    let e_phnum = rd_u16(hdr, 56).ok_or_else(short)?;

    // Machine first: "built for aarch64" is more useful than "PIE" for an ARM binary.
    if e_machine != EM_X86_64 {
        return Err(LoaderError::WrongMachine { machine: e_machine });
    }
    // ET_DYN is refused below, once the program headers tell a dynamically
    // linked program (the usual host program) from a static PIE.
    if !matches!(e_type, ET_EXEC | ET_DYN) {
        return Err(LoaderError::NotExecutable { e_type });
    }
    if e_phnum == 0 {
        if e_type == ET_DYN {
            return Err(LoaderError::PositionIndependent);
        }
        return Err(LoaderError::NoLoadSegments);
    }
    if e_phentsize < PHDR_SIZE {
        return Err(LoaderError::BadPhentsize { size: e_phentsize });
    }

    let file_len = len_u64(bytes.len());
    let phdrs_out = || LoaderError::PhdrsOutOfFile {
        offset: e_phoff,
        count: e_phnum,
        entsize: e_phentsize,
        file_len,
    };
    // Cannot overflow: both factors are u16.
    let table_len = u64::from(e_phnum) * u64::from(e_phentsize);
    let table = file_range(bytes, e_phoff, table_len).ok_or_else(phdrs_out)?;

    // Every entry is at least PHDR_SIZE (56) bytes, so the fixed-offset reads below succeed.
    let phdrs = table.chunks_exact(usize::from(e_phentsize));
    // Dynamic linking is checked first: it is the root cause of any odd-looking segments.
    let has = |p_type| phdrs.clone().any(|ph| rd_u32(ph, 0) == Some(p_type));
    if has(PT_INTERP) {
        return Err(LoaderError::DynamicallyLinked);
    }
    if e_type == ET_DYN {
        return Err(LoaderError::PositionIndependent);
    }
    if has(PT_DYNAMIC) {
        return Err(LoaderError::DynamicSection);
    }

    let mut segments = Vec::new();
    let mut contents = Vec::new();
    for (index, ph) in phdrs.enumerate() {
        if rd_u32(ph, 0) != Some(PT_LOAD) {
            continue;
        }
        let flags = rd_u32(ph, 4).ok_or_else(phdrs_out)?;
        let file_offset = rd_u64(ph, 8).ok_or_else(phdrs_out)?;
        let vaddr = rd_u64(ph, 16).ok_or_else(phdrs_out)?;
        let file_size = rd_u64(ph, 32).ok_or_else(phdrs_out)?;
        let mem_size = rd_u64(ph, 40).ok_or_else(phdrs_out)?;

        if file_size > mem_size {
            return Err(LoaderError::FileSizeExceedsMemSize {
                index,
                file_size,
                mem_size,
            });
        }
        if mem_size == 0 {
            continue;
        }
        // A bss-only segment reads nothing from the file, so its offset is irrelevant.
        let data = if file_size == 0 {
            &[][..]
        } else {
            file_range(bytes, file_offset, file_size).ok_or(LoaderError::SegmentOutOfFile {
                index,
                offset: file_offset,
                file_size,
                file_len,
            })?
        };
        if vaddr.checked_add(mem_size).is_none() {
            return Err(LoaderError::SegmentAddressOverflow {
                index,
                vaddr,
                mem_size,
            });
        }
        segments.push(ElfSegment {
            file_offset,
            vaddr,
            file_size,
            mem_size,
            flags,
        });
        contents.push(data);
    }
    if segments.is_empty() {
        return Err(LoaderError::NoLoadSegments);
    }

    let mut sorted: Vec<&ElfSegment> = segments.iter().collect();
    sorted.sort_by_key(|s| s.vaddr);
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.vaddr < a.end() {
            return Err(LoaderError::SegmentOverlap {
                a_start: a.vaddr,
                a_end: a.end(),
                b_start: b.vaddr,
                b_end: b.end(),
            });
        }
    }

    let entry_ok = segments
        .iter()
        .any(|s| s.flags & PF_X != 0 && e_entry >= s.vaddr && e_entry < s.end());
    if !entry_ok {
        return Err(LoaderError::EntryNotExecutable { entry: e_entry });
    }

    let lowest = sorted.first().map_or(0, |s| s.vaddr);
    let highest = segments.iter().map(ElfSegment::end).max().unwrap_or(0);
    let info = ElfInfo {
        entry: e_entry,
        lowest,
        highest,
        segments,
    };
    Ok((info, contents))
}

/// The `len` bytes of `bytes` at `offset`, or `None` if any of them lie past the end.
fn file_range(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let end = usize::try_from(offset.checked_add(len)?).ok()?;
    bytes.get(usize::try_from(offset).ok()?..end)
}

/// Checks that [start, end) lies inside the window.
fn check_window(start: u64, end: u64, window: &LoadWindow) -> Result<(), LoaderError> {
    if start < window.start {
        return Err(LoaderError::SegmentBelowWindow {
            start,
            end,
            win_start: window.start,
            win_end: window.end,
        });
    }
    if end > window.end {
        return Err(LoaderError::SegmentPastWindow {
            start,
            end,
            win_start: window.start,
            win_end: window.end,
        });
    }
    Ok(())
}

/// Checks that every byte of [start, start + len) has guest memory behind it.
fn check_backed(mem: &GuestMemoryMmap, start: u64, len: u64) -> Result<(), LoaderError> {
    let end = start.saturating_add(len);
    let backed = usize::try_from(len)
        .is_ok_and(|n| mem.check_range(GuestAddress(start), n, Permissions::Write));
    if backed {
        Ok(())
    } else {
        Err(LoaderError::NotInGuestMemory { start, end })
    }
}

/// Zeroes [addr, addr + len) through vm-memory, a chunk at a time; the caller
/// guarantees `addr + len` does not overflow.
fn zero_fill(mem: &GuestMemoryMmap, addr: u64, len: u64) -> Result<(), LoaderError> {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let chunk = ZEROS
            .get(..usize::try_from(len - done).unwrap_or(ZEROS.len()))
            .unwrap_or(&ZEROS);
        mem.write_slice(chunk, GuestAddress(addr + done))?;
        done += len_u64(chunk.len());
    }
    Ok(())
}

/// Loads an ELF into guest memory: copies each PT_LOAD's file bytes to p_paddr==p_vaddr (identity-mapped guest), zeroes the rest up to p_memsz (bss).
pub fn load_elf(
    mem: &GuestMemoryMmap,
    bytes: &[u8],
    window: &LoadWindow,
) -> Result<LoadedImage, LoaderError> {
    let (info, contents) = parse(bytes)?;
    // Check every segment before writing any, so a rejected image changes nothing.
    for s in &info.segments {
        check_window(s.vaddr, s.end(), window)?;
        check_backed(mem, s.vaddr, s.mem_size)?;
    }
    for (s, data) in info.segments.iter().zip(contents) {
        if !data.is_empty() {
            mem.write_slice(data, GuestAddress(s.vaddr))?;
        }
        // parse checked file_size <= mem_size and that vaddr + mem_size does not overflow.
        zero_fill(mem, s.vaddr + s.file_size, s.mem_size - s.file_size)?;
    }
    Ok(LoadedImage {
        entry: info.entry,
        lowest: info.lowest,
        highest: info.highest,
        segments: info.segments.iter().map(Segment::from).collect(),
    })
}

/// Loads a flat binary at `window.start`, entry = window.start (the classic KVM hello world: at 0, entry 0).
pub fn load_flat(
    mem: &GuestMemoryMmap,
    bytes: &[u8],
    window: &LoadWindow,
) -> Result<LoadedImage, LoaderError> {
    if bytes.is_empty() {
        return Err(LoaderError::FlatEmpty);
    }
    let size = len_u64(bytes.len());
    let room = window.end.saturating_sub(window.start);
    if size > room {
        return Err(LoaderError::FlatTooLarge {
            size,
            win_start: window.start,
            win_end: window.end,
        });
    }
    // size <= end - start, so this cannot overflow.
    let end = window.start + size;
    check_backed(mem, window.start, size)?;
    mem.write_slice(bytes, GuestAddress(window.start))?;
    Ok(LoadedImage {
        entry: window.start,
        lowest: window.start,
        highest: end,
        // A flat image has no headers, so nothing says which parts are code.
        segments: vec![Segment {
            vaddr: window.start,
            file_size: size,
            mem_size: size,
            flags: PF_R | PF_W | PF_X,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEM_SIZE: usize = 4 << 20;
    const TEXT_AT: u64 = 0x10_0000;
    const DATA_AT: u64 = 0x10_1000;
    const BSS_AT: u64 = 0x10_2000;
    const WINDOW: LoadWindow = LoadWindow {
        start: 0x10_0000,
        end: 0x40_0000,
    };
    const TEXT: [u8; 16] = [
        0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xeb,
        0xfe,
    ];
    const DATA: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
    const PT_NOTE: u32 = 4;

    /// One program header for [`build`].
    struct Ph {
        p_type: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
    }

    fn load_ph(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
        Ph {
            p_type: PT_LOAD,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
        }
    }

    /// File offset of the payload when the image has `n` program headers.
    fn data_off(n: usize) -> u64 {
        u64::try_from(EHDR_SIZE + usize::from(PHDR_SIZE) * n).unwrap()
    }

    /// File offset of program header `i`.
    fn ph_off(i: usize) -> usize {
        EHDR_SIZE + usize::from(PHDR_SIZE) * i
    }

    fn set16(v: &mut [u8], off: usize, x: u16) {
        v[off..off + 2].copy_from_slice(&x.to_le_bytes());
    }

    fn set32(v: &mut [u8], off: usize, x: u32) {
        v[off..off + 4].copy_from_slice(&x.to_le_bytes());
    }

    fn set64(v: &mut [u8], off: usize, x: u64) {
        v[off..off + 8].copy_from_slice(&x.to_le_bytes());
    }

    /// Assembles an ELF64 x86_64 ET_EXEC: header, program headers at 64, then `payload`.
    fn build(entry: u64, phdrs: &[Ph], payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; EHDR_SIZE];
        v[..4].copy_from_slice(&ELF_MAGIC);
        v[4] = ELFCLASS64;
        v[5] = ELFDATA2LSB;
        v[6] = 1; // EI_VERSION
        set16(&mut v, 16, ET_EXEC);
        set16(&mut v, 18, EM_X86_64);
        set32(&mut v, 20, 1); // e_version
        set64(&mut v, 24, entry);
        set64(&mut v, 32, data_off(0)); // e_phoff
        set16(&mut v, 52, 64); // e_ehsize
        set16(&mut v, 54, PHDR_SIZE);
        set16(&mut v, 56, u16::try_from(phdrs.len()).unwrap());
        for ph in phdrs {
            let mut p = vec![0u8; usize::from(PHDR_SIZE)];
            set32(&mut p, 0, ph.p_type);
            set32(&mut p, 4, ph.flags);
            set64(&mut p, 8, ph.offset);
            set64(&mut p, 16, ph.vaddr);
            set64(&mut p, 24, ph.vaddr); // p_paddr
            set64(&mut p, 32, ph.filesz);
            set64(&mut p, 40, ph.memsz);
            set64(&mut p, 48, 0x1000); // p_align
            v.extend_from_slice(&p);
        }
        v.extend_from_slice(payload);
        v
    }

    /// A valid image: text (R|X), data + bss (R|W), a bss-only segment (R|W)
    /// and a non-load header; the file ends with segment bytes.
    fn valid() -> Vec<u8> {
        let d = data_off(4);
        let phdrs = [
            load_ph(PF_R | PF_X, d, TEXT_AT, 16, 16),
            load_ph(PF_R | PF_W, d + 16, DATA_AT, 8, 0x100),
            load_ph(PF_R | PF_W, 0, BSS_AT, 0, 0x2000),
            Ph {
                p_type: PT_NOTE,
                flags: PF_R,
                offset: 0,
                vaddr: 0,
                filesz: 0,
                memsz: 0,
            },
        ];
        let mut payload = TEXT.to_vec();
        payload.extend_from_slice(&DATA);
        build(TEXT_AT, &phdrs, &payload)
    }

    /// A one-segment image whose single PT_LOAD is (offset, vaddr, filesz, memsz).
    fn one_seg(entry: u64, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Vec<u8> {
        build(
            entry,
            &[load_ph(PF_R | PF_X, offset, vaddr, filesz, memsz)],
            &TEXT,
        )
    }

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
    }

    /// Guest memory pre-filled with 0xAA so zeroing is observable.
    fn dirty_mem() -> GuestMemoryMmap {
        let m = mem();
        m.write_slice(&vec![0xAA; MEM_SIZE], GuestAddress(0))
            .unwrap();
        m
    }

    fn read(m: &GuestMemoryMmap, at: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        m.read_slice(&mut buf, GuestAddress(at)).unwrap();
        buf
    }

    fn parse_err(bytes: &[u8]) -> LoaderError {
        parse_elf(bytes).expect_err("image should be rejected")
    }

    #[test]
    fn valid_elf_loads() {
        let m = dirty_mem();
        let img = load_elf(&m, &valid(), &WINDOW).unwrap();
        assert_eq!(img.entry, TEXT_AT);
        assert_eq!(img.lowest, TEXT_AT);
        assert_eq!(img.highest, BSS_AT + 0x2000);
        assert_eq!(
            img.segments,
            vec![
                Segment {
                    vaddr: TEXT_AT,
                    file_size: 16,
                    mem_size: 16,
                    flags: PF_R | PF_X
                },
                Segment {
                    vaddr: DATA_AT,
                    file_size: 8,
                    mem_size: 0x100,
                    flags: PF_R | PF_W
                },
                Segment {
                    vaddr: BSS_AT,
                    file_size: 0,
                    mem_size: 0x2000,
                    flags: PF_R | PF_W
                },
            ]
        );
        assert_eq!(read(&m, TEXT_AT, 16), TEXT);
        assert_eq!(read(&m, DATA_AT, 8), DATA);
        assert!(read(&m, DATA_AT + 8, 0x100 - 8).iter().all(|&b| b == 0));
        assert!(read(&m, BSS_AT, 0x2000).iter().all(|&b| b == 0));
        // Bytes around the segments are untouched.
        assert_eq!(read(&m, TEXT_AT - 1, 1), [0xAA]);
        assert_eq!(read(&m, TEXT_AT + 16, 1), [0xAA]);
        assert_eq!(read(&m, DATA_AT + 0x100, 1), [0xAA]);
        assert_eq!(read(&m, BSS_AT + 0x2000, 1), [0xAA]);
    }

    #[test]
    fn large_bss_is_zeroed_across_chunks() {
        let m = dirty_mem();
        let bytes = build(
            TEXT_AT,
            &[load_ph(PF_R | PF_X, data_off(1), TEXT_AT, 16, 0x2_0123)],
            &TEXT,
        );
        let img = load_elf(&m, &bytes, &WINDOW).unwrap();
        assert_eq!(img.highest, TEXT_AT + 0x2_0123);
        assert_eq!(read(&m, TEXT_AT, 16), TEXT);
        assert!(read(&m, TEXT_AT + 16, 0x2_0123 - 16)
            .iter()
            .all(|&b| b == 0));
        assert_eq!(read(&m, TEXT_AT + 0x2_0123, 1), [0xAA]);
    }

    #[test]
    fn parse_elf_reports_file_layout() {
        let info = parse_elf(&valid()).unwrap();
        assert_eq!(info.entry, TEXT_AT);
        assert_eq!(info.lowest, TEXT_AT);
        assert_eq!(info.highest, BSS_AT + 0x2000);
        assert_eq!(info.segments.len(), 3);
        assert_eq!(
            info.segments[1],
            ElfSegment {
                file_offset: data_off(4) + 16,
                vaddr: DATA_AT,
                file_size: 8,
                mem_size: 0x100,
                flags: PF_R | PF_W,
            }
        );
        assert_eq!(info.segments[1].end(), DATA_AT + 0x100);
    }

    #[test]
    fn empty_segments_are_skipped() {
        // A zero-size PT_LOAD with a garbage offset and address is ignored.
        let phdrs = [
            load_ph(PF_R, u64::MAX, u64::MAX, 0, 0),
            load_ph(PF_R | PF_X, data_off(2), TEXT_AT, 16, 16),
        ];
        let info = parse_elf(&build(TEXT_AT, &phdrs, &TEXT)).unwrap();
        assert_eq!(info.segments.len(), 1);
        assert_eq!(info.segments[0].vaddr, TEXT_AT);
    }

    #[test]
    fn bss_only_segment_ignores_file_offset() {
        let phdrs = [
            load_ph(PF_R | PF_X, data_off(2), TEXT_AT, 16, 16),
            load_ph(PF_R | PF_W, u64::MAX, DATA_AT, 0, 0x10),
        ];
        let m = dirty_mem();
        load_elf(&m, &build(TEXT_AT, &phdrs, &TEXT), &WINDOW).unwrap();
        assert_eq!(read(&m, DATA_AT, 0x10), [0; 0x10]);
    }

    #[test]
    fn rejects_truncated_header() {
        assert!(matches!(
            parse_err(&[]),
            LoaderError::TruncatedHeader { len: 0 }
        ));
        assert!(matches!(
            parse_err(&valid()[..3]),
            LoaderError::TruncatedHeader { len: 3 }
        ));
        let e = parse_err(&valid()[..40]);
        assert!(matches!(e, LoaderError::TruncatedHeader { len: 40 }));
        assert_eq!(
            e.to_string(),
            "file too short for an ELF header: 40 bytes, need 64"
        );
    }

    #[test]
    fn rejects_non_elf() {
        assert!(matches!(parse_err(b"#!"), LoaderError::NotElf));
        assert!(matches!(parse_err(b"MZ\x90\x00"), LoaderError::NotElf));
        let mut v = valid();
        v[1] = b'e';
        let e = parse_err(&v);
        assert!(matches!(e, LoaderError::NotElf));
        assert_eq!(e.to_string(), "not an ELF file");
    }

    #[test]
    fn rejects_32_bit() {
        let mut v = valid();
        v[4] = ELFCLASS32;
        let e = parse_err(&v);
        assert!(matches!(e, LoaderError::Elf32));
        assert_eq!(
            e.to_string(),
            "32-bit ELF: kvmini runs 64-bit (x86_64) guests"
        );
    }

    #[test]
    fn rejects_unknown_class() {
        let mut v = valid();
        v[4] = 7;
        assert!(matches!(parse_err(&v), LoaderError::BadClass(7)));
    }

    #[test]
    fn rejects_big_endian() {
        let mut v = valid();
        v[5] = ELFDATA2MSB;
        assert!(matches!(parse_err(&v), LoaderError::BigEndian));
    }

    #[test]
    fn rejects_unknown_data_encoding() {
        let mut v = valid();
        v[5] = 0;
        assert!(matches!(parse_err(&v), LoaderError::BadDataEncoding(0)));
    }

    #[test]
    fn rejects_wrong_machine() {
        let mut v = valid();
        set16(&mut v, 18, 183);
        let e = parse_err(&v);
        assert!(matches!(e, LoaderError::WrongMachine { machine: 183 }));
        assert_eq!(
            e.to_string(),
            "guest is built for machine 183 (aarch64): kvmini runs x86_64 (62) guests"
        );
        set16(&mut v, 18, 0x1234);
        assert!(parse_err(&v).to_string().contains("4660 (unknown)"));
    }

    #[test]
    fn rejects_pie() {
        let mut v = valid();
        set16(&mut v, 16, ET_DYN);
        let e = parse_err(&v);
        assert!(matches!(e, LoaderError::PositionIndependent));
        assert_eq!(
            e.to_string(),
            "position-independent executable (static PIE) or shared object: kvmini runs \
             executables linked at a fixed address; link the guest with -static -no-pie"
        );
        // A static PIE has a dynamic section but no interpreter.
        set32(&mut v, ph_off(3), PT_DYNAMIC);
        assert!(matches!(parse_err(&v), LoaderError::PositionIndependent));
        // A dynamically linked PIE (what most host programs are) says so.
        set32(&mut v, ph_off(3), PT_INTERP);
        assert!(matches!(parse_err(&v), LoaderError::DynamicallyLinked));
        // So does a shared object with no program headers at all.
        set16(&mut v, 56, 0);
        assert!(matches!(parse_err(&v), LoaderError::PositionIndependent));
    }

    #[test]
    fn rejects_other_types() {
        for t in [0u16, 1, 4, 0xfe00] {
            let mut v = valid();
            set16(&mut v, 16, t);
            let e = parse_err(&v);
            assert!(matches!(e, LoaderError::NotExecutable { e_type } if e_type == t));
        }
        let mut v = valid();
        set16(&mut v, 16, 1);
        assert_eq!(
            parse_err(&v).to_string(),
            "not an executable (ELF type 1, relocatable object): link the guest as a static executable"
        );
    }

    #[test]
    fn rejects_dynamic_linking() {
        let mut v = valid();
        // Turn the PT_NOTE header into PT_INTERP.
        set32(&mut v, ph_off(3), PT_INTERP);
        let e = parse_err(&v);
        assert!(matches!(e, LoaderError::DynamicallyLinked));
        assert_eq!(
            e.to_string(),
            "this is a dynamically linked Linux program: kvmini runs static programs written \
             for it, with its guest SDK (link the guest with -static -no-pie)"
        );
        // A dynamic section without an interpreter.
        set32(&mut v, ph_off(3), PT_DYNAMIC);
        let e = parse_err(&v);
        assert!(matches!(e, LoaderError::DynamicSection));
        assert_eq!(
            e.to_string(),
            "the executable has a dynamic section (PT_DYNAMIC): link the guest with -static -no-pie"
        );
        // Reported even when a PT_LOAD earlier in the table is also broken.
        let mut v = valid();
        set32(&mut v, ph_off(3), PT_INTERP);
        set64(&mut v, ph_off(0) + 8, u64::MAX);
        assert!(matches!(parse_err(&v), LoaderError::DynamicallyLinked));
    }

    #[test]
    fn rejects_small_phentsize() {
        let mut v = valid();
        set16(&mut v, 54, 32);
        assert!(matches!(
            parse_err(&v),
            LoaderError::BadPhentsize { size: 32 }
        ));
    }

    #[test]
    fn larger_phentsize_is_accepted() {
        // Entries padded to 64 bytes: header fields stay at the same offsets.
        let mut v = vec![0u8; EHDR_SIZE];
        v.copy_from_slice(&valid()[..EHDR_SIZE]);
        set16(&mut v, 54, 64);
        set16(&mut v, 56, 1);
        let mut ph = vec![0u8; 64];
        set32(&mut ph, 0, PT_LOAD);
        set32(&mut ph, 4, PF_R | PF_X);
        set64(&mut ph, 8, 128);
        set64(&mut ph, 16, TEXT_AT);
        set64(&mut ph, 32, 16);
        set64(&mut ph, 40, 16);
        v.extend_from_slice(&ph);
        v.extend_from_slice(&TEXT);
        let info = parse_elf(&v).unwrap();
        assert_eq!(info.segments[0].file_offset, 128);
    }

    #[test]
    fn rejects_phdrs_out_of_file() {
        let mut v = valid();
        set64(&mut v, 32, u64::MAX);
        assert!(matches!(
            parse_err(&v),
            LoaderError::PhdrsOutOfFile {
                offset: u64::MAX,
                count: 4,
                entsize: 56,
                ..
            }
        ));

        let mut v = valid();
        set64(&mut v, 32, u64::MAX - 100);
        assert!(matches!(parse_err(&v), LoaderError::PhdrsOutOfFile { .. }));

        // e_phnum * e_phentsize runs past the end of the file.
        let mut v = valid();
        set16(&mut v, 56, u16::MAX);
        set16(&mut v, 54, u16::MAX);
        assert!(matches!(
            parse_err(&v),
            LoaderError::PhdrsOutOfFile {
                count: u16::MAX,
                entsize: u16::MAX,
                ..
            }
        ));

        // One entry too many.
        let mut v = valid();
        let len = v.len();
        set64(&mut v, 32, u64::try_from(len - 4 * 56 + 1).unwrap());
        let e = parse_err(&v);
        assert!(matches!(e, LoaderError::PhdrsOutOfFile { .. }));
        assert!(e.to_string().contains(&format!("{len}-byte file")));
    }

    #[test]
    fn rejects_no_load_segments() {
        let mut v = valid();
        set16(&mut v, 56, 0);
        assert!(matches!(parse_err(&v), LoaderError::NoLoadSegments));

        // Only non-load headers and empty PT_LOADs.
        let phdrs = [
            Ph {
                p_type: PT_NOTE,
                flags: PF_R,
                offset: data_off(2),
                vaddr: 0,
                filesz: 4,
                memsz: 4,
            },
            load_ph(PF_R | PF_X, 0, TEXT_AT, 0, 0),
        ];
        assert!(matches!(
            parse_err(&build(TEXT_AT, &phdrs, &TEXT)),
            LoaderError::NoLoadSegments
        ));
    }

    #[test]
    fn rejects_filesz_above_memsz() {
        let v = one_seg(TEXT_AT, data_off(1), TEXT_AT, 16, 8);
        assert!(matches!(
            parse_err(&v),
            LoaderError::FileSizeExceedsMemSize {
                index: 0,
                file_size: 16,
                mem_size: 8
            }
        ));
        // Also when memsz is 0: the header is malformed, not merely empty.
        let v = one_seg(TEXT_AT, data_off(1), TEXT_AT, 16, 0);
        assert!(matches!(
            parse_err(&v),
            LoaderError::FileSizeExceedsMemSize { .. }
        ));
    }

    #[test]
    fn rejects_segment_out_of_file() {
        let v = one_seg(TEXT_AT, data_off(1), TEXT_AT, 17, 17);
        assert!(matches!(
            parse_err(&v),
            LoaderError::SegmentOutOfFile {
                index: 0,
                file_size: 17,
                ..
            }
        ));
        let v = one_seg(TEXT_AT, u64::MAX, TEXT_AT, 16, 16);
        assert!(matches!(
            parse_err(&v),
            LoaderError::SegmentOutOfFile {
                offset: u64::MAX,
                ..
            }
        ));
        let v = one_seg(TEXT_AT, 8, TEXT_AT, u64::MAX, u64::MAX);
        assert!(matches!(
            parse_err(&v),
            LoaderError::SegmentOutOfFile { .. }
        ));
    }

    #[test]
    fn rejects_address_overflow() {
        let v = one_seg(TEXT_AT, data_off(1), u64::MAX - 1, 16, 16);
        let e = parse_err(&v);
        assert!(matches!(
            e,
            LoaderError::SegmentAddressOverflow {
                index: 0,
                vaddr: 0xffff_ffff_ffff_fffe,
                mem_size: 16
            }
        ));
        // p_memsz = u64::MAX with a small file size.
        let v = one_seg(TEXT_AT, data_off(1), TEXT_AT, 16, u64::MAX);
        assert!(matches!(
            parse_err(&v),
            LoaderError::SegmentAddressOverflow {
                mem_size: u64::MAX,
                ..
            }
        ));
        // Ending exactly at 2^64 is not representable either.
        let v = one_seg(TEXT_AT, data_off(1), u64::MAX - 15, 16, 16);
        assert!(matches!(
            parse_err(&v),
            LoaderError::SegmentAddressOverflow { .. }
        ));
    }

    #[test]
    fn rejects_overlapping_segments() {
        let mut v = valid();
        // Move the data segment so it starts inside the text segment.
        set64(&mut v, ph_off(1) + 16, TEXT_AT + 8);
        let e = parse_err(&v);
        assert!(matches!(
            e,
            LoaderError::SegmentOverlap {
                a_start: TEXT_AT,
                a_end: 0x10_0010,
                b_start: 0x10_0008,
                b_end: 0x10_0108
            }
        ));
        assert_eq!(
            e.to_string(),
            "segments 0x100000..0x100010 and 0x100008..0x100108 overlap"
        );

        // Out-of-order headers are still caught; touching segments are fine.
        let d = data_off(2);
        let phdrs = [
            load_ph(PF_R | PF_W, d, TEXT_AT + 16, 0, 16),
            load_ph(PF_R | PF_X, d, TEXT_AT, 16, 16),
        ];
        assert!(parse_elf(&build(TEXT_AT, &phdrs, &TEXT)).is_ok());
        let phdrs = [
            load_ph(PF_R | PF_W, d, TEXT_AT + 15, 0, 16),
            load_ph(PF_R | PF_X, d, TEXT_AT, 16, 16),
        ];
        assert!(matches!(
            parse_err(&build(TEXT_AT, &phdrs, &TEXT)),
            LoaderError::SegmentOverlap { .. }
        ));
    }

    #[test]
    fn rejects_entry_outside_executable_segment() {
        for entry in [0, TEXT_AT - 1, TEXT_AT + 16, DATA_AT, BSS_AT + 4, u64::MAX] {
            let mut v = valid();
            set64(&mut v, 24, entry);
            let e = parse_err(&v);
            assert!(
                matches!(e, LoaderError::EntryNotExecutable { entry: got } if got == entry),
                "entry {entry:#x}: {e}"
            );
        }
        let mut v = valid();
        set64(&mut v, 24, DATA_AT);
        assert_eq!(
            parse_err(&v).to_string(),
            "entry point 0x101000 is not inside an executable loaded segment"
        );
        // The last byte of the text segment is a valid entry.
        let mut v = valid();
        set64(&mut v, 24, TEXT_AT + 15);
        assert!(parse_elf(&v).is_ok());
    }

    #[test]
    fn rejects_segment_below_window() {
        let v = one_seg(0x1000, data_off(1), 0x1000, 16, 16);
        let m = dirty_mem();
        let e = load_elf(&m, &v, &WINDOW).unwrap_err();
        assert!(matches!(
            e,
            LoaderError::SegmentBelowWindow {
                start: 0x1000,
                end: 0x1010,
                win_start: 0x10_0000,
                win_end: 0x40_0000
            }
        ));
        assert_eq!(
            e.to_string(),
            "segment 0x1000..0x1010 lies below the load window: allowed 0x100000..0x400000 \
             (link the guest at 0x100000 or above)"
        );
        // Nothing was written.
        assert_eq!(read(&m, 0x1000, 16), [0xAA; 16]);
    }

    #[test]
    fn rejects_segment_past_window() {
        let v = one_seg(TEXT_AT, data_off(1), TEXT_AT, 16, 0x4f0_0000);
        let window = LoadWindow {
            start: 0x10_0000,
            end: 0x3ff_0000,
        };
        let m = dirty_mem();
        let e = load_elf(&m, &v, &window).unwrap_err();
        assert!(matches!(e, LoaderError::SegmentPastWindow { .. }));
        assert_eq!(
            e.to_string(),
            "segment 0x100000..0x5000000 does not fit in guest memory: \
             allowed 0x100000..0x3ff0000"
        );
        // A later segment failing leaves the earlier one unwritten.
        let mut v = valid();
        set64(&mut v, ph_off(2) + 40, WINDOW.end);
        let e = load_elf(&m, &v, &WINDOW).unwrap_err();
        assert!(matches!(e, LoaderError::SegmentPastWindow { .. }));
        assert_eq!(read(&m, TEXT_AT, 16), [0xAA; 16]);
    }

    #[test]
    fn rejects_segment_outside_guest_memory() {
        // The window claims more than the 4 MiB that exists.
        let window = LoadWindow {
            start: 0x10_0000,
            end: 0x100_0000,
        };
        let v = one_seg(TEXT_AT, data_off(1), TEXT_AT, 16, 0x40_0000);
        let e = load_elf(&mem(), &v, &window).unwrap_err();
        assert!(matches!(
            e,
            LoaderError::NotInGuestMemory {
                start: 0x10_0000,
                end: 0x50_0000
            }
        ));
    }

    #[test]
    fn flat_loads_at_window_start() {
        let m = dirty_mem();
        let code = [0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, b'0', 0xee, 0xf4];
        let window = LoadWindow {
            start: 0,
            end: 0x40_0000,
        };
        let img = load_flat(&m, &code, &window).unwrap();
        assert_eq!(
            img,
            LoadedImage {
                entry: 0,
                lowest: 0,
                highest: 9,
                segments: vec![Segment {
                    vaddr: 0,
                    file_size: 9,
                    mem_size: 9,
                    flags: PF_R | PF_W | PF_X
                }],
            }
        );
        assert_eq!(read(&m, 0, 9), code);
        assert_eq!(read(&m, 9, 1), [0xAA]);

        let img = load_flat(&m, &code, &WINDOW).unwrap();
        assert_eq!(img.entry, WINDOW.start);
        assert_eq!(read(&m, WINDOW.start, 9), code);
    }

    #[test]
    fn flat_fills_window_exactly() {
        let m = mem();
        let window = LoadWindow {
            start: 0x3f_f000,
            end: 0x40_0000,
        };
        let img = load_flat(&m, &[0x55; 0x1000], &window).unwrap();
        assert_eq!(img.highest, 0x40_0000);
    }

    #[test]
    fn flat_rejects_empty() {
        let e = load_flat(&mem(), &[], &WINDOW).unwrap_err();
        assert!(matches!(e, LoaderError::FlatEmpty));
        assert_eq!(e.to_string(), "flat image is empty");
    }

    #[test]
    fn flat_rejects_too_large() {
        let window = LoadWindow {
            start: 0x1000,
            end: 0x2000,
        };
        let e = load_flat(&mem(), &[0; 0x1001], &window).unwrap_err();
        assert!(matches!(
            e,
            LoaderError::FlatTooLarge {
                size: 0x1001,
                win_start: 0x1000,
                win_end: 0x2000
            }
        ));
        assert_eq!(
            e.to_string(),
            "flat image of 0x1001 bytes does not fit in guest memory: \
             allowed 0x1000..0x2000"
        );
        // An inverted window holds nothing.
        let inverted = LoadWindow {
            start: 0x2000,
            end: 0x1000,
        };
        assert!(matches!(
            load_flat(&mem(), &[0], &inverted),
            Err(LoaderError::FlatTooLarge { .. })
        ));
    }

    #[test]
    fn flat_rejects_window_outside_guest_memory() {
        let window = LoadWindow {
            start: 0x80_0000,
            end: 0x90_0000,
        };
        assert!(matches!(
            load_flat(&mem(), &[0xf4], &window),
            Err(LoaderError::NotInGuestMemory {
                start: 0x80_0000,
                end: 0x80_0001
            })
        ));
    }

    #[test]
    fn guest_memory_errors_keep_their_source() {
        let e = LoaderError::from(GuestMemoryError::InvalidGuestAddress(GuestAddress(0x1234)));
        assert_eq!(e.to_string(), "could not write the image into guest memory");
        let source = std::error::Error::source(&e).expect("wrapped error is the source");
        assert!(source.to_string().contains("0x1234") || source.to_string().contains("4660"));
        assert!(matches!(
            e,
            LoaderError::GuestMemory(GuestMemoryError::InvalidGuestAddress(_))
        ));
    }

    #[test]
    fn parse_never_panics_on_truncation() {
        let v = valid();
        for len in 0..v.len() {
            // Every proper prefix cuts off header, program headers or segment bytes.
            assert!(
                parse_elf(&v[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
        assert!(parse_elf(&v).is_ok());
    }

    #[test]
    fn parse_never_panics_on_corruption() {
        // Deterministic xorshift so failures reproduce.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let base = valid();
        let m = mem();
        for _ in 0..20_000 {
            let mut v = base.clone();
            let flips = next() % 4 + 1;
            for _ in 0..flips {
                let at = usize::try_from(next() % u64::try_from(v.len()).unwrap()).unwrap();
                v[at] = next().to_le_bytes()[0];
            }
            if let Ok(info) = parse_elf(&v) {
                // Anything that parses must also load or be rejected cleanly.
                match load_elf(&m, &v, &WINDOW) {
                    Ok(img) => assert_eq!(img.entry, info.entry),
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
            }
        }
    }

    #[test]
    fn messages_are_lower_case_without_trailing_period() {
        let errors = [
            LoaderError::TruncatedHeader { len: 3 },
            LoaderError::NotElf,
            LoaderError::Elf32,
            LoaderError::BadClass(9),
            LoaderError::BigEndian,
            LoaderError::BadDataEncoding(9),
            LoaderError::WrongMachine { machine: 3 },
            LoaderError::PositionIndependent,
            LoaderError::NotExecutable { e_type: 1 },
            LoaderError::DynamicallyLinked,
            LoaderError::DynamicSection,
            LoaderError::BadPhentsize { size: 1 },
            LoaderError::PhdrsOutOfFile {
                offset: 1,
                count: 1,
                entsize: 56,
                file_len: 1,
            },
            LoaderError::NoLoadSegments,
            LoaderError::FileSizeExceedsMemSize {
                index: 0,
                file_size: 2,
                mem_size: 1,
            },
            LoaderError::SegmentOutOfFile {
                index: 0,
                offset: 1,
                file_size: 1,
                file_len: 1,
            },
            LoaderError::SegmentAddressOverflow {
                index: 0,
                vaddr: 1,
                mem_size: 1,
            },
            LoaderError::SegmentOverlap {
                a_start: 0,
                a_end: 2,
                b_start: 1,
                b_end: 3,
            },
            LoaderError::EntryNotExecutable { entry: 0 },
            LoaderError::SegmentBelowWindow {
                start: 0,
                end: 1,
                win_start: 2,
                win_end: 3,
            },
            LoaderError::SegmentPastWindow {
                start: 0,
                end: 4,
                win_start: 0,
                win_end: 3,
            },
            LoaderError::NotInGuestMemory { start: 0, end: 1 },
            LoaderError::FlatEmpty,
            LoaderError::FlatTooLarge {
                size: 4,
                win_start: 0,
                win_end: 3,
            },
            LoaderError::GuestMemory(GuestMemoryError::InvalidBackendAddress),
        ];
        for e in errors {
            let msg = e.to_string();
            let first = msg.chars().next().unwrap();
            assert!(!first.is_uppercase(), "{msg}");
            assert!(!msg.ends_with('.'), "{msg}");
        }
    }
}
