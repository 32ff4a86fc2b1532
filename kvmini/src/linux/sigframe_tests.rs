use super::*;
use crate::arch::x86_64::page_tables;
use crate::layout::Layout;
use crate::linux::ProcessLayout;
use crate::paging::{CpuPaging, Paging, PagingMode};
use vm_memory::{Bytes as _, GuestAddress};

const MEM: u64 = 16 << 20;
/// x87, SSE and AVX: the AVX component ends at 576 + 256.
const AVX: XstateFormat = XstateFormat {
    xsave: true,
    features: 0x7,
    size: 832,
};

fn memory() -> (crate::memory::GuestMemory, Layout, u64) {
    let mem = crate::memory::allocate(MEM).unwrap();
    let layout = Layout::new(MEM);
    page_tables::build_identity_map(&mem, &layout, false).unwrap();
    let p = ProcessLayout::new(&layout, 0x20_0000).unwrap();
    (mem, layout, p.stack_top - 0x1000)
}

fn view<'a>(mem: &'a crate::memory::GuestMemory, layout: &Layout) -> GuestView<'a> {
    let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
    GuestView::new(mem, long, layout.pml4(), true)
        .with_identity(page_tables::user_identity_range(layout, false))
}

fn interrupted() -> Interrupted {
    Interrupted {
        regs: kvm_regs {
            rax: 1,
            rbx: 2,
            rcx: 3,
            rdx: 4,
            rsi: 5,
            rdi: 6,
            rsp: 7,
            rbp: 8,
            r8: 9,
            r9: 10,
            r10: 11,
            r11: 12,
            r12: 13,
            r13: 14,
            r14: 15,
            r15: 16,
            rip: 0x40_1000,
            rflags: 0x3202,
        },
        mask: 0x8000_0200,
        altstack: [0x1000, 0, 0x4000],
    }
}

#[test]
fn a_frame_sits_below_its_top_as_linux_places_it() {
    let frame = Frame::below(0x10_0000, &AVX).unwrap();
    // The area with its magic word, 64-byte aligned, below the top.
    assert_eq!(frame.fpstate, (0x10_0000 - 836) & !63);
    assert_eq!(frame.fpstate % 64, 0);
    // The return address at 16n + 8, the whole frame below the area.
    assert_eq!(frame.at % 16, 8);
    assert!(frame.at + FRAME_SIZE <= frame.fpstate);
    assert!(frame.fpstate - (frame.at + FRAME_SIZE) < 32);
    assert_eq!(
        (frame.ucontext(), frame.siginfo()),
        (frame.at + 8, frame.at + 312)
    );
    // A top near zero cannot hold one.
    assert_eq!(Frame::below(100, &AVX), None);
    let legacy = Frame::below(0x10_0000, &XstateFormat::LEGACY).unwrap();
    assert_eq!(legacy.fpstate, 0x10_0000 - 512);
}

#[test]
fn a_written_frame_reads_back_with_linux_offsets() {
    let (mem, layout, top) = memory();
    let view = view(&mem, &layout);
    let frame = Frame::below(top, &AVX).unwrap();
    let before = interrupted();
    frame
        .write(&view, &AVX, (10, Cause::Tkill, 1000), 0x40_2000, &before)
        .unwrap();
    let word = |at: u64| mem.read_obj::<u64>(GuestAddress(at)).unwrap();
    let half = |at: u64| mem.read_obj::<u32>(GuestAddress(at)).unwrap();
    assert_eq!(word(frame.at), 0x40_2000);
    // uc_flags: FP_XSTATE, SIGCONTEXT_SS, STRICT_RESTORE_SS; uc_stack.
    assert_eq!(word(frame.ucontext()), 7);
    assert_eq!(word(frame.ucontext() + 16), 0x1000);
    assert_eq!(word(frame.ucontext() + 32), 0x4000);
    // sigcontext: r8 first, RIP at word 16, CS 0x23 and SS 0x1b.
    let sc = frame.ucontext() + 40;
    assert_eq!((word(sc), word(sc + 16 * 8)), (9, 0x40_1000));
    assert_eq!(word(sc + 18 * 8), 0x001b_0000_0000_0023);
    assert_eq!(word(sc + 21 * 8), 0x8000_0200);
    assert_eq!(word(sc + 23 * 8), frame.fpstate);
    assert_eq!(word(frame.ucontext() + 296), 0x8000_0200);
    // siginfo: signo, errno, code SI_TKILL, pid 1, uid.
    let info = frame.siginfo();
    assert_eq!((half(info), half(info + 4)), (10, 0));
    assert_eq!(mem.read_obj::<i32>(GuestAddress(info + 8)).unwrap(), -6);
    assert_eq!((half(info + 16), half(info + 20)), (1, 1000));
    // The software bytes and the closing magic word.
    let fp = frame.fpstate;
    assert_eq!(half(fp + 464), FP_XSTATE_MAGIC1);
    assert_eq!(half(fp + 468), 836);
    assert_eq!(word(fp + 472), 0x7);
    assert_eq!(half(fp + 480), 832);
    assert_eq!(half(fp + 832), FP_XSTATE_MAGIC2);
    let saved = read_saved(&view, frame.ucontext()).unwrap();
    assert_eq!(saved.regs, before.regs);
    assert_eq!(saved.mask, before.mask);
    assert_eq!(saved.altstack, before.altstack);
    assert_eq!(saved.fpstate, frame.fpstate);
}

#[test]
fn a_frame_that_does_not_fit_writes_nothing() {
    let (mem, layout, _) = memory();
    let view = view(&mem, &layout);
    // Over kvmini's area, or past guest memory: refused before any byte.
    for top in [layout.system_base + 0x2000, MEM + 0x1000] {
        let frame = Frame::below(top, &AVX).unwrap();
        assert!(frame
            .write(&view, &AVX, (10, Cause::Kill, 0), 1, &interrupted())
            .is_err());
    }
}

#[test]
fn an_fpstate_is_checked_as_linux_and_the_cpu_check_it() {
    let (mem, layout, top) = memory();
    let view = view(&mem, &layout);
    let frame = Frame::below(top, &AVX).unwrap();
    let fp = frame.fpstate;
    let fresh = || {
        frame
            .write(&view, &AVX, (10, Cause::Kill, 0), 1, &interrupted())
            .unwrap();
        mem.write_obj(0x1F80u32, GuestAddress(fp + 24)).unwrap();
        mem.write_obj(0x7u64, GuestAddress(fp + 512)).unwrap();
    };
    fresh();
    assert_eq!(check_fpstate(&view, &AVX, fp), Some(Restore::Xrstor(0x7)));
    // Null, misaligned, or no memory of the program.
    for at in [0, fp + 16, MEM - 64, 1 << 46] {
        assert_eq!(check_fpstate(&view, &AVX, at), None, "{at:#x}");
    }
    // A reserved MXCSR bit.
    mem.write_obj(0x1_1F80u32, GuestAddress(fp + 24)).unwrap();
    assert_eq!(check_fpstate(&view, &AVX, fp), None);
    fresh();
    // A component this host does not save, a compacted header, a
    // reserved header byte.
    for (offset, value) in [(512, 0x207u64), (520, 1 << 63), (560, 1)] {
        fresh();
        mem.write_obj(value, GuestAddress(fp + offset)).unwrap();
        assert_eq!(check_fpstate(&view, &AVX, fp), None, "{offset}");
    }
    // Without the magic words, or with another size: the legacy region
    // only, as Linux restores it.
    for (offset, value) in [(464, 0u32), (480, 512), (832, 0)] {
        fresh();
        mem.write_obj(value, GuestAddress(fp + offset)).unwrap();
        assert_eq!(
            check_fpstate(&view, &AVX, fp),
            Some(Restore::Fxrstor),
            "{offset}"
        );
    }
    // Requested components are limited to the host's.
    fresh();
    mem.write_obj(0xFFu64, GuestAddress(fp + 472)).unwrap();
    assert_eq!(check_fpstate(&view, &AVX, fp), Some(Restore::Xrstor(0x7)));
    // Without XSAVE: the legacy area, 16-byte aligned.
    let legacy = XstateFormat::LEGACY;
    assert_eq!(
        check_fpstate(&view, &legacy, fp + 16),
        Some(Restore::Fxrstor)
    );
    assert_eq!(check_fpstate(&view, &legacy, fp + 8), None);
}

#[test]
fn this_hosts_format_holds_x87_and_sse() {
    let format = XstateFormat::of_host();
    assert_eq!(format.features & 0b11, 0b11);
    assert!(format.size >= 512);
    assert_eq!(format.features & DYNAMIC_FEATURES, 0);
    if format.xsave {
        assert!(format.size >= 576);
    }
}
