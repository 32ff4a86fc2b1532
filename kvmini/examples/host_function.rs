//! Host functions: this program keeps a key-value store (a `HashMap`) and
//! lends it to the built-in `kvstore` guest as host functions, registered
//! with `SandboxBuilder::host_function`:
//!
//! | id | call | result |
//! |---|---|---|
//! | 1 | `set(key_ptr, key_len, val_ptr, val_len)` | 0 |
//! | 2 | `get(key_ptr, key_len, out_ptr, out_len)` | the value's length, or -ENOENT |
//! | 3 | `count()` | the number of entries |
//!
//! Each call is one VM exit. A host function gets the six integer
//! arguments and reads or writes guest memory through `HostCall`, which
//! checks every address against the guest's own page tables: a bad
//! pointer is `Errno::EFAULT` for the guest, never a crash here. The store
//! outlives the sandbox: the program prints it after the guest is gone.
//!
//! ```sh
//! cargo run --example host_function
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use kvmini::guests;
use kvmini::host::{Errno, HostCall};
use kvmini::kvm::Kvm;
use kvmini::sandbox::Sandbox;

type Store = Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>;

/// The longest key or value the store takes: a guest cannot make the host
/// allocate more than this per argument.
const MAX_LEN: u64 = 1 << 20;

/// The bytes at guest address `arg(ptr)`, `arg(len)` of them.
fn bytes(call: &HostCall<'_>, ptr: usize, len: usize) -> Result<Vec<u8>, Errno> {
    if call.arg(len) > MAX_LEN {
        return Err(Errno::EINVAL);
    }
    call.read_vec(call.arg(ptr), call.arg(len))
}

fn lock(store: &Store) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Vec<u8>>> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

fn main() -> ExitCode {
    match run() {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            // The error and its sources on one line.
            let mut line = format!("host_function: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                line.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{line}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<u8, Box<dyn std::error::Error>> {
    let kvm = Kvm::open()?;
    let store = Store::default();
    let (set, get, count) = (store.clone(), store.clone(), store.clone());

    let mut sandbox = Sandbox::builder()
        .elf(guests::KVSTORE.elf)
        // kvstore stores its key=value arguments too.
        .args(["kvstore", "embedder=examples/host_function.rs"])
        // set(key_ptr, key_len, val_ptr, val_len) -> 0
        .host_function(1, move |call| {
            let key = bytes(call, 0, 1)?;
            let value = bytes(call, 2, 3)?;
            lock(&set).insert(key, value);
            Ok(0)
        })
        // get(key_ptr, key_len, out_ptr, out_len) -> the value's length;
        // copies as much of the value as fits.
        .host_function(2, move |call| {
            let key = bytes(call, 0, 1)?;
            let store = lock(&get);
            let value = store.get(&key).ok_or(Errno::ENOENT)?;
            let room = usize::try_from(call.arg(3)).unwrap_or(usize::MAX);
            call.write(call.arg(2), &value[..value.len().min(room)])?;
            Ok(value.len() as u64)
        })
        // count() -> entries
        .host_function(3, move |_| Ok(lock(&count).len() as u64))
        .build(&kvm)?;

    // The guest prints straight to this program's stdout.
    println!("--- the kvstore guest:");
    let outcome = sandbox.run()?;
    drop(sandbox);
    println!(
        "--- the guest ended: {:?} (status {}), after {} exits",
        outcome.ending,
        outcome.ending.status(),
        outcome.stats.exits
    );

    let store = lock(&store);
    let mut entries: Vec<_> = store.iter().collect();
    entries.sort();
    println!(
        "--- the store, seen from the host: {} entries",
        entries.len()
    );
    for (key, value) in entries {
        println!(
            "{} = {:?}",
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(value)
        );
    }
    Ok(outcome.ending.status())
}
