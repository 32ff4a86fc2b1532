/*
 * faults.c - a ring-3 guest that does one forbidden thing, chosen by its
 * first argument, then reports that it survived (it should not).
 *
 * Each case is a few instructions of assembly; the label fault_NAME marks
 * the instruction that must fault (or exit to kvmini). The guest prints
 * that label's address with printVal before running the case, so that the
 * test can check the crash report's RIP exactly.
 */
#include "hostile.h"

#define CASE(name, code)                                                   \
    __asm__(".pushsection .text.case_" #name ",\"ax\",@progbits\n"       \
            "  .globl case_" #name "\n"                                  \
            "  .globl fault_" #name "\n"                                 \
            "case_" #name ":\n" code "\n"                                \
            "  ret\n"                                                    \
            ".popsection\n");                                           \
    void case_##name(void);                                              \
    extern const char fault_##name[];

/* Exceptions. */
CASE(ud2, "fault_ud2: ud2")
CASE(div0, "  xor %ecx, %ecx\n  mov $1, %eax\n  xor %edx, %edx\n"
           "fault_div0: div %ecx")
CASE(null_read, "  xor %eax, %eax\nfault_null_read: mov (%rax), %al")
CASE(past_end_write, "  mov $0x400000, %eax\n"
                     "fault_past_end_write: movb $1, (%rax)")
CASE(pml4_write, "  mov $0x3f0000, %eax\nfault_pml4_write: movq $0, (%rax)")
CASE(gdt_read, "  mov $0x3f8000, %eax\nfault_gdt_read: mov (%rax), %rax")
CASE(gdt_write, "  mov $0x3f8008, %eax\nfault_gdt_write: movq $0, (%rax)")
CASE(idt_write, "  mov $0x3f8800, %eax\nfault_idt_write: movq $0, (%rax)")
CASE(tss_write, "  mov $0x3f9004, %eax\nfault_tss_write: movq $0, (%rax)")
CASE(exec_kvmini, "  mov $0x3fc000, %eax\nfault_exec_kvmini: jmp *%rax")
CASE(noncanonical_write, "  movabs $0x8000000000000000, %rax\n"
                         "fault_noncanonical_write: movb $1, (%rax)")
CASE(no_stack, "  xor %esp, %esp\nfault_no_stack: push %rax")
CASE(hlt, "fault_hlt: hlt")
CASE(lidt, "fault_lidt: lidt (%rsp)")
CASE(lgdt, "fault_lgdt: lgdt (%rsp)")
CASE(mov_cr3, "  xor %eax, %eax\nfault_mov_cr3: mov %rax, %cr3")
CASE(wrmsr, "  mov $0xc0000080, %ecx\n  xor %eax, %eax\n  xor %edx, %edx\n"
            "fault_wrmsr: wrmsr")
CASE(int3, "fault_int3: int3")
CASE(int80, "fault_int80: int $0x80")
CASE(syscall, "fault_syscall: syscall")
/* Exits kvmini does not serve. */
CASE(exception_port, "  mov $0x405, %dx\n  mov $14, %al\n"
                     "fault_exception_port: outb %al, %dx")
CASE(in_unknown_port, "fault_in_unknown_port: inb $0x60, %al")
CASE(out_unknown_port, "  mov $0x1234, %dx\n"
                       "fault_out_unknown_port: outl %eax, %dx")
CASE(out_to_input_port, "  mov $0x401, %dx\n"
                        "fault_out_to_input_port: outl %eax, %dx")
CASE(in_from_output_port, "  mov $0x400, %dx\n"
                          "fault_in_from_output_port: inl %dx, %eax")
CASE(word_out_to_exit, "  mov $0x403, %dx\n"
                       "fault_word_out_to_exit: outw %ax, %dx")
CASE(rep_insb_console, "  lea hostile_scratch(%rip), %rdi\n  mov $3, %ecx\n"
                       "  mov $0xe9, %dx\n"
                       "fault_rep_insb_console: rep insb")
CASE(rep_outsb_display, "  lea hostile_bytes(%rip), %rsi\n  mov $4, %ecx\n"
                        "  mov $0x402, %dx\n"
                        "fault_rep_outsb_display: rep outsb")
/* Served: KVM hands kvmini `rep outsl` one 4-byte `out` per exit. */
CASE(rep_outsd_print_val, "  lea hostile_words(%rip), %rsi\n  mov $3, %ecx\n"
                          "  mov $0x400, %dx\n"
                          "fault_rep_outsd_print_val: rep outsl")
/* Never ends: only the timeout stops it. */
CASE(spin, "fault_spin: jmp fault_spin")

static char hostile_scratch[16] __attribute__((used));
static const char hostile_bytes[4] __attribute__((used)) = {1, 2, 3, 4};
static const uint32_t hostile_words[3] __attribute__((used)) = {1, 2, 3};

struct fault_case {
    const char *name;
    void (*run)(void);
    const char *at;
};

#define ENTRY(name) {#name, case_##name, fault_##name}

static const struct fault_case cases[] = {
    ENTRY(ud2),
    ENTRY(div0),
    ENTRY(null_read),
    ENTRY(past_end_write),
    ENTRY(pml4_write),
    ENTRY(gdt_read),
    ENTRY(gdt_write),
    ENTRY(idt_write),
    ENTRY(tss_write),
    ENTRY(exec_kvmini),
    ENTRY(noncanonical_write),
    ENTRY(no_stack),
    ENTRY(hlt),
    ENTRY(lidt),
    ENTRY(lgdt),
    ENTRY(mov_cr3),
    ENTRY(wrmsr),
    ENTRY(int3),
    ENTRY(int80),
    ENTRY(syscall),
    ENTRY(exception_port),
    ENTRY(in_unknown_port),
    ENTRY(out_unknown_port),
    ENTRY(out_to_input_port),
    ENTRY(in_from_output_port),
    ENTRY(word_out_to_exit),
    ENTRY(rep_insb_console),
    ENTRY(rep_outsb_display),
    ENTRY(rep_outsd_print_val),
    ENTRY(spin),
};

int body(void)
{
    const char *which = first_arg();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (streq(cases[i].name, which)) {
            printVal((uint32_t)ADDR(cases[i].at));
            cases[i].run();
            say_text("returned from", which);
            return 0;
        }
    }
    say_text("no such case", which);
    return 2;
}
