//! Reading an x86_64 ELF executable with the `object` crate's ELF reader,
//! and kvmini's own checks on what it finds.
//!
//! [`ElfFile`] reads the file header and the program header table and
//! reports what the image is (static or dynamically linked, fixed address
//! or position-independent, its TLS template, its stack flags, its ABI note
//! and symbols) without deciding whether kvmini runs it. [`parse_elf`]
//! decides: kvmini runs static executables linked at a fixed address whose
//! loadable segments do not overlap and whose entry point is executable.

use object::elf::{FileHeader64, ProgramHeader64};
use object::read::elf::{FileHeader as _, ProgramHeader as _};
use object::{LittleEndian, ReadRef as _};

use super::{LoadedImage, LoaderError, Segment, PF_X};

/// Every field is read little-endian: big-endian files are refused first.
pub(super) const LE: LittleEndian = LittleEndian;
pub(super) type Header = FileHeader64<LittleEndian>;
type Phdr = ProgramHeader64<LittleEndian>;

const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ELFDATA2MSB: u8 = 2;
/// Size of the ELF64 file header.
const EHDR_SIZE: usize = size_of::<Header>();
/// Size of one ELF64 program header; larger entries are read with their
/// first 56 bytes.
const PHDR_SIZE: usize = size_of::<Phdr>();

/// What `e_type` says an image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfKind {
    /// `ET_EXEC`: linked at fixed addresses.
    Executable,
    /// `ET_DYN`: position-independent (a static PIE, which runs at a base
    /// the loader chooses, or a shared object).
    PositionIndependent,
}

/// A `PT_TLS` segment: the template each thread's TLS block starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tls {
    /// Address of the template (its initialised part first).
    pub vaddr: u64,
    /// Bytes of initialised data (`.tdata`).
    pub file_size: u64,
    /// Size of the whole block, zero-initialised part (`.tbss`) included.
    pub mem_size: u64,
    /// Required alignment of the block.
    pub align: u64,
}

/// An x86_64 ELF64 file whose header and program header table have been
/// read: nothing in it is trusted further than that.
#[derive(Debug, Clone)]
pub struct ElfFile<'a> {
    bytes: &'a [u8],
    header: &'a Header,
    phdrs: Vec<&'a Phdr>,
}

impl<'a> ElfFile<'a> {
    /// Reads the file header and the program header table of `bytes`.
    /// Refuses anything but a little-endian ELF64 file for x86_64 of type
    /// `ET_EXEC` or `ET_DYN` whose program header table lies in the file.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, LoaderError> {
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
        if bytes.len() < EHDR_SIZE {
            return Err(truncated);
        }
        match bytes[5] {
            ELFDATA2LSB => {}
            ELFDATA2MSB => return Err(LoaderError::BigEndian),
            d => return Err(LoaderError::BadDataEncoding(d)),
        }
        // Read directly rather than with `FileHeader::parse`, which also
        // wants EI_VERSION to be 1: kvmini has never required that.
        let header: &Header = bytes.read_at(0).map_err(|()| truncated)?;

        // Machine first: "built for aarch64" is more useful than "PIE" for an ARM binary.
        let machine = header.e_machine(LE).0;
        if machine != object::elf::EM_X86_64.0 {
            return Err(LoaderError::WrongMachine { machine });
        }
        let e_type = header.e_type(LE);
        if e_type != object::elf::ET_EXEC && e_type != object::elf::ET_DYN {
            return Err(LoaderError::NotExecutable { e_type: e_type.0 });
        }
        let phdrs = Self::program_headers(bytes, header)?;
        Ok(ElfFile {
            bytes,
            header,
            phdrs,
        })
    }

    /// The program header table. `e_phnum` is taken as it is (0xffff is
    /// not an escape to a count elsewhere), and entries larger than an
    /// ELF64 program header are accepted, as they always were.
    fn program_headers(bytes: &'a [u8], header: &Header) -> Result<Vec<&'a Phdr>, LoaderError> {
        let count = header.e_phnum(LE);
        if count == 0 {
            return Ok(Vec::new());
        }
        let entsize = header.e_phentsize(LE);
        if usize::from(entsize) < PHDR_SIZE {
            return Err(LoaderError::BadPhentsize { size: entsize });
        }
        let offset = header.e_phoff(LE);
        let out_of_file = LoaderError::PhdrsOutOfFile {
            offset,
            count,
            entsize,
            file_len: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        };
        // Cannot overflow: both factors are u16.
        let table_len = u64::from(count) * u64::from(entsize);
        if bytes.read_bytes_at(offset, table_len).is_err() {
            return Err(out_of_file);
        }
        // Every entry lies inside the table just checked.
        (0..u64::from(count))
            .map(|i| bytes.read_at::<Phdr>(offset + i * u64::from(entsize)))
            .collect::<Result<_, ()>>()
            .map_err(|()| out_of_file)
    }

    /// The file's bytes.
    pub(super) fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The file header.
    pub(super) fn header(&self) -> &'a Header {
        self.header
    }

    /// The program headers, in table order.
    pub(super) fn program_header_table(&self) -> &[&'a Phdr] {
        &self.phdrs
    }

    /// `ET_EXEC` or `ET_DYN`.
    pub fn kind(&self) -> ElfKind {
        if self.header.e_type(LE) == object::elf::ET_DYN {
            ElfKind::PositionIndependent
        } else {
            ElfKind::Executable
        }
    }

    /// `e_entry`, as the file says it (relative to the load base for `ET_DYN`).
    pub fn entry(&self) -> u64 {
        self.header.e_entry(LE)
    }

    fn first(&self, p_type: object::elf::ProgramType) -> Option<&'a Phdr> {
        self.phdrs
            .iter()
            .copied()
            .find(|ph| ph.p_type(LE) == p_type)
    }

    /// Whether a `PT_INTERP` header asks for a dynamic loader.
    pub fn has_interpreter(&self) -> bool {
        self.first(object::elf::PT_INTERP).is_some()
    }

    /// Whether a `PT_DYNAMIC` header is present.
    pub fn has_dynamic_section(&self) -> bool {
        self.first(object::elf::PT_DYNAMIC).is_some()
    }

    /// The first `PT_TLS` segment, if any.
    pub fn tls(&self) -> Option<Tls> {
        self.first(object::elf::PT_TLS).map(|ph| Tls {
            vaddr: ph.p_vaddr(LE),
            file_size: ph.p_filesz(LE),
            mem_size: ph.p_memsz(LE),
            align: ph.p_align(LE),
        })
    }

    /// The flags of the first `PT_GNU_STACK` header ([`PF_R`](super::PF_R),
    /// [`PF_W`](super::PF_W), [`PF_X`]), or `None` when there is none (an
    /// executable stack, by the old convention).
    pub fn stack_flags(&self) -> Option<u32> {
        self.first(object::elf::PT_GNU_STACK)
            .map(|ph| ph.p_flags(LE).0)
    }

    /// The non-empty `PT_LOAD` segments in table order, each with its file
    /// bytes: file size at most memory size, file bytes inside the file,
    /// and an end address that fits in 64 bits.
    pub fn segments(&self) -> Result<Vec<(Segment, &'a [u8])>, LoaderError> {
        let file_len = u64::try_from(self.bytes.len()).unwrap_or(u64::MAX);
        let mut segments = Vec::new();
        for (index, ph) in self.phdrs.iter().enumerate() {
            if ph.p_type(LE) != object::elf::PT_LOAD {
                continue;
            }
            let segment = Segment {
                file_offset: ph.p_offset(LE),
                vaddr: ph.p_vaddr(LE),
                file_size: ph.p_filesz(LE),
                mem_size: ph.p_memsz(LE),
                flags: ph.p_flags(LE).0,
            };
            if segment.file_size > segment.mem_size {
                return Err(LoaderError::FileSizeExceedsMemSize {
                    index,
                    file_size: segment.file_size,
                    mem_size: segment.mem_size,
                });
            }
            if segment.mem_size == 0 {
                continue;
            }
            // A bss-only segment reads nothing from the file, so its offset is irrelevant.
            let data = if segment.file_size == 0 {
                &[][..]
            } else {
                ph.data(LE, self.bytes)
                    .map_err(|()| LoaderError::SegmentOutOfFile {
                        index,
                        offset: segment.file_offset,
                        file_size: segment.file_size,
                        file_len,
                    })?
            };
            if segment.vaddr.checked_add(segment.mem_size).is_none() {
                return Err(LoaderError::SegmentAddressOverflow {
                    index,
                    vaddr: segment.vaddr,
                    mem_size: segment.mem_size,
                });
            }
            segments.push((segment, data));
        }
        Ok(segments)
    }
}

/// Parses an image and applies kvmini's checks without touching guest
/// memory (fuzzable, used by the CLI to validate early).
pub fn parse_elf(bytes: &[u8]) -> Result<LoadedImage, LoaderError> {
    parse(bytes).map(|(image, _)| image)
}

/// [`parse_elf`], also returning each segment's file bytes so loading
/// cannot disagree with parsing.
pub(super) fn parse(bytes: &[u8]) -> Result<(LoadedImage, Vec<&[u8]>), LoaderError> {
    let elf = ElfFile::parse(bytes)?;
    // Dynamic linking is checked first: it is the root cause of any odd-looking segments.
    if elf.has_interpreter() {
        return Err(LoaderError::DynamicallyLinked);
    }
    // A static PIE without kvmini's note is a Linux program, loaded at
    // kvmini's base; one with an entry point of 0 is a shared object. SDK
    // guests stay linked at a fixed address.
    let base = match elf.kind() {
        ElfKind::PositionIndependent if elf.entry() != 0 && elf.abi_version()?.is_none() => {
            super::LINUX_PIE_BASE
        }
        ElfKind::PositionIndependent => return Err(LoaderError::PositionIndependent),
        ElfKind::Executable if elf.has_dynamic_section() => {
            return Err(LoaderError::DynamicSection)
        }
        ElfKind::Executable => 0,
    };
    let (mut segments, contents): (Vec<Segment>, Vec<&[u8]>) = elf.segments()?.into_iter().unzip();
    for (index, segment) in segments.iter_mut().enumerate() {
        segment.vaddr = segment
            .vaddr
            .checked_add(base)
            .filter(|v| v.checked_add(segment.mem_size).is_some())
            .ok_or(LoaderError::SegmentAddressOverflow {
                index,
                vaddr: segment.vaddr,
                mem_size: segment.mem_size,
            })?;
    }
    if segments.is_empty() {
        return Err(LoaderError::NoLoadSegments);
    }

    let mut sorted: Vec<&Segment> = segments.iter().collect();
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

    let entry = elf.entry().wrapping_add(base);
    let entry_ok = segments
        .iter()
        .any(|s| s.flags & PF_X != 0 && entry >= s.vaddr && entry < s.end());
    if !entry_ok {
        return Err(LoaderError::EntryNotExecutable { entry });
    }

    let abi_version = elf.abi_version()?;
    if let Some(image) = abi_version.filter(|&v| v != kvmini_abi::ABI_VERSION) {
        return Err(LoaderError::AbiVersion {
            image,
            kvmini: kvmini_abi::ABI_VERSION,
        });
    }

    let lowest = sorted.first().map_or(0, |s| s.vaddr);
    let highest = segments.iter().map(Segment::end).max().unwrap_or(0);
    let image = LoadedImage {
        entry,
        lowest,
        highest,
        segments,
        abi_version,
    };
    Ok((image, contents))
}
