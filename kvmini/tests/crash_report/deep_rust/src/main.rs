//! A Rust SDK guest that crashes three calls deep: main -> first_level ->
//! second_level -> third_level, which writes to the null page. Built with
//! frame pointers (-C force-frame-pointers=yes); the functions keep plain
//! names so that the test can find them with nm.
#![no_std]
#![no_main]

kvmini_guest::entry!(main);

#[no_mangle]
#[inline(never)]
fn third_level() {
    // SAFETY: none needed by Rust: the store is the crash this guest is for.
    unsafe { core::arch::asm!("mov dword ptr [{0}], 1", in(reg) 0usize) };
}

#[no_mangle]
#[inline(never)]
fn second_level() {
    third_level();
    // Keeps the call a call, not a tail jump.
    // SAFETY: an empty asm block does nothing.
    unsafe { core::arch::asm!("") };
}

#[no_mangle]
#[inline(never)]
fn first_level() {
    second_level();
    // SAFETY: an empty asm block does nothing.
    unsafe { core::arch::asm!("") };
}

#[no_mangle]
#[inline(never)]
fn main() {
    first_level();
    // SAFETY: an empty asm block does nothing.
    unsafe { core::arch::asm!("") };
}
