/* Helpers shared by the subcommands: stdin, UTF-8 checks, JSON strings,
 * strict number parsing. */
#include "cli.h"
#include "miser/alloc.h"
#include "miser/core.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>

char *miser_cli_read_stdin(const char *cmd, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = miser_malloc(MISER_MEM_SCRATCH, cap + 1);
    if (!buf) {
        miser_cli_error(cmd, "%s", miser_error_message());
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            char *p = cap > SIZE_MAX / 4 ? NULL : miser_realloc(MISER_MEM_SCRATCH, buf, cap * 2 + 1);
            if (!p) {
                miser_free(buf);
                miser_cli_error(cmd, "out of memory reading stdin");
                return NULL;
            }
            buf = p;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, stdin);
        n += r;
        if (r == 0) break;
    }
    if (ferror(stdin)) {
        miser_cli_error(cmd, "reading stdin: %s", strerror(errno));
        miser_free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int miser_cli_finish_stdout(const char *cmd)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        miser_cli_error(cmd, "writing stdout: %s", strerror(errno));
        return MISER_EXIT_FAIL;
    }
    return MISER_EXIT_OK;
}

/* length of the valid UTF-8 sequence at s[i], or 0 */
static size_t utf8_seq(const unsigned char *s, size_t i, size_t n)
{
    unsigned char c = s[i];
    if (c < 0x80) return 1;
    size_t k = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!k || i + k > n) return 0;
    for (size_t j = 1; j < k; j++)
        if ((s[i + j] & 0xC0) != 0x80) return 0;
    if (k == 3) {
        unsigned cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6);
        if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    } else if (k == 4) {
        unsigned cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12);
        if (cp < 0x10000 || cp > 0x10FFFF) return 0;
    }
    return k;
}

int miser_cli_utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(s, i, n);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

void miser_cli_json_string(FILE *f, const unsigned char *s, size_t n, int *valid)
{
    if (valid) *valid = 1;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c < 0x80) {
            switch (c) {
            case '"': fputs("\\\"", f); break;
            case '\\': fputs("\\\\", f); break;
            case '\n': fputs("\\n", f); break;
            case '\r': fputs("\\r", f); break;
            case '\t': fputs("\\t", f); break;
            case '\b': fputs("\\b", f); break;
            case '\f': fputs("\\f", f); break;
            default:
                if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
                else fputc(c, f);
            }
            i++;
            continue;
        }
        size_t k = utf8_seq(s, i, n);
        if (k) {
            fwrite(s + i, 1, k, f);
            i += k;
        } else {
            fputs("\xEF\xBF\xBD", f);
            if (valid) *valid = 0;
            i++;
        }
    }
    fputc('"', f);
}

int miser_cli_parse_i64(const char *s, long long lo, long long hi, long long *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int miser_cli_parse_f32(const char *s, float lo, float hi, float *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int miser_cli_default_threads(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n > 64 ? 64 : n;
    }
    return 1;
}

int miser_cli_option_error(const char *cmd, int c, char **argv)
{
    if (c == ':') miser_cli_error(cmd, "option %s needs a value", argv[optind - 1]);
    else miser_cli_error(cmd, "unknown option '%s' (see --help)", argv[optind - 1]);
    return MISER_EXIT_USAGE;
}

int miser_cli_value_error(const char *cmd, const struct option *opts, int li, const char *value)
{
    miser_cli_error(cmd, "invalid value '%s' for --%s", value, li >= 0 ? opts[li].name : "?");
    return MISER_EXIT_USAGE;
}
