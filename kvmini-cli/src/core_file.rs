//! `kvmini run --core FILE`: the core file of a crashed guest. It is
//! written to a new file beside FILE, with mode 0600 (it holds the guest's
//! memory), and renamed over FILE once whole: FILE changes only when a
//! whole core replaces it, and kvmini never opens whatever FILE is (a FIFO
//! would make it wait for a reader).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use kvmini::core_dump::{CoreError, CoreSummary};
use kvmini::memory::ByteSize;
use kvmini::sandbox::{Outcome, Sandbox};

use crate::print::eprintln;

/// Errors of writing a core file.
#[derive(Debug, thiserror::Error)]
pub enum CoreFileError {
    /// The new file beside FILE could not be created.
    #[error("cannot create {}", .0.display())]
    Create(PathBuf, #[source] io::Error),
    /// The core could not be made or written.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The new file could not be renamed over FILE.
    #[error("cannot rename {} to it", .0.display())]
    Rename(PathBuf, #[source] io::Error),
}

/// Writes the core of `outcome`'s crash to `path` and says so on stderr,
/// or returns why it could not.
pub fn write(
    sandbox: &mut Sandbox,
    outcome: &Outcome,
    program: &Path,
    path: &Path,
) -> Result<(), CoreFileError> {
    let summary = write_file(sandbox, outcome, program, path)?;
    let segments = if summary.segments == 1 {
        "segment"
    } else {
        "segments"
    };
    eprintln!(
        "kvmini: core file written to {} ({} {segments}, {} of guest memory)",
        path.display(),
        summary.segments,
        ByteSize(summary.memory_bytes)
    );
    if !summary.left_out.is_empty() {
        eprintln!("kvmini: the core file leaves out {}", summary.left_out);
    }
    Ok(())
}

fn write_file(
    sandbox: &mut Sandbox,
    outcome: &Outcome,
    program: &Path,
    path: &Path,
) -> Result<CoreSummary, CoreFileError> {
    let name = path.file_name().unwrap_or(path.as_os_str());
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(name);
    partial_name.push(format!(".kvmini-{}.partial", std::process::id()));
    let partial = path.with_file_name(partial_name);
    let file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| CoreFileError::Create(partial.clone(), e))?;
    let mut out = BufWriter::new(file);
    let written = sandbox
        .write_core(outcome, program.as_os_str().as_encoded_bytes(), &mut out)
        .map_err(CoreFileError::from)
        .and_then(|summary| {
            drop(out);
            std::fs::rename(&partial, path)
                .map(|()| summary)
                .map_err(|e| CoreFileError::Rename(partial.clone(), e))
        });
    if written.is_err() {
        // What was written is no core; a file that cannot be removed is
        // left, named as partial.
        let _ = std::fs::remove_file(&partial);
    }
    written
}
