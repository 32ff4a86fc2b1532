/*
 * memory_protection.c - the Linux program of tests/memory_protection.rs,
 * run natively and in kvmini: one way of breaking its memory's permissions
 * per run, chosen by argv[1], each of which Linux ends with SIGSEGV; with
 * no argument it prints "untouched" and exits 0.
 *
 *   stack       recurses until the stack runs into the guard below it
 *   code        writes to its own code
 *   rodata      writes to read-only data
 *   exec-stack  calls a `ret` it put on its stack
 *   exec-heap   calls a `ret` it put in memory from malloc
 *   mprotect    touches a mapped page, makes it PROT_NONE and touches it
 *               again
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static const char read_only[] = "read-only";

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

int main(int argc, char **argv)
{
    const char *part = argc > 1 ? argv[1] : "none";
    if (strcmp(part, "stack") == 0) {
        printf("%d\n", deep(0));
    } else if (strcmp(part, "code") == 0) {
        *(volatile unsigned char *)(void *)main = 0x90;
    } else if (strcmp(part, "rodata") == 0) {
        *(volatile char *)read_only = 'R';
    } else if (strcmp(part, "exec-stack") == 0) {
        unsigned char on_stack[16];
        call(on_stack);
    } else if (strcmp(part, "exec-heap") == 0) {
        call(malloc(16));
    } else if (strcmp(part, "mprotect") == 0) {
        volatile char *page = mmap(0, 4096, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED)
            return 1;
        page[0] = 1;
        if (mprotect((void *)page, 4096, PROT_NONE) != 0)
            return 2;
        page[0] = 2;
        printf("touched\n");
    } else {
        printf("untouched\n");
    }
    return 0;
}
