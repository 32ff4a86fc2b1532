//! The descriptor table as Linux programs' system calls reach it
//! ([`crate::linux`]): the same handlers, grants and checks as the
//! filesystem hypercalls, with arguments in registers instead of a block,
//! and Linux's open-flag rules (unknown flags ignored).

use kvmini_abi::fs::{IoArgs, OpenArgs, SeekArgs, StatArgs, O_SUPPORTED};

use super::{CallResult, Descriptor, Filesystem, StdioSinks};
use crate::addr::Gva;
use crate::errno::Errno;
use crate::view::GuestView;

impl Filesystem {
    /// `read` or `pread64` (without `stdio`), `write` or `pwrite64` (with
    /// it), at `offset` when positioned.
    pub(crate) fn linux_io(
        &mut self,
        view: &GuestView<'_>,
        fd: i32,
        buf: u64,
        len: u64,
        offset: Option<i64>,
        stdio: Option<&mut StdioSinks<'_>>,
    ) -> CallResult {
        let args = IoArgs {
            fd,
            buf,
            len,
            offset: offset.unwrap_or(0),
            ..Default::default()
        };
        match stdio {
            Some(stdio) => self.write(view, &args, offset.is_some(), stdio),
            None => self.read(view, &args, offset.is_some()),
        }
    }

    /// `open` with Linux's flags: those kvmini does not act on
    /// (`O_LARGEFILE`, `O_NOCTTY`, `O_NONBLOCK`, ...) are ignored.
    pub(crate) fn linux_open(
        &mut self,
        view: &GuestView<'_>,
        path: u64,
        flags: u64,
        mode: u64,
    ) -> CallResult {
        let args = OpenArgs {
            path,
            flags: u32::try_from(flags & u64::from(O_SUPPORTED)).unwrap_or(0),
            mode: u32::try_from(mode & 0o7777).unwrap_or(0),
            ..Default::default()
        };
        self.open(view, &args)
    }

    /// `close`.
    pub(crate) fn linux_close(&mut self, fd: i32) -> CallResult {
        self.close(fd)
    }

    /// `lseek`.
    pub(crate) fn linux_lseek(&mut self, fd: i32, offset: i64, whence: u64) -> CallResult {
        let whence = u32::try_from(whence).map_err(|_| Errno::EINVAL)?;
        self.lseek(&SeekArgs {
            fd,
            whence,
            offset,
            ..Default::default()
        })
    }

    /// `stat` of `path`, or `fstat` of `fd` without one, into `stat`.
    pub(crate) fn linux_stat(
        &mut self,
        view: &GuestView<'_>,
        path: Option<u64>,
        fd: i32,
        stat: u64,
    ) -> CallResult {
        let args = StatArgs {
            path: path.unwrap_or(0),
            fd,
            stat,
            ..Default::default()
        };
        self.stat(view, &args, path.is_some())
    }

    /// Which standard stream (0, 1, 2) descriptor `fd` is, `None` for a
    /// file, `EBADF` when it is not open.
    pub(crate) fn linux_std_stream(&self, fd: i32) -> Result<Option<usize>, Errno> {
        Ok(match self.descriptor(fd)? {
            Descriptor::Stdin => Some(0),
            Descriptor::Stdout => Some(1),
            Descriptor::Stderr => Some(2),
            Descriptor::File(_) => None,
        })
    }

    /// 0 for an open descriptor, else `EBADF`.
    pub(crate) fn linux_check_fd(&self, fd: i32) -> CallResult {
        self.descriptor(fd).map(|_| 0)
    }

    /// Whether the path at `path` starts with `/` (`EFAULT` when it
    /// cannot be read).
    pub(crate) fn linux_path_is_absolute(
        &self,
        view: &GuestView<'_>,
        path: u64,
    ) -> Result<bool, Errno> {
        let first: u8 = view.read_obj(Gva::new(path)).map_err(|_| Errno::EFAULT)?;
        Ok(first == b'/')
    }

    /// Whether the path at `path` is empty.
    pub(crate) fn linux_path_is_empty(
        &self,
        view: &GuestView<'_>,
        path: u64,
    ) -> Result<bool, Errno> {
        let first: u8 = view.read_obj(Gva::new(path)).map_err(|_| Errno::EFAULT)?;
        Ok(first == 0)
    }
}
