//! Linux programs: unmodified static x86-64 Linux executables run at ring
//! 3, each system call one exit on the system-call port
//! ([`kvmini_abi::Port::Syscall`]) from kvmini's stub (docs/linux.md).
//!
//! [`entry`] decides where a call returns to; [`start`] lays out the
//! initial stack; [`Process`] is the program's kernel-side state (its
//! break, its mappings, what it recorded) and serves its calls
//! ([`Process::serve`]) over the same descriptor table and grants as the
//! filesystem hypercalls.

mod attributes;
mod calls;
pub mod entry;
mod futex;
mod numbers;
mod pipes;
mod poll;
mod process;
mod signals;
pub mod start;
pub mod terminal;
mod time;

use kvm_bindings::kvm_regs;

pub use calls::{Effect, Io};
pub use numbers::name;
pub use signals::signal_name;

#[cfg(test)]
use crate::errno::Errno;
use crate::layout::{Layout, PAGE_SIZE};

/// The size of a Linux program's stack.
pub const STACK_SIZE: u64 = 8 << 20;

/// The smallest stack a Linux program starts with.
pub const STACK_MIN: u64 = 64 << 10;

/// The most unmapped memory below a Linux program's stack (Linux's own
/// guard gap is 256 pages): an eighth of the room between the image and
/// the stub when that is less.
pub const STACK_GUARD: u64 = 1 << 20;

/// Errors setting up a Linux program (never the program's own mistakes,
/// which are errno values).
#[derive(Clone, Debug, thiserror::Error)]
pub enum LinuxError {
    /// The arguments do not fit on the stack.
    #[error("the program's arguments do not fit on its stack")]
    ArgumentsTooLong,
    /// Guest memory could not take the initial stack or the stub.
    #[error("cannot write the program's initial stack")]
    Memory(#[source] std::sync::Arc<vm_memory::GuestMemoryError>),
    /// The working directory is not a directory the program can see.
    #[error(
        "cannot start in working directory {path}: {errno} (an absolute path under a grant, or /)"
    )]
    Cwd {
        /// The path asked for.
        path: String,
        /// Why.
        errno: crate::errno::Errno,
    },
    /// A Linux program runs at ring 3 in long mode only.
    #[error("a Linux program runs at ring 3 in long mode only")]
    NotRing3,
    /// Guest memory has no room for the stack, the stub and the image.
    #[error(
        "guest memory of {mem_size} bytes has no room for a stack above the image (raise --mem)"
    )]
    NoRoom {
        /// The guest memory size.
        mem_size: u64,
    },
}

impl From<vm_memory::GuestMemoryError> for LinuxError {
    fn from(e: vm_memory::GuestMemoryError) -> Self {
        LinuxError::Memory(std::sync::Arc::new(e))
    }
}

/// A system call as the registers hold it: RAX the number; RDI, RSI,
/// RDX, R10, R8, R9 the arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    /// The number.
    pub nr: u64,
    /// The arguments.
    pub args: [u64; 6],
}

impl Syscall {
    /// The call in `regs`.
    pub fn from_regs(regs: &kvm_regs) -> Self {
        Syscall {
            nr: regs.rax,
            args: [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9],
        }
    }
}

/// Where a Linux program's pieces sit in guest memory (guest virtual =
/// guest physical).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessLayout {
    /// The stub page (user, executable), just below kvmini's area.
    pub stub: u64,
    /// The top of the stack (the stub page's start).
    pub stack_top: u64,
    /// The lowest address of the stack.
    pub stack_bottom: u64,
    /// The lowest address of the unmapped guard below the stack (equal to
    /// `stack_bottom` when there is no room for one).
    pub guard_bottom: u64,
    /// The first byte of the break (the page after the image).
    pub brk_start: u64,
}

impl ProcessLayout {
    /// The layout for an image that ends at `image_end` in `layout`: a
    /// guard of [`STACK_GUARD`] or an eighth of what lies between the image
    /// and the stub, whichever is less, and above it a stack of
    /// [`STACK_SIZE`], or of the rest when guest memory is smaller, and at
    /// least [`STACK_MIN`].
    pub fn new(layout: &Layout, image_end: u64) -> Result<Self, LinuxError> {
        let no_room = LinuxError::NoRoom {
            mem_size: layout.mem_size,
        };
        let stub = layout
            .system_base
            .checked_sub(PAGE_SIZE)
            .ok_or(no_room.clone())?;
        let brk_start = image_end
            .checked_next_multiple_of(PAGE_SIZE)
            .ok_or(no_room.clone())?;
        let room = stub.checked_sub(brk_start).ok_or(no_room.clone())?;
        let guard = STACK_GUARD.min(room / 8) & !(PAGE_SIZE - 1);
        let stack = (room - guard).min(STACK_SIZE);
        if stack < STACK_MIN {
            return Err(no_room);
        }
        let stack_bottom = stub - stack;
        Ok(ProcessLayout {
            stub,
            stack_top: stub,
            stack_bottom,
            guard_bottom: stack_bottom - guard,
            brk_start,
        })
    }

    /// The size of the stack.
    pub fn stack_size(&self) -> u64 {
        self.stack_top - self.stack_bottom
    }
}

impl Process {
    /// How many `mprotect` calls were answered 0 without being enforced
    /// (what `--stats` reports).
    pub fn unenforced_mprotects(&self) -> u64 {
        self.unenforced_mprotects
    }
}

/// A Linux program's kernel-side state.
#[derive(Clone, Debug)]
pub struct Process {
    layout: ProcessLayout,
    /// The current break.
    brk: u64,
    /// The anonymous mappings, as [start, end) page ranges, in no order.
    mappings: Vec<(u64, u64)>,
    /// The lowest mapped address (the guard's bottom with no mappings):
    /// new mappings are taken below it.
    floor: u64,
    /// Signal actions the program set (recorded, never run), by signal.
    actions: Vec<[u64; 4]>,
    /// The blocked-signal mask.
    sigmask: u64,
    /// Blocked signals sent and not yet delivered.
    pending: u64,
    /// The alternate signal stack (recorded).
    altstack: signals::AltStack,
    /// The address `set_tid_address` gave (recorded).
    tid_address: u64,
    /// The user and group ids the program sees.
    uid: u32,
    gid: u32,
    /// The most descriptors the program may have open.
    max_fds: u64,
    /// What `ioctl` answers on the program's stdin, stdout and stderr.
    terminals: [Option<terminal::Terminal>; 3],
    /// The program's file-creation mask (kvmini's own is never changed).
    umask: u32,
    /// The program's path, absolute (what `/proc/self/exe` reads).
    exe: Vec<u8>,
    /// `mprotect` calls answered 0 but not enforced.
    unenforced_mprotects: u64,
    /// The program's name (`prctl(PR_GET_NAME)`), NUL-padded.
    name: [u8; process::NAME_SIZE],
    /// When the program started (`sysinfo`'s uptime).
    started: std::time::Instant,
}

impl Process {
    /// A new process in `layout`, seeing `uid` and `gid`.
    pub fn new(layout: ProcessLayout, uid: u32, gid: u32, max_fds: u32) -> Self {
        Process {
            layout,
            brk: layout.brk_start,
            mappings: Vec::new(),
            floor: layout.guard_bottom,
            actions: vec![[0; 4]; 64],
            sigmask: 0,
            pending: 0,
            altstack: signals::AltStack::default(),
            tid_address: 0,
            uid,
            gid,
            max_fds: u64::from(max_fds),
            terminals: [None; 3],
            umask: 0o022,
            exe: Vec::new(),
            unenforced_mprotects: 0,
            name: [0; process::NAME_SIZE],
            started: std::time::Instant::now(),
        }
    }

    /// `readlink("/proc/self/exe")` answers `path`, made absolute as Linux
    /// answers it (a relative path is put under `/`, lexically: the host's
    /// working directory is not told; glibc's static start asserts the
    /// answer begins with `/`).
    pub fn with_exe(mut self, path: &[u8]) -> Self {
        self.exe = if path.starts_with(b"/") {
            path.to_vec()
        } else {
            let mut absolute = Vec::with_capacity(path.len() + 1);
            for component in crate::grant::normalize(path).unwrap_or_default() {
                absolute.push(b'/');
                absolute.extend_from_slice(&component);
            }
            absolute
        };
        self.name = process::initial_name(path);
        self
    }

    /// `ioctl` on the program's stdin, stdout and stderr answers as these
    /// terminals do (`None`: `ENOTTY`).
    pub fn with_terminals(mut self, terminals: [Option<terminal::Terminal>; 3]) -> Self {
        self.terminals = terminals;
        self
    }

    /// Where the program's pieces are.
    pub fn layout(&self) -> &ProcessLayout {
        &self.layout
    }

    /// The current break.
    pub fn brk(&self) -> u64 {
        self.brk
    }
}

#[cfg(test)]
mod tests;
