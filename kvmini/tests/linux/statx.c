/*
 * statx.c - asks statx about files in the working directory (f, a file of
 * 6 bytes dated 2020-09-13; link -> f; d/) and prints the answers (the
 * time of regular files only: the others are made when the test runs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct ts {
    int64_t sec;
    uint32_t nsec;
    int32_t pad;
};
struct sx {
    uint32_t mask, blksize;
    uint64_t attributes;
    uint32_t nlink, uid, gid;
    uint16_t mode, pad;
    uint64_t ino, size, blocks, attributes_mask;
    struct ts atime, btime, ctime, mtime;
    uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
    uint64_t spare[14];
};

static long sx(int dirfd, const char *path, int flags, struct sx *buf)
{
    return syscall(332, dirfd, path, flags, 0x7ff, buf);
}

static void show(const char *what, int dirfd, const char *path, int flags)
{
    struct sx st;
    memset(&st, 0, sizeof st);
    long r = sx(dirfd, path, flags, &st);
    if (r < 0) {
        printf("%s: %s\n", what, strerror(errno));
        return;
    }
    printf("%s: basic=%d type=%o perm=%o size=%llu nlink=%u mine=%d mtime=%lld\n", what,
           (st.mask & 0x7ff) == 0x7ff, st.mode & 0170000, st.mode & 07777,
           (unsigned long long)st.size, st.nlink, st.uid == getuid() && st.gid == getgid(),
           (st.mode & 0170000) == 0100000 ? (long long)st.mtime.sec : 0LL);
}

int main(void)
{
    show("f", AT_FDCWD, "f", 0);
    show("link", AT_FDCWD, "link", 0);
    show("link_nofollow", AT_FDCWD, "link", AT_SYMLINK_NOFOLLOW);
    show("d", AT_FDCWD, "d/", 0);
    int fd = open("f", O_RDONLY);
    show("fd_empty_path", fd, "", AT_EMPTY_PATH);
    int dir = open("d", O_RDONLY | O_DIRECTORY);
    show("from_dirfd", dir, "../f", 0);
    show("missing", AT_FDCWD, "missing", 0);
    show("empty_without_flag", fd, "", 0);
    show("bad_flags", AT_FDCWD, "f", 0x40000000);
    long r = sx(AT_FDCWD, "f", 0, (struct sx *)8);
    printf("bad_buffer: %s\n", r < 0 ? strerror(errno) : "ok");
    return 0;
}
