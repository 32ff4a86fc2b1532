//! Guest memory: one anonymous mapping, seen by the guest as its physical
//! memory from address 0, and reached by kvmini only through `vm-memory`'s
//! bounds-checked accessors. The exceptions live here too, built from
//! bounds-checked `vm-memory` slices: zero-copy file I/O hands the kernel
//! iovecs that point into guest memory, and `with_bytes` lends an exit
//! handler guest bytes as a plain slice (to search for a string's NUL and
//! write the string out without a copy).

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError, GuestMemoryMmap};

/// The guest's physical memory.
pub type GuestMemory = GuestMemoryMmap<()>;

/// Guest memory sizes are whole 2 MiB pages: the identity map uses 2 MiB
/// pages, and kvmini's own area sits in the last one.
pub const MEM_GRANULE: u64 = 2 << 20;
/// Smallest guest memory kvmini accepts.
pub const MEM_MIN: u64 = MEM_GRANULE;
/// Largest guest memory: guests pass addresses in 32-bit port values.
pub const MEM_MAX: u64 = 4 << 30;
/// Guest memory when no size is given.
pub const MEM_DEFAULT: u64 = 64 << 20;

/// Errors of guest memory creation and access.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The size string could not be read.
    #[error("invalid size {0:?}: expected a number with an optional K, M or G suffix, e.g. 64M")]
    BadSize(String),
    /// The size is out of range or not a whole number of 2 MiB pages.
    #[error("guest memory of {} is not allowed: {reason}", ByteSize(*size))]
    SizeNotAllowed {
        /// The size asked for.
        size: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The anonymous mapping failed.
    #[error("cannot allocate {} of guest memory", ByteSize(*size))]
    Allocate {
        /// The size asked for.
        size: u64,
        /// The mapping error.
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
    /// A bounds-checked access failed.
    #[error("guest memory access failed")]
    Access(#[from] GuestMemoryError),
    /// The memfd behind a snapshot failed.
    #[error("cannot set up snapshot-backed guest memory")]
    Backing(#[source] io::Error),
    /// Mapping guest memory with the asked-for backing failed.
    #[error("cannot map guest memory")]
    Map(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The host cannot give guest memory in huge pages: too few are free in
    /// its pool (`HugePages_Free` in /proc/meminfo), or none at all.
    #[error("the host cannot back {} of guest memory with 2 MiB huge pages", ByteSize(*size))]
    HugePages {
        /// The size asked for.
        size: u64,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// Huge pages were asked for a snapshot-backed (reusable) memory: its
    /// memfd would live in hugetlbfs, which takes no `write`s, so the
    /// snapshot could not be frozen.
    #[error("huge pages cannot back a reusable sandbox's memory (its snapshot file would be on hugetlbfs, which takes no writes)")]
    HugePagesNotReusable,
}

/// Parses a memory size such as `64M`, `2G`, `4096K` or `2097152`.
/// Suffixes are binary (K = 1024) and case-insensitive; `MiB`/`MB` spellings work too.
pub fn parse_size(text: &str) -> Result<u64, MemoryError> {
    let bad = || MemoryError::BadSize(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(bad()),
    };
    number.checked_mul(1 << shift).ok_or_else(bad)
}

/// Checks that `size` is a guest memory size kvmini can set up.
pub fn check_size(size: u64) -> Result<(), MemoryError> {
    let refuse = |reason| Err(MemoryError::SizeNotAllowed { size, reason });
    if size < MEM_MIN {
        return refuse("the minimum is 2 MiB");
    }
    if size > MEM_MAX {
        return refuse("the maximum is 4 GiB");
    }
    if size % MEM_GRANULE != 0 {
        return refuse("it must be a multiple of 2 MiB");
    }
    Ok(())
}

/// Allocates `size` bytes of zeroed guest memory at guest physical address 0.
pub fn allocate(size: u64) -> Result<GuestMemory, MemoryError> {
    check_size(size)?;
    let len = usize::try_from(size).map_err(|_| MemoryError::SizeNotAllowed {
        size,
        reason: "it does not fit in this host's address space",
    })?;
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), len)])
        .map_err(|source| MemoryError::Allocate { size, source })
}

/// How guest memory is backed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backing {
    /// Use 2 MiB huge pages (MAP_HUGETLB). [`allocate_with`] fails with
    /// [`MemoryError::HugePages`], before any guest runs, unless the host
    /// can give them all (see /proc/sys/vm/nr_hugepages), and with
    /// [`MemoryError::HugePagesNotReusable`] together with `snapshot`.
    pub hugepages: bool,
    /// Touch every page up front (MAP_POPULATE), so the guest takes no
    /// page faults on first access.
    pub prefault: bool,
    /// Back memory with a private mapping of a memfd, so that it can be
    /// frozen into a snapshot and reset to it ([`Snapshot`]).
    pub snapshot: bool,
}

/// Allocates guest memory with the given backing.
pub fn allocate_with(
    size: u64,
    backing: Backing,
) -> Result<(GuestMemory, Option<Snapshot>), MemoryError> {
    use vm_memory::mmap::{GuestRegionMmap, MmapRegionBuilder};
    use vm_memory::FileOffset;

    if backing == Backing::default() {
        return Ok((allocate(size)?, None));
    }
    check_size(size)?;
    if backing.snapshot && backing.hugepages {
        return Err(MemoryError::HugePagesNotReusable);
    }
    let len = usize::try_from(size).map_err(|_| MemoryError::SizeNotAllowed {
        size,
        reason: "it does not fit in this host's address space",
    })?;
    // Huge pages are reserved when mapped (no MAP_NORESERVE): a mapping the
    // pool cannot cover fails here rather than with SIGBUS on first touch.
    let mut flags = libc::MAP_PRIVATE;
    if !backing.hugepages {
        flags |= libc::MAP_NORESERVE;
    }
    if backing.prefault {
        flags |= libc::MAP_POPULATE;
    }
    let mut builder =
        MmapRegionBuilder::new(len).with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE);
    let mut memfd = None;
    if backing.snapshot {
        let fd = rustix::fs::memfd_create(c"kvmini-guest", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| MemoryError::Backing(io::Error::from(e)))?;
        rustix::fs::ftruncate(&fd, size).map_err(|e| MemoryError::Backing(io::Error::from(e)))?;
        let file = std::fs::File::from(fd);
        memfd = Some(file.try_clone().map_err(MemoryError::Backing)?);
        builder = builder.with_file_offset(FileOffset::new(file, 0));
    } else {
        flags |= libc::MAP_ANONYMOUS;
        if backing.hugepages {
            flags |= libc::MAP_HUGETLB;
        }
    }
    let region =
        builder
            .with_mmap_flags(flags)
            .build()
            .map_err(|e| match (backing.hugepages, e) {
                (true, vm_memory::mmap::MmapRegionError::Mmap(source)) => {
                    MemoryError::HugePages { size, source }
                }
                (_, e) => MemoryError::Map(Box::new(e)),
            })?;
    if backing.hugepages {
        populate_huge_pages(region.as_ptr(), len)
            .map_err(|source| MemoryError::HugePages { size, source })?;
    }
    let region =
        GuestRegionMmap::new(region, GuestAddress(0)).ok_or(MemoryError::SizeNotAllowed {
            size,
            reason: "it does not fit in the guest's address space",
        })?;
    let mem =
        GuestMemoryMmap::from_regions(vec![region]).map_err(|e| MemoryError::Map(Box::new(e)))?;
    let snapshot = memfd.map(|file| Snapshot { file, len });
    Ok((mem, snapshot))
}

/// Faults in every huge page of the fresh mapping at `ptr..ptr + len`, so
/// that a pool the reservation at mmap time did not guarantee (a cpuset or
/// memory policy the pages are not allowed in) is an error now, not a
/// SIGBUS when the guest or kvmini first touches the page. A kernel
/// without `MADV_POPULATE_WRITE` (before 5.14) leaves it to the reservation.
fn populate_huge_pages(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: `ptr..ptr + len` is exactly the mapping just made, which no
    // one else uses yet; populating it only allocates its (zeroed) pages.
    let rc = unsafe { libc::madvise(ptr.cast(), len, libc::MADV_POPULATE_WRITE) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EINVAL) {
        return Ok(());
    }
    Err(error)
}

/// The pristine contents of a snapshot-backed guest memory: the memfd under
/// its private mapping. Guest and kvmini writes go to private copies of
/// the pages; dropping those copies (`MADV_DONTNEED`) brings back the
/// memfd's contents, so a reset costs in proportion to the pages touched.
#[derive(Debug)]
pub struct Snapshot {
    file: std::fs::File,
    len: usize,
}

impl Snapshot {
    /// Makes the current contents of `ranges` (guest physical, the only
    /// ones written since allocation) the pristine state, and drops every
    /// private page.
    pub fn freeze(&self, mem: &GuestMemory, ranges: &[(u64, u64)]) -> Result<(), MemoryError> {
        use std::os::unix::fs::FileExt;
        let mut page = vec![0u8; 1 << 16];
        for &(start, end) in ranges {
            let mut at = start;
            while at < end {
                let n = usize::try_from((end - at).min(page.len() as u64)).unwrap_or(page.len());
                mem.read_slice(&mut page[..n], GuestAddress(at))?;
                self.file
                    .write_all_at(&page[..n], at)
                    .map_err(MemoryError::Backing)?;
                at += n as u64;
            }
        }
        self.reset(mem)
    }

    /// Brings guest memory back to the frozen state.
    pub fn reset(&self, mem: &GuestMemory) -> Result<(), MemoryError> {
        let ptr = mem.get_host_address(GuestAddress(0))?;
        // SAFETY: `ptr..ptr + len` is exactly the guest mapping, a private
        // file mapping owned by `mem`; MADV_DONTNEED only drops its private
        // copies, after which reads see the memfd again. No Rust reference
        // into guest memory exists across this call (all access goes
        // through volatile vm-memory slices).
        let rc = unsafe { libc::madvise(ptr.cast(), self.len, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(MemoryError::Backing(io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Where guest memory lives in kvmini's own address space, for `KVM_SET_USER_MEMORY_REGION`
/// and for reports of the memory map.
pub fn host_address(mem: &GuestMemory) -> Result<u64, MemoryError> {
    let ptr = mem.get_host_address(GuestAddress(0))?;
    Ok(ptr as u64)
}

/// Reads a little-endian `u64` from guest physical memory.
pub fn read_u64(mem: &GuestMemory, gpa: u64) -> Result<u64, GuestMemoryError> {
    mem.read_obj::<u64>(GuestAddress(gpa))
}

/// Lends `f` the `len` bytes of guest physical memory at `gpa` as a plain
/// slice, so that kvmini can search them or write them out without a copy.
/// Fails, without calling `f`, unless the whole range lies in guest memory.
///
/// Only for kvmini's own exit handlers, which run while the vCPU is
/// stopped; `f` must not write guest memory.
pub(crate) fn with_bytes<R>(
    mem: &GuestMemory,
    gpa: u64,
    len: u64,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, MemoryError> {
    let out_of_range =
        || MemoryError::Access(GuestMemoryError::InvalidGuestAddress(GuestAddress(gpa)));
    let end = gpa.checked_add(len).ok_or_else(out_of_range)?;
    if end > mem.last_addr().0.saturating_add(1) {
        return Err(out_of_range());
    }
    let len = usize::try_from(len).map_err(|_| out_of_range())?;
    if len == 0 {
        return Ok(f(&[]));
    }
    // vm-memory checks again that the range lies within one region.
    let slice = mem.get_slice(GuestAddress(gpa), len)?;
    let guard = slice.ptr_guard();
    // SAFETY: `guard` points at `slice.len()` (== `len`) bytes of the guest
    // mapping, which `mem` keeps mapped for longer than this borrow of it.
    // The vCPU is stopped while kvmini serves its exit, and the callers in
    // this crate (searching and writing out guest strings) do not write
    // guest memory from `f`, so the bytes do not change under the slice.
    let bytes = unsafe { std::slice::from_raw_parts(guard.as_ptr(), slice.len()) };
    Ok(f(bytes))
}

/// Most iovecs one `readv`/`writev` takes (Linux's IOV_MAX).
const IOV_MAX: usize = 1024;

/// Scratch space for the iovecs of [`transfer`], kept between calls so the
/// hot path does not allocate.
#[derive(Debug, Default)]
pub struct IovecBuf(Vec<libc::iovec>);

// SAFETY: the iovecs are filled and used only inside `transfer`, on the
// thread that runs it; between calls they are stale values never
// dereferenced, so moving the buffer to another thread is harmless.
unsafe impl Send for IovecBuf {}

/// Which way a zero-copy transfer moves bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// File to guest memory (`readv`/`preadv`).
    ToGuest,
    /// Guest memory to file (`writev`/`pwritev`).
    FromGuest,
}

/// Moves bytes between `fd` and the guest-physical `pieces` (each wholly
/// inside guest memory), at the file's offset or at `offset`, with as few
/// system calls as the pieces allow. Stops at the first short transfer, as
/// `read`/`write` do; returns the bytes moved, which is never an error once
/// some bytes have moved (a later call's error is left for the next one). `iovecs` is scratch space
/// kept by the caller so that the hot path does not allocate.
pub fn transfer(
    mem: &GuestMemory,
    fd: BorrowedFd<'_>,
    pieces: &[(u64, u64)],
    offset: Option<u64>,
    direction: Transfer,
    iovecs: &mut IovecBuf,
) -> io::Result<u64> {
    let iovecs = &mut iovecs.0;
    let mut total = 0u64;
    for batch in pieces.chunks(IOV_MAX) {
        let at = offset.map(|o| o.saturating_add(total));
        match transfer_batch(mem, fd, batch, at, direction, iovecs) {
            Ok((done, wanted)) => {
                total += done;
                if done < wanted {
                    break;
                }
            }
            // Bytes already moved are the result, as Linux's `writev`
            // returns a short count: the file offset has moved past them.
            Err(_) if total > 0 => break,
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// One `readv`/`writev` (or the positioned kind, at `at`) of at most
/// `IOV_MAX` pieces: the bytes moved and the bytes asked for.
fn transfer_batch(
    mem: &GuestMemory,
    fd: BorrowedFd<'_>,
    batch: &[(u64, u64)],
    at: Option<u64>,
    direction: Transfer,
    iovecs: &mut Vec<libc::iovec>,
) -> io::Result<(u64, u64)> {
    iovecs.clear();
    let mut wanted = 0u64;
    for &(gpa, len) in batch {
        let len_usize =
            usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let slice = mem
            .get_slice(GuestAddress(gpa), len_usize)
            .map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?;
        iovecs.push(libc::iovec {
            iov_base: slice.ptr_guard_mut().as_ptr().cast(),
            iov_len: slice.len(),
        });
        wanted += len;
    }
    let count = libc::c_int::try_from(iovecs.len()).unwrap_or(libc::c_int::MAX);
    let at = match at.map(i64::try_from) {
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        None => None,
    };
    // SAFETY: every iovec comes from a vm-memory slice that lies wholly
    // inside the guest mapping, which outlives this call; the vCPU is
    // stopped in this exit, so nothing else touches those bytes while
    // the kernel reads or writes them.
    let done = unsafe {
        match (direction, at) {
            (Transfer::ToGuest, None) => libc::readv(fd.as_raw_fd(), iovecs.as_ptr(), count),
            (Transfer::ToGuest, Some(at)) => {
                libc::preadv(fd.as_raw_fd(), iovecs.as_ptr(), count, at)
            }
            (Transfer::FromGuest, None) => libc::writev(fd.as_raw_fd(), iovecs.as_ptr(), count),
            (Transfer::FromGuest, Some(at)) => {
                libc::pwritev(fd.as_raw_fd(), iovecs.as_ptr(), count, at)
            }
        }
    };
    let done = u64::try_from(done).map_err(|_| io::Error::last_os_error())?;
    Ok((done, wanted))
}

/// A byte count printed the way people read sizes (`64 MiB`, `4 KiB`,
/// `1000 bytes`, `1 byte`).
#[derive(Clone, Copy, Debug)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n >= 1 << shift && n % (1 << shift) == 0 {
                return write!(f, "{} {unit}", n >> shift);
            }
        }
        write!(f, "{n} {}", if n == 1 { "byte" } else { "bytes" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("4096K").unwrap(), 4 << 20);
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("2097152").unwrap(), 2 << 20);
        assert_eq!(parse_size(" 8M ").unwrap(), 8 << 20);
    }

    #[test]
    fn bad_sizes_are_errors_not_panics() {
        for text in [
            "",
            "abc",
            "M",
            "-1",
            "1.5G",
            "12X",
            "99999999999999999999",
            "18446744073709551615G",
        ] {
            assert!(
                matches!(parse_size(text), Err(MemoryError::BadSize(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn sizes_outside_the_allowed_range_are_refused() {
        for size in [
            0,
            4096,
            MEM_MIN - 1,
            MEM_MAX + MEM_GRANULE,
            5 << 30,
            u64::MAX,
            3 << 20,
        ] {
            assert!(check_size(size).is_err(), "{size}");
        }
        for size in [MEM_MIN, MEM_DEFAULT, MEM_MAX] {
            assert!(check_size(size).is_ok(), "{size}");
        }
    }

    /// A non-blocking pipe holding at most 64 KiB.
    fn small_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        assert_eq!(
            // SAFETY: pipe2 writes two descriptors into the array.
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) },
            0
        );
        // SAFETY: both descriptors were just made and are owned here.
        let (r, w) = unsafe {
            (
                std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            )
        };
        assert_eq!(
            // SAFETY: an fcntl with an integer argument on an owned descriptor.
            unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 65536) },
            65536
        );
        (r, w)
    }

    #[test]
    fn a_transfer_that_moved_bytes_returns_their_count_both_ways() {
        use std::os::fd::AsFd;
        let mem = allocate(MEM_MIN).unwrap();
        // 2048 pieces of 64 bytes, 64 bytes apart: two writev calls, the
        // first of which fills the pipe exactly, so the second fails.
        let pieces: Vec<(u64, u64)> = (0..2048).map(|i| (i * 128, 64)).collect();
        let mut iovecs = IovecBuf::default();
        let (r, w) = small_pipe();
        let moved = |fd, direction, iovecs: &mut IovecBuf| {
            transfer(&mem, fd, &pieces, None, direction, iovecs)
        };
        assert_eq!(
            moved(w.as_fd(), Transfer::FromGuest, &mut iovecs).unwrap(),
            IOV_MAX as u64 * 64
        );
        // Nothing moved: the error itself.
        let full = moved(w.as_fd(), Transfer::FromGuest, &mut iovecs).unwrap_err();
        assert_eq!(full.raw_os_error(), Some(libc::EAGAIN));
        // Reading: the first readv empties the pipe, the second fails.
        assert_eq!(
            moved(r.as_fd(), Transfer::ToGuest, &mut iovecs).unwrap(),
            IOV_MAX as u64 * 64
        );
        let empty = moved(r.as_fd(), Transfer::ToGuest, &mut iovecs).unwrap_err();
        assert_eq!(empty.raw_os_error(), Some(libc::EAGAIN));
    }

    #[test]
    fn with_bytes_lends_only_ranges_inside_guest_memory() {
        let mem = allocate(MEM_MIN).unwrap();
        mem.write_slice(b"abc", GuestAddress(MEM_MIN - 3)).unwrap();
        let tail = with_bytes(&mem, MEM_MIN - 3, 3, <[u8]>::to_vec).unwrap();
        assert_eq!(tail, b"abc");
        assert_eq!(with_bytes(&mem, MEM_MIN, 0, <[u8]>::len).unwrap(), 0);
        for (gpa, len) in [
            (MEM_MIN - 3, 4),
            (MEM_MIN, 1),
            (0, MEM_MIN + 1),
            (1, u64::MAX),
            (u64::MAX, 2),
            (u64::MAX, 0),
        ] {
            let mut called = false;
            assert!(
                with_bytes(&mem, gpa, len, |_| called = true).is_err(),
                "{gpa:#x}+{len:#x}"
            );
            assert!(!called);
        }
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(ByteSize(64 << 20).to_string(), "64 MiB");
        assert_eq!(ByteSize(5 << 30).to_string(), "5 GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000 bytes");
        assert_eq!(ByteSize(1).to_string(), "1 byte");
        assert_eq!(ByteSize(0).to_string(), "0 bytes");
    }
}
