/* `miser bench`: the study's scenario (prompt "Hello" then "Test", greedy,
 * max_length 10, six stages) on miser, each run a fresh child process of this
 * binary under the in-process profiler; the parent aggregates medians and
 * spread and writes the reports. `--soak N` instead generates N times in one
 * process and reports memory drift per iteration.
 *
 * Without --model it uses a GPT-2 medium-shaped checkpoint of deterministic
 * synthetic weights, written once as a real safetensors file to a cache
 * directory, and labels every result as synthetic.
 *
 * Where compile sits: miser compiles its plan and creates the session between
 * 1_MODEL_LOADED and 2_BEFORE_INFERENCE (compile_s= is stage 2's data), as the
 * ONNX Runtime and llama.cpp adapters do their session/context set-up before
 * stage 2. The study's compilation_mb (rss(3) - rss(2)) therefore measures
 * miser's first-inference growth only; the compile's own memory is setup_mb
 * (rss(2) - rss(1)) and the exact peak of that interval. docs/bench.md. */
#include "bench_cli.h"
#include "cli.h"
#include "miser/budget.h"
#include "miser/alloc.h"
#include "miser/bench.h"
#include "miser/model.h"
#include "miser/precision.h"
#include "miser/profiler.h"
#include "miser/runtime.h"
#include "miser/safetensors.h"
#include "miser/tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *stage_names[6][2] = {
    {"0_INITIAL", "Initial state"},
    {"1_MODEL_LOADED", "After loading model"},
    {"2_BEFORE_INFERENCE", "Before first inference"},
    {"3_FIRST_INFERENCE", "After first inference"},
    {"4_SECOND_INFERENCE", "After second inference"},
    {"5_FINAL", "Final state"},
};


static void usage(FILE *f)
{
    fprintf(f,
            "usage: miser bench [--model DIR] [options]\n"
            "\n"
            "Run the memory study's scenario on miser: load, generate \"Hello\" then \"Test\" greedily\n"
            "with max_length 10, marking the six stages (0_INITIAL .. 5_FINAL) in the study's line\n"
            "format, each run in a fresh process; then print the study's metrics and the corrected\n"
            "ones (time to first token, decode tokens/s excluding the prompt, compile time, anon vs\n"
            "file memory) as medians with min-max over runs.\n"
            "\n"
            "Without --model: a GPT-2 medium-shaped checkpoint of deterministic SYNTHETIC weights,\n"
            "written once (about 1.4 GB) to $MISER_CACHE_DIR/synthetic-gpt2-medium-f32-seed0\n"
            "(default ~/.cache/miser/...). Results on it are labelled synthetic.\n"
            "\n"
            "options:\n"
            "  --model DIR         a real checkpoint directory\n"
            "  --runs N            fresh-process runs (default 3)\n"
            "  --prompt TEXT       first prompt (default \"Hello\")\n"
            "  --prompt2 TEXT      second prompt (default \"Test\")\n"
            "  --max-length N      total length counting the prompt (default 10)\n"
            "  --pipeline NAME     default or naive (default: default)\n"
            "  --threads N         worker threads (default: the CPUs available)\n"
            "  --precision P       run the matrices in P (f32, f16, bf16, q8_0, q4_0, q4_k), converted once\n"
            "                      into the precision cache before the runs, as `miser generate --precision`\n"
            "                      (default: as stored); `miser compare` runs one row per precision with it\n"
            "  --json PATH         write the aggregate (medians, spread, runs) as JSON\n"
            "  --md PATH           write a Markdown report\n"
            "  --svg PATH          write the charts (peak memory, times, stage timeline)\n"
            "  --html PATH         write the HTML report (the Markdown report's content with the charts)\n"
            "  --memory-budget SIZE  refuse (exit 3) when the predicted peak RSS exceeds SIZE (see `miser plan`)\n"
            "  --allow-paging      run anyway when only the file-backed weights exceed it\n"
            "  --soak N            generate N times in one process and report memory drift\n"
            "                      per iteration (with --json: written there)\n"
            "  -h, --help          this help\n"
            "\n"
            "Output paths, the checkpoint and the prompts are checked before the first run, as\n"
            "`miser generate` checks them; reports are written only when a run completed.\n"
            "\n"
            "exit codes: 0 ok, 1 a run failed (also: stdout could not be written), 2 bad options\n"
            "            (an output path that cannot be written, --max-length past the model's\n"
            "            context), 3 bad model or prompt (missing, unreadable or invalid checkpoint;\n"
            "            a prompt that is empty, not UTF-8 or leaves no room under --max-length).\n");
}

/* ---- the synthetic checkpoint ---- */

static void progress(void *user, uint64_t done, uint64_t total)
{
    int *last = user;
    int pct = total ? (int)(100 * done / total) : 100;
    if (pct / 5 != *last / 5 || done == total) {
        fprintf(stderr, "\rmiser bench: writing synthetic checkpoint: %3d%% (%.0f / %.0f MB)", pct, done / 1048576.0,
                total / 1048576.0);
        if (done == total) fputc('\n', stderr);
        *last = pct;
    }
}

int miser_bench_synthetic_dir(const char *cmd, char *out, size_t cap)
{
    const char *root = getenv("MISER_CACHE_DIR");
    char base[4096];
    if (root && *root) snprintf(base, sizeof base, "%s", root);
    else {
        const char *home = getenv("HOME");
        snprintf(base, sizeof base, "%s/.cache/miser", home && *home ? home : "/tmp");
    }
    snprintf(out, cap, "%s/synthetic-gpt2-medium-f32-seed0", base);
    /* Reuse when complete: config.json is written last, and opening checks
     * the safetensors header against the file's size. */
    char cfgp[4200];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", out);
    miser_model *m = NULL;
    if (access(cfgp, F_OK) == 0 && miser_model_open(out, &m) == MISER_OK) {
        miser_model_free(m);
        return 0;
    }
    if (access(cfgp, F_OK) == 0) {
        fprintf(stderr, "miser bench: %s is incomplete or damaged (%s); writing it again\n", out,
                miser_error_message());
        unlink(cfgp);
    }
    /* mkdir -p of base (the checkpoint dir itself is made by the writer). */
    for (char *p = base + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(base, 0755);
            *p = '/';
        }
    if (mkdir(base, 0755) && errno != EEXIST) {
        miser_cli_error(cmd, "cannot create cache directory %s: %s", base, strerror(errno));
        return MISER_EXIT_FAIL;
    }
    miser_gpt2_config cfg;
    miser_status st = miser_gpt2_preset("medium", &cfg);
    int last = -5;
    miser_synth_options so = {.dtype = MISER_DTYPE_F32, .seed = 0, .progress = progress, .progress_user = &last};
    fprintf(stderr, "miser bench: first use: writing a GPT-2 medium-shaped checkpoint of synthetic weights to %s\n",
            out);
    if (!st) st = miser_synth_gpt2(out, &cfg, &so);
    if (st) {
        miser_cli_error(cmd, "cannot write the synthetic checkpoint: %s", miser_error_message());
        return MISER_EXIT_FAIL;
    }
    return 0;
}

/* ---- checks before any run ---- */

static char *ids_csv(const int32_t *ids, size_t n)
{
    char *s = miser_malloc(MISER_MEM_SCRATCH, n * 12 + 1);
    if (!s) return NULL;
    size_t o = 0;
    s[0] = 0;
    for (size_t i = 0; i < n; i++) o += (size_t)sprintf(s + o, "%s%d", i ? "," : "", ids[i]);
    return s;
}

int miser_bench_validate(const char *cmd, const char *model_dir, const char *prompt, const char *prompt2,
                         long long max_length, char **ids1, char **ids2)
{
    if (ids1) *ids1 = NULL;
    if (ids2) *ids2 = NULL;
    miser_model *model = NULL;
    miser_tokenizer *tok = NULL;
    miser_gpt2_config preset;
    const miser_gpt2_config *cfg = &preset;
    miser_status st;
    int rc = MISER_EXIT_OK;
    if (model_dir) {
        if ((st = miser_model_open(model_dir, &model)) || (st = miser_tokenizer_open(model_dir, &tok))) {
            miser_cli_error(cmd, "%s", miser_error_message());
            rc = miser_cli_exit_for_input(st);
            goto out;
        }
        cfg = miser_model_config(model);
    } else if ((st = miser_gpt2_preset("medium", &preset)) || (st = miser_tokenizer_open(NULL, &tok))) {
        miser_cli_error(cmd, "%s", miser_error_message());
        rc = MISER_EXIT_FAIL;
        goto out;
    }
    if (max_length > cfg->n_ctx) {
        miser_cli_error(cmd, "--max-length %lld is more than the model's context of %lld tokens", max_length,
                        (long long)cfg->n_ctx);
        rc = MISER_EXIT_USAGE;
        goto out;
    }
    const char *texts[2] = {prompt, prompt2}, *what[2] = {"--prompt", "--prompt2"};
    char **outs[2] = {ids1, ids2};
    for (int k = 0; k < 2 && !rc; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        rc = miser_cli_prompt_ids(cmd, what[k], tok, cfg->n_ctx, cfg->n_vocab, texts[k], strlen(texts[k]), 0, &ids,
                                  &n);
        if (!rc && (long long)n >= max_length) {
            miser_cli_error(cmd, "%s has %zu tokens: --max-length %lld leaves no room for a new token", what[k], n,
                            max_length);
            rc = MISER_EXIT_DATA;
        }
        if (!rc && outs[k] && !(*outs[k] = ids_csv(ids, n))) {
            miser_cli_error(cmd, "out of memory");
            rc = MISER_EXIT_FAIL;
        }
        miser_free(ids);
    }
    if (rc && ids1) {
        miser_free(*ids1);
        *ids1 = NULL;
    }
out:
    miser_tokenizer_free(tok);
    miser_model_free(model);
    return rc;
}

/* ---- child: one run of the scenario ---- */

typedef struct child_ctx {
    miser_profiler *prof;
    int marker_fd;
    int ack_fd; /* MISER_MARKER_ACK_FD when the watcher acknowledges marks */
} child_ctx;

static int child_mark(child_ctx *c, int idx, const char *data)
{
    const char *name = stage_names[idx][0], *desc = stage_names[idx][1];
    if (c->prof && miser_profiler_stage_data(c->prof, name, desc, data)) return -1;
    if (c->marker_fd >= 0) {
        /* synchronous mark: wait until the watcher has taken its snapshot,
         * so the last stage is measured before this process exits */
        dprintf(c->marker_fd, "stage %s desc=\"%s\"%s%s%s\n", name, desc, data ? " " : "", data ? data : "",
                c->ack_fd >= 0 ? " ack=1" : "");
        char b;
        if (c->ack_fd >= 0 && read(c->ack_fd, &b, 1) < 0) c->ack_fd = -1;
    }
    char buf[4096];
    miser_proc_status ps = {0};
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n > 0) {
        buf[n] = 0;
        miser_proc_parse_status(buf, &ps);
    }
    printf("[STAGE] %s: %.2f MB (swap: %.2f MB) - %s\n", name, ps.rss_kb / 1024.0,
           ps.swap_kb > 0 ? ps.swap_kb / 1024.0 : 0.0, desc);
    fflush(stdout);
    return 0;
}

/* Append text as a marker value: quoted, with " and \ escaped and control
 * bytes as spaces (the words are what the study counts). */
static void quote_value(char *dst, size_t cap, const char *s, size_t len)
{
    size_t o = 0;
    if (cap < 3) return;
    dst[o++] = '"';
    for (size_t i = 0; i < len && o + 3 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)ch;
        } else
            dst[o++] = ch < 0x20 ? ' ' : (char)ch;
    }
    dst[o++] = '"';
    dst[o] = 0;
}

static void json_ids(FILE *f, const int32_t *ids, int64_t n)
{
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", ids[i]);
    fputc(']', f);
}

typedef struct {
    const char *pipeline, *precision;
    int threads;
    double load_s, compile_s;
    const miser_generate_result *res;
    const double *secs;
    const size_t *nprompt;
} result_ctx;

static miser_status result_cb(void *fp, void *ctx)
{
    const result_ctx *c = ctx;
    FILE *f = fp;
    fprintf(f, "{\"runtime\":\"miser\",\"version\":\"miser (pipeline %s)\",\"precision\":\"%s\",\"threads\":%d,"
               "\"load_s\":%.6f,\"compile_s\":%.6f",
            c->pipeline, c->precision ? c->precision : "f32", c->threads, c->load_s, c->compile_s);
    for (int k = 0; k < 2; k++) {
        fprintf(f, ",\"%s\":{\"ids\":", k ? "second" : "first");
        json_ids(f, c->res[k].ids, c->res[k].n);
        fprintf(f, ",\"prompt_len\":%zu,\"new_tokens\":%lld,\"seconds\":%.6f,\"ttft_s\":%.6f}", c->nprompt[k],
                (long long)c->res[k].n, c->secs[k], c->res[k].prefill_s);
    }
    fputs("}\n", f);
    return MISER_OK;
}

/* The adapters' result file (tools/peers/README.md), written atomically. */
static int write_result(const char *path, const char *pipeline, const char *precision, int threads, double load_s,
                        double compile_s, const miser_generate_result res[2], const double secs[2],
                        const size_t nprompt[2])
{
    result_ctx c = {pipeline, precision, threads, load_s, compile_s, res, secs, nprompt};
    return miser_file_write_atomic(path, result_cb, &c) ? -1 : 0;
}

typedef struct scenario {
    const char *model_dir, *prompt, *prompt2, *pipeline;
    long long max_length, threads;
    const char *precision; /* NULL: the weights as stored */
} scenario;

static int run_child(const char *cmd, const scenario *sc, const char *profile_out, const char *json_out)
{
    child_ctx c = {NULL, -1, -1};
    const char *mfd = getenv(MISER_MARKER_ENV), *afd = getenv(MISER_MARKER_ACK_ENV);
    if (mfd && *mfd) c.marker_fd = atoi(mfd);
    if (c.marker_fd >= 0 && afd && *afd) c.ack_fd = atoi(afd);
    miser_status st;
    /* Sample RSS every 20 ms, as the study polled it, for its peak_ram_mb. */
    miser_profiler_options po = {.sample_interval_ms = 20};
    if (profile_out && (st = miser_profiler_start(&po, &c.prof))) {
        miser_cli_error(cmd, "profiler: %s", miser_error_message());
        return MISER_EXIT_FAIL;
    }
    int rc = MISER_EXIT_OK;
    miser_model *model = NULL;
    miser_tokenizer *tok = NULL;
    miser_plan *plan = NULL;
    miser_session *sess = NULL;
    char *weights_dir = NULL; /* --precision: the precision cache's entry (miser_free) */
    int32_t *ids[2] = {NULL, NULL};
    size_t nids[2] = {0, 0};
    miser_generate_result res[2] = {{0}, {0}};
    char *text = NULL, *data = NULL;
    miser_profile *prof = NULL;
    double secs[2] = {0, 0};
    child_mark(&c, 0, NULL);
    double t0 = miser_now_s();
    /* loading includes mapping every weight page, as the other runtimes read
     * their weights at load: the first inference then pays no page faults */
    /* --precision: the weights as `miser generate --precision` opens them
     * (converted into the cache, reused when there), the tokenizer from the
     * checkpoint itself */
    miser_dtype prec = MISER_DTYPE_F32;
    if (sc->precision && ((st = miser_dtype_parse(sc->precision, &prec)) ||
                          (st = miser_precision_prepare(sc->model_dir, prec, NULL, &weights_dir, NULL, 0, NULL))))
        goto fail;
    if ((st = miser_model_open(weights_dir ? weights_dir : sc->model_dir, &model)) ||
        (st = miser_model_prefault(model)) || (st = miser_tokenizer_open(sc->model_dir, &tok)))
        goto fail;
    double load_s = miser_now_s() - t0;
    child_mark(&c, 1, NULL);
    const char *prompts[2] = {sc->prompt, sc->prompt2};
    for (int k = 0; k < 2; k++) {
        if ((st = miser_tokenizer_encode(tok, prompts[k], strlen(prompts[k]), 0, &ids[k], &nids[k]))) goto fail;
        if (!nids[k] || (long long)nids[k] >= sc->max_length) {
            miser_cli_error(cmd, "prompt %d has %zu tokens: max_length %lld leaves no room", k + 1, nids[k],
                            sc->max_length);
            rc = MISER_EXIT_DATA;
            goto out;
        }
    }
    const miser_gpt2_config *cfg = miser_model_config(model);
    int64_t ctx = sc->max_length < cfg->n_ctx ? sc->max_length : cfg->n_ctx;
    miser_compile_options co = {.pipeline = sc->pipeline, .max_context = ctx};
    double tc = miser_now_s();
    if ((st = miser_plan_compile(model, &co, &plan))) goto fail;
    miser_session_options so = {.capacity = ctx, .threads = (int)sc->threads};
    if ((st = miser_session_create(plan, &so, &sess))) goto fail;
    double compile_s = miser_now_s() - tc;
    char d2[64];
    snprintf(d2, sizeof d2, "compile_s=%.6f", compile_s);
    child_mark(&c, 2, d2);
    size_t dcap = 4096;
    data = miser_malloc(MISER_MEM_OTHER, dcap);
    if (!data) {
        st = MISER_ERR_NOMEM;
        goto fail;
    }
    for (int k = 0; k < 2; k++) {
        if (k) miser_session_reset(sess);
        /* Greedy, not stopping at <|endoftext|>: every runtime makes the same
         * number of tokens, as the adapters do. */
        miser_generate_options go = {.max_length = sc->max_length, .stop_at_eos = 0, .eos_token = cfg->eos_token_id};
        double ts = miser_now_s();
        if ((st = miser_generate(sess, ids[k], (int64_t)nids[k], &go, NULL, NULL, &res[k]))) goto fail;
        secs[k] = miser_now_s() - ts;
        /* The study counts words of the whole output text, prompt included. */
        size_t tlen = 0;
        miser_free(text);
        text = NULL;
        if ((st = miser_tokenizer_decode(tok, res[k].ids, (size_t)res[k].n, &text, &tlen))) goto fail;
        char q[2048], whole[1500];
        snprintf(whole, sizeof whole, "%s%.*s", prompts[k], (int)(tlen < 1000 ? tlen : 1000), text);
        quote_value(q, sizeof q, whole, strlen(whole));
        snprintf(data, dcap, "seconds=%.6f tokens=%lld ttft_s=%.6f text=%s", secs[k], (long long)res[k].n,
                 res[k].prefill_s, q);
        child_mark(&c, 3 + k, data);
    }
    child_mark(&c, 5, NULL);
    if (json_out) {
        size_t np[2] = {nids[0], nids[1]};
        if (write_result(json_out, sc->pipeline, sc->precision, (int)sc->threads, load_s, compile_s, res, secs, np)) {
            miser_cli_error(cmd, "%s: cannot write: %s", json_out, strerror(errno));
            rc = MISER_EXIT_FAIL;
            goto out;
        }
    }
    if (c.prof) {
        st = miser_profiler_stop(c.prof, &prof);
        c.prof = NULL;
        if (st || (st = miser_profile_write_file(prof, MISER_REPORT_JSON, profile_out))) goto fail;
    }
    goto out;
fail:
    miser_cli_error(cmd, "%s", miser_error_message());
    rc = miser_cli_exit_for_status(st);
out:
    miser_profiler_free(c.prof);
    miser_profile_free(prof);
    miser_free(text);
    miser_free(data);
    for (int k = 0; k < 2; k++) {
        miser_free(res[k].ids);
        miser_free(ids[k]);
    }
    miser_session_free(sess);
    miser_plan_free(plan);
    miser_tokenizer_free(tok);
    miser_model_free(model);
    miser_free(weights_dir);
    return rc;
}

/* ---- soak ---- */

static int read_status(miser_proc_status *ps)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    return miser_proc_parse_status(buf, ps) ? -1 : 0;
}

/* Least-squares slope of y over 0..n-1. */
static double slope(const double *y, long long n)
{
    if (n < 2) return NAN;
    double mx = (n - 1) / 2.0, my = 0, sxy = 0, sxx = 0;
    for (long long i = 0; i < n; i++) my += y[i];
    my /= (double)n;
    for (long long i = 0; i < n; i++) {
        sxy += (i - mx) * (y[i] - my);
        sxx += (i - mx) * (i - mx);
    }
    return sxy / sxx;
}

/* The soak figures as JSON ("miser-soak" v1). */
typedef struct {
    int synthetic;
    long long iters, off;
    const double *rss, *anon, *heap, *sec;
    double d_rss, d_anon, d_heap;
} soak_ctx;

static miser_status soak_cb(void *fp, void *ctx)
{
    const soak_ctx *c = ctx;
    FILE *f = fp;
    fprintf(f, "{\"schema\":\"miser-soak\",\"version\":1,\"synthetic\":%s,\"iterations\":[",
            c->synthetic ? "true" : "false");
    for (long long i = 0; i < c->iters; i++)
        fprintf(f, "%s{\"iter\":%lld,\"rss_kb\":%.0f,\"anon_kb\":%.0f,\"miser_heap_bytes\":%.0f,\"seconds\":%.6f}",
                i ? "," : "", i + 1, c->rss[i], c->anon[i], c->heap[i], c->sec[i]);
    fprintf(f, "],\"drift_from_iter\":%lld,\"drift_rss_kb_per_iter\":%.3f,\"drift_anon_kb_per_iter\":%.3f,"
               "\"drift_heap_bytes_per_iter\":%.3f}\n",
            c->off + 1, isfinite(c->d_rss) ? c->d_rss : 0, isfinite(c->d_anon) ? c->d_anon : 0,
            isfinite(c->d_heap) ? c->d_heap : 0);
    return MISER_OK;
}

static int run_soak(const char *cmd, const scenario *sc, long long iters, const char *json_path, int synthetic)
{
    miser_model *model = NULL;
    miser_tokenizer *tok = NULL;
    miser_plan *plan = NULL;
    miser_session *sess = NULL;
    int32_t *ids = NULL;
    size_t nids = 0;
    double *rss = NULL, *anon = NULL, *heap = NULL, *sec = NULL;
    int rc = MISER_EXIT_OK;
    miser_status st;
    if ((st = miser_model_open(sc->model_dir, &model)) || (st = miser_model_prefault(model)) ||
        (st = miser_tokenizer_open(sc->model_dir, &tok)) ||
        (st = miser_tokenizer_encode(tok, sc->prompt, strlen(sc->prompt), 0, &ids, &nids)))
        goto fail;
    if (!nids || (long long)nids >= sc->max_length) {
        miser_cli_error(cmd, "the prompt has %zu tokens: max_length %lld leaves no room", nids, sc->max_length);
        rc = MISER_EXIT_DATA;
        goto out;
    }
    const miser_gpt2_config *cfg = miser_model_config(model);
    int64_t ctx = sc->max_length < cfg->n_ctx ? sc->max_length : cfg->n_ctx;
    miser_compile_options co = {.pipeline = sc->pipeline, .max_context = ctx};
    miser_session_options so = {.capacity = ctx, .threads = (int)sc->threads};
    if ((st = miser_plan_compile(model, &co, &plan)) || (st = miser_session_create(plan, &so, &sess))) goto fail;
    rss = miser_calloc(MISER_MEM_OTHER, (size_t)iters * 4, sizeof *rss);
    if (!rss) {
        st = MISER_ERR_NOMEM;
        goto fail;
    }
    anon = rss + iters;
    heap = anon + iters;
    sec = heap + iters;
    printf("soak: %lld generations of \"%s\" (max_length %lld) in one process%s\n", iters, sc->prompt,
           sc->max_length, synthetic ? " [synthetic weights]" : "");
    printf("%6s %12s %12s %14s %10s\n", "iter", "rss MB", "anon MB", "miser heap B", "seconds");
    for (long long i = 0; i < iters; i++) {
        miser_session_reset(sess);
        miser_generate_options go = {.max_length = sc->max_length, .stop_at_eos = 0, .eos_token = cfg->eos_token_id};
        miser_generate_result res = {0};
        double t = miser_now_s();
        st = miser_generate(sess, ids, (int64_t)nids, &go, NULL, NULL, &res);
        sec[i] = miser_now_s() - t;
        miser_free(res.ids);
        if (st) goto fail;
        miser_proc_status ps;
        if (read_status(&ps)) {
            miser_cli_error(cmd, "cannot read /proc/self/status");
            rc = MISER_EXIT_FAIL;
            goto out;
        }
        rss[i] = (double)ps.rss_kb;
        anon[i] = (double)ps.anon_kb;
        heap[i] = (double)miser_mem_total().current;
        printf("%6lld %12.2f %12.2f %14.0f %10.4f\n", i + 1, rss[i] / 1024.0, anon[i] / 1024.0, heap[i], sec[i]);
    }
    /* Drift: the slope after the first iteration, which may still fill
     * caches once (allocator pools, lazily touched pages). */
    long long off = iters > 2 ? 1 : 0;
    double d_rss = slope(rss + off, iters - off), d_anon = slope(anon + off, iters - off),
           d_heap = slope(heap + off, iters - off);
    if (iters - off < 2)
        printf("drift per iteration: n/a (needs at least 2 iterations)\n");
    else
        printf("drift per iteration (slope over iterations %lld..%lld): rss %+.2f KiB, anon %+.2f KiB, miser heap %+.0f B\n",
           off + 1, iters, d_rss, d_anon, d_heap);
    printf("first -> last: rss %+.0f KiB, anon %+.0f KiB, miser heap %+.0f B\n", rss[iters - 1] - rss[0],
           anon[iters - 1] - anon[0], heap[iters - 1] - heap[0]);
    fflush(stdout);
    if (json_path) {
        soak_ctx c = {synthetic, iters, off, rss, anon, heap, sec, d_rss, d_anon, d_heap};
        if (miser_file_write_atomic(json_path, soak_cb, &c)) {
            miser_cli_error(cmd, "%s", miser_error_message());
            rc = MISER_EXIT_FAIL;
        }
    }
    goto out;
fail:
    miser_cli_error(cmd, "%s", miser_error_message());
    rc = miser_cli_exit_for_status(st);
out:
    miser_free(rss);
    miser_free(ids);
    miser_session_free(sess);
    miser_plan_free(plan);
    miser_tokenizer_free(tok);
    miser_model_free(model);
    return rc;
}

/* ---- parent ---- */

int miser_bench_spawn(const char *cmd, char *const argv[])
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        miser_cli_error(cmd, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

int miser_bench_prepare_precision(const char *cmd, const char *model_dir, const char *precision)
{
    miser_dtype prec;
    if (miser_dtype_parse(precision, &prec) || prec == MISER_DTYPE_I32 || prec == MISER_DTYPE_Q6_K) {
        miser_cli_error(cmd, "unknown precision '%s' (f32, f16, bf16, q8_0, q4_0, q4_k)", precision);
        return MISER_EXIT_USAGE;
    }
    char *wd = NULL, note[512] = "";
    int conv = 0;
    miser_status st = miser_precision_prepare(model_dir, prec, NULL, &wd, note, sizeof note, &conv);
    if (st) {
        miser_cli_error(cmd, "%s", miser_error_message());
        return miser_cli_exit_for_status(st);
    }
    if (conv) fprintf(stderr, "miser %s: converted the weights to %s into %s\n", cmd, precision, wd);
    if (note[0]) fprintf(stderr, "miser %s: %s\n", cmd, note);
    miser_free(wd);
    return MISER_EXIT_OK;
}

void miser_bench_self_exe(char *buf, size_t cap)
{
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    if (n <= 0) snprintf(buf, cap, "%s/miser", MISER_BUILD_DIR);
    else buf[n] = 0;
}

static int cmd_bench(int argc, char **argv)
{
    const char *cmd = "bench";
    scenario sc = {NULL, "Hello", "Test", "default", 10, miser_cli_default_threads(), NULL};
    const char *json = NULL, *md = NULL, *svg = NULL, *html = NULL, *profile_out = NULL, *json_out = NULL;
    long long runs = 3, soak = 0;
    int child = 0, allow_paging = 0;
    const char *budget_s = NULL;
    enum { O_RUNS = 256, O_P2, O_MAXLEN, O_PIPE, O_THREADS, O_JSON, O_MD, O_SVG, O_SOAK, O_CHILD, O_PROF, O_JOUT, O_HTML,
           O_BUDGET, O_PAGING, O_PREC };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},        {"prompt", required_argument, 0, 'p'},
        {"prompt2", required_argument, 0, O_P2},     {"runs", required_argument, 0, O_RUNS},
        {"max-length", required_argument, 0, O_MAXLEN}, {"pipeline", required_argument, 0, O_PIPE},
        {"threads", required_argument, 0, O_THREADS}, {"json", required_argument, 0, O_JSON},
        {"md", required_argument, 0, O_MD},          {"svg", required_argument, 0, O_SVG},
        {"html", required_argument, 0, O_HTML},
        {"soak", required_argument, 0, O_SOAK},      {"child", no_argument, 0, O_CHILD},
        {"profile-out", required_argument, 0, O_PROF}, {"json-out", required_argument, 0, O_JOUT},
        {"memory-budget", required_argument, 0, O_BUDGET}, {"allow-paging", no_argument, 0, O_PAGING},
        {"precision", required_argument, 0, O_PREC},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c, li = -1;
    /* li is reset each time: getopt_long sets it only for long options */
    for (; (c = getopt_long(argc, argv, ":hm:p:", opts, &li)) != -1; li = -1) {
        int bad = 0;
        switch (c) {
        case 'h': usage(stdout); return MISER_EXIT_OK;
        case 'm': sc.model_dir = optarg; break;
        case 'p': sc.prompt = optarg; break;
        case O_P2: sc.prompt2 = optarg; break;
        case O_RUNS: bad = miser_cli_parse_i64(optarg, 1, MISER_BENCH_MAX_RUNS, &runs); break;
        case O_MAXLEN: bad = miser_cli_parse_i64(optarg, 2, 1 << 20, &sc.max_length); break;
        case O_PIPE: sc.pipeline = optarg; break;
        case O_THREADS: bad = miser_cli_parse_i64(optarg, 1, 256, &sc.threads); break;
        case O_JSON: json = optarg; break;
        case O_MD: md = optarg; break;
        case O_SVG: svg = optarg; break;
        case O_HTML: html = optarg; break;
        case O_SOAK: bad = miser_cli_parse_i64(optarg, 1, 1000000, &soak); break;
        case O_CHILD: child = 1; break;
        case O_PROF: profile_out = optarg; break;
        case O_JOUT: json_out = optarg; break;
        case O_BUDGET: budget_s = optarg; break;
        case O_PAGING: allow_paging = 1; break;
        case O_PREC: sc.precision = optarg; break;
        default: return miser_cli_option_error(cmd, c, argv);
        }
        if (bad) return miser_cli_value_error(cmd, opts, li, optarg);
    }
    if (optind < argc) {
        miser_cli_error(cmd, "unexpected argument '%s'", argv[optind]);
        return MISER_EXIT_USAGE;
    }
    if (strcmp(sc.pipeline, "default") && strcmp(sc.pipeline, "naive")) {
        miser_cli_error(cmd, "unknown pipeline '%s' (default or naive)", sc.pipeline);
        return MISER_EXIT_USAGE;
    }
    if (sc.model_dir && !*sc.model_dir) {
        miser_cli_error(cmd, "--model needs a directory (without --model: the synthetic checkpoint)");
        return MISER_EXIT_USAGE;
    }
    if (sc.precision) {
        miser_dtype prec;
        if (miser_dtype_parse(sc.precision, &prec) || prec == MISER_DTYPE_I32 || prec == MISER_DTYPE_Q6_K) {
            miser_cli_error(cmd, "unknown precision '%s' (f32, f16, bf16, q8_0, q4_0, q4_k)", sc.precision);
            return MISER_EXIT_USAGE;
        }
        if (soak || budget_s) {
            miser_cli_error(cmd, "--precision does not apply to %s", soak ? "--soak" : "--memory-budget");
            return MISER_EXIT_USAGE;
        }
    }
    if (soak && (md || svg || html)) {
        miser_cli_error(cmd, "--%s does not apply to --soak (its figures go to stdout and --json)",
                        md ? "md" : svg ? "svg" : "html");
        return MISER_EXIT_USAGE;
    }
    /* Every output path and the whole input are checked before the first
     * run (or the synthetic checkpoint) starts. */
    struct { const char *opt, *path; } paths[] = {
        {"json", json}, {"md", md}, {"svg", svg}, {"html", html}, {"profile-out", profile_out}, {"json-out", json_out}};
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
        int prc = paths[k].path ? miser_cli_check_output(cmd, paths[k].opt, paths[k].path) : 0;
        if (prc) return prc;
    }
    if (child) {
        if (!sc.model_dir) {
            miser_cli_error(cmd, "--child needs --model");
            return MISER_EXIT_USAGE;
        }
        return run_child(cmd, &sc, profile_out, json_out);
    }
    int vrc = miser_bench_validate(cmd, sc.model_dir, sc.prompt, soak ? sc.prompt : sc.prompt2, sc.max_length, NULL,
                                   NULL);
    if (vrc) return vrc;
    char synth_dir[4096];
    int synthetic = 0;
    if (!sc.model_dir) {
        int rc = miser_bench_synthetic_dir(cmd, synth_dir, sizeof synth_dir);
        if (rc) return rc;
        sc.model_dir = synth_dir;
        synthetic = 1;
    }
    if (budget_s) { /* the checkpoint as stored, at --max-length: refused before any run when it does not fit */
        int prec = -1;
        int64_t cap = 0;
        int brc = miser_cli_budget_check(cmd, sc.model_dir, budget_s, allow_paging, 1, &prec, sc.max_length, 1,
                                         MISER_BUDGET_GENERATE, (int)sc.threads, 0, &cap);
        if (brc) return brc;
    }
    if (soak) return run_soak(cmd, &sc, soak, json, synthetic);
    if (sc.precision) {
        int prc = miser_bench_prepare_precision(cmd, sc.model_dir, sc.precision);
        if (prc) return prc;
    }

    static miser_bench_row row;
    memset(&row, 0, sizeof row);
    snprintf(row.name, sizeof row.name, "%s", strcmp(sc.pipeline, "naive") ? "miser" : "miser-naive");
    char self[4096], tmpdir[] = "/tmp/miser-bench-XXXXXX";
    miser_bench_self_exe(self, sizeof self);
    if (!mkdtemp(tmpdir)) {
        miser_cli_error(cmd, "mkdtemp: %s", strerror(errno));
        return MISER_EXIT_FAIL;
    }
    char maxlen[32], threads[32], prof[4200], res[4200];
    snprintf(maxlen, sizeof maxlen, "%lld", sc.max_length);
    snprintf(threads, sizeof threads, "%lld", sc.threads);
    int rc = MISER_EXIT_OK;
    for (long long i = 0; i < runs; i++) {
        snprintf(prof, sizeof prof, "%s/profile-%lld.json", tmpdir, i + 1);
        snprintf(res, sizeof res, "%s/result-%lld.json", tmpdir, i + 1);
        char *cargv[] = {self, "bench", "--child", "--model", (char *)sc.model_dir, "--prompt", (char *)sc.prompt,
                         "--prompt2", (char *)sc.prompt2, "--max-length", maxlen, "--pipeline", (char *)sc.pipeline,
                         "--threads", threads, "--profile-out", prof, "--json-out", res, NULL, NULL, NULL};
        if (sc.precision) { /* the two spare slots before the final NULL */
            const size_t n = sizeof cargv / sizeof cargv[0];
            cargv[n - 3] = "--precision";
            cargv[n - 2] = (char *)sc.precision;
        }
        printf("run %lld/%lld (fresh process)%s\n", i + 1, runs, synthetic ? " [synthetic weights]" : "");
        int crc = miser_bench_spawn(cmd, cargv);
        miser_profile *p = NULL;
        if (crc != 0 || miser_profile_load_json(prof, &p)) {
            miser_cli_error(cmd, "run %lld failed (exit %d)%s%s", i + 1, crc, crc == 0 ? ": " : "",
                            crc == 0 ? miser_error_message() : "");
            row.failed = 1;
            snprintf(row.note, sizeof row.note, "run %lld exited with %d", i + 1, crc);
            rc = crc == MISER_EXIT_DATA || crc == MISER_EXIT_USAGE ? crc : MISER_EXIT_FAIL;
            break;
        }
        miser_bench_run_from_profile(p, &row.runs[row.nruns++]);
        if (!row.timeline) row.timeline = p;
        else miser_profile_free(p);
        if (i == 0 && miser_bench_load_result(res, &row)) {
            miser_cli_error(cmd, "%s", miser_error_message());
            rc = MISER_EXIT_FAIL;
        }
        unlink(prof);
        unlink(res);
    }
    rmdir(tmpdir);
    miser_bench_report rep = {.nrows = 1, .rows = &row, .reference = 0, .synthetic = synthetic,
                              .published_path = MISER_SOURCE_DIR "/data/published-keras-gpt2-medium.json"};
    snprintf(rep.title, sizeof rep.title, "miser bench: the study's scenario");
    snprintf(rep.model, sizeof rep.model, "%.900s%s", sc.model_dir, synthetic ? " (synthetic weights)" : "");
    snprintf(rep.scenario, sizeof rep.scenario,
             "prompts \"%s\" then \"%s\", greedy, max_length %lld, pipeline %s, precision %s, %lld thread(s), %zu "
             "run(s) in fresh processes",
             sc.prompt, sc.prompt2, sc.max_length, sc.pipeline, sc.precision ? sc.precision : "as stored", sc.threads,
             row.nruns);
    miser_bench_machine(rep.machine, sizeof rep.machine);
    miser_bench_check_agreement(&rep);
    if (row.nruns) miser_bench_write_table(&rep, stdout);
    else if (json || md || svg || html)
        fprintf(stderr, "miser bench: no run completed: no report written\n");
    struct { const char *path; miser_bench_writer w; } outs[] = {
        {json, miser_bench_write_json}, {md, miser_bench_write_markdown}, {svg, miser_bench_write_svg},
        {html, miser_bench_write_html}};
    for (size_t k = 0; k < sizeof outs / sizeof outs[0] && row.nruns; k++)
        if (outs[k].path && miser_bench_write_file(&rep, outs[k].w, outs[k].path)) {
            miser_cli_error(cmd, "%s", miser_error_message());
            rc = MISER_EXIT_FAIL;
        }
    miser_profile_free(row.timeline);
    int frc = miser_cli_finish_stdout(cmd);
    return rc ? rc : frc;
}

MISER_CLI_COMMAND(bench, "bench", "run the memory study's benchmark scenario on miser", cmd_bench)
