/*
 * The guest side of tests/stopping.rs: output nobody reads, input nobody
 * writes, FIFOs, and plain endings. argv[1] picks the part:
 *
 *   console | printval | display   print for ever with that hypercall
 *   write1 | write2                write 4 KiB blocks to fd 1 or 2 for
 *                                  ever; exit(errno) when a write fails
 *   fifo-write PATH                open PATH for writing, then write for
 *                                  ever; exit(errno) on a failure
 *   fifo-read PATH                 open PATH for reading and read it
 *   stdin                          read fd 0 until end of file (exit 0)
 *                                  or an error (exit errno)
 *   exit N                         exit(N)
 *   crash                          read the null page
 *   loop                           spin without exits
 *   host                           host functions 1 and 2; printVal of
 *                                  each result
 */
#include "kvmini.h"
#include "guest_strings.h"

static int number(const char *s)
{
    int n = 0;
    while (*s >= '0' && *s <= '9')
        n = n * 10 + (*s++ - '0');
    return n;
}

static char block[4096];

NO_PATTERNS static KVMINI_NORETURN void write_for_ever(int fd)
{
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (i % 64 == 63) ? '\n' : 'w';
    for (;;) {
        long n = write(fd, block, sizeof block);
        if (n < 0)
            exit((int)-n);
    }
}

int main(void)
{
    static char argbuf[512];
    long size = kvmini_argv(argbuf, sizeof argbuf);
    char *argv[4] = {0};
    int argc = size > 0 ? kvmini_split_args(argbuf, size, argv, 4) : 0;
    const char *part = argc > 1 ? argv[1] : "";
    const char *arg = argc > 2 ? argv[2] : "";

    if (same(part, "console")) {
        for (unsigned i = 0;; i++)
            console_putc(i % 64 == 63 ? '\n' : 'c');
    } else if (same(part, "printval")) {
        for (uint32_t i = 0;; i++)
            printVal(i);
    } else if (same(part, "display")) {
        for (;;)
            display("display output that nobody reads\n");
    } else if (same(part, "write1")) {
        write_for_ever(STDOUT_FILENO);
    } else if (same(part, "write2")) {
        write_for_ever(STDERR_FILENO);
    } else if (same(part, "fifo-write")) {
        int fd = open(arg, O_WRONLY);
        if (fd < 0)
            exit(-fd);
        write_for_ever(fd);
    } else if (same(part, "fifo-read")) {
        int fd = open(arg, O_RDONLY);
        if (fd < 0)
            exit(-fd);
        long n = read(fd, block, sizeof block);
        exit(n < 0 ? (int)-n : 0);
    } else if (same(part, "stdin")) {
        for (;;) {
            long n = read(STDIN_FILENO, block, sizeof block);
            if (n <= 0)
                exit((int)-n);
        }
    } else if (same(part, "exit")) {
        exit(number(arg));
    } else if (same(part, "crash")) {
        return *(volatile int *)0;
    } else if (same(part, "loop")) {
        for (;;)
            __asm__ volatile("" ::: "memory");
    } else if (same(part, "host")) {
        printVal((uint32_t)kvmini_host_call(1, 0, 0, 0, 0, 0, 0));
        printVal((uint32_t)-kvmini_host_call(2, 0, 0, 0, 0, 0, 0));
        return 0;
    }
    return 99;
}
