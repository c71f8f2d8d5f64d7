/* UTF-8 validation, in one place: the CLI checks prompts with it, the server
 * request bodies and streamed text, the tokenizer every string of a
 * tokenizer.json. Strict (RFC 3629): shortest form only, no surrogates,
 * nothing past U+10FFFF — the same rule as Python's and Rust's decoders, so a
 * text miser accepts is one the references accept. */
#include "miser/core.h"

int miser_utf8_seq(const unsigned char *s, size_t i, size_t n)
{
    unsigned char c = s[i];
    if (c < 0x80) return 1;
    int k = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!k) return 0;
    for (int j = 1; j < k; j++) {
        if (i + (size_t)j >= n) return -1;
        unsigned char d = s[i + (size_t)j];
        if ((d & 0xC0) != 0x80) return 0;
        /* the second byte bounds the code point: no overlongs, surrogates or > U+10FFFF */
        if (j == 1 && ((c == 0xE0 && d < 0xA0) || (c == 0xED && d > 0x9F) || (c == 0xF0 && d < 0x90) ||
                       (c == 0xF4 && d > 0x8F)))
            return 0;
    }
    return k;
}

int miser_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        int k = miser_utf8_seq(s, i, n);
        if (k <= 0) return 0;
        i += (size_t)k;
    }
    return 1;
}
