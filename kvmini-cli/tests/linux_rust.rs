//! A Rust program using std (kvmini/tests/linux/std_program.rs), built in
//! the test with `rustc -C target-feature=+crt-static` for the host target
//! (a glibc static-pie; the musl target is not installed here), run in
//! kvmini and natively on copies of one tree: output, status, stderr and
//! the resulting tree compared (docs/linux.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
mod linux_native;

use std::path::Path;
use std::process::{Command, Stdio};

use common::kvm_or_skip;
use linux_native::{in_kvmini, outcome, rust_static, without_thread_id};

/// The files under `root`, sorted, with their contents.
fn files(root: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                stack.push(path);
                found.push((name, "dir".to_owned()));
            } else {
                found.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn a_rust_std_program_runs_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = rust_static("std_program", work.path());
    for extra in [None, Some("panic")] {
        let (native_tree, sandbox_tree) = (work.path().join("native"), work.path().join("sandbox"));
        for tree in [&native_tree, &sandbox_tree] {
            let _ = std::fs::remove_dir_all(tree);
            std::fs::create_dir(tree).unwrap();
            std::fs::write(tree.join("in.txt"), "b a b c\n").unwrap();
        }
        let mut args = vec!["."];
        args.extend(extra);
        let native = Command::new(&program)
            .args(&args)
            .current_dir(&native_tree)
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut kvmini_args = vec![
            "--dir",
            sandbox_tree.to_str().unwrap(),
            program.to_str().unwrap(),
            "--",
        ];
        kvmini_args.extend(&args);
        let guest = in_kvmini(&kvmini_args);
        let (status, stdout, stderr) = outcome(&native);
        let expected_stdout = format!(
            "args={args:?}\n\
             words=[(\"a\", 1), (\"b\", 2), (\"c\", 1)] pi=3.142 hex=0xbeef\n\
             made=[\"moved.txt\"]\n\
             missing=Err(NotFound)\n"
        );
        assert_eq!(
            (status, &stdout),
            (if extra.is_some() { 101 } else { 7 }, &expected_stdout)
        );
        let (g_status, g_stdout, g_stderr) = outcome(&guest);
        assert_eq!((g_status, g_stdout), (status, stdout), "{g_stderr}");
        assert_eq!(
            without_thread_id(&g_stderr, ") panicked"),
            without_thread_id(&stderr, ") panicked")
        );
        if extra.is_some() {
            assert!(g_stderr.contains("asked to panic"), "{g_stderr}");
        }
        assert_eq!(files(&sandbox_tree), files(&native_tree));
    }
}
