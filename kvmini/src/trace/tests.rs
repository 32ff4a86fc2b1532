//! The decoder from synthetic calls: guest memory with kvmini's identity
//! map, no KVM.

use kvmini_abi::fs::OpenArgs;
use vm_memory::{Bytes, GuestAddress};
use zerocopy::IntoBytes;

use super::decode;
use super::*;
use crate::arch::x86_64::page_tables;
use crate::hypercall::Hypercall;
use crate::layout::Layout;
use crate::linux::numbers::*;
use crate::linux::Syscall;
use crate::memory::GuestMemory;
use crate::paging::{CpuPaging, Paging, PagingMode};
use crate::view::GuestView;

const MEM: u64 = 4 << 20;

/// Where the tests put strings and buffers.
const DATA: u64 = 0x10_0000;

/// An address no guest memory backs.
const BAD: u64 = 0x7FFF_F000_0000;

fn memory() -> (GuestMemory, Layout) {
    let mem = crate::memory::allocate(MEM).unwrap();
    let layout = Layout::new(MEM);
    page_tables::build_identity_map(&mem, &layout, false).unwrap();
    (mem, layout)
}

fn view<'a>(mem: &'a GuestMemory, layout: &Layout) -> GuestView<'a> {
    let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
    GuestView::new(mem, long, layout.pml4(), true)
        .with_identity(page_tables::user_identity_range(layout, false))
}

/// The trace line of system call `nr` with `args`, returning `returned`,
/// with `data` at [`DATA`].
fn line(nr: u64, args: &[u64], returned: Option<i64>, data: &[u8]) -> String {
    let (mem, layout) = memory();
    mem.write_slice(data, GuestAddress(DATA)).unwrap();
    let mut all = [0u64; 6];
    all[..args.len()].copy_from_slice(args);
    let call = Syscall { nr, args: all };
    TraceEvent::Call(decode::syscall(&call, returned, &view(&mem, &layout))).to_string()
}

const AT_FDCWD: u64 = u64::from_ne_bytes((-100i64).to_ne_bytes());

#[test]
fn files_read_and_written_show_paths_buffers_and_results() {
    assert_eq!(
        line(OPENAT, &[AT_FDCWD, DATA, 0], Some(3), b"/data/in.txt\0"),
        r#"openat(AT_FDCWD, "/data/in.txt", O_RDONLY) = 3"#
    );
    assert_eq!(
        line(OPENAT, &[5, DATA, 0o2101101, 0o644], Some(4), b"out\0"),
        r#"openat(5, "out", O_WRONLY|O_CREAT|O_TRUNC|O_LARGEFILE|O_CLOEXEC, 0644) = 4"#
    );
    assert_eq!(
        line(READ, &[3, DATA, 4096], Some(4), b"abcdefgh"),
        r#"read(3, "abcd", 4096) = 4"#
    );
    assert_eq!(
        line(WRITE, &[1, DATA, 6], Some(6), b"hello\n"),
        r#"write(1, "hello\n", 6) = 6"#
    );
    assert_eq!(line(CLOSE, &[3], Some(0), b""), "close(3) = 0");
    assert_eq!(line(EXIT_GROUP, &[0], None, b""), "exit_group(0) = ?");
    assert_eq!(
        line(OPEN, &[DATA, 0], Some(-2), b"/missing\0"),
        r#"open("/missing", O_RDONLY) = -1 ENOENT (No such file or directory)"#
    );
}

#[test]
fn strings_are_escaped_as_strace_escapes_them_and_cut_at_32_bytes() {
    let data = b"a\"b\\c\td\re\x0b\x0c\x01\x002\x1b7\xff";
    let n = data.len() as u64;
    assert_eq!(
        line(WRITE, &[2, DATA, n], Some(i64::try_from(n).unwrap()), data),
        r#"write(2, "a\"b\\c\td\re\v\f\1\0002\0337\377", 17) = 17"#
    );
    let long = [b'x'; 40];
    assert_eq!(
        line(WRITE, &[1, DATA, 40], Some(40), &long),
        format!(r#"write(1, "{}"..., 40) = 40"#, "x".repeat(32))
    );
    // Exactly 32 bytes: whole, not cut.
    assert_eq!(
        line(WRITE, &[1, DATA, 32], Some(32), &long),
        format!(r#"write(1, "{}", 32) = 32"#, "x".repeat(32))
    );
    // A read shows what it read, cut the same way.
    assert_eq!(
        line(READ, &[0, DATA, 100], Some(33), &long),
        format!(r#"read(0, "{}"..., 100) = 33"#, "x".repeat(32))
    );
    // A path is shown whole; a string argument cut.
    let path = [b'p'; 100];
    let mut nul = path.to_vec();
    nul.push(0);
    assert_eq!(
        line(CHDIR, &[DATA], Some(0), &nul),
        format!(r#"chdir("{}") = 0"#, "p".repeat(100))
    );
}

#[test]
fn a_bad_pointer_is_shown_as_its_address() {
    assert_eq!(
        line(OPENAT, &[AT_FDCWD, BAD, 0], Some(-14), b""),
        "openat(AT_FDCWD, 0x7ffff0000000, O_RDONLY) = -1 EFAULT (Bad address)"
    );
    assert_eq!(
        line(WRITE, &[1, BAD, 5], Some(-14), b""),
        "write(1, 0x7ffff0000000, 5) = -1 EFAULT (Bad address)"
    );
    // A buffer running off the end of guest memory.
    assert_eq!(
        line(WRITE, &[1, MEM - 2, 5], Some(-14), b""),
        format!("write(1, {:#x}, 5) = -1 EFAULT (Bad address)", MEM - 2)
    );
    // A read that failed shows no buffer; one at the top of the address
    // space does not wrap.
    assert_eq!(
        line(READ, &[3, DATA, 10], Some(-9), b"data"),
        format!("read(3, {DATA:#x}, 10) = -1 EBADF (Bad file descriptor)")
    );
    assert_eq!(
        line(READ, &[3, u64::MAX, 10], Some(10), b""),
        "read(3, 0xffffffffffffffff, 10) = 10"
    );
    assert_eq!(
        line(UNAME, &[0], Some(-14), b""),
        "uname(NULL) = -1 EFAULT (Bad address)"
    );
    // An unterminated path up to the end of memory.
    let (mem, layout) = memory();
    let end = layout.system_base - 8;
    mem.write_slice(&[b'a'; 8], GuestAddress(end)).unwrap();
    let call = Syscall {
        nr: CHDIR,
        args: [end, 0, 0, 0, 0, 0],
    };
    let traced = decode::syscall(&call, Some(-14), &view(&mem, &layout));
    assert_eq!(traced.args, vec![Arg::Address(end)]);
}

#[test]
fn unknown_calls_show_their_number_and_six_arguments() {
    assert_eq!(
        line(0x1C3, &[1, 2, 3, 4, 5, 6], Some(-38), b""),
        "syscall_0x1c3(0x1, 0x2, 0x3, 0x4, 0x5, 0x6) = -1 ENOSYS (Function not implemented)"
    );
    assert_eq!(
        line(u64::MAX, &[], Some(-38), b""),
        "syscall_0xffffffffffffffff(0x0, 0x0, 0x0, 0x0, 0x0, 0x0) = -1 ENOSYS (Function not implemented)"
    );
}

#[test]
fn errno_values_are_named_with_their_messages() {
    for (code, text) in [
        (1, "EPERM (Operation not permitted)"),
        (13, "EACCES (Permission denied)"),
        (25, "ENOTTY (Inappropriate ioctl for device)"),
        (30, "EROFS (Read-only file system)"),
        (110, "ETIMEDOUT (Connection timed out)"),
    ] {
        assert_eq!(Returned::Error(code).to_string(), format!("-1 {text}"));
    }
    assert_eq!(Returned::Error(4000).to_string(), "-1 errno 4000");
    // -4095 is the last errno; below it, a result.
    assert_eq!(
        decode::result(-4095, table::Ret::Int),
        Returned::Error(4095)
    );
    assert_eq!(decode::result(-4096, table::Ret::Int), Returned::Int(-4096));
}

#[test]
fn flags_and_constants_are_named() {
    let cases: &[(u64, &[u64], i64, &str)] = &[
        (MMAP, &[0, 8192, 3, 0x22, u64::MAX, 0], 0x7000, "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7000"),
        (MMAP, &[0x1000, 4096, 0, 0x1_0012, 3, 0], -12, "mmap(0x1000, 4096, PROT_NONE, MAP_PRIVATE|MAP_FIXED|MAP_NONBLOCK, 3, 0) = -1 ENOMEM (Cannot allocate memory)"),
        (MPROTECT, &[0x1000, 4096, 0x5 | 0x40], 0, "mprotect(0x1000, 4096, PROT_READ|PROT_EXEC|0x40) = 0"),
        (NEWFSTATAT, &[3, DATA, 0x2000, 0x1100], 0, "newfstatat(3, \"\", 0x2000, AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH) = 0"),
        (UNLINKAT, &[AT_FDCWD, DATA, 0], 0, "unlinkat(AT_FDCWD, \"\", 0) = 0"),
        (CLOCK_GETTIME, &[1, 0x2000], 0, "clock_gettime(CLOCK_MONOTONIC, 0x2000) = 0"),
        (CLOCK_GETTIME, &[99, 0x2000], -22, "clock_gettime(99, 0x2000) = -1 EINVAL (Invalid argument)"),
        (FCNTL, &[1, 4, 0x800], 0, "fcntl(1, F_SETFL, 0x800) = 0"),
        (FCNTL, &[1, 1030, 3], 4, "fcntl(1, F_DUPFD_CLOEXEC, 0x3) = 4"),
        (IOCTL, &[1, 0x5413, 0x2000], -25, "ioctl(1, TIOCGWINSZ, 0x2000) = -1 ENOTTY (Inappropriate ioctl for device)"),
        (IOCTL, &[1, 0x1234, 0], -25, "ioctl(1, 0x1234, NULL) = -1 ENOTTY (Inappropriate ioctl for device)"),
        (KILL, &[1, 6], 0, "kill(1, SIGABRT) = 0"),
        (RT_SIGACTION, &[13, 0x2000, 0, 8], 0, "rt_sigaction(SIGPIPE, 0x2000, NULL, 8) = 0"),
        (RT_SIGACTION, &[65, 0, 0, 8], -22, "rt_sigaction(65, NULL, NULL, 8) = -1 EINVAL (Invalid argument)"),
        (TGKILL, &[1, 1, 15], 0, "tgkill(1, 1, SIGTERM) = 0"),
        (RT_SIGPROCMASK, &[2, 0x2000, 0, 8], 0, "rt_sigprocmask(SIG_SETMASK, 0x2000, NULL, 8) = 0"),
        (LSEEK, &[3, u64::from_ne_bytes((-5i64).to_ne_bytes()), 2], 95, "lseek(3, -5, SEEK_END) = 95"),
        (ARCH_PRCTL, &[0x1002, 0x4000], 0, "arch_prctl(ARCH_SET_FS, 0x4000) = 0"),
        (PRCTL, &[16, 0x2000, 0, 0, 0], 0, "prctl(PR_GET_NAME, 0x2000, 0x0, 0x0, 0x0) = 0"),
        (FUTEX, &[0x2000, 0x81, 1, 0, 0, 0], 0, "futex(0x2000, FUTEX_WAKE|FUTEX_PRIVATE_FLAG, 1, NULL, NULL, 0) = 0"),
        (ACCESS, &[DATA, 0], -2, "access(\"\", F_OK) = -1 ENOENT (No such file or directory)"),
        (FACCESSAT2, &[AT_FDCWD, DATA, 6, 0x200], 0, "faccessat2(AT_FDCWD, \"\", R_OK|W_OK, AT_REMOVEDIR) = 0"),
        (PRLIMIT64, &[0, 7, 0, 0x2000], 0, "prlimit64(0, RLIMIT_NOFILE, NULL, 0x2000) = 0"),
        (UMASK, &[0o77], 0o22, "umask(077) = 022"),
        (BRK, &[0], 0x40_0000, "brk(NULL) = 0x400000"),
        (DUP3, &[3, 4, 0o2000000], 4, "dup3(3, 4, O_RDONLY|O_CLOEXEC) = 4"),
        (RENAMEAT2, &[AT_FDCWD, DATA, AT_FDCWD, DATA, 5], -1, "renameat2(AT_FDCWD, \"\", AT_FDCWD, \"\", RENAME_NOREPLACE|RENAME_WHITEOUT) = -1 EPERM (Operation not permitted)"),
        (GETRANDOM, &[DATA, 16, 1], -11, "getrandom(0x100000, 16, GRND_NONBLOCK) = -1 EAGAIN (Resource temporarily unavailable)"),
        (GETPID, &[], 1, "getpid() = 1"),
    ];
    for &(nr, args, returned, expected) in cases {
        assert_eq!(line(nr, args, Some(returned), b"\0"), expected);
    }
}

#[test]
fn kinds_no_row_uses_yet_are_decoded_too() {
    let (mem, layout) = memory();
    mem.write_slice(&[b's'; 40], GuestAddress(DATA)).unwrap();
    mem.write_slice(b"\0", GuestAddress(DATA + 40)).unwrap();
    let view = view(&mem, &layout);
    let call = Syscall {
        nr: 25,
        args: [0; 6],
    };
    let show = |kind, value| decode::arg(kind, value, &call, Some(0), &view).to_string();
    assert_eq!(
        show(table::Kind::Str, DATA),
        format!("\"{}\"...", "s".repeat(32))
    );
    assert_eq!(show(table::Kind::Str, BAD), "0x7ffff0000000");
    assert_eq!(
        show(table::Kind::MremapFlags, 3),
        "MREMAP_MAYMOVE|MREMAP_FIXED"
    );
    assert_eq!(show(table::Kind::MremapFlags, 0), "0");
    assert_eq!(show(table::Kind::Madvise, 4), "MADV_DONTNEED");
    assert_eq!(show(table::Kind::Madvise, 100), "100");
    assert_eq!(
        show(table::Kind::Futex, 0x189),
        "FUTEX_WAIT_BITSET|FUTEX_PRIVATE_FLAG|FUTEX_CLOCK_REALTIME"
    );
    assert_eq!(show(table::Kind::Futex, 0x7F), "0x7f");
    assert_eq!(show(table::Kind::MapFlags, 0x20), "MAP_ANONYMOUS");
    assert_eq!(show(table::Kind::MapFlags, 0x4), "0x4");
    assert_eq!(show(table::Kind::Fd, 0xFFFF_FFFF), "-1");
    assert_eq!(show(table::Kind::Signal, 0), "0");
}

#[test]
fn iovec_arrays_show_each_buffer_as_far_as_the_call_went() {
    let (mem, layout) = memory();
    // Two entries: "hello" at DATA + 0x100, then a NULL of length 0; then
    // "abcdef" and "ghij" for a read.
    let iov = |entries: &[(u64, u64)]| {
        entries
            .iter()
            .flat_map(|&(base, len)| [base, len])
            .collect::<Vec<u64>>()
    };
    mem.write_slice(b"hello", GuestAddress(DATA + 0x100))
        .unwrap();
    mem.write_slice(b"abcdefghij", GuestAddress(DATA + 0x200))
        .unwrap();
    mem.write_obj([DATA + 0x100, 5, 0, 0], GuestAddress(DATA))
        .unwrap();
    let read: [u64; 4] = iov(&[(DATA + 0x200, 6), (DATA + 0x206, 8)])
        .try_into()
        .unwrap();
    mem.write_obj(read, GuestAddress(DATA + 0x40)).unwrap();
    let view = view(&mem, &layout);
    let show = |nr, args: [u64; 3], returned| {
        let call = Syscall {
            nr,
            args: [args[0], args[1], args[2], 0, 0, 0],
        };
        TraceEvent::Call(decode::syscall(&call, Some(returned), &view)).to_string()
    };
    assert_eq!(
        show(WRITEV, [1, DATA, 2], 5),
        r#"writev(1, [{iov_base="hello", iov_len=5}, {iov_base=NULL, iov_len=0}], 2) = 5"#
    );
    assert_eq!(
        show(READV, [3, DATA + 0x40, 2], 9),
        r#"readv(3, [{iov_base="abcdef", iov_len=6}, {iov_base="ghi", iov_len=8}], 2) = 9"#
    );
    assert_eq!(
        show(READV, [3, DATA + 0x40, 2], -9),
        format!(
            "readv(3, {:#x}, 2) = -1 EBADF (Bad file descriptor)",
            DATA + 0x40
        )
    );
    assert_eq!(
        show(WRITEV, [1, BAD, 2], -14),
        "writev(1, 0x7ffff0000000, 2) = -1 EFAULT (Bad address)"
    );
    // More entries than a trace shows: the first eight, then "...".
    let many: Vec<u64> = iov(&[(DATA + 0x100, 1); 9]);
    mem.write_slice(many.as_bytes(), GuestAddress(DATA + 0x400))
        .unwrap();
    let one = r#"{iov_base="h", iov_len=1}"#;
    assert_eq!(
        show(WRITEV, [1, DATA + 0x400, 9], 9),
        format!("writev(1, [{}, ...], 9) = 9", [one; 8].join(", "))
    );
}

#[test]
fn a_timespec_is_read_and_a_wait_is_traced_in_two_parts() {
    let (mem, layout) = memory();
    mem.write_obj([600i64, 5], GuestAddress(DATA)).unwrap();
    let view = view(&mem, &layout);
    let call = Syscall {
        nr: CLOCK_NANOSLEEP,
        args: [0, 1, DATA, 0, 0, 0],
    };
    assert!(decode::syscall_waits(&call));
    let entered = decode::syscall(&call, None, &view);
    let entered = TraceEvent::Entered(Call {
        result: Returned::Pending,
        ..entered
    });
    assert_eq!(
        entered.to_string(),
        "clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, {tv_sec=600, tv_nsec=5}, NULL) <unfinished ...>"
    );
    let resumed = TraceEvent::Resumed {
        name: CallName::Syscall(CLOCK_NANOSLEEP),
        result: Returned::Error(4),
    };
    assert_eq!(
        resumed.to_string(),
        "<... clock_nanosleep resumed> = -1 EINTR (Interrupted system call)"
    );
    // A read waits only on stdin; a bad timespec is its address.
    let read = |fd| Syscall {
        nr: READ,
        args: [fd, DATA, 1, 0, 0, 0],
    };
    assert!(decode::syscall_waits(&read(0)));
    assert!(!decode::syscall_waits(&read(3)));
    let call = Syscall {
        nr: NANOSLEEP,
        args: [BAD, 0, 0, 0, 0, 0],
    };
    assert_eq!(
        TraceEvent::Call(decode::syscall(&call, Some(-14), &view)).to_string(),
        "nanosleep(0x7ffff0000000, NULL) = -1 EFAULT (Bad address)"
    );
}

#[test]
fn hypercalls_are_decoded_with_their_arguments_and_results() {
    let (mem, layout) = memory();
    let view = view(&mem, &layout);
    let show = |call| TraceEvent::Call(decode::hypercall(call, &view, 4)).to_string();
    assert_eq!(show(Hypercall::Console(b'H')), "console('H')");
    assert_eq!(show(Hypercall::Console(b'\n')), "console('\\n')");
    assert_eq!(show(Hypercall::Console(b'\'')), "console('\\'')");
    assert_eq!(show(Hypercall::PrintVal(2026)), "printVal(2026)");
    assert_eq!(show(Hypercall::GetNumExits), "getNumExits() = 4");
    assert_eq!(show(Hypercall::Exit(3)), "exit(3) = ?");
    assert_eq!(show(Hypercall::Halt), "halt() = ?");
    mem.write_slice(b"/data/in.txt\0", GuestAddress(DATA))
        .unwrap();
    assert_eq!(show(Hypercall::Display(DATA)), r#"display("/data/in.txt")"#);
    let block = DATA + 0x100;
    let args = OpenArgs {
        path: DATA,
        flags: 0o101,
        mode: 0o600,
        result: -30,
    };
    mem.write_slice(args.as_bytes(), GuestAddress(block))
        .unwrap();
    assert_eq!(
        show(Hypercall::Block {
            port: kvmini_abi::Port::Open,
            address: block
        }),
        r#"open("/data/in.txt", O_WRONLY|O_CREAT, 0600) = -1 EROFS (Read-only file system)"#
    );
    assert_eq!(
        show(Hypercall::Block {
            port: kvmini_abi::Port::Open,
            address: BAD
        }),
        "open(0x7ffff0000000) = ?"
    );
}

#[test]
fn the_end_of_a_run_reads_as_strace_ends_a_process() {
    let end = |e| TraceEvent::Ended(e).to_string();
    assert_eq!(end(TraceEnd::Exited(0)), "+++ exited with 0 +++");
    assert_eq!(end(TraceEnd::Exited(300)), "+++ exited with 44 +++");
    assert_eq!(end(TraceEnd::Killed(6)), "+++ killed by SIGABRT +++");
    assert_eq!(end(TraceEnd::Killed(11)), "+++ killed by SIGSEGV +++");
    assert_eq!(end(TraceEnd::Killed(99)), "+++ killed by signal 99 +++");
    assert_eq!(end(TraceEnd::TimedOut), "+++ stopped at its time limit +++");
}

#[test]
fn calls_are_counted_by_number_with_their_errors() {
    let mut counts = SyscallCounts::default();
    for (nr, failed) in [
        (READ, false),
        (OPENAT, true),
        (READ, false),
        (OPENAT, false),
        (READ, true),
        (u64::MAX, true),
        (600, true),
    ] {
        counts.count(nr, failed);
    }
    let shown: Vec<(String, u64, u64)> = counts
        .by_count()
        .iter()
        .map(|c| (c.name().to_string(), c.calls, c.errors))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("read".to_owned(), 3, 1),
            ("openat".to_owned(), 2, 1),
            // Numbers past the table share its last slot.
            ("syscall_0x1ff".to_owned(), 2, 2),
        ]
    );
    assert_eq!(counts.total(), (7, 4));
}

#[test]
fn every_call_kvmini_names_has_a_signature() {
    for nr in 0..counts::SLOTS as u64 {
        if let Some(name) = crate::linux::name(nr) {
            assert!(
                table::signature(nr).is_some(),
                "{name} ({nr}) has no row in trace/table.rs"
            );
        }
    }
}
