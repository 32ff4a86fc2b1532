//! Escapes from granted directories, and changes to read-only ones: each
//! attempt in `tests/guests/escape.c` must fail with the exact errno
//! kvmini documents and leave the host directories as they were.
//!
//! The host side of every test is a temp dir T holding `grant/` (what the
//! guest sees) and its sibling `outside/` (what it must not).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
mod fs_common;

use std::path::{Path, PathBuf};

use common::{assert_lines, kvm_or_skip};
use fs_common::{
    build_guest, dir, file, make_dir, make_symlink, run_guest, snapshot, symlink, write_file, Tree,
};
use kvmini::sandbox::Ending;

const MEM: u64 = 64 << 20;

/// The temp dir and the two directories in it.
struct Host {
    tmp: tempfile::TempDir,
    grant: PathBuf,
    outside: PathBuf,
}

impl Host {
    /// `grant/` with file.txt, sub/inner.txt and empty/; `outside/` with
    /// secret.txt and subdir/.
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let grant = tmp.path().join("grant");
        let outside = tmp.path().join("outside");
        make_dir(&grant, 0o755);
        write_file(&grant.join("file.txt"), b"inside\n", 0o644);
        make_dir(&grant.join("sub"), 0o755);
        write_file(&grant.join("sub/inner.txt"), b"inner\n", 0o644);
        make_dir(&grant.join("empty"), 0o755);
        make_dir(&outside, 0o755);
        write_file(&outside.join("secret.txt"), b"top secret\n", 0o600);
        make_dir(&outside.join("subdir"), 0o755);
        Host {
            tmp,
            grant,
            outside,
        }
    }

    /// The `--dir` spec of `path` with `suffix` (`""`, `":/data"`, `":ro"`).
    fn spec(path: &Path, suffix: &str) -> String {
        format!("{}{suffix}", path.to_str().expect("UTF-8 temp path"))
    }

    /// Everything under T: both directories and anything else in it.
    fn tree(&self) -> Tree {
        snapshot(self.tmp.path())
    }
}

/// Builds `escape.c` with `-DPART_<part>` and runs it with `grants`;
/// returns its stdout and kvmini's warnings, after checking that it exited
/// with status 0.
fn run_part(part: &str, grants: &[String], build_dir: &Path) -> Option<(String, String)> {
    let elf = build_guest("escape", &[&format!("-DPART_{part}")], build_dir);
    let kvm = kvm_or_skip()?;
    let run = run_guest(&kvm, &elf, grants, MEM);
    assert_eq!(
        run.outcome.ending,
        Ending::Exited(0),
        "{}",
        run.stdout_text()
    );
    Some((run.stdout_text(), run.warnings_text()))
}

#[test]
fn dotdot_and_absolute_paths_stay_beneath_the_grant() {
    let host = Host::new();
    let build = tempfile::tempdir().expect("temp dir");
    let before = host.tree();
    let grants = [Host::spec(&host.grant, "")];
    let Some((out, warnings)) = run_part("DOTDOT", &grants, build.path()) else {
        return;
    };
    assert_lines(
        &out,
        "\
open ../outside/secret.txt: -2
open /../outside/secret.txt: -2
open ../../../../etc/passwd: -2
open /../../../etc/passwd: -2
open /etc/passwd: -2
open sub/../../outside/secret.txt: -2
open ../file.txt: 3 \"inside\\x0a\"
stat ../outside/secret.txt: -2
stat ../outside: -2
stat / and ../..: 0
same inode: 1
create ../outside/new.txt: -2
mkdir ../outside/newdir: -2
unlink ../outside/secret.txt: -2
rmdir ../outside/subdir: -2
rmdir ..: -16
rename file.txt ../outside/x: -2
rename ../outside/secret.txt stolen.txt: -2
list /..: 0 . .. empty file.txt sub
list ../../sub/..: 0 . .. empty file.txt sub
",
    );
    assert_eq!(warnings, "");
    assert_eq!(host.tree(), before);
}

/// The links `symlinks_out_of_the_grant_are_exdev` puts in the grant.
fn links(host: &Host) -> Vec<(&'static str, PathBuf)> {
    let out = host.outside.clone();
    vec![
        ("abs_secret", out.join("secret.txt")),
        ("rel_secret", PathBuf::from("../outside/secret.txt")),
        ("deep_rel", PathBuf::from("sub/../../outside/secret.txt")),
        ("etc_link", PathBuf::from("/etc")),
        ("out_dir", out),
        ("rel_out_dir", PathBuf::from("../outside")),
        ("loop_a", PathBuf::from("loop_b")),
        ("loop_b", PathBuf::from("loop_a")),
        ("self_loop", PathBuf::from("self_loop")),
        ("proc_root", PathBuf::from("/proc/self/root")),
        (
            "proc_rel",
            PathBuf::from("../../../../../../../../../../../../proc/self/root"),
        ),
        ("inner_abs", host.grant.join("file.txt")),
        ("inner_rel", PathBuf::from("sub/../file.txt")),
    ]
}

#[test]
fn symlinks_out_of_the_grant_are_exdev() {
    let host = Host::new();
    let build = tempfile::tempdir().expect("temp dir");
    for (name, target) in links(&host) {
        make_symlink(&target, &host.grant.join(name));
    }
    write_file(&host.grant.join("victim.txt"), b"victim\n", 0o644);
    let before = host.tree();
    let grants = [Host::spec(&host.grant, "")];
    let Some((out, warnings)) = run_part("SYMLINKS", &grants, build.path()) else {
        return;
    };
    assert_lines(
        &out,
        "\
open abs_secret: -18
open abs_secret O_NOFOLLOW: -40
stat abs_secret: -18
open rel_secret: -18
open rel_secret O_WRONLY|O_TRUNC: -18
open rel_secret O_CREAT: -18
open deep_rel: -18
open etc_link/passwd: -18
open etc_link O_DIRECTORY: -18
stat etc_link: -18
open out_dir/secret.txt: -18
open out_dir O_DIRECTORY: -18
create out_dir/new.txt: -18
mkdir out_dir/newdir: -18
unlink out_dir/secret.txt: -18
rmdir out_dir/subdir: -18
rename file.txt out_dir/x: -18
rename out_dir/secret.txt stolen.txt: -18
open rel_out_dir/secret.txt: -18
mkdir rel_out_dir/newdir: -18
unlink rel_out_dir/secret.txt: -18
rename rel_out_dir/secret.txt stolen.txt: -18
rename file.txt rel_out_dir/subdir/x: -18
open out_dir/../file.txt: 3 \"inside\\x0a\"
open loop_a: -40
stat self_loop: -40
create loop_a/x: -40
mkdir self_loop/x: -40
open proc_root/etc/passwd: -18
stat proc_root: -18
open proc_rel/etc/passwd: -18
open inner_abs: -18
open inner_rel: 3 \"inside\\x0a\"
rename victim.txt abs_secret: 0
open abs_secret: 3 \"victim\\x0a\"
unlink rel_out_dir: 0
rename rel_secret moved_link: 0
open moved_link: -18
",
    );
    assert_eq!(warnings, "");

    // Outside: untouched. Inside: only the three changes to the links
    // themselves, which never touched what they point at.
    let mut want = before;
    want.remove("grant/victim.txt");
    want.insert("grant/abs_secret".into(), file(0o644, b"victim\n"));
    want.remove("grant/rel_out_dir");
    let moved = want.remove("grant/rel_secret").expect("rel_secret");
    want.insert("grant/moved_link".into(), moved);
    assert_eq!(
        want.get("grant/moved_link"),
        Some(&symlink("../outside/secret.txt"))
    );
    let after = host.tree();
    assert_eq!(after, want);
    assert_eq!(
        after.get("outside/secret.txt"),
        Some(&file(0o600, b"top secret\n"))
    );
    assert_eq!(after.get("outside/subdir"), Some(&dir(0o755)));
    assert_eq!(
        after.keys().filter(|k| k.starts_with("outside/")).count(),
        2
    );
}

#[test]
fn proc_magic_links_are_eloop() {
    let host = Host::new();
    let build = tempfile::tempdir().expect("temp dir");
    let before = host.tree();
    let grants = [Host::spec(&host.grant, ""), "/proc:/proc:ro".to_owned()];
    let Some((out, warnings)) = run_part("PROC", &grants, build.path()) else {
        return;
    };
    assert_lines(
        &out,
        "\
open /proc/self/root/etc/passwd: -40
stat /proc/self/root: -40
open /proc/self/cwd O_DIRECTORY: -40
stat /proc/self/exe: -40
open /proc/self/fd/0: -40
open /proc/thread-self/root/etc/passwd: -40
stat /proc/self: 0 type 040000
create /proc/self/root/tmp/x: -30
open /proc/../outside/secret.txt: -2
",
    );
    assert_eq!(warnings, "");
    assert_eq!(host.tree(), before);
}

#[test]
fn read_only_grants_refuse_every_change() {
    let host = Host::new();
    let build = tempfile::tempdir().expect("temp dir");
    let rw = host.tmp.path().join("rw");
    make_dir(&rw, 0o755);
    write_file(&rw.join("w.txt"), b"writable\n", 0o644);
    let mtimes = |path: &Path| {
        std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .expect("mtime")
    };
    let stamps =
        ["file.txt", "sub", "sub/inner.txt", "empty", "."].map(|p| mtimes(&host.grant.join(p)));
    let before = host.tree();
    let grants = [Host::spec(&host.grant, ":ro"), Host::spec(&rw, ":/rw")];
    let Some((out, warnings)) = run_part("RO", &grants, build.path()) else {
        return;
    };
    assert_lines(
        &out,
        "\
open O_WRONLY: -30
open O_RDWR: -30
open O_WRONLY|O_APPEND: -30
open O_RDONLY|O_TRUNC: -30
open O_WRONLY|O_CREAT existing: -30
create new.txt O_WRONLY: -30
create sub/new.txt: -30
create new.txt O_RDWR|O_EXCL: -30
open O_RDONLY: 3
read: 7
write: -9
pwrite: -9
ftruncate: -22
fsync: 0
close: 0
mkdir newdir: -30
mkdir sub: -30
rmdir empty: -30
rmdir sub: -30
unlink file.txt: -30
unlink sub/inner.txt: -30
unlink missing.txt: -30
rename file.txt moved.txt: -30
rename file.txt sub/file.txt: -30
rename sub sub2: -30
rename file.txt /rw/file.txt: -30
rename /rw/w.txt /w.txt: -30
rename /rw/w.txt /rw/w2.txt: 0
stat file.txt: 0 type 0100000
list /: 0 . .. empty file.txt sub
",
    );
    assert_eq!(warnings, "");
    let mut want = before;
    let w = want.remove("rw/w.txt").expect("w.txt");
    want.insert("rw/w2.txt".into(), w);
    assert_eq!(host.tree(), want);
    assert_eq!(
        ["file.txt", "sub", "sub/inner.txt", "empty", "."].map(|p| mtimes(&host.grant.join(p))),
        stamps
    );
}

#[test]
fn read_only_grants_open_with_o_creat_like_a_read_only_mount() {
    let host = Host::new();
    let build = tempfile::tempdir().expect("temp dir");
    let before = host.tree();
    let grants = [Host::spec(&host.grant, ":ro")];
    let Some((out, warnings)) = run_part("RO_CREAT", &grants, build.path()) else {
        return;
    };
    // What Linux gives on a read-only mount, and what fs.rs documents:
    // O_CREAT opens an existing file, and refuses only to create one.
    assert_lines(
        &out,
        "\
open O_RDONLY|O_CREAT existing: 3
read: 7
close: 0
create new.txt O_RDONLY: -30
create new.txt O_RDONLY|O_EXCL: -30
open O_RDONLY|O_CREAT|O_EXCL existing: -17
open O_RDONLY|O_CREAT existing, mode 0: 3
open O_RDONLY|O_CREAT|O_EXCL existing, mode 0: -17
",
    );
    assert_eq!(warnings, "");
    assert_eq!(host.tree(), before);
}

#[test]
fn long_paths_are_enametoolong_and_bad_pointers_efault() {
    let host = Host::new();
    let build = tempfile::tempdir().expect("temp dir");
    let before = host.tree();
    let grants = [Host::spec(&host.grant, "")];
    let Some((out, warnings)) = run_part("LIMITS", &grants, build.path()) else {
        return;
    };
    assert_lines(
        &out,
        "\
open 5000 bytes: -36
create 5000 bytes: -36
stat 5000 bytes: -36
mkdir 5000 bytes: -36
unlink 5000 bytes: -36
rmdir 5000 bytes: -36
rename from 5000 bytes: -36
rename to 5000 bytes: -36
open 4096 bytes: -36
open 4095 bytes: -2
open 256-byte name: -36
mkdir 256-byte name: -36
open 255-byte name: -2
open NULL: -14
create NULL: -14
stat NULL: -14
mkdir NULL: -14
unlink NULL: -14
rmdir NULL: -14
rename NULL x: -14
rename file.txt NULL: -14
open 0xf0000000: -14
open system area: -14
open 0x800000000000: -14
open 0xffff800000000000: -14
open file.txt: 3
read to 0xf0000000: -14
read into the system area: -14
read past the end of memory: -14
offset: 0
write from NULL: -14
write from 0xf0000000: -14
pwrite from the system area: -14
offset: 0
fstat to NULL: -14
fstat to 0xf0000000: -14
stat to NULL: -14
stat file.txt: 0
size: 7
read: 7
close: 0
open /: 3
getdents to 0xf0000000: -14
list / after: 0 . .. empty file.txt sub
open with block at 0xf0000000: -14
stat with block at 0: -14
rename with block in the system area: -14
",
    );
    assert_eq!(
        warnings,
        "\
kvmini: open: argument block at 0xf0000000 is not writable guest memory; -EFAULT in RAX
kvmini: stat: argument block at 0x0 is not writable guest memory; -EFAULT in RAX
kvmini: rename: argument block at 0x3ff0000 is not writable guest memory; -EFAULT in RAX
"
    );
    assert_eq!(host.tree(), before);
}

#[test]
fn renames_across_grants_are_exdev() {
    let host = Host::new();
    let build = tempfile::tempdir().expect("temp dir");
    let data = host.tmp.path().join("data2");
    make_dir(&data, 0o755);
    write_file(&data.join("b.txt"), b"in g2\n", 0o644);
    make_dir(&data.join("dir2"), 0o755);
    let before = host.tree();
    let grants = [Host::spec(&host.grant, ""), Host::spec(&data, ":/data")];
    let Some((out, warnings)) = run_part("XDEV", &grants, build.path()) else {
        return;
    };
    assert_lines(
        &out,
        "\
rename /file.txt /data/file.txt: -18
rename /data/b.txt /b.txt: -18
rename /data/b.txt /data/../b.txt: -18
rename /data/dir2 /dir2: -18
rename /data /moved: -18
rename /file.txt /data: -18
rename /data/b.txt /data: -16
rmdir /data: -16
unlink /data: -16
mkdir /data: -17
rmdir /: -16
mkdir /: -17
rename / /x: -16
open /data/../file.txt: 3 \"inside\\x0a\"
stat /data: 0 type 040000
rename /data/b.txt /data/dir2/b.txt: 0
list /: 0 . .. empty file.txt sub
list /data: 0 . .. dir2
list /data/dir2: 0 . .. b.txt
",
    );
    assert_eq!(warnings, "");
    let mut want = before;
    let b = want.remove("data2/b.txt").expect("b.txt");
    want.insert("data2/dir2/b.txt".into(), b);
    assert_eq!(host.tree(), want);
}
