/* Shared pieces of the miser command-line tool: subcommand registration,
 * exit codes and small helpers. Only the CLI (never the library) exits. */
#ifndef MISER_CLI_H
#define MISER_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes, documented in `miser --help` and the README. */
enum {
    MISER_EXIT_OK = 0,         /* success */
    MISER_EXIT_FAIL = 1,       /* runtime failure (I/O, out of memory, internal) */
    MISER_EXIT_USAGE = 2,      /* bad command line */
    MISER_EXIT_DATA = 3,       /* invalid input data (model file, text, profile) */
    MISER_EXIT_REGRESSION = 4  /* `miser check` found a regression */
};

typedef struct miser_cli_command {
    const char *name;
    const char *summary;              /* one line for `miser --help` */
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
} miser_cli_command;

void miser_cli_register(const miser_cli_command *cmd);

/* Each subcommand file registers itself; main.c needs no edit to add one. */
#define MISER_CLI_COMMAND(ident, name_, summary_, fn_)                                  \
    static const miser_cli_command ident##_command = {name_, summary_, fn_};           \
    __attribute__((constructor)) static void ident##_register(void)                    \
    {                                                                                  \
        miser_cli_register(&ident##_command);                                          \
    }

/* Print "miser <cmd>: <message>" to stderr (one line). */
void miser_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Map a library status to an exit code. */
int miser_cli_exit_for_status(int status);

/* Whole stdin (binary-safe) into a miser_malloc'd buffer, NUL-terminated.
 * NULL on failure, with the error printed under `cmd`. */
char *miser_cli_read_stdin(const char *cmd, size_t *len);
/* fflush + ferror check of stdout; prints the error (once: main.c's final
 * check does not print it again). */
int miser_cli_finish_stdout(const char *cmd);
/* main.c, after every command: flush and close stdout; a failed write
 * (now or earlier: /dev/full, a closed pipe) prints one line and returns
 * MISER_EXIT_FAIL, else MISER_EXIT_OK. A stdout closed by the caller that
 * nothing was written to is not an error (coreutils' close_stdout rule). */
int miser_cli_close_stdout(const char *cmd);

/* Output paths, checked before any work so that a bad one costs nothing
 * but this line: "miser CMD: cannot write --OPT PATH: <strerror>", exit
 * MISER_EXIT_USAGE (0 when fine). A file: its directory must exist and
 * take a new file (probed by creating and removing the temporary name the
 * atomic writer uses), PATH must not be a directory, a device or a FIFO
 * (the rename would replace it). A directory (may not
 * exist yet, miser_cli_mkdirs makes it later): the nearest existing
 * ancestor must be a directory this process can write into. */
int miser_cli_check_output(const char *cmd, const char *opt, const char *path);
int miser_cli_check_output_dir(const char *cmd, const char *opt, const char *dir);
/* mkdir -p. The topmost directory it created goes to first_new ("" when
 * none). 0, or -1 with errno set. */
int miser_cli_mkdirs(const char *dir, char *first_new, size_t cap);
/* Undo miser_cli_mkdirs after a failure: rmdir dir and its parents up to
 * first_new (only empty ones go). */
void miser_cli_rmdirs(const char *dir, const char *first_new);

/* Exit code for a failure to open or read an input the user named (a model
 * directory, a profile): 3 unless the cause is memory (1) or the caller
 * (2). A missing or unreadable input is invalid input data. */
int miser_cli_exit_for_input(int status);

struct miser_tokenizer;
/* The one prompt check of generate, bench and compare: strict UTF-8, then
 * encode, at least one token, at most the model's context (n_ctx), every id
 * inside the vocabulary (n_vocab). `what` names the input in messages
 * ("--prompt", "--prompt2", "the prompt on stdin"). Returns 0 with the ids
 * (miser_free) or an exit code (3 for the prompt), the line printed. */
int miser_cli_prompt_ids(const char *cmd, const char *what, const struct miser_tokenizer *tok, int64_t n_ctx,
                         int64_t n_vocab, const char *text, size_t len, unsigned flags, int32_t **ids, size_t *n);
/* 1 when s[0..n) is strict UTF-8 (shortest form, no surrogates). */
int miser_cli_utf8_valid(const unsigned char *s, size_t n);
/* Write s as a JSON string literal; invalid UTF-8 becomes U+FFFD and
 * *valid (may be NULL) is cleared. */
void miser_cli_json_string(FILE *f, const unsigned char *s, size_t n, int *valid);
/* Parse a whole decimal integer / float option value; 0 on success. */
int miser_cli_parse_i64(const char *s, long long lo, long long hi, long long *out);
int miser_cli_parse_f32(const char *s, float lo, float hi, float *out);

struct option;
/* getopt_long's error cases: ':' (an option without its value) and anything
 * else unexpected ('?', an unknown option). Prints one line; returns
 * MISER_EXIT_USAGE. */
int miser_cli_option_error(const char *cmd, int c, char **argv);
/* A value that did not parse for the long option opts[li] (li < 0: unknown). */
int miser_cli_value_error(const char *cmd, const struct option *opts, int li, const char *value);

/* --memory-budget SIZE of generate and bench (cmd_plan.c, budget.h): with
 * have_prec, refuse (exit 3, one line: needed MB by part and the budget) a
 * configuration predicted not to fit; without, pick the widest precision
 * (then the longest context up to want_ctx) that fits into *prec (-1: the
 * checkpoint as stored, no conversion) and say so on stderr. *ctx_cap: the KV positions to allocate (per sequence, of
 * `parallel` sequences run by `engine`, a miser_budget_engine: generate, or serve's batch / slots). --allow-paging:
 * run past the budget when only the file-backed weights overflow it.
 * Returns 0 to go on, else the exit code (line printed). */
int miser_cli_budget_check(const char *cmd, const char *model_dir, const char *budget_s, int allow_paging,
                           int have_prec, int *prec, int64_t want_ctx, int parallel, int engine, int threads,
                           int kv_f16, int64_t *ctx_cap);

/* Default worker threads: the CPUs this process may run on. */
int miser_cli_default_threads(void);

#endif
