//! Figure 8, scale: 1, 2, 4, 8, 16 and 64 sandboxes at once, one thread
//! each, against as many floor VMs on as many threads.
//!
//! - Hypercalls: the threads share 8,192 `getNumExits` calls (flat guest,
//!   ring 3); each builds its VM untimed, then all start together and the
//!   round lasts until the last one finishes.
//! - Lifecycles: the threads share 128 lifecycles of the flat hello at ring
//!   3 (build, run, drop), all timed.
//!
//! A criterion iteration is one round; throughput is the shared total over
//! the round's time. On a machine with two cores the curves flatten at 2.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

mod common;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::{fact, FloorVm};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use kvmini::cpu::Ring;
use kvmini::kvm::Kvm;

const LEVELS: [u32; 6] = [1, 2, 4, 8, 16, 64];
const TOTAL_CALLS: u32 = 8192;
const TOTAL_LIFECYCLES: u32 = 128;

/// One round: `threads` threads each prepare (untimed), then all start at
/// once and do their share; returns the time from the start to the last
/// finish. The clock starts once every thread is ready and before any is
/// let go, so a thread that runs before the timing thread is scheduled
/// again is still counted.
fn round<P: Send>(
    threads: u32,
    prepare: impl Fn() -> P + Sync,
    work: impl Fn(P) + Sync,
) -> Duration {
    let parties = usize::try_from(threads).expect("fits") + 1;
    let (ready, go) = (Barrier::new(parties), Barrier::new(parties));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let prepared = prepare();
                ready.wait();
                go.wait();
                work(prepared);
            });
        }
        ready.wait();
        let start = Instant::now();
        go.wait();
        // The scope joins every thread before it returns.
        start
    })
    .elapsed()
}

/// `iters` rounds one after another, for criterion's `iter_custom`: their
/// total time.
fn rounds<P: Send>(
    iters: u64,
    threads: u32,
    prepare: impl Fn() -> P + Sync,
    work: impl Fn(P) + Sync,
) -> Duration {
    (0..iters).map(|_| round(threads, &prepare, &work)).sum()
}

/// `iters` rounds in which each thread runs `lifecycle` `share` times,
/// with nothing prepared untimed.
fn lifecycle_rounds(iters: u64, threads: u32, share: u32, lifecycle: impl Fn() + Sync) -> Duration {
    rounds(
        iters,
        threads,
        || (),
        |()| {
            for _ in 0..share {
                lifecycle();
            }
        },
    )
}

fn hypercalls(c: &mut Criterion, kvm: &Kvm, floor_kvm: &kvm_ioctls::Kvm) {
    let mut group = c.benchmark_group("scale_hypercalls");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(u64::from(TOTAL_CALLS)));
    for threads in LEVELS {
        let image = common::null_loop_image(TOTAL_CALLS / threads);
        group.bench_with_input(BenchmarkId::new("kvmini", threads), &threads, |b, &n| {
            b.iter_custom(|iters| {
                rounds(
                    iters,
                    n,
                    || common::kvmini_flat(kvm, &image, Ring::Three),
                    |mut sandbox| {
                        sandbox.run().expect("run");
                    },
                )
            });
        });
        group.bench_with_input(BenchmarkId::new("floor", threads), &threads, |b, &n| {
            b.iter_custom(|iters| {
                rounds(
                    iters,
                    n,
                    || FloorVm::new(floor_kvm, &image, Ring::Three),
                    |mut vm| {
                        vm.run(&mut |_| {});
                    },
                )
            });
        });
    }
    group.finish();
}

fn lifecycles(c: &mut Criterion, kvm: &Kvm, floor_kvm: &kvm_ioctls::Kvm) {
    let mut group = c.benchmark_group("scale_lifecycles");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(u64::from(TOTAL_LIFECYCLES)));
    let hello = common::hello_image();
    for threads in LEVELS {
        let share = TOTAL_LIFECYCLES / threads;
        group.bench_with_input(BenchmarkId::new("kvmini", threads), &threads, |b, &n| {
            b.iter_custom(|iters| {
                lifecycle_rounds(iters, n, share, || {
                    let mut sandbox = common::kvmini_flat(kvm, &hello, Ring::Three);
                    sandbox.run().expect("run");
                })
            });
        });
        group.bench_with_input(BenchmarkId::new("floor", threads), &threads, |b, &n| {
            b.iter_custom(|iters| {
                lifecycle_rounds(iters, n, share, || {
                    common::floor_lifecycle(floor_kvm, &hello, Ring::Three);
                })
            });
        });
    }
    group.finish();
}

fn scale(c: &mut Criterion) {
    let Some(kvm) = common::kvm() else { return };
    let floor_kvm = kvm_ioctls::Kvm::new().expect("open /dev/kvm");
    fact("scale.total_calls", f64::from(TOTAL_CALLS));
    fact("scale.total_lifecycles", f64::from(TOTAL_LIFECYCLES));
    fact(
        "scale.cores",
        std::thread::available_parallelism().map_or(0, |n| n.get()) as f64,
    );
    hypercalls(c, &kvm, &floor_kvm);
    lifecycles(c, &kvm, &floor_kvm);
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = scale
}
criterion_main!(benches);
