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

use common::modes::{assert_refused, probe, run_mode, Paging32};
use common::{assert_hello, by_hypercall, kvm_or_skip};
use kvmini::cpu::Ring;
use kvmini::guests;
use kvmini::layout::Layout;
use kvmini::memory::MEM_DEFAULT;
use kvmini::modes::{self, CpuMode};
use kvmini::sandbox::{Ending, Unserved};
use kvmini_abi::Port;
use vm_memory::{Bytes, GuestAddress};

/// The layout of every guest here (default memory size).
const LAYOUT: Layout = Layout::new(MEM_DEFAULT);

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
