//! What a new user meets in the first hour, from the README on: the
//! documented options, the demo, the examples, the messages, and building
//! and running a guest of their own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{kvm_or_skip, text, FILES_STDOUT, HYPERCALLS_STDOUT};
use kvmini::guests;
use kvmini::kvm::Kvm;
use kvmini::output::Output as SandboxOutput;
use kvmini::sandbox::Sandbox;

/// kvmini with `args`, its stdout, stderr and status.
fn kvmini(args: &[&str]) -> Output {
    common::kvmini()
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("kvmini starts")
}

/// `kvmini` with `args` ends with `status`, having printed exactly `stdout`
/// and `stderr`.
fn assert_run(args: &[&str], status: i32, stdout: &str, stderr: &str) {
    let out = kvmini(args);
    assert_eq!(
        (text(&out.stdout).as_str(), text(&out.stderr).as_str()),
        (stdout, stderr),
        "kvmini {args:?}"
    );
    assert_eq!(out.status.code(), Some(status), "kvmini {args:?}");
}

/// Writes a built-in guest's image into `dir` and returns its path.
fn guest_file(dir: &Path, guest: &guests::BuiltinGuest) -> String {
    let path = dir.join(format!("{}.elf", guest.name));
    fs::write(&path, guest.elf).expect("write the guest image");
    path.to_str().expect("temp paths are UTF-8").to_owned()
}

/// Free 2 MiB huge pages in the host's pool, from /proc/meminfo.
fn free_huge_pages() -> u64 {
    let meminfo = fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    if field("Hugepagesize:") == 2048 {
        field("HugePages_Free:")
    } else {
        0
    }
}

/// What kvmini warns when `--hugepages` asks for `size` bytes (a multiple
/// of 2 MiB): nothing if the host's pool has them, else that it falls back.
fn hugepage_warning(size: u64, shown: &str) -> String {
    if free_huge_pages() >= size / (2 << 20) {
        return String::new();
    }
    format!(
        "kvmini: the host cannot back {shown} of guest memory with 2 MiB huge pages \
         (Cannot allocate memory (os error 12)); using normal pages (see HugePages_Free \
         in /proc/meminfo; reserve huge pages with: echo N > /proc/sys/vm/nr_hugepages)\n"
    )
}

#[test]
fn hugepages_fall_back_to_normal_pages_on_the_command_line() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let hello = guest_file(dir.path(), &guests::HELLO);
    let warning = hugepage_warning(64 << 20, "64 MiB");
    assert_run(
        &["run", &hello, "--hugepages"],
        0,
        "Hello, world!\n",
        &warning,
    );
    assert_run(
        &["run", "--hugepages", "--prefault", &hello],
        0,
        "Hello, world!\n",
        &warning,
    );
    assert_run(
        &["demo", "hello", "--hugepages", "--mem", "4M"],
        0,
        "Hello, world!\n",
        &hugepage_warning(4 << 20, "4 MiB"),
    );
}

/// `kvmini ARGS` with stderr sent into the same pipe as stdout, so that
/// the order of the two is seen as on a terminal.
fn kvmini_interleaved(args: &[&str]) -> (String, Option<i32>) {
    let out = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" \"$@\" 2>&1")
        .arg(env!("CARGO_BIN_EXE_kvmini"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("sh starts");
    assert_eq!(text(&out.stderr), "");
    (text(&out.stdout), out.status.code())
}

/// `output` with the files demo's temporary directory shown as `DIR` and
/// each `--stats` time line's figures as `T`, after checking their form.
fn normalized(output: &str) -> String {
    let mut lines = Vec::new();
    for line in output.lines() {
        let line = match line.find("time in guest ") {
            Some(at) => {
                let figures = &line[at + "time in guest ".len()..];
                let (guest, kvmini) = figures
                    .strip_suffix(" ms")
                    .and_then(|f| f.split_once(" ms, in kvmini "))
                    .unwrap_or_else(|| panic!("time line {line:?}"));
                for figure in [guest, kvmini] {
                    figure.parse::<f64>().expect("a time in ms");
                }
                format!("{}time in guest T ms, in kvmini T ms", &line[..at])
            }
            None => line.to_owned(),
        };
        lines.push(line);
    }
    let mut text = lines.join("\n") + "\n";
    let marker = "(the guest's / is the fresh host directory ";
    if let Some(at) = text.find(marker) {
        let rest = &text[at + marker.len()..];
        let dir = rest[..rest.find(')').expect("the path ends")].to_owned();
        assert!(
            dir.starts_with(&format!(
                "{}/kvmini-demo-files-",
                std::env::temp_dir().display()
            )),
            "{dir}"
        );
        text = text.replace(&dir, "DIR");
    }
    text
}

const FILES_LISTING: &str = concat!(
    "  batch.txt (40 bytes)\n",
    "  notes.txt (71 bytes)\n",
    "  reports/\n",
    "  reports/squares.txt (77 bytes)\n",
);

const FILES_COUNTS: &str = "getNumExits 2, display 15, exit 1, open 7, close 4, read 1, \
    write 36, pread 1, lseek 1, fstat 1, stat 1, fsync 1, unlink 1, mkdir 1, rmdir 1, \
    rename 1, getdents 2, batch 1";

/// What `kvmini demo` prints for all three guests: each in a section with
/// the tour's header and footer, and with `stats` each one's counts inside
/// its section, marked with its name.
fn demo_sections(stats: bool) -> String {
    let stats_of = |name: &str, exits: u64, io: u64, calls: &str, rip: &str, rax: u64| {
        if !stats {
            return String::new();
        }
        format!(
            "kvmini: {name}: {exits} exits: io {io}, hlt 0, mmio 0, other 0; 0 interruptions\n\
             kvmini: {name}: by hypercall: {calls}\n\
             kvmini: {name}: time in guest T ms, in kvmini T ms\n\
             kvmini: {name}: final rip={rip} rax={rax:#x} ({rax}), status 0\n"
        )
    };
    let files_rip = format!("{:#x}", final_rip(&guests::FILES));
    format!(
        "=== 1/3 hello: {hello}\n\
         Hello, world!\n\
         {hello_stats}\
         --- hello: halted after 15 exits (console 14, halt 1), RAX = 42, status 0\n\
         \n\
         === 2/3 hypercalls: {hypercalls}\n\
         {HYPERCALLS_STDOUT}\
         {hypercalls_stats}\
         --- hypercalls: exit(0) after 10 exits (printVal 2, getNumExits 3, display 4, exit 1), \
         RAX = 0, status 0\n\
         \n\
         === 3/3 files: {files}\n\
         (the guest's / is the fresh host directory DIR)\n\
         {FILES_STDOUT}\
         on the host, DIR now holds:\n\
         {FILES_LISTING}\
         {files_stats}\
         --- files: exit(0) after 78 exits ({FILES_COUNTS}), RAX = 0, status 0\n",
        hello = guests::HELLO.summary,
        hypercalls = guests::HYPERCALLS.summary,
        files = guests::FILES.summary,
        hello_stats = stats_of(
            "hello",
            15,
            15,
            "console 14, halt 1",
            &format!("{:#x}", final_rip(&guests::HELLO)),
            42
        ),
        hypercalls_stats = stats_of(
            "hypercalls",
            10,
            10,
            "printVal 2, getNumExits 3, display 4, exit 1",
            &format!("{:#x}", final_rip(&guests::HYPERCALLS)),
            0
        ),
        files_stats = stats_of("files", 78, 78, FILES_COUNTS, &files_rip, 0),
    )
}

/// Where a built-in guest stops, from a run through the library.
fn final_rip(guest: &guests::BuiltinGuest) -> u64 {
    let kvm = Kvm::open().expect("KVM");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sandbox = Sandbox::builder()
        .elf(guest.elf)
        .dir(dir.path(), "/", false)
        .stdout(SandboxOutput::Null)
        .build(&kvm)
        .expect("the sandbox is built");
    sandbox.run().expect("the run").regs.rip
}

#[test]
fn demo_of_all_guests_runs_each_in_its_own_section() {
    if kvm_or_skip().is_none() {
        return;
    }
    for (args, stats) in [(&["demo"][..], false), (&["demo", "--stats"][..], true)] {
        let (output, status) = kvmini_interleaved(args);
        assert_eq!(normalized(&output), demo_sections(stats), "kvmini {args:?}");
        assert_eq!(status, Some(0));
    }
    // The tour is the same sections after its introduction.
    let (output, status) = kvmini_interleaved(&[]);
    assert_eq!(
        normalized(&output),
        format!(
            "kvmini demo tour: each guest runs in its own KVM virtual machine, at ring 3.\n\
             (kvmini demo --list shows the guests; kvmini run GUEST.elf runs your own.)\n\
             \n{}",
            demo_sections(false)
        )
    );
    assert_eq!(status, Some(0));
}

#[test]
fn demo_of_one_guest_prints_as_run_does() {
    if kvm_or_skip().is_none() {
        return;
    }
    let (output, status) = kvmini_interleaved(&["demo", "hello", "--stats"]);
    assert_eq!(
        normalized(&output),
        format!(
            "Hello, world!\n\
             kvmini: 15 exits: io 15, hlt 0, mmio 0, other 0; 0 interruptions\n\
             kvmini: by hypercall: console 14, halt 1\n\
             kvmini: time in guest T ms, in kvmini T ms\n\
             kvmini: final rip={:#x} rax=0x2a (42), status 0\n",
            final_rip(&guests::HELLO)
        )
    );
    assert_eq!(status, Some(0));
}

/// Everything under `dir`, sorted: files with their contents, directories
/// with a trailing `/`.
fn tree(dir: &Path) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in fs::read_dir(&at).expect("read_dir") {
            let path = entry.expect("entry").path();
            let name = path
                .strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string();
            if path.is_dir() {
                found.push((name + "/", None));
                pending.push(path);
            } else {
                found.push((name, Some(fs::read_to_string(&path).expect("read"))));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn files_demo_runs_again_in_the_same_directory() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_str().expect("temp paths are UTF-8");
    let stdout = format!("{FILES_STDOUT}on the host, {path} now holds:\n{FILES_LISTING}");
    let mut first = None;
    for _ in 0..3 {
        assert_run(&["demo", "files", "--dir", path], 0, &stdout, "");
        let now = tree(dir.path());
        assert_eq!(now.len(), 4, "{now:?}");
        assert_eq!(*first.get_or_insert_with(|| now.clone()), now);
    }
    // Files of the user's own in the directory are left alone.
    fs::write(dir.path().join("mine.txt"), "mine\n").expect("write");
    let listed = stdout
        .replace("ls /: notes.txt reports/", "ls /: LS")
        .replace(
            "  notes.txt (71 bytes)\n",
            "  mine.txt (5 bytes)\n  notes.txt (71 bytes)\n",
        );
    let out = kvmini(&["demo", "files", "--dir", path]);
    assert_eq!(out.status.code(), Some(0));
    let shown = text(&out.stdout);
    let ls = shown
        .lines()
        .find_map(|l| l.strip_prefix("ls /: "))
        .expect("the ls line");
    let mut names: Vec<&str> = ls.split(' ').collect();
    names.sort_unstable();
    assert_eq!(names, ["mine.txt", "notes.txt", "reports/"]);
    assert_eq!(shown.replace(ls, "LS"), listed);
    assert_eq!(
        fs::read_to_string(dir.path().join("mine.txt")).unwrap(),
        "mine\n"
    );
}

#[test]
fn files_demo_failures_name_the_call_and_the_path() {
    if kvm_or_skip().is_none() {
        return;
    }
    let before_listing = "\
opened /notes.txt as fd 3 and /squares.txt as fd 4
read 71 bytes back from /notes.txt:
kvmini keeps this file on the host.
line 1
line 2
line 3
line 4
line 5
pread at offset 0: \"kvmini keeps this file on the host.\"
/notes.txt is 71 bytes
";
    // A file where the demo makes its directory.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_str().expect("temp paths are UTF-8");
    fs::write(dir.path().join("reports"), "").expect("write");
    assert_run(
        &["demo", "files", "--dir", path],
        1,
        &format!(
            "{before_listing}on the host, {path} now holds:\n  notes.txt (71 bytes)\n  \
             reports (0 bytes)\n  squares.txt (77 bytes)\n"
        ),
        "files demo failed: rename /squares.txt to /reports/squares.txt: -20 (ENOTDIR)\n",
    );
    // A read-only grant: the first write is refused.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_str().expect("temp paths are UTF-8");
    assert_run(
        &["demo", "files", "--dir", &format!("{path}:ro")],
        1,
        &format!("on the host, {path} now holds:\n"),
        "files demo failed: open /notes.txt: -30 (EROFS)\n",
    );
}

/// Writes a flat image of `code` into `dir` and returns its path.
fn flat_file(dir: &Path, name: &str, code: &[u8]) -> String {
    let path = dir.join(name);
    fs::write(&path, code).expect("write the image");
    path.to_str().expect("temp paths are UTF-8").to_owned()
}

#[test]
fn counts_of_one_are_singular() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    // hlt: one exit. mov al, 'A'; out 0xE9, al twice; hlt: three.
    let one = flat_file(dir.path(), "hlt.bin", &[0xf4]);
    let three = flat_file(
        dir.path(),
        "aa.bin",
        &[0xb0, b'A', 0xe6, 0xe9, 0xe6, 0xe9, 0xf4],
    );
    let stats = |image: &str| {
        let out = kvmini(&[
            "run",
            "--flat",
            image,
            "--mem",
            "2M",
            "--stats",
            "--verbose",
        ]);
        assert_eq!(out.status.code(), Some(0));
        let stderr = text(&out.stderr);
        let segment = stderr
            .lines()
            .find(|l| l.starts_with("  segment "))
            .expect("the segment line")
            .to_owned();
        let counts = stderr
            .lines()
            .find(|l| l.contains(" interruption"))
            .expect("the counts line")
            .to_owned();
        (text(&out.stdout), segment, counts)
    };
    assert_eq!(
        stats(&one),
        (
            String::new(),
            "  segment 0x0..0x1 (1 byte from the file, flags 7)".to_owned(),
            "kvmini: 1 exit: io 0, hlt 1, mmio 0, other 0; 0 interruptions".to_owned()
        )
    );
    assert_eq!(
        stats(&three),
        (
            "AA".to_owned(),
            "  segment 0x0..0x7 (7 bytes from the file, flags 7)".to_owned(),
            "kvmini: 3 exits: io 2, hlt 1, mmio 0, other 0; 0 interruptions".to_owned()
        )
    );
    // One exit, then a loop until the time limit.
    let spin = flat_file(
        dir.path(),
        "spin.bin",
        &[0xb0, b'A', 0xe6, 0xe9, 0xeb, 0xfe],
    );
    assert_run(
        &["run", "--flat", &spin, "--mem", "2M", "--timeout", "300ms"],
        124,
        "A",
        "kvmini: guest timed out after 300ms (1 exit); stopped at rip 0x4\n",
    );
}

#[test]
fn a_file_that_is_not_elf_is_named_with_the_flat_hint() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, bytes) in [
        ("image.bin", &[0xf4u8][..]),
        ("script.sh", b"#!/bin/sh\necho hi\n"),
        ("zeros", &[0; 4096]),
    ] {
        let path = flat_file(dir.path(), name, bytes);
        assert_run(
            &["run", &path],
            125,
            "",
            &format!("kvmini: {path}: not an ELF file (to run a flat binary, add --flat)\n"),
        );
    }
}

const DYNAMIC: &str = "dynamically linked: kvmini runs static programs (link with -static)";
const PIE: &str = "position-independent executable (static PIE) or shared object: kvmini runs \
    executables linked at a fixed address; link the guest with -static -no-pie";

#[test]
fn linux_programs_are_told_apart_dynamic_from_static_pie() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("prog.c");
    fs::write(&source, "int main(void) { return 3; }\n").expect("write");
    let source = source.to_str().expect("temp paths are UTF-8");
    let mut cases = vec![("/bin/true".to_owned(), DYNAMIC)];
    for (flags, expected) in [
        (&["-O2"][..], DYNAMIC),                 // the distribution's default: a PIE
        (&["-O2", "-no-pie"][..], DYNAMIC),      // dynamically linked, fixed address
        (&["-O2", "-shared", "-fPIC"][..], PIE), // a shared library
    ] {
        let out = dir.path().join(flags.join("").replace('-', "_"));
        common::c_build::cc(flags, &out, source);
        cases.push((out.to_str().expect("UTF-8").to_owned(), expected));
    }
    for (program, expected) in cases {
        assert_run(
            &["run", &program],
            125,
            "",
            &format!("kvmini: {program}: {expected}\n"),
        );
    } // Static but position-independent: a Linux program kvmini runs.
    let out = dir.path().join("static_pie");
    common::c_build::cc(&["-O2", "-static-pie"], &out, source);
    assert_run(&["run", out.to_str().expect("UTF-8")], 3, "", "");
}

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kvmini sits in the repository")
        .to_path_buf()
}

/// The README's section `heading`, up to the next `## ` heading.
fn readme_section(heading: &str) -> String {
    let readme = fs::read_to_string(repo().join("README.md")).expect("README.md");
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?} in the README"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 4);
    rest[..end].to_owned()
}

/// The first fenced block after `marker` in `text`, without its fences.
fn block_after(text: &str, marker: &str) -> String {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in the README section"));
    let rest = &text[at..];
    let open = rest.find("\n```").expect("a fenced block follows") + 4;
    let body = &rest[open..];
    let body = &body[body.find('\n').expect("the fence's line ends") + 1..];
    body[..body.find("```").expect("the block is closed")].to_owned()
}

/// A `cargo` command for a guest workspace: the cargo running these tests,
/// none of the environment it set for them that would change the build,
/// `target` as the target directory, and this build's kvmini first on PATH.
fn guest_cargo(dir: &Path, target: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let kvmini_dir = Path::new(env!("CARGO_BIN_EXE_kvmini"))
        .parent()
        .expect("kvmini's directory")
        .to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path =
        std::env::join_paths(std::iter::once(kvmini_dir).chain(std::env::split_paths(&path)))
            .expect("PATH");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUST_BACKTRACE");
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Checks a finished `cargo run`: status, stdout and stderr exactly.
fn assert_output(out: &Output, status: i32, stdout: &str, stderr: &str, what: &str) {
    assert_eq!(
        (text(&out.stdout).as_str(), text(&out.stderr).as_str()),
        (stdout, stderr),
        "{what}"
    );
    assert_eq!(out.status.code(), Some(status), "{what}");
}

/// The README's guest template (Cargo.toml, build.rs, .cargo/config.toml,
/// src/main.rs) and the built-in guests' workspace: `cargo run` builds the
/// guest and runs it in kvmini, arguments and all; a guest's panic goes to
/// stderr with status 101.
#[test]
fn cargo_run_runs_guests_in_kvmini() {
    if kvm_or_skip().is_none() {
        return;
    }
    let target = tempfile::tempdir().expect("temp dir");

    // The built-in guests' workspace.
    let out = guest_cargo(&repo().join("guests"), target.path())
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "hello",
            "--",
            "a",
            "b c",
        ])
        .output()
        .expect("cargo starts");
    assert_output(
        &out,
        0,
        "Hello, world!\n",
        "",
        "cargo run -p hello in guests/",
    );

    // The README's template, word for word, as a crate of one's own.
    let section = readme_section("Writing a Rust guest");
    let config = block_after(&section, "`.cargo/config.toml`");
    let builtin: Vec<String> = fs::read_to_string(repo().join("guests/.cargo/config.toml"))
        .expect("guests/.cargo/config.toml")
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let documented: Vec<String> = config
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(
        documented, builtin,
        "the README's config is the guests' own"
    );

    let krate = tempfile::tempdir().expect("temp dir");
    let sdk = repo().join("kvmini-guest");
    let manifest = block_after(&section, "`Cargo.toml`").replace(
        "path/to/kvmini/kvmini-guest",
        sdk.to_str().expect("UTF-8 path"),
    );
    fs::create_dir_all(krate.path().join("src")).expect("mkdir");
    fs::create_dir_all(krate.path().join(".cargo")).expect("mkdir");
    fs::write(krate.path().join("Cargo.toml"), manifest).expect("write");
    fs::write(
        krate.path().join("build.rs"),
        block_after(&section, "`build.rs`"),
    )
    .expect("write");
    fs::write(krate.path().join(".cargo/config.toml"), config).expect("write");
    fs::write(
        krate.path().join("src/main.rs"),
        block_after(&section, "`src/main.rs`"),
    )
    .expect("write");

    // What the README shows: `cargo run --release; echo $?`.
    let shown = block_after(&section, "With `kvmini` on your PATH");
    let mut lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.remove(0), "$ cargo run --release; echo $?");
    let status: i32 = lines.pop().expect("the status").parse().expect("a number");
    let stdout: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let run = |args: &[&str]| {
        guest_cargo(krate.path(), target.path())
            .args(["run", "--quiet", "--release"])
            .args(args)
            .output()
            .expect("cargo starts")
    };
    assert_output(&run(&[]), status, &stdout, "", "the README's guest");

    // Arguments, and a panic.
    let main = r#"#![no_std]
#![no_main]

use kvmini_guest::println;

kvmini_guest::entry!(main);

fn main() -> i32 {
    let mut buf = [0u8; 512];
    let args = kvmini_guest::env::args(&mut buf).expect("the arguments fit");
    let mut panic = false;
    for (i, arg) in args.enumerate().skip(1) {
        let arg = arg.to_str().unwrap_or("?");
        println!("argument {i}: {arg}");
        panic |= arg == "panic";
    }
    if panic {
        panic!("asked to, with {} arguments", 3);
    }
    0
}
"#;
    fs::write(krate.path().join("src/main.rs"), main).expect("write");
    assert_output(
        &run(&["--", "one", "two words", "--stats"]),
        0,
        "argument 1: one\nargument 2: two words\nargument 3: --stats\n",
        "",
        "a guest's arguments",
    );
    assert_output(
        &run(&["--", "x", "panic", "y"]),
        101,
        "argument 1: x\nargument 2: panic\nargument 3: y\n",
        "guest panicked: panicked at src/main.rs:18:9:\nasked to, with 3 arguments\n",
        "a guest's panic",
    );
}
