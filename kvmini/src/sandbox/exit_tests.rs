//! The run loop's decisions, from synthetic exits: no KVM, the real
//! handlers, guest memory with kvmini's identity map.

use std::io::{self, Write};

use kvmini_abi::errno::EFAULT;
use kvmini_abi::host::ArgvArgs;
use vm_memory::{Bytes, GuestAddress};
use zerocopy::{FromZeros, IntoBytes};

use super::*;
use crate::arch::x86_64::page_tables;
use crate::fs::Filesystem;
use crate::grant::Grants;
use crate::output::{Capture, Input};
use crate::paging::{CpuPaging, Paging, PagingMode};

const MEM: u64 = 4 << 20;

/// What a vCPU would say at an exit, made up.
struct Fake {
    mem: GuestMemory,
    layout: Layout,
    mode: CpuMode,
    handler: HandlerState,
    ring: u8,
    /// Reading registers fails, as a host fault would.
    broken: bool,
}

impl Fake {
    fn new() -> Self {
        let mem = crate::memory::allocate(MEM).unwrap();
        let layout = Layout::new(MEM);
        page_tables::build_identity_map(&mem, &layout, false).unwrap();
        Fake {
            mem,
            layout,
            mode: CpuMode::Long,
            handler: HandlerState::default(),
            ring: 3,
            broken: false,
        }
    }

    fn fault(&self) -> Result<(), VcpuError> {
        if self.broken {
            return Err(VcpuError::SystemRegisters(kvm_ioctls::Error::new(
                libc::EIO,
            )));
        }
        Ok(())
    }
}

impl ExitContext for Fake {
    fn view(&mut self) -> Result<GuestView<'_>, VcpuError> {
        self.fault()?;
        let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
        Ok(GuestView::new(&self.mem, long, self.layout.pml4(), true)
            .with_identity(page_tables::user_identity_range(&self.layout, false)))
    }

    fn handler_state(&mut self) -> Result<HandlerState, VcpuError> {
        self.fault()?;
        Ok(self.handler)
    }

    fn ring(&mut self) -> Result<u8, VcpuError> {
        self.fault()?;
        Ok(self.ring)
    }

    fn registers(&mut self) -> Result<(kvm_bindings::kvm_regs, u64), VcpuError> {
        self.fault()?;
        Ok((kvm_bindings::kvm_regs::default(), 0))
    }

    fn memory(&self) -> &GuestMemory {
        &self.mem
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn mode(&self) -> CpuMode {
        self.mode
    }
}

/// Handlers writing to captures, with one argument "a".
fn handlers() -> (Hypercalls, Capture, Capture) {
    let fs = Filesystem::new(Grants::open(&[]).unwrap(), 8, Input::Null);
    let (stdout, warnings) = (Capture::new(), Capture::new());
    let calls = Hypercalls::new(stdout.writer(), warnings.writer(), fs).with_argv(&["a"]);
    (calls, stdout, warnings)
}

fn out(port: Port, value: u32) -> Exit {
    let (_, size) = port.access();
    Exit::IoOut {
        port: port as u16,
        size,
        count: 1,
        value,
    }
}

/// Serves `exit` as the `n`th exit of a run.
fn serve_nth(calls: &mut Hypercalls, cpu: &mut Fake, exit: Exit, n: u64) -> (Next, Stats) {
    let mut stats = Stats {
        exits: n,
        ..Stats::default()
    };
    let next = serve(calls, cpu, decode(&exit), &mut stats).unwrap();
    (next, stats)
}

fn rax(errno: i32) -> Next {
    Next::SetRax(u64::from_ne_bytes((-i64::from(errno)).to_ne_bytes()))
}

#[test]
fn every_port_decodes_with_its_one_access_and_no_other() {
    let value = 0x1234_5678;
    for port in Port::ALL {
        let (direction, size) = port.access();
        let exit = match direction {
            Direction::Out => out(port, value),
            Direction::In => Exit::IoIn {
                port: port as u16,
                size,
                count: 1,
            },
        };
        let value = if direction == Direction::In { 0 } else { value };
        let call = Hypercall::new(port, value);
        assert_eq!(call.port(), port);
        assert_eq!(decode(&exit), Decoded::Call(call), "{port:?}");
        for wrong_direction in [Direction::In, Direction::Out] {
            for wrong_size in [1, 2, 4] {
                for count in [1, 2] {
                    if (wrong_direction, wrong_size, count) == (direction, size, 1) {
                        continue;
                    }
                    let exit = match wrong_direction {
                        Direction::Out => Exit::IoOut {
                            port: port as u16,
                            size: wrong_size,
                            count,
                            value,
                        },
                        Direction::In => Exit::IoIn {
                            port: port as u16,
                            size: wrong_size,
                            count,
                        },
                    };
                    assert_eq!(
                        decode(&exit),
                        Decoded::BadPort(Unserved::BadAccess {
                            port,
                            direction: wrong_direction,
                            size: wrong_size,
                            count,
                        }),
                        "{port:?} {wrong_direction:?} {wrong_size} {count}"
                    );
                }
            }
        }
    }
    // The values each hypercall carries.
    let v = 0xFFFF_FF41;
    assert_eq!(Hypercall::new(Port::Console, v), Hypercall::Console(0x41));
    assert_eq!(Hypercall::new(Port::PrintVal, v), Hypercall::PrintVal(v));
    assert_eq!(
        Hypercall::new(Port::Display, v),
        Hypercall::Display(0xFFFF_FF41)
    );
    assert_eq!(Hypercall::new(Port::Exit, v), Hypercall::Exit(v));
    assert_eq!(
        Hypercall::new(Port::Batch, v),
        Hypercall::Batch(0xFFFF_FF41)
    );
    assert_eq!(
        Hypercall::new(Port::Open, v),
        Hypercall::Block {
            port: Port::Open,
            address: 0xFFFF_FF41
        }
    );
}

#[test]
fn a_port_no_hypercall_owns_is_unserved_in_both_directions() {
    let mut unknown = 0;
    for raw in 0..=u16::MAX {
        if Port::try_from(raw).is_ok() {
            continue;
        }
        unknown += 1;
        for size in [1, 2, 4] {
            let out = Exit::IoOut {
                port: raw,
                size,
                count: 1,
                value: 0,
            };
            let unserved = |direction| {
                Decoded::BadPort(Unserved::UnknownPort {
                    port: raw,
                    direction,
                    size,
                })
            };
            assert_eq!(decode(&out), unserved(Direction::Out));
            let inp = Exit::IoIn {
                port: raw,
                size,
                count: 1,
            };
            assert_eq!(decode(&inp), unserved(Direction::In));
        }
    }
    assert_eq!(unknown, 65536 - Port::ALL.len());
    // Served, they end the run and count as I/O exits.
    let (mut calls, stdout, _) = handlers();
    let mut cpu = Fake::new();
    let unknown = Exit::IoOut {
        port: 0x3F8,
        size: 1,
        count: 1,
        value: 0,
    };
    let bad = Exit::IoIn {
        port: Port::Console as u16,
        size: 1,
        count: 1,
    };
    for (exit, ending) in [
        (
            unknown,
            Unserved::UnknownPort {
                port: 0x3F8,
                direction: Direction::Out,
                size: 1,
            },
        ),
        (
            bad,
            Unserved::BadAccess {
                port: Port::Console,
                direction: Direction::In,
                size: 1,
                count: 1,
            },
        ),
    ] {
        let (next, stats) = serve_nth(&mut calls, &mut cpu, exit, 1);
        assert_eq!(next, Next::End(Ending::Unserved(ending)));
        assert_eq!(
            (stats.io_exits, stats.by_hypercall),
            (1, [0; Port::ALL.len()])
        );
    }
    assert_eq!(stdout.contents(), b"");
}

#[test]
fn output_hypercalls_print_and_resume_and_the_ending_ones_end() {
    let (mut calls, stdout, warnings) = handlers();
    let mut cpu = Fake::new();
    cpu.mem
        .write_slice(b"shown\0", GuestAddress(0x10_0000))
        .unwrap();
    let cases = [
        (out(Port::Console, 0x100 | u32::from(b'k')), Next::Resume),
        (out(Port::PrintVal, 4_294_967_295), Next::Resume),
        (out(Port::PrintVal, 0), Next::Resume),
        (out(Port::Display, 0x10_0000), Next::Resume),
        // A bad pointer is a warning, and the guest goes on.
        (out(Port::Display, 0), Next::Resume),
        (out(Port::Exit, 300), Next::End(Ending::Exited(300))),
        (out(Port::Halt, 9), Next::End(Ending::Halted)),
    ];
    for (exit, want) in cases {
        let (next, stats) = serve_nth(&mut calls, &mut cpu, exit, 1);
        assert_eq!(next, want, "{exit:?}");
        let Exit::IoOut { port, .. } = exit else {
            unreachable!()
        };
        let port = Port::try_from(port).unwrap();
        let mut counted = [0; Port::ALL.len()];
        counted[port.index()] = 1;
        assert_eq!((stats.io_exits, stats.by_hypercall), (1, counted));
    }
    calls.flush().unwrap();
    assert_eq!(stdout.contents(), b"k4294967295\n0\nshown");
    assert_eq!(
        String::from_utf8(warnings.contents()).unwrap(),
        "kvmini: display(0x0) ignored: address 0x0 is not mapped (level 1 entry not present)\n"
    );
}

#[test]
fn get_num_exits_answers_the_count_so_far_saturated() {
    let (mut calls, _, _) = handlers();
    let mut cpu = Fake::new();
    let exit = Exit::IoIn {
        port: Port::GetNumExits as u16,
        size: 4,
        count: 1,
    };
    for (n, want) in [
        (1, 1),
        (2, 2),
        (u64::from(u32::MAX) - 1, u32::MAX - 1),
        (u64::from(u32::MAX), u32::MAX),
        (u64::from(u32::MAX) + 1, u32::MAX),
        (u64::MAX, u32::MAX),
    ] {
        let (next, stats) = serve_nth(&mut calls, &mut cpu, exit, n);
        assert_eq!(next, Next::CompleteIn(want), "{n}");
        assert_eq!(stats.by_hypercall[Port::GetNumExits.index()], 1);
    }
}

#[test]
fn an_exception_report_is_a_crash_only_from_kvmini_s_handler() {
    let (mut calls, _, _) = handlers();
    let mut cpu = Fake::new();
    let frame_bytes = (ExceptionFrame::WORDS * 8) as u64;
    let top = cpu.layout.exception_stack_top();
    let rsp = top - frame_bytes;
    // rax..r15 are 1..=15, then vector 14, error code 6, rip, cs 0x1B,
    // rflags, rsp, ss.
    let mut words: Vec<u64> = (1..=15).collect();
    words.extend([14, 6, 0x40_1000, 0x1B, 0x202, 0x7F_F000, 0x23]);
    for (i, word) in (0u64..).zip(&words) {
        cpu.mem.write_obj(*word, GuestAddress(rsp + i * 8)).unwrap();
    }
    let tail = crate::cpu::exception_tail_range(&cpu.layout);
    cpu.handler = HandlerState {
        rip: tail.start,
        rsp,
        cpl: 0,
        cr2: 0xDEAD_0000,
    };
    let exit = out(Port::Exception, 14);
    let (next, stats) = serve_nth(&mut calls, &mut cpu, exit, 3);
    let Next::Crashed(crash, regs) = next else {
        panic!("{next:?}")
    };
    assert_eq!(
        crash,
        Crash {
            vector: 14,
            error_code: 6,
            rip: 0x40_1000,
            rsp: 0x7F_F000,
            ring: 3,
            cr2: 0xDEAD_0000,
            ..Default::default()
        }
    );
    assert_eq!(
        (regs.rax, regs.r15, regs.rip, regs.rflags),
        (1, 15, 0x40_1000, 0x202)
    );
    assert_eq!(stats.by_hypercall[Port::Exception.index()], 1);
    // Anything else writing the port forges a report.
    let forged = Next::End(Ending::Unserved(Unserved::ForgedException));
    let real = cpu.handler;
    for handler in [
        HandlerState { cpl: 3, ..real },
        HandlerState {
            rip: tail.end,
            ..real
        },
        HandlerState {
            rip: tail.start - 1,
            ..real
        },
        HandlerState {
            rsp: rsp + 8,
            ..real
        },
        HandlerState {
            rsp: cpu.layout.exception_stack_bottom() - 8,
            ..real
        },
        HandlerState {
            rsp: u64::MAX - 8,
            ..real
        },
    ] {
        cpu.handler = handler;
        let (next, _) = serve_nth(&mut calls, &mut cpu, exit, 3);
        assert_eq!(next, forged, "{handler:?}");
    }
}

#[test]
fn every_block_call_with_an_unusable_block_is_efault_in_rax() {
    let (mut calls, stdout, warnings) = handlers();
    let mut cpu = Fake::new();
    let top = cpu.layout.system_base;
    let mut expected = String::new();
    let block_ports = Port::ALL
        .into_iter()
        .filter(|p| p.batchable() || *p == Port::Batch);
    for port in block_ports {
        // Not mapped, kvmini's own (supervisor) pages, and a block that
        // would wrap past the top of the address space.
        for address in [0, u32::try_from(top).unwrap(), u32::MAX - 3] {
            let (next, stats) = serve_nth(&mut calls, &mut cpu, out(port, address), 1);
            assert_eq!(next, rax(EFAULT), "{port:?} {address:#x}");
            assert_eq!(stats.by_hypercall[port.index()], 1);
            expected += &format!(
                "kvmini: {}: argument block at {address:#x} is not writable guest memory; \
                 -EFAULT in RAX\n",
                port.name()
            );
        }
    }
    assert_eq!(String::from_utf8(warnings.contents()).unwrap(), expected);
    assert_eq!(stdout.contents(), b"");
}

#[test]
fn a_usable_block_gets_its_result_written_and_the_guest_resumes() {
    let (mut calls, _, warnings) = handlers();
    let mut cpu = Fake::new();
    let (block, buf) = (0x10_0000u64, 0x10_1000u64);
    let args = ArgvArgs {
        buf,
        len: 16,
        result: 0,
    };
    cpu.mem
        .write_slice(args.as_bytes(), GuestAddress(block))
        .unwrap();
    let (next, _) = serve_nth(&mut calls, &mut cpu, out(Port::Argv, 0x10_0000), 1);
    assert_eq!(next, Next::Resume);
    let mut done = ArgvArgs::new_zeroed();
    cpu.mem
        .read_slice(done.as_mut_bytes(), GuestAddress(block))
        .unwrap();
    assert_eq!(done.result, 2);
    let mut argv = [0u8; 2];
    cpu.mem.read_slice(&mut argv, GuestAddress(buf)).unwrap();
    assert_eq!(&argv, b"a\0");
    assert_eq!(warnings.contents(), b"");
}

#[test]
fn the_exits_that_are_not_hypercalls_end_the_run_or_resume() {
    let (mut calls, _, _) = handlers();
    let mut cpu = Fake::new();
    cpu.ring = 3;
    let unserved = |u| Next::End(Ending::Unserved(u));
    let mmio = Exit::Mmio {
        addr: 0xFEE0_0000,
        write: true,
        len: 4,
    };
    let cases = [
        (Exit::Hlt, 1, Next::End(Ending::Halted), [0, 1, 0, 0]),
        (
            mmio,
            1,
            unserved(Unserved::Mmio {
                addr: 0xFEE0_0000,
                write: true,
            }),
            [0, 0, 1, 0],
        ),
        (
            Exit::Shutdown,
            1,
            unserved(Unserved::Shutdown),
            [0, 0, 0, 1],
        ),
        (
            Exit::FailEntry { reason: 0x21 },
            1,
            unserved(Unserved::FailEntry(0x21)),
            [0, 0, 0, 1],
        ),
        (
            Exit::InternalError { suberror: 1 },
            2,
            unserved(Unserved::InternalError {
                suberror: 1,
                ring: 3,
            }),
            [0, 0, 0, 1],
        ),
        (
            Exit::Other { reason: 7 },
            2,
            unserved(Unserved::Other(7)),
            [0, 0, 0, 1],
        ),
        (Exit::Interrupted, 2, Next::Resume, [0, 0, 0, 0]),
    ];
    for (exit, n, want, [io, hlt, mmio, other]) in cases {
        let (next, stats) = serve_nth(&mut calls, &mut cpu, exit, n);
        assert_eq!(next, want, "{exit:?}");
        assert_eq!(
            (
                stats.io_exits,
                stats.hlt_exits,
                stats.mmio_exits,
                stats.other_exits
            ),
            (io, hlt, mmio, other),
            "{exit:?}"
        );
    }
    // A shutdown as the first exit of a mode this host may refuse: the mode
    // was refused; any later one is the guest's triple fault.
    for mode in [CpuMode::Paged32, CpuMode::Pae32] {
        cpu.mode = mode;
        let (next, _) = serve_nth(&mut calls, &mut cpu, Exit::Shutdown, 1);
        assert_eq!(next, unserved(Unserved::ModeRefused(mode)));
        let (next, _) = serve_nth(&mut calls, &mut cpu, Exit::Shutdown, 2);
        assert_eq!(next, unserved(Unserved::Shutdown));
    }
    for mode in [CpuMode::Real, CpuMode::Protected, CpuMode::Long] {
        cpu.mode = mode;
        let (next, _) = serve_nth(&mut calls, &mut cpu, Exit::Shutdown, 1);
        assert_eq!(next, unserved(Unserved::Shutdown), "{mode:?}");
    }
}

/// A writer whose reader went away, or that fails otherwise.
struct Failing(io::ErrorKind);

impl Write for Failing {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(self.0.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        Err(self.0.into())
    }
}

#[test]
fn output_to_a_closed_reader_ends_the_run_and_other_failures_are_host_faults() {
    let mut cpu = Fake::new();
    cpu.mem
        .write_slice(b"line\n\0", GuestAddress(0x10_0000))
        .unwrap();
    let calls_to = |kind| {
        let fs = Filesystem::new(Grants::open(&[]).unwrap(), 8, Input::Null);
        Hypercalls::new(Box::new(Failing(kind)), Box::new(io::sink()), fs)
    };
    for exit in [
        out(Port::Console, u32::from(b'x')),
        out(Port::PrintVal, 7),
        out(Port::Display, 0x10_0000),
        out(Port::Exit, 0),
        out(Port::Halt, 0),
    ] {
        let mut calls = calls_to(io::ErrorKind::BrokenPipe);
        let (next, _) = serve_nth(&mut calls, &mut cpu, exit, 1);
        assert_eq!(next, Next::End(Ending::OutputClosed), "{exit:?}");
        let mut calls = calls_to(io::ErrorKind::PermissionDenied);
        let mut stats = Stats::default();
        let error = serve(&mut calls, &mut cpu, decode(&exit), &mut stats).unwrap_err();
        assert!(
            matches!(&error, ExitError::Output(e) if e.kind() == io::ErrorKind::PermissionDenied),
            "{exit:?}: {error:?}"
        );
    }
}

#[test]
fn registers_that_cannot_be_read_are_a_host_fault() {
    let (mut calls, _, _) = handlers();
    let mut cpu = Fake::new();
    cpu.broken = true;
    for exit in [
        out(Port::Display, 0x10_0000),
        out(Port::Open, 0x10_0000),
        out(Port::Exception, 0),
        Exit::InternalError { suberror: 1 },
    ] {
        let mut stats = Stats::default();
        let error = serve(&mut calls, &mut cpu, decode(&exit), &mut stats).unwrap_err();
        assert!(matches!(error, ExitError::Vcpu(_)), "{exit:?}: {error:?}");
    }
}
