//! What a debugger does with a guest between two runs: stop it at single
//! steps and breakpoints, read and write its registers, and read and write
//! its memory at virtual addresses through its own page tables. All of it
//! runs on the caller's thread, never on the confined vCPU thread, so the
//! vCPU thread's seccomp filter allows nothing more for a debugger.
//!
//! Where the stops come from depends on the ring (docs/kvm-pvm.md, "Debug
//! events", has what this host does). At ring 0, KVM stops the guest
//! (`KVM_SET_GUEST_DEBUG`). At ring 3, kvmini's own exception handlers do:
//! a single step sets the trap flag, the #DB or #BP it raises reaches
//! kvmini's handler, whose report ends the run as a debug stop, and the
//! guest's registers from the handler's frame are put back, with its ring-3
//! code and stack segments, as `iretq` would.

use kvm_bindings::{
    kvm_fpu, kvm_guest_debug, kvm_regs, kvm_segment, kvm_sregs, KVM_GUESTDBG_ENABLE,
    KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP,
};
use vm_memory::{Bytes, GuestAddress};

use super::exit::DebugEvent;
use super::outcome::Crash;
use super::{Sandbox, SandboxError};
use crate::addr::Gva;
use crate::cpu::Ring;
use crate::paging::Paging;
use crate::view::{GuestView, ViewError};
use crate::xstate::ExtendedState;

/// Errors of reaching a stopped guest's memory.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The sandbox has no VM (an earlier run panicked) or its vCPU failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The address is not mapped in the guest's page tables (or not for
    /// the guest's privilege level), or maps outside guest memory.
    #[error(transparent)]
    Memory(#[from] ViewError),
}

/// What a hardware breakpoint watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// Executing the instruction at the address.
    Execute,
    /// Writing any of `len` bytes (1, 2, 4 or 8) at the address.
    Write(u8),
    /// Reading or writing any of `len` bytes (1, 2, 4 or 8) at the address.
    Access(u8),
}

/// What KVM intercepts for a debugger ([`Sandbox::set_guest_debug`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestDebug {
    /// Stop after each instruction.
    pub single_step: bool,
    /// Stop at `int3` instead of delivering #BP to the guest.
    pub software_breakpoints: bool,
    /// Up to four hardware breakpoints (the CPU's DR0 to DR3): an address
    /// and what it watches.
    pub hardware: [Option<(u64, Watch)>; 4],
    /// Ask KVM for single steps even at ring 3, where kvmini's own trap
    /// flag serves them: only to measure what a host's KVM does.
    pub kvm_single_step: bool,
}

impl GuestDebug {
    /// Whether anything is asked for.
    pub fn enabled(&self) -> bool {
        self.single_step || self.software_breakpoints || self.hardware.iter().any(Option::is_some)
    }

    /// The structure `KVM_SET_GUEST_DEBUG` takes.
    fn to_kvm(self) -> kvm_guest_debug {
        let mut control = kvm_guest_debug::default();
        if !self.enabled() {
            return control;
        }
        control.control = KVM_GUESTDBG_ENABLE;
        if self.single_step {
            control.control |= KVM_GUESTDBG_SINGLESTEP;
        }
        if self.software_breakpoints {
            control.control |= KVM_GUESTDBG_USE_SW_BP;
        }
        let mut dr7 = 0u64;
        for (i, slot) in (0u64..).zip(self.hardware) {
            let Some((addr, watch)) = slot else { continue };
            let (rw, len) = match watch {
                Watch::Execute => (0b00, 1),
                Watch::Write(len) => (0b01, len),
                Watch::Access(len) => (0b11, len),
            };
            let len_bits = match len {
                2 => 0b01,
                4 => 0b11,
                8 => 0b10,
                _ => 0b00,
            };
            // The breakpoint's global enable, then its kind and length.
            dr7 |= 1 << (2 * i + 1);
            dr7 |= (rw | len_bits << 2) << (16 + 4 * i);
            if let Some(reg) = usize::try_from(i)
                .ok()
                .and_then(|i| control.arch.debugreg.get_mut(i))
            {
                *reg = addr;
            }
        }
        if dr7 != 0 {
            control.control |= KVM_GUESTDBG_USE_HW_BP;
            control.arch.debugreg[7] = dr7;
        }
        control
    }
}

/// The trap flag in RFLAGS.
const RFLAGS_TF: u64 = 1 << 8;

/// What a debugger set and saw ([`Sandbox::set_guest_debug`]).
#[derive(Clone, Debug, Default)]
pub(super) struct DebugState {
    /// The event that stopped the last run, until the next run.
    pub(super) event: Option<DebugEvent>,
    /// For a ring-3 guest, whose stops come from kvmini's own handlers: its
    /// code and stack segments, to return to it from a handler's report.
    user_segments: Option<(kvm_segment, kvm_segment)>,
    /// Step by the trap flag (ring 3).
    single_step: bool,
    /// The guest's registers from the frame of the handler that reported
    /// the last stop, to be put back before the next entry.
    trap_regs: Option<kvm_regs>,
}

impl DebugState {
    /// Takes a report of kvmini's handler as a debug stop, when it is a #DB
    /// or #BP at ring 3 and kvmini's handlers are this guest's debugger.
    pub(super) fn take_trap(&mut self, crash: &Crash, regs: kvm_regs) -> bool {
        const BP: u8 = 3;
        const DB: u8 = 1;
        if self.user_segments.is_none() || crash.ring != 3 || ![DB, BP].contains(&crash.vector) {
            return false;
        }
        // A #BP is a trap after the one-byte `int3`: the event names the
        // `int3` itself, as KVM's does.
        let pc = if crash.vector == BP {
            crash.rip.wrapping_sub(1)
        } else {
            crash.rip
        };
        self.event = Some(DebugEvent {
            exception: u32::from(crash.vector),
            pc,
            dr6: 0,
        });
        self.trap_regs = Some(regs);
        true
    }
}

impl Sandbox {
    /// Sets what stops the guest for a debugger from the next run on: a run
    /// then ends at such an event as [`super::Ending::Stopped`] with
    /// SIGTRAP, which [`Sandbox::debug_event`] describes, and `run` again
    /// goes on from there. At ring 3 (long mode), single steps and `int3`
    /// are kvmini's own (the module documentation says how); what this
    /// host's KVM honours is measured in docs/kvm-pvm.md.
    pub fn set_guest_debug(&mut self, debug: GuestDebug) -> Result<(), SandboxError> {
        let own = self.ring == Ring::Three && self.mode == crate::modes::CpuMode::Long;
        let user_segments = if own && debug.enabled() {
            let sregs = self.system_registers()?;
            Some((sregs.cs, sregs.ss))
        } else {
            None
        };
        let to_kvm = GuestDebug {
            single_step: debug.single_step && (!own || debug.kvm_single_step),
            ..debug
        };
        let machine = self.machine_mut()?;
        machine.vcpu.set_guest_debug(&to_kvm.to_kvm())?;
        let trap_regs = machine.debug.as_mut().and_then(|d| d.trap_regs.take());
        machine.debug = debug.enabled().then(|| DebugState {
            user_segments,
            single_step: debug.single_step && own && !debug.kvm_single_step,
            ..DebugState::default()
        });
        if let Some(regs) = trap_regs {
            machine.vcpu.set_regs(&regs);
        }
        Ok(())
    }

    /// Before a run: a ring-3 single step sets the trap flag.
    pub(super) fn prepare_debug_run(&mut self) -> Result<(), SandboxError> {
        let Some(machine) = self.machine.as_deref_mut() else {
            return Ok(());
        };
        if machine.debug.as_ref().is_some_and(|d| d.single_step) {
            let mut regs = *machine.vcpu.regs();
            regs.rflags |= RFLAGS_TF;
            machine.vcpu.set_regs(&regs);
        }
        Ok(())
    }

    /// After a run that kvmini's handler stopped for a debugger: the
    /// guest's registers from the handler's frame, its trap flag as it was
    /// before a step, at ring 3 again, as the handler's `iretq` would.
    pub(super) fn finish_debug_run(&mut self) -> Result<(), SandboxError> {
        let Some(machine) = self.machine.as_deref_mut() else {
            return Ok(());
        };
        let Some(debug) = machine.debug.as_mut() else {
            return Ok(());
        };
        let single_step = debug.single_step;
        let (Some(mut regs), Some((cs, ss))) = (debug.trap_regs.take(), debug.user_segments) else {
            if single_step {
                // Ended some other way: the flag kvmini set goes.
                let mut regs = *machine.vcpu.regs();
                regs.rflags &= !RFLAGS_TF;
                machine.vcpu.set_regs(&regs);
            }
            return Ok(());
        };
        if single_step {
            regs.rflags &= !RFLAGS_TF;
        }
        let mut sregs = machine.vcpu.sregs()?;
        sregs.cs = cs;
        sregs.ss = ss;
        machine.vcpu.set_registers_on_entry(&regs, &sregs);
        Ok(())
    }

    /// The time limit of each run from now on (`None`: none): a debugger
    /// that runs the guest in many short runs gives each what is left of
    /// the guest's own limit.
    pub fn set_timeout(&mut self, limit: Option<std::time::Duration>) {
        self.timeout = limit;
    }

    /// The time limit of each run.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.timeout
    }

    /// The debug event that stopped the last run, if one did.
    pub fn debug_event(&self) -> Option<DebugEvent> {
        self.machine
            .as_deref()
            .and_then(|machine| machine.debug.as_ref())
            .and_then(|debug| debug.event)
    }

    /// The guest's general registers, for its next entry.
    pub fn registers(&mut self) -> Result<kvm_regs, SandboxError> {
        Ok(*self.machine_mut()?.vcpu.regs())
    }

    /// Sets the guest's general registers for its next entry.
    pub fn set_registers(&mut self, regs: &kvm_regs) -> Result<(), SandboxError> {
        self.machine_mut()?.vcpu.set_regs(regs);
        Ok(())
    }

    /// The guest's system registers (segments, control registers), for its
    /// next entry.
    pub fn system_registers(&mut self) -> Result<kvm_sregs, SandboxError> {
        let vcpu = &mut self.machine_mut()?.vcpu;
        if let Some((_, sregs)) = vcpu.registers_on_entry() {
            return Ok(sregs);
        }
        Ok(vcpu.sregs()?)
    }

    /// The guest's x87 and SSE registers, from its extended state, for
    /// its next entry. kvmini's own handlers use none of them, so at a
    /// debug stop or a crash they are the guest's.
    pub fn fpu_registers(&mut self) -> Result<kvm_fpu, SandboxError> {
        let machine = self.machine_mut()?;
        Ok(ExtendedState::read_now(machine.vm.fd(), machine.vcpu.fd())?.fpu())
    }

    /// Sets the guest's x87 and SSE registers for its next entry; the rest
    /// of its extended state stays.
    pub fn set_fpu_registers(&mut self, fpu: &kvm_fpu) -> Result<(), SandboxError> {
        let machine = self.machine_mut()?;
        let mut state = ExtendedState::read_now(machine.vm.fd(), machine.vcpu.fd())?;
        state.set_fpu(fpu);
        state.restore(machine.vcpu.fd())?;
        Ok(())
    }

    /// Reads `buf.len()` bytes of guest memory at virtual `addr`, through
    /// the guest's page tables with the guest's privilege level. Nothing is
    /// read unless all of it is mapped.
    pub fn read_virtual(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), InspectError> {
        let sregs = self.system_registers()?;
        let machine = self.machine()?;
        let view = debugger_view(machine.vm.memory(), &sregs, machine.cpu_paging);
        let mut done = 0usize;
        let mut failed = false;
        view.for_each_piece(Gva::new(addr), buf.len() as u64, false, |gpa, n| {
            let n = usize::try_from(n).unwrap_or(0);
            let piece = buf
                .get_mut(done..done.saturating_add(n))
                .unwrap_or_default();
            failed |= view.memory().read_slice(piece, GuestAddress(gpa)).is_err();
            done = done.saturating_add(n);
        })?;
        if failed {
            return Err(ViewError::TooLong {
                gva: Gva::new(addr),
                len: buf.len() as u64,
            }
            .into());
        }
        Ok(())
    }

    /// Writes `bytes` to guest memory at virtual `addr`, as a debugger
    /// does: wherever the guest may read (read-only code included, for
    /// breakpoints), through its page tables with its privilege level.
    /// Nothing is written unless all of it is mapped.
    pub fn write_virtual(&mut self, addr: u64, bytes: &[u8]) -> Result<(), InspectError> {
        let sregs = self.system_registers()?;
        let machine = self.machine()?;
        let view = debugger_view(machine.vm.memory(), &sregs, machine.cpu_paging);
        let mut done = 0usize;
        let mut failed = false;
        view.for_each_piece(Gva::new(addr), bytes.len() as u64, false, |gpa, n| {
            let n = usize::try_from(n).unwrap_or(0);
            let piece = bytes.get(done..done.saturating_add(n)).unwrap_or_default();
            failed |= view.memory().write_slice(piece, GuestAddress(gpa)).is_err();
            done = done.saturating_add(n);
        })?;
        if failed {
            return Err(ViewError::TooLong {
                gva: Gva::new(addr),
                len: bytes.len() as u64,
            }
            .into());
        }
        Ok(())
    }
}

/// The guest's memory as the code it stopped in sees it.
fn debugger_view<'a>(
    memory: &'a crate::memory::GuestMemory,
    sregs: &kvm_sregs,
    cpu: crate::paging::CpuPaging,
) -> GuestView<'a> {
    GuestView::new(
        memory,
        Paging::from_registers(sregs.cr0, sregs.cr4, sregs.efer, cpu),
        sregs.cr3,
        sregs.cs.dpl == 3,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_asked_disables_guest_debug() {
        let control = GuestDebug::default().to_kvm();
        assert_eq!(control.control, 0);
        assert_eq!(control.arch.debugreg, [0; 8]);
    }

    #[test]
    fn hardware_breakpoints_fill_the_debug_registers() {
        let debug = GuestDebug {
            hardware: [
                Some((0x1000, Watch::Execute)),
                None,
                Some((0x2000, Watch::Write(4))),
                Some((0x3000, Watch::Access(8))),
            ],
            ..GuestDebug::default()
        };
        let control = debug.to_kvm();
        assert_eq!(
            control.control,
            KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP
        );
        assert_eq!(control.arch.debugreg[0], 0x1000);
        assert_eq!(control.arch.debugreg[2], 0x2000);
        assert_eq!(control.arch.debugreg[3], 0x3000);
        // G0, G2, G3; DR2 write of 4 bytes (RW 01, LEN 11); DR3 access of
        // 8 bytes (RW 11, LEN 10).
        let dr7 = (1 << 1) | (1 << 5) | (1 << 7) | (0b1101 << 24) | (0b1011 << 28);
        assert_eq!(control.arch.debugreg[7], dr7);
    }

    #[test]
    fn single_step_and_int3() {
        let debug = GuestDebug {
            single_step: true,
            software_breakpoints: true,
            ..GuestDebug::default()
        };
        assert_eq!(
            debug.to_kvm().control,
            KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_SW_BP
        );
    }
}
