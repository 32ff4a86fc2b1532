//! The Linux system-call dispatcher on guest-chosen call numbers and
//! registers, without KVM: the harness that the `linux_syscall` fuzz
//! target runs unbounded and `kvmini/tests/linux_syscall_properties.rs`
//! runs bounded, in CI. It is included by path in both (it depends on
//! nothing but kvmini, vm-memory, kvm-bindings and tempfile).
//!
//! Each input is a list of calls. A call's number and six arguments are
//! each drawn by a kind and a value ([`number`], [`arg`]): raw 64-bit
//! values, small integers (descriptors, flags), pointers into a data
//! page holding paths, into the program's stack, into kvmini's own area,
//! past guest memory and non-canonical. The process has 4 MiB of guest
//! memory on kvmini's identity map, seen as a ring-3 program sees it, a
//! descriptor limit of 16, stdin from the input, and a fresh tree:
//!
//! ```text
//! root/
//!   grant/       granted read-write at /:  f (a file), d/ (a directory)
//!   ro/          granted read-only at /ro: r
//!   secret.txt   beside the grants: must stay unread and unchanged
//! ```
//!
//! Every wait a call could start (a sleep, `poll`, a blocking pipe, a
//! futex) ends at once: the run's stop handle has a stop pending, as a
//! timeout leaves it. Checked, for every call: no panic; the effect is a
//! value or -errno (-4095..-1, and the errno one Linux defines), a
//! canonical FS base, or an end of the run; the return path from the
//! call's RCX and R11 is refused exactly when RCX is not canonical, and
//! otherwise resumes at RCX without TF, NT, RF or VM. After the input:
//! nothing outside `grant/` changed, the secret appears in no output and
//! not in guest memory, and a reset leaves only descriptors 0, 1 and 2.

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use kvm_bindings::kvm_regs;
use kvmini::arch::x86_64::page_tables;
use kvmini::fs::Filesystem;
use kvmini::grant::{GrantSpec, Grants};
use kvmini::hypercall::Hypercalls;
use kvmini::layout::Layout;
use kvmini::linux::{entry, Effect, Process, ProcessLayout, Syscall};
use kvmini::memory::{self, GuestMemory};
use kvmini::output::{Capture, Input};
use kvmini::paging::{CpuPaging, Paging, PagingMode};
use kvmini::stop::{StopHandle, StopReason};
use kvmini::view::GuestView;
use vm_memory::{Bytes, GuestAddress};

/// Guest memory.
const MEM: u64 = 4 << 20;
/// Where the image would end: the break starts here.
const IMAGE_END: u64 = 0x20_0000;
/// The data page: path strings, then room for results.
const DATA: u64 = 0x10_0000;
/// Bytes a pointer into the data area may reach past its start.
const DATA_LEN: u64 = 0x4000;
/// The most calls one input makes.
pub const MAX_CALLS: usize = 64;
/// The highest errno Linux defines (`EHWPOISON`).
const ERRNO_MAX: i64 = 133;
/// What the secret file holds.
const SECRET: &[u8] = b"the secret beside the grants";
/// The paths the data page holds, 256 bytes apart.
const PATHS: [&[u8]; 12] = [
    b"/f",
    b"/d",
    b"/d/x",
    b"/ro/r",
    b"/new",
    b"../secret.txt",
    b"/dev/null",
    b"/proc/self/exe",
    b"",
    b"/",
    b"/ro/new",
    b"d/../../..",
];

/// One system call: its number and arguments, each a kind and a value
/// ([`number`], [`arg`]); RCX and R11 as the forged `out` would leave them.
#[derive(Clone, Debug)]
pub struct Call {
    pub nr: (u8, u64),
    pub args: [(u8, u64); 6],
    pub rcx: u64,
    pub r11: u64,
}

/// A call number: a number Linux has (below 460) or any value.
pub fn number((kind, value): (u8, u64)) -> u64 {
    if kind % 2 == 0 {
        value % 460
    } else {
        value
    }
}

/// An argument of `kind` from `value`, in a guest of [`MEM`] bytes whose
/// kvmini area starts at `system_base` and whose stack is below it.
pub fn arg((kind, value): (u8, u64), system_base: u64) -> u64 {
    let stack = system_base - 0x2_0000;
    match kind % 8 {
        0 => value,
        // Descriptors, flags, small lengths; -1 and -100 (AT_FDCWD) too.
        1 => (value % 24).wrapping_sub(2),
        2 => [
            0u64,
            1,
            0x800,
            0x80000,
            0x4000,
            0x100,
            0x1000,
            u64::from(u32::MAX),
        ][usize::try_from(value % 8).unwrap_or(0)],
        3 => DATA + (value % PATHS.len() as u64) * 256,
        4 => DATA + value % DATA_LEN,
        5 => stack + value % 0x1_0000,
        // Around and inside kvmini's area, and past guest memory.
        6 => system_base - 0x1000 + value % 0x2_0000,
        _ => [
            0u64,
            MEM,
            MEM - 8,
            1 << 47,
            0x8000_0000_0000_0000,
            u64::MAX - 15,
            u64::MAX,
            (1 << 47) - 8,
        ][usize::try_from(value % 8).unwrap_or(0)],
    }
}

fn is_canonical(v: u64) -> bool {
    let top = v >> 47;
    top == 0 || top == (1 << 17) - 1
}

/// Makes the tree, on /dev/shm when there is one.
fn tree() -> tempfile::TempDir {
    let dir = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .expect("a temporary directory");
    let root = dir.path();
    fs::create_dir_all(root.join("grant/d")).expect("grant");
    fs::write(root.join("grant/f"), b"0123456789").expect("f");
    fs::create_dir(root.join("ro")).expect("ro");
    fs::write(root.join("ro/r"), b"read only").expect("r");
    fs::write(root.join("secret.txt"), SECRET).expect("secret");
    dir
}

/// Guest memory, allocated once and zeroed for each input (as if fresh:
/// reusing it spares the page faults of a new mapping).
static MEMORY: OnceLock<GuestMemory> = OnceLock::new();
static ZEROS: OnceLock<Vec<u8>> = OnceLock::new();

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    // Only where the first byte matches (a debug build compares slowly).
    let Some((&first, _)) = needle.split_first() else {
        return true;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == first)
        .any(|(i, _)| haystack.get(i..i + needle.len()) == Some(needle))
}

/// Serves `calls` for a fresh process reading `stdin`, and checks what
/// must hold (module doc).
pub fn run(calls: &[Call], stdin: &[u8]) {
    let layout = Layout::new(MEM);
    let mem = MEMORY.get_or_init(|| memory::allocate(MEM).expect("guest memory"));
    let zeros = ZEROS.get_or_init(|| vec![0; usize::try_from(MEM).expect("small")]);
    mem.write_slice(zeros, GuestAddress(0)).expect("zero");
    page_tables::build_identity_map(mem, &layout, false).expect("identity map");
    for (i, path) in (0u64..).zip(PATHS) {
        let mut bytes = path.to_vec();
        bytes.push(0);
        mem.write_slice(&bytes, GuestAddress(DATA + i * 256))
            .expect("path");
    }
    let process_layout = ProcessLayout::new(&layout, IMAGE_END).expect("a process layout");
    let stub = process_layout.stub;
    let dir = tree();
    let root = dir.path();
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
    ])
    .expect("grants");
    let stdout = Capture::new();
    let stderr = Capture::new();
    let stop = StopHandle::new();
    stop.stop(StopReason::Timeout);
    let filesystem = Filesystem::new(
        grants,
        16,
        Input::Reader(Box::new(std::io::Cursor::new(stdin.to_vec()))),
    );
    let mut hypercalls = Hypercalls::new(stdout.writer(), stderr.writer(), filesystem)
        .with_stop_handle(stop)
        .with_linux(Process::new(process_layout, 1000, 1000, 16).with_exe(b"/prog"));
    let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
    let view = GuestView::new(mem, long, layout.pml4(), true)
        .with_identity(page_tables::user_identity_range(&layout, false));

    let mut fs_base = 0u64;
    for (i, call) in calls.iter().take(MAX_CALLS).enumerate() {
        let nr = number(call.nr);
        let args = call.args.map(|a| arg(a, layout.system_base));
        // The way back, decided before the call is served.
        let regs = kvm_regs {
            rax: nr,
            rcx: call.rcx,
            r11: call.r11,
            rip: stub + 2,
            ..Default::default()
        };
        match entry::return_path(3, &regs, stub, 0) {
            Ok(back) => {
                assert!(
                    is_canonical(call.rcx),
                    "call {i}: resumes at {:#x}",
                    call.rcx
                );
                assert_eq!(back.rip, call.rcx, "call {i}: resumes at RCX");
                assert_eq!(back.rflags & 0x3_4100, 0, "call {i}: TF, NT, RF, VM");
            }
            Err(bad) => {
                assert!(!is_canonical(call.rcx), "call {i}: refused {:#x}", call.rcx);
                assert_eq!(bad.rcx, call.rcx);
                continue;
            }
        }
        let effect = hypercalls
            .serve_syscall(&Syscall { nr, args }, &view, fs_base)
            .expect("a Linux program's call is served");
        match effect {
            Effect::Return(v) => assert!(
                v >= 0 || (1..=ERRNO_MAX).contains(&-v),
                "call {i} ({nr}, {args:x?}) gave {v}"
            ),
            Effect::SetFsBase(base) => {
                assert!(is_canonical(base), "call {i}: FS base {base:#x}");
                fs_base = base;
            }
            Effect::Exit(_) | Effect::BrokenPipe | Effect::Killed(_) => break,
        }
    }
    hypercalls.reset();
    assert_eq!(
        hypercalls.filesystem().open_count(),
        3,
        "a reset closes all"
    );
    drop(hypercalls);

    assert_eq!(fs::read(root.join("secret.txt")).expect("secret"), SECRET);
    assert_eq!(fs::read(root.join("ro/r")).expect("r"), b"read only");
    let mut outside: Vec<_> = fs::read_dir(root)
        .expect("root")
        .map(|e| e.expect("entry").file_name())
        .collect();
    outside.sort();
    assert_eq!(
        outside,
        ["grant", "ro", "secret.txt"],
        "nothing new beside the grants"
    );
    assert_eq!(
        fs::read_dir(root.join("ro")).expect("ro").count(),
        1,
        "ro unchanged"
    );
    assert!(
        !contains(&stdout.contents(), SECRET),
        "the secret reached stdout"
    );
    assert!(
        !contains(&stderr.contents(), SECRET),
        "the secret reached stderr"
    );
    let mut image = vec![0u8; usize::try_from(MEM).expect("small")];
    mem.read_slice(&mut image, GuestAddress(0)).expect("read");
    assert!(!contains(&image, SECRET), "the secret reached guest memory");
}
