//! `kvmini run --gdb`: a real gdb in batch mode debugs C SDK guests built
//! with `-g`, a Rust SDK guest and a Linux program (breakpoints, globals,
//! stepping out, memory writes, SSE and x87 registers, a crash as a
//! signal, the exit status); a hand-written client checks what gdb does
//! not easily show: the interrupt, `kill`, an unmapped read, and garbage,
//! bad checksums, an overlong packet and a vanished client, after which the
//! guest runs on to its end. The socket's mode, its removal, and the stops
//! that end the wait for gdb are checked too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::c_build::cc_guest;
use common::{kvm_or_skip, kvmini};

/// A bound on a hang only: far above what any step here takes.
const HANG: Duration = Duration::from_secs(120);

/// Whether gdb can run here; without it the test fails where KVM is
/// required (CI installs gdb) and is skipped, saying so, elsewhere.
fn gdb_or_skip() -> bool {
    if Command::new("gdb").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("KVMINI_REQUIRE_KVM").is_none_or(|v| v != "1"),
        "gdb is not installed (apt-get install gdb); .ci/run installs it"
    );
    eprintln!("skipping: gdb is not installed");
    false
}

/// Builds `tests/gdb/NAME.c` with the SDK's flags, `-O0 -g`, into `dir`.
fn build(name: &str, dir: &Path) -> PathBuf {
    let elf = dir.join(format!("{name}.elf"));
    cc_guest(
        &["-O0", "-g"],
        &elf,
        &format!("kvmini-cli/tests/gdb/{name}.c"),
    );
    elf
}

/// kvmini waiting for gdb on `socket`.
struct Waiting {
    child: Child,
}

impl Waiting {
    fn start(socket: &Path, elf: &Path, extra: &[&str]) -> Self {
        let child = kvmini()
            .arg("run")
            .arg("--gdb")
            .arg(socket)
            .args(extra)
            .arg(elf)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < HANG,
                "kvmini never made {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Waiting { child }
    }

    /// Waits for kvmini to end: its status, stdout and stderr.
    fn finish(mut self) -> (i32, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > HANG {
                let _ = self.child.kill();
                panic!("kvmini still running after {HANG:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out).unwrap();
        }
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut err).unwrap();
        }
        (status.code().unwrap_or(-1), out, err)
    }
}

/// Runs gdb in batch mode on `elf` against `socket` with `commands`, and
/// returns what it printed (stdout, then stderr).
fn gdb(elf: &Path, socket: &Path, commands: &[&str]) -> String {
    let mut cmd = Command::new("gdb");
    cmd.args(["-batch", "-nx", "-ex", "set confirm off", "-ex"])
        .arg(format!("target remote {}", socket.display()));
    for c in commands {
        cmd.arg("-ex").arg(c);
    }
    let mut child = cmd
        .arg(elf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > HANG {
            let _ = child.kill();
            panic!("gdb still running after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The lines of `text` that start with one of `prefixes`, in order.
fn lines_starting(text: &str, prefixes: &[&str]) -> Vec<String> {
    text.lines()
        .filter(|line| prefixes.iter().any(|p| line.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

fn setup(name: &str) -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    kvm_or_skip()?;
    if !gdb_or_skip() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let elf = build(name, dir.path());
    let socket = dir.path().join("gdb.sock");
    Some((dir, elf, socket))
}

#[test]
fn gdb_breaks_prints_a_global_steps_out_and_sees_the_exit_status() {
    let Some((_dir, elf, socket)) = setup("counter") else {
        return;
    };
    let kvmini = Waiting::start(&socket, &elf, &[]);
    // The socket is the user's alone while kvmini waits.
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let out = gdb(
        &elf,
        &socket,
        &[
            "break bump",
            "continue",
            "print counter",
            "print by",
            "finish",
            "print counter",
            "continue",
            "print counter",
            "delete",
            "continue",
        ],
    );
    assert_eq!(
        lines_starting(&out, &["Breakpoint 1,", "$", "[Inferior"]),
        [
            "Breakpoint 1, bump (by=10) at kvmini-cli/tests/gdb/counter.c:9",
            "$1 = 5",
            "$2 = 10",
            "$3 = 15",
            "Breakpoint 1, bump (by=100) at kvmini-cli/tests/gdb/counter.c:9",
            "$4 = 15",
            "[Inferior 1 (process 1) exited with code 0163]",
        ],
        "gdb printed:\n{out}"
    );
    let (status, stdout, stderr) = kvmini.finish();
    assert_eq!((status, stdout.as_str()), (115, ""), "stderr: {stderr}");
    assert_eq!(
        stderr,
        format!(
            "kvmini: waiting for gdb on {0} (gdb GUEST -ex 'target remote {0}')\n",
            socket.display()
        )
    );
    assert!(!socket.exists(), "the socket is removed at the end");
}

#[test]
fn gdb_steps_a_line_and_writes_a_global() {
    let Some((_dir, elf, socket)) = setup("counter") else {
        return;
    };
    let kvmini = Waiting::start(&socket, &elf, &[]);
    let out = gdb(
        &elf,
        &socket,
        &[
            "break bump",
            "continue",
            "next",
            "print counter",
            "set var counter = 1000",
            "delete",
            "continue",
        ],
    );
    // 1000 + 100, as the exit status takes it: 1100 & 0xff = 76 = 0114.
    assert_eq!(
        lines_starting(&out, &["10\t", "$", "[Inferior"]),
        [
            "10\t}",
            "$1 = 15",
            "[Inferior 1 (process 1) exited with code 0114]"
        ],
        "gdb printed:\n{out}"
    );
    let (status, _, stderr) = kvmini.finish();
    assert_eq!(status, 76, "stderr: {stderr}");
}

#[test]
fn gdb_reads_and_writes_sse_registers() {
    let Some((_dir, elf, socket)) = setup("sse") else {
        return;
    };
    let kvmini = Waiting::start(&socket, &elf, &[]);
    let out = gdb(
        &elf,
        &socket,
        &[
            "break stop_here",
            "continue",
            "print/x $xmm0.v2_int64",
            "print/x $mxcsr",
            "print/x $fctrl",
            "set $xmm1.v2_int64[0] = 0x2a00000007",
            "print/x $xmm1.v2_int64",
            "delete",
            "continue",
        ],
    );
    assert_eq!(
        lines_starting(&out, &["$", "[Inferior"]),
        [
            "$1 = {0x1122334455667788, 0x0}",
            "$2 = 0x1f80",
            "$3 = 0x37f",
            "$4 = {0x2a00000007, 0x0}",
            "[Inferior 1 (process 1) exited with code 052]",
        ],
        "gdb printed:\n{out}"
    );
    // The guest read back what gdb wrote: 0x2a from the high half.
    let (status, _, stderr) = kvmini.finish();
    assert_eq!(status, 42, "stderr: {stderr}");
}

#[test]
fn gdb_sees_a_crash_as_sigsegv_where_it_happened() {
    let Some((_dir, elf, socket)) = setup("crash") else {
        return;
    };
    let kvmini = Waiting::start(&socket, &elf, &[]);
    let out = gdb(
        &elf,
        &socket,
        &["continue", "print depth", "print where", "continue"],
    );
    assert_eq!(
        lines_starting(&out, &["Program", "$"]),
        [
            "Program received signal SIGSEGV, Segmentation fault.",
            "$1 = 2",
            "$2 = (volatile int *) 0x0",
            "Program terminated with signal SIGSEGV, Segmentation fault.",
        ],
        "gdb printed:\n{out}"
    );
    assert!(
        out.contains("fault (where=0x0) at kvmini-cli/tests/gdb/crash.c:10"),
        "gdb printed:\n{out}"
    );
    let (status, _, stderr) = kvmini.finish();
    assert_eq!(status, 126, "stderr: {stderr}");
    assert!(stderr.contains("page fault"), "stderr: {stderr}");
}

#[test]
fn gdb_debugs_a_linux_program() {
    let Some((dir, _, socket)) = setup("counter") else {
        return;
    };
    let elf = dir.path().join("linux_counter");
    let output = Command::new("musl-gcc")
        .current_dir(common::c_build::repo_root())
        .args(["-static", "-O0", "-g", "-o"])
        .arg(&elf)
        .arg("kvmini-cli/tests/gdb/linux_counter.c")
        .output()
        .expect("musl-gcc runs (apt-get install musl-tools; .ci/run installs it)");
    assert!(output.status.success(), "{output:?}");
    let kvmini = Waiting::start(&socket, &elf, &[]);
    let out = gdb(
        &elf,
        &socket,
        &[
            "break bump",
            "continue",
            "print counter",
            "finish",
            "print counter",
            "next",
            "delete",
            "continue",
        ],
    );
    assert_eq!(
        lines_starting(&out, &["Breakpoint 1,", "$", "16\t", "[Inferior"]),
        [
            "Breakpoint 1, bump (by=10) at kvmini-cli/tests/gdb/linux_counter.c:9",
            "$1 = 5",
            "$2 = 15",
            "16\t    bump(100);",
            "[Inferior 1 (process 1) exited with code 0163]",
        ],
        "gdb printed:\n{out}"
    );
    let (status, stdout, stderr) = kvmini.finish();
    assert_eq!(
        (status, stdout.as_str()),
        (115, "counter 15\n"),
        "stderr: {stderr}"
    );
}

/// Builds the Rust SDK guest `tests/gdb/rust_counter` in the dev profile
/// (debug info, no optimisation) with frame pointers, which gdb needs to
/// find a caller (the guest's linker script keeps no unwind tables), in a
/// target directory of its own, and returns its path.
fn rust_counter_guest() -> PathBuf {
    let manifest =
        common::c_build::repo_root().join("kvmini-cli/tests/gdb/rust_counter/Cargo.toml");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gdb-guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--offline",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Crelocation-model=static\x1f-Cforce-frame-pointers=yes",
        )
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_MAKEFLAGS")
        .output()
        .expect("cargo starts");
    assert!(
        out.status.success(),
        "building rust_counter failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir.join("x86_64-unknown-linux-gnu/debug/rust_counter")
}

#[test]
fn gdb_debugs_a_rust_guest() {
    let Some((_dir, _, socket)) = setup("counter") else {
        return;
    };
    let elf = rust_counter_guest();
    let kvmini = Waiting::start(&socket, &elf, &[]);
    let out = gdb(
        &elf,
        &socket,
        &[
            "break rust_counter::bump",
            "continue",
            "print rust_counter::COUNTER",
            "print by",
            "finish",
            "print rust_counter::COUNTER",
            "delete",
            "continue",
        ],
    );
    assert_eq!(
        lines_starting(&out, &["Breakpoint 1,", "$", "24\t", "[Inferior"]),
        [
            "Breakpoint 1, rust_counter::bump (by=10) at src/main.rs:17",
            "$1 = 5",
            "$2 = 10",
            "24\t    bump(100);",
            "$3 = 15",
            "[Inferior 1 (process 1) exited with code 0163]",
        ],
        "gdb printed:\n{out}"
    );
    let (status, stdout, stderr) = kvmini.finish();
    assert_eq!((status, stdout.as_str()), (115, ""), "stderr: {stderr}");
}

/// A client that speaks the protocol by hand.
struct Client(UnixStream);

impl Client {
    fn connect(socket: &Path) -> Self {
        let stream = UnixStream::connect(socket).unwrap();
        stream.set_read_timeout(Some(HANG)).unwrap();
        Client(stream)
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).unwrap();
    }

    fn packet(body: &str) -> Vec<u8> {
        let sum = body.bytes().fold(0u8, u8::wrapping_add);
        format!("${body}#{sum:02x}").into_bytes()
    }

    /// Sends a packet and returns the body of the answer (acks skipped).
    fn ask(&mut self, body: &str) -> String {
        self.send_raw(&Self::packet(body));
        self.answer()
    }

    fn answer(&mut self) -> String {
        let mut byte = [0u8];
        loop {
            self.0.read_exact(&mut byte).unwrap();
            if byte[0] == b'$' {
                break;
            }
        }
        let mut body = Vec::new();
        loop {
            self.0.read_exact(&mut byte).unwrap();
            if byte[0] == b'#' {
                break;
            }
            body.push(byte[0]);
        }
        let mut sum = [0u8; 2];
        self.0.read_exact(&mut sum).unwrap();
        self.send_raw(b"+");
        String::from_utf8(body).unwrap()
    }
}

/// An answer with the protocol's run-length encoding (`X*N`: N - 29 more
/// of X) spelt out.
fn run_length_decoded(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '*' {
            let count = chars.next().unwrap() as usize - 29;
            let last = out.chars().last().unwrap();
            out.extend(std::iter::repeat_n(last, count));
        } else {
            out.push(c);
        }
    }
    out
}

/// The address of the function `name` in `elf` (binutils' `nm`, which
/// comes with the C compiler).
fn symbol(elf: &Path, name: &str) -> u64 {
    let output = Command::new("nm").arg(elf).output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let line = text
        .lines()
        .find(|line| line.ends_with(&format!(" T {name}")))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
    u64::from_str_radix(&line[..16], 16).unwrap()
}

#[test]
fn interrupt_unmapped_read_and_kill() {
    let Some((_dir, elf, socket)) = setup("spin") else {
        return;
    };
    let kvmini = Waiting::start(&socket, &elf, &[]);
    let mut client = Client::connect(&socket);
    assert_eq!(client.ask("?"), "T05thread:01;");
    // The null page is not mapped: an error answer (EFAULT).
    assert_eq!(client.ask("m0,8"), "E0e");
    client.send_raw(&Client::packet("c"));
    std::thread::sleep(Duration::from_millis(200));
    client.send_raw(&[0x03]);
    assert_eq!(client.answer(), "S02");
    // Stopped in the loop: RIP is in the guest's code (0x100000 up).
    let regs = run_length_decoded(&client.ask("g"));
    let rip = u64::from_str_radix(&regs[16 * 16..16 * 16 + 16], 16)
        .unwrap()
        .swap_bytes();
    assert!((0x10_0000..0x20_0000).contains(&rip), "rip {rip:#x}");
    client.send_raw(&Client::packet("k"));
    let (status, _, stderr) = kvmini.finish();
    assert_eq!(status, 128 + 9, "stderr: {stderr}");
}

#[test]
fn garbage_and_a_vanished_client_let_the_guest_run_to_its_end() {
    let Some((_dir, elf, socket)) = setup("counter") else {
        return;
    };
    let cases: [(&str, Vec<u8>); 4] = [
        ("garbage", b"\x00\xffhello$$##\x01".to_vec()),
        ("bad checksum", b"$g#00".to_vec()),
        ("overlong", {
            let mut p = b"$M100000,10000:".to_vec();
            p.extend(std::iter::repeat_n(b'0', 64 * 1024));
            p.extend_from_slice(b"#00");
            p
        }),
        ("nothing", Vec::new()),
    ];
    let bump = symbol(&elf, "bump");
    for (what, bytes) in cases {
        let kvmini = Waiting::start(&socket, &elf, &[]);
        let mut client = Client::connect(&socket);
        // A breakpoint in code still to run (an `int3` left behind would
        // crash the guest), then the client misbehaves and goes.
        assert_eq!(client.ask(&format!("Z0,{bump:x},1")), "OK");
        let _ = client.0.write_all(&bytes);
        drop(client);
        let (status, _, stderr) = kvmini.finish();
        assert_eq!(status, 115, "{what}: stderr: {stderr}");
        assert!(
            stderr.contains("the guest ran on without a debugger"),
            "{what}: stderr: {stderr}"
        );
        assert!(!socket.exists(), "{what}: the socket is removed");
    }
}

#[test]
fn an_existing_file_at_the_socket_path_is_refused() {
    let Some((dir, elf, _)) = setup("counter") else {
        return;
    };
    let path = dir.path().join("not-a-socket");
    std::fs::write(&path, "keep me").unwrap();
    let output = kvmini()
        .arg("run")
        .arg("--gdb")
        .arg(&path)
        .arg(&elf)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "kvmini: {} exists and is not a socket; kvmini will not replace it\n",
            path.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

#[test]
fn the_timeout_counts_guest_time_and_ends_the_guest_as_sigalrm() {
    let Some((_dir, elf, socket)) = setup("spin") else {
        return;
    };
    let kvmini = Waiting::start(&socket, &elf, &["--timeout", "1s"]);
    // Waiting stopped in gdb does not count: a second and a half here.
    let out = gdb(
        &elf,
        &socket,
        &["shell sleep 1.5", "print spins", "continue"],
    );
    assert_eq!(
        lines_starting(&out, &["$", "Program"]),
        [
            "$1 = 0",
            "Program terminated with signal SIGALRM, Alarm clock."
        ],
        "gdb printed:\n{out}"
    );
    let (status, _, stderr) = kvmini.finish();
    assert_eq!(status, 124, "stderr: {stderr}");
    assert!(stderr.contains("timed out after 1s"), "stderr: {stderr}");
}

#[test]
fn a_watchpoint_is_refused_as_this_host_cannot_honour_one() {
    let Some((_dir, elf, socket)) = setup("counter") else {
        return;
    };
    let kvmini = Waiting::start(&socket, &elf, &[]);
    let out = gdb(&elf, &socket, &["watch counter", "continue"]);
    assert!(
        out.contains("Could not insert hardware watchpoint 1."),
        "gdb printed:\n{out}"
    );
    // gdb gave up and detached: the guest ran on to its end.
    let (status, _, stderr) = kvmini.finish();
    assert_eq!(status, 115, "stderr: {stderr}");
    assert!(
        stderr.ends_with("kvmini: gdb detached; the guest ran on without a debugger\n"),
        "stderr: {stderr}"
    );
}

#[test]
fn sigterm_ends_the_wait_for_gdb() {
    let Some((_dir, elf, socket)) = setup("counter") else {
        return;
    };
    let kvmini = Waiting::start(&socket, &elf, &[]);
    let pid = i32::try_from(kvmini.child.id()).unwrap();
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let (status, _, stderr) = kvmini.finish();
    assert_eq!(status, 128 + libc::SIGTERM, "stderr: {stderr}");
    assert!(!socket.exists());
}

#[test]
fn a_loopback_tcp_port_and_a_refused_public_address() {
    let Some((_dir, elf, _)) = setup("counter") else {
        return;
    };
    let mut child = kvmini()
        .args(["run", "--gdb", "127.0.0.1:0"])
        .arg(&elf)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    let address = line
        .strip_prefix("kvmini: waiting for gdb on ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("kvmini said {line:?}"))
        .to_owned();
    assert!(address.starts_with("127.0.0.1:"), "{line}");
    let out = gdb(&elf, Path::new(&address), &["continue"]);
    assert_eq!(
        lines_starting(&out, &["[Inferior"]),
        ["[Inferior 1 (process 1) exited with code 0163]"],
        "gdb printed:\n{out}"
    );
    let waiting = Waiting { child };
    let (status, _, _) = waiting.finish();
    assert_eq!(status, 115);
    let output = kvmini()
        .args(["run", "--gdb", "0.0.0.0:0"])
        .arg(&elf)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "kvmini: 0.0.0.0:0 is not a loopback address; kvmini's gdb port listens on loopback only\n"
    );
}
