//! Where a guest's input comes from and its output goes: kvmini's own
//! stdin/stdout/stderr, nothing, a reader or writer of the embedding
//! program, or a [`Capture`] buffer read back after the run.
//!
//! Output is written so that a stop can end it: kvmini's own descriptors
//! are written with plain `write` calls, which the stop signal interrupts
//! (never with the standard library's streams, which retry after EINTR),
//! and an interrupted write gives up once a stop is pending. A reader that
//! went away (EPIPE) is reported as such, not as an error of kvmini.

use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, PoisonError};

use crate::stop::StopHandle;

/// A buffer that collects what is written to its writers, up to a limit
/// ([`Capture::DEFAULT_LIMIT`] unless made [`Capture::with_limit`]).
///
/// A write that fits is kept whole. The first write that does not fit is
/// refused whole, and so is everything after it: the capture holds a
/// prefix of the output, cut between two writes, and counts the bytes it
/// refused ([`Capture::dropped`]). A guest `write` to a descriptor whose
/// capture is full gets `-ENOSPC` (or, when only later pieces of its
/// buffer were refused, the count of those taken); console, `printVal` and
/// `display` output, which has no result, is dropped and the guest goes
/// on. The run is not ended for it: a timeout bounds a guest that keeps
/// writing.
#[derive(Clone, Debug)]
pub struct Capture {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Debug)]
struct Captured {
    buf: Vec<u8>,
    limit: usize,
    dropped: u64,
}

/// What a capture answers a write it refuses: `ErrorKind::StorageFull`
/// carrying this, which kvmini tells apart from a writer's own ENOSPC.
#[derive(Debug, thiserror::Error)]
#[error("the capture is full (limit {limit} bytes)")]
pub struct CaptureFull {
    /// The capture's limit.
    pub limit: usize,
}

impl Default for Capture {
    fn default() -> Self {
        Self::with_limit(Self::DEFAULT_LIMIT)
    }
}

impl Capture {
    /// The limit of [`Capture::new`]: 64 MiB.
    pub const DEFAULT_LIMIT: usize = 64 << 20;

    /// An empty capture that keeps at most [`Capture::DEFAULT_LIMIT`] bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty capture that keeps at most `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        Capture {
            inner: Arc::new(Mutex::new(Captured {
                buf: Vec::new(),
                limit,
                dropped: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A writer that appends to this capture.
    pub fn writer(&self) -> Box<dyn Write + Send> {
        Box::new(self.clone())
    }

    /// Everything kept so far.
    pub fn contents(&self) -> Vec<u8> {
        self.lock().buf.clone()
    }

    /// The most bytes this capture keeps.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// How many bytes were refused since the capture filled up (0 while
    /// everything written was kept).
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut captured = self.lock();
        let fits = captured.dropped == 0
            && captured.buf.len().saturating_add(data.len()) <= captured.limit
            // Memory the allocator refuses is a full capture too, never an
            // abort of the embedding program.
            && captured.buf.try_reserve(data.len()).is_ok();
        if !fits && !data.is_empty() {
            captured.dropped = captured.dropped.saturating_add(data.len() as u64);
            let limit = captured.limit;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                CaptureFull { limit },
            ));
        }
        captured.buf.extend_from_slice(data);
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
    /// Bytes from a reader. A stop ends a `read` that waits only if the
    /// reader returns [`io::ErrorKind::Interrupted`] when the stop signal
    /// interrupts it, as [`Output::Writer`] says for writers.
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
///
/// A stop (timeout, stop handle, signal) can end a run whose output waits:
/// with [`Output::Inherit`], kvmini writes its own descriptor and a write
/// that waits for a reader (a full pipe, a FIFO, a terminal paused with
/// Ctrl-S) is interrupted. A [`Output::Writer`] is the embedding program's
/// code, run on the vCPU thread: kvmini sends that thread the stop signal
/// and gives up on the output when the writer's `write` returns
/// [`io::ErrorKind::Interrupted`], as `File`, `UnixStream` and `ChildStdin`
/// do when a write of theirs is interrupted. A writer that retries after
/// EINTR itself (`BufWriter`, `LineWriter`, `io::Stdout`) or waits on
/// something a signal does not interrupt (a lock, a channel) keeps the run
/// until it returns.
#[derive(Default)]
pub enum Output {
    /// kvmini's own stdout or stderr.
    #[default]
    Inherit,
    /// Nowhere.
    Null,
    /// Into a capture buffer.
    Capture(Capture),
    /// Into a writer (see above for what a stop can interrupt).
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

/// One of kvmini's own descriptors (1 or 2) as a writer: plain `write`
/// calls, never the standard library's `Stdout` or `Stderr`, whose lock an
/// embedding program may hold while it waits for a run.
#[derive(Debug)]
pub struct FdWriter(RawFd);

impl Write for FdWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        write_fd(self.0, data)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream {
    fn fd(self) -> RawFd {
        match self {
            Stream::Stdout => libc::STDOUT_FILENO,
            Stream::Stderr => libc::STDERR_FILENO,
        }
    }
}

impl Output {
    /// The writer this output stands for; [`Output::Inherit`] writes the
    /// descriptor itself ([`FdWriter`]), unbuffered and without taking the
    /// standard library's stream locks.
    pub fn into_writer(self, inherit: Stream) -> Box<dyn Write + Send> {
        match self {
            Output::Inherit => Box::new(FdWriter(inherit.fd())),
            Output::Null => Box::new(io::sink()),
            Output::Capture(capture) => capture.writer(),
            Output::Writer(writer) => writer,
        }
    }
}

/// Why guest output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A stop (timeout, stop handle, signal) ended a write that waited.
    #[error("the run was stopped while its output waited to be written")]
    Stopped,
    /// The reader went away: a closed pipe (EPIPE).
    #[error("the reader of the guest's output went away (broken pipe)")]
    Closed,
    /// A [`Capture`] reached its limit: the output is dropped.
    #[error("the capture of the guest's output is full")]
    Full,
    /// Any other failure of the writer.
    #[error("cannot write the guest's output")]
    Io(#[source] io::Error),
}

/// Where a [`GuestStream`]'s bytes go.
enum Sink {
    /// One of kvmini's own descriptors, 1 or 2.
    Fd(RawFd),
    /// A writer of the embedding program (or a capture, or nothing).
    Writer(Box<dyn Write + Send>),
}

/// Bytes kept before a line-buffered stream writes them.
const LINE_BUFFER: usize = 8 << 10;

/// One guest output stream (or kvmini's warnings about the guest): its
/// writer, and for kvmini's own stdout a line buffer.
pub struct GuestStream {
    sink: Sink,
    buf: Vec<u8>,
    line_buffered: bool,
}

impl std::fmt::Debug for GuestStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.sink {
            Sink::Fd(_) => "GuestStream(fd)",
            Sink::Writer(_) => "GuestStream(writer)",
        })
    }
}

impl GuestStream {
    /// The stream `output` stands for; [`Output::Inherit`] is kvmini's own
    /// `inherit` stream (stdout line-buffered, as the standard library's).
    pub fn new(output: Output, inherit: Stream) -> Self {
        match output {
            Output::Inherit => GuestStream {
                sink: Sink::Fd(inherit.fd()),
                buf: Vec::new(),
                line_buffered: matches!(inherit, Stream::Stdout),
            },
            Output::Null => Self::writer(Box::new(io::sink())),
            Output::Capture(capture) => Self::writer(capture.writer()),
            Output::Writer(writer) => Self::writer(writer),
        }
    }

    /// A stream into `writer`, unbuffered.
    pub fn writer(writer: Box<dyn Write + Send>) -> Self {
        GuestStream {
            sink: Sink::Writer(writer),
            buf: Vec::new(),
            line_buffered: false,
        }
    }

    /// Writes `data` (kept until a newline if line-buffered). A pending stop
    /// ends a write that waits; what was not written is dropped.
    pub fn write(&mut self, data: &[u8], stop: &StopHandle) -> Result<(), StreamError> {
        if !self.line_buffered {
            return self.send(data, stop);
        }
        if self.buf.len() + data.len() > LINE_BUFFER {
            self.flush(stop)?;
            return self.send(data, stop);
        }
        self.buf.extend_from_slice(data);
        if data.contains(&b'\n') {
            return self.flush(stop);
        }
        Ok(())
    }

    /// Writes what the line buffer holds, then flushes the writer.
    pub fn flush(&mut self, stop: &StopHandle) -> Result<(), StreamError> {
        self.drain(stop)?;
        match &mut self.sink {
            Sink::Writer(writer) => writer.flush().map_err(classify),
            Sink::Fd(_) => Ok(()),
        }
    }

    /// Writes what the line buffer holds (not flushing an embedding
    /// program's writer); on failure it is dropped.
    pub fn drain(&mut self, stop: &StopHandle) -> Result<(), StreamError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let result = self.send(&buf, stop);
        self.buf = buf;
        self.buf.clear();
        result
    }

    /// Writes all of `data` now.
    fn send(&mut self, mut data: &[u8], stop: &StopHandle) -> Result<(), StreamError> {
        while !data.is_empty() {
            let written = match &mut self.sink {
                Sink::Fd(fd) => write_fd(*fd, data),
                Sink::Writer(writer) => writer.write(data),
            };
            match written {
                Ok(0) => return Err(StreamError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => data = data.get(n..).unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if stop.pending().is_some() {
                        return Err(StreamError::Stopped);
                    }
                }
                Err(e) => return Err(classify(e)),
            }
        }
        Ok(())
    }
}

fn classify(e: io::Error) -> StreamError {
    match e.kind() {
        io::ErrorKind::BrokenPipe => StreamError::Closed,
        io::ErrorKind::StorageFull if e.get_ref().is_some_and(|e| e.is::<CaptureFull>()) => {
            StreamError::Full
        }
        io::ErrorKind::Interrupted => StreamError::Stopped,
        _ => StreamError::Io(e),
    }
}

/// One `write` to a descriptor of kvmini's, EINTR included.
pub(crate) fn write_fd(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads at most `data.len()` bytes from `data`; a
    // descriptor that is not open is EBADF, not undefined behaviour.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stop::StopReason;

    /// A writer that fails with `errors` in turn, then takes everything.
    struct Failing {
        errors: Vec<io::ErrorKind>,
        taken: Capture,
    }

    impl Write for Failing {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            match self.errors.pop() {
                Some(kind) => Err(kind.into()),
                None => self.taken.write(data),
            }
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn failing(errors: &[io::ErrorKind]) -> (GuestStream, Capture) {
        let taken = Capture::new();
        let writer = Failing {
            errors: errors.to_vec(),
            taken: taken.clone(),
        };
        (GuestStream::writer(Box::new(writer)), taken)
    }

    #[test]
    fn an_interrupted_write_is_retried_until_a_stop_is_pending() {
        let stop = StopHandle::new();
        let interrupted = io::ErrorKind::Interrupted;
        let (mut stream, taken) = failing(&[interrupted, interrupted]);
        stream.write(b"abc", &stop).unwrap();
        assert_eq!(taken.contents(), b"abc");

        let (mut stream, taken) = failing(&[interrupted]);
        stop.stop(StopReason::Timeout);
        assert!(matches!(
            stream.write(b"abc", &stop),
            Err(StreamError::Stopped)
        ));
        assert_eq!(taken.contents(), b"");
    }

    #[test]
    fn a_broken_pipe_is_closed_and_other_errors_are_io() {
        let stop = StopHandle::new();
        let (mut stream, _) = failing(&[io::ErrorKind::BrokenPipe]);
        assert!(matches!(
            stream.write(b"x", &stop),
            Err(StreamError::Closed)
        ));
        let (mut stream, _) = failing(&[io::ErrorKind::StorageFull]);
        assert!(matches!(
            stream.write(b"x", &stop),
            Err(StreamError::Io(e)) if e.kind() == io::ErrorKind::StorageFull
        ));
    }
}
