/* A guest for gdb that runs until it is interrupted. */
#include "kvmini.h"

volatile unsigned long spins;

int main(void)
{
    for (;;)
        spins++;
}
