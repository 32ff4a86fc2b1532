//! The ABI as both SDKs carry it: every SDK-built guest image names the ABI
//! version in its ELF note, read here by a reader of the test's own; the C
//! header agrees with kvmini-abi on every port, constant, struct size and
//! field offset; and the guest SDK and the guests are linted like the
//! workspace.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use common::c_build::repo_root;
use kvmini_abi::batch::{BatchArgs, BatchEntry};
use kvmini_abi::fs::{
    Dirent64, FdArgs, IoArgs, OpenArgs, PathArgs, RenameArgs, SeekArgs, Stat, StatArgs,
    TruncateArgs,
};
use kvmini_abi::host::{ArgvArgs, HostCallArgs};
use kvmini_abi::{note, Port, ABI_VERSION};

// ---------------------------------------------------------------------------
// A small ELF note reader, independent of kvmini's loader.

/// `SHT_NOTE` and `PT_NOTE`.
const SHT_NOTE: u32 = 7;
const PT_NOTE: u32 = 4;

fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes(b[at..at + 2].try_into().unwrap()))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> usize {
    usize::try_from(u64::from_le_bytes(b[at..at + 8].try_into().unwrap())).unwrap()
}

/// One note entry: its name (with the NUL), type and descriptor.
#[derive(Debug, PartialEq, Eq)]
struct Note {
    name: Vec<u8>,
    kind: u32,
    desc: Vec<u8>,
}

/// The note entries in `bytes`, as `readelf -n` walks them.
fn notes(bytes: &[u8]) -> Vec<Note> {
    let pad = |n: usize| n.div_ceil(4) * 4;
    let mut found = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let namesz = usize::try_from(u32_at(bytes, at)).unwrap();
        let descsz = usize::try_from(u32_at(bytes, at + 4)).unwrap();
        let kind = u32_at(bytes, at + 8);
        let name_at = at + 12;
        let desc_at = name_at + pad(namesz);
        assert!(
            desc_at + descsz <= bytes.len(),
            "a note runs past its range"
        );
        found.push(Note {
            name: bytes[name_at..name_at + namesz].to_vec(),
            kind,
            desc: bytes[desc_at..desc_at + descsz].to_vec(),
        });
        at = desc_at + pad(descsz);
    }
    found
}

/// The notes of every `PT_NOTE` program header, the view a loader has.
fn segment_notes(elf: &[u8]) -> Vec<Note> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    let (phoff, phentsize, phnum) = (u64_at(elf, 0x20), u16_at(elf, 0x36), u16_at(elf, 0x38));
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&ph| u32_at(elf, ph) == PT_NOTE)
        .flat_map(|ph| {
            let (offset, size) = (u64_at(elf, ph + 8), u64_at(elf, ph + 0x20));
            notes(&elf[offset..offset + size])
        })
        .collect()
}

/// The type and notes of the section called `name`, the view `readelf -n`
/// has.
fn section_notes(elf: &[u8], name: &str) -> Option<(u32, Vec<Note>)> {
    let (shoff, shentsize, shnum) = (u64_at(elf, 0x28), u16_at(elf, 0x3A), u16_at(elf, 0x3C));
    let section = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(elf, section(u16_at(elf, 0x3E)) + 0x18);
    (0..shnum).map(section).find_map(|sh| {
        let name_at = strtab + usize::try_from(u32_at(elf, sh)).unwrap();
        let end = name_at + elf[name_at..].iter().position(|&b| b == 0)?;
        if &elf[name_at..end] != name.as_bytes() {
            return None;
        }
        let (offset, size) = (u64_at(elf, sh + 0x18), u64_at(elf, sh + 0x20));
        Some((u32_at(elf, sh + 4), notes(&elf[offset..offset + size])))
    })
}

/// The one note an SDK-built image must carry.
fn expected_note() -> Note {
    Note {
        name: note::NAME.to_vec(),
        kind: note::TYPE,
        desc: ABI_VERSION.to_le_bytes().to_vec(),
    }
}

/// Checks that `elf` carries the ABI note exactly once, in a PT_NOTE and in
/// its own SHT_NOTE section.
fn assert_carries_the_abi_note(what: &str, elf: &[u8]) {
    let ours: Vec<Note> = segment_notes(elf)
        .into_iter()
        .filter(|n| n.name == note::NAME)
        .collect();
    assert_eq!(ours, vec![expected_note()], "{what}: PT_NOTE");
    assert_eq!(
        section_notes(elf, note::SECTION),
        Some((SHT_NOTE, vec![expected_note()])),
        "{what}: section {}",
        note::SECTION
    );
    // And kvmini's own loader reads the same version from it.
    let image = kvmini::loader::parse_elf(elf).expect("an SDK image parses");
    assert_eq!(
        image.abi_version,
        Some(ABI_VERSION),
        "{what}: the loader's reading"
    );
}

#[test]
fn the_note_layout_is_the_documented_one() {
    assert_eq!(note::NAME, b"kvmini\0");
    assert_eq!(note::TYPE, 1);
    assert_eq!(note::DESC_SIZE, 4);
    assert_eq!(note::SECTION, ".note.kvmini");
    assert_eq!(ABI_VERSION, 1);
    // The reader itself, on a hand-made note of that layout.
    let mut bytes = Vec::new();
    for word in [7u32, 4, 1] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    bytes.extend_from_slice(b"kvmini\0\0");
    bytes.extend_from_slice(&ABI_VERSION.to_le_bytes());
    assert_eq!(notes(&bytes), vec![expected_note()]);
}

#[test]
fn every_built_in_rust_guest_carries_the_abi_note() {
    for guest in [
        kvmini::guests::HELLO,
        kvmini::guests::HYPERCALLS,
        kvmini::guests::FILES,
        kvmini::guests::KVSTORE,
    ] {
        assert_carries_the_abi_note(guest.name, guest.elf);
    }
}

#[test]
fn every_c_example_carries_the_abi_note() {
    let mut examples: Vec<String> = std::fs::read_dir(repo_root().join("sdk/c/examples"))
        .expect("sdk/c/examples")
        .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
        .filter(|name| name.ends_with(".c"))
        .collect();
    examples.sort();
    assert_eq!(examples, ["files.c", "hello.c", "hypercalls.c"]);
    for example in examples {
        let source = format!("sdk/c/examples/{example}");
        let elf = std::fs::read(common::built_guest(&source, &[])).expect("the built guest");
        assert_carries_the_abi_note(&source, &elf);
    }
}

#[test]
fn an_image_built_without_an_sdk_has_no_abi_note() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("plain.c");
    std::fs::write(&source, "void _start(void) { for (;;) { } }\n").expect("source");
    let elf = dir.path().join("plain.elf");
    common::c_build::cc(
        &["-O2", "-ffreestanding", "-nostdlib", "-static", "-no-pie"],
        &elf,
        source.to_str().expect("UTF-8 path"),
    );
    let elf = std::fs::read(elf).expect("the built image");
    assert!(segment_notes(&elf).iter().all(|n| n.name != note::NAME));
    assert_eq!(section_notes(&elf, note::SECTION), None);
}

// ---------------------------------------------------------------------------
// The C header against kvmini-abi.

/// `PrintVal` -> `PRINT_VAL`, as the header names ports.
fn c_port_name(port: Port) -> String {
    let mut name = String::from("KVMINI_PORT_");
    for (i, c) in format!("{port:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// The header's object-like `#define`s that are not part of kvmini's ABI:
/// the include guard, an attribute, and POSIX names the SDK offers for
/// convenience (standard descriptors, file types Linux has and kvmini's ABI
/// does not name).
const HEADER_ONLY_DEFINES: &[&str] = &[
    "KVMINI_H",
    "KVMINI_NORETURN",
    "STDIN_FILENO",
    "STDOUT_FILENO",
    "STDERR_FILENO",
    "NAME_MAX",
    "S_IFSOCK",
    "S_IFBLK",
    "DT_BLK",
    "DT_SOCK",
];

/// kvmini-abi constants that have no `#define` in the header, each for a
/// reason: host-side limits and layout, or values the header holds in
/// another form (checked there).
const RUST_ONLY_CONSTS: &[&str] = &[
    // kvmini's own: which flags open accepts, descriptor limits.
    "O_SUPPORTED",
    "STDIO_FDS",
    "DEFAULT_MAX_FDS",
    // offsetof(struct linux_dirent64, d_name), checked below.
    "DIRENT64_NAME_OFFSET",
    // Port::ALL, checked port by port.
    "ALL",
    // The note's name, size and section, checked in the images themselves.
    "NAME",
    "DESC_SIZE",
    "SECTION",
    // The guest memory layout, which guest.ld's base address follows.
    "ELF_LOAD_MIN",
    "SYSTEM_AREA_SIZE",
];

/// Every `#define NAME VALUE` of the header whose value kvmini-abi fixes,
/// with that value.
fn expected_defines() -> BTreeMap<String, i128> {
    use kvmini_abi::{batch, errno, fs, host};
    let mut want = BTreeMap::new();
    for port in Port::ALL {
        // Made only by kvmini's own exception handlers: no guest call.
        if port != Port::Exception {
            want.insert(c_port_name(port), i128::from(port as u16));
        }
    }
    macro_rules! consts {
        ($($module:ident :: $name:ident => $c:literal),* $(,)?) => {
            $(want.insert($c.to_string(), i128::from($module::$name));)*
        };
    }
    consts! {
        fs::O_RDONLY => "O_RDONLY", fs::O_WRONLY => "O_WRONLY", fs::O_RDWR => "O_RDWR",
        fs::O_ACCMODE => "O_ACCMODE", fs::O_CREAT => "O_CREAT", fs::O_EXCL => "O_EXCL",
        fs::O_TRUNC => "O_TRUNC", fs::O_APPEND => "O_APPEND",
        fs::O_DIRECTORY => "O_DIRECTORY", fs::O_NOFOLLOW => "O_NOFOLLOW",
        fs::O_CLOEXEC => "O_CLOEXEC",
        fs::SEEK_SET => "SEEK_SET", fs::SEEK_CUR => "SEEK_CUR", fs::SEEK_END => "SEEK_END",
        fs::S_IFMT => "S_IFMT", fs::S_IFREG => "S_IFREG", fs::S_IFDIR => "S_IFDIR",
        fs::S_IFLNK => "S_IFLNK", fs::S_IFCHR => "S_IFCHR", fs::S_IFIFO => "S_IFIFO",
        fs::DT_UNKNOWN => "DT_UNKNOWN", fs::DT_FIFO => "DT_FIFO", fs::DT_CHR => "DT_CHR",
        fs::DT_DIR => "DT_DIR", fs::DT_REG => "DT_REG", fs::DT_LNK => "DT_LNK",
        fs::PATH_MAX => "PATH_MAX",
        batch::BATCH_STOP_ON_ERROR => "KVMINI_BATCH_STOP_ON_ERROR",
        batch::BATCH_MAX => "KVMINI_BATCH_MAX",
        errno::EPERM => "EPERM", errno::ENOENT => "ENOENT", errno::EINTR => "EINTR",
        errno::EIO => "EIO", errno::EBADF => "EBADF", errno::EAGAIN => "EAGAIN",
        errno::EACCES => "EACCES", errno::EFAULT => "EFAULT", errno::EBUSY => "EBUSY",
        errno::EEXIST => "EEXIST", errno::EXDEV => "EXDEV", errno::ENOTDIR => "ENOTDIR",
        errno::EISDIR => "EISDIR", errno::EINVAL => "EINVAL", errno::EMFILE => "EMFILE",
        errno::EFBIG => "EFBIG", errno::ENOSPC => "ENOSPC", errno::ESPIPE => "ESPIPE",
        errno::EROFS => "EROFS", errno::EPIPE => "EPIPE", errno::ERANGE => "ERANGE",
        errno::ENAMETOOLONG => "ENAMETOOLONG", errno::ENOSYS => "ENOSYS",
        errno::ENOTEMPTY => "ENOTEMPTY", errno::ELOOP => "ELOOP",
        errno::EOVERFLOW => "EOVERFLOW",
    }
    want.insert(
        "KVMINI_HOST_CALL_ARGS".into(),
        i128::try_from(host::HOST_CALL_ARGS).unwrap(),
    );
    want.insert("KVMINI_ABI_VERSION".into(), i128::from(ABI_VERSION));
    want.insert("KVMINI_NOTE_TYPE".into(), i128::from(note::TYPE));
    want
}

/// A C struct of the header with the layout of its Rust block: the name,
/// the size, then `(C field, Rust offset)` for every field.
type Layout = (&'static str, usize, Vec<(&'static str, usize)>);

/// Each C struct of the header with its Rust block.
fn expected_structs() -> Vec<Layout> {
    // A C field with another name in Rust is written `c_name: rust_name`.
    macro_rules! offset {
        ($ty:ident, $cf:ident) => {
            offset_of!($ty, $cf)
        };
        ($ty:ident, $cf:ident $rf:ident) => {
            offset_of!($ty, $rf)
        };
    }
    macro_rules! layout {
        ($c:literal = $ty:ident { $($cf:ident $(: $rf:ident)?),* $(,)? }) => {
            (
                $c,
                size_of::<$ty>(),
                vec![$((stringify!($cf), offset!($ty, $cf $($rf)?))),*],
            )
        };
    }
    vec![
        layout!(
            "struct kvmini_open_args" = OpenArgs {
                path,
                flags,
                mode,
                result
            }
        ),
        layout!(
            "struct kvmini_fd_args" = FdArgs {
                fd,
                reserved,
                result
            }
        ),
        layout!(
            "struct kvmini_io_args" = IoArgs {
                fd,
                reserved,
                buf,
                len,
                offset,
                result
            }
        ),
        layout!(
            "struct kvmini_seek_args" = SeekArgs {
                fd,
                whence,
                offset,
                result
            }
        ),
        layout!(
            "struct kvmini_stat_args" = StatArgs {
                path,
                fd,
                reserved,
                stat,
                result
            }
        ),
        layout!(
            "struct kvmini_truncate_args" = TruncateArgs {
                fd,
                reserved,
                length,
                result
            }
        ),
        layout!(
            "struct kvmini_path_args" = PathArgs {
                path,
                mode,
                reserved,
                result
            }
        ),
        layout!(
            "struct kvmini_rename_args" = RenameArgs {
                old_path: old,
                new_path: new,
                result
            }
        ),
        layout!(
            "struct kvmini_batch_entry" = BatchEntry {
                port,
                reserved,
                block
            }
        ),
        layout!(
            "struct kvmini_batch_args" = BatchArgs {
                entries,
                count,
                flags,
                result
            }
        ),
        layout!(
            "struct kvmini_host_call_args" = HostCallArgs {
                id,
                reserved,
                args,
                result
            }
        ),
        layout!("struct kvmini_argv_args" = ArgvArgs { buf, len, result }),
        layout!(
            "struct stat" = Stat {
                st_dev,
                st_ino,
                st_nlink,
                st_mode,
                st_uid,
                st_gid,
                __pad0: pad0,
                st_rdev,
                st_size,
                st_blksize,
                st_blocks,
                st_atime,
                st_atime_nsec,
                st_mtime,
                st_mtime_nsec,
                st_ctime,
                st_ctime_nsec,
                __unused: reserved,
            }
        ),
    ]
}

/// The `#define`s with a plain value (not function-like) in `header`.
fn object_like_defines(header: &str) -> BTreeSet<String> {
    header
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("#define "))
        .filter_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!rest[name.len()..].starts_with('(')).then_some(name)
        })
        .collect()
}

/// The `struct NAME {` definitions in `header`.
fn struct_definitions(header: &str) -> BTreeSet<String> {
    header
        .lines()
        .filter_map(|line| line.strip_suffix(" {"))
        .filter(|line| line.starts_with("struct "))
        .map(str::to_string)
        .collect()
}

/// `pub const NAME` items (not `const fn`s) of kvmini-abi's sources.
fn rust_consts() -> BTreeSet<String> {
    let src = repo_root().join("kvmini-abi/src");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(&src).expect("kvmini-abi/src") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("source");
        for line in text.lines() {
            if let Some(rest) = line.trim_start().strip_prefix("pub const ") {
                if !rest.starts_with("fn ") {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    names.insert(name);
                }
            }
        }
    }
    names
}

/// A C file that fails to compile, naming each difference, unless the
/// header has exactly `defines` and `structs`.
fn c_checks(defines: &BTreeMap<String, i128>, structs: &[Layout]) -> String {
    let mut c = String::from("#include <stddef.h>\n#include \"kvmini.h\"\n");
    for (name, value) in defines {
        writeln!(
            c,
            "_Static_assert(({name}) == {value}, \"#define {name}: kvmini-abi says {value}\");"
        )
        .unwrap();
    }
    for (name, size, fields) in structs {
        writeln!(
            c,
            "_Static_assert(sizeof({name}) == {size}, \"sizeof({name}): kvmini-abi says {size}\");"
        )
        .unwrap();
        for (field, offset) in fields {
            writeln!(
                c,
                "_Static_assert(offsetof({name}, {field}) == {offset}, \
                 \"offsetof({name}, {field}): kvmini-abi says {offset}\");"
            )
            .unwrap();
        }
    }
    c
}

/// Compiles `source` against the C SDK's header; returns the compiler's
/// error output, empty when it compiled.
fn compile_against_header(dir: &Path, source: &str) -> String {
    let file = dir.join("abi_check.c");
    std::fs::write(&file, source).expect("write the check");
    let output = Command::new("cc")
        .current_dir(repo_root())
        .args(["-std=c11", "-ffreestanding", "-fsyntax-only", "-I", "sdk/c"])
        .arg(&file)
        .output()
        .expect("cc: gcc is part of kvmini's toolchain for the C SDK");
    if output.status.success() {
        String::new()
    } else {
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

fn header() -> String {
    std::fs::read_to_string(repo_root().join("sdk/c/kvmini.h")).expect("sdk/c/kvmini.h")
}

#[test]
fn the_c_header_has_every_value_of_the_rust_abi() {
    let defines = expected_defines();
    let mut structs = expected_structs();
    // The fixed part of a getdents64 record, and where its name starts.
    structs.push((
        "struct linux_dirent64",
        size_of::<Dirent64>(),
        vec![
            ("d_ino", offset_of!(Dirent64, d_ino)),
            ("d_off", offset_of!(Dirent64, d_off)),
            ("d_reclen", offset_of!(Dirent64, d_reclen)),
            ("d_type", offset_of!(Dirent64, d_type)),
            ("d_name", kvmini_abi::fs::DIRENT64_NAME_OFFSET),
        ],
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let errors = compile_against_header(dir.path(), &c_checks(&defines, &structs));
    assert_eq!(errors, "", "sdk/c/kvmini.h differs from kvmini-abi");
}

#[test]
fn the_c_header_holds_nothing_the_check_leaves_out() {
    let header = header();
    let checked: BTreeSet<String> = expected_defines().into_keys().collect();
    let header_only: BTreeSet<String> = HEADER_ONLY_DEFINES.iter().map(|s| s.to_string()).collect();
    let unchecked: Vec<String> = object_like_defines(&header)
        .into_iter()
        .filter(|name| !checked.contains(name) && !header_only.contains(name))
        .collect();
    assert_eq!(
        unchecked,
        Vec::<String>::new(),
        "defines no test compares with kvmini-abi"
    );
    let mut structs: BTreeSet<String> = expected_structs()
        .into_iter()
        .map(|(name, ..)| name.to_string())
        .collect();
    structs.insert("struct linux_dirent64".into());
    assert_eq!(struct_definitions(&header), structs);
}

#[test]
fn every_rust_abi_constant_is_in_the_header_or_listed_as_rust_only() {
    let in_header: BTreeSet<String> = expected_defines().into_keys().collect();
    let rust_only: BTreeSet<&str> = RUST_ONLY_CONSTS.iter().copied().collect();
    let missing: Vec<String> = rust_consts()
        .into_iter()
        .filter(|name| {
            !rust_only.contains(name.as_str())
                && !in_header.contains(name)
                && !in_header.contains(&format!("KVMINI_{name}"))
                && !in_header.contains(&format!("KVMINI_NOTE_{name}"))
        })
        .collect();
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "constants of kvmini-abi the C header lacks"
    );
}

#[test]
fn the_header_check_catches_a_wrong_value_a_wrong_size_and_a_wrong_offset() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut defines = BTreeMap::new();
    defines.insert("KVMINI_PORT_OPEN".to_string(), 0x0411);
    let structs = vec![
        ("struct kvmini_fd_args", 24, vec![("result", 8)]),
        ("struct kvmini_io_args", 40, vec![("result", 24)]),
    ];
    let errors = compile_against_header(dir.path(), &c_checks(&defines, &structs));
    for wrong in [
        "#define KVMINI_PORT_OPEN: kvmini-abi says 1041",
        "sizeof(struct kvmini_fd_args): kvmini-abi says 24",
        "offsetof(struct kvmini_io_args, result): kvmini-abi says 24",
    ] {
        assert!(errors.contains(wrong), "{wrong} not reported in:\n{errors}");
    }
    for right in [
        "offsetof(struct kvmini_fd_args, result)",
        "sizeof(struct kvmini_io_args)",
    ] {
        assert!(!errors.contains(right), "{right} reported in:\n{errors}");
    }
}

#[test]
fn port_names_follow_the_header_spelling() {
    assert_eq!(c_port_name(Port::Console), "KVMINI_PORT_CONSOLE");
    assert_eq!(c_port_name(Port::PrintVal), "KVMINI_PORT_PRINT_VAL");
    assert_eq!(c_port_name(Port::GetNumExits), "KVMINI_PORT_GET_NUM_EXITS");
    assert_eq!(c_port_name(Port::HostCall), "KVMINI_PORT_HOST_CALL");
}

// ---------------------------------------------------------------------------
// Lints.

/// The `[workspace.lints.*]` or `[lints.*]` tables of a Cargo.toml, as
/// (table, line) pairs with the `workspace.` prefix taken off.
fn lints(manifest: &str, prefix: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join(manifest)).expect(manifest);
    let mut table = None;
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = name
                .strip_prefix(prefix)
                .filter(|t| t.starts_with("lints."))
                .map(str::to_string);
        } else if let Some(table) = &table {
            if !line.is_empty() && !line.starts_with('#') {
                found.push((table.clone(), line.to_string()));
            }
        }
    }
    found
}

#[test]
fn the_guest_sdk_and_the_guests_have_the_workspace_lints() {
    let workspace = lints("Cargo.toml", "workspace.");
    assert!(
        workspace.contains(&(
            "lints.clippy".into(),
            "undocumented_unsafe_blocks = \"deny\"".into()
        )),
        "{workspace:?}"
    );
    assert_eq!(
        lints("kvmini-guest/Cargo.toml", ""),
        workspace,
        "kvmini-guest"
    );
    assert_eq!(
        lints("guests/Cargo.toml", "workspace."),
        workspace,
        "guests/"
    );
    for guest in ["hello", "hypercalls", "files", "kvstore"] {
        let manifest =
            std::fs::read_to_string(repo_root().join(format!("guests/{guest}/Cargo.toml")))
                .expect("guest manifest");
        assert!(
            manifest.contains("[lints]\nworkspace = true\n"),
            "guests/{guest} does not take the workspace's lints"
        );
    }
}
