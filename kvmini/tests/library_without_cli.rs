//! The library knows nothing of the command line: the KVM device is the
//! embedding program's choice (no environment variable is read), trace
//! lines go to the writer it gives, the builder checks what needs no KVM
//! and says what is wrong with typed errors, and no error names an option
//! of the `kvmini` command.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::kvm_or_skip;
use kvmini::cpu::Ring;
use kvmini::grant::{GrantError, GrantSpec};
use kvmini::guests;
use kvmini::kvm::{Kvm, KvmError};
use kvmini::loader::LoaderError;
use kvmini::modes::{CpuMode, ModeError};
use kvmini::output::{Capture, Output};
use kvmini::sandbox::{BuildError, Ending, Sandbox, SandboxError, Unserved};
use kvmini::seccomp::SeccompError;

// ---------------------------------------------------------------------
// The KVM device.

#[test]
fn a_kvm_device_that_does_not_exist_is_a_typed_error_naming_it() {
    for path in ["/nonexistent/kvm", "/dev/kvmini-no-such-device"] {
        match Kvm::open_path(Path::new(path)) {
            Err(KvmError::Missing(named)) => assert_eq!(named, PathBuf::from(path)),
            other => panic!("{path}: {other:?}"),
        }
        assert_eq!(
            KvmError::Missing(PathBuf::from(path)).to_string(),
            format!(
                "{path} does not exist: this machine has no KVM (enable hardware \
                 virtualization, or load the kvm module)"
            )
        );
    }
}

#[test]
fn a_kvm_device_that_is_not_kvm_is_a_typed_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-kvm");
    std::fs::write(&file, b"").expect("write");
    for path in [Path::new("/dev/null"), file.as_path()] {
        match Kvm::open_path(path) {
            Err(KvmError::ApiVersion { path: named, .. }) => assert_eq!(named, path),
            other => panic!("{}: {other:?}", path.display()),
        }
    }
    match Kvm::open_path(Path::new("/dev/kvm\0x")) {
        Err(KvmError::Open { path, source }) => {
            assert_eq!(path, PathBuf::from("/dev/kvm\0x"));
            assert_eq!(source.kind(), io::ErrorKind::InvalidInput);
        }
        other => panic!("a path with a NUL: {other:?}"),
    }
}

/// The variable the `kvmini` command reads; the library must not.
const DEVICE_ENV: &str = "KVMINI_KVM_DEVICE";

/// Run in a child process whose environment names a device that does not
/// exist (`the_library_reads_no_environment_variable_for_the_device`).
#[test]
#[ignore = "run by the_library_reads_no_environment_variable_for_the_device"]
fn child_opens_kvm_with_the_variable_set() {
    assert_eq!(
        std::env::var_os(DEVICE_ENV).as_deref(),
        Some(std::ffi::OsStr::new("/nonexistent/kvm"))
    );
    let kvm = Kvm::open().expect("Kvm::open opens /dev/kvm whatever the environment says");
    assert_eq!(kvm.path(), Path::new("/dev/kvm"));
}

#[test]
fn the_library_reads_no_environment_variable_for_the_device() {
    if kvm_or_skip().is_none() {
        return;
    }
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "child_opens_kvm_with_the_variable_set",
            "--ignored",
            "--test-threads=1",
        ])
        .env(DEVICE_ENV, "/nonexistent/kvm")
        .output()
        .expect("the test binary starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");
}

// ---------------------------------------------------------------------
// Trace lines.

/// A flat ring-3 guest: `mov al, 'A'; out 0xE9, al; mov dx, 0x404;
/// out dx, al` (console, then the halt hypercall).
const TRACED: &[u8] = &[
    0xB0, b'A', // 0: mov al, 'A'
    0xE6, 0xE9, // 2: out 0xE9, al
    0x66, 0xBA, 0x04, 0x04, // 4: mov dx, 0x404
    0xEE, // 8: out dx, al
];

/// The trace of [`TRACED`]: each hypercall by name with its argument,
/// and how the run ended.
const TRACE_LINES: &str = "\
console('A')
halt() = ?
+++ halted +++
";

/// Runs [`TRACED`] with its trace going to `trace`; returns how it ended,
/// its exit count and what it printed.
fn run_traced(kvm: &Kvm, trace: Output) -> (Ending, u64, Vec<u8>) {
    let stdout = Capture::new();
    let mut sandbox = Sandbox::builder()
        .flat(TRACED)
        .ring(Ring::Three)
        .memory(2 << 20)
        .stdout(Output::Capture(stdout.clone()))
        .trace(trace)
        .build(kvm)
        .expect("the sandbox is built");
    let outcome = sandbox.run().expect("the run loop does not fail");
    (outcome.ending, outcome.stats.exits, stdout.contents())
}

/// A writer that keeps what it is given, shared with the test.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that fails every write with `kind`, counting the attempts.
struct Failing {
    kind: io::ErrorKind,
    attempts: Arc<Mutex<u32>>,
}

impl Write for Failing {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        *self.attempts.lock().expect("not poisoned") += 1;
        Err(self.kind.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        Err(self.kind.into())
    }
}

#[test]
fn the_trace_goes_to_the_writer_the_embedder_gives() {
    let Some(kvm) = kvm_or_skip() else { return };
    let capture = Capture::new();
    let run = run_traced(&kvm, Output::Capture(capture.clone()));
    assert_eq!(run, (Ending::Halted, 2, b"A".to_vec()));
    assert_eq!(String::from_utf8_lossy(&capture.contents()), TRACE_LINES);

    let shared = Shared::default();
    let run = run_traced(&kvm, Output::Writer(Box::new(shared.clone())));
    assert_eq!(run, (Ending::Halted, 2, b"A".to_vec()));
    let written = shared.0.lock().expect("not poisoned").clone();
    assert_eq!(String::from_utf8_lossy(&written), TRACE_LINES);

    // No trace: the run is the same.
    assert_eq!(
        run_traced(&kvm, Output::Null),
        (Ending::Halted, 2, b"A".to_vec())
    );
}

#[test]
fn a_trace_writer_that_fails_changes_nothing_in_the_run() {
    let Some(kvm) = kvm_or_skip() else { return };
    for kind in [
        io::ErrorKind::BrokenPipe,
        io::ErrorKind::StorageFull,
        io::ErrorKind::Other,
        io::ErrorKind::WriteZero,
    ] {
        let attempts = Arc::new(Mutex::new(0));
        let writer = Failing {
            kind,
            attempts: attempts.clone(),
        };
        let run = run_traced(&kvm, Output::Writer(Box::new(writer)));
        assert_eq!(run, (Ending::Halted, 2, b"A".to_vec()), "{kind:?}");
        // One attempt a line: two hypercalls and the end.
        assert_eq!(*attempts.lock().expect("not poisoned"), 3, "{kind:?}");
    }
}

// ---------------------------------------------------------------------
// What the builder checks without KVM.

/// The `BuildError` of `check()`, which needs no KVM.
fn check_error(builder: kvmini::sandbox::SandboxBuilder) -> BuildError {
    builder.check().expect_err("check refuses it")
}

#[test]
fn check_refuses_modes_rings_and_images_that_do_not_go_together() {
    for mode in [
        CpuMode::Real,
        CpuMode::Protected,
        CpuMode::Paged32,
        CpuMode::Pae32,
    ] {
        let ring3 = Sandbox::builder()
            .flat(guests::HELLO_32)
            .mode(mode)
            .ring(Ring::Three);
        assert!(matches!(
            check_error(ring3),
            BuildError::Sandbox(SandboxError::Mode(ModeError::RingThree(m))) if m == mode
        ));
        let elf = Sandbox::builder().elf(kvmini::guests::HELLO.elf).mode(mode);
        assert!(matches!(
            check_error(elf),
            BuildError::Sandbox(SandboxError::Mode(ModeError::NotFlat(m))) if m == mode
        ));
        // The mode is checked before the file is read.
        let missing = Sandbox::builder()
            .elf_file("/nonexistent/guest.elf")
            .mode(mode);
        assert!(matches!(
            check_error(missing),
            BuildError::Sandbox(SandboxError::Mode(ModeError::NotFlat(_)))
        ));
        assert!(Sandbox::builder()
            .flat(guests::HELLO_32)
            .mode(mode)
            .check()
            .is_ok());
    }
}

#[test]
fn check_refuses_memory_files_and_images_with_typed_errors() {
    for size in [0, 1 << 20, 3 << 20, 8 << 30] {
        let builder = Sandbox::builder()
            .elf(kvmini::guests::HELLO.elf)
            .memory(size);
        assert!(
            matches!(
                check_error(builder),
                BuildError::Sandbox(SandboxError::Memory(_))
            ),
            "{size}"
        );
    }
    match check_error(Sandbox::builder().elf_file("/nonexistent/guest.elf")) {
        BuildError::ReadImage { path, source } => {
            assert_eq!(path, PathBuf::from("/nonexistent/guest.elf"));
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let not_elf = dir.path().join("not.elf");
    std::fs::write(&not_elf, b"#!/bin/sh\necho hello\n").expect("write");
    assert!(matches!(
        check_error(Sandbox::builder().elf_file(&not_elf)),
        BuildError::Sandbox(SandboxError::Loader(LoaderError::NotElf))
    ));
    assert!(matches!(
        check_error(Sandbox::builder().elf(b"#!/bin/sh\n".to_vec())),
        BuildError::Sandbox(SandboxError::Loader(LoaderError::NotElf))
    ));
    assert!(matches!(
        check_error(Sandbox::builder()),
        BuildError::NoImage
    ));
    // The same bytes as a flat image are not parsed.
    assert!(Sandbox::builder().flat_file(&not_elf).check().is_ok());
}

#[test]
fn check_reads_the_guest_file_once() {
    let Some(kvm) = kvm_or_skip() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hello.elf");
    std::fs::write(&path, kvmini::guests::HELLO.elf).expect("write");
    let checked = Sandbox::builder()
        .elf_file(&path)
        .memory(8 << 20)
        .stdout(Output::Null)
        .check()
        .expect("hello is a good guest");
    std::fs::remove_file(&path).expect("remove");
    let mut sandbox = checked.build(&kvm).expect("built from the bytes read");
    assert_eq!(sandbox.run().expect("runs").ending, Ending::Halted);
}

// ---------------------------------------------------------------------
// Messages.

#[test]
fn library_errors_name_no_option_of_the_command_line() {
    let io_error = || io::Error::from_raw_os_error(libc::ENOENT);
    let messages = [
        GrantError::BadGuestPath {
            spec: "/tmp:data".to_owned(),
        }
        .to_string(),
        GrantSpec::parse("/tmp:rx")
            .expect_err("an unknown suffix")
            .to_string(),
        GrantError::Open {
            path: PathBuf::from("/gone"),
            source: io_error(),
        }
        .to_string(),
        GrantError::Duplicate("/d".to_owned()).to_string(),
        ModeError::RingThree(CpuMode::Pae32).to_string(),
        ModeError::NotFlat(CpuMode::Protected).to_string(),
        Unserved::ModeRefused(CpuMode::Pae32).to_string(),
        Unserved::InternalError {
            suberror: 1,
            ring: 0,
        }
        .to_string(),
        SeccompError::Install(seccompiler::Error::Prctl(io_error())).to_string(),
        LoaderError::SegmentPastWindow {
            start: 0x200_0000,
            end: 0x200_1000,
            win_start: 0x10_0000,
            win_end: 0x3f_0000,
        }
        .to_string(),
        LoaderError::FlatTooLarge {
            size: 0x20_0000,
            win_start: 0,
            win_end: 0x1f_0000,
        }
        .to_string(),
    ];
    assert_eq!(
        messages,
        [
            "grant /tmp:data: the guest path must be absolute, like /data",
            "grant /tmp:rx: unknown suffix :rx (a grant ends in :ro or :rw, and a guest path \
             is absolute, like HOST:/data)",
            "cannot open the granted host directory /gone",
            "guest path /d is granted twice",
            "ring 3 needs long mode: in pae32 mode the guest runs at ring 0",
            "protected mode runs flat images only: ELF guests are 64-bit and run in long mode",
            "this host's KVM refused to run pae32 mode (32-bit protected mode with PAE paging): \
             KVM_EXIT_SHUTDOWN before the first instruction completed (0 exits served)",
            "KVM_EXIT_INTERNAL_ERROR (suberror 1): KVM could not handle an exit; at ring 0 on \
             nested KVM (kvm-pvm) guest code runs in KVM's instruction emulator, which has no \
             SSE arithmetic: run the guest at ring 3",
            "cannot install the seccomp filter",
            "segment 0x2000000..0x2001000 does not fit in guest memory: allowed 0x100000..0x3f0000",
            "flat image of 0x200000 bytes does not fit in guest memory: allowed 0x0..0x1f0000",
        ]
    );
    for message in &messages {
        assert!(!message.contains("--"), "{message}");
    }
}
