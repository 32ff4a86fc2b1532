//! The hypercall dispatcher on guest-controlled memory, page tables and
//! port values, without KVM.
//!
//! Each input builds guest memory (2 or 4 MiB with kvmini's identity map,
//! then fuzzed strings, filled pages, raw bytes and page-table entries
//! anywhere, kvmini's own tables included) and a sequence of exits, each
//! served by `Hypercalls::out` through a `GuestView` (kvmini's tables,
//! tables that map the same memory over the whole lower half, paging off,
//! or a fuzzed CR3 in long, 32-bit or PAE mode; ring 3 or ring 0). Calls with argument blocks (filesystem, host functions, argv),
//! alone or batched, get blocks assembled from fuzzed fields, with
//! pointers into 16 string slots that hold paths into, around and out of
//! the tree below unless the input writes its own strings. The guest
//! has fuzzed arguments, a fuzzed stdin, four host functions that use
//! every `HostCall` accessor with guest-chosen addresses and sizes, and a
//! `Filesystem` over a fresh temporary tree:
//!
//! ```text
//! root/
//!   grant/        granted read-write at /
//!     a  d/b      files and a directory
//!     up -> ../canary      abs -> ROOT/canary        (escapes)
//!     sec -> ../secret.txt abs_sec -> ROOT/secret.txt (escapes)
//!     self -> .   loop -> loop
//!     in/         granted read-only at /in too (nested): k, kd/
//!     toin -> in  tok -> in/k  (other names for it, in the writable grant)
//!   ro/           granted read-only at /ro: r, rd/
//!   canary/       must stay empty
//!   secret.txt    must stay unread and unchanged
//! ```
//!
//! Checked: no panic; `out` never fails (its writers never fail); RAX is
//! set only to -EFAULT for an unusable block; every result written back is
//! a value or -errno (-4095..-1); and after each input, nothing outside
//! `grant/` changed, nor `grant/in/`, and the secret appears neither in the guest's output
//! nor in guest memory.
//!
//! A ring-3 guest on kvmini's own tables (`Paging::Identity`) is served
//! twice, each time on fresh memory and a fresh tree: through the walked
//! view, then through the view the sandbox gives such a guest, with the
//! identity range declared (`GuestView::with_identity`). Both must give
//! the same actions, output, warnings, guest memory and tree, up to the
//! first call before which kvmini's tables are no longer as built (the
//! harness writes blocks anywhere; a ring-3 guest cannot write them) or
//! that may report host-specific values (`stat`, `fstat` and `getdents`
//! give inode numbers and times, which differ between two trees).
#![no_main]

use std::collections::BTreeSet;
use std::fs;
use std::mem::{offset_of, size_of};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use kvmini::addr::Gva;
use kvmini::arch::x86_64::bits::{PTE_P, PTE_PS, PTE_RW, PTE_US};
use kvmini::arch::x86_64::page_tables;
use kvmini::fs::Filesystem;
use kvmini::grant::{GrantSpec, Grants};
use kvmini::host::{Errno, HostCall, HostFunctions};
use kvmini::hypercall::{Action, Hypercalls};
use kvmini::layout::Layout;
use kvmini::memory::{self, GuestMemory};
use kvmini::output::{Capture, Input as Stdin};
use kvmini::paging::{self, CpuPaging, PagingMode};
use kvmini::view::GuestView;
use kvmini_abi::batch::{BatchArgs, BatchEntry, BATCH_MAX, BATCH_STOP_ON_ERROR};
use kvmini_abi::errno::EFAULT;
use kvmini_abi::fs::{
    FdArgs, IoArgs, OpenArgs, PathArgs, RenameArgs, SeekArgs, StatArgs, TruncateArgs, O_APPEND,
    O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_RDWR, O_TRUNC, O_WRONLY,
};
use kvmini_abi::host::{ArgvArgs, HostCallArgs};
use kvmini_abi::Port;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};
use zerocopy::{FromBytes, Immutable, IntoBytes};

const PAGE: u64 = 0x1000;
/// Strings: 16 slots of 256 bytes.
const STRINGS: u64 = 0x10_0000;
/// Argument blocks: 64 slots of 64 bytes.
const BLOCKS: u64 = 0x11_0000;
/// Buffers: from here up to (and a little into) kvmini's own area.
const BUFFERS: u64 = 0x12_0000;
const MAX_CALLS: usize = 32;
const MAX_EDITS: usize = 32;
const MAX_STRINGS: usize = 16;
/// Most calls in one batch.
const MAX_BATCH: usize = 16;
/// The entries of a batch.
const BATCH_ENTRIES: u64 = 0x11_1000;
/// The block of a batch.
const BATCH_BLOCK: u64 = 0x11_2000;
/// What the string slots hold unless the input writes its own.
const DEFAULT_PATHS: [&[u8]; 16] = [
    b"/a",
    b"/d",
    b"/d/b",
    b"/new",
    b"/up",
    b"/up/x",
    b"/abs/x",
    b"/sec",
    b"/abs_sec",
    b"/ro/r",
    b"/ro/rd/x",
    b"/self/a",
    b"/loop",
    b"/../canary/x",
    b"/d/../new2",
    b"x/../../new3",
];
/// Path components the fuzzer can pick by number.
const COMPONENTS: &[&[u8]] = &[
    b"a",
    b"d",
    b"b",
    b"up",
    b"abs",
    b"sec",
    b"abs_sec",
    b"self",
    b"loop",
    b"ro",
    b"r",
    b"rd",
    b"..",
    b".",
    b"",
    b"new",
    b"canary",
    b"secret.txt",
    b"grant",
    b"in",
    b"toin",
    b"tok",
    b"k",
    b"kd",
];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Value {
    Raw(u64),
    Page { page: u16, low: u16, high: u16 },
}

impl Value {
    fn resolve(self, pages: u64) -> u64 {
        match self {
            Value::Raw(v) => v,
            Value::Page { page, low, high } => {
                ((u64::from(page) % (pages + 16)) * PAGE)
                    | u64::from(low & 0xFFF)
                    | (u64::from(high) << 48)
            }
        }
    }
}

/// A change to guest memory after the identity map is built.
#[derive(Arbitrary, Debug)]
enum Edit {
    /// One page-table entry anywhere (kvmini's tables included).
    Entry { page: u16, index: u16, value: Value },
    /// A whole page of entries, the address growing by `stride` pages.
    Table { page: u16, value: Value, stride: u8 },
    /// A page filled with one byte (long strings without a NUL).
    Fill { page: u16, byte: u8 },
    /// Raw bytes.
    Bytes { offset: u32, bytes: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
enum Text {
    Raw(Vec<u8>),
    /// Components from [`COMPONENTS`], joined with `/`.
    Path {
        absolute: bool,
        parts: Vec<u8>,
    },
}

/// A guest pointer.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Ptr {
    /// String slot.
    Str(u8),
    /// Offset into the buffer area (reaching into kvmini's area).
    Buf(u32),
    Raw(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Fd {
    Small(u8),
    Raw(i32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Len {
    Small(u16),
    Pages(u8),
    Raw(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Flags {
    /// Bits picking from the supported flags (bits 0..1: access mode).
    Known(u16),
    Raw(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Offset {
    Small(i16),
    Raw(i64),
}

/// The fields of an argument block; each call takes the ones it needs.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Block {
    a: Ptr,
    b: Ptr,
    fd: Fd,
    len: Len,
    offset: Offset,
    flags: Flags,
    mode: u16,
    whence: u8,
    reserved: u32,
}

/// A host function argument.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Arg {
    Ptr(Ptr),
    Len(Len),
}

/// A call with an argument block: on its own, or in a batch.
#[derive(Arbitrary, Debug)]
enum Blocked {
    /// A filesystem call.
    Fs { port: u8, block: Block },
    /// A host function call (ids 0..3 are registered, see [`host_functions`]).
    Host { id: u8, args: [Arg; 6] },
    /// The guest's arguments.
    Argv { buf: Ptr, len: Len },
}

#[derive(Arbitrary, Debug)]
enum Call {
    /// Any hypercall port with any value.
    Raw { port: u8, value: u32 },
    /// `display` of a string pointer.
    Display(Ptr),
    /// One call, its block in a block slot or at a raw address.
    One {
        call: Blocked,
        slot: u8,
        at: Option<u32>,
    },
    /// A batch of calls, each block in its slot.
    Batch {
        calls: Vec<(Blocked, u8)>,
        /// Replace entry `.0` with the raw port `.1`.
        raw_port: Option<(u8, u16)>,
        stop_on_error: bool,
        flags: Option<u32>,
        count: Option<u32>,
        entries: Option<u32>,
        at: Option<u32>,
    },
}

#[derive(Arbitrary, Debug)]
enum Paging {
    /// kvmini's identity map, in long mode.
    Identity,
    /// Long-mode tables (in the five pages below kvmini's area) that map
    /// the lower half of the address space again and again: the first
    /// 2 MiB to physical 0..2 MiB, and every other 2 MiB to physical
    /// 0..2 MiB too (2 MiB pages) or to the one page `data` (4 KiB pages).
    Aliased {
        small_pages: bool,
        data: u16,
    },
    Off,
    Long(Value),
    Legacy32 {
        pse: bool,
        cr3: Value,
    },
    Pae32(Value),
}

#[derive(Arbitrary, Debug)]
struct Input {
    four_mib: bool,
    map_null_page: bool,
    ring0: bool,
    /// The guest's stderr: its own capture, or shared with the warnings.
    own_stderr: bool,
    paging: Paging,
    argv: Vec<Vec<u8>>,
    stdin: Vec<u8>,
    strings: Vec<(u8, Text)>,
    edits: Vec<Edit>,
    calls: Vec<Call>,
}

/// The filesystem ports, in ABI order.
const FS_PORTS: [Port; 16] = [
    Port::Open,
    Port::Close,
    Port::Read,
    Port::Write,
    Port::Pread,
    Port::Pwrite,
    Port::Lseek,
    Port::Fstat,
    Port::Stat,
    Port::Fsync,
    Port::Ftruncate,
    Port::Unlink,
    Port::Mkdir,
    Port::Rmdir,
    Port::Rename,
    Port::Getdents,
];

struct Ctx {
    system_base: u64,
}

impl Ctx {
    fn ptr(&self, p: Ptr) -> u64 {
        match p {
            Ptr::Str(slot) => STRINGS + u64::from(slot % 16) * 256,
            Ptr::Buf(off) => BUFFERS + u64::from(off) % (self.system_base - BUFFERS + 0x2000),
            Ptr::Raw(v) => v,
        }
    }
}

fn fd(f: Fd) -> i32 {
    match f {
        Fd::Small(n) => i32::from(n % 12) - 1,
        Fd::Raw(n) => n,
    }
}

fn len(l: Len) -> u64 {
    match l {
        Len::Small(n) => u64::from(n),
        Len::Pages(n) => u64::from(n) * PAGE,
        Len::Raw(n) => n,
    }
}

fn offset(o: Offset) -> i64 {
    match o {
        Offset::Small(n) => i64::from(n),
        Offset::Raw(n) => n,
    }
}

fn flags(f: Flags) -> u32 {
    const KNOWN: [u32; 7] = [
        O_CREAT,
        O_EXCL,
        O_TRUNC,
        O_APPEND,
        O_DIRECTORY,
        O_NOFOLLOW,
        O_CLOEXEC,
    ];
    match f {
        Flags::Known(bits) => {
            let mode = [0, O_WRONLY, O_RDWR, 3][usize::from(bits & 3)];
            KNOWN
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (4 << i) != 0)
                .fold(mode, |acc, (_, f)| acc | f)
        }
        Flags::Raw(v) => v,
    }
}

/// Writes the block of filesystem call `port` at `at`; returns where its
/// result lies.
fn write_fs_block(mem: &GuestMemory, ctx: &Ctx, port: Port, b: &Block, at: u64) -> u64 {
    let (a, buf) = (ctx.ptr(b.a), ctx.ptr(b.b));
    let result_at = match port {
        Port::Open => {
            let args = OpenArgs {
                path: a,
                flags: flags(b.flags),
                mode: u32::from(b.mode),
                result: 0x5A5A,
            };
            put(mem, at, args);
            offset_of!(OpenArgs, result)
        }
        Port::Close | Port::Fsync => {
            let args = FdArgs {
                fd: fd(b.fd),
                reserved: b.reserved,
                result: 0x5A5A,
            };
            put(mem, at, args);
            offset_of!(FdArgs, result)
        }
        Port::Read | Port::Write | Port::Pread | Port::Pwrite | Port::Getdents => {
            let args = IoArgs {
                fd: fd(b.fd),
                reserved: b.reserved,
                buf,
                len: len(b.len),
                offset: offset(b.offset),
                result: 0x5A5A,
            };
            put(mem, at, args);
            offset_of!(IoArgs, result)
        }
        Port::Lseek => {
            let args = SeekArgs {
                fd: fd(b.fd),
                whence: u32::from(b.whence % 4),
                offset: offset(b.offset),
                result: 0x5A5A,
            };
            put(mem, at, args);
            offset_of!(SeekArgs, result)
        }
        Port::Fstat | Port::Stat => {
            let args = StatArgs {
                path: a,
                fd: fd(b.fd),
                reserved: b.reserved,
                stat: buf,
                result: 0x5A5A,
            };
            put(mem, at, args);
            offset_of!(StatArgs, result)
        }
        Port::Ftruncate => {
            let args = TruncateArgs {
                fd: fd(b.fd),
                reserved: b.reserved,
                length: offset(b.offset),
                result: 0x5A5A,
            };
            put(mem, at, args);
            offset_of!(TruncateArgs, result)
        }
        Port::Unlink | Port::Mkdir | Port::Rmdir => {
            let args = PathArgs {
                path: a,
                mode: u32::from(b.mode),
                reserved: b.reserved,
                result: 0x5A5A,
            };
            put(mem, at, args);
            offset_of!(PathArgs, result)
        }
        _ => {
            let args = RenameArgs {
                old: a,
                new: buf,
                result: 0x5A5A,
            };
            put(mem, at, args);
            offset_of!(RenameArgs, result)
        }
    };
    at + result_at as u64
}

/// Writes `value` at guest physical `at`; blocks that run past the end of
/// memory are simply not written.
fn put<T: IntoBytes + Immutable>(mem: &GuestMemory, at: u64, value: T) {
    let _ = mem.write_slice(value.as_bytes(), GuestAddress(at));
}

/// Reads a `T` at guest physical `at`, if all of it is in memory.
fn get<T: FromBytes + IntoBytes>(mem: &GuestMemory, at: u64) -> Option<T> {
    let mut value = T::new_zeroed();
    mem.read_slice(value.as_mut_bytes(), GuestAddress(at))
        .ok()?;
    Some(value)
}

/// Writes the block of `call` at `at`; returns the port and where the
/// result lies.
fn write_block(mem: &GuestMemory, ctx: &Ctx, call: &Blocked, at: u64) -> (Port, u64) {
    match call {
        Blocked::Fs { port, block } => {
            let port = FS_PORTS[usize::from(*port) % FS_PORTS.len()];
            (port, write_fs_block(mem, ctx, port, block, at))
        }
        Blocked::Host { id, args } => {
            let block = HostCallArgs {
                id: u32::from(*id % 5),
                reserved: 0,
                args: args.map(|a| match a {
                    Arg::Ptr(p) => ctx.ptr(p),
                    Arg::Len(l) => len(l),
                }),
                result: 0x5A5A,
            };
            put(mem, at, block);
            (Port::HostCall, at + offset_of!(HostCallArgs, result) as u64)
        }
        Blocked::Argv { buf, len: l } => {
            let block = ArgvArgs {
                buf: ctx.ptr(*buf),
                len: len(*l),
                result: 0x5A5A,
            };
            put(mem, at, block);
            (Port::Argv, at + offset_of!(ArgvArgs, result) as u64)
        }
    }
}

/// Writes a batch: its calls' blocks, its entries, its block at `at`.
/// Returns where its result lies.
#[allow(clippy::too_many_arguments)]
fn write_batch(
    mem: &GuestMemory,
    ctx: &Ctx,
    calls: &[(Blocked, u8)],
    raw_port: Option<(u8, u16)>,
    flags: u32,
    count: Option<u32>,
    entries: u64,
    at: u64,
) -> u64 {
    let calls = &calls[..calls.len().min(MAX_BATCH)];
    for (i, (call, slot)) in (0u64..).zip(calls) {
        let block = block_at(*slot, None);
        let (port, _) = write_block(mem, ctx, call, block);
        let mut entry = BatchEntry {
            port: port as u16,
            reserved: [0; 3],
            block,
        };
        if let Some((index, raw)) = raw_port {
            if u64::from(index) == i {
                entry.port = raw;
            }
        }
        put(mem, entries + i * size_of::<BatchEntry>() as u64, entry);
    }
    let args = BatchArgs {
        entries,
        count: count.unwrap_or(u32::try_from(calls.len()).expect("few calls")),
        flags,
        result: 0x5A5A,
    };
    put(mem, at, args);
    at + offset_of!(BatchArgs, result) as u64
}

fn block_at(slot: u8, at: Option<u32>) -> u64 {
    match at {
        Some(raw) => u64::from(raw),
        None => BLOCKS + u64::from(slot % 64) * 64,
    }
}

/// Host functions as an embedding program might write them, each using
/// one of `HostCall`'s accessors with guest-chosen addresses and sizes.
fn host_functions() -> HostFunctions {
    let mut functions = HostFunctions::default();
    // 0: copy `arg1` bytes from `arg0` to `arg2`.
    functions.insert(
        0,
        Box::new(|call: &HostCall<'_>| {
            let data = call.read_vec(call.arg(0), call.arg(1))?;
            call.write(call.arg(2), &data)?;
            Ok(data.len() as u64)
        }),
    );
    // 1: the length of the string at `arg0`, read with limit `arg1`.
    functions.insert(
        1,
        Box::new(|call: &HostCall<'_>| {
            let s = call.read_c_string(call.arg(0), call.arg(1))?;
            Ok(s.len() as u64)
        }),
    );
    // 2: fill a fixed 64-byte buffer from `arg0`, write it back at `arg1`.
    functions.insert(
        2,
        Box::new(|call: &HostCall<'_>| {
            let mut buf = [0u8; 64];
            call.read(call.arg(0), &mut buf)?;
            call.write(call.arg(1), &buf)?;
            Ok(call.arg(2))
        }),
    );
    // 3: an error, or a value too large for the result.
    functions.insert(
        3,
        Box::new(|call: &HostCall<'_>| match call.arg(0) % 3 {
            0 => Err(Errno::EINVAL),
            1 => Err(
                Errno::new(1 + i32::try_from(call.arg(1) % 4095).expect("small"))
                    .expect("1..=4095"),
            ),
            _ => Ok(u64::MAX - call.arg(1) % 3),
        }),
    );
    functions
}

/// Writes the tables of [`Paging::Aliased`]; returns the CR3 that uses them.
fn aliased_tables(mem: &GuestMemory, layout: &Layout, small_pages: bool, data: u64) -> u64 {
    let [pml4, pdpt, pd_first, pd, pt] = [5, 4, 3, 2, 1].map(|n| layout.system_base - n * PAGE);
    let table = PTE_P | PTE_RW | PTE_US;
    let two_mib = PTE_PS | table;
    let put = |at: u64, value: u64| put(mem, at, value);
    for i in 0..512 {
        put(pt + i * 8, data | table);
        let alias = if small_pages { pt | table } else { two_mib };
        put(pd_first + i * 8, if i == 0 { two_mib } else { alias });
        put(pd + i * 8, alias);
        put(pdpt + i * 8, if i == 0 { pd_first } else { pd } | table);
        put(pml4 + i * 8, if i < 256 { pdpt | table } else { 0 });
    }
    pml4
}

fn apply(mem: &GuestMemory, size: u64, edit: &Edit) {
    let pages = size / PAGE;
    match edit {
        Edit::Entry { page, index, value } => {
            let at = (u64::from(*page) % pages) * PAGE + u64::from(index & 511) * 8;
            let _ = mem.write_obj(value.resolve(pages), GuestAddress(at));
        }
        Edit::Table {
            page,
            value,
            stride,
        } => {
            let base = (u64::from(*page) % pages) * PAGE;
            let first = value.resolve(pages);
            for i in 0..512 {
                let entry = first.wrapping_add(i * u64::from(*stride) * PAGE);
                let _ = mem.write_obj(entry, GuestAddress(base + i * 8));
            }
        }
        Edit::Fill { page, byte } => {
            let at = (u64::from(*page) % pages) * PAGE;
            let _ = mem.write_slice(&[*byte; 4096], GuestAddress(at));
        }
        Edit::Bytes { offset, bytes } => {
            let at = u64::from(*offset) % size;
            let room = usize::try_from(size - at).unwrap_or(usize::MAX);
            let _ = mem.write_slice(&bytes[..bytes.len().min(room)], GuestAddress(at));
        }
    }
}

fn text(t: &Text) -> Vec<u8> {
    let mut bytes = match t {
        Text::Raw(bytes) => bytes.clone(),
        Text::Path { absolute, parts } => {
            let parts: Vec<&[u8]> = parts
                .iter()
                .map(|&i| COMPONENTS[usize::from(i) % COMPONENTS.len()])
                .collect();
            let mut path = if *absolute { b"/".to_vec() } else { Vec::new() };
            path.extend(parts.join(&b'/'));
            path
        }
    };
    bytes.truncate(255);
    bytes.push(0);
    bytes
}

/// A random secret for this process: written to `secret.txt`, it must
/// never reach the guest.
fn secret() -> &'static [u8] {
    static SECRET: OnceLock<Vec<u8>> = OnceLock::new();
    SECRET.get_or_init(|| {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            ^ u128::from(std::process::id());
        format!("kvmini-fuzz-secret-{seed:032x}").into_bytes()
    })
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// The temporary tree; see the module documentation.
/// Made on tmpfs (/dev/shm) where there is one: creating and removing a
/// tree for every input is several times faster there than on a disk.
fn make_tree() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let root = tempfile::Builder::new()
        .prefix("kvmini-fuzz-")
        .tempdir_in(base)
        .expect("temp dir");
    let r = root.path();
    let grant = r.join("grant");
    fs::create_dir_all(grant.join("d")).expect("mkdir");
    fs::write(grant.join("a"), b"hello").expect("write");
    fs::write(grant.join("d/b"), b"bee").expect("write");
    fs::create_dir_all(r.join("ro/rd")).expect("mkdir");
    fs::write(r.join("ro/r"), b"read only").expect("write");
    fs::create_dir(r.join("canary")).expect("mkdir");
    fs::write(r.join("secret.txt"), secret()).expect("write");
    symlink("../canary", grant.join("up")).expect("symlink");
    symlink(r.join("canary"), grant.join("abs")).expect("symlink");
    symlink("../secret.txt", grant.join("sec")).expect("symlink");
    symlink(r.join("secret.txt"), grant.join("abs_sec")).expect("symlink");
    symlink(".", grant.join("self")).expect("symlink");
    symlink("loop", grant.join("loop")).expect("symlink");
    fs::create_dir_all(grant.join("in/kd")).expect("mkdir");
    fs::write(grant.join("in/k"), b"keep").expect("write");
    symlink("in", grant.join("toin")).expect("symlink");
    symlink("in/k", grant.join("tok")).expect("symlink");
    root
}

fn check_tree(root: &Path) {
    let expect = |dir: &Path, want: &[&str]| {
        let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(names(dir), want, "{} changed", dir.display());
    };
    expect(root, &["canary", "grant", "ro", "secret.txt"]);
    expect(&root.join("canary"), &[]);
    expect(&root.join("ro"), &["r", "rd"]);
    expect(&root.join("ro/rd"), &[]);
    assert_eq!(fs::read(root.join("ro/r")).expect("read"), b"read only");
    expect(&root.join("grant/in"), &["k", "kd"]);
    expect(&root.join("grant/in/kd"), &[]);
    assert_eq!(fs::read(root.join("grant/in/k")).expect("read"), b"keep");
    assert_eq!(fs::read(root.join("secret.txt")).expect("read"), secret());
}

/// Guest memory of each size, kept between inputs.
static MEM_2M: OnceLock<GuestMemory> = OnceLock::new();
static MEM_4M: OnceLock<GuestMemory> = OnceLock::new();
static ZEROS: OnceLock<Vec<u8>> = OnceLock::new();

thread_local! {
    /// A copy of guest memory, kept between inputs.
    static IMAGE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Guest memory where a comparison stopped: walked, then with the
    /// identity range. Kept between inputs, as `IMAGE`.
    static SNAPSHOTS: std::cell::RefCell<[Vec<u8>; 2]> =
        const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
}

/// Whether the secret is somewhere in `haystack`, found with the C
/// library's `memmem` (uninstrumented, so fast in a fuzzing build).
fn leaks_secret(haystack: &[u8]) -> bool {
    let needle = secret();
    // SAFETY: both pointers and lengths come from live slices, which
    // memmem only reads.
    let found = unsafe {
        libc::memmem(
            haystack.as_ptr().cast(),
            haystack.len(),
            needle.as_ptr().cast(),
            needle.len(),
        )
    };
    !found.is_null()
}

/// kvmini's page tables: everything from its PML4 up to its GDT.
fn table_bytes(mem: &GuestMemory, layout: &Layout) -> Vec<u8> {
    let mut bytes = vec![0; usize::try_from(layout.gdt() - layout.pml4()).expect("32 KiB")];
    mem.read_slice(&mut bytes, GuestAddress(layout.pml4()))
        .expect("tables inside memory");
    bytes
}

/// Whether kvmini's tables are still `built`, compared a page at a time so
/// that the check before every call allocates nothing.
fn tables_intact(mem: &GuestMemory, layout: &Layout, built: &[u8]) -> bool {
    let mut page = [0u8; 4096];
    (layout.pml4()..)
        .step_by(page.len())
        .zip(built.chunks(page.len()))
        .all(|(at, want)| {
            let page = &mut page[..want.len()];
            mem.read_slice(page, GuestAddress(at)).is_ok() && *page == *want
        })
}

/// Whether `out(port, value)` may write host-specific values into guest
/// memory: inode and device numbers and times (`stat`, `fstat`) and
/// directory records (`getdents`), which differ between the two trees of
/// a comparison. A batch's entries are read where kvmini's identity map
/// puts them; an entry the guest cannot reach counts too, to be safe.
fn host_specific(mem: &GuestMemory, port: Port, value: u32) -> bool {
    let specific = |port: Port| matches!(port, Port::Stat | Port::Fstat | Port::Getdents);
    if port != Port::Batch {
        return specific(port);
    }
    let Some(args) = get::<BatchArgs>(mem, u64::from(value)) else {
        return false;
    };
    let size = size_of::<BatchEntry>() as u64;
    (0..u64::from(args.count.min(BATCH_MAX))).any(|i| {
        args.entries
            .checked_add(i * size)
            .and_then(|at| get::<BatchEntry>(mem, at))
            .and_then(|entry| Port::try_from(entry.port).ok())
            .is_some_and(specific)
    })
}

/// A file in the tree, as a comparison sees it. A guest may make files
/// and directories kvmini itself cannot open (mode 0, when not root):
/// those count by the error.
#[derive(Debug, PartialEq)]
enum Node {
    Dir {
        mode: u32,
        listed: Result<(), std::io::ErrorKind>,
    },
    File {
        mode: u32,
        len: u64,
        head: Result<Vec<u8>, std::io::ErrorKind>,
    },
    Link(String),
}

/// Most bytes of a file compared (a guest can make sparse files of any
/// size with `pwrite` or `ftruncate`).
const FILE_HEAD: u64 = 1 << 20;

/// The whole tree under `root`, paths relative to it, symlink targets with
/// `root` written `ROOT`.
fn tree(root: &Path) -> Vec<(String, Node)> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let list = |dir: &Path| -> std::io::Result<Vec<std::path::PathBuf>> {
        let mut paths = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<Vec<_>>>()?;
        paths.sort();
        Ok(paths)
    };
    let head = |path: &Path| -> std::io::Result<Vec<u8>> {
        let mut head = Vec::new();
        fs::File::open(path)?
            .take(FILE_HEAD)
            .read_to_end(&mut head)?;
        Ok(head)
    };
    let mut nodes = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for path in list(&dir).expect("the tree's own directories list") {
            let meta = fs::symlink_metadata(&path).expect("metadata");
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).expect("readlink");
                let target = target.to_string_lossy();
                Node::Link(target.replace(&*root.to_string_lossy(), "ROOT"))
            } else if meta.is_dir() {
                let listed = fs::read_dir(&path).map(drop).map_err(|e| e.kind());
                if listed.is_ok() {
                    dirs.push(path.clone());
                }
                Node::Dir { mode, listed }
            } else {
                Node::File {
                    mode,
                    len: meta.len(),
                    head: head(&path).map_err(|e| e.kind()),
                }
            };
            let name = path.strip_prefix(root).expect("inside the tree");
            nodes.push((name.to_string_lossy().into_owned(), node));
        }
    }
    nodes
}

/// What the first calls of an input did: all of them, or those before the
/// first that kvmini's tables had changed for or that may expose
/// host-specific values. Guest memory at that point is in [`SNAPSHOTS`].
struct Trace {
    calls: usize,
    actions: Vec<Action>,
    stdout: Vec<u8>,
    warnings: Vec<u8>,
    stderr: Vec<u8>,
    tree: Vec<(String, Node)>,
}

impl Trace {
    /// Asserts that `self`, from the identity view, is `walked`.
    fn assert_same(&self, walked: &Trace) {
        assert_eq!(self.calls, walked.calls, "calls compared");
        assert_eq!(self.actions, walked.actions, "actions");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        assert_eq!(text(&self.stdout), text(&walked.stdout), "stdout");
        assert_eq!(text(&self.warnings), text(&walked.warnings), "warnings");
        assert_eq!(text(&self.stderr), text(&walked.stderr), "stderr");
        SNAPSHOTS.with_borrow(|[walked, fast]| {
            // `==` first: a memcmp, where a search byte by byte would run
            // instrumented.
            if fast != walked {
                let at = (0..fast.len())
                    .find(|&i| fast.get(i) != walked.get(i))
                    .unwrap_or(0);
                panic!(
                    "guest memory differs from {at:#x}: {:02x?} with the identity range, {:02x?} walked",
                    &fast[at..fast.len().min(at + 16)],
                    &walked[at..walked.len().min(at + 16)]
                );
            }
        });
        assert_eq!(self.tree, walked.tree, "the tree");
    }
}

/// Which view serves the calls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    /// The one the input asks for; with `trace`, the calls the identity
    /// view must agree on are recorded.
    Asked { trace: bool },
    /// kvmini's identity view (ring 3, its tables, the identity range), as
    /// far as a comparison goes.
    Identity,
}

/// Serves the input's calls on fresh memory and a fresh tree, checks
/// everything that must hold after any input, and returns the trace when
/// `which` asks for one.
fn run(input: &Input, which: Run) -> Option<Trace> {
    let size: u64 = if input.four_mib { 4 << 20 } else { 2 << 20 };
    let layout = Layout::new(size);
    let ctx = Ctx {
        system_base: layout.system_base,
    };
    let mem = if input.four_mib { &MEM_4M } else { &MEM_2M };
    let mem = mem.get_or_init(|| memory::allocate(size).expect("guest memory"));
    // Zeroed, as if freshly allocated (reusing it spares the page faults).
    let zeros = ZEROS.get_or_init(|| vec![0; 4 << 20]);
    let len = usize::try_from(size).expect("small");
    mem.write_slice(&zeros[..len], GuestAddress(0))
        .expect("zero");
    page_tables::build_identity_map(mem, &layout, input.map_null_page).expect("identity map");
    let built = table_bytes(mem, &layout);

    let tree_dir = make_tree();
    let root = tree_dir.path();
    let grants = Grants::open(&[
        GrantSpec {
            host: root.join("grant"),
            guest: "/".into(),
            read_only: false,
        },
        GrantSpec {
            host: root.join("ro"),
            guest: "/ro".into(),
            read_only: true,
        },
        GrantSpec {
            host: root.join("grant/in"),
            guest: "/in".into(),
            read_only: true,
        },
    ])
    .expect("grants");
    let stdout = Capture::new();
    let warnings = Capture::new();
    let stderr = Capture::new();
    let stdin = Stdin::Reader(Box::new(std::io::Cursor::new(input.stdin.clone())));
    let mut calls = Hypercalls::new(
        stdout.writer(),
        warnings.writer(),
        Filesystem::new(grants, 16, stdin),
    )
    .with_host_functions(host_functions())
    .with_argv(&input.argv);
    if input.own_stderr {
        calls = calls.with_stderr(stderr.writer());
    }

    let pages = size / PAGE;
    let (mode, cr3) = match input.paging {
        Paging::Identity => (PagingMode::Long, layout.pml4()),
        Paging::Aliased { small_pages, data } => {
            let data = (u64::from(data) % pages) * PAGE;
            (
                PagingMode::Long,
                aliased_tables(mem, &layout, small_pages, data),
            )
        }
        Paging::Off => (PagingMode::Disabled, 0),
        Paging::Long(v) => (PagingMode::Long, v.resolve(pages)),
        Paging::Legacy32 { pse, cr3 } => (PagingMode::Legacy32 { pse }, cr3.resolve(pages)),
        Paging::Pae32(v) => (PagingMode::Pae32, v.resolve(pages)),
    };
    for (slot, path) in (0u64..).zip(DEFAULT_PATHS) {
        let mut bytes = path.to_vec();
        bytes.push(0);
        mem.write_slice(&bytes, GuestAddress(STRINGS + slot * 256))
            .expect("string");
    }
    for (slot, t) in input.strings.iter().take(MAX_STRINGS) {
        let at = STRINGS + u64::from(slot % 16) * 256;
        mem.write_slice(&text(t), GuestAddress(at)).expect("string");
    }
    for edit in input.edits.iter().take(MAX_EDITS) {
        apply(mem, size, edit);
    }
    // The CPU that reserves the fewest bits, so that walks reach as far as
    // they can; reserved bits are the page-walk target's business.
    let walk = |mode| paging::Paging::new(mode, true, CpuPaging::ALL_FEATURES);
    let view = match which {
        Run::Asked { .. } => GuestView::new(mem, walk(mode), cr3, !input.ring0),
        Run::Identity => {
            GuestView::new(mem, walk(PagingMode::Long), layout.pml4(), true).with_identity(
                page_tables::user_identity_range(&layout, input.map_null_page),
            )
        }
    };
    let tracing = which != Run::Asked { trace: false };
    let take_trace = |calls: usize, actions: &[Action]| {
        SNAPSHOTS.with_borrow_mut(|snapshots| {
            let image = &mut snapshots[usize::from(which == Run::Identity)];
            image.resize(len, 0);
            mem.read_slice(image, GuestAddress(0)).expect("read");
        });
        Trace {
            calls,
            actions: actions.to_vec(),
            stdout: stdout.contents(),
            warnings: warnings.contents(),
            stderr: stderr.contents(),
            tree: tree(root),
        }
    };
    let mut trace = None;
    let mut actions = Vec::new();

    for (i, call) in input.calls.iter().take(MAX_CALLS).enumerate() {
        let (port, value, result_at) = match call {
            Call::Raw { port, value } => (
                Port::ALL[usize::from(*port) % Port::ALL.len()],
                *value,
                None,
            ),
            Call::Display(p) => {
                let gva = ctx.ptr(*p);
                // The port value is 32 bits: a wider pointer is cut, as
                // the guest's `out` would cut it.
                let value = u32::try_from(gva & u64::from(u32::MAX)).expect("masked");
                (Port::Display, value, None)
            }
            Call::One { call, slot, at } => {
                let at = block_at(*slot, *at);
                let (port, result_at) = write_block(mem, &ctx, call, at);
                (port, u32::try_from(at).expect("32-bit"), Some(result_at))
            }
            Call::Batch {
                calls: batch,
                raw_port,
                stop_on_error,
                flags,
                count,
                entries,
                at,
            } => {
                let at = at.map_or(BATCH_BLOCK, u64::from);
                let entries = entries.map_or(BATCH_ENTRIES, u64::from);
                let flags = flags.unwrap_or(u32::from(*stop_on_error) * BATCH_STOP_ON_ERROR);
                let result_at =
                    write_batch(mem, &ctx, batch, *raw_port, flags, *count, entries, at);
                (
                    Port::Batch,
                    u32::try_from(at).expect("32-bit"),
                    Some(result_at),
                )
            }
        };
        // The comparison ends where its premise does: the blocks written
        // for this call may have overwritten kvmini's tables (a ring-3
        // guest could not), or the call may report host-specific values.
        if tracing
            && trace.is_none()
            && (!tables_intact(mem, &layout, &built) || host_specific(mem, port, value))
        {
            trace = Some(take_trace(i, &actions));
            if which == Run::Identity {
                break;
            }
        }
        let action = calls
            .out(port, value, &view)
            .unwrap_or_else(|e| panic!("call {i} ({}) failed: {e}", port.name()));
        actions.push(action);
        match action {
            Action::Exit(_) | Action::Halt => break,
            Action::OutputClosed => panic!("call {i}: a capture's reader never goes away"),
            Action::ResumeWithRax(rax) => {
                assert!(
                    port.batchable() || port == Port::Batch,
                    "{} set RAX",
                    port.name()
                );
                assert_eq!(rax, (-i64::from(EFAULT)).cast_unsigned(), "RAX is -EFAULT");
            }
            Action::Resume => {
                if let Some(at) = result_at {
                    if let Ok(result) = view.read_obj::<i64>(Gva::new(at)) {
                        assert!(result >= -4095, "{} gave {result}", port.name());
                    }
                }
            }
        }
    }
    if tracing && trace.is_none() {
        trace = Some(take_trace(actions.len(), &actions));
    }
    drop(calls);

    check_tree(root);
    IMAGE.with_borrow_mut(|image| {
        image.resize(usize::try_from(size).expect("small"), 0);
        mem.read_slice(image, GuestAddress(0)).expect("read");
        assert!(!leaks_secret(image), "the secret reached guest memory");
    });
    assert!(
        !leaks_secret(&stdout.contents()),
        "the secret reached guest output"
    );
    assert!(
        !leaks_secret(&warnings.contents()),
        "the secret reached warnings"
    );
    assert!(
        !leaks_secret(&stderr.contents()),
        "the secret reached the guest's stderr"
    );
    trace
}

fuzz_target!(|input: Input| {
    // A ring-3 guest on kvmini's tables is what the sandbox serves through
    // the identity range: there it must change nothing but speed.
    let compare = matches!(input.paging, Paging::Identity) && !input.ring0;
    let walked = run(&input, Run::Asked { trace: compare });
    if let Some(walked) = walked {
        let fast = run(&input, Run::Identity).expect("a trace");
        fast.assert_same(&walked);
    }
});
