/* Kernel microbenchmarks and end-to-end figures.
 *
 * `miser-bench kernels [--quick]`: this machine's limits measured in the same
 * run (a read-bandwidth probe over a buffer 8x the L3, OpenBLAS sgemm when
 * libopenblas is installed), the thread pool's cost per hand-off, and each
 * kernel at GPT-2-medium shapes for every weight dtype, 1 and 2 threads,
 * reference vs SIMD: GEMV (decode, GB/s of weights read; matrices cycled so
 * the working set exceeds the L3), GEMM (prefill, GFLOP/s), attention over a
 * KV cache (GB/s of K and V read).
 *
 * `miser-bench e2e [--dir DIR] [--runs N] [--threads LIST] [--precision LIST] [--peers LIST] [--no-peers]`:
 * decode tok/s (1-token prompt, 128 new) and prefill tok/s (128-token prompt)
 * on a GPT-2-medium-shaped synthetic checkpoint (created once with
 * miser_synth_gpt2 in ~/.cache/miser/bench/medium, ~1.4 GB, never in the
 * repo), each precision converted through the precision cache; printed
 * beside the peer figures and, when `make peers` has installed them,
 * the peers measured in the same run at the same thread counts
 * (tools/peers/bench_peers.py), then one side-by-side table with miser's
 * ratios against them and the targets. The run is N rounds, each
 * measuring every miser configuration and then every peer once; figures are
 * medians over rounds, so a slow spell of a shared machine falls on every
 * runtime rather than on whichever was measured during it.
 * `--arch llama` does the same on a SmolLM2-360M-shaped Llama checkpoint
 * (miser_synth_llama, ~/.cache/miser/bench/smollm2-360m, ~1.4 GB) with a
 * context of 1024, against llama.cpp through tools/peers/llamacpp_llama.js,
 * with issue 14's targets (decode >= 1.05x, prefill >= 1.5x llama.cpp). */
#include "bench_common.h"
#include "kernels/kernels.h"
#include "miser/alloc.h"
#include "miser/graph.h"
#include "miser/model.h"
#include "miser/precision.h"
#include "miser/runtime.h"
#include "miser/safetensors.h"
#include "runtime/threadpool.h"

#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t g_rng = 88172645463325252ull;
static float frand(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)(g_rng >> 40) / 16777216.0f * 2.0f - 1.0f;
}

static void *make_weights(miser_dtype dt, int64_t n)
{
    size_t bytes = miser_dtype_bytes(dt, (uint64_t)n);
    uint8_t *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) return NULL;
    if (dt == MISER_DTYPE_Q8_0) {
        for (int64_t b = 0; b < n / 32; b++) {
            uint16_t s = miser_f32_to_f16(0.01f);
            memcpy(p + b * 34, &s, 2);
            for (int i = 0; i < 32; i++) ((int8_t *)p)[b * 34 + 2 + i] = (int8_t)(frand() * 127);
        }
    } else
        for (int64_t i = 0; i < n; i++) {
            float v = frand() * 0.05f;
            if (dt == MISER_DTYPE_F32) ((float *)p)[i] = v;
            else if (dt == MISER_DTYPE_F16) ((uint16_t *)p)[i] = miser_f32_to_f16(v);
            else ((uint16_t *)p)[i] = miser_f32_to_bf16(v);
        }
    return p;
}

/* ---- read-bandwidth probe (bench_common.h: also used by bench_gguf.c) ---- */

typedef struct {
    const float *buf;
    int64_t n;
    float out[64];
} probe_ctx;

__attribute__((target("avx2"))) static void probe_task(void *c_, int ith, int nth)
{
    probe_ctx *c = c_;
    int64_t lo, hi;
    miser_split(c->n / 32, ith, nth, &lo, &hi);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = lo * 32; i < hi * 32; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(c->buf + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(c->buf + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(c->buf + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(c->buf + i + 24));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    c->out[ith] = t[0] + t[7];
}

double miser_bench_read_gbs(int threads)
{
    int64_t n = (int64_t)288 << 20 >> 2; /* 288 MB: 8x this machine's L3 */
    float *buf = aligned_alloc(64, (size_t)n * 4);
    if (!buf) return NAN;
    for (int64_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
    miser_threadpool *pool;
    if (miser_threadpool_create(threads, &pool)) {
        free(buf);
        return NAN;
    }
    probe_ctx c = {.buf = buf, .n = n};
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        miser_threadpool_run(pool, probe_task, &c);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    miser_threadpool_free(pool);
    free(buf);
    return (double)n * 4 / best / 1e9;
}

static void empty_task(void *c, int ith, int nth) { (void)c, (void)ith, (void)nth; }

static double pool_sync_ns(int threads)
{
    miser_threadpool *pool;
    if (miser_threadpool_create(threads, &pool)) return NAN;
    for (int i = 0; i < 1000; i++) miser_threadpool_run(pool, empty_task, NULL);
    int reps = 200000;
    double t0 = now_s();
    for (int i = 0; i < reps; i++) miser_threadpool_run(pool, empty_task, NULL);
    double t = now_s() - t0;
    miser_threadpool_free(pool);
    return t / reps * 1e9;
}

/* ---- linear ---- */

typedef struct {
    const miser_kernels *k;
    miser_linear_args a;
} lin_ctx;

static void lin_task(void *c_, int ith, int nth)
{
    lin_ctx *c = c_;
    c->k->linear(&c->a, ith, nth);
}

/* one linear as the executor runs it (both phases of the decode K split) */
static void lin_run(miser_threadpool *pool, lin_ctx *c)
{
    c->a.phase = 0;
    miser_threadpool_run(pool, lin_task, c);
    if (c->a.partial) {
        c->a.phase = 1;
        miser_threadpool_run(pool, lin_task, c);
    }
}

/* Seconds per call (best of rounds), cycling over nmat copies of W. */
static double time_linear(const miser_kernels *k, int threads, miser_linear_args base, void **ws, int nmat, int reps)
{
    miser_threadpool *pool;
    if (miser_threadpool_create(threads, &pool)) return NAN;
    lin_ctx c = {.k = k, .a = base};
    const int64_t need = miser_linear_partial_floats(&c.a);
    c.a.partial = need > 0 ? malloc(sizeof(float) * (size_t)need) : NULL;
    if (need > 0 && !c.a.partial) { /* no figure rather than one for a path the runtime would not take */
        miser_threadpool_free(pool);
        return NAN;
    }
    double best = 1e30;
    for (int round = 0; round < 3; round++) {
        double t0 = now_s();
        for (int r = 0; r < reps; r++) {
            c.a.w = ws[r % nmat];
            lin_run(pool, &c);
        }
        double t = (now_s() - t0) / reps;
        if (t < best) best = t;
    }
    free(c.a.partial);
    miser_threadpool_free(pool);
    return best;
}

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *,
                         int);

static double openblas_gflops(int threads, int64_t M, int64_t N, int64_t K)
{
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) return NAN;
    sgemm_fn sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
    void (*set_threads)(int) = (void (*)(int))dlsym(h, "openblas_set_num_threads");
    if (!sgemm) return NAN;
    if (set_threads) set_threads(threads);
    float *A = make_weights(MISER_DTYPE_F32, M * K), *B = make_weights(MISER_DTYPE_F32, K * N),
          *C = aligned_alloc(64, sizeof(float) * (size_t)(M * N));
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        sgemm(101 /* row major */, 111 /* no trans */, 111, (int)M, (int)N, (int)K, 1.0f, A, (int)K, B, (int)N, 0.0f,
              C, (int)N);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    free(A);
    free(B);
    free(C);
    return 2.0 * M * N * K / best / 1e9;
}

/* ---- attention ---- */

typedef struct {
    const miser_kernels *k;
    miser_attention_args a;
} att_ctx;

static void att_task(void *c_, int ith, int nth)
{
    att_ctx *c = c_;
    c->k->attention(&c->a, ith, nth);
}

static double time_attention(const miser_kernels *k, int threads, int f16, int64_t S)
{
    const int64_t H = 16, D = 64, row = H * D;
    miser_dtype dt = f16 ? MISER_DTYPE_F16 : MISER_DTYPE_F32;
    void *kc = make_weights(dt, S * row), *vc = make_weights(dt, S * row);
    float *q = make_weights(MISER_DTYPE_F32, row), *out = aligned_alloc(64, 4 * (size_t)row),
          *scratch = aligned_alloc(64, 4 * (size_t)(S * threads));
    miser_threadpool *pool;
    if (miser_threadpool_create(threads, &pool)) return NAN;
    att_ctx c = {.k = k,
                 .a = {.T = 1, .S = S, .H = H, .D = D, .q = q, .q_row = row, .k = kc, .v = vc, .kvdt = dt, .k_row = row,
                       .v_row = row, .out = out, .o_row = row, .scale = 0.125f, .scratch = scratch}};
    double best = 1e30;
    for (int r = 0; r < 20; r++) {
        double t0 = now_s();
        miser_threadpool_run(pool, att_task, &c);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    miser_threadpool_free(pool);
    free(kc);
    free(vc);
    free(q);
    free(out);
    free(scratch);
    return 2.0 * (double)miser_dtype_bytes(dt, (uint64_t)(S * row)) / best / 1e9;
}

int miser_bench_kernels(int argc, char **argv)
{
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    const miser_kernels *ref = miser_kernels_ref(), *best = miser_kernels_get();
    printf("kernel sets: %s (selected: %s)\n\n", miser_kernels_available(), best->name);
    printf("machine limits (measured now):\n");
    double bw1 = miser_bench_read_gbs(1), bw2 = miser_bench_read_gbs(2);
    printf("  read bandwidth probe      1 thread %6.1f GB/s   2 threads %6.1f GB/s\n", bw1, bw2);
    double sg1 = openblas_gflops(1, 128, 4096, 1024), sg2 = openblas_gflops(2, 128, 4096, 1024);
    if (isnan(sg1)) printf("  OpenBLAS sgemm            not installed (libopenblas.so.0)\n");
    else printf("  OpenBLAS sgemm 128x1024x4096   1 thread %6.1f GFLOP/s   2 threads %6.1f GFLOP/s\n", sg1, sg2);
    printf("  thread pool hand-off      %.0f ns per op (2 threads)\n\n", pool_sync_ns(2));

    static const miser_dtype dts[] = {MISER_DTYPE_F32, MISER_DTYPE_F16, MISER_DTYPE_BF16, MISER_DTYPE_Q8_0};
    const int64_t C = 1024, NF = 4096, V = 50257;
    printf("%-34s %-6s %8s %12s %12s %12s\n", "kernel (GPT-2 medium shape)", "dtype", "set", "1 thread", "2 threads",
           "unit");
    for (size_t d = 0; d < 4; d++) {
        miser_dtype dt = dts[d];
        /* decode GEMV, Conv1D layout [C, 4C]: cycle matrices past the L3 */
        uint64_t bytes = miser_dtype_bytes(dt, (uint64_t)(C * NF));
        int nmat = (int)((256ull << 20) / bytes) + 1;
        if (quick) nmat = 2;
        void **ws = calloc((size_t)nmat, sizeof *ws);
        for (int i = 0; i < nmat; i++) ws[i] = make_weights(dt, C * NF);
        float *x = make_weights(MISER_DTYPE_F32, 128 * C), *y = aligned_alloc(64, sizeof(float) * 128 * (size_t)V);
        miser_linear_args a = {.M = 1, .N = NF, .K = C, .x = x, .ldx = C, .wdt = dt, .wsk = NF, .wsn = 1, .y = y, .ldy = NF};
        double r1 = time_linear(ref, 1, a, ws, nmat, 2);
        double s1 = time_linear(best, 1, a, ws, nmat, nmat * 4), s2 = time_linear(best, 2, a, ws, nmat, nmat * 4);
        printf("%-34s %-6s %8s %9.1f    %9s    %-12s\n", "gemv [1,1024]x[1024,4096]", miser_dtype_name(dt), "ref",
               bytes / r1 / 1e9, "", "GB/s");
        printf("%-34s %-6s %8s %9.1f    %9.1f    %-12s\n", "", "", best->name, bytes / s1 / 1e9, bytes / s2 / 1e9,
               "GB/s");
        /* prefill GEMM, M = 128 */
        a.M = 128;
        double flops = 2.0 * 128 * C * NF;
        double g1 = time_linear(best, 1, a, ws, 1, 3), g2 = time_linear(best, 2, a, ws, 1, 3);
        printf("%-34s %-6s %8s %9.1f    %9.1f    %-12s\n", "gemm [128,1024]x[1024,4096]", "", best->name, flops / g1 / 1e9,
               flops / g2 / 1e9, "GFLOP/s");
        if (dt == MISER_DTYPE_Q8_0) {
            /* the layout the q8_0 precision cache stores Conv1D weights in: W^T [4096, 1024], blocks
             * along k (int8 products where the set has them: kernels.h q8_dots_int8_min_m) */
            miser_linear_args t = a;
            t.wsk = 1, t.wsn = C, t.M = 1;
            double d1 = time_linear(best, 1, t, ws, nmat, nmat * 4), d2 = time_linear(best, 2, t, ws, nmat, nmat * 4);
            printf("%-34s %-6s %8s %9.1f    %9.1f    %-12s\n", "gemv, W^T [4096,1024] (cache)", "", best->name,
                   bytes / d1 / 1e9, bytes / d2 / 1e9, "GB/s");
            t.M = 128;
            double t1 = time_linear(best, 1, t, ws, 1, 3), t2 = time_linear(best, 2, t, ws, 1, 3);
            printf("%-34s %-6s %8s %9.1f    %9.1f    %-12s\n",
                   best->q8_dots_int8_min_m ? "gemm, W^T (cache), int8 x" : "gemm, W^T (cache)", "", best->name,
                   flops / t1 / 1e9, flops / t2 / 1e9, "GFLOP/s");
        }
        for (int i = 0; i < nmat; i++) free(ws[i]);
        /* logits GEMV over the tied embedding [V, C] (dot layout) */
        void *wte = make_weights(dt, V * C);
        uint64_t wbytes = miser_dtype_bytes(dt, (uint64_t)(V * C));
        miser_linear_args l = {.M = 1, .N = V, .K = C, .x = x, .ldx = C, .w = wte, .wdt = dt, .wsk = 1, .wsn = C, .y = y, .ldy = V};
        double l1 = time_linear(best, 1, l, &wte, 1, 3), l2 = time_linear(best, 2, l, &wte, 1, 3);
        printf("%-34s %-6s %8s %9.1f    %9.1f    %-12s\n", "logits [1,1024] x wte[50257,1024]^T", "", best->name,
               wbytes / l1 / 1e9, wbytes / l2 / 1e9, "GB/s");
        free(wte);
        free(x);
        free(y);
        free(ws);
    }
    /* GGUF's 4-bit weights in their dot layout (W^T [4096, 1024], blocks along
     * k), integer dots on quantised x (quant4.h, qdot_avx2.c) */
    static const miser_dtype qdts[] = {MISER_DTYPE_Q4_0, MISER_DTYPE_Q4_K, MISER_DTYPE_Q6_K};
    for (size_t d = 0; d < 3; d++) {
        const miser_dtype dt = qdts[d];
        const uint64_t bytes = miser_dtype_bytes(dt, (uint64_t)(C * NF));
        const size_t bb = miser_dtype_block_bytes(dt);
        int nmat = (int)((256ull << 20) / bytes) + 1;
        if (quick) nmat = 2;
        void **ws = calloc((size_t)nmat, sizeof *ws);
        for (int i = 0; i < nmat; i++) {
            uint8_t *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
            for (uint64_t j = 0; j < bytes; j++) p[j] = (uint8_t)(frand() * 127 + 128);
            const uint16_t h = miser_f32_to_f16(0.01f);
            for (uint64_t b = 0; b < bytes / bb; b++) /* sane block scales: d (and Q4_K's dmin) */
                if (dt == MISER_DTYPE_Q6_K) memcpy(p + b * bb + 208, &h, 2);
                else {
                    memcpy(p + b * bb, &h, 2);
                    if (dt == MISER_DTYPE_Q4_K) memcpy(p + b * bb + 2, &h, 2);
                }
            ws[i] = p;
        }
        float *x = make_weights(MISER_DTYPE_F32, 128 * C), *y = aligned_alloc(64, sizeof(float) * 128 * (size_t)NF);
        miser_linear_args t = {.M = 1, .N = NF, .K = C, .x = x, .ldx = C, .wdt = dt, .wsk = 1, .wsn = C, .y = y, .ldy = NF};
        const double d1 = time_linear(best, 1, t, ws, nmat, nmat * 4), d2 = time_linear(best, 2, t, ws, nmat, nmat * 4);
        printf("%-34s %-6s %8s %9.1f    %9.1f    %-12s\n", "gemv, W^T [4096,1024], int8 x", miser_dtype_name(dt),
               best->name, bytes / d1 / 1e9, bytes / d2 / 1e9, "GB/s");
        t.M = 128;
        const double flops = 2.0 * 128 * C * NF, t1 = time_linear(best, 1, t, ws, 1, 3), t2 = time_linear(best, 2, t, ws, 1, 3);
        printf("%-34s %-6s %8s %9.1f    %9.1f    %-12s\n", "gemm, W^T [4096,1024], int8 x", "", best->name,
               flops / t1 / 1e9, flops / t2 / 1e9, "GFLOP/s");
        for (int i = 0; i < nmat; i++) free(ws[i]);
        free(ws);
        free(x);
        free(y);
    }
    for (int f16 = 0; f16 < 2; f16++) {
        double a1 = time_attention(best, 1, f16, 1024), a2 = time_attention(best, 2, f16, 1024);
        printf("%-34s %-6s %8s %9.1f    %9.1f    %-12s\n", "attention decode S=1024 H=16 D=64", f16 ? "f16" : "f32",
               best->name, a1, a2, "GB/s (K+V)");
    }
    return 0;
}

/* ---- end to end ---- */

static int g_llama; /* --arch llama: the SmolLM2-360M shape */

static int ensure_medium(const char *dir)
{
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%.4000s/model.safetensors", dir);
    struct stat sb;
    if (!stat(cfg, &sb)) return 0;
    fprintf(stderr, "e2e: creating the %s-shaped checkpoint in %s (~1.4 GB, once)\n",
            g_llama ? "SmolLM2-360M" : "GPT-2-medium", dir);
    char parent[4096];
    snprintf(parent, sizeof parent, "%.4000s", dir);
    for (char *s = parent + 1; (s = strchr(s, '/')); s++) { /* mkdir -p of the parents */
        *s = 0;
        mkdir(parent, 0755);
        *s = '/';
    }
    miser_gpt2_config c;
    if (g_llama ? miser_llama_preset("smollm2-360m", &c) : miser_gpt2_preset("medium", &c)) return -1;
    miser_synth_options o = {.dtype = MISER_DTYPE_F32, .seed = 1};
    if (g_llama ? miser_synth_llama(dir, &c, &o) : miser_synth_gpt2(dir, &c, &o)) {
        fprintf(stderr, "e2e: %s\n", miser_error_message());
        return -1;
    }
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* This process's anonymous resident memory in MB (RssAnon), NAN if unknown. */
static double rss_anon_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double mb = NAN;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "RssAnon:", 8)) mb = atof(line + 8) / 1024.0;
    if (f) fclose(f);
    return mb;
}

/* The largest full-context bound of this run's miser configurations (MB) */
static double g_full_max_mb = NAN;

/* One run: (decode tok/s, prefill tok/s, RssAnon MB with the session still
 * alive after both) on a fresh session (the architecture's default KV
 * dtype: f16 for Llama, f32 for GPT-2). *full: the RssAnon the process
 * reaches once every KV position is written, as a bound: RssAnon before
 * the session plus everything the session allocates (KV, arena, scratch,
 * the rest: miser_session_footprint_get; the run itself writes only the
 * first 129 positions, so RssAnon stays below it). *kv16: the cache is f16. */
static int e2e_once(const miser_plan *plan, int threads, double *dec, double *pre, double *anon, double *full,
                    int *kv16)
{
    miser_session *s;
    miser_session_options so = {.capacity = g_llama ? 1024 : 260, .threads = threads};
    miser_session_footprint fp;
    miser_session_footprint_get(plan, &so, &fp);
    const miser_graph *pg = miser_plan_graph(plan);
    *kv16 = fp.kv_bytes == (uint64_t)(2 * pg->n_layer * fp.capacity * (pg->n_kv_head > 0 ? pg->n_kv_head : pg->n_head) *
                                      pg->head_dim) * 2u;
    *full = rss_anon_mb() + (double)(fp.kv_bytes + fp.arena_bytes + fp.scratch_bytes + fp.other_bytes) / 1048576.0;
    if (!(g_full_max_mb >= *full)) g_full_max_mb = *full;
    if (miser_session_create(plan, &so, &s)) return -1;
    int32_t ids[128];
    for (int i = 0; i < 128; i++) ids[i] = (int32_t)(i * 389 % (g_llama ? 49152 : 50000));
    miser_generate_options go = {.max_new_tokens = 128, .stop_at_eos = 0};
    miser_generate_result r;
    if (miser_generate(s, ids, 1, &go, NULL, NULL, &r)) {
        miser_session_free(s);
        return -1;
    }
    *dec = r.n > 1 ? (double)(r.n - 1) / r.decode_s : NAN;
    miser_free(r.ids);
    miser_session_reset(s);
    double t0 = now_s();
    const float *lg;
    if (miser_session_eval(s, ids, 128, &lg)) {
        miser_session_free(s);
        return -1;
    }
    *pre = 128.0 / (now_s() - t0);
    *anon = rss_anon_mb();
    miser_session_free(s);
    return 0;
}

#define E2E_MAX_ROWS 64

typedef struct {
    const char *runtime; /* "miser", "llamacpp", "ort", "torch" */
    char prec[8];
    int threads;
    double dec, pre, mem_mb; /* mem: miser's RssAnon with a session alive; peers' peak RSS */
} e2e_row;

/* One runtime configuration's figures, one per round; memory: the highest */
typedef struct {
    const char *runtime;
    char prec[8];
    int threads, n;
    double dec[15], pre[15], mem_mb;
} e2e_samples;

static void add_sample(e2e_samples *s, int *n, const char *runtime, const char *prec, int threads, double dec,
                       double pre, double mem)
{
    int i = 0;
    while (i < *n && !(!strcmp(s[i].runtime, runtime) && !strcmp(s[i].prec, prec) && s[i].threads == threads)) i++;
    if (i == *n) {
        if (*n >= E2E_MAX_ROWS) return;
        s[i] = (e2e_samples){.runtime = runtime, .threads = threads, .mem_mb = NAN};
        snprintf(s[i].prec, sizeof s[i].prec, "%s", prec);
        (*n)++;
    }
    if (s[i].n >= 15) return;
    s[i].dec[s[i].n] = dec;
    s[i].pre[s[i].n] = pre;
    s[i].n++;
    if (!isnan(mem) && !(s[i].mem_mb >= mem)) s[i].mem_mb = mem;
}

/* Appends bench_peers.py's --json-summary rows; -1 if the file is unusable. */
static int read_peer_rows(const char *path, e2e_row *rows, int *n, int cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char buf[16384];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    const int whole = feof(f) && !ferror(f);
    fclose(f);
    if (!whole) {
        fprintf(stderr, "e2e: %s: unreadable or over %zu bytes, so no ratios\n", path, sizeof buf - 1);
        return -1;
    }
    buf[len] = 0;
    cJSON *j = cJSON_Parse(buf), *it;
    if (!cJSON_IsArray(j)) {
        fprintf(stderr, "e2e: %s: not the peers' JSON summary\n", path);
        cJSON_Delete(j);
        return -1;
    }
    static const char *const names[] = {"llamacpp", "ort", "torch", "llamacpp_llama"};
    cJSON_ArrayForEach(it, j)
    {
        const cJSON *ad = cJSON_GetObjectItem(it, "adapter"), *pr = cJSON_GetObjectItem(it, "precision"),
                    *th = cJSON_GetObjectItem(it, "threads"), *de = cJSON_GetObjectItem(it, "decode_tok_s"),
                    *pf = cJSON_GetObjectItem(it, "prefill_tok_s"), *pk = cJSON_GetObjectItem(it, "peak_rss_mb");
        if (!cJSON_IsString(ad) || !cJSON_IsString(pr) || !cJSON_IsNumber(th) || !cJSON_IsNumber(de) ||
            !cJSON_IsNumber(pf) || *n >= cap)
            continue;
        const char *name = NULL;
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
            if (!strcmp(ad->valuestring, names[k])) name = names[k];
        if (!name) continue;
        if (!strcmp(name, "llamacpp_llama")) name = "llamacpp"; /* the same runtime, on the Llama checkpoint */
        e2e_row *r = &rows[(*n)++];
        *r = (e2e_row){.runtime = name, .threads = th->valueint, .dec = de->valuedouble, .pre = pf->valuedouble,
                       .mem_mb = cJSON_IsNumber(pk) ? pk->valuedouble : NAN};
        snprintf(r->prec, sizeof r->prec, "%s", pr->valuestring);
    }
    cJSON_Delete(j);
    return 0;
}

static const e2e_row *find_row(const e2e_row *rows, int n, const char *runtime, const char *prec, int threads)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(rows[i].runtime, runtime) && !strcmp(rows[i].prec, prec) && rows[i].threads == threads)
            return &rows[i];
    return NULL;
}

/* The table with miser's rows and the ratios, all from this run. */
static void print_side_by_side(const e2e_row *rows, int n, int peers_ok)
{
    printf("\nside by side, this run (medians). miser memory: RssAnon with a session alive; peers: peak RSS "
           "(mmapped weights included)\n");
    printf("| runtime | threads | decode tok/s | prefill tok/s | MB | decode / llama.cpp | prefill / llama.cpp | "
           "prefill / ORT fp32 |\n|---|---|---|---|---|---|---|---|\n");
    int met = 0, missed = 0;
    char misses[1024] = "";
    for (int i = 0; i < n; i++) {
        const e2e_row *r = &rows[i];
        char rd[32] = "", rp[32] = "", ro[32] = "";
        if (!strcmp(r->runtime, "miser") && peers_ok) {
            const e2e_row *l = find_row(rows, n, "llamacpp", r->prec, r->threads);
            const e2e_row *o = find_row(rows, n, "ort", "f32", r->threads);
            struct {
                const e2e_row *peer;
                double mine, theirs, target;
                char *out;
                const char *what;
            } c[3] = {{l, r->dec, l ? l->dec : 0, 1.05, rd, "decode vs llama.cpp"},
                      {l, r->pre, l ? l->pre : 0, g_llama ? 1.5 : 2.0, rp, "prefill vs llama.cpp"},
                      {!strcmp(r->prec, "f32") ? o : NULL, r->pre, o ? o->pre : 0, 1.0, ro, "prefill vs ORT"}};
            for (int k = 0; k < 3; k++) {
                if (!c[k].peer || !(c[k].theirs > 0)) continue;
                const double x = c[k].mine / c[k].theirs;
                const int ok = x >= c[k].target;
                snprintf(c[k].out, 32, "%.3fx %s", x, ok ? "(>= target)" : "(below target)");
                if (ok) met++;
                else {
                    missed++;
                    size_t L = strlen(misses);
                    snprintf(misses + L, sizeof misses - L, "%s%s %s %d thr %.3fx < %.2fx", L ? "; " : "", c[k].what,
                             r->prec, r->threads, x, c[k].target);
                }
            }
        }
        char name[32];
        snprintf(name, sizeof name, "%s %s", r->runtime, r->prec);
        printf("| %s | %d | %.2f | %.1f | %.0f | %s | %s | %s |\n", name, r->threads, r->dec, r->pre, r->mem_mb,
               rd[0] ? rd : "-", rp[0] ? rp : "-", ro[0] ? ro : "-");
    }
    if (g_llama && !isnan(g_full_max_mb)) /* issue 14's memory target */
        printf("miser anonymous memory with a session alive at context 1024, every KV position written (RssAnon "
               "before the session + the session's allocation): at most %.1f MB over the configurations: %s the "
               "target (<= 64 MB)\n",
               g_full_max_mb, g_full_max_mb <= 64 ? "meets" : "misses");
    if (met + missed && g_llama)
        printf("issue 14 targets (decode >= 1.05x llama.cpp, prefill >= 1.5x llama.cpp): %d met, %d missed%s%s\n",
               met, missed, missed ? ": " : "", misses);
    else if (met + missed)
        printf("issue 6 targets (decode >= 1.05x llama.cpp, prefill >= 2x llama.cpp and >= 1x ORT fp32): %d met, "
               "%d missed%s%s\n",
               met, missed, missed ? ": " : "", misses);
    else if (!peers_ok)
        printf("no peer figures from this run, so no ratios\n");
}

int miser_bench_e2e_gguf(int argc, char **argv); /* bench_gguf.c: --gguf FILES */

int miser_bench_e2e(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--gguf")) return miser_bench_e2e_gguf(argc, argv);
    char dir[4096];
    const char *home = getenv("HOME");
    snprintf(dir, sizeof dir, "%s/.cache/miser/bench/medium", home ? home : ".");
    int runs = 3;
    const char *threads_list = "1,2", *prec_list = "f32,f16,q8_0";
    const char *peer_list = "llamacpp:f32,llamacpp:f16,llamacpp:q8_0,ort,torch";
    int peers = 1, dir_set = 0, peers_set = 0;
    e2e_row rows[E2E_MAX_ROWS];
    int nrows = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: miser-bench e2e [--dir DIR] [--runs N] [--threads LIST] [--precision LIST]\n"
                   "                       [--peers LIST | --no-peers] [--arch gpt2|llama]\n\n"
                   "Decode (1-token prompt, 128 new) and prefill (128-token prompt) tok/s on a GPT-2-medium-shaped\n"
                   "checkpoint (written to DIR if missing) and the peers at the same thread counts, with miser's\n"
                   "ratios against the issue's targets. N rounds, each measuring every miser configuration (a\n"
                   "fresh session) and then every peer (a fresh process) once; figures are medians over rounds.\n\n"
                   "  --dir DIR         checkpoint directory (default ~/.cache/miser/bench/medium)\n"
                   "  --runs N          rounds (default 3, at most 15)\n"
                   "  --threads LIST    thread counts, e.g. 1,2 (default)\n"
                   "  --precision LIST  miser precisions (default f32,f16,q8_0; also bf16, q4_0, q4_k)\n"
                   "  --peers LIST      peers for tools/peers/bench_peers.py (default %s)\n"
                   "  --no-peers        miser only\n"
                   "  --arch llama      a SmolLM2-360M-shaped Llama checkpoint (~/.cache/miser/bench/smollm2-360m),\n"
                   "                    context 1024, against llamacpp_llama (default peers llamacpp_llama:f32,f16,q8_0);\n"
                   "                    the KV cache is the architecture's default (f16, as llama.cpp's), and a\n"
                   "                    line bounds RssAnon at a full context of 1024 (issue 14: <= 64 MB)\n"
                   "  --gguf LIST       GGUF files as they are (with --runs, --threads, --no-peers only): miser and\n"
                   "                    llama.cpp (tools/gguf/bench_gguf.js) on each, the ratios and the fraction of the\n"
                   "                    read bandwidth miser's decode reaches (tools/gguf/make_bench_ggufs.sh makes them)\n",
                   peer_list);
            return 0;
        } else if (!strcmp(argv[i], "--no-peers")) peers = 0;
        else if (v && !strcmp(argv[i], "--dir")) snprintf(dir, sizeof dir, "%s", v), dir_set = 1, i++;
        else if (v && !strcmp(argv[i], "--arch") && (!strcmp(v, "llama") || !strcmp(v, "gpt2")))
            g_llama = !strcmp(v, "llama"), i++;
        else if (v && !strcmp(argv[i], "--runs")) runs = atoi(v), i++;
        else if (v && !strcmp(argv[i], "--threads")) threads_list = v, i++;
        else if (v && !strcmp(argv[i], "--precision")) prec_list = v, i++;
        else if (v && !strcmp(argv[i], "--peers")) peer_list = v, peers_set = 1, i++;
        else {
            fprintf(stderr, "e2e: unknown or incomplete option '%s' (options: --dir DIR, --runs N, --threads LIST, "
                            "--precision LIST, --peers LIST, --no-peers)\n",
                    argv[i]);
            return 2;
        }
    }
    {
        char tl[64]; /* the size the run loop copies it into */
        const size_t len = strlen(threads_list);
        int n = 0, bad = len >= sizeof tl || strspn(threads_list, "0123456789,") != len;
        if (!bad) memcpy(tl, threads_list, len + 1);
        for (char *sv = NULL, *tn = strtok_r(tl, ",", &sv); tn && !bad; tn = strtok_r(NULL, ",", &sv), n++)
            bad = atoi(tn) < 1 || atoi(tn) > 256;
        if (bad || n == 0) {
            fprintf(stderr, "e2e: --threads: expected thread counts (1-256) separated by commas, got '%s'\n",
                    threads_list);
            return 2;
        }
    }
    for (const char *c = peer_list; *c; c++)
        if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789_:,", *c)) {
            fprintf(stderr, "e2e: --peers: expected adapter[:precision] names separated by commas, got '%s'\n",
                    peer_list);
            return 2;
        }
    if (runs < 1) runs = 1;
    if (runs > 15) runs = 15;
    if (g_llama && !dir_set) snprintf(dir, sizeof dir, "%s/.cache/miser/bench/smollm2-360m", home ? home : ".");
    if (g_llama && !peers_set) peer_list = "llamacpp_llama:f32,llamacpp_llama:f16,llamacpp_llama:q8_0";
    if (ensure_medium(dir)) return 1;
    printf("end to end, %s (%d rounds; decode: 1-token prompt, 128 new; prefill: 128-token prompt)\n", dir,
           runs);
    printf("%-28s %16s %16s %14s\n", "runtime", "decode tok/s", "prefill tok/s", "threads");
    if (!g_llama) { /* issue 6's figures are for the GPT-2-medium shape */
        printf("%-28s %16s %16s %14s\n", "llama.cpp f32 / f16 / q8_0", "11.6/18.8/25.7", "80/79/152", "2 (issue)");
        printf("%-28s %16s %16s %14s\n", "ONNX Runtime fp32", "11.2", "180", "2 (issue)");
        printf("%-28s %16s %16s %14s\n", "PyTorch 1.13 fp32", "5.9", "137", "2 (issue)");
    }
    /* Rounds: each measures every miser configuration once (a fresh session)
     * and then every peer once (a fresh process), and the figures are medians
     * over rounds. On a shared machine whose speed drifts over minutes, this
     * spreads the slow and fast spells over all runtimes alike; measuring
     * all of miser's runs first and the peers' afterwards let one spell
     * decide a ratio. */
    e2e_samples smp[E2E_MAX_ROWS];
    int nsmp = 0, peers_ok = peers, have_peers = peers;
    if (peers && access(MISER_SOURCE_DIR "/tools/peers/node_modules/node-llama-cpp", F_OK) != 0) {
        printf("peers: not installed, so not measured in this run (install them with `make peers`)\n");
        peers_ok = have_peers = 0;
    }
    char name[64];
    for (int round = 0; round < runs; round++) {
        char plist[256];
        snprintf(plist, sizeof plist, "%s", prec_list);
        for (char *save = NULL, *pn = strtok_r(plist, ",", &save); pn; pn = strtok_r(NULL, ",", &save)) {
            miser_dtype prec;
            if (miser_dtype_parse(pn, &prec)) {
                fprintf(stderr, "e2e: unknown precision '%s'\n", pn);
                return 2;
            }
            char *mdir = NULL;
            char note[512] = "";
            if (miser_precision_prepare(dir, prec, NULL, &mdir, note, sizeof note, NULL)) {
                fprintf(stderr, "e2e: %s\n", miser_error_message());
                return 1;
            }
            if (note[0] && round == 0) fprintf(stderr, "e2e: %s\n", note);
            miser_model *m = NULL;
            miser_plan *plan = NULL;
            miser_compile_options co = {.max_batch = 128, .max_context = g_llama ? 1024 : 260};
            if (miser_model_open(mdir, &m) || miser_plan_compile(m, &co, &plan)) {
                fprintf(stderr, "e2e: %s\n", miser_error_message());
                miser_model_free(m);
                miser_free(mdir);
                return 1;
            }
            char tl[64];
            snprintf(tl, sizeof tl, "%s", threads_list);
            for (char *s2 = NULL, *tn = strtok_r(tl, ",", &s2); tn; tn = strtok_r(NULL, ",", &s2)) {
                int t = atoi(tn);
                double dec, pre, anon = NAN, full = NAN;
                int kv16 = 0;
                if (e2e_once(plan, t, &dec, &pre, &anon, &full, &kv16)) {
                    fprintf(stderr, "e2e: %s\n", miser_error_message());
                    miser_plan_free(plan);
                    miser_model_free(m);
                    miser_free(mdir);
                    return 1;
                }
                snprintf(name, sizeof name, "miser %s (%s)", miser_dtype_name(prec), miser_kernels_get()->name);
                printf("round %d: %-24s %2d thr: decode %6.2f tok/s  prefill %6.1f tok/s  RssAnon %.0f MB "
                       "(full context %lld: <= %.1f MB, KV %s)\n",
                       round + 1, name, t, dec, pre, anon, g_llama ? 1024LL : 260LL, full, kv16 ? "f16" : "f32");
                fflush(stdout);
                add_sample(smp, &nsmp, "miser", miser_dtype_name(prec), t, dec, pre, anon);
            }
            miser_plan_free(plan);
            miser_model_free(m);
            miser_free(mdir);
        }
        /* the peers on the same weights, one run each, in this round */
        if (!have_peers) continue;
        char summary[] = "/tmp/miser-e2e-peers-XXXXXX";
        int fd = mkstemp(summary);
        if (fd < 0) {
            perror("e2e: mkstemp");
            return 1;
        }
        close(fd);
        char cmd[sizeof dir + 1024];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 %s/tools/peers/bench_peers.py --model '%s' --threads '%s' --runs 1 "
                 "--only '%s' --json-summary '%s'",
                 MISER_SOURCE_DIR, dir, threads_list, peer_list, summary);
        printf("round %d: peers on the same weights (%s):\n", round + 1, cmd);
        fflush(stdout);
        e2e_row prow[E2E_MAX_ROWS];
        int np = 0;
        if (system(cmd) != 0) {
            fprintf(stderr, "e2e: the peer benchmark failed (its output is above)\n");
            peers_ok = 0;
        } else if (read_peer_rows(summary, prow, &np, E2E_MAX_ROWS) != 0)
            peers_ok = 0;
        for (int i = 0; i < np; i++)
            add_sample(smp, &nsmp, prow[i].runtime, prow[i].prec, prow[i].threads, prow[i].dec, prow[i].pre,
                       prow[i].mem_mb);
        unlink(summary);
    }
    /* medians over rounds */
    printf("\nmedians of %d rounds\n", runs);
    printf("%-28s %16s %16s %14s\n", "runtime", "decode tok/s", "prefill tok/s", "threads");
    for (int i = 0; i < nsmp && nrows < E2E_MAX_ROWS; i++) {
        e2e_samples *q = &smp[i];
        qsort(q->dec, (size_t)q->n, sizeof *q->dec, cmp_d);
        qsort(q->pre, (size_t)q->n, sizeof *q->pre, cmp_d);
        const int h = q->n / 2, odd = q->n & 1;
        rows[nrows] = (e2e_row){.runtime = q->runtime, .threads = q->threads,
                                .dec = odd ? q->dec[h] : (q->dec[h - 1] + q->dec[h]) / 2,
                                .pre = odd ? q->pre[h] : (q->pre[h - 1] + q->pre[h]) / 2, .mem_mb = q->mem_mb};
        snprintf(rows[nrows].prec, sizeof rows[nrows].prec, "%s", q->prec);
        snprintf(name, sizeof name, "%s %s", q->runtime, q->prec);
        printf("%-28s %16.2f %16.1f %14d\n", name, rows[nrows].dec, rows[nrows].pre, q->threads);
        nrows++;
    }
    print_side_by_side(rows, nrows, peers_ok);
    return 0;
}
