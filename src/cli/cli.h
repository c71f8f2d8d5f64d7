/* Shared pieces of the miser command-line tool: subcommand registration,
 * exit codes and small helpers. Only the CLI (never the library) exits. */
#ifndef MISER_CLI_H
#define MISER_CLI_H

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

#endif
