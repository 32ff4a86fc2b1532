//! A guest's memory as the guest itself sees it: virtual addresses
//! translated through the page tables in its CR3, with its privilege level
//! checked on every page. Hypercall handlers reach guest buffers only
//! through this.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::addr::{Gpa, Gva};
use crate::arch::x86_64::memory_map::MAX_IDENTITY_RANGES;
use crate::memory::{self, GuestMemory};
use crate::paging::{self, Access, Paging, PagingError};

/// Errors of reading guest buffers and strings.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ViewError {
    /// An address could not be translated or is not accessible.
    #[error(transparent)]
    Fault(#[from] PagingError),
    /// A translated address is outside guest physical memory.
    #[error("address {gva:#x} maps to {gpa:#x}, outside guest memory")]
    OutsideMemory {
        /// Guest virtual address.
        gva: Gva,
        /// Where it maps.
        gpa: Gpa,
    },
    /// A buffer longer than guest memory itself.
    #[error("buffer at {gva:#x} of {len} bytes is longer than guest memory")]
    TooLong {
        /// Start of the buffer.
        gva: Gva,
        /// Its length.
        len: u64,
    },
    /// A buffer whose end is past the top of the address space.
    #[error("buffer at {gva:#x} of {len} bytes runs past the end of the address space")]
    Overflow {
        /// Start of the buffer.
        gva: Gva,
        /// Its length.
        len: u64,
    },
    /// No NUL before the limit.
    #[error("string at {gva:#x} has no NUL terminator within {limit} bytes")]
    Unterminated {
        /// Start of the string.
        gva: Gva,
        /// How far kvmini looked.
        limit: u64,
    },
}

/// Merged pieces `for_each_piece` keeps on its stack. A buffer in more
/// physically discontiguous runs than this costs a second walk of the rest.
const STACK_PIECES: usize = 16;

/// The guest's view of memory at the time of one exit.
#[derive(Clone, Copy, Debug)]
pub struct GuestView<'a> {
    mem: &'a GuestMemory,
    paging: Paging,
    cr3: u64,
    user: bool,
    /// The virtual ranges known to map to themselves, read-write, as
    /// `[start, end)`; empty ones past the last.
    identity: [(u64, u64); MAX_IDENTITY_RANGES],
}

impl<'a> GuestView<'a> {
    /// A view with the guest's paging and CR3; `user` when the guest
    /// ran at ring 3, so that pages it could not touch are refused.
    pub fn new(mem: &'a GuestMemory, paging: Paging, cr3: u64, user: bool) -> Self {
        GuestView {
            mem,
            paging,
            cr3,
            user,
            identity: [(0, 0); MAX_IDENTITY_RANGES],
        }
    }

    /// Declares that within `range` virtual address == physical address and
    /// the guest may read and write: true of a ring-3 long-mode guest whose
    /// CR3 is kvmini's own identity map, as it can change neither CR3 nor
    /// those supervisor-only tables (see
    /// [`crate::arch::x86_64::page_tables::user_identity_range`]).
    /// A buffer wholly inside `range` (and guest memory) is then one piece,
    /// found without a page walk; anything else is walked as usual, which
    /// gives the exact error.
    pub fn with_identity(self, range: std::ops::Range<u64>) -> Self {
        self.with_identity_ranges(std::slice::from_ref(&range))
    }

    /// [`GuestView::with_identity`] for several ranges (a guest whose
    /// read-only segments and stack guard split its writable memory: see
    /// [`crate::arch::x86_64::memory_map::MemoryMap::writable_runs`]); past
    /// [`MAX_IDENTITY_RANGES`] they are ignored, and walked.
    pub fn with_identity_ranges(mut self, ranges: &[std::ops::Range<u64>]) -> Self {
        self.identity = [(0, 0); MAX_IDENTITY_RANGES];
        for (slot, range) in self.identity.iter_mut().zip(ranges) {
            *slot = (range.start, range.end);
        }
        self
    }

    /// Whether `[gva, end)` lies inside one identity range and guest memory.
    fn is_identity(&self, gva: Gva, end: u64) -> bool {
        end <= self.memory_size()
            && self
                .identity
                .iter()
                .any(|&(start, stop)| start <= gva.raw() && end <= stop)
    }

    /// Bytes from `gva` to the end of its identity range (or of guest
    /// memory, if sooner), when `gva` lies inside both.
    fn identity_span(&self, gva: Gva) -> Option<u64> {
        let at = gva.raw();
        self.identity.iter().find_map(|&(start, stop)| {
            let top = stop.min(self.memory_size());
            (start <= at && at < top).then(|| top - at)
        })
    }

    /// Translates one address for reading or writing.
    fn translate(&self, gva: Gva, write: bool) -> Result<paging::Translation, ViewError> {
        let access = Access {
            user: self.user,
            write,
        };
        let t = paging::translate(self.mem, self.paging, self.cr3, gva, access)?;
        if !self.mem.address_in_range(GuestAddress(t.gpa.raw())) {
            return Err(ViewError::OutsideMemory { gva, gpa: t.gpa });
        }
        Ok(t)
    }

    /// The end of the buffer `[gva, gva + len)`, refused if it wraps or is
    /// longer than guest memory.
    fn buffer_end(&self, gva: Gva, len: u64) -> Result<u64, ViewError> {
        let end = gva
            .checked_add(len)
            .ok_or(ViewError::Overflow { gva, len })?
            .raw();
        // No buffer is longer than guest memory unless the guest's tables
        // map pages more than once; refusing it bounds the walk (and the
        // work one call can cost) by the size of guest memory.
        if len > self.memory_size() {
            return Err(ViewError::TooLong { gva, len });
        }
        Ok(end)
    }

    /// Walks `[gva, end)` once, translating and checking every page, and
    /// hands `emit` each run of physically contiguous pages as one piece.
    /// `emit` may already have been called when an error comes back.
    fn walk(
        &self,
        gva: Gva,
        end: u64,
        write: bool,
        mut emit: impl FnMut(u64, u64),
    ) -> Result<(), ViewError> {
        let mut at = gva.raw();
        let mut run: Option<(u64, u64)> = None;
        while at < end {
            let t = self.translate(Gva::new(at), write)?;
            let gpa = t.gpa.raw();
            let piece = t.len_in_page.min(end - at);
            // The piece must also end inside memory (a large page can
            // extend past the end of a small guest).
            let last = gpa + piece - 1;
            if !self.mem.address_in_range(GuestAddress(last)) {
                // Named by the first byte past the end of memory, by both
                // its addresses (the piece's first byte is in memory).
                let inside = self.memory_size().saturating_sub(gpa);
                return Err(ViewError::OutsideMemory {
                    gva: Gva::new(at + inside),
                    gpa: Gpa::new(gpa + inside),
                });
            }
            run = Some(extend_run(run, gpa, piece, &mut emit));
            at += piece;
        }
        if let Some((gpa, len)) = run {
            emit(gpa, len);
        }
        Ok(())
    }

    /// Calls `f` with each guest-physical piece `(gpa, len)` of the virtual
    /// range `[gva, gva + len)`, in order, physically contiguous pages
    /// merged into one piece; fails before calling `f` at all if any part
    /// is not mapped, so a bad buffer has no partial effect.
    ///
    /// The pieces are all known before `f` runs, unless the buffer has more
    /// than a few discontiguous runs: then the rest is walked again after
    /// `f` has seen the first ones, and an `f` that rewrites the guest's
    /// page tables on the way can make that second walk fail.
    pub fn for_each_piece(
        &self,
        gva: Gva,
        len: u64,
        write: bool,
        mut f: impl FnMut(u64, u64),
    ) -> Result<(), ViewError> {
        let end = self.buffer_end(gva, len)?;
        if len == 0 {
            return Ok(());
        }
        if self.is_identity(gva, end) {
            f(gva.raw(), len);
            return Ok(());
        }
        let mut kept = [(0u64, 0u64); STACK_PIECES];
        let mut count = 0usize;
        let mut kept_len = 0u64;
        let mut overflowed = false;
        self.walk(gva, end, write, |gpa, n| {
            if overflowed || count == STACK_PIECES {
                overflowed = true;
            } else {
                kept[count] = (gpa, n);
                count += 1;
                kept_len += n;
            }
        })?;
        for &(gpa, n) in &kept[..count] {
            f(gpa, n);
        }
        if overflowed {
            // The first walk checked the whole buffer; the kept pieces end
            // where a run ends, so walking on from there gives the rest.
            self.walk(Gva::new(gva.raw() + kept_len), end, write, f)?;
        }
        Ok(())
    }

    /// Reads a `T` from guest virtual `gva`, piece by piece if it crosses
    /// pages.
    pub fn read_obj<T: FromBytes + IntoBytes>(&self, gva: Gva) -> Result<T, ViewError> {
        let mut value = T::new_zeroed();
        let len = std::mem::size_of::<T>() as u64;
        let bytes = value.as_mut_bytes();
        self.copy_pieces(gva, len, false, |range, at| {
            self.mem.read_slice(&mut bytes[range], at).is_ok()
        })?;
        Ok(value)
    }

    /// Copies the buffer at `gva`, `len` bytes (checked for writing if
    /// `write`), piece by piece: `copy` gets each piece's range in the
    /// buffer and its guest-physical address and says whether guest memory
    /// took it. Every piece is tried; the first that failed is the error.
    fn copy_pieces(
        &self,
        gva: Gva,
        len: u64,
        write: bool,
        mut copy: impl FnMut(std::ops::Range<usize>, GuestAddress) -> bool,
    ) -> Result<(), ViewError> {
        let mut done = 0usize;
        let mut failed = None;
        self.for_each_piece(gva, len, write, |gpa, piece| {
            let n = usize::try_from(piece).unwrap_or(0);
            if !copy(done..done + n, GuestAddress(gpa)) && failed.is_none() {
                failed = Some(Self::piece_at(gva, done, gpa));
            }
            done += n;
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// The error for a piece that guest memory could not give: the
    /// virtual address `done` bytes into the buffer at `gva`, and the
    /// physical address it maps to.
    fn piece_at(gva: Gva, done: usize, gpa: u64) -> ViewError {
        ViewError::OutsideMemory {
            gva: Gva::new(gva.raw().wrapping_add(done as u64)),
            gpa: Gpa::new(gpa),
        }
    }

    /// Reads the argument block `T` at guest virtual `block`, whose `i64`
    /// result lies `result_offset` bytes into it, and checks that the
    /// result can be written back: the block and the address of its
    /// result. The block's extent is checked for wrapping before any
    /// address inside it is worked out, then read, then the result's page
    /// checked for writing; an error means the call must not run.
    pub fn read_block<T: FromBytes + IntoBytes>(
        &self,
        block: Gva,
        result_offset: usize,
    ) -> Result<(T, Gva), ViewError> {
        let size = std::mem::size_of::<T>() as u64;
        let wraps = ViewError::Overflow {
            gva: block,
            len: size,
        };
        if result_offset
            .checked_add(8)
            .is_none_or(|end| end as u64 > size)
        {
            // A result outside its block is a mistake in kvmini, not the
            // guest's; refusing the block is still the safe answer.
            return Err(wraps);
        }
        self.buffer_end(block, size)?;
        let result_at = u64::try_from(result_offset)
            .ok()
            .and_then(|offset| block.checked_add(offset))
            .ok_or(wraps)?;
        let args = self.read_obj::<T>(block)?;
        self.check_writable(result_at, 8)?;
        Ok((args, result_at))
    }

    /// Writes `value` to guest virtual `gva`, which must be writable.
    pub fn write_obj<T: IntoBytes + Immutable>(&self, gva: Gva, value: T) -> Result<(), ViewError> {
        self.write_bytes(gva, value.as_bytes())
    }

    /// Writes `bytes` to guest virtual `gva`, which must be writable.
    pub fn write_bytes(&self, gva: Gva, bytes: &[u8]) -> Result<(), ViewError> {
        self.copy_pieces(gva, bytes.len() as u64, true, |range, at| {
            self.mem.write_slice(&bytes[range], at).is_ok()
        })
    }

    /// Collects the guest-physical pieces of `[gva, gva + len)` into
    /// `pieces` (cleared first, and left empty on error), physically
    /// contiguous pages merged: the scatter list of a zero-copy transfer.
    pub fn pieces(
        &self,
        gva: Gva,
        len: u64,
        write: bool,
        pieces: &mut Vec<(u64, u64)>,
    ) -> Result<(), ViewError> {
        pieces.clear();
        let end = self.buffer_end(gva, len)?;
        if len == 0 {
            return Ok(());
        }
        if self.is_identity(gva, end) {
            pieces.push((gva.raw(), len));
            return Ok(());
        }
        let result = self.walk(gva, end, write, |gpa, n| pieces.push((gpa, n)));
        if result.is_err() {
            pieces.clear();
        }
        result
    }

    /// Size of guest memory in bytes: the longest buffer or string a guest
    /// can have without mapping pages twice.
    pub fn memory_size(&self) -> u64 {
        self.mem.last_addr().0 + 1
    }

    /// Checks that `len` bytes at `gva` are writable guest memory, so that
    /// a call can refuse a result block before doing anything.
    pub fn check_writable(&self, gva: Gva, len: u64) -> Result<(), ViewError> {
        let end = self.buffer_end(gva, len)?;
        if len == 0 || self.is_identity(gva, end) {
            return Ok(());
        }
        self.walk(gva, end, true, |_, _| {})
    }

    /// Guest memory behind this view.
    pub fn memory(&self) -> &'a GuestMemory {
        self.mem
    }

    /// Finds the NUL-terminated string at `gva`, looking at no more than
    /// `limit` bytes (nor more than guest memory holds), and returns its
    /// length without the NUL. `f` gets the guest-physical pieces `(gpa,
    /// len)` of the bytes looked at, in order, physically contiguous ones
    /// merged: on success exactly the string without its NUL; on error
    /// what was looked at before the fault or the limit.
    pub fn c_string_pieces(
        &self,
        gva: Gva,
        limit: u64,
        mut f: impl FnMut(u64, u64),
    ) -> Result<u64, ViewError> {
        // No string is longer than guest memory unless the guest's tables
        // alias pages; the cap bounds the work of one call.
        let limit = limit.min(self.memory_size());
        let mut at = gva;
        let mut run: Option<(u64, u64)> = None;
        let result = loop {
            let seen = at.offset_from(gva).unwrap_or(u64::MAX);
            if seen >= limit {
                break Err(ViewError::Unterminated { gva, limit });
            }
            let (gpa, n) = match self.identity_span(at) {
                Some(span) => (at.raw(), span.min(limit - seen)),
                None => match self.translate(at, false) {
                    Ok(t) => {
                        let gpa = t.gpa.raw();
                        let in_memory = self.mem.last_addr().0 - gpa + 1;
                        (gpa, t.len_in_page.min(limit - seen).min(in_memory))
                    }
                    Err(e) => break Err(e),
                },
            };
            let Ok(nul) = memory::with_bytes(self.mem, gpa, n, |bytes| memchr::memchr(0, bytes))
            else {
                break Err(ViewError::OutsideMemory {
                    gva: at,
                    gpa: Gpa::new(gpa),
                });
            };
            let used = nul.map_or(n, |i| i as u64);
            if used > 0 {
                run = Some(extend_run(run, gpa, used, &mut f));
            }
            if nul.is_some() {
                break Ok(seen + used);
            }
            match at.checked_add(n) {
                Some(next) => at = next,
                None => break Err(ViewError::Unterminated { gva, limit }),
            }
        };
        if let Some((gpa, len)) = run {
            f(gpa, len);
        }
        result
    }

    /// Appends the NUL-terminated string at `gva` (without its NUL) to
    /// `out`, reading at most `limit` bytes. On error `out` may hold a
    /// prefix of the string.
    pub fn read_c_string(&self, gva: Gva, limit: u64, out: &mut Vec<u8>) -> Result<(), ViewError> {
        let mut lost = None;
        let start = out.len();
        let result = self.c_string_pieces(gva, limit, |gpa, n| {
            let done = out.len() - start;
            let copied = memory::with_bytes(self.mem, gpa, n, |bytes| out.extend_from_slice(bytes));
            if copied.is_err() && lost.is_none() {
                lost = Some(Self::piece_at(gva, done, gpa));
            }
        });
        match (result, lost) {
            (Ok(_), Some(error)) => Err(error),
            (result, _) => result.map(|_| ()),
        }
    }
}

/// Adds the piece `(gpa, len)` to the physically contiguous `run`, or, if
/// it does not follow on, hands the run to `emit` and starts a new one.
fn extend_run(
    run: Option<(u64, u64)>,
    gpa: u64,
    len: u64,
    emit: &mut impl FnMut(u64, u64),
) -> (u64, u64) {
    match run {
        Some((start, n)) if start + n == gpa => (start, n + len),
        Some((start, n)) => {
            emit(start, n);
            (gpa, len)
        }
        None => (gpa, len),
    }
}

/// Hand-made tables for tests: virtual page `0x400000 + i * 4 KiB` maps to
/// the `i`-th of `pages` (physical addresses), user and writable, through
/// a PML4, PDPT, PD and PT at 0x100000..0x104000; nothing else is mapped.
/// Returns the PML4's address, for CR3.
#[cfg(test)]
pub(crate) fn map_user_pages(mem: &GuestMemory, pages: impl IntoIterator<Item = u64>) -> u64 {
    use crate::arch::x86_64::bits::{PTE_P, PTE_RW, PTE_US};
    let (pml4, pdpt, pd, pt) = (0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000);
    let user = PTE_P | PTE_RW | PTE_US;
    let tables = [(pml4, pdpt), (pdpt, pd), (pd + 2 * 8, pt)];
    let leaves = (0u64..).zip(pages).map(|(i, page)| (pt + i * 8, page));
    for (addr, next) in tables.into_iter().chain(leaves) {
        mem.write_obj(next | user, GuestAddress(addr))
            .expect("test tables fit in guest memory");
    }
    pml4
}

#[cfg(test)]
mod tests;
