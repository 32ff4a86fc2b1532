//! The vCPU thread's seccomp filter, tried from that thread: a host
//! function (which runs there) makes each call the filter refuses and each
//! call it allows, and reports what it got. docs/security.md lists the
//! same calls; this test and that list change together.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;

use std::sync::{Arc, Mutex};

use common::kvm_or_skip;
use kvmini::host::Errno;
use kvmini::output::Output;
use kvmini::sandbox::{Ending, Sandbox};

/// One system call as the vCPU thread sees it: its result, and errno when
/// it failed.
type Answer = (i64, i32);

fn answer(result: i64) -> Answer {
    let errno = if result < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        0
    };
    (result, errno)
}

/// The calls tried, each by name, made on the thread that runs it; any
/// descriptor one opens is closed again.
fn probe(kvm_fd: i32, file: (i32, &std::ffi::CStr)) -> Vec<(&'static str, Answer)> {
    let (file_fd, file_path) = file;
    // Only what a probe opened: a result of 0 is a success, not stdin.
    let close = |fd: i64| {
        if let Ok(fd) = i32::try_from(fd) {
            if fd > 2 {
                // SAFETY: fd was opened by the probe and is not used again.
                unsafe { libc::close(fd) };
            }
        }
    };
    let mut out = Vec::new();
    let mut call = |name, f: &dyn Fn() -> i64| {
        let a = answer(f());
        close(a.0);
        out.push((name, a));
    };
    // Refused: a socket, a plain open outside any grant, a new VM, a
    // signal to another process, the system's name.
    // SAFETY: a plain system call with integer arguments or pointers to
    // live locals; the result is only inspected.
    call("socket", &|| unsafe {
        i64::from(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0))
    });
    // SAFETY: a plain system call with integer arguments or pointers to
    // live locals; the result is only inspected.
    call("openat", &|| unsafe {
        i64::from(libc::openat(libc::AT_FDCWD, c"/".as_ptr(), libc::O_RDONLY))
    });
    // SAFETY: a plain system call with integer arguments or pointers to
    // live locals; the result is only inspected.
    call("ioctl(KVM_CREATE_VM)", &|| unsafe {
        i64::from(libc::ioctl(kvm_fd, 0xAE01, 0))
    });
    // SAFETY: a plain system call with integer arguments or pointers to
    // live locals; the result is only inspected.
    call("kill", &|| unsafe {
        i64::from(libc::kill(libc::getppid(), 0))
    });
    // SAFETY: a plain system call with integer arguments or pointers to
    // live locals; the result is only inspected.
    call("uname", &|| unsafe {
        let mut name: libc::utsname = std::mem::zeroed();
        i64::from(libc::uname(&mut name))
    });
    // Refused: a file's mode or times changed by its path.
    // SAFETY: a plain system call with a live NUL-terminated path.
    call("fchmodat2 (a path)", &|| unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            libc::AT_FDCWD,
            file_path.as_ptr(),
            0o600,
            0,
        )
    });
    // SAFETY: a plain system call with a live NUL-terminated path.
    call("utimensat (a path)", &|| unsafe {
        i64::from(libc::utimensat(
            libc::AT_FDCWD,
            file_path.as_ptr(),
            std::ptr::null(),
            0,
        ))
    });
    // Allowed: the same on a descriptor kvmini holds (AT_EMPTY_PATH).
    // SAFETY: a plain system call on a descriptor the test keeps open.
    call("fchmodat2 (AT_EMPTY_PATH)", &|| unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            file_fd,
            c"".as_ptr(),
            0o600,
            libc::AT_EMPTY_PATH,
        )
    });
    // SAFETY: a plain system call on a descriptor the test keeps open.
    call("utimensat (AT_EMPTY_PATH)", &|| unsafe {
        i64::from(libc::utimensat(
            file_fd,
            c"".as_ptr(),
            std::ptr::null(),
            libc::AT_EMPTY_PATH,
        ))
    });
    // Allowed: time, its own thread id, a write (to stderr, nothing), and
    // memory for kvmini's buffers.
    // SAFETY: a plain system call with integer arguments or pointers to
    // live locals; the result is only inspected.
    call("clock_gettime", &|| unsafe {
        let mut now: libc::timespec = std::mem::zeroed();
        i64::from(libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now))
    });
    // SAFETY: a plain system call with integer arguments or pointers to
    // live locals; the result is only inspected.
    call("gettid", &|| unsafe {
        libc::syscall(libc::SYS_gettid).min(0)
    });
    // SAFETY: a plain system call with integer arguments or pointers to
    // live locals; the result is only inspected.
    call("write", &|| unsafe {
        libc::write(2, [].as_ptr(), 0) as i64
    });
    // SAFETY: a plain system call with integer arguments or pointers to
    // live locals; the result is only inspected.
    // SAFETY: a plain system call into a live local buffer.
    call("getrandom", &|| unsafe {
        let mut buf = [0u8; 16];
        (libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) as i64 - 16).min(0)
    });
    // SAFETY: a plain system call with a pointer to a live local.
    call("nanosleep", &|| unsafe {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1000,
        };
        i64::from(libc::nanosleep(&zero, std::ptr::null_mut()))
    });
    // SAFETY: a plain system call with a pointer to a live local.
    call("clock_nanosleep", &|| unsafe {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1000,
        };
        let e = libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &zero, std::ptr::null_mut());
        if e == 0 {
            0
        } else {
            *libc::__errno_location() = e;
            -1
        }
    });
    // SAFETY: a plain system call with no descriptors and a live timeout.
    call("ppoll", &|| unsafe {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        i64::from(libc::ppoll(
            std::ptr::null_mut(),
            0,
            &zero,
            std::ptr::null(),
        ))
    });
    // A thread, as pthread_create makes it (clone with its flags).
    call("clone (a thread)", &|| {
        match std::thread::Builder::new().spawn(|| 5).map(|t| t.join()) {
            Ok(Ok(5)) => 0,
            Ok(_) => -2,
            Err(e) => {
                // SAFETY: sets this thread's errno for `answer`.
                unsafe { *libc::__errno_location() = e.raw_os_error().unwrap_or(0) };
                -1
            }
        }
    });
    // SAFETY: a plain system call with integer arguments or pointers to
    // live locals; the result is only inspected.
    call("mmap+munmap", &|| unsafe {
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if page == libc::MAP_FAILED {
            return -1;
        }
        i64::from(libc::munmap(page, 4096))
    });
    out
}

/// Calls that make a new process, tried only under the filter (which
/// refuses them): `clone` with fork's flags and with a thread's flags plus
/// a new namespace get EPERM; `clone3`, whose flags a filter cannot read,
/// gets ENOSYS (so that glibc falls back to `clone`).
fn probe_processes() -> Vec<(&'static str, Answer)> {
    let clone = |flags: libc::c_long| {
        // SAFETY: with a null stack the child, were one made, would go on
        // on a copy of this stack: it exits at once.
        let r = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
        if r == 0 {
            // SAFETY: leaves the child without running anything else.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
        }
        answer(r)
    };
    let thread_flags = libc::c_long::try_from(kvmini::seccomp::THREAD_CLONE_FLAGS)
        .expect("the thread flags fit clone's flags argument");
    vec![
        ("clone (fork)", clone(libc::c_long::from(libc::SIGCHLD))),
        (
            "clone (thread in a new user namespace)",
            clone(thread_flags | libc::c_long::from(libc::CLONE_NEWUSER)),
        ),
        // SAFETY: clone3 with no arguments, which the filter answers.
        ("clone3", answer(unsafe { libc::syscall(435, 0, 0) })),
    ]
}

/// Runs the probe in a host function of a sandbox with the filter on or
/// off, and returns what each call got.
fn probed(seccomp: bool) -> Option<Vec<(&'static str, Answer)>> {
    let kvm = kvm_or_skip()?;
    let dev = std::fs::File::open("/dev/kvm").expect("/dev/kvm");
    let kvm_fd = std::os::fd::AsRawFd::as_raw_fd(&dev);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("file");
    let file = std::fs::File::create(&path).expect("a file to change");
    let file_fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let path = std::ffi::CString::new(path.into_os_string().into_encoded_bytes()).unwrap();
    let seen = Arc::new(Mutex::new(None));
    let into = Arc::clone(&seen);
    let mut sandbox = Sandbox::builder()
        .elf(kvmini::guests::KVSTORE.elf)
        .stdout(Output::Null)
        .seccomp(seccomp)
        .host_function(1, move |_| {
            let mut answers = probe(kvm_fd, (file_fd, &path));
            if seccomp {
                answers.extend(probe_processes());
            }
            *into.lock().map_err(|_| Errno::EIO)? = Some(answers);
            // The guest stops at the first error: one probe is enough.
            Err(Errno::EIO)
        })
        .build(&kvm)
        .expect("the sandbox is built");
    assert_eq!(sandbox.run().expect("run").ending, Ending::Exited(1));
    drop(dev);
    drop(file);
    let answers = seen.lock().unwrap().take().expect("the host function ran");
    Some(answers)
}

const REFUSED: [&str; 9] = [
    "socket",
    "fchmodat2 (a path)",
    "utimensat (a path)",
    "openat",
    "ioctl(KVM_CREATE_VM)",
    "kill",
    "uname",
    "clone (fork)",
    "clone (thread in a new user namespace)",
];

#[test]
fn the_vcpu_thread_may_make_only_the_listed_calls() {
    let Some(answers) = probed(true) else { return };
    assert_eq!(answers.len(), 21, "{answers:?}");
    for (name, (result, errno)) in answers {
        if name == "clone3" {
            assert_eq!((result, errno), (-1, libc::ENOSYS), "clone3");
        } else if REFUSED.contains(&name) {
            assert_eq!((result, errno), (-1, libc::EPERM), "{name} was not refused");
        } else {
            assert_eq!((result, errno), (0, 0), "{name} was refused");
        }
    }
}

#[test]
fn without_the_filter_the_same_calls_go_through() {
    let Some(answers) = probed(false) else { return };
    for (name, (result, errno)) in answers {
        // A call that went through: a descriptor, or 0.
        assert!(result >= 0, "{name}: {result} errno {errno}");
    }
}
