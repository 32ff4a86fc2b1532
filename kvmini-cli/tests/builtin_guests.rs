//! The built-in guests (`hello`, `hypercalls`), run through the library
//! and through the kvmini binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::{kvm_or_skip, kvmini_output, text, FILES_STDOUT, HYPERCALLS_STDOUT};

const HELLO_OUTPUT: &str = "Hello, world!\n";

/// Runs kvmini with `args`, checks that the guest printed exactly `stdout`
/// and kvmini exited 0, and returns kvmini's stderr.
#[track_caller]
fn cli_run(args: &[&str], stdout: &str) -> String {
    let out = kvmini_output(args);
    assert_eq!(text(&out.stdout), stdout);
    assert_eq!(out.status.code(), Some(0));
    text(&out.stderr)
}

#[test]
fn cli_demo_hello_prints_hello() {
    if kvm_or_skip().is_none() {
        return;
    }
    let stderr = cli_run(&["demo", "hello"], HELLO_OUTPUT);
    assert_eq!(stderr, "");
}

#[test]
fn cli_demo_hypercalls_prints_exactly() {
    if kvm_or_skip().is_none() {
        return;
    }
    cli_run(&["demo", "hypercalls"], HYPERCALLS_STDOUT);
}

#[test]
fn cli_stats_report_rax_42() {
    if kvm_or_skip().is_none() {
        return;
    }
    let stderr = cli_run(&["demo", "hello", "--stats"], HELLO_OUTPUT);
    assert!(stderr.contains("rax=0x2a (42)"), "{stderr}");
    assert!(
        stderr.contains("kvmini: 15 exits: io 15, hlt 0, mmio 0, other 0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("kvmini: by hypercall: console 14, halt 1\n"),
        "{stderr}"
    );
}

#[test]
fn cli_tour_runs_every_guest() {
    if kvm_or_skip().is_none() {
        return;
    }
    let out = kvmini_output(&[]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(HELLO_OUTPUT), "{stdout}");
    assert!(stdout.contains(HYPERCALLS_STDOUT), "{stdout}");
    assert!(
        stdout.contains(
            "--- hello: halted after 15 exits (console 14, halt 1), RAX = 42, status 0\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "--- hypercalls: exit(0) after 10 exits \
             (printVal 2, getNumExits 3, display 4, exit 1), RAX = 0, status 0\n"
        ),
        "{stdout}"
    );
    // Hello's output comes before the hypercalls guest's.
    let hello = stdout.find(HELLO_OUTPUT);
    let hypercalls = stdout.find(HYPERCALLS_STDOUT);
    assert!(hello < hypercalls, "{stdout}");
}

#[test]
fn cli_demo_list_names_every_guest() {
    // Listing runs no guest, so it needs no KVM.
    let out = kvmini_output(&["demo", "--list"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let names: Vec<&str> = stdout
        .lines()
        .map(|line| line.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(names, ["hello", "hypercalls", "files"], "{stdout}");
    for guest in kvmini::guests::ALL {
        assert!(stdout.contains(guest.summary), "{stdout}");
    }
}

#[test]
fn cli_trace_prints_one_line_per_hypercall() {
    if kvm_or_skip().is_none() {
        return;
    }
    let stderr = cli_run(&["demo", "hello", "--trace"], HELLO_OUTPUT);
    let mut expected: String = "Hello, world!\n"
        .chars()
        .map(|c| match c {
            '\n' => "console('\\n')\n".to_owned(),
            c => format!("console('{c}')\n"),
        })
        .collect();
    expected.push_str("halt() = ?\n+++ halted +++\n");
    assert_eq!(stderr, expected);
}

#[test]
fn cli_verbose_describes_the_machine() {
    if kvm_or_skip().is_none() {
        return;
    }
    let stderr = cli_run(&["demo", "hello", "--verbose"], HELLO_OUTPUT);
    for needle in ["PML4", "GDT", "IDT", "kvm_run", "RIP = 0x100000", "ring 3"] {
        assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
    }
}

#[test]
fn files_demo_shows_the_result_on_disk_and_cleans_up() {
    if kvm_or_skip().is_none() {
        return;
    }
    let out = kvmini_output(&["demo", "files"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(FILES_STDOUT), "{stdout}");
    assert!(
        stdout.contains("  batch.txt (40 bytes)\n  notes.txt (71 bytes)\n  reports/\n  reports/squares.txt (77 bytes)\n"),
        "{stdout}"
    );
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("(the guest's / is the fresh host directory "))
        .and_then(|rest| rest.strip_suffix(')'))
        .expect("the demo names its directory");
    assert!(!std::path::Path::new(dir).exists(), "{dir} was left behind");
}
