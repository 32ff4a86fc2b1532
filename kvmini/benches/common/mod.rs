//! What the benchmarks share: the floor (a VM set up and run directly on
//! kvm-ioctls, with no kvmini code in between), the flat guest images both
//! sides run, kvmini sandboxes built the same way, the C guests under
//! `bench/guests/`, and the file where a benchmark leaves the figures that
//! are not times (`bench/compare.sh` reads it).

// Each benchmark binary includes this module and uses a different part of it.
#![allow(dead_code)]

// The tests' C build command, so that the benchmarks build their guests
// exactly as the tests do.
#[path = "../../tests/common/c_build.rs"]
mod c_build;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::Criterion;
use kvm_bindings::{kvm_regs, kvm_segment, kvm_userspace_memory_region};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use kvmini::cpu::Ring;
use kvmini::kvm::Kvm;
use kvmini::output::Output;
use kvmini::sandbox::Sandbox;

use c_build::cc_guest;
pub use c_build::repo_root;

/// Guest memory of every flat guest, kvmini's and the floor's: the
/// smallest kvmini accepts, so that neither side pays for more.
pub const FLAT_MEM: u64 = 2 << 20;

/// The criterion settings for this 2-core machine: few samples, short
/// times, no plots. `bench/compare.sh` passes its own times on the command
/// line, which win.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .nresamples(10_000)
        .without_plots()
        .configure_from_args()
}

/// Opens KVM for kvmini, or says why the benchmarks are skipped.
pub fn kvm() -> Option<Kvm> {
    match Kvm::open() {
        Ok(kvm) => Some(kvm),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

/// Where the benchmarks leave their non-time figures: `KVMINI_BENCH_OUT`,
/// or `target/kvmini-bench` in the repository.
pub fn out_dir() -> PathBuf {
    let dir = std::env::var_os("KVMINI_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/kvmini-bench"));
    std::fs::create_dir_all(&dir).expect("create the benchmark output directory");
    dir
}

/// Appends `name value` to `facts.tsv` in [`out_dir`] and prints it.
pub fn fact(name: &str, value: f64) {
    println!("fact {name} = {value}");
    let path = out_dir().join("facts.tsv");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open facts.tsv");
    writeln!(file, "{name}\t{value}").expect("write facts.tsv");
}

/// Builds the C guest `bench/guests/NAME.c` with the SDK's documented
/// command line into `dir`; returns the ELF's bytes.
pub fn c_guest(name: &str, dir: &Path) -> Vec<u8> {
    let elf = dir.join(format!("{name}.elf"));
    cc_guest(&[], &elf, &format!("bench/guests/{name}.c"));
    std::fs::read(&elf).expect("read the built guest")
}

/// Nanoseconds as `f64`, for figures.
pub fn nanos(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

// ---------------------------------------------------------------------------
// Flat guest images: 64-bit code loaded and entered at guest physical 0,
// identical for kvmini and the floor.

/// `mov dx, 0x403; xor eax, eax; out dx, eax`: kvmini's exit(0), which
/// the floor also takes as the end of the run; then `jmp $`.
const EXIT0: [u8; 9] = [0x66, 0xBA, 0x03, 0x04, 0x31, 0xC0, 0xEF, 0xEB, 0xFE];

/// The guest that exits at once (1 exit).
pub fn exit_image() -> Vec<u8> {
    EXIT0.to_vec()
}

/// `getNumExits` `n` times (n >= 1), then exit (n + 1 exits):
///
/// ```text
///        mov ecx, n
/// again: mov dx, 0x401
///        in eax, dx
///        dec ecx
///        jnz again
///        exit(0)
/// ```
pub fn null_loop_image(n: u32) -> Vec<u8> {
    let mut code = vec![0xB9];
    code.extend_from_slice(&n.max(1).to_le_bytes());
    code.extend_from_slice(&[0x66, 0xBA, 0x01, 0x04, 0xED, 0xFF, 0xC9, 0x75, 0xF7]);
    code.extend_from_slice(&EXIT0);
    code
}

/// "Hello, world!\n" one `out` to port 0xE9 per byte (`mov al, b; out
/// 0xE9, al`), then exit: 15 exits, like the built-in hello.
pub fn hello_image() -> Vec<u8> {
    let mut code = Vec::new();
    for &b in b"Hello, world!\n" {
        code.extend_from_slice(&[0xB0, b, 0xE6, 0xE9]);
    }
    code.extend_from_slice(&EXIT0);
    code
}

/// A kvmini sandbox around flat `image` at `ring`, in [`FLAT_MEM`], its
/// output thrown away, everything else kvmini's defaults (seccomp on).
pub fn kvmini_flat(kvm: &Kvm, image: &[u8], ring: Ring) -> Sandbox {
    kvmini_flat_with(kvm, image, ring, true)
}

/// As [`kvmini_flat`], with the seccomp filter on or off.
pub fn kvmini_flat_with(kvm: &Kvm, image: &[u8], ring: Ring, seccomp: bool) -> Sandbox {
    Sandbox::builder()
        .flat(image)
        .ring(ring)
        .memory(FLAT_MEM)
        .stdout(Output::Null)
        .seccomp(seccomp)
        .build(kvm)
        .expect("build the kvmini sandbox")
}

// ---------------------------------------------------------------------------
// The floor: the least a program must do on kvm-ioctls to run the same flat
// image in 64-bit mode at the same ring, and a bare KVM_RUN loop.

/// Where the floor keeps its tables, in the last 64 KiB of its 2 MiB.
const PML4: u64 = 0x1F_0000;
const PDPT: u64 = 0x1F_1000;
const PD: u64 = 0x1F_2000;
const TSS: u64 = 0x1F_3000;
/// 104-byte 64-bit TSS, then the I/O permission bitmap (8192 bytes, all
/// ports allowed); the CPU wants one 0xFF byte after it.
const TSS_LIMIT: u32 = 104 + 8192;
const STACK_TOP: u64 = PML4;

const P: u64 = 1;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PS: u64 = 1 << 7;

/// An anonymous mapping used as guest memory.
pub struct FloorMem {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone and reached only
// through it, so moving it to another thread (with the VM that uses it) is
// sound.
unsafe impl Send for FloorMem {}

impl FloorMem {
    fn new(len: usize) -> Self {
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // affected, and the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert!(ptr != libc::MAP_FAILED, "mmap guest memory");
        FloorMem {
            ptr: ptr.cast(),
            len,
        }
    }

    fn write(&self, at: u64, bytes: &[u8]) {
        let at = usize::try_from(at).expect("address fits");
        assert!(at + bytes.len() <= self.len, "write inside guest memory");
        // SAFETY: the range was checked to lie inside the mapping, which
        // lives as long as `self`; `bytes` cannot overlap it (it is not
        // borrowed from guest memory anywhere in this module).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(at), bytes.len()) }
    }

    fn write_u64(&self, at: u64, value: u64) {
        self.write(at, &value.to_le_bytes());
    }
}

impl Drop for FloorMem {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; the VM that used
        // it is dropped before (field order of `FloorVm`).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Time spent in each phase of a floor lifecycle.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    /// `KVM_CREATE_VM`.
    pub create_vm: Duration,
    /// mmap + `KVM_SET_USER_MEMORY_REGION`.
    pub memory: Duration,
    /// `KVM_CREATE_VCPU` and its kvm_run mapping.
    pub create_vcpu: Duration,
    /// Image, page tables and TSS into memory; sregs and regs.
    pub load: Duration,
    /// The KVM_RUN loop.
    pub run: Duration,
    /// Closing the vCPU and VM, munmap.
    pub teardown: Duration,
}

impl Phases {
    /// Sum of every phase.
    pub fn total(&self) -> Duration {
        self.create_vm + self.memory + self.create_vcpu + self.load + self.run + self.teardown
    }

    /// Adds `other` phase by phase.
    pub fn add(&mut self, other: &Phases) {
        self.create_vm += other.create_vm;
        self.memory += other.memory;
        self.create_vcpu += other.create_vcpu;
        self.load += other.load;
        self.run += other.run;
        self.teardown += other.teardown;
    }
}

/// A VM built on kvm-ioctls alone. Fields drop in order: vCPU, VM, memory.
pub struct FloorVm {
    vcpu: VcpuFd,
    vm: VmFd,
    mem: FloorMem,
}

fn segment(selector: u16, code: bool, dpl: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector,
        type_: if code { 0xB } else { 0x3 },
        present: 1,
        dpl,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        ..Default::default()
    }
}

impl FloorVm {
    /// Creates the VM, gives it 2 MiB, creates its vCPU and puts `image` at
    /// 0 in 64-bit mode at `ring`.
    pub fn new(kvm: &kvm_ioctls::Kvm, image: &[u8], ring: Ring) -> Self {
        Self::new_timed(kvm, image, ring, &mut Phases::default())
    }

    /// As [`FloorVm::new`], timing each phase into `phases`.
    pub fn new_timed(kvm: &kvm_ioctls::Kvm, image: &[u8], ring: Ring, phases: &mut Phases) -> Self {
        Self::with_memory(kvm, image, ring, FLAT_MEM, phases)
    }

    /// As [`FloorVm::new_timed`], with `mem_size` bytes of guest memory (a
    /// multiple of 2 MiB; the tables stay in the first 2 MiB).
    pub fn with_memory(
        kvm: &kvm_ioctls::Kvm,
        image: &[u8],
        ring: Ring,
        mem_size: u64,
        phases: &mut Phases,
    ) -> Self {
        let t0 = Instant::now();
        let vm = kvm.create_vm().expect("KVM_CREATE_VM");
        let t1 = Instant::now();
        let len = usize::try_from(mem_size).expect("fits");
        let mem = FloorMem::new(len);
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: mem_size,
            userspace_addr: mem.ptr as u64,
        };
        // SAFETY: the region is `mem`'s mapping, which outlives the VM (it
        // is dropped after it, by field order).
        unsafe { vm.set_user_memory_region(region) }.expect("KVM_SET_USER_MEMORY_REGION");
        let t2 = Instant::now();
        let vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
        let t3 = Instant::now();

        mem.write(0, image);
        // One 2 MiB page, identity, user-accessible: PML4 -> PDPT -> PD.
        mem.write_u64(PML4, PDPT | P | RW | US);
        mem.write_u64(PDPT, PD | P | RW | US);
        mem.write_u64(PD, P | RW | US | PS);
        // The TSS: I/O bitmap right after it (all zero: every port
        // allowed), closed by 0xFF. kvm-pvm checks the bitmap at ring 3
        // even with IOPL 3.
        mem.write(TSS + 102, &104u16.to_le_bytes());
        mem.write(TSS + u64::from(TSS_LIMIT), &[0xFF]);

        let mut sregs = vcpu.get_sregs().expect("KVM_GET_SREGS");
        let (cs, ds) = match ring {
            Ring::Zero => (segment(0x08, true, 0), segment(0x10, false, 0)),
            Ring::Three => (segment(0x23, true, 3), segment(0x1B, false, 3)),
        };
        sregs.cs = cs;
        sregs.ds = ds;
        sregs.es = ds;
        sregs.fs = ds;
        sregs.gs = ds;
        sregs.ss = ds;
        sregs.tr = kvm_segment {
            base: TSS,
            limit: TSS_LIMIT,
            selector: 0x28,
            type_: 0xB,
            present: 1,
            ..Default::default()
        };
        sregs.cr3 = PML4;
        // PE, MP, ET, NE, WP, AM, PG: the classic KVM hello world's CR0.
        sregs.cr0 = 0x8005_0033;
        sregs.cr4 = 1 << 5; // PAE
        sregs.efer = (1 << 8) | (1 << 10); // LME, LMA
        vcpu.set_sregs(&sregs).expect("KVM_SET_SREGS");
        vcpu.set_regs(&kvm_regs {
            rip: 0,
            rsp: STACK_TOP,
            rflags: match ring {
                Ring::Zero => 2,
                Ring::Three => 2 | (3 << 12), // IOPL 3
            },
            ..Default::default()
        })
        .expect("KVM_SET_REGS");
        let t4 = Instant::now();
        phases.create_vm += t1 - t0;
        phases.memory += t2 - t1;
        phases.create_vcpu += t3 - t2;
        phases.load += t4 - t3;
        FloorVm { vcpu, vm, mem }
    }

    /// The bare KVM_RUN loop: answers `in` from port 0x401 with the exit
    /// count, hands each byte `out` to port 0xE9 to `sink`, ends at `out`
    /// to port 0x403 or `hlt`. Returns the number of exits.
    pub fn run(&mut self, sink: &mut impl FnMut(u8)) -> u64 {
        let mut exits = 0u64;
        loop {
            exits += 1;
            match self.vcpu.run().expect("KVM_RUN") {
                VcpuExit::IoIn(0x401, data) => {
                    let count = u32::try_from(exits).unwrap_or(u32::MAX).to_le_bytes();
                    let n = data.len().min(4);
                    data[..n].copy_from_slice(&count[..n]);
                }
                VcpuExit::IoOut(0xE9, data) => sink(data[0]),
                VcpuExit::IoOut(0x403, _) | VcpuExit::Hlt => return exits,
                other => panic!("floor guest: unexpected exit {other:?}"),
            }
        }
    }

    /// Asks KVM to mirror the general registers, and the system registers
    /// if `system`, into `kvm_run` on every exit, as kvmini does at each
    /// ring (for the cost of that alone).
    pub fn sync_regs(&mut self, system: bool) {
        self.vcpu.set_sync_valid_reg(kvm_ioctls::SyncReg::Register);
        if system {
            self.vcpu
                .set_sync_valid_reg(kvm_ioctls::SyncReg::SystemRegister);
        }
    }

    /// Gives the vCPU the CPUID that KVM supports, as kvmini does (for the
    /// cost that this adds to every exit, if any).
    pub fn set_supported_cpuid(&mut self, kvm: &kvm_ioctls::Kvm) {
        let cpuid = kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .expect("KVM_GET_SUPPORTED_CPUID");
        self.vcpu.set_cpuid2(&cpuid).expect("KVM_SET_CPUID2");
    }

    /// Sends the guest's `syscall` to `stub` as kvmini does for a Linux
    /// program: EFER.SCE and the STAR, LSTAR and FMASK values kvmini gives
    /// (untimed setup ioctls), and the general registers mirrored into
    /// `kvm_run` so that [`FloorVm::run_syscalls`] resumes without an ioctl.
    pub fn syscall_entry(&mut self, stub: u64) {
        use kvmini::arch::x86_64::syscall::{FMASK, MSR_FMASK, MSR_LSTAR, MSR_STAR, STAR};
        let mut sregs = self.vcpu.get_sregs().expect("KVM_GET_SREGS");
        sregs.efer |= 1; // SCE
        self.vcpu.set_sregs(&sregs).expect("KVM_SET_SREGS");
        let entry = |index: u32, data: u64| kvm_bindings::kvm_msr_entry {
            index,
            data,
            ..Default::default()
        };
        let msrs = kvm_bindings::Msrs::from_entries(&[
            entry(MSR_STAR, STAR),
            entry(MSR_LSTAR, stub),
            entry(MSR_FMASK, FMASK),
        ])
        .expect("three MSRs");
        assert_eq!(self.vcpu.set_msrs(&msrs).expect("KVM_SET_MSRS"), 3);
        self.vcpu.set_sync_valid_reg(kvm_ioctls::SyncReg::Register);
    }

    /// The KVM_RUN loop of a guest whose `syscall`s reach a stub of one
    /// `out` to port 0xE8 ([`FloorVm::syscall_entry`]): `exit` (60) ends the
    /// run, any other call returns 1 in RAX, and the guest resumes at RCX
    /// with RFLAGS from R11 as SYSRET takes it, through the sync-regs area.
    /// Returns the number of exits.
    pub fn run_syscalls(&mut self) -> u64 {
        use kvmini::arch::x86_64::syscall::sysret_rflags;
        let mut exits = 0u64;
        loop {
            exits += 1;
            match self.vcpu.run().expect("KVM_RUN") {
                VcpuExit::IoOut(0xE8, _) => {}
                other => panic!("floor guest: unexpected exit {other:?}"),
            }
            let regs = &mut self.vcpu.sync_regs_mut().regs;
            if regs.rax == 60 {
                return exits;
            }
            regs.rax = 1;
            regs.rip = regs.rcx;
            regs.rflags = sysret_rflags(regs.r11);
            self.vcpu.set_sync_dirty_reg(kvm_ioctls::SyncReg::Register);
        }
    }

    /// Gives the vCPU kvmini's XCR0 (every user state component KVM
    /// supports) and CR4.OSXSAVE, after [`FloorVm::set_supported_cpuid`]:
    /// for the cost of the larger guest state KVM saves at every exit.
    pub fn set_kvmini_xcr0(&mut self, kvm: &kvm_ioctls::Kvm) {
        let cpuid = kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .expect("KVM_GET_SUPPORTED_CPUID");
        let Some(xcr0) = kvmini::xstate::supported_xcr0(&cpuid) else {
            return;
        };
        kvmini::xstate::set_xcr0(&self.vcpu, xcr0).expect("KVM_SET_XCRS");
        let mut sregs = self.vcpu.get_sregs().expect("KVM_GET_SREGS");
        sregs.cr4 |= 1 << 18; // OSXSAVE
        self.vcpu.set_sregs(&sregs).expect("KVM_SET_SREGS");
    }

    /// The VM (kept so that it is visibly owned until drop).
    pub fn vm(&self) -> &VmFd {
        &self.vm
    }

    /// Bytes of guest memory resident in this process.
    pub fn resident_guest_bytes(&self) -> u64 {
        resident_bytes(self.mem.ptr as u64, self.mem.len)
    }
}

/// Bytes of the mapping at `addr` (page-aligned, `len` bytes, mapped in
/// this process) that are resident (`mincore`).
pub fn resident_bytes(addr: u64, len: usize) -> u64 {
    const PAGE: usize = 4096;
    let mut pages = vec![0u8; len.div_ceil(PAGE)];
    // SAFETY: mincore writes one byte per page of the range into `pages`,
    // which has exactly that many; it reads no memory of the range itself.
    let rc = unsafe { libc::mincore(addr as *mut libc::c_void, len, pages.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    (pages.iter().filter(|&&p| p & 1 != 0).count() * PAGE) as u64
}

/// One whole floor lifecycle of `image` at `ring`, timed phase by phase.
pub fn floor_lifecycle(kvm: &kvm_ioctls::Kvm, image: &[u8], ring: Ring) -> (u64, Phases) {
    let mut phases = Phases::default();
    let mut vm = FloorVm::new_timed(kvm, image, ring, &mut phases);
    let t0 = Instant::now();
    let exits = vm.run(&mut |b| {
        std::hint::black_box(b);
    });
    let t1 = Instant::now();
    drop(vm);
    let t2 = Instant::now();
    phases.run += t1 - t0;
    phases.teardown += t2 - t1;
    (exits, phases)
}
