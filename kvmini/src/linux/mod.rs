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
mod delivery;
pub mod entry;
mod futex;
mod maps;
mod memory;
pub mod numbers;
mod pipes;
mod poll;
mod process;
mod sigframe;
mod signals;
pub mod start;
pub mod terminal;
mod time;

use kvm_bindings::kvm_regs;

pub use calls::{Effect, Io};
pub use delivery::{Delivered, Step, TRAMPOLINES, TRAMPOLINES_OFFSET};
pub use numbers::name;
pub use signals::signal_name;

use crate::arch::x86_64::bits::{PTE_P, PTE_RW, PTE_XD};
use crate::arch::x86_64::live_tables::LiveTables;
use crate::arch::x86_64::memory_map::Permissions;
use crate::arch::x86_64::table_helper::TableWrite;
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

/// A Linux program's kernel-side state.
#[derive(Clone, Debug)]
pub struct Process {
    layout: ProcessLayout,
    /// The current break.
    brk: u64,
    /// The mappings, and the page tables their permissions go into.
    memory: memory::Memory,
    /// Signal actions the program set, by signal.
    actions: Vec<[u64; 4]>,
    /// The blocked-signal mask.
    sigmask: u64,
    /// Signals sent and not yet delivered.
    pending: u64,
    /// Those of them sent by `tkill` or `tgkill`.
    pending_tkill: u64,
    /// The alternate signal stack.
    altstack: signals::AltStack,
    /// Signal frames: the extended-state format, a handler's start.
    frames: delivery::Frames,
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
            memory: memory::Memory {
                image_start: layout.brk_start,
                ..Default::default()
            },
            actions: vec![[0; 4]; 64],
            sigmask: 0,
            pending: 0,
            pending_tkill: 0,
            altstack: signals::AltStack::default(),
            frames: delivery::Frames::new(sigframe::XstateFormat::of_host()),
            tid_address: 0,
            uid,
            gid,
            max_fds: u64::from(max_fds),
            terminals: [None; 3],
            umask: 0o022,
            exe: Vec::new(),
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

    /// The program's page tables are `tables` (kvmini's record of them,
    /// read before the first run), and its image starts at `image_start`:
    /// its memory calls change the permissions of its pages there.
    pub fn with_tables(mut self, tables: LiveTables, image_start: u64) -> Self {
        self.memory.tables = Some(tables);
        self.memory.image_start = image_start & !(PAGE_SIZE - 1);
        self
    }

    /// Takes the page-table writes the program's calls made since the
    /// last time, with the virtual ranges whose permissions they change:
    /// kvmini makes them before the program runs again.
    pub fn take_table_writes(&mut self) -> (Vec<TableWrite>, Vec<std::ops::Range<u64>>) {
        self.memory
            .tables
            .as_mut()
            .map(LiveTables::take_writes)
            .unwrap_or_default()
    }

    /// What the program's page at `addr` allows now, as its memory calls
    /// left it (`None` without page tables).
    pub fn page_permissions(&self, addr: u64) -> Option<Permissions> {
        let flags = self.memory.tables.as_ref()?.flags_at(addr);
        let present = flags & PTE_P != 0;
        Some(Permissions {
            read: present,
            write: present && flags & PTE_RW != 0,
            execute: present && flags & PTE_XD == 0,
        })
    }

    /// The page-table pages kvmini's helper may write for this program.
    pub fn table_pages(&self) -> Vec<std::ops::Range<u64>> {
        self.memory
            .tables
            .as_ref()
            .map(LiveTables::table_pages)
            .unwrap_or_default()
    }

    /// The page-table writes that bring this program's tables back to
    /// those of `start` (the same program before its first run).
    pub fn table_writes_back_to(&self, start: &Process) -> Vec<TableWrite> {
        match (&self.memory.tables, &start.memory.tables) {
            (Some(now), Some(then)) => now.writes_back_to(then),
            _ => Vec::new(),
        }
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
