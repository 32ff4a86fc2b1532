//! `/dev/null` for Linux programs: kvmini serves it itself, whatever the
//! grants are, and busybox and a musl program see it as natively
//! (docs/linux.md, "/dev/null").
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
use linux_native::{in_kvmini, musl, native, outcome, BUSYBOX};

/// Runs busybox `applet` natively in `dir` and in kvmini with `grant`
/// (`dir` somewhere in the guest) and `cwd`; both outcomes.
fn both(dir: &Path, grant: &str, cwd: &str, applet: &[&str]) -> [(i32, String, String); 2] {
    let ran = Command::new(BUSYBOX)
        .args(applet)
        .current_dir(dir)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut args = vec!["--dir", grant, "--cwd", cwd, BUSYBOX, "--"];
    args.extend_from_slice(applet);
    [outcome(&ran), outcome(&in_kvmini(&args))]
}

#[test]
fn busybox_reads_writes_and_stats_dev_null_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("in.txt"), "hello\n").unwrap();
    let grant = format!("{}:/data", work.path().display());
    let ok = |out: &str| (0, out.to_owned(), String::new());
    for (applet, expected) in [
        (&["sh", "-c", "echo hi > /dev/null; echo $?"][..], ok("0\n")),
        (&["cat", "/dev/null"][..], ok("")),
        (&["wc", "-c", "/dev/null"][..], ok("0 /dev/null\n")),
        (
            &["stat", "-c", "%F %t %T %a", "/dev/null"][..],
            ok("character special file 1 3 666\n"),
        ),
        // Builtins only: busybox's sh forks for other applets.
        (
            &[
                "sh",
                "-c",
                "echo x >> /dev/null; read l < /dev/null; echo $? [$l]",
            ][..],
            ok("1 []\n"),
        ),
        (
            &["cat", "/dev/null/"][..],
            (
                1,
                String::new(),
                "cat: can't open '/dev/null/': Not a directory\n".to_owned(),
            ),
        ),
    ] {
        let [natively, in_kvmini] = both(work.path(), &grant, "/data", applet);
        assert_eq!(in_kvmini, natively, "{applet:?}");
        assert_eq!(in_kvmini, expected, "{applet:?}");
    }
}

#[test]
fn a_grant_at_the_root_does_not_hide_the_device() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // A regular file where the device would be: the device still wins,
    // and the file is left as it was (busybox's sh runs only builtins
    // without forking).
    std::fs::create_dir(work.path().join("dev")).unwrap();
    std::fs::write(work.path().join("dev/null"), "not the device\n").unwrap();
    for grant in [
        format!("{}:/", work.path().display()),
        format!("{}:/:ro", work.path().display()),
        format!("{}:/dev", work.path().join("dev").display()),
    ] {
        let out = in_kvmini(&[
            "--dir",
            &grant,
            BUSYBOX,
            "--",
            "sh",
            "-c",
            "echo gone > /dev/null; read l < /dev/null; echo $? [$l]",
        ]);
        assert_eq!(
            outcome(&out),
            (0, "1 []\n".to_owned(), String::new()),
            "{grant}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(work.path().join("dev/null")).unwrap(),
        "not the device\n"
    );
    let grant = format!("{}:/", work.path().display());
    let out = in_kvmini(&[
        "--dir",
        &grant,
        BUSYBOX,
        "--",
        "stat",
        "-c",
        "%F",
        "/dev/null",
    ]);
    assert_eq!(
        outcome(&out),
        (0, "character special file\n".to_owned(), String::new())
    );
    // Without any grant at all.
    let out = in_kvmini(&[BUSYBOX, "--", "sh", "-c", "echo hi > /dev/null; echo $?"]);
    assert_eq!(outcome(&out), (0, "0\n".to_owned(), String::new()));
}

#[test]
fn dev_null_answers_a_musl_program_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("null_device.c", work.path());
    let ran = outcome(&native(&program, &[], work.path()));
    let grant = format!("{}:/", work.path().display());
    let guest = outcome(&in_kvmini(&["--dir", &grant, program.to_str().unwrap()]));
    assert_eq!(guest, ran);
    assert_eq!(guest.0, 0);
    for line in [
        "write = 5\n",
        "read = 0\n",
        "lseek end -3 = 0\n",
        "mode 20666 rdev 1:3 size 0 nlink 1 uid 0\n",
        "statx mode 20666 rdev 1:3\n",
        "getdents64 = -1 (Not a directory)\n",
        "ftruncate = -1 (Invalid argument)\n",
        "open o_directory = -1 (Not a directory)\n",
        "write only then read = -1 (Bad file descriptor)\n",
    ] {
        assert!(guest.1.contains(line), "{line:?} in {}", guest.1);
    }
}
