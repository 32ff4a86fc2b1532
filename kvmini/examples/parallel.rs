//! Many sandboxes at once: 64 threads, each with a sandbox of its own.
//! Even-numbered ones run the built-in `files` guest, which creates files
//! and a directory in the temporary directory granted to it as `/`;
//! odd-numbered ones run `hello` with arguments and a directory it never
//! touches. Each has its own captured stdout and stderr.
//!
//! Then every output must be exactly its guest's, and every directory must
//! hold exactly its own guest's files: a write that went to the wrong
//! sandbox would show up in a `hello` directory, a lost one in a `files`
//! directory. Prints the total time and the runs per second.
//!
//! ```sh
//! cargo run --release --example parallel
//! ```

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kvmini::guests;
use kvmini::kvm::Kvm;
use kvmini::output::{Capture, Input, Output};
use kvmini::sandbox::{Ending, Sandbox};

const SANDBOXES: usize = 64;

/// What `files` prints; the line `ls /:` may list its two entries in
/// either order, as the host filesystem returns them.
const FILES_STDOUT: &str = "\
opened /notes.txt as fd 3 and /squares.txt as fd 4
read 71 bytes back from /notes.txt:
kvmini keeps this file on the host.
line 1
line 2
line 3
line 4
line 5
pread at offset 0: \"kvmini keeps this file on the host.\"
/notes.txt is 71 bytes
moved /squares.txt to /reports/squares.txt (77 bytes)
ls /: notes.txt reports/
open /no-such-file: -2 (ENOENT)
create the existing /notes.txt with O_EXCL: -17 (EEXIST)
open /../../etc/passwd: -2 (ENOENT) (.. stops at the granted root)
rmdir /reports: -39 (ENOTEMPTY)
";

const NOTES: &str = "kvmini keeps this file on the host.\nline 1\nline 2\nline 3\nline 4\nline 5\n";
const SQUARES: &str =
    "1 squared is 1\n2 squared is 4\n3 squared is 9\n4 squared is 16\n5 squared is 25\n";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What one sandbox left behind.
struct Run {
    ending: Ending,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    took: Duration,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("parallel: {}", kvmini::cli::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Error> {
    let kvm = Kvm::open()?;
    let dirs = (0..SANDBOXES)
        .map(|_| tempfile::tempdir())
        .collect::<Result<Vec<_>, _>>()?;

    let started = Instant::now();
    let runs = std::thread::scope(|scope| {
        let threads: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let kvm = &kvm;
                scope.spawn(move || one(kvm, i, dir.path()))
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect::<Result<Vec<Run>, _>>()
    })?;
    let elapsed = started.elapsed();

    let mut failures = 0;
    for (i, (run, dir)) in runs.iter().zip(&dirs).enumerate() {
        if let Err(why) = check(i, run, dir.path()) {
            eprintln!("sandbox {i}: {why}");
            failures += 1;
        }
    }
    let slowest = runs.iter().map(|r| r.took).max().unwrap_or_default();
    println!(
        "{SANDBOXES} sandboxes on {SANDBOXES} threads ({} files, {} hello): {} correct",
        SANDBOXES.div_ceil(2),
        SANDBOXES / 2,
        SANDBOXES - failures
    );
    println!(
        "total {elapsed:?} ({:.0} runs/s); the slowest sandbox took {slowest:?} to build and run",
        SANDBOXES as f64 / elapsed.as_secs_f64()
    );
    Ok(failures == 0)
}

/// Builds and runs sandbox `i` with `dir` as its `/`.
fn one(kvm: &Kvm, i: usize, dir: &Path) -> Result<Run, Error> {
    let started = Instant::now();
    let (stdout, stderr) = (Capture::new(), Capture::new());
    let guest = if i % 2 == 0 {
        guests::FILES
    } else {
        guests::HELLO
    };
    let mut sandbox = Sandbox::builder()
        .elf(guest.elf)
        .memory(8 << 20)
        .args([guest.name.to_owned(), format!("sandbox-{i}")])
        .dir(dir, "/", false)
        .stdin(Input::Null)
        .stdout(Output::Capture(stdout.clone()))
        .stderr(Output::Capture(stderr.clone()))
        .build(kvm)?;
    let outcome = sandbox.run()?;
    Ok(Run {
        ending: outcome.ending,
        stdout: stdout.contents(),
        stderr: stderr.contents(),
        took: started.elapsed(),
    })
}

/// Sandbox `i`'s output and directory against what its guest makes.
fn check(i: usize, run: &Run, dir: &Path) -> Result<(), String> {
    let stdout = String::from_utf8_lossy(&run.stdout);
    let files = i % 2 == 0;
    let (ending, want) = if files {
        (Ending::Exited(0), FILES_STDOUT.to_owned())
    } else {
        (Ending::Halted, "Hello, world!\n".to_owned())
    };
    if run.ending != ending {
        return Err(format!("ended {:?}, not {ending:?}", run.ending));
    }
    let other_order = want.replace("ls /: notes.txt reports/", "ls /: reports/ notes.txt");
    if stdout != want && stdout != other_order {
        return Err(format!("printed {stdout:?}"));
    }
    if !run.stderr.is_empty() {
        return Err(format!(
            "wrote to stderr: {:?}",
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    let found = list(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let expected: Vec<(String, Option<String>)> = if files {
        vec![
            ("notes.txt".into(), Some(NOTES.into())),
            ("reports/".into(), None),
            ("reports/squares.txt".into(), Some(SQUARES.into())),
        ]
    } else {
        Vec::new()
    };
    if found != expected {
        return Err(format!("{} holds {found:?}", dir.display()));
    }
    Ok(())
}

/// Everything under `dir`, sorted: files with their contents, directories
/// with a trailing `/`.
fn list(dir: &Path) -> std::io::Result<Vec<(String, Option<String>)>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at)? {
            let path = entry?.path();
            let name = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                found.push((name + "/", None));
                pending.push(path);
            } else {
                found.push((name, Some(std::fs::read_to_string(&path)?)));
            }
        }
    }
    found.sort();
    Ok(found)
}
