//! The built-in guests, built from `guests/` by kvmini's build script and
//! embedded in the binary, and the flat hello images of the CPU modes
//! other than long mode.

use crate::modes::CpuMode;

/// A built-in guest.
#[derive(Clone, Copy, Debug)]
pub struct BuiltinGuest {
    /// Its name for `kvmini demo NAME`.
    pub name: &'static str,
    /// One line on what it shows.
    pub summary: &'static str,
    /// The static ELF image.
    pub elf: &'static [u8],
    /// It works on files, so the demo grants it a fresh directory as `/`.
    pub needs_dir: bool,
}

/// A built-in guest whose image the build script wrote as `guests/NAME`.
macro_rules! builtin {
    ($name:literal, needs_dir: $needs_dir:expr, $summary:expr $(,)?) => {
        BuiltinGuest {
            name: $name,
            summary: $summary,
            elf: include_bytes!(concat!(env!("OUT_DIR"), "/guests/", $name)),
            needs_dir: $needs_dir,
        }
    };
}

/// `hello`: "Hello, world!" one byte per exit, then 42 in memory and RAX.
pub const HELLO: BuiltinGuest = builtin!(
    "hello",
    needs_dir: false,
    "the classic: \"Hello, world!\" through port 0xE9, one exit per byte, then 42 left in RAX",
);

/// `hypercalls`: every Part B hypercall and the one-exit `display` proof.
pub const HYPERCALLS: BuiltinGuest = builtin!(
    "hypercalls",
    needs_dir: false,
    "printVal, getNumExits and display, with the proof that display costs one exit",
);

/// `files`: the filesystem hypercalls in a granted directory.
pub const FILES: BuiltinGuest = builtin!(
    "files",
    needs_dir: true,
    "files in a granted directory: open, write, seek, read, stat, mkdir, rename, list, errors",
);

/// `kvstore`: a key-value store kept by the embedding program, reached
/// through host functions 1 = `set(key_ptr, key_len, val_ptr, val_len)`,
/// 2 = `get(key_ptr, key_len, out_ptr, out_len)` (the value's length, or
/// -ENOENT) and 3 = `count()`. Not in [`ALL`]: the CLI registers no host
/// functions (`kvmini/examples/host_function.rs` does).
pub const KVSTORE: BuiltinGuest = builtin!(
    "kvstore",
    needs_dir: false,
    "a key-value store in the embedding program, through host functions \
     1 = set(key, value), 2 = get(key, out) -> length or -ENOENT, 3 = count()",
);

/// Every built-in guest, in demo-tour order.
pub const ALL: &[BuiltinGuest] = &[HELLO, HYPERCALLS, FILES];

/// Looks a built-in guest up by name.
pub fn find(name: &str) -> Option<&'static BuiltinGuest> {
    ALL.iter().find(|g| g.name == name)
}

/// What the flat hello images print, one `out` each.
const GREETING: &[u8] = b"Hello, world!\n";

/// `mov al, c; out dx, al` for each byte of [`GREETING`]: the same
/// encoding in 16-bit and 32-bit code.
const GREETING_OUTS: [u8; 3 * GREETING.len()] = {
    let mut out = [0; 3 * GREETING.len()];
    let mut i = 0;
    while i < GREETING.len() {
        out[3 * i] = 0xB0; // mov al, imm8
        out[3 * i + 1] = GREETING[i];
        out[3 * i + 2] = 0xEE; // out dx, al
        i += 1;
    }
    out
};

/// `head`, [`GREETING_OUTS`], then `tail`, as one image of `N` bytes.
const fn hello_image<const N: usize>(head: &[u8], tail: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    let mut at = 0;
    while at < head.len() {
        out[at] = head[at];
        at += 1;
    }
    let mut i = 0;
    while i < GREETING_OUTS.len() {
        out[at] = GREETING_OUTS[i];
        at += 1;
        i += 1;
    }
    let mut i = 0;
    while i < tail.len() {
        out[at] = tail[i];
        at += 1;
        i += 1;
    }
    assert!(at == N, "the image's length is the sum of its parts");
    out
}

/// The classic hello world in 16-bit code, for real mode.
#[rustfmt::skip]
pub const HELLO_REAL: &[u8] = &hello_image::<{ 3 + GREETING_OUTS.len() + 10 }>(
    &[0xBA, 0xE9, 0x00], // mov dx, 0xE9
    &[
        0xC7, 0x06, 0x00, 0x04, 0x2A, 0x00, // mov word [0x400], 42 (DS = 0)
        0xB8, 0x2A, 0x00,                   // mov ax, 42
        0xF4,                               // hlt
    ],
);

/// The classic hello world in 32-bit code, for the protected, paged32 and
/// pae32 modes (identity-mapped, so address 0x400 is the same everywhere).
#[rustfmt::skip]
pub const HELLO_32: &[u8] = &hello_image::<{ 4 + GREETING_OUTS.len() + 16 }>(
    &[0x66, 0xBA, 0xE9, 0x00], // mov dx, 0xE9
    &[
        0xC7, 0x05, 0x00, 0x04, 0x00, 0x00,
        0x2A, 0x00, 0x00, 0x00,             // mov dword [0x400], 42
        0xB8, 0x2A, 0x00, 0x00, 0x00,       // mov eax, 42
        0xF4,                               // hlt
    ],
);

/// The built-in flat hello image of `mode`; `None` for long mode, whose
/// hello is the ring-3 Rust guest ([`crate::guests::HELLO`]).
pub const fn hello(mode: CpuMode) -> Option<&'static [u8]> {
    match mode {
        CpuMode::Real => Some(HELLO_REAL),
        CpuMode::Protected | CpuMode::Paged32 | CpuMode::Pae32 => Some(HELLO_32),
        CpuMode::Long => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_images_end_in_hlt() {
        for mode in [
            CpuMode::Real,
            CpuMode::Protected,
            CpuMode::Paged32,
            CpuMode::Pae32,
        ] {
            let image = hello(mode).unwrap();
            assert_eq!(image.last(), Some(&0xF4));
            let text: Vec<u8> = image
                .windows(3)
                .filter(|w| w[0] == 0xB0 && w[2] == 0xEE)
                .map(|w| w[1])
                .collect();
            assert_eq!(text, b"Hello, world!\n");
        }
        assert_eq!(hello(CpuMode::Long), None);
    }
}
