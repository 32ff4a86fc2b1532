//! The ABI between kvmini and its guests: the single source of truth that the
//! host (`kvmini`), the Rust guest SDK (`kvmini-guest`) and, by hand, the C SDK
//! (`sdk/c/kvmini.h`) are written against; kvmini's tests compare the C
//! header with this crate value by value (`kvmini/tests/abi.rs`).
//!
//! A hypercall is one x86 port I/O instruction, and so one VM exit:
//!
//! | port | call | instruction | value |
//! |---|---|---|---|
//! | `0xE8` | Linux system call | `out` byte | ignored: the call is in the registers (Linux programs only) |
//! | `0xE9` | console | `out` byte | one character |
//! | `0x0400` | `printVal` | `out` 32-bit | the value, printed in decimal with a newline |
//! | `0x0401` | `getNumExits` | `in` 32-bit | exits since the guest started, this one included |
//! | `0x0402` | `display` | `out` 32-bit | guest virtual address of a NUL-terminated string |
//! | `0x0403` | `exit` | `out` 32-bit | exit status (kvmini exits with its low 8 bits) |
//! | `0x0404` | `halt` | `out` byte | ignored: ends the run with status 0, like `hlt` |
//! | `0x0405` | exception | `out` byte | used only by kvmini's own exception handlers |
//! | `0x0410`..`0x041F` | filesystem calls | `out` 32-bit | guest address of the call's argument block ([`fs`]) |
//! | `0x0420` | host function call | `out` 32-bit | guest address of a [`host::HostCallArgs`] |
//! | `0x0421` | arguments | `out` 32-bit | guest address of a [`host::ArgvArgs`] |
//! | `0x0422` | batch | `out` 32-bit | guest address of a [`batch::BatchArgs`]: many calls, one exit |
//!
//! Values that do not fit in 32 bits travel as the guest address of a
//! `#[repr(C)]` argument block; see the `IN`/`OUT` notes on each field.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Declares [`Port`] and everything derived from its one table: the enum,
/// `TryFrom<u16>`, [`Port::ALL`], [`Port::index`], [`Port::access`] and
/// [`Port::name`]. Each row is
/// `Variant = port, "name", direction size;` with its doc comment.
macro_rules! ports {
    ($(
        $(#[$meta:meta])*
        $variant:ident = $port:literal, $name:literal, $dir:ident $size:literal;
    )*) => {
        /// The hypercall ports. `TryFrom<u16>` turns an exit's port into one.
        #[repr(u16)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Port {
            $($(#[$meta])* $variant = $port,)*
        }

        /// Positions in the table: the implicit discriminants count 0, 1, ...
        #[derive(Clone, Copy)]
        enum Position {
            $($variant,)*
        }

        impl TryFrom<u16> for Port {
            type Error = UnknownPort;

            fn try_from(port: u16) -> Result<Self, Self::Error> {
                match port {
                    $($port => Ok(Port::$variant),)*
                    other => Err(UnknownPort(other)),
                }
            }
        }

        impl Port {
            /// Every hypercall port, in ABI order.
            pub const ALL: [Port; [$(stringify!($variant)),*].len()] = [$(Port::$variant),*];

            /// Position of this port in [`Port::ALL`], for per-hypercall counters.
            pub const fn index(self) -> usize {
                match self {
                    $(Port::$variant => Position::$variant as usize,)*
                }
            }

            /// The one direction and access size (in bytes) this port accepts.
            /// Anything else is a guest error that ends the run.
            pub const fn access(self) -> (Direction, u8) {
                match self {
                    $(Port::$variant => (Direction::$dir, $size),)*
                }
            }

            /// The hypercall's name as the guest SDKs spell it.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Port::$variant => $name,)*
                }
            }
        }
    };
}

ports! {
    /// `out` of one byte: print that byte (the classic "hello world" port).
    Console = 0x00E9, "console", Out 1;
    /// `out` of a 32-bit value: print it in decimal and a newline.
    PrintVal = 0x0400, "printVal", Out 4;
    /// `in` of a 32-bit value: the number of exits so far, this one included.
    GetNumExits = 0x0401, "getNumExits", In 4;
    /// `out` of the 32-bit guest virtual address of a NUL-terminated string:
    /// print the whole string in this one exit.
    Display = 0x0402, "display", Out 4;
    /// `out` of a 32-bit exit status: end the run; kvmini exits with the low
    /// 8 bits, as Linux's `exit` does.
    Exit = 0x0403, "exit", Out 4;
    /// `out` of one byte (ignored): end the run with status 0 and registers
    /// left as they are. The ring-3 stand-in for `hlt`, which is privileged.
    Halt = 0x0404, "halt", Out 1;
    /// `out` of one byte, the exception vector: made only by kvmini's own
    /// exception handlers, never by guest code.
    Exception = 0x0405, "exception", Out 1;
    /// `open` ([`fs::OpenArgs`]).
    Open = 0x0410, "open", Out 4;
    /// `close` ([`fs::FdArgs`]).
    Close = 0x0411, "close", Out 4;
    /// `read` ([`fs::IoArgs`]).
    Read = 0x0412, "read", Out 4;
    /// `write` ([`fs::IoArgs`]).
    Write = 0x0413, "write", Out 4;
    /// `pread` ([`fs::IoArgs`], with `offset`).
    Pread = 0x0414, "pread", Out 4;
    /// `pwrite` ([`fs::IoArgs`], with `offset`).
    Pwrite = 0x0415, "pwrite", Out 4;
    /// `lseek` ([`fs::SeekArgs`]).
    Lseek = 0x0416, "lseek", Out 4;
    /// `fstat` ([`fs::StatArgs`], by `fd`).
    Fstat = 0x0417, "fstat", Out 4;
    /// `stat` ([`fs::StatArgs`], by `path`).
    Stat = 0x0418, "stat", Out 4;
    /// `fsync` ([`fs::FdArgs`]).
    Fsync = 0x0419, "fsync", Out 4;
    /// `ftruncate` ([`fs::TruncateArgs`]).
    Ftruncate = 0x041A, "ftruncate", Out 4;
    /// `unlink` ([`fs::PathArgs`]).
    Unlink = 0x041B, "unlink", Out 4;
    /// `mkdir` ([`fs::PathArgs`], with `mode`).
    Mkdir = 0x041C, "mkdir", Out 4;
    /// `rmdir` ([`fs::PathArgs`]).
    Rmdir = 0x041D, "rmdir", Out 4;
    /// `rename` ([`fs::RenameArgs`]).
    Rename = 0x041E, "rename", Out 4;
    /// `getdents64` ([`fs::IoArgs`]: `buf`/`len` receive [`fs::Dirent64`] records).
    Getdents = 0x041F, "getdents", Out 4;
    /// A call to a function the embedding program registered
    /// ([`host::HostCallArgs`]).
    HostCall = 0x0420, "host_call", Out 4;
    /// The guest's arguments ([`host::ArgvArgs`]).
    Argv = 0x0421, "argv", Out 4;
    /// Several filesystem or host calls in one exit ([`batch::BatchArgs`]).
    Batch = 0x0422, "batch", Out 4;
    /// `out` of one byte (ignored) from the system-call stub of a Linux
    /// program: the call is in the registers (RAX the number, RDI, RSI,
    /// RDX, R10, R8, R9 the arguments), its result goes to RAX. Served
    /// only for Linux programs (docs/linux.md).
    Syscall = 0x00E8, "syscall", Out 1;
}

/// The error for a port that no hypercall owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownPort(pub u16);

/// Which way data moves in a port access, seen from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `out`: guest to host.
    Out,
    /// `in`: host to guest.
    In,
}

impl Port {
    /// True for the calls a batch may hold: the filesystem calls, host
    /// function calls and argv.
    pub const fn batchable(self) -> bool {
        self.is_fs() || matches!(self, Port::HostCall | Port::Argv)
    }

    /// True for the filesystem calls, whose value is an argument block address.
    pub const fn is_fs(self) -> bool {
        (self as u16) >= 0x0410 && (self as u16) <= 0x041F
    }
}

/// The version of this ABI. Every guest image built with one of kvmini's
/// SDKs carries it in an ELF note ([`note`]); kvmini refuses an image built
/// for another version and says which. Raise it with every change a guest
/// built earlier could notice.
pub const ABI_VERSION: u32 = 1;

/// The ELF note that names the ABI a guest image was built for.
///
/// It is an ordinary `SHT_NOTE`/`PT_NOTE` entry: a 4-byte name size, a
/// 4-byte descriptor size, a 4-byte type, the name padded to 4 bytes, then
/// the descriptor. An image without it is not an SDK guest (for example a
/// plain Linux program), which is not an error in itself.
pub mod note {
    /// The note's name, with its terminating NUL, as it sits in the image.
    pub const NAME: &[u8; 7] = b"kvmini\0";
    /// The note's type.
    pub const TYPE: u32 = 1;
    /// The descriptor's size: one little-endian `u32`, the ABI version.
    pub const DESC_SIZE: u32 = 4;
    /// The section that holds the note in SDK-built images.
    pub const SECTION: &str = ".note.kvmini";
}

pub mod batch;
pub mod errno;
pub mod fs;
pub mod host;

/// Guest memory layout shared by kvmini and its guests.
pub mod layout {
    /// Lowest guest address an ELF guest may load at: the first 1 MiB is
    /// kept free (its first page is never mapped, to catch null pointers).
    pub const ELF_LOAD_MIN: u64 = 0x10_0000;
    /// Size of kvmini's own region at the top of guest memory (page tables,
    /// GDT, IDT, TSS, exception handlers and their stack). Guests cannot
    /// see it at ring 3; the guest's stack starts right below it.
    pub const SYSTEM_AREA_SIZE: u64 = 0x1_0000;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ABI as written out by hand, row by row: the table must produce
    /// exactly this, in this order.
    const EXPECTED: [(u16, &str, Direction, u8); 27] = [
        (0x00E9, "console", Direction::Out, 1),
        (0x0400, "printVal", Direction::Out, 4),
        (0x0401, "getNumExits", Direction::In, 4),
        (0x0402, "display", Direction::Out, 4),
        (0x0403, "exit", Direction::Out, 4),
        (0x0404, "halt", Direction::Out, 1),
        (0x0405, "exception", Direction::Out, 1),
        (0x0410, "open", Direction::Out, 4),
        (0x0411, "close", Direction::Out, 4),
        (0x0412, "read", Direction::Out, 4),
        (0x0413, "write", Direction::Out, 4),
        (0x0414, "pread", Direction::Out, 4),
        (0x0415, "pwrite", Direction::Out, 4),
        (0x0416, "lseek", Direction::Out, 4),
        (0x0417, "fstat", Direction::Out, 4),
        (0x0418, "stat", Direction::Out, 4),
        (0x0419, "fsync", Direction::Out, 4),
        (0x041A, "ftruncate", Direction::Out, 4),
        (0x041B, "unlink", Direction::Out, 4),
        (0x041C, "mkdir", Direction::Out, 4),
        (0x041D, "rmdir", Direction::Out, 4),
        (0x041E, "rename", Direction::Out, 4),
        (0x041F, "getdents", Direction::Out, 4),
        (0x0420, "host_call", Direction::Out, 4),
        (0x0421, "argv", Direction::Out, 4),
        (0x0422, "batch", Direction::Out, 4),
        (0x00E8, "syscall", Direction::Out, 1),
    ];

    #[test]
    fn the_table_gives_every_port_its_number_name_and_access() {
        assert_eq!(Port::ALL.len(), EXPECTED.len());
        for (i, (port, &(raw, name, direction, size))) in
            Port::ALL.iter().zip(EXPECTED.iter()).enumerate()
        {
            assert_eq!(*port as u16, raw, "{name}");
            assert_eq!(port.name(), name);
            assert_eq!(port.access(), (direction, size), "{name}");
            assert_eq!(port.index(), i, "{name}");
            assert_eq!(Port::try_from(raw), Ok(*port), "{name}");
        }
    }

    #[test]
    fn variants_are_the_documented_ports() {
        assert_eq!(Port::Console as u16, 0xE9);
        assert_eq!(Port::GetNumExits.access(), (Direction::In, 4));
        assert_eq!(Port::Halt.access(), (Direction::Out, 1));
        assert_eq!(Port::Exception.access(), (Direction::Out, 1));
        assert_eq!(Port::HostCall.name(), "host_call");
        assert_eq!(Port::Batch.index(), 25);
        assert_eq!(Port::Getdents as u16, 0x041F);
    }

    #[test]
    fn batchable_and_fs_ports_are_the_documented_ranges() {
        for port in Port::ALL {
            let raw = port as u16;
            let fs = (0x0410..=0x041F).contains(&raw);
            assert_eq!(port.is_fs(), fs, "{}", port.name());
            assert_eq!(
                port.batchable(),
                fs || raw == 0x0420 || raw == 0x0421,
                "{}",
                port.name()
            );
        }
    }

    #[test]
    fn every_port_round_trips_through_u16() {
        for port in Port::ALL {
            assert_eq!(Port::try_from(port as u16), Ok(port));
        }
    }

    #[test]
    fn index_matches_position_in_all() {
        for (i, port) in Port::ALL.iter().enumerate() {
            assert_eq!(port.index(), i);
        }
    }

    #[test]
    fn unknown_ports_are_rejected() {
        for raw in [0u16, 0xE7, 0xEA, 0x03FF, 0x0406, 0x040F, 0x0423, u16::MAX] {
            assert_eq!(Port::try_from(raw), Err(UnknownPort(raw)));
        }
    }

    #[test]
    fn every_other_u16_is_unknown() {
        let known = EXPECTED.map(|(raw, ..)| raw);
        for raw in 0..=u16::MAX {
            assert_eq!(
                Port::try_from(raw).is_ok(),
                known.contains(&raw),
                "{raw:#x}"
            );
        }
    }
}
