/* `miser-bench e2e --gguf A.gguf,B.gguf,...`: the end-to-end figures on GGUF
 * files as they are (issue 15), miser side by side with llama.cpp on the
 * same files: decode tok/s (1-token prompt, 128 new) and prefill tok/s
 * (128-token prompt) at each thread count, and the fraction of the
 * machine's read bandwidth miser's decode reaches (bytes of weights read
 * per token x tok/s, against the memory-budget module's probe that `miser
 * plan` uses, cached, and a read probe measured in this run, each round).
 * N rounds, each measuring every file with miser (a fresh session) and
 * then with llama.cpp (tools/gguf/bench_gguf.js, a fresh process per
 * figure) and the probe; figures are medians over rounds, so a slow spell
 * of a shared machine falls on both runtimes. The files are made by
 * tools/gguf/make_bench_ggufs.sh (docs/gguf.md). */
#include "bench_common.h"
#include "miser/alloc.h"
#include "miser/budget.h"
#include "miser/model.h"
#include "miser/runtime.h"
#include "kernels/kernels.h"
#include "runtime/threadpool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int miser_bench_e2e_gguf(int argc, char **argv);

#define GB_MAX_FILES 16
#define GB_MAX_THREADS 4
#define GB_MAX_RUNS 15
#define GB_TOKENS 128

static double gb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- read probe (this run): miser_bench_read_gbs, bench_kernels.c ---- */

static double gb_probe_bw(int threads) { return miser_bench_read_gbs(threads) * 1e9; }

/* ---- miser on one file ---- */

/* Weight bytes one decoded token reads: every tensor but the position
 * embedding (one row) and, when the head is its own tensor, the token
 * embedding (one row). */
static double gb_bytes_per_token(const miser_model *m)
{
    double sum = 0;
    int untied = miser_model_tensor(m, "lm_head.weight") != NULL;
    for (size_t i = 0; i < miser_model_tensor_count(m); i++) {
        const miser_tensor_info *t = miser_model_tensor_at(m, i);
        if (!strcmp(t->name, "wpe.weight")) continue;
        if (untied && (!strcmp(t->name, "wte.weight") || !strcmp(t->name, "model.embed_tokens.weight"))) continue;
        sum += (double)t->nbytes;
    }
    return sum;
}

static int gb_miser(const char *file, const int *thr, int nthr, double *dec, double *pre, double *bytes, char *kern,
                    size_t kcap)
{
    miser_model *m = NULL;
    miser_plan *plan = NULL;
    miser_compile_options co = {.max_batch = GB_TOKENS, .max_context = 260};
    if (miser_model_open(file, &m) || miser_plan_compile(m, &co, &plan)) {
        fprintf(stderr, "e2e: %s\n", miser_error_message());
        miser_model_free(m);
        return -1;
    }
    *bytes = gb_bytes_per_token(m);
    const int64_t V = miser_model_config(m)->n_vocab;
    int rc = 0;
    for (int k = 0; k < nthr && !rc; k++) {
        miser_session *s = NULL;
        miser_session_options so = {.capacity = 260, .threads = thr[k]};
        int32_t ids[GB_TOKENS];
        for (int i = 0; i < GB_TOKENS; i++) ids[i] = (int32_t)((i * 389 + 1) % V);
        miser_generate_options go = {.max_new_tokens = GB_TOKENS, .stop_at_eos = 0};
        miser_generate_result r;
        const float *lg;
        if (miser_session_create(plan, &so, &s) || miser_generate(s, ids, 1, &go, NULL, NULL, &r)) {
            fprintf(stderr, "e2e: %s: %s\n", file, miser_error_message());
            rc = -1;
        } else {
            dec[k] = r.n > 1 ? (double)(r.n - 1) / r.decode_s : NAN;
            miser_free(r.ids);
            miser_session_reset(s);
            const double t0 = gb_now();
            if (miser_session_eval(s, ids, GB_TOKENS, &lg)) rc = -1;
            pre[k] = GB_TOKENS / (gb_now() - t0);
        }
        miser_session_free(s);
    }
    snprintf(kern, kcap, "%s", miser_kernels_get()->name);
    miser_plan_free(plan);
    miser_model_free(m);
    return rc;
}

/* ---- llama.cpp on one file: tools/gguf/bench_gguf.js ---- */

static double gb_json_num(const char *s, const char *key)
{
    const char *p = strstr(s, key);
    return p ? atof(p + strlen(key)) : NAN;
}

static double gb_llamacpp(const char *file, const char *ids, int n, int threads, const char *key)
{
    char cmd[8192], out[1024] = "";
    snprintf(cmd, sizeof cmd, "node '%s/tools/gguf/bench_gguf.js' '%s' %s %d %d 2>/dev/null", MISER_SOURCE_DIR, file, ids,
             n, threads);
    FILE *p = popen(cmd, "r");
    if (!p) return NAN;
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = 0;
    if (pclose(p) != 0) return NAN;
    return gb_json_num(out, key);
}

static int gb_cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double gb_median(double *v, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) v[k++] = v[i];
    if (!k) return NAN;
    qsort(v, (size_t)k, sizeof *v, gb_cmp);
    return k & 1 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

static const char *gb_base(const char *path)
{
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

int miser_bench_e2e_gguf(int argc, char **argv)
{
    const char *list = NULL, *threads_list = "1,2";
    int runs = 3, peers = 1;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v && !strcmp(argv[i], "--gguf")) list = v, i++;
        else if (v && !strcmp(argv[i], "--runs")) runs = atoi(v), i++;
        else if (v && !strcmp(argv[i], "--threads")) threads_list = v, i++;
        else if (!strcmp(argv[i], "--no-peers")) peers = 0;
        else {
            fprintf(stderr, "e2e: with --gguf the options are --runs N, --threads LIST, --no-peers; got '%s'\n",
                    argv[i]);
            return 2;
        }
    }
    if (runs < 1) runs = 1;
    if (runs > GB_MAX_RUNS) runs = GB_MAX_RUNS;
    char files[GB_MAX_FILES][1024];
    int nf = 0, thr[GB_MAX_THREADS], nthr = 0;
    {
        char buf[8192];
        snprintf(buf, sizeof buf, "%s", list ? list : "");
        for (char *sv = NULL, *tk = strtok_r(buf, ",", &sv); tk; tk = strtok_r(NULL, ",", &sv)) {
            if (nf == GB_MAX_FILES || strlen(tk) >= sizeof files[0] || access(tk, R_OK)) {
                fprintf(stderr, "e2e: --gguf: '%s': %s\n", tk,
                        nf == GB_MAX_FILES ? "more than 16 files" : "not a readable file");
                return 2;
            }
            snprintf(files[nf++], sizeof files[0], "%s", tk);
        }
        snprintf(buf, sizeof buf, "%s", threads_list);
        for (char *sv = NULL, *tk = strtok_r(buf, ",", &sv); tk; tk = strtok_r(NULL, ",", &sv)) {
            const int t = atoi(tk);
            if (t < 1 || t > 256 || nthr == GB_MAX_THREADS || strspn(tk, "0123456789") != strlen(tk)) {
                fprintf(stderr, "e2e: --threads: expected up to 4 thread counts (1-256) separated by commas, got '%s'\n",
                        threads_list);
                return 2;
            }
            thr[nthr++] = t;
        }
    }
    if (!nf || !nthr) {
        fprintf(stderr, "e2e: --gguf: expected GGUF files separated by commas\n");
        return 2;
    }
    /* refuse a bad file before any long work */
    for (int f = 0; f < nf; f++) {
        miser_model *m = NULL;
        if (miser_model_open(files[f], &m)) {
            fprintf(stderr, "e2e: %s\n", miser_error_message());
            return 3;
        }
        miser_model_free(m);
    }
    if (peers && (access(MISER_SOURCE_DIR "/tools/peers/node_modules/node-llama-cpp", F_OK) || access("/usr/bin/node", X_OK))) {
        printf("llama.cpp: not installed, so not measured in this run (install it with `make peers`)\n");
        peers = 0;
    }
    int cached = 0;
    const double plan_bw = miser_budget_read_bandwidth(&cached);
    char ids128[1024];
    for (int i = 0, k = 0; i < GB_TOKENS; i++)
        k += snprintf(ids128 + k, sizeof ids128 - (size_t)k, "%s%d", i ? "," : "", (i * 389 + 1) % 49152);
    static double md[GB_MAX_FILES][GB_MAX_THREADS][GB_MAX_RUNS], mp[GB_MAX_FILES][GB_MAX_THREADS][GB_MAX_RUNS],
        ld[GB_MAX_FILES][GB_MAX_THREADS][GB_MAX_RUNS], lp[GB_MAX_FILES][GB_MAX_THREADS][GB_MAX_RUNS],
        bw[GB_MAX_THREADS][GB_MAX_RUNS];
    double bytes[GB_MAX_FILES] = {0};
    char kern[32] = "";
    double la[3] = {NAN, NAN, NAN};
    if (getloadavg(la, 3) < 0) la[0] = la[1] = la[2] = NAN;
    printf("end to end on GGUF files (%d rounds; decode: 1-token prompt, %d new; prefill: %d-token prompt); "
           "load average %.2f %.2f %.2f\n", runs, GB_TOKENS, GB_TOKENS, la[0], la[1], la[2]);
    for (int round = 0; round < runs; round++) {
        for (int f = 0; f < nf; f++) {
            double d[GB_MAX_THREADS], p[GB_MAX_THREADS];
            if (gb_miser(files[f], thr, nthr, d, p, &bytes[f], kern, sizeof kern)) return 1;
            for (int k = 0; k < nthr; k++) {
                md[f][k][round] = d[k];
                mp[f][k][round] = p[k];
                printf("round %d: miser (%s)     %-28s %2d thr: decode %7.2f tok/s  prefill %7.1f tok/s\n", round + 1,
                       kern, gb_base(files[f]), thr[k], d[k], p[k]);
                fflush(stdout);
            }
            for (int k = 0; k < nthr && peers; k++) {
                const double dd = gb_llamacpp(files[f], "1", GB_TOKENS + 1, thr[k], "\"decode_tok_s\":");
                const double ps = gb_llamacpp(files[f], ids128, 1, thr[k], "\"prefill_s\":");
                ld[f][k][round] = dd;
                lp[f][k][round] = ps > 0 ? GB_TOKENS / ps : NAN;
                printf("round %d: llama.cpp        %-28s %2d thr: decode %7.2f tok/s  prefill %7.1f tok/s\n", round + 1,
                       gb_base(files[f]), thr[k], dd, lp[f][k][round]);
                fflush(stdout);
            }
        }
        for (int k = 0; k < nthr; k++) bw[k][round] = gb_probe_bw(thr[k]);
    }
    if (getloadavg(la, 3) < 0) la[0] = la[1] = la[2] = NAN;
    printf("\nmedians of %d rounds, load average at the end %.2f %.2f %.2f; read bandwidth: `miser plan`'s probe %.2f "
           "GB/s (%s), this run's probe per thread count below\n",
           runs, la[0], la[1], la[2], plan_bw / 1e9, cached ? "cached" : "measured now");
    printf("| file | threads | miser decode tok/s | llama.cpp decode | decode ratio | miser prefill tok/s | llama.cpp "
           "prefill | prefill ratio | miser decode GB/s | of this run's probe | of plan's probe |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n");
    int met = 0, missed = 0;
    for (int f = 0; f < nf; f++)
        for (int k = 0; k < nthr; k++) {
            const double d = gb_median(md[f][k], runs), p = gb_median(mp[f][k], runs);
            const double l = peers ? gb_median(ld[f][k], runs) : NAN, q = peers ? gb_median(lp[f][k], runs) : NAN;
            double bwk[GB_MAX_RUNS];
            memcpy(bwk, bw[k], sizeof bwk);
            const double probe = gb_median(bwk, runs), gbs = d * bytes[f];
            char rd[48] = "-", rp[48] = "-";
            if (l > 0) {
                snprintf(rd, sizeof rd, "%.3fx %s", d / l, d / l >= 1.05 ? "(>= 1.05)" : "(below 1.05)");
                d / l >= 1.05 ? met++ : missed++;
            }
            if (q > 0) {
                snprintf(rp, sizeof rp, "%.3fx %s", p / q, p / q >= 1.5 ? "(>= 1.5)" : "(below 1.5)");
                p / q >= 1.5 ? met++ : missed++;
            }
            printf("| %s | %d | %.2f | %.2f | %s | %.1f | %.1f | %s | %.2f | %.0f %% | %.0f %% |\n", gb_base(files[f]),
                   thr[k], d, l, rd, p, q, rp, gbs / 1e9, 100 * gbs / probe, 100 * gbs / plan_bw);
        }
    printf("issue 15 targets (decode >= 1.05x and prefill >= 1.5x llama.cpp; Q4_0 decode >= 85 %% of the read "
           "bandwidth): ratios %d met, %d missed\n", met, missed);
    return 0;
}
