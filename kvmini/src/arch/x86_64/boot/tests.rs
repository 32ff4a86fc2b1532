//! The boot state of every mode and ring, checked without KVM.

use kvm_bindings::{kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::arch::x86_64::cpu::{CODE32_SELECTOR, DATA32_SELECTOR};
use crate::arch::x86_64::paging::tests::translate;
use crate::arch::x86_64::paging::{Access, CpuPaging, Paging};
use crate::memory;

const KERNEL_READ: Access = Access {
    user: false,
    write: false,
};

fn boot(layout: &Layout, mode: CpuMode, ring: Ring) -> BootState {
    boot_state(
        layout,
        &BootSpec {
            mode,
            ring,
            flat: true,
            entry: 0,
            fsgsbase: false,
            syscall_entry: None,
        },
    )
}

/// The system registers of `mode` over a zeroed reset state.
fn sregs(layout: &Layout, mode: CpuMode, ring: Ring) -> kvm_sregs {
    boot(layout, mode, ring).sregs.over(kvm_sregs::default())
}

#[test]
fn the_paged_modes_identity_map_all_of_memory() {
    for size in [2 << 20, 6 << 20, 64 << 20, (1 << 30) + (2 << 20), 4 << 30] {
        let mem = memory::allocate(size).unwrap();
        let layout = Layout::new(size);
        for mode in [CpuMode::Paged32, CpuMode::Pae32] {
            boot(&layout, mode, Ring::Zero)
                .tables
                .write_to(&mem)
                .unwrap();
            let s = sregs(&layout, mode, Ring::Zero);
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
                assert_eq!(t.gpa.raw(), gva, "{mode} size {size:#x}");
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
        boot(&layout, mode, Ring::Zero)
            .tables
            .write_to(&mem)
            .unwrap();
        let s = sregs(&layout, mode, Ring::Zero);
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
    let s = |mode| sregs(&layout, mode, Ring::Zero);
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
        let regs = boot(&layout, mode, Ring::Zero).regs;
        assert_eq!((regs.rip, regs.rflags), (0, 2));
    }
    assert_eq!(
        boot(&layout, CpuMode::Real, Ring::Zero).regs.rsp,
        REAL_MODE_STACK
    );
}

#[test]
fn the_gdt_matches_the_segment_registers() {
    let mem = memory::allocate(2 << 20).unwrap();
    let layout = Layout::new(2 << 20);
    boot(&layout, CpuMode::Protected, Ring::Zero)
        .tables
        .write_to(&mem)
        .unwrap();
    let s = sregs(&layout, CpuMode::Protected, Ring::Zero);
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

/// Long mode at each ring, field by field, written out independently of
/// the descriptors (Intel SDM: CR0 = PE|MP|ET|NE|WP|PG, CR4 = PAE|OSFXSR|
/// OSXMMEXCPT, EFER = LME|LMA).
#[test]
fn long_mode_registers_per_ring() {
    let layout = Layout::new(64 << 20);
    let flat_segment = |selector, type_, dpl, l, db| kvm_segment {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector,
        type_,
        present: 1,
        dpl,
        db,
        s: 1,
        l,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    for (ring, cs, ds, dpl, iopl) in [
        (Ring::Zero, 0x08, 0x10, 0, 0),
        (Ring::Three, 0x23, 0x1B, 3, 0x3000),
    ] {
        for (fsgsbase, cr4) in [(false, 0x620), (true, 0x1_0620)] {
            let state = boot_state(
                &layout,
                &BootSpec {
                    mode: CpuMode::Long,
                    ring,
                    flat: false,
                    entry: 0x40_1000,
                    fsgsbase,
                    syscall_entry: None,
                },
            );
            let s = state.sregs.over(kvm_sregs::default());
            assert_eq!(s.cs, flat_segment(cs, 0xB, dpl, 1, 0));
            for seg in [s.ds, s.es, s.fs, s.gs, s.ss] {
                assert_eq!(seg, flat_segment(ds, 0x3, dpl, 0, 1));
            }
            assert_eq!(
                s.tr,
                kvm_segment {
                    base: 0x3FF_9000,
                    limit: 0x2068,
                    selector: 0x28,
                    type_: 0xB,
                    present: 1,
                    ..Default::default()
                }
            );
            assert_eq!(
                s.ldt,
                kvm_segment {
                    unusable: 1,
                    ..Default::default()
                }
            );
            assert_eq!(
                (s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit),
                (0x3FF_8000, 55, 0x3FF_8800, 511)
            );
            assert_eq!(
                (s.cr0, s.cr3, s.cr4, s.efer),
                (0x8001_0033, 0x3FF_0000, cr4, 0x500)
            );
            assert_eq!(state.sregs.with_xsave().cr4, cr4 | 0x4_0000);
            assert_eq!(
                (state.regs.rip, state.regs.rsp, state.regs.rflags),
                (0x40_1000, 0x3FF_0000, 2 | iopl)
            );
            assert_eq!((state.fpu.fcw, state.fpu.mxcsr), (0x37F, 0x1F80));
            assert!(state.xsave);
        }
    }
    // Only long mode turns XSAVE on, and the other modes keep the vCPU's
    // own TR and LDT.
    for mode in [
        CpuMode::Real,
        CpuMode::Protected,
        CpuMode::Paged32,
        CpuMode::Pae32,
    ] {
        let state = boot(&layout, mode, Ring::Zero);
        assert!(!state.xsave, "{mode}");
        assert_eq!((state.sregs.tr, state.sregs.ldt), (None, None), "{mode}");
    }
}

/// Every segment register of every mode and ring matches the GDT entry
/// its selector names in the tables kvmini writes (real mode has no GDT).
#[test]
fn segment_registers_match_their_gdt_entries_in_every_mode_and_ring() {
    let size = 4 << 20;
    let layout = Layout::new(size);
    for (mode, ring) in [
        (CpuMode::Protected, Ring::Zero),
        (CpuMode::Paged32, Ring::Zero),
        (CpuMode::Pae32, Ring::Zero),
        (CpuMode::Long, Ring::Zero),
        (CpuMode::Long, Ring::Three),
    ] {
        let mem = memory::allocate(size).unwrap();
        let state = boot(&layout, mode, ring);
        state.tables.write_to(&mem).unwrap();
        let s = state.sregs.over(kvm_sregs::default());
        let entry = |selector: u16| -> u64 {
            let index = u64::from(selector & !7);
            assert!(index + 7 <= u64::from(s.gdt.limit), "{mode} {selector:#x}");
            mem.read_obj(GuestAddress(s.gdt.base + index)).unwrap()
        };
        let mut segments = vec![s.cs, s.ds, s.es, s.fs, s.gs, s.ss];
        if mode == CpuMode::Long {
            segments.push(s.tr);
        }
        for seg in segments {
            let d = entry(seg.selector);
            let raw_limit = (d & 0xFFFF) | (((d >> 48) & 0xF) << 16);
            let g = (d >> 55) & 1;
            let limit = if g == 1 {
                (raw_limit << 12) | 0xFFF
            } else {
                raw_limit
            };
            let base = ((d >> 16) & 0xFF_FFFF) | (((d >> 56) & 0xFF) << 24);
            let high = if seg.s == 0 {
                entry(seg.selector + 8) << 32
            } else {
                0
            };
            let what = format!("{mode} ring {} selector {:#x}", ring.number(), seg.selector);
            assert_eq!(u64::from(seg.limit), limit, "{what}");
            assert_eq!(seg.base, base | high, "{what}");
            // TR is busy once loaded; its GDT entry is an available TSS.
            let busy = if seg.s == 0 { 2 } else { 0 };
            assert_eq!(((d >> 40) & 0xF) | busy, u64::from(seg.type_), "{what}");
            assert_eq!((d >> 44) & 1, u64::from(seg.s), "{what}");
            assert_eq!((d >> 45) & 3, u64::from(seg.dpl), "{what}");
            assert_eq!((d >> 47) & 1, u64::from(seg.present), "{what}");
            assert_eq!((d >> 53) & 1, u64::from(seg.l), "{what}");
            assert_eq!((d >> 54) & 1, u64::from(seg.db), "{what}");
            assert_eq!(g, u64::from(seg.g), "{what}");
            assert_eq!(u64::from(seg.selector & 3), u64::from(seg.dpl), "{what}");
        }
    }
}

/// A ring-3 ELF guest's page tables are its memory map's alone: leaving
/// the identity map out of its boot state (which the map's tables are
/// written over) changes no byte of guest memory, at every size.
#[test]
fn a_protected_guest_needs_no_identity_map_under_its_own_tables() {
    use crate::arch::x86_64::memory_map::{self, MemoryMap};
    use crate::arch::x86_64::page_tables;
    use crate::loader::{load_elf, LoadWindow};
    use kvmini_abi::layout::ELF_LOAD_MIN;

    for size in [2 << 20, 6 << 20, 64 << 20] {
        let layout = Layout::new(size);
        let spec = BootSpec {
            mode: CpuMode::Long,
            ring: Ring::Three,
            flat: false,
            entry: 0,
            fsgsbase: false,
            syscall_entry: None,
        };
        let memories = [boot_state, boot_state_without_page_tables].map(|boot| {
            let mem = memory::allocate(size).unwrap();
            let window = LoadWindow {
                start: ELF_LOAD_MIN,
                end: layout.system_base,
            };
            let image = load_elf(&mem, crate::guests::HELLO.elf, &window).unwrap();
            let (stack, guard) = memory_map::sdk_stack(image.highest, layout.stack_top());
            let map = MemoryMap::new(&image.segments, stack, guard, None, layout.system_base);
            let mut state = boot(&layout, &spec);
            state
                .tables
                .extend(page_tables::protected_map(&layout, &map));
            state.tables.write_to(&mem).unwrap();
            let mut bytes = vec![0u8; usize::try_from(size).unwrap()];
            mem.read_slice(&mut bytes, GuestAddress(0)).unwrap();
            bytes
        });
        assert!(memories[0] == memories[1], "size {size:#x}");
        // And the identity map was left out: the tables differ alone.
        assert!(
            boot_state_without_page_tables(&layout, &spec)
                .tables
                .pieces()
                .count()
                < boot_state(&layout, &spec).tables.pieces().count()
        );
    }
}
