/*
 * The guest side of tests/host_functions.rs: host functions called many
 * times, output that fills a capture, and output with kvmini's warnings.
 * argv[1] picks the part:
 *
 *   set N          host function 1 as set(key, 16, value, 16), N times
 *                  with distinct keys; exit(errno) on the first error
 *   call ID        host function ID once; "result R\n" on fd 1
 *   calls ID N     host function ID N times; exit(errno) on an error
 *   fill N SIZE    N writes of SIZE bytes to fd 1; each result on fd 2 as
 *                  "write R\n", then 3 console bytes "c\n" and printVal(7)
 *   console N      N console bytes 'x', then exit(0)
 *   noisy          one line each with console, printVal, display,
 *                  write(1), write(2), and a display of a bad pointer
 *                  (a kvmini warning)
 */
#include "kvmini.h"
#include "guest_strings.h"

static unsigned long number(const char *s)
{
    unsigned long n = 0;
    while (*s >= '0' && *s <= '9')
        n = n * 10 + (unsigned long)(*s++ - '0');
    return n;
}

static void put(int fd, const char *s)
{
    long n = write(fd, s, len_of(s));
    (void)n;
}

static void put_dec(int fd, const char *label, long v)
{
    char buf[48];
    int i = (int)sizeof buf;
    unsigned long u = v < 0 ? 0ul - (unsigned long)v : (unsigned long)v;
    buf[--i] = '\n';
    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        buf[--i] = '-';
    put(fd, label);
    long n = write(fd, buf + i, sizeof buf - (size_t)i);
    (void)n;
}

static unsigned char block[1 << 20];

NO_PATTERNS int main(void)
{
    static char argbuf[512];
    long size = kvmini_argv(argbuf, sizeof argbuf);
    char *argv[5] = {0};
    int argc = size > 0 ? kvmini_split_args(argbuf, size, argv, 5) : 0;
    const char *part = argc > 1 ? argv[1] : "";
    unsigned long a = argc > 2 ? number(argv[2]) : 0;
    unsigned long b = argc > 3 ? number(argv[3]) : 0;

    if (same(part, "set")) {
        unsigned char key[16], value[16];
        for (unsigned long i = 0; i < a; i++) {
            for (int j = 0; j < 16; j++) {
                key[j] = (unsigned char)(i >> (8 * (j % 8)));
                value[j] = (unsigned char)(key[j] ^ 0x5a);
            }
            key[15] = 'k';
            long r = kvmini_host_call(1, KVMINI_ADDR(key), 16,
                                      KVMINI_ADDR(value), 16, 0, 0);
            if (r < 0)
                exit((int)-r);
        }
        return 0;
    } else if (same(part, "call")) {
        put_dec(1, "result ", kvmini_host_call((uint32_t)a, 0, 0, 0, 0, 0, 0));
        return 0;
    } else if (same(part, "calls")) {
        for (unsigned long i = 0; i < b; i++) {
            long r = kvmini_host_call((uint32_t)a, i, 0, 0, 0, 0, 0);
            if (r < 0)
                exit((int)-r);
        }
        return 0;
    } else if (same(part, "fill")) {
        if (b > sizeof block)
            return 99;
        for (unsigned long i = 0; i < b; i++)
            block[i] = (unsigned char)('a' + i % 26);
        for (unsigned long i = 0; i < a; i++)
            put_dec(2, "write ", write(1, block, b));
        console_putc('c');
        console_putc('\n');
        printVal(7);
        return 0;
    } else if (same(part, "console")) {
        for (unsigned long i = 0; i < a; i++)
            console_putc('x');
        return 0;
    } else if (same(part, "noisy")) {
        console_putc('c');
        console_putc('\n');
        printVal(42);
        display("display\n");
        put(1, "write 1\n");
        put(2, "write 2\n");
        display((const char *)0);
        put(1, "end\n");
        return 0;
    }
    return 99;
}
