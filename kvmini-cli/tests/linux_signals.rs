//! Signals a Linux program sends itself, through the `kvmini` binary, each
//! compared with the same musl program run natively (docs/linux.md,
//! "Signals"): a default action that ends a program ends it with 128 + N
//! and nothing on stderr; blocked, ignored and default-ignored signals let
//! it go on as natively; a handler runs as natively
//! (linux_signal_handlers.rs has the frames in detail).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
mod linux_native;

use common::kvm_or_skip;
use linux_native::{in_kvmini, musl, native, outcome};

#[test]
fn a_signal_a_program_sends_itself_ends_or_spares_it_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = musl("signals.c", dir.path());
    let path = program.to_str().unwrap();
    let cases = [
        ("abort", 134, "aborting\n"),
        ("term", 143, ""),
        ("kill", 138, ""),
        ("tgkill", 131, ""),
        ("tkill", 129, ""),
        (
            "blocked",
            140,
            "raise_blocked=0 errno=-\npending=1 errno=-\nunblocking\n",
        ),
        ("blocked-then-ignored", 8, "pending=0 errno=-\n"),
        ("none", 5, "went on\n"),
        (
            "answers",
            7,
            "kill_self_0=0 errno=-\n\
             kill_group_0=0 errno=-\n\
             kill_other=-1 errno=No such process\n\
             kill_bad_signal=-1 errno=Invalid argument\n\
             tgkill_other=-1 errno=No such process\n\
             tgkill_zero=-1 errno=Invalid argument\n\
             tkill_negative=-1 errno=Invalid argument\n\
             raise_chld=0 errno=-\n\
             raise_winch=0 errno=-\n\
             raise_ignored_term=0 errno=-\n\
             altstack_old=0 errno=-\n\
             altstack_old_flags=2 errno=-\n\
             altstack_set=0 errno=-\n\
             altstack_read=0 errno=-\n\
             altstack_same=1 errno=-\n\
             altstack_small=-1 errno=Out of memory\n\
             altstack_bad_flags=-1 errno=Invalid argument\n",
        ),
    ];
    for (how, status, stdout) in cases {
        let expected = (status, stdout.to_owned(), String::new());
        let natively = outcome(&native(&program, &[how], dir.path()));
        let guest = outcome(&in_kvmini(&[path, "--", how]));
        assert_eq!(natively, expected, "natively: {how}");
        assert_eq!(guest, expected, "in kvmini: {how}");
    }
}

#[test]
fn a_handler_runs_and_the_program_goes_on_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = musl("signals.c", dir.path());
    let expected = (
        6,
        "handler ran\nraise_handled=0 errno=-\n".to_owned(),
        String::new(),
    );
    let natively = outcome(&native(&program, &["handled"], dir.path()));
    assert_eq!(natively, expected);
    let guest = outcome(&in_kvmini(&[program.to_str().unwrap(), "--", "handled"]));
    assert_eq!(guest, expected);
}

#[test]
fn verbose_names_the_signal_that_ended_the_program() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = musl("signals.c", dir.path());
    let out = in_kvmini(&["--verbose", program.to_str().unwrap(), "--", "abort"]);
    let (status, stdout, stderr) = outcome(&out);
    assert_eq!(status, 134);
    assert!(stdout.ends_with("aborting\n"), "{stdout}");
    assert!(
        stderr.ends_with("kvmini: the program ended itself with SIGABRT (6) (status 134)\n"),
        "{stderr}"
    );
}
