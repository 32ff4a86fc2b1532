//! The directories a program sees above its grants' mount points: `/` when
//! no grant is mounted there, and every directory that leads to a mount
//! point without being granted itself (`/mnt` for a grant at
//! `/mnt/data`). Each exists, read-only, for `stat`, `open`, `chdir` and
//! `getdents64`, and lists exactly the names of the mount points below it
//! (with `.` and `..`): nothing of the host is seen through it. A change
//! there (create, mkdir, unlink, rename) is `EROFS`, as on a read-only
//! mount (docs/linux.md, "The directories above the grants").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kvmini_abi::fs::{SeekArgs, O_ACCMODE, O_CREAT, O_RDONLY, O_TRUNC, SEEK_SET};

use super::{copy_out, null_device, prepare_read, CallResult, Descriptor, Filesystem};
use crate::errno::Errno;
use crate::grant::normalize;
use crate::view::GuestView;

/// A directory, readable and searchable by everyone, writable by no one.
const MODE: u32 = 0o040_555;
/// `DT_DIR`: every entry listed is a directory, but the device.
const DT_DIR: u8 = 4;
/// `DT_CHR`: `null` in `/dev`.
const DT_CHR: u8 = 2;
/// The fixed part of a `getdents64` record: inode, offset, length, type.
const RECORD_HEAD: usize = 19;

/// The guest path of `components`, absolute.
fn joined(components: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for component in components {
        out.push(b'/');
        out.extend_from_slice(component);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// The inode number a synthetic directory answers: one of its own for
/// each path (FNV-1a of the normalized path), so that tools that track
/// directories by device and inode (`find`) see distinct ones.
fn inode(path: &[u8]) -> u64 {
    let components = normalize(path).unwrap_or_default();
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for byte in joined(&components) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01B3);
    }
    hash | 1 << 62
}

/// What `stat` of the synthetic directory `path` answers: mode 040555,
/// owned by root, every time 0, on device 0:0.
pub(super) fn stat(path: &[u8]) -> rustix::fs::Stat {
    super::stat::served(MODE, inode(path), 2)
}

/// `lseek` of a synthetic directory: only back to an entry index
/// `getdents64` gave as an offset (`SEEK_SET`); anything else `EINVAL`.
pub(super) fn seek(next: &AtomicUsize, args: &SeekArgs) -> CallResult {
    let at = usize::try_from(args.offset).map_err(|_| Errno::EINVAL)?;
    if args.whence != SEEK_SET {
        return Err(Errno::EINVAL);
    }
    next.store(at, Ordering::Relaxed);
    i64::try_from(at).map_err(|_| Errno::EINVAL)
}

impl Filesystem {
    /// When the absolute `path` names a synthetic directory (no grant
    /// holds it, and it is `/` or leads to a mount point): the names below
    /// it that lead to mount points, sorted. `None` for any other path.
    pub(super) fn synthetic_entries(&self, path: &[u8]) -> Result<Option<Vec<Vec<u8>>>, Errno> {
        let components = normalize(path)?;
        if self.grants.resolve(path).is_ok() {
            return Ok(None);
        }
        // `/dev/null` is listed as a mount point is: `/` lists `dev` and
        // `/dev` lists `null` where no grant holds them.
        let device: Vec<Vec<u8>> = null_device::PATH.iter().map(|c| c.to_vec()).collect();
        let mut names: Vec<Vec<u8>> = self
            .grants
            .iter()
            .filter_map(|grant| normalize(grant.spec.guest.as_bytes()).ok())
            .chain(std::iter::once(device))
            .filter_map(|guest| {
                let below = guest.len() > components.len() && guest.starts_with(&components);
                below
                    .then(|| guest.get(components.len()).cloned())
                    .flatten()
            })
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() && !components.is_empty() {
            return Ok(None);
        }
        Ok(Some(names))
    }

    /// `EROFS` when a call that changes the name `path` reaches a
    /// synthetic directory: the name is one, or it would be made in one.
    /// A name a grant holds is that grant's to decide.
    pub(super) fn refuse_synthetic_change(&self, path: &[u8]) -> Result<(), Errno> {
        if self.grants.resolve(path).is_ok() {
            return Ok(());
        }
        let mut components = normalize(path)?;
        if self.synthetic_entries(path)?.is_some() {
            return Err(Errno::EROFS);
        }
        if components.pop().is_some() && self.synthetic_entries(&joined(&components))?.is_some() {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    /// Opens the synthetic directory `path` in descriptor `slot`, read
    /// only (`EISDIR` for writing or creating, as for any directory);
    /// `EROFS` for creating a name inside one. `None`: `path` is not for
    /// this module.
    pub(super) fn open_synthetic(
        &mut self,
        path: &[u8],
        flags: u32,
        slot: usize,
    ) -> Result<Option<i64>, Errno> {
        let creates = flags & O_CREAT != 0;
        if self.synthetic_entries(path)?.is_some() {
            if creates || flags & O_ACCMODE != O_RDONLY || flags & O_TRUNC != 0 {
                return Err(Errno::EISDIR);
            }
            let normal = joined(&normalize(path)?);
            let entry = Descriptor::Synthetic(normal, Arc::default());
            return Ok(Some(self.install(slot, entry)));
        }
        if creates {
            self.refuse_synthetic_change(path)?;
        }
        Ok(None)
    }

    /// `getdents64` of the synthetic directory `path` from entry `next`:
    /// `.`, `..`, then each name that leads to a mount point, as many
    /// whole records as fit (`EINVAL` when not even the next one does).
    pub(super) fn synthetic_getdents(
        &mut self,
        view: &GuestView<'_>,
        args: &kvmini_abi::fs::IoArgs,
        path: &[u8],
        next: &AtomicUsize,
    ) -> CallResult {
        prepare_read(view, args, &mut self.pieces, &mut self.scratch)?;
        let mut components = normalize(path)?;
        let names = self.synthetic_entries(path)?.unwrap_or_default();
        let own = inode(path);
        let mut entries = vec![(b".".to_vec(), own, DT_DIR)];
        let child = |name: &Vec<u8>| {
            let mut below = components.clone();
            below.push(name.clone());
            if below == null_device::PATH {
                (name.clone(), null_device::INODE, DT_CHR)
            } else {
                (name.clone(), inode(&joined(&below)), DT_DIR)
            }
        };
        let listed: Vec<(Vec<u8>, u64, u8)> = names.iter().map(child).collect();
        components.pop();
        entries.push((b"..".to_vec(), inode(&joined(&components)), DT_DIR));
        entries.extend(listed);
        let mut out = Vec::new();
        let mut at = next.load(Ordering::Relaxed);
        while let Some((name, ino, kind)) = entries.get(at) {
            let length = (RECORD_HEAD + name.len() + 1).next_multiple_of(8);
            if out.len() + length > self.scratch.len() {
                if out.is_empty() {
                    return Err(Errno::EINVAL);
                }
                break;
            }
            let start = out.len();
            out.extend_from_slice(&ino.to_ne_bytes());
            out.extend_from_slice(&i64::try_from(at + 1).unwrap_or(i64::MAX).to_ne_bytes());
            out.extend_from_slice(&u16::try_from(length).unwrap_or(u16::MAX).to_ne_bytes());
            out.push(*kind);
            out.extend_from_slice(name);
            out.resize(start + length, 0);
            at += 1;
        }
        next.store(at, Ordering::Relaxed);
        copy_out(view, args, &out)
    }
}
