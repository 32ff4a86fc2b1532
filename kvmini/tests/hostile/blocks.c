/*
 * blocks.c - a ring-3 guest whose argument blocks, strings, paths and
 * batches are where kvmini cannot read them, or longer than it reads.
 *
 * An argument block kvmini cannot read has no result field to answer in:
 * the answer is -EFAULT in RAX (printed here) and a warning on kvmini's
 * stderr. A string for `display` with no NUL before memory it cannot read
 * is a warning, and the guest goes on; a path is -EFAULT, or
 * -ENAMETOOLONG when no NUL comes within PATH_MAX (4096) bytes.
 *
 * The test grants a directory holding data.txt.
 */
#include "hostile.h"

static char path[8192];
static struct kvmini_batch_entry entries[4];
static struct kvmini_io_args writes[3];

static long batch(uint64_t at, uint32_t count, uint32_t flags)
{
    struct kvmini_batch_args b = {
        .entries = at, .count = count, .flags = flags, .result = -ENOSYS};
    kvmini_fs_call(KVMINI_PORT_BATCH, &b);
    return b.result;
}

static void set_write(int i, const char *s, size_t len)
{
    writes[i] = (struct kvmini_io_args){
        .fd = 1, .buf = ADDR(s), .len = len, .result = -ENOSYS};
    entries[i] = (struct kvmini_batch_entry){.port = KVMINI_PORT_WRITE,
                                      .block = ADDR(&writes[i])};
}

/* A path of n bytes "a/a/a..." followed by a NUL at path[n]. */
static const char *long_path(size_t n)
{
    for (size_t i = 0; i < n; i++)
        path[i] = (i % 2) ? '/' : 'a';
    path[n] = '\0';
    return path;
}

/* A path "/" and one component of n 'c's. */
static const char *long_name(size_t n)
{
    path[0] = '/';
    for (size_t i = 0; i < n; i++)
        path[1 + i] = 'c';
    path[1 + n] = '\0';
    return path;
}

int body(void)
{
    /* Blocks kvmini cannot read: -EFAULT in RAX. */
    say("open, block in the null page", call_rax(KVMINI_PORT_OPEN, 0));
    say("close, block straddling kvmini's area",
        call_rax(KVMINI_PORT_CLOSE, SYSTEM_BASE - 8));
    say("write, block straddling kvmini's area",
        call_rax(KVMINI_PORT_WRITE, SYSTEM_BASE - 32));
    say("read, block on kvmini's IDT",
        call_rax(KVMINI_PORT_READ, SYSTEM_BASE + 0x8800));
    say("stat, block at the end of memory",
        call_rax(KVMINI_PORT_STAT, MEM_SIZE));
    say("fstat, block at the top of the 32-bit space",
        call_rax(KVMINI_PORT_FSTAT, 0xFFFFFFF8));
    say("host call, block straddling kvmini's area",
        call_rax(KVMINI_PORT_HOST_CALL, SYSTEM_BASE - 16));
    say("argv, block straddling kvmini's area",
        call_rax(KVMINI_PORT_ARGV, SYSTEM_BASE - 8));
    say("batch, block straddling kvmini's area",
        call_rax(KVMINI_PORT_BATCH, SYSTEM_BASE - 8));
    struct kvmini_fd_args good = {.fd = 99, .result = -ENOSYS};
    say("close(99) through a good block leaves RAX alone",
        call_rax(KVMINI_PORT_CLOSE, ADDR(&good)) == (long)ADDR(&good));
    say("close(99)", good.result);

    /* display: no NUL before kvmini's area, and strings nowhere. */
    fill(SYSTEM_BASE - 100, 'x', 100);
    display((const char *)(SYSTEM_BASE - 100));
    display((const char *)0);
    display((const char *)MEM_SIZE);
    display((const char *)(SYSTEM_BASE + 0x8000));
    say("display went on", 1);

    /* Paths. */
    say("open, path running into kvmini's area",
        open_at(SYSTEM_BASE - 100, O_RDONLY, 0));
    fill(ADDR(path), 'a', sizeof path);
    say("open, 8192 bytes and no NUL", open(path, O_RDONLY));
    say("open, 4095-byte path", open(long_path(4095), O_RDONLY));
    say("open, 4096-byte path", open(long_path(4096), O_RDONLY));
    say("open, 255-byte name", open(long_name(255), O_RDONLY));
    say("open, 256-byte name", open(long_name(256), O_RDONLY));
    say("open, path at 0x8000000000000000",
        open_at(0x8000000000000000ULL, O_RDONLY, 0));
    say("open, path at UINT64_MAX", open_at(UINT64_MAX, O_RDONLY, 0));
    say("mkdir, path in the null page", mkdir((const char *)0, 0755));
    struct kvmini_rename_args r = {.old_path = ADDR("/data.txt"),
                                   .new_path = 0xFFFF800000000000ULL,
                                   .result = -ENOSYS};
    kvmini_fs_call(KVMINI_PORT_RENAME, &r);
    say("rename to a path in unmapped kernel space", r.result);
    say("data.txt is still there", open("/data.txt", O_RDONLY) >= 0);

    /* Batches. */
    set_write(0, "one\n", 4);
    writes[1] = (struct kvmini_io_args){.fd = 1};
    entries[1] = (struct kvmini_batch_entry){.port = KVMINI_PORT_WRITE,
                                      .block = SYSTEM_BASE};
    set_write(2, "three\n", 6);
    say("batch with a bad block in the middle", batch(ADDR(entries), 3, 0));
    say("the same, stopping on errors",
        batch(ADDR(entries), 3, KVMINI_BATCH_STOP_ON_ERROR));
    /* A good first entry whose neighbour lies in kvmini's area: the
     * whole batch is refused before any call runs. */
    set_write(0, "never\n", 6);
    volatile struct kvmini_batch_entry *edge =
        (volatile struct kvmini_batch_entry *)(SYSTEM_BASE - 16);
    edge->port = KVMINI_PORT_WRITE;
    edge->block = ADDR(&writes[0]);
    say("batch, entries running into kvmini's area",
        batch(SYSTEM_BASE - 16, 2, 0));
    say("batch, entries wrapping around", batch(UINT64_MAX - 8, 2, 0));
    say("batch of 4097 entries", batch(ADDR(entries), 4097, 0));
    say("batch with unknown flags", batch(ADDR(entries), 1, 2));
    set_write(0, "not run\n", 8);
    entries[1] = (struct kvmini_batch_entry){.port = KVMINI_PORT_BATCH, .block = 0};
    say("batch holding a batch", batch(ADDR(entries), 2, 0));
    entries[1] = (struct kvmini_batch_entry){.port = KVMINI_PORT_EXIT, .block = 0};
    say("batch holding exit", batch(ADDR(entries), 2, 0));
    entries[1] = (struct kvmini_batch_entry){.port = 0x1234, .block = 0};
    say("batch holding an unknown port", batch(ADDR(entries), 2, 0));
    return 0;
}
