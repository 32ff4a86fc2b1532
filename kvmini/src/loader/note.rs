//! The kvmini ABI note ([`kvmini_abi::note`]): which version of kvmini's
//! ABI an SDK-built image was written for.

use object::read::elf::{FileHeader as _, NoteIterator, ProgramHeader as _, SectionHeader as _};

use super::elf::{ElfFile, Header, LE};
use super::{LoaderError, NotePlace};

impl ElfFile<'_> {
    /// The ABI version in the image's kvmini note, looked for in the
    /// `PT_NOTE` segments first, then in the `SHT_NOTE` sections; `None`
    /// when the image has no such note (it is not an SDK guest).
    ///
    /// A note segment or section with contents that cannot be read as notes
    /// (an entry running past its end, an alignment other than 4 or 8) is
    /// an error, and so is a kvmini note whose descriptor is not one 4-byte
    /// version. Empty ones hold nothing and are not read.
    /// A section header table that cannot be read counts as absent, as it
    /// does for loading, which never needs sections.
    pub fn abi_version(&self) -> Result<Option<u32>, LoaderError> {
        let bytes = self.bytes();
        for (index, ph) in self.program_header_table().iter().enumerate() {
            if ph.p_filesz(LE) != 0 {
                let found = find_in(ph.notes(LE, bytes), NotePlace::Segment(index))?;
                if found.is_some() {
                    return Ok(found);
                }
            }
        }
        let Ok(sections) = self.header().section_headers(LE, bytes) else {
            return Ok(None);
        };
        for (index, sh) in sections.iter().enumerate() {
            if sh.sh_size(LE) != 0 {
                let found = find_in(sh.notes(LE, bytes), NotePlace::Section(index))?;
                if found.is_some() {
                    return Ok(found);
                }
            }
        }
        Ok(None)
    }
}

/// The version in the first kvmini note of the segment or section at
/// `place`, whose notes `object` read as `notes`.
fn find_in(
    notes: object::read::Result<Option<NoteIterator<'_, Header>>>,
    place: NotePlace,
) -> Result<Option<u32>, LoaderError> {
    let notes = notes.map_err(|source| LoaderError::BadNotes { place, source })?;
    Ok(notes.map(|n| find(n, place)).transpose()?.flatten())
}

/// The version in the first kvmini note among `notes`.
fn find(mut notes: NoteIterator<'_, Header>, place: NotePlace) -> Result<Option<u32>, LoaderError> {
    use kvmini_abi::note::{NAME, TYPE};
    while let Some(note) = notes
        .next()
        .map_err(|source| LoaderError::BadNotes { place, source })?
    {
        if note.name_bytes() != NAME || note.n_type(LE).0 != TYPE {
            continue;
        }
        let version =
            <[u8; 4]>::try_from(note.desc()).map_err(|_| LoaderError::MalformedAbiNote {
                size: note.n_descsz(LE),
            })?;
        return Ok(Some(u32::from_le_bytes(version)));
    }
    Ok(None)
}
