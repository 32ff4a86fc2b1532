/* A static Linux program built with musl-gcc: prints its arguments, then
 * the file named by its first argument, with stdio and malloc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    if (argc < 2)
        return 2;
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len, f)) > 0)
        len += n;
    fclose(f);
    printf("read %zu bytes: %.*s", len, (int)len, buf);
    free(buf);
    return 7;
}
