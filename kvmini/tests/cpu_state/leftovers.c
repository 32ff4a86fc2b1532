/*
 * leftovers.c - one piece of CPU state that a ring-3 guest can change,
 * named by argv[1]: prints its value ("NAME=0x..."), or "NAME=absent" when
 * this CPU does not have it, then changes it to a value no fresh vCPU has
 * and exits 0. Run twice in one reusable sandbox with a reset between, the
 * second run must print what the first printed: a fresh vCPU's value.
 *
 * The instructions are written as inline assembly (GNU as assembles
 * AVX-512 whatever -m flags the compiler gets). Registers no C code here
 * uses hold the values: xmm15/ymm15/zmm15, zmm16, k1.
 */
#include "kvmini.h"

static void put_hex(const char *name, uint64_t v)
{
    char buf[19];
    int n = 0;
    buf[n++] = '0';
    buf[n++] = 'x';
    int shift = 60;
    while (shift > 0 && ((v >> shift) & 0xF) == 0)
        shift -= 4;
    for (; shift >= 0; shift -= 4)
        buf[n++] = "0123456789abcdef"[(v >> shift) & 0xF];
    buf[n] = '\0';
    display(name);
    display("=");
    display(buf);
    display("\n");
}

static int same(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid"
                     : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(sub));
}

/* XCR0, or 0 when the OS (kvmini) has not enabled XSAVE. */
static uint64_t xcr0(void)
{
    uint32_t r[4];
    cpuid(1, 0, r);
    if (!(r[2] & (1u << 27)))
        return 0;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int has_xcr0(uint64_t bits)
{
    return (xcr0() & bits) == bits;
}

static int has_leaf7(int reg, uint32_t bit)
{
    uint32_t r[4];
    cpuid(7, 0, r);
    return (r[reg] & bit) != 0;
}

#define XCR0_AVX (1u << 2)
#define XCR0_AVX512 (7u << 5)
#define XCR0_PKRU (1u << 9)

int main(void)
{
    static char buf[256];
    char *argv[3];
    long size = kvmini_argv(buf, sizeof buf);
    if (kvmini_split_args(buf, size, argv, 3) != 2)
        return 2;
    const char *item = argv[1];
    uint64_t v;

    if (same(item, "fsbase")) {
        if (!has_leaf7(1, 1u << 0))
            goto absent;
        __asm__ volatile("rdfsbase %0" : "=r"(v));
        put_hex(item, v);
        __asm__ volatile("wrfsbase %0" : : "r"(0x1234000ull));
    } else if (same(item, "gsbase")) {
        if (!has_leaf7(1, 1u << 0))
            goto absent;
        __asm__ volatile("rdgsbase %0" : "=r"(v));
        put_hex(item, v);
        __asm__ volatile("wrgsbase %0" : : "r"(0x5678000ull));
    } else if (same(item, "selectors")) {
        uint16_t ds, es, fs, gs;
        __asm__ volatile("mov %%ds, %0" : "=r"(ds));
        __asm__ volatile("mov %%es, %0" : "=r"(es));
        __asm__ volatile("mov %%fs, %0" : "=r"(fs));
        __asm__ volatile("mov %%gs, %0" : "=r"(gs));
        put_hex(item, (uint64_t)ds << 48 | (uint64_t)es << 32 |
                          (uint64_t)fs << 16 | gs);
        /* The null selector with RPL 3: loadable at ring 3 everywhere. */
        __asm__ volatile("mov %0, %%ds\n\tmov %0, %%es\n\t"
                         "mov %0, %%fs\n\tmov %0, %%gs"
                         :
                         : "r"((uint16_t)3));
    } else if (same(item, "x87")) {
        /* FSW and FTW from the environment; then two values pushed. */
        uint16_t env[14];
        __asm__ volatile("fnstenv %0" : "=m"(env));
        __asm__ volatile("fldcw %0" : : "m"(env[0]));
        put_hex(item, (uint64_t)env[2] << 16 | env[4]);
        __asm__ volatile("fld1\n\tfldpi");
    } else if (same(item, "fcw")) {
        uint16_t cw;
        __asm__ volatile("fnstcw %0" : "=m"(cw));
        put_hex(item, cw);
        cw = 0x27F;
        __asm__ volatile("fldcw %0" : : "m"(cw));
    } else if (same(item, "mxcsr")) {
        uint32_t csr;
        __asm__ volatile("stmxcsr %0" : "=m"(csr));
        put_hex(item, csr);
        csr = 0x9F80; /* flush to zero */
        __asm__ volatile("ldmxcsr %0" : : "m"(csr));
    } else if (same(item, "xmm")) {
        __asm__ volatile("movq %%xmm15, %0" : "=r"(v));
        put_hex(item, v);
        __asm__ volatile("movq %0, %%xmm15" : : "r"(0x1111ull));
    } else if (same(item, "ymm_upper")) {
        if (!has_xcr0(XCR0_AVX))
            goto absent;
        __asm__ volatile("vextractf128 $1, %%ymm15, %%xmm14\n\t"
                         "vmovq %%xmm14, %0"
                         : "=r"(v)
                         :
                         : "xmm14");
        put_hex(item, v);
        __asm__ volatile("vmovq %0, %%xmm14\n\t"
                         "vinsertf128 $1, %%xmm14, %%ymm15, %%ymm15"
                         :
                         : "r"(0x2222ull)
                         : "xmm14");
    } else if (same(item, "opmask")) {
        if (!has_xcr0(XCR0_AVX | XCR0_AVX512))
            goto absent;
        uint32_t k;
        __asm__ volatile("kmovw %%k1, %0" : "=r"(k));
        put_hex(item, k);
        __asm__ volatile("kmovw %0, %%k1" : : "r"(0x3333u));
    } else if (same(item, "zmm_upper")) {
        if (!has_xcr0(XCR0_AVX | XCR0_AVX512))
            goto absent;
        __asm__ volatile("vextractf64x4 $1, %%zmm15, %%ymm14\n\t"
                         "vmovq %%xmm14, %0"
                         : "=r"(v)
                         :
                         : "xmm14");
        put_hex(item, v);
        __asm__ volatile("vmovq %0, %%xmm14\n\t"
                         "vinsertf64x4 $1, %%ymm14, %%zmm15, %%zmm15"
                         :
                         : "r"(0x4444ull)
                         : "xmm14");
    } else if (same(item, "zmm16")) {
        if (!has_xcr0(XCR0_AVX | XCR0_AVX512))
            goto absent;
        __asm__ volatile("vmovq %%xmm16, %0" : "=r"(v));
        put_hex(item, v);
        __asm__ volatile("vmovq %0, %%xmm16" : : "r"(0x5555ull));
    } else if (same(item, "pkru")) {
        /* OSPKE: the CPU lets ring 3 read and write PKRU. */
        if (!has_xcr0(XCR0_PKRU) || !has_leaf7(2, 1u << 4))
            goto absent;
        uint32_t pkru, edx;
        __asm__ volatile("rdpkru" : "=a"(pkru), "=d"(edx) : "c"(0));
        put_hex(item, pkru);
        /* Access and write disable for key 1; key 0 (every page) stays. */
        __asm__ volatile("wrpkru" : : "a"(0xCu), "c"(0), "d"(0));
    } else if (same(item, "xcr0")) {
        /* Only ring 0 may change it (xsetbv): printed, not written. */
        v = xcr0();
        if (!v)
            goto absent;
        put_hex(item, v);
    } else if (same(item, "xinuse")) {
        /* XGETBV(1): which components are not in their initial state. */
        uint32_t r[4];
        cpuid(0xD, 1, r);
        if (!has_xcr0(XCR0_AVX) || !(r[0] & (1u << 2)))
            goto absent;
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1));
        put_hex(item, ((uint64_t)hi << 32 | lo) & xcr0());
        __asm__ volatile("vmovq %0, %%xmm14\n\t"
                         "vinsertf128 $1, %%xmm14, %%ymm15, %%ymm15"
                         :
                         : "r"(0x2222ull)
                         : "xmm14");
    } else if (same(item, "flags")) {
        /* AC and ID; DF is cleared by _start before main runs. */
        uint64_t flags;
        __asm__ volatile("pushfq\n\tpopq %0" : "=r"(flags));
        put_hex(item, flags & 0x240000);
        /* Set them as the very last thing: exit(0) in the same asm. */
        __asm__ volatile("pushfq\n\torq $0x240000, (%%rsp)\n\tpopfq\n\t"
                         "outl %%eax, %%dx"
                         :
                         : "a"(0), "d"((uint16_t)KVMINI_PORT_EXIT)
                         : "memory");
    } else {
        return 3;
    }
    return 0;

absent:
    display(item);
    display("=absent\n");
    return 0;
}
