//! What an embedding program meets when it gives a guest host functions
//! and takes its output: ordinary Rust in a host function (allocation,
//! `HashMap`, sleeps, threads, a sandbox of its own, deep stacks), no
//! thread-local state shared between sandboxes, a bounded `Capture`, and
//! runs that finish while the program holds the standard streams' locks.
//!
//! Cases that could abort or hang the process run in a child: this test
//! binary started again with `HOSTFN_CHILD` naming the case, which
//! `child_case` runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::cell::Cell;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{kvm_or_skip, text};
use kvmini::host::{Errno, HostCall};
use kvmini::kvm::Kvm;
use kvmini::output::{Capture, Output, Stream};
use kvmini::sandbox::{Ending, Sandbox, SandboxBuilder, SandboxError};

/// The environment variable that names the case a child runs.
const CHILD: &str = "HOSTFN_CHILD";

fn guest() -> Vec<u8> {
    let path = common::built_guest("kvmini/tests/guests/host_functions.c", &[]);
    std::fs::read(path).expect("the guest was built")
}

/// A sandbox of the test guest with `args`, its stdout and stderr
/// captured, built from `builder`.
fn sandbox(
    kvm: &Kvm,
    args: &[&str],
    builder: impl FnOnce(SandboxBuilder) -> SandboxBuilder,
) -> (Sandbox, Capture) {
    let out = Capture::new();
    let mut all = vec!["host_functions"];
    all.extend_from_slice(args);
    let sandbox = builder(
        Sandbox::builder()
            .elf(guest())
            .args(all)
            .stdout(Output::Capture(out.clone()))
            .stderr(Output::Null),
    )
    .build(kvm)
    .expect("the sandbox is built");
    (sandbox, out)
}

/// Runs `call ID` with host function `id` = `function`: the ending and
/// the guest's line.
fn call_once<F>(kvm: &Kvm, function: F) -> (Ending, String)
where
    F: FnMut(&HostCall<'_>) -> Result<u64, Errno> + Send + 'static,
{
    let (mut sandbox, out) = sandbox(kvm, &["call", "1"], |b| b.host_function(1, function));
    let ending = sandbox.run().expect("the run").ending;
    (ending, text(&out.contents()))
}

/// The case `name` run in a child process, its output in `dir`: the
/// child's exit status (None if a signal ended it) and what it wrote to
/// its descriptors 1 and 2 while the case ran. The child is killed after
/// `limit`, which fails the test.
fn in_child(name: &str, limit: Duration) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("a directory");
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "child_case", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .env("HOSTFN_OUT", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the child starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child case {name} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |file: &str| std::fs::read_to_string(dir.path().join(file)).unwrap_or_default();
    (status.code(), read("1"), read("2"))
}

/// In a child: points descriptors 1 and 2 at files in `HOSTFN_OUT` while
/// `case` runs, then puts them back.
fn with_redirected_stdio(case: impl FnOnce()) {
    let dir = PathBuf::from(std::env::var_os("HOSTFN_OUT").expect("HOSTFN_OUT"));
    let saved: Vec<i32> = [1, 2]
        .iter()
        .map(|&fd| {
            let file = std::fs::File::create(dir.join(fd.to_string())).expect("create");
            // SAFETY: plain descriptor calls on descriptors this process owns.
            unsafe {
                let saved = libc::dup(fd);
                libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), fd);
                saved
            }
        })
        .collect();
    case();
    for (fd, saved) in [1, 2].into_iter().zip(saved) {
        // SAFETY: as above.
        unsafe {
            libc::dup2(saved, fd);
            libc::close(saved);
        }
    }
}

/// The cases that run in a child (see [`in_child`]); without `HOSTFN_CHILD`
/// this test does nothing.
#[test]
fn child_case() {
    let Ok(name) = std::env::var(CHILD) else {
        return;
    };
    let kvm = Kvm::open().expect("KVM");
    match name.as_str() {
        "deep-stack-default" => deep_stack_default(&kvm),
        "deep-stack-asked" => deep_stack_asked(&kvm),
        "set-memory" => set_memory(&kvm),
        "locked-streams" => with_redirected_stdio(|| locked_streams(&kvm)),
        "measure-set" => measure_set(&kvm),
        "fork" => fork(&kvm),
        other => panic!("no child case {other}"),
    }
}

// ---------------------------------------------------------------------
// Stacks: a host function gets a main thread's stack, or what it asks for.

/// Uses about `bytes` of stack (the compiler probes every page of the
/// frame, so too little stack is a guard-page fault, never a silent
/// overwrite), and returns a value that depends on all of it.
#[inline(never)]
fn deep(bytes: usize) -> u64 {
    const FRAME: usize = 64 << 10;
    let mut frame = [0u8; FRAME];
    frame[0] = 1;
    std::hint::black_box(&mut frame);
    let below = if bytes > FRAME {
        deep(bytes - FRAME)
    } else {
        0
    };
    below + u64::from(std::hint::black_box(&frame)[0])
}

/// A host function that needs 6 MiB of stack, less than a main thread's
/// 8 MiB: it runs with the default stack.
fn deep_stack_default(kvm: &Kvm) {
    let (ending, line) = call_once(kvm, |_| Ok(deep(6 << 20)));
    assert_eq!((ending, line), (Ending::Exited(0), "result 96\n".into()));
}

/// Host functions that need 28 and 12 MiB run in sandboxes that ask for
/// 32 and 16, although the idle threads have the default stack; each
/// sandbox keeps a thread of the size it asked for across its runs.
fn deep_stack_asked(kvm: &Kvm) {
    // Idle threads with the default stack.
    let (mut plain, _) = sandbox(kvm, &["console", "3"], |b| b);
    assert_eq!(plain.run().unwrap().ending, Ending::Exited(0));
    drop(plain);
    for size in [32usize << 20, 16 << 20] {
        let need = size - (4 << 20);
        let (mut big, out) = sandbox(kvm, &["call", "1"], |b| {
            b.reusable(true)
                .host_stack_size(size)
                .host_function(1, move |_| Ok(deep(need)))
        });
        for _ in 0..2 {
            assert_eq!(big.run().unwrap().ending, Ending::Exited(0));
            big.reset().unwrap();
        }
        let frames = need / (64 << 10);
        assert_eq!(
            text(&out.contents()),
            format!("result {frames}\n").repeat(2)
        );
    }
}

#[test]
fn a_host_function_has_a_main_threads_stack() {
    if kvm_or_skip().is_none() {
        return;
    }
    let (status, _, err) = in_child("deep-stack-default", Duration::from_secs(120));
    assert_eq!(status, Some(0), "{err}");
}

#[test]
fn a_host_function_gets_the_stack_its_sandbox_asks_for() {
    if kvm_or_skip().is_none() {
        return;
    }
    let (status, _, err) = in_child("deep-stack-asked", Duration::from_secs(120));
    assert_eq!(status, Some(0), "{err}");
}

// ---------------------------------------------------------------------
// Memory: many allocating calls grow the heap, not one mapping each.

/// VmRSS of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number");
    kib * 1024
}

/// Bytes the allocator holds in mappings of their own (glibc's hblkhd).
fn mapped() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    unsafe { libc::mallinfo2() }.hblkhd
}

type Store = Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>;

/// The `set` of examples/host_function.rs.
fn set_function(store: Store) -> impl FnMut(&HostCall<'_>) -> Result<u64, Errno> + Send {
    move |call| {
        if call.arg(1) > 1 << 20 || call.arg(3) > 1 << 20 {
            return Err(Errno::EINVAL);
        }
        let key = call.read_vec(call.arg(0), call.arg(1))?;
        let value = call.read_vec(call.arg(2), call.arg(3))?;
        store.lock().map_err(|_| Errno::EIO)?.insert(key, value);
        Ok(0)
    }
}

/// 20,000 `set` calls of 16-byte keys and values, each two allocations
/// kept in the store: with one mapping per allocation that is 160 MiB of
/// pages; from the heap, a few MiB.
fn set_memory(kvm: &Kvm) {
    let calls = 20_000usize;
    for seccomp in [true, false] {
        let store = Store::default();
        let (rss0, mapped0) = (rss(), mapped());
        let (mut sandbox, _) = sandbox(kvm, &["set", &calls.to_string()], |b| {
            b.seccomp(seccomp)
                .host_function(1, set_function(store.clone()))
        });
        assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(0));
        let (grown, newly_mapped) = (rss().saturating_sub(rss0), mapped().saturating_sub(mapped0));
        assert_eq!(store.lock().unwrap().len(), calls);
        // The store's table is one mapping of about 1.5 MiB; one page per
        // entry would be 40,000 pages.
        assert!(
            newly_mapped < 8 << 20,
            "seccomp {seccomp}: {newly_mapped} bytes mapped for {calls} calls"
        );
        assert!(
            grown < 64 << 20,
            "seccomp {seccomp}: RSS grew by {grown} bytes for {calls} calls"
        );
        drop(sandbox);
    }
}

#[test]
fn many_allocating_calls_take_heap_memory_not_a_mapping_each() {
    if kvm_or_skip().is_none() {
        return;
    }
    let (status, _, err) = in_child("set-memory", Duration::from_secs(300));
    assert_eq!(status, Some(0), "{err}");
}

// ---------------------------------------------------------------------
// Everyday Rust in a host function.

#[test]
fn a_host_function_may_make_a_hashmap() {
    let Some(kvm) = kvm_or_skip() else { return };
    // Its random seed comes from getrandom.
    let made = call_once(&kvm, |_| {
        let mut map = HashMap::new();
        map.insert("a", 1u64);
        map.insert("b", 2);
        Ok(map.values().sum())
    });
    assert_eq!(made, (Ending::Exited(0), "result 3\n".into()));
    // And a store made inside the function, on first use, and kept.
    let mut store: Option<HashMap<u64, u64>> = None;
    let (mut sandbox, out) = sandbox(&kvm, &["calls", "1", "50"], |b| {
        b.host_function(1, move |call| {
            let store = store.get_or_insert_with(HashMap::new);
            store.insert(call.arg(0), call.arg(0) * 2);
            if store.len() as u64 == call.arg(0) + 1 {
                Ok(0)
            } else {
                Err(Errno::EIO)
            }
        })
    });
    assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(0));
    assert_eq!(out.contents(), b"");
}

#[test]
fn a_host_function_may_read_clocks_and_sleep() {
    let Some(kvm) = kvm_or_skip() else { return };
    let made = call_once(&kvm, |_| {
        let start = Instant::now();
        let wall = std::time::SystemTime::now();
        std::thread::sleep(Duration::from_millis(20));
        let slept = start.elapsed() >= Duration::from_millis(20);
        let later = std::time::SystemTime::now() > wall;
        std::thread::yield_now();
        Ok(u64::from(slept) + u64::from(later))
    });
    assert_eq!(made, (Ending::Exited(0), "result 2\n".into()));
}

/// A socket, from whatever thread asks: EPERM on a confined one.
fn socket_errno() -> i32 {
    // SAFETY: a plain system call; a descriptor it returns is closed.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        if fd >= 0 {
            libc::close(fd);
            return 0;
        }
    }
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[test]
fn a_host_function_may_start_threads_which_are_confined_too() {
    let Some(kvm) = kvm_or_skip() else { return };
    // std::thread::spawn and a Builder with a name and a stack size; each
    // thread computes, and cannot open a socket either.
    let made = call_once(&kvm, |_| {
        let spawned = std::thread::spawn(|| (21u64, socket_errno()));
        let built = std::thread::Builder::new()
            .name("worker".into())
            .stack_size(1 << 20)
            .spawn(|| (21u64, socket_errno()))
            .map_err(Errno::from)?;
        let (a, b) = (spawned.join(), built.join());
        match (a, b) {
            (Ok((x, ea)), Ok((y, eb))) if ea == libc::EPERM && eb == libc::EPERM => Ok(x + y),
            _ => Err(Errno::EIO),
        }
    });
    assert_eq!(made, (Ending::Exited(0), "result 42\n".into()));
    // Scoped threads, a channel between them.
    let made = call_once(&kvm, |_| {
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            for i in 1..=4u64 {
                let send = send.clone();
                scope.spawn(move || send.send(i).ok());
            }
        });
        drop(send);
        Ok(receive.iter().sum())
    });
    assert_eq!(made, (Ending::Exited(0), "result 10\n".into()));
}

#[test]
fn a_host_function_cannot_start_a_process_and_is_told_so() {
    let Some(kvm) = kvm_or_skip() else { return };
    let made = call_once(&kvm, |_| {
        match Command::new("/bin/true").stdin(Stdio::null()).status() {
            Ok(_) => Ok(0),
            Err(e) => Err(Errno::from(e)),
        }
    });
    assert_eq!(
        made,
        (Ending::Exited(0), format!("result -{}\n", libc::EPERM))
    );
    // fork, and clone with a new process's flags: refused.
    let made = call_once(&kvm, |_| {
        // SAFETY: a child, were one made, exits at once.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: leaves the child without running anything else.
            unsafe { libc::_exit(0) };
        }
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if pid > 0 {
            return Ok(0);
        }
        Err(Errno::new(errno).unwrap_or(Errno::EIO))
    });
    assert_eq!(
        made,
        (Ending::Exited(0), format!("result -{}\n", libc::EPERM))
    );
}

#[test]
fn a_host_function_may_run_a_sandbox_with_a_timeout() {
    let Some(kvm) = kvm_or_skip() else { return };
    // Inner sandboxes, built here and run from the outer host function:
    // with and without the filter, with host functions of their own (a
    // thread of their own, started from the confined one), and one that
    // loops until its timeout (its watchdog thread stops it).
    let inner = |args: &[&str], seccomp: bool, stack: usize| {
        let (sandbox, out) = sandbox(&kvm, args, |b| {
            b.seccomp(seccomp)
                .timeout(Duration::from_millis(300))
                .host_stack_size(stack)
                .host_function(1, |call| Ok(call.arg(0) + 1))
        });
        (sandbox, out)
    };
    let default = kvmini::vcpu_thread::DEFAULT_STACK_SIZE;
    let cases = [
        (
            inner(&["call", "1"], true, default),
            Ending::Exited(0),
            "result 1\n",
        ),
        (
            inner(&["call", "1"], false, default),
            Ending::Exited(0),
            "result 1\n",
        ),
        // A stack no idle thread has: started from the confined thread.
        (
            inner(&["call", "1"], true, default + (1 << 20)),
            Ending::Exited(0),
            "result 1\n",
        ),
        (
            inner(&["console", "1000000000"], true, default),
            Ending::TimedOut(Duration::from_millis(300)),
            "",
        ),
    ];
    for ((inner, inner_out), want, want_out) in cases {
        let slot = Arc::new(Mutex::new(Some(inner)));
        let endings = Arc::new(Mutex::new(Vec::new()));
        let (slot2, endings2) = (slot.clone(), endings.clone());
        let (mut outer, out) = sandbox(&kvm, &["call", "1"], |b| {
            b.host_function(1, move |_| {
                let mut inner = slot2.lock().unwrap().take().ok_or(Errno::EIO)?;
                let outcome = inner.run().map_err(|e| {
                    eprintln!("inner run: {e:?}");
                    Errno::EIO
                })?;
                endings2.lock().unwrap().push(outcome.ending);
                Ok(7)
            })
        });
        assert_eq!(outer.run().unwrap().ending, Ending::Exited(0));
        assert_eq!(text(&out.contents()), "result 7\n");
        assert_eq!(*endings.lock().unwrap(), std::slice::from_ref(&want));
        let got = text(&inner_out.contents());
        if want_out.is_empty() {
            assert!(got.bytes().all(|b| b == b'x'), "{got}");
        } else {
            assert_eq!(got, want_out);
        }
    }
}

// ---------------------------------------------------------------------
// Thread-local state is never shared between sandboxes.

thread_local! {
    static LEFT_BEHIND: Cell<u64> = const { Cell::new(0) };
}

/// A host function that reports what it finds in [`LEFT_BEHIND`] and
/// leaves `mark` there.
fn tenant(mark: u64) -> impl FnMut(&HostCall<'_>) -> Result<u64, Errno> + Send {
    move |_| Ok(LEFT_BEHIND.with(|cell| cell.replace(mark)))
}

#[test]
fn a_host_function_never_sees_another_sandboxs_thread_locals() {
    let Some(kvm) = kvm_or_skip() else { return };
    for round in 1..=10u64 {
        // One after the other: A ends and is dropped before B is built.
        let (first, line) = call_once(&kvm, tenant(round));
        assert_eq!((first, line), (Ending::Exited(0), "result 0\n".into()));
        let (second, line) = call_once(&kvm, tenant(1000 + round));
        assert_eq!((second, line), (Ending::Exited(0), "result 0\n".into()));
        // Both alive, run in turn: each sees only its own mark.
        let (mut a, a_out) = sandbox(&kvm, &["call", "1"], |b| {
            b.reusable(true).host_function(1, tenant(round))
        });
        let (mut b, b_out) = sandbox(&kvm, &["call", "1"], |b| {
            b.reusable(true).host_function(1, tenant(2000 + round))
        });
        assert_eq!(a.run().unwrap().ending, Ending::Exited(0));
        assert_eq!(b.run().unwrap().ending, Ending::Exited(0));
        assert_eq!(text(&b_out.contents()), "result 0\n");
        // A sandbox keeps its thread, and its own state, across runs.
        for (sandbox, out, mark) in [(&mut b, &b_out, 2000 + round), (&mut a, &a_out, round)] {
            sandbox.reset().unwrap();
            assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(0));
            assert_eq!(text(&out.contents()), format!("result 0\nresult {mark}\n"));
        }
    }
}

/// A writer that records what it finds in [`LEFT_BEHIND`] and leaves
/// `mark` there: the embedding program's code, like a host function.
struct MarkingWriter {
    mark: u64,
    found: Arc<Mutex<Vec<u64>>>,
}

impl Write for MarkingWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let found = LEFT_BEHIND.with(|cell| cell.replace(self.mark));
        self.found.lock().unwrap().push(found);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn an_output_writer_never_sees_another_sandboxs_thread_locals() {
    let Some(kvm) = kvm_or_skip() else { return };
    for round in 1..=10u64 {
        let found = Arc::new(Mutex::new(Vec::new()));
        for mark in [round, 1000 + round] {
            let writer = MarkingWriter {
                mark,
                found: found.clone(),
            };
            let mut sandbox = Sandbox::builder()
                .elf(guest())
                .args(["host_functions", "console", "2"])
                .stdout(Output::Writer(Box::new(writer)))
                .build(&kvm)
                .unwrap();
            assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(0));
        }
        // Each sandbox's first write finds nothing; its second its own mark.
        assert_eq!(*found.lock().unwrap(), [0, round, 0, 1000 + round]);
    }
}

/// A sandbox that holds a thread of its own, inherited by a child made by
/// `fork`, which has the sandbox but not the thread: run there, it fails
/// at once (KVM serves a VM only to the process that made it) instead of
/// waiting for a thread that is not there; and a new sandbox with host
/// functions runs in the child.
fn fork(kvm: &Kvm) {
    let (mut sandbox, _) = sandbox(kvm, &["call", "1"], |b| {
        b.reusable(true).host_function(1, |_| Ok(5))
    });
    assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(0));
    sandbox.reset().unwrap();
    // SAFETY: the child runs sandboxes and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let inherited = sandbox.run();
        let (mut fresh, out) =
            self::sandbox(kvm, &["call", "1"], |b| b.host_function(1, |_| Ok(6)));
        let fresh = fresh.run();
        let ok = matches!(inherited, Err(SandboxError::Vcpu(_)))
            && fresh.as_ref().is_ok_and(|o| o.ending == Ending::Exited(0))
            && out.contents() == b"result 6\n";
        if !ok {
            let why = format!("in the child: {inherited:?}, {fresh:?}\n");
            // SAFETY: a write from a live buffer.
            unsafe { libc::write(2, why.as_ptr().cast(), why.len()) };
        }
        // SAFETY: leaves the child without running the test harness on.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    assert!(pid > 0);
    let mut status = 0;
    // SAFETY: waits for the child just made.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(status, 0);
    // And the parent's sandbox still runs on its own thread.
    assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(0));
}

#[test]
fn a_child_made_by_fork_never_waits_for_a_thread_it_does_not_have() {
    if kvm_or_skip().is_none() {
        return;
    }
    let (status, _, err) = in_child("fork", Duration::from_secs(120));
    assert_eq!(status, Some(0), "{err}");
}

// ---------------------------------------------------------------------
// Captures are bounded.

/// Runs `fill N SIZE` with stdout into `capture`: the ending, and what
/// the guest reported on stderr (each write's result).
fn fill(kvm: &Kvm, capture: Output, n: usize, size: usize) -> (Ending, String) {
    let results = Capture::new();
    let mut sandbox = Sandbox::builder()
        .elf(guest())
        .memory(8 << 20)
        .args(["host_functions", "fill", &n.to_string(), &size.to_string()])
        .stdout(capture)
        .stderr(Output::Capture(results.clone()))
        .build(kvm)
        .unwrap();
    let ending = sandbox.run().unwrap().ending;
    (ending, text(&results.contents()))
}

/// The bytes `fill` writes `count` times.
fn filled(size: usize, count: usize) -> Vec<u8> {
    let block: Vec<u8> = (0..size)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz"[i % 26])
        .collect();
    block.repeat(count)
}

#[test]
fn a_capture_keeps_whole_writes_up_to_its_limit_and_drops_the_rest() {
    let Some(kvm) = kvm_or_skip() else { return };
    let enospc = format!("write -{}\n", libc::ENOSPC);
    // Three writes of 3000 fit in 10,000; the fourth does not and is
    // refused whole, and so is everything after it (the fifth write, the
    // console bytes and printVal's line, which are dropped).
    let capture = Capture::with_limit(10_000);
    let (ending, results) = fill(&kvm, Output::Capture(capture.clone()), 5, 3000);
    assert_eq!(ending, Ending::Exited(0));
    assert_eq!(
        results,
        format!("write 3000\nwrite 3000\nwrite 3000\n{enospc}{enospc}")
    );
    assert_eq!(capture.contents(), filled(3000, 3));
    assert_eq!(capture.dropped(), 3000 + 3000 + 2 + 2);
    assert_eq!(capture.limit(), 10_000);
    // Exactly at the limit: everything kept, nothing dropped.
    let capture = Capture::with_limit(9004);
    let (ending, results) = fill(&kvm, Output::Capture(capture.clone()), 3, 3000);
    assert_eq!(ending, Ending::Exited(0));
    assert_eq!(results, "write 3000\n".repeat(3));
    let mut want = filled(3000, 3);
    want.extend_from_slice(b"c\n7\n");
    assert_eq!((capture.contents(), capture.dropped()), (want, 0));
    // A capture's writer given as a plain writer behaves the same.
    let capture = Capture::with_limit(4000);
    let (ending, results) = fill(&kvm, Output::Writer(capture.writer()), 2, 3000);
    assert_eq!(ending, Ending::Exited(0));
    assert_eq!(results, format!("write 3000\n{enospc}"));
    assert_eq!(capture.contents(), filled(3000, 1));
    assert_eq!(capture.dropped(), 3000 + 4);
    // A limit of 0 keeps nothing.
    let capture = Capture::with_limit(0);
    let (ending, results) = fill(&kvm, Output::Capture(capture.clone()), 1, 10);
    assert_eq!(ending, Ending::Exited(0));
    assert_eq!(results, enospc);
    assert_eq!((capture.contents(), capture.dropped()), (Vec::new(), 14));
}

#[test]
fn a_capture_is_bounded_by_default() {
    let Some(kvm) = kvm_or_skip() else { return };
    assert_eq!(Capture::new().limit(), 64 << 20);
    assert_eq!(Capture::DEFAULT_LIMIT, 64 << 20);
    // 70 writes of 1 MiB: 64 are kept, the rest refused.
    let capture = Capture::new();
    let (ending, results) = fill(&kvm, Output::Capture(capture.clone()), 70, 1 << 20);
    assert_eq!(ending, Ending::Exited(0));
    let want = format!(
        "{}{}",
        format!("write {}\n", 1 << 20).repeat(64),
        format!("write -{}\n", libc::ENOSPC).repeat(6)
    );
    assert_eq!(results, want);
    assert_eq!(capture.contents().len(), 64 << 20);
    assert_eq!(capture.dropped(), 6 * (1 << 20) + 4);
    // Console output alone, one byte per exit, stops growing the capture
    // at its limit too, and the guest runs to its end.
    let capture = Capture::with_limit(1000);
    let (mut sandbox, _) = sandbox(&kvm, &["console", "5000"], |b| {
        b.stdout(Output::Capture(capture.clone()))
    });
    assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(0));
    assert_eq!(
        (capture.contents(), capture.dropped()),
        (vec![b'x'; 1000], 4000)
    );
}

// ---------------------------------------------------------------------
// The standard streams' locks.

/// Holds the locks of stdout and stderr while a guest prints through
/// kvmini's own streams (console, printVal, display, write to 1 and 2),
/// provokes a warning, and is traced; and writes through
/// `Output::into_writer` from another thread meanwhile.
fn locked_streams(kvm: &Kvm) {
    let out = std::io::stdout().lock();
    let err = std::io::stderr().lock();
    let mut sandbox = Sandbox::builder()
        .elf(guest())
        .args(["host_functions", "noisy"])
        .timeout(Duration::from_secs(30))
        .trace(Output::Inherit)
        .build(kvm)
        .unwrap();
    let ending = sandbox.run().unwrap().ending;
    let wrote = std::thread::spawn(|| {
        let mut stdout = Output::Inherit.into_writer(Stream::Stdout);
        let mut stderr = Output::Inherit.into_writer(Stream::Stderr);
        (
            stdout.write_all(b"into_writer 1\n").is_ok(),
            stderr.write_all(b"into_writer 2\n").is_ok(),
        )
    })
    .join()
    .unwrap();
    drop((out, err));
    assert_eq!(ending, Ending::Exited(0));
    assert_eq!(wrote, (true, true));
}

#[test]
fn runs_finish_while_the_program_holds_the_standard_streams_locks() {
    if kvm_or_skip().is_none() {
        return;
    }
    let (status, out, err) = in_child("locked-streams", Duration::from_secs(120));
    assert_eq!(status, Some(0), "{err}");
    assert_eq!(out, "c\n42\ndisplay\nwrite 1\nend\ninto_writer 1\n");
    // kvmini's trace lines (`name(...)`, `+++ end +++`) come with every
    // hypercall; the rest, in order.
    let traced = |l: &&str| {
        l.starts_with("+++")
            || l.split_once('(').is_some_and(|(name, _)| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    };
    let rest: Vec<&str> = err.lines().filter(|l| !traced(l)).collect();
    assert_eq!(
        rest,
        [
            "write 2",
            "kvmini: display(0x0) ignored: address 0x0 is not mapped (level 1 entry not present)",
            "into_writer 2"
        ],
        "{err}"
    );
    assert!(err.lines().filter(traced).count() > 8, "{err}");
}

// ---------------------------------------------------------------------
// Measurements, run by hand (docs/performance.md):
//   cargo test -p kvmini --test host_functions -- --ignored --nocapture measure

/// 100,000 `set` calls, with the filter and without: RSS and time, each
/// in a fresh process.
fn measure_set(kvm: &Kvm) {
    let seccomp = std::env::var("HOSTFN_SECCOMP").map_or(true, |v| v == "1");
    let store = Store::default();
    let (mut sandbox, _) = sandbox(kvm, &["set", "100000"], |b| {
        b.seccomp(seccomp)
            .host_function(1, set_function(store.clone()))
    });
    let rss0 = rss();
    let start = Instant::now();
    assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(0));
    let took = start.elapsed();
    eprintln!(
        "seccomp {seccomp}: 100000 set calls in {took:.2?}, RSS grew {:.1} MiB, mapped {:.1} MiB",
        (rss() - rss0) as f64 / f64::from(1 << 20),
        mapped() as f64 / f64::from(1 << 20)
    );
}

#[test]
#[ignore = "a measurement: prints, asserts nothing about time"]
fn measure_set_calls_rss_and_time() {
    let exe = std::env::current_exe().unwrap();
    for seccomp in ["1", "0"] {
        let out = Command::new(&exe)
            .args(["--exact", "child_case", "--nocapture", "--test-threads=1"])
            .env(CHILD, "measure-set")
            .env("HOSTFN_SECCOMP", seccomp)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        for line in err.lines().filter(|l| l.starts_with("seccomp")) {
            println!("{line}");
        }
    }
}

#[test]
#[ignore = "a measurement: prints, asserts nothing about time"]
fn measure_host_call_cost() {
    let Some(kvm) = kvm_or_skip() else { return };
    let n = 100_000usize;
    for seccomp in [true, false] {
        for (name, function) in [
            (
                "trivial",
                Box::new(|call: &HostCall<'_>| Ok(call.arg(0)))
                    as Box<dyn FnMut(&HostCall<'_>) -> Result<u64, Errno> + Send>,
            ),
            (
                "HashMap::new + insert",
                Box::new(|call: &HostCall<'_>| {
                    let mut map = HashMap::new();
                    map.insert(call.arg(0), 1u64);
                    Ok(map.len() as u64)
                }),
            ),
        ] {
            let (mut sandbox, _) = sandbox(&kvm, &["calls", "1", &n.to_string()], |b| {
                b.seccomp(seccomp).host_function(1, function)
            });
            let start = Instant::now();
            assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(0));
            let per = start.elapsed() / u32::try_from(n).unwrap();
            println!("seccomp {seccomp}: {name}: {per:.2?} per host call");
        }
    }
}

#[test]
#[ignore = "a measurement: prints, asserts nothing about time"]
fn measure_lifecycle_with_and_without_host_functions() {
    let Some(kvm) = kvm_or_skip() else { return };
    let n = 100u32;
    // Rounds of each in turn; the best round of each is printed, the
    // machine being shared.
    let mut best = [Duration::MAX; 2];
    for _ in 0..5 {
        for (i, with_host) in [false, true].into_iter().enumerate() {
            let start = Instant::now();
            for _ in 0..n {
                let (mut s, _) = sandbox(&kvm, &["call", "1"], |b| {
                    if with_host {
                        b.host_function(1, |_| Ok(1))
                    } else {
                        b
                    }
                });
                s.run().unwrap();
            }
            best[i] = best[i].min(start.elapsed() / n);
        }
    }
    println!(
        "build + run + drop per sandbox: {:.2?} without host functions (pooled thread), \
         {:.2?} with (a thread of its own)",
        best[0], best[1]
    );
}

#[test]
#[ignore = "a measurement: prints, asserts nothing about time"]
fn measure_filter_cost_per_system_call() {
    let Some(kvm) = kvm_or_skip() else { return };
    // A host function that makes 10,000 gettid calls each time it is
    // called: the difference with and without the filter is the filter's
    // cost. Five rounds of each in turn; the best of each is printed.
    let (calls, per_call) = (20usize, 10_000u32);
    let mut best = [Duration::MAX; 2];
    for _ in 0..5 {
        for (i, seccomp) in [true, false].into_iter().enumerate() {
            let spent = Arc::new(Mutex::new(Duration::ZERO));
            let into = spent.clone();
            let (mut sandbox, _) = sandbox(&kvm, &["calls", "1", &calls.to_string()], |b| {
                b.seccomp(seccomp).host_function(1, move |_| {
                    let start = Instant::now();
                    for _ in 0..per_call {
                        // SAFETY: gettid has no preconditions.
                        std::hint::black_box(unsafe { libc::syscall(libc::SYS_gettid) });
                    }
                    *into.lock().unwrap() += start.elapsed();
                    Ok(0)
                })
            });
            assert_eq!(sandbox.run().unwrap().ending, Ending::Exited(0));
            let total = *spent.lock().unwrap();
            best[i] = best[i].min(total / (u32::try_from(calls).unwrap() * per_call));
        }
    }
    println!(
        "gettid: {:.0?} with the filter, {:.0?} without",
        best[0], best[1]
    );
}
