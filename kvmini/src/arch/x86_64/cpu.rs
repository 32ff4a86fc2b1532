//! The boot CPU state of a guest: GDT, IDT, TSS and exception handlers in
//! guest memory, and the segment, control and general registers that start
//! the vCPU in 64-bit long mode at ring 3 or ring 0.

use kvm_bindings::{kvm_cpuid_entry2, kvm_fpu, kvm_regs, kvm_segment, kvm_sregs, CpuId};
use kvmini_abi::Port;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use crate::layout::Layout;
use crate::memory::GuestMemory;

/// The privilege level guest code runs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Ring {
    /// CPL0: the guest is its own kernel. On nested KVM (kvm-pvm) this code
    /// is run by KVM's instruction emulator: slow, and no SSE arithmetic.
    Zero,
    /// CPL3: runs natively; `in`/`out` allowed through IOPL 3; kvmini's own
    /// structures are out of reach.
    #[default]
    Three,
}

impl Ring {
    /// The ring as a number, 0 or 3.
    pub const fn number(self) -> u8 {
        match self {
            Ring::Zero => 0,
            Ring::Three => 3,
        }
    }
}

/// Kernel code segment selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data segment selector.
pub const KERNEL_DS: u16 = 0x10;
/// User data segment selector (RPL 3).
pub const USER_DS: u16 = 0x18 | 3;
/// User code segment selector (RPL 3).
pub const USER_CS: u16 = 0x20 | 3;
/// TSS selector.
pub const TSS_SEL: u16 = 0x28;

const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// CR4.FSGSBASE: `rdfsbase`/`wrfsbase` and the GS pair allowed at ring 3.
pub const CR4_FSGSBASE: u64 = 1 << 16;
/// CPUID.(7,0):EBX.FSGSBASE.
const CPUID_7_EBX_FSGSBASE: u32 = 1 << 0;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const RFLAGS_RESERVED: u64 = 1 << 1;
const RFLAGS_IOPL3: u64 = 3 << 12;

/// Offset of the I/O permission bitmap in the TSS: right after the
/// 104-byte 64-bit TSS.
const IO_BITMAP_OFFSET: u16 = 104;
/// TSS limit: the TSS, one bit per port for all 65536 ports, and the
/// terminating byte.
pub const TSS_LIMIT: u32 = 104 + 65536 / 8;

/// Exceptions for which the CPU pushes an error code.
const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// Number of exception vectors with handlers (the CPU's own, 0..31).
pub const EXCEPTION_VECTORS: u8 = 32;
/// Each handler stub is 16 bytes; the common tail follows the stubs.
const STUB_SIZE: u64 = 16;

/// Writes the GDT, IDT, TSS and exception handlers into guest memory.
pub fn write_system_tables(mem: &GuestMemory, layout: &Layout) -> Result<(), GuestMemoryError> {
    let tss = layout.tss();
    let gdt: [u64; 7] = [
        0,
        0x00AF_9B00_0000_FFFF, // kernel code: 64-bit, DPL 0
        0x00CF_9300_0000_FFFF, // kernel data
        0x00CF_F300_0000_FFFF, // user data: DPL 3
        0x00AF_FB00_0000_FFFF, // user code: 64-bit, DPL 3
        // 64-bit TSS descriptor (two slots): type 9, present, limit
        // covering the I/O bitmap.
        u64::from(TSS_LIMIT)
            | ((tss & 0xFF_FFFF) << 16)
            | (0x89 << 40)
            | (((tss >> 24) & 0xFF) << 56),
        tss >> 32,
    ];
    for (i, entry) in (0u64..).zip(gdt) {
        mem.write_obj(entry, GuestAddress(layout.gdt() + i * 8))?;
    }

    // TSS: RSP0 and IST1 both point at kvmini's exception stack, so an
    // exception is handled on a good stack whatever the guest did to RSP.
    // The I/O permission bitmap allows every port (all bits clear, guest
    // memory starts zeroed) and ends with the 0xFF byte the CPU requires:
    // IOPL 3 alone does not let ring-3 `in`/`out` through on kvm-pvm,
    // whose emulator consults the bitmap, so both are set.
    let stack = layout.exception_stack_top();
    mem.write_obj(stack, GuestAddress(tss + 4))?;
    mem.write_obj(stack, GuestAddress(tss + 36))?;
    mem.write_obj(IO_BITMAP_OFFSET, GuestAddress(tss + 102))?;
    mem.write_obj(0xFFu8, GuestAddress(tss + u64::from(TSS_LIMIT)))?;

    let common = layout.handlers() + u64::from(EXCEPTION_VECTORS) * STUB_SIZE;
    for vector in 0..EXCEPTION_VECTORS {
        let stub = layout.handlers() + u64::from(vector) * STUB_SIZE;
        let mut code = Vec::with_capacity(16);
        if !has_error_code(vector) {
            code.extend_from_slice(&[0x6A, 0x00]); // push 0 (no error code)
        }
        code.extend_from_slice(&[0x6A, vector]); // push vector
        let next = stub + code.len() as u64 + 5;
        let rel =
            i32::try_from(i64::try_from(common).unwrap_or(0) - i64::try_from(next).unwrap_or(0))
                .unwrap_or(0);
        code.push(0xE9); // jmp common
        code.extend_from_slice(&rel.to_le_bytes());
        mem.write_slice(&code, GuestAddress(stub))?;

        // 64-bit interrupt gate, DPL 0 (ring 3 cannot `int` into it), IST 1.
        let low = (stub & 0xFFFF)
            | (u64::from(KERNEL_CS) << 16)
            | (1 << 32)
            | (0x8E << 40)
            | (((stub >> 16) & 0xFFFF) << 48);
        let gate = layout.idt() + u64::from(vector) * 16;
        mem.write_obj(low, GuestAddress(gate))?;
        mem.write_obj(stub >> 32, GuestAddress(gate + 8))?;
    }
    // The common tail saves the guest's registers, then reports the vector
    // through the exception port; kvmini reads the frame
    // ([`ExceptionFrame`]) and ends the run.
    let port = (Port::Exception as u16).to_le_bytes();
    let mut tail = Vec::with_capacity(EXCEPTION_TAIL.len() + 16);
    tail.extend_from_slice(&EXCEPTION_TAIL);
    tail.extend_from_slice(&[
        0x66, 0xBA, port[0], port[1], // mov dx, Port::Exception
        0x8A, 0x44, 0x24, 0x78, // mov al, [rsp + 120]: the vector
        0xEE, // out dx, al
        0xF4, // hlt
        0xEB, 0xFD, // jmp back to hlt
    ]);
    mem.write_slice(&tail, GuestAddress(common))?;
    Ok(())
}

/// The start of the common tail: it pushes every general register but RSP
/// before it changes any (RSP comes from the CPU's frame), so that the
/// report shows the guest's registers at the faulting instruction, not the
/// handler's. The last push is RAX, so from RSP up the stack holds the
/// [`ExceptionFrame`] in the order of `kvm_regs`.
const EXCEPTION_TAIL: [u8; 23] = [
    0x41, 0x57, // push r15
    0x41, 0x56, // push r14
    0x41, 0x55, // push r13
    0x41, 0x54, // push r12
    0x41, 0x53, // push r11
    0x41, 0x52, // push r10
    0x41, 0x51, // push r9
    0x41, 0x50, // push r8
    0x55, // push rbp
    0x57, // push rdi
    0x56, // push rsi
    0x52, // push rdx
    0x51, // push rcx
    0x53, // push rbx
    0x50, // push rax
];

/// Length of the whole common tail: the pushes, the report and the `hlt`.
const EXCEPTION_TAIL_LEN: u64 = EXCEPTION_TAIL.len() as u64 + 12;

/// What kvmini's exception handler leaves on its stack, from RSP up: the
/// fifteen general registers it pushed, the vector and error code its stub
/// pushed, and the CPU's interrupt frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExceptionFrame {
    /// Exception vector.
    pub vector: u64,
    /// Error code (0 where the CPU pushes none).
    pub error_code: u64,
    /// Code segment selector of the faulting code.
    pub cs: u64,
    /// Every general register at the faulting instruction, with RIP, RSP
    /// and RFLAGS from the CPU's frame.
    pub regs: kvm_regs,
}

impl ExceptionFrame {
    /// Size of the frame in 8-byte words.
    pub const WORDS: usize = 22;

    /// Decodes the frame's words, read from the handler's RSP upwards.
    pub fn from_words(w: &[u64; Self::WORDS]) -> Self {
        let [rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15, vector, error_code, rip, cs, rflags, rsp, _ss] =
            *w;
        ExceptionFrame {
            vector,
            error_code,
            cs,
            regs: kvm_regs {
                rax,
                rbx,
                rcx,
                rdx,
                rsi,
                rdi,
                rsp,
                rbp,
                r8,
                r9,
                r10,
                r11,
                r12,
                r13,
                r14,
                r15,
                rip,
                rflags,
            },
        }
    }
}

/// Where the exception tail's `out` sits, to tell a real exception report
/// from a guest writing to the exception port itself.
pub fn exception_tail_range(layout: &Layout) -> std::ops::Range<u64> {
    let common = layout.handlers() + u64::from(EXCEPTION_VECTORS) * STUB_SIZE;
    common..common + EXCEPTION_TAIL_LEN
}

fn segment(selector: u16, code: bool, dpl: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector,
        type_: if code { 0xB } else { 0x3 },
        present: 1,
        dpl,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// The system registers for 64-bit long mode at `ring`, on top of the
/// vCPU's reset state `sregs`.
pub fn long_mode_sregs(mut sregs: kvm_sregs, layout: &Layout, ring: Ring) -> kvm_sregs {
    let (cs, ds) = match ring {
        Ring::Zero => (segment(KERNEL_CS, true, 0), segment(KERNEL_DS, false, 0)),
        Ring::Three => (segment(USER_CS, true, 3), segment(USER_DS, false, 3)),
    };
    sregs.cs = cs;
    sregs.ds = ds;
    sregs.es = ds;
    sregs.fs = ds;
    sregs.gs = ds;
    sregs.ss = ds;
    sregs.tr = kvm_segment {
        base: layout.tss(),
        limit: TSS_LIMIT,
        selector: TSS_SEL,
        type_: 0xB, // busy 64-bit TSS
        present: 1,
        s: 0,
        ..Default::default()
    };
    sregs.ldt = kvm_segment {
        unusable: 1,
        ..Default::default()
    };
    sregs.gdt.base = layout.gdt();
    sregs.gdt.limit = 7 * 8 - 1;
    sregs.idt.base = layout.idt();
    sregs.idt.limit = u16::from(EXCEPTION_VECTORS) * 16 - 1;
    sregs.cr3 = layout.pml4();
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.efer = EFER_LME | EFER_LMA;
    sregs
}

/// The entry `function`/`index` of a CPUID table, if it has one.
pub fn cpuid_entry(cpuid: &CpuId, function: u32, index: u32) -> Option<kvm_cpuid_entry2> {
    cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == function && e.index == index)
        .copied()
}

/// Whether a vCPU with this CPUID has `rdfsbase`/`wrfsbase`: kvmini then
/// sets CR4.FSGSBASE, as Linux does for its processes, so that a ring-3
/// guest may use them on every host (on kvm-pvm it can whatever CR4 says).
pub fn has_fsgsbase(cpuid: &CpuId) -> bool {
    cpuid_entry(cpuid, 7, 0).is_some_and(|e| e.ebx & CPUID_7_EBX_FSGSBASE != 0)
}

/// The general registers at the entry point: RIP, RSP, and RFLAGS with
/// IOPL 3 at ring 3 so that `in`/`out` exit to kvmini instead of faulting.
pub fn entry_regs(entry: u64, stack_top: u64, ring: Ring) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsp: stack_top,
        rflags: match ring {
            Ring::Zero => RFLAGS_RESERVED,
            Ring::Three => RFLAGS_RESERVED | RFLAGS_IOPL3,
        },
        ..Default::default()
    }
}

/// The x87/SSE state Linux gives a new process: all exceptions masked.
pub fn initial_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37F,
        mxcsr: 0x1F80,
        ..Default::default()
    }
}

/// The name of an exception vector, as the crash report prints it.
pub fn exception_name(vector: u8) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug exception",
        2 => "non-maskable interrupt",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection fault",
        14 => "page fault",
        16 => "x87 floating-point error",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating-point exception",
        20 => "virtualization exception",
        21 => "control protection exception",
        _ => "reserved exception",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory;

    #[test]
    fn every_stub_jumps_to_the_common_tail() {
        let size = 4 << 20;
        let mem = memory::allocate(size).unwrap();
        let layout = Layout::new(size);
        write_system_tables(&mem, &layout).unwrap();
        let common = exception_tail_range(&layout).start;
        for vector in 0..EXCEPTION_VECTORS {
            let stub = layout.handlers() + u64::from(vector) * STUB_SIZE;
            let mut code = [0u8; 16];
            mem.read_slice(&mut code, GuestAddress(stub)).unwrap();
            let jmp = if has_error_code(vector) { 2 } else { 4 };
            assert_eq!(code[jmp - 1], vector);
            assert_eq!(code[jmp], 0xE9);
            let rel = i32::from_le_bytes(code[jmp + 1..jmp + 5].try_into().unwrap());
            let target =
                i64::try_from(stub).unwrap() + i64::try_from(jmp).unwrap() + 5 + i64::from(rel);
            assert_eq!(target, i64::try_from(common).unwrap());
            // The gate points at the stub through kernel CS, IST 1.
            let low: u64 = mem
                .read_obj(GuestAddress(layout.idt() + u64::from(vector) * 16))
                .unwrap();
            assert_eq!(
                (low & 0xFFFF) | (((low >> 48) & 0xFFFF) << 16),
                stub & 0xFFFF_FFFF
            );
            assert_eq!((low >> 16) & 0xFFFF, u64::from(KERNEL_CS));
            assert_eq!((low >> 32) & 0x7, 1);
        }
    }
}
