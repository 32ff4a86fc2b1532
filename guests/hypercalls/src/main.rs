//! Every hypercall of the seed's Part B, with the proof that `display`
//! prints a whole string, however long, in one exit.
#![no_std]
#![no_main]

use kvmini_guest::hypercall::{display, display_bytes, get_num_exits, print_val};
use kvmini_guest::println;

kvmini_guest::entry!(main);

const PARAGRAPH: &[u8] = b"display() hands kvmini one 32-bit guest virtual address. kvmini walks\n\
the guest's own page tables from CR3 to find each page of the string, and\n\
prints it all, up to the NUL, in this one exit. This paragraph starts 200\n\
bytes before a page boundary and ends on the next page.\n";

/// Two pages, page-aligned, so the paragraph can be placed across the
/// boundary between them.
#[repr(C, align(4096))]
struct TwoPages([u8; 8192]);

const START: usize = 4096 - 200;
static STRADDLE: TwoPages = {
    let mut pages = [0u8; 8192];
    let mut i = 0;
    while i < PARAGRAPH.len() {
        pages[START + i] = PARAGRAPH[i];
        i += 1;
    }
    TwoPages(pages)
};

fn main() -> i32 {
    display(c"printVal(2026) sends a 32-bit value in one `out`:\n");
    print_val(2026);

    display(c"getNumExits() returns the exits so far, this one included:\n");
    let num_exits = get_num_exits();
    print_val(num_exits);

    let before = get_num_exits();
    display_bytes(&STRADDLE.0[START..=START + PARAGRAPH.len()]);
    let after = get_num_exits();
    println!(
        "getNumExits() before and after that display(): {before} and {after}, so display cost {} exit",
        after - before - 1
    );
    0
}
