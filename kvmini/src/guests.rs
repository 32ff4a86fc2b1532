//! The built-in guests, built from `guests/` by kvmini's build script and
//! embedded in the binary.

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

/// `hello`: "Hello, world!" one byte per exit, then 42 in memory and RAX.
pub const HELLO: BuiltinGuest = BuiltinGuest {
    name: "hello",
    summary:
        "the classic: \"Hello, world!\" through port 0xE9, one exit per byte, then 42 left in RAX",
    elf: include_bytes!(concat!(env!("OUT_DIR"), "/guests/hello")),
    needs_dir: false,
};

/// `hypercalls`: every Part B hypercall and the one-exit `display` proof.
pub const HYPERCALLS: BuiltinGuest = BuiltinGuest {
    name: "hypercalls",
    summary: "printVal, getNumExits and display, with the proof that display costs one exit",
    elf: include_bytes!(concat!(env!("OUT_DIR"), "/guests/hypercalls")),
    needs_dir: false,
};

/// `files`: the filesystem hypercalls in a granted directory.
pub const FILES: BuiltinGuest = BuiltinGuest {
    name: "files",
    summary:
        "files in a granted directory: open, write, seek, read, stat, mkdir, rename, list, errors",
    elf: include_bytes!(concat!(env!("OUT_DIR"), "/guests/files")),
    needs_dir: true,
};

/// `kvstore`: a key-value store kept by the embedding program, reached
/// through host functions 1 = `set(key_ptr, key_len, val_ptr, val_len)`,
/// 2 = `get(key_ptr, key_len, out_ptr, out_len)` (the value's length, or
/// -ENOENT) and 3 = `count()`. Not in [`ALL`]: the CLI registers no host
/// functions (`kvmini/examples/host_function.rs` does).
pub const KVSTORE: BuiltinGuest = BuiltinGuest {
    name: "kvstore",
    summary: "a key-value store in the embedding program, through host functions \
              1 = set(key, value), 2 = get(key, out) -> length or -ENOENT, 3 = count()",
    elf: include_bytes!(concat!(env!("OUT_DIR"), "/guests/kvstore")),
    needs_dir: false,
};

/// Every built-in guest, in demo-tour order.
pub const ALL: &[BuiltinGuest] = &[HELLO, HYPERCALLS, FILES];

/// Looks a built-in guest up by name.
pub fn find(name: &str) -> Option<&'static BuiltinGuest> {
    ALL.iter().find(|g| g.name == name)
}
