/*
 * A Linux program for core files: main -> first_level -> second_level ->
 * third_level, which sets a global and XMM0 (to known values) and then
 * writes to the null page. Built with -DSET_YMM1, third_level also loads
 * YMM1 (an AVX register) with a known pattern.
 */
#include <stdio.h>

volatile int *volatile nowhere;
volatile int progress = 1;

#ifdef SET_YMM1
static const unsigned long long pattern[4] __attribute__((aligned(32))) = {
    0x1111, 0x2222, 0x3333, 0x4444};
#endif

/* The empty asm after each call keeps it a call, not a tail jump. */
__attribute__((noinline)) void third_level(int depth)
{
    progress = 1000 + depth;
    __asm__ volatile("movq %0, %%xmm0" : : "r"(0x1122334455667788ULL) : "xmm0");
#ifdef SET_YMM1
    __asm__ volatile("vmovdqu %0, %%ymm1" : : "m"(pattern) : "xmm1");
#endif
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
