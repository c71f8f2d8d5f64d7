/* GPT-2 byte-level BPE tokenizer (exact: pre-tokenizer regex with Unicode
 * classes, byte-to-unicode mapping, merges by rank). */
#ifndef MISER_TOKENIZER_H
#define MISER_TOKENIZER_H

#include "miser/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct miser_tokenizer miser_tokenizer;

/* Load vocab.json + merges.txt from `dir`; when dir is NULL or lacks them,
 * the GPT-2 vocabulary built into miser is used. */
miser_status miser_tokenizer_open(const char *dir, miser_tokenizer **out);
void miser_tokenizer_free(miser_tokenizer *t);

/* Flags for encode. By default "<|endoftext|>" in the text becomes the
 * special token (50256); with this flag it is tokenized as plain text. */
#define MISER_TOKENIZE_SPECIAL_AS_TEXT 1u

/* Encode `len` arbitrary bytes. *ids is allocated (MISER_MEM_TOKENIZER) and
 * owned by the caller (miser_free). Never fails on any byte content. */
miser_status miser_tokenizer_encode(const miser_tokenizer *t, const char *text, size_t len,
                                    unsigned flags, int32_t **ids, size_t *n_ids);
/* Decode ids to bytes; *out is NUL-terminated, caller frees with miser_free.
 * An id outside the vocabulary is MISER_ERR_RANGE. */
miser_status miser_tokenizer_decode(const miser_tokenizer *t, const int32_t *ids, size_t n,
                                    char **out, size_t *out_len);
/* The raw bytes of one token (for streaming); NULL if out of range. */
const char *miser_tokenizer_token_bytes(const miser_tokenizer *t, int32_t id, size_t *len);
int32_t miser_tokenizer_vocab_size(const miser_tokenizer *t);
/* Id of "<|endoftext|>", or -1 if the vocabulary lacks it. */
int32_t miser_tokenizer_eot(const miser_tokenizer *t);

#ifdef __cplusplus
}
#endif
#endif
