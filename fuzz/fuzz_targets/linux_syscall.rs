//! The Linux system-call dispatcher on arbitrary call numbers and
//! registers, without KVM: the harness in `fuzz/harness/linux_syscall.rs`
//! (also run, bounded, by `kvmini/tests/linux_syscall_properties.rs`).
#![no_main]

#[path = "../harness/linux_syscall.rs"]
mod harness;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Call {
    nr: (u8, u64),
    args: [(u8, u64); 6],
    rcx: Option<u64>,
    r11: u64,
}

#[derive(Arbitrary, Debug)]
struct Input {
    stdin: Vec<u8>,
    calls: Vec<Call>,
}

fuzz_target!(|input: Input| {
    let calls: Vec<harness::Call> = input
        .calls
        .iter()
        .take(harness::MAX_CALLS)
        .map(|c| harness::Call {
            nr: c.nr,
            args: c.args,
            // Mostly a return address the program could have, sometimes
            // any value (non-canonical ones among them).
            rcx: c.rcx.unwrap_or(0x40_1000),
            r11: c.r11,
        })
        .collect();
    harness::run(&calls, &input.stdin);
});
