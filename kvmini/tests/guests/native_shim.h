/*
 * native_shim.h - the filesystem calls of sdk/c/kvmini.h for a native Linux
 * build: the same names and signatures, each one raw system call that
 * returns what the kernel returns (>= 0, or -errno), as kvmini's do. It
 * lets a test guest's C source build unchanged as a Linux program, so that
 * its output under kvmini can be compared with Linux's own.
 *
 * libc's functions of the same names set errno instead, so the calls here
 * are named native_* and reached through function-like macros defined after
 * every system header: `struct stat` stays libc's type (which on x86_64 has
 * the kernel's layout), while `stat(path, st)` becomes native_stat.
 *
 * Build: cc -O2 -Wall -Wextra -DKVMINI_NATIVE -I kvmini/tests/guests SRC
 */
#ifndef KVMINI_NATIVE_SHIM_H
#define KVMINI_NATIVE_SHIM_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

_Static_assert(sizeof(struct stat) == 144, "libc's struct stat is Linux's");

/* One getdents64 record, as in kvmini.h. */
struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* The raw result: syscall() returns -1 and sets errno on failure. */
static inline long native_result(long r)
{
    return r == -1 ? -(long)errno : r;
}

static inline int native_open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return (int)native_result(syscall(SYS_open, path, flags, mode));
}

static inline int native_close(int fd)
{
    return (int)native_result(syscall(SYS_close, fd));
}

static inline int native_fsync(int fd)
{
    return (int)native_result(syscall(SYS_fsync, fd));
}

static inline ssize_t native_read(int fd, void *buf, size_t n)
{
    return native_result(syscall(SYS_read, fd, buf, n));
}

static inline ssize_t native_write(int fd, const void *buf, size_t n)
{
    return native_result(syscall(SYS_write, fd, buf, n));
}

static inline ssize_t native_pread(int fd, void *buf, size_t n, off_t off)
{
    return native_result(syscall(SYS_pread64, fd, buf, n, off));
}

static inline ssize_t native_pwrite(int fd, const void *buf, size_t n,
                                    off_t off)
{
    return native_result(syscall(SYS_pwrite64, fd, buf, n, off));
}

static inline ssize_t native_getdents64(int fd, void *buf, size_t n)
{
    return native_result(syscall(SYS_getdents64, fd, buf, n));
}

static inline off_t native_lseek(int fd, off_t off, int whence)
{
    return native_result(syscall(SYS_lseek, fd, off, whence));
}

static inline int native_fstat(int fd, struct stat *st)
{
    return (int)native_result(syscall(SYS_fstat, fd, st));
}

static inline int native_stat(const char *path, struct stat *st)
{
    return (int)native_result(syscall(SYS_stat, path, st));
}

static inline int native_ftruncate(int fd, off_t length)
{
    return (int)native_result(syscall(SYS_ftruncate, fd, length));
}

static inline int native_unlink(const char *path)
{
    return (int)native_result(syscall(SYS_unlink, path));
}

static inline int native_mkdir(const char *path, mode_t mode)
{
    return (int)native_result(syscall(SYS_mkdir, path, mode));
}

static inline int native_rmdir(const char *path)
{
    return (int)native_result(syscall(SYS_rmdir, path));
}

static inline int native_rename(const char *from, const char *to)
{
    return (int)native_result(syscall(SYS_rename, from, to));
}

#define open(...) native_open(__VA_ARGS__)
#define close(fd) native_close(fd)
#define fsync(fd) native_fsync(fd)
#define read(fd, buf, n) native_read(fd, buf, n)
#define write(fd, buf, n) native_write(fd, buf, n)
#define pread(fd, buf, n, off) native_pread(fd, buf, n, off)
#define pwrite(fd, buf, n, off) native_pwrite(fd, buf, n, off)
#define getdents64(fd, buf, n) native_getdents64(fd, buf, n)
#define lseek(fd, off, whence) native_lseek(fd, off, whence)
#define fstat(fd, st) native_fstat(fd, st)
#define stat(path, st) native_stat(path, st)
#define ftruncate(fd, length) native_ftruncate(fd, length)
#define unlink(path) native_unlink(path)
#define mkdir(path, mode) native_mkdir(path, mode)
#define rmdir(path) native_rmdir(path)
#define rename(from, to) native_rename(from, to)

/* Prints one finished line (testfmt.h). */
static inline void emit(const char *s)
{
    fputs(s, stdout);
}

/*
 * Puts the process where a kvmini guest starts: descriptors 0, 1 and 2
 * and nothing else open (so the first open gives 3, as in a guest), and
 * the umask the test gives kvmini's own process (see fs_conformance.rs).
 */
static inline void platform_init(void)
{
    for (int fd = 3; fd < 1024; fd++)
        syscall(SYS_close, fd);
    umask(022);
}

#endif /* KVMINI_NATIVE_SHIM_H */
