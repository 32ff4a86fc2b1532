/*
 * attrs.c - changes the mode, times, size and names of files in the
 * working directory (a tree made by the test: f, g, d/, x, y, link -> f)
 * and prints what each call answered and what the files then are. With
 * the argument "ro", tries the same changes on a tree it may not change.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

static void said(const char *what, long result)
{
    printf("%s=%ld errno=%s\n", what, result, result < 0 ? strerror(errno) : "-");
}

static void show(const char *path, int times)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        printf("%s: %s\n", path, strerror(errno));
        return;
    }
    printf("%s: mode=%o size=%lld", path, (unsigned)(st.st_mode & 07777), (long long)st.st_size);
    if (times)
        printf(" atime=%lld.%09ld mtime=%lld.%09ld", (long long)st.st_atim.tv_sec,
               st.st_atim.tv_nsec, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    printf("\n");
}

static void contents(const char *path)
{
    char buf[64] = {0};
    int fd = open(path, O_RDONLY);
    long n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    printf("%s holds \"%s\" (%ld)\n", path, n > 0 ? buf : "", n);
    if (fd >= 0)
        close(fd);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "ro") == 0) {
        said("chmod", chmod("f", 0600));
        said("truncate", truncate("f", 1));
        said("utimensat", utimensat(AT_FDCWD, "f", 0, 0));
        said("chown_same", chown("f", getuid(), getgid()));
        int fd = open("f", O_RDONLY);
        said("fchmod", fchmod(fd, 0600));
        said("futimens", futimens(fd, 0));
        said("renameat2_noreplace", syscall(SYS_renameat2, AT_FDCWD, "f", AT_FDCWD, "new", 1));
        said("chmod_missing", chmod("missing", 0600));
        return 0;
    }
    if (argc > 2 && strcmp(argv[1], "fd") == 0) {
        int fd = open(argv[2], O_RDONLY);
        said("open", fd);
        said("fchmod", fchmod(fd, 0600));
        said("futimens", futimens(fd, 0));
        said("fchown_same", fchown(fd, getuid(), getgid()));
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "setid") == 0) {
        said("chmod_setid", chmod("f", 06755));
        show("f", 0);
        return 0;
    }
    said("chmod", chmod("f", 0640));
    said("chmod_dir", chmod("d", 0700));
    said("chmod_through_link", chmod("link", 0604));
    show("f", 1);
    said("chmod_missing", chmod("missing", 0600));
    said("fchmodat", fchmodat(AT_FDCWD, "g", 0611, 0));
    said("fchmodat2_nofollow_link", syscall(452, AT_FDCWD, "link", 0600, AT_SYMLINK_NOFOLLOW));
    int fd = open("g", O_RDWR);
    said("fchmod", fchmod(fd, 01751));
    show("g", 1);
    said("truncate", truncate("f", 3));
    said("truncate_grow", truncate("g", 10));
    said("truncate_dir", truncate("d", 0));
    said("truncate_negative", truncate("f", -1));
    said("truncate_missing", truncate("missing", 0));
    show("f", 0);
    show("g", 0);
    struct timespec ts[2] = {{1000000000, 5}, {0, UTIME_OMIT}};
    said("utimensat_atime", utimensat(AT_FDCWD, "f", ts, 0));
    struct timespec fm[2] = {{0, UTIME_OMIT}, {1300000000, 9}};
    said("utimensat_mtime", utimensat(AT_FDCWD, "f", fm, 0));
    struct timespec mt[2] = {{0, UTIME_OMIT}, {1234567890, 123456789}};
    said("futimens_mtime", futimens(fd, mt));
    struct timespec bad[2] = {{0, 2000000000}, {0, 0}};
    said("utimensat_bad_nsec", utimensat(AT_FDCWD, "f", bad, 0));
    said("utimensat_null_path_cwd", syscall(SYS_utimensat, AT_FDCWD, 0, mt, 0));
    struct timeval tv[2] = {{1500000000, 7}, {1600000000, 8}};
    said("utimes", utimes("d", tv));
    struct timespec both[2] = {{1100000000, 0}, {1200000000, 0}};
    said("utimensat_dirfd_empty", utimensat(fd, "", both, AT_EMPTY_PATH));
    show("f", 1);
    show("g", 1);
    show("d", 1);
    said("chown_same", chown("f", getuid(), getgid()));
    said("chown_unchanged", fchown(fd, -1, -1));
    said("lchown_link", lchown("link", -1, getgid()));
    said("renameat2_noreplace_exists", syscall(SYS_renameat2, AT_FDCWD, "x", AT_FDCWD, "y", 1));
    said("renameat2_noreplace_new", syscall(SYS_renameat2, AT_FDCWD, "x", AT_FDCWD, "x2", 1));
    said("renameat2_exchange", syscall(SYS_renameat2, AT_FDCWD, "x2", AT_FDCWD, "y", 2));
    said("renameat2_exchange_missing", syscall(SYS_renameat2, AT_FDCWD, "x2", AT_FDCWD, "none", 2));
    said("renameat2_both", syscall(SYS_renameat2, AT_FDCWD, "x2", AT_FDCWD, "y", 3));
    contents("x2");
    contents("y");
    close(fd);
    return 0;
}
