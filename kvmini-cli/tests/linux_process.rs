//! What a Linux program learns about itself (its name, CPUs, parent, group,
//! session, the system's memory) through the `kvmini` binary, compared
//! with the same musl program run natively as a group leader
//! (docs/linux.md): the answers of a lone process on one CPU.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
mod linux_native;

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

use common::kvm_or_skip;
use linux_native::{in_kvmini, musl, outcome, BUSYBOX};

/// What process.c prints the same natively and in kvmini.
const COMMON: &str = "get_name=0 errno=-
name=process
set_name=0 errno=-
get_name=0 errno=-
name=a-name-longer-t len=15
set_short=0 errno=-
name=short
set_bad_pointer=-1 errno=Bad address
unknown_option=-1 errno=Invalid argument
sched_yield=0 errno=-
affinity_short=-1 errno=Invalid argument
affinity_other=-1 errno=No such process
self_is_group_leader=1 errno=-
session_of_self=1 errno=-
pgid_of_other=-1 errno=No such process
setsid_as_leader=-1 errno=Operation not permitted
sysinfo=0 errno=-
sysinfo_bad_pointer=-1 errno=Bad address
--
";

#[test]
fn prctl_affinity_and_the_process_ids_answer_as_a_lone_process_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = musl("process.c", dir.path());
    let native = Command::new(&program)
        .process_group(0)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (status, stdout, stderr) = outcome(&native);
    assert_eq!((status, stderr), (0, String::new()));
    assert!(stdout.starts_with(COMMON), "natively:\n{stdout}");
    // The machine's part: one CPU, no parent, the program's own group and
    // session, guest memory as the RAM.
    let guest = outcome(&in_kvmini(&["--mem", "64M", program.to_str().unwrap()]));
    let expected = format!(
        "{COMMON}affinity=0 errno=-\ncpus=1\nppid=0 pgrp=1 sid=1\n\
         procs=1 mem_unit=1 totalram=67108864 freeram_below_total=1\n"
    );
    assert_eq!(guest, (0, expected, String::new()));
}

#[test]
fn busybox_nproc_counts_one_cpu() {
    if kvm_or_skip().is_none() {
        return;
    }
    let guest = outcome(&in_kvmini(&[BUSYBOX, "--", "nproc"]));
    assert_eq!(guest, (0, "1\n".to_owned(), String::new()));
}
