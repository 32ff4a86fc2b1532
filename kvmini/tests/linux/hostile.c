/* A static Linux program built with musl-gcc that attacks kvmini's
 * system-call port: bad pointers in every pointer argument, lengths near
 * 2^64, brk below its start, mmap past guest memory, a flood of unknown
 * calls, and forged `out`s to the port with every RFLAGS bit in R11. Each
 * check prints one line; the test compares them all. The first argument
 * picks the forged return with a non-canonical RCX, which ends the run. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long raw(long nr, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

#define CHECK(name, expr) printf("%s=%ld\n", name, (long)(expr))

int main(int argc, char **argv) {
    /* Addresses no call may use: the null page, kvmini's own area (the top
     * 64 KiB of the 64 MiB guest), past guest memory, non-canonical, and
     * a buffer that wraps around the top of the address space. */
    const long bad[] = {0, 0x3ff0000, 0x3fff000, 0x10000000, (long)0x8000000000000000ul, -16};
    const int nbad = sizeof bad / sizeof bad[0];
    char ok[64] = "hello\n";
    int worst = 0;
    for (int i = 0; i < nbad; i++) {
        long p = bad[i];
        long r[] = {
            raw(SYS_write, 1, p, 8, 0, 0, 0),
            raw(SYS_read, 0, p, 8, 0, 0, 0),
            raw(SYS_open, p, 0, 0, 0, 0, 0),
            raw(SYS_openat, -100, p, 0, 0, 0, 0),
            raw(SYS_stat, p, (long)ok, 0, 0, 0, 0),
            raw(SYS_fstat, 1, p, 0, 0, 0, 0),
            raw(SYS_newfstatat, -100, p, (long)ok, 0, 0, 0),
            raw(SYS_writev, 1, p, 1, 0, 0, 0),
            raw(SYS_readv, 0, p, 1, 0, 0, 0),
            raw(SYS_uname, p, 0, 0, 0, 0, 0),
            raw(SYS_getrandom, p, 16, 0, 0, 0, 0),
            raw(SYS_rt_sigaction, 10, p, 0, 8, 0, 0),
            raw(SYS_rt_sigaction, 10, 0, p, 8, 0, 0),
            raw(SYS_rt_sigprocmask, 0, p, 0, 8, 0, 0),
            raw(SYS_rt_sigprocmask, 0, 0, p, 8, 0, 0),
            raw(SYS_prlimit64, 0, 3, 0, p, 0, 0),
            raw(SYS_arch_prctl, 0x1003, p, 0, 0, 0, 0),
        };
        for (unsigned k = 0; k < sizeof r / sizeof r[0]; k++) {
            /* NULL is "none" for the signal calls' and prlimit's pointers. */
            if (p == 0 && k >= 11 && k <= 15 && r[k] == 0)
                continue;
            if (r[k] != -EFAULT) {
                printf("bad pointer %d call %u: %ld\n", i, k, r[k]);
                worst = 1;
            }
        }
    }
    printf("efault=%s\n", worst ? "no" : "all");
    /* An iovec whose buffer is bad. */
    long iov[2] = {0x3ff0000, 8};
    CHECK("writev_bad_base", raw(SYS_writev, 1, (long)iov, 1, 0, 0, 0));
    CHECK("writev_too_many", raw(SYS_writev, 1, (long)iov, 1025, 0, 0, 0));
    /* Lengths near 2^64. */
    CHECK("write_huge", raw(SYS_write, 1, (long)ok, -1, 0, 0, 0));
    CHECK("read_huge", raw(SYS_read, 0, (long)ok, -2, 0, 0, 0));
    CHECK("getrandom_huge", raw(SYS_getrandom, (long)ok, -1, 0, 0, 0, 0));
    long iov2[4] = {(long)ok, 1, (long)ok, -1};
    CHECK("writev_total_overflows", raw(SYS_writev, 1, (long)iov2, 2, 0, 0, 0));
    /* brk below its start leaves it. */
    long start = raw(SYS_brk, 0, 0, 0, 0, 0, 0);
    CHECK("brk_below_start", raw(SYS_brk, start - 4096, 0, 0, 0, 0, 0) == start);
    CHECK("brk_grows", raw(SYS_brk, start + 8192, 0, 0, 0, 0, 0) == start + 8192);
    /* mmap past guest memory. */
    CHECK("mmap_128M", raw(SYS_mmap, 0, 128l << 20, 3, 0x22, -1, 0));
    CHECK("mmap_huge", raw(SYS_mmap, 0, -4096, 3, 0x22, -1, 0));
    long m = raw(SYS_mmap, 0, 1 << 20, 3, 0x22, -1, 0);
    CHECK("mmap_1M_zeroed", m > 0 && ((char *)m)[4095] == 0 && ((char *)m)[0] == 0);
    CHECK("munmap", raw(SYS_munmap, m, 1 << 20, 0, 0, 0, 0));
    CHECK("arch_set_fs_noncanonical", raw(SYS_arch_prctl, 0x1002, (long)0x8000000000000000ul, 0, 0, 0, 0));
    /* A flood of unknown calls (above every number kvmini serves). */
    long enosys = 0;
    for (long nr = 460; nr < 20460; nr++)
        enosys += raw(nr, 1, 2, 3, 4, 5, 6) == -ENOSYS;
    enosys += raw(-1, 0, 0, 0, 0, 0, 0) == -ENOSYS;
    CHECK("enosys", enosys);
    /* A forged `out` to the port: R11 with every bit set, RCX the label. */
    unsigned long flags;
    long nr = SYS_getpid;
    __asm__ volatile("lea 1f(%%rip), %%rcx\n\t"
                     "mov $-1, %%r11\n\t"
                     "out %%al, $0xe8\n\t"
                     "1: pushfq\n\t"
                     "pop %0\n\t"
                     /* What the program set (AC, DF) is its own: clear them. */
                     "push $0x3202\n\t"
                     "popfq"
                     : "=r"(flags), "+a"(nr)
                     :
                     : "rcx", "r11", "memory");
    CHECK("forged_getpid", nr);
    /* TF, NT, RF and VM never come back; the arithmetic flags, DF and OF do. */
    printf("flags_forbidden=%#lx\n", flags & 0x34100ul);
    printf("flags_restored=%#lx\n", flags & 0xcd5ul);
    if (argc > 1) {
        /* The same with a non-canonical RCX: the run ends here. */
        fflush(stdout);
        __asm__ volatile("mov $0x800000000000, %%rcx\n\t"
                         "mov $-1, %%r11\n\t"
                         "mov $39, %%eax\n\t"
                         "out %%al, $0xe8"
                         :
                         :
                         : "rax", "rcx", "r11", "memory");
        printf("still running\n");
    }
    return 0;
}
