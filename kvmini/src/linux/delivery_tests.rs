use super::*;
use crate::arch::x86_64::page_tables;
use crate::arch::x86_64::syscall::STUB_SYSRET;
use crate::layout::Layout;
use crate::linux::ProcessLayout;
use crate::paging::{CpuPaging, Paging, PagingMode};
use vm_memory::{Bytes as _, GuestAddress};

const MEM: u64 = 16 << 20;
const SIGUSR1: u64 = 10;
const HANDLER: u64 = 0x40_5000;
const RESTORER: u64 = 0x40_6000;
const AVX: XstateFormat = XstateFormat {
    xsave: true,
    features: 0x7,
    size: 832,
};

struct Setup {
    mem: crate::memory::GuestMemory,
    layout: Layout,
    process: Process,
    stub: u64,
    sp: u64,
}

fn setup() -> Setup {
    let mem = crate::memory::allocate(MEM).unwrap();
    let layout = Layout::new(MEM);
    page_tables::build_identity_map(&mem, &layout, false).unwrap();
    let p = ProcessLayout::new(&layout, 0x20_0000).unwrap();
    let mut process = Process::new(p, 1000, 1000, 64);
    process.frames.format = AVX;
    Setup {
        mem,
        layout,
        process,
        stub: p.stub,
        sp: p.stack_top - 0x2000,
    }
}

fn view<'a>(mem: &'a crate::memory::GuestMemory, layout: &Layout) -> GuestView<'a> {
    let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
    GuestView::new(mem, long, layout.pml4(), true)
        .with_identity(page_tables::user_identity_range(layout, false))
}

/// The registers of a system call made at `rcx - 2` with RSP `sp`, as
/// they are at its exit at ring 3.
fn call(s: &Setup, nr: u64, sp: u64) -> kvm_regs {
    kvm_regs {
        rax: nr,
        rdi: 1,
        rsi: SIGUSR1,
        rbx: 0xB0B,
        r12: 0xC12,
        rsp: sp,
        rcx: 0x40_1002,
        r11: 0x246,
        rip: s.stub + 2,
        rflags: 0x3002,
        ..Default::default()
    }
}

fn resumed(step: Step) -> kvm_regs {
    match step {
        Step::Resume(regs) => regs,
        other => panic!("{other:?}"),
    }
}

/// `tkill(1, SIGUSR1)` with a handler installed, through its delivery:
/// the saving trampoline, then the handler's first registers.
fn deliver(s: &mut Setup, flags: u64) -> (kvm_regs, kvm_regs) {
    s.process.actions[9] = [HANDLER, flags | SA_RESTORER, RESTORER, 0];
    assert_eq!(
        s.process.send(Ok(()), SIGUSR1, Cause::Tkill),
        super::super::Effect::Return(0)
    );
    let view = view(&s.mem, &s.layout);
    let exit = call(s, 200, s.sp);
    assert_eq!(s.process.signal_exit(&view, 3, &exit), None);
    let save = resumed(s.process.after_call(&view, 3, &exit, 0));
    (save, exit)
}

#[test]
fn a_handler_starts_after_the_cpu_saved_the_vector_registers() {
    let mut s = setup();
    let (save, exit) = deliver(&mut s, 0);
    // The saving trampoline at ring 3: xsave64 [rdi] with EDX:EAX = the
    // components.
    let frame = Frame::below(s.sp - 128, &AVX).unwrap();
    assert_eq!(save.rip, s.stub + TRAMPOLINES_OFFSET + XSAVE);
    assert_eq!((save.rdi, save.rax, save.rdx), (frame.fpstate, 0x7, 0));
    assert_eq!(save.rflags, 0x3202);
    // Its report starts the handler.
    let view = view(&s.mem, &s.layout);
    let mut report = save;
    report.rip += REPORT;
    let handler = resumed(s.process.signal_exit(&view, 3, &report).unwrap());
    assert_eq!(
        (
            handler.rip,
            handler.rsp,
            handler.rdi,
            handler.rsi,
            handler.rdx,
            handler.rax
        ),
        (
            HANDLER,
            frame.at,
            SIGUSR1,
            frame.siginfo(),
            frame.ucontext(),
            0
        )
    );
    // The rest are the interrupted code's; DF, TF and RF are cleared.
    assert_eq!((handler.rbx, handler.r12), (0xB0B, 0xC12));
    assert_eq!(handler.rflags, 0x3246);
    // The signal is blocked while it runs, and was sent by tkill.
    assert_eq!(s.process.sigmask, 1 << 9);
    let code: i32 = s.mem.read_obj(GuestAddress(frame.siginfo() + 8)).unwrap();
    assert_eq!(code, -6);
    let ret: u64 = s.mem.read_obj(GuestAddress(frame.at)).unwrap();
    assert_eq!(ret, RESTORER);
    // The frame holds the code as it resumes: RIP = RCX, RAX = result.
    let saved = sigframe::read_saved(&view, frame.ucontext()).unwrap();
    assert_eq!(
        (saved.regs.rip, saved.regs.rax, saved.regs.rsp),
        (0x40_1002, 0, s.sp)
    );
    assert_eq!(exit.rbx, saved.regs.rbx);
}

#[test]
fn rt_sigreturn_restores_the_frame_through_the_restoring_trampoline() {
    let mut s = setup();
    deliver(&mut s, 0);
    let frame = Frame::below(s.sp - 128, &AVX).unwrap();
    // What xsave64 writes: the header's components, MXCSR.
    s.mem
        .write_obj(0x1F80u32, GuestAddress(frame.fpstate + 24))
        .unwrap();
    s.mem
        .write_obj(0x7u64, GuestAddress(frame.fpstate + 512))
        .unwrap();
    let view = view(&s.mem, &s.layout);
    let mut report = call(&s, 0, 0);
    report.rip = s.stub + TRAMPOLINES_OFFSET + XSAVE + REPORT;
    resumed(s.process.signal_exit(&view, 3, &report).unwrap());
    // The handler returned to the restorer: RSP just above the frame's
    // return address.
    let ret = call(&s, RT_SIGRETURN, frame.at + 8);
    let restore = resumed(s.process.signal_exit(&view, 3, &ret).unwrap());
    assert_eq!(restore.rip, s.stub + TRAMPOLINES_OFFSET + XRSTOR);
    assert_eq!(
        (restore.rdi, restore.rax, restore.rdx),
        (frame.fpstate, 0x7, 0)
    );
    assert_eq!(s.process.sigmask, 0);
    let mut report = restore;
    report.rip += REPORT;
    let back = resumed(s.process.signal_exit(&view, 3, &report).unwrap());
    assert_eq!(
        (back.rip, back.rsp, back.rax, back.rbx),
        (0x40_1002, s.sp, 0, 0xB0B)
    );
    // Another exit at the report's address is an ordinary call.
    assert_eq!(s.process.signal_exit(&view, 3, &report), None);
}

#[test]
fn a_forged_frame_never_escapes() {
    let mut s = setup();
    deliver(&mut s, 0);
    let frame = Frame::below(s.sp - 128, &AVX).unwrap();
    s.mem
        .write_obj(0x1F80u32, GuestAddress(frame.fpstate + 24))
        .unwrap();
    let sc = frame.ucontext() + 40;
    let view = view(&s.mem, &s.layout);
    let ret = call(&s, RT_SIGRETURN, frame.at + 8);
    let original = s.process.clone();
    // Every RFLAGS bit: only those a system call's return takes.
    s.mem
        .write_obj(u64::MAX, GuestAddress(sc + 17 * 8))
        .unwrap();
    // CS and SS of ring 0: never read.
    s.mem
        .write_obj(0x10u64 << 48 | 0x08, GuestAddress(sc + 18 * 8))
        .unwrap();
    // SIGKILL and SIGSTOP in the mask.
    s.mem
        .write_obj(u64::MAX, GuestAddress(frame.ucontext() + 296))
        .unwrap();
    resumed(s.process.signal_exit(&view, 3, &ret).unwrap());
    let mut report = call(&s, 0, 0);
    report.rip = s.stub + TRAMPOLINES_OFFSET + XRSTOR + REPORT;
    let back = resumed(s.process.signal_exit(&view, 3, &report).unwrap());
    assert_eq!(back.rflags, 0x3C_3ED7);
    assert_eq!(s.process.sigmask, !((1 << 8) | (1 << 18)));
    // A RIP or RSP that is not canonical, a bad fpstate, a frame outside
    // the program's memory: SIGSEGV.
    for (at, value) in [
        (sc + 16 * 8, 1u64 << 47),
        (sc + 15 * 8, 0x8000_0000_0000_0000),
        (sc + 23 * 8, frame.fpstate + 8),
        (sc + 23 * 8, s.layout.system_base),
        (frame.fpstate + 24, 0x1_1F80),
    ] {
        let mut p = original.clone();
        let keep: u64 = s.mem.read_obj(GuestAddress(at)).unwrap();
        s.mem.write_obj(value, GuestAddress(at)).unwrap();
        assert_eq!(
            p.signal_exit(&view, 3, &ret),
            Some(Step::Killed(11)),
            "{at:#x}"
        );
        s.mem.write_obj(keep, GuestAddress(at)).unwrap();
    }
    for rsp in [0, 8, s.layout.system_base + 8, MEM + 8, u64::MAX] {
        let mut p = original.clone();
        let forged = call(&s, RT_SIGRETURN, rsp);
        assert_eq!(
            p.signal_exit(&view, 3, &forged),
            Some(Step::Killed(11)),
            "{rsp:#x}"
        );
    }
}

#[test]
fn at_ring_0_the_trampoline_is_reached_through_sysret() {
    let mut s = setup();
    s.process.actions[9] = [HANDLER, SA_RESTORER, RESTORER, 0];
    s.process.send(Ok(()), SIGUSR1, Cause::Kill);
    let view = view(&s.mem, &s.layout);
    let exit = call(&s, 62, s.sp);
    let save = resumed(s.process.after_call(&view, 0, &exit, 0));
    // RIP stays at `sysretq`, which goes to RCX with R11's flags.
    assert_eq!(save.rip, s.stub + STUB_SYSRET);
    assert_eq!(save.rcx, s.stub + TRAMPOLINES_OFFSET + XSAVE);
    assert_eq!(save.r11, 0x3202);
    // An exit at ring 0 from anywhere else cannot go there.
    let mut p = setup().process;
    p.actions[9] = [HANDLER, SA_RESTORER, RESTORER, 0];
    p.send(Ok(()), SIGUSR1, Cause::Kill);
    let mut elsewhere = exit;
    elsewhere.rip = 0x40_0000;
    assert!(matches!(
        p.after_call(&view, 0, &elsewhere, 0),
        Step::Bad(_)
    ));
}

#[test]
fn no_restorer_a_full_altstack_or_a_bad_stack_end_the_program_as_sigsegv() {
    let mut s = setup();
    s.process.actions[9] = [HANDLER, 0, 0, 0];
    s.process.send(Ok(()), SIGUSR1, Cause::Kill);
    let view = view(&s.mem, &s.layout);
    let exit = call(&s, 62, s.sp);
    assert_eq!(s.process.after_call(&view, 3, &exit, 0), Step::Killed(11));
    // An alternate stack too small for the frame (with AVX-512's state).
    let mut s = setup();
    s.process.frames.format = XstateFormat {
        xsave: true,
        features: 0xE7,
        size: 2688,
    };
    s.process.altstack = super::super::signals::AltStack::disabled();
    assert_eq!(s.process.set_altstack(0x30_0000, 0, 2048, s.sp), Ok(()));
    s.process.actions[9] = [HANDLER, SA_RESTORER | SA_ONSTACK, RESTORER, 0];
    s.process.send(Ok(()), SIGUSR1, Cause::Kill);
    assert_eq!(s.process.after_call(&view, 3, &exit, 0), Step::Killed(11));
    // A stack in kvmini's area.
    let mut s = setup();
    s.process.actions[9] = [HANDLER, SA_RESTORER, RESTORER, 0];
    s.process.send(Ok(()), SIGUSR1, Cause::Kill);
    let high = call(&s, 62, s.layout.system_base + 0x1000);
    assert_eq!(s.process.after_call(&view, 3, &high, 0), Step::Killed(11));
}

#[test]
fn sa_resethand_nodefer_and_the_handlers_mask_apply() {
    let mut s = setup();
    s.process.actions[9] = [
        HANDLER,
        SA_RESTORER | SA_RESETHAND | SA_NODEFER,
        RESTORER,
        1 << 11,
    ];
    s.process.send(Ok(()), SIGUSR1, Cause::Kill);
    let view = view(&s.mem, &s.layout);
    let exit = call(&s, 62, s.sp);
    resumed(s.process.after_call(&view, 3, &exit, 0));
    assert_eq!(s.process.sigmask, 1 << 11);
    assert_eq!(s.process.actions[9][0], 0);
}
