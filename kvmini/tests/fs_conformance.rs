//! Differential conformance of the filesystem calls: the operation table in
//! `tests/guests/conformance.c` runs natively on Linux (through
//! `native_shim.h`) in one directory and as a kvmini guest in an identical
//! copy granted at its `/`. The two must print the same lines, every step
//! must give the result Linux gives (the table states each one), and the
//! two directories must end up identical. A second, smaller table holds
//! the cases where kvmini is known to differ from Linux (ignored test).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
mod fs_common;

use std::path::Path;
use std::process::Command;

use common::{kvm_or_skip, text};
use fs_common::{
    build_guest, build_native, dir, file, make_dir, make_symlink, run_guest, snapshot, symlink,
    write_file, Tree,
};
use kvmini::sandbox::Ending;
use kvmini_abi::Port;

/// Sequences in the table, as its last lines report.
const SEQUENCES: usize = 46;
/// Lines the table prints: one per step, then the two summary lines.
const LINES: usize = 387;

/// The umask of both runs. kvmini creates files with the mode the guest
/// gives, through its host process, so the kernel applies that process's
/// umask; the guest runs in this test process, so the test sets it here,
/// and the native program sets the same one (and inherits it anyway).
/// A guest cannot change it: kvmini has no umask call.
/// 022 makes mode 0666 come out as 0644, in both runs.
const UMASK: libc::mode_t = 0o022;

/// What both directories hold before the runs (see conformance.c).
fn populate(root: &Path) {
    write_file(&root.join("data.txt"), b"0123456789abcdefghij", 0o644);
    make_dir(&root.join("dir"), 0o755);
    write_file(&root.join("dir/inner.txt"), b"inner\n", 0o644);
    make_dir(&root.join("dir/sub"), 0o755);
    make_dir(&root.join("empty"), 0o755);
    make_symlink("data.txt", &root.join("link.txt"));
    make_symlink("data.txt", &root.join("link2.txt"));
    make_symlink("dir", &root.join("dirlink"));
    make_symlink("missing.txt", &root.join("dangling"));
}

/// The tree the table leaves, the same after either run.
fn expected_tree() -> Tree {
    let letters: Vec<u8> = (0..10_000u32)
        .map(|i| b'a' + u8::try_from(i * 7 % 26).expect("a letter"))
        .collect();
    [
        ("dangling", symlink("missing.txt")),
        ("data.txt", file(0o644, b"0123456789abcdefghij")),
        ("dir", dir(0o755)),
        ("dir/inner.txt", file(0o644, b"inner\n")),
        ("dir/sub", dir(0o755)),
        ("dirlink", symlink("dir")),
        ("empty", dir(0o755)),
        ("link.txt", symlink("data.txt")),
        ("missing.txt", file(0o600, b"made")),
        ("s03.txt", file(0o640, b"hello")),
        ("s03b.txt", file(0o644, b"")),
        ("s04.txt", file(0o600, b"")),
        ("s05.txt", file(0o644, b"xy")),
        ("s06.txt", file(0o644, b"abcdefghZ")),
        ("s07.txt", file(0o644, b"1234567")),
        ("s08.txt", file(0o644, b"kvMIni!")),
        ("s09.txt", file(0o644, b"")),
        ("s20.txt", file(0o644, b"0123XY6789\0\0\0\0E")),
        ("s21.txt", file(0o644, b"sync")),
        ("s22.txt", file(0o644, b"")),
        ("s23.txt", file(0o644, b"keep")),
        ("s27", dir(0o750)),
        ("s27/a", dir(0o755)),
        ("s27/b", dir(0o700)),
        ("s29.txt", file(0o644, b"one")),
        ("s30b.txt", file(0o644, b"new")),
        ("s32c", dir(0o755)),
        ("s32c/f.txt", file(0o644, b"in s32")),
        ("s36", dir(0o755)),
        ("s36/a.txt", file(0o644, b"a")),
        ("s36/bbbb.txt", file(0o644, b"b")),
        ("s36/c", dir(0o755)),
        ("s37.bin", file(0o644, &letters)),
        ("s39.txt", file(0o644, b"")),
        ("s40.txt", file(0o644, b"")),
        ("s44.txt", file(0o644, b"fir")),
    ]
    .into_iter()
    .map(|(path, node)| (path.to_owned(), node))
    .collect::<Tree>()
}

/// The first differing line of two outputs, for the failure message.
fn first_difference(a: &str, b: &str) -> String {
    a.lines().zip(b.lines()).find(|(x, y)| x != y).map_or_else(
        || format!("{} vs {} lines", a.lines().count(), b.lines().count()),
        |(x, y)| format!("native: {x}\nkvmini: {y}"),
    )
}

/// The outputs and final trees of one differential run.
struct Runs {
    native_text: String,
    guest_text: String,
    /// The guest's exits by hypercall, indexed like `Port::ALL`.
    guest_calls: [u64; Port::ALL.len()],
    native_tree: Tree,
    guest_tree: Tree,
    /// The tree both directories started as.
    initial: Tree,
}

/// Builds conformance.c with `defines` both ways, runs it natively in one
/// prepared directory and under kvmini on another, and checks what must
/// hold in any case: Linux gives every result the table states, and
/// kvmini's guest exits with the status the native program exits with (0). `None` when KVM is not available.
fn differential(defines: &[&str]) -> Option<Runs> {
    differential_with(defines, false)
}

/// [`differential`], and with `nested` the directory above the guest's is
/// also granted, read-only, at a guest path the table never uses: grants
/// then nest, and every change is decided by identity (`grant.rs`).
fn differential_with(defines: &[&str], nested: bool) -> Option<Runs> {
    let work = tempfile::tempdir().expect("temp dir");
    let native_dir = work.path().join("native");
    let guest_dir = work.path().join("guest");
    let initial_dir = work.path().join("initial");
    for d in [&native_dir, &guest_dir, &initial_dir] {
        std::fs::create_dir(d).expect("mkdir");
    }
    let elf = build_guest("conformance", defines, work.path());
    let native = build_native("conformance", defines, work.path());
    let kvm = kvm_or_skip()?;

    // SAFETY: umask only swaps the process's file creation mask; it has no
    // memory-safety preconditions. Every test in this binary sets the same
    // mask, so running them in parallel changes nothing for either.
    unsafe { libc::umask(UMASK) };
    for d in [&native_dir, &guest_dir, &initial_dir] {
        populate(d);
    }

    let out = Command::new(&native)
        .current_dir(&native_dir)
        .output()
        .expect("the native build runs");
    let native_text = text(&out.stdout);
    assert_eq!(text(&out.stderr), "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "Linux differs from the table:\n{native_text}"
    );

    let grant = guest_dir.to_str().expect("UTF-8 temp path").to_owned();
    let mut grants = vec![grant];
    if nested {
        let above = work.path().to_str().expect("UTF-8 temp path");
        grants.push(format!("{above}:/kvmini-above:ro"));
    }
    let run = run_guest(&kvm, &elf, &grants, 64 << 20);
    assert_eq!(run.warnings_text(), "");
    // The native program exited 0 (checked above): so must the guest.
    assert_eq!(run.outcome.ending, Ending::Exited(0));
    Some(Runs {
        native_text,
        guest_text: run.stdout_text(),
        guest_calls: run.outcome.stats.by_hypercall,
        native_tree: snapshot(&native_dir),
        guest_tree: snapshot(&guest_dir),
        initial: snapshot(&initial_dir),
    })
}

/// Asserts kvmini printed what Linux printed, naming the first difference.
fn assert_same_output(runs: &Runs) {
    assert!(
        runs.native_text == runs.guest_text,
        "kvmini and Linux differ:\n{}",
        first_difference(&runs.native_text, &runs.guest_text)
    );
}

#[test]
fn the_table_gives_linux_results_under_kvmini() {
    let Some(runs) = differential(&[]) else {
        return;
    };
    assert_same_output(&runs);
    let lines: Vec<&str> = runs.guest_text.lines().collect();
    assert_eq!(lines.len(), LINES);
    assert_eq!(
        lines[LINES - 2..],
        [format!("sequences: {SEQUENCES}"), "failures: 0".to_owned()]
    );
    assert_eq!(lines[0], "seq 01 step 1: 3");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with(&format!("seq {SEQUENCES:02} step 1: ")))
            .count(),
        1
    );

    let expected = expected_tree();
    for (path, node) in &expected {
        assert_eq!(runs.native_tree.get(path), Some(node), "native: {path}");
        assert_eq!(runs.guest_tree.get(path), Some(node), "kvmini: {path}");
    }
    assert_eq!(
        runs.native_tree.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    assert!(runs.native_tree == runs.guest_tree);
}

#[test]
fn a_trailing_slash_or_dot_keeps_its_meaning() {
    let Some(runs) = differential(&["-DKVMINI_DIVERGENCES"]) else {
        return;
    };
    assert_eq!(
        runs.native_text.lines().last(),
        Some("failures: 0"),
        "{}",
        runs.native_text
    );
    assert_eq!(runs.native_text.lines().count(), 16);
    assert_same_output(&runs);
    // Every call fails, on Linux: nothing changes.
    assert!(runs.native_tree == runs.initial);
    assert!(runs.guest_tree == runs.initial);
}

#[test]
fn the_table_gives_the_same_results_through_the_batched_path() {
    // kvmini.h sends every filesystem call as a batch of one when
    // KVMINI_BATCH_EACH_CALL is defined; the native build ignores it.
    let Some(batched) = differential(&["-DKVMINI_BATCH_EACH_CALL"]) else {
        return;
    };
    assert_same_output(&batched);
    assert!(batched.native_tree == batched.guest_tree);
    assert!(batched.guest_text.ends_with("failures: 0\n"));
    // The calls really went through batches: one batch exit for each
    // filesystem call the unbatched build makes, and no other fs exit.
    let plain = differential(&[]).expect("KVM was there a moment ago");
    let fs_exits = |calls: &[u64]| -> u64 {
        Port::ALL
            .iter()
            .filter(|p| p.is_fs())
            .map(|p| calls[p.index()])
            .sum()
    };
    let batches = |calls: &[u64]| calls[Port::Batch.index()];
    assert_eq!(
        (batches(&plain.guest_calls), fs_exits(&batched.guest_calls)),
        (0, 0)
    );
    assert!(
        fs_exits(&plain.guest_calls) > 300,
        "{:?}",
        plain.guest_calls
    );
    assert_eq!(batches(&batched.guest_calls), fs_exits(&plain.guest_calls));
}

#[test]
fn the_table_gives_linux_results_when_grants_nest() {
    let Some(runs) = differential_with(&[], true) else {
        return;
    };
    assert_same_output(&runs);
    assert!(runs.guest_text.ends_with("failures: 0\n"));
    assert!(runs.native_tree == runs.guest_tree);
}
