//! Pipes inside the sandbox through the `kvmini` binary: a musl program
//! that makes pipes and uses them (round trip, end of file, EAGAIN, EPIPE,
//! dup2 onto stdout and back, poll and select, fstat, fcntl, FIONREAD, the
//! time left of ppoll and select, 1 MiB in chunks) prints and ends exactly
//! as natively; SIGPIPE ends it with 141 as natively; a blocking read of
//! an empty pipe, or a blocking write to a full one, waits until the
//! timeout ends the run (docs/linux.md, "Pipes").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails by panicking"
)]

mod common;
mod linux_native;

use common::kvm_or_skip;
use linux_native::{in_kvmini, musl, native, outcome};

const EXPECTED: &str = "pipe=0 errno=-
fds=3,4
write=10 errno=-
fionread=0 errno=-
waiting=10
read4=4 errno=-
got=hell
read_rest=6 errno=-
got=o pipe
lseek=-1 errno=Invalid seek
pread=-1 errno=Invalid seek
pwrite=-1 errno=Invalid seek
read_on_write_end=-1 errno=Bad file descriptor
write_on_read_end=-1 errno=Bad file descriptor
ioctl_tcgets=-1 errno=Not a tty
write_zero=0 errno=-
close_write=0 errno=-
read_eof=0 errno=-
poll_eof=1 errno=-
revents=0x10
close_read=0 errno=-
pipe2=0 errno=-
getfl=0x800,0x801 getfd=1
read_empty=-1 errno=Resource temporarily unavailable
fstat=0 errno=-
fifo=1 perms=600 size=0 blksize=4096
pipe_sz=65536 errno=-
pipe_sz_of_dev_null=-1 errno=Bad file descriptor
pipe2_bad_flags=-1 errno=Invalid argument
pipe_bad_pointer=-1 errno=Bad address
fill=65436 errno=-
atomic_200=-1 errno=Resource temporarily unavailable
fits_100=100 errno=-
full=-1 errno=Resource temporarily unavailable
poll_full=1 errno=-
revents=0x1,0
read_one=1 errno=-
still_full=-1 errno=Resource temporarily unavailable
drain=65535 errno=-
big_nonblocking=65536 errno=-
drain=65536 errno=-
setfl=0 errno=-
getfl=0
setfl=0 errno=-
read_dup_empty=-1 errno=Resource temporarily unavailable
close_read=0 errno=-
write_no_reader=-1 errno=Broken pipe
writev_no_reader=-1 errno=Broken pipe
poll_no_reader=1 errno=-
revents=0xc
dup2_back=1 errno=-
read_stdout=29 errno=-
got=dup2=1 errno=-
into the pipe
ioctl_tcgets_stdout=-1 errno=Not a tty
writev=5 errno=-
readv=5 errno=-
got=ab,cde
select=2 errno=-
read=1 write=1 left_4s_to_5s=1
ppoll_nothing_20ms=0 errno=-
left=0,0
pselect6=1 errno=-
left_2s_to_3s=1
ppoll_zero=0 errno=-
left=0,0
sent=1048576 got=1048576 writes=263 same=1 sum=1870659584
close=0 errno=-
close=0 errno=-
close_again=-1 errno=Bad file descriptor
";

#[test]
fn a_program_using_pipes_prints_and_ends_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("pipes.c", work.path());
    let natively = outcome(&native(&program, &[], work.path()));
    assert_eq!(natively, (0, EXPECTED.to_owned(), String::new()));
    let guest = outcome(&in_kvmini(&[program.to_str().unwrap()]));
    assert_eq!(guest, natively);
}

#[test]
fn a_write_to_a_pipe_without_a_reader_ends_the_program_with_sigpipe_as_natively() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("pipes.c", work.path());
    let natively = outcome(&native(&program, &["sigpipe"], work.path()));
    assert_eq!(natively, (141, "before\n".to_owned(), String::new()));
    let guest = outcome(&in_kvmini(&[program.to_str().unwrap(), "--", "sigpipe"]));
    assert_eq!(guest, natively);
}

#[test]
fn a_blocking_read_of_an_empty_pipe_or_write_to_a_full_one_ends_at_the_timeout() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("pipes.c", work.path());
    let program = program.to_str().unwrap();
    // The program has one thread: nothing can ever fill or drain the pipe,
    // so only the timeout ends the wait (without it the test would hang).
    for (how, printed) in [
        ("block", "reading\n"),
        ("blockwrite", "fill=65536 errno=-\n"),
    ] {
        let out = in_kvmini(&["--timeout", "1s", program, "--", how]);
        let (status, stdout, stderr) = outcome(&out);
        assert_eq!((status, stdout.as_str()), (124, printed), "{how}");
        assert!(
            stderr.starts_with("kvmini: guest timed out after 1s ("),
            "{how}: {stderr}"
        );
    }
}

#[test]
fn packet_mode_is_refused() {
    if kvm_or_skip().is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let program = musl("pipes.c", work.path());
    // Linux makes a pipe in packet mode here; kvmini does not serve one
    // (docs/linux.md, "Pipes").
    let guest = outcome(&in_kvmini(&[program.to_str().unwrap(), "--", "direct"]));
    assert_eq!(
        guest,
        (
            0,
            "pipe2_direct=-1 errno=Invalid argument\n".to_owned(),
            String::new()
        )
    );
}
