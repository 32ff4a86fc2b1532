//! The hypercalls, one port I/O instruction (one VM exit) each. Port
//! numbers come from `kvmini-abi`.
//!
//! Every hypercall that passes a 32-bit value (a number, a string's
//! address, an argument block's address) goes through one primitive,
//! [`out32`], which declares once what kvmini may do across the exit: read
//! and write guest memory, and write RAX. [`block_call`] builds on it for
//! the calls with an argument block.

use core::arch::asm;
use core::ffi::CStr;

use kvmini_abi::errno::EFAULT;
use kvmini_abi::Port;

fn out8(port: Port, value: u8) {
    // SAFETY: port I/O to a kvmini hypercall port has no effect on guest
    // memory other than what kvmini documents for that port. The 8-bit
    // ports (console, halt) never answer in RAX; "memory" is implied.
    unsafe {
        asm!("out dx, al", in("dx") port as u16, in("al") value, options(nostack, preserves_flags))
    }
}

/// `out dx, eax` of `value` to `port`, and RAX after the exit: the one
/// primitive under every hypercall that passes a 32-bit value.
///
/// RAX is an input and an output: kvmini writes it for a call whose
/// argument block it cannot use (-EFAULT, the one place left to say so),
/// so the compiler may neither keep a live value in RAX across the exit nor
/// assume the register unchanged. There is no `nomem`/`readonly`: kvmini
/// reads and writes guest memory that the value points to, so the
/// compiler stores what the call reads before it and reloads what the call
/// wrote after it.
///
/// # Safety
/// If `value` is an address for `port`, everything kvmini may write
/// through it (the port's block and the buffers the block names) must be
/// valid for kvmini to write.
#[inline(always)]
pub unsafe fn out32(port: Port, value: u32) -> u64 {
    let mut rax = u64::from(value);
    // SAFETY: the caller vouches for the memory kvmini may write; the asm
    // touches no stack and no flags.
    unsafe {
        asm!("out dx, eax", in("dx") port as u16, inout("rax") rax,
             options(nostack, preserves_flags));
    }
    rax
}

/// Sends the address of an argument block to `port`. Returns 0 when
/// kvmini took the block (the call's answer is in the block's `result`),
/// or -EFAULT when kvmini could not use the block: an address outside
/// guest memory or in kvmini's own area (kvmini says so in RAX), or one
/// past 4 GiB, which the 32-bit port value cannot carry (then no exit is
/// made: cutting it to 32 bits would name some other block).
///
/// # Safety
/// As for [`out32`]: the block and every buffer it names must be valid for
/// kvmini to write as much as the call may write.
pub unsafe fn block_call(port: Port, block: u64) -> i64 {
    let Ok(value) = u32::try_from(block) else {
        return -i64::from(EFAULT);
    };
    // SAFETY: the caller vouches for the block and its buffers.
    let rax = unsafe { out32(port, value) };
    if rax == u64::from(value) {
        0
    } else {
        // kvmini changed RAX: it answered there (-EFAULT).
        i64::from_ne_bytes(rax.to_ne_bytes())
    }
}

/// Guest addresses fit in the 32 bits of a port value: kvmini gives guests
/// at most 4 GiB, identity-mapped.
#[allow(clippy::cast_possible_truncation)]
fn address(ptr: *const u8) -> u32 {
    ptr as usize as u32
}

/// Prints one byte (port 0xE9, the classic "hello world" port).
pub fn console_putc(byte: u8) {
    out8(Port::Console, byte);
}

/// `printVal`: prints `value` in decimal and a newline.
pub fn print_val(value: u32) {
    // SAFETY: printVal's value is a number, not an address.
    unsafe { out32(Port::PrintVal, value) };
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
    // SAFETY: kvmini only reads the string.
    unsafe { out32(Port::Display, address(text.as_ptr().cast())) };
}

/// `display` of bytes that must end with a NUL; without one, nothing is
/// printed (kvmini would otherwise read past the slice).
pub fn display_bytes(text: &[u8]) {
    if text.last() == Some(&0) {
        // SAFETY: kvmini only reads the string.
        unsafe { out32(Port::Display, address(text.as_ptr())) };
    }
}

/// Ends the run; kvmini exits with the low 8 bits of `code`.
pub fn exit(code: i32) -> ! {
    // SAFETY: exit's value is a number, not an address.
    unsafe { out32(Port::Exit, u32::from_ne_bytes(code.to_ne_bytes())) };
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
