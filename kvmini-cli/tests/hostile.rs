//! The adversarial guest suite: small guests that do everything wrong on
//! purpose, and exactly what kvmini does about each.
//!
//! The guests are C programs in `tests/hostile/` (built with the C SDK's
//! command line; `hostile.h` says what they share) and, below, flat images
//! assembled by hand, the assembly in comments. Every case checks the exact
//! answer the guest gets (it prints each one) or the exact way its run ends;
//! and for every case, that kvmini did not panic (the run returns), that
//! the host process holds as many descriptors after the sandbox is dropped
//! as before it was built, and, where a directory is granted, that a canary
//! file beside it was neither changed nor read. `docs/security.md` is the
//! threat model these cases back.
//!
//! Tests in one binary run on parallel threads and share the descriptor
//! table, so each test here holds [`SERIAL`] for as long as it builds
//! guests, runs them or spawns processes.
//!
//! Some results depend on how the host runs guests: on nested KVM through
//! kvm-pvm, ring-0 code runs in KVM's instruction emulator, and a few
//! instructions end differently than on hardware virtualization. Those cases check the kvm-pvm result there and
//! the architectural one elsewhere, and say so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
#[path = "../../kvmini/tests/fs_common/mod.rs"]
mod fs_common;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::{kvm_or_skip, kvmini, text};

/// Held by every test for its whole length (see the module comment).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Builds `tests/hostile/NAME.c` once (warnings are failures) and returns
/// the path of its ELF.
fn guest_path(name: &str) -> PathBuf {
    common::built_guest(&format!("kvmini/tests/hostile/{name}.c"), &[])
}

#[test]
fn a_guest_blocked_reading_kvmini_stdin_ends_at_the_timeout() {
    // The stop signal interrupts the host read; the guest never resumes.
    let _serial = serial();
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let image = dir.path().join("read-stdin.bin");
    fs::write(&image, common::READ_ONE).expect("write the guest");
    let start = Instant::now();
    let mut child = kvmini()
        .args([
            "run",
            "--flat",
            "--ring",
            "3",
            "--mem",
            "4M",
            "--timeout",
            "1s",
        ])
        .arg(&image)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kvmini starts");
    // Held open and never written: the read can only wait, until the
    // timeout stops it. Should it not, the pipe closes after 20 s, the
    // read returns 0 and the guest halts: a failure, not a hang.
    let stdin = child.stdin.take();
    let (closed, closing) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _ = closing.recv_timeout(Duration::from_secs(20));
        drop(stdin);
    });
    let out = child.wait_with_output().expect("kvmini ends");
    let took = start.elapsed();
    drop(closed);
    holder.join().expect("the stdin holder");
    assert_eq!(out.status.code(), Some(124), "after {took:?}");
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "kvmini: guest timed out after 1s (1 exit); stopped at rip 0x22\n"
    );
}

#[test]
fn cli_reports_a_crash_with_status_126() {
    let _serial = serial();
    if kvm_or_skip().is_none() {
        return;
    }
    let elf = guest_path("faults");
    let out = kvmini()
        .env_remove("RUST_BACKTRACE")
        .args(["run", "--mem", "4M"])
        .arg(&elf)
        .args(["--", "div0"])
        .output()
        .expect("kvmini runs");
    let at: u64 = text(&out.stdout).trim().parse().expect("the address");
    assert_eq!(out.status.code(), Some(126));
    let stderr = text(&out.stderr);
    // faults.c labels each case's instruction fault_NAME; the case runs
    // in a function of the C SDK built with its default flags, so the
    // frame chain is whatever RBP held.
    let lines: Vec<&str> = stderr.lines().take(3).collect();
    assert_eq!(
        lines,
        [
            format!("kvmini: guest crashed: divide error at rip {at:#x} (fault_div0) (ring 3)")
                .as_str(),
            "  backtrace:",
            format!("  #0 {at:#x} fault_div0").as_str(),
        ]
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The `Seccomp:` value of every thread of process `pid`.
fn seccomp_modes(pid: u32) -> Vec<String> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Seccomp:\t").map(str::to_owned))
        })
        .collect()
}

/// Runs `kvmini run --flat --ring 3 --timeout LIMIT [extra]` on a guest
/// that spins, and returns the `Seccomp:` values of its threads once its
/// vCPU runs (found by `ready`), and its exit status and stderr.
fn spin_in_cli(
    limit: &str,
    extra: &[&str],
    ready: fn(&[String]) -> bool,
) -> (Vec<String>, Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let spin = dir.path().join("spin.bin");
    fs::write(&spin, [0xEB, 0xFE]).expect("write the guest"); // 0: jmp 0
    let child = kvmini()
        .args([
            "run",
            "--flat",
            "--ring",
            "3",
            "--mem",
            "4M",
            "--timeout",
            limit,
        ])
        .args(extra)
        .arg(&spin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kvmini starts");
    // Only a bound on waiting: the loop ends as soon as the threads are up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut modes = seccomp_modes(child.id());
    while !ready(&modes) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        modes = seccomp_modes(child.id());
    }
    let out = child.wait_with_output().expect("kvmini ends");
    (modes, out.status.code(), text(&out.stderr))
}

#[test]
fn kvmini_runs_the_guest_under_its_seccomp_filter() {
    let _serial = serial();
    if kvm_or_skip().is_none() {
        return;
    }
    // The vCPU thread installs the filter (mode 2) before its first KVM_RUN.
    let (modes, status, stderr) = spin_in_cli("2s", &[], |m| m.iter().any(|s| s == "2"));
    assert!(
        modes.iter().any(|s| s == "2"),
        "thread seccomp modes: {modes:?}"
    );
    // The main thread, which started it, is not confined.
    assert!(
        modes.iter().any(|s| s == "0"),
        "thread seccomp modes: {modes:?}"
    );
    assert_eq!(status, Some(124));
    assert_eq!(
        stderr,
        "kvmini: guest timed out after 2s (0 exits); stopped at rip 0x0\n"
    );

    // With --no-seccomp the guest runs on the main thread, beside the
    // signal and timeout threads: three threads, none filtered.
    let (modes, status, stderr) = spin_in_cli("1s", &["--no-seccomp"], |m| m.len() >= 3);
    assert!(modes.len() >= 3, "threads: {modes:?}");
    assert!(
        modes.iter().all(|s| s == "0"),
        "thread seccomp modes: {modes:?}"
    );
    assert_eq!(status, Some(124));
    assert_eq!(
        stderr,
        "kvmini: guest timed out after 1s (0 exits); stopped at rip 0x0\n"
    );
}

/// How a kvmini process bounded by [`kvmini_bounded`] ended.
struct Bounded {
    /// Its exit status; `None`: still running at the deadline, killed.
    status: Option<ExitStatus>,
    /// How long it ran.
    took: Duration,
    /// Bytes it wrote to stdout, and the first 4 KiB of them.
    stdout_len: u64,
    stdout_head: Vec<u8>,
    stderr: String,
}

/// Runs the kvmini binary with `args` under an address-space limit of
/// `limit_kib` (`ulimit -v`), counting what it writes to stdout, and kills
/// it if it is still running after `deadline` (a bound on a hang, far
/// above what any of these runs takes).
fn kvmini_bounded(args: &[&std::ffi::OsStr], limit_kib: u64, deadline: Duration) -> Bounded {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {limit_kib} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_kvmini"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kvmini starts");
    let mut stdout = child.stdout.take().expect("piped");
    let counter = std::thread::spawn(move || {
        let (mut len, mut head, mut buf) = (0u64, Vec::new(), vec![0u8; 1 << 16]);
        while let Ok(n @ 1..) = std::io::Read::read(&mut stdout, &mut buf) {
            len += n as u64;
            let room = 4096usize.saturating_sub(head.len()).min(n);
            head.extend_from_slice(&buf[..room]);
        }
        (len, head)
    });
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let start = Instant::now();
    let mut status = None;
    while start.elapsed() < deadline {
        if let Some(done) = child.try_wait().expect("wait") {
            status = Some(done);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    // Reaps the killed child (and is a no-op for one already reaped).
    let _ = child.wait();
    let (stdout_len, stdout_head) = counter.join().expect("stdout reader");
    Bounded {
        status,
        took,
        stdout_len,
        stdout_head,
        stderr: errors.join().expect("stderr reader"),
    }
}

/// Runs `name` (a guest that makes one long call, then spins) with the
/// kvmini options `options`, the guest arguments `guest_args` and a
/// 1-second timeout, and checks that kvmini ends it with status 124 and
/// reports the timeout.
fn ends_at_its_timeout(
    name: &str,
    options: &[&str],
    guest_args: &[&str],
    limit_kib: u64,
) -> Option<Bounded> {
    let _serial = serial();
    kvm_or_skip()?;
    let elf = guest_path(name);
    let mut args: Vec<&std::ffi::OsStr> = ["run", "--timeout", "1s"]
        .iter()
        .map(std::ffi::OsStr::new)
        .collect();
    args.extend(options.iter().map(std::ffi::OsStr::new));
    args.push(elf.as_os_str());
    if !guest_args.is_empty() {
        args.push("--".as_ref());
        args.extend(guest_args.iter().map(std::ffi::OsStr::new));
    }
    let run = kvmini_bounded(&args, limit_kib, Duration::from_secs(20));
    assert_eq!(
        run.status.and_then(|s| s.code()),
        Some(124),
        "kvmini did not end the guest at its timeout (after {:?}: {:?}): {}",
        run.took,
        run.status,
        run.stderr
    );
    assert!(
        run.stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("kvmini: guest timed out after 1s (")),
        "{}",
        run.stderr
    );
    Some(run)
}

#[test]
fn display_through_aliased_page_tables_is_bounded() {
    let Some(run) = ends_at_its_timeout(
        "alias",
        &["--ring", "0", "--mem", "4M"],
        &["display"],
        2 << 20,
    ) else {
        return;
    };
    // The string seems endless through the aliased tables: kvmini looks
    // no further than guest memory's size, and prints nothing of it.
    assert_eq!(
        String::from_utf8_lossy(&run.stdout_head),
        "aliased: display\n"
    );
    assert!(
        run.stderr.starts_with(
            "kvmini: display(0x40000000) ignored: string at 0x40000000 has no NUL terminator within 4194304 bytes\n"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn write_through_aliased_page_tables_is_bounded() {
    let Some(run) = ends_at_its_timeout(
        "alias",
        &["--ring", "0", "--mem", "4M"],
        &["write"],
        2 << 20,
    ) else {
        return;
    };
    // The 2^46-byte buffer is longer than guest memory: refused whole.
    assert_eq!(
        String::from_utf8_lossy(&run.stdout_head),
        "aliased: write\nwrite: -14 EFAULT\n"
    );
}

#[test]
fn a_batch_of_long_writes_ends_at_the_timeout() {
    let Some(run) = ends_at_its_timeout("flood", &["--mem", "256M"], &[], 4 << 20) else {
        return;
    };
    // The 4096-entry batch was taken (its writes reached stdout) and ended
    // early: all of it is 1 TiB.
    assert!(run.stdout_len > 0);
    assert!(run.stdout_len < 4096 * (253 << 20), "{}", run.stdout_len);
}

#[test]
fn a_display_of_most_of_guest_memory_is_written_in_place() {
    // 250 MiB of display string beside 256 MiB of guest memory, in 600 MiB
    // of address space: kvmini writes the string straight from guest
    // memory (a copy would not fit), then the guest exits with 7.
    let _serial = serial();
    if kvm_or_skip().is_none() {
        return;
    }
    let elf = guest_path("longstring");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 614400 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_kvmini"))
        // The timeout only catches a hang: the guest ends by itself.
        .args(["run", "--mem", "256M", "--timeout", "300s"])
        .arg(&elf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kvmini starts");
    let mut stdout = child.stdout.take().expect("piped");
    let counted = std::thread::spawn(move || {
        let (mut xs, mut others, mut buf) = (0u64, 0u64, vec![0u8; 1 << 16]);
        loop {
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => return (xs, others),
                Ok(n) => {
                    let x = buf[..n].iter().filter(|&&b| b == b'x').count() as u64;
                    xs += x;
                    others += n as u64 - x;
                }
            }
        }
    });
    let out = child.wait_with_output().expect("kvmini ends");
    assert_eq!(counted.join().expect("counter"), (250 << 20, 0));
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
}
