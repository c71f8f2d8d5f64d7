/* Internal to the tokenizer module: the handle's layout, shared by the
 * GPT-2 vocab.json/merges.txt loader (tokenizer.c), the Hugging Face
 * tokenizer.json model (hf_model.c, hf_json.c) and the PCRE2 wrapper
 * (regex_pcre2.c).
 *
 * One handle type serves both kinds. The fields up to `byte_id` are common:
 * decoded bytes per token (what decode and token_bytes return) and the merge
 * table (pairs of ids -> rank, result). `hf` is NULL for the legacy kind
 * (OpenAI's merge order: every occurrence of the best pair per round, the
 * hand-written GPT-2 pre-tokenizer); otherwise it holds the pipeline of a
 * tokenizer.json (or of a spec built from arrays) and merges follow Hugging
 * Face's order (the lowest (priority, position) pair, one at a time). */
#ifndef MISER_TOKENIZER_INTERNAL_H
#define MISER_TOKENIZER_INTERNAL_H

#include "miser/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

typedef struct miser_tok_hf miser_tok_hf;

struct miser_tokenizer {
    int32_t n_vocab;     /* max id + 1 */
    int32_t eot;         /* end-of-text / eos id or -1 */
    uint32_t n_merges;
    uint32_t pair_mask;  /* pair_slots has pair_mask + 1 entries */
    uint32_t *tok_off;   /* n_vocab + 1 offsets; an id with an empty range is absent */
    uint8_t *tok_bytes;  /* all tokens' decoded bytes */
    int32_t *merge_a;    /* one block of 3 * n_merges: left, right, result ids by rank */
    int32_t *merge_b;
    int32_t *merge_out;
    uint32_t *pair_slots; /* rank + 1, 0 = empty */
    int32_t byte_id[256];
    miser_tok_hf *hf;    /* NULL: legacy GPT-2 kind */
};

/* A file's string made safe for a one-line message: at most cap-1 bytes,
 * control characters (newlines included) as '?'. Returns out. */
static inline const char *miser_tok_printable(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    out[o] = 0;
    return out;
}

/* Binary min-heap of packed uint64 keys (rank or priority << 32 | position),
 * the merge queue of both BPE loops (tokenizer.c's OpenAI order, hf_model.c's
 * Hugging Face order). The caller owns h (room for one more key on push) and
 * *n, the count; pop requires *n > 0 and returns the smallest key. */
static inline void miser_tok_heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static inline uint64_t miser_tok_heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = v;
    return top;
}

/* ---- PCRE2 (regex_pcre2.c) ---- */
typedef struct miser_tok_regex miser_tok_regex;
/* Compile an Oniguruma-syntax pattern (see regex_pcre2.c for the rewrite).
 * A pattern that does not compile is MISER_ERR_FORMAT naming `what`. */
miser_status miser_tok_regex_compile(const char *pat, size_t len, const char *what, miser_tok_regex **out);
void miser_tok_regex_free(miser_tok_regex *re);
size_t miser_tok_regex_memory(const miser_tok_regex *re);
void *miser_tok_regex_match_data(void);
void miser_tok_regex_match_data_free(void *md);
/* Next non-empty match at or after byte `from` of valid UTF-8 s[0,len):
 * 1 with [*ms, *me), 0 when none, -1 on a matching error (limit). */
int miser_tok_regex_find(const miser_tok_regex *re, const uint8_t *s, size_t len, size_t from, void *md, size_t *ms,
                         size_t *me);

/* ---- Hugging Face model (hf_model.c) ---- */
void miser_tok_hf_free(miser_tok_hf *h);
size_t miser_tok_hf_memory(const miser_tok_hf *h);
miser_status miser_tok_hf_encode(const miser_tokenizer *t, const uint8_t *s, size_t len, unsigned flags, int32_t **ids,
                                 size_t *n_ids);
/* Skipped-special and strip rules of decode for the HF kind. */
int miser_tok_hf_is_special(const miser_tokenizer *t, int32_t id);
void miser_tok_hf_strip(const miser_tokenizer *t, size_t *lead, uint8_t *lead_ch, size_t *trail, uint8_t *trail_ch);
int32_t miser_tok_hf_bos(const miser_tokenizer *t);
int miser_tok_hf_present(const miser_tokenizer *t, int32_t id);


/* ---- the Hugging Face pipeline (filled by hf_json.c or miser_tokenizer_build,
 * finished and run by hf_model.c) ---- */
enum { /* normalizers */
    MISER_HF_NFC = 1, MISER_HF_NFD, MISER_HF_NFKC, MISER_HF_NFKD, MISER_HF_LOWER, MISER_HF_STRIP_ACCENTS,
    MISER_HF_REPLACE, MISER_HF_PREPEND, MISER_HF_STRIP,
    /* pre-tokenizers */
    MISER_HF_SPLIT, MISER_HF_BYTELEVEL, MISER_HF_DIGITS, MISER_HF_METASPACE,
    /* decoders */
    MISER_HF_DEC_BYTELEVEL, MISER_HF_DEC_REPLACE, MISER_HF_DEC_BYTEFALLBACK, MISER_HF_DEC_FUSE, MISER_HF_DEC_STRIP,
    MISER_HF_DEC_METASPACE
};
/* Split behaviours, as tokenizers' SplitDelimiterBehavior. */
enum { MISER_HF_ISOLATED = 0, MISER_HF_REMOVED, MISER_HF_MERGED_PREV, MISER_HF_MERGED_NEXT, MISER_HF_CONTIGUOUS };

/* One normalizer, pre-tokenizer or decoder step. Owns re, s1, s2. */
typedef struct miser_hf_step {
    int kind;
    int behavior, invert; /* SPLIT */
    int a, b;             /* BYTELEVEL: add_prefix_space, use_regex; DIGITS: individual; STRIP: left, right;
                             METASPACE: prepend scheme (0 never, 1 first, 2 always), split;
                             DEC_STRIP: start, stop */
    miser_tok_regex *re;  /* SPLIT / REPLACE with a Regex pattern */
    char *s1;             /* SPLIT / REPLACE String pattern, PREPEND text, METASPACE replacement, DEC_STRIP content */
    size_t n1;
    char *s2;             /* REPLACE content */
    size_t n2;
} miser_hf_step;

typedef struct miser_hf_added {
    int32_t id;
    uint32_t off, len;   /* content in miser_tok_hf.added_str */
    uint32_t noff, nlen; /* normalized content (normalized tokens only) */
    uint8_t lstrip, rstrip, single_word, normalized, special;
} miser_hf_added;

#define MISER_HF_MAX_AFFIX 8

struct miser_tok_hf {
    char *name;            /* file name for messages */
    uint32_t *str_off;     /* n_vocab + 1: model-form strings (as the vocabulary writes them) */
    uint8_t *str;
    uint32_t *str_slots;   /* hash: model string -> id + 1 */
    uint32_t str_mask;
    uint8_t *tflags;       /* per id: 1 special, 2 added */
    miser_hf_step *norm, *pre, *dec;
    size_t n_norm, n_pre, n_dec;
    int byte_level;        /* a ByteLevel pre-tokenizer: the model sees bytes through byte_id */
    int byte_fallback, fuse_unk, ignore_merges, spm_scores;
    int32_t unk;
    uint32_t *merge_prio;  /* per merge: its priority (rank, or dense score rank) */
    int32_t bytefb_id[256];/* <0xNN> tokens or -1 */
    miser_hf_added *added;
    size_t n_added;
    uint8_t *added_str;
    size_t added_str_len;
    uint32_t *raw_idx, *norm_idx; /* added tokens matched on raw / normalized text, sorted by first byte */
    size_t n_raw, n_normidx;
    uint32_t raw_first[257], norm_first[257];
    int32_t prefix[MISER_HF_MAX_AFFIX], suffix[MISER_HF_MAX_AFFIX];
    int n_prefix, n_suffix;
    int32_t bos;
    size_t strip_lead, strip_trail; /* decode: leading/trailing strip_ch removed from the whole text */
    uint8_t strip_ch;
};

/* hf_model.c: builder helpers. new() gives an empty handle with hf set;
 * set_vocab takes model-form strings by id (NULL/len 0 = absent id);
 * finish() computes decoded bytes, the string index, byte tables and checks
 * (message names `name`). */
miser_status miser_tok_hf_new(const char *name, miser_tokenizer **out);
miser_status miser_tok_hf_set_vocab(miser_tokenizer *t, int32_t n_vocab, const char *const *strs, const uint32_t *lens);
int32_t miser_tok_hf_lookup(const miser_tokenizer *t, const void *s, size_t n);
/* Merges by rank (left, right ids); the result is looked up. */
miser_status miser_tok_hf_set_merges(miser_tokenizer *t, size_t n, const int32_t *left, const int32_t *right,
                                     const char *what);
/* SentencePiece merges from scores: every split of a normal token into two tokens. */
miser_status miser_tok_hf_spm_merges(miser_tokenizer *t, const float *scores, const int32_t *types);
miser_status miser_tok_hf_add_token(miser_tokenizer *t, int32_t id, const char *content, size_t len, int special,
                                    int normalized, int lstrip, int rstrip, int single_word);
miser_status miser_tok_hf_finish(miser_tokenizer *t);

/* A tokenizer.json held in memory (the fuzz target); `name` names it in messages. */
miser_status miser_tok_hf_load_buffer(const char *name, const char *json, size_t len, miser_tokenizer **out);

/* Byte <-> unicode of GPT-2's byte-level alphabet (tokenizer.c). */
void miser_tok_unicode_to_byte(int16_t inv[324]);
uint32_t miser_tok_byte_to_unicode(unsigned b);

#endif
