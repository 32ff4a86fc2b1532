//! Crash reports that name the code: the faulting RIP as `symbol+offset`
//! and the backtrace by frame pointers, for C SDK guests and a Linux
//! program, checked against `nm` and `objdump` of the built image (never
//! kvmini's own symbol reader); a stripped guest, a guest without frame
//! pointers and hostile frame chains.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::c_build::cc_guest;
use common::{kvm_or_skip, run_config};
use kvmini::layout::Layout;
use kvmini::memory::MEM_DEFAULT;
use kvmini::sandbox::{Backtrace, ChainEnd, Crash, Ending, Sandbox};

/// gcc keeps frame pointers in leaf functions too only when told so.
const FRAME_POINTERS: &[&str] = &["-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer"];

const DEEP: &str = "kvmini/tests/crash_report/deep.c";

/// Runs `tool args elf` and returns its standard output.
fn tool(tool: &str, args: &[&str], elf: &Path) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(elf)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): binutils are part of the toolchain"));
    assert!(out.status.success(), "{tool} failed on {}", elf.display());
    String::from_utf8(out.stdout).expect("binutils print text")
}

/// Each defined symbol's address, by name, as `nm` reads it.
fn nm(elf: &Path) -> HashMap<String, u64> {
    tool("nm", &["--defined-only"], elf)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let address = u64::from_str_radix(words.next()?, 16).ok()?;
            let _kind = words.next()?;
            Some((words.next()?.to_owned(), address))
        })
        .collect()
}

/// The address of the instruction after `caller`'s call of `callee`, as
/// `objdump -d` disassembles it: the return address the call pushes.
fn return_site(elf: &Path, caller: &str, callee: &str) -> u64 {
    let listing = tool("objdump", &["-d", "--no-show-raw-insn"], elf);
    let mut lines = listing
        .lines()
        .skip_while(|l| !l.ends_with(&format!("<{caller}>:")))
        .skip(1)
        .take_while(|l| !l.is_empty());
    lines
        .by_ref()
        .find(|l| l.contains("call") && l.ends_with(&format!("<{callee}>")))
        .unwrap_or_else(|| panic!("{caller} calls {callee}"));
    let next = lines.next().expect("an instruction follows the call");
    u64::from_str_radix(next.trim().split(':').next().unwrap(), 16).unwrap()
}

fn build(extra: &[&str], dir: &Path, name: &str) -> PathBuf {
    let elf = dir.join(name);
    cc_guest(&[FRAME_POINTERS, extra].concat(), &elf, DEEP);
    elf
}

/// Runs the guest `elf` (with `args`), which must crash, and returns the crash.
fn crash_of(elf: &Path, args: &[&str]) -> Option<Crash> {
    let kvm = kvm_or_skip()?;
    let builder = Sandbox::builder()
        .elf(std::fs::read(elf).unwrap())
        .args(args);
    let run = run_config(&kvm, builder);
    let Ending::Crashed(crash) = run.outcome.ending else {
        panic!("expected a crash, got {:?}", run.outcome.ending);
    };
    Some(crash)
}

fn backtrace(crash: &Crash) -> &Backtrace {
    crash
        .backtrace
        .as_ref()
        .expect("an ELF guest's crash has a backtrace")
}

/// `#N 0xADDR name+0xOFF` for a frame at `address` in `name` (at `start`).
fn frame(n: usize, address: u64, named: Option<(&str, u64)>) -> String {
    match named {
        Some((name, start)) if address == start => format!("#{n} {address:#x} {name}"),
        Some((name, start)) => format!("#{n} {address:#x} {name}+{:#x}", address - start),
        None => format!("#{n} {address:#x}"),
    }
}

/// The frames of the deep guest's crash as `elf`'s `nm` and `objdump` say
/// they are: (address, symbol, symbol's address), innermost first.
fn deep_frames(elf: &Path, rip: u64) -> Vec<(u64, &'static str, u64)> {
    let symbols = nm(elf);
    let at = |name: &str| symbols[name];
    vec![
        (rip, "third_level", at("third_level")),
        (
            return_site(elf, "second_level", "third_level"),
            "second_level",
            at("second_level"),
        ),
        (
            return_site(elf, "first_level", "second_level"),
            "first_level",
            at("first_level"),
        ),
        (return_site(elf, "main", "first_level"), "main", at("main")),
        (return_site(elf, "_start", "main"), "_start", at("_start")),
    ]
}

#[test]
fn a_c_guest_crash_three_calls_deep_names_the_function_and_its_callers() {
    let dir = tempfile::tempdir().unwrap();
    let elf = build(&[], dir.path(), "deep.elf");
    let Some(crash) = crash_of(&elf, &[]) else {
        return;
    };
    let frames = deep_frames(&elf, crash.rip);
    let (rip, name, start) = frames[0];
    assert_eq!(
        crash.to_string(),
        format!(
            "guest crashed: page fault writing 0x0 (not mapped) at rip {rip:#x} ({name}+{:#x}) (ring 3)",
            rip - start
        )
    );
    let want: Vec<String> = (0..)
        .zip(&frames)
        .map(|(n, &(address, name, start))| frame(n, address, Some((name, start))))
        .collect();
    assert_eq!(backtrace(&crash).to_string(), want.join("\n"));
    assert_eq!(backtrace(&crash).end, ChainEnd::Outermost);
}

#[test]
fn a_stripped_guest_shows_bare_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let named = build(&[], dir.path(), "deep.elf");
    let stripped = build(&["-s"], dir.path(), "stripped.elf");
    assert!(nm(&stripped).is_empty() || !nm(&stripped).contains_key("main"));
    let Some(crash) = crash_of(&stripped, &[]) else {
        return;
    };
    // The same code as the named build: the addresses come from it.
    let frames = deep_frames(&named, crash.rip);
    assert_eq!(
        crash.to_string(),
        format!(
            "guest crashed: page fault writing 0x0 (not mapped) at rip {:#x} (ring 3)",
            crash.rip
        )
    );
    assert_eq!(crash.location, None);
    // Without symbols kvmini cannot tell that the leaf that crashed set
    // up no frame of its own, so its caller's frame is the one RBP holds:
    // second_level is missing.
    let want: Vec<String> = (0..)
        .zip(frames.iter().take(1).chain(&frames[2..]))
        .map(|(n, &(address, _, _))| frame(n, address, None))
        .collect();
    assert_eq!(backtrace(&crash).to_string(), want.join("\n"));
}

#[test]
fn a_guest_without_frame_pointers_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let elf = dir.path().join("omit.elf");
    cc_guest(&["-fomit-frame-pointer"], &elf, DEEP);
    let Some(crash) = crash_of(&elf, &[]) else {
        return;
    };
    let symbols = nm(&elf);
    assert_eq!(
        backtrace(&crash).to_string(),
        format!(
            "{}\n{}\nno frame pointers: build with -C force-frame-pointers=yes or -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer",
            frame(0, crash.rip, Some(("third_level", symbols["third_level"]))),
            // A function without a frame has its return address on top of
            // the stack.
            frame(
                1,
                return_site(&elf, "second_level", "third_level"),
                Some(("second_level", symbols["second_level"]))
            ),
        )
    );
}

/// RBP pointing at kvmini's area, past guest memory, below the stack
/// pointer, misaligned, and at a frame that names itself as its caller:
/// each ends the backtrace where it goes wrong, with the reason.
#[test]
fn a_hostile_frame_chain_ends_the_backtrace_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let system_base = Layout::new(MEM_DEFAULT).system_base;
    let hint =
        "no frame pointers: build with -C force-frame-pointers=yes or -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer";
    for (n, rbp) in [
        system_base,
        system_base - 8,
        1 << 32,
        u64::MAX - 7,
        0x1000,
        0x3FF_0001,
    ]
    .into_iter()
    .enumerate()
    {
        let elf = build(
            &[&format!("-DBAD_RBP={rbp:#x}ULL")],
            dir.path(),
            &format!("bad{n}.elf"),
        );
        let Some(crash) = crash_of(&elf, &[]) else {
            return;
        };
        let symbols = nm(&elf);
        assert_eq!(
            backtrace(&crash).to_string(),
            format!(
                "{}\n{}\n(stopped: frame pointer {rbp:#x} is outside the stack)\n{hint}",
                frame(0, crash.rip, Some(("third_level", symbols["third_level"]))),
                frame(
                    1,
                    return_site(&elf, "second_level", "third_level"),
                    Some(("second_level", symbols["second_level"]))
                ),
            ),
            "RBP {rbp:#x}"
        );
    }
    let elf = build(&["-DBAD_RBP=LOOP"], dir.path(), "loop.elf");
    let Some(crash) = crash_of(&elf, &[]) else {
        return;
    };
    let symbols = nm(&elf);
    let trace = backtrace(&crash);
    let ChainEnd::NotIncreasing(at) = trace.end else {
        panic!("a looping chain ends as one: {trace:?}");
    };
    assert!(
        crash.rsp <= at && at < system_base,
        "the loop's frame is on the stack"
    );
    assert_eq!(
        trace.to_string(),
        format!(
            "{}\n{}\n(stopped: frame pointer {at:#x} does not move up the stack)",
            frame(0, crash.rip, Some(("third_level", symbols["third_level"]))),
            frame(1, symbols["main"] + 1, Some(("main", symbols["main"]))),
        )
    );
}

/// A `musl-gcc -static` program that crashes with SIGSEGV three calls
/// deep: its own frames, named from its symbol table.
#[test]
fn a_linux_program_crash_names_its_functions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("deep_linux");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crash_report/deep_linux.c");
    let built = Command::new("musl-gcc")
        .args([
            "-static",
            "-O1",
            "-fno-omit-frame-pointer",
            "-mno-omit-leaf-frame-pointer",
            "-Wall",
            "-Werror",
            "-o",
        ])
        .arg(&out)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run musl-gcc ({e}): install musl-tools"));
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let Some(crash) = crash_of(&out, &["deep_linux"]) else {
        return;
    };
    let symbols = nm(&out);
    let third = symbols["third_level"];
    assert_eq!(
        crash.to_string(),
        format!(
            "guest crashed: page fault writing 0x0 (not mapped) at rip {:#x} (third_level+{:#x}) (ring 3)",
            crash.rip,
            crash.rip - third
        )
    );
    let want: Vec<String> = [
        (crash.rip, "third_level"),
        (
            return_site(&out, "second_level", "third_level"),
            "second_level",
        ),
        (
            return_site(&out, "first_level", "second_level"),
            "first_level",
        ),
        (return_site(&out, "main", "first_level"), "main"),
    ]
    .into_iter()
    .enumerate()
    .map(|(n, (address, name))| frame(n, address, Some((name, symbols[name]))))
    .collect();
    let shown = backtrace(&crash).to_string();
    let lines: Vec<&str> = shown.lines().take(4).collect();
    assert_eq!(lines.join("\n"), want.join("\n"));
}

/// A symbol name with an escape sequence, a newline and bytes that are not
/// UTF-8 (the image's string table edited after the build) is printed
/// escaped, in the crash line and in the backtrace.
#[test]
fn a_hostile_symbol_name_is_printed_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let elf = build(&[], dir.path(), "deep.elf");
    let addresses = deep_frames(&elf, 0);
    let mut bytes = std::fs::read(&elf).unwrap();
    let name = b"third_level\0";
    let hostile = b"\x1b[2J\n\xff\xfe_lvl\0";
    assert_eq!(name.len(), hostile.len());
    let at: Vec<usize> = (0..bytes.len() - name.len())
        .filter(|&i| bytes[i..].starts_with(name))
        .collect();
    assert_eq!(at.len(), 1, "the name is in the string table once");
    bytes[at[0]..at[0] + name.len()].copy_from_slice(hostile);
    let edited = dir.path().join("hostile.elf");
    std::fs::write(&edited, &bytes).unwrap();
    let Some(crash) = crash_of(&edited, &[]) else {
        return;
    };
    let offset = crash.rip - addresses[0].2;
    let shown = r"\x1b[2J\x0a\xff\xfe_lvl";
    assert_eq!(
        crash.to_string(),
        format!(
            "guest crashed: page fault writing 0x0 (not mapped) at rip {:#x} ({shown}+{offset:#x}) (ring 3)",
            crash.rip
        )
    );
    let trace = backtrace(&crash).to_string();
    assert_eq!(
        trace.lines().next().unwrap(),
        format!("#0 {:#x} {shown}+{offset:#x}", crash.rip)
    );
    assert!(
        trace
            .bytes()
            .all(|b| b == b'\n' || (b' '..=b'~').contains(&b)),
        "{trace:?}"
    );
    assert_eq!(
        crash.location.as_ref().unwrap().symbol.as_bytes(),
        &hostile[..hostile.len() - 1]
    );
}

/// Builds the Rust SDK guest `kvmini/tests/crash_report/deep_rust` with
/// frame pointers, in a target directory of its own, and returns its path.
fn deep_rust_guest() -> PathBuf {
    let manifest =
        common::c_build::repo_root().join("kvmini/tests/crash_report/deep_rust/Cargo.toml");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("crash_report-guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--offline",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Crelocation-model=static\x1f-Cforce-frame-pointers=yes",
        )
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_MAKEFLAGS")
        .output()
        .expect("cargo starts");
    assert!(
        out.status.success(),
        "building deep_rust failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir.join("x86_64-unknown-linux-gnu/release/deep_rust")
}

#[test]
fn a_rust_guest_crash_three_calls_deep_names_the_function_and_its_callers() {
    let elf = deep_rust_guest();
    let Some(crash) = crash_of(&elf, &[]) else {
        return;
    };
    let symbols = nm(&elf);
    let third = symbols["third_level"];
    assert_eq!(
        crash.to_string(),
        format!(
            "guest crashed: page fault writing 0x0 (not mapped) at rip {:#x} (third_level+{:#x}) (ring 3)",
            crash.rip,
            crash.rip - third
        )
    );
    let want: Vec<String> = [
        (crash.rip, "third_level"),
        (
            return_site(&elf, "second_level", "third_level"),
            "second_level",
        ),
        (
            return_site(&elf, "first_level", "second_level"),
            "first_level",
        ),
        (return_site(&elf, "main", "first_level"), "main"),
        (return_site(&elf, "__kvmini_main", "main"), "__kvmini_main"),
    ]
    .into_iter()
    .enumerate()
    .map(|(n, (address, name))| frame(n, address, Some((name, symbols[name]))))
    .collect();
    let shown = backtrace(&crash).to_string();
    let lines: Vec<&str> = shown.lines().take(5).collect();
    assert_eq!(lines.join("\n"), want.join("\n"), "{shown}");
}
