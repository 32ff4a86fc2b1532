//! The `struct stat` records kvmini answers: the host's, converted to the
//! ABI's, and a blank one for what kvmini serves itself (`/dev/null`, the
//! directories above the grants).

use kvmini_abi::fs::Stat;

/// Converts the host's `struct stat` to the ABI's (the same Linux layout,
/// field by field so that no host padding leaks).
pub(super) fn guest_stat(host: &rustix::fs::Stat) -> Stat {
    Stat {
        st_dev: host.st_dev,
        st_ino: host.st_ino,
        st_nlink: host.st_nlink,
        st_mode: host.st_mode,
        st_uid: host.st_uid,
        st_gid: host.st_gid,
        pad0: 0,
        st_rdev: host.st_rdev,
        st_size: host.st_size,
        st_blksize: host.st_blksize,
        st_blocks: host.st_blocks,
        st_atime: host.st_atime,
        st_atime_nsec: i64::try_from(host.st_atime_nsec).unwrap_or(0),
        st_mtime: host.st_mtime,
        st_mtime_nsec: i64::try_from(host.st_mtime_nsec).unwrap_or(0),
        st_ctime: host.st_ctime,
        st_ctime_nsec: i64::try_from(host.st_ctime_nsec).unwrap_or(0),
        reserved: [0; 3],
    }
}

/// A record with every field 0 but `st_mode`, `st_ino`, `st_nlink` and a
/// block size of 4096: owned by root, empty, every time 0.
pub(super) fn served(mode: u32, ino: u64, nlink: u64) -> rustix::fs::Stat {
    // SAFETY: `Stat` is Linux's `struct stat`, plain integers only, for
    // which all zero bytes are a valid value.
    let mut st: rustix::fs::Stat = unsafe { std::mem::zeroed() };
    st.st_mode = mode;
    st.st_ino = ino;
    st.st_nlink = nlink;
    st.st_blksize = 4096;
    st
}
