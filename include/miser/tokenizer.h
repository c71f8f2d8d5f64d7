/* GPT-2 byte-level BPE tokenizer (exact: pre-tokenizer regex with Unicode
 * classes, byte-to-unicode mapping, merges by rank).
 *
 * Semantics, matching OpenAI's encoder.py and the JavaScript reference in the
 * npm package gpt-3-encoder:
 *  - The text is split by the regex
 *      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *    implemented by hand. \p{L} and \p{N} are Unicode general categories
 *    (from utf8proc). \s is JavaScript's \s: U+0009-000D, U+0020, U+00A0,
 *    U+1680, U+2000-200A, U+2028, U+2029, U+202F, U+205F, U+3000 and U+FEFF.
 *    (Hugging Face's Python/Rust tokenizers differ only on U+0085, which they
 *    count as whitespace, and U+FEFF, which they do not.)
 *  - Each piece's UTF-8 bytes are merged by rank exactly as the reference does
 *    (all occurrences of the lowest-ranked pair per round, left to right).
 *  - Invalid UTF-8: every byte that does not start a valid, shortest-form
 *    UTF-8 sequence (truncated sequences, stray continuation bytes, overlong
 *    forms, surrogates, values above U+10FFFF) is one character of class
 *    "other" (neither letter, number nor space), so pieces are split exactly
 *    as if that byte were U+FFFD, but the byte itself is kept and encoded
 *    through its byte token. Hence decode(encode(x)) == x for ANY byte string.
 *
 * A tokenizer is immutable after open: encode/decode may be called from
 * several threads at once on the same handle. */
#ifndef MISER_TOKENIZER_H
#define MISER_TOKENIZER_H

#include "miser/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct miser_tokenizer miser_tokenizer;

/* Load vocab.json + merges.txt from `dir`; when dir is NULL or lacks them,
 * the GPT-2 vocabulary built into miser is used.
 * Errors: MISER_ERR_IO when `dir` is not a readable directory or a file cannot
 * be read; MISER_ERR_FORMAT when only one of the two files exists or a file is
 * malformed (the message names the file, and the line or byte offset);
 * MISER_ERR_NOMEM. A vocabulary must contain a token for each of the 256
 * single bytes (every byte-level BPE vocabulary does), so encode never fails
 * on content. *out is owned by the caller (miser_tokenizer_free); its memory
 * is accounted as MISER_MEM_TOKENIZER. */
miser_status miser_tokenizer_open(const char *dir, miser_tokenizer **out);
/* Freeing NULL is a no-op. */
void miser_tokenizer_free(miser_tokenizer *t);

/* Flags for encode. By default "<|endoftext|>" in the text becomes the
 * special token (50256); with this flag it is tokenized as plain text. */
#define MISER_TOKENIZE_SPECIAL_AS_TEXT 1u

/* Encode `len` arbitrary bytes. *ids is allocated (MISER_MEM_TOKENIZER) and
 * owned by the caller (miser_free). Never fails on any byte content (only
 * MISER_ERR_NOMEM, or MISER_ERR_INVALID for NULL arguments). For len 0, *ids
 * is a valid allocation and *n_ids is 0. Time is O(n log n) in the longest
 * piece, so long runs of letters without spaces stay fast. */
miser_status miser_tokenizer_encode(const miser_tokenizer *t, const char *text, size_t len,
                                    unsigned flags, int32_t **ids, size_t *n_ids);
/* Decode ids to bytes; *out is NUL-terminated, caller frees with miser_free.
 * An id outside the vocabulary is MISER_ERR_RANGE (the message names the id
 * and its index). */
miser_status miser_tokenizer_decode(const miser_tokenizer *t, const int32_t *ids, size_t n,
                                    char **out, size_t *out_len);
/* The raw bytes of one token (for streaming); NULL if out of range. The
 * pointer stays valid until the tokenizer is freed; it is not NUL-terminated. */
const char *miser_tokenizer_token_bytes(const miser_tokenizer *t, int32_t id, size_t *len);
/* One more than the largest id in the vocabulary (50257 for GPT-2). */
int32_t miser_tokenizer_vocab_size(const miser_tokenizer *t);
/* Id of "<|endoftext|>", or -1 if the vocabulary lacks it. */
int32_t miser_tokenizer_eot(const miser_tokenizer *t);
/* Heap bytes held by the tokenizer (its tables and token strings). */
size_t miser_tokenizer_memory(const miser_tokenizer *t);

#ifdef __cplusplus
}
#endif
#endif
