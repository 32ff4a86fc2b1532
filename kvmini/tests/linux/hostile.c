/* A static Linux program built with musl-gcc that attacks kvmini's
 * system-call port: bad pointers in every pointer argument, lengths near
 * 2^64, brk below its start, mmap past guest memory, a flood of unknown
 * calls, and forged `out`s to the port with every RFLAGS bit in R11. Each
 * check prints one line; the test compares them all. It expects a
 * writable grant at /data. The first argument picks how the run ends,
 * after those thousands of calls: "x" a forged return with a
 * non-canonical RCX; "read_area" and "write_area" an access to kvmini's
 * area; "hlt", "cli_spin", "cr3", "wrmsr", "lgdt", "in" and "out" those
 * instructions (the two last on a port that is not kvmini's); "sleep" a
 * sleep of 600 s. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
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
    long iov_ok[2] = {(long)ok, 8};
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
    /* The other served calls that take a pointer, each pointer in turn
     * (the others valid): `null_ok` marks a pointer for which NULL means
     * "none" to Linux. */
    int file = open("/data/f", O_RDWR | O_CREAT, 0644);
    int dir = open("/data", O_RDONLY | O_DIRECTORY);
    struct pollfd out = {.fd = 1, .events = POLLOUT};
    long zero[2] = {0, 0};
    long path = (long)"/data/f", none = (long)"/data/none", root = (long)"/";
    for (int i = 0; i < nbad; i++) {
        long p = bad[i];
        struct {
            long r;
            int null_ok;
        } r[] = {
/* NULL where Linux takes it as "none" is not tried: some would wait. */
#define C(call, null_ok) {(p == 0 && (null_ok)) ? 0 : (call), (null_ok)}
            C(raw(SYS_pread64, file, p, 8, 0, 0, 0), 0),
            C(raw(SYS_pwrite64, file, p, 8, 0, 0, 0), 0),
            C(raw(SYS_readv, file, p, 1, 0, 0, 0), 0),
            C(raw(SYS_access, p, 0, 0, 0, 0, 0), 0),
            C(raw(SYS_faccessat, -100, p, 0, 0, 0, 0), 0),
            C(raw(SYS_faccessat2, -100, p, 0, 0, 0, 0), 0),
            C(raw(SYS_mkdir, p, 0700, 0, 0, 0, 0), 0),
            C(raw(SYS_mkdirat, -100, p, 0700, 0, 0, 0), 0),
            C(raw(SYS_unlink, p, 0, 0, 0, 0, 0), 0),
            C(raw(SYS_unlinkat, -100, p, 0, 0, 0, 0), 0),
            C(raw(SYS_rmdir, p, 0, 0, 0, 0, 0), 0),
            C(raw(SYS_rename, p, none, 0, 0, 0, 0), 0),
            C(raw(SYS_rename, path, p, 0, 0, 0, 0), 0),
            C(raw(SYS_renameat, -100, path, -100, p, 0, 0), 0),
            C(raw(SYS_renameat2, -100, p, -100, none, 0, 0), 0),
            C(raw(SYS_readlink, p, (long)ok, 8, 0, 0, 0), 0),
            C(raw(SYS_readlink, (long)"/proc/self/exe", p, 8, 0, 0, 0), 0),
            C(raw(SYS_readlinkat, -100, p, (long)ok, 8, 0, 0), 0),
            C(raw(SYS_getcwd, p, 64, 0, 0, 0, 0), 0),
            C(raw(SYS_chdir, p, 0, 0, 0, 0, 0), 0),
            C(raw(SYS_getdents64, dir, p, 64, 0, 0, 0), 0),
            C(raw(SYS_statx, -100, p, 0, 0x7ff, (long)ok, 0), 0),
            C(raw(SYS_statx, -100, root, 0, 0x7ff, p, 0), 0),
            C(raw(SYS_lstat, p, (long)ok, 0, 0, 0, 0), 0),
            C(raw(SYS_stat, root, p, 0, 0, 0, 0), 0),
            C(raw(SYS_newfstatat, -100, root, p, 0, 0, 0), 0),
            C(raw(SYS_newfstatat, file, p, (long)ok, 0x1000, 0, 0), 0),
            C(raw(SYS_clock_gettime, 0, p, 0, 0, 0, 0), 0),
            C(raw(SYS_clock_getres, 0, p, 0, 0, 0, 0), 1),
            C(raw(SYS_gettimeofday, p, 0, 0, 0, 0, 0), 1),
            C(raw(SYS_gettimeofday, 0, p, 0, 0, 0, 0), 1),
            C(raw(SYS_time, p, 0, 0, 0, 0, 0), 1),
            C(raw(SYS_nanosleep, p, 0, 0, 0, 0, 0), 0),
            C(raw(SYS_clock_nanosleep, 1, 0, p, 0, 0, 0), 0),
            C(raw(SYS_poll, p, 1, 0, 0, 0, 0), 0),
            C(raw(SYS_ppoll, p, 1, 0, 0, 8, 0), 0),
            C(raw(SYS_ppoll, (long)&out, 1, p, 0, 8, 0), 1),
            C(raw(SYS_select, 2, p, 0, 0, (long)&zero, 0), 1),
            C(raw(SYS_select, 2, 0, p, 0, (long)&zero, 0), 1),
            C(raw(SYS_select, 2, 0, 0, 0, p, 0), 1),
            C(raw(SYS_pselect6, 2, 0, 0, p, 0, 0), 1),
            C(raw(SYS_sigaltstack, p, 0, 0, 0, 0, 0), 1),
            C(raw(SYS_sigaltstack, 0, p, 0, 0, 0, 0), 1),
            C(raw(SYS_rt_sigpending, p, 8, 0, 0, 0, 0), 0),
            C(raw(SYS_sched_getaffinity, 0, 8, p, 0, 0, 0), 0),
            C(raw(SYS_sysinfo, p, 0, 0, 0, 0, 0), 0),
            C(raw(SYS_prctl, 15, p, 0, 0, 0, 0), 0),
            C(raw(SYS_prctl, 16, p, 0, 0, 0, 0), 0),
            C(raw(SYS_prlimit64, 0, 3, p, 0, 0, 0), 1),
            C(raw(SYS_pipe, p, 0, 0, 0, 0, 0), 0),
            C(raw(SYS_pipe2, p, 0, 0, 0, 0, 0), 0),
            C(raw(SYS_chmod, p, 0644, 0, 0, 0, 0), 0),
            C(raw(SYS_fchmodat, -100, p, 0644, 0, 0, 0), 0),
            C(raw(SYS_chown, p, -1, -1, 0, 0, 0), 0),
            C(raw(SYS_lchown, p, -1, -1, 0, 0, 0), 0),
            C(raw(SYS_fchownat, -100, p, -1, -1, 0, 0), 0),
            C(raw(SYS_truncate, p, 0, 0, 0, 0, 0), 0),
            C(raw(SYS_utimensat, -100, path, p, 0, 0, 0), 1),
            C(raw(SYS_utimes, p, 0, 0, 0, 0, 0), 0),
            C(raw(SYS_futex, p, 0, 0, 0, 0, 0), 0),
            C(raw(SYS_open, p, O_CREAT | O_WRONLY, 0644, 0, 0, 0), 0),
        };
        for (unsigned k = 0; k < sizeof r / sizeof r[0]; k++) {
            if (p == 0 && r[k].null_ok)
                continue;
            if (r[k].r != -EFAULT) {
                printf("bad pointer %d call %u: %ld\n", i, 100 + k, r[k].r);
                worst = 1;
            }
        }
    }
    printf("efault=%s\n", worst ? "no" : "all");
    /* The file is still there, by its name (no rename went half way). */
    CHECK("file_kept", raw(SYS_access, path, 0, 0, 0, 0, 0));
    CHECK("readv_too_many", raw(SYS_readv, 0, (long)iov_ok, 1025, 0, 0, 0));
    /* Lengths near 2^64 in the other calls that take one. */
    CHECK("pread_huge", raw(SYS_pread64, file, (long)ok, -1, 0, 0, 0));
    CHECK("pwrite_huge", raw(SYS_pwrite64, file, (long)ok, -1, 0, 0, 0));
    CHECK("getdents_huge", raw(SYS_getdents64, dir, (long)ok, -1, 0, 0, 0));
    CHECK("readlink_huge", raw(SYS_readlink, (long)"/proc/self/exe", (long)ok, -1, 0, 0, 0));
    CHECK("poll_huge", raw(SYS_poll, (long)&out, -1, 0, 0, 0, 0));
    CHECK("select_negative", raw(SYS_select, -1, 0, 0, 0, 0, 0));
    CHECK("getrandom_len_past_memory", raw(SYS_getrandom, (long)ok, 1l << 40, 0, 0, 0, 0));
    /* Paths over PATH_MAX, and components over NAME_MAX. */
    static char longpath[8192];
    memset(longpath, 'a', 8191);
    longpath[0] = '/';
    longpath[8191] = 0;
    long lp = (long)longpath;
    CHECK("open_long", raw(SYS_open, lp, 0, 0, 0, 0, 0));
    CHECK("openat_creat_long", raw(SYS_openat, -100, lp, O_CREAT | O_WRONLY, 0644, 0, 0));
    CHECK("stat_long", raw(SYS_stat, lp, (long)ok, 0, 0, 0, 0));
    CHECK("mkdir_long", raw(SYS_mkdir, lp, 0700, 0, 0, 0, 0));
    CHECK("access_long", raw(SYS_access, lp, 0, 0, 0, 0, 0));
    CHECK("chdir_long", raw(SYS_chdir, lp, 0, 0, 0, 0, 0));
    CHECK("unlink_long", raw(SYS_unlink, lp, 0, 0, 0, 0, 0));
    CHECK("rename_long", raw(SYS_rename, path, lp, 0, 0, 0, 0));
    CHECK("readlink_long", raw(SYS_readlink, lp, (long)ok, 8, 0, 0, 0));
    longpath[4096] = 0;
    CHECK("open_4096", raw(SYS_open, lp, 0, 0, 0, 0, 0));
    memset(longpath, '/', 4094);
    longpath[4094] = 'a';
    longpath[4095] = 0;
    CHECK("open_4095_slashes", raw(SYS_open, lp, 0, 0, 0, 0, 0));
    strcpy(longpath, "/data/");
    memset(longpath + 6, 'b', 256);
    longpath[262] = 0;
    CHECK("open_creat_name_256", raw(SYS_open, lp, O_CREAT | O_WRONLY, 0644, 0, 0, 0));
    longpath[261] = 0;
    long made = raw(SYS_open, lp, O_CREAT | O_WRONLY, 0644, 0, 0, 0);
    CHECK("open_creat_name_255", made >= 0);
    close(made);
    CHECK("unlink_name_255", raw(SYS_unlink, lp, 0, 0, 0, 0, 0));
    close(dir);
    close(file);
    unlink("/data/f");
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
    if (argc > 1)
        fflush(stdout);
    const char *how = argc > 1 ? argv[1] : "";
    volatile unsigned long *area = (volatile unsigned long *)0x3ff8000;
    if (strcmp(how, "read_area") == 0)
        printf("read %lx\n", *area);
    if (strcmp(how, "write_area") == 0)
        *area = 1;
    if (strcmp(how, "hlt") == 0)
        __asm__ volatile("hlt");
    if (strcmp(how, "cli_spin") == 0)
        __asm__ volatile("cli\n\t1: jmp 1b");
    if (strcmp(how, "cr3") == 0)
        __asm__ volatile("xor %%eax, %%eax\n\tmov %%rax, %%cr3" ::: "rax");
    if (strcmp(how, "wrmsr") == 0)
        __asm__ volatile("mov $0xc0000082, %%ecx\n\txor %%eax, %%eax\n\txor %%edx, %%edx\n\twrmsr" ::: "rax", "rcx", "rdx");
    if (strcmp(how, "lgdt") == 0) {
        unsigned char gdtr[10] = {0};
        __asm__ volatile("lgdt %0" ::"m"(gdtr));
    }
    if (strcmp(how, "in") == 0)
        __asm__ volatile("mov $0x60, %%dx\n\tin %%dx, %%al" ::: "rax", "rdx");
    if (strcmp(how, "out") == 0)
        __asm__ volatile("mov $0x80, %%dx\n\tout %%al, %%dx" ::: "rax", "rdx");
    if (strcmp(how, "sleep") == 0) {
        struct timespec t = {600, 0};
        printf("sleep=%ld\n", raw(SYS_nanosleep, (long)&t, 0, 0, 0, 0, 0));
    }
    if (argc > 1 && strcmp(how, "x") != 0) {
        printf("still running\n");
        return 0;
    }
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
