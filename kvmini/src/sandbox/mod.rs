//! A sandbox: one guest image in its own VM. This module holds its public
//! lifecycle; [`SandboxBuilder`] builds it (the one way to), the run loop
//! behind [`Sandbox::run`] is in `run.rs`, [`exit`] decodes and serves each
//! exit, [`Sandbox::reset`] (in `reset.rs`) brings a reusable sandbox back,
//! and [`outcome`] says how a run ended.

use std::fmt;
use std::io;
use std::time::Duration;

use kvm_bindings::kvm_sregs;

use crate::arch::x86_64::memory_map::MemoryMap;
use crate::cpu::Ring;
use crate::grant::GrantError;
use crate::layout::Layout;
use crate::loader::{LoadedImage, LoaderError};
use crate::memory::{self, MemoryError};
use crate::modes::{self, CpuMode, ModeError};
use crate::output::{Input, Output};
use crate::stop::StopHandle;
use crate::vcpu::VcpuError;
use crate::vcpu_thread::VcpuThread;
use crate::vm::VmError;
use crate::xstate::XstateError;

mod backtrace;
mod builder;
mod config;
mod core_file;
pub mod exit;
mod fault_signal;
mod inspect;
mod linux_start;
pub mod outcome;
mod reset;
mod run;
mod setup;
mod table_changes;

use reset::Reusable;
use run::Machine;

/// Errors that stop a sandbox from being built or run (never the guest's fault).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Guest memory could not be set up.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The image could not be loaded.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// A Linux program could not be started.
    #[error(transparent)]
    Linux(#[from] crate::linux::LinuxError),
    /// The VM could not be created.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The vCPU failed.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// Writing kvmini's tables into guest memory failed.
    #[error("cannot write kvmini's tables into guest memory")]
    Setup(#[from] vm_memory::GuestMemoryError),
    /// `reset` on a sandbox that was not built reusable, or that runs its
    /// guest at ring 0 or outside long mode (where the guest could change
    /// CPU state a reset does not restore).
    #[error("this sandbox cannot be reset: {0}")]
    NotResettable(&'static str),
    /// The seccomp filter could not be installed.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// A granted directory could not be opened.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// Writing the guest's output failed.
    #[error("cannot write the guest's output")]
    Output(#[from] io::Error),
    /// The CPU mode cannot run this image or ring.
    #[error(transparent)]
    Mode(#[from] ModeError),
    /// The vCPU's extended state could not be saved or restored.
    #[error(transparent)]
    Xstate(#[from] XstateError),
    /// An earlier run of this sandbox panicked (a kvmini bug) and took the
    /// VM with it.
    #[error("this sandbox lost its VM to a panic in an earlier run")]
    Poisoned,
    /// The thread that enforces the timeout could not be started.
    #[error("cannot start the thread that enforces the timeout")]
    Watchdog(#[source] io::Error),
    /// `run` after the guest ended by itself; a reusable sandbox can be
    /// `reset` and run again.
    #[error("the guest has already ended ({0:?}); only a reset sandbox runs again")]
    Ended(Ending),
    /// A run that no stop could reach (the stop signal is the embedding
    /// program's) is not started.
    #[error(transparent)]
    Stop(#[from] crate::stop::StopError),
    /// kvmini's helper could not change the guest's page tables.
    #[error(transparent)]
    TableChange(#[from] table_changes::TableChangeError),
}

/// A guest image.
#[derive(Clone, Debug)]
pub enum Image {
    /// A static x86_64 ELF executable.
    Elf(Vec<u8>),
    /// A flat binary, loaded at guest physical 0 and entered at 0.
    Flat(Vec<u8>),
}

pub use builder::{BuildError, SandboxBuilder};
pub use exit::DebugEvent;
pub use inspect::{GuestDebug, InspectError, Watch};
pub use outcome::{
    format_regs, Backtrace, ChainEnd, CodeLocation, Crash, Ending, Frame, Outcome, Stats, Unserved,
    STATUS_GUEST_FAULT, STATUS_KVMINI_ERROR, STATUS_OUTPUT_CLOSED, STATUS_TIMEOUT,
};

pub use crate::layout::Region;

/// The guest's standard streams and kvmini's warnings about it.
pub(crate) struct Stdio {
    pub(crate) stdin: Input,
    pub(crate) stdout: Output,
    pub(crate) stderr: Option<Output>,
    pub(crate) warnings: Output,
    /// Where trace lines go, when the run is traced.
    pub(crate) trace: Output,
    /// The embedding program's handler of trace events, if any.
    pub(crate) trace_events: Option<run::TraceHandler>,
}

impl Stdio {
    /// Whether any stream is the embedding program's own reader or writer.
    fn runs_embedder_code(&self) -> bool {
        matches!(self.stdin, Input::Reader(_))
            || self.trace_events.is_some()
            || [
                Some(&self.stdout),
                self.stderr.as_ref(),
                Some(&self.warnings),
                Some(&self.trace),
            ]
            .into_iter()
            .flatten()
            .any(|output| matches!(output, Output::Writer(_)))
    }
}

/// One guest, ready to run.
pub struct Sandbox {
    /// Memory snapshot and vCPU state for [`Sandbox::reset`].
    snapshot: Option<Reusable>,
    /// The VM and what serves its exits: moved to a confined vCPU thread
    /// for each run, and back. `None` once a run panicked (a host function
    /// did, or kvmini): every method that needs the VM is then
    /// [`SandboxError::Poisoned`].
    machine: Option<Box<Machine>>,
    image: LoadedImage,
    ring: Ring,
    flat: bool,
    timeout: Option<Duration>,
    /// The handle the embedding program stops this sandbox with (perhaps
    /// shared with other sandboxes).
    stop: StopHandle,
    /// This sandbox's own handle, which only kvmini holds: the run loop
    /// checks it, its timeouts go to it, and `stop` reaches it while a run
    /// is in progress ([`crate::stop`]).
    own_stop: StopHandle,
    seccomp: bool,
    mode: CpuMode,
    /// How the guest ended, once it did so by itself (exit, halt, crash,
    /// an exit kvmini does not serve): then only [`Sandbox::reset`] makes
    /// it runnable again.
    ended: Option<Ending>,
    /// The embedding program's code runs on the vCPU thread (host
    /// functions, a stdin reader, an output writer): the sandbox keeps one
    /// confined thread of its own, which no other sandbox ever uses.
    own_thread: bool,
    /// That thread, once the first run started it.
    thread: Option<VcpuThread>,
    host_stack_size: usize,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Sandbox");
        if let Some(machine) = &self.machine {
            s.field("layout", machine.vm.layout());
        }
        s.field("ring", &self.ring).finish_non_exhaustive()
    }
}

impl Sandbox {
    /// A builder for a sandbox: the guest, its machine, its files, its
    /// input and output, and the host functions it may call.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// The VM and its run state. Only a run that panicked can have taken
    /// it; every method after that reports the panic again.
    fn machine(&self) -> Result<&Machine, SandboxError> {
        self.machine.as_deref().ok_or(SandboxError::Poisoned)
    }

    fn machine_mut(&mut self) -> Result<&mut Machine, SandboxError> {
        self.machine.as_deref_mut().ok_or(SandboxError::Poisoned)
    }

    /// Number of guest descriptors open (0..2 included unless closed).
    pub fn open_descriptors(&self) -> Result<usize, SandboxError> {
        Ok(self.machine()?.hypercalls.filesystem().open_count())
    }

    /// A handle that stops this sandbox's guest from another thread or a
    /// signal handler (the one given to the builder, if any: it stops the
    /// other sandboxes that have it too).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The ring the guest runs at.
    pub fn ring(&self) -> Ring {
        self.ring
    }

    /// The CPU mode the guest started in.
    pub fn mode(&self) -> CpuMode {
        self.mode
    }

    /// The loaded image.
    pub fn image(&self) -> &LoadedImage {
        &self.image
    }

    /// The guest physical memory map.
    pub fn layout(&self) -> Result<&Layout, SandboxError> {
        Ok(self.machine()?.vm.layout())
    }

    /// Guest memory, bounds-checked.
    pub fn memory(&self) -> Result<&memory::GuestMemory, SandboxError> {
        Ok(self.machine()?.vm.memory())
    }

    /// Host virtual address of guest memory.
    pub fn memory_host_address(&self) -> Result<u64, SandboxError> {
        Ok(memory::host_address(self.memory()?)?)
    }

    /// Host virtual address of the vCPU's `kvm_run` area.
    pub fn kvm_run_host_address(&mut self) -> Result<u64, SandboxError> {
        Ok(self.machine_mut()?.vcpu.kvm_run_address())
    }

    /// The system registers the vCPU will enter the guest with, before its
    /// first run (`None` once it has run): what `--verbose` shows.
    pub fn entry_system_registers(&mut self) -> Result<Option<kvm_sregs>, SandboxError> {
        let machine = self.machine_mut()?;
        Ok(machine.vcpu.registers_on_entry().map(|(_, sregs)| sregs))
    }

    /// Size of the vCPU's `kvm_run` mapping.
    pub fn kvm_run_size(&self) -> Result<usize, SandboxError> {
        Ok(self.machine()?.vcpu.run_size())
    }

    /// The permissions kvmini gave a ring-3 long-mode ELF guest's memory
    /// in its page tables before its first run (docs/security.md, "Memory
    /// inside the guest"); `None` for every other guest.
    pub fn memory_map(&self) -> Result<Option<&MemoryMap>, SandboxError> {
        Ok(self
            .machine()?
            .fixed_paging
            .as_ref()
            .and_then(|fixed| fixed.memory_map.as_ref()))
    }

    /// The regions of guest physical memory, in address order.
    pub fn regions(&self) -> Result<Vec<Region>, SandboxError> {
        let l = self.layout()?;
        if self.mode != CpuMode::Long {
            return Ok(modes::regions(self.mode, l, &self.image));
        }
        let mut regions = Vec::new();
        if !self.flat {
            regions.push(Region {
                name: "null page (not mapped)",
                start: 0,
                end: 0x1000,
            });
        }
        regions.push(Region {
            name: "guest image",
            start: self.image.lowest,
            end: self.image.highest,
        });
        let guard = self.memory_map()?.and_then(MemoryMap::guard);
        if let Some(guard) = guard.filter(|g| !g.is_empty()) {
            regions.push(Region {
                name: "guest stack guard (not mapped)",
                start: guard.start,
                end: guard.end,
            });
        }
        let stack = self.memory_map()?.and_then(MemoryMap::stack);
        regions.push(Region {
            name: "guest stack (grows down)",
            start: stack.as_ref().map_or(
                self.image
                    .highest
                    .max(l.stack_top().saturating_sub(1 << 20)),
                |s| s.start,
            ),
            end: stack.map_or(l.stack_top(), |s| s.end),
        });
        for (name, start, end) in [
            ("PML4 (CR3)", l.pml4(), l.pdpt()),
            ("PDPT", l.pdpt(), l.pd(0)),
            ("page directories", l.pd(0), l.pt_low()),
            ("page table, first 2 MiB", l.pt_low(), l.pt_high()),
            ("page table, last 2 MiB", l.pt_high(), l.gdt()),
            ("GDT", l.gdt(), l.idt()),
            ("IDT", l.idt(), l.tss()),
            ("TSS and I/O permission bitmap", l.tss(), l.handlers()),
            (
                "exception handlers",
                l.handlers(),
                l.exception_stack_bottom(),
            ),
            (
                "exception stack",
                l.exception_stack_bottom(),
                l.exception_stack_top(),
            ),
        ] {
            regions.push(Region { name, start, end });
        }
        Ok(regions)
    }
}

impl From<exit::ExitError> for SandboxError {
    fn from(error: exit::ExitError) -> Self {
        match error {
            exit::ExitError::Output(e) => SandboxError::Output(e),
            exit::ExitError::Vcpu(e) => SandboxError::Vcpu(e),
        }
    }
}
