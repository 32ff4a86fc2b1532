//! Where a crash happened in the guest's code: the faulting RIP named
//! from the image's symbol table, and the callers found by following the
//! guest's frame pointers (RBP chains) through its own page tables.
//!
//! Everything read here is the guest's: the symbol names come from its file
//! (kept as bytes, displayed escaped), and the frame chain from its memory,
//! read through the checked [`GuestView`] only. The walk stops at the first
//! frame pointer outside the guest's stack, at one that does not grow, at a
//! read the guest itself could not make, or after [`MAX_FRAMES`] frames.

use std::fmt;
use std::ops::Range;

use super::Image;
use crate::addr::Gva;
use crate::loader::{ElfFile, ElfKind, LoadedImage, SymbolName, Symbols, LINUX_PIE_BASE, PF_X};
use crate::view::GuestView;

/// The most frames a backtrace shows (the faulting one included): deep
/// enough for any real crash, and a bound on what a hostile chain costs.
pub const MAX_FRAMES: usize = 64;

/// An address in the guest's code as a symbol and the bytes past its start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeLocation {
    /// The symbol's name, as the image holds it; it displays escaped.
    pub symbol: SymbolName,
    /// Bytes past the symbol's start.
    pub offset: u64,
}

impl fmt::Display for CodeLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.offset == 0 {
            write!(f, "{}", self.symbol)
        } else {
            write!(f, "{}+{:#x}", self.symbol, self.offset)
        }
    }
}

/// One frame of a backtrace: the faulting instruction (frame 0) or a
/// return address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The instruction address.
    pub address: u64,
    /// Its symbol, when one covers it.
    pub location: Option<CodeLocation>,
}

/// Why a frame-pointer walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainEnd {
    /// A frame pointer or return address of 0: the outermost frame.
    Outermost,
    /// [`MAX_FRAMES`] frames were found.
    DepthLimit,
    /// A frame pointer outside the guest's stack (below the stack pointer
    /// at the fault, or not below the top of the stack), or misaligned.
    OutsideStack(u64),
    /// A frame pointer not above the one before it (a loop).
    NotIncreasing(u64),
    /// A frame the guest itself could not read.
    Unreadable(u64),
    /// A return address outside the image's executable segments.
    NotCode(u64),
}

/// The faulting instruction and its callers, innermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backtrace {
    /// Frame 0 is the faulting instruction, then each return address.
    pub frames: Vec<Frame>,
    /// Why the walk stopped.
    pub end: ChainEnd,
    /// How many frames were found by following frame pointers (the rest
    /// are the faulting instruction and, for a function that had not set
    /// up its frame, the return address on top of its stack).
    pub chained: usize,
}

impl Backtrace {
    /// Whether the guest had no usable frame chain: code built with frame
    /// pointers always has its caller's frame, up to the entry point's.
    pub fn has_no_frame_pointers(&self) -> bool {
        self.chained == 0
    }
}

impl fmt::Display for Backtrace {
    /// One line per frame (`#1 0x100123 main+0x13`), then a line on why
    /// the walk stopped early, if it did.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, frame) in self.frames.iter().enumerate() {
            if n > 0 {
                f.write_str("\n")?;
            }
            write!(f, "#{n} {:#x}", frame.address)?;
            if let Some(location) = &frame.location {
                write!(f, " {location}")?;
            }
        }
        match self.end {
            ChainEnd::Outermost => {}
            ChainEnd::DepthLimit => write!(f, "\n(stopped after {MAX_FRAMES} frames)")?,
            ChainEnd::OutsideStack(rbp) => write!(
                f,
                "\n(stopped: frame pointer {rbp:#x} is outside the stack)"
            )?,
            ChainEnd::NotIncreasing(rbp) => write!(
                f,
                "\n(stopped: frame pointer {rbp:#x} does not move up the stack)"
            )?,
            ChainEnd::Unreadable(rbp) => {
                write!(f, "\n(stopped: the frame at {rbp:#x} cannot be read)")?;
            }
            ChainEnd::NotCode(ret) => write!(
                f,
                "\n(stopped: return address {ret:#x} is outside the guest's code)"
            )?,
        }
        if self.has_no_frame_pointers() {
            f.write_str(
                "\nno frame pointers: build with -C force-frame-pointers=yes \
                 or -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer",
            )?;
        }
        Ok(())
    }
}

/// What names the guest's code: its symbols, where the image was loaded,
/// and its executable ranges.
#[derive(Clone, Debug, Default)]
pub(crate) struct CodeMap {
    symbols: Symbols,
    /// What the loader added to the file's addresses (a static PIE's base).
    base: u64,
    /// The executable segments as loaded.
    code: Vec<Range<u64>>,
    /// The exclusive top of the guest's stack: no frame lies above it.
    stack_top: u64,
}

impl CodeMap {
    /// The code map of `image`, loaded as `loaded`, whose stack ends at
    /// `stack_top`; `None` for a flat binary, which has no symbols.
    pub(crate) fn of_image(image: &Image, loaded: &LoadedImage, stack_top: u64) -> Option<Self> {
        let Image::Elf(bytes) = image else {
            return None;
        };
        let Ok(elf) = ElfFile::parse(bytes) else {
            return Some(CodeMap {
                stack_top,
                ..CodeMap::default()
            });
        };
        let base = match elf.kind() {
            ElfKind::PositionIndependent => LINUX_PIE_BASE,
            ElfKind::Executable => 0,
        };
        let code = loaded
            .segments
            .iter()
            .filter(|s| s.flags & PF_X != 0)
            .map(|s| s.vaddr..s.end())
            .collect();
        Some(CodeMap {
            symbols: elf.symbols(),
            base,
            code,
            stack_top,
        })
    }

    /// The symbol that covers `address`, if any.
    pub(crate) fn locate(&self, address: u64) -> Option<CodeLocation> {
        let at = self.symbols.lookup(address.checked_sub(self.base)?)?;
        Some(CodeLocation {
            symbol: at.symbol.name.clone(),
            offset: at.offset,
        })
    }

    /// A return address's frame: named after the call it follows (the byte
    /// before it), so that a call that ends its function still names it.
    fn return_frame(&self, address: u64) -> Frame {
        let location = address
            .checked_sub(1)
            .and_then(|call| self.locate(call))
            .map(|at| CodeLocation {
                offset: at.offset + 1,
                ..at
            });
        Frame { address, location }
    }

    fn is_code(&self, address: u64) -> bool {
        self.code.iter().any(|r| r.contains(&address))
    }

    /// Walks the frame chain from `rbp`, for a crash at `rip` with stack
    /// pointer `rsp`. Every frame is read through `view` (the guest's own
    /// page tables and privilege), after its address has been checked.
    pub(crate) fn backtrace(
        &self,
        view: &GuestView<'_>,
        (rip, rsp, rbp): (u64, u64, u64),
    ) -> Backtrace {
        let stack_top = self.stack_top;
        let mut frames = vec![Frame {
            address: rip,
            location: self.locate(rip),
        }];
        if let Some(slot) = self.unsaved_frame(view, rip, rsp) {
            if let Ok(ret) = view.read_obj::<u64>(Gva::new(slot)) {
                if self.is_code(ret) {
                    frames.push(self.return_frame(ret));
                }
            }
        }
        let first = frames.len();
        let mut low = rsp;
        let mut rbp = rbp;
        let end = loop {
            if rbp == 0 {
                break ChainEnd::Outermost;
            }
            if frames.len() >= MAX_FRAMES {
                break ChainEnd::DepthLimit;
            }
            // The frame (saved RBP, return address) must lie wholly in the
            // stack, above the last one: checked before any read.
            let fits = rbp % 8 == 0 && rbp.checked_add(16).is_some_and(|end| end <= stack_top);
            if !fits || rbp < rsp {
                break ChainEnd::OutsideStack(rbp);
            }
            if rbp < low {
                break ChainEnd::NotIncreasing(rbp);
            }
            let Ok([saved, ret]) = view.read_obj::<[u64; 2]>(Gva::new(rbp)) else {
                break ChainEnd::Unreadable(rbp);
            };
            if ret == 0 {
                break ChainEnd::Outermost;
            }
            if !self.is_code(ret) {
                break ChainEnd::NotCode(ret);
            }
            frames.push(self.return_frame(ret));
            if saved != 0 && saved <= rbp {
                break ChainEnd::NotIncreasing(saved);
            }
            low = rbp + 16;
            rbp = saved;
        };
        let chained = frames.len() - first;
        Backtrace {
            frames,
            end,
            chained,
        }
    }

    /// Where the return address of the function that crashed at `rip`
    /// lies, when that function had not saved RBP and pointed it at its
    /// frame: on top of the stack before `push %rbp` (or in a function
    /// that never does: a leaf compiled without a frame), just above it
    /// after. `None` when its prologue was done, or it is not known to be a
    /// function (no symbol, or a label).
    fn unsaved_frame(&self, view: &GuestView<'_>, rip: u64, rsp: u64) -> Option<u64> {
        const ENDBR64: [u8; 4] = [0xF3, 0x0F, 0x1E, 0xFA];
        // push %rbp; mov %rsp,%rbp
        const PROLOGUE: [u8; 4] = [0x55, 0x48, 0x89, 0xE5];
        // Only a function (a sized symbol) starts with its prologue; a
        // label may sit anywhere in one.
        let at = self.symbols.lookup(rip.checked_sub(self.base)?)?;
        if at.symbol.size == 0 {
            return None;
        }
        let start = rip.checked_sub(at.offset)?;
        let code: [u8; 8] = view.read_obj(Gva::new(start)).ok()?;
        let skip = if code[..4] == ENDBR64 { 4 } else { 0 };
        if code[skip..skip + 4] != PROLOGUE || at.offset <= skip as u64 {
            return Some(rsp);
        }
        (at.offset == skip as u64 + 1).then(|| rsp.wrapping_add(8))
    }
}
