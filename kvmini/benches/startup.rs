//! Starting at all: whole processes, from the parent's `spawn` to its
//! `wait`, taken in turn many times, the order rotating each round (no
//! criterion):
//!
//! - `kvmini run hello.elf` (the built-in hello, the CLI's defaults:
//!   seccomp on, 64 MiB), and the same with `--no-seccomp`;
//! - the floor process: this binary, which runs the flat hello (the same
//!   15 exits) on kvm-ioctls alone in 64 MiB, with kvmini's seccomp filter
//!   installed on its one thread before the run; and the same without the
//!   filter;
//! - `kvmini --version`, and this binary doing nothing (what a process
//!   costs before any work);
//! - `kvmini run /usr/bin/busybox true` and native `busybox true`;
//! - a child that replays kvmini's start-up step by step through the
//!   library, timing each step from the parent's spawn (see [`phases`]).
//!
//! It needs the release `kvmini` binary (`KVMINI_BIN`, or
//! `target/release/kvmini`; `bench/run-all.sh` builds it) and busybox for
//! the busybox rows (skipped, saying so, without it).
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fact, FloorVm, Phases};
use kvmini::cpu::Ring;
use kvmini::output::Output;
use kvmini::sandbox::Sandbox;

/// The CLI's default guest memory, which both sides use.
const MEM: u64 = 64 << 20;
/// The variable that makes this binary a child, and which one.
const ROLE: &str = "KVMINI_STARTUP_ROLE";
/// The parent's CLOCK_MONOTONIC at spawn, in ns, for the phases child.
const SPAWNED_AT: &str = "KVMINI_STARTUP_SPAWNED_AT";
/// Rounds of the whole-process comparison.
const ROUNDS: usize = 40;

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which is valid.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    u64::try_from(ts.tv_sec).expect("time") * 1_000_000_000 + u64::try_from(ts.tv_nsec).expect("ns")
}

/// The floor process: the flat hello on kvm-ioctls alone, in [`MEM`],
/// with kvmini's seccomp filter on this thread if `seccomp`.
/// With `report`, prints its steps as [`phases`] does.
fn floor_process(seccomp: bool, report: bool) {
    let exec_to_main = since_spawn();
    let t0 = Instant::now();
    let kvm = kvm_ioctls::Kvm::new().expect("open /dev/kvm");
    let open_kvm = t0.elapsed();
    let mut phases = Phases::default();
    let mut vm = FloorVm::with_memory(&kvm, &common::hello_image(), Ring::Three, MEM, &mut phases);
    let t1 = Instant::now();
    if seccomp {
        kvmini::seccomp::install().expect("seccomp");
    }
    let seccomp_time = t1.elapsed();
    let t2 = Instant::now();
    let mut out = Vec::with_capacity(16);
    let exits = vm.run(&mut |b| out.push(b));
    let run = t2.elapsed();
    assert_eq!((exits, out.as_slice()), (15, &b"Hello, world!\n"[..]));
    let t3 = Instant::now();
    drop(vm);
    let teardown = t3.elapsed();
    if report {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "exec_to_main={:.1} open_kvm={:.1} create_vm={:.1} memory={:.1} create_vcpu={:.1} \
             load={:.1} seccomp={:.1} run={:.1} teardown={:.1}",
            exec_to_main.unwrap_or(0.0),
            us(open_kvm),
            us(phases.create_vm),
            us(phases.memory),
            us(phases.create_vcpu),
            us(phases.load),
            us(seccomp_time),
            us(run),
            us(teardown)
        );
    }
}

/// Microseconds from the parent's spawn ([`SPAWNED_AT`]) to now.
fn since_spawn() -> Option<f64> {
    let spawned: u64 = std::env::var(SPAWNED_AT).ok()?.parse().ok()?;
    Some(monotonic_ns().saturating_sub(spawned) as f64 / 1e3)
}

/// kvmini's start-up replayed in this process through the library, as
/// `kvmini run hello.elf` takes it, each step timed; prints one line of
/// `name=microseconds` (from the parent's spawn to `main`, then each step).
fn phases(hello: &Path, args: &[std::ffi::OsString]) {
    let mut marks = vec![("exec_to_main", since_spawn().expect("the spawn time"))];
    let mut t = Instant::now();
    let mut lap = |name: &'static str, marks: &mut Vec<(&'static str, f64)>| {
        let now = Instant::now();
        marks.push((name, (now - t).as_secs_f64() * 1e6));
        t = now;
    };
    let kvm = kvmini::kvm::Kvm::open().expect("open /dev/kvm");
    lap("open_kvm", &mut marks);
    let builder = Sandbox::builder()
        .elf_file(hello)
        .args(
            std::iter::once(hello.as_os_str())
                .chain(args.iter().map(std::ffi::OsString::as_os_str))
                .map(|a| a.as_encoded_bytes().to_vec()),
        )
        .memory(MEM)
        .stdout(Output::Null)
        .check()
        .expect("options");
    lap("options", &mut marks);
    let mut sandbox = builder.build(&kvm).expect("build");
    lap("build", &mut marks);
    // The vCPU thread: the pool's first thread starts and installs the
    // filter; the run then goes to it.
    let outcome = sandbox.run().expect("run");
    lap("run", &mut marks);
    // The built-in hello ends with `hlt`, which `kvmini run` reports as 0.
    assert_eq!(outcome.ending.status(), 0, "{:?}", outcome.ending);
    drop(sandbox);
    lap("teardown", &mut marks);
    // The build's steps, once more, each alone (what `build` spent).
    let image = std::fs::read(hello).expect("read the image");
    lap("x_read_image", &mut marks);
    let (mem, _) = kvmini::memory::allocate_with(MEM, Default::default()).expect("allocate");
    lap("x_map_memory", &mut marks);
    let layout = kvmini::layout::Layout::new(MEM);
    let window = kvmini::loader::LoadWindow {
        start: kvmini_abi::layout::ELF_LOAD_MIN,
        end: layout.system_base,
    };
    kvmini::loader::load_elf(&mem, &image, &window).expect("load");
    lap("x_load_image", &mut marks);
    let vm = kvmini::vm::Vm::new(&kvm, mem).expect("vm");
    lap("x_create_vm", &mut marks);
    drop(vm);
    let handle = std::thread::spawn(|| ());
    handle.join().expect("thread");
    lap("x_thread", &mut marks);
    std::thread::spawn(|| kvmini::seccomp::install().expect("seccomp"))
        .join()
        .expect("thread");
    lap("x_thread_and_seccomp", &mut marks);
    let line: Vec<String> = marks.iter().map(|(n, us)| format!("{n}={us:.1}")).collect();
    println!("{}", line.join(" "));
}

/// The release `kvmini` binary, if built.
fn kvmini_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("KVMINI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join("target/release/kvmini"));
    bin.is_file().then_some(bin)
}

fn busybox() -> Option<PathBuf> {
    ["/usr/bin/busybox", "/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// One side of the comparison: a command, and whether it must succeed.
struct Side {
    name: &'static str,
    command: Command,
}

fn side(name: &'static str, program: &Path, args: &[&str], role: Option<&str>) -> Side {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(role) = role {
        command.env(ROLE, role);
    }
    Side { name, command }
}

/// The wall time of one process, spawn to wait.
fn time(side: &mut Side) -> f64 {
    let start = Instant::now();
    let status = side.command.status().expect("spawn");
    let elapsed = start.elapsed();
    assert!(status.success(), "{}: {status}", side.name);
    elapsed.as_secs_f64() * 1e3
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn driver() {
    if common::kvm().is_none() {
        return;
    }
    let Some(kvmini) = kvmini_bin() else {
        println!("skipping start-up: no release kvmini (cargo build --release -p kvmini-cli)");
        return;
    };
    let me = std::env::current_exe().expect("own path");
    let hello = common::out_dir().join("hello.elf");
    std::fs::write(&hello, kvmini::guests::HELLO.elf).expect("write hello.elf");
    let h = hello.to_str().expect("UTF-8 path");
    let mut sides = vec![
        side("kvmini", &kvmini, &["run", h], None),
        side("floor", &me, &[], Some("floor")),
        side(
            "kvmini_noseccomp",
            &kvmini,
            &["run", "--no-seccomp", h],
            None,
        ),
        side("floor_noseccomp", &me, &[], Some("floor_noseccomp")),
        side("kvmini_version", &kvmini, &["--version"], None),
        side("noop", &me, &[], Some("noop")),
    ];
    match busybox() {
        Some(bb) => {
            let b = bb.to_str().expect("UTF-8 path");
            sides.push(side(
                "kvmini_busybox_true",
                &kvmini,
                &["run", b, "--", "true"],
                None,
            ));
            sides.push(side("native_busybox_true", &bb, &["true"], None));
        }
        None => println!("skipping the busybox rows: no busybox (apt-get install busybox-static)"),
    }
    let n = sides.len();
    for s in &mut sides {
        time(s);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); n];
    for round in 0..ROUNDS {
        let mut t = vec![0.0; n];
        for i in 0..n {
            let which = (round + i) % n;
            t[which] = time(&mut sides[which]);
        }
        for which in 0..n {
            times[which].push(t[which]);
            ratios[which].push(t[which] / t[1]);
        }
    }
    let mut line = String::from("start-up, whole processes, median ms (ratio to the floor):");
    for (which, s) in sides.iter().enumerate() {
        let (ms, ratio) = (median(&mut times[which]), median(&mut ratios[which]));
        line.push_str(&format!(" {} {ms:.3} ({ratio:.3})", s.name));
        fact(&format!("startup.{}_ms", s.name), ms);
        fact(&format!("startup.{}_ratio", s.name), ratio);
    }
    println!("{line}");
    phases_pass(&me, &hello);
}

/// Runs the phases child `ROUNDS` times; the median of each step.
fn phases_pass(me: &Path, hello: &Path) {
    for role in ["phases", "floor_phases"] {
        phases_of(me, hello, role);
    }
}

fn phases_of(me: &Path, hello: &Path, role: &str) {
    let mut steps: Vec<(String, Vec<f64>)> = Vec::new();
    for _ in 0..ROUNDS {
        let out = Command::new(me)
            .env(ROLE, role)
            .env(SPAWNED_AT, monotonic_ns().to_string())
            .arg(hello)
            .stdin(Stdio::null())
            .output()
            .expect("spawn the phases child");
        assert!(
            out.status.success(),
            "phases: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (i, pair) in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .enumerate()
        {
            let (name, us) = pair.split_once('=').expect("name=value");
            if steps.len() <= i {
                steps.push((name.to_owned(), Vec::new()));
            }
            steps[i].1.push(us.parse().expect("a number"));
        }
    }
    let mut line = format!("start-up steps ({role}), median us:");
    for (name, values) in &mut steps {
        let us = median(values);
        line.push_str(&format!(" {name} {us:.1}"));
        fact(&format!("startup.{role}.{name}_us"), us);
    }
    println!("{line}");
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("floor") => floor_process(true, false),
        Ok("floor_noseccomp") => floor_process(false, false),
        Ok("floor_phases") => floor_process(true, true),
        Ok("noop") => {}
        Ok("phases") => {
            let args: Vec<_> = std::env::args_os().skip(1).collect();
            let (guest, args) = args.split_first().expect("the guest's path");
            phases(Path::new(guest), args);
        }
        _ => {
            let start = Instant::now();
            driver();
            println!(
                "start-up: {:?} in all",
                Duration::from_secs_f64(start.elapsed().as_secs_f64())
            );
        }
    }
}
