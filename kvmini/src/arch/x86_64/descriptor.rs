//! Segment descriptors (Intel SDM vol. 3A, 3.4.5 "Segment Descriptors"
//! and 7.2.3 "TSS Descriptor in 64-bit mode"): one type from which both
//! the GDT entry kvmini writes into guest memory and the `kvm_segment` it
//! gives KVM for the segment register are derived, so the two cannot
//! disagree.

use kvm_bindings::kvm_segment;

/// Code segment type: execute/read, accessed.
pub const TYPE_CODE: u8 = 0xB;
/// Data segment type: read/write, accessed.
pub const TYPE_DATA: u8 = 0x3;
/// System segment type: 64-bit TSS, available.
pub const TYPE_TSS_AVAILABLE: u8 = 0x9;
/// The type bit that marks a TSS busy (the CPU sets it when `ltr` loads
/// it; a TR given to KVM must be busy).
const TYPE_TSS_BUSY_BIT: u8 = 0x2;

/// A segment descriptor, field by field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Base address (bits 32..63 only in a 16-byte system descriptor).
    pub base: u64,
    /// The 20-bit limit field: bytes, or 4 KiB units when `g` is set.
    pub limit: u32,
    /// The 4-bit type field.
    pub type_: u8,
    /// S: code or data (true), or a system segment (false).
    pub s: bool,
    /// Descriptor privilege level, 0..3.
    pub dpl: u8,
    /// P: present.
    pub present: bool,
    /// L: a 64-bit code segment.
    pub l: bool,
    /// D/B: 32-bit default operand size (code) or stack (data).
    pub db: bool,
    /// G: the limit counts 4 KiB units.
    pub g: bool,
}

impl Descriptor {
    /// A flat 64-bit code segment at `dpl`.
    pub const fn code64(dpl: u8) -> Self {
        Descriptor {
            l: true,
            db: false,
            ..Self::flat(TYPE_CODE, dpl)
        }
    }

    /// A flat 32-bit code segment at `dpl`.
    pub const fn code32(dpl: u8) -> Self {
        Self::flat(TYPE_CODE, dpl)
    }

    /// A flat data segment (4 GiB, 32-bit stack) at `dpl`; in long mode
    /// only its DPL and presence matter.
    pub const fn data(dpl: u8) -> Self {
        Self::flat(TYPE_DATA, dpl)
    }

    const fn flat(type_: u8, dpl: u8) -> Self {
        Descriptor {
            base: 0,
            limit: 0xF_FFFF,
            type_,
            s: true,
            dpl,
            present: true,
            l: false,
            db: true,
            g: true,
        }
    }

    /// A 16-bit segment of 64 KiB at base 0, as real mode has after
    /// reset: code or data. Real mode has no GDT; this is what the
    /// segment register's hidden part holds.
    pub const fn real_mode(code: bool) -> Self {
        Descriptor {
            base: 0,
            limit: 0xFFFF,
            type_: if code { TYPE_CODE } else { TYPE_DATA },
            s: true,
            dpl: 0,
            present: true,
            l: false,
            db: false,
            g: false,
        }
    }

    /// An available 64-bit TSS of `limit` bytes at `base`.
    pub const fn tss(base: u64, limit: u32) -> Self {
        Descriptor {
            base,
            limit,
            type_: TYPE_TSS_AVAILABLE,
            s: false,
            dpl: 0,
            present: true,
            l: false,
            db: false,
            g: false,
        }
    }

    /// The same TSS marked busy, as TR holds it once loaded.
    pub const fn busy(self) -> Self {
        Descriptor {
            type_: self.type_ | TYPE_TSS_BUSY_BIT,
            ..self
        }
    }

    /// The 8-byte GDT entry (the low half of a 16-byte system descriptor).
    pub const fn gdt_entry(&self) -> u64 {
        let limit = self.limit as u64;
        let access = (self.type_ as u64 & 0xF)
            | ((self.s as u64) << 4)
            | ((self.dpl as u64 & 3) << 5)
            | ((self.present as u64) << 7);
        let flags = ((self.l as u64) << 1) | ((self.db as u64) << 2) | ((self.g as u64) << 3);
        (limit & 0xFFFF)
            | ((self.base & 0xFF_FFFF) << 16)
            | (access << 40)
            | (((limit >> 16) & 0xF) << 48)
            | (flags << 52)
            | (((self.base >> 24) & 0xFF) << 56)
    }

    /// The high 8 bytes of a 16-byte system descriptor (a 64-bit TSS):
    /// base bits 32..63.
    pub const fn gdt_entry_high(&self) -> u64 {
        self.base >> 32
    }

    /// The segment register loaded from this descriptor through
    /// `selector`, as KVM takes it: the limit in bytes.
    pub const fn segment(&self, selector: u16) -> kvm_segment {
        let limit = if self.g {
            (self.limit << 12) | 0xFFF
        } else {
            self.limit
        };
        kvm_segment {
            base: self.base,
            limit,
            selector,
            type_: self.type_,
            present: self.present as u8,
            dpl: self.dpl,
            db: self.db as u8,
            s: self.s as u8,
            l: self.l as u8,
            g: self.g as u8,
            avl: 0,
            unusable: 0,
            padding: 0,
        }
    }
}

/// The selector of GDT entry `index` with requested privilege `rpl`.
pub const fn selector(index: u16, rpl: u8) -> u16 {
    (index << 3) | (rpl as u16 & 3)
}

/// A GDT's entries as the bytes to write into guest memory.
pub fn gdt_bytes(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encodings, written out by hand from the SDM's layout: limit
    /// 15:0, base 23:0, access byte (P, DPL, S, type), limit 19:16,
    /// flags (G, D/B, L, AVL), base 31:24.
    #[test]
    fn gdt_entries_are_the_sdm_encodings() {
        assert_eq!(Descriptor::code64(0).gdt_entry(), 0x00AF_9B00_0000_FFFF);
        assert_eq!(Descriptor::code64(3).gdt_entry(), 0x00AF_FB00_0000_FFFF);
        assert_eq!(Descriptor::data(0).gdt_entry(), 0x00CF_9300_0000_FFFF);
        assert_eq!(Descriptor::data(3).gdt_entry(), 0x00CF_F300_0000_FFFF);
        assert_eq!(Descriptor::code32(0).gdt_entry(), 0x00CF_9B00_0000_FFFF);
        let tss = Descriptor::tss(0x1234_5678_9ABC_DEF0, 0x2068);
        assert_eq!(tss.gdt_entry(), 0x9A00_89BC_DEF0_2068);
        assert_eq!(tss.gdt_entry_high(), 0x1234_5678);
        // A limit above 16 bits and a base in every byte.
        let odd = Descriptor {
            base: 0xAABB_CCDD,
            limit: 0x5_4321,
            ..Descriptor::data(1)
        };
        assert_eq!(odd.gdt_entry(), 0xAAC5_B3BB_CCDD_4321);
        assert_eq!(
            gdt_bytes(&[0x0807_0605_0403_0201, 0x100F_0E0D_0C0B_0A09]),
            (1..=16).collect::<Vec<u8>>()
        );
    }

    fn seg(
        selector: u16,
        limit: u32,
        type_: u8,
        dpl: u8,
        (s, l, db, g): (u8, u8, u8, u8),
    ) -> kvm_segment {
        kvm_segment {
            base: 0,
            limit,
            selector,
            type_,
            present: 1,
            dpl,
            db,
            s,
            l,
            g,
            avl: 0,
            unusable: 0,
            padding: 0,
        }
    }

    #[test]
    fn segment_registers_are_what_kvm_expects() {
        let long = (1, 1, 0, 1);
        let flat = (1, 0, 1, 1);
        let real = (1, 0, 0, 0);
        for (descriptor, expected) in [
            (Descriptor::code64(3), seg(0x23, 0xFFFF_FFFF, 0xB, 3, long)),
            (Descriptor::code64(0), seg(0x08, 0xFFFF_FFFF, 0xB, 0, long)),
            (Descriptor::data(3), seg(0x1B, 0xFFFF_FFFF, 0x3, 3, flat)),
            (Descriptor::code32(0), seg(0x08, 0xFFFF_FFFF, 0xB, 0, flat)),
            (Descriptor::real_mode(true), seg(0, 0xFFFF, 0xB, 0, real)),
            (Descriptor::real_mode(false), seg(0, 0xFFFF, 0x3, 0, real)),
        ] {
            assert_eq!(descriptor.segment(expected.selector), expected);
        }
        let tr = Descriptor::tss(0x3F_9000, 0x2068).busy().segment(0x28);
        assert_eq!(
            tr,
            kvm_segment {
                base: 0x3F_9000,
                ..seg(0x28, 0x2068, 0xB, 0, (0, 0, 0, 0))
            }
        );
    }

    #[test]
    fn selectors_are_index_and_rpl() {
        assert_eq!(
            [
                selector(1, 0),
                selector(2, 0),
                selector(3, 3),
                selector(4, 3),
                selector(5, 0)
            ],
            [0x08, 0x10, 0x1B, 0x23, 0x28]
        );
    }
}
