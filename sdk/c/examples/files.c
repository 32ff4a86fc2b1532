/*
 * The filesystem demo: POSIX-style calls on the guest's "/", which kvmini
 * maps to the host directory granted with --dir. It creates, writes, reads,
 * stats, renames, lists and removes a file and a directory, checks a few
 * error returns, and leaves the directory as it found it.
 *
 * Build and run (from the repository root; the directory should be empty):
 *   cc -O2 -ffreestanding -fno-pic -no-pie -nostdlib -static \
 *      -fno-stack-protector -mno-red-zone -I sdk/c -T sdk/c/guest.ld \
 *      -o /tmp/files.elf sdk/c/examples/files.c
 *   mkdir -p /tmp/files-dir
 *   ./target/release/kvmini run /tmp/files.elf --dir /tmp/files-dir
 *
 * Expected stdout is in files.expected, byte for byte. The exit status is
 * 0 if every call returned what it should, 1 otherwise; a line ending in
 * " <- unexpected" marks each call that did not.
 */
#include "kvmini.h"

static const char text[] = "Hello from a kvmini guest file!\n";
#define TEXT_LEN (sizeof(text) - 1)

static int failures;

/* Appends s to the line being built at *p. */
static char *append(char *p, const char *s)
{
    while (*s != '\0')
        *p++ = *s++;
    return p;
}

/* Appends v in decimal. */
static char *append_long(char *p, long v)
{
    char digits[24];
    int n = 0;
    unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
    if (v < 0)
        *p++ = '-';
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    while (n > 0)
        *p++ = digits[--n];
    return p;
}

/* Displays "label: got" and counts a failure unless got == want. */
static void check(const char *label, long got, long want)
{
    char line[128];
    char *p = append(line, label);
    p = append(p, ": ");
    p = append_long(p, got);
    if (got != want) {
        p = append(p, " <- unexpected");
        failures++;
    }
    p = append(p, "\n");
    *p = '\0';
    display(line);
}

/* Displays "label: ok", or the raw result when it is an error. */
static void check_ok(const char *label, long got)
{
    if (got >= 0) {
        char line[128];
        char *p = append(line, label);
        p = append(p, ": ok\n");
        *p = '\0';
        display(line);
    } else {
        check(label, got, 0);
    }
}

/* Counts a failure, and says so, unless got == want; quiet otherwise. */
static void expect(const char *label, long got, long want)
{
    if (got != want)
        check(label, got, want);
}

/* Lists dir's entries other than "." and ".."; returns how many. */
static int list(const char *dir)
{
    /* Aligned for the 8-byte fields of each record. */
    static char buf[512] __attribute__((aligned(8)));
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        check("open dir", fd, 0);
        return -1;
    }
    int count = 0;
    ssize_t n;
    while ((n = getdents64(fd, buf, sizeof(buf))) > 0) {
        for (ssize_t pos = 0; pos < n;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + pos);
            const char *name = d->d_name;
            pos += d->d_reclen;
            if (name[0] == '.' &&
                (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
                continue;
            char line[NAME_MAX + 16];
            char *p = append(line, "  ");
            p = append(p, name);
            p = append(p, d->d_type == DT_REG ? " (file)\n" : "\n");
            *p = '\0';
            display(line);
            count++;
        }
    }
    expect("getdents64", n, 0);
    expect("close dir", close(fd), 0);
    return count;
}

int main(void)
{
    display("kvmini C SDK: filesystem demo\n");

    int fd = open("/hello.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    check_ok("open /hello.txt", fd);
    check("write", write(fd, text, TEXT_LEN), (long)TEXT_LEN);
    check("lseek", lseek(fd, 0, SEEK_SET), 0);

    char buf[64];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    check("read", n, (long)TEXT_LEN);
    buf[n > 0 ? n : 0] = '\0';
    display(buf);
    check("same bytes", memcmp(buf, text, TEXT_LEN), 0);
    check("read at end", read(fd, buf, sizeof(buf)), 0);

    /* "kvmini" starts at offset 13 of the text. */
    n = pread(fd, buf, 6, 13);
    check("pread", n, 6);
    buf[n > 0 ? n : 0] = '\0';
    display("pread text: ");
    display(buf);
    display("\n");
    check("pwrite", pwrite(fd, "J", 1, 0), 1);
    check("offset after pread/pwrite", lseek(fd, 0, SEEK_CUR), (long)TEXT_LEN);

    struct stat st;
    check("fstat", fstat(fd, &st), 0);
    check("S_ISREG", S_ISREG(st.st_mode), 1);
    display("st_size by printVal:\n");
    printVal((uint32_t)st.st_size);
    expect("st_size", st.st_size, (long)TEXT_LEN);

    check("fsync", fsync(fd), 0);
    check("ftruncate", ftruncate(fd, 5), 0);
    check("lseek end", lseek(fd, 0, SEEK_END), 5);
    check("close", close(fd), 0);

    check("mkdir /sub", mkdir("/sub", 0755), 0);
    check("stat /sub", stat("/sub", &st), 0);
    check("S_ISDIR", S_ISDIR(st.st_mode), 1);
    check("rename", rename("/hello.txt", "/sub/hello.txt"), 0);

    fd = open("/sub/hello.txt", O_RDONLY);
    check_ok("open /sub/hello.txt", fd);
    n = read(fd, buf, sizeof(buf) - 1);
    check("read", n, 5);
    buf[n > 0 ? n : 0] = '\0';
    display("it now holds: ");
    display(buf);
    display("\n");
    check("close", close(fd), 0);

    display("/sub:\n");
    check("entries", list("/sub"), 1);

    /* Error returns. */
    check("open missing", open("/missing.txt", O_RDONLY), -ENOENT);
    check("stat old name", stat("/hello.txt", &st), -ENOENT);
    check("mkdir existing", mkdir("/sub", 0755), -EEXIST);
    check("rmdir non-empty", rmdir("/sub"), -ENOTEMPTY);
    check("close bad fd", close(99), -EBADF);
    check("create excl existing",
          open("/sub/hello.txt", O_WRONLY | O_CREAT | O_EXCL, 0644), -EEXIST);

    check("unlink", unlink("/sub/hello.txt"), 0);
    check("rmdir", rmdir("/sub"), 0);
    check("stat removed", stat("/sub", &st), -ENOENT);

    display(failures == 0 ? "files: ok\n" : "files: FAILED\n");
    return failures == 0 ? 0 : 1;
}
