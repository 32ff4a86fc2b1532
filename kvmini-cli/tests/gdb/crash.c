/* A guest for gdb that crashes: a write through a null pointer, two calls
 * deep. */
#include "kvmini.h"

volatile unsigned long depth;

__attribute__((noinline)) void fault(volatile int *where)
{
    depth = 2;
    *where = 1;
}

__attribute__((noinline)) void middle(void)
{
    depth = 1;
    fault(0);
}

int main(void)
{
    middle();
    return 0;
}
