//! kvmini's own messages on its stdout and stderr: the command line's
//! reports, summaries and listings. Unlike the standard library's
//! `println!` and `eprintln!`, these never panic when the stream is closed,
//! full (`/dev/full`) or a pipe whose reader went away; the message is
//! dropped and kvmini's exit status stays what it would have been. A write
//! that waits (a pipe nobody reads, a paused terminal) gives up once SIGINT
//! or SIGTERM has arrived ([`crate::signals`]), so that a stop signal always
//! ends kvmini.
//!
//! The macros have the standard names so that a module opts in with one
//! `use` and its calls read as usual.

use std::fmt::{self, Write as _};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a run was stopped (timeout or signal): from then on a message
/// is written only as far as the stream takes it without waiting.
static NO_WAIT: AtomicBool = AtomicBool::new(false);

/// Largest piece written after a poll: a pipe that polls writable takes at
/// least this much without blocking.
const PIPE_BUF: usize = 4096;

/// From now on, kvmini's messages never wait for a reader: called once a
/// run was stopped, so that the report of a timeout cannot keep kvmini
/// from exiting on a stream nobody reads.
pub fn stop_waiting() {
    NO_WAIT.store(true, Ordering::SeqCst);
}

/// Prints a line on kvmini's stdout; a failure drops it.
macro_rules! println {
    () => {
        $crate::print::line(::libc::STDOUT_FILENO, ::std::format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::print::line(::libc::STDOUT_FILENO, ::std::format_args!($($arg)*))
    };
}

/// Prints a line on kvmini's stderr; a failure drops it.
macro_rules! eprintln {
    () => {
        $crate::print::line(::libc::STDERR_FILENO, ::std::format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::print::line(::libc::STDERR_FILENO, ::std::format_args!($($arg)*))
    };
}

pub(crate) use {eprintln, println};

/// Writes `args` and a newline to `fd` in as few `write` calls as it
/// takes, dropping the rest on any error.
pub fn line(fd: RawFd, args: fmt::Arguments<'_>) {
    let mut text = String::new();
    let _ = text.write_fmt(args);
    text.push('\n');
    write_all(fd, text.as_bytes());
}

/// Writes `data` to `fd` unless it cannot be: an error, a stop signal
/// while the write waits, or (after [`stop_waiting`]) a stream that is not
/// ready for it.
pub fn write_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        let stopping = NO_WAIT.load(Ordering::SeqCst) || crate::signals::received().is_some();
        if stopping && !writable_now(fd) {
            return;
        }
        let piece = if stopping {
            &data[..data.len().min(PIPE_BUF)]
        } else {
            data
        };
        match write_fd(fd, piece) {
            Ok(0) => return,
            Ok(n) => data = data.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                if crate::signals::received().is_some() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// One `write` to a descriptor of kvmini's, EINTR included: never the
/// standard library's streams, which retry after EINTR and take a lock.
fn write_fd(fd: RawFd, data: &[u8]) -> std::io::Result<usize> {
    // SAFETY: the kernel reads at most `data.len()` bytes from `data`; a
    // descriptor that is not open is EBADF, not undefined behaviour.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// Whether `fd` takes a write now.
fn writable_now(fd: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero timeout.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready == 1 && poll.revents & libc::POLLOUT != 0
}
