//! Setting up a sandbox's VM from what the builder gathered: memory, the
//! image, kvmini's tables, the boot state and the vCPU.

use kvmini_abi::layout::ELF_LOAD_MIN;

use super::backtrace::CodeMap;
use super::config::Config;
use super::linux_start::linux_start;
use super::reset::{PristineCpu, Reusable};
use super::run::{FixedPaging, Machine};
use super::{Image, Sandbox, SandboxError, Stdio};
use crate::arch::x86_64::bits::EFER_NXE;
use crate::arch::x86_64::boot::{self, BootSpec};
use crate::arch::x86_64::live_tables::LiveTables;
use crate::arch::x86_64::memory_map::{self, MemoryMap};
use crate::arch::x86_64::page_tables;
use crate::cpu::{self, Ring};
use crate::fs::Filesystem;
use crate::grant::Grants;
use crate::host::HostFunctions;
use crate::hypercall::Hypercalls;
use crate::kvm::Kvm;
use crate::layout::{Layout, PAGE_SIZE, SPARE_PAGE_TABLES_START};
use crate::linux::LinuxError;
use crate::loader::{self, LoadWindow};
use crate::memory;
use crate::modes::{self, CpuMode};
use crate::output::{GuestStream, Input, Output, Stream};
use crate::paging::{CpuPaging, Paging, PagingMode};
use crate::stop::StopHandle;
use crate::vm::Vm;

/// Allocates guest memory as `config` asks; huge pages fall back to normal
/// pages with a warning when the host cannot give them.
fn allocate_memory(
    config: &Config,
    warnings: &mut GuestStream,
) -> Result<(memory::GuestMemory, Option<memory::Snapshot>), SandboxError> {
    match memory::allocate_with(config.mem_size, config.backing) {
        Err(e @ memory::MemoryError::HugePages { .. }) => {
            let why = std::error::Error::source(&e).map(ToString::to_string);
            let _ = warnings.write(
                format!(
                    "kvmini: {e} ({}); using normal pages (see HugePages_Free in /proc/meminfo; \
                     reserve huge pages with: echo N > /proc/sys/vm/nr_hugepages)\n",
                    why.unwrap_or_default()
                )
                .as_bytes(),
                &config.stop,
            );
            let backing = memory::Backing {
                hugepages: false,
                ..config.backing
            };
            Ok(memory::allocate_with(config.mem_size, backing)?)
        }
        Err(e @ memory::MemoryError::HugePagesNotReusable) => {
            let _ = warnings.write(
                format!("kvmini: {e}; using normal pages\n").as_bytes(),
                &config.stop,
            );
            let backing = memory::Backing {
                hugepages: false,
                ..config.backing
            };
            Ok(memory::allocate_with(config.mem_size, backing)?)
        }
        other => Ok(other?),
    }
}

impl Sandbox {
    /// Builds the VM: memory, page tables, descriptor tables, the image,
    /// then the vCPU at the image's entry point.
    pub(super) fn from_parts(
        kvm: &Kvm,
        config: Config,
        stdio: Stdio,
        host_functions: HostFunctions,
    ) -> Result<Self, SandboxError> {
        let grants = Grants::open(&config.grants)?;
        let own_thread = !host_functions.is_empty() || stdio.runs_embedder_code();
        // The run's confined thread starts while the VM is built.
        if config.seccomp && !own_thread {
            crate::vcpu_thread::start_ahead(crate::vcpu_thread::DEFAULT_STACK_SIZE);
        }
        // Which of the guest's standard streams are kvmini's own.
        let host_streams = [
            matches!(stdio.stdin, Input::Inherit),
            matches!(stdio.stdout, Output::Inherit),
            match &stdio.stderr {
                Some(stderr) => matches!(stderr, Output::Inherit),
                None => matches!(stdio.warnings, Output::Inherit),
            },
        ];
        let stdout = GuestStream::new(stdio.stdout, Stream::Stdout);
        let stderr = stdio.stderr.map(|o| GuestStream::new(o, Stream::Stderr));
        let mut warnings = GuestStream::new(stdio.warnings, Stream::Stderr);
        let trace_out = GuestStream::new(stdio.trace, Stream::Stderr);
        let trace_events = stdio.trace_events;
        let (mem, snapshot) = allocate_memory(&config, &mut warnings)?;
        let layout = Layout::new(config.mem_size);
        let flat = matches!(config.image, Image::Flat(_));
        modes::check(config.mode, flat, config.ring)?;
        let ring = config
            .ring
            .unwrap_or(if flat { Ring::Zero } else { Ring::Three });
        // An ELF image without kvmini's ABI note is a Linux program: it
        // loads below its stack and stub (docs/linux.md).
        let linux = match &config.image {
            Image::Elf(bytes) => loader::parse_elf(bytes)?.abi_version.is_none(),
            Image::Flat(_) => false,
        };
        if linux && (config.mode != CpuMode::Long || ring != Ring::Three) {
            return Err(LinuxError::NotRing3.into());
        }
        let image = match &config.image {
            Image::Elf(bytes) => loader::load_elf(
                &mem,
                bytes,
                &LoadWindow {
                    start: ELF_LOAD_MIN,
                    end: layout.system_base,
                },
            )?,
            Image::Flat(bytes) => loader::load_flat(
                &mem,
                bytes,
                &LoadWindow {
                    start: 0,
                    end: layout.system_base,
                },
            )?,
        };
        let process = match (&config.image, linux) {
            (Image::Elf(bytes), true) => Some(linux_start(
                kvm,
                &mem,
                &layout,
                (bytes, &image),
                &config,
                host_streams,
            )?),
            _ => None,
        };
        // The guest that gets a memory map below has page tables of its
        // own, written over every identity-map one: none is built.
        let protected = ring == Ring::Three && config.mode == CpuMode::Long && !flat;
        let boot_state = match protected {
            true => boot::boot_state_without_page_tables,
            false => boot::boot_state,
        };
        let mut boot = boot_state(
            &layout,
            &BootSpec {
                mode: config.mode,
                ring,
                flat,
                entry: image.entry,
                fsgsbase: cpu::has_fsgsbase(kvm.supported_cpuid()),
                syscall_entry: process.as_ref().map(|(p, _)| p.layout().stub),
            },
        );
        if let Some((_, rsp)) = &process {
            boot.regs.rsp = *rsp;
        }
        // A ring-3 ELF guest in long mode gets its segments' permissions,
        // no-execute data and a stack guard (docs/security.md).
        let memory_map =
            (ring == Ring::Three && config.mode == CpuMode::Long && !flat).then(|| {
                let (stack, guard, stub) = match &process {
                    Some((p, _)) => {
                        let l = p.layout();
                        (
                            l.stack_bottom..l.stack_top,
                            l.guard_bottom..l.stack_bottom,
                            Some(l.stub),
                        )
                    }
                    None => {
                        let (stack, guard) =
                            memory_map::sdk_stack(image.highest, layout.stack_top());
                        (stack, guard, None)
                    }
                };
                MemoryMap::new(&image.segments, stack, guard, stub, layout.system_base)
            });
        if let Some(map) = &memory_map {
            boot.tables.extend(page_tables::protected_map(&layout, map));
            boot.sregs.efer |= EFER_NXE;
        }
        boot.tables.write_to(&mem)?;
        // A Linux program's memory calls change its tables from kvmini's
        // record of them, read now, before anything runs.
        let process = match process {
            Some((p, rsp)) if memory_map.is_some() => Some((
                p.with_tables(LiveTables::read(&mem, &layout)?, image.lowest),
                rsp,
            )),
            other => other,
        };
        if let Some(snapshot) = &snapshot {
            // Everything written so far: the image and kvmini's own area.
            let image_range = (
                image.lowest & !0xFFF,
                image.highest.next_multiple_of(0x1000),
            );
            // A Linux program's stack and stub too.
            let stack = process
                .as_ref()
                .map_or((layout.system_base, layout.system_base), |(_, rsp)| {
                    (rsp & !0xFFF, layout.system_base)
                });
            // And the spare page tables of a guest whose memory has
            // permissions.
            let spare = match memory_map {
                Some(_) => (SPARE_PAGE_TABLES_START, ELF_LOAD_MIN),
                None => (0, 0),
            };
            snapshot.freeze(
                &mem,
                &[
                    image_range,
                    stack,
                    (layout.system_base, layout.mem_size),
                    spare,
                ],
            )?;
        }
        let vm = Vm::new(kvm, mem)?;
        // The vCPU is given KVM's supported CPUID as it is (see `Vm::create_vcpu`).
        let cpu_paging = CpuPaging::from_cpuid(kvm.supported_cpuid().as_slice());
        let mut vcpu = vm.create_vcpu(kvm, &boot)?;
        let pristine = match &snapshot {
            Some(_) => Some(PristineCpu::save(kvm, &mut vcpu)?),
            None => None,
        };
        // A ring-3 guest cannot load CR3 or change the tables kvmini built
        // (they are supervisor-only), so its paging is known for good.
        let fixed_paging =
            (ring == Ring::Three && config.mode == CpuMode::Long).then(|| FixedPaging {
                // EFER.NXE is set where kvmini gave the memory permissions.
                paging: Paging::new(PagingMode::Long, memory_map.is_some(), cpu_paging),
                cr3: layout.pml4(),
                identity: match &memory_map {
                    Some(map) => map.writable_runs(PAGE_SIZE),
                    None => vec![page_tables::user_identity_range(&layout, flat)],
                },
                memory_map,
                linux: process.is_some(),
            });
        // A Linux program's system calls need CS and the FS base at each
        // exit: the system registers come with every exit.
        vcpu.sync_system_registers(fixed_paging.is_none() || process.is_some());
        let stack_top = process
            .as_ref()
            .map_or(layout.stack_top(), |(p, _)| p.layout().stack_top);
        let own_stop = StopHandle::new();
        let hypercalls = {
            let mut fs = Filesystem::new(grants, config.max_fds, stdio.stdin);
            if process.is_some() {
                fs.set_start_cwd(&config.cwd)
                    .map_err(|errno| LinuxError::Cwd {
                        path: String::from_utf8_lossy(&config.cwd).into_owned(),
                        errno,
                    })?;
            }
            let mut calls = Hypercalls::from_streams(stdout, warnings, fs)
                .with_host_functions(host_functions)
                .with_stop_handle(own_stop.clone())
                .with_argv(&config.args);
            if let Some(stderr) = stderr {
                calls = calls.with_stderr_stream(stderr);
            }
            if let Some((process, _)) = process {
                calls = calls.with_linux(process);
            }
            calls
        };
        Ok(Sandbox {
            machine: Some(Box::new(Machine {
                vcpu,
                vm,
                hypercalls,
                trace: config.trace,
                timing: config.timing,
                timeout: config.timeout,
                stop: own_stop.clone(),
                mode: config.mode,
                trace_out,
                trace_events,
                fixed_paging,
                cpu_paging,
                fault_regs: None,
                debug: None,
                code: CodeMap::of_image(&config.image, &image, stack_top),
            })),
            image,
            ring,
            snapshot: snapshot.zip(pristine).map(|(memory, cpu)| Reusable {
                memory,
                cpu,
                mode_is_long: config.mode == CpuMode::Long,
            }),
            flat,
            timeout: config.timeout,
            stop: config.stop,
            own_stop,
            mode: config.mode,
            seccomp: config.seccomp,
            ended: None,
            own_thread,
            thread: None,
            host_stack_size: config.host_stack_size,
        })
    }
}
