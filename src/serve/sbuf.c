/* Growable byte buffers for the server's responses and a JSON string writer
 * that keeps every body valid UTF-8 (a model may emit bytes that are not).
 * Memory is accounted as MISER_MEM_OTHER. */
#include "serve/serve.h"
#include "miser/alloc.h"

#include <stdio.h>
#include <string.h>

void miser_sb_free(miser_sb *b)
{
    miser_free(b->data);
    memset(b, 0, sizeof *b);
}

static int sb_reserve(miser_sb *b, size_t extra)
{
    if (b->failed) return -1;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return -1;
        }
        cap *= 2;
    }
    char *p = miser_realloc(MISER_MEM_OTHER, b->data, cap);
    if (!p) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void miser_sb_put(miser_sb *b, const void *s, size_t n)
{
    if (sb_reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void miser_sb_puts(miser_sb *b, const char *s) { miser_sb_put(b, s, strlen(s)); }

void miser_sb_printf(miser_sb *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        miser_sb_put(b, tmp, (size_t)n);
        return;
    }
    if (sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* utf8_seq: miser_utf8_seq (src/core/utf8.c). */
#define utf8_seq miser_utf8_seq

size_t miser_utf8_stable_prefix(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        int k = utf8_seq(s, i, n);
        if (k < 0) return i;
        i += k ? (size_t)k : 1;
    }
    return i;
}

void miser_sb_json_str(miser_sb *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    miser_sb_put(b, "\"", 1);
    size_t run = 0; /* start of the pending run of bytes copied verbatim */
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        const char *esc = NULL;
        char u[8];
        int k = 1;
        if (c < 0x80) {
            switch (c) {
            case '"': esc = "\\\""; break;
            case '\\': esc = "\\\\"; break;
            case '\n': esc = "\\n"; break;
            case '\r': esc = "\\r"; break;
            case '\t': esc = "\\t"; break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    snprintf(u, sizeof u, "\\u%04x", c);
                    esc = u;
                }
            }
        } else {
            k = utf8_seq(s, i, n);
            if (k <= 0) {
                esc = "\xEF\xBF\xBD";
                k = 1;
            }
        }
        if (esc) {
            miser_sb_put(b, s + run, i - run);
            miser_sb_puts(b, esc);
            run = i + (size_t)k;
        }
        i += (size_t)k;
    }
    miser_sb_put(b, s + run, n - run);
    miser_sb_put(b, "\"", 1);
}
