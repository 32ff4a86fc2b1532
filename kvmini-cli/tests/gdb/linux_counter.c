/* A Linux program for gdb: a global, a function that changes it, an exit
 * status made from it, and output through the C library. */
#include <stdio.h>

volatile unsigned long counter = 5;

__attribute__((noinline)) void bump(unsigned long by)
{
    counter += by;
}

int main(void)
{
    bump(10);
    printf("counter %lu\n", counter);
    bump(100);
    return (int)(counter & 0xff);
}
