//! The guest's x87 and SSE registers as gdb sees them, from and to KVM's
//! FPU state (the legacy FXSAVE area of `KVM_GET_FPU`/`KVM_SET_FPU`).
//!
//! Two things differ between the two. gdb's tag word has two bits per
//! physical x87 register (valid, zero, special, empty) where FXSAVE keeps
//! one (empty or not), so the full word is worked out from each register's
//! contents, as a kernel does for ptrace. And in 64-bit mode the last
//! instruction and operand pointers are 64-bit: gdb takes their low halves
//! as the offsets and their high halves as the "segments".

use gdbstub_arch::x86::reg::X86_64CoreRegs;
use kvm_bindings::kvm_fpu;

/// An x87 register's tag in gdb's (the full) tag word.
const TAG_VALID: u16 = 0;
const TAG_ZERO: u16 = 1;
const TAG_SPECIAL: u16 = 2;
const TAG_EMPTY: u16 = 3;

/// Puts the FPU state into gdb's register set.
pub(super) fn read_into(fpu: &kvm_fpu, out: &mut X86_64CoreRegs) {
    for (st, fpr) in out.st.iter_mut().zip(fpu.fpr.iter()) {
        st.copy_from_slice(&fpr[..10]);
    }
    let f = &mut out.fpu;
    f.fctrl = u32::from(fpu.fcw);
    f.fstat = u32::from(fpu.fsw);
    f.ftag = u32::from(full_tag_word(fpu));
    f.fioff = low_half(fpu.last_ip);
    f.fiseg = high_half(fpu.last_ip);
    f.fooff = low_half(fpu.last_dp);
    f.foseg = high_half(fpu.last_dp);
    f.fop = u32::from(fpu.last_opcode);
    for (xmm, reg) in out.xmm.iter_mut().zip(fpu.xmm.iter()) {
        *xmm = u128::from_le_bytes(*reg);
    }
    out.mxcsr = fpu.mxcsr;
}

/// Writes gdb's register set into the FPU state.
pub(super) fn write_from(new: &X86_64CoreRegs, fpu: &mut kvm_fpu) {
    for (fpr, st) in fpu.fpr.iter_mut().zip(new.st.iter()) {
        fpr[..10].copy_from_slice(st);
    }
    let f = &new.fpu;
    fpu.fcw = truncate16(f.fctrl);
    fpu.fsw = truncate16(f.fstat);
    fpu.ftwx = abridged_tag_word(truncate16(f.ftag));
    fpu.last_ip = u64::from(f.fioff) | (u64::from(f.fiseg) << 32);
    fpu.last_dp = u64::from(f.fooff) | (u64::from(f.foseg) << 32);
    // The opcode is 11 bits.
    fpu.last_opcode = truncate16(f.fop) & 0x7FF;
    for (reg, xmm) in fpu.xmm.iter_mut().zip(new.xmm.iter()) {
        *reg = xmm.to_le_bytes();
    }
    fpu.mxcsr = new.mxcsr;
}

fn low_half(v: u64) -> u32 {
    u32::try_from(v & 0xFFFF_FFFF).unwrap_or_default()
}

fn high_half(v: u64) -> u32 {
    u32::try_from(v >> 32).unwrap_or_default()
}

fn truncate16(v: u32) -> u16 {
    u16::try_from(v & 0xFFFF).unwrap_or_default()
}

/// The full tag word: for each physical register, empty where FXSAVE's
/// abridged tag says so, otherwise what its contents are. The registers
/// are stored in stack order, starting at the top (FSW bits 11-13).
fn full_tag_word(fpu: &kvm_fpu) -> u16 {
    let top = usize::from((fpu.fsw >> 11) & 7);
    let mut word = 0u16;
    for physical in 0..8usize {
        let tag = if fpu.ftwx & (1 << physical) == 0 {
            TAG_EMPTY
        } else {
            let st = (physical + 8 - top) % 8;
            fpu.fpr.get(st).map_or(TAG_SPECIAL, classify)
        };
        word |= tag << (physical * 2);
    }
    word
}

/// What an 80-bit register holds: zero, a normal number, or something
/// special (a denormal, an infinity, a NaN, an unnormal).
fn classify(reg: &[u8; 16]) -> u16 {
    let mut mantissa = [0u8; 8];
    mantissa.copy_from_slice(&reg[..8]);
    let mantissa = u64::from_le_bytes(mantissa);
    let exponent = u16::from_le_bytes([reg[8], reg[9]]) & 0x7FFF;
    match exponent {
        0x7FFF => TAG_SPECIAL,
        0 if mantissa == 0 => TAG_ZERO,
        0 => TAG_SPECIAL,
        _ if mantissa >> 63 == 0 => TAG_SPECIAL,
        _ => TAG_VALID,
    }
}

/// FXSAVE's abridged tag: a register is in use unless gdb's tag says empty.
fn abridged_tag_word(full: u16) -> u8 {
    (0..8).fold(0u8, |abridged, physical| {
        if (full >> (physical * 2)) & 3 == TAG_EMPTY {
            abridged
        } else {
            abridged | (1 << physical)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1.0 as an 80-bit number.
    const ONE: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0x80, 0xFF, 0x3F, 0, 0, 0, 0, 0, 0];

    #[test]
    fn registers_go_to_gdb_and_back() {
        let mut fpu = kvm_fpu {
            fcw: 0x37F,
            // TOP = 7: one value pushed.
            fsw: 7 << 11,
            ftwx: 1 << 7,
            last_opcode: 0x1E8,
            last_ip: 0x0000_7FFF_1234_5678,
            last_dp: 0x0000_0001_0000_0010,
            mxcsr: 0x1F80,
            ..Default::default()
        };
        fpu.fpr[0] = ONE;
        fpu.xmm[0] = 0x1122_3344_5566_7788_99AA_BBCC_DDEE_FF00u128.to_le_bytes();
        fpu.xmm[15] = 42u128.to_le_bytes();
        let mut regs = X86_64CoreRegs::default();
        read_into(&fpu, &mut regs);
        assert_eq!(regs.xmm[0], 0x1122_3344_5566_7788_99AA_BBCC_DDEE_FF00);
        assert_eq!(regs.xmm[15], 42);
        assert_eq!(regs.mxcsr, 0x1F80);
        assert_eq!(regs.st[0], ONE[..10]);
        assert_eq!(regs.fpu.fctrl, 0x37F);
        assert_eq!(regs.fpu.fstat, 7 << 11);
        // Physical register 7 (ST0) valid, the rest empty.
        assert_eq!(regs.fpu.ftag, 0x3FFF);
        assert_eq!((regs.fpu.fiseg, regs.fpu.fioff), (0x7FFF, 0x1234_5678));
        assert_eq!((regs.fpu.foseg, regs.fpu.fooff), (1, 0x10));
        assert_eq!(regs.fpu.fop, 0x1E8);

        let mut back = kvm_fpu::default();
        write_from(&regs, &mut back);
        assert_eq!(back.fpr, fpu.fpr);
        assert_eq!(back.xmm, fpu.xmm);
        assert_eq!(
            (back.fcw, back.fsw, back.ftwx, back.last_opcode),
            (fpu.fcw, fpu.fsw, fpu.ftwx, fpu.last_opcode)
        );
        assert_eq!(
            (back.last_ip, back.last_dp, back.mxcsr),
            (fpu.last_ip, fpu.last_dp, fpu.mxcsr)
        );
    }

    #[test]
    fn tags_say_what_each_register_holds() {
        let mut fpu = kvm_fpu {
            ftwx: 0b0000_1111,
            ..Default::default()
        };
        // TOP = 0: ST(i) is physical register i.
        fpu.fpr[0] = ONE;
        fpu.fpr[1] = [0; 16];
        fpu.fpr[2] = [0, 0, 0, 0, 0, 0, 0, 0xC0, 0xFF, 0x7F, 0, 0, 0, 0, 0, 0];
        fpu.fpr[3] = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let word = full_tag_word(&fpu);
        assert_eq!(
            word,
            0xFF00 | (TAG_SPECIAL << 6) | (TAG_SPECIAL << 4) | (TAG_ZERO << 2)
        );
        assert_eq!(abridged_tag_word(word), 0b0000_1111);
    }
}
