//! Builds the built-in guests (the `guests/` workspace) with a nested
//! `cargo build`, so that a plain `cargo build` of kvmini produces the
//! guest images it embeds. The guests are freestanding: they get their own
//! target directory (sharing ours would deadlock on cargo's lock), the
//! explicit host target, and their own RUSTFLAGS (never the outer ones:
//! `-Ctarget-cpu=native` or coverage flags must not leak into guests).

// A build script reports failure by panicking; cargo shows the message.
#![allow(clippy::expect_used, clippy::panic)]

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUESTS: &[&str] = &["hello", "hypercalls", "files", "kvstore"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("kvmini sits in the workspace");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target_dir = out_dir.join("guests-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    for path in ["guests", "kvmini-guest", "kvmini-abi/src"] {
        rerun_if_changed_recursive(&root.join(path));
    }

    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .arg("--manifest-path")
        .arg(root.join("guests/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Crelocation-model=static")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .expect("cannot run cargo to build the guests");
    assert!(status.success(), "building the built-in guests failed");

    let built = target_dir.join("x86_64-unknown-linux-gnu/release");
    let images = out_dir.join("guests");
    std::fs::create_dir_all(&images).expect("create OUT_DIR/guests");
    for guest in GUESTS {
        std::fs::copy(built.join(guest), images.join(guest))
            .unwrap_or_else(|e| panic!("guest {guest} was not built: {e}"));
    }
}

fn rerun_if_changed_recursive(path: &Path) {
    if path.file_name().is_some_and(|n| n == "target") {
        return;
    }
    println!("cargo:rerun-if-changed={}", path.display());
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            rerun_if_changed_recursive(&entry.path());
        }
    }
}
