//! The calls that change what a file is rather than what it holds: its
//! mode, owner, times and size, by path or by descriptor, for Linux
//! programs (docs/linux.md). The file is found as every path is, beneath
//! its grant; the grant that decides is the innermost one holding the
//! file's directory, by identity (read-only: `EROFS`); and the host call
//! acts on a descriptor of the file itself (`O_PATH` with `AT_EMPTY_PATH`),
//! so nothing is reached by a name twice.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use super::{linux, open_entry, CallResult, Descriptor, Filesystem, AT_FDCWD, CREATE_MODE_MASK};
use crate::errno::Errno;
use crate::grant::{Grant, Grants, Location, Resolved};
use crate::view::GuestView;

/// What an attribute call acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A path from a directory descriptor; `follow`: a symlink in its last
    /// component is followed; `empty`: an empty path names the descriptor
    /// itself (`AT_EMPTY_PATH`).
    Path {
        /// The directory descriptor (`AT_FDCWD`: the working directory).
        dirfd: i32,
        /// The guest address of the path.
        path: u64,
        /// Whether a final symlink is followed.
        follow: bool,
        /// Whether an empty path names `dirfd`.
        empty: bool,
    },
    /// An open descriptor.
    Fd(i32),
}

/// What a change may be made to: the file's host descriptor (`O_PATH` for
/// a path) and whether the grant that decides is read-only.
struct Found {
    file: Arc<OwnedFd>,
    read_only: bool,
}

impl Filesystem {
    /// Finds `target`: `EROFS` comes after the lookup's own errors, as on
    /// Linux. A standard stream is kvmini's own: nothing about it changes
    /// (`EPERM`).
    fn find(&mut self, view: &GuestView<'_>, target: Target) -> Result<Found, Errno> {
        let (dirfd, path, follow) = match target {
            Target::Fd(fd) => return self.found_fd(fd),
            Target::Path {
                dirfd,
                path,
                follow,
                empty,
            } => {
                if empty && self.linux_path_is_empty(view, path)? {
                    if dirfd == AT_FDCWD {
                        let cwd = self.cwd.clone();
                        return self.found_path(&cwd, true);
                    }
                    return self.found_fd(dirfd);
                }
                (dirfd, path, follow)
            }
        };
        let base = linux::base(&self.fds, &self.cwd, dirfd);
        let mut name = std::mem::take(&mut self.path);
        let found = Self::read_path(view, path, base, &mut name)
            .and_then(|()| self.found_path(&name, follow));
        self.path = name;
        found
    }

    fn found_fd(&self, fd: i32) -> Result<Found, Errno> {
        match self.descriptor(fd)? {
            Descriptor::File(file, _, read_only) => Ok(Found {
                file: Arc::clone(file),
                read_only: *read_only,
            }),
            Descriptor::Synthetic(..) => Err(Errno::EROFS),
            _ => Err(Errno::EPERM),
        }
    }

    fn found_path(&self, path: &[u8], follow: bool) -> Result<Found, Errno> {
        // The device is not the program's to change.
        if super::null_device::names(path)? || super::proc_maps::names(path)? {
            return Err(Errno::EPERM);
        }
        if self.synthetic_entries(path)?.is_some() {
            return Err(Errno::EROFS);
        }
        let resolved = self.grants.resolve(path)?;
        let (file, grant) = match resolved.location(follow)? {
            Location::Entry { dir, name } => {
                let grant = self.grants.deciding(dir.as_fd(), resolved.grant)?;
                let file = open_entry(&dir, &name, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())?;
                (file, grant)
            }
            Location::Directory(dir) => {
                let grant = self.grants.deciding(dir.as_fd(), resolved.grant)?;
                (dir, grant)
            }
        };
        Ok(Found {
            file: Arc::new(file),
            read_only: grant.read_only(),
        })
    }

    /// `chmod`, `fchmod`, `fchmodat`: the permission bits and the sticky
    /// bit; set-user-ID and set-group-ID bits are dropped, as kvmini drops
    /// them from what a program creates (a program never makes a set-ID
    /// file on the host).
    pub(crate) fn linux_chmod(
        &mut self,
        view: &GuestView<'_>,
        target: Target,
        mode: u64,
    ) -> CallResult {
        let found = self.find(view, target)?;
        if found.read_only {
            return Err(Errno::EROFS);
        }
        let mode = u32::try_from(mode & u64::from(CREATE_MODE_MASK)).unwrap_or(0);
        fchmodat2_empty_path(&found.file, mode)?;
        Ok(0)
    }

    /// `chown` and friends: only what changes nothing (each id -1 or the
    /// file's own) succeeds; any other change is `EPERM`, as for a program
    /// without `CAP_CHOWN`. No host call changes an owner.
    pub(crate) fn linux_chown(
        &mut self,
        view: &GuestView<'_>,
        target: Target,
        (uid, gid): (u64, u64),
    ) -> CallResult {
        let found = self.find(view, target)?;
        if found.read_only {
            return Err(Errno::EROFS);
        }
        let st = rustix::fs::fstat(&*found.file).map_err(Errno::from)?;
        let keeps = |wanted: u64, now: u32| {
            wanted & 0xFFFF_FFFF == 0xFFFF_FFFF || wanted & 0xFFFF_FFFF == u64::from(now)
        };
        if keeps(uid, st.st_uid) && keeps(gid, st.st_gid) {
            Ok(0)
        } else {
            Err(Errno::EPERM)
        }
    }

    /// `utimensat`, `futimens` and `utimes`: `times` holds the access
    /// and the modification time as (seconds, nanoseconds), `UTIME_NOW`
    /// and `UTIME_OMIT` as Linux reads them; `None` is now for both.
    pub(crate) fn linux_utimens(
        &mut self,
        view: &GuestView<'_>,
        target: Target,
        times: Option<[i64; 4]>,
    ) -> CallResult {
        let [a_sec, a_nsec, m_sec, m_nsec] = times.unwrap_or([0, UTIME_NOW, 0, UTIME_NOW]);
        let valid =
            |ns: i64| (0..1_000_000_000).contains(&ns) || ns == UTIME_NOW || ns == UTIME_OMIT;
        if !valid(a_nsec) || !valid(m_nsec) {
            return Err(Errno::EINVAL);
        }
        let stamps = Timestamps {
            last_access: Timespec {
                tv_sec: a_sec,
                tv_nsec: a_nsec,
            },
            last_modification: Timespec {
                tv_sec: m_sec,
                tv_nsec: m_nsec,
            },
        };
        let found = self.find(view, target)?;
        if found.read_only {
            return Err(Errno::EROFS);
        }
        rustix::fs::utimensat(&*found.file, c"", &stamps, AtFlags::EMPTY_PATH)
            .map_err(Errno::from)?;
        Ok(0)
    }

    /// `truncate`: a regular file found by its path (a final symlink
    /// followed beneath the grant), opened for writing by its one name in
    /// its directory and cut or grown to `length`.
    pub(crate) fn linux_truncate(
        &mut self,
        view: &GuestView<'_>,
        path: u64,
        length: i64,
    ) -> CallResult {
        let length = u64::try_from(length).map_err(|_| Errno::EINVAL)?;
        let base = linux::base(&self.fds, &self.cwd, AT_FDCWD);
        let mut name = std::mem::take(&mut self.path);
        let file = Self::read_path(view, path, base, &mut name).and_then(|()| {
            let resolved = self.grants.resolve(&name)?;
            let (dir, entry) = match resolved.location(true)? {
                Location::Entry { dir, name } => (dir, name),
                Location::Directory(_) => return Err(Errno::EISDIR),
            };
            let pinned = open_entry(&dir, &entry, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())?;
            let st = rustix::fs::fstat(&pinned).map_err(Errno::from)?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => {}
                FileType::Directory => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
            if self
                .grants
                .deciding(dir.as_fd(), resolved.grant)?
                .read_only()
            {
                return Err(Errno::EROFS);
            }
            let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW;
            open_entry(&dir, &entry, flags, Mode::empty())
        });
        self.path = name;
        rustix::fs::ftruncate(&file?, length).map_err(Errno::from)?;
        Ok(0)
    }
}

/// Whether the grant that decides, by identity, what may change the file
/// `resolved` names is read-only (when it cannot be told, it is).
pub(super) fn decided_read_only(grants: &Grants, resolved: &Resolved<'_>, follow: bool) -> bool {
    let grant = match resolved.location(follow) {
        Ok(Location::Entry { dir, .. } | Location::Directory(dir)) => {
            grants.deciding(dir.as_fd(), resolved.grant)
        }
        Err(e) => Err(e),
    };
    grant.map_or(true, Grant::read_only)
}

/// `UTIME_NOW` and `UTIME_OMIT`, as Linux reads them in `tv_nsec`.
const UTIME_NOW: i64 = (1 << 30) - 1;
const UTIME_OMIT: i64 = (1 << 30) - 2;

/// `fchmodat2(fd, "", mode, AT_EMPTY_PATH)`: the mode of the file `fd`
/// (an `O_PATH` descriptor or any other) itself (Linux 6.6 and later).
fn fchmodat2_empty_path(fd: &OwnedFd, mode: u32) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: the path is a static NUL-terminated empty string the kernel
    // only reads; no memory is written.
    let result = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            fd.as_raw_fd(),
            c"".as_ptr(),
            mode,
            libc::AT_EMPTY_PATH,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(Errno::of_io(
            &std::io::Error::last_os_error(),
            Errno::EINVAL,
        ))
    }
}
