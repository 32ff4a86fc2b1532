//! One path for every exit: [`decode`] turns a vCPU exit into a
//! [`Decoded`] exit once (a known port with its one direction and size
//! becomes a typed [`Hypercall`]), and [`serve`] serves it with the
//! handlers, the vCPU state it needs and the run's counters, and says what
//! the run loop does next. Neither touches KVM itself, so both are tested
//! with synthetic exits.

use std::io;

use kvm_bindings::kvm_regs;
use kvmini_abi::{Direction, Port};
use vm_memory::{Bytes, GuestAddress};

use super::outcome::{Crash, Ending, Stats, Unserved};
use crate::cpu::{self, ExceptionFrame};
use crate::hypercall::{Action, Hypercall, Hypercalls};
use crate::layout::Layout;
use crate::linux;
use crate::memory::GuestMemory;
use crate::modes::{self, CpuMode};
use crate::output::StreamError;
use crate::trace::{self, TraceEvent};
use crate::vcpu::{Exit, VcpuError};
use crate::view::GuestView;

/// A vCPU exit, decoded once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A hypercall: a known port, used with its direction and size.
    Call(Hypercall),
    /// Port I/O that breaks the ABI: a port no hypercall owns, the wrong
    /// direction or size, or string I/O.
    BadPort(Unserved),
    /// `hlt`.
    Hlt,
    /// Triple fault.
    Shutdown,
    /// Access to guest-physical memory that does not exist.
    Mmio {
        /// The address.
        addr: u64,
        /// Write or read.
        write: bool,
    },
    /// VM entry failed.
    FailEntry {
        /// KVM's hardware reason.
        reason: u64,
    },
    /// KVM could not handle the exit.
    InternalError {
        /// KVM's sub-code.
        suberror: u32,
    },
    /// Any other KVM exit.
    Other {
        /// KVM's exit reason.
        reason: u32,
    },
    /// KVM_RUN was interrupted (a stop, or a signal for another reason).
    Interrupted,
    /// A debug event KVM intercepted because a debugger asked for it.
    Debug(DebugEvent),
}

/// A debug event: a single step or a breakpoint, as KVM reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugEvent {
    /// The exception vector: 1 (#DB) or 3 (#BP).
    pub exception: u32,
    /// Where the guest is.
    pub pc: u64,
    /// DR6 at the event.
    pub dr6: u64,
}

/// Decodes `exit`: for port I/O, the port checked against the ABI (a known
/// port, its one direction and size, no string I/O) before its value is
/// looked at.
pub fn decode(exit: &Exit) -> Decoded {
    match *exit {
        Exit::IoOut {
            port,
            size,
            count,
            value,
        } => port_call(port, Direction::Out, size, count, value),
        Exit::IoIn { port, size, count } => port_call(port, Direction::In, size, count, 0),
        Exit::Hlt => Decoded::Hlt,
        Exit::Mmio { addr, write, .. } => Decoded::Mmio { addr, write },
        Exit::Shutdown => Decoded::Shutdown,
        Exit::FailEntry { reason } => Decoded::FailEntry { reason },
        Exit::InternalError { suberror } => Decoded::InternalError { suberror },
        Exit::Interrupted => Decoded::Interrupted,
        Exit::Other { reason } => Decoded::Other { reason },
        Exit::Debug {
            exception, pc, dr6, ..
        } => Decoded::Debug(DebugEvent { exception, pc, dr6 }),
    }
}

fn port_call(raw: u16, direction: Direction, size: u8, count: u32, value: u32) -> Decoded {
    let Ok(port) = Port::try_from(raw) else {
        return Decoded::BadPort(Unserved::UnknownPort {
            port: raw,
            direction,
            size,
        });
    };
    if port.access() != (direction, size) || count != 1 {
        return Decoded::BadPort(Unserved::BadAccess {
            port,
            direction,
            size,
            count,
        });
    }
    Decoded::Call(Hypercall::new(port, value))
}

/// What the run loop does after an exit.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Enter the guest again.
    Resume,
    /// Enter the guest again with RAX set.
    SetRax(u64),
    /// Complete the `in` with this value, then enter the guest again.
    CompleteIn(u32),
    /// Return from a Linux program's system call: enter the guest with
    /// these registers, and this FS base when it changed.
    Syscall {
        /// The general registers to resume with.
        regs: kvm_regs,
        /// The new FS base (`arch_prctl(ARCH_SET_FS)`).
        fs_base: Option<u64>,
    },
    /// End the run.
    End(Ending),
    /// End the run with a crash kvmini's exception handler reported; the
    /// registers are the guest's at the fault.
    Crashed(Crash, kvm_regs),
    /// Stop the run for a debugger, the guest between two instructions.
    Debug(DebugEvent),
}

/// The registers kvmini's exception handler reports a crash with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerState {
    /// Where the handler is.
    pub rip: u64,
    /// Its stack, with the frame on top.
    pub rsp: u64,
    /// The ring it runs at (0 for kvmini's handlers).
    pub cpl: u8,
    /// The faulting address of a page fault.
    pub cr2: u64,
}

/// What serving an exit may need from the vCPU and the VM beyond the exit:
/// asked only when needed, as reading the system registers can cost a
/// system call.
pub trait ExitContext {
    /// The guest's view of its memory at this exit (its paging).
    fn view(&mut self) -> Result<GuestView<'_>, VcpuError>;
    /// The registers of kvmini's exception handler.
    fn handler_state(&mut self) -> Result<HandlerState, VcpuError>;
    /// The ring the guest is in.
    fn ring(&mut self) -> Result<u8, VcpuError>;
    /// The general registers and the FS base at this exit.
    fn registers(&mut self) -> Result<(kvm_regs, u64), VcpuError>;
    /// Guest memory.
    fn memory(&self) -> &GuestMemory;
    /// The guest physical memory map.
    fn layout(&self) -> &Layout;
    /// The CPU mode the guest started in.
    fn mode(&self) -> CpuMode;
    /// Whether the run is traced.
    fn tracing(&self) -> bool {
        false
    }
    /// Reports `event` to the trace; it cannot fail or change the run.
    fn trace(&mut self, _event: TraceEvent) {}
}

/// Host faults that stop a run while an exit is served (never the guest's).
#[derive(Debug, thiserror::Error)]
pub enum ExitError {
    /// Writing the guest's output failed.
    #[error("cannot write the guest's output")]
    Output(#[source] io::Error),
    /// The vCPU's registers could not be read.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
}

/// Serves one decoded exit, counted in `stats` (whose `exits` already
/// counts it), and says what the run loop does next.
pub fn serve(
    calls: &mut Hypercalls,
    cpu: &mut dyn ExitContext,
    exit: Decoded,
    stats: &mut Stats,
) -> Result<Next, ExitError> {
    let unserved = |u| Ok(Next::End(Ending::Unserved(u)));
    match exit {
        Decoded::Call(call) => {
            stats.io_exits += 1;
            stats.by_hypercall[call.port().index()] += 1;
            match call {
                Hypercall::GetNumExits => {
                    let exits = u32::try_from(stats.exits).unwrap_or(u32::MAX);
                    // The trace's view failing is no reason to fail the call.
                    let event = if cpu.tracing() {
                        let view = cpu.view().ok();
                        view.map(|view| trace::decode::hypercall(call, &view, exits.into()))
                    } else {
                        None
                    };
                    if let Some(event) = event {
                        cpu.trace(TraceEvent::Call(event));
                    }
                    Ok(Next::CompleteIn(exits))
                }
                Hypercall::Exception => crash(cpu),
                Hypercall::Syscall => syscall(calls, cpu, stats),
                call => {
                    let tracing = cpu.tracing();
                    let view = cpu.view()?;
                    let served = calls.serve(call, &view);
                    let event = tracing.then(|| trace::decode::hypercall(call, &view, 0));
                    if let Some(event) = event {
                        cpu.trace(TraceEvent::Call(event));
                    }
                    let action = match served {
                        Ok(action) => action,
                        Err(StreamError::Io(e)) => return Err(ExitError::Output(e)),
                        Err(StreamError::Stopped | StreamError::Full) => Action::Resume,
                        Err(StreamError::Closed) => Action::OutputClosed,
                    };
                    Ok(match action {
                        Action::Resume => Next::Resume,
                        Action::ResumeWithRax(rax) => Next::SetRax(rax),
                        Action::OutputClosed => Next::End(Ending::OutputClosed),
                        Action::Exit(code) => Next::End(Ending::Exited(code)),
                        Action::Halt => Next::End(Ending::Halted),
                    })
                }
            }
        }
        Decoded::BadPort(refused) => {
            stats.io_exits += 1;
            unserved(refused)
        }
        Decoded::Hlt => {
            stats.hlt_exits += 1;
            Ok(Next::End(Ending::Halted))
        }
        Decoded::Mmio { addr, write } => {
            stats.mmio_exits += 1;
            unserved(Unserved::Mmio { addr, write })
        }
        Decoded::Shutdown => {
            stats.other_exits += 1;
            let mode = cpu.mode();
            if modes::host_may_refuse(mode) && stats.exits == 1 {
                return unserved(Unserved::ModeRefused(mode));
            }
            unserved(Unserved::Shutdown)
        }
        Decoded::FailEntry { reason } => {
            stats.other_exits += 1;
            unserved(Unserved::FailEntry(reason))
        }
        Decoded::InternalError { suberror } => {
            stats.other_exits += 1;
            let ring = cpu.ring()?;
            unserved(Unserved::InternalError { suberror, ring })
        }
        Decoded::Other { reason } => {
            stats.other_exits += 1;
            unserved(Unserved::Other(reason))
        }
        Decoded::Interrupted => Ok(Next::Resume),
        Decoded::Debug(event) => {
            stats.other_exits += 1;
            Ok(Next::Debug(event))
        }
    }
}

/// Serves a Linux program's system call: where it returns to is decided
/// first (from the ring at the exit, [`linux::entry::return_path`]), so
/// a call that cannot return does nothing; then the call is served from
/// the registers and its result goes to RAX. An SDK guest has no system
/// calls: the port is unknown to it, as before it existed.
fn syscall(
    calls: &mut Hypercalls,
    cpu: &mut dyn ExitContext,
    stats: &mut Stats,
) -> Result<Next, ExitError> {
    let Some(stub) = calls.linux().map(|process| process.layout().stub) else {
        return Ok(Next::End(Ending::Unserved(Unserved::UnknownPort {
            port: Port::Syscall as u16,
            direction: Direction::Out,
            size: 1,
        })));
    };
    let ring = cpu.ring()?;
    let (regs, fs_base) = cpu.registers()?;
    // A signal trampoline's report, or `rt_sigreturn` (docs/linux.md,
    // "Signals").
    let signal = {
        let view = cpu.view()?;
        calls
            .linux_mut()
            .and_then(|process| process.signal_exit(&view, ring, &regs))
    };
    if let Some(step) = signal {
        trace_delivered(calls, cpu);
        return Ok(signal_step(step, None));
    }
    if let Err(bad) = linux::entry::return_path(ring, &regs, stub, 0) {
        return Ok(Next::End(Ending::Unserved(Unserved::BadSyscallReturn {
            rcx: bad.rcx,
            rip: bad.rip,
            ring: bad.ring,
        })));
    }
    let call = linux::Syscall::from_regs(&regs);
    let tracing = cpu.tracing();
    let waits = tracing && trace::decode::syscall_waits(&call);
    if waits {
        let entered = trace::decode::syscall(&call, None, &cpu.view()?);
        cpu.trace(TraceEvent::Entered(trace::Call {
            result: trace::Returned::Pending,
            ..entered
        }));
    }
    let (effect, event) = {
        let view = cpu.view()?;
        let effect = calls.serve_syscall(&call, &view, fs_base);
        let returned = match effect {
            Some(linux::Effect::Return(value)) => Some(value),
            Some(linux::Effect::SetFsBase(_)) => Some(0),
            _ => None,
        };
        if effect.is_some() {
            let failed = returned.is_some_and(|value| (-4095..0).contains(&value));
            stats.syscalls.count(call.nr, failed);
        }
        let event = tracing.then(|| {
            let decoded = trace::decode::syscall(&call, returned, &view);
            if waits {
                TraceEvent::Resumed {
                    name: decoded.name,
                    result: decoded.result,
                }
            } else {
                TraceEvent::Call(decoded)
            }
        });
        (effect, event)
    };
    if let Some(event) = event {
        cpu.trace(event);
    }
    let (result, fs_base) = match effect {
        Some(linux::Effect::Return(value)) => (value, None),
        Some(linux::Effect::SetFsBase(base)) => (0, Some(base)),
        Some(linux::Effect::Exit(code)) => return Ok(Next::End(Ending::Exited(code))),
        Some(linux::Effect::BrokenPipe) => return Ok(Next::End(Ending::OutputClosed)),
        Some(linux::Effect::Killed(signal)) => return Ok(Next::End(Ending::Signaled(signal))),
        None => return Ok(Next::Resume),
    };
    let result = u64::from_ne_bytes(result.to_ne_bytes());
    // The return, or a pending signal's handler first.
    let next = {
        let view = cpu.view()?;
        match calls.linux_mut() {
            Some(process) => signal_step(process.after_call(&view, ring, &regs, result), fs_base),
            None => Next::Resume,
        }
    };
    trace_delivered(calls, cpu);
    Ok(next)
}

/// Reports to the trace the signal a step delivered to its handler, if
/// one did (taken either way, so none is reported twice).
fn trace_delivered(calls: &mut Hypercalls, cpu: &mut dyn ExitContext) {
    let delivered = calls.linux_mut().and_then(linux::Process::take_delivered);
    if let Some(delivered) = delivered {
        if cpu.tracing() {
            cpu.trace(TraceEvent::Signal(delivered));
        }
    }
}

/// What the run loop does for a Linux program's step at a system-call
/// exit.
fn signal_step(step: linux::Step, fs_base: Option<u64>) -> Next {
    match step {
        linux::Step::Resume(regs) => Next::Syscall { regs, fs_base },
        linux::Step::Killed(signal) => Next::End(Ending::Signaled(signal)),
        linux::Step::Bad(bad) => Next::End(Ending::Unserved(Unserved::BadSyscallReturn {
            rcx: bad.rcx,
            rip: bad.rip,
            ring: bad.ring,
        })),
    }
}

/// Reads the frame that kvmini's exception handler left on its stack: the
/// crash, and the guest's registers at the faulting instruction. A write to
/// the exception port from anywhere else, or with a stack that cannot hold
/// the frame, is a forged report.
fn crash(cpu: &mut dyn ExitContext) -> Result<Next, ExitError> {
    let HandlerState { rip, rsp, cpl, cr2 } = cpu.handler_state()?;
    let layout = cpu.layout();
    let frame_bytes = (ExceptionFrame::WORDS * 8) as u64;
    let from_handler = cpl == 0 && cpu::exception_tail_range(layout).contains(&rip);
    let frame_fits = rsp >= layout.exception_stack_bottom()
        && rsp
            .checked_add(frame_bytes)
            .is_some_and(|end| end <= layout.exception_stack_top());
    if !from_handler || !frame_fits {
        return Ok(Next::End(Ending::Unserved(Unserved::ForgedException)));
    }
    let mut words = [0u64; ExceptionFrame::WORDS];
    for (i, slot) in (0u64..).zip(words.iter_mut()) {
        *slot = cpu
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
        ..Default::default()
    };
    Ok(Next::Crashed(crash, frame.regs))
}

#[cfg(test)]
#[path = "exit_tests.rs"]
mod tests;
