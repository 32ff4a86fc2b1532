//! The system calls on a file's mode, owner, times and size: their
//! arguments decoded into what the descriptor table serves
//! ([`Filesystem::linux_chmod`] and the others, beneath the grants).

use super::numbers::*;
use crate::addr::Gva;
use crate::errno::Errno;
use crate::fs::{Filesystem, Target, AT_FDCWD};
use crate::view::GuestView;

const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_EMPTY_PATH: u64 = 0x1000;

/// A descriptor argument: Linux takes the low 32 bits as an int.
fn fd(arg: u64) -> i32 {
    i32::from_ne_bytes(arg.to_ne_bytes()[..4].try_into().unwrap_or([0xFF; 4]))
}

/// `path` from `dirfd`; `flags` may hold only `AT_SYMLINK_NOFOLLOW` and
/// `AT_EMPTY_PATH` (`EINVAL` otherwise).
fn at(dirfd: u64, path: u64, flags: u64) -> Result<Target, Errno> {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Target::Path {
        dirfd: fd(dirfd),
        path,
        follow: flags & AT_SYMLINK_NOFOLLOW == 0,
        empty: flags & AT_EMPTY_PATH != 0,
    })
}

/// A path from the working directory.
fn path(path: u64, follow: bool) -> Target {
    Target::Path {
        dirfd: AT_FDCWD,
        path,
        follow,
        empty: false,
    }
}

/// Serves call `nr` if it is one of these; `None` otherwise.
pub(super) fn serve(
    nr: u64,
    [a0, a1, a2, a3, a4, _]: [u64; 6],
    view: &GuestView<'_>,
    fs: &mut Filesystem,
) -> Option<Result<i64, Errno>> {
    Some(match nr {
        CHMOD => fs.linux_chmod(view, path(a0, true), a1),
        FCHMOD => fs.linux_chmod(view, Target::Fd(fd(a0)), a1),
        FCHMODAT => fs.linux_chmod(
            view,
            Target::Path {
                dirfd: fd(a0),
                path: a1,
                follow: true,
                empty: false,
            },
            a2,
        ),
        FCHMODAT2 => at(a0, a1, a3).and_then(|t| fs.linux_chmod(view, t, a2)),
        CHOWN => fs.linux_chown(view, path(a0, true), (a1, a2)),
        LCHOWN => fs.linux_chown(view, path(a0, false), (a1, a2)),
        FCHOWN => fs.linux_chown(view, Target::Fd(fd(a0)), (a1, a2)),
        FCHOWNAT => at(a0, a1, a4).and_then(|t| fs.linux_chown(view, t, (a2, a3))),
        TRUNCATE => fs.linux_truncate(view, a0, i64::from_ne_bytes(a1.to_ne_bytes())),
        UTIMENSAT => utimensat(view, fs, (a0, a1), a2, a3),
        UTIMES => timevals(view, a1).and_then(|t| fs.linux_utimens(view, path(a0, true), t)),
        FUTIMESAT => timevals(view, a2).and_then(|t| {
            let target = Target::Path {
                dirfd: fd(a0),
                path: a1,
                follow: true,
                empty: false,
            };
            fs.linux_utimens(view, target, t)
        }),
        _ => return None,
    })
}

/// `utimensat`: a null path is `futimens` of `dirfd` (no flags, and never
/// the working directory: `EFAULT`, as on Linux).
fn utimensat(
    view: &GuestView<'_>,
    fs: &mut Filesystem,
    (dirfd, path): (u64, u64),
    times: u64,
    flags: u64,
) -> Result<i64, Errno> {
    let target = if path == 0 {
        if fd(dirfd) == AT_FDCWD {
            return Err(Errno::EFAULT);
        }
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        Target::Fd(fd(dirfd))
    } else {
        at(dirfd, path, flags)?
    };
    let times = if times == 0 {
        None
    } else {
        Some(
            view.read_obj::<[i64; 4]>(Gva::new(times))
                .map_err(|_| Errno::EFAULT)?,
        )
    };
    fs.linux_utimens(view, target, times)
}

/// The two `timeval`s of `utimes` as timespecs (null: now).
fn timevals(view: &GuestView<'_>, times: u64) -> Result<Option<[i64; 4]>, Errno> {
    if times == 0 {
        return Ok(None);
    }
    let [a_sec, a_usec, m_sec, m_usec]: [i64; 4] =
        view.read_obj(Gva::new(times)).map_err(|_| Errno::EFAULT)?;
    if !(0..1_000_000).contains(&a_usec) || !(0..1_000_000).contains(&m_usec) {
        return Err(Errno::EINVAL);
    }
    Ok(Some([a_sec, a_usec * 1000, m_sec, m_usec * 1000]))
}
