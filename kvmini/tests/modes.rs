//! The classic CPU modes (`--mode`): the built-in flat hello of each mode,
//! the `display` hypercall from 16- and 32-bit code, `--verbose`'s
//! register setup, and the refusals.
//!
//! Some hosts' KVM cannot run 32-bit paging: nested KVM through kvm-pvm
//! ends such a guest with `KVM_EXIT_SHUTDOWN` before its first
//! instruction. To tell that from a kvmini bug, a probe here builds a tiny
//! VM of its own with kvm-ioctls, without kvmini, and runs two
//! instructions under the same kind of paging. When the probe gets a
//! shutdown, the test checks that kvmini reports the refusal instead.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::{assert_hello, by_hypercall, kvm_or_skip, run_config, Finished};
use kvm_bindings::{kvm_regs, kvm_segment, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::VcpuExit;
use kvmini::cpu::Ring;
use kvmini::guests;
use kvmini::kvm::Kvm;
use kvmini::layout::Layout;
use kvmini::memory::MEM_DEFAULT;
use kvmini::modes::{self, CpuMode};
use kvmini::sandbox::{Ending, Sandbox, Unserved};
use kvmini_abi::Port;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// The layout of every guest here (default memory size).
const LAYOUT: Layout = Layout::new(MEM_DEFAULT);

/// The two kinds of 32-bit paging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Paging32 {
    /// Two-level, 4 MiB pages (CR4.PSE): what `--mode paged32` uses.
    NonPae,
    /// Three-level PAE, 2 MiB pages (CR4.PAE): what `--mode pae32` uses.
    Pae,
}

impl Paging32 {
    fn mode(self) -> CpuMode {
        match self {
            Paging32::NonPae => CpuMode::Paged32,
            Paging32::Pae => CpuMode::Pae32,
        }
    }

    fn name(self) -> &'static str {
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
fn host_runs(kvm: &Kvm, paging: Paging32) -> bool {
    const SIZE: usize = 4 << 20;
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
fn probe(paging: Paging32) -> Option<bool> {
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
fn run_mode(kvm: &Kvm, mode: CpuMode, image: &[u8]) -> Finished {
    run_config(kvm, Sandbox::builder().flat(image).mode(mode))
}

/// Checks that kvmini reported the host's refusal of `mode`: the first and
/// only exit a shutdown, nothing printed, status 126.
fn assert_refused(run: &Finished, mode: CpuMode) {
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

#[test]
fn real_mode_hello() {
    let Some(kvm) = kvm_or_skip() else { return };
    let run = run_mode(&kvm, CpuMode::Real, guests::HELLO_REAL);
    assert_eq!(run.sandbox.mode(), CpuMode::Real);
    assert_eq!(run.sandbox.ring(), Ring::Zero);
    assert_hello(&run, guests::HELLO_REAL);
}

#[test]
fn protected_mode_hello() {
    let Some(kvm) = kvm_or_skip() else { return };
    let run = run_mode(&kvm, CpuMode::Protected, guests::HELLO_32);
    assert_eq!(run.sandbox.mode(), CpuMode::Protected);
    assert_hello(&run, guests::HELLO_32);
}

#[test]
fn refusal_message_names_the_mode_and_the_cause_but_no_option() {
    assert_eq!(
        modes::refusal_message(CpuMode::Paged32),
        "this host's KVM refused to run paged32 mode (32-bit protected mode with two-level \
         (non-PAE) paging): KVM_EXIT_SHUTDOWN before the first instruction completed \
         (0 exits served)"
    );
    assert_eq!(
        modes::refusal_message(CpuMode::Pae32),
        "this host's KVM refused to run pae32 mode (32-bit protected mode with PAE paging): \
         KVM_EXIT_SHUTDOWN before the first instruction completed (0 exits served)"
    );
    assert_eq!(
        Unserved::ModeRefused(CpuMode::Paged32).to_string(),
        modes::refusal_message(CpuMode::Paged32)
    );
}

/// `mov dx, 0x402` (display), then `display(address)` for each address,
/// then `hlt`; 32-bit code.
fn display_32(addresses: &[u32]) -> Vec<u8> {
    let mut code = vec![0x66, 0xBA, 0x02, 0x04]; // mov dx, 0x402
    for address in addresses {
        code.push(0xB8); // mov eax, address
        code.extend_from_slice(&address.to_le_bytes());
        code.push(0xEF); // out dx, eax
    }
    code.push(0xF4); // hlt
    code
}

/// Where a string appended to `code` at `at` (or the end) will be.
fn string_at(code: &mut Vec<u8>, at: usize, s: &[u8]) -> u32 {
    code.resize(code.len().max(at), 0x90);
    code.extend_from_slice(s);
    u32::try_from(at).expect("small image")
}

#[test]
fn display_from_protected_mode_is_identity() {
    let Some(kvm) = kvm_or_skip() else { return };
    // The code's length does not depend on the addresses in it.
    let len = display_32(&[0, 0]).len();
    let end = u32::try_from(MEM_DEFAULT).expect("64 MiB fits");
    let mut code = display_32(&[u32::try_from(len).expect("small"), end]);
    string_at(&mut code, len, b"32-bit, no paging\n\0");
    let run = run_mode(&kvm, CpuMode::Protected, &code);
    assert_eq!(run.stdout_text(), "32-bit, no paging\n");
    assert_eq!(
        run.warnings_text(),
        "kvmini: display(0x4000000) ignored: address 0x4000000 maps to 0x4000000, outside guest memory\n"
    );
    assert_eq!(run.outcome.ending, Ending::Halted);
    assert_eq!(
        run.outcome.stats.by_hypercall,
        by_hypercall(&[(Port::Display, 2)])
    );
    assert_eq!(run.outcome.stats.exits, 3);
}

#[test]
fn display_from_real_mode_takes_a_linear_address() {
    let Some(kvm) = kvm_or_skip() else { return };
    // 16-bit code: the 32-bit operand-size prefix (0x66) for the address.
    #[rustfmt::skip]
    let mut code = vec![
        0xBA, 0x02, 0x04,                         // mov dx, 0x402
        0x66, 0xB8, 0x00, 0x00, 0x00, 0x00,       // mov eax, (the string)
        0x66, 0xEF,                               // out dx, eax
        0xF4,                                     // hlt
    ];
    let at = string_at(&mut code, 0x20, b"16-bit\n\0");
    code[5..9].copy_from_slice(&at.to_le_bytes());
    let run = run_mode(&kvm, CpuMode::Real, &code);
    assert_eq!(run.stdout_text(), "16-bit\n");
    assert_eq!(run.warnings_text(), "");
    assert_eq!(run.outcome.ending, Ending::Halted);
    assert_eq!(run.outcome.stats.exits, 2);
}

/// A paged 32-bit guest that maps virtual 200 MiB (0x0C80_0000) to
/// physical 0 with one large page in kvmini's own directory, reloads CR3,
/// and displays its string through both addresses: the second goes
/// through the page walk, not through the identity map.
fn remapping_display(paging: Paging32) -> (Vec<u8>, &'static str) {
    const VIRTUAL: u32 = 0x0C80_0000;
    let pde = match paging {
        // One 4-byte entry per 4 MiB in the page directory at CR3.
        Paging32::NonPae => LAYOUT.pml4() + u64::from(VIRTUAL >> 22) * 4,
        // One 8-byte entry per 2 MiB in the first GiB's page directory.
        Paging32::Pae => LAYOUT.pd(0) + u64::from(VIRTUAL >> 21) * 8,
    };
    let pde = u32::try_from(pde).expect("below 4 GiB");
    let mut code = vec![0xC7, 0x05]; // mov dword [pde], 0x83 (P, RW, PS; base 0)
    code.extend_from_slice(&pde.to_le_bytes());
    code.extend_from_slice(&0x83u32.to_le_bytes());
    code.extend_from_slice(&[0x0F, 0x20, 0xD8]); // mov eax, cr3
    code.extend_from_slice(&[0x0F, 0x22, 0xD8]); // mov cr3, eax (flush the TLB)
    let text = "through the page tables\n";
    let at = 0x40;
    code.extend_from_slice(&display_32(&[at, VIRTUAL + at]));
    let mut terminated = text.as_bytes().to_vec();
    terminated.push(0);
    string_at(&mut code, at as usize, &terminated);
    (code, text)
}

fn paged_display(paging: Paging32) {
    let Some(host_runs) = probe(paging) else {
        return;
    };
    let Some(kvm) = kvm_or_skip() else { return };
    let (code, text) = remapping_display(paging);
    let run = run_mode(&kvm, paging.mode(), &code);
    if !host_runs {
        assert_refused(&run, paging.mode());
        return;
    }
    assert_eq!(run.stdout_text(), text.repeat(2));
    assert_eq!(run.warnings_text(), "");
    assert_eq!(run.outcome.ending, Ending::Halted);
    assert_eq!(
        run.outcome.stats.by_hypercall,
        by_hypercall(&[(Port::Display, 2)])
    );
}

#[test]
fn display_from_pae32_walks_the_pae_tables() {
    paged_display(Paging32::Pae);
}

#[test]
fn display_from_paged32_walks_the_two_level_tables() {
    paged_display(Paging32::NonPae);
}

#[test]
fn real_mode_exceptions_vector_through_the_image() {
    let Some(kvm) = kvm_or_skip() else { return };
    // Vector 6 (invalid opcode) at 6 * 4 = 0x18: segment 0, offset 0x40.
    let mut code = vec![0x0F, 0x0B]; // ud2
    code.resize(0x18, 0x90);
    code.extend_from_slice(&[0x40, 0x00, 0x00, 0x00]); // 0000:0040
    code.resize(0x40, 0x90);
    #[rustfmt::skip]
    code.extend_from_slice(&[
        0xB0, b'E',       // mov al, 'E'
        0xE6, 0xE9,       // out 0xE9, al
        0xF4,             // hlt
    ]);
    let run = run_mode(&kvm, CpuMode::Real, &code);
    assert_eq!(run.stdout_text(), "E");
    assert_eq!(run.outcome.ending, Ending::Halted);
    assert_eq!(run.outcome.stats.exits, 2);
    // The CPU pushed FLAGS, CS and IP (the `ud2`'s own address) on the
    // stack at 0:0x7000.
    let ip: u16 = run
        .sandbox
        .memory()
        .expect("the sandbox has its VM")
        .read_obj(GuestAddress(modes::REAL_MODE_STACK - 6))
        .expect("the stack is guest memory");
    assert_eq!(ip, 0);
}

#[test]
fn a_32_bit_exception_is_a_triple_fault() {
    let Some(kvm) = kvm_or_skip() else { return };
    let run = run_mode(&kvm, CpuMode::Protected, &[0x0F, 0x0B]); // ud2
    assert_eq!(run.outcome.ending, Ending::Unserved(Unserved::Shutdown));
    assert_eq!(run.outcome.ending.status(), 126);
    assert_eq!(run.outcome.stats.exits, 1);
}
