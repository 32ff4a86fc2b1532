//! A Rust std program that overflows its main thread's stack: std's
//! handler must recognise the guard page and abort with its message.

fn deeper(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    frame[0] + deeper(std::hint::black_box(depth + 1)) + frame[63]
}

fn main() {
    println!("before");
    println!("{}", deeper(0));
}
