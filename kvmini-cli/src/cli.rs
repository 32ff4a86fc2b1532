//! The command line: `kvmini run`, `kvmini demo`, and the demo tour when no
//! command is given. Parsing is clap's; the command line builds each
//! sandbox with the library's builder, and turns the library's errors,
//! which carry data, into advice that names the options to change.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use kvmini::cpu::Ring;
use kvmini::grant::{GrantError, GrantSpec};
use kvmini::guests::{self, BuiltinGuest};
use kvmini::kvm::{Kvm, KvmError};
use kvmini::loader::LoaderError;
use kvmini::memory::{self, ByteSize};
use kvmini::modes::{CpuMode, ModeError};
use kvmini::output::Output;
use kvmini::sandbox::{
    format_regs, BuildError, Ending, Image, Outcome, Sandbox, SandboxBuilder, SandboxError,
    Unserved, STATUS_KVMINI_ERROR,
};
use kvmini::seccomp::SeccompError;
use kvmini::stop::StopHandle;
use kvmini_abi::Port;

// kvmini's own messages: never a panic, never a wait a stop signal cannot end.
use crate::print::{eprintln, println};

/// Environment variable naming the KVM device to open instead of
/// `/dev/kvm` (the tests use it to simulate a missing or forbidden device).
pub const DEVICE_ENV: &str = "KVMINI_KVM_DEVICE";

/// Opens the KVM device: the one [`DEVICE_ENV`] names, else `/dev/kvm`.
fn open_kvm() -> Result<Kvm, KvmError> {
    match std::env::var_os(DEVICE_ENV) {
        Some(path) => Kvm::open_path(Path::new(&path)),
        None => Kvm::open(),
    }
}

/// The CPU modes as `--mode` takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// 16-bit real mode.
    Real,
    /// 32-bit protected mode without paging.
    Protected,
    /// 32-bit protected mode with 4 MiB pages.
    Paged32,
    /// 32-bit protected mode with PAE paging.
    Pae32,
    /// 64-bit long mode.
    Long,
}

impl From<ModeArg> for CpuMode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Real => CpuMode::Real,
            ModeArg::Protected => CpuMode::Protected,
            ModeArg::Paged32 => CpuMode::Paged32,
            ModeArg::Pae32 => CpuMode::Pae32,
            ModeArg::Long => CpuMode::Long,
        }
    }
}

/// kvmini: a small, fast and secure hypervisor on the Linux KVM API.
///
/// With no command, runs the demo tour of the built-in guests.
#[derive(Debug, Parser)]
#[command(name = "kvmini", version, about, long_about = None)]
pub struct Cli {
    /// What to do; the demo tour when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a guest: a static x86_64 ELF, or a flat binary with --flat.
    Run(RunArgs),
    /// Run a built-in guest, or all of them in turn.
    Demo(DemoArgs),
}

/// Options shared by `run` and `demo`.
#[derive(Debug, Args, Clone)]
pub struct MachineArgs {
    /// Privilege level of the guest: 3 (ELF default: native speed, kvmini's
    /// structures out of reach) or 0 (flat default: the guest is its own
    /// kernel; emulated on nested KVM)
    #[arg(long, value_parser = ["0", "3"])]
    pub ring: Option<String>,
    /// CPU mode the guest starts in: long (64-bit, the default) or, for
    /// flat images at ring 0, real, protected (32-bit, no paging), paged32
    /// (32-bit, 4 MiB pages) or pae32 (32-bit, PAE paging)
    #[arg(long, value_enum, default_value = "long")]
    pub mode: ModeArg,
    /// Guest memory, a multiple of 2 MiB from 2M to 4G (K, M, G suffixes)
    #[arg(long, value_name = "SIZE", default_value = "64M")]
    pub mem: String,
    /// Print each system call (or hypercall) on stderr as strace does,
    /// with its arguments and result, and how the run ended
    #[arg(long)]
    pub trace: bool,
    /// Print exit counts by reason and hypercall, system calls by name
    /// with their errors, time in guest and in kvmini, and the final RIP
    /// and RAX on stderr at the end
    #[arg(long)]
    pub stats: bool,
    /// Print the memory map (guest physical and host virtual addresses) and
    /// the vCPU setup on stderr before running
    #[arg(long)]
    pub verbose: bool,
    /// Grant a host directory: HOST shows it as the guest's /, HOST:/PATH
    /// mounts it at /PATH, a trailing :ro makes it read-only, :rw writable
    /// (the default) (repeatable; without any, the guest has no filesystem)
    #[arg(long = "dir", value_name = "HOST[:/GUEST][:ro|:rw]")]
    pub dirs: Vec<String>,
    /// Stop the guest after this long (500ms, 5s, 2m, 1h): kvmini says so
    /// and exits 124
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Back guest memory with 2 MiB huge pages, all taken from the host's
    /// pool before the run (falls back to normal pages, with a warning, when
    /// the pool cannot give them)
    #[arg(long)]
    pub hugepages: bool,
    /// Touch all guest memory before the run, so the guest takes no page
    /// faults (for latency-sensitive runs)
    #[arg(long)]
    pub prefault: bool,
    /// Run without the seccomp filter on the vCPU thread (for debugging)
    #[arg(long)]
    pub no_seccomp: bool,
    /// Most file descriptors the guest may have open, 0..2 included
    #[arg(long, value_name = "N", default_value_t = kvmini_abi::fs::DEFAULT_MAX_FDS,
          value_parser = clap::value_parser!(u32).range(3..=65536))]
    pub max_fds: u32,
    /// Set a Linux program's environment variable: NAME=VALUE, or NAME
    /// alone for the host's value (skipped when the host has none)
    /// (repeatable; the environment is otherwise empty)
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<std::ffi::OsString>,
    /// A Linux program's working directory: an absolute guest path, a
    /// directory under a grant or / (the default)
    #[arg(long, value_name = "PATH")]
    pub cwd: Option<std::ffi::OsString>,
}

/// `kvmini run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The guest image
    pub guest: PathBuf,
    /// The image is a flat binary: loaded at guest physical 0, entered at 0
    /// in long mode (or the --mode given), identity-mapped, at ring 0
    /// unless --ring 3
    #[arg(long)]
    pub flat: bool,
    /// When the guest crashes, write an ELF core file of it to FILE (mode
    /// 0600; FILE is replaced only then), for `gdb GUEST FILE`
    #[arg(long, value_name = "FILE")]
    pub core: Option<PathBuf>,
    /// Wait for gdb before the guest's first instruction: on a Unix socket
    /// at this path (mode 0600), or on a loopback TCP address such as
    /// 127.0.0.1:1234 (gdb GUEST -ex 'target remote PATH')
    #[arg(long, value_name = "PATH|ADDR:PORT")]
    pub gdb: Option<String>,
    /// Machine options.
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Arguments for the guest (after `--`), read with the argv hypercall;
    /// the guest's path is its first argument
    #[arg(last = true, value_name = "ARGS")]
    pub guest_args: Vec<std::ffi::OsString>,
}

/// `kvmini demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The built-in guest to run; all of them when omitted
    pub name: Option<String>,
    /// List the built-in guests
    #[arg(long)]
    pub list: bool,
    /// Machine options.
    #[command(flatten)]
    pub machine: MachineArgs,
}

/// An error of kvmini itself, printed as one line and exit status 125.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reading the guest file failed.
    #[error("cannot read guest {}", .path.display())]
    ReadGuest {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The guest path is a directory.
    #[error("guest {} is a directory, not a guest image", .0.display())]
    GuestIsDirectory(PathBuf),
    /// The guest file is not an ELF file, and `--flat` was not given.
    #[error("{}: not an ELF file (to run a flat binary, add --flat)", .0.display())]
    NotElf(PathBuf),
    /// The guest file is an ELF file kvmini cannot run.
    #[error("{}", .path.display())]
    Image {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: LoaderError,
    },
    /// The guest file does not fit in guest memory.
    #[error("{}: {error} (raise --mem)", .path.display())]
    ImageTooLarge {
        /// The path given.
        path: PathBuf,
        /// Where it would go, and where guest memory ends.
        error: LoaderError,
    },
    /// A built-in guest does not fit in guest memory.
    #[error("{0} (raise --mem)")]
    NoRoom(LoaderError),
    /// The guest path is not a regular file, or too large.
    #[error(transparent)]
    GuestFile(kvmini::loader::ImageFileError),
    /// The demo's temporary directory could not be made.
    #[error("cannot create the demo directory {}", .path.display())]
    DemoDir {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No built-in guest has that name.
    #[error("no built-in guest named {0:?} (kvmini demo --list shows them)")]
    UnknownDemo(String),
    /// A `--dir` guest path is not absolute.
    #[error("--dir {spec}: the guest path must be absolute, like /data")]
    DirGuestPath {
        /// The `--dir` argument.
        spec: String,
    },
    /// A `--dir` argument ends in something that is neither a guest path
    /// nor `:ro` or `:rw`.
    #[error(
        "--dir {spec}: unknown suffix :{suffix} (a grant ends in :ro or :rw, \
         and a guest path is absolute, like HOST:/data)"
    )]
    DirSuffix {
        /// The `--dir` argument.
        spec: String,
        /// What follows its last `:`.
        suffix: String,
    },
    /// A granted host directory cannot be opened.
    #[error("--dir {}: cannot open the host directory", .path.display())]
    DirOpen {
        /// The host path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An `--env` without a name.
    #[error("--env {0}: the variable needs a name (NAME=VALUE or NAME)")]
    BadEnv(String),
    /// Two `--dir` arguments grant one guest path.
    #[error("--dir: {0} is granted twice")]
    DirTwice(String),
    /// A granted host directory is missing or not a directory.
    #[error("--dir {}: {reason}", .path.display())]
    BadDir {
        /// The host path.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `--timeout` value is wrong.
    #[error(transparent)]
    Duration(#[from] kvmini::stop::DurationError),
    /// Memory size problems.
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    /// KVM could not be opened.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// The mode cannot run this image or ring.
    #[error("{}", mode_advice(.0))]
    Mode(ModeError),
    /// A built-in guest other than hello in a mode other than long mode.
    #[error("--mode {0}: only the hello demo has a built-in image for this mode (kvmini demo hello --mode {0})")]
    NoDemo(CpuMode),
    /// The kernel refused the seccomp filter.
    #[error("cannot install the seccomp filter (run with --no-seccomp to go without)")]
    SeccompInstall(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The sandbox could not be built or run.
    #[error(transparent)]
    Sandbox(SandboxError),
    /// The sandbox could not be built.
    #[error(transparent)]
    Build(BuildError),
    /// The gdb socket or session failed.
    #[error(transparent)]
    Debug(Box<kvmini::debug::DebugError>),
}

impl From<kvmini::debug::DebugError> for CliError {
    fn from(error: kvmini::debug::DebugError) -> Self {
        CliError::Debug(Box::new(error))
    }
}

/// `ModeError` as advice on the options.
fn mode_advice(error: &ModeError) -> String {
    match error {
        ModeError::RingThree(mode) => format!(
            "--ring 3 needs --mode long: in --mode {mode} the guest runs at ring 0 \
             (leave --ring out, or give --ring 0)"
        ),
        ModeError::NotFlat(mode) => format!(
            "--mode {mode} runs flat images only (run --flat IMAGE): ELF guests are 64-bit \
             and run in long mode"
        ),
    }
}

impl From<GrantError> for CliError {
    fn from(error: GrantError) -> Self {
        match error {
            GrantError::BadGuestPath { spec } => CliError::DirGuestPath { spec },
            GrantError::UnknownSuffix { spec, suffix } => CliError::DirSuffix { spec, suffix },
            GrantError::Open { path, source } => CliError::DirOpen { path, source },
            GrantError::Duplicate(path) => CliError::DirTwice(path),
        }
    }
}

impl From<SandboxError> for CliError {
    fn from(error: SandboxError) -> Self {
        match error {
            SandboxError::Grant(e) => e.into(),
            SandboxError::Mode(e) => CliError::Mode(e),
            SandboxError::Memory(e) => CliError::Memory(e),
            SandboxError::Seccomp(SeccompError::Install(e)) => CliError::SeccompInstall(e.into()),
            SandboxError::Loader(
                e @ (LoaderError::SegmentPastWindow { .. } | LoaderError::FlatTooLarge { .. }),
            ) => CliError::NoRoom(e),
            other => CliError::Sandbox(other),
        }
    }
}

impl From<BuildError> for CliError {
    fn from(error: BuildError) -> Self {
        match error {
            BuildError::Sandbox(e) => e.into(),
            other => CliError::Build(other),
        }
    }
}

/// Parses the command line. Help and version go to stdout with status 0;
/// any other parse error is clap's whole message (what is wrong, its tips,
/// the usage line) on stderr, as kvmini's, and status 125.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, ExitCode> {
    Cli::try_parse_from(args).map_err(|e| {
        use clap::error::ErrorKind;
        match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                let _ = e.print();
                ExitCode::SUCCESS
            }
            _ => {
                crate::print::write_all(libc::STDERR_FILENO, usage_error(&e).as_bytes());
                ExitCode::from(STATUS_KVMINI_ERROR)
            }
        }
    })
}

/// clap's message for a bad command line, all of it, with kvmini's prefix
/// in place of clap's `error: `.
fn usage_error(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let body = rendered.strip_prefix("error: ").unwrap_or(&rendered);
    let mut text = format!("kvmini: {}", body.trim_end());
    text.push('\n');
    text
}

/// The stop handle that SIGINT and SIGTERM trigger: shared by every
/// sandbox the command line runs.
fn signal_stop_handle() -> &'static StopHandle {
    static HANDLE: OnceLock<StopHandle> = OnceLock::new();
    HANDLE.get_or_init(StopHandle::new)
}

/// Routes SIGINT and SIGTERM to [`signal_stop_handle`] ([`crate::signals`]),
/// so that the vCPU thread is stopped the same clean way as by a timeout.
fn route_stop_signals() {
    crate::signals::route(signal_stop_handle());
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT".to_owned(),
        libc::SIGTERM => "SIGTERM".to_owned(),
        other => format!("signal {other}"),
    }
}

/// A signal a Linux program sent itself, by name and number.
fn guest_signal(sig: u8) -> String {
    match kvmini::linux::signal_name(sig) {
        Some(name) => format!("{name} ({sig})"),
        None => format!("signal {sig}"),
    }
}

/// Runs what the command line asks for and returns kvmini's exit status.
pub fn execute(cli: Cli) -> ExitCode {
    route_stop_signals();
    let result = match cli.command {
        Some(Command::Run(args)) => run(&args),
        Some(Command::Demo(args)) => demo(&args),
        None => tour(),
    };
    match (result, crate::signals::received()) {
        (Ok(status), _) => ExitCode::from(status),
        (Err(e), None) => {
            eprintln!("kvmini: {}", error_chain(&e));
            ExitCode::from(STATUS_KVMINI_ERROR)
        }
        // Told to stop before the guest ran: what failed since does not
        // matter, the signal decides the status.
        (Err(_), Some(sig)) => {
            ExitCode::from(u8::try_from(128 + sig).unwrap_or(STATUS_KVMINI_ERROR))
        }
    }
}

/// An error and its sources on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !line.contains(&text) {
            let _ = write!(line, ": {text}");
        }
        source = e.source();
    }
    line
}

/// The machine options, parsed and checked as far as they can be without
/// the image.
#[derive(Debug)]
struct Machine {
    mem_size: u64,
    grants: Vec<GrantSpec>,
    ring: Option<Ring>,
    timeout: Option<Duration>,
    mode: CpuMode,
    trace: bool,
    stats: bool,
    seccomp: bool,
    hugepages: bool,
    prefault: bool,
    max_fds: u32,
    env: Vec<(Vec<u8>, Vec<u8>)>,
    cwd: Option<Vec<u8>>,
}

impl Machine {
    fn parse(args: &MachineArgs) -> Result<Self, CliError> {
        let mem_size = memory::parse_size(&args.mem)?;
        memory::check_size(mem_size)?;
        let mut grants = Vec::new();
        for spec in &args.dirs {
            let grant = GrantSpec::parse(spec)?;
            let reason = match std::fs::metadata(&grant.host) {
                Err(_) => Some("no such directory"),
                Ok(meta) if !meta.is_dir() => Some("not a directory"),
                Ok(_) => None,
            };
            if let Some(reason) = reason {
                return Err(CliError::BadDir {
                    path: grant.host,
                    reason,
                });
            }
            grants.push(grant);
        }
        let mut env = Vec::new();
        for var in &args.env {
            let bytes = var.as_encoded_bytes();
            let (name, value) = match bytes.iter().position(|&b| b == b'=') {
                Some(at) => (&bytes[..at], Some(bytes[at + 1..].to_vec())),
                None => (bytes, None),
            };
            if name.is_empty() {
                return Err(CliError::BadEnv(var.to_string_lossy().into_owned()));
            }
            let value = value.or_else(|| {
                use std::os::unix::ffi::OsStrExt;
                std::env::var_os(std::ffi::OsStr::from_bytes(name))
                    .map(std::ffi::OsString::into_encoded_bytes)
            });
            if let Some(value) = value {
                env.push((name.to_vec(), value));
            }
        }
        let ring = args
            .ring
            .as_deref()
            .map(|r| if r == "0" { Ring::Zero } else { Ring::Three });
        let timeout = args
            .timeout
            .as_deref()
            .map(kvmini::stop::parse_duration)
            .transpose()?;
        Ok(Machine {
            mem_size,
            grants,
            ring,
            timeout,
            mode: args.mode.into(),
            trace: args.trace,
            stats: args.stats,
            seccomp: !args.no_seccomp,
            hugepages: args.hugepages,
            prefault: args.prefault,
            max_fds: args.max_fds,
            env,
            cwd: args.cwd.as_ref().map(|c| c.as_encoded_bytes().to_vec()),
        })
    }

    /// `builder` with these options; the guest's stop handle is the one
    /// SIGINT and SIGTERM trigger, and its trace goes to kvmini's stderr.
    fn configure(&self, builder: SandboxBuilder) -> SandboxBuilder {
        let mut builder = builder
            .memory(self.mem_size)
            .mode(self.mode)
            .max_fds(self.max_fds)
            .trace(if self.trace {
                Output::Inherit
            } else {
                Output::Null
            })
            .timing(self.stats)
            .seccomp(self.seccomp)
            .hugepages(self.hugepages)
            .prefault(self.prefault)
            .stop_handle(signal_stop_handle().clone());
        if let Some(ring) = self.ring {
            builder = builder.ring(ring);
        }
        if let Some(limit) = self.timeout {
            builder = builder.timeout(limit);
        }
        for grant in &self.grants {
            builder = builder.dir(&grant.host, &grant.guest, grant.read_only);
        }
        for (name, value) in &self.env {
            builder = builder.env(name, value);
        }
        if let Some(cwd) = &self.cwd {
            builder = builder.cwd(cwd);
        }
        builder
    }
}

fn run(args: &RunArgs) -> Result<u8, CliError> {
    // Options first, then the image, then KVM: each error names the first
    // thing that is wrong, and no KVM is needed to find a bad argument.
    let machine = Machine::parse(&args.machine)?;
    let builder = if args.flat {
        Sandbox::builder().flat_file(&args.guest)
    } else {
        Sandbox::builder().elf_file(&args.guest)
    };
    let guest_args = std::iter::once(args.guest.as_os_str())
        .chain(args.guest_args.iter().map(std::ffi::OsString::as_os_str))
        .map(|a| a.as_encoded_bytes().to_vec())
        .collect::<Vec<_>>();
    let image_error = |source| match source {
        LoaderError::NotElf => CliError::NotElf(args.guest.clone()),
        error @ (LoaderError::SegmentPastWindow { .. } | LoaderError::FlatTooLarge { .. }) => {
            CliError::ImageTooLarge {
                path: args.guest.clone(),
                error,
            }
        }
        source => CliError::Image {
            path: args.guest.clone(),
            source,
        },
    };
    let build_error = |e| match e {
        BuildError::ReadImage { .. } | BuildError::ImageFile(_) if args.guest.is_dir() => {
            CliError::GuestIsDirectory(args.guest.clone())
        }
        BuildError::ReadImage { path, source } => CliError::ReadGuest { path, source },
        BuildError::ImageFile(e) => CliError::GuestFile(e),
        BuildError::Sandbox(SandboxError::Loader(source)) => image_error(source),
        e => e.into(),
    };
    let builder = machine
        .configure(builder)
        .args(guest_args)
        .check()
        .map_err(build_error)?;
    let kvm = open_kvm()?;
    // Loading can still refuse the image (a segment beyond --mem): name it.
    let mut sandbox = builder.build(&kvm).map_err(build_error)?;
    if args.machine.verbose {
        print_setup(&mut sandbox)?;
    }
    let outcome = match &args.gdb {
        Some(endpoint) => debug_run(&mut sandbox, endpoint)?,
        None => sandbox.run()?,
    };
    report(&outcome, machine.stats, None);
    if let (Some(path), Ending::Crashed(_)) = (&args.core, &outcome.ending) {
        // The status stays the crash's whether or not the core was written.
        if let Err(e) = crate::core_file::write(&mut sandbox, &outcome, &args.guest, path) {
            let why = error_chain(&e);
            eprintln!(
                "kvmini: cannot write the core file {}: {why}",
                path.display()
            );
        }
    }
    if let (true, Ending::Signaled(sig)) = (args.machine.verbose, &outcome.ending) {
        eprintln!(
            "kvmini: the program ended itself with {} (status {})",
            guest_signal(*sig),
            outcome.ending.status()
        );
    }
    Ok(outcome.ending.status())
}

/// `--gdb`: the guest runs under gdb, which connects to `endpoint`.
fn debug_run(sandbox: &mut Sandbox, endpoint: &str) -> Result<Outcome, CliError> {
    use kvmini::debug::{self, DebugError, Endpoint, Listener};
    let endpoint = Endpoint::parse(endpoint);
    let listener = Listener::bind(&endpoint).map_err(DebugError::from)?;
    let shown = listener
        .local_tcp_address()
        .map_or_else(|| endpoint.to_string(), |addr| addr.to_string());
    eprintln!("kvmini: waiting for gdb on {shown} (gdb GUEST -ex 'target remote {shown}')");
    let session = debug::serve(sandbox, &listener)?;
    if let Some(why) = &session.detached {
        eprintln!("kvmini: {why}; the guest ran on without a debugger");
    }
    Ok(session.outcome)
}

fn demo(args: &DemoArgs) -> Result<u8, CliError> {
    if args.list {
        for guest in guests::ALL {
            println!("{:<12} {}", guest.name, guest.summary);
        }
        return Ok(0);
    }
    let selected: Vec<&BuiltinGuest> = match &args.name {
        Some(name) => vec![guests::find(name).ok_or_else(|| CliError::UnknownDemo(name.clone()))?],
        None => guests::ALL.iter().collect(),
    };
    let mut runs = Vec::new();
    for guest in selected {
        let image = demo_image(guest, args.machine.mode.into())?;
        let machine = Machine::parse(&args.machine)?;
        let builder = match image {
            Image::Elf(bytes) => Sandbox::builder().elf(bytes),
            Image::Flat(bytes) => Sandbox::builder().flat(bytes),
        };
        let builder = machine.configure(builder).check()?;
        let own_dir = machine.grants.first().map(|grant| grant.host.clone());
        runs.push(DemoRun {
            guest,
            builder,
            own_dir,
        });
    }
    let kvm = open_kvm()?;
    // One guest prints as `kvmini run` would; several, as the tour does.
    let sections = runs.len() > 1;
    let listing = Listing {
        verbose: args.machine.verbose,
        stats: args.machine.stats,
    };
    in_turn(&kvm, runs, listing, sections)
}

/// A built-in guest to run, with its options set.
struct DemoRun<'g> {
    guest: &'g BuiltinGuest,
    builder: SandboxBuilder,
    /// The host directory of the user's first `--dir`, if any.
    own_dir: Option<PathBuf>,
}

/// What is printed about each run besides the guest's own output.
#[derive(Clone, Copy, Debug, Default)]
struct Listing {
    /// `--verbose`: the memory map and vCPU setup first.
    verbose: bool,
    /// `--stats`: the counts and times after.
    stats: bool,
}

/// Runs built-in guests one after the other, with their machine options.
/// With `sections`, each guest's output, and its `--stats`, comes between
/// a header that names it and a footer with its summary, as in the tour.
/// Returns the first non-zero status, or a signal's at once.
fn in_turn(
    kvm: &Kvm,
    runs: Vec<DemoRun<'_>>,
    listing: Listing,
    sections: bool,
) -> Result<u8, CliError> {
    let total = runs.len();
    let mut worst = 0;
    for (i, run) in runs.into_iter().enumerate() {
        let guest = run.guest;
        if sections {
            if i > 0 {
                println!();
            }
            println!("=== {}/{total} {}: {}", i + 1, guest.name, guest.summary);
        }
        let (builder, dir) = DemoDir::grant(guest, run.builder, run.own_dir)?;
        let mut sandbox = builder.build(kvm)?;
        if listing.verbose {
            print_setup(&mut sandbox)?;
        }
        let outcome = sandbox.run()?;
        drop(sandbox);
        if let Some(dir) = dir {
            dir.show();
        }
        report(&outcome, listing.stats, sections.then_some(guest.name));
        if sections {
            println!("--- {}: {}", guest.name, summary(&outcome));
        }
        let status = outcome.ending.status();
        if stopped_by_signal(status) {
            return Ok(status);
        }
        if worst == 0 {
            worst = status;
        }
    }
    Ok(worst)
}

/// The image of a built-in guest in `mode`: its ELF in long mode; in the
/// other modes, hello's flat image for that mode (the only one there is).
fn demo_image(guest: &BuiltinGuest, mode: CpuMode) -> Result<Image, CliError> {
    if mode == CpuMode::Long {
        return Ok(Image::Elf(guest.elf.to_vec()));
    }
    match guests::hello(mode) {
        Some(flat) if guest.name == guests::HELLO.name => Ok(Image::Flat(flat.to_vec())),
        _ => Err(CliError::NoDemo(mode)),
    }
}

/// The demo tour: every built-in guest, each introduced, each with a
/// summary of how it ended and what it cost in exits.
fn tour() -> Result<u8, CliError> {
    let kvm = open_kvm()?;
    println!("kvmini demo tour: each guest runs in its own KVM virtual machine, at ring 3.");
    println!("(kvmini demo --list shows the guests; kvmini run GUEST.elf runs your own.)");
    println!();
    let runs = guests::ALL
        .iter()
        .map(|guest| DemoRun {
            guest,
            builder: Sandbox::builder()
                .elf(guest.elf)
                .stop_handle(signal_stop_handle().clone()),
            own_dir: None,
        })
        .collect();
    in_turn(&kvm, runs, Listing::default(), true)
}

/// The directory a file-using demo guest sees as `/`: the user's first
/// `--dir`, or a fresh temporary one that is shown and removed afterwards.
struct DemoDir {
    path: PathBuf,
    temporary: bool,
}

impl DemoDir {
    fn grant(
        guest: &BuiltinGuest,
        builder: SandboxBuilder,
        own_dir: Option<PathBuf>,
    ) -> Result<(SandboxBuilder, Option<Self>), CliError> {
        if !guest.needs_dir {
            return Ok((builder, None));
        }
        if let Some(path) = own_dir {
            let dir = DemoDir {
                path,
                temporary: false,
            };
            return Ok((builder, Some(dir)));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "kvmini-demo-{}-{}-{nanos}",
            guest.name,
            std::process::id()
        ));
        std::fs::create_dir(&path).map_err(|source| CliError::DemoDir {
            path: path.clone(),
            source,
        })?;
        let builder = builder.dir(&path, "/", false);
        println!(
            "(the guest's / is the fresh host directory {})",
            path.display()
        );
        let dir = DemoDir {
            path,
            temporary: true,
        };
        Ok((builder, Some(dir)))
    }

    /// Prints what the guest left on the host's disk.
    fn show(self) {
        println!("on the host, {} now holds:", self.path.display());
        list_tree(&self.path, &self.path);
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn list_tree(root: &std::path::Path, dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let shown = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        match entry.metadata() {
            Ok(meta) if meta.is_dir() => {
                println!("  {shown}/");
                list_tree(root, &path);
            }
            Ok(meta) => println!("  {shown} ({})", counted(meta.len(), "byte", "bytes")),
            Err(_) => println!("  {shown}"),
        }
    }
}

/// Statuses 129 and up mean kvmini was told to stop: later guests are not run.
fn stopped_by_signal(status: u8) -> bool {
    status > 128
}

/// `n` and the word for it: `1 exit`, `2 exits`.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn summary(outcome: &Outcome) -> String {
    let ending = match &outcome.ending {
        Ending::Exited(code) => format!("exit({code})"),
        Ending::Halted => "halted".to_owned(),
        Ending::Crashed(_) => "crashed".to_owned(),
        Ending::Unserved(_) => "stopped on an unserved exit".to_owned(),
        Ending::TimedOut(limit) => format!("timed out after {limit:?}"),
        Ending::Stopped(sig) => format!("stopped by {}", signal_name(*sig)),
        Ending::OutputClosed => "its output was closed".to_owned(),
        Ending::Signaled(sig) => format!("ended by {}", guest_signal(*sig)),
    };
    format!(
        "{ending} after {} ({}), RAX = {}, status {}",
        counted(outcome.stats.exits, "exit", "exits"),
        by_hypercall(outcome),
        outcome.regs.rax,
        outcome.ending.status()
    )
}

fn by_hypercall(outcome: &Outcome) -> String {
    let parts: Vec<String> = Port::ALL
        .iter()
        .zip(outcome.stats.by_hypercall)
        .filter(|(_, n)| *n > 0)
        .map(|(port, n)| format!("{} {n}", port.name()))
        .collect();
    if parts.is_empty() {
        "no hypercalls".to_owned()
    } else {
        parts.join(", ")
    }
}

fn report_failure(outcome: &Outcome) {
    if matches!(outcome.ending, Ending::TimedOut(_) | Ending::Stopped(_)) {
        crate::print::stop_waiting();
    }
    match &outcome.ending {
        Ending::Crashed(crash) => {
            let report = outcome.crash_report().unwrap_or_else(|| crash.to_string());
            eprintln!("kvmini: {report}");
            if let Some(backtrace) = &crash.backtrace {
                eprintln!(
                    "  backtrace:\n  {}",
                    backtrace.to_string().replace('\n', "\n  ")
                );
            }
            eprintln!(
                "  registers at the fault:\n  {}",
                format_regs(&outcome.regs)
            );
        }
        Ending::Unserved(Unserved::ModeRefused(mode)) => {
            eprintln!("kvmini: {}", refusal(*mode));
        }
        Ending::Unserved(what) => {
            // Code that ring 0 cannot run on nested KVM runs at ring 3.
            let advice = match what {
                Unserved::InternalError { ring: 0, .. } => " (--ring 3)",
                _ => "",
            };
            eprintln!(
                "kvmini: the guest made an exit kvmini does not serve: {what}{advice}.\n  {}",
                format_regs(&outcome.regs)
            );
        }
        Ending::TimedOut(limit) => {
            eprintln!(
                "kvmini: guest timed out after {limit:?} ({}); stopped at rip {:#x}",
                counted(outcome.stats.exits, "exit", "exits"),
                outcome.regs.rip
            );
        }
        Ending::Stopped(sig) => {
            eprintln!(
                "kvmini: guest stopped by {} ({})",
                signal_name(*sig),
                counted(outcome.stats.exits, "exit", "exits")
            );
        }
        // A closed output pipe ends the run quietly, as SIGPIPE ends a
        // Unix tool.
        // A program that ends itself by a signal ends as quietly as it
        // would natively (a shell prints nothing either).
        Ending::Exited(_) | Ending::Halted | Ending::OutputClosed | Ending::Signaled(_) => {}
    }
}

/// The report of a mode the host's KVM would not run, with the modes to
/// try instead.
fn refusal(mode: CpuMode) -> String {
    let instead = match mode {
        CpuMode::Paged32 => {
            "--mode pae32 or --mode long may work instead (--mode long does wherever kvmini runs; \
             --mode protected runs 32-bit code without paging)"
        }
        _ => "--mode long works instead (--mode protected runs 32-bit code without paging)",
    };
    format!(
        "this host's KVM refused to run --mode {mode} ({}): KVM_EXIT_SHUTDOWN before the first \
         instruction completed (0 exits served); {instead}",
        mode.description()
    )
}

/// How the run ended if badly, and with `stats` its counts and times, each
/// line marked with `guest` when there is one to tell apart from others.
fn report(outcome: &Outcome, stats: bool, guest: Option<&str>) {
    report_failure(outcome);
    if !stats {
        return;
    }
    let who = guest.map(|name| format!(" {name}:")).unwrap_or_default();
    let s = &outcome.stats;
    eprintln!(
        "kvmini:{who} {}: io {}, hlt {}, mmio {}, other {}; {}",
        counted(s.exits, "exit", "exits"),
        s.io_exits,
        s.hlt_exits,
        s.mmio_exits,
        s.other_exits,
        counted(s.interruptions, "interruption", "interruptions")
    );
    eprintln!("kvmini:{who} by hypercall: {}", by_hypercall(outcome));
    crate::stats::print_syscalls(&s.syscalls, &who);
    eprintln!(
        "kvmini:{who} time in guest {:.3} ms, in kvmini {:.3} ms",
        s.guest_time.as_secs_f64() * 1e3,
        s.vmm_time.as_secs_f64() * 1e3
    );
    eprintln!(
        "kvmini:{who} final rip={:#x} rax={:#x} ({}), status {}",
        outcome.regs.rip,
        outcome.regs.rax,
        outcome.regs.rax,
        outcome.ending.status()
    );
}

fn print_setup(sandbox: &mut Sandbox) -> Result<(), SandboxError> {
    let layout = *sandbox.layout()?;
    let host = sandbox.memory_host_address()?;
    let run_host = sandbox.kvm_run_host_address()?;
    eprintln!(
        "kvmini: guest memory: {} anonymous mmap at host {host:#x}, guest physical 0x0..{:#x} (KVM memory slot 0)",
        ByteSize(layout.mem_size),
        layout.mem_size
    );
    eprintln!(
        "kvmini: vCPU 0 kvm_run area: {} bytes mmap'd from the vCPU fd at host {run_host:#x}",
        sandbox.kvm_run_size()?
    );
    eprintln!("kvmini: memory map (guest physical = guest virtual, identity-mapped):");
    for region in sandbox.regions()? {
        eprintln!(
            "  {:#010x}..{:#010x}  host {:#x}  {}",
            region.start,
            region.end,
            host + region.start,
            region.name
        );
    }
    if let Some(map) = sandbox.memory_map()? {
        eprintln!(
            "kvmini: page permissions at ring 3 (everything else below kvmini's area: rw-, not executable):"
        );
        for area in map.areas() {
            eprintln!(
                "  {:#010x}..{:#010x}  {}  {}",
                area.start, area.end, area.permissions, area.kind
            );
        }
    }
    let image = sandbox.image().clone();
    for seg in &image.segments {
        eprintln!(
            "  segment {:#x}..{:#x} ({} from the file, flags {})",
            seg.vaddr,
            seg.vaddr + seg.mem_size,
            counted(seg.file_size, "byte", "bytes"),
            seg.flags
        );
    }
    if sandbox.mode() != CpuMode::Long {
        for line in crate::verbose::describe(sandbox.mode(), &layout, image.entry) {
            eprintln!("kvmini: {line}");
        }
        return Ok(());
    }
    // The control registers as the vCPU will enter the guest with them:
    // kvmini adds OSXSAVE and FSGSBASE to CR4 only where KVM offers them.
    let sregs = sandbox.entry_system_registers()?.unwrap_or_default();
    let flags = |value: u64, names: &[(u32, &str)]| -> String {
        let set: Vec<&str> = names
            .iter()
            .filter(|(bit, _)| value & (1u64 << bit) != 0)
            .map(|&(_, name)| name)
            .collect();
        if set.is_empty() {
            "0".to_owned()
        } else {
            set.join("|")
        }
    };
    let cr0 = flags(
        sregs.cr0,
        &[
            (0, "PE"),
            (1, "MP"),
            (4, "ET"),
            (5, "NE"),
            (16, "WP"),
            (31, "PG"),
        ],
    );
    let cr4 = flags(
        sregs.cr4,
        &[
            (5, "PAE"),
            (9, "OSFXSR"),
            (10, "OSXMMEXCPT"),
            (16, "FSGSBASE"),
            (18, "OSXSAVE"),
        ],
    );
    let efer = flags(
        sregs.efer,
        &[(0, "SCE"), (8, "LME"), (10, "LMA"), (11, "NXE")],
    );
    eprintln!(
        "kvmini: vCPU: 64-bit long mode, ring {}, RIP = {:#x} (entry), RSP = {:#x}, CR3 = {:#x}, \
         CR0 = {cr0}, CR4 = {cr4}, EFER = {efer}{}",
        sandbox.ring().number(),
        image.entry,
        layout.stack_top(),
        sregs.cr3,
        if sandbox.ring() == Ring::Three {
            ", RFLAGS.IOPL = 3"
        } else {
            ""
        }
    );
    Ok(())
}
