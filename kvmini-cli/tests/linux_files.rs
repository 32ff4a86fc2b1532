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

/// Builds kvmini/tests/linux/`source` with `musl-gcc -static` into `dir`.
fn musl(source: &str, dir: &Path) -> PathBuf {
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
