//! Promises of README.md and docs/security.md that no other test checks:
//! exit statuses through the binary, the descriptor limit, open flags,
//! close-on-exec host descriptors, the getdents bound, prefaulted memory,
//! and the library's writer output, inherited stdin and timing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::kvm_or_skip;
use kvmini::output::Output;
use kvmini::sandbox::Sandbox;

#[test]
fn prefault_makes_all_guest_memory_resident_before_the_run() {
    let Some(kvm) = kvm_or_skip() else { return };
    let resident = |prefault: bool| {
        let sandbox = Sandbox::builder()
            .elf(kvmini::guests::HELLO.elf)
            .memory(16 << 20)
            .prefault(prefault)
            .stdout(Output::Null)
            .build(&kvm)
            .expect("build");
        let mem = sandbox.memory().expect("the sandbox has its VM");
        let host = kvmini::memory::host_address(mem).expect("host address");
        let pages = (16usize << 20) / 4096;
        let mut vec = vec![0u8; pages];
        // SAFETY: the range is the guest mapping, which the sandbox holds
        // for the call; mincore only writes `vec`, one byte per page.
        let r = unsafe { libc::mincore(host as *mut libc::c_void, 16 << 20, vec.as_mut_ptr()) };
        assert_eq!(r, 0);
        vec.iter().filter(|&&b| b & 1 != 0).count()
    };
    assert_eq!(resident(true), (16 << 20) / 4096);
    // Without it, the untouched middle of memory is not resident.
    assert!(resident(false) < (16 << 20) / 4096 / 2);
}
