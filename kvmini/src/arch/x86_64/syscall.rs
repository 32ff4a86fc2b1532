//! What `syscall` needs from the CPU for a Linux program: the MSRs that
//! send it to kvmini's stub, the stub's bytes, and the rules for going
//! back to the program as SYSRET does (docs/linux.md).

use super::bits::{RFLAGS_IOPL3, RFLAGS_RESERVED};
use super::cpu::{KERNEL_CS, USER_DS};

/// IA32_STAR: the segment selectors of `syscall` and `sysret`.
pub const MSR_STAR: u32 = 0xC000_0081;
/// IA32_LSTAR: where a 64-bit `syscall` jumps.
pub const MSR_LSTAR: u32 = 0xC000_0082;
/// IA32_FMASK: the RFLAGS bits `syscall` clears.
pub const MSR_FMASK: u32 = 0xC000_0084;

/// RFLAGS.TF (single step).
pub const RFLAGS_TF: u64 = 1 << 8;
/// RFLAGS.IF (interrupts enabled).
pub const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.DF (string direction).
pub const RFLAGS_DF: u64 = 1 << 10;
/// RFLAGS.IOPL (both bits).
pub const RFLAGS_IOPL: u64 = 3 << 12;
/// RFLAGS.NT (nested task).
pub const RFLAGS_NT: u64 = 1 << 14;
/// RFLAGS.RF (resume flag).
pub const RFLAGS_RF: u64 = 1 << 16;
/// RFLAGS.VM (virtual-8086 mode).
pub const RFLAGS_VM: u64 = 1 << 17;
/// RFLAGS.AC (alignment check).
pub const RFLAGS_AC: u64 = 1 << 18;

/// The RFLAGS bits SYSRET takes from R11 (the architecture's mask).
const SYSRET_RESTORES: u64 = 0x003C_7FD7;

/// STAR: `syscall` loads CS = KERNEL_CS and SS = KERNEL_CS + 8; `sysretq`
/// loads CS = base + 16 and SS = base + 8, with RPL 3: base = USER_DS - 8
/// gives USER_CS (0x23) and USER_DS (0x1b).
pub const STAR: u64 = ((USER_DS as u64 - 8) << 48) | ((KERNEL_CS as u64) << 32);

/// FMASK: the entry clears TF, DF, AC, NT and IF, never IOPL (on kvm-pvm
/// the stub runs at ring 3, where its `out` needs IOPL 3).
pub const FMASK: u64 = RFLAGS_TF | RFLAGS_DF | RFLAGS_AC | RFLAGS_NT | RFLAGS_IF;

/// The stub `syscall` jumps to: `out 0xE8, al` (the system-call port),
/// then `sysretq`, where ordinary KVM resumes a stub that ran at ring 0.
pub const STUB: [u8; 5] = [0xE6, 0xE8, 0x48, 0x0F, 0x07];

/// Offset of `sysretq` in [`STUB`]: where RIP is after the `out` exits.
pub const STUB_SYSRET: u64 = 2;

/// The RFLAGS a program resumes with after a system call, from the R11 it
/// holds: the bits SYSRET restores, without TF and NT (RF and VM are not
/// among them), with IOPL as kvmini set it (3) and the reserved bit 1.
pub const fn sysret_rflags(r11: u64) -> u64 {
    (r11 & SYSRET_RESTORES & !(RFLAGS_TF | RFLAGS_NT | RFLAGS_IOPL))
        | RFLAGS_IOPL3
        | RFLAGS_RESERVED
}

/// Whether `address` is canonical with 48-bit virtual addresses: bits 63
/// to 47 all equal. SYSRET to a non-canonical RCX faults at ring 0 on
/// some CPUs, so kvmini never returns to one.
pub const fn is_canonical(address: u64) -> bool {
    let top = address >> 47;
    top == 0 || top == (1 << 17) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_gives_the_user_and_kernel_selectors() {
        assert_eq!(STAR, 0x0013_0008_0000_0000);
        // sysretq: CS = base + 16 | 3, SS = base + 8 | 3.
        assert_eq!(((STAR >> 48) + 16) | 3, 0x23);
        assert_eq!(((STAR >> 48) + 8) | 3, 0x1b);
        assert_eq!((STAR >> 32) & 0xFFFF, 0x08);
    }

    #[test]
    fn fmask_never_clears_iopl() {
        assert_eq!(FMASK, 0x4_4700);
        assert_eq!(FMASK & RFLAGS_IOPL, 0);
    }

    #[test]
    fn sysret_rflags_drops_tf_nt_rf_vm_and_keeps_kvmini_iopl() {
        assert_eq!(sysret_rflags(u64::MAX), 0x3C_3ED7);
        for bit in [RFLAGS_TF, RFLAGS_NT, RFLAGS_RF, RFLAGS_VM] {
            assert_eq!(sysret_rflags(u64::MAX) & bit, 0);
        }
        assert_eq!(sysret_rflags(0), 0x3002);
        // IOPL 0 in R11 does not lower kvmini's.
        assert_eq!(sysret_rflags(0x202) & RFLAGS_IOPL, RFLAGS_IOPL3);
        // The arithmetic flags, IF, DF and AC come back.
        assert_eq!(sysret_rflags(0x4_0ED5), 0x4_3ED7);
    }

    #[test]
    fn canonical_addresses() {
        for a in [0, 0x7FFF_FFFF_FFFF, 0xFFFF_8000_0000_0000, u64::MAX] {
            assert!(is_canonical(a), "{a:#x}");
        }
        for a in [0x8000_0000_0000, 0xFFFF_7FFF_FFFF_FFFF, 1 << 63, 1 << 48] {
            assert!(!is_canonical(a), "{a:#x}");
        }
    }
}
