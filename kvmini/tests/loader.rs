//! The kvmini ABI note through the public sandbox API: an image built for
//! this ABI and an image without the note run; one built for another ABI,
//! or with a malformed note, is refused with a typed error before it runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use common::elf::{
    header64, load64, phdr64, EHDR64, EM_X86_64, ET_EXEC, PF_R, PF_X, PHDR64, PT_NOTE,
};
use common::kvm_or_skip;
use kvmini::kvm::Kvm;
use kvmini::loader::LoaderError;
use kvmini::outcome::Ending;
use kvmini::output::{Capture, Output};
use kvmini::sandbox::BuildError;
use kvmini::sandbox::{Sandbox, SandboxError};
use kvmini_abi::ABI_VERSION;

const BASE: u64 = 0x10_0000;

/// printVal(7), then halt.
#[rustfmt::skip]
const CODE: [u8; 15] = [
    0x66, 0xBA, 0x00, 0x04,       // mov dx, 0x400 (printVal)
    0xB8, 0x07, 0x00, 0x00, 0x00, // mov eax, 7
    0xEF,                         // out dx, eax
    0x66, 0xBA, 0x04, 0x04,       // mov dx, 0x404 (halt)
    0xEE,                         // out dx, al
];

/// One note: name, type and descriptor, 4-aligned.
fn note(name: &[u8], n_type: u32, desc: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&u32::try_from(name.len()).unwrap().to_le_bytes());
    v.extend_from_slice(&u32::try_from(desc.len()).unwrap().to_le_bytes());
    v.extend_from_slice(&n_type.to_le_bytes());
    v.extend_from_slice(name);
    v.resize(v.len().next_multiple_of(4), 0);
    v.extend_from_slice(desc);
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

/// The kvmini note naming `version`.
fn abi_note(version: u32) -> Vec<u8> {
    note(b"kvmini\0", 1, &version.to_le_bytes())
}

/// A static ELF at 1 MiB: one read + execute segment holding the headers
/// and [`CODE`], then `notes` as a PT_NOTE segment (none if empty).
fn guest(notes: &[u8]) -> Vec<u8> {
    let phnum: u16 = if notes.is_empty() { 1 } else { 2 };
    let headers = (EHDR64 + PHDR64 * usize::from(phnum)) as u64;
    let code_end = headers + CODE.len() as u64;
    let notes_at = code_end.next_multiple_of(4);
    let mut elf = header64(ET_EXEC, EM_X86_64, BASE + headers, phnum);
    elf.extend(load64(PF_R | PF_X, 0, BASE, code_end, code_end));
    if !notes.is_empty() {
        let size = notes.len() as u64;
        elf.extend(phdr64(PT_NOTE, PF_R, [notes_at, 0, 0, size, size, 4]));
    }
    elf.extend_from_slice(&CODE);
    elf.resize(usize::try_from(notes_at).unwrap(), 0);
    elf.extend_from_slice(notes);
    elf
}

fn build(kvm: &Kvm, image: Vec<u8>, stdout: &Capture) -> Result<Sandbox, BuildError> {
    Sandbox::builder()
        .elf(image)
        .stdout(Output::Capture(stdout.clone()))
        .build(kvm)
}

/// Runs `image` and checks that it printed 7 and halted; returns the ABI
/// version its note named.
fn runs(kvm: &Kvm, image: Vec<u8>) -> Option<u32> {
    let stdout = Capture::new();
    let mut sandbox = build(kvm, image, &stdout).expect("the sandbox is built");
    let outcome = sandbox.run().expect("the run loop does not fail");
    assert_eq!(outcome.ending, Ending::Halted);
    assert_eq!(stdout.contents(), b"7\n");
    sandbox.image().abi_version
}

/// Building `image` fails in the loader: its error.
fn refused(kvm: &Kvm, image: Vec<u8>) -> LoaderError {
    match build(kvm, image, &Capture::new()) {
        Err(BuildError::Sandbox(SandboxError::Loader(e))) => e,
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("the sandbox was built"),
    }
}

#[test]
fn an_image_built_for_this_abi_runs() {
    let Some(kvm) = kvm_or_skip() else { return };
    assert_eq!(runs(&kvm, guest(&abi_note(ABI_VERSION))), Some(ABI_VERSION));
    // Among other notes.
    let notes = [note(b"GNU\0", 1, &[0; 16]), abi_note(ABI_VERSION)].concat();
    assert_eq!(runs(&kvm, guest(&notes)), Some(ABI_VERSION));
}

#[test]
fn an_image_without_the_note_runs() {
    let Some(kvm) = kvm_or_skip() else { return };
    assert_eq!(runs(&kvm, guest(&[])), None);
    assert_eq!(runs(&kvm, guest(&note(b"GNU\0", 1, &[0; 16]))), None);
}

#[test]
fn an_image_built_for_another_abi_is_refused() {
    let Some(kvm) = kvm_or_skip() else { return };
    for other in [0, ABI_VERSION + 1, 7, u32::MAX] {
        let e = refused(&kvm, guest(&abi_note(other)));
        assert!(
            matches!(e, LoaderError::AbiVersion { image, kvmini } if image == other && kvmini == ABI_VERSION),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "built for kvmini ABI {other}; this kvmini speaks ABI {ABI_VERSION}: \
                 rebuild it with this kvmini's SDK"
            )
        );
    }
}

#[test]
fn an_image_with_a_malformed_note_is_refused() {
    let Some(kvm) = kvm_or_skip() else { return };
    for desc in [&[][..], &[1, 0], &[1, 0, 0, 0, 0, 0, 0, 0]] {
        let e = refused(&kvm, guest(&note(b"kvmini\0", 1, desc)));
        assert!(
            matches!(e, LoaderError::MalformedAbiNote { size } if size as usize == desc.len()),
            "{e:?}"
        );
    }
}
