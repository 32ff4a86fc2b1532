/* A guest for gdb: a global, a function that changes it, an exit status
 * made from it. Built with -O0 -g so that gdb's view matches the source. */
#include "kvmini.h"

volatile unsigned long counter = 5;

__attribute__((noinline)) void bump(unsigned long by)
{
    counter += by;
}

int main(void)
{
    bump(10);
    bump(100);
    return (int)(counter & 0xff);
}
