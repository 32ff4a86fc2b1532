//! A Linux program's fault, delivered to its signal handler as Linux
//! delivers it (docs/linux.md, "Signals"): kvmini's exception handler
//! reported the fault at ring 0; the program resumes at ring 3, at the
//! trampoline that saves its vector registers into the frame, through the
//! sync-regs area (general and system registers together, as at the
//! program's start), with no vCPU ioctl.

use kvm_bindings::kvm_regs;

use super::outcome::Crash;
use super::run::Machine;
use crate::cpu::{code_segment, data_segment, Ring};
use crate::vcpu::VcpuError;
use crate::view::GuestView;

impl Machine {
    /// Whether `crash`, with the program's registers `regs`, went to the
    /// program's handler; `false` leaves the crash to end the run.
    pub(super) fn fault_to_handler(
        &mut self,
        crash: &Crash,
        regs: &kvm_regs,
    ) -> Result<bool, VcpuError> {
        let Some(fixed) = self.fixed_paging.as_ref().filter(|f| f.linux) else {
            return Ok(false);
        };
        let Some(process) = self.hypercalls.linux_mut() else {
            return Ok(false);
        };
        if crash.ring != 3 {
            return Ok(false);
        }
        let view = GuestView::new(self.vm.memory(), fixed.paging, fixed.cr3, true)
            .with_identity_ranges(&fixed.identity);
        let fault = (crash.vector, crash.error_code, crash.cr2);
        let Some(entry) = process.fault_signal(&view, fault, regs) else {
            return Ok(false);
        };
        let mut sregs = self.vcpu.sregs()?;
        let (cs, code) = code_segment(Ring::Three);
        let (ss, data) = data_segment(Ring::Three);
        sregs.cs = code.segment(cs);
        sregs.ss = data.segment(ss);
        self.vcpu.set_registers_on_entry(&entry, &sregs);
        Ok(true)
    }
}
