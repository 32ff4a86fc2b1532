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

/// The ELF note that tells kvmini which ABI a guest was built for
/// ([`kvmini_abi::note`]), laid out as an ELF note entry: sizes and type,
/// the name padded to 4 bytes, then the descriptor, the ABI version.
#[doc(hidden)]
#[repr(C, align(4))]
pub struct AbiNote {
    namesz: u32,
    descsz: u32,
    kind: u32,
    name: [u8; 8],
    version: u32,
}

impl AbiNote {
    /// The note of the ABI this SDK was built with.
    // The name is a handful of bytes (`padded_name` holds it in 8).
    #[allow(clippy::cast_possible_truncation)]
    pub const CURRENT: AbiNote = AbiNote {
        namesz: kvmini_abi::note::NAME.len() as u32,
        descsz: kvmini_abi::note::DESC_SIZE,
        kind: kvmini_abi::note::TYPE,
        name: padded_name(),
        version: kvmini_abi::ABI_VERSION,
    };
}

/// The note's name, NUL included, padded with zeros to a multiple of 4.
const fn padded_name() -> [u8; 8] {
    let mut name = [0u8; 8];
    let mut i = 0;
    while i < kvmini_abi::note::NAME.len() {
        name[i] = kvmini_abi::note::NAME[i];
        i += 1;
    }
    name
}

/// Declares the guest's main function and defines `_start`, the ELF entry
/// point, which aligns the stack as the SysV ABI wants, calls main and then
/// `exit` with what main returned. It also puts the ABI note
/// (`.note.kvmini`) in the guest's own object, so every image built with
/// this macro and the SDK's linker script says which ABI it was built for.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[used]
        #[link_section = ".note.kvmini"]
        static __KVMINI_ABI_NOTE: $crate::AbiNote = $crate::AbiNote::CURRENT;

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
