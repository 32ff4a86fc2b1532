//! A Rust SDK guest for gdb: a static, a function that changes it, an exit
//! status made from it (the Rust twin of `counter.c`).
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut};

kvmini_guest::entry!(main);

/// What `bump` adds to.
static mut COUNTER: u64 = 5;

#[inline(never)]
fn bump(by: u64) {
    // SAFETY: one thread, and COUNTER is only touched here and in main.
    unsafe {
        let now = addr_of!(COUNTER).read_volatile();
        addr_of_mut!(COUNTER).write_volatile(now + by);
    }
}

fn main() -> i32 {
    bump(10);
    bump(100);
    // SAFETY: as in bump.
    let counter = unsafe { addr_of!(COUNTER).read_volatile() };
    i32::from(counter.to_le_bytes()[0])
}
