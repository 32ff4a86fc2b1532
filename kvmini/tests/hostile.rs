//! The adversarial guest suite: small guests that do everything wrong on
//! purpose, and exactly what kvmini does about each.
//!
//! The guests are C programs in `tests/hostile/` (built with the C SDK's
//! command line; `hostile.h` says what they share) and, below, flat images
//! assembled by hand, the assembly in comments. Every case checks the exact
//! answer the guest gets (it prints each one) or the exact way its run ends;
//! and for every case, that kvmini did not panic (the run returns), that
//! the host process holds as many descriptors after the sandbox is dropped
//! as before it was built, and, where a directory is granted, that a canary
//! file beside it was neither changed nor read. `docs/security.md` is the
//! threat model these cases back.
//!
//! Tests in one binary run on parallel threads and share the descriptor
//! table, so each test here holds [`SERIAL`] for as long as it builds
//! guests, runs them or spawns processes.
//!
//! Some results depend on how the host runs guests: on nested KVM through
//! kvm-pvm, ring-0 code runs in KVM's instruction emulator, and a few
//! instructions end differently than on hardware virtualization. Those cases check the kvm-pvm result there and
//! the architectural one elsewhere, and say so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
mod fs_common;

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::{kvm_or_skip, text};
use fs_common::{file, snapshot as tree};
use kvmini::cpu::Ring;
use kvmini::host::Errno;
use kvmini::kvm::Kvm;
use kvmini::output::{Capture, Input, Output};
use kvmini::sandbox::{Crash, Ending, Sandbox, SandboxBuilder, Unserved};
use kvmini_abi::{Direction, Port};
use vm_memory::{Bytes, GuestAddress};

/// Guest memory of every hostile guest but two; `hostile.h` has the same
/// numbers.
const MEM: u64 = 4 << 20;
/// kvmini's own area: the last 64 KiB of guest memory.
const SYSTEM_BASE: u64 = MEM - 0x1_0000;
/// What the canary file beside every granted directory holds.
const SECRET: &str = "SECRET-CANARY-7f3a9c";

/// Held by every test for its whole length (see the module comment).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Descriptors this process has open.
/// What descriptor `fd` of this process is (`pipe:[INODE]`, a path, ...).
fn fd_target(fd: std::os::fd::RawFd) -> String {
    fs::read_link(format!("/proc/self/fd/{fd}"))
        .expect("the descriptor is open")
        .to_string_lossy()
        .into_owned()
}

/// The descriptors of this process that are `target`.
fn fds_naming(target: &str) -> Vec<String> {
    fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable")
        .filter_map(|e| {
            let e = e.ok()?;
            let link = fs::read_link(e.path()).ok()?;
            (link.to_string_lossy() == target).then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable")
        .count()
}

/// True when KVM here is nested through kvm-pvm, where some cases end
/// otherwise than the architecture says; then the test says so in its
/// output, since it checks kvm-pvm's outcome (kvmini's report of the
/// architectural one is checked without KVM in `outcome.rs`, by
/// `architectural_endings_are_reported_by_name`).
fn kvm_pvm() -> bool {
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    if pvm {
        let test = std::thread::current().name().unwrap_or("?").to_owned();
        eprintln!("note: {test}: KVM is nested through kvm-pvm here; checking kvm-pvm's outcome, not the architectural one");
    }
    pvm
}

/// Builds `tests/hostile/NAME.c` once (warnings are failures) and returns
/// the path of its ELF.
fn guest_path(name: &str) -> PathBuf {
    common::built_guest(&format!("kvmini/tests/hostile/{name}.c"), &[])
}

/// The ELF built from `tests/hostile/NAME.c`.
fn guest(name: &str) -> Vec<u8> {
    fs::read(guest_path(name)).expect("the built guest is readable")
}

/// How one run went.
struct Run {
    ending: Ending,
    stdout: String,
    warnings: String,
    stderr: String,
    exits: u64,
    rip: u64,
    elapsed: Duration,
    /// Descriptors the guest still had open at the end.
    guest_fds: usize,
}

impl Run {
    /// The first line the guest printed, as a number (the address a guest
    /// prints with printVal before it misbehaves).
    fn printed_address(&self) -> u64 {
        let first = self.stdout.lines().next().unwrap_or_default();
        first
            .parse()
            .unwrap_or_else(|_| panic!("expected an address first, got {:?}", self.stdout))
    }
}

/// A builder with what every case shares: 4 MiB, no stdin.
fn base() -> SandboxBuilder {
    Sandbox::builder().memory(MEM).stdin(Input::Null)
}

/// Builds and runs `builder` with its output captured. While the guest
/// runs (on another thread), `during` runs here with the number of host
/// descriptors open once the sandbox was built; `inspect` sees the sandbox
/// after the run. Checks that dropping the sandbox gives back every host
/// descriptor building it took.
fn run_full<D, T>(
    kvm: &Kvm,
    builder: SandboxBuilder,
    during: impl FnOnce(usize) -> D,
    inspect: impl FnOnce(&Sandbox) -> T,
) -> (Run, D, T) {
    let before = open_fds();
    let (stdout, warnings, stderr) = (Capture::new(), Capture::new(), Capture::new());
    let mut sandbox = builder
        .stdout(Output::Capture(stdout.clone()))
        .warnings(Output::Capture(warnings.clone()))
        .stderr(Output::Capture(stderr.clone()))
        .build(kvm)
        .expect("the sandbox is built");
    let built = open_fds();
    let start = Instant::now();
    let (outcome, during) = std::thread::scope(|scope| {
        let guest = scope.spawn(|| sandbox.run());
        let during = during(built);
        let outcome = guest
            .join()
            .expect("kvmini does not panic")
            .expect("the run loop does not fail");
        (outcome, during)
    });
    let elapsed = start.elapsed();
    let inspected = inspect(&sandbox);
    let guest_fds = sandbox.open_descriptors().expect("the sandbox has its VM");
    drop(sandbox);
    assert_eq!(open_fds(), before, "the sandbox leaked host descriptors");
    let run = Run {
        ending: outcome.ending,
        stdout: text(&stdout.contents()),
        warnings: text(&warnings.contents()),
        stderr: text(&stderr.contents()),
        exits: outcome.stats.exits,
        rip: outcome.regs.rip,
        elapsed,
        guest_fds,
    };
    (run, during, inspected)
}

fn run(kvm: &Kvm, builder: SandboxBuilder) -> Run {
    run_full(kvm, builder, |_| (), |_| ()).0
}

/// A fresh host directory: `grant/`, which the guest is given, and beside
/// it `canary/secret.txt`, which no guest may read or change.
struct HostDir {
    root: tempfile::TempDir,
}

impl HostDir {
    fn new() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        fs::create_dir(root.path().join("grant")).expect("grant dir");
        fs::create_dir(root.path().join("canary")).expect("canary dir");
        fs::write(root.path().join("canary/secret.txt"), SECRET).expect("canary");
        HostDir { root }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn grant(&self) -> PathBuf {
        self.root.path().join("grant")
    }

    /// Writes `contents` to `name` under the grant.
    fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> &Self {
        fs::write(self.grant().join(name), contents).expect("write a granted file");
        self
    }

    /// The canary is as it was, and the guest did not get to print it.
    fn assert_canary_untouched(&self, run: &Run) {
        let canary = tree(&self.root().join("canary"));
        let perm = fs::metadata(self.root().join("canary/secret.txt"))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap_or(0);
        let want = BTreeMap::from([("secret.txt".to_owned(), file(perm, SECRET.as_bytes()))]);
        assert_eq!(canary, want, "the canary directory changed");
        for stream in [&run.stdout, &run.warnings, &run.stderr] {
            assert!(!stream.contains(SECRET), "the secret leaked: {stream}");
        }
    }
}

// ---------------------------------------------------------------------
// Buffers, argument blocks, strings and paths out of reach (ring 3).
// ---------------------------------------------------------------------

#[test]
fn buffers_out_of_reach_are_efault_and_touch_nothing() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let host = HostDir::new();
    host.file("data.txt", "0123456789");
    let before = tree(host.root());
    let run = run(
        &kvm,
        base()
            .elf(guest("pointers"))
            .dir(host.grant(), "/", false)
            .args(["pointers.elf", "arg"])
            .host_function(1, |call| {
                let bytes = call.read_vec(call.arg(0), call.arg(1))?;
                Ok(bytes.iter().map(|&b| u64::from(b)).sum())
            })
            .host_function(2, |call| call.write(call.arg(0), b"host fn!").map(|()| 0)),
    );
    assert_eq!(
        run.stdout,
        "open data.txt: 3\n\
         write from the end of memory: -14 EFAULT\n\
         write from the null page: -14 EFAULT\n\
         write from kvmini's page tables: -14 EFAULT\n\
         write from the top of the 32-bit space: -14 EFAULT\n\
         write running into kvmini's area: -14 EFAULT\n\
         write running out of the null page: -14 EFAULT\n\
         read running into kvmini's area: -14 EFAULT\n\
         the mapped half: untouched\n\
         read after it: 4\n\
         which read: 0123\n\
         write from 0x8000000000000000: -14 EFAULT\n\
         write from 0x0000800000000000 (first non-canonical): -14 EFAULT\n\
         write from 0xffffffffffff0000 (canonical, unmapped): -14 EFAULT\n\
         write of 100 bytes from UINT64_MAX - 10 (wraps): -14 EFAULT\n\
         write of UINT64_MAX bytes: -14 EFAULT\n\
         write of 1 TiB: -14 EFAULT\n\
         read of UINT64_MAX bytes: -14 EFAULT\n\
         pread at offset -1: -22 EINVAL\n\
         pwrite at offset -1: -22 EINVAL\n\
         write of 0 bytes from the null page: 0\n\
         read of 0 bytes into kvmini's area: 0\n\
         fstat into kvmini's area: -14 EFAULT\n\
         fstat straddling kvmini's area: -14 EFAULT\n\
         stat into the null page: -14 EFAULT\n\
         getdents straddling kvmini's area: -14 EFAULT\n\
         getdents after it lists as much as a fresh one: 1\n\
         argv into kvmini's area: -14 EFAULT\n\
         argv size query with a null buffer: 17\n\
         host read of kvmini's area: -14 EFAULT\n\
         host read wrapping around: -14 EFAULT\n\
         host read of UINT64_MAX bytes: -14 EFAULT\n\
         host read of \"abc\": 294\n\
         host write into kvmini's area: -14 EFAULT\n\
         host write into the null page: -14 EFAULT\n\
         no such host function: -38 ENOSYS\n"
    );
    // The 'L' bytes of the half-mapped buffers never came out.
    assert!(!run.stdout.contains("LLLL"));
    assert_eq!(run.warnings, "");
    assert_eq!(run.ending, Ending::Exited(0));
    assert_eq!(tree(host.root()), before);
    host.assert_canary_untouched(&run);
}

#[test]
fn blocks_strings_paths_and_batches_out_of_reach() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let host = HostDir::new();
    host.file("data.txt", "0123456789");
    let before = tree(host.root());
    let run = run(
        &kvm,
        base().elf(guest("blocks")).dir(host.grant(), "/", false),
    );
    assert_eq!(
        run.stdout,
        "open, block in the null page: -14 EFAULT\n\
         close, block straddling kvmini's area: -14 EFAULT\n\
         write, block straddling kvmini's area: -14 EFAULT\n\
         read, block on kvmini's IDT: -14 EFAULT\n\
         stat, block at the end of memory: -14 EFAULT\n\
         fstat, block at the top of the 32-bit space: -14 EFAULT\n\
         host call, block straddling kvmini's area: -14 EFAULT\n\
         argv, block straddling kvmini's area: -14 EFAULT\n\
         batch, block straddling kvmini's area: -14 EFAULT\n\
         close(99) through a good block leaves RAX alone: 1\n\
         close(99): -9 EBADF\n\
         display went on: 1\n\
         open, path running into kvmini's area: -14 EFAULT\n\
         open, 8192 bytes and no NUL: -36 ENAMETOOLONG\n\
         open, 4095-byte path: -2 ENOENT\n\
         open, 4096-byte path: -36 ENAMETOOLONG\n\
         open, 255-byte name: -2 ENOENT\n\
         open, 256-byte name: -36 ENAMETOOLONG\n\
         open, path at 0x8000000000000000: -14 EFAULT\n\
         open, path at UINT64_MAX: -14 EFAULT\n\
         mkdir, path in the null page: -14 EFAULT\n\
         rename to a path in unmapped kernel space: -14 EFAULT\n\
         data.txt is still there: 1\n\
         one\n\
         three\n\
         batch with a bad block in the middle: 3\n\
         one\n\
         the same, stopping on errors: 2\n\
         batch, entries running into kvmini's area: -14 EFAULT\n\
         batch, entries wrapping around: -14 EFAULT\n\
         batch of 4097 entries: -22 EINVAL\n\
         batch with unknown flags: -22 EINVAL\n\
         batch holding a batch: -22 EINVAL\n\
         batch holding exit: -22 EINVAL\n\
         batch holding an unknown port: -22 EINVAL\n"
    );
    // The unterminated string was not printed in part.
    assert!(!run.stdout.contains("xxx"));
    let block = |call: &str, at: u64| {
        format!("kvmini: {call}: argument block at {at:#x} is not writable guest memory; -EFAULT in RAX\n")
    };
    let display = |at: u64, why: String| format!("kvmini: display({at:#x}) ignored: {why}\n");
    let want = [
        block("open", 0),
        block("close", SYSTEM_BASE - 8),
        block("write", SYSTEM_BASE - 32),
        block("read", SYSTEM_BASE + 0x8800),
        block("stat", MEM),
        block("fstat", 0xFFFF_FFF8),
        block("host_call", SYSTEM_BASE - 16),
        block("argv", SYSTEM_BASE - 8),
        block("batch", SYSTEM_BASE - 8),
        display(
            SYSTEM_BASE - 100,
            format!("address {SYSTEM_BASE:#x} is not accessible from ring 3"),
        ),
        display(
            0,
            "address 0x0 is not mapped (level 1 entry not present)".into(),
        ),
        display(
            MEM,
            format!("address {MEM:#x} is not mapped (level 2 entry not present)"),
        ),
        display(
            SYSTEM_BASE + 0x8000,
            format!(
                "address {:#x} is not accessible from ring 3",
                SYSTEM_BASE + 0x8000
            ),
        ),
    ]
    .concat();
    assert_eq!(run.warnings, want);
    assert_eq!(run.ending, Ending::Exited(0));
    assert_eq!(tree(host.root()), before);
    host.assert_canary_untouched(&run);
}

// ---------------------------------------------------------------------
// The descriptor table.
// ---------------------------------------------------------------------

#[test]
fn descriptor_exhaustion_closed_stdio_and_a_read_into_its_own_block() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let host = HostDir::new();
    host.file("data.txt", "0123456789")
        .file("block.bin", [b'B'; 40]);
    let before = tree(host.root());
    let (at_peak, release) = (mpsc::channel::<()>(), mpsc::channel::<()>());
    let (peak_tx, peak_rx) = at_peak;
    let (release_tx, release_rx) = release;
    let (run, held, ()) = run_full(
        &kvm,
        base()
            .elf(guest("fds"))
            .dir(host.grant(), "/", false)
            .max_fds(8)
            .host_function(7, move |_| {
                peak_tx.send(()).map_err(|_| Errno::EINVAL)?;
                release_rx.recv().map_err(|_| Errno::EINVAL)?;
                Ok(0)
            }),
        |built| {
            // The guest holds 8 descriptors, 3..7 its files: the host holds
            // five more than once the sandbox was built, and no others.
            peak_rx.recv().expect("the guest reaches its limit");
            let held = open_fds() - built;
            release_tx.send(()).expect("the guest waits");
            held
        },
        |_| (),
    );
    assert_eq!(held, 5);
    assert_eq!(
        run.stdout,
        "open data.txt: 3\n\
         open data.txt: 4\n\
         open data.txt: 5\n\
         open data.txt: 6\n\
         open data.txt: 7\n\
         open data.txt: -24 EMFILE\n\
         close 5: 0\n\
         open data.txt again (lowest free): 5\n\
         one more: -24 EMFILE\n\
         the host counted its descriptors: 0\n\
         read 4 from fd 3: 4\n  which read: 0123\n\
         read 4 from fd 4: 4\n  which read: 0123\n\
         read 4 from fd 3: 4\n  which read: 4567\n\
         fd 4 is at: 4\n\
         close 3..7: 0\n\
         close -1: -9 EBADF\n\
         close 8 (past the table): -9 EBADF\n\
         close 1 << 30: -9 EBADF\n\
         close INT32_MIN: -9 EBADF\n\
         read from closed fd 7: -9 EBADF\n\
         fstat -5: -9 EBADF\n\
         lseek 100: -9 EBADF\n\
         getdents on stdout: -20 ENOTDIR\n\
         close 0: 0\n\
         read from 0: -9 EBADF\n\
         close 0 again: -9 EBADF\n\
         close 1: 0\n\
         write to 1: -9 EBADF\n\
         close 2: 0\n\
         write to 2: -9 EBADF\n\
         open data.txt: 0\n\
         read 4 from fd 0: 4\n  which read: 0123\n\
         write to fd 0, opened read-only: -9 EBADF\n\
         open data.txt: 1\n\
         open data.txt: 2\n\
         open data.txt: 3\n\
         close 0..3: 0\n\
         open block.bin: 0\n\
         read into its own block: result: 40\n\
         \x20 fd field afterwards: 1111638594\n\
         \x20 len field is now 0x4242424242424242: 1\n\
         pread into its own result field: 8\n"
    );
    // "lost" went to descriptors that were closed: nowhere.
    assert_eq!((run.warnings.as_str(), run.stderr.as_str()), ("", ""));
    assert_eq!(run.ending, Ending::Exited(0));
    // Only block.bin, as descriptor 0, was left open.
    assert_eq!(run.guest_fds, 1);
    assert_eq!(tree(host.root()), before);
    host.assert_canary_untouched(&run);
}

// ---------------------------------------------------------------------
// Leaving the granted directory.
// ---------------------------------------------------------------------

#[test]
fn filesystem_escapes_are_refused() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let host = HostDir::new();
    let (root, grant) = (host.root().to_path_buf(), host.grant());
    let secret = root.join("canary/secret.txt");
    host.file("inside.txt", "inside");
    fs::create_dir(grant.join("sub")).expect("sub");
    let proc_root = Path::new("/proc/self/root").join(secret.strip_prefix("/").expect("absolute"));
    for (target, link) in [
        (Path::new("inside.txt"), "inlink"),
        (&secret, "abs"),
        (Path::new("../canary/secret.txt"), "up"),
        (Path::new("sub/../../canary/secret.txt"), "deep"),
        (&proc_root, "procroot"),
        (Path::new(".."), "dirup"),
        (Path::new("../canary/created.txt"), "newup"),
        (Path::new("../../canary"), "sub/esc"),
    ] {
        symlink(target, grant.join(link)).expect("symlink");
    }
    let before = tree(&root);
    let run = run(
        &kvm,
        base()
            .elf(guest("escape"))
            .dir(&grant, "/", false)
            .dir("/proc/self", "/self", true)
            .args(["escape.elf", root.to_str().expect("UTF-8 temp path")]),
    );
    assert_eq!(
        run.stdout,
        "control: inlink: 3\n  read: inside\n\
         /../canary/secret.txt: -2 ENOENT\n\
         sub/../../../canary/secret.txt: -2 ENOENT\n\
         ../../../../etc/passwd: -2 ENOENT\n\
         abs: -18 EXDEV\n\
         up: -18 EXDEV\n\
         deep: -18 EXDEV\n\
         sub/esc/secret.txt: -18 EXDEV\n\
         procroot: -18 EXDEV\n\
         dirup/canary/secret.txt: -18 EXDEV\n\
         create through newup: -18 EXDEV\n\
         create dirup/canary/new.txt: -18 EXDEV\n\
         stat up: -18 EXDEV\n\
         mkdir dirup/evil: -18 EXDEV\n\
         unlink dirup/canary/secret.txt: -18 EXDEV\n\
         rename inside.txt to dirup/stolen.txt: -18 EXDEV\n\
         rename sub/esc/secret.txt to taken.txt: -18 EXDEV\n\
         self/root/ROOT/canary/secret.txt: -40 ELOOP\n\
         self/cwd: -40 ELOOP\n\
         self/exe: -40 ELOOP\n\
         self/fd/0: -40 ELOOP\n\
         create in the read-only grant: -30 EROFS\n"
    );
    assert_eq!(run.warnings, "");
    assert_eq!(run.ending, Ending::Exited(0));
    assert_eq!(tree(&root), before, "something under the temp root changed");
    host.assert_canary_untouched(&run);
}

// ---------------------------------------------------------------------
// Ring 3: forbidden instructions, kvmini's memory, bad port I/O
// (`faults.c`, one case per run, chosen by its argument).
// ---------------------------------------------------------------------

/// What a ring-3 guest must leave as kvmini set it up: PML4[0] (its
/// accessed and dirty bits aside), the ring-0 code segment of the GDT (its
/// accessed bit aside), the IDT's page-fault gate, and the TSS's RSP0 and
/// IST1, the stack kvmini's exception handlers run on.
fn kvmini_tables(sandbox: &Sandbox) -> [u64; 5] {
    let read = |at: u64| -> u64 {
        sandbox
            .memory()
            .expect("the sandbox has its VM")
            .read_obj(GuestAddress(at))
            .expect("kvmini's area is guest memory")
    };
    [
        read(SYSTEM_BASE) & !0x60,
        read(SYSTEM_BASE + 0x8800 + 14 * 16),
        read(SYSTEM_BASE + 0x9004),
        read(SYSTEM_BASE + 0x9024),
        read(SYSTEM_BASE + 0x8008) & !(1 << 40),
    ]
}

/// Runs the `faults.c` case `name`: the run and the address of the
/// instruction the case labels (which the guest prints first). Checks that
/// kvmini's own tables are as a fresh sandbox has them.
fn fault_case(name: &str) -> Option<(u64, Run)> {
    let _serial = serial();
    let kvm = kvm_or_skip()?;
    let builder = || base().elf(guest("faults")).args(["faults.elf", name]);
    let pristine = kvmini_tables(&builder().build(&kvm).expect("the sandbox is built"));
    assert_eq!(
        [pristine[0], pristine[2], pristine[3], pristine[4]],
        [
            (SYSTEM_BASE + 0x1000) | 0x7,
            MEM,
            MEM,
            0x00AF_9A00_0000_FFFF
        ]
    );
    assert_ne!(pristine[1], 0);
    let (run, (), tables) = run_full(&kvm, builder(), |_| (), kvmini_tables);
    assert_eq!(tables, pristine, "{name} changed kvmini's tables");
    let at = run.printed_address();
    assert_eq!(run.warnings, "", "{name}");
    Some((at, run))
}

/// Checks that case `name` crashed with `vector` and `error_code` at the
/// labelled instruction (`rip` maps that address to the reported RIP,
/// for cases that report another), `cr2` for page faults, and the report
/// `text`, where RIP stands for the RIP.
fn crashes(name: &str, vector: u8, error_code: u64, cr2: u64, rip: fn(u64) -> u64, text: &str) {
    let Some((at, run)) = fault_case(name) else {
        return;
    };
    let Ending::Crashed(crash) = &run.ending else {
        panic!("{name}: expected a crash, got {:?}", run.ending);
    };
    let rip = rip(at);
    assert_eq!(
        crash,
        &Crash {
            vector,
            error_code,
            rip,
            rsp: crash.rsp,
            ring: 3,
            cr2,
            location: crash.location.clone(),
            backtrace: crash.backtrace.clone(),
            ..Default::default()
        },
        "{name}"
    );
    // The guest has symbols: a RIP in its code is named (crash_report.rs
    // checks the names against nm).
    let location = crash
        .location
        .as_ref()
        .map(|l| format!(" ({l})"))
        .unwrap_or_default();
    assert_eq!(
        crash.to_string(),
        text.replace("RIP", &format!("{rip:#x}{location}"))
    );
    assert_eq!(run.ending.status(), 126);
    // argv, the address, the exception report: nothing after the fault.
    assert_eq!((run.stdout.lines().count(), run.exits), (1, 3), "{name}");
}

fn same(at: u64) -> u64 {
    at
}

#[test]
fn ring3_ud2_is_invalid_opcode() {
    crashes(
        "ud2",
        6,
        0,
        0,
        same,
        "guest crashed: invalid opcode at rip RIP (ring 3)",
    );
}

#[test]
fn ring3_divide_by_zero_is_divide_error() {
    crashes(
        "div0",
        0,
        0,
        0,
        same,
        "guest crashed: divide error at rip RIP (ring 3)",
    );
}

#[test]
fn ring3_null_read_is_a_page_fault() {
    crashes(
        "null_read",
        14,
        0x4,
        0,
        same,
        "guest crashed: page fault reading 0x0 (not mapped) at rip RIP (ring 3)",
    );
}

#[test]
fn ring3_store_past_the_end_of_memory_is_a_page_fault_not_mmio() {
    // kvmini's identity map covers guest memory only: an address past its
    // end has no page, so the store never reaches KVM as MMIO.
    crashes(
        "past_end_write",
        14,
        0x6,
        MEM,
        same,
        "guest crashed: page fault writing 0x400000 (not mapped) at rip RIP (ring 3)",
    );
}

#[test]
fn ring3_cannot_write_kvmini_page_tables() {
    crashes(
        "pml4_write",
        14,
        0x7,
        SYSTEM_BASE,
        same,
        "guest crashed: page fault writing 0x3f0000 (not allowed) at rip RIP (ring 3)",
    );
}

#[test]
fn ring3_cannot_read_kvmini_gdt() {
    crashes(
        "gdt_read",
        14,
        0x5,
        SYSTEM_BASE + 0x8000,
        same,
        "guest crashed: page fault reading 0x3f8000 (not allowed) at rip RIP (ring 3)",
    );
}

#[test]
fn ring3_cannot_write_kvmini_gdt() {
    // GDT[1]: kvmini's ring-0 code segment.
    crashes(
        "gdt_write",
        14,
        0x7,
        SYSTEM_BASE + 0x8008,
        same,
        "guest crashed: page fault writing 0x3f8008 (not allowed) at rip RIP (ring 3)",
    );
}

#[test]
fn ring3_cannot_write_kvmini_idt() {
    crashes(
        "idt_write",
        14,
        0x7,
        SYSTEM_BASE + 0x8800,
        same,
        "guest crashed: page fault writing 0x3f8800 (not allowed) at rip RIP (ring 3)",
    );
}

#[test]
fn ring3_cannot_write_the_tss_stack_pointers() {
    // TSS + 4 is RSP0, the stack kvmini's exception handlers run on.
    crashes(
        "tss_write",
        14,
        0x7,
        SYSTEM_BASE + 0x9004,
        same,
        "guest crashed: page fault writing 0x3f9004 (not allowed) at rip RIP (ring 3)",
    );
}

#[test]
fn ring3_cannot_jump_into_kvmini_handlers() {
    // The fetch at the target faults (no-execute is off, so the error code
    // says "read").
    crashes(
        "exec_kvmini",
        14,
        // EFER.NXE is on: a fetch sets the I/D bit.
        0x15,
        SYSTEM_BASE + 0xC000,
        |_| SYSTEM_BASE + 0xC000,
        "guest crashed: page fault executing 0x3fc000 (not allowed) at rip RIP (ring 3)",
    );
}

#[test]
fn ring3_non_canonical_store_is_a_general_protection_fault() {
    crashes(
        "noncanonical_write",
        13,
        0,
        0,
        same,
        "guest crashed: general protection fault at rip RIP (ring 3)",
    );
}

#[test]
fn ring3_fault_with_no_stack_is_still_reported() {
    // RSP = 0, then push: the exception is delivered on kvmini's own stack
    // (IST1), so the report comes whatever the guest did to RSP.
    let Some((at, run)) = fault_case("no_stack") else {
        return;
    };
    let Ending::Crashed(crash) = &run.ending else {
        panic!("expected a crash, got {:?}", run.ending);
    };
    assert_eq!(
        crash,
        &Crash {
            vector: 14,
            error_code: 0x6,
            rip: at,
            rsp: 0,
            ring: 3,
            cr2: 0xFFFF_FFFF_FFFF_FFF8,
            location: crash.location.clone(),
            backtrace: crash.backtrace.clone(),
            ..Default::default()
        }
    );
    let location = crash.location.as_ref().expect("the guest has symbols");
    assert_eq!(
        crash.to_string(),
        format!("guest crashed: page fault writing 0xfffffffffffffff8 (not mapped) at rip {at:#x} ({location}) (ring 3)")
    );
}

fn general_protection(name: &str) {
    crashes(
        name,
        13,
        0,
        0,
        same,
        "guest crashed: general protection fault at rip RIP (ring 3)",
    );
}

#[test]
fn ring3_hlt_is_a_general_protection_fault() {
    general_protection("hlt");
}

#[test]
fn ring3_lidt_is_a_general_protection_fault() {
    general_protection("lidt");
}

#[test]
fn ring3_lgdt_is_a_general_protection_fault() {
    general_protection("lgdt");
}

#[test]
fn ring3_mov_to_cr3_is_a_general_protection_fault() {
    general_protection("mov_cr3");
}

#[test]
fn ring3_wrmsr_is_a_general_protection_fault() {
    general_protection("wrmsr");
}

#[test]
fn ring3_int3_cannot_enter_ring_0() {
    if kvm_pvm() {
        // kvm-pvm delivers it as a breakpoint (a trap: RIP after int3) to
        // kvmini's handler, which reports it.
        crashes(
            "int3",
            3,
            0,
            0,
            |at| at + 1,
            "guest crashed: breakpoint at rip RIP (ring 3)",
        );
    } else {
        // The gate's DPL is 0: #GP with the IDT entry in the error code.
        crashes(
            "int3",
            13,
            0x1A,
            0,
            same,
            "guest crashed: general protection fault (error code 0x1a) at rip RIP (ring 3)",
        );
    }
}

#[test]
fn ring3_int_0x80_cannot_enter_ring_0() {
    if kvm_pvm() {
        crashes(
            "int80",
            6,
            0,
            0,
            same,
            "guest crashed: invalid opcode at rip RIP (ring 3)",
        );
    } else {
        // Vector 0x80 is past the IDT's 32 entries.
        crashes(
            "int80",
            13,
            0x402,
            0,
            same,
            "guest crashed: general protection fault (error code 0x402) at rip RIP (ring 3)",
        );
    }
}

#[test]
fn ring3_syscall_cannot_enter_ring_0() {
    if kvm_pvm() {
        // kvm-pvm takes it to LSTAR, 0, still at ring 3: the null page.
        crashes(
            "syscall",
            14,
            // A fetch (the I/D bit, with EFER.NXE on) from the null page.
            0x14,
            0,
            |_| 0,
            "guest crashed: page fault executing 0x0 (not mapped) at rip RIP (ring 3)",
        );
    } else {
        // EFER.SCE is clear.
        crashes(
            "syscall",
            6,
            0,
            0,
            same,
            "guest crashed: invalid opcode at rip RIP (ring 3)",
        );
    }
}

/// Checks that case `name` stopped on the exit `want`, described `text`.
fn unserved(name: &str, want: Unserved, text: &str) {
    let Some((_, run)) = fault_case(name) else {
        return;
    };
    assert_eq!(run.ending, Ending::Unserved(want), "{name}");
    let Ending::Unserved(what) = &run.ending else {
        unreachable!()
    };
    assert_eq!(what.to_string(), text);
    assert_eq!(run.ending.status(), 126);
    assert_eq!((run.stdout.lines().count(), run.exits), (1, 3), "{name}");
}

#[test]
fn ring3_write_to_the_exception_port_is_refused() {
    unserved(
        "exception_port",
        Unserved::ForgedException,
        "KVM_EXIT_IO: guest code wrote to the exception port 0x405, which only kvmini's handlers may use",
    );
}

#[test]
fn ring3_in_from_an_unknown_port() {
    unserved(
        "in_unknown_port",
        Unserved::UnknownPort {
            port: 0x60,
            direction: Direction::In,
            size: 1,
        },
        "KVM_EXIT_IO: 1-byte `in` on port 0x60, which no hypercall owns",
    );
}

#[test]
fn ring3_out_to_an_unknown_port() {
    unserved(
        "out_unknown_port",
        Unserved::UnknownPort {
            port: 0x1234,
            direction: Direction::Out,
            size: 4,
        },
        "KVM_EXIT_IO: 4-byte `out` on port 0x1234, which no hypercall owns",
    );
}

#[test]
fn ring3_out_on_the_input_port() {
    unserved(
        "out_to_input_port",
        Unserved::BadAccess {
            port: Port::GetNumExits,
            direction: Direction::Out,
            size: 4,
            count: 1,
        },
        "KVM_EXIT_IO: 4-byte `out` on port 0x401 (getNumExits), which takes only 4-byte `in`",
    );
}

#[test]
fn ring3_in_on_an_output_port() {
    unserved(
        "in_from_output_port",
        Unserved::BadAccess {
            port: Port::PrintVal,
            direction: Direction::In,
            size: 4,
            count: 1,
        },
        "KVM_EXIT_IO: 4-byte `in` on port 0x400 (printVal), which takes only 4-byte `out`",
    );
}

#[test]
fn ring3_wrong_access_size() {
    unserved(
        "word_out_to_exit",
        Unserved::BadAccess {
            port: Port::Exit,
            direction: Direction::Out,
            size: 2,
            count: 1,
        },
        "KVM_EXIT_IO: 2-byte `out` on port 0x403 (exit), which takes only 4-byte `out`",
    );
}

#[test]
fn ring3_rep_insb_is_refused_as_string_io() {
    // KVM hands `rep ins` to kvmini as one exit for the whole count.
    unserved(
        "rep_insb_console",
        Unserved::BadAccess {
            port: Port::Console,
            direction: Direction::In,
            size: 1,
            count: 3,
        },
        "KVM_EXIT_IO: 1-byte `in` (string I/O) on port 0xe9 (console), which takes only 1-byte `out`",
    );
}

#[test]
fn ring3_rep_outsb_to_display_is_a_bad_access() {
    // KVM hands `rep outs` over one access per exit: the first, a 1-byte
    // `out` to a 4-byte port, is refused.
    unserved(
        "rep_outsb_display",
        Unserved::BadAccess {
            port: Port::Display,
            direction: Direction::Out,
            size: 1,
            count: 1,
        },
        "KVM_EXIT_IO: 1-byte `out` on port 0x402 (display), which takes only 4-byte `out`",
    );
}

#[test]
fn ring3_rep_outsd_to_print_val_is_three_calls() {
    // One 4-byte `out` per exit: indistinguishable from three `out`s, and
    // served as three printVal calls.
    let Some((at, run)) = fault_case("rep_outsd_print_val") else {
        return;
    };
    assert_eq!(
        run.stdout,
        format!("{at}\n1\n2\n3\nreturned from: rep_outsd_print_val\n")
    );
    assert_eq!(run.ending, Ending::Exited(0));
    // argv, the address, three printVal, the display, exit.
    assert_eq!(run.exits, 7);
}

// ---------------------------------------------------------------------
// Time limits.
// ---------------------------------------------------------------------

/// Checks that `run` ended by its `limit`, not before it. How soon after
/// it is not a wall-clock margin here (this machine is shared): the
/// callers check where the guest was stopped and how many exits it made.
fn assert_timed_out(run: &Run, limit: Duration) {
    assert_eq!(run.ending, Ending::TimedOut(limit));
    assert_eq!(run.ending.status(), 124);
    assert!(run.elapsed >= limit, "{:?}", run.elapsed);
}

#[test]
fn ring3_infinite_loop_ends_at_the_timeout() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let limit = Duration::from_millis(300);
    let run = run(
        &kvm,
        base()
            .elf(guest("faults"))
            .args(["faults.elf", "spin"])
            .timeout(limit),
    );
    assert_timed_out(&run, limit);
    // Stopped inside the loop, a one-instruction `jmp` to itself.
    assert_eq!(run.rip, run.printed_address());
    assert_eq!(run.exits, 2);
}

/// Ring 0, interrupts off, forever:
///   0: cli
///   1: jmp 1
const SPIN_RING_0: &[u8] = &[0xFA, 0xEB, 0xFE];

#[test]
fn ring0_infinite_loop_with_interrupts_off_ends_at_the_timeout() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let limit = Duration::from_millis(300);
    let run = run(&kvm, base().flat(SPIN_RING_0).timeout(limit));
    assert_timed_out(&run, limit);
    assert_eq!((run.rip, run.exits), (1, 0));
}

/// Ring 3: read one byte from descriptor 0, print the result, halt.
///    0: mov qword [0x1008], 0x2000      ; IoArgs at 0x1000: fd 0 (zeroed),
///    c: mov qword [0x1010], 1           ;   buf 0x2000, len 1
///   18: mov eax, 0x1000
///   1d: mov dx, 0x412                   ; read
///   21: out dx, eax
///   22: mov eax, [0x1020]               ; IoArgs.result
///   29: mov dx, 0x400                   ; printVal
///   2d: out dx, eax
///   2e: mov dx, 0x404                   ; halt
///   32: out dx, al
#[rustfmt::skip]
const READ_STDIN: &[u8] = &[
    0x48, 0xC7, 0x04, 0x25, 0x08, 0x10, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00,
    0x48, 0xC7, 0x04, 0x25, 0x10, 0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0xB8, 0x00, 0x10, 0x00, 0x00,
    0x66, 0xBA, 0x12, 0x04,
    0xEF,
    0x8B, 0x04, 0x25, 0x20, 0x10, 0x00, 0x00,
    0x66, 0xBA, 0x00, 0x04,
    0xEF,
    0x66, 0xBA, 0x04, 0x04,
    0xEE,
];

#[test]
fn a_guest_blocked_on_a_stdin_reader_ends_at_the_timeout() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    // A pipe whose writer (`sleep`) writes nothing and goes away after
    // 3 s: the reader blocks until then, and no longer.
    let mut writer = Command::new("sleep")
        .arg("3")
        .stdout(Stdio::piped())
        .spawn()
        .expect("sleep starts");
    let reader = writer.stdout.take().expect("the pipe");
    let pipe = fd_target(reader.as_raw_fd());
    assert!(pipe.starts_with("pipe:["), "{pipe}");
    let limit = Duration::from_millis(300);
    let mut sandbox = base()
        .flat(READ_STDIN)
        .ring(Ring::Three)
        .stdin(Input::Reader(Box::new(reader)))
        .stdout(Output::Null)
        .warnings(Output::Null)
        .timeout(limit)
        .build(&kvm)
        .expect("the sandbox is built");
    let outcome = sandbox.run().expect("the run loop does not fail");
    drop(sandbox);
    writer.wait().expect("sleep ends");
    // The sandbox owned the reader: no descriptor of this process names
    // that pipe any more (other tests may open and close descriptors
    // meanwhile, so the pipe is looked for by identity, not by count).
    assert_eq!(fds_naming(&pipe), Vec::<String>::new());
    // Had the timeout not stopped the read, it would have returned 0 when
    // `sleep` ended and the guest would have halted.
    assert_eq!(outcome.ending, Ending::TimedOut(limit));
}

// ---------------------------------------------------------------------
// Ring 0: the guest's own page tables and interrupt table.
// ---------------------------------------------------------------------

/// Runs `paging.c` at ring 0 in `mode` with a granted directory.
fn paging(kvm: &Kvm, mode: &str) -> (Run, HostDir) {
    let host = HostDir::new();
    let run = run(
        kvm,
        base()
            .elf(guest("paging"))
            .ring(Ring::Zero)
            .dir(host.grant(), "/", false)
            .args(["paging.elf", mode]),
    );
    host.assert_canary_untouched(&run);
    (run, host)
}

#[test]
fn ring0_page_tables_beyond_memory_looping_and_changing() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let (run, _host) = paging(&kvm, "");
    assert_eq!(
        run.stdout,
        "first mapping\n\
         second mapping\n\
         write running from a mapped page into one beyond memory: -14 EFAULT\n\
         read-only page\n\
         write from the read-only page: 15\n\
         open scratch.bin: 3\n\
         read into the read-only page: -14 EFAULT\n\
         pwrite from the self-mapped pdpt: 32\n\
         \x20 the CPU and kvmini both see the table: 1\n\
         pwrite from the recursive pml4 slot: 32\n\
         \x20 the CPU and kvmini both see the table: 1\n"
    );
    assert_eq!(
        run.warnings,
        "kvmini: display(0x80000000) ignored: address 0x80000000: page table at 0x100000000 is outside guest memory\n\
         kvmini: display(0x40001000) ignored: address 0x40001000 maps to 0x7ff000, outside guest memory\n"
    );
    assert_eq!(run.ending, Ending::Exited(0));
}

#[test]
fn ring0_store_beyond_memory_is_an_mmio_exit() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let (run, _host) = paging(&kvm, "mmio-write");
    let want = Unserved::Mmio {
        addr: 0x7F_F000,
        write: true,
    };
    assert_eq!(
        want.to_string(),
        "KVM_EXIT_MMIO: write to guest physical address 0x7ff000, where there is no memory"
    );
    assert_eq!(run.ending, Ending::Unserved(want));
    assert_eq!(run.ending.status(), 126);
    assert_eq!((run.stdout.as_str(), run.exits), ("", 2));
}

#[test]
fn ring0_load_beyond_memory_is_an_mmio_exit() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let (run, _host) = paging(&kvm, "mmio-read");
    let want = Unserved::Mmio {
        addr: 0x7F_F000,
        write: false,
    };
    assert_eq!(
        want.to_string(),
        "KVM_EXIT_MMIO: read from guest physical address 0x7ff000, where there is no memory"
    );
    assert_eq!(run.ending, Ending::Unserved(want));
    assert_eq!((run.stdout.as_str(), run.exits), ("", 2));
}

#[test]
fn ring0_guest_with_its_own_idt_handles_its_own_fault() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let run = run(&kvm, base().elf(guest("idt")).ring(Ring::Zero));
    let at = run.printed_address();
    assert_eq!(
        run.stdout,
        format!("{at}\nthe guest's own handler ran for: #UD\n  it was given the faulting RIP: 1\n")
    );
    assert_eq!(run.ending, Ending::Exited(66));
    assert_eq!(run.ending.status(), 66);
}

#[test]
fn ring0_idt_in_unmapped_memory_is_a_triple_fault() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let run = run(
        &kvm,
        base()
            .elf(guest("idt"))
            .ring(Ring::Zero)
            .args(["idt.elf", "unmapped"]),
    );
    assert_eq!(run.ending, Ending::Unserved(Unserved::Shutdown));
    assert_eq!(run.ending.status(), 126);
    // Stopped at the ud2 whose #UD could not be delivered.
    assert_eq!(run.rip, run.printed_address());
    assert_eq!(run.stdout.lines().count(), 1);
}

/// Ring 0: an IDT of limit 0, then ud2.
///   0: push 0
///   2: push 0
///   4: lidt [rsp + 6]      ; limit 0, base 0
///   9: ud2
#[rustfmt::skip]
const ZERO_IDT_UD2: &[u8] = &[
    0x6A, 0x00,
    0x6A, 0x00,
    0x0F, 0x01, 0x5C, 0x24, 0x06,
    0x0F, 0x0B,
];

/// As [`ZERO_IDT_UD2`], with int3 at 9.
#[rustfmt::skip]
const ZERO_IDT_INT3: &[u8] = &[
    0x6A, 0x00,
    0x6A, 0x00,
    0x0F, 0x01, 0x5C, 0x24, 0x06,
    0xCC,
];

#[test]
fn ring0_zero_limit_idt_then_ud2_is_a_triple_fault() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let run = run(&kvm, base().flat(ZERO_IDT_UD2));
    assert_eq!(run.ending, Ending::Unserved(Unserved::Shutdown));
    assert_eq!(
        Unserved::Shutdown.to_string(),
        "KVM_EXIT_SHUTDOWN: triple fault (an exception that could not be delivered)"
    );
    assert_eq!(run.ending.status(), 126);
    assert_eq!((run.rip, run.exits, run.stdout.as_str()), (9, 1, ""));
}

#[test]
fn ring0_zero_limit_idt_then_int3() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let run = run(&kvm, base().flat(ZERO_IDT_INT3));
    let want = if kvm_pvm() {
        // KVM's emulator, which runs ring-0 code on kvm-pvm, cannot deliver
        // a software interrupt in long mode.
        Unserved::InternalError {
            suberror: 1,
            ring: 0,
        }
    } else {
        Unserved::Shutdown
    };
    assert_eq!(run.ending, Ending::Unserved(want));
    assert_eq!(run.ending.status(), 126);
    assert_eq!(run.exits, 1);
    if kvm_pvm() {
        assert_eq!(run.rip, 9);
    }
}

/// Ring 0: CR3 beyond guest memory, then a hypercall.
///    0: movabs rax, 0x100000000
///    a: mov cr3, rax
///    d: mov dx, 0x400          ; printVal
///   11: mov eax, 7
///   16: out dx, eax
///   17: hlt
#[rustfmt::skip]
const CR3_BEYOND_MEMORY: &[u8] = &[
    0x48, 0xB8, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x0F, 0x22, 0xD8,
    0x66, 0xBA, 0x00, 0x04,
    0xB8, 0x07, 0x00, 0x00, 0x00,
    0xEF,
    0xF4,
];

#[test]
fn ring0_cr3_beyond_memory_is_a_triple_fault() {
    // The next instruction cannot be fetched, and no exception can be
    // delivered through tables that are not there: the hypercall never
    // happens.
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let run = run(&kvm, base().flat(CR3_BEYOND_MEMORY));
    assert_eq!(run.ending, Ending::Unserved(Unserved::Shutdown));
    assert_eq!(run.ending.status(), 126);
    assert_eq!((run.rip, run.exits, run.stdout.as_str()), (0xD, 1, ""));
}

/// Ring 0: the exception port, from guest code.
///   0: mov dx, 0x405
///   4: mov al, 6
///   6: out dx, al
const FORGED_EXCEPTION: &[u8] = &[0x66, 0xBA, 0x05, 0x04, 0xB0, 0x06, 0xEE];

#[test]
fn ring0_write_to_the_exception_port_is_refused() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let run = run(&kvm, base().flat(FORGED_EXCEPTION));
    assert_eq!(run.ending, Ending::Unserved(Unserved::ForgedException));
    assert_eq!((run.rip, run.exits), (7, 1));
}

/// Ring 0: a made-up exception frame on kvmini's exception stack, then a
/// jump into kvmini's own report code (the common tail of its handlers,
/// which pushes RDX and RAX and reports the frame above them).
///    0: mov esp, 0x3fffc8                 ; 7 words below the stack top
///    5: mov qword [rsp], 99               ; vector
///    d: mov qword [rsp + 8], 0x1234       ; error code
///   16: mov eax, 0xdead0000
///   1b: mov [rsp + 16], rax               ; RIP
///   20: mov qword [rsp + 24], 0x23        ; CS: ring 3
///   29: mov qword [rsp + 32], 2           ; RFLAGS
///   32: mov qword [rsp + 40], 0           ; RSP
///   3b: mov qword [rsp + 48], 0x1b        ; SS
///   44: mov eax, 0x3fc200                 ; handlers + 32 stubs of 16 bytes
///   49: jmp rax
#[rustfmt::skip]
const FAKE_CRASH_REPORT: &[u8] = &[
    0xBC, 0xC8, 0xFF, 0x3F, 0x00,
    0x48, 0xC7, 0x04, 0x24, 0x63, 0x00, 0x00, 0x00,
    0x48, 0xC7, 0x44, 0x24, 0x08, 0x34, 0x12, 0x00, 0x00,
    0xB8, 0x00, 0x00, 0xAD, 0xDE,
    0x48, 0x89, 0x44, 0x24, 0x10,
    0x48, 0xC7, 0x44, 0x24, 0x18, 0x23, 0x00, 0x00, 0x00,
    0x48, 0xC7, 0x44, 0x24, 0x20, 0x02, 0x00, 0x00, 0x00,
    0x48, 0xC7, 0x44, 0x24, 0x28, 0x00, 0x00, 0x00, 0x00,
    0x48, 0xC7, 0x44, 0x24, 0x30, 0x1B, 0x00, 0x00, 0x00,
    0xB8, 0x00, 0xC2, 0x3F, 0x00,
    0xFF, 0xE0,
];

#[test]
fn ring0_guest_can_make_up_its_own_crash_report() {
    // A ring-0 guest owns kvmini's area like the rest of its memory: its
    // crash report is its own word (docs/security.md says so). It cannot
    // make kvmini read outside guest memory doing it.
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let run = run(&kvm, base().flat(FAKE_CRASH_REPORT));
    let Ending::Crashed(crash) = &run.ending else {
        panic!("expected a crash report, got {:?}", run.ending);
    };
    assert_eq!(
        crash,
        &Crash {
            vector: 99,
            error_code: 0x1234,
            rip: 0xDEAD_0000,
            rsp: 0,
            ring: 3,
            cr2: 0,
            ..Default::default()
        }
    );
    assert_eq!(
        crash.to_string(),
        "guest crashed: reserved exception (error code 0x1234) at rip 0xdead0000 (ring 3)"
    );
}

// ---------------------------------------------------------------------
// The kvmini binary: its exit statuses, and its seccomp filter.
// ---------------------------------------------------------------------

// ---------------------------------------------------------------------
// Where kvmini does not hold yet.
// ---------------------------------------------------------------------

/// With `KVMINI_ABORT_CHILD` set, the test of the same name runs here in
/// a child process: a host function calls `abort()` on the confined vCPU
/// thread.
#[test]
#[ignore = "runs as a child of an_abort_on_the_vcpu_thread_ends_kvmini_with_sigabrt"]
fn abort_child() {
    if std::env::var_os("KVMINI_ABORT_CHILD").is_none() {
        return;
    }
    let kvm = Kvm::open().expect("KVM");
    let mut sandbox = Sandbox::builder()
        .elf(kvmini::guests::KVSTORE.elf)
        .stdout(Output::Null)
        .host_function(1, |_| std::process::abort())
        .build(&kvm)
        .expect("the sandbox is built");
    let _ = sandbox.run();
    unreachable!("the host function aborts the process");
}

#[test]
fn an_abort_on_the_vcpu_thread_ends_kvmini_with_sigabrt() {
    use std::os::unix::process::ExitStatusExt;
    if kvm_or_skip().is_none() {
        return;
    }
    // The filter lets abort() raise SIGABRT (rt_sigprocmask, tgkill): the
    // process ends by that signal, not by a refused call's fallback
    // (SIGSEGV, SIGILL) or a seccomp kill (SIGSYS).
    let child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--ignored", "--exact", "abort_child", "--nocapture"])
        .env("KVMINI_ABORT_CHILD", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the child runs");
    assert_eq!(child.signal(), Some(libc::SIGABRT), "{child:?}");
}

#[test]
fn a_call_whose_block_is_read_only_does_nothing() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let (run, _host) = paging(&kvm, "ro-block");
    assert_eq!(
        run.stdout,
        "write with its block on a read-only page: -14 EFAULT\n"
    );
    assert_eq!(
        run.warnings,
        "kvmini: write: argument block at 0x40002000 is not writable guest memory; -EFAULT in RAX\n"
    );
    assert_eq!(run.ending, Ending::Exited(0));
}

/// Runs `reserved.c` at ring 0, `case` naming the bad entry the guest
/// touches itself (or none).
fn reserved(kvm: &Kvm, case: &str) -> Run {
    run(
        kvm,
        base()
            .elf(guest("reserved"))
            .ring(Ring::Zero)
            .args(["reserved.elf", case]),
    )
}

/// Whether the vCPU's CPUID (KVM's supported CPUID, as kvmini gives it)
/// reports 1 GiB pages: CPUID 8000_0001h EDX bit 26.
fn vcpu_has_gib_pages(kvm: &Kvm) -> bool {
    kvm.supported_cpuid()
        .as_slice()
        .iter()
        .any(|e| e.function == 0x8000_0001 && e.edx & (1 << 26) != 0)
}

#[test]
fn ring0_entries_with_reserved_bits_are_not_served() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let run = reserved(&kvm, "");
    // A served mapping prints "served" twice: display, then write.
    let gib = if vcpu_has_gib_pages(&kvm) {
        "served\nserved\n1 GiB page: 7\n"
    } else {
        "1 GiB page: -14 EFAULT\n"
    };
    assert_eq!(
        run.stdout,
        format!(
            "1 GiB page, base bit 13 set: -14 EFAULT\n\
             {gib}\
             2 MiB page, bit 13 set: -14 EFAULT\n\
             served\nserved\n2 MiB page: 7\n\
             4 KiB page, XD without NXE: -14 EFAULT\n\
             4 KiB page, an address bit at MAXPHYADDR: -14 EFAULT\n\
             served\nserved\n4 KiB page: 7\n\
             PML4 entry with PS set: -14 EFAULT\n"
        )
    );
    let mut levels = vec![3];
    if !vcpu_has_gib_pages(&kvm) {
        levels.push(3);
    }
    levels.extend([2, 1, 1]);
    let warnings: Vec<&str> = run.warnings.lines().collect();
    assert_eq!(warnings.len(), levels.len(), "{}", run.warnings);
    for (warning, level) in warnings.iter().zip(levels) {
        assert!(
            warning.starts_with("kvmini: display(0x")
                && warning.contains(&format!(": level {level} entry 0x"))
                && warning.ends_with(" sets reserved bits"),
            "{warning}"
        );
    }
    assert_eq!(run.ending, Ending::Exited(0));
}

#[test]
fn ring0_the_cpu_faults_on_the_entries_kvmini_refuses() {
    let _serial = serial();
    let Some(kvm) = kvm_or_skip() else { return };
    let gib_plain_faults = !vcpu_has_gib_pages(&kvm);
    for (case, faults) in [
        ("gib", true),
        ("mib", true),
        ("xd", true),
        ("wide", true),
        ("pml4-ps", true),
        ("gib-plain", gib_plain_faults),
        ("mib-plain", false),
        ("plain", false),
    ] {
        let run = reserved(&kvm, case);
        if faults {
            let Ending::Crashed(crash) = &run.ending else {
                panic!(
                    "{case}: expected a page fault, got {:?}: {}",
                    run.ending, run.stdout
                );
            };
            // A supervisor read of a present page with a reserved bit set.
            assert_eq!((crash.vector, crash.error_code & 0xF), (14, 0x9), "{case}");
        } else {
            // The guest read the 's' of "served".
            assert_eq!(
                (&run.ending, run.stdout.as_str()),
                (&Ending::Exited(1), "loaded: 115\n"),
                "{case}"
            );
        }
    }
}
