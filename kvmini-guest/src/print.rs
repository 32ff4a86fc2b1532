//! `print!` support: formatted text is gathered in a stack buffer and sent
//! with `display`, one exit per 255 bytes.

use core::fmt::{self, Write};

use crate::hypercall;

const CAPACITY: usize = 256;

struct DisplayWriter {
    buf: [u8; CAPACITY],
    len: usize,
}

impl DisplayWriter {
    fn flush(&mut self) {
        if self.len > 0 {
            self.buf[self.len] = 0;
            hypercall::display_bytes(&self.buf[..=self.len]);
            self.len = 0;
        }
    }
}

impl Write for DisplayWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            // A NUL would end the string early on the host side.
            let byte = if byte == 0 { b' ' } else { byte };
            if self.len == CAPACITY - 1 {
                self.flush();
            }
            self.buf[self.len] = byte;
            self.len += 1;
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let mut writer = DisplayWriter {
        buf: [0; CAPACITY],
        len: 0,
    };
    // DisplayWriter never fails; a Display impl that does just stops early.
    let _ = writer.write_fmt(args);
    writer.flush();
}
