//! Running a Linux program's signal handlers (docs/linux.md, "Signals"):
//! delivering a pending signal on the way back from a system call, and
//! `rt_sigreturn`.
//!
//! The general registers go through the sync-regs area as every system
//! call's return does. The floating-point and vector state is saved and
//! restored by the CPU itself, at ring 3, in a trampoline kvmini places in
//! the stub page: `xsave64 [rdi]` (or `xrstor64 [rdi]`) with the
//! components in EDX:EAX, then an `out` to the system-call port. kvmini
//! resumes the program at the trampoline with those registers, and at the
//! trampoline's report sets the registers the handler (or the interrupted
//! code) starts with. No vCPU ioctl is made, so the vCPU thread's seccomp
//! filter is unchanged; whatever the program does to the trampoline (its
//! own memory) runs at ring 3 and reaches nothing more than the program
//! could itself.

use kvm_bindings::kvm_regs;
use kvmini_abi::Port;

use super::entry::{return_path, BadReturn};
use super::numbers::RT_SIGRETURN;
use super::sigframe::{self, Cause, Frame, Interrupted, Restore, XstateFormat};
use super::Process;
use crate::arch::x86_64::syscall::{is_canonical, sysret_rflags, RFLAGS_DF, RFLAGS_IF};
use crate::arch::x86_64::syscall::{RFLAGS_RF, RFLAGS_TF};
use crate::view::GuestView;

const SIGSEGV: u8 = 11;
const SA_ONSTACK: u64 = 0x0800_0000;
const SA_RESTORER: u64 = 0x0400_0000;
const SA_NODEFER: u64 = 0x4000_0000;
const SA_RESETHAND: u64 = 0x8000_0000;

/// Where the trampolines start in the stub page.
pub const TRAMPOLINES_OFFSET: u64 = 16;

/// The trampolines, 8 bytes each: `xsave64 [rdi]`, `xrstor64 [rdi]`,
/// `fxsave64 [rdi]`, `fxrstor64 [rdi]`, each followed by `out` to the
/// system-call port and `ud2` (kvmini never resumes after the `out`).
pub const TRAMPOLINES: [u8; 32] = {
    let port = Port::Syscall as u8;
    [
        0x48, 0x0F, 0xAE, 0x27, 0xE6, port, 0x0F, 0x0B, // xsave64
        0x48, 0x0F, 0xAE, 0x2F, 0xE6, port, 0x0F, 0x0B, // xrstor64
        0x48, 0x0F, 0xAE, 0x07, 0xE6, port, 0x0F, 0x0B, // fxsave64
        0x48, 0x0F, 0xAE, 0x0F, 0xE6, port, 0x0F, 0x0B, // fxrstor64
    ]
};

/// Offsets of the trampolines in [`TRAMPOLINES`].
const XSAVE: u64 = 0;
const XRSTOR: u64 = 8;
const FXSAVE: u64 = 16;
const FXRSTOR: u64 = 24;
/// Where RIP is at a trampoline's `out` exit, past its entry.
const REPORT: u64 = 6;

/// What kvmini does at a Linux program's system-call exit, for signals.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Resume with these registers.
    Resume(kvm_regs),
    /// The program ends as this signal ends it (128 + N).
    Killed(u8),
    /// The exit cannot return (see [`return_path`]).
    Bad(BadReturn),
}

/// The signal-frame state of a program beside its actions and masks.
#[derive(Clone, Debug)]
pub(super) struct Frames {
    /// How this host's extended state goes into a frame.
    pub(super) format: XstateFormat,
    /// The registers to resume with at a trampoline's report, and where
    /// that report comes from.
    continuation: Option<(u64, kvm_regs)>,
    /// RSP at the system call being served (`sigaltstack` looks at it).
    pub(super) rsp: u64,
    /// The signal whose frame was written last, until the trace takes it.
    delivered: Option<Delivered>,
}

impl Frames {
    pub(super) fn new(format: XstateFormat) -> Self {
        Frames {
            format,
            continuation: None,
            rsp: 0,
            delivered: None,
        }
    }
}

/// A signal delivered to its handler, as the trace shows it: the
/// `siginfo` the handler was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The signal.
    pub signal: u8,
    /// `si_code`.
    pub code: i32,
    /// `si_addr` of a fault; `None` for a signal the program sent.
    pub addr: Option<u64>,
    /// `si_uid` of a signal the program sent (`si_pid` is 1).
    pub uid: Option<u32>,
}

impl Process {
    /// The signal delivered to its handler since the last call, for the
    /// trace.
    pub fn take_delivered(&mut self) -> Option<Delivered> {
        self.frames.delivered.take()
    }

    /// Before a system call is served: a trampoline's report (the handler
    /// or the interrupted code then starts), or `rt_sigreturn`. `None`:
    /// serve the call as usual.
    pub fn signal_exit(&mut self, view: &GuestView<'_>, ring: u8, regs: &kvm_regs) -> Option<Step> {
        self.frames.rsp = regs.rsp;
        if let Some((report, next)) = self.frames.continuation.take() {
            if ring == 3 && regs.rip == report {
                return Some(
                    self.deliver_next(view, ring, regs, &next)
                        .unwrap_or(Step::Resume(next)),
                );
            }
        }
        (regs.rax == RT_SIGRETURN).then(|| self.sigreturn_frame(view, ring, regs))
    }

    /// After a system call whose result is `result`: the return, unless
    /// a pending signal is delivered first.
    pub fn after_call(
        &mut self,
        view: &GuestView<'_>,
        ring: u8,
        regs: &kvm_regs,
        result: u64,
    ) -> Step {
        let stub = self.layout.stub;
        if self.pending & !self.sigmask != 0 {
            // The code a handler interrupts resumes as a ring-3 return does.
            let user = match return_path(3, regs, stub, result) {
                Ok(user) => user,
                Err(bad) => return Step::Bad(bad),
            };
            if let Some(step) = self.deliver_next(view, ring, regs, &user) {
                return step;
            }
        }
        match return_path(ring, regs, stub, result) {
            Ok(next) => Step::Resume(next),
            Err(bad) => Step::Bad(bad),
        }
    }

    /// Delivers the lowest pending signal the mask lets through, to code
    /// that would resume as `user`: its handler's frame, or its default
    /// action; ignored ones are dropped. `None` when nothing is delivered.
    fn deliver_next(
        &mut self,
        view: &GuestView<'_>,
        ring: u8,
        exit: &kvm_regs,
        user: &kvm_regs,
    ) -> Option<Step> {
        while self.pending & !self.sigmask != 0 {
            let sig = u64::from((self.pending & !self.sigmask).trailing_zeros()) + 1;
            let cause = self.take_pending(sig);
            match self.handler_of(sig) {
                Some(action) => {
                    return Some(self.run_handler(view, ring, exit, user, sig, cause, action))
                }
                None => {
                    if let Some(end) = self.take(sig) {
                        return Some(match end {
                            super::Effect::Killed(s) => Step::Killed(s),
                            _ => Step::Killed(SIGSEGV),
                        });
                    }
                }
            }
        }
        None
    }

    /// Writes the frame of signal `sig` for code that would resume as
    /// `user`, and resumes at the saving trampoline; the handler starts at
    /// its report. A frame that cannot be written ends the program as
    /// SIGSEGV.
    #[allow(clippy::too_many_arguments)]
    fn run_handler(
        &mut self,
        view: &GuestView<'_>,
        ring: u8,
        exit: &kvm_regs,
        user: &kvm_regs,
        sig: u64,
        cause: Cause,
        action: [u64; 4],
    ) -> Step {
        let Some((entry, fpstate)) = self.handler_frame(view, user, sig, cause, action) else {
            return Step::Killed(SIGSEGV);
        };
        let format = self.frames.format;
        let save = if format.xsave { XSAVE } else { FXSAVE };
        self.via_trampoline(ring, exit, save, fpstate, format.features, entry)
    }

    /// Writes the frame of signal `sig` for code that would resume as
    /// `user`, and applies the action's mask, `SA_RESETHAND` and the
    /// alternate stack's `SS_AUTODISARM`: the handler's first registers
    /// and the frame's XSAVE area. `None` when no frame can be written (no
    /// restorer, a handler that is not canonical, a bad stack, a full
    /// alternate stack).
    fn handler_frame(
        &mut self,
        view: &GuestView<'_>,
        user: &kvm_regs,
        sig: u64,
        cause: Cause,
        [handler, flags, restorer, sa_mask]: [u64; 4],
    ) -> Option<(kvm_regs, u64)> {
        if flags & SA_RESTORER == 0 || !is_canonical(handler) {
            return None;
        }
        let format = self.frames.format;
        let alt = self.altstack;
        let nested = alt.on(user.rsp);
        let mut top = user.rsp.wrapping_sub(sigframe::RED_ZONE);
        let entering = flags & SA_ONSTACK != 0 && alt.mode(top) == 0;
        if entering {
            top = alt.top();
        }
        let frame = Frame::below(top, &format)?;
        if (nested || entering) && !alt.contains(frame.at) {
            return None;
        }
        let interrupted = Interrupted {
            regs: *user,
            mask: self.sigmask,
            altstack: alt.as_stack_t(),
        };
        frame
            .write(
                view,
                &format,
                (sig, cause, self.uid),
                restorer,
                &interrupted,
            )
            .ok()?;
        let mut entry = *user;
        entry.rdi = sig;
        entry.rsi = frame.siginfo();
        entry.rdx = frame.ucontext();
        entry.rax = 0;
        entry.rip = handler;
        entry.rsp = frame.at;
        entry.rflags &= !(RFLAGS_DF | RFLAGS_TF | RFLAGS_RF);
        if entering && alt.autodisarm() {
            self.altstack = super::signals::AltStack::disabled();
        }
        let defer = if flags & SA_NODEFER == 0 {
            super::signals::bit(sig)
        } else {
            0
        };
        self.set_mask(self.sigmask | sa_mask | defer);
        if flags & SA_RESETHAND != 0 {
            self.reset_action(sig);
        }
        self.frames.delivered = Some(Delivered {
            signal: u8::try_from(sig).unwrap_or(0),
            code: match cause {
                Cause::Kill => 0,
                Cause::Tkill => -6,
                Cause::Fault { code, .. } => code,
            },
            addr: match cause {
                Cause::Fault { addr, .. } => Some(addr),
                Cause::Kill | Cause::Tkill => None,
            },
            uid: match cause {
                Cause::Fault { .. } => None,
                Cause::Kill | Cause::Tkill => Some(self.uid),
            },
        });
        Some((entry, frame.fpstate))
    }

    /// A fault of the program at ring 3 (`vector`, its error code, CR2)
    /// with its registers `regs`, as Linux turns it into a signal: a page
    /// fault into SIGSEGV (`SEGV_MAPERR` for a page not present,
    /// `SEGV_ACCERR` otherwise, `si_addr` the address), #GP into SIGSEGV
    /// (`SI_KERNEL`), #UD into SIGILL (`ILL_ILLOPN`), #DE into SIGFPE
    /// (`FPE_INTDIV`), `int3` into SIGTRAP (`SI_KERNEL`). With a handler
    /// for it that the mask lets through and a frame that can be written,
    /// the registers to enter (at ring 3) the saving trampoline with; the
    /// handler starts at its report. `None`: the run ends as without a
    /// handler (blocked, ignored or default, as Linux forces the default
    /// then).
    pub fn fault_signal(
        &mut self,
        view: &GuestView<'_>,
        (vector, error_code, cr2): (u8, u64, u64),
        regs: &kvm_regs,
    ) -> Option<kvm_regs> {
        const SI_KERNEL: i32 = 0x80;
        let (sig, code, addr) = match vector {
            0 => (8, 1, regs.rip),
            3 => (5, SI_KERNEL, 0),
            6 => (4, 2, regs.rip),
            13 => (11, SI_KERNEL, 0),
            14 => (11, if error_code & 1 == 0 { 1 } else { 2 }, cr2),
            _ => return None,
        };
        if self.sigmask & super::signals::bit(sig) != 0 {
            return None;
        }
        let action = self.handler_of(sig)?;
        let mut user = *regs;
        user.rflags = sysret_rflags(regs.rflags);
        let cause = Cause::Fault {
            code,
            addr,
            trap: (error_code, u64::from(vector), cr2),
        };
        let (entry, fpstate) = self.handler_frame(view, &user, sig, cause, action)?;
        let format = self.frames.format;
        let save = if format.xsave { XSAVE } else { FXSAVE };
        let at = self.layout.stub + TRAMPOLINES_OFFSET + save;
        let mut jump = entry;
        jump.rip = at;
        jump.rflags = sysret_rflags(RFLAGS_IF);
        jump.rdi = fpstate;
        jump.rax = format.features & 0xFFFF_FFFF;
        jump.rdx = format.features >> 32;
        self.frames.continuation = Some((at + REPORT, entry));
        Some(jump)
    }

    /// `rt_sigreturn`: the frame below RSP (the restorer's `ret` popped
    /// its return address) is read and checked as the system-call return
    /// is: a RIP or RSP that is not canonical, or an `fpstate` the CPU
    /// would refuse, ends the program as SIGSEGV; RFLAGS takes only the
    /// bits a system call's return takes; CS and SS stay kvmini's. The
    /// blocked mask and the alternate stack are restored, and the
    /// restoring trampoline loads the `fpstate`.
    fn sigreturn_frame(&mut self, view: &GuestView<'_>, ring: u8, regs: &kvm_regs) -> Step {
        let segv = Step::Killed(SIGSEGV);
        let Ok(saved) = sigframe::read_saved(view, regs.rsp) else {
            return segv;
        };
        if !is_canonical(saved.regs.rip) || !is_canonical(saved.regs.rsp) {
            return segv;
        }
        let format = self.frames.format;
        let Some(restore) = sigframe::check_fpstate(view, &format, saved.fpstate) else {
            return segv;
        };
        let mut next = saved.regs;
        next.rflags = sysret_rflags(saved.regs.rflags);
        let (trampoline, mask) = match restore {
            Restore::Xrstor(mask) => (XRSTOR, mask),
            Restore::Fxrstor => (FXRSTOR, 0),
        };
        let step = self.via_trampoline(ring, regs, trampoline, saved.fpstate, mask, next);
        if matches!(step, Step::Resume(_)) {
            self.set_mask(saved.mask);
            // As Linux: refused (the handler's stack is on it) or not, the
            // return goes on.
            let [sp, flags, size] = saved.altstack;
            let _ = self.set_altstack(sp, flags, size, regs.rsp);
        }
        step
    }

    /// Resumes at trampoline `which` with RDI = `area` and EDX:EAX =
    /// `components`, from an exit at `ring` (at ring 0, through the stub's
    /// `sysretq`); at its report, the program resumes as `then`.
    fn via_trampoline(
        &mut self,
        ring: u8,
        exit: &kvm_regs,
        which: u64,
        area: u64,
        components: u64,
        then: kvm_regs,
    ) -> Step {
        let stub = self.layout.stub;
        let entry = stub + TRAMPOLINES_OFFSET + which;
        let mut jump = *exit;
        jump.rcx = entry;
        jump.r11 = RFLAGS_IF;
        jump.rdi = area;
        jump.rdx = components >> 32;
        match return_path(ring, &jump, stub, components & 0xFFFF_FFFF) {
            Ok(regs) => {
                self.frames.continuation = Some((entry + REPORT, then));
                Step::Resume(regs)
            }
            Err(bad) => Step::Bad(bad),
        }
    }
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
