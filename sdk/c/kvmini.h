/*
 * kvmini.h - header-only C SDK for kvmini guests.
 *
 * A guest is one C file that includes this header once and defines
 * `int main(void)`. The header defines real, non-static symbols (_start,
 * exit, memcpy, memmove, memset, memcmp), so including it from two files
 * of one program gives duplicate definitions: include it once per program.
 *
 * Build (from the repository root):
 *
 *   cc -O2 -ffreestanding -fno-pic -no-pie -nostdlib -static \
 *      -fno-stack-protector -mno-red-zone -I sdk/c -T sdk/c/guest.ld \
 *      -o /tmp/guest.elf sdk/c/examples/hypercalls.c
 *
 * The guest runs in 64-bit mode at ring 3 with IOPL=3, identity-mapped,
 * loaded at or above 1 MiB. Each hypercall is one port I/O instruction and
 * therefore exactly one VM exit. `hlt` and syscall/sysenter are not
 * available at ring 3 here; a guest ends through exit() or halt().
 *
 * Files: open, read, write, ... with POSIX signatures that return -errno
 * instead of setting errno (see "Filesystem calls" below).
 */
#ifndef KVMINI_H
#define KVMINI_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Hypercall ports; these mirror `Port` in kvmini-abi/src/lib.rs. */
#define KVMINI_PORT_CONSOLE       0x00E9 /* out  8-bit: print one byte       */
#define KVMINI_PORT_SYSCALL       0x00E8 /* out  8-bit: Linux programs only  */
#define KVMINI_PORT_PRINT_VAL     0x0400 /* out 32-bit: print decimal + '\n' */
#define KVMINI_PORT_GET_NUM_EXITS 0x0401 /* in  32-bit: exits so far         */
#define KVMINI_PORT_DISPLAY       0x0402 /* out 32-bit: address of a string  */
#define KVMINI_PORT_EXIT          0x0403 /* out 32-bit: exit status          */
#define KVMINI_PORT_HALT          0x0404 /* out  8-bit: end with status 0    */

/* Filesystem calls: out 32-bit of the address of the call's argument block. */
#define KVMINI_PORT_OPEN      0x0410
#define KVMINI_PORT_CLOSE     0x0411
#define KVMINI_PORT_READ      0x0412
#define KVMINI_PORT_WRITE     0x0413
#define KVMINI_PORT_PREAD     0x0414
#define KVMINI_PORT_PWRITE    0x0415
#define KVMINI_PORT_LSEEK     0x0416
#define KVMINI_PORT_FSTAT     0x0417
#define KVMINI_PORT_STAT      0x0418
#define KVMINI_PORT_FSYNC     0x0419
#define KVMINI_PORT_FTRUNCATE 0x041A
#define KVMINI_PORT_UNLINK    0x041B
#define KVMINI_PORT_MKDIR     0x041C
#define KVMINI_PORT_RMDIR     0x041D
#define KVMINI_PORT_RENAME    0x041E
#define KVMINI_PORT_GETDENTS  0x041F

#define KVMINI_NORETURN __attribute__((noreturn))

int main(void);
KVMINI_NORETURN void exit(int code);
void *memcpy(void *dest, const void *src, size_t n);
void *memmove(void *dest, const void *src, size_t n);
void *memset(void *dest, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/*
 * The ABI version this header is written against (`ABI_VERSION` in
 * kvmini-abi/src/lib.rs), and the ELF note that carries it in every guest
 * image (`kvmini_abi::note`): name "kvmini", type 1, a 4-byte descriptor
 * holding the version. guest.ld keeps the section and puts it in a PT_NOTE,
 * so kvmini can tell which ABI an image was built for.
 */
#define KVMINI_ABI_VERSION 1
#define KVMINI_NOTE_TYPE 1
#define KVMINI_STRINGIFY_(x) #x
#define KVMINI_STRINGIFY(x) KVMINI_STRINGIFY_(x)
__asm__(
    "  .pushsection .note.kvmini,\"a\",@note\n"
    "  .balign 4\n"
    "  .long 7\n" /* name size: "kvmini" and its NUL */
    "  .long 4\n" /* descriptor size */
    "  .long " KVMINI_STRINGIFY(KVMINI_NOTE_TYPE) "\n"
    "  .asciz \"kvmini\"\n"
    "  .balign 4\n"
    "  .long " KVMINI_STRINGIFY(KVMINI_ABI_VERSION) "\n"
    "  .popsection\n");

/*
 * Entry point. RSP is already 16-byte aligned by kvmini; re-aligning costs
 * nothing and keeps SSE spills in main safe regardless. DF is cleared
 * because the string instructions below rely on it, as the SysV ABI does.
 * push/popsection keep the compiler's idea of the current section intact.
 */
__asm__(
    "  .pushsection .text._start,\"ax\",@progbits\n"
    "  .globl _start\n"
    "  .type _start,@function\n"
    "_start:\n"
    "  xor %ebp, %ebp\n"
    "  and $-16, %rsp\n"
    "  cld\n"
    "  call main\n"
    "  mov %eax, %edi\n"
    "  call exit\n"
    "  .size _start, .-_start\n"
    "  .popsection\n");

/*
 * The one primitive under every hypercall that passes a 32-bit value (a
 * number, a string's address, an argument block's address): `outl` of
 * `value` to `port`, returning RAX after the exit. RAX is an input and an
 * output: kvmini writes it for a call whose argument block it cannot use
 * (-EFAULT, the one place left to say so), so the compiler may neither
 * keep a live value in RAX across the exit nor assume it unchanged. The
 * "memory" clobber makes the compiler store what kvmini reads before the
 * `out` and reload what it wrote after it.
 */
static inline uint64_t kvmini_out32(uint16_t port, uint32_t value)
{
    uint64_t rax = value;
    __asm__ volatile("outl %%eax, %w1" : "+a"(rax) : "Nd"(port) : "memory");
    return rax;
}

/* Print one byte. */
static inline void console_putc(char c)
{
    __asm__ volatile("outb %0, %1"
                     :
                     : "a"((uint8_t)c), "Nd"((uint16_t)KVMINI_PORT_CONSOLE)
                     : "memory");
}

/* Print v in decimal followed by a newline. */
static inline void printVal(uint32_t v)
{
    (void)kvmini_out32(KVMINI_PORT_PRINT_VAL, v);
}

/* Number of VM exits since the guest started, this call's own included. */
static inline uint32_t getNumExits(void)
{
    uint32_t n;
    __asm__ volatile("inl %1, %0"
                     : "=a"(n)
                     : "Nd"((uint16_t)KVMINI_PORT_GET_NUM_EXITS)
                     : "memory");
    return n;
}

/*
 * Print a whole NUL-terminated string in one exit. kvmini reads it from
 * guest memory, hence the "memory" clobber; the address fits in 32 bits
 * because guest memory lies below 4 GiB.
 */
static inline void display(const char *s)
{
    (void)kvmini_out32(KVMINI_PORT_DISPLAY, (uint32_t)(uintptr_t)s);
}

/* End the run; kvmini exits with the low 8 bits of code. */
__attribute__((used)) KVMINI_NORETURN void exit(int code)
{
    (void)kvmini_out32(KVMINI_PORT_EXIT, (uint32_t)code);
    /* kvmini never resumes the guest after this exit. */
    for (;;) {
    }
}

/* End the run with status 0: the ring-3 stand-in for hlt. */
static inline KVMINI_NORETURN void halt(void)
{
    __asm__ volatile("outb %0, %1"
                     :
                     : "a"((uint8_t)0), "Nd"((uint16_t)KVMINI_PORT_HALT)
                     : "memory");
    for (;;) {
    }
}

/*
 * Filesystem calls, on the host directories granted with `kvmini run --dir`
 * (the first at /). POSIX names and signatures, but each returns what the
 * Linux system call returns: >= 0 on success, -errno on failure (there is
 * no errno variable). Values are Linux x86_64's; the argument blocks mirror
 * kvmini-abi/src/fs.rs. Descriptors 0, 1 and 2 are the guest's stdin,
 * stdout and stderr: write(1, ...) prints.
 */
typedef long ssize_t;
typedef long off_t;
typedef unsigned int mode_t;

#define O_RDONLY    00
#define O_WRONLY    01
#define O_RDWR      02
#define O_ACCMODE   03
#define O_CREAT     0100
#define O_EXCL      0200
#define O_TRUNC     01000
#define O_APPEND    02000
#define O_DIRECTORY 0200000
#define O_NOFOLLOW  0400000
#define O_CLOEXEC   02000000 /* accepted and ignored */

#define SEEK_SET 0
#define SEEK_CUR 1
#define SEEK_END 2

#define STDIN_FILENO  0
#define STDOUT_FILENO 1
#define STDERR_FILENO 2

#ifndef PATH_MAX
#define PATH_MAX 4096 /* the longest path kvmini reads, NUL included */
#endif
#ifndef NAME_MAX
#define NAME_MAX 255
#endif

#define S_IFMT   0170000
#define S_IFSOCK 0140000
#define S_IFLNK  0120000
#define S_IFREG  0100000
#define S_IFBLK  0060000
#define S_IFDIR  0040000
#define S_IFCHR  0020000
#define S_IFIFO  0010000
#define S_ISDIR(m) (((m) & S_IFMT) == S_IFDIR)
#define S_ISREG(m) (((m) & S_IFMT) == S_IFREG)
#define S_ISLNK(m) (((m) & S_IFMT) == S_IFLNK)

#define DT_UNKNOWN 0
#define DT_FIFO    1
#define DT_CHR     2
#define DT_DIR     4
#define DT_BLK     6
#define DT_REG     8
#define DT_LNK     10
#define DT_SOCK    12

/* The errno values kvmini returns (negated), from kvmini-abi/src/errno.rs. */
#define EPERM        1
#define ENOENT       2
#define EINTR        4
#define EIO          5
#define EBADF        9
#define EAGAIN       11
#define EACCES       13
#define EFAULT       14
#define EBUSY        16
#define EEXIST       17
#define EXDEV        18 /* also: a path that would leave its --dir */
#define ENOTDIR      20
#define EISDIR       21
#define EINVAL       22
#define EMFILE       24
#define EFBIG        27
#define ENOSPC       28
#define ESPIPE       29
#define EROFS        30
#define EPIPE        32
#define ERANGE       34
#define ENAMETOOLONG 36
#define ENOSYS       38
#define ENOTEMPTY    39
#define ELOOP        40
#define EOVERFLOW    75

/* Linux x86_64's struct stat, as the kernel (not glibc) names its fields. */
struct stat {
    uint64_t st_dev;
    uint64_t st_ino;
    uint64_t st_nlink;
    uint32_t st_mode;
    uint32_t st_uid;
    uint32_t st_gid;
    uint32_t __pad0;
    uint64_t st_rdev;
    int64_t st_size;
    int64_t st_blksize;
    int64_t st_blocks;
    int64_t st_atime;
    int64_t st_atime_nsec;
    int64_t st_mtime;
    int64_t st_mtime_nsec;
    int64_t st_ctime;
    int64_t st_ctime_nsec;
    int64_t __unused[3];
};
_Static_assert(sizeof(struct stat) == 144, "Linux x86_64 struct stat");
_Static_assert(offsetof(struct stat, st_mode) == 24, "st_mode offset");
_Static_assert(offsetof(struct stat, st_size) == 48, "st_size offset");
_Static_assert(offsetof(struct stat, st_mtime) == 88, "st_mtime offset");

/*
 * One getdents64 record. d_reclen (a multiple of 8) is the distance to the
 * next record; d_name is NUL-terminated. Records include "." and "..".
 */
struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};
_Static_assert(offsetof(struct linux_dirent64, d_name) == 19, "d_name offset");

/* Argument blocks; `result` is written by kvmini before the `out` returns. */
struct kvmini_open_args {
    uint64_t path;
    uint32_t flags;
    uint32_t mode;
    int64_t result;
};
struct kvmini_fd_args {
    int32_t fd;
    uint32_t reserved;
    int64_t result;
};
struct kvmini_io_args {
    int32_t fd;
    uint32_t reserved;
    uint64_t buf;
    uint64_t len;
    int64_t offset;
    int64_t result;
};
struct kvmini_seek_args {
    int32_t fd;
    uint32_t whence;
    int64_t offset;
    int64_t result;
};
struct kvmini_stat_args {
    uint64_t path;
    int32_t fd;
    uint32_t reserved;
    uint64_t stat;
    int64_t result;
};
struct kvmini_truncate_args {
    int32_t fd;
    uint32_t reserved;
    int64_t length;
    int64_t result;
};
struct kvmini_path_args {
    uint64_t path;
    uint32_t mode;
    uint32_t reserved;
    int64_t result;
};
struct kvmini_rename_args {
    uint64_t old_path;
    uint64_t new_path;
    int64_t result;
};
_Static_assert(sizeof(struct kvmini_open_args) == 24, "OpenArgs");
_Static_assert(sizeof(struct kvmini_fd_args) == 16, "FdArgs");
_Static_assert(sizeof(struct kvmini_io_args) == 40, "IoArgs");
_Static_assert(sizeof(struct kvmini_seek_args) == 24, "SeekArgs");
_Static_assert(sizeof(struct kvmini_stat_args) == 32, "StatArgs");
_Static_assert(sizeof(struct kvmini_truncate_args) == 24, "TruncateArgs");
_Static_assert(sizeof(struct kvmini_path_args) == 24, "PathArgs");
_Static_assert(sizeof(struct kvmini_rename_args) == 24, "RenameArgs");

/*
 * Sends the address of an argument block to `port`: 0 when kvmini took
 * the block (the call's answer is in the block's `result`), or -EFAULT
 * when it could not use it: an address outside guest memory or in
 * kvmini's own area (kvmini says so in RAX), or one past 4 GiB, which the
 * 32-bit port value cannot carry (then no exit is made: cut to 32 bits it
 * would name some other block).
 */
static inline long kvmini_block_call(uint16_t port, uint64_t block)
{
    if (block > 0xFFFFFFFFu)
        return -EFAULT;
    uint64_t rax = kvmini_out32(port, (uint32_t)block);
    return rax == block ? 0 : (long)rax;
}

/*
 * Batches: several filesystem or host calls in one exit (port 0x0422).
 * Fill an array of entries (each a call's port and the address of its
 * usual argument block) and submit it; every call's result lands in its own
 * block, and kvmini_submit returns how many calls ran, or -errno if the
 * batch itself is bad (then none ran). Mirrors kvmini-abi's batch module.
 */
#define KVMINI_PORT_BATCH 0x0422
#define KVMINI_BATCH_STOP_ON_ERROR 1u
#define KVMINI_BATCH_MAX 4096u

struct kvmini_batch_entry {
    uint16_t port;        /* IN  */
    uint16_t reserved[3];
    uint64_t block;       /* IN: address of the call's argument block */
};

struct kvmini_batch_args {
    uint64_t entries; /* IN: address of the entry array */
    uint32_t count;   /* IN */
    uint32_t flags;   /* IN: KVMINI_BATCH_STOP_ON_ERROR or 0 */
    int64_t result;   /* OUT: calls run, or -errno */
};

_Static_assert(sizeof(struct kvmini_batch_entry) == 16, "BatchEntry");
_Static_assert(sizeof(struct kvmini_batch_args) == 24, "BatchArgs");

static inline long kvmini_submit(struct kvmini_batch_entry *entries,
                                 uint32_t count, uint32_t flags)
{
    struct kvmini_batch_args a = {.entries = (uint64_t)(uintptr_t)entries,
                                  .count = count,
                                  .flags = flags,
                                  .result = -ENOSYS};
    long status =
        kvmini_block_call(KVMINI_PORT_BATCH, (uint64_t)(uintptr_t)&a);
    return status < 0 ? status : (long)a.result;
}

/* Sets entry `i` to the call on `port` with argument block `block`. */
static inline void kvmini_batch_set(struct kvmini_batch_entry *entries,
                                    uint32_t i, uint16_t port, void *block)
{
    entries[i].port = port;
    entries[i].reserved[0] = entries[i].reserved[1] = entries[i].reserved[2] = 0;
    entries[i].block = (uint64_t)(uintptr_t)block;
}

/*
 * One filesystem (or host, or argv) hypercall through kvmini_block_call:
 * 0 when kvmini wrote the block's `result`, or -EFAULT when it could not
 * use the block. Defining KVMINI_BATCH_EACH_CALL before including this
 * header sends every call through the batch path instead (a batch of
 * one), which must give the same results for blocks kvmini can use (a
 * batch has nowhere to report a block it cannot use).
 */
static inline long kvmini_fs_call(uint16_t port, void *block)
{
#ifdef KVMINI_BATCH_EACH_CALL
    struct kvmini_batch_entry entry[1];
    kvmini_batch_set(entry, 0, port, block);
    long ran = kvmini_submit(entry, 1, 0);
    return ran < 0 ? ran : 0;
#else
    return kvmini_block_call(port, (uint64_t)(uintptr_t)block);
#endif
}

/* A call's answer: kvmini_fs_call's -EFAULT, or the result in the block. */
static inline long kvmini_answer(long status, const int64_t *result)
{
    return status < 0 ? status : (long)*result;
}

#define KVMINI_ADDR(p) ((uint64_t)(uintptr_t)(p))

/*
 * mode is read only with O_CREAT, as open(2) does. Not `inline`: gcc
 * never inlines a function that takes variable arguments.
 */
__attribute__((unused)) static int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    struct kvmini_open_args a = {.path = KVMINI_ADDR(path),
                                 .flags = (uint32_t)flags,
                                 .mode = mode,
                                 .result = -ENOSYS};
    long status = kvmini_fs_call(KVMINI_PORT_OPEN, &a);
    return (int)kvmini_answer(status, &a.result);
}

static inline int kvmini_fd_call(uint16_t port, int fd)
{
    struct kvmini_fd_args a = {.fd = fd, .result = -ENOSYS};
    long status = kvmini_fs_call(port, &a);
    return (int)kvmini_answer(status, &a.result);
}

static inline int close(int fd)
{
    return kvmini_fd_call(KVMINI_PORT_CLOSE, fd);
}

static inline int fsync(int fd)
{
    return kvmini_fd_call(KVMINI_PORT_FSYNC, fd);
}

static inline ssize_t kvmini_io_call(uint16_t port, int fd, const void *buf,
                                     size_t len, off_t offset)
{
    struct kvmini_io_args a = {.fd = fd,
                               .buf = KVMINI_ADDR(buf),
                               .len = len,
                               .offset = offset,
                               .result = -ENOSYS};
    long status = kvmini_fs_call(port, &a);
    return kvmini_answer(status, &a.result);
}

static inline ssize_t read(int fd, void *buf, size_t count)
{
    return kvmini_io_call(KVMINI_PORT_READ, fd, buf, count, 0);
}

static inline ssize_t write(int fd, const void *buf, size_t count)
{
    return kvmini_io_call(KVMINI_PORT_WRITE, fd, buf, count, 0);
}

static inline ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
    return kvmini_io_call(KVMINI_PORT_PREAD, fd, buf, count, offset);
}

static inline ssize_t pwrite(int fd, const void *buf, size_t count,
                             off_t offset)
{
    return kvmini_io_call(KVMINI_PORT_PWRITE, fd, buf, count, offset);
}

/* A buffer too small for the next record gives -EINVAL; 0 means the end. */
static inline ssize_t getdents64(int fd, void *dirp, size_t count)
{
    return kvmini_io_call(KVMINI_PORT_GETDENTS, fd, dirp, count, 0);
}

static inline off_t lseek(int fd, off_t offset, int whence)
{
    struct kvmini_seek_args a = {.fd = fd,
                                 .whence = (uint32_t)whence,
                                 .offset = offset,
                                 .result = -ENOSYS};
    long status = kvmini_fs_call(KVMINI_PORT_LSEEK, &a);
    return kvmini_answer(status, &a.result);
}

static inline int fstat(int fd, struct stat *st)
{
    struct kvmini_stat_args a = {
        .fd = fd, .stat = KVMINI_ADDR(st), .result = -ENOSYS};
    long status = kvmini_fs_call(KVMINI_PORT_FSTAT, &a);
    return (int)kvmini_answer(status, &a.result);
}

/* Follows symbolic links. */
static inline int stat(const char *path, struct stat *st)
{
    struct kvmini_stat_args a = {.path = KVMINI_ADDR(path),
                                 .fd = -1,
                                 .stat = KVMINI_ADDR(st),
                                 .result = -ENOSYS};
    long status = kvmini_fs_call(KVMINI_PORT_STAT, &a);
    return (int)kvmini_answer(status, &a.result);
}

static inline int ftruncate(int fd, off_t length)
{
    struct kvmini_truncate_args a = {
        .fd = fd, .length = length, .result = -ENOSYS};
    long status = kvmini_fs_call(KVMINI_PORT_FTRUNCATE, &a);
    return (int)kvmini_answer(status, &a.result);
}

static inline int kvmini_path_call(uint16_t port, const char *path, mode_t mode)
{
    struct kvmini_path_args a = {
        .path = KVMINI_ADDR(path), .mode = mode, .result = -ENOSYS};
    long status = kvmini_fs_call(port, &a);
    return (int)kvmini_answer(status, &a.result);
}

static inline int unlink(const char *path)
{
    return kvmini_path_call(KVMINI_PORT_UNLINK, path, 0);
}

static inline int mkdir(const char *path, mode_t mode)
{
    return kvmini_path_call(KVMINI_PORT_MKDIR, path, mode);
}

static inline int rmdir(const char *path)
{
    return kvmini_path_call(KVMINI_PORT_RMDIR, path, 0);
}

/* Replaces newpath if it exists, as Linux does. */
static inline int rename(const char *oldpath, const char *newpath)
{
    struct kvmini_rename_args a = {.old_path = KVMINI_ADDR(oldpath),
                                   .new_path = KVMINI_ADDR(newpath),
                                   .result = -ENOSYS};
    long status = kvmini_fs_call(KVMINI_PORT_RENAME, &a);
    return (int)kvmini_answer(status, &a.result);
}

/*
 * gcc emits calls to these even with -ffreestanding (struct copies, large
 * initialisers). They are written with string instructions or plain
 * byte loops so that gcc cannot recognise them as memcpy/memset patterns
 * and compile them into calls to themselves.
 */
void *memcpy(void *dest, const void *src, size_t n)
{
    void *d = dest;
    __asm__ volatile("rep movsb"
                     : "+D"(d), "+S"(src), "+c"(n)
                     :
                     : "memory");
    return dest;
}

void *memmove(void *dest, const void *src, size_t n)
{
    unsigned char *d = dest;
    const unsigned char *s = src;
    if (d <= s || d >= s + n) {
        /* A forward byte copy is correct when dest does not start inside src. */
        __asm__ volatile("rep movsb"
                         : "+D"(d), "+S"(s), "+c"(n)
                         :
                         : "memory");
    } else if (n != 0) {
        d += n - 1;
        s += n - 1;
        __asm__ volatile("std\n\trep movsb\n\tcld"
                         : "+D"(d), "+S"(s), "+c"(n)
                         :
                         : "memory", "cc");
    }
    return dest;
}

void *memset(void *dest, int c, size_t n)
{
    void *d = dest;
    __asm__ volatile("rep stosb"
                     : "+D"(d), "+c"(n)
                     : "a"((unsigned char)c)
                     : "memory");
    return dest;
}

#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *p = a;
    const unsigned char *q = b;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != q[i])
            return p[i] < q[i] ? -1 : 1;
    }
    return 0;
}

/*
 * Host functions and arguments. The blocks mirror kvmini-abi/src/host.rs;
 * each call is one `out` of the block's address, so one VM exit.
 */
#define KVMINI_PORT_HOST_CALL 0x0420
#define KVMINI_PORT_ARGV      0x0421
#define KVMINI_HOST_CALL_ARGS 6

struct kvmini_host_call_args {
    uint32_t id;
    uint32_t reserved;
    uint64_t args[KVMINI_HOST_CALL_ARGS];
    int64_t result;
};
struct kvmini_argv_args {
    uint64_t buf;
    uint64_t len;
    int64_t result;
};
_Static_assert(sizeof(struct kvmini_host_call_args) == 64, "HostCallArgs");
_Static_assert(sizeof(struct kvmini_argv_args) == 24, "ArgvArgs");

/*
 * Calls host function `id`, which the program embedding kvmini registered
 * (SandboxBuilder::host_function): its value (>= 0), or -errno: -ENOSYS
 * when no function has this id, -EOVERFLOW when it returned more than
 * INT64_MAX, -EFAULT (from kvmini's accessors) when a pointer argument is
 * not guest memory the host function may use. Pointers travel as
 * integers: KVMINI_ADDR(p).
 */
static inline long kvmini_host_call(uint32_t id, uint64_t a0, uint64_t a1,
                                    uint64_t a2, uint64_t a3, uint64_t a4,
                                    uint64_t a5)
{
    struct kvmini_host_call_args a = {.id = id,
                                      .args = {a0, a1, a2, a3, a4, a5},
                                      .result = -ENOSYS};
    long status = kvmini_fs_call(KVMINI_PORT_HOST_CALL, &a);
    return (long)kvmini_answer(status, &a.result);
}

/* host_call's worker: v[0] is the id, v[1..6] the arguments. */
static inline long kvmini_host_call_array(
    const uint64_t v[KVMINI_HOST_CALL_ARGS + 1])
{
    return kvmini_host_call((uint32_t)v[0], v[1], v[2], v[3], v[4], v[5],
                            v[6]);
}

/*
 * host_call(id), host_call(id, a0), ... host_call(id, a0, ..., a5): the
 * arguments not given are zero (they fill an array initializer, so a
 * seventh is an "excess elements" diagnostic). No variadic function is
 * involved: with -O2 this is the same code as kvmini_host_call.
 */
#define host_call(...)                                                      \
    kvmini_host_call_array(                                                 \
        (const uint64_t[KVMINI_HOST_CALL_ARGS + 1]){__VA_ARGS__})

/*
 * The guest's arguments (argv): kvmini copies them into buf, each followed
 * by its NUL, only if all of them fit in len bytes; the result is always
 * the size they need (or -errno), so kvmini_argv(0, 0) asks for the size.
 * `kvmini run GUEST -- a b` gives "GUEST" (the path as given), "a", "b";
 * an embedding program sets them with SandboxBuilder::args (none by
 * default).
 */
static inline long kvmini_argv(char *buf, size_t len)
{
    struct kvmini_argv_args a = {
        .buf = KVMINI_ADDR(buf), .len = len, .result = -ENOSYS};
    long status = kvmini_fs_call(KVMINI_PORT_ARGV, &a);
    return (long)kvmini_answer(status, &a.result);
}

/*
 * Splits the `size` bytes that kvmini_argv copied to buf into argv[0..max)
 * and returns the number of arguments (which may be more than max: only the
 * first max are stored). argv[i] points into buf.
 */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
static inline int kvmini_split_args(char *buf, long size, char **argv,
                                    int max)
{
    int argc = 0;
    long start = 0;
    for (long i = 0; i < size; i++) {
        if (buf[i] == '\0') {
            if (argc < max)
                argv[argc] = buf + start;
            argc++;
            start = i + 1;
        }
    }
    return argc;
}

#endif /* KVMINI_H */
