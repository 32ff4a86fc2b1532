//! The command line: `kvmini run`, `kvmini demo`, and the demo tour when no
//! command is given. Parsing is clap's; everything else is the library's.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::cpu::Ring;
use crate::guests::{self, BuiltinGuest};
use crate::kvm::Kvm;
use crate::memory::{self, ByteSize};
use crate::modes::{CpuMode, ModeError};
// kvmini's own messages: never a panic, never a wait a stop signal cannot end.
use crate::print::{eprintln, println};
use crate::sandbox::{
    format_regs, BuildError, Ending, Image, Outcome, Sandbox, SandboxBuilder, STATUS_KVMINI_ERROR,
};
use crate::stop::StopHandle;
use kvmini_abi::Port;
use std::sync::OnceLock;

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
    #[arg(long, value_enum, default_value_t = CpuMode::Long)]
    pub mode: CpuMode,
    /// Guest memory, a multiple of 2 MiB from 2M to 4G (K, M, G suffixes)
    #[arg(long, value_name = "SIZE", default_value = "64M")]
    pub mem: String,
    /// Print one line per exit on stderr: count, RIP, reason, port, size, value
    #[arg(long)]
    pub trace: bool,
    /// Print exit counts by reason and hypercall, time in guest and in
    /// kvmini, and the final RIP and RAX on stderr at the end
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
        source: crate::loader::LoaderError,
    },
    /// The guest path is not a regular file, or too large.
    #[error(transparent)]
    GuestFile(crate::loader::ImageFileError),
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
    /// A `--dir` argument is wrong.
    #[error(transparent)]
    Grant(#[from] crate::grant::GrantError),
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
    Duration(#[from] crate::stop::DurationError),
    /// Memory size problems.
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    /// KVM could not be opened.
    #[error(transparent)]
    Kvm(#[from] crate::kvm::KvmError),
    /// The sandbox could not be built or run.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// Building the sandbox failed before any VM existed.
    #[error(transparent)]
    Build(BuildError),
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

fn machine_config(image: Image, args: &MachineArgs) -> Result<SandboxBuilder, CliError> {
    let mem_size = memory::parse_size(&args.mem)?;
    memory::check_size(mem_size)?;
    let mut grants = Vec::new();
    for spec in &args.dirs {
        let grant = crate::grant::GrantSpec::parse(spec)?;
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
    let ring = args
        .ring
        .as_deref()
        .map(|r| if r == "0" { Ring::Zero } else { Ring::Three });
    let timeout = args
        .timeout
        .as_deref()
        .map(crate::stop::parse_duration)
        .transpose()?;
    crate::modes::check(args.mode, matches!(image, Image::Flat(_)), ring)
        .map_err(crate::sandbox::SandboxError::from)?;
    let mut builder = Sandbox::builder()
        .image(image)
        .memory(mem_size)
        .trace(args.trace)
        .timing(args.stats)
        .max_fds(args.max_fds)
        .stop_handle(signal_stop_handle().clone())
        .mode(args.mode)
        .seccomp(!args.no_seccomp)
        .hugepages(args.hugepages)
        .prefault(args.prefault);
    if let Some(ring) = ring {
        builder = builder.ring(ring);
    }
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    Ok(grants.into_iter().fold(builder, SandboxBuilder::grant))
}

/// Builds a sandbox; every guest here is already in memory.
fn build(kvm: &Kvm, builder: SandboxBuilder) -> Result<Sandbox, CliError> {
    builder.build(kvm).map_err(|e| match e {
        BuildError::Sandbox(e) => CliError::Sandbox(e),
        other => CliError::Build(other),
    })
}

fn run(args: &RunArgs) -> Result<u8, CliError> {
    // Options first, then the image, then KVM: each error names the first
    // thing that is wrong, and no KVM is needed to find a bad argument.
    let kind = if args.flat {
        Image::Flat(Vec::new())
    } else {
        Image::Elf(Vec::new())
    };
    let mut config = machine_config(kind, &args.machine)?;
    if args.guest.is_dir() {
        return Err(CliError::GuestIsDirectory(args.guest.clone()));
    }
    let mem_size = memory::parse_size(&args.machine.mem)?;
    let bytes = crate::loader::read_image_file(&args.guest, mem_size).map_err(|e| match e {
        crate::loader::ImageFileError::Read { path, source } => {
            CliError::ReadGuest { path, source }
        }
        other => CliError::GuestFile(other),
    })?;
    config = config.args(
        std::iter::once(args.guest.as_os_str())
            .chain(args.guest_args.iter().map(std::ffi::OsString::as_os_str))
            .map(std::ffi::OsStr::as_encoded_bytes),
    );
    let image_error = |source| match source {
        crate::loader::LoaderError::NotElf => CliError::NotElf(args.guest.clone()),
        source => CliError::Image {
            path: args.guest.clone(),
            source,
        },
    };
    config = config.image(if args.flat {
        Image::Flat(bytes)
    } else {
        crate::loader::parse_elf(&bytes).map_err(image_error)?;
        Image::Elf(bytes)
    });
    let kvm = Kvm::open()?;
    // Loading can still refuse the image (a segment beyond --mem): name it.
    boot(&kvm, config, &args.machine).map_err(|e| match e {
        CliError::Sandbox(crate::sandbox::SandboxError::Loader(source)) => image_error(source),
        e => e,
    })
}

fn boot(kvm: &Kvm, config: SandboxBuilder, args: &MachineArgs) -> Result<u8, CliError> {
    let mut sandbox = build(kvm, config)?;
    if args.verbose {
        print_setup(&mut sandbox);
    }
    let outcome = sandbox.run()?;
    report(&outcome, args.stats, None);
    Ok(outcome.ending.status())
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
    let configs = selected
        .iter()
        .map(|guest| machine_config(demo_image(guest, args.machine.mode)?, &args.machine))
        .collect::<Result<Vec<_>, _>>()?;
    let kvm = Kvm::open()?;
    // One guest prints as `kvmini run` would; several, as the tour does.
    let sections = selected.len() > 1;
    let listing = Listing {
        verbose: args.machine.verbose,
        stats: args.machine.stats,
    };
    in_turn(&kvm, selected.into_iter().zip(configs), listing, sections)
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
fn in_turn<'g>(
    kvm: &Kvm,
    runs: impl IntoIterator<Item = (&'g BuiltinGuest, SandboxBuilder)>,
    listing: Listing,
    sections: bool,
) -> Result<u8, CliError> {
    let runs: Vec<_> = runs.into_iter().collect();
    let total = runs.len();
    let mut worst = 0;
    for (i, (guest, mut config)) in runs.into_iter().enumerate() {
        if sections {
            if i > 0 {
                println!();
            }
            println!("=== {}/{total} {}: {}", i + 1, guest.name, guest.summary);
        }
        let dir = DemoDir::grant(guest, &mut config)?;
        let mut sandbox = build(kvm, config)?;
        if listing.verbose {
            print_setup(&mut sandbox);
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
    match crate::modes::hello(mode) {
        Some(flat) if guest.name == guests::HELLO.name => Ok(Image::Flat(flat.to_vec())),
        _ => Err(crate::sandbox::SandboxError::from(ModeError::NoDemo(mode)).into()),
    }
}

/// The demo tour: every built-in guest, each introduced, each with a
/// summary of how it ended and what it cost in exits.
fn tour() -> Result<u8, CliError> {
    let kvm = Kvm::open()?;
    println!("kvmini demo tour: each guest runs in its own KVM virtual machine, at ring 3.");
    println!("(kvmini demo --list shows the guests; kvmini run GUEST.elf runs your own.)");
    println!();
    let runs = guests::ALL.iter().map(|guest| {
        let config = Sandbox::builder()
            .elf(guest.elf)
            .stop_handle(signal_stop_handle().clone());
        (guest, config)
    });
    in_turn(&kvm, runs, Listing::default(), true)
}

/// The directory a file-using demo guest sees as `/`: the user's first
/// `--dir`, or a fresh temporary one that is shown and removed afterwards.
struct DemoDir {
    path: PathBuf,
    temporary: bool,
}

impl DemoDir {
    fn grant(guest: &BuiltinGuest, config: &mut SandboxBuilder) -> Result<Option<Self>, CliError> {
        if !guest.needs_dir {
            return Ok(None);
        }
        if let Some(grant) = config.grants().first() {
            return Ok(Some(DemoDir {
                path: grant.host.clone(),
                temporary: false,
            }));
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
        *config = std::mem::take(config).dir(path.clone(), "/", false);
        println!(
            "(the guest's / is the fresh host directory {})",
            path.display()
        );
        Ok(Some(DemoDir {
            path,
            temporary: true,
        }))
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
            eprintln!("kvmini: {crash}");
            eprintln!(
                "  registers at the fault:\n  {}",
                format_regs(&outcome.regs)
            );
        }
        Ending::Unserved(refused @ crate::sandbox::Unserved::ModeRefused(_)) => {
            eprintln!("kvmini: {refused}");
        }
        Ending::Unserved(what) => {
            eprintln!(
                "kvmini: the guest made an exit kvmini does not serve: {what}.\n  {}",
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
        Ending::Exited(_) | Ending::Halted | Ending::OutputClosed => {}
    }
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

fn print_setup(sandbox: &mut Sandbox) {
    let layout = *sandbox.layout();
    let host = sandbox.memory_host_address();
    let run_host = sandbox.kvm_run_host_address();
    eprintln!(
        "kvmini: guest memory: {} anonymous mmap at host {host:#x}, guest physical 0x0..{:#x} (KVM memory slot 0)",
        ByteSize(layout.mem_size),
        layout.mem_size
    );
    eprintln!(
        "kvmini: vCPU 0 kvm_run area: {} bytes mmap'd from the vCPU fd at host {run_host:#x}",
        sandbox.kvm_run_size()
    );
    eprintln!("kvmini: memory map (guest physical = guest virtual, identity-mapped):");
    for region in sandbox.regions() {
        eprintln!(
            "  {:#010x}..{:#010x}  host {:#x}  {}",
            region.start,
            region.end,
            host + region.start,
            region.name
        );
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
        for line in crate::modes::describe(sandbox.mode(), &layout, image.entry) {
            eprintln!("kvmini: {line}");
        }
        return;
    }
    // The control registers as the vCPU will enter the guest with them:
    // kvmini adds OSXSAVE and FSGSBASE to CR4 only where KVM offers them.
    let sregs = sandbox.entry_system_registers().unwrap_or_default();
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
}
