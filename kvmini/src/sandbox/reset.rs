//! Reset: what a reusable sandbox returns to between runs, and how.

use kvm_bindings::{kvm_regs, kvm_sregs};

use super::{Sandbox, SandboxError};
use crate::cpu::Ring;
use crate::kvm::Kvm;
use crate::memory;
use crate::vcpu::{Vcpu, VcpuError};
use crate::xstate::ExtendedState;

/// The vCPU state a reusable sandbox returns to: the general and system
/// registers (segment bases included) and the whole floating-point and
/// vector state (x87, SSE, AVX, AVX-512, PKRU: everything XCR0 enables).
#[derive(Debug)]
pub(super) struct PristineCpu {
    regs: kvm_regs,
    sregs: kvm_sregs,
    extended: ExtendedState,
}

impl PristineCpu {
    pub(super) fn save(kvm: &Kvm, vcpu: &mut Vcpu) -> Result<Self, SandboxError> {
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
    pub(super) fn restore(&self, vcpu: &mut Vcpu) -> Result<(), SandboxError> {
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
pub(super) struct Reusable {
    pub(super) memory: memory::Snapshot,
    pub(super) cpu: PristineCpu,
    pub(super) mode_is_long: bool,
}

impl Sandbox {
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
        // The page tables first, by kvmini's helper, so that KVM sees
        // them change; restoring memory then rewrites the same bytes.
        machine.restore_tables()?;
        reusable.memory.reset(machine.vm.memory())?;
        reusable.cpu.restore(&mut machine.vcpu)?;
        machine.hypercalls.reset();
        // A stop pending on the handle was asked for after the last run
        // ended: it stops the next one.
        self.ended = None;
        Ok(())
    }
}
