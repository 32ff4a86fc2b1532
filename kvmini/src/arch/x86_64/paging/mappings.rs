//! Every mapping of a long-mode guest's page tables, in virtual address
//! order: what a core file describes. The tables are the guest's and may
//! be hostile (a ring-0 guest writes its own): an entry the CPU would fault
//! on is skipped, a table outside guest memory is skipped, and the walk
//! reads at most a given number of tables, so tables that point at
//! themselves or at each other many times over cost a bounded walk.

use std::ops::ControlFlow;

use vm_memory::{Bytes, GuestAddress};

use super::{long_reserved, Paging, ADDR_MASK, ENTRIES};
use crate::arch::x86_64::bits::{PTE_P, PTE_PS, PTE_RW, PTE_US, PTE_XD};
use crate::memory::GuestMemory;

/// A table's size: 512 entries of 8 bytes.
const TABLE_BYTES: usize = 4096;

/// One leaf of the tables: `len` bytes at virtual `va` mapped to
/// guest-physical `gpa`, with what every level on the way allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The virtual address (canonical).
    pub va: u64,
    /// The guest-physical address it maps to.
    pub gpa: u64,
    /// The page size: 4 KiB, 2 MiB or 1 GiB.
    pub len: u64,
    /// Every level allows ring 3.
    pub user: bool,
    /// Every level allows writes.
    pub writable: bool,
    /// No level sets execute-disable.
    pub executable: bool,
}

/// How a walk of every mapping ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkEnd {
    /// Tables the walk read.
    pub tables_read: u64,
    /// Tables it did not read because its table budget was spent.
    pub tables_skipped: u64,
    /// Tables (or CR3) outside guest memory.
    pub tables_outside: u64,
    /// The visitor stopped the walk.
    pub stopped: bool,
}

/// What the walk permits on the way down to a table.
#[derive(Clone, Copy)]
struct Allowed {
    user: bool,
    writable: bool,
    executable: bool,
}

struct Walker<'a, F> {
    mem: &'a GuestMemory,
    paging: Paging,
    tables_left: u64,
    end: WalkEnd,
    visit: F,
}

/// Calls `visit` with every present leaf of the long-mode tables at `cr3`,
/// in virtual address order, reading at most `max_tables` tables. `visit`
/// may stop the walk with [`ControlFlow::Break`].
pub fn long_mode_mappings<F>(
    mem: &GuestMemory,
    paging: Paging,
    cr3: u64,
    max_tables: u64,
    visit: F,
) -> WalkEnd
where
    F: FnMut(Mapping) -> ControlFlow<()>,
{
    let mut walker = Walker {
        mem,
        paging,
        tables_left: max_tables,
        end: WalkEnd::default(),
        visit,
    };
    let all = Allowed {
        user: true,
        writable: true,
        executable: true,
    };
    // A stop is recorded in `end`; the rest of the walk is not needed.
    let _ = walker.table(cr3 & ADDR_MASK, 4, 0, all);
    walker.end
}

impl<F> Walker<'_, F>
where
    F: FnMut(Mapping) -> ControlFlow<()>,
{
    /// Walks the table at `table`, a level `level` table covering the
    /// addresses from `base`.
    fn table(&mut self, table: u64, level: u8, base: u64, above: Allowed) -> ControlFlow<()> {
        if self.tables_left == 0 {
            self.end.tables_skipped += 1;
            return ControlFlow::Continue(());
        }
        self.tables_left -= 1;
        let mut bytes = [0u8; TABLE_BYTES];
        if self
            .mem
            .read_slice(&mut bytes, GuestAddress(table))
            .is_err()
        {
            self.end.tables_outside += 1;
            return ControlFlow::Continue(());
        }
        self.end.tables_read += 1;
        let shift = 12 + 9 * u32::from(level - 1);
        for (index, raw) in (0..ENTRIES).zip(bytes.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(raw);
            let entry = u64::from_le_bytes(word);
            if entry & PTE_P == 0 || entry & long_reserved(self.paging, level, entry) != 0 {
                continue;
            }
            let va = canonical(base | (index << shift));
            let allowed = Allowed {
                user: above.user && entry & PTE_US != 0,
                writable: above.writable && entry & PTE_RW != 0,
                executable: above.executable && entry & PTE_XD == 0,
            };
            let is_leaf = level == 1 || ((level == 2 || level == 3) && entry & PTE_PS != 0);
            if is_leaf {
                let len = 1u64 << shift;
                let mapping = Mapping {
                    va,
                    gpa: entry & ADDR_MASK & !(len - 1),
                    len,
                    user: allowed.user,
                    writable: allowed.writable,
                    executable: allowed.executable,
                };
                if (self.visit)(mapping).is_break() {
                    self.end.stopped = true;
                    return ControlFlow::Break(());
                }
            } else {
                self.table(entry & ADDR_MASK, level - 1, va, allowed)?;
            }
        }
        ControlFlow::Continue(())
    }
}

/// Bits 63..48 copies of bit 47, as the CPU requires of an address.
fn canonical(va: u64) -> u64 {
    if va & (1 << 47) != 0 {
        va | 0xFFFF_0000_0000_0000
    } else {
        va
    }
}
