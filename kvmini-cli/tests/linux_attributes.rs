//! The calls that change a file's mode, owner, times and size, and
//! renameat2's flags, through the `kvmini` binary: a musl program and
//! busybox applets (`cp -p`, `cp -r`, `cp -a`, `touch`, `chmod`,
//! `truncate`) run in kvmini and natively on copies of one tree, output,
//! status and the resulting trees (modes, sizes, times) compared
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
use linux_native::{in_kvmini, musl, outcome, BUSYBOX};

/// The tree attrs.c works on: f, g, x, y, d/ and link -> f, all dated
/// 2023-11-14 (1700000000).
fn attrs_tree(root: &Path) {
    std::fs::create_dir_all(root.join("d")).unwrap();
    for (name, text) in [
        ("f", "hello\n"),
        ("g", "gee\n"),
        ("x", "xx\n"),
        ("y", "yy\n"),
    ] {
        std::fs::write(root.join(name), text).unwrap();
    }
    std::os::unix::fs::symlink("f", root.join("link")).unwrap();
    for name in ["f", "g", "x", "y", "d"] {
        date(&root.join(name), 1_700_000_000);
    }
}

/// Sets the access and modification times of `path` to `secs`.
fn date(path: &Path, secs: u64) {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let file = std::fs::File::options().read(true).open(path).unwrap();
    file.set_times(
        std::fs::FileTimes::new()
            .set_accessed(when)
            .set_modified(when),
    )
    .unwrap();
}

/// Every entry under `root`, sorted: its path, kind, permission bits,
/// size (files) and modification time; a time after 2023-11-14 (what a
/// run made now, which differs between runs) as "recent".
fn snapshot(root: &Path) -> Vec<String> {
    let mut entries = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            let kind = if meta.is_dir() {
                stack.push(entry.path());
                "dir"
            } else if meta.file_type().is_symlink() {
                "link"
            } else {
                "file"
            };
            let size = if kind == "file" { meta.size() } else { 0 };
            let time = if meta.mtime() > 1_700_000_000 {
                "recent".to_owned()
            } else {
                format!("{}.{:09}", meta.mtime(), meta.mtime_nsec())
            };
            let path = entry.path();
            let name = path.strip_prefix(root).unwrap().display();
            entries.push(format!(
                "{name} {kind} {:o} {size} {time}",
                meta.mode() & 0o7777
            ));
        }
    }
    entries.sort();
    entries
}

#[test]
fn chmod_truncate_utimensat_and_renameat2_change_files_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("attrs.c", work.path());
    let (native_tree, sandbox_tree) = (work.path().join("native"), work.path().join("sandbox"));
    attrs_tree(&native_tree);
    attrs_tree(&sandbox_tree);
    let native = Command::new(&program)
        .current_dir(&native_tree)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let guest = in_kvmini(&[
        "--dir",
        sandbox_tree.to_str().unwrap(),
        program.to_str().unwrap(),
    ]);
    let native = outcome(&native);
    assert_eq!(native.0, 0, "{native:?}");
    for line in [
        "fchmodat2_nofollow_link=-1 errno=Not supported\n",
        "f: mode=604 size=3 atime=1000000000.000000005 mtime=1300000000.000000009\n",
        "d: mode=700 size=4096 atime=1500000000.000007000 mtime=1600000000.000008000\n",
        "renameat2_noreplace_exists=-1 errno=File exists\n",
        "x2 holds \"yy\n\" (3)\n",
    ] {
        assert!(native.1.contains(line), "natively: {line}\n{}", native.1);
    }
    assert_eq!(outcome(&guest), native);
    assert_eq!(snapshot(&sandbox_tree), snapshot(&native_tree));
}

#[test]
fn set_id_bits_are_dropped_by_chmod() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("attrs.c", work.path());
    let (native_tree, sandbox_tree) = (work.path().join("native"), work.path().join("sandbox"));
    attrs_tree(&native_tree);
    attrs_tree(&sandbox_tree);
    let native = Command::new(&program)
        .arg("setid")
        .current_dir(&native_tree)
        .output()
        .unwrap();
    assert_eq!(
        outcome(&native),
        (
            0,
            "chmod_setid=0 errno=-\nf: mode=6755 size=6\n".to_owned(),
            String::new()
        )
    );
    // The difference from Linux: the call succeeds without the set-ID bits.
    let guest = in_kvmini(&[
        "--dir",
        sandbox_tree.to_str().unwrap(),
        program.to_str().unwrap(),
        "--",
        "setid",
    ]);
    assert_eq!(
        outcome(&guest),
        (
            0,
            "chmod_setid=0 errno=-\nf: mode=755 size=6\n".to_owned(),
            String::new()
        )
    );
}

#[test]
fn a_read_only_grant_refuses_attribute_changes_with_erofs() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("attrs.c", work.path());
    let tree = work.path().join("tree");
    attrs_tree(&tree);
    let before = snapshot(&tree);
    let guest = in_kvmini(&[
        "--dir",
        &format!("{}:/:ro", tree.display()),
        program.to_str().unwrap(),
        "--",
        "ro",
    ]);
    assert_eq!(
        outcome(&guest),
        (
            0,
            "chmod=-1 errno=Read-only file system\n\
             truncate=-1 errno=Read-only file system\n\
             utimensat=-1 errno=Read-only file system\n\
             chown_same=-1 errno=Read-only file system\n\
             fchmod=-1 errno=Read-only file system\n\
             futimens=-1 errno=Read-only file system\n\
             renameat2_noreplace=-1 errno=Read-only file system\n\
             chmod_missing=-1 errno=No such file or directory\n"
                .to_owned(),
            String::new()
        )
    );
    assert_eq!(snapshot(&tree), before);
}

/// src/a (640), src/sub/ (700), src/sub/b, out/; all dated 2020-09-13.
fn copy_tree(root: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(root.join("src/sub")).unwrap();
    std::fs::create_dir_all(root.join("out")).unwrap();
    std::fs::write(root.join("src/a"), "hello\n").unwrap();
    std::fs::write(root.join("src/sub/b"), "b\n").unwrap();
    let mode = |path: &str, bits| {
        std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(bits)).unwrap();
    };
    mode("src/a", 0o640);
    mode("src/sub", 0o700);
    for path in ["src/a", "src/sub/b", "src/sub", "src"] {
        date(&root.join(path), 1_600_000_000);
    }
}

#[test]
fn busybox_cp_p_cp_r_touch_chmod_and_truncate_change_a_tree_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (native_tree, sandbox_tree) = (work.path().join("native"), work.path().join("sandbox"));
    copy_tree(&native_tree);
    copy_tree(&sandbox_tree);
    let steps: &[&[&str]] = &[
        &["cp", "-p", "src/a", "out/a_p"],
        &["cp", "-r", "src", "out/r"],
        &["cp", "-a", "src", "out/a"],
        &["touch", "-d", "2001-02-03 04:05:06", "src/a"],
        &["touch", "out/new"],
        &["chmod", "600", "src/sub/b"],
        &["chmod", "-R", "go-rwx", "src"],
        &["truncate", "-s", "2", "src/a"],
        &["ls", "-ln", "out/a_p"],
        &["cp", "-p", "missing", "out/"],
    ];
    for step in steps {
        let native = Command::new(BUSYBOX)
            .args(*step)
            .current_dir(&native_tree)
            .env_clear()
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut args = vec![
            "--dir",
            sandbox_tree.to_str().unwrap(),
            "--env",
            "TZ=UTC",
            BUSYBOX,
            "--",
        ];
        args.extend_from_slice(step);
        let guest = in_kvmini(&args);
        assert_eq!(outcome(&guest), outcome(&native), "{step:?}");
        assert_eq!(
            snapshot(&sandbox_tree),
            snapshot(&native_tree),
            "after {step:?}"
        );
    }
    // What cp -p kept, and what touch -d set, are in the trees compared.
    let tree = snapshot(&sandbox_tree);
    assert!(
        tree.contains(&"out/a_p file 640 6 1600000000.000000000".to_owned()),
        "{tree:?}"
    );
    assert!(
        tree.contains(&"out/a/sub dir 700 0 1600000000.000000000".to_owned()),
        "{tree:?}"
    );
    assert!(
        tree.contains(&"src/a file 600 2 recent".to_owned()),
        "{tree:?}"
    );
}

#[test]
fn a_read_only_grant_reached_through_a_writable_one_is_decided_by_identity() {
    if kvm_or_skip().is_none() {
        return;
    }
    // T is writable at /; T/ro is granted again, read-only, at /ro. The
    // symlinks T/lnk -> ro/f and T/via -> ro reach the read-only directory
    // by paths under the writable grant: the directory itself decides.
    let work = tempfile::tempdir().unwrap();
    let tree = work.path();
    std::fs::create_dir(tree.join("ro")).unwrap();
    std::fs::write(tree.join("ro/f"), "data\n").unwrap();
    date(&tree.join("ro/f"), 1_600_000_000);
    std::os::unix::fs::symlink("ro/f", tree.join("lnk")).unwrap();
    std::os::unix::fs::symlink("ro", tree.join("via")).unwrap();
    let before = snapshot(&tree.join("ro"));
    let (outer, inner) = (
        format!("{}:/", tree.display()),
        format!("{}:/ro:ro", tree.join("ro").display()),
    );
    for (command, stderr) in [
        ("chmod 600 /lnk", "chmod: /lnk: Read-only file system\n"),
        ("chmod 600 /via/f", "chmod: /via/f: Read-only file system\n"),
        ("touch /via/f", "touch: /via/f: Read-only file system\n"),
        (
            "touch -d 2001-02-03 /lnk",
            "touch: /lnk: Read-only file system\n",
        ),
        ("chown 0 /via/f", "chown: /via/f: Read-only file system\n"),
    ] {
        let mut args = vec!["--dir", &outer, "--dir", &inner, BUSYBOX, "--"];
        args.extend(command.split(' '));
        assert_eq!(
            outcome(&in_kvmini(&args)),
            (1, String::new(), stderr.to_owned()),
            "{command}"
        );
    }
    // A descriptor opened for reading through the writable grant's path
    // changes nothing either.
    let program = musl("attrs.c", work.path());
    for path in ["/via/f", "/lnk", "/ro/f"] {
        let guest = in_kvmini(&[
            "--dir",
            &outer,
            "--dir",
            &inner,
            program.to_str().unwrap(),
            "--",
            "fd",
            path,
        ]);
        assert_eq!(
            outcome(&guest),
            (
                0,
                "open=3 errno=-\n\
                 fchmod=-1 errno=Read-only file system\n\
                 futimens=-1 errno=Read-only file system\n\
                 fchown_same=-1 errno=Read-only file system\n"
                    .to_owned(),
                String::new()
            ),
            "{path}"
        );
    }
    assert_eq!(snapshot(&tree.join("ro")), before);
}

#[test]
fn statx_answers_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("statx.c", work.path());
    let (native_tree, sandbox_tree) = (work.path().join("native"), work.path().join("sandbox"));
    for tree in [&native_tree, &sandbox_tree] {
        std::fs::create_dir_all(tree.join("d")).unwrap();
        std::fs::write(tree.join("f"), "hello\n").unwrap();
        std::os::unix::fs::symlink("f", tree.join("link")).unwrap();
        date(&tree.join("f"), 1_600_000_000);
    }
    let native = Command::new(&program)
        .current_dir(&native_tree)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let guest = in_kvmini(&[
        "--dir",
        sandbox_tree.to_str().unwrap(),
        program.to_str().unwrap(),
    ]);
    let expected = "f: basic=1 type=100000 perm=644 size=6 nlink=1 mine=1 mtime=1600000000\n\
                    link: basic=1 type=100000 perm=644 size=6 nlink=1 mine=1 mtime=1600000000\n\
                    link_nofollow: basic=1 type=120000 perm=777 size=1 nlink=1 mine=1 mtime=0\n\
                    d: basic=1 type=40000 perm=755 size=4096 nlink=2 mine=1 mtime=0\n\
                    fd_empty_path: basic=1 type=100000 perm=644 size=6 nlink=1 mine=1 mtime=1600000000\n\
                    from_dirfd: basic=1 type=100000 perm=644 size=6 nlink=1 mine=1 mtime=1600000000\n\
                    missing: No such file or directory\n\
                    empty_without_flag: No such file or directory\n\
                    bad_flags: Invalid argument\n\
                    bad_buffer: Bad address\n";
    assert_eq!(outcome(&native), (0, expected.to_owned(), String::new()));
    assert_eq!(outcome(&guest), outcome(&native));
}
