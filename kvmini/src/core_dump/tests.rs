//! The core writer without KVM: hand-made page tables in a guest memory,
//! the file read back field by field.

use kvm_bindings::kvm_regs;
use vm_memory::{Bytes, GuestAddress};

use super::notes::{PRPSINFO_SIZE, PRSTATUS_REGS, PRSTATUS_SIZE};
use super::*;
use crate::arch::x86_64::bits::{PTE_P, PTE_PS, PTE_RW, PTE_US, PTE_XD};
use crate::layout::PAGE_SIZE;
use crate::memory::{self, MEM_MIN};
use crate::paging::{CpuPaging, PagingMode};

const TABLE: u64 = PTE_P | PTE_RW | PTE_US;
const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
const PT: u64 = 0x4000;

fn put(mem: &GuestMemory, gpa: u64, value: u64) {
    mem.write_obj(value, GuestAddress(gpa)).unwrap();
}

/// A memory of `size` bytes whose tables map the first 2 MiB of virtual
/// addresses through one page table at [`PT`], empty.
fn memory(size: u64) -> GuestMemory {
    let mem = memory::allocate(size).unwrap();
    put(&mem, PML4, PDPT | TABLE);
    put(&mem, PDPT, PD | TABLE);
    put(&mem, PD, PT | TABLE);
    mem
}

/// Maps virtual page `page` (of the first 2 MiB) to `gpa` with `flags`.
fn map(mem: &GuestMemory, page: u64, gpa: u64, flags: u64) {
    put(mem, PT + page * 8, gpa | flags);
}

fn source(mem: &GuestMemory, user_only: bool) -> CoreSource<'_> {
    let mut regs = kvm_regs::default();
    // Each register holds its own number, so that the order is visible.
    let values = [
        &mut regs.rax,
        &mut regs.rbx,
        &mut regs.rcx,
        &mut regs.rdx,
        &mut regs.rsi,
        &mut regs.rdi,
        &mut regs.rsp,
        &mut regs.rbp,
        &mut regs.r8,
        &mut regs.r9,
        &mut regs.r10,
        &mut regs.r11,
        &mut regs.r12,
        &mut regs.r13,
        &mut regs.r14,
        &mut regs.r15,
        &mut regs.rip,
        &mut regs.rflags,
    ];
    for (n, r) in (0x100u64..).zip(values) {
        *r = n;
    }
    let mut fxsave = [0u8; 512];
    fxsave[160] = 0x5A;
    CoreSource {
        memory: mem,
        paging: Paging::new(PagingMode::Long, true, CpuPaging::ALL_FEATURES),
        cr3: PML4,
        user_only,
        vector: 14,
        fault_address: 0xDEAD_0000,
        error_code: 6,
        registers: CoreRegisters {
            regs,
            fs_base: 0xF5,
            gs_base: 0x65,
            selectors: [0x23, 0x1B, 0x1B, 0x1B, 0, 0],
            fxsave,
            xsave: None,
        },
        program: b"/path/to/a-program-with-a-long-name",
        entry: 0x10_1000,
    }
}

fn write(source: &CoreSource<'_>) -> (Vec<u8>, CoreSummary) {
    let mut out = Vec::new();
    let summary = write_core(source, &mut out).unwrap();
    assert_eq!(summary.file_bytes, out.len() as u64);
    (out, summary)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A program header as (type, flags, offset, vaddr, filesz, memsz, align).
type Phdr = (u32, u32, u64, u64, u64, u64, u64);

fn phdrs(b: &[u8]) -> Vec<Phdr> {
    let count = usize::from(u16_at(b, 56));
    (0..count)
        .map(|i| {
            let at = 64 + i * 56;
            (
                u32_at(b, at),
                u32_at(b, at + 4),
                u64_at(b, at + 8),
                u64_at(b, at + 16),
                u64_at(b, at + 32),
                u64_at(b, at + 40),
                u64_at(b, at + 48),
            )
        })
        .collect()
}

/// The load segments as (vaddr, size, flags).
fn loads(b: &[u8]) -> Vec<(u64, u64, u32)> {
    phdrs(b)
        .into_iter()
        .filter(|p| p.0 == 1)
        .map(|p| (p.3, p.4, p.1))
        .collect()
}

/// The notes as (name, type, desc), checking each part's 4-byte alignment.
fn notes(b: &[u8]) -> Vec<(Vec<u8>, u32, Vec<u8>)> {
    let note = phdrs(b)[0];
    assert_eq!((note.0, note.6), (4, 4), "the note segment comes first");
    let at_usize = |n: u64| usize::try_from(n).unwrap();
    let (mut at, end) = (at_usize(note.2), at_usize(note.2 + note.4));
    let mut found = Vec::new();
    while at < end {
        assert_eq!(at % 4, 0);
        let (namesz, descsz) = (u32_at(b, at) as usize, u32_at(b, at + 4) as usize);
        let kind = u32_at(b, at + 8);
        let name = b[at + 12..at + 12 + namesz].to_vec();
        let desc_at = at + 12 + namesz.next_multiple_of(4);
        found.push((name, kind, b[desc_at..desc_at + descsz].to_vec()));
        at = desc_at + descsz.next_multiple_of(4);
    }
    assert_eq!(at, end);
    found
}

#[test]
fn the_header_and_notes_have_linux_layouts() {
    let mem = memory(MEM_MIN);
    map(&mem, 0x100, 0x10_0000, TABLE);
    let (b, _) = write(&source(&mem, true));
    assert_eq!(&b[..8], &[0x7F, b'E', b'L', b'F', 2, 1, 1, 0]);
    assert_eq!(
        (u16_at(&b, 16), u16_at(&b, 18)),
        (4, 62),
        "ET_CORE, EM_X86_64"
    );
    assert_eq!(
        (u64_at(&b, 32), u16_at(&b, 52), u16_at(&b, 54)),
        (64, 64, 56)
    );
    let notes = notes(&b);
    let kinds: Vec<(&[u8], u32, usize)> = notes
        .iter()
        .map(|(name, kind, desc)| (name.as_slice(), *kind, desc.len()))
        .collect();
    assert_eq!(
        kinds,
        [
            (&b"CORE\0"[..], 1, PRSTATUS_SIZE),
            (b"CORE\0", 3, PRPSINFO_SIZE),
            (b"CORE\0", 0x5349_4749, 128),
            (b"CORE\0", 6, 32),
            (b"CORE\0", 2, 512),
        ]
    );
    let prstatus = &notes[0].2;
    // SIGSEGV with SEGV_MAPERR (a page fault on a page not present), and
    // pr_cursig.
    assert_eq!((u32_at(prstatus, 0), u32_at(prstatus, 4)), (11, 1));
    assert_eq!(u16_at(prstatus, 12), 11);
    let regs: Vec<u64> = (0..27)
        .map(|i| u64_at(prstatus, PRSTATUS_REGS + i * 8))
        .collect();
    // user_regs_struct: r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx
    // rsi rdi orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs.
    assert_eq!(
        regs,
        [
            0x10F,
            0x10E,
            0x10D,
            0x10C,
            0x107,
            0x101,
            0x10B,
            0x10A,
            0x109,
            0x108,
            0x100,
            0x102,
            0x103,
            0x104,
            0x105,
            u64::MAX,
            0x110,
            0x23,
            0x111,
            0x106,
            0x1B,
            0xF5,
            0x65,
            0x1B,
            0x1B,
            0,
            0
        ]
    );
    assert_eq!(u32_at(prstatus, PRSTATUS_REGS + 27 * 8), 1, "pr_fpvalid");
    let psinfo = &notes[1].2;
    assert_eq!(&psinfo[40..56], b"a-program-with-\0");
    assert!(psinfo[56..].starts_with(b"/path/to/a-program-with-a-long-name\0"));
    let siginfo = &notes[2].2;
    assert_eq!(
        (u32_at(siginfo, 0), u32_at(siginfo, 8), u64_at(siginfo, 16)),
        (11, 1, 0xDEAD_0000)
    );
    assert_eq!(
        notes[3].2,
        [9, 0x10_1000, 0, 0].map(u64::to_le_bytes).concat()
    );
    assert_eq!(notes[4].2[160], 0x5A);
    // Memory starts on a page, at an offset congruent with its address.
    for (kind, _, offset, vaddr, filesz, memsz, align) in phdrs(&b).into_iter().skip(1) {
        assert_eq!((kind, align, filesz), (1, PAGE_SIZE, memsz));
        assert_eq!((offset % PAGE_SIZE, vaddr % PAGE_SIZE), (0, 0));
    }
}

#[test]
fn contiguous_pages_with_the_same_permissions_are_one_segment() {
    let mem = memory(MEM_MIN);
    // Pages 0x100..0x104 to scattered physical pages, all writable; then
    // a read-only page and a no-execute one; a gap; then one more.
    for (page, gpa) in [
        (0x100, 0x9000),
        (0x101, 0x5000),
        (0x102, 0x6000),
        (0x103, 0x20_0000 - 0x1000),
    ] {
        map(&mem, page, gpa, TABLE);
        mem.write_obj(page, GuestAddress(gpa)).unwrap();
    }
    map(&mem, 0x104, 0x7000, PTE_P | PTE_US);
    map(&mem, 0x105, 0x8000, TABLE | PTE_XD);
    map(&mem, 0x107, 0xA000, TABLE);
    let (b, summary) = write(&source(&mem, true));
    assert_eq!(
        loads(&b),
        [
            (0x10_0000, 4 * PAGE_SIZE, 7),
            (0x10_4000, PAGE_SIZE, 5),
            (0x10_5000, PAGE_SIZE, 6),
            (0x10_7000, PAGE_SIZE, 7),
        ]
    );
    assert_eq!(summary.memory_bytes, 7 * PAGE_SIZE);
    // The file holds each page where its segment says.
    let first = usize::try_from(phdrs(&b)[1].2).unwrap();
    for (i, page) in (0x100u64..0x104).enumerate() {
        assert_eq!(u64_at(&b, first + i * 0x1000), page);
    }
}

#[test]
fn a_page_mapped_many_times_is_written_once_within_the_budget() {
    // One page table mapping one page at all its entries, reached through
    // every entry of every level above: 2^36 virtual pages of one
    // physical page.
    let mem = memory::allocate(MEM_MIN).unwrap();
    for i in 0..512 {
        put(&mem, PML4 + i * 8, PDPT | TABLE);
        put(&mem, PDPT + i * 8, PD | TABLE);
        put(&mem, PD + i * 8, PT | TABLE);
        put(&mem, PT + i * 8, 0x9000 | TABLE);
    }
    let (b, summary) = write(&source(&mem, false));
    let pages = MEM_MIN / PAGE_SIZE;
    assert_eq!(summary.memory_bytes, PAGE_SIZE);
    assert_eq!(summary.aliased_pages, pages);
    // The walk looks at three memories' worth of pages, then stops.
    assert_eq!(summary.left_out.aliased_pages, 3 * pages - pages - 1);
    assert_eq!(summary.left_out.stopped_at, Some(3 * pages * PAGE_SIZE));
    assert_eq!(summary.segments as u64, pages + 1);
    // Every segment points at the one page written.
    let offsets: std::collections::BTreeSet<u64> = phdrs(&b).iter().skip(1).map(|p| p.2).collect();
    assert_eq!(offsets.len(), 1);
    assert_eq!(b.len() as u64, phdrs(&b)[1].2 + PAGE_SIZE);
    assert!(summary
        .left_out
        .to_string()
        .contains("aliased pages past the budget"));
}

#[test]
fn tables_that_loop_or_hold_garbage_cost_a_bounded_walk() {
    // Every entry of the top table points back at it: at every level the
    // walk finds the same table again.
    let looping = memory::allocate(MEM_MIN).unwrap();
    for i in 0..512 {
        put(&looping, PML4 + i * 8, PML4 | TABLE);
    }
    let (b, summary) = write(&source(&looping, false));
    let pages = MEM_MIN / PAGE_SIZE;
    assert_eq!(summary.memory_bytes, PAGE_SIZE, "the table page, once");
    assert_eq!(summary.left_out.stopped_at, Some(3 * pages * PAGE_SIZE));
    assert!(b.len() as u64 <= MEM_MIN + (pages + 2) * 56 + 2 * PAGE_SIZE);
    // Every entry of each level points at the one table below, and the
    // last is empty: 2^27 empty tables, of which the walk reads its
    // budget.
    let fanning = memory::allocate(MEM_MIN).unwrap();
    for i in 0..512 {
        put(&fanning, PML4 + i * 8, PDPT | TABLE);
        put(&fanning, PDPT + i * 8, PD | TABLE);
        put(&fanning, PD + i * 8, PT | TABLE);
    }
    let (b, summary) = write(&source(&fanning, false));
    assert_eq!((summary.segments, summary.memory_bytes), (0, 0));
    // The budget for 512 pages is 520 tables: the top three, the 512
    // tables under the first directory, the second directory and four
    // tables under it. Left out: its other 508 tables, the other 510
    // directories of the first PDPT and the other 511 PDPTs.
    assert_eq!(summary.left_out.tables, 508 + 510 + 511);
    assert!(summary
        .left_out
        .to_string()
        .contains("page tables past the walk's budget"));
    assert_eq!(phdrs(&b).len(), 1);
    // Random words in every table, and CR3 past the end of memory.
    let garbage = memory::allocate(MEM_MIN).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for gpa in (0..MEM_MIN).step_by(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Table addresses mostly inside memory, with random low bits.
        put(&garbage, gpa, x & (0x8000_0000_001F_FFFF | 0xFFF));
    }
    for cr3 in [0, 0x1000, MEM_MIN, u64::MAX] {
        let mut s = source(&garbage, false);
        s.cr3 = cr3;
        let (b, summary) = write(&s);
        assert!(summary.memory_bytes <= MEM_MIN, "cr3 {cr3:#x}");
        assert!(b.len() as u64 <= MEM_MIN + (3 * pages + 1) * 56 + 2 * PAGE_SIZE);
    }
}

#[test]
fn a_ring_3_core_leaves_out_supervisor_pages() {
    let mem = memory(MEM_MIN);
    map(&mem, 0x100, 0x10_0000, TABLE);
    map(&mem, 0x1F0, 0x1F_0000, PTE_P | PTE_RW);
    let (b, summary) = write(&source(&mem, true));
    assert_eq!(loads(&b), [(0x10_0000, PAGE_SIZE, 7)]);
    assert_eq!(summary.left_out.supervisor_pages, 1);
    assert!(summary.left_out.is_empty());
    let (b, _) = write(&source(&mem, false));
    assert_eq!(
        loads(&b),
        [(0x10_0000, PAGE_SIZE, 7), (0x1F_0000, PAGE_SIZE, 7)]
    );
}

#[test]
fn large_pages_and_high_addresses_are_walked() {
    let mem = memory::allocate(4 * MEM_MIN).unwrap();
    // PML4 entry 511 (the top of the address space) to a PDPT whose last
    // entry is a directory with one 2 MiB page, and a 1 GiB page at entry
    // 0 of the low PDPT, clipped to guest memory.
    put(&mem, PML4, PDPT | TABLE);
    put(&mem, PDPT, TABLE | PTE_PS);
    put(&mem, PML4 + 511 * 8, 0x5000 | TABLE);
    put(&mem, 0x5000 + 511 * 8, PD | TABLE);
    put(&mem, PD + 8, 0x20_0000 | PTE_P | PTE_PS);
    let (b, summary) = write(&source(&mem, false));
    assert_eq!(
        loads(&b),
        [(0, 4 * MEM_MIN, 7), (0xFFFF_FFFF_C020_0000, MEM_MIN, 5),]
    );
    assert_eq!(summary.memory_bytes, 4 * MEM_MIN);
    assert_eq!(summary.aliased_pages, MEM_MIN / PAGE_SIZE);
}

#[test]
fn each_exception_maps_to_the_signal_linux_sends() {
    let signals: Vec<(u8, i32)> = [0, 1, 3, 6, 7, 11, 12, 13, 14, 16, 17, 19]
        .into_iter()
        .map(|v| (v, signal_of_vector(v)))
        .collect();
    use libc::{SIGBUS, SIGFPE, SIGILL, SIGSEGV, SIGTRAP};
    assert_eq!(
        signals,
        [
            (0, SIGFPE),
            (1, SIGTRAP),
            (3, SIGTRAP),
            (6, SIGILL),
            (7, SIGFPE),
            (11, SIGBUS),
            (12, SIGBUS),
            (13, SIGSEGV),
            (14, SIGSEGV),
            (16, SIGFPE),
            (17, SIGBUS),
            (19, SIGFPE),
        ]
    );
}

/// A writer that fails: the error is the core's, not a panic.
#[test]
fn a_failing_writer_is_an_error() {
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mem = memory(MEM_MIN);
    let err = write_core(&source(&mem, true), &mut Full).unwrap_err();
    assert!(matches!(err, CoreError::Write(ref e) if e.raw_os_error() == Some(libc::ENOSPC)));
}

/// The AVX state goes into `NT_X86_XSTATE` where XCR0 enables AVX or the
/// area's XSTATE_BV shows it used (nested kvm-pvm, where KVM's XCR0 lists
/// x87 only), cut to the x87, SSE and AVX components, with the XCR0 that
/// says so; otherwise there is no such note.
#[test]
fn the_avx_state_is_a_note_of_its_own_where_the_guest_has_it() {
    let mem = memory(MEM_MIN);
    let mut area = Box::new([0u8; 4096]);
    area[512..520].copy_from_slice(&0x206u64.to_le_bytes());
    area[520..528].copy_from_slice(&(1u64 << 63).to_le_bytes());
    area[576] = 0xA5;
    area[2432] = 0x77;
    for (xcr0, bv, note) in [
        (1, 0x206, Some(6)),
        (0x207, 0x2, Some(2)),
        (0x3, 0x3, None),
        (1, 0x201, None),
    ] {
        let mut s = source(&mem, true);
        let mut area = area.clone();
        area[512..520].copy_from_slice(&u64::to_le_bytes(bv));
        s.registers.xsave = Some((area, xcr0));
        let (b, _) = write(&s);
        let notes = notes(&b);
        let xstate: Vec<&(Vec<u8>, u32, Vec<u8>)> = notes.iter().filter(|n| n.1 == 0x202).collect();
        let Some(want_bv) = note else {
            assert!(xstate.is_empty(), "xcr0 {xcr0:#x}, bv {bv:#x}");
            assert_eq!(notes.len(), 5);
            continue;
        };
        let [(name, _, desc)] = xstate[..] else {
            panic!("one NT_X86_XSTATE for xcr0 {xcr0:#x}, bv {bv:#x}");
        };
        assert_eq!(name.as_slice(), b"LINUX\0");
        assert_eq!(desc.len(), 832);
        assert_eq!(
            (u64_at(desc, 464), u64_at(desc, 512), u64_at(desc, 520)),
            (7, want_bv, 0)
        );
        assert_eq!(desc[576], 0xA5);
    }
}

mod random_tables {
    //! Random tables: whatever they say, the core holds each page the
    //! guest's own walk gives for its address, with its permissions, and
    //! never more than guest memory.

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::addr::Gva;
    use crate::paging::{translate, Access};

    /// Tables live in the first few pages, so that random entries often
    /// chain into a walk.
    const TABLE_PAGES: u64 = 8;

    /// An entry: one of the table pages, or any page of memory (or just
    /// past it), present, with random flags, execute-disable and PS
    /// bits; or any 64-bit value.
    fn entry() -> impl Strategy<Value = u64> {
        let pages = MEM_MIN / PAGE_SIZE;
        let flags = (0u64..0x200, any::<bool>())
            .prop_map(|(flags, xd)| flags | PTE_P | if xd { PTE_XD } else { 0 });
        prop_oneof![
            3 => (0..TABLE_PAGES, flags.clone()).prop_map(|(page, f)| (page * PAGE_SIZE) | f),
            3 => (0..pages + 4, flags).prop_map(|(page, f)| (page * PAGE_SIZE) | f),
            1 => any::<u64>(),
        ]
    }

    /// An edit of a table page: one entry, or every entry, with
    /// addresses that grow by `stride` pages.
    fn edit() -> impl Strategy<Value = (u64, u64, Option<u64>)> {
        (
            0..TABLE_PAGES * 512,
            entry(),
            prop::option::weighted(0.2, 0u64..3),
        )
    }

    fn apply(mem: &GuestMemory, (slot, value, stride): (u64, u64, Option<u64>)) {
        match stride {
            None => put(mem, slot * 8, value),
            Some(stride) => {
                let table = slot / 512 * PAGE_SIZE;
                for i in 0..512 {
                    put(
                        mem,
                        table + i * 8,
                        value.wrapping_add(i * stride * PAGE_SIZE),
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn the_core_holds_what_the_guest_walk_gives_within_memory(
            edits in vec(edit(), 0..12),
            chain in any::<bool>(),
            cr3 in prop_oneof![3 => Just(0), 1 => 0..TABLE_PAGES],
            user_only in any::<bool>(),
            nxe in any::<bool>(),
        ) {
            let mem = memory::allocate(MEM_MIN).unwrap();
            if chain {
                // Page 0 a PML4, 1 a PDPT, 2 a directory, 3 a table that
                // maps 512 pages from page 16 on.
                for level in 0..3 {
                    put(&mem, level * PAGE_SIZE, ((level + 1) * PAGE_SIZE) | TABLE);
                }
                for i in 0..512 {
                    put(&mem, 3 * PAGE_SIZE + i * 8, ((16 + i) * PAGE_SIZE) | TABLE);
                }
            }
            for e in edits {
                apply(&mem, e);
            }
            let mut s = source(&mem, user_only);
            s.cr3 = cr3 * PAGE_SIZE;
            s.paging = Paging::new(PagingMode::Long, nxe, CpuPaging::ALL_FEATURES);
            let (b, summary) = write(&s);
            prop_assert!(summary.memory_bytes <= MEM_MIN);
            let note = phdrs(&b)[0];
            let data = (note.2 + note.4).next_multiple_of(PAGE_SIZE);
            prop_assert_eq!(b.len() as u64, data + summary.memory_bytes);
            let mut described = 0;
            for (_, flags, offset, vaddr, filesz, _, _) in phdrs(&b).into_iter().skip(1) {
                prop_assert!(offset >= data && offset % PAGE_SIZE == 0);
                prop_assert!(offset + filesz <= b.len() as u64);
                described += filesz;
                for page in (0..filesz).step_by(0x1000) {
                    let va = vaddr + page;
                    let access = Access { user: user_only, write: false };
                    let t = translate(&mem, s.paging, s.cr3, Gva::new(va), access);
                    let t = t.map_err(|e| TestCaseError::fail(format!("{va:#x}: {e}")))?;
                    prop_assert_eq!(flags & 2 != 0, t.writable, "W of {:#x}", va);
                    let mut want = vec![0u8; 0x1000];
                    mem.read_slice(&mut want, GuestAddress(t.gpa.raw())).unwrap();
                    let at = usize::try_from(offset + page).unwrap();
                    prop_assert!(b[at..at + 0x1000] == want[..], "bytes of {:#x}", va);
                }
            }
            prop_assert!(described <= 2 * MEM_MIN);
            prop_assert_eq!(described, summary.memory_bytes + summary.aliased_pages * PAGE_SIZE);
        }
    }
}
