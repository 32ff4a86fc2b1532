//! Where a guest's input comes from and its output goes: kvmini's own
//! stdin/stdout/stderr, nothing, a reader or writer of the embedding
//! program, or a [`Capture`] buffer read back after the run.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};

/// A buffer that collects everything written to its writers.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl Capture {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that appends to this capture.
    pub fn writer(&self) -> Box<dyn Write + Send> {
        Box::new(self.clone())
    }

    /// Everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.buf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The guest's standard input (descriptor 0).
#[derive(Default)]
pub enum Input {
    /// kvmini's own stdin (read straight into guest memory).
    #[default]
    Inherit,
    /// End of file at once.
    Null,
    /// Bytes from a reader.
    Reader(Box<dyn Read + Send>),
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::Inherit => "Inherit",
            Input::Null => "Null",
            Input::Reader(_) => "Reader",
        })
    }
}

/// Where one of the guest's output streams goes.
#[derive(Default)]
pub enum Output {
    /// kvmini's own stdout or stderr.
    #[default]
    Inherit,
    /// Nowhere.
    Null,
    /// Into a capture buffer.
    Capture(Capture),
    /// Into a writer.
    Writer(Box<dyn Write + Send>),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Output::Inherit => "Inherit",
            Output::Null => "Null",
            Output::Capture(_) => "Capture",
            Output::Writer(_) => "Writer",
        })
    }
}

/// Which of kvmini's own streams [`Output::Inherit`] means.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

impl Output {
    /// The writer this output stands for.
    pub fn into_writer(self, inherit: Stream) -> Box<dyn Write + Send> {
        match self {
            Output::Inherit => match inherit {
                Stream::Stdout => Box::new(io::stdout()),
                Stream::Stderr => Box::new(io::stderr()),
            },
            Output::Null => Box::new(io::sink()),
            Output::Capture(capture) => capture.writer(),
            Output::Writer(writer) => writer,
        }
    }
}
