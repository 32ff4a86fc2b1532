//! The gdb stub's packet path ([`kvmini::debug::serve`]) fed what a broken
//! or hostile client sends: random bytes, packets with bad checksums, and
//! well-formed packets with random bodies (reads, breakpoints, resumes),
//! then a closed connection. Each session must end cleanly (never a panic
//! or a hang), take out any breakpoint it set, and let the guest run to
//! its own end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;

use common::kvm_or_skip;
use kvmini::cpu::Ring;
use kvmini::debug::{serve, Endpoint, Listener};
use kvmini::sandbox::{Ending, Image, Sandbox};

/// Ring 3: four `nop`s, then the halt hypercall.
#[rustfmt::skip]
const IMAGE: &[u8] = &[
    0x90, 0x90, 0x90, 0x90, // nop x4
    0x66, 0xBA, 0x04, 0x04, // mov dx, 0x404 (halt)
    0xEE,                   // out dx, al
];

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> usize {
        usize::try_from(self.next() % n).unwrap()
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

fn packet(body: &[u8], good_checksum: bool) -> Vec<u8> {
    let sum = body.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let sum = if good_checksum {
        sum
    } else {
        sum.wrapping_add(1)
    };
    let mut p = vec![b'$'];
    p.extend_from_slice(body);
    p.extend_from_slice(format!("#{sum:02x}").as_bytes());
    p
}

/// What one client sends: a mix of noise and packets.
fn client_input(rng: &mut Rng) -> Vec<u8> {
    const PREFIXES: &[&str] = &[
        "?",
        "g",
        "m",
        "m0,",
        "m4,",
        "Z0,",
        "z0,",
        "Z0,2,1",
        "z0,2,1",
        "c",
        "s",
        "vCont;s",
        "vCont;c",
        "qSupported:",
        "qXfer:features:read:target.xml:",
        "H",
        "Hg0",
        "p",
    ];
    let mut out = Vec::new();
    for _ in 0..rng.below(12) {
        match rng.below(5) {
            0 => {
                let len = rng.below(64);
                out.extend(rng.bytes(len));
            }
            1 => out.push(0x03),
            2 => {
                let len = rng.below(16);
                out.extend(packet(&rng.bytes(len), false));
            }
            _ => {
                let mut body = PREFIXES[rng.below(PREFIXES.len() as u64)]
                    .as_bytes()
                    .to_vec();
                let len = rng.below(8);
                body.extend(
                    rng.bytes(len)
                        .into_iter()
                        .map(|b| b"0123456789abcdef,:;"[usize::from(b) % 19]),
                );
                out.extend(packet(&body, true));
            }
        }
    }
    out
}

#[test]
fn garbage_ends_the_session_and_the_guest_runs_to_its_end() {
    let Some(kvm) = kvm_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gdb.sock");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for case in 0..40 {
        let input = client_input(&mut rng);
        let mut sandbox = Sandbox::builder()
            .image(Image::Flat(IMAGE.to_vec()))
            .ring(Ring::Three)
            .build(&kvm)
            .unwrap();
        let listener = Listener::bind(&Endpoint::Unix(path.clone())).unwrap();
        let to_send = input.clone();
        let client_path = path.clone();
        let client = std::thread::spawn(move || {
            let mut stream = UnixStream::connect(client_path).unwrap();
            // The stub may close first (a broken packet ends the session).
            let _ = stream.write_all(&to_send);
            // Drain answers until the stub closes, so that it never waits
            // on a full socket.
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = std::io::copy(&mut stream, &mut std::io::sink());
        });
        let session = serve(&mut sandbox, &listener).unwrap();
        client.join().unwrap();
        assert_eq!(
            session.outcome.ending,
            Ending::Halted,
            "case {case}: input {:?}",
            String::from_utf8_lossy(&input)
        );
        drop(listener);
        assert!(!path.exists(), "case {case}: the socket is removed");
    }
}
