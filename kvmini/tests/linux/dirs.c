/* Paths from the working directory and from directory descriptors: each
 * step prints its result or its errno, so that a run in kvmini and a
 * native run in a copy of the same tree print the same lines. Only
 * relative paths are used (the tree's place differs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void show(const char *what, long r) {
    if (r < 0)
        printf("%s = -1 %s\n", what, strerror(errno));
    else
        printf("%s = %ld\n", what, r >= 3 ? 3 : r);
}

static void read_all(const char *what, int fd) {
    char buf[64] = {0};
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (n < 0)
        printf("%s: -1 %s\n", what, strerror(errno));
    else
        printf("%s: %s", what, buf);
    if (fd >= 0)
        close(fd);
}

int main(void) {
    struct stat st;
    read_all("open a/f", open("a/f", O_RDONLY));
    read_all("open ./a/b/../f", open("./a/b/../f", O_RDONLY));
    int a = open("a", O_RDONLY | O_DIRECTORY);
    show("open a", a);
    read_all("openat(a, f)", openat(a, "f", O_RDONLY));
    read_all("openat(a, b/g)", openat(a, "b/g", O_RDONLY));
    read_all("openat(a, missing)", openat(a, "missing", O_RDONLY));
    show("newfstatat(a, b)", fstatat(a, "b", &st, 0));
    printf("b is a directory: %d\n", S_ISDIR(st.st_mode));
    if (fstatat(a, "f", &st, 0) == 0)
        printf("newfstatat(a, f) size = %ld\n", (long)st.st_size);
    int f = openat(a, "f", O_RDONLY);
    read_all("openat(file, x)", openat(f, "x", O_RDONLY));
    show("newfstatat(file, x)", fstatat(f, "x", &st, 0));
    read_all("openat(99, f)", openat(99, "f", O_RDONLY));
    read_all("openat(1, f)", openat(1, "f", O_RDONLY));
    close(f);
    int c = openat(a, "new", O_WRONLY | O_CREAT | O_EXCL, 0644);
    show("openat(a, new, O_CREAT)", c);
    show("write new", write(c, "made\n", 5));
    close(c);
    read_all("open a/new", open("a/new", O_RDONLY));
    show("chdir a/b", chdir("a/b"));
    read_all("open g", open("g", O_RDONLY));
    read_all("open ../f", open("../f", O_RDONLY));
    show("chdir missing", chdir("missing"));
    show("chdir g (a file)", chdir("g"));
    show("chdir empty", chdir(""));
    show("fchdir a", fchdir(a));
    read_all("open f after fchdir", open("f", O_RDONLY));
    show("fchdir 1", fchdir(1));
    show("fchdir 99", fchdir(99));
    show("chdir ..", chdir(".."));
    read_all("open a/f from ..", open("a/f", O_RDONLY));
    char small[2];
    show("getcwd(1 byte)", getcwd(small, 1) ? 0 : -1);
    return 0;
}
