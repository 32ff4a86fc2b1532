//! The hypercalls, one port I/O instruction (one VM exit) each. Port
//! numbers come from `kvmini-abi`.

use core::arch::asm;
use core::ffi::CStr;

use kvmini_abi::Port;

fn out8(port: Port, value: u8) {
    // SAFETY: port I/O to a kvmini hypercall port has no effect on guest
    // memory other than what kvmini documents for that port.
    unsafe {
        asm!("out dx, al", in("dx") port as u16, in("al") value, options(nostack, preserves_flags))
    }
}

fn out32(port: Port, value: u32) {
    // SAFETY: as in `out8`; "memory" is implied (no `nomem`), because
    // kvmini may read guest memory that the value points to.
    unsafe {
        asm!("out dx, eax", in("dx") port as u16, in("eax") value, options(nostack, preserves_flags))
    }
}

/// Guest addresses fit in the 32 bits of a port value: kvmini gives guests
/// at most 4 GiB, identity-mapped.
fn address(ptr: *const u8) -> u32 {
    ptr as usize as u32
}

/// Prints one byte (port 0xE9, the classic "hello world" port).
pub fn console_putc(byte: u8) {
    out8(Port::Console, byte);
}

/// `printVal`: prints `value` in decimal and a newline.
pub fn print_val(value: u32) {
    out32(Port::PrintVal, value);
}

/// `getNumExits`: the number of exits so far, this one included.
pub fn get_num_exits() -> u32 {
    let value: u32;
    // SAFETY: reads a value from kvmini; touches nothing else.
    unsafe {
        asm!("in eax, dx", in("dx") Port::GetNumExits as u16, out("eax") value, options(nostack, preserves_flags))
    }
    value
}

/// `display`: prints the whole string in one exit.
pub fn display(text: &CStr) {
    out32(Port::Display, address(text.as_ptr().cast()));
}

/// `display` of bytes that must end with a NUL; without one, nothing is
/// printed (kvmini would otherwise read past the slice).
pub fn display_bytes(text: &[u8]) {
    if text.last() == Some(&0) {
        out32(Port::Display, address(text.as_ptr()));
    }
}

/// Ends the run; kvmini exits with the low 8 bits of `code`.
pub fn exit(code: i32) -> ! {
    out32(Port::Exit, code as u32);
    // kvmini never resumes a guest after `exit`.
    loop {
        core::hint::spin_loop();
    }
}

/// Ends the run with status 0, leaving RAX = `rax` for kvmini's `--stats`:
/// the ring-3 stand-in for `hlt`.
pub fn halt_with_rax(rax: u64) -> ! {
    // SAFETY: the `out` ends the run; kvmini never resumes the guest.
    unsafe {
        asm!("out dx, al", in("dx") Port::Halt as u16, in("rax") rax, options(noreturn, nostack))
    }
}
