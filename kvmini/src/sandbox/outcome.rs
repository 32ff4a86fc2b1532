//! How a run ended: the ending and the exit status it maps to, the
//! counters and timings of the run, and the registers at the end.

use std::fmt;
use std::time::Duration;

use kvm_bindings::kvm_regs;
use kvmini_abi::{Direction, Port};

pub use super::backtrace::{Backtrace, ChainEnd, CodeLocation, Frame, MAX_FRAMES};
pub use crate::arch::x86_64::memory_map::Violation;
use crate::cpu;
use crate::modes::{self, CpuMode};
use crate::vcpu;

/// Exit status for kvmini's own errors (bad arguments, bad guest image, no KVM).
pub const STATUS_KVMINI_ERROR: u8 = 125;
/// Exit status when the guest crashed or made an exit kvmini does not serve.
pub const STATUS_GUEST_FAULT: u8 = 126;
/// Exit status when the guest ran past its time limit.
pub const STATUS_TIMEOUT: u8 = 124;
/// Exit status when the reader of the guest's output went away: 128 +
/// SIGPIPE, what a Unix tool killed by a broken pipe reports.
pub const STATUS_OUTPUT_CLOSED: u8 = 141;

/// A crash reported by kvmini's exception handlers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Crash {
    /// Exception vector.
    pub vector: u8,
    /// Error code the CPU pushed (0 when it pushes none).
    pub error_code: u64,
    /// Faulting instruction.
    pub rip: u64,
    /// Stack pointer at the fault.
    pub rsp: u64,
    /// Ring the guest was in.
    pub ring: u8,
    /// Faulting address of a page fault.
    pub cr2: u64,
    /// The symbol of the ELF image that covers `rip`, if one does.
    pub location: Option<CodeLocation>,
    /// The faulting instruction and its callers by frame pointers (an ELF
    /// image's crash; `None` for a flat binary).
    pub backtrace: Option<Backtrace>,
    /// The guest is a Linux program: a fault ends it with 128 + the signal
    /// Linux sends for it (139 for a page fault or a general protection
    /// fault, as SIGSEGV; 132 for an invalid opcode, as SIGILL).
    pub linux_program: bool,
}

/// Exit status of a Linux program that a page fault or a general
/// protection fault ended: 128 + SIGSEGV.
pub const STATUS_SEGFAULT: u8 = 139;

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guest crashed: {}", cpu::exception_name(self.vector))?;
        if self.vector == 14 {
            let e = self.error_code;
            let what = if e & 0x10 != 0 {
                "executing"
            } else if e & 0x2 != 0 {
                "writing"
            } else {
                "reading"
            };
            let why = if e & 1 == 0 {
                "not mapped"
            } else {
                "not allowed"
            };
            write!(f, " {what} {:#x} ({why})", self.cr2)?;
        } else if self.error_code != 0 {
            write!(f, " (error code {:#x})", self.error_code)?;
        }
        write!(f, " at rip {:#x}", self.rip)?;
        if let Some(location) = &self.location {
            write!(f, " ({location})")?;
        }
        write!(f, " (ring {})", self.ring)
    }
}

/// An exit kvmini does not serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unserved {
    /// An I/O port no hypercall owns.
    UnknownPort {
        /// The port.
        port: u16,
        /// `in` or `out`.
        direction: Direction,
        /// Access size.
        size: u8,
    },
    /// A hypercall port used with the wrong direction or size, or with
    /// string I/O that KVM batched into one exit.
    BadAccess {
        /// The hypercall.
        port: Port,
        /// `in` or `out`.
        direction: Direction,
        /// Access size.
        size: u8,
        /// Repeat count.
        count: u32,
    },
    /// A write to the exception port that did not come from kvmini's handlers.
    ForgedException,
    /// A system call of a Linux program that cannot return: RCX (where the
    /// program resumes) is not canonical, or the port was used at ring 0
    /// from outside kvmini's stub (docs/linux.md).
    BadSyscallReturn {
        /// RCX at the exit.
        rcx: u64,
        /// RIP at the exit.
        rip: u64,
        /// The ring the exit came from.
        ring: u8,
    },
    /// Access to guest-physical memory that does not exist.
    Mmio {
        /// The address.
        addr: u64,
        /// Write or read.
        write: bool,
    },
    /// Triple fault.
    Shutdown,
    /// A shutdown as the very first exit of a mode this host's KVM may
    /// not run (32-bit paging on nested kvm-pvm): nothing ran.
    ModeRefused(CpuMode),
    /// VM entry failed.
    FailEntry(u64),
    /// KVM could not handle the exit.
    InternalError {
        /// KVM's sub-code.
        suberror: u32,
        /// The ring the guest was in.
        ring: u8,
    },
    /// Any other KVM exit.
    Other(u32),
}

impl fmt::Display for Unserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = |d: &Direction| match d {
            Direction::In => "in",
            Direction::Out => "out",
        };
        match self {
            Unserved::BadSyscallReturn { rcx, rip, ring } => write!(
                f,
                "system call from ring {ring} at {rip:#x} cannot return to RCX {rcx:#x} \
                 (a non-canonical address, or the port used outside kvmini's stub)"
            ),
            Unserved::UnknownPort {
                port,
                direction,
                size,
            } => write!(
                f,
                "KVM_EXIT_IO: {}-byte `{}` on port {port:#x}, which no hypercall owns",
                size,
                dir(direction)
            ),
            Unserved::BadAccess {
                port,
                direction,
                size,
                count,
            } => {
                let (want_dir, want_size) = port.access();
                write!(
                    f,
                    "KVM_EXIT_IO: {size}-byte `{}`{} on port {:#x} ({}), which takes only {want_size}-byte `{}`",
                    dir(direction),
                    if *count > 1 { " (string I/O)" } else { "" },
                    *port as u16,
                    port.name(),
                    dir(&want_dir)
                )
            }
            Unserved::ForgedException => write!(
                f,
                "KVM_EXIT_IO: guest code wrote to the exception port {:#x}, which only kvmini's handlers may use",
                Port::Exception as u16
            ),
            Unserved::Mmio { addr, write } => write!(
                f,
                "KVM_EXIT_MMIO: {} guest physical address {addr:#x}, where there is no memory",
                if *write { "write to" } else { "read from" }
            ),
            Unserved::ModeRefused(mode) => f.write_str(&modes::refusal_message(*mode)),
            Unserved::Shutdown => write!(
                f,
                "KVM_EXIT_SHUTDOWN: triple fault (an exception that could not be delivered)"
            ),
            Unserved::FailEntry(reason) => write!(
                f,
                "KVM_EXIT_FAIL_ENTRY: the CPU refused to enter the guest (reason {reason:#x})"
            ),
            Unserved::InternalError { suberror, ring } => {
                write!(f, "KVM_EXIT_INTERNAL_ERROR (suberror {suberror}): KVM could not handle an exit")?;
                if *ring == 0 {
                    write!(
                        f,
                        "; at ring 0 on nested KVM (kvm-pvm) guest code runs in KVM's instruction emulator, \
                         which has no SSE arithmetic: run the guest at ring 3"
                    )?;
                }
                Ok(())
            }
            Unserved::Other(reason) => write!(
                f,
                "{} (exit reason {reason})",
                vcpu::exit_reason_name(*reason)
            ),
        }
    }
}

/// How a guest run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The guest called `exit(code)`.
    Exited(u32),
    /// `hlt` at ring 0, or the `halt` hypercall.
    Halted,
    /// A CPU exception in the guest.
    Crashed(Crash),
    /// An exit kvmini does not serve.
    Unserved(Unserved),
    /// Stopped at its time limit.
    TimedOut(Duration),
    /// Stopped because kvmini received this signal.
    Stopped(i32),
    /// The reader of the guest's stdout went away (a closed pipe) while
    /// console, `printVal` or `display` output was written: the run ends
    /// quietly, as a Unix tool does on SIGPIPE.
    OutputClosed,
    /// A Linux program sent itself this signal (1..=64) with no handler
    /// to run and a default action that ends a program (`abort()`,
    /// `raise(SIGTERM)`): the status is 128 + the signal, as a shell
    /// reports such a program natively.
    Signaled(u8),
}

impl Ending {
    /// The process exit status kvmini reports for this ending.
    pub fn status(&self) -> u8 {
        match self {
            Ending::Exited(code) => code.to_le_bytes()[0],
            Ending::Halted => 0,
            Ending::Crashed(crash) if crash.linux_program => {
                let signal = crate::core_dump::signal_of_vector(crash.vector);
                u8::try_from(128 + signal).unwrap_or(STATUS_SEGFAULT)
            }
            Ending::Crashed(_) | Ending::Unserved(_) => STATUS_GUEST_FAULT,
            Ending::TimedOut(_) => STATUS_TIMEOUT,
            Ending::Stopped(sig) => u8::try_from(128 + sig).unwrap_or(STATUS_KVMINI_ERROR),
            Ending::OutputClosed => STATUS_OUTPUT_CLOSED,
            Ending::Signaled(signal) => 128u8.saturating_add(*signal),
        }
    }
}

/// Counters and timings of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Exits caused by the guest (what `getNumExits` reports).
    pub exits: u64,
    /// I/O exits.
    pub io_exits: u64,
    /// HLT exits.
    pub hlt_exits: u64,
    /// MMIO exits.
    pub mmio_exits: u64,
    /// Other exits (shutdown, errors).
    pub other_exits: u64,
    /// Returns from KVM_RUN caused by a signal, not by the guest.
    pub interruptions: u64,
    /// Exits by hypercall, indexed like [`Port::ALL`].
    pub by_hypercall: [u64; Port::ALL.len()],
    /// Time inside KVM_RUN (only with `Config::timing`).
    pub guest_time: Duration,
    /// Time in kvmini between exits (only with `Config::timing`).
    pub vmm_time: Duration,
    /// A Linux program's system calls by number, with their errors.
    pub syscalls: crate::trace::SyscallCounts,
}

/// The result of [`Sandbox::run`](crate::sandbox::Sandbox::run).
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How the guest ended.
    pub ending: Ending,
    /// Counters and timings.
    pub stats: Stats,
    /// General registers at the end. After a crash
    /// ([`Ending::Crashed`]): every general register as the guest had it at
    /// the faulting instruction, with RIP, RSP and RFLAGS from the CPU's
    /// exception frame.
    pub regs: kvm_regs,
    /// The memory permission a crash broke (a write to read-only memory,
    /// an execution of data, a stack overflow), for a guest whose memory
    /// kvmini gave permissions (docs/security.md, "Memory inside the
    /// guest"); [`Outcome::crash_report`] names it.
    pub violation: Option<Violation>,
}

impl Outcome {
    /// The crash report of a crashed run: what [`Crash`] displays, or,
    /// where the crash broke a memory permission, that permission.
    pub fn crash_report(&self) -> Option<String> {
        let Ending::Crashed(crash) = &self.ending else {
            return None;
        };
        let Some(violation) = &self.violation else {
            return Some(crash.to_string());
        };
        let location = crash
            .location
            .as_ref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        Some(format!(
            "guest crashed: {violation}, at rip {:#x}{location} (ring {})",
            crash.rip, crash.ring
        ))
    }
}

/// Formats the general registers as the error paragraph prints them.
pub fn format_regs(regs: &kvm_regs) -> String {
    format!(
        "rip={:#x} rsp={:#x} rflags={:#x}\n  rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x}\n  rsi={:#x} rdi={:#x} rbp={:#x}\n  r8={:#x} r9={:#x} r10={:#x} r11={:#x} r12={:#x} r13={:#x} r14={:#x} r15={:#x}",
        regs.rip, regs.rsp, regs.rflags, regs.rax, regs.rbx, regs.rcx, regs.rdx, regs.rsi,
        regs.rdi, regs.rbp, regs.r8, regs.r9, regs.r10, regs.r11, regs.r12, regs.r13, regs.r14,
        regs.r15
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crash(vector: u8, error_code: u64, cr2: u64) -> String {
        Crash {
            vector,
            error_code,
            rip: 0x10_2000,
            rsp: 0x1F_0000,
            ring: 3,
            cr2,
            ..Default::default()
        }
        .to_string()
    }

    /// What a ring-3 `int3`, `int 0x80`, `syscall`, and a ring-0 `int3`
    /// without an IDT end as under hardware virtualization: the hostile
    /// tests see other endings on kvm-pvm, so the reports of these are
    /// checked here.
    #[test]
    fn architectural_endings_are_reported_by_name() {
        let at = "at rip 0x102000 (ring 3)";
        for ((vector, error_code, cr2), report) in [
            // int3 through a DPL-0 gate: #GP, error code = IDT entry 3 (IDT bit).
            ((13, 0x1A, 0), "general protection fault (error code 0x1a)"),
            // int 0x80 past a 32-entry IDT: #GP, error code = entry 0x80.
            (
                (13, 0x402, 0),
                "general protection fault (error code 0x402)",
            ),
            // syscall with EFER.SCE clear: #UD.
            ((6, 0, 0), "invalid opcode"),
            (
                (14, 0x6, 0x3F_0000),
                "page fault writing 0x3f0000 (not mapped)",
            ),
            (
                (14, 0x15, 0x1000),
                "page fault executing 0x1000 (not allowed)",
            ),
        ] {
            assert_eq!(
                crash(vector, error_code, cr2),
                format!("guest crashed: {report} {at}")
            );
        }
        let shutdown = Ending::Unserved(Unserved::Shutdown);
        assert_eq!(shutdown.status(), 126);
        assert_eq!(
            Unserved::Shutdown.to_string(),
            "KVM_EXIT_SHUTDOWN: triple fault (an exception that could not be delivered)"
        );
    }

    #[test]
    fn statuses_are_the_documented_numbers() {
        assert_eq!(Ending::Exited(300).status(), 44);
        assert_eq!(Ending::Exited(u32::MAX).status(), 255);
        assert_eq!(Ending::Exited(0).status(), 0);
        assert_eq!(Ending::Halted.status(), 0);
        assert_eq!(Ending::TimedOut(Duration::from_secs(1)).status(), 124);
        assert_eq!(Ending::Stopped(libc::SIGINT).status(), 130);
        assert_eq!(Ending::Stopped(libc::SIGTERM).status(), 143);
        assert_eq!(Ending::Signaled(6).status(), 134);
        assert_eq!(Ending::Signaled(15).status(), 143);
        assert_eq!(Ending::Signaled(64).status(), 192);
        assert_eq!(
            Ending::Crashed(Crash {
                vector: 6,
                error_code: 0,
                rip: 0,
                rsp: 0,
                ring: 3,
                cr2: 0,
                ..Default::default()
            })
            .status(),
            126
        );
        // A Linux program's crash is the signal Linux sends for it.
        for (vector, status) in [
            (14, 139),
            (13, 139),
            (6, 132),
            (0, 136),
            (17, 135),
            (3, 133),
        ] {
            let crash = Crash {
                vector,
                ring: 3,
                linux_program: true,
                ..Default::default()
            };
            assert_eq!(Ending::Crashed(crash).status(), status, "vector {vector}");
        }
    }
}
