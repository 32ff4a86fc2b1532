//! Helpers shared by the integration tests: the KVM-or-skip convention,
//! running a guest through the library with its output captured, building
//! C guests ([`c_build`], [`built_guest`]), and hand-made ELF images
//! ([`elf`]). The command line's tests (kvmini-cli/tests) use them too.

// Each test crate includes this module and uses a different part of it.
#![allow(dead_code)]

pub mod c_build;
pub mod core_files;
pub mod cpu_state;
pub mod elf;
pub mod linux_build;
pub mod modes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};

use kvmini::cpu::Ring;
use kvmini::kvm::Kvm;
use kvmini::output::{self, Capture};
use kvmini::sandbox::{Image, Outcome, Sandbox, SandboxBuilder};
use vm_memory::Bytes;

/// Builds the C guest `source` (relative to the repository root) with the
/// SDK's flags, `extra` flags and warnings as errors, once per test
/// process, and returns the path of its ELF. Each process builds into a
/// directory of its own, removed when it exits, so that test runs side by
/// side (debug and release, or two checkouts) never share a file.
pub fn built_guest(source: &str, extra: &[&str]) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let dir = DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("kvmini-test-guests-")
            .tempdir()
            .expect("a directory for the built guests")
    });
    let key = [source]
        .iter()
        .chain(extra)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let elf = dir.path().join(format!("{}.elf", built.len()));
    let flags: Vec<&str> = ["-Wall", "-Wextra", "-Werror"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let out = c_build::cc_guest(&flags, &elf, source);
    assert!(out.stderr.is_empty(), "cc {source}:\n{}", text(&out.stderr));
    built.insert(key, elf.clone());
    elf
}

/// The environment variable that turns a missing /dev/kvm into a failure.
pub const REQUIRE_KVM: &str = "KVMINI_REQUIRE_KVM";

/// The KVM handle, or `None` (with a note on stderr) when KVM cannot be
/// opened here. With `KVMINI_REQUIRE_KVM=1` a missing KVM fails the test
/// instead, so that CI cannot pass by skipping.
pub fn kvm_or_skip() -> Option<Kvm> {
    match Kvm::open() {
        Ok(kvm) => Some(kvm),
        Err(e) => {
            let why = error_chain(&e);
            if std::env::var_os(REQUIRE_KVM).is_some_and(|v| v == "1") {
                panic!("{REQUIRE_KVM}=1 but KVM cannot be opened: {why}");
            }
            eprintln!("skipping: /dev/kvm not available ({why})");
            None
        }
    }
}

/// A finished run: the sandbox (for its memory and layout), how it ended,
/// and what the guest printed and kvmini warned about.
pub struct Finished {
    pub sandbox: Sandbox,
    pub outcome: Outcome,
    pub stdout: Vec<u8>,
    pub warnings: Vec<u8>,
}

impl Finished {
    /// The guest's output as text (tests only print ASCII).
    pub fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("guest output is UTF-8")
    }

    /// kvmini's warnings as text.
    pub fn warnings_text(&self) -> String {
        String::from_utf8(self.warnings.clone()).expect("warnings are UTF-8")
    }
}

/// Builds and runs `builder`, capturing the guest's output and the warnings.
pub fn run_config(kvm: &Kvm, builder: SandboxBuilder) -> Finished {
    let stdout = Capture::new();
    let warnings = Capture::new();
    let mut sandbox = builder
        .stdout(output::Output::Writer(stdout.writer()))
        .warnings(output::Output::Writer(warnings.writer()))
        .build(kvm)
        .expect("the sandbox is built");
    let outcome = sandbox.run().expect("the run loop does not fail");
    Finished {
        sandbox,
        outcome,
        stdout: stdout.contents(),
        warnings: warnings.contents(),
    }
}

/// Runs `image` at `ring` (`None`: the image kind's default) with the
/// default memory size.
pub fn run_image(kvm: &Kvm, image: Image, ring: Option<Ring>) -> Finished {
    let builder = Sandbox::builder().image(image);
    run_config(
        kvm,
        match ring {
            Some(ring) => builder.ring(ring),
            None => builder,
        },
    )
}

/// Checks a finished classic hello: its output, 14 console exits and one
/// `hlt`, 42 in (E)AX and at guest physical 0x400, RIP past the `hlt`.
pub fn assert_hello(run: &Finished, image: &[u8]) {
    assert_eq!(run.stdout_text(), "Hello, world!\n");
    assert_eq!(run.warnings_text(), "");
    assert_eq!(run.outcome.ending, kvmini::sandbox::Ending::Halted);
    let stats = &run.outcome.stats;
    assert_eq!(stats.exits, 15);
    assert_eq!(
        (stats.io_exits, stats.hlt_exits, stats.other_exits),
        (14, 1, 0)
    );
    assert_eq!(
        stats.by_hypercall,
        by_hypercall(&[(kvmini_abi::Port::Console, 14)])
    );
    assert_eq!(run.outcome.regs.rax, 42);
    assert_eq!(run.outcome.regs.rip, image.len() as u64);
    let answer: u64 = run
        .sandbox
        .memory()
        .expect("the sandbox has its VM")
        .read_obj(vm_memory::GuestAddress(0x400))
        .expect("0x400 is guest memory");
    assert_eq!(answer, 42);
}

/// An error and its sources on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        line = format!("{line}: {e}");
        source = e.source();
    }
    line
}

/// Text of a captured stream.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

/// Counts by hypercall, indexed like `kvmini_abi::Port::ALL`, from
/// `(port, count)` pairs; ports not named count 0.
pub fn by_hypercall(counts: &[(kvmini_abi::Port, u64)]) -> [u64; kvmini_abi::Port::ALL.len()] {
    let mut all = [0; kvmini_abi::Port::ALL.len()];
    for (port, n) in counts {
        let i = kvmini_abi::Port::ALL
            .iter()
            .position(|p| p == port)
            .expect("every port is in Port::ALL");
        all[i] = *n;
    }
    all
}

/// Asserts `got` equals `want` line for line, naming the first line that
/// differs, then the line counts, then the whole texts.
pub fn assert_lines(got: &str, want: &str) {
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "line {}", i + 1);
    }
    assert_eq!(got.lines().count(), want.lines().count(), "{got}");
    assert_eq!(got, want);
}

/// What the built-in `hypercalls` guest prints, byte for byte.
pub const HYPERCALLS_STDOUT: &str = "\
printVal(2026) sends a 32-bit value in one `out`:
2026
getNumExits() returns the exits so far, this one included:
4
display() hands kvmini one 32-bit guest virtual address. kvmini walks
the guest's own page tables from CR3 to find each page of the string, and
prints it all, up to the NUL, in this one exit. This paragraph starts 200
bytes before a page boundary and ends on the next page.
getNumExits() before and after that display(): 6 and 8, so display cost 1 exit
";

/// What the built-in `files` guest prints on stdout in a fresh directory
/// (before its listing of the host directory, which names the path).
pub const FILES_STDOUT: &str = "\
opened /notes.txt as fd 3 and /squares.txt as fd 4
read 71 bytes back from /notes.txt:
kvmini keeps this file on the host.
line 1
line 2
line 3
line 4
line 5
pread at offset 0: \"kvmini keeps this file on the host.\"
/notes.txt is 71 bytes
moved /squares.txt to /reports/squares.txt (77 bytes)
ls /: notes.txt reports/
open /no-such-file: -2 (ENOENT)
create the existing /notes.txt with O_EXCL: -17 (EEXIST)
open /../../etc/passwd: -2 (ENOENT) (.. stops at the granted root)
rmdir /reports: -39 (ENOTEMPTY)
batch: 8 writes, 40 bytes to /batch.txt, in 1 exit
";
