//! `kvmini run --core FILE`: the core of a crashed guest, which gdb opens
//! at the crash the report names; nothing written without a crash; FILE
//! replaced only by a whole core, with mode 0600; a FILE that cannot be
//! written is an error message, and the status stays the crash's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use common::core_files::{
    assert_gdb_shows_the_crash, deep_c_guest, deep_linux_program, gdb_batch, gdb_or_skip,
};
use common::{kvm_or_skip, kvmini, text};

fn run_with_core(core: &Path, elf: &Path) -> Output {
    kvmini()
        .arg("run")
        .arg("--core")
        .arg(core)
        .arg(elf)
        .output()
        .expect("kvmini starts")
}

/// The faulting RIP and the first three return addresses of the crash
/// report on kvmini's stderr.
fn reported_frames(stderr: &str) -> [u64; 4] {
    let address = |n: usize| {
        let line = stderr
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("#{n} ")))
            .unwrap_or_else(|| panic!("no frame #{n} in:\n{stderr}"));
        let word = line.split_whitespace().nth(1).unwrap();
        u64::from_str_radix(word.trim_start_matches("0x"), 16).unwrap()
    };
    let rip = address(0);
    assert!(
        stderr.contains(&format!("at rip {rip:#x} (third_level+")),
        "{stderr}"
    );
    [rip, address(1), address(2), address(3)]
}

/// The line that says where the core of the C guest went: the default
/// memory less the null page, the spare page tables, the stack guard and
/// kvmini's own area, in five segments (below the image, code, rodata,
/// data to the guard, the stack).
fn written_line(core: &Path) -> String {
    written_line_of(core, "5 segments, 65340 KiB")
}

fn written_line_of(core: &Path, segments: &str) -> String {
    format!(
        "kvmini: core file written to {} ({segments} of guest memory)",
        core.display()
    )
}

/// Runs `elf` with and without `--core`: the same status, the crash's
/// (`status`), and the same report, then the line that says where the core
/// went.
fn assert_core_of_crash(elf: &Path, core: &Path, status: i32, written: &str) {
    let plain = kvmini().arg("run").arg(elf).output().unwrap();
    assert_eq!(plain.status.code(), Some(status));
    let out = run_with_core(core, elf);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), plain.status.code(), "{stderr}");
    assert_eq!(stderr, format!("{}{written}\n", text(&plain.stderr)));
    let mode = std::fs::metadata(core).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    if gdb_or_skip() {
        assert_gdb_shows_the_crash(&gdb_batch(elf, core), reported_frames(&stderr));
    }
}

#[test]
fn a_crashed_c_guest_leaves_a_core_that_gdb_opens() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let elf = deep_c_guest(dir.path());
    let core = dir.path().join("deep.core");
    assert_core_of_crash(&elf, &core, 126, &written_line(&core));
}

#[test]
fn a_crashed_linux_program_leaves_a_core_that_gdb_opens() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let elf = deep_linux_program(dir.path());
    let core = dir.path().join("linux.core");
    assert_core_of_crash(
        &elf,
        &core,
        139,
        &written_line_of(&core, "8 segments, 64380 KiB"),
    );
}

/// An existing FILE (here readable by all) stays as it is when the guest
/// does not crash, and is replaced by a core with mode 0600 when it does;
/// no other file is left beside it.
#[test]
fn an_existing_file_is_replaced_only_on_a_crash() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hello = dir.path().join("hello");
    std::fs::write(&hello, kvmini::guests::HELLO.elf).unwrap();
    let core = dir.path().join("old.core");
    std::fs::write(&core, b"an older file").unwrap();
    std::fs::set_permissions(&core, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_with_core(&core, &hello);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "Hello, world!\n");
    assert_eq!(text(&out.stderr), "");
    assert_eq!(std::fs::read(&core).unwrap(), b"an older file");

    let elf = deep_c_guest(dir.path());
    let out = run_with_core(&core, &elf);
    assert_eq!(out.status.code(), Some(126));
    assert_eq!(
        text(&out.stderr).lines().last(),
        Some(written_line(&core).as_str())
    );
    let bytes = std::fs::read(&core).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([bytes[16], bytes[17]]), 4, "ET_CORE");
    let mode = std::fs::metadata(&core).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["deep", "hello", "old.core"]);
}

/// A FILE that cannot be written (its directory does not exist, or it is
/// a directory) is a message naming it and why; the status is still the
/// crash's, and nothing is left behind.
#[test]
fn a_file_that_cannot_be_written_is_an_error_and_the_status_stays() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let elf = deep_c_guest(dir.path());
    let missing = dir.path().join("no-such-dir/deep.core");
    let out = run_with_core(&missing, &elf);
    assert_eq!(out.status.code(), Some(126));
    let partial = dir
        .path()
        .join("no-such-dir/.deep.core.kvmini-")
        .display()
        .to_string();
    let last = text(&out.stderr).lines().last().unwrap().to_owned();
    assert!(
        last.starts_with(&format!(
            "kvmini: cannot write the core file {}: cannot create {partial}",
            missing.display()
        )) && last.ends_with(".partial: No such file or directory (os error 2)"),
        "{last}"
    );

    let a_dir = dir.path().join("a-dir");
    std::fs::create_dir(&a_dir).unwrap();
    let out = run_with_core(&a_dir, &elf);
    assert_eq!(out.status.code(), Some(126));
    let last = text(&out.stderr).lines().last().unwrap().to_owned();
    assert!(
        last.starts_with(&format!(
            "kvmini: cannot write the core file {}: cannot rename ",
            a_dir.display()
        )) && last.ends_with(" to it: Is a directory (os error 21)"),
        "{last}"
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a-dir", "deep"]);
    assert_eq!(std::fs::read_dir(&a_dir).unwrap().count(), 0);
}
