/* A program whose system calls the trace tests know one by one: it reads
 * a granted file and writes it out, opens a file that is not there, makes
 * a call kvmini does not serve, writes a string with escapes, prints a
 * line through stdio, and exits with 3; with the argument "abort" it
 * aborts. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "abort") == 0)
        abort();
    char buf[64];
    int fd = open("/data/in.txt", O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0 && write(1, buf, n) != n)
        return 1;
    close(fd);
    if (open("/data/missing", O_RDONLY) != -1)
        return 2;
    syscall(0x1c3, 1, 2, 3);
    if (write(1, "a\tb\\\"\001\n", 7) != 7)
        return 1;
    printf("read %d bytes\n", (int)n);
    return 3;
}
