/*
 * fds.c - a ring-3 guest that abuses its descriptor table: opens until
 * EMFILE, closes 0, 1 and 2 and uses them, passes descriptor numbers that
 * were never open, keeps two descriptors on one file, and reads a file
 * into the very argument block of the read.
 *
 * The test runs it with at most 8 descriptors (0..2 included), grants a
 * directory holding data.txt ("0123456789") and block.bin (40 'B's), and
 * registers host function 7, which returns only once the test has counted
 * the host's descriptors while the guest holds as many as it may.
 */
#include "hostile.h"

static char b[16];

static void show_read(const char *label, int fd, size_t n)
{
    long got = read(fd, b, n);
    b[got > 0 ? got : 0] = '\0';
    say(label, got);
    say_text("  which read", b);
}

int body(void)
{
    /* 0, 1 and 2 are open and the limit is 8: 3..7, then EMFILE. */
    for (int i = 0; i < 6; i++)
        say("open data.txt", open("/data.txt", O_RDONLY));
    say("close 5", close(5));
    say("open data.txt again (lowest free)", open("/data.txt", O_RDONLY));
    say("one more", open("/data.txt", O_RDONLY));
    say("the host counted its descriptors", host_call(7));

    /* Two descriptors on one file have their own offsets. */
    show_read("read 4 from fd 3", 3, 4);
    show_read("read 4 from fd 4", 4, 4);
    show_read("read 4 from fd 3", 3, 4);
    say("fd 4 is at", lseek(4, 0, SEEK_CUR));
    long closed = 0;
    for (int fd = 3; fd <= 7; fd++)
        closed |= close(fd);
    say("close 3..7", closed);

    /* Numbers that are not open descriptors. */
    say("close -1", close(-1));
    say("close 8 (past the table)", close(8));
    say("close 1 << 30", close(1 << 30));
    say("close INT32_MIN", close(-2147483647 - 1));
    say("read from closed fd 7", read(7, b, 1));
    say("fstat -5", fstat(-5, (struct stat *)b));
    say("lseek 100", lseek(100, 0, SEEK_SET));
    say("getdents on stdout", getdents64(1, b, sizeof b));

    /* 0, 1 and 2 may be closed; then they are gone until reused. */
    say("close 0", close(0));
    say("read from 0", read(0, b, 1));
    say("close 0 again", close(0));
    say("close 1", close(1));
    say("write to 1", write(1, "lost\n", 5));
    say("close 2", close(2));
    say("write to 2", write(2, "lost\n", 5));
    int fd = open("/data.txt", O_RDONLY);
    say("open data.txt", fd);
    show_read("read 4 from fd 0", 0, 4);
    say("write to fd 0, opened read-only", write(0, "x", 1));
    say("open data.txt", open("/data.txt", O_RDONLY));
    say("open data.txt", open("/data.txt", O_RDONLY));
    say("open data.txt", open("/data.txt", O_RDONLY));
    closed = 0;
    for (int i = 0; i <= 3; i++)
        closed |= close(i);
    say("close 0..3", closed);

    /*
     * A read into its own argument block: kvmini reads the block, the file
     * data lands on it, and the result is written last, over the data.
     */
    fd = open("/block.bin", O_RDONLY);
    say("open block.bin", fd);
    struct kvmini_io_args a = {
        .fd = fd, .buf = ADDR(&a), .len = sizeof a, .result = -ENOSYS};
    kvmini_fs_call(KVMINI_PORT_READ, &a);
    say("read into its own block: result", a.result);
    say("  fd field afterwards", a.fd);
    say("  len field is now 0x4242424242424242",
        a.len == 0x4242424242424242ULL);
    struct kvmini_io_args r = {.fd = fd,
                               .buf = ADDR(&r.result),
                               .len = sizeof r.result,
                               .offset = 0,
                               .result = -ENOSYS};
    kvmini_fs_call(KVMINI_PORT_PREAD, &r);
    say("pread into its own result field", r.result);
    return 0;
}
