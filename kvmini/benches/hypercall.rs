//! Figure 1, the null hypercall round trip: a flat guest calls
//! `getNumExits` N times, under kvmini and under the floor (the same image
//! in a VM set up on kvm-ioctls alone, answered by a bare KVM_RUN loop), at
//! ring 3 and at ring 0. Each criterion iteration is one call: a sample of
//! `iters` iterations is one run of a guest that makes `iters` calls, timed
//! from the start of the run to its end (building the VM is not timed).
//!
//! Before criterion runs, this binary also
//! - counts heap allocations on the hypercall hot path with a counting
//!   global allocator: allocations made during a run of N2 calls minus
//!   those of a run of N1 calls, divided by N2 - N1, so what a run costs
//!   once (the seccomp thread, the final flush) cancels out;
//! - times a `getpid` with and without kvmini's seccomp filter;
//! - makes the comparison paired (see [`paired`]), with sides that take the
//!   difference apart.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use common::{fact, FloorVm};
use criterion::{criterion_group, criterion_main, Criterion};
use kvmini::cpu::Ring;
use kvmini::output::Output;
use kvmini::sandbox::{Ending, Sandbox};
use kvmini_abi::fs::{IoArgs, OpenArgs, O_CREAT, O_TRUNC, O_WRONLY};
use vm_memory::{Bytes, GuestAddress};
use zerocopy::IntoBytes;

/// Counts allocations (and reallocations) while `COUNTING` is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged; the counter has no effect on the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded as is; `ptr` came from this allocator, which
        // is the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made while `run` runs.
fn count_allocations(run: impl FnOnce()) -> u64 {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::SeqCst);
    run();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Where the write guests keep their blocks and data (all below 1 MiB,
/// above the code at 0).
const OPEN_BLOCK: u64 = 0x2100;
const PATH: u64 = 0x2200;
const IO_BLOCK: u64 = 0x2000;
const DATA: u64 = 0x3000;

/// A ring-3 flat guest that opens `/f` (if `open`), then writes 16 bytes
/// `n` times with the write hypercall, then exits:
///
/// ```text
///        mov eax, OPEN_BLOCK; mov dx, 0x410; out dx, eax   ; open (if `open`)
///        mov eax, [OPEN_BLOCK + 16]; mov [IO_BLOCK], eax   ; fd = result
///        mov ecx, n
/// again: mov eax, IO_BLOCK; mov dx, 0x413; out dx, eax     ; write
///        dec ecx; jnz again
///        exit(0)
/// ```
fn write_loop_image(n: u32, open: bool) -> Vec<u8> {
    let mut code = Vec::new();
    if open {
        code.extend_from_slice(&[0xB8, 0x00, 0x21, 0x00, 0x00, 0x66, 0xBA, 0x10, 0x04, 0xEF]);
        code.extend_from_slice(&[0x8B, 0x04, 0x25, 0x10, 0x21, 0x00, 0x00]);
        code.extend_from_slice(&[0x89, 0x04, 0x25, 0x00, 0x20, 0x00, 0x00]);
    }
    code.push(0xB9);
    code.extend_from_slice(&n.max(1).to_le_bytes());
    // again: (10 bytes of body, then jnz back over them and itself)
    code.extend_from_slice(&[0xB8, 0x00, 0x20, 0x00, 0x00, 0x66, 0xBA, 0x13, 0x04, 0xEF]);
    code.extend_from_slice(&[0xFF, 0xC9, 0x75, 0xF2]);
    code.extend_from_slice(&[0x66, 0xBA, 0x03, 0x04, 0x31, 0xC0, 0xEF, 0xEB, 0xFE]);
    code
}

/// A sandbox for [`write_loop_image`]: to a file `/f` in `dir`, or to fd 1
/// (kvmini's `Output::Null`).
fn write_sandbox(kvm: &kvmini::kvm::Kvm, n: u32, dir: Option<&std::path::Path>) -> Sandbox {
    let mut builder = Sandbox::builder()
        .flat(write_loop_image(n, dir.is_some()))
        .ring(Ring::Three)
        .memory(common::FLAT_MEM)
        .stdout(Output::Null);
    if let Some(dir) = dir {
        builder = builder.dir(dir, "/", false);
    }
    let sandbox = builder.build(kvm).expect("build");
    let mem = sandbox.memory().expect("the sandbox has its VM");
    mem.write_slice(b"/f\0", GuestAddress(PATH)).expect("path");
    let open = OpenArgs {
        path: PATH,
        flags: O_WRONLY | O_CREAT | O_TRUNC,
        mode: 0o644,
        ..OpenArgs::default()
    };
    mem.write_slice(open.as_bytes(), GuestAddress(OPEN_BLOCK))
        .expect("open block");
    let io = IoArgs {
        fd: 1,
        buf: DATA,
        len: 16,
        ..IoArgs::default()
    };
    mem.write_slice(io.as_bytes(), GuestAddress(IO_BLOCK))
        .expect("io block");
    mem.write_slice(b"0123456789abcde\n", GuestAddress(DATA))
        .expect("data");
    sandbox
}

/// Allocations per call: (allocations of a run of `n2` calls - those of a
/// run of `n1`) / (`n2` - `n1`), each run on a fresh sandbox after one
/// warm-up run of the same guest kind.
fn allocations_per_call(name: &str, make: &dyn Fn(u32) -> Sandbox) {
    let (n1, n2) = (1_000u32, 5_000u32);
    let mut warm = make(100);
    warm.run().expect("warm-up run");
    let mut counts = [0u64; 2];
    for (slot, n) in counts.iter_mut().zip([n1, n2]) {
        let mut sandbox = make(n);
        let mut outcome = None;
        *slot = count_allocations(|| outcome = Some(sandbox.run().expect("run")));
        let outcome = outcome.expect("ran");
        assert_eq!(outcome.ending, Ending::Exited(0), "{name}");
    }
    let per_call = (counts[1] as f64 - counts[0] as f64) / f64::from(n2 - n1);
    println!(
        "allocations, {name}: {} in a run of {n1} calls, {} in a run of {n2}: {per_call} per call",
        counts[0], counts[1]
    );
    fact(&format!("alloc_per_call.{name}"), per_call);
    fact(&format!("alloc_per_run.{name}"), counts[0] as f64);
}

fn allocations(kvm: &kvmini::kvm::Kvm) {
    let dir = tempfile::tempdir().expect("temp dir");
    allocations_per_call("getNumExits", &|n| {
        common::kvmini_flat(kvm, &common::null_loop_image(n), Ring::Three)
    });
    allocations_per_call("write_stdout", &|n| write_sandbox(kvm, n, None));
    allocations_per_call("write_file", &|n| write_sandbox(kvm, n, Some(dir.path())));
}

/// The sides of the paired comparison.
const SIDES: [&str; 6] = [
    "kvmini",
    "floor",
    "floor_sync",
    "floor_sync_cpuid",
    "kvmini_noseccomp",
    "kvmini_noseccomp_thread",
];

/// The same comparison, paired: `ROUNDS` runs of 4,000 calls on each
/// side, in turn, the order rotating each round; the median time of each
/// side, and the median of the per-round ratios to the floor, which load
/// from other processes moves much less than two criterion measurements
/// taken one after the other.
/// Four more sides show where a difference comes from: the floor with
/// KVM's sync-regs area on as kvmini asks for it (general registers copied
/// into `kvm_run` at every exit, and system registers too at ring 0), the
/// same with kvmini's CPUID (`KVM_SET_CPUID2` with what KVM supports), and
/// kvmini without its seccomp filter, run on the calling thread (what
/// `run` does then) and on a new thread of its own.
fn paired(kvm: &kvmini::kvm::Kvm, floor_kvm: &kvm_ioctls::Kvm) {
    const ROUNDS: usize = 15;
    const N: u32 = 4000;
    let image = common::null_loop_image(N);
    for ring in [Ring::Three, Ring::Zero] {
        let kvmini_run = |seccomp: bool| {
            let mut sandbox = common::kvmini_flat_with(kvm, &image, ring, seccomp);
            let start = Instant::now();
            sandbox.run().expect("run");
            start.elapsed().as_secs_f64()
        };
        let floor_run = |sync: bool, cpuid: bool| {
            let mut vm = FloorVm::new(floor_kvm, &image, ring);
            if sync {
                vm.sync_regs(ring == Ring::Zero);
            }
            if cpuid {
                vm.set_supported_cpuid(floor_kvm);
            }
            let start = Instant::now();
            vm.run(&mut |_| {});
            start.elapsed().as_secs_f64()
        };
        let side = |which: usize| match which {
            0 => kvmini_run(true),
            1 => floor_run(false, false),
            2 => floor_run(true, false),
            3 => floor_run(true, true),
            4 => kvmini_run(false),
            _ => std::thread::scope(|s| s.spawn(|| kvmini_run(false)).join().expect("thread")),
        };
        for which in 0..SIDES.len() {
            side(which);
        }
        let mut ratios: [Vec<f64>; SIDES.len()] = Default::default();
        let mut times: [Vec<f64>; SIDES.len()] = Default::default();
        for round in 0..ROUNDS {
            let mut t = [0.0f64; SIDES.len()];
            for i in 0..SIDES.len() {
                let which = (round + i) % SIDES.len();
                t[which] = side(which);
            }
            for (ratio, t_side) in ratios.iter_mut().zip(t) {
                ratio.push(t_side / t[1]);
            }
            for (times, t) in times.iter_mut().zip(t) {
                times.push(t);
            }
        }
        let r = ring.number();
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let per_call = |t: f64| t * 1e6 / f64::from(N);
        let mut line = format!("paired, ring {r}, median us/call (median ratio to the floor):");
        for ((name, times), ratio) in SIDES.iter().zip(&mut times).zip(&mut ratios) {
            let (us, ratio) = (per_call(median(times)), median(ratio));
            line.push_str(&format!(" {name} {us:.2} ({ratio:.3})"));
            let key = format!("paired.null_hypercall_ring{r}.{name}");
            fact(&format!("{key}_us"), us);
            fact(&format!("{key}_ratio"), ratio);
        }
        println!("{line}");
    }
}

/// What kvmini's seccomp filter adds to every system call of the vCPU
/// thread (KVM_RUN included): the mean time of `getpid(2)` on a thread
/// without the filter and on one with it.
fn syscall_cost() {
    const N: u32 = 200_000;
    let time = |confine: bool| {
        std::thread::spawn(move || {
            if confine {
                kvmini::seccomp::install().expect("seccomp");
            }
            let start = Instant::now();
            for _ in 0..N {
                // SAFETY: getpid takes no arguments and cannot fail.
                std::hint::black_box(unsafe { libc::syscall(libc::SYS_getpid) });
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(N)
        })
        .join()
        .expect("thread")
    };
    let (plain, confined) = (time(false), time(true));
    println!("getpid: {plain:.0} ns; under kvmini's seccomp filter {confined:.0} ns");
    fact("seccomp.syscall_ns", plain);
    fact("seccomp.syscall_filtered_ns", confined);
}

fn null_hypercall(c: &mut Criterion) {
    let Some(kvm) = common::kvm() else { return };
    allocations(&kvm);
    // The floor gets its own /dev/kvm handle, as kvmini has its own.
    let floor_kvm = kvm_ioctls::Kvm::new().expect("open /dev/kvm");
    syscall_cost();
    paired(&kvm, &floor_kvm);
    for ring in [Ring::Three, Ring::Zero] {
        let mut group = c.benchmark_group(format!("null_hypercall_ring{}", ring.number()));
        group.bench_function("kvmini", |b| {
            b.iter_custom(|iters| {
                let n = u32::try_from(iters).unwrap_or(u32::MAX);
                let mut sandbox = common::kvmini_flat(&kvm, &common::null_loop_image(n), ring);
                let start = Instant::now();
                let outcome = sandbox.run().expect("run");
                let elapsed = start.elapsed();
                assert_eq!(outcome.stats.exits, u64::from(n.max(1)) + 1);
                elapsed
            });
        });
        group.bench_function("floor", |b| {
            b.iter_custom(|iters| {
                let n = u32::try_from(iters).unwrap_or(u32::MAX);
                let mut vm = FloorVm::new(&floor_kvm, &common::null_loop_image(n), ring);
                let start = Instant::now();
                let exits = vm.run(&mut |_| {});
                let elapsed = start.elapsed();
                assert_eq!(exits, u64::from(n.max(1)) + 1);
                elapsed
            });
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = null_hypercall
}
criterion_main!(benches);
