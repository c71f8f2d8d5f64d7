/* Suite `cli`: bad input to every command of the built `miser` binary is
 * refused before any work, the same way everywhere (issue 13): the exit
 * code of the README's table, exactly one line on stderr naming the option
 * or the file, and no output file (or temporary file) left behind. Inputs
 * are tests/data/hf-tiny-a and small temporary copies of it (a truncated
 * model.safetensors, a config.json that lies about n_layer, config fields
 * miser does not implement). The contract is the README's, not miser's own
 * output: each case failed on the code before issue 13.
 *
 * MISER_TEST_CLI_BIN=PATH runs the suite against another binary (used to
 * check that each case fails on an older build). */
#include <criterion/criterion.h>

#include "support.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TINY MISER_SOURCE_DIR "/tests/data/hf-tiny-a"

static char g_tmp[64];
static char g_err[128];

static const char *bin(void)
{
    const char *b = getenv("MISER_TEST_CLI_BIN");
    return b && *b ? b : MISER_BUILD_DIR "/miser";
}

static void setup(void)
{
    strcpy(g_tmp, "/tmp/miser-test-cli-XXXXXX");
    cr_assert(mkdtemp(g_tmp));
    snprintf(g_err, sizeof g_err, "%s/stderr.txt", g_tmp);
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", g_tmp);
}

/* Run `miser ARGS` through sh (stdout to /dev/null unless ARGS redirects
 * it; stderr to g_err); its exit code, or 128 + signal. */
static int miser(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int miser(const char *fmt, ...)
{
    char args[3072], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' %s 2>'%s' </dev/null%s", bin(), args, g_err,
             strstr(args, ">") ? "" : " >/dev/null");
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* stderr of the last run is exactly one line and contains each of the
 * given strings. */
static void one_line_naming(const char *a, const char *b)
{
    size_t n = 0;
    char *e = test_read_file(g_err, &n);
    cr_assert(e, "no stderr file");
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += e[i] == '\n';
    cr_assert(lines == 1 && n > 0 && e[n - 1] == '\n', "expected one line on stderr, got %d:\n%s", lines, e);
    cr_assert(!a || strstr(e, a), "stderr does not name '%s': %s", a, e);
    cr_assert(!b || strstr(e, b), "stderr does not name '%s': %s", b, e);
    free(e);
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* No file in dir but the ones named (NULL-terminated), and no temporary
 * ".tmp." file at all. */
static void only_files(const char *dir, ...)
{
    DIR *d = opendir(dir);
    cr_assert(d, "cannot open %s", dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        int ok = 0;
        va_list ap;
        va_start(ap, dir);
        for (const char *n; (n = va_arg(ap, const char *));) ok |= !strcmp(n, e->d_name);
        va_end(ap);
        cr_assert(ok, "%s/%s was left behind", dir, e->d_name);
    }
    closedir(d);
}

static void write_file(const char *path, const char *text, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(text, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

/* g_tmp/NAME: a copy of hf-tiny-a whose config.json has `from` replaced by
 * `to` (the weights are a symlink to the original). */
static const char *tiny_variant(const char *name, const char *from, const char *to)
{
    static char dir[128];
    char path[256], target[256];
    snprintf(dir, sizeof dir, "%s/%s", g_tmp, name);
    cr_assert_eq(mkdir(dir, 0755), 0);
    size_t n;
    char *cfg = test_read_file(TINY "/config.json", &n);
    cr_assert(cfg);
    char *at = strstr(cfg, from);
    cr_assert(at, "config.json has no '%s'", from);
    char *out = malloc(n + strlen(to) + 1);
    size_t pre = (size_t)(at - cfg);
    memcpy(out, cfg, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, out, strlen(out));
    free(out);
    free(cfg);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(target, sizeof target, "%s/model.safetensors", TINY);
    cr_assert_eq(symlink(target, path), 0);
    return dir;
}

/* g_tmp/trunc: hf-tiny-a with model.safetensors cut to 100 000 bytes (its
 * header promises 13 MB of data). */
static const char *tiny_truncated(void)
{
    static char dir[128];
    char path[256];
    snprintf(dir, sizeof dir, "%s/trunc", g_tmp);
    cr_assert_eq(mkdir(dir, 0755), 0);
    size_t n = 0;
    char *t = test_read_file(TINY "/config.json", &n);
    cr_assert(t);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, t, n);
    free(t);
    t = test_read_file(TINY "/model.safetensors", &n);
    cr_assert(t && n > 100000);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_file(path, t, 100000);
    free(t);
    return dir;
}

/* g_tmp/afile: a regular file, so afile/x can never be created (even by
 * root, who may write anywhere else). */
static const char *not_a_dir(void)
{
    static char p[128];
    snprintf(p, sizeof p, "%s/afile", g_tmp);
    write_file(p, "x", 1);
    return p;
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 60);

/* ---- generate ---- */

Test(cli, generate_max_new_tokens_zero_is_an_error)
{
    cr_assert_eq(miser("generate --model %s --prompt Hi --max-new-tokens 0", TINY), 2);
    one_line_naming("--max-new-tokens", NULL);
}

Test(cli, generate_says_it_stopped_at_the_context)
{
    /* 200 new tokens asked, 128 positions: the stop is said on stderr */
    char out[128];
    snprintf(out, sizeof out, "%s/out.json", g_tmp);
    cr_assert_eq(miser("generate --model %s --prompt Hi --max-new-tokens 200 --ignore-eos --json > %s", TINY, out), 0);
    one_line_naming("context", "128");
    char *j = test_read_file(out, NULL);
    cr_assert(j && strstr(j, "\"stop_reason\":\"capacity\""), "%s", j);
    free(j);
    /* within the context: nothing on stderr */
    cr_assert_eq(miser("generate --model %s --prompt Hi --max-new-tokens 5", TINY), 0);
    size_t n;
    free(test_read_file(g_err, &n));
    cr_assert_eq(n, 0);
}

Test(cli, generate_max_length_without_room)
{
    /* "Hello world" is 2 tokens: --max-length 2 leaves none to generate */
    cr_assert_eq(miser("generate --model %s --prompt 'Hello world' --max-length 2", TINY), 3);
    one_line_naming("--max-length", NULL);
}

Test(cli, generate_missing_model_is_input_data)
{
    cr_assert_eq(miser("generate --model %s/none --prompt Hi", g_tmp), 3);
    one_line_naming("/none", NULL);
}

Test(cli, generate_refuses_config_fields_it_does_not_implement)
{
    /* each changes the computation; miser does not implement it */
    static const struct { const char *from, *to, *names; } v[] = {
        {"\"gelu_new\"", "\"relu\"", "relu"},
        {"\"gelu_new\"", "\"gelu\"", "activation_function"},
        {"\"scale_attn_by_inverse_layer_idx\": false", "\"scale_attn_by_inverse_layer_idx\": true",
         "scale_attn_by_inverse_layer_idx"},
        {"\"reorder_and_upcast_attn\": false", "\"reorder_and_upcast_attn\": true", "reorder_and_upcast_attn"},
        {"\"scale_attn_weights\": true", "\"scale_attn_weights\": false", "scale_attn_weights"},
        {"\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false", "tie_word_embeddings"},
        {"\"model_type\": \"gpt2\"", "\"model_type\": \"gptj\"", "gptj"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "v%zu", i);
        const char *dir = tiny_variant(name, v[i].from, v[i].to);
        cr_assert_eq(miser("generate --model %s --prompt Hi --max-new-tokens 2", dir), 3, "%s", v[i].to);
        one_line_naming("config.json", v[i].names);
    }
    /* the tanh GELU under its other names is the same function: accepted */
    const char *dir = tiny_variant("tanh", "\"gelu_new\"", "\"gelu_pytorch_tanh\"");
    cr_assert_eq(miser("generate --model %s --prompt Hi --max-new-tokens 2", dir), 0);
}

/* ---- tokenize, detokenize ---- */

Test(cli, tokenize_and_detokenize_missing_model)
{
    cr_assert_eq(miser("tokenize --model %s/none hi", g_tmp), 3);
    one_line_naming("/none", NULL);
    cr_assert_eq(miser("detokenize --model %s/none 15496", g_tmp), 3);
    one_line_naming("/none", NULL);
}

/* ---- inspect ---- */

Test(cli, inspect_checks_dump_paths_first)
{
    const char *f = not_a_dir();
    /* --dump-after would be written after compiling: refused before */
    cr_assert_eq(miser("inspect --model %s --dump-after %s/x.txt", TINY, f), 2);
    one_line_naming("--dump-after", "afile/x.txt");
    cr_assert_eq(miser("inspect --model %s --dump-before %s", TINY, g_tmp), 2);
    one_line_naming("--dump-before", "directory");
    /* a FIFO (like /dev/full or /dev/stdout) would be replaced by the
     * atomic writer's rename, not written to */
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s/fifo", g_tmp);
    cr_assert_eq(mkfifo(fifo, 0644), 0);
    cr_assert_eq(miser("inspect --model %s --dump-after %s", TINY, fifo), 2);
    one_line_naming("--dump-after", "not a regular file");
    struct stat sb;
    cr_assert(stat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode), "the FIFO was replaced");
    cr_assert_eq(miser("inspect --model %s --max-context 100000", TINY), 2);
    one_line_naming("--max-context", NULL);
    cr_assert_eq(miser("inspect --model %s/none", g_tmp), 3);
    one_line_naming("/none", NULL);
}

/* ---- synth ---- */

Test(cli, synth_creates_missing_parents)
{
    char dir[128], p[192];
    snprintf(dir, sizeof dir, "%s/a/b/c", g_tmp);
    cr_assert_eq(miser("synth --out %s --quiet", dir), 0);
    snprintf(p, sizeof p, "%s/config.json", dir);
    cr_assert(exists(p));
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    cr_assert(exists(p));
    /* a path that cannot be made */
    const char *f = not_a_dir();
    cr_assert_eq(miser("synth --out %s/x --quiet", f), 2);
    one_line_naming("--out", "afile/x");
    /* a bad shape leaves none of the folders it would have made */
    snprintf(dir, sizeof dir, "%s/n/m", g_tmp);
    cr_assert_eq(miser("synth --out %s --heads 3 --quiet", dir), 2);
    snprintf(p, sizeof p, "%s/n", g_tmp);
    cr_assert(!exists(p), "%s was left behind", p);
}

/* A temporary file of the writer in dir, with at least min bytes. */
static int tmp_file_in(const char *dir, off_t min)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    char p[512];
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) {
            struct stat sb;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (stat(p, &sb) == 0 && sb.st_size >= min) found = 1;
        }
    closedir(d);
    return found;
}

Test(cli, synth_interrupted_removes_its_temporary_file)
{
    static const int sigs[] = {SIGINT, SIGTERM};
    for (int k = 0; k < 2; k++) {
        char dir[128];
        snprintf(dir, sizeof dir, "%s/s%d", g_tmp, k);
        cr_assert_eq(mkdir(dir, 0755), 0);
        /* about 100 MB of f32: long enough to be caught mid-write */
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
            execl(bin(), bin(), "synth", "--out", dir, "--layers", "8", "--embd", "512", "--vocab", "1000",
                  "--quiet", (char *)NULL);
            _exit(127);
        }
        /* wait until the temporary file holds data (the writer is inside
         * the loop over tensors), then interrupt */
        struct timespec ms = {0, 1000000};
        for (int i = 0; i < 20000 && !tmp_file_in(dir, 1 << 20); i++) nanosleep(&ms, NULL);
        cr_assert(tmp_file_in(dir, 1 << 20), "no temporary file appeared in %s", dir);
        cr_assert_eq(kill(pid, sigs[k]), 0);
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == sigs[k], "synth was not killed by signal %d (status %d)",
                  sigs[k], st);
        only_files(dir, NULL);
    }
}

/* ---- bench ---- */

Test(cli, bench_refuses_an_invalid_prompt_before_any_run)
{
    char json[128];
    snprintf(json, sizeof json, "%s/b.json", g_tmp);
    cr_assert_eq(miser("bench --model %s --runs 1 --prompt \"$(printf '\\377')\" --json %s", TINY, json), 3);
    one_line_naming("--prompt", "UTF-8");
    cr_assert_eq(miser("bench --model %s --runs 1 --prompt2 '' --json %s", TINY, json), 3);
    one_line_naming("--prompt2", "empty");
    cr_assert_eq(miser("bench --model %s --runs 1 --max-length 1000 --json %s", TINY, json), 2);
    one_line_naming("--max-length", "128");
    only_files(g_tmp, "stderr.txt", NULL);
}

Test(cli, bench_checks_output_paths_before_any_run)
{
    const char *f = not_a_dir();
    char out[128];
    snprintf(out, sizeof out, "%s/stdout.txt", g_tmp);
    cr_assert_eq(miser("bench --model %s --runs 1 --svg %s/x.svg > %s", TINY, f, out), 2);
    one_line_naming("--svg", "afile/x.svg");
    char *o = test_read_file(out, NULL);
    cr_assert(o && !strstr(o, "run 1"), "a run began: %s", o);
    free(o);
    cr_assert_eq(miser("bench --model %s --soak 2 --json %s/x.json", TINY, f), 2);
    one_line_naming("--json", NULL);
}

Test(cli, bench_refuses_a_bad_checkpoint_before_any_run)
{
    char json[128];
    snprintf(json, sizeof json, "%s/b.json", g_tmp);
    cr_assert_eq(miser("bench --model %s --runs 1 --json %s", tiny_truncated(), json), 3);
    one_line_naming("model.safetensors", NULL);
    /* a config that lies: three layers, the file holds two */
    cr_assert_eq(miser("bench --model %s --runs 1 --json %s", tiny_variant("lie", "\"n_layer\": 2", "\"n_layer\": 3"),
                       json),
                 3);
    one_line_naming("h.2.", NULL);
    cr_assert(!exists(json), "a report was written");
}

/* ---- compare ---- */

Test(cli, compare_refuses_a_bad_checkpoint_before_any_run)
{
    char rep[128];
    snprintf(rep, sizeof rep, "%s/rep", g_tmp);
    cr_assert_eq(miser("compare --model %s --runs 1 --runtimes miser --out %s", tiny_truncated(), rep), 3);
    one_line_naming("model.safetensors", NULL);
    cr_assert(!exists(rep), "the report folder was made");
    cr_assert_eq(miser("compare --model %s --runs 1 --runtimes miser --prompt2 \"$(printf 'a\\300')\" --out %s", TINY, rep), 3);
    one_line_naming("--prompt2", "UTF-8");
    cr_assert(!exists(rep), "the report folder was made");
}

Test(cli, compare_checks_out_and_peers_dir_first)
{
    const char *f = not_a_dir();
    char rep[128];
    snprintf(rep, sizeof rep, "%s/rep", g_tmp);
    cr_assert_eq(miser("compare --model %s --runs 1 --runtimes miser --out %s/x", TINY, f), 2);
    one_line_naming("--out", "afile/x");
    /* a wrong folder is said to be wrong, not "PyTorch is not installed" */
    cr_assert_eq(miser("compare --model %s --runs 1 --runtimes miser,pytorch --peers-dir %s/none --out %s", TINY,
                       g_tmp, rep),
                 2);
    one_line_naming("--peers-dir", "/none");
    cr_assert_eq(miser("compare --model %s --runs 1 --runtimes miser,pytorch --peers-dir %s --out %s", TINY, g_tmp,
                       rep),
                 2);
    one_line_naming("--peers-dir", "peers folder");
    cr_assert(!exists(rep), "the report folder was made");
}

/* ---- help ---- */

Test(cli, help_cmd_prints_that_commands_help)
{
    char out[128];
    snprintf(out, sizeof out, "%s/help.txt", g_tmp);
    static const char *cmds[] = {"generate", "tokenize", "detokenize", "inspect", "synth", "bench", "compare",
                                 "profile", "check"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        cr_assert_eq(miser("help %s > %s", cmds[i], out), 0, "%s", cmds[i]);
        char *t = test_read_file(out, NULL), want[64];
        snprintf(want, sizeof want, "usage: miser %s", cmds[i]);
        cr_assert(t && !strncmp(t, want, strlen(want)), "miser help %s printed: %.200s", cmds[i], t);
        free(t);
    }
    cr_assert_eq(miser("help nosuch"), 2);
    one_line_naming("nosuch", NULL);
}

/* ---- stdout that cannot be written: exit 1 for every command ---- */

Test(cli, stdout_failure_is_exit_1_for_every_command)
{
    static const char *runs[] = {
        "tokenize Hello",
        "detokenize 15496",
        "generate --model " TINY " --prompt Hi --max-new-tokens 2 --json",
        "inspect --model " TINY,
        "bench --model " TINY " --soak 1",
        "check --help",
        "profile --help",
        "synth --help",
        "compare --help",
        "help generate",
        "--help",
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        cr_assert_eq(miser("%s > /dev/full", runs[i]), 1, "miser %s > /dev/full", runs[i]);
        one_line_naming("stdout", NULL);
    }
}
