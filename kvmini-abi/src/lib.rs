//! The ABI between kvmini and its guests: the single source of truth that the
//! host (`kvmini`), the Rust guest SDK (`kvmini-guest`) and, by hand, the C SDK
//! (`sdk/c/kvmini.h`) are written against.
//!
//! A hypercall is one x86 port I/O instruction, and so one VM exit:
//!
//! | port | call | instruction | value |
//! |---|---|---|---|
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
#![deny(missing_docs)]

/// The hypercall ports. `TryFrom<u16>` turns an exit's port into one.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    /// `out` of one byte: print that byte (the classic "hello world" port).
    Console = 0x00E9,
    /// `out` of a 32-bit value: print it in decimal and a newline.
    PrintVal = 0x0400,
    /// `in` of a 32-bit value: the number of exits so far, this one included.
    GetNumExits = 0x0401,
    /// `out` of the 32-bit guest virtual address of a NUL-terminated string:
    /// print the whole string in this one exit.
    Display = 0x0402,
    /// `out` of a 32-bit exit status: end the run; kvmini exits with the low
    /// 8 bits, as Linux's `exit` does.
    Exit = 0x0403,
    /// `out` of one byte (ignored): end the run with status 0 and registers
    /// left as they are. The ring-3 stand-in for `hlt`, which is privileged.
    Halt = 0x0404,
    /// `out` of one byte, the exception vector: made only by kvmini's own
    /// exception handlers, never by guest code.
    Exception = 0x0405,
    /// `open` ([`fs::OpenArgs`]).
    Open = 0x0410,
    /// `close` ([`fs::FdArgs`]).
    Close = 0x0411,
    /// `read` ([`fs::IoArgs`]).
    Read = 0x0412,
    /// `write` ([`fs::IoArgs`]).
    Write = 0x0413,
    /// `pread` ([`fs::IoArgs`], with `offset`).
    Pread = 0x0414,
    /// `pwrite` ([`fs::IoArgs`], with `offset`).
    Pwrite = 0x0415,
    /// `lseek` ([`fs::SeekArgs`]).
    Lseek = 0x0416,
    /// `fstat` ([`fs::StatArgs`], by `fd`).
    Fstat = 0x0417,
    /// `stat` ([`fs::StatArgs`], by `path`).
    Stat = 0x0418,
    /// `fsync` ([`fs::FdArgs`]).
    Fsync = 0x0419,
    /// `ftruncate` ([`fs::TruncateArgs`]).
    Ftruncate = 0x041A,
    /// `unlink` ([`fs::PathArgs`]).
    Unlink = 0x041B,
    /// `mkdir` ([`fs::PathArgs`], with `mode`).
    Mkdir = 0x041C,
    /// `rmdir` ([`fs::PathArgs`]).
    Rmdir = 0x041D,
    /// `rename` ([`fs::RenameArgs`]).
    Rename = 0x041E,
    /// `getdents64` ([`fs::IoArgs`]: `buf`/`len` receive [`fs::Dirent64`] records).
    Getdents = 0x041F,
    /// A call to a function the embedding program registered
    /// ([`host::HostCallArgs`]).
    HostCall = 0x0420,
    /// The guest's arguments ([`host::ArgvArgs`]).
    Argv = 0x0421,
    /// Several filesystem or host calls in one exit ([`batch::BatchArgs`]).
    Batch = 0x0422,
}

/// The error for a port that no hypercall owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownPort(pub u16);

impl TryFrom<u16> for Port {
    type Error = UnknownPort;

    fn try_from(port: u16) -> Result<Self, Self::Error> {
        Ok(match port {
            0x00E9 => Port::Console,
            0x0400 => Port::PrintVal,
            0x0401 => Port::GetNumExits,
            0x0402 => Port::Display,
            0x0403 => Port::Exit,
            0x0404 => Port::Halt,
            0x0405 => Port::Exception,
            0x0410 => Port::Open,
            0x0411 => Port::Close,
            0x0412 => Port::Read,
            0x0413 => Port::Write,
            0x0414 => Port::Pread,
            0x0415 => Port::Pwrite,
            0x0416 => Port::Lseek,
            0x0417 => Port::Fstat,
            0x0418 => Port::Stat,
            0x0419 => Port::Fsync,
            0x041A => Port::Ftruncate,
            0x041B => Port::Unlink,
            0x041C => Port::Mkdir,
            0x041D => Port::Rmdir,
            0x041E => Port::Rename,
            0x041F => Port::Getdents,
            0x0420 => Port::HostCall,
            0x0421 => Port::Argv,
            0x0422 => Port::Batch,
            other => return Err(UnknownPort(other)),
        })
    }
}

/// Which way data moves in a port access, seen from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `out`: guest to host.
    Out,
    /// `in`: host to guest.
    In,
}

impl Port {
    /// Every hypercall port, in ABI order.
    pub const ALL: [Port; 26] = [
        Port::Console,
        Port::PrintVal,
        Port::GetNumExits,
        Port::Display,
        Port::Exit,
        Port::Halt,
        Port::Exception,
        Port::Open,
        Port::Close,
        Port::Read,
        Port::Write,
        Port::Pread,
        Port::Pwrite,
        Port::Lseek,
        Port::Fstat,
        Port::Stat,
        Port::Fsync,
        Port::Ftruncate,
        Port::Unlink,
        Port::Mkdir,
        Port::Rmdir,
        Port::Rename,
        Port::Getdents,
        Port::HostCall,
        Port::Argv,
        Port::Batch,
    ];

    /// Position of this port in [`Port::ALL`], for per-hypercall counters.
    pub const fn index(self) -> usize {
        match self {
            Port::Console => 0,
            Port::PrintVal => 1,
            Port::GetNumExits => 2,
            Port::Display => 3,
            Port::Exit => 4,
            Port::Halt => 5,
            Port::Exception => 6,
            Port::Open => 7,
            Port::Close => 8,
            Port::Read => 9,
            Port::Write => 10,
            Port::Pread => 11,
            Port::Pwrite => 12,
            Port::Lseek => 13,
            Port::Fstat => 14,
            Port::Stat => 15,
            Port::Fsync => 16,
            Port::Ftruncate => 17,
            Port::Unlink => 18,
            Port::Mkdir => 19,
            Port::Rmdir => 20,
            Port::Rename => 21,
            Port::Getdents => 22,
            Port::HostCall => 23,
            Port::Argv => 24,
            Port::Batch => 25,
        }
    }

    /// The one direction and access size (in bytes) this port accepts.
    /// Anything else is a guest error that ends the run.
    pub const fn access(self) -> (Direction, u8) {
        match self {
            Port::Console | Port::Halt | Port::Exception => (Direction::Out, 1),
            Port::GetNumExits => (Direction::In, 4),
            _ => (Direction::Out, 4),
        }
    }

    /// The hypercall's name as the guest SDKs spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Port::Console => "console",
            Port::PrintVal => "printVal",
            Port::GetNumExits => "getNumExits",
            Port::Display => "display",
            Port::Exit => "exit",
            Port::Halt => "halt",
            Port::Exception => "exception",
            Port::Open => "open",
            Port::Close => "close",
            Port::Read => "read",
            Port::Write => "write",
            Port::Pread => "pread",
            Port::Pwrite => "pwrite",
            Port::Lseek => "lseek",
            Port::Fstat => "fstat",
            Port::Stat => "stat",
            Port::Fsync => "fsync",
            Port::Ftruncate => "ftruncate",
            Port::Unlink => "unlink",
            Port::Mkdir => "mkdir",
            Port::Rmdir => "rmdir",
            Port::Rename => "rename",
            Port::Getdents => "getdents",
            Port::HostCall => "host_call",
            Port::Argv => "argv",
            Port::Batch => "batch",
        }
    }

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
        for raw in [0u16, 0xE8, 0xEA, 0x03FF, 0x0406, 0x040F, 0x0423, u16::MAX] {
            assert_eq!(Port::try_from(raw), Err(UnknownPort(raw)));
        }
    }
}
