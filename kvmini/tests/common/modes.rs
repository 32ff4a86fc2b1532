//! The classic CPU modes' shared test helpers: whether this host's KVM
//! runs 32-bit paging (probed once), a flat image run in a mode, and the
//! check of the host's refusal. Used by the library's and the command
//! line's mode tests.

use super::{kvm_or_skip, run_config, Finished};
use kvm_bindings::{kvm_regs, kvm_segment, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::VcpuExit;
use kvmini::kvm::Kvm;
use kvmini::modes::CpuMode;
use kvmini::sandbox::{Ending, Sandbox, Unserved};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// The two kinds of 32-bit paging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging32 {
    /// Two-level, 4 MiB pages (CR4.PSE): what `--mode paged32` uses.
    NonPae,
    /// Three-level PAE, 2 MiB pages (CR4.PAE): what `--mode pae32` uses.
    Pae,
}

impl Paging32 {
    pub fn mode(self) -> CpuMode {
        match self {
            Paging32::NonPae => CpuMode::Paged32,
            Paging32::Pae => CpuMode::Pae32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Paging32::NonPae => "32-bit non-PAE paging",
            Paging32::Pae => "32-bit PAE paging",
        }
    }
}

/// Whether this host's KVM runs 32-bit code under `paging`: a VM built here
/// with kvm-ioctls alone (no kvmini code), 4 MiB of memory, an identity
/// map of the first 4 MiB (non-PAE) or 2 MiB (PAE) with one large page,
/// flat 32-bit segments, and two instructions at 0: `nop; hlt`. `true` when
/// it halts, `false` when KVM ends it with `KVM_EXIT_SHUTDOWN`; anything
/// else fails the test.
pub fn host_runs(kvm: &Kvm, paging: Paging32) -> bool {
    pub const SIZE: usize = 4 << 20;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), SIZE)]).expect("4 MiB");
    mem.write_slice(&[0x90, 0xF4], GuestAddress(0)) // nop; hlt
        .expect("code");
    let (cr3, cr4) = match paging {
        Paging32::NonPae => {
            // Page directory at 0x1000: entry 0 = a 4 MiB page at 0 (P, RW, PS).
            mem.write_obj(0x83u32, GuestAddress(0x1000)).expect("PD");
            (0x1000, 1 << 4) // CR4.PSE
        }
        Paging32::Pae => {
            // PDPT at 0x1000 -> page directory at 0x2000: entry 0 = a
            // 2 MiB page at 0 (P, RW, PS).
            mem.write_obj(0x2001u64, GuestAddress(0x1000))
                .expect("PDPT");
            mem.write_obj(0x83u64, GuestAddress(0x2000)).expect("PD");
            (0x1000, 1 << 5) // CR4.PAE
        }
    };
    let handle = kvm.handle();
    let vm = handle.create_vm().expect("probe VM");
    let host = mem.get_host_address(GuestAddress(0)).expect("host address") as u64;
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: SIZE as u64,
        userspace_addr: host,
    };
    // SAFETY: the region is `mem`'s one mapping, which lives until the end
    // of this function, after `vm` (declared later, so dropped first).
    unsafe { vm.set_user_memory_region(region) }.expect("probe memory");
    let mut vcpu = vm.create_vcpu(0).expect("probe vCPU");
    let cpuid = handle
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .expect("supported CPUID");
    vcpu.set_cpuid2(&cpuid).expect("probe CPUID");
    let mut sregs = vcpu.get_sregs().expect("probe sregs");
    let flat = |selector, type_| kvm_segment {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    sregs.cs = flat(0x08, 0xB);
    sregs.ds = flat(0x10, 0x3);
    sregs.es = sregs.ds;
    sregs.ss = sregs.ds;
    sregs.cr3 = cr3;
    sregs.cr4 = cr4;
    sregs.cr0 = (1 << 31) | (1 << 4) | 1; // PG, ET, PE
    sregs.efer = 0;
    vcpu.set_sregs(&sregs).expect("probe sregs");
    vcpu.set_regs(&kvm_regs {
        rip: 0,
        rsp: 0x3000,
        rflags: 2,
        ..Default::default()
    })
    .expect("probe regs");
    match vcpu.run() {
        Ok(VcpuExit::Hlt) => true,
        Ok(VcpuExit::Shutdown) => false,
        other => panic!("the {} probe ended with {other:?}", paging.name()),
    }
}

/// `host_runs`, or `None` (skipped) without KVM.
pub fn probe(paging: Paging32) -> Option<bool> {
    let kvm = kvm_or_skip()?;
    let runs = host_runs(&kvm, paging);
    if !runs {
        eprintln!(
            "note: this host's KVM refuses {} (a probe on kvm-ioctls got KVM_EXIT_SHUTDOWN): \
             expecting kvmini to report that refusal, status 126; the 32-bit walks are \
             checked without KVM by arch::x86_64::boot::tests::display_walks_the_32_bit_tables_kvmini_writes",
            paging.name()
        );
    }
    Some(runs)
}

/// Runs the flat `image` in `mode` through the library.
pub fn run_mode(kvm: &Kvm, mode: CpuMode, image: &[u8]) -> Finished {
    run_config(kvm, Sandbox::builder().flat(image).mode(mode))
}

/// Checks that kvmini reported the host's refusal of `mode`: the first and
/// only exit a shutdown, nothing printed, status 126.
pub fn assert_refused(run: &Finished, mode: CpuMode) {
    assert_eq!(
        run.outcome.ending,
        Ending::Unserved(Unserved::ModeRefused(mode))
    );
    assert_eq!(run.outcome.ending.status(), 126);
    assert_eq!(run.stdout, b"");
    assert_eq!(
        (run.outcome.stats.exits, run.outcome.stats.other_exits),
        (1, 1)
    );
}
