//! What an [`ElfFile`] reports beyond what kvmini runs today: its kind,
//! interpreter, TLS template, stack flags and symbols.

use super::super::{parse_elf, ElfFile, ElfKind, LoaderError, SymbolName, Tls, PF_R, PF_W, PF_X};
use super::writer::{
    sym, Ph, Writer, PT_GNU_STACK, PT_INTERP, PT_TLS, SHT_STRTAB, SHT_SYMTAB, TEXT_AT,
};

#[test]
fn kind_follows_e_type() {
    let mut w = Writer::exec();
    assert_eq!(
        ElfFile::parse(&w.bytes()).unwrap().kind(),
        ElfKind::Executable
    );
    w.e_type = 3;
    let bytes = w.bytes();
    let elf = ElfFile::parse(&bytes).unwrap();
    assert_eq!(elf.kind(), ElfKind::PositionIndependent);
    assert!(!elf.has_interpreter());
    assert_eq!(elf.entry(), TEXT_AT);
    // Without kvmini's note, a static PIE Linux program at kvmini's base.
    assert_eq!(
        parse_elf(&bytes).unwrap().entry,
        TEXT_AT + super::super::LINUX_PIE_BASE
    );
}

#[test]
fn an_interpreter_is_reported() {
    for e_type in [2, 3] {
        let mut w = Writer::exec();
        w.e_type = e_type;
        let b = w.blob(b"/lib64/ld-linux-x86-64.so.2\0".to_vec());
        w.segment(PT_INTERP, Some(b), 1);
        let bytes = w.bytes();
        assert!(ElfFile::parse(&bytes).unwrap().has_interpreter());
        assert!(matches!(
            parse_elf(&bytes),
            Err(LoaderError::DynamicallyLinked)
        ));
    }
    assert!(!ElfFile::parse(&Writer::exec().bytes())
        .unwrap()
        .has_interpreter());
}

#[test]
fn tls_template_is_reported() {
    assert_eq!(ElfFile::parse(&Writer::exec().bytes()).unwrap().tls(), None);
    let mut w = Writer::exec();
    let b = w.blob(vec![0x11; 24]);
    w.phdrs.push(Ph {
        p_type: PT_TLS,
        flags: PF_R,
        blob: Some(b),
        vaddr: 0x10_2000,
        memsz: 0x60,
        align: 16,
    });
    let bytes = w.bytes();
    assert_eq!(
        ElfFile::parse(&bytes).unwrap().tls(),
        Some(Tls {
            vaddr: 0x10_2000,
            file_size: 24,
            mem_size: 0x60,
            align: 16
        })
    );
    // PT_TLS is not loaded by itself; the image still runs as before.
    assert_eq!(parse_elf(&bytes).unwrap().segments.len(), 1);
}

#[test]
fn stack_flags_are_reported() {
    assert_eq!(
        ElfFile::parse(&Writer::exec().bytes())
            .unwrap()
            .stack_flags(),
        None
    );
    for flags in [PF_R | PF_W, PF_R | PF_W | PF_X, 0] {
        let mut w = Writer::exec();
        w.phdrs.push(Ph {
            p_type: PT_GNU_STACK,
            flags,
            blob: None,
            vaddr: 0,
            memsz: 0,
            align: 16,
        });
        let bytes = w.bytes();
        assert_eq!(ElfFile::parse(&bytes).unwrap().stack_flags(), Some(flags));
        assert!(parse_elf(&bytes).is_ok());
    }
}

/// The code image with a symbol table of `symbols` (each a name and the
/// rest of a [`sym`] entry), its string table linked.
fn with_symbols(symbols: &[(&[u8], u8, u16, u64, u64)]) -> Vec<u8> {
    let mut strtab = vec![0u8];
    let mut symtab = sym(0, 0, 0, 0, 0); // entry 0 is the null symbol
    for &(name, st_type, shndx, value, size) in symbols {
        let at = u32::try_from(strtab.len()).unwrap();
        strtab.extend_from_slice(name);
        strtab.push(0);
        symtab.extend(sym(
            if name.is_empty() { 0 } else { at },
            st_type,
            shndx,
            value,
            size,
        ));
    }
    let mut w = Writer::exec();
    let s = w.blob(strtab);
    let t = w.blob(symtab);
    // Section 1 is the string table, section 2 the symbols linking it.
    let strings = w.section(SHT_STRTAB, s, 0, 0, 1);
    w.section(SHT_SYMTAB, t, strings, 24, 8);
    w.bytes()
}

const FUNC: u8 = 2;
const OBJECT: u8 = 1;
const NOTYPE: u8 = 0;
const SECTION: u8 = 3;
const FILE: u8 = 4;
const TLS: u8 = 6;

fn names_and_places(bytes: &[u8]) -> Vec<(Vec<u8>, u64, u64)> {
    ElfFile::parse(bytes)
        .unwrap()
        .symbols()
        .iter()
        .map(|s| (s.name.as_bytes().to_vec(), s.address, s.size))
        .collect()
}

#[test]
fn symbols_are_read_sorted_and_filtered() {
    let bytes = with_symbols(&[
        (b"main", FUNC, 1, 0x10_0040, 0x20),
        (b"_start", NOTYPE, 1, 0x10_0000, 0),
        (b"table", OBJECT, 1, 0x10_1000, 0x100),
        (b"helper", FUNC, 1, 0x10_0020, 0x20),
        // Left out: undefined, absolute, common, section and file
        // symbols, TLS offsets, and nameless entries.
        (b"undefined", FUNC, 0, 0, 0),
        (b"absolute", NOTYPE, 0xfff1, 0x1234, 0),
        (b"common", OBJECT, 0xfff2, 8, 8),
        (b"", SECTION, 1, 0x10_0000, 0),
        (b"main.c", FILE, 0xfff1, 0, 0),
        (b"tls_var", TLS, 1, 0, 8),
        (b"", FUNC, 1, 0x10_0080, 4),
    ]);
    assert_eq!(
        names_and_places(&bytes),
        vec![
            (b"_start".to_vec(), 0x10_0000, 0),
            (b"helper".to_vec(), 0x10_0020, 0x20),
            (b"main".to_vec(), 0x10_0040, 0x20),
            (b"table".to_vec(), 0x10_1000, 0x100),
        ]
    );
    // Symbols change nothing about loading.
    assert!(parse_elf(&bytes).is_ok());
}

#[test]
fn no_or_broken_symbol_table_means_no_symbols() {
    assert!(ElfFile::parse(&Writer::exec().bytes())
        .unwrap()
        .symbols()
        .is_empty());
    // The string table link points past the section table.
    let mut w = Writer::exec();
    let t = w.blob(sym(0, 0, 0, 0, 0));
    w.section(SHT_SYMTAB, t, 9, 24, 8);
    assert!(ElfFile::parse(&w.bytes()).unwrap().symbols().is_empty());
    // A broken section table.
    let mut bytes = with_symbols(&[(b"main", FUNC, 1, 0x10_0000, 2)]);
    bytes[58..60].copy_from_slice(&40u16.to_le_bytes()); // e_shentsize
    assert!(ElfFile::parse(&bytes).unwrap().symbols().is_empty());
}

#[test]
fn hostile_names_are_kept_as_bytes_and_displayed_escaped() {
    let cases: [(&[u8], &str); 6] = [
        (b"plain_name.1$x", "plain_name.1$x"),
        (b"\x1b[2J\x1b[Hfake", "\\x1b[2J\\x1b[Hfake"),
        (b"new\nline\r", "new\\x0aline\\x0d"),
        (b"back\\slash and space", "back\\\\slash\\x20and\\x20space"),
        ("caf\u{e9}".as_bytes(), "caf\\xc3\\xa9"),
        (b"\x7f\xff\x00", "\\x7f\\xff\\x00"),
    ];
    for (raw, shown) in cases {
        let name = SymbolName::from(raw);
        assert_eq!(name.as_bytes(), raw);
        assert_eq!(name.to_string(), shown);
        assert_eq!(format!("{name:?}"), format!("\"{shown}\""));
    }
    // Read from a file: the name's bytes as they are (up to the NUL).
    let bytes = with_symbols(&[(b"\x1b]0;owned\x07", FUNC, 1, 0x10_0000, 2)]);
    let symbols = ElfFile::parse(&bytes).unwrap().symbols();
    let first = symbols.iter().next().unwrap();
    assert_eq!(first.name.as_bytes(), b"\x1b]0;owned\x07");
    assert_eq!(first.name.to_string(), "\\x1b]0;owned\\x07");
}

#[test]
fn an_address_is_named_symbol_plus_offset() {
    let bytes = with_symbols(&[
        (b"_start", NOTYPE, 1, 0x10_0000, 0),
        (b"helper", FUNC, 1, 0x10_0020, 0x20),
        (b"main", FUNC, 1, 0x10_0040, 0x20),
        (b"main_alias", NOTYPE, 1, 0x10_0040, 0),
        (b"table", OBJECT, 1, 0x10_1000, 0x100),
    ]);
    let symbols = ElfFile::parse(&bytes).unwrap().symbols();
    let name = |address| symbols.lookup(address).map(|l| l.to_string());
    assert_eq!(name(0xf_ffff), None);
    assert_eq!(name(0x10_0000).as_deref(), Some("_start"));
    // A label reaches the next symbol.
    assert_eq!(name(0x10_001f).as_deref(), Some("_start+0x1f"));
    assert_eq!(name(0x10_0020).as_deref(), Some("helper"));
    assert_eq!(name(0x10_003f).as_deref(), Some("helper+0x1f"));
    // A sized symbol wins over a label at the same address, while it covers the address.
    assert_eq!(name(0x10_0045).as_deref(), Some("main+0x5"));
    assert_eq!(name(0x10_0060).as_deref(), Some("main_alias+0x20"));
    assert_eq!(name(0x10_10ff).as_deref(), Some("table+0xff"));
    // Past a sized symbol with no label: nothing.
    assert_eq!(name(0x10_1100), None);
    assert_eq!(name(u64::MAX), None);
    let at = symbols.lookup(0x10_0047).unwrap();
    assert_eq!((at.symbol.name.as_bytes(), at.offset), (&b"main"[..], 7));
}

/// This test program, as binutils' `readelf` reads it: `(type, vaddr,
/// filesz, memsz, flags, align)` of each program header, and `(name,
/// value, size)` of each symbol of `.symtab` that [`ElfFile::symbols`]
/// keeps.
#[allow(clippy::type_complexity)]
fn readelf(
    path: &std::path::Path,
) -> (
    Vec<(String, u64, u64, u64, String, u64)>,
    Vec<(Vec<u8>, u64, u64)>,
) {
    let run = |flag: &str| {
        let out = std::process::Command::new("readelf")
            .args([flag, "-W"])
            .arg(path)
            .output()
            .expect("binutils' readelf runs");
        assert!(out.status.success());
        String::from_utf8(out.stdout).expect("readelf prints text")
    };
    let num = |s: &str| {
        s.strip_prefix("0x")
            .map_or_else(|| s.parse(), |h| u64::from_str_radix(h, 16))
            .unwrap()
    };
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let mut phdrs = Vec::new();
    for line in run("-l").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Type Offset VirtAddr PhysAddr FileSiz MemSiz Flg... Align
        if f.len() >= 8 && f[1].starts_with("0x") && f[2].starts_with("0x") {
            let flags = f[6..f.len() - 1].concat();
            phdrs.push((
                f[0].to_owned(),
                hex(f[2]),
                hex(f[4]),
                hex(f[5]),
                flags,
                hex(f[f.len() - 1]),
            ));
        }
    }
    let mut symbols = Vec::new();
    let mut in_symtab = false;
    for line in run("-s").lines() {
        if line.starts_with("Symbol table") {
            in_symtab = line.contains("'.symtab'");
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        // Num: Value Size Type Bind Vis Ndx Name
        if !in_symtab || f.len() < 8 || !f[0].ends_with(':') || f[0] == "Num:" {
            continue;
        }
        if matches!(f[3], "FUNC" | "OBJECT" | "NOTYPE") && !matches!(f[6], "UND" | "ABS" | "COM") {
            symbols.push((f[7].as_bytes().to_vec(), hex(f[1]), num(f[2])));
        }
    }
    symbols.sort();
    (phdrs, symbols)
}

#[test]
fn a_real_program_reads_as_readelf_reads_it() {
    // This test program: a position-independent, dynamically linked
    // executable with a symbol table, as cargo builds tests.
    let path = std::env::current_exe().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (phdrs, want_symbols) = readelf(&path);
    let elf = ElfFile::parse(&bytes).unwrap();

    assert_eq!(elf.kind(), ElfKind::PositionIndependent);
    assert!(matches!(
        parse_elf(&bytes),
        Err(LoaderError::DynamicallyLinked)
    ));
    assert_eq!(elf.has_interpreter(), phdrs.iter().any(|p| p.0 == "INTERP"));
    assert!(elf.has_interpreter());
    let flags = |f: &str| {
        [('R', PF_R), ('W', PF_W), ('E', PF_X)]
            .iter()
            .filter(|(c, _)| f.contains(*c))
            .map(|(_, bit)| bit)
            .sum::<u32>()
    };
    let stack = phdrs
        .iter()
        .find(|p| p.0 == "GNU_STACK")
        .map(|p| flags(&p.4));
    assert_eq!(elf.stack_flags(), stack);
    let tls = phdrs.iter().find(|p| p.0 == "TLS").map(|p| Tls {
        vaddr: p.1,
        file_size: p.2,
        mem_size: p.3,
        align: p.5,
    });
    assert_eq!(elf.tls(), tls);
    let loads: Vec<(u64, u64, u64, u32)> = phdrs
        .iter()
        .filter(|p| p.0 == "LOAD" && p.3 > 0)
        .map(|p| (p.1, p.2, p.3, flags(&p.4)))
        .collect();
    let segments: Vec<(u64, u64, u64, u32)> = elf
        .segments()
        .unwrap()
        .iter()
        .map(|(s, _)| (s.vaddr, s.file_size, s.mem_size, s.flags))
        .collect();
    assert_eq!(segments, loads);

    let mut got: Vec<(Vec<u8>, u64, u64)> = elf
        .symbols()
        .iter()
        .map(|s| (s.name.as_bytes().to_vec(), s.address, s.size))
        .collect();
    got.sort();
    assert!(got.len() > 100, "{} symbols", got.len());
    assert_eq!(got, want_symbols);
}

#[test]
fn a_symbol_table_counts_and_iterates_its_symbols() {
    let bytes = with_symbols(&[
        (b"main", FUNC, 1, 0x10_0040, 0x20),
        (b"_start", NOTYPE, 1, 0x10_0000, 0),
    ]);
    let symbols = ElfFile::parse(&bytes).unwrap().symbols();
    assert_eq!((symbols.len(), symbols.is_empty()), (2, false));
    let names: Vec<&[u8]> = (&symbols).into_iter().map(|s| s.name.as_bytes()).collect();
    assert_eq!(names, [&b"_start"[..], b"main"]);
    let stripped = ElfFile::parse(&Writer::exec().bytes()).unwrap().symbols();
    assert_eq!((stripped.len(), stripped.is_empty()), (0, true));
    assert_eq!((&stripped).into_iter().count(), 0);
}
