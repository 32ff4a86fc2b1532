//! The process state's rules, without KVM: brk, mmap, munmap.

use super::*;
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
    let p = ProcessLayout::new(&layout, 0x20_0000).unwrap();
    let mut process = Process::new(p, 1000, 1000, 64);
    assert_eq!(process.set_brk(&view, 0), 0x20_0000);
    assert_eq!(
        process.set_brk(&view, 0x1F_FFFF),
        0x20_0000,
        "below its start"
    );
    assert_eq!(process.set_brk(&view, 0x30_0001), 0x30_0001);
    assert_eq!(process.set_brk(&view, u64::MAX), 0x30_0001);
    assert_eq!(
        process.set_brk(&view, p.stack_bottom + 1),
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
    let mut process = Process::new(p, 0, 0, 64);
    let private_anon = 0x22;
    let a = process.mmap(1, private_anon).unwrap();
    assert_eq!(u64::try_from(a).unwrap(), p.guard_bottom - PAGE_SIZE);
    let b = process.mmap(0x2000, private_anon).unwrap();
    assert_eq!(b, a - 0x2000);
    // More than memory holds, lengths near u64::MAX, and zero.
    let enomem = Err(Errno::new(libc::ENOMEM).unwrap());
    assert_eq!(process.mmap(MEM, private_anon), enomem);
    assert_eq!(process.mmap(u64::MAX, private_anon), enomem);
    assert_eq!(process.mmap(u64::MAX - 4095, private_anon), enomem);
    assert_eq!(process.mmap(0, private_anon), Err(Errno::EINVAL));
    // Shared, file-backed and fixed mappings are not served yet.
    assert_eq!(process.mmap(4096, 0x21), Err(Errno::EINVAL));
    assert_eq!(
        process.mmap(4096, 0x02),
        Err(Errno::new(libc::ENODEV).unwrap())
    );
    assert_eq!(process.mmap(4096, 0x32), Err(Errno::EINVAL));
    // The break cannot grow into a mapping.
    let floor = u64::try_from(b).unwrap();
    assert_eq!(process.set_brk(&view, floor + 1), 0x20_0000);
    assert_eq!(process.set_brk(&view, floor), b);
    assert_eq!(process.mmap(4096, private_anon), enomem);
}

#[test]
fn munmap_zeroes_and_gives_the_lowest_pages_back() {
    let (mem, layout) = setup();
    let view = view(&mem, &layout);
    let p = ProcessLayout::new(&layout, 0x20_0000).unwrap();
    let mut process = Process::new(p, 0, 0, 64);
    let a = u64::try_from(process.mmap(0x3000, 0x22).unwrap()).unwrap();
    mem.write_obj(0x55u8, vm_memory::GuestAddress(a + 0x1000))
        .unwrap();
    assert_eq!(process.munmap(&view, a + 1, 4096), Err(Errno::EINVAL));
    assert_eq!(process.munmap(&view, a, 0), Err(Errno::EINVAL));
    assert_eq!(process.munmap(&view, a, u64::MAX), Err(Errno::EINVAL));
    assert_eq!(process.munmap(&view, a, 0x3000), Ok(0));
    let byte: u8 = vm_memory::Bytes::read_obj(&mem, vm_memory::GuestAddress(a + 0x1000)).unwrap();
    assert_eq!(byte, 0);
    // The same pages come back.
    assert_eq!(process.mmap(0x3000, 0x22), Ok(i64::try_from(a).unwrap()));
    // Unmapping what is not mapped (the stack, the image) changes nothing.
    mem.write_obj(0x77u8, vm_memory::GuestAddress(p.stack_bottom))
        .unwrap();
    assert_eq!(process.munmap(&view, p.stack_bottom, 4096), Ok(0));
    let byte: u8 =
        vm_memory::Bytes::read_obj(&mem, vm_memory::GuestAddress(p.stack_bottom)).unwrap();
    assert_eq!(byte, 0x77);
}
