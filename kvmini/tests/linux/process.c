/*
 * process.c - prints what a program learns about itself: its name
 * (prctl), its CPUs, its parent, group and session, the system's
 * memory. Lines that differ between machines come last, after "--".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/sysinfo.h>
#include <unistd.h>

static void said(const char *what, long result)
{
    printf("%s=%ld errno=%s\n", what, result, result < 0 ? strerror(errno) : "-");
}

int main(void)
{
    char name[32];
    memset(name, 'x', sizeof name);
    said("get_name", prctl(PR_GET_NAME, name));
    printf("name=%s\n", name);
    said("set_name", prctl(PR_SET_NAME, "a-name-longer-than-fifteen"));
    said("get_name", prctl(PR_GET_NAME, name));
    printf("name=%s len=%zu\n", name, strlen(name));
    said("set_short", prctl(PR_SET_NAME, "short"));
    prctl(PR_GET_NAME, name);
    printf("name=%s\n", name);
    said("set_bad_pointer", prctl(PR_SET_NAME, (char *)8));
    said("unknown_option", prctl(0x7fff, 0));
    said("sched_yield", sched_yield());
    cpu_set_t set;
    said("affinity_short", syscall(204, 0, 4, &set));
    said("affinity_other", sched_getaffinity(0x7ffffff0, sizeof set, &set));
    said("self_is_group_leader", getpgrp() == getpid());
    said("session_of_self", getsid(0) == getsid(getpid()));
    said("pgid_of_other", getpgid(0x7ffffff0));
    said("setsid_as_leader", setsid());
    struct sysinfo info;
    said("sysinfo", sysinfo(&info));
    said("sysinfo_bad_pointer", sysinfo((struct sysinfo *)8));
    printf("--\n");
    said("affinity", sched_getaffinity(0, sizeof set, &set));
    printf("cpus=%d\n", CPU_COUNT(&set));
    printf("ppid=%d pgrp=%d sid=%d\n", (int)getppid(), (int)getpgrp(), (int)getsid(0));
    printf("procs=%d mem_unit=%u totalram=%lu freeram_below_total=%d\n", info.procs,
           info.mem_unit, info.totalram, info.freeram < info.totalram);
    return 0;
}
