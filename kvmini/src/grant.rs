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

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use kvmini_abi::errno;
use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Errors of parsing and opening `--dir` grants.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The guest path of a grant is not absolute or not clean.
    #[error("--dir {spec}: the guest path must be absolute, like /data")]
    BadGuestPath {
        /// The `--dir` argument.
        spec: String,
    },
    /// The host directory cannot be opened.
    #[error("--dir {}: cannot open the host directory", .path.display())]
    Open {
        /// The host path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Two grants at the same guest path.
    #[error("--dir: {0} is granted twice")]
    Duplicate(String),
}

/// One `--dir HOST[:/GUEST][:ro]` argument, parsed but not opened.
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
    /// Parses `HOST`, `HOST:/GUEST`, `HOST:ro` or `HOST:/GUEST:ro`.
    pub fn parse(spec: &str) -> Result<Self, GrantError> {
        let (rest, read_only) = match spec.strip_suffix(":ro") {
            Some(rest) => (rest, true),
            None => (spec, false),
        };
        let (host, guest) = match rest.rfind(":/") {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, "/"),
        };
        let components = normalize(guest.as_bytes()).map_err(|_| GrantError::BadGuestPath {
            spec: spec.to_owned(),
        })?;
        if host.is_empty() || !guest.starts_with('/') {
            return Err(GrantError::BadGuestPath {
                spec: spec.to_owned(),
            });
        }
        let guest = format!(
            "/{}",
            components
                .iter()
                .map(|c| String::from_utf8_lossy(c))
                .collect::<Vec<_>>()
                .join("/")
        );
        Ok(GrantSpec {
            host: PathBuf::from(host),
            guest,
            read_only,
        })
    }
}

/// An opened grant.
#[derive(Debug)]
pub struct Grant {
    /// The guest path, split into components (empty for `/`).
    guest: Vec<Vec<u8>>,
    /// The host directory, opened `O_PATH`: the root of every lookup.
    dir: OwnedFd,
    /// The spec it came from.
    pub spec: GrantSpec,
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
    pub fn open(&self, flags: OFlags, mode: Mode) -> Result<OwnedFd, i32> {
        let flags = if self.trailing.is_dir() {
            flags | OFlags::DIRECTORY
        } else {
            flags
        };
        open_beneath(&self.grant.dir, &self.relative(), flags, mode)
    }

    /// True when the path names an existing directory; the errno of the
    /// lookup otherwise (ENOTDIR for a file).
    pub fn is_directory(&self) -> Result<(), i32> {
        open_beneath(
            &self.grant.dir,
            &self.relative(),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .map(drop)
    }

    /// Splits off the last component: the parent directory (opened
    /// `O_PATH` beneath the grant) and the name in it. The grant's own
    /// directory has no name in any parent the guest can see: EBUSY.
    pub fn parent_and_name(&self) -> Result<(OwnedFd, CString), i32> {
        let Some((name, parent)) = self.rest.split_last() else {
            return Err(errno::EBUSY);
        };
        let dir = open_beneath(
            &self.grant.dir,
            &join(parent),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        let name = CString::new(name.clone()).map_err(|_| errno::EINVAL)?;
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

fn open_beneath(dir: &OwnedFd, path: &CString, flags: OFlags, mode: Mode) -> Result<OwnedFd, i32> {
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
            other => return other.map_err(|e| e.raw_os_error()),
        }
    }
}

/// How often an openat2 that raced with a rename or mount is retried.
const OPENAT2_RETRIES: u32 = 64;

/// Splits a guest path into normalized components. Relative paths are
/// taken from `/` (guests have no working directory).
pub fn normalize(path: &[u8]) -> Result<Vec<Vec<u8>>, i32> {
    if path.is_empty() {
        return Err(errno::ENOENT);
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
                    return Err(errno::ENAMETOOLONG);
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
}

impl Grants {
    /// Opens every grant's host directory.
    pub fn open(specs: &[GrantSpec]) -> Result<Self, GrantError> {
        let mut grants: Vec<Grant> = Vec::new();
        for spec in specs {
            if grants.iter().any(|g| g.spec.guest == spec.guest) {
                return Err(GrantError::Duplicate(spec.guest.clone()));
            }
            let dir = rustix::fs::open(
                &spec.host,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| GrantError::Open {
                path: spec.host.clone(),
                source: e.into(),
            })?;
            let guest = normalize(spec.guest.as_bytes()).unwrap_or_default();
            grants.push(Grant {
                guest,
                dir,
                spec: spec.clone(),
            });
        }
        Ok(Grants { grants })
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
    pub fn resolve(&self, path: &[u8]) -> Result<Resolved<'_>, i32> {
        let components = normalize(path)?;
        let grant = self
            .grants
            .iter()
            .filter(|g| components.starts_with(&g.guest))
            .max_by_key(|g| g.guest.len())
            .ok_or(errno::ENOENT)?;
        Ok(Resolved {
            grant,
            rest: components[grant.guest.len()..].to_vec(),
            trailing: Trailing::of(path),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let g = GrantSpec::parse("./data").unwrap();
        assert_eq!(
            (g.host, g.guest.as_str(), g.read_only),
            (PathBuf::from("./data"), "/", false)
        );
        let g = GrantSpec::parse("/srv/x:/mnt/x:ro").unwrap();
        assert_eq!(
            (g.host, g.guest.as_str(), g.read_only),
            (PathBuf::from("/srv/x"), "/mnt/x", true)
        );
        let g = GrantSpec::parse("dir:ro").unwrap();
        assert_eq!((g.guest.as_str(), g.read_only), ("/", true));
        let g = GrantSpec::parse("dir:/a/../b/").unwrap();
        assert_eq!(g.guest, "/b");
        assert!(GrantSpec::parse(":/x").is_err());
    }

    #[test]
    fn trailing_slashes_and_dots_are_kept() {
        assert_eq!(Trailing::of(b"a/b"), Trailing::Name);
        assert_eq!(Trailing::of(b"a/b/"), Trailing::Slash);
        assert_eq!(Trailing::of(b"a/b//"), Trailing::Slash);
        assert_eq!(Trailing::of(b"a/."), Trailing::Dot);
        assert_eq!(Trailing::of(b"."), Trailing::Dot);
        assert_eq!(Trailing::of(b"/"), Trailing::Name);
        assert_eq!(Trailing::of(b"a/.."), Trailing::Name);
    }

    #[test]
    fn normalization_never_climbs_above_root() {
        let n = |p: &str| normalize(p.as_bytes()).unwrap();
        assert_eq!(
            n("/../../etc/passwd"),
            [b"etc".to_vec(), b"passwd".to_vec()]
        );
        assert_eq!(n("a/./b//../c"), [b"a".to_vec(), b"c".to_vec()]);
        assert!(n("/..").is_empty());
        assert_eq!(normalize(b""), Err(errno::ENOENT));
        assert_eq!(normalize(&[b'x'; 256]), Err(errno::ENAMETOOLONG));
    }

    #[test]
    fn the_longest_grant_wins_and_others_are_enoent() {
        let root = tempfile::tempdir().unwrap();
        let sub = tempfile::tempdir().unwrap();
        let grants = Grants::open(&[
            GrantSpec::parse(root.path().to_str().unwrap()).unwrap(),
            GrantSpec::parse(&format!("{}:/data/sub", sub.path().display())).unwrap(),
        ])
        .unwrap();
        let r = grants.resolve(b"/data/sub/x").unwrap();
        assert_eq!(r.grant.spec.guest, "/data/sub");
        assert_eq!(r.relative().as_bytes(), b"x");
        let r = grants.resolve(b"/data/subx").unwrap();
        assert_eq!(r.grant.spec.guest, "/");
        let only_sub =
            Grants::open(&[GrantSpec::parse(&format!("{}:/data", sub.path().display())).unwrap()])
                .unwrap();
        assert_eq!(only_sub.resolve(b"/etc/passwd").unwrap_err(), errno::ENOENT);
    }
}
