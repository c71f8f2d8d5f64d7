/* `miser tokenize` and `miser detokenize`: text <-> GPT-2 token ids with the
 * model directory's vocabulary or the built-in one. Input from stdin is read
 * verbatim (binary-safe, nothing stripped). */
#include "cli.h"
#include "miser/alloc.h"
#include "miser/core.h"
#include "miser/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static void tokenize_usage(FILE *f)
{
    fprintf(f,
            "usage: miser tokenize [--model DIR] [--special-as-text] [--json] [TEXT | -]\n"
            "\n"
            "Print the GPT-2 token ids of TEXT, space-separated on one line. With `-` or no\n"
            "TEXT, stdin is read verbatim (any bytes; nothing is stripped).\n"
            "\n"
            "options:\n"
            "  --model DIR        use DIR/tokenizer.json (+ tokenizer_config.json), else\n"
            "                     DIR/vocab.json and DIR/merges.txt, else (and by default)\n"
            "                     the GPT-2 vocabulary built into miser; a tokenizer.json\n"
            "                     adds what its post-processor says (Llama's bos)\n"
            "  --special-as-text  tokenize \"<|endoftext|>\" as plain text, not as token 50256\n"
            "  --json             print {\"ids\":[...],\"count\":N}\n"
            "  -h, --help         this help\n"
            "\n"
            "Invalid UTF-8 is accepted: with the GPT-2 vocabulary each invalid byte is encoded\n"
            "through its byte token, so `miser detokenize` gives back the exact input bytes;\n"
            "a tokenizer.json first replaces invalid sequences with U+FFFD (as HF does).\n"
            "\n"
            "exit codes: 0 ok, 1 failure (also: stdout could not be written), 2 bad options,\n"
            "            3 a --model directory that is missing or holds a bad vocabulary.\n");
}

static void detokenize_usage(FILE *f)
{
    fprintf(f,
            "usage: miser detokenize [--model DIR] [--json] [IDS... | -]\n"
            "\n"
            "Write the bytes of the given token ids to stdout (no newline added). Ids are\n"
            "arguments, or with `-` or none, read from stdin separated by whitespace or commas.\n"
            "\n"
            "options:\n"
            "  --model DIR   DIR's tokenizer, as for tokenize (default: built-in GPT-2)\n"
            "  --json        print {\"text\":\"...\",\"bytes\":N,\"utf8_valid\":true|false}; invalid\n"
            "                UTF-8 shows as U+FFFD in \"text\" and the exact bytes are added\n"
            "                as \"hex\"\n"
            "  -h, --help    this help\n"
            "\n"
            "exit codes: 0 ok, 1 failure (also: stdout could not be written), 2 bad options or a\n"
            "            malformed id on the command line, 3 a malformed id on stdin, an id outside\n"
            "            the vocabulary, or a --model directory that is missing or holds a bad\n"
            "            vocabulary.\n");
}

static int open_tokenizer(const char *cmd, const char *model, miser_tokenizer **t)
{
    miser_status st = miser_tokenizer_open(model, t);
    if (st) {
        miser_cli_error(cmd, "%s", miser_error_message());
        return miser_cli_exit_for_input(st); /* a missing or bad --model is input data */
    }
    return MISER_EXIT_OK;
}

static int cmd_tokenize(int argc, char **argv)
{
    const char *cmd = "tokenize", *model = NULL, *text = NULL;
    int json = 0, have_text = 0, dashdash = 0;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!dashdash && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            tokenize_usage(stdout);
            return MISER_EXIT_OK;
        } else if (!dashdash && !strcmp(a, "--model")) {
            if (++i >= argc) {
                miser_cli_error(cmd, "--model needs a directory");
                return MISER_EXIT_USAGE;
            }
            model = argv[i];
        } else if (!dashdash && !strncmp(a, "--model=", 8)) {
            model = a + 8;
        } else if (!dashdash && !strcmp(a, "--special-as-text")) {
            flags |= MISER_TOKENIZE_SPECIAL_AS_TEXT;
        } else if (!dashdash && !strcmp(a, "--json")) {
            json = 1;
        } else if (!dashdash && !strcmp(a, "--")) {
            dashdash = 1;
        } else if (!dashdash && a[0] == '-' && a[1]) {
            miser_cli_error(cmd, "unknown option '%s' (see --help)", a);
            return MISER_EXIT_USAGE;
        } else {
            if (have_text) {
                miser_cli_error(cmd, "give one TEXT argument (quote it), or `-` for stdin");
                return MISER_EXIT_USAGE;
            }
            have_text = 1;
            text = (!dashdash && !strcmp(a, "-")) ? NULL : a;
        }
    }
    char *buf = NULL;
    size_t len = 0;
    if (text) {
        len = strlen(text);
    } else {
        if (!(buf = miser_cli_read_stdin(cmd, &len))) return MISER_EXIT_FAIL;
        text = buf;
    }
    miser_tokenizer *t = NULL;
    int rc = open_tokenizer(cmd, model, &t);
    int32_t *ids = NULL;
    size_t n = 0;
    if (rc == MISER_EXIT_OK) {
        miser_status st = miser_tokenizer_encode(t, text, len, flags, &ids, &n);
        if (st) {
            miser_cli_error(cmd, "%s", miser_error_message());
            rc = miser_cli_exit_for_status(st);
        }
    }
    if (rc == MISER_EXIT_OK) {
        if (json) fputs("{\"ids\":[", stdout);
        for (size_t i = 0; i < n; i++) printf(i ? (json ? ",%d" : " %d") : "%d", (int)ids[i]);
        if (json)
            printf("],\"count\":%zu}\n", n);
        else
            putchar('\n');
        rc = miser_cli_finish_stdout(cmd);
    }
    miser_free(ids);
    miser_tokenizer_free(t);
    miser_free(buf);
    return rc;
}

/* Parse one id token of `n` chars; returns 0 and sets *id, or -1. */
static int parse_id(const char *s, size_t n, long *id)
{
    char tmp[32];
    if (n == 0 || n >= sizeof tmp) return -1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *end;
    errno = 0;
    long v = strtol(tmp, &end, 10);
    if (*end || errno || end == tmp || (tmp[0] != '-' && (tmp[0] < '0' || tmp[0] > '9'))) return -1;
    *id = v;
    return 0;
}

static int push_id(const char *cmd, int32_t **ids, size_t *n, size_t *cap, long v)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        int32_t *p = miser_realloc(MISER_MEM_SCRATCH, *ids, c * sizeof *p);
        if (!p) {
            miser_cli_error(cmd, "out of memory");
            return MISER_EXIT_FAIL;
        }
        *ids = p;
        *cap = c;
    }
    /* Keep out-of-int32 values recognisable as out of range. */
    (*ids)[(*n)++] = v < 0 ? -1 : v > INT32_MAX ? INT32_MAX : (int32_t)v;
    return MISER_EXIT_OK;
}

static int cmd_detokenize(int argc, char **argv)
{
    const char *cmd = "detokenize", *model = NULL;
    int json = 0, dashdash = 0, from_stdin = 0, n_args = 0, rc = MISER_EXIT_OK;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    for (int i = 1; i < argc && rc == MISER_EXIT_OK; i++) {
        const char *a = argv[i];
        long v;
        if (!dashdash && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            detokenize_usage(stdout);
            miser_free(ids);
            return MISER_EXIT_OK;
        } else if (!dashdash && !strcmp(a, "--model")) {
            if (++i >= argc) {
                miser_cli_error(cmd, "--model needs a directory");
                rc = MISER_EXIT_USAGE;
            } else {
                model = argv[i];
            }
        } else if (!dashdash && !strncmp(a, "--model=", 8)) {
            model = a + 8;
        } else if (!dashdash && !strcmp(a, "--json")) {
            json = 1;
        } else if (!dashdash && !strcmp(a, "--")) {
            dashdash = 1;
        } else if (!dashdash && !strcmp(a, "-")) {
            from_stdin = 1;
        } else if (parse_id(a, strlen(a), &v) == 0) {
            n_args++;
            rc = push_id(cmd, &ids, &n, &cap, v);
        } else if (!dashdash && a[0] == '-' && a[1] == '-') {
            miser_cli_error(cmd, "unknown option '%s' (see --help)", a);
            rc = MISER_EXIT_USAGE;
        } else {
            miser_cli_error(cmd, "'%s' is not a token id (expected a decimal integer)", a);
            rc = MISER_EXIT_USAGE;
        }
    }
    if (rc == MISER_EXIT_OK && from_stdin && n_args) {
        miser_cli_error(cmd, "give ids as arguments or `-` for stdin, not both");
        rc = MISER_EXIT_USAGE;
    }
    if (rc == MISER_EXIT_OK && !n_args) {
        size_t len;
        char *buf = miser_cli_read_stdin(cmd, &len);
        if (!buf) rc = MISER_EXIT_FAIL;
        for (size_t i = 0; rc == MISER_EXIT_OK && i < len;) {
            if (strchr(" \t\r\n\v\f,", buf[i]) && buf[i]) {
                i++;
                continue;
            }
            size_t j = i;
            while (j < len && !(buf[j] && strchr(" \t\r\n\v\f,", buf[j]))) j++;
            long v;
            if (parse_id(buf + i, j - i, &v) != 0) {
                int shown = (int)(j - i > 40 ? 40 : j - i);
                miser_cli_error(cmd, "stdin: '%.*s%s' is not a token id (expected a decimal integer)", shown,
                                buf + i, j - i > 40 ? "..." : "");
                rc = MISER_EXIT_DATA;
            } else {
                rc = push_id(cmd, &ids, &n, &cap, v);
            }
            i = j;
        }
        miser_free(buf);
    }
    miser_tokenizer *t = NULL;
    char *out = NULL;
    size_t out_len = 0;
    if (rc == MISER_EXIT_OK) rc = open_tokenizer(cmd, model, &t);
    if (rc == MISER_EXIT_OK) {
        miser_status st = miser_tokenizer_decode(t, ids, n, &out, &out_len);
        if (st) {
            miser_cli_error(cmd, "%s", miser_error_message());
            rc = miser_cli_exit_for_status(st);
        }
    }
    if (rc == MISER_EXIT_OK) {
        if (json) {
            int valid;
            fputs("{\"text\":", stdout);
            miser_cli_json_string(stdout, (const unsigned char *)out, out_len, &valid);
            printf(",\"bytes\":%zu,\"utf8_valid\":%s", out_len, valid ? "true" : "false");
            if (!valid) {
                fputs(",\"hex\":\"", stdout);
                for (size_t i = 0; i < out_len; i++) printf("%02x", (unsigned char)out[i]);
                putchar('"');
            }
            fputs("}\n", stdout);
        } else {
            fwrite(out, 1, out_len, stdout);
        }
        rc = miser_cli_finish_stdout(cmd);
    }
    miser_free(out);
    miser_tokenizer_free(t);
    miser_free(ids);
    return rc;
}

MISER_CLI_COMMAND(tokenize, "tokenize", "text to token ids (a model's tokenizer, or the built-in GPT-2 one)", cmd_tokenize)
MISER_CLI_COMMAND(detokenize, "detokenize", "token ids back to text bytes", cmd_detokenize)
