/* pipes.c - a static Linux program built with musl-gcc that uses pipes
 * inside one process: a round trip, end of file, EAGAIN, EPIPE with
 * SIGPIPE ignored, dup2 of a pipe end onto stdout and back, poll and
 * select on both ends, fstat, fcntl, FIONREAD, the time left that ppoll
 * and select write back, and 1 MiB through a pipe in chunks. Each check
 * prints one line; the tests compare them with a native run.
 *
 * With an argument: "sigpipe" writes to a pipe whose read end is closed
 * (the run ends as SIGPIPE ends it); "block" reads an empty pipe whose
 * write end is open (the run waits until it is stopped); "blockwrite"
 * fills a pipe and writes once more (likewise); "direct" asks for a pipe
 * in packet mode, which kvmini refuses. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static void show(const char *what, long r) {
    printf("%s=%ld errno=%s\n", what, r, r < 0 ? strerror(errno) : "-");
    errno = 0;
}

static unsigned sum(const unsigned char *p, size_t n, unsigned s) {
    for (size_t i = 0; i < n; i++)
        s = s * 31 + p[i];
    return s;
}

static char big[1 << 20];
static char back[1 << 20];

int main(int argc, char **argv) {
    int p[2];
    char buf[256];
    if (argc > 1 && strcmp(argv[1], "sigpipe") == 0) {
        pipe(p);
        close(p[0]);
        printf("before\n");
        fflush(stdout);
        write(p[1], "x", 1);
        printf("after\n");
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "direct") == 0) {
        show("pipe2_direct", pipe2(p, O_DIRECT));
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "block") == 0) {
        pipe(p);
        printf("reading\n");
        fflush(stdout);
        show("read", read(p[0], buf, 1));
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "blockwrite") == 0) {
        pipe(p);
        show("fill", write(p[1], big, 65536));
        fflush(stdout);
        show("write", write(p[1], big, 1));
        return 0;
    }

    /* A round trip, and end of file once the write end is closed. */
    show("pipe", pipe(p));
    printf("fds=%d,%d\n", p[0], p[1]);
    show("write", write(p[1], "hello pipe", 10));
    int n = 0;
    show("fionread", ioctl(p[0], FIONREAD, &n));
    printf("waiting=%d\n", n);
    memset(buf, 0, sizeof buf);
    show("read4", read(p[0], buf, 4));
    printf("got=%s\n", buf);
    show("read_rest", read(p[0], buf, sizeof buf));
    printf("got=%.6s\n", buf);
    show("lseek", lseek(p[0], 0, SEEK_SET));
    show("pread", pread(p[0], buf, 1, 0));
    show("pwrite", pwrite(p[1], buf, 1, 0));
    show("read_on_write_end", read(p[1], buf, 1));
    show("write_on_read_end", write(p[0], buf, 1));
    show("ioctl_tcgets", ioctl(p[0], TCGETS, buf));
    show("write_zero", write(p[1], buf, 0));
    show("close_write", close(p[1]));
    show("read_eof", read(p[0], buf, sizeof buf));
    struct pollfd hup = {.fd = p[0], .events = POLLIN};
    show("poll_eof", poll(&hup, 1, 0));
    printf("revents=%#x\n", hup.revents);
    show("close_read", close(p[0]));

    /* Status and descriptor flags, fstat, the pipe size. */
    show("pipe2", pipe2(p, O_NONBLOCK | O_CLOEXEC));
    printf("getfl=%#x,%#x getfd=%d\n", fcntl(p[0], F_GETFL), fcntl(p[1], F_GETFL),
           fcntl(p[0], F_GETFD));
    show("read_empty", read(p[0], buf, 1));
    struct stat st;
    show("fstat", fstat(p[0], &st));
    printf("fifo=%d perms=%o size=%ld blksize=%ld\n", S_ISFIFO(st.st_mode), st.st_mode & 0777,
           (long)st.st_size, (long)st.st_blksize);
    show("pipe_sz", fcntl(p[1], F_GETPIPE_SZ));
    int null = open("/dev/null", O_RDONLY);
    show("pipe_sz_of_dev_null", fcntl(null, F_GETPIPE_SZ));
    close(null);
    int unused[2];
    show("pipe2_bad_flags", pipe2(unused, O_APPEND));
    show("pipe_bad_pointer", syscall(SYS_pipe2, (void *)16, 0));

    /* A full pipe: a write of a page or less goes whole or not at all. */
    show("fill", write(p[1], big, 65536 - 100));
    show("atomic_200", write(p[1], big, 200));
    show("fits_100", write(p[1], big, 100));
    show("full", write(p[1], big, 1));
    struct pollfd both[2] = {{.fd = p[0], .events = POLLIN | POLLOUT},
                             {.fd = p[1], .events = POLLIN | POLLOUT}};
    show("poll_full", poll(both, 2, 0));
    printf("revents=%#x,%#x\n", both[0].revents, both[1].revents);
    show("read_one", read(p[0], buf, 1));
    show("still_full", write(p[1], big, 1));
    show("drain", read(p[0], big, sizeof big));
    show("big_nonblocking", write(p[1], big, 100000));
    show("drain", read(p[0], big, sizeof big));
    /* F_SETFL takes O_NONBLOCK away; a duplicate shares it. */
    int dup_read = dup(p[0]);
    show("setfl", fcntl(dup_read, F_SETFL, 0));
    printf("getfl=%#x\n", fcntl(p[0], F_GETFL));
    show("setfl", fcntl(p[0], F_SETFL, O_NONBLOCK));
    show("read_dup_empty", read(dup_read, buf, 1));
    close(dup_read);

    /* The read end closed: EPIPE with SIGPIPE ignored, and POLLERR. */
    signal(SIGPIPE, SIG_IGN);
    show("close_read", close(p[0]));
    show("write_no_reader", write(p[1], "x", 1));
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    show("writev_no_reader", writev(p[1], &iov, 1));
    struct pollfd err = {.fd = p[1], .events = POLLOUT};
    show("poll_no_reader", poll(&err, 1, 0));
    printf("revents=%#x\n", err.revents);
    close(p[1]);
    signal(SIGPIPE, SIG_DFL);

    /* dup2 of the write end onto stdout, and back. */
    pipe(p);
    fflush(stdout);
    int saved = dup(1);
    show("dup2", dup2(p[1], 1));
    printf("into the pipe\n");
    fflush(stdout);
    show("dup2_back", dup2(saved, 1));
    close(saved);
    memset(buf, 0, sizeof buf);
    show("read_stdout", read(p[0], buf, sizeof buf));
    printf("got=%s", buf);
    show("ioctl_tcgets_stdout", ioctl(1, TCGETS, buf));

    /* readv and writev move across their buffers. */
    struct iovec out[3] = {{"ab", 2}, {"", 0}, {"cde", 3}};
    show("writev", writev(p[1], out, 3));
    char x[2], y[8];
    memset(y, 0, sizeof y);
    struct iovec in[2] = {{x, 2}, {y, sizeof y}};
    show("readv", readv(p[0], in, 2));
    printf("got=%.2s,%s\n", x, y);

    /* select sees both ends; the time left comes back. */
    fd_set r, w;
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_SET(p[0], &r);
    FD_SET(p[1], &w);
    write(p[1], "z", 1);
    struct timeval tv = {5, 0};
    show("select", syscall(SYS_select, p[1] + 1, &r, &w, NULL, &tv));
    printf("read=%d write=%d left_4s_to_5s=%d\n", FD_ISSET(p[0], &r), FD_ISSET(p[1], &w),
           tv.tv_sec == 4 || (tv.tv_sec == 5 && tv.tv_usec == 0));
    read(p[0], buf, 1);
    struct timespec ts = {0, 20 * 1000 * 1000};
    struct pollfd quiet = {.fd = p[0], .events = POLLIN};
    show("ppoll_nothing_20ms", syscall(SYS_ppoll, &quiet, 1, &ts, NULL, 8));
    printf("left=%ld,%ld\n", (long)ts.tv_sec, ts.tv_nsec);
    struct timespec pts = {3, 0};
    FD_ZERO(&w);
    FD_SET(p[1], &w);
    show("pselect6", syscall(SYS_pselect6, p[1] + 1, NULL, &w, NULL, &pts, NULL));
    printf("left_2s_to_3s=%d\n", pts.tv_sec == 2 || (pts.tv_sec == 3 && pts.tv_nsec == 0));
    struct timespec zero = {0, 0};
    show("ppoll_zero", syscall(SYS_ppoll, &quiet, 1, &zero, NULL, 8));
    printf("left=%ld,%ld\n", (long)zero.tv_sec, zero.tv_nsec);

    /* 1 MiB through the pipe in chunks of 4000 bytes. */
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7 + i / 4096);
    size_t sent = 0, got = 0;
    long writes = 0;
    while (got < sizeof big) {
        if (sent < sizeof big) {
            size_t chunk = sizeof big - sent < 4000 ? sizeof big - sent : 4000;
            long k = write(p[1], big + sent, chunk);
            if (k <= 0)
                break;
            sent += k;
            writes++;
        }
        long k = read(p[0], back + got, 8192);
        if (k <= 0)
            break;
        got += k;
    }
    printf("sent=%zu got=%zu writes=%ld same=%d sum=%u\n", sent, got, writes,
           memcmp(big, back, sizeof big) == 0, sum((unsigned char *)back, got, 0));
    show("close", close(p[0]));
    show("close", close(p[1]));
    show("close_again", close(p[1]));
    return 0;
}
