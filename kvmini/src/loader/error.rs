//! Why an image could not be read, parsed or loaded.

use std::fmt;

use vm_memory::GuestMemoryError;

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
    #[error("dynamically linked: kvmini runs static programs (link with -static)")]
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
    /// The image's kvmini ABI note names another ABI version.
    #[error(
        "built for kvmini ABI {image}; this kvmini speaks ABI {kvmini}: rebuild it with \
         this kvmini's SDK"
    )]
    AbiVersion {
        /// The version in the image's note.
        image: u32,
        /// The version this kvmini serves ([`kvmini_abi::ABI_VERSION`]).
        kvmini: u32,
    },
    /// The kvmini ABI note's descriptor is not one 4-byte version.
    #[error(
        "malformed kvmini ABI note: its descriptor is {size} bytes, not {}",
        kvmini_abi::note::DESC_SIZE
    )]
    MalformedAbiNote {
        /// The descriptor's size (`n_descsz`).
        size: u32,
    },
    /// A note segment or section cannot be read as a sequence of notes.
    #[error("{place}: malformed notes")]
    BadNotes {
        /// Where the notes are.
        place: NotePlace,
        /// What the ELF parser found wrong.
        #[source]
        source: object::read::Error,
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

/// Where a note was found, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotePlace {
    /// A `PT_NOTE` program header, by index.
    Segment(usize),
    /// An `SHT_NOTE` section, by index.
    Section(usize),
}

impl fmt::Display for NotePlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotePlace::Segment(index) => write!(f, "program header {index}"),
            NotePlace::Section(index) => write!(f, "section {index}"),
        }
    }
}
