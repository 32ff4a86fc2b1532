//! The notes of a core file, in the layouts of Linux's x86_64 core dumps
//! that gdb reads: `NT_PRSTATUS` (`struct elf_prstatus`, the registers in
//! `user_regs_struct` order), `NT_PRPSINFO` (`struct elf_prpsinfo`),
//! `NT_SIGINFO` (a `siginfo_t`), `NT_AUXV` and `NT_FPREGSET` (the FXSAVE
//! area). Each note is its header, its name and its contents, each padded
//! to 4 bytes.

use kvm_bindings::kvm_fpu;

use super::{signal_of_vector, CoreSource};

const NT_PRSTATUS: u32 = 1;
const NT_FPREGSET: u32 = 2;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_SIGINFO: u32 = 0x5349_4749;
const NT_X86_XSTATE: u32 = 0x202;
const CORE: &[u8] = b"CORE\0";
const LINUX: &[u8] = b"LINUX\0";

/// XCR0's x87, SSE and AVX bits: the components whose places in the
/// standard XSAVE format are the same on every CPU.
const XCR0_AVX_AND_BELOW: u64 = 0b111;
/// The end of the AVX component in the standard format (its upper halves
/// of the YMM registers start at 576).
const XSAVE_AVX_END: usize = 576 + 256;
/// Where Linux keeps XCR0 in the area's software-reserved bytes, which
/// gdb reads to know what the area holds.
const XSAVE_XCR0: usize = 464;
/// The XSAVE header's XSTATE_BV and XCOMP_BV.
const XSAVE_XSTATE_BV: usize = 512;
const XSAVE_XCOMP_BV: usize = 520;

/// `sizeof(struct elf_prstatus)` on x86_64.
pub(super) const PRSTATUS_SIZE: usize = 336;
/// Offset of `pr_reg` in it.
pub(super) const PRSTATUS_REGS: usize = 112;
/// `sizeof(struct elf_prpsinfo)` on x86_64.
pub(super) const PRPSINFO_SIZE: usize = 136;
/// `sizeof(siginfo_t)`.
const SIGINFO_SIZE: usize = 128;

/// `si_code` values.
const SEGV_MAPERR: i32 = 1;
const SEGV_ACCERR: i32 = 2;
const ILL_ILLOPN: i32 = 2;
const FPE_INTDIV: i32 = 1;
const SI_KERNEL: i32 = 0x80;

/// All the notes of `source`'s core.
pub(super) fn notes(source: &CoreSource<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let signal = signal_of_vector(source.vector);
    let (code, address) = signal_code(source);
    note(&mut out, CORE, NT_PRSTATUS, &prstatus(source, signal, code));
    note(&mut out, CORE, NT_PRPSINFO, &prpsinfo(source.program));
    note(&mut out, CORE, NT_SIGINFO, &siginfo(signal, code, address));
    note(&mut out, CORE, NT_AUXV, &auxv(source.entry));
    note(&mut out, CORE, NT_FPREGSET, &source.registers.fxsave);
    if let Some((area, xcr0)) = &source.registers.xsave {
        if let Some(xstate) = xstate(area, *xcr0) {
            note(&mut out, LINUX, NT_X86_XSTATE, &xstate);
        }
    }
    out
}

/// The XSAVE area as `NT_X86_XSTATE` holds it, cut to the x87, SSE and
/// AVX components (later components lie where each CPU's CPUID says, and
/// gdb may assume other places), with the XCR0 that says so; `None` when
/// the guest neither had AVX enabled nor used it (`NT_FPREGSET` holds the
/// rest). Used counts: on nested kvm-pvm ring-3 code runs under the host's
/// XCR0, so the area's XSTATE_BV may list AVX state that KVM's XCR0 does
/// not (`crate::xstate`).
fn xstate(area: &[u8; 4096], xcr0: u64) -> Option<Vec<u8>> {
    const AVX: u64 = 1 << 2;
    let mut bv = [0u8; 8];
    bv.copy_from_slice(&area[XSAVE_XSTATE_BV..XSAVE_XSTATE_BV + 8]);
    let bv = u64::from_le_bytes(bv);
    if (xcr0 | bv) & AVX == 0 {
        return None;
    }
    let components = XCR0_AVX_AND_BELOW;
    let mut b = area[..XSAVE_AVX_END].to_vec();
    b[XSAVE_XCR0..XSAVE_XCR0 + 8].copy_from_slice(&components.to_le_bytes());
    let bv = bv & components;
    b[XSAVE_XSTATE_BV..XSAVE_XSTATE_BV + 8].copy_from_slice(&bv.to_le_bytes());
    b[XSAVE_XCOMP_BV..XSAVE_XCOMP_BV + 8].fill(0);
    Some(b)
}

/// Appends one note.
fn note(out: &mut Vec<u8>, name: &[u8], kind: u32, desc: &[u8]) {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    out.extend_from_slice(&len(name.len()).to_le_bytes());
    out.extend_from_slice(&len(desc.len()).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    for part in [name, desc] {
        out.extend_from_slice(part);
        out.resize(out.len().next_multiple_of(4), 0);
    }
}

/// The `si_code` of the crash and the address `siginfo_t` names: the
/// faulting address of a page fault, the instruction of an invalid opcode
/// or a divide error, none for the others (what Linux reports for them).
fn signal_code(source: &CoreSource<'_>) -> (i32, u64) {
    let rip = source.registers.regs.rip;
    match source.vector {
        14 if source.error_code & 1 == 0 => (SEGV_MAPERR, source.fault_address),
        14 => (SEGV_ACCERR, source.fault_address),
        6 => (ILL_ILLOPN, rip),
        0 => (FPE_INTDIV, rip),
        _ => (SI_KERNEL, 0),
    }
}

/// `struct elf_prstatus`: the signal, then the registers at `pr_reg`.
fn prstatus(source: &CoreSource<'_>, signal: i32, code: i32) -> Vec<u8> {
    let mut b = vec![0u8; PRSTATUS_SIZE];
    b[0..4].copy_from_slice(&signal.to_le_bytes());
    b[4..8].copy_from_slice(&code.to_le_bytes());
    // pr_cursig, a short.
    b[12..14].copy_from_slice(&i16::try_from(signal).unwrap_or(0).to_le_bytes());
    // pr_pid: the one thread.
    b[32..36].copy_from_slice(&1i32.to_le_bytes());
    for (i, value) in user_regs(source).iter().enumerate() {
        let at = PRSTATUS_REGS + i * 8;
        b[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    // pr_fpvalid: NT_FPREGSET follows.
    b[PRSTATUS_REGS + 27 * 8..PRSTATUS_REGS + 27 * 8 + 4].copy_from_slice(&1i32.to_le_bytes());
    b
}

/// The registers in `struct user_regs_struct` order.
pub(super) fn user_regs(source: &CoreSource<'_>) -> [u64; 27] {
    let r = &source.registers;
    let g = &r.regs;
    let [cs, ss, ds, es, fs, gs] = r.selectors.map(u64::from);
    [
        g.r15,
        g.r14,
        g.r13,
        g.r12,
        g.rbp,
        g.rbx,
        g.r11,
        g.r10,
        g.r9,
        g.r8,
        g.rax,
        g.rcx,
        g.rdx,
        g.rsi,
        g.rdi, // orig_rax: no system call was in progress.
        u64::MAX,
        g.rip,
        cs,
        g.rflags,
        g.rsp,
        ss,
        r.fs_base,
        r.gs_base,
        ds,
        es,
        fs,
        gs,
    ]
}

/// `struct elf_prpsinfo`: the state (running), the pid, and the program
/// name in `pr_fname` (cut to 15 bytes) and `pr_psargs` (cut to 79).
fn prpsinfo(program: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; PRPSINFO_SIZE];
    b[1] = b'R';
    b[24..28].copy_from_slice(&1i32.to_le_bytes());
    let base = program.rsplit(|&c| c == b'/').next().unwrap_or(program);
    let fname = &base[..base.len().min(15)];
    b[40..40 + fname.len()].copy_from_slice(fname);
    let args = &program[..program.len().min(79)];
    b[56..56 + args.len()].copy_from_slice(args);
    b
}

/// A `siginfo_t` of `signal`, with `si_code` and, at `si_addr`, `address`.
fn siginfo(signal: i32, code: i32, address: u64) -> Vec<u8> {
    let mut b = vec![0u8; SIGINFO_SIZE];
    b[0..4].copy_from_slice(&signal.to_le_bytes());
    b[8..12].copy_from_slice(&code.to_le_bytes());
    b[16..24].copy_from_slice(&address.to_le_bytes());
    b
}

/// The auxiliary vector: the entry point (`AT_ENTRY`), which tells gdb
/// where a static PIE was loaded, then `AT_NULL`.
fn auxv(entry: u64) -> Vec<u8> {
    const AT_ENTRY: u64 = 9;
    [AT_ENTRY, entry, 0, 0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect()
}

/// The 512-byte FXSAVE area of KVM's FPU state: control, status and
/// abridged tag words, the last opcode, instruction and data pointers,
/// MXCSR, the eight x87 registers and the sixteen XMM registers.
pub fn fxsave_from_fpu(fpu: &kvm_fpu) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..2].copy_from_slice(&fpu.fcw.to_le_bytes());
    b[2..4].copy_from_slice(&fpu.fsw.to_le_bytes());
    b[4] = fpu.ftwx;
    b[6..8].copy_from_slice(&fpu.last_opcode.to_le_bytes());
    b[8..16].copy_from_slice(&fpu.last_ip.to_le_bytes());
    b[16..24].copy_from_slice(&fpu.last_dp.to_le_bytes());
    b[24..28].copy_from_slice(&fpu.mxcsr.to_le_bytes());
    // MXCSR_MASK: KVM does not report it; this is the default the SDM
    // gives for a CPU that stores none.
    b[28..32].copy_from_slice(&0xFFBFu32.to_le_bytes());
    for (i, st) in fpu.fpr.iter().enumerate() {
        b[32 + i * 16..48 + i * 16].copy_from_slice(st);
    }
    for (i, xmm) in fpu.xmm.iter().enumerate() {
        b[160 + i * 16..176 + i * 16].copy_from_slice(xmm);
    }
    b
}
