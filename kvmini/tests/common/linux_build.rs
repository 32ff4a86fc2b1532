//! The musl C programs of the Linux-program tests, built once per test in
//! a directory of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds kvmini/tests/linux/`source` with `musl-gcc -static` into `dir`.
/// The path goes through the kvmini crate so that both crates' tests find
/// the sources.
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
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    out
}
