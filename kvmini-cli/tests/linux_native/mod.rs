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
