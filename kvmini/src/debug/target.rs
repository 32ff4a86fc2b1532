//! The guest as gdb sees it (`gdbstub`'s target traits): its registers,
//! its memory at virtual addresses, breakpoints, and the runs that resume
//! it. A run ends at a debug stop, an interrupt, or the guest's end; the
//! stop reason gdb gets says which.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gdbstub::common::Signal;
use gdbstub::stub::SingleThreadStopReason;
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, SwBreakpoint, SwBreakpointOps,
};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use gdbstub_arch::x86::X86_64_SSE;
use kvm_bindings::kvm_regs;

use super::DebugError;
use crate::cpu::Ring;
use crate::sandbox::{Ending, GuestDebug, Outcome, Sandbox, Watch};

/// The `int3` instruction.
const INT3: u8 = 0xCC;

/// How the guest is to be resumed next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Resume {
    Continue,
    Step,
}

/// A breakpoint gdb set.
#[derive(Clone, Copy, Debug)]
enum Breakpoint {
    /// An `int3` written over this original byte (ring 3).
    Int3(u8),
    /// A hardware breakpoint on execution (ring 0, where `int3` cannot
    /// run).
    Hardware,
}

/// The guest under gdb.
pub(super) struct GuestTarget<'s> {
    pub(super) sandbox: &'s mut Sandbox,
    breakpoints: BTreeMap<u64, Breakpoint>,
    pub(super) resume: Option<Resume>,
    /// How the guest ended, once it did: every later resume reports it.
    pub(super) ended: Option<Outcome>,
    /// The guest's registers at a crash (the vCPU holds those of kvmini's
    /// handler).
    crash_regs: Option<kvm_regs>,
    /// The guest's time limit, and the guest time used so far.
    limit: Option<Duration>,
    used: Duration,
}

impl<'s> GuestTarget<'s> {
    pub(super) fn new(sandbox: &'s mut Sandbox) -> Self {
        let limit = sandbox.timeout();
        GuestTarget {
            sandbox,
            breakpoints: BTreeMap::new(),
            resume: None,
            ended: None,
            crash_regs: None,
            limit,
            used: Duration::ZERO,
        }
    }

    /// The guest's registers as gdb is to see them.
    fn regs(&mut self) -> Result<kvm_regs, DebugError> {
        match self.crash_regs {
            Some(regs) => Ok(regs),
            None => Ok(self.sandbox.registers()?),
        }
    }

    /// The controls of the next run: single steps or not, and the ring-0
    /// breakpoints in the debug registers.
    fn controls(&self, step: bool) -> GuestDebug {
        let mut debug = GuestDebug {
            single_step: step,
            software_breakpoints: true,
            ..GuestDebug::default()
        };
        let hardware = self
            .breakpoints
            .iter()
            .filter(|(_, bp)| matches!(bp, Breakpoint::Hardware))
            .map(|(addr, _)| Some((*addr, Watch::Execute)));
        for (slot, bp) in debug.hardware.iter_mut().zip(hardware) {
            *slot = bp;
        }
        debug
    }

    /// Runs the guest as gdb asked, until it stops or ends, with what is
    /// left of its time limit; says why it stopped, or `None` for a stop
    /// gdb's interrupt made.
    pub(super) fn run(&mut self) -> Result<Option<SingleThreadStopReason<u64>>, DebugError> {
        if let Some(ended) = &self.ended {
            return Ok(Some(final_reason(&ended.ending)));
        }
        let step = self.resume == Some(Resume::Step);
        let controls = self.controls(step);
        self.sandbox.set_guest_debug(controls)?;
        let left = self.limit.map(|limit| limit.saturating_sub(self.used));
        self.sandbox
            .set_timeout(left.map(|d| d.max(Duration::from_millis(1))));
        let start = Instant::now();
        let outcome = self.sandbox.run()?;
        self.used += start.elapsed();
        let event = self.sandbox.debug_event();
        let reason = match (&outcome.ending, event) {
            (Ending::Stopped(sig), Some(event)) if *sig == libc::SIGTRAP => {
                let breakpoint = self.breakpoints.get(&event.pc).copied();
                match (event.exception, breakpoint) {
                    // One of gdb's `int3`s: gdb sees the guest at it.
                    (3, Some(Breakpoint::Int3(_))) => {
                        let mut regs = self.sandbox.registers()?;
                        regs.rip = event.pc;
                        self.sandbox.set_registers(&regs)?;
                        SingleThreadStopReason::SwBreak(())
                    }
                    (1, Some(Breakpoint::Hardware)) if event.dr6 & 0xF != 0 => {
                        SingleThreadStopReason::SwBreak(())
                    }
                    (1, _) if step => SingleThreadStopReason::DoneStep,
                    _ => SingleThreadStopReason::Signal(Signal::SIGTRAP),
                }
            }
            (Ending::Stopped(sig), None) if *sig == super::INTERRUPT => return Ok(None),
            (ending, _) => {
                let reason = stop_reason(ending);
                // The limit that ran out is the guest's, not this run's rest.
                let mut outcome = outcome.clone();
                if let (Ending::TimedOut(_), Some(limit)) = (&outcome.ending, self.limit) {
                    outcome.ending = Ending::TimedOut(limit);
                }
                if let Ending::Crashed(_) = ending {
                    self.crash_regs = Some(outcome.regs);
                }
                self.ended = Some(outcome);
                reason
            }
        };
        Ok(Some(reason))
    }

    /// Takes out every breakpoint (gdb is gone) and lets the guest run on
    /// with no debugger.
    pub(super) fn detach(&mut self) -> Result<(), DebugError> {
        let breakpoints = std::mem::take(&mut self.breakpoints);
        for (addr, bp) in breakpoints {
            if let Breakpoint::Int3(byte) = bp {
                self.sandbox.write_virtual(addr, &[byte])?;
            }
        }
        self.sandbox.set_guest_debug(GuestDebug::default())?;
        let left = self.limit.map(|limit| limit.saturating_sub(self.used));
        self.sandbox
            .set_timeout(left.map(|d| d.max(Duration::from_millis(1))));
        Ok(())
    }
}

/// What gdb is told when the guest ends (or stops for good): an exit with
/// its status, or a signal.
fn stop_reason(ending: &Ending) -> SingleThreadStopReason<u64> {
    match ending {
        Ending::Exited(code) => SingleThreadStopReason::Exited(code.to_le_bytes()[0]),
        Ending::Halted => SingleThreadStopReason::Exited(0),
        // The crash first stops the guest, so gdb can look at it.
        Ending::Crashed(crash) => SingleThreadStopReason::Signal(crash_signal(crash.vector)),
        other => final_reason(other),
    }
}

/// What gdb is told once the guest cannot go on.
fn final_reason(ending: &Ending) -> SingleThreadStopReason<u64> {
    match ending {
        Ending::Exited(code) => SingleThreadStopReason::Exited(code.to_le_bytes()[0]),
        Ending::Halted => SingleThreadStopReason::Exited(0),
        Ending::Crashed(crash) => SingleThreadStopReason::Terminated(crash_signal(crash.vector)),
        Ending::TimedOut(_) => SingleThreadStopReason::Terminated(Signal::SIGALRM),
        Ending::Stopped(sig) if *sig == libc::SIGTERM => {
            SingleThreadStopReason::Terminated(Signal::SIGTERM)
        }
        Ending::Stopped(_) => SingleThreadStopReason::Terminated(Signal::SIGINT),
        Ending::OutputClosed => SingleThreadStopReason::Terminated(Signal::SIGPIPE),
        Ending::Unserved(_) => SingleThreadStopReason::Terminated(Signal::SIGSYS),
        Ending::Signaled(sig) => SingleThreadStopReason::Terminated(linux_signal(*sig)),
    }
}

/// A Linux signal number as gdb's protocol numbers it (they differ from
/// SIGBUS on).
pub(super) fn linux_signal(sig: u8) -> Signal {
    match sig {
        1..=6 | 8 | 9 | 11 | 13..=15 => Signal(sig),
        7 => Signal::SIGBUS,
        10 => Signal::SIGUSR1,
        12 => Signal::SIGUSR2,
        // SIGSTKFLT has no number in gdb's protocol: its "unknown signal".
        16 => Signal(143),
        17 => Signal::SIGCHLD,
        18 => Signal::SIGCONT,
        19 => Signal::SIGSTOP,
        20 => Signal::SIGTSTP,
        21 => Signal::SIGTTIN,
        22 => Signal::SIGTTOU,
        23 => Signal::SIGURG,
        24 => Signal::SIGXCPU,
        25 => Signal::SIGXFSZ,
        26 => Signal::SIGVTALRM,
        27 => Signal::SIGPROF,
        28 => Signal::SIGWINCH,
        29 => Signal::SIGIO,
        30 => Signal::SIGPWR,
        31 => Signal::SIGSYS,
        32 => Signal::SIG32,
        33..=63 => Signal(sig + 12),
        64 => Signal::SIG64,
        _ => Signal(143),
    }
}

/// The signal a Unix kernel sends for a CPU exception, as gdb numbers it.
pub(super) fn crash_signal(vector: u8) -> Signal {
    match vector {
        0 | 7 | 16 | 19 => Signal::SIGFPE,
        1 | 3 => Signal::SIGTRAP,
        6 => Signal::SIGILL,
        12 | 17 => Signal::SIGBUS,
        _ => Signal::SIGSEGV,
    }
}

impl Target for GuestTarget<'_> {
    type Arch = X86_64_SSE;
    type Error = DebugError;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for GuestTarget<'_> {
    fn read_registers(&mut self, out: &mut X86_64CoreRegs) -> TargetResult<(), Self> {
        let regs = self.regs().map_err(TargetError::Fatal)?;
        let sregs = self
            .sandbox
            .system_registers()
            .map_err(|e| TargetError::Fatal(e.into()))?;
        out.regs = [
            regs.rax, regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi, regs.rbp, regs.rsp,
            regs.r8, regs.r9, regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15,
        ];
        out.rip = regs.rip;
        out.eflags = u32::try_from(regs.rflags & 0xFFFF_FFFF).unwrap_or_default();
        let segments = &mut out.segments;
        segments.cs = u32::from(sregs.cs.selector);
        segments.ss = u32::from(sregs.ss.selector);
        segments.ds = u32::from(sregs.ds.selector);
        segments.es = u32::from(sregs.es.selector);
        segments.fs = u32::from(sregs.fs.selector);
        segments.gs = u32::from(sregs.gs.selector);
        let fpu = self
            .sandbox
            .fpu_registers()
            .map_err(|e| TargetError::Fatal(e.into()))?;
        super::fpu::read_into(&fpu, out);
        Ok(())
    }

    fn write_registers(&mut self, new: &X86_64CoreRegs) -> TargetResult<(), Self> {
        // A guest that ended cannot take registers: an error answer.
        if self.ended.is_some() {
            return Err(TargetError::NonFatal);
        }
        let sregs = self
            .sandbox
            .system_registers()
            .map_err(|e| TargetError::Fatal(e.into()))?;
        let selectors = [
            sregs.cs.selector,
            sregs.ss.selector,
            sregs.ds.selector,
            sregs.es.selector,
            sregs.fs.selector,
            sregs.gs.selector,
        ]
        .map(u32::from);
        let s = &new.segments;
        // Segments are kvmini's to set: a change is refused, the same
        // values are fine.
        if selectors != [s.cs, s.ss, s.ds, s.es, s.fs, s.gs] {
            return Err(TargetError::NonFatal);
        }
        let mut regs = self.regs().map_err(TargetError::Fatal)?;
        let [rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15] =
            new.regs;
        regs = kvm_regs {
            rax,
            rbx,
            rcx,
            rdx,
            rsi,
            rdi,
            rsp,
            rbp,
            r8,
            r9,
            r10,
            r11,
            r12,
            r13,
            r14,
            r15,
            rip: new.rip,
            rflags: (regs.rflags & !0xFFFF_FFFF) | u64::from(new.eflags),
        };
        let mut fpu = self
            .sandbox
            .fpu_registers()
            .map_err(|e| TargetError::Fatal(e.into()))?;
        super::fpu::write_from(new, &mut fpu);
        self.sandbox
            .set_fpu_registers(&fpu)
            .map_err(|e| TargetError::Fatal(e.into()))?;
        self.sandbox
            .set_registers(&regs)
            .map_err(|e| TargetError::Fatal(e.into()))
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        // Whole pages at a time, so that a read that runs into an unmapped
        // page gives what comes before it.
        let mut done = 0usize;
        while done < data.len() {
            let at = start.wrapping_add(done as u64);
            let to_page_end = usize::try_from(0x1000 - (at & 0xFFF)).unwrap_or(1);
            let n = to_page_end.min(data.len() - done);
            let Some(chunk) = data.get_mut(done..done + n) else {
                break;
            };
            if self.sandbox.read_virtual(at, chunk).is_err() {
                break;
            }
            done += n;
        }
        if done == 0 && !data.is_empty() {
            return Err(TargetError::Errno(libc::EFAULT.try_into().unwrap_or(14)));
        }
        Ok(done)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        self.sandbox
            .write_virtual(start, data)
            .map_err(|_| TargetError::Errno(libc::EFAULT.try_into().unwrap_or(14)))
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for GuestTarget<'_> {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Some(Resume::Continue);
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for GuestTarget<'_> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Some(Resume::Step);
        Ok(())
    }
}

impl Breakpoints for GuestTarget<'_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for GuestTarget<'_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if self.breakpoints.contains_key(&addr) {
            return Ok(true);
        }
        if self.sandbox.ring() == Ring::Zero {
            // KVM's emulator cannot run `int3` at ring 0 here: the debug
            // registers hold up to four.
            let used = self
                .breakpoints
                .values()
                .filter(|bp| matches!(bp, Breakpoint::Hardware))
                .count();
            if used == 4 {
                return Ok(false);
            }
            self.breakpoints.insert(addr, Breakpoint::Hardware);
            return Ok(true);
        }
        let mut byte = [0u8];
        if self.sandbox.read_virtual(addr, &mut byte).is_err()
            || self.sandbox.write_virtual(addr, &[INT3]).is_err()
        {
            return Ok(false);
        }
        self.breakpoints.insert(addr, Breakpoint::Int3(byte[0]));
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        match self.breakpoints.remove(&addr) {
            None => Ok(false),
            Some(Breakpoint::Hardware) => Ok(true),
            Some(Breakpoint::Int3(byte)) => Ok(self.sandbox.write_virtual(addr, &[byte]).is_ok()),
        }
    }
}

#[cfg(test)]
mod signal_tests {
    use super::linux_signal;

    /// Linux's numbers on the left, gdb's protocol numbers (from gdb's
    /// signals.def) on the right.
    #[test]
    fn linux_signals_have_gdb_s_numbers() {
        for (linux, gdb) in [
            (1, 1),
            (6, 6),
            (7, 10),
            (8, 8),
            (9, 9),
            (10, 30),
            (11, 11),
            (12, 31),
            (13, 13),
            (15, 15),
            (16, 143),
            (17, 20),
            (19, 17),
            (29, 23),
            (31, 12),
            (32, 77),
            (34, 46),
            (63, 75),
            (64, 78),
            (65, 143),
        ] {
            assert_eq!(linux_signal(linux).0, gdb, "Linux signal {linux}");
        }
    }
}
