/*
 * idt.c - a ring-0 guest that replaces kvmini's interrupt table with its
 * own (lidt) and then executes ud2. With no argument its own #UD handler
 * runs, checks the faulting RIP it was given and exits 66: a ring-0 guest
 * is its own kernel, and kvmini's handlers are only a default. With
 * "unmapped" the table's base is an address no page maps, so the #UD
 * cannot be delivered (nor the #PF, nor the #DF): a triple fault.
 */
#pragma GCC target("general-regs-only")
#include "hostile.h"

struct gate {
    uint64_t low;
    uint64_t high;
};

struct __attribute__((packed)) idtr {
    uint16_t limit;
    uint64_t base;
};

/* The guest prints the address of its ud2 first, for the test to compare. */
static struct gate idt[32] __attribute__((aligned(16)));

void on_ud(uint64_t rip);
void ud_handler(void);
extern const char fault_ud2[];

__asm__(".pushsection .text.ud_handler,\"ax\",@progbits\n"
        "  .globl ud_handler\n"
        "ud_handler:\n"
        "  mov (%rsp), %rdi\n" /* the RIP the CPU pushed (#UD has no error code) */
        "  and $-16, %rsp\n"
        "  call on_ud\n"
        "  hlt\n"
        "  .globl fault_ud2\n"
        "fault_ud2: ud2\n"
        "  ret\n"
        ".popsection\n");

__attribute__((used)) void on_ud(uint64_t rip)
{
    say_text("the guest's own handler ran for", "#UD");
    say("  it was given the faulting RIP", rip == ADDR(fault_ud2));
    exit(66);
}

/* A 64-bit interrupt gate to `handler` through kvmini's kernel code
 * segment (0x08), present, DPL 0, no IST. */
static struct gate interrupt_gate(void (*handler)(void))
{
    uint64_t at = ADDR(handler);
    return (struct gate){
        .low = (at & 0xFFFF) | (0x08ULL << 16) | (0x8EULL << 40) |
               (((at >> 16) & 0xFFFF) << 48),
        .high = at >> 32};
}

int body(void)
{
    printVal((uint32_t)ADDR(fault_ud2));
    struct idtr idtr = {.limit = sizeof idt - 1, .base = ADDR(idt)};
    if (streq(first_arg(), "unmapped"))
        idtr.base = 0x40000000UL;
    idt[6] = interrupt_gate(ud_handler);
    __asm__ volatile("lidt %0" : : "m"(idtr) : "memory");
    ((void (*)(void))(uintptr_t)fault_ud2)();
    say_text("ud2", "returned");
    return 1;
}
