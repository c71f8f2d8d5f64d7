/* Pre-tokenizer and normalizer regexes of tokenizer.json files, on PCRE2
 * (UTF + UCP, JIT when the library has it).
 *
 * Hugging Face's Rust tokenizers compile these patterns with Oniguruma (Ruby
 * syntax). PCRE2 agrees with it on everything the published files use
 * (alternation, classes, \p{..}, lookahead, (?i:..), {m,n}) except a few
 * shorthands, which are rewritten before compiling:
 *   \s \S  -> \p{White_Space} / \P{White_Space}  (PCRE2's UCP \s also takes U+180E)
 *   \w \W  -> Oniguruma's word set: Alphabetic, M, Nd, Pc (PCRE2 10.42: L, N, _)
 *   \h \H  -> hex digits (Oniguruma), not horizontal space (PCRE2)
 * and the pattern is compiled MULTILINE, because Ruby's ^ and $ are line
 * anchors. \W inside a character class is left to PCRE2 (approximate).
 *
 * Memory: the compiled pattern and match data come from a PCRE2 general
 * context whose allocator is miser_malloc (MISER_MEM_TOKENIZER); JIT code is
 * mapped by PCRE2 itself and is not accounted. A compiled regex is immutable
 * and shared by threads; each encode call owns its match data. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tok_internal.h"

#include "miser/alloc.h"

#include <pcre2.h>
#include <stdio.h>
#include <string.h>

struct miser_tok_regex {
    pcre2_general_context *gctx;
    pcre2_code *code;
    int jit;
    size_t bytes; /* live bytes PCRE2 holds through re_malloc for this regex */
};

/* PCRE2's allocator; `data` is the regex whose bytes are counted (NULL for match data). */
static void *re_malloc(PCRE2_SIZE n, void *data)
{
    void *p = miser_malloc(MISER_MEM_TOKENIZER, n ? n : 1);
    if (p && data) ((miser_tok_regex *)data)->bytes += miser_alloc_size(p);
    return p;
}

static void re_free(void *p, void *data)
{
    if (p && data) ((miser_tok_regex *)data)->bytes -= miser_alloc_size(p);
    miser_free(p);
}

/* Appends s[0,n) to a growing buffer; returns -1 on NOMEM. */
typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *q = miser_realloc(MISER_MEM_TOKENIZER, b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

#define WORD_IN_CLASS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}"

/* The Oniguruma -> PCRE2 rewrite described above. */
static int rewrite(const char *pat, size_t len, sbuf *out)
{
    int in_class = 0;
    for (size_t i = 0; i < len; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < len) {
            char d = pat[i + 1];
            const char *rep = NULL;
            switch (d) {
            case 's': rep = "\\p{White_Space}"; break;
            case 'S': rep = "\\P{White_Space}"; break;
            case 'w': rep = in_class ? WORD_IN_CLASS : "[" WORD_IN_CLASS "]"; break;
            case 'W': rep = in_class ? NULL : "[^" WORD_IN_CLASS "]"; break;
            case 'h': rep = in_class ? "0-9A-Fa-f" : "[0-9A-Fa-f]"; break;
            case 'H': rep = in_class ? NULL : "[^0-9A-Fa-f]"; break;
            default: break;
            }
            if (rep) {
                if (sb_put(out, rep, strlen(rep))) return -1;
            } else if (sb_put(out, pat + i, 2)) {
                return -1;
            }
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            if (sb_put(out, pat + i, 1)) return -1;
            /* a ']' right after '[' or '[^' is a literal */
            if (i + 1 < len && pat[i + 1] == '^') {
                if (sb_put(out, pat + ++i, 1)) return -1;
            }
            if (i + 1 < len && pat[i + 1] == ']') {
                if (sb_put(out, pat + ++i, 1)) return -1;
            }
            continue;
        }
        if (in_class && c == '[' && i + 1 < len && pat[i + 1] == ':') {
            /* POSIX [:alpha:] inside a class: copy through its ']' */
            const char *e = memchr(pat + i + 2, ']', len - i - 2);
            if (e && e[-1] == ':') {
                size_t n = (size_t)(e - (pat + i)) + 1;
                if (sb_put(out, pat + i, n)) return -1;
                i += n - 1;
                continue;
            }
        }
        if (in_class && c == ']') in_class = 0;
        if (sb_put(out, pat + i, 1)) return -1;
    }
    if (!out->p && sb_put(out, "", 0)) return -1;
    return 0;
}

miser_status miser_tok_regex_compile(const char *pat, size_t len, const char *what, miser_tok_regex **out)
{
    *out = NULL;
    sbuf rw = {0};
    if (rewrite(pat, len, &rw)) {
        miser_free(rw.p);
        return miser_error_set(MISER_ERR_NOMEM, "out of memory compiling a regex");
    }
    miser_tok_regex *re = miser_calloc(MISER_MEM_TOKENIZER, 1, sizeof *re);
    if (!re || !(re->gctx = pcre2_general_context_create(re_malloc, re_free, re))) {
        miser_free(rw.p);
        miser_free(re);
        return miser_error_set(MISER_ERR_NOMEM, "out of memory compiling a regex");
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(re->gctx);
    if (!cc) {
        miser_free(rw.p);
        miser_tok_regex_free(re);
        return miser_error_set(MISER_ERR_NOMEM, "out of memory compiling a regex");
    }
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    int err = 0;
    PCRE2_SIZE eoff = 0;
    re->code = pcre2_compile((PCRE2_SPTR)rw.p, rw.n, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &eoff, cc);
    pcre2_compile_context_free(cc);
    miser_free(rw.p);
    if (!re->code) {
        miser_tok_regex_free(re);
        if (err == PCRE2_ERROR_NOMEMORY || err == PCRE2_ERROR_HEAP_FAILED)
            return miser_error_set(MISER_ERR_NOMEM, "out of memory compiling a regex");
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        char shown[84];
        return miser_error_set(MISER_ERR_FORMAT, "%s: the regex \"%s\" does not compile: %s", what,
                               miser_tok_printable(pat, len, shown, sizeof shown), (const char *)msg);
    }
    re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
    *out = re;
    return MISER_OK;
}

void miser_tok_regex_free(miser_tok_regex *re)
{
    if (!re) return;
    if (re->code) pcre2_code_free(re->code);
    if (re->gctx) pcre2_general_context_free(re->gctx);
    miser_free(re);
}

size_t miser_tok_regex_memory(const miser_tok_regex *re)
{
    /* everything PCRE2 allocated for it through re_malloc (JIT code itself
     * is mapped by PCRE2 and not counted) */
    if (!re) return 0;
    return miser_alloc_size(re) + re->bytes;
}

void *miser_tok_regex_match_data(void)
{
    /* One pair is all the callers read; a pattern with groups still reports
     * the whole match in pair 0 (pcre2_match returns 0 then). Plain malloc
     * context: the data is short-lived and freed by the same call. */
    pcre2_general_context *g = pcre2_general_context_create(re_malloc, re_free, NULL);
    if (!g) return NULL;
    pcre2_match_data *md = pcre2_match_data_create(1, g);
    pcre2_general_context_free(g);
    return md;
}

void miser_tok_regex_match_data_free(void *md)
{
    if (md) pcre2_match_data_free(md);
}

int miser_tok_regex_find(const miser_tok_regex *re, const uint8_t *s, size_t len, size_t from, void *md, size_t *ms,
                         size_t *me)
{
    for (;;) {
        if (from > len) return 0;
        int rc = re->jit ? pcre2_jit_match(re->code, s, len, from, PCRE2_NO_UTF_CHECK, md, NULL)
                         : pcre2_match(re->code, s, len, from, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc < 0) return -1;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] > ov[0] || ov[0] >= len) {
            if (ov[1] == ov[0]) return 0; /* an empty match at the end */
            *ms = ov[0];
            *me = ov[1];
            return 1;
        }
        /* An empty match inside the text: it splits nothing; look on from
         * the next character. */
        from = ov[0] + 1;
        while (from < len && (s[from] & 0xC0) == 0x80) from++;
    }
}
