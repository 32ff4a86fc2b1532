//! The virtual CPU (`KVM_CREATE_VCPU`): its registers, reached through KVM's
//! sync-regs area in `kvm_run` rather than an ioctl per exit, and `KVM_RUN`,
//! whose exits are translated here into kvmini's own small [`Exit`] enum.

use kvm_bindings::{
    kvm_guest_debug, kvm_regs, kvm_sregs, KVM_EXIT_DEBUG, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT,
    KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IO_IN, KVM_EXIT_MMIO,
    KVM_EXIT_SHUTDOWN,
};
use kvm_ioctls::{SyncReg, VcpuFd};

/// Errors of vCPU creation and setup.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// `KVM_CREATE_VCPU` failed.
    #[error("cannot create the vCPU")]
    Create(#[source] kvm_ioctls::Error),
    /// Setting CPUID, registers or FPU state failed.
    #[error("cannot set the vCPU's {what}")]
    Setup {
        /// What was being set.
        what: &'static str,
        /// The KVM error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// `KVM_RUN` failed with an error other than an interruption.
    #[error("KVM_RUN failed")]
    Run(#[source] kvm_ioctls::Error),
    /// `KVM_GET_SREGS` failed.
    #[error("cannot read the vCPU's system registers")]
    SystemRegisters(#[source] kvm_ioctls::Error),
}

/// Why `KVM_RUN` returned, reduced to what kvmini acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `out`: `size` bytes (1, 2 or 4). `count` > 1 is string I/O batched
    /// by KVM (KVM may also deliver `rep outs` one access per exit).
    IoOut {
        /// The port.
        port: u16,
        /// Bytes per access.
        size: u8,
        /// Number of accesses (string I/O).
        count: u32,
        /// The value of the first access, zero-extended.
        value: u32,
    },
    /// `in`: kvmini answers with [`Vcpu::complete_in`].
    IoIn {
        /// The port.
        port: u16,
        /// Bytes per access.
        size: u8,
        /// Number of accesses (string I/O).
        count: u32,
    },
    /// `hlt` at ring 0.
    Hlt,
    /// An access to a guest-physical address with no memory behind it.
    Mmio {
        /// The address.
        addr: u64,
        /// Write (true) or read.
        write: bool,
        /// Access length.
        len: u32,
    },
    /// Triple fault.
    Shutdown,
    /// The CPU refused to enter the guest.
    FailEntry {
        /// Hardware-specific failure reason.
        reason: u64,
    },
    /// KVM could not handle an exit itself (often: its instruction emulator
    /// hit an instruction it does not emulate).
    InternalError {
        /// `KVM_INTERNAL_ERROR_*` sub-code.
        suberror: u32,
    },
    /// `KVM_RUN` was interrupted by a signal or `immediate_exit`.
    Interrupted,
    /// A debug event KVM intercepted for kvmini (`KVM_SET_GUEST_DEBUG`):
    /// a single step, a software or a hardware breakpoint.
    Debug {
        /// The exception vector: 1 (#DB) or 3 (#BP).
        exception: u32,
        /// Where the guest is.
        pc: u64,
        /// DR6 at the event: which hardware breakpoint fired, or a single
        /// step.
        dr6: u64,
        /// DR7 at the event.
        dr7: u64,
    },
    /// Any other exit reason.
    Other {
        /// The `KVM_EXIT_*` number.
        reason: u32,
    },
}

/// Names a `KVM_EXIT_*` reason for messages.
pub fn exit_reason_name(reason: u32) -> &'static str {
    match reason {
        0 => "KVM_EXIT_UNKNOWN",
        1 => "KVM_EXIT_EXCEPTION",
        2 => "KVM_EXIT_IO",
        3 => "KVM_EXIT_HYPERCALL",
        4 => "KVM_EXIT_DEBUG",
        5 => "KVM_EXIT_HLT",
        6 => "KVM_EXIT_MMIO",
        7 => "KVM_EXIT_IRQ_WINDOW_OPEN",
        8 => "KVM_EXIT_SHUTDOWN",
        9 => "KVM_EXIT_FAIL_ENTRY",
        10 => "KVM_EXIT_INTR",
        17 => "KVM_EXIT_INTERNAL_ERROR",
        24 => "KVM_EXIT_SYSTEM_EVENT",
        _ => "an unknown KVM exit",
    }
}

/// A vCPU with sync regs enabled.
#[derive(Debug)]
pub struct Vcpu {
    fd: VcpuFd,
    run_size: usize,
    sync_sregs: bool,
}

impl Vcpu {
    /// Wraps a vCPU whose `kvm_run` mapping is `run_size` bytes
    /// (KVM_GET_VCPU_MMAP_SIZE) and asks KVM to mirror its general and
    /// system registers into `kvm_run` on every exit.
    pub fn new(mut fd: VcpuFd, run_size: usize) -> Self {
        fd.set_sync_valid_reg(SyncReg::Register);
        fd.set_sync_valid_reg(SyncReg::SystemRegister);
        Vcpu {
            fd,
            run_size,
            sync_sregs: true,
        }
    }

    /// Whether KVM copies the system registers out at every exit. Copying
    /// them adds to every exit (docs/performance.md, "What each change
    /// bought", has the cost); a guest that cannot change them (ring
    /// 3 in long mode) needs them only for rare exits, which
    /// [`Vcpu::sregs`] then reads with `KVM_GET_SREGS`.
    pub fn sync_system_registers(&mut self, sync: bool) {
        if sync {
            self.fd.set_sync_valid_reg(SyncReg::SystemRegister);
        } else {
            self.fd.clear_sync_valid_reg(SyncReg::SystemRegister);
        }
        self.sync_sregs = sync;
    }

    /// The kvm-ioctls vCPU, for setup ioctls.
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    /// Host address of the `kvm_run` area.
    pub fn kvm_run_address(&mut self) -> u64 {
        std::ptr::from_mut(self.fd.get_kvm_run()) as u64
    }

    /// Address of `kvm_run.immediate_exit`, for [`crate::stop::StopHandle`].
    pub fn immediate_exit_address(&mut self) -> *mut u8 {
        let run = self.fd.get_kvm_run();
        std::ptr::addr_of_mut!(run.immediate_exit)
    }

    /// Size of the `kvm_run` mapping.
    pub fn run_size(&self) -> usize {
        self.run_size
    }

    /// General registers as of the last exit (no ioctl).
    pub fn regs(&mut self) -> &kvm_regs {
        &self.fd.sync_regs_mut().regs
    }

    /// Sets RAX for when the guest resumes (through the sync-regs area).
    pub fn set_rax(&mut self, value: u64) {
        self.fd.sync_regs_mut().regs.rax = value;
        self.fd.set_sync_dirty_reg(SyncReg::Register);
    }

    /// Sets the general registers for when the guest resumes (through the
    /// sync-regs area).
    pub fn set_regs(&mut self, regs: &kvm_regs) {
        self.fd.sync_regs_mut().regs = *regs;
        self.fd.set_sync_dirty_reg(SyncReg::Register);
    }

    /// Sets the FS base for when the guest resumes: the system registers
    /// of this exit with FS's base changed, through the sync-regs area.
    pub fn set_fs_base(&mut self, base: u64) -> Result<(), VcpuError> {
        let mut sregs = self.sregs()?;
        sregs.fs.base = base;
        self.fd.sync_regs_mut().sregs = sregs;
        self.fd.set_sync_dirty_reg(SyncReg::SystemRegister);
        Ok(())
    }

    /// System registers as of the last exit: from the sync-regs area, or
    /// with `KVM_GET_SREGS` when they are not synced.
    pub fn sregs(&mut self) -> Result<kvm_sregs, VcpuError> {
        if self.sync_sregs {
            return Ok(self.fd.sync_regs_mut().sregs);
        }
        self.fd.get_sregs().map_err(VcpuError::SystemRegisters)
    }

    /// The general and system registers waiting in the sync-regs area for
    /// the next entry, if [`Vcpu::set_registers_on_entry`] put them there
    /// and the guest has not run since.
    pub fn registers_on_entry(&mut self) -> Option<(kvm_regs, kvm_sregs)> {
        let both = SyncReg::Register as u64 | SyncReg::SystemRegister as u64;
        if self.fd.get_kvm_run().kvm_dirty_regs & both != both {
            return None;
        }
        let sync = self.fd.sync_regs_mut();
        Some((sync.regs, sync.sregs))
    }

    /// Sets the general and system registers for the next entry, through
    /// the sync-regs area: KVM applies them when `KVM_RUN` next enters the
    /// guest, which spares two ioctls.
    pub fn set_registers_on_entry(&mut self, regs: &kvm_regs, sregs: &kvm_sregs) {
        let sync = self.fd.sync_regs_mut();
        sync.regs = *regs;
        sync.sregs = *sregs;
        self.fd.set_sync_dirty_reg(SyncReg::Register);
        self.fd.set_sync_dirty_reg(SyncReg::SystemRegister);
    }

    /// Sets `kvm_run.immediate_exit`: while set, `KVM_RUN` returns at once
    /// with EINTR. Used to stop a guest from another thread's signal.
    pub fn set_immediate_exit(&mut self, value: bool) {
        self.fd.set_kvm_immediate_exit(u8::from(value));
    }

    /// Runs the guest until its next exit.
    pub fn run(&mut self) -> Result<Exit, VcpuError> {
        match self.fd.run() {
            Ok(_) => {}
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                return Ok(Exit::Interrupted)
            }
            Err(e) => return Err(VcpuError::Run(e)),
        }
        // Registers written back through the sync area were applied on this
        // entry.
        self.fd.clear_sync_dirty_reg(SyncReg::Register);
        self.fd.clear_sync_dirty_reg(SyncReg::SystemRegister);
        let run = self.fd.get_kvm_run();
        Ok(match run.exit_reason {
            KVM_EXIT_IO => {
                // SAFETY: exit_reason KVM_EXIT_IO says the `io` member of the
                // union is the one KVM filled in.
                let io = unsafe { run.__bindgen_anon_1.io };
                let (port, size, count) = (io.port, io.size, io.count);
                if u32::from(io.direction) == KVM_EXIT_IO_IN {
                    Exit::IoIn { port, size, count }
                } else {
                    let mut bytes = [0u8; 4];
                    let len = usize::from(size.min(4));
                    let offset = usize::try_from(io.data_offset).unwrap_or(usize::MAX);
                    let run_bytes = kvm_run_bytes(run, self.run_size);
                    if let Some(data) = offset
                        .checked_add(len)
                        .and_then(|end| run_bytes.get(offset..end))
                    {
                        bytes[..len].copy_from_slice(data);
                    }
                    Exit::IoOut {
                        port,
                        size,
                        count,
                        value: u32::from_le_bytes(bytes),
                    }
                }
            }
            KVM_EXIT_HLT => Exit::Hlt,
            KVM_EXIT_MMIO => {
                // SAFETY: exit_reason KVM_EXIT_MMIO selects the `mmio` member.
                let mmio = unsafe { run.__bindgen_anon_1.mmio };
                Exit::Mmio {
                    addr: mmio.phys_addr,
                    write: mmio.is_write != 0,
                    len: mmio.len,
                }
            }
            KVM_EXIT_SHUTDOWN => Exit::Shutdown,
            KVM_EXIT_FAIL_ENTRY => {
                // SAFETY: exit_reason KVM_EXIT_FAIL_ENTRY selects `fail_entry`.
                let fail = unsafe { run.__bindgen_anon_1.fail_entry };
                Exit::FailEntry {
                    reason: fail.hardware_entry_failure_reason,
                }
            }
            KVM_EXIT_INTERNAL_ERROR => {
                // SAFETY: exit_reason KVM_EXIT_INTERNAL_ERROR selects `internal`.
                let internal = unsafe { run.__bindgen_anon_1.internal };
                Exit::InternalError {
                    suberror: internal.suberror,
                }
            }
            KVM_EXIT_INTR => Exit::Interrupted,
            KVM_EXIT_DEBUG => {
                // SAFETY: exit_reason KVM_EXIT_DEBUG selects `debug`.
                let debug = unsafe { run.__bindgen_anon_1.debug.arch };
                Exit::Debug {
                    exception: debug.exception,
                    pc: debug.pc,
                    dr6: debug.dr6,
                    dr7: debug.dr7,
                }
            }
            reason => Exit::Other { reason },
        })
    }

    /// Sets what KVM intercepts for a debugger (`KVM_SET_GUEST_DEBUG`):
    /// single steps, `int3`, hardware breakpoints. Called between runs, on
    /// the caller's thread, never on the confined vCPU thread.
    pub fn set_guest_debug(&self, control: &kvm_guest_debug) -> Result<(), VcpuError> {
        self.fd
            .set_guest_debug(control)
            .map_err(|source| VcpuError::Setup {
                what: "debug controls",
                source,
            })
    }

    /// Supplies the value an `in` instruction reads; KVM puts it in RAX when
    /// the guest resumes.
    pub fn complete_in(&mut self, value: u32) {
        let run_size = self.run_size;
        let run = self.fd.get_kvm_run();
        // SAFETY: only called after `run` returned `Exit::IoIn`, so the `io`
        // member of the union is the live one.
        let io = unsafe { run.__bindgen_anon_1.io };
        let len = usize::from(io.size.min(4));
        let Ok(offset) = usize::try_from(io.data_offset) else {
            return;
        };
        let run_bytes = kvm_run_bytes_mut(run, run_size);
        if let Some(data) = offset
            .checked_add(len)
            .and_then(|end| run_bytes.get_mut(offset..end))
        {
            data.copy_from_slice(&value.to_le_bytes()[..len]);
        }
    }
}

// The data of an I/O exit lives in the vCPU mapping at `data_offset` (on
// x86, the page after `struct kvm_run`), so it is reached as bytes of the
// whole mapping, with the offset checked against the mapping's size.
fn kvm_run_bytes(run: &kvm_bindings::kvm_run, run_size: usize) -> &[u8] {
    // SAFETY: `run` is the start of the vCPU's kvm_run mapping, which is
    // `run_size` bytes long (KVM_GET_VCPU_MMAP_SIZE, mapped by kvm-ioctls
    // for the life of the VcpuFd that `run` borrows from).
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(run).cast::<u8>(), run_size) }
}

fn kvm_run_bytes_mut(run: &mut kvm_bindings::kvm_run, run_size: usize) -> &mut [u8] {
    // SAFETY: as in `kvm_run_bytes`; the mapping is writable and the
    // borrow of `run` is exclusive for the slice's lifetime.
    unsafe { std::slice::from_raw_parts_mut(std::ptr::from_mut(run).cast::<u8>(), run_size) }
}
