//! The C SDK (`sdk/c`): its examples and a test guest, built with the
//! documented `cc` command line and run by kvmini.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::path::{Path, PathBuf};

use common::c_build::cc_guest;
use common::{by_hypercall, kvm_or_skip, run_image};
use kvmini::sandbox::{Ending, Image};
use kvmini_abi::Port;

/// Builds `source` (relative to the repository root) into `dir` with the
/// SDK's flags plus `extra`, and returns the ELF's path.
fn build(source: &str, extra: &[&str], dir: &Path) -> PathBuf {
    let stem = Path::new(source)
        .file_stem()
        .expect("the source has a name");
    let elf = dir.join(stem).with_extension("elf");
    cc_guest(extra, &elf, source);
    elf
}

fn read(elf: &Path) -> Vec<u8> {
    std::fs::read(elf).expect("the built guest is readable")
}

/// The string `tests/guests/display10k.c` builds: byte i is '!' + i % 94.
fn display10k_string() -> Vec<u8> {
    (0u8..94).cycle().take(10_000).map(|i| b'!' + i).collect()
}

#[test]
fn display_prints_10k_across_four_pages_in_one_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let elf = build("kvmini/tests/guests/display10k.c", &[], dir.path());
    let Some(kvm) = kvm_or_skip() else { return };

    let run = run_image(&kvm, Image::Elf(read(&elf)), None);
    let mut want = display10k_string();
    want.extend_from_slice(b"2\n");
    assert_eq!(run.stdout.len(), 10_002);
    assert!(
        run.stdout == want,
        "output differs from the expected 10,000 bytes + \"2\\n\" first at byte {:?}",
        run.stdout.iter().zip(&want).position(|(a, b)| a != b)
    );
    assert_eq!(run.warnings_text(), "");
    assert_eq!(run.outcome.ending, Ending::Exited(0));
    assert_eq!(run.outcome.stats.exits, 5);
    assert_eq!(
        run.outcome.stats.by_hypercall,
        by_hypercall(&[
            (Port::GetNumExits, 2),
            (Port::Display, 1),
            (Port::PrintVal, 1),
            (Port::Exit, 1),
        ])
    );
}
