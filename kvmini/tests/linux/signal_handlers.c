/*
 * signal_handlers.c - installs signal handlers as the first argument says
 * and sends itself signals, printing (with write) what each handler sees
 * and what the interrupted code finds afterwards. Nothing printed depends
 * on the host (no addresses, no process ids).
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static void say(const char *text)
{
    if (write(1, text, strlen(text)) < 0)
        _exit(9);
}

static void sayf(const char *format, long a, long b)
{
    char line[160];
    snprintf(line, sizeof line, format, a, b);
    say(line);
}

static int blocked(int sig)
{
    sigset_t now;
    sigprocmask(SIG_BLOCK, 0, &now);
    return sigismember(&now, sig);
}

static void install(int sig, void (*handler)(int), int flags, int also_masked)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    if (also_masked)
        sigaddset(&sa.sa_mask, also_masked);
    if (sigaction(sig, &sa, 0) != 0)
        _exit(10);
}

static void install_info(int sig, void (*handler)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = flags | SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, 0) != 0)
        _exit(10);
}

static volatile int depth, hits;

static void plain(int sig)
{
    sayf("plain handler: sig=%ld blocked_inside=%ld\n", sig, blocked(sig));
    hits++;
}

static void with_info(int sig, siginfo_t *info, void *context)
{
    ucontext_t *uc = context;
    sayf("info: sig=%ld signo=%ld", sig, info->si_signo);
    sayf(" code=%ld pid_is_mine=%ld", info->si_code, info->si_pid == getpid());
    sayf(" uid_is_mine=%ld errno_field=%ld\n", info->si_uid == getuid(), info->si_errno);
    sayf("context: mask_had_usr2=%ld fpregs_aligned=%ld", sigismember(&uc->uc_sigmask, SIGUSR2),
         uc->uc_mcontext.fpregs != 0 && ((uintptr_t)uc->uc_mcontext.fpregs & 63) == 0);
    sayf(" stack_flags=%ld frame_aligned=%ld\n", uc->uc_stack.ss_flags,
         ((uintptr_t)info & 7) == 0);
}

static void count(int sig)
{
    (void)sig;
    hits++;
}

static void nested(int sig)
{
    int me = ++depth;
    sayf("enter %ld (sig %ld)\n", me, sig);
    if (me == 1)
        raise(sig);
    sayf("leave %ld\n", me, 0);
}

static void first(int sig)
{
    sayf("first handler: sig=%ld usr2_blocked=%ld\n", sig, blocked(SIGUSR2));
    raise(SIGUSR2);
    say("first handler: raised SIGUSR2\n");
}

static char alt[1 << 16] __attribute__((aligned(16)));

static void on_alt(int sig)
{
    char here;
    stack_t now;
    sigaltstack(0, &now);
    stack_t again = { .ss_sp = alt, .ss_size = sizeof alt };
    int changed = sigaltstack(&again, 0);
    sayf("altstack handler: sig=%ld on_alt=%ld", sig,
         &here >= alt && &here < alt + sizeof alt);
    sayf(" flags=%ld change=%ld", now.ss_flags, changed);
    sayf(" errno=%ld\n", changed ? errno : 0, 0);
}

static sigjmp_buf env;

static void jump(int sig)
{
    siglongjmp(env, sig);
}

/* The vector registers and MXCSR a handler must not change for the code it
   interrupted. */
static void clobber(int sig)
{
    (void)sig;
    unsigned int csr = 0x7f80;
    __asm__ volatile("pcmpeqd %%xmm0, %%xmm0\n pcmpeqd %%xmm1, %%xmm1\n"
                     "pcmpeqd %%xmm2, %%xmm2\n pcmpeqd %%xmm3, %%xmm3\n"
                     "pcmpeqd %%xmm4, %%xmm4\n pcmpeqd %%xmm5, %%xmm5\n"
                     "pcmpeqd %%xmm6, %%xmm6\n pcmpeqd %%xmm7, %%xmm7\n"
                     "pcmpeqd %%xmm8, %%xmm8\n pcmpeqd %%xmm9, %%xmm9\n"
                     "pcmpeqd %%xmm10, %%xmm10\n pcmpeqd %%xmm11, %%xmm11\n"
                     "pcmpeqd %%xmm12, %%xmm12\n pcmpeqd %%xmm13, %%xmm13\n"
                     "pcmpeqd %%xmm14, %%xmm14\n pcmpeqd %%xmm15, %%xmm15\n"
                     "ldmxcsr %0\n"
                     :
                     : "m"(csr)
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                       "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    hits++;
}

static void clobber_avx(int sig)
{
    clobber(sig);
    __asm__ volatile("vpcmpeqd %%ymm0, %%ymm0, %%ymm0\n vpcmpeqd %%ymm7, %%ymm7, %%ymm7\n"
                     "vpcmpeqd %%ymm8, %%ymm8, %%ymm8\n vpcmpeqd %%ymm15, %%ymm15, %%ymm15\n"
                     ::
                         : "xmm0", "xmm7", "xmm8", "xmm15");
}

static int has_avx(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    return (c & (1u << 28)) && (c & (1u << 27));
}

static unsigned char in[16][32] __attribute__((aligned(32)));
static unsigned char out[16][32] __attribute__((aligned(32)));

#define LOAD(n) "vmovdqu " #n "*32(%[i]), %%ymm" #n "\n"
#define STORE(n) "vmovdqu %%ymm" #n ", " #n "*32(%[o])\n"
#define LOADX(n) "movdqu " #n "*32(%[i]), %%xmm" #n "\n"
#define STOREX(n) "movdqu %%xmm" #n ", " #n "*32(%[o])\n"
#define ALL(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define VECTORS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", \
                "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

/* Loads every vector register, sends SIGUSR1 with tkill from the same asm
   block, and stores them again. */
static void vectors_across_a_signal(int avx)
{
    long tid = syscall(SYS_gettid);
    for (int r = 0; r < 16; r++)
        for (int b = 0; b < 32; b++)
            in[r][b] = (unsigned char)(r * 32 + b + 1);
    unsigned int before = 0x1f80 | (1u << 13), after = 0;
    __asm__ volatile("ldmxcsr %0" ::"m"(before));
    long rax = SYS_tkill;
    if (avx)
        __asm__ volatile(ALL(LOAD) "syscall\n" ALL(STORE)
                         : "+a"(rax)
                         : [i] "r"(in), [o] "r"(out), "D"(tid), "S"((long)SIGUSR1)
                         : "rcx", "r11", "memory", VECTORS);
    else
        __asm__ volatile(ALL(LOADX) "syscall\n" ALL(STOREX)
                         : "+a"(rax)
                         : [i] "r"(in), [o] "r"(out), "D"(tid), "S"((long)SIGUSR1)
                         : "rcx", "r11", "memory", VECTORS);
    __asm__ volatile("stmxcsr %0" : "=m"(after));
    int kept = 1;
    for (int r = 0; r < 16; r++)
        if (memcmp(in[r], out[r], avx ? 32 : 16) != 0)
            kept = 0;
    sayf("vectors: handler_ran=%ld kept=%ld", hits, kept);
    sayf(" mxcsr_kept=%ld tkill=%ld\n", after == before, rax);
}

/* A handler that rewrites its frame before returning through it. */
static int forgery;
static void landed(void)
{
    say("landed where the frame said\n");
    _exit(3);
}

static void forge(int sig, siginfo_t *info, void *context)
{
    (void)sig;
    (void)info;
    ucontext_t *uc = context;
    unsigned char *fp = (unsigned char *)uc->uc_mcontext.fpregs;
    switch (forgery) {
    case 1: /* a RIP that is not canonical */
        uc->uc_mcontext.gregs[REG_RIP] = (greg_t)0x8000000000001000ull;
        break;
    case 2: /* a RIP somewhere legitimate */
        uc->uc_mcontext.gregs[REG_RIP] = (greg_t)(uintptr_t)landed;
        /* a call's alignment: RSP = 16n + 8 at a function's entry */
        uc->uc_mcontext.gregs[REG_RSP] = (uc->uc_mcontext.gregs[REG_RSP] & ~15l) - 8;
        break;
    case 3: /* flags a program cannot set: NT, IOPL 3, VM, and TF off */
        uc->uc_mcontext.gregs[REG_EFL] |= (1 << 14) | (3 << 12) | (1 << 17);
        break;
    case 4: /* XSAVE header: a compacted-format bit */
        fp[512 + 15] = 0x80;
        break;
    case 5: /* MXCSR with a reserved bit */
        fp[24 + 3] = 0x80;
        break;
    case 6: /* an fpstate that is no memory of the program */
        uc->uc_mcontext.fpregs = (fpregset_t)(uintptr_t)(1ull << 46);
        break;
    case 7: /* no magic words: Linux restores the legacy region only */
        memset(fp + 464, 0, 4);
        break;
    case 8: /* SIGKILL and SIGSTOP in the mask to restore */
        sigaddset(&uc->uc_sigmask, SIGKILL);
        sigaddset(&uc->uc_sigmask, SIGSTOP);
        break;
    }
}

/* Where a called function's locals are: the same after the loop when no
   frame was left behind. */
static __attribute__((noinline)) uintptr_t stack_probe(void)
{
    volatile char here = 0;
    return (uintptr_t)&here;
}

/* Faults, as Linux reports them to a handler. */
static sigjmp_buf fault_env;
/* What the fault handler does: jump out (-1), or return past the faulting
   instruction's `advance` bytes. */
static volatile int advance = -1;

static void on_fault(int sig, siginfo_t *info, void *context)
{
    ucontext_t *uc = context;
    sayf("fault: sig=%ld code=%ld", sig, info->si_code);
    sayf(" addr=%#lx trapno=%ld", (long)info->si_addr, uc->uc_mcontext.gregs[REG_TRAPNO]);
    sayf(" err=%ld blocked_inside=%ld\n", uc->uc_mcontext.gregs[REG_ERR], blocked(sig));
    if (advance >= 0) {
        uc->uc_mcontext.gregs[REG_RIP] += advance;
        return;
    }
    siglongjmp(fault_env, 1);
}

static void on_overflow(int sig, siginfo_t *info, void *context)
{
    (void)info;
    (void)context;
    char here;
    sayf("overflow caught: sig=%ld on_alt=%ld\n", sig, &here >= alt && &here < alt + sizeof alt);
    _exit(7);
}

static volatile int forever = 1;

static int recurse(volatile char *previous)
{
    volatile char page[4096];
    page[0] = previous ? previous[0] + 1 : 0;
    return forever ? recurse(page) + page[4095] : 0;
}

static void nested_fault(int sig)
{
    sayf("in handler for %ld, faulting again\n", sig, 0);
    *(volatile int *)16 = 1;
}

static long flags_now(void)
{
    long f;
    __asm__ volatile("pushfq\n pop %0" : "=r"(f));
    return f;
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "";
    if (strcmp(how, "plain") == 0) {
        install(SIGUSR1, plain, 0, 0);
        int raised = raise(SIGUSR1);
        sayf("raise=%ld hits=%ld", raised, hits);
        sayf(" blocked_after=%ld\n", blocked(SIGUSR1), 0);
        signal(SIGUSR2, plain);
        int killed = kill(getpid(), SIGUSR2);
        sayf("kill=%ld hits=%ld\n", killed, hits);
        return 4;
    } else if (strcmp(how, "info") == 0) {
        install_info(SIGUSR1, with_info, 0);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR2);
        sigprocmask(SIG_BLOCK, &set, 0);
        say("raise:\n");
        raise(SIGUSR1);
        say("kill:\n");
        kill(getpid(), SIGUSR1);
        say("tgkill:\n");
        syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1);
        return 4;
    } else if (strcmp(how, "resethand") == 0) {
        install(SIGUSR1, plain, SA_RESETHAND, 0);
        raise(SIGUSR1);
        struct sigaction now;
        sigaction(SIGUSR1, 0, &now);
        sayf("reset to default=%ld\n", now.sa_handler == SIG_DFL, 0);
        raise(SIGUSR1);
        say("not reached\n");
    } else if (strcmp(how, "nodefer") == 0) {
        install(SIGUSR1, nested, SA_NODEFER, 0);
        raise(SIGUSR1);
        say("back in main\n");
        return 4;
    } else if (strcmp(how, "defer") == 0) {
        install(SIGUSR1, nested, 0, 0);
        raise(SIGUSR1);
        say("back in main\n");
        return 4;
    } else if (strcmp(how, "mask") == 0) {
        install(SIGUSR1, first, 0, SIGUSR2);
        install(SIGUSR2, plain, 0, 0);
        raise(SIGUSR1);
        sayf("back in main: hits=%ld usr2_blocked=%ld\n", hits, blocked(SIGUSR2));
        return 4;
    } else if (strcmp(how, "unblock") == 0) {
        install(SIGUSR1, plain, 0, 0);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_BLOCK, &set, 0);
        raise(SIGUSR1);
        sayf("raised while blocked: hits=%ld\n", hits, 0);
        sigprocmask(SIG_UNBLOCK, &set, 0);
        sayf("unblocked: hits=%ld\n", hits, 0);
        return 4;
    } else if (strcmp(how, "altstack") == 0) {
        stack_t ss = { .ss_sp = alt, .ss_size = sizeof alt };
        sigaltstack(&ss, 0);
        install(SIGUSR1, on_alt, SA_ONSTACK, 0);
        install(SIGUSR2, on_alt, 0, 0);
        raise(SIGUSR1);
        raise(SIGUSR2);
        stack_t now;
        sigaltstack(0, &now);
        sayf("after: flags=%ld\n", now.ss_flags, 0);
        /* SS_AUTODISARM: the stack is disarmed while the handler runs on it. */
        ss.ss_flags = SS_AUTODISARM;
        sayf("autodisarm=%ld\n", sigaltstack(&ss, 0), 0);
        raise(SIGUSR1);
        sigaltstack(0, &now);
        sayf("after: flags=%ld\n", now.ss_flags, 0);
        return 4;
    } else if (strcmp(how, "vectors") == 0) {
        int avx = has_avx();
        install(SIGUSR1, avx ? clobber_avx : clobber, 0, 0);
        vectors_across_a_signal(avx);
        return 4;
    } else if (strcmp(how, "longjmp") == 0) {
        install(SIGUSR1, jump, 0, 0);
        for (int i = 0; i < 3; i++) {
            int got = sigsetjmp(env, 1);
            if (got == 0) {
                raise(SIGUSR1);
                say("not reached\n");
            } else {
                sayf("jumped out with %ld, blocked=%ld\n", got, blocked(SIGUSR1));
            }
        }
        return 4;
    } else if (strcmp(how, "loop") == 0) {
        install(SIGUSR1, count, 0, 0);
        uintptr_t first_sp = stack_probe();
        for (int i = 0; i < 10000; i++)
            raise(SIGUSR1);
        sayf("hits=%ld same_stack=%ld\n", hits, first_sp == stack_probe());
        return 4;
    } else if (strncmp(how, "forge-", 6) == 0) {
        forgery = atoi(how + 6);
        install_info(SIGUSR1, forge, 0);
        raise(SIGUSR1);
        long f = flags_now();
        sayf("went on: nt=%ld iopl=%ld", (f >> 14) & 1, (f >> 12) & 3);
        sayf(" vm=%ld tf=%ld\n", (f >> 17) & 1, (f >> 8) & 1);
        return 4;
    } else if (strcmp(how, "faults") == 0) {
        install_info(SIGSEGV, on_fault, 0);
        install_info(SIGILL, on_fault, 0);
        install_info(SIGFPE, on_fault, 0);
        install_info(SIGTRAP, on_fault, 0);
        if (sigsetjmp(fault_env, 1) == 0)
            *(volatile int *)16 = 1;
        if (sigsetjmp(fault_env, 1) == 0) {
            volatile int zero = 0;
            sayf("quotient=%ld\n", 100 / zero, 0);
        }
        advance = 2;
        __asm__ volatile("ud2");
        advance = 1;
        __asm__ volatile("hlt");
        advance = 0; /* a trap: RIP is past `int3` already */
        __asm__ volatile("int3");
        say("after the faults\n");
        return 4;
    } else if (strcmp(how, "overflow") == 0) {
        stack_t ss = { .ss_sp = alt, .ss_size = sizeof alt };
        sigaltstack(&ss, 0);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_overflow;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigaction(SIGSEGV, &sa, 0);
        return recurse(0);
    } else if (strcmp(how, "fault-in-handler") == 0) {
        install(SIGSEGV, nested_fault, 0, 0);
        *(volatile int *)16 = 1;
        say("not reached\n");
    } else if (strcmp(how, "fault-blocked") == 0) {
        install(SIGSEGV, plain, 0, 0);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGSEGV);
        sigprocmask(SIG_BLOCK, &set, 0);
        *(volatile int *)16 = 1;
        say("not reached\n");
    } else if (strcmp(how, "no-restorer") == 0) {
        /* rt_sigaction without SA_RESTORER: x86-64 Linux cannot build the
           frame and ends the program with SIGSEGV. */
        unsigned long act[4] = { (unsigned long)(uintptr_t)plain, 0, 0, 0 };
        sayf("rt_sigaction=%ld\n", syscall(SYS_rt_sigaction, SIGUSR1, act, 0, 8), 0);
        raise(SIGUSR1);
        say("not reached\n");
    }
    say("unknown case\n");
    return 5;
}
