/* A Linux program that crashes with SIGSEGV three calls deep. */
#include <stdio.h>

volatile int *volatile nowhere;

/* The empty asm after each call keeps it a call, not a tail jump. */
__attribute__((noinline)) void third_level(void)
{
    *nowhere = 1;
}

__attribute__((noinline)) void second_level(void)
{
    third_level();
    __asm__ volatile("");
}

__attribute__((noinline)) void first_level(void)
{
    second_level();
    __asm__ volatile("");
}

int main(void)
{
    puts("crashing");
    first_level();
    return 0;
}
