/*
 * Attempts to reach outside the granted directories, and to change a
 * read-only one, for kvmini/tests/fs_escape.rs. One build per part
 * (-DPART_DOTDOT, -DPART_SYMLINKS, -DPART_PROC, -DPART_RO, -DPART_RO_CREAT,
 * -DPART_LIMITS, -DPART_XDEV); each prints "what: result" lines, which the
 * test compares exactly, and the test checks the host directories after.
 *
 * The host layout (made by the test): T/grant is granted, T/outside is its
 * sibling with secret.txt ("top secret\n") and subdir/.
 */
#include "kvmini.h"
static inline void emit(const char *s)
{
    display(s);
}
#include "testfmt.h"

static struct line out;

/* Each part uses some of the helpers. */
#define HELPER static __attribute__((unused))

/* "what: r" */
HELPER void show(const char *what, long r)
{
    l_str(&out, what);
    l_str(&out, ": ");
    l_long(&out, r);
    l_emit(&out);
}

/* "what: r" for open(path, flags), then the contents if it opened. */
HELPER void show_open(const char *what, const char *path, int flags)
{
    int fd = open(path, flags, 0644);
    l_str(&out, what);
    l_str(&out, ": ");
    l_long(&out, fd);
    if (fd >= 0) {
        char buf[64];
        long n = read(fd, buf, sizeof(buf));
        l_char(&out, ' ');
        if (n >= 0)
            l_quoted(&out, buf, (size_t)n);
        else
            l_long(&out, n);
        close(fd);
    }
    l_emit(&out);
}

/* "what: r", and the file type when stat succeeded. */
HELPER void show_stat(const char *what, const char *path)
{
    struct stat st;
    long r = stat(path, &st);
    l_str(&out, what);
    l_str(&out, ": ");
    l_long(&out, r);
    if (r == 0) {
        l_str(&out, " type ");
        l_octal(&out, st.st_mode & S_IFMT);
    }
    l_emit(&out);
}

/* "list path: name name ..." (sorted), or the error. */
HELPER void show_list_fd(const char *what, int fd)
{
    static char buf[4096] __attribute__((aligned(8)));
    static char names[32][64];
    int count = 0;
    long n;
    while ((n = getdents64(fd, buf, sizeof(buf))) > 0) {
        for (long pos = 0; pos < n;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + pos);
            if (count < 32)
                str_copy(names[count++], sizeof(names[0]), d->d_name);
            pos += d->d_reclen;
        }
    }
    for (int i = 1; i < count; i++) {
        char tmp[64];
        str_copy(tmp, sizeof(tmp), names[i]);
        int j = i;
        for (; j > 0 && str_cmp(names[j - 1], tmp) > 0; j--)
            str_copy(names[j], sizeof(names[0]), names[j - 1]);
        str_copy(names[j], sizeof(names[0]), tmp);
    }
    l_str(&out, what);
    l_str(&out, ": ");
    l_long(&out, n);
    for (int i = 0; i < count; i++) {
        l_char(&out, ' ');
        l_str(&out, names[i]);
    }
    l_emit(&out);
}

HELPER void show_list(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        show(path, fd);
        return;
    }
    struct line what;
    l_reset(&what);
    l_str(&what, "list ");
    l_str(&what, path);
    show_list_fd(what.buf, fd);
    close(fd);
}

#ifdef PART_DOTDOT
/* ".." stops at the guest's "/": outside names are looked up inside. */
static void part(void)
{
    show_open("open ../outside/secret.txt", "../outside/secret.txt", O_RDONLY);
    show_open("open /../outside/secret.txt", "/../outside/secret.txt",
              O_RDONLY);
    show_open("open ../../../../etc/passwd", "../../../../etc/passwd",
              O_RDONLY);
    show_open("open /../../../etc/passwd", "/../../../etc/passwd", O_RDONLY);
    show_open("open /etc/passwd", "/etc/passwd", O_RDONLY);
    show_open("open sub/../../outside/secret.txt",
              "sub/../../outside/secret.txt", O_RDONLY);
    show_open("open ../file.txt", "../file.txt", O_RDONLY);
    show_stat("stat ../outside/secret.txt", "../outside/secret.txt");
    show_stat("stat ../outside", "../outside");
    struct stat root, up;
    long r1 = stat("/", &root);
    long r2 = stat("../..", &up);
    show("stat / and ../..", r1 + r2);
    show("same inode", root.st_ino == up.st_ino && root.st_dev == up.st_dev);
    show("create ../outside/new.txt",
         open("../outside/new.txt", O_WRONLY | O_CREAT, 0644));
    show("mkdir ../outside/newdir", mkdir("../outside/newdir", 0755));
    show("unlink ../outside/secret.txt", unlink("../outside/secret.txt"));
    show("rmdir ../outside/subdir", rmdir("../outside/subdir"));
    show("rmdir ..", rmdir(".."));
    show("rename file.txt ../outside/x", rename("file.txt", "../outside/x"));
    show("rename ../outside/secret.txt stolen.txt",
         rename("../outside/secret.txt", "stolen.txt"));
    show_list("/..");
    show_list("../../sub/..");
}
#endif

#ifdef PART_SYMLINKS
/* Symlinks out of the grant, absolute or relative, are EXDEV. */
static void part(void)
{
    show_open("open abs_secret", "abs_secret", O_RDONLY);
    show_open("open abs_secret O_NOFOLLOW", "abs_secret",
              O_RDONLY | O_NOFOLLOW);
    show_stat("stat abs_secret", "abs_secret");
    show_open("open rel_secret", "rel_secret", O_RDONLY);
    show_open("open rel_secret O_WRONLY|O_TRUNC", "rel_secret",
              O_WRONLY | O_TRUNC);
    show_open("open rel_secret O_CREAT", "rel_secret", O_RDWR | O_CREAT);
    show_open("open deep_rel", "deep_rel", O_RDONLY);
    show_open("open etc_link/passwd", "etc_link/passwd", O_RDONLY);
    show_open("open etc_link O_DIRECTORY", "etc_link", O_RDONLY | O_DIRECTORY);
    show_stat("stat etc_link", "etc_link");
    show_open("open out_dir/secret.txt", "out_dir/secret.txt", O_RDONLY);
    show_open("open out_dir O_DIRECTORY", "out_dir", O_RDONLY | O_DIRECTORY);
    show_open("create out_dir/new.txt", "out_dir/new.txt",
              O_WRONLY | O_CREAT);
    show("mkdir out_dir/newdir", mkdir("out_dir/newdir", 0755));
    show("unlink out_dir/secret.txt", unlink("out_dir/secret.txt"));
    show("rmdir out_dir/subdir", rmdir("out_dir/subdir"));
    show("rename file.txt out_dir/x", rename("file.txt", "out_dir/x"));
    show("rename out_dir/secret.txt stolen.txt",
         rename("out_dir/secret.txt", "stolen.txt"));
    show_open("open rel_out_dir/secret.txt", "rel_out_dir/secret.txt",
              O_RDONLY);
    show("mkdir rel_out_dir/newdir", mkdir("rel_out_dir/newdir", 0755));
    show("unlink rel_out_dir/secret.txt", unlink("rel_out_dir/secret.txt"));
    show("rename rel_out_dir/secret.txt stolen.txt",
         rename("rel_out_dir/secret.txt", "stolen.txt"));
    show("rename file.txt rel_out_dir/subdir/x",
         rename("file.txt", "rel_out_dir/subdir/x"));
    show_open("open out_dir/../file.txt", "out_dir/../file.txt", O_RDONLY);
    show_open("open loop_a", "loop_a", O_RDONLY);
    show_stat("stat self_loop", "self_loop");
    show_open("create loop_a/x", "loop_a/x", O_WRONLY | O_CREAT);
    show("mkdir self_loop/x", mkdir("self_loop/x", 0755));
    show_open("open proc_root/etc/passwd", "proc_root/etc/passwd", O_RDONLY);
    show_stat("stat proc_root", "proc_root");
    show_open("open proc_rel/etc/passwd", "proc_rel/etc/passwd", O_RDONLY);
    show_open("open inner_abs", "inner_abs", O_RDONLY);
    show_open("open inner_rel", "inner_rel", O_RDONLY);
    /* Renaming and unlinking the links themselves stays inside. */
    show("rename victim.txt abs_secret", rename("victim.txt", "abs_secret"));
    show_open("open abs_secret", "abs_secret", O_RDONLY);
    show("unlink rel_out_dir", unlink("rel_out_dir"));
    show("rename rel_secret moved_link", rename("rel_secret", "moved_link"));
    show_open("open moved_link", "moved_link", O_RDONLY);
}
#endif

#ifdef PART_PROC
/* /proc granted read-only at /proc: its magic links are ELOOP. */
static void part(void)
{
    show_open("open /proc/self/root/etc/passwd", "/proc/self/root/etc/passwd",
              O_RDONLY);
    show_stat("stat /proc/self/root", "/proc/self/root");
    show_open("open /proc/self/cwd O_DIRECTORY", "/proc/self/cwd",
              O_RDONLY | O_DIRECTORY);
    show_stat("stat /proc/self/exe", "/proc/self/exe");
    show_open("open /proc/self/fd/0", "/proc/self/fd/0", O_RDONLY);
    show_open("open /proc/thread-self/root/etc/passwd",
              "/proc/thread-self/root/etc/passwd", O_RDONLY);
    show_stat("stat /proc/self", "/proc/self");
    show("create /proc/self/root/tmp/x",
         open("/proc/self/root/tmp/x", O_WRONLY | O_CREAT, 0644));
    show_open("open /proc/../outside/secret.txt", "/proc/../outside/secret.txt",
              O_RDONLY);
}
#endif

#ifdef PART_RO
/* "/" is read-only, "/rw" is not: no change to "/" gets through. */
static void part(void)
{
    show("open O_WRONLY", open("file.txt", O_WRONLY));
    show("open O_RDWR", open("file.txt", O_RDWR));
    show("open O_WRONLY|O_APPEND", open("file.txt", O_WRONLY | O_APPEND));
    show("open O_RDONLY|O_TRUNC", open("file.txt", O_RDONLY | O_TRUNC));
    show("open O_WRONLY|O_CREAT existing",
         open("file.txt", O_WRONLY | O_CREAT, 0644));
    show("create new.txt O_WRONLY", open("new.txt", O_WRONLY | O_CREAT, 0644));
    show("create sub/new.txt", open("sub/new.txt", O_RDWR | O_CREAT, 0644));
    show("create new.txt O_RDWR|O_EXCL",
         open("new.txt", O_RDWR | O_CREAT | O_EXCL, 0644));
    int fd = open("file.txt", O_RDONLY);
    show("open O_RDONLY", fd);
    char buf[16];
    show("read", read(fd, buf, sizeof(buf)));
    show("write", write(fd, "x", 1));
    show("pwrite", pwrite(fd, "x", 1, 0));
    show("ftruncate", ftruncate(fd, 0));
    show("fsync", fsync(fd));
    show("close", close(fd));
    show("mkdir newdir", mkdir("newdir", 0755));
    show("mkdir sub", mkdir("sub", 0755));
    show("rmdir empty", rmdir("empty"));
    show("rmdir sub", rmdir("sub"));
    show("unlink file.txt", unlink("file.txt"));
    show("unlink sub/inner.txt", unlink("sub/inner.txt"));
    show("unlink missing.txt", unlink("missing.txt"));
    show("rename file.txt moved.txt", rename("file.txt", "moved.txt"));
    show("rename file.txt sub/file.txt", rename("file.txt", "sub/file.txt"));
    show("rename sub sub2", rename("sub", "sub2"));
    show("rename file.txt /rw/file.txt", rename("file.txt", "/rw/file.txt"));
    show("rename /rw/w.txt /w.txt", rename("/rw/w.txt", "/w.txt"));
    show("rename /rw/w.txt /rw/w2.txt", rename("/rw/w.txt", "/rw/w2.txt"));
    show_stat("stat file.txt", "file.txt");
    show_list("/");
}
#endif

#ifdef PART_RO_CREAT
/*
 * O_RDONLY|O_CREAT in a read-only grant: opens a file that exists, and
 * gives EROFS for one that does not; with O_EXCL, EEXIST for one that
 * exists (Linux's results on a read-only mount).
 */
static void part(void)
{
    int fd = open("file.txt", O_RDONLY | O_CREAT, 0644);
    show("open O_RDONLY|O_CREAT existing", fd);
    if (fd >= 0) {
        char buf[16];
        show("read", read(fd, buf, sizeof(buf)));
        show("close", close(fd));
    }
    show("create new.txt O_RDONLY", open("new.txt", O_RDONLY | O_CREAT, 0644));
    show("create new.txt O_RDONLY|O_EXCL",
         open("new.txt", O_RDONLY | O_CREAT | O_EXCL, 0644));
    show("open O_RDONLY|O_CREAT|O_EXCL existing",
         open("file.txt", O_RDONLY | O_CREAT | O_EXCL, 0644));
    show("open O_RDONLY|O_CREAT existing, mode 0",
         open("file.txt", O_RDONLY | O_CREAT, 0));
    show("open O_RDONLY|O_CREAT|O_EXCL existing, mode 0",
         open("file.txt", O_RDONLY | O_CREAT | O_EXCL, 0));
}
#endif

#ifdef PART_LIMITS
/* Guest memory is 64 MiB: kvmini's own 64 KiB start at 0x3ff0000. */
#define SYSTEM_BASE 0x3ff0000UL

static char path[8192];

/* path = n copies of c, then a NUL. */
static const char *repeat(char c, size_t n)
{
    memset(path, c, n);
    path[n] = '\0';
    return path;
}

/* One call with a raw argument block address: RAX after the `out`. */
static long raw_call(uint16_t port, uint32_t block)
{
    uint64_t rax = block;
    __asm__ volatile("outl %%eax, %1" : "+a"(rax) : "Nd"(port) : "memory");
    return (long)rax;
}

/* Over-long paths give ENAMETOOLONG; bad pointers give EFAULT. */
static void part(void)
{
    struct stat st;
    const char *p = repeat('a', 5000);
    show("open 5000 bytes", open(p, O_RDONLY));
    show("create 5000 bytes", open(p, O_WRONLY | O_CREAT, 0644));
    show("stat 5000 bytes", stat(p, &st));
    show("mkdir 5000 bytes", mkdir(p, 0755));
    show("unlink 5000 bytes", unlink(p));
    show("rmdir 5000 bytes", rmdir(p));
    show("rename from 5000 bytes", rename(p, "x"));
    show("rename to 5000 bytes", rename("file.txt", p));
    show("open 4096 bytes", open(repeat('a', 4096), O_RDONLY));
    /* 4095 bytes and the NUL fit: "d/d/.../d", looked up, not there. */
    for (size_t i = 0; i < 4095; i++)
        path[i] = (i % 2 == 0) ? 'd' : '/';
    path[4095] = '\0';
    show("open 4095 bytes", open(path, O_RDONLY));
    show("open 256-byte name", open(repeat('b', 256), O_RDONLY));
    show("mkdir 256-byte name", mkdir(repeat('b', 256), 0755));
    show("open 255-byte name", open(repeat('b', 255), O_RDONLY));

    show("open NULL", open((const char *)0, O_RDONLY));
    show("create NULL", open((const char *)0, O_WRONLY | O_CREAT, 0644));
    show("stat NULL", stat((const char *)0, &st));
    show("mkdir NULL", mkdir((const char *)0, 0755));
    show("unlink NULL", unlink((const char *)0));
    show("rmdir NULL", rmdir((const char *)0));
    show("rename NULL x", rename((const char *)0, "x"));
    show("rename file.txt NULL", rename("file.txt", (const char *)0));
    show("open 0xf0000000", open((const char *)0xf0000000UL, O_RDONLY));
    show("open system area", open((const char *)(SYSTEM_BASE + 0x100), O_RDONLY));
    show("open 0x800000000000", open((const char *)0x800000000000UL, O_RDONLY));
    show("open 0xffff800000000000",
         open((const char *)0xffff800000000000UL, O_RDONLY));

    int fd = open("file.txt", O_RDWR);
    show("open file.txt", fd);
    show("read to 0xf0000000", read(fd, (void *)0xf0000000UL, 4));
    show("read into the system area",
         read(fd, (void *)(SYSTEM_BASE - 4), 16));
    show("read past the end of memory", read(fd, (void *)0x3000000UL, 0x2000000));
    show("offset", lseek(fd, 0, SEEK_CUR));
    show("write from NULL", write(fd, (const void *)0, 5));
    show("write from 0xf0000000", write(fd, (const void *)0xf0000000UL, 5));
    show("pwrite from the system area",
         pwrite(fd, (const void *)(SYSTEM_BASE - 2), 4, 0));
    show("offset", lseek(fd, 0, SEEK_CUR));
    show("fstat to NULL", fstat(fd, (struct stat *)0));
    show("fstat to 0xf0000000", fstat(fd, (struct stat *)0xf0000000UL));
    show("stat to NULL", stat("file.txt", (struct stat *)0));
    show("stat file.txt", stat("file.txt", &st));
    show("size", st.st_size);
    char buf[16];
    show("read", read(fd, buf, sizeof(buf)));
    show("close", close(fd));
    fd = open("/", O_RDONLY | O_DIRECTORY);
    show("open /", fd);
    show("getdents to 0xf0000000", getdents64(fd, (void *)0xf0000000UL, 4096));
    show_list_fd("list / after", fd);
    close(fd);
    show("open with block at 0xf0000000",
         raw_call(KVMINI_PORT_OPEN, 0xf0000000u));
    show("stat with block at 0", raw_call(KVMINI_PORT_STAT, 0));
    show("rename with block in the system area",
         raw_call(KVMINI_PORT_RENAME, (uint32_t)SYSTEM_BASE));
}
#endif

#ifdef PART_XDEV
/* Two grants: "/" and "/data". A rename cannot cross between them. */
static void part(void)
{
    show("rename /file.txt /data/file.txt",
         rename("/file.txt", "/data/file.txt"));
    show("rename /data/b.txt /b.txt", rename("/data/b.txt", "/b.txt"));
    show("rename /data/b.txt /data/../b.txt",
         rename("/data/b.txt", "/data/../b.txt"));
    show("rename /data/dir2 /dir2", rename("/data/dir2", "/dir2"));
    show("rename /data /moved", rename("/data", "/moved"));
    show("rename /file.txt /data", rename("/file.txt", "/data"));
    show("rename /data/b.txt /data", rename("/data/b.txt", "/data"));
    show("rmdir /data", rmdir("/data"));
    show("unlink /data", unlink("/data"));
    show("mkdir /data", mkdir("/data", 0755));
    show("rmdir /", rmdir("/"));
    show("mkdir /", mkdir("/", 0755));
    show("rename / /x", rename("/", "/x"));
    show_open("open /data/../file.txt", "/data/../file.txt", O_RDONLY);
    show_stat("stat /data", "/data");
    show("rename /data/b.txt /data/dir2/b.txt",
         rename("/data/b.txt", "/data/dir2/b.txt"));
    show_list("/");
    show_list("/data");
    show_list("/data/dir2");
}
#endif

int main(void)
{
    part();
    return 0;
}
