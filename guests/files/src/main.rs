//! The filesystem hypercalls at work: several files open at once, written,
//! sought, read back and displayed, a directory created and listed, a file
//! renamed into it, and the errors a program meets, all through the
//! directory granted with `--dir` (which the guest sees as `/`). It can run
//! again in the same directory: it overwrites its own files. A failure
//! names the operation and the path, on stderr, and the status is 1.
#![no_std]
#![no_main]

use core::fmt::Write;

use kvmini_guest::batch::Batch;
use kvmini_guest::fs::sys::IoArgs;
use kvmini_guest::fs::{self, File, OpenOptions, SeekFrom};
use kvmini_guest::hypercall::get_num_exits;
use kvmini_guest::{print, println, Errno};

kvmini_guest::entry!(main);

fn main() -> i32 {
    match demo() {
        Ok(()) => 0,
        Err(failure) => {
            let mut stderr = File::from_raw_fd(2);
            // If stderr is gone too, the status still says it failed.
            let _ = writeln!(stderr, "files demo failed: {failure}");
            let _ = stderr.into_raw_fd();
            1
        }
    }
}

/// A call that failed: what it was, on which path, and the error.
struct Failure {
    call: &'static str,
    path: &'static str,
    error: Errno,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (call, path, e) = (self.call, self.path, self.error);
        write!(f, "{call} {path}: -{} ({e})", e.0)
    }
}

/// Names the call and path behind an error.
trait Context<T> {
    fn at(self, call: &'static str, path: &'static str) -> Result<T, Failure>;
}

impl<T> Context<T> for kvmini_guest::Result<T> {
    fn at(self, call: &'static str, path: &'static str) -> Result<T, Failure> {
        self.map_err(|error| Failure { call, path, error })
    }
}

/// "ok", or the error as `-errno (NAME)`, the way the raw call returns it.
struct Shown(kvmini_guest::Result<()>);

impl core::fmt::Display for Shown {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Ok(()) => f.write_str("ok"),
            Err(e) => write!(f, "-{} ({e})", e.0),
        }
    }
}

fn outcome(result: kvmini_guest::Result<()>) -> Shown {
    Shown(result)
}

fn demo() -> Result<(), Failure> {
    // Two files open at once: descriptors 3 and 4, the lowest free ones.
    let mut notes = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(c"/notes.txt")
        .at("open", "/notes.txt")?;
    let mut squares = File::create(c"/squares.txt").at("create", "/squares.txt")?;
    // What an earlier run left that this one would not overwrite before
    // it lists the directory.
    match fs::remove_file(c"/batch.txt") {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(e).at("unlink", "/batch.txt"),
    }

    println!(
        "opened /notes.txt as fd {} and /squares.txt as fd {}",
        notes.as_raw_fd(),
        squares.as_raw_fd()
    );

    notes
        .write_all(b"kvmini keeps this file on the host.\n")
        .at("write", "/notes.txt")?;
    for n in 1..=5u32 {
        writeln!(squares, "{n} squared is {}", n * n)
            .map_err(|_| Errno::EIO)
            .at("write", "/squares.txt")?;
        writeln!(notes, "line {n}")
            .map_err(|_| Errno::EIO)
            .at("write", "/notes.txt")?;
    }
    drop(squares);

    // Seek back and read what was written, through the same descriptor.
    notes.seek(SeekFrom::Start(0)).at("lseek", "/notes.txt")?;
    let mut buf = [0u8; 256];
    let n = notes.read(&mut buf).at("read", "/notes.txt")?;
    println!("read {n} bytes back from /notes.txt:");
    print!(
        "{}",
        core::str::from_utf8(&buf[..n]).unwrap_or("(not UTF-8)\n")
    );

    // pread does not move the offset: read the first line again.
    let first = notes.read_at(&mut buf[..36], 0).at("pread", "/notes.txt")?;
    println!(
        "pread at offset 0: {:?}",
        core::str::from_utf8(&buf[..first - 1]).unwrap_or("")
    );
    let size = notes.metadata().at("fstat", "/notes.txt")?.len();
    println!("/notes.txt is {size} bytes");

    // A directory (there already if an earlier run made it), and a rename
    // into it.
    match fs::create_dir(c"/reports") {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e).at("mkdir", "/reports"),
    }
    fs::rename(c"/squares.txt", c"/reports/squares.txt")
        .at("rename", "/squares.txt to /reports/squares.txt")?;
    let size = fs::metadata(c"/reports/squares.txt")
        .at("stat", "/reports/squares.txt")?
        .len();
    println!("moved /squares.txt to /reports/squares.txt ({size} bytes)");

    let mut dirbuf = [0u8; 512];
    print!("ls /:");
    for entry in fs::read_dir(c"/", &mut dirbuf).at("open", "/")? {
        let entry = entry.at("getdents64", "/")?;
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
    let log = File::create(c"/batch.txt").at("create", "/batch.txt")?;
    let lines: [&[u8]; 8] = [
        b"one\n", b"two\n", b"three\n", b"four\n", b"five\n", b"six\n", b"seven\n", b"eight\n",
    ];
    let mut blocks = [IoArgs::default(); 8];
    let mut batch = Batch::<8>::new();
    for (block, line) in blocks.iter_mut().zip(lines) {
        batch
            .write(block, log.as_raw_fd(), line)
            .at("batch write", "/batch.txt")?;
    }
    let before = get_num_exits();
    let ran = batch.submit(true).at("batch write", "/batch.txt")?;
    let exits = get_num_exits() - before - 1;
    let written: i64 = blocks.iter().map(|b| b.result).sum();
    println!(
        "batch: {ran} writes, {written} bytes to /batch.txt, in {exits} {}",
        if exits == 1 { "exit" } else { "exits" }
    );
    notes.sync_all().at("fsync", "/notes.txt")?;
    Ok(())
}
