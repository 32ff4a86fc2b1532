/*
 * signals.c - sends itself signals as the first argument says, printing
 * (with write, so that nothing is left in a stdio buffer when a signal
 * ends it) what the calls answer on the way.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void say(const char *text)
{
    if (write(1, text, strlen(text)) < 0)
        _exit(9);
}

static void said(const char *what, long result)
{
    char line[128];
    snprintf(line, sizeof line, "%s=%ld errno=%s\n", what, result,
             result < 0 ? strerror(errno) : "-");
    say(line);
}

static void handler(int sig)
{
    (void)sig;
    say("handler ran\n");
}

static void block(int sig)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_BLOCK, &set, 0);
}

static void unblock(int sig)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, 0);
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "";
    pid_t self = getpid();
    long tid = syscall(SYS_gettid);
    if (strcmp(how, "abort") == 0) {
        say("aborting\n");
        abort();
    } else if (strcmp(how, "term") == 0) {
        raise(SIGTERM);
    } else if (strcmp(how, "kill") == 0) {
        kill(self, SIGUSR1);
    } else if (strcmp(how, "tgkill") == 0) {
        syscall(SYS_tgkill, self, tid, SIGQUIT);
    } else if (strcmp(how, "tkill") == 0) {
        syscall(SYS_tkill, tid, SIGHUP);
    } else if (strcmp(how, "answers") == 0) {
        said("kill_self_0", kill(self, 0));
        said("kill_group_0", kill(0, 0));
        said("kill_other", kill(0x7ffffff0, 0));
        said("kill_bad_signal", kill(self, 65));
        said("tgkill_other", syscall(SYS_tgkill, self, 0x7ffffff0, 0));
        said("tgkill_zero", syscall(SYS_tgkill, 0, tid, 0));
        said("tkill_negative", syscall(SYS_tkill, -1, 0));
        said("raise_chld", raise(SIGCHLD));
        said("raise_winch", raise(SIGWINCH));
        signal(SIGTERM, SIG_IGN);
        said("raise_ignored_term", raise(SIGTERM));
        stack_t ss = {0}, old = {0};
        said("altstack_old", sigaltstack(0, &old));
        said("altstack_old_flags", old.ss_flags);
        static char stack[1 << 16];
        ss.ss_sp = stack;
        ss.ss_size = sizeof stack;
        said("altstack_set", sigaltstack(&ss, 0));
        said("altstack_read", sigaltstack(0, &old));
        said("altstack_same", old.ss_sp == stack && old.ss_size == sizeof stack && old.ss_flags == 0);
        ss.ss_size = 100;
        said("altstack_small", sigaltstack(&ss, 0));
        ss.ss_flags = 0x40;
        ss.ss_size = sizeof stack;
        said("altstack_bad_flags", sigaltstack(&ss, 0));
        return 7;
    } else if (strcmp(how, "blocked") == 0) {
        block(SIGUSR2);
        said("raise_blocked", raise(SIGUSR2));
        sigset_t pending;
        sigpending(&pending);
        said("pending", sigismember(&pending, SIGUSR2));
        say("unblocking\n");
        unblock(SIGUSR2);
        say("not reached\n");
    } else if (strcmp(how, "blocked-then-ignored") == 0) {
        block(SIGUSR2);
        raise(SIGUSR2);
        signal(SIGUSR2, SIG_IGN);
        unblock(SIGUSR2);
        sigset_t pending;
        sigpending(&pending);
        said("pending", sigismember(&pending, SIGUSR2));
        return 8;
    } else if (strcmp(how, "handled") == 0) {
        signal(SIGUSR1, handler);
        said("raise_handled", raise(SIGUSR1));
        return 6;
    }
    say("went on\n");
    return 5;
}
