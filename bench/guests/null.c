/*
 * null: CALLS getNumExits hypercalls (one exit each), then exits 0: the
 * null hypercall of a ring-3 ELF guest, whose memory has the permissions
 * of its segments and a stack guard (docs/security.md).
 *
 * Built by kvmini/benches/protection.rs with the C SDK's command line.
 */
#include "kvmini.h"

#define CALLS 2000

int main(void)
{
    uint32_t last = 0;
    for (int i = 0; i < CALLS; i++)
        last = getNumExits();
    return last >= CALLS ? 0 : 1;
}
