//! Shared build script of the built-in guests: link as a static, non-PIE
//! executable with kvmini-guest's linker script. Only the guest binary gets
//! these flags, never build scripts.

// A build script reports failure by panicking; cargo shows the message.
#![allow(clippy::expect_used)]

fn main() {
    let script = std::env::var("DEP_KVMINI_GUEST_LINKER_SCRIPT")
        .expect("kvmini-guest exports its linker script");
    for arg in ["-nostartfiles", "-static", "-no-pie", "-Wl,--build-id=none"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-T{script}");
}
