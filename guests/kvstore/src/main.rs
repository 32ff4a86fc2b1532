//! A key-value store that lives in the program embedding kvmini, reached
//! through host functions: the guest stores a few entries, reads them
//! back, and shows the error for a missing key.
//!
//! The host functions it calls, which the embedding program registers with
//! `SandboxBuilder::host_function` (`kvmini/examples/host_function.rs` is
//! such a program); keys and values are byte strings:
//!
//! | id | call | result |
//! |---|---|---|
//! | 1 | `set(key_ptr, key_len, val_ptr, val_len)` | 0 |
//! | 2 | `get(key_ptr, key_len, out_ptr, out_len)` | the value's length, or -ENOENT; copies at most `out_len` bytes of the value to `out_ptr` |
//! | 3 | `count()` | the number of entries |
//!
//! Each argument after the first that reads `key=value` is stored too.
//! Without these host functions (under `kvmini run`, say) the first call
//! gets -ENOSYS and the guest exits with status 1.
#![no_std]
#![no_main]

use kvmini_guest::Errno;
use kvmini_guest::{env, host, println};

kvmini_guest::entry!(main);

/// `set(key_ptr, key_len, val_ptr, val_len)`.
const SET: u32 = 1;
/// `get(key_ptr, key_len, out_ptr, out_len)`.
const GET: u32 = 2;
/// `count()`.
const COUNT: u32 = 3;

const ENTRIES: [(&str, &str); 3] = [
    ("name", "kvmini"),
    ("kind", "hypervisor"),
    ("language", "Rust"),
];

fn main() -> i32 {
    match demo() {
        Ok(()) => 0,
        Err(e) => {
            println!("kvstore failed: -{} ({e})", e.0);
            if e == Errno::ENOSYS {
                println!("it needs host functions 1..3: see kvmini/examples/host_function.rs");
            }
            1
        }
    }
}

fn set(key: &[u8], value: &[u8]) -> Result<(), Errno> {
    host::call(
        SET,
        &[
            host::addr(key.as_ptr()),
            key.len() as u64,
            host::addr(value.as_ptr()),
            value.len() as u64,
        ],
    )
    .map(drop)
}

/// The value's full length, and the part of it that fit in `out`.
fn get<'a>(key: &[u8], out: &'a mut [u8]) -> Result<(usize, &'a [u8]), Errno> {
    let len = host::call(
        GET,
        &[
            host::addr(key.as_ptr()),
            key.len() as u64,
            host::addr(out.as_mut_ptr()),
            out.len() as u64,
        ],
    )?;
    let len = usize::try_from(len).map_err(|_| Errno::EOVERFLOW)?;
    Ok((len, &out[..len.min(out.len())]))
}

fn text(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes).unwrap_or("(not UTF-8)")
}

fn demo() -> Result<(), Errno> {
    for (key, value) in ENTRIES {
        set(key.as_bytes(), value.as_bytes())?;
        println!("set {key} = {value:?}");
    }

    let mut argbuf = [0u8; 1024];
    match env::args(&mut argbuf) {
        Ok(args) => {
            for arg in args.skip(1) {
                let arg = arg.to_bytes();
                match arg.iter().position(|&b| b == b'=') {
                    Some(eq) => {
                        let (key, value) = (&arg[..eq], &arg[eq + 1..]);
                        set(key, value)?;
                        println!("set {} = {:?} (from argv)", text(key), text(value));
                    }
                    None => println!("argument {:?} ignored: not key=value", text(arg)),
                }
            }
        }
        Err(env::ERANGE) => println!(
            "arguments ignored: they need {} bytes, more than {}",
            env::args_len()?,
            argbuf.len()
        ),
        Err(e) => return Err(e),
    }

    println!("count() = {}", host::call(COUNT, &[])?);
    let mut value = [0u8; 64];
    for (key, _) in ENTRIES {
        let (len, got) = get(key.as_bytes(), &mut value)?;
        println!("get {key} = {:?} ({len} bytes)", text(got));
    }
    let mut small = [0u8; 4];
    let (len, got) = get(b"kind", &mut small)?;
    println!("get kind into 4 bytes = {:?} (of {len})", text(got));
    match get(b"colour", &mut value) {
        Err(e) => println!("get colour = -{} ({e})", e.0),
        Ok((len, got)) => println!("get colour = {:?} ({len} bytes)", text(got)),
    }
    Ok(())
}
