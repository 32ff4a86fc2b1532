/*
 * pointers.c - a ring-3 guest that hands kvmini buffers it cannot use:
 * outside guest memory, in the unmapped null page, in kvmini's own area,
 * half mapped, non-canonical, wrapping around the address space, and
 * lengths no memory has. Every one must be -EFAULT in the block's result,
 * with nothing read or written; the guest prints each result.
 *
 * The test grants a directory holding data.txt ("0123456789"), gives the
 * guest the arguments "pointers.elf" and "arg", and registers two host
 * functions: 1 (sum of the bytes at arg0, arg1 long) and 2 (writes
 * "host fn!" at arg0).
 */
#include "hostile.h"

#define WR KVMINI_PORT_WRITE
#define RD KVMINI_PORT_READ

static char buf[64];
static char listing[4096];

int body(void)
{
    int fd = open("/data.txt", O_RDONLY);
    say("open data.txt", fd);

    /* Buffers wholly outside what ring 3 may touch. */
    say("write from the end of memory", io(WR, 1, MEM_SIZE, 16, 0));
    say("write from the null page", io(WR, 1, 0, 16, 0));
    say("write from kvmini's page tables", io(WR, 1, SYSTEM_BASE, 16, 0));
    say("write from the top of the 32-bit space", io(WR, 1, 0xFFFFF000, 16, 0));

    /* Half mapped: nothing of the readable half may come out. */
    fill(SYSTEM_BASE - 8, 'L', 8);
    fill(0x1000, 'L', 8);
    say("write running into kvmini's area", io(WR, 1, SYSTEM_BASE - 8, 16, 0));
    say("write running out of the null page", io(WR, 1, 0x1000 - 8, 16, 0));

    /* Half mapped the other way: nothing written, the offset unchanged. */
    fill(SYSTEM_BASE - 4, 'u', 4);
    say("read running into kvmini's area", io(RD, fd, SYSTEM_BASE - 4, 8, 0));
    say_text("the mapped half",
             memcmp("uuuu", (const void *)(SYSTEM_BASE - 4), 4) == 0
                 ? "untouched"
                 : "CHANGED");
    say("read after it", read(fd, buf, 4));
    buf[4] = '\0';
    say_text("which read", buf);

    /* 64-bit values no 32-bit port value could carry. */
    say("write from 0x8000000000000000",
        io(WR, 1, 0x8000000000000000ULL, 16, 0));
    say("write from 0x0000800000000000 (first non-canonical)",
        io(WR, 1, 0x0000800000000000ULL, 16, 0));
    say("write from 0xffffffffffff0000 (canonical, unmapped)",
        io(WR, 1, 0xFFFFFFFFFFFF0000ULL, 16, 0));
    say("write of 100 bytes from UINT64_MAX - 10 (wraps)",
        io(WR, 1, UINT64_MAX - 10, 100, 0));
    say("write of UINT64_MAX bytes", io(WR, 1, ADDR(buf), UINT64_MAX, 0));
    say("write of 1 TiB", io(WR, 1, ADDR(buf), 1ULL << 40, 0));
    say("read of UINT64_MAX bytes", io(RD, fd, ADDR(buf), UINT64_MAX, 0));
    say("pread at offset -1",
        io(KVMINI_PORT_PREAD, fd, ADDR(buf), 4, -1));
    say("pwrite at offset -1",
        io(KVMINI_PORT_PWRITE, 1, ADDR(buf), 4, -1));

    /* Nothing to move, nothing to check, as on Linux. */
    say("write of 0 bytes from the null page", io(WR, 1, 0, 0, 0));
    say("read of 0 bytes into kvmini's area", io(RD, fd, SYSTEM_BASE, 0, 0));

    /* Structures kvmini fills in. */
    say("fstat into kvmini's area", fstat(fd, (struct stat *)SYSTEM_BASE));
    say("fstat straddling kvmini's area",
        fstat(fd, (struct stat *)(SYSTEM_BASE - 100)));
    say("stat into the null page", stat("/data.txt", (struct stat *)0));
    int dir = open("/", O_RDONLY | O_DIRECTORY);
    int dir2 = open("/", O_RDONLY | O_DIRECTORY);
    say("getdents straddling kvmini's area",
        getdents64(dir, (void *)(SYSTEM_BASE - 64), 4096));
    long after = getdents64(dir, listing, sizeof listing);
    long fresh = getdents64(dir2, listing, sizeof listing);
    say("getdents after it lists as much as a fresh one", after == fresh);
    say("argv into kvmini's area", kvmini_argv((char *)SYSTEM_BASE, 4096));
    say("argv size query with a null buffer", kvmini_argv((char *)0, 0));

    /* Host functions get the same checks through kvmini's accessors. */
    say("host read of kvmini's area", host_call(1, SYSTEM_BASE, 16));
    say("host read wrapping around", host_call(1, UINT64_MAX - 1, 10));
    say("host read of UINT64_MAX bytes", host_call(1, ADDR(buf), UINT64_MAX));
    say("host read of \"abc\"", host_call(1, ADDR("abc"), 3));
    say("host write into kvmini's area", host_call(2, SYSTEM_BASE));
    say("host write into the null page", host_call(2, 0));
    say("no such host function", host_call(99));
    return 0;
}
