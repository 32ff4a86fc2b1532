//! The top of `--max-fds` that `promises.rs` and `cli_errors.rs` leave
//! out: 65536 taken, 65537 refused. (The library's floor of 3 is a unit
//! test of `fs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::{kvm_or_skip, kvmini, text};

#[test]
fn the_command_line_takes_max_fds_up_to_65536() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hello = dir.path().join("hello.elf");
    std::fs::write(&hello, kvmini::guests::HELLO.elf).expect("write the guest");
    let hello = hello.to_str().expect("UTF-8 temp path");

    let refused = kvmini()
        .args(["run", "--max-fds", "65537", hello])
        .output()
        .expect("kvmini runs");
    assert_eq!(
        (
            refused.status.code(),
            text(&refused.stdout),
            text(&refused.stderr)
        ),
        (
            Some(125),
            String::new(),
            "kvmini: invalid value '65537' for '--max-fds <N>': 65537 is not in 3..=65536\n\
             \n\
             For more information, try '--help'.\n"
                .to_owned()
        )
    );

    if kvm_or_skip().is_none() {
        return;
    }
    let taken = kvmini()
        .args(["run", "--max-fds", "65536", hello])
        .output()
        .expect("kvmini runs");
    assert_eq!(
        (
            taken.status.code(),
            text(&taken.stdout),
            text(&taken.stderr)
        ),
        (Some(0), "Hello, world!\n".to_owned(), String::new())
    );
}
