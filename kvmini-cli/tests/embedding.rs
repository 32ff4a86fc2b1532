//! kvmini as a library: what an embedding program gives a guest (stdin,
//! arguments, host functions, directories) and gets back (stdout and
//! stderr, results), many sandboxes at once, and the ways a run ends early.
//!
//! Most guests here are `tests/guests/embedding.c`, built with the C SDK;
//! its first argument picks what it does. The built-in `kvstore` guest
//! covers the Rust SDK's `host` and `env` modules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::path::PathBuf;

use common::{kvm_or_skip, kvmini, text};

/// `tests/guests/embedding.c`, built once per test run.
fn guest_path() -> PathBuf {
    common::built_guest("kvmini/tests/guests/embedding.c", &[])
}

/// What the C guest prints for `args`: the size they need, a one-byte
/// short buffer left alone, then each argument with its length.
fn args_report(args: &[&str]) -> String {
    let need: usize = args.iter().map(|a| a.len() + 1).sum();
    let mut want = format!("need: {need}\n");
    if need > 0 {
        want += &format!("one byte short: {need}\nbuffer untouched\n");
    }
    want += &format!("full buffer: {need}\nargc: {}\n", args.len());
    for arg in args {
        want += &format!("[{}] {arg}\n", arg.len());
    }
    want
}

#[test]
fn cli_gives_the_guest_its_path_and_the_arguments_after_dashdash() {
    let path = guest_path();
    if kvm_or_skip().is_none() {
        return;
    }
    let out = kvmini()
        .arg("run")
        .arg(&path)
        .args(["--", "a", "b"])
        .output()
        .expect("kvmini runs");
    let path = path.to_str().expect("UTF-8 target path");
    assert_eq!(text(&out.stdout), args_report(&[path, "a", "b"]));
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
}
