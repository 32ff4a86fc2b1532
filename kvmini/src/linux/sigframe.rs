//! Linux's x86-64 signal frame (`struct rt_sigframe`), as kvmini writes it
//! on a program's stack to run a handler and reads it back at
//! `rt_sigreturn` (docs/linux.md, "Signals"), and the extended-state
//! format of its `fpstate`.
//!
//! The frame, from its lowest address: the return address (the action's
//! `sa_restorer`), the `ucontext` (flags, link, the alternate stack, the
//! `sigcontext` with every general register, the old blocked mask), the
//! `siginfo`; above it, 64-byte aligned, the XSAVE area that the CPU fills
//! itself (kvmini's trampoline runs `xsave64` at ring 3), with Linux's
//! software bytes and its closing magic word.

use kvm_bindings::kvm_regs;

use crate::addr::Gva;
use crate::arch::x86_64::cpu::{USER_CS, USER_DS};
use crate::view::{GuestView, ViewError};

/// What Linux leaves untouched below a program's RSP.
pub const RED_ZONE: u64 = 128;
/// `sizeof(struct rt_sigframe)`: return address, `ucontext`, `siginfo`.
pub const FRAME_SIZE: u64 = 440;
/// Where the `ucontext` starts in the frame.
pub const UCONTEXT: u64 = 8;
/// Where the `siginfo` starts in the frame.
pub const SIGINFO: u64 = 312;
/// The `ucontext` in 8-byte words: flags, link, `stack_t` (3),
/// `sigcontext` (32), the blocked mask.
const UCONTEXT_WORDS: usize = 38;
/// Where the `sigcontext` starts in the `ucontext`, in words.
const MCONTEXT_WORD: usize = 5;
/// The `sigcontext` word of the `fpstate` pointer.
const FPSTATE_WORD: usize = 23;
const SIGINFO_BYTES: usize = 128;

const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;

/// The magic words of an XSAVE `fpstate`: in the software bytes of the
/// legacy region, and just past the XSAVE area.
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// Where the software bytes sit in the legacy region (XSAVE never
/// writes them).
const SW_BYTES: usize = 464;
/// Where the XSAVE header sits.
const XSAVE_HEADER: usize = 512;
const XSAVE_HEADER_END: usize = 576;
const FX_MXCSR: usize = 24;
/// The MXCSR bits that exist; a set reserved bit is a #GP on restore.
const MXCSR_VALID: u32 = 0xFFFF;
/// The state components whose registers Linux leaves out of a signal
/// frame unless a program asks for them (AMX tile configuration and data).
const DYNAMIC_FEATURES: u64 = (1 << 17) | (1 << 18);
/// x87 and SSE, which every XSAVE format holds.
const LEGACY_FEATURES: u64 = 0b11;

/// How the program's floating-point and vector state goes into a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XstateFormat {
    /// `xsave64`/`xrstor64` (with Linux's magic words), or only
    /// `fxsave64`/`fxrstor64` where the CPU has no XSAVE enabled.
    pub xsave: bool,
    /// The components saved: the host's XCR0 without the dynamic ones.
    pub features: u64,
    /// Bytes of the XSAVE area for those components (512 for FXSAVE).
    pub size: u64,
}

impl XstateFormat {
    /// The format of this host's CPU. A ring-3 program uses the host's
    /// XCR0 on kvm-pvm, and on ordinary KVM kvmini gives it at most what
    /// KVM supports, which the host enables: either way the host's size is
    /// enough.
    pub fn of_host() -> Self {
        let leaf1 = std::arch::x86_64::__cpuid_count(1, 0);
        if leaf1.ecx & (1 << 27) == 0 {
            return Self::LEGACY;
        }
        // SAFETY: CPUID.1:ECX.OSXSAVE says the OS enabled `xgetbv`.
        let xcr0 = unsafe { std::arch::x86_64::_xgetbv(0) };
        let features = xcr0 & !DYNAMIC_FEATURES;
        let mut size = XSAVE_HEADER_END as u64;
        for component in 2..63u32 {
            if features & (1 << component) != 0 {
                let leaf = std::arch::x86_64::__cpuid_count(0xD, component);
                size = size.max(u64::from(leaf.ebx) + u64::from(leaf.eax));
            }
        }
        XstateFormat {
            xsave: true,
            features,
            size,
        }
    }

    /// A CPU without XSAVE: the 512 bytes of `fxsave64`.
    pub const LEGACY: Self = XstateFormat {
        xsave: false,
        features: LEGACY_FEATURES,
        size: 512,
    };

    /// Bytes the `fpstate` takes on the stack: the area and, with XSAVE,
    /// the closing magic word.
    pub fn frame_bytes(&self) -> u64 {
        if self.xsave {
            self.size + 4
        } else {
            self.size
        }
    }
}

/// Why a signal is delivered, for its `siginfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// `kill` (and SIGPIPE, which Linux sends as `kill` would): SI_USER,
    /// from pid 1 and the program's uid.
    Kill,
    /// `tkill`/`tgkill` (`raise`): SI_TKILL, from pid 1 and its uid.
    Tkill,
    /// A fault of the program's: `si_code`, `si_addr`, and for the
    /// `sigcontext` the error code, the vector and CR2.
    Fault {
        /// `si_code`.
        code: i32,
        /// `si_addr`.
        addr: u64,
        /// `err`, `trapno`, `cr2`.
        trap: (u64, u64, u64),
    },
}

/// What a frame records of the code a signal interrupted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interrupted {
    /// Its registers (RIP, RSP and RFLAGS as it resumes).
    pub regs: kvm_regs,
    /// The blocked mask before the handler's.
    pub mask: u64,
    /// `stack_t` of the alternate stack: base, flags, size.
    pub altstack: [u64; 3],
}

/// Where a frame goes and what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The frame's lowest address: the return address (16n + 8).
    pub at: u64,
    /// The XSAVE area (64-byte aligned).
    pub fpstate: u64,
}

impl Frame {
    /// Places a frame below `top` (RSP less the red zone, or the top of
    /// the alternate stack), as Linux does; `None` when it would wrap.
    pub fn below(top: u64, format: &XstateFormat) -> Option<Frame> {
        let fpstate = top.checked_sub(format.frame_bytes())? & !63;
        let at = (fpstate.checked_sub(FRAME_SIZE)? & !15).checked_sub(8)?;
        Some(Frame { at, fpstate })
    }

    /// The address of the `siginfo`.
    pub fn siginfo(&self) -> u64 {
        self.at + SIGINFO
    }

    /// The address of the `ucontext`.
    pub fn ucontext(&self) -> u64 {
        self.at + UCONTEXT
    }

    /// Writes the frame: everything but the registers in the XSAVE area,
    /// which the trampoline's `xsave64` stores (its header zeroed first,
    /// as XSAVE leaves the header's other bytes as they are and XRSTOR
    /// refuses non-zero ones). The whole extent is checked writable before
    /// any byte is written.
    pub fn write(
        &self,
        view: &GuestView<'_>,
        format: &XstateFormat,
        (sig, cause, uid): (u64, Cause, u32),
        restorer: u64,
        interrupted: &Interrupted,
    ) -> Result<(), ViewError> {
        let end = self.fpstate + format.frame_bytes();
        let len = end - self.at;
        view.check_writable(Gva::new(self.at), len)?;
        let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
        let mut put = |offset: u64, value: &[u8]| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            if let Some(slot) = bytes.get_mut(start..start.saturating_add(value.len())) {
                slot.copy_from_slice(value);
            }
        };
        put(0, &restorer.to_le_bytes());
        let mut words = ucontext_words(interrupted, self.fpstate, format.xsave);
        if let Cause::Fault {
            trap: (err, trapno, cr2),
            ..
        } = cause
        {
            words[MCONTEXT_WORD + 19] = err;
            words[MCONTEXT_WORD + 20] = trapno;
            words[MCONTEXT_WORD + 22] = cr2;
        }
        for (i, word) in (0u64..).zip(words) {
            put(UCONTEXT + i * 8, &word.to_le_bytes());
        }
        let mut info = [0u8; SIGINFO_BYTES];
        info[0..4].copy_from_slice(&u32::try_from(sig).unwrap_or(0).to_le_bytes());
        match cause {
            Cause::Kill | Cause::Tkill => {
                let code: i32 = if cause == Cause::Kill { 0 } else { -6 };
                info[8..12].copy_from_slice(&code.to_le_bytes());
                info[16..20].copy_from_slice(&1u32.to_le_bytes());
                info[20..24].copy_from_slice(&uid.to_le_bytes());
            }
            Cause::Fault { code, addr, .. } => {
                info[8..12].copy_from_slice(&code.to_le_bytes());
                info[16..24].copy_from_slice(&addr.to_le_bytes());
            }
        }
        put(SIGINFO, &info);
        let fp = self.fpstate - self.at;
        if format.xsave {
            let size = u32::try_from(format.size).unwrap_or(0);
            let mut sw = [0u8; 48];
            sw[0..4].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
            sw[4..8].copy_from_slice(&(size + 4).to_le_bytes());
            sw[8..16].copy_from_slice(&format.features.to_le_bytes());
            sw[16..20].copy_from_slice(&size.to_le_bytes());
            put(fp + SW_BYTES as u64, &sw);
            put(fp + format.size, &FP_XSTATE_MAGIC2.to_le_bytes());
        }
        view.write_bytes(Gva::new(self.at), &bytes)
    }
}

/// The `ucontext` of `interrupted`, word by word.
fn ucontext_words(interrupted: &Interrupted, fpstate: u64, xsave: bool) -> [u64; UCONTEXT_WORDS] {
    let r = &interrupted.regs;
    let mut w = [0u64; UCONTEXT_WORDS];
    w[0] = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS | if xsave { UC_FP_XSTATE } else { 0 };
    w[2..5].copy_from_slice(&interrupted.altstack);
    let segments = u64::from(USER_CS) | (u64::from(USER_DS) << 48);
    let mcontext = [
        r.r8,
        r.r9,
        r.r10,
        r.r11,
        r.r12,
        r.r13,
        r.r14,
        r.r15,
        r.rdi,
        r.rsi,
        r.rbp,
        r.rbx,
        r.rdx,
        r.rax,
        r.rcx,
        r.rsp,
        r.rip,
        r.rflags,
        segments,
        0,
        0,
        interrupted.mask,
    ];
    w[MCONTEXT_WORD..MCONTEXT_WORD + mcontext.len()].copy_from_slice(&mcontext);
    w[MCONTEXT_WORD + FPSTATE_WORD] = fpstate;
    w[UCONTEXT_WORDS - 1] = interrupted.mask;
    w
}

/// What `rt_sigreturn` finds in a frame, not yet checked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Saved {
    /// The registers as the frame has them (RFLAGS and RIP unchecked).
    pub regs: kvm_regs,
    /// The blocked mask to restore.
    pub mask: u64,
    /// The alternate stack to restore (`stack_t`).
    pub altstack: [u64; 3],
    /// The `fpstate` pointer.
    pub fpstate: u64,
}

/// Reads the frame whose `ucontext` is at `ucontext`.
pub fn read_saved(view: &GuestView<'_>, ucontext: u64) -> Result<Saved, ViewError> {
    let w: [u64; UCONTEXT_WORDS] = view.read_obj(Gva::new(ucontext))?;
    let m = &w[MCONTEXT_WORD..];
    let regs = kvm_regs {
        r8: m[0],
        r9: m[1],
        r10: m[2],
        r11: m[3],
        r12: m[4],
        r13: m[5],
        r14: m[6],
        r15: m[7],
        rdi: m[8],
        rsi: m[9],
        rbp: m[10],
        rbx: m[11],
        rdx: m[12],
        rax: m[13],
        rcx: m[14],
        rsp: m[15],
        rip: m[16],
        rflags: m[17],
    };
    Ok(Saved {
        regs,
        mask: w[UCONTEXT_WORDS - 1],
        altstack: [w[2], w[3], w[4]],
        fpstate: m[FPSTATE_WORD],
    })
}

/// How a checked `fpstate` is restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// `xrstor64` with these components requested.
    Xrstor(u64),
    /// `fxrstor64`: the legacy region only (an area without Linux's magic
    /// words, as Linux restores it).
    Fxrstor,
}

/// Checks the `fpstate` at `at` as Linux does before restoring it, and
/// what the CPU would refuse (a #GP at ring 3): alignment, MXCSR's
/// reserved bits, and for XSAVE the magic words, the sizes, components
/// this host does not save, and the header's reserved bytes. `None` means
/// the frame is bad: the program ends as SIGSEGV.
pub fn check_fpstate(view: &GuestView<'_>, format: &XstateFormat, at: u64) -> Option<Restore> {
    let align = if format.xsave { 64 } else { 16 };
    if at == 0 || at % align != 0 {
        return None;
    }
    let legacy: [u8; 512] = view.read_obj(Gva::new(at)).ok()?;
    let mxcsr = u32::from_le_bytes(legacy[FX_MXCSR..FX_MXCSR + 4].try_into().ok()?);
    if mxcsr & !MXCSR_VALID != 0 {
        return None;
    }
    if !format.xsave {
        return Some(Restore::Fxrstor);
    }
    let word = |offset: usize| {
        legacy
            .get(offset..offset + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    let size = u64::from(word(SW_BYTES + 16));
    let extended = u64::from(word(SW_BYTES + 4));
    let magic2 = at
        .checked_add(size)
        .and_then(|end| view.read_obj::<u32>(Gva::new(end)).ok());
    if word(SW_BYTES) != FP_XSTATE_MAGIC1
        || size != format.size
        || extended < size + 4
        || magic2 != Some(FP_XSTATE_MAGIC2)
    {
        return Some(Restore::Fxrstor);
    }
    // The whole area must be readable; XRSTOR reads what its header lists.
    view.for_each_piece(Gva::new(at), format.frame_bytes(), false, |_, _| {})
        .ok()?;
    let header: [u64; 8] = view.read_obj(Gva::new(at + XSAVE_HEADER as u64)).ok()?;
    let requested = u64::from_le_bytes(legacy[SW_BYTES + 8..SW_BYTES + 16].try_into().ok()?);
    if header[0] & !format.features != 0 || header[1..].iter().any(|&w| w != 0) {
        return None;
    }
    Some(Restore::Xrstor(
        (requested & format.features) | LEGACY_FEATURES,
    ))
}

#[cfg(test)]
#[path = "sigframe_tests.rs"]
mod tests;
