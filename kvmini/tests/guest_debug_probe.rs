//! What this host's KVM does with `KVM_SET_GUEST_DEBUG`, measured on
//! hand-assembled flat images at ring 3 (run natively under kvm-pvm) and
//! at ring 0 (emulated there): single steps, `int3` as a software
//! breakpoint, a hardware breakpoint on execution and a data watchpoint;
//! and kvmini's own single steps and breakpoints at ring 3, which serve
//! where KVM does not. The summary is in docs/kvm-pvm.md ("Debug events");
//! each test asserts what this host does and says so in its output, so a
//! host that behaves otherwise fails here by name.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::kvm_or_skip;
use kvmini::cpu::Ring;
use kvmini::layout::Layout;
use kvmini::memory::MEM_DEFAULT;
use kvmini::sandbox::{Crash, Ending, GuestDebug, Image, Outcome, Sandbox, Watch};
use vm_memory::{Bytes, GuestAddress};

/// Where the images write, for the watchpoint.
const DATA: u64 = 0x800;

/// Two `nop`s, an `int3`, a store to [`DATA`], `hlt`.
#[rustfmt::skip]
const WITH_INT3: &[u8] = &[
    0x90,                   // 0: nop
    0x90,                   // 1: nop
    0xCC,                   // 2: int3
    0x48, 0xC7, 0x04, 0x25, 0x00, 0x08, 0x00, 0x00,
    0x2A, 0x00, 0x00, 0x00, // 3: mov qword [0x800], 42
    0xF4,                   // 15: hlt
];

/// The same with a third `nop` for the `int3`.
#[rustfmt::skip]
const PLAIN: &[u8] = &[
    0x90, 0x90, 0x90,       // 0: nop; nop; nop
    0x48, 0xC7, 0x04, 0x25, 0x00, 0x08, 0x00, 0x00,
    0x2A, 0x00, 0x00, 0x00, // 3: mov qword [0x800], 42
    0xF4,                   // 15: hlt
];

/// The address of the store, and of the `hlt` after it.
const STORE: u64 = 3;
const HLT: u64 = 15;

/// `hlt` at ring 3: a #GP, which kvmini's handler reports.
fn gp_at_hlt() -> Ending {
    Ending::Crashed(Crash {
        vector: 13,
        rip: HLT,
        rsp: Layout::new(MEM_DEFAULT).stack_top(),
        ring: 3,
        ..Crash::default()
    })
}

/// `int3` at ring 3 without a debugger: a #BP, reported after it.
fn bp_crash() -> Ending {
    Ending::Crashed(Crash {
        vector: 3,
        rip: STORE,
        rsp: Layout::new(MEM_DEFAULT).stack_top(),
        ring: 3,
        ..Crash::default()
    })
}

/// KVM's instruction emulator cannot run `int3` at ring 0 on kvm-pvm.
fn emulation_failure() -> Ending {
    Ending::Unserved(kvmini::sandbox::Unserved::InternalError {
        suberror: 1,
        ring: 0,
    })
}

fn build(kvm: &kvmini::kvm::Kvm, image: &[u8], ring: Ring, debug: GuestDebug) -> Sandbox {
    let mut sandbox = Sandbox::builder()
        .image(Image::Flat(image.to_vec()))
        .ring(ring)
        .build(kvm)
        .unwrap();
    sandbox.set_guest_debug(debug).unwrap();
    sandbox
}

/// One run: its outcome, and the debug event (vector, address, DR6's
/// breakpoint and single-step bits) if one stopped it.
fn run(sandbox: &mut Sandbox) -> (Outcome, Option<(u32, u64, u64)>) {
    let outcome = sandbox.run().unwrap();
    let event = sandbox
        .debug_event()
        .map(|e| (e.exception, e.pc, e.dr6 & 0x400f));
    (outcome, event)
}

fn stored(sandbox: &Sandbox) -> u64 {
    sandbox
        .memory()
        .unwrap()
        .read_obj::<u64>(GuestAddress(DATA))
        .unwrap()
}

fn single_step() -> GuestDebug {
    GuestDebug {
        single_step: true,
        ..GuestDebug::default()
    }
}

fn hardware(addr: u64, watch: Watch) -> GuestDebug {
    let mut debug = GuestDebug::default();
    debug.hardware[0] = Some((addr, watch));
    debug
}

const SIGTRAP: Ending = Ending::Stopped(libc::SIGTRAP);
const DB: u32 = 1;
const BS: u64 = 0x4000;

#[test]
fn ring_0_kvm_single_steps_each_instruction() {
    let Some(kvm) = kvm_or_skip() else { return };
    let mut sandbox = build(&kvm, PLAIN, Ring::Zero, single_step());
    for rip in [1, 2, STORE, HLT] {
        let (outcome, event) = run(&mut sandbox);
        assert_eq!(outcome.ending, SIGTRAP);
        assert_eq!(event, Some((DB, rip, BS)));
        assert_eq!(sandbox.registers().unwrap().rip, rip);
    }
    assert_eq!(stored(&sandbox), 42);
    println!("this host: KVM single-steps ring-0 code");
}

#[test]
fn ring_0_kvm_hardware_breakpoint_on_execution_fires() {
    let Some(kvm) = kvm_or_skip() else { return };
    let mut sandbox = build(&kvm, PLAIN, Ring::Zero, hardware(STORE, Watch::Execute));
    let (outcome, event) = run(&mut sandbox);
    assert_eq!(outcome.ending, SIGTRAP);
    assert_eq!(event, Some((DB, STORE, 0x1)));
    assert_eq!(stored(&sandbox), 0, "stopped before the store");
    println!("this host: a KVM hardware breakpoint on execution fires at ring 0");
}

#[test]
fn ring_0_kvm_int3_is_an_emulation_failure_with_or_without_software_breakpoints() {
    let Some(kvm) = kvm_or_skip() else { return };
    for software_breakpoints in [false, true] {
        let debug = GuestDebug {
            software_breakpoints,
            ..GuestDebug::default()
        };
        let mut sandbox = build(&kvm, WITH_INT3, Ring::Zero, debug);
        let (outcome, event) = run(&mut sandbox);
        assert_eq!(outcome.ending, emulation_failure());
        assert_eq!((event, outcome.regs.rip), (None, 2));
    }
    println!("this host: int3 at ring 0 is an emulation failure; KVM_GUESTDBG_USE_SW_BP does not change it");
}

#[test]
fn ring_0_kvm_data_watchpoint_does_not_fire() {
    let Some(kvm) = kvm_or_skip() else { return };
    let mut sandbox = build(&kvm, PLAIN, Ring::Zero, hardware(DATA, Watch::Write(8)));
    let (outcome, event) = run(&mut sandbox);
    assert_eq!((outcome.ending, event), (Ending::Halted, None));
    assert_eq!(stored(&sandbox), 42);
    println!("this host: a KVM data watchpoint does not fire at ring 0");
}

#[test]
fn ring_3_kvm_single_step_lands_in_kvminis_handler_not_in_the_guest() {
    let Some(kvm) = kvm_or_skip() else { return };
    let debug = GuestDebug {
        kvm_single_step: true,
        ..single_step()
    };
    let mut sandbox = build(&kvm, WITH_INT3, Ring::Three, debug);
    let (outcome, event) = run(&mut sandbox);
    // The ring-3 instructions ran without a step up to the `int3`; the
    // first step KVM reports is the second instruction of kvmini's #BP
    // stub (16 bytes a vector), emulated at ring 0.
    let handlers = Layout::new(MEM_DEFAULT).handlers();
    let in_bp_stub = handlers + 3 * 16 + 2;
    assert_eq!(outcome.ending, SIGTRAP);
    assert_eq!(event, Some((DB, in_bp_stub, BS)));
    println!(
        "this host: KVM single steps skip ring-3 code (first step inside kvmini's #BP handler)"
    );
}

#[test]
fn ring_3_kvm_breakpoints_and_watchpoints_do_not_fire() {
    let Some(kvm) = kvm_or_skip() else { return };
    let software = GuestDebug {
        software_breakpoints: true,
        ..GuestDebug::default()
    };
    // Even with kvmini's own handlers taking #BP as a debug stop, KVM
    // intercepts nothing: the event is kvmini's (DR6 0), not KVM's.
    let mut sandbox = build(&kvm, WITH_INT3, Ring::Three, software);
    let (outcome, event) = run(&mut sandbox);
    assert_eq!((outcome.ending, event), (SIGTRAP, Some((3, 2, 0))));
    for debug in [
        hardware(STORE, Watch::Execute),
        hardware(DATA, Watch::Write(8)),
    ] {
        let mut sandbox = build(&kvm, PLAIN, Ring::Three, debug);
        let (outcome, event) = run(&mut sandbox);
        assert_eq!((outcome.ending, event), (gp_at_hlt(), None), "{debug:?}");
        assert_eq!(stored(&sandbox), 42);
    }
    println!("this host: no KVM breakpoint or watchpoint fires at ring 3");
}

#[test]
fn ring_3_without_a_debugger_int3_is_a_crash() {
    let Some(kvm) = kvm_or_skip() else { return };
    let mut sandbox = build(&kvm, WITH_INT3, Ring::Three, GuestDebug::default());
    let (outcome, event) = run(&mut sandbox);
    assert_eq!((outcome.ending, event), (bp_crash(), None));
}

#[test]
fn ring_3_kvminis_own_single_steps_and_breakpoints() {
    let Some(kvm) = kvm_or_skip() else { return };
    let mut sandbox = build(&kvm, WITH_INT3, Ring::Three, single_step());
    for rip in [1, 2] {
        let (outcome, event) = run(&mut sandbox);
        assert_eq!((outcome.ending, event), (SIGTRAP, Some((DB, rip, 0))));
        let regs = sandbox.registers().unwrap();
        assert_eq!((regs.rip, regs.rflags & 0x100), (rip, 0));
        assert_eq!(outcome.regs, regs);
        assert_eq!(sandbox.system_registers().unwrap().cs.dpl, 3);
    }
    // The `int3`: its #BP stops the run, named at the `int3`, RIP after it.
    let (outcome, event) = run(&mut sandbox);
    assert_eq!((outcome.ending, event), (SIGTRAP, Some((3, 2, 0))));
    assert_eq!(sandbox.registers().unwrap().rip, STORE);
    // Going on without steps runs the store and the `hlt`.
    sandbox.set_guest_debug(GuestDebug::default()).unwrap();
    let (outcome, event) = run(&mut sandbox);
    assert_eq!((outcome.ending, event), (gp_at_hlt(), None));
    assert_eq!(stored(&sandbox), 42);
    println!("kvmini's own handlers single-step and stop at int3 at ring 3");
}
