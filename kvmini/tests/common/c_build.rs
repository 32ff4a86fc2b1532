//! The C SDK's guest build command. Only `std` is used here, so that the
//! benchmarks can include this file by path as well as the tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, where the C SDK's build command runs.
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The SDK's build flags, as `sdk/c/kvmini.h` documents them; paths are
/// relative to the repository root.
pub const GUEST_CFLAGS: &[&str] = &[
    "-O2",
    "-ffreestanding",
    "-fno-pic",
    "-no-pie",
    "-nostdlib",
    "-static",
    "-fno-stack-protector",
    "-mno-red-zone",
    "-I",
    "sdk/c",
    "-T",
    "sdk/c/guest.ld",
];

/// Runs `cc args -o out source` in the repository root, checks that it
/// succeeded, and returns its output (for callers that also check what it
/// printed).
pub fn cc(args: &[&str], out: &Path, source: &str) -> Output {
    let output = Command::new("cc")
        .current_dir(repo_root())
        .args(args)
        .arg("-o")
        .arg(out)
        .arg(source)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `cc` ({e}): gcc is part of kvmini's required toolchain \
                 for the C SDK; install it (e.g. apt-get install gcc)"
            )
        });
    assert!(
        output.status.success(),
        "cc {} failed to build {source}:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Builds the guest `source` (relative to the repository root) into `out`
/// with [`GUEST_CFLAGS`] and then `extra`, as [`cc`] does.
pub fn cc_guest(extra: &[&str], out: &Path, source: &str) -> Output {
    cc(&[GUEST_CFLAGS, extra].concat(), out, source)
}
