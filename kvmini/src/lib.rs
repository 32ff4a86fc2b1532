//! kvmini: a small, fast and secure hypervisor on the Linux KVM API.
//!
//! It runs one small x86_64 guest program in its own hardware-virtualized
//! machine and serves a narrow set of hypercalls, each one port I/O
//! instruction and so one VM exit: console output, `printVal`,
//! `getNumExits`, `display` (a whole string in one exit) and `exit`.
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
pub mod vcpu;
pub mod vcpu_thread;
pub mod view;
pub mod vm;
pub mod xstate;

// The x86 modules, by the paths the public API has always had.
pub use arch::x86_64::{cpu, modes, paging};
pub use sandbox::{outcome, Sandbox, SandboxBuilder};
