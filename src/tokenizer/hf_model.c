/* The Hugging Face tokenizer pipeline, as the Rust `tokenizers` crate runs
 * it: added tokens split out of the text, normalizers, pre-tokenizers, the
 * BPE model (byte-level or SentencePiece-style with byte fallback), the
 * post-processor's prefix/suffix; and the decoder's per-token bytes.
 *
 * Text handling: the input is first made valid UTF-8 the way the WHATWG
 * Encoding Standard (and so Node's Buffer.toString, Python's
 * errors="replace") does it: each maximal invalid subpart becomes U+FFFD.
 * Everything after that works on valid UTF-8.
 *
 * BPE merges follow the crate: repeatedly the adjacent pair with the lowest
 * (priority, position), one at a time — a min-heap of (priority << 32 | left
 * symbol index) over a linked list of symbols; entries made stale by an
 * earlier merge are recognised when popped (the pair at that position no
 * longer has that priority). O(n log n) per piece. Within one encode call
 * repeated pieces come from a cache (pieces shorter than 256 bytes); the
 * cache lives in the call's state, so the handle stays immutable and
 * shareable between threads.
 *
 * Memory: every table is MISER_MEM_TOKENIZER; utf8proc's normalization
 * result (its own malloc) is copied out and freed at once. */
#include "tok_internal.h"

#include "miser/alloc.h"
#include "pretokenize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- small helpers ------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return mix64(h ^ n);
}

static uint32_t table_size(size_t n)
{
    size_t cap = 16;
    while (cap < n + n / 4 + 1) cap <<= 1;
    return (uint32_t)cap;
}

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static int buf_reserve(buf *b, size_t extra)
{
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra) cap *= 2;
    uint8_t *q = miser_realloc(MISER_MEM_TOKENIZER, b->p, cap);
    if (!q) return -1;
    b->p = q;
    b->cap = cap;
    return 0;
}

static int buf_put(buf *b, const void *s, size_t n)
{
    if (buf_reserve(b, n + 1)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

/* Unicode White_Space (Rust's char::is_whitespace). */
static int is_ws(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Decode one character of valid UTF-8. */
static uint32_t u8next(const uint8_t *s, size_t len, size_t i, size_t *n)
{
    uint32_t c = miser_utf8_next(s, len, i, n);
    return c == MISER_UTF8_INVALID ? 0xFFFD : c;
}

static int is_numeric_cp(uint32_t c)
{
    if (c < 0x80) return c - '0' < 10u;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

static int is_word_cp(uint32_t c)
{
    if (c == '_') return 1;
    if (c < 0x80) return ((c | 0x20u) - 'a' < 26u) || c - '0' < 10u;
    return miser_pretok_class(c) == MISER_CC_LETTER || miser_pretok_class(c) == MISER_CC_NUMBER;
}

/* WHATWG UTF-8 decode with replacement: appends valid UTF-8 to out. */
static int sanitize_utf8(const uint8_t *s, size_t len, buf *out)
{
    static const uint8_t fffd[3] = {0xEF, 0xBF, 0xBD};
    if (buf_reserve(out, len + 1)) return -1;
    for (size_t i = 0; i < len;) {
        uint8_t c = s[i];
        size_t need = 0;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            if (buf_put(out, s + i, 1)) return -1;
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            if (buf_put(out, fffd, 3)) return -1;
            i++;
            continue;
        }
        size_t k = 1;
        for (; k <= need; k++) {
            if (i + k >= len) break;
            uint8_t d = s[i + k];
            if (d < lo || d > hi) break;
            lo = 0x80;
            hi = 0xBF;
        }
        if (k == need + 1) {
            if (buf_put(out, s + i, k)) return -1;
        } else if (buf_put(out, fffd, 3)) {
            return -1;
        }
        i += k;
    }
    return 0;
}

/* ---- building ------------------------------------------------------------------- */

miser_status miser_tok_hf_new(const char *name, miser_tokenizer **out)
{
    *out = NULL;
    miser_tokenizer *t = miser_calloc(MISER_MEM_TOKENIZER, 1, sizeof *t);
    if (!t) return MISER_ERR_NOMEM;
    t->eot = -1;
    t->hf = miser_calloc(MISER_MEM_TOKENIZER, 1, sizeof *t->hf);
    if (!t->hf || !(t->hf->name = miser_strdup(MISER_MEM_TOKENIZER, name ? name : "tokenizer"))) {
        miser_tokenizer_free(t);
        return MISER_ERR_NOMEM;
    }
    t->hf->unk = -1;
    t->hf->bos = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = t->hf->bytefb_id[b] = -1;
    *out = t;
    return MISER_OK;
}

static uint32_t *str_find(const miser_tok_hf *h, const uint8_t *p, size_t n)
{
    uint32_t i = (uint32_t)hash_bytes(p, n) & h->str_mask;
    for (;; i = (i + 1) & h->str_mask) {
        uint32_t v = h->str_slots[i];
        if (!v) return &h->str_slots[i];
        uint32_t id = v - 1, o = h->str_off[id];
        if (h->str_off[id + 1] - o == n && !memcmp(h->str + o, p, n)) return &h->str_slots[i];
    }
}

int32_t miser_tok_hf_lookup(const miser_tokenizer *t, const void *s, size_t n)
{
    if (!n || !t->hf->str_slots) return -1;
    return (int32_t)*str_find(t->hf, s, n) - 1;
}

miser_status miser_tok_hf_set_vocab(miser_tokenizer *t, int32_t n_vocab, const char *const *strs, const uint32_t *lens)
{
    miser_tok_hf *h = t->hf;
    size_t total = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        total += strs[i] ? lens[i] : 0;
        if (total > UINT32_MAX / 2)
            return miser_error_set(MISER_ERR_FORMAT, "%s: the vocabulary's strings exceed 2 GB", h->name);
    }
    t->n_vocab = n_vocab;
    h->str_off = miser_calloc(MISER_MEM_TOKENIZER, (size_t)n_vocab + 1, sizeof *h->str_off);
    h->str = miser_malloc(MISER_MEM_TOKENIZER, total + 1);
    h->tflags = miser_calloc(MISER_MEM_TOKENIZER, (size_t)n_vocab + 1, 1);
    h->str_mask = table_size((size_t)n_vocab * 2) - 1;
    h->str_slots = miser_calloc(MISER_MEM_TOKENIZER, (size_t)h->str_mask + 1, sizeof *h->str_slots);
    if (!h->str_off || !h->str || !h->tflags || !h->str_slots) return MISER_ERR_NOMEM;
    size_t o = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        h->str_off[i] = (uint32_t)o;
        if (strs[i] && lens[i]) {
            memcpy(h->str + o, strs[i], lens[i]);
            o += lens[i];
        }
        h->str_off[i + 1] = (uint32_t)o;
    }
    for (int32_t i = 0; i < n_vocab; i++) {
        uint32_t n = h->str_off[i + 1] - h->str_off[i];
        if (!n) continue;
        uint32_t *slot = str_find(h, h->str + h->str_off[i], n);
        if (!*slot) *slot = (uint32_t)i + 1; /* a repeated string: the first id wins */
    }
    return MISER_OK;
}

static void insert_pair(miser_tokenizer *t, uint32_t rank)
{
    int32_t a = t->merge_a[rank], b = t->merge_b[rank];
    uint32_t i = (uint32_t)mix64(((uint64_t)(uint32_t)a << 32) | (uint32_t)b) & t->pair_mask;
    while (t->pair_slots[i]) {
        uint32_t r = t->pair_slots[i] - 1;
        if (t->merge_a[r] == a && t->merge_b[r] == b) break;
        i = (i + 1) & t->pair_mask;
    }
    t->pair_slots[i] = rank + 1; /* a repeated pair keeps its last rank */
}

static int64_t pair_rank(const miser_tokenizer *t, int32_t a, int32_t b)
{
    if (!t->pair_slots) return -1;
    uint32_t i = (uint32_t)mix64(((uint64_t)(uint32_t)a << 32) | (uint32_t)b) & t->pair_mask;
    uint32_t r;
    while ((r = t->pair_slots[i]) != 0) {
        r--;
        if (t->merge_a[r] == a && t->merge_b[r] == b) return r;
        i = (i + 1) & t->pair_mask;
    }
    return -1;
}

static miser_status alloc_merges(miser_tokenizer *t, size_t n)
{
    if (n > (1u << 30)) return miser_error_set(MISER_ERR_FORMAT, "%s: %zu merges is too many", t->hf->name, n);
    t->merge_a = miser_malloc(MISER_MEM_TOKENIZER, (n ? n : 1) * 3 * sizeof(int32_t));
    t->hf->merge_prio = miser_malloc(MISER_MEM_TOKENIZER, (n ? n : 1) * sizeof(uint32_t));
    t->pair_mask = table_size(n) - 1;
    t->pair_slots = miser_calloc(MISER_MEM_TOKENIZER, (size_t)t->pair_mask + 1, sizeof(uint32_t));
    if (!t->merge_a || !t->hf->merge_prio || !t->pair_slots) return MISER_ERR_NOMEM;
    t->merge_b = t->merge_a + (n ? n : 1);
    t->merge_out = t->merge_b + (n ? n : 1);
    return MISER_OK;
}

miser_status miser_tok_hf_set_merges(miser_tokenizer *t, size_t n, const int32_t *left, const int32_t *right,
                                     const char *what)
{
    miser_tok_hf *h = t->hf;
    miser_status st = alloc_merges(t, n);
    if (st) return st;
    buf cat = {0};
    for (size_t r = 0; r < n; r++) {
        int32_t a = left[r], b = right[r];
        if (a < 0 || b < 0 || a >= t->n_vocab || b >= t->n_vocab) {
            miser_free(cat.p);
            return miser_error_set(MISER_ERR_FORMAT, "%s: %s[%zu] refers to a token that is not in the vocabulary",
                                   h->name, what, r);
        }
        uint32_t la = h->str_off[a + 1] - h->str_off[a], lb = h->str_off[b + 1] - h->str_off[b];
        cat.n = 0;
        if (buf_put(&cat, h->str + h->str_off[a], la) || buf_put(&cat, h->str + h->str_off[b], lb)) {
            miser_free(cat.p);
            return MISER_ERR_NOMEM;
        }
        int32_t ab = miser_tok_hf_lookup(t, cat.p, cat.n);
        if (ab < 0) {
            char shown[84];
            miser_status e = miser_error_set(MISER_ERR_FORMAT, "%s: %s[%zu]: the merged token \"%s\" is not in the vocabulary",
                                             h->name, what, r,
                                             miser_tok_printable((const char *)cat.p, cat.n, shown, sizeof shown));
            miser_free(cat.p);
            return e;
        }
        t->merge_a[r] = a;
        t->merge_b[r] = b;
        t->merge_out[r] = ab;
        h->merge_prio[r] = (uint32_t)r;
        insert_pair(t, (uint32_t)r);
    }
    t->n_merges = (uint32_t)n;
    miser_free(cat.p);
    return MISER_OK;
}

/* Scores sorted descending, ids ascending on ties. */
static const float *g_sort_scores;
static int cmp_score(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    float sa = g_sort_scores[a], sb = g_sort_scores[b];
    if (sa != sb) return sa > sb ? -1 : 1;
    return a < b ? -1 : a > b;
}

miser_status miser_tok_hf_spm_merges(miser_tokenizer *t, const float *scores, const int32_t *types)
{
    miser_tok_hf *h = t->hf;
    h->spm_scores = 1;
    /* Count candidate pairs: each split point of each normal token. */
    size_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (types && types[id] != MISER_TOKTYPE_NORMAL) continue;
        uint32_t len = h->str_off[id + 1] - h->str_off[id];
        if (len > 1) n += len - 1;
    }
    int32_t *order = miser_malloc(MISER_MEM_TOKENIZER, ((size_t)t->n_vocab + 1) * sizeof *order);
    uint32_t *dense = miser_malloc(MISER_MEM_TOKENIZER, ((size_t)t->n_vocab + 1) * sizeof *dense);
    miser_status st = order && dense ? alloc_merges(t, n) : MISER_ERR_NOMEM;
    if (st) goto out;
    for (int32_t i = 0; i < t->n_vocab; i++) order[i] = i;
    g_sort_scores = scores; /* qsort has no context argument; loading is not hot */
    qsort(order, (size_t)t->n_vocab, sizeof *order, cmp_score);
    uint32_t rank = 0;
    for (int32_t k = 0; k < t->n_vocab; k++) {
        if (k && scores[order[k]] != scores[order[k - 1]]) rank++;
        dense[order[k]] = rank;
    }
    size_t m = 0;
    for (int32_t k = 0; k < t->n_vocab; k++) {
        int32_t id = order[k];
        if (types && types[id] != MISER_TOKTYPE_NORMAL) continue;
        const uint8_t *s = h->str + h->str_off[id];
        uint32_t len = h->str_off[id + 1] - h->str_off[id];
        for (uint32_t cut = 1; cut < len; cut++) {
            if ((s[cut] & 0xC0) == 0x80) continue; /* split between characters only */
            int32_t a = miser_tok_hf_lookup(t, s, cut), b = miser_tok_hf_lookup(t, s + cut, len - cut);
            if (a < 0 || b < 0 || pair_rank(t, a, b) >= 0) continue;
            t->merge_a[m] = a;
            t->merge_b[m] = b;
            t->merge_out[m] = id;
            h->merge_prio[m] = dense[id];
            insert_pair(t, (uint32_t)m);
            m++;
        }
    }
    t->n_merges = (uint32_t)m;
out:
    miser_free(order);
    miser_free(dense);
    return st;
}

miser_status miser_tok_hf_add_token(miser_tokenizer *t, int32_t id, const char *content, size_t len, int special,
                                    int normalized, int lstrip, int rstrip, int single_word)
{
    miser_tok_hf *h = t->hf;
    if (!len) return miser_error_set(MISER_ERR_FORMAT, "%s: added token %d has empty content", h->name, (int)id);
    miser_hf_added *a = miser_realloc(MISER_MEM_TOKENIZER, h->added, (h->n_added + 1) * sizeof *a);
    if (!a) return MISER_ERR_NOMEM;
    h->added = a;
    uint8_t *s = miser_realloc(MISER_MEM_TOKENIZER, h->added_str, h->added_str_len + len + 1);
    if (!s) return MISER_ERR_NOMEM;
    h->added_str = s;
    memcpy(s + h->added_str_len, content, len);
    miser_hf_added *e = &a[h->n_added++];
    memset(e, 0, sizeof *e);
    e->id = id;
    e->off = (uint32_t)h->added_str_len;
    e->len = (uint32_t)len;
    e->special = (uint8_t)!!special;
    e->normalized = (uint8_t)!!normalized;
    e->lstrip = (uint8_t)!!lstrip;
    e->rstrip = (uint8_t)!!rstrip;
    e->single_word = (uint8_t)!!single_word;
    h->added_str_len += len;
    return MISER_OK;
}

/* ---- normalizers ------------------------------------------------------------------ */

/* One step from in[0,n) to out (cleared first). */
static int norm_step(const miser_hf_step *st, const uint8_t *in, size_t n, buf *out, void **md)
{
    out->n = 0;
    switch (st->kind) {
    case MISER_HF_NFC: case MISER_HF_NFD: case MISER_HF_NFKC: case MISER_HF_NFKD: {
        if (!n) return 0;
        int opt = UTF8PROC_STABLE;
        if (st->kind == MISER_HF_NFC || st->kind == MISER_HF_NFKC) opt |= UTF8PROC_COMPOSE;
        else opt |= UTF8PROC_DECOMPOSE;
        if (st->kind == MISER_HF_NFKC || st->kind == MISER_HF_NFKD) opt |= UTF8PROC_COMPAT;
        utf8proc_uint8_t *r = NULL;
        utf8proc_ssize_t rn = utf8proc_map(in, (utf8proc_ssize_t)n, &r, (utf8proc_option_t)opt);
        if (rn < 0) {
            free(r);
            return buf_put(out, in, n); /* cannot happen on valid UTF-8 except NOMEM */
        }
        int e = buf_put(out, r, (size_t)rn);
        free(r);
        return e;
    }
    case MISER_HF_LOWER: case MISER_HF_STRIP_ACCENTS: {
        size_t cn;
        for (size_t i = 0; i < n; i += cn) {
            uint32_t c = u8next(in, n, i, &cn);
            if (st->kind == MISER_HF_STRIP_ACCENTS) {
                if (utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_MN) continue;
            } else {
                c = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
            }
            uint8_t enc[4];
            utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)c, enc);
            if (buf_put(out, enc, (size_t)k)) return -1;
        }
        return 0;
    }
    case MISER_HF_REPLACE: {
        size_t pos = 0;
        while (pos < n) {
            size_t ms, me;
            int found;
            if (st->re) {
                if (!*md && !(*md = miser_tok_regex_match_data())) return -1;
                found = miser_tok_regex_find(st->re, in, n, pos, *md, &ms, &me);
                if (found < 0) return -2;
            } else {
                const uint8_t *hit = st->n1 ? memmem(in + pos, n - pos, st->s1, st->n1) : NULL;
                found = hit != NULL;
                if (hit) {
                    ms = (size_t)(hit - in);
                    me = ms + st->n1;
                }
            }
            if (!found) break;
            if (buf_put(out, in + pos, ms - pos) || buf_put(out, st->s2, st->n2)) return -1;
            pos = me;
        }
        return buf_put(out, in + pos, n - pos);
    }
    case MISER_HF_PREPEND:
        if (n && buf_put(out, st->s1, st->n1)) return -1;
        return buf_put(out, in, n);
    case MISER_HF_STRIP: {
        size_t a = 0, b = n, cn;
        if (st->a)
            while (a < b && is_ws(u8next(in, n, a, &cn))) a += cn;
        if (st->b)
            while (b > a) {
                size_t k = b - 1;
                while (k > a && (in[k] & 0xC0) == 0x80) k--;
                if (!is_ws(u8next(in, n, k, &cn))) break;
                b = k;
            }
        return buf_put(out, in + a, b - a);
    }
    default:
        return buf_put(out, in, n);
    }
}

/* All normalizers: result in *res (one of the two buffers). */
static int normalize(const miser_tok_hf *h, const uint8_t *in, size_t n, buf *b1, buf *b2, buf **res, void **md)
{
    b1->n = 0;
    if (buf_put(b1, in, n)) return -1;
    buf *cur = b1, *oth = b2;
    for (size_t k = 0; k < h->n_norm; k++) {
        int e = norm_step(&h->norm[k], cur->p, cur->n, oth, md);
        if (e) return e;
        buf *x = cur;
        cur = oth;
        oth = x;
    }
    *res = cur;
    return 0;
}

/* ---- encode state --------------------------------------------------------------------- */

typedef struct {
    uint32_t off, len;
} span;

typedef struct {
    span *p;
    size_t n, cap;
} spans;

static int spans_push(spans *s, size_t off, size_t len)
{
    if (!len) return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        span *q = miser_realloc(MISER_MEM_TOKENIZER, s->p, cap * sizeof *q);
        if (!q) return -1;
        s->p = q;
        s->cap = cap;
    }
    s->p[s->n].off = (uint32_t)off;
    s->p[s->n++].len = (uint32_t)len;
    return 0;
}

typedef struct {
    int32_t *ids;
    size_t n, cap;
    void *md;                 /* PCRE2 match data */
    buf clean, n1, n2, pb, tmp;
    spans pa, pbx;
    /* BPE scratch */
    void *block;
    size_t scap;
    int32_t *sym, *next, *prev;
    uint64_t *heap;
    /* cache: piece bytes -> ids */
    uint32_t *cslots, cmask, cn;
    buf ckeys;                /* key bytes */
    uint32_t *cent;           /* per entry: key off, key len, ids off, ids n */
    size_t cent_n, cent_cap;
    int32_t *cids;
    size_t cids_n, cids_cap;
    int err;                  /* -2: regex failure */
} hstate;

static int emit(hstate *e, int32_t id)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        int32_t *p = miser_realloc(MISER_MEM_TOKENIZER, e->ids, cap * sizeof *p);
        if (!p) return -1;
        e->ids = p;
        e->cap = cap;
    }
    e->ids[e->n++] = id;
    return 0;
}

static int reserve_scratch(hstate *e, size_t n)
{
    if (n <= e->scap) return 0;
    size_t cap = n < 64 ? 64 : n + n / 2;
    if (cap > UINT32_MAX / 4) return -1;
    miser_free(e->block);
    uint8_t *blk = miser_malloc(MISER_MEM_TOKENIZER, cap * (3 * sizeof(int32_t) + 3 * sizeof(uint64_t)));
    e->block = blk;
    if (!blk) {
        e->scap = 0;
        return -1;
    }
    e->heap = (uint64_t *)blk;
    e->sym = (int32_t *)(e->heap + 3 * cap);
    e->next = e->sym + cap;
    e->prev = e->next + cap;
    e->scap = cap;
    return 0;
}

/* ---- the cache ---------------------------------------------------------------------------- */

#define CACHE_MAX_KEY 256
#define CACHE_MAX_ENTRIES 16384

static uint32_t *cache_find(hstate *e, const uint8_t *p, size_t n)
{
    uint32_t i = (uint32_t)hash_bytes(p, n) & e->cmask;
    for (;; i = (i + 1) & e->cmask) {
        uint32_t v = e->cslots[i];
        if (!v) return &e->cslots[i];
        const uint32_t *en = e->cent + 4 * (v - 1);
        if (en[1] == n && !memcmp(e->ckeys.p + en[0], p, n)) return &e->cslots[i];
    }
}

static int cache_get(hstate *e, const uint8_t *p, size_t n)
{
    if (!e->cslots || n > CACHE_MAX_KEY) return 0;
    uint32_t v = *cache_find(e, p, n);
    if (!v) return 0;
    const uint32_t *en = e->cent + 4 * (v - 1);
    for (uint32_t k = 0; k < en[3]; k++)
        if (emit(e, e->cids[en[2] + k])) return -1;
    return 1;
}

/* Records ids[from, e->n) for the piece. Failure to cache is not an error. */
static void cache_put(hstate *e, const uint8_t *p, size_t n, size_t from)
{
    if (n > CACHE_MAX_KEY || e->cent_n >= CACHE_MAX_ENTRIES) return;
    if (!e->cslots) {
        e->cmask = table_size(CACHE_MAX_ENTRIES) - 1;
        if (!(e->cslots = miser_calloc(MISER_MEM_TOKENIZER, (size_t)e->cmask + 1, sizeof *e->cslots))) return;
    }
    uint32_t *slot = cache_find(e, p, n);
    if (*slot) return;
    size_t k = e->n - from;
    if (e->cent_n == e->cent_cap) {
        size_t cap = e->cent_cap ? e->cent_cap * 2 : 256;
        uint32_t *q = miser_realloc(MISER_MEM_TOKENIZER, e->cent, cap * 4 * sizeof *q);
        if (!q) return;
        e->cent = q;
        e->cent_cap = cap;
    }
    if (e->cids_n + k > e->cids_cap) {
        size_t cap = (e->cids_n + k) * 2 + 256;
        int32_t *q = miser_realloc(MISER_MEM_TOKENIZER, e->cids, cap * sizeof *q);
        if (!q) return;
        e->cids = q;
        e->cids_cap = cap;
    }
    size_t koff = e->ckeys.n;
    if (buf_put(&e->ckeys, p, n)) return;
    uint32_t *en = e->cent + 4 * e->cent_n;
    en[0] = (uint32_t)koff;
    en[1] = (uint32_t)n;
    en[2] = (uint32_t)e->cids_n;
    en[3] = (uint32_t)k;
    memcpy(e->cids + e->cids_n, e->ids + from, k * sizeof *e->cids);
    e->cids_n += k;
    *slot = (uint32_t)++e->cent_n;
}

/* ---- the BPE model -------------------------------------------------------------------------- */

static int bpe_piece(const miser_tokenizer *t, hstate *e, const uint8_t *p, size_t len)
{
    const miser_tok_hf *h = t->hf;
    if (!len) return 0;
    int c = cache_get(e, p, len);
    if (c) return c < 0 ? -1 : 0;
    size_t from = e->n;
    if (h->ignore_merges) {
        int32_t id;
        if (h->byte_level) {
            e->tmp.n = 0;
            for (size_t i = 0; i < len; i++) {
                uint8_t enc[4];
                utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)miser_tok_byte_to_unicode(p[i]), enc);
                if (buf_put(&e->tmp, enc, (size_t)k)) return -1;
            }
            id = miser_tok_hf_lookup(t, e->tmp.p, e->tmp.n);
        } else {
            id = miser_tok_hf_lookup(t, p, len);
        }
        if (id >= 0) {
            if (emit(e, id)) return -1;
            cache_put(e, p, len, from);
            return 0;
        }
    }
    if (len > UINT32_MAX / 8 || reserve_scratch(e, len)) return -1;
    int32_t *sym = e->sym, *next = e->next, *prev = e->prev;
    int32_t L = 0;
    if (h->byte_level) {
        for (size_t i = 0; i < len; i++)
            if (t->byte_id[p[i]] >= 0) sym[L++] = t->byte_id[p[i]];
    } else {
        size_t cn;
        int last_unk = 0;
        for (size_t i = 0; i < len; i += cn) {
            u8next(p, len, i, &cn);
            int32_t id = miser_tok_hf_lookup(t, p + i, cn);
            if (id >= 0) {
                sym[L++] = id;
                last_unk = 0;
                continue;
            }
            int all = h->byte_fallback;
            for (size_t k = 0; all && k < cn; k++) all = h->bytefb_id[p[i + k]] >= 0;
            if (all) {
                for (size_t k = 0; k < cn; k++) sym[L++] = h->bytefb_id[p[i + k]];
                last_unk = 0;
            } else if (h->unk >= 0) {
                if (!(h->fuse_unk && last_unk)) sym[L++] = h->unk;
                last_unk = 1;
            }
        }
    }
    for (int32_t i = 0; i < L; i++) {
        next[i] = i + 1;
        prev[i] = i - 1;
    }
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < L; i++) {
        int64_t r = pair_rank(t, sym[i], sym[i + 1]);
        if (r >= 0) miser_tok_heap_push(e->heap, &hn, ((uint64_t)h->merge_prio[r] << 32) | (uint32_t)i);
    }
    while (hn) {
        uint64_t v = miser_tok_heap_pop(e->heap, &hn);
        int32_t i = (int32_t)(uint32_t)v, j;
        if (sym[i] < 0 || (j = next[i]) >= L) continue;
        int64_t r = pair_rank(t, sym[i], sym[j]);
        if (r < 0 || h->merge_prio[r] != (uint32_t)(v >> 32)) continue; /* stale */
        int32_t ab = t->merge_out[r];
        sym[i] = ab;
        sym[j] = -1;
        int32_t nx = next[j];
        next[i] = nx;
        if (nx < L) prev[nx] = i;
        int32_t pv = prev[i];
        int64_t r2;
        if (pv >= 0 && (r2 = pair_rank(t, sym[pv], ab)) >= 0)
            miser_tok_heap_push(e->heap, &hn, ((uint64_t)h->merge_prio[r2] << 32) | (uint32_t)pv);
        if (nx < L && (r2 = pair_rank(t, ab, sym[nx])) >= 0)
            miser_tok_heap_push(e->heap, &hn, ((uint64_t)h->merge_prio[r2] << 32) | (uint32_t)i);
    }
    for (int32_t i = 0; i < L; i = next[i])
        if (emit(e, sym[i])) return -1;
    cache_put(e, p, len, from);
    return 0;
}

/* ---- pre-tokenizers ---------------------------------------------------------------------------- */

/* Pieces of one span after a split by matches: (range, is_match) pairs
 * turned into pieces as the behaviour says (tokenizers' normalizer split). */
typedef struct {
    size_t a, b;
    int m;
} rng;

static int apply_behavior(spans *out, rng *r, size_t n, int behavior)
{
    if (behavior == MISER_HF_ISOLATED) {
        for (size_t k = 0; k < n; k++)
            if (spans_push(out, r[k].a, r[k].b - r[k].a)) return -1;
        return 0;
    }
    if (behavior == MISER_HF_REMOVED) {
        for (size_t k = 0; k < n; k++)
            if (!r[k].m && spans_push(out, r[k].a, r[k].b - r[k].a)) return -1;
        return 0;
    }
    /* Merge in place, then push. */
    size_t w = 0;
    int prevm = 0;
    if (behavior == MISER_HF_MERGED_NEXT) {
        /* right to left */
        rng *acc = r; /* reuse: build reversed list at the end of r? simpler: walk backwards into a temp order */
        size_t m = 0;
        for (size_t k = n; k-- > 0;) {
            if (r[k].m && !prevm && m) {
                acc[n - m].a = r[k].a; /* extend the last pushed (which sits at index n - m) */
            } else {
                /* store at index n-1-m (we walk from the end, so this never overwrites unread entries) */
                acc[n - 1 - m] = r[k];
                m++;
            }
            prevm = r[k].m;
        }
        for (size_t k = n - m; k < n; k++)
            if (spans_push(out, acc[k].a, acc[k].b - acc[k].a)) return -1;
        return 0;
    }
    for (size_t k = 0; k < n; k++) {
        int merge;
        if (behavior == MISER_HF_MERGED_PREV) merge = r[k].m && !prevm && w;
        else merge = r[k].m == prevm && w; /* CONTIGUOUS */
        if (merge)
            r[w - 1].b = r[k].b;
        else
            r[w++] = r[k];
        prevm = r[k].m;
    }
    for (size_t k = 0; k < w; k++)
        if (spans_push(out, r[k].a, r[k].b - r[k].a)) return -1;
    return 0;
}


/* Splits every span of `in` (offsets into e->pb) into `out`. */
static int pre_split(hstate *e, const miser_hf_step *st, const spans *in, spans *out)
{
    rng *r = NULL;
    size_t rcap = 0;
    int rc = 0;
    for (size_t k = 0; k < in->n && !rc; k++) {
        const uint8_t *s = e->pb.p + in->p[k].off;
        size_t len = in->p[k].len, base = in->p[k].off, nr = 0, prev = 0, pos = 0;
        for (;;) {
            size_t ms = 0, me = 0;
            int found = 0;
            if (st->kind == MISER_HF_DIGITS) {
                /* each numeric character is a match */
                size_t cn;
                while (pos < len && !is_numeric_cp(u8next(s, len, pos, &cn))) pos += cn;
                if (pos < len) {
                    found = 1;
                    ms = pos;
                    me = pos + cn;
                }
            } else if (st->re) {
                if (!e->md && !(e->md = miser_tok_regex_match_data())) {
                    rc = -1;
                    break;
                }
                found = miser_tok_regex_find(st->re, s, len, pos, e->md, &ms, &me);
                if (found < 0) {
                    rc = -2;
                    break;
                }
            } else if (st->n1) {
                const uint8_t *hit = memmem(s + pos, len - pos, st->s1, st->n1);
                if (hit) {
                    found = 1;
                    ms = (size_t)(hit - s);
                    me = ms + st->n1;
                }
            }
            if (nr + 2 > rcap) {
                rcap = rcap ? rcap * 2 : 64;
                rng *q = miser_realloc(MISER_MEM_TOKENIZER, r, rcap * sizeof *q);
                if (!q) {
                    rc = -1;
                    break;
                }
                r = q;
            }
            if (!found) break;
            if (ms > prev) r[nr++] = (rng){base + prev, base + ms, 0};
            r[nr++] = (rng){base + ms, base + me, 1};
            prev = pos = me;
        }
        if (rc) break;
        if (prev < len) r[nr++] = (rng){base + prev, base + len, 0};
        int behavior = st->behavior;
        if (st->invert)
            for (size_t q = 0; q < nr; q++) r[q].m = !r[q].m;
        if (st->kind == MISER_HF_DIGITS) behavior = st->a ? MISER_HF_ISOLATED : MISER_HF_CONTIGUOUS;
        rc = apply_behavior(out, r, nr, behavior);
    }
    miser_free(r);
    return rc;
}

/* Metaspace: spaces -> replacement, the prefix, optional split before each replacement. */
static int pre_metaspace(hstate *e, const miser_hf_step *st, const spans *in, spans *out, int at_start)
{
    for (size_t k = 0; k < in->n; k++) {
        size_t start = e->pb.n;
        /* copy with replacement; the source may move when pb grows, so index by offset */
        size_t off = in->p[k].off, len = in->p[k].len;
        int first = at_start && k == 0 && off == 0;
        int pre = 0;
        if (len >= st->n1 && !memcmp(e->pb.p + off, st->s1, st->n1)) pre = 0;
        else if (st->a == 2 || (st->a == 1 && first)) pre = 1;
        if (len && e->pb.p[off] == ' ') pre = 0; /* a space becomes the replacement itself */
        if (pre && buf_put(&e->pb, st->s1, st->n1)) return -1;
        for (size_t i = 0; i < len; i++) {
            if (buf_reserve(&e->pb, st->n1 + 1)) return -1;
            uint8_t c = e->pb.p[off + i];
            if (c == ' ') {
                if (buf_put(&e->pb, st->s1, st->n1)) return -1;
            } else if (buf_put(&e->pb, &c, 1)) {
                return -1;
            }
        }
        size_t n = e->pb.n - start;
        if (!st->b) {
            if (spans_push(out, start, n)) return -1;
            continue;
        }
        /* split MergedWithNext on the replacement */
        size_t a = start, i = start;
        while (i < start + n) {
            const uint8_t *hit = memmem(e->pb.p + i, start + n - i, st->s1, st->n1);
            if (!hit) break;
            size_t h = (size_t)(hit - e->pb.p);
            if (h > a && spans_push(out, a, h - a)) return -1;
            a = h;
            i = h + st->n1;
        }
        if (spans_push(out, a, start + n - a)) return -1;
    }
    return 0;
}

/* ByteLevel: the optional prefix space, then (use_regex) GPT-2's regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with Oniguruma's \s (White_Space), through the hand-written GPT-2
 * pre-tokenizer in its White_Space mode (pretokenize.c): the same pieces as
 * the pattern under PCRE2, which tests/test_tokenizer_hf.c checks by
 * comparing with a file that spells the regex as a Split step. */
static int pre_bytelevel(hstate *e, const miser_hf_step *st, const spans *in, spans *out)
{
    spans tmp = {0};
    const spans *src = in;
    if (st->a) {
        for (size_t k = 0; k < in->n; k++) {
            size_t off = in->p[k].off, len = in->p[k].len;
            if (e->pb.p[off] == ' ') {
                if (spans_push(&tmp, off, len)) goto nomem;
                continue;
            }
            size_t start = e->pb.n;
            if (buf_reserve(&e->pb, len + 2)) goto nomem;
            e->pb.p[e->pb.n++] = ' ';
            memmove(e->pb.p + e->pb.n, e->pb.p + off, len);
            e->pb.n += len;
            if (spans_push(&tmp, start, len + 1)) goto nomem;
        }
        src = &tmp;
    }
    for (size_t k = 0; k < src->n; k++) {
        if (!st->b) {
            if (spans_push(out, src->p[k].off, src->p[k].len)) goto nomem;
            continue;
        }
        miser_pretok it;
        size_t ps, pn;
        miser_pretok_init(&it, e->pb.p + src->p[k].off, src->p[k].len);
        it.white_space = 1;
        while (miser_pretok_next(&it, &ps, &pn))
            if (spans_push(out, src->p[k].off + ps, pn)) goto nomem;
    }
    miser_free(tmp.p);
    return 0;
nomem:
    miser_free(tmp.p);
    return -1;
}

/* Text (no added tokens in it) -> ids. */
static int encode_plain(const miser_tokenizer *t, hstate *e, const uint8_t *s, size_t len, int at_start)
{
    const miser_tok_hf *h = t->hf;
    if (!len) return 0;
    e->pb.n = 0;
    if (buf_put(&e->pb, s, len)) return -1;
    e->pa.n = 0;
    if (spans_push(&e->pa, 0, len)) return -1;
    spans *cur = &e->pa, *nxt = &e->pbx;
    for (size_t k = 0; k < h->n_pre; k++) {
        const miser_hf_step *st = &h->pre[k];
        nxt->n = 0;
        int rc;
        if (st->kind == MISER_HF_METASPACE) {
            rc = pre_metaspace(e, st, cur, nxt, at_start);
        } else if (st->kind == MISER_HF_BYTELEVEL) {
            rc = pre_bytelevel(e, st, cur, nxt);
        } else {
            rc = pre_split(e, st, cur, nxt);
        }
        if (rc) return rc;
        spans *x = cur;
        cur = nxt;
        nxt = x;
    }
    for (size_t k = 0; k < cur->n; k++) {
        /* pb may be reallocated by nothing here: pieces are read-only now */
        if (bpe_piece(t, e, e->pb.p + cur->p[k].off, cur->p[k].len)) return -1;
    }
    return 0;
}

/* Finds added tokens of one index in s[0,len); calls back for text gaps and tokens. */
typedef struct {
    size_t a, b;
    int32_t id; /* -1 for text */
} seg;

typedef struct {
    seg *p;
    size_t n, cap;
} segs;

static int segs_push(segs *s, size_t a, size_t b, int32_t id)
{
    if (a >= b && id < 0) return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        seg *q = miser_realloc(MISER_MEM_TOKENIZER, s->p, cap * sizeof *q);
        if (!q) return -1;
        s->p = q;
        s->cap = cap;
    }
    s->p[s->n++] = (seg){a, b, id};
    return 0;
}

static int split_added(const miser_tok_hf *h, const uint8_t *s, size_t len, int normalized_pass, unsigned flags,
                       segs *out)
{
    const uint32_t *idx = normalized_pass ? h->norm_idx : h->raw_idx;
    const uint32_t *first = normalized_pass ? h->norm_first : h->raw_first;
    size_t nidx = normalized_pass ? h->n_normidx : h->n_raw;
    size_t start = 0;
    if (!nidx) return segs_push(out, 0, len, -1);
    for (size_t i = 0; i < len;) {
        uint8_t c = s[i];
        size_t best = 0;
        const miser_hf_added *bt = NULL;
        for (uint32_t k = first[c]; k < first[c + 1]; k++) {
            const miser_hf_added *a = &h->added[idx[k]];
            if ((flags & MISER_TOKENIZE_SPECIAL_AS_TEXT) && a->special) continue;
            const uint8_t *cs = h->added_str + (normalized_pass ? a->noff : a->off);
            size_t cl = normalized_pass ? a->nlen : a->len;
            if (cl <= best || cl > len - i || memcmp(s + i, cs, cl)) continue;
            if (a->single_word) {
                size_t cn;
                if (i > 0) {
                    size_t k2 = i - 1;
                    while (k2 > 0 && (s[k2] & 0xC0) == 0x80) k2--;
                    if (is_word_cp(u8next(s, len, k2, &cn))) continue;
                }
                if (i + cl < len && is_word_cp(u8next(s, len, i + cl, &cn))) continue;
            }
            best = cl;
            bt = a;
        }
        if (!bt) {
            i++;
            continue;
        }
        size_t ms = i, me = i + best, cn;
        if (bt->lstrip) {
            while (ms > start) {
                size_t k2 = ms - 1;
                while (k2 > start && (s[k2] & 0xC0) == 0x80) k2--;
                if (!is_ws(u8next(s, len, k2, &cn))) break;
                ms = k2;
            }
        }
        if (bt->rstrip)
            while (me < len && is_ws(u8next(s, len, me, &cn))) me += cn;
        if (segs_push(out, start, ms, -1) || segs_push(out, ms, me, bt->id)) return -1;
        start = me;
        i = i + best > me ? i + best : me;
    }
    return segs_push(out, start, len, -1);
}

static void hstate_free(hstate *e)
{
    miser_tok_regex_match_data_free(e->md);
    miser_free(e->clean.p);
    miser_free(e->n1.p);
    miser_free(e->n2.p);
    miser_free(e->pb.p);
    miser_free(e->tmp.p);
    miser_free(e->pa.p);
    miser_free(e->pbx.p);
    miser_free(e->block);
    miser_free(e->cslots);
    miser_free(e->ckeys.p);
    miser_free(e->cent);
    miser_free(e->cids);
}

miser_status miser_tok_hf_encode(const miser_tokenizer *t, const uint8_t *s, size_t len, unsigned flags,
                                 int32_t **ids, size_t *n_ids)
{
    const miser_tok_hf *h = t->hf;
    hstate e;
    memset(&e, 0, sizeof e);
    segs raw = {0}, sub = {0};
    int rc = 0;
    e.cap = len / 4 + 16;
    if (!(e.ids = miser_malloc(MISER_MEM_TOKENIZER, e.cap * sizeof *e.ids))) rc = -1;
    int add = !(flags & MISER_TOKENIZE_NO_ADD_SPECIAL);
    if (!rc && add)
        for (int k = 0; k < h->n_prefix && !rc; k++) rc = emit(&e, h->prefix[k]);
    if (!rc) rc = sanitize_utf8(s, len, &e.clean);
    if (!rc) rc = split_added(h, e.clean.p, e.clean.n, 0, flags, &raw);
    for (size_t k = 0; k < raw.n && !rc; k++) {
        const seg *g = &raw.p[k];
        if (g->id >= 0) {
            rc = emit(&e, g->id);
            continue;
        }
        buf *nt;
        rc = normalize(h, e.clean.p + g->a, g->b - g->a, &e.n1, &e.n2, &nt, &e.md);
        if (rc) break;
        sub.n = 0;
        if ((rc = split_added(h, nt->p, nt->n, 1, flags, &sub))) break;
        /* encode_plain uses pb, not n1/n2: nt stays valid */
        for (size_t q = 0; q < sub.n && !rc; q++) {
            if (sub.p[q].id >= 0)
                rc = emit(&e, sub.p[q].id);
            else
                rc = encode_plain(t, &e, nt->p + sub.p[q].a, sub.p[q].b - sub.p[q].a, g->a == 0 && sub.p[q].a == 0);
        }
    }
    if (!rc && add)
        for (int k = 0; k < h->n_suffix && !rc; k++) rc = emit(&e, h->suffix[k]);
    miser_free(raw.p);
    miser_free(sub.p);
    int32_t *out = e.ids;
    size_t n = e.n;
    e.ids = NULL;
    hstate_free(&e);
    if (rc) {
        miser_free(out);
        if (rc == -2)
            return miser_error_set(MISER_ERR_RANGE, "%s: a pre-tokenizer regex hit PCRE2's match limit on this text",
                                   h->name);
        return miser_error_set(MISER_ERR_NOMEM, "out of memory encoding %zu bytes", len);
    }
    *ids = out;
    *n_ids = n;
    return MISER_OK;
}

/* ---- finishing ------------------------------------------------------------------------------------ */

static int cmp_first_byte_len(const void *x, const void *y, const miser_tok_hf *h, int norm)
{
    const miser_hf_added *a = &h->added[*(const uint32_t *)x], *b = &h->added[*(const uint32_t *)y];
    uint8_t ca = h->added_str[norm ? a->noff : a->off], cb = h->added_str[norm ? b->noff : b->off];
    if (ca != cb) return ca < cb ? -1 : 1;
    return 0;
}
static const miser_tok_hf *g_sort_h;
static int cmp_raw(const void *x, const void *y) { return cmp_first_byte_len(x, y, g_sort_h, 0); }
static int cmp_norm(const void *x, const void *y) { return cmp_first_byte_len(x, y, g_sort_h, 1); }

static void first_table(const miser_tok_hf *h, const uint32_t *idx, size_t n, int norm, uint32_t first[257])
{
    size_t k = 0;
    for (unsigned c = 0; c < 257; c++) {
        while (k < n && h->added_str[norm ? h->added[idx[k]].noff : h->added[idx[k]].off] < c) k++;
        first[c] = (uint32_t)k;
    }
    first[256] = (uint32_t)n;
}

/* Decoded bytes of one token through the per-token decoder steps. */
static int decode_token(const miser_tokenizer *t, int32_t id, const uint8_t *s, size_t n, buf *out, buf *tmp,
                        const int16_t inv[324])
{
    const miser_tok_hf *h = t->hf;
    out->n = 0;
    if (buf_put(out, s, n)) return -1;
    for (size_t k = 0; k < h->n_dec; k++) {
        const miser_hf_step *st = &h->dec[k];
        tmp->n = 0;
        switch (st->kind) {
        case MISER_HF_DEC_BYTELEVEL: {
            size_t cn;
            int ok = 1;
            for (size_t i = 0; i < out->n && ok; i += cn) {
                uint32_t c = miser_utf8_next(out->p, out->n, i, &cn);
                ok = c < 324 && inv[c] >= 0;
                if (ok) {
                    uint8_t b = (uint8_t)inv[c];
                    if (buf_put(tmp, &b, 1)) return -1;
                }
            }
            if (!ok) continue; /* kept as its UTF-8 */
            break;
        }
        case MISER_HF_DEC_REPLACE:
        case MISER_HF_DEC_METASPACE: {
            for (size_t i = 0; i < out->n;) {
                if (st->n1 && out->n - i >= st->n1 && !memcmp(out->p + i, st->s1, st->n1)) {
                    if (buf_put(tmp, st->s2, st->n2)) return -1;
                    i += st->n1;
                } else {
                    if (buf_put(tmp, out->p + i, 1)) return -1;
                    i++;
                }
            }
            break;
        }
        case MISER_HF_DEC_BYTEFALLBACK: {
            unsigned v;
            char hx[3] = {0};
            if (out->n == 6 && !memcmp(out->p, "<0x", 3) && out->p[5] == '>') {
                memcpy(hx, out->p + 3, 2);
                char *end;
                v = (unsigned)strtoul(hx, &end, 16);
                if (end == hx + 2) {
                    uint8_t b = (uint8_t)v;
                    if (buf_put(tmp, &b, 1)) return -1;
                    break;
                }
            }
            continue;
        }
        default:
            continue; /* Fuse, whole-text Strip: handled in decode */
        }
        buf x = *out;
        *out = *tmp;
        *tmp = x;
    }
    (void)id;
    return 0;
}

miser_status miser_tok_hf_finish(miser_tokenizer *t)
{
    miser_tok_hf *h = t->hf;
    miser_status st = MISER_OK;
    /* added tokens: ids and flags */
    for (size_t k = 0; k < h->n_added; k++) {
        miser_hf_added *a = &h->added[k];
        if (a->id < 0 || a->id >= t->n_vocab)
            return miser_error_set(MISER_ERR_FORMAT, "%s: added_tokens[%zu]: id %d is outside the vocabulary", h->name,
                                   k, (int)a->id);
        h->tflags[a->id] |= (uint8_t)(2 | (a->special ? 1 : 0));
        /* An added token whose id the model lacks takes its content as model string. */
    }
    /* ids the post-processor adds must be tokens */
    for (int k = 0; k < h->n_prefix + h->n_suffix; k++) {
        int32_t id = k < h->n_prefix ? h->prefix[k] : h->suffix[k - h->n_prefix];
        if (id < 0 || id >= t->n_vocab || h->str_off[id + 1] == h->str_off[id])
            return miser_error_set(MISER_ERR_FORMAT, "%s: post_processor: the special token id %d is not in the vocabulary",
                                   h->name, (int)id);
    }
    /* normalized contents */
    buf n1 = {0}, n2 = {0}, *nr;
    void *md = NULL;
    uint32_t *idx = miser_malloc(MISER_MEM_TOKENIZER, (h->n_added + 1) * 2 * sizeof *idx);
    if (!idx) return MISER_ERR_NOMEM;
    h->raw_idx = idx;
    h->norm_idx = idx + h->n_added + 1;
    for (size_t k = 0; k < h->n_added; k++) {
        miser_hf_added *a = &h->added[k];
        if (a->normalized && h->n_norm) {
            int e = normalize(h, h->added_str + a->off, a->len, &n1, &n2, &nr, &md);
            if (e || !nr->n) {
                if (e) st = MISER_ERR_NOMEM;
                if (e) break;
                continue; /* normalizes to nothing: never matches */
            }
            uint8_t *q = miser_realloc(MISER_MEM_TOKENIZER, h->added_str, h->added_str_len + nr->n + 1);
            if (!q) {
                st = MISER_ERR_NOMEM;
                break;
            }
            h->added_str = q;
            memcpy(q + h->added_str_len, nr->p, nr->n);
            a->noff = (uint32_t)h->added_str_len;
            a->nlen = (uint32_t)nr->n;
            h->added_str_len += nr->n;
            h->norm_idx[h->n_normidx++] = (uint32_t)k;
        } else {
            h->raw_idx[h->n_raw++] = (uint32_t)k;
        }
    }
    miser_free(n1.p);
    miser_free(n2.p);
    miser_tok_regex_match_data_free(md);
    if (st) return st;
    g_sort_h = h;
    qsort(h->raw_idx, h->n_raw, sizeof *idx, cmp_raw);
    qsort(h->norm_idx, h->n_normidx, sizeof *idx, cmp_norm);
    first_table(h, h->raw_idx, h->n_raw, 0, h->raw_first);
    first_table(h, h->norm_idx, h->n_normidx, 1, h->norm_first);

    /* byte tables */
    for (size_t k = 0; k < h->n_pre; k++) {
        if (h->pre[k].kind != MISER_HF_BYTELEVEL) continue;
        if (k + 1 != h->n_pre)
            return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: pre_tokenizer: a ByteLevel step must be the last one",
                                   h->name);
        h->byte_level = 1;
    }
    if (h->byte_level) {
        for (unsigned b = 0; b < 256; b++) {
            uint8_t enc[4];
            utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)miser_tok_byte_to_unicode(b), enc);
            if ((t->byte_id[b] = miser_tok_hf_lookup(t, enc, (size_t)k)) < 0)
                return miser_error_set(MISER_ERR_FORMAT,
                                       "%s: model.vocab has no token for the byte 0x%02x (needed by the ByteLevel pre-tokenizer)",
                                       h->name, b);
        }
    }
    for (unsigned b = 0; b < 256; b++) {
        char nm[8];
        snprintf(nm, sizeof nm, "<0x%02X>", b);
        h->bytefb_id[b] = miser_tok_hf_lookup(t, nm, 6);
    }

    /* decoded bytes */
    int16_t inv[324];
    miser_tok_unicode_to_byte(inv);
    buf all = {0}, one = {0}, tmp = {0};
    t->tok_off = miser_calloc(MISER_MEM_TOKENIZER, (size_t)t->n_vocab + 1, sizeof *t->tok_off);
    if (!t->tok_off) return MISER_ERR_NOMEM;
    for (int32_t id = 0; id < t->n_vocab && !st; id++) {
        const uint8_t *s = h->str + h->str_off[id];
        size_t n = h->str_off[id + 1] - h->str_off[id];
        t->tok_off[id] = (uint32_t)all.n;
        if (n && (decode_token(t, id, s, n, &one, &tmp, inv) || buf_put(&all, one.p, one.n))) st = MISER_ERR_NOMEM;
        t->tok_off[id + 1] = (uint32_t)all.n;
        if (all.n > UINT32_MAX / 2) st = miser_error_set(MISER_ERR_FORMAT, "%s: token strings exceed 2 GB", h->name);
    }
    miser_free(one.p);
    miser_free(tmp.p);
    if (st) {
        miser_free(all.p);
        return st;
    }
    if (!all.p && buf_put(&all, "", 0)) return MISER_ERR_NOMEM;
    t->tok_bytes = all.p;
    /* decoder strip rules */
    for (size_t k = 0; k < h->n_dec; k++) {
        if (h->dec[k].kind == MISER_HF_DEC_STRIP) {
            h->strip_ch = (uint8_t)h->dec[k].s1[0];
            h->strip_lead = (size_t)h->dec[k].a;
            h->strip_trail = (size_t)h->dec[k].b;
        } else if (h->dec[k].kind == MISER_HF_DEC_METASPACE && h->dec[k].a) {
            h->strip_ch = ' ';
            h->strip_lead = 1;
        }
    }
    return MISER_OK;
}

/* ---- queries and freeing ------------------------------------------------------------------------- */

int miser_tok_hf_is_special(const miser_tokenizer *t, int32_t id)
{
    return t->hf && id >= 0 && id < t->n_vocab && (t->hf->tflags[id] & 1);
}

void miser_tok_hf_strip(const miser_tokenizer *t, size_t *lead, uint8_t *lead_ch, size_t *trail, uint8_t *trail_ch)
{
    *lead = t->hf ? t->hf->strip_lead : 0;
    *trail = t->hf ? t->hf->strip_trail : 0;
    *lead_ch = *trail_ch = t->hf ? t->hf->strip_ch : 0;
}

int32_t miser_tok_hf_bos(const miser_tokenizer *t) { return t->hf ? t->hf->bos : -1; }

int miser_tok_hf_present(const miser_tokenizer *t, int32_t id)
{
    return t->hf->str_off[id + 1] != t->hf->str_off[id];
}

static void free_steps(miser_hf_step *s, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        miser_tok_regex_free(s[k].re);
        miser_free(s[k].s1);
        miser_free(s[k].s2);
    }
    miser_free(s);
}

void miser_tok_hf_free(miser_tok_hf *h)
{
    if (!h) return;
    miser_free(h->name);
    miser_free(h->str_off);
    miser_free(h->str);
    miser_free(h->str_slots);
    miser_free(h->tflags);
    free_steps(h->norm, h->n_norm);
    free_steps(h->pre, h->n_pre);
    free_steps(h->dec, h->n_dec);
    miser_free(h->merge_prio);
    miser_free(h->added);
    miser_free(h->added_str);
    miser_free(h->raw_idx);
    miser_free(h);
}

static size_t steps_memory(const miser_hf_step *s, size_t n)
{
    size_t m = miser_alloc_size(s);
    for (size_t k = 0; k < n; k++)
        m += miser_tok_regex_memory(s[k].re) + miser_alloc_size(s[k].s1) + miser_alloc_size(s[k].s2);
    return m;
}

size_t miser_tok_hf_memory(const miser_tok_hf *h)
{
    if (!h) return 0;
    return steps_memory(h->norm, h->n_norm) + steps_memory(h->pre, h->n_pre) + steps_memory(h->dec, h->n_dec) +
           miser_alloc_size(h) + miser_alloc_size(h->name) + miser_alloc_size(h->str_off) + miser_alloc_size(h->str) +
           miser_alloc_size(h->str_slots) + miser_alloc_size(h->tflags) + miser_alloc_size(h->merge_prio) +
           miser_alloc_size(h->added) + miser_alloc_size(h->added_str) + miser_alloc_size(h->raw_idx);
}
