/*
 * memory_protection.c - the SDK guest of tests/memory_protection.rs: one
 * way of breaking its memory's permissions per run, chosen by argv[1].
 * Each part that kvmini stops never reaches its printVal; "efault" prints
 * what argv and read answered for a read-only buffer, and "none" (or no
 * argument) exits 0 having broken nothing.
 *
 *   stack       recurses until the stack runs into the guard below it
 *   code        writes to its own code
 *   rodata      writes to read-only data
 *   exec-stack  calls a `ret` it put on its stack
 *   exec-data   calls a `ret` it put in writable data
 *   efault      asks kvmini to write its arguments into read-only data
 */
#include "kvmini.h"
#include "guest_strings.h"

static char argbuf[256];
static const char read_only[64] = "read-only";
static unsigned char data_code[16];

static int deep(int n)
{
    volatile char pad[512];
    pad[0] = (char)n;
    if (n < 0)
        return 0;
    return deep(n + 1) + pad[0];
}

static void call(unsigned char *code)
{
    code[0] = 0xC3; /* ret */
    ((void (*)(void))(void *)code)();
}

int main(void)
{
    char *argv[4];
    long size = kvmini_argv(argbuf, sizeof argbuf);
    int argc = kvmini_split_args(argbuf, size, argv, 4);
    const char *part = argc > 1 ? argv[1] : "none";
    if (same(part, "stack")) {
        printVal((uint32_t)deep(0));
    } else if (same(part, "code")) {
        *(volatile unsigned char *)(void *)main = 0x90;
        printVal(1);
    } else if (same(part, "rodata")) {
        *(volatile char *)read_only = 'R';
        printVal(2);
    } else if (same(part, "exec-stack")) {
        unsigned char on_stack[16];
        call(on_stack);
        printVal(3);
    } else if (same(part, "exec-data")) {
        call(data_code);
        printVal(4);
    } else if (same(part, "efault")) {
        printVal((uint32_t)kvmini_argv((char *)read_only, sizeof read_only));
        printVal((uint32_t)read(0, (char *)read_only, 4));
        printVal((uint32_t)(read_only[0] == 'r'));
    }
    return 0;
}
