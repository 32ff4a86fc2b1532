//! ELF core files of a crashed guest, which `gdb GUEST CORE` opens at the
//! faulting instruction with its registers and memory.
//!
//! A core holds the notes gdb reads (`NT_PRSTATUS` with the general
//! registers and the signal the crash maps to, `NT_PRPSINFO` with the
//! program name, `NT_SIGINFO`, `NT_AUXV` with the entry point,
//! `NT_FPREGSET` with the FXSAVE area, and `NT_X86_XSTATE` with the AVX
//! registers of a guest that had them), then one `PT_LOAD` segment per
//! run of virtual pages: the guest's address space as the guest sees it,
//! walked through its own page tables ([`crate::paging::mappings`]).
//!
//! The tables are the guest's, and a ring-0 guest writes its own, so what
//! they say is bounded before it costs anything: each guest-physical page
//! is written at most once, whatever aliasing the tables do (an alias is a
//! segment that points at the bytes already written); aliases past a
//! budget of one guest memory's worth of pages, pages past the
//! program-header limit, tables past the walk's budget and pages past its
//! budget of three guest memories are left out, and [`CoreSummary`] says
//! so. A ring-3 guest's core leaves out the
//! supervisor-only pages it could not read (kvmini's own area).
//!
//! [`crate::Sandbox::write_core`] writes the core of a sandbox's crash;
//! [`write_core`] writes one from the parts, without KVM.

use std::fmt;
use std::io::{self, Write};

use kvm_bindings::kvm_regs;

use crate::memory::GuestMemory;
use crate::paging::Paging;
use crate::vcpu::VcpuError;

mod elf;
mod notes;
mod segments;

pub use notes::fxsave_from_fpu;

/// Errors of writing a core file.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The run did not crash, or the sandbox ran again or was reset since:
    /// the state of the crash is gone.
    #[error(
        "there is no crash to write a core of (the run did not crash, or the sandbox was reset since)"
    )]
    NoCrash,
    /// Core files are written of guests in long mode only (an ELF64
    /// core of 4-level tables); this one was not at its crash.
    #[error("core files are written of guests in long mode only")]
    NotLongMode,
    /// The vCPU's system registers could not be read.
    #[error("cannot read the vCPU's registers for the core file")]
    Registers(#[source] VcpuError),
    /// The vCPU's x87 and SSE state could not be read.
    #[error("cannot read the vCPU's FPU state for the core file")]
    Fpu(#[source] crate::xstate::XstateError),
    /// An earlier run of the sandbox panicked and took the VM with it.
    #[error("this sandbox lost its VM to a panic in an earlier run")]
    Poisoned,
    /// Guest memory the plan found could not be read.
    #[error("cannot read guest memory at {gpa:#x} for the core file")]
    Memory {
        /// The guest-physical address.
        gpa: u64,
        /// The memory error.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// Writing the file failed.
    #[error("cannot write the core file")]
    Write(#[source] io::Error),
}

/// The registers of the crashed thread.
#[derive(Clone, Debug)]
pub struct CoreRegisters {
    /// The general registers at the faulting instruction.
    pub regs: kvm_regs,
    /// FS base (a Linux program's thread pointer).
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// The selectors: CS, SS, DS, ES, FS, GS.
    pub selectors: [u16; 6],
    /// The x87 and SSE state in the 512-byte FXSAVE layout.
    pub fxsave: [u8; 512],
    /// The XSAVE area in the standard format (`KVM_GET_XSAVE`) and the
    /// XCR0 it was saved under, where the vCPU has them: the AVX state.
    pub xsave: Option<(Box<[u8; 4096]>, u64)>,
}

/// What a core file is made of.
#[derive(Clone, Debug)]
pub struct CoreSource<'a> {
    /// Guest memory.
    pub memory: &'a GuestMemory,
    /// How the guest's CPU translated at the crash.
    pub paging: Paging,
    /// CR3 at the crash.
    pub cr3: u64,
    /// A ring-3 crash: pages that ring 3 cannot read are left out.
    pub user_only: bool,
    /// The exception vector of the crash.
    pub vector: u8,
    /// The faulting address of a page fault.
    pub fault_address: u64,
    /// The error code of the exception.
    pub error_code: u64,
    /// The registers at the crash.
    pub registers: CoreRegisters,
    /// The program name (`NT_PRPSINFO`; gdb shows it as what generated
    /// the core).
    pub program: &'a [u8],
    /// The image's entry point (`AT_ENTRY`, which relocates a static PIE).
    pub entry: u64,
}

/// What a core file holds and what it left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreSummary {
    /// `PT_LOAD` segments.
    pub segments: usize,
    /// Bytes of guest memory written (each guest-physical page once).
    pub memory_bytes: u64,
    /// Virtual pages described by pointing at a page already written.
    pub aliased_pages: u64,
    /// What was left out.
    pub left_out: LeftOut,
    /// The size of the file.
    pub file_bytes: u64,
}

/// What a core file could not hold, each counted in 4 KiB pages or tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeftOut {
    /// Aliased pages past the budget of one guest memory's worth.
    pub aliased_pages: u64,
    /// Pages that needed a segment past the program-header limit.
    pub segment_limit_pages: u64,
    /// Page tables past the walk's budget, not read.
    pub tables: u64,
    /// The walk stopped at its budget of pages looked at: the virtual
    /// addresses above this one were not looked at.
    pub stopped_at: Option<u64>,
    /// Supervisor-only pages of a ring-3 guest.
    pub supervisor_pages: u64,
}

impl LeftOut {
    /// Whether anything the guest's tables map to its memory, and its
    /// code could reach, was left out.
    pub fn is_empty(&self) -> bool {
        self.aliased_pages == 0
            && self.segment_limit_pages == 0
            && self.tables == 0
            && self.stopped_at.is_none()
    }
}

impl fmt::Display for LeftOut {
    /// What the guest could reach that a core left out, as one clause
    /// each; empty when nothing was.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.aliased_pages != 0 {
            parts.push(format!(
                "{} aliased pages past the budget of one guest memory",
                self.aliased_pages
            ));
        }
        if self.segment_limit_pages != 0 {
            parts.push(format!(
                "{} pages past the limit of {} segments",
                self.segment_limit_pages,
                segments::MAX_SEGMENTS
            ));
        }
        if self.tables != 0 {
            parts.push(format!(
                "{} page tables past the walk's budget",
                self.tables
            ));
        }
        if let Some(va) = self.stopped_at {
            parts.push(format!(
                "every address from {va:#x} up (the walk's budget of pages was spent)"
            ));
        }
        f.write_str(&parts.join(", "))
    }
}

/// The signal Linux sends for exception `vector`: SIGFPE for a divide
/// error and the floating-point exceptions, SIGTRAP for a debug exception
/// or breakpoint, SIGILL for an invalid opcode, SIGBUS for a segment not
/// present, a stack-segment fault, an alignment check and a machine check,
/// SIGSEGV for the rest (a page fault and a general protection fault
/// among them).
pub fn signal_of_vector(vector: u8) -> i32 {
    match vector {
        0 | 7 | 16 | 19 => libc::SIGFPE,
        1 | 3 => libc::SIGTRAP,
        6 => libc::SIGILL,
        11 | 12 | 17 | 18 => libc::SIGBUS,
        _ => libc::SIGSEGV,
    }
}

/// Writes the core file of `source` to `out`. Nothing is written until the
/// walk of the guest's tables is done, and then in one pass: `out` needs no
/// seeking.
pub fn write_core(source: &CoreSource<'_>, out: &mut dyn Write) -> Result<CoreSummary, CoreError> {
    let plan = segments::plan(source.memory, source.paging, source.cr3, source.user_only);
    let notes = notes::notes(source);
    let layout = elf::Layout::new(plan.segments.len(), notes.len());
    let mut head = elf::header(&layout);
    head.extend(elf::note_header(&layout));
    for segment in &plan.segments {
        head.extend(elf::load_header(&layout, segment));
    }
    head.extend_from_slice(&notes);
    head.resize(usize::try_from(layout.data_offset).unwrap_or(usize::MAX), 0);
    out.write_all(&head).map_err(CoreError::Write)?;
    segments::copy(source.memory, &plan.copies, out)?;
    out.flush().map_err(CoreError::Write)?;
    Ok(CoreSummary {
        segments: plan.segments.len(),
        memory_bytes: plan.data_bytes,
        aliased_pages: plan.aliased_pages,
        left_out: plan.left_out,
        file_bytes: layout.data_offset + plan.data_bytes,
    })
}

#[cfg(test)]
mod tests;
