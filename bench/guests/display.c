/*
 * display: prints a 64 KiB string (65535 bytes, 64-byte lines of 'a's, and
 * its NUL) COUNT times, each with one display() hypercall, so one exit per
 * 64 KiB; exits 0.
 *
 * Built by kvmini/benches/io.rs with the C SDK's command line.
 */
#include "kvmini.h"

#define STRING (64UL << 10)
#define COUNT 1024

static char s[STRING] __attribute__((aligned(4096)));

int main(void)
{
    memset(s, 'a', STRING - 1);
    for (unsigned long i = 63; i < STRING - 1; i += 64)
        s[i] = '\n';
    s[STRING - 1] = '\0';
    for (int i = 0; i < COUNT; i++)
        display(s);
    return 0;
}
