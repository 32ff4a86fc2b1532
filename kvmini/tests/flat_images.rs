//! Hand-assembled flat images: loaded at guest physical 0, entered at 0 in
//! long mode, identity-mapped with the null page mapped, at ring 0 unless
//! the test asks for ring 3. Each image's assembly is in the comments.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::{assert_hello, by_hypercall, kvm_or_skip, run_image, Finished};
use kvmini::cpu::Ring;
use kvmini::layout::Layout;
use kvmini::memory::MEM_DEFAULT;
use kvmini::sandbox::{Crash, Ending, Image, Unserved};
use kvmini_abi::{Direction, Port};

/// The layout of every guest here (default memory size).
const LAYOUT: Layout = Layout::new(MEM_DEFAULT);

fn run_flat(code: &[u8], ring: Option<Ring>) -> Option<Finished> {
    let kvm = kvm_or_skip()?;
    Some(run_image(&kvm, Image::Flat(code.to_vec()), ring))
}

/// `movabs rax, imm64`.
fn movabs_rax(imm: u64) -> Vec<u8> {
    let mut code = vec![0x48, 0xB8];
    code.extend_from_slice(&imm.to_le_bytes());
    code
}

/// The classic KVM hello world.
#[rustfmt::skip]
const HELLO: &[u8] = &[
    0x66, 0xBA, 0xE9, 0x00, // mov dx, 0xE9
    0xB0, b'H', 0xEE,       // mov al, 'H'; out dx, al
    0xB0, b'e', 0xEE,       // mov al, 'e'; out dx, al
    0xB0, b'l', 0xEE,       // mov al, 'l'; out dx, al
    0xB0, b'l', 0xEE,       // mov al, 'l'; out dx, al
    0xB0, b'o', 0xEE,       // mov al, 'o'; out dx, al
    0xB0, b',', 0xEE,       // mov al, ','; out dx, al
    0xB0, b' ', 0xEE,       // mov al, ' '; out dx, al
    0xB0, b'w', 0xEE,       // mov al, 'w'; out dx, al
    0xB0, b'o', 0xEE,       // mov al, 'o'; out dx, al
    0xB0, b'r', 0xEE,       // mov al, 'r'; out dx, al
    0xB0, b'l', 0xEE,       // mov al, 'l'; out dx, al
    0xB0, b'd', 0xEE,       // mov al, 'd'; out dx, al
    0xB0, b'!', 0xEE,       // mov al, '!'; out dx, al
    0xB0, b'\n', 0xEE,      // mov al, '\n'; out dx, al
    0x48, 0xC7, 0x04, 0x25, 0x00, 0x04, 0x00, 0x00,
    0x2A, 0x00, 0x00, 0x00, // mov qword [0x400], 42
    0xB8, 0x2A, 0x00, 0x00, 0x00, // mov eax, 42
    0xF4,                   // hlt
];

#[test]
fn classic_hello_at_ring_0() {
    let Some(run) = run_flat(HELLO, None) else {
        return;
    };
    assert_eq!(run.sandbox.ring(), Ring::Zero);
    assert_hello(&run, HELLO);
}

#[test]
fn get_num_exits_counts_the_current_exit() {
    #[rustfmt::skip]
    let code = [
        0x66, 0xBA, 0x01, 0x04, // mov dx, 0x401 (getNumExits)
        0xED,                   // in eax, dx      ; exit 1
        0x89, 0xC3,             // mov ebx, eax
        0xED,                   // in eax, dx      ; exit 2
        0x89, 0xC1,             // mov ecx, eax
        0x66, 0xBA, 0x00, 0x04, // mov dx, 0x400 (printVal)
        0x89, 0xD8,             // mov eax, ebx
        0xEF,                   // out dx, eax
        0x89, 0xC8,             // mov eax, ecx
        0xEF,                   // out dx, eax
        0xF4,                   // hlt
    ];
    let Some(run) = run_flat(&code, None) else {
        return;
    };
    assert_eq!(run.stdout_text(), "1\n2\n");
    assert_eq!(run.outcome.ending, Ending::Halted);
    assert_eq!(run.outcome.stats.exits, 5);
    assert_eq!(
        run.outcome.stats.by_hypercall,
        by_hypercall(&[(Port::GetNumExits, 2), (Port::PrintVal, 2)])
    );
}

/// Runs `code`, which must crash, and returns the crash.
fn crash_of(code: &[u8], ring: Option<Ring>) -> Option<(Crash, Finished)> {
    let run = run_flat(code, ring)?;
    let Ending::Crashed(crash) = &run.outcome.ending else {
        panic!(
            "expected a crash, got {:?} after printing {:?}",
            run.outcome.ending,
            run.stdout_text()
        );
    };
    assert_eq!(run.outcome.ending.status(), 126);
    assert_eq!(run.stdout, b"");
    // The only exit is the report from kvmini's exception handler.
    assert_eq!(run.outcome.stats.exits, 1);
    assert_eq!(
        run.outcome.stats.by_hypercall,
        by_hypercall(&[(Port::Exception, 1)])
    );
    Some((crash.clone(), run))
}

#[test]
fn ud2_is_an_invalid_opcode_crash() {
    #[rustfmt::skip]
    let code = [
        0x90,       // nop
        0x90,       // nop
        0x0F, 0x0B, // ud2
    ];
    let Some((crash, _)) = crash_of(&code, None) else {
        return;
    };
    assert_eq!(
        crash,
        Crash {
            vector: 6,
            error_code: 0,
            rip: 2,
            rsp: LAYOUT.stack_top(),
            ring: 0,
            cr2: 0,
            ..Default::default()
        }
    );
    assert_eq!(
        crash.to_string(),
        "guest crashed: invalid opcode at rip 0x2 (ring 0)"
    );
}

#[test]
fn write_beyond_memory_is_a_page_fault() {
    // 4 GiB: past the 64 MiB of guest memory, and not in the identity map.
    let mut code = movabs_rax(0x1_0000_0000); // movabs rax, 0x100000000
    code.extend_from_slice(&[0x88, 0x00]); // mov [rax], al
    let Some((crash, _)) = crash_of(&code, None) else {
        return;
    };
    assert_eq!(crash.vector, 14);
    assert_eq!(crash.cr2, 0x1_0000_0000);
    // Error code: write (bit 1), supervisor, page not present.
    assert_eq!(crash.error_code, 0x2);
    assert_eq!((crash.rip, crash.ring), (10, 0));
    assert_eq!(
        crash.to_string(),
        "guest crashed: page fault writing 0x100000000 (not mapped) at rip 0xa (ring 0)"
    );
}

#[test]
fn divide_by_zero_is_a_divide_error() {
    #[rustfmt::skip]
    let code = [
        0x31, 0xC9, // xor ecx, ecx
        0xF7, 0xF1, // div ecx
    ];
    let Some((crash, _)) = crash_of(&code, None) else {
        return;
    };
    assert_eq!(
        (crash.vector, crash.error_code, crash.rip, crash.ring),
        (0, 0, 2, 0)
    );
    assert_eq!(
        crash.to_string(),
        "guest crashed: divide error at rip 0x2 (ring 0)"
    );
}

#[test]
fn hlt_at_ring_3_is_a_general_protection_fault() {
    let code = [0xF4]; // hlt
    let Some((crash, run)) = crash_of(&code, Some(Ring::Three)) else {
        return;
    };
    assert_eq!(run.sandbox.ring(), Ring::Three);
    assert_eq!(
        crash,
        Crash {
            vector: 13,
            error_code: 0,
            rip: 0,
            rsp: LAYOUT.stack_top(),
            ring: 3,
            cr2: 0,
            ..Default::default()
        }
    );
    assert_eq!(
        crash.to_string(),
        "guest crashed: general protection fault at rip 0x0 (ring 3)"
    );
}

#[test]
fn ring_3_cannot_write_kvmini_gdt() {
    let gdt = LAYOUT.gdt();
    let mut code = movabs_rax(gdt); // movabs rax, gdt
    code.extend_from_slice(&[0xC6, 0x00, 0x00]); // mov byte [rax], 0
    let Some((crash, _)) = crash_of(&code, Some(Ring::Three)) else {
        return;
    };
    assert_eq!(crash.vector, 14);
    assert_eq!(crash.cr2, gdt);
    // Error code: present (bit 0), write (bit 1), user (bit 2).
    assert_eq!(crash.error_code, 0x7);
    assert_eq!((crash.rip, crash.ring), (10, 3));
    assert_eq!(
        crash.to_string(),
        format!("guest crashed: page fault writing {gdt:#x} (not allowed) at rip 0xa (ring 3)")
    );
}

/// Runs `code`, which must stop on an exit kvmini does not serve.
fn unserved_of(code: &[u8]) -> Option<(Unserved, Finished)> {
    let run = run_flat(code, None)?;
    let Ending::Unserved(what) = &run.outcome.ending else {
        panic!(
            "expected an unserved exit, got {:?} after printing {:?}",
            run.outcome.ending,
            run.stdout_text()
        );
    };
    assert_eq!(run.outcome.ending.status(), 126);
    Some((what.clone(), run))
}

#[test]
fn out_to_an_unknown_port_is_unserved() {
    #[rustfmt::skip]
    let code = [
        0x66, 0xBA, 0x34, 0x12, // mov dx, 0x1234
        0xB0, 0x01,             // mov al, 1
        0xEE,                   // out dx, al
    ];
    let Some((what, run)) = unserved_of(&code) else {
        return;
    };
    assert_eq!(
        what,
        Unserved::UnknownPort {
            port: 0x1234,
            direction: Direction::Out,
            size: 1
        }
    );
    assert_eq!(
        what.to_string(),
        "KVM_EXIT_IO: 1-byte `out` on port 0x1234, which no hypercall owns"
    );
    assert_eq!(
        (run.outcome.stats.exits, run.outcome.stats.io_exits),
        (1, 1)
    );
    assert_eq!(run.outcome.stats.by_hypercall, by_hypercall(&[]));
}

#[test]
fn four_byte_out_to_the_console_is_a_bad_access() {
    #[rustfmt::skip]
    let code = [
        0x66, 0xBA, 0xE9, 0x00,       // mov dx, 0xE9
        0xB8, 0x41, 0x00, 0x00, 0x00, // mov eax, 'A'
        0xEF,                         // out dx, eax
    ];
    let Some((what, run)) = unserved_of(&code) else {
        return;
    };
    assert_eq!(
        what,
        Unserved::BadAccess {
            port: Port::Console,
            direction: Direction::Out,
            size: 4,
            count: 1
        }
    );
    assert_eq!(
        what.to_string(),
        "KVM_EXIT_IO: 4-byte `out` on port 0xe9 (console), which takes only 1-byte `out`"
    );
    // Nothing was printed, and a refused access is not a hypercall.
    assert_eq!(run.stdout, b"");
    assert_eq!(run.outcome.stats.by_hypercall, by_hypercall(&[]));
}

#[test]
fn in_from_the_exit_port_is_a_bad_access() {
    #[rustfmt::skip]
    let code = [
        0x66, 0xBA, 0x03, 0x04, // mov dx, 0x403 (exit)
        0xEC,                   // in al, dx
    ];
    let Some((what, _)) = unserved_of(&code) else {
        return;
    };
    assert_eq!(
        what,
        Unserved::BadAccess {
            port: Port::Exit,
            direction: Direction::In,
            size: 1,
            count: 1
        }
    );
    assert_eq!(
        what.to_string(),
        "KVM_EXIT_IO: 1-byte `in` on port 0x403 (exit), which takes only 4-byte `out`"
    );
}

#[test]
fn rep_outsb_to_the_console_is_served_one_byte_per_exit() {
    // KVM emulates `rep outs` one iteration at a time, and each iteration
    // exits to kvmini as a 1-byte `out` with count 1: indistinguishable
    // from `out dx, al`, so it is served as three console calls.
    #[rustfmt::skip]
    let code = [
        0xBE, 0x11, 0x00, 0x00, 0x00, // mov esi, 0x11 (the bytes below)
        0xB9, 0x03, 0x00, 0x00, 0x00, // mov ecx, 3
        0x66, 0xBA, 0xE9, 0x00,       // mov dx, 0xE9
        0xF3, 0x6E,                   // rep outsb
        0xF4,                         // hlt
        b'a', b'b', b'c',             // 0x11: the bytes
    ];
    let Some(run) = run_flat(&code, None) else {
        return;
    };
    assert_eq!(run.stdout_text(), "abc");
    assert_eq!(run.outcome.ending, Ending::Halted);
    let stats = &run.outcome.stats;
    assert_eq!((stats.exits, stats.io_exits, stats.hlt_exits), (4, 3, 1));
    assert_eq!(stats.by_hypercall, by_hypercall(&[(Port::Console, 3)]));
    assert_eq!(run.outcome.regs.rcx, 0);
}

#[test]
fn rep_insd_from_get_num_exits_is_a_bad_access() {
    // KVM batches `rep ins` into one exit for the whole count, which
    // kvmini refuses as string I/O.
    #[rustfmt::skip]
    let code = [
        0xBF, 0x00, 0x01, 0x00, 0x00, // mov edi, 0x100
        0xB9, 0x03, 0x00, 0x00, 0x00, // mov ecx, 3
        0x66, 0xBA, 0x01, 0x04,       // mov dx, 0x401 (getNumExits)
        0xF3, 0x6D,                   // rep insd
        0xF4,                         // hlt
    ];
    let Some((what, run)) = unserved_of(&code) else {
        return;
    };
    assert_eq!(
        what,
        Unserved::BadAccess {
            port: Port::GetNumExits,
            direction: Direction::In,
            size: 4,
            count: 3
        }
    );
    assert_eq!(
        what.to_string(),
        "KVM_EXIT_IO: 4-byte `in` (string I/O) on port 0x401 (getNumExits), which takes only 4-byte `in`"
    );
    assert_eq!(run.outcome.stats.exits, 1);
    assert_eq!(run.outcome.stats.by_hypercall, by_hypercall(&[]));
}

/// Calls `display` on each address in `addresses`, then `printVal(7)` to
/// show that the guest went on, then the halt hypercall.
fn display_then_print_7(addresses: &[u32]) -> Vec<u8> {
    let mut code = vec![0x66, 0xBA, 0x02, 0x04]; // mov dx, 0x402 (display)
    for address in addresses {
        code.push(0xB8); // mov eax, address
        code.extend_from_slice(&address.to_le_bytes());
        code.push(0xEF); // out dx, eax
    }
    #[rustfmt::skip]
    code.extend_from_slice(&[
        0x66, 0xBA, 0x00, 0x04,       // mov dx, 0x400 (printVal)
        0xB8, 0x07, 0x00, 0x00, 0x00, // mov eax, 7
        0xEF,                         // out dx, eax
        0x66, 0xBA, 0x04, 0x04,       // mov dx, 0x404 (halt)
        0xEE,                         // out dx, al
    ]);
    code
}

#[test]
fn display_beyond_memory_warns_and_the_guest_goes_on() {
    let end = u32::try_from(MEM_DEFAULT).expect("64 MiB fits in 32 bits");
    let code = display_then_print_7(&[end, 0xFFFF_F000]);
    let Some(run) = run_flat(&code, None) else {
        return;
    };
    assert_eq!(run.stdout_text(), "7\n");
    assert_eq!(
        run.warnings_text(),
        "kvmini: display(0x4000000) ignored: address 0x4000000 is not mapped (level 2 entry not present)\n\
         kvmini: display(0xfffff000) ignored: address 0xfffff000 is not mapped (level 3 entry not present)\n"
    );
    assert_eq!(run.outcome.ending, Ending::Halted);
    assert_eq!(
        run.outcome.stats.by_hypercall,
        by_hypercall(&[(Port::Display, 2), (Port::PrintVal, 1), (Port::Halt, 1)])
    );
}

#[test]
fn ring_3_cannot_display_kvmini_memory() {
    let gdt = u32::try_from(LAYOUT.gdt()).expect("the GDT is below 4 GiB");
    let code = display_then_print_7(&[gdt]);
    let Some(run) = run_flat(&code, Some(Ring::Three)) else {
        return;
    };
    assert_eq!(run.stdout_text(), "7\n");
    assert_eq!(
        run.warnings_text(),
        format!(
            "kvmini: display({gdt:#x}) ignored: address {gdt:#x} is not accessible from ring 3\n"
        )
    );
    assert_eq!(run.outcome.ending, Ending::Halted);
}

/// A static x86_64 ELF whose one segment (read + execute) holds the ELF
/// header, the program header, then `code`, loaded at 1 MiB and entered
/// at `code`.
fn elf_around(code: &[u8]) -> Vec<u8> {
    use common::elf::{header64, load64, EHDR64, EM_X86_64, ET_EXEC, PF_R, PF_X, PHDR64};
    const BASE: u64 = 0x10_0000;
    let headers = (EHDR64 + PHDR64) as u64;
    let total = headers + code.len() as u64;
    let mut elf = header64(ET_EXEC, EM_X86_64, BASE + headers, 1);
    elf.extend(load64(PF_R | PF_X, 0, BASE, total, total));
    elf.extend_from_slice(code);
    elf
}

#[test]
fn display_of_null_warns_and_the_guest_goes_on() {
    // Flat images map the null page (address 0 is their code), so the null
    // pointer is tried from the same code wrapped in an ELF, whose null
    // page is not mapped.
    let code = display_then_print_7(&[0]);
    let Some(kvm) = kvm_or_skip() else { return };
    let run = run_image(&kvm, Image::Elf(elf_around(&code)), None);
    assert_eq!(run.sandbox.ring(), Ring::Three);
    assert_eq!(run.stdout_text(), "7\n");
    assert_eq!(
        run.warnings_text(),
        "kvmini: display(0x0) ignored: address 0x0 is not mapped (level 1 entry not present)\n"
    );
    assert_eq!(run.outcome.ending, Ending::Halted);
    assert_eq!(run.outcome.stats.exits, 3);
}
