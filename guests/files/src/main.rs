//! The filesystem hypercalls at work: several files open at once, written,
//! sought, read back and displayed, a directory created and listed, a file
//! renamed into it, and the errors a program meets, all through the
//! directory granted with `--dir` (which the guest sees as `/`).
#![no_std]
#![no_main]

use core::fmt::Write;

use kvmini_guest::batch::Batch;
use kvmini_guest::fs::sys::IoArgs;
use kvmini_guest::fs::{self, File, OpenOptions, SeekFrom};
use kvmini_guest::hypercall::get_num_exits;
use kvmini_guest::{print, println};

kvmini_guest::entry!(main);

fn main() -> i32 {
    match demo() {
        Ok(()) => 0,
        Err(e) => {
            println!("files demo failed: {e}");
            1
        }
    }
}

/// "ok", or the error as `-errno (NAME)`, the way the raw call returns it.
struct Shown(fs::Result<()>);

impl core::fmt::Display for Shown {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Ok(()) => f.write_str("ok"),
            Err(e) => write!(f, "-{} ({e})", e.0),
        }
    }
}

fn outcome(result: fs::Result<()>) -> Shown {
    Shown(result)
}

fn demo() -> fs::Result<()> {
    // Two files open at once: descriptors 3 and 4, the lowest free ones.
    let mut notes = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(c"/notes.txt")?;
    let mut squares = File::create(c"/squares.txt")?;
    println!(
        "opened /notes.txt as fd {} and /squares.txt as fd {}",
        notes.as_raw_fd(),
        squares.as_raw_fd()
    );

    notes.write_all(b"kvmini keeps this file on the host.\n")?;
    for n in 1..=5u32 {
        writeln!(squares, "{n} squared is {}", n * n).map_err(|_| fs::Errno::EIO)?;
        writeln!(notes, "line {n}").map_err(|_| fs::Errno::EIO)?;
    }
    drop(squares);

    // Seek back and read what was written, through the same descriptor.
    notes.seek(SeekFrom::Start(0))?;
    let mut buf = [0u8; 256];
    let n = notes.read(&mut buf)?;
    println!("read {n} bytes back from /notes.txt:");
    print!(
        "{}",
        core::str::from_utf8(&buf[..n]).unwrap_or("(not UTF-8)\n")
    );

    // pread does not move the offset: read the first line again.
    let first = notes.read_at(&mut buf[..36], 0)?;
    println!(
        "pread at offset 0: {:?}",
        core::str::from_utf8(&buf[..first - 1]).unwrap_or("")
    );
    println!("/notes.txt is {} bytes", notes.metadata()?.len());

    // A directory, and a rename into it.
    fs::create_dir(c"/reports")?;
    fs::rename(c"/squares.txt", c"/reports/squares.txt")?;
    let size = fs::metadata(c"/reports/squares.txt")?.len();
    println!("moved /squares.txt to /reports/squares.txt ({size} bytes)");

    let mut dirbuf = [0u8; 512];
    print!("ls /:");
    for entry in fs::read_dir(c"/", &mut dirbuf)? {
        let entry = entry?;
        let name = core::str::from_utf8(entry.name_bytes()).unwrap_or("?");
        print!(" {}{}", name, if entry.is_dir() { "/" } else { "" });
    }
    println!();

    // Errors come back as Linux errno values.
    let missing = File::open(c"/no-such-file").map(drop);
    println!("open /no-such-file: {}", outcome(missing));
    let again = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(c"/notes.txt")
        .map(drop);
    println!(
        "create the existing /notes.txt with O_EXCL: {}",
        outcome(again)
    );
    let escape = File::open(c"/../../etc/passwd").map(drop);
    println!(
        "open /../../etc/passwd: {} (.. stops at the granted root)",
        outcome(escape)
    );
    let not_empty = fs::remove_dir(c"/reports");
    println!("rmdir /reports: {}", outcome(not_empty));
    // Eight writes in one exit: a batch.
    let log = File::create(c"/batch.txt")?;
    let lines: [&[u8]; 8] = [
        b"one\n", b"two\n", b"three\n", b"four\n", b"five\n", b"six\n", b"seven\n", b"eight\n",
    ];
    let mut blocks = [IoArgs::default(); 8];
    let mut batch = Batch::<8>::new();
    for (block, line) in blocks.iter_mut().zip(lines) {
        batch.write(block, log.as_raw_fd(), line)?;
    }
    let before = get_num_exits();
    let ran = batch.submit(true)?;
    let exits = get_num_exits() - before - 1;
    let written: i64 = blocks.iter().map(|b| b.result).sum();
    println!("batch: {ran} writes, {written} bytes to /batch.txt, in {exits} exit");
    notes.sync_all()?;
    Ok(())
}
