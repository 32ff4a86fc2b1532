/*
 * A Linux program for core files: main -> first_level -> second_level ->
 * third_level, which sets a global and XMM0 (to known values) and then
 * writes to the null page.
 */
#include <stdio.h>

volatile int *volatile nowhere;
volatile int progress = 1;

/* The empty asm after each call keeps it a call, not a tail jump. */
__attribute__((noinline)) void third_level(int depth)
{
    progress = 1000 + depth;
    __asm__ volatile("movq %0, %%xmm0" : : "r"(0x1122334455667788ULL) : "xmm0");
    *nowhere = depth;
}

__attribute__((noinline)) void second_level(int depth)
{
    third_level(depth + 1);
    __asm__ volatile("");
}

__attribute__((noinline)) void first_level(int depth)
{
    second_level(depth + 1);
    __asm__ volatile("");
}

int main(void)
{
    puts("crashing");
    first_level(1);
    return 0;
}
