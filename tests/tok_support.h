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

/* The strings both byte-level corpora share (GPT-2's built-in tokenizer and
 * the tokenizer.json variants): each file adds its own after these. */
static void tok_add_shared_strings(void)
{
    /* whitespace runs */
    ADD("");
    ADD(" ");
    ADD("  ");
    ADD("   ");
    ADD("\t");
    ADD("\n");
    ADD("\n\n");
    ADD("\r\n");
    ADD(" \n ");
    ADD("a ");
    ADD("a  ");
    ADD("a   b");
    ADD("a \t b");
    ADD("  leading");
    ADD("trailing  ");
    ADD("trailing\n");
    ADD("x\n\n\ny");
    ADD("x \n y");
    ADD("\t\tindent");
    ADD("mixed \t\n \r\n end \n\n");
    ADD("    def f():\n        return 1\n\n\nprint(f())\n");
    ADD("a\v\fb \v x");
    ADD("Hello\n\n world   x  \t\n");
    /* contractions (the regex is case-sensitive) */
    ADD("I'm you're we've he'll she'd it's don't");
    ADD("I'M YOU'RE WE'VE HE'LL SHE'D IT'S DON'T");
    ADD("'s 't 're 've 'm 'll 'd");
    ADD("'S 'T 'RE 'VE 'M 'LL 'D");
    ADD("''s");
    ADD("x's's");
    ADD(" 'll");
    ADD("rock'n'roll");
    ADD("'");
    ADD("can't've");
    ADD("O'Neil's 'tis");
    ADD("!'s");
    /* numbers */
    ADD("123");
    ADD("1234567890");
    ADD("3.14159");
    ADD("1,000,000");
    ADD("x1y2z3");
    ADD(" 42 ");
    ADD("\xd9\xa3\xd9\xa4\xd9\xa5 arabic-indic");
    ADD("\xe2\x85\xab roman");
    ADD("\xc2\xbd \xc2\xbc \xc2\xb2 \xc2\xb3");
    ADD("\xef\xbc\x91\xef\xbc\x92\xef\xbc\x93 fullwidth");
    ADD("In 1912, the");
    /* accents: precomposed and combining */
    ADD("na\xc3\xafve caf\xc3\xa9 r\xc3\xa9sum\xc3\xa9 \xc3\x85str\xc3\xb6m");
    ADD("\xcc\x81");
    ADD(" \xcc\x81\xcc\x81x");
    ADD("\xce\xa9 \xcf\x89 \xd0\x96 \xd0\xb6 \xce\xb1 \xc3\x9f \xc7\x85 \xca\xb0");
    /* CJK */
    ADD("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88");
    ADD("\xe4\xb8\xad\xe6\x96\x87\xef\xbc\x8c\xe6\xa0\x87\xe7\x82\xb9\xe3\x80\x82");
    ADD("\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xed\x85\x8d\xec\x8a\xa4\xed\x8a\xb8");
    ADD("GPT\xe6\xa8\xa1\xe5\x9e\x8b 2\xe5\x8f\xb7");
    /* emoji: skin tones, ZWJ sequences, variation selectors */
    ADD("\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd");
    ADD("\xf0\x9f\x8f\xb3\xef\xb8\x8f\xe2\x80\x8d\xf0\x9f\x8c\x88");
    ADD("\xf0\x9f\x98\x80\xf0\x9f\x98\x83\xf0\x9f\x98\x84");
    ADD(" \xf0\x9f\x99\x82 ");
    ADD("\xe2\x9d\xa4\xef\xb8\x8f love");
    /* control characters (NUL included) */
    ADD("\x01\x02\x1b[0m");
    ADD("\x7f");
    ADD("\x1c\x1d\x1e\x1f x");
    /* whitespace beyond ASCII, where JavaScript's \s matters */
    ADD("a\xc2\xa0" "b");
    ADD("a\xc2\xa0\xc2\xa0" "b");
    ADD("\xef\xbb\xbf" "BOM");
    ADD("x\xe2\x80\xa8y");
    ADD("x\xe3\x80\x80\xe3\x80\x80y");
    ADD("NEL\xc2\x85x");
    ADD("a\xe2\x80\x8b" "b");
    ADD(" \xe2\x80\x83x");
    /* prose, code, markup */
    ADD("The quick brown fox jumps over the lazy dog. It's 5 o'clock!");
    ADD("https://example.com/path?q=1&r=two#frag");
    ADD("{\"key\": [1, 2.5, null], \"t\": \"x\\ny\"}");
    ADD("int main(void) { return 0; }\n");
    ADD(",,,, ,,, ,,,,,,");
}

/* Long runs: 2000 random letters, then `alen` a's and `dlen` 7's. */
static void tok_add_long_words(size_t alen, size_t dlen)
{
    char *w = malloc((alen > 2000 ? alen : 2000) + 1);
    for (int i = 0; i < 2000; i++) w[i] = (char)('a' + rnd() % 26);
    add_case(w, 2000);
    memset(w, 'a', alen);
    add_case(w, alen);
    memset(w, '7', dlen);
    add_case(w, dlen);
    free(w);
}

/* `count` random mixtures of 1..max_items palette snippets; with specials,
 * one item in 40 is a special-token string instead. */
static void tok_add_mixtures(const char *const *pal, size_t npal, int count, size_t max_items,
                             const char *const *specials, size_t nspecials)
{
    char buf[2048];
    for (int k = 0; k < count; k++) {
        size_t n = 0, items = 1 + rnd() % max_items;
        for (size_t i = 0; i < items; i++) {
            const char *p = nspecials && rnd() % 40 == 0 ? specials[rnd() % nspecials] : pal[rnd() % npal];
            size_t l = strlen(p);
            memcpy(buf + n, p, l);
            n += l;
        }
        add_case(buf, n);
    }
}

#endif
