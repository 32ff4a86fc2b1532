//! Figure 7, memory: the VMM's own peak RSS beyond the guest memory it
//! touched.
//!
//! Method: each measurement is a fresh child process, whose peak RSS the
//! kernel reports when it is reaped (`wait4`, `ru_maxrss`).
//!
//! - kvmini: the release `kvmini` binary (`KVMINI_BIN`, default
//!   `target/release/kvmini`, which `bench/compare.sh` builds) running the
//!   built-in hello (`kvmini run hello.elf`, 64 MiB of guest memory, seccomp
//!   on): its peak RSS minus the guest memory that the same run leaves
//!   resident, measured with `mincore` over the guest mapping in a child
//!   that runs the same guest through the library (this binary, `--child
//!   kvmini`). That child also reports its own `VmHWM` before building the
//!   sandbox and after the run: the growth minus the guest pages is the
//!   library's own peak, in-process.
//! - floor: this binary, `--child floor`, running the flat hello at ring 3
//!   in a VM on kvm-ioctls alone: peak RSS minus its resident guest pages.
//!
//! Each figure is the median of five children.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

mod common;

use std::process::{Command, Stdio};

use common::fact;
use kvmini::output::Output;
use kvmini::sandbox::Sandbox;

const RUNS: usize = 5;
const GUEST_MEM: u64 = 64 << 20;

/// `VmHWM` of this process, in KiB.
fn hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Runs `command` and returns its peak RSS in KiB and its stdout. The
/// child is reaped with `wait4`, which `Child::wait` cannot replace: only
/// `wait4` returns the child's own resource usage.
#[allow(clippy::zombie_processes)]
fn peak_rss(command: &mut Command) -> (u64, String) {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child");
    let pid = i32::try_from(child.id()).expect("pid fits");
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout {
        std::io::Read::read_to_string(&mut out, &mut stdout).expect("read the child's output");
    }
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child `pid` (the `Child` handle was
    // consumed above and never waits for it), writing into two locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{command:?} failed: status {status:#x}"
    );
    (u64::try_from(usage.ru_maxrss).expect("positive"), stdout)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// `--child kvmini`: the built-in hello through the library, as the CLI
/// runs it; prints `guest_resident_kib hwm_before_kib hwm_after_kib`.
fn child_kvmini() {
    let kvm = kvmini::kvm::Kvm::open().expect("open KVM");
    let before = hwm_kib();
    let mut sandbox = Sandbox::builder()
        .elf(kvmini::guests::HELLO.elf)
        .memory(GUEST_MEM)
        .stdout(Output::Null)
        .build(&kvm)
        .expect("build");
    sandbox.run().expect("run");
    let len = usize::try_from(GUEST_MEM).expect("fits");
    let resident = common::resident_bytes(
        sandbox
            .memory_host_address()
            .expect("the sandbox has its VM"),
        len,
    ) / 1024;
    let after = hwm_kib();
    println!("{resident} {before} {after}");
}

/// `--child floor`: the flat hello at ring 3 on kvm-ioctls alone; prints
/// `guest_resident_kib`.
fn child_floor() {
    let kvm = kvm_ioctls::Kvm::new().expect("open /dev/kvm");
    let mut vm = common::FloorVm::new(&kvm, &common::hello_image(), kvmini::cpu::Ring::Three);
    assert_eq!(vm.run(&mut |_| {}), 15);
    println!("{}", vm.resident_guest_bytes() / 1024);
}

fn numbers(line: &str) -> Vec<u64> {
    line.split_whitespace()
        .map(|n| n.parse().expect("a number"))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        match args.get(i + 1).map(String::as_str) {
            Some("kvmini") => child_kvmini(),
            Some("floor") => child_floor(),
            other => panic!("unknown child {other:?}"),
        }
        return;
    }
    if common::kvm().is_none() {
        return;
    }
    let me = std::env::current_exe().expect("this binary");
    let work = tempfile::tempdir().expect("temp dir");
    let hello = work.path().join("hello.elf");
    std::fs::write(&hello, kvmini::guests::HELLO.elf).expect("write hello.elf");

    let mut lib = Vec::new();
    for _ in 0..RUNS {
        let (_, out) = peak_rss(Command::new(&me).args(["--child", "kvmini"]));
        lib.push(numbers(&out));
    }
    let guest_kib = median(lib.iter().map(|v| v[0]).collect());
    let in_process_kib = median(
        lib.iter()
            .map(|v| v[2].saturating_sub(v[1]).saturating_sub(v[0]))
            .collect(),
    );
    println!("kvmini hello, 64 MiB guest: {guest_kib} KiB of guest memory resident");
    println!("kvmini library, in-process: VmHWM grew {in_process_kib} KiB beyond that");
    fact("memory.kvmini.guest_resident_kib", guest_kib as f64);
    fact("memory.kvmini.in_process_own_kib", in_process_kib as f64);

    let bin = std::env::var_os("KVMINI_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join("target/release/kvmini"));
    if bin.exists() {
        let peaks = (0..RUNS)
            .map(|_| peak_rss(Command::new(&bin).arg("run").arg(&hello)).0)
            .collect();
        let peak = median(peaks);
        let own = peak.saturating_sub(guest_kib);
        println!(
            "kvmini CLI ({}): peak RSS {peak} KiB, {own} KiB beyond guest memory",
            bin.display()
        );
        fact("memory.kvmini.cli_peak_kib", peak as f64);
        fact("memory.kvmini.own_kib", own as f64);
    } else {
        println!(
            "no kvmini binary at {} (cargo build --release): CLI figure skipped",
            bin.display()
        );
    }

    let mut floor = Vec::new();
    for _ in 0..RUNS {
        let (peak, out) = peak_rss(Command::new(&me).args(["--child", "floor"]));
        floor.push((peak, numbers(&out)[0]));
    }
    let peak = median(floor.iter().map(|f| f.0).collect());
    let guest = median(floor.iter().map(|f| f.1).collect());
    let own = peak.saturating_sub(guest);
    println!("floor: peak RSS {peak} KiB, {guest} KiB of guest memory, {own} KiB beyond it");
    fact("memory.floor.peak_kib", peak as f64);
    fact("memory.floor.guest_resident_kib", guest as f64);
    fact("memory.floor.own_kib", own as f64);
}
