//! What makes a change to a page-table entry, made by the host between
//! two runs of the vCPU, take effect for a ring-3 long-mode guest on this
//! host. A tiny guest writes to one 4 KiB page and exits; the host then
//! takes write access (or presence) away in the entry that maps it, by
//! one of several methods, and runs the guest again: it either writes
//! again (the change did not take effect) or faults into kvmini's
//! exception handler (it did).
//!
//! Methods: a plain store through the host's mapping of guest memory; the
//! store then deleting and re-adding the memory slot; the store then
//! `KVM_SET_SREGS` with the same registers; a ring-0 helper in guest
//! memory that stores the entry and executes `invlpg` itself. kvmini
//! relies on the store plus re-adding the slot (docs/kvm-pvm.md), so that
//! method must work on every host; what the others do here is asserted
//! only on kvm-pvm, where it was measured, so that a change in that host
//! shows up. The cost of each method is printed (docs/performance.md
//! has the figures).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::time::{Duration, Instant};

use common::kvm_or_skip;
use kvm_bindings::kvm_userspace_memory_region;
use kvmini::arch::x86_64::bits::{PTE_P, PTE_RW};
use kvmini::arch::x86_64::boot::{self, BootSpec};
use kvmini::cpu::{self, Ring};
use kvmini::kvm::Kvm;
use kvmini::layout::Layout;
use kvmini::memory;
use kvmini::modes::CpuMode;
use kvmini::vcpu::{Exit, Vcpu};
use kvmini::vm::Vm;
use kvmini_abi::Port;
use vm_memory::{Bytes, GuestAddress};

const MEM: u64 = 8 << 20;
const CODE: u64 = 0x10_0000;
/// The page the guest writes to: in the first 2 MiB, which kvmini maps
/// with 4 KiB pages (the null page is left out).
const TARGET: u64 = 0x18_0000;
/// Where the ring-0 helper sits.
const HELPER: u64 = 0x1F_0000;
/// The guest's "I wrote" port, and the helper's "done" port: ports no
/// hypercall owns.
const WROTE: u16 = 0x0500;
const HELPED: u16 = 0x0501;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    PlainStore,
    ReAddSlot,
    SetSregs,
    Ring0Helper,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    ReadOnly,
    NotPresent,
}

/// What the guest's next write did after the change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// It wrote again: the change did not take effect.
    Ignored,
    /// It faulted with this page-fault error code.
    Faulted(u64),
}

/// The guest: `mov byte [TARGET], 1; mov dx, WROTE; out dx, al; jmp back`.
fn guest_code() -> Vec<u8> {
    let mut code = vec![0xC6, 0x04, 0x25];
    code.extend_from_slice(&u32::try_from(TARGET).unwrap().to_le_bytes());
    code.push(0x01);
    code.extend_from_slice(&[0x66, 0xBA]);
    code.extend_from_slice(&WROTE.to_le_bytes());
    code.push(0xEE);
    let back = -i8::try_from(code.len() + 2).unwrap();
    code.extend_from_slice(&[0xEB, back.to_le_bytes()[0]]);
    code
}

/// The ring-0 helper: stores `entry` at `entry_gva`, `invlpg [TARGET]`,
/// reports on `HELPED`.
fn helper_code(entry_gva: u64, entry: u64) -> Vec<u8> {
    let mut code = vec![0x48, 0xB8];
    code.extend_from_slice(&entry.to_le_bytes());
    code.extend_from_slice(&[0x48, 0xBF]);
    code.extend_from_slice(&entry_gva.to_le_bytes());
    code.extend_from_slice(&[0x48, 0x89, 0x07]); // mov [rdi], rax
    code.extend_from_slice(&[0x48, 0xBE]);
    code.extend_from_slice(&TARGET.to_le_bytes());
    code.extend_from_slice(&[0x0F, 0x01, 0x3E]); // invlpg [rsi]
    code.extend_from_slice(&[0x66, 0xBA]);
    code.extend_from_slice(&HELPED.to_le_bytes());
    code.push(0xEE);
    code
}

struct Probe {
    vm: Vm,
    vcpu: Vcpu,
    layout: Layout,
}

impl Probe {
    fn new(kvm: &Kvm) -> Self {
        let layout = Layout::new(MEM);
        let mem = memory::allocate(MEM).unwrap();
        let boot = boot::boot_state(
            &layout,
            &BootSpec {
                mode: CpuMode::Long,
                ring: Ring::Three,
                flat: false,
                entry: CODE,
                fsgsbase: cpu::has_fsgsbase(kvm.supported_cpuid()),
                syscall_entry: None,
            },
        );
        boot.tables.write_to(&mem).unwrap();
        mem.write_slice(&guest_code(), GuestAddress(CODE)).unwrap();
        let vm = Vm::new(kvm, mem).unwrap();
        let vcpu = vm.create_vcpu(kvm, &boot).unwrap();
        Probe { vm, vcpu, layout }
    }

    /// The guest-physical (and virtual) address of TARGET's entry.
    fn entry_gpa(&self) -> u64 {
        self.layout.pt_low() + (TARGET >> 12) * 8
    }

    fn entry(&self) -> u64 {
        self.vm
            .memory()
            .read_obj(GuestAddress(self.entry_gpa()))
            .unwrap()
    }

    fn store_entry(&self, entry: u64) {
        self.vm
            .memory()
            .write_obj(entry, GuestAddress(self.entry_gpa()))
            .unwrap();
    }

    /// Runs to the next exit that is not an interruption.
    fn run(&mut self) -> Exit {
        loop {
            match self.vcpu.run().unwrap() {
                Exit::Interrupted => {}
                exit => return exit,
            }
        }
    }

    fn run_expecting_write(&mut self) {
        let exit = self.run();
        assert!(
            matches!(exit, Exit::IoOut { port: WROTE, .. }),
            "the guest should have written and exited on {WROTE:#x}: {exit:?}"
        );
    }

    fn re_add_slot(&self) {
        let mem = self.vm.memory();
        let host = memory::host_address(mem).unwrap();
        let mut region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: 0,
            userspace_addr: host,
        };
        // SAFETY: size 0 deletes slot 0; re-adding it describes the same
        // mapping, owned by `self.vm`, which outlives its VM descriptor.
        unsafe { self.vm.fd().set_user_memory_region(region) }.unwrap();
        region.memory_size = MEM;
        // SAFETY: as above.
        unsafe { self.vm.fd().set_user_memory_region(region) }.unwrap();
    }

    fn set_same_sregs(&mut self) {
        let sregs = self.vcpu.fd().get_sregs().unwrap();
        self.vcpu.fd().set_sregs(&sregs).unwrap();
    }

    /// Runs the ring-0 helper that stores `entry` and invalidates TARGET,
    /// then puts the ring-3 guest back where it was (past its `out`).
    fn ring0_store(&mut self, entry: u64) {
        let code = helper_code(self.entry_gpa(), entry);
        self.vm
            .memory()
            .write_slice(&code, GuestAddress(HELPER))
            .unwrap();
        let mut saved_regs = *self.vcpu.regs();
        let saved_sregs = self.vcpu.sregs().unwrap();
        // KVM advances RIP past an `out` at the next entry only when RIP
        // is unchanged by then; it will not be, so skip it here.
        if saved_regs.rip == CODE + 12 {
            saved_regs.rip += 1;
        }
        let mut regs = saved_regs;
        regs.rip = HELPER;
        regs.rsp = self.layout.exception_stack_top();
        regs.rflags = 0x2;
        let mut sregs = saved_sregs;
        let (cs, code_desc) = cpu::code_segment(Ring::Zero);
        let (ds, data_desc) = cpu::data_segment(Ring::Zero);
        sregs.cs = code_desc.segment(cs);
        sregs.ss = data_desc.segment(ds);
        self.vcpu.set_registers_on_entry(&regs, &sregs);
        let exit = self.run();
        assert!(
            matches!(exit, Exit::IoOut { port: HELPED, .. }),
            "the ring-0 helper should have reported: {exit:?}"
        );
        self.vcpu.set_registers_on_entry(&saved_regs, &saved_sregs);
    }

    /// Changes TARGET's entry to `entry` by `method`.
    fn apply(&mut self, method: Method, entry: u64) {
        match method {
            Method::PlainStore => self.store_entry(entry),
            Method::ReAddSlot => {
                self.store_entry(entry);
                self.re_add_slot();
            }
            Method::SetSregs => {
                self.store_entry(entry);
                self.set_same_sregs();
            }
            Method::Ring0Helper => self.ring0_store(entry),
        }
    }

    /// The page-fault error code kvmini's handler left in its frame.
    fn reported_error_code(&mut self) -> u64 {
        let rsp = self.vcpu.regs().rsp;
        let word = |i: u64| -> u64 {
            self.vm
                .memory()
                .read_obj(GuestAddress(rsp + i * 8))
                .unwrap()
        };
        assert_eq!(word(15), 14, "the vector of a page fault");
        word(16)
    }
}

/// Touches TARGET, applies `change` by `method`, and says what the next
/// write did.
fn probe(kvm: &Kvm, method: Method, change: Change) -> Effect {
    let mut p = Probe::new(kvm);
    p.run_expecting_write();
    let pristine = p.entry();
    assert_eq!(pristine & (PTE_P | PTE_RW), PTE_P | PTE_RW);
    let changed = match change {
        Change::ReadOnly => pristine & !PTE_RW,
        Change::NotPresent => pristine & !PTE_P,
    };
    p.apply(method, changed);
    match p.run() {
        Exit::IoOut { port: WROTE, .. } => Effect::Ignored,
        Exit::IoOut { port, .. } if port == Port::Exception as u16 => {
            Effect::Faulted(p.reported_error_code())
        }
        other => panic!("{method:?} {change:?}: unexpected exit {other:?}"),
    }
}

/// Mean time of `method` with an unchanged entry plus the run to the
/// guest's next exit, over `rounds`.
fn cost(kvm: &Kvm, method: Method, rounds: u32) -> Duration {
    let mut p = Probe::new(kvm);
    p.run_expecting_write();
    let entry = p.entry();
    let start = Instant::now();
    for _ in 0..rounds {
        p.apply(method, entry);
        p.run_expecting_write();
    }
    start.elapsed() / rounds
}

fn on_kvm_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// Page-fault error code bits: present, write, user.
const PF_P: u64 = 1;
const PF_W: u64 = 2;
const PF_U: u64 = 4;

#[test]
fn readding_the_memory_slot_makes_a_host_change_take_effect() {
    let Some(kvm) = kvm_or_skip() else { return };
    assert_eq!(
        probe(&kvm, Method::ReAddSlot, Change::ReadOnly),
        Effect::Faulted(PF_P | PF_W | PF_U),
        "kvmini relies on re-adding the slot to take write access away"
    );
    assert_eq!(
        probe(&kvm, Method::ReAddSlot, Change::NotPresent),
        Effect::Faulted(PF_W | PF_U),
        "kvmini relies on re-adding the slot to take a page away"
    );
}

#[test]
fn what_each_method_does_on_this_host() {
    let Some(kvm) = kvm_or_skip() else { return };
    let methods = [
        Method::PlainStore,
        Method::ReAddSlot,
        Method::SetSregs,
        Method::Ring0Helper,
    ];
    let mut seen = Vec::new();
    for method in methods {
        for change in [Change::ReadOnly, Change::NotPresent] {
            let effect = probe(&kvm, method, change);
            println!("{method:?} {change:?}: {effect:?}");
            seen.push((method, change, effect));
        }
    }
    let rounds = 200;
    let baseline = {
        let mut p = Probe::new(&kvm);
        p.run_expecting_write();
        let start = Instant::now();
        for _ in 0..rounds {
            p.run_expecting_write();
        }
        start.elapsed() / rounds
    };
    println!("run to the next exit alone: {baseline:?}");
    for method in methods {
        println!(
            "{method:?} and the run to the next exit: {:?}",
            cost(&kvm, method, rounds)
        );
    }
    if !on_kvm_pvm() {
        println!("not kvm-pvm: only the slot method is asserted (the other test)");
        return;
    }
    // Measured on kvm-pvm: shadow paging keeps the translation it built
    // from the entry as it was until KVM itself learns of the change.
    let faulted_ro = Effect::Faulted(PF_P | PF_W | PF_U);
    let faulted_np = Effect::Faulted(PF_W | PF_U);
    assert_eq!(
        seen,
        vec![
            (Method::PlainStore, Change::ReadOnly, Effect::Ignored),
            (Method::PlainStore, Change::NotPresent, Effect::Ignored),
            (Method::ReAddSlot, Change::ReadOnly, faulted_ro),
            (Method::ReAddSlot, Change::NotPresent, faulted_np),
            (Method::SetSregs, Change::ReadOnly, Effect::Ignored),
            (Method::SetSregs, Change::NotPresent, Effect::Ignored),
            (Method::Ring0Helper, Change::ReadOnly, faulted_ro),
            (Method::Ring0Helper, Change::NotPresent, faulted_np),
        ]
    );
}
