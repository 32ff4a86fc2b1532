//! Turns a served call into a [`Call`]: each argument read by its kind
//! ([`super::table`]), guest memory through the checked [`GuestView`]
//! only. A string or buffer that cannot be read is shown as its address;
//! decoding never changes guest memory or what the call returned.

use kvmini_abi::fs::TruncateArgs;
use kvmini_abi::fs::{FdArgs, IoArgs, OpenArgs, PathArgs, RenameArgs, SeekArgs, StatArgs};
use kvmini_abi::host::{ArgvArgs, HostCallArgs};
use kvmini_abi::Port;
use zerocopy::{FromBytes, IntoBytes};

use super::names::{self, FlagTable, ValueTable};
use super::table::{self, Kind, Ret, Waits};
use super::{Arg, Call, CallName, Returned, SHOWN_BYTES, SHOWN_ENTRIES};
use crate::addr::Gva;
use crate::hypercall::Hypercall;
use crate::linux::Syscall;
use crate::view::GuestView;

/// The longest path a trace shows (Linux's `PATH_MAX`).
const PATH_MAX: u64 = 4096;

/// `AT_FDCWD` as a descriptor argument holds it.
const AT_FDCWD: i32 = -100;

/// Whether `call` may wait before it returns, so that its trace comes in
/// two parts ([`super::TraceEvent::Entered`], then
/// [`super::TraceEvent::Resumed`]).
pub fn syscall_waits(call: &Syscall) -> bool {
    match table::signature(call.nr).map(|s| s.waits) {
        Some(Waits::Always) => true,
        Some(Waits::OnStdin) => call.args[0] == 0,
        Some(Waits::Never) | None => false,
    }
}

/// System call `call` as served: `returned` is its result (`None` when it
/// does not return), and buffers it filled are read from `view` now.
pub fn syscall(call: &Syscall, returned: Option<i64>, view: &GuestView<'_>) -> Call {
    let signature = table::signature(call.nr);
    let args = match signature {
        Some(signature) => signature
            .args
            .iter()
            .zip(call.args)
            .filter(|(&kind, _)| match kind {
                Kind::CreateMode(flags_at) => creates(call.args.get(flags_at).copied()),
                _ => true,
            })
            .map(|(&kind, value)| arg(kind, value, call, returned, view))
            .collect(),
        None => call.args.iter().map(|&a| Arg::Hex(a)).collect(),
    };
    let ret = signature.map_or(Ret::Int, |s| s.ret);
    Call {
        name: CallName::Syscall(call.nr),
        args,
        result: match returned {
            Some(value) => result(value, ret),
            None => Returned::NoReturn,
        },
    }
}

/// Whether `open` flags may create a file (`O_CREAT`, `O_TMPFILE`).
fn creates(flags: Option<u64>) -> bool {
    flags.is_some_and(|f| f & (O_CREAT | O_TMPFILE) != 0)
}

const O_CREAT: u64 = 0o100;
const O_TMPFILE: u64 = 0o20000000;

/// The result `value` as a trace shows it: -4095..-1 is an errno.
pub fn result(value: i64, ret: Ret) -> Returned {
    if (-4095..0).contains(&value) {
        let code = i32::try_from(-value).unwrap_or(0);
        return Returned::Error(code);
    }
    let raw = u64::from_ne_bytes(value.to_ne_bytes());
    match ret {
        Ret::Int => Returned::Int(value),
        Ret::Hex => Returned::Hex(raw),
        Ret::Octal => Returned::Octal(raw),
    }
}

/// The argument `value` of kind `kind` of `call`.
pub(super) fn arg(
    kind: Kind,
    value: u64,
    call: &Syscall,
    returned: Option<i64>,
    view: &GuestView<'_>,
) -> Arg {
    let int = i64::from_ne_bytes(value.to_ne_bytes());
    // Descriptors and signal numbers are C ints: the low 32 bits.
    let c_int = i64::from(i32::from_ne_bytes(
        value.to_le_bytes()[..4].try_into().unwrap_or([0; 4]),
    ));
    match kind {
        Kind::Fd => Arg::Int(c_int),
        Kind::DirFd if c_int == i64::from(AT_FDCWD) => Arg::Named("AT_FDCWD"),
        Kind::DirFd => Arg::Int(c_int),
        Kind::Path => string(view, value, PATH_MAX),
        Kind::Str => string(view, value, SHOWN_BYTES as u64),
        Kind::InBuf(len_at) => buffer(view, value, call.args.get(len_at).copied().unwrap_or(0)),
        Kind::OutBuf => match returned {
            Some(n) if n >= 0 => buffer(view, value, n.unsigned_abs()),
            _ => Arg::Address(value),
        },
        Kind::Size => Arg::Unsigned(value),
        Kind::Int => Arg::Int(int),
        Kind::Hex => Arg::Hex(value),
        Kind::Ptr => Arg::Address(value),
        Kind::Mode | Kind::CreateMode(_) => Arg::Octal(value),
        Kind::OpenFlags => open_flags(value),
        Kind::AtFlags => flags(names::AT_FLAGS, value),
        Kind::Prot if value == 0 => Arg::Named("PROT_NONE"),
        Kind::Prot => flags(names::PROT, value),
        Kind::MapFlags => map_flags(value),
        Kind::MremapFlags => flags(names::MREMAP_FLAGS, value),
        Kind::Clock => named(names::CLOCKS, value, Arg::Int(c_int)),
        Kind::TimerFlags => flags(names::TIMER_FLAGS, value),
        Kind::Fcntl => named(names::FCNTL_COMMANDS, value, Arg::Int(c_int)),
        Kind::Ioctl => named(names::IOCTL_REQUESTS, value, Arg::Hex(value)),
        Kind::Signal => signal(c_int),
        Kind::Timespec => timespec(view, value),
        Kind::InIovec(count_at) => iovecs(view, value, call.args.get(count_at), None),
        Kind::OutIovec(count_at) => match returned {
            Some(n) if n >= 0 => {
                iovecs(view, value, call.args.get(count_at), Some(n.unsigned_abs()))
            }
            _ => Arg::Address(value),
        },
        Kind::Whence => named(names::WHENCE, value, Arg::Int(c_int)),
        Kind::SigHow => named(names::SIGMASK_HOW, value, Arg::Int(c_int)),
        Kind::ArchPrctl => named(names::ARCH_PRCTL_CODES, value, Arg::Hex(value)),
        Kind::Prctl => named(names::PRCTL_OPTIONS, value, Arg::Int(c_int)),
        Kind::Futex => futex_op(value),
        Kind::Resource => named(names::RESOURCES, value, Arg::Int(c_int)),
        Kind::Madvise => named(names::MADVISE, value, Arg::Int(c_int)),
        Kind::AccessMode if value == 0 => Arg::Named("F_OK"),
        Kind::AccessMode => flags(names::ACCESS_BITS, value),
        Kind::RenameFlags => flags(names::RENAME_FLAGS, value),
        Kind::RandomFlags => flags(names::GETRANDOM_FLAGS, value),
    }
}

fn named(table: ValueTable, value: u64, otherwise: Arg) -> Arg {
    names::value_name(table, value).map_or(otherwise, Arg::Named)
}

fn flags(table: FlagTable, value: u64) -> Arg {
    let (names, rest) = names::flag_names(table, value);
    Arg::Flags { names, rest }
}

fn open_flags(value: u64) -> Arg {
    let mode = names::ACCESS_MODES[usize::try_from(value & 3).unwrap_or(0)];
    let (mut names, rest) = names::flag_names(names::OPEN_FLAGS, value & !3);
    names.insert(0, mode);
    Arg::Flags { names, rest }
}

fn map_flags(value: u64) -> Arg {
    let (mut names, rest) = names::flag_names(names::MAP_FLAGS, value & !0xF);
    let kind = value & 0xF;
    match names::value_name(names::MAP_TYPES, kind) {
        Some(name) => {
            names.insert(0, name);
            Arg::Flags { names, rest }
        }
        None => Arg::Flags {
            names,
            rest: rest | kind,
        },
    }
}

fn futex_op(value: u64) -> Arg {
    let mut names = Vec::new();
    let mut rest = value & !(0x7F | 128 | 256);
    match names::value_name(names::FUTEX_OPS, value & 0x7F) {
        Some(name) => names.push(name),
        None => rest |= value & 0x7F,
    }
    if value & 128 != 0 {
        names.push("FUTEX_PRIVATE_FLAG");
    }
    if value & 256 != 0 {
        names.push("FUTEX_CLOCK_REALTIME");
    }
    Arg::Flags { names, rest }
}

fn signal(number: i64) -> Arg {
    u8::try_from(number)
        .ok()
        .and_then(crate::linux::signal_name)
        .map_or(Arg::Int(number), Arg::Named)
}

/// The NUL-terminated string at `gva`, at most `limit` bytes of it shown
/// (cut when longer); its address when it cannot be read.
fn string(view: &GuestView<'_>, gva: u64, limit: u64) -> Arg {
    if gva == 0 {
        return Arg::Address(0);
    }
    let mut bytes = Vec::new();
    match view.read_c_string(Gva::new(gva), limit + 1, &mut bytes) {
        Ok(()) => Arg::Bytes { bytes, cut: false },
        Err(crate::view::ViewError::Unterminated { .. }) if bytes.len() as u64 > limit => {
            bytes.truncate(usize::try_from(limit).unwrap_or(0));
            Arg::Bytes { bytes, cut: true }
        }
        Err(_) => Arg::Address(gva),
    }
}

/// The first bytes of the `len`-byte buffer at `gva` (cut after
/// [`SHOWN_BYTES`]); its address when they cannot be read.
fn buffer(view: &GuestView<'_>, gva: u64, len: u64) -> Arg {
    if gva == 0 {
        return Arg::Address(0);
    }
    let shown = len.min(SHOWN_BYTES as u64);
    let mut bytes = Vec::with_capacity(SHOWN_BYTES);
    for i in 0..shown {
        let Some(at) = Gva::new(gva).checked_add(i) else {
            return Arg::Address(gva);
        };
        match view.read_obj::<u8>(at) {
            Ok(byte) => bytes.push(byte),
            Err(_) => return Arg::Address(gva),
        }
    }
    Arg::Bytes {
        bytes,
        cut: len > shown,
    }
}

/// The `struct iovec` array at `gva` of `count` entries, at most
/// [`SHOWN_ENTRIES`] of them, each with its buffer: whole for a call that
/// reads them (`filled` is `None`), or as far as the `filled` bytes the
/// call returned reach. Its address when the array cannot be read.
fn iovecs(view: &GuestView<'_>, gva: u64, count: Option<&u64>, filled: Option<u64>) -> Arg {
    let count = count.copied().unwrap_or(0);
    let shown = count.min(SHOWN_ENTRIES as u64);
    let mut left = filled;
    let mut entries = Vec::new();
    for i in 0..shown {
        let entry = i
            .checked_mul(16)
            .and_then(|offset| Gva::new(gva).checked_add(offset));
        let Some(Ok([base, len])) = entry.map(|at| view.read_obj::<[u64; 2]>(at)) else {
            return Arg::Address(gva);
        };
        let bytes = match left {
            None => len,
            Some(rest) => {
                let taken = rest.min(len);
                left = Some(rest - taken);
                taken
            }
        };
        entries.push((buffer(view, base, bytes), len));
    }
    Arg::Iovecs {
        entries,
        more: count > shown,
    }
}

fn timespec(view: &GuestView<'_>, gva: u64) -> Arg {
    if gva == 0 {
        return Arg::Address(0);
    }
    match view.read_obj::<[i64; 2]>(Gva::new(gva)) {
        Ok([sec, nsec]) => Arg::Timespec { sec, nsec },
        Err(_) => Arg::Address(gva),
    }
}

/// The block of type `T` at `gva`, when it can be read.
fn block<T: FromBytes + IntoBytes>(view: &GuestView<'_>, gva: u64) -> Option<T> {
    view.read_obj::<T>(Gva::new(gva)).ok()
}

/// Hypercall `call` as served; `exits` is what `getNumExits` answered.
/// A block call's arguments and result are read from its block.
pub fn hypercall(call: Hypercall, view: &GuestView<'_>, exits: u64) -> Call {
    let port = call.port();
    let done = |args: Vec<Arg>, result: Returned| Call {
        name: CallName::Hypercall(port),
        args,
        result,
    };
    match call {
        Hypercall::Console(byte) => done(vec![Arg::Char(byte)], Returned::Nothing),
        Hypercall::PrintVal(value) => done(vec![Arg::Unsigned(value.into())], Returned::Nothing),
        Hypercall::Display(gva) => done(
            vec![string(view, gva, SHOWN_BYTES as u64)],
            Returned::Nothing,
        ),
        Hypercall::Exit(code) => done(vec![Arg::Unsigned(code.into())], Returned::NoReturn),
        Hypercall::Halt | Hypercall::Exception | Hypercall::Syscall => {
            done(Vec::new(), Returned::NoReturn)
        }
        Hypercall::GetNumExits => done(
            Vec::new(),
            Returned::Int(i64::try_from(exits).unwrap_or(i64::MAX)),
        ),
        Hypercall::Batch(gva) => done(vec![Arg::Address(gva)], Returned::Nothing),
        Hypercall::Block { port, address } => match block_call(port, address, view) {
            Some((args, value)) => done(args, result(value, Ret::Int)),
            None => done(vec![Arg::Address(address)], Returned::NoReturn),
        },
    }
}

/// A block call's arguments and result, from its block at `gva`.
fn block_call(port: Port, gva: u64, view: &GuestView<'_>) -> Option<(Vec<Arg>, i64)> {
    let path = |at| string(view, at, PATH_MAX);
    let served = |n: i64| (n >= 0).then_some(n.unsigned_abs());
    Some(match port {
        Port::Open => {
            let b: OpenArgs = block(view, gva)?;
            let mut args = vec![path(b.path), open_flags(b.flags.into())];
            if creates(Some(b.flags.into())) {
                args.push(Arg::Octal(b.mode.into()));
            }
            (args, b.result)
        }
        Port::Close | Port::Fsync => {
            let b: FdArgs = block(view, gva)?;
            (vec![Arg::Int(b.fd.into())], b.result)
        }
        Port::Read | Port::Pread | Port::Write | Port::Pwrite | Port::Getdents => {
            let b: IoArgs = block(view, gva)?;
            let buf = match port {
                Port::Write | Port::Pwrite => buffer(view, b.buf, b.len),
                Port::Getdents => Arg::Address(b.buf),
                _ => served(b.result).map_or(Arg::Address(b.buf), |n| buffer(view, b.buf, n)),
            };
            let mut args = vec![Arg::Int(b.fd.into()), buf, Arg::Unsigned(b.len)];
            if matches!(port, Port::Pread | Port::Pwrite) {
                args.push(Arg::Int(b.offset));
            }
            (args, b.result)
        }
        Port::Lseek => {
            let b: SeekArgs = block(view, gva)?;
            let whence = named(
                names::WHENCE,
                b.whence.into(),
                Arg::Unsigned(b.whence.into()),
            );
            (
                vec![Arg::Int(b.fd.into()), Arg::Int(b.offset), whence],
                b.result,
            )
        }
        Port::Fstat => {
            let b: StatArgs = block(view, gva)?;
            (vec![Arg::Int(b.fd.into()), Arg::Address(b.stat)], b.result)
        }
        Port::Stat => {
            let b: StatArgs = block(view, gva)?;
            (vec![path(b.path), Arg::Address(b.stat)], b.result)
        }
        Port::Ftruncate => {
            let b: TruncateArgs = block(view, gva)?;
            (vec![Arg::Int(b.fd.into()), Arg::Int(b.length)], b.result)
        }
        Port::Unlink | Port::Rmdir => {
            let b: PathArgs = block(view, gva)?;
            (vec![path(b.path)], b.result)
        }
        Port::Mkdir => {
            let b: PathArgs = block(view, gva)?;
            (vec![path(b.path), Arg::Octal(b.mode.into())], b.result)
        }
        Port::Rename => {
            let b: RenameArgs = block(view, gva)?;
            (vec![path(b.old), path(b.new)], b.result)
        }
        Port::HostCall => {
            let b: HostCallArgs = block(view, gva)?;
            let mut args = vec![Arg::Unsigned(b.id.into())];
            args.extend(b.args.iter().map(|&a| Arg::Hex(a)));
            (args, b.result)
        }
        Port::Argv => {
            let b: ArgvArgs = block(view, gva)?;
            (vec![Arg::Address(b.buf), Arg::Unsigned(b.len)], b.result)
        }
        _ => return None,
    })
}
