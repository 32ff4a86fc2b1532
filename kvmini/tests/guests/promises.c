/*
 * promises.c - the guest side of tests/promises.rs: one documented promise
 * per part, chosen by argv[1]. Every line is exactly what the test expects.
 *
 *   fds       opens "/" until refused: how many opened, and the error;
 *             then closes descriptor 5 and opens again (the lowest free)
 *   flags     open with O_CLOEXEC (accepted), with flags kvmini does not
 *             support (EINVAL), and with O_RDWR|O_WRONLY (EINVAL)
 *   getdents  one getdents64 with an 8 MiB buffer over a directory whose
 *             records fill more than 1 MiB: what one call returns
 */
#include "kvmini.h"
#include "guest_strings.h"

/* Prints a signed value with printVal's 32 bits, then a newline-less
 * label is not needed: the test knows the order. */
static void show(long v)
{
    printVal((uint32_t)v);
}

static char argbuf[256];
static char big[8 << 20];

int main(void)
{
    char *argv[4];
    long size = kvmini_argv(argbuf, sizeof argbuf);
    int argc = kvmini_split_args(argbuf, size, argv, 4);
    const char *part = argc > 1 ? argv[1] : "";

    if (same(part, "fds")) {
        long opened = 0, fd;
        while ((fd = open("/", O_RDONLY | O_DIRECTORY, 0)) >= 0)
            opened++;
        show(opened);
        show(fd);
        show(close(5));
        show(open("/", O_RDONLY | O_DIRECTORY, 0));
        return 0;
    }
    if (same(part, "flags")) {
        show(open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0));
        show(open("/", O_RDONLY | 040000 /* O_DIRECT */, 0));
        show(open("/", O_RDONLY | 010000000 /* O_PATH */, 0));
        show(open("/", O_RDWR | O_WRONLY, 0));
        return 0;
    }
    if (same(part, "getdents")) {
        int fd = open("/many", O_RDONLY | O_DIRECTORY, 0);
        show(fd);
        show(getdents64(fd, big, sizeof big));
        return 0;
    }
    return 2;
}
