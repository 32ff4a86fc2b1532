//! Helpers shared by the filesystem suites (`fs_conformance`, `fs_escape`,
//! `fs_large_io`): building their C guests, running a guest with grants,
//! and snapshots of host directory trees to compare before and after.

// Each suite includes this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kvmini::grant::GrantSpec;
use kvmini::kvm::Kvm;
use kvmini::sandbox::Sandbox;

use crate::common::c_build::{cc, cc_guest};
use crate::common::{run_config, Finished};

/// Builds the guest `kvmini/tests/guests/<name>.c` with the SDK's flags
/// plus `defines` (`-D...`) into `dir`, and returns the ELF's bytes.
pub fn build_guest(name: &str, defines: &[&str], dir: &Path) -> Vec<u8> {
    let source = format!("kvmini/tests/guests/{name}.c");
    let stem = defines.iter().fold(name.to_owned(), |s, d| s + "-" + d);
    let elf = dir.join(format!("{stem}.elf"));
    cc_guest(defines, &elf, &source);
    std::fs::read(&elf).expect("the built guest is readable")
}

/// Builds `kvmini/tests/guests/<name>.c` with `defines` as a native Linux
/// program through `native_shim.h`, into `dir`, and returns its path.
pub fn build_native(name: &str, defines: &[&str], dir: &Path) -> PathBuf {
    let source = format!("kvmini/tests/guests/{name}.c");
    let stem = defines.iter().fold(name.to_owned(), |s, d| s + "-" + d);
    let exe = dir.join(format!("{stem}-native"));
    let mut args = vec![
        "-O2",
        "-Wall",
        "-Wextra",
        "-DKVMINI_NATIVE",
        "-I",
        "kvmini/tests/guests",
    ];
    args.extend_from_slice(defines);
    cc(&args, &exe, &source);
    exe
}

/// Runs the ELF `elf` with `grants` (`--dir` syntax) and `mem` bytes of
/// guest memory, capturing its output.
pub fn run_guest(kvm: &Kvm, elf: &[u8], grants: &[String], mem: u64) -> Finished {
    let mut builder = Sandbox::builder().elf(elf).memory(mem);
    for spec in grants {
        builder = builder.grant(GrantSpec::parse(spec).expect("the grant spec parses"));
    }
    run_config(kvm, builder)
}

/// One entry of a host directory tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A regular file: permission bits and contents.
    File { perm: u32, contents: Vec<u8> },
    /// A directory: permission bits.
    Dir { perm: u32 },
    /// A symbolic link: where it points.
    Symlink { target: PathBuf },
}

/// Every entry under a directory, by path relative to it; symlinks are not
/// followed.
pub type Tree = BTreeMap<String, Node>;

/// Snapshots the tree under `root` (not `root` itself).
pub fn snapshot(root: &Path) -> Tree {
    let mut tree = Tree::new();
    walk(root, "", &mut tree);
    tree
}

fn walk(dir: &Path, prefix: &str, tree: &mut Tree) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name().into_string().expect("UTF-8 names");
        let rel = format!("{prefix}{name}");
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        let perm = meta.permissions().mode() & 0o7777;
        let node = if meta.file_type().is_symlink() {
            Node::Symlink {
                target: std::fs::read_link(&path).expect("a link target"),
            }
        } else if meta.is_dir() {
            walk(&path, &format!("{rel}/"), tree);
            Node::Dir { perm }
        } else {
            Node::File {
                perm,
                contents: std::fs::read(&path).expect("file contents"),
            }
        };
        tree.insert(rel, node);
    }
}

/// A regular file node with `perm` and `contents`.
pub fn file(perm: u32, contents: &[u8]) -> Node {
    Node::File {
        perm,
        contents: contents.to_vec(),
    }
}

/// A directory node with `perm`.
pub fn dir(perm: u32) -> Node {
    Node::Dir { perm }
}

/// A symlink node pointing at `target`.
pub fn symlink(target: impl Into<PathBuf>) -> Node {
    Node::Symlink {
        target: target.into(),
    }
}

/// Creates `path` holding `contents` with permission bits `perm` (set
/// explicitly, whatever the umask).
pub fn write_file(path: &Path, contents: &[u8], perm: u32) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(perm)).expect("chmod");
}

/// Creates the directory `path` with permission bits `perm`.
pub fn make_dir(path: &Path, perm: u32) {
    std::fs::create_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(perm)).expect("chmod");
}

/// Creates the symlink `link` pointing at `target`.
pub fn make_symlink(target: impl AsRef<Path>, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
}

/// The checksum the guests print (`fnv1a64_words` in `guests/testfmt.h`):
/// FNV-1a 64 over little-endian 64-bit words, then over the last
/// `len % 8` bytes one by one.
pub fn fnv1a64_words(data: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let words = data.chunks_exact(8);
    let tail = words.remainder();
    for word in words {
        h ^= u64::from_le_bytes(word.try_into().expect("8 bytes"));
        h = h.wrapping_mul(PRIME);
    }
    for &b in tail {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}
