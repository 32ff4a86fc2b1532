/*
 * The guest side of tests/embedding.rs: what an embedding program hands a
 * guest (stdin, argv, host functions) and gets back from it (stdout,
 * stderr). argv[1] picks the part; any other first argument, or none,
 * prints the arguments. Every line is exactly what the test expects.
 *
 *   stdio        fd 1 and fd 2 (write), display, console, printVal, and
 *                a large binary write to each of fd 1 and fd 2
 *   stdin        copies fd 0 to fd 1 until end of file; the count on fd 2
 *   host         host functions 0, 10..13, 0xffffffff and an unregistered id
 *   efault       host functions 20 (read) and 21 (write) on bad pointers
 *   enosys       ids that no function has
 *   worker N     one of many at once: stdin to /out.txt, host function 1
 *   loop         prints "looping\n", then spins without exits
 *   (other)      argv: the size it needs, a too-small buffer left
 *                untouched, then each argument with its length
 */
#include "kvmini.h"
#include "guest_strings.h"

/* Writes all of buf to fd (write may take less than all at once). */
static void put_bytes(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        long n = write(fd, p, len);
        if (n <= 0)
            exit(100);
        p += n;
        len -= (size_t)n;
    }
}

static void put(int fd, const char *s)
{
    put_bytes(fd, s, len_of(s));
}

static void put_dec(int fd, long v)
{
    char buf[24];
    int i = (int)sizeof buf;
    unsigned long u = v < 0 ? 0ul - (unsigned long)v : (unsigned long)v;
    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        buf[--i] = '-';
    put_bytes(fd, buf + i, sizeof buf - (size_t)i);
}

static void put_hex(int fd, uint64_t v)
{
    char buf[18] = "0x";
    for (int i = 0; i < 16; i++)
        buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
    put_bytes(fd, buf, sizeof buf);
}

/* "label: value\n" on stdout. */
static void show(const char *label, long value)
{
    put(1, label);
    put(1, ": ");
    put_dec(1, value);
    put(1, "\n");
}

static unsigned long parse_dec(const char *s)
{
    unsigned long v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (unsigned long)(*s++ - '0');
    return v;
}

/* The big binary writes of `stdio`: byte i is (i * mul + add) & 0xff. */
#define BIG_OUT 200000u
#define BIG_ERR 100000u
static unsigned char big[BIG_OUT];

static void fill(size_t len, unsigned mul, unsigned add)
{
    for (size_t i = 0; i < len; i++)
        big[i] = (unsigned char)((i * mul + add) & 0xffu);
}

static int stdio(void)
{
    put(1, "out 1\n");
    put(2, "err 1\n");
    display("out 2 (display)\n");
    put(2, "err 2\n");
    console_putc('!');
    console_putc('\n');
    printVal(7);
    fill(BIG_OUT, 7, 3);
    put_bytes(1, big, BIG_OUT);
    fill(BIG_ERR, 13, 5);
    put_bytes(2, big, BIG_ERR);
    put(1, "out end\n");
    put(2, "err end\n");
    return 0;
}

static int copy_stdin(void)
{
    static char buf[1000];
    long total = 0;
    for (;;) {
        long n = read(0, buf, sizeof buf);
        if (n < 0) {
            show("read", n);
            return 1;
        }
        if (n == 0)
            break;
        put_bytes(1, buf, (size_t)n);
        total += n;
    }
    put(2, "stdin: ");
    put_dec(2, total);
    put(2, " bytes\n");
    return 0;
}

/* Sent to host function 10: NULs and high bytes included. */
static const unsigned char message[] = "bytes for the host\0\x01\x7f\x80\xfe\xff end";
static unsigned char reply[32];

static int host(void)
{
    for (size_t i = 0; i < sizeof reply; i++)
        reply[i] = '.';
    long r = kvmini_host_call(10, KVMINI_ADDR(message), sizeof message,
                              KVMINI_ADDR(reply), sizeof reply,
                              0x0123456789abcdefull, 0xfedcba9876543210ull);
    put(1, "message at ");
    put_hex(1, KVMINI_ADDR(message));
    put(1, ", reply at ");
    put_hex(1, KVMINI_ADDR(reply));
    put(1, "\n");
    show("call 10", r);
    put(1, "reply: ");
    put_bytes(1, reply, sizeof reply);
    put(1, "\n");
    show("call 11 (one argument)", host_call(11, 5));
    show("call 11 (six arguments)", host_call(11, 1, 2, 3, 4, 5, 6));
    show("call 0", host_call(0));
    show("call 0xffffffff", host_call(0xffffffffu, 42));
    show("call 12 (Err(EINVAL))", host_call(12));
    show("call 13 (u64::MAX)", host_call(13));
    show("call 99 (unregistered)", host_call(99, 1, 2, 3));
    return 0;
}

static char buf16[16];

static int efault(void)
{
    char local = 0;
    /* The stack ends where kvmini's supervisor-only area begins. */
    uint64_t system = (KVMINI_ADDR(&local) + 0xffffu) & ~(uint64_t)0xffffu;
    show("read null", host_call(20, 0, 1));
    show("read last byte of the null page", host_call(20, 0xfff, 1));
    show("read 4 GiB", host_call(20, 1ull << 32, 1));
    show("read non-canonical", host_call(20, 1ull << 63, 1));
    show("read kvmini's area", host_call(20, system, 1));
    show("read running off memory", host_call(20, KVMINI_ADDR(buf16), 1ull << 40));
    show("read wrapping around", host_call(20, ~(uint64_t)0 - 3, 8));
    show("write null", host_call(21, 0, 4));
    show("write kvmini's area", host_call(21, system, 4));
    show("read 16 good bytes", host_call(20, KVMINI_ADDR(buf16), sizeof buf16));
    show("write 16 good bytes", host_call(21, KVMINI_ADDR(buf16), sizeof buf16));
    put(1, "buffer: ");
    put_bytes(1, buf16, sizeof buf16);
    put(1, "\n");
    return 0;
}

static int enosys(void)
{
    show("call 0", host_call(0));
    show("call 1", host_call(1, 1, 2, 3, 4, 5, 6));
    show("call 0xffffffff", host_call(0xffffffffu));
    return 0;
}

static int worker(const char *id)
{
    static char input[256];
    long n = read(0, input, sizeof input);
    if (n < 0)
        return 1;
    int fd = open("/out.txt", O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        show("open /out.txt", fd);
        return 1;
    }
    put_bytes(fd, input, (size_t)n);
    close(fd);
    long r = host_call(1, parse_dec(id), KVMINI_ADDR(input), (uint64_t)n);
    put(1, "worker ");
    put(1, id);
    put(1, ": ");
    put_dec(1, n);
    put(1, " bytes of stdin, host returned ");
    put_dec(1, r);
    put(1, "\n");
    put(2, id);
    put(2, "\n");
    return 0;
}

KVMINI_NORETURN static void spin(void)
{
    put(1, "looping\n");
    for (;;)
        __asm__ volatile("pause");
}

static char argbuf[65536];

static int print_args(void)
{
    long need = kvmini_argv(0, 0);
    show("need", need);
    if (need < 0 || need > (long)sizeof argbuf)
        return 1;
    if (need > 0) {
        argbuf[0] = 'U';
        long r = kvmini_argv(argbuf, (size_t)need - 1);
        show("one byte short", r);
        put(1, argbuf[0] == 'U' ? "buffer untouched\n" : "buffer written\n");
    }
    long r = kvmini_argv(argbuf, sizeof argbuf);
    show("full buffer", r);
    char *argv[64];
    int argc = kvmini_split_args(argbuf, r, argv, 64);
    show("argc", argc);
    for (int i = 0; i < argc && i < 64; i++) {
        put(1, "[");
        put_dec(1, (long)len_of(argv[i]));
        put(1, "] ");
        put(1, argv[i]);
        put(1, "\n");
    }
    return 0;
}

int main(void)
{
    char *argv[3] = {0};
    long size = kvmini_argv(argbuf, sizeof argbuf);
    int argc = size > 0 ? kvmini_split_args(argbuf, size, argv, 3) : 0;
    const char *mode = argc > 1 ? argv[1] : "";
    if (same(mode, "stdio"))
        return stdio();
    if (same(mode, "stdin"))
        return copy_stdin();
    if (same(mode, "host"))
        return host();
    if (same(mode, "efault"))
        return efault();
    if (same(mode, "enosys"))
        return enosys();
    if (same(mode, "worker") && argc > 2)
        return worker(argv[2]);
    if (same(mode, "loop"))
        spin();
    return print_args();
}
