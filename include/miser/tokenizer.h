/* Tokenizers: GPT-2's byte-level BPE (vocab.json + merges.txt, or the copy
 * built into miser) and Hugging Face tokenizer.json files (byte-level BPE as
 * GPT-2, Llama 3, Qwen2 and SmolLM2 ship it; SentencePiece-style BPE with
 * byte fallback as Llama 2, Mistral and TinyLlama ship it), plus a builder
 * from arrays for vocabularies stored elsewhere (GGUF metadata).
 * docs/tokenizers.md describes what each supports and where it differs.
 *
 * The GPT-2 kind (vocab.json + merges.txt or built in) — semantics matching
 * OpenAI's encoder.py and the JavaScript reference in the npm package
 * gpt-3-encoder:
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

/* Open the tokenizer of a model directory. Chosen by the files, not by the
 * architecture: `dir`/tokenizer.json when it exists (with
 * `dir`/tokenizer_config.json when that exists too: see
 * miser_tokenizer_open_json); else vocab.json + merges.txt; else (or when dir
 * is NULL) the GPT-2 vocabulary built into miser.
 * Errors: MISER_ERR_IO when `dir` is not a readable directory or a file cannot
 * be read; MISER_ERR_FORMAT when only one of the two files exists or a file is
 * malformed (the message names the file, and the line or byte offset);
 * MISER_ERR_NOMEM. A vocabulary must contain a token for each of the 256
 * single bytes (every byte-level BPE vocabulary does), so encode never fails
 * on content. *out is owned by the caller (miser_tokenizer_free); its memory
 * is accounted as MISER_MEM_TOKENIZER. */
miser_status miser_tokenizer_open(const char *dir, miser_tokenizer **out);
/* A Hugging Face tokenizer.json, and optionally its tokenizer_config.json
 * (cfg_path may be NULL). Supported: model BPE (vocab, merges as "a b"
 * strings or [a, b] pairs, unk_token, byte_fallback, fuse_unk,
 * ignore_merges); normalizers NFC, NFD, NFKC, NFKD, Lowercase, StripAccents,
 * Replace, Prepend, Strip, Sequence; pre-tokenizers ByteLevel, Split (String
 * or Regex pattern, every behaviour, invert), Digits, Metaspace, Whitespace,
 * WhitespaceSplit, Punctuation, Sequence; post-processors TemplateProcessing,
 * ByteLevel, BertProcessing, RobertaProcessing, Sequence (single sequence);
 * decoders ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace,
 * Sequence; added_tokens with lstrip/rstrip/single_word/normalized/special.
 * From tokenizer_config.json: add_bos_token / add_eos_token (when present,
 * they decide whether bos/eos are added, overriding the post-processor, as
 * transformers' Llama-style tokenizers do) and bos_token / eos_token.
 * Regexes are compiled with PCRE2 (UTF + UCP, JIT) after rewriting the few
 * Oniguruma shorthands that differ. Errors: MISER_ERR_IO (unreadable),
 * MISER_ERR_FORMAT (malformed or lying: wrong types, missing model, merges
 * naming unknown tokens, a regex that does not compile, ids out of range:
 * one line naming the file and the field), MISER_ERR_UNSUPPORTED (a valid
 * component miser does not implement, named), MISER_ERR_NOMEM. */
miser_status miser_tokenizer_open_json(const char *json_path, const char *cfg_path, miser_tokenizer **out);

/* Building a tokenizer from arrays (the GGUF loader's tokenizer.ggml.*).
 * Token types are GGUF's values. */
typedef enum miser_tokmodel {
    MISER_TOKMODEL_BPE = 0, /* merges by rank (tokenizer.ggml.model "gpt2") */
    MISER_TOKMODEL_SPM = 1  /* SentencePiece BPE by score ("llama"): ▁ for spaces, <0xNN> byte fallback */
} miser_tokmodel;
enum {
    MISER_TOKTYPE_NORMAL = 1,
    MISER_TOKTYPE_UNKNOWN = 2,
    MISER_TOKTYPE_CONTROL = 3,      /* special: split out of text, skipped by SKIP_SPECIAL */
    MISER_TOKTYPE_USER_DEFINED = 4, /* split out of text, decoded as text */
    MISER_TOKTYPE_UNUSED = 5,
    MISER_TOKTYPE_BYTE = 6          /* <0xNN> */
};
typedef struct miser_tokenizer_spec {
    const char *name;                 /* for messages, e.g. the GGUF path */
    miser_tokmodel model;
    size_t n_tokens;
    const char *const *tokens;        /* token i as the vocabulary writes it: BPE with byte_level in
                                         GPT-2's byte-to-unicode alphabet; SPM with U+2581 for spaces */
    const size_t *token_lens;         /* NULL: tokens are NUL-terminated */
    const int32_t *token_types;       /* NULL: all NORMAL */
    const float *scores;              /* SPM: required; merges follow them (highest first, then leftmost,
                                         as llama.cpp and sentencepiece do) */
    size_t n_merges;                  /* BPE: "left right" strings by rank */
    const char *const *merges;
    const size_t *merge_lens;         /* NULL: NUL-terminated */
    size_t n_regexes;                 /* BPE: Split(Isolated) pre-tokenizers applied in order, in
                                         Oniguruma syntax (llama.cpp's per-`pre` expressions) */
    const char *const *regexes;
    int byte_level;                   /* BPE: ByteLevel after the regexes (with GPT-2's own regex
                                         when n_regexes is 0) */
    int add_space_prefix;             /* SPM: prepend ▁ to the text (tokenizer.ggml.add_space_prefix) */
    int32_t bos, eos, unk;            /* -1: none */
    int add_bos, add_eos;
    int ignore_merges;                /* BPE: a piece that is a whole token is not merged (HF's
                                         ignore_merges; llama.cpp's llama-bpe pre-tokenizer) */
} miser_tokenizer_spec;
/* Control and user-defined tokens become added tokens (matched in the text
 * before anything else; control ones are special). Errors as for
 * open_json (MISER_ERR_FORMAT naming spec->name and the array/index). */
miser_status miser_tokenizer_build(const miser_tokenizer_spec *spec, miser_tokenizer **out);

/* Freeing NULL is a no-op. */
void miser_tokenizer_free(miser_tokenizer *t);

/* Flags for encode. By default special tokens in the text ("<|endoftext|>"
 * (50256) for GPT-2; a tokenizer.json's added tokens marked special) become
 * their ids; with SPECIAL_AS_TEXT they are tokenized as plain text (added
 * tokens that are not special are still split out, as HF does).
 * By default the tokenizer adds what its post-processor / config says (bos,
 * eos; nothing for GPT-2); NO_ADD_SPECIAL adds nothing (HF's
 * add_special_tokens=False).
 * Text of a tokenizer.json tokenizer that is not valid UTF-8 is first made
 * valid as the WHATWG Encoding Standard does (each maximal invalid subpart
 * becomes U+FFFD, as Node's Buffer.toString and Python's errors="replace");
 * the GPT-2 kind keeps invalid bytes (see above). */
#define MISER_TOKENIZE_SPECIAL_AS_TEXT 1u
#define MISER_TOKENIZE_NO_ADD_SPECIAL 2u

/* Encode `len` arbitrary bytes. *ids is allocated (MISER_MEM_TOKENIZER) and
 * owned by the caller (miser_free). Never fails on any byte content (only
 * MISER_ERR_NOMEM, or MISER_ERR_INVALID for NULL arguments; for a
 * tokenizer.json, MISER_ERR_RANGE if one of its regexes hits PCRE2's match
 * limit, which the published patterns cannot). For len 0, *ids
 * is a valid allocation and *n_ids is 0. Time is O(n log n) in the longest
 * piece, so long runs of letters without spaces stay fast. */
miser_status miser_tokenizer_encode(const miser_tokenizer *t, const char *text, size_t len,
                                    unsigned flags, int32_t **ids, size_t *n_ids);
/* Decode ids to bytes; *out is NUL-terminated, caller frees with miser_free.
 * An id outside the vocabulary is MISER_ERR_RANGE (the message names the id
 * and its index). */
miser_status miser_tokenizer_decode(const miser_tokenizer *t, const int32_t *ids, size_t n,
                                    char **out, size_t *out_len);
/* decode with flags: SKIP_SPECIAL leaves out special tokens (HF's
 * skip_special_tokens). Decoding applies the file's decoder: byte-level
 * tokens to bytes, ▁ to spaces, <0xNN> to bytes (kept raw: where HF would
 * put U+FFFD for bytes that are not valid UTF-8, miser returns the bytes),
 * and its Strip (Llama 2's leading space). */
#define MISER_DECODE_SKIP_SPECIAL 1u
miser_status miser_tokenizer_decode_ex(const miser_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                                       char **out, size_t *out_len);
/* The raw bytes of one token (for streaming; decoder applied to the token
 * alone, without the whole-text Strip); NULL if out of range. The
 * pointer stays valid until the tokenizer is freed; it is not NUL-terminated. */
const char *miser_tokenizer_token_bytes(const miser_tokenizer *t, int32_t id, size_t *len);
/* One more than the largest id in the vocabulary (50257 for GPT-2). */
int32_t miser_tokenizer_vocab_size(const miser_tokenizer *t);
/* End of text: the GPT-2 kind's "<|endoftext|>"; for tokenizer.json the
 * eos_token of tokenizer_config.json, else the post-processor's last suffix
 * token, else the first of "<|endoftext|>", "</s>", "<|end_of_text|>",
 * "<|im_end|>" in the vocabulary; -1 if none. For a spec, spec->eos. */
int32_t miser_tokenizer_eot(const miser_tokenizer *t);
/* Beginning of sequence (tokenizer_config.json's bos_token, the
 * post-processor's first prefix token, spec->bos), or -1. */
int32_t miser_tokenizer_bos(const miser_tokenizer *t);
/* 1 when id is a special token (decode with SKIP_SPECIAL drops it). */
int miser_tokenizer_is_special(const miser_tokenizer *t, int32_t id);
/* Heap bytes held by the tokenizer (its tables and token strings). */
size_t miser_tokenizer_memory(const miser_tokenizer *t);

#ifdef __cplusplus
}
#endif
#endif
