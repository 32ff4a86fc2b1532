/* A static Linux program built with musl-gcc: prints its arguments, then
 * the file named by its first argument, with stdio and malloc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    /* With "brk": where the break and a fresh mapping are, memory kept. */
    if (argc > 2 && strcmp(argv[2], "brk") == 0) {
        void *kept = malloc(100000);
        printf("\nbrk=%p map=%p kept=%d\n", sbrk(0), (void *)buf, kept != 0);
        return 7;
    }
    free(buf);
    return 7;
}
