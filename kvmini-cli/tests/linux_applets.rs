//! More busybox applets run in kvmini and natively on copies of one tree,
//! output, status and the resulting files compared: md5sum, sha256sum,
//! base64, od, expr, awk, gzip (`-t` included) and gunzip, tar (create, list, extract);
//! their error paths (a missing file, a read-only grant) too
//! (docs/linux.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
mod linux_native;

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::kvm_or_skip;
use linux_native::{in_kvmini, outcome, BUSYBOX};

/// in.txt, bin.dat (the first 3000 bytes of busybox), enc.b64, and d/
/// with d/one and d/sub/two, the tree dated 2020-09-13.
fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("d/sub")).unwrap();
    std::fs::write(root.join("in.txt"), "alpha 3\nbeta 1\ngamma 2\n").unwrap();
    let bytes = std::fs::read(BUSYBOX).unwrap();
    std::fs::write(root.join("bin.dat"), &bytes[..3000]).unwrap();
    std::fs::write(root.join("enc.b64"), "aGVsbG8sIGt2bWluaQo=\n").unwrap();
    std::fs::write(root.join("d/one"), "one\n").unwrap();
    std::fs::write(root.join("d/sub/two"), "two\n").unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    for path in ["d/one", "d/sub/two", "d/sub", "d", "in.txt"] {
        std::fs::File::open(root.join(path))
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
}

/// Every entry under `root`, sorted: path, kind, permission bits, the
/// contents of files and the modification time (after 2023-11-14, what a
/// run made now: "recent").
fn snapshot(root: &Path) -> Vec<String> {
    let mut entries = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let contents = if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else {
                format!("{:?}", std::fs::read(&path).unwrap())
            };
            let time = if meta.mtime() > 1_700_000_000 {
                "recent".to_owned()
            } else {
                meta.mtime().to_string()
            };
            let name = path.strip_prefix(root).unwrap().display().to_string();
            entries.push(format!(
                "{name} {:o} {time} {contents}",
                meta.mode() & 0o7777
            ));
        }
    }
    entries.sort();
    entries
}

/// Runs busybox `applet` natively in `native` and in kvmini with
/// `sandbox` granted at /, and checks that output, status and the trees
/// are the same.
fn same(native: &Path, sandbox: &Path, applet: &[&str]) -> (i32, String, String) {
    let ran = Command::new(BUSYBOX)
        .args(applet)
        .current_dir(native)
        .env_clear()
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut args = vec![
        "--dir",
        sandbox.to_str().unwrap(),
        "--env",
        "TZ=UTC",
        BUSYBOX,
        "--",
    ];
    args.extend_from_slice(applet);
    let guest = outcome(&in_kvmini(&args));
    assert_eq!(guest, outcome(&ran), "{applet:?}");
    assert_eq!(snapshot(sandbox), snapshot(native), "after {applet:?}");
    guest
}

#[test]
fn checksums_encodings_expr_awk_and_gzip_give_what_busybox_gives_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (native, sandbox) = (work.path().join("native"), work.path().join("sandbox"));
    tree(&native);
    tree(&sandbox);
    let run = |applet: &[&str]| same(&native, &sandbox, applet);
    let md5 = run(&["md5sum", "in.txt", "bin.dat"]);
    assert!(
        md5.1
            .starts_with("482b5639a2e25ad5a18e185a09ee74f7  in.txt\n"),
        "{md5:?}"
    );
    run(&["sha256sum", "in.txt", "bin.dat"]);
    run(&["base64", "bin.dat"]);
    assert_eq!(run(&["base64", "-d", "enc.b64"]).1, "hello, kvmini\n");
    run(&["od", "-c", "in.txt"]);
    run(&["od", "-A", "x", "-t", "x1", "bin.dat"]);
    assert_eq!(run(&["expr", "6", "*", "7"]).1, "42\n");
    run(&["expr", "length", "hello"]);
    assert_eq!(run(&["expr", "1", "/", "0"]).0, 2);
    assert_eq!(
        run(&["awk", "{s+=$2} END {print s, NR}", "in.txt"]).1,
        "6 3\n"
    );
    run(&["awk", "$2>1 {print toupper($1)}", "in.txt"]);
    run(&["gzip", "-k", "in.txt"]);
    assert_eq!(
        run(&["gunzip", "-c", "in.txt.gz"]).1,
        "alpha 3\nbeta 1\ngamma 2\n"
    );
    // `gzip -t` writes what it decompresses to /dev/null.
    run(&["gzip", "-k", "in.txt"]);
    assert_eq!(
        run(&["gzip", "-t", "in.txt.gz"]),
        (0, String::new(), String::new())
    );
    run(&["gunzip", "-f", "in.txt.gz"]);
    // Error paths: a missing file.
    assert_eq!(run(&["md5sum", "missing"]).0, 1);
    assert_eq!(run(&["gzip", "missing"]).0, 1);
    run(&["awk", "{print}", "missing"]);
}

#[test]
fn tar_creates_lists_and_extracts_a_granted_tree_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (native, sandbox) = (work.path().join("native"), work.path().join("sandbox"));
    tree(&native);
    tree(&sandbox);
    // Created in kvmini: the archive records no user or group names (the
    // program sees no user database; natively busybox records "root"), so
    // it is created once and the same archive is listed and extracted on
    // both sides.
    let created = outcome(&in_kvmini(&[
        "--dir",
        sandbox.to_str().unwrap(),
        BUSYBOX,
        "--",
        "tar",
        "-cf",
        "t.tar",
        "d",
    ]));
    assert_eq!(created, (0, String::new(), String::new()));
    std::fs::copy(sandbox.join("t.tar"), native.join("t.tar")).unwrap();
    let run = |applet: &[&str]| same(&native, &sandbox, applet);
    assert_eq!(
        run(&["tar", "-tf", "t.tar"]).1,
        "d/\nd/one\nd/sub/\nd/sub/two\n"
    );
    assert_eq!(
        run(&["tar", "-tvf", "t.tar"]).1,
        "drwxr-xr-x 0/0         0 2020-09-13 12:26:40 d/\n\
         -rw-r--r-- 0/0         4 2020-09-13 12:26:40 d/one\n\
         drwxr-xr-x 0/0         0 2020-09-13 12:26:40 d/sub/\n\
         -rw-r--r-- 0/0         4 2020-09-13 12:26:40 d/sub/two\n"
    );
    run(&["mkdir", "x"]);
    run(&["tar", "-xf", "t.tar", "-C", "x"]);
    assert!(
        snapshot(&sandbox).contains(&"x/d/sub/two 644 1600000000 [116, 119, 111, 10]".to_owned())
    );
    assert_eq!(run(&["tar", "-tf", "missing.tar"]).0, 1);
}

#[test]
fn gzip_and_tar_under_a_read_only_grant_fail_as_on_a_read_only_mount() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    tree(work.path());
    let before = snapshot(work.path());
    let grant = format!("{}:/:ro", work.path().display());
    for (applet, stderr) in [
        (
            &["gzip", "-k", "in.txt"][..],
            "gzip: can't open 'in.txt.gz': Read-only file system\n",
        ),
        (
            &["tar", "-cf", "t.tar", "d"][..],
            "tar: can't open 't.tar': Read-only file system\n",
        ),
    ] {
        let mut args = vec!["--dir", &grant, BUSYBOX, "--"];
        args.extend_from_slice(applet);
        assert_eq!(
            outcome(&in_kvmini(&args)),
            (1, String::new(), stderr.to_owned()),
            "{applet:?}"
        );
    }
    assert_eq!(snapshot(work.path()), before);
}
