//! Stopping a running guest from another thread or a signal handler:
//! timeouts, stop handles, Ctrl-C and SIGTERM.
//!
//! A stop sets `kvm_run.immediate_exit` (so a `KVM_RUN` that is about to
//! start returns at once) and sends the vCPU thread a signal (so one that
//! is running returns with EINTR), the method the KVM API documents for
//! this. The signal is a standard one ([`signal`], SIGURG unless the
//! embedding program chose another with [`use_signal`]): the kernel keeps
//! at most one of it pending per thread and delivers it whatever the
//! queue of pending real-time signals holds, so stops never queue up and a
//! full queue never refuses one.
//!
//! The same signal ends any host call the vCPU thread waits in (a write to
//! a pipe nobody reads, a read of a terminal, the open of a FIFO): the
//! handler is installed without `SA_RESTART`, so the call fails with EINTR
//! and kvmini's code sees the stop. A signal that lands just before the
//! thread enters such a call would be lost, so the stop is sent again at
//! short intervals until the run ends (the `kvmini-stop` thread). The
//! thread's signal mask is set for each run, whatever the thread inherited.
//!
//! Each sandbox has a handle of its own that only kvmini holds; the one an
//! embedding program gives it (or gets from it) reaches it only while a
//! run is in progress, so one handle may stop many sandboxes and a
//! timeout, sent to the sandbox's own handle, stops no other.
//! [`StopHandle::stop`] takes no lock and allocates nothing: it is safe in
//! a signal handler.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Why a guest was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// It ran past its time limit.
    Timeout,
    /// kvmini received this signal (SIGINT, SIGTERM).
    Signal(i32),
}

const NO_STOP: i32 = 0;
const TIMEOUT: i32 = -1;

impl StopReason {
    fn encode(self) -> i32 {
        match self {
            StopReason::Timeout => TIMEOUT,
            StopReason::Signal(sig) => sig,
        }
    }

    fn decode(raw: i32) -> Option<Self> {
        match raw {
            NO_STOP => None,
            TIMEOUT => Some(StopReason::Timeout),
            sig => Some(StopReason::Signal(sig)),
        }
    }
}

/// Errors of the stop signal and of starting a run that a stop can reach.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The embedding program has its own handler for the signal kvmini
    /// stops runs with: kvmini does not replace it, and runs nothing it
    /// could not stop.
    #[error(
        "signal {0} has a handler kvmini did not install; kvmini stops runs with it \
         (give it back with SIG_DFL, or choose another with kvmini::stop::use_signal)"
    )]
    SignalTaken(i32),
    /// A signal that cannot stop runs: real-time signals are queued (a full
    /// queue refuses them), and the others are uncatchable, the CPU's own
    /// faults, or kept for job control, children and pipes.
    #[error("signal {0} cannot stop runs; choose one of {SUITABLE_NAMES}")]
    Unsuitable(i32),
    /// The stop signal is chosen once, before the first run.
    #[error("kvmini already stops runs with signal {0}; choose the signal before the first run")]
    InUse(i32),
    /// The thread that sends stops again could not be started.
    #[error("cannot start the kvmini-stop thread")]
    Thread(#[source] std::io::Error),
}

/// The state of a slot that its owner fills and empties while other
/// threads, signal handlers included, use it: whether it is open to users,
/// whether it is owned, and how many users are inside. Users never wait;
/// the owner waits for those inside before it empties the slot.
struct SlotState(AtomicU32);

const OPEN: u32 = 1 << 31;
const OWNED: u32 = 1 << 30;
const USERS: u32 = OWNED - 1;

impl SlotState {
    const fn new() -> Self {
        SlotState(AtomicU32::new(0))
    }

    /// Takes a free slot; the caller fills it, then [`Self::open`]s it.
    fn claim(&self) -> bool {
        self.0
            .compare_exchange(0, OWNED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    fn open(&self) {
        self.0.fetch_or(OPEN, Ordering::SeqCst);
    }

    /// Enters an open slot; false if it is not open.
    fn enter(&self) -> bool {
        let mut state = self.0.load(Ordering::SeqCst);
        loop {
            if state & OPEN == 0 || state & USERS == USERS {
                return false;
            }
            match self
                .0
                .compare_exchange_weak(state, state + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
    }

    fn leave(&self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }

    /// Closes the slot to new users, waits until those inside have left
    /// (each is a few instructions and a system call that does not block),
    /// and frees it.
    fn close(&self) {
        self.0.fetch_and(!OPEN, Ordering::SeqCst);
        while self.0.load(Ordering::SeqCst) & USERS != 0 {
            std::thread::yield_now();
        }
        self.0.store(0, Ordering::SeqCst);
    }
}

/// The vCPU thread of a run in progress.
struct Target {
    state: SlotState,
    pid: AtomicI32,
    tid: AtomicI32,
    immediate_exit: AtomicPtr<u8>,
}

impl Target {
    const fn new() -> Self {
        Target {
            state: SlotState::new(),
            pid: AtomicI32::new(0),
            tid: AtomicI32::new(0),
            immediate_exit: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Sets `immediate_exit` and signals the thread, if a run is in
    /// progress. Async-signal-safe: atomics and two system calls.
    fn kick(&self) {
        if !self.state.enter() {
            return;
        }
        // SAFETY: getpid has no preconditions.
        let here = unsafe { libc::getpid() };
        // A child made by fork has a copy of the slot but neither the
        // thread nor (for writing) the vCPU's mapping.
        if self.pid.load(Ordering::SeqCst) == here {
            let immediate_exit = self.immediate_exit.load(Ordering::SeqCst);
            // SAFETY: while the slot is open, `immediate_exit` points into
            // the vCPU's kvm_run mapping, which outlives the run (see
            // `StopHandle::attach`), and the owner cannot close the slot
            // while we are inside; a byte write cannot tear, and KVM reads
            // it on the next entry.
            unsafe { immediate_exit.write_volatile(1) };
            // SAFETY: tgkill names a thread of this process, alive while
            // the slot is open (it closes the slot itself before its run
            // returns); a thread id that was reused elsewhere cannot be
            // reached through this process id.
            unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    here,
                    self.tid.load(Ordering::SeqCst),
                    signal(),
                )
            };
        }
        self.state.leave();
    }
}

/// A link from a handle to the private handle of a run in progress.
struct Link {
    state: SlotState,
    run: AtomicPtr<Inner>,
}

/// Links in chunks that are added but never removed while their list
/// lives, so that a signal handler can walk them without a lock.
struct Chunk {
    links: [Link; CHUNK],
    next: AtomicPtr<Chunk>,
}

const CHUNK: usize = 8;

impl Chunk {
    const fn new() -> Self {
        Chunk {
            links: [const {
                Link {
                    state: SlotState::new(),
                    run: AtomicPtr::new(std::ptr::null_mut()),
                }
            }; CHUNK],
            next: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    fn next(&self) -> Option<&Chunk> {
        // SAFETY: a non-null `next` was made by `Box::into_raw` and is
        // freed only when the list is dropped, after every user.
        unsafe { self.next.load(Ordering::SeqCst).as_ref() }
    }
}

/// The runs in progress that a handle reaches.
struct Links {
    first: Chunk,
}

impl Links {
    const fn new() -> Self {
        Links {
            first: Chunk::new(),
        }
    }

    /// Links `run` (which must outlive the link) and returns the link to
    /// [`Self::unlink`] later.
    fn link(&self, run: &Inner) -> &Link {
        let mut chunk = &self.first;
        loop {
            for link in &chunk.links {
                if link.state.claim() {
                    link.run
                        .store(std::ptr::from_ref(run).cast_mut(), Ordering::SeqCst);
                    link.state.open();
                    return link;
                }
            }
            chunk = match chunk.next() {
                Some(next) => next,
                None => {
                    let new = Box::into_raw(Box::new(Chunk::new()));
                    match chunk.next.compare_exchange(
                        std::ptr::null_mut(),
                        new,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    ) {
                        // SAFETY: just published; freed with the list.
                        Ok(_) => unsafe { &*new },
                        Err(other) => {
                            // SAFETY: `new` was not published; `other` is
                            // a published chunk.
                            unsafe {
                                drop(Box::from_raw(new));
                                &*other
                            }
                        }
                    }
                }
            };
        }
    }

    fn unlink(link: &Link) {
        link.state.close();
    }

    /// Calls `f` on every linked run; true if there was one.
    fn for_each(&self, mut f: impl FnMut(&Inner)) -> bool {
        let mut any = false;
        let mut chunk = Some(&self.first);
        while let Some(c) = chunk {
            for link in &c.links {
                if link.state.enter() {
                    // SAFETY: a linked run outlives its link, which cannot
                    // be emptied while we are inside.
                    if let Some(run) = unsafe { link.run.load(Ordering::SeqCst).as_ref() } {
                        f(run);
                        any = true;
                    }
                    link.state.leave();
                }
            }
            chunk = c.next();
        }
        any
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        let mut next = self.first.next.swap(std::ptr::null_mut(), Ordering::SeqCst);
        while !next.is_null() {
            // SAFETY: made by Box::into_raw in `link`; nobody else holds
            // the list while it is dropped.
            let chunk = unsafe { Box::from_raw(next) };
            next = chunk.next.swap(std::ptr::null_mut(), Ordering::SeqCst);
        }
    }
}

struct Inner {
    reason: AtomicI32,
    /// The run in progress, for a sandbox's own handle.
    target: Target,
    /// The sandboxes' own handles of the runs in progress this handle
    /// stops.
    runs: Links,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            reason: AtomicI32::new(NO_STOP),
            target: Target::new(),
            runs: Links::new(),
        }
    }
}

impl Inner {
    /// Records `reason` (the first one wins) and signals the run.
    fn stop(&self, reason: StopReason) {
        let _ = self.reason.compare_exchange(
            NO_STOP,
            reason.encode(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.target.kick();
    }
}

/// A handle that stops runs from any thread, or from a signal handler.
/// Cloning it is cheap; every clone is the same handle.
///
/// A handle stops every run in progress of the sandboxes it was given to
/// (or taken from): sharing one among sandboxes means "stop all of them".
/// With no run in progress, a stop is pending and ends the next run of any
/// of them as soon as it starts. A timeout is never sent through it: it
/// stops its own sandbox's run only.
#[derive(Clone, Default)]
pub struct StopHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("pending", &self.pending())
            .finish()
    }
}

impl StopHandle {
    /// A handle with no stop pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops every run in progress of this handle's sandboxes, or the next
    /// run to start if none is in progress. The first reason given wins.
    ///
    /// Async-signal-safe: it takes no lock and allocates nothing (atomics,
    /// `tgkill` and a futex wake), so a signal handler may call it.
    pub fn stop(&self, reason: StopReason) {
        let inner = &self.inner;
        let _ = inner.reason.compare_exchange(
            NO_STOP,
            reason.encode(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        inner.target.kick();
        let reached = inner.runs.for_each(|run| run.stop(reason));
        if reached {
            // Used up by the runs it reached; a run that starts from now on
            // is not stopped by it.
            inner.reason.store(NO_STOP, Ordering::SeqCst);
        }
        wake_rekicker();
    }

    /// The stop that is pending, if any.
    pub fn pending(&self) -> Option<StopReason> {
        StopReason::decode(self.inner.reason.load(Ordering::SeqCst))
    }

    /// Takes the pending stop, so that the next run starts clean.
    pub(crate) fn take(&self) -> Option<StopReason> {
        StopReason::decode(self.inner.reason.swap(NO_STOP, Ordering::SeqCst))
    }

    /// Registers the calling thread as the vCPU thread until the guard is
    /// dropped, with the stop signal unblocked on it whatever mask it
    /// inherited. `immediate_exit` must point at the vCPU's
    /// `kvm_run.immediate_exit` and stay valid while the guard lives.
    pub(crate) fn attach(&self, immediate_exit: *mut u8) -> RunGuard<'_> {
        let reblock = unblock_kick();
        let target = &self.inner.target;
        // A sandbox runs one run at a time: its own handle's slot is free.
        let claimed = target.state.claim();
        if claimed {
            // SAFETY: getpid and gettid have no preconditions.
            let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
            target.pid.store(pid, Ordering::SeqCst);
            target.tid.store(tid, Ordering::SeqCst);
            target
                .immediate_exit
                .store(immediate_exit, Ordering::SeqCst);
            target.state.open();
            if self.pending().is_some() {
                target.kick();
            }
        }
        RunGuard {
            handle: self,
            reblock,
            claimed,
        }
    }
}

/// Unregisters the vCPU thread when a run ends, and puts back the mask it
/// had.
pub(crate) struct RunGuard<'a> {
    handle: &'a StopHandle,
    /// The stop signal was blocked before the run.
    reblock: bool,
    claimed: bool,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if self.claimed {
            self.handle.inner.target.state.close();
        }
        if self.reblock {
            set_kick_blocked(libc::SIG_BLOCK);
        }
    }
}

/// Every run in progress in the process, for the `kvmini-stop` thread.
static RUNNING: Links = Links::new();

/// A run in progress, linked to the handle the embedding program stops it
/// with: made by [`begin_run`] on the caller's thread, before the run, and
/// unlinked when dropped (a run that panicked included).
pub(crate) struct Run<'a> {
    shared: &'a StopHandle,
    own: &'a StopHandle,
    links: Option<(&'a Link, &'static Link)>,
}

/// Prepares a run of the sandbox whose own handle is `own` and that
/// `shared` stops: the stop signal is kvmini's (or the run is refused),
/// the thread that sends stops again runs, and `shared` reaches the run
/// (a stop pending on it moves to the run). Called on the caller's thread,
/// which may start threads.
pub(crate) fn begin_run<'a>(
    shared: &'a StopHandle,
    own: &'a StopHandle,
) -> Result<Run<'a>, StopError> {
    claim_signal()?;
    start_rekicker()?;
    let running = RUNNING.link(&own.inner);
    let linked = shared.inner.runs.link(&own.inner);
    // Linked first, then checked: a concurrent stop either finds the link
    // or leaves its reason for this check.
    if let Some(reason) = shared.take() {
        own.inner.stop(reason);
    }
    Ok(Run {
        shared,
        own,
        links: Some((linked, running)),
    })
}

impl Run<'_> {
    fn unlink(&mut self) {
        if let Some((linked, running)) = self.links.take() {
            Links::unlink(linked);
            Links::unlink(running);
        }
    }

    /// Ends the run: `shared` no longer reaches it, and the sandbox's own
    /// handle starts the next run clean. `stopped` says whether the run
    /// ended by its stop (or failed after one); a stop that came while it
    /// ended some other way is pending again on `shared`, for the next
    /// run; a timeout never outlives its run.
    pub(crate) fn end(mut self, stopped: bool) {
        self.unlink();
        if let Some(StopReason::Signal(sig)) = self.own.take() {
            if !stopped {
                let _ = self.shared.inner.reason.compare_exchange(
                    NO_STOP,
                    sig,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
        }
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        self.unlink();
        self.own.take();
    }
}

/// How often a stop is sent again until the run ends. It bounds how long
/// a stop that landed just before a blocking call takes to end it.
const REKICK_INTERVAL: Duration = Duration::from_millis(20);

/// Bumped by every stop, to wake the `kvmini-stop` thread (a futex word).
static WAKE: AtomicU32 = AtomicU32::new(0);
/// The process that started the `kvmini-stop` thread (a child made by
/// fork has the flag but not the thread).
static REKICKER_PID: AtomicI32 = AtomicI32::new(0);

fn wake_rekicker() {
    WAKE.fetch_add(1, Ordering::SeqCst);
    // SAFETY: FUTEX_WAKE on a static word; no other memory is touched.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            WAKE.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        )
    };
}

/// Starts the thread that sends every stop again every
/// [`REKICK_INTERVAL`] until its run ends, once per process.
fn start_rekicker() -> Result<(), StopError> {
    static STARTING: Mutex<()> = Mutex::new(());
    // SAFETY: getpid has no preconditions.
    let here = unsafe { libc::getpid() };
    if REKICKER_PID.load(Ordering::SeqCst) == here {
        return Ok(());
    }
    let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
    if REKICKER_PID.load(Ordering::SeqCst) == here {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("kvmini-stop".into())
        .spawn(rekick)
        .map_err(StopError::Thread)?;
    REKICKER_PID.store(here, Ordering::SeqCst);
    Ok(())
}

fn rekick() {
    let interval = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::c_long::try_from(REKICK_INTERVAL.as_nanos()).unwrap_or(20_000_000),
    };
    loop {
        let seen = WAKE.load(Ordering::SeqCst);
        let mut stopping = false;
        RUNNING.for_each(|run| stopping |= run.reason.load(Ordering::SeqCst) != NO_STOP);
        // Until the next stop, or one interval while one is pending: a stop
        // has just signalled its runs itself, and a second signal at once
        // would only cut short the call the first one interrupted.
        let timeout = if stopping {
            std::ptr::from_ref(&interval)
        } else {
            std::ptr::null()
        };
        // SAFETY: FUTEX_WAIT on a static word with a valid or null timeout;
        // it returns at once if the word changed since it was read.
        let waited = unsafe {
            libc::syscall(
                libc::SYS_futex,
                WAKE.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                seen,
                timeout,
            )
        };
        let timed_out =
            waited == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT);
        if timed_out {
            RUNNING.for_each(|run| {
                if run.reason.load(Ordering::SeqCst) != NO_STOP {
                    run.target.kick();
                }
            });
        }
    }
}

/// The signal kvmini stops runs with unless the embedding program chose
/// another: a standard signal (never queued, so never refused for a full
/// queue), ignored by default, and rarely used (sockets' out-of-band data).
const DEFAULT_SIGNAL: i32 = libc::SIGURG;

/// The signals [`use_signal`] accepts.
const SUITABLE: [i32; 11] = [
    libc::SIGURG,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGWINCH,
    libc::SIGIO,
    libc::SIGPWR,
    libc::SIGSTKFLT,
    libc::SIGXCPU,
];

const SUITABLE_NAMES: &str = "SIGURG, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGWINCH, \
                              SIGIO, SIGPWR, SIGSTKFLT, SIGXCPU";

/// The chosen signal, 0 for [`DEFAULT_SIGNAL`].
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Whether a run has used the signal (then it is chosen for good).
static CLAIMED: AtomicBool = AtomicBool::new(false);
/// Serializes choosing, installing and checking the handler.
static CLAIMING: Mutex<()> = Mutex::new(());

/// The signal kvmini sends a vCPU thread to stop its run: SIGURG unless
/// [`use_signal`] chose another. kvmini installs its handler (which does
/// nothing) before a sandbox's first run, only while the signal has the
/// default disposition or is ignored; another handler for it makes every
/// run fail with [`StopError::SignalTaken`], and is never replaced.
pub fn signal() -> i32 {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => DEFAULT_SIGNAL,
        sig => sig,
    }
}

/// Chooses the signal kvmini stops runs with, before the first run: one of
/// SIGURG (the default), SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF,
/// SIGWINCH, SIGIO, SIGPWR, SIGSTKFLT or SIGXCPU. Real-time signals are
/// refused: they are queued, and a full queue refuses them.
pub fn use_signal(sig: i32) -> Result<(), StopError> {
    if !SUITABLE.contains(&sig) {
        return Err(StopError::Unsuitable(sig));
    }
    let _claiming = CLAIMING.lock().unwrap_or_else(PoisonError::into_inner);
    if CLAIMED.load(Ordering::SeqCst) && signal() != sig {
        return Err(StopError::InUse(signal()));
    }
    SIGNAL.store(sig, Ordering::SeqCst);
    Ok(())
}

fn on_kick_address() -> libc::sighandler_t {
    on_kick as extern "C" fn(libc::c_int) as libc::sighandler_t
}

/// Installs kvmini's handler for the stop signal if the signal is free
/// (default or ignored), checks it is still there otherwise.
fn claim_signal() -> Result<(), StopError> {
    let _claiming = CLAIMING.lock().unwrap_or_else(PoisonError::into_inner);
    let sig = signal();
    // SAFETY: a null new action only reads the current one into `old`.
    let current = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old);
        old.sa_sigaction
    };
    if current == on_kick_address() {
        CLAIMED.store(true, Ordering::SeqCst);
        return Ok(());
    }
    if current != libc::SIG_DFL && current != libc::SIG_IGN {
        return Err(StopError::SignalTaken(sig));
    }
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
    // the handler is async-signal-safe (it does nothing), and without
    // SA_RESTART an interrupted call returns EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_kick_address();
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut());
    }
    CLAIMED.store(true, Ordering::SeqCst);
    Ok(())
}

extern "C" fn on_kick(_: libc::c_int) {
    // Nothing to do: the signal's only job is to make KVM_RUN (or a host
    // call that waits) return EINTR.
}

/// Blocks or unblocks the stop signal on the calling thread.
fn set_kick_blocked(how: libc::c_int) {
    // SAFETY: plain signal-set manipulation on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal());
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Unblocks the stop signal on the calling thread; true if it was blocked
/// (a mask inherited from the thread that started this one, or from the
/// parent process).
fn unblock_kick() -> bool {
    // SAFETY: plain signal-set manipulation on local sigset_t values.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal());
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, &mut old);
        libc::sigismember(&old, signal()) == 1
    }
}

/// Makes the calling thread one that a stop can reach: kvmini's handler for
/// the stop signal, and the signal unblocked. For threads that wait on
/// behalf of a [`StopHandle`] outside a run (a command line's main thread
/// writing its messages), woken with [`kick_thread`].
pub fn prepare_thread() {
    // A handler the command line finds already installed is reported by
    // the run itself.
    let _ = claim_signal();
    let _ = unblock_kick();
}

/// Sends the stop signal to `thread`, so that a host call it waits in
/// returns EINTR (see [`prepare_thread`]).
///
/// # Safety
///
/// `thread` must be a thread of this process that has not ended and whose
/// ID will not be reused while the call runs: a thread that lives as long
/// as the process, such as its main thread.
pub unsafe fn kick_thread(thread: libc::pthread_t) {
    // SAFETY: the caller passes a live thread of this process.
    unsafe { libc::pthread_kill(thread, signal()) };
}

/// Errors of parsing a duration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: expected a positive number with a unit, e.g. 500ms, 5s, 2m, 1h")]
pub struct DurationError(pub String);

/// Parses `500ms`, `5s`, `2m`, `1h` or `1.5s` (a bare number means seconds).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError(text.to_owned());
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let seconds = value * scale;
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "-1", "0", "0s", "abc", "5x", "1e400", "-5s", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_first_reason_wins_and_take_clears_it() {
        let handle = StopHandle::new();
        assert_eq!(handle.pending(), None);
        handle.stop(StopReason::Signal(libc::SIGINT));
        handle.stop(StopReason::Timeout);
        assert_eq!(handle.take(), Some(StopReason::Signal(libc::SIGINT)));
        assert_eq!(handle.pending(), None);
    }
}
