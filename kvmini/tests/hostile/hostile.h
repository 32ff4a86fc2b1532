/*
 * hostile.h - what the hostile guests of kvmini/tests/hostile.rs share.
 *
 * Each guest includes this header once (it includes kvmini.h) and defines
 * `int body(void)` instead of main. The tests run every guest with 4 MiB
 * of guest memory, so the addresses below are fixed:
 *
 *   0x000000..0x001000   the null page (not mapped for ELF guests)
 *   0x100000..           the guest image (and the stack below, in .bss)
 *   0x3F0000..0x400000   kvmini's own area: page tables, GDT, IDT, TSS,
 *                        exception handlers and stack (supervisor-only)
 *   0x400000             the end of guest memory
 *
 * main moves the stack into .bss before calling body, so that a guest may
 * fill the memory right below kvmini's area (where kvmini starts the stack)
 * without overwriting its own frames.
 *
 * say() prints one line in one `display` exit: a label, a signed value and,
 * for -errno values, the errno's name ("open past the end: -14 EFAULT").
 */
#ifndef HOSTILE_H
#define HOSTILE_H

#include "kvmini.h"

#define MEM_SIZE 0x400000UL
#define SYSTEM_BASE (MEM_SIZE - 0x10000UL)

int body(void);

static char hostile_stack[0x10000] __attribute__((aligned(16), used));

__asm__(".pushsection .text.main,\"ax\",@progbits\n"
        "  .globl main\n"
        "  .type main,@function\n"
        "main:\n"
        "  mov $hostile_stack+0x10000, %rsp\n"
        "  call body\n"
        "  mov %eax, %edi\n"
        "  call exit\n"
        "  .size main, .-main\n"
        ".popsection\n");

/* The address of p as the 64-bit value an argument block holds. */
#define ADDR(p) ((uint64_t)(uintptr_t)(p))

__attribute__((unused)) static const char *errno_name(long v)
{
    switch (-v) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case EFAULT: return "EFAULT";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ESPIPE: return "ESPIPE";
    case EROFS: return "EROFS";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case ELOOP: return "ELOOP";
    default: return "";
    }
}

/* Appends the NUL-terminated s to buf at *n, keeping room for the rest. */
__attribute__((unused)) static void put_str(char *buf, size_t *n, size_t cap,
                                            const char *s)
{
    while (*s && *n + 1 < cap)
        buf[(*n)++] = *s++;
}

/* Appends v in decimal. */
__attribute__((unused)) static void put_long(char *buf, size_t *n, size_t cap,
                                             long v)
{
    char digits[24];
    int d = 0;
    unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;
    do {
        digits[d++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0 && *n + 1 < cap)
        buf[(*n)++] = '-';
    while (d && *n + 1 < cap)
        buf[(*n)++] = digits[--d];
}

/* Prints "label: v[ ERRNO]\n" in one display call. */
__attribute__((unused)) static void say(const char *label, long v)
{
    char buf[160];
    size_t n = 0;
    put_str(buf, &n, sizeof buf, label);
    put_str(buf, &n, sizeof buf, ": ");
    put_long(buf, &n, sizeof buf, v);
    if (v < 0 && errno_name(v)[0]) {
        put_str(buf, &n, sizeof buf, " ");
        put_str(buf, &n, sizeof buf, errno_name(v));
    }
    put_str(buf, &n, sizeof buf, "\n");
    buf[n] = '\0';
    display(buf);
}

/* Prints "label: text\n" in one display call. */
__attribute__((unused)) static void say_text(const char *label,
                                             const char *text)
{
    char buf[160];
    size_t n = 0;
    put_str(buf, &n, sizeof buf, label);
    put_str(buf, &n, sizeof buf, ": ");
    put_str(buf, &n, sizeof buf, text);
    put_str(buf, &n, sizeof buf, "\n");
    buf[n] = '\0';
    display(buf);
}

/*
 * One `out` of `block` to `port`, returning RAX afterwards: kvmini sets it
 * to -EFAULT when it cannot use the block; otherwise it still holds the
 * block's address.
 */
__attribute__((unused)) static inline long call_rax(uint16_t port,
                                                    uint64_t block)
{
    uint64_t rax = (uint32_t)block;
    __asm__ volatile("outl %%eax, %%dx" : "+a"(rax) : "d"(port) : "memory");
    return (long)rax;
}

/* read/write/pread/pwrite/getdents with raw 64-bit buffer and length. */
__attribute__((unused)) static long io(uint16_t port, int fd, uint64_t buf,
                                       uint64_t len, int64_t offset)
{
    struct kvmini_io_args a = {
        .fd = fd, .buf = buf, .len = len, .offset = offset, .result = -ENOSYS};
    kvmini_fs_call(port, &a);
    return a.result;
}

/* open with a raw 64-bit path address. */
__attribute__((unused)) static long open_at(uint64_t path, uint32_t flags,
                                            uint32_t mode)
{
    struct kvmini_open_args a = {
        .path = path, .flags = flags, .mode = mode, .result = -ENOSYS};
    kvmini_fs_call(KVMINI_PORT_OPEN, &a);
    return a.result;
}

/* Fills n bytes at the raw address p with c (volatile: the guest means it). */
__attribute__((unused)) static void fill(uint64_t p, char c, size_t n)
{
    volatile char *d = (volatile char *)(uintptr_t)p;
    for (size_t i = 0; i < n; i++)
        d[i] = c;
}

/* The guest's arguments: argv[1] or "" when there is none. */
__attribute__((unused)) static const char *first_arg(void)
{
    static char buf[4096];
    char *argv[4];
    long size = kvmini_argv(buf, sizeof buf - 1);
    if (size < 0 || size > (long)sizeof buf - 1)
        return "";
    buf[size] = '\0';
    if (kvmini_split_args(buf, size, argv, 4) < 2)
        return "";
    return argv[1];
}

__attribute__((unused)) static int streq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

#endif /* HOSTILE_H */
