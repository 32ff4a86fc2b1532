//! The hypercall and lifecycle figures of ring-3 ELF guests, the guests
//! whose memory has segment permissions and a stack guard, against flat
//! guests, which have neither: a C guest making 2,000 `getNumExits`
//! calls, the built-in hello's whole lifecycle (build, run, drop), and the
//! same two figures for flat images. It prints one line of medians and is
//! written to build against kvmini before those permissions existed too:
//! `bench/protection.sh` builds it in a scratch copy of that version and
//! runs the two binaries in turn, which gives the paired ratios.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

mod common;

use std::time::Instant;

use kvmini::cpu::Ring;
use kvmini::output::Output;
use kvmini::sandbox::Sandbox;

/// Rounds of each figure in one run of this binary.
const ROUNDS: usize = 15;
/// The calls of `bench/guests/null.c`.
const CALLS: f64 = 2000.0;

/// A figure's name and what measures it once.
type Side<'a> = (&'static str, Box<dyn Fn() -> f64 + 'a>);

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn sandbox(kvm: &kvmini::kvm::Kvm, builder: kvmini::sandbox::SandboxBuilder) -> Sandbox {
    builder
        .memory(common::FLAT_MEM)
        .stdout(Output::Null)
        .build(kvm)
        .expect("build")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(kvm) = common::kvm() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let null_elf = common::c_guest("null", dir.path());
    let flat_null = common::null_loop_image(2000);
    // Per call (us) of a run, built untimed.
    let call = |builder: kvmini::sandbox::SandboxBuilder| {
        let mut sandbox = sandbox(&kvm, builder);
        let start = Instant::now();
        let outcome = sandbox.run().expect("run");
        let elapsed = start.elapsed().as_secs_f64();
        assert_eq!(outcome.ending.status(), 0);
        elapsed * 1e6 / CALLS
    };
    // A whole lifecycle (us).
    let lifecycle = |builder: kvmini::sandbox::SandboxBuilder| {
        let start = Instant::now();
        let mut sandbox = sandbox(&kvm, builder);
        let outcome = sandbox.run().expect("run");
        drop(sandbox);
        let elapsed = start.elapsed().as_secs_f64();
        assert_eq!(outcome.stats.exits, 15);
        elapsed * 1e6
    };
    let sides: [Side<'_>; 4] = [
        (
            "elf_call_us",
            Box::new(|| call(Sandbox::builder().elf(null_elf.clone()))),
        ),
        (
            "flat_call_us",
            Box::new(|| call(Sandbox::builder().flat(flat_null.clone()).ring(Ring::Three))),
        ),
        (
            "elf_lifecycle_us",
            Box::new(|| lifecycle(Sandbox::builder().elf(kvmini::guests::HELLO.elf))),
        ),
        (
            "flat_lifecycle_us",
            Box::new(|| {
                lifecycle(
                    Sandbox::builder()
                        .flat(common::hello_image())
                        .ring(Ring::Three),
                )
            }),
        ),
    ];
    for (_, side) in &sides {
        side();
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    for round in 0..ROUNDS {
        for i in 0..sides.len() {
            let which = (round + i) % sides.len();
            times[which].push(sides[which].1());
        }
    }
    let line: Vec<String> = sides
        .iter()
        .zip(&mut times)
        .map(|((name, _), t)| format!("{name}={:.2}", median(t)))
        .collect();
    println!("{}", line.join(" "));
}
