/* Descriptors and the calls on names: each step prints its result or its
 * errno, so that a run in kvmini and a native run in a copy of the same
 * tree print the same lines (relative paths only). With the argument
 * "refused", the calls kvmini refuses (links and device nodes);
 * "nonblock" sets O_NONBLOCK on descriptor 1, "getfl" reports it;
 * "rofs" asks access() about writing a file under a read-only grant;
 * "readlink" reads links (and /proc/self/exe with one more argument). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void show(const char *what, long r) {
    if (r < 0)
        printf("%s = -1 %s\n", what, strerror(errno));
    else
        printf("%s = %ld\n", what, r);
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list(const char *dir) {
    DIR *d = opendir(dir);
    char *names[64];
    int n = 0;
    struct dirent *e;
    if (!d) {
        printf("opendir %s: %s\n", dir, strerror(errno));
        return;
    }
    while ((e = readdir(d)) && n < 64)
        names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    printf("%s:", dir);
    for (int i = 0; i < n; i++)
        printf(" %s", names[i]);
    printf("\n");
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "refused") == 0) {
        show("symlink", symlink("f", "s"));
        show("link", link("f", "l"));
        show("mknod", mknod("n", S_IFIFO | 0600, 0));
        show("renameat2 whiteout", syscall(SYS_renameat2, AT_FDCWD, "f", AT_FDCWD, "g", 4));
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "nonblock") == 0) {
        show("F_SETFL(1, O_NONBLOCK)", fcntl(1, F_SETFL, O_NONBLOCK));
        show("F_GETFL(1) has O_NONBLOCK", !!(fcntl(1, F_GETFL) & O_NONBLOCK));
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "rofs") == 0) {
        show("access(f, W_OK)", access("f", W_OK));
        show("access(f, R_OK)", access("f", R_OK));
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "getfl") == 0) {
        show("F_GETFL(1) has O_NONBLOCK", !!(fcntl(1, F_GETFL) & O_NONBLOCK));
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "readlink") == 0) {
        char buf[256];
        ssize_t n;
        if (argc > 2) {
            n = readlink("/proc/self/exe", buf, sizeof buf);
            printf("exe = %.*s\n", (int)(n < 0 ? 0 : n), buf);
        }
        n = readlink("link", buf, sizeof buf);
        printf("link = %.*s\n", (int)(n < 0 ? 0 : n), buf);
        show("readlink(link, 3)", readlink("link", buf, 3));
        int d = open(".", O_RDONLY | O_DIRECTORY);
        show("readlinkat(., link)", readlinkat(d, "link", buf, sizeof buf));
        show("readlink(file)", readlink("file", buf, sizeof buf));
        show("readlink(missing)", readlink("missing", buf, sizeof buf));
        show("readlink(link, 0)", readlink("link", buf, 0));
        return 0;
    }
    show("umask(077)", umask(077));
    show("umask(022)", umask(022));
    umask(027);
    int f = open("f", O_RDWR | O_CREAT | O_APPEND, 0666);
    show("open f", f);
    struct stat st;
    fstat(f, &st);
    printf("mode %o\n", st.st_mode & 0777);
    show("write", write(f, "abcdef", 6));
    show("F_GETFL", fcntl(f, F_GETFL) & ~O_LARGEFILE);
    show("F_SETFL O_NONBLOCK", fcntl(f, F_SETFL, O_NONBLOCK | O_APPEND));
    show("F_GETFL has O_NONBLOCK", !!(fcntl(f, F_GETFL) & O_NONBLOCK));
    show("F_GETFD", fcntl(f, F_GETFD));
    show("F_SETFD", fcntl(f, F_SETFD, FD_CLOEXEC));
    show("F_GETFD after", fcntl(f, F_GETFD));
    int g = dup(f);
    show("dup", g);
    show("dup's F_GETFD", fcntl(g, F_GETFD));
    show("lseek(f, 1)", lseek(f, 1, SEEK_SET));
    show("dup shares the offset", lseek(g, 0, SEEK_CUR));
    show("dup2(f, 9)", dup2(f, 9));
    show("dup2(f, f)", dup2(f, f));
    show("dup3(f, f)", dup3(f, f, 0));
    show("dup3(f, 10, 1)", dup3(f, 10, 1));
    show("dup3(f, 10, O_CLOEXEC)", dup3(f, 10, O_CLOEXEC));
    show("dup3's F_GETFD", fcntl(10, F_GETFD));
    show("F_DUPFD 20", fcntl(f, F_DUPFD, 20));
    show("F_DUPFD_CLOEXEC 20", fcntl(f, F_DUPFD_CLOEXEC, 20));
    show("F_DUPFD -1", fcntl(f, F_DUPFD, -1));
    show("dup(99)", dup(99));
    show("dup2(99, 5)", dup2(99, 5));
    show("dup2(f, -1)", dup2(f, -1));
    show("fcntl(99, F_GETFD)", fcntl(99, F_GETFD));
    show("fcntl(f, 12345)", fcntl(f, 12345));
    show("close 9", close(9));
    show("read via 20", pread(20, (char[8]){0}, 8, 0));
    show("ftruncate 3", ftruncate(g, 3));
    fstat(f, &st);
    show("size", st.st_size);
    show("ftruncate -1", ftruncate(g, -1));
    show("fsync", fsync(f));
    show("fdatasync", fdatasync(f));
    show("fsync(1)", fsync(1));
    show("mkdir d", mkdir("d", 0777));
    stat("d", &st);
    printf("d mode %o\n", st.st_mode & 0777);
    int d = open("d", O_RDONLY | O_DIRECTORY);
    show("mkdirat(d, e)", mkdirat(d, "e", 0700));
    show("mkdirat(d, e) again", mkdirat(d, "e", 0700));
    show("renameat(., f, d, f2)", renameat(AT_FDCWD, "f", d, "f2"));
    list("d");
    show("unlinkat(d, e)", unlinkat(d, "e", 0));
    show("unlinkat(d, e, AT_REMOVEDIR)", unlinkat(d, "e", AT_REMOVEDIR));
    show("unlinkat(d, f2, 12)", unlinkat(d, "f2", 12));
    show("rename d/f2 top", rename("d/f2", "top"));
    show("rmdir d", rmdir("d"));
    show("rmdir missing", rmdir("missing"));
    show("unlink top", unlink("top"));
    show("unlink missing", unlink("missing"));
    list(".");
    int x = open("x", O_WRONLY | O_CREAT, 0755);
    close(x);
    show("access(x, F_OK)", access("x", F_OK));
    show("access(x, R_OK|W_OK|X_OK)", access("x", R_OK | W_OK | X_OK));
    show("access(., X_OK)", access(".", X_OK));
    show("access(missing)", access("missing", F_OK));
    show("access(x, 8)", access("x", 8));
    show("faccessat(., x, R_OK)", faccessat(AT_FDCWD, "x", R_OK, AT_EACCESS));
    show("faccessat(., x, bad flag)", faccessat(AT_FDCWD, "x", R_OK, 0x4));
    unlink("x");
    show("getdents64 of a file", syscall(SYS_getdents64, 1, (char[64]){0}, 64));
    return 0;
}
