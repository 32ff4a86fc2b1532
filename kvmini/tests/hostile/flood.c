/*
 * flood.c - a ring-3 guest that makes one exit as long as it can: a batch
 * of 4096 (the most a batch holds) writes to stdout, each of 253 MiB of
 * its memory (from its image up to below the unmapped guard under its
 * stack), then spins. The test runs it with 256 MiB of guest memory and a
 * timeout; the batch alone is 1 TiB of output.
 */
#include "hostile.h"

#define ENTRIES 4096

static struct kvmini_batch_entry entries[ENTRIES];
static struct kvmini_io_args block;

int body(void)
{
    block = (struct kvmini_io_args){
        .fd = 1, .buf = 0x100000, .len = 253UL << 20, .result = -ENOSYS};
    for (int i = 0; i < ENTRIES; i++)
        entries[i] = (struct kvmini_batch_entry){.port = KVMINI_PORT_WRITE,
                                          .block = ADDR(&block)};
    struct kvmini_batch_args b = {
        .entries = ADDR(entries), .count = ENTRIES, .result = -ENOSYS};
    kvmini_fs_call(KVMINI_PORT_BATCH, &b);
    for (;;) {
    }
}
