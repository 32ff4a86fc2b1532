//! The plan of a core's memory: which virtual pages become which load
//! segments, and which guest-physical pages are copied into the file, in
//! file order. Everything the guest's tables say is bounded here before it
//! costs a byte of the file or much time (see the module above).

use std::io::Write;
use std::ops::{ControlFlow, Range};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _, GuestMemoryRegion as _};

use super::{CoreError, LeftOut};
use crate::layout::PAGE_SIZE;
use crate::memory::GuestMemory;
use crate::paging::mappings::{long_mode_mappings, Mapping};
use crate::paging::Paging;

/// The most load segments a core holds: with the note segment, one less
/// than `PN_XNUM` (0xFFFF), which would mean the count is stored elsewhere.
pub const MAX_SEGMENTS: usize = 0xFFFF - 2;

/// Segment permissions (`p_flags`).
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// One load segment: `size` bytes at `vaddr`, from `offset` bytes into the
/// file's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Segment {
    pub(super) vaddr: u64,
    pub(super) size: u64,
    pub(super) offset: u64,
    pub(super) flags: u32,
}

/// The memory of a core file.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub(super) segments: Vec<Segment>,
    /// The guest-physical runs to copy, in file order.
    pub(super) copies: Vec<Range<u64>>,
    pub(super) data_bytes: u64,
    pub(super) aliased_pages: u64,
    pub(super) left_out: LeftOut,
}

/// Where each guest-physical page went in the file.
struct Planner {
    /// The file offset of each page by page number; `None` until written.
    written: Vec<Option<u64>>,
    regions: Vec<Range<u64>>,
    aliases_left: u64,
    pages_left: u64,
    user_only: bool,
    plan: Plan,
}

/// The most page tables a walk reads for a guest memory of `pages` pages:
/// eight times what mapping all of it with 4 KiB pages takes (a table maps
/// 512), and some more for small memories; far fewer than the tables a
/// hostile tree that points at the same tables again and again would have
/// the walk read.
fn table_budget(pages: u64) -> u64 {
    pages / 64 + 512
}

/// Plans the core of the long-mode tables at `cr3` in `mem`; with
/// `user_only`, of what ring 3 can read only. The walk reads at most
/// [`table_budget`] tables, describes at most one guest memory's worth
/// of aliased pages, and looks at no more than three guest memories'
/// worth of pages in all.
pub(super) fn plan(mem: &GuestMemory, paging: Paging, cr3: u64, user_only: bool) -> Plan {
    let regions: Vec<Range<u64>> = mem
        .iter()
        .map(|r| r.start_addr().0..r.start_addr().0.saturating_add(r.len()))
        .collect();
    let end = regions.iter().map(|r| r.end).max().unwrap_or(0);
    let pages = regions
        .iter()
        .map(|r| (r.end - r.start) / PAGE_SIZE)
        .sum::<u64>();
    let mut planner = Planner {
        written: vec![None; usize::try_from(end / PAGE_SIZE).unwrap_or(0)],
        regions,
        aliases_left: pages,
        pages_left: pages.saturating_mul(3),
        user_only,
        plan: Plan::default(),
    };
    let walk = long_mode_mappings(mem, paging, cr3, table_budget(pages), |m| {
        planner.mapping(m)
    });
    planner.plan.left_out.tables = walk.tables_skipped;
    planner.plan
}

impl Planner {
    fn mapping(&mut self, m: Mapping) -> ControlFlow<()> {
        let flags = PF_R | if m.writable { PF_W } else { 0 } | if m.executable { PF_X } else { 0 };
        let leaf = m.gpa..m.gpa.saturating_add(m.len);
        for r in 0..self.regions.len() {
            let (start, end) = (
                leaf.start.max(self.regions[r].start),
                leaf.end.min(self.regions[r].end),
            );
            if self.user_only && !m.user {
                self.plan.left_out.supervisor_pages += end.saturating_sub(start) / PAGE_SIZE;
                continue;
            }
            let mut gpa = start;
            while gpa < end {
                let va = m.va.wrapping_add(gpa - m.gpa);
                if self.pages_left == 0 {
                    self.plan.left_out.stopped_at = Some(va);
                    return ControlFlow::Break(());
                } else {
                    self.pages_left -= 1;
                    self.page(va, gpa, flags);
                }
                gpa += PAGE_SIZE;
            }
        }
        ControlFlow::Continue(())
    }

    /// Adds the virtual page `va`, mapped to `gpa`, to the plan.
    fn page(&mut self, va: u64, gpa: u64, flags: u32) {
        let Some(slot) = usize::try_from(gpa / PAGE_SIZE)
            .ok()
            .and_then(|n| self.written.get(n).copied())
        else {
            return;
        };
        let alias = slot.is_some();
        if alias && self.aliases_left == 0 {
            self.plan.left_out.aliased_pages += 1;
            return;
        }
        let offset = slot.unwrap_or(self.plan.data_bytes);
        let extends = self.plan.segments.last().is_some_and(|s| {
            s.flags == flags
                && s.vaddr.checked_add(s.size) == Some(va)
                && s.offset + s.size == offset
        });
        if !extends && self.plan.segments.len() >= MAX_SEGMENTS {
            self.plan.left_out.segment_limit_pages += 1;
            return;
        }
        match self.plan.segments.last_mut() {
            Some(last) if extends => last.size += PAGE_SIZE,
            _ => self.plan.segments.push(Segment {
                vaddr: va,
                size: PAGE_SIZE,
                offset,
                flags,
            }),
        }
        if alias {
            self.aliases_left -= 1;
            self.plan.aliased_pages += 1;
            return;
        }
        if let Some(slot) = usize::try_from(gpa / PAGE_SIZE)
            .ok()
            .and_then(|n| self.written.get_mut(n))
        {
            *slot = Some(offset);
        }
        self.plan.data_bytes += PAGE_SIZE;
        match self.plan.copies.last_mut() {
            Some(run) if run.end == gpa => run.end += PAGE_SIZE,
            _ => self.plan.copies.push(gpa..gpa + PAGE_SIZE),
        }
    }
}

/// Copies the planned runs of guest memory to `out`, in order.
pub(super) fn copy(
    mem: &GuestMemory,
    copies: &[Range<u64>],
    out: &mut dyn Write,
) -> Result<(), CoreError> {
    const CHUNK: usize = 1 << 16;
    let mut buf = vec![0u8; CHUNK];
    for run in copies {
        let mut gpa = run.start;
        while gpa < run.end {
            let len = usize::try_from(run.end - gpa).map_or(CHUNK, |left| left.min(CHUNK));
            let chunk = &mut buf[..len];
            mem.read_slice(chunk, GuestAddress(gpa))
                .map_err(|source| CoreError::Memory { gpa, source })?;
            out.write_all(chunk).map_err(CoreError::Write)?;
            gpa += chunk.len() as u64;
        }
    }
    Ok(())
}
