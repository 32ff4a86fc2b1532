//! kvmini as a library: what an embedding program gives a guest (stdin,
//! arguments, host functions, directories) and gets back (stdout and
//! stderr, results), many sandboxes at once, and the ways a run ends early.
//!
//! Most guests here are `tests/guests/embedding.c`, built with the C SDK;
//! its first argument picks what it does. The built-in `kvstore` guest
//! covers the Rust SDK's `host` and `env` modules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{kvm_or_skip, text};
use kvmini::host::{Errno, HostCall};
use kvmini::kvm::Kvm;
use kvmini::output::{Capture, Input, Output};
use kvmini::sandbox::{BuildError, Ending, Outcome, Sandbox, SandboxBuilder};
use kvmini::stop::StopReason;

/// `tests/guests/embedding.c`, built once per test run.
fn guest_path() -> PathBuf {
    common::built_guest("kvmini/tests/guests/embedding.c", &[])
}

fn guest() -> Vec<u8> {
    std::fs::read(guest_path()).expect("the built guest is readable")
}

/// A builder for the C guest doing `part`, with stdout, stderr and
/// kvmini's warnings captured and stdin empty.
struct Captured {
    stdout: Capture,
    stderr: Capture,
    warnings: Capture,
}

impl Captured {
    fn new() -> Self {
        Captured {
            stdout: Capture::new(),
            stderr: Capture::new(),
            warnings: Capture::new(),
        }
    }

    fn attach(&self, builder: SandboxBuilder) -> SandboxBuilder {
        builder
            .stdin(Input::Null)
            .stdout(Output::Capture(self.stdout.clone()))
            .stderr(Output::Capture(self.stderr.clone()))
            .warnings(Output::Capture(self.warnings.clone()))
    }

    fn stdout(&self) -> String {
        text(&self.stdout.contents())
    }
}

fn part(name: &str) -> SandboxBuilder {
    Sandbox::builder().elf(guest()).args(["embedding", name])
}

fn run(kvm: &Kvm, builder: SandboxBuilder) -> Outcome {
    builder
        .build(kvm)
        .expect("the sandbox is built")
        .run()
        .expect("the run loop does not fail")
}

fn assert_send<T: Send>() {}

#[test]
fn sandbox_and_its_builder_are_send() {
    assert_send::<Sandbox>();
    assert_send::<SandboxBuilder>();
}

/// The big writes of the `stdio` part: byte i is (i * mul + add) & 0xff.
fn pattern(len: usize, mul: usize, add: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * mul + add) & 0xff).to_le_bytes()[0])
        .collect()
}

#[test]
fn stdout_and_stderr_are_captured_exactly_and_apart() {
    let _ = guest_path();
    let Some(kvm) = kvm_or_skip() else { return };
    let io = Captured::new();
    let outcome = run(&kvm, io.attach(part("stdio")));
    assert_eq!(outcome.ending, Ending::Exited(0));

    let mut stdout = b"out 1\nout 2 (display)\n!\n7\n".to_vec();
    stdout.extend(pattern(200_000, 7, 3));
    stdout.extend(b"out end\n");
    let mut stderr = b"err 1\nerr 2\n".to_vec();
    stderr.extend(pattern(100_000, 13, 5));
    stderr.extend(b"err end\n");
    // Compared as lengths first, so that a failure does not print 300 KB.
    assert_eq!(io.stdout.contents().len(), stdout.len());
    assert!(io.stdout.contents() == stdout, "stdout differs");
    assert_eq!(io.stderr.contents().len(), stderr.len());
    assert!(io.stderr.contents() == stderr, "stderr differs");
    assert_eq!(text(&io.warnings.contents()), "");
}

/// A reader that hands out its bytes a few hundred at a time, in
/// varying amounts, as a pipe might.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.step = (self.step * 31 + 7) % 1009;
        let n = (self.step % 700 + 1)
            .min(buf.len())
            .min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn stdin_from_a_reader_reaches_the_guest_exactly() {
    let _ = guest_path();
    let Some(kvm) = kvm_or_skip() else { return };
    // Every byte value, NUL included, in no simple order.
    let data: Vec<u8> = (0u32..300_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    let io = Captured::new();
    let reader = Trickle {
        data: data.clone(),
        at: 0,
        step: 1,
    };
    let outcome = run(
        &kvm,
        io.attach(part("stdin"))
            .stdin(Input::Reader(Box::new(reader))),
    );
    assert_eq!(outcome.ending, Ending::Exited(0));
    assert_eq!(io.stdout.contents().len(), data.len());
    assert!(io.stdout.contents() == data, "stdin came back changed");
    assert_eq!(text(&io.stderr.contents()), "stdin: 300000 bytes\n");
}

/// What the C guest prints for `args`: the size they need, a one-byte
/// short buffer left alone, then each argument with its length.
fn args_report(args: &[&str]) -> String {
    let need: usize = args.iter().map(|a| a.len() + 1).sum();
    let mut want = format!("need: {need}\n");
    if need > 0 {
        want += &format!("one byte short: {need}\nbuffer untouched\n");
    }
    want += &format!("full buffer: {need}\nargc: {}\n", args.len());
    for arg in args {
        want += &format!("[{}] {arg}\n", arg.len());
    }
    want
}

#[test]
fn arguments_round_trip_empty_and_long_ones_included() {
    let _ = guest_path();
    let Some(kvm) = kvm_or_skip() else { return };
    let long = "0123456789".repeat(500);
    let args = ["embedding", "", "two words", &long, "ünïcödé", ""];
    let io = Captured::new();
    let outcome = run(&kvm, io.attach(Sandbox::builder().elf(guest())).args(args));
    assert_eq!(outcome.ending, Ending::Exited(0));
    assert_eq!(io.stdout(), args_report(&args));
}

#[test]
fn a_sandbox_has_no_arguments_unless_given() {
    let _ = guest_path();
    let Some(kvm) = kvm_or_skip() else { return };
    let io = Captured::new();
    let outcome = run(&kvm, io.attach(Sandbox::builder().elf(guest())));
    assert_eq!(outcome.ending, Ending::Exited(0));
    assert_eq!(io.stdout(), args_report(&[]));
}

/// One call as a host function saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    id: u32,
    args: [u64; 6],
    bytes: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn record(log: &Log, id: u32, call: &HostCall<'_>, bytes: Vec<u8>) {
    log.lock().expect("log lock").push(Seen {
        id,
        args: *call.args(),
        bytes,
    });
}

/// Parses `name at 0x...` out of the guest's first line.
fn address_after(line: &str, name: &str) -> u64 {
    let hex = line
        .split(&format!("{name} at 0x"))
        .nth(1)
        .and_then(|rest| rest.get(..16))
        .unwrap_or_else(|| panic!("no {name} address in {line:?}"));
    u64::from_str_radix(hex, 16).expect("a hex address")
}

#[test]
fn host_functions_get_exactly_what_the_guest_sent_and_it_gets_their_results() {
    let _ = guest_path();
    let Some(kvm) = kvm_or_skip() else { return };
    let log: Log = Arc::default();
    let io = Captured::new();
    let (l10, l11, l0, lmax) = (log.clone(), log.clone(), log.clone(), log.clone());
    let builder = io
        .attach(part("host"))
        .host_function(10, move |call| {
            let bytes = call.read_vec(call.arg(0), call.arg(1))?;
            record(&l10, 10, call, bytes);
            call.write(call.arg(2), b"written by the host\0\x01\xfe!")?;
            Ok((1 << 40) + 7)
        })
        .host_function(11, move |call| {
            record(&l11, 11, call, Vec::new());
            Ok(call.args().iter().sum())
        })
        .host_function(0, move |call| {
            record(&l0, 0, call, Vec::new());
            Ok(i64::MAX.unsigned_abs())
        })
        .host_function(u32::MAX, move |call| {
            record(&lmax, u32::MAX, call, Vec::new());
            Ok(0)
        })
        .host_function(12, |_| Err(Errno::EINVAL))
        .host_function(13, |_| Ok(u64::MAX));
    let outcome = run(&kvm, builder);
    assert_eq!(outcome.ending, Ending::Exited(0));
    assert_eq!(text(&io.warnings.contents()), "");

    // The reply holds bytes that are not UTF-8: compare bytes.
    let raw = io.stdout.contents();
    let shown = String::from_utf8_lossy(&raw).into_owned();
    let first = shown.lines().next().unwrap_or_default();
    let message = address_after(first, "message");
    let reply = address_after(first, "reply");
    let mut want = format!(
        "message at {message:#018x}, reply at {reply:#018x}\ncall 10: {}\nreply: ",
        (1u64 << 40) + 7
    )
    .into_bytes();
    want.extend(b"written by the host\0\x01\xfe!.........\n");
    want.extend(
        format!(
            "call 11 (one argument): 5\n\
             call 11 (six arguments): 21\n\
             call 0: {}\n\
             call 0xffffffff: 0\n\
             call 12 (Err(EINVAL)): -22\n\
             call 13 (u64::MAX): -75\n\
             call 99 (unregistered): -38\n",
            i64::MAX
        )
        .bytes(),
    );
    assert_eq!(shown, String::from_utf8_lossy(&want));
    assert_eq!(raw, want);

    let message_bytes = b"bytes for the host\0\x01\x7f\x80\xfe\xff end\0".to_vec();
    let seen = log.lock().expect("log lock").clone();
    assert_eq!(
        seen,
        [
            Seen {
                id: 10,
                args: [
                    message,
                    message_bytes.len() as u64,
                    reply,
                    32,
                    0x0123_4567_89ab_cdef,
                    0xfedc_ba98_7654_3210
                ],
                bytes: message_bytes,
            },
            Seen {
                id: 11,
                args: [5, 0, 0, 0, 0, 0],
                bytes: Vec::new()
            },
            Seen {
                id: 11,
                args: [1, 2, 3, 4, 5, 6],
                bytes: Vec::new()
            },
            Seen {
                id: 0,
                args: [0; 6],
                bytes: Vec::new()
            },
            Seen {
                id: u32::MAX,
                args: [42, 0, 0, 0, 0, 0],
                bytes: Vec::new()
            },
        ]
    );
}

#[test]
fn bad_pointers_into_a_host_function_give_the_guest_efault() {
    let _ = guest_path();
    let Some(kvm) = kvm_or_skip() else { return };
    let io = Captured::new();
    let builder = io
        .attach(part("efault"))
        .host_function(20, |call| {
            Ok(call.read_vec(call.arg(0), call.arg(1))?.len() as u64)
        })
        .host_function(21, |call| {
            let len = usize::try_from(call.arg(1)).map_err(|_| Errno::EINVAL)?;
            call.write(call.arg(0), &vec![b'x'; len])?;
            Ok(call.arg(1))
        });
    let outcome = run(&kvm, builder);
    assert_eq!(outcome.ending, Ending::Exited(0));
    assert_eq!(
        io.stdout(),
        "read null: -14\n\
         read last byte of the null page: -14\n\
         read 4 GiB: -14\n\
         read non-canonical: -14\n\
         read kvmini's area: -14\n\
         read running off memory: -14\n\
         read wrapping around: -14\n\
         write null: -14\n\
         write kvmini's area: -14\n\
         read 16 good bytes: 16\n\
         write 16 good bytes: 16\n\
         buffer: xxxxxxxxxxxxxxxx\n"
    );
    assert_eq!(text(&io.warnings.contents()), "");
}

#[test]
fn ids_without_a_function_give_enosys() {
    let _ = guest_path();
    let Some(kvm) = kvm_or_skip() else { return };
    let want = "call 0: -38\ncall 1: -38\ncall 0xffffffff: -38\n";
    // With no host functions at all, and with some under other ids.
    let io = Captured::new();
    assert_eq!(
        run(&kvm, io.attach(part("enosys"))).ending,
        Ending::Exited(0)
    );
    assert_eq!(io.stdout(), want);
    let io = Captured::new();
    let builder = io
        .attach(part("enosys"))
        .host_function(2, |_| Ok(1))
        .host_function(u32::MAX - 1, |_| Ok(1));
    assert_eq!(run(&kvm, builder).ending, Ending::Exited(0));
    assert_eq!(io.stdout(), want);
}

type Store = Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>;

/// Registers the `kvstore` guest's host functions over `store`.
fn with_store(builder: SandboxBuilder, store: &Store) -> SandboxBuilder {
    let (set, get, count) = (store.clone(), store.clone(), store.clone());
    builder
        .host_function(1, move |call| {
            let key = call.read_vec(call.arg(0), call.arg(1))?;
            let value = call.read_vec(call.arg(2), call.arg(3))?;
            set.lock().expect("store lock").insert(key, value);
            Ok(0)
        })
        .host_function(2, move |call| {
            let key = call.read_vec(call.arg(0), call.arg(1))?;
            let store = get.lock().expect("store lock");
            let value = store.get(&key).ok_or(Errno::ENOENT)?;
            let room = usize::try_from(call.arg(3)).unwrap_or(usize::MAX);
            call.write(call.arg(2), &value[..value.len().min(room)])?;
            Ok(value.len() as u64)
        })
        .host_function(3, move |_| {
            Ok(count.lock().expect("store lock").len() as u64)
        })
}

const KVSTORE_OUTPUT: &str = "\
set name = \"kvmini\"
set kind = \"hypervisor\"
set language = \"Rust\"
count() = 3
get name = \"kvmini\" (6 bytes)
get kind = \"hypervisor\" (10 bytes)
get language = \"Rust\" (4 bytes)
get kind into 4 bytes = \"hype\" (of 10)
get colour = -2 (ENOENT)
";

fn entries(store: &Store) -> Vec<(String, String)> {
    store
        .lock()
        .expect("store lock")
        .iter()
        .map(|(k, v)| (text(k), text(v)))
        .collect()
}

#[test]
fn kvstore_keeps_its_entries_in_the_host() {
    let Some(kvm) = kvm_or_skip() else { return };
    let store = Store::default();
    let out = Capture::new();
    let builder = Sandbox::builder()
        .elf(kvmini::guests::KVSTORE.elf)
        .stdout(Output::Capture(out.clone()));
    let outcome = run(&kvm, with_store(builder, &store));
    assert_eq!(outcome.ending, Ending::Exited(0));
    assert_eq!(text(&out.contents()), KVSTORE_OUTPUT);
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        entries(&store),
        [
            s("kind", "hypervisor"),
            s("language", "Rust"),
            s("name", "kvmini")
        ]
    );
}

#[test]
fn kvstore_reads_its_arguments_with_the_rust_sdk() {
    let Some(kvm) = kvm_or_skip() else { return };
    let store = Store::default();
    let out = Capture::new();
    let builder = Sandbox::builder()
        .elf(kvmini::guests::KVSTORE.elf)
        .args(["kvstore", "owner=host", "", "plain", "empty="])
        .stdout(Output::Capture(out.clone()));
    assert_eq!(
        run(&kvm, with_store(builder, &store)).ending,
        Ending::Exited(0)
    );
    let want = KVSTORE_OUTPUT.replace(
        "count() = 3\n",
        "set owner = \"host\" (from argv)\n\
         argument \"\" ignored: not key=value\n\
         argument \"plain\" ignored: not key=value\n\
         set empty = \"\" (from argv)\n\
         count() = 5\n",
    );
    assert_eq!(text(&out.contents()), want);
    let store = entries(&store);
    assert!(
        store.contains(&("owner".into(), "host".into())),
        "{store:?}"
    );
    assert!(
        store.contains(&("empty".into(), String::new())),
        "{store:?}"
    );

    // Arguments larger than its 1 KiB buffer: ERANGE, and args_len().
    let out = Capture::new();
    let long = "k=".to_owned() + &"v".repeat(2000);
    let builder = Sandbox::builder()
        .elf(kvmini::guests::KVSTORE.elf)
        .args(["kvstore", &long])
        .stdout(Output::Capture(out.clone()));
    assert_eq!(
        run(&kvm, with_store(builder, &Store::default())).ending,
        Ending::Exited(0)
    );
    let want = KVSTORE_OUTPUT.replace(
        "count() = 3\n",
        "arguments ignored: they need 2011 bytes, more than 1024\ncount() = 3\n",
    );
    assert_eq!(text(&out.contents()), want);
}

#[test]
fn kvstore_without_host_functions_gets_enosys_and_exits_1() {
    let Some(kvm) = kvm_or_skip() else { return };
    let out = Capture::new();
    let outcome = run(
        &kvm,
        Sandbox::builder()
            .elf(kvmini::guests::KVSTORE.elf)
            .stdout(Output::Capture(out.clone())),
    );
    assert_eq!(outcome.ending, Ending::Exited(1));
    assert_eq!(
        text(&out.contents()),
        "kvstore failed: -38 (ENOSYS)\n\
         it needs host functions 1..3: see kvmini/examples/host_function.rs\n"
    );
}

/// What a worker's host function saw: the id argument, and the bytes.
type Calls = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

#[test]
fn sixty_four_sandboxes_at_once_keep_to_themselves() {
    const N: usize = 64;
    let elf = guest();
    let Some(kvm) = kvm_or_skip() else { return };
    let dirs: Vec<tempfile::TempDir> = (0..N)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let results: Vec<_> = std::thread::scope(|scope| {
        let threads: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let (kvm, elf) = (&kvm, &elf);
                scope.spawn(move || {
                    let io = Captured::new();
                    let calls: Calls = Arc::default();
                    let log = calls.clone();
                    let input = format!("input of sandbox {i}\n");
                    let builder = io
                        .attach(Sandbox::builder().elf(elf.clone()).memory(8 << 20).args([
                            "embedding",
                            "worker",
                            &i.to_string(),
                        ]))
                        .stdin(Input::Reader(Box::new(std::io::Cursor::new(input))))
                        .dir(dir.path(), "/", false)
                        .host_function(1, move |call| {
                            let bytes = call.read_vec(call.arg(1), call.arg(2))?;
                            let n = bytes.len() as u64;
                            log.lock().expect("log lock").push((call.arg(0), bytes));
                            Ok(call.arg(0) * 1000 + n)
                        });
                    let outcome = run(kvm, builder);
                    let calls = calls.lock().expect("log lock").clone();
                    (outcome.ending, io, calls)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("no sandbox thread panics"))
            .collect()
    });
    for (i, ((ending, io, calls), dir)) in results.into_iter().zip(&dirs).enumerate() {
        let input = format!("input of sandbox {i}\n");
        let n = input.len();
        assert_eq!(ending, Ending::Exited(0), "sandbox {i}");
        assert_eq!(
            io.stdout(),
            format!(
                "worker {i}: {n} bytes of stdin, host returned {}\n",
                i * 1000 + n
            )
        );
        assert_eq!(text(&io.stderr.contents()), format!("{i}\n"));
        assert_eq!(text(&io.warnings.contents()), "");
        assert_eq!(calls, [(i as u64, input.clone().into_bytes())]);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list the directory")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["out.txt"], "sandbox {i}");
        let written = std::fs::read_to_string(dir.path().join("out.txt")).expect("out.txt");
        assert_eq!(written, input);
    }
}

#[test]
fn the_builder_says_what_is_missing() {
    let Some(kvm) = kvm_or_skip() else { return };
    assert!(matches!(
        Sandbox::builder().build(&kvm),
        Err(BuildError::NoImage)
    ));
    let missing = std::env::temp_dir().join("kvmini-no-such-guest.elf");
    match Sandbox::builder().elf_file(&missing).build(&kvm) {
        Err(BuildError::ReadImage { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected ReadImage, got {other:?}"),
    }
}

#[test]
fn a_timeout_ends_a_looping_guest() {
    let _ = guest_path();
    let Some(kvm) = kvm_or_skip() else { return };
    let io = Captured::new();
    let limit = Duration::from_millis(100);
    let started = Instant::now();
    let outcome = run(&kvm, io.attach(part("loop")).timeout(limit));
    assert_eq!(outcome.ending, Ending::TimedOut(limit));
    assert_eq!(outcome.ending.status(), 124);
    assert!(started.elapsed() >= limit);
    assert_eq!(io.stdout(), "looping\n");
}

#[test]
fn a_stop_handle_stops_a_looping_guest_from_another_thread() {
    let _ = guest_path();
    let Some(kvm) = kvm_or_skip() else { return };
    let io = Captured::new();
    let mut sandbox = io
        .attach(part("loop"))
        .build(&kvm)
        .expect("the sandbox is built");
    let handle = sandbox.stop_handle();
    let outcome = std::thread::scope(|scope| {
        let runner = scope.spawn(|| sandbox.run());
        // Stop it only once it is running guest code.
        let started = Instant::now();
        while io.stdout.contents() != b"looping\n" {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the guest never started"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        handle.stop(StopReason::Signal(libc::SIGTERM));
        runner.join().expect("the runner does not panic")
    })
    .expect("the run loop does not fail");
    assert_eq!(outcome.ending, Ending::Stopped(libc::SIGTERM));
    assert_eq!(outcome.ending.status(), 128 + 15);
}
