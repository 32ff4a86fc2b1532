//! Large transfers between guest memory and files: 64 MiB in one call and
//! in odd-sized chunks, both ways, and buffers that straddle 2 MiB page
//! boundaries at odd addresses (`tests/guests/large_io.c`). The guest
//! checksums what it has (FNV-1a 64 by words); the test checks the checksums and
//! the files' bytes on the host.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
mod fs_common;

use std::path::Path;

use common::{assert_lines, kvm_or_skip};
use fs_common::{build_guest, fnv1a64_words, run_guest, snapshot, write_file};
use kvmini::sandbox::Ending;

/// Guest memory: room for the guest's 64 MiB buffer and more.
const MEM: u64 = 256 << 20;
/// The big file and buffer.
const SIZE: usize = 64 << 20;
/// The data streams repeat with this (prime) period.
const PERIOD: usize = 1_000_003;
/// The file of the boundary test.
const EDGE_LEN: usize = (5 << 20) + 3;

/// Byte `j` of the period of the stream `seed` (large_io.c's pattern_byte).
fn pattern_byte(j: u64, seed: u64) -> u8 {
    let mut x = j.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(seed);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    x.to_le_bytes()[0]
}

/// The first `len` bytes of the stream `seed`.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let first = u64::try_from(len.min(PERIOD)).expect("fits");
    let mut data: Vec<u8> = (0..first).map(|j| pattern_byte(j, seed)).collect();
    data.reserve(len - data.len());
    while data.len() < len {
        let k = (len - data.len()).min(PERIOD);
        data.extend_from_within(..k);
    }
    data
}

/// Builds large_io.c with `-DPART_<part>` and runs it on `dir`; returns
/// its output after checking it exited with 0 and printed no warnings.
fn run_part(part: &str, dir: &Path, build_dir: &Path) -> Option<String> {
    let elf = build_guest("large_io", &[&format!("-DPART_{part}")], build_dir);
    let kvm = kvm_or_skip()?;
    let grant = dir.to_str().expect("UTF-8 temp path").to_owned();
    let run = run_guest(&kvm, &elf, &[grant], MEM);
    assert_eq!(
        run.outcome.ending,
        Ending::Exited(0),
        "{}",
        run.stdout_text()
    );
    assert_eq!(run.warnings_text(), "");
    Some(run.stdout_text())
}

/// Asserts two byte strings are equal without printing 64 MiB of them.
fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!("{what}: first difference at byte {at:?}");
    }
}

#[test]
fn guest_writes_64_mib_in_one_call_and_in_odd_chunks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let build = tempfile::tempdir().expect("temp dir");
    let Some(out) = run_part("WRITE", dir.path(), build.path()) else {
        return;
    };
    let single = std::fs::read(dir.path().join("single.bin")).expect("single.bin");
    let sum = fnv1a64_words(&single);
    let chunked = |name: &str, calls: usize| {
        format!("fstat: 0\nsize: {SIZE}\nclose: 0\n{name}: total {SIZE} calls {calls}\n")
    };
    assert_lines(
        &out,
        &format!(
            "generated: {sum}\nopen single.bin: 3\nwrite 64 MiB: {SIZE}\noffset: {SIZE}\n\
             close: 0\n{}{}{}still: {sum}\n",
            chunked("chunks4093.bin", SIZE.div_ceil(4093)),
            chunked("chunks1m7.bin", SIZE.div_ceil((1 << 20) + 7)),
            chunked("pwrite1m7.bin", SIZE.div_ceil((1 << 20) + 7)),
        ),
    );
    assert_eq!(SIZE.div_ceil(4093), 16_397);
    assert_eq!(SIZE.div_ceil((1 << 20) + 7), 64);

    let want = pattern(SIZE, 1);
    assert_same_bytes(&single, &want, "single.bin");
    drop(single);
    for name in ["chunks4093.bin", "chunks1m7.bin", "pwrite1m7.bin"] {
        let got = std::fs::read(dir.path().join(name)).expect(name);
        assert_same_bytes(&got, &want, name);
    }
    assert_eq!(
        snapshot(dir.path()).keys().collect::<Vec<_>>(),
        [
            "chunks1m7.bin",
            "chunks4093.bin",
            "pwrite1m7.bin",
            "single.bin"
        ]
    );
}

#[test]
fn guest_reads_64_mib_in_one_call_and_in_odd_chunks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let build = tempfile::tempdir().expect("temp dir");
    let data = pattern(SIZE, 2);
    write_file(&dir.path().join("in.bin"), &data, 0o644);
    let sum = fnv1a64_words(&std::fs::read(dir.path().join("in.bin")).expect("in.bin"));
    let Some(out) = run_part("READ", dir.path(), build.path()) else {
        return;
    };
    let chunked = |what: &str, calls: usize| {
        format!("rewind: 0\nlast read: 0\n{what}: total {SIZE} calls {calls}\nchecksum: {sum}\n")
    };
    assert_lines(
        &out,
        &format!(
            "open in.bin: 3\nread 64 MiB + 4096: {SIZE}\nread at EOF: 0\nchecksum: {sum}\n\
             {}{}\
             (1 MiB + 7)-byte preads backwards: total {SIZE} calls 64\nchecksum: {sum}\n\
             pread 64 MiB - 1 at 1: {}\npread 1 at 0: 1\nchecksum: {sum}\nclose: 0\n",
            // Each ends with the read that returns 0.
            chunked("4093-byte reads", 16_398),
            chunked("(1 MiB + 7)-byte reads", 65),
            SIZE - 1,
        ),
    );
    // The guest only read.
    assert_same_bytes(
        &std::fs::read(dir.path().join("in.bin")).expect("in.bin"),
        &data,
        "in.bin",
    );
}

#[test]
fn buffers_across_2_mib_page_boundaries_at_odd_addresses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let build = tempfile::tempdir().expect("temp dir");
    let edge = pattern(EDGE_LEN, 3);
    write_file(&dir.path().join("edge.bin"), &edge, 0o644);
    let Some(out) = run_part("BOUNDARY", dir.path(), build.path()) else {
        return;
    };
    let end = 20_000 + EDGE_LEN;
    assert_lines(
        &out,
        &format!(
            "boundaries inside the buffer: 1\nopen a path across 0x200000: 3\n\
             pread across 0x200000: 12293\nchecksum: {}\n\
             read across 3 boundaries: {EDGE_LEN}\nchecksum: {}\n\
             fstat across 0x200000: 0\nsize: {EDGE_LEN}\nclose: 0\n\
             open edge_out.bin: 3\npwrite across 0x200000: 12293\n\
             pwrite across 3 boundaries: {EDGE_LEN}\noffset: 0\n\
             seek to the end: {end}\nwrite across 0x200000: 2\nclose: 0\n\
             getdents across 0x200000: 1\nnames: . .. edge.bin edge_out.bin\nclose: 0\n",
            fnv1a64_words(&edge[7..7 + 12_293]),
            fnv1a64_words(&edge),
        ),
    );

    // edge_out.bin: a hole, the 12293 generated bytes at 4093, a hole,
    // edge.bin's bytes at 20000, then the 2 bytes from either side of
    // 0x200000 (bytes 4094 and 4095 of the generated ones).
    let generated = pattern(4096, 4);
    let mut want = vec![0u8; end + 2];
    want[4093..4093 + 12_293].copy_from_slice(&pattern(12_293, 4));
    want[20_000..end].copy_from_slice(&edge);
    want[end..].copy_from_slice(&generated[4094..4096]);
    let got = std::fs::read(dir.path().join("edge_out.bin")).expect("edge_out.bin");
    assert_same_bytes(&got, &want, "edge_out.bin");
    assert_same_bytes(
        &std::fs::read(dir.path().join("edge.bin")).expect("edge.bin"),
        &edge,
        "edge.bin",
    );
}
