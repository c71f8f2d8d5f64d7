/* `miser synth`: write a synthetic GPT-2 checkpoint (config.json +
 * model.safetensors) with deterministic random weights, for benchmarks and
 * tests that need a model of a given shape without downloading one. */
#include "cli.h"
#include "miser/safetensors.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void synth_usage(FILE *f)
{
    fprintf(f,
            "usage: miser synth --out DIR [--shape tiny|small|medium|large]\n"
            "                   [--layers N] [--embd C] [--heads H] [--vocab V] [--ctx N] [--inner N]\n"
            "                   [--dtype f32|f16|bf16] [--seed S] [--quiet]\n"
            "       miser synth --arch llama --out DIR [--shape tiny|smollm2-360m] [--kv-heads N] [...]\n"
            "\n"
            "Write a GPT-2 checkpoint with deterministic synthetic weights into DIR\n"
            "(created with its parents if missing): model.safetensors, then config.json. The shape\n"
            "defaults to tiny (2 layers, n_embd 64, 4 heads, vocab 50257, ctx 128);\n"
            "--layers/--embd/--heads/--vocab/--ctx/--inner override it. Files are\n"
            "written under temporary names and renamed when complete; interrupted\n"
            "(SIGINT, SIGTERM, SIGHUP), synth removes its temporary file and dies of\n"
            "that signal. Progress goes to stderr for checkpoints over 64 MB unless --quiet.\n"
            "\n"
            "--arch llama writes a LlamaForCausalLM checkpoint instead (Hugging Face\n"
            "key names, tied embeddings): shape tiny (2 layers, hidden 64, 4 heads,\n"
            "2 KV heads, MLP 160, vocab 512, ctx 256) or smollm2-360m (32 layers,\n"
            "hidden 960, 15 heads, 5 KV heads, MLP 2560, vocab 49152); --embd is\n"
            "the hidden size, --inner the MLP width, --kv-heads the KV heads.\n"
            "\n"
            "exit codes: 0 ok, 1 failure (a write failed), 2 bad options (also a --out that\n"
            "            cannot be created or written).\n");
}

typedef struct {
    double t0;
    int last_pct;
} progress_state;


static void progress(void *user, uint64_t done, uint64_t total)
{
    progress_state *p = user;
    int pct = total ? (int)(done * 100 / total) : 100;
    if (pct == p->last_pct) return;
    p->last_pct = pct;
    fprintf(stderr, "\rmiser synth: %3d%% (%llu / %llu MB, %.1f s)", pct, (unsigned long long)(done >> 20),
            (unsigned long long)(total >> 20), miser_now_s() - p->t0);
    if (done == total) fputc('\n', stderr);
}

/* ---- removing the temporary file on SIGINT / SIGTERM / SIGHUP ----
 * The writer (src/model/st_writer.c) creates DIR/model.safetensors.tmp.XXXXXX
 * and DIR/config.json.tmp.XXXXXX and holds them open while it writes. The
 * handler finds them among this process's open files (/proc/self/fd, with
 * readlink and unlink only: both async-signal-safe), unlinks them, and
 * removes the folders this run made (g_made: the real path of the topmost,
 * "" when none; rmdir is async-signal-safe too), and dies of the same
 * signal. g_dir is the real path of DIR plus '/'; both are set before the
 * handler is installed. */
static char g_dir[4096], g_made[4096];
static size_t g_dir_len;

static int starts(const char *s, const char *p)
{
    while (*p)
        if (*s++ != *p++) return 0;
    return 1;
}

static void on_signal(int sig)
{
    char link[64] = "/proc/self/fd/", target[4200];
    for (int fd = 3; fd < 1024; fd++) {
        char num[12];
        int k = 0;
        for (int v = fd; v; v /= 10) num[k++] = (char)('0' + v % 10);
        int o = 14;
        while (k) link[o++] = num[--k];
        link[o] = 0;
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= (ssize_t)g_dir_len) continue;
        target[n] = 0;
        if (!starts(target, g_dir)) continue;
        const char *base = target + g_dir_len;
        if (starts(base, "model.safetensors.tmp.") || starts(base, "config.json.tmp.")) unlink(target);
    }
    size_t made_len = 0;
    while (g_made[made_len]) made_len++;
    if (made_len) {
        char d[4096];
        size_t l = g_dir_len - 1;
        for (size_t i = 0; i < l; i++) d[i] = g_dir[i];
        d[l] = 0;
        while (l >= made_len && rmdir(d) == 0) {
            while (l > 0 && d[l] != '/') l--;
            d[l] = 0;
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0) return -1;
    *out = v;
    return 0;
}

static int cmd_synth(int argc, char **argv)
{
    const char *out = NULL, *shape = "tiny";
    int64_t layers = 0, embd = 0, heads = 0, vocab = 0, ctx = 0, inner = 0, seed = 0, kv_heads = 0;
    const char *arch = "gpt2";
    miser_dtype dtype = MISER_DTYPE_F32;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            synth_usage(stdout);
            return MISER_EXIT_OK;
        }
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (i + 1 >= argc) {
            miser_cli_error("synth", "%s needs a value (see --help)", a);
            return MISER_EXIT_USAGE;
        }
        const char *v = argv[++i];
        int64_t *num = !strcmp(a, "--layers") ? &layers
                       : !strcmp(a, "--embd")  ? &embd
                       : !strcmp(a, "--heads") ? &heads
                       : !strcmp(a, "--vocab") ? &vocab
                       : !strcmp(a, "--ctx")   ? &ctx
                       : !strcmp(a, "--inner") ? &inner
                       : !strcmp(a, "--seed")  ? &seed
                       : !strcmp(a, "--kv-heads") ? &kv_heads
                                               : NULL;
        if (num) {
            if (parse_i64(v, num) || (num != &seed && *num == 0)) {
                miser_cli_error("synth", "%s: '%s' is not a positive integer", a, v);
                return MISER_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--out")) {
            out = v;
        } else if (!strcmp(a, "--shape")) {
            shape = v;
        } else if (!strcmp(a, "--arch")) {
            if (strcmp(v, "gpt2") && strcmp(v, "llama")) {
                miser_cli_error("synth", "--arch: '%s' is not gpt2 or llama", v);
                return MISER_EXIT_USAGE;
            }
            arch = v;
        } else if (!strcmp(a, "--dtype")) {
            if (miser_dtype_parse(v, &dtype) ||
                (dtype != MISER_DTYPE_F32 && dtype != MISER_DTYPE_F16 && dtype != MISER_DTYPE_BF16)) {
                miser_cli_error("synth", "--dtype: '%s' is not f32, f16 or bf16", v);
                return MISER_EXIT_USAGE;
            }
        } else {
            miser_cli_error("synth", "unknown option '%s' (see --help)", a);
            return MISER_EXIT_USAGE;
        }
    }
    if (!out) {
        miser_cli_error("synth", "--out DIR is required (see --help)");
        return MISER_EXIT_USAGE;
    }
    const int llama = !strcmp(arch, "llama");
    if (kv_heads && !llama) {
        miser_cli_error("synth", "--kv-heads needs --arch llama");
        return MISER_EXIT_USAGE;
    }
    miser_gpt2_config cfg;
    if (llama ? miser_llama_preset(shape, &cfg) : miser_gpt2_preset(shape, &cfg)) {
        miser_cli_error("synth", "%s", miser_error_message());
        return MISER_EXIT_USAGE;
    }
    if (layers) cfg.n_layer = layers;
    if (heads) cfg.n_head = heads;
    if (vocab) cfg.n_vocab = vocab;
    if (ctx) cfg.n_ctx = ctx;
    if (embd) cfg.n_embd = embd;
    if (llama) {
        if (inner) cfg.n_inner = inner;
        if (kv_heads) cfg.n_kv_head = kv_heads;
        if (heads && !kv_heads) cfg.n_kv_head = heads;
        if (heads || embd) cfg.head_dim = cfg.n_head ? cfg.n_embd / cfg.n_head : 0;
    } else
        cfg.n_inner = inner ? inner : 4 * cfg.n_embd;
    if (cfg.eos_token_id >= cfg.n_vocab) cfg.eos_token_id = -1; /* a small test vocabulary has no <|endoftext|> */

    progress_state ps = {miser_now_s(), -1};
    uint64_t approx = (uint64_t)(cfg.n_vocab + cfg.n_ctx) * (uint64_t)cfg.n_embd +
                      (uint64_t)cfg.n_layer * (uint64_t)(4 * cfg.n_embd * cfg.n_embd + 2 * cfg.n_embd * cfg.n_inner);
    miser_synth_options o = {.dtype = dtype, .seed = (uint64_t)seed};
    if (!quiet && approx * miser_dtype_bytes(dtype, 1) > (64u << 20)) {
        o.progress = progress;
        o.progress_user = &ps;
    }
    /* DIR and its parents are made here (the writer makes only DIR), after
     * the path was checked; a failed write removes the folders made. */
    int rc = miser_cli_check_output_dir("synth", "out", out);
    if (rc) return rc;
    char made[4096];
    if (miser_cli_mkdirs(out, made, sizeof made) || !realpath(out, g_dir) || strlen(g_dir) + 2 > sizeof g_dir) {
        miser_cli_error("synth", "cannot write --out %s: %s", out, strerror(errno));
        miser_cli_rmdirs(out, made);
        return MISER_EXIT_USAGE;
    }
    strcat(g_dir, "/");
    g_dir_len = strlen(g_dir);
    if (!made[0] || !realpath(made, g_made)) g_made[0] = 0;
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa = {.sa_handler = on_signal}, old[3];
    sigemptyset(&sa.sa_mask);
    for (int k = 0; k < 3; k++) sigaddset(&sa.sa_mask, sigs[k]);
    for (int k = 0; k < 3; k++) sigaction(sigs[k], &sa, &old[k]);
    miser_status st = llama ? miser_synth_llama(out, &cfg, &o) : miser_synth_gpt2(out, &cfg, &o);
    for (int k = 0; k < 3; k++) sigaction(sigs[k], &old[k], NULL);
    if (st) {
        if (o.progress && ps.last_pct >= 0) fputc('\n', stderr);
        miser_cli_error("synth", "%s", miser_error_message());
        miser_cli_rmdirs(out, made);
        return st == MISER_ERR_INVALID ? MISER_EXIT_USAGE : miser_cli_exit_for_status(st);
    }
    return MISER_EXIT_OK;
}

MISER_CLI_COMMAND(synth, "synth", "write a synthetic GPT-2 or Llama checkpoint (deterministic random weights)", cmd_synth)
