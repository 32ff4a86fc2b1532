/*
 * The hypercall demo: each kvmini hypercall once, plus a check that
 * display() prints a whole string in a single exit.
 *
 * Build (from the repository root):
 *   cc -O2 -ffreestanding -fno-pic -no-pie -nostdlib -static \
 *      -fno-stack-protector -mno-red-zone -I sdk/c -T sdk/c/guest.ld \
 *      -o /tmp/guest.elf sdk/c/examples/hypercalls.c
 */
#include "kvmini.h"

static const char banner[] = "kvmini C SDK: hypercall demo\n";

/* Long enough that printing it byte by byte would take hundreds of exits. */
static const char long_string[] =
    "display() passes kvmini a single 32-bit guest address. kvmini walks\n"
    "guest memory from that address up to the terminating NUL and prints\n"
    "every byte it finds, so this whole paragraph, several hundred bytes\n"
    "long, costs the guest exactly one VM exit, where console_putc() would\n"
    "need one exit for each character.\n";

int main(void)
{
    display(banner);
    printVal(12345);

    uint32_t numExits = getNumExits();
    printVal(numExits);

    /* Two exits apart: the display() itself and the second getNumExits(). */
    uint32_t a = getNumExits();
    display(long_string);
    uint32_t b = getNumExits();
    printVal(b - a);

    static const char ok[] = "ok\n";
    for (const char *p = ok; *p != '\0'; p++)
        console_putc(*p);

    return 0;
}

/*
 * Expected stdout (also in hypercalls.expected, byte for byte):
 *
 * kvmini C SDK: hypercall demo
 * 12345
 * 3
 * display() passes kvmini a single 32-bit guest address. kvmini walks
 * guest memory from that address up to the terminating NUL and prints
 * every byte it finds, so this whole paragraph, several hundred bytes
 * long, costs the guest exactly one VM exit, where console_putc() would
 * need one exit for each character.
 * 2
 * ok
 *
 * Exits, in order (getNumExits counts the current exit too):
 *   1 display(banner)      2 printVal(12345)     3 getNumExits() -> 3
 *   4 printVal(3)          5 getNumExits() -> 5  6 display(long_string)
 *   7 getNumExits() -> 7   8 printVal(2)         9-11 console_putc x3
 *  12 exit(0), from _start after main returns
 * Total: 12 exits; kvmini's exit status is 0.
 */
