//! Host functions: calls a guest makes into the program that embeds kvmini,
//! one exit each, with arguments in a [`HostCallArgs`] block and a
//! bounds-checked view of the guest's memory for anything larger.

use std::collections::BTreeMap;
use std::fmt;

use kvmini_abi::errno;
use kvmini_abi::host::{HostCallArgs, HOST_CALL_ARGS};

use crate::view::GuestView;

/// A Linux errno value a host function returns to the guest (as `-errno`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Bad address.
    pub const EFAULT: Errno = Errno(errno::EFAULT);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(errno::EINVAL);
    /// No such entry.
    pub const ENOENT: Errno = Errno(errno::ENOENT);
    /// No such function.
    pub const ENOSYS: Errno = Errno(errno::ENOSYS);
    /// Value too large.
    pub const EOVERFLOW: Errno = Errno(errno::EOVERFLOW);
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", errno::name(self.0), self.0)
    }
}

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
            .for_each_piece(gva, buf.len() as u64, false, |gpa, len| {
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
            .for_each_piece(gva, len as u64, false, |_, _| {})
            .map_err(|_| Errno::EFAULT)?;
        let mut buf = vec![0; len];
        self.read(gva, &mut buf)?;
        Ok(buf)
    }

    /// Reads the NUL-terminated string at `gva` (at most `limit` bytes
    /// before the NUL): EFAULT if unreadable, EINVAL if unterminated.
    pub fn read_c_string(&self, gva: u64, limit: u64) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        match self.view.read_c_string(gva, limit, &mut out) {
            Ok(()) => Ok(out),
            Err(crate::view::ViewError::Unterminated { .. }) => Err(Errno::EINVAL),
            Err(_) => Err(Errno::EFAULT),
        }
    }

    /// Writes `data` to guest address `gva`: EFAULT unless all of it is
    /// writable by the guest.
    pub fn write(&self, gva: u64, data: &[u8]) -> Result<(), Errno> {
        self.view.write_bytes(gva, data).map_err(|_| Errno::EFAULT)
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
    /// Registers `function` as `id`, replacing any earlier one.
    pub fn insert(&mut self, id: u32, function: HostFunction) {
        self.functions.insert(id, function);
    }

    /// Serves one call: the result to write back into the block.
    pub fn call(&mut self, block: &HostCallArgs, view: &GuestView<'_>) -> i64 {
        let Some(function) = self.functions.get_mut(&block.id) else {
            return -i64::from(errno::ENOSYS);
        };
        match function(&HostCall::new(block.args, view)) {
            Ok(value) => i64::try_from(value).unwrap_or(-i64::from(errno::EOVERFLOW)),
            Err(Errno(e)) => -i64::from(e),
        }
    }
}
