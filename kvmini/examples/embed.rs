//! kvmini as a library: run the built-in `hello` and `hypercalls` guests
//! with their stdout captured, then show what each printed and how its run
//! ended.
//!
//! ```sh
//! cargo run --example embed
//! ```

use std::process::ExitCode;
use std::time::Instant;

use kvmini::guests::{self, BuiltinGuest};
use kvmini::kvm::Kvm;
use kvmini::output::{Capture, Output};
use kvmini::sandbox::{Outcome, Sandbox};
use kvmini_abi::Port;

fn main() -> ExitCode {
    match run_all() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error and its sources on one line.
            let mut line = format!("embed: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                line.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{line}");
            ExitCode::FAILURE
        }
    }
}

fn run_all() -> Result<(), Box<dyn std::error::Error>> {
    // One handle on /dev/kvm serves any number of sandboxes.
    let kvm = Kvm::open()?;
    for guest in [guests::HELLO, guests::HYPERCALLS] {
        run_one(&kvm, &guest)?;
    }
    Ok(())
}

fn run_one(kvm: &Kvm, guest: &BuiltinGuest) -> Result<(), Box<dyn std::error::Error>> {
    let stdout = Capture::new();
    let started = Instant::now();
    let mut sandbox = Sandbox::builder()
        .elf(guest.elf)
        .memory(8 << 20)
        .stdout(Output::Capture(stdout.clone()))
        .build(kvm)?;
    let built = started.elapsed();
    let outcome = sandbox.run()?;
    let ran = started.elapsed() - built;

    println!("=== {}: {}", guest.name, guest.summary);
    let captured = stdout.contents();
    println!("captured stdout, {} bytes:", captured.len());
    for line in String::from_utf8_lossy(&captured).lines() {
        println!("  | {line}");
    }
    report(&outcome);
    println!("time: {built:?} to build the VM, {ran:?} to run the guest\n");
    Ok(())
}

fn report(outcome: &Outcome) {
    println!(
        "ending: {:?} (exit status {})",
        outcome.ending,
        outcome.ending.status()
    );
    let by_hypercall: Vec<String> = Port::ALL
        .iter()
        .zip(outcome.stats.by_hypercall)
        .filter(|&(_, n)| n > 0)
        .map(|(port, n)| format!("{} {n}", port.name()))
        .collect();
    println!(
        "exits: {} in all; by hypercall: {}",
        outcome.stats.exits,
        by_hypercall.join(", ")
    );
    println!("RAX at the end: {}", outcome.regs.rax);
}
