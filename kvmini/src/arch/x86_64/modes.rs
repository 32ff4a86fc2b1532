//! The CPU modes a guest can start in: 16-bit real mode, 32-bit
//! protected mode without paging, with two-level (non-PAE) paging and with
//! PAE paging (the four modes of the classic KVM "hello world", for flat
//! images at ring 0), and 64-bit long mode, kvmini's default. Their boot
//! state is in `boot.rs`; what nested KVM runs: docs/kvm-pvm.md.

use std::fmt;

use super::cpu::Ring;
use crate::layout::{Layout, Region};
use crate::loader::LoadedImage;

/// The CPU mode a guest starts in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CpuMode {
    /// 16-bit real mode: CS:IP = 0:0, segments with base 0, no paging.
    Real,
    /// 32-bit protected mode without paging: flat segments from a GDT.
    Protected,
    /// 32-bit protected mode with two-level (non-PAE) paging: 4 MiB pages
    /// (CR4.PSE), identity-mapped.
    Paged32,
    /// 32-bit protected mode with PAE paging: three levels, 2 MiB pages,
    /// identity-mapped.
    Pae32,
    /// 64-bit long mode: kvmini's default, for ELF and flat images.
    #[default]
    Long,
}

impl CpuMode {
    /// Every mode, in the order the classic hello world runs them.
    pub const ALL: [CpuMode; 5] = [
        CpuMode::Real,
        CpuMode::Protected,
        CpuMode::Paged32,
        CpuMode::Pae32,
        CpuMode::Long,
    ];

    /// The mode's name, as the command line takes it.
    pub const fn name(self) -> &'static str {
        match self {
            CpuMode::Real => "real",
            CpuMode::Protected => "protected",
            CpuMode::Paged32 => "paged32",
            CpuMode::Pae32 => "pae32",
            CpuMode::Long => "long",
        }
    }

    /// What the mode is, in words.
    pub const fn description(self) -> &'static str {
        match self {
            CpuMode::Real => "16-bit real mode",
            CpuMode::Protected => "32-bit protected mode without paging",
            CpuMode::Paged32 => "32-bit protected mode with two-level (non-PAE) paging",
            CpuMode::Pae32 => "32-bit protected mode with PAE paging",
            CpuMode::Long => "64-bit long mode",
        }
    }
}

impl fmt::Display for CpuMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of asking for a mode with options it cannot take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    /// Ring 3 with a mode other than long mode.
    #[error("ring 3 needs long mode: in {0} mode the guest runs at ring 0")]
    RingThree(CpuMode),
    /// An ELF image with a mode other than long mode.
    #[error("{0} mode runs flat images only: ELF guests are 64-bit and run in long mode")]
    NotFlat(CpuMode),
}

/// Checks that a guest can run in `mode`: modes other than long mode take
/// flat images only, at ring 0 (`ring` is `None` or ring 0).
pub fn check(mode: CpuMode, flat: bool, ring: Option<Ring>) -> Result<(), ModeError> {
    if mode == CpuMode::Long {
        return Ok(());
    }
    if !flat {
        return Err(ModeError::NotFlat(mode));
    }
    if ring == Some(Ring::Three) {
        return Err(ModeError::RingThree(mode));
    }
    Ok(())
}

/// Real mode's stack: SS:SP = 0:0x7000, below 64 KiB so that segment 0
/// reaches it. A flat image longer than 0x7000 bytes overlaps it and must
/// set up its own stack.
pub const REAL_MODE_STACK: u64 = 0x7000;
/// Real mode addresses (segment × 16 + offset, at most 0xFFFF × 16 +
/// 0xFFFF) end here, 16 bytes short of 1 MiB + 64 KiB. A flat image loads
/// as in the other modes (anywhere below kvmini's area), but real-mode
/// code reaches only this much of it.
pub const REAL_MODE_REACH: u64 = 0x10_FFF0;

/// Real mode's IDTR limit: 256 vectors of 4 bytes (segment:offset) from
/// address 0, the interrupt vector table.
pub const REAL_MODE_IVT_LIMIT: u16 = 0x3FF;

const SIZE_1G: u64 = 1 << 30;

/// Whether some hosts' KVM refuses to run `mode`: 32-bit paging, which
/// nested KVM through kvm-pvm does not run (it ends the guest with
/// `KVM_EXIT_SHUTDOWN` before its first instruction). A shutdown as the
/// first exit of such a guest is reported as the host's refusal
/// ([`refusal_message`]).
pub const fn host_may_refuse(mode: CpuMode) -> bool {
    matches!(mode, CpuMode::Paged32 | CpuMode::Pae32)
}

/// The message for a mode that the host's KVM would not run: the guest's
/// first exit was a shutdown, before any instruction completed.
pub fn refusal_message(mode: CpuMode) -> String {
    format!(
        "this host's KVM refused to run {mode} mode ({}): KVM_EXIT_SHUTDOWN before the first \
         instruction completed (0 exits served)",
        mode.description()
    )
}

/// The memory map of a guest in `mode` (not long mode), for `--verbose`.
pub fn regions(mode: CpuMode, layout: &Layout, image: &LoadedImage) -> Vec<Region> {
    let mut regions = vec![Region {
        name: "guest image",
        start: image.lowest,
        end: image.highest,
    }];
    let region = |name, start, end| Region { name, start, end };
    if mode == CpuMode::Real {
        regions.push(region(
            "guest stack (SS:SP = 0:0x7000, grows down)",
            REAL_MODE_STACK.saturating_sub(0x1000),
            REAL_MODE_STACK,
        ));
        return regions;
    }
    regions.push(region(
        "guest stack (grows down)",
        image
            .highest
            .max(layout.stack_top().saturating_sub(1 << 20)),
        layout.stack_top(),
    ));
    match mode {
        CpuMode::Paged32 => regions.push(region(
            "page directory (CR3), 4 MiB pages",
            layout.pml4(),
            layout.pml4() + 0x1000,
        )),
        CpuMode::Pae32 => {
            let gibs = layout.mem_size.div_ceil(SIZE_1G);
            regions.push(region("PDPT (CR3)", layout.pml4(), layout.pml4() + 32));
            regions.push(region(
                "page directories, 2 MiB pages",
                layout.pd(0),
                layout.pd(gibs),
            ));
        }
        _ => {}
    }
    regions.push(region("GDT", layout.gdt(), layout.gdt() + 3 * 8));
    regions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_flat_ring_0_guests_leave_long_mode() {
        for mode in [
            CpuMode::Real,
            CpuMode::Protected,
            CpuMode::Paged32,
            CpuMode::Pae32,
        ] {
            assert_eq!(check(mode, true, None), Ok(()));
            assert_eq!(check(mode, true, Some(Ring::Zero)), Ok(()));
            assert_eq!(
                check(mode, true, Some(Ring::Three)),
                Err(ModeError::RingThree(mode))
            );
            assert_eq!(check(mode, false, None), Err(ModeError::NotFlat(mode)));
        }
        assert_eq!(check(CpuMode::Long, false, Some(Ring::Three)), Ok(()));
    }
}
