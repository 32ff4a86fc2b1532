//! `/proc/self/maps` (and `/proc/1/maps`, the program being pid 1): a
//! read-only regular file whose text the Linux layer makes from its record
//! of the program's memory when it is opened, a snapshot kept by the open
//! file and its duplicates (Linux makes it afresh at each read). No host
//! file is behind it; every other `/proc` path stays `ENOENT`
//! (docs/linux.md, "/proc/self/maps").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kvmini_abi::fs::{IoArgs, SeekArgs, O_ACCMODE, O_DIRECTORY, O_RDONLY, SEEK_CUR, SEEK_SET};

use super::{copy_out, prepare_read, CallResult, Descriptor, Filesystem};
use crate::errno::Errno;
use crate::grant::normalize;
use crate::view::GuestView;

/// A regular file readable by everyone, as procfs shows it.
const MODE: u32 = 0o100_444;

/// The inode number it answers.
const INODE: u64 = 4026531842;

/// The open file: the text, and the position its reads have reached.
#[derive(Clone, Debug)]
pub(super) struct OpenMaps {
    text: Arc<[u8]>,
    position: Arc<AtomicU64>,
}

/// Whether the absolute `path` names the file: `/proc/self/maps` or
/// `/proc/1/maps`, after normalization; `ENOTDIR` when it names it as a
/// directory.
pub(super) fn names(path: &[u8]) -> Result<bool, Errno> {
    let named = normalize(path).is_ok_and(|c| {
        c.len() == 3 && c[0] == b"proc" && (c[1] == b"self" || c[1] == b"1") && c[2] == b"maps"
    });
    if !named || path.first() != Some(&b'/') {
        return Ok(false);
    }
    if path.ends_with(b"/") || path.ends_with(b"/.") {
        return Err(Errno::ENOTDIR);
    }
    Ok(true)
}

/// What `stat` and `fstat` answer: a regular file of size 0, mode 0444,
/// owned by root, as procfs answers.
pub(super) fn stat() -> rustix::fs::Stat {
    super::stat::served(MODE, INODE, 1)
}

impl Filesystem {
    /// Opens the text `maps` makes in descriptor `slot` for `status`, the
    /// open's flags: read-only (`EACCES` for writing), not a directory.
    pub(super) fn open_maps(
        &mut self,
        status: u32,
        slot: usize,
        maps: &dyn Fn() -> Vec<u8>,
    ) -> CallResult {
        if status & O_ACCMODE == O_ACCMODE {
            return Err(Errno::EINVAL);
        }
        if status & O_ACCMODE != O_RDONLY {
            return Err(Errno::EACCES);
        }
        if status & O_DIRECTORY != 0 {
            return Err(Errno::ENOTDIR);
        }
        let open = OpenMaps {
            text: maps().into(),
            position: Arc::new(AtomicU64::new(0)),
        };
        Ok(self.install(slot, Descriptor::ProcMaps(open)))
    }

    /// `read` (from the open file's position, which it moves) or
    /// `pread64` (at `args.offset`) of the text.
    pub(super) fn read_maps(
        &mut self,
        view: &GuestView<'_>,
        open: &OpenMaps,
        args: &IoArgs,
        positioned: bool,
    ) -> CallResult {
        let at = if positioned {
            u64::try_from(args.offset).map_err(|_| Errno::EINVAL)?
        } else {
            open.position.load(Ordering::Relaxed)
        };
        prepare_read(view, args, &mut self.pieces, &mut self.scratch)?;
        let start = usize::try_from(at)
            .unwrap_or(usize::MAX)
            .min(open.text.len());
        let n = (open.text.len() - start).min(self.scratch.len());
        let done = copy_out(
            view,
            args,
            open.text.get(start..start + n).unwrap_or_default(),
        )?;
        if !positioned {
            open.position.store(at + n as u64, Ordering::Relaxed);
        }
        Ok(done)
    }
}

/// `lseek` of the open file: within or past the text, never before it.
pub(super) fn seek(open: &OpenMaps, args: &SeekArgs) -> CallResult {
    let from = match args.whence {
        SEEK_SET => 0,
        SEEK_CUR => open.position.load(Ordering::Relaxed),
        // procfs's files have no end to seek from.
        _ => return Err(Errno::EINVAL),
    };
    let at = i64::try_from(from)
        .ok()
        .and_then(|f| f.checked_add(args.offset))
        .filter(|&a| a >= 0)
        .ok_or(Errno::EINVAL)?;
    open.position.store(at.unsigned_abs(), Ordering::Relaxed);
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_proc_self_maps_and_proc_1_maps_name_the_file() {
        for path in [
            &b"/proc/self/maps"[..],
            b"/proc/1/maps",
            b"//proc/./self/maps",
        ] {
            assert_eq!(names(path), Ok(true), "{path:?}");
        }
        for path in [
            &b"/proc/self/map"[..],
            b"/proc/2/maps",
            b"proc/self/maps",
            b"/proc/self",
        ] {
            assert_eq!(names(path), Ok(false), "{path:?}");
        }
        assert_eq!(names(b"/proc/self/maps/"), Err(Errno::ENOTDIR));
    }

    #[test]
    fn its_stat_is_an_empty_regular_file_readable_by_all() {
        let st = stat();
        assert_eq!((st.st_mode, st.st_size, st.st_nlink), (0o100_444, 0, 1));
    }
}
