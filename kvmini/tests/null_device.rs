//! `/dev/null` for SDK guests: the same device Linux programs get, served
//! by kvmini without a host file and without any grant (docs/linux.md,
//! "/dev/null").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
mod fs_common;

use common::kvm_or_skip;
use fs_common::{build_guest, run_guest};
use kvmini::sandbox::Ending;

#[test]
fn an_sdk_guest_without_grants_reads_writes_and_stats_dev_null() {
    let Some(kvm) = kvm_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let elf = build_guest("null_device", &[], dir.path());
    let run = run_guest(&kvm, &elf, &[], 16 << 20);
    assert_eq!(run.outcome.ending, Ending::Exited(0));
}
