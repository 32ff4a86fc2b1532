/*
 * The classic: "Hello, world!\n" one byte per VM exit through the console
 * port (0xE9), then exit(0).
 *
 * Build (from the repository root):
 *   cc -O2 -ffreestanding -fno-pic -no-pie -nostdlib -static \
 *      -fno-stack-protector -mno-red-zone -I sdk/c -T sdk/c/guest.ld \
 *      -o /tmp/hello.elf sdk/c/examples/hello.c
 *
 * Expected stdout (also in hello.expected): "Hello, world!\n"
 * Exits: 14 console_putc + 1 exit(0) = 15; kvmini's exit status is 0.
 */
#include "kvmini.h"

int main(void)
{
    static const char msg[] = "Hello, world!\n";
    for (const char *p = msg; *p != '\0'; p++)
        console_putc(*p);
    exit(0);
}
