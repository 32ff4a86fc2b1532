//! Figure 2, the VM lifecycle (create, load, run hello, destroy), and
//! figure 3, reuse (run + `reset` of a reusable sandbox against a fresh
//! lifecycle).
//!
//! Lifecycle: kvmini's flat hello at ring 3 and ring 0 and the built-in ELF
//! hello at ring 3, against the floor running the same flat hello at the
//! same ring (15 exits each). Before criterion runs, a breakdown pass times
//! the phases: the floor's (create VM, memory, create vCPU, load, run,
//! teardown), kvmini's (build, run, drop; with and without the seccomp
//! filter), kvmini's build replayed step by step through its public
//! modules in the order `Sandbox::builder().build()` takes them, and each
//! ioctl of its vCPU setup.
//!
//! Reuse: the exit-at-once flat guest and the built-in hello, both ring 3.
//! Before criterion runs, a paired pass times run, reset and a fresh
//! lifecycle in turn, with and without the seccomp filter, and what a run
//! with the filter starts with (a thread, the filter installed on it).
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

mod common;

use std::time::{Duration, Instant};

use common::{fact, floor_lifecycle, Phases};
use criterion::{criterion_group, criterion_main, Criterion};
use kvmini::arch::x86_64::boot::{boot_state, BootSpec};
use kvmini::cpu::Ring;
use kvmini::kvm::Kvm;
use kvmini::loader::LoadWindow;
use kvmini::modes::CpuMode;
use kvmini::output::Output;
use kvmini::sandbox::{Ending, Sandbox};

/// What a lifecycle runs.
#[derive(Clone, Copy)]
enum Guest {
    /// [`common::hello_image`] at this ring.
    FlatHello(Ring),
    /// The built-in hello (Rust, ELF, ring 3).
    ElfHello,
    /// [`common::exit_image`] at ring 3.
    Exit,
}

fn builder(guest: Guest, seccomp: bool) -> kvmini::sandbox::SandboxBuilder {
    let b = Sandbox::builder()
        .memory(common::FLAT_MEM)
        .stdout(Output::Null)
        .seccomp(seccomp);
    match guest {
        Guest::FlatHello(ring) => b.flat(common::hello_image()).ring(ring),
        Guest::ElfHello => b.elf(kvmini::guests::HELLO.elf),
        Guest::Exit => b.flat(common::exit_image()).ring(Ring::Three),
    }
}

fn exits(guest: Guest) -> u64 {
    match guest {
        Guest::Exit => 1,
        _ => 15,
    }
}

/// One kvmini lifecycle; returns (build, run, drop) times.
fn kvmini_lifecycle(kvm: &Kvm, guest: Guest, seccomp: bool) -> [Duration; 3] {
    let t0 = Instant::now();
    let mut sandbox = builder(guest, seccomp).build(kvm).expect("build");
    let t1 = Instant::now();
    let outcome = sandbox.run().expect("run");
    let t2 = Instant::now();
    drop(sandbox);
    let t3 = Instant::now();
    assert_eq!(outcome.stats.exits, exits(guest));
    [t1 - t0, t2 - t1, t3 - t2]
}

/// kvmini's build of a flat hello, replayed through its public modules in
/// the order `Sandbox::from_parts` takes them; returns the time of each
/// step (allocate memory, load the image, page tables and system tables,
/// create the VM with its memory slot, create and set up the vCPU,
/// teardown). Grants, seccomp and the hypercall state are left out.
fn kvmini_build_steps(kvm: &Kvm, ring: Ring) -> [Duration; 6] {
    let image = common::hello_image();
    let t0 = Instant::now();
    let (mem, _) =
        kvmini::memory::allocate_with(common::FLAT_MEM, Default::default()).expect("allocate");
    let layout = kvmini::layout::Layout::new(common::FLAT_MEM);
    let t1 = Instant::now();
    let window = LoadWindow {
        start: 0,
        end: layout.system_base,
    };
    let loaded = kvmini::loader::load_flat(&mem, &image, &window).expect("load");
    let t2 = Instant::now();
    let boot = boot_state(
        &layout,
        &BootSpec {
            mode: CpuMode::Long,
            ring,
            flat: true,
            entry: loaded.entry,
            fsgsbase: kvmini::cpu::has_fsgsbase(kvm.supported_cpuid()),
            syscall_entry: None,
        },
    );
    boot.tables.write_to(&mem).expect("tables");
    let t3 = Instant::now();
    let vm = kvmini::vm::Vm::new(kvm, mem).expect("vm");
    let t4 = Instant::now();
    let vcpu = vm.create_vcpu(kvm, &boot).expect("vcpu");
    let t5 = Instant::now();
    drop(vcpu);
    drop(vm);
    let t6 = Instant::now();
    [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5]
}

/// The ioctls of kvmini's vCPU setup (`Vm::create_vcpu`), each timed, with
/// kvmini's own values: KVM_CREATE_VCPU, KVM_SET_CPUID2 (the supported
/// CPUID), KVM_GET_SREGS, KVM_SET_SREGS, KVM_SET_REGS, KVM_SET_FPU,
/// KVM_GET_VCPU_MMAP_SIZE. Means over `n` vCPUs, one VM each.
fn vcpu_setup(kvm: &Kvm, n: u32) {
    let layout = kvmini::layout::Layout::new(common::FLAT_MEM);
    let boot = boot_state(
        &layout,
        &BootSpec {
            mode: CpuMode::Long,
            ring: Ring::Three,
            flat: true,
            entry: 0,
            fsgsbase: false,
            syscall_entry: None,
        },
    );
    let names = [
        "create_vcpu",
        "set_cpuid2",
        "get_sregs",
        "set_sregs",
        "set_regs",
        "set_fpu",
        "get_vcpu_mmap_size",
    ];
    let mut sums = [Duration::ZERO; 7];
    for _ in 0..n {
        let vm = kvm.handle().create_vm().expect("KVM_CREATE_VM");
        let mut t = [Instant::now(); 8];
        let vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
        t[1] = Instant::now();
        vcpu.set_cpuid2(kvm.supported_cpuid()).expect("cpuid");
        t[2] = Instant::now();
        let sregs = vcpu.get_sregs().expect("get sregs");
        t[3] = Instant::now();
        vcpu.set_sregs(&boot.sregs.over(sregs)).expect("set sregs");
        t[4] = Instant::now();
        vcpu.set_regs(&boot.regs).expect("set regs");
        t[5] = Instant::now();
        vcpu.set_fpu(&boot.fpu).expect("set fpu");
        t[6] = Instant::now();
        kvm.handle().get_vcpu_mmap_size().expect("mmap size");
        t[7] = Instant::now();
        for (i, sum) in sums.iter_mut().enumerate() {
            *sum += t[i + 1] - t[i];
        }
    }
    let line: Vec<String> = names
        .iter()
        .zip(sums)
        .map(|(name, d)| {
            fact(&format!("vcpu_setup.{name}_us"), micros(d, n));
            format!("{name} {:.1}", micros(d, n))
        })
        .collect();
    println!("vCPU setup, mean of {n} (us): {}", line.join(", "));
}

fn micros(d: Duration, n: u32) -> f64 {
    d.as_secs_f64() * 1e6 / f64::from(n)
}

/// The breakdown pass: `n` lifecycles of each kind, interleaved, phases
/// averaged.
fn breakdown(kvm: &Kvm, floor_kvm: &kvm_ioctls::Kvm) {
    let n = std::env::var("KVMINI_BENCH_BREAKDOWN_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200u32);
    for ring in [Ring::Three, Ring::Zero] {
        let r = ring.number();
        let guest = Guest::FlatHello(ring);
        let mut floor = Phases::default();
        let mut with = [Duration::ZERO; 3];
        let mut without = [Duration::ZERO; 3];
        let mut steps = [Duration::ZERO; 6];
        // One of each first, untimed, so that no kind pays for warming up.
        floor_lifecycle(floor_kvm, &common::hello_image(), ring);
        kvmini_lifecycle(kvm, guest, true);
        kvmini_lifecycle(kvm, guest, false);
        kvmini_build_steps(kvm, ring);
        for _ in 0..n {
            let (count, phases) = floor_lifecycle(floor_kvm, &common::hello_image(), ring);
            assert_eq!(count, 15);
            floor.add(&phases);
            for (sum, d) in with.iter_mut().zip(kvmini_lifecycle(kvm, guest, true)) {
                *sum += d;
            }
            for (sum, d) in without.iter_mut().zip(kvmini_lifecycle(kvm, guest, false)) {
                *sum += d;
            }
            for (sum, d) in steps.iter_mut().zip(kvmini_build_steps(kvm, ring)) {
                *sum += d;
            }
        }
        println!("lifecycle breakdown, flat hello at ring {r}, mean of {n} (µs):");
        let floor_rows = [
            ("create_vm", floor.create_vm),
            ("memory", floor.memory),
            ("create_vcpu", floor.create_vcpu),
            ("load", floor.load),
            ("run", floor.run),
            ("teardown", floor.teardown),
            ("total", floor.total()),
        ];
        for (name, d) in floor_rows {
            println!("  floor  {name:<12} {:>9.1}", micros(d, n));
            fact(&format!("breakdown.ring{r}.floor.{name}"), micros(d, n));
        }
        for (label, sums) in [("kvmini", with), ("kvmini_noseccomp", without)] {
            let total: Duration = sums.iter().sum();
            for (name, d) in ["build", "run", "drop"].iter().zip(sums) {
                println!("  {label:<17} {name:<8} {:>9.1}", micros(d, n));
                fact(&format!("breakdown.ring{r}.{label}.{name}"), micros(d, n));
            }
            println!("  {label:<17} total    {:>9.1}", micros(total, n));
            fact(
                &format!("breakdown.ring{r}.{label}.total"),
                micros(total, n),
            );
        }
        let step_names = [
            "allocate_memory",
            "load_image",
            "write_tables",
            "vm_new",
            "create_vcpu",
            "teardown",
        ];
        for (name, d) in step_names.iter().zip(steps) {
            println!("  kvmini step {name:<16} {:>9.1}", micros(d, n));
            fact(
                &format!("breakdown.ring{r}.kvmini_step.{name}"),
                micros(d, n),
            );
        }
    }
}

fn lifecycle(c: &mut Criterion) {
    let Some(kvm) = common::kvm() else { return };
    let floor_kvm = kvm_ioctls::Kvm::new().expect("open /dev/kvm");
    if std::env::var_os("KVMINI_BENCH_NO_BREAKDOWN").is_none() {
        breakdown(&kvm, &floor_kvm);
        vcpu_setup(&kvm, 200);
    }
    for ring in [Ring::Three, Ring::Zero] {
        let mut group = c.benchmark_group(format!("lifecycle_ring{}", ring.number()));
        group.bench_function("kvmini_flat", |b| {
            b.iter(|| kvmini_lifecycle(&kvm, Guest::FlatHello(ring), true));
        });
        if ring == Ring::Three {
            group.bench_function("kvmini_elf", |b| {
                b.iter(|| kvmini_lifecycle(&kvm, Guest::ElfHello, true));
            });
        }
        group.bench_function("floor", |b| {
            b.iter(|| floor_lifecycle(&floor_kvm, &common::hello_image(), ring));
        });
        group.finish();
    }
}

/// Reuse, paired and taken apart: rounds of (run + reset of a reusable
/// sandbox) and (a fresh lifecycle), with the seccomp filter on and off,
/// in turn, the order rotating each round; mean run, reset and lifecycle.
/// Then what kvmini's run does before the guest starts when seccomp is on:
/// a fresh thread, and the filter installed on it.
fn reuse_breakdown(kvm: &Kvm) {
    let n = 200u32;
    for (name, guest) in [("exit", Guest::Exit), ("hello", Guest::ElfHello)] {
        let mut reusable = [true, false].map(|seccomp| {
            builder(guest, seccomp)
                .reusable(true)
                .build(kvm)
                .expect("build")
        });
        // [run, reset, fresh] with seccomp, then without.
        let mut sums = [[Duration::ZERO; 3]; 2];
        for round in 0..=n {
            for i in 0..4 {
                let kind = (round as usize + i) % 4;
                let side = kind / 2;
                let seccomp = side == 0;
                let sum = &mut sums[side];
                if kind % 2 == 0 {
                    let sandbox = &mut reusable[side];
                    let t0 = Instant::now();
                    sandbox.run().expect("run");
                    let t1 = Instant::now();
                    sandbox.reset().expect("reset");
                    if round > 0 {
                        sum[0] += t1 - t0;
                        sum[1] += t1.elapsed();
                    }
                } else {
                    let t0 = Instant::now();
                    kvmini_lifecycle(kvm, guest, seccomp);
                    if round > 0 {
                        sum[2] += t0.elapsed();
                    }
                }
            }
        }
        for (side, label) in ["", "_noseccomp"].iter().enumerate() {
            let [run, reset, fresh] = sums[side].map(|d| micros(d, n));
            println!(
                "reuse, {name}{label}: run {run:.1} us + reset {reset:.1} us; fresh lifecycle {fresh:.1} us: {:.1}x",
                fresh / (run + reset)
            );
            fact(&format!("reuse.{name}.run{label}_us"), run);
            fact(&format!("reuse.{name}.reset{label}_us"), reset);
            fact(&format!("reuse.{name}.fresh{label}_us"), fresh);
        }
    }
    let start = Instant::now();
    for _ in 0..n {
        std::thread::scope(|s| s.spawn(|| ()).join().expect("thread"));
    }
    let spawn = micros(start.elapsed(), n);
    let start = Instant::now();
    for _ in 0..n {
        std::thread::scope(|s| {
            s.spawn(|| kvmini::seccomp::install().expect("seccomp"))
                .join()
                .expect("thread")
        });
    }
    let confined = micros(start.elapsed(), n);
    println!(
        "thread spawn + join {spawn:.1} us; with the seccomp filter installed {confined:.1} us"
    );
    fact("reuse.thread_spawn_us", spawn);
    fact("reuse.thread_seccomp_us", confined);
    handoff();
}

/// What handing a run to a pooled confined vCPU thread costs (an empty
/// job, there and back), and why the caller pins the thread to its CPU
/// first: a round trip between two plain threads on different CPUs and on
/// one CPU. Medians of 300.
fn handoff() {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let timed = |f: &mut dyn FnMut()| {
        median(
            (0..300)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect(),
        )
    };
    let pooled = timed(&mut || {
        kvmini::vcpu_thread::VcpuThread::get(kvmini::vcpu_thread::DEFAULT_STACK_SIZE)
            .expect("vCPU thread")
            .run(|| ())
            .expect("the thread answers");
    });
    let round_trip = |one_cpu: bool| {
        let (to, from_caller) = std::sync::mpsc::channel::<()>();
        let (back, from_peer) = std::sync::mpsc::channel::<()>();
        let here = rustix::thread::sched_getcpu();
        let old = rustix::thread::sched_getaffinity(None).expect("affinity");
        let mut cpu = rustix::thread::CpuSet::new();
        cpu.set(here);
        let peer = std::thread::spawn(move || {
            if one_cpu {
                rustix::thread::sched_setaffinity(None, &cpu).expect("pin");
            }
            for () in from_caller {
                back.send(()).expect("send");
            }
        });
        if one_cpu {
            rustix::thread::sched_setaffinity(None, &cpu).expect("pin");
        } else if old.count() < 2 {
            return f64::NAN;
        }
        let us = timed(&mut || {
            to.send(()).expect("send");
            from_peer.recv().expect("recv");
        });
        drop(to);
        peer.join().expect("peer");
        rustix::thread::sched_setaffinity(None, &old).expect("unpin");
        us
    };
    let (apart, together) = (round_trip(false), round_trip(true));
    println!(
        "handoff to a pooled vCPU thread and back {pooled:.1} us; two-thread round trip, \
         free to run on any CPU {apart:.1} us, both on one CPU {together:.1} us"
    );
    fact("reuse.handoff_us", pooled);
    fact("reuse.round_trip_any_cpu_us", apart);
    fact("reuse.round_trip_one_cpu_us", together);
}

fn reuse(c: &mut Criterion) {
    let Some(kvm) = common::kvm() else { return };
    if std::env::var_os("KVMINI_BENCH_NO_BREAKDOWN").is_none() {
        reuse_breakdown(&kvm);
    }
    for (name, guest) in [("exit", Guest::Exit), ("hello", Guest::ElfHello)] {
        let mut group = c.benchmark_group(format!("reuse_{name}"));
        let mut sandbox = builder(guest, true)
            .reusable(true)
            .build(&kvm)
            .expect("build");
        group.bench_function("reset_run", |b| {
            b.iter(|| {
                let outcome = sandbox.run().expect("run");
                sandbox.reset().expect("reset");
                assert!(matches!(outcome.ending, Ending::Exited(0) | Ending::Halted));
                outcome.stats.exits
            });
        });
        group.bench_function("fresh", |b| {
            b.iter(|| kvmini_lifecycle(&kvm, guest, true));
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = lifecycle, reuse
}
criterion_main!(benches);
