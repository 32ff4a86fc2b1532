/*
 * wc: counts the bytes and lines of /data (in the directory kvmini grants
 * as /), read in 1 MiB `read` calls; prints "BYTES LINES" with display()
 * and exits 0 (1 if the file cannot be opened or read).
 *
 * It does so twice: the first pass is the warm-up (the buffer's pages are
 * touched for the first time, on the host and in the guest's page tables);
 * host function 1, which the benchmark registers to note the time, is
 * called before and after the second, so the benchmark can time the
 * second pass alone (without the function, the calls return -ENOSYS and
 * change nothing).
 *
 * Its first argument, if any, changes the second pass, to take the time
 * apart: "huge" reads into a buffer in a 2 MiB page of kvmini's identity
 * map (the default buffer follows the code, in the first 2 MiB, which
 * kvmini maps with 4 KiB pages), and "count" does not read at all but
 * counts the lines of the buffer 256 times: the guest's own work.
 *
 * Built by kvmini/benches/io.rs with the C SDK's command line.
 */
#include "kvmini.h"

#define CHUNK (1UL << 20)

#define TWO_MIB (2UL << 20)

/* The "huge" buffer is the first 2 MiB boundary in here (an aligned array
 * would align all of .bss, and move buf out of the first 2 MiB too). */
static unsigned char room[TWO_MIB + CHUNK];
static unsigned char buf[CHUNK] __attribute__((aligned(4096)));

/*
 * Newlines in p[0..n): blocks of 128 bytes counted into an 8-bit counter
 * (at most 128), which gcc -O2 vectorises with SSE2, then the tail. A
 * plain byte loop into a 64-bit count stays scalar and is some 25 times
 * slower, which would measure the compiler rather than the file path;
 * kvmini/benches/io.rs counts the same way.
 */
static uint64_t count_lines(const unsigned char *p, size_t n)
{
    uint64_t lines = 0;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        unsigned char c = 0;
        for (int j = 0; j < 128; j++)
            c += p[i + j] == '\n';
        lines += c;
    }
    for (; i < n; i++)
        lines += p[i] == '\n';
    return lines;
}

static char *put_u64(char *p, uint64_t v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = digits[--n];
    return p;
}

/* Bytes and lines of /data, read into `buf`; 0 on success. */
static int wc(unsigned char *buf, uint64_t *bytes, uint64_t *lines)
{
    int fd = open("/data", O_RDONLY);
    if (fd < 0)
        return 1;
    *bytes = 0;
    *lines = 0;
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0)
            return 1;
        if (n == 0)
            break;
        *bytes += (uint64_t)n;
        *lines += count_lines(buf, (size_t)n);
    }
    return close(fd) == 0 ? 0 : 1;
}

#define MARK 1

/* The first argument after the program's name, or "", in `args`. */
static const char *mode(char *args, long len)
{
    long size = kvmini_argv(args, (size_t)len);
    char *argv[2];
    if (size <= 0 || size > len)
        return "";
    return kvmini_split_args(args, size, argv, 2) >= 2 ? argv[1] : "";
}

static int is(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

int main(void)
{
    char args[256];
    const char *m = mode(args, sizeof args);
    unsigned char *huge =
        (unsigned char *)(((uintptr_t)room + TWO_MIB - 1) & ~(TWO_MIB - 1));
    unsigned char *b = is(m, "huge") ? huge : buf;
    uint64_t bytes, lines;
    if (wc(b, &bytes, &lines) != 0)
        return 1;
    host_call(MARK);
    if (is(m, "count")) {
        uint64_t counted = 0;
        for (uint64_t done = 0; done < bytes; done += CHUNK) {
            /* As if read() had refilled the buffer: count it again. */
            __asm__ volatile("" : : "r"(b) : "memory");
            counted += count_lines(b, CHUNK);
        }
        lines = counted;
    } else if (wc(b, &bytes, &lines) != 0) {
        return 1;
    }
    host_call(MARK);
    char line[48];
    char *p = put_u64(line, bytes);
    *p++ = ' ';
    p = put_u64(p, lines);
    *p++ = '\n';
    *p = '\0';
    display(line);
    return 0;
}
