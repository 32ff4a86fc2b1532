/* /dev/null as a program sees it: printed the same in kvmini and natively. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* struct statx's first fields and its device numbers (musl has no statx). */
struct sx {
    unsigned mask, blksize;
    unsigned long long attributes;
    unsigned nlink, uid, gid;
    unsigned short mode, pad;
    unsigned long long ino, size, blocks, attributes_mask, times[8];
    unsigned rdev_major, rdev_minor, dev_major, dev_minor;
    unsigned long long spare[14];
};

static void show(const char *what, long r) {
    printf("%s = %ld", what, r);
    if (r < 0) printf(" (%s)", strerror(errno));
    printf("\n");
}

int main(void) {
    int fd = open("/dev/null", O_RDWR | O_CREAT | O_TRUNC, 0600);
    show("open rdwr creat trunc", fd >= 3 ? 0 : fd);
    show("write", write(fd, "hello", 5));
    char buf[16];
    show("read", read(fd, buf, sizeof buf));
    show("pread", pread(fd, buf, sizeof buf, 100));
    show("lseek set 10", lseek(fd, 10, SEEK_SET));
    show("lseek end -3", lseek(fd, -3, SEEK_END));
    struct stat st;
    show("fstat", fstat(fd, &st));
    printf("mode %o rdev %u:%u size %ld nlink %ld uid %u\n", st.st_mode,
           major(st.st_rdev), minor(st.st_rdev), (long)st.st_size,
           (long)st.st_nlink, st.st_uid);
    show("stat //dev/./null", stat("//dev/./null", &st));
    printf("mode %o\n", st.st_mode);
    struct sx sx;
    show("statx", syscall(SYS_statx, AT_FDCWD, "/dev/null", 0, 0x7ff, &sx));
    printf("statx mode %o rdev %u:%u\n", sx.mode, sx.rdev_major, sx.rdev_minor);
    int copy = dup(fd);
    show("dup write", write(copy, "x", 1));
    show("fcntl getfl accmode", fcntl(copy, F_GETFL) & O_ACCMODE);
    show("getdents64", syscall(SYS_getdents64, fd, buf, sizeof buf));
    show("openat from it", openat(fd, "x", O_RDONLY));
    show("ftruncate", ftruncate(fd, 0));
    show("fsync", fsync(fd));
    show("access w", access("/dev/null", W_OK));
    show("access x", access("/dev/null", X_OK));
    show("open o_directory", open("/dev/null", O_RDONLY | O_DIRECTORY));
    show("open trailing slash", open("/dev/null/", O_RDONLY));
    int wr = open("/dev/null", O_WRONLY);
    show("write only then read", read(wr, buf, 1));
    int rd = open("/dev/null", O_RDONLY);
    show("read only then write", write(rd, "x", 1));
    show("close", close(fd));
    return 0;
}
