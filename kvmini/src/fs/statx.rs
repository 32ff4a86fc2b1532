//! `statx` for Linux programs: the same lookup as `newfstatat`, with a
//! final symlink left alone on `AT_SYMLINK_NOFOLLOW`, answered in
//! `struct statx` from the host's `fstat` (the basic fields; no birth
//! time).

use rustix::fs::{Mode, OFlags, Stat};

use super::{linux, null_device, CallResult, Descriptor, Filesystem, StdinSource, AT_FDCWD};
use crate::addr::Gva;
use crate::errno::Errno;
use crate::view::GuestView;

const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_NO_AUTOMOUNT: u64 = 0x800;
const AT_EMPTY_PATH: u64 = 0x1000;
/// `AT_STATX_FORCE_SYNC` and `AT_STATX_DONT_SYNC`: nothing to sync here.
const AT_STATX_SYNC_TYPE: u64 = 0x6000;
/// `STATX_BASIC_STATS`: what `fstat` gives.
const STATX_BASIC_STATS: u32 = 0x7FF;
/// The size of `struct statx`.
const STATX_SIZE: usize = 256;

impl Filesystem {
    /// `statx(dirfd, path, flags, mask, buf)`.
    pub(crate) fn linux_statx(
        &mut self,
        view: &GuestView<'_>,
        (dirfd, path): (i32, u64),
        flags: u64,
        buf: u64,
    ) -> CallResult {
        let known = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE;
        if flags & !known != 0 || flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE {
            return Err(Errno::EINVAL);
        }
        view.check_writable(Gva::new(buf), STATX_SIZE as u64)
            .map_err(|_| Errno::EFAULT)?;
        let host = if flags & AT_EMPTY_PATH != 0 && self.linux_path_is_empty(view, path)? {
            self.stat_of(dirfd)?
        } else {
            let base = linux::base(&self.fds, &self.cwd, dirfd);
            Self::read_path(view, path, base, &mut self.path)?;
            let served = if null_device::names(&self.path)? {
                Some(null_device::stat())
            } else if super::proc_maps::names(&self.path)? {
                Some(super::proc_maps::stat())
            } else {
                None
            };
            if let Some(st) = served {
                view.write_bytes(Gva::new(buf), &statx_bytes(&st))
                    .map_err(|_| Errno::EFAULT)?;
                return Ok(0);
            }
            if self.synthetic_entries(&self.path)?.is_some() {
                let st = super::synthetic::stat(&self.path);
                view.write_bytes(Gva::new(buf), &statx_bytes(&st))
                    .map_err(|_| Errno::EFAULT)?;
                return Ok(0);
            }
            let resolved = self.grants.resolve(&self.path)?;
            let open = if flags & AT_SYMLINK_NOFOLLOW != 0 {
                OFlags::PATH | OFlags::NOFOLLOW
            } else {
                OFlags::PATH
            };
            let file = resolved.open(open, Mode::empty())?;
            rustix::fs::fstat(&file).map_err(Errno::from)?
        };
        view.write_bytes(Gva::new(buf), &statx_bytes(&host))
            .map_err(|_| Errno::EFAULT)?;
        Ok(0)
    }

    /// The host's `fstat` of descriptor `fd` (the working directory for
    /// `AT_FDCWD`).
    fn stat_of(&self, fd: i32) -> Result<Stat, Errno> {
        if fd == AT_FDCWD {
            if self.synthetic_entries(&self.cwd)?.is_some() {
                return Ok(super::synthetic::stat(&self.cwd));
            }
            let resolved = self.grants.resolve(&self.cwd)?;
            let dir = resolved.open(OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
            return rustix::fs::fstat(&dir).map_err(Errno::from);
        }
        match self.descriptor(fd)? {
            Descriptor::File(file, ..) => rustix::fs::fstat(file),
            Descriptor::Stdin => match &self.stdin {
                StdinSource::Inherit(stdin) => rustix::fs::fstat(stdin),
                _ => return Err(Errno::EINVAL),
            },
            Descriptor::Stdout => rustix::fs::fstat(std::io::stdout()),
            Descriptor::Stderr => rustix::fs::fstat(std::io::stderr()),
            Descriptor::Null(_) => Ok(null_device::stat()),
            Descriptor::Synthetic(path, _) => Ok(super::synthetic::stat(path)),
            Descriptor::ProcMaps(_) => Ok(super::proc_maps::stat()),
            pipe @ Descriptor::Pipe(..) => Ok(self.pipe_stat(pipe)),
        }
        .map_err(Errno::from)
    }
}

/// `struct statx` (x86-64 layout) of `st`.
fn statx_bytes(st: &Stat) -> [u8; STATX_SIZE] {
    let mut out = [0u8; STATX_SIZE];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(slot) = out.get_mut(at..at + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
    };
    let narrow = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
    put(0, &STATX_BASIC_STATS.to_ne_bytes());
    put(4, &narrow(st.st_blksize).to_ne_bytes());
    put(
        16,
        &u32::try_from(st.st_nlink).unwrap_or(u32::MAX).to_ne_bytes(),
    );
    put(20, &st.st_uid.to_ne_bytes());
    put(24, &st.st_gid.to_ne_bytes());
    put(
        28,
        &u16::try_from(st.st_mode & 0xFFFF)
            .unwrap_or(0)
            .to_ne_bytes(),
    );
    put(32, &st.st_ino.to_ne_bytes());
    put(40, &st.st_size.to_ne_bytes());
    put(48, &st.st_blocks.to_ne_bytes());
    let times = [
        (64, st.st_atime, st.st_atime_nsec),
        (96, st.st_ctime, st.st_ctime_nsec),
        (112, st.st_mtime, st.st_mtime_nsec),
    ];
    for (at, sec, nsec) in times {
        put(at, &sec.to_ne_bytes());
        put(at + 8, &u32::try_from(nsec).unwrap_or(0).to_ne_bytes());
    }
    put(128, &rustix::fs::major(st.st_rdev).to_ne_bytes());
    put(132, &rustix::fs::minor(st.st_rdev).to_ne_bytes());
    put(136, &rustix::fs::major(st.st_dev).to_ne_bytes());
    put(140, &rustix::fs::minor(st.st_dev).to_ne_bytes());
    out
}
