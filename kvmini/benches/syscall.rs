//! A Linux program's system call: a static program makes `getpid` N
//! times with `syscall`, under kvmini and under the floor (a VM on
//! kvm-ioctls alone whose `syscall` reaches a stub page of one `out`, and
//! whose KVM_RUN loop resumes the guest at RCX, as kvmini does at ring 3).
//! Each criterion iteration is one call: a sample of `iters` iterations is
//! one run of a program that makes `iters` calls, timed from the start of
//! the run to its end (building is not timed).
//!
//! Before criterion runs, the comparison is also made paired (see
//! [`paired`]), with sides that take the difference apart.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

mod common;
#[path = "../tests/common/elf.rs"]
#[allow(dead_code, reason = "the tests' ELF helpers, of which this uses three")]
mod elf;

use std::time::Instant;

use common::{fact, FloorVm};
use criterion::{criterion_group, criterion_main, Criterion};
use kvmini::cpu::Ring;
use kvmini::output::Output;
use kvmini::sandbox::{Ending, Sandbox};

/// Guest memory of the Linux program: room for its stack above the image.
const LINUX_MEM: u64 = 16 << 20;
/// Where the program is loaded (its only segment, code).
const LOAD: u64 = 0x40_0000;
/// Where the floor's stub page sits in its flat image.
const FLOOR_STUB: u64 = 0x1000;

/// `getpid` `n` times (n >= 1), then `exit(0)` (n + 1 calls):
///
/// ```text
///        mov ebx, n
/// again: mov eax, 39      ; getpid
///        syscall
///        dec ebx
///        jnz again
///        mov eax, 60      ; exit
///        xor edi, edi
///        syscall
///        jmp $
/// ```
fn getpid_loop(n: u32) -> Vec<u8> {
    let mut code = vec![0xBB];
    code.extend_from_slice(&n.max(1).to_le_bytes());
    code.extend_from_slice(&[
        0xB8, 0x27, 0x00, 0x00, 0x00, 0x0F, 0x05, 0xFF, 0xCB, 0x75, 0xF5,
    ]);
    code.extend_from_slice(&[
        0xB8, 0x3C, 0x00, 0x00, 0x00, 0x31, 0xFF, 0x0F, 0x05, 0xEB, 0xFE,
    ]);
    code
}

/// [`getpid_loop`] as a static Linux executable: one read-execute
/// segment holding the headers and the code, entered after the headers.
fn linux_program(n: u32) -> Vec<u8> {
    let start = (elf::EHDR64 + elf::PHDR64) as u64;
    let code = getpid_loop(n);
    let size = start + code.len() as u64;
    let mut image = elf::header64(elf::ET_EXEC, elf::EM_X86_64, LOAD + start, 1);
    image.extend(elf::load64(elf::PF_R | elf::PF_X, 0, LOAD, size, size));
    image.extend(code);
    image
}

/// The floor's flat image: [`getpid_loop`] at 0, the stub (`out 0xE8,
/// al`, kvmini's own first instruction) at [`FLOOR_STUB`].
fn floor_image(n: u32) -> Vec<u8> {
    let mut image = getpid_loop(n);
    image.resize(usize::try_from(FLOOR_STUB).expect("fits"), 0xCC);
    image.extend_from_slice(&[0xE6, 0xE8]);
    image
}

fn kvmini_sandbox(kvm: &kvmini::kvm::Kvm, n: u32, seccomp: bool) -> Sandbox {
    Sandbox::builder()
        .elf(linux_program(n))
        .memory(LINUX_MEM)
        .stdout(Output::Null)
        .seccomp(seccomp)
        .build(kvm)
        .expect("build the kvmini sandbox")
}

/// What a floor side does beyond the least, to take kvmini's cost apart.
#[derive(Clone, Copy, PartialEq)]
enum Extra {
    None,
    /// The system registers mirrored into `kvm_run` at every exit.
    SystemRegisters,
    /// That, and kvmini's CPUID (what KVM supports).
    AndCpuid,
    /// That, and kvmini's XCR0 (the guest state KVM saves at each exit).
    AndXcr0,
}

fn floor_vm(kvm: &kvm_ioctls::Kvm, n: u32, extra: Extra) -> FloorVm {
    let mut vm = FloorVm::new(kvm, &floor_image(n), Ring::Three);
    if matches!(extra, Extra::AndCpuid | Extra::AndXcr0) {
        vm.set_supported_cpuid(kvm);
    }
    if extra == Extra::AndXcr0 {
        vm.set_kvmini_xcr0(kvm);
    }
    vm.syscall_entry(FLOOR_STUB);
    if extra != Extra::None {
        vm.sync_regs(true);
    }
    vm
}

/// Runs a kvmini program of `n` calls; the run's time, checked.
fn kvmini_run(kvm: &kvmini::kvm::Kvm, n: u32, seccomp: bool) -> std::time::Duration {
    let mut sandbox = kvmini_sandbox(kvm, n, seccomp);
    let start = Instant::now();
    let outcome = sandbox.run().expect("run");
    let elapsed = start.elapsed();
    assert_eq!(outcome.ending, Ending::Exited(0));
    assert_eq!(outcome.stats.exits, u64::from(n.max(1)) + 1);
    elapsed
}

/// Runs a floor VM of `n` calls; the run's time, checked.
fn floor_run(kvm: &kvm_ioctls::Kvm, n: u32, extra: Extra) -> std::time::Duration {
    let mut vm = floor_vm(kvm, n, extra);
    let start = Instant::now();
    let exits = vm.run_syscalls();
    let elapsed = start.elapsed();
    assert_eq!(exits, u64::from(n.max(1)) + 1);
    elapsed
}

/// The sides of the paired comparison.
const SIDES: [&str; 6] = [
    "kvmini",
    "floor",
    "floor_sync_sregs",
    "floor_sync_sregs_cpuid",
    "floor_sync_sregs_cpuid_xcr0",
    "kvmini_noseccomp",
];

/// The comparison, paired: `ROUNDS` runs of `N` calls on each side, in
/// turn, the order rotating each round; the median time of each side and
/// the median of the per-round ratios to the floor. Four more sides show
/// where a difference comes from: the floor with the system registers
/// also mirrored into `kvm_run` at every exit (kvmini needs CS and the FS
/// base of a Linux program at each call), the same with kvmini's CPUID,
/// and with its XCR0 too, and kvmini without its seccomp filter.
fn paired(kvm: &kvmini::kvm::Kvm, floor_kvm: &kvm_ioctls::Kvm) {
    const ROUNDS: usize = 15;
    const N: u32 = 4000;
    let side = |which: usize| {
        match which {
            0 => kvmini_run(kvm, N, true),
            1 => floor_run(floor_kvm, N, Extra::None),
            2 => floor_run(floor_kvm, N, Extra::SystemRegisters),
            3 => floor_run(floor_kvm, N, Extra::AndCpuid),
            4 => floor_run(floor_kvm, N, Extra::AndXcr0),
            _ => kvmini_run(kvm, N, false),
        }
        .as_secs_f64()
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
        for ((ratio, times), t_side) in ratios.iter_mut().zip(&mut times).zip(t) {
            ratio.push(t_side / t[1]);
            times.push(t_side);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut line = String::from("paired, Linux system call, median us/call (ratio to the floor):");
    for ((name, times), ratio) in SIDES.iter().zip(&mut times).zip(&mut ratios) {
        let (us, ratio) = (median(times) * 1e6 / f64::from(N), median(ratio));
        line.push_str(&format!(" {name} {us:.2} ({ratio:.3})"));
        fact(&format!("paired.linux_syscall.{name}_us"), us);
        fact(&format!("paired.linux_syscall.{name}_ratio"), ratio);
    }
    println!("{line}");
}

fn linux_syscall(c: &mut Criterion) {
    let Some(kvm) = common::kvm() else { return };
    // The floor gets its own /dev/kvm handle, as kvmini has its own.
    let floor_kvm = kvm_ioctls::Kvm::new().expect("open /dev/kvm");
    paired(&kvm, &floor_kvm);
    let mut group = c.benchmark_group("linux_syscall");
    group.bench_function("kvmini", |b| {
        b.iter_custom(|iters| kvmini_run(&kvm, u32::try_from(iters).unwrap_or(u32::MAX), true));
    });
    group.bench_function("floor", |b| {
        b.iter_custom(|iters| {
            floor_run(
                &floor_kvm,
                u32::try_from(iters).unwrap_or(u32::MAX),
                Extra::None,
            )
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = linux_syscall
}
criterion_main!(benches);
