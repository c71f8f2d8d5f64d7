/* Internal to the tokenizer: strict UTF-8 decoding and the GPT-2
 * pre-tokenizer (the regex of include/miser/tokenizer.h, by hand), with
 * JavaScript's \s (the GPT-2 kind, as gpt-3-encoder) or White_Space (a
 * tokenizer.json's ByteLevel regex, as the Rust crate: its fast path, which
 * tests/test_tokenizer_hf.c compares with the PCRE2 form on its corpus). */
#ifndef MISER_TOKENIZER_PRETOKENIZE_H
#define MISER_TOKENIZER_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#define MISER_UTF8_INVALID 0xFFFFFFFFu

/* Decode the character at s[i] (i < len). Returns the code point and sets *n
 * to its byte length; a byte that does not start a valid shortest-form
 * sequence (no surrogates, <= U+10FFFF) gives MISER_UTF8_INVALID with *n = 1. */
static inline uint32_t miser_utf8_next(const uint8_t *s, size_t len, size_t i, size_t *n)
{
    uint32_t c = s[i];
    *n = 1;
    if (c < 0x80) return c;
#define MISER_CONT_(k) (i + (k) < len && (s[i + (k)] & 0xC0u) == 0x80u)
    if (c >= 0xC2 && c <= 0xDF) {
        if (MISER_CONT_(1)) {
            *n = 2;
            return ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
        }
    } else if (c >= 0xE0 && c <= 0xEF) {
        if (MISER_CONT_(1) && MISER_CONT_(2)) {
            uint32_t cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
            if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) {
                *n = 3;
                return cp;
            }
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        if (MISER_CONT_(1) && MISER_CONT_(2) && MISER_CONT_(3)) {
            uint32_t cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) |
                          (s[i + 3] & 0x3Fu);
            if (cp >= 0x10000 && cp <= 0x10FFFF) {
                *n = 4;
                return cp;
            }
        }
    }
#undef MISER_CONT_
    return MISER_UTF8_INVALID;
}

/* Character classes of the pre-tokenizer regex. */
enum { MISER_CC_LETTER = 0, MISER_CC_NUMBER, MISER_CC_SPACE, MISER_CC_OTHER };

/* Class of a code point (MISER_UTF8_INVALID is OTHER). SPACE is JavaScript's \s. */
int miser_pretok_class(uint32_t cp);
/* The same with SPACE = Unicode White_Space (Oniguruma's \s, which the Rust
 * tokenizers' ByteLevel regex uses): U+0085 is a space, U+FEFF is not. */
int miser_pretok_class_ws(uint32_t cp);

/* Iterates over the pieces of a byte string. */
typedef struct miser_pretok {
    const uint8_t *s;
    size_t len;
    size_t pos;
    int white_space; /* 1: classes of miser_pretok_class_ws */
} miser_pretok;

static inline void miser_pretok_init(miser_pretok *it, const void *s, size_t len)
{
    it->s = (const uint8_t *)s;
    it->len = len;
    it->pos = 0;
    it->white_space = 0;
}

/* Next piece as [*start, *start + *n); returns 0 when the text is exhausted.
 * The pieces tile the text exactly (every byte belongs to one piece). */
int miser_pretok_next(miser_pretok *it, size_t *start, size_t *n);

#endif
