//! The start of a Linux program in a sandbox being built: its stub, its
//! initial stack and its process state (docs/linux.md).

use super::config::Config;
use super::SandboxError;
use crate::cpu;
use crate::kvm::Kvm;
use crate::layout::Layout;
use crate::linux::start::{self as linux_stack, StartInfo};
use crate::linux::terminal::Terminal;
use crate::linux::{LinuxError, Process, ProcessLayout};
use crate::loader;
use crate::memory;

/// The start of a Linux program already loaded as `image`: its stub, its
/// initial stack (returning RSP) and its process state.
pub(super) fn linux_start(
    kvm: &Kvm,
    mem: &memory::GuestMemory,
    layout: &Layout,
    (bytes, image): (&[u8], &loader::LoadedImage),
    config: &Config,
    host_streams: [bool; 3],
) -> Result<(Process, u64), SandboxError> {
    use vm_memory::{Bytes, GuestAddress};
    let process_layout = ProcessLayout::new(layout, image.highest)?;
    mem.write_slice(
        &crate::arch::x86_64::syscall::STUB,
        GuestAddress(process_layout.stub),
    )
    .map_err(LinuxError::from)?;
    mem.write_slice(
        &crate::linux::TRAMPOLINES,
        GuestAddress(process_layout.stub + crate::linux::TRAMPOLINES_OFFSET),
    )
    .map_err(LinuxError::from)?;
    let phdrs = loader::program_headers(bytes)?;
    let mut random = [0u8; 16];
    rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| SandboxError::Output(e.into()))?;
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let hwcap = cpu::cpuid_entry(kvm.supported_cpuid(), 1, 0).map_or(0, |e| e.edx);
    let info = StartInfo {
        args: config.args.clone(),
        env: config.env.clone(),
        phdr: phdrs.address,
        phent: phdrs.entry_size,
        phnum: phdrs.count,
        entry: image.entry,
        random,
        uid,
        gid,
        hwcap,
    };
    let rsp = linux_stack::write_initial_stack(
        mem,
        process_layout.stack_top,
        process_layout.stack_bottom,
        &info,
    )?;
    let mut terminals = [None; 3];
    for ((fd, host), terminal) in (0..).zip(host_streams).zip(&mut terminals) {
        if host {
            *terminal = Terminal::of_host(fd);
        }
    }
    let process = Process::new(process_layout, uid, gid, config.max_fds)
        .with_terminals(terminals)
        .with_exe(config.args.first().map_or(&[][..], Vec::as_slice));
    Ok((process, rsp))
}
