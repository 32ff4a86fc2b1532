//! The calls on directory entries: unlink, rmdir and mkdir, rename, each
//! allowed only where the grant that decides (by identity) is writable, and
//! getdents64.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use kvmini_abi::fs::{IoArgs, PathArgs, RenameArgs};
use kvmini_abi::Port;
use rustix::fs::{AtFlags, Mode, RenameFlags};

use super::{copy_out, lookup, prepare_read, CallResult, Descriptor, Filesystem, CREATE_MODE_MASK};
use crate::errno::Errno;
use crate::grant::{Grant, Resolved, Trailing};
use crate::view::GuestView;

impl Filesystem {
    /// The grant that decides whether the name `parent` names in its
    /// directory may change: the innermost grant holding that directory,
    /// by identity (the path's own grant when the directory cannot be
    /// opened: the call then fails on its own); EROFS when it is
    /// read-only.
    fn writable<'g>(
        &'g self,
        resolved: &Resolved<'g>,
        parent: &Result<(OwnedFd, CString), Errno>,
    ) -> Result<&'g Grant, Errno> {
        let grant = match parent {
            Ok((dir, _)) => self.grants.deciding(dir.as_fd(), resolved.grant)?,
            Err(_) => resolved.grant,
        };
        if grant.read_only() {
            return Err(Errno::EROFS);
        }
        Ok(grant)
    }

    pub(super) fn path_call(
        &mut self,
        view: &GuestView<'_>,
        port: Port,
        args: &PathArgs,
        dirfd: i32,
    ) -> CallResult {
        let base = super::linux::base(&self.fds, &self.cwd, dirfd);
        Self::read_path(view, args.path, base, &mut self.path)?;
        self.refuse_synthetic_change(&self.path)?;
        let resolved = self.grants.resolve(&self.path)?;
        let parent = resolved.parent_and_name();
        self.writable(&resolved, &parent)?;
        match (port, resolved.trailing) {
            // `rmdir("d/.")`: Linux refuses to remove a directory by ".".
            (Port::Rmdir, Trailing::Dot) => return Err(Errno::EINVAL),
            // `unlink("x/")`: EISDIR for a directory, ENOTDIR for a file.
            (Port::Unlink, t) if t.is_dir() => {
                resolved.is_directory()?;
                return Err(Errno::EISDIR);
            }
            // `mkdir("d/.")` names "d" itself, which must then exist.
            (Port::Mkdir, Trailing::Dot) => {
                resolved.is_directory()?;
                return Err(Errno::EEXIST);
            }
            _ => {}
        }
        let (dir, name) = match parent {
            Err(Errno::EBUSY) if port == Port::Mkdir => return Err(Errno::EEXIST),
            other => other?,
        };
        let result = match port {
            Port::Unlink => rustix::fs::unlinkat(&dir, name.as_c_str(), AtFlags::empty()),
            Port::Rmdir => {
                if self.grants.holds_a_grant(dir.as_fd(), &name) {
                    return Err(Errno::EBUSY);
                }
                rustix::fs::unlinkat(&dir, name.as_c_str(), AtFlags::REMOVEDIR)
            }
            // Set-ID bits are dropped, as for files; a new directory in a
            // set-group-ID one still inherits that bit (the kernel's rule,
            // which only decides the group of what is created in it).
            _ => rustix::fs::mkdirat(
                &dir,
                name.as_c_str(),
                Mode::from_bits_truncate(args.mode & CREATE_MODE_MASK),
            ),
        };
        result.map_err(Errno::from)?;
        Ok(0)
    }

    /// `rename` of `args.old` from directory descriptor `dirfds.0` to
    /// `args.new` from `dirfds.1`.
    pub(super) fn rename(
        &mut self,
        view: &GuestView<'_>,
        args: &RenameArgs,
        dirfds: (i32, i32),
    ) -> CallResult {
        self.rename_with(view, args, dirfds, RenameFlags::empty())
    }

    /// `rename` with `renameat2`'s flags (`RENAME_NOREPLACE`,
    /// `RENAME_EXCHANGE`): the same checks, on both names, whatever they
    /// ask; the host call does what they ask between the two directories
    /// checked.
    pub(super) fn rename_with(
        &mut self,
        view: &GuestView<'_>,
        args: &RenameArgs,
        dirfds: (i32, i32),
        flags: RenameFlags,
    ) -> CallResult {
        let base = super::linux::base(&self.fds, &self.cwd, dirfds.0);
        Self::read_path(view, args.old, base, &mut self.path)?;
        let base = super::linux::base(&self.fds, &self.cwd, dirfds.1);
        Self::read_path(view, args.new, base, &mut self.path2)?;
        self.refuse_synthetic_change(&self.path)?;
        self.refuse_synthetic_change(&self.path2)?;
        let old = self.grants.resolve(&self.path)?;
        let new = self.grants.resolve(&self.path2)?;
        let old_parent = old.parent_and_name();
        let new_parent = new.parent_and_name();
        let old_grant = self.writable(&old, &old_parent)?;
        let new_grant = self.writable(&new, &new_parent)?;
        if !std::ptr::eq(old_grant, new_grant) {
            return Err(Errno::EXDEV);
        }
        if old.trailing == Trailing::Dot || new.trailing == Trailing::Dot {
            return Err(Errno::EBUSY);
        }
        // A trailing slash on either side: the source must be a directory.
        if old.trailing.is_dir() || new.trailing.is_dir() {
            old.is_directory()?;
        }
        let (old_dir, old_name) = old_parent?;
        let (new_dir, new_name) = new_parent?;
        // A granted directory, or one above it, neither moves nor is
        // replaced: the grant would follow it, or be hidden.
        if self.grants.holds_a_grant(old_dir.as_fd(), &old_name)
            || self.grants.holds_a_grant(new_dir.as_fd(), &new_name)
        {
            return Err(Errno::EBUSY);
        }
        rustix::fs::renameat_with(
            &old_dir,
            old_name.as_c_str(),
            &new_dir,
            new_name.as_c_str(),
            flags,
        )
        .map_err(Errno::from)?;
        Ok(0)
    }

    pub(super) fn getdents(&mut self, view: &GuestView<'_>, args: &IoArgs) -> CallResult {
        let file = match lookup(&self.fds, args.fd)? {
            Descriptor::File(file, ..) => file,
            Descriptor::Synthetic(path, next) => {
                let (path, next) = (path.clone(), std::sync::Arc::clone(next));
                return self.synthetic_getdents(view, args, &path, &next);
            }
            _ => return Err(Errno::ENOTDIR),
        };
        // Check the whole buffer first, so that a bad one does not advance
        // the directory position.
        prepare_read(view, args, &mut self.pieces, &mut self.scratch)?;
        let n = getdents64(file.as_fd(), &mut self.scratch)
            .map_err(|e| Errno::of_io(&e, Errno::EINVAL))?;
        copy_out(view, args, &self.scratch[..n])
    }
}

/// Linux's `getdents64` into a host buffer: the records already have the
/// layout the ABI promises guests.
fn getdents64(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which
    // is exclusively borrowed for the call.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}
