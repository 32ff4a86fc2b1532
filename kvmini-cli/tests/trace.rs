//! `--trace` and `--stats` through the `kvmini` binary: the system calls
//! of busybox and of a musl program line by line as strace shows them,
//! the counts by name, an SDK guest's hypercalls, the README's example,
//! and a trace that cannot be written (a closed stderr, a full pipe
//! nobody reads) leaving the run as it was.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
mod linux_native;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{kvm_or_skip, kvmini};
use linux_native::{musl, text, BUSYBOX};

/// Whether `line` is `pattern`, where each `*` in the pattern stands for
/// any run of characters (an address that changes with the layout).
fn matches(pattern: &str, line: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    for (i, piece) in pieces.iter().enumerate() {
        if i + 1 == pieces.len() {
            return rest.ends_with(piece);
        }
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Checks that the trace's lines from the first that starts with
/// `from` are `expected` exactly (with `*` patterns).
fn assert_trace_from(trace: &str, from: &str, expected: &[&str]) {
    let lines: Vec<&str> = trace.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(from))
        .unwrap_or_else(|| panic!("no line starts with {from:?} in:\n{trace}"));
    let got = &lines[start..];
    assert_eq!(got.len(), expected.len(), "{trace}");
    for (line, pattern) in got.iter().zip(expected) {
        assert!(
            matches(pattern, line),
            "{line:?} is not {pattern:?} in:\n{trace}"
        );
    }
}

/// A granted directory holding `/data/in.txt`.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "hello\nworld\n").unwrap();
    dir
}

fn grant(dir: &Path) -> String {
    format!("{}:/data:ro", dir.display())
}

/// What busybox `cat /data/in.txt` does once it opens the file.
const CAT_TRACE: &[&str] = &[
    r#"openat(AT_FDCWD, "/data/in.txt", O_RDONLY) = 3"#,
    "sendfile(1, 3, NULL, 16777216) = -1 ENOSYS (Function not implemented)",
    "mmap(NULL, 65536, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x*",
    r#"read(3, "hello\nworld\n", 65536) = 12"#,
    r#"write(1, "hello\nworld\n", 12) = 12"#,
    r#"read(3, "", 65536) = 0"#,
    "munmap(0x*, 65536) = 0",
    "close(3) = 0",
    "exit_group(0) = ?",
    "+++ exited with 0 +++",
];

#[test]
fn busybox_cat_is_traced_call_by_call() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = data_dir();
    let out = kvmini()
        .args(["run", "--trace", "--dir", &grant(dir.path())])
        .args([BUSYBOX, "--", "cat", "/data/in.txt"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "hello\nworld\n".to_owned())
    );
    let trace = text(&out.stderr);
    assert_trace_from(&trace, "openat(", CAT_TRACE);
    // Before it, glibc's start: one whole call a line.
    assert!(trace.starts_with("brk(NULL) = 0x"), "{trace}");
    assert!(
        trace.contains("\nreadlink(\"/proc/self/exe\", \"/usr/bin/busybox\", 4096) = 16\n"),
        "{trace}"
    );
}

#[test]
fn the_readme_example_is_what_kvmini_prints() {
    if kvm_or_skip().is_none() {
        return;
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let command = "$ kvmini run --trace --dir ./data:/data:ro /usr/bin/busybox -- cat /data/in.txt";
    let block: Vec<&str> = readme
        .split_once(command)
        .unwrap_or_else(|| panic!("README.md shows {command:?}"))
        .1
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    // The README leaves out the start-up with "...", and shows the
    // addresses of one run.
    let dots = block.iter().position(|l| *l == "...").unwrap();
    assert_eq!(block[..dots], ["hello", "world"]);
    let shown = &block[dots + 1..];
    assert_eq!(shown.len(), CAT_TRACE.len());
    for (line, pattern) in shown.iter().zip(CAT_TRACE) {
        assert!(
            matches(pattern, line),
            "README: {line:?} is not {pattern:?}"
        );
    }
}

#[test]
fn a_musl_program_is_traced_call_by_call() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = data_dir();
    let program = musl("trace.c", dir.path());
    let out = kvmini()
        .args(["run", "--trace", "--dir", &grant(dir.path())])
        .arg(&program)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (
            Some(3),
            "hello\nworld\na\tb\\\"\u{1}\nread 12 bytes\n".to_owned()
        )
    );
    let trace = text(&out.stderr);
    assert_trace_from(
        &trace,
        "arch_prctl(",
        &[
            "arch_prctl(ARCH_SET_FS, 0x*) = 0",
            "set_tid_address(0x*) = 1",
            r#"open("/data/in.txt", O_RDONLY|O_LARGEFILE) = 3"#,
            r#"read(3, "hello\nworld\n", 64) = 12"#,
            r#"write(1, "hello\nworld\n", 12) = 12"#,
            "close(3) = 0",
            r#"open("/data/missing", O_RDONLY|O_LARGEFILE) = -1 ENOENT (No such file or directory)"#,
            "syscall_0x1c3(0x1, 0x2, 0x3, 0x0, 0x0, *) = -1 ENOSYS (Function not implemented)",
            r#"write(1, "a\tb\\\"\1\n", 7) = 7"#,
            // musl's stdio asks whether stdout is a terminal, then writes
            // its buffer and the rest of the line in one call.
            "ioctl(1, TIOCGWINSZ, 0x*) = -1 ENOTTY (Inappropriate ioctl for device)",
            r#"writev(1, [{iov_base="read 12", iov_len=7}, {iov_base=" bytes\n", iov_len=7}], 2) = 14"#,
            "exit_group(3) = ?",
            "+++ exited with 3 +++",
        ],
    );
    assert!(trace.starts_with("arch_prctl("), "{trace}");

    let out = kvmini()
        .args(["run", "--trace"])
        .arg(&program)
        .args(["--", "abort"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(134));
    let trace = text(&out.stderr);
    assert_trace_from(
        &trace,
        "rt_sigprocmask(",
        &[
            "rt_sigprocmask(SIG_BLOCK, 0x*, 0x*, 8) = 0",
            "tkill(1, SIGABRT) = 0",
            "rt_sigprocmask(SIG_SETMASK, 0x*, NULL, 8) = ?",
            "+++ killed by SIGABRT +++",
        ],
    );
}

#[test]
fn stats_count_system_calls_by_name_with_their_errors() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = data_dir();
    let program = musl("trace.c", dir.path());
    let out = kvmini()
        .args(["run", "--stats", "--dir", &grant(dir.path())])
        .arg(&program)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    let table = "\
kvmini: system calls: 12, 3 failed
      calls    errors syscall
          2           write
          2         1 open
          1           read
          1           close
          1         1 ioctl
          1           writev
          1           arch_prctl
          1           set_tid_address
          1           exit_group
          1         1 syscall_0x1c3
";
    assert!(stderr.contains(table), "{stderr}");
    // The README shows the table's first lines.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let shown = readme
        .split_once("```text\nkvmini: system calls: ")
        .expect("README.md shows the table")
        .1
        .split_once("...\n```")
        .expect("the table's example ends with ...")
        .0;
    assert!(
        table.starts_with(&format!("kvmini: system calls: {shown}")),
        "README: {shown}"
    );
    // An SDK guest makes no system calls: no table.
    let out = kvmini()
        .args(["demo", "hello", "--stats"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stderr).contains("system calls"));
}

#[test]
fn an_sdk_guests_hypercalls_are_traced_by_name_with_arguments_and_results() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = kvmini()
        .args(["demo", "files", "--trace", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let trace = text(&out.stderr);
    let lines: Vec<&str> = trace.lines().collect();
    assert_eq!(
        lines[..5],
        [
            r#"open("/notes.txt", O_RDWR|O_CREAT|O_TRUNC, 0644) = 3"#,
            r#"open("/squares.txt", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 4"#,
            r#"unlink("/batch.txt") = -1 ENOENT (No such file or directory)"#,
            r#"display("opened /notes.txt as fd 3 and /s"...)"#,
            r#"write(3, "kvmini keeps this file on the ho"..., 36) = 36"#,
        ],
        "{trace}"
    );
    assert!(trace.contains(
        "\nopen(\"/notes.txt\", O_WRONLY|O_CREAT|O_EXCL, 0644) = -1 EEXIST (File exists)\n"
    ));
    assert!(trace.contains("\nrmdir(\"/reports\") = -1 ENOTEMPTY (Directory not empty)\n"));
    assert!(trace.contains("\ngetNumExits() = 71\nbatch(0x"), "{trace}");
    assert_eq!(
        lines[lines.len() - 2..],
        ["exit(0) = ?", "+++ exited with 0 +++"]
    );
}

#[test]
fn a_trace_into_a_closed_stderr_changes_nothing() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = data_dir();
    let out = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" \"$@\" 2>&-")
        .arg(env!("CARGO_BIN_EXE_kvmini"))
        .args(["run", "--trace", "--stats", "--dir", &grant(dir.path())])
        .args([BUSYBOX, "--", "cat", "/data/in.txt"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "hello\nworld\n".to_owned())
    );
}

#[test]
fn a_trace_into_a_full_pipe_nobody_reads_still_ends_at_the_timeout() {
    if kvm_or_skip().is_none() {
        return;
    }
    // `yes` writes forever: its trace fills the pipe, and the next trace
    // line waits for a reader that never comes, until the timeout.
    let mut child = kvmini()
        .args(["run", "--trace", "--timeout", "2s", BUSYBOX, "--", "yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let unread = child.stderr.take();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("kvmini still runs two minutes after a 2 s timeout");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(124));
    // The pipe was full: the trace had filled it.
    let fd = std::os::fd::AsRawFd::as_raw_fd(unread.as_ref().unwrap());
    let mut pending: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to `pending`, a live local.
    let asked = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut pending) };
    // SAFETY: F_GETPIPE_SZ takes no argument and reads nothing.
    let capacity = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    // A line is shorter than PIPE_BUF and so written whole or not at all:
    // the pipe had no room for the next one.
    assert_eq!(asked, 0);
    assert!(
        pending > capacity - 4096 && pending <= capacity,
        "{pending} of {capacity} bytes"
    );
    drop(unread);
}

#[test]
fn a_call_that_waits_shows_before_it_waits_and_its_result_after() {
    if kvm_or_skip().is_none() {
        return;
    }
    let out = kvmini()
        .args([
            "run",
            "--trace",
            "--timeout",
            "1s",
            BUSYBOX,
            "--",
            "sleep",
            "600",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(124));
    assert_trace_from(
        &text(&out.stderr),
        "clock_nanosleep(",
        &[
            "clock_nanosleep(CLOCK_REALTIME, 0, {tv_sec=600, tv_nsec=0}, 0x*) <unfinished ...>",
            "<... clock_nanosleep resumed> = -1 EINTR (Interrupted system call)",
            "+++ stopped at its time limit +++",
            "kvmini: guest timed out after 1s (16 exits); stopped at rip 0x*",
        ],
    );
}
