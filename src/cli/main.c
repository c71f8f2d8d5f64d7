/* miser command-line entry point: dispatches to self-registered subcommands
 * (`miser CMD ...`, `miser help CMD`), and checks once, for every command,
 * that what it wrote to stdout got there. */
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
    if (cmd && *cmd) fprintf(stderr, "miser %s: ", cmd);
    else fputs("miser: ", stderr);
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
            "Memory-frugal language-model inference (GPT-2, Llama family; safetensors, GGUF)\n"
            "and a lifecycle memory profiler.\n"
            "\n"
            "commands:\n");
    for (int i = 0; i < g_ncmds; i++) fprintf(f, "  %-12s %s\n", g_cmds[i]->name, g_cmds[i]->summary);
    fprintf(f,
            "\n"
            "Run `miser <command> --help` or `miser help <command>` for a command's options.\n"
            "\n"
            "exit codes: 0 success, 1 runtime failure, 2 bad command line,\n"
            "            3 invalid input data, 4 regression found by `miser check`;\n"
            "            `miser profile` returns the child's status (128+N if killed by signal N);\n"
            "            output that cannot be written to stdout turns a success into 1.\n");
}

static const miser_cli_command *find(const char *name)
{
    for (int i = 0; i < g_ncmds; i++)
        if (!strcmp(name, g_cmds[i]->name)) return g_cmds[i];
    return NULL;
}

/* `miser help [CMD]` */
static int help(int argc, char **argv)
{
    if (argc < 3) {
        usage(stdout);
        return MISER_EXIT_OK;
    }
    if (argc > 3) {
        fprintf(stderr, "miser help: give one command (miser help CMD)\n");
        return MISER_EXIT_USAGE;
    }
    const miser_cli_command *c = find(argv[2]);
    if (!c) {
        fprintf(stderr, "miser help: unknown command '%s' (see `miser --help`)\n", argv[2]);
        return MISER_EXIT_USAGE;
    }
    char *hargv[] = {(char *)c->name, "--help", NULL};
    return c->run(2, hargv);
}

static int dispatch(int argc, char **argv, const char **name)
{
    *name = argc > 1 ? argv[1] : "";
    if (argc < 2) {
        usage(stderr);
        return MISER_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return MISER_EXIT_OK;
    }
    if (!strcmp(argv[1], "help")) return help(argc, argv);
    if (!strcmp(argv[1], "--version")) {
        printf("miser %s\n", MISER_VERSION_STRING);
        return MISER_EXIT_OK;
    }
    const miser_cli_command *c = find(argv[1]);
    if (c) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "miser: unknown command '%s' (see `miser --help`)\n", argv[1]);
    return MISER_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    qsort(g_cmds, (size_t)g_ncmds, sizeof g_cmds[0], cmp_cmd);
    const char *name;
    int rc = dispatch(argc, argv, &name);
    /* One place for every command: output that did not reach stdout is a
     * failure (exit 1), unless the command already failed with its own code. */
    const miser_cli_command *c = find(name);
    int frc = miser_cli_close_stdout(c ? c->name : *name == '-' || !*name ? "" : name);
    return rc ? rc : frc;
}
