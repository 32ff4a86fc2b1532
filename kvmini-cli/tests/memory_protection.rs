//! Memory protection inside the guest from the command line: `--verbose`
//! lists the page permissions a ring-3 ELF guest really gets, and a write
//! to its own code ends `kvmini run` with status 126 and a report that
//! names it (docs/security.md, "Memory inside the guest").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::{built_guest, kvm_or_skip, kvmini, kvmini_output, text};

#[test]
fn verbose_lists_the_page_permissions_as_mapped() {
    if kvm_or_skip().is_none() {
        return;
    }
    let out = kvmini_output(&["demo", "hello", "--verbose"]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("kvmini: page permissions at ring 3"))
        .unwrap_or_else(|| panic!("no permissions in:\n{stderr}"));
    // The default 64 MiB: the stack is the 1 MiB below kvmini's area, the
    // guard the 64 KiB below it; the hello's code is its first page.
    assert_eq!(
        lines[at + 1..at + 3],
        [
            "  0x000f0000..0x00100000  ---  kvmini's page tables",
            "  0x00100000..0x00101000  r-x  segment 0",
        ]
    );
    assert!(
        lines.contains(&"  0x03ee0000..0x03ef0000  ---  stack guard"),
        "{stderr}"
    );
    assert!(
        lines.contains(&"  0x03ef0000..0x03ff0000  rw-  stack"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  guest stack guard (not mapped)\n"),
        "{stderr}"
    );
    assert!(stderr.contains("EFER = LME|LMA|NXE"), "{stderr}");
}

#[test]
fn a_page_made_prot_none_ends_the_program_and_the_report_says_why() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("memory_protection");
    let source = format!(
        "{}/../kvmini/tests/linux/memory_protection.c",
        env!("CARGO_MANIFEST_DIR")
    );
    let built = std::process::Command::new("musl-gcc")
        .args(["-static", "-O1", "-Wall", "-Werror", "-o"])
        .arg(&program)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run musl-gcc ({e}): install musl-tools"));
    assert!(built.status.success(), "{}", text(&built.stderr));
    let out = kvmini()
        .args([
            "run",
            "--stats",
            program.to_str().unwrap(),
            "--",
            "mprotect",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(139));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("which the program's own mprotect, munmap or mmap left ---")),
        "{stderr}"
    );
}

#[test]
fn a_write_to_code_ends_the_run_with_126_and_says_so() {
    if kvm_or_skip().is_none() {
        return;
    }
    let guest = built_guest("kvmini/tests/guests/memory_protection.c", &[]);
    let out = kvmini()
        .args(["run", guest.to_str().unwrap(), "--", "code"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
    let stderr = text(&out.stderr);
    let first = stderr.lines().next().unwrap();
    assert!(
        first.starts_with("kvmini: guest crashed: write to read-only memory at 0x1")
            && first.contains(" (segment 0, r-x), at rip 0x1"),
        "{stderr}"
    );
    assert_eq!(text(&out.stdout), "");
}
