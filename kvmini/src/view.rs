//! A guest's memory as the guest itself sees it: virtual addresses
//! translated through the page tables in its CR3, with its privilege level
//! checked on every page. Hypercall handlers reach guest buffers only
//! through this.

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend};

use crate::memory::GuestMemory;
use crate::paging::{self, Access, PagingError, PagingMode};

/// Errors of reading guest buffers and strings.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ViewError {
    /// An address could not be translated or is not accessible.
    #[error(transparent)]
    Fault(#[from] PagingError),
    /// A translated address is outside guest physical memory.
    #[error("address {gva:#x} maps to {gpa:#x}, outside guest memory")]
    OutsideMemory {
        /// Guest virtual address.
        gva: u64,
        /// Where it maps.
        gpa: u64,
    },
    /// A buffer longer than guest memory itself.
    #[error("buffer at {gva:#x} of {len} bytes is longer than guest memory")]
    TooLong {
        /// Start of the buffer.
        gva: u64,
        /// Its length.
        len: u64,
    },
    /// No NUL before the limit.
    #[error("string at {gva:#x} has no NUL terminator within {limit} bytes")]
    Unterminated {
        /// Start of the string.
        gva: u64,
        /// How far kvmini looked.
        limit: u64,
    },
}

/// The guest's view of memory at the time of one exit.
#[derive(Clone, Copy, Debug)]
pub struct GuestView<'a> {
    mem: &'a GuestMemory,
    mode: PagingMode,
    cr3: u64,
    user: bool,
}

impl<'a> GuestView<'a> {
    /// A view with the guest's paging mode and CR3; `user` when the guest
    /// ran at ring 3, so that pages it could not touch are refused.
    pub fn new(mem: &'a GuestMemory, mode: PagingMode, cr3: u64, user: bool) -> Self {
        GuestView {
            mem,
            mode,
            cr3,
            user,
        }
    }

    /// Translates one address for reading or writing.
    fn translate(&self, gva: u64, write: bool) -> Result<paging::Translation, ViewError> {
        let access = Access {
            user: self.user,
            write,
        };
        let t = paging::translate(self.mem, self.mode, self.cr3, gva, access)?;
        if !self.mem.address_in_range(GuestAddress(t.gpa)) {
            return Err(ViewError::OutsideMemory { gva, gpa: t.gpa });
        }
        Ok(t)
    }

    /// Calls `f` with each guest-physical piece `(gpa, len)` of the virtual
    /// range `[gva, gva + len)`, in order; fails before calling `f` at all
    /// if any part is not mapped, so a bad buffer has no partial effect.
    pub fn for_each_piece(
        &self,
        gva: u64,
        len: u64,
        write: bool,
        mut f: impl FnMut(u64, u64),
    ) -> Result<(), ViewError> {
        let end = gva
            .checked_add(len)
            .ok_or(ViewError::Fault(PagingError::NonCanonical(u64::MAX)))?;
        // No buffer is longer than guest memory unless the guest's tables
        // map pages more than once; refusing it bounds the walk (and the
        // work one call can cost) by the size of guest memory.
        if len > self.memory_size() {
            return Err(ViewError::TooLong { gva, len });
        }
        let pass = |call: bool, f: &mut dyn FnMut(u64, u64)| -> Result<(), ViewError> {
            let mut at = gva;
            while at < end {
                let t = self.translate(at, write)?;
                let piece = t.len_in_page.min(end - at);
                // The piece must also end inside memory (a large page can
                // extend past the end of a small guest).
                let last = t.gpa + piece - 1;
                if !self.mem.address_in_range(GuestAddress(last)) {
                    return Err(ViewError::OutsideMemory { gva: at, gpa: last });
                }
                if call {
                    f(t.gpa, piece);
                }
                at += piece;
            }
            Ok(())
        };
        pass(false, &mut |_, _| {})?;
        pass(true, &mut f)
    }

    /// Reads a `T` from guest virtual `gva`, piece by piece if it crosses
    /// pages.
    pub fn read_obj<T: ByteValued + Default>(&self, gva: u64) -> Result<T, ViewError> {
        let mut value = T::default();
        let len = std::mem::size_of::<T>() as u64;
        let bytes = value.as_mut_slice();
        let mut done = 0usize;
        let mut failed = false;
        self.for_each_piece(gva, len, false, |gpa, piece| {
            let n = usize::try_from(piece).unwrap_or(0);
            failed |= self
                .mem
                .read_slice(&mut bytes[done..done + n], GuestAddress(gpa))
                .is_err();
            done += n;
        })?;
        if failed {
            return Err(ViewError::OutsideMemory { gva, gpa: gva });
        }
        Ok(value)
    }

    /// Writes `value` to guest virtual `gva`, which must be writable.
    pub fn write_obj<T: ByteValued>(&self, gva: u64, value: T) -> Result<(), ViewError> {
        self.write_bytes(gva, value.as_slice())
    }

    /// Writes `bytes` to guest virtual `gva`, which must be writable.
    pub fn write_bytes(&self, gva: u64, bytes: &[u8]) -> Result<(), ViewError> {
        let mut done = 0usize;
        let mut failed = false;
        self.for_each_piece(gva, bytes.len() as u64, true, |gpa, piece| {
            let n = usize::try_from(piece).unwrap_or(0);
            failed |= self
                .mem
                .write_slice(&bytes[done..done + n], GuestAddress(gpa))
                .is_err();
            done += n;
        })?;
        if failed {
            return Err(ViewError::OutsideMemory { gva, gpa: gva });
        }
        Ok(())
    }

    /// Collects the guest-physical pieces of `[gva, gva + len)` into
    /// `pieces` (cleared first): the scatter list of a zero-copy transfer.
    pub fn pieces(
        &self,
        gva: u64,
        len: u64,
        write: bool,
        pieces: &mut Vec<(u64, u64)>,
    ) -> Result<(), ViewError> {
        pieces.clear();
        self.for_each_piece(gva, len, write, |gpa, n| pieces.push((gpa, n)))
    }

    /// Size of guest memory in bytes: the longest buffer or string a guest
    /// can have without mapping pages twice.
    pub fn memory_size(&self) -> u64 {
        self.mem.last_addr().0 + 1
    }

    /// Checks that `len` bytes at `gva` are writable guest memory, so that
    /// a call can refuse a result block before doing anything.
    pub fn check_writable(&self, gva: u64, len: u64) -> Result<(), ViewError> {
        self.for_each_piece(gva, len, true, |_, _| {})
    }

    /// Guest memory behind this view.
    pub fn memory(&self) -> &'a GuestMemory {
        self.mem
    }

    /// Appends the NUL-terminated string at `gva` (without its NUL) to
    /// `out`, reading at most `limit` bytes. On error `out` may hold a
    /// prefix of the string.
    pub fn read_c_string(&self, gva: u64, limit: u64, out: &mut Vec<u8>) -> Result<(), ViewError> {
        // No string is longer than guest memory unless the guest's tables
        // alias pages; the cap bounds the work and the buffer of one call.
        let limit = limit.min(self.memory_size());
        let mut at = gva;
        let mut chunk = [0u8; 512];
        loop {
            let seen = at - gva;
            if seen >= limit {
                return Err(ViewError::Unterminated { gva, limit });
            }
            let t = self.translate(at, false)?;
            let in_memory = self.mem.last_addr().0 - t.gpa + 1;
            let n = t
                .len_in_page
                .min(limit - seen)
                .min(in_memory)
                .min(chunk.len() as u64);
            let n_usize = usize::try_from(n).unwrap_or(chunk.len());
            let buf = &mut chunk[..n_usize];
            self.mem.read_slice(buf, GuestAddress(t.gpa)).map_err(|_| {
                ViewError::OutsideMemory {
                    gva: at,
                    gpa: t.gpa,
                }
            })?;
            if let Some(nul) = buf.iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..nul]);
                return Ok(());
            }
            out.extend_from_slice(buf);
            at = at
                .checked_add(n)
                .ok_or(ViewError::Unterminated { gva, limit })?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;
    use crate::memory;
    use crate::paging::{build_identity_map, PTE_P, PTE_RW, PTE_US};

    fn identity(size: u64) -> (GuestMemory, Layout) {
        let mem = memory::allocate(size).unwrap();
        let layout = Layout::new(size);
        build_identity_map(&mem, &layout, false).unwrap();
        (mem, layout)
    }

    #[test]
    fn strings_are_read_across_pages_and_to_the_end_of_memory() {
        let (mem, layout) = identity(4 << 20);
        let view = GuestView::new(&mem, PagingMode::Long, layout.pml4(), true);
        let text = vec![b'x'; 10_000];
        mem.write_slice(&text, GuestAddress(0x10_0F00)).unwrap();
        let mut out = Vec::new();
        view.read_c_string(0x10_0F00, u64::MAX, &mut out).unwrap();
        assert_eq!(out, text);
        // Unterminated right up to kvmini's area: refused, not overrun.
        let top = layout.system_base;
        mem.write_slice(&[b'y'; 16], GuestAddress(top - 16))
            .unwrap();
        out.clear();
        assert_eq!(
            view.read_c_string(top - 16, u64::MAX, &mut out),
            Err(ViewError::Fault(PagingError::NotUser(top)))
        );
    }

    #[test]
    fn strings_follow_non_contiguous_physical_pages() {
        let (mem, _) = identity(4 << 20);
        // Hand-made tables: virtual 0x400000 -> physical 0x20_3000 and
        // virtual 0x401000 -> physical 0x20_1000 (reversed order).
        let (pml4, pdpt, pd, pt) = (0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000);
        let user = PTE_P | PTE_RW | PTE_US;
        for (addr, value) in [
            (pml4, pdpt | user),
            (pdpt, pd | user),
            (pd + 2 * 8, pt | user),
            (pt, 0x20_3000 | user),
            (pt + 8, 0x20_1000 | user),
        ] {
            mem.write_obj(value, GuestAddress(addr)).unwrap();
        }
        mem.write_slice(b"ab", GuestAddress(0x20_3FFE)).unwrap();
        mem.write_slice(b"cd\0", GuestAddress(0x20_1000)).unwrap();
        let view = GuestView::new(&mem, PagingMode::Long, pml4, true);
        let mut out = Vec::new();
        view.read_c_string(0x40_0FFE, 4096, &mut out).unwrap();
        assert_eq!(out, b"abcd");
        let mut pieces = Vec::new();
        view.for_each_piece(0x40_0FFE, 5, false, |gpa, len| pieces.push((gpa, len)))
            .unwrap();
        assert_eq!(pieces, [(0x20_3FFE, 2), (0x20_1000, 3)]);
        // Half-mapped buffer: nothing is visited.
        let mut visited = 0;
        assert!(view
            .for_each_piece(0x40_1000, 0x2000, false, |_, _| visited += 1)
            .is_err());
        assert_eq!(visited, 0);
    }

    #[test]
    fn strings_through_aliased_tables_stop_at_the_memory_size() {
        // Every 4 KiB page of the lower half maps the same page of 'A's,
        // so the "string" there would be 2^47 bytes long.
        let mem = memory::allocate(4 << 20).unwrap();
        let (pml4, pdpt, pd, pt) = (0x20_0000, 0x20_1000, 0x20_2000, 0x20_3000);
        let t = PTE_P | PTE_RW | PTE_US;
        for i in 0..512u64 {
            for (table, next) in [(pt, 0x30_0000), (pd, pt), (pdpt, pd)] {
                mem.write_obj(next | t, GuestAddress(table + i * 8))
                    .unwrap();
            }
            let top = if i < 256 { pdpt | t } else { 0 };
            mem.write_obj(top, GuestAddress(pml4 + i * 8)).unwrap();
        }
        mem.write_slice(&[b'A'; 4096], GuestAddress(0x30_0000))
            .unwrap();
        let view = GuestView::new(&mem, PagingMode::Long, pml4, false);
        let mut out = Vec::new();
        assert_eq!(
            view.read_c_string(0, u64::MAX, &mut out),
            Err(ViewError::Unterminated {
                gva: 0,
                limit: 4 << 20
            })
        );
        assert_eq!(out.len(), 4 << 20);
    }

    #[test]
    fn bad_pointers_are_errors() {
        let (mem, layout) = identity(2 << 20);
        let view = GuestView::new(&mem, PagingMode::Long, layout.pml4(), true);
        let mut out = Vec::new();
        for gva in [
            0,
            0x10,
            2 << 20,
            u64::MAX,
            0x8000_0000_0000_0000,
            layout.gdt(),
        ] {
            assert!(
                view.read_c_string(gva, u64::MAX, &mut out).is_err(),
                "{gva:#x}"
            );
        }
        assert!(view
            .for_each_piece(0x10_0000, u64::MAX, false, |_, _| {})
            .is_err());
        assert!(view.for_each_piece(u64::MAX, 2, false, |_, _| {}).is_err());
        assert!(view
            .for_each_piece(0x10_0000, 2 << 20, false, |_, _| {})
            .is_err());
    }
}
