//! Bad command lines and bad guests, through the kvmini binary: each is
//! status 125 and, never a panic: a bad guest or option value is exactly
//! one line on stderr; a command line clap cannot parse is clap's whole
//! message (what is wrong, its tips, the usage line).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use common::elf::{self, EM_AARCH64, EM_X86_64, ET_DYN, ET_EXEC, PT_INTERP, PT_LOAD};
use common::{kvm_or_skip, text};
/// The environment variable that names the KVM device kvmini opens.
const DEVICE_ENV: &str = "KVMINI_KVM_DEVICE";

/// kvmini with a clean environment for what these tests check: the real
/// KVM device, and no backtrace setting (so that a panic would print its
/// `RUST_BACKTRACE` hint).
fn kvmini() -> Command {
    let mut cmd = common::kvmini();
    cmd.env_remove(DEVICE_ENV).env_remove("RUST_BACKTRACE");
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("kvmini starts")
}

/// Checks that `out` is one of kvmini's own errors and returns its line.
fn kvmini_error(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
    assert!(stderr.starts_with("kvmini: "), "{stderr}");
    assert!(stderr.ends_with('\n'), "{stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(text(&out.stdout), "");
    stderr.trim_end().to_owned()
}

/// Runs `kvmini ARGS` and returns its one error line.
fn error_line(args: &[&str]) -> String {
    kvmini_error(&output(kvmini().args(args)))
}

/// Runs `kvmini run GUEST` on a file holding `bytes` and returns its one
/// error line, with the file's path shown as `GUEST`. The image is checked
/// after KVM is opened, so this needs KVM.
fn run_bytes(bytes: &[u8]) -> Option<String> {
    kvm_or_skip()?;
    let dir = tempfile::tempdir().expect("temp dir");
    let guest = dir.path().join("guest.elf");
    fs::write(&guest, bytes).expect("write the guest");
    let line = kvmini_error(&output(kvmini().arg("run").arg(&guest)));
    Some(line.replace(guest.to_str().expect("temp paths are UTF-8"), "GUEST"))
}

/// A 64-byte ELF64 header with the given type and machine, entered at
/// 1 MiB, and `phnum` program headers right after it.
fn elf64_header(e_type: u16, machine: u16, phnum: u16) -> Vec<u8> {
    elf::header64(e_type, machine, 0x10_0000, phnum)
}

#[test]
fn missing_guest_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let guest = dir.path().join("no-such-guest.elf");
    let guest = guest.to_str().expect("temp paths are UTF-8");
    assert_eq!(
        error_line(&["run", guest]),
        format!("kvmini: cannot read guest {guest}: No such file or directory (os error 2)")
    );
}

#[test]
fn directory_as_guest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_str().expect("temp paths are UTF-8");
    assert_eq!(
        error_line(&["run", path]),
        format!("kvmini: guest {path} is a directory, not a guest image")
    );
}

#[test]
fn not_an_elf_file() {
    let Some(line) = run_bytes(b"#!/bin/sh\necho this is not a guest\n") else {
        return;
    };
    assert_eq!(
        line,
        "kvmini: GUEST: not an ELF file (to run a flat binary, add --flat)"
    );
}

#[test]
fn elf_32_bit() {
    // An i386 executable: its header, and one PT_LOAD program header.
    let mut elf = elf::header32(1);
    for word in [PT_LOAD, 0, 0x0804_8000, 0x0804_8000, 84, 84, 5, 0x1000] {
        // p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags, p_align
        elf.extend_from_slice(&word.to_le_bytes());
    }
    let Some(line) = run_bytes(&elf) else { return };
    assert_eq!(
        line,
        "kvmini: GUEST: 32-bit ELF: kvmini runs 64-bit (x86_64) guests"
    );
}

#[test]
fn elf_32_bit_header_alone() {
    let Some(line) = run_bytes(&elf::header32(0)) else {
        return;
    };
    assert_eq!(
        line,
        "kvmini: GUEST: 32-bit ELF: kvmini runs 64-bit (x86_64) guests"
    );
}

#[test]
fn elf_for_aarch64() {
    let mut elf = elf64_header(ET_EXEC, EM_AARCH64, 1);
    elf.extend(elf::phdr64(
        PT_LOAD,
        5,
        [0, 0x10_0000, 0x10_0000, 120, 120, 0x1000],
    ));
    let Some(line) = run_bytes(&elf) else { return };
    assert_eq!(
        line,
        "kvmini: GUEST: guest is built for machine 183 (aarch64): kvmini runs x86_64 (62) guests"
    );
}

#[test]
fn dynamically_linked_elf() {
    // A non-PIE executable that asks for an interpreter.
    const INTERP: &[u8] = b"/lib64/ld-linux-x86-64.so.2\0";
    const INTERP_AT: u64 = 64 + 2 * 56;
    const INTERP_LEN: u64 = INTERP.len() as u64;
    const LEN: u64 = INTERP_AT + INTERP_LEN;
    let mut elf = elf64_header(ET_EXEC, EM_X86_64, 2);
    let at = 0x10_0000 + INTERP_AT;
    elf.extend(elf::phdr64(
        PT_INTERP,
        4,
        [INTERP_AT, at, at, INTERP_LEN, INTERP_LEN, 1],
    ));
    elf.extend(elf::phdr64(
        PT_LOAD,
        5,
        [0, 0x10_0000, 0x10_0000, LEN, LEN, 0x1000],
    ));
    elf.extend_from_slice(INTERP);
    let Some(line) = run_bytes(&elf) else { return };
    assert_eq!(
        line,
        "kvmini: GUEST: dynamically linked: kvmini runs static programs (link with -static)"
    );
}

#[test]
fn position_independent_elf() {
    // A shared object (entry point 0); a static PIE runs as a Linux program.
    let mut elf = elf::header64(ET_DYN, EM_X86_64, 0, 1);
    elf.extend(elf::phdr64(PT_LOAD, 5, [0, 0, 0, 120, 120, 0x1000]));
    let Some(line) = run_bytes(&elf) else { return };
    assert_eq!(
        line,
        "kvmini: GUEST: position-independent executable (static PIE) or shared object: \
         kvmini runs executables linked at a fixed address; link the guest with -static -no-pie"
    );
}

#[test]
fn host_program_is_refused() {
    // A host program asks for the dynamic loader (PT_INTERP), PIE or not;
    // the new_user tests also build a static PIE and a non-PIE program.
    let host = Path::new("/bin/true");
    if !host.exists() {
        eprintln!("skipping: no /bin/true on this host");
        return;
    }
    if kvm_or_skip().is_none() {
        return;
    }
    let line = kvmini_error(&output(kvmini().arg("run").arg(host)));
    assert_eq!(
        line,
        "kvmini: /bin/true: dynamically linked: kvmini runs static programs (link with -static)"
    );
}

/// `kvmini run --mem SIZE GUEST` on an existing file; the size is checked
/// before the image and before KVM is opened.
fn mem_error(size: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let guest = dir.path().join("guest.elf");
    fs::write(&guest, b"unused").expect("write the guest");
    kvmini_error(&output(kvmini().args(["run", "--mem", size]).arg(&guest)))
}

#[test]
fn mem_zero() {
    assert_eq!(
        mem_error("0"),
        "kvmini: guest memory of 0 bytes is not allowed: the minimum is 2 MiB"
    );
}

#[test]
fn mem_too_large() {
    assert_eq!(
        mem_error("5G"),
        "kvmini: guest memory of 5 GiB is not allowed: the maximum is 4 GiB"
    );
}

#[test]
fn mem_not_a_number() {
    assert_eq!(
        mem_error("abc"),
        "kvmini: invalid size \"abc\": expected a number with an optional K, M or G suffix, e.g. 64M"
    );
}

#[test]
fn mem_not_a_multiple_of_2_mib() {
    assert_eq!(
        mem_error("3M"),
        "kvmini: guest memory of 3 MiB is not allowed: it must be a multiple of 2 MiB"
    );
}

/// Runs `kvmini ARGS`, which clap refuses, and returns all of stderr.
fn usage_error(args: &[&str]) -> String {
    let out = output(kvmini().args(args));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {stderr}");
    assert_eq!(text(&out.stdout), "");
    stderr
}

#[test]
fn unknown_flag() {
    assert_eq!(
        usage_error(&["--bogus"]),
        "kvmini: unexpected argument '--bogus' found\n\
         \n\
         Usage: kvmini [COMMAND]\n\
         \n\
         For more information, try '--help'.\n"
    );
    assert_eq!(
        usage_error(&["run", "--bogus", "guest.elf"]),
        "kvmini: unexpected argument '--bogus' found\n\
         \n  \
         tip: to pass '--bogus' as a value, use '-- --bogus'\n\
         \n\
         Usage: kvmini run [OPTIONS] <GUEST> [-- <ARGS>...]\n\
         \n\
         For more information, try '--help'.\n"
    );
}

#[test]
fn misspelt_flag_gets_its_suggestion() {
    assert_eq!(
        usage_error(&["run", "--memory", "16M", "guest.elf"]),
        "kvmini: unexpected argument '--memory' found\n\
         \n  \
         tip: a similar argument exists: '--mem'\n  \
         tip: to pass '--memory' as a value, use '-- --memory'\n\
         \n\
         Usage: kvmini run --mem <SIZE> <GUEST> [-- <ARGS>...]\n\
         \n\
         For more information, try '--help'.\n"
    );
    assert_eq!(
        usage_error(&["demo", "--lst"]),
        "kvmini: unexpected argument '--lst' found\n\
         \n  \
         tip: a similar argument exists: '--list'\n\
         \n\
         Usage: kvmini demo --list [NAME]\n\
         \n\
         For more information, try '--help'.\n"
    );
}

#[test]
fn missing_guest_is_named() {
    assert_eq!(
        usage_error(&["run"]),
        "kvmini: the following required arguments were not provided:\n  \
         <GUEST>\n\
         \n\
         Usage: kvmini run <GUEST> [-- <ARGS>...]\n\
         \n\
         For more information, try '--help'.\n"
    );
}

#[test]
fn guest_arguments_need_the_separator() {
    assert_eq!(
        usage_error(&["run", "guest.elf", "--verbos"]),
        "kvmini: unexpected argument '--verbos' found\n\
         \n  \
         tip: a similar argument exists: '--verbose'\n  \
         tip: to pass '--verbos' as a value, use '-- --verbos'\n\
         \n\
         Usage: kvmini run --verbose <GUEST> [-- <ARGS>...]\n\
         \n\
         For more information, try '--help'.\n"
    );
    assert_eq!(
        usage_error(&["run", "guest.elf", "first"]),
        "kvmini: unexpected argument 'first' found\n\
         \n\
         Usage: kvmini run [OPTIONS] <GUEST> [-- <ARGS>...]\n\
         \n\
         For more information, try '--help'.\n"
    );
}

#[test]
fn ring_1() {
    for ring in ["1", "2"] {
        assert_eq!(
            usage_error(&["run", "--ring", ring, "guest.elf"]),
            format!(
                "kvmini: invalid value '{ring}' for '--ring <RING>'\n  \
                 [possible values: 0, 3]\n\
                 \n\
                 For more information, try '--help'.\n"
            )
        );
    }
}

#[test]
fn option_without_its_value() {
    assert_eq!(
        usage_error(&["run", "guest.elf", "--mem"]),
        "kvmini: a value is required for '--mem <SIZE>' but none was supplied\n\
         \n\
         For more information, try '--help'.\n"
    );
}

#[test]
fn unknown_command() {
    assert_eq!(
        usage_error(&["rnu", "guest.elf"]),
        "kvmini: unrecognized subcommand 'rnu'\n\
         \n\
         Usage: kvmini [COMMAND]\n\
         \n\
         For more information, try '--help'.\n"
    );
}

#[test]
fn unknown_demo() {
    assert_eq!(
        error_line(&["demo", "nosuch"]),
        "kvmini: no built-in guest named \"nosuch\" (kvmini demo --list shows them)"
    );
}

#[test]
fn kvm_missing() {
    let line = kvmini_error(&output(
        kvmini()
            .args(["demo", "hello"])
            .env(DEVICE_ENV, "/nonexistent/kvm"),
    ));
    assert_eq!(
        line,
        "kvmini: /nonexistent/kvm does not exist: this machine has no KVM \
         (enable hardware virtualization, or load the kvm module)"
    );
}

#[test]
fn kvm_device_that_is_not_kvm() {
    let line = kvmini_error(&output(
        kvmini()
            .args(["demo", "hello"])
            .env(DEVICE_ENV, "/dev/null"),
    ));
    assert_eq!(
        line,
        "kvmini: /dev/null is not a usable KVM device (API version -1, expected 12)"
    );
}

#[test]
fn kvm_not_permitted() {
    // A device file nobody may open. Root opens it regardless of its mode,
    // so as root kvmini runs as the unprivileged user 65534 (nobody).
    let dir = tempfile::tempdir().expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let device = dir.path().join("kvm");
    fs::write(&device, b"").expect("create the device file");
    fs::set_permissions(&device, fs::Permissions::from_mode(0o000)).expect("chmod 000");
    let as_root = fs::metadata(&device).expect("stat").uid() == 0;

    let mut cmd = kvmini();
    cmd.args(["demo", "hello"]).env(DEVICE_ENV, &device);
    if as_root {
        cmd.uid(65534).gid(65534);
    }
    let line = kvmini_error(&output(&mut cmd));
    assert_eq!(
        line,
        format!(
            "kvmini: permission denied opening {}: add your user to the kvm group \
             (sudo usermod -aG kvm $USER, then log in again) or run as root",
            device.display()
        )
    );
}

#[test]
fn help_and_version_succeed() {
    let help = output(kvmini().arg("--help"));
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("Usage: kvmini [COMMAND]"));
    assert_eq!(text(&help.stderr), "");

    let version = output(kvmini().arg("--version"));
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        text(&version.stdout),
        format!("kvmini {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(text(&version.stderr), "");
}

#[test]
fn segment_beyond_mem() {
    // A valid static ELF whose one segment sits at 32 MiB, run with 4 MiB.
    let mut elf = elf64_header(ET_EXEC, EM_X86_64, 1);
    elf.extend(elf::phdr64(
        PT_LOAD,
        5,
        [0, 0x200_0000, 0x200_0000, 120, 0x1000, 0x1000],
    ));
    // The entry must be inside the executable segment.
    elf[24..32].copy_from_slice(&0x200_0000u64.to_le_bytes());
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let guest = dir.path().join("guest.elf");
    fs::write(&guest, &elf).expect("write the guest");
    let line = kvmini_error(&output(kvmini().args(["run", "--mem", "4M"]).arg(&guest)));
    assert_eq!(
        line,
        format!("kvmini: {}: segment 0x2000000..0x2001000 does not fit in guest memory: allowed 0x100000..0x3f0000 (raise --mem)", guest.display())
    );
}

/// `kvmini run ARGS... GUEST` on an existing (unused) file: the options are
/// checked before the image and before KVM is opened.
fn option_error(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let guest = dir.path().join("guest.elf");
    fs::write(&guest, b"unused").expect("write the guest");
    kvmini_error(&output(kvmini().arg("run").args(args).arg(&guest)))
}

#[test]
fn dir_that_does_not_exist() {
    assert_eq!(
        option_error(&["--dir", "/nonexistent/kvmini-dir"]),
        "kvmini: --dir /nonexistent/kvmini-dir: no such directory"
    );
}

#[test]
fn dir_that_is_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("file");
    fs::write(&file, b"x").expect("write");
    let spec = file.to_str().expect("utf-8 path").to_owned();
    assert_eq!(
        option_error(&["--dir", &spec]),
        format!("kvmini: --dir {spec}: not a directory")
    );
}

#[test]
fn dir_with_a_relative_guest_path() {
    assert_eq!(
        option_error(&["--dir", "/tmp:data"]),
        "kvmini: --dir /tmp:data: unknown suffix :data (a grant ends in :ro or :rw, \
         and a guest path is absolute, like HOST:/data)"
    );
    assert_eq!(
        option_error(&["--dir", ":/data"]),
        "kvmini: --dir :/data: the guest path must be absolute, like /data"
    );
}

#[test]
fn bad_timeouts() {
    for bad in ["-1", "0", "abc", "5x"] {
        assert_eq!(
            option_error(&["--timeout", bad]),
            format!(
                "kvmini: invalid duration \"{bad}\": expected a positive number with a unit, e.g. 500ms, 5s, 2m, 1h"
            )
        );
    }
}

#[test]
fn max_fds_out_of_range() {
    assert_eq!(
        usage_error(&["run", "--max-fds", "2", "guest.elf"]),
        "kvmini: invalid value '2' for '--max-fds <N>': 2 is not in 3..=65536\n\
         \n\
         For more information, try '--help'.\n"
    );
}
