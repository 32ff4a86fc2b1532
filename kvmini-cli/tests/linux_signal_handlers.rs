//! Signal handlers of a Linux program run as Linux runs them: each case of
//! kvmini/tests/linux/signal_handlers.c runs in kvmini and natively, and
//! the output and status must be the same and the ones written here
//! (docs/linux.md, "Signals"). Frames a handler forged or corrupted end the
//! program as Linux ends it, or go on where Linux goes on.
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

/// Runs each `(case, status, stdout)` of the program in kvmini and
/// natively.
fn same_as_natively(cases: &[(&str, i32, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let program = musl("signal_handlers.c", dir.path());
    let path = program.to_str().unwrap();
    for &(how, status, stdout) in cases {
        let expected = (status, stdout.to_owned(), String::new());
        let natively = outcome(&native(&program, &[how], dir.path()));
        assert_eq!(natively, expected, "natively: {how}");
        let guest = outcome(&in_kvmini(&[path, "--", how]));
        assert_eq!(guest, expected, "in kvmini: {how}");
    }
}

#[test]
fn handlers_run_with_linux_frames_masks_and_flags() {
    if kvm_or_skip().is_none() {
        return;
    }
    let info = "info: sig=10 signo=10 code=-6 pid_is_mine=1 uid_is_mine=1 errno_field=0\n\
                context: mask_had_usr2=1 fpregs_aligned=1 stack_flags=0 frame_aligned=1\n";
    let info_kill = info.replace("code=-6", "code=0");
    let info_all = format!("raise:\n{info}kill:\n{info_kill}tgkill:\n{info}");
    same_as_natively(&[
        (
            "plain",
            4,
            "plain handler: sig=10 blocked_inside=1\n\
             raise=0 hits=1 blocked_after=0\n\
             plain handler: sig=12 blocked_inside=1\n\
             kill=0 hits=2\n",
        ),
        ("info", 4, &info_all),
        (
            "resethand",
            138,
            "plain handler: sig=10 blocked_inside=1\nreset to default=1\n",
        ),
        (
            "nodefer",
            4,
            "enter 1 (sig 10)\nenter 2 (sig 10)\nleave 2\nleave 1\nback in main\n",
        ),
        (
            "defer",
            4,
            "enter 1 (sig 10)\nleave 1\nenter 2 (sig 10)\nleave 2\nback in main\n",
        ),
        (
            "mask",
            4,
            "first handler: sig=10 usr2_blocked=1\n\
             first handler: raised SIGUSR2\n\
             plain handler: sig=12 blocked_inside=1\n\
             back in main: hits=1 usr2_blocked=0\n",
        ),
        (
            "unblock",
            4,
            "raised while blocked: hits=0\n\
             plain handler: sig=10 blocked_inside=1\n\
             unblocked: hits=1\n",
        ),
        (
            "longjmp",
            4,
            "jumped out with 10, blocked=0\n\
             jumped out with 10, blocked=0\n\
             jumped out with 10, blocked=0\n",
        ),
    ]);
}

#[test]
fn handlers_run_on_the_alternate_stack_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    same_as_natively(&[(
        "altstack",
        4,
        "altstack handler: sig=10 on_alt=1 flags=1 change=-1 errno=1\n\
         altstack handler: sig=12 on_alt=0 flags=0 change=0 errno=0\n\
         after: flags=0\n\
         autodisarm=0\n\
         altstack handler: sig=10 on_alt=1 flags=2 change=0 errno=0\n\
         after: flags=0\n",
    )]);
}

#[test]
fn a_handler_using_vector_registers_leaves_the_interrupted_ones_alone() {
    if kvm_or_skip().is_none() {
        return;
    }
    same_as_natively(&[(
        "vectors",
        4,
        "vectors: handler_ran=1 kept=1 mxcsr_kept=1 tkill=0\n",
    )]);
}

#[test]
fn ten_thousand_handled_signals_leave_no_frame_behind() {
    if kvm_or_skip().is_none() {
        return;
    }
    same_as_natively(&[("loop", 4, "hits=10000 same_stack=1\n")]);
}

#[test]
fn forged_and_corrupted_frames_end_or_go_on_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let went_on = "went on: nt=0 iopl=0 vm=0 tf=0\n";
    same_as_natively(&[
        // RIP not canonical: SIGSEGV.
        ("forge-1", 139, ""),
        // RIP and RSP somewhere the program may go.
        ("forge-2", 3, "landed where the frame said\n"),
        // NT, IOPL and VM are never taken from a frame.
        ("forge-3", 4, went_on),
        // An XSAVE header, an MXCSR or an fpstate pointer the CPU refuses.
        ("forge-4", 139, ""),
        ("forge-5", 139, ""),
        ("forge-6", 139, ""),
        // No magic words: the legacy region is restored, and it goes on.
        ("forge-7", 4, went_on),
        // SIGKILL and SIGSTOP in the mask to restore are dropped.
        ("forge-8", 4, went_on),
        // A handler without SA_RESTORER cannot get a frame on x86-64.
        ("no-restorer", 139, "rt_sigaction=0\n"),
    ]);
}

#[test]
fn faults_go_to_their_handlers_with_linux_siginfo() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = musl("signal_handlers.c", dir.path());
    // The addresses of the faulting instructions are the program's own:
    // the same in both runs, but not known here.
    let natively = outcome(&native(&program, &["faults"], dir.path()));
    let guest = outcome(&in_kvmini(&[program.to_str().unwrap(), "--", "faults"]));
    assert_eq!(guest, natively);
    let lines: Vec<&str> = natively.1.lines().collect();
    assert_eq!(natively.0, 4);
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(
        lines[0],
        "fault: sig=11 code=1 addr=0x10 trapno=14 err=6 blocked_inside=1"
    );
    assert!(
        lines[1].starts_with("fault: sig=8 code=1 addr=0x4"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with(" trapno=0 err=0 blocked_inside=1"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("fault: sig=4 code=2 addr=0x4"),
        "{}",
        lines[2]
    );
    assert!(
        lines[2].ends_with(" trapno=6 err=0 blocked_inside=1"),
        "{}",
        lines[2]
    );
    assert_eq!(
        &lines[3..],
        [
            "fault: sig=11 code=128 addr=0 trapno=13 err=0 blocked_inside=1",
            "fault: sig=5 code=128 addr=0 trapno=3 err=0 blocked_inside=1",
            "after the faults",
        ]
    );
}

#[test]
fn a_stack_overflow_reaches_a_handler_on_the_alternate_stack() {
    if kvm_or_skip().is_none() {
        return;
    }
    same_as_natively(&[("overflow", 7, "overflow caught: sig=11 on_alt=1\n")]);
}

#[test]
fn a_fault_in_its_handler_or_while_blocked_ends_the_program_as_before() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = musl("signal_handlers.c", dir.path());
    for (how, stdout) in [
        ("fault-in-handler", "in handler for 11, faulting again\n"),
        ("fault-blocked", ""),
    ] {
        let natively = outcome(&native(&program, &[how], dir.path()));
        assert_eq!(natively, (139, stdout.to_owned(), String::new()), "{how}");
        // kvmini adds its crash report on stderr, as for any crash.
        let (status, out, err) = outcome(&in_kvmini(&[program.to_str().unwrap(), "--", how]));
        assert_eq!((status, out.as_str()), (139, stdout), "{how}");
        assert!(
            err.starts_with("kvmini: guest crashed: page fault writing 0x10 (not mapped)"),
            "{how}: {err}"
        );
    }
}

#[test]
fn the_trace_shows_each_signal_delivered_to_a_handler_as_strace_does() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = musl("signal_handlers.c", dir.path());
    let path = program.to_str().unwrap();
    let uid = host_uid();
    let delivered = |how: &str| -> Vec<String> {
        let out = in_kvmini(&["--trace", path, "--", how]);
        assert_eq!(out.status.code(), Some(4), "{how}");
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|line| line.starts_with("--- "))
            .map(str::to_owned)
            .collect()
    };
    // raise() is tkill; kill() of its own pid is SI_USER.
    assert_eq!(
        delivered("plain"),
        [
            format!(
                "--- SIGUSR1 {{si_signo=SIGUSR1, si_code=SI_TKILL, si_pid=1, si_uid={uid}}} ---"
            ),
            format!(
                "--- SIGUSR2 {{si_signo=SIGUSR2, si_code=SI_USER, si_pid=1, si_uid={uid}}} ---"
            ),
        ]
    );
    // Faults carry their address (the divide error's and the invalid
    // opcode's are the program's own instructions: only their start is
    // checked).
    let faults = delivered("faults");
    assert_eq!(faults.len(), 5, "{faults:?}");
    assert_eq!(
        faults[0],
        "--- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=0x10} ---"
    );
    assert!(
        faults[1].starts_with("--- SIGFPE {si_signo=SIGFPE, si_code=FPE_INTDIV, si_addr=0x4"),
        "{}",
        faults[1]
    );
    assert!(
        faults[2].starts_with("--- SIGILL {si_signo=SIGILL, si_code=ILL_ILLOPN, si_addr=0x4"),
        "{}",
        faults[2]
    );
    assert_eq!(
        &faults[3..],
        [
            "--- SIGSEGV {si_signo=SIGSEGV, si_code=SI_KERNEL, si_addr=NULL} ---",
            "--- SIGTRAP {si_signo=SIGTRAP, si_code=SI_KERNEL, si_addr=NULL} ---",
        ]
    );
}

/// The user id kvmini's programs see: the host user's.
fn host_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
