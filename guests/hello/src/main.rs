//! The classic KVM "hello world", at ring 3: "Hello, world!\n" one byte
//! per exit through port 0xE9, then 42 into memory and into RAX, then the
//! halt hypercall (the ring-3 stand-in for `hlt`) with RAX still 42.
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut};

use kvmini_guest::hypercall::{console_putc, halt_with_rax};

kvmini_guest::entry!(main);

/// Where the guest leaves 42 in its memory.
static mut ANSWER: u64 = 0;

fn main() {
    for &byte in b"Hello, world!\n" {
        console_putc(byte);
    }
    // SAFETY: one thread, and ANSWER is only touched here.
    let answer = unsafe {
        addr_of_mut!(ANSWER).write_volatile(42);
        addr_of!(ANSWER).read_volatile()
    };
    halt_with_rax(answer)
}
