//! The kvmini ABI note: found in a segment or a section, its version
//! reported, another version refused, a malformed one refused, its absence
//! accepted.

use kvmini_abi::ABI_VERSION;

use super::super::{parse_elf, ElfFile, LoaderError, NotePlace};
use super::writer::{abi_note, note, Writer, PT_NOTE, SHT_NOTE};

/// The code image with `notes` as one PT_NOTE segment of alignment 4.
fn with_note_segment(notes: Vec<u8>) -> Vec<u8> {
    let mut w = Writer::exec();
    let b = w.blob(notes);
    w.segment(PT_NOTE, Some(b), 4);
    w.bytes()
}

/// The code image with `notes` as one SHT_NOTE section and no PT_NOTE.
fn with_note_section(notes: Vec<u8>) -> Vec<u8> {
    let mut w = Writer::exec();
    let b = w.blob(notes);
    w.section(SHT_NOTE, b, 0, 0, 4);
    w.bytes()
}

fn version_of(bytes: &[u8]) -> Result<Option<u32>, LoaderError> {
    ElfFile::parse(bytes).unwrap().abi_version()
}

#[test]
fn this_version_is_reported() {
    for bytes in [
        with_note_segment(abi_note(ABI_VERSION)),
        with_note_section(abi_note(ABI_VERSION)),
    ] {
        assert_eq!(version_of(&bytes).unwrap(), Some(ABI_VERSION));
        assert_eq!(parse_elf(&bytes).unwrap().abi_version, Some(ABI_VERSION));
    }
}

#[test]
fn the_note_is_found_among_others() {
    let mut notes = note(b"GNU\0", 3, &[0xab; 20], 4);
    // Same name, another type; another name, the same type.
    notes.extend(note(b"kvmini\0", 2, &7u32.to_le_bytes(), 4));
    notes.extend(note(b"kvmin\0", 1, &7u32.to_le_bytes(), 4));
    notes.extend(abi_note(ABI_VERSION));
    notes.extend(note(b"kvmini\0", 1, &9u32.to_le_bytes(), 4));
    assert_eq!(
        version_of(&with_note_segment(notes)).unwrap(),
        Some(ABI_VERSION)
    );
    // 8-aligned notes (as .note.gnu.property is) are read too.
    let notes = [
        note(b"GNU\0", 5, &[0; 12], 8),
        note(b"kvmini\0", 1, &[1, 0, 0, 0], 8),
    ]
    .concat();
    let mut w = Writer::exec();
    let b = w.blob(notes);
    w.segment(PT_NOTE, Some(b), 8);
    assert_eq!(version_of(&w.bytes()).unwrap(), Some(1));
}

#[test]
fn other_versions_are_refused_with_both_numbers() {
    for other in [0, 2, 7, u32::MAX]
        .into_iter()
        .filter(|&v| v != ABI_VERSION)
    {
        for bytes in [
            with_note_segment(abi_note(other)),
            with_note_section(abi_note(other)),
        ] {
            assert_eq!(version_of(&bytes).unwrap(), Some(other));
            let e = parse_elf(&bytes).unwrap_err();
            assert!(
                matches!(e, LoaderError::AbiVersion { image, kvmini } if image == other && kvmini == ABI_VERSION),
                "{e:?}"
            );
            assert_eq!(
                e.to_string(),
                format!(
                    "built for kvmini ABI {other}; this kvmini speaks ABI {ABI_VERSION}: \
                     rebuild it with this kvmini's SDK"
                )
            );
        }
    }
}

#[test]
fn a_malformed_descriptor_is_refused() {
    for desc in [
        &[][..],
        &[1],
        &[1, 0, 0],
        &[1, 0, 0, 0, 0],
        &[1, 0, 0, 0, 0, 0, 0, 0],
    ] {
        let n = note(b"kvmini\0", 1, desc, 4);
        for bytes in [with_note_segment(n.clone()), with_note_section(n)] {
            let size = u32::try_from(desc.len()).unwrap();
            let e = parse_elf(&bytes).unwrap_err();
            assert!(
                matches!(e, LoaderError::MalformedAbiNote { size: s } if s == size),
                "{e:?}"
            );
            assert_eq!(
                e.to_string(),
                format!("malformed kvmini ABI note: its descriptor is {size} bytes, not 4")
            );
        }
    }
}

#[test]
fn unreadable_notes_are_refused() {
    // A descriptor that runs past the segment.
    let mut cut = abi_note(ABI_VERSION);
    cut.truncate(cut.len() - 2);
    // A header shorter than 12 bytes.
    let short = vec![7, 0, 0, 0, 4, 0];
    for notes in [cut, short] {
        for (image, at, shown) in [
            (
                with_note_segment(notes.clone()),
                NotePlace::Segment(1),
                "program header 1",
            ),
            (with_note_section(notes), NotePlace::Section(1), "section 1"),
        ] {
            let e = parse_elf(&image).unwrap_err();
            assert!(
                matches!(e, LoaderError::BadNotes { place, .. } if place == at),
                "{e:?}"
            );
            assert_eq!(e.to_string(), format!("{shown}: malformed notes"));
        }
    }
    // An alignment notes cannot have.
    let mut w = Writer::exec();
    let b = w.blob(abi_note(ABI_VERSION));
    w.segment(PT_NOTE, Some(b), 16);
    assert!(matches!(
        parse_elf(&w.bytes()).unwrap_err(),
        LoaderError::BadNotes {
            place: NotePlace::Segment(1),
            ..
        }
    ));
}

#[test]
fn an_image_without_the_note_is_accepted() {
    // No notes at all; other notes only; an empty note segment with an
    // alignment notes cannot have (empty: nothing is read).
    let mut empty = Writer::exec();
    empty.segment(PT_NOTE, None, 0x1000);
    for bytes in [
        Writer::exec().bytes(),
        with_note_segment(note(b"GNU\0", 1, &[0; 16], 4)),
        with_note_section(note(b"GNU\0", 1, &[0; 16], 4)),
        empty.bytes(),
    ] {
        assert_eq!(version_of(&bytes).unwrap(), None);
        assert_eq!(parse_elf(&bytes).unwrap().abi_version, None);
    }
}

#[test]
fn an_unreadable_section_table_counts_as_absent() {
    let mut w = Writer::exec();
    let b = w.blob(abi_note(7));
    w.section(SHT_NOTE, b, 0, 0, 4);
    w.shentsize = 40;
    assert_eq!(version_of(&w.bytes()).unwrap(), None);
    assert_eq!(parse_elf(&w.bytes()).unwrap().abi_version, None);
}

#[test]
fn the_segment_is_read_before_the_sections() {
    let mut w = Writer::exec();
    let seg = w.blob(abi_note(ABI_VERSION));
    w.segment(PT_NOTE, Some(seg), 4);
    let sec = w.blob(abi_note(7));
    w.section(SHT_NOTE, sec, 0, 0, 4);
    assert_eq!(version_of(&w.bytes()).unwrap(), Some(ABI_VERSION));
}

#[test]
fn an_sdk_guest_is_never_position_independent() {
    // With kvmini's note, ET_DYN is refused as before; without it, the
    // same image is a static PIE Linux program.
    let mut w = Writer::exec();
    let b = w.blob(abi_note(ABI_VERSION));
    w.segment(PT_NOTE, Some(b), 4);
    w.e_type = 3;
    assert!(matches!(
        parse_elf(&w.bytes()),
        Err(LoaderError::PositionIndependent)
    ));
    let mut w = Writer::exec();
    w.e_type = 3;
    assert!(parse_elf(&w.bytes()).is_ok());
}
