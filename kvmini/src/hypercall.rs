//! The hypercalls: what kvmini does for each port a guest writes or reads.
//! Every handler works on values already copied out of `kvm_run` and on
//! guest memory through a [`GuestView`]; none allocates once warmed up.

use std::io::{self, Write};

use kvmini_abi::Port;

use crate::fs::{BlockStatus, Filesystem, StdioSinks};
use crate::view::GuestView;

/// How much a `display` string may hold, and how much of the scratch buffer
/// kvmini keeps between calls.
const DISPLAY_KEEP: usize = 1 << 20;

/// What the run loop does after a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Resume the guest.
    Resume,
    /// End the run: the guest called `exit(code)`.
    Exit(u32),
    /// End the run with status 0: the guest called `halt`.
    Halt,
    /// Resume with RAX set: a filesystem call whose argument block was not
    /// usable gets -EFAULT there, as it cannot get it in the block.
    ResumeWithRax(u64),
}

/// The hypercall handlers and the state they keep for one guest.
pub struct Hypercalls {
    stdout: Box<dyn Write + Send>,
    warnings: Box<dyn Write + Send>,
    scratch: Vec<u8>,
    fs: Filesystem,
}

impl std::fmt::Debug for Hypercalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hypercalls").finish_non_exhaustive()
    }
}

impl Hypercalls {
    /// Handlers that print the guest's output to `stdout` and warnings
    /// about bad guest requests to `warnings`.
    /// Filesystem calls go to `fs`; the guest's stderr (descriptor 2) goes
    /// to `warnings` too.
    pub fn new(
        stdout: Box<dyn Write + Send>,
        warnings: Box<dyn Write + Send>,
        fs: Filesystem,
    ) -> Self {
        Hypercalls {
            stdout,
            warnings,
            scratch: Vec::new(),
            fs,
        }
    }

    /// The guest's filesystem.
    pub fn filesystem(&self) -> &Filesystem {
        &self.fs
    }

    /// Serves an `out` to `port` with `value`. Only called with a port and
    /// access size that match [`Port::access`].
    pub fn out(&mut self, port: Port, value: u32, view: &GuestView<'_>) -> io::Result<Action> {
        match port {
            Port::Console => {
                self.stdout.write_all(&[value.to_le_bytes()[0]])?;
            }
            Port::PrintVal => {
                writeln!(self.stdout, "{value}")?;
            }
            Port::Display => self.display(u64::from(value), view)?,
            Port::Exit => {
                self.stdout.flush()?;
                return Ok(Action::Exit(value));
            }
            Port::Halt => {
                self.stdout.flush()?;
                return Ok(Action::Halt);
            }
            fs_call if fs_call.is_fs() => {
                let mut stdio = StdioSinks {
                    stdout: &mut *self.stdout,
                    stderr: &mut *self.warnings,
                };
                let gva = u64::from(value);
                if self.fs.call(fs_call, gva, view, &mut stdio)? == BlockStatus::BadBlock {
                    self.stdout.flush()?;
                    writeln!(
                        self.warnings,
                        "kvmini: {}: argument block at {gva:#x} is not writable guest memory; -EFAULT in RAX",
                        fs_call.name()
                    )?;
                    let efault = -i64::from(kvmini_abi::errno::EFAULT);
                    return Ok(Action::ResumeWithRax(u64::from_ne_bytes(
                        efault.to_ne_bytes(),
                    )));
                }
            }
            // Served by the run loop, which has the registers.
            _ => {}
        }
        Ok(Action::Resume)
    }

    /// Prints the NUL-terminated string at guest virtual address `gva` in
    /// one piece; a bad pointer or a missing NUL is a warning, and the
    /// guest goes on.
    fn display(&mut self, gva: u64, view: &GuestView<'_>) -> io::Result<()> {
        self.scratch.clear();
        let result = view.read_c_string(gva, u64::MAX, &mut self.scratch);
        match result {
            Ok(()) => self.stdout.write_all(&self.scratch)?,
            Err(e) => {
                self.stdout.flush()?;
                writeln!(self.warnings, "kvmini: display({gva:#x}) ignored: {e}")?;
            }
        }
        if self.scratch.capacity() > DISPLAY_KEEP {
            self.scratch = Vec::new();
        }
        Ok(())
    }

    /// Flushes the guest's output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.stdout.flush()
    }
}
