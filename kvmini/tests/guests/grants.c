/*
 * A script of filesystem calls, for kvmini/tests/grants.rs: each argument
 * is one step, its fields separated by ':', and each step prints one line,
 * "STEP = RESULT", where RESULT is the call's result (an errno by name
 * when it failed). The test compares the lines exactly and then checks the
 * host directories.
 *
 *   open:PATH:FLAGS:MODE   open (flags and mode in octal), then close
 *   write:PATH:TEXT        open O_WRONLY|O_CREAT|O_TRUNC 0644, write TEXT
 *   append:PATH:TEXT       open O_WRONLY|O_APPEND, write TEXT
 *   trunc:PATH:LEN         open O_WRONLY, ftruncate to LEN
 *   rdwr:PATH:TEXT         open O_RDWR, pwrite TEXT at 0
 *   rowrite:PATH:TEXT      open O_RDONLY, write TEXT
 *   rotrunc:PATH:LEN       open O_RDONLY, ftruncate to LEN
 *   cat:PATH               open O_RDONLY, read: RESULT is the text, quoted
 *   stat:PATH              RESULT is "mode 0NNNN" (the permission bits)
 *   mkdir:PATH:MODE  unlink:PATH  rmdir:PATH  rename:OLD:NEW
 */
#include "kvmini.h"
static inline void emit(const char *s)
{
    display(s);
}
#include "testfmt.h"

static struct line out;
static char argbuf[16384];

static const char *errno_name(long v)
{
    switch (-v) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case EACCES: return "EACCES";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case EFBIG: return "EFBIG";
    case EROFS: return "EROFS";
    case ENOTEMPTY: return "ENOTEMPTY";
    case ELOOP: return "ELOOP";
    default: return 0;
    }
}

static void result(long r)
{
    const char *name = r < 0 ? errno_name(r) : 0;
    if (name)
        l_str(&out, name);
    else
        l_long(&out, r);
}

/* Splits s at ':' into at most max fields, in place. */
static int fields(char *s, char **f, int max)
{
    int n = 0;
    f[n++] = s;
    for (; *s && n < max; s++) {
        if (*s == ':') {
            *s = '\0';
            f[n++] = s + 1;
        }
    }
    return n;
}

static unsigned long number(const char *s, unsigned base)
{
    unsigned long v = 0;
    for (; *s; s++)
        v = v * base + (unsigned long)(*s - '0');
    return v;
}

static long write_text(int fd, const char *text, int positioned)
{
    size_t n = str_len(text);
    return positioned ? pwrite(fd, text, n, 0) : write(fd, text, n);
}

/* Opens path with flags, then does one thing with the descriptor. */
static void with_fd(const char *path, int flags, int what, const char *arg)
{
    long fd = open(path, flags, 0644);
    if (fd < 0) {
        result(fd);
        return;
    }
    if (what == 'w') {
        result(write_text((int)fd, arg, 0));
    } else if (what == 'p') {
        result(write_text((int)fd, arg, 1));
    } else if (what == 't') {
        result(ftruncate((int)fd, (off_t)number(arg, 10)));
    } else if (what == 'r') {
        char buf[256];
        long n = read((int)fd, buf, sizeof buf);
        if (n < 0)
            result(n);
        else
            l_quoted(&out, buf, (size_t)n);
    } else {
        result(fd < 0 ? fd : 0);
    }
    close((int)fd);
}

static void step(char *arg)
{
    char *f[4] = {0, "", "", ""};
    l_str(&out, arg);
    l_str(&out, " = ");
    int n = fields(arg, f, 4);
    const char *op = f[0];
    if (!str_cmp(op, "open") && n == 4) {
        long fd = open(f[1], (int)number(f[2], 8), (mode_t)number(f[3], 8));
        result(fd < 0 ? fd : 0);
        if (fd >= 0)
            close((int)fd);
    } else if (!str_cmp(op, "write") && n == 3) {
        with_fd(f[1], O_WRONLY | O_CREAT | O_TRUNC, 'w', f[2]);
    } else if (!str_cmp(op, "append") && n == 3) {
        with_fd(f[1], O_WRONLY | O_APPEND, 'w', f[2]);
    } else if (!str_cmp(op, "trunc") && n == 3) {
        with_fd(f[1], O_WRONLY, 't', f[2]);
    } else if (!str_cmp(op, "rdwr") && n == 3) {
        with_fd(f[1], O_RDWR, 'p', f[2]);
    } else if (!str_cmp(op, "rowrite") && n == 3) {
        with_fd(f[1], O_RDONLY, 'w', f[2]);
    } else if (!str_cmp(op, "rotrunc") && n == 3) {
        with_fd(f[1], O_RDONLY, 't', f[2]);
    } else if (!str_cmp(op, "cat") && n == 2) {
        with_fd(f[1], O_RDONLY, 'r', "");
    } else if (!str_cmp(op, "stat") && n == 2) {
        struct stat st;
        long r = stat(f[1], &st);
        if (r < 0) {
            result(r);
        } else {
            l_str(&out, "mode ");
            l_octal(&out, st.st_mode & 07777);
        }
    } else if (!str_cmp(op, "mkdir") && n == 3) {
        result(mkdir(f[1], (mode_t)number(f[2], 8)));
    } else if (!str_cmp(op, "unlink") && n == 2) {
        result(unlink(f[1]));
    } else if (!str_cmp(op, "rmdir") && n == 2) {
        result(rmdir(f[1]));
    } else if (!str_cmp(op, "rename") && n == 3) {
        result(rename(f[1], f[2]));
    } else {
        l_str(&out, "bad step");
    }
    l_emit(&out);
}

int main(void)
{
    long size = kvmini_argv(argbuf, sizeof argbuf);
    if (size < 0 || size > (long)sizeof argbuf)
        return 2;
    char *argv[256];
    int argc = kvmini_split_args(argbuf, size, argv, 256);
    if (argc > 256)
        return 3;
    for (int i = 1; i < argc; i++)
        step(argv[i]);
    return 0;
}
