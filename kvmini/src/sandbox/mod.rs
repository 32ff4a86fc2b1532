//! A sandbox: one guest image in its own VM, and the run loop that serves
//! its exits until it ends.

use std::fmt;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvmini_abi::{layout::ELF_LOAD_MIN, Direction, Port};
use vm_memory::{Bytes, GuestAddress};

use crate::cpu::{self, ExceptionFrame, Ring};
use crate::fs::Filesystem;
use crate::grant::{GrantError, GrantSpec, Grants};
use crate::host::HostFunctions;
use crate::hypercall::{Action, Hypercalls};
use crate::kvm::Kvm;
use crate::layout::Layout;
use crate::loader::{self, LoadWindow, LoadedImage, LoaderError};
use crate::memory::{self, MemoryError};
use crate::modes::{self, CpuMode, ModeError};
use crate::output::{GuestStream, Input, Output, Stream, StreamError};
use crate::paging::{self, CpuPaging, Paging, PagingMode};
use crate::stop::{self as stopping, StopHandle, StopReason};
use crate::vcpu::{Exit, Vcpu, VcpuError};
use crate::vcpu_thread::VcpuThread;
use crate::view::GuestView;
use crate::vm::{Vm, VmError};
use crate::xstate::{ExtendedState, XstateError};

/// Errors that stop a sandbox from being built or run (never the guest's fault).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Guest memory could not be set up.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The image could not be loaded.
    #[error(transparent)]
    Loader(#[from] LoaderError),
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
}

/// A guest image.
#[derive(Clone, Debug)]
pub enum Image {
    /// A static x86_64 ELF executable.
    Elf(Vec<u8>),
    /// A flat binary, loaded at guest physical 0 and entered at 0.
    Flat(Vec<u8>),
}

/// Everything a sandbox is built from.
#[derive(Debug)]
pub struct Config {
    /// The guest.
    pub image: Image,
    /// Guest memory size in bytes.
    pub mem_size: u64,
    /// Privilege level; `None` picks ring 3 for ELF and ring 0 for flat images.
    pub ring: Option<Ring>,
    /// Print one line per exit to stderr.
    pub trace: bool,
    /// Measure time in the guest and in kvmini.
    pub timing: bool,
    /// Host directories the guest may see (`--dir`).
    pub grants: Vec<GrantSpec>,
    /// Most descriptors the guest may have open, 0..2 included.
    pub max_fds: u32,
    /// Wall-clock limit of one run.
    pub timeout: Option<Duration>,
    /// A handle that stops this sandbox's runs (shared with whoever wants
    /// to stop it: a signal handler, another thread, other sandboxes: it
    /// stops the runs in progress of every sandbox that has it). The
    /// timeout never goes through it.
    pub stop: StopHandle,
    /// The CPU mode the guest starts in: long mode unless a flat image
    /// asks for another ([`crate::modes`]).
    pub mode: CpuMode,
    /// Run the guest on a thread confined by kvmini's seccomp filter.
    pub seccomp: bool,
    /// The guest's arguments, read with the argv hypercall.
    pub args: Vec<Vec<u8>>,
    /// How guest memory is backed (huge pages, prefaulting, snapshots).
    pub backing: memory::Backing,
    /// The stack of the vCPU thread, where host functions run, in bytes
    /// (at least; [`crate::vcpu_thread::DEFAULT_STACK_SIZE`] by default).
    pub host_stack_size: usize,
}

impl Config {
    /// A configuration with the defaults: 64 MiB, default ring, no tracing.
    pub fn new(image: Image) -> Self {
        Config {
            image,
            mem_size: memory::MEM_DEFAULT,
            ring: None,
            trace: false,
            timing: false,
            grants: Vec::new(),
            max_fds: kvmini_abi::fs::DEFAULT_MAX_FDS,
            timeout: None,
            stop: StopHandle::new(),
            mode: CpuMode::Long,
            seccomp: true,
            args: Vec::new(),
            backing: memory::Backing::default(),
            host_stack_size: crate::vcpu_thread::DEFAULT_STACK_SIZE,
        }
    }
}

pub use crate::builder::{BuildError, SandboxBuilder};
pub use crate::outcome::{
    format_regs, Crash, Ending, Outcome, Stats, Unserved, STATUS_GUEST_FAULT, STATUS_KVMINI_ERROR,
    STATUS_OUTPUT_CLOSED, STATUS_TIMEOUT,
};

/// One region of the memory map, for `--verbose`.
#[derive(Clone, Debug)]
pub struct Region {
    /// What lives there.
    pub name: &'static str,
    /// First guest physical address.
    pub start: u64,
    /// End (exclusive).
    pub end: u64,
}

/// The guest's standard streams and kvmini's warnings about it.
pub(crate) struct Stdio {
    pub(crate) stdin: Input,
    pub(crate) stdout: Output,
    pub(crate) stderr: Option<Output>,
    pub(crate) warnings: Output,
}

impl Stdio {
    /// Whether any stream is the embedding program's own reader or writer.
    fn runs_embedder_code(&self) -> bool {
        matches!(self.stdin, Input::Reader(_))
            || [
                Some(&self.stdout),
                self.stderr.as_ref(),
                Some(&self.warnings),
            ]
            .into_iter()
            .flatten()
            .any(|output| matches!(output, Output::Writer(_)))
    }
}

/// The vCPU state a reusable sandbox returns to: the general and system
/// registers (segment bases included) and the whole floating-point and
/// vector state (x87, SSE, AVX, AVX-512, PKRU: everything XCR0 enables).
#[derive(Debug)]
struct PristineCpu {
    regs: kvm_regs,
    sregs: kvm_sregs,
    extended: ExtendedState,
}

impl PristineCpu {
    fn save(kvm: &Kvm, vcpu: &mut Vcpu) -> Result<Self, SandboxError> {
        let setup = |what| move |source| VcpuError::Setup { what, source };
        let (regs, sregs) = match vcpu.registers_on_entry() {
            Some(both) => both,
            None => {
                let fd = vcpu.fd();
                (
                    fd.get_regs().map_err(setup("registers"))?,
                    fd.get_sregs().map_err(setup("system registers"))?,
                )
            }
        };
        Ok(PristineCpu {
            regs,
            sregs,
            extended: ExtendedState::save(kvm, vcpu.fd())?,
        })
    }

    /// Runs on the caller's thread between runs, never on the confined
    /// vCPU thread: the seccomp filter there allows no state-setting call.
    fn restore(&self, vcpu: &mut Vcpu) -> Result<(), SandboxError> {
        // General and system registers go through the sync-regs area and
        // take effect at the next entry; the extended state has no such
        // path.
        vcpu.set_registers_on_entry(&self.regs, &self.sregs);
        self.extended.restore(vcpu.fd())?;
        Ok(())
    }
}

/// What [`Sandbox::reset`] needs.
#[derive(Debug)]
struct Reusable {
    memory: memory::Snapshot,
    cpu: PristineCpu,
    mode_is_long: bool,
}

/// Allocates guest memory as `config` asks; huge pages fall back to normal
/// pages with a warning when the host cannot give them.
fn allocate_memory(
    config: &Config,
    warnings: &mut GuestStream,
) -> Result<(memory::GuestMemory, Option<memory::Snapshot>), SandboxError> {
    match memory::allocate_with(config.mem_size, config.backing) {
        Err(e @ memory::MemoryError::HugePages { .. }) => {
            let why = std::error::Error::source(&e).map(ToString::to_string);
            let _ = warnings.write(
                format!(
                    "kvmini: {e} ({}); using normal pages (see HugePages_Free in /proc/meminfo; \
                     reserve huge pages with: echo N > /proc/sys/vm/nr_hugepages)\n",
                    why.unwrap_or_default()
                )
                .as_bytes(),
                &config.stop,
            );
            let backing = memory::Backing {
                hugepages: false,
                ..config.backing
            };
            Ok(memory::allocate_with(config.mem_size, backing)?)
        }
        Err(e @ memory::MemoryError::HugePagesNotReusable) => {
            let _ = warnings.write(
                format!("kvmini: {e}; using normal pages\n").as_bytes(),
                &config.stop,
            );
            let backing = memory::Backing {
                hugepages: false,
                ..config.backing
            };
            Ok(memory::allocate_with(config.mem_size, backing)?)
        }
        other => Ok(other?),
    }
}

/// One guest, ready to run.
pub struct Sandbox {
    /// Memory snapshot and vCPU state for [`Sandbox::reset`].
    snapshot: Option<Reusable>,
    /// The VM and what serves its exits: moved to a confined vCPU thread
    /// for each run, and back. `None` only if a run panicked.
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

/// What a run needs: the VM, its vCPU, and the hypercalls they serve.
struct Machine {
    vcpu: Vcpu,
    vm: Vm,
    hypercalls: Hypercalls,
    trace: bool,
    timing: bool,
    timeout: Option<Duration>,
    stop: StopHandle,
    mode: CpuMode,
    /// kvmini's stderr, for `--trace`.
    trace_out: GuestStream,
    /// The paging of every hypercall of a guest that cannot change it (ring
    /// 3 in long mode, on kvmini's own supervisor-only tables); `None`
    /// means reading it from the system registers at each exit.
    fixed_paging: Option<FixedPaging>,
    /// What the vCPU's CPUID says about paging: which entry bits are
    /// reserved in the guest's own tables.
    cpu_paging: CpuPaging,
    /// The guest's registers at the fault, when the run ended in a crash.
    fault_regs: Option<kvm_regs>,
}

/// Paging a ring-3 long-mode guest cannot change.
#[derive(Clone, Debug)]
struct FixedPaging {
    paging: Paging,
    cr3: u64,
    /// Where kvmini's identity map gives the guest its own pages: a buffer
    /// there needs no page walk.
    identity: std::ops::Range<u64>,
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
    /// Builds the VM: memory, page tables, descriptor tables, the image,
    /// then the vCPU at the image's entry point. Guest output goes to
    /// kvmini's stdout.
    pub fn new(kvm: &Kvm, config: Config) -> Result<Self, SandboxError> {
        Self::from_parts(
            kvm,
            config,
            Stdio {
                stdin: Input::Inherit,
                stdout: Output::Inherit,
                stderr: None,
                warnings: Output::Inherit,
            },
            HostFunctions::default(),
        )
    }

    /// As [`Sandbox::new`], with the guest's output and kvmini's warnings
    /// about it sent to the given writers.
    pub fn with_output(
        kvm: &Kvm,
        config: Config,
        stdout: Box<dyn Write + Send>,
        warnings: Box<dyn Write + Send>,
    ) -> Result<Self, SandboxError> {
        Self::from_parts(
            kvm,
            config,
            Stdio {
                stdin: Input::Inherit,
                stdout: Output::Writer(stdout),
                stderr: None,
                warnings: Output::Writer(warnings),
            },
            HostFunctions::default(),
        )
    }

    /// A builder for a sandbox: the guest, its machine, its files, its
    /// input and output, and the host functions it may call.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// Builds the VM from its parts (see [`Sandbox::builder`]).
    pub(crate) fn from_parts(
        kvm: &Kvm,
        config: Config,
        stdio: Stdio,
        host_functions: HostFunctions,
    ) -> Result<Self, SandboxError> {
        let grants = Grants::open(&config.grants)?;
        let own_thread = !host_functions.is_empty() || stdio.runs_embedder_code();
        let stdout = GuestStream::new(stdio.stdout, Stream::Stdout);
        let stderr = stdio.stderr.map(|o| GuestStream::new(o, Stream::Stderr));
        let mut warnings = GuestStream::new(stdio.warnings, Stream::Stderr);
        let (mem, snapshot) = allocate_memory(&config, &mut warnings)?;
        let layout = Layout::new(config.mem_size);
        let flat = matches!(config.image, Image::Flat(_));
        modes::check(config.mode, flat, config.ring)?;
        let ring = config
            .ring
            .unwrap_or(if flat { Ring::Zero } else { Ring::Three });
        modes::write_tables(&mem, &layout, config.mode, flat, ring)?;
        let image = match &config.image {
            Image::Elf(bytes) => loader::load_elf(
                &mem,
                bytes,
                &LoadWindow {
                    start: ELF_LOAD_MIN,
                    end: layout.system_base,
                },
            )?,
            Image::Flat(bytes) => loader::load_flat(
                &mem,
                bytes,
                &LoadWindow {
                    start: 0,
                    end: layout.system_base,
                },
            )?,
        };
        if let Some(snapshot) = &snapshot {
            // Everything written so far: the image and kvmini's own area.
            let image_range = (
                image.lowest & !0xFFF,
                image.highest.next_multiple_of(0x1000),
            );
            snapshot.freeze(&mem, &[image_range, (layout.system_base, layout.mem_size)])?;
        }
        let vm = Vm::new(kvm, mem)?;
        // The vCPU is given KVM's supported CPUID as it is (see `Vm::create_vcpu`).
        let cpu_paging = CpuPaging::from_cpuid(kvm.supported_cpuid().as_slice());
        let mut vcpu = modes::create_vcpu(&vm, kvm, config.mode, image.entry, ring)?;
        let pristine = match &snapshot {
            Some(_) => Some(PristineCpu::save(kvm, &mut vcpu)?),
            None => None,
        };
        // A ring-3 guest cannot load CR3 or change the tables kvmini built
        // (they are supervisor-only), so its paging is known for good.
        let fixed_paging =
            (ring == Ring::Three && config.mode == CpuMode::Long).then(|| FixedPaging {
                // kvmini's long mode leaves EFER.NXE clear.
                paging: Paging::new(PagingMode::Long, false, cpu_paging),
                cr3: layout.pml4(),
                identity: paging::user_identity_range(&layout, flat),
            });
        vcpu.sync_system_registers(fixed_paging.is_none());
        let own_stop = StopHandle::new();
        let hypercalls = {
            let fs = Filesystem::new(grants, config.max_fds, stdio.stdin);
            let mut calls = Hypercalls::from_streams(stdout, warnings, fs)
                .with_host_functions(host_functions)
                .with_stop_handle(own_stop.clone())
                .with_argv(&config.args);
            if let Some(stderr) = stderr {
                calls = calls.with_stderr_stream(stderr);
            }
            calls
        };
        Ok(Sandbox {
            machine: Some(Box::new(Machine {
                vcpu,
                vm,
                hypercalls,
                trace: config.trace,
                timing: config.timing,
                timeout: config.timeout,
                stop: own_stop.clone(),
                mode: config.mode,
                trace_out: GuestStream::new(Output::Inherit, Stream::Stderr),
                fixed_paging,
                cpu_paging,
                fault_regs: None,
            })),
            image,
            ring,
            snapshot: snapshot.zip(pristine).map(|(memory, cpu)| Reusable {
                memory,
                cpu,
                mode_is_long: config.mode == CpuMode::Long,
            }),
            flat,
            timeout: config.timeout,
            stop: config.stop,
            own_stop,
            mode: config.mode,
            seccomp: config.seccomp,
            ended: None,
            own_thread,
            thread: None,
            host_stack_size: config.host_stack_size,
        })
    }

    /// The VM and its run state. Only a run that panicked can have taken
    /// it; every method after that reports the panic again.
    fn machine(&self) -> &Machine {
        match &self.machine {
            Some(machine) => machine,
            None => panic!("{}", SandboxError::Poisoned),
        }
    }

    fn machine_mut(&mut self) -> Result<&mut Machine, SandboxError> {
        self.machine.as_deref_mut().ok_or(SandboxError::Poisoned)
    }

    /// Number of guest descriptors open (0..2 included unless closed).
    pub fn open_descriptors(&self) -> usize {
        self.machine().hypercalls.filesystem().open_count()
    }

    /// Brings the sandbox back to its state before the first run: guest
    /// memory (only the pages touched since are dropped and re-read from
    /// the snapshot), registers, the whole XSAVE state (x87, SSE, AVX,
    /// AVX-512, PKRU) and the descriptor table. What a guest did in one run
    /// cannot be seen by the next.
    pub fn reset(&mut self) -> Result<(), SandboxError> {
        let Some(reusable) = &self.snapshot else {
            return Err(SandboxError::NotResettable("build it with .reusable(true)"));
        };
        if self.ring != Ring::Three || !reusable.mode_is_long {
            return Err(SandboxError::NotResettable(
                "only ring-3 long-mode guests can be reset (a ring-0 guest can change MSRs)",
            ));
        }
        let machine = self.machine.as_deref_mut().ok_or(SandboxError::Poisoned)?;
        reusable.memory.reset(machine.vm.memory())?;
        reusable.cpu.restore(&mut machine.vcpu)?;
        machine.hypercalls.reset();
        // A stop pending on the handle was asked for after the last run
        // ended: it stops the next one.
        self.ended = None;
        Ok(())
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
    pub fn layout(&self) -> &Layout {
        self.machine().vm.layout()
    }

    /// Guest memory, bounds-checked.
    pub fn memory(&self) -> &memory::GuestMemory {
        self.machine().vm.memory()
    }

    /// Host virtual address of guest memory.
    pub fn memory_host_address(&self) -> u64 {
        memory::host_address(self.memory()).unwrap_or(0)
    }

    /// Host virtual address of the vCPU's `kvm_run` area.
    pub fn kvm_run_host_address(&mut self) -> u64 {
        self.machine_mut()
            .map(|m| m.vcpu.kvm_run_address())
            .unwrap_or(0)
    }

    /// The system registers the vCPU will enter the guest with, before its
    /// first run (`None` once it has run): what `--verbose` shows.
    pub fn entry_system_registers(&mut self) -> Option<kvm_sregs> {
        let machine = self.machine.as_deref_mut()?;
        machine.vcpu.registers_on_entry().map(|(_, sregs)| sregs)
    }

    /// Size of the vCPU's `kvm_run` mapping.
    pub fn kvm_run_size(&self) -> usize {
        self.machine().vcpu.run_size()
    }

    /// The regions of guest physical memory, in address order.
    pub fn regions(&self) -> Vec<Region> {
        let l = self.layout();
        if self.mode != CpuMode::Long {
            return modes::regions(self.mode, l, &self.image);
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
        regions.push(Region {
            name: "guest stack (grows down)",
            start: self
                .image
                .highest
                .max(l.stack_top().saturating_sub(1 << 20)),
            end: l.stack_top(),
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
        regions
    }

    /// Runs the guest until it exits, halts, crashes or makes an exit kvmini
    /// does not serve.
    ///
    /// With seccomp on (the default), the guest runs on a vCPU thread that
    /// has installed kvmini's filter ([`crate::vcpu_thread`]), so the filter
    /// never confines the caller; the call returns when the run ends.
    ///
    /// Such an ending is final: `run` again is [`SandboxError::Ended`] until
    /// [`Sandbox::reset`]. A run that was stopped ([`Ending::TimedOut`],
    /// [`Ending::Stopped`]) left the guest between two instructions, and
    /// `run` again goes on from there.
    pub fn run(&mut self) -> Result<Outcome, SandboxError> {
        if let Some(ending) = &self.ended {
            return Err(SandboxError::Ended(ending.clone()));
        }
        let (shared, own) = (self.stop.clone(), self.own_stop.clone());
        let stops = stopping::begin_run(&shared, &own)?;
        // The timeout stops this sandbox only, whatever shares its handle.
        let watchdog = match self.timeout {
            Some(limit) => Some(Watchdog::start(limit, own.clone())?),
            None => None,
        };
        let result = if self.seccomp {
            self.run_confined()
        } else {
            self.machine_mut()?.run()
        };
        drop(watchdog);
        // The stop that ended this run (or came before it failed) is used
        // up; one that came while it ended some other way stays for the
        // next run.
        stops.end(matches!(
            &result,
            Err(_)
                | Ok(Outcome {
                    ending: Ending::TimedOut(_) | Ending::Stopped(_),
                    ..
                })
        ));
        if let Ok(outcome) = &result {
            if !matches!(outcome.ending, Ending::TimedOut(_) | Ending::Stopped(_)) {
                self.ended = Some(outcome.ending.clone());
            }
        }
        result
    }

    fn run_confined(&mut self) -> Result<Outcome, SandboxError> {
        // A child made by fork has the sandbox but not its thread.
        let held = self.thread.take().filter(VcpuThread::is_in_this_process);
        let thread = match held {
            Some(thread) => thread,
            None if self.own_thread => VcpuThread::get(self.host_stack_size)?.dedicated(),
            None => VcpuThread::get(crate::vcpu_thread::DEFAULT_STACK_SIZE)?,
        };
        let mut machine = self.machine.take().ok_or(SandboxError::Poisoned)?;
        let (machine, result) = thread.run(move || {
            let result = machine.run();
            (machine, result)
        });
        self.machine = Some(machine);
        if thread.is_dedicated() {
            self.thread = Some(thread);
        }
        result
    }
}

/// A thread that stops a run when its time limit passes, unless dropped
/// first. It is started by the caller of [`Sandbox::run`], which may be a
/// host function on a confined thread (threads started there inherit the
/// filter, which allows them).
struct Watchdog {
    cancel: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Fails only when no thread can be started.
    fn start(limit: Duration, stop: StopHandle) -> Result<Self, SandboxError> {
        let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kvmini-timeout".into())
            .spawn(move || {
                if cancelled.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                {
                    stop.stop(StopReason::Timeout);
                }
            })
            .map_err(SandboxError::Watchdog)?;
        Ok(Watchdog {
            cancel: Some(cancel),
            thread: Some(thread),
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.cancel.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Machine {
    /// Runs the guest on the calling thread, which becomes the vCPU thread
    /// for the run (the thread a stop signals).
    fn run(&mut self) -> Result<Outcome, SandboxError> {
        self.vcpu.set_immediate_exit(false);
        let immediate_exit = self.vcpu.immediate_exit_address();
        let stop = self.stop.clone();
        let _attached = stop.attach(immediate_exit);
        self.run_loop(&stop)
    }

    /// The ending a pending stop makes.
    fn stopped(&self, reason: StopReason) -> Ending {
        match reason {
            StopReason::Timeout => Ending::TimedOut(self.timeout.unwrap_or_default()),
            StopReason::Signal(sig) => Ending::Stopped(sig),
        }
    }

    /// The run loop proper: KVM_RUN, serve the exit, repeat.
    fn run_loop(&mut self, stop: &StopHandle) -> Result<Outcome, SandboxError> {
        let mut stats = Stats::default();
        self.fault_regs = None;
        let mut mark = Instant::now();
        let ending = loop {
            let exit = self.vcpu.run()?;
            if self.timing {
                let now = Instant::now();
                stats.guest_time += now - mark;
                mark = now;
            }
            if exit == Exit::Interrupted {
                stats.interruptions += 1;
                match stop.pending() {
                    Some(reason) => break self.stopped(reason),
                    None => continue,
                }
            }
            stats.exits += 1;
            if self.trace {
                self.trace_exit(stats.exits, &exit);
            }
            let ended = self.serve(exit, &mut stats)?;
            if self.timing {
                let now = Instant::now();
                stats.vmm_time += now - mark;
                mark = now;
            }
            if let Some(ending) = ended {
                break ending;
            }
            // A stop that ended a wait for output (or came while the exit
            // was served) ends the run here, without entering the guest.
            if let Some(reason) = stop.pending() {
                break self.stopped(reason);
            }
        };
        let ending = match self.hypercalls.flush() {
            Ok(()) | Err(StreamError::Stopped | StreamError::Full) => ending,
            Err(StreamError::Closed) => match ending {
                Ending::Exited(_) | Ending::Halted => Ending::OutputClosed,
                other => other,
            },
            Err(StreamError::Io(e)) => return Err(SandboxError::Output(e)),
        };
        // After a crash, the registers the guest had at the fault, not
        // those of kvmini's handler that reported it.
        let regs = self.fault_regs.take().unwrap_or(*self.vcpu.regs());
        Ok(Outcome {
            ending,
            stats,
            regs,
        })
    }

    fn serve(&mut self, exit: Exit, stats: &mut Stats) -> Result<Option<Ending>, SandboxError> {
        let unserved = |u| Ok(Some(Ending::Unserved(u)));
        match exit {
            Exit::IoOut {
                port,
                size,
                count,
                value,
            } => {
                stats.io_exits += 1;
                let port = match self.hypercall_port(port, Direction::Out, size, count, stats) {
                    Ok(port) => port,
                    Err(u) => return unserved(u),
                };
                if port == Port::Exception {
                    let (ending, regs) = self.exception()?;
                    self.fault_regs = regs;
                    return Ok(Some(ending));
                }
                let view = match &self.fixed_paging {
                    Some(fixed) => GuestView::new(self.vm.memory(), fixed.paging, fixed.cr3, true)
                        .with_identity(fixed.identity.clone()),
                    None => {
                        let sregs = self.vcpu.sregs()?;
                        GuestView::new(
                            self.vm.memory(),
                            Paging::from_registers(
                                sregs.cr0,
                                sregs.cr4,
                                sregs.efer,
                                self.cpu_paging,
                            ),
                            sregs.cr3,
                            sregs.cs.dpl == 3,
                        )
                    }
                };
                let action = match self.hypercalls.out(port, value, &view) {
                    Ok(action) => action,
                    Err(StreamError::Io(e)) => return Err(SandboxError::Output(e)),
                    Err(StreamError::Stopped | StreamError::Full) => Action::Resume,
                    Err(StreamError::Closed) => Action::OutputClosed,
                };
                Ok(match action {
                    Action::Resume => None,
                    Action::OutputClosed => Some(Ending::OutputClosed),
                    Action::ResumeWithRax(rax) => {
                        self.vcpu.set_rax(rax);
                        None
                    }
                    Action::Exit(code) => Some(Ending::Exited(code)),
                    Action::Halt => Some(Ending::Halted),
                })
            }
            Exit::IoIn { port, size, count } => {
                stats.io_exits += 1;
                match self.hypercall_port(port, Direction::In, size, count, stats) {
                    Ok(_) => {
                        // GetNumExits is the only `in` port.
                        let exits = u32::try_from(stats.exits).unwrap_or(u32::MAX);
                        self.vcpu.complete_in(exits);
                        Ok(None)
                    }
                    Err(u) => unserved(u),
                }
            }
            Exit::Hlt => {
                stats.hlt_exits += 1;
                Ok(Some(Ending::Halted))
            }
            Exit::Mmio { addr, write, .. } => {
                stats.mmio_exits += 1;
                unserved(Unserved::Mmio { addr, write })
            }
            Exit::Shutdown => {
                stats.other_exits += 1;
                if modes::host_may_refuse(self.mode) && stats.exits == 1 {
                    return unserved(Unserved::ModeRefused(self.mode));
                }
                unserved(Unserved::Shutdown)
            }
            Exit::FailEntry { reason } => {
                stats.other_exits += 1;
                unserved(Unserved::FailEntry(reason))
            }
            Exit::InternalError { suberror } => {
                stats.other_exits += 1;
                let ring = self.vcpu.sregs()?.cs.dpl;
                unserved(Unserved::InternalError { suberror, ring })
            }
            Exit::Other { reason } => {
                stats.other_exits += 1;
                unserved(Unserved::Other(reason))
            }
            Exit::Interrupted => Ok(None),
        }
    }

    /// Checks an I/O exit against the ABI: a known port, its one direction
    /// and size, no string I/O.
    fn hypercall_port(
        &self,
        raw: u16,
        direction: Direction,
        size: u8,
        count: u32,
        stats: &mut Stats,
    ) -> Result<Port, Unserved> {
        let port = Port::try_from(raw).map_err(|_| Unserved::UnknownPort {
            port: raw,
            direction,
            size,
        })?;
        if port.access() != (direction, size) || count != 1 {
            return Err(Unserved::BadAccess {
                port,
                direction,
                size,
                count,
            });
        }
        stats.by_hypercall[port.index()] += 1;
        Ok(port)
    }

    /// Reads the frame that kvmini's exception handler left on its stack:
    /// the crash, and the guest's registers at the faulting instruction.
    fn exception(&mut self) -> Result<(Ending, Option<kvm_regs>), SandboxError> {
        let layout = *self.vm.layout();
        let (rip, rsp, cpl, cr2) = {
            let regs = *self.vcpu.regs();
            let sregs = self.vcpu.sregs()?;
            (regs.rip, regs.rsp, sregs.cs.dpl, sregs.cr2)
        };
        let frame_bytes = (ExceptionFrame::WORDS * 8) as u64;
        let from_handler = cpl == 0 && cpu::exception_tail_range(&layout).contains(&rip);
        let frame_fits = rsp >= layout.exception_stack_bottom()
            && rsp
                .checked_add(frame_bytes)
                .is_some_and(|end| end <= layout.exception_stack_top());
        if !from_handler || !frame_fits {
            return Ok((Ending::Unserved(Unserved::ForgedException), None));
        }
        let mut words = [0u64; ExceptionFrame::WORDS];
        for (i, slot) in (0u64..).zip(words.iter_mut()) {
            *slot = self
                .vm
                .memory()
                .read_obj(GuestAddress(rsp + i * 8))
                .unwrap_or(0);
        }
        let frame = ExceptionFrame::from_words(&words);
        let crash = Crash {
            vector: u8::try_from(frame.vector).unwrap_or(u8::MAX),
            error_code: frame.error_code,
            rip: frame.regs.rip,
            rsp: frame.regs.rsp,
            ring: u8::try_from(frame.cs & 3).unwrap_or(0),
            cr2,
        };
        Ok((Ending::Crashed(crash), Some(frame.regs)))
    }

    fn trace_exit(&mut self, n: u64, exit: &Exit) {
        let rip = self.vcpu.regs().rip;
        let name = |port: u16| Port::try_from(port).map(Port::name).unwrap_or("unknown");
        let line = match exit {
            Exit::IoOut {
                port,
                size,
                count,
                value,
            } => format!(
                "io out port={port:#06x} ({}) size={size} count={count} value={value:#x}",
                name(*port)
            ),
            Exit::IoIn { port, size, count } => format!(
                "io in  port={port:#06x} ({}) size={size} count={count}",
                name(*port)
            ),
            other => format!("{other:?}"),
        };
        // Tracing is a debugging aid: a failed write to stderr is not worth
        // stopping the guest for.
        let line = format!("[exit {n:>6}] rip={rip:#010x} {line}\n");
        let _ = self.trace_out.write(line.as_bytes(), &self.stop);
    }
}
