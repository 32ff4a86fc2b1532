//! The hypercalls: what kvmini does for each port a guest writes or reads.
//! Every handler works on values already copied out of `kvm_run` and on
//! guest memory through a [`GuestView`]; none allocates once warmed up.

use std::io::{self, Write};

use kvmini_abi::Port;

use std::mem::offset_of;

use kvmini_abi::host::{ArgvArgs, HostCallArgs};

use crate::fs::{BlockStatus, Filesystem, StdioSinks};
use crate::host::HostFunctions;
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
    /// The guest's stderr; `None` shares `warnings`.
    stderr: Option<Box<dyn Write + Send>>,
    warnings: Box<dyn Write + Send>,
    scratch: Vec<u8>,
    fs: Filesystem,
    host_functions: HostFunctions,
    /// The guest's arguments, each followed by its NUL.
    argv: Vec<u8>,
}

impl std::fmt::Debug for Hypercalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hypercalls").finish_non_exhaustive()
    }
}

impl Hypercalls {
    /// Handlers that print the guest's output to `stdout` and warnings
    /// about bad guest requests to `warnings`. Filesystem calls go to `fs`;
    /// the guest's stderr (descriptor 2) goes to `warnings` too unless
    /// [`Hypercalls::with_stderr`] says otherwise.
    pub fn new(
        stdout: Box<dyn Write + Send>,
        warnings: Box<dyn Write + Send>,
        fs: Filesystem,
    ) -> Self {
        Hypercalls {
            stdout,
            stderr: None,
            warnings,
            scratch: Vec::new(),
            fs,
            host_functions: HostFunctions::default(),
            argv: Vec::new(),
        }
    }

    /// Sends the guest's stderr to `stderr`.
    pub fn with_stderr(mut self, stderr: Box<dyn Write + Send>) -> Self {
        self.stderr = Some(stderr);
        self
    }

    /// Serves host function calls with `functions`.
    pub fn with_host_functions(mut self, functions: HostFunctions) -> Self {
        self.host_functions = functions;
        self
    }

    /// Gives the guest these arguments.
    pub fn with_argv<S: AsRef<[u8]>>(mut self, args: &[S]) -> Self {
        self.argv.clear();
        for arg in args {
            // An argument cannot hold a NUL: it would end early in the guest.
            self.argv
                .extend(arg.as_ref().iter().map(|&b| if b == 0 { b' ' } else { b }));
            self.argv.push(0);
        }
        self
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
                let stderr = match self.stderr.as_mut() {
                    Some(stderr) => &mut **stderr,
                    None => &mut *self.warnings,
                };
                let mut stdio = StdioSinks {
                    stdout: &mut *self.stdout,
                    stderr,
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
            Port::HostCall => return self.host_call(u64::from(value), view),
            Port::Argv => return self.argv(u64::from(value), view),
            // Served by the run loop, which has the registers.
            _ => {}
        }
        Ok(Action::Resume)
    }

    /// Calls a host function; its result goes back into the block.
    fn host_call(&mut self, block: u64, view: &GuestView<'_>) -> io::Result<Action> {
        let Ok(args) = view.read_obj::<HostCallArgs>(block) else {
            return self.bad_block(Port::HostCall, block);
        };
        let result = self.host_functions.call(&args, view);
        self.write_result(
            Port::HostCall,
            block + offset_of!(HostCallArgs, result) as u64,
            result,
            view,
        )
    }

    /// Copies the guest's arguments into its buffer if they fit; the result
    /// is the size they need.
    fn argv(&mut self, block: u64, view: &GuestView<'_>) -> io::Result<Action> {
        let Ok(args) = view.read_obj::<ArgvArgs>(block) else {
            return self.bad_block(Port::Argv, block);
        };
        let need = self.argv.len() as u64;
        let result = if args.len < need {
            i64::try_from(need).unwrap_or(i64::MAX)
        } else {
            match view.write_bytes(args.buf, &self.argv) {
                Ok(()) => i64::try_from(need).unwrap_or(i64::MAX),
                Err(_) => -i64::from(kvmini_abi::errno::EFAULT),
            }
        };
        self.write_result(
            Port::Argv,
            block + offset_of!(ArgvArgs, result) as u64,
            result,
            view,
        )
    }

    fn write_result(
        &mut self,
        port: Port,
        at: u64,
        result: i64,
        view: &GuestView<'_>,
    ) -> io::Result<Action> {
        match view.write_obj(at, result) {
            Ok(()) => Ok(Action::Resume),
            Err(_) => self.bad_block(port, at),
        }
    }

    /// An argument block the guest cannot read or write: a warning, and
    /// -EFAULT in RAX, the one place left to say so.
    fn bad_block(&mut self, port: Port, block: u64) -> io::Result<Action> {
        self.stdout.flush()?;
        writeln!(
            self.warnings,
            "kvmini: {}: argument block at {block:#x} is not writable guest memory; -EFAULT in RAX",
            port.name()
        )?;
        let efault = -i64::from(kvmini_abi::errno::EFAULT);
        Ok(Action::ResumeWithRax(u64::from_ne_bytes(
            efault.to_ne_bytes(),
        )))
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

    /// Forgets per-run state: the guest's descriptors.
    pub fn reset(&mut self) {
        self.fs.reset();
    }

    /// Flushes the guest's output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.stdout.flush()?;
        if let Some(stderr) = self.stderr.as_mut() {
            stderr.flush()?;
        }
        self.warnings.flush()
    }
}
