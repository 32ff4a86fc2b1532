//! Hand-made ELF images for the tests: little-endian headers with the
//! fields named, so that a test spells out only what it is about.

/// `e_type` of an executable at fixed addresses.
pub const ET_EXEC: u16 = 2;
/// `e_type` of a position-independent executable or shared object.
pub const ET_DYN: u16 = 3;
/// `e_machine` values.
pub const EM_386: u16 = 3;
pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;
/// `p_type` values.
pub const PT_LOAD: u32 = 1;
pub const PT_INTERP: u32 = 3;
pub const PT_NOTE: u32 = 4;
/// `p_flags` bits.
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;
/// Sizes of the ELF64 file header and program header.
pub const EHDR64: usize = 64;
pub const PHDR64: usize = 56;

/// An ELF64 file header: `e_type`, `machine`, `entry`, and `phnum`
/// program headers right after it (no section headers).
pub fn header64(e_type: u16, machine: u16, entry: u64, phnum: u16) -> Vec<u8> {
    let mut elf = Vec::with_capacity(EHDR64);
    elf.extend_from_slice(b"\x7fELF");
    elf.extend_from_slice(&[2, 1, 1, 0]); // ELFCLASS64, little-endian, version 1, SysV
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&e_type.to_le_bytes());
    elf.extend_from_slice(&machine.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&entry.to_le_bytes());
    elf.extend_from_slice(&(EHDR64 as u64).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [64, 56, phnum, 64, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        elf.extend_from_slice(&half.to_le_bytes());
    }
    assert_eq!(elf.len(), EHDR64);
    elf
}

/// An ELF64 program header: type, flags, then `[offset, vaddr, paddr,
/// filesz, memsz, align]`.
pub fn phdr64(p_type: u32, flags: u32, words: [u64; 6]) -> Vec<u8> {
    let mut ph = Vec::with_capacity(PHDR64);
    ph.extend_from_slice(&p_type.to_le_bytes());
    ph.extend_from_slice(&flags.to_le_bytes());
    for word in words {
        ph.extend_from_slice(&word.to_le_bytes());
    }
    assert_eq!(ph.len(), PHDR64);
    ph
}

/// A `PT_LOAD` of `filesz` file bytes at `offset`, `memsz` in memory at
/// `vaddr` (physical address the same), page-aligned.
pub fn load64(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Vec<u8> {
    phdr64(
        PT_LOAD,
        flags,
        [offset, vaddr, vaddr, filesz, memsz, 0x1000],
    )
}

/// The 52-byte header of a 32-bit i386 executable with `phnum` program
/// headers right after it.
pub fn header32(phnum: u16) -> Vec<u8> {
    let mut elf = Vec::with_capacity(52);
    elf.extend_from_slice(b"\x7fELF");
    elf.extend_from_slice(&[1, 1, 1, 0]); // ELFCLASS32, little-endian, version 1, SysV
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&ET_EXEC.to_le_bytes());
    elf.extend_from_slice(&EM_386.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&0x0804_8000u32.to_le_bytes()); // e_entry
    elf.extend_from_slice(&52u32.to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [52u16, 32, phnum, 40, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        elf.extend_from_slice(&half.to_le_bytes());
    }
    assert_eq!(elf.len(), 52);
    elf
}
