//! CPU modes other than long mode: 16-bit real mode, and 32-bit protected
//! mode without paging, with two-level (non-PAE) paging and with PAE
//! paging. These are the four modes of the classic KVM "hello world"; each
//! runs a flat image loaded at guest physical 0 and entered at 0, at
//! ring 0, with `hlt` ending the run. This module sets up, explicitly, what
//! each one needs: segment registers, a GDT, the CR0/CR4/EFER bits, page
//! tables, the entry point and the stack. Long mode, kvmini's default, is
//! set up by [`crate::cpu`] and [`crate::paging`]; the functions here hand
//! [`CpuMode::Long`] to them unchanged.
//!
//! | mode        | CR0        | CR4 | EFER | CR3 | segments | stack |
//! |-------------|------------|-----|------|-----|----------|-------|
//! | `real`      | ET         | 0   | 0    | —   | CS = DS = ES = FS = GS = SS = 0: base 0, limit 0xFFFF, 16-bit | SS:SP = 0:0x7000 |
//! | `protected` | PE, ET     | 0   | 0    | —   | CS = 0x08, data = 0x10: base 0, limit 4 GiB, 32-bit, DPL 0 | ESP = top of guest memory below kvmini's area |
//! | `paged32`   | PE, ET, PG | PSE | 0    | page directory | as `protected` | as `protected` |
//! | `pae32`     | PE, ET, PG | PAE | 0    | PDPT | as `protected` | as `protected` |
//!
//! Where things are, in kvmini's own area at the top of guest memory
//! ([`crate::layout`]), so that nothing collides with a flat image at 0:
//!
//! ```text
//!  system_base + 0x0000   paged32: the page directory (1024 4-byte entries,
//!                         4 MiB pages, identity); pae32: the PDPT (4 entries)
//!  system_base + 0x2000   pae32: four page directories (512 8-byte entries
//!                         each, 2 MiB pages, identity), one per GiB
//!  system_base + 0x8000   protected, paged32, pae32: the GDT (null, code, data)
//! ```
//!
//! Guest memory is at most 4 GiB ([`crate::memory::MEM_MAX`]) and kvmini's
//! area is its last 64 KiB, so every table, the stack and the image are
//! below 4 GiB, where 32-bit code can reach them. Real mode reaches only
//! the first MiB and a little more ([`REAL_MODE_REACH`]); it needs no
//! tables, and its stack is below 64 KiB ([`REAL_MODE_STACK`]).
//!
//! kvmini installs no exception handlers in these modes (its exception
//! reports are a long-mode feature). The 32-bit modes get an IDT limit
//! of 0, so an exception cannot be delivered and ends the run as a triple
//! fault (`KVM_EXIT_SHUTDOWN`). Real mode keeps its interrupt vector
//! table at 0 (IDTR base 0, limit 0x3FF, as at reset): an exception jumps
//! through the 4-byte vector at 4 × its number, which is in the flat
//! image's first KiB, so an image that may fault brings its own vectors
//! (the hello does not fault). A limit of 0 would not stop this
//! everywhere: nested KVM through kvm-pvm emulates real-mode exceptions
//! and delivers them through the table at 0 whatever the limit.
//!
//! Not every host's KVM runs every mode. Nested KVM through kvm-pvm runs
//! real mode and protected mode (emulated, at ring 0) but neither 32-bit
//! paging mode: it ends such a guest with `KVM_EXIT_SHUTDOWN` before its
//! first instruction, even with these very tables. kvmini reports a
//! shutdown as the first exit of a paged32 or pae32 guest as the host's
//! refusal ([`host_may_refuse`], [`refusal_message`]), exit status 126.
//!
//! Hypercalls that take a guest address (`display`) translate it the way
//! the guest's CPU does ([`crate::paging::Paging::from_registers`]):
//! through the two-level or the PAE tables in CR3 when paging is on, and
//! as a physical address when it is off. In real mode the guest passes a
//! linear address (segment × 16 + offset, worked out by the guest), which
//! is the physical address: kvmini does not apply a segment base.

use std::fmt;

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use crate::cpu::{self, Ring};
use crate::kvm::Kvm;
use crate::layout::Layout;
use crate::loader::LoadedImage;
use crate::memory::GuestMemory;
use crate::paging::{self, PTE_P, PTE_PS, PTE_RW};
use crate::sandbox::Region;
use crate::vcpu::{Vcpu, VcpuError};
use crate::vm::{Vm, VmError};

/// The CPU mode a guest starts in (`--mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
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

    /// The name `--mode` takes.
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
    #[error(
        "--ring 3 needs --mode long: in --mode {0} the guest runs at ring 0 (leave --ring out, or give --ring 0)"
    )]
    RingThree(CpuMode),
    /// An ELF image with a mode other than long mode.
    #[error(
        "--mode {0} runs flat images only (run --flat IMAGE): ELF guests are 64-bit and run in long mode"
    )]
    NotFlat(CpuMode),
    /// A built-in guest other than hello with a mode other than long mode.
    #[error("--mode {0}: only the hello demo has a built-in image for this mode (kvmini demo hello --mode {0})")]
    NoDemo(CpuMode),
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

/// The 32-bit code segment selector (GDT entry 1).
pub const CODE32_SELECTOR: u16 = 0x08;
/// The 32-bit data segment selector (GDT entry 2), for DS, ES, FS, GS, SS.
pub const DATA32_SELECTOR: u16 = 0x10;
/// The GDT of the 32-bit modes.
pub const GDT32: [u64; 3] = [
    0,
    // Code: base 0, limit 0xFFFFF pages (4 GiB), G=1, D=1 (32-bit),
    // present, DPL 0, type 0xB (execute/read, accessed).
    0x00CF_9B00_0000_FFFF,
    // Data: as code, type 0x3 (read/write, accessed).
    0x00CF_9300_0000_FFFF,
];

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const SIZE_2M: u64 = 2 << 20;
const SIZE_4M: u64 = 4 << 20;
const SIZE_1G: u64 = 1 << 30;
const RFLAGS_RESERVED: u64 = 1 << 1;

/// CR3 of the paged modes: the paged32 page directory or the pae32 PDPT,
/// both at the start of kvmini's area; 0 without paging. Long mode's PML4
/// is there too.
pub const fn cr3(mode: CpuMode, layout: &Layout) -> u64 {
    match mode {
        CpuMode::Real | CpuMode::Protected => 0,
        CpuMode::Paged32 | CpuMode::Pae32 | CpuMode::Long => layout.pml4(),
    }
}

/// The pae32 page directory for the `gib`-th GiB.
const fn pae_page_directory(layout: &Layout, gib: u64) -> u64 {
    layout.pd(gib)
}

/// Writes what `mode` needs into guest memory: the GDT of the 32-bit
/// modes and their page tables (nothing for real mode). For long mode: the
/// identity map and kvmini's system tables, as for any long-mode guest;
/// `flat` maps the null page, and kvmini's area is supervisor-only unless
/// the guest runs at ring 0.
pub fn write_tables(
    mem: &GuestMemory,
    layout: &Layout,
    mode: CpuMode,
    flat: bool,
    ring: Ring,
) -> Result<(), GuestMemoryError> {
    let write32 = |addr: u64, value: u32| mem.write_obj(value, GuestAddress(addr));
    let write64 = |addr: u64, value: u64| mem.write_obj(value, GuestAddress(addr));
    match mode {
        CpuMode::Long => {
            paging::build_identity_map_with(mem, layout, flat, ring == Ring::Three)?;
            return cpu::write_system_tables(mem, layout);
        }
        CpuMode::Real => return Ok(()),
        CpuMode::Protected | CpuMode::Paged32 | CpuMode::Pae32 => {}
    }
    for (i, entry) in (0u64..).zip(GDT32) {
        write64(layout.gdt() + i * 8, entry)?;
    }
    match mode {
        CpuMode::Paged32 => {
            // One 4-byte entry per 4 MiB: physical base | P | RW | PS. The
            // last page may reach 2 MiB past the end of memory (sizes are
            // multiples of 2 MiB); an access there is one to no memory, as
            // without paging. 4 GiB / 4 MiB = 1024 entries at most, the
            // whole directory; every base is below 4 GiB.
            let directory = cr3(mode, layout);
            for page in 0..layout.mem_size.div_ceil(SIZE_4M) {
                let entry = (page * SIZE_4M) | PTE_P | PTE_RW | PTE_PS;
                write32(directory + page * 4, u32::try_from(entry).unwrap_or(0))?;
            }
        }
        CpuMode::Pae32 => {
            // PDPT: one entry per GiB, present only (bits 1 and 2 are
            // reserved in PAE PDPT entries); each page directory: one
            // 8-byte entry per 2 MiB, base | P | RW | PS.
            let pdpt = cr3(mode, layout);
            for gib in 0..layout.mem_size.div_ceil(SIZE_1G) {
                write64(pdpt + gib * 8, pae_page_directory(layout, gib) | PTE_P)?;
            }
            for region in 0..layout.mem_size / SIZE_2M {
                let entry = pae_page_directory(layout, region / 512) + (region % 512) * 8;
                write64(entry, (region * SIZE_2M) | PTE_P | PTE_RW | PTE_PS)?;
            }
        }
        CpuMode::Real | CpuMode::Protected | CpuMode::Long => {}
    }
    Ok(())
}

fn real_segment(code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xFFFF,
        selector: 0,
        type_: if code { 0xB } else { 0x3 },
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 0,
        g: 0,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

fn flat32_segment(code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector: if code {
            CODE32_SELECTOR
        } else {
            DATA32_SELECTOR
        },
        type_: if code { 0xB } else { 0x3 },
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// The system registers of `mode`, on top of the vCPU's reset state
/// `sregs` (whose TR and LDT are kept). `ring` matters for long mode only.
pub fn sregs(mut sregs: kvm_sregs, layout: &Layout, mode: CpuMode, ring: Ring) -> kvm_sregs {
    let (cs, data) = match mode {
        CpuMode::Long => return cpu::long_mode_sregs(sregs, layout, ring),
        CpuMode::Real => (real_segment(true), real_segment(false)),
        CpuMode::Protected | CpuMode::Paged32 | CpuMode::Pae32 => {
            (flat32_segment(true), flat32_segment(false))
        }
    };
    sregs.cs = cs;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    (sregs.gdt.base, sregs.gdt.limit) = match mode {
        CpuMode::Real => (0, 0),
        _ => (layout.gdt(), 3 * 8 - 1),
    };
    // Real mode: the interrupt vector table at 0. The 32-bit modes: no
    // IDT, so an exception is a triple fault.
    (sregs.idt.base, sregs.idt.limit) = match mode {
        CpuMode::Real => (0, REAL_MODE_IVT_LIMIT),
        _ => (0, 0),
    };
    sregs.cr3 = cr3(mode, layout);
    sregs.cr0 = match mode {
        CpuMode::Real => CR0_ET,
        CpuMode::Protected => CR0_PE | CR0_ET,
        _ => CR0_PE | CR0_ET | CR0_PG,
    };
    sregs.cr4 = match mode {
        CpuMode::Paged32 => CR4_PSE,
        CpuMode::Pae32 => CR4_PAE,
        _ => 0,
    };
    sregs.efer = 0;
    sregs
}

/// The general registers at the entry point: (E)IP = `entry`, the mode's
/// stack, RFLAGS with only its reserved bit 1.
pub fn entry_regs(mode: CpuMode, entry: u64, layout: &Layout, ring: Ring) -> kvm_regs {
    match mode {
        CpuMode::Long => cpu::entry_regs(entry, layout.stack_top(), ring),
        CpuMode::Real => kvm_regs {
            rip: entry,
            rsp: REAL_MODE_STACK,
            rflags: RFLAGS_RESERVED,
            ..Default::default()
        },
        CpuMode::Protected | CpuMode::Paged32 | CpuMode::Pae32 => kvm_regs {
            rip: entry,
            rsp: layout.stack_top(),
            rflags: RFLAGS_RESERVED,
            ..Default::default()
        },
    }
}

/// Creates the vCPU of `vm` at `entry` in `mode` (long mode: as
/// [`Vm::create_vcpu`], with the stack below kvmini's area). The tables of
/// [`write_tables`] must be in guest memory already: KVM reads the PAE
/// PDPT when the system registers are set.
pub fn create_vcpu(
    vm: &Vm,
    kvm: &Kvm,
    mode: CpuMode,
    entry: u64,
    ring: Ring,
) -> Result<Vcpu, VmError> {
    let layout = *vm.layout();
    if mode == CpuMode::Long {
        return vm.create_vcpu(kvm, entry, layout.stack_top(), ring);
    }
    let setup = |what| move |source| VcpuError::Setup { what, source };
    let fd = vm.fd().create_vcpu(0).map_err(VcpuError::Create)?;
    // CPUID first: KVM refuses CR4.PSE and CR4.PAE when the guest's CPUID
    // does not list them.
    fd.set_cpuid2(kvm.supported_cpuid())
        .map_err(setup("CPUID"))?;
    let reset = fd.get_sregs().map_err(setup("system registers"))?;
    fd.set_sregs(&sregs(reset, &layout, mode, ring))
        .map_err(setup("system registers"))?;
    fd.set_regs(&entry_regs(mode, entry, &layout, ring))
        .map_err(setup("registers"))?;
    fd.set_fpu(&cpu::initial_fpu())
        .map_err(setup("FPU state"))?;
    let run_size = kvm
        .handle()
        .get_vcpu_mmap_size()
        .map_err(VmError::RunSize)?;
    Ok(Vcpu::new(fd, run_size))
}

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
    let instead = match mode {
        CpuMode::Paged32 => {
            "--mode pae32 or --mode long may work instead (--mode long does wherever kvmini runs; \
             --mode protected runs 32-bit code without paging)"
        }
        _ => "--mode long works instead (--mode protected runs 32-bit code without paging)",
    };
    format!(
        "this host's KVM refused to run --mode {mode} ({}): KVM_EXIT_SHUTDOWN before the first \
         instruction completed (0 exits served); {instead}",
        mode.description()
    )
}

/// The classic hello world in 16-bit code, for real mode.
#[rustfmt::skip]
pub const HELLO_REAL: &[u8] = &[
    0xBA, 0xE9, 0x00,       // mov dx, 0xE9
    0xB0, b'H', 0xEE,       // mov al, 'H'; out dx, al
    0xB0, b'e', 0xEE,       // mov al, 'e'; out dx, al
    0xB0, b'l', 0xEE,       // mov al, 'l'; out dx, al
    0xB0, b'l', 0xEE,       // mov al, 'l'; out dx, al
    0xB0, b'o', 0xEE,       // mov al, 'o'; out dx, al
    0xB0, b',', 0xEE,       // mov al, ','; out dx, al
    0xB0, b' ', 0xEE,       // mov al, ' '; out dx, al
    0xB0, b'w', 0xEE,       // mov al, 'w'; out dx, al
    0xB0, b'o', 0xEE,       // mov al, 'o'; out dx, al
    0xB0, b'r', 0xEE,       // mov al, 'r'; out dx, al
    0xB0, b'l', 0xEE,       // mov al, 'l'; out dx, al
    0xB0, b'd', 0xEE,       // mov al, 'd'; out dx, al
    0xB0, b'!', 0xEE,       // mov al, '!'; out dx, al
    0xB0, b'\n', 0xEE,      // mov al, '\n'; out dx, al
    0xC7, 0x06, 0x00, 0x04, 0x2A, 0x00, // mov word [0x400], 42 (DS = 0)
    0xB8, 0x2A, 0x00,       // mov ax, 42
    0xF4,                   // hlt
];

/// The classic hello world in 32-bit code, for the protected, paged32 and
/// pae32 modes (identity-mapped, so address 0x400 is the same everywhere).
#[rustfmt::skip]
pub const HELLO_32: &[u8] = &[
    0x66, 0xBA, 0xE9, 0x00, // mov dx, 0xE9
    0xB0, b'H', 0xEE,       // mov al, 'H'; out dx, al
    0xB0, b'e', 0xEE,       // mov al, 'e'; out dx, al
    0xB0, b'l', 0xEE,       // mov al, 'l'; out dx, al
    0xB0, b'l', 0xEE,       // mov al, 'l'; out dx, al
    0xB0, b'o', 0xEE,       // mov al, 'o'; out dx, al
    0xB0, b',', 0xEE,       // mov al, ','; out dx, al
    0xB0, b' ', 0xEE,       // mov al, ' '; out dx, al
    0xB0, b'w', 0xEE,       // mov al, 'w'; out dx, al
    0xB0, b'o', 0xEE,       // mov al, 'o'; out dx, al
    0xB0, b'r', 0xEE,       // mov al, 'r'; out dx, al
    0xB0, b'l', 0xEE,       // mov al, 'l'; out dx, al
    0xB0, b'd', 0xEE,       // mov al, 'd'; out dx, al
    0xB0, b'!', 0xEE,       // mov al, '!'; out dx, al
    0xB0, b'\n', 0xEE,      // mov al, '\n'; out dx, al
    0xC7, 0x05, 0x00, 0x04, 0x00, 0x00,
    0x2A, 0x00, 0x00, 0x00, // mov dword [0x400], 42
    0xB8, 0x2A, 0x00, 0x00, 0x00, // mov eax, 42
    0xF4,                   // hlt
];

/// The built-in flat hello image of `mode`; `None` for long mode, whose
/// hello is the ring-3 Rust guest ([`crate::guests::HELLO`]).
pub const fn hello(mode: CpuMode) -> Option<&'static [u8]> {
    match mode {
        CpuMode::Real => Some(HELLO_REAL),
        CpuMode::Protected | CpuMode::Paged32 | CpuMode::Pae32 => Some(HELLO_32),
        CpuMode::Long => None,
    }
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
                pae_page_directory(layout, 0),
                pae_page_directory(layout, gibs),
            ));
        }
        _ => {}
    }
    regions.push(region("GDT", layout.gdt(), layout.gdt() + 3 * 8));
    regions
}

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
/// `--verbose`: what [`sregs`] and [`entry_regs`] give the vCPU.
pub fn describe(mode: CpuMode, layout: &Layout, entry: u64) -> Vec<String> {
    let s = sregs(kvm_sregs::default(), layout, mode, Ring::Zero);
    let regs = entry_regs(mode, entry, layout, Ring::Zero);
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
        flag_names(s.cr0, &[(CR0_PE, "PE"), (CR0_ET, "ET"), (CR0_PG, "PG")]),
        flag_names(s.cr4, &[(CR4_PSE, "PSE"), (CR4_PAE, "PAE")]),
        flag_names(s.efer, &[])
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
            pae_page_directory(layout, 0)
        )),
        _ => {}
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory;
    use crate::paging::{translate, Access, CpuPaging, Paging};

    const KERNEL_READ: Access = Access {
        user: false,
        write: false,
    };

    #[test]
    fn the_paged_modes_identity_map_all_of_memory() {
        for size in [2 << 20, 6 << 20, 64 << 20, (1 << 30) + (2 << 20), 4 << 30] {
            let mem = memory::allocate(size).unwrap();
            let layout = Layout::new(size);
            for mode in [CpuMode::Paged32, CpuMode::Pae32] {
                write_tables(&mem, &layout, mode, true, Ring::Zero).unwrap();
                let s = sregs(kvm_sregs::default(), &layout, mode, Ring::Zero);
                // The narrowest CPU with PAE: kvmini's tables must hold on any.
                let narrowest = CpuPaging {
                    phys_bits: 36,
                    gib_pages: false,
                    pse36: false,
                };
                let paging = Paging::from_registers(s.cr0, s.cr4, s.efer, narrowest);
                for gva in [
                    0,
                    0x400,
                    0x20_0000 - 1,
                    size / 2 + 12,
                    layout.gdt(),
                    size - 1,
                ] {
                    let t = translate(&mem, paging, s.cr3, gva, KERNEL_READ).unwrap();
                    assert_eq!(t.gpa, gva, "{mode} size {size:#x}");
                }
            }
        }
    }

    /// What `display` does in the 32-bit paged modes, without KVM: the
    /// tables kvmini's mode setup writes, one large page added the way the
    /// paged guests of tests/modes.rs add it (virtual 200 MiB -> physical
    /// 0), and the hypercall served through a view with the paging those
    /// modes' registers give. On a host that refuses 32-bit paging (as
    /// kvm-pvm does), this is where these walks run.
    #[test]
    fn display_walks_the_32_bit_tables_kvmini_writes() {
        use crate::fs::Filesystem;
        use crate::grant::Grants;
        use crate::hypercall::Hypercalls;
        use crate::output::{Capture, Input};
        use crate::view::GuestView;
        use kvmini_abi::Port;

        const VIRTUAL: u64 = 0x0C80_0000;
        let size = 8 << 20;
        for mode in [CpuMode::Paged32, CpuMode::Pae32] {
            let mem = memory::allocate(size).unwrap();
            let layout = Layout::new(size);
            write_tables(&mem, &layout, mode, true, Ring::Zero).unwrap();
            let s = sregs(kvm_sregs::default(), &layout, mode, Ring::Zero);
            // A large page: PS, RW, P at physical 0, in the directory entry
            // for VIRTUAL (4-byte entries per 4 MiB, or 8-byte per 2 MiB).
            if mode == CpuMode::Paged32 {
                mem.write_obj(0x83u32, GuestAddress(layout.pml4() + (VIRTUAL >> 22) * 4))
                    .unwrap();
            } else {
                mem.write_obj(0x83u64, GuestAddress(layout.pd(0) + (VIRTUAL >> 21) * 8))
                    .unwrap();
            }
            mem.write_slice(b"through the page tables\n\0", GuestAddress(0x40))
                .unwrap();
            // A string across the 4 KiB page boundary at 0x2000.
            mem.write_slice(b"across\n\0", GuestAddress(0x1FFC))
                .unwrap();
            let narrowest = CpuPaging {
                phys_bits: 36,
                gib_pages: false,
                pse36: false,
            };
            let paging = Paging::from_registers(s.cr0, s.cr4, s.efer, narrowest);
            let view = GuestView::new(&mem, paging, s.cr3, false);
            let (stdout, warnings) = (Capture::new(), Capture::new());
            let fs = Filesystem::new(Grants::open(&[]).unwrap(), 4, Input::Null);
            let mut calls = Hypercalls::new(stdout.writer(), warnings.writer(), fs);
            for gva in [0x40, VIRTUAL + 0x40, 0x1FFC, VIRTUAL + 0x1FFC, 0xF000_0000] {
                let gva = u32::try_from(gva).unwrap();
                calls.out(Port::Display, gva, &view).unwrap();
            }
            calls.flush().unwrap();
            assert_eq!(
                String::from_utf8(stdout.contents()).unwrap(),
                "through the page tables\n".repeat(2) + "across\nacross\n",
                "{mode}"
            );
            // Above 200 MiB + 4 MiB nothing is mapped in an 8 MiB guest.
            let warned = String::from_utf8(warnings.contents()).unwrap();
            assert!(
                warned.starts_with("kvmini: display(0xf0000000) ignored: address 0xf0000000 "),
                "{mode}: {warned}"
            );
            assert_eq!(warned.lines().count(), 1, "{mode}: {warned}");
        }
    }

    #[test]
    fn control_registers_and_segments_per_mode() {
        let layout = Layout::new(64 << 20);
        let s = |mode| sregs(kvm_sregs::default(), &layout, mode, Ring::Zero);
        let real = s(CpuMode::Real);
        assert_eq!((real.cr0, real.cr4, real.efer), (CR0_ET, 0, 0));
        assert_eq!(
            (real.cs.selector, real.cs.base, real.cs.limit),
            (0, 0, 0xFFFF)
        );
        assert_eq!((real.cs.db, real.ss.db), (0, 0));
        let protected = s(CpuMode::Protected);
        assert_eq!(protected.cr0, CR0_PE | CR0_ET);
        assert_eq!(protected.cs.selector, CODE32_SELECTOR);
        assert_eq!(protected.ds.selector, DATA32_SELECTOR);
        assert_eq!((protected.cs.db, protected.cs.l), (1, 0));
        assert_eq!(protected.gdt.base, layout.gdt());
        let paged = s(CpuMode::Paged32);
        assert_eq!((paged.cr0, paged.cr4), (CR0_PE | CR0_ET | CR0_PG, CR4_PSE));
        let pae = s(CpuMode::Pae32);
        assert_eq!(
            (pae.cr0, pae.cr4, pae.efer),
            (CR0_PE | CR0_ET | CR0_PG, CR4_PAE, 0)
        );
        assert_eq!(pae.cr3, layout.pml4());
        for mode in [
            CpuMode::Real,
            CpuMode::Protected,
            CpuMode::Paged32,
            CpuMode::Pae32,
        ] {
            let limit = if mode == CpuMode::Real { 0x3FF } else { 0 };
            assert_eq!((s(mode).idt.base, s(mode).idt.limit), (0, limit));
            let regs = entry_regs(mode, 0, &layout, Ring::Zero);
            assert_eq!((regs.rip, regs.rflags), (0, 2));
        }
        assert_eq!(
            entry_regs(CpuMode::Real, 0, &layout, Ring::Zero).rsp,
            REAL_MODE_STACK
        );
    }

    #[test]
    fn the_gdt_matches_the_segment_registers() {
        let mem = memory::allocate(2 << 20).unwrap();
        let layout = Layout::new(2 << 20);
        write_tables(&mem, &layout, CpuMode::Protected, true, Ring::Zero).unwrap();
        let s = sregs(
            kvm_sregs::default(),
            &layout,
            CpuMode::Protected,
            Ring::Zero,
        );
        for seg in [s.cs, s.ds] {
            let d: u64 = mem
                .read_obj(GuestAddress(s.gdt.base + u64::from(seg.selector)))
                .unwrap();
            let limit = (d & 0xFFFF) | (((d >> 48) & 0xF) << 16);
            assert_eq!(limit, 0xF_FFFF);
            assert_eq!((d >> 40) & 0xF, u64::from(seg.type_));
            assert_eq!((d >> 47) & 1, u64::from(seg.present));
            assert_eq!((d >> 54) & 1, u64::from(seg.db));
            assert_eq!((d >> 55) & 1, u64::from(seg.g));
        }
    }

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

    #[test]
    fn hello_images_end_in_hlt() {
        for mode in [
            CpuMode::Real,
            CpuMode::Protected,
            CpuMode::Paged32,
            CpuMode::Pae32,
        ] {
            let image = hello(mode).unwrap();
            assert_eq!(image.last(), Some(&0xF4));
            let text: Vec<u8> = image
                .windows(3)
                .filter(|w| w[0] == 0xB0 && w[2] == 0xEE)
                .map(|w| w[1])
                .collect();
            assert_eq!(text, b"Hello, world!\n");
        }
        assert_eq!(hello(CpuMode::Long), None);
    }
}
