//! Linux programs' environment, working directory and directory
//! descriptors through the `kvmini` binary, each compared with the same
//! program run natively on a copy of the same tree (docs/linux.md,
//! "Descriptors and directories").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{kvm_or_skip, kvmini};

const BUSYBOX: &str = "/usr/bin/busybox";

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

use common::linux_build::musl;

/// A tree: a/f, a/b/g.
fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/f"), "file-f\n").unwrap();
    std::fs::write(root.join("a/b/g"), "file-g\n").unwrap();
}

fn run_kvmini(args: &[&str]) -> Output {
    kvmini()
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .env_clear()
        .output()
        .unwrap()
}

fn outcome(out: &Output) -> (Option<i32>, String, String) {
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn relative_paths_the_cwd_and_directory_descriptors_resolve_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("dirs.c", work.path());
    let (native_tree, sandbox_tree) = (work.path().join("native"), work.path().join("sandbox"));
    tree(&native_tree);
    tree(&sandbox_tree);
    let native = Command::new(&program)
        .current_dir(&native_tree)
        .output()
        .unwrap();
    let inside = run_kvmini(&[
        "--dir",
        sandbox_tree.to_str().unwrap(),
        program.to_str().unwrap(),
    ]);
    assert_eq!(native.status.code(), Some(0), "{}", text(&native.stderr));
    // The program checks every class: relative opens, `..`, openat and
    // newfstatat from a directory descriptor, from a file (ENOTDIR), from
    // a closed one (EBADF), from a standard stream; creating from one;
    // chdir, fchdir, chdir to nothing, to a file, and getcwd's ERANGE.
    assert!(text(&native.stdout).contains("openat(a, b/g): file-g"));
    assert_eq!(outcome(&inside), outcome(&native));
    assert_eq!(
        std::fs::read(sandbox_tree.join("a/new")).unwrap(),
        std::fs::read(native_tree.join("a/new")).unwrap()
    );
}

#[test]
fn pwd_prints_the_working_directory_given_with_cwd() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    tree(work.path());
    let dir = format!("{}:/data:ro", work.path().display());
    for (cwd, expected) in [
        (None, "/\n"),
        (Some("/"), "/\n"),
        (Some("/data"), "/data\n"),
        (Some("/data/a/b/.."), "/data/a\n"),
        (Some("//data//a/./b/"), "/data/a/b\n"),
    ] {
        let mut args = vec!["--dir", &dir];
        if let Some(cwd) = cwd {
            args.extend(["--cwd", cwd]);
        }
        args.extend([BUSYBOX, "--", "pwd"]);
        assert_eq!(
            outcome(&run_kvmini(&args)),
            (Some(0), expected.to_owned(), String::new()),
            "--cwd {cwd:?}"
        );
    }
    // Natively from the same directory, relative paths read the same.
    let native = Command::new(BUSYBOX)
        .current_dir(work.path().join("a"))
        .args(["cat", "f", "b/g", "../a/f"])
        .output()
        .unwrap();
    let inside = run_kvmini(&[
        "--dir", &dir, "--cwd", "/data/a", BUSYBOX, "--", "cat", "f", "b/g", "../a/f",
    ]);
    assert_eq!(text(&native.stdout), "file-f\nfile-g\nfile-f\n");
    assert_eq!(outcome(&inside), outcome(&native));
}

#[test]
fn a_cwd_that_is_not_a_directory_under_a_grant_is_refused() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    tree(work.path());
    let dir = format!("{}:/data", work.path().display());
    for (cwd, errno) in [
        ("/data/missing", "ENOENT (2)"),
        ("/data/a/f", "ENOTDIR (20)"),
        ("data/a", "ENOENT (2)"),
        ("/elsewhere", "ENOENT (2)"),
    ] {
        let out = run_kvmini(&["--dir", &dir, "--cwd", cwd, BUSYBOX, "--", "pwd"]);
        assert_eq!(
            outcome(&out),
            (
                Some(125),
                String::new(),
                format!(
                    "kvmini: cannot start in working directory {cwd}: {errno} \
                     (an absolute path under a grant, or /)\n"
                )
            )
        );
    }
}

#[test]
fn env_sets_variables_and_copies_the_hosts_as_env_i_does_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let inside = kvmini()
        .args([
            "run",
            "--env",
            "A=1",
            "--env",
            "FROM_HOST",
            "--env",
            "NOT_ON_HOST",
            "--env",
            "EMPTY=",
            "--env",
            "EQ=x=y",
            "--env",
            "A=2",
            BUSYBOX,
            "--",
            "env",
        ])
        .env_clear()
        .env("FROM_HOST", "host value")
        .env("NOT_PASSED", "secret")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // Natively, `env -i` sets the same variables in the same order.
    let native = Command::new(BUSYBOX)
        .args([
            "env",
            "-i",
            "FROM_HOST=host value",
            "EMPTY=",
            "EQ=x=y",
            "A=2",
        ])
        .args([BUSYBOX, "env"])
        .output()
        .unwrap();
    assert_eq!(
        text(&native.stdout),
        "FROM_HOST=host value\nEMPTY=\nEQ=x=y\nA=2\n"
    );
    assert_eq!(outcome(&inside), outcome(&native));
    // Without --env the environment is empty, whatever kvmini's is.
    let bare = kvmini()
        .args(["run", BUSYBOX, "--", "env"])
        .env("NOT_PASSED", "secret")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(outcome(&bare), (Some(0), String::new(), String::new()));
    let nameless = run_kvmini(&["--env", "=x", BUSYBOX, "--", "env"]);
    assert_eq!(
        outcome(&nameless),
        (
            Some(125),
            String::new(),
            "kvmini: --env =x: the variable needs a name (NAME=VALUE or NAME)\n".to_owned()
        )
    );
}

/// A tree for the applets: text to sort, cut and search, and a directory.
fn applet_tree(root: &Path) {
    std::fs::create_dir_all(root.join("d/e")).unwrap();
    std::fs::write(
        root.join("words.txt"),
        "pear 3\napple 1\npear 3\nfig 2\napple 1\nkiwi 9\n",
    )
    .unwrap();
    std::fs::write(root.join("csv.txt"), "a,b,c\n1,2,3\nx,,z\n").unwrap();
    std::fs::write(root.join("d/one"), "one\n").unwrap();
    std::fs::write(root.join("d/e/two"), "two\n").unwrap();
}

/// Every file under `root` with its contents (directories as `None`),
/// sorted by path.
fn snapshot(root: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                out.push((rel, None));
                stack.push(path);
            } else {
                out.push((rel, Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

/// Runs busybox `applet` natively in one copy of the tree and in kvmini
/// with another copy granted at `/` (read-only with `ro`): status,
/// output and the trees afterwards must be the same.
fn compare_applet(words: &[&str], ro: bool) -> (Option<i32>, String, String) {
    let work = tempfile::tempdir().unwrap();
    let (native_tree, sandbox_tree) = (work.path().join("n"), work.path().join("k"));
    applet_tree(&native_tree);
    applet_tree(&sandbox_tree);
    let native = Command::new(BUSYBOX)
        .args(words)
        .current_dir(&native_tree)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let dir = format!("{}{}", sandbox_tree.display(), if ro { ":ro" } else { "" });
    let mut args = vec!["--dir", &dir, BUSYBOX, "--"];
    args.extend(words);
    let inside = run_kvmini(&args);
    assert_eq!(outcome(&inside), outcome(&native), "busybox {words:?}");
    assert_eq!(
        snapshot(&sandbox_tree),
        snapshot(&native_tree),
        "busybox {words:?}"
    );
    outcome(&native)
}

#[test]
fn busybox_applets_change_a_granted_tree_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    for words in [
        &["mkdir", "new"][..],
        &["mkdir", "-p", "p/q/r"],
        &["mkdir", "d"],
        &["mkdir", "missing/x"],
        &["cp", "words.txt", "copy.txt"],
        &["mv", "words.txt", "d/e/moved.txt"],
        &["mv", "d", "renamed"],
        &["rm", "csv.txt"],
        &["rm", "-r", "d"],
        &["rm", "missing"],
        &["rm", "d"],
        &["rmdir", "d/e"],
        &["ls", "-ln", "d/e"],
        &["ls", "-1", "-R", "d"],
        &["sort", "words.txt"],
        &["sort", "-o", "sorted.txt", "-r", "words.txt"],
        &["uniq", "-c", "words.txt"],
        &["cut", "-d,", "-f2", "csv.txt"],
        &["tr", "a-z", "A-Z"],
        &["grep", "-n", "pear", "words.txt"],
        &["grep", "-r", "two", "d"],
        &["grep", "none", "words.txt"],
        &["seq", "3", "2", "11"],
        &["date", "+%Y-%m"],
        &["sed", "-i", "s/pear/plum/", "words.txt"],
        &["sed", "-n", "2p", "csv.txt"],
    ] {
        compare_applet(words, false);
    }
}

#[test]
fn a_read_only_grant_refuses_changes_as_a_read_only_mount_does() {
    if kvm_or_skip().is_none() {
        return;
    }
    for (words, message) in [
        (
            &["mkdir", "new"][..],
            "mkdir: can't create directory 'new': Read-only file system\n",
        ),
        (
            &["rm", "csv.txt"],
            "rm: can't remove 'csv.txt': Read-only file system\n",
        ),
        (&["rmdir", "d/e"], "rmdir: 'd/e': Read-only file system\n"),
        (
            &["mv", "csv.txt", "x"],
            "mv: can't rename 'csv.txt': Read-only file system\n",
        ),
        (
            &["cp", "csv.txt", "x"],
            "cp: can't create 'x': Read-only file system\n",
        ),
    ] {
        let work = tempfile::tempdir().unwrap();
        applet_tree(work.path());
        let before = snapshot(work.path());
        let dir = format!("{}:ro", work.path().display());
        let mut args = vec!["--dir", &dir, BUSYBOX, "--"];
        args.extend(words);
        assert_eq!(
            outcome(&run_kvmini(&args)),
            (Some(1), String::new(), message.to_owned()),
            "busybox {words:?}"
        );
        assert_eq!(snapshot(work.path()), before);
    }
}

#[test]
fn descriptors_and_names_behave_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("fds.c", work.path());
    let (native_tree, sandbox_tree) = (work.path().join("native"), work.path().join("sandbox"));
    std::fs::create_dir(&native_tree).unwrap();
    std::fs::create_dir(&sandbox_tree).unwrap();
    let native = Command::new(&program)
        .current_dir(&native_tree)
        .output()
        .unwrap();
    let inside = run_kvmini(&[
        "--dir",
        sandbox_tree.to_str().unwrap(),
        program.to_str().unwrap(),
    ]);
    assert_eq!(native.status.code(), Some(0), "{}", text(&native.stderr));
    // umask, fcntl's flags, dup/dup2/dup3/F_DUPFD and their errors, a
    // shared offset, ftruncate, fsync, mkdirat, renameat, unlinkat,
    // getdents64 (through readdir), rmdir, unlink.
    assert!(text(&native.stdout).contains("dup shares the offset = 1"));
    assert_eq!(outcome(&inside), outcome(&native));
    assert_eq!(snapshot(&sandbox_tree), snapshot(&native_tree));
}

#[test]
fn links_device_nodes_and_whiteouts_are_refused_with_eperm() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("fds.c", work.path());
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), "f").unwrap();
    let inside = run_kvmini(&[
        "--dir",
        tree.to_str().unwrap(),
        program.to_str().unwrap(),
        "--",
        "refused",
    ]);
    assert_eq!(
        outcome(&inside),
        (
            Some(0),
            "symlink = -1 Operation not permitted\nlink = -1 Operation not permitted\n\
             mknod = -1 Operation not permitted\nrenameat2 whiteout = -1 Operation not permitted\n"
                .to_owned(),
            String::new()
        )
    );
    assert_eq!(
        snapshot(&tree),
        vec![(PathBuf::from("f"), Some(b"f".to_vec()))]
    );
}

#[test]
fn o_nonblock_on_descriptor_1_stays_the_programs_own() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("fds.c", work.path());
    // kvmini and then a native program write to one pipe: had kvmini set
    // O_NONBLOCK on its own descriptor 1, the native one would see it.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" run "$1" -- nonblock && "$1" getfl"#)
        .arg(env!("CARGO_BIN_EXE_kvmini"))
        .arg(&program)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        outcome(&out),
        (
            Some(0),
            "F_SETFL(1, O_NONBLOCK) = 0\nF_GETFL(1) has O_NONBLOCK = 1\n\
             F_GETFL(1) has O_NONBLOCK = 0\n"
                .to_owned(),
            String::new()
        )
    );
}

#[test]
fn readlink_reads_links_beneath_the_grant_and_proc_self_exe_names_the_program() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("fds.c", work.path());
    let (native_tree, sandbox_tree) = (work.path().join("native"), work.path().join("sandbox"));
    for tree in [&native_tree, &sandbox_tree] {
        std::fs::create_dir(tree).unwrap();
        std::fs::write(tree.join("file"), "x").unwrap();
        std::os::unix::fs::symlink("some/target/../file", tree.join("link")).unwrap();
    }
    let native = Command::new(&program)
        .arg("readlink")
        .current_dir(&native_tree)
        .output()
        .unwrap();
    let sandbox = sandbox_tree.to_str().unwrap();
    let path = program.to_str().unwrap();
    let inside = run_kvmini(&["--dir", sandbox, path, "--", "readlink"]);
    assert!(text(&native.stdout).starts_with("link = some/target/../file\n"));
    assert_eq!(outcome(&inside), outcome(&native));
    let exe = run_kvmini(&["--dir", sandbox, path, "--", "readlink", "exe"]);
    assert_eq!(
        text(&exe.stdout),
        format!("exe = {path}\n{}", text(&native.stdout))
    );
}

#[test]
fn access_for_writing_under_a_read_only_grant_is_erofs() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("fds.c", work.path());
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), "f").unwrap();
    let dir = format!("{}:ro", tree.display());
    let out = run_kvmini(&["--dir", &dir, program.to_str().unwrap(), "--", "rofs"]);
    assert_eq!(
        outcome(&out),
        (
            Some(0),
            "access(f, W_OK) = -1 Read-only file system\naccess(f, R_OK) = 0\n".to_owned(),
            String::new()
        )
    );
}
