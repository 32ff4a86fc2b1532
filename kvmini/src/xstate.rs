//! The extended CPU state (XSAVE): what kvmini sets at build (CR4.OSXSAVE
//! and XCR0), and the whole x87, SSE, AVX, AVX-512 and PKRU state that a
//! reusable sandbox saves once and restores at every reset.
//!
//! `KVM_GET_FPU`/`KVM_SET_FPU` cover only the legacy x87/SSE area. A ring-3
//! guest may use every component its CPU has, whatever kvmini set: on
//! nested KVM through kvm-pvm ring-3 code runs under the host's CR4 and
//! XCR0, so AVX registers and PKRU work even when the guest's CR4.OSXSAVE
//! is clear. So kvmini sets them deliberately, to what KVM supports, and a
//! reset restores the whole XSAVE area (`KVM_SET_XSAVE`).

use kvm_bindings::{kvm_fpu, kvm_xcr, kvm_xcrs, kvm_xsave, CpuId, Xsave};
use kvm_ioctls::{Cap, VcpuFd, VmFd};

use crate::cpu;
use crate::kvm::Kvm;

/// Errors of reading or setting the extended state.
#[derive(Debug, thiserror::Error)]
pub enum XstateError {
    /// `KVM_SET_XCRS` refused the XCR0 that KVM's CPUID lists.
    #[error("cannot set the vCPU's XCR0 to {xcr0:#x}")]
    SetXcr0 {
        /// The value.
        xcr0: u64,
        /// The KVM error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// `KVM_GET_XSAVE` (or `KVM_GET_XSAVE2`) failed.
    #[error("cannot read the vCPU's extended state")]
    Get(#[source] kvm_ioctls::Error),
    /// `KVM_SET_XSAVE` failed.
    #[error("cannot set the vCPU's extended state")]
    Set(#[source] kvm_ioctls::Error),
    /// `KVM_GET_FPU`/`KVM_SET_FPU` failed (a CPU without XSAVE).
    #[error("cannot read or set the vCPU's FPU state")]
    Fpu(#[source] kvm_ioctls::Error),
    /// KVM_CAP_XSAVE2 gave a size kvmini cannot allocate.
    #[error("KVM reports an extended state of {0} bytes")]
    Size(i32),
}

/// CPUID.1:ECX.XSAVE.
const CPUID_1_ECX_XSAVE: u32 = 1 << 26;
/// XCR0's x87 and SSE bits, which every valid XCR0 with SSE has.
const XCR0_X87_SSE: u64 = 0b11;

/// The XCR0 kvmini gives a guest: every user state component that KVM
/// supports (CPUID leaf 0xD, sub-leaf 0, EDX:EAX, of KVM's supported
/// CPUID), or `None` when the vCPU has no XSAVE.
pub fn supported_xcr0(cpuid: &CpuId) -> Option<u64> {
    let xsave = cpu::cpuid_entry(cpuid, 1, 0).is_some_and(|e| e.ecx & CPUID_1_ECX_XSAVE != 0);
    let xcr0 = supported_xcr0_components(cpuid);
    (xsave && xcr0 & XCR0_X87_SSE == XCR0_X87_SSE).then_some(xcr0)
}

/// Sets the vCPU's XCR0 (`KVM_SET_XCRS`); the vCPU's CPUID must be set
/// first, since KVM checks XCR0 against it.
pub fn set_xcr0(fd: &VcpuFd, xcr0: u64) -> Result<(), XstateError> {
    let mut xcrs = kvm_xcrs {
        nr_xcrs: 1,
        ..Default::default()
    };
    xcrs.xcrs[0] = kvm_xcr {
        xcr: 0,
        reserved: 0,
        value: xcr0,
    };
    fd.set_xcrs(&xcrs)
        .map_err(|source| XstateError::SetXcr0 { xcr0, source })
}

/// A vCPU's whole floating-point and vector state, as a reset restores it.
#[derive(Debug)]
pub enum ExtendedState {
    /// The 4 KiB XSAVE area of `KVM_GET_XSAVE`: every component XCR0
    /// enables, PKRU included, where they fit in 4 KiB.
    Xsave(Box<kvm_xsave>),
    /// A larger XSAVE area (`KVM_CAP_XSAVE2` bytes, read with
    /// `KVM_GET_XSAVE2`).
    Xsave2(Xsave),
    /// A CPU without XSAVE: the legacy x87/SSE state is all there is.
    Legacy(Box<kvm_fpu>),
}

impl ExtendedState {
    /// Reads the vCPU's state: the XSAVE area where KVM has
    /// `KVM_GET_XSAVE` (whatever the vCPU's CPUID says: on kvm-pvm it
    /// lists no XSAVE, yet ring-3 code uses AVX), the legacy FPU state
    /// otherwise.
    pub fn save(kvm: &Kvm, fd: &VcpuFd) -> Result<Self, XstateError> {
        let handle = kvm.handle();
        let mut state = Self::read(
            handle.check_extension(Cap::Xsave),
            handle.check_extension_int(Cap::Xsave2),
            fd,
        )?;
        match &mut state {
            ExtendedState::Xsave(area) => pin_pkru(&mut area.region, kvm.supported_cpuid()),
            ExtendedState::Xsave2(area) => {
                // SAFETY: only the fixed 4 KiB region changes, never the
                // length of the flexible array.
                let region = unsafe { &mut area.as_mut_fam_struct().xsave.region };
                pin_pkru(region, kvm.supported_cpuid());
            }
            ExtendedState::Legacy(_) => {}
        }
        Ok(state)
    }

    /// Reads the vCPU's state as it is, for a debugger: what
    /// [`ExtendedState::save`] reads, with the capabilities asked of the
    /// VM.
    pub fn read_now(vm: &VmFd, fd: &VcpuFd) -> Result<Self, XstateError> {
        Self::read(
            vm.check_extension(Cap::Xsave),
            vm.check_extension_int(Cap::Xsave2),
            fd,
        )
    }

    /// Reads the XSAVE area, of the size KVM_CAP_XSAVE2 gave (`size`),
    /// where KVM has `KVM_GET_XSAVE` (`xsave`), the legacy FPU state
    /// otherwise.
    fn read(xsave: bool, size: i32, fd: &VcpuFd) -> Result<Self, XstateError> {
        if !xsave {
            return Ok(ExtendedState::Legacy(Box::new(
                fd.get_fpu().map_err(XstateError::Fpu)?,
            )));
        }
        let legacy = std::mem::size_of::<kvm_xsave>();
        let bytes = usize::try_from(size).map_err(|_| XstateError::Size(size))?;
        if bytes <= legacy {
            return Ok(ExtendedState::Xsave(Box::new(
                fd.get_xsave().map_err(XstateError::Get)?,
            )));
        }
        let extra = (bytes - legacy).div_ceil(std::mem::size_of::<u32>());
        let mut area = Xsave::new(extra).map_err(|_| XstateError::Size(size))?;
        // SAFETY: the area holds `bytes` (KVM_CAP_XSAVE2) bytes, all that
        // KVM_GET_XSAVE2 writes; kvmini enables no dynamic state components
        // that could grow it afterwards.
        unsafe { fd.get_xsave2(&mut area) }.map_err(XstateError::Get)?;
        Ok(ExtendedState::Xsave2(area))
    }

    /// The x87 and SSE registers: the legacy region of the XSAVE area.
    /// (`KVM_GET_FPU` reads MXCSR wrong on kvm-pvm: docs/walkthrough.md.)
    pub fn fpu(&self) -> kvm_fpu {
        match self {
            ExtendedState::Xsave(area) => fpu_from_region(&area.region),
            ExtendedState::Xsave2(area) => fpu_from_region(&area.as_fam_struct_ref().xsave.region),
            ExtendedState::Legacy(fpu) => **fpu,
        }
    }

    /// Replaces the x87 and SSE registers, and marks both components as
    /// in use so that KVM takes them from the area.
    pub fn set_fpu(&mut self, fpu: &kvm_fpu) {
        match self {
            ExtendedState::Xsave(area) => fpu_into_region(fpu, &mut area.region),
            ExtendedState::Xsave2(area) => {
                // SAFETY: only the fixed 4 KiB region changes, never the
                // length of the flexible array.
                let region = unsafe { &mut area.as_mut_fam_struct().xsave.region };
                fpu_into_region(fpu, region);
            }
            ExtendedState::Legacy(old) => **old = *fpu,
        }
    }

    /// Sets the vCPU's state back to what [`ExtendedState::save`] read.
    pub fn restore(&self, fd: &VcpuFd) -> Result<(), XstateError> {
        match self {
            // SAFETY: KVM_CAP_XSAVE2 said the state fits the 4 KiB of
            // `kvm_xsave`, which is then all that KVM_SET_XSAVE reads.
            ExtendedState::Xsave(area) => unsafe { fd.set_xsave(area) }.map_err(XstateError::Set),
            // SAFETY: the area is as large as KVM_CAP_XSAVE2 said when it
            // was read, which is all that KVM_SET_XSAVE reads.
            ExtendedState::Xsave2(area) => unsafe { fd.set_xsave2(area) }.map_err(XstateError::Set),
            ExtendedState::Legacy(fpu) => fd.set_fpu(fpu).map_err(XstateError::Fpu),
        }
    }
}

/// The FXSAVE layout of the legacy region: the offsets of the x87 and SSE
/// fields, in bytes.
const FX_FCW: usize = 0;
const FX_FSW: usize = 2;
const FX_FTW: usize = 4;
const FX_FOP: usize = 6;
const FX_FIP: usize = 8;
const FX_FDP: usize = 16;
const FX_MXCSR: usize = 24;
const FX_ST: usize = 32;
const FX_XMM: usize = 160;

/// The legacy region's x87 and SSE registers.
fn fpu_from_region(region: &[u32; 1024]) -> kvm_fpu {
    let bytes: Vec<u8> = region
        .iter()
        .take(128)
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let mut fpu = kvm_fpu::default();
    let at = |offset: usize, n: usize| bytes.get(offset..offset + n).unwrap_or_default();
    let u16_at = |offset| at(offset, 2).try_into().map_or(0, u16::from_le_bytes);
    let u64_at = |offset| at(offset, 8).try_into().map_or(0, u64::from_le_bytes);
    fpu.fcw = u16_at(FX_FCW);
    fpu.fsw = u16_at(FX_FSW);
    fpu.ftwx = at(FX_FTW, 1).first().copied().unwrap_or_default();
    fpu.last_opcode = u16_at(FX_FOP);
    fpu.last_ip = u64_at(FX_FIP);
    fpu.last_dp = u64_at(FX_FDP);
    fpu.mxcsr = at(FX_MXCSR, 4).try_into().map_or(0, u32::from_le_bytes);
    for (i, st) in fpu.fpr.iter_mut().enumerate() {
        st.copy_from_slice(at(FX_ST + i * 16, 16));
    }
    for (i, xmm) in fpu.xmm.iter_mut().enumerate() {
        xmm.copy_from_slice(at(FX_XMM + i * 16, 16));
    }
    fpu
}

/// Writes the x87 and SSE registers into the legacy region, and lists both
/// components in XSTATE_BV.
fn fpu_into_region(fpu: &kvm_fpu, region: &mut [u32; 1024]) {
    let mut bytes: Vec<u8> = region
        .iter()
        .take(128)
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let mut put = |offset: usize, value: &[u8]| {
        if let Some(dst) = bytes.get_mut(offset..offset + value.len()) {
            dst.copy_from_slice(value);
        }
    };
    put(FX_FCW, &fpu.fcw.to_le_bytes());
    put(FX_FSW, &fpu.fsw.to_le_bytes());
    put(FX_FTW, &[fpu.ftwx]);
    put(FX_FOP, &fpu.last_opcode.to_le_bytes());
    put(FX_FIP, &fpu.last_ip.to_le_bytes());
    put(FX_FDP, &fpu.last_dp.to_le_bytes());
    put(FX_MXCSR, &fpu.mxcsr.to_le_bytes());
    for (i, st) in fpu.fpr.iter().enumerate() {
        put(FX_ST + i * 16, st);
    }
    for (i, xmm) in fpu.xmm.iter().enumerate() {
        put(FX_XMM + i * 16, xmm);
    }
    for (word, chunk) in region.iter_mut().zip(bytes.chunks_exact(4)) {
        let mut le = [0u8; 4];
        le.copy_from_slice(chunk);
        *word = u32::from_le_bytes(le);
    }
    if let Some(bv) = region.get_mut(XSTATE_BV_WORD) {
        *bv |= u32::try_from(XCR0_X87_SSE).unwrap_or(3);
    }
}

/// XCR0's PKRU bit.
const XCR0_PKRU: u64 = 1 << 9;
/// Offset of the XSAVE header's XSTATE_BV in the area, in 32-bit words.
const XSTATE_BV_WORD: usize = 512 / 4;

/// Makes a saved area restore PKRU too. KVM keeps the guest's PKRU apart
/// from the rest of the state and takes it from `KVM_SET_XSAVE` only when
/// the header's XSTATE_BV lists it; an area read from a fresh vCPU (PKRU 0,
/// its initial value) does not, so a reset would leave the value a guest
/// wrote. This lists it, with the value 0 where the area had none, at the
/// offset CPUID leaf 0xD sub-leaf 9 gives.
fn pin_pkru(region: &mut [u32; 1024], cpuid: &CpuId) {
    let supported = supported_xcr0_components(cpuid);
    let Some(leaf) = cpu::cpuid_entry(cpuid, 0xD, 9) else {
        return;
    };
    let Ok(offset) = usize::try_from(leaf.ebx / 4) else {
        return;
    };
    if supported & XCR0_PKRU == 0 || offset == 0 || offset >= region.len() {
        return;
    }
    // XSTATE_BV's low word holds bit 9.
    let bit = 1u32 << XCR0_PKRU.trailing_zeros();
    if region[XSTATE_BV_WORD] & bit == 0 {
        region[offset] = 0;
        region[XSTATE_BV_WORD] |= bit;
    }
}

/// The state components KVM supports (CPUID leaf 0xD sub-leaf 0, EDX:EAX),
/// whether or not its CPUID lists XSAVE itself.
fn supported_xcr0_components(cpuid: &CpuId) -> u64 {
    cpu::cpuid_entry(cpuid, 0xD, 0).map_or(0, |d| u64::from(d.eax) | (u64::from(d.edx) << 32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn cpuid(entries: &[(u32, u32, u32, u32)]) -> CpuId {
        let entries: Vec<kvm_cpuid_entry2> = entries
            .iter()
            .map(|&(function, index, eax, ebx)| kvm_cpuid_entry2 {
                function,
                index,
                eax,
                ebx,
                ..Default::default()
            })
            .collect();
        CpuId::from_entries(&entries).unwrap()
    }

    #[test]
    fn pkru_is_listed_with_its_initial_value_where_kvm_has_it() {
        let with_pkru = cpuid(&[(0xD, 0, 0x207, 0), (0xD, 9, 8, 0x980)]);
        let mut region = [0xAAAA_AAAAu32; 1024];
        region[XSTATE_BV_WORD] = 0;
        pin_pkru(&mut region, &with_pkru);
        assert_eq!(region[XSTATE_BV_WORD], 1 << 9);
        assert_eq!(region[0x980 / 4], 0);
        // Already listed: the saved value stays.
        let mut listed = [0u32; 1024];
        listed[XSTATE_BV_WORD] = 1 << 9;
        listed[0x980 / 4] = 0x5555_5554;
        pin_pkru(&mut listed, &with_pkru);
        assert_eq!(listed[0x980 / 4], 0x5555_5554);
        // No PKRU: nothing changes.
        let without = cpuid(&[(0xD, 0, 0x7, 0), (0xD, 9, 8, 0x980)]);
        let mut untouched = [7u32; 1024];
        pin_pkru(&mut untouched, &without);
        assert_eq!(untouched, [7u32; 1024]);
    }

    #[test]
    fn fpu_registers_go_into_the_region_and_back() {
        let mut fpu = kvm_fpu {
            fcw: 0x37F,
            fsw: 0x3800,
            ftwx: 0x80,
            last_opcode: 0x1E8,
            last_ip: 0x7FFF_0000_1234,
            last_dp: 0x10,
            mxcsr: 0x1F80,
            ..Default::default()
        };
        fpu.fpr[0] = [1; 16];
        fpu.xmm[0] = [0x11; 16];
        fpu.xmm[15] = [0xFF; 16];
        let mut region = [0u32; 1024];
        region[1023] = 0xDEAD;
        fpu_into_region(&fpu, &mut region);
        assert_eq!(region[FX_MXCSR / 4], 0x1F80);
        assert_eq!(region[FX_XMM / 4], 0x1111_1111);
        assert_eq!(region[XSTATE_BV_WORD], 3);
        assert_eq!(region[1023], 0xDEAD);
        let back = fpu_from_region(&region);
        assert_eq!(
            (
                back.fcw,
                back.fsw,
                back.ftwx,
                back.last_opcode,
                back.last_ip,
                back.last_dp
            ),
            (0x37F, 0x3800, 0x80, 0x1E8, 0x7FFF_0000_1234, 0x10)
        );
        assert_eq!(
            (back.mxcsr, back.fpr, back.xmm),
            (fpu.mxcsr, fpu.fpr, fpu.xmm)
        );
    }

    #[test]
    fn xcr0_needs_xsave_in_cpuid() {
        assert_eq!(supported_xcr0(&cpuid(&[(0xD, 0, 0x207, 0)])), None);
        let mut with_xsave = cpuid(&[(0xD, 0, 0x207, 0), (1, 0, 0, 0)]);
        with_xsave.as_mut_slice()[1].ecx = CPUID_1_ECX_XSAVE;
        assert_eq!(supported_xcr0(&with_xsave), Some(0x207));
    }
}
