/*
 * Large and awkward transfers, for kvmini/tests/fs_large_io.rs (guest
 * memory 256 MiB). One build per part:
 *
 *   -DPART_WRITE     generates 64 MiB and writes it four ways: one write,
 *                    4093-byte writes, (1 MiB + 7)-byte writes, and
 *                    (1 MiB + 7)-byte pwrites from the end backwards.
 *   -DPART_READ      reads the host's 64 MiB in.bin back the same ways,
 *                    and checksums what arrived each time.
 *   -DPART_BOUNDARY  buffers, a stat block, a path and a directory
 *                    listing that straddle 2 MiB page boundaries at odd
 *                    addresses, including 0x200000, where the 4 KiB pages
 *                    of the first 2 MiB give way to 2 MiB pages.
 *
 * Data byte i of a stream is pattern_byte(i % PERIOD, seed); the test
 * computes the same bytes. Checksums are fnv1a64_words (testfmt.h). Each
 * result is one "what: value" line, compared exactly by the test.
 */
#include "kvmini.h"
static inline void emit(const char *s)
{
    display(s);
}
#include "testfmt.h"

#define SIZE (64UL << 20)
#define PERIOD 1000003UL
#define ODD_CHUNK ((1UL << 20) + 7)
#define SMALL_CHUNK 4093UL
#define TWO_MIB (2UL << 20)

/* The one big buffer: starts below 0x200000 and spans it. */
static unsigned char big[SIZE + 8192] __attribute__((aligned(4096)));

static struct line out;

#define HELPER static __attribute__((unused))

HELPER void show(const char *what, long v)
{
    l_str(&out, what);
    l_str(&out, ": ");
    l_long(&out, v);
    l_emit(&out);
}

HELPER void show_sum(const char *what, const void *p, size_t n)
{
    l_str(&out, what);
    l_str(&out, ": ");
    l_unsigned(&out, fnv1a64_words(p, n), 10, 1);
    l_emit(&out);
}

/* "what: total T calls C" for a chunked transfer. */
HELPER void show_chunks(const char *what, long total, long calls)
{
    l_str(&out, what);
    l_str(&out, ": total ");
    l_long(&out, total);
    l_str(&out, " calls ");
    l_long(&out, calls);
    l_emit(&out);
}

static inline unsigned char pattern_byte(uint64_t j, uint64_t seed)
{
    uint64_t x = j * 0x9e3779b97f4a7c15ULL + seed;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 32;
    return (unsigned char)x;
}

/* buf[0..n) = the first n bytes of the stream with this seed. */
HELPER void fill(unsigned char *buf, size_t n, uint64_t seed)
{
    size_t first = n < PERIOD ? n : PERIOD;
    for (size_t j = 0; j < first; j++)
        buf[j] = pattern_byte(j, seed);
    for (size_t at = first; at < n;) {
        size_t k = n - at < PERIOD ? n - at : PERIOD;
        memcpy(buf + at, buf, k);
        at += k;
    }
}

#ifdef PART_WRITE
/* write() (or pwrite from the end back) of big in chunks of `chunk`. */
static void write_chunks(const char *path, size_t chunk, int backwards)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    long total = 0, calls = 0;
    if (!backwards) {
        for (size_t at = 0; at < SIZE;) {
            size_t n = SIZE - at < chunk ? SIZE - at : chunk;
            long r = write(fd, big + at, n);
            calls++;
            if (r != (long)n) {
                show("short or failed write", r);
                break;
            }
            total += r;
            at += n;
        }
    } else {
        size_t last = (SIZE - 1) / chunk;
        for (size_t k = last + 1; k-- > 0;) {
            size_t at = k * chunk;
            size_t n = SIZE - at < chunk ? SIZE - at : chunk;
            long r = pwrite(fd, big + at, n, (off_t)at);
            calls++;
            if (r != (long)n) {
                show("short or failed pwrite", r);
                break;
            }
            total += r;
        }
    }
    struct stat st;
    show("fstat", fstat(fd, &st));
    show("size", st.st_size);
    show("close", close(fd));
    show_chunks(path, total, calls);
}

static void part(void)
{
    fill(big, SIZE, 1);
    show_sum("generated", big, SIZE);
    int fd = open("single.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    show("open single.bin", fd);
    show("write 64 MiB", write(fd, big, SIZE));
    show("offset", lseek(fd, 0, SEEK_CUR));
    show("close", close(fd));
    write_chunks("chunks4093.bin", SMALL_CHUNK, 0);
    write_chunks("chunks1m7.bin", ODD_CHUNK, 0);
    write_chunks("pwrite1m7.bin", ODD_CHUNK, 1);
    show_sum("still", big, SIZE);
}
#endif

#ifdef PART_READ
/* read() of in.bin into big in chunks of `chunk`, or pread backwards. */
static void read_chunks(int fd, const char *what, size_t chunk, int backwards)
{
    memset(big, 0, SIZE);
    long total = 0, calls = 0, r = 0;
    if (!backwards) {
        show("rewind", lseek(fd, 0, SEEK_SET));
        for (size_t at = 0;; at += (size_t)r) {
            r = read(fd, big + at, chunk);
            calls++;
            if (r <= 0)
                break;
            total += r;
        }
        show("last read", r);
    } else {
        size_t last = (SIZE - 1) / chunk;
        for (size_t k = last + 1; k-- > 0;) {
            size_t at = k * chunk;
            r = pread(fd, big + at, chunk, (off_t)at);
            calls++;
            if (r <= 0)
                break;
            total += r;
        }
    }
    show_chunks(what, total, calls);
    show_sum("checksum", big, SIZE);
}

static void part(void)
{
    int fd = open("in.bin", O_RDONLY);
    show("open in.bin", fd);
    show("read 64 MiB + 4096", read(fd, big, SIZE + 4096));
    show("read at EOF", read(fd, big, 4096));
    show_sum("checksum", big, SIZE);
    read_chunks(fd, "4093-byte reads", SMALL_CHUNK, 0);
    read_chunks(fd, "(1 MiB + 7)-byte reads", ODD_CHUNK, 0);
    read_chunks(fd, "(1 MiB + 7)-byte preads backwards", ODD_CHUNK, 1);
    /* One pread to an odd address at an odd offset, then the first byte. */
    memset(big, 0, SIZE);
    show("pread 64 MiB - 1 at 1", pread(fd, big + 1, SIZE - 1, 1));
    show("pread 1 at 0", pread(fd, big, 1, 0));
    show_sum("checksum", big, SIZE);
    show("close", close(fd));
}
#endif

#ifdef PART_BOUNDARY
#define EDGE_LEN ((5UL << 20) + 3)

/* The first 2 MiB boundary in big, and one 3 boundaries further up. */
#define B1 ((unsigned char *)TWO_MIB)
#define B4 ((unsigned char *)(4 * TWO_MIB))

static void part(void)
{
    int inside = B1 - 8192 >= big && B4 + EDGE_LEN + 8192 <= big + SIZE;
    show("boundaries inside the buffer", inside);
    if (!inside)
        return;

    /* A path across 0x200000: "edge" below it, ".bin" above. */
    unsigned char *path = B1 - 4;
    memcpy(path, "edge.bin", 9);
    int fd = open((const char *)path, O_RDONLY);
    show("open a path across 0x200000", fd);

    /* 12293 bytes from 4095 below 0x200000, file offset 7. */
    unsigned char *p = B1 - 4095;
    show("pread across 0x200000", pread(fd, p, 12293, 7));
    show_sum("checksum", p, 12293);

    /* The whole file from one below 0x800000, over 3 boundaries. */
    unsigned char *q = B4 - 1;
    show("read across 3 boundaries", read(fd, q, EDGE_LEN + 100));
    show_sum("checksum", q, EDGE_LEN);

    /* fstat into 144 bytes that straddle 0x200000 at an odd address. */
    struct stat *st = (struct stat *)(void *)(B1 - 51);
    show("fstat across 0x200000", fstat(fd, st));
    int64_t size;
    memcpy(&size, (unsigned char *)st + offsetof(struct stat, st_size),
           sizeof(size));
    show("size", (long)size);
    show("close", close(fd));

    /* Writes from the same places. */
    fill(p, 12293, 4);
    int ofd = open("edge_out.bin", O_RDWR | O_CREAT | O_EXCL, 0644);
    show("open edge_out.bin", ofd);
    show("pwrite across 0x200000", pwrite(ofd, p, 12293, 4093));
    show("pwrite across 3 boundaries", pwrite(ofd, q, EDGE_LEN, 20000));
    show("offset", lseek(ofd, 0, SEEK_CUR));
    show("seek to the end", lseek(ofd, 0, SEEK_END));
    show("write across 0x200000", write(ofd, B1 - 1, 2));
    show("close", close(ofd));

    /* A directory listing into an odd address across 0x200000. */
    int dfd = open("/", O_RDONLY | O_DIRECTORY);
    unsigned char *d = B1 - 37;
    long n = getdents64(dfd, d, 4096);
    show("getdents across 0x200000", n > 0);
    char names[16][32];
    int count = 0;
    for (long pos = 0; pos < n;) {
        unsigned short reclen;
        memcpy(&reclen, d + pos + offsetof(struct linux_dirent64, d_reclen),
               sizeof(reclen));
        const char *name =
            (const char *)d + pos + offsetof(struct linux_dirent64, d_name);
        if (count < 16)
            str_copy(names[count++], sizeof(names[0]), name);
        pos += reclen;
    }
    for (int i = 1; i < count; i++) {
        char tmp[32];
        str_copy(tmp, sizeof(tmp), names[i]);
        int j = i;
        for (; j > 0 && str_cmp(names[j - 1], tmp) > 0; j--)
            str_copy(names[j], sizeof(names[0]), names[j - 1]);
        str_copy(names[j], sizeof(names[0]), tmp);
    }
    l_str(&out, "names:");
    for (int i = 0; i < count; i++) {
        l_char(&out, ' ');
        l_str(&out, names[i]);
    }
    l_emit(&out);
    show("close", close(dfd));
}
#endif

int main(void)
{
    part();
    return 0;
}
