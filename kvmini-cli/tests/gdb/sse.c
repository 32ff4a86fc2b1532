/* A guest for gdb's SSE registers: xmm0 holds a known value at the
 * breakpoint in stop_here; what gdb writes into xmm1 there comes back as
 * the exit status. Built with -O0 -g; stop_here touches no SSE register. */
#include "kvmini.h"

__attribute__((noinline)) void stop_here(void)
{
    __asm__ volatile("");
}

int main(void)
{
    unsigned long long seen;
    __asm__ volatile("movq %0, %%xmm0" : : "r"(0x1122334455667788ULL) : "xmm0");
    __asm__ volatile("pxor %%xmm1, %%xmm1" : : : "xmm1");
    stop_here();
    __asm__ volatile("movq %%xmm1, %0" : "=r"(seen));
    /* The status is the high half's low byte, so a write that misses the
     * register or its upper half gives another. */
    return (int)((seen >> 32) & 0xff);
}
