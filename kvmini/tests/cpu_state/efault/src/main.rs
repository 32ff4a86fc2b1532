//! Every call with an argument block, through the SDK's one primitive
//! (`hypercall::block_call`), with blocks kvmini cannot use: each must come
//! back as -EFAULT to the caller. `../efault.c` is the same guest in C; the
//! two print the same lines. Runs with 4 MiB of guest memory.
#![no_std]
#![no_main]

use kvmini_abi::fs::FdArgs;
use kvmini_abi::Port;
use kvmini_guest::hypercall::block_call;
use kvmini_guest::{print, println};

kvmini_guest::entry!(main);

const MEM_SIZE: u64 = 0x40_0000;
const SYSTEM_BASE: u64 = MEM_SIZE - kvmini_abi::layout::SYSTEM_AREA_SIZE;

/// One line: where the block is, then what every port answered.
fn row(place: &str, block: u64) {
    print!("{place}:");
    // Every call whose value is an argument block: the batchable ones and
    // the batch itself.
    for port in Port::ALL
        .into_iter()
        .filter(|&p| p.batchable() || p == Port::Batch)
    {
        // SAFETY: kvmini cannot use these blocks, so it writes nothing;
        // where it could (none here), nothing else uses the memory.
        let answer = unsafe { block_call(port, block) };
        print!(" {answer}");
    }
    println!();
}

fn main() -> i32 {
    let mut good = FdArgs {
        fd: 99,
        reserved: 0,
        result: -38,
    };
    let good_address = core::ptr::addr_of_mut!(good) as usize as u64;
    row("null page", 0);
    row("kvmini's area", SYSTEM_BASE);
    row("straddling kvmini's area", SYSTEM_BASE - 8);
    row("past guest memory", MEM_SIZE);
    row("top of 32 bits", 0xFFFF_FFF8);
    // Cut to 32 bits, this would be `good`.
    row("past 4 GiB", 0x1_0000_0000 + good_address);
    // A good block still answers in the block.
    // SAFETY: `good` is a live local that names no buffer.
    let status = unsafe { block_call(Port::Close, good_address) };
    // SAFETY: a field of a live local, read where kvmini wrote it.
    let result = unsafe { core::ptr::addr_of!(good.result).read_volatile() };
    println!("close(99): {}", if status < 0 { status } else { result });
    0
}
