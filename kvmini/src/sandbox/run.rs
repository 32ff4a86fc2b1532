//! The run loop: KVM_RUN, decode the exit, serve it ([`super::exit`]),
//! repeat until the guest ends or is stopped; and the thread that enforces
//! a run's time limit.

use std::time::{Duration, Instant};

use kvm_bindings::kvm_regs;

use super::backtrace::CodeMap;
use super::exit::{self, ExitContext, HandlerState, Next};
use super::inspect::DebugState;
use super::outcome::{Crash, Ending, Outcome, Stats, Unserved};
use super::{Sandbox, SandboxError};
use crate::arch::x86_64::memory_map::MemoryMap;
use crate::hypercall::Hypercalls;
use crate::layout::Layout;
use crate::memory::GuestMemory;
use crate::modes::CpuMode;
use crate::output::{GuestStream, StreamError};
use crate::paging::{CpuPaging, Paging};
use crate::stop::{self as stopping, StopHandle, StopReason};
use crate::trace::{TraceEnd, TraceEvent};
use crate::vcpu::{Exit, Vcpu, VcpuError};
use crate::vcpu_thread::VcpuThread;
use crate::view::GuestView;
use crate::vm::Vm;

/// What a run needs: the VM, its vCPU, and the hypercalls they serve.
pub(super) struct Machine {
    pub(super) vcpu: Vcpu,
    pub(super) vm: Vm,
    pub(super) hypercalls: Hypercalls,
    pub(super) trace: bool,
    pub(super) timing: bool,
    pub(super) timeout: Option<Duration>,
    pub(super) stop: StopHandle,
    pub(super) mode: CpuMode,
    /// Where trace lines go.
    pub(super) trace_out: GuestStream,
    /// The embedding program's handler of trace events, if it gave one.
    pub(super) trace_events: Option<TraceHandler>,
    /// The paging of every hypercall of a guest that cannot change it (ring
    /// 3 in long mode, on kvmini's own supervisor-only tables); `None`
    /// means reading it from the system registers at each exit.
    pub(super) fixed_paging: Option<FixedPaging>,
    /// What the vCPU's CPUID says about paging: which entry bits are
    /// reserved in the guest's own tables.
    pub(super) cpu_paging: CpuPaging,
    /// The guest's registers at the fault, when the run ended in a crash.
    pub(super) fault_regs: Option<kvm_regs>,
    /// What names an ELF image's code in a crash report; `None` for a flat
    /// binary.
    pub(super) code: Option<CodeMap>,
    /// The debugger's controls and the event that stopped the last run;
    /// `None` when no debugger asked for any.
    pub(super) debug: Option<DebugState>,
}

/// Paging a ring-3 long-mode guest cannot change.
#[derive(Clone, Debug)]
pub(super) struct FixedPaging {
    pub(super) paging: Paging,
    pub(super) cr3: u64,
    /// Where kvmini's identity map gives the guest its own pages to read
    /// and write: a buffer there needs no page walk.
    pub(super) identity: Vec<std::ops::Range<u64>>,
    /// The permissions kvmini gave the guest's memory, if it gave any.
    pub(super) memory_map: Option<MemoryMap>,
    /// The guest is a Linux program.
    pub(super) linux: bool,
}

impl Sandbox {
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
    ///
    /// A host function's panic ends the run and is resumed here, on the
    /// caller; it takes the VM with it, on whichever thread the guest ran,
    /// and every later call that needs the VM is
    /// [`SandboxError::Poisoned`].
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
        self.prepare_debug_run()?;
        let result = if self.seccomp {
            self.run_confined()
        } else {
            // Taken for the run as on a vCPU thread, so that a panic drops
            // it here too.
            let mut machine = self.machine.take().ok_or(SandboxError::Poisoned)?;
            let result = machine.run();
            self.machine = Some(machine);
            result
        };
        drop(watchdog);
        self.finish_debug_run()?;
        let debug_stop = self.debug_event().is_some();
        // At a debug stop, the guest's registers, not those of a handler
        // that reported it.
        let result = match result {
            Ok(mut outcome) if debug_stop => {
                outcome.regs = self.registers()?;
                Ok(outcome)
            }
            other => other,
        };
        // The stop that ended this run (or came before it failed) is used
        // up; one that came while it ended some other way (a debug event
        // included) stays for the next run.
        stops.end(
            !debug_stop
                && matches!(
                    &result,
                    Err(_)
                        | Ok(Outcome {
                            ending: Ending::TimedOut(_) | Ending::Stopped(_),
                            ..
                        })
                ),
        );
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
        })?;
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
        if let Some(debug) = &mut self.debug {
            debug.event = None;
        }
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
            let next = {
                let mut cpu = Cpu {
                    vcpu: &mut self.vcpu,
                    vm: &self.vm,
                    fixed_paging: self.fixed_paging.as_ref(),
                    cpu_paging: self.cpu_paging,
                    mode: self.mode,
                    tracer: self.trace.then_some(Tracer {
                        out: &mut self.trace_out,
                        events: &mut self.trace_events,
                        stop: &self.stop,
                    }),
                };
                exit::serve(
                    &mut self.hypercalls,
                    &mut cpu,
                    exit::decode(&exit),
                    &mut stats,
                )?
            };
            let ended = match next {
                Next::Resume => None,
                Next::SetRax(rax) => {
                    self.vcpu.set_rax(rax);
                    None
                }
                Next::CompleteIn(value) => {
                    self.vcpu.complete_in(value);
                    None
                }
                Next::Syscall { regs, fs_base } => {
                    self.vcpu.set_regs(&regs);
                    if let Some(base) = fs_base {
                        self.vcpu.set_fs_base(base)?;
                    }
                    self.apply_table_changes()?;
                    None
                }
                Next::End(ending) => Some(ending),
                Next::Crashed(crash, regs)
                    if self
                        .debug
                        .as_mut()
                        .is_some_and(|d| d.take_trap(&crash, regs)) =>
                {
                    Some(Ending::Stopped(libc::SIGTRAP))
                }
                // A Linux program's fault goes to its handler, if it has one.
                Next::Crashed(ref crash, ref regs) if self.fault_to_handler(crash, regs)? => {
                    self.trace_delivered();
                    None
                }
                Next::Crashed(mut crash, regs) => {
                    self.explain(&mut crash, &regs)?;
                    self.fault_regs = Some(regs);
                    Some(Ending::Crashed(crash))
                }
                // A debug stop hands the VM back to the caller's thread, as
                // the end of a run does, as if stopped by SIGTRAP.
                Next::Debug(event) => Some(match &mut self.debug {
                    Some(debug) => {
                        debug.event = Some(event);
                        Ending::Stopped(libc::SIGTRAP)
                    }
                    None => Ending::Unserved(Unserved::Other(kvm_bindings::KVM_EXIT_DEBUG)),
                }),
            };
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
        // A debug stop is not an end: the run goes on under the debugger.
        let debug_stop = self.debug.as_ref().is_some_and(|d| d.event.is_some());
        if self.trace && !debug_stop {
            let mut tracer = Tracer {
                out: &mut self.trace_out,
                events: &mut self.trace_events,
                stop: &self.stop,
            };
            tracer.report(&TraceEvent::Ended(trace_end(&ending)));
        }
        // After a crash, the registers the guest had at the fault, not
        // those of kvmini's handler that reported it.
        let regs = self.fault_regs.take().unwrap_or(*self.vcpu.regs());
        let map = self
            .fixed_paging
            .as_ref()
            .and_then(|f| f.memory_map.as_ref());
        let violation = match (&ending, map) {
            (Ending::Crashed(crash), Some(map)) if crash.vector == 14 => {
                let now = self
                    .hypercalls
                    .linux()
                    .and_then(|p| p.page_permissions(crash.cr2));
                map.explain_now(crash.error_code, crash.cr2, now)
            }
            _ => None,
        };
        Ok(Outcome {
            ending,
            stats,
            regs,
            violation,
        })
    }

    /// Names the code of an ELF image's crash: the faulting RIP's symbol,
    /// and the backtrace by frame pointers. Only guest memory is read (and
    /// the system registers the run loop reads at every exit), so this
    /// runs on the vCPU thread within its filter.
    fn explain(&mut self, crash: &mut Crash, regs: &kvm_regs) -> Result<(), VcpuError> {
        if let Some(fixed) = &self.fixed_paging {
            crash.linux_program = fixed.linux;
        }
        let Some(code) = &self.code else {
            return Ok(());
        };
        crash.location = code.locate(crash.rip);
        // The tables of kvmini's handler, which are the guest's, with the
        // privilege of the code that crashed: a ring-3 guest's chain
        // cannot reach supervisor pages.
        let view = match &self.fixed_paging {
            Some(fixed) => GuestView::new(self.vm.memory(), fixed.paging, fixed.cr3, true)
                .with_identity_ranges(&fixed.identity),
            None => {
                let sregs = self.vcpu.sregs()?;
                GuestView::new(
                    self.vm.memory(),
                    Paging::from_registers(sregs.cr0, sregs.cr4, sregs.efer, self.cpu_paging),
                    sregs.cr3,
                    crash.ring == 3,
                )
            }
        };
        crash.backtrace = Some(code.backtrace(&view, (crash.rip, crash.rsp, regs.rbp)));
        Ok(())
    }
}

/// What serving an exit may read from this run's vCPU and VM.
struct Cpu<'a> {
    vcpu: &'a mut Vcpu,
    vm: &'a Vm,
    fixed_paging: Option<&'a FixedPaging>,
    cpu_paging: CpuPaging,
    mode: CpuMode,
    /// Where the trace goes, when the run is traced.
    tracer: Option<Tracer<'a>>,
}

/// An embedding program's handler of trace events.
pub(crate) struct TraceHandler(pub(crate) Box<dyn FnMut(&TraceEvent) + Send>);

impl std::fmt::Debug for TraceHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceHandler")
    }
}

impl Machine {
    /// Reports to the trace the signal a fault delivered to the program's
    /// handler (taken either way, so none is reported twice).
    fn trace_delivered(&mut self) {
        let delivered = self
            .hypercalls
            .linux_mut()
            .and_then(crate::linux::Process::take_delivered);
        if let (Some(delivered), true) = (delivered, self.trace) {
            let mut tracer = Tracer {
                out: &mut self.trace_out,
                events: &mut self.trace_events,
                stop: &self.stop,
            };
            tracer.report(&TraceEvent::Signal(delivered));
        }
    }
}

/// Where a traced run's events go: the embedding program's handler, then
/// a line each in the trace's stream.
struct Tracer<'a> {
    out: &'a mut GuestStream,
    events: &'a mut Option<TraceHandler>,
    stop: &'a StopHandle,
}

impl Tracer<'_> {
    fn report(&mut self, event: &TraceEvent) {
        if let Some(handler) = self.events.as_mut() {
            (handler.0)(event);
        }
        // A trace line that cannot be written is dropped: the trace never
        // changes the run.
        let line = format!("{event}\n");
        let _ = self.out.write(line.as_bytes(), self.stop);
    }
}

/// The trace's account of how a run ended.
fn trace_end(ending: &Ending) -> TraceEnd {
    match ending {
        Ending::Exited(code) => TraceEnd::Exited(*code),
        Ending::Signaled(signal) => TraceEnd::Killed(*signal),
        Ending::Crashed(crash) if crash.linux_program => TraceEnd::Killed(
            u8::try_from(crate::core_dump::signal_of_vector(crash.vector)).unwrap_or(SIGSEGV),
        ),
        Ending::OutputClosed => TraceEnd::Killed(SIGPIPE),
        Ending::Halted => TraceEnd::Halted,
        Ending::Crashed(_) => TraceEnd::Crashed,
        Ending::Unserved(_) => TraceEnd::Unserved,
        Ending::TimedOut(_) => TraceEnd::TimedOut,
        Ending::Stopped(sig) => TraceEnd::Stopped(*sig),
    }
}

/// Linux's numbers of the signals a run's end stands for.
const SIGSEGV: u8 = 11;
const SIGPIPE: u8 = 13;

impl ExitContext for Cpu<'_> {
    fn view(&mut self) -> Result<GuestView<'_>, VcpuError> {
        Ok(match self.fixed_paging {
            Some(fixed) => GuestView::new(self.vm.memory(), fixed.paging, fixed.cr3, true)
                .with_identity_ranges(&fixed.identity),
            None => {
                let sregs = self.vcpu.sregs()?;
                GuestView::new(
                    self.vm.memory(),
                    Paging::from_registers(sregs.cr0, sregs.cr4, sregs.efer, self.cpu_paging),
                    sregs.cr3,
                    sregs.cs.dpl == 3,
                )
            }
        })
    }

    fn handler_state(&mut self) -> Result<HandlerState, VcpuError> {
        let regs = *self.vcpu.regs();
        let sregs = self.vcpu.sregs()?;
        Ok(HandlerState {
            rip: regs.rip,
            rsp: regs.rsp,
            cpl: sregs.cs.dpl,
            cr2: sregs.cr2,
        })
    }

    fn ring(&mut self) -> Result<u8, VcpuError> {
        Ok(self.vcpu.sregs()?.cs.dpl)
    }

    fn registers(&mut self) -> Result<(kvm_regs, u64), VcpuError> {
        let fs_base = self.vcpu.sregs()?.fs.base;
        Ok((*self.vcpu.regs(), fs_base))
    }

    fn memory(&self) -> &GuestMemory {
        self.vm.memory()
    }

    fn layout(&self) -> &Layout {
        self.vm.layout()
    }

    fn mode(&self) -> CpuMode {
        self.mode
    }

    fn tracing(&self) -> bool {
        self.tracer.is_some()
    }

    fn trace(&mut self, event: TraceEvent) {
        if let Some(tracer) = &mut self.tracer {
            tracer.report(&event);
        }
    }
}
