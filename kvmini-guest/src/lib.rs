//! The Rust SDK for kvmini guests.
//!
//! A guest is a `#![no_std]`, `#![no_main]` binary that names its main
//! function with [`entry!`]; it is linked as a static ELF with the script
//! this crate exports (see the README's "Writing a Rust guest").
//! Files in the host directories granted with `--dir` are in [`fs`], the
//! guest's arguments in [`env`](mod@env), and calls to functions of the
//! program that embeds kvmini in [`host`].
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! kvmini_guest::entry!(main);
//! fn main() -> i32 {
//!     kvmini_guest::println!("hello from a guest");
//!     0
//! }
//! ```
#![no_std]
#![deny(missing_docs)]

pub mod batch;
pub mod env;
mod errno;
pub mod fs;
pub mod host;
pub mod hypercall;
mod print;
mod runtime;

pub use errno::{check, Errno, Result};
pub use kvmini_abi as abi;
pub use print::_print;

/// What a guest's main function may return: nothing, or an exit status.
pub trait ExitStatus {
    /// The status kvmini exits with.
    fn code(self) -> i32;
}

impl ExitStatus for () {
    fn code(self) -> i32 {
        0
    }
}

impl ExitStatus for i32 {
    fn code(self) -> i32 {
        self
    }
}

/// Declares the guest's main function and defines `_start`, the ELF entry
/// point, which aligns the stack as the SysV ABI wants, calls main and then
/// `exit` with what main returned.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        ::core::arch::global_asm!(
            ".pushsection .text._start,\"ax\",@progbits",
            ".globl _start",
            ".type _start,@function",
            "_start:",
            "xor ebp, ebp",
            "and rsp, -16",
            "cld",
            "call __kvmini_main",
            "ud2",
            ".popsection",
        );

        #[no_mangle]
        extern "C" fn __kvmini_main() -> ! {
            let status = $crate::ExitStatus::code($main());
            $crate::hypercall::exit(status)
        }
    };
}

/// Prints to kvmini's stdout, in one exit per 255 bytes of output.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::_print(::core::format_args!($($arg)*)) };
}

/// Prints a line to kvmini's stdout.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*))) };
}
