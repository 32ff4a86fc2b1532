/*
 * poll.c - asks poll, ppoll, select and pselect what is ready among the
 * standard streams (stdin is empty, stdout and stderr pipes) and a file
 * named by the first argument, printing each answer. With "wait", waits
 * for stdin without end and prints what it read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void said(const char *what, long result)
{
    printf("%s=%ld errno=%s\n", what, result, result < 0 ? strerror(errno) : "-");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "wait") == 0) {
        struct pollfd in = {0, POLLIN, 0};
        said("poll_stdin", poll(&in, 1, -1));
        char buf[16] = {0};
        said("read", read(0, buf, sizeof buf - 1));
        printf("revents=%#x read=%s", in.revents, buf);
        return 0;
    }
    int file = open(argc > 1 ? argv[1] : "f", O_RDWR);
    struct pollfd fds[5] = {
        {0, POLLIN, 0}, {1, POLLOUT, 0}, {2, POLLIN | POLLOUT, 0}, {file, POLLIN | POLLOUT, 0}, {50, POLLIN, 0},
    };
    said("poll", poll(fds, 5, 0));
    for (int i = 0; i < 5; i++)
        printf("fd %d revents=%#x\n", fds[i].fd, fds[i].revents);
    struct pollfd none = {-1, POLLIN, 0};
    struct timespec before, after;
    clock_gettime(CLOCK_MONOTONIC, &before);
    said("poll_nothing_100ms", poll(&none, 1, 100));
    struct timespec ts = {0, 50000000};
    said("ppoll_nothing_50ms", ppoll(&none, 1, &ts, 0));
    clock_gettime(CLOCK_MONOTONIC, &after);
    long ms = (after.tv_sec - before.tv_sec) * 1000 + (after.tv_nsec - before.tv_nsec) / 1000000;
    printf("waited_at_least_150ms=%d\n", ms >= 150);
    said("poll_bad_pointer", poll((struct pollfd *)8, 1, 0));
    struct timespec bad = {0, 2000000000};
    said("ppoll_bad_timeout", ppoll(&none, 1, &bad, 0));
    fd_set r, w;
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_SET(0, &r);
    FD_SET(file, &r);
    FD_SET(1, &w);
    FD_SET(file, &w);
    struct timeval tv = {0, 0};
    said("select", select(file + 1, &r, &w, 0, &tv));
    printf("read: 0=%d file=%d write: 1=%d file=%d\n", FD_ISSET(0, &r), FD_ISSET(file, &r),
           FD_ISSET(1, &w), FD_ISSET(file, &w));
    FD_ZERO(&r);
    FD_SET(40, &r);
    said("select_closed", select(41, &r, 0, 0, &tv));
    FD_ZERO(&r);
    struct timespec pts = {0, 10000000};
    said("pselect_nothing_10ms", pselect(1, &r, 0, 0, &pts, 0));
    return 0;
}
