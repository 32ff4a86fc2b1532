//! The seccomp filter of the vCPU thread: once the VM is set up, the thread
//! that runs the guest may make only the system calls that serving
//! hypercalls needs. Anything else fails with EPERM, so a bug that a guest
//! could steer cannot open sockets, execute programs or create VMs.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

/// `KVM_RUN`: the ioctl of every exit (registers travel through the
/// sync-regs area, not ioctls).
const KVM_RUN: u64 = 0xAE80;
/// `KVM_GET_SREGS`: read-only, for the rare exits that need the system
/// registers of a guest whose system registers are not synced at every exit
/// (an exception report).
const KVM_GET_SREGS: u64 = 0x8138_AE83;

/// `AT_EMPTY_PATH`, as the filter compares it.
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;

/// `PROT_EXEC`, as the filter compares it.
const PROT_EXEC: u64 = libc::PROT_EXEC as u64;

/// The flags of `clone` as glibc's `pthread_create` passes them: a thread
/// of this process (sharing memory, descriptors and signal handlers), never
/// a new process, and no namespace. The only `clone` the filter allows.
pub const THREAD_CLONE_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;

/// `clone3`, the same number on every architecture.
const SYS_CLONE3: u32 = 435;

/// Classic BPF: load the 32-bit word at an absolute offset.
const BPF_LD_W_ABS: u16 = 0x20;
/// Jump if the accumulator equals the constant.
const BPF_JEQ_K: u16 = 0x15;
/// Return the constant.
const BPF_RET_K: u16 = 0x06;
/// Where `struct seccomp_data` holds the system call number.
const SECCOMP_DATA_NR: u32 = 0;
/// Fail the call with the errno in the low 16 bits.
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

/// Errors of building or installing the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The rules did not compile (a kvmini bug).
    #[error("cannot build the seccomp filter")]
    Build(#[source] seccompiler::BackendError),
    /// The kernel refused the filter.
    #[error("cannot install the seccomp filter")]
    Install(#[source] seccompiler::Error),
    /// The thread that would install it and run the guest did not start.
    #[error("cannot start a vCPU thread")]
    Thread(#[source] std::io::Error),
    /// A vCPU thread ended without answering (a kvmini bug: the thread
    /// runs jobs until kvmini lets it go, and a job's panic is caught).
    #[error("a vCPU thread ended without answering")]
    ThreadLost,
}

/// The system calls of the run loop, file hypercalls included.
const ALLOWED: &[libc::c_long] = &[
    // Guest output, file data, and kvmini's own messages.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_lseek,
    // The filesystem hypercalls, all relative to granted directories.
    libc::SYS_openat2,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_ftruncate,
    libc::SYS_unlinkat,
    libc::SYS_mkdirat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_getdents64,
    // Where a symlink in the last component of a path leads, when grants
    // nest and the directory a file is created in decides (`grant.rs`).
    libc::SYS_readlinkat,
    // Memory for kvmini's own buffers (`mmap` and `mprotect` below, never
    // executable).
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_madvise,
    // Locks, the stop signal, time, and leaving.
    libc::SYS_futex,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    // A panic that aborts must be able to raise SIGABRT and kill kvmini.
    libc::SYS_rt_sigaction,
    libc::SYS_tgkill,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    // What host functions naturally use (docs/security.md, "Embedding
    // kvmini"): sleeps, and random bytes for `HashMap`'s seeds. Neither
    // reaches anything outside the thread.
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_getrandom,
    // A Linux program's poll and select wait on kvmini's stdin.
    libc::SYS_ppoll,
    // What glibc does in every new thread (threads: `clone` below): it
    // registers the thread's own restartable-sequence area and robust
    // mutex list, and aborts the process if rseq fails.
    libc::SYS_rseq,
    libc::SYS_set_robust_list,
    libc::SYS_sched_yield,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

fn program() -> Result<&'static BpfProgram, SeccompError> {
    static PROGRAM: OnceLock<BpfProgram> = OnceLock::new();
    if let Some(program) = PROGRAM.get() {
        return Ok(program);
    }
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    let ioctl = |request| {
        SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(SeccompError::Build)
    };
    rules.insert(
        libc::SYS_ioctl,
        vec![ioctl(KVM_RUN)?, ioctl(KVM_GET_SREGS)?],
    );
    // A vCPU thread sets its own CPU affinity to its caller's after the
    // caller pinned it to one CPU for a fast wake-up (vcpu_thread.rs), and
    // may read it: pid 0, itself, and no other thread.
    let itself = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, 0)
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(SeccompError::Build)?;
    rules.insert(libc::SYS_sched_setaffinity, vec![itself.clone()]);
    rules.insert(libc::SYS_sched_getaffinity, vec![itself]);
    // The allocator maps memory and, for a thread's own heap, reserves it
    // and then makes it readable and writable with mprotect (without which
    // it falls back to one mmap per allocation). Neither may make memory
    // executable: the protection (third argument) must not have PROT_EXEC.
    let not_executable = || {
        SeccompCondition::new(
            2,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(PROT_EXEC),
            0,
        )
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(SeccompError::Build)
    };
    // A Linux program's chmod and utimensat act on a descriptor kvmini
    // opened beneath a grant, never on a path: only with AT_EMPTY_PATH
    // (the fourth argument, filtered) and the empty path.
    let on_the_descriptor = || {
        SeccompCondition::new(3, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, AT_EMPTY_PATH)
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(SeccompError::Build)
    };
    rules.insert(libc::SYS_fchmodat2, vec![on_the_descriptor()?]);
    rules.insert(libc::SYS_utimensat, vec![on_the_descriptor()?]);
    rules.insert(libc::SYS_mmap, vec![not_executable()?]);
    rules.insert(libc::SYS_mprotect, vec![not_executable()?]);
    // Threads, for host functions that start them (a sandbox of their own
    // with a timeout, a worker): exactly the flags of pthread_create, so
    // never a new process. A thread started here inherits this filter.
    let thread_flags = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        THREAD_CLONE_FLAGS,
    )
    .and_then(|c| SeccompRule::new(vec![c]))
    .map_err(SeccompError::Build)?;
    rules.insert(libc::SYS_clone, vec![thread_flags]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(u32::try_from(libc::EPERM).unwrap_or(1)),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(SeccompError::Build)?;
    let rules = BpfProgram::try_from(filter).map_err(SeccompError::Build)?;
    // clone3 passes its flags in memory, where a filter cannot read them:
    // it fails with ENOSYS, which makes glibc fall back to clone, whose
    // flags the rules above check. These three instructions come before
    // the generated program, which starts by checking the architecture
    // itself; clone3 has one number everywhere.
    let mut program = vec![
        sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: SECCOMP_DATA_NR,
        },
        sock_filter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            k: SYS_CLONE3,
        },
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | u32::try_from(libc::ENOSYS).unwrap_or(38),
        },
    ];
    program.extend(rules);
    Ok(PROGRAM.get_or_init(|| program))
}

/// Installs the filter on the calling thread (and threads it creates
/// later). It cannot be removed: call it on a thread that only runs the
/// guest.
pub fn install() -> Result<(), SeccompError> {
    seccompiler::apply_filter(program()?).map_err(SeccompError::Install)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_numbers_are_kvms() {
        // _IOR(KVMIO, 0x83, struct kvm_sregs)
        let size = u64::try_from(std::mem::size_of::<kvm_bindings::kvm_sregs>()).unwrap();
        assert_eq!(KVM_GET_SREGS, (2 << 30) | (size << 16) | (0xAE << 8) | 0x83);
    }

    #[test]
    fn the_filter_compiles_and_blocks_what_it_does_not_list() {
        assert!(!program().unwrap().is_empty());
        let result = std::thread::spawn(|| {
            install().unwrap();
            // socket(2) is not on the list.
            // SAFETY: a plain system call with integer arguments.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            (fd, std::io::Error::last_os_error().raw_os_error())
        })
        .join()
        .unwrap();
        assert_eq!(result, (-1, Some(libc::EPERM)));
    }

    #[test]
    fn a_confined_thread_may_map_and_protect_memory_but_never_executable() {
        let results = std::thread::spawn(|| {
            install().unwrap();
            let page = 4096;
            // SAFETY: a fresh anonymous mapping, used only through these
            // calls and unmapped at the end.
            unsafe {
                let errno = || std::io::Error::last_os_error().raw_os_error();
                let rw = libc::PROT_READ | libc::PROT_WRITE;
                let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
                let none = libc::mmap(std::ptr::null_mut(), page, libc::PROT_NONE, flags, -1, 0);
                assert_ne!(none, libc::MAP_FAILED);
                let grow = libc::mprotect(none, page, rw);
                let exec = (libc::mprotect(none, page, rw | libc::PROT_EXEC), errno());
                let exec_only = (libc::mprotect(none, page, libc::PROT_EXEC), errno());
                let mapped_exec = libc::mmap(
                    std::ptr::null_mut(),
                    page,
                    rw | libc::PROT_EXEC,
                    flags,
                    -1,
                    0,
                );
                let mapped_exec = (mapped_exec == libc::MAP_FAILED, errno());
                libc::munmap(none, page);
                (grow, exec, exec_only, mapped_exec)
            }
        })
        .join()
        .unwrap();
        assert_eq!(
            results,
            (
                0,
                (-1, Some(libc::EPERM)),
                (-1, Some(libc::EPERM)),
                (true, Some(libc::EPERM))
            )
        );
    }

    #[test]
    fn a_confined_thread_may_set_and_read_its_own_affinity_only() {
        use rustix::thread::{gettid, sched_getaffinity, sched_setaffinity};
        let caller = gettid();
        let (own, other, read_own, read_other) = std::thread::spawn(move || {
            let cpus = sched_getaffinity(None).unwrap();
            install().unwrap();
            (
                sched_setaffinity(None, &cpus),
                sched_setaffinity(Some(caller), &cpus),
                sched_getaffinity(None) == Ok(cpus),
                sched_getaffinity(Some(caller)).err(),
            )
        })
        .join()
        .unwrap();
        assert_eq!(own, Ok(()));
        assert_eq!(other, Err(rustix::io::Errno::PERM));
        assert!(read_own);
        assert_eq!(read_other, Some(rustix::io::Errno::PERM));
    }
}
