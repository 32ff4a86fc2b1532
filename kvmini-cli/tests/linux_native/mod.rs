//! Helpers of the tests that run one Linux program in kvmini and natively
//! and compare what each did: building the test programs, and a run's
//! status as a shell reports it (128 + N for a program a signal ended).

// Each test crate includes this module and uses a different part of it.
#![allow(dead_code)]

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BUSYBOX: &str = "/usr/bin/busybox";

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// Builds kvmini/tests/linux/`source` with `musl-gcc -static` into `dir`.
pub fn musl(source: &str, dir: &Path) -> PathBuf {
    let out = dir.join(source.trim_end_matches(".c"));
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kvmini/tests/linux")
        .join(source);
    let built = Command::new("musl-gcc")
        .args(["-static", "-O1", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run musl-gcc ({e}): install musl-tools"));
    assert!(built.status.success(), "{}", text(&built.stderr));
    out
}

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
