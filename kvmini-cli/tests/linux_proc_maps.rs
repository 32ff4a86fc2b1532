//! `/proc/self/maps` of a Linux program in kvmini: the lines kvmini's
//! layout predicts for the stack, the break and a mapping whose middle
//! page `mprotect` changed (kvmini/tests/linux/proc_maps.c), the calls on
//! its descriptor, and a Rust std program whose stack overflows ending as
//! natively (docs/linux.md, "/proc/self/maps").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
mod linux_native;

use common::kvm_or_skip;
use kvmini::layout::Layout;
use kvmini::linux::ProcessLayout;
use linux_native::{in_kvmini, musl, native, outcome, rust_static, without_thread_id};

/// A line as Linux's `show_map` writes it: the name from column 74.
fn line(start: u64, end: u64, perms: &str, name: &str) -> String {
    let head = format!("{start:08x}-{end:08x} {perms} 00000000 00:00 0 ");
    if name.is_empty() {
        return head;
    }
    format!("{head:<73}{name}")
}

/// The line whose range holds `addr`.
fn holding(lines: &[&str], addr: u64) -> String {
    lines
        .iter()
        .find(|l| {
            let (range, _) = l.split_once(' ').unwrap();
            let (s, e) = range.split_once('-').unwrap();
            let (s, e) = (
                u64::from_str_radix(s, 16).unwrap(),
                u64::from_str_radix(e, 16).unwrap(),
            );
            s <= addr && addr < e
        })
        .unwrap_or_else(|| panic!("no line holds {addr:x} in {lines:#?}"))
        .to_string()
}

#[test]
fn proc_self_maps_lists_the_stack_the_break_and_mappings_as_kvmini_laid_them_out() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = musl("proc_maps.c", dir.path());
    let path = program.to_str().unwrap();
    let (status, stdout, stderr) = outcome(&in_kvmini(&[path]));
    assert_eq!((status, stderr.as_str()), (0, ""), "{stdout}");
    let (maps, calls) = stdout.split_once("--\n").unwrap();
    let mut lines: Vec<&str> = maps.lines().collect();
    let head = lines.remove(0);
    let addr = |key: &str| {
        let field = head
            .split(' ')
            .find_map(|f| f.strip_prefix(&format!("{key}=")))
            .unwrap();
        u64::from_str_radix(field, 16).unwrap()
    };
    let (p, brk) = (addr("mapping"), addr("brk"));
    // The stack does not depend on the image when memory has room for it.
    let layout = ProcessLayout::new(&Layout::new(64 << 20), 0x40_0000).unwrap();
    assert_eq!(
        holding(&lines, addr("local")),
        line(layout.stack_bottom, layout.stack_top, "rw-p", "[stack]")
    );
    assert_eq!(
        holding(&lines, brk),
        line(brk, brk + 0x3000, "rw-p", "[heap]")
    );
    assert_eq!(holding(&lines, p), line(p, p + 0x1000, "rw-p", ""));
    assert_eq!(
        holding(&lines, p + 0x1000),
        line(p + 0x1000, p + 0x2000, "r--p", "")
    );
    assert_eq!(
        holding(&lines, p + 0x2000),
        line(p + 0x2000, p + 0x3000, "rw-p", "")
    );
    // The image's lines are named by the program's path, with the
    // protections of its segments.
    for (what, perms) in [("main", "r-xp"), ("data", "rw-p")] {
        let found = holding(&lines, addr(what));
        assert_eq!(&found[18..22], perms, "{found}");
        assert_eq!(found.get(73..), Some(path), "{found}");
    }
    // Nothing above the stack: kvmini's area and the stub page are not
    // the program's.
    assert_eq!(
        lines.last().copied(),
        Some(holding(&lines, addr("local")).as_str())
    );
    assert_eq!(
        calls,
        "pread=15 same=1\n\
         lseek=5 end=-1\n\
         dup_read=1 same=1\n\
         fstat=0 mode=100444 size=0\n\
         write=-1 errno=9\n\
         close=0 0\n\
         rdwr=-1 errno=13\n\
         status=-1 errno=2\n\
         pid1=1\n\
         stat=0 mode=100444\n\
         access_r=0\n"
    );
}

#[test]
fn a_rust_std_stack_overflow_is_reported_and_aborts_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = rust_static("stack_overflow", dir.path());
    let (status, stdout, stderr) = outcome(&native(&program, &[], dir.path()));
    assert_eq!((status, stdout.as_str()), (134, "before\n"), "{stderr}");
    assert!(stderr.contains("has overflowed its stack"), "{stderr}");
    let (g_status, g_stdout, g_stderr) = outcome(&in_kvmini(&[program.to_str().unwrap()]));
    assert_eq!((g_status, g_stdout), (status, stdout), "{g_stderr}");
    assert_eq!(
        without_thread_id(&g_stderr, ") has overflowed"),
        without_thread_id(&stderr, ") has overflowed")
    );
}
