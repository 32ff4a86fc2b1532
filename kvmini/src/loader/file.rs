//! Reading a guest image from the host's filesystem without waiting on
//! anyone and without reading more than guest memory holds.

/// Errors of reading a guest image from a file.
#[derive(Debug, thiserror::Error)]
pub enum ImageFileError {
    /// The file could not be opened or read.
    #[error("cannot read guest {}", .path.display())]
    Read {
        /// The path given.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The path names something other than a regular file.
    #[error("guest {} is {kind}, not a regular file: a guest image must be a regular file", .path.display())]
    NotRegular {
        /// The path given.
        path: std::path::PathBuf,
        /// What it is instead ("a FIFO (named pipe)", "a character device", ...).
        kind: &'static str,
    },
    /// The file is larger than guest memory, so it cannot be a guest.
    #[error("guest {} is larger than guest memory ({limit} bytes): not a guest image for this memory size", .path.display())]
    TooLarge {
        /// The path given.
        path: std::path::PathBuf,
        /// Guest memory in bytes.
        limit: u64,
    },
}

/// What a file that is not a regular file is, for messages.
fn file_kind(file_type: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a directory")
    } else if file_type.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if file_type.is_char_device() {
        Some("a character device")
    } else if file_type.is_block_device() {
        Some("a block device")
    } else if file_type.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

/// Reads the guest image at `path`: a regular file of at most `limit`
/// bytes (the guest memory it is for). Nothing here waits on another
/// party: the file is checked before it is opened (so that a FIFO, a
/// terminal or a device with side effects on open is never opened), opened
/// with `O_NONBLOCK` in case it was replaced in between, checked again, and
/// read for at most `limit + 1` bytes, so that a file that grows cannot
/// make kvmini read without end.
pub fn read_image_file(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, ImageFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read = |source| ImageFileError::Read {
        path: path.to_owned(),
        source,
    };
    let not_regular = |kind| ImageFileError::NotRegular {
        path: path.to_owned(),
        kind,
    };
    let too_large = || ImageFileError::TooLarge {
        path: path.to_owned(),
        limit,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if let Some(kind) = file_kind(meta.file_type()) {
        return Err(not_regular(kind));
    }
    if meta.len() > limit {
        return Err(too_large());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read)?;
    let meta = file.metadata().map_err(read)?;
    if let Some(kind) = file_kind(meta.file_type()) {
        return Err(not_regular(kind));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}
