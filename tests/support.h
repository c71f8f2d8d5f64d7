/* Helpers shared by the test files (header-only: each test file is its own
 * translation unit in the one Criterion binary). */
#ifndef MISER_TESTS_SUPPORT_H
#define MISER_TESTS_SUPPORT_H

#include <stdio.h>
#include <stdlib.h>

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

#endif
