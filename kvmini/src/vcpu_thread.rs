//! The threads that run guests under kvmini's seccomp filter. Starting a
//! thread and installing the filter costs more than a short run itself
//! (docs/performance.md), so a confined thread is kept when its run ends
//! and given the next run of any sandbox of the process, as long as only
//! kvmini's own code ever ran on it.
//!
//! A thread that ran the embedding program's code (host functions, a stdin
//! reader, an output writer) may hold what that code left in thread-locals
//! or in the thread's signal mask: it serves one sandbox for its life
//! ([`VcpuThread::dedicated`]) and exits when that sandbox is dropped, so
//! that no sandbox sees another's state.
//!
//! A run moves the sandbox's machine to the thread and back: the caller
//! waits, so the guest still runs on one thread at a time, and nothing but
//! the short take and return of a thread touches state shared between
//! sandboxes.
//!
//! Waking a thread that sleeps on another CPU costs an inter-processor
//! interrupt, which in a virtual machine is slow (docs/performance.md, "What
//! each change bought", compares a round trip between two threads on one
//! CPU with one across CPUs). So the caller first pins the thread to its
//! own CPU, where the wake-up is local and the caller's CPU is free as soon
//! as it waits; the thread then takes the caller's own CPU affinity before
//! it enters the guest, so a long run can still move, and a guest runs
//! only where the thread that asked for the run may run.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Mutex, PoisonError};

use rustix::thread::{self, CpuSet, Pid};

use crate::seccomp::{self, SeccompError};

/// A run handed to a thread; it sends its own result back.
type Job = Box<dyn FnOnce() + Send>;

/// What a run ends with on its thread: its value, or the payload of the
/// panic that ended it (resumed on the caller).
type Reply<T> = Result<T, Box<dyn Any + Send>>;

/// Idle confined threads, most recently used last.
static IDLE: Mutex<Vec<Handle>> = Mutex::new(Vec::new());

/// How to reach one confined thread.
#[derive(Debug)]
struct Handle {
    jobs: Sender<Job>,
    tid: Pid,
    /// The process the thread belongs to: a child made by `fork` inherits
    /// the idle list but not the threads behind it.
    pid: u32,
    /// The size of the thread's stack.
    stack: usize,
}

/// The stack of a vCPU thread unless the sandbox asks for another size:
/// that of a main thread under the usual 8 MiB `ulimit -s`, so that a host
/// function that runs on the program's main thread runs here too. Only the
/// pages a thread touches take memory.
pub const DEFAULT_STACK_SIZE: usize = 8 << 20;

thread_local! {
    /// Whether kvmini's filter is installed on this thread. A thread that
    /// such a thread starts inherits the filter and needs no other.
    static CONFINED: Cell<bool> = const { Cell::new(false) };
}

/// How many idle threads are kept: beyond this, a thread whose run ended
/// exits. Each holds a stack and little else.
const MAX_IDLE: usize = 64;

/// A confined thread, taken from the idle ones or started for this run;
/// it goes back to the idle ones when dropped, unless it was dedicated to
/// one sandbox.
#[derive(Debug)]
pub struct VcpuThread {
    handle: Option<Handle>,
    dedicated: bool,
}

impl VcpuThread {
    /// An idle confined thread whose stack holds at least `stack` bytes,
    /// or a new one with that stack that has installed the filter. Fails
    /// only if the thread cannot start or the filter cannot be installed.
    pub fn get(stack: usize) -> Result<Self, SeccompError> {
        let idle = {
            let mut idle = IDLE.lock().unwrap_or_else(PoisonError::into_inner);
            idle.retain(|handle| handle.pid == std::process::id());
            idle.iter()
                .rposition(|handle| handle.stack >= stack)
                .map(|at| idle.remove(at))
        };
        let handle = match idle {
            Some(handle) => handle,
            None => match take_ahead(stack) {
                Some(starting) => starting.confined()?,
                None => start(stack)?,
            },
        };
        Ok(VcpuThread {
            handle: Some(handle),
            dedicated: false,
        })
    }

    /// This thread, for one sandbox only: it never goes back to the idle
    /// ones, and exits when dropped.
    pub fn dedicated(mut self) -> Self {
        self.dedicated = true;
        self
    }

    /// Whether the thread serves one sandbox only.
    pub fn is_dedicated(&self) -> bool {
        self.dedicated
    }

    /// Whether the thread belongs to this process: a child made by `fork`
    /// inherits a sandbox that holds a thread, but not the thread.
    pub fn is_in_this_process(&self) -> bool {
        self.handle
            .as_ref()
            .is_some_and(|handle| handle.pid == std::process::id())
    }

    /// Runs `job` on the thread and returns its result; a panic in `job`
    /// is resumed on the caller. The job runs on the CPUs the caller may
    /// use. Fails only if the thread is gone ([`SeccompError::ThreadLost`]).
    pub fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, SeccompError> {
        let (reply, result) = mpsc::sync_channel::<Reply<T>>(1);
        let callers_cpus = thread::sched_getaffinity(None).ok();
        let job: Job = Box::new(move || {
            // Off the one CPU it was woken on, to wherever the caller may
            // run, so that a long run can move.
            if let Some(cpus) = &callers_cpus {
                let _ = thread::sched_setaffinity(None, cpus);
            }
            let _ = reply.send(panic::catch_unwind(AssertUnwindSafe(job)));
        });
        let sent = self.handle.as_ref().map(|handle| {
            // Best effort: where pinning fails, the wake-up is only slower.
            let mut here = CpuSet::new();
            here.set(thread::sched_getcpu());
            let _ = thread::sched_setaffinity(Some(handle.tid), &here);
            handle.jobs.send(job)
        });
        match (sent, result.recv()) {
            (Some(Ok(())), Ok(Ok(value))) => Ok(value),
            (_, Ok(Err(payload))) => panic::resume_unwind(payload),
            // The thread runs jobs until its channel closes and never exits
            // on its own; losing it is a kvmini bug.
            _ => Err(SeccompError::ThreadLost),
        }
    }
}

impl Drop for VcpuThread {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            if self.dedicated {
                // The sender drops here and the thread exits.
                return;
            }
            let mut idle = IDLE.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE {
                idle.push(handle);
            }
            // Otherwise the sender drops here and the thread exits.
        }
    }
}

/// A thread started and perhaps still installing the filter.
#[derive(Debug)]
struct Starting {
    jobs: Sender<Job>,
    ready: Receiver<Result<Pid, SeccompError>>,
    pid: u32,
    stack: usize,
}

impl Starting {
    /// Waits until the thread has installed the filter, or failed to.
    fn confined(self) -> Result<Handle, SeccompError> {
        match self.ready.recv() {
            Ok(Ok(tid)) => Ok(Handle {
                jobs: self.jobs,
                tid,
                pid: self.pid,
                stack: self.stack,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SeccompError::ThreadLost),
        }
    }
}

/// The thread [`start_ahead`] started, until a run takes it.
static AHEAD: Mutex<Option<Starting>> = Mutex::new(None);

/// Starts a confined thread with a `stack`-byte stack for the next run
/// and returns without waiting for it, so that the thread's start and its
/// filter's installation overlap whatever the caller does next (building
/// a sandbox) instead of delaying the run. Does nothing when an idle
/// thread or one started ahead already has such a stack. Best effort: a
/// thread that could not start or be confined here is started again, and
/// its error reported, by the run that needs it.
pub fn start_ahead(stack: usize) {
    let pid = std::process::id();
    let idle = IDLE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|handle| handle.pid == pid && handle.stack >= stack);
    if idle {
        return;
    }
    let mut ahead = AHEAD.lock().unwrap_or_else(PoisonError::into_inner);
    if ahead
        .as_ref()
        .is_some_and(|s| s.pid == pid && s.stack >= stack)
    {
        return;
    }
    if let Ok(starting) = spawn(stack) {
        *ahead = Some(starting);
    }
}

/// The thread started ahead, if it belongs to this process and its stack
/// holds `stack` bytes.
fn take_ahead(stack: usize) -> Option<Starting> {
    let mut ahead = AHEAD.lock().unwrap_or_else(PoisonError::into_inner);
    let fits = ahead
        .as_ref()
        .is_some_and(|s| s.pid == std::process::id() && s.stack >= stack);
    if fits {
        ahead.take()
    } else {
        None
    }
}

/// Starts a thread with a `stack`-byte stack that installs the filter,
/// reports whether it could, and then runs jobs until its channel closes.
fn start(stack: usize) -> Result<Handle, SeccompError> {
    spawn(stack)?.confined()
}

/// Starts the thread of [`start`] without waiting for its report.
fn spawn(stack: usize) -> Result<Starting, SeccompError> {
    let (jobs, incoming) = mpsc::channel::<Job>();
    let (report, ready) = mpsc::sync_channel::<Result<Pid, SeccompError>>(1);
    // Started from a confined thread (a sandbox run by a host function),
    // the new thread has the filter already.
    let inherited = CONFINED.with(Cell::get);
    std::thread::Builder::new()
        .name("kvmini-vcpu".into())
        .stack_size(stack)
        .spawn(move || serve(&report, &incoming, inherited))
        .map_err(SeccompError::Thread)?;
    Ok(Starting {
        jobs,
        ready,
        pid: std::process::id(),
        stack,
    })
}

fn serve(ready: &SyncSender<Result<Pid, SeccompError>>, incoming: &Receiver<Job>, inherited: bool) {
    block_sigpipe();
    let installed = if inherited {
        Ok(())
    } else {
        seccomp::install()
    };
    CONFINED.with(|confined| confined.set(installed.is_ok()));
    let ok = installed.is_ok();
    let _ = ready.send(installed.map(|()| thread::gettid()));
    if ok {
        for job in incoming {
            job();
        }
    }
}

/// A guest's write to a pipe whose reader went away must fail with EPIPE,
/// not kill the embedding program: SIGPIPE is blocked on kvmini's own
/// threads, whatever the program's disposition for it (the signal is then
/// left pending on the thread, which never unblocks it).
fn block_sigpipe() {
    // SAFETY: plain signal-set manipulation on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_id() -> libc::pid_t {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }

    #[test]
    fn runs_are_confined_and_held_threads_are_distinct() {
        let caller = thread_id();
        let first = VcpuThread::get(DEFAULT_STACK_SIZE)
            .unwrap()
            .run(thread_id)
            .unwrap();
        assert_ne!(first, caller);
        // The filter is on: socket(2) is not on the list.
        let blocked = VcpuThread::get(DEFAULT_STACK_SIZE)
            .unwrap()
            .run(|| {
                // SAFETY: a plain system call with integer arguments.
                let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
                (fd, std::io::Error::last_os_error().raw_os_error())
            })
            .unwrap();
        assert_eq!(blocked, (-1, Some(libc::EPERM)));
        // The calling thread is not confined.
        // SAFETY: as above; the descriptor is closed at once.
        let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0);
        // SAFETY: fd was just opened and is not used again.
        unsafe { libc::close(fd) };
        // Held threads are distinct.
        let a = VcpuThread::get(DEFAULT_STACK_SIZE).unwrap();
        let b = VcpuThread::get(DEFAULT_STACK_SIZE).unwrap();
        let (ta, tb) = (a.run(thread_id).unwrap(), b.run(thread_id).unwrap());
        assert_ne!(ta, tb);
    }

    #[test]
    fn a_returned_thread_serves_the_next_run() {
        thread_local! {
            static JOBS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        // Each job counts the jobs its thread has run. Other tests take
        // threads from the same pool meanwhile, so one thread need not
        // serve every run here; but a thread that went back to the pool
        // must serve again, or every count would be 1.
        let counts: Vec<u32> = (0..20)
            .map(|_| {
                VcpuThread::get(DEFAULT_STACK_SIZE)
                    .unwrap()
                    .run(|| {
                        JOBS.with(|jobs| {
                            jobs.set(jobs.get() + 1);
                            jobs.get()
                        })
                    })
                    .unwrap()
            })
            .collect();
        assert!(counts.iter().any(|&n| n > 1), "{counts:?}");
        // And no thread is started for nothing: 20 runs, few threads.
        let firsts = counts.iter().filter(|&&n| n == 1).count();
        assert!(firsts < 10, "{counts:?}");
    }

    #[test]
    fn a_run_takes_the_callers_cpu_affinity() {
        let (pinned, full) = std::thread::spawn(|| {
            let full = thread::sched_getaffinity(None).unwrap();
            let mut one = CpuSet::new();
            one.set(thread::sched_getcpu());
            thread::sched_setaffinity(None, &one).unwrap();
            let pinned = VcpuThread::get(DEFAULT_STACK_SIZE)
                .unwrap()
                .run(|| thread::sched_getaffinity(None).unwrap())
                .unwrap();
            assert_eq!(pinned, one);
            thread::sched_setaffinity(None, &full).unwrap();
            let widened = VcpuThread::get(DEFAULT_STACK_SIZE)
                .unwrap()
                .run(|| thread::sched_getaffinity(None).unwrap())
                .unwrap();
            (pinned.count(), (widened == full, full.count()))
        })
        .join()
        .unwrap();
        assert_eq!(pinned, 1);
        assert!(
            full.0,
            "the thread kept a narrower affinity than its caller's"
        );
    }

    #[test]
    fn threads_of_another_process_are_never_handed_out() {
        // What a child made by fork inherits: idle handles whose threads
        // it does not have (here, a channel nobody receives on).
        let (jobs, gone) = mpsc::channel::<Job>();
        drop(gone);
        let stale = Handle {
            jobs,
            tid: thread::gettid(),
            pid: std::process::id().wrapping_add(1),
            stack: DEFAULT_STACK_SIZE,
        };
        IDLE.lock().unwrap().push(stale);
        assert_eq!(
            VcpuThread::get(DEFAULT_STACK_SIZE)
                .unwrap()
                .run(|| 5)
                .unwrap(),
            5
        );
        let pids: Vec<u32> = IDLE.lock().unwrap().iter().map(|h| h.pid).collect();
        assert!(
            pids.iter().all(|&pid| pid == std::process::id()),
            "{pids:?}"
        );
    }

    #[test]
    fn the_allocator_grows_its_heap_on_a_confined_thread() {
        // Many small allocations held at once: glibc serves them from the
        // thread's heap, which it grows with mprotect. Refused that, it
        // maps a page or more for each one, which glibc counts as mapped
        // memory (hblkhd).
        let (count, size) = (20_000usize, 64usize);
        let (held, mapped) = VcpuThread::get(DEFAULT_STACK_SIZE)
            .unwrap()
            .run(move || {
                // SAFETY: mallinfo2 only reads the allocator's counters.
                let before = unsafe { libc::mallinfo2() }.hblkhd;
                let held: Vec<Box<[u8]>> = (0..count).map(|_| vec![1u8; size].into()).collect();
                // SAFETY: as above.
                let after = unsafe { libc::mallinfo2() }.hblkhd;
                (held.len(), after.saturating_sub(before))
            })
            .unwrap();
        assert_eq!(held, count);
        // One page per allocation would be `count` pages; the heap needs
        // none. The margin covers large allocations of other tests running
        // at the same time.
        assert!(
            mapped < count * 4096 / 8,
            "{mapped} bytes mapped for {count} allocations of {size} bytes"
        );
        // And the thread cannot make memory executable.
        let exec = VcpuThread::get(DEFAULT_STACK_SIZE)
            .unwrap()
            .run(|| {
                // SAFETY: a fresh anonymous mapping, unmapped at once.
                unsafe {
                    let page = libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    );
                    let result = libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC);
                    let errno = std::io::Error::last_os_error().raw_os_error();
                    libc::munmap(page, 4096);
                    (result, errno)
                }
            })
            .unwrap();
        assert_eq!(exec, (-1, Some(libc::EPERM)));
    }

    #[test]
    fn a_panic_reaches_the_caller_and_the_thread_survives() {
        let caught = panic::catch_unwind(|| {
            VcpuThread::get(DEFAULT_STACK_SIZE)
                .unwrap()
                .run(|| panic!("boom"))
        });
        let payload = caught.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
        assert_eq!(
            VcpuThread::get(DEFAULT_STACK_SIZE)
                .unwrap()
                .run(|| 7)
                .unwrap(),
            7
        );
    }
}
