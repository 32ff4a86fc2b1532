//! Host functions: calls a guest makes into the program that embeds kvmini,
//! one exit each, with arguments in a [`HostCallArgs`] block and a
//! bounds-checked view of the guest's memory for anything larger.

use std::collections::BTreeMap;
use std::fmt;

use kvmini_abi::host::{HostCallArgs, HOST_CALL_ARGS};

use crate::addr::Gva;
use crate::view::GuestView;

pub use crate::errno::Errno;

/// One call as a host function sees it: its arguments and the guest's
/// memory, through the guest's own page tables and privileges.
pub struct HostCall<'a> {
    args: [u64; HOST_CALL_ARGS],
    view: &'a GuestView<'a>,
}

impl fmt::Debug for HostCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostCall")
            .field("args", &self.args)
            .finish()
    }
}

impl<'a> HostCall<'a> {
    /// A call with `args` over the guest memory `view`.
    pub fn new(args: [u64; HOST_CALL_ARGS], view: &'a GuestView<'a>) -> Self {
        HostCall { args, view }
    }

    /// The six integer arguments.
    pub fn args(&self) -> &[u64; HOST_CALL_ARGS] {
        &self.args
    }

    /// Argument `i` (0..6), 0 past the end.
    pub fn arg(&self, i: usize) -> u64 {
        self.args.get(i).copied().unwrap_or(0)
    }

    /// Copies `buf.len()` bytes from guest address `gva`: EFAULT unless all
    /// of them are readable by the guest.
    pub fn read(&self, gva: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mut done = 0usize;
        let mut failed = false;
        self.view
            .for_each_piece(Gva::new(gva), buf.len() as u64, false, |gpa, len| {
                let n = usize::try_from(len).unwrap_or(0);
                failed |= vm_memory::Bytes::read_slice(
                    self.view.memory(),
                    &mut buf[done..done + n],
                    vm_memory::GuestAddress(gpa),
                )
                .is_err();
                done += n;
            })
            .map_err(|_| Errno::EFAULT)?;
        if failed {
            return Err(Errno::EFAULT);
        }
        Ok(())
    }

    /// Reads `len` bytes from guest address `gva` into a new vector.
    pub fn read_vec(&self, gva: u64, len: u64) -> Result<Vec<u8>, Errno> {
        let len = usize::try_from(len).map_err(|_| Errno::EFAULT)?;
        // Check the range before allocating for it.
        self.view
            .for_each_piece(Gva::new(gva), len as u64, false, |_, _| {})
            .map_err(|_| Errno::EFAULT)?;
        let mut buf = vec![0; len];
        self.read(gva, &mut buf)?;
        Ok(buf)
    }

    /// Reads the NUL-terminated string at `gva` (at most `limit` bytes
    /// before the NUL): EFAULT if unreadable, EINVAL if unterminated.
    pub fn read_c_string(&self, gva: u64, limit: u64) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        match self.view.read_c_string(Gva::new(gva), limit, &mut out) {
            Ok(()) => Ok(out),
            Err(crate::view::ViewError::Unterminated { .. }) => Err(Errno::EINVAL),
            Err(_) => Err(Errno::EFAULT),
        }
    }

    /// Writes `data` to guest address `gva`: EFAULT unless all of it is
    /// writable by the guest.
    pub fn write(&self, gva: u64, data: &[u8]) -> Result<(), Errno> {
        self.view
            .write_bytes(Gva::new(gva), data)
            .map_err(|_| Errno::EFAULT)
    }
}

/// A host function: gets the call, returns a value (at most `i64::MAX`) or
/// an errno.
pub type HostFunction = Box<dyn FnMut(&HostCall<'_>) -> Result<u64, Errno> + Send>;

/// The host functions registered for one sandbox, by id.
#[derive(Default)]
pub struct HostFunctions {
    functions: BTreeMap<u32, HostFunction>,
}

impl fmt::Debug for HostFunctions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.functions.keys()).finish()
    }
}

impl HostFunctions {
    /// Whether no function is registered.
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// Registers `function` as `id`, replacing any earlier one.
    pub fn insert(&mut self, id: u32, function: HostFunction) {
        self.functions.insert(id, function);
    }

    /// Serves one call: the result to write back into the block.
    pub fn call(&mut self, block: &HostCallArgs, view: &GuestView<'_>) -> i64 {
        let Some(function) = self.functions.get_mut(&block.id) else {
            return Errno::ENOSYS.negated();
        };
        match function(&HostCall::new(block.args, view)) {
            Ok(value) => i64::try_from(value).unwrap_or(Errno::EOVERFLOW.negated()),
            Err(e) => e.negated(),
        }
    }
}

#[cfg(test)]
mod tests {
    use kvmini_abi::errno;

    use super::*;
    use crate::paging::{CpuPaging, Paging, PagingMode};

    #[test]
    fn an_errno_is_always_one_the_guest_reads_as_an_error() {
        for code in [0, -1, -5, i32::MIN, 4096, i32::MAX] {
            assert_eq!(Errno::new(code), None, "{code}");
        }
        for code in [1, 5, 4095] {
            assert_eq!(Errno::new(code).map(Errno::code), Some(code));
        }
        let io = |e: std::io::Error| Errno::from(e).code();
        assert_eq!(io(std::io::Error::from_raw_os_error(libc::ENOSPC)), 28);
        // No OS error, or one outside the errno range: EIO.
        assert_eq!(io(std::io::Error::other("no errno")), errno::EIO);
        assert_eq!(io(std::io::Error::from_raw_os_error(0)), errno::EIO);
        assert_eq!(io(std::io::Error::from_raw_os_error(-3)), errno::EIO);
        assert_eq!(io(std::io::Error::from_raw_os_error(5000)), errno::EIO);
    }

    #[test]
    fn the_guest_gets_minus_errno_for_every_error_a_function_returns() {
        let mem = crate::memory::allocate(2 << 20).unwrap();
        let view = GuestView::new(
            &mem,
            Paging::new(PagingMode::Disabled, false, CpuPaging::ALL_FEATURES),
            0,
            false,
        );
        let mut functions = HostFunctions::default();
        functions.insert(1, Box::new(|_| Err(Errno::EFAULT)));
        functions.insert(2, Box::new(|_| Err(std::io::Error::other("x").into())));
        functions.insert(
            3,
            Box::new(|_| Err(Errno::new(Errno::MAX).unwrap_or(Errno::EIO))),
        );
        functions.insert(4, Box::new(|_| Ok(u64::MAX)));
        functions.insert(5, Box::new(|call| Ok(call.arg(0) + 1)));
        let block = |id| HostCallArgs {
            id,
            args: [41, 0, 0, 0, 0, 0],
            ..Default::default()
        };
        let results: Vec<i64> = (1..=6)
            .map(|id| functions.call(&block(id), &view))
            .collect();
        assert_eq!(results, [-14, -5, -4095, -75, 42, -38]);
    }
}
