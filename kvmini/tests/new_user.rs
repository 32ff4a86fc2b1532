//! What a new user meets in the first hour, from the README on: the
//! documented options, the demo, the examples, the messages, and building
//! and running a guest of their own.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::{kvm_or_skip, text};
use kvmini::guests;
use kvmini::output::{Capture, Output as SandboxOutput};
use kvmini::sandbox::{Ending, Sandbox};

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
        if free_huge_pages() >= size / (2 << 20) {
            eprintln!("this host has the huge pages: nothing to refuse");
            return;
        }
        for (prefault, snapshot) in [(false, false), (true, false), (false, true), (true, true)] {
            let backing = Backing {
                hugepages: true,
                prefault,
                snapshot,
            };
            match allocate_with(size, backing) {
                Err(MemoryError::HugePages { size: asked, .. }) => assert_eq!(asked, size),
                Err(e) => panic!("{backing:?}: {e}"),
                Ok(_) => panic!("{backing:?}: {size} bytes of huge pages that the pool lacks"),
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
            assert_eq!(
                text(&warnings.contents()),
                hugepage_warning(size, shown),
                "{size} {prefault} {reusable}"
            );
        }
    }
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
