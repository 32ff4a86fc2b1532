//! The debugger's socket: a Unix socket only its owner can reach (mode
//! 0600, made in a private directory and moved into place, so it is never
//! reachable with other permissions), or a TCP port on a loopback address;
//! and the connection gdb makes to it, whose every wait ends at a stop
//! (SIGINT, SIGTERM, a stop handle, the time limit).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::stop::{StopHandle, StopReason};

/// How long one wait on the socket lasts before the stop handle is looked
/// at again: a stop that came between two looks is seen this much later.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Errors of the debugger's socket.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Something other than a socket is at the path: kvmini does not
    /// replace it.
    #[error("{0} exists and is not a socket; kvmini will not replace it")]
    NotASocket(PathBuf),
    /// The socket could not be made.
    #[error("cannot listen for gdb on {what}")]
    Listen {
        /// The path or address.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A TCP address that is not a loopback address.
    #[error("{0} is not a loopback address; kvmini's gdb port listens on loopback only")]
    NotLoopback(SocketAddr),
    /// Waiting for gdb failed.
    #[error("waiting for gdb failed")]
    Accept(#[source] io::Error),
    /// A stop (SIGINT, SIGTERM, a stop handle) came while kvmini waited
    /// for gdb.
    #[error("stopped while waiting for gdb")]
    Stopped(StopReason),
}

/// Where gdb connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket at this path.
    Unix(PathBuf),
    /// A TCP port on a loopback address.
    Tcp(SocketAddr),
}

impl Endpoint {
    /// `HOST:PORT` when it parses as a socket address, else a path.
    pub fn parse(text: &str) -> Self {
        match text.parse::<SocketAddr>() {
            Ok(addr) => Endpoint::Tcp(addr),
            Err(_) => Endpoint::Unix(PathBuf::from(text)),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// A listening socket; a Unix one is removed when dropped, if it is still
/// the one kvmini made.
#[derive(Debug)]
pub struct Listener {
    kind: ListenerKind,
}

#[derive(Debug)]
enum ListenerKind {
    Unix {
        listener: UnixListener,
        path: PathBuf,
        /// Device and inode of the socket kvmini made.
        identity: (u64, u64),
    },
    Tcp(TcpListener),
}

impl Listener {
    /// Listens at `endpoint`: a Unix socket of mode 0600 (a stale socket
    /// at the path is replaced, anything else refused), or a loopback TCP
    /// port.
    pub fn bind(endpoint: &Endpoint) -> Result<Self, SocketError> {
        let listen = |source| SocketError::Listen {
            what: endpoint.to_string(),
            source,
        };
        match endpoint {
            Endpoint::Tcp(addr) => {
                if !addr.ip().is_loopback() {
                    return Err(SocketError::NotLoopback(*addr));
                }
                let listener = TcpListener::bind(addr).map_err(listen)?;
                Ok(Listener {
                    kind: ListenerKind::Tcp(listener),
                })
            }
            Endpoint::Unix(path) => {
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if !meta.file_type().is_socket() {
                        return Err(SocketError::NotASocket(path.clone()));
                    }
                }
                let (listener, identity) = bind_private(path).map_err(listen)?;
                Ok(Listener {
                    kind: ListenerKind::Unix {
                        listener,
                        path: path.clone(),
                        identity,
                    },
                })
            }
        }
    }

    /// The TCP address it listens on (the port the system chose for port
    /// 0).
    pub fn local_tcp_address(&self) -> Option<SocketAddr> {
        match &self.kind {
            ListenerKind::Tcp(listener) => listener.local_addr().ok(),
            ListenerKind::Unix { .. } => None,
        }
    }

    /// Waits for gdb to connect; a stop on `stop` ends the wait.
    pub fn accept(&self, stop: &StopHandle) -> Result<Connection, SocketError> {
        let fd = match &self.kind {
            ListenerKind::Unix { listener, .. } => listener.as_fd(),
            ListenerKind::Tcp(listener) => listener.as_fd(),
        };
        loop {
            if let Some(reason) = real_stop(stop) {
                return Err(SocketError::Stopped(reason));
            }
            if !readable(fd).map_err(SocketError::Accept)? {
                continue;
            }
            let stream = match &self.kind {
                ListenerKind::Unix { listener, .. } => listener.accept().and_then(|(s, _)| {
                    s.set_write_timeout(Some(POLL_INTERVAL))?;
                    Ok(Stream::Unix(s))
                }),
                ListenerKind::Tcp(listener) => listener.accept().and_then(|(s, _)| {
                    // Packets are small and answered one at a time.
                    s.set_nodelay(true)?;
                    s.set_write_timeout(Some(POLL_INTERVAL))?;
                    Ok(Stream::Tcp(s))
                }),
            };
            match stream {
                Ok(stream) => {
                    return Ok(Connection {
                        stream,
                        stop: stop.clone(),
                        buffer: Vec::new(),
                        at: 0,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SocketError::Accept(e)),
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let ListenerKind::Unix { path, identity, .. } = &self.kind {
            // Only the socket kvmini made: whatever replaced it stays.
            let same = std::fs::symlink_metadata(path)
                .is_ok_and(|meta| (meta.dev(), meta.ino()) == *identity);
            if same {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Binds a Unix socket in a new directory only the user can enter, sets
/// its mode to 0600 there and moves it to `path`: no one else can reach it
/// at any moment, whatever the umask.
fn bind_private(path: &Path) -> io::Result<(UnixListener, (u64, u64))> {
    let parent = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut suffix = [0u8; 8];
    rustix::rand::getrandom(&mut suffix, rustix::rand::GetRandomFlags::empty())?;
    let private = parent.join(format!(".kvmini-gdb-{:016x}", u64::from_ne_bytes(suffix)));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", private.display())))?;
    let staged = private.join("socket");
    let result = (|| {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        let meta = std::fs::symlink_metadata(&staged)?;
        std::fs::rename(&staged, path)?;
        Ok((listener, (meta.dev(), meta.ino())))
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    result
}

use std::os::unix::fs::DirBuilderExt;

/// A stop that ends kvmini's waits: a signal or the time limit, not the
/// interrupt the debugger itself sent ([`super::INTERRUPT`]), which only
/// stops the guest.
fn real_stop(stop: &StopHandle) -> Option<StopReason> {
    stop.pending()
        .filter(|reason| *reason != StopReason::Signal(super::INTERRUPT))
}

/// Waits up to [`POLL_INTERVAL`] for `fd` to be readable (or closed).
fn readable(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(u32::try_from(POLL_INTERVAL.as_nanos()).unwrap_or(u32::MAX)),
    };
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug)]
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

/// gdb's connection: reads wait for a byte until one comes, the peer
/// closes, or a stop is pending.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    stop: StopHandle,
    buffer: Vec<u8>,
    at: usize,
}

impl Connection {
    /// The socket's descriptor, for a thread that watches it while the
    /// guest runs.
    pub(super) fn raw_fd(&self) -> i32 {
        self.stream.fd().as_raw_fd()
    }

    /// Whether a byte is buffered or readable now, without waiting.
    pub(super) fn has_data(&mut self) -> io::Result<bool> {
        if self.at < self.buffer.len() {
            return Ok(true);
        }
        let fd = self.stream.fd();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        Ok(rustix::event::poll(&mut fds, Some(&zero)).map_err(io::Error::from)? > 0)
    }

    fn fill(&mut self, wait: bool) -> io::Result<bool> {
        loop {
            if self.at < self.buffer.len() {
                return Ok(true);
            }
            if let Some(reason) = real_stop(&self.stop) {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    format!("stopped ({reason:?})"),
                ));
            }
            if !readable(self.stream.fd())? {
                if wait {
                    continue;
                }
                return Ok(false);
            }
            self.buffer.resize(4096, 0);
            let n = match &mut self.stream {
                Stream::Unix(s) => s.read(&mut self.buffer),
                Stream::Tcp(s) => s.read(&mut self.buffer),
            };
            match n {
                Ok(0) => {
                    self.buffer.clear();
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => {
                    self.buffer.truncate(n);
                    self.at = 0;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buffer.clear(),
                Err(e) => {
                    self.buffer.clear();
                    return Err(e);
                }
            }
        }
    }

    /// Writes all of `bytes`, each wait for a client that does not read
    /// bounded by the socket's write timeout, so that a stop ends it.
    fn write_bytes(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if let Some(reason) = real_stop(&self.stop) {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    format!("stopped ({reason:?})"),
                ));
            }
            let written = match &mut self.stream {
                Stream::Unix(s) => s.write(bytes),
                Stream::Tcp(s) => s.write(bytes),
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl gdbstub::conn::Connection for Connection {
    type Error = io::Error;

    fn write(&mut self, byte: u8) -> io::Result<()> {
        self.write_bytes(&[byte])
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_bytes(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl gdbstub::conn::ConnectionExt for Connection {
    fn read(&mut self) -> io::Result<u8> {
        self.fill(true)?;
        let byte = self.buffer.get(self.at).copied().unwrap_or_default();
        self.at += 1;
        Ok(byte)
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        if !self.fill(false)? {
            return Ok(None);
        }
        Ok(self.buffer.get(self.at).copied())
    }
}
