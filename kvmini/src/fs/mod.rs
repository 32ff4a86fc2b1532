//! The filesystem hypercalls: a guest's descriptor table, and each call
//! carried out with ordinary host system calls beneath the granted
//! directories, with Linux's results and errno values.
//!
//! Buffers move between files and guest memory without an intermediate
//! copy (`readv`/`writev` over the guest-physical pieces of the buffer). A
//! bad guest pointer is EFAULT for the guest, never a host access outside
//! guest memory.

use std::ffi::CString;
use std::mem::offset_of;
use std::os::fd::{AsFd, OwnedFd};

use kvmini_abi::fs::{
    FdArgs, IoArgs, OpenArgs, PathArgs, RenameArgs, SeekArgs, Stat, StatArgs, TruncateArgs,
    O_ACCMODE, O_CREAT, O_EXCL, O_NOFOLLOW, O_RDONLY, O_SUPPORTED, O_TRUNC, O_WRONLY, PATH_MAX,
    SEEK_CUR, SEEK_END, SEEK_SET,
};
use kvmini_abi::Port;
use rustix::fs::{Mode, OFlags, ResolveFlags, SeekFrom};
use zerocopy::IntoBytes;

use crate::addr::Gva;
use crate::block::{self, Unusable};
use crate::errno::Errno;
use crate::grant::{Grants, Location};
use crate::memory::{self, IovecBuf, Transfer};
use crate::output::{GuestStream, Input, StreamError};
use crate::stop::StopHandle;
use crate::view::{GuestView, ViewError};

mod attributes;
mod directories;
mod linux;
mod null_device;
mod pipe;
mod proc_maps;
mod scratch;
mod stat;
mod statx;
mod synthetic;

pub(crate) use attributes::Target;
pub(crate) use linux::{host_poll, O_CLOEXEC};
pub(crate) use pipe::{PipeIo, O_NONBLOCK, PIPE_SIZE};
use scratch::{copy_out, prepare_read};

/// The directory descriptor that names the working directory.
pub(crate) const AT_FDCWD: i32 = -100;

/// Most bytes one `getdents64` call, or one read of a stdin reader, takes.
const GETDENTS_MAX: usize = 1 << 20;

/// What a guest descriptor refers to (a duplicate shares its open file).
#[derive(Clone, Debug)]
enum Descriptor {
    /// The guest's stdin (what it reads is [`Filesystem`]'s `stdin`).
    Stdin,
    /// The guest's stdout (kvmini's, or a capture).
    Stdout,
    /// The guest's stderr.
    Stderr,
    /// A file or directory under a grant, with the guest path it was
    /// opened by (absolute, lexically normalized): where paths relative to
    /// it start; and whether the grant that decided (by identity) when it
    /// was opened is read-only, which the calls that change its attributes
    /// through the descriptor keep to.
    File(std::sync::Arc<OwnedFd>, Vec<u8>, bool),
    /// `/dev/null` ([`null_device`]), with the access mode it was opened
    /// with.
    Null(u32),
    /// A directory above the grants ([`synthetic`]): its guest path and
    /// the index of the next entry `getdents64` gives.
    Synthetic(Vec<u8>, std::sync::Arc<std::sync::atomic::AtomicUsize>),
    /// An end of pipe `.0` of the table's pipes: the write end when `.1`.
    Pipe(usize, bool),
    /// `/proc/self/maps` ([`proc_maps`]), opened.
    ProcMaps(proc_maps::OpenMaps),
}

/// Where descriptor 0 reads from.
enum StdinSource {
    /// kvmini's stdin, read straight into guest memory.
    Inherit(std::io::Stdin),
    /// End of file.
    Null,
    /// A reader of the embedding program, copied through a buffer.
    Reader(Box<dyn std::io::Read + Send>),
}

impl std::fmt::Debug for StdinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StdinSource::Inherit(_) => "Inherit",
            StdinSource::Null => "Null",
            StdinSource::Reader(_) => "Reader",
        })
    }
}

/// The result of one filesystem call, before it is written back.
type CallResult = Result<i64, Errno>;

/// Where the guest's descriptors 1 and 2 write.
pub struct StdioSinks<'a> {
    /// Descriptor 1.
    pub stdout: &'a mut GuestStream,
    /// Descriptor 2.
    pub stderr: &'a mut GuestStream,
    /// The run's stop handle: a write that waits gives up once it stops.
    pub stop: &'a StopHandle,
}

/// One guest's filesystem: its grants and its descriptor table.
#[derive(Debug)]
pub struct Filesystem {
    grants: Grants,
    /// Where descriptor 0 reads from; kept here, not in the table, so that
    /// a guest closing 0 does not lose it for the next run.
    stdin: StdinSource,
    fds: Vec<Option<Descriptor>>,
    /// Each descriptor's flags for Linux programs' `fcntl`: the access
    /// mode and status flags it was opened with, and `O_CLOEXEC` for
    /// `FD_CLOEXEC` (by descriptor number; recorded, never applied to
    /// kvmini's own descriptors).
    fd_flags: Vec<u32>,
    max_fds: usize,
    pieces: Vec<(u64, u64)>,
    iovecs: IovecBuf,
    scratch: Vec<u8>,
    path: Vec<u8>,
    path2: Vec<u8>,
    /// The working directory (absolute, normalized): relative paths start
    /// there. `/` for SDK guests, which cannot change it.
    cwd: Vec<u8>,
    /// The working directory a run starts in.
    start_cwd: Vec<u8>,
    /// The pipes of [`pipe`], by the index their ends' descriptors hold.
    pipes: Vec<Option<pipe::Pipe>>,
}

impl Filesystem {
    /// A filesystem over `grants` with descriptors 0 (reading `stdin`), 1
    /// and 2 open and at most `max_fds` descriptors in all.
    pub fn new(grants: Grants, max_fds: u32, stdin: Input) -> Self {
        let stdin = match stdin {
            Input::Inherit => StdinSource::Inherit(std::io::stdin()),
            Input::Null => StdinSource::Null,
            Input::Reader(reader) => StdinSource::Reader(reader),
        };
        let max_fds = usize::try_from(max_fds).unwrap_or(usize::MAX).max(3);
        Filesystem {
            grants,
            stdin,
            fds: Self::stdio(),
            fd_flags: linux::STDIO_FLAGS.to_vec(),
            max_fds,
            pieces: Vec::new(),
            iovecs: IovecBuf::default(),
            scratch: Vec::new(),
            path: Vec::new(),
            path2: Vec::new(),
            cwd: b"/".to_vec(),
            start_cwd: b"/".to_vec(),
            pipes: Vec::new(),
        }
    }

    /// A table with only 0, 1 and 2 open.
    fn stdio() -> Vec<Option<Descriptor>> {
        vec![
            Some(Descriptor::Stdin),
            Some(Descriptor::Stdout),
            Some(Descriptor::Stderr),
        ]
    }

    /// Closes every descriptor the guest opened and reopens 0, 1 and 2: the
    /// table a new run starts with.
    pub fn reset(&mut self) {
        self.fds = Self::stdio();
        self.fd_flags = linux::STDIO_FLAGS.to_vec();
        self.cwd.clone_from(&self.start_cwd);
        self.pipes.clear();
    }

    /// Number of open guest descriptors.
    pub fn open_count(&self) -> usize {
        self.fds.iter().filter(|d| d.is_some()).count()
    }

    /// Serves the filesystem call on `port` whose argument block is at
    /// guest virtual `address` ([`crate::block`]): its result, also written
    /// in the block.
    pub fn call(
        &mut self,
        port: Port,
        address: u64,
        view: &GuestView<'_>,
        stdio: &mut StdioSinks<'_>,
    ) -> Result<i64, Unusable> {
        macro_rules! serve {
            ($ty:ty, $handler:expr) => {
                block::serve::<$ty>(
                    view,
                    address,
                    offset_of!($ty, result),
                    |args| match $handler(self, args) {
                        Ok(value) => value,
                        Err(errno) => errno.negated(),
                    },
                )
            };
        }
        match port {
            Port::Open => serve!(OpenArgs, |fs: &mut Self, a: &OpenArgs| fs
                .open(view, a, AT_FDCWD)),
            Port::Close => serve!(FdArgs, |fs: &mut Self, a: &FdArgs| fs.close(a.fd)),
            Port::Read | Port::Pread => serve!(IoArgs, |fs: &mut Self, a: &IoArgs| {
                fs.read(view, a, port == Port::Pread)
            }),
            Port::Write | Port::Pwrite => serve!(IoArgs, |fs: &mut Self, a: &IoArgs| {
                fs.write(view, a, port == Port::Pwrite, stdio)
            }),
            Port::Lseek => serve!(SeekArgs, |fs: &mut Self, a: &SeekArgs| fs.lseek(a)),
            Port::Fstat | Port::Stat => serve!(StatArgs, |fs: &mut Self, a: &StatArgs| {
                fs.stat(view, a, (port == Port::Stat).then_some(AT_FDCWD))
            }),
            Port::Fsync => serve!(FdArgs, |fs: &mut Self, a: &FdArgs| fs.fsync(a.fd)),
            Port::Ftruncate => serve!(TruncateArgs, |fs: &mut Self, a: &TruncateArgs| {
                fs.ftruncate(a)
            }),
            Port::Unlink | Port::Rmdir | Port::Mkdir => {
                serve!(PathArgs, |fs: &mut Self, a: &PathArgs| fs
                    .path_call(view, port, a, AT_FDCWD))
            }
            Port::Rename => serve!(RenameArgs, |fs: &mut Self, a: &RenameArgs| fs.rename(
                view,
                a,
                (AT_FDCWD, AT_FDCWD)
            )),
            Port::Getdents => serve!(IoArgs, |fs: &mut Self, a: &IoArgs| fs.getdents(view, a)),
            _ => Ok(Errno::EINVAL.negated()),
        }
    }

    /// Reads a guest path into `buf` (without its NUL); a relative one is
    /// put after `base`, the directory it starts from.
    fn read_path(
        view: &GuestView<'_>,
        gva: u64,
        base: Result<&[u8], Errno>,
        buf: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        buf.clear();
        match view.read_c_string(Gva::new(gva), PATH_MAX, buf) {
            Ok(()) => {}
            Err(ViewError::Unterminated { .. }) => return Err(Errno::ENAMETOOLONG),
            Err(_) => return Err(Errno::EFAULT),
        }
        linux::join_base(base, buf)
    }

    fn descriptor(&self, fd: i32) -> Result<&Descriptor, Errno> {
        lookup(&self.fds, fd)
    }

    /// The lowest free descriptor number, as POSIX requires, or EMFILE.
    fn lowest_free(&self) -> Result<usize, Errno> {
        let free = self
            .fds
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.fds.len());
        if free >= self.max_fds {
            Err(Errno::EMFILE)
        } else {
            Ok(free)
        }
    }

    fn install(&mut self, slot: usize, descriptor: Descriptor) -> i64 {
        if slot >= self.fds.len() {
            self.fds.resize_with(slot + 1, || None);
        }
        self.fds[slot] = Some(descriptor);
        self.drop_unused_pipes();
        i64::try_from(slot).unwrap_or(i64::MAX)
    }

    fn open(&mut self, view: &GuestView<'_>, args: &OpenArgs, dirfd: i32) -> CallResult {
        let mut path = std::mem::take(&mut self.path);
        let result = self.open_path(view, args, dirfd, &mut path);
        self.path = path;
        result
    }

    fn open_path(
        &mut self,
        view: &GuestView<'_>,
        args: &OpenArgs,
        dirfd: i32,
        path: &mut Vec<u8>,
    ) -> CallResult {
        let base = linux::base(&self.fds, &self.cwd, dirfd);
        Self::read_path(view, args.path, base, path)?;
        if args.flags & !O_SUPPORTED != 0 || args.flags & O_ACCMODE == O_ACCMODE {
            return Err(Errno::EINVAL);
        }
        let slot = self.lowest_free()?;
        if null_device::names(path)? {
            return self.open_null_device(args.flags, slot);
        }
        if let Some(fd) = self.open_synthetic(path, args.flags, slot)? {
            return Ok(fd);
        }
        let resolved = self.grants.resolve(path)?;
        // A path that must be a directory cannot be created as a file.
        if resolved.trailing.is_dir() && args.flags & O_CREAT != 0 {
            return Err(Errno::EISDIR);
        }
        let writes = args.flags & O_ACCMODE != O_RDONLY || args.flags & O_TRUNC != 0;
        let creates = args.flags & O_CREAT != 0;
        let flags = OFlags::from_bits_retain(args.flags);
        // Linux ignores the mode without O_CREAT; openat2 refuses one, so it
        // is dropped here. A guest never makes a set-user-ID or set-group-ID
        // file, as on a `nosuid` mount.
        let mode = if creates {
            Mode::from_bits_truncate(args.mode & CREATE_MODE_MASK)
        } else {
            Mode::empty()
        };
        // When grants nest, the grant that decides is the innermost one
        // holding the directory the file lives in, found by identity; the
        // file is then opened in that directory, by that one name.
        let mut entry = None;
        let mut grant = resolved.grant;
        if (writes || creates) && self.grants.nested() {
            // O_CREAT | O_EXCL never follows a symlink: EEXIST, as on Linux.
            let follow = args.flags & O_NOFOLLOW == 0 && !(creates && args.flags & O_EXCL != 0);
            match resolved.location(follow) {
                Ok(Location::Entry { dir, name }) => {
                    grant = self.grants.deciding(dir.as_fd(), resolved.grant)?;
                    entry = Some((dir, name));
                }
                Ok(Location::Directory(dir)) => {
                    grant = self.grants.deciding(dir.as_fd(), resolved.grant)?;
                }
                // Nothing is opened by a path whose directory was not
                // checked: its error, or EROFS first as without nesting.
                Err(e) if !resolved.grant.read_only() => return Err(e),
                Err(_) => {}
            }
        }
        let open = |flags: OFlags, mode: Mode| match &entry {
            Some((dir, name)) => open_entry(dir, name, flags | OFlags::NOFOLLOW, mode),
            None => resolved.open(flags, mode),
        };
        let file = if grant.read_only() {
            if writes {
                return Err(Errno::EROFS);
            }
            // O_CREAT on a read-only grant opens an existing file (EEXIST
            // with O_EXCL, as a read-only mount gives) and refuses only to
            // create one.
            match open(flags & !OFlags::CREATE & !OFlags::EXCL, Mode::empty()) {
                Err(Errno::ENOENT) if creates => return Err(Errno::EROFS),
                Ok(_) if creates && args.flags & O_EXCL != 0 => return Err(Errno::EEXIST),
                other => other?,
            }
        } else {
            open(flags, mode)?
        };
        // A file opened for reading through nested grants was found by its
        // path; what may change it later (through the descriptor) is
        // decided now, by identity.
        let read_only = if grant.read_only() || !self.grants.nested() || writes || creates {
            grant.read_only()
        } else {
            let follow = args.flags & O_NOFOLLOW == 0;
            attributes::decided_read_only(&self.grants, &resolved, follow)
        };
        Ok(self.install(
            slot,
            Descriptor::File(std::sync::Arc::new(file), linux::lexical(path), read_only),
        ))
    }

    fn close(&mut self, fd: i32) -> CallResult {
        self.descriptor(fd)?;
        let slot = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        self.fds[slot] = None;
        while matches!(self.fds.last(), Some(None)) && self.fds.len() > 3 {
            self.fds.pop();
        }
        self.drop_unused_pipes();
        Ok(0)
    }

    fn offset(args: &IoArgs, positioned: bool) -> Result<Option<u64>, Errno> {
        if positioned {
            u64::try_from(args.offset)
                .map(Some)
                .map_err(|_| Errno::EINVAL)
        } else {
            Ok(None)
        }
    }

    fn read(&mut self, view: &GuestView<'_>, args: &IoArgs, positioned: bool) -> CallResult {
        if !positioned
            && matches!(lookup(&self.fds, args.fd), Ok(Descriptor::Stdin))
            && matches!(self.stdin, StdinSource::Reader(_))
        {
            return self.read_from_reader(view, args);
        }
        let file = match (lookup(&self.fds, args.fd)?, &self.stdin) {
            (Descriptor::File(file, ..), _) => file.as_fd(),
            (Descriptor::ProcMaps(open), _) => {
                let open = open.clone();
                return self.read_maps(view, &open, args, positioned);
            }
            (Descriptor::Stdin, _) if positioned => return Err(Errno::ESPIPE),
            (Descriptor::Stdin, StdinSource::Inherit(stdin)) => stdin.as_fd(),
            (Descriptor::Null(mode), _) if *mode == O_WRONLY => return Err(Errno::EBADF),
            (Descriptor::Stdin | Descriptor::Null(_), _) => return Ok(0),
            (Descriptor::Stdout | Descriptor::Stderr, _) => return Err(Errno::EBADF),
            (Descriptor::Synthetic(..), _) => return Err(Errno::EISDIR),
            (Descriptor::Pipe(..), _) => return self.pipe_port_io(view, args, positioned, false),
        };
        let offset = Self::offset(args, positioned)?;
        view.pieces(Gva::new(args.buf), args.len, true, &mut self.pieces)
            .map_err(|_| Errno::EFAULT)?;
        let n = memory::transfer(
            view.memory(),
            file,
            &self.pieces,
            offset,
            Transfer::ToGuest,
            &mut self.iovecs,
        )
        .map_err(|e| Errno::of_io(&e, Errno::EFAULT))?;
        i64::try_from(n).map_err(|_| Errno::EINVAL)
    }

    /// `read` on descriptor 0 when it is a reader: one `read` of the
    /// reader (like a pipe, it may return less than asked), copied into the
    /// guest buffer.
    fn read_from_reader(&mut self, view: &GuestView<'_>, args: &IoArgs) -> CallResult {
        prepare_read(view, args, &mut self.pieces, &mut self.scratch)?;
        let StdinSource::Reader(reader) = &mut self.stdin else {
            return Err(Errno::EBADF);
        };
        let n = match reader.read(&mut self.scratch) {
            Ok(n) => n,
            // Interrupted by kvmini's stop signal (or any other): the guest
            // gets EINTR, as from a pipe, and the stop takes effect.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Err(Errno::EINTR),
            Err(e) => return Err(Errno::of_io(&e, Errno::EIO)),
        };
        copy_out(view, args, &self.scratch[..n])
    }

    fn write(
        &mut self,
        view: &GuestView<'_>,
        args: &IoArgs,
        positioned: bool,
        stdio: &mut StdioSinks<'_>,
    ) -> CallResult {
        let offset = Self::offset(args, positioned)?;
        view.pieces(Gva::new(args.buf), args.len, false, &mut self.pieces)
            .map_err(|_| Errno::EFAULT)?;
        let sink: &mut GuestStream = match lookup(&self.fds, args.fd)? {
            Descriptor::Stdout if !positioned => stdio.stdout,
            Descriptor::Stderr if !positioned => stdio.stderr,
            Descriptor::Stdin => return Err(Errno::EBADF),
            Descriptor::Stdout | Descriptor::Stderr => return Err(Errno::ESPIPE),
            Descriptor::Null(O_RDONLY) | Descriptor::Synthetic(..) | Descriptor::ProcMaps(_) => {
                return Err(Errno::EBADF)
            }
            Descriptor::Null(_) => return i64::try_from(args.len).map_err(|_| Errno::EINVAL),
            Descriptor::Pipe(..) => return self.pipe_port_io(view, args, positioned, true),
            Descriptor::File(file, ..) => {
                let n = memory::transfer(
                    view.memory(),
                    file.as_fd(),
                    &self.pieces,
                    offset,
                    Transfer::FromGuest,
                    &mut self.iovecs,
                )
                .map_err(|e| Errno::of_io(&e, Errno::EFAULT))?;
                return i64::try_from(n).map_err(|_| Errno::EINVAL);
            }
        };
        // The guest's stdout and stderr are writers (kvmini's own, or a
        // capture): each piece is written to it straight from guest memory,
        // and then out of any line buffer, so that the guest learns at once
        // that its reader went away, as from write(2). Once some pieces
        // are written, a failure is a short count.
        let stop = stdio.stop;
        let mut total = 0u64;
        let mut written = Ok(());
        for &(gpa, len) in &self.pieces {
            written = memory::with_bytes(view.memory(), gpa, len, |bytes| sink.write(bytes, stop))
                .map_err(|_| Errno::EFAULT)?;
            if written.is_err() {
                break;
            }
            total += len;
        }
        if written.is_err() && total > 0 {
            return i64::try_from(total).map_err(|_| Errno::EINVAL);
        }
        if written.is_ok() {
            written = sink.drain(stop);
        }
        match written {
            Ok(()) => i64::try_from(total).map_err(|_| Errno::EINVAL),
            // Linux with SIGPIPE ignored.
            Err(StreamError::Closed) => Err(Errno::EPIPE),
            Err(StreamError::Stopped) => Err(Errno::EINTR),
            // A capture at its limit: as a full disk.
            Err(StreamError::Full) => Err(Errno::ENOSPC),
            Err(StreamError::Io(e)) => Err(Errno::of_io(&e, Errno::EIO)),
        }
    }

    fn lseek(&mut self, args: &SeekArgs) -> CallResult {
        let file = match self.descriptor(args.fd)? {
            Descriptor::File(file, ..) => file,
            Descriptor::Null(_) => return Ok(0),
            Descriptor::Synthetic(_, next) => return synthetic::seek(next, args),
            Descriptor::ProcMaps(open) => return proc_maps::seek(open, args),
            _ => return Err(Errno::ESPIPE),
        };
        let pos = match args.whence {
            SEEK_SET => SeekFrom::Start(u64::try_from(args.offset).map_err(|_| Errno::EINVAL)?),
            SEEK_CUR => SeekFrom::Current(args.offset),
            SEEK_END => SeekFrom::End(args.offset),
            _ => return Err(Errno::EINVAL),
        };
        let at = rustix::fs::seek(file, pos).map_err(Errno::from)?;
        i64::try_from(at).map_err(|_| Errno::EINVAL)
    }

    /// `fstat` of `args.fd`, or with `by_path` the `stat` of `args.path`
    /// from that directory descriptor.
    fn stat(&mut self, view: &GuestView<'_>, args: &StatArgs, by_path: Option<i32>) -> CallResult {
        // The output must be writable before anything is looked up.
        view.pieces(
            Gva::new(args.stat),
            std::mem::size_of::<Stat>() as u64,
            true,
            &mut self.pieces,
        )
        .map_err(|_| Errno::EFAULT)?;
        let host = if let Some(dirfd) = by_path {
            let base = linux::base(&self.fds, &self.cwd, dirfd);
            Self::read_path(view, args.path, base, &mut self.path)?;
            if null_device::names(&self.path)? {
                Ok(null_device::stat())
            } else if proc_maps::names(&self.path)? {
                Ok(proc_maps::stat())
            } else if self.synthetic_entries(&self.path)?.is_some() {
                Ok(synthetic::stat(&self.path))
            } else {
                let resolved = self.grants.resolve(&self.path)?;
                let file = resolved.open(OFlags::PATH, Mode::empty())?;
                rustix::fs::fstat(&file)
            }
        } else {
            match self.descriptor(args.fd)? {
                Descriptor::File(file, ..) => rustix::fs::fstat(file),
                Descriptor::Stdin => match &self.stdin {
                    StdinSource::Inherit(stdin) => rustix::fs::fstat(stdin),
                    _ => return Err(Errno::EINVAL),
                },
                Descriptor::Stdout => rustix::fs::fstat(std::io::stdout()),
                Descriptor::Stderr => rustix::fs::fstat(std::io::stderr()),
                Descriptor::Null(_) => Ok(null_device::stat()),
                Descriptor::Synthetic(path, _) => Ok(synthetic::stat(path)),
                Descriptor::ProcMaps(_) => Ok(proc_maps::stat()),
                pipe @ Descriptor::Pipe(..) => Ok(self.pipe_stat(pipe)),
            }
        }
        .map_err(Errno::from)?;
        let stat = stat::guest_stat(&host);
        view.write_bytes(Gva::new(args.stat), stat.as_bytes())
            .map_err(|_| Errno::EFAULT)?;
        Ok(0)
    }

    fn fsync(&mut self, fd: i32) -> CallResult {
        match self.descriptor(fd)? {
            Descriptor::File(file, ..) => rustix::fs::fsync(file).map_err(Errno::from)?,
            // A directory above the grants holds nothing to write back, as
            // a directory on a read-only mount.
            Descriptor::Synthetic(..) => {}
            _ => return Err(Errno::EINVAL),
        }
        Ok(0)
    }

    fn ftruncate(&mut self, args: &TruncateArgs) -> CallResult {
        let length = u64::try_from(args.length).map_err(|_| Errno::EINVAL)?;
        match self.descriptor(args.fd)? {
            Descriptor::File(file, ..) => {
                rustix::fs::ftruncate(file, length).map_err(Errno::from)?
            }
            _ => return Err(Errno::EINVAL),
        }
        Ok(0)
    }
}

/// The permission bits a guest may give what it creates: no set-user-ID
/// or set-group-ID bit (the sticky bit stays).
const CREATE_MODE_MASK: u32 = 0o1777;

/// Opens `name` in `dir`, by that one name.
fn open_entry(dir: &OwnedFd, name: &CString, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        dir,
        name.as_c_str(),
        flags | OFlags::CLOEXEC,
        mode,
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(Errno::from)
}

/// The descriptor `fd` of a table, or EBADF.
fn lookup(fds: &[Option<Descriptor>], fd: i32) -> Result<&Descriptor, Errno> {
    usize::try_from(fd)
        .ok()
        .and_then(|i| fds.get(i))
        .and_then(Option::as_ref)
        .ok_or(Errno::EBADF)
}

#[cfg(test)]
mod limit_tests;
