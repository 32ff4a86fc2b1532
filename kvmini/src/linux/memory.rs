//! A Linux program's memory calls: `brk`, `mmap`, `munmap`, `mprotect`
//! and `mremap`, with Linux's arguments and errno values (docs/linux.md,
//! "Memory"). Every change of a page's permissions goes into the
//! program's page tables through [`LiveTables`], which kvmini makes take
//! effect before the program runs again; when a change cannot be made
//! (no spare page table is left to split a 2 MiB page) the call is
//! `ENOMEM` and changes nothing.
//!
//! The program's memory is its image, its break, its mappings and its
//! stack. Everything else (the null page, kvmini's spare tables below the
//! image, the stack's guard, the system-call stub, kvmini's own area) is
//! out of reach of every call here, as memory past `TASK_SIZE` is on
//! Linux.

use std::ops::Range;

use vm_memory::{Bytes, GuestAddress};

use super::Process;
use crate::arch::x86_64::bits::{PTE_P, PTE_RW, PTE_US, PTE_XD};
use crate::arch::x86_64::live_tables::LiveTables;
use crate::errno::Errno;
use crate::fs::Filesystem;
use crate::layout::PAGE_SIZE;
use crate::view::GuestView;

const fn errno(code: i32) -> Errno {
    match Errno::new(code) {
        Some(e) => e,
        None => Errno::EINVAL,
    }
}
const ENOMEM: Errno = errno(libc::ENOMEM);
const ENODEV: Errno = errno(libc::ENODEV);
const EEXIST: Errno = errno(libc::EEXIST);
const EACCES: Errno = errno(libc::EACCES);
const ESPIPE: Errno = errno(libc::ESPIPE);

const PROT_READ: u64 = 0x1;
const PROT_WRITE: u64 = 0x2;
const PROT_EXEC: u64 = 0x4;
const PROT_SEM: u64 = 0x8;
const PROT_GROWSDOWN: u64 = 0x0100_0000;
const PROT_GROWSUP: u64 = 0x0200_0000;
const MAP_PRIVATE: u64 = 0x02;
const MAP_TYPE: u64 = 0x0F;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;

/// The program's break and mappings: what its memory calls change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Memory {
    /// The anonymous mappings, by start, not overlapping: [start, end)
    /// and the protection they were given.
    pub(super) mappings: Vec<Mapping>,
    /// The first page of the image.
    pub(super) image_start: u64,
    /// The program's page tables as kvmini keeps them (`None` only for a
    /// process built without tables, in tests: every change of
    /// permissions is then `ENOMEM`).
    pub(super) tables: Option<LiveTables>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mapping {
    start: u64,
    end: u64,
    prot: u64,
}

impl Mapping {
    /// `[start, end)` and the protection the mapping was given.
    pub(super) fn region(&self) -> (u64, u64, u64) {
        (self.start, self.end, self.prot)
    }
}

/// The page-table permission bits of a protection: not present without
/// any access (x86 cannot map a page that cannot be read), no-execute
/// unless `PROT_EXEC`, writable only with `PROT_WRITE`.
pub(super) fn page_flags(prot: u64) -> u64 {
    if prot & (PROT_READ | PROT_WRITE | PROT_EXEC) == 0 {
        return 0;
    }
    let mut flags = PTE_P | PTE_US;
    if prot & PROT_WRITE != 0 {
        flags |= PTE_RW;
    }
    if prot & PROT_EXEC == 0 {
        flags |= PTE_XD;
    }
    flags
}

const DATA: u64 = PROT_READ | PROT_WRITE;

fn page_up(len: u64) -> Option<u64> {
    len.checked_next_multiple_of(PAGE_SIZE)
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Zeroes [addr, addr + len) of guest memory; the caller keeps it inside
/// the program's own pages.
pub(super) fn zero(view: &GuestView<'_>, addr: u64, len: u64) {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(ZEROS.len() as u64);
        let chunk = ZEROS.get(..usize::try_from(n).unwrap_or(0)).unwrap_or(&[]);
        if view
            .memory()
            .write_slice(chunk, GuestAddress(addr + done))
            .is_err()
        {
            return;
        }
        done += n;
    }
}

/// Copies `len` bytes of guest memory from `from` to `to` (neither range
/// overlapping the other, both the program's own pages).
fn copy(view: &GuestView<'_>, from: u64, to: u64, len: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64);
        let Some(chunk) = buf.get_mut(..usize::try_from(n).unwrap_or(0)) else {
            return;
        };
        let mem = view.memory();
        if mem.read_slice(chunk, GuestAddress(from + done)).is_err()
            || mem.write_slice(chunk, GuestAddress(to + done)).is_err()
        {
            return;
        }
        done += n;
    }
}

impl Process {
    /// Gives `ranges` their flags in the page tables, all or none.
    fn protect(&mut self, ranges: &[(Range<u64>, u64)]) -> Result<(), Errno> {
        let tables = self.memory.tables.as_mut().ok_or(ENOMEM)?;
        if let [(range, flags)] = ranges {
            // One range is all or nothing by itself.
            return tables.set(range.clone(), *flags).map_err(|_| ENOMEM);
        }
        let mut trial = tables.clone();
        for (range, flags) in ranges {
            trial.set(range.clone(), *flags).map_err(|_| ENOMEM)?;
        }
        *tables = trial;
        Ok(())
    }

    /// The lowest mapping at or above the break's start: the break grows
    /// up to it (the guard's bottom when there is none).
    fn brk_limit(&self) -> u64 {
        self.memory
            .mappings
            .iter()
            .map(|m| m.start)
            .filter(|&s| s >= self.layout.brk_start)
            .min()
            .unwrap_or(self.layout.guard_bottom)
    }

    /// What the break may still take.
    pub(super) fn free_memory(&self) -> u64 {
        self.brk_limit().saturating_sub(self.brk)
    }

    /// The pages of the break.
    fn heap(&self) -> Range<u64> {
        self.layout.brk_start..self.brk.next_multiple_of(PAGE_SIZE)
    }

    /// Whether every page of `range` is the program's: its image, its
    /// break, a mapping or its stack.
    fn is_program_memory(&self, range: &Range<u64>) -> bool {
        let mut parts = vec![
            self.memory.image_start..self.layout.brk_start,
            self.heap(),
            self.layout.stack_bottom..self.layout.stack_top,
        ];
        parts.extend(self.memory.mappings.iter().map(|m| m.start..m.end));
        parts.sort_by_key(|p| p.start);
        let mut at = range.start;
        for p in parts.iter().filter(|p| p.start < p.end) {
            if p.start <= at && at < p.end {
                at = p.end;
            }
        }
        at >= range.end
    }

    /// Whether any page of `range` is the program's.
    fn touches_program_memory(&self, range: &Range<u64>) -> bool {
        let mut parts = vec![
            self.memory.image_start..self.layout.brk_start,
            self.heap(),
            self.layout.stack_bottom..self.layout.stack_top,
        ];
        parts.extend(self.memory.mappings.iter().map(|m| m.start..m.end));
        parts.iter().any(|p| overlaps(p, range))
    }

    /// Where a fixed mapping may go: the image, or what lies between the
    /// break and the stack's guard.
    fn fixed_allowed(&self, range: &Range<u64>) -> bool {
        let image = self.memory.image_start..self.layout.brk_start;
        let free = self.heap().end..self.layout.guard_bottom;
        let inside = |r: &Range<u64>| r.start <= range.start && range.end <= r.end;
        inside(&image) || inside(&free)
    }

    /// Takes `range` out of the mappings; returns what was taken.
    fn carve(&mut self, range: &Range<u64>) -> Vec<Mapping> {
        let mut kept = Vec::with_capacity(self.memory.mappings.len() + 1);
        let mut taken = Vec::new();
        for m in &self.memory.mappings {
            let (s, e) = (m.start.max(range.start), m.end.min(range.end));
            if s >= e {
                kept.push(*m);
                continue;
            }
            taken.push(Mapping {
                start: s,
                end: e,
                prot: m.prot,
            });
            if m.start < s {
                kept.push(Mapping { end: s, ..*m });
            }
            if e < m.end {
                kept.push(Mapping { start: e, ..*m });
            }
        }
        kept.sort_by_key(|m| m.start);
        self.memory.mappings = kept;
        taken
    }

    fn add_mapping(&mut self, range: Range<u64>, prot: u64) {
        self.memory.mappings.push(Mapping {
            start: range.start,
            end: range.end,
            prot,
        });
        self.memory.mappings.sort_by_key(|m| m.start);
    }

    /// The highest free `len` bytes between the break and the stack's
    /// guard: below the lowest mapping, or in a hole between two.
    fn free_range(&self, len: u64) -> Option<Range<u64>> {
        let floor = self.heap().end;
        let mut top = self.layout.guard_bottom;
        let mut below: Vec<&Mapping> = self
            .memory
            .mappings
            .iter()
            .filter(|m| m.end <= self.layout.guard_bottom && m.start >= floor)
            .collect();
        below.sort_by_key(|m| std::cmp::Reverse(m.end));
        for m in below {
            if top.saturating_sub(m.end) >= len {
                return Some(top - len..top);
            }
            top = top.min(m.start);
        }
        let start = top.checked_sub(len)?;
        (start >= floor).then_some(start..top)
    }

    /// `brk`: moves the break within [its start, the lowest mapping above
    /// it]; any other request leaves it. Pages it takes are readable and
    /// writable whatever they were; pages given back are zeroed, so that
    /// the break or a mapping that takes them again reads zeros.
    pub(super) fn set_brk(&mut self, view: &GuestView<'_>, want: u64) -> i64 {
        if want >= self.layout.brk_start && want <= self.brk_limit() {
            let (old_end, new_end) = (self.heap().end, want.next_multiple_of(PAGE_SIZE));
            let taken = new_end > old_end
                && self
                    .protect(&[(old_end..new_end, page_flags(DATA))])
                    .is_err();
            if !taken {
                if want < self.brk {
                    zero(view, want, self.brk - want);
                }
                self.brk = want;
            }
        }
        i64::try_from(self.brk).unwrap_or(i64::MAX)
    }

    /// `mmap`: anonymous private mappings of zero pages with `prot`,
    /// taken from the top of the free memory below the stack's guard
    /// (holes first), or at `addr` with `MAP_FIXED` (replacing what was
    /// there) or `MAP_FIXED_NOREPLACE` (`EEXIST` when something is).
    pub(super) fn mmap(
        &mut self,
        view: &GuestView<'_>,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
    ) -> Result<i64, Errno> {
        // A shared mapping would share pages with another process or a
        // file: there is neither.
        if flags & MAP_TYPE != MAP_PRIVATE {
            return Err(Errno::EINVAL);
        }
        if flags & MAP_ANONYMOUS == 0 {
            return Err(ENODEV);
        }
        let range = self.place(addr, len, prot, flags)?;
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
            zero(view, range.start, range.end - range.start);
        }
        i64::try_from(range.start).map_err(|_| ENOMEM)
    }

    /// `mmap` of a file (`fd` at `offset`): a private mapping is placed as
    /// an anonymous one and filled by reading the file (pages past its end
    /// read zeros); writes to it stay in the program's memory. A shared
    /// file mapping is `ENODEV`: the program's pages are never the host
    /// file's. A descriptor not open for reading is `EACCES` (`EBADF`
    /// when not open at all).
    pub(super) fn mmap_file(
        &mut self,
        view: &GuestView<'_>,
        fs: &mut Filesystem,
        (addr, len, prot, flags): (u64, u64, u64, u64),
        (fd, offset): (i32, u64),
    ) -> Result<i64, Errno> {
        if flags & MAP_TYPE != MAP_PRIVATE {
            return Err(if flags & MAP_TYPE == 0 {
                Errno::EINVAL
            } else {
                ENODEV
            });
        }
        if offset % PAGE_SIZE != 0 || len == 0 {
            return Err(Errno::EINVAL);
        }
        let offset = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
        // An open descriptor that cannot be read is EACCES for mmap, one
        // that cannot be read at an offset (a pipe, a terminal) ENODEV.
        let not_readable = |fs: &Filesystem, e: Errno| {
            if e == Errno::EBADF && fs.linux_std_stream(fd).is_ok() {
                EACCES
            } else if e == ESPIPE {
                ENODEV
            } else {
                e
            }
        };
        // The descriptor first: nothing is placed for one that is not open.
        fs.linux_std_stream(fd)?;
        let range = self.place(addr, len, prot, flags)?;
        let size = range.end - range.start;
        zero(view, range.start, size);
        // kvmini placed the range in the program's memory itself: the read
        // goes there directly, whatever the pages' permissions will be.
        let target = view.with_identity(range.clone());
        let mut done = 0u64;
        while done < size {
            let at = offset.saturating_add(i64::try_from(done).unwrap_or(i64::MAX));
            match fs.linux_io(&target, fd, range.start + done, size - done, Some(at), None) {
                Ok(0) => break,
                Ok(n) => done += u64::try_from(n).unwrap_or(size),
                Err(e) => {
                    self.munmap(view, range.start, size)?;
                    return Err(not_readable(fs, e));
                }
            }
        }
        i64::try_from(range.start).map_err(|_| ENOMEM)
    }

    /// Places a mapping of `len` bytes with `prot`: at `addr` for the
    /// fixed flags, else in free memory; its pages get `prot` and it
    /// replaces the mappings it covers.
    fn place(&mut self, addr: u64, len: u64, prot: u64, flags: u64) -> Result<Range<u64>, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(ENOMEM)?;
        let range = if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
            if addr % PAGE_SIZE != 0 {
                return Err(Errno::EINVAL);
            }
            let range = addr..addr.checked_add(len).ok_or(ENOMEM)?;
            if flags & MAP_FIXED == 0 && self.touches_program_memory(&range) {
                return Err(EEXIST);
            }
            if !self.fixed_allowed(&range) {
                return Err(ENOMEM);
            }
            range
        } else {
            self.free_range(len).ok_or(ENOMEM)?
        };
        self.protect(&[(range.clone(), page_flags(prot))])?;
        self.carve(&range);
        self.add_mapping(range.clone(), prot);
        Ok(range)
    }

    /// `munmap`: the part of [addr, addr + len) that is mapped is zeroed
    /// and no longer present (a touch is a page fault, as on Linux); the
    /// rest (the image, the break, the stack) is left alone, and unmapping
    /// nothing is fine.
    pub(super) fn munmap(
        &mut self,
        view: &GuestView<'_>,
        addr: u64,
        len: u64,
    ) -> Result<i64, Errno> {
        if addr % PAGE_SIZE != 0 || len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = addr
            .checked_add(len)
            .and_then(page_up)
            .ok_or(Errno::EINVAL)?;
        let pieces: Vec<(Range<u64>, u64)> = self
            .memory
            .mappings
            .iter()
            .filter(|m| m.start < end && addr < m.end)
            .map(|m| (m.start.max(addr)..m.end.min(end), 0))
            .collect();
        self.protect(&pieces)?;
        for (piece, _) in &pieces {
            zero(view, piece.start, piece.end - piece.start);
        }
        self.carve(&(addr..end));
        Ok(0)
    }

    /// `mprotect`: Linux's checks in Linux's order, then the pages get
    /// `prot` in the page tables. Every page must be the program's
    /// (`ENOMEM` otherwise, and nothing changes).
    pub(super) fn mprotect(&mut self, addr: u64, len: u64, prot: u64) -> Result<i64, Errno> {
        let grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
        if grows == PROT_GROWSDOWN | PROT_GROWSUP || addr % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(0);
        }
        let end = page_up(len)
            .and_then(|l| addr.checked_add(l))
            .filter(|&e| e > addr)
            .ok_or(ENOMEM)?;
        let known = PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM;
        // No mapping of a Linux program grows: a grows flag is EINVAL.
        if prot & !known != 0 {
            return Err(Errno::EINVAL);
        }
        let range = addr..end;
        if !self.is_program_memory(&range) {
            return Err(ENOMEM);
        }
        self.protect(&[(range.clone(), page_flags(prot))])?;
        for mut piece in self.carve(&range) {
            piece.prot = prot;
            self.add_mapping(piece.start..piece.end, prot);
        }
        Ok(0)
    }

    /// `mremap` of an anonymous mapping: shrinking gives the tail back;
    /// growing takes the pages above in place when they are free, else
    /// (`MREMAP_MAYMOVE`) moves the mapping by copying it to free memory;
    /// `MREMAP_FIXED` moves it to `new_addr`, replacing what is there.
    pub(super) fn mremap(
        &mut self,
        view: &GuestView<'_>,
        (old, old_len, new_len): (u64, u64, u64),
        flags: u64,
        new_addr: u64,
    ) -> Result<i64, Errno> {
        if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED) != 0
            || old % PAGE_SIZE != 0
            || (flags & MREMAP_FIXED != 0 && flags & MREMAP_MAYMOVE == 0)
        {
            return Err(Errno::EINVAL);
        }
        let old_len = page_up(old_len).ok_or(Errno::EINVAL)?;
        let new_len = page_up(new_len).ok_or(Errno::EINVAL)?;
        if new_len == 0 || old_len == 0 {
            return Err(Errno::EINVAL);
        }
        let old_end = old.checked_add(old_len).ok_or(Errno::EFAULT)?;
        let mapping = self
            .memory
            .mappings
            .iter()
            .find(|m| m.start <= old && old_end <= m.end)
            .copied()
            .ok_or(Errno::EFAULT)?;
        let result = |a: u64| i64::try_from(a).map_err(|_| ENOMEM);
        if flags & MREMAP_FIXED != 0 {
            if new_addr % PAGE_SIZE != 0 {
                return Err(Errno::EINVAL);
            }
            let target = new_addr..new_addr.checked_add(new_len).ok_or(ENOMEM)?;
            if overlaps(&target, &(old..old_end)) {
                return Err(Errno::EINVAL);
            }
            if !self.fixed_allowed(&target) {
                return Err(ENOMEM);
            }
            self.move_mapping(view, old..old_end, target, mapping.prot)?;
            return result(new_addr);
        }
        if new_len <= old_len {
            if new_len < old_len {
                self.munmap(view, old + new_len, old_len - new_len)?;
            }
            return result(old);
        }
        let grown = old_end..old + new_len;
        let in_place = old_end == mapping.end
            && grown.end <= self.layout.guard_bottom
            && !self.touches_program_memory(&grown)
            && grown.start >= self.heap().end;
        if in_place {
            self.protect(&[(grown.clone(), page_flags(mapping.prot))])?;
            self.add_mapping(grown, mapping.prot);
            return result(old);
        }
        if flags & MREMAP_MAYMOVE == 0 {
            return Err(ENOMEM);
        }
        let target = self.free_range(new_len).ok_or(ENOMEM)?;
        let start = target.start;
        self.move_mapping(view, old..old_end, target, mapping.prot)?;
        result(start)
    }

    /// Moves the pages of `from` to `to` (not overlapping): `to` is mapped
    /// with `prot` (replacing what was there), the bytes copied, and
    /// `from` unmapped.
    fn move_mapping(
        &mut self,
        view: &GuestView<'_>,
        from: Range<u64>,
        to: Range<u64>,
        prot: u64,
    ) -> Result<(), Errno> {
        let unmapped: Vec<(Range<u64>, u64)> = vec![(from.clone(), 0)];
        self.protect(&[(to.clone(), page_flags(prot)), unmapped[0].clone()])?;
        self.carve(&to);
        zero(view, to.start, to.end - to.start);
        let len = (from.end - from.start).min(to.end - to.start);
        copy(view, from.start, to.start, len);
        zero(view, from.start, from.end - from.start);
        self.carve(&from);
        self.add_mapping(to, prot);
        Ok(())
    }
}
