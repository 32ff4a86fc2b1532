//! The core file of a sandbox's crash ([`crate::core_dump`]): what the
//! crash left in the sandbox, read before anything runs again.

use std::io::Write;

use kvm_ioctls::VcpuFd;

use super::outcome::{Ending, Outcome};
use super::Sandbox;
use crate::core_dump::{self, CoreError, CoreRegisters, CoreSource, CoreSummary};
use crate::cpu::{USER_CS, USER_DS};
use crate::paging::{Paging, PagingMode};
use crate::xstate::ExtendedState;

impl Sandbox {
    /// Writes an ELF core file of the crash that `outcome` reports to
    /// `out`, which `gdb GUEST CORE` opens at the faulting instruction:
    /// the registers of `outcome`, the FPU state, and the guest's memory
    /// as its own page tables map it (see [`crate::core_dump`]).
    /// `program` is the name the core gives the program.
    ///
    /// The memory and the system registers are those the crash left: the
    /// sandbox holds them until it is reset, and nothing runs in between.
    /// So `outcome` must be this sandbox's last, a crash
    /// ([`Ending::Crashed`]) of a guest in long mode, and the sandbox not
    /// reset since; otherwise this is [`CoreError::NoCrash`] (or
    /// [`CoreError::NotLongMode`]) and nothing is written.
    pub fn write_core(
        &mut self,
        outcome: &Outcome,
        program: &[u8],
        out: &mut dyn Write,
    ) -> Result<CoreSummary, CoreError> {
        let Ending::Crashed(crash) = &outcome.ending else {
            return Err(CoreError::NoCrash);
        };
        if self.ended.as_ref() != Some(&outcome.ending) {
            return Err(CoreError::NoCrash);
        }
        let entry = self.image.entry;
        let machine = self.machine.as_deref_mut().ok_or(CoreError::Poisoned)?;
        // The system registers are those of kvmini's handler that reported
        // the crash, which keeps the guest's CR3, paging and segment bases.
        let sregs = machine.vcpu.sregs().map_err(CoreError::Registers)?;
        let paging = Paging::from_registers(sregs.cr0, sregs.cr4, sregs.efer, machine.cpu_paging);
        if paging.mode != PagingMode::Long {
            return Err(CoreError::NotLongMode);
        }
        // From the XSAVE area, as for gdb: KVM_GET_FPU reads MXCSR wrong on
        // kvm-pvm.
        let fpu = ExtendedState::read_now(machine.vm.fd(), machine.vcpu.fd())
            .map_err(CoreError::Fpu)?
            .fpu();
        let (cs, ss) = if crash.ring == 3 {
            (USER_CS, USER_DS)
        } else {
            (sregs.cs.selector, sregs.ss.selector)
        };
        let source = CoreSource {
            memory: machine.vm.memory(),
            paging,
            cr3: sregs.cr3,
            user_only: crash.ring == 3,
            vector: crash.vector,
            fault_address: crash.cr2,
            error_code: crash.error_code,
            registers: CoreRegisters {
                regs: outcome.regs,
                fs_base: sregs.fs.base,
                gs_base: sregs.gs.base,
                selectors: [
                    cs,
                    ss,
                    sregs.ds.selector,
                    sregs.es.selector,
                    sregs.fs.selector,
                    sregs.gs.selector,
                ],
                fxsave: core_dump::fxsave_from_fpu(&fpu),
                xsave: avx_state(machine.vcpu.fd()),
            },
            program,
            entry,
        };
        core_dump::write_core(&source, out)
    }
}

/// The XSAVE area and XCR0, where KVM has XSAVE (the AVX state); without
/// it the FPU state is all there is.
fn avx_state(fd: &VcpuFd) -> Option<(Box<[u8; 4096]>, u64)> {
    let (area, xcrs) = (fd.get_xsave().ok()?, fd.get_xcrs().ok()?);
    let listed = usize::try_from(xcrs.nr_xcrs)
        .unwrap_or(0)
        .min(xcrs.xcrs.len());
    let xcr0 = xcrs.xcrs[..listed]
        .iter()
        .find(|x| x.xcr == 0)
        .map_or(0, |x| x.value);
    let mut bytes = Box::new([0u8; 4096]);
    for (chunk, word) in bytes.chunks_exact_mut(4).zip(area.region) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    Some((bytes, xcr0))
}
