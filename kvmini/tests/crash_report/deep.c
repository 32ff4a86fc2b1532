/*
 * A guest that crashes three calls deep: main -> first_level ->
 * second_level -> third_level, which writes to the null page. Built with
 * -DBAD_RBP=value, third_level instead loads that value into RBP and
 * executes ud2, so the frame chain starts wherever the value points (the
 * value LOOP makes a frame that names itself as its caller).
 */
#include "kvmini.h"

volatile int *volatile nowhere;

#ifdef BAD_RBP
#define LOOP 1
#endif

__attribute__((noinline)) void third_level(void)
{
#ifdef BAD_RBP
    volatile uint64_t frame[2];
    uint64_t rbp = BAD_RBP;
    if (rbp == LOOP) {
        frame[0] = (uint64_t)frame;
        frame[1] = (uint64_t)&main + 1;
        rbp = (uint64_t)frame;
    }
    __asm__ volatile("mov %0, %%rbp\n\tud2" : : "r"(rbp) : "memory");
#else
    *nowhere = 1;
#endif
}

/* The empty asm after each call keeps it a call, not a tail jump. */
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
    first_level();
    return 0;
}
