//! Grants by identity: a read-only grant stays read-only whatever path
//! reaches its directory (a renamed parent, a symlink in a writable grant,
//! the directory's own place in an outer grant); both nestings keep
//! working; nothing a guest creates carries a set-ID bit; `--dir` and
//! `.dir()` take only what they document; and a transfer that moved some
//! bytes returns their count.
//!
//! Most tests run `tests/guests/grants.c`, which takes one filesystem call
//! per argument and prints `STEP = RESULT`; each test compares every line
//! and then the host directories.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
#[path = "../../kvmini/tests/fs_common/mod.rs"]
mod fs_common;

use std::path::{Path, PathBuf};

use common::{kvm_or_skip, kvmini, text};
use fs_common::{build_guest, make_dir};

/// A temp dir with `root/` (the outer grant) in it.
fn root() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("root");
    make_dir(&root, 0o755);
    (tmp, root)
}

/// The grants guest built into `dir`, as a file for the CLI.
fn guest_file(dir: &Path) -> PathBuf {
    build_guest("grants", &[], dir);
    dir.join("grants.elf")
}

#[test]
fn cli_dir_takes_ro_and_rw_suffixes_and_refuses_others() {
    let Some(_kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().expect("temp dir");
    let elf = guest_file(build.path());
    let (_tmp, root) = root();
    let host = root.to_str().expect("UTF-8 temp path");
    let run = |spec: String, step: &str| {
        kvmini()
            .arg("run")
            .arg(&elf)
            .arg("--dir")
            .arg(&spec)
            .arg("--")
            .arg(step)
            .output()
            .expect("kvmini starts")
    };
    for (suffix, step, want) in [
        (":/p:rw", "write:/p/a:1", "write:/p/a:1 = 1\n"),
        (":rw", "write:/b:1", "write:/b:1 = 1\n"),
        (":/p/../q/:ro", "write:/q/c:1", "write:/q/c:1 = EROFS\n"),
        (":/q:ro", "cat:/q/a", "cat:/q/a = \"1\"\n"),
        (":/", "cat:/b", "cat:/b = \"1\"\n"),
    ] {
        let out = run(format!("{host}{suffix}"), step);
        assert_eq!(text(&out.stdout), want, "{suffix}: {}", text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{suffix}");
    }
    assert_eq!(std::fs::read(root.join("a")).unwrap(), b"1");
    assert_eq!(std::fs::read(root.join("b")).unwrap(), b"1");
    for suffix in [
        ":/p:rx",
        ":/p:RO",
        ":p",
        ":",
        ":ro:x",
        ":/p:ro,rw",
        ":read-only",
    ] {
        let spec = format!("{host}{suffix}");
        let out = run(spec.clone(), "write:/p/z:1");
        let bad = suffix.rsplit_once(':').map(|(_, s)| s).unwrap_or_default();
        assert_eq!(
            text(&out.stderr),
            format!(
                "kvmini: --dir {spec}: unknown suffix :{bad} (a grant ends in :ro or :rw, \
                 and a guest path is absolute, like HOST:/data)\n"
            ),
            "{suffix}"
        );
        assert_eq!(text(&out.stdout), "");
        assert_eq!(out.status.code(), Some(125), "{suffix}");
    }
    assert!(!root.join("p").exists());
    for (first, second) in [(":/d:ro", ":/d/"), (":/d", "://d:rw"), (":/", ":/x/..:ro")] {
        let out = kvmini()
            .arg("run")
            .arg(&elf)
            .arg("--dir")
            .arg(format!("{host}{first}"))
            .arg("--dir")
            .arg(format!("{host}{second}"))
            .output()
            .expect("kvmini starts");
        let path = if first.starts_with(":/d") { "/d" } else { "/" };
        assert_eq!(
            text(&out.stderr),
            format!("kvmini: --dir: {path} is granted twice\n"),
            "{first} {second}"
        );
        assert_eq!(out.status.code(), Some(125));
    }
}

/// Runs grants_short.c in the kvmini binary under a file size limit of
/// `limit` bytes (SIGXFSZ ignored, so that a write past it is EFBIG), with
/// `dir` granted; returns its stdout after checking that it exited 0.
fn short_write_run(elf: &Path, dir: &Path, limit: u64) -> String {
    use std::os::unix::process::CommandExt;
    let mut command = kvmini();
    command
        .args(["run", "--ring", "0", "--mem", "4M", "--dir"])
        .arg(dir)
        .arg(elf);
    // SAFETY: between fork and exec the child only sets its own file size
    // limit and one signal disposition, both async-signal-safe calls.
    unsafe {
        command.pre_exec(move || {
            let rlim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlim) != 0
                || libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = command.output().expect("kvmini starts");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn a_write_cut_short_after_its_first_writev_returns_the_bytes_written() {
    let Some(_kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().expect("temp dir");
    let elf = build.path().join("grants_short.elf");
    common::c_build::cc_guest(
        &["-I", "kvmini/tests/hostile"],
        &elf,
        "kvmini/tests/guests/grants_short.c",
    );
    // The bytes of the first writev: its 1024 pieces are half a page and
    // 1023 pages.
    const FIRST: u64 = 2048 + 1023 * 4096;
    // The limit at the end of the first writev: the second one fails with
    // EFBIG; inside the second; inside the first.
    for limit in [FIRST, FIRST + 1000, FIRST - 1] {
        let (_tmp, dir) = root();
        let out = short_write_run(&elf, &dir, limit);
        // Another write at the limit is EFBIG.
        let again = "-27";
        assert_eq!(
            out,
            format!(
                "open: 0\nwrite: {limit}\noffset: {limit}\nwrite again: {again}\n\
                 pwrite: {limit}\noffset: 0\n"
            ),
            "limit {limit}"
        );
        for name in ["out.bin", "p.bin"] {
            let data = std::fs::read(dir.join(name)).expect("the file");
            assert_eq!(data.len() as u64, limit, "{name}");
            let pages_right = data.iter().enumerate().all(|(k, &b)| {
                b == if ((2048 + k) / 4096) % 2 == 0 {
                    b'a'
                } else {
                    b'c'
                }
            });
            assert!(pages_right, "{name}: the bytes of the alternating pages");
        }
    }
}
