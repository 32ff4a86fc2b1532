//! The trace through the library: typed events handed to the embedding
//! program, the same as the lines of `trace(Output)`, and the counts of a
//! Linux program's system calls in `Stats::syscalls`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::sync::{Arc, Mutex};

use common::kvm_or_skip;
use kvmini::cpu::Ring;
use kvmini::output::{Capture, Output};
use kvmini::sandbox::{Ending, Sandbox};
use kvmini::trace::{Arg, Call, CallName, Returned, TraceEnd, TraceEvent};
use kvmini_abi::Port;

/// A flat ring-3 guest: `mov al, 'A'; out 0xE9, al; mov dx, 0x404;
/// out dx, al` (console, then the halt hypercall).
const TRACED: &[u8] = &[0xB0, b'A', 0xE6, 0xE9, 0x66, 0xBA, 0x04, 0x04, 0xEE];

#[test]
fn the_embedder_receives_each_call_typed_and_the_same_lines() {
    let Some(kvm) = kvm_or_skip() else { return };
    let events = Arc::new(Mutex::new(Vec::new()));
    let kept = events.clone();
    let lines = Capture::new();
    let mut sandbox = Sandbox::builder()
        .flat(TRACED)
        .ring(Ring::Three)
        .memory(2 << 20)
        .stdout(Output::Null)
        .trace(Output::Capture(lines.clone()))
        .trace_events(move |event| kept.lock().unwrap().push(event.clone()))
        .build(&kvm)
        .unwrap();
    let outcome = sandbox.run().unwrap();
    assert_eq!(outcome.ending, Ending::Halted);
    let events = events.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            TraceEvent::Call(Call {
                name: CallName::Hypercall(Port::Console),
                args: vec![Arg::Char(b'A')],
                result: Returned::Nothing,
            }),
            TraceEvent::Call(Call {
                name: CallName::Hypercall(Port::Halt),
                args: Vec::new(),
                result: Returned::NoReturn,
            }),
            TraceEvent::Ended(TraceEnd::Halted),
        ]
    );
    let shown: String = events.iter().map(|e| format!("{e}\n")).collect();
    assert_eq!(String::from_utf8(lines.contents()).unwrap(), shown);
    // An SDK guest makes no system calls.
    assert_eq!(outcome.stats.syscalls.total(), (0, 0));
}

#[test]
fn a_linux_programs_calls_are_counted_by_number_with_their_errors() {
    let Some(kvm) = kvm_or_skip() else { return };
    let events = Arc::new(Mutex::new(Vec::new()));
    let kept = events.clone();
    let mut sandbox = Sandbox::builder()
        .elf_file("/usr/bin/busybox")
        .args(["busybox", "cat", "/missing"])
        .stdout(Output::Null)
        .stderr(Output::Null)
        .trace_events(move |event| kept.lock().unwrap().push(event.clone()))
        .build(&kvm)
        .unwrap();
    let outcome = sandbox.run().unwrap();
    assert_eq!(outcome.ending, Ending::Exited(1));
    let events = events.lock().unwrap().clone();
    let calls: Vec<&Call> = events
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Call(call) => Some(call),
            _ => None,
        })
        .collect();
    // Every call the trace shows is counted, and so is every error.
    let (total, failed) = outcome.stats.syscalls.total();
    assert_eq!(total, calls.len() as u64);
    let errors = calls
        .iter()
        .filter(|c| matches!(c.result, Returned::Error(_)))
        .count();
    assert_eq!(failed, errors as u64);
    let open = outcome
        .stats
        .syscalls
        .by_count()
        .into_iter()
        .find(|c| c.name().to_string() == "openat")
        .unwrap();
    assert_eq!((open.calls, open.errors), (1, 1));
    assert_eq!(events.last(), Some(&TraceEvent::Ended(TraceEnd::Exited(1))));
}
