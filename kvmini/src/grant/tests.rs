//! Grant specs, path normalization and resolution beneath grants.

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
fn a_grant_ends_in_ro_or_rw_and_nothing_else() {
    let g = GrantSpec::parse("dir:/p:rw").unwrap();
    assert_eq!((g.guest.as_str(), g.read_only), ("/p", false));
    let g = GrantSpec::parse("dir:rw").unwrap();
    assert_eq!((g.guest.as_str(), g.read_only), ("/", false));
    let g = GrantSpec::parse("a:b:/p:ro").unwrap();
    assert_eq!(
        (g.host, g.guest.as_str(), g.read_only),
        (PathBuf::from("a:b"), "/p", true)
    );
    for (spec, suffix) in [
        ("dir:/p:rx", "rx"),
        ("dir:/p:RO", "RO"),
        ("dir:p", "p"),
        ("dir:", ""),
        ("dir:/p:ro:x", "x"),
    ] {
        match GrantSpec::parse(spec) {
            Err(GrantError::UnknownSuffix { suffix: s, .. }) => assert_eq!(s, suffix),
            other => panic!("{spec}: {other:?}"),
        }
    }
}

#[test]
fn guest_paths_of_grants_are_absolute_and_normalized() {
    let n = normalize_guest;
    assert_eq!(n("/").as_deref(), Some("/"));
    assert_eq!(n("//").as_deref(), Some("/"));
    assert_eq!(n("/..").as_deref(), Some("/"));
    assert_eq!(n("/d/").as_deref(), Some("/d"));
    assert_eq!(n("//d/./").as_deref(), Some("/d"));
    assert_eq!(n("/x/../d").as_deref(), Some("/d"));
    for bad in ["", "d", "./d", "d/.."] {
        assert_eq!(n(bad), None, "{bad:?}");
    }
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
    assert_eq!(normalize(b""), Err(Errno::ENOENT));
    assert_eq!(normalize(&[b'x'; 256]), Err(Errno::ENAMETOOLONG));
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
    assert_eq!(only_sub.resolve(b"/etc/passwd").unwrap_err(), Errno::ENOENT);
}

/// A name may be 255 bytes long (NAME_MAX), anywhere in a path, and no
/// longer.
#[test]
fn names_of_255_bytes_are_accepted() {
    let long = vec![b'n'; 255];
    let mut path = b"/a/".to_vec();
    path.extend_from_slice(&long);
    assert_eq!(normalize(&path), Ok(vec![b"a".to_vec(), long.clone()]));
    path.push(b'n');
    assert_eq!(normalize(&path), Err(Errno::ENAMETOOLONG));
}

/// The host tree the resolution tests run in: `a/b/` (directories), `f`
/// (a file), `ro/sub/`, and symlinks `lf -> f`, `la -> a`, `a/lb -> b`,
/// `up -> ..`, `a/up2 -> ../..`, `abs -> /etc`, `loop1 <-> loop2`, and
/// `long` to a name longer than a name can be.
fn tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("a/b")).unwrap();
    std::fs::create_dir_all(r.join("ro/sub")).unwrap();
    std::fs::write(r.join("f"), b"f").unwrap();
    for (link, target) in [
        ("lf", "f"),
        ("la", "a"),
        ("a/lb", "b"),
        ("up", ".."),
        ("a/up2", "../.."),
        ("abs", "/etc"),
        ("loop1", "loop2"),
        ("loop2", "loop1"),
        ("long", &"x".repeat(300)),
    ] {
        std::os::unix::fs::symlink(target, r.join(link)).unwrap();
    }
    root
}

fn grant_of(path: &std::path::Path, guest: &str, mode: &str) -> GrantSpec {
    GrantSpec::parse(&format!("{}:{guest}{mode}", path.display())).unwrap()
}

/// The host identity of `path`.
fn id_of(path: &std::path::Path) -> FileId {
    use std::os::unix::fs::MetadataExt;
    let st = std::fs::metadata(path).unwrap();
    (st.dev(), st.ino())
}

fn fd_id(fd: &OwnedFd) -> FileId {
    file_id(fd.as_fd()).unwrap()
}

/// Where `path` leads with `follow`: the directory's identity, and the
/// name for an entry (`None` for a directory).
fn located(grants: &Grants, path: &[u8], follow: bool) -> Result<(FileId, Option<Vec<u8>>), Errno> {
    match grants.resolve(path)?.location(follow)? {
        Location::Entry { dir, name } => Ok((fd_id(&dir), Some(name.as_bytes().to_vec()))),
        Location::Directory(dir) => Ok((fd_id(&dir), None)),
    }
}

/// Relative paths for openat2 are the components below the grant, `.`
/// for the grant's own directory.
#[test]
fn relative_paths_are_below_the_grant() {
    let root = tree();
    let grants = Grants::open(&[grant_of(root.path(), "/data", "")]).unwrap();
    for (path, relative) in [
        (&b"/data"[..], &b"."[..]),
        (b"/data/", b"."),
        (b"/data/a/b", b"a/b"),
        (b"/data/a/../f", b"f"),
    ] {
        let resolved = grants.resolve(path).unwrap();
        assert_eq!(resolved.relative().as_bytes(), relative, "{path:?}");
    }
}

/// A path ending in `/` or `.` names a directory: a file there is
/// ENOTDIR, when opened, looked up or located.
#[test]
fn a_trailing_slash_or_dot_asks_for_a_directory() {
    let root = tree();
    let r = root.path();
    let grants = Grants::open(&[grant_of(r, "/", "")]).unwrap();
    let open = |path: &[u8]| {
        grants
            .resolve(path)
            .unwrap()
            .open(OFlags::RDONLY, Mode::empty())
            .map(|fd| fd_id(&fd))
    };
    assert_eq!(open(b"/f"), Ok(id_of(&r.join("f"))));
    assert_eq!(open(b"/a/"), Ok(id_of(&r.join("a"))));
    for path in [&b"/f/"[..], b"/f/.", b"/lf/"] {
        assert_eq!(open(path), Err(Errno::ENOTDIR), "{path:?}");
        assert_eq!(
            grants.resolve(path).unwrap().is_directory(),
            Err(Errno::ENOTDIR)
        );
        assert_eq!(located(&grants, path, true), Err(Errno::ENOTDIR));
        assert_eq!(located(&grants, path, false), Err(Errno::ENOTDIR));
    }
    let is_dir = |path: &[u8]| grants.resolve(path).unwrap().is_directory();
    assert_eq!(is_dir(b"/a"), Ok(()));
    assert_eq!(is_dir(b"/la"), Ok(()));
    assert_eq!(is_dir(b"/f"), Err(Errno::ENOTDIR));
    assert_eq!(is_dir(b"/missing"), Err(Errno::ENOENT));
    assert_eq!(is_dir(b"/abs"), Err(Errno::EXDEV));
    assert_eq!(is_dir(b"/up"), Err(Errno::EXDEV));
}

/// Where a path's last component lives: a name in its directory, the
/// symlinks in it followed only when asked, and a directory for the
/// grant's root and paths ending in `/` or `.`.
#[test]
fn locations_follow_the_last_symlink_beneath_the_grant() {
    let root = tree();
    let r = root.path();
    let grants = Grants::open(&[grant_of(r, "/", "")]).unwrap();
    let (top, a, b) = (id_of(r), id_of(&r.join("a")), id_of(&r.join("a/b")));
    let entry = |dir, name: &str| Ok((dir, Some(name.as_bytes().to_vec())));
    for (path, follow, expected) in [
        (&b"/"[..], true, Ok((top, None))),
        (b"/", false, Ok((top, None))),
        (b"/a/.", true, Ok((a, None))),
        (b"/a/b/", false, Ok((b, None))),
        (b"/f", true, entry(top, "f")),
        (b"/missing", true, entry(top, "missing")),
        (b"/a/b/new", true, entry(b, "new")),
        (b"/lf", false, entry(top, "lf")),
        (b"/lf", true, entry(top, "f")),
        (b"/la", true, entry(top, "a")),
        (b"/a/lb", true, entry(a, "b")),
        (b"/a/lb", false, entry(a, "lb")),
        (b"/up", false, entry(top, "up")),
        (b"/a/up2", false, entry(a, "up2")),
        (b"/missing/x", true, Err(Errno::ENOENT)),
        (b"/f/x", true, Err(Errno::ENOTDIR)),
        (b"/f/x", false, Err(Errno::ENOTDIR)),
        (b"/lf/x", false, Err(Errno::ENOTDIR)),
        (b"/long", false, entry(top, "long")),
        (b"/long", true, Err(Errno::ENAMETOOLONG)),
        // Out of the grant, by a relative or an absolute symlink.
        (b"/up", true, Err(Errno::EXDEV)),
        (b"/a/up2", true, Err(Errno::EXDEV)),
        (b"/abs", true, Err(Errno::EXDEV)),
        (b"/loop1", true, Err(Errno::ELOOP)),
    ] {
        let got = located(&grants, path, follow);
        assert_eq!(
            got,
            expected,
            "{} follow={follow}",
            String::from_utf8_lossy(path)
        );
    }
}

/// A symlink followed beneath a grant that is itself below the host
/// directory it climbs to: `..` out of the grant is EXDEV even though
/// the target exists on the host.
#[test]
fn a_symlink_never_leads_out_of_its_grant() {
    let root = tree();
    let r = root.path();
    let grants = Grants::open(&[grant_of(&r.join("a"), "/", "")]).unwrap();
    assert_eq!(located(&grants, b"/up2", true), Err(Errno::EXDEV));
    assert_eq!(
        located(&grants, b"/lb", true),
        Ok((id_of(&r.join("a")), Some(b"b".to_vec())))
    );
    assert_eq!(
        grants
            .resolve(b"/../f")
            .unwrap()
            .open(OFlags::RDONLY, Mode::empty())
            .err(),
        Some(Errno::ENOENT)
    );
}

/// Up to 40 symlinks are followed in a last component, as Linux does;
/// the 41st is ELOOP.
#[test]
fn forty_symlinks_are_followed_and_no_more() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::write(r.join("end"), b"").unwrap();
    for i in 0..41 {
        let target = if i == 0 {
            "end".to_owned()
        } else {
            format!("s{}", i - 1)
        };
        std::os::unix::fs::symlink(target, r.join(format!("s{i}"))).unwrap();
    }
    let grants = Grants::open(&[grant_of(r, "/", "")]).unwrap();
    assert_eq!(
        located(&grants, b"/s39", true),
        Ok((id_of(r), Some(b"end".to_vec())))
    );
    assert_eq!(located(&grants, b"/s40", true), Err(Errno::ELOOP));
}

/// The parent of a path and its last name; the grant's own directory has
/// none the guest can see.
#[test]
fn parents_and_names() {
    let root = tree();
    let r = root.path();
    let grants = Grants::open(&[grant_of(r, "/g", "")]).unwrap();
    let split = |path: &[u8]| {
        grants
            .resolve(path)
            .unwrap()
            .parent_and_name()
            .map(|(dir, name)| (fd_id(&dir), name.as_bytes().to_vec()))
    };
    assert_eq!(split(b"/g/f"), Ok((id_of(r), b"f".to_vec())));
    assert_eq!(
        split(b"/g/a/b/new"),
        Ok((id_of(&r.join("a/b")), b"new".to_vec()))
    );
    assert_eq!(split(b"/g/a/b/.."), Ok((id_of(r), b"a".to_vec())));
    assert_eq!(split(b"/g"), Err(Errno::EBUSY));
    assert_eq!(split(b"/g/x/../"), Err(Errno::EBUSY));
    assert_eq!(split(b"/g/missing/x"), Err(Errno::ENOENT));
    assert_eq!(split(b"/g/f/x"), Err(Errno::ENOTDIR));
    assert_eq!(split(b"/g/up/x"), Err(Errno::EXDEV));
}

/// Opening grants: guest paths normalized and each given once, host
/// directories that exist, in the order given.
#[test]
fn grants_open_once_per_guest_path() {
    let root = tree();
    let r = root.path();
    for twice in ["/d/", "//d", "/x/../d"] {
        let specs = [grant_of(r, "/d", ""), grant_of(&r.join("a"), twice, "")];
        match Grants::open(&specs) {
            Err(GrantError::Duplicate(path)) => assert_eq!(path, "/d"),
            other => panic!("{twice}: {other:?}"),
        }
    }
    let missing = r.join("missing");
    match Grants::open(&[grant_of(&missing, "/", "")]) {
        Err(GrantError::Open { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("{other:?}"),
    }
    let bad = GrantSpec {
        host: r.to_path_buf(),
        guest: "d".into(),
        read_only: false,
    };
    assert!(matches!(
        Grants::open(&[bad]),
        Err(GrantError::BadGuestPath { .. })
    ));
    let none = Grants::open(&[]).unwrap();
    assert!(none.is_empty());
    assert!(!none.nested());
    let grants =
        Grants::open(&[grant_of(r, "/x/", ":ro"), grant_of(&r.join("a"), "/a", "")]).unwrap();
    assert!(!grants.is_empty());
    let listed: Vec<_> = grants
        .iter()
        .map(|g| (g.spec.guest.clone(), g.read_only(), g.id))
        .collect();
    assert_eq!(
        listed,
        [
            ("/x".to_owned(), true, id_of(r)),
            ("/a".to_owned(), false, id_of(&r.join("a"))),
        ]
    );
}

/// Grants are nested when one's directory is inside another's, at any
/// depth, or one directory is granted twice; apart, they are not.
#[test]
fn nesting_is_found_by_identity() {
    let root = tree();
    let r = root.path();
    let other = tempfile::tempdir().unwrap();
    let nested = |specs: &[GrantSpec]| Grants::open(specs).unwrap().nested();
    assert!(!nested(&[grant_of(r, "/", "")]));
    assert!(!nested(&[
        grant_of(&r.join("a"), "/a", ""),
        grant_of(&r.join("ro"), "/ro", "")
    ]));
    assert!(!nested(&[
        grant_of(r, "/", ""),
        grant_of(other.path(), "/o", "")
    ]));
    assert!(nested(&[
        grant_of(r, "/", ""),
        grant_of(&r.join("a/b"), "/b", "")
    ]));
    assert!(nested(&[
        grant_of(&r.join("a/b"), "/b", ""),
        grant_of(r, "/", "")
    ]));
    assert!(nested(&[
        grant_of(&r.join("ro"), "/1", ""),
        grant_of(&r.join("ro"), "/2", "")
    ]));
    assert!(nested(&[
        grant_of(other.path(), "/o", ""),
        grant_of(&r.join("ro/sub"), "/s", ""),
        grant_of(&r.join("la"), "/viala", ""),
        grant_of(r, "/", ""),
    ]));
}

/// With nested grants, the grant that decides a change is the innermost
/// one holding the directory, whatever path reached it; a directory
/// granted twice is read-only if either grant is; a directory under no
/// grant any more is decided by the grant it was reached through.
#[test]
fn the_innermost_grant_decides_by_identity() {
    let root = tree();
    let r = root.path();
    let open_dir = |path: &std::path::Path| {
        rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap()
    };
    let grants =
        Grants::open(&[grant_of(r, "/", ""), grant_of(&r.join("ro"), "/ro", ":ro")]).unwrap();
    let (top, ro) = {
        let mut it = grants.iter();
        (it.next().unwrap(), it.next().unwrap())
    };
    let decides = |path: &std::path::Path, via| {
        grants
            .deciding(open_dir(path).as_fd(), via)
            .unwrap()
            .spec
            .guest
            .clone()
    };
    assert_eq!(decides(&r.join("ro/sub"), top), "/ro");
    assert_eq!(decides(&r.join("ro"), top), "/ro");
    assert_eq!(decides(&r.join("a/b"), top), "/");
    assert_eq!(decides(r, ro), "/");
    let outside = tempfile::tempdir().unwrap();
    assert_eq!(decides(outside.path(), ro), "/ro");
    assert_eq!(decides(outside.path(), top), "/");
    // Not nested: the grant the path was reached by.
    let apart = Grants::open(&[
        grant_of(&r.join("a"), "/a", ""),
        grant_of(&r.join("ro"), "/ro", ":ro"),
    ])
    .unwrap();
    let a = apart.iter().next().unwrap();
    assert_eq!(
        apart
            .deciding(open_dir(&r.join("ro")).as_fd(), a)
            .unwrap()
            .spec
            .guest,
        "/a"
    );
    // One directory granted twice: the read-only grant, in either order.
    for specs in [
        [
            grant_of(&r.join("a"), "/rw", ""),
            grant_of(&r.join("a"), "/ro", ":ro"),
        ],
        [
            grant_of(&r.join("a"), "/ro", ":ro"),
            grant_of(&r.join("a"), "/rw", ""),
        ],
    ] {
        let twice = Grants::open(&specs).unwrap();
        let rw = twice.iter().find(|g| !g.read_only()).unwrap();
        let decided = twice
            .deciding(open_dir(&r.join("a/b")).as_fd(), rw)
            .unwrap();
        assert_eq!(decided.spec.guest, "/ro");
    }
}

/// Granted directories and those above them are held like mount points,
/// but only where grants nest (apart, a grant cannot be reached through
/// another); names that are not there are not held.
#[test]
fn granted_directories_and_those_above_them_are_held() {
    let root = tree();
    let r = root.path();
    std::fs::create_dir_all(r.join("a/b/c/d")).unwrap();
    let grants =
        Grants::open(&[grant_of(r, "/", ""), grant_of(&r.join("a/b/c/d"), "/d", "")]).unwrap();
    let dir = |path: &std::path::Path| {
        rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap()
    };
    let holds = |g: &Grants, at: &std::path::Path, name: &str| {
        g.holds_a_grant(dir(at).as_fd(), &CString::new(name).unwrap())
    };
    for (at, name) in [
        (r.to_path_buf(), "a"),
        (r.join("a"), "b"),
        (r.join("a/b"), "c"),
        (r.join("a/b/c"), "d"),
    ] {
        assert!(holds(&grants, &at, name), "{} {name}", at.display());
    }
    for (at, name) in [
        (r.to_path_buf(), "f"),
        (r.to_path_buf(), "ro"),
        (r.join("a/b/c/d"), "x"),
        (r.to_path_buf(), "missing"),
        (r.join("a"), "lb"),
    ] {
        assert!(!holds(&grants, &at, name), "{} {name}", at.display());
    }
    // The host's own directories above the grant are held as well.
    let parent = r.parent().unwrap();
    let root_name = r.file_name().unwrap().to_str().unwrap();
    assert!(holds(&grants, parent, root_name));
    // Apart: nothing is held.
    let apart = Grants::open(&[grant_of(&r.join("a/b/c/d"), "/d", "")]).unwrap();
    assert!(!holds(&apart, &r.join("a/b/c"), "d"));
}

/// Every descriptor opened beneath a grant is close-on-exec, whether or
/// not the guest asked for it (a guest's `O_CLOEXEC` must not turn it
/// off).
#[test]
fn descriptors_opened_beneath_a_grant_are_close_on_exec() {
    let root = tree();
    let grants = Grants::open(&[grant_of(root.path(), "/", "")]).unwrap();
    let cloexec = |fd: &OwnedFd| {
        rustix::io::fcntl_getfd(fd)
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    };
    for path in [&b"/f"[..], b"/a/"] {
        let resolved = grants.resolve(path).unwrap();
        for flags in [
            OFlags::RDONLY,
            OFlags::RDONLY | OFlags::CLOEXEC,
            OFlags::PATH,
        ] {
            let fd = resolved.open(flags, Mode::empty()).unwrap();
            assert!(cloexec(&fd), "{path:?} {flags:?}");
        }
    }
    let Location::Entry { dir, .. } = grants.resolve(b"/a/b/x").unwrap().location(true).unwrap()
    else {
        panic!("an entry")
    };
    assert!(cloexec(&dir));
    let (dir, _) = grants.resolve(b"/a/x").unwrap().parent_and_name().unwrap();
    assert!(cloexec(&dir));
}

/// Grants made by hand (as a library user may) are normalized like
/// parsed ones: their guest paths, and so the check for a path granted
/// twice. A grant's host path must be a directory, opened close-on-exec.
#[test]
fn grants_made_by_hand_are_normalized_and_must_be_directories() {
    let root = tree();
    let r = root.path();
    let spec = |host: &std::path::Path, guest: &str| GrantSpec {
        host: host.to_path_buf(),
        guest: guest.into(),
        read_only: false,
    };
    let grants = Grants::open(&[spec(r, "/x//y/./")]).unwrap();
    let g = grants.iter().next().unwrap();
    assert_eq!(g.spec.guest, "/x/y");
    assert!(rustix::io::fcntl_getfd(&g.dir)
        .unwrap()
        .contains(rustix::io::FdFlags::CLOEXEC));
    assert_eq!(
        grants.resolve(b"/x/y/f").unwrap().relative().as_bytes(),
        b"f"
    );
    match Grants::open(&[spec(r, "/d/"), spec(&r.join("a"), "/d")]) {
        Err(GrantError::Duplicate(path)) => assert_eq!(path, "/d"),
        other => panic!("{other:?}"),
    }
    for file in [r.join("f"), r.join("lf")] {
        match Grants::open(&[spec(&file, "/")]) {
            Err(GrantError::Open { path, source }) => {
                assert_eq!(path, file);
                assert_eq!(source.raw_os_error(), Some(libc::ENOTDIR));
            }
            other => panic!("{}: {other:?}", file.display()),
        }
    }
}
