//! `print!` support: formatted text is gathered in a stack buffer and sent
//! with `display`, one exit per 255 bytes. The panic handler's message
//! goes the same way to descriptor 2, kvmini's stderr, with `write`.

use core::fmt::{self, Write};

use crate::hypercall;

const CAPACITY: usize = 256;

/// Where gathered text goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sink {
    /// The console, with `display` (a NUL-terminated string).
    Display,
    /// Descriptor 2, with the `write` filesystem call.
    Stderr,
}

struct BufWriter {
    buf: [u8; CAPACITY],
    len: usize,
    sink: Sink,
}

impl BufWriter {
    fn new(sink: Sink) -> Self {
        BufWriter {
            buf: [0; CAPACITY],
            len: 0,
            sink,
        }
    }

    fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        match self.sink {
            Sink::Display => {
                self.buf[self.len] = 0;
                hypercall::display_bytes(&self.buf[..=self.len]);
            }
            Sink::Stderr => {
                let mut done = 0;
                while done < self.len {
                    let rest = &self.buf[done..self.len];
                    let n = crate::fs::sys::write(2, rest.as_ptr(), rest.len());
                    match usize::try_from(n) {
                        Ok(n) if n > 0 => done += n,
                        // Descriptor 2 is gone: the message must not be lost.
                        _ => {
                            self.buf[self.len] = 0;
                            hypercall::display_bytes(&self.buf[done..=self.len]);
                            break;
                        }
                    }
                }
            }
        }
        self.len = 0;
    }
}

impl Write for BufWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            // A NUL would end the string early on the host side.
            let byte = if byte == 0 && self.sink == Sink::Display {
                b' '
            } else {
                byte
            };
            if self.len == CAPACITY - 1 {
                self.flush();
            }
            self.buf[self.len] = byte;
            self.len += 1;
        }
        Ok(())
    }
}

fn print_to(sink: Sink, args: fmt::Arguments<'_>) {
    let mut writer = BufWriter::new(sink);
    // BufWriter never fails; a Display impl that does just stops early.
    let _ = writer.write_fmt(args);
    writer.flush();
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    print_to(Sink::Display, args);
}

/// Writes `args` to descriptor 2 (kvmini's stderr), or to the console if
/// that fails.
pub(crate) fn print_stderr(args: fmt::Arguments<'_>) {
    print_to(Sink::Stderr, args);
}
