/* Compiler benchmark (suite "compile" of build/miser-bench): on a
 * GPT-2-medium-shaped checkpoint, in ONE process, compile with the default
 * pipeline and with the naive one (one weight copy per consumer, as the
 * buggy OpenVINO compiler did) and print the with-fix / without-fix table:
 * compile time (median of repeats), RssAnon added, allocator peak, bytes
 * materialised, einsums left. Then generate twice with the default plan to
 * show that the first generation carries no compile stall.
 *
 * usage: miser-bench compile [MODEL_DIR] [--repeats N] [--tokens N] [--threads N]
 * MODEL_DIR defaults to $MISER_BENCH_MODEL, then /tmp/medium (create it with
 * `miser synth --out /tmp/medium --shape medium`). A missing checkpoint is
 * reported and skipped, not failed: benchmarks report, they do not test. */
#include "miser/profiler.h"
#include "miser/alloc.h"
#include "miser/model.h"
#include "miser/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>


/* RssAnon of this process in bytes (0 where the kernel does not report it) */
static int64_t rss_anon(void)
{
    miser_proc_status ps;
    return miser_proc_read_status(0, &ps) == MISER_OK && ps.anon_kb > 0 ? ps.anon_kb * 1024 : 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double ms_first, ms_median;
    double anon_mb, heap_peak_mb;
    miser_graph_stats st;
} compile_fig;

static double mb(double b) { return b / (1024.0 * 1024.0); }

static int compile_figures(const miser_model *m, const char *pipeline, int repeats, compile_fig *f, miser_plan **keep)
{
    double ms[64];
    if (repeats > 64) repeats = 64;
    memset(f, 0, sizeof *f);
    for (int r = 0; r < repeats; r++) {
        miser_compile_options co = {.pipeline = pipeline};
        int64_t a0 = rss_anon();
        miser_mem_stats h0 = miser_mem_total();
        miser_mem_reset_peaks();
        miser_plan *p = NULL;
        double t0 = miser_now_s();
        miser_status st = miser_plan_compile(m, &co, &p);
        double t1 = miser_now_s();
        if (st) {
            fprintf(stderr, "miser-bench compile: %s: %s\n", pipeline, miser_error_message());
            return 1;
        }
        ms[r] = (t1 - t0) * 1e3;
        if (r == 0) {
            f->ms_first = ms[0];
            f->anon_mb = mb((double)(rss_anon() - a0));
            miser_mem_stats h1 = miser_mem_total();
            f->heap_peak_mb = mb((double)(h1.peak > h0.current ? h1.peak - h0.current : 0));
            f->st = miser_graph_get_stats(miser_plan_graph(p));
        }
        if (keep && r == repeats - 1) *keep = p;
        else miser_plan_free(p);
    }
    qsort(ms, (size_t)repeats, sizeof ms[0], cmp_d);
    f->ms_median = ms[repeats / 2];
    return 0;
}

int miser_bench_compile(int argc, char **argv)
{
    const char *dir = getenv("MISER_BENCH_MODEL");
    int repeats = 5, tokens = 16, threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (argv[i][0] != '-') dir = argv[i];
        else {
            fprintf(stderr, "usage: miser-bench compile [MODEL_DIR] [--repeats N] [--tokens N] [--threads N]\n");
            return 2;
        }
    }
    if (repeats < 1) repeats = 1;
    if (tokens < 2) tokens = 2;
    if (!dir) dir = "/tmp/medium";
    struct stat sb;
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    if (stat(cfg, &sb)) {
        printf("compile: skipped, no checkpoint at %s (miser synth --out %s --shape medium)\n", dir, dir);
        return 0;
    }
    miser_model *m = NULL;
    if (miser_model_open(dir, &m)) {
        fprintf(stderr, "miser-bench compile: %s\n", miser_error_message());
        return 1;
    }
    /* as `miser generate` does at load: map every weight page now, so the
     * first generation below measures compilation stalls, not page faults */
    double tp = miser_now_s();
    if (miser_model_prefault(m)) {
        fprintf(stderr, "miser-bench compile: %s\n", miser_error_message());
        miser_model_free(m);
        return 1;
    }
    printf("compile: weights mapped in %.1f ms\n", (miser_now_s() - tp) * 1e3);
    const miser_gpt2_config *c = miser_model_config(m);
    printf("compile: %s (n_embd %lld, n_head %lld, n_layer %lld, vocab %lld, ctx %lld)\n", dir, (long long)c->n_embd,
           (long long)c->n_head, (long long)c->n_layer, (long long)c->n_vocab, (long long)c->n_ctx);
    compile_fig d, n;
    miser_plan *plan = NULL;
    if (compile_figures(m, "default", repeats, &d, &plan) || compile_figures(m, "naive", 1, &n, NULL)) {
        miser_plan_free(plan);
        miser_model_free(m);
        return 1;
    }
    printf("\n%-34s %14s %14s\n", "with-fix / without-fix", "default", "naive");
    printf("%-34s %14.2f %14.2f\n", "compile ms (first)", d.ms_first, n.ms_first);
    printf("%-34s %14.2f %14s\n", "compile ms (median of repeats)", d.ms_median, "-");
    printf("%-34s %14.2f %14.2f\n", "RssAnon added by compile MB", d.anon_mb, n.anon_mb);
    printf("%-34s %14.2f %14.2f\n", "allocator peak during compile MB", d.heap_peak_mb, n.heap_peak_mb);
    printf("%-34s %14.2f %14.2f\n", "weights materialised MB", mb((double)d.st.materialized_bytes),
           mb((double)n.st.materialized_bytes));
    printf("%-34s %14d %14d\n", "einsums left", d.st.einsums, n.st.einsums);
    printf("%-34s %14d %14d\n", "nodes", d.st.nodes, n.st.nodes);
    printf("%-34s %14.2f %14.2f\n", "unique constant MB", mb((double)d.st.unique_const_bytes),
           mb((double)n.st.unique_const_bytes));
    printf("%-34s %14.2f %14.2f\n", "activation arena MB", mb((double)d.st.arena_bytes), mb((double)n.st.arena_bytes));

    /* first vs second generation on the default plan: a compile stall would
     * show up as a slower first one */
    miser_session *s = NULL;
    miser_session_options so = {.threads = threads, .capacity = 256};
    if (miser_session_create(plan, &so, &s)) {
        fprintf(stderr, "miser-bench compile: %s\n", miser_error_message());
        miser_plan_free(plan);
        miser_model_free(m);
        return 1;
    }
    const int32_t prompt = 15496; /* "Hello" */
    double gen_s[3] = {0};
    long minflt[3] = {0}, majflt[3] = {0};
    for (int k = 0; k < 3; k++) {
        struct rusage u0, u1;
        getrusage(RUSAGE_SELF, &u0);
        miser_session_reset(s);
        miser_generate_options go = {.max_new_tokens = tokens, .stop_at_eos = 0};
        miser_generate_result res = {0};
        double t0 = miser_now_s();
        if (miser_generate(s, &prompt, 1, &go, NULL, NULL, &res)) {
            fprintf(stderr, "miser-bench compile: %s\n", miser_error_message());
            break;
        }
        gen_s[k] = miser_now_s() - t0;
        getrusage(RUSAGE_SELF, &u1);
        minflt[k] = u1.ru_minflt - u0.ru_minflt;
        majflt[k] = u1.ru_majflt - u0.ru_majflt;
        miser_free(res.ids);
    }
    printf("\ngeneration of %d tokens, %d threads, default plan: first %.1f ms, second %.1f ms, third %.1f ms "
           "(first/second %.3f)\n",
           tokens, threads, gen_s[0] * 1e3, gen_s[1] * 1e3, gen_s[2] * 1e3, gen_s[1] > 0 ? gen_s[0] / gen_s[1] : 0.0);
    /* the first generation is the first to touch most weight pages of the
     * mapping: its page faults are loading, not compilation */
    printf("page faults (minor/major): first %ld/%ld, second %ld/%ld, third %ld/%ld\n", minflt[0], majflt[0], minflt[1],
           majflt[1], minflt[2], majflt[2]);
    miser_session_free(s);
    miser_plan_free(plan);
    miser_model_free(m);
    return 0;
}
