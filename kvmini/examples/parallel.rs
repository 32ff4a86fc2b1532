//! Many sandboxes at once: 64 threads, each with a sandbox of its own.
//! Even-numbered ones run the built-in `files` guest, which creates files
//! and a directory in the temporary directory granted to it as `/`;
//! odd-numbered ones run `hello` with arguments and a directory it never
//! touches. Each has its own captured stdout and stderr.
//!
//! Then every sandbox must have printed exactly what its guest prints
//! when run alone, and every directory must hold exactly what a lone run
//! leaves: a write that went to the wrong sandbox would show up in a
//! `hello` directory, a lost one in a `files` directory. The lone runs go
//! first, one at a time, so that the expectation is the guests' own and
//! not a copy that could go stale. A difference is shown line by line;
//! sandboxes that differ the same way are reported once. Prints the total
//! time and the runs per second.
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

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What one sandbox left behind.
struct Run {
    ending: Ending,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    took: Duration,
}

/// What a lone run of a guest printed and left in its directory.
struct Expected {
    ending: Ending,
    stdout: String,
    tree: Vec<(String, Option<String>)>,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            // The error and its sources on one line.
            let mut line = format!("parallel: {e}");
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

fn run() -> Result<bool, Error> {
    let kvm = Kvm::open()?;
    // The expectation: each guest alone, in a directory of its own.
    let mut expected = Vec::new();
    for i in 0..2 {
        let dir = tempfile::tempdir()?;
        let run = one(&kvm, i, dir.path())?;
        if !run.stderr.is_empty() {
            return Err(format!(
                "{} alone wrote to stderr: {:?}",
                guest(i).name,
                String::from_utf8_lossy(&run.stderr)
            )
            .into());
        }
        let want = if i % 2 == 0 {
            Ending::Exited(0)
        } else {
            Ending::Halted
        };
        if run.ending != want {
            return Err(format!(
                "{} alone ended {:?}, not {want:?}: {}",
                guest(i).name,
                run.ending,
                String::from_utf8_lossy(&run.stdout)
            )
            .into());
        }
        expected.push(Expected {
            ending: run.ending,
            stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
            tree: list(dir.path())?,
        });
    }

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

    // Sandboxes that differ the same way, reported together.
    let mut failures: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, (run, dir)) in runs.iter().zip(&dirs).enumerate() {
        if let Err(why) = check(run, dir.path(), &expected[i % 2]) {
            let why = format!("{} {why}", guest(i).name);
            match failures.iter_mut().find(|(w, _)| *w == why) {
                Some((_, which)) => which.push(i),
                None => failures.push((why, vec![i])),
            }
        }
    }
    let failed: usize = failures.iter().map(|(_, which)| which.len()).sum();
    for (why, which) in &failures {
        let names: Vec<String> = which.iter().map(usize::to_string).collect();
        let sandbox = if which.len() == 1 {
            "sandbox"
        } else {
            "sandboxes"
        };
        eprintln!("{sandbox} {}: {why}", names.join(", "));
    }
    let slowest = runs.iter().map(|r| r.took).max().unwrap_or_default();
    println!(
        "{SANDBOXES} sandboxes on {SANDBOXES} threads ({} files, {} hello): {} of {SANDBOXES} \
         as their guest alone",
        SANDBOXES.div_ceil(2),
        SANDBOXES / 2,
        SANDBOXES - failed
    );
    println!(
        "total {elapsed:?} ({:.0} runs/s); the slowest sandbox took {slowest:?} to build and run",
        SANDBOXES as f64 / elapsed.as_secs_f64()
    );
    Ok(failed == 0)
}

/// The guest sandbox `i` runs.
fn guest(i: usize) -> guests::BuiltinGuest {
    if i % 2 == 0 {
        guests::FILES
    } else {
        guests::HELLO
    }
}

/// Builds and runs sandbox `i` with `dir` as its `/`.
fn one(kvm: &Kvm, i: usize, dir: &Path) -> Result<Run, Error> {
    let started = Instant::now();
    let (stdout, stderr) = (Capture::new(), Capture::new());
    let guest = guest(i);
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

/// A sandbox's ending, output and directory against its guest's lone run.
fn check(run: &Run, dir: &Path, expected: &Expected) -> Result<(), String> {
    if run.ending != expected.ending {
        return Err(format!(
            "ended {:?}, not {:?} as alone",
            run.ending, expected.ending
        ));
    }
    let stdout = String::from_utf8_lossy(&run.stdout);
    if let Some(difference) = first_difference(&expected.stdout, &stdout) {
        return Err(format!("printed other than alone: {difference}"));
    }
    if !run.stderr.is_empty() {
        return Err(format!(
            "wrote to stderr: {:?}",
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    let found = list(dir).map_err(|e| format!("cannot list its directory: {e}"))?;
    let mut differences = Vec::new();
    for (name, contents) in &expected.tree {
        match found.iter().find(|(n, _)| n == name) {
            None => differences.push(format!("{name} is missing")),
            Some((_, c)) if c != contents => {
                differences.push(format!("{name} holds {c:?}, not {contents:?}"))
            }
            Some(_) => {}
        }
    }
    for (name, _) in &found {
        if !expected.tree.iter().any(|(n, _)| n == name) {
            differences.push(format!("{name} should not be there"));
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "left other files than alone: {}",
            differences.join("; ")
        ))
    }
}

/// The first line where `got` differs from `want`, or `None` if they are
/// the same. A directory listing's entries (the line `ls /: ...`) may come
/// in any order, as the host filesystem returns them.
fn first_difference(want: &str, got: &str) -> Option<String> {
    let sorted = |line: &str| -> String {
        match line.strip_prefix("ls /:") {
            Some(names) => {
                let mut names: Vec<&str> = names.split_whitespace().collect();
                names.sort_unstable();
                format!("ls /: {}", names.join(" "))
            }
            None => line.to_owned(),
        }
    };
    let (mut want_lines, mut got_lines) = (want.split('\n'), got.split('\n'));
    for number in 1.. {
        match (want_lines.next(), got_lines.next()) {
            (None, None) => return None,
            (Some(w), Some(g)) if sorted(w) == sorted(g) => {}
            (w, g) => {
                return Some(format!(
                    "line {number} is {}, not {}",
                    g.map_or("missing".to_owned(), |g| format!("{g:?}")),
                    w.map_or("there at all".to_owned(), |w| format!("{w:?}")),
                ))
            }
        }
    }
    None
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
