//! Reading an image from a file: only a regular file, never opened when
//! it is something else, and never more than the limit; and the names
//! that messages give ELF machines and types.

use super::super::{read_image_file, ImageFileError, LoaderError};

/// The message of reading `path` with `limit`, or its bytes.
fn read(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, String> {
    read_image_file(path, limit).map_err(|e| e.to_string())
}

#[test]
fn a_regular_file_is_read_whole_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    std::fs::write(&image, b"\x7fELF and more").unwrap();
    assert_eq!(read(&image, 13), Ok(b"\x7fELF and more".to_vec()));
    assert_eq!(read(&image, 100), Ok(b"\x7fELF and more".to_vec()));
    let too_large = format!(
        "guest {} is larger than guest memory (12 bytes): not a guest image for this memory size",
        image.display()
    );
    assert_eq!(read(&image, 12), Err(too_large));
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(read(&empty, 0), Ok(vec![]));
    assert!(matches!(
        read_image_file(&dir.path().join("missing"), 10),
        Err(ImageFileError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound
    ));
}

/// A file whose size says less than it holds (as `/proc` files do, and as
/// a file that grows after the check would) is read for one byte past the
/// limit and refused.
#[test]
fn a_file_that_holds_more_than_its_size_is_cut_at_the_limit_and_refused() {
    let status = std::path::Path::new("/proc/self/status");
    assert_eq!(std::fs::metadata(status).unwrap().len(), 0);
    assert_eq!(
        read(status, 10),
        Err(
            "guest /proc/self/status is larger than guest memory (10 bytes): \
             not a guest image for this memory size"
                .to_owned()
        )
    );
    assert!(read(status, 1 << 20).unwrap().starts_with(b"Name:"));
}

#[test]
fn anything_but_a_regular_file_is_refused_by_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::RUSR).unwrap();
    let socket = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    for (path, kind) in [
        (dir.path(), "a directory"),
        (fifo.as_path(), "a FIFO (named pipe)"),
        (link.as_path(), "a FIFO (named pipe)"),
        (std::path::Path::new("/dev/null"), "a character device"),
        (socket.as_path(), "a socket"),
    ] {
        // A FIFO with no writer would block an open: it is never opened.
        assert_eq!(
            read(path, 1 << 20),
            Err(format!(
                "guest {} is {kind}, not a regular file: a guest image must be a regular file",
                path.display()
            ))
        );
    }
}

/// ELF's machine numbers (e_machine) and file types (e_type), each named.
#[test]
fn messages_name_elf_machines_and_types() {
    for (machine, name) in [
        (0, "none"),
        (2, "sparc"),
        (3, "i386"),
        (8, "mips"),
        (20, "powerpc"),
        (21, "powerpc64"),
        (22, "s390"),
        (40, "arm"),
        (43, "sparc64"),
        (50, "ia-64"),
        (62, "x86_64"),
        (183, "aarch64"),
        (243, "risc-v"),
        (258, "loongarch"),
        (1, "unknown"),
        (63, "unknown"),
        (u16::MAX, "unknown"),
    ] {
        assert_eq!(
            LoaderError::WrongMachine { machine }.to_string(),
            format!(
                "guest is built for machine {machine} ({name}): kvmini runs x86_64 (62) guests"
            )
        );
    }
    for (e_type, name) in [
        (0, "no file type"),
        (1, "relocatable object"),
        (2, "executable"),
        (3, "shared object"),
        (4, "core dump"),
        (5, "unknown"),
        (0xFE00, "unknown"),
    ] {
        assert_eq!(
            LoaderError::NotExecutable { e_type }.to_string(),
            format!(
                "not an executable (ELF type {e_type}, {name}): link the guest as a static executable"
            )
        );
    }
}
