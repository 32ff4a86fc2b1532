//! The processor structures kvmini gives a long-mode guest: the GDT and
//! its selectors, the IDT, the TSS and the exception handlers, and the
//! frame those handlers leave; the guest's privilege level; CPUID look-ups.

use kvm_bindings::{kvm_cpuid_entry2, kvm_regs, CpuId};
use kvmini_abi::Port;

use super::descriptor::{self, selector, Descriptor};
use super::tables::Tables;
use crate::layout::Layout;

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
pub const KERNEL_CS: u16 = selector(1, 0);
/// Kernel data segment selector.
pub const KERNEL_DS: u16 = selector(2, 0);
/// User data segment selector (RPL 3).
pub const USER_DS: u16 = selector(3, 3);
/// User code segment selector (RPL 3).
pub const USER_CS: u16 = selector(4, 3);
/// TSS selector.
pub const TSS_SEL: u16 = selector(5, 0);

/// The long-mode code segment of `ring`.
pub const fn code_segment(ring: Ring) -> (u16, Descriptor) {
    match ring {
        Ring::Zero => (KERNEL_CS, Descriptor::code64(0)),
        Ring::Three => (USER_CS, Descriptor::code64(3)),
    }
}

/// The long-mode data and stack segment of `ring`.
pub const fn data_segment(ring: Ring) -> (u16, Descriptor) {
    match ring {
        Ring::Zero => (KERNEL_DS, Descriptor::data(0)),
        Ring::Three => (USER_DS, Descriptor::data(3)),
    }
}

/// The TSS descriptor of a guest with `layout`.
pub const fn tss_descriptor(layout: &Layout) -> Descriptor {
    Descriptor::tss(layout.tss(), TSS_LIMIT)
}

/// The long-mode GDT: null, kernel code and data, user data and code (in
/// the order `syscall`/`sysret` expect), and the 16-byte TSS descriptor.
pub fn long_mode_gdt(layout: &Layout) -> [u64; GDT_ENTRIES] {
    let tss = tss_descriptor(layout);
    [
        0,
        code_segment(Ring::Zero).1.gdt_entry(),
        data_segment(Ring::Zero).1.gdt_entry(),
        data_segment(Ring::Three).1.gdt_entry(),
        code_segment(Ring::Three).1.gdt_entry(),
        tss.gdt_entry(),
        tss.gdt_entry_high(),
    ]
}

/// Entries of the long-mode GDT (the TSS takes two).
pub const GDT_ENTRIES: usize = 7;

/// The 32-bit code segment selector of the 32-bit modes (GDT entry 1).
pub const CODE32_SELECTOR: u16 = selector(1, 0);
/// The 32-bit data segment selector (GDT entry 2), for DS, ES, FS, GS, SS.
pub const DATA32_SELECTOR: u16 = selector(2, 0);
/// The 32-bit modes' flat code segment: base 0, 4 GiB, 32-bit, DPL 0.
pub const CODE32: Descriptor = Descriptor::code32(0);
/// The 32-bit modes' flat data segment.
pub const DATA32: Descriptor = Descriptor::data(0);

/// The GDT of the 32-bit modes: null, code, data.
pub const fn gdt32() -> [u64; 3] {
    [0, CODE32.gdt_entry(), DATA32.gdt_entry()]
}

/// CPUID.(7,0):EBX.FSGSBASE.
const CPUID_7_EBX_FSGSBASE: u32 = 1 << 0;

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

/// The GDT, IDT, TSS and exception handlers of a long-mode guest.
pub fn system_tables(layout: &Layout) -> Tables {
    let mut tables = Tables::new();
    tables.put(layout.gdt(), descriptor::gdt_bytes(&long_mode_gdt(layout)));

    // TSS: RSP0 and IST1 both point at kvmini's exception stack, so an
    // exception is handled on a good stack whatever the guest did to RSP.
    // The I/O permission bitmap allows every port (all bits clear) and
    // ends with the 0xFF byte the CPU requires: IOPL 3 alone does not let
    // ring-3 `in`/`out` through on kvm-pvm, whose emulator consults the
    // bitmap, so both are set.
    let tss_len = usize::try_from(TSS_LIMIT).unwrap_or(0) + 1;
    let mut tss = vec![0u8; tss_len];
    let stack = layout.exception_stack_top().to_le_bytes();
    tss[4..12].copy_from_slice(&stack);
    tss[36..44].copy_from_slice(&stack);
    tss[102..104].copy_from_slice(&IO_BITMAP_OFFSET.to_le_bytes());
    tss[tss_len - 1] = 0xFF;
    tables.put(layout.tss(), tss);

    let common = layout.handlers() + u64::from(EXCEPTION_VECTORS) * STUB_SIZE;
    let mut stubs = Vec::with_capacity(usize::from(EXCEPTION_VECTORS) * 16);
    let mut idt = Vec::with_capacity(usize::from(EXCEPTION_VECTORS) * 16);
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
        code.resize(16, 0);
        stubs.extend_from_slice(&code);

        // 64-bit interrupt gate, DPL 0 (ring 3 cannot `int` into it), IST 1.
        let low = (stub & 0xFFFF)
            | (u64::from(KERNEL_CS) << 16)
            | (1 << 32)
            | (0x8E << 40)
            | (((stub >> 16) & 0xFFFF) << 48);
        idt.extend_from_slice(&low.to_le_bytes());
        idt.extend_from_slice(&(stub >> 32).to_le_bytes());
    }
    // The common tail saves the guest's registers, then reports the vector
    // through the exception port; kvmini reads the frame
    // ([`ExceptionFrame`]) and ends the run.
    let port = (Port::Exception as u16).to_le_bytes();
    stubs.extend_from_slice(&EXCEPTION_TAIL);
    stubs.extend_from_slice(&[
        0x66, 0xBA, port[0], port[1], // mov dx, Port::Exception
        0x8A, 0x44, 0x24, 0x78, // mov al, [rsp + 120]: the vector
        0xEE, // out dx, al
        0xF4, // hlt
        0xEB, 0xFD, // jmp back to hlt
    ]);
    tables.put(layout.idt(), idt);
    tables.put(layout.handlers(), stubs);
    tables
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
    use vm_memory::{Bytes, GuestAddress};

    /// The long-mode GDT, entry by entry, as the SDM encodes it.
    #[test]
    fn the_long_mode_gdt_is_the_sdm_encoding() {
        let layout = Layout::new(64 << 20);
        let tss = layout.tss();
        assert_eq!(tss, 0x3FF_9000);
        assert_eq!(
            long_mode_gdt(&layout),
            [
                0,
                0x00AF_9B00_0000_FFFF, // kernel code: 64-bit, DPL 0
                0x00CF_9300_0000_FFFF, // kernel data
                0x00CF_F300_0000_FFFF, // user data: DPL 3
                0x00AF_FB00_0000_FFFF, // user code: 64-bit, DPL 3
                // TSS: limit 0x2068, base 0x3FF9000, type 9, present.
                0x0300_89FF_9000_2068,
                0,
            ]
        );
        assert_eq!(gdt32(), [0, 0x00CF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF]);
        assert_eq!(
            (KERNEL_CS, KERNEL_DS, USER_DS, USER_CS, TSS_SEL),
            (0x08, 0x10, 0x1B, 0x23, 0x28)
        );
        assert_eq!((CODE32_SELECTOR, DATA32_SELECTOR), (0x08, 0x10));
    }

    #[test]
    fn every_stub_jumps_to_the_common_tail() {
        let size = 4 << 20;
        let mem = memory::allocate(size).unwrap();
        let layout = Layout::new(size);
        system_tables(&layout).write_to(&mem).unwrap();
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
