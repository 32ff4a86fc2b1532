//! A guest that ended by itself stays ended: `run` again is an error until
//! `reset`, whatever way it ended; a stopped guest goes on from where it
//! was stopped. Each image is hand-assembled (flat, ring 0), its assembly
//! in the comments: the code after the ending would print or exit with
//! another code if it ever ran.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::time::Duration;

use common::kvm_or_skip;
use kvmini::output::{Capture, Output};
use kvmini::sandbox::{Crash, Ending, Sandbox, SandboxError, Unserved};
use kvmini_abi::{Direction, Port};

/// `mov dx, port; mov eax, value; out dx, eax`.
fn out32(port: Port, value: u32) -> Vec<u8> {
    let mut code = vec![0x66, 0xBA];
    code.extend_from_slice(&(port as u16).to_le_bytes());
    code.push(0xB8);
    code.extend_from_slice(&value.to_le_bytes());
    code.push(0xEF);
    code
}

/// `mov dx, 0xE9; mov al, byte; out dx, al`.
fn console(byte: u8) -> Vec<u8> {
    vec![0x66, 0xBA, 0xE9, 0x00, 0xB0, byte, 0xEE]
}

/// What must never run: a byte on the console, then exit(9).
fn afterwards() -> Vec<u8> {
    [console(b'!'), out32(Port::Exit, 9)].concat()
}

fn ends_for_good(first: Vec<u8>, want: Ending) {
    let Some(kvm) = kvm_or_skip() else { return };
    let out = Capture::new();
    let mut sandbox = Sandbox::builder()
        .flat([first, afterwards()].concat())
        .stdout(Output::Capture(out.clone()))
        .build(&kvm)
        .expect("the sandbox is built");
    let outcome = sandbox.run().expect("the first run");
    assert_eq!(outcome.ending, want);
    for _ in 0..2 {
        match sandbox.run() {
            Err(SandboxError::Ended(ending)) => assert_eq!(ending, want),
            other => panic!("a second run of {want:?} gave {other:?}"),
        }
    }
    assert_eq!(out.contents(), b"", "code after the ending ran");
}

#[test]
fn after_exit_the_guest_does_not_go_on() {
    ends_for_good(out32(Port::Exit, 3), Ending::Exited(3));
}

#[test]
fn after_halt_the_guest_does_not_go_on() {
    // hlt
    ends_for_good(vec![0xF4], Ending::Halted);
}

#[test]
fn after_an_unserved_exit_the_guest_does_not_go_on() {
    ends_for_good(
        vec![0xE5, 0x60], // in eax, 0x60
        Ending::Unserved(Unserved::UnknownPort {
            port: 0x60,
            direction: Direction::In,
            size: 4,
        }),
    );
}

#[test]
fn after_a_crash_the_guest_does_not_go_on() {
    let Some(kvm) = kvm_or_skip() else { return };
    // ud2 at 0.
    let mut sandbox = Sandbox::builder()
        .flat([vec![0x0F, 0x0B], afterwards()].concat())
        .stdout(Output::Null)
        .build(&kvm)
        .expect("the sandbox is built");
    let Ending::Crashed(crash) = sandbox.run().expect("the first run").ending else {
        panic!("ud2 did not crash");
    };
    assert_eq!((crash.vector, crash.rip), (6, 0));
    assert!(matches!(
        sandbox.run(),
        Err(SandboxError::Ended(Ending::Crashed(Crash {
            vector: 6,
            ..
        })))
    ));
}

#[test]
fn a_reset_makes_an_ended_guest_runnable_again() {
    let Some(kvm) = kvm_or_skip() else { return };
    let out = Capture::new();
    let mut sandbox = Sandbox::builder()
        .elf(kvmini::guests::HELLO.elf)
        .reusable(true)
        .stdout(Output::Capture(out.clone()))
        .build(&kvm)
        .expect("the sandbox is built");
    assert_eq!(sandbox.run().expect("run").ending, Ending::Halted);
    assert!(matches!(
        sandbox.run(),
        Err(SandboxError::Ended(Ending::Halted))
    ));
    sandbox.reset().expect("reset");
    assert_eq!(
        sandbox.run().expect("run after reset").ending,
        Ending::Halted
    );
    assert_eq!(out.contents(), b"Hello, world!\nHello, world!\n");
}

#[test]
fn a_stopped_guest_goes_on_where_it_was() {
    let Some(kvm) = kvm_or_skip() else { return };
    // 0: console 'a'; 7: jmp 7 (spins until the timeout).
    let code = [console(b'a'), vec![0xEB, 0xFE]].concat();
    let out = Capture::new();
    let mut sandbox = Sandbox::builder()
        .flat(code)
        .timeout(Duration::from_millis(50))
        .stdout(Output::Capture(out.clone()))
        .build(&kvm)
        .expect("the sandbox is built");
    for _ in 0..2 {
        let outcome = sandbox.run().expect("run");
        assert!(
            matches!(outcome.ending, Ending::TimedOut(_)),
            "{:?}",
            outcome.ending
        );
        assert_eq!(outcome.regs.rip, 7);
    }
    // The console byte was written once: the second run went on.
    assert_eq!(out.contents(), b"a");
}
