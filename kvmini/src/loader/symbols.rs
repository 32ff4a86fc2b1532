//! An image's symbol table, to name an address (`main+0x1c`) in reports.
//!
//! Names come from a file anyone may have written: they are kept as the
//! bytes the file holds and displayed escaped, so that no name can forge
//! output, move the cursor or hide in a terminal.

use std::fmt;

use object::elf::Sym64;
use object::read::elf::{FileHeader as _, SectionTable, Sym as _};
use object::read::StringTable;
use object::LittleEndian;

use super::elf::{ElfFile, Header, LE};

/// A symbol's name, as bytes. [`Display`](fmt::Display) writes printable
/// ASCII other than space and backslash as it is, and every other byte as
/// `\xNN` (a backslash as `\\`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SymbolName(Vec<u8>);

impl SymbolName {
    /// The name as the file holds it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&[u8]> for SymbolName {
    fn from(bytes: &[u8]) -> Self {
        SymbolName(bytes.to_vec())
    }
}

impl fmt::Display for SymbolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            match b {
                b'\\' => f.write_str("\\\\")?,
                b'!'..=b'~' => fmt::Write::write_char(f, char::from(b))?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for SymbolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// One function or data object of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// Its name.
    pub name: SymbolName,
    /// Its address (relative to the load base in an `ET_DYN` image).
    pub address: u64,
    /// Its size in bytes; 0 when the file does not say (an assembly label).
    pub size: u64,
}

/// The defined functions, data objects and labels of an image
/// (`SHT_SYMTAB`), sorted by address, then name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Symbols(Vec<Symbol>);

impl Symbols {
    /// Every symbol, by address.
    pub fn iter(&self) -> std::slice::Iter<'_, Symbol> {
        self.0.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (a stripped image).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The symbol `address` lies in, and how far into it: among the
    /// symbols at the highest address at or below `address`, one whose size
    /// covers it, else one of size 0 (a label, taken to reach the next
    /// symbol). `None` when no symbol lies at or below `address`, or when
    /// the nearest one ends before it.
    pub fn lookup(&self, address: u64) -> Option<Location<'_>> {
        let below = &self.0[..self.0.partition_point(|s| s.address <= address)];
        let at = below.last()?.address;
        let offset = address - at;
        let same = below.iter().rev().take_while(|s| s.address == at);
        let mut label = None;
        for symbol in same {
            if symbol.size == 0 {
                label.get_or_insert(symbol);
            } else if offset < symbol.size {
                return Some(Location { symbol, offset });
            }
        }
        label.map(|symbol| Location { symbol, offset })
    }
}

impl<'a> IntoIterator for &'a Symbols {
    type Item = &'a Symbol;
    type IntoIter = std::slice::Iter<'a, Symbol>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// An address as a symbol and an offset; displays as `name+0x1c` (or
/// `name` at offset 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location<'a> {
    /// The symbol.
    pub symbol: &'a Symbol,
    /// Bytes past its start.
    pub offset: u64,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.offset == 0 {
            write!(f, "{}", self.symbol.name)
        } else {
            write!(f, "{}+{:#x}", self.symbol.name, self.offset)
        }
    }
}

impl ElfFile<'_> {
    /// The image's symbols: defined `STT_FUNC`, `STT_OBJECT` and
    /// `STT_NOTYPE` entries of `SHT_SYMTAB` with a name, outside the
    /// absolute and common sections. Symbols only explain, so an image
    /// without a readable symbol table (stripped, or broken) has none
    /// rather than failing.
    pub fn symbols(&self) -> Symbols {
        let bytes = self.bytes();
        let Ok(headers) = self.header().section_headers(LE, bytes) else {
            return Symbols::default();
        };
        let sections = SectionTable::<Header, &[u8]>::new(headers, StringTable::default());
        let Ok(table) = sections.symbols(LE, bytes, object::elf::SHT_SYMTAB) else {
            return Symbols::default();
        };
        let mut symbols: Vec<Symbol> = table
            .iter()
            .filter(|sym: &&Sym64<LittleEndian>| {
                matches!(
                    sym.st_type(),
                    object::elf::STT_FUNC | object::elf::STT_OBJECT | object::elf::STT_NOTYPE
                ) && !sym.st_shndx(LE).is_special()
            })
            .filter_map(|sym| {
                let name = table.symbol_name(LE, sym).ok().filter(|n| !n.is_empty())?;
                Some(Symbol {
                    name: SymbolName::from(name),
                    address: sym.st_value(LE),
                    size: sym.st_size(LE),
                })
            })
            .collect();
        symbols.sort_by(|a, b| (a.address, &a.name).cmp(&(b.address, &b.name)));
        Symbols(symbols)
    }
}
