//! Promises of README.md and docs/security.md that no other test checks:
//! exit statuses through the binary, the descriptor limit, open flags,
//! close-on-exec host descriptors, the getdents bound, prefaulted memory,
//! and the library's writer output, inherited stdin and timing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use common::{built_guest, kvm_or_skip, kvmini, text};
use kvmini::output::Output;
use kvmini::sandbox::{Ending, Sandbox};
use kvmini_abi::Port;

/// `mov dx, port; mov eax, value; out dx, eax`.
fn out32(port: Port, value: u32) -> Vec<u8> {
    let mut code = vec![0x66, 0xBA];
    code.extend_from_slice(&(port as u16).to_le_bytes());
    code.push(0xB8);
    code.extend_from_slice(&value.to_le_bytes());
    code.push(0xEF);
    code
}

fn promises() -> String {
    built_guest("kvmini/tests/guests/promises.c", &[])
        .to_str()
        .expect("UTF-8 temp path")
        .to_owned()
}

/// What printVal prints for a negative 32-bit value: its bits, unsigned.
fn as_printed(v: i32) -> u32 {
    u32::from_ne_bytes(v.to_ne_bytes())
}

/// Runs the binary and returns (status, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = kvmini().args(args).output().expect("kvmini runs");
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_exit_status_is_the_guests_code_modulo_256() {
    if kvm_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    for (code, status) in [
        (0, 0),
        (3, 3),
        (255, 255),
        (256, 0),
        (300, 44),
        (u32::MAX, 255),
    ] {
        let image = dir.path().join(format!("exit-{code}.bin"));
        std::fs::write(&image, out32(Port::Exit, code)).expect("write the image");
        let (got, stdout, stderr) = run(&["run", "--flat", image.to_str().unwrap()]);
        assert_eq!(
            (got, stdout.as_str(), stderr.as_str()),
            (Some(status), "", ""),
            "exit({code})"
        );
    }
}

#[test]
fn descriptors_are_limited_by_max_fds_0_to_2_included() {
    if kvm_or_skip().is_none() {
        return;
    }
    let (elf, dir) = (promises(), tempfile::tempdir().expect("temp dir"));
    let grant = format!("{}:/", dir.path().display());
    // opened, the error (-EMFILE), close(5), the lowest free again.
    for (limit, opened) in [(None, 61), (Some("3"), 0), (Some("10"), 7)] {
        let mut args = vec!["run", "--dir", &grant];
        if let Some(limit) = limit {
            args.extend(["--max-fds", limit]);
        }
        args.extend([elf.as_str(), "--", "fds"]);
        let (status, stdout, stderr) = run(&args);
        let (close, again) = if opened >= 3 { (0, 5) } else { (-9i32, -24i32) };
        let want = format!(
            "{opened}\n{}\n{}\n{}\n",
            as_printed(-24),
            as_printed(close),
            as_printed(again)
        );
        assert_eq!(
            (status, stdout, stderr),
            (Some(0), want, String::new()),
            "{limit:?}"
        );
    }
}

#[test]
fn open_takes_cloexec_and_refuses_flags_it_does_not_support() {
    if kvm_or_skip().is_none() {
        return;
    }
    let (elf, dir) = (promises(), tempfile::tempdir().expect("temp dir"));
    let grant = format!("{}:/", dir.path().display());
    let (status, stdout, _) = run(&["run", "--dir", &grant, &elf, "--", "flags"]);
    let einval = as_printed(-22);
    assert_eq!(status, Some(0));
    assert_eq!(stdout, format!("3\n{einval}\n{einval}\n{einval}\n"));
}

#[test]
fn one_getdents_returns_at_most_1_mib() {
    if kvm_or_skip().is_none() {
        return;
    }
    let (elf, dir) = (promises(), tempfile::tempdir().expect("temp dir"));
    let many = dir.path().join("many");
    std::fs::create_dir(&many).expect("mkdir");
    // 6000 records of 224 bytes (19-byte header, 200-byte name, padding):
    // 1.3 MiB in all.
    for i in 0..6000 {
        std::fs::write(many.join(format!("{i:0>200}")), b"").expect("create");
    }
    let grant = format!("{}:/", dir.path().display());
    let (status, stdout, stderr) = run(&[
        "run", "--mem", "32M", "--dir", &grant, &elf, "--", "getdents",
    ]);
    assert_eq!((status, stderr.as_str()), (Some(0), ""));
    let lines: Vec<u32> = stdout.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(lines[0], 3);
    // Whole records only, as many as fit in 1 MiB: "." and ".." (24 bytes
    // each), then 224-byte records.
    assert_eq!(lines[1], 48 + (((1 << 20) - 48) / 224) * 224, "{stdout}");
}

/// The host descriptors open on something under `dir`.
fn host_fds_under(dir: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            target
                .starts_with(dir)
                .then(|| entry.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

#[test]
fn host_descriptors_are_close_on_exec() {
    let Some(kvm) = kvm_or_skip() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().canonicalize().expect("real path");
    let elf = std::fs::read(built_guest("kvmini/tests/guests/keep_open.c", &[])).unwrap();
    let mut sandbox = Sandbox::builder()
        .elf(elf)
        .dir(&root, "/", false)
        .stdout(Output::Null)
        .build(&kvm)
        .expect("build");
    assert_eq!(sandbox.run().expect("run").ending, Ending::Exited(0));
    let fds = host_fds_under(&root);
    // The grant's directory and the guest's four files.
    assert_eq!(fds.len(), 5, "{fds:?}");
    for fd in fds {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC, "fd {fd}");
    }
}

#[test]
fn a_writer_gets_the_output_and_timing_is_measured_only_when_asked() {
    let Some(kvm) = kvm_or_skip() else { return };
    #[derive(Clone)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    for timing in [false, true] {
        let out = Shared(Arc::new(Mutex::new(Vec::new())));
        let mut sandbox = Sandbox::builder()
            .elf(kvmini::guests::HELLO.elf)
            .stdout(Output::Writer(Box::new(out.clone())))
            .timing(timing)
            .build(&kvm)
            .expect("build");
        let outcome = sandbox.run().expect("run");
        assert_eq!(*out.0.lock().unwrap(), b"Hello, world!\n");
        let stats = outcome.stats;
        assert_eq!(
            (stats.guest_time.is_zero(), stats.vmm_time.is_zero()),
            (!timing, !timing),
            "timing {timing}"
        );
    }
}

#[test]
fn an_inherited_stdin_is_the_processs_own() {
    if kvm_or_skip().is_none() {
        return;
    }
    // The binary builds its sandbox with the default stdin,
    // Input::Inherit: the guest reads kvmini's own stdin.
    let dir = tempfile::tempdir().expect("temp dir");
    let image = dir.path().join("read-one.bin");
    std::fs::write(&image, common::READ_ONE).expect("write the image");
    let mut child = kvmini()
        .args(["run", "--flat", "--ring", "3", "--mem", "4M"])
        .arg(&image)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("kvmini starts");
    child.stdin.take().unwrap().write_all(b"k").unwrap();
    let out = child.wait_with_output().expect("kvmini ends");
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "1\n107\n".to_owned())
    );
}

#[test]
fn verbose_shows_the_control_registers_the_vcpu_starts_with() {
    let Some(kvm) = kvm_or_skip() else { return };
    // kvmini sets CR4.OSXSAVE and CR4.FSGSBASE where the vCPU's CPUID (KVM's
    // supported CPUID) offers XSAVE (leaf 1 ECX bit 26) and FSGSBASE
    // (leaf 7 EBX bit 0); on kvm-pvm it offers neither. EFER.NXE is on: the
    // hello is a ring-3 ELF guest, whose memory has permissions.
    let cpuid = kvm.supported_cpuid().as_slice().to_vec();
    let has = |function: u32, reg: fn(&kvm_bindings::kvm_cpuid_entry2) -> u32, bit: u32| {
        cpuid
            .iter()
            .any(|e| e.function == function && e.index == 0 && reg(e) & (1 << bit) != 0)
    };
    let mut cr4 = "PAE|OSFXSR|OSXMMEXCPT".to_owned();
    if has(7, |e| e.ebx, 0) {
        cr4 += "|FSGSBASE";
    }
    if has(1, |e| e.ecx, 26) {
        cr4 += "|OSXSAVE";
    }
    let (status, _, stderr) = run(&["demo", "hello", "--verbose"]);
    assert_eq!(status, Some(0));
    let line = stderr
        .lines()
        .find(|l| l.starts_with("kvmini: vCPU: "))
        .expect("the vCPU line");
    assert!(
        line.contains(&format!(
            "CR0 = PE|MP|ET|NE|WP|PG, CR4 = {cr4}, EFER = LME|LMA|NXE, "
        )),
        "{line}"
    );
}
