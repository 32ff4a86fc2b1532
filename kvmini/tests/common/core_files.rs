//! The core file tests' guests (a C SDK guest and a musl Linux program
//! that crash three calls deep, built with debug information and frame
//! pointers) and the gdb that reads their cores, in batch mode.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::c_build::cc_guest;
use super::REQUIRE_KVM;

/// gcc keeps frame pointers in leaf functions too only when told so.
const FRAME_POINTERS: &[&str] = &["-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer"];

/// Builds `kvmini/tests/core_dump/deep.c` with the C SDK into `dir`.
pub fn deep_c_guest(dir: &Path) -> PathBuf {
    deep_c_guest_with(dir, &[])
}

/// Builds `kvmini/tests/core_dump/deep.c` with the C SDK and `extra` flags
/// into `dir`.
pub fn deep_c_guest_with(dir: &Path, extra: &[&str]) -> PathBuf {
    let elf = dir.join("deep");
    cc_guest(
        &[FRAME_POINTERS, &["-g", "-Wall", "-Werror"], extra].concat(),
        &elf,
        "kvmini/tests/core_dump/deep.c",
    );
    elf
}

/// Builds `kvmini/tests/core_dump/deep_linux.c` with `musl-gcc -static`
/// into `dir`.
pub fn deep_linux_program(dir: &Path) -> PathBuf {
    let out = dir.join("deep_linux");
    let src = super::c_build::repo_root().join("kvmini/tests/core_dump/deep_linux.c");
    let built = Command::new("musl-gcc")
        .args(["-static", "-O1", "-g", "-Wall", "-Werror"])
        .args(FRAME_POINTERS)
        .arg("-o")
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

/// Whether gdb can be run here. With `KVMINI_REQUIRE_KVM=1` (CI) a
/// missing gdb fails the test instead, so that CI cannot pass by skipping.
pub fn gdb_or_skip() -> bool {
    match Command::new("gdb").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        other => {
            let why = match other {
                Ok(out) => format!("gdb --version failed: {}", out.status),
                Err(e) => format!("cannot run gdb: {e}"),
            };
            if std::env::var_os(REQUIRE_KVM).is_some_and(|v| v == "1") {
                panic!("{REQUIRE_KVM}=1 but {why}: install gdb (apt-get install gdb)");
            }
            eprintln!("skipping the gdb part: {why}");
            false
        }
    }
}

/// What `gdb -batch` prints for `elf` and `core`: the backtrace, the
/// global `progress`, RIP and the low half of XMM0.
pub fn gdb_batch(elf: &Path, core: &Path) -> String {
    let out = Command::new("gdb")
        .args(["-nx", "-batch"])
        .args(["-ex", "bt", "-ex", "print progress"])
        .args(["-ex", "info registers rip"])
        .args(["-ex", "print/x $xmm0.v2_int64[0]"])
        .arg(elf)
        .arg(core)
        .output()
        .expect("gdb starts");
    assert!(out.status.success(), "gdb failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks what gdb shows of a deep guest's core: the signal, the frames
/// at `frames` (the faulting RIP, then the return addresses into
/// second_level, first_level and main, as the crash report has them), the
/// global's value, RIP equal to the crash report's and XMM0 as the guest
/// set it.
pub fn assert_gdb_shows_the_crash(shown: &str, frames: [u64; 4]) {
    let lines: Vec<&str> = shown.lines().collect();
    let has = |want: &str| {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "gdb shows no line starting {want:?}:\n{shown}"
        );
    };
    has("Program terminated with signal SIGSEGV, Segmentation fault.");
    for (n, (address, name)) in frames
        .iter()
        .zip([
            "third_level (depth=",
            "second_level (depth=",
            "first_level (depth=",
            "main () at ",
        ])
        .enumerate()
    {
        has(&format!("#{n}  {address:#018x} in {name}"));
    }
    has("$1 = 1003");
    let rip = lines
        .iter()
        .find(|l| l.starts_with("rip "))
        .unwrap_or_else(|| panic!("gdb shows no rip:\n{shown}"));
    let words: Vec<&str> = rip.split_whitespace().collect();
    assert_eq!(
        words[..3],
        [
            "rip",
            &format!("{:#x}", frames[0]),
            &format!("{:#x}", frames[0])
        ]
    );
    assert!(words[3].starts_with("<third_level+"), "{rip}");
    has("$2 = 0x1122334455667788");
}
