//! The ring-0 helper that changes a ring-3 guest's page tables while it
//! runs: on a host where KVM shadows the guest's tables (kvm-pvm), a
//! store kvmini makes through its own mapping of guest memory is not seen
//! by KVM, but a store and an `invlpg` the guest makes at ring 0 are
//! (docs/kvm-pvm.md, "Changing a page-table entry from the host"). kvmini
//! writes a list of [`TableWrite`]s into its own supervisor-only area,
//! sends the vCPU to the helper at ring 0, and brings it back when the
//! helper halts. Nothing here talks to KVM.
//!
//! The helper takes the list's address in RSI and its length in RCX and
//! reads nothing else: each item's stores, then its `invlpg`s, in order.

use std::ops::Range;

use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use crate::layout::{Layout, PAGE_SIZE};
use crate::memory::GuestMemory;

/// The helper's code (64-bit, ring 0):
///
/// ```text
/// next:   test rcx, rcx / jz done
///         mov rdi, [rsi] / mov rax, [rsi+8] / mov rdx, [rsi+16] / mov r8, [rsi+24]
/// store:  test rdx, rdx / jz flush
///         mov [rdi], rax / add rdi, 8 / add rax, r8 / dec rdx / jmp store
/// flush:  mov r9, [rsi+32] / mov rdx, [rsi+40]
/// inval:  test rdx, rdx / jz item
///         invlpg [r9] / add r9, 0x1000 / dec rdx / jmp inval
/// item:   add rsi, 48 / dec rcx / jmp next
/// done:   hlt
/// ```
pub const HELPER_CODE: [u8; 0x4F] = [
    0x48, 0x85, 0xC9, 0x74, 0x49, 0x48, 0x8B, 0x3E, 0x48, 0x8B, 0x46, 0x08, 0x48, 0x8B, 0x56, 0x10,
    0x4C, 0x8B, 0x46, 0x18, 0x48, 0x85, 0xD2, 0x74, 0x0F, 0x48, 0x89, 0x07, 0x48, 0x83, 0xC7, 0x08,
    0x4C, 0x01, 0xC0, 0x48, 0xFF, 0xCA, 0xEB, 0xEC, 0x4C, 0x8B, 0x4E, 0x20, 0x48, 0x8B, 0x56, 0x28,
    0x48, 0x85, 0xD2, 0x74, 0x10, 0x41, 0x0F, 0x01, 0x39, 0x49, 0x81, 0xC1, 0x00, 0x10, 0x00, 0x00,
    0x48, 0xFF, 0xCA, 0xEB, 0xEB, 0x48, 0x83, 0xC6, 0x30, 0x48, 0xFF, 0xC9, 0xEB, 0xB2, 0xF4,
];

/// Bytes of one item in the helper's list.
const ITEM_BYTES: u64 = 48;

/// Where the helper's code sits: in the page of kvmini's exception
/// handlers (supervisor-only, read-only, executable), after them.
pub const fn code_address(layout: &Layout) -> u64 {
    layout.handlers() + 0x400
}

/// Where RIP is once the helper has halted.
pub const fn done_address(layout: &Layout) -> u64 {
    code_address(layout) + HELPER_CODE.len() as u64
}

/// Where the helper's list sits: the second half of the handlers' page,
/// which ring 3 can neither read nor write.
pub const fn list_address(layout: &Layout) -> u64 {
    layout.handlers() + 0x800
}

/// The most items one run of the helper takes.
pub const LIST_CAPACITY: usize = (0x800 / ITEM_BYTES) as usize;

/// One item of the helper's list: `count` consecutive 8-byte entries from
/// `entry`, the first `value`, each next one `step` more; then `invlpg`
/// of `flush_pages` pages from `flush`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableWrite {
    /// Guest-physical address of the first entry.
    pub entry: u64,
    /// The first entry's new value.
    pub value: u64,
    /// How many entries.
    pub count: u64,
    /// What each entry adds to the one before it.
    pub step: u64,
    /// The first virtual page whose translation is dropped.
    pub flush: u64,
    /// How many pages from `flush`.
    pub flush_pages: u64,
}

/// A list item kvmini itself got wrong: the helper never runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("page-table write {0:x?} lies outside kvmini's page tables or guest memory")]
pub struct BadWrite(pub TableWrite);

/// Errors writing the helper's list.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// An item is out of bounds.
    #[error(transparent)]
    BadWrite(#[from] BadWrite),
    /// More items than one run takes.
    #[error("{0} page-table writes do not fit the helper's list")]
    TooMany(usize),
    /// Guest memory could not take the list.
    #[error("cannot write the page-table helper's list")]
    Memory(#[source] GuestMemoryError),
}

/// Checks `write` as the helper would run it: every entry it stores lies
/// in one of `tables` (page-table pages, whole), 8-byte aligned, and every
/// page it flushes lies below `top`.
pub fn check(write: &TableWrite, tables: &[Range<u64>], top: u64) -> Result<(), BadWrite> {
    let bad = BadWrite(*write);
    let stores_end = write
        .count
        .checked_mul(8)
        .and_then(|n| write.entry.checked_add(n))
        .ok_or(bad)?;
    let in_one_table = tables
        .iter()
        .any(|t| t.start <= write.entry && stores_end <= t.end);
    if write.entry % 8 != 0 || (write.count > 0 && !in_one_table) {
        return Err(bad);
    }
    let flush_end = write
        .flush_pages
        .checked_mul(PAGE_SIZE)
        .and_then(|n| write.flush.checked_add(n))
        .ok_or(bad)?;
    if write.flush_pages > 0 && flush_end > top {
        return Err(bad);
    }
    Ok(())
}

/// Writes `writes` (already [`check`]ed) as the helper's list into `mem`.
pub fn write_list(
    mem: &GuestMemory,
    layout: &Layout,
    writes: &[TableWrite],
) -> Result<(), HelperError> {
    if writes.len() > LIST_CAPACITY {
        return Err(HelperError::TooMany(writes.len()));
    }
    let bytes: Vec<u8> = writes
        .iter()
        .flat_map(|w| {
            [w.entry, w.value, w.count, w.step, w.flush, w.flush_pages]
                .into_iter()
                .flat_map(u64::to_le_bytes)
        })
        .collect();
    mem.write_slice(&bytes, GuestAddress(list_address(layout)))
        .map_err(HelperError::Memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_and_its_list_share_the_handlers_page_after_the_handlers() {
        let layout = Layout::new(8 << 20);
        let handlers_end = crate::cpu::exception_tail_range(&layout).end;
        assert!(code_address(&layout) >= handlers_end);
        assert!(done_address(&layout) <= list_address(&layout));
        let list_end = list_address(&layout) + LIST_CAPACITY as u64 * ITEM_BYTES;
        assert!(list_end <= layout.exception_stack_bottom());
        assert_eq!(HELPER_CODE[HELPER_CODE.len() - 1], 0xF4, "ends in hlt");
    }

    #[test]
    fn writes_outside_the_tables_or_memory_are_refused() {
        let tables = std::slice::from_ref(&(0x1000..0x2000));
        let ok = TableWrite {
            entry: 0x1FF8,
            value: 0x3,
            count: 1,
            step: 0,
            flush: 0x40_0000,
            flush_pages: 1,
        };
        assert_eq!(check(&ok, tables, 0x80_0000), Ok(()));
        for bad in [
            TableWrite { count: 2, ..ok },
            TableWrite {
                entry: 0x1FF4,
                ..ok
            },
            TableWrite {
                entry: 0x2000,
                ..ok
            },
            TableWrite {
                count: u64::MAX,
                ..ok
            },
            TableWrite {
                flush: 0x7F_F000,
                flush_pages: 2,
                ..ok
            },
            TableWrite {
                flush_pages: u64::MAX,
                ..ok
            },
        ] {
            assert_eq!(check(&bad, tables, 0x80_0000), Err(BadWrite(bad)));
        }
    }
}
