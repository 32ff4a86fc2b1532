//! What `ioctl(TCGETS)` and `ioctl(TIOCGWINSZ)` answer on descriptors 0, 1
//! and 2: what the host's own descriptor answered when the sandbox was
//! built, where the program's stream is kvmini's own and a terminal;
//! `ENOTTY` everywhere else. Read once on kvmini's unconfined thread, so
//! that the vCPU thread's seccomp filter needs no `ioctl` on them.

/// `TCGETS`: the terminal's settings, as the kernel's `struct termios`.
pub const TCGETS: u64 = 0x5401;
/// `TIOCGWINSZ`: the window size, as `struct winsize`.
pub const TIOCGWINSZ: u64 = 0x5413;
/// The size of the kernel's `struct termios`.
pub const TERMIOS_SIZE: usize = 36;

/// A host terminal's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terminal {
    /// `TCGETS`.
    pub termios: [u8; TERMIOS_SIZE],
    /// `TIOCGWINSZ`, when the terminal gave one.
    pub winsize: Option<[u8; 8]>,
}

impl Terminal {
    /// What the host's descriptor `fd` (0, 1 or 2) answers, if it is a
    /// terminal.
    pub fn of_host(fd: i32) -> Option<Terminal> {
        // Room beyond the kernel's structures: the ioctl never writes more.
        let mut termios = [0u8; 64];
        let mut winsize = [0u8; 64];
        // SAFETY: TCGETS writes one kernel `struct termios` (36 bytes) into
        // the 64-byte buffer it is given, and nothing else.
        let is_tty = unsafe { libc::ioctl(fd, TCGETS as libc::Ioctl, termios.as_mut_ptr()) } == 0;
        if !is_tty {
            return None;
        }
        // SAFETY: TIOCGWINSZ writes one `struct winsize` (8 bytes) into the
        // 64-byte buffer it is given, and nothing else.
        let has_size =
            unsafe { libc::ioctl(fd, TIOCGWINSZ as libc::Ioctl, winsize.as_mut_ptr()) } == 0;
        let mut kernel_termios = [0u8; TERMIOS_SIZE];
        kernel_termios.copy_from_slice(&termios[..TERMIOS_SIZE]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&winsize[..8]);
        Some(Terminal {
            termios: kernel_termios,
            winsize: has_size.then_some(size),
        })
    }
}
