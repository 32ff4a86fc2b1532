/*
 * batch: 1,000 writes of 16 bytes to /log (in the directory kvmini grants
 * as /), either one `write` hypercall (one exit) each, or, when its first
 * argument is "batched", 64 at a time through the batch hypercall (port
 * 0x422): one exit per 64 writes. Exits 0 when every write wrote 16 bytes.
 *
 * The batch blocks are kvmini-abi's BatchEntry and BatchArgs
 * (kvmini-abi/src/batch.rs), written out here: the C SDK has no batch API.
 *
 * Built by kvmini/benches/io.rs with the C SDK's command line.
 */
#include "kvmini.h"

#define WRITES 1000
#define PER_BATCH 64
#define LEN 16

#define KVMINI_PORT_BATCH 0x0422

struct batch_entry {
    uint16_t port;     /* IN: the call's port */
    uint16_t reserved[3];
    uint64_t block;    /* IN: address of the call's argument block */
};
struct batch_args {
    uint64_t entries;  /* IN: address of the batch_entry array */
    uint32_t count;    /* IN: number of entries */
    uint32_t flags;    /* IN: 1 = stop at the first error */
    int64_t result;    /* OUT: calls run, or -errno */
};
_Static_assert(sizeof(struct batch_entry) == 16, "BatchEntry");
_Static_assert(sizeof(struct batch_args) == 24, "BatchArgs");

static const char record[LEN + 1] = "0123456789abcde\n";

static struct kvmini_io_args blocks[PER_BATCH];
static struct batch_entry entries[PER_BATCH];

static int batched(void)
{
    char args[64];
    long size = kvmini_argv(args, sizeof args);
    char *argv[2];
    if (size <= 0 || size > (long)sizeof args)
        return 0;
    if (kvmini_split_args(args, size, argv, 2) < 2)
        return 0;
    const char *want = "batched";
    const char *a = argv[1];
    while (*want && *a == *want) {
        a++;
        want++;
    }
    return *want == '\0' && *a == '\0';
}

int main(void)
{
    int fd = open("/log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return 1;
    if (!batched()) {
        for (int i = 0; i < WRITES; i++) {
            if (write(fd, record, LEN) != LEN)
                return 1;
        }
        return close(fd) == 0 ? 0 : 1;
    }
    for (int done = 0; done < WRITES;) {
        int n = WRITES - done < PER_BATCH ? WRITES - done : PER_BATCH;
        for (int i = 0; i < n; i++) {
            blocks[i] = (struct kvmini_io_args){.fd = fd,
                                                .buf = KVMINI_ADDR(record),
                                                .len = LEN,
                                                .result = -ENOSYS};
            entries[i] = (struct batch_entry){.port = KVMINI_PORT_WRITE,
                                              .block = KVMINI_ADDR(&blocks[i])};
        }
        struct batch_args b = {.entries = KVMINI_ADDR(entries),
                               .count = (uint32_t)n,
                               .flags = 1,
                               .result = -ENOSYS};
        kvmini_fs_call(KVMINI_PORT_BATCH, &b);
        if (b.result != n)
            return 1;
        for (int i = 0; i < n; i++) {
            if (blocks[i].result != LEN)
                return 1;
        }
        done += n;
    }
    return close(fd) == 0 ? 0 : 1;
}
