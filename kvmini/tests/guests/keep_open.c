/*
 * keep_open.c - opens three files and a directory in its grant, prints
 * each descriptor with printVal, and exits without closing any of them:
 * what a reset must close, since the guest did not.
 */
#include "kvmini.h"

int main(void)
{
    printVal((uint32_t)open("/a.txt", O_RDWR | O_CREAT, 0644));
    printVal((uint32_t)open("/b.txt", O_WRONLY | O_CREAT, 0644));
    printVal((uint32_t)open("/a.txt", O_RDONLY, 0));
    printVal((uint32_t)open("/", O_RDONLY | O_DIRECTORY, 0));
    return 0;
}
