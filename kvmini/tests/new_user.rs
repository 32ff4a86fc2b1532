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
use std::process::Command;

use common::{kvm_or_skip, text};
use kvmini::guests;
use kvmini::output::{Capture, Output as SandboxOutput};
use kvmini::sandbox::{Ending, Sandbox};

// ---------------------------------------------------------------------------
// --hugepages

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
fn huge_pages_the_host_cannot_give_are_refused_at_allocation() {
    use kvmini::memory::{allocate_with, Backing, MemoryError};
    for size in [2u64 << 20, 64 << 20] {
        let short = free_huge_pages() < size / (2 << 20);
        for (prefault, snapshot) in [(false, false), (true, false), (false, true), (true, true)] {
            let backing = Backing {
                hugepages: true,
                prefault,
                snapshot,
            };
            match allocate_with(size, backing) {
                // Whatever the pool holds: a snapshot cannot live on hugetlbfs.
                Err(MemoryError::HugePagesNotReusable) if snapshot => {}
                Err(MemoryError::HugePages { size: asked, .. }) if short && !snapshot => {
                    assert_eq!(asked, size);
                }
                Ok(_) if !short && !snapshot => {}
                Err(e) => panic!("{backing:?}, {size} bytes: {e}"),
                Ok(_) => panic!("{backing:?}: {size} bytes of huge pages"),
            }
        }
    }
}

#[test]
fn hugepages_fall_back_to_normal_pages_in_the_library() {
    let Some(kvm) = kvm_or_skip() else { return };
    for (size, shown) in [(2u64 << 20, "2 MiB"), (64 << 20, "64 MiB")] {
        for (prefault, reusable) in [(false, false), (true, false), (false, true)] {
            let (stdout, warnings) = (Capture::new(), Capture::new());
            let mut sandbox = Sandbox::builder()
                .elf(guests::HELLO.elf)
                .memory(size)
                .hugepages(true)
                .prefault(prefault)
                .reusable(reusable)
                .stdout(SandboxOutput::Capture(stdout.clone()))
                .warnings(SandboxOutput::Capture(warnings.clone()))
                .build(&kvm)
                .expect("the sandbox is built");
            let runs = if reusable { 2 } else { 1 };
            for run in 0..runs {
                if run > 0 {
                    sandbox.reset().expect("reset");
                }
                let outcome = sandbox.run().expect("the run");
                assert_eq!(
                    outcome.ending,
                    Ending::Halted,
                    "{size} {prefault} {reusable}"
                );
            }
            assert_eq!(text(&stdout.contents()), "Hello, world!\n".repeat(runs));
            let warning = if reusable {
                "kvmini: huge pages cannot back a reusable sandbox's memory (its snapshot \
                 file would be on hugetlbfs, which takes no writes); using normal pages\n"
                    .to_owned()
            } else {
                hugepage_warning(size, shown)
            };
            assert_eq!(
                text(&warnings.contents()),
                warning,
                "{size} {prefault} {reusable}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// kvmini demo

// ---------------------------------------------------------------------------
// Messages

// ---------------------------------------------------------------------------
// The examples

/// The directory cargo puts this build's examples in: `examples/` beside
/// the `deps/` directory that holds this test.
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let deps = exe.parent().expect("deps/");
    deps.parent()
        .expect("the profile's directory")
        .join("examples")
}

/// Builds kvmini's examples with the cargo running these tests, in the
/// profile of this test, so that the binaries run below are the current
/// sources' (`cargo test --test new_user` alone does not build them).
fn build_examples() {
    let profile_dir = examples_dir().parent().expect("profile dir").to_path_buf();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => panic!("no profile directory in {}", profile_dir.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--quiet",
            "-p",
            "kvmini",
            "--examples",
            "--profile",
        ])
        .arg(&profile)
        .output()
        .expect("cargo starts");
    assert!(
        out.status.success(),
        "building the examples failed:\n{}",
        text(&out.stderr)
    );
}

/// `line` with the figures after each `marker` replaced by `T`, up to the
/// next `until` (the figures are times, different on every run).
fn without_times(line: &str, marker: &str, until: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find(marker) {
        out.push_str(&rest[..at + marker.len()]);
        rest = &rest[at + marker.len()..];
        let end = rest.find(until).unwrap_or(rest.len());
        assert!(end > 0, "no figure after {marker:?} in {line:?}");
        out.push('T');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

const EMBED_STDOUT: &str = "\
=== hello: the classic: \"Hello, world!\" through port 0xE9, one exit per byte, then 42 left in RAX
captured stdout, 14 bytes:
  | Hello, world!
ending: Halted (exit status 0)
exits: 15 in all; by hypercall: console 14, halt 1
RAX at the end: 42
time: T to build the VM, T to run the guest

=== hypercalls: printVal, getNumExits and display, with the proof that display costs one exit
captured stdout, 469 bytes:
  | printVal(2026) sends a 32-bit value in one `out`:
  | 2026
  | getNumExits() returns the exits so far, this one included:
  | 4
  | display() hands kvmini one 32-bit guest virtual address. kvmini walks
  | the guest's own page tables from CR3 to find each page of the string, and
  | prints it all, up to the NUL, in this one exit. This paragraph starts 200
  | bytes before a page boundary and ends on the next page.
  | getNumExits() before and after that display(): 6 and 8, so display cost 1 exit
ending: Exited(0) (exit status 0)
exits: 10 in all; by hypercall: printVal 2, getNumExits 3, display 4, exit 1
RAX at the end: 0
time: T to build the VM, T to run the guest

";

const HOST_FUNCTION_STDOUT: &str = "\
--- the kvstore guest:
set name = \"kvmini\"
set kind = \"hypervisor\"
set language = \"Rust\"
set embedder = \"examples/host_function.rs\" (from argv)
count() = 4
get name = \"kvmini\" (6 bytes)
get kind = \"hypervisor\" (10 bytes)
get language = \"Rust\" (4 bytes)
get kind into 4 bytes = \"hype\" (of 10)
get colour = -2 (ENOENT)
--- the guest ended: Exited(0) (status 0), after 22 exits
--- the store, seen from the host: 4 entries
embedder = \"examples/host_function.rs\"
kind = \"hypervisor\"
language = \"Rust\"
name = \"kvmini\"
";

const PARALLEL_STDOUT: &str = "\
64 sandboxes on 64 threads (32 files, 32 hello): 64 of 64 as their guest alone
total T (T runs/s); the slowest sandbox took T to build and run
";

/// Every example in kvmini/examples/ runs, succeeds and prints what it
/// should: an example that breaks fails the test suite.
#[test]
fn every_example_runs_and_prints_what_it_should() {
    if kvm_or_skip().is_none() {
        return;
    }
    let expected: &[(&str, &str)] = &[
        ("embed", EMBED_STDOUT),
        ("host_function", HOST_FUNCTION_STDOUT),
        ("parallel", PARALLEL_STDOUT),
    ];
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = fs::read_dir(&sources)
        .expect("kvmini/examples")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| {
            path.file_stem()
                .expect("a name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let listed: Vec<&str> = expected.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names, listed,
        "every example needs its expected output here"
    );

    build_examples();
    for (name, want) in expected {
        let out = Command::new(examples_dir().join(name))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap_or_else(|e| panic!("example {name} does not start: {e}"));
        let stdout: String = text(&out.stdout)
            .lines()
            .map(|line| {
                let line = if line.starts_with("time: ") {
                    let line = without_times(line, "time: ", " to build");
                    without_times(&line, "VM, ", " to run")
                } else if line.starts_with("total ") {
                    let line = without_times(line, "total ", " (");
                    let line = without_times(&line, "(", " runs/s");
                    without_times(&line, "sandbox took ", " to build")
                } else {
                    line.to_owned()
                };
                line + "\n"
            })
            .collect();
        assert_eq!(
            (
                stdout.as_str(),
                text(&out.stderr).as_str(),
                out.status.code()
            ),
            (*want, "", Some(0)),
            "example {name}"
        );
    }
}

// ---------------------------------------------------------------------------
// A guest of one's own, with `cargo run`
