//! Granted directories: which host directories a guest may see, where they
//! appear in its filesystem, and how a guest path is resolved beneath one
//! of them and never outside it.
//!
//! A guest path is first made absolute and normalized lexically (`.` and
//! empty components dropped, `..` removed with its parent, and `..` at `/`
//! staying at `/`, as in a chroot). The longest grant whose guest path is a
//! prefix picks the host directory; the rest is resolved by the kernel with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, which refuses
//! (EXDEV) any symlink that is absolute or climbs out of the granted
//! directory, and `/proc` magic links (ELOOP).
//!
//! Which grant a path is found under does not decide what may change:
//! when grants nest (one's directory inside another's), the same host
//! directory has more than one guest path (a parent renamed, a symlink),
//! so a change is decided by the innermost grant whose directory holds the
//! changed directory, found by device and inode walking up from it
//! ([`Grants::deciding`]), and granted directories and those above them
//! stay where they are ([`Grants::holds_a_grant`]).

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use kvmini_abi::fs::PATH_MAX;
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use crate::errno::Errno;

/// Errors of parsing and opening grants of host directories.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The guest path of a grant is not absolute or not clean.
    #[error("grant {spec}: the guest path must be absolute, like /data")]
    BadGuestPath {
        /// The grant as written (`HOST:GUEST` for a library grant).
        spec: String,
    },
    /// A grant ends in something that is neither a guest path nor `:ro`
    /// or `:rw`.
    #[error(
        "grant {spec}: unknown suffix :{suffix} (a grant ends in :ro or :rw, \
         and a guest path is absolute, like HOST:/data)"
    )]
    UnknownSuffix {
        /// The grant as written.
        spec: String,
        /// What follows its last `:`.
        suffix: String,
    },
    /// The host directory cannot be opened.
    #[error("cannot open the granted host directory {}", .path.display())]
    Open {
        /// The host path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Two grants at the same guest path (after normalization: `/d`, `/d/`,
    /// `//d` and `/x/../d` are one path).
    #[error("guest path {0} is granted twice")]
    Duplicate(String),
}

/// One grant written `HOST[:/GUEST][:ro|:rw]`, parsed but not opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantSpec {
    /// The host directory.
    pub host: PathBuf,
    /// Where the guest sees it (absolute, normalized).
    pub guest: String,
    /// Writes, creates, renames and deletes give EROFS.
    pub read_only: bool,
}

impl GrantSpec {
    /// Parses `HOST`, `HOST:/GUEST`, and either followed by `:ro` or by
    /// `:rw` (the default, written out). A last `:` followed by anything
    /// else without a `/` is an error, so that a mistyped mode never
    /// becomes part of a guest path.
    pub fn parse(spec: &str) -> Result<Self, GrantError> {
        let (rest, read_only) = match spec.rsplit_once(':') {
            Some((rest, "ro")) => (rest, true),
            Some((rest, "rw")) => (rest, false),
            Some((_, suffix)) if !suffix.contains('/') => {
                return Err(GrantError::UnknownSuffix {
                    spec: spec.to_owned(),
                    suffix: suffix.to_owned(),
                })
            }
            _ => (spec, false),
        };
        let (host, guest) = match rest.rfind(":/") {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, "/"),
        };
        if host.is_empty() {
            return Err(GrantError::BadGuestPath {
                spec: spec.to_owned(),
            });
        }
        let guest = normalize_guest(guest).ok_or_else(|| GrantError::BadGuestPath {
            spec: spec.to_owned(),
        })?;
        Ok(GrantSpec {
            host: PathBuf::from(host),
            guest,
            read_only,
        })
    }
}

/// A guest path of a grant, absolute and normalized (`/`, `/a/b`), or
/// `None` when it is not absolute or has an over-long name.
pub fn normalize_guest(guest: &str) -> Option<String> {
    if !guest.starts_with('/') {
        return None;
    }
    let components = normalize(guest.as_bytes()).ok()?;
    Some(format!(
        "/{}",
        components
            .iter()
            .map(|c| String::from_utf8_lossy(c))
            .collect::<Vec<_>>()
            .join("/")
    ))
}

/// An opened grant.
#[derive(Debug)]
pub struct Grant {
    /// The guest path, split into components (empty for `/`).
    guest: Vec<Vec<u8>>,
    /// The host directory, opened `O_PATH`: the root of every lookup.
    dir: OwnedFd,
    /// Its identity on the host.
    id: FileId,
    /// The spec it came from.
    pub spec: GrantSpec,
}

/// A file's identity on the host: device and inode number.
type FileId = (u64, u64);

/// The identity of an open file.
fn file_id(fd: BorrowedFd<'_>) -> Result<FileId, Errno> {
    let st = rustix::fs::fstat(fd).map_err(Errno::from)?;
    Ok((st.st_dev, st.st_ino))
}

/// The parent directory of the directory `dir` on the host (`..`, not
/// confined: only its identity is used), opened `O_PATH`.
fn host_parent(dir: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        dir,
        c"..",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::empty(),
    )
    .map_err(Errno::from)
}

/// Most directories a walk up the host tree visits (`../` repeated fits
/// in PATH_MAX): deeper than any path a guest can name.
const MAX_WALK: u64 = PATH_MAX / 3 - 1;

/// Most symlinks followed in the last component of a path (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// Where the last component of a path lives, symlinks in it followed.
#[derive(Debug)]
pub enum Location {
    /// A name in a directory (opened `O_PATH`); it may not exist.
    Entry {
        /// The directory holding the name.
        dir: OwnedFd,
        /// The name: not a symlink when it was looked up.
        name: CString,
    },
    /// The path names a directory (it ended in `/` or `.`, or a symlink in
    /// it did): opened `O_PATH`.
    Directory(OwnedFd),
}

impl Grant {
    /// True when the guest may not change anything under this grant.
    pub fn read_only(&self) -> bool {
        self.spec.read_only
    }
}

/// A path resolved to a grant: the grant and the path relative to it.
#[derive(Debug)]
pub struct Resolved<'a> {
    /// The grant it falls under.
    pub grant: &'a Grant,
    /// Components below the grant's directory (empty: the directory itself).
    pub rest: Vec<Vec<u8>>,
    /// How the guest's path ended: a trailing `/` or `.` means "directory"
    /// to Linux, which normalization alone would forget.
    pub trailing: Trailing,
}

/// The end of a guest path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Trailing {
    /// A name (`a/b`).
    #[default]
    Name,
    /// A slash (`a/b/`): the path must name a directory.
    Slash,
    /// A final `.` (`a/b/.`, `.`): a directory, and not one that can be
    /// removed or renamed through this name.
    Dot,
}

impl Trailing {
    /// How `path` ends.
    pub fn of(path: &[u8]) -> Self {
        let last = path.rsplit(|&b| b == b'/').next().unwrap_or(b"");
        if last == b"." {
            Trailing::Dot
        } else if path.ends_with(b"/") && path.iter().any(|&b| b != b'/') {
            Trailing::Slash
        } else {
            Trailing::Name
        }
    }

    /// True unless the path ends in a plain name.
    pub fn is_dir(self) -> bool {
        self != Trailing::Name
    }
}

impl Resolved<'_> {
    /// The relative path for `openat2`, `.` for the grant's directory.
    pub fn relative(&self) -> CString {
        join(&self.rest)
    }

    /// Opens the path beneath the grant (as a directory only, when the
    /// path ended in `/` or `.`).
    pub fn open(&self, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        let flags = if self.trailing.is_dir() {
            flags | OFlags::DIRECTORY
        } else {
            flags
        };
        open_beneath(&self.grant.dir, &self.relative(), flags, mode)
    }

    /// True when the path names an existing directory; the errno of the
    /// lookup otherwise (ENOTDIR for a file).
    pub fn is_directory(&self) -> Result<(), Errno> {
        open_beneath(
            &self.grant.dir,
            &self.relative(),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .map(drop)
    }

    /// Finds where the object the path names lives, following symlinks in
    /// its last component (`follow`) as the kernel would beneath the
    /// grant: an absolute symlink is EXDEV and one that climbs out of the
    /// grant fails when its directory is opened, as in every lookup.
    pub fn location(&self, follow: bool) -> Result<Location, Errno> {
        if self.trailing.is_dir() || self.rest.is_empty() {
            return self
                .open(OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
                .map(Location::Directory);
        }
        let mut path = self.rest.join(&b'/');
        for _ in 0..=MAX_SYMLINKS {
            let (dir_part, name): (&[u8], &[u8]) = match path.iter().rposition(|&b| b == b'/') {
                Some(i) => (&path[..i], &path[i + 1..]),
                None => (b".", &path[..]),
            };
            if matches!(name, b"" | b"." | b"..") {
                let whole = CString::new(path.clone()).map_err(|_| Errno::EINVAL)?;
                return open_beneath(
                    &self.grant.dir,
                    &whole,
                    OFlags::PATH | OFlags::DIRECTORY,
                    Mode::empty(),
                )
                .map(Location::Directory);
            }
            let dir_c = CString::new(dir_part).map_err(|_| Errno::EINVAL)?;
            let dir = open_beneath(
                &self.grant.dir,
                &dir_c,
                OFlags::PATH | OFlags::DIRECTORY,
                Mode::empty(),
            )?;
            let name_c = CString::new(name).map_err(|_| Errno::EINVAL)?;
            if !follow {
                return Ok(Location::Entry { dir, name: name_c });
            }
            let target = match rustix::fs::readlinkat(&dir, name_c.as_c_str(), Vec::new()) {
                Ok(target) => target.into_bytes(),
                // Not a symlink, or nothing there yet.
                Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOENT => {
                    return Ok(Location::Entry { dir, name: name_c })
                }
                Err(e) => return Err(Errno::from(e)),
            };
            if target.is_empty() {
                return Err(Errno::ENOENT);
            }
            if target.starts_with(b"/") {
                return Err(Errno::EXDEV);
            }
            let mut next = dir_part.to_vec();
            next.push(b'/');
            next.extend_from_slice(&target);
            path = next;
        }
        Err(Errno::ELOOP)
    }

    /// Splits off the last component: the parent directory (opened
    /// `O_PATH` beneath the grant) and the name in it. The grant's own
    /// directory has no name in any parent the guest can see: EBUSY.
    pub fn parent_and_name(&self) -> Result<(OwnedFd, CString), Errno> {
        let Some((name, parent)) = self.rest.split_last() else {
            return Err(Errno::EBUSY);
        };
        let dir = open_beneath(
            &self.grant.dir,
            &join(parent),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        let name = CString::new(name.clone()).map_err(|_| Errno::EINVAL)?;
        Ok((dir, name))
    }
}

fn join(components: &[Vec<u8>]) -> CString {
    if components.is_empty() {
        return CString::from(c".");
    }
    let joined = components.join(&b'/');
    // Components never contain NUL: guest paths are read up to their NUL.
    CString::new(joined).unwrap_or_else(|_| CString::from(c"."))
}

fn open_beneath(
    dir: &OwnedFd,
    path: &CString,
    flags: OFlags,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    // openat2 answers EAGAIN when a rename or mount anywhere on the host
    // raced with a `..` it was resolving; the kernel asks callers to retry.
    let mut tries = 0;
    loop {
        let result = rustix::fs::openat2(
            dir,
            path.as_c_str(),
            flags | OFlags::CLOEXEC,
            mode,
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        );
        match result {
            Err(e) if e == rustix::io::Errno::AGAIN && tries < OPENAT2_RETRIES => tries += 1,
            other => return other.map_err(Errno::from),
        }
    }
}

/// How often an openat2 that raced with a rename or mount is retried.
const OPENAT2_RETRIES: u32 = 64;

/// Splits a guest path into normalized components. Relative paths are
/// taken from `/` (guests have no working directory).
pub fn normalize(path: &[u8]) -> Result<Vec<Vec<u8>>, Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            name => {
                if name.len() > 255 {
                    return Err(Errno::ENAMETOOLONG);
                }
                out.push(name.to_vec());
            }
        }
    }
    Ok(out)
}

/// The grants of one sandbox.
#[derive(Debug, Default)]
pub struct Grants {
    grants: Vec<Grant>,
    /// Whether one grant's directory lies inside another's (or two grants
    /// share one): only then can one host directory be reached through
    /// more than one grant, and only then is identity checked.
    nested: bool,
    /// Every directory above a granted one, up to the host's root, by
    /// identity: renaming or removing one would move a grant.
    above: Vec<FileId>,
}

impl Grants {
    /// Opens every grant's host directory. Guest paths are normalized
    /// first; two grants at one guest path are [`GrantError::Duplicate`].
    pub fn open(specs: &[GrantSpec]) -> Result<Self, GrantError> {
        let mut grants: Vec<Grant> = Vec::new();
        for spec in specs {
            let guest_path =
                normalize_guest(&spec.guest).ok_or_else(|| GrantError::BadGuestPath {
                    spec: format!("{}:{}", spec.host.display(), spec.guest),
                })?;
            if grants.iter().any(|g| g.spec.guest == guest_path) {
                return Err(GrantError::Duplicate(guest_path));
            }
            let open_error = |source: std::io::Error| GrantError::Open {
                path: spec.host.clone(),
                source,
            };
            let dir = rustix::fs::open(
                &spec.host,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| open_error(e.into()))?;
            let id = file_id(dir.as_fd())
                .map_err(|e| open_error(std::io::Error::from_raw_os_error(e.code())))?;
            let guest = normalize(guest_path.as_bytes()).unwrap_or_default();
            grants.push(Grant {
                guest,
                dir,
                id,
                spec: GrantSpec {
                    guest: guest_path,
                    ..spec.clone()
                },
            });
        }
        let mut above = Vec::new();
        for grant in &grants {
            let mut dir = host_parent(grant.dir.as_fd());
            let mut last = grant.id;
            for _ in 0..MAX_WALK {
                let Ok(parent) = dir else { break };
                let Ok(id) = file_id(parent.as_fd()) else {
                    break;
                };
                if id == last {
                    break;
                }
                above.push(id);
                last = id;
                dir = host_parent(parent.as_fd());
            }
        }
        above.sort_unstable();
        above.dedup();
        let nested = grants.iter().enumerate().any(|(i, g)| {
            above.binary_search(&g.id).is_ok() || grants[..i].iter().any(|h| h.id == g.id)
        });
        Ok(Grants {
            grants,
            nested,
            above,
        })
    }

    /// True when a host directory can be reached through more than one
    /// grant.
    pub fn nested(&self) -> bool {
        self.nested
    }

    /// The grant that decides what may change in the host directory `dir`
    /// (reached through `via`): the innermost grant that holds it, found
    /// by identity, walking up from `dir` to the first granted directory,
    /// whatever path led there. A directory granted twice is read-only if
    /// either grant is.
    pub fn deciding<'g>(&'g self, dir: BorrowedFd<'_>, via: &'g Grant) -> Result<&'g Grant, Errno> {
        if !self.nested {
            return Ok(via);
        }
        // `..`, `../..`, ...: one stat per level, each resolved by the
        // kernel from `dir` itself.
        let mut id = file_id(dir)?;
        let mut up: Vec<u8> = Vec::new();
        for _ in 0..MAX_WALK {
            if let Some(grant) = self.by_id(id) {
                return Ok(grant);
            }
            up.extend_from_slice(b"../");
            let path = CString::new(up.as_slice()).map_err(|_| Errno::EINVAL)?;
            let st =
                rustix::fs::statat(dir, path.as_c_str(), AtFlags::empty()).map_err(Errno::from)?;
            let parent_id = (st.st_dev, st.st_ino);
            if parent_id == id {
                break;
            }
            id = parent_id;
        }
        // Not below any granted directory any more (the host moved it):
        // the grant of the path it was reached by.
        Ok(via)
    }

    /// The grant whose directory is `id` (a read-only one first).
    fn by_id(&self, id: FileId) -> Option<&Grant> {
        let mut found = None;
        for grant in self.grants.iter().filter(|g| g.id == id) {
            if grant.read_only() {
                return Some(grant);
            }
            found = Some(grant);
        }
        found
    }

    /// True when `name` in `dir` is a granted directory or one above a
    /// granted directory: like a mount point, it cannot be renamed, removed
    /// or replaced (EBUSY). Names that do not exist are not.
    pub fn holds_a_grant(&self, dir: BorrowedFd<'_>, name: &CString) -> bool {
        if !self.nested {
            return false;
        }
        match rustix::fs::statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let id = (st.st_dev, st.st_ino);
                self.grants.iter().any(|g| g.id == id) || self.above.binary_search(&id).is_ok()
            }
            Err(_) => false,
        }
    }

    /// True when nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// The grants, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &Grant> {
        self.grants.iter()
    }

    /// Finds the grant a guest path falls under (the longest matching guest
    /// prefix). Paths under no grant do not exist for the guest: ENOENT.
    pub fn resolve(&self, path: &[u8]) -> Result<Resolved<'_>, Errno> {
        let components = normalize(path)?;
        let grant = self
            .grants
            .iter()
            .filter(|g| components.starts_with(&g.guest))
            .max_by_key(|g| g.guest.len())
            .ok_or(Errno::ENOENT)?;
        Ok(Resolved {
            grant,
            rest: components[grant.guest.len()..].to_vec(),
            trailing: Trailing::of(path),
        })
    }
}

#[cfg(test)]
mod tests;

/// The cost of the identity check, printed rather than asserted (see
/// docs/performance.md): `cargo test -p kvmini --lib grant::cost --
/// --ignored --nocapture`.
#[cfg(test)]
mod cost {
    use super::*;
    use std::time::Instant;

    /// The best of five rounds of `f` run 5000 times, per run, in µs.
    fn per_call(mut f: impl FnMut()) -> f64 {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            for _ in 0..5000 {
                f();
            }
            best = best.min(start.elapsed().as_secs_f64() / 5000.0);
        }
        best * 1e6
    }

    #[test]
    #[ignore = "a measurement: prints, asserts nothing about time"]
    fn identity_check_per_call() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("a/b/c/d/e")).unwrap();
        std::fs::create_dir_all(r.join("ro")).unwrap();
        let spec = GrantSpec::parse(r.to_str().unwrap()).unwrap();
        let ro = GrantSpec::parse(&format!("{}/ro:/ro:ro", r.display())).unwrap();
        let grants = Grants::open(&[spec, ro]).unwrap();
        assert!(grants.nested());
        for path in [&b"/f"[..], b"/a/b/c/d/e/f"] {
            std::fs::write(r.join(String::from_utf8_lossy(&path[1..]).as_ref()), b"x").unwrap();
            let resolved = grants.resolve(path).unwrap();
            let open = per_call(|| drop(resolved.open(OFlags::WRONLY, Mode::empty()).unwrap()));
            let location = per_call(|| drop(resolved.location(true).unwrap()));
            let Location::Entry { dir, .. } = resolved.location(true).unwrap() else {
                panic!("a file")
            };
            let deciding = per_call(|| {
                grants.deciding(dir.as_fd(), resolved.grant).unwrap();
            });
            eprintln!(
                "{}: open+close {open:.1} us, location {location:.1} us, \
                 deciding grant {deciding:.1} us",
                String::from_utf8_lossy(path)
            );
        }
    }
}
