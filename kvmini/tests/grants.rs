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
mod fs_common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{kvm_or_skip, run_config};
use fs_common::{build_guest, make_dir, make_symlink, snapshot, write_file};
use kvmini::grant::GrantError;
use kvmini::sandbox::{BuildError, Ending, Sandbox, SandboxError};

const MEM: u64 = 16 << 20;

/// One grant: host directory, guest path, read-only.
type Grant<'a> = (&'a Path, &'a str, bool);

/// Runs grants.c with `grants` and the steps of `script`, and checks that
/// it printed `STEP = RESULT` for each `(STEP, RESULT)`, exited 0 and
/// printed no warning. `None` when KVM is missing.
fn check(grants: &[Grant<'_>], script: &[(&str, &str)]) -> Option<()> {
    let build = tempfile::tempdir().expect("temp dir");
    let elf = build_guest("grants", &[], build.path());
    let kvm = kvm_or_skip()?;
    let mut builder = Sandbox::builder().elf(elf).memory(MEM);
    for &(host, guest, read_only) in grants {
        builder = builder.dir(host, guest, read_only);
    }
    builder = builder.args(std::iter::once("grants").chain(script.iter().map(|(step, _)| *step)));
    let run = run_config(&kvm, builder);
    let out = run.stdout_text();
    assert_eq!(run.outcome.ending, Ending::Exited(0), "{out}");
    assert_eq!(run.warnings_text(), "");
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), script.len(), "{out}");
    for (line, (step, result)) in got.iter().zip(script) {
        assert_eq!(*line, format!("{step} = {result}"));
    }
    Some(())
}

/// A temp dir with `root/` (the outer grant) in it.
fn root() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("root");
    make_dir(&root, 0o755);
    (tmp, root)
}

/// A read-only tree at `dir`: secret.txt ("secret"), sub/f.txt ("f"),
/// empty/.
fn read_only_tree(dir: &Path) {
    make_dir(dir, 0o755);
    write_file(&dir.join("secret.txt"), b"secret", 0o644);
    make_dir(&dir.join("sub"), 0o755);
    write_file(&dir.join("sub/f.txt"), b"f", 0o644);
    make_dir(&dir.join("empty"), 0o755);
}

/// Every change a guest could make to the existing file `path`, and that
/// it can still read it: all refused with EROFS.
fn file_changes(path: &str) -> Vec<(String, &'static str)> {
    let steps = [
        ("write:{}:x", "EROFS"),
        ("append:{}:x", "EROFS"),
        ("trunc:{}:0", "EROFS"),
        ("rdwr:{}:x", "EROFS"),
        // O_WRONLY, O_RDWR, O_RDONLY|O_TRUNC, O_WRONLY|O_CREAT|O_TRUNC
        ("open:{}:1:0", "EROFS"),
        ("open:{}:2:0", "EROFS"),
        ("open:{}:1000:0", "EROFS"),
        ("open:{}:1101:644", "EROFS"),
        // O_CREAT on an existing file opens it; O_CREAT|O_EXCL: EEXIST.
        ("open:{}:100:644", "0"),
        ("open:{}:300:644", "EEXIST"),
        // A descriptor opened for reading writes nothing (the kernel's
        // answers).
        ("rowrite:{}:x", "EBADF"),
        ("rotrunc:{}:0", "EINVAL"),
        ("cat:{}", "\"secret\""),
    ];
    steps
        .iter()
        .map(|(step, result)| (step.replace("{}", path), *result))
        .collect()
}

fn as_script<'a>(steps: &'a [(String, &'static str)]) -> Vec<(&'a str, &'a str)> {
    steps.iter().map(|(s, r)| (s.as_str(), *r)).collect()
}

#[test]
fn renaming_parents_of_a_read_only_grant_is_refused_at_every_depth() {
    let (_tmp, root) = root();
    make_dir(&root.join("a"), 0o755);
    make_dir(&root.join("a/b"), 0o755);
    read_only_tree(&root.join("a/b/c"));
    write_file(&root.join("a/other.txt"), b"o", 0o644);
    write_file(&root.join("x.txt"), b"x", 0o644);
    make_symlink("a/b", &root.join("ab"));
    let ro = root.join("a/b/c");
    let before = snapshot(&ro);
    check(
        &[(&root, "/", false), (&ro, "/a/b/c", true)],
        &[
            // The attack: move the grant's parent, write through the new
            // name, move it back.
            ("rename:/a:/c", "EBUSY"),
            ("write:/c/b/c/secret.txt:overwritten", "ENOENT"),
            // Every directory above the grant, at every depth.
            ("rename:/a:/z", "EBUSY"),
            ("rename:/a/b:/a/y", "EBUSY"),
            ("rename:/a/b:/y", "EBUSY"),
            ("rmdir:/a", "EBUSY"),
            ("rmdir:/a/b", "EBUSY"),
            // Nor is one replaced.
            ("mkdir:/e:755", "0"),
            ("rename:/e:/a", "EBUSY"),
            ("rename:/e:/a/b", "EBUSY"),
            ("rename:/x.txt:/a/b", "EBUSY"),
            // The grant's own directory, by its path, and by its name in
            // the outer grant (through a link to its parent).
            ("rename:/a/b/c:/a/b/q", "EROFS"),
            ("rmdir:/a/b/c", "EROFS"),
            ("rename:/ab/c:/ab/q", "EBUSY"),
            ("rename:/ab/c:/moved", "EBUSY"),
            ("rmdir:/ab/c", "EBUSY"),
            ("rename:/e:/ab/c", "EBUSY"),
            ("write:/a/b/c/secret.txt:overwritten", "EROFS"),
            // What is beside the grant's ancestors still changes.
            ("rename:/a/other.txt:/a/moved.txt", "0"),
            ("mkdir:/a/b/new:755", "0"),
            ("rename:/a/b/new:/a/new", "0"),
            ("rmdir:/a/new", "0"),
            ("rmdir:/e", "0"),
            ("cat:/a/b/c/secret.txt", "\"secret\""),
        ],
    );
    assert_eq!(snapshot(&ro), before);
    assert!(root.join("a/moved.txt").is_file());
}

#[test]
fn symlinks_into_a_read_only_grant_change_nothing() {
    let (_tmp, root) = root();
    let ro = root.join("ro");
    read_only_tree(&ro);
    write_file(&root.join("x.txt"), b"x", 0o644);
    make_dir(&root.join("s"), 0o755);
    // Links in the writable grant, each another name for something in
    // the read-only one.
    make_symlink("ro", &root.join("l"));
    make_symlink("ro/secret.txt", &root.join("f"));
    make_symlink("ro/../ro/./secret.txt", &root.join("g"));
    make_symlink("f", &root.join("h"));
    make_symlink("../ro", &root.join("s/k"));
    make_symlink("s/k/sub", &root.join("deep"));
    make_symlink("ro/new.txt", &root.join("dangling"));
    make_symlink("/ro/secret.txt", &root.join("abs"));
    make_symlink("loop", &root.join("loop"));
    // c0 -> c1 -> ... -> c39 -> ro/secret.txt: the 40 links Linux follows;
    // c40 -> c0 is one too many.
    for i in 0..40 {
        let target = if i == 39 {
            "ro/secret.txt".to_owned()
        } else {
            format!("c{}", i + 1)
        };
        make_symlink(target, &root.join(format!("c{i}")));
    }
    make_symlink("c0", &root.join("c40"));
    let before = snapshot(&ro);
    let mut steps = Vec::new();
    for path in ["/l/secret.txt", "/f", "/g", "/h", "/s/k/secret.txt"] {
        steps.extend(file_changes(path));
    }
    let more: &[(&str, &'static str)] = &[
        ("write:/l/new.txt:x", "EROFS"),
        ("open:/l/new.txt:100:644", "EROFS"),
        ("open:/l/new.txt:300:644", "EROFS"),
        ("mkdir:/l/nd:755", "EROFS"),
        ("mkdir:/deep/nd:755", "EROFS"),
        ("write:/deep/f.txt:x", "EROFS"),
        ("unlink:/l/secret.txt", "EROFS"),
        ("unlink:/deep/f.txt", "EROFS"),
        ("rmdir:/l/empty", "EROFS"),
        ("rmdir:/s/k/empty", "EROFS"),
        ("rename:/l/secret.txt:/l/s2.txt", "EROFS"),
        ("rename:/l/sub:/l/sub2", "EROFS"),
        // Into the read-only tree, and out of it.
        ("rename:/x.txt:/l/x.txt", "EROFS"),
        ("rename:/x.txt:/deep/x.txt", "EROFS"),
        ("rename:/l/secret.txt:/stolen.txt", "EROFS"),
        ("rename:/deep/f.txt:/stolen.txt", "EROFS"),
        ("rename:/l/sub:/sub", "EROFS"),
        // A dangling link would create its target: refused; O_EXCL never
        // follows a link (EEXIST, as on Linux).
        ("write:/dangling:x", "EROFS"),
        ("open:/dangling:100:644", "EROFS"),
        ("open:/dangling:300:644", "EEXIST"),
        // O_NOFOLLOW|O_WRONLY on a link: ELOOP, as on Linux.
        ("open:/f:400001:0", "ELOOP"),
        // Absolute links stay refused.
        ("write:/abs:x", "EXDEV"),
        // A chain as long as Linux follows, and one link more.
        ("write:/c0:x", "EROFS"),
        ("open:/c0:1:0", "EROFS"),
        ("cat:/c0", "\"secret\""),
        ("write:/c40:x", "ELOOP"),
        ("cat:/c40", "ELOOP"),
        ("write:/loop:x", "ELOOP"),
        // The links themselves live in the writable grant.
        ("rename:/h:/h2", "0"),
        ("unlink:/h2", "0"),
        ("unlink:/f", "0"),
        ("cat:/l/secret.txt", "\"secret\""),
    ];
    steps.extend(more.iter().map(|(s, r)| (s.to_string(), *r)));
    check(
        &[(&root, "/", false), (&ro, "/ro", true)],
        &as_script(&steps),
    );
    assert_eq!(snapshot(&ro), before);
    assert_eq!(std::fs::read(root.join("x.txt")).unwrap(), b"x");
    assert!(!root.join("stolen.txt").exists());
}

#[test]
fn a_read_only_directory_is_read_only_at_its_place_in_an_outer_grant() {
    let (_tmp, root) = root();
    make_dir(&root.join("a"), 0o755);
    let ro = root.join("a/b");
    read_only_tree(&ro);
    let before = snapshot(&ro);
    let mut steps = file_changes("/a/b/secret.txt");
    steps.extend(file_changes("/data/secret.txt"));
    let more: &[(&str, &'static str)] = &[
        ("write:/a/b/new.txt:x", "EROFS"),
        ("mkdir:/a/b/nd:755", "EROFS"),
        ("unlink:/a/b/secret.txt", "EROFS"),
        ("rmdir:/a/b/empty", "EROFS"),
        ("rename:/a/b/secret.txt:/a/s.txt", "EROFS"),
        // Its directory, and the one above it, stay where they are.
        ("rename:/a/b:/a/c", "EBUSY"),
        ("rename:/a:/c", "EBUSY"),
        ("rmdir:/a/b", "EBUSY"),
        ("write:/a/ok.txt:ok", "2"),
    ];
    steps.extend(more.iter().map(|(s, r)| (s.to_string(), *r)));
    check(
        &[(&root, "/", false), (&ro, "/data", true)],
        &as_script(&steps),
    );
    assert_eq!(snapshot(&ro), before);
    assert_eq!(std::fs::read(root.join("a/ok.txt")).unwrap(), b"ok");
}

#[test]
fn a_read_only_grant_inside_a_writable_one_still_works() {
    let (_tmp, proj) = root();
    let secrets = proj.join("secrets");
    make_dir(&secrets, 0o755);
    write_file(&secrets.join("key"), b"key", 0o600);
    let before = snapshot(&secrets);
    check(
        &[(&proj, "/", false), (&secrets, "/secrets", true)],
        &[
            ("write:/notes.txt:n", "1"),
            ("mkdir:/build:755", "0"),
            ("write:/build/out.txt:out", "3"),
            ("rename:/build/out.txt:/out.txt", "0"),
            ("trunc:/out.txt:1", "0"),
            ("unlink:/notes.txt", "0"),
            ("rmdir:/build", "0"),
            ("write:/secrets/key:k", "EROFS"),
            ("write:/secrets/new:k", "EROFS"),
            ("rename:/out.txt:/secrets/out.txt", "EROFS"),
            ("rename:/secrets/key:/key", "EROFS"),
            ("unlink:/secrets/key", "EROFS"),
            ("rename:/secrets:/s", "EROFS"),
            ("rmdir:/secrets", "EROFS"),
            ("cat:/secrets/key", "\"key\""),
        ],
    );
    assert_eq!(snapshot(&secrets), before);
    assert_eq!(std::fs::read(proj.join("out.txt")).unwrap(), b"o");
}

#[test]
fn a_writable_grant_inside_a_read_only_one_still_works() {
    let (_tmp, x) = root();
    make_dir(&x.join("out"), 0o755);
    write_file(&x.join("x.txt"), b"x", 0o644);
    make_symlink("out", &x.join("o"));
    check(
        &[(&x, "/", true), (&x.join("out"), "/out", false)],
        &[
            ("write:/out/r.txt:result", "6"),
            ("mkdir:/out/d:755", "0"),
            ("rename:/out/r.txt:/out/d/r.txt", "0"),
            ("write:/x.txt:y", "EROFS"),
            ("write:/new.txt:y", "EROFS"),
            ("mkdir:/nd:755", "EROFS"),
            ("rename:/out/d/r.txt:/r.txt", "EROFS"),
            ("rename:/x.txt:/out/x.txt", "EROFS"),
            // The innermost grant holding the directory decides, whatever
            // the path: through the link, /out is writable.
            ("write:/o/via.txt:v", "1"),
            ("cat:/out/via.txt", "\"v\""),
            ("trunc:/o/via.txt:0", "0"),
            ("unlink:/o", "EROFS"),
            ("rmdir:/out", "EBUSY"),
            ("rename:/out:/o2", "EROFS"),
            ("rename:/out:/out/o2", "EBUSY"),
        ],
    );
    assert_eq!(std::fs::read(x.join("x.txt")).unwrap(), b"x");
    assert_eq!(std::fs::read(x.join("out/d/r.txt")).unwrap(), b"result");
    assert_eq!(std::fs::read(x.join("out/via.txt")).unwrap(), b"");
}

#[test]
fn a_directory_granted_twice_is_read_only_if_either_grant_is() {
    let (_tmp, d) = root();
    write_file(&d.join("f"), b"f", 0o644);
    for grants in [
        [(&*d, "/a", true), (&*d, "/b", false)],
        [(&*d, "/b", false), (&*d, "/a", true)],
    ] {
        check(
            &grants,
            &[
                ("write:/b/f:x", "EROFS"),
                ("write:/b/g:x", "EROFS"),
                ("mkdir:/b/d:755", "EROFS"),
                ("unlink:/b/f", "EROFS"),
                ("write:/a/f:x", "EROFS"),
                ("cat:/b/f", "\"f\""),
            ],
        );
    }
    assert_eq!(std::fs::read(d.join("f")).unwrap(), b"f");
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
}

/// The permission bits of `path` on the host, set-ID and sticky included.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn nothing_a_guest_creates_is_set_user_id_or_set_group_id() {
    // The modes below need a umask that takes nothing from 0755.
    // SAFETY: umask only sets the process's creation mask.
    unsafe { libc::umask(0o022) };
    let (_tmp, root) = root();
    make_dir(&root.join("sg"), 0o755);
    std::fs::set_permissions(root.join("sg"), std::fs::Permissions::from_mode(0o2775))
        .expect("chmod g+s");
    check(
        &[(&root, "/", false)],
        &[
            ("open:/suid:101:4755", "0"),
            ("stat:/suid", "mode 0755"),
            ("open:/sgid:101:2755", "0"),
            ("stat:/sgid", "mode 0755"),
            ("open:/both:1101:6711", "0"),
            ("stat:/both", "mode 0711"),
            ("open:/sticky:101:1755", "0"),
            ("stat:/sticky", "mode 01755"),
            ("open:/excl:301:4700", "0"),
            ("stat:/excl", "mode 0700"),
            ("mkdir:/dsuid:4755", "0"),
            ("stat:/dsuid", "mode 0755"),
            ("mkdir:/dsgid:2755", "0"),
            ("stat:/dsgid", "mode 0755"),
            // In a set-group-ID directory, a new directory inherits the
            // bit (it only decides the group of what is made in it); a
            // file asking for it does not get it.
            ("mkdir:/sg/child:755", "0"),
            ("stat:/sg/child", "mode 02755"),
            ("open:/sg/f:101:2755", "0"),
            ("stat:/sg/f", "mode 0755"),
        ],
    );
    for (name, want) in [
        ("suid", 0o755),
        ("sgid", 0o755),
        ("both", 0o711),
        ("sticky", 0o1755),
        ("excl", 0o700),
        ("dsuid", 0o755),
        ("dsgid", 0o755),
        ("sg/child", 0o2755),
        ("sg/f", 0o755),
    ] {
        assert_eq!(mode(&root.join(name)), want, "{name}");
    }
}

#[test]
fn library_grants_are_normalized_and_a_path_granted_twice_is_refused() {
    let Some(kvm) = kvm_or_skip() else { return };
    let build = tempfile::tempdir().expect("temp dir");
    let elf = build_guest("grants", &[], build.path());
    let a = tempfile::tempdir().expect("temp dir");
    let b = tempfile::tempdir().expect("temp dir");
    for (first, second) in [
        ("/d", "/d/"),
        ("/d", "//d"),
        ("/d", "/x/../d"),
        ("/d/", "/./d"),
        ("/", "/.."),
        ("/", "//"),
    ] {
        let built = Sandbox::builder()
            .elf(elf.clone())
            .dir(a.path(), first, true)
            .dir(b.path(), second, false)
            .build(&kvm);
        let want = kvmini::grant::normalize_guest(first).unwrap();
        match built {
            Err(BuildError::Sandbox(SandboxError::Grant(GrantError::Duplicate(path)))) => {
                assert_eq!(path, want, "{first} and {second}");
            }
            other => panic!("{first} and {second}: {:?}", other.map(|_| "built")),
        }
    }
    for bad in ["", "d", "./d", "d/.."] {
        let built = Sandbox::builder()
            .elf(elf.clone())
            .dir(a.path(), "/", true)
            .dir(b.path(), bad, false)
            .build(&kvm);
        assert!(
            matches!(
                built,
                Err(BuildError::Sandbox(SandboxError::Grant(
                    GrantError::BadGuestPath { .. }
                )))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_library_grant_at_an_unclean_path_is_found_and_read_only() {
    let (_tmp, root) = root();
    let d = root.join("d");
    make_dir(&d, 0o755);
    write_file(&d.join("f"), b"f", 0o644);
    check(
        &[(&root, "/", false), (&d, "//d/./", true)],
        &[
            ("write:/d/f:x", "EROFS"),
            ("write:/d/g:x", "EROFS"),
            ("cat:/d/f", "\"f\""),
        ],
    );
    assert_eq!(std::fs::read(d.join("f")).unwrap(), b"f");
}
