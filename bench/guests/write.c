/*
 * write: creates /out (in the directory kvmini grants as /) and writes
 * 256 MiB to it in 1 MiB `write` calls of a buffer of 64-byte lines of
 * 'a's; exits 0 (1 on any error). Filling the buffer costs some 0.1 ms
 * (memset, then one newline per line), so that the run is the writes.
 *
 * Built by kvmini/benches/io.rs with the C SDK's command line.
 */
#include "kvmini.h"

#define CHUNK (1UL << 20)
#define TOTAL (256UL << 20)

static unsigned char buf[CHUNK] __attribute__((aligned(4096)));

int main(void)
{
    memset(buf, 'a', CHUNK);
    for (unsigned long i = 63; i < CHUNK; i += 64)
        buf[i] = '\n';
    int fd = open("/out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return 1;
    for (unsigned long done = 0; done < TOTAL; done += CHUNK) {
        if (write(fd, buf, CHUNK) != (ssize_t)CHUNK)
            return 1;
    }
    return close(fd) == 0 ? 0 : 1;
}
