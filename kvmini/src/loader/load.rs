//! Writing a checked image into guest memory: every segment is checked
//! against the load window and guest memory before the first byte is
//! written, so a rejected image leaves guest memory untouched.

use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

use super::{LoadWindow, LoadedImage, LoaderError, Segment, PF_R, PF_W, PF_X};

/// File lengths are compared in u64; a usize always fits on supported hosts.
fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Checks that [start, end) lies inside the window.
fn check_window(start: u64, end: u64, window: &LoadWindow) -> Result<(), LoaderError> {
    if start < window.start {
        return Err(LoaderError::SegmentBelowWindow {
            start,
            end,
            win_start: window.start,
            win_end: window.end,
        });
    }
    if end > window.end {
        return Err(LoaderError::SegmentPastWindow {
            start,
            end,
            win_start: window.start,
            win_end: window.end,
        });
    }
    Ok(())
}

/// Checks that every byte of [start, start + len) has guest memory behind it.
fn check_backed(mem: &GuestMemoryMmap, start: u64, len: u64) -> Result<(), LoaderError> {
    let end = start.saturating_add(len);
    let backed = usize::try_from(len)
        .is_ok_and(|n| mem.check_range(GuestAddress(start), n, Permissions::Write));
    if backed {
        Ok(())
    } else {
        Err(LoaderError::NotInGuestMemory { start, end })
    }
}

/// Zeroes [addr, addr + len) through vm-memory, a chunk at a time; the caller
/// guarantees `addr + len` does not overflow.
fn zero_fill(mem: &GuestMemoryMmap, addr: u64, len: u64) -> Result<(), LoaderError> {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let chunk = ZEROS
            .get(..usize::try_from(len - done).unwrap_or(ZEROS.len()))
            .unwrap_or(&ZEROS);
        mem.write_slice(chunk, GuestAddress(addr + done))?;
        done += len_u64(chunk.len());
    }
    Ok(())
}

/// Loads an ELF into guest memory: copies each PT_LOAD's file bytes to p_paddr==p_vaddr (identity-mapped guest), zeroes the rest up to p_memsz (bss).
pub fn load_elf(
    mem: &GuestMemoryMmap,
    bytes: &[u8],
    window: &LoadWindow,
) -> Result<LoadedImage, LoaderError> {
    let (image, contents) = super::elf::parse(bytes)?;
    // Check every segment before writing any, so a rejected image changes nothing.
    for s in &image.segments {
        check_window(s.vaddr, s.end(), window)?;
        check_backed(mem, s.vaddr, s.mem_size)?;
    }
    for (s, data) in image.segments.iter().zip(contents) {
        if !data.is_empty() {
            mem.write_slice(data, GuestAddress(s.vaddr))?;
        }
        // parse checked file_size <= mem_size and that vaddr + mem_size does not overflow.
        zero_fill(mem, s.vaddr + s.file_size, s.mem_size - s.file_size)?;
    }
    Ok(image)
}

/// Loads a flat binary at `window.start`, entry = window.start (the classic KVM hello world: at 0, entry 0).
pub fn load_flat(
    mem: &GuestMemoryMmap,
    bytes: &[u8],
    window: &LoadWindow,
) -> Result<LoadedImage, LoaderError> {
    if bytes.is_empty() {
        return Err(LoaderError::FlatEmpty);
    }
    let size = len_u64(bytes.len());
    let room = window.end.saturating_sub(window.start);
    if size > room {
        return Err(LoaderError::FlatTooLarge {
            size,
            win_start: window.start,
            win_end: window.end,
        });
    }
    // size <= end - start, so this cannot overflow.
    let end = window.start + size;
    check_backed(mem, window.start, size)?;
    mem.write_slice(bytes, GuestAddress(window.start))?;
    Ok(LoadedImage {
        entry: window.start,
        lowest: window.start,
        highest: end,
        // A flat image has no headers, so nothing says which parts are code.
        segments: vec![Segment {
            file_offset: 0,
            vaddr: window.start,
            file_size: size,
            mem_size: size,
            flags: PF_R | PF_W | PF_X,
        }],
        abi_version: None,
    })
}
