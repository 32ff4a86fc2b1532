//! Figures 4 to 6: moving bytes.
//!
//! 4. File throughput: `bench/guests/wc.c` counts the bytes and lines of a
//!    256 MiB file read in 1 MiB `read` calls, against a plain Rust loop
//!    that does the same with `read(2)` and the same call size (each reads
//!    the file twice, and the second pass is timed: the guest marks it
//!    with a host function, so the first touch of its buffer is left out;
//!    the whole run is kept too);
//!    `bench/guests/write.c` writes 256 MiB in 1 MiB `write` calls, against
//!    the same loop with `write(2)`. The file lives in a temporary
//!    directory under /tmp (or `TMPDIR`); its page cache is warmed by
//!    reading it whole before any timing, and the written file is removed
//!    (untimed) before each timed write, so both sides write into a fresh
//!    file.
//! 5. `display` throughput: `bench/guests/display.c` prints a 64 KiB string
//!    (65,535 bytes) 1,024 times, one `display` exit each, with the guest's
//!    stdout a file (`Output::Writer`), against `write(2)` of 65,535-byte
//!    chunks to a file.
//! 6. Batching: `bench/guests/batch.c` makes 1,000 16-byte writes to a file,
//!    one exit each or 64 per batch exit.
//!
//! kvmini's times are of `Sandbox::run` alone (the sandbox is built
//! untimed before each run); guest memory is 64 MiB. Before criterion
//! runs, [`parts`] times the pieces of these paths that kvmini does in
//! user space.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark stops at its first failure"
)]

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fact;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use kvmini::kvm::Kvm;
use kvmini::output::{Capture, Output};
use kvmini::sandbox::{Ending, Sandbox};

const CHUNK: usize = 1 << 20;
const FILE_SIZE: usize = 256 << 20;
const GUEST_MEM: u64 = 64 << 20;
const DISPLAY_LEN: usize = (64 << 10) - 1;
const DISPLAY_COUNT: usize = 1024;
/// The host function `bench/guests/wc.c` calls to mark the timed pass.
const MARK: u32 = 1;

/// Newlines in `p`, the way `bench/guests/wc.c` counts them: 128-byte
/// blocks into an 8-bit counter (which both compilers vectorise), then the
/// tail.
fn count_lines(p: &[u8]) -> u64 {
    let mut blocks = p.chunks_exact(128);
    let mut lines = 0u64;
    for block in &mut blocks {
        let mut c = 0u8;
        for &b in block {
            c += u8::from(b == b'\n');
        }
        lines += u64::from(c);
    }
    lines
        + blocks
            .remainder()
            .iter()
            .map(|&b| u64::from(b == b'\n'))
            .sum::<u64>()
}

/// The text of the files and strings: 64-byte lines of 'a's (what the C
/// guests write).
fn text(len: usize) -> Vec<u8> {
    let mut text = vec![b'a'; len];
    for line in text.chunks_exact_mut(64) {
        line[63] = b'\n';
    }
    text
}

/// The native wc: bytes and lines of `path`, read in 1 MiB `read` calls.
fn native_wc(path: &Path, buf: &mut [u8]) -> (u64, u64) {
    let mut file = File::open(path).expect("open");
    let (mut bytes, mut lines) = (0u64, 0u64);
    loop {
        let n = file.read(buf).expect("read");
        if n == 0 {
            break;
        }
        bytes += n as u64;
        lines += count_lines(&buf[..n]);
    }
    (bytes, lines)
}

/// The native writer: `total` bytes of `buf` to a new file at `path`, in
/// `buf.len()`-byte `write` calls.
fn native_write(path: &Path, buf: &[u8], total: usize) {
    let mut file = File::create(path).expect("create");
    let mut done = 0;
    while done < total {
        let n = file.write(buf).expect("write");
        assert_eq!(n, buf.len(), "short write");
        done += n;
    }
}

fn removed(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("remove {}: {e}", path.display()),
    }
}

/// Times `iters` runs of sandboxes made by `make` (building is untimed);
/// `check` looks at each outcome.
fn time_runs(
    iters: u64,
    mut make: impl FnMut() -> Sandbox,
    mut check: impl FnMut(&kvmini::sandbox::Outcome),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut sandbox = make();
        let start = Instant::now();
        let outcome = sandbox.run().expect("run");
        total += start.elapsed();
        check(&outcome);
    }
    total
}

/// Runs `bench/guests/wc.c` (argument `mode`, if any) on `dir`: the time of
/// the whole run and of its marked second pass.
fn run_wc(
    kvm: &Kvm,
    wc: &[u8],
    dir: &Path,
    mode: Option<&str>,
    want: &str,
) -> (Duration, Duration) {
    let output = Capture::new();
    let marks = Arc::new(Mutex::new(Vec::new()));
    let noted = Arc::clone(&marks);
    let mut args = vec!["wc"];
    args.extend(mode);
    let mut sandbox = Sandbox::builder()
        .elf(wc)
        .memory(GUEST_MEM)
        .dir(dir, "/", true)
        .args(args)
        .stdout(Output::Capture(output.clone()))
        .host_function(MARK, move |_| {
            noted.lock().expect("marks").push(Instant::now());
            Ok(0)
        })
        .build(kvm)
        .expect("build");
    let start = Instant::now();
    let outcome = sandbox.run().expect("run");
    let run = start.elapsed();
    assert_eq!(outcome.ending, Ending::Exited(0));
    assert_eq!(output.contents(), want.as_bytes());
    let marks = marks.lock().expect("marks");
    (run, marks[1] - marks[0])
}

/// The second pass of wc taken apart: as measured, with the buffer in a
/// 2 MiB page ("huge"), and the guest's line count alone ("count");
/// medians of `runs`.
fn wc_modes(kvm: &Kvm, wc: &[u8], dir: &Path, want: &str, runs: usize) {
    for (name, mode) in [
        ("default", None),
        ("huge", Some("huge")),
        ("count", Some("count")),
    ] {
        let mut times: Vec<f64> = (0..runs)
            .map(|_| run_wc(kvm, wc, dir, mode, want).1.as_secs_f64() * 1e3)
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[runs / 2];
        println!("parts: wc second pass, {name}: {median:.2} ms");
        fact(&format!("parts.wc_{name}.ms"), median);
    }
}

fn files(c: &mut Criterion, kvm: &Kvm, work: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    std::fs::write(&data, text(FILE_SIZE)).expect("write the input file");
    let mut buf = vec![0u8; CHUNK];
    // Warm the page cache: the whole file, read once before any timing.
    let expected = native_wc(&data, &mut buf);
    assert_eq!(expected, (FILE_SIZE as u64, (FILE_SIZE / 64) as u64));
    let wc = common::c_guest("wc", work);
    let writer = common::c_guest("write", work);

    // Read: the guest and the native loop each read the file twice and
    // the second pass is timed (the guest marks it with host function 1);
    // the whole run, both passes and the first touch of a fresh buffer
    // included, is kept as a fact.
    let want = format!("{} {}\n", expected.0, expected.1);
    wc_modes(kvm, &wc, dir.path(), &want, 5);
    let mut group = c.benchmark_group("file_read");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(FILE_SIZE as u64));
    let mut whole = (Duration::ZERO, 0u32);
    group.bench_function("kvmini", |b| {
        b.iter_custom(|iters| {
            let mut steady = Duration::ZERO;
            for _ in 0..iters {
                let (run, marked) = run_wc(kvm, &wc, dir.path(), None, &want);
                whole.0 += run;
                whole.1 += 1;
                steady += marked;
            }
            steady
        });
    });
    fact(
        "file_read.kvmini.whole_ms",
        whole.0.as_secs_f64() * 1e3 / f64::from(whole.1),
    );
    let mut whole = (Duration::ZERO, 0u32);
    group.bench_function("native", |b| {
        b.iter_custom(|iters| {
            let mut steady = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let mut buf = vec![0u8; CHUNK];
                assert_eq!(native_wc(&data, &mut buf), expected);
                let second = Instant::now();
                assert_eq!(native_wc(&data, &mut buf), expected);
                steady += second.elapsed();
                whole.0 += start.elapsed();
                whole.1 += 1;
            }
            steady
        });
    });
    fact(
        "file_read.native.whole_ms",
        whole.0.as_secs_f64() * 1e3 / f64::from(whole.1),
    );
    group.finish();

    let mut group = c.benchmark_group("file_write");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(FILE_SIZE as u64));
    group.bench_function("kvmini", |b| {
        b.iter_custom(|iters| {
            time_runs(
                iters,
                || {
                    removed(&out);
                    Sandbox::builder()
                        .elf(writer.clone())
                        .memory(GUEST_MEM)
                        .dir(dir.path(), "/", false)
                        .stdout(Output::Null)
                        .build(kvm)
                        .expect("build")
                },
                |outcome| {
                    assert_eq!(outcome.ending, Ending::Exited(0));
                    assert_eq!(size(&out), FILE_SIZE as u64);
                },
            )
        });
    });
    let chunk = text(CHUNK);
    group.bench_function("native", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                removed(&out);
                let start = Instant::now();
                native_write(&out, &chunk, FILE_SIZE);
                total += start.elapsed();
                assert_eq!(size(&out), FILE_SIZE as u64);
            }
            total
        });
    });
    group.finish();
}

/// The size of the file at `path`.
fn size(path: &Path) -> u64 {
    std::fs::metadata(path).expect("the written file").len()
}

fn display(c: &mut Criterion, kvm: &Kvm, work: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("display.out");
    let guest = common::c_guest("display", work);
    let total = DISPLAY_LEN * DISPLAY_COUNT;
    let mut group = c.benchmark_group("display");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(total as u64));
    group.bench_function("kvmini", |b| {
        b.iter_custom(|iters| {
            time_runs(
                iters,
                || {
                    removed(&path);
                    let file = File::create(&path).expect("create");
                    Sandbox::builder()
                        .elf(guest.clone())
                        .memory(GUEST_MEM)
                        .stdout(Output::Writer(Box::new(file)))
                        .build(kvm)
                        .expect("build")
                },
                |outcome| {
                    assert_eq!(outcome.ending, Ending::Exited(0));
                    assert_eq!(outcome.stats.exits, DISPLAY_COUNT as u64 + 1);
                    assert_eq!(size(&path), total as u64);
                },
            )
        });
    });
    let chunk = text(DISPLAY_LEN);
    group.bench_function("native", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                removed(&path);
                let start = Instant::now();
                native_write(&path, &chunk, total);
                elapsed += start.elapsed();
                assert_eq!(size(&path), total as u64);
            }
            elapsed
        });
    });
    group.finish();
}

fn batch(c: &mut Criterion, kvm: &Kvm, work: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let guest = common::c_guest("batch", work);
    let make = |batched: bool| {
        let mut args = vec!["batch"];
        if batched {
            args.push("batched");
        }
        Sandbox::builder()
            .elf(guest.clone())
            .memory(GUEST_MEM)
            .dir(dir.path(), "/", false)
            .args(args)
            .stdout(Output::Null)
            .build(kvm)
            .expect("build")
    };
    for (name, batched) in [("unbatched", false), ("batched", true)] {
        let outcome = make(batched).run().expect("run");
        assert_eq!(outcome.ending, Ending::Exited(0), "{name}");
        let log = std::fs::metadata(dir.path().join("log")).expect("log");
        assert_eq!(log.len(), 16_000, "{name}");
        let per_op = outcome.stats.exits as f64 / 1000.0;
        println!(
            "batch, {name}: {} exits for 1000 writes ({per_op} per write)",
            outcome.stats.exits
        );
        fact(&format!("batch.{name}.exits"), outcome.stats.exits as f64);
        fact(&format!("batch.{name}.exits_per_op"), per_op);
    }
    let mut group = c.benchmark_group("batch");
    for (name, batched) in [("unbatched", false), ("batched", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                time_runs(
                    iters,
                    || make(batched),
                    |outcome| assert_eq!(outcome.ending, Ending::Exited(0)),
                )
            });
        });
    }
    group.finish();
}

/// Mean time of `f` over `n` calls, in µs.
fn mean_us(n: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

/// Times the parts of the hot paths above that kvmini does in user space,
/// through its public `GuestView` on the memory of an ELF guest's sandbox
/// (ring 3, kvmini's identity map): the scatter list of a 1 MiB buffer
/// where the C guests keep theirs (0x102000, in the first 2 MiB, which
/// kvmini maps with 4 KiB pages for ELF guests, to leave the null page
/// out) and of one inside a 2 MiB page, both with a page walk (as for a
/// ring-0 guest) and through the identity range a ring-3 guest's exits
/// use; reading a 64 KiB string the way `display` finds it, next to a
/// plain scan and copy of the same bytes; and the native side's line count
/// of 256 MiB.
fn parts(kvm: &Kvm) {
    use kvmini::addr::Gva;
    use kvmini::paging::{CpuPaging, Paging, PagingMode};
    use kvmini::view::GuestView;
    use vm_memory::{Bytes, GuestAddress};

    let sandbox = Sandbox::builder()
        .elf(kvmini::guests::HELLO.elf)
        .memory(GUEST_MEM)
        .stdout(Output::Null)
        .build(kvm)
        .expect("build");
    let mem = sandbox.memory().expect("the sandbox has its VM");
    let view = GuestView::new(
        mem,
        // The hello ELF has its memory's permissions: EFER.NXE is on.
        Paging::new(PagingMode::Long, true, CpuPaging::ALL_FEATURES),
        sandbox.layout().expect("the sandbox has its VM").pml4(),
        true,
    );
    let identity = view.with_identity(kvmini::arch::x86_64::page_tables::user_identity_range(
        sandbox.layout().expect("the sandbox has its VM"),
        false,
    ));
    let mut pieces = Vec::new();
    for (how, view) in [("", view), ("_identity", identity)] {
        for (name, at) in [("4k", 0x10_2000u64), ("2m", 0x40_0000)] {
            let us = mean_us(1000, || {
                view.pieces(Gva::new(at), CHUNK as u64, true, &mut pieces)
                    .expect("pieces");
            });
            println!(
                "parts: scatter list of 1 MiB at {at:#x}{}: {} pieces, {us:.2} us",
                if how.is_empty() {
                    ", walked"
                } else {
                    ", identity range"
                },
                pieces.len()
            );
            fact(
                &format!("parts.pieces_{name}{how}.count"),
                pieces.len() as f64,
            );
            fact(&format!("parts.pieces_{name}{how}.us"), us);
        }
    }
    let mut string = text(DISPLAY_LEN);
    string.push(0);
    mem.write_slice(&string, GuestAddress(0x40_0000))
        .expect("string");
    let mut out = Vec::new();
    let us = mean_us(1000, || {
        out.clear();
        view.read_c_string(Gva::new(0x40_0000), u64::MAX, &mut out)
            .expect("string");
    });
    assert_eq!(out.len(), DISPLAY_LEN);
    println!("parts: read_c_string of 64 KiB: {us:.2} us");
    fact("parts.read_c_string_64k.us", us);
    let mut copy = Vec::new();
    let us = mean_us(1000, || {
        copy.clear();
        let bytes = std::hint::black_box(&string[..]);
        let nul = bytes.iter().position(|&b| b == 0).expect("NUL");
        copy.extend_from_slice(&bytes[..nul]);
    });
    println!("parts: scan for NUL and copy 64 KiB (host memory): {us:.2} us");
    fact("parts.scan_copy_64k.us", us);
    let chunk = text(CHUNK);
    let us = mean_us(20, || {
        let lines: u64 = (0..FILE_SIZE / CHUNK)
            .map(|_| count_lines(std::hint::black_box(&chunk)))
            .sum();
        assert_eq!(lines, (FILE_SIZE / 64) as u64);
    });
    println!("parts: native line count of 256 MiB: {:.2} ms", us / 1000.0);
    fact("parts.count_lines_256m.ms", us / 1000.0);
}

fn io(c: &mut Criterion) {
    let Some(kvm) = common::kvm() else { return };
    let work = tempfile::tempdir().expect("temp dir");
    parts(&kvm);
    files(c, &kvm, work.path());
    display(c, &kvm, work.path());
    batch(c, &kvm, work.path());
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = io
}
criterion_main!(benches);
