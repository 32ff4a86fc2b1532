/*
 * alias.c - a ring-0 guest whose page tables map one 4 KiB page of 'A's
 * at every page from 1 GiB to the top of the lower canonical half
 * (128 TiB): every entry of one PDPT, one PD and one PT points at the same
 * next level. Guest memory stays 4 MiB; its virtual address space is
 * 2^47 bytes of 'A' with no NUL.
 *
 * argv[1] "display": display(1 GiB), a string with no end short of the
 * non-canonical hole. argv[1] "write": write(1, 1 GiB, 2^46). Either way
 * the guest then spins, so that a kvmini that bounds the call ends the
 * run at its timeout.
 */
#pragma GCC target("general-regs-only")
#include "hostile.h"

#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL
#define WINDOW 0x40000000UL

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t alias_pdpt[512] __attribute__((aligned(4096)));
static uint64_t alias_pd[512] __attribute__((aligned(4096)));
static uint64_t alias_pt[512] __attribute__((aligned(4096)));
static char page[4096] __attribute__((aligned(4096)));

int body(void)
{
    const char *mode = first_arg();
    const uint64_t *kvmini_pdpt = (const uint64_t *)(SYSTEM_BASE + 0x1000);
    fill(ADDR(page), 'A', sizeof page);
    for (int i = 0; i < 512; i++) {
        pml4[i] = i == 0 ? (ADDR(pdpt) | PTE_P | PTE_RW)
                  : i < 256 ? (ADDR(alias_pdpt) | PTE_P | PTE_RW)
                            : 0;
        pdpt[i] = i == 0 ? kvmini_pdpt[0] : (ADDR(alias_pd) | PTE_P | PTE_RW);
        alias_pdpt[i] = ADDR(alias_pd) | PTE_P | PTE_RW;
        alias_pd[i] = ADDR(alias_pt) | PTE_P | PTE_RW;
        alias_pt[i] = ADDR(page) | PTE_P | PTE_RW;
    }
    __asm__ volatile("mov %0, %%cr3" : : "r"(ADDR(pml4)) : "memory");
    say_text("aliased", mode);
    if (streq(mode, "display"))
        display((const char *)WINDOW);
    else if (streq(mode, "write"))
        say("write", io(KVMINI_PORT_WRITE, 1, WINDOW, 1ULL << 46, 0));
    for (;;) {
    }
}
