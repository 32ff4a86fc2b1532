//! The text of `/proc/self/maps`: the program's regions as Linux lists
//! them, taken from kvmini's own record of the program's memory (its
//! image, break, mappings and stack), nothing of kvmini's area, the stub
//! page or the host (docs/linux.md, "/proc/self/maps").

use std::io::Write;
use std::ops::Range;

use super::Process;
use crate::arch::x86_64::bits::{PTE_P, PTE_RW, PTE_XD};
use crate::layout::PAGE_SIZE;

const PROT_READ: u64 = 0x1;
const PROT_WRITE: u64 = 0x2;
const PROT_EXEC: u64 = 0x4;

/// What a region is named by.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Name {
    Image,
    Heap,
    Anonymous,
    Stack,
}

/// One line: the range, `rwx` as a protection, the name.
struct Line {
    range: Range<u64>,
    prot: u64,
    name: Name,
}

/// A protection of the page-table permission bits `flags`.
fn prot_of_flags(flags: u64) -> u64 {
    if flags & PTE_P == 0 {
        return 0;
    }
    let mut prot = PROT_READ;
    if flags & PTE_RW != 0 {
        prot |= PROT_WRITE;
    }
    if flags & PTE_XD == 0 {
        prot |= PROT_EXEC;
    }
    prot
}

impl Process {
    /// The protection of the page at `page` as the program's record says
    /// it: a mapping's (one made by `mprotect` too), else the page tables'
    /// for the image, else read and write.
    fn prot_at(&self, page: u64, name: Name) -> u64 {
        let given = self.memory.mappings.iter().find_map(|m| {
            let (start, end, prot) = m.region();
            (start <= page && page < end).then_some(prot & (PROT_READ | PROT_WRITE | PROT_EXEC))
        });
        match (given, name, &self.memory.tables) {
            (Some(prot), ..) => prot,
            (None, Name::Image, Some(tables)) => prot_of_flags(tables.flags_at(page)),
            _ => PROT_READ | PROT_WRITE,
        }
    }

    /// The regions, by address, adjacent ones with the same protection
    /// and name merged as Linux merges its areas.
    fn map_lines(&self) -> Vec<Line> {
        let heap_end = self.brk.next_multiple_of(PAGE_SIZE);
        let mut named = vec![
            (self.memory.image_start..self.layout.brk_start, Name::Image),
            (self.layout.brk_start..heap_end, Name::Heap),
            (self.layout.stack_bottom..self.layout.stack_top, Name::Stack),
        ];
        named.extend(
            self.memory
                .mappings
                .iter()
                .map(|m| m.region())
                .map(|(start, end, _)| (start..end, Name::Anonymous)),
        );
        named.retain(|(r, _)| r.start < r.end);
        let mut edges: Vec<u64> = named.iter().flat_map(|(r, _)| [r.start, r.end]).collect();
        edges.sort_unstable();
        edges.dedup();
        let mut lines: Vec<Line> = Vec::new();
        for pair in edges.windows(2) {
            let (start, end) = (pair[0], pair[1]);
            // The image, heap and stack name their pages before a mapping
            // `mprotect` made over them does.
            let Some(name) = [Name::Stack, Name::Heap, Name::Image, Name::Anonymous]
                .into_iter()
                .find(|n| {
                    named
                        .iter()
                        .any(|(r, m)| m == n && r.start <= start && end <= r.end)
                })
            else {
                continue;
            };
            let mut page = start;
            while page < end {
                let prot = self.prot_at(page, name);
                match lines.last_mut() {
                    Some(last)
                        if last.range.end == page && last.prot == prot && last.name == name =>
                    {
                        last.range.end = page + PAGE_SIZE;
                    }
                    _ => lines.push(Line {
                        range: page..page + PAGE_SIZE,
                        prot,
                        name,
                    }),
                }
                // Only the image's pages differ one by one; elsewhere the
                // protection is a mapping's, whole.
                page = if name == Name::Image {
                    page + PAGE_SIZE
                } else {
                    let next = self
                        .memory
                        .mappings
                        .iter()
                        .map(|m| m.region())
                        .flat_map(|(s, e, _)| [s, e])
                        .filter(|&edge| edge > page)
                        .min()
                        .unwrap_or(end)
                        .min(end);
                    if let Some(last) = lines.last_mut() {
                        last.range.end = next;
                    }
                    next
                };
            }
        }
        lines
    }

    /// `/proc/self/maps` as Linux writes it: `start-end perms offset
    /// dev inode`, the name in column 74. The image's offset is the
    /// distance from its first page.
    pub(super) fn maps_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for line in self.map_lines() {
            let flag = |bit: u64, c: u8| if line.prot & bit != 0 { c } else { b'-' };
            let perms = [
                flag(PROT_READ, b'r'),
                flag(PROT_WRITE, b'w'),
                flag(PROT_EXEC, b'x'),
                b'p',
            ];
            let offset = match line.name {
                Name::Image => line.range.start - self.memory.image_start,
                _ => 0,
            };
            let name: &[u8] = match line.name {
                Name::Image => &self.exe,
                Name::Heap => b"[heap]",
                Name::Stack => b"[stack]",
                Name::Anonymous => b"",
            };
            let mut head = format!(
                "{:08x}-{:08x} {} {:08x} 00:00 0 ",
                line.range.start,
                line.range.end,
                String::from_utf8_lossy(&perms),
                offset
            )
            .into_bytes();
            if !name.is_empty() {
                head.resize(head.len().max(73), b' ');
                head.extend_from_slice(name);
            }
            let _ = out.write_all(&head);
            out.push(b'\n');
        }
        out
    }
}
