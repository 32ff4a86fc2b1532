//! kvmini's record of a ring-3 guest's long-mode page tables while it
//! runs, and the changes that give a range of pages new permissions: 4 KiB
//! entries where a page table maps the region, one 2 MiB entry where a
//! change covers a whole region mapped by one, a 2 MiB page split into a
//! spare page table where a change covers part of it, and a spare table
//! given back once all its pages agree again. The changes come out as
//! [`TableWrite`]s for the ring-0 helper ([`super::table_helper`]), which
//! makes them where KVM sees them; kvmini never stores into a live table
//! from the host.
//!
//! The record is kvmini's own (read once, from the tables it built, before
//! the first run): ring 3 cannot write the tables, and nothing here reads
//! them again.

use std::ops::Range;

use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use super::bits::{PTE_P, PTE_PS, PTE_RW, PTE_US, PTE_XD};
use super::table_helper::TableWrite;
use crate::layout::{Layout, PAGE_SIZE, SPARE_PAGE_TABLES, SPARE_PAGE_TABLES_START};
use crate::memory::GuestMemory;

const SIZE_2M: u64 = 2 << 20;
const ENTRIES: usize = 512;
/// The permission bits of an entry kvmini sets; everything else in an
/// entry it writes is the address (and PS in a 2 MiB one).
const FLAG_BITS: u64 = PTE_P | PTE_RW | PTE_US | PTE_XD;
/// The address bits of an entry.
const ADDRESS_BITS: u64 = 0x000F_FFFF_FFFF_F000;
/// What a directory entry that points at a page table holds besides its
/// address.
const TABLE_FLAGS: u64 = PTE_P | PTE_RW | PTE_US;

/// No spare page table is left for a 2 MiB page a change would split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no spare page table is left to split a 2 MiB page")]
pub struct OutOfTables;

/// How a 2 MiB region is mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Region {
    /// One directory entry: a 2 MiB page with these flags (0: not present).
    Large(u64),
    /// A page table at this address, with these 512 entries.
    Table(u64, Vec<u64>),
}

/// The record of a guest's tables, and the writes not yet made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveTables {
    layout: Layout,
    regions: Vec<Region>,
    /// Spare tables no region uses.
    free: Vec<u64>,
    /// Writes to make before the guest runs again, in order.
    pending: Vec<TableWrite>,
    /// Virtual ranges whose permissions those writes change.
    changed: Vec<Range<u64>>,
}

fn page_entry(base: u64, i: usize, flags: u64) -> u64 {
    if flags & PTE_P == 0 {
        return 0;
    }
    (base + i as u64 * PAGE_SIZE) | flags
}

fn large_entry(base: u64, flags: u64) -> u64 {
    if flags & PTE_P == 0 {
        return 0;
    }
    base | flags | PTE_PS
}

/// `entries` as runs of entries that each add the same step (0 or one
/// page) to the one before: (first index, count, first value, step).
fn runs(entries: &[u64]) -> Vec<(usize, usize, u64, u64)> {
    let mut out: Vec<(usize, usize, u64, u64)> = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let first = entries[i];
        let step = match entries.get(i + 1) {
            Some(&next) if next == first => 0,
            Some(&next) if next == first.wrapping_add(PAGE_SIZE) => PAGE_SIZE,
            _ => 0,
        };
        let mut n = 1;
        while i + n < entries.len() && entries[i + n] == first.wrapping_add(step * n as u64) {
            n += 1;
        }
        out.push((i, n, first, step));
        i += n;
    }
    out
}

impl LiveTables {
    /// The record of the long-mode tables kvmini wrote into `mem` for
    /// `layout`, read before the guest first runs.
    pub fn read(mem: &GuestMemory, layout: &Layout) -> Result<Self, GuestMemoryError> {
        let count = layout.mem_size / SIZE_2M;
        let mut regions = Vec::new();
        let mut used = Vec::new();
        for r in 0..count {
            let entry: u64 = mem.read_obj(GuestAddress(layout.pd(0) + r * 8))?;
            if entry & PTE_P != 0 && entry & PTE_PS == 0 {
                let table = entry & ADDRESS_BITS;
                let mut entries = vec![0u64; ENTRIES];
                for (i, e) in (0u64..).zip(entries.iter_mut()) {
                    *e = mem.read_obj(GuestAddress(table + i * 8))?;
                }
                used.push(table);
                regions.push(Region::Table(table, entries));
            } else {
                regions.push(Region::Large(entry & FLAG_BITS));
            }
        }
        let free = (0..SPARE_PAGE_TABLES)
            .map(|i| layout.spare_page_table(i))
            .filter(|t| !used.contains(t))
            .rev()
            .collect();
        Ok(LiveTables {
            layout: *layout,
            regions,
            free,
            pending: Vec::new(),
            changed: Vec::new(),
        })
    }

    /// The page-table pages the helper may store into: the directories,
    /// the first and last regions' tables and the spares.
    pub fn table_pages(&self) -> Vec<Range<u64>> {
        let l = &self.layout;
        vec![
            l.pd(0)..l.pt_low(),
            l.pt_low()..l.pt_high() + PAGE_SIZE,
            SPARE_PAGE_TABLES_START..l.spare_page_table(SPARE_PAGE_TABLES),
        ]
    }

    /// How many spare tables are free.
    pub fn free_tables(&self) -> usize {
        self.free.len()
    }

    /// The permission bits (present, writable, user, no-execute) of the
    /// page at `addr`; 0 where it is not present or outside memory.
    pub fn flags_at(&self, addr: u64) -> u64 {
        let Some(region) = self
            .regions
            .get(usize::try_from(addr / SIZE_2M).unwrap_or(usize::MAX))
        else {
            return 0;
        };
        match region {
            Region::Large(flags) => *flags,
            Region::Table(_, entries) => {
                let i = usize::try_from((addr % SIZE_2M) / PAGE_SIZE).unwrap_or(0);
                entries.get(i).map_or(0, |e| e & FLAG_BITS)
            }
        }
    }

    /// Gives the pages of `range` (page-aligned, below kvmini's area) the
    /// permission `flags` (0: not present). All or nothing: when a 2 MiB
    /// page would need a spare table and none is left, nothing changes.
    pub fn set(&mut self, range: Range<u64>, flags: u64) -> Result<(), OutOfTables> {
        let flags = if flags & PTE_P == 0 {
            0
        } else {
            flags & FLAG_BITS
        };
        let first = usize::try_from(range.start / SIZE_2M).unwrap_or(usize::MAX);
        let last = usize::try_from(range.end.div_ceil(SIZE_2M))
            .unwrap_or(usize::MAX)
            .min(self.regions.len());
        let span = |r: usize| {
            let base = r as u64 * SIZE_2M;
            let s = range.start.max(base);
            let e = range.end.min(base + SIZE_2M);
            (base, s, e)
        };
        let splits = (first..last)
            .filter(|&r| {
                let (base, s, e) = span(r);
                let whole = s == base && e == base + SIZE_2M;
                matches!(self.regions.get(r), Some(Region::Large(f)) if *f != flags && !whole)
            })
            .count();
        if splits > self.free.len() {
            return Err(OutOfTables);
        }
        for r in first..last {
            let (base, s, e) = span(r);
            if s < e {
                self.set_in_region(r, base, s..e, flags);
            }
        }
        Ok(())
    }

    fn is_spare(table: u64) -> bool {
        (SPARE_PAGE_TABLES_START..SPARE_PAGE_TABLES_START + SPARE_PAGE_TABLES * PAGE_SIZE)
            .contains(&table)
    }

    /// Writes region `r`'s directory entry, then flushes `flush` (pages).
    /// A 2 MiB page's translation goes with one `invlpg` anywhere in it;
    /// when a table becomes a 2 MiB page, the 4 KiB translations that
    /// stay valid (same address, same permissions) may stay cached, so
    /// only the pages whose permissions changed are flushed.
    fn directory_write(&mut self, r: usize, value: u64, flush: Range<u64>) {
        self.pending.push(TableWrite {
            entry: self.layout.pd(0) + r as u64 * 8,
            value,
            count: 1,
            step: 0,
            flush: flush.start,
            flush_pages: (flush.end - flush.start) / PAGE_SIZE,
        });
    }

    /// Writes `entries[from..to]` of the table at `table`, flushing their
    /// pages when `flush`.
    fn table_writes(
        &mut self,
        table: u64,
        base: u64,
        entries: &[u64],
        span: Range<usize>,
        flush: bool,
    ) {
        let Some(slice) = entries.get(span.clone()) else {
            return;
        };
        for (i, n, value, step) in runs(slice) {
            let index = (span.start + i) as u64;
            self.pending.push(TableWrite {
                entry: table + index * 8,
                value,
                count: n as u64,
                step,
                flush: if flush { base + index * PAGE_SIZE } else { 0 },
                flush_pages: if flush { n as u64 } else { 0 },
            });
        }
    }

    fn set_in_region(&mut self, r: usize, base: u64, span: Range<u64>, flags: u64) {
        let whole = span.start == base && span.end == base + SIZE_2M;
        let from = usize::try_from((span.start - base) / PAGE_SIZE).unwrap_or(0);
        let to = usize::try_from((span.end - base).div_ceil(PAGE_SIZE)).unwrap_or(0);
        let Some(region) = self.regions.get(r).cloned() else {
            return;
        };
        match region {
            Region::Large(old) if old == flags => return,
            Region::Large(_) if whole => {
                self.regions[r] = Region::Large(flags);
                self.directory_write(r, large_entry(base, flags), base..base + PAGE_SIZE);
            }
            Region::Large(old) => {
                let Some(table) = self.free.pop() else {
                    return;
                };
                let entries: Vec<u64> = (0..ENTRIES)
                    .map(|i| page_entry(base, i, if (from..to).contains(&i) { flags } else { old }))
                    .collect();
                // The table is filled before the directory points at it;
                // its old contents may be a table given back earlier.
                self.table_writes(table, base, &entries, 0..ENTRIES, false);
                self.directory_write(r, table | TABLE_FLAGS, base..base + PAGE_SIZE);
                self.regions[r] = Region::Table(table, entries);
            }
            Region::Table(table, mut entries) => {
                let before = entries.clone();
                for (i, e) in entries.iter_mut().enumerate().take(to).skip(from) {
                    *e = page_entry(base, i, flags);
                }
                if entries == before {
                    return;
                }
                let uniform = entries
                    .iter()
                    .all(|e| e & FLAG_BITS == entries[0] & FLAG_BITS);
                if uniform && Self::is_spare(table) {
                    let flags = entries[0] & FLAG_BITS;
                    self.regions[r] = Region::Large(flags);
                    self.free.push(table);
                    self.directory_write(r, large_entry(base, flags), span.clone());
                } else {
                    self.table_writes(table, base, &entries, from..to, true);
                    self.regions[r] = Region::Table(table, entries);
                }
            }
        }
        self.changed.push(span);
    }

    /// Takes the writes made since the last call, and the virtual ranges
    /// whose permissions they change.
    pub fn take_writes(&mut self) -> (Vec<TableWrite>, Vec<Range<u64>>) {
        (
            std::mem::take(&mut self.pending),
            std::mem::take(&mut self.changed),
        )
    }

    /// The writes that bring the tables as recorded here back to
    /// `pristine` (the same guest's record before its first run): every
    /// table `pristine` uses whose entries differ here (or that another
    /// region uses here, or none), then every directory entry that
    /// differs, then the pages whose permissions differ are flushed.
    pub fn writes_back_to(&self, pristine: &LiveTables) -> Vec<TableWrite> {
        if self.regions == pristine.regions {
            return Vec::new();
        }
        let mut back = LiveTables {
            pending: Vec::new(),
            changed: Vec::new(),
            ..pristine.clone()
        };
        let current_table = |table: u64| {
            self.regions
                .iter()
                .enumerate()
                .find_map(|(r, region)| match region {
                    Region::Table(t, entries) if *t == table => Some((r, entries)),
                    _ => None,
                })
        };
        let mut dirty_regions = Vec::new();
        for (r, region) in pristine.regions.iter().enumerate() {
            let Region::Table(table, entries) = region else {
                continue;
            };
            let same = current_table(*table).is_some_and(|(cr, ce)| cr == r && ce == entries);
            if !same {
                let base = r as u64 * SIZE_2M;
                back.table_writes(*table, base, entries, 0..ENTRIES, false);
                dirty_regions.push(r);
            }
        }
        for (r, region) in pristine.regions.iter().enumerate() {
            let now = self.regions.get(r);
            let differs = now != Some(region);
            if differs || dirty_regions.contains(&r) {
                let base = r as u64 * SIZE_2M;
                let value = match region {
                    Region::Large(flags) => large_entry(base, *flags),
                    Region::Table(table, _) => table | TABLE_FLAGS,
                };
                back.directory_write(r, value, base..base);
            }
        }
        // Then every page whose permissions differ is flushed.
        let top = self.layout.system_base;
        let mut page = 0;
        while page < top {
            let differs = |a: u64| self.flags_at(a) != pristine.flags_at(a);
            if !differs(page) {
                page += PAGE_SIZE;
                continue;
            }
            let start = page;
            while page < top && differs(page) {
                page += PAGE_SIZE;
            }
            back.pending.push(TableWrite {
                entry: 0,
                value: 0,
                count: 0,
                step: 0,
                flush: start,
                flush_pages: (page - start) / PAGE_SIZE,
            });
        }
        back.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::page_tables;

    const MEM: u64 = 16 << 20;

    fn tables() -> (GuestMemory, LiveTables) {
        let mem = crate::memory::allocate(MEM).unwrap();
        let layout = Layout::new(MEM);
        page_tables::build_identity_map(&mem, &layout, false).unwrap();
        let live = LiveTables::read(&mem, &layout).unwrap();
        (mem, live)
    }

    /// Applies `writes` to `mem` as the helper would.
    fn apply(mem: &GuestMemory, writes: &[TableWrite]) {
        for w in writes {
            for i in 0..w.count {
                mem.write_obj(w.value + i * w.step, GuestAddress(w.entry + i * 8))
                    .unwrap();
            }
        }
    }

    const DATA: u64 = PTE_P | PTE_RW | PTE_US;

    #[test]
    fn a_change_inside_a_2_mib_page_splits_it_and_a_change_back_gives_the_table_back() {
        let (mem, mut live) = tables();
        let pristine = live.clone();
        assert_eq!(live.free_tables(), 16);
        assert_eq!(live.flags_at(0x40_0000), DATA);
        live.set(0x40_1000..0x40_2000, 0).unwrap();
        let (writes, changed) = live.take_writes();
        assert_eq!(changed, vec![0x40_1000..0x40_2000]);
        assert_eq!(live.free_tables(), 15);
        // The table is filled in three runs, then linked (flushing the
        // large page).
        assert_eq!(writes.len(), 4);
        assert_eq!(writes[3].entry, live.layout.pd(0) + 2 * 8);
        assert_eq!((writes[3].flush, writes[3].flush_pages), (0x40_0000, 1));
        apply(&mem, &writes);
        assert_eq!(LiveTables::read(&mem, &live.layout).unwrap(), live);
        assert_eq!(live.flags_at(0x40_1000), 0);
        assert_eq!(live.flags_at(0x40_2000), DATA);
        // Back as it was: the region is one 2 MiB page again, the page
        // that changed flushed.
        live.set(0x40_1000..0x40_2000, DATA).unwrap();
        let (writes, _) = live.take_writes();
        assert_eq!(writes.len(), 1);
        assert_eq!((writes[0].flush, writes[0].flush_pages), (0x40_1000, 1));
        apply(&mem, &writes);
        assert_eq!(live.free_tables(), 16);
        assert_eq!(live, pristine);
    }

    #[test]
    fn spares_run_out_cleanly_and_nothing_changes_then() {
        let (_, mut live) = tables();
        // 16 MiB has six 2 MiB pages between the first and the last region.
        for r in 1..7 {
            live.set(r * SIZE_2M..r * SIZE_2M + PAGE_SIZE, 0).unwrap();
        }
        assert_eq!(live.free_tables(), 10);
        let (_, fresh) = tables();
        let mut none_left = LiveTables {
            free: Vec::new(),
            ..fresh
        };
        let before = none_left.clone();
        assert_eq!(
            none_left.set(0x20_0000..0x60_1000, PTE_P | PTE_US),
            Err(OutOfTables)
        );
        assert_eq!(none_left, before);
        // Whole 2 MiB pages need no spare.
        assert_eq!(none_left.set(0x20_0000..0x60_0000, PTE_P | PTE_US), Ok(()));
        assert_eq!(none_left.flags_at(0x5F_F000), PTE_P | PTE_US);
    }

    #[test]
    fn reset_writes_bring_back_the_pristine_tables() {
        let (mem, mut live) = tables();
        let pristine = live.clone();
        let snapshot: Vec<u8> = {
            let mut b = vec![0u8; 0x4000];
            mem.read_slice(&mut b, GuestAddress(live.layout.pd(0)))
                .unwrap();
            b
        };
        live.set(0x40_1000..0x40_3000, 0).unwrap();
        live.set(0x60_0000..0x80_0000, PTE_P | PTE_US).unwrap();
        live.set(0x1F_F000..0x20_1000, 0).unwrap();
        apply(&mem, &live.take_writes().0);
        assert_ne!(live, pristine);
        apply(&mem, &live.writes_back_to(&pristine));
        let read = LiveTables::read(&mem, &live.layout).unwrap();
        assert_eq!(read.regions, pristine.regions);
        let mut after = vec![0u8; 0x4000];
        mem.read_slice(&mut after, GuestAddress(live.layout.pd(0)))
            .unwrap();
        assert_eq!(after, snapshot);
        // Nothing to write when nothing changed.
        assert_eq!(pristine.writes_back_to(&pristine), vec![]);
    }

    #[test]
    fn runs_group_consecutive_pages_and_gaps() {
        assert_eq!(
            runs(&[0, 0, 0x1007, 0x2007, 0x3005, 0]),
            vec![
                (0, 2, 0, 0),
                (2, 2, 0x1007, 0x1000),
                (4, 1, 0x3005, 0),
                (5, 1, 0, 0)
            ]
        );
    }
}
