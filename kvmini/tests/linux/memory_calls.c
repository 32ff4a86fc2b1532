/*
 * memory_calls.c - the Linux program of tests/linux_memory.rs, run
 * natively and in kvmini: one use of mprotect, munmap, mmap or mremap per
 * run, chosen by argv[1]. Parts that end with SIGSEGV on Linux print what
 * they did before the fault.
 *
 *   none-again   touches a page, makes it PROT_NONE, touches it again
 *   none-back    the same, then makes it read-write again and touches it
 *   read-only    makes a touched page read-only, then writes to it
 *   munmap       unmaps a touched page, then touches it
 *   exec         runs code written into a PROT_EXEC mapping, and into a
 *                page made executable by mprotect
 *   exec-denied  runs code in a page mapped without PROT_EXEC
 *   mremap       moves a mapping by growing it, keeps its contents
 *   reuse        unmaps a page between two others; the next mapping of
 *                one page takes it, present and zero again
 *   errors       mprotect's and munmap's errno values
 *   fixed ADDR   MAP_FIXED and MAP_FIXED_NOREPLACE of one page at ADDR
 *                (hexadecimal): prints the result or errno
 *   reset        reads a page, makes it PROT_NONE and exits 0
 *   tighten      the first time (no /data/loosened yet): creates that
 *                file, makes a page of read-only data writable and writes
 *                to it; every later time: writes to that page
 *   exhaust      makes one page read-only in each 2 MiB of a 40 MiB
 *                mapping until mprotect fails (in kvmini, when its spare
 *                page tables run out), gives one back and tries again,
 *                then writes to the page it last made read-only
 *   bench KIND N the calls kvmini/benches/protection.rs times, N times:
 *                `page` changes one 4 KiB entry of a page table (and
 *                changes it back), `split` makes one page of a 2 MiB page
 *                read-only (splitting it) and back (joining it again),
 *                `getpid` is the system call alone
 *   file PATH    maps a file it wrote at PATH privately: reads it through
 *                the mapping, writes to the mapping (the file keeps its
 *                bytes), and the errors of a write-only descriptor and an
 *                unaligned offset
 *   shared PATH  MAP_SHARED of the file at PATH: prints the result
 *   tighten-exec the same with a `ret` in read-only data made executable
 *                and called the first time, called every later time
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096

static char page_aligned[PAGE] __attribute__((aligned(PAGE)));
static const char read_only_page[PAGE] __attribute__((aligned(PAGE))) = {1};
/* ret, in a page of read-only data: not executable */
static const unsigned char ret_page[PAGE] __attribute__((aligned(PAGE))) = {0xC3};

static volatile char *map(size_t len, int prot)
{
    void *p = mmap(0, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        printf("mmap failed: %d\n", errno);
        exit(1);
    }
    return p;
}

/* mov eax, 42; ret */
static const unsigned char forty_two[] = {0xB8, 42, 0, 0, 0, 0xC3};

static int call(volatile char *code)
{
    return ((int (*)(void))(uintptr_t)code)();
}

int main(int argc, char **argv)
{
    const char *part = argc > 1 ? argv[1] : "";
    setvbuf(stdout, 0, _IONBF, 0);
    if (strcmp(part, "none-again") == 0 || strcmp(part, "none-back") == 0) {
        volatile char *p = map(PAGE, PROT_READ | PROT_WRITE);
        p[0] = 1;
        printf("mprotect none: %d\n", mprotect((void *)p, PAGE, PROT_NONE));
        if (strcmp(part, "none-back") == 0) {
            printf("mprotect back: %d\n",
                   mprotect((void *)p, PAGE, PROT_READ | PROT_WRITE));
            p[0] = 2;
            printf("touched: %d\n", p[0]);
            return 0;
        }
        p[0] = 2;
        printf("touched after PROT_NONE\n");
    } else if (strcmp(part, "read-only") == 0) {
        volatile char *p = map(PAGE, PROT_READ | PROT_WRITE);
        p[0] = 1;
        printf("mprotect read: %d\n", mprotect((void *)p, PAGE, PROT_READ));
        printf("reads: %d\n", p[0]);
        p[0] = 2;
        printf("wrote to a read-only page\n");
    } else if (strcmp(part, "munmap") == 0) {
        volatile char *p = map(2 * PAGE, PROT_READ | PROT_WRITE);
        p[0] = 1;
        p[PAGE] = 1;
        printf("munmap: %d\n", munmap((void *)p, PAGE));
        printf("the other page: %d\n", p[PAGE]);
        p[0] = 2;
        printf("touched an unmapped page\n");
    } else if (strcmp(part, "exec") == 0) {
        volatile char *x = map(PAGE, PROT_READ | PROT_WRITE | PROT_EXEC);
        memcpy((void *)x, forty_two, sizeof forty_two);
        printf("PROT_EXEC mapping: %d\n", call(x));
        volatile char *y = map(PAGE, PROT_READ | PROT_WRITE);
        memcpy((void *)y, forty_two, sizeof forty_two);
        printf("mprotect exec: %d\n", mprotect((void *)y, PAGE, PROT_READ | PROT_EXEC));
        printf("made executable: %d\n", call(y));
    } else if (strcmp(part, "exec-denied") == 0) {
        volatile char *y = map(PAGE, PROT_READ | PROT_WRITE);
        memcpy((void *)y, forty_two, sizeof forty_two);
        printf("calling\n");
        printf("ran: %d\n", call(y));
    } else if (strcmp(part, "mremap") == 0) {
        volatile char *p = map(2 * PAGE, PROT_READ | PROT_WRITE);
        for (int i = 0; i < 2 * PAGE; i++)
            p[i] = (char)(i * 7);
        /* A mapping below it leaves no room to grow in place. */
        map(PAGE, PROT_READ);
        volatile char *q = mremap((void *)p, 2 * PAGE, 64 * PAGE, MREMAP_MAYMOVE);
        if (q == MAP_FAILED) {
            printf("mremap failed: %d\n", errno);
            return 1;
        }
        int same = 1;
        for (int i = 0; i < 2 * PAGE; i++)
            same &= q[i] == (char)(i * 7);
        q[64 * PAGE - 1] = 1;
        printf("contents kept: %d, grown: %d\n", same, q[64 * PAGE - 1]);
        q = mremap((void *)q, 64 * PAGE, PAGE, 0);
        printf("shrunk in place: %d, first byte %d\n", q != MAP_FAILED, q[1]);
    } else if (strcmp(part, "reuse") == 0) {
        volatile char *p = map(3 * PAGE, PROT_READ | PROT_WRITE);
        p[PAGE] = 9;
        printf("munmap: %d\n", munmap((void *)(p + PAGE), PAGE));
        volatile char *q = map(PAGE, PROT_READ | PROT_WRITE);
        printf("reused: %d, reads %d\n", q == p + PAGE, q[0]);
        q[0] = 3;
        printf("writes %d\n", q[0]);
    } else if (strcmp(part, "errors") == 0) {
        volatile char *p = map(2 * PAGE, PROT_READ | PROT_WRITE);
        munmap((void *)(p + PAGE), PAGE);
        long r;
        /* musl's mprotect rounds the address down: the call itself. */
        r = syscall(SYS_mprotect, p + 1, PAGE, PROT_READ);
        printf("unaligned: %ld %d\n", r, r ? errno : 0);
        r = mprotect((void *)p, PAGE, 0x40);
        printf("unknown bits: %ld %d\n", r, r ? errno : 0);
        r = mprotect((void *)p, 2 * PAGE, PROT_READ);
        printf("past the mapping: %ld %d\n", r, r ? errno : 0);
        r = munmap((void *)(p + 1), PAGE);
        printf("munmap unaligned: %ld %d\n", r, r ? errno : 0);
        r = munmap((void *)p, 0);
        printf("munmap nothing: %ld %d\n", r, r ? errno : 0);
    } else if (strcmp(part, "fixed") == 0 && argc > 2) {
        uintptr_t at = strtoull(argv[2], 0, 16);
        void *r = mmap((void *)at, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        printf("MAP_FIXED: %s %d\n", r == MAP_FAILED ? "failed" : "mapped",
               r == MAP_FAILED ? errno : 0);
        r = mmap((void *)at, PAGE, PROT_READ,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        printf("MAP_FIXED_NOREPLACE: %s %d\n", r == MAP_FAILED ? "failed" : "mapped",
               r == MAP_FAILED ? errno : 0);
    } else if (strcmp(part, "reset") == 0) {
        printf("reads %d\n", ((volatile char *)page_aligned)[0]);
        printf("mprotect none: %d\n", mprotect(page_aligned, PAGE, PROT_NONE));
    } else if (strcmp(part, "bench") == 0 && argc > 3) {
        const uintptr_t huge = 2 << 20;
        long n = strtol(argv[3], 0, 10);
        volatile char *p = map(3 * huge, PROT_READ | PROT_WRITE);
        char *region = (char *)(((uintptr_t)p + huge - 1) & ~(huge - 1));
        if (strcmp(argv[2], "page") == 0) {
            /* A page kept read-only keeps the region split. */
            mprotect(region, PAGE, PROT_READ);
            for (long i = 0; i < n; i++) {
                mprotect(region + PAGE, PAGE, PROT_READ);
                mprotect(region + PAGE, PAGE, PROT_READ | PROT_WRITE);
            }
        } else if (strcmp(argv[2], "split") == 0) {
            for (long i = 0; i < n; i++) {
                mprotect(region, PAGE, PROT_READ);
                mprotect(region, PAGE, PROT_READ | PROT_WRITE);
            }
        } else {
            for (long i = 0; i < 2 * n; i++)
                syscall(SYS_getpid);
        }
        printf("done\n");
    } else if (strcmp(part, "file") == 0 && argc > 2) {
        static const char text[] = "hello, mapped file\n";
        int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, text, sizeof text - 1) != sizeof text - 1)
            return 3;
        char *m = mmap(0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            printf("mmap failed: %d\n", errno);
            return 1;
        }
        printf("through the mapping: %.19s", m);
        printf("after the end: %d\n", m[100]);
        m[0] = 'J';
        char back[20] = {0};
        if (pread(fd, back, 19, 0) != 19)
            return 4;
        printf("mapping: %.5s, file: %.5s\n", m, back);
        close(fd);
        fd = open(argv[2], O_WRONLY);
        void *r = mmap(0, PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
        printf("write-only: %d\n", r == MAP_FAILED ? errno : 0);
        close(fd);
        fd = open(argv[2], O_RDONLY);
        r = mmap(0, PAGE, PROT_READ, MAP_PRIVATE, fd, 1);
        printf("unaligned offset: %d\n", r == MAP_FAILED ? errno : 0);
        r = mmap(0, PAGE, PROT_READ, MAP_PRIVATE, 99, 0);
        printf("not open: %d\n", r == MAP_FAILED ? errno : 0);
    } else if (strcmp(part, "shared") == 0 && argc > 2) {
        int fd = open(argv[2], O_RDWR | O_CREAT, 0644);
        void *r = mmap(0, PAGE, PROT_READ, MAP_SHARED, fd, 0);
        printf("MAP_SHARED: %d\n", r == MAP_FAILED ? errno : 0);
    } else if (strcmp(part, "exhaust") == 0) {
        const uintptr_t huge = 2 << 20;
        size_t len = 40 << 20;
        volatile char *p = map(len, PROT_READ | PROT_WRITE);
        uintptr_t first = ((uintptr_t)p + huge - 1) & ~(huge - 1);
        uintptr_t a = first;
        int n = 0, err = 0;
        for (; a + PAGE <= (uintptr_t)p + len; a += huge) {
            if (mprotect((void *)a, PAGE, PROT_READ) != 0) {
                err = errno;
                break;
            }
            n++;
        }
        printf("protected %d, then errno %d\n", n, err);
        ((volatile char *)a)[0] = 1;
        printf("still writable\n");
        printf("given back: %d\n",
               mprotect((void *)first, PAGE, PROT_READ | PROT_WRITE));
        printf("then: %d\n", mprotect((void *)a, PAGE, PROT_READ));
        ((volatile char *)a)[0] = 2;
        printf("wrote to a read-only page\n");
    } else if (strcmp(part, "tighten") == 0) {
        volatile char *p = (volatile char *)(uintptr_t)read_only_page;
        FILE *marker = fopen("/data/loosened", "r");
        if (!marker) {
            marker = fopen("/data/loosened", "w");
            if (!marker)
                return 3;
            fclose(marker);
            printf("mprotect write: %d\n",
                   mprotect((void *)p, PAGE, PROT_READ | PROT_WRITE));
            p[0] = 5;
            printf("loosened: %d\n", p[0]);
            return 0;
        }
        fclose(marker);
        printf("writing\n");
        p[0] = 6;
        printf("wrote to read-only data\n");
    } else if (strcmp(part, "tighten-exec") == 0) {
        volatile char *p = (volatile char *)(uintptr_t)ret_page;
        FILE *marker = fopen("/data/loosened", "r");
        if (!marker) {
            marker = fopen("/data/loosened", "w");
            if (!marker)
                return 3;
            fclose(marker);
            printf("mprotect exec: %d\n",
                   mprotect((void *)p, PAGE, PROT_READ | PROT_EXEC));
            ((void (*)(void))(uintptr_t)p)();
            printf("called\n");
            return 0;
        }
        fclose(marker);
        printf("calling\n");
        ((void (*)(void))(uintptr_t)p)();
        printf("ran read-only data\n");
    } else {
        printf("unknown part\n");
        return 2;
    }
    return 0;
}
