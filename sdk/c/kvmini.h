/*
 * kvmini.h - header-only C SDK for kvmini guests.
 *
 * A guest is one C file that includes this header once and defines
 * `int main(void)`. The header defines real, non-static symbols (_start,
 * exit, memcpy, memmove, memset, memcmp), so including it from two files
 * of one program gives duplicate definitions: include it once per program.
 *
 * Build (from the repository root):
 *
 *   cc -O2 -ffreestanding -fno-pic -no-pie -nostdlib -static \
 *      -fno-stack-protector -mno-red-zone -I sdk/c -T sdk/c/guest.ld \
 *      -o /tmp/guest.elf sdk/c/examples/hypercalls.c
 *
 * The guest runs in 64-bit mode at ring 3 with IOPL=3, identity-mapped,
 * loaded at or above 1 MiB. Each hypercall is one port I/O instruction and
 * therefore exactly one VM exit. `hlt` and syscall/sysenter are not
 * available at ring 3 here; a guest ends through exit() or halt().
 */
#ifndef KVMINI_H
#define KVMINI_H

#include <stddef.h>
#include <stdint.h>

/* Hypercall ports; these mirror `Port` in kvmini-abi/src/lib.rs. */
#define KVMINI_PORT_CONSOLE       0x00E9 /* out  8-bit: print one byte       */
#define KVMINI_PORT_PRINT_VAL     0x0400 /* out 32-bit: print decimal + '\n' */
#define KVMINI_PORT_GET_NUM_EXITS 0x0401 /* in  32-bit: exits so far         */
#define KVMINI_PORT_DISPLAY       0x0402 /* out 32-bit: address of a string  */
#define KVMINI_PORT_EXIT          0x0403 /* out 32-bit: exit status          */
#define KVMINI_PORT_HALT          0x0404 /* out  8-bit: end with status 0    */

#define KVMINI_NORETURN __attribute__((noreturn))

int main(void);
KVMINI_NORETURN void exit(int code);
void *memcpy(void *dest, const void *src, size_t n);
void *memmove(void *dest, const void *src, size_t n);
void *memset(void *dest, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/*
 * Entry point. RSP is already 16-byte aligned by kvmini; re-aligning costs
 * nothing and keeps SSE spills in main safe regardless. DF is cleared
 * because the string instructions below rely on it, as the SysV ABI does.
 * push/popsection keep the compiler's idea of the current section intact.
 */
__asm__(
    "  .pushsection .text._start,\"ax\",@progbits\n"
    "  .globl _start\n"
    "  .type _start,@function\n"
    "_start:\n"
    "  xor %ebp, %ebp\n"
    "  and $-16, %rsp\n"
    "  cld\n"
    "  call main\n"
    "  mov %eax, %edi\n"
    "  call exit\n"
    "  .size _start, .-_start\n"
    "  .popsection\n");

/* Print one byte. */
static inline void console_putc(char c)
{
    __asm__ volatile("outb %0, %1"
                     :
                     : "a"((uint8_t)c), "Nd"((uint16_t)KVMINI_PORT_CONSOLE)
                     : "memory");
}

/* Print v in decimal followed by a newline. */
static inline void printVal(uint32_t v)
{
    __asm__ volatile("outl %0, %1"
                     :
                     : "a"(v), "Nd"((uint16_t)KVMINI_PORT_PRINT_VAL)
                     : "memory");
}

/* Number of VM exits since the guest started, this call's own included. */
static inline uint32_t getNumExits(void)
{
    uint32_t n;
    __asm__ volatile("inl %1, %0"
                     : "=a"(n)
                     : "Nd"((uint16_t)KVMINI_PORT_GET_NUM_EXITS)
                     : "memory");
    return n;
}

/*
 * Print a whole NUL-terminated string in one exit. kvmini reads it from
 * guest memory, hence the "memory" clobber; the address fits in 32 bits
 * because guest memory lies below 4 GiB.
 */
static inline void display(const char *s)
{
    __asm__ volatile("outl %0, %1"
                     :
                     : "a"((uint32_t)(uintptr_t)s),
                       "Nd"((uint16_t)KVMINI_PORT_DISPLAY)
                     : "memory");
}

/* End the run; kvmini exits with the low 8 bits of code. */
__attribute__((used)) KVMINI_NORETURN void exit(int code)
{
    __asm__ volatile("outl %0, %1"
                     :
                     : "a"((uint32_t)code), "Nd"((uint16_t)KVMINI_PORT_EXIT)
                     : "memory");
    /* kvmini never resumes the guest after this exit. */
    for (;;) {
    }
}

/* End the run with status 0: the ring-3 stand-in for hlt. */
static inline KVMINI_NORETURN void halt(void)
{
    __asm__ volatile("outb %0, %1"
                     :
                     : "a"((uint8_t)0), "Nd"((uint16_t)KVMINI_PORT_HALT)
                     : "memory");
    for (;;) {
    }
}

/*
 * gcc emits calls to these even with -ffreestanding (struct copies, large
 * initialisers). They are written with string instructions or plain
 * byte loops so that gcc cannot recognise them as memcpy/memset patterns
 * and compile them into calls to themselves.
 */
void *memcpy(void *dest, const void *src, size_t n)
{
    void *d = dest;
    __asm__ volatile("rep movsb"
                     : "+D"(d), "+S"(src), "+c"(n)
                     :
                     : "memory");
    return dest;
}

void *memmove(void *dest, const void *src, size_t n)
{
    unsigned char *d = dest;
    const unsigned char *s = src;
    if (d <= s || d >= s + n) {
        /* A forward byte copy is correct when dest does not start inside src. */
        __asm__ volatile("rep movsb"
                         : "+D"(d), "+S"(s), "+c"(n)
                         :
                         : "memory");
    } else if (n != 0) {
        d += n - 1;
        s += n - 1;
        __asm__ volatile("std\n\trep movsb\n\tcld"
                         : "+D"(d), "+S"(s), "+c"(n)
                         :
                         : "memory", "cc");
    }
    return dest;
}

void *memset(void *dest, int c, size_t n)
{
    void *d = dest;
    __asm__ volatile("rep stosb"
                     : "+D"(d), "+c"(n)
                     : "a"((unsigned char)c)
                     : "memory");
    return dest;
}

#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *p = a;
    const unsigned char *q = b;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != q[i])
            return p[i] < q[i] ? -1 : 1;
    }
    return 0;
}

#endif /* KVMINI_H */
