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

use common::cpu_state::{faulting_guest, loaded_registers, rflags_at_fault, Exception};
use common::{kvm_or_skip, kvmini, text};
use kvmini::cpu::Ring;
use kvmini::sandbox::format_regs;

#[test]
fn the_cli_prints_the_guests_registers_at_the_fault() {
    let Some(_kvm) = kvm_or_skip() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    for ring in [Ring::Zero, Ring::Three] {
        for fault in Exception::ALL {
            let (code, rip) = faulting_guest(fault);
            let image = dir.path().join("fault.bin");
            fs::write(&image, &code).expect("write the image");
            let ring_arg = ring.number().to_string();
            let out = kvmini()
                .args(["run", "--flat", "--mem", "4M", "--ring", &ring_arg])
                .arg(&image)
                .output()
                .expect("kvmini starts");
            let what = format!("{fault:?} at ring {}", ring.number());
            assert_eq!(out.status.code(), Some(126), "{what}");
            assert_eq!(text(&out.stdout), "", "{what}");
            let expected = format!(
                "kvmini: {}\n  registers at the fault:\n  {}\n",
                fault.crash(rip, ring),
                format_regs(&loaded_registers(rip, rflags_at_fault(ring)))
            );
            assert_eq!(text(&out.stderr), expected, "{what}");
        }
    }
}
