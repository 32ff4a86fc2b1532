//! kvmini: a small, fast and secure hypervisor on the Linux KVM API.
//!
//! It runs one small x86_64 guest program in its own hardware-virtualized
//! machine and serves a narrow set of hypercalls, each one port I/O
//! instruction and so one VM exit. These are all of them, by port and by
//! the name [`kvmini_abi::Port::name`] gives them (traces and statistics
//! use it); the ABI crate has each one's argument:
//!
//! | port | hypercall | what kvmini does |
//! |---|---|---|
//! | `0x00E9` | `console` | writes one byte to the guest's stdout |
//! | `0x0400` | `printVal` | prints a 32-bit value in decimal, with a newline |
//! | `0x0401` | `getNumExits` | answers the number of exits so far, this one included |
//! | `0x0402` | `display` | prints a NUL-terminated string at a guest virtual address, in one exit |
//! | `0x0403` | `exit` | ends the run with an exit status |
//! | `0x0404` | `halt` | ends the run with status 0, the ring-3 stand-in for `hlt` |
//! | `0x0405` | `exception` | ends the run in a crash report: made by kvmini's own exception handlers only |
//! | `0x0410` | `open` | opens a file in a granted directory |
//! | `0x0411` | `close` | closes a guest descriptor |
//! | `0x0412` | `read` | reads from a descriptor (stdin included) |
//! | `0x0413` | `write` | writes to a descriptor (stdout and stderr included) |
//! | `0x0414` | `pread` | reads at an offset |
//! | `0x0415` | `pwrite` | writes at an offset |
//! | `0x0416` | `lseek` | moves a descriptor's offset |
//! | `0x0417` | `fstat` | the status of an open file |
//! | `0x0418` | `stat` | the status of a file by path |
//! | `0x0419` | `fsync` | flushes a file to its storage |
//! | `0x041A` | `ftruncate` | sets a file's length |
//! | `0x041B` | `unlink` | removes a file |
//! | `0x041C` | `mkdir` | makes a directory |
//! | `0x041D` | `rmdir` | removes an empty directory |
//! | `0x041E` | `rename` | renames a file or directory |
//! | `0x041F` | `getdents` | lists a directory |
//! | `0x0420` | `host_call` | calls a function the embedding program registered ([`host`]) |
//! | `0x0421` | `argv` | copies the guest's arguments into its memory |
//! | `0x0422` | `batch` | serves many of the calls above in one exit |
//! | `0x00E8` | `syscall` | serves a Linux program's system call, from the stub its `syscall` reaches ([`linux`]) |
//!
//! The whole life of a guest, end to end:
//!
//! ```
//! use kvmini::kvm::Kvm;
//! use kvmini::output::{Capture, Output};
//! use kvmini::sandbox::{Ending, Sandbox};
//!
//! # // Without /dev/kvm this example is skipped, unless KVMINI_REQUIRE_KVM is set.
//! # if !kvmini::kvm::available() && std::env::var_os("KVMINI_REQUIRE_KVM").is_none() {
//! #     return Ok(());
//! # }
//! // Open /dev/kvm, then build a VM around the built-in hello guest:
//! // memory, page tables, GDT/IDT/TSS, the ELF, a vCPU at its entry.
//! let kvm = Kvm::open()?;
//! let output = Capture::new();
//! let mut sandbox = Sandbox::builder()
//!     .elf(kvmini::guests::HELLO.elf)
//!     .stdout(Output::Capture(output.clone()))
//!     .warnings(Output::Writer(Box::new(std::io::sink())))
//!     .build(&kvm)?;
//!
//! // Run: KVM_RUN until the guest ends, serving each exit.
//! let outcome = sandbox.run()?;
//! assert_eq!(output.contents(), b"Hello, world!\n");
//! assert_eq!(outcome.ending, Ending::Halted);
//! assert_eq!(outcome.stats.exits, 15); // 14 bytes, then halt
//! assert_eq!(outcome.regs.rax, 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod addr;
pub mod arch;
pub mod block;
pub mod core_dump;
pub mod debug;
pub mod errno;
pub mod fs;
pub mod grant;
pub mod guests;
pub mod host;
pub mod hypercall;
pub mod kvm;
pub mod layout;
pub mod linux;
pub mod loader;
pub mod memory;
pub mod output;
pub mod sandbox;
pub mod seccomp;
pub mod stop;
pub mod trace;
pub mod vcpu;
pub mod vcpu_thread;
pub mod view;
pub mod vm;
pub mod xstate;

// The x86 modules, by the paths the public API has always had.
pub use arch::x86_64::{cpu, modes, paging};
pub use sandbox::{outcome, Sandbox, SandboxBuilder};
