/*
 * longstring.c - a ring-3 guest that fills 250 MiB of its memory, from
 * 2 MiB up, with 'x' and no NUL, then asks kvmini to display it, then
 * exits with 7. The test runs it with 256 MiB of guest memory and an
 * address-space limit on kvmini that a copy of the string would not fit
 * in: kvmini must write it straight from guest memory.
 */
#include "hostile.h"

#define START 0x200000UL
#define LEN (250UL << 20)

int body(void)
{
    memset((void *)START, 'x', LEN);
    fill(START + LEN, '\0', 1);
    display((const char *)START);
    return 7;
}
