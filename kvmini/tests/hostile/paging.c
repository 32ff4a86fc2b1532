/*
 * paging.c - a ring-0 guest with page tables of its own: entries that
 * point beyond guest memory, a table that points back at itself, a
 * recursive PML4 slot, a mapping changed between two calls, a read-only
 * page, and (chosen by argv[1]) a store or load through an entry whose
 * page is beyond guest memory, or an argument block on a read-only page.
 *
 * kvmini translates every guest address through the tables in the guest's
 * CR3 at the time of the call, as the CPU does, and checks that every
 * table and page it reaches is guest memory. The test grants a directory
 * (for scratch.bin) and runs the guest at ring 0 with 4 MiB.
 *
 * Ring-0 code runs in KVM's instruction emulator on nested kvm-pvm, which
 * has no SSE: hence general-regs-only.
 */
#pragma GCC target("general-regs-only")
#include "hostile.h"

#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL

/* The guest's own mappings start at 1 GiB, above all of guest memory. */
#define WINDOW 0x40000000UL
/* Through pdpt[3], which points at pdpt itself: PD index 3 and PT index 3
 * each go through pdpt[3] again, so this address maps to pdpt's page. */
#define SELF_MAPPED 0xC0603000UL
/* Through pml4[511], which points at pml4: pml4's own page. */
#define RECURSIVE 0xFFFFFFFFFFFFF000ULL
/* Past the end of the 4 MiB of guest memory. */
#define BEYOND_PAGE 0x7FF000ULL
#define BEYOND_TABLE 0x100000000ULL

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd1[512] __attribute__((aligned(4096)));
static uint64_t pt1[512] __attribute__((aligned(4096)));
static char page_a[4096] __attribute__((aligned(4096)));
static char page_b[4096] __attribute__((aligned(4096)));
static char page_ro[4096] __attribute__((aligned(4096)));
static char back[64];

static void set_text(char *page, const char *s)
{
    size_t n = 0;
    put_str(page, &n, 4096, s);
    page[n] = '\0';
}

static inline void invlpg(uint64_t va)
{
    __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
}

/* kvmini copies `len` bytes from `va` to scratch.bin and back into
 * `back`; the guest compares them with what it reads at `va` itself. The
 * CPU reads first: its walk sets the accessed bits of the entries, which
 * are the bytes being compared. */
static void through_kvmini(const char *label, int fd, uint64_t va,
                           const void *expected, size_t len)
{
    (void)*(volatile const char *)(uintptr_t)va;
    say(label, io(KVMINI_PORT_PWRITE, fd, va, len, 0));
    long got = pread(fd, back, len, 0);
    int cpu_agrees = memcmp((const void *)(uintptr_t)va, expected, len) == 0;
    int kvmini_agrees = got == (long)len && memcmp(back, expected, len) == 0;
    say("  the CPU and kvmini both see the table", cpu_agrees && kvmini_agrees);
}

int body(void)
{
    const char *mode = first_arg();
    const uint64_t *kvmini_pdpt = (const uint64_t *)(SYSTEM_BASE + 0x1000);

    set_text(page_a, "first mapping\n");
    set_text(page_b, "second mapping\n");
    set_text(page_ro, "read-only page\n");
    pml4[0] = ADDR(pdpt) | PTE_P | PTE_RW;
    pml4[511] = ADDR(pml4) | PTE_P | PTE_RW;
    /* The first GiB as kvmini maps it: code, stack, kvmini's own area. */
    pdpt[0] = kvmini_pdpt[0];
    pdpt[1] = ADDR(pd1) | PTE_P | PTE_RW;
    pdpt[2] = BEYOND_TABLE | PTE_P | PTE_RW;
    pdpt[3] = ADDR(pdpt) | PTE_P | PTE_RW;
    pd1[0] = ADDR(pt1) | PTE_P | PTE_RW;
    pt1[0] = ADDR(page_a) | PTE_P | PTE_RW;
    pt1[1] = BEYOND_PAGE | PTE_P | PTE_RW;
    pt1[2] = ADDR(page_ro) | PTE_P;
    __asm__ volatile("mov %0, %%cr3" : : "r"(ADDR(pml4)) : "memory");

    if (streq(mode, "mmio-write")) {
        *(volatile char *)(WINDOW + 0x1000) = 1;
        say_text("stored beyond memory", "and went on");
        return 1;
    }
    if (streq(mode, "mmio-read")) {
        say("loaded beyond memory", *(volatile char *)(WINDOW + 0x1000));
        return 1;
    }
    if (streq(mode, "ro-block")) {
        /* A write(1, ...) block that kvmini can read but not write back. */
        static const char msg[] = "the call ran\n";
        struct kvmini_io_args *block = (struct kvmini_io_args *)page_ro;
        *block = (struct kvmini_io_args){
            .fd = 1, .buf = ADDR(msg), .len = sizeof msg - 1, .result = 0};
        say("write with its block on a read-only page",
            call_rax(KVMINI_PORT_WRITE, WINDOW + 0x2000));
        return 0;
    }

    /* kvmini follows the mapping of the moment. */
    display((const char *)WINDOW);
    pt1[0] = ADDR(page_b) | PTE_P | PTE_RW;
    invlpg(WINDOW);
    display((const char *)WINDOW);

    /* Tables and pages beyond guest memory: a warning, and the guest goes on. */
    display((const char *)0x80000000UL);
    display((const char *)(WINDOW + 0x1000));
    say("write running from a mapped page into one beyond memory",
        io(KVMINI_PORT_WRITE, 1, WINDOW + 0x1000 - 4, 8, 0));

    /* Read-only at ring 0 too (CR0.WP). */
    say("write from the read-only page",
        io(KVMINI_PORT_WRITE, 1, WINDOW + 0x2000, 15, 0));
    int fd = open("/scratch.bin", O_RDWR | O_CREAT, 0644);
    say("open scratch.bin", fd);
    say("read into the read-only page",
        io(KVMINI_PORT_READ, fd, WINDOW + 0x2000, 4, 0));

    /* Loops in the tables end after four levels, for the CPU and kvmini. */
    through_kvmini("pwrite from the self-mapped pdpt", fd, SELF_MAPPED, pdpt,
                   32);
    through_kvmini("pwrite from the recursive pml4 slot", fd, RECURSIVE, pml4,
                   32);
    return 0;
}
