/*
 * flood.c - a ring-3 guest that makes one exit as long as it can: a batch
 * of 4096 (the most a batch holds) writes to stdout, each of 254 MiB of
 * its memory, then spins. The test runs it with 256 MiB of guest memory
 * and a timeout; the batch alone is 1 TiB of output.
 */
#include "hostile.h"

#define PORT_BATCH 0x0422
#define ENTRIES 4096

struct batch_entry {
    uint16_t port;
    uint16_t reserved[3];
    uint64_t block;
};
struct batch_args {
    uint64_t entries;
    uint32_t count;
    uint32_t flags;
    int64_t result;
};

static struct batch_entry entries[ENTRIES];
static struct kvmini_io_args block;

int body(void)
{
    block = (struct kvmini_io_args){
        .fd = 1, .buf = 0x100000, .len = 254UL << 20, .result = -ENOSYS};
    for (int i = 0; i < ENTRIES; i++)
        entries[i] = (struct batch_entry){.port = KVMINI_PORT_WRITE,
                                          .block = ADDR(&block)};
    struct batch_args b = {
        .entries = ADDR(entries), .count = ENTRIES, .result = -ENOSYS};
    kvmini_fs_call(PORT_BATCH, &b);
    for (;;) {
    }
}
