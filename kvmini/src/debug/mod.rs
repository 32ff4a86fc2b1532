//! A gdb remote stub: gdb connects to a socket ([`Listener`]) and debugs the
//! guest through the GDB Remote Serial Protocol (the `gdbstub` crate):
//! registers, memory at guest virtual addresses through the guest's own
//! page tables, breakpoints, single steps, continue, Ctrl-C, and the stop
//! reasons (a breakpoint, a crash as a signal, the exit with its status).
//!
//! Everything here runs on the caller's thread: the guest runs in short
//! [`Sandbox::run`]s, each ending at a debug stop as a run ends, so the
//! socket is never touched from the confined vCPU thread. While the guest
//! runs, a watcher thread waits for gdb's Ctrl-C (or any other byte, or the
//! socket's close) and stops the run with [`INTERRUPT`].
//!
//! A session that ends early (gdb detaches, disconnects, or sends what the
//! protocol cannot parse: a bad checksum, an overlong packet) takes out
//! gdb's breakpoints and lets the guest run on to its end, within what is
//! left of its time limit. gdb's `kill` ends the guest as if by SIGKILL.
//! docs/kvm-pvm.md ("Debug events") says which stops come from KVM and
//! which from kvmini's own exception handlers on this host.

mod fpu;
mod socket;
mod target;

use std::io;

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};

pub use socket::{Connection, Endpoint, Listener, SocketError};
use target::GuestTarget;

use crate::sandbox::{Ending, Outcome, Sandbox, SandboxError};
use crate::stop::{StopHandle, StopReason};

/// The stop reason of gdb's interrupt: the run stops as if by this signal,
/// which only the watcher sends (kvmini's command line routes SIGINT and
/// SIGTERM only), and with no debug event.
pub const INTERRUPT: i32 = libc::SIGTRAP;

/// The longest packet gdb may send; a longer one ends the session.
const PACKET_BUFFER: usize = 16 * 1024;

/// Errors of a debugging session that stop it (never gdb's mistakes, which
/// get an error answer or end the session).
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    /// The sandbox failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Guest memory a breakpoint was in could not be restored.
    #[error("cannot take out a breakpoint")]
    Memory(#[from] crate::sandbox::InspectError),
    /// The socket failed.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// The thread that watches for gdb's interrupt could not start.
    #[error("cannot start the thread that watches for gdb's interrupt")]
    Watcher(#[source] io::Error),
}

/// How a debugging session ended.
#[derive(Debug)]
pub struct Session {
    /// How the guest ended.
    pub outcome: Outcome,
    /// Why gdb's session ended before the guest did (a detach, a lost
    /// connection, a packet that could not be parsed), if it did: the guest
    /// then ran on to its end without a debugger.
    pub detached: Option<String>,
}

/// Waits for gdb on `listener`, then lets it debug the guest, which stays
/// before its first instruction until gdb resumes it. A stop (SIGINT,
/// SIGTERM, a stop handle) ends the wait and the guest.
pub fn serve(sandbox: &mut Sandbox, listener: &Listener) -> Result<Session, DebugError> {
    let stop = sandbox.stop_handle();
    let connection = match listener.accept(&stop) {
        Ok(connection) => connection,
        // The pending stop ends the run before the guest's first
        // instruction.
        Err(SocketError::Stopped(_)) => {
            return Ok(Session {
                outcome: sandbox.run()?,
                detached: None,
            })
        }
        Err(e) => return Err(e.into()),
    };
    let mut target = GuestTarget::new(sandbox);
    let stub = GdbStub::<GuestTarget<'_>, Connection>::builder(connection)
        .packet_buffer_size(PACKET_BUFFER)
        .build();
    let result = match stub {
        Ok(stub) => stub
            .run_blocking::<EventLoop<'_>>(&mut target)
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let detached = match result {
        Ok(DisconnectReason::TargetExited(_) | DisconnectReason::TargetTerminated(_)) => None,
        Ok(DisconnectReason::Kill) => {
            if target.ended.is_none() {
                let regs = target.sandbox.registers()?;
                target.ended = Some(Outcome {
                    ending: Ending::Stopped(libc::SIGKILL),
                    stats: crate::sandbox::Stats::default(),
                    regs,
                    violation: None,
                });
            }
            None
        }
        Ok(DisconnectReason::Disconnect) => Some("gdb detached".to_owned()),
        Err(e) => Some(e),
    };
    let outcome = match target.ended.take() {
        Some(outcome) => outcome,
        None => {
            target.detach()?;
            target.sandbox.run()?
        }
    };
    Ok(Session { outcome, detached })
}

/// Drives the guest for `gdbstub`'s blocking loop.
struct EventLoop<'s>(std::marker::PhantomData<&'s ()>);

impl<'s> BlockingEventLoop for EventLoop<'s> {
    type Target = GuestTarget<'s>;
    type Connection = Connection;
    type StopReason = SingleThreadStopReason<u64>;

    fn wait_for_stop_reason(
        target: &mut Self::Target,
        conn: &mut Self::Connection,
    ) -> Result<Event<Self::StopReason>, WaitForStopReasonError<DebugError, io::Error>> {
        // A byte gdb sent already (a Ctrl-C typed as the guest resumed).
        if conn
            .has_data()
            .map_err(WaitForStopReasonError::Connection)?
        {
            return conn
                .read()
                .map(Event::IncomingData)
                .map_err(WaitForStopReasonError::Connection);
        }
        let stop = target.sandbox.stop_handle();
        let watcher = Watcher::start(conn.raw_fd(), stop.clone())
            .map_err(|e| WaitForStopReasonError::Target(DebugError::Watcher(e)))?;
        let result = target.run();
        watcher.finish();
        // An interrupt that came as the run ended for another reason is
        // not for the next run: gdb's byte is read below or next time.
        if stop.pending() == Some(StopReason::Signal(INTERRUPT)) {
            stop.take();
        }
        match result.map_err(WaitForStopReasonError::Target)? {
            Some(reason) => Ok(Event::TargetStopped(reason)),
            None => conn
                .read()
                .map(Event::IncomingData)
                .map_err(WaitForStopReasonError::Connection),
        }
    }

    fn on_interrupt(_target: &mut Self::Target) -> Result<Option<Self::StopReason>, DebugError> {
        Ok(Some(SingleThreadStopReason::Signal(Signal::SIGINT)))
    }
}

/// A thread that stops the guest's run when gdb sends anything (or
/// closes the connection) while the guest runs.
struct Watcher {
    cancel: std::os::unix::net::UnixStream,
    thread: std::thread::JoinHandle<()>,
}

impl Watcher {
    fn start(fd: i32, stop: StopHandle) -> io::Result<Self> {
        let (cancel, cancelled) = std::os::unix::net::UnixStream::pair()?;
        let thread = std::thread::Builder::new()
            .name("kvmini-gdb-watch".into())
            .spawn(move || watch(fd, &cancelled, &stop))?;
        Ok(Watcher { cancel, thread })
    }

    fn finish(self) {
        drop(self.cancel);
        let _ = self.thread.join();
    }
}

fn watch(fd: i32, cancelled: &std::os::unix::net::UnixStream, stop: &StopHandle) {
    use std::os::fd::{AsFd, BorrowedFd};
    // SAFETY: the connection that owns `fd` outlives this thread: the
    // watcher is joined before the connection is used again or dropped.
    let conn = unsafe { BorrowedFd::borrow_raw(fd) };
    let cancel = cancelled.as_fd();
    loop {
        let mut fds = [
            rustix::event::PollFd::new(&conn, rustix::event::PollFlags::IN),
            rustix::event::PollFd::new(&cancel, rustix::event::PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {
                let [conn, cancel] = fds;
                if !cancel.revents().is_empty() {
                    return;
                }
                if !conn.revents().is_empty() {
                    stop.stop(StopReason::Signal(INTERRUPT));
                    return;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}
