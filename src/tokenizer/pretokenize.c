/* The GPT-2 pre-tokenizer, by hand:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Alternatives are tried in order at each position, like a backtracking
 * regex engine would; the only backtracking that can change a match is
 * \s+(?!\S), which gives back the last whitespace character of a run that is
 * followed by a non-space, so that character can start the next piece
 * (" world" after "   " keeps its leading space). */
#include "pretokenize.h"

#include <utf8proc.h>

int miser_pretok_class(uint32_t cp)
{
    if (cp < 0x80) {
        if ((cp | 0x20u) - 'a' < 26u) return MISER_CC_LETTER;
        if (cp - '0' < 10u) return MISER_CC_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return MISER_CC_SPACE;
        return MISER_CC_OTHER;
    }
    if (cp == MISER_UTF8_INVALID) return MISER_CC_OTHER;
    /* JavaScript's \s beyond ASCII: WhiteSpace (Zs and U+FEFF) and LineTerminator
     * (U+2028/2029). Not U+0085 (a Cc control) nor U+180E (Cf since Unicode 6.3). */
    switch (cp) {
    case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000: case 0xFEFF:
        return MISER_CC_SPACE;
    default:
        if (cp >= 0x2000 && cp <= 0x200A) return MISER_CC_SPACE;
        break;
    }
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        return MISER_CC_LETTER;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return MISER_CC_NUMBER;
    default:
        return MISER_CC_OTHER;
    }
}

int miser_pretok_class_ws(uint32_t cp)
{
    if (cp == 0x85) return MISER_CC_SPACE;
    if (cp == 0xFEFF) return MISER_CC_OTHER; /* Cf */
    return miser_pretok_class(cp);
}

/* Class of the character at i; its byte length in *n. */
static int class_at(const miser_pretok *it, size_t i, size_t *n)
{
    uint32_t cp = miser_utf8_next(it->s, it->len, i, n);
    return it->white_space ? miser_pretok_class_ws(cp) : miser_pretok_class(cp);
}

/* End of the run of characters of class `cls` starting at i. */
static size_t run_end(const miser_pretok *it, size_t i, int cls)
{
    size_t n;
    while (i < it->len && class_at(it, i, &n) == cls) i += n;
    return i;
}

/* Length of a contraction at s[i] == '\'' (0 if none). Case-sensitive, as the
 * regex is: "'S" is not a contraction. */
static size_t contraction(const miser_pretok *it, size_t i)
{
    const uint8_t *s = it->s;
    size_t left = it->len - i;
    if (left >= 2 && (s[i + 1] == 's' || s[i + 1] == 't' || s[i + 1] == 'm' || s[i + 1] == 'd')) return 2;
    if (left >= 3 && ((s[i + 1] == 'r' && s[i + 2] == 'e') || (s[i + 1] == 'v' && s[i + 2] == 'e') ||
                      (s[i + 1] == 'l' && s[i + 2] == 'l')))
        return 3;
    return 0;
}

int miser_pretok_next(miser_pretok *it, size_t *start, size_t *n)
{
    size_t i = it->pos, len = it->len, end, cn;
    if (i >= len) return 0;
    *start = i;
    const uint8_t c = it->s[i];
    int cls = class_at(it, i, &cn);

    if (c == '\'' && (end = contraction(it, i)) != 0) {
        end += i;
    } else if (c == ' ' && i + 1 < len && class_at(it, i + 1, &cn) != MISER_CC_SPACE) {
        /* " ?X+" with the optional space taken: the space joins the run after it. */
        end = run_end(it, i + 1, class_at(it, i + 1, &cn));
    } else if (cls != MISER_CC_SPACE) {
        end = run_end(it, i, cls);
    } else {
        /* \s+(?!\S) then \s+: the whole run if it reaches the end of the text;
         * else all but its last character when it has two or more; else the
         * single character (which \s+ takes). */
        size_t last = i;
        end = i;
        while (end < len && class_at(it, end, &cn) == MISER_CC_SPACE) {
            last = end;
            end += cn;
        }
        if (end < len && last > i) end = last;
    }
    *n = end - i;
    it->pos = end;
    return 1;
}
