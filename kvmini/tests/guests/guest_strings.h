/*
 * guest_strings.h - the string helpers of the C test guests, which have
 * no C library. Include it after kvmini.h.
 */
#ifndef KVMINI_GUEST_STRINGS_H
#define KVMINI_GUEST_STRINGS_H

#include <stddef.h>

/* Keeps GCC from turning a loop into a call of memset, memcpy or strlen,
 * which a guest without a C library does not have. */
#define NO_PATTERNS                                                        \
    __attribute__((optimize("no-tree-loop-distribute-patterns")))

/* The length of the NUL-terminated `s`. */
NO_PATTERNS static inline size_t len_of(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0')
        n++;
    return n;
}

/* Whether the NUL-terminated `a` and `b` are the same string. */
NO_PATTERNS static inline int same(const char *a, const char *b)
{
    while (*a != '\0' && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

#endif
