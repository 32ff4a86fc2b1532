//! The command line's advice: the library's errors carry data and name no
//! option, and `kvmini` turns them into messages that name the option to
//! change. The trace goes to kvmini's stderr, and a stderr that takes no
//! trace line changes nothing in the run or its status.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::process::{Output, Stdio};

use common::{kvm_or_skip, kvmini, text};

/// Runs `kvmini run --flat IMAGE ARGS...` on `image`.
fn run_flat(image: &[u8], args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("image.bin");
    std::fs::write(&path, image).expect("write the image");
    kvmini()
        .args(["run", "--flat"])
        .arg(&path)
        .args(args)
        .output()
        .expect("kvmini starts")
}

#[test]
fn a_flat_image_larger_than_the_load_window_is_told_to_raise_mem() {
    // 2 MiB of memory leaves 2 MiB - 64 KiB for the image; files up to the
    // memory size are read, so these reach the loader.
    if kvm_or_skip().is_none() {
        return;
    }
    for size in [0x1f_0001_usize, 0x1f_8000, 0x20_0000] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("big.bin");
        std::fs::write(&path, vec![0xF4; size]).expect("write the image");
        let out = kvmini()
            .args(["run", "--flat", "--mem", "2M"])
            .arg(&path)
            .env_remove("KVMINI_KVM_DEVICE")
            .output()
            .expect("kvmini starts");
        assert_eq!(
            (out.status.code(), text(&out.stdout), text(&out.stderr)),
            (
                Some(125),
                String::new(),
                format!(
                    "kvmini: {}: flat image of {size:#x} bytes does not fit in guest memory: \
                     allowed 0x0..0x1f0000 (raise --mem)\n",
                    path.display()
                )
            )
        );
    }
}

/// `xorps xmm0, xmm0`, then the halt hypercall: SSE arithmetic, which
/// KVM's instruction emulator (all ring-0 code on nested kvm-pvm) cannot
/// run.
const SSE_AT_RING_0: &[u8] = &[
    0x0F, 0x57, 0xC0, // xorps xmm0, xmm0
    0x66, 0xBA, 0x04, 0x04, // mov dx, 0x404
    0xEE, // out dx, al
];

#[test]
fn sse_at_ring_0_on_kvm_pvm_is_told_to_use_ring_3() {
    if kvm_or_skip().is_none() {
        return;
    }
    let out = run_flat(SSE_AT_RING_0, &[]);
    if !std::path::Path::new("/sys/module/kvm_pvm").exists() {
        // Ordinary KVM runs ring-0 code natively: the guest halts.
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        return;
    }
    let stderr = text(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert_eq!(out.status.code(), Some(126), "{stderr}");
    assert_eq!(
        first,
        "kvmini: the guest made an exit kvmini does not serve: KVM_EXIT_INTERNAL_ERROR \
         (suberror 1): KVM could not handle an exit; at ring 0 on nested KVM (kvm-pvm) guest \
         code runs in KVM's instruction emulator, which has no SSE arithmetic: run the guest \
         at ring 3 (--ring 3)."
    );
    // At ring 3, as the advice says, the same code runs.
    let out = run_flat(SSE_AT_RING_0, &["--ring", "3"]);
    assert_eq!(
        (out.status.code(), text(&out.stderr)),
        (Some(0), String::new())
    );
}

/// `kvmini demo hello --trace` with stderr set up by `stderr`; returns the
/// status and stdout.
fn traced_hello(stderr: Stdio) -> (Option<i32>, String) {
    let out = kvmini()
        .args(["demo", "hello", "--trace"])
        .stderr(stderr)
        .output()
        .expect("kvmini starts");
    (out.status.code(), text(&out.stdout))
}

/// The same with stderr a pipe whose reader is gone before kvmini writes.
fn traced_hello_into_a_closed_pipe() -> (Option<i32>, String) {
    let mut child = kvmini()
        .args(["demo", "hello", "--trace"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kvmini starts");
    drop(child.stderr.take());
    let out = child.wait_with_output().expect("kvmini ends");
    (out.status.code(), text(&out.stdout))
}

#[test]
fn a_stderr_that_takes_no_trace_line_changes_nothing() {
    if kvm_or_skip().is_none() {
        return;
    }
    let hello = (Some(0), "Hello, world!\n".to_owned());
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full opens");
    assert_eq!(traced_hello(Stdio::from(full)), hello);
    assert_eq!(traced_hello_into_a_closed_pipe(), hello);
    assert_eq!(traced_hello(Stdio::null()), hello);
}
