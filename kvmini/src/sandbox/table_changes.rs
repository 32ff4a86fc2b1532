//! Making a Linux program's page-table changes take effect: kvmini sends
//! the vCPU to the ring-0 helper in its own area
//! ([`crate::arch::x86_64::table_helper`]) with the list of writes, runs it
//! until the helper halts, and puts back the registers the program was to
//! resume with. Only `KVM_RUN` and the sync-regs area are used, so this
//! runs on the confined vCPU thread between a system call's exit and the
//! program's resumption, and on the caller's thread at `reset()`.

use std::ops::Range;

use kvm_bindings::{kvm_regs, kvm_sregs};

use super::run::{FixedPaging, Machine};
use crate::arch::x86_64::memory_map::MAX_IDENTITY_RANGES;
use crate::arch::x86_64::table_helper::{self, HelperError, TableWrite, LIST_CAPACITY};
use crate::cpu::{self, Ring};
use crate::layout::PAGE_SIZE;
use crate::vcpu::{Exit, VcpuError};

/// RFLAGS while the helper runs: interrupts off, nothing else.
const HELPER_RFLAGS: u64 = 0x2;

/// The most times one run of the helper is re-entered after an exit that
/// is not its end (a stop's signal, a debugger's event): far more than a
/// helper of a few hundred instructions needs.
const MAX_REENTRIES: u32 = 100_000;

/// A failure of the helper: always kvmini's or the host's, never the
/// program's (the list is kvmini's, checked before it is written).
#[derive(Debug, thiserror::Error)]
pub enum TableChangeError {
    /// The list could not be written.
    #[error(transparent)]
    List(#[from] HelperError),
    /// The vCPU could not be run or read.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// The helper ended somewhere other than its `hlt`.
    #[error("kvmini's page-table helper stopped with {exit} at {rip:#x} (ring {ring})")]
    Stopped {
        /// The exit, as KVM reported it.
        exit: String,
        /// Where the vCPU was.
        rip: u64,
        /// Its ring.
        ring: u8,
    },
}

impl Machine {
    /// Makes the page-table writes the Linux program's last call made, if
    /// any, and takes the ranges they changed out of the guest view's
    /// identity fast path. The registers waiting in the sync-regs area
    /// (the program's, for its resumption) are put back afterwards.
    pub(super) fn apply_table_changes(&mut self) -> Result<(), TableChangeError> {
        let Some(process) = self.hypercalls.linux_mut() else {
            return Ok(());
        };
        let (writes, changed) = process.take_table_writes();
        if writes.is_empty() {
            return Ok(());
        }
        let regs = *self.vcpu.regs();
        let sregs = self.vcpu.sregs()?;
        self.run_table_helper(&writes, &sregs)?;
        self.vcpu.set_registers_on_entry(&regs, &sregs);
        if let Some(fixed) = &mut self.fixed_paging {
            shrink_identity(fixed, &changed);
        }
        Ok(())
    }

    /// Brings the Linux program's page tables back to what they were
    /// before its first run, where KVM sees it, and the identity fast path
    /// with them: for `reset()`, before guest memory is restored. The
    /// caller restores the registers afterwards.
    pub(super) fn restore_tables(&mut self) -> Result<(), TableChangeError> {
        let writes = self
            .hypercalls
            .linux_states()
            .map(|(now, start)| now.table_writes_back_to(start))
            .unwrap_or_default();
        if !writes.is_empty() {
            let sregs = self.vcpu.sregs()?;
            self.vcpu.set_immediate_exit(false);
            self.run_table_helper(&writes, &sregs)?;
        }
        if let Some(fixed) = &mut self.fixed_paging {
            if let Some(map) = &fixed.memory_map {
                fixed.identity = map.writable_runs(PAGE_SIZE);
            }
        }
        Ok(())
    }

    /// Runs the helper over `writes`, a list's worth at a time, from the
    /// system registers `sregs` with CS and SS at ring 0.
    fn run_table_helper(
        &mut self,
        writes: &[TableWrite],
        sregs: &kvm_sregs,
    ) -> Result<(), TableChangeError> {
        let layout = *self.vm.layout();
        let tables = self
            .hypercalls
            .linux()
            .map(|p| p.table_pages())
            .unwrap_or_default();
        for write in writes {
            table_helper::check(write, &tables, layout.system_base).map_err(HelperError::from)?;
        }
        let mut helper_sregs = *sregs;
        let (cs, code) = cpu::code_segment(Ring::Zero);
        let (ds, data) = cpu::data_segment(Ring::Zero);
        helper_sregs.cs = code.segment(cs);
        helper_sregs.ss = data.segment(ds);
        for chunk in writes.chunks(LIST_CAPACITY) {
            table_helper::write_list(self.vm.memory(), &layout, chunk)?;
            let regs = kvm_regs {
                rip: table_helper::code_address(&layout),
                rsp: layout.exception_stack_top(),
                rsi: table_helper::list_address(&layout),
                rcx: chunk.len() as u64,
                rflags: HELPER_RFLAGS,
                ..Default::default()
            };
            self.vcpu.set_registers_on_entry(&regs, &helper_sregs);
            self.run_helper_to_its_end(table_helper::done_address(&layout))?;
        }
        Ok(())
    }

    /// Runs the vCPU until the helper halts at `done`. A stop that comes
    /// meanwhile is left pending for the run loop (which checks for one
    /// before it enters the program again), so the helper always finishes.
    fn run_helper_to_its_end(&mut self, done: u64) -> Result<(), TableChangeError> {
        let mut interrupted = false;
        for _ in 0..MAX_REENTRIES {
            match self.vcpu.run()? {
                Exit::Interrupted | Exit::Debug { .. } => {
                    interrupted = true;
                    self.vcpu.set_immediate_exit(false);
                }
                Exit::Hlt => {
                    let rip = self.vcpu.regs().rip;
                    let ring = self.vcpu.sregs()?.cs.dpl;
                    if rip != done || ring != 0 {
                        return Err(TableChangeError::Stopped {
                            exit: "hlt".into(),
                            rip,
                            ring,
                        });
                    }
                    if interrupted && self.stop.pending().is_some() {
                        self.vcpu.set_immediate_exit(true);
                    }
                    return Ok(());
                }
                other => {
                    return Err(TableChangeError::Stopped {
                        exit: format!("{other:?}"),
                        rip: self.vcpu.regs().rip,
                        ring: self.vcpu.sregs()?.cs.dpl,
                    })
                }
            }
        }
        Err(TableChangeError::Stopped {
            exit: "too many interruptions".into(),
            rip: self.vcpu.regs().rip,
            ring: 0,
        })
    }
}

/// Takes `changed` out of the guest view's identity ranges: a page whose
/// permissions changed is walked from now on, so that a buffer there is
/// checked against what the program may do with it.
fn shrink_identity(fixed: &mut FixedPaging, changed: &[Range<u64>]) {
    let mut ranges = std::mem::take(&mut fixed.identity);
    for cut in changed {
        ranges = ranges
            .into_iter()
            .flat_map(|r| {
                let below = r.start..r.end.min(cut.start);
                let above = r.start.max(cut.end)..r.end;
                [below, above]
            })
            .filter(|r| r.start < r.end)
            .collect();
    }
    ranges.sort_by_key(|r| std::cmp::Reverse(r.end - r.start));
    ranges.truncate(MAX_IDENTITY_RANGES);
    ranges.sort_by_key(|r| r.start);
    fixed.identity = ranges;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::{CpuPaging, Paging, PagingMode};

    #[test]
    fn changed_ranges_leave_the_identity_fast_path() {
        let mut fixed = FixedPaging {
            paging: Paging::new(PagingMode::Long, true, CpuPaging::ALL_FEATURES),
            cr3: 0,
            identity: vec![0x1000..0xF_0000, 0x20_0000..0x80_0000],
            memory_map: None,
            linux: true,
        };
        shrink_identity(&mut fixed, &[0x40_0000..0x40_1000, 0x1000..0x2000]);
        assert_eq!(
            fixed.identity,
            vec![0x2000..0xF_0000, 0x20_0000..0x40_0000, 0x40_1000..0x80_0000]
        );
    }
}
