//! The parser's and the loader's unit tests, on images assembled here.

use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::*;
use writer::{PT_INTERP, PT_LOAD, PT_NOTE, TEXT_AT};

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: u16 = 56;
const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ELFDATA2MSB: u8 = 2;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_DYNAMIC: u32 = 2;

const MEM_SIZE: usize = 4 << 20;
const DATA_AT: u64 = 0x10_1000;
const BSS_AT: u64 = 0x10_2000;
const WINDOW: LoadWindow = LoadWindow {
    start: 0x10_0000,
    end: 0x40_0000,
};
const TEXT: [u8; 16] = [
    0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xeb, 0xfe,
];
const DATA: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

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
                file_offset: data_off(4),
                vaddr: TEXT_AT,
                file_size: 16,
                mem_size: 16,
                flags: PF_R | PF_X
            },
            Segment {
                file_offset: data_off(4) + 16,
                vaddr: DATA_AT,
                file_size: 8,
                mem_size: 0x100,
                flags: PF_R | PF_W
            },
            Segment {
                file_offset: 0,
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
        Segment {
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
fn a_static_pie_loads_at_kvmini_s_base_and_a_shared_object_is_refused() {
    let mut v = valid();
    set16(&mut v, 16, ET_DYN);
    // Without kvmini's note: a Linux program, every address moved by the base.
    let image = parse_elf(&v).unwrap();
    assert_eq!(image.entry, TEXT_AT + LINUX_PIE_BASE);
    assert_eq!(image.lowest, TEXT_AT + LINUX_PIE_BASE);
    assert_eq!(image.highest, BSS_AT + 0x2000 + LINUX_PIE_BASE);
    assert_eq!(image.abi_version, None);
    // A static PIE has a dynamic section but no interpreter.
    set32(&mut v, ph_off(3), PT_DYNAMIC);
    assert_eq!(parse_elf(&v).unwrap().entry, TEXT_AT + LINUX_PIE_BASE);
    // A dynamically linked PIE (what most host programs are) says so.
    set32(&mut v, ph_off(3), PT_INTERP);
    assert!(matches!(parse_err(&v), LoaderError::DynamicallyLinked));
    // An entry point of 0 is a shared object's.
    let mut v = valid();
    set16(&mut v, 16, ET_DYN);
    set64(&mut v, 24, 0);
    let e = parse_err(&v);
    assert!(matches!(e, LoaderError::PositionIndependent));
    assert_eq!(
        e.to_string(),
        "position-independent executable (static PIE) or shared object: kvmini runs \
         executables linked at a fixed address; link the guest with -static -no-pie"
    );
    // So is one with no program headers at all.
    set16(&mut v, 56, 0);
    assert!(matches!(parse_err(&v), LoaderError::PositionIndependent));
    // A segment that the base moves past the top of the address space.
    let mut v = one_seg(u64::MAX - 0x1000, 0, u64::MAX - 0x2000, 16, 16);
    set16(&mut v, 16, ET_DYN);
    assert!(matches!(
        parse_err(&v),
        LoaderError::SegmentAddressOverflow { index: 0, .. }
    ));
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
        "dynamically linked: kvmini runs static programs (link with -static)"
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

/// The table is `e_phnum * e_phentsize` bytes: padded entries whose last
/// padding runs past the end of the file are refused, even though the
/// 56 bytes read of each entry lie inside it.
#[test]
fn rejects_a_padded_table_whose_padding_runs_past_the_file() {
    let mut v = vec![0u8; EHDR_SIZE];
    v.copy_from_slice(&valid()[..EHDR_SIZE]);
    set16(&mut v, 54, 64);
    set16(&mut v, 56, 2);
    let mut bss = vec![0u8; 64];
    set32(&mut bss, 0, PT_LOAD);
    set32(&mut bss, 4, PF_R | PF_X);
    set64(&mut bss, 16, TEXT_AT);
    set64(&mut bss, 40, 16);
    v.extend_from_slice(&bss);
    // The second entry's 56 bytes, without its 8 bytes of padding.
    v.extend_from_slice(&[0u8; 56]);
    assert_eq!(v.len(), 184);
    assert!(matches!(
        parse_err(&v),
        LoaderError::PhdrsOutOfFile {
            offset: 64,
            count: 2,
            entsize: 64,
            file_len: 184
        }
    ));
}

/// A file of exactly the 64-byte header is not truncated: with no
/// program headers it is an image with nothing to load.
#[test]
fn a_file_of_just_the_header_has_no_load_segments() {
    let mut v = valid();
    v.truncate(EHDR_SIZE);
    set16(&mut v, 56, 0);
    assert!(matches!(parse_err(&v), LoaderError::NoLoadSegments));
    assert!(matches!(
        parse_err(&v[..63]),
        LoaderError::TruncatedHeader { len: 63 }
    ));
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

/// A segment may fill the load window to its last byte and start at its
/// first, and not one byte more on either side: past the window lies
/// kvmini's own part of guest memory.
#[test]
fn segments_fill_the_window_exactly_and_no_more() {
    let (start, end) = (WINDOW.start, WINDOW.end);
    let m = dirty_mem();
    let v = one_seg(start, data_off(1), start, 16, end - start);
    let image = load_elf(&m, &v, &WINDOW).unwrap();
    assert_eq!((image.lowest, image.highest), (start, end));
    assert_eq!(read(&m, end - 16, 16), [0; 16]);
    let m = dirty_mem();
    let v = one_seg(start, data_off(1), start, 16, end - start + 1);
    let e = load_elf(&m, &v, &WINDOW).unwrap_err();
    assert!(matches!(
        e,
        LoaderError::SegmentPastWindow { start: s, end: e, .. } if (s, e) == (start, end + 1)
    ));
    let v = one_seg(start - 1, data_off(1), start - 1, 16, 16);
    let e = load_elf(&m, &v, &WINDOW).unwrap_err();
    assert!(matches!(
        e,
        LoaderError::SegmentBelowWindow { start: s, .. } if s == start - 1
    ));
    // Nothing was written by either.
    assert_eq!(read(&m, start - 1, 17), [0xAA; 17]);
    assert_eq!(read(&m, end - 16, 16), [0xAA; 16]);
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
                file_offset: 0,
                vaddr: 0,
                file_size: 9,
                mem_size: 9,
                flags: PF_R | PF_W | PF_X
            }],
            abi_version: None,
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

mod facts;
mod image_file;
mod notes;
mod program_headers;
mod writer;

mod random {
    //! The parser on random bytes: it never panics, and neither does
    //! anything it reports.

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::super::{parse_elf, ElfFile};

    fn config() -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(256);
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn parse_elf_never_panics_on_random_bytes(
            bytes in prop_oneof![
                vec(any::<u8>(), 0..512),
                // Past the magic, class and data checks.
                vec(any::<u8>(), 0..512).prop_map(|tail| {
                    let mut v = b"\x7fELF\x02\x01\x01".to_vec();
                    v.extend(tail);
                    v
                }),
            ],
        ) {
            let _ = parse_elf(&bytes);
            if let Ok(elf) = ElfFile::parse(&bytes) {
                let _ = (elf.abi_version(), elf.tls(), elf.stack_flags(), elf.segments());
                let symbols = elf.symbols();
                let _ = symbols.lookup(elf.entry()).map(|at| at.to_string());
            }
        }
    }
}
