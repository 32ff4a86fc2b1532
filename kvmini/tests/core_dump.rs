//! Core files from the library (`Sandbox::write_core`): a C SDK guest and
//! a musl Linux program that crash three calls deep, opened by a real gdb
//! in batch mode and read by readelf; and no core where there is no crash.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::core_files::{
    assert_gdb_shows_the_crash, deep_c_guest, deep_c_guest_with, deep_linux_program, gdb_batch,
    gdb_or_skip,
};
use common::{kvm_or_skip, run_config, Finished};
use kvmini::core_dump::CoreError;
use kvmini::layout::Layout;
use kvmini::memory::MEM_DEFAULT;
use kvmini::sandbox::{Crash, Ending, Sandbox};

/// Runs `elf` (with `args`), which must crash, and writes its core to
/// `core`.
fn crash_with_core(elf: &Path, args: &[&str], core: &Path) -> Option<(Finished, Crash)> {
    let kvm = kvm_or_skip()?;
    let builder = Sandbox::builder()
        .elf(std::fs::read(elf).unwrap())
        .args(args);
    let mut run = run_config(&kvm, builder);
    let Ending::Crashed(crash) = run.outcome.ending.clone() else {
        panic!("expected a crash, got {:?}", run.outcome.ending);
    };
    let mut file = std::fs::File::create(core).unwrap();
    let summary = run
        .sandbox
        .write_core(&run.outcome, elf.as_os_str().as_encoded_bytes(), &mut file)
        .unwrap();
    assert!(summary.left_out.is_empty(), "{summary:?}");
    assert_eq!(std::fs::metadata(core).unwrap().len(), summary.file_bytes);
    Some((run, crash))
}

/// The crash report's frames: the faulting RIP and the return addresses
/// into second_level, first_level and main.
fn reported_frames(crash: &Crash) -> [u64; 4] {
    let frames = &crash.backtrace.as_ref().expect("a backtrace").frames;
    [0, 1, 2, 3].map(|n| frames[n].address)
}

#[test]
fn gdb_opens_the_core_of_a_c_guest_at_the_faulting_function() {
    let dir = tempfile::tempdir().unwrap();
    let elf = deep_c_guest(dir.path());
    let core = dir.path().join("deep.core");
    let Some((_, crash)) = crash_with_core(&elf, &[], &core) else {
        return;
    };
    if gdb_or_skip() {
        assert_gdb_shows_the_crash(&gdb_batch(&elf, &core), reported_frames(&crash));
    }
}

#[test]
fn gdb_opens_the_core_of_a_linux_program_at_the_faulting_function() {
    let dir = tempfile::tempdir().unwrap();
    let elf = deep_linux_program(dir.path());
    let core = dir.path().join("deep_linux.core");
    let Some((run, crash)) = crash_with_core(&elf, &["deep_linux"], &core) else {
        return;
    };
    assert_eq!(run.stdout_text(), "crashing\n");
    if gdb_or_skip() {
        assert_gdb_shows_the_crash(&gdb_batch(&elf, &core), reported_frames(&crash));
    }
}

/// A guest that used AVX has its YMM registers in the core
/// (`NT_X86_XSTATE`), where gdb reads them. Needs a host CPU with AVX:
/// the guest's ring-3 code runs on it.
#[test]
fn gdb_reads_the_avx_registers_of_a_core() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    if !cpuinfo.split_whitespace().any(|flag| flag == "avx") {
        eprintln!("skipping: this host's CPU has no AVX, which the guest would use");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let elf = deep_c_guest_with(dir.path(), &["-DSET_YMM1"]);
    let core = dir.path().join("deep.core");
    if crash_with_core(&elf, &[], &core).is_none() || !gdb_or_skip() {
        return;
    }
    let out = Command::new("gdb")
        .args(["-nx", "-batch", "-ex", "print/x $ymm1.v4_int64"])
        .args(["-ex", "print/x $xmm0.v2_int64[0]"])
        .args(["-ex", "print/x $mxcsr"])
        .arg(&elf)
        .arg(&core)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    let values: Vec<&str> = shown.lines().filter(|l| l.starts_with('$')).collect();
    assert_eq!(
        values,
        [
            "$1 = {0x1111, 0x2222, 0x3333, 0x4444}",
            "$2 = 0x1122334455667788",
            "$3 = 0x1f80"
        ],
        "{shown}"
    );
}

/// readelf (binutils) reads the notes and the load segments as the guest
/// has them mapped: below the image (the null page and the supervisor-only
/// spare page tables left out), code r-x, rodata r--, data and free memory
/// rw- up to the stack guard, then the stack; kvmini's area, which a ring-3
/// guest cannot read, is left out.
#[test]
fn readelf_reads_the_notes_and_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let elf = deep_c_guest(dir.path());
    let core = dir.path().join("deep.core");
    if crash_with_core(&elf, &[], &core).is_none() {
        return;
    }
    let out = Command::new("readelf")
        .args(["-W", "-n", "-l"])
        .arg(&core)
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success());
    let shown = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = shown
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let notes: Vec<&str> = rows
        .iter()
        .filter(|r| r.first() == Some(&"CORE"))
        .map(|r| r[2])
        .collect();
    assert_eq!(
        notes,
        [
            "NT_PRSTATUS",
            "NT_PRPSINFO",
            "NT_SIGINFO",
            "NT_AUXV",
            "NT_FPREGSET"
        ]
    );
    let top = Layout::new(MEM_DEFAULT).system_base;
    let loads: Vec<&Vec<&str>> = rows.iter().filter(|r| r.first() == Some(&"LOAD")).collect();
    let row = |offset: u64, start: u64, size: u64, flags: &[&'static str]| {
        let mut row = vec![
            "LOAD".to_string(),
            format!("{offset:#08x}"),
            format!("{start:#018x}"),
            format!("{:#018x}", 0),
            format!("{size:#08x}"),
            format!("{size:#08x}"),
        ];
        row.extend(flags.iter().map(|f| f.to_string()));
        row.push("0x1000".to_string());
        row
    };
    let stack = top - 0x10_0000;
    let guard = stack - 0x1_0000;
    let data = 0x10_2000;
    let expected = [
        row(0x1000, 0x1000, 0xef000, &["RW"]),
        row(0xf0000, 0x10_0000, 0x1000, &["R", "E"]),
        row(0xf1000, 0x10_1000, 0x1000, &["R"]),
        row(0xf2000, data, guard - data, &["RW"]),
        row(0xf2000 + guard - data, stack, top - stack, &["RW"]),
    ];
    let loads: Vec<Vec<String>> = loads
        .iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(loads, expected, "{shown}");
}

/// Only a crash has a core: not a run that exited, nor a crash the
/// sandbox was reset from.
#[test]
fn there_is_no_core_without_a_crash() {
    let Some(kvm) = kvm_or_skip() else {
        return;
    };
    let mut run = run_config(&kvm, Sandbox::builder().elf(kvmini::guests::HELLO.elf));
    let mut out = Vec::new();
    let err = run
        .sandbox
        .write_core(&run.outcome, b"hello", &mut out)
        .unwrap_err();
    assert!(matches!(err, CoreError::NoCrash), "{err:?}");
    assert!(out.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let elf = deep_c_guest(dir.path());
    let mut run = run_config(
        &kvm,
        Sandbox::builder()
            .elf(std::fs::read(&elf).unwrap())
            .reusable(true),
    );
    assert!(matches!(run.outcome.ending, Ending::Crashed(_)));
    run.sandbox.reset().unwrap();
    let err = run
        .sandbox
        .write_core(&run.outcome, b"deep", &mut out)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "there is no crash to write a core of (the run did not crash, or the sandbox was reset since)"
    );
    assert!(out.is_empty());
}

/// The core of a ring-0 flat guest that executes `ud2` at 0: SIGILL at RIP
/// 0, and all of guest memory in one segment, kvmini's area included (the
/// guest could read it).
#[test]
fn a_ring_0_guest_core_holds_all_its_memory_and_sigill() {
    let Some(kvm) = kvm_or_skip() else {
        return;
    };
    let mut run = run_config(
        &kvm,
        Sandbox::builder().image(kvmini::sandbox::Image::Flat(vec![0x0F, 0x0B])),
    );
    let Ending::Crashed(crash) = &run.outcome.ending else {
        panic!("expected a crash, got {:?}", run.outcome.ending);
    };
    assert_eq!((crash.vector, crash.rip, crash.ring), (6, 0, 0));
    let mut core = Vec::new();
    let summary = run
        .sandbox
        .write_core(&run.outcome, b"ud2", &mut core)
        .unwrap();
    assert_eq!(
        (
            summary.segments,
            summary.memory_bytes,
            summary.aliased_pages
        ),
        (1, MEM_DEFAULT, 0)
    );
    let word = |at: usize, n: usize| {
        let mut bytes = [0u8; 8];
        bytes[..n].copy_from_slice(&core[at..at + n]);
        u64::from_le_bytes(bytes)
    };
    // The load segment (the second program header): address 0, all of
    // memory, read, write and execute.
    let load = 64 + 56;
    assert_eq!(
        [
            word(load, 4),
            word(load + 4, 4),
            word(load + 16, 8),
            word(load + 40, 8)
        ],
        [1, 7, 0, MEM_DEFAULT]
    );
    // The first note, NT_PRSTATUS: its contents follow the 12-byte header
    // and "CORE\0" padded to 8 bytes.
    let notes = usize::try_from(word(64 + 8, 8)).unwrap();
    assert_eq!(word(notes + 8, 4), 1, "NT_PRSTATUS");
    let prstatus = notes + 20;
    let sigill = u64::try_from(libc::SIGILL).unwrap();
    assert_eq!(word(prstatus, 4), sigill, "si_signo");
    assert_eq!(word(prstatus + 12, 2), sigill, "pr_cursig");
    // RIP, the 17th register of user_regs_struct.
    assert_eq!(word(prstatus + 112 + 16 * 8, 8), 0);
}
