//! CPU state as kvmini reports it and as it leaves it between runs: the
//! registers of a crash report are the guest's at the faulting
//! instruction, and a reset sandbox starts every run from the CPU state of
//! a fresh one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use common::c_build::{cc_guest, repo_root};
use common::cpu_state::{faulting_guest, kvm_pvm, loaded_registers, rflags_at_fault, Exception};
use common::{kvm_or_skip, text};
use kvm_bindings::kvm_regs;
use kvmini::cpu::Ring;
use kvmini::kvm::Kvm;
use kvmini::output::{Capture, Output};
use kvmini::sandbox::{format_regs, Ending, Outcome, Sandbox};

/// Guest memory of the flat guests here.
const MEM: u64 = 4 << 20;
/// Where kvmini's area (and so the first stack) starts.
const SYSTEM_BASE: u64 = MEM - 0x1_0000;

fn run_flat(kvm: &Kvm, code: &[u8], ring: Ring) -> Outcome {
    let mut sandbox = Sandbox::builder()
        .flat(code)
        .ring(ring)
        .memory(MEM)
        .stdout(Output::Null)
        .build(kvm)
        .expect("the sandbox is built");
    sandbox.run().expect("the run loop does not fail")
}

#[test]
fn a_crash_reports_the_guests_registers_at_the_fault() {
    let Some(kvm) = kvm_or_skip() else { return };
    let (mut got, mut want) = (Vec::new(), Vec::new());
    for ring in [Ring::Zero, Ring::Three] {
        for fault in Exception::ALL {
            let (code, rip) = faulting_guest(fault);
            let outcome = run_flat(&kvm, &code, ring);
            let what = format!("{fault:?} at ring {}", ring.number());
            got.push(format!(
                "{what}: {:?}\n  {}",
                outcome.ending,
                format_regs(&outcome.regs)
            ));
            want.push(format!(
                "{what}: {:?}\n  {}",
                Ending::Crashed(fault.crash(rip, ring)),
                format_regs(&loaded_registers(rip, rflags_at_fault(ring)))
            ));
        }
    }
    assert_eq!(got.join("\n"), want.join("\n"));
}

/// A guest that faults with its stack pointer where kvmini's handler
/// stack is: the report still shows the guest's RSP, and the handler's
/// own pushes do not change what it reports.
#[test]
fn a_crash_with_the_stack_in_an_odd_place_reports_it() {
    let Some(kvm) = kvm_or_skip() else { return };
    for rsp in [0, SYSTEM_BASE, u64::MAX - 7] {
        // movabs rsp, imm64; ud2
        let mut code = vec![0x48, 0xBC];
        code.extend_from_slice(&rsp.to_le_bytes());
        code.extend_from_slice(&[0x0F, 0x0B]);
        let outcome = run_flat(&kvm, &code, Ring::Three);
        let Ending::Crashed(crash) = &outcome.ending else {
            panic!("expected a crash, got {:?}", outcome.ending);
        };
        assert_eq!((crash.vector, crash.rip, crash.rsp), (6, 10, rsp));
        let expected = kvm_regs {
            rsp,
            rip: 10,
            // CF clear this time.
            rflags: rflags_at_fault(Ring::Three) & !1,
            ..Default::default()
        };
        assert_eq!(format_regs(&outcome.regs), format_regs(&expected));
    }
}

/// What both SDKs' `efault` guests print: every block call answered
/// -EFAULT, and a good block still answers in the block (close(99) is
/// EBADF).
const EFAULT_OUTPUT: &str = "\
null page: -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14
kvmini's area: -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14
straddling kvmini's area: -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14
past guest memory: -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14
top of 32 bits: -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14
past 4 GiB: -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14 -14
close(99): -9
";

/// Block calls per row of the `efault` guests (every port that takes an
/// argument block).
const BLOCK_PORTS: usize = 19;

/// Runs an `efault` guest and checks its output, its status, and that
/// kvmini warned once for every block that reached it (all rows but the
/// last, whose address the SDK refuses before any exit).
fn check_efault_guest(elf: &[u8]) {
    let Some(kvm) = kvm_or_skip() else { return };
    let (stdout, warnings) = (Capture::new(), Capture::new());
    let mut sandbox = Sandbox::builder()
        .elf(elf)
        .memory(MEM)
        .stdout(Output::Capture(stdout.clone()))
        .warnings(Output::Capture(warnings.clone()))
        .build(&kvm)
        .expect("the sandbox is built");
    let outcome = sandbox.run().expect("the run loop does not fail");
    assert_eq!(text(&stdout.contents()), EFAULT_OUTPUT);
    assert_eq!(outcome.ending, Ending::Exited(0));
    let warnings = text(&warnings.contents());
    let lines: Vec<&str> = warnings.lines().collect();
    assert_eq!(lines.len(), 5 * BLOCK_PORTS, "{warnings}");
    for line in lines {
        assert!(
            line.ends_with("is not writable guest memory; -EFAULT in RAX"),
            "{line}"
        );
    }
}

#[test]
fn the_c_sdk_returns_efault_for_a_block_kvmini_cannot_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    let elf = dir.path().join("efault.elf");
    cc_guest(
        &["-Wall", "-Wextra", "-Werror"],
        &elf,
        "kvmini/tests/cpu_state/efault.c",
    );
    check_efault_guest(&fs::read(&elf).expect("the built guest"));
}

#[test]
fn the_rust_sdk_returns_efault_for_a_block_kvmini_cannot_use() {
    check_efault_guest(&fs::read(rust_guest("efault")).expect("the built guest"));
}

/// Builds the Rust guest crate `tests/cpu_state/NAME` as kvmini's build
/// script builds the built-in guests (own target directory, the host
/// target, no outer RUSTFLAGS) and returns the path of its executable.
/// One build at a time: tests run on parallel threads.
fn rust_guest(name: &str) -> PathBuf {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(PoisonError::into_inner);
    let manifest = repo_root().join(format!("kvmini/tests/cpu_state/{name}/Cargo.toml"));
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cpu_state-guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--offline",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Crelocation-model=static")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_MAKEFLAGS")
        .output()
        .expect("cargo starts");
    assert!(
        out.status.success(),
        "building {name} failed:\n{}",
        text(&out.stderr)
    );
    target_dir.join(format!("x86_64-unknown-linux-gnu/release/{name}"))
}

/// `tests/cpu_state/leftovers.c`, built once per test run.
fn leftovers_guest() -> Vec<u8> {
    static BUILT: Mutex<Option<Vec<u8>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(elf) = built.as_ref() {
        return elf.clone();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cpu_state");
    fs::create_dir_all(&dir).expect("a directory for the built guest");
    let path = dir.join("leftovers.elf");
    cc_guest(
        &["-Wall", "-Wextra", "-Werror"],
        &path,
        "kvmini/tests/cpu_state/leftovers.c",
    );
    let elf = fs::read(&path).expect("the built guest");
    *built = Some(elf.clone());
    elf
}

/// XCR0 bits of the state components the items need.
const XCR0_AVX: u64 = 1 << 2;
const XCR0_AVX512: u64 = 0b111 << 5;
const XCR0_PKRU: u64 = 1 << 9;

/// CPUID leaf `leaf`, sub-leaf `sub`, as ring-3 guest code sees it
/// (EAX, EBX, ECX, EDX). On kvm-pvm ring-3 code runs natively and `cpuid`
/// answers with the host's values; elsewhere KVM answers from the CPUID
/// kvmini gives the vCPU, KVM's supported one.
fn guest_cpuid(kvm: &Kvm, leaf: u32, sub: u32) -> [u32; 4] {
    if kvm_pvm() {
        #[allow(unused_unsafe)]
        // SAFETY: `cpuid` exists on every x86_64 CPU and only reads.
        let r = unsafe { std::arch::x86_64::__cpuid_count(leaf, sub) };
        return [r.eax, r.ebx, r.ecx, r.edx];
    }
    kvmini::cpu::cpuid_entry(kvm.supported_cpuid(), leaf, sub)
        .map_or([0; 4], |e| [e.eax, e.ebx, e.ecx, e.edx])
}

/// XCR0 as ring-3 guest code reads it, 0 where CPUID says the OS has not
/// enabled XSAVE: on kvm-pvm the host's; elsewhere what kvmini set, every
/// component KVM supports.
fn guest_xcr0(kvm: &Kvm) -> u64 {
    const OSXSAVE: u32 = 1 << 27;
    if guest_cpuid(kvm, 1, 0)[2] & OSXSAVE == 0 {
        return 0;
    }
    if kvm_pvm() {
        let (lo, hi): (u32, u32);
        // SAFETY: CPUID says the OS enabled XSAVE, so `xgetbv` of XCR0 is
        // allowed; it only reads.
        unsafe {
            std::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi,
                            options(nomem, nostack, preserves_flags));
        }
        return u64::from(lo) | (u64::from(hi) << 32);
    }
    kvmini::xstate::supported_xcr0(kvm.supported_cpuid()).unwrap_or(0)
}

/// The line `leftovers.c ITEM` prints in a fresh sandbox on this host:
/// the item's value in a fresh vCPU, or "absent" where guest code cannot
/// reach it (the guest makes the same checks).
fn fresh_value(kvm: &Kvm, item: &str) -> String {
    let xcr0 = guest_xcr0(kvm);
    let has = |bits: u64| xcr0 & bits == bits;
    let fsgsbase = guest_cpuid(kvm, 7, 0)[1] & 1 != 0;
    let ospke = guest_cpuid(kvm, 7, 0)[2] & (1 << 4) != 0;
    let value = match item {
        "fsbase" | "gsbase" if fsgsbase => "0x0",
        // kvm-pvm runs ring-3 code with the host's selectors, null ones.
        "selectors" if kvm_pvm() => "0x0",
        "selectors" => "0x1b001b001b001b",
        // FSW 0, every register empty (FTW 0xffff).
        "x87" => "0xffff",
        "fcw" => "0x37f",
        "mxcsr" => "0x1f80",
        "xmm" | "flags" => "0x0",
        "xcr0" if xcr0 != 0 => return format!("xcr0={xcr0:#x}\n"),
        // Nothing in use (XGETBV with ECX = 1, CPUID.(0xD,1):EAX bit 2).
        "xinuse" if has(XCR0_AVX) && guest_cpuid(kvm, 0xD, 1)[0] & (1 << 2) != 0 => "0x0",
        "ymm_upper" if has(XCR0_AVX) => "0x0",
        "opmask" | "zmm_upper" | "zmm16" if has(XCR0_AVX | XCR0_AVX512) => "0x0",
        // kvmini leaves CR4.PKE clear: only where ring-3 code runs under
        // the host's CR4 (kvm-pvm) can it reach PKRU.
        "pkru" if has(XCR0_PKRU) && ospke => "0x0",
        _ => "absent",
    };
    format!("{item}={value}\n")
}

/// Runs `leftovers.c ITEM` in a fresh sandbox, three times in one reusable
/// sandbox with a reset between runs, and in a fresh sandbox again (on the
/// same vCPU thread): each run must print the fresh vCPU's value, though
/// every run changed it before it ended.
fn check_restored(item: &str) {
    let Some(kvm) = kvm_or_skip() else { return };
    let elf = leftovers_guest();
    let expected = fresh_value(&kvm, item);
    let build = |reusable: bool, out: &Capture| {
        Sandbox::builder()
            .elf(elf.as_slice())
            .memory(MEM)
            .args(["leftovers.elf", item])
            .reusable(reusable)
            .stdout(Output::Capture(out.clone()))
            .build(&kvm)
            .expect("the sandbox is built")
    };
    let run_fresh = |what: &str| {
        let out = Capture::new();
        let outcome = build(false, &out)
            .run()
            .expect("the run loop does not fail");
        assert_eq!(outcome.ending, Ending::Exited(0), "{item}");
        assert_eq!(text(&out.contents()), expected, "{what}");
    };
    run_fresh("a fresh sandbox");
    let out = Capture::new();
    let mut sandbox = build(true, &out);
    for _ in 0..3 {
        let outcome = sandbox.run().expect("the run loop does not fail");
        assert_eq!(outcome.ending, Ending::Exited(0), "{item}");
        sandbox.reset().expect("reset");
    }
    assert_eq!(text(&out.contents()), expected.repeat(3), "after reset");
    run_fresh("a fresh sandbox after the others");
}

macro_rules! restored {
    ($($test:ident: $item:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check_restored($item);
            }
        )*
    };
}

restored!(
    reset_restores_the_fs_base: "fsbase",
    reset_restores_the_gs_base: "gsbase",
    reset_restores_the_data_segment_selectors: "selectors",
    reset_restores_the_x87_registers: "x87",
    reset_restores_the_x87_control_word: "fcw",
    reset_restores_mxcsr: "mxcsr",
    reset_restores_the_sse_registers: "xmm",
    reset_restores_the_avx_upper_halves: "ymm_upper",
    reset_restores_the_avx512_opmask_registers: "opmask",
    reset_restores_the_avx512_upper_halves: "zmm_upper",
    reset_restores_zmm16_to_31: "zmm16",
    reset_restores_pkru: "pkru",
    reset_restores_the_flags: "flags",
    reset_restores_the_components_in_use: "xinuse",
    xcr0_is_what_kvmini_set_or_the_hosts_on_kvm_pvm: "xcr0",
);
