/*
 * efault.c - every call with an argument block, through the C SDK's
 * kvmini_fs_call, with blocks kvmini cannot use: each must come back as
 * -EFAULT to the caller. `efault/` is the same guest in Rust; the two print
 * the same lines. Runs with 4 MiB of guest memory.
 */
#include "kvmini.h"

#define MEM_SIZE 0x400000u
#define SYSTEM_BASE (MEM_SIZE - 0x10000u)
#define PORT_BATCH 0x0422

static const uint16_t ports[] = {
    KVMINI_PORT_OPEN,     KVMINI_PORT_CLOSE,     KVMINI_PORT_READ,
    KVMINI_PORT_WRITE,    KVMINI_PORT_PREAD,     KVMINI_PORT_PWRITE,
    KVMINI_PORT_LSEEK,    KVMINI_PORT_FSTAT,     KVMINI_PORT_STAT,
    KVMINI_PORT_FSYNC,    KVMINI_PORT_FTRUNCATE, KVMINI_PORT_UNLINK,
    KVMINI_PORT_MKDIR,    KVMINI_PORT_RMDIR,     KVMINI_PORT_RENAME,
    KVMINI_PORT_GETDENTS, KVMINI_PORT_HOST_CALL, KVMINI_PORT_ARGV,
    PORT_BATCH,
};

static void put_long(long v)
{
    char buf[24];
    int n = sizeof buf - 1;
    unsigned long u = v < 0 ? 0 - (unsigned long)v : (unsigned long)v;
    buf[n] = '\0';
    do {
        buf[--n] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[--n] = '-';
    display(buf + n);
}

/* One line: where the block is, then what every port answered. */
static void row(const char *where, uint64_t block)
{
    display(where);
    display(":");
    for (unsigned i = 0; i < sizeof ports / sizeof ports[0]; i++) {
        display(" ");
        put_long(kvmini_fs_call(ports[i], (void *)(uintptr_t)block));
    }
    display("\n");
}

int main(void)
{
    struct kvmini_fd_args good = {.fd = 99, .result = -ENOSYS};
    row("null page", 0);
    row("kvmini's area", SYSTEM_BASE);
    row("straddling kvmini's area", SYSTEM_BASE - 8);
    row("past guest memory", MEM_SIZE);
    row("top of 32 bits", 0xFFFFFFF8u);
    /* Cut to 32 bits, this would be `good`. */
    row("past 4 GiB", 0x100000000ull + (uintptr_t)&good);
    /* A good block still answers in the block. */
    display("close(99): ");
    put_long(kvmini_answer(kvmini_fs_call(KVMINI_PORT_CLOSE, &good),
                           &good.result));
    display("\n");
    return 0;
}
