//! An ELF64 writer for the unit tests that need more than program
//! headers: notes, sections and symbol tables, each placed where a test
//! says, so that every expected value is known from how the image was
//! written rather than from the code under test.

/// One program header; its bytes are `blob` (an index into
/// [`Writer::blobs`]) or none.
pub struct Ph {
    pub p_type: u32,
    pub flags: u32,
    pub blob: Option<usize>,
    pub vaddr: u64,
    /// Memory size when larger than the blob.
    pub memsz: u64,
    pub align: u64,
}

/// One section header; section 0 (the null section) is written first
/// without being listed, so the first of these is section 1.
pub struct Sh {
    pub sh_type: u32,
    pub blob: Option<usize>,
    pub link: u32,
    pub entsize: u64,
    pub align: u64,
}

/// The image: header, program headers, blobs (each 8-aligned), then the
/// section header table.
pub struct Writer {
    pub e_type: u16,
    pub entry: u64,
    pub phdrs: Vec<Ph>,
    pub sections: Vec<Sh>,
    pub blobs: Vec<Vec<u8>>,
    /// Overrides `e_shentsize` (to write a broken section table).
    pub shentsize: u16,
}

pub const PT_LOAD: u32 = 1;
pub const PT_INTERP: u32 = 3;
pub const PT_NOTE: u32 = 4;
pub const PT_TLS: u32 = 7;
pub const PT_GNU_STACK: u32 = 0x6474_e551;
pub const SHT_SYMTAB: u32 = 2;
pub const SHT_STRTAB: u32 = 3;
pub const SHT_NOTE: u32 = 7;
pub const TEXT_AT: u64 = 0x10_0000;
/// `x: jmp x`, the code of every image written here.
pub const CODE: [u8; 2] = [0xeb, 0xfe];

fn put(v: &mut Vec<u8>, x: &[u8]) {
    v.extend_from_slice(x);
}

impl Writer {
    /// An ET_EXEC image with one read + execute segment holding [`CODE`]
    /// at [`TEXT_AT`], entered there; blob 0 is the code.
    pub fn exec() -> Self {
        Writer {
            e_type: 2,
            entry: TEXT_AT,
            phdrs: vec![Ph {
                p_type: PT_LOAD,
                flags: 5,
                blob: Some(0),
                vaddr: TEXT_AT,
                memsz: 0,
                align: 0x1000,
            }],
            sections: Vec::new(),
            blobs: vec![CODE.to_vec()],
            shentsize: 64,
        }
    }

    /// Adds a blob and returns its index.
    pub fn blob(&mut self, bytes: Vec<u8>) -> usize {
        self.blobs.push(bytes);
        self.blobs.len() - 1
    }

    /// Adds a program header of `p_type` over blob `blob`.
    pub fn segment(&mut self, p_type: u32, blob: Option<usize>, align: u64) {
        self.phdrs.push(Ph {
            p_type,
            flags: 4,
            blob,
            vaddr: 0,
            memsz: 0,
            align,
        });
    }

    /// Adds a section over blob `blob` and returns its index.
    pub fn section(
        &mut self,
        sh_type: u32,
        blob: usize,
        link: u32,
        entsize: u64,
        align: u64,
    ) -> u32 {
        self.sections.push(Sh {
            sh_type,
            blob: Some(blob),
            link,
            entsize,
            align,
        });
        u32::try_from(self.sections.len()).unwrap()
    }

    pub fn bytes(&self) -> Vec<u8> {
        let phoff = 64u64;
        let mut at = phoff + 56 * self.phdrs.len() as u64;
        let mut offsets = Vec::new();
        for b in &self.blobs {
            at = at.next_multiple_of(8);
            offsets.push(at);
            at += b.len() as u64;
        }
        let shoff = if self.sections.is_empty() {
            0
        } else {
            at.next_multiple_of(8)
        };
        let place =
            |blob: Option<usize>| blob.map_or((0, 0), |i| (offsets[i], self.blobs[i].len() as u64));

        let mut v = Vec::new();
        put(&mut v, b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        put(&mut v, &self.e_type.to_le_bytes());
        put(&mut v, &62u16.to_le_bytes());
        put(&mut v, &1u32.to_le_bytes());
        put(&mut v, &self.entry.to_le_bytes());
        put(&mut v, &phoff.to_le_bytes());
        put(&mut v, &shoff.to_le_bytes());
        put(&mut v, &0u32.to_le_bytes());
        let shnum = if self.sections.is_empty() {
            0
        } else {
            self.sections.len() + 1
        };
        for half in [
            64,
            56,
            self.phdrs.len(),
            usize::from(self.shentsize),
            shnum,
            0,
        ] {
            put(&mut v, &u16::try_from(half).unwrap().to_le_bytes());
        }
        for ph in &self.phdrs {
            let (offset, size) = place(ph.blob);
            put(&mut v, &ph.p_type.to_le_bytes());
            put(&mut v, &ph.flags.to_le_bytes());
            let memsz = ph.memsz.max(size);
            for word in [offset, ph.vaddr, ph.vaddr, size, memsz, ph.align] {
                put(&mut v, &word.to_le_bytes());
            }
        }
        for (b, &offset) in self.blobs.iter().zip(&offsets) {
            v.resize(usize::try_from(offset).unwrap(), 0);
            put(&mut v, b);
        }
        if shoff != 0 {
            v.resize(usize::try_from(shoff).unwrap(), 0);
            put(&mut v, &[0; 64]);
            for sh in &self.sections {
                let (offset, size) = place(sh.blob);
                put(&mut v, &0u32.to_le_bytes()); // sh_name
                put(&mut v, &sh.sh_type.to_le_bytes());
                put(&mut v, &0u64.to_le_bytes()); // sh_flags
                put(&mut v, &0u64.to_le_bytes()); // sh_addr
                put(&mut v, &offset.to_le_bytes());
                put(&mut v, &size.to_le_bytes());
                put(&mut v, &sh.link.to_le_bytes());
                put(&mut v, &0u32.to_le_bytes()); // sh_info
                put(&mut v, &sh.align.to_le_bytes());
                put(&mut v, &sh.entsize.to_le_bytes());
            }
        }
        v
    }
}

/// One note: name size, descriptor size, type, then name and descriptor,
/// each padded to `align`.
pub fn note(name: &[u8], n_type: u32, desc: &[u8], align: usize) -> Vec<u8> {
    let mut v = Vec::new();
    put(&mut v, &u32::try_from(name.len()).unwrap().to_le_bytes());
    put(&mut v, &u32::try_from(desc.len()).unwrap().to_le_bytes());
    put(&mut v, &n_type.to_le_bytes());
    put(&mut v, name);
    v.resize(v.len().next_multiple_of(align), 0);
    put(&mut v, desc);
    v.resize(v.len().next_multiple_of(align), 0);
    v
}

/// The kvmini ABI note naming `version`, 4-aligned as the SDKs write it.
pub fn abi_note(version: u32) -> Vec<u8> {
    note(b"kvmini\0", 1, &version.to_le_bytes(), 4)
}

/// One ELF64 symbol: name offset, type (`st_info` low bits, bound
/// global), section index, value, size.
pub fn sym(name: u32, st_type: u8, shndx: u16, value: u64, size: u64) -> Vec<u8> {
    let mut v = Vec::new();
    put(&mut v, &name.to_le_bytes());
    v.push(0x10 | st_type);
    v.push(0);
    put(&mut v, &shndx.to_le_bytes());
    put(&mut v, &value.to_le_bytes());
    put(&mut v, &size.to_le_bytes());
    v
}
