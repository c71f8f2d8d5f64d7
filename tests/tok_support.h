/* Helpers the two tokenizer test files share (test_tokenizer.c for the
 * built-in GPT-2 tokenizer, test_tokenizer_hf.c for tokenizer.json): running
 * a reference encoder and reading its output, printable failure messages, and
 * the corpus of test strings each file fills with its own cases (add_case /
 * ADD; rnd is a fixed-seed xorshift so the random cases are the same every
 * run). Header-only, included after criterion.h: each test file is its own
 * translation unit, with its own copy of the corpus. */
#ifndef MISER_TESTS_TOK_SUPPORT_H
#define MISER_TESTS_TOK_SUPPORT_H

#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "miser/tokenizer.h"

typedef struct {
    char *p;
    size_t n;
} bytes;

static bytes read_all(FILE *f)
{
    bytes b = {NULL, 0};
    size_t cap = 0;
    for (;;) {
        if (b.n + 65536 + 1 > cap) {
            cap = (b.n + 65536 + 1) * 2;
            b.p = realloc(b.p, cap);
            cr_assert_not_null(b.p);
        }
        size_t r = fread(b.p + b.n, 1, 65536, f);
        if (!r) break;
        b.n += r;
    }
    b.p[b.n] = 0;
    return b;
}

static bytes run_capture(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    bytes b = read_all(p);
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    return b;
}

static int run_status(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static int32_t *encode(const miser_tokenizer *t, const void *s, size_t n, unsigned flags, size_t *nids)
{
    int32_t *ids = NULL;
    miser_status st = miser_tokenizer_encode(t, s, n, flags, &ids, nids);
    cr_assert_eq(st, MISER_OK, "%s", miser_error_message());
    return ids;
}

static const char *show(const char *s, size_t n)
{
    static char bufs[4][400];
    static int next;
    char *buf = bufs[next++ % 4];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < sizeof bufs[0]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, sizeof bufs[0] - o, "\\x%02x", c);
    }
    buf[o] = 0;
    return buf;
}

static size_t json_ids(const char *line, int32_t **out)
{
    cJSON *a = cJSON_Parse(line);
    cr_assert(cJSON_IsArray(a), "not a JSON array: %.200s", line);
    size_t n = (size_t)cJSON_GetArraySize(a), i = 0;
    *out = malloc((n + 1) * sizeof **out);
    for (cJSON *e = a->child; e; e = e->next) (*out)[i++] = (int32_t)e->valuedouble;
    cJSON_Delete(a);
    return n;
}

typedef struct {
    char *s;
    size_t n;
} tcase;

static tcase *g_cases;
static size_t g_ncases, g_capcases;

static void add_case(const char *s, size_t n)
{
    if (g_ncases == g_capcases) {
        g_capcases = g_capcases ? g_capcases * 2 : 256;
        g_cases = realloc(g_cases, g_capcases * sizeof *g_cases);
    }
    g_cases[g_ncases].s = malloc(n + 1);
    memcpy(g_cases[g_ncases].s, s, n);
    g_cases[g_ncases].s[n] = 0;
    g_cases[g_ncases++].n = n;
}
#define ADD(lit) add_case(lit, sizeof(lit) - 1)

static uint64_t g_rng = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}

#endif
