//! The bytes kvmini puts into guest physical memory before a guest's first
//! instruction (page tables, GDT, IDT, TSS, exception handlers), as plain
//! data: built without guest memory, written in one place.

use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use crate::memory::GuestMemory;

/// Pieces of guest physical memory and what to write there, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    pieces: Vec<(u64, Vec<u8>)>,
}

impl Tables {
    /// No tables.
    pub const fn new() -> Self {
        Tables { pieces: Vec::new() }
    }

    /// Adds `bytes` at guest physical `gpa`.
    pub fn put(&mut self, gpa: u64, bytes: Vec<u8>) {
        self.pieces.push((gpa, bytes));
    }

    /// Adds the little-endian `value` at `gpa`.
    pub fn put_u64(&mut self, gpa: u64, value: u64) {
        self.put(gpa, value.to_le_bytes().to_vec());
    }

    /// Adds every piece of `other` after these.
    pub fn extend(&mut self, other: Tables) {
        self.pieces.extend(other.pieces);
    }

    /// The pieces, `(guest physical address, bytes)`, in the order they
    /// are written (a later piece wins where two overlap).
    pub fn pieces(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.pieces
            .iter()
            .map(|(gpa, bytes)| (*gpa, bytes.as_slice()))
    }

    /// Writes every piece into `mem`.
    pub fn write_to(&self, mem: &GuestMemory) -> Result<(), GuestMemoryError> {
        for (gpa, bytes) in self.pieces() {
            mem.write_slice(bytes, GuestAddress(gpa))?;
        }
        Ok(())
    }
}
