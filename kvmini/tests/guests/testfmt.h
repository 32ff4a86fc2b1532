/*
 * testfmt.h - line formatting for the filesystem test guests, with no libc:
 * the same code builds as a kvmini guest (after kvmini.h) and natively
 * (after native_shim.h). Include it after one of the two; it needs only
 * emit(), which each of them provides, to print one finished line.
 */
#ifndef KVMINI_TESTFMT_H
#define KVMINI_TESTFMT_H

#include <stddef.h>
#include <stdint.h>

/* One output line being built; emitted whole, so one exit per line. */
struct line {
    char buf[1024];
    size_t len;
};

static inline void l_reset(struct line *l)
{
    l->len = 0;
    l->buf[0] = '\0';
}

static inline void l_char(struct line *l, char c)
{
    if (l->len + 1 < sizeof(l->buf)) {
        l->buf[l->len++] = c;
        l->buf[l->len] = '\0';
    }
}

static inline void l_str(struct line *l, const char *s)
{
    while (*s != '\0')
        l_char(l, *s++);
}

/* Unsigned v in base 8, 10 or 16, at least `width` digits. */
static inline void l_unsigned(struct line *l, uint64_t v, unsigned base,
                              int width)
{
    char digits[32];
    int n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        digits[n++] = (char)(d < 10 ? '0' + d : 'a' + (d - 10));
        v /= base;
    } while (v != 0);
    while (n < width)
        digits[n++] = '0';
    while (n > 0)
        l_char(l, digits[--n]);
}

static inline void l_long(struct line *l, long v)
{
    if (v < 0) {
        l_char(l, '-');
        l_unsigned(l, 0UL - (unsigned long)v, 10, 1);
    } else {
        l_unsigned(l, (unsigned long)v, 10, 1);
    }
}

/* Octal with a leading 0, as modes are written. */
static inline void l_octal(struct line *l, uint64_t v)
{
    l_char(l, '0');
    l_unsigned(l, v, 8, 3);
}

/* n bytes as a C string literal: printable ASCII as is, others \xNN. */
static inline void l_quoted(struct line *l, const void *data, size_t n)
{
    const unsigned char *p = data;
    l_char(l, '"');
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\') {
            l_char(l, (char)p[i]);
        } else {
            l_str(l, "\\x");
            l_unsigned(l, p[i], 16, 2);
        }
    }
    l_char(l, '"');
}

static inline void l_emit(struct line *l)
{
    l_char(l, '\n');
    emit(l->buf);
    l_reset(l);
}

static inline size_t str_len(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0')
        n++;
    return n;
}

static inline int str_cmp(const char *a, const char *b)
{
    while (*a != '\0' && *a == *b) {
        a++;
        b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

static inline void str_copy(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    for (; i + 1 < size && src[i] != '\0'; i++)
        dst[i] = src[i];
    dst[i] = '\0';
}

/*
 * The large-I/O tests' checksum: FNV-1a 64 taken a 64-bit little-endian
 * word at a time (eight times fewer multiplies than byte by byte), then
 * byte by byte over the last n % 8 bytes.
 */
#define FNV64_OFFSET 0xcbf29ce484222325ULL
#define FNV64_PRIME  0x100000001b3ULL

static inline uint64_t fnv1a64_words(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = FNV64_OFFSET;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof(w));
        h ^= w;
        h *= FNV64_PRIME;
    }
    for (; i < n; i++) {
        h ^= p[i];
        h *= FNV64_PRIME;
    }
    return h;
}

#endif /* KVMINI_TESTFMT_H */
