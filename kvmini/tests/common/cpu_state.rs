//! The guest-register checks' shared helpers: a flat guest that loads a
//! distinct value into every general register and then faults, and the
//! crash kvmini must report for it. Used by the library's and the command
//! line's register tests.

use kvm_bindings::kvm_regs;
use kvmini::cpu::Ring;
use kvmini::sandbox::Crash;

/// The general registers in encoding order (rax, rcx, rdx, rbx, rsp, rbp,
/// rsi, rdi, r8..r15), each with a value no other register has.
pub fn distinct_value(encoding: u8) -> u64 {
    0x7E00_0000_0000 | ((u64::from(encoding) + 1) * 0x0101_0101)
}

/// `mov REG, imm64` for every general register, then `stc`: sixteen
/// distinct registers and CF set, so that a report of any other state
/// shows.
pub fn load_all_registers() -> Vec<u8> {
    let mut code = Vec::new();
    for encoding in 0u8..16 {
        let rex = 0x48 | u8::from(encoding >= 8);
        code.extend_from_slice(&[rex, 0xB8 + (encoding & 7)]);
        code.extend_from_slice(&distinct_value(encoding).to_le_bytes());
    }
    code.push(0xF9); // stc
    code
}

/// The registers [`load_all_registers`] leaves, with RIP at `rip` and
/// RFLAGS `rflags`.
pub fn loaded_registers(rip: u64, rflags: u64) -> kvm_regs {
    let v = distinct_value;
    kvm_regs {
        rax: v(0),
        rcx: v(1),
        rdx: v(2),
        rbx: v(3),
        rsp: v(4),
        rbp: v(5),
        rsi: v(6),
        rdi: v(7),
        r8: v(8),
        r9: v(9),
        r10: v(10),
        r11: v(11),
        r12: v(12),
        r13: v(13),
        r14: v(14),
        r15: v(15),
        rip,
        rflags,
    }
}

/// The faults, each one instruction that changes no register before it
/// faults.
#[derive(Clone, Copy, Debug)]
pub enum Exception {
    /// `movabs [0x100000000], rax`: past guest memory and the identity map.
    PageFault,
    /// `ud2`.
    InvalidOpcode,
    /// `movabs [0x8000000000000000], rax`: a non-canonical address.
    GeneralProtection,
    /// `div qword [rip]`, with the zero divisor right after the instruction.
    DivideError,
}

impl Exception {
    pub const ALL: [Exception; 4] = [
        Exception::PageFault,
        Exception::InvalidOpcode,
        Exception::GeneralProtection,
        Exception::DivideError,
    ];

    pub fn code(self) -> Vec<u8> {
        match self {
            Exception::PageFault => [&[0x48, 0xA3][..], &0x1_0000_0000u64.to_le_bytes()].concat(),
            Exception::InvalidOpcode => vec![0x0F, 0x0B],
            Exception::GeneralProtection => {
                [&[0x48, 0xA3][..], &0x8000_0000_0000_0000u64.to_le_bytes()].concat()
            }
            Exception::DivideError => vec![0x48, 0xF7, 0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        }
    }

    /// The crash kvmini must report for this fault at `rip` in `ring`.
    pub fn crash(self, rip: u64, ring: Ring) -> Crash {
        let user = if ring == Ring::Three { 4 } else { 0 };
        let (vector, error_code, cr2) = match self {
            // Write (bit 1) to a page that is not present, user bit by ring.
            Exception::PageFault => (14, 2 | user, 0x1_0000_0000),
            Exception::InvalidOpcode => (6, 0, 0),
            Exception::GeneralProtection => (13, 0, 0),
            Exception::DivideError => (0, 0, 0),
        };
        Crash {
            vector,
            error_code,
            rip,
            rsp: distinct_value(4),
            ring: ring.number(),
            cr2,
            ..Default::default()
        }
    }
}

/// The guest: load every register, then fault. Returns the image and the
/// address of the faulting instruction.
pub fn faulting_guest(fault: Exception) -> (Vec<u8>, u64) {
    let mut code = load_all_registers();
    let rip = code.len() as u64;
    code.extend_from_slice(&fault.code());
    (code, rip)
}

/// RFLAGS as the exception frame holds it: CF (set by the guest), the
/// reserved bit 1, and RF, which the CPU sets in the saved image of every
/// fault so that a return re-executes the instruction. At ring 3, IOPL 3
/// (kvmini's entry value) too, except on nested KVM through kvm-pvm: there
/// ring-3 code runs natively with IOPL 0 (its `in`/`out` exit through the
/// TSS's I/O bitmap instead), and the frame shows the flags it ran with.
pub fn rflags_at_fault(ring: Ring) -> u64 {
    const RF: u64 = 1 << 16;
    match ring {
        Ring::Zero => RF | 0x3,
        Ring::Three if kvm_pvm() => RF | 0x3,
        Ring::Three => RF | 0x3003,
    }
}

/// True when KVM here is nested through kvm-pvm.
pub fn kvm_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}
