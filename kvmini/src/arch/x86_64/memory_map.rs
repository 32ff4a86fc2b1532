//! The permissions of a ring-3 long-mode ELF guest's memory (an SDK
//! guest or a Linux program), set in its page tables before its first
//! run: each loaded segment with its ELF flags, the Linux system-call
//! stub read-only and executable, an unmapped guard below the stack, and
//! everything else readable, writable and not executable. It also tells a
//! page fault against these permissions apart for the crash report.

use std::fmt;
use std::ops::Range;

use kvmini_abi::layout::ELF_LOAD_MIN;

use crate::layout::{PAGE_SIZE, SPARE_PAGE_TABLES_START};
use crate::loader::{Segment, PF_W, PF_X};

/// The most identity ranges a guest view is given (the longest writable
/// runs); a buffer outside them is walked, which is slower but exact.
pub const MAX_IDENTITY_RANGES: usize = 4;

/// The stack an SDK guest is given below kvmini's area, at most (the
/// room above its image when that is less).
pub const SDK_STACK_SIZE: u64 = 1 << 20;

/// The unmapped guard below an SDK guest's stack, where the room above
/// its image allows.
pub const SDK_STACK_GUARD: u64 = 64 << 10;

/// An SDK guest's stack and the guard below it, for an image that ends at
/// `image_end` and a stack whose top is `top`: both clipped to what lies
/// above the image.
pub fn sdk_stack(image_end: u64, top: u64) -> (Range<u64>, Range<u64>) {
    let floor = page_up(image_end);
    let bottom = top.saturating_sub(SDK_STACK_SIZE).max(floor);
    let guard_bottom = bottom.saturating_sub(SDK_STACK_GUARD).max(floor);
    (bottom..top, guard_bottom..bottom)
}

/// What a ring-3 access may do with a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// The page is mapped (and so readable).
    pub read: bool,
    /// Writes are allowed.
    pub write: bool,
    /// Instruction fetches are allowed.
    pub execute: bool,
}

impl Permissions {
    /// Readable, writable, not executable: data, the stack, free memory.
    pub const DATA: Permissions = Permissions {
        read: true,
        write: true,
        execute: false,
    };
    /// Readable and executable: code.
    pub const CODE: Permissions = Permissions {
        read: true,
        write: false,
        execute: true,
    };
    /// Not mapped at all.
    pub const NONE: Permissions = Permissions {
        read: false,
        write: false,
        execute: false,
    };

    /// The permissions of an ELF segment's flags. A mapped segment is
    /// always readable, as on x86 a present page is.
    pub const fn of_elf(flags: u32) -> Self {
        Permissions {
            read: true,
            write: flags & PF_W != 0,
            execute: flags & PF_X != 0,
        }
    }

    /// What either allows.
    const fn union(self, other: Permissions) -> Permissions {
        Permissions {
            read: self.read || other.read,
            write: self.write || other.write,
            execute: self.execute || other.execute,
        }
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bit = |on: bool, c: char| if on { c } else { '-' };
        write!(
            f,
            "{}{}{}",
            bit(self.read, 'r'),
            bit(self.write, 'w'),
            bit(self.execute, 'x')
        )
    }
}

/// What lives in an area of the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AreaKind {
    /// The image's loaded segment of this index (from 0, in program
    /// header order among the loaded ones).
    Segment(usize),
    /// The stack.
    Stack,
    /// The unmapped guard below the stack.
    StackGuard,
    /// A Linux program's system-call stub page.
    Stub,
    /// kvmini's spare page tables below the image (supervisor-only).
    PageTables,
}

impl fmt::Display for AreaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AreaKind::Segment(n) => write!(f, "segment {n}"),
            AreaKind::Stack => f.write_str("stack"),
            AreaKind::StackGuard => f.write_str("stack guard"),
            AreaKind::Stub => f.write_str("system-call stub"),
            AreaKind::PageTables => f.write_str("kvmini's page tables"),
        }
    }
}

/// One page-aligned area of the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Area {
    /// What it holds.
    pub kind: AreaKind,
    /// First byte (page-aligned).
    pub start: u64,
    /// End, exclusive (page-aligned).
    pub end: u64,
    /// What ring 3 may do there.
    pub permissions: Permissions,
}

/// The guest's memory below kvmini's area, by area; what no area covers
/// (the null page excepted) is [`Permissions::DATA`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryMap {
    areas: Vec<Area>,
    /// kvmini's area starts here: the map ends.
    top: u64,
}

/// A page fault that broke the map's permissions, as the crash report
/// names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A write to a page that is mapped read-only.
    WriteToReadOnly {
        /// The faulting address.
        addr: u64,
        /// The area it lies in.
        kind: AreaKind,
        /// The area's permissions.
        permissions: Permissions,
    },
    /// An instruction fetch from a page that is not executable.
    ExecuteNonExecutable {
        /// The faulting address.
        addr: u64,
        /// The area it lies in, `None` for free memory (heap, mappings).
        kind: Option<AreaKind>,
        /// Its permissions.
        permissions: Permissions,
    },
    /// An access a Linux program's own `mprotect`, `munmap` or `mmap`
    /// no longer allows.
    ChangedByProgram {
        /// The faulting address.
        addr: u64,
        /// What the program left the page.
        permissions: Permissions,
    },
    /// An access to the guard below the stack.
    StackOverflow {
        /// The faulting address.
        addr: u64,
        /// The stack's bounds.
        stack: Range<u64>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::WriteToReadOnly {
                addr,
                kind,
                permissions,
            } => write!(
                f,
                "write to read-only memory at {addr:#x} ({kind}, {permissions})"
            ),
            Violation::ExecuteNonExecutable {
                addr,
                kind,
                permissions,
            } => match kind {
                Some(kind) => write!(
                    f,
                    "execute from non-executable memory at {addr:#x} ({kind}, {permissions})"
                ),
                None => write!(
                    f,
                    "execute from non-executable memory at {addr:#x} (free memory, {permissions})"
                ),
            },
            Violation::ChangedByProgram { addr, permissions } => write!(
                f,
                "access to {addr:#x}, which the program's own mprotect, munmap or mmap left {permissions}"
            ),
            Violation::StackOverflow { addr, stack } => write!(
                f,
                "stack overflow at {addr:#x} (stack {:#x}..{:#x})",
                stack.start, stack.end
            ),
        }
    }
}

/// Page-fault error code bits (Intel SDM 4.7).
const PF_PRESENT: u64 = 1 << 0;
const PF_WRITE: u64 = 1 << 1;
const PF_FETCH: u64 = 1 << 4;

fn page_down(a: u64) -> u64 {
    a & !(PAGE_SIZE - 1)
}

fn page_up(a: u64) -> u64 {
    a.checked_next_multiple_of(PAGE_SIZE)
        .unwrap_or(page_down(a))
}

impl MemoryMap {
    /// The map of an image's `segments` with its `stack`, a `guard` below
    /// it, and a Linux program's `stub` page, all below `top` (kvmini's
    /// area). Pages two segments share get what either allows; the
    /// stack and the guard never cover a segment's page.
    pub fn new(
        segments: &[Segment],
        stack: Range<u64>,
        guard: Range<u64>,
        stub: Option<u64>,
        top: u64,
    ) -> Self {
        let mut areas: Vec<Area> = vec![Area {
            kind: AreaKind::PageTables,
            start: SPARE_PAGE_TABLES_START,
            end: ELF_LOAD_MIN,
            permissions: Permissions::NONE,
        }];
        for (n, segment) in segments.iter().enumerate() {
            let (mut start, end) = (page_down(segment.vaddr), page_up(segment.end()));
            let permissions = Permissions::of_elf(segment.flags);
            let shared = areas
                .last()
                .filter(|previous| previous.end > start)
                .cloned();
            if let Some(previous) = shared {
                // The page two segments share gets what either allows.
                if let Some(last) = areas.last_mut() {
                    last.end = start;
                }
                areas.push(Area {
                    kind: AreaKind::Segment(n),
                    start,
                    end: start + PAGE_SIZE,
                    permissions: permissions.union(previous.permissions),
                });
                start += PAGE_SIZE;
            }
            areas.retain(|a| a.start < a.end);
            if start >= end {
                continue;
            }
            areas.push(Area {
                kind: AreaKind::Segment(n),
                start,
                end,
                permissions,
            });
        }
        let image_end = areas.last().map_or(ELF_LOAD_MIN, |a| a.end);
        let mut push = |kind, range: Range<u64>, permissions| {
            let start = page_down(range.start).max(image_end);
            let end = page_up(range.end).min(top);
            if start < end {
                areas.push(Area {
                    kind,
                    start,
                    end,
                    permissions,
                });
            }
        };
        push(AreaKind::StackGuard, guard, Permissions::NONE);
        push(AreaKind::Stack, stack, Permissions::DATA);
        if let Some(stub) = stub {
            push(AreaKind::Stub, stub..stub + PAGE_SIZE, Permissions::CODE);
        }
        areas.sort_by_key(|a| a.start);
        MemoryMap { areas, top }
    }

    /// The areas, lowest first.
    pub fn areas(&self) -> &[Area] {
        &self.areas
    }

    /// The area holding `addr`, if one does.
    pub fn area_at(&self, addr: u64) -> Option<&Area> {
        self.areas.iter().find(|a| a.start <= addr && addr < a.end)
    }

    /// What ring 3 may do at `addr` (below kvmini's area).
    pub fn permissions_at(&self, addr: u64) -> Permissions {
        self.area_at(addr)
            .map_or(Permissions::DATA, |a| a.permissions)
    }

    /// The stack's bounds, if the map has one.
    pub fn stack(&self) -> Option<Range<u64>> {
        self.areas
            .iter()
            .find(|a| a.kind == AreaKind::Stack)
            .map(|a| a.start..a.end)
    }

    /// The guard's bounds, if the map has one.
    pub fn guard(&self) -> Option<Range<u64>> {
        self.areas
            .iter()
            .find(|a| a.kind == AreaKind::StackGuard)
            .map(|a| a.start..a.end)
    }

    /// The longest runs of ring-3 writable memory from `start` (the first
    /// mapped page) to kvmini's area, at most [`MAX_IDENTITY_RANGES`] of
    /// them, lowest first: where a guest view may skip the page walk.
    pub fn writable_runs(&self, start: u64) -> Vec<Range<u64>> {
        let mut runs: Vec<Range<u64>> = Vec::new();
        let mut add = |r: Range<u64>| {
            if r.start >= r.end {
                return;
            }
            match runs.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => runs.push(r),
            }
        };
        let mut at = start;
        for area in self.areas.iter().filter(|a| a.end > start) {
            add(at..area.start);
            if area.permissions.write {
                add(area.start.max(at)..area.end);
            }
            at = at.max(area.end);
        }
        add(at..self.top);
        runs.sort_by_key(|r| std::cmp::Reverse(r.end - r.start));
        runs.truncate(MAX_IDENTITY_RANGES);
        runs.sort_by_key(|r| r.start);
        runs
    }

    /// [`MemoryMap::explain`] for a page the program's memory calls may
    /// have changed: `now` is what the page allows now, when kvmini knows.
    pub fn explain_now(
        &self,
        error_code: u64,
        cr2: u64,
        now: Option<Permissions>,
    ) -> Option<Violation> {
        match now {
            Some(permissions)
                if (ELF_LOAD_MIN..self.top).contains(&cr2)
                    && permissions != self.permissions_at(cr2) =>
            {
                Some(Violation::ChangedByProgram {
                    addr: cr2,
                    permissions,
                })
            }
            _ => self.explain(error_code, cr2),
        }
    }

    /// The violation a ring-3 page fault with `error_code` at `cr2` is,
    /// if it broke these permissions.
    pub fn explain(&self, error_code: u64, cr2: u64) -> Option<Violation> {
        if cr2 >= self.top {
            return None;
        }
        let area = self.area_at(cr2);
        if area.is_some_and(|a| a.kind == AreaKind::PageTables) {
            return None;
        }
        if let (Some(area), Some(stack)) = (area, self.stack()) {
            if area.kind == AreaKind::StackGuard {
                return Some(Violation::StackOverflow { addr: cr2, stack });
            }
        }
        if error_code & PF_PRESENT == 0 {
            return None;
        }
        let permissions = self.permissions_at(cr2);
        if error_code & PF_FETCH != 0 && !permissions.execute {
            return Some(Violation::ExecuteNonExecutable {
                addr: cr2,
                kind: area.map(|a| a.kind),
                permissions,
            });
        }
        match area {
            Some(area) if error_code & PF_WRITE != 0 && !permissions.write => {
                Some(Violation::WriteToReadOnly {
                    addr: cr2,
                    kind: area.kind,
                    permissions,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::PF_R;

    fn segment(vaddr: u64, mem_size: u64, flags: u32) -> Segment {
        Segment {
            file_offset: 0,
            vaddr,
            file_size: mem_size,
            mem_size,
            flags,
        }
    }

    fn sdk_map() -> MemoryMap {
        MemoryMap::new(
            &[
                segment(0x10_0000, 0x1800, PF_R | PF_X),
                segment(0x10_2000, 0x100, PF_R),
                segment(0x10_3000, 0x2100, PF_R | PF_W),
            ],
            0x70_0000..0x7E_0000,
            0x6F_0000..0x70_0000,
            None,
            0x7E_0000,
        )
    }

    #[test]
    fn segments_get_their_elf_flags_and_the_rest_is_data() {
        let map = sdk_map();
        let at = |a| map.permissions_at(a).to_string();
        assert_eq!(at(0x10_1FFF), "r-x");
        assert_eq!(at(0x10_2000), "r--");
        assert_eq!(at(0x10_5FFF), "rw-");
        assert_eq!(at(0x10_6000), "rw-");
        assert_eq!(at(0x6F_0000), "---");
        assert_eq!(at(0x70_0000), "rw-");
        assert_eq!(
            map.writable_runs(0x1000),
            vec![0x1000..0xF_0000, 0x10_3000..0x6F_0000, 0x70_0000..0x7E_0000]
        );
    }

    #[test]
    fn faults_are_named_by_what_they_broke() {
        let map = sdk_map();
        assert_eq!(
            map.explain(0x7, 0x10_0010).unwrap().to_string(),
            "write to read-only memory at 0x100010 (segment 0, r-x)"
        );
        assert_eq!(
            map.explain(0x15, 0x10_2000).unwrap().to_string(),
            "execute from non-executable memory at 0x102000 (segment 1, r--)"
        );
        assert_eq!(
            map.explain(0x15, 0x20_0000).unwrap().to_string(),
            "execute from non-executable memory at 0x200000 (free memory, rw-)"
        );
        assert_eq!(
            map.explain(0x6, 0x6F_FFF8).unwrap().to_string(),
            "stack overflow at 0x6ffff8 (stack 0x700000..0x7e0000)"
        );
        // Not a broken permission: an unmapped page elsewhere, a read,
        // kvmini's own tables.
        assert_eq!(map.explain(0x4, 0x10), None);
        assert_eq!(map.explain(0x7, 0xF_0000), None);
        assert_eq!(map.explain(0x5, 0x10_0000), None);
    }

    #[test]
    fn a_shared_page_gets_what_either_segment_allows() {
        let map = MemoryMap::new(
            &[
                segment(0x10_0000, 0x1800, PF_R | PF_X),
                segment(0x10_1800, 0x1000, PF_R | PF_W),
            ],
            0..0,
            0..0,
            None,
            0x20_0000,
        );
        assert_eq!(map.permissions_at(0x10_0000).to_string(), "r-x");
        assert_eq!(map.permissions_at(0x10_1000).to_string(), "rwx");
        assert_eq!(map.permissions_at(0x10_2000).to_string(), "rw-");
    }
}
