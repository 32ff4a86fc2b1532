//! Where a Linux program's system call returns to, decided from CS at
//! each exit on the system-call port (docs/linux.md):
//!
//! - at ring 3 (kvm-pvm, where `syscall` does not change rings, or a plain
//!   `out` from the program), kvmini resumes the program itself: RIP =
//!   RCX, RFLAGS from R11 as SYSRET takes it;
//! - at ring 0 (ordinary KVM, where the stub runs in ring 0), kvmini
//!   resumes at the stub's `sysretq`, so that the CPU drops privilege
//!   architecturally, after checking RCX is canonical and cleaning R11;
//!   an exit at ring 0 from anywhere but the stub cannot return.
//!
//! A non-canonical RCX never returns, whichever the ring.

use kvm_bindings::kvm_regs;

use crate::arch::x86_64::syscall::{is_canonical, sysret_rflags, STUB_SYSRET};

/// Why a system call cannot return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadReturn {
    /// RCX at the exit.
    pub rcx: u64,
    /// RIP at the exit.
    pub rip: u64,
    /// The ring of the exit.
    pub ring: u8,
}

/// The registers the program resumes with after a system call whose
/// result is `result`, made at `ring` with `regs` (RIP just past the
/// `out`), with kvmini's stub at `stub`.
pub fn return_path(
    ring: u8,
    regs: &kvm_regs,
    stub: u64,
    result: u64,
) -> Result<kvm_regs, BadReturn> {
    let bad = BadReturn {
        rcx: regs.rcx,
        rip: regs.rip,
        ring,
    };
    if !is_canonical(regs.rcx) {
        return Err(bad);
    }
    let mut next = *regs;
    next.rax = result;
    match ring {
        3 => {
            next.rip = regs.rcx;
            next.rflags = sysret_rflags(regs.r11);
        }
        0 if stub.checked_add(STUB_SYSRET) == Some(regs.rip) => {
            // `sysretq` loads RFLAGS from R11 itself: only clean bits go in.
            next.r11 = sysret_rflags(regs.r11);
        }
        _ => return Err(bad),
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::syscall::{RFLAGS_NT, RFLAGS_RF, RFLAGS_TF, RFLAGS_VM};

    const STUB: u64 = 0x3F_F000;

    fn exit(rip: u64, rcx: u64, r11: u64) -> kvm_regs {
        kvm_regs {
            rip,
            rcx,
            r11,
            rax: 1,
            rdi: 7,
            rsp: 0x10_0000,
            rflags: 0x3002,
            ..Default::default()
        }
    }

    #[test]
    fn at_ring_3_the_program_resumes_at_rcx_with_clean_flags() {
        let regs = exit(STUB + 2, 0x40_1234, u64::MAX);
        let next = return_path(3, &regs, STUB, 42).unwrap();
        assert_eq!((next.rip, next.rax, next.rsp), (0x40_1234, 42, 0x10_0000));
        assert_eq!(next.rflags, 0x3C_3ED7);
        for bit in [RFLAGS_TF, RFLAGS_NT, RFLAGS_RF, RFLAGS_VM] {
            assert_eq!(next.rflags & bit, 0);
        }
        // The other registers are the program's, RCX and R11 included.
        assert_eq!((next.rdi, next.rcx, next.r11), (7, 0x40_1234, u64::MAX));
    }

    #[test]
    fn a_forged_out_at_ring_3_resumes_at_rcx_too() {
        // An `out` from anywhere in the program: RIP is not the stub's.
        let regs = exit(0x40_5000, 0x40_6000, 0x202);
        let next = return_path(3, &regs, STUB, 0).unwrap();
        assert_eq!((next.rip, next.rflags), (0x40_6000, 0x3202));
    }

    #[test]
    fn at_ring_0_the_stub_returns_through_sysret() {
        let regs = exit(STUB + 2, 0x40_1234, u64::MAX);
        let next = return_path(0, &regs, STUB, 5).unwrap();
        // RIP stays at `sysretq`; R11 is what it will load into RFLAGS.
        assert_eq!((next.rip, next.rax, next.rcx), (STUB + 2, 5, 0x40_1234));
        assert_eq!(next.r11, 0x3C_3ED7);
        assert_eq!(next.rflags, regs.rflags);
    }

    #[test]
    fn at_ring_0_only_the_stub_may_exit_on_the_port() {
        for rip in [STUB, STUB + 1, STUB + 3, 0x40_0000, 2, u64::MAX] {
            let regs = exit(rip, 0x40_1234, 0x202);
            assert_eq!(
                return_path(0, &regs, STUB, 0),
                Err(BadReturn {
                    rcx: 0x40_1234,
                    rip,
                    ring: 0
                })
            );
        }
        // A stub at the very top cannot wrap to match.
        let regs = exit(1, 0x40_1234, 0);
        assert!(return_path(0, &regs, u64::MAX, 0).is_err());
    }

    #[test]
    fn rings_1_and_2_never_return() {
        for ring in [1, 2] {
            let regs = exit(STUB + 2, 0x40_1234, 0x202);
            assert!(return_path(ring, &regs, STUB, 0).is_err());
        }
    }

    #[test]
    fn a_non_canonical_rcx_never_returns() {
        for rcx in [
            1 << 47,
            0x8000_0000_0000_0000,
            0xFFFF_7FFF_FFFF_FFFF,
            0x0001_0000_0000_0000,
        ] {
            for ring in [0, 3] {
                let regs = exit(STUB + 2, rcx, u64::MAX);
                assert_eq!(
                    return_path(ring, &regs, STUB, 0),
                    Err(BadReturn {
                        rcx,
                        rip: STUB + 2,
                        ring
                    })
                );
            }
        }
    }
}
