//! The Linux system-call dispatcher on random call numbers and registers,
//! bounded (`PROPTEST_CASES`, 64 by default): the harness of the
//! `linux_syscall` fuzz target, `fuzz/harness/linux_syscall.rs`, which
//! says what is checked (docs/fuzzing.md). It needs no /dev/kvm.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

#[path = "../../fuzz/harness/linux_syscall.rs"]
mod harness;

use proptest::collection::vec;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A kind and a value, the value often small.
fn part() -> impl Strategy<Value = (u8, u64)> {
    (any::<u8>(), prop_oneof![0u64..64, any::<u64>()])
}

fn call() -> impl Strategy<Value = harness::Call> {
    (
        part(),
        [part(), part(), part(), part(), part(), part()],
        prop_oneof![3 => Just(0x40_1000u64), 1 => any::<u64>()],
        any::<u64>(),
    )
        .prop_map(|(nr, args, rcx, r11)| harness::Call { nr, args, rcx, r11 })
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn system_calls_give_linux_results_and_nothing_escapes(
        calls in vec(call(), 1..harness::MAX_CALLS),
        stdin in vec(any::<u8>(), 0..64),
    ) {
        harness::run(&calls, &stdin);
    }
}
