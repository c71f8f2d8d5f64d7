/* GPT-2 byte-level BPE: vocabulary loading (vocab.json + merges.txt, or the
 * built-in copy), encode and decode.
 *
 * Memory layout, chosen to stay small (about 1.3 MB for GPT-2):
 *  - every token's raw bytes (after undoing the byte-to-unicode mapping) live
 *    in one arena, indexed by an offset table (id -> [off[id], off[id+1]));
 *  - merges are three parallel arrays by rank (left id, right id, result id)
 *    plus an open-addressing table of ranks keyed by the (left, right) pair.
 * BPE runs on token ids, never on strings, so encoding needs no token -> id
 * table; that table exists only while loading (to resolve merges.txt).
 * Loading also holds cJSON's tree of vocab.json for a moment (cJSON's own
 * malloc, outside the accounting: its hooks are process-global and shared
 * with other modules, so they are left alone).
 *
 * Merging follows the reference exactly (OpenAI's encoder.py and its
 * JavaScript port): per round, the lowest-ranked adjacent pair is merged at
 * every occurrence, left to right without overlap. A min-heap of (rank,
 * position) gives the same result in O(n log n): all entries of the round's
 * rank are taken out before the pairs that their merges create are pushed. */
#include "tok_internal.h"

#include "miser/alloc.h"
#include "miser/gguf.h" /* miser_tokenizer_open_gguf */
#include "pretokenize.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Built into the library by gpt2_data.S. */
extern const char miser_gpt2_encoder_json[] __attribute__((visibility("hidden")));
extern const char miser_gpt2_vocab_bpe[] __attribute__((visibility("hidden")));
extern const uint64_t miser_gpt2_encoder_json_len __attribute__((visibility("hidden")));
extern const uint64_t miser_gpt2_vocab_bpe_len __attribute__((visibility("hidden")));

#define EOT_TEXT "<|endoftext|>"

/* ---- byte <-> unicode (GPT-2's bytes_to_unicode) ----------------------- */

/* Bytes that are printable Latin-1 map to themselves; the other 68 map to
 * U+0100.. in byte order. Every code point of the image is < 324. */
static void unicode_to_byte_table(int16_t inv[324]);
static int byte_is_printable(unsigned b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t miser_tok_byte_to_unicode(unsigned b)
{
    if (byte_is_printable(b)) return b;
    unsigned extra = 0;
    for (unsigned c = 0; c < b; c++) extra += !byte_is_printable(c);
    return 256 + extra;
}

void miser_tok_unicode_to_byte(int16_t inv[324]) { unicode_to_byte_table(inv); }

/* Inverse mapping: code point (< 324) -> byte, or -1. */
static void unicode_to_byte_table(int16_t inv[324])
{
    for (int i = 0; i < 324; i++) inv[i] = -1;
    unsigned extra = 0;
    for (unsigned b = 0; b < 256; b++) {
        if (byte_is_printable(b))
            inv[b] = (int16_t)b;
        else
            inv[256 + extra++] = (int16_t)b;
    }
}

/* Raw bytes of a token string in the byte-to-unicode alphabet. Returns the
 * byte count written to out (which needs room for len bytes), or -1 when a
 * character is outside the alphabet (or the string is not UTF-8). */
static long unmap_token(const int16_t inv[324], const uint8_t *s, size_t len, uint8_t *out)
{
    size_t o = 0, n;
    for (size_t i = 0; i < len; i += n) {
        uint32_t cp = miser_utf8_next(s, len, i, &n);
        if (cp >= 324 || inv[cp] < 0) return -1;
        if (out) out[o] = (uint8_t)inv[cp];
        o++;
    }
    return (long)o;
}

/* ---- hashing ------------------------------------------------------------ */

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
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, finished by mix64 */
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return mix64(h ^ n);
}

static uint32_t table_size(size_t n)
{
    size_t cap = 16;
    while (cap < n + n / 4 + 1) cap <<= 1; /* load factor <= 0.8 */
    return (uint32_t)cap;
}

static int64_t pair_rank(const miser_tokenizer *t, int32_t a, int32_t b)
{
    uint32_t h = (uint32_t)mix64(((uint64_t)(uint32_t)a << 32) | (uint32_t)b) & t->pair_mask;
    uint32_t r;
    while ((r = t->pair_slots[h]) != 0) {
        r--;
        if (t->merge_a[r] == a && t->merge_b[r] == b) return r;
        h = (h + 1) & t->pair_mask;
    }
    return -1;
}

/* Token bytes -> id, used only while loading. */
typedef struct {
    const miser_tokenizer *t;
    uint32_t *slots; /* id + 1 */
    uint32_t mask;
} tok_index;

static uint32_t *tok_index_find(const tok_index *ix, const uint8_t *p, size_t n)
{
    uint32_t h = (uint32_t)hash_bytes(p, n) & ix->mask;
    for (;; h = (h + 1) & ix->mask) {
        uint32_t v = ix->slots[h];
        if (!v) return &ix->slots[h];
        uint32_t id = v - 1, o = ix->t->tok_off[id];
        if (ix->t->tok_off[id + 1] - o == n && !memcmp(ix->t->tok_bytes + o, p, n)) return &ix->slots[h];
    }
}

static int32_t tok_index_get(const tok_index *ix, const uint8_t *p, size_t n)
{
    return (int32_t)*tok_index_find(ix, p, n) - 1;
}

/* ---- loading -------------------------------------------------------------- */

/* Line number (1-based) of byte offset `off` in buf, for error messages. */
static size_t line_of(const char *buf, size_t off)
{
    size_t line = 1;
    for (size_t i = 0; i < off; i++) line += buf[i] == '\n';
    return line;
}

/* Reads vocab JSON into t->tok_off/tok_bytes; marks tokens outside the
 * byte-level alphabet in *foreign (a bitmap the caller frees). */
static miser_status load_vocab(miser_tokenizer *t, const char *json, size_t len, const char *name,
                               const int16_t inv[324], uint8_t **foreign)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t off = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        return miser_error_set(MISER_ERR_FORMAT, "%s: malformed JSON near line %zu (byte %zu)", name,
                               line_of(json, off), off);
    }
    miser_status st = MISER_OK;
    if (!cJSON_IsObject(root)) {
        st = miser_error_set(MISER_ERR_FORMAT, "%s: expected a JSON object mapping token strings to ids", name);
        goto out;
    }
    /* Pass 1: validate, find the largest id. */
    int64_t max_id = -1;
    size_t count = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        double v = e->valuedouble;
        if (!cJSON_IsNumber(e) || !(v >= 0 && v < 2147483647.0) || v != floor(v)) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: the id of token \"%.40s\" is not an integer in [0, 2^31-1)",
                                 name, e->string ? e->string : "");
            goto out;
        }
        if (!e->string || !e->string[0]) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: token %d is an empty string", name, (int)v);
            goto out;
        }
        if ((int64_t)v > max_id) max_id = (int64_t)v;
        count++;
    }
    if (count == 0) {
        st = miser_error_set(MISER_ERR_FORMAT, "%s: the vocabulary is empty", name);
        goto out;
    }
    t->n_vocab = (int32_t)(max_id + 1);
    t->tok_off = miser_calloc(MISER_MEM_TOKENIZER, (size_t)t->n_vocab + 1, sizeof *t->tok_off);
    *foreign = miser_calloc(MISER_MEM_TOKENIZER, (size_t)t->n_vocab / 8 + 1, 1);
    if (!t->tok_off || !*foreign) {
        st = MISER_ERR_NOMEM;
        goto out;
    }
    /* Pass 2: byte length of each token, stored at off[id + 1]. */
    for (const cJSON *e = root->child; e; e = e->next) {
        int32_t id = (int32_t)e->valuedouble;
        size_t slen = strlen(e->string);
        long n = unmap_token(inv, (const uint8_t *)e->string, slen, NULL);
        if (n < 0) { /* not byte-level (an added token): its UTF-8 is its bytes, as in HF */
            (*foreign)[id / 8] |= (uint8_t)(1u << (id % 8));
            n = (long)slen;
        }
        if (t->tok_off[id + 1]) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: id %d is given to two tokens", name, id);
            goto out;
        }
        if ((uint64_t)n > UINT32_MAX / 2) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: token %d is too long", name, id);
            goto out;
        }
        t->tok_off[id + 1] = (uint32_t)n;
    }
    uint64_t total = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        total += t->tok_off[i + 1];
        if (total > UINT32_MAX) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: token strings exceed 4 GiB", name);
            goto out;
        }
        t->tok_off[i + 1] = (uint32_t)total;
    }
    t->tok_bytes = miser_malloc(MISER_MEM_TOKENIZER, (size_t)total);
    if (!t->tok_bytes) {
        st = MISER_ERR_NOMEM;
        goto out;
    }
    /* Pass 3: the bytes. */
    for (const cJSON *e = root->child; e; e = e->next) {
        int32_t id = (int32_t)e->valuedouble;
        uint8_t *dst = t->tok_bytes + t->tok_off[id];
        size_t slen = strlen(e->string);
        if ((*foreign)[id / 8] & (1u << (id % 8)))
            memcpy(dst, e->string, slen);
        else
            unmap_token(inv, (const uint8_t *)e->string, slen, dst);
    }
out:
    cJSON_Delete(root);
    return st;
}

/* Parses merges text: one "left right" pair per line after an optional
 * "#version" line. */
static miser_status load_merges(miser_tokenizer *t, const tok_index *ix, const char *text, size_t len,
                                const char *name, const char *vocab_name, const int16_t inv[324])
{
    size_t max_lines = 1;
    for (size_t i = 0; i < len; i++) max_lines += text[i] == '\n';
    t->merge_a = miser_malloc(MISER_MEM_TOKENIZER, max_lines * 3 * sizeof(int32_t));
    uint8_t *buf = NULL;
    if (!t->merge_a) return MISER_ERR_NOMEM;
    t->merge_b = t->merge_a + max_lines;
    t->merge_out = t->merge_b + max_lines;
    t->pair_mask = table_size(max_lines) - 1;
    t->pair_slots = miser_calloc(MISER_MEM_TOKENIZER, (size_t)t->pair_mask + 1, sizeof(uint32_t));
    if (!t->pair_slots) return MISER_ERR_NOMEM;

    miser_status st = MISER_OK;
    size_t line_no = 0, buf_cap = 0;
    uint32_t rank = 0;
    for (size_t pos = 0; pos < len;) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + 1;
        line_no++;
        if (n && line[n - 1] == '\r') n--;
        if (n == 0) continue;
        if (line_no == 1 && n >= 8 && !memcmp(line, "#version", 8)) continue;
        const char *sp = memchr(line, ' ', n);
        size_t na = sp ? (size_t)(sp - line) : 0, nb = sp ? n - na - 1 : 0;
        if (!sp || !na || !nb || memchr(sp + 1, ' ', nb)) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s:%zu: expected two tokens separated by one space", name,
                                 line_no);
            break;
        }
        if (n > buf_cap) {
            miser_free(buf);
            buf_cap = n * 2;
            if (!(buf = miser_malloc(MISER_MEM_TOKENIZER, buf_cap))) {
                st = MISER_ERR_NOMEM;
                break;
            }
        }
        long ra = unmap_token(inv, (const uint8_t *)line, na, buf);
        long rb = ra < 0 ? -1 : unmap_token(inv, (const uint8_t *)sp + 1, nb, buf + ra);
        if (rb < 0) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s:%zu: \"%.*s\" is not a byte-level BPE pair", name, line_no,
                                 (int)(n > 80 ? 80 : n), line);
            break;
        }
        int32_t a = tok_index_get(ix, buf, (size_t)ra), b = tok_index_get(ix, buf + ra, (size_t)rb);
        int32_t ab = tok_index_get(ix, buf, (size_t)(ra + rb));
        if (a < 0 || b < 0) {
            int wn = a < 0 ? (int)na : (int)nb;
            st = miser_error_set(MISER_ERR_FORMAT, "%s:%zu: token \"%.*s\" is not in %s", name, line_no,
                                 wn > 80 ? 80 : wn, a < 0 ? line : sp + 1, vocab_name);
            break;
        }
        if (ab < 0) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s:%zu: the merged token \"%.*s%.*s\" is not in %s", name,
                                 line_no, (int)(na > 60 ? 60 : na), line, (int)(nb > 60 ? 60 : nb), sp + 1,
                                 vocab_name);
            break;
        }
        t->merge_a[rank] = a;
        t->merge_b[rank] = b;
        t->merge_out[rank] = ab;
        /* A repeated pair keeps its last rank, like the reference's dict. */
        uint32_t h = (uint32_t)mix64(((uint64_t)(uint32_t)a << 32) | (uint32_t)b) & t->pair_mask;
        while (t->pair_slots[h]) {
            uint32_t r = t->pair_slots[h] - 1;
            if (t->merge_a[r] == a && t->merge_b[r] == b) break;
            h = (h + 1) & t->pair_mask;
        }
        t->pair_slots[h] = rank + 1;
        rank++;
    }
    miser_free(buf);
    t->n_merges = rank;
    return st;
}

static miser_status build(miser_tokenizer *t, const char *vjson, size_t vlen, const char *vname,
                          const char *mtext, size_t mlen, const char *mname)
{
    int16_t inv[324];
    unicode_to_byte_table(inv);
    uint8_t *foreign = NULL;
    tok_index ix = {t, NULL, 0};
    miser_status st = load_vocab(t, vjson, vlen, vname, inv, &foreign);
    if (st) goto out;

    ix.mask = table_size((size_t)t->n_vocab * 2) - 1;
    ix.slots = miser_calloc(MISER_MEM_TOKENIZER, (size_t)ix.mask + 1, sizeof(uint32_t));
    if (!ix.slots) {
        st = MISER_ERR_NOMEM;
        goto out;
    }
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint32_t o = t->tok_off[id], n = t->tok_off[id + 1] - o;
        if (!n || (foreign[id / 8] & (1u << (id % 8)))) continue;
        *tok_index_find(&ix, t->tok_bytes + o, n) = (uint32_t)id + 1; /* a repeated string: last id wins */
    }
    for (unsigned b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        if ((t->byte_id[b] = tok_index_get(&ix, &c, 1)) < 0) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: no token for the single byte 0x%02x (not a byte-level BPE vocabulary)",
                                 vname, b);
            goto out;
        }
    }
    t->eot = tok_index_get(&ix, (const uint8_t *)EOT_TEXT, sizeof EOT_TEXT - 1);
    st = load_merges(t, &ix, mtext, mlen, mname, vname, inv);
out:
    miser_free(ix.slots);
    miser_free(foreign);
    return st;
}

/* A read-only mapping of a whole file. */
static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

miser_status miser_tokenizer_open(const char *dir, miser_tokenizer **out)
{
    if (!out) return miser_error_set(MISER_ERR_INVALID, "miser_tokenizer_open: out is NULL");
    *out = NULL;
    size_t dl = dir ? strlen(dir) : 0;
    if (dl > 5 && !strcmp(dir + dl - 5, ".gguf")) return miser_tokenizer_open_gguf(dir, out); /* gguf_vocab.c */
    char vpath[4096], mpath[4096];
    int have_v = 0, have_m = 0;
    if (dir) {
        struct stat sb;
        if (stat(dir, &sb) != 0)
            return miser_error_set(MISER_ERR_IO, "model directory %s: %s", dir, strerror(errno));
        if (!S_ISDIR(sb.st_mode)) return miser_error_set(MISER_ERR_IO, "%s: not a directory", dir);
        if (snprintf(vpath, sizeof vpath, "%s/vocab.json", dir) >= (int)sizeof vpath ||
            snprintf(mpath, sizeof mpath, "%s/merges.txt", dir) >= (int)sizeof mpath)
            return miser_error_set(MISER_ERR_INVALID, "model directory path too long: %.100s...", dir);
        char jpath[4096], cpath[4096];
        if (snprintf(jpath, sizeof jpath, "%s/tokenizer.json", dir) >= (int)sizeof jpath ||
            snprintf(cpath, sizeof cpath, "%s/tokenizer_config.json", dir) >= (int)sizeof cpath)
            return miser_error_set(MISER_ERR_INVALID, "model directory path too long: %.100s...", dir);
        if (file_exists(jpath)) return miser_tokenizer_open_json(jpath, file_exists(cpath) ? cpath : NULL, out);
        have_v = file_exists(vpath);
        have_m = file_exists(mpath);
        if (have_v != have_m)
            return miser_error_set(MISER_ERR_FORMAT, "%s: missing (the directory has %s)", have_v ? mpath : vpath,
                                   have_v ? "vocab.json" : "merges.txt");
    }
    miser_tokenizer *t = miser_calloc(MISER_MEM_TOKENIZER, 1, sizeof *t);
    if (!t) return MISER_ERR_NOMEM;
    t->eot = -1;
    miser_status st;
    if (have_v) {
        miser_mapping vf, mf = {NULL, 0};
        st = miser_file_map(vpath, 1, MISER_MEM_TOKENIZER, &vf);
        if (!st) st = miser_file_map(mpath, 1, MISER_MEM_TOKENIZER, &mf);
        if (!st) st = build(t, vf.data, vf.size, vpath, mf.data, mf.size, mpath);
        miser_file_unmap(&vf, MISER_MEM_TOKENIZER);
        miser_file_unmap(&mf, MISER_MEM_TOKENIZER);
    } else {
        st = build(t, miser_gpt2_encoder_json, (size_t)miser_gpt2_encoder_json_len, "built-in GPT-2 encoder.json",
                   miser_gpt2_vocab_bpe, (size_t)miser_gpt2_vocab_bpe_len, "built-in GPT-2 vocab.bpe");
    }
    if (st) {
        miser_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MISER_OK;
}

void miser_tokenizer_free(miser_tokenizer *t)
{
    if (!t) return;
    miser_tok_hf_free(t->hf);
    miser_free(t->tok_off);
    miser_free(t->tok_bytes);
    miser_free(t->merge_a);
    miser_free(t->pair_slots);
    miser_free(t);
}

size_t miser_tokenizer_memory(const miser_tokenizer *t)
{
    if (!t) return 0;
    return miser_alloc_size(t) + miser_alloc_size(t->tok_off) + miser_alloc_size(t->tok_bytes) +
           miser_alloc_size(t->merge_a) + miser_alloc_size(t->pair_slots) + miser_tok_hf_memory(t->hf);
}

/* ---- encoding ------------------------------------------------------------- */

typedef struct {
    int32_t *ids;      /* output */
    size_t n, cap;
    /* BPE scratch for a piece of up to `scap` bytes, one block */
    void *block;
    size_t scap;
    int32_t *sym;      /* token id per symbol, -1 once merged into its left neighbour */
    int32_t *next, *prev;
    uint64_t *heap;    /* (rank << 32) | position, capacity 3 * scap */
    uint64_t *round;   /* entries of the current round, capacity scap */
} enc_state;

static int emit(enc_state *e, int32_t id)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap + e->cap / 2 : 64;
        int32_t *p = miser_realloc(MISER_MEM_TOKENIZER, e->ids, cap * sizeof *p);
        if (!p) return -1;
        e->ids = p;
        e->cap = cap;
    }
    e->ids[e->n++] = id;
    return 0;
}

static int reserve_scratch(enc_state *e, size_t n)
{
    if (n <= e->scap) return 0;
    size_t cap = n < 64 ? 64 : n + n / 2;
    if (cap > SIZE_MAX / 64) return -1;
    miser_free(e->block);
    /* heap (3 * cap) and round (cap) as uint64, then sym, next, prev as int32 */
    uint8_t *blk = miser_malloc(MISER_MEM_TOKENIZER, cap * (3 * sizeof(int32_t) + 4 * sizeof(uint64_t)));
    e->block = blk;
    if (!blk) {
        e->scap = 0;
        return -1;
    }
    e->heap = (uint64_t *)blk;
    e->round = e->heap + 3 * cap;
    e->sym = (int32_t *)(e->round + cap);
    e->next = e->sym + cap;
    e->prev = e->next + cap;
    e->scap = cap;
    return 0;
}

/* BPE of one piece of `len` bytes; appends its ids. */
static int bpe_piece(const miser_tokenizer *t, enc_state *e, const uint8_t *p, size_t len)
{
    if (len == 1) return emit(e, t->byte_id[p[0]]);
    if (len > UINT32_MAX / 2) return -1; /* positions are 32-bit in heap entries */
    if (reserve_scratch(e, len)) return -1;
    int32_t *sym = e->sym, *next = e->next, *prev = e->prev;
    const int32_t L = (int32_t)len;
    size_t hn = 0;
    for (int32_t i = 0; i < L; i++) {
        sym[i] = t->byte_id[p[i]];
        next[i] = i + 1;
        prev[i] = i - 1;
    }
    for (int32_t i = 0; i + 1 < L; i++) {
        int64_t r = pair_rank(t, sym[i], sym[i + 1]);
        if (r >= 0) miser_tok_heap_push(e->heap, &hn, ((uint64_t)r << 32) | (uint32_t)i);
    }
    while (hn) {
        /* One round: every occurrence of the best pair, left to right. Taking
         * them all out first keeps pairs created in this round (which may
         * rank lower) for later rounds, as in the reference. */
        const uint32_t r = (uint32_t)(e->heap[0] >> 32);
        size_t rn = 0;
        while (hn && (uint32_t)(e->heap[0] >> 32) == r) e->round[rn++] = miser_tok_heap_pop(e->heap, &hn);
        const int32_t a = t->merge_a[r], b = t->merge_b[r], ab = t->merge_out[r];
        for (size_t k = 0; k < rn; k++) {
            int32_t i = (int32_t)(uint32_t)e->round[k], j = next[i];
            if (sym[i] != a || j >= L || sym[j] != b) continue; /* stale: changed by an earlier merge */
            sym[i] = ab;
            sym[j] = -1;
            int32_t nx = next[j];
            next[i] = nx;
            if (nx < L) prev[nx] = i;
            int32_t pv = prev[i];
            int64_t r2;
            if (pv >= 0 && (r2 = pair_rank(t, sym[pv], ab)) >= 0)
                miser_tok_heap_push(e->heap, &hn, ((uint64_t)r2 << 32) | (uint32_t)pv);
            if (nx < L && (r2 = pair_rank(t, ab, sym[nx])) >= 0)
                miser_tok_heap_push(e->heap, &hn, ((uint64_t)r2 << 32) | (uint32_t)i);
        }
    }
    for (int32_t i = 0; i < L; i = next[i])
        if (emit(e, sym[i])) return -1;
    return 0;
}

static int encode_text(const miser_tokenizer *t, enc_state *e, const uint8_t *s, size_t len)
{
    miser_pretok it;
    size_t start, n;
    miser_pretok_init(&it, s, len);
    while (miser_pretok_next(&it, &start, &n))
        if (bpe_piece(t, e, s + start, n)) return -1;
    return 0;
}

miser_status miser_tokenizer_encode(const miser_tokenizer *t, const char *text, size_t len, unsigned flags,
                                    int32_t **ids, size_t *n_ids)
{
    if (!t || !ids || !n_ids || (!text && len))
        return miser_error_set(MISER_ERR_INVALID, "miser_tokenizer_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (t->hf) return miser_tok_hf_encode(t, (const uint8_t *)text, len, flags, ids, n_ids);
    enc_state e = {0};
    /* Most text gives about one token per 4 bytes. */
    e.cap = len / 4 + 16;
    e.ids = miser_malloc(MISER_MEM_TOKENIZER, e.cap * sizeof *e.ids);
    if (!e.ids) return MISER_ERR_NOMEM;
    const uint8_t *s = (const uint8_t *)text;
    int fail = 0;
    if (!(flags & MISER_TOKENIZE_SPECIAL_AS_TEXT) && t->eot >= 0) {
        /* Special tokens are cut out first; the text between is encoded on its own. */
        const size_t sl = sizeof EOT_TEXT - 1;
        size_t pos = 0;
        while (!fail && pos < len) {
            const uint8_t *hit = memmem(s + pos, len - pos, EOT_TEXT, sl);
            size_t seg = hit ? (size_t)(hit - (s + pos)) : len - pos;
            fail = encode_text(t, &e, s + pos, seg);
            pos += seg;
            if (!fail && hit) {
                fail = emit(&e, t->eot);
                pos += sl;
            }
        }
    } else {
        fail = encode_text(t, &e, s, len);
    }
    miser_free(e.block);
    if (fail) {
        miser_free(e.ids);
        return miser_error_set(MISER_ERR_NOMEM, "out of memory encoding %zu bytes", len);
    }
    *ids = e.ids;
    *n_ids = e.n;
    return MISER_OK;
}

/* ---- decoding ------------------------------------------------------------- */

const char *miser_tokenizer_token_bytes(const miser_tokenizer *t, int32_t id, size_t *len)
{
    /* A token is present when it has a string (HF kind: its model string, as
     * a token may decode to nothing, e.g. through a Replace decoder). */
    if (!t || id < 0 || id >= t->n_vocab ||
        (t->hf ? !miser_tok_hf_present(t, id) : t->tok_off[id + 1] == t->tok_off[id])) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->tok_off[id + 1] - t->tok_off[id];
    return (const char *)t->tok_bytes + t->tok_off[id];
}

miser_status miser_tokenizer_decode(const miser_tokenizer *t, const int32_t *ids, size_t n, char **out,
                                    size_t *out_len)
{
    return miser_tokenizer_decode_ex(t, ids, n, 0, out, out_len);
}

miser_status miser_tokenizer_decode_ex(const miser_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                                       char **out, size_t *out_len)
{
    if (!t || !out || (!ids && n)) return miser_error_set(MISER_ERR_INVALID, "miser_tokenizer_decode: NULL argument");
    *out = NULL;
    if (out_len) *out_len = 0;
    size_t total = 0, len;
    for (size_t i = 0; i < n; i++) {
        if (!miser_tokenizer_token_bytes(t, ids[i], &len))
            return miser_error_set(MISER_ERR_RANGE, "token id %d (at index %zu) is not in the vocabulary (size %d)",
                                   (int)ids[i], i, (int)t->n_vocab);
        total += len;
    }
    char *buf = miser_malloc(MISER_MEM_TOKENIZER, total + 1);
    if (!buf) return MISER_ERR_NOMEM;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if ((flags & MISER_DECODE_SKIP_SPECIAL) && miser_tok_hf_is_special(t, ids[i])) continue;
        const char *p = miser_tokenizer_token_bytes(t, ids[i], &len);
        memcpy(buf + o, p, len);
        o += len;
    }
    if (t->hf) {
        /* the decoder's whole-text Strip (Llama 2: one leading space) */
        size_t lead, trail, a = 0;
        uint8_t lc, tc;
        miser_tok_hf_strip(t, &lead, &lc, &trail, &tc);
        while (a < lead && a < o && (uint8_t)buf[a] == lc) a++;
        size_t b = o, k = 0;
        while (k < trail && b > a && (uint8_t)buf[b - 1] == tc) {
            b--;
            k++;
        }
        memmove(buf, buf + a, b - a);
        o = b - a;
    }
    buf[o] = 0;
    *out = buf;
    if (out_len) *out_len = o;
    return MISER_OK;
}

int32_t miser_tokenizer_vocab_size(const miser_tokenizer *t) { return t ? t->n_vocab : 0; }

int32_t miser_tokenizer_eot(const miser_tokenizer *t) { return t ? t->eot : -1; }

int32_t miser_tokenizer_bos(const miser_tokenizer *t) { return t ? miser_tok_hf_bos(t) : -1; }

int miser_tokenizer_is_special(const miser_tokenizer *t, int32_t id)
{
    if (!t) return 0;
    if (!t->hf) return id >= 0 && id == t->eot;
    return miser_tok_hf_is_special(t, id);
}
