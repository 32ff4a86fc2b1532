/*
 * sigpipe.c - writes to standard output until the reader is gone, with
 * SIGPIPE set as the first argument says: "default", "ignore", "block" or
 * "handle" (a handler that says so on standard error).
 * Where the write fails instead of ending the program, it says so on
 * standard error and exits with 3.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void handler(int sig)
{
    char line[] = "handler ran for 13\n";
    if (sig != SIGPIPE || write(2, line, sizeof line - 1) < 0)
        _exit(8);
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "default";
    if (strcmp(how, "ignore") == 0) {
        signal(SIGPIPE, SIG_IGN);
    } else if (strcmp(how, "handle") == 0) {
        signal(SIGPIPE, handler);
    } else if (strcmp(how, "block") == 0) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        sigprocmask(SIG_BLOCK, &set, 0);
    }
    static const char line[] = "y\n";
    for (;;) {
        if (write(1, line, sizeof line - 1) < 0) {
            fprintf(stderr, "write: %s\n", strerror(errno));
            return 3;
        }
    }
}
