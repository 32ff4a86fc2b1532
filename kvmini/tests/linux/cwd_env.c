/* Prints the working directory, an environment variable and the whole
 * environment's size, then moves to argv[1] and prints the working
 * directory again: a reset sandbox must start each run where the first
 * started. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    char buf[256];
    int n = 0;
    while (environ[n])
        n++;
    printf("start=%s GREETING=%s vars=%d\n", getcwd(buf, sizeof buf), getenv("GREETING"), n);
    if (argc > 1 && chdir(argv[1]) != 0)
        return 1;
    printf("now=%s\n", getcwd(buf, sizeof buf));
    return 0;
}
