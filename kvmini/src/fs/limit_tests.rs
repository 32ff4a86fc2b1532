//! The descriptor table: the lowest free number below the limit, a limit
//! below 3 raised to 3 so that a guest can always reopen 0, 1 and 2, and
//! what `fsync` answers for descriptors that are not host files.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use super::*;

fn table(max_fds: u32) -> Filesystem {
    Filesystem::new(Grants::open(&[]).unwrap(), max_fds, Input::Null)
}

#[test]
fn the_lowest_free_number_lies_below_the_limit() {
    assert_eq!(table(3).lowest_free(), Err(Errno::EMFILE));
    assert_eq!(table(4).lowest_free(), Ok(3));
    let mut fs = table(4);
    fs.fds.push(None);
    fs.fds.push(Some(Descriptor::Stderr));
    assert_eq!(fs.lowest_free(), Ok(3));
    fs.fds[3] = Some(Descriptor::Stderr);
    assert_eq!(fs.lowest_free(), Err(Errno::EMFILE));
}

#[test]
fn a_limit_below_3_is_3() {
    for max_fds in [0, 1, 2, 3] {
        let mut fs = table(max_fds);
        assert_eq!(fs.lowest_free(), Err(Errno::EMFILE), "{max_fds}");
        // A guest that closed its stdout gets it back as the lowest free.
        fs.fds[1] = None;
        assert_eq!(fs.lowest_free(), Ok(1), "{max_fds}");
        fs.fds[0] = None;
        assert_eq!(fs.lowest_free(), Ok(0), "{max_fds}");
    }
    // The whole range of u32 is taken as given.
    let mut fs = table(u32::MAX);
    fs.fds.resize_with(1000, || Some(Descriptor::Stderr));
    assert_eq!(fs.lowest_free(), Ok(1000));
}

/// `fsync` of a directory kvmini makes above the grants answers 0, as
/// Linux answers for a directory on a read-only mount; of the standard
/// streams `EINVAL`, as for a pipe.
#[test]
fn fsync_of_a_directory_above_the_grants_is_0() {
    let mut fs = table(8);
    fs.fds.push(Some(Descriptor::Synthetic(
        b"/".to_vec(),
        std::sync::Arc::default(),
    )));
    assert_eq!(fs.fsync(3), Ok(0));
    assert_eq!(fs.fsync(1), Err(Errno::EINVAL));
}
