//! Tells guest crates where the linker script is (`links` metadata).

// A build script reports failure by panicking; cargo shows the message.
#![allow(clippy::expect_used)]

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:linker_script={dir}/guest.ld");
    println!("cargo:rerun-if-changed=guest.ld");
}
