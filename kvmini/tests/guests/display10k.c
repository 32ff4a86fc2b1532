/*
 * display() of a 10,000-byte string in one exit. The string starts 100
 * bytes before a page boundary, so it spans four pages that kvmini must
 * walk one after the other. Byte i is '!' + i % 94: printable, never NUL
 * before the end. The test builds the same bytes and compares.
 *
 * Expected stdout: the 10,000 bytes, then "2\n" (the display itself and
 * the second getNumExits). Exits: getNumExits, display, getNumExits,
 * printVal, exit(0) = 5.
 */
#include "kvmini.h"

#define LEN 10000u
#define START (4096u - 100u)

static char pages[4 * 4096] __attribute__((aligned(4096)));

int main(void)
{
    char *s = pages + START;
    for (uint32_t i = 0; i < LEN; i++)
        s[i] = (char)('!' + i % 94u);
    s[LEN] = '\0';

    uint32_t a = getNumExits();
    display(s);
    uint32_t b = getNumExits();
    printVal(b - a);
    return 0;
}
