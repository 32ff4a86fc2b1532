//! The hypercalls: what kvmini does for each port a guest writes or reads.
//! Every handler works on values already copied out of `kvm_run` and on
//! guest memory through a [`GuestView`]; none allocates once warmed up.

use std::io::Write;

use kvmini_abi::Port;

use std::mem::offset_of;

use kvmini_abi::batch::{BatchArgs, BatchEntry, BATCH_MAX, BATCH_STOP_ON_ERROR};
use kvmini_abi::host::{ArgvArgs, HostCallArgs};

use crate::addr::Gva;
use crate::block::{self, Unusable};
use crate::errno::Errno;
use crate::fs::{Filesystem, StdioSinks};
use crate::host::HostFunctions;
use crate::linux::{Effect, Io, Process, Syscall};
use crate::memory;
use crate::output::{GuestStream, StreamError};
use crate::stop::StopHandle;
use crate::view::GuestView;

/// How many pieces of a `display` string kvmini keeps room for between
/// calls (a string on kvmini's own identity map is one piece; more come
/// only from guest-made tables).
const DISPLAY_KEEP: usize = 4096;

/// What the run loop does after a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Resume the guest.
    Resume,
    /// End the run: the guest called `exit(code)`.
    Exit(u32),
    /// End the run with status 0: the guest called `halt`.
    Halt,
    /// End the run: the reader of the guest's stdout went away (console,
    /// `printVal` or `display` output to a closed pipe).
    OutputClosed,
    /// Resume with RAX set: a filesystem call whose argument block was not
    /// usable gets -EFAULT there, as it cannot get it in the block.
    ResumeWithRax(u64),
}

/// One hypercall, decoded once from its port and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// Print one byte.
    Console(u8),
    /// Print a number in decimal and a newline.
    PrintVal(u32),
    /// Print the NUL-terminated string at this guest-virtual address.
    Display(u64),
    /// End the run with this code.
    Exit(u32),
    /// End the run with status 0.
    Halt,
    /// Read the number of exits so far (the one `in` port).
    GetNumExits,
    /// kvmini's exception handler reporting a crash; the frame is on its
    /// stack.
    Exception,
    /// Run the calls listed in the batch block at this guest-virtual
    /// address.
    Batch(u64),
    /// A Linux program's system call; the call is in the registers.
    Syscall,
    /// A call whose arguments and result are in a block at a guest-virtual
    /// address: the filesystem calls, host calls and argv.
    Block {
        /// The call.
        port: Port,
        /// The block.
        address: u64,
    },
}

impl Hypercall {
    /// The hypercall `value` on `port` asks for (the access already checked
    /// against [`Port::access`]; an `in` carries no value).
    pub fn new(port: Port, value: u32) -> Self {
        match port {
            Port::Console => Hypercall::Console(value.to_le_bytes()[0]),
            Port::PrintVal => Hypercall::PrintVal(value),
            Port::Display => Hypercall::Display(u64::from(value)),
            Port::Exit => Hypercall::Exit(value),
            Port::Halt => Hypercall::Halt,
            Port::GetNumExits => Hypercall::GetNumExits,
            Port::Exception => Hypercall::Exception,
            Port::Batch => Hypercall::Batch(u64::from(value)),
            Port::Syscall => Hypercall::Syscall,
            port => Hypercall::Block {
                port,
                address: u64::from(value),
            },
        }
    }

    /// The port the hypercall came through.
    pub fn port(self) -> Port {
        match self {
            Hypercall::Console(_) => Port::Console,
            Hypercall::PrintVal(_) => Port::PrintVal,
            Hypercall::Display(_) => Port::Display,
            Hypercall::Exit(_) => Port::Exit,
            Hypercall::Halt => Port::Halt,
            Hypercall::GetNumExits => Port::GetNumExits,
            Hypercall::Exception => Port::Exception,
            Hypercall::Batch(_) => Port::Batch,
            Hypercall::Syscall => Port::Syscall,
            Hypercall::Block { port, .. } => port,
        }
    }
}

/// The hypercall handlers and the state they keep for one guest.
pub struct Hypercalls {
    stdout: GuestStream,
    /// The guest's stderr; `None` shares `warnings`.
    stderr: Option<GuestStream>,
    warnings: GuestStream,
    /// The text of a warning being written (kept to reuse its space).
    warning: Vec<u8>,
    /// The guest-physical pieces of the string being displayed.
    display_pieces: Vec<(u64, u64)>,
    fs: Filesystem,
    host_functions: HostFunctions,
    /// The guest's arguments, each followed by its NUL.
    argv: Vec<u8>,
    /// The checked entries of the batch being run (kept to reuse its space).
    batch_entries: Vec<(Port, u64)>,
    /// The sandbox's stop handle, checked between the calls of a batch.
    stop: StopHandle,
    /// A Linux program's state, and what it started as (for a reset);
    /// `None` for an SDK guest.
    linux: Option<(Box<Process>, Box<Process>)>,
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
        Self::from_streams(
            GuestStream::writer(stdout),
            GuestStream::writer(warnings),
            fs,
        )
    }

    /// As [`Hypercalls::new`], with streams (kvmini's own descriptors among
    /// them).
    pub fn from_streams(stdout: GuestStream, warnings: GuestStream, fs: Filesystem) -> Self {
        Hypercalls {
            stdout,
            stderr: None,
            warnings,
            warning: Vec::new(),
            display_pieces: Vec::new(),
            fs,
            host_functions: HostFunctions::default(),
            argv: Vec::new(),
            batch_entries: Vec::new(),
            stop: StopHandle::new(),
            linux: None,
        }
    }

    /// Sends the guest's stderr to `stderr`.
    pub fn with_stderr(self, stderr: Box<dyn Write + Send>) -> Self {
        self.with_stderr_stream(GuestStream::writer(stderr))
    }

    /// Sends the guest's stderr to `stderr`.
    pub fn with_stderr_stream(mut self, stderr: GuestStream) -> Self {
        self.stderr = Some(stderr);
        self
    }

    /// Ends batches early when `stop` is asked to stop the guest.
    pub fn with_stop_handle(mut self, stop: StopHandle) -> Self {
        self.stop = stop;
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

    /// Serves the system calls of a Linux program, which starts as
    /// `process`.
    pub fn with_linux(mut self, process: Process) -> Self {
        self.linux = Some((Box::new(process.clone()), Box::new(process)));
        self
    }

    /// The Linux program's state, if the guest is one.
    pub fn linux(&self) -> Option<&Process> {
        self.linux.as_ref().map(|(current, _)| &**current)
    }

    /// The Linux program's state, to change (memory calls, signal frames).
    pub fn linux_mut(&mut self) -> Option<&mut Process> {
        self.linux.as_mut().map(|(current, _)| &mut **current)
    }

    /// The Linux program's state now and as it started, if the guest is
    /// one.
    pub fn linux_states(&self) -> Option<(&Process, &Process)> {
        self.linux
            .as_ref()
            .map(|(current, start)| (&**current, &**start))
    }

    /// Serves a Linux program's system call `call` (with its FS base at
    /// the exit); `None` for an SDK guest, which has no system calls.
    pub fn serve_syscall(
        &mut self,
        call: &Syscall,
        view: &GuestView<'_>,
        fs_base: u64,
    ) -> Option<Effect> {
        let (process, _) = self.linux.as_mut()?;
        let stderr = match self.stderr.as_mut() {
            Some(stderr) => stderr,
            None => &mut self.warnings,
        };
        let mut stdio = StdioSinks {
            stdout: &mut self.stdout,
            stderr,
            stop: &self.stop,
        };
        let mut io = Io {
            fs: &mut self.fs,
            stdio: &mut stdio,
        };
        Some(process.serve(call, view, &mut io, fs_base))
    }

    /// The guest's filesystem.
    pub fn filesystem(&self) -> &Filesystem {
        &self.fs
    }

    /// Serves an `out` to `port` with `value`. Only called with a port and
    /// access size that match [`Port::access`].
    pub fn out(
        &mut self,
        port: Port,
        value: u32,
        view: &GuestView<'_>,
    ) -> Result<Action, StreamError> {
        self.serve(Hypercall::new(port, value), view)
    }

    /// Serves one decoded hypercall.
    ///
    /// Output that a stop interrupted is dropped and the guest resumes
    /// (the caller sees the stop pending); output to a closed pipe ends the
    /// run with [`Action::OutputClosed`]. [`Hypercall::GetNumExits`] and
    /// [`Hypercall::Exception`] need the run's counters and registers: the
    /// run loop serves them, and here they only resume.
    pub fn serve(&mut self, call: Hypercall, view: &GuestView<'_>) -> Result<Action, StreamError> {
        match call {
            Hypercall::Console(byte) => {
                let written = self.stdout.write(&[byte], &self.stop);
                guest_output(written, Action::Resume)
            }
            Hypercall::PrintVal(value) => {
                let mut line = [0u8; 11];
                let text = decimal_line(value, &mut line);
                let written = self.stdout.write(text, &self.stop);
                guest_output(written, Action::Resume)
            }
            Hypercall::Display(gva) => {
                let written = self.display(gva, view);
                guest_output(written, Action::Resume)
            }
            Hypercall::Exit(code) => {
                let flushed = self.stdout.flush(&self.stop);
                guest_output(flushed, Action::Exit(code))
            }
            Hypercall::Halt => {
                let flushed = self.stdout.flush(&self.stop);
                guest_output(flushed, Action::Halt)
            }
            Hypercall::Batch(address) => self.block_call(Port::Batch, address, view),
            Hypercall::Block { port, address } => self.block_call(port, address, view),
            Hypercall::GetNumExits | Hypercall::Exception | Hypercall::Syscall => {
                Ok(Action::Resume)
            }
        }
    }

    /// Runs one call whose argument block is at `block`: its result, or
    /// [`Unusable`] when the block is not readable and writable guest
    /// memory.
    fn call_block(
        &mut self,
        port: Port,
        block: u64,
        view: &GuestView<'_>,
    ) -> Result<i64, Unusable> {
        if port.is_fs() {
            let stderr = match self.stderr.as_mut() {
                Some(stderr) => stderr,
                None => &mut self.warnings,
            };
            let mut stdio = StdioSinks {
                stdout: &mut self.stdout,
                stderr,
                stop: &self.stop,
            };
            return self.fs.call(port, block, view, &mut stdio);
        }
        match port {
            Port::HostCall => block::serve(
                view,
                block,
                offset_of!(HostCallArgs, result),
                |args: &HostCallArgs| self.host_functions.call(args, view),
            ),
            Port::Argv => block::serve(
                view,
                block,
                offset_of!(ArgvArgs, result),
                |args: &ArgvArgs| {
                    // The arguments are copied only if all of them fit; the
                    // result is always the size they need.
                    let need = i64::try_from(self.argv.len()).unwrap_or(i64::MAX);
                    if args.len < self.argv.len() as u64 {
                        need
                    } else {
                        match view.write_bytes(Gva::new(args.buf), &self.argv) {
                            Ok(()) => need,
                            Err(_) => Errno::EFAULT.negated(),
                        }
                    }
                },
            ),
            Port::Batch => self.batch(block, view),
            _ => Ok(Errno::EINVAL.negated()),
        }
    }

    /// Runs a batch: every entry is checked first, then each call runs in
    /// order with its result in its own block; the batch's result is the
    /// number of calls run.
    fn batch(&mut self, block: u64, view: &GuestView<'_>) -> Result<i64, Unusable> {
        block::serve(
            view,
            block,
            offset_of!(BatchArgs, result),
            |args: &BatchArgs| match self.load_batch(args, view) {
                Err(errno) => errno.negated(),
                Ok(()) => {
                    let entries = std::mem::take(&mut self.batch_entries);
                    let mut ran = 0i64;
                    for &(port, call_block) in &entries {
                        // A stop (timeout, signal) ends a long batch between
                        // calls; the run loop then sees it on the next entry.
                        if self.stop.pending().is_some() {
                            break;
                        }
                        ran += 1;
                        // A call whose block is unusable failed with EFAULT.
                        let result = self
                            .call_block(port, call_block, view)
                            .unwrap_or(Errno::EFAULT.negated());
                        if result < 0 && args.flags & BATCH_STOP_ON_ERROR != 0 {
                            break;
                        }
                    }
                    self.batch_entries = entries;
                    ran
                }
            },
        )
    }

    /// Reads and checks a batch's entries into `batch_entries`.
    fn load_batch(&mut self, args: &BatchArgs, view: &GuestView<'_>) -> Result<(), Errno> {
        if args.count > BATCH_MAX || args.flags & !BATCH_STOP_ON_ERROR != 0 {
            return Err(Errno::EINVAL);
        }
        self.batch_entries.clear();
        let size = std::mem::size_of::<BatchEntry>() as u64;
        for i in 0..u64::from(args.count) {
            let at = args.entries.checked_add(i * size).ok_or(Errno::EFAULT)?;
            let entry = view
                .read_obj::<BatchEntry>(Gva::new(at))
                .map_err(|_| Errno::EFAULT)?;
            let port = Port::try_from(entry.port).map_err(|_| Errno::EINVAL)?;
            if !port.batchable() {
                return Err(Errno::EINVAL);
            }
            self.batch_entries.push((port, entry.block));
        }
        Ok(())
    }

    /// A call with an argument block, straight from its exit: resume, or
    /// -EFAULT in RAX when the block is unusable.
    fn block_call(
        &mut self,
        port: Port,
        address: u64,
        view: &GuestView<'_>,
    ) -> Result<Action, StreamError> {
        match self.call_block(port, address, view) {
            Ok(_) => Ok(Action::Resume),
            Err(Unusable) => self.bad_block(port, address),
        }
    }

    /// An argument block the guest cannot read or write: a warning, and
    /// -EFAULT in RAX, the one place left to say so.
    fn bad_block(&mut self, port: Port, block: u64) -> Result<Action, StreamError> {
        self.warn(format_args!(
            "kvmini: {}: argument block at {block:#x} is not writable guest memory; -EFAULT in RAX",
            port.name()
        ));
        let efault = Errno::EFAULT.negated();
        Ok(Action::ResumeWithRax(u64::from_ne_bytes(
            efault.to_ne_bytes(),
        )))
    }

    /// Prints the NUL-terminated string at guest virtual address `gva`
    /// straight from guest memory, once its NUL is found; a bad pointer or a
    /// missing NUL is a warning (and nothing printed), and the guest goes on.
    fn display(&mut self, gva: u64, view: &GuestView<'_>) -> Result<(), StreamError> {
        self.display_pieces.clear();
        let pieces = &mut self.display_pieces;
        // A string longer than guest memory exists only through aliased
        // page tables; stopping there bounds the work of one exit.
        let result = view.c_string_pieces(Gva::new(gva), view.memory_size(), |gpa, len| {
            pieces.push((gpa, len));
        });
        match result {
            Ok(_) => {
                for &(gpa, len) in &self.display_pieces {
                    let (stdout, stop) = (&mut self.stdout, &self.stop);
                    let written = memory::with_bytes(view.memory(), gpa, len, |bytes| {
                        stdout.write(bytes, stop)
                    })
                    .map_err(|e| StreamError::Io(std::io::Error::other(e)))
                    .and_then(|written| written);
                    if let Err(e) = written {
                        self.display_pieces.clear();
                        return Err(e);
                    }
                }
            }
            Err(e) => self.warn(format_args!("kvmini: display({gva:#x}) ignored: {e}")),
        }
        if self.display_pieces.capacity() > DISPLAY_KEEP {
            self.display_pieces = Vec::new();
        }
        Ok(())
    }

    /// One line of kvmini's warnings about the guest, after the guest's
    /// output so far. A warning that cannot be written is dropped: it must
    /// not change how the run ends.
    fn warn(&mut self, line: std::fmt::Arguments<'_>) {
        let _ = self.stdout.flush(&self.stop);
        self.warning.clear();
        let _ = writeln!(self.warning, "{line}");
        let _ = self.warnings.write(&self.warning, &self.stop);
    }

    /// Forgets per-run state: the guest's descriptors.
    pub fn reset(&mut self) {
        self.fs.reset();
        if let Some((current, start)) = self.linux.as_mut() {
            current.clone_from(start);
        }
    }

    /// Flushes the guest's output. Only the guest's stdout can fail it;
    /// its stderr and kvmini's warnings are written as they come.
    pub fn flush(&mut self) -> Result<(), StreamError> {
        let stdout = self.stdout.flush(&self.stop);
        if let Some(stderr) = self.stderr.as_mut() {
            let _ = stderr.flush(&self.stop);
        }
        let _ = self.warnings.flush(&self.stop);
        stdout
    }
}

/// What a hypercall's output becomes: `then` when written; a stop leaves
/// the guest to be stopped by the run loop; output a full capture refused
/// is dropped (the capture counts it); a closed pipe ends the run.
fn guest_output(written: Result<(), StreamError>, then: Action) -> Result<Action, StreamError> {
    match written {
        Ok(()) | Err(StreamError::Stopped | StreamError::Full) => Ok(then),
        Err(StreamError::Closed) => Ok(Action::OutputClosed),
        Err(e) => Err(e),
    }
}

/// `value` in decimal and a newline, in `buf`: `printVal`'s line, without
/// an allocation.
fn decimal_line(mut value: u32, buf: &mut [u8; 11]) -> &[u8] {
    let mut at = buf.len() - 1;
    buf[at] = b'\n';
    loop {
        at -= 1;
        buf[at] = b'0' + u8::try_from(value % 10).unwrap_or(0);
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress};
    use zerocopy::{FromZeros, IntoBytes};

    use super::*;
    use crate::arch::x86_64::page_tables;
    use crate::grant::Grants;
    use crate::layout::Layout;
    use crate::output::{Capture, Input};
    use crate::paging::{CpuPaging, Paging, PagingMode};

    #[test]
    fn display_prints_straight_from_guest_pages_or_only_warns() {
        let size = 4 << 20;
        let mem = crate::memory::allocate(size).unwrap();
        let layout = Layout::new(size);
        page_tables::build_identity_map(&mem, &layout, false).unwrap();
        // Virtual 0x400000 -> physical 0x203000 and 0x401000 -> 0x201000.
        let pml4 = crate::view::map_user_pages(&mem, [0x20_3000, 0x20_1000]);
        mem.write_slice(b"ab", GuestAddress(0x20_3FFE)).unwrap();
        mem.write_slice(b"cd\0", GuestAddress(0x20_1000)).unwrap();
        mem.write_slice(b"kvmini\0", GuestAddress(0x10_8000))
            .unwrap();
        mem.write_slice(&[b'y'; 16], GuestAddress(layout.system_base - 16))
            .unwrap();
        let stdout = Capture::new();
        let warnings = Capture::new();
        let fs = Filesystem::new(Grants::open(&[]).unwrap(), 4, Input::Null);
        let mut calls = Hypercalls::new(stdout.writer(), warnings.writer(), fs);
        let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
        let hand_made = GuestView::new(&mem, long, pml4, true);
        let own = GuestView::new(&mem, long, layout.pml4(), true)
            .with_identity(page_tables::user_identity_range(&layout, false));
        for (view, gva) in [
            (&hand_made, 0x40_0FFE),
            (&own, 0x10_8000),
            (&own, layout.system_base - 16),
            (&own, 0),
        ] {
            calls.display(gva, view).unwrap();
        }
        calls.flush().unwrap();
        assert_eq!(stdout.contents(), b"abcdkvmini");
        let top = layout.system_base;
        assert_eq!(
            String::from_utf8(warnings.contents()).unwrap(),
            format!(
                "kvmini: display({:#x}) ignored: address {top:#x} is not accessible from ring 3\n\
                 kvmini: display(0x0) ignored: address 0x0 is not mapped (level 1 entry not present)\n",
                top - 16
            )
        );
    }

    /// Argument blocks at the very top of the address space: the address
    /// of a field in them would wrap, which must be an -EFAULT for that
    /// call (never arithmetic that overflows), for every call a batch can
    /// hold.
    #[test]
    fn blocks_that_wrap_around_the_address_space_are_efault() {
        use kvmini_abi::batch::{BatchArgs, BatchEntry};
        let size = 4 << 20;
        let mem = crate::memory::allocate(size).unwrap();
        let layout = Layout::new(size);
        page_tables::build_identity_map(&mem, &layout, false).unwrap();
        let fs = Filesystem::new(Grants::open(&[]).unwrap(), 4, Input::Null);
        let (stdout, warnings) = (Capture::new(), Capture::new());
        let mut calls = Hypercalls::new(stdout.writer(), warnings.writer(), fs).with_argv(&["a"]);
        let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
        let view = GuestView::new(&mem, long, layout.pml4(), true)
            .with_identity(page_tables::user_identity_range(&layout, false));
        let tops = [0, 1, 7, 8, 23, 55, 56, 63, 64, 4095];
        let (args_at, entries_at) = (0x10_0000u64, 0x10_1000u64);
        for port in Port::ALL.into_iter().filter(|p| p.batchable()) {
            let entries: Vec<BatchEntry> = tops
                .iter()
                .map(|&k| BatchEntry {
                    port: port as u16,
                    reserved: [0; 3],
                    block: u64::MAX - k,
                })
                .collect();
            for (i, entry) in (0u64..).zip(&entries) {
                mem.write_slice(entry.as_bytes(), GuestAddress(entries_at + i * 16))
                    .unwrap();
            }
            let args = BatchArgs {
                entries: entries_at,
                count: u32::try_from(entries.len()).unwrap(),
                flags: 0,
                result: 0,
            };
            mem.write_slice(args.as_bytes(), GuestAddress(args_at))
                .unwrap();
            let action = calls.out(Port::Batch, 0x10_0000, &view).unwrap();
            assert!(matches!(action, Action::Resume), "{port:?}");
            let mut done = BatchArgs::new_zeroed();
            mem.read_slice(done.as_mut_bytes(), GuestAddress(args_at))
                .unwrap();
            // Every call ran, and each failed on its own block.
            assert_eq!(done.result, i64::try_from(tops.len()).unwrap(), "{port:?}");
        }
        assert_eq!(stdout.contents(), b"");
        assert_eq!(warnings.contents(), b"");
    }
    /// Guest memory with kvmini's identity map and a ring-3 view of it.
    fn guest() -> (crate::memory::GuestMemory, Layout) {
        let size = 4 << 20;
        let mem = crate::memory::allocate(size).unwrap();
        let layout = Layout::new(size);
        page_tables::build_identity_map(&mem, &layout, false).unwrap();
        (mem, layout)
    }

    fn ring3<'a>(mem: &'a crate::memory::GuestMemory, layout: &Layout) -> GuestView<'a> {
        let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
        GuestView::new(mem, long, layout.pml4(), true)
            .with_identity(page_tables::user_identity_range(layout, false))
    }

    /// Runs the batch `entries` (port, block) with `flags` and `count`
    /// through an `out` to the batch port: the batch's result, and each
    /// call's result read back from its block.
    fn run_batch(
        calls: &mut Hypercalls,
        mem: &crate::memory::GuestMemory,
        view: &GuestView<'_>,
        entries_at: u64,
        entries: &[(u16, u64)],
        count: u32,
        flags: u32,
    ) -> i64 {
        use kvmini_abi::batch::{BatchArgs, BatchEntry};
        let args_at = 0x10_0000u64;
        for (i, &(port, block)) in (0u64..).zip(entries) {
            let entry = BatchEntry {
                port,
                reserved: [0; 3],
                block,
            };
            mem.write_slice(entry.as_bytes(), GuestAddress(entries_at + i * 16))
                .unwrap();
        }
        let args = BatchArgs {
            entries: entries_at,
            count,
            flags,
            result: 0,
        };
        mem.write_slice(args.as_bytes(), GuestAddress(args_at))
            .unwrap();
        let action = calls.out(Port::Batch, 0x10_0000, view).unwrap();
        assert_eq!(action, Action::Resume);
        let mut done = BatchArgs::new_zeroed();
        mem.read_slice(done.as_mut_bytes(), GuestAddress(args_at))
            .unwrap();
        done.result
    }

    /// An argv block at `at` asking for `len` bytes at `buf`, its result
    /// cleared to `u64::MAX` so that a call that never ran shows.
    fn argv_block(mem: &crate::memory::GuestMemory, at: u64, buf: u64, len: u64) {
        let args = ArgvArgs {
            buf,
            len,
            result: -99,
        };
        mem.write_slice(args.as_bytes(), GuestAddress(at)).unwrap();
    }

    fn result_of(mem: &crate::memory::GuestMemory, at: u64) -> i64 {
        let mut done = ArgvArgs::new_zeroed();
        mem.read_slice(done.as_mut_bytes(), GuestAddress(at))
            .unwrap();
        done.result
    }

    /// A batch is checked whole before any call runs: too many entries,
    /// unknown flags, a port that is not batchable or not a port at all,
    /// and entries that are not guest memory refuse it (no call runs);
    /// then each call runs in order with its own result, the batch's
    /// result is the number run, and with `BATCH_STOP_ON_ERROR` the first
    /// failing call is the last.
    #[test]
    fn batches_are_checked_whole_then_run_in_order() {
        use kvmini_abi::batch::{BATCH_MAX, BATCH_STOP_ON_ERROR};
        use kvmini_abi::errno::{EFAULT, EINVAL, ENOSYS};
        let (mem, layout) = guest();
        let view = ring3(&mem, &layout);
        let fs = Filesystem::new(Grants::open(&[]).unwrap(), 4, Input::Null);
        let (stdout, warnings) = (Capture::new(), Capture::new());
        let mut calls = Hypercalls::new(stdout.writer(), warnings.writer(), fs).with_argv(&["ab"]);
        let (a1, a2, a3, host, buf) = (0x12_0000, 0x12_0100, 0x12_0200, 0x12_0300, 0x13_0000);
        let reset = |mem: &crate::memory::GuestMemory| {
            for at in [a1, a2, a3] {
                argv_block(mem, at, buf, 3);
            }
            let h = HostCallArgs {
                id: 7,
                reserved: 0,
                args: [0; kvmini_abi::host::HOST_CALL_ARGS],
                result: -99,
            };
            mem.write_slice(h.as_bytes(), GuestAddress(host)).unwrap();
        };
        let (argv, hostcall) = (Port::Argv as u16, Port::HostCall as u16);
        let results = |mem: &crate::memory::GuestMemory| {
            let mut h = HostCallArgs::new_zeroed();
            mem.read_slice(h.as_mut_bytes(), GuestAddress(host))
                .unwrap();
            [
                result_of(mem, a1),
                h.result,
                result_of(mem, a2),
                result_of(mem, a3),
            ]
        };
        let entries = [(argv, a1), (hostcall, host), (argv, a2), (argv, a3)];
        let enosys = -i64::from(ENOSYS);
        const E: u64 = 0x11_0000;

        // Refused whole: no call runs.
        let refused = [
            (vec![(argv, a1), (Port::Batch as u16, a2)], 2, 0, EINVAL),
            (vec![(argv, a1), (Port::Exit as u16, a2)], 2, 0, EINVAL),
            (vec![(argv, a1), (0x0FFF, a2)], 2, 0, EINVAL),
            (vec![(argv, a1)], 1, 2, EINVAL),
            (vec![(argv, a1)], 1, BATCH_STOP_ON_ERROR | 4, EINVAL),
            (vec![(argv, a1)], BATCH_MAX + 1, 0, EINVAL),
            (vec![(argv, a1)], u32::MAX, 0, EINVAL),
        ];
        for (entries, count, flags, errno) in refused {
            reset(&mem);
            let ran = run_batch(&mut calls, &mem, &view, E, &entries, count, flags);
            assert_eq!(ran, -i64::from(errno), "{entries:?} {count} {flags:#x}");
            assert_eq!(results(&mem), [-99; 4], "{entries:?} {count} {flags:#x}");
        }
        // Entries past the end of guest memory: EFAULT, nothing run.
        reset(&mem);
        let past = layout.system_base - 32;
        assert_eq!(
            run_batch(&mut calls, &mem, &view, past, &entries, 3, 0),
            -i64::from(EFAULT)
        );
        assert_eq!(results(&mem), [-99; 4]);

        // Every call runs, the failing host call included.
        reset(&mem);
        assert_eq!(run_batch(&mut calls, &mem, &view, E, &entries, 4, 0), 4);
        assert_eq!(results(&mem), [3, enosys, 3, 3]);
        // Only the first `count` entries.
        reset(&mem);
        assert_eq!(run_batch(&mut calls, &mem, &view, E, &entries, 1, 0), 1);
        assert_eq!(results(&mem), [3, -99, -99, -99]);
        reset(&mem);
        assert_eq!(run_batch(&mut calls, &mem, &view, E, &entries, 0, 0), 0);
        assert_eq!(results(&mem), [-99; 4]);
        // Stop on error: the failing call is the last one run.
        reset(&mem);
        let ran = run_batch(&mut calls, &mem, &view, E, &entries, 4, BATCH_STOP_ON_ERROR);
        assert_eq!(ran, 2);
        assert_eq!(results(&mem), [3, enosys, -99, -99]);
        // ... and with no failure, all run.
        reset(&mem);
        let ok = [(argv, a1), (argv, a2), (argv, a3)];
        assert_eq!(
            run_batch(&mut calls, &mem, &view, E, &ok, 3, BATCH_STOP_ON_ERROR),
            3
        );
        // A call whose own block is unusable fails with EFAULT, and the
        // batch goes on (or stops, if asked to).
        reset(&mem);
        let bad = [(argv, a1), (argv, u64::MAX - 3), (argv, a2)];
        assert_eq!(run_batch(&mut calls, &mem, &view, E, &bad, 3, 0), 3);
        assert_eq!(results(&mem), [3, -99, 3, -99]);
        reset(&mem);
        assert_eq!(
            run_batch(&mut calls, &mem, &view, E, &bad, 3, BATCH_STOP_ON_ERROR),
            2
        );
        assert_eq!(results(&mem), [3, -99, -99, -99]);
        // The largest batch is accepted.
        reset(&mem);
        let full = vec![(argv, a1); BATCH_MAX as usize];
        assert_eq!(
            run_batch(&mut calls, &mem, &view, E, &full, BATCH_MAX, 0),
            i64::from(BATCH_MAX)
        );
        // A stop pending: no call runs.
        let stop = StopHandle::new();
        let mut calls = calls.with_stop_handle(stop.clone());
        stop.stop(crate::stop::StopReason::Timeout);
        reset(&mem);
        assert_eq!(run_batch(&mut calls, &mem, &view, E, &entries, 4, 0), 0);
        assert_eq!(results(&mem), [-99; 4]);
        assert_eq!(stdout.contents(), b"");
        assert_eq!(warnings.contents(), b"");
    }

    /// argv is copied only when all of it fits (each argument with its
    /// NUL, a NUL inside an argument a space); the result is always the
    /// size needed, and a buffer that is not writable is EFAULT.
    #[test]
    fn argv_is_copied_only_whole() {
        use kvmini_abi::errno::EFAULT;
        let (mem, layout) = guest();
        let view = ring3(&mem, &layout);
        let fs = Filesystem::new(Grants::open(&[]).unwrap(), 4, Input::Null);
        let mut calls = Hypercalls::new(Capture::new().writer(), Capture::new().writer(), fs)
            .with_argv(&[&b"prog"[..], b"a\0b", b""]);
        let (block, buf) = (0x12_0000u64, 0x13_0000u64);
        let want = b"prog\0a b\0\0";
        for (len, result, copied) in [
            (0, 10, false),
            (9, 10, false),
            (10, 10, true),
            (11, 10, true),
            (u64::MAX, 10, true),
        ] {
            mem.write_slice(&[0xEE; 16], GuestAddress(buf)).unwrap();
            argv_block(&mem, block, buf, len);
            assert_eq!(
                calls.out(Port::Argv, 0x12_0000, &view).unwrap(),
                Action::Resume
            );
            assert_eq!(result_of(&mem, block), result, "{len}");
            let mut got = [0u8; 16];
            mem.read_slice(&mut got, GuestAddress(buf)).unwrap();
            let mut expected = [0xEE; 16];
            if copied {
                expected[..10].copy_from_slice(want);
            }
            assert_eq!(got, expected, "{len}");
        }
        argv_block(&mem, block, layout.system_base, 64);
        assert_eq!(
            calls.out(Port::Argv, 0x12_0000, &view).unwrap(),
            Action::Resume
        );
        assert_eq!(result_of(&mem, block), -i64::from(EFAULT));
    }
    /// A call whose result cannot be written back does not run: an argv
    /// block on a read-only page gets -EFAULT in RAX and a warning, and
    /// the arguments are not copied.
    #[test]
    fn a_call_whose_result_is_read_only_does_not_run() {
        use crate::arch::x86_64::bits::{PTE_P, PTE_US};
        let mem = crate::memory::allocate(4 << 20).unwrap();
        // 0x400000 -> 0x200000 read-only (the block), 0x401000 -> 0x201000
        // writable (the buffer).
        let cr3 = crate::view::map_user_pages(&mem, [0x20_0000, 0x20_1000]);
        mem.write_obj(0x20_0000u64 | PTE_P | PTE_US, GuestAddress(0x10_3000))
            .unwrap();
        let args = ArgvArgs {
            buf: 0x40_1000,
            len: 64,
            result: -99,
        };
        mem.write_slice(args.as_bytes(), GuestAddress(0x20_0000))
            .unwrap();
        let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
        let view = GuestView::new(&mem, long, cr3, true);
        let fs = Filesystem::new(Grants::open(&[]).unwrap(), 4, Input::Null);
        let (stdout, warnings) = (Capture::new(), Capture::new());
        let mut calls = Hypercalls::new(stdout.writer(), warnings.writer(), fs).with_argv(&["a"]);
        let action = calls.out(Port::Argv, 0x40_0000, &view).unwrap();
        let efault = -i64::from(kvmini_abi::errno::EFAULT);
        assert_eq!(
            action,
            Action::ResumeWithRax(u64::from_ne_bytes(efault.to_ne_bytes()))
        );
        let mut buf = [0xEEu8; 2];
        mem.read_slice(&mut buf, GuestAddress(0x20_1000)).unwrap();
        assert_eq!(buf, [0, 0]);
        assert_eq!(result_of(&mem, 0x20_0000), -99);
        assert_eq!(
            String::from_utf8(warnings.contents()).unwrap(),
            "kvmini: argv: argument block at 0x400000 is not writable guest memory; -EFAULT in RAX\n"
        );
    }
    /// The handlers' Debug form names the type and shows none of the
    /// guest's state (its arguments, its files).
    #[test]
    fn debug_shows_no_guest_state() {
        let fs = Filesystem::new(Grants::open(&[]).unwrap(), 4, Input::Null);
        let calls = Hypercalls::new(Capture::new().writer(), Capture::new().writer(), fs)
            .with_argv(&["secret"]);
        assert_eq!(format!("{calls:?}"), "Hypercalls { .. }");
    }

    /// A call that succeeds with 0 is not an error: a batch that stops on
    /// error goes on past it. (An empty argv needs 0 bytes.)
    #[test]
    fn a_call_that_returns_0_does_not_stop_a_batch() {
        use kvmini_abi::batch::BATCH_STOP_ON_ERROR;
        let (mem, layout) = guest();
        let view = ring3(&mem, &layout);
        let fs = Filesystem::new(Grants::open(&[]).unwrap(), 4, Input::Null);
        let mut calls = Hypercalls::new(Capture::new().writer(), Capture::new().writer(), fs);
        let (a1, a2, a3, buf) = (0x12_0000, 0x12_0100, 0x12_0200, 0x13_0000);
        for at in [a1, a2, a3] {
            argv_block(&mem, at, buf, 8);
        }
        let argv = Port::Argv as u16;
        let entries = [(argv, a1), (argv, a2), (argv, a3)];
        let ran = run_batch(
            &mut calls,
            &mem,
            &view,
            0x11_0000,
            &entries,
            3,
            BATCH_STOP_ON_ERROR,
        );
        assert_eq!(ran, 3);
        assert_eq!([a1, a2, a3].map(|at| result_of(&mem, at)), [0, 0, 0]);
    }

    /// A Linux program's system calls are served by its process, its
    /// stderr going to the warnings stream unless it has its own; an SDK
    /// guest has no process and no system calls.
    #[test]
    fn system_calls_are_served_only_for_a_linux_program() {
        use crate::linux::{Effect, Process, ProcessLayout, Syscall};
        let (mem, layout) = guest();
        let view = ring3(&mem, &layout);
        mem.write_slice(b"oops\n", GuestAddress(0x13_0000)).unwrap();
        let write_2 = Syscall {
            nr: 1,
            args: [2, 0x13_0000, 5, 0, 0, 0],
        };
        let exit_group = Syscall {
            nr: 231,
            args: [7, 0, 0, 0, 0, 0],
        };
        let sdk = |stdout: &Capture, warnings: &Capture| {
            let fs = Filesystem::new(Grants::open(&[]).unwrap(), 8, Input::Null);
            Hypercalls::new(stdout.writer(), warnings.writer(), fs)
        };
        let (stdout, warnings) = (Capture::new(), Capture::new());
        let mut calls = sdk(&stdout, &warnings);
        assert!(calls.linux().is_none());
        assert_eq!(calls.serve_syscall(&write_2, &view, 0), None);
        assert_eq!(calls.serve_syscall(&exit_group, &view, 0), None);
        assert_eq!((stdout.contents(), warnings.contents()), (vec![], vec![]));

        let process_layout = ProcessLayout::new(&layout, 0x20_0000).unwrap();
        let process = Process::new(process_layout, 1000, 1000, 8);
        let mut calls = sdk(&stdout, &warnings).with_linux(process);
        assert_eq!(calls.linux().map(Process::layout), Some(&process_layout));
        assert_eq!(
            calls.serve_syscall(&write_2, &view, 0),
            Some(Effect::Return(5))
        );
        calls.flush().unwrap();
        assert_eq!(
            (stdout.contents(), warnings.contents()),
            (vec![], b"oops\n".to_vec())
        );
        assert_eq!(
            calls.serve_syscall(&exit_group, &view, 0),
            Some(Effect::Exit(7))
        );

        let stderr = Capture::new();
        let mut calls = sdk(&stdout, &warnings)
            .with_stderr(stderr.writer())
            .with_linux(Process::new(process_layout, 1000, 1000, 8));
        assert_eq!(
            calls.serve_syscall(&write_2, &view, 0),
            Some(Effect::Return(5))
        );
        calls.flush().unwrap();
        assert_eq!(stderr.contents(), b"oops\n");
        assert_eq!(warnings.contents(), b"oops\n");
    }

    /// A string in more pieces than kvmini keeps room for is printed
    /// whole, and the room it took is given back after it.
    #[test]
    fn display_gives_back_the_room_of_a_string_in_many_pieces() {
        use crate::arch::x86_64::bits::{PTE_P, PTE_RW, PTE_US};
        let mem = crate::memory::allocate(32 << 20).unwrap();
        let user = PTE_P | PTE_RW | PTE_US;
        let (pml4, pdpt, pd, pt, last_pt) = (0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000, 0x10_4000);
        // Physical pages of 'a' and 'b', never adjacent, and one that
        // starts with the NUL.
        let (a, b, nul) = (0x20_0000u64, 0x20_2000u64, 0x20_4000u64);
        mem.write_slice(&[b'a'; 4096], GuestAddress(a)).unwrap();
        mem.write_slice(&[b'b'; 4096], GuestAddress(b)).unwrap();
        mem.write_obj(pdpt | user, GuestAddress(pml4)).unwrap();
        mem.write_obj(pd | user, GuestAddress(pdpt)).unwrap();
        // Virtual 0x400000 on: nine page tables' worth of pages, 'a' and
        // 'b' in turn (every page its own piece), then the NUL page.
        for i in 0..512u64 {
            let page = if i % 2 == 0 { a } else { b };
            mem.write_obj(page | user, GuestAddress(pt + i * 8))
                .unwrap();
        }
        for entry in 2..11u64 {
            mem.write_obj(pt | user, GuestAddress(pd + entry * 8))
                .unwrap();
        }
        mem.write_obj(last_pt | user, GuestAddress(pd + 11 * 8))
            .unwrap();
        mem.write_obj(nul | user, GuestAddress(last_pt)).unwrap();
        let pieces = 9 * 512;
        assert!(pieces > DISPLAY_KEEP);

        let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
        let view = GuestView::new(&mem, long, pml4, true);
        let fs = Filesystem::new(Grants::open(&[]).unwrap(), 4, Input::Null);
        let (stdout, warnings) = (Capture::new(), Capture::new());
        let mut calls = Hypercalls::new(stdout.writer(), warnings.writer(), fs);
        calls.display(0x40_0000, &view).unwrap();
        calls.flush().unwrap();
        let printed = stdout.contents();
        assert_eq!(printed.len(), pieces * 4096);
        assert!(printed
            .chunks(4096)
            .zip([b'a', b'b'].into_iter().cycle())
            .all(|(page, byte)| page.iter().all(|&c| c == byte)));
        assert_eq!(warnings.contents(), b"");
        assert_eq!(calls.display_pieces.capacity(), 0);
        // Room for as many pieces as it keeps is kept.
        calls.display_pieces = Vec::with_capacity(DISPLAY_KEEP);
        calls.display(0x40_0000 + 9 * (2 << 20), &view).unwrap();
        assert!(calls.display_pieces.capacity() >= DISPLAY_KEEP);
        assert_eq!(
            (stdout.contents().len(), warnings.contents()),
            (printed.len(), vec![])
        );
    }

    /// A reset gives the next run what the first started with: the
    /// descriptors 0, 1 and 2, and the Linux program's own state (here its
    /// umask).
    #[test]
    fn a_reset_restores_the_descriptors_and_the_programs_state() {
        use crate::linux::{Effect, Process, ProcessLayout, Syscall};
        let call = |nr, a0, a1, a2| Syscall {
            nr,
            args: [a0, a1, a2, 0, 0, 0],
        };
        let (umask, close, write) = (95, 3, 1);
        let (mem, layout) = guest();
        let view = ring3(&mem, &layout);
        mem.write_slice(b"ok", GuestAddress(0x13_0000)).unwrap();
        let fs = Filesystem::new(Grants::open(&[]).unwrap(), 8, Input::Null);
        let stdout = Capture::new();
        let process = Process::new(ProcessLayout::new(&layout, 0x20_0000).unwrap(), 0, 0, 8);
        let mut calls =
            Hypercalls::new(stdout.writer(), Capture::new().writer(), fs).with_linux(process);
        let serve = |calls: &mut Hypercalls, c: Syscall| calls.serve_syscall(&c, &view, 0);
        let ebadf = -i64::from(kvmini_abi::errno::EBADF);
        for (c, effect) in [
            (call(umask, 0o077, 0, 0), 0o022),
            (call(umask, 0o007, 0, 0), 0o077),
            (call(close, 1, 0, 0), 0),
            (call(write, 1, 0x13_0000, 2), ebadf),
        ] {
            assert_eq!(serve(&mut calls, c), Some(Effect::Return(effect)), "{c:?}");
        }
        calls.reset();
        for (c, effect) in [
            (call(write, 1, 0x13_0000, 2), 2),
            (call(umask, 0, 0, 0), 0o022),
        ] {
            assert_eq!(serve(&mut calls, c), Some(Effect::Return(effect)), "{c:?}");
        }
        calls.flush().unwrap();
        assert_eq!(stdout.contents(), b"ok");
    }

    /// A flush reaches every stream, and only the guest's stdout can fail
    /// it: a closed stdout is `Closed`; a failing stderr or warnings
    /// stream changes nothing.
    #[test]
    fn a_flush_flushes_every_stream_and_fails_only_for_stdout() {
        use std::sync::{Arc, Mutex};
        /// A writer whose flush counts and fails with `fails`, if any.
        struct Flushing(Arc<Mutex<u32>>, Option<std::io::ErrorKind>);
        impl Write for Flushing {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                *self.0.lock().unwrap() += 1;
                self.1.map_or(Ok(()), |kind| Err(kind.into()))
            }
        }
        let pipe = Some(std::io::ErrorKind::BrokenPipe);
        for (fails, closed) in [
            ([None, None, None], false),
            ([pipe, None, None], true),
            ([None, pipe, pipe], false),
        ] {
            let counts = [0, 1, 2].map(|_| Arc::new(Mutex::new(0)));
            let [stdout, stderr, warnings] =
                [0, 1, 2].map(|i| Box::new(Flushing(counts[i].clone(), fails[i])));
            let fs = Filesystem::new(Grants::open(&[]).unwrap(), 4, Input::Null);
            let mut calls = Hypercalls::new(stdout, warnings, fs).with_stderr(stderr);
            let result = calls.flush();
            assert_eq!(
                matches!(result, Err(StreamError::Closed)),
                closed,
                "{fails:?}: {result:?}"
            );
            assert_eq!(result.is_ok(), !closed, "{fails:?}");
            assert_eq!(counts.map(|c| *c.lock().unwrap()), [1, 1, 1], "{fails:?}");
        }
    }
}
