//! The process state's rules, without KVM: brk, mmap, munmap, mprotect,
//! mremap, and the page-table writes they make.

use super::*;
use crate::arch::x86_64::live_tables::LiveTables;
use crate::arch::x86_64::page_tables;
use crate::paging::{CpuPaging, Paging, PagingMode};
use crate::view::GuestView;
use vm_memory::Bytes as _;

const MEM: u64 = 16 << 20;

fn setup() -> (crate::memory::GuestMemory, Layout) {
    let mem = crate::memory::allocate(MEM).unwrap();
    let layout = Layout::new(MEM);
    page_tables::build_identity_map(&mem, &layout, false).unwrap();
    (mem, layout)
}

/// A process for an image ending at `image_end`, with the tables of `mem`.
fn process(mem: &crate::memory::GuestMemory, layout: &Layout, image_end: u64) -> Process {
    let p = ProcessLayout::new(layout, image_end).unwrap();
    let tables = LiveTables::read(mem, layout).unwrap();
    Process::new(p, 0, 0, 64).with_tables(tables, 0x10_0000)
}

fn view<'a>(mem: &'a crate::memory::GuestMemory, layout: &Layout) -> GuestView<'a> {
    let long = Paging::new(PagingMode::Long, false, CpuPaging::ALL_FEATURES);
    GuestView::new(mem, long, layout.pml4(), true)
        .with_identity(page_tables::user_identity_range(layout, false))
}

#[test]
fn the_layout_puts_the_stub_below_kvmini_and_the_stack_below_it() {
    let layout = Layout::new(MEM);
    let p = ProcessLayout::new(&layout, 0x40_0123).unwrap();
    assert_eq!(p.stub, layout.system_base - PAGE_SIZE);
    assert_eq!(p.stack_top, p.stub);
    assert_eq!(p.stack_bottom, p.stub - STACK_SIZE);
    assert_eq!(p.guard_bottom, p.stack_bottom - STACK_GUARD);
    assert_eq!(p.brk_start, 0x40_1000);
    assert_eq!(p.stack_size(), STACK_SIZE);
    // Less memory: the guard is an eighth of what lies between the image
    // and the stub, the stack the rest, down to 64 KiB.
    let small = Layout::new(4 << 20);
    let q = ProcessLayout::new(&small, 0x10_0000).unwrap();
    assert_eq!(
        (q.guard_bottom, q.stack_bottom, q.stack_top),
        (0x10_0000, 0x15_D000, 0x3E_F000)
    );
    let q = ProcessLayout::new(&small, 0x3E_F000 - STACK_MIN - 0x2000).unwrap();
    assert_eq!(q.stack_size(), STACK_MIN);
    assert_eq!(q.stack_bottom - q.guard_bottom, 0x2000);
    assert!(ProcessLayout::new(&small, 0x3E_F000 - STACK_MIN - 0x1000).is_err());
    assert!(ProcessLayout::new(&layout, p.stub).is_err());
    assert!(ProcessLayout::new(&layout, u64::MAX).is_err());
}

#[test]
fn brk_moves_between_its_start_and_the_lowest_mapping() {
    let (mem, layout) = setup();
    let view = view(&mem, &layout);
    let mut process = process(&mem, &layout, 0x20_0000);
    assert_eq!(process.set_brk(&view, 0), 0x20_0000);
    assert_eq!(
        process.set_brk(&view, 0x1F_FFFF),
        0x20_0000,
        "below its start"
    );
    assert_eq!(process.set_brk(&view, 0x30_0001), 0x30_0001);
    assert_eq!(process.set_brk(&view, u64::MAX), 0x30_0001);
    assert_eq!(
        process.set_brk(&view, process.layout().stack_bottom + 1),
        0x30_0001,
        "into the stack"
    );
    // Shrinking zeroes what it gives back.
    mem.write_obj(0xAAu8, vm_memory::GuestAddress(0x30_0000))
        .unwrap();
    assert_eq!(process.set_brk(&view, 0x28_0000), 0x28_0000);
    let byte: u8 = vm_memory::Bytes::read_obj(&mem, vm_memory::GuestAddress(0x30_0000)).unwrap();
    assert_eq!(byte, 0);
}

#[test]
fn mmap_takes_pages_below_the_stack_and_enomem_past_the_break() {
    let (mem, layout) = setup();
    let view = view(&mem, &layout);
    let p = ProcessLayout::new(&layout, 0x20_0000).unwrap();
    let mut process = process(&mem, &layout, 0x20_0000);
    let private_anon = 0x22;
    let a = process.mmap(&view, 0, 1, 3, private_anon).unwrap();
    assert_eq!(u64::try_from(a).unwrap(), p.guard_bottom - PAGE_SIZE);
    let b = process.mmap(&view, 0, 0x2000, 3, private_anon).unwrap();
    assert_eq!(b, a - 0x2000);
    // More than memory holds, lengths near u64::MAX, and zero.
    let enomem = Err(Errno::new(libc::ENOMEM).unwrap());
    assert_eq!(process.mmap(&view, 0, MEM, 3, private_anon), enomem);
    assert_eq!(process.mmap(&view, 0, u64::MAX, 3, private_anon), enomem);
    assert_eq!(
        process.mmap(&view, 0, u64::MAX - 4095, 3, private_anon),
        enomem
    );
    assert_eq!(
        process.mmap(&view, 0, 0, 3, private_anon),
        Err(Errno::EINVAL)
    );
    // Shared and file-backed mappings are not served; a fixed one at 0
    // is outside the program's memory.
    assert_eq!(process.mmap(&view, 0, 4096, 3, 0x21), Err(Errno::EINVAL));
    assert_eq!(
        process.mmap(&view, 0, 4096, 3, 0x02),
        Err(Errno::new(libc::ENODEV).unwrap())
    );
    assert_eq!(process.mmap(&view, 0, 4096, 3, 0x32), enomem);
    // The break cannot grow into a mapping.
    let floor = u64::try_from(b).unwrap();
    assert_eq!(process.set_brk(&view, floor + 1), 0x20_0000);
    assert_eq!(process.set_brk(&view, floor), b);
    assert_eq!(process.mmap(&view, 0, 4096, 3, private_anon), enomem);
}

#[test]
fn munmap_zeroes_and_gives_the_lowest_pages_back() {
    let (mem, layout) = setup();
    let view = view(&mem, &layout);
    let p = ProcessLayout::new(&layout, 0x20_0000).unwrap();
    let mut process = process(&mem, &layout, 0x20_0000);
    let a = u64::try_from(process.mmap(&view, 0, 0x3000, 3, 0x22).unwrap()).unwrap();
    mem.write_obj(0x55u8, vm_memory::GuestAddress(a + 0x1000))
        .unwrap();
    assert_eq!(process.munmap(&view, a + 1, 4096), Err(Errno::EINVAL));
    assert_eq!(process.munmap(&view, a, 0), Err(Errno::EINVAL));
    assert_eq!(process.munmap(&view, a, u64::MAX), Err(Errno::EINVAL));
    assert_eq!(process.munmap(&view, a, 0x3000), Ok(0));
    let byte: u8 = vm_memory::Bytes::read_obj(&mem, vm_memory::GuestAddress(a + 0x1000)).unwrap();
    assert_eq!(byte, 0);
    // The same pages come back.
    assert_eq!(
        process.mmap(&view, 0, 0x3000, 3, 0x22),
        Ok(i64::try_from(a).unwrap())
    );
    // Unmapping what is not mapped (the stack, the image) changes nothing.
    mem.write_obj(0x77u8, vm_memory::GuestAddress(p.stack_bottom))
        .unwrap();
    assert_eq!(process.munmap(&view, p.stack_bottom, 4096), Ok(0));
    let byte: u8 =
        vm_memory::Bytes::read_obj(&mem, vm_memory::GuestAddress(p.stack_bottom)).unwrap();
    assert_eq!(byte, 0x77);
}

const PTE_PRESENT: u64 = 1;
const PTE_WRITE: u64 = 2;
const PTE_NX: u64 = 1 << 63;

fn flags_at(process: &Process, addr: u64) -> u64 {
    process.memory.tables.as_ref().unwrap().flags_at(addr)
}

#[test]
fn mprotect_checks_as_linux_does_and_changes_the_tables() {
    let (mem, layout) = setup();
    let view = view(&mem, &layout);
    let mut process = process(&mem, &layout, 0x20_0000);
    let a = u64::try_from(process.mmap(&view, 0, 0x3000, 3, 0x22).unwrap()).unwrap();
    process.take_table_writes();
    let enomem = Err(Errno::new(libc::ENOMEM).unwrap());
    assert_eq!(process.mprotect(a + 1, 4096, 0), Err(Errno::EINVAL));
    assert_eq!(process.mprotect(a, 0, 0x40), Ok(0), "nothing to change");
    assert_eq!(process.mprotect(a, 4096, 0x40), Err(Errno::EINVAL));
    assert_eq!(process.mprotect(a, 4096, 0x0300_0000), Err(Errno::EINVAL));
    assert_eq!(process.mprotect(a, u64::MAX, 0), enomem);
    // Past the mapping, the stub, kvmini's area, the guard, free memory.
    assert_eq!(process.mprotect(a, 0x4000, 0), enomem);
    let stub = process.layout().stub;
    assert_eq!(process.mprotect(stub, 4096, 7), enomem);
    assert_eq!(process.mprotect(layout.system_base, 4096, 7), enomem);
    assert_eq!(
        process.mprotect(process.layout().guard_bottom, 4096, 3),
        enomem
    );
    assert_eq!(process.mprotect(0x10_0000 - 4096, 4096, 3), enomem);
    assert_eq!(
        process.take_table_writes().0,
        vec![],
        "refused calls write nothing"
    );
    // Enforced: none, read-only, executable, and back.
    assert_eq!(process.mprotect(a, 4096, 0), Ok(0));
    assert_eq!(flags_at(&process, a), 0);
    assert_eq!(process.mprotect(a + 0x1000, 4096, 1), Ok(0));
    assert_eq!(flags_at(&process, a + 0x1000), PTE_PRESENT | 4 | PTE_NX);
    assert_eq!(process.mprotect(a + 0x2000, 4096, 5), Ok(0));
    assert_eq!(flags_at(&process, a + 0x2000), PTE_PRESENT | 4);
    let (writes, changed) = process.take_table_writes();
    assert!(!writes.is_empty());
    assert_eq!(changed.len(), 3);
    assert_eq!(process.mprotect(a, 0x3000, 3), Ok(0));
    assert_eq!(
        flags_at(&process, a + 0x2000),
        PTE_PRESENT | PTE_WRITE | 4 | PTE_NX
    );
    // The image and the stack are the program's too.
    assert_eq!(process.mprotect(0x10_0000, 4096, 1), Ok(0));
    assert_eq!(
        process.mprotect(process.layout().stack_bottom, 4096, 1),
        Ok(0)
    );
}

#[test]
fn munmap_takes_pages_away_and_a_later_mmap_brings_them_back() {
    let (mem, layout) = setup();
    let view = view(&mem, &layout);
    let mut process = process(&mem, &layout, 0x20_0000);
    let a = u64::try_from(process.mmap(&view, 0, 0x3000, 3, 0x22).unwrap()).unwrap();
    assert_eq!(process.munmap(&view, a + 0x1000, 0x1000), Ok(0));
    assert_eq!(flags_at(&process, a + 0x1000), 0);
    assert_eq!(flags_at(&process, a), PTE_PRESENT | PTE_WRITE | 4 | PTE_NX);
    // The hole is reused, present again, with the protection asked for.
    assert_eq!(
        process.mmap(&view, 0, 0x1000, 5, 0x22),
        Ok(i64::try_from(a + 0x1000).unwrap())
    );
    assert_eq!(flags_at(&process, a + 0x1000), PTE_PRESENT | 4);
    // PROT_NONE mappings are not present.
    let n = u64::try_from(process.mmap(&view, 0, 0x1000, 0, 0x22).unwrap()).unwrap();
    assert_eq!(flags_at(&process, n), 0);
}

#[test]
fn map_fixed_replaces_and_noreplace_refuses() {
    let (mem, layout) = setup();
    let view = view(&mem, &layout);
    let mut process = process(&mem, &layout, 0x20_0000);
    let a = u64::try_from(process.mmap(&view, 0, 0x2000, 3, 0x22).unwrap()).unwrap();
    mem.write_obj(0x66u8, vm_memory::GuestAddress(a)).unwrap();
    let fixed = 0x32;
    let noreplace = 0x10_0022;
    let eexist = Err(Errno::new(libc::EEXIST).unwrap());
    let enomem = Err(Errno::new(libc::ENOMEM).unwrap());
    assert_eq!(process.mmap(&view, a, 0x1000, 3, noreplace), eexist);
    assert_eq!(
        process.mmap(&view, a + 1, 0x1000, 3, fixed),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        process.mmap(&view, a, 0x1000, 1, fixed),
        Ok(i64::try_from(a).unwrap())
    );
    let byte: u8 = vm_memory::Bytes::read_obj(&mem, vm_memory::GuestAddress(a)).unwrap();
    assert_eq!(byte, 0, "replaced by zero pages");
    assert_eq!(flags_at(&process, a), PTE_PRESENT | 4 | PTE_NX);
    // Never over the stub, the guard, kvmini's area or its spare tables.
    let l = *process.layout();
    for at in [l.stub, l.guard_bottom, layout.system_base, 0xF_0000, 0] {
        assert_eq!(process.mmap(&view, at, 0x1000, 7, fixed), enomem, "{at:#x}");
        assert_eq!(
            process.mmap(&view, at, 0x1000, 7, noreplace),
            enomem,
            "{at:#x}"
        );
    }
    // In free memory, and over the image.
    assert_eq!(
        process.mmap(&view, 0x40_0000, 0x1000, 3, noreplace),
        Ok(0x40_0000)
    );
    assert_eq!(
        process.mmap(&view, 0x10_0000, 0x1000, 3, fixed),
        Ok(0x10_0000)
    );
}

#[test]
fn mremap_grows_in_place_moves_by_copying_and_shrinks() {
    let (mem, layout) = setup();
    let view = view(&mem, &layout);
    let mut process = process(&mem, &layout, 0x20_0000);
    let a = u64::try_from(process.mmap(&view, 0, 0x2000, 3, 0x22).unwrap()).unwrap();
    mem.write_obj(0x5Au8, vm_memory::GuestAddress(a + 0x1FFF))
        .unwrap();
    // Above the first mapping lies the guard: no room in place.
    let enomem = Err(Errno::new(libc::ENOMEM).unwrap());
    assert_eq!(process.mremap(&view, (a, 0x2000, 0x4000), 0, 0), enomem);
    let b = u64::try_from(process.mremap(&view, (a, 0x2000, 0x4000), 1, 0).unwrap()).unwrap();
    assert_ne!(a, b);
    let byte: u8 = vm_memory::Bytes::read_obj(&mem, vm_memory::GuestAddress(b + 0x1FFF)).unwrap();
    assert_eq!(byte, 0x5A);
    assert_eq!(flags_at(&process, a), 0, "the old pages are gone");
    assert_eq!(
        flags_at(&process, b + 0x3000),
        PTE_PRESENT | PTE_WRITE | 4 | PTE_NX
    );
    // Shrinking, then growing back in place.
    assert_eq!(
        process.mremap(&view, (b, 0x4000, 0x1000), 0, 0),
        Ok(i64::try_from(b).unwrap())
    );
    assert_eq!(flags_at(&process, b + 0x1000), 0);
    assert_eq!(
        process.mremap(&view, (b, 0x1000, 0x3000), 0, 0),
        Ok(i64::try_from(b).unwrap())
    );
    assert_eq!(
        flags_at(&process, b + 0x2000),
        PTE_PRESENT | PTE_WRITE | 4 | PTE_NX
    );
    // Errors: not a mapping, bad flags, fixed over itself.
    assert_eq!(
        process.mremap(&view, (0x10_0000, 0x1000, 0x2000), 1, 0),
        Err(Errno::EFAULT)
    );
    assert_eq!(
        process.mremap(&view, (b, 0x1000, 0x2000), 2, 0x40_0000),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        process.mremap(&view, (b, 0x1000, 0x2000), 8, 0),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        process.mremap(&view, (b, 0x1000, 0x2000), 3, b),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        process.mremap(&view, (b, 0x1000, 0x1000), 3, 0x40_0000),
        Ok(0x40_0000)
    );
}
