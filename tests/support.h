/* Helpers shared by the test files (header-only: each test file is its own
 * translation unit in the one Criterion binary). */
#ifndef MISER_TESTS_SUPPORT_H
#define MISER_TESTS_SUPPORT_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* A whole file, NUL-terminated (malloc'd; NULL when it cannot be opened);
 * *len (may be NULL) receives its size. */
static inline char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)(n > 0 ? n : 0) + 1);
    size_t k = n > 0 ? fread(b, 1, (size_t)n, f) : 0;
    fclose(f);
    b[k] = 0;
    if (len) *len = k;
    return b;
}

/* Writes text to path (created or truncated); 0, or -1 when it cannot. */
static inline int test_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    const int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* Run a shell command line (formatted); returns its exit status, 128+N for
 * signal N, -1 when the shell could not be started. */
static int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static int test_sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st == -1) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A temporary directory /tmp/miser-TAG-XXXXXX and, when `src` is given, a
 * test program compiled from it as DIR/NAME (with tools/markers on the
 * include path). Returns 0, or -1 when the directory or the build failed;
 * test_box_free removes the directory and all in it. */
typedef struct {
    char dir[64];
    char bin[128];
} test_box;

static int test_box_init(test_box *b, const char *tag, const char *src, const char *name)
    __attribute__((unused));
static int test_box_init(test_box *b, const char *tag, const char *src, const char *name)
{
    snprintf(b->dir, sizeof b->dir, "/tmp/miser-%s-XXXXXX", tag);
    if (!mkdtemp(b->dir)) return -1;
    snprintf(b->bin, sizeof b->bin, "%s/%s", b->dir, name ? name : "child");
    if (!src) return 0;
    char path[160];
    snprintf(path, sizeof path, "%s.c", b->bin);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(src, f);
    fclose(f);
    return test_sh("cc -O1 -w -I%s/tools/markers -o %s %s", MISER_SOURCE_DIR, b->bin, path) == 0 ? 0 : -1;
}

static void test_box_free(test_box *b) __attribute__((unused));
static void test_box_free(test_box *b) { (void)test_sh("rm -rf %s", b->dir); }

/* A suite's temporary directory: `pattern` ends in XXXXXX (mkdtemp), the
 * result is written into dir (cap bytes); 0 or -1. test_tmpdir_remove
 * removes it and all in it (nothing when dir is empty). */
static int test_tmpdir_make(char *dir, size_t cap, const char *pattern) __attribute__((unused));
static int test_tmpdir_make(char *dir, size_t cap, const char *pattern)
{
    snprintf(dir, cap, "%s", pattern);
    return mkdtemp(dir) ? 0 : -1;
}

static void test_tmpdir_remove(const char *dir) __attribute__((unused));
static void test_tmpdir_remove(const char *dir)
{
    if (dir[0] && test_sh("rm -rf '%s'", dir) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* A note that a check did not run here (a CPU without a set, a missing
 * tool), on stderr. Not cr_log_warn: Criterion 2.4 exits 1 after any
 * warning, even when every test passed, and CI reads that status. */
#define test_note(...) (fprintf(stderr, "[NOTE] " __VA_ARGS__), fputc('\n', stderr))

#endif
