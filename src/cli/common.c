/* Helpers shared by the subcommands: stdin, stdout's final check, output
 * paths checked before any work, the one prompt check, UTF-8 checks, JSON
 * strings, strict number parsing. */
#include "cli.h"
#include "miser/alloc.h"
#include "miser/core.h"
#include "miser/tokenizer.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <sched.h>
#include <stdio_ext.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* set once a stdout failure has been reported, so it is reported once */
static int g_stdout_reported;

int miser_cli_finish_stdout(const char *cmd)
{
    errno = 0;
    int e = fflush(stdout) != 0 ? errno : 0;
    if (e || ferror(stdout)) {
        if (!g_stdout_reported) miser_cli_error(cmd, "writing stdout: %s", strerror(e ? e : EIO));
        g_stdout_reported = 1;
        return MISER_EXIT_FAIL;
    }
    return MISER_EXIT_OK;
}

int miser_cli_close_stdout(const char *cmd)
{
    int pending = __fpending(stdout) != 0;
    int failed = miser_cli_finish_stdout(cmd) != MISER_EXIT_OK;
    errno = 0;
    int closed = fclose(stdout) == 0;
    int e = errno;
    if (failed) return MISER_EXIT_FAIL;
    if (!closed && (pending || e != EBADF)) {
        if (!g_stdout_reported) miser_cli_error(cmd, "writing stdout: %s", strerror(e ? e : EIO));
        g_stdout_reported = 1;
        return MISER_EXIT_FAIL;
    }
    return MISER_EXIT_OK;
}

/* ---- output paths ---- */

static int output_error(const char *cmd, const char *opt, const char *path, int e)
{
    miser_cli_error(cmd, "cannot write --%s %s: %s", opt, path, strerror(e));
    return MISER_EXIT_USAGE;
}

int miser_cli_check_output(const char *cmd, const char *opt, const char *path)
{
    if (!path || !*path) return output_error(cmd, opt, "''", ENOENT);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return output_error(cmd, opt, path, EISDIR);
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        /* a device, FIFO or socket: the atomic writer's rename would replace
         * it (/dev/full, /dev/stdout) instead of writing to it */
        miser_cli_error(cmd, "cannot write --%s %s: not a regular file (reports are written to a new file and "
                        "renamed into place)", opt, path);
        return MISER_EXIT_USAGE;
    }
    size_t n = strlen(path) + 16;
    char *tmp = miser_malloc(MISER_MEM_SCRATCH, n);
    if (!tmp) return output_error(cmd, opt, path, ENOMEM);
    snprintf(tmp, n, "%s.tmp.XXXXXX", path); /* the name miser_file_write_atomic uses */
    int fd = mkstemp(tmp);
    int e = errno;
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    miser_free(tmp);
    return fd >= 0 ? MISER_EXIT_OK : output_error(cmd, opt, path, e);
}

int miser_cli_check_output_dir(const char *cmd, const char *opt, const char *dir)
{
    if (!dir || !*dir) return output_error(cmd, opt, "''", ENOENT);
    char buf[4096];
    if (strlen(dir) >= sizeof buf) return output_error(cmd, opt, dir, ENAMETOOLONG);
    snprintf(buf, sizeof buf, "%s", dir);
    for (;;) {
        size_t l = strlen(buf);
        while (l > 1 && buf[l - 1] == '/') buf[--l] = 0;
        struct stat sb;
        if (stat(buf, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode)) return output_error(cmd, opt, dir, ENOTDIR);
            if (access(buf, W_OK | X_OK)) return output_error(cmd, opt, dir, errno);
            return MISER_EXIT_OK;
        }
        if (errno != ENOENT) return output_error(cmd, opt, dir, errno);
        char *slash = strrchr(buf, '/');
        if (!slash) snprintf(buf, sizeof buf, ".");
        else if (slash == buf) buf[1] = 0;
        else *slash = 0;
    }
}

int miser_cli_mkdirs(const char *dir, char *first_new, size_t cap)
{
    if (cap) first_new[0] = 0;
    char buf[4096];
    if (strlen(dir) >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    snprintf(buf, sizeof buf, "%s", dir);
    size_t l = strlen(buf);
    for (size_t i = 1; i <= l; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        if (buf[i - 1] == '/') continue;
        char keep = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) == 0) {
            if (cap && !first_new[0]) snprintf(first_new, cap, "%s", buf);
        } else {
            struct stat sb;
            int e = errno;
            if (e != EEXIST || stat(buf, &sb) || !S_ISDIR(sb.st_mode)) {
                errno = e == EEXIST ? ENOTDIR : e;
                return -1;
            }
        }
        buf[i] = keep;
    }
    return 0;
}

void miser_cli_rmdirs(const char *dir, const char *first_new)
{
    if (!first_new || !*first_new) return;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    size_t fl = strlen(first_new);
    for (;;) {
        size_t l = strlen(buf);
        while (l > 1 && buf[l - 1] == '/') buf[--l] = 0;
        if (l < fl || rmdir(buf)) return;
        if (l == fl) return;
        char *slash = strrchr(buf, '/');
        if (!slash) return;
        *slash = 0;
    }
}

int miser_cli_exit_for_input(int st)
{
    switch ((miser_status)st) {
    case MISER_OK: return MISER_EXIT_OK;
    case MISER_ERR_NOMEM: return MISER_EXIT_FAIL;
    case MISER_ERR_INVALID: return MISER_EXIT_USAGE;
    default: return MISER_EXIT_DATA;
    }
}

int miser_cli_prompt_ids(const char *cmd, const char *what, const miser_tokenizer *tok, int64_t n_ctx,
                         int64_t n_vocab, const char *text, size_t len, unsigned flags, int32_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (!miser_cli_utf8_valid((const unsigned char *)text, len)) {
        miser_cli_error(cmd, "%s is not valid UTF-8", what);
        return MISER_EXIT_DATA;
    }
    miser_status st = miser_tokenizer_encode(tok, text, len, flags, ids, n);
    if (st) {
        miser_cli_error(cmd, "%s: %s", what, miser_error_message());
        return miser_cli_exit_for_status(st);
    }
    int rc = MISER_EXIT_OK;
    if (*n == 0) {
        miser_cli_error(cmd, "%s is empty: give at least one token of text", what);
        rc = MISER_EXIT_DATA;
    } else if ((int64_t)*n > n_ctx) {
        miser_cli_error(cmd, "%s has %zu tokens, more than the model's context of %lld", what, *n, (long long)n_ctx);
        rc = MISER_EXIT_DATA;
    } else {
        for (size_t i = 0; i < *n && !rc; i++)
            if ((*ids)[i] >= n_vocab) {
                miser_cli_error(cmd, "%s: token %d is outside the model's vocabulary of %lld", what, (*ids)[i],
                                (long long)n_vocab);
                rc = MISER_EXIT_DATA;
            }
    }
    if (rc) {
        miser_free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

/* length of the valid UTF-8 sequence at s[i], or 0 */
/* The length of the valid sequence at s[i], 0 when invalid or cut short
 * (miser_utf8_seq's -1 counts as invalid here: the text is complete). */
static size_t utf8_seq(const unsigned char *s, size_t i, size_t n)
{
    int k = miser_utf8_seq(s, i, n);
    return k > 0 ? (size_t)k : 0;
}

int miser_cli_utf8_valid(const unsigned char *s, size_t n) { return miser_utf8_valid((const char *)s, n); }

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
