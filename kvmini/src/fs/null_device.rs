//! `/dev/null`: the one device every program finds, served by kvmini
//! itself, without a host file. The exact path `/dev/null`, after
//! normalization, always names it, whatever the grants are (a grant
//! mounted at `/dev` or `/` does not change that): reads find end of file,
//! writes are taken whole, as on Linux (docs/linux.md, "/dev/null").

use kvmini_abi::fs::{O_ACCMODE, O_DIRECTORY};

use super::{CallResult, Descriptor, Filesystem};
use crate::errno::Errno;
use crate::grant::normalize;

/// The components of the path that names the device.
pub(super) const PATH: [&[u8]; 2] = [b"dev", b"null"];

/// The device number Linux gives `/dev/null`: major 1, minor 3.
const RDEV: (u32, u32) = (1, 3);

/// A character device readable and writable by everyone.
const MODE: u32 = 0o020_666;

/// Whether the absolute `path` names the device: `Ok(true)` when it does,
/// `ENOTDIR` when it names it as a directory (`/dev/null/`, `/dev/null/.`),
/// as on Linux.
pub(super) fn names(path: &[u8]) -> Result<bool, Errno> {
    let names = normalize(path).is_ok_and(|components| components == PATH);
    if !names || path.first() != Some(&b'/') {
        return Ok(false);
    }
    if path.ends_with(b"/") || path.ends_with(b"/.") {
        return Err(Errno::ENOTDIR);
    }
    Ok(true)
}

/// The device's inode number, as a devtmpfs gives it.
pub(super) const INODE: u64 = 3;

/// What `fstat` and `stat` of the device answer: a character device 1:3,
/// mode 0666, owned by root, empty, on device 0:6 with inode 3 (the values
/// a devtmpfs gives it), every time 0.
pub(super) fn stat() -> rustix::fs::Stat {
    let mut st = super::stat::served(MODE, INODE, 1);
    st.st_rdev = rustix::fs::makedev(RDEV.0, RDEV.1);
    st.st_dev = rustix::fs::makedev(0, 6);
    st
}

impl Filesystem {
    /// Opens the device in descriptor `slot`, with any access mode, which
    /// its reads and writes keep to (`O_CREAT` and `O_TRUNC` change
    /// nothing); `O_DIRECTORY` is `ENOTDIR`.
    pub(super) fn open_null_device(&mut self, flags: u32, slot: usize) -> CallResult {
        if flags & O_DIRECTORY != 0 {
            return Err(Errno::ENOTDIR);
        }
        Ok(self.install(slot, Descriptor::Null(flags & O_ACCMODE)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_normalized_path_dev_null_names_the_device() {
        for path in [
            &b"/dev/null"[..],
            b"//dev/./null",
            b"/dev/x/../null",
            b"/../dev/null",
        ] {
            assert_eq!(names(path), Ok(true), "{path:?}");
        }
        for path in [
            &b"/dev/nul"[..],
            b"/dev",
            b"/",
            b"dev/null",
            b"/dev/null/x",
            b"/x/null",
            // `..` is lexical: /dev.
            b"/dev/null/..",
        ] {
            assert_eq!(names(path), Ok(false), "{path:?}");
        }
        for path in [&b"/dev/null/"[..], b"/dev/null/."] {
            assert_eq!(names(path), Err(Errno::ENOTDIR), "{path:?}");
        }
    }

    #[test]
    fn its_stat_is_a_character_device_1_3_readable_and_writable_by_all() {
        let st = stat();
        assert_eq!(st.st_mode, 0o020_666);
        assert_eq!(
            (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)),
            (1, 3)
        );
        assert_eq!(
            (st.st_size, st.st_nlink, st.st_uid, st.st_gid),
            (0, 1, 0, 0)
        );
    }
}
