/*
 * escape.c - a ring-3 guest that tries to reach a file outside its grant.
 *
 * The test lays out, in a fresh directory ROOT (given as argv[1]):
 *
 *   ROOT/grant/          granted read-write at /
 *     inside.txt         "inside"
 *     inlink -> inside.txt                          (stays inside: allowed)
 *     abs -> ROOT/canary/secret.txt                 (absolute)
 *     up -> ../canary/secret.txt                    (climbs out)
 *     deep -> sub/../../canary/secret.txt           (climbs out through sub)
 *     procroot -> /proc/self/root/ROOT/canary/secret.txt
 *     dirup -> ..                                   (a directory outside)
 *     newup -> ../canary/created.txt                (for O_CREAT)
 *     sub/esc -> ../../canary
 *   ROOT/canary/secret.txt   must stay unread and unchanged
 *   /proc/self           granted read-only at /self (procfs magic links)
 *
 * Every attempt prints its result; the only file it may read is
 * inside.txt, and the test checks afterwards that nothing outside
 * ROOT/grant changed and that the secret appears nowhere in the output.
 */
#include "hostile.h"

static char path[4096];
static char got[64];

static void attempt(const char *label, const char *p)
{
    long fd = open(p, O_RDONLY);
    say(label, fd);
    if (fd >= 0) {
        long n = read((int)fd, got, sizeof got - 1);
        got[n > 0 ? n : 0] = '\0';
        say_text("  read", got);
        close((int)fd);
    }
}

/* "/self/root" followed by the host path of the secret. */
static const char *via_proc_root(const char *root)
{
    size_t n = 0;
    put_str(path, &n, sizeof path, "/self/root");
    put_str(path, &n, sizeof path, root);
    put_str(path, &n, sizeof path, "/canary/secret.txt");
    path[n] = '\0';
    return path;
}

int body(void)
{
    const char *root = first_arg();
    attempt("control: inlink", "/inlink");
    attempt("/../canary/secret.txt", "/../canary/secret.txt");
    attempt("sub/../../../canary/secret.txt", "sub/../../../canary/secret.txt");
    attempt("../../../../etc/passwd", "../../../../etc/passwd");
    attempt("abs", "/abs");
    attempt("up", "/up");
    attempt("deep", "/deep");
    attempt("sub/esc/secret.txt", "/sub/esc/secret.txt");
    attempt("procroot", "/procroot");
    attempt("dirup/canary/secret.txt", "/dirup/canary/secret.txt");
    say("create through newup",
        open("/newup", O_WRONLY | O_CREAT | O_TRUNC, 0644));
    say("create dirup/canary/new.txt",
        open("/dirup/canary/new.txt", O_WRONLY | O_CREAT, 0644));
    struct stat st;
    say("stat up", stat("/up", &st));
    say("mkdir dirup/evil", mkdir("/dirup/evil", 0755));
    say("unlink dirup/canary/secret.txt", unlink("/dirup/canary/secret.txt"));
    say("rename inside.txt to dirup/stolen.txt",
        rename("/inside.txt", "/dirup/stolen.txt"));
    say("rename sub/esc/secret.txt to taken.txt",
        rename("/sub/esc/secret.txt", "/taken.txt"));
    attempt("self/root/ROOT/canary/secret.txt", via_proc_root(root));
    attempt("self/cwd", "/self/cwd");
    attempt("self/exe", "/self/exe");
    attempt("self/fd/0", "/self/fd/0");
    say("create in the read-only grant",
        open("/self/new", O_WRONLY | O_CREAT, 0644));
    return 0;
}
