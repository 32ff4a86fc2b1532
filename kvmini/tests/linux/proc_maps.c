/* Reads /proc/self/maps after an mmap, an mprotect and a brk, and prints
 * what it read with the addresses a reader checks the lines against, then
 * what the file's descriptor calls answer. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char text[1 << 16];
int data_word = 1;

static size_t read_all(int fd, char *buf, size_t cap, size_t chunk) {
    size_t got = 0;
    for (;;) {
        size_t want = cap - got < chunk ? cap - got : chunk;
        ssize_t n = read(fd, buf + got, want);
        if (n <= 0) return got;
        got += (size_t)n;
    }
}

int main(void) {
    char *p = mmap(0, 0x3000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(p + 0x1000, 0x1000, PROT_READ) != 0) return 1;
    long brk0 = syscall(SYS_brk, 0);
    syscall(SYS_brk, brk0 + 0x3000);
    int local = 0;
    int fd = open("/proc/self/maps", O_RDONLY);
    if (fd < 0) return 2;
    size_t n = read_all(fd, text, sizeof text, 100);
    printf("mapping=%lx brk=%lx local=%lx main=%lx data=%lx\n", (unsigned long)p,
           (unsigned long)brk0, (unsigned long)&local, (unsigned long)main,
           (unsigned long)&data_word);
    fwrite(text, 1, n, stdout);
    printf("--\n");
    char head[16] = {0};
    int r = (int)pread(fd, head, 15, 0);
    printf("pread=%d same=%d\n", r, memcmp(head, text, 15) == 0);
    long at = (long)lseek(fd, 5, SEEK_SET);
    printf("lseek=%ld end=%ld\n", at, (long)lseek(fd, 0, SEEK_END));
    int copy = dup(fd);
    char c = 0;
    r = (int)read(copy, &c, 1);
    printf("dup_read=%d same=%d\n", r, c == text[5]);
    struct stat st;
    r = fstat(fd, &st);
    printf("fstat=%d mode=%o size=%ld\n", r, (unsigned)st.st_mode, (long)st.st_size);
    errno = 0;
    r = (int)write(fd, "x", 1);
    printf("write=%d errno=%d\n", r, errno);
    r = close(fd);
    printf("close=%d %d\n", r, close(copy));
    errno = 0;
    r = open("/proc/self/maps", O_RDWR);
    printf("rdwr=%d errno=%d\n", r, errno);
    errno = 0;
    r = open("/proc/self/status", O_RDONLY);
    printf("status=%d errno=%d\n", r, errno);
    int one = open("/proc/1/maps", O_RDONLY);
    printf("pid1=%d\n", one >= 0 && read_all(one, text, sizeof text, 4096) == n);
    memset(&st, 0, sizeof st);
    r = stat("/proc/self/maps", &st);
    printf("stat=%d mode=%o\n", r, (unsigned)st.st_mode);
    printf("access_r=%d\n", access("/proc/self/maps", R_OK));
    return 0;
}
