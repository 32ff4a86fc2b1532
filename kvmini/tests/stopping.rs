//! Stopping kvmini whatever it waits on: guest output nobody reads, input
//! nobody writes, FIFOs in a grant; a reader that went away; an inherited
//! signal mask or ignored signals; guest images that are not regular files
//! or too large; and kvmini's own messages on broken streams.
//!
//! Waits are checked with a pipe shrunk to one page: the tests that stop
//! kvmini with a signal or a stop handle wait until it is full, so that
//! kvmini is (or is about to be) blocked writing it, then stop it; a
//! timeout stops it the same way, at whatever point the limit comes. Time
//! limits here only catch hangs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::c_build::cc_guest;
use common::{kvm_or_skip, text};
use kvmini::host::{Errno, HostCall};
use kvmini::output::{Capture, Input, Output};
use kvmini::sandbox::{Ending, Sandbox, STATUS_OUTPUT_CLOSED};
use kvmini::stop::{StopHandle, StopReason};

/// Longest any kvmini here may take to stop: a hang, not a slow host.
const HANG: Duration = Duration::from_secs(60);

/// The pipes' size: one page, so that a guest fills one at once.
const PIPE_SIZE: usize = 4096;

/// `tests/guests/stopping.c`, built once per test run.
fn guest_path() -> &'static Path {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let elf = dir.join("stopping.elf");
        let partial = dir.join(format!("stopping.elf.{}", std::process::id()));
        cc_guest(
            &["-Wall", "-Wextra", "-Werror"],
            &partial,
            "kvmini/tests/guests/stopping.c",
        );
        std::fs::rename(&partial, &elf).expect("rename the built guest");
        elf
    })
}

fn guest_str() -> &'static str {
    guest_path().to_str().expect("a UTF-8 path")
}

/// A pipe of [`PIPE_SIZE`] bytes: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and are owned here only.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let size = libc::c_int::try_from(PIPE_SIZE).unwrap();
    // SAFETY: F_SETPIPE_SZ takes an int.
    let set = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
    assert_eq!(set, size);
    (read, write)
}

/// Bytes waiting in a pipe.
fn queued(read: &OwnedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let done = unsafe { libc::ioctl(read.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(done, 0);
    usize::try_from(n).unwrap()
}

/// Whether the pipe is full: it has no room for another line of the
/// guest's (at most 64 bytes), so a writer of one waits.
fn full(read: &OwnedFd) -> bool {
    queued(read) > PIPE_SIZE - 64
}

/// Waits until the pipe is full: its writer is blocked (or about to be).
fn wait_full(read: &OwnedFd) {
    let start = Instant::now();
    while !full(read) {
        assert!(start.elapsed() < HANG, "the guest never filled the pipe");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The parts that print for ever, and whether they print on stderr.
const SPAMMERS: [(&str, bool); 5] = [
    ("console", false),
    ("printval", false),
    ("display", false),
    ("write1", false),
    ("write2", true),
];

/// A sandbox of the guest doing `part`, its stdout and stderr the write
/// end of a pipe nobody reads (the read end is returned) or discarded.
fn blocked_sandbox(
    kvm: &kvmini::kvm::Kvm,
    part: &str,
    on_stderr: bool,
    timeout: Option<Duration>,
) -> (Sandbox, OwnedFd) {
    let (read, write) = pipe();
    let writer = Output::Writer(Box::new(File::from(write)));
    let mut builder = Sandbox::builder()
        .elf_file(guest_path())
        .args([guest_str(), part])
        .stdin(Input::Null)
        .warnings(Output::Null);
    builder = if on_stderr {
        builder.stderr(writer).stdout(Output::Null)
    } else {
        builder.stdout(writer).stderr(Output::Null)
    };
    if let Some(limit) = timeout {
        builder = builder.timeout(limit);
    }
    (builder.build(kvm).expect("the sandbox is built"), read)
}

#[test]
fn a_writer_that_blocks_ends_at_a_stop_handle_and_at_the_timeout() {
    let Some(kvm) = kvm_or_skip() else { return };
    for (part, on_stderr) in SPAMMERS {
        let (mut sandbox, read) = blocked_sandbox(&kvm, part, on_stderr, None);
        let stop = sandbox.stop_handle();
        let stopper = std::thread::spawn(move || {
            wait_full(&read);
            stop.stop(StopReason::Signal(libc::SIGTERM));
            read
        });
        let outcome = sandbox.run().expect("the run ends");
        assert_eq!(outcome.ending, Ending::Stopped(libc::SIGTERM), "{part}");
        drop(stopper.join().unwrap());

        let limit = Duration::from_millis(300);
        let (mut sandbox, read) = blocked_sandbox(&kvm, part, on_stderr, Some(limit));
        // The timeout stops the run the same way (whether the pipe filled
        // before it, which the stop above waited for, depends on timing).
        let outcome = sandbox.run().expect("the run ends");
        assert_eq!(outcome.ending, Ending::TimedOut(limit), "{part}");
        drop(read);
    }
}

#[test]
fn a_stdin_reader_that_blocks_ends_at_the_timeout() {
    let Some(kvm) = kvm_or_skip() else { return };
    let (read, _write) = pipe();
    let limit = Duration::from_millis(300);
    let mut sandbox = Sandbox::builder()
        .elf_file(guest_path())
        .args([guest_str(), "stdin"])
        .stdin(Input::Reader(Box::new(File::from(read))))
        .stdout(Output::Null)
        .timeout(limit)
        .build(&kvm)
        .unwrap();
    assert_eq!(sandbox.run().unwrap().ending, Ending::TimedOut(limit));
}

#[test]
fn a_closed_output_pipe_is_a_typed_ending_in_the_library() {
    let Some(kvm) = kvm_or_skip() else { return };
    for part in ["console", "printval", "display"] {
        let (read, write) = pipe();
        drop(read);
        let mut sandbox = Sandbox::builder()
            .elf_file(guest_path())
            .args([guest_str(), part])
            .stdout(Output::Writer(Box::new(File::from(write))))
            .build(&kvm)
            .unwrap();
        let outcome = sandbox.run().unwrap();
        assert_eq!(outcome.ending, Ending::OutputClosed, "{part}");
        assert_eq!(outcome.ending.status(), STATUS_OUTPUT_CLOSED);
    }
}

/// The signal kvmini uses to interrupt KVM_RUN.
fn kick_signal() -> i32 {
    kvmini::stop::signal()
}

#[test]
fn a_thread_with_the_kick_signal_blocked_still_stops_its_guest() {
    let Some(kvm) = kvm_or_skip() else { return };
    let ending = std::thread::spawn(move || {
        let kick = kick_signal();
        // SAFETY: plain signal-set manipulation on this thread.
        let blocked = |set: &mut libc::sigset_t| unsafe {
            libc::sigemptyset(set);
            libc::sigaddset(set, kick);
            libc::pthread_sigmask(libc::SIG_BLOCK, set, std::ptr::null_mut());
        };
        // SAFETY: a zeroed sigset_t is filled in by sigemptyset.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        blocked(&mut set);
        let limit = Duration::from_millis(300);
        let mut endings = Vec::new();
        for seccomp in [false, true] {
            let mut sandbox = Sandbox::builder()
                .elf_file(guest_path())
                .args([guest_str(), "loop"])
                .seccomp(seccomp)
                .timeout(limit)
                .build(&kvm)
                .unwrap();
            endings.push(sandbox.run().unwrap().ending);
        }
        // The thread's own mask is as it was.
        // SAFETY: reads this thread's mask into `set`.
        let still_blocked = unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set);
            libc::sigismember(&set, kick) == 1
        };
        (endings, still_blocked, limit)
    })
    .join()
    .unwrap();
    let limit = ending.2;
    assert_eq!(
        ending.0,
        vec![Ending::TimedOut(limit), Ending::TimedOut(limit)]
    );
    assert!(ending.1, "the caller's mask was changed");
}

#[test]
fn host_functions_allocate_from_the_heap_and_cannot_make_memory_executable() {
    let Some(kvm) = kvm_or_skip() else { return };
    let out = Capture::new();
    let mut sandbox = Sandbox::builder()
        .elf_file(guest_path())
        .args([guest_str(), "host"])
        .stdout(Output::Capture(out.clone()))
        // Many small allocations held at once: from the thread's heap, the
        // allocator maps nothing for them; refused mprotect, it maps a page
        // or more for each. The answer is 0 when the heap served them.
        .host_function(1, |_: &HostCall<'_>| {
            let count = 20_000usize;
            // SAFETY: mallinfo2 only reads the allocator's counters.
            let before = unsafe { libc::mallinfo2() }.hblkhd;
            let held: Vec<Box<[u8]>> = (0..count).map(|_| vec![7u8; 64].into()).collect();
            // SAFETY: as above.
            let mapped = unsafe { libc::mallinfo2() }.hblkhd.saturating_sub(before);
            assert_eq!(held.len(), count);
            // The margin covers large allocations of other tests at the same
            // time; one page per allocation would be `count` pages.
            Ok(if mapped < count * 4096 / 8 {
                0
            } else {
                mapped as u64
            })
        })
        // Making memory executable is refused: EPERM comes back.
        .host_function(2, |_: &HostCall<'_>| {
            // SAFETY: a fresh anonymous mapping, unmapped before returning.
            let errno = unsafe {
                let page = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                assert_ne!(page, libc::MAP_FAILED);
                let result = libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC);
                let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                libc::munmap(page, 4096);
                if result == 0 {
                    0
                } else {
                    errno
                }
            };
            // 0 (allowed) is a success for the guest, not an errno.
            Errno::new(errno).map_or(Ok(0), Err)
        })
        .build(&kvm)
        .unwrap();
    let outcome = sandbox.run().unwrap();
    assert_eq!(outcome.ending, Ending::Exited(0));
    assert_eq!(text(&out.contents()), format!("0\n{}\n", libc::EPERM));
}

/// A stop handle that nobody uses is harmless to keep: the stop of a run
/// that already ended applies to the next one.
#[test]
fn a_stop_between_runs_stops_the_next_run() {
    let Some(kvm) = kvm_or_skip() else { return };
    let stop = StopHandle::new();
    let mut sandbox = Sandbox::builder()
        .elf_file(guest_path())
        .args([guest_str(), "loop"])
        .stop_handle(stop.clone())
        .build(&kvm)
        .unwrap();
    stop.stop(StopReason::Signal(libc::SIGINT));
    assert_eq!(sandbox.run().unwrap().ending, Ending::Stopped(libc::SIGINT));
    assert_eq!(stop.pending(), None);
}
