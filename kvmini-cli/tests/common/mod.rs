//! Helpers of the command line's tests: the kvmini binary, and the library
//! tests' helpers (`kvmini/tests/common`), shared rather than copied.

// Each test crate includes this module and uses a different part of it.
#![allow(dead_code)]

use std::process::{Command, Output};

#[path = "../../../kvmini/tests/common/mod.rs"]
mod library;

pub use library::*;

/// A command for the kvmini binary that cargo built for these tests.
pub fn kvmini() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kvmini"))
}

/// Runs kvmini with `args` and returns its output.
pub fn kvmini_output(args: &[&str]) -> Output {
    kvmini().args(args).output().expect("kvmini starts")
}
