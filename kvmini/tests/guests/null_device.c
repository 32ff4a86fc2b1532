/*
 * null_device.c - an SDK guest, run with no grant at all, uses /dev/null:
 * each check that fails ends the run with its own status; 0 when all hold.
 */
#include "kvmini.h"

int main(void)
{
    char buf[8] = "hello";
    struct stat st;
    int fd = open("/dev/null", O_RDWR, 0);
    if (fd != 3)
        return 10;
    if (write(fd, buf, 5) != 5)
        return 11;
    if (read(fd, buf, sizeof buf) != 0)
        return 12;
    if (lseek(fd, 7, SEEK_SET) != 0)
        return 13;
    if (fstat(fd, &st) != 0 || st.st_mode != 020666 || st.st_rdev != 0x103)
        return 14;
    if (stat("//dev/./null", &st) != 0 || st.st_mode != 020666)
        return 15;
    if (open("/dev/null", O_RDONLY | O_DIRECTORY, 0) != -ENOTDIR)
        return 16;
    if (open("/dev/nul", O_RDONLY, 0) != -ENOENT)
        return 17;
    if (close(fd) != 0)
        return 18;
    return 0;
}
