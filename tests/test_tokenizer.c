/* Tokenizer: miser's GPT-2 BPE against independent references — the
 * JavaScript encoder of gpt-3-encoder run with node (ids, pre-tokenizer
 * pieces and character classes), the Hugging Face ids in
 * tests/data/hf-tiny-a/reference.json, and hand-derived results of the
 * reference algorithm on tiny vocabularies — plus byte-exact roundtrips of
 * arbitrary bytes, the CLI, error paths and allocation-failure handling. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#include "miser/alloc.h"
#include "miser/core.h"
#include "miser/tokenizer.h"
#include "tok_support.h"
#include "tokenizer/pretokenize.h"

#define TOKREF MISER_SOURCE_DIR "/tools/tokref.js"
#define MISER_BIN MISER_BUILD_DIR "/miser"
#define EOT "<|endoftext|>"

/* ---- helpers ---------------------------------------------------------------- */

static char g_dir[64];

static void make_tmpdir(void)
{
    strcpy(g_dir, "/tmp/miser-tok-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (g_dir[0] && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}

static bytes read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    bytes b = read_all(f);
    fclose(f);
    return b;
}

static void require_node(void)
{
    struct stat sb;
    cr_assert(run_status("node --version >/dev/null 2>&1") == 0 &&
                  stat(MISER_SOURCE_DIR "/tools/node_modules/gpt-3-encoder/Encoder.js", &sb) == 0,
              "the reference tokenizer needs node and tools/node_modules/gpt-3-encoder: run tools/deps.sh test");
}

static miser_tokenizer *open_builtin(void)
{
    miser_tokenizer *t = NULL;
    miser_status st = miser_tokenizer_open(NULL, &t);
    cr_assert_eq(st, MISER_OK, "%s", miser_error_message());
    return t;
}

/* ---- the corpus ------------------------------------------------------------------ */

static void build_corpus(void)
{
    g_ncases = 0;
    tok_add_shared_strings();
    /* beyond the shared strings: quotes, combining marks, emoji, NUL, U+180E
     * and NBSP, and GPT-2's special token inside text */
    ADD("''");
    ADD("'re'");
    ADD("cafe\xcc\x81 nai\xcc\x88ve");
    ADD("\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7\xe2\x80\x8d\xf0\x9f\x91\xa6 family");
    ADD("na\xc3\xafve caf\xc3\xa9 \xf0\x9f\x98\x80");
    ADD("a\0b");
    ADD("\0");
    ADD("\xe1\xa0\x8e");
    ADD("a \xc2\xa0" "b");
    ADD("<|endoftext|>");
    ADD("Hello" EOT "world");
    ADD("a " EOT " b");
    ADD(EOT EOT);
    ADD("<|endoftext");
    ADD("x" EOT "\n\n");
    tok_add_long_words(10000, 5000);
    /* random mixtures of tricky snippets */
    static const char *const pal[] = {
        "a", "Z", "q", "\xc3\xa9", "e\xcc\x81", "\xe6\x97\xa5", "\xf0\x9f\x99\x82", "\xf0\x9f\x8f\xbd", "\xe2\x80\x8d",
        " ", "  ", "\t", "\n", "\r", "\xc2\xa0", "\xe3\x80\x80", "\xef\xbb\xbf", "\xc2\x85", "'", "'s", "'ll", "'S",
        "1", "\xd9\xa3", "\xc2\xbd", ".", ",", "!", "?", "-", "_", "\x01", "\x7f", EOT, "\xc3\x9f", "\xc7\x85",
        "\xca\xb0", "\xe2\x80\xa8", "the", " and", "ing", "\xd0\x96", "$", "\xe2\x82\xac"};
    tok_add_mixtures(pal, sizeof pal / sizeof pal[0], 300, 40, NULL, 0);
}

static void free_corpus(void)
{
    for (size_t i = 0; i < g_ncases; i++) free(g_cases[i].s);
    free(g_cases);
    g_cases = NULL;
    g_ncases = g_capcases = 0;
}

/* Writes cases [from, to) to files and runs tokref.js on them; returns one
 * output line per case (pointers into *out). */
static char **run_reference(const char *mode, size_t from, size_t to, bytes *out)
{
    size_t cmdcap = 256 + (to - from) * 48;
    char *cmd = malloc(cmdcap);
    size_t o = (size_t)snprintf(cmd, cmdcap, "node '%s' %s", TOKREF, mode);
    for (size_t i = from; i < to; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/case%zu.txt", g_dir, i);
        write_file(path, g_cases[i].s, g_cases[i].n);
        o += (size_t)snprintf(cmd + o, cmdcap - o, " '%s'", path);
    }
    int status;
    *out = run_capture(cmd, &status);
    free(cmd);
    cr_assert_eq(status, 0, "tokref.js failed");
    char **lines = malloc((to - from) * sizeof *lines);
    char *p = out->p;
    for (size_t i = 0; i < to - from; i++) {
        char *nl = strchr(p, '\n');
        cr_assert_not_null(nl, "tokref.js gave %zu lines, expected %zu", i, to - from);
        *nl = 0;
        lines[i] = p;
        p = nl + 1;
    }
    return lines;
}

/* ---- tests -------------------------------------------------------------------------- */

Test(tokenizer, basics)
{
    miser_tokenizer *t = open_builtin();
    cr_assert_eq(miser_tokenizer_vocab_size(t), 50257);
    cr_assert_eq(miser_tokenizer_eot(t), 50256);
    size_t n;
    const char *p = miser_tokenizer_token_bytes(t, 50256, &n);
    cr_assert(p && n == 13 && !memcmp(p, EOT, 13));
    /* Byte 0x20 is written "\u0120" (G with dot) in encoder.json: the bytes are unmapped. */
    p = miser_tokenizer_token_bytes(t, 220, &n);
    cr_assert(p && n == 1 && p[0] == ' ');
    cr_assert_null(miser_tokenizer_token_bytes(t, -1, &n));
    cr_assert_null(miser_tokenizer_token_bytes(t, 50257, &n));
    int32_t bad[] = {15496, 50257};
    char *out = (char *)1;
    cr_assert_eq(miser_tokenizer_decode(t, bad, 2, &out, NULL), MISER_ERR_RANGE);
    cr_assert_null(out);
    cr_assert(strstr(miser_error_message(), "50257"), "%s", miser_error_message());
    size_t nid = 99;
    int32_t *ids = encode(t, "", 0, 0, &nid);
    cr_assert_eq(nid, 0);
    miser_free(ids);
    cr_assert_eq(miser_tokenizer_decode(t, NULL, 0, &out, &n), MISER_OK);
    cr_assert(n == 0 && out[0] == 0);
    miser_free(out);
    miser_tokenizer_free(t);
    miser_tokenizer_free(NULL);
}

Test(tokenizer, hf_reference_ids)
{
    bytes j = read_file(MISER_SOURCE_DIR "/tests/data/hf-tiny-a/reference.json");
    cJSON *root = cJSON_Parse(j.p);
    cr_assert_not_null(root);
    cJSON *prompts = cJSON_GetObjectItem(root, "prompts");
    cr_assert(cJSON_GetArraySize(prompts) >= 4);
    miser_tokenizer *t = open_builtin();
    for (cJSON *pr = prompts->child; pr; pr = pr->next) {
        const char *text = cJSON_GetObjectItem(pr, "prompt")->valuestring;
        cJSON *want = cJSON_GetObjectItem(pr, "ids");
        size_t n;
        int32_t *ids = encode(t, text, strlen(text), 0, &n);
        cr_assert_eq(n, (size_t)cJSON_GetArraySize(want), "prompt \"%s\"", text);
        size_t i = 0;
        for (cJSON *e = want->child; e; e = e->next, i++)
            cr_assert_eq(ids[i], (int32_t)e->valuedouble, "prompt \"%s\" id %zu", text, i);
        char *back;
        size_t blen;
        cr_assert_eq(miser_tokenizer_decode(t, ids, n, &back, &blen), MISER_OK);
        cr_assert(blen == strlen(text) && !memcmp(back, text, blen));
        miser_free(back);
        miser_free(ids);
    }
    miser_tokenizer_free(t);
    cJSON_Delete(root);
    free(j.p);
}

/* Ids for the whole corpus against gpt-3-encoder (which treats <|endoftext|>
 * as text), and the default special-token handling against the reference's
 * ids of the text between the markers. */
Test(tokenizer, matches_js_reference)
{
    require_node();
    make_tmpdir();
    build_corpus();
    size_t base = g_ncases;
    /* For each case holding <|endoftext|>: its segments, as extra cases. */
    size_t *seg_first = calloc(base, sizeof *seg_first), *seg_count = calloc(base, sizeof *seg_count);
    for (size_t i = 0; i < base; i++) {
        if (!memmem(g_cases[i].s, g_cases[i].n, EOT, 13)) continue;
        seg_first[i] = g_ncases;
        size_t pos = 0;
        for (;;) {
            const char *s = g_cases[i].s;
            const char *hit = memmem(s + pos, g_cases[i].n - pos, EOT, 13);
            size_t len = hit ? (size_t)(hit - s) - pos : g_cases[i].n - pos;
            add_case(s + pos, len);
            seg_count[i]++;
            if (!hit) break;
            pos += len + 13;
        }
    }
    bytes out;
    char **lines = run_reference("", 0, g_ncases, &out);
    miser_tokenizer *t = open_builtin();
    size_t n_special = 0;
    for (size_t i = 0; i < base; i++) {
        int32_t *want;
        size_t nw = json_ids(lines[i], &want), n;
        int32_t *ids = encode(t, g_cases[i].s, g_cases[i].n, MISER_TOKENIZE_SPECIAL_AS_TEXT, &n);
        cr_assert_eq(n, nw, "case %zu \"%s\": %zu ids, reference %zu", i, show(g_cases[i].s, g_cases[i].n), n, nw);
        for (size_t k = 0; k < n; k++)
            cr_assert_eq(ids[k], want[k], "case %zu \"%s\": id %zu is %d, reference %d", i,
                         show(g_cases[i].s, g_cases[i].n), k, ids[k], want[k]);
        miser_free(ids);
        free(want);
        if (!seg_count[i]) continue;
        /* Default: <|endoftext|> is 50256, the text around it encoded on its own. */
        n_special++;
        ids = encode(t, g_cases[i].s, g_cases[i].n, 0, &n);
        size_t k = 0;
        for (size_t s = 0; s < seg_count[i]; s++) {
            if (s) {
                cr_assert(k < n && ids[k] == 50256, "case %zu \"%s\": 50256 expected at %zu", i,
                          show(g_cases[i].s, g_cases[i].n), k);
                k++;
            }
            size_t ns = json_ids(lines[seg_first[i] + s], &want);
            for (size_t m = 0; m < ns; m++, k++)
                cr_assert(k < n && ids[k] == want[m], "case %zu \"%s\": id %zu", i, show(g_cases[i].s, g_cases[i].n),
                          k);
            free(want);
        }
        cr_assert_eq(k, n, "case %zu: %zu ids, expected %zu", i, n, k);
        miser_free(ids);
    }
    cr_assert_gt(n_special, 10);
    miser_tokenizer_free(t);
    free(lines);
    free(out.p);
    free(seg_first);
    free(seg_count);
    free_corpus();
    remove_tmpdir();
}

/* The pre-tokenizer's pieces against the JavaScript regex itself. */
Test(tokenizer, pieces_match_js_regex)
{
    require_node();
    make_tmpdir();
    build_corpus();
    bytes out;
    char **lines = run_reference("--pieces", 0, g_ncases, &out);
    for (size_t i = 0; i < g_ncases; i++) {
        if (g_cases[i].n > 3000) continue; /* the long words are single pieces; keep the output small */
        cJSON *a = cJSON_Parse(lines[i]);
        cr_assert(cJSON_IsArray(a));
        miser_pretok it;
        miser_pretok_init(&it, g_cases[i].s, g_cases[i].n);
        size_t start, n, k = 0;
        cJSON *e = a->child;
        for (; miser_pretok_next(&it, &start, &n); e = e->next, k++) {
            cr_assert_not_null(e, "case %zu \"%s\": more pieces than the regex", i, show(g_cases[i].s, g_cases[i].n));
            /* cJSON stops a string at \u0000, so compare NUL-free pieces by content, others by length */
            size_t wl = strlen(e->valuestring);
            int has_nul = memchr(g_cases[i].s + start, 0, n) != NULL;
            cr_assert(has_nul ? wl <= n : (wl == n && !memcmp(e->valuestring, g_cases[i].s + start, n)),
                      "case %zu \"%s\": piece %zu is \"%s\", regex gives \"%s\"", i, show(g_cases[i].s, g_cases[i].n),
                      k, show(g_cases[i].s + start, n), e->valuestring);
        }
        cr_assert_null(e, "case %zu \"%s\": fewer pieces than the regex", i, show(g_cases[i].s, g_cases[i].n));
        cJSON_Delete(a);
    }
    free(lines);
    free(out.p);
    free_corpus();
    remove_tmpdir();
}

/* \p{L}, \p{N}, \s for every code point against JavaScript. Node's Unicode is
 * newer than utf8proc's, so code points unassigned in utf8proc's version are
 * the only ones allowed to differ. */
Test(tokenizer, classes_match_js)
{
    require_node();
    int status;
    bytes cls = run_capture("node '" TOKREF "' --classes", &status);
    cr_assert_eq(status, 0);
    cr_assert_eq(cls.n, 0x110000u);
    size_t skew = 0;
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        static const char names[] = "LNSO";
        char mine = names[miser_pretok_class(cp)];
        if (mine == cls.p[cp]) continue;
        cr_assert_eq(utf8proc_category((utf8proc_int32_t)cp), UTF8PROC_CATEGORY_CN,
                     "U+%04X: miser class %c, JavaScript %c", cp, mine, cls.p[cp]);
        skew++;
    }
    cr_assert_lt(skew, 20000, "%zu code points differ", skew);
    free(cls.p);
}

/* decode(encode(x)) == x for arbitrary bytes, invalid UTF-8 included. */
Test(tokenizer, roundtrip_random_bytes)
{
    miser_tokenizer *t = open_builtin();
    static const char *const frag[] = {"\xc3", "\xa9", "\xe6\x97", "\xf0\x9f\x99", "\xed\xa0\x80", "\xc0\xaf",
                                       "\xf4\x90\x80\x80", "\xff", " ", "a", "'s", EOT, "\n", "\xe2\x80\x8d", "1"};
    uint8_t buf[512];
    for (int k = 0; k < 3000; k++) {
        size_t n = 0, len = rnd() % 300;
        while (n < len) {
            if (rnd() % 3) {
                buf[n++] = (uint8_t)rnd();
            } else {
                const char *f = frag[rnd() % (sizeof frag / sizeof frag[0])];
                size_t l = strlen(f);
                if (n + l > sizeof buf) break;
                memcpy(buf + n, f, l);
                n += l;
            }
        }
        for (unsigned flags = 0; flags < 2; flags++) {
            size_t nids, blen;
            int32_t *ids = encode(t, buf, n, flags, &nids);
            cr_assert_leq(nids, n);
            char *back;
            cr_assert_eq(miser_tokenizer_decode(t, ids, nids, &back, &blen), MISER_OK);
            cr_assert(blen == n && !memcmp(back, buf, n), "roundtrip of \"%s\"", show((char *)buf, n));
            miser_free(back);
            miser_free(ids);
        }
    }
    miser_tokenizer_free(t);
}

/* Invalid bytes are class "other": the pieces are those of the text with
 * each invalid byte replaced by U+FFFD (checked through piece lengths). */
Test(tokenizer, invalid_utf8_pieces)
{
    static const struct {
        const char *s;
        size_t pieces;
    } cases[] = {
        {"ab\xff" "cd", 3},         /* ab | \xff | cd */
        {" \xff\xfe!x", 2},         /* " \xff\xfe!" | x */
        {"\xc3 x", 2},              /* truncated 2-byte sequence, then " x" */
        {"\xed\xa0\x80" "a", 2},    /* a UTF-8-encoded surrogate is 3 invalid bytes */
        {"x\xe6\x97", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        miser_pretok it;
        size_t start, n, k = 0;
        miser_pretok_init(&it, cases[i].s, strlen(cases[i].s));
        while (miser_pretok_next(&it, &start, &n)) k++;
        cr_assert_eq(k, cases[i].pieces, "\"%s\": %zu pieces", show(cases[i].s, strlen(cases[i].s)), k);
    }
    size_t n;
    uint32_t cp = miser_utf8_next((const uint8_t *)"\xc0\xaf", 2, 0, &n); /* overlong '/' */
    cr_assert(cp == MISER_UTF8_INVALID && n == 1);
    cp = miser_utf8_next((const uint8_t *)"\xf4\x8f\xbf\xbf", 4, 0, &n);
    cr_assert(cp == 0x10FFFF && n == 4);
}

/* Long words without spaces must not be quadratic. */
Test(tokenizer, long_word_is_fast)
{
    miser_tokenizer *t = open_builtin();
    const size_t n = 200000;
    char *w = malloc(n);
    for (size_t i = 0; i < n; i++) w[i] = (char)('a' + rnd() % 26);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    size_t nids, blen;
    int32_t *ids = encode(t, w, n, 0, &nids);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    cr_assert_lt(s, 2.0, "200,000 letters took %.2f s", s);
    cr_assert_gt(nids, n / 10);
    char *back;
    cr_assert_eq(miser_tokenizer_decode(t, ids, nids, &back, &blen), MISER_OK);
    cr_assert(blen == n && !memcmp(back, w, n));
    miser_free(back);
    miser_free(ids);
    free(w);
    miser_tokenizer_free(t);
}

static void write_text(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    write_file(path, text, strlen(text));
}

/* The built-in files written out as a model directory give the same tokenizer. */
Test(tokenizer, model_dir_gpt2)
{
    make_tmpdir();
    bytes v = read_file(MISER_SOURCE_DIR "/data/gpt2/encoder.json");
    bytes m = read_file(MISER_SOURCE_DIR "/data/gpt2/vocab.bpe");
    char path[256];
    snprintf(path, sizeof path, "%s/vocab.json", g_dir);
    write_file(path, v.p, v.n);
    snprintf(path, sizeof path, "%s/merges.txt", g_dir);
    write_file(path, m.p, m.n);
    miser_tokenizer *a = open_builtin(), *b = NULL;
    cr_assert_eq(miser_tokenizer_open(g_dir, &b), MISER_OK, "%s", miser_error_message());
    const char *text = "Memory-frugal GPT-2: na\xc3\xafve caf\xc3\xa9 \xf0\x9f\x98\x80 it's 1912.\n\n  x";
    size_t na, nb;
    int32_t *ia = encode(a, text, strlen(text), 0, &na), *ib = encode(b, text, strlen(text), 0, &nb);
    cr_assert(na == nb && !memcmp(ia, ib, na * sizeof *ia));
    cr_assert_eq(miser_tokenizer_memory(a), miser_tokenizer_memory(b));
    miser_free(ia);
    miser_free(ib);
    miser_tokenizer_free(a);
    miser_tokenizer_free(b);
    free(v.p);
    free(m.p);
    remove_tmpdir();
}

/* A tiny vocabulary: the 256 byte tokens (ids shifted by 7, in the byte-to-
 * unicode alphabet) plus a few merged tokens. */
static void write_tiny_vocab(const char *merges)
{
    char *json = malloc(64 * 1024);
    size_t o = (size_t)sprintf(json, "{");
    unsigned extra = 0;
    for (unsigned b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        unsigned cp = printable ? b : 256 + extra++;
        char u[8];
        if (cp == '"' || cp == '\\')
            sprintf(u, "\\%c", cp);
        else if (cp < 0x80)
            sprintf(u, "%c", cp);
        else
            sprintf(u, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
        o += (size_t)sprintf(json + o, "%s\"%s\": %u", b ? ", " : "", u, b + 7);
    }
    sprintf(json + o, ", \"ab\": 300, \"abc\": 301, \"abcab\": 302, \"bc\": 303, \"\xc4\xa0" "a\": 304}");
    write_text("vocab.json", json);
    free(json);
    write_text("merges.txt", merges);
}

Test(tokenizer, tiny_vocab_merge_order)
{
    make_tmpdir();
    /* Ranks: (a,b) 0, (abc,ab) 1, (ab,c) 2. The reference merges every (ab,c)
     * of a round before looking at the pairs that round created, so "abcabc"
     * is [abc, abc]; merging greedily one pair at a time would instead reach
     * (abc,ab) at rank 1 and give [abcab, c]. */
    write_tiny_vocab("#version: 0.2\na b\nabc ab\nab c\n\xc4\xa0 a\n");
    miser_tokenizer *t = NULL;
    cr_assert_eq(miser_tokenizer_open(g_dir, &t), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_tokenizer_vocab_size(t), 305);
    cr_assert_eq(miser_tokenizer_eot(t), -1);
    size_t n;
    int32_t *ids = encode(t, "abcabc", 6, 0, &n);
    cr_assert_eq(n, 2);
    cr_assert(ids[0] == 301 && ids[1] == 301, "got %d %d", ids[0], ids[1]);
    miser_free(ids);
    /* " ab": pieces " ab" -> bytes (space)(a)(b): ranks (a,b)=0 first, then (" ", ab) has no merge. */
    ids = encode(t, " ab", 3, 0, &n);
    cr_assert(n == 2 && ids[0] == ' ' + 7 && ids[1] == 300);
    miser_free(ids);
    /* " a": (space, a) is rank 3 -> token 304. */
    ids = encode(t, " a", 2, 0, &n);
    cr_assert(n == 1 && ids[0] == 304);
    miser_free(ids);
    /* No "<|endoftext|>" in this vocabulary: it is plain text, byte by byte except merges. */
    ids = encode(t, EOT, 13, 0, &n);
    cr_assert_eq(n, 13);
    miser_free(ids);
    miser_tokenizer_free(t);
    remove_tmpdir();
}

static void expect_open_error(miser_status want, const char *needle)
{
    miser_tokenizer *t = (miser_tokenizer *)1;
    miser_status st = miser_tokenizer_open(g_dir, &t);
    cr_assert_eq(st, want, "status %d (%s), want %d", st, miser_error_message(), want);
    cr_assert_null(t);
    cr_assert(strstr(miser_error_message(), needle), "message \"%s\" lacks \"%s\"", miser_error_message(), needle);
}

Test(tokenizer, error_paths)
{
    make_tmpdir();
    char path[256];
    /* An empty directory falls back to the built-in vocabulary. */
    miser_tokenizer *t = NULL;
    cr_assert_eq(miser_tokenizer_open(g_dir, &t), MISER_OK);
    cr_assert_eq(miser_tokenizer_vocab_size(t), 50257);
    miser_tokenizer_free(t);

    write_text("vocab.json", "{\"a\": 0, \"b\": 1,\n \"c\": }");
    expect_open_error(MISER_ERR_FORMAT, "merges.txt: missing");
    write_text("merges.txt", "#version: 0.2\na b\n");
    expect_open_error(MISER_ERR_FORMAT, "vocab.json: malformed JSON near line 2");
    write_text("vocab.json", "[1, 2]");
    expect_open_error(MISER_ERR_FORMAT, "vocab.json: expected a JSON object");
    write_text("vocab.json", "{\"a\": 1.5}");
    expect_open_error(MISER_ERR_FORMAT, "vocab.json: the id of token \"a\"");
    write_text("vocab.json", "{\"a\": 0, \"b\": 0}");
    expect_open_error(MISER_ERR_FORMAT, "vocab.json: id 0 is given to two tokens");
    write_text("vocab.json", "{\"a\": 0, \"b\": 1}");
    expect_open_error(MISER_ERR_FORMAT, "vocab.json: no token for the single byte 0x00");
    write_text("vocab.json", "");
    expect_open_error(MISER_ERR_FORMAT, "vocab.json: empty file");

    write_tiny_vocab("#version: 0.2\na b\nab x y\n");
    expect_open_error(MISER_ERR_FORMAT, "merges.txt:3: expected two tokens");
    write_tiny_vocab("a b\nab zz\n");
    expect_open_error(MISER_ERR_FORMAT, "merges.txt:2: token \"zz\" is not in");
    write_tiny_vocab("a b\nb a\n");
    expect_open_error(MISER_ERR_FORMAT, "merges.txt:2: the merged token \"ba\" is not in");
    write_tiny_vocab("a b\na \xe2\x82\xac\n");
    expect_open_error(MISER_ERR_FORMAT, "is not a byte-level BPE pair");

    snprintf(path, sizeof path, "%s/vocab.json", g_dir);
    miser_status st = miser_tokenizer_open(path, &t);
    cr_assert_eq(st, MISER_ERR_IO);
    cr_assert(strstr(miser_error_message(), "not a directory"));
    st = miser_tokenizer_open("/nonexistent/miser-model", &t);
    cr_assert_eq(st, MISER_ERR_IO);
    cr_assert(strstr(miser_error_message(), "/nonexistent/miser-model"));
    remove_tmpdir();
}

/* Every allocation of open and encode may fail: a clean error, no leak
 * (LeakSanitizer checks the latter under make test-sanitize). */
Test(tokenizer, allocation_failures)
{
    miser_tokenizer *t = NULL;
    uint64_t k;
    for (k = 1; k < 100; k++) {
        miser_mem_fail_after(k);
        miser_status st = miser_tokenizer_open(NULL, &t);
        miser_mem_fail_after(0);
        if (st == MISER_OK) break;
        cr_assert_eq(st, MISER_ERR_NOMEM, "allocation %llu: %s", (unsigned long long)k, miser_error_message());
        cr_assert_null(t);
    }
    cr_assert(t && k > 3, "open succeeded only after %llu allocations", (unsigned long long)k);
    const char *text = "A long-ish text with words, numbers 123 and a <|endoftext|> marker. \xf0\x9f\x98\x80";
    for (k = 1; k < 100; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        miser_mem_fail_after(k);
        miser_status st = miser_tokenizer_encode(t, text, strlen(text), 0, &ids, &n);
        miser_mem_fail_after(0);
        if (st == MISER_OK) {
            miser_free(ids);
            break;
        }
        cr_assert_eq(st, MISER_ERR_NOMEM);
        cr_assert_null(ids);
    }
    cr_assert_gt(k, 1);
    miser_tokenizer_free(t);
}

/* Heap use is accounted to MISER_MEM_TOKENIZER, nothing is left after free,
 * and the tables stay small. */
Test(tokenizer, memory_accounting)
{
    miser_mem_stats before = miser_mem_get(MISER_MEM_TOKENIZER);
    miser_tokenizer *t = open_builtin();
    miser_mem_stats mid = miser_mem_get(MISER_MEM_TOKENIZER);
    size_t mem = miser_tokenizer_memory(t);
    cr_assert_eq(mid.current - before.current, mem);
    cr_assert_lt(mem, 2u << 20, "tokenizer holds %zu bytes", mem);
    cr_assert_eq(mid.mapped, before.mapped);
    miser_tokenizer_free(t);
    cr_assert_eq(miser_mem_get(MISER_MEM_TOKENIZER).current, before.current);
}

/* ---- the CLI ----------------------------------------------------------------------------- */

static size_t parse_ids_text(const char *s, int32_t **out)
{
    size_t n = 0, cap = 16;
    *out = malloc(cap * sizeof **out);
    char *end;
    for (;;) {
        long v = strtol(s, &end, 10);
        if (end == s) break;
        if (n == cap) *out = realloc(*out, (cap *= 2) * sizeof **out);
        (*out)[n++] = (int32_t)v;
        s = end;
    }
    return n;
}

Test(tokenizer, cli_roundtrip_bytes)
{
    make_tmpdir();
    miser_tokenizer *t = open_builtin();
    /* stdin is read verbatim: NUL, invalid UTF-8, CR and trailing newlines survive. */
    static const char input[] = "Hello\0 world\r\n\xff\xfe caf\xc3\xa9 <|endoftext|> 'll\n\n\n";
    const size_t n = sizeof input - 1;
    char in_path[128], ids_path[128], out_path[128], cmd[512];
    snprintf(in_path, sizeof in_path, "%s/in.bin", g_dir);
    snprintf(ids_path, sizeof ids_path, "%s/ids.txt", g_dir);
    snprintf(out_path, sizeof out_path, "%s/out.bin", g_dir);
    write_file(in_path, input, n);
    for (int special = 0; special < 2; special++) {
        snprintf(cmd, sizeof cmd, "'%s' tokenize %s - < '%s'", MISER_BIN, special ? "--special-as-text" : "", in_path);
        int status;
        bytes got = run_capture(cmd, &status);
        cr_assert_eq(status, 0);
        cr_assert(got.n && got.p[got.n - 1] == '\n');
        int32_t *ids;
        size_t nids = parse_ids_text(got.p, &ids), nwant;
        int32_t *want = encode(t, input, n, special ? MISER_TOKENIZE_SPECIAL_AS_TEXT : 0, &nwant);
        cr_assert(nids == nwant && !memcmp(ids, want, nids * sizeof *ids));
        write_file(ids_path, got.p, got.n);
        snprintf(cmd, sizeof cmd, "'%s' detokenize - < '%s' > '%s'", MISER_BIN, ids_path, out_path);
        cr_assert_eq(run_status(cmd), 0);
        bytes back = read_file(out_path);
        cr_assert(back.n == n && !memcmp(back.p, input, n), "detokenize gave \"%s\"", show(back.p, back.n));
        free(back.p);
        free(got.p);
        free(ids);
        miser_free(want);
    }
    /* JSON output, and TEXT as an argument. */
    int status;
    bytes j = run_capture("'" MISER_BIN "' tokenize --json 'Hello world'", &status);
    cr_assert_eq(status, 0);
    cJSON *o = cJSON_Parse(j.p);
    cr_assert_not_null(o, "%s", j.p);
    cr_assert_eq(cJSON_GetObjectItem(o, "count")->valueint, 2);
    cr_assert_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "ids"), 0)->valueint, 15496);
    cJSON_Delete(o);
    free(j.p);
    /* detokenize --json: invalid UTF-8 becomes U+FFFD, the exact bytes are in "hex".
     * GPT-2's first 256 ids follow bytes_to_unicode: 94..105 are bytes 0xA1..0xAC,
     * 106..187 are 0xAE..0xFF, so 187 is the byte 0xFF. */
    j = run_capture("'" MISER_BIN "' detokenize --json 15496 197 187", &status);
    cr_assert_eq(status, 0);
    o = cJSON_Parse(j.p);
    cr_assert_not_null(o, "%s", j.p);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "text")->valuestring, "Hello\t\xef\xbf\xbd");
    cr_assert_eq(cJSON_GetObjectItem(o, "bytes")->valueint, 7);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(o, "utf8_valid")));
    cr_assert_str_eq(cJSON_GetObjectItem(o, "hex")->valuestring, "48656c6c6f09ff");
    cJSON_Delete(o);
    free(j.p);
    miser_tokenizer_free(t);
    remove_tmpdir();
}

Test(tokenizer, cli_errors)
{
    make_tmpdir();
    char cmd[512];
    cr_assert_eq(run_status("'" MISER_BIN "' detokenize 15496 99999 >/dev/null 2>&1"), 3);
    cr_assert_eq(run_status("'" MISER_BIN "' detokenize 15496 -- -1 >/dev/null 2>&1"), 3);
    cr_assert_eq(run_status("'" MISER_BIN "' detokenize 15496 abc >/dev/null 2>&1"), 2);
    cr_assert_eq(run_status("echo '1 2 x3' | '" MISER_BIN "' detokenize >/dev/null 2>&1"), 3);
    cr_assert_eq(run_status("echo '15496, 995' | '" MISER_BIN "' detokenize >/dev/null 2>&1"), 0);
    cr_assert_eq(run_status("'" MISER_BIN "' tokenize --bogus x >/dev/null 2>&1"), 2);
    cr_assert_eq(run_status("'" MISER_BIN "' tokenize a b >/dev/null 2>&1"), 2);
    cr_assert_eq(run_status("'" MISER_BIN "' tokenize --help | grep -q special-as-text"), 0);
    cr_assert_eq(run_status("'" MISER_BIN "' detokenize --help | grep -q 'IDS'"), 0);
    /* A malformed vocab.json: one line on stderr naming the file, exit 3. */
    write_text("vocab.json", "{\"a\": ");
    write_text("merges.txt", "a b\n");
    snprintf(cmd, sizeof cmd, "'%s' tokenize --model '%s' hi 2>&1 >/dev/null", MISER_BIN, g_dir);
    int status;
    bytes err = run_capture(cmd, &status);
    cr_assert_eq(status, 3);
    cr_assert(strstr(err.p, "vocab.json") && strstr(err.p, "malformed"), "%s", err.p);
    cr_assert(strchr(err.p, '\n') == err.p + err.n - 1, "not one line: %s", err.p);
    free(err.p);
    remove_tmpdir();
}
