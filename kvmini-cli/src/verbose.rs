//! The `--verbose` account of a guest's vCPU setup in words, built from
//! the library's public API only.

use kvm_bindings::{kvm_segment, kvm_sregs};

use kvmini::arch::x86_64::bits::{CR0_NAMES, CR4_NAMES, EFER_NAMES};
use kvmini::arch::x86_64::boot::{boot_state, BootSpec};
use kvmini::arch::x86_64::cpu::{Ring, CODE32_SELECTOR, DATA32_SELECTOR};
use kvmini::layout::Layout;
use kvmini::modes::CpuMode;

/// Names the set bits of `value` from `names`; "0" when none is set.
fn flag_names(value: u64, names: &[(u64, &str)]) -> String {
    let set: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| value & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    if set.is_empty() {
        "0".to_owned()
    } else {
        format!("{value:#x} ({})", set.join("|"))
    }
}

fn describe_segment(s: &kvm_segment) -> String {
    let bits = if s.db == 1 { 32 } else { 16 };
    let kind = if s.type_ & 0x8 != 0 { "code" } else { "data" };
    format!(
        "{:#x} (base {:#x}, limit {:#x}, {bits}-bit {kind}, DPL {})",
        s.selector, s.base, s.limit, s.dpl
    )
}

/// The vCPU setup of `mode` (not long mode) in words, one line each, for
/// `--verbose`: the registers of the boot state of a flat image entered
/// at `entry`.
pub fn describe(mode: CpuMode, layout: &Layout, entry: u64) -> Vec<String> {
    let spec = BootSpec {
        mode,
        ring: Ring::Zero,
        flat: true,
        entry,
        fsgsbase: false,
        syscall_entry: None,
    };
    let state = boot_state(layout, &spec);
    let s = state.sregs.over(kvm_sregs::default());
    let regs = state.regs;
    let mut lines = Vec::new();
    lines.push(match mode {
        CpuMode::Real => format!(
            "vCPU: {} (--mode {mode}), ring 0, CS:IP = {:#x}:{:#x} (entry), SS:SP = {:#x}:{:#x}",
            mode.description(),
            s.cs.selector,
            regs.rip,
            s.ss.selector,
            regs.rsp
        ),
        _ => format!(
            "vCPU: {} (--mode {mode}), ring 0, EIP = {:#x} (entry), ESP = {:#x}",
            mode.description(),
            regs.rip,
            regs.rsp
        ),
    });
    let cr3 = match mode {
        CpuMode::Paged32 => format!(", CR3 = {:#x} (page directory)", s.cr3),
        CpuMode::Pae32 => format!(", CR3 = {:#x} (PDPT)", s.cr3),
        _ => String::new(),
    };
    lines.push(format!(
        "  CR0 = {}, CR4 = {}, EFER = {}{cr3}",
        flag_names(s.cr0, CR0_NAMES),
        flag_names(s.cr4, CR4_NAMES),
        flag_names(s.efer, EFER_NAMES)
    ));
    lines.push(format!(
        "  CS = {}, DS = ES = FS = GS = SS = {}",
        describe_segment(&s.cs),
        describe_segment(&s.ss)
    ));
    lines.push(match mode {
        CpuMode::Real => {
            "  no GDT, no page tables; IDTR base 0x0, limit 0x3ff: the interrupt vector table, \
             in the image's first KiB (kvmini installs no vectors)"
                .to_owned()
        }
        _ => format!(
            "  GDT at {:#x}, limit {:#x}: null, 32-bit code {CODE32_SELECTOR:#x}, 32-bit data {DATA32_SELECTOR:#x}; \
             IDT limit 0 (an exception is a triple fault)",
            s.gdt.base, s.gdt.limit
        ),
    });
    match mode {
        CpuMode::Paged32 => lines.push(format!(
            "  page tables: one page directory at {:#x}, 4 MiB pages (PS), identity-mapped",
            s.cr3
        )),
        CpuMode::Pae32 => lines.push(format!(
            "  page tables: PDPT at {:#x}, page directories from {:#x}, 2 MiB pages (PS), identity-mapped",
            s.cr3,
            layout.pd(0)
        )),
        _ => {}
    }
    lines
}
