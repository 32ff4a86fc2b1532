//! Helpers of the tests that run one Linux program in kvmini and natively
//! and compare what each did: building the test programs, and a run's
//! status as a shell reports it (128 + N for a program a signal ended).

// Each test crate includes this module and uses a different part of it.
#![allow(dead_code)]

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub const BUSYBOX: &str = "/usr/bin/busybox";

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

#[allow(
    unused_imports,
    reason = "each test crate uses a different part of this module"
)]
pub use crate::common::linux_build::musl;

/// A run's status as a shell gives it, its stdout and its stderr.
pub fn outcome(out: &Output) -> (i32, String, String) {
    let status = out
        .status
        .code()
        .or_else(|| out.status.signal().map(|sig| 128 + sig))
        .expect("an exit status or a signal");
    (status, text(&out.stdout), text(&out.stderr))
}

/// Runs `program` with `args` natively in `cwd`, without a core file
/// (RLIMIT_CORE 0, so an `abort()` leaves nothing behind).
pub fn native(program: &Path, args: &[&str], cwd: &Path) -> Output {
    Command::new("sh")
        .current_dir(cwd)
        .arg("-c")
        .arg("ulimit -c 0; exec \"$0\" \"$@\"")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .env_clear()
        .output()
        .expect("sh runs")
}

/// Runs `kvmini run` with `args`, stdin closed and an empty environment.
pub fn in_kvmini(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvmini"))
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .env_clear()
        .output()
        .expect("kvmini starts")
}

/// Builds `kvmini/tests/linux/NAME.rs` into `dir` with the host's rustc as
/// a static-pie (`+crt-static`, a glibc program).
pub fn rust_static(name: &str, dir: &Path) -> std::path::PathBuf {
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../kvmini/tests/linux/{name}.rs"));
    let out = dir.join(name);
    let built = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned()))
        .args([
            "--edition",
            "2021",
            "-C",
            "target-feature=+crt-static",
            "-C",
            "opt-level=1",
            "-o",
        ])
        .arg(&out)
        .arg(&source)
        .output()
        .expect("rustc runs");
    assert!(built.status.success(), "{}", text(&built.stderr));
    out
}

/// `stderr` with the main thread's id, which Rust's messages name (1 in
/// kvmini, the host's natively), up to `until`, replaced by `ID`.
pub fn without_thread_id(stderr: &str, until: &str) -> String {
    match (stderr.find("thread 'main' ("), stderr.find(until)) {
        (Some(start), Some(end)) if start < end => {
            format!("{}thread 'main' (ID{}", &stderr[..start], &stderr[end..])
        }
        _ => stderr.to_owned(),
    }
}
