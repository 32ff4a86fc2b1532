/*
 * A write whose buffer is scattered over more guest-physical pieces than
 * one host writev takes, for kvmini/tests/grants.rs. A ring-0 guest (4 MiB,
 * --ring 0) with page tables of its own maps 8 MiB at 1 GiB: 2048 pages
 * that alternate between two physical pages, 'a' and 'c', so that no two
 * neighbours are physically contiguous and every page is one piece. The
 * buffer is 4 MiB (all of guest memory, the most one call takes) from
 * half a page in: 1025 pieces, one more than a writev takes. The test
 * runs kvmini under a file size limit and compares the lines.
 */
#pragma GCC target("general-regs-only")
#include "hostile.h"

#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL
#define WINDOW 0x40000000UL
#define PAGES 2048UL
#define BUF (WINDOW + 2048)
#define LEN (4UL << 20)

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[512] __attribute__((aligned(4096)));
static uint64_t pt[PAGES] __attribute__((aligned(4096)));
static char page_a[4096] __attribute__((aligned(4096)));
static char spacer[4096] __attribute__((aligned(4096), used));
static char page_c[4096] __attribute__((aligned(4096)));

int body(void)
{
    const uint64_t *kvmini_pdpt = (const uint64_t *)(SYSTEM_BASE + 0x1000);
    fill(ADDR(page_a), 'a', sizeof page_a);
    fill(ADDR(page_c), 'c', sizeof page_c);
    for (int i = 0; i < 512; i++) {
        pml4[i] = i == 0 ? (ADDR(pdpt) | PTE_P | PTE_RW) : 0;
        pdpt[i] = i == 0 ? kvmini_pdpt[0]
                  : i == 1 ? (ADDR(pd) | PTE_P | PTE_RW)
                           : 0;
        pd[i] = (unsigned)i < PAGES / 512
                    ? (ADDR(&pt[i * 512]) | PTE_P | PTE_RW)
                    : 0;
    }
    for (unsigned long i = 0; i < PAGES; i++)
        pt[i] = (i % 2 ? ADDR(page_c) : ADDR(page_a)) | PTE_P | PTE_RW;
    __asm__ volatile("mov %0, %%cr3" : : "r"(ADDR(pml4)) : "memory");

    long fd = open("/out.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    say("open", fd < 0 ? fd : 0);
    say("write", io(KVMINI_PORT_WRITE, (int)fd, BUF, LEN, 0));
    say("offset", lseek((int)fd, 0, SEEK_CUR));
    say("write again", io(KVMINI_PORT_WRITE, (int)fd, WINDOW, 4096, 0));
    long fd2 = open("/p.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    say("pwrite", io(KVMINI_PORT_PWRITE, (int)fd2, BUF, LEN, 0));
    say("offset", lseek((int)fd2, 0, SEEK_CUR));
    return 0;
}
