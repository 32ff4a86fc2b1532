//! The ELF and flat image loaders on user-supplied images.
//!
//! The input is either raw bytes or an ELF assembled from fuzzed header
//! fields, program headers and payload (then byte-patched), loaded into
//! 4 MiB of guest memory pre-filled with a pattern, through the usual load
//! window or an arbitrary one. Checked:
//!
//! * `parse_elf`, `load_elf` and `load_flat` never panic, and neither does
//!   anything [`ElfFile`](kvmini::loader::ElfFile) reports (ABI note, TLS,
//!   stack flags, symbols and their escaped names, symbol lookup);
//! * `load_elf` fails exactly when `parse_elf` does (with the same error
//!   kind), or when a segment is outside the window or guest memory;
//! * a failed load leaves every byte of guest memory as it was;
//! * a successful load writes only its segments, all inside the window:
//!   file bytes, then zeros up to the memory size; every other byte keeps
//!   the pattern.
#![no_main]

use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use kvmini::layout::Layout;
use kvmini::loader::{self, LoadWindow, LoaderError};
use kvmini::memory::{self, GuestMemory};
use kvmini_abi::layout::ELF_LOAD_MIN;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};

const MEM_SIZE: u64 = 4 << 20;
const PATTERN: u8 = 0xA5;
const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const MAX_PHDRS: usize = 16;
const MAX_PATCHES: usize = 32;

/// A guest address: inside the usual window, or anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    Window(u32),
    Raw(u64),
}

impl Addr {
    fn resolve(self) -> u64 {
        match self {
            Addr::Window(off) => ELF_LOAD_MIN + u64::from(off) % (MEM_SIZE - ELF_LOAD_MIN + 0x2000),
            Addr::Raw(v) => v,
        }
    }
}

/// A size: small, medium, or anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Size {
    Small(u8),
    Medium(u16),
    Raw(u64),
}

impl Size {
    fn resolve(self) -> u64 {
        match self {
            Size::Small(v) => u64::from(v),
            Size::Medium(v) => u64::from(v),
            Size::Raw(v) => v,
        }
    }
}

/// A file offset: into the payload (or just past it), or anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Offset {
    Payload(u16),
    Raw(u64),
}

/// A memory size: the file size plus some bss (at least one byte), or
/// anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum MemSize {
    FilePlus(u16),
    Other(Size),
}

#[derive(Arbitrary, Debug)]
struct Phdr {
    /// PT_LOAD mostly (`.0 < 200`), otherwise the raw type `.1`.
    p_type: (u8, u32),
    flags: u32,
    offset: Offset,
    vaddr: Addr,
    file_size: Size,
    mem_size: MemSize,
}

/// Where the entry point is.
#[derive(Arbitrary, Debug)]
enum Entry {
    /// This far into the first program header's segment.
    InFirst(u16),
    Anywhere(Addr),
}

/// One change that makes the image less valid.
#[derive(Arbitrary, Debug)]
enum Tweak {
    /// EI_CLASS and EI_DATA.
    ClassAndData(u8, u8),
    Type(u16),
    Machine(u16),
    Phoff(u64),
    Phentsize(u16),
    Phnum(u16),
    /// Cut the file to this length.
    Truncate(u16),
    /// Byte patches: (offset, value).
    Patch(Vec<(u16, u8)>),
}

/// An ELF assembled from parts: a valid header unless `tweak` says
/// otherwise, then program headers and payload.
#[derive(Arbitrary, Debug)]
struct Built {
    entry: Entry,
    first: Phdr,
    rest: Vec<Phdr>,
    tweak: Option<Tweak>,
    payload: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Image {
    Raw(Vec<u8>),
    Built(Built),
}

#[derive(Arbitrary, Debug)]
enum Window {
    /// What kvmini uses for ELF guests: 1 MiB up to its own area.
    Elf,
    /// What kvmini uses for flat images: 0 up to its own area.
    Flat,
    Raw {
        start: u64,
        end: u64,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    flat: bool,
    window: Window,
    image: Image,
}

fn build(b: &Built) -> Vec<u8> {
    let phdrs: Vec<&Phdr> = std::iter::once(&b.first)
        .chain(&b.rest)
        .take(MAX_PHDRS)
        .collect();
    let phnum = u16::try_from(phdrs.len()).unwrap_or(0);
    let payload_at = EHDR_SIZE + PHDR_SIZE * u64::from(phnum);
    let entry = match b.entry {
        Entry::InFirst(off) => b.first.vaddr.resolve().wrapping_add(u64::from(off)),
        Entry::Anywhere(addr) => addr.resolve(),
    };
    let mut v = vec![0u8; 64];
    let set = |v: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        v[at..at + bytes.len()].copy_from_slice(bytes);
    };
    set(&mut v, 0, b"\x7fELF\x02\x01\x01");
    set(&mut v, 16, &2u16.to_le_bytes()); // ET_EXEC
    set(&mut v, 18, &62u16.to_le_bytes()); // EM_X86_64
    set(&mut v, 20, &1u32.to_le_bytes());
    set(&mut v, 24, &entry.to_le_bytes());
    set(&mut v, 32, &EHDR_SIZE.to_le_bytes());
    set(&mut v, 52, &64u16.to_le_bytes());
    set(&mut v, 54, &56u16.to_le_bytes());
    set(&mut v, 56, &phnum.to_le_bytes());
    for ph in phdrs {
        let mut p = [0u8; 56];
        let offset = match ph.offset {
            Offset::Payload(off) => payload_at + u64::from(off) % (b.payload.len() as u64 + 16),
            Offset::Raw(off) => off,
        };
        let file_size = match (ph.offset, ph.file_size) {
            // Small sizes from the payload stay inside the file.
            (Offset::Payload(_), Size::Small(n)) => {
                let end = payload_at + b.payload.len() as u64;
                u64::from(n).min(end.saturating_sub(offset))
            }
            (_, size) => size.resolve(),
        };
        let mem_size = match ph.mem_size {
            MemSize::FilePlus(bss) => file_size.wrapping_add(u64::from(bss) + 1),
            MemSize::Other(size) => size.resolve(),
        };
        let vaddr = ph.vaddr.resolve();
        let p_type = if ph.p_type.0 < 200 { 1 } else { ph.p_type.1 };
        p[0..4].copy_from_slice(&p_type.to_le_bytes());
        p[4..8].copy_from_slice(&ph.flags.to_le_bytes());
        p[8..16].copy_from_slice(&offset.to_le_bytes());
        p[16..24].copy_from_slice(&vaddr.to_le_bytes());
        p[24..32].copy_from_slice(&vaddr.to_le_bytes());
        p[32..40].copy_from_slice(&file_size.to_le_bytes());
        p[40..48].copy_from_slice(&mem_size.to_le_bytes());
        p[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
        v.extend_from_slice(&p);
    }
    v.extend_from_slice(&b.payload);
    match &b.tweak {
        None => {}
        Some(Tweak::ClassAndData(class, data)) => set(&mut v, 4, &[*class, *data]),
        Some(Tweak::Type(t)) => set(&mut v, 16, &t.to_le_bytes()),
        Some(Tweak::Machine(m)) => set(&mut v, 18, &m.to_le_bytes()),
        Some(Tweak::Phoff(off)) => set(&mut v, 32, &off.to_le_bytes()),
        Some(Tweak::Phentsize(n)) => set(&mut v, 54, &n.to_le_bytes()),
        Some(Tweak::Phnum(n)) => set(&mut v, 56, &n.to_le_bytes()),
        Some(Tweak::Truncate(len)) => v.truncate(usize::from(*len)),
        Some(Tweak::Patch(patches)) => {
            for &(at, byte) in patches.iter().take(MAX_PATCHES) {
                if let Some(slot) = v.get_mut(usize::from(at)) {
                    *slot = byte;
                }
            }
        }
    }
    v
}

/// Guest memory filled with the pattern, kept between runs (each run puts
/// the pattern back where it loaded something).
fn memory() -> &'static Mutex<GuestMemory> {
    static MEM: OnceLock<Mutex<GuestMemory>> = OnceLock::new();
    MEM.get_or_init(|| {
        let mem = memory::allocate(MEM_SIZE).expect("guest memory");
        let len = usize::try_from(MEM_SIZE).expect("4 MiB fits");
        mem.write_slice(&vec![PATTERN; len], GuestAddress(0))
            .expect("fill");
        Mutex::new(mem)
    })
}

/// Everything in guest memory, with the bytes of `loaded` (start, expected
/// contents) checked and then replaced by the pattern; what is left must
/// be all pattern.
fn check_memory(mem: &GuestMemory, loaded: &[(u64, Vec<u8>)]) {
    let len = usize::try_from(MEM_SIZE).expect("4 MiB fits");
    let mut actual = vec![0u8; len];
    mem.read_slice(&mut actual, GuestAddress(0))
        .expect("read all");
    for (start, want) in loaded {
        let at = usize::try_from(*start).expect("inside memory");
        let got = &mut actual[at..at + want.len()];
        assert!(
            got == want.as_slice(),
            "segment at {start:#x} holds the wrong bytes"
        );
        got.fill(PATTERN);
        mem.write_slice(&vec![PATTERN; want.len()], GuestAddress(*start))
            .expect("restore");
    }
    // Page by page with slice equality (a memcmp), which is fast even in
    // an instrumented build.
    let pattern = [PATTERN; 4096];
    for (page, bytes) in actual.chunks(4096).enumerate() {
        assert!(
            bytes == &pattern[..bytes.len()],
            "guest memory in page {page:#x} changed outside what was loaded"
        );
    }
}

fn window(w: &Window) -> LoadWindow {
    let system_base = Layout::new(MEM_SIZE).system_base;
    match *w {
        Window::Elf => LoadWindow {
            start: ELF_LOAD_MIN,
            end: system_base,
        },
        Window::Flat => LoadWindow {
            start: 0,
            end: system_base,
        },
        Window::Raw { start, end } => LoadWindow { start, end },
    }
}

/// Everything the parser reports beyond what loading uses.
fn check_facts(bytes: &[u8]) {
    let Ok(elf) = loader::ElfFile::parse(bytes) else {
        return;
    };
    let _ = (
        elf.kind(),
        elf.has_interpreter(),
        elf.tls(),
        elf.stack_flags(),
    );
    let _ = elf.abi_version();
    let symbols = elf.symbols();
    for symbol in &symbols {
        let shown = symbol.name.to_string();
        assert!(shown.bytes().all(|b| b.is_ascii_graphic()), "{shown:?}");
    }
    if let Some(at) = symbols.lookup(elf.entry()) {
        assert!(at.symbol.address <= elf.entry());
    }
}

fn check_elf(mem: &GuestMemory, bytes: &[u8], window: &LoadWindow) {
    check_facts(bytes);
    let parsed = loader::parse_elf(bytes);
    let loaded = loader::load_elf(mem, bytes, window);
    match (&parsed, &loaded) {
        (Err(p), Err(l)) => assert_eq!(
            std::mem::discriminant(p),
            std::mem::discriminant(l),
            "parse_elf said {p:?}, load_elf {l:?}"
        ),
        (Err(p), Ok(_)) => panic!("parse_elf refused ({p:?}) what load_elf loaded"),
        (Ok(_), Err(l)) => assert!(
            matches!(
                l,
                LoaderError::SegmentBelowWindow { .. }
                    | LoaderError::SegmentPastWindow { .. }
                    | LoaderError::NotInGuestMemory { .. }
            ),
            "a parsed image failed to load: {l:?}"
        ),
        (Ok(info), Ok(image)) => {
            assert_eq!(image.entry, info.entry);
            assert_eq!((image.lowest, image.highest), (info.lowest, info.highest));
            assert_eq!(image.segments.len(), info.segments.len());
        }
    }
    let mut expected = Vec::new();
    if let (Ok(info), Ok(_)) = (&parsed, &loaded) {
        assert!(info.entry >= info.lowest && info.entry < info.highest);
        for s in &info.segments {
            assert!(s.mem_size > 0 && s.file_size <= s.mem_size);
            assert!(
                s.vaddr >= window.start && s.end() <= window.end,
                "segment outside the window"
            );
            assert!(s.end() <= MEM_SIZE, "segment outside guest memory");
            // A segment without file bytes may have any offset.
            let mut contents = if s.file_size == 0 {
                Vec::new()
            } else {
                let from = usize::try_from(s.file_offset).expect("checked by the parser");
                let to = from + usize::try_from(s.file_size).expect("checked by the parser");
                bytes[from..to].to_vec()
            };
            contents.resize(usize::try_from(s.mem_size).expect("inside memory"), 0);
            expected.push((s.vaddr, contents));
        }
    }
    check_memory(mem, &expected);
}

fn check_flat(mem: &GuestMemory, bytes: &[u8], window: &LoadWindow) {
    let mut expected = Vec::new();
    if let Ok(image) = loader::load_flat(mem, bytes, window) {
        assert!(!bytes.is_empty());
        assert_eq!((image.entry, image.lowest), (window.start, window.start));
        assert_eq!(image.highest - image.lowest, bytes.len() as u64);
        assert!(image.highest <= window.end && image.highest <= MEM_SIZE);
        expected.push((window.start, bytes.to_vec()));
    }
    check_memory(mem, &expected);
}

fuzz_target!(|input: Input| {
    let bytes = match &input.image {
        Image::Raw(bytes) => bytes.clone(),
        Image::Built(built) => build(built),
    };
    let window = window(&input.window);
    let mem = memory()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if input.flat {
        check_flat(&mem, &bytes, &window);
    } else {
        check_elf(&mem, &bytes, &window);
    }
});
