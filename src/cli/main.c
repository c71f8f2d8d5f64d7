/* miser command-line entry point: dispatches to self-registered subcommands. */
#include "cli.h"
#include "miser/core.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COMMANDS 32
static const miser_cli_command *g_cmds[MAX_COMMANDS];
static int g_ncmds;

void miser_cli_register(const miser_cli_command *cmd)
{
    if (g_ncmds < MAX_COMMANDS) g_cmds[g_ncmds++] = cmd;
}

void miser_cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "miser %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int miser_cli_exit_for_status(int st)
{
    switch ((miser_status)st) {
    case MISER_OK: return MISER_EXIT_OK;
    case MISER_ERR_FORMAT: case MISER_ERR_RANGE: case MISER_ERR_UNSUPPORTED: return MISER_EXIT_DATA;
    case MISER_ERR_INVALID: return MISER_EXIT_USAGE;
    default: return MISER_EXIT_FAIL;
    }
}

static int cmp_cmd(const void *a, const void *b)
{
    return strcmp((*(const miser_cli_command *const *)a)->name, (*(const miser_cli_command *const *)b)->name);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: miser <command> [options]\n"
            "\n"
            "Memory-frugal GPT-2 inference and a lifecycle memory profiler.\n"
            "\n"
            "commands:\n");
    for (int i = 0; i < g_ncmds; i++) fprintf(f, "  %-12s %s\n", g_cmds[i]->name, g_cmds[i]->summary);
    fprintf(f,
            "\n"
            "Run `miser <command> --help` for a command's options.\n"
            "\n"
            "exit codes: 0 success, 1 runtime failure, 2 bad command line,\n"
            "            3 invalid input data, 4 regression found by `miser check`;\n"
            "            `miser profile` returns the child's status (128+N if killed by signal N).\n");
}

int main(int argc, char **argv)
{
    qsort(g_cmds, (size_t)g_ncmds, sizeof g_cmds[0], cmp_cmd);
    if (argc < 2) {
        usage(stderr);
        return MISER_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return MISER_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("miser %s\n", MISER_VERSION_STRING);
        return MISER_EXIT_OK;
    }
    for (int i = 0; i < g_ncmds; i++)
        if (!strcmp(argv[1], g_cmds[i]->name)) return g_cmds[i]->run(argc - 1, argv + 1);
    fprintf(stderr, "miser: unknown command '%s' (see `miser --help`)\n", argv[1]);
    return MISER_EXIT_USAGE;
}
