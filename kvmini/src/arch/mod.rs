//! What kvmini knows about the processor its guests run on. Guests are
//! x86_64 only, so this holds one architecture.

pub mod x86_64;
