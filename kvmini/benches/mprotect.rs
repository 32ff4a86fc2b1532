//! The cost of a Linux program's `mprotect` (docs/performance.md,
//! "mprotect"): a musl program makes 2 × N calls in one run of a reused
//! sandbox, of three kinds, and each is timed per call:
//!
//! - `page`: one 4 KiB entry of a page table that already exists changes
//!   (made read-only, then writable again);
//! - `split`: one page of a 2 MiB page is made read-only, which splits it
//!   into a spare page table, then writable again, which joins it back
//!   (flushing its 512 pages);
//! - `getpid`: the system call alone, the floor under both.
//!
//! Each run is a whole program (start, 2 × N calls, exit) with a `reset()`
//! before it; the per-call figure is the run's time over 2 × N, so a run's
//! fixed cost is spread over the calls (the `getpid` row carries the
//! same). Needs musl-gcc (`apt-get install musl-tools`).
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kvmini::kvm::Kvm;
use kvmini::output::Output;
use kvmini::sandbox::{Ending, Sandbox};

/// Calls of each kind in one run (of each pair, so 2 × N system calls).
const N: u64 = 200;

fn build_program(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("memory_calls");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/linux/memory_calls.c");
    let built = Command::new("musl-gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("musl-gcc runs (apt-get install musl-tools)");
    assert!(built.success(), "musl-gcc failed");
    out
}

fn bench(c: &mut Criterion) {
    let kvm = Kvm::open().expect("/dev/kvm");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let program = build_program(dir.path());
    let mut group = c.benchmark_group("mprotect");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(2 * N));
    for kind in ["getpid", "page", "split"] {
        let mut sandbox = Sandbox::builder()
            .elf_file(program.to_str().expect("a UTF-8 path"))
            .args(["memory_calls", "bench", kind, &N.to_string()])
            .stdout(Output::Null)
            .reusable(true)
            .build(&kvm)
            .expect("the sandbox is built");
        group.bench_function(kind, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    sandbox.reset().expect("reset");
                    let start = Instant::now();
                    let outcome = sandbox.run().expect("the run");
                    total += start.elapsed();
                    assert_eq!(outcome.ending, Ending::Exited(0), "{kind}");
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
