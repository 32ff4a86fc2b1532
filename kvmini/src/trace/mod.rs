//! The trace of a run: each system call of a Linux program and each
//! hypercall of an SDK guest as a typed [`TraceEvent`] (its name, its
//! arguments decoded by kind, its result), and the run's end. The
//! embedding program receives the events
//! ([`SandboxBuilder::trace_events`](crate::sandbox::SandboxBuilder::trace_events))
//! or their lines ([`SandboxBuilder::trace`](crate::sandbox::SandboxBuilder::trace)),
//! which read as strace's: `openat(AT_FDCWD, "/data/in.txt", O_RDONLY) = 3`.
//!
//! [`table`] says what each system call's arguments are, by the numbers
//! in [`crate::linux::numbers`]; [`decode`] reads them, guest memory
//! through the checked guest view only, after the call was served (a bad
//! pointer is shown as its address); [`names`] names flags, constants and
//! errno values; [`counts`] counts calls by number for the run's
//! statistics.

pub mod counts;
pub mod decode;
pub mod names;
pub mod table;

use std::fmt;

use kvmini_abi::Port;

pub use counts::{CallCount, SyscallCounts};

/// How many bytes of a buffer or string a trace shows (strace's default).
pub const SHOWN_BYTES: usize = 32;

/// How many entries of an array a trace shows.
pub const SHOWN_ENTRIES: usize = 8;

/// One thing the trace reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// A call, served: its arguments as they were after it, and its result.
    Call(Call),
    /// A call that may wait (a sleep, a poll, a read of stdin), before it
    /// is served, so that the wait shows; its [`Call::result`] is
    /// [`Returned::Pending`]. Its end is a [`TraceEvent::Resumed`].
    Entered(Call),
    /// The end of the call last [`TraceEvent::Entered`].
    Resumed {
        /// The call.
        name: CallName,
        /// What it returned.
        result: Returned,
    },
    /// A signal delivered to the program's handler, with the `siginfo`
    /// the handler was given, shown as strace shows it:
    /// `--- SIGUSR1 {si_signo=SIGUSR1, si_code=SI_TKILL, si_pid=1, si_uid=1000} ---`.
    Signal(crate::linux::Delivered),
    /// How the run ended.
    Ended(TraceEnd),
}

/// A call: which one, its arguments and what it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Which call.
    pub name: CallName,
    /// Its arguments, decoded.
    pub args: Vec<Arg>,
    /// What it returned.
    pub result: Returned,
}

/// Which call a trace line is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallName {
    /// A Linux system call by number (named when kvmini knows it).
    Syscall(u64),
    /// One of kvmini's hypercalls.
    Hypercall(Port),
}

impl fmt::Display for CallName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallName::Syscall(nr) => match crate::linux::name(*nr) {
                Some(name) => f.write_str(name),
                None => write!(f, "syscall_{nr:#x}"),
            },
            CallName::Hypercall(port) => f.write_str(port.name()),
        }
    }
}

/// An argument, decoded by its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A signed number, in decimal (descriptors, counts that may be -1).
    Int(i64),
    /// An unsigned number, in decimal (sizes).
    Unsigned(u64),
    /// A number in hexadecimal (masks, values of no known kind).
    Hex(u64),
    /// Permission bits, in octal.
    Octal(u64),
    /// A guest address: `NULL` for 0.
    Address(u64),
    /// A byte, as a character.
    Char(u8),
    /// Guest memory shown as a string; `cut` when more bytes followed
    /// those shown.
    Bytes {
        /// The bytes shown.
        bytes: Vec<u8>,
        /// More followed.
        cut: bool,
    },
    /// A named constant (`AT_FDCWD`, `CLOCK_MONOTONIC`, `SIGABRT`).
    Named(&'static str),
    /// Flags by name, joined with `|`, and the bits no name covers.
    Flags {
        /// The names of the bits set.
        names: Vec<&'static str>,
        /// Bits without a name.
        rest: u64,
    },
    /// An array of `struct iovec`: each buffer (or its address) and its
    /// length; `more` when entries were left out.
    Iovecs {
        /// The entries shown.
        entries: Vec<(Arg, u64)>,
        /// More entries followed.
        more: bool,
    },
    /// A `struct timespec` read from guest memory.
    Timespec {
        /// Seconds.
        sec: i64,
        /// Nanoseconds.
        nsec: i64,
    },
}

/// What a call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returned {
    /// A number, in decimal.
    Int(i64),
    /// An address or mask, in hexadecimal.
    Hex(u64),
    /// Permission bits, in octal (`umask`).
    Octal(u64),
    /// An error: the errno value.
    Error(i32),
    /// The call does not return (`exit_group`, a fatal signal).
    NoReturn,
    /// A hypercall that returns nothing to the guest (`console`).
    Nothing,
    /// Not yet known: the call is being served.
    Pending,
}

/// How a traced run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEnd {
    /// The program exited with this status.
    Exited(u32),
    /// A signal ended the program (one it sent itself, SIGSEGV for a
    /// fault, SIGPIPE for a closed output).
    Killed(u8),
    /// The guest halted.
    Halted,
    /// An SDK guest crashed.
    Crashed,
    /// The guest made an exit kvmini does not serve.
    Unserved,
    /// kvmini stopped it at its time limit.
    TimedOut,
    /// kvmini stopped it for this host signal.
    Stopped(i32),
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEvent::Call(call) => {
                write_call(f, call)?;
                match call.result {
                    Returned::Nothing => Ok(()),
                    result => write!(f, " = {result}"),
                }
            }
            TraceEvent::Entered(call) => {
                write_call(f, call)?;
                f.write_str(" <unfinished ...>")
            }
            TraceEvent::Resumed { name, result } => {
                write!(f, "<... {name} resumed> = {result}")
            }
            TraceEvent::Signal(delivered) => write_signal(f, delivered),
            TraceEvent::Ended(end) => write!(f, "+++ {end} +++"),
        }
    }
}

/// A delivered signal's line, its `si_code` by name as strace names it.
fn write_signal(f: &mut fmt::Formatter<'_>, d: &crate::linux::Delivered) -> fmt::Result {
    let name = crate::linux::signal_name(d.signal).unwrap_or("SIG?");
    let code = match (d.signal, d.code) {
        (_, 0) if d.addr.is_none() => "SI_USER",
        (_, -6) => "SI_TKILL",
        (_, 0x80) => "SI_KERNEL",
        (11, 1) => "SEGV_MAPERR",
        (11, 2) => "SEGV_ACCERR",
        (4, 2) => "ILL_ILLOPN",
        (8, 1) => "FPE_INTDIV",
        _ => "",
    };
    write!(f, "--- {name} {{si_signo={name}, si_code=")?;
    if code.is_empty() {
        write!(f, "{}", d.code)?;
    } else {
        f.write_str(code)?;
    }
    match (d.addr, d.uid) {
        (Some(0), _) => f.write_str(", si_addr=NULL")?,
        (Some(addr), _) => write!(f, ", si_addr={addr:#x}")?,
        (None, Some(uid)) => write!(f, ", si_pid=1, si_uid={uid}")?,
        (None, None) => {}
    }
    f.write_str("} ---")
}

fn write_call(f: &mut fmt::Formatter<'_>, call: &Call) -> fmt::Result {
    write!(f, "{}(", call.name)?;
    for (i, arg) in call.args.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{arg}")?;
    }
    f.write_str(")")
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Int(n) => write!(f, "{n}"),
            Arg::Unsigned(n) => write!(f, "{n}"),
            Arg::Hex(n) => write!(f, "{n:#x}"),
            Arg::Octal(0) => f.write_str("0"),
            Arg::Octal(n) => write!(f, "0{n:o}"),
            Arg::Address(0) => f.write_str("NULL"),
            Arg::Address(a) => write!(f, "{a:#x}"),
            Arg::Char(c) => {
                f.write_str("'")?;
                match c {
                    b'\'' => f.write_str("\\'")?,
                    b'"' => f.write_str("\"")?,
                    c => write_escaped(f, &[*c])?,
                }
                f.write_str("'")
            }
            Arg::Bytes { bytes, cut } => {
                f.write_str("\"")?;
                write_escaped(f, bytes)?;
                f.write_str("\"")?;
                if *cut {
                    f.write_str("...")?;
                }
                Ok(())
            }
            Arg::Named(name) => f.write_str(name),
            Arg::Flags { names, rest } => {
                let mut first = true;
                for name in names {
                    if !first {
                        f.write_str("|")?;
                    }
                    f.write_str(name)?;
                    first = false;
                }
                match (first, *rest) {
                    (true, 0) => f.write_str("0"),
                    (true, rest) => write!(f, "{rest:#x}"),
                    (false, 0) => Ok(()),
                    (false, rest) => write!(f, "|{rest:#x}"),
                }
            }
            Arg::Timespec { sec, nsec } => write!(f, "{{tv_sec={sec}, tv_nsec={nsec}}}"),
            Arg::Iovecs { entries, more } => {
                f.write_str("[")?;
                for (i, (base, len)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{{iov_base={base}, iov_len={len}}}")?;
                }
                if *more {
                    f.write_str(", ...")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Writes `bytes` as strace shows a string's inside: printable ASCII as
/// is, `"` and `\` escaped, the usual control characters by letter, and
/// any other byte in octal (three digits when a digit follows, so the
/// escape cannot run on).
fn write_escaped(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => f.write_str("\\\"")?,
            b'\\' => f.write_str("\\\\")?,
            b'\t' => f.write_str("\\t")?,
            b'\n' => f.write_str("\\n")?,
            0x0B => f.write_str("\\v")?,
            0x0C => f.write_str("\\f")?,
            b'\r' => f.write_str("\\r")?,
            0x20..=0x7E => write!(f, "{}", char::from(b))?,
            _ => {
                let digit_follows = bytes.get(i + 1).is_some_and(|n| (b'0'..=b'7').contains(n));
                if digit_follows {
                    write!(f, "\\{b:03o}")?;
                } else {
                    write!(f, "\\{b:o}")?;
                }
            }
        }
    }
    Ok(())
}

impl fmt::Display for Returned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Returned::Int(n) => write!(f, "{n}"),
            Returned::Hex(n) => write!(f, "{n:#x}"),
            Returned::Octal(n) => write!(f, "0{n:o}"),
            Returned::Error(code) => match names::errno(*code) {
                Some((name, message)) => write!(f, "-1 {name} ({message})"),
                None => write!(f, "-1 errno {code}"),
            },
            Returned::NoReturn | Returned::Nothing | Returned::Pending => f.write_str("?"),
        }
    }
}

impl fmt::Display for TraceEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEnd::Exited(code) => write!(f, "exited with {}", code & 0xFF),
            TraceEnd::Killed(sig) => match crate::linux::signal_name(*sig) {
                Some(name) => write!(f, "killed by {name}"),
                None => write!(f, "killed by signal {sig}"),
            },
            TraceEnd::Halted => f.write_str("halted"),
            TraceEnd::Crashed => f.write_str("crashed"),
            TraceEnd::Unserved => f.write_str("stopped at an exit kvmini does not serve"),
            TraceEnd::TimedOut => f.write_str("stopped at its time limit"),
            TraceEnd::Stopped(sig) => write!(f, "stopped by host signal {sig}"),
        }
    }
}

#[cfg(test)]
mod tests;
