//! The classic CPU modes (`--mode`): the built-in flat hello of each mode,
//! the `display` hypercall from 16- and 32-bit code, `--verbose`'s
//! register setup, and the refusals.
//!
//! Some hosts' KVM cannot run 32-bit paging: nested KVM through kvm-pvm
//! ends such a guest with `KVM_EXIT_SHUTDOWN` before its first
//! instruction. To tell that from a kvmini bug, a probe here builds a tiny
//! VM of its own with kvm-ioctls, without kvmini, and runs two
//! instructions under the same kind of paging. When the probe gets a
//! shutdown, the test checks that kvmini reports the refusal instead.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::modes::{assert_refused, probe, run_mode, Paging32};
use common::{assert_hello, kvm_or_skip, kvmini_output, text};
use kvmini::cpu::Ring;
use kvmini::guests;
use kvmini::modes::{self, CpuMode};
use kvmini::sandbox::Sandbox;

/// The one-line report of the binary when the host refuses `mode`.
fn refusal_line(mode: CpuMode) -> String {
    let (name, what, instead) = match mode {
        CpuMode::Paged32 => (
            "paged32",
            "32-bit protected mode with two-level (non-PAE) paging",
            "--mode pae32 or --mode long may work instead (--mode long does wherever kvmini \
             runs; --mode protected runs 32-bit code without paging)",
        ),
        CpuMode::Pae32 => (
            "pae32",
            "32-bit protected mode with PAE paging",
            "--mode long works instead (--mode protected runs 32-bit code without paging)",
        ),
        other => panic!("no host refuses --mode {other}"),
    };
    format!(
        "kvmini: this host's KVM refused to run --mode {name} ({what}): KVM_EXIT_SHUTDOWN \
         before the first instruction completed (0 exits served); {instead}\n"
    )
}

/// Runs `kvmini ARGS`, checks its status, and returns (stdout, stderr).
fn kvmini_status(args: &[&str], status: i32) -> (String, String) {
    let out = kvmini_output(args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(status),
        "kvmini {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    (stdout, stderr)
}

/// The hello of a paged 32-bit mode: the full check where the probe runs,
/// the refusal (library and binary) where it gets a shutdown.
fn paged_hello(paging: Paging32) {
    let Some(host_runs) = probe(paging) else {
        return;
    };
    let Some(kvm) = kvm_or_skip() else { return };
    let mode = paging.mode();
    let run = run_mode(&kvm, mode, guests::HELLO_32);
    if host_runs {
        assert_hello(&run, guests::HELLO_32);
        return;
    }
    assert_refused(&run, mode);
    let (stdout, stderr) = kvmini_status(&["demo", "hello", "--mode", mode.name()], 126);
    assert_eq!(stdout, "");
    assert_eq!(stderr, refusal_line(mode));
}

#[test]
fn paged32_hello_or_the_hosts_refusal() {
    paged_hello(Paging32::NonPae);
}

#[test]
fn pae32_hello_or_the_hosts_refusal() {
    paged_hello(Paging32::Pae);
}

#[test]
fn long_mode_is_the_default_and_unchanged() {
    let Some(kvm) = kvm_or_skip() else { return };
    let default = Sandbox::builder()
        .flat(vec![0xF4])
        .build(&kvm)
        .expect("a flat image builds");
    assert_eq!(default.mode(), CpuMode::Long);
    // The 64-bit classic hello, as a flat image in long mode.
    #[rustfmt::skip]
    let hello64 = [
        &[0x66, 0xBA, 0xE9, 0x00][..],               // mov dx, 0xE9
        &b"Hello, world!\n".iter().flat_map(|&c| [0xB0, c, 0xEE]).collect::<Vec<u8>>(),
                                                     // mov al, c; out dx, al
        &[0x48, 0xC7, 0x04, 0x25, 0x00, 0x04, 0x00, 0x00,
          0x2A, 0x00, 0x00, 0x00],                   // mov qword [0x400], 42
        &[0xB8, 0x2A, 0x00, 0x00, 0x00],             // mov eax, 42
        &[0xF4],                                     // hlt
    ]
    .concat();
    let run = run_mode(&kvm, CpuMode::Long, &hello64);
    assert_hello(&run, &hello64);
    // `demo hello --mode long` is the ring-3 Rust hello, as without --mode.
    let plain = kvmini_status(&["demo", "hello"], 0);
    let long = kvmini_status(&["demo", "hello", "--mode", "long"], 0);
    assert_eq!(plain, ("Hello, world!\n".to_owned(), String::new()));
    assert_eq!(long, plain);
    let (_, verbose) = kvmini_status(&["demo", "hello", "--mode", "long", "--verbose"], 0);
    assert!(
        verbose.contains("kvmini: vCPU: 64-bit long mode, ring 3,"),
        "{verbose}"
    );
}

#[test]
fn every_mode_through_the_binary() {
    let Some(_) = kvm_or_skip() else { return };
    let Some(non_pae) = probe(Paging32::NonPae) else {
        return;
    };
    let Some(pae) = probe(Paging32::Pae) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    for mode in CpuMode::ALL {
        let hello = match guests::hello(mode) {
            Some(image) => image,
            None => continue,
        };
        let path = dir.path().join(format!("{mode}.bin"));
        std::fs::write(&path, hello).expect("write the image");
        let runs = match mode {
            CpuMode::Paged32 => non_pae,
            CpuMode::Pae32 => pae,
            _ => true,
        };
        let path = path.to_str().expect("UTF-8 temp path");
        for args in [
            vec!["run", "--flat", path, "--mode", mode.name(), "--stats"],
            vec!["demo", "hello", "--mode", mode.name(), "--stats"],
        ] {
            if runs {
                let (stdout, stderr) = kvmini_status(&args, 0);
                assert_eq!(stdout, "Hello, world!\n", "{args:?}");
                assert!(
                    stderr.contains("kvmini: 15 exits: io 14, hlt 1, mmio 0, other 0;"),
                    "{args:?}: {stderr}"
                );
                assert!(
                    stderr.contains("kvmini: final rip=")
                        && stderr.contains(" rax=0x2a (42), status 0"),
                    "{args:?}: {stderr}"
                );
            } else {
                let (stdout, stderr) = kvmini_status(&args, 126);
                assert_eq!(stdout, "");
                assert!(stderr.starts_with(&refusal_line(mode)), "{stderr}");
            }
        }
    }
}

#[test]
fn verbose_shows_each_modes_registers() {
    let Some(_) = kvm_or_skip() else { return };
    let cases: [(CpuMode, &[&str]); 4] = [
        (
            CpuMode::Real,
            &[
                "kvmini: vCPU: 16-bit real mode (--mode real), ring 0, CS:IP = 0x0:0x0 (entry), SS:SP = 0x0:0x7000\n",
                "kvmini:   CR0 = 0x10 (ET), CR4 = 0, EFER = 0\n",
                "kvmini:   CS = 0x0 (base 0x0, limit 0xffff, 16-bit code, DPL 0), \
                 DS = ES = FS = GS = SS = 0x0 (base 0x0, limit 0xffff, 16-bit data, DPL 0)\n",
                "no GDT, no page tables; IDTR base 0x0, limit 0x3ff: the interrupt vector table",
            ],
        ),
        (
            CpuMode::Protected,
            &[
                "kvmini: vCPU: 32-bit protected mode without paging (--mode protected), ring 0, EIP = 0x0 (entry), ESP = ",
                "kvmini:   CR0 = 0x11 (PE|ET), CR4 = 0, EFER = 0\n",
                "kvmini:   CS = 0x8 (base 0x0, limit 0xffffffff, 32-bit code, DPL 0), \
                 DS = ES = FS = GS = SS = 0x10 (base 0x0, limit 0xffffffff, 32-bit data, DPL 0)\n",
                "GDT at 0x3ff8000, limit 0x17: null, 32-bit code 0x8, 32-bit data 0x10",
            ],
        ),
        (
            CpuMode::Paged32,
            &[
                "kvmini:   CR0 = 0x80000011 (PE|ET|PG), CR4 = 0x10 (PSE), EFER = 0, CR3 = 0x3ff0000 (page directory)\n",
                "kvmini:   CS = 0x8 (base 0x0, limit 0xffffffff, 32-bit code, DPL 0)",
                "4 MiB pages (PS), identity-mapped",
                "page directory (CR3), 4 MiB pages",
            ],
        ),
        (
            CpuMode::Pae32,
            &[
                "kvmini:   CR0 = 0x80000011 (PE|ET|PG), CR4 = 0x20 (PAE), EFER = 0, CR3 = 0x3ff0000 (PDPT)\n",
                "kvmini:   CS = 0x8 (base 0x0, limit 0xffffffff, 32-bit code, DPL 0)",
                "page tables: PDPT at 0x3ff0000, page directories from 0x3ff2000, 2 MiB pages (PS)",
                "PDPT (CR3)",
            ],
        ),
    ];
    for (mode, expected) in cases {
        // The setup is printed before the run, whether the host runs it or not.
        let out = kvmini_output(&["demo", "hello", "--mode", mode.name(), "--verbose"]);
        let stderr = text(&out.stderr);
        for line in expected {
            assert!(
                stderr.contains(line),
                "--mode {mode}: {line:?} not in\n{stderr}"
            );
        }
        assert!(!stderr.contains("64-bit long mode"), "{stderr}");
    }
}

/// Checks that kvmini refuses `args` with status 125 and one line.
fn refused(args: &[&str]) -> String {
    let (stdout, stderr) = kvmini_status(args, 125);
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn modes_other_than_long_take_flat_images_at_ring_0() {
    assert_eq!(
        refused(&["demo", "hello", "--mode", "real", "--ring", "3"]),
        "kvmini: --ring 3 needs --mode long: in --mode real the guest runs at ring 0 \
         (leave --ring out, or give --ring 0)\n"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let image = dir.path().join("hello.bin");
    std::fs::write(&image, guests::HELLO_32).expect("write the image");
    let image = image.to_str().expect("UTF-8 temp path");
    assert_eq!(
        refused(&["run", "--flat", image, "--mode", "pae32", "--ring", "3"]),
        "kvmini: --ring 3 needs --mode long: in --mode pae32 the guest runs at ring 0 \
         (leave --ring out, or give --ring 0)\n"
    );
    assert_eq!(
        refused(&["run", image, "--mode", "protected"]),
        "kvmini: --mode protected runs flat images only (run --flat IMAGE): \
         ELF guests are 64-bit and run in long mode\n"
    );
    assert_eq!(
        refused(&["demo", "hypercalls", "--mode", "real"]),
        "kvmini: --mode real: only the hello demo has a built-in image for this mode \
         (kvmini demo hello --mode real)\n"
    );
    // clap's whole message, the possible values included.
    let (stdout, stderr) = kvmini_status(&["demo", "hello", "--mode", "v86"], 125);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "kvmini: invalid value 'v86' for '--mode <MODE>'\n  \
         [possible values: real, protected, paged32, pae32, long]\n\
         \n\
         For more information, try '--help'.\n"
    );
    // The library refuses the same.
    let Some(kvm) = kvm_or_skip() else { return };
    let error = Sandbox::builder()
        .flat(guests::HELLO_REAL)
        .mode(CpuMode::Real)
        .ring(Ring::Three)
        .build(&kvm)
        .expect_err("ring 3 is refused");
    assert_eq!(
        error.to_string(),
        modes::ModeError::RingThree(CpuMode::Real).to_string()
    );
}
