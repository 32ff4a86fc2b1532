//! The virtual machine (`KVM_CREATE_VM`): its guest memory slot and its one
//! vCPU, given the boot state that [`crate::arch::x86_64::boot`] works out.

use std::sync::OnceLock;

use kvm_bindings::{kvm_sregs, kvm_userspace_memory_region};
use kvm_ioctls::VmFd;

use crate::arch::x86_64::boot::BootState;
use crate::kvm::Kvm;
use crate::layout::Layout;
use crate::memory::{self, GuestMemory, MemoryError};
use crate::vcpu::{Vcpu, VcpuError};
use crate::xstate;

/// Errors of VM creation.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// `KVM_CREATE_VM` failed.
    #[error("cannot create a KVM virtual machine")]
    Create(#[source] kvm_ioctls::Error),
    /// Guest memory could not be registered with KVM.
    #[error("cannot give guest memory to KVM")]
    MemoryRegion(#[source] kvm_ioctls::Error),
    /// Guest memory has no host address.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The vCPU could not be created or set up.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// `KVM_GET_VCPU_MMAP_SIZE` failed.
    #[error("cannot read the size of the vCPU's kvm_run area")]
    RunSize(#[source] kvm_ioctls::Error),
}

/// A KVM VM with its guest memory registered as slot 0.
#[derive(Debug)]
pub struct Vm {
    fd: VmFd,
    mem: GuestMemory,
    layout: Layout,
}

impl Vm {
    /// Creates a VM and gives it `mem` as guest physical memory from 0.
    pub fn new(kvm: &Kvm, mem: GuestMemory) -> Result<Self, VmError> {
        // KVM_CREATE_VM answers EINTR when a signal arrives while it sets
        // up (an embedder's signals, or kvmini's own stop signal): it made
        // nothing, so it is asked again, a bounded number of times.
        let mut tries = 0;
        let fd = loop {
            match kvm.handle().create_vm() {
                Err(e) if e.errno() == libc::EINTR && tries < 100 => tries += 1,
                other => break other.map_err(VmError::Create)?,
            }
        };
        let host = memory::host_address(&mem)?;
        let size = vm_memory::GuestMemoryBackend::last_addr(&mem).0 + 1;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: size,
            userspace_addr: host,
        };
        // SAFETY: the region describes `mem`'s one mapping, which is owned by
        // this Vm and so outlives the VM file descriptor it is registered
        // with (fields drop in order: `fd` before `mem`).
        unsafe { fd.set_user_memory_region(region) }.map_err(VmError::MemoryRegion)?;
        Ok(Vm {
            fd,
            mem,
            layout: Layout::new(size),
        })
    }

    /// Guest memory.
    pub fn memory(&self) -> &GuestMemory {
        &self.mem
    }

    /// The memory map.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The kvm-ioctls VM.
    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    /// Creates the vCPU and gives it `boot`'s registers and state. The
    /// registers go through the sync-regs area: KVM applies them at the
    /// first entry, which spares two ioctls per VM. `boot.tables` must be
    /// in guest memory by then (KVM reads a PAE guest's PDPT when it sets
    /// the system registers).
    pub fn create_vcpu(&self, kvm: &Kvm, boot: &BootState) -> Result<Vcpu, VmError> {
        let setup = |what| move |source| VcpuError::Setup { what, source };
        let fd = self.fd.create_vcpu(0).map_err(VcpuError::Create)?;
        // CPUID first: KVM checks XCR0 against it, and refuses CR4.PSE and
        // CR4.PAE when it does not list them.
        fd.set_cpuid2(kvm.supported_cpuid())
            .map_err(setup("CPUID"))?;
        // XSAVE on, with every component KVM supports, where the boot
        // state asks for it. A KVM that refuses the XCR0 its own CPUID
        // lists gets a guest without XSAVE (CR4.OSXSAVE clear).
        let xcr0 = if boot.xsave {
            xstate::supported_xcr0(kvm.supported_cpuid())
                .filter(|&xcr0| xstate::set_xcr0(&fd, xcr0).is_ok())
        } else {
            None
        };
        if !boot.msrs.is_empty() {
            let entries: Vec<kvm_bindings::kvm_msr_entry> = boot
                .msrs
                .iter()
                .map(|&(index, data)| kvm_bindings::kvm_msr_entry {
                    index,
                    data,
                    ..Default::default()
                })
                .collect();
            let msrs = kvm_bindings::Msrs::from_entries(&entries)
                .map_err(|_| setup("MSRs")(kvm_ioctls::Error::new(libc::E2BIG)))?;
            let set = fd.set_msrs(&msrs).map_err(setup("MSRs"))?;
            if set != entries.len() {
                return Err(setup("MSRs")(kvm_ioctls::Error::new(libc::EINVAL)).into());
            }
        }
        let reset = reset_sregs(&fd).map_err(setup("system registers"))?;
        fd.set_fpu(&boot.fpu).map_err(setup("FPU state"))?;
        let run_size = kvm
            .handle()
            .get_vcpu_mmap_size()
            .map_err(VmError::RunSize)?;
        let mut vcpu = Vcpu::new(fd, run_size);
        let sregs = match xcr0 {
            Some(_) => boot.sregs.with_xsave(),
            None => boot.sregs,
        };
        vcpu.set_registers_on_entry(&boot.regs, &sregs.over(reset));
        Ok(vcpu)
    }
}

/// The system registers of a vCPU 0 just after `KVM_CREATE_VCPU`, which
/// the boot state's values are laid over. They are the same for every
/// such vCPU, so they are read once per process.
fn reset_sregs(fd: &kvm_ioctls::VcpuFd) -> Result<kvm_sregs, kvm_ioctls::Error> {
    static RESET: OnceLock<kvm_sregs> = OnceLock::new();
    if let Some(sregs) = RESET.get() {
        return Ok(*sregs);
    }
    let sregs = fd.get_sregs()?;
    Ok(*RESET.get_or_init(|| sregs))
}
