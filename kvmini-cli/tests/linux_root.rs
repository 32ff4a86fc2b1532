//! The directories above the grants: `/` when no grant is mounted there,
//! and each directory that leads to a mount point (`/mnt` for a grant at
//! `/mnt/data`), listing exactly the mount points' names, read-only
//! (docs/linux.md, "The directories above the grants"). Where a native
//! tree can stand in for `/`, busybox's output is compared with it.
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
use linux_native::{in_kvmini, outcome, BUSYBOX};

/// `a/` with one and sub/two, `b/` with three: two small grants, and a
/// native root holding both and `dev/null`.
fn trees(work: &Path) {
    for root in [work.join("root"), work.to_path_buf()] {
        std::fs::create_dir_all(root.join("a/sub")).unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("a/one"), "1\n").unwrap();
        std::fs::write(root.join("a/sub/two"), "2\n").unwrap();
        std::fs::write(root.join("b/three"), "3\n").unwrap();
    }
    // kvmini lists `/dev`, which holds `null`, where no grant holds it.
    std::fs::create_dir_all(work.join("root/dev")).unwrap();
    std::fs::write(work.join("root/dev/null"), "").unwrap();
}

/// busybox `applet` natively in `dir`.
fn native(dir: &Path, applet: &[&str]) -> (i32, String, String) {
    let ran = Command::new(BUSYBOX)
        .args(applet)
        .current_dir(dir)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    outcome(&ran)
}

/// busybox `applet` in kvmini with `work`'s a/ at /a and b/ at /b.
fn sandboxed(work: &Path, applet: &[&str]) -> (i32, String, String) {
    let a = format!("{}:/a", work.join("a").display());
    let b = format!("{}:/b:ro", work.join("b").display());
    let mut args = vec!["--dir", &a, "--dir", &b, BUSYBOX, "--"];
    args.extend_from_slice(applet);
    outcome(&in_kvmini(&args))
}

#[test]
fn ls_and_find_of_the_root_see_the_mount_points_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    trees(work.path());
    let root = work.path().join("root");
    let listed = sandboxed(work.path(), &["ls", "/"]);
    assert_eq!(listed, native(&root, &["ls", "."]));
    assert_eq!(listed, (0, "a\nb\ndev\n".to_owned(), String::new()));
    let found = sandboxed(work.path(), &["find", "/"]);
    let natively = native(&root, &["find", "."]).1;
    // Natively in the host's directory order; kvmini lists mount points
    // sorted.
    let mut natively: Vec<String> = natively
        .lines()
        .map(|line| match line.strip_prefix("./") {
            Some(rest) => format!("/{rest}\n"),
            None => "/\n".to_owned(),
        })
        .collect();
    natively.sort();
    assert_eq!(found, (0, natively.concat(), String::new()));
    assert_eq!(
        found.1,
        "/\n/a\n/a/one\n/a/sub\n/a/sub/two\n/b\n/b/three\n/dev\n/dev/null\n"
    );
    assert_eq!(
        sandboxed(work.path(), &["ls", "/missing"]),
        native(&root, &["ls", "/missing"])
    );
}

#[test]
fn ls_la_of_the_root_shows_a_read_only_directory_and_its_mount_points() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    trees(work.path());
    let (status, out, err) = sandboxed(work.path(), &["ls", "-la", "/"]);
    assert_eq!((status, err.as_str()), (0, ""));
    let shape: Vec<(String, String)> = out
        .lines()
        .skip(1)
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words[0].to_owned(), words[words.len() - 1].to_owned())
        })
        .collect();
    let pair = |mode: &str, name: &str| (mode.to_owned(), name.to_owned());
    assert_eq!(
        shape,
        [
            pair("dr-xr-xr-x", "."),
            pair("dr-xr-xr-x", ".."),
            pair("drwxr-xr-x", "a"),
            pair("drwxr-xr-x", "b"),
            pair("dr-xr-xr-x", "dev"),
        ],
        "{out}"
    );
    assert_eq!(
        sandboxed(work.path(), &["stat", "-c", "%F %a %u", "/"]),
        (0, "directory 555 0\n".to_owned(), String::new())
    );
}

#[test]
fn a_directory_above_a_grant_lists_its_mount_point_and_can_be_entered() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let grant = format!("{}:/mnt/data", work.path().display());
    let run = |words: &[&str]| {
        let mut args = vec!["--dir", &grant, BUSYBOX, "--"];
        args.extend_from_slice(words);
        outcome(&in_kvmini(&args))
    };
    let ok = |out: &str| (0, out.to_owned(), String::new());
    assert_eq!(run(&["ls", "/mnt"]), ok("data\n"));
    assert_eq!(run(&["ls", "/"]), ok("dev\nmnt\n"));
    // `/dev` holds the device, listed as one.
    assert_eq!(run(&["ls", "/dev"]), ok("null\n"));
    let (status, long, err) = run(&["ls", "-l", "/dev"]);
    assert_eq!((status, err.as_str()), (0, ""));
    assert!(
        long.lines().nth(1).unwrap().starts_with("crw-rw-rw-"),
        "{long}"
    );
    // Builtins only: busybox's sh forks for other applets.
    assert_eq!(
        run(&[
            "sh",
            "-c",
            "cd /mnt && pwd && cd / && pwd && cd mnt/data && pwd"
        ]),
        ok("/mnt\n/\n/mnt/data\n")
    );
    // Without any grant, `/` holds only `/dev`.
    let alone = outcome(&in_kvmini(&[BUSYBOX, "--", "ls", "-a", "/"]));
    assert_eq!(alone, ok(".\n..\ndev\n"));
}

#[test]
fn changes_above_the_grants_are_erofs_as_on_a_read_only_mount() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    trees(work.path());
    let refused = |applet: &[&str], message: &str| {
        assert_eq!(
            sandboxed(work.path(), applet),
            (1, String::new(), message.to_owned()),
            "{applet:?}"
        );
    };
    refused(
        &["mkdir", "/new"],
        "mkdir: can't create directory '/new': Read-only file system\n",
    );
    refused(&["touch", "/new"], "touch: /new: Read-only file system\n");
    refused(
        &["mv", "/a/one", "/one"],
        "mv: can't rename '/a/one': Read-only file system\n",
    );
    // The grants themselves are unchanged.
    assert_eq!(
        std::fs::read_to_string(work.path().join("a/one")).unwrap(),
        "1\n"
    );
}
