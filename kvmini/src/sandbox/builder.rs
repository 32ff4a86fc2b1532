//! The sandbox builder: the guest, its machine, its files, its input and
//! output, and the host functions it may call.

use std::io;
use std::time::Duration;

use super::config::Config;
use super::{Image, Sandbox, SandboxError, Stdio};
use crate::cpu::Ring;
use crate::grant::GrantSpec;
use crate::host::{HostCall, HostFunctions};
use crate::kvm::Kvm;
use crate::memory;
use crate::modes::CpuMode;
use crate::output::{Input, Output};
use crate::stop::StopHandle;

/// Where the builder gets the guest from.
#[derive(Debug)]
enum Source {
    Image(Image),
    ElfFile(std::path::PathBuf),
    FlatFile(std::path::PathBuf),
}

/// Builds a [`Sandbox`]. Every setting has a default except the guest.
///
/// ```
/// # use kvmini::sandbox::Sandbox;
/// # use kvmini::output::{Capture, Output};
/// # if !kvmini::kvm::available() && std::env::var_os("KVMINI_REQUIRE_KVM").is_none() {
/// #     return Ok(());
/// # }
/// let kvm = kvmini::kvm::Kvm::open()?;
/// let out = Capture::new();
/// let mut sandbox = Sandbox::builder()
///     .elf(kvmini::guests::HELLO.elf)
///     .memory(8 << 20)
///     .stdout(Output::Capture(out.clone()))
///     .build(&kvm)?;
/// sandbox.run()?;
/// assert_eq!(out.contents(), b"Hello, world!\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct SandboxBuilder {
    image: Option<Source>,
    mem_size: Option<u64>,
    ring: Option<Ring>,
    grants: Vec<GrantSpec>,
    timeout: Option<Duration>,
    max_fds: Option<u32>,
    args: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    cwd: Option<Vec<u8>>,
    stdin: Input,
    stdout: Output,
    stderr: Option<Output>,
    warnings: Output,
    host_functions: HostFunctions,
    trace: Option<Output>,
    trace_events: Option<super::run::TraceHandler>,
    timing: bool,
    mode: Option<CpuMode>,
    seccomp: Option<bool>,
    stop: Option<StopHandle>,
    backing: memory::Backing,
    host_stack_size: Option<usize>,
}

/// Errors of [`SandboxBuilder::build`] before any VM exists.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No guest was given.
    #[error("no guest image: call elf(), elf_file() or flat()")]
    NoImage,
    /// The guest file could not be read.
    #[error("cannot read guest {}", .path.display())]
    ReadImage {
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The guest file is not a regular file, or larger than guest memory.
    #[error(transparent)]
    ImageFile(crate::loader::ImageFileError),
    /// Building the sandbox failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

impl SandboxBuilder {
    /// The guest: a static x86_64 ELF.
    pub fn elf(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.image = Some(Source::Image(Image::Elf(bytes.into())));
        self
    }

    /// The guest: an image already in memory.
    pub fn image(mut self, image: Image) -> Self {
        self.image = Some(Source::Image(image));
        self
    }

    /// The guest: a static x86_64 ELF read from `path` at build time. It
    /// must be a regular file no larger than guest memory
    /// ([`crate::loader::read_image_file`]); nothing else is opened.
    pub fn elf_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.image = Some(Source::ElfFile(path.into()));
        self
    }

    /// The guest: a flat binary read from `path` at build time, as
    /// [`SandboxBuilder::elf_file`] reads an ELF.
    pub fn flat_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.image = Some(Source::FlatFile(path.into()));
        self
    }

    /// The guest: a flat binary loaded and entered at guest physical 0.
    pub fn flat(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.image = Some(Source::Image(Image::Flat(bytes.into())));
        self
    }

    /// Guest memory in bytes (a multiple of 2 MiB, 2 MiB to 4 GiB).
    pub fn memory(mut self, bytes: u64) -> Self {
        self.mem_size = Some(bytes);
        self
    }

    /// The CPU mode of a flat image (default: long mode; the others run at
    /// ring 0).
    pub fn mode(mut self, mode: CpuMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// The ring the guest runs at (ELF default: 3; flat default: 0).
    pub fn ring(mut self, ring: Ring) -> Self {
        self.ring = Some(ring);
        self
    }

    /// Grants host directory `host` to the guest at `guest_path` (`/` for
    /// its root), read-only or not. The guest path must be absolute and is
    /// normalized (`/d/`, `//d` and `/x/../d` are `/d`); [`Self::build`]
    /// refuses two grants at one path with
    /// [`GrantError::Duplicate`](crate::grant::GrantError::Duplicate).
    pub fn dir(
        mut self,
        host: impl Into<std::path::PathBuf>,
        guest_path: &str,
        read_only: bool,
    ) -> Self {
        self.grants.push(GrantSpec {
            host: host.into(),
            guest: guest_path.to_owned(),
            read_only,
        });
        self
    }

    /// Grants a host directory to the guest as `spec` says ([`Self::dir`]).
    pub fn grant(mut self, spec: GrantSpec) -> Self {
        self.grants.push(spec);
        self
    }

    /// The directories granted so far, in order.
    pub fn grants(&self) -> &[GrantSpec] {
        &self.grants
    }

    /// Stops the guest after `limit` (the run ends [`Ending::TimedOut`](crate::outcome::Ending::TimedOut)).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Most descriptors the guest may have open, 0..2 included.
    pub fn max_fds(mut self, max: u32) -> Self {
        self.max_fds = Some(max);
        self
    }

    /// The guest's arguments (read with the argv hypercall). A NUL inside
    /// an argument would end it early in the guest, so it becomes a space.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        self.args = args.into_iter().map(|a| a.as_ref().to_vec()).collect();
        self
    }

    /// Sets variable `name` to `value` in a Linux program's environment,
    /// which is otherwise empty (repeatable; a later value for one name
    /// replaces the earlier one).
    pub fn env(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        let name = name.as_ref();
        self.env
            .retain(|v| v.split(|&b| b == b'=').next() != Some(name));
        let mut var = name.to_vec();
        var.push(b'=');
        var.extend_from_slice(value.as_ref());
        self.env.push(var);
        self
    }

    /// A Linux program's working directory (default `/`): an absolute
    /// guest path that must be a directory under a grant, or `/`.
    pub fn cwd(mut self, path: impl AsRef<[u8]>) -> Self {
        self.cwd = Some(path.as_ref().to_vec());
        self
    }

    /// The guest's stdin (default: kvmini's).
    pub fn stdin(mut self, input: Input) -> Self {
        self.stdin = input;
        self
    }

    /// The guest's stdout: console, printVal, display, print! and
    /// descriptor 1 (default: kvmini's).
    pub fn stdout(mut self, output: Output) -> Self {
        self.stdout = output;
        self
    }

    /// The guest's stderr, descriptor 2 (default: kvmini's).
    pub fn stderr(mut self, output: Output) -> Self {
        self.stderr = Some(output);
        self
    }

    /// kvmini's warnings about the guest's bad requests (default: stderr).
    pub fn warnings(mut self, output: Output) -> Self {
        self.warnings = output;
        self
    }

    /// Registers a host function the guest calls with `host_call(id, ...)`.
    pub fn host_function<F>(mut self, id: u32, function: F) -> Self
    where
        F: FnMut(&HostCall<'_>) -> Result<u64, crate::host::Errno> + Send + 'static,
    {
        self.host_functions.insert(id, Box::new(function));
        self
    }

    /// The stack of the thread that runs the guest and its host functions,
    /// in bytes (default [`crate::vcpu_thread::DEFAULT_STACK_SIZE`], 8 MiB,
    /// as a main thread's): a host function that needs more stack than
    /// that asks for it here. The thread gets at least this much.
    pub fn host_stack_size(mut self, bytes: usize) -> Self {
        self.host_stack_size = Some(bytes);
        self
    }

    /// Hands each trace event, typed, to `handler` (default: none), before
    /// its line goes where [`SandboxBuilder::trace`] says. The handler runs
    /// on the vCPU thread while the guest waits, as an [`Output::Writer`]
    /// does (under the seccomp filter when it is on); whatever it does,
    /// the run is the same.
    pub fn trace_events(
        mut self,
        handler: impl FnMut(&crate::trace::TraceEvent) + Send + 'static,
    ) -> Self {
        self.trace_events = Some(super::run::TraceHandler(Box::new(handler)));
        self
    }

    /// Writes the trace to `to` (default: no trace), one line per system
    /// call or hypercall and one for the end of the run, as strace shows
    /// them ([`crate::trace`]): [`Output::Inherit`] is kvmini's stderr,
    /// [`Output::Writer`] the
    /// embedding program's writer (run on the vCPU thread, as the guest's
    /// own output is), [`Output::Null`] no trace. A trace line that cannot
    /// be written is dropped: it never ends or changes the run.
    pub fn trace(mut self, to: Output) -> Self {
        self.trace = match to {
            Output::Null => None,
            to => Some(to),
        };
        self
    }

    /// Measures time in the guest and in kvmini ([`Stats::guest_time`](crate::outcome::Stats::guest_time),
    /// [`Stats::vmm_time`](crate::outcome::Stats::vmm_time)); two clock reads per exit.
    pub fn timing(mut self, on: bool) -> Self {
        self.timing = on;
        self
    }

    /// Runs the guest under kvmini's seccomp filter (default: on).
    pub fn seccomp(mut self, on: bool) -> Self {
        self.seccomp = Some(on);
        self
    }

    /// Makes the sandbox reusable: [`Sandbox::reset`] brings it back to
    /// its state before the first run (memory is then backed by a memfd
    /// snapshot, copy-on-write).
    pub fn reusable(mut self, on: bool) -> Self {
        self.backing.snapshot = on;
        self
    }

    /// Backs guest memory with huge pages where the host has them, all
    /// taken before the run; otherwise, and for a [`reusable`] sandbox
    /// (whose snapshot huge pages cannot back), normal pages and a warning.
    ///
    /// [`reusable`]: SandboxBuilder::reusable
    pub fn hugepages(mut self, on: bool) -> Self {
        self.backing.hugepages = on;
        self
    }

    /// Touches all guest memory before the first run, so that the guest
    /// takes no page faults later.
    pub fn prefault(mut self, on: bool) -> Self {
        self.backing.prefault = on;
        self
    }

    /// Stops the guest through this handle (default: a handle of its own,
    /// see [`Sandbox::stop_handle`]). A handle given to several sandboxes
    /// stops the runs in progress of all of them; each timeout still stops
    /// its own sandbox only.
    pub fn stop_handle(mut self, handle: StopHandle) -> Self {
        self.stop = Some(handle);
        self
    }

    /// Checks what needs no KVM, in this order, and reads the guest file
    /// if one was given: the CPU mode against the ring and the kind of
    /// image ([`SandboxError::Mode`]), the memory size
    /// ([`SandboxError::Memory`]), the guest file ([`BuildError::ReadImage`],
    /// [`BuildError::ImageFile`]) and an ELF image's headers
    /// ([`SandboxError::Loader`]). A program calls it to report a bad
    /// setting or image before it opens `/dev/kvm`; [`Self::build`] makes
    /// the same checks, and whether the image fits in guest memory is
    /// known only when it is loaded there.
    pub fn check(mut self) -> Result<Self, BuildError> {
        let flat = matches!(
            self.image,
            Some(Source::Image(Image::Flat(_)) | Source::FlatFile(_))
        );
        crate::modes::check(self.mode.unwrap_or_default(), flat, self.ring)
            .map_err(SandboxError::from)?;
        memory::check_size(self.mem_size.unwrap_or(memory::MEM_DEFAULT))
            .map_err(SandboxError::from)?;
        let image = self.read_image()?;
        if let Image::Elf(bytes) = &image {
            crate::loader::parse_elf(bytes).map_err(SandboxError::from)?;
        }
        self.image = Some(Source::Image(image));
        Ok(self)
    }

    /// The guest image, read from its file if it was given as one.
    fn read_image(&mut self) -> Result<Image, BuildError> {
        let mem_size = self.mem_size.unwrap_or(memory::MEM_DEFAULT);
        let read = |path: &std::path::Path| {
            crate::loader::read_image_file(path, mem_size).map_err(|e| match e {
                crate::loader::ImageFileError::Read { path, source } => {
                    BuildError::ReadImage { path, source }
                }
                other => BuildError::ImageFile(other),
            })
        };
        Ok(match self.image.take().ok_or(BuildError::NoImage)? {
            Source::Image(image) => image,
            Source::ElfFile(path) => Image::Elf(read(&path)?),
            Source::FlatFile(path) => Image::Flat(read(&path)?),
        })
    }

    /// Creates the VM and loads the guest.
    pub fn build(mut self, kvm: &Kvm) -> Result<Sandbox, BuildError> {
        let image = self.read_image()?;
        let mut config = Config::new(image);
        if let Some(size) = self.mem_size {
            config.mem_size = size;
        }
        config.ring = self.ring.or(config.ring);
        config.grants.extend(self.grants);
        config.timeout = self.timeout.or(config.timeout);
        if let Some(max) = self.max_fds {
            config.max_fds = max;
        }
        config.args = self.args;
        config.env = self.env;
        config.cwd = self.cwd.unwrap_or_else(|| b"/".to_vec());
        config.trace |= self.trace.is_some() || self.trace_events.is_some();
        if let Some(mode) = self.mode {
            config.mode = mode;
        }
        config.timing |= self.timing;
        if let Some(on) = self.seccomp {
            config.seccomp = on;
        }
        if let Some(stop) = self.stop {
            config.stop = stop;
        }
        config.backing = self.backing;
        if let Some(bytes) = self.host_stack_size {
            config.host_stack_size = bytes;
        }
        let stdio = Stdio {
            stdin: self.stdin,
            stdout: self.stdout,
            stderr: self.stderr,
            warnings: self.warnings,
            trace: self.trace.unwrap_or(Output::Null),
            trace_events: self.trace_events,
        };
        Ok(Sandbox::from_parts(
            kvm,
            config,
            stdio,
            self.host_functions,
        )?)
    }
}
