//! The lock-free slots through which a stop reaches the runs of a handle:
//! filled and emptied by their owner while other threads, signal handlers
//! included, use them.

use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, Ordering};

use super::kick::signal;
use super::Inner;

/// The state of a slot that its owner fills and empties while other
/// threads, signal handlers included, use it: whether it is open to users,
/// whether it is owned, and how many users are inside. Users never wait;
/// the owner waits for those inside before it empties the slot.
pub(super) struct SlotState(AtomicU32);

pub(super) const OPEN: u32 = 1 << 31;
pub(super) const OWNED: u32 = 1 << 30;
pub(super) const USERS: u32 = OWNED - 1;

impl SlotState {
    pub(super) const fn new() -> Self {
        SlotState(AtomicU32::new(0))
    }

    /// Takes a free slot; the caller fills it, then [`Self::open`]s it.
    pub(super) fn claim(&self) -> bool {
        self.0
            .compare_exchange(0, OWNED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    pub(super) fn open(&self) {
        self.0.fetch_or(OPEN, Ordering::SeqCst);
    }

    /// Enters an open slot; false if it is not open.
    pub(super) fn enter(&self) -> bool {
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

    pub(super) fn leave(&self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }

    /// Closes the slot to new users, waits until those inside have left
    /// (each is a few instructions and a system call that does not block),
    /// and frees it.
    pub(super) fn close(&self) {
        self.0.fetch_and(!OPEN, Ordering::SeqCst);
        while self.0.load(Ordering::SeqCst) & USERS != 0 {
            std::thread::yield_now();
        }
        self.0.store(0, Ordering::SeqCst);
    }
}

/// The vCPU thread of a run in progress.
pub(super) struct Target {
    pub(super) state: SlotState,
    pub(super) pid: AtomicI32,
    pub(super) tid: AtomicI32,
    pub(super) immediate_exit: AtomicPtr<u8>,
}

impl Target {
    pub(super) const fn new() -> Self {
        Target {
            state: SlotState::new(),
            pid: AtomicI32::new(0),
            tid: AtomicI32::new(0),
            immediate_exit: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Sets `immediate_exit` and signals the thread, if a run is in
    /// progress. Async-signal-safe: atomics and two system calls.
    pub(super) fn kick(&self) {
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
pub(super) struct Link {
    pub(super) state: SlotState,
    run: AtomicPtr<Inner>,
}

/// Links in chunks that are added but never removed while their list
/// lives, so that a signal handler can walk them without a lock.
pub(super) struct Chunk {
    links: [Link; CHUNK],
    next: AtomicPtr<Chunk>,
}

pub(super) const CHUNK: usize = 8;

impl Chunk {
    pub(super) const fn new() -> Self {
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

    pub(super) fn next(&self) -> Option<&Chunk> {
        // SAFETY: a non-null `next` was made by `Box::into_raw` and is
        // freed only when the list is dropped, after every user.
        unsafe { self.next.load(Ordering::SeqCst).as_ref() }
    }
}

/// The runs in progress that a handle reaches.
pub(super) struct Links {
    first: Chunk,
}

impl Links {
    pub(super) const fn new() -> Self {
        Links {
            first: Chunk::new(),
        }
    }

    /// Links `run` (which must outlive the link) and returns the link to
    /// [`Self::unlink`] later.
    pub(super) fn link(&self, run: &Inner) -> &Link {
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

    pub(super) fn unlink(link: &Link) {
        link.state.close();
    }

    /// Calls `f` on every linked run; true if there was one.
    pub(super) fn for_each(&self, mut f: impl FnMut(&Inner)) -> bool {
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
