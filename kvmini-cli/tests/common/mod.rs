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

/// Ring 3 flat: read one byte from descriptor 0 into 0x2000, printVal the
/// result and the byte, halt.
/// The `IoArgs` block is at 0x1000: fd 0 (zeroed memory), buf 0x2000,
/// len 1; its result at 0x1020.
///    0: mov qword [0x1008], 0x2000 ; c: mov qword [0x1010], 1
///   18: mov eax, 0x1000 ; 1d: mov dx, 0x412 ; 21: out dx, eax   (read)
///   22: mov eax, [0x1020] ; 29: mov dx, 0x400 ; 2d: out dx, eax (printVal)
///   2e: movzx eax, byte [0x2000] ; 36: out dx, eax               (printVal)
///   37: mov dx, 0x404 ; 3b: out dx, al                           (halt)
#[rustfmt::skip]
pub const READ_ONE: &[u8] = &[
    0x48, 0xC7, 0x04, 0x25, 0x08, 0x10, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00,
    0x48, 0xC7, 0x04, 0x25, 0x10, 0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0xB8, 0x00, 0x10, 0x00, 0x00,
    0x66, 0xBA, 0x12, 0x04,
    0xEF,
    0x8B, 0x04, 0x25, 0x20, 0x10, 0x00, 0x00,
    0x66, 0xBA, 0x00, 0x04,
    0xEF,
    0x0F, 0xB6, 0x04, 0x25, 0x00, 0x20, 0x00, 0x00,
    0xEF,
    0x66, 0xBA, 0x04, 0x04,
    0xEE,
];
