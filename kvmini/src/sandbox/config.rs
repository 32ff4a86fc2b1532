//! What a sandbox is built from, once the builder has read the guest.

use std::time::Duration;

use super::Image;
use crate::cpu::Ring;
use crate::grant::GrantSpec;
use crate::memory;
use crate::modes::CpuMode;
use crate::stop::StopHandle;

/// Everything a sandbox is built from, once the builder has read the
/// guest.
#[derive(Debug)]
pub(crate) struct Config {
    /// The guest.
    pub image: Image,
    /// Guest memory size in bytes.
    pub mem_size: u64,
    /// Privilege level; `None` picks ring 3 for ELF and ring 0 for flat images.
    pub ring: Option<Ring>,
    /// Print one line per exit to stderr.
    pub trace: bool,
    /// Measure time in the guest and in kvmini.
    pub timing: bool,
    /// Host directories the guest may see (`--dir`).
    pub grants: Vec<GrantSpec>,
    /// Most descriptors the guest may have open, 0..2 included.
    pub max_fds: u32,
    /// Wall-clock limit of one run.
    pub timeout: Option<Duration>,
    /// A handle that stops this sandbox's runs (shared with whoever wants
    /// to stop it: a signal handler, another thread, other sandboxes: it
    /// stops the runs in progress of every sandbox that has it). The
    /// timeout never goes through it.
    pub stop: StopHandle,
    /// The CPU mode the guest starts in: long mode unless a flat image
    /// asks for another ([`crate::modes`]).
    pub mode: CpuMode,
    /// Run the guest on a thread confined by kvmini's seccomp filter.
    pub seccomp: bool,
    /// The guest's arguments, read with the argv hypercall.
    pub args: Vec<Vec<u8>>,
    /// A Linux program's environment, `NAME=VALUE` each.
    pub env: Vec<Vec<u8>>,
    /// A Linux program's working directory.
    pub cwd: Vec<u8>,
    /// How guest memory is backed (huge pages, prefaulting, snapshots).
    pub backing: memory::Backing,
    /// The stack of the vCPU thread, where host functions run, in bytes
    /// (at least; [`crate::vcpu_thread::DEFAULT_STACK_SIZE`] by default).
    pub host_stack_size: usize,
}

impl Config {
    /// A configuration with the defaults: 64 MiB, default ring, no tracing.
    pub(crate) fn new(image: Image) -> Self {
        Config {
            image,
            mem_size: memory::MEM_DEFAULT,
            ring: None,
            trace: false,
            timing: false,
            grants: Vec::new(),
            max_fds: kvmini_abi::fs::DEFAULT_MAX_FDS,
            timeout: None,
            stop: StopHandle::new(),
            mode: CpuMode::Long,
            seccomp: true,
            args: Vec::new(),
            env: Vec::new(),
            cwd: b"/".to_vec(),
            backing: memory::Backing::default(),
            host_stack_size: crate::vcpu_thread::DEFAULT_STACK_SIZE,
        }
    }
}
