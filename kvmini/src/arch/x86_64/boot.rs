//! The boot state of a guest in every CPU mode and ring, from one
//! function ([`boot_state`]): the general registers at the entry point,
//! the system registers, the x87/SSE state, and the tables to write into
//! guest memory. It is plain data; the VM layer (`Vm::create_vcpu`) applies
//! it, so the dependency runs one way.
//!
//! Each mode's registers, where its tables are, and which modes nested
//! KVM (kvm-pvm) runs: docs/kvm-pvm.md.

use kvm_bindings::{kvm_dtable, kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};

use super::bits::{
    CR0_ET, CR0_MP, CR0_NE, CR0_PE, CR0_PG, CR0_WP, CR4_FSGSBASE, CR4_OSFXSR, CR4_OSXMMEXCPT,
    CR4_OSXSAVE, CR4_PAE, CR4_PSE, EFER_LMA, EFER_LME, EFER_SCE, RFLAGS_IOPL3, RFLAGS_RESERVED,
};
use super::cpu::{self, Ring, EXCEPTION_VECTORS, GDT_ENTRIES, TSS_SEL};
use super::descriptor::{self, Descriptor};
use super::modes::{CpuMode, REAL_MODE_IVT_LIMIT, REAL_MODE_STACK};
use super::page_tables;
use super::syscall;
use super::tables::Tables;
use crate::layout::Layout;

/// What a guest starts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootSpec {
    /// The CPU mode.
    pub mode: CpuMode,
    /// The privilege level (ring 0 in every mode but long mode, which
    /// [`super::modes::check`] makes sure of).
    pub ring: Ring,
    /// A flat image, loaded at 0: the null page is mapped.
    pub flat: bool,
    /// The entry point.
    pub entry: u64,
    /// The vCPU has `rdfsbase`/`wrfsbase` ([`cpu::has_fsgsbase`]): a
    /// long-mode guest then gets CR4.FSGSBASE, as Linux gives its
    /// processes, so that a ring-3 guest may use them on every host.
    pub fsgsbase: bool,
    /// Where `syscall` jumps (a Linux program's stub): EFER.SCE on and the
    /// `syscall` MSRs set ([`super::syscall`]); `None` for every other
    /// guest, which keeps `syscall` undefined as before.
    pub syscall_entry: Option<u64>,
}

/// The system registers kvmini sets; the rest (CR2, CR8, the APIC base,
/// pending interrupts, and TR and LDT where `None`) come from the vCPU's
/// state after `KVM_CREATE_VCPU`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SystemRegisters {
    /// CS.
    pub cs: kvm_segment,
    /// DS, ES, FS, GS and SS.
    pub data: kvm_segment,
    /// TR, or the vCPU's own.
    pub tr: Option<kvm_segment>,
    /// LDTR, or the vCPU's own.
    pub ldt: Option<kvm_segment>,
    /// GDTR.
    pub gdt: kvm_dtable,
    /// IDTR.
    pub idt: kvm_dtable,
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

impl SystemRegisters {
    /// These registers laid over `reset`, the vCPU's own state.
    pub fn over(&self, mut reset: kvm_sregs) -> kvm_sregs {
        reset.cs = self.cs;
        reset.ds = self.data;
        reset.es = self.data;
        reset.fs = self.data;
        reset.gs = self.data;
        reset.ss = self.data;
        if let Some(tr) = self.tr {
            reset.tr = tr;
        }
        if let Some(ldt) = self.ldt {
            reset.ldt = ldt;
        }
        reset.gdt = self.gdt;
        reset.idt = self.idt;
        reset.cr0 = self.cr0;
        reset.cr3 = self.cr3;
        reset.cr4 = self.cr4;
        reset.efer = self.efer;
        reset
    }

    /// With CR4.OSXSAVE: for a vCPU whose XCR0 KVM took.
    pub const fn with_xsave(mut self) -> Self {
        self.cr4 |= CR4_OSXSAVE;
        self
    }
}

/// Everything a guest starts with.
#[derive(Clone, Debug, PartialEq)]
pub struct BootState {
    /// General registers at the entry point.
    pub regs: kvm_regs,
    /// System registers.
    pub sregs: SystemRegisters,
    /// The x87/SSE state.
    pub fpu: kvm_fpu,
    /// Turn XSAVE on: XCR0 to every component KVM supports, and then
    /// CR4.OSXSAVE ([`SystemRegisters::with_xsave`]), where KVM takes it.
    /// A ring-3 guest may use those components whatever CR4 says (on
    /// kvm-pvm it runs under the host's), so kvmini sets them knowingly
    /// and a reset restores them all.
    pub xsave: bool,
    /// What to write into guest memory before the first run.
    pub tables: Tables,
    /// Model-specific registers to set, by index (the `syscall` MSRs of a
    /// Linux program; none otherwise).
    pub msrs: Vec<(u32, u64)>,
}

/// The boot state of a guest in `layout` started as `spec`.
pub fn boot_state(layout: &Layout, spec: &BootSpec) -> BootState {
    boot_state_with(layout, spec, true)
}

/// As [`boot_state`], but without the page tables of a long-mode guest,
/// for a caller that writes its own over every one of them (a ring-3 ELF
/// guest's, with its memory's permissions): building the identity map
/// only to have it overwritten is a visible part of a sandbox's start.
pub fn boot_state_without_page_tables(layout: &Layout, spec: &BootSpec) -> BootState {
    boot_state_with(layout, spec, false)
}

fn boot_state_with(layout: &Layout, spec: &BootSpec, page_tables: bool) -> BootState {
    let long = spec.mode == CpuMode::Long;
    BootState {
        regs: entry_regs(layout, spec),
        sregs: system_registers(layout, spec),
        fpu: initial_fpu(),
        xsave: long,
        tables: tables(layout, spec, page_tables),
        msrs: syscall_msrs(spec),
    }
}

/// STAR, LSTAR and FMASK for a guest with a `syscall` entry.
fn syscall_msrs(spec: &BootSpec) -> Vec<(u32, u64)> {
    match spec.syscall_entry {
        Some(entry) if spec.mode == CpuMode::Long => vec![
            (syscall::MSR_STAR, syscall::STAR),
            (syscall::MSR_LSTAR, entry),
            (syscall::MSR_FMASK, syscall::FMASK),
        ],
        _ => Vec::new(),
    }
}

/// CR3: long mode's PML4, the paged32 page directory or the pae32 PDPT,
/// all at the start of kvmini's area; 0 without paging.
const fn cr3(mode: CpuMode, layout: &Layout) -> u64 {
    match mode {
        CpuMode::Real | CpuMode::Protected => 0,
        CpuMode::Paged32 | CpuMode::Pae32 | CpuMode::Long => layout.pml4(),
    }
}

fn dtable(base: u64, limit: u16) -> kvm_dtable {
    kvm_dtable {
        base,
        limit,
        ..Default::default()
    }
}

fn system_registers(layout: &Layout, spec: &BootSpec) -> SystemRegisters {
    let mode = spec.mode;
    let (cs, data) = match mode {
        CpuMode::Long => {
            let (cs, code) = cpu::code_segment(spec.ring);
            let (ds, data) = cpu::data_segment(spec.ring);
            (code.segment(cs), data.segment(ds))
        }
        CpuMode::Real => (
            Descriptor::real_mode(true).segment(0),
            Descriptor::real_mode(false).segment(0),
        ),
        CpuMode::Protected | CpuMode::Paged32 | CpuMode::Pae32 => (
            cpu::CODE32.segment(cpu::CODE32_SELECTOR),
            cpu::DATA32.segment(cpu::DATA32_SELECTOR),
        ),
    };
    let gdt_limit = |entries: usize| u16::try_from(entries * 8 - 1).unwrap_or(0);
    let (tr, ldt, gdt, idt) = match mode {
        CpuMode::Long => (
            Some(cpu::tss_descriptor(layout).busy().segment(TSS_SEL)),
            Some(kvm_segment {
                unusable: 1,
                ..Default::default()
            }),
            dtable(layout.gdt(), gdt_limit(GDT_ENTRIES)),
            dtable(layout.idt(), u16::from(EXCEPTION_VECTORS) * 16 - 1),
        ),
        // The interrupt vector table at 0.
        CpuMode::Real => (None, None, dtable(0, 0), dtable(0, REAL_MODE_IVT_LIMIT)),
        // No IDT, so an exception is a triple fault.
        CpuMode::Protected | CpuMode::Paged32 | CpuMode::Pae32 => (
            None,
            None,
            dtable(layout.gdt(), gdt_limit(cpu::gdt32().len())),
            dtable(0, 0),
        ),
    };
    let cr0 = match mode {
        CpuMode::Real => CR0_ET,
        CpuMode::Protected => CR0_PE | CR0_ET,
        CpuMode::Paged32 | CpuMode::Pae32 => CR0_PE | CR0_ET | CR0_PG,
        CpuMode::Long => CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG,
    };
    let cr4 = match mode {
        CpuMode::Real | CpuMode::Protected => 0,
        CpuMode::Paged32 => CR4_PSE,
        CpuMode::Pae32 => CR4_PAE,
        CpuMode::Long if spec.fsgsbase => CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_FSGSBASE,
        CpuMode::Long => CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT,
    };
    SystemRegisters {
        cs,
        data,
        tr,
        ldt,
        gdt,
        idt,
        cr0,
        cr3: cr3(mode, layout),
        cr4,
        efer: if mode == CpuMode::Long && spec.syscall_entry.is_some() {
            EFER_LME | EFER_LMA | EFER_SCE
        } else if mode == CpuMode::Long {
            EFER_LME | EFER_LMA
        } else {
            0
        },
    }
}

/// The general registers at the entry point: (E/R)IP = the entry, the
/// mode's stack, and RFLAGS with its reserved bit 1, and IOPL 3 at ring 3
/// so that `in`/`out` exit to kvmini instead of faulting.
fn entry_regs(layout: &Layout, spec: &BootSpec) -> kvm_regs {
    let rsp = match spec.mode {
        CpuMode::Real => REAL_MODE_STACK,
        CpuMode::Protected | CpuMode::Paged32 | CpuMode::Pae32 | CpuMode::Long => {
            layout.stack_top()
        }
    };
    let rflags = match (spec.mode, spec.ring) {
        (CpuMode::Long, Ring::Three) => RFLAGS_RESERVED | RFLAGS_IOPL3,
        _ => RFLAGS_RESERVED,
    };
    kvm_regs {
        rip: spec.entry,
        rsp,
        rflags,
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

/// The tables of `spec`'s mode: long mode's identity map (the null page
/// mapped for a flat image, kvmini's area supervisor-only unless the
/// guest runs at ring 0) and system tables; the 32-bit modes' GDT and
/// page tables; nothing for real mode. Long mode's identity map is left
/// out unless `page_tables`.
fn tables(layout: &Layout, spec: &BootSpec, page_tables: bool) -> Tables {
    let mut tables = Tables::new();
    match spec.mode {
        CpuMode::Real => {}
        CpuMode::Long => {
            let protect = spec.ring == Ring::Three;
            if page_tables {
                tables.extend(page_tables::identity_map(layout, spec.flat, protect));
            }
            tables.extend(cpu::system_tables(layout));
        }
        CpuMode::Protected | CpuMode::Paged32 | CpuMode::Pae32 => {
            tables.put(layout.gdt(), descriptor::gdt_bytes(&cpu::gdt32()));
            match spec.mode {
                CpuMode::Paged32 => tables.extend(page_tables::paged32_identity_map(layout)),
                CpuMode::Pae32 => tables.extend(page_tables::pae32_identity_map(layout)),
                _ => {}
            }
        }
    }
    tables
}

#[cfg(test)]
mod tests;
