/*
 * reserved.c - a ring-0 guest whose own page tables hold entries that
 * the CPU refuses: each sets a bit the SDM reserves (a 1 GiB page whose
 * base has bits 13..29 set, a 2 MiB page with bit 13 set, a page-table
 * entry with XD while EFER.NXE is clear, a PML4 entry with PS set, an
 * address bit at MAXPHYADDR). Next to each, the same mapping without the
 * reserved bit.
 *
 * kvmini must serve a buffer only through a translation the CPU would
 * make: through each bad entry, `display` is a warning and `write` gets
 * -EFAULT. With argv[1] naming a case, the guest touches that mapping
 * itself, so that the test sees what the CPU does. A 1 GiB page is itself
 * reserved on a CPU whose CPUID lacks 1 GiB pages.
 *
 * Ring-0 code runs in KVM's instruction emulator on nested kvm-pvm, which
 * has no SSE: hence general-regs-only.
 */
#pragma GCC target("general-regs-only")
#include "hostile.h"

#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL
#define PTE_PS 0x80ULL
#define PTE_XD (1ULL << 63)

#define GIB (1ULL << 30)

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[512] __attribute__((aligned(4096)));
static uint64_t pt[512] __attribute__((aligned(4096)));
static char page[4096] __attribute__((aligned(4096)));

static const char msg[] = "served\n";

/* MAXPHYADDR, from CPUID 8000_0008h. */
static unsigned phys_bits(void)
{
    uint32_t eax, ebx, ecx, edx;
    __asm__ volatile("cpuid"
                     : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx)
                     : "a"(0x80000008u), "c"(0));
    return eax & 0xFF;
}

/* One mapping: a display and a write through `va`. */
static void through(const char *label, uint64_t va)
{
    display((const char *)(uintptr_t)va);
    say(label, io(KVMINI_PORT_WRITE, 1, va, sizeof msg - 1, 0));
}

int body(void)
{
    const char *mode = first_arg();
    const uint64_t *kvmini_pdpt = (const uint64_t *)(SYSTEM_BASE + 0x1000);
    uint64_t in_page = ADDR(msg) & 0xFFF;

    /* The message sits in `page`, mapped by the 4 KiB entries below. */
    for (size_t i = 0; i < sizeof msg; i++)
        page[in_page + i] = msg[i];

    pml4[0] = ADDR(pdpt) | PTE_P | PTE_RW;
    /* pml4[1] reaches the same PDPT, but with PS set: reserved. */
    pml4[1] = ADDR(pdpt) | PTE_P | PTE_RW | PTE_PS;
    /* The first GiB as kvmini maps it: code, stack, kvmini's own area. */
    pdpt[0] = kvmini_pdpt[0];
    /* 1 GiB pages at physical 0: with bit 13 set, and without. */
    pdpt[1] = PTE_P | PTE_RW | PTE_PS | (1ULL << 13);
    pdpt[2] = PTE_P | PTE_RW | PTE_PS;
    pdpt[3] = ADDR(pd) | PTE_P | PTE_RW;
    /* 2 MiB pages at physical 0: with bit 13 set, and without. */
    pd[0] = PTE_P | PTE_RW | PTE_PS | (1ULL << 13);
    pd[1] = PTE_P | PTE_RW | PTE_PS;
    pd[2] = ADDR(pt) | PTE_P | PTE_RW;
    /* 4 KiB pages: XD (EFER.NXE is clear), an address bit at MAXPHYADDR,
     * and a plain one. */
    pt[0] = ADDR(page) | PTE_P | PTE_RW | PTE_XD;
    pt[1] = ADDR(page) | PTE_P | PTE_RW | (1ULL << phys_bits());
    pt[2] = ADDR(page) | PTE_P | PTE_RW;
    __asm__ volatile("mov %0, %%cr3" : : "r"(ADDR(pml4)) : "memory");

    /* The 2 MiB pages map physical 0..2 MiB: the message must be there. */
    if (ADDR(msg) >= 0x200000)
        return 2;
    uint64_t gib_bad = GIB + ADDR(msg), gib_good = 2 * GIB + ADDR(msg);
    uint64_t mib_bad = 3 * GIB + ADDR(msg);
    uint64_t mib_good = mib_bad + 0x200000;
    uint64_t xd = 3 * GIB + 0x400000 + in_page;
    uint64_t wide = xd + 0x1000, plain = xd + 0x2000;
    uint64_t ps_pml4 = (1ULL << 39) + ADDR(msg);

    uint64_t bad[] = {gib_bad, mib_bad, xd, wide, ps_pml4, gib_good, mib_good, plain};
    const char *names[] = {"gib", "mib", "xd", "wide", "pml4-ps", "gib-plain", "mib-plain", "plain"};
    for (int i = 0; i < 8; i++) {
        if (streq(mode, names[i])) {
            say("loaded",
                *(volatile const char *)(uintptr_t)bad[i]);
            return 1;
        }
    }

    through("1 GiB page, base bit 13 set", gib_bad);
    through("1 GiB page", gib_good);
    through("2 MiB page, bit 13 set", mib_bad);
    through("2 MiB page", mib_good);
    through("4 KiB page, XD without NXE", xd);
    through("4 KiB page, an address bit at MAXPHYADDR", wide);
    through("4 KiB page", plain);
    /* display takes a 32-bit address (EAX): this one is written only. */
    say("PML4 entry with PS set",
        io(KVMINI_PORT_WRITE, 1, ps_pml4, sizeof msg - 1, 0));
    return 0;
}
