//! Batched calls: many calls in one exit, each with its own result, the
//! same results as the calls made one by one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::kvm_or_skip;
use kvmini::cpu::Ring;
use kvmini::output::{Capture, Output};
use kvmini::sandbox::{Ending, Sandbox};
use kvmini_abi::batch::{BatchArgs, BatchEntry, BATCH_STOP_ON_ERROR};
use kvmini_abi::fs::IoArgs;
use kvmini_abi::Port;
use vm_memory::{Bytes, GuestAddress};
use zerocopy::{FromZeros, IntoBytes};

/// A ring-3 flat guest that submits the batch at 0x2000 and exits 0:
///   mov eax, 0x2000; mov dx, 0x422; out dx, eax
///   mov dx, 0x403; xor eax, eax; out dx, eax
const SUBMIT: &[u8] = &[
    0xb8, 0x00, 0x20, 0x00, 0x00, 0x66, 0xba, 0x22, 0x04, 0xef, 0x66, 0xba, 0x03, 0x04, 0x31, 0xc0,
    0xef,
];

const ARGS: u64 = 0x2000;
const ENTRIES: u64 = 0x3000;
const BLOCKS: u64 = 0x4000;
const DATA: u64 = 0x5000;

/// Runs a batch of one-byte writes of `bytes` to the descriptors `fds`,
/// returning the sandbox (for the blocks), the output and the outcome.
fn run_writes(fds: &[i32], flags: u32, count: Option<u32>) -> Option<(Sandbox, Vec<u8>, Ending)> {
    let kvm = kvm_or_skip()?;
    let out = Capture::new();
    let mut sandbox = Sandbox::builder()
        .flat(SUBMIT)
        .ring(Ring::Three)
        .memory(4 << 20)
        .stdout(Output::Capture(out.clone()))
        .build(&kvm)
        .expect("build");
    let mem = sandbox.memory().expect("the sandbox has its VM");
    for (i, &fd) in (0u64..).zip(fds) {
        let byte = b'a' + u8::try_from(i).expect("few entries");
        mem.write_obj(byte, GuestAddress(DATA + i)).expect("data");
        let block = IoArgs {
            fd,
            buf: DATA + i,
            len: 1,
            result: i64::MIN,
            ..IoArgs::default()
        };
        mem.write_slice(block.as_bytes(), GuestAddress(BLOCKS + i * 64))
            .expect("block");
        let entry = BatchEntry {
            port: Port::Write as u16,
            block: BLOCKS + i * 64,
            ..BatchEntry::default()
        };
        mem.write_slice(entry.as_bytes(), GuestAddress(ENTRIES + i * 16))
            .expect("entry");
    }
    let args = BatchArgs {
        entries: ENTRIES,
        count: count.unwrap_or(u32::try_from(fds.len()).expect("few entries")),
        flags,
        result: i64::MIN,
    };
    mem.write_slice(args.as_bytes(), GuestAddress(ARGS))
        .expect("args");
    let outcome = sandbox.run().expect("run");
    Some((sandbox, out.contents(), outcome.ending))
}

fn batch_result(sandbox: &Sandbox) -> i64 {
    let mut args = BatchArgs::new_zeroed();
    sandbox
        .memory()
        .expect("the sandbox has its VM")
        .read_slice(args.as_mut_bytes(), GuestAddress(ARGS))
        .expect("args");
    args.result
}

fn call_result(sandbox: &Sandbox, i: u64) -> i64 {
    let mut block = IoArgs::new_zeroed();
    sandbox
        .memory()
        .expect("the sandbox has its VM")
        .read_slice(block.as_mut_bytes(), GuestAddress(BLOCKS + i * 64))
        .expect("block");
    block.result
}

#[test]
fn a_batch_runs_every_call_in_one_exit() {
    let Some((sandbox, out, ending)) = run_writes(&[1, 1, 1, 1], 0, None) else {
        return;
    };
    assert_eq!(ending, Ending::Exited(0));
    assert_eq!(out, b"abcd");
    assert_eq!(batch_result(&sandbox), 4);
    for i in 0..4 {
        assert_eq!(call_result(&sandbox, i), 1);
    }
}

#[test]
fn errors_are_per_call_unless_the_batch_stops_on_them() {
    // fd 99 is not open: EBADF for that call, the others still run.
    let Some((sandbox, out, _)) = run_writes(&[1, 99, 1], 0, None) else {
        return;
    };
    assert_eq!(out, b"ac");
    assert_eq!(batch_result(&sandbox), 3);
    assert_eq!(call_result(&sandbox, 1), -9);
    let Some((sandbox, out, _)) = run_writes(&[1, 99, 1], BATCH_STOP_ON_ERROR, None) else {
        return;
    };
    assert_eq!(out, b"a");
    assert_eq!(batch_result(&sandbox), 2);
    assert_eq!(
        call_result(&sandbox, 2),
        i64::MIN,
        "the call after the error ran"
    );
}

#[test]
fn a_bad_batch_runs_nothing() {
    // More entries than BATCH_MAX, and unknown flags: EINVAL, nothing ran.
    let Some((sandbox, out, _)) = run_writes(&[1, 1], 0, Some(100_000)) else {
        return;
    };
    assert_eq!((out.len(), batch_result(&sandbox)), (0, -22));
    let Some((sandbox, out, _)) = run_writes(&[1, 1], 0x80, None) else {
        return;
    };
    assert_eq!((out.len(), batch_result(&sandbox)), (0, -22));
}
