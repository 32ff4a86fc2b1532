//! What the start of a Linux program needs from its image beyond the
//! segments: where its program headers are in memory (`AT_PHDR`).

use object::read::elf::{FileHeader as _, ProgramHeader as _};

use super::elf::{ElfFile, ElfKind, LE};
use super::LoaderError;

/// The program header table as a loaded program sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramHeaders {
    /// Its guest address (0 when no loaded segment holds it).
    pub address: u64,
    /// The size of one entry.
    pub entry_size: u64,
    /// The number of entries.
    pub count: u64,
}

/// The program header table of `bytes` as loaded: at `PT_PHDR`'s address,
/// or where the loadable segment that holds its file bytes puts them.
pub fn program_headers(bytes: &[u8]) -> Result<ProgramHeaders, LoaderError> {
    let elf = ElfFile::parse(bytes)?;
    let header = elf.header();
    let phoff = header.e_phoff(LE);
    let phdrs = elf.program_header_table();
    let from_phdr = phdrs
        .iter()
        .find(|ph| ph.p_type(LE) == object::elf::PT_PHDR)
        .map(|ph| ph.p_vaddr(LE));
    let from_load = || {
        phdrs.iter().find_map(|ph| {
            let (offset, size) = (ph.p_offset(LE), ph.p_filesz(LE));
            let inside = ph.p_type(LE) == object::elf::PT_LOAD
                && phoff >= offset
                && offset.checked_add(size).is_some_and(|end| phoff < end);
            inside
                .then(|| ph.p_vaddr(LE).checked_add(phoff - offset))
                .flatten()
        })
    };
    // A static PIE is loaded at kvmini's base (see `elf::parse`).
    let base = match elf.kind() {
        ElfKind::PositionIndependent => super::LINUX_PIE_BASE,
        ElfKind::Executable => 0,
    };
    Ok(ProgramHeaders {
        address: from_phdr
            .or_else(from_load)
            .map_or(0, |a| a.wrapping_add(base)),
        entry_size: u64::from(header.e_phentsize(LE)),
        count: u64::from(header.e_phnum(LE)),
    })
}
