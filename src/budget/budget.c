/* Memory-budget predictor (include/miser/budget.h): the peak resident
 * memory of a configuration, computed from the checkpoint's config and
 * tensor headers, the tokenizer's tables, the compiled graph's memory plan
 * and the session's own footprint arithmetic (miser_session_footprint_get),
 * plus a calibrated process constant. Nothing here reads a weight page:
 * the model is only mapped and its header parsed, and the compile skips
 * share_constants (the one pass that samples constant contents). */
#include "miser/budget.h"
#include "kernels/quant4.h" /* the integer linears' per-thread x room (miser_q8a / miser_q8k, MISER_QDOT_SCRATCH_BYTES) */
#include "miser/alloc.h"
#include "miser/batch.h"
#include "miser/model.h"
#include "miser/precision.h"
#include "miser/profiler.h"
#include "miser/runtime.h"
#include "miser/tokenizer.h"

#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct miser_budget_model {
    miser_model *model;  /* mapped, never prefaulted; owned */
    miser_plan *plan;    /* default pipeline minus share_constants, for n_ctx; owned */
    /* plans for contexts below max_batch (generate compiles for the
     * context it runs: max_batch, and so the arena, shrinks to it) and for
     * serve's batched passes (max_batch + parallel rows); compiled on first
     * use by miser_budget_predict, owned */
    struct { int64_t ctx, rows; miser_plan *plan; } small[8];
    int n_small;
    uint64_t heap_fixed; /* allocator bytes live for the model table and the plan */
    uint64_t load_peak;  /* RssAnon growth over model + tokenizer + compile, before any release */
    uint64_t steady;     /* RssAnon growth that stays once the freed pages are released */
    uint64_t tokenizer;  /* the tokenizer's share of `steady` */
    miser_dtype stored;
    int64_t n_ctx;
};

static miser_dtype stored_dtype(const miser_model *m)
{
    uint64_t by[64] = {0};
    miser_dtype best = MISER_DTYPE_F32;
    for (size_t i = 0; i < miser_model_tensor_count(m); i++) {
        const miser_tensor_info *t = miser_model_tensor_at(m, i);
        if (t->ndim != 2 || (unsigned)t->dtype >= 64) continue;
        by[t->dtype] += t->nbytes;
        if (by[t->dtype] > by[best]) best = t->dtype;
    }
    return best;
}

void miser_budget_release_freed(void)
{
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
    malloc_trim(0);
#endif
}

static int64_t anon_bytes(void)
{
    miser_proc_status ps;
    return !miser_proc_read_status(0, &ps) && ps.anon_kb >= 0 ? ps.anon_kb * 1024 : -1;
}

/* The compile `miser generate` (max_batch MISER_BUDGET_MAX_BATCH) or
 * `serve` does, minus share_constants (it samples weight pages);
 * max_context 0: the model's n_ctx. */
static miser_status compile_for(const miser_model *m, int64_t max_context, int64_t max_batch, miser_plan **out)
{
    miser_compile_options co = {.pipeline = "default", .disable = "share_constants", .max_batch = max_batch,
                                .max_context = max_context};
    return miser_plan_compile(m, &co, out);
}

miser_status miser_budget_open(const char *model_dir, miser_budget_model **out)
{
    *out = NULL;
    /* the pages freed so far would be reused by what is measured below:
     * release them first, so that the growth is what a fresh process pays */
    miser_budget_release_freed();
    miser_budget_model *b = miser_calloc(MISER_MEM_OTHER, 1, sizeof *b);
    if (!b) return MISER_ERR_NOMEM;
    /* the order of `miser generate`: model, tokenizer, compile */
    const int64_t a0 = anon_bytes();
    const uint64_t before = miser_mem_total().current;
    miser_tokenizer *tok = NULL;
    miser_status st = miser_model_open(model_dir, &b->model);
    if (!st) st = miser_tokenizer_open(model_dir, &tok);
    if (!st) st = compile_for(b->model, 0, MISER_BUDGET_MAX_BATCH, &b->plan);
    if (st) {
        miser_tokenizer_free(tok);
        miser_budget_free(b);
        return st;
    }
    /* what the load made resident (the tokenizer's parse tree and the
     * passes' temporaries are freed into pages the process keeps), then
     * what stays once generate releases them (miser_budget_release_freed
     * before its sessions exist) */
    const int64_t a1 = anon_bytes();
    miser_budget_release_freed();
    const int64_t a2 = anon_bytes();
    const uint64_t live = miser_mem_total().current - before;
    uint64_t tok_heap = miser_mem_total().current;
    miser_tokenizer_free(tok);
    tok_heap -= miser_mem_total().current;
    b->heap_fixed = live - tok_heap;
    b->load_peak = a0 >= 0 && a1 > a0 ? (uint64_t)(a1 - a0) : live;
    b->steady = a0 >= 0 && a2 > a0 ? (uint64_t)(a2 - a0) : live;
    if (b->steady < live) b->steady = live;
    if (b->load_peak < b->steady) b->load_peak = b->steady;
    /* the tokenizer's share: what the model table and the plan do not hold */
    b->tokenizer = b->steady > b->heap_fixed ? b->steady - b->heap_fixed : tok_heap;
    /* leave the process as it was: what the caller loads next starts from
     * released pages, as in a fresh process */
    miser_budget_release_freed();
    b->stored = stored_dtype(b->model);
    b->n_ctx = miser_model_config(b->model)->n_ctx;
    *out = b;
    return MISER_OK;
}

void miser_budget_free(miser_budget_model *b)
{
    if (!b) return;
    for (int i = 0; i < b->n_small; i++) miser_plan_free(b->small[i].plan);
    miser_plan_free(b->plan);
    miser_model_free(b->model);
    miser_free(b);
    /* generate / serve load for real next: from released pages, as a
     * fresh process would */
    miser_budget_release_freed();
}

int64_t miser_budget_n_ctx(const miser_budget_model *b) { return b->n_ctx; }
miser_dtype miser_budget_stored_dtype(const miser_budget_model *b) { return b->stored; }

static int width(miser_dtype d)
{
    switch (d) {
    case MISER_DTYPE_F32: return 4;
    case MISER_DTYPE_F16:
    case MISER_DTYPE_BF16: return 3;
    case MISER_DTYPE_Q8_0: return 2;
    default: return 1;
    }
}

int miser_budget_precision_ok(const miser_budget_model *b, miser_dtype p)
{
    if (p == b->stored) return 1;
    /* the cache converts f32/f16/bf16 safetensors; it never widens, and
     * f16 <-> bf16 is not converted */
    if (b->stored != MISER_DTYPE_F32 && b->stored != MISER_DTYPE_F16 && b->stored != MISER_DTYPE_BF16) return 0;
    if (p != MISER_DTYPE_F32 && p != MISER_DTYPE_F16 && p != MISER_DTYPE_BF16 && p != MISER_DTYPE_Q8_0 &&
        p != MISER_DTYPE_Q4_0 && p != MISER_DTYPE_Q4_K)
        return 0;
    if (width(p) >= width(b->stored)) return 0;
    return 1;
}

/* Size of the cache file miser_precision_prepare writes for p: every
 * tensor at its target dtype (precision.h's rules) plus a header estimate
 * (the JSON entry per tensor and the cache's metadata). */
/* Tensor t's dtype in the p cache (precision.h's rules); *n its elements. */
static miser_dtype tensor_target(const miser_tensor_info *t, miser_dtype p, uint64_t *n)
{
    *n = 1;
    for (int d = 0; d < t->ndim; d++) *n *= (uint64_t)t->shape[d];
    const int64_t last = t->ndim ? t->shape[t->ndim - 1] : 1;
    return miser_precision_tensor_target(t->name, t->dtype, t->ndim, last, p);
}

static uint64_t weights_bytes(const miser_budget_model *b, miser_dtype p)
{
    if (p == b->stored) return miser_model_mapped_bytes(b->model);
    uint64_t sum = 8 + 1024;
    for (size_t i = 0; i < miser_model_tensor_count(b->model); i++) {
        const miser_tensor_info *t = miser_model_tensor_at(b->model, i);
        uint64_t n;
        const miser_dtype to = tensor_target(t, p, &n);
        sum += (to == t->dtype ? t->nbytes : miser_dtype_bytes(to, n)) + strlen(t->name) + 96;
    }
    return sum;
}

uint64_t miser_budget_convert_peak(const miser_budget_model *b, miser_dtype p)
{
    if (p == b->stored || !miser_budget_precision_ok(b, p)) return 0;
    uint64_t in = 0, out = 0;
    for (size_t i = 0; i < miser_model_tensor_count(b->model); i++) {
        const miser_tensor_info *t = miser_model_tensor_at(b->model, i);
        uint64_t n;
        const miser_dtype to = tensor_target(t, p, &n);
        if (to == t->dtype) continue; /* copied from the map as it is */
        const uint64_t c = n < MISER_BUDGET_CONVERT_CHUNK ? n : MISER_BUDGET_CONVERT_CHUNK;
        if (4 * c > in) in = 4 * c;
        if (miser_dtype_bytes(to, c) > out) out = miser_dtype_bytes(to, c);
    }
    return miser_model_mapped_bytes(b->model) + MISER_BUDGET_CONVERT_FILE + MISER_BUDGET_FIXED_ANON + in + out;
}

/* The plan a run of ctx positions compiles with `rows` rows per pass:
 * the n_ctx one when that is the same (the arena depends on the rows,
 * min(rows, max_context), not on the context), else one compiled for it. */
static miser_status plan_for(const miser_budget_model *cb, int64_t ctx, int64_t rows, const miser_plan **out)
{
    miser_budget_model *b = (miser_budget_model *)cb; /* the cache of other plans */
    *out = b->plan;
    if (rows == MISER_BUDGET_MAX_BATCH && (ctx <= 0 || ctx >= rows || ctx >= b->n_ctx)) return MISER_OK;
    const int64_t key = ctx < rows ? ctx : 0; /* 0: any context of at least `rows` */
    for (int i = 0; i < b->n_small; i++)
        if (b->small[i].ctx == key && b->small[i].rows == rows) {
            *out = b->small[i].plan;
            return MISER_OK;
        }
    miser_plan *p = NULL;
    miser_status st = compile_for(b->model, key, rows, &p);
    if (st) return st;
    if (b->n_small == (int)(sizeof b->small / sizeof *b->small)) { /* evict the oldest */
        miser_plan_free(b->small[0].plan);
        memmove(b->small, b->small + 1, sizeof b->small - sizeof *b->small);
        b->n_small--;
    }
    b->small[b->n_small].ctx = key;
    b->small[b->n_small].rows = rows;
    b->small[b->n_small++].plan = p;
    *out = p;
    return MISER_OK;
}

/* What each compute thread (the calling thread and every worker) touches
 * in the run beyond the load: its frames (MISER_BUDGET_THREAD_FRAMES)
 * and, on the float paths, the f32 GEMM's panels of A and B, packed on the
 * thread's stack (kernels_avx2.c: GEMM_MC x GEMM_KB and GEMM_KB x GEMM_NC
 * floats, touched as far as the rows and the hidden size reach); on the
 * integer linears (q8_0, Q4_0, Q4_K, GGUF's Q6_K) the thread's quantised-x room
 * (src/kernels/scratch.c, MISER_QDOT_SCRATCH_BYTES, mmapped: resident as
 * far as written), into which each thread quantises every row of a pass's
 * x: rows x K values in miser_q8a blocks (32 values) or, for the k-quants,
 * miser_q8k blocks (256), K at most the MLP's width; and the weight panel
 * on the stack (quant4.h MISER_QDOT_PANEL_BYTES for q8_0 / Q4_0,
 * MISER_KQ_PANEL_BYTES for the k-quants). */
static uint64_t per_thread_bytes(const miser_budget_model *b, miser_dtype p, int64_t rows)
{
    const miser_config *cfg = miser_model_config(b->model);
    if (p != MISER_DTYPE_Q8_0 && p != MISER_DTYPE_Q4_0 && p != MISER_DTYPE_Q4_K && p != MISER_DTYPE_Q6_K) {
        /* A's panel: the pass's rows (at most MC) x a K block; B's: a K
         * block x NC columns; K blocks of MISER_BUDGET_GEMM_KB, a hidden
         * size below it makes them narrower (the tiny models) */
        const uint64_t kb = (uint64_t)(cfg->n_embd < MISER_BUDGET_GEMM_KB ? cfg->n_embd : MISER_BUDGET_GEMM_KB);
        const uint64_t mr = (uint64_t)(rows < MISER_BUDGET_GEMM_MC ? rows : MISER_BUDGET_GEMM_MC);
        return MISER_BUDGET_THREAD_FRAMES + sizeof(float) * kb * (mr + MISER_BUDGET_GEMM_NC);
    }
    const uint64_t K = (uint64_t)(cfg->n_inner > cfg->n_embd ? cfg->n_inner : cfg->n_embd);
    const int k = p == MISER_DTYPE_Q4_K || p == MISER_DTYPE_Q6_K;
    const uint64_t block = k ? sizeof(miser_q8k) : sizeof(miser_q8a), per = k ? MISER_QK_K : 32;
    const uint64_t nb = (K + per - 1) / per, room = MISER_QDOT_SCRATCH_BYTES / block;
    /* the kernel quantises as many rows at a time as the room holds */
    uint64_t chunk = nb ? room / nb : 0;
    if (chunk > (uint64_t)rows) chunk = (uint64_t)rows;
    /* q8_0 / Q4_0 from MISER_QDOT_PANEL_MIN_M rows: the weight panel on the
     * stack, as many blocks as K has up to MISER_QDOT_PANEL_BLOCKS */
    uint64_t panel = !k && rows >= MISER_QDOT_PANEL_MIN_M
                         ? MISER_QDOT_PANEL_BYTES(nb < MISER_QDOT_PANEL_BLOCKS ? nb : MISER_QDOT_PANEL_BLOCKS)
                         : 0;
    /* Q4_K / Q6_K likewise from MISER_KQ_PANEL_MIN_M rows (kpanel_avx2.c) */
    if (k && rows >= MISER_KQ_PANEL_MIN_M)
        panel = MISER_KQ_PANEL_BYTES(nb < MISER_KQ_PANEL_BLOCKS ? nb : MISER_KQ_PANEL_BLOCKS);
    return MISER_BUDGET_THREAD_FRAMES + chunk * nb * block + panel;
}

const char *miser_budget_engine_name(miser_budget_engine e)
{
    return e == MISER_BUDGET_SERVE_BATCH ? "batch" : e == MISER_BUDGET_SERVE_SLOTS ? "slots" : "generate";
}

int miser_budget_engine_parse(const char *s, miser_budget_engine *out)
{
    for (int e = MISER_BUDGET_GENERATE; e <= MISER_BUDGET_SERVE_SLOTS; e++)
        if (s && !strcmp(s, miser_budget_engine_name((miser_budget_engine)e))) {
            *out = (miser_budget_engine)e;
            return 0;
        }
    return -1;
}

miser_status miser_budget_predict(const miser_budget_model *b, const miser_budget_config *c, miser_budget_prediction *o)
{
    memset(o, 0, sizeof *o);
    if (!miser_budget_precision_ok(b, c->precision))
        return miser_error_set(MISER_ERR_UNSUPPORTED, "precision %s is not available for weights stored as %s",
                               miser_dtype_name(c->precision), miser_dtype_name(b->stored));
    const int par = c->parallel > 0 ? c->parallel : 1, thr = c->threads > 0 ? c->threads : 1;
    const int64_t ctx = c->ctx > 0 && c->ctx < b->n_ctx ? c->ctx : b->n_ctx;
    const int batch = c->engine == MISER_BUDGET_SERVE_BATCH;
    /* serve's batched pass carries every decoding sequence plus a prefill
     * chunk (server.c: MISER_SERVE_MAX_BATCH + parallel rows) */
    const int64_t rows = MISER_BUDGET_MAX_BATCH + (batch ? par : 0);
    const miser_plan *plan;
    miser_status st = plan_for(b, ctx, rows, &plan);
    if (st) return st;
    miser_session_options so = {.capacity = ctx, .threads = thr, .kv_f16 = c->kv_f16};
    miser_session_footprint f;
    miser_session_footprint_get(plan, &so, &f);
    o->ctx = f.capacity;
    o->weights = weights_bytes(b, c->precision);
    /* generate and the slots engine: a session per sequence; the batched
     * engine: one executor without its own KV, the pool (n_seqs x the
     * blocks of a context) and the logits head's tail rows, by the batch's
     * own arithmetic (miser_batch_footprint_get: what miser_batch_create
     * allocates, the pool's bytes by miser_kv_pool_bytes) */
    const uint64_t n_sess = batch ? 1 : (uint64_t)par;
    if (batch) {
        miser_batch_options bo = {.n_seqs = par, .capacity = ctx, .threads = thr, .kv_f16 = c->kv_f16};
        miser_batch_footprint bf;
        miser_batch_footprint_get(plan, &bo, &bf);
        o->kv = bf.kv_bytes;
        o->arena = bf.arena_bytes + bf.tail_bytes;
        f.scratch_bytes = bf.scratch_bytes;
        f.other_bytes = bf.other_bytes;
    } else {
        o->kv = f.kv_bytes * n_sess;
        o->arena = f.arena_bytes * n_sess;
    }
    /* every compute thread, the caller's included, touches its stack and,
     * on the integer paths, its quantised-x room (per_thread_bytes) */
    const int64_t pass_rows = rows < ctx ? rows : ctx;
    o->scratch = (f.scratch_bytes + (uint64_t)thr * per_thread_bytes(b, c->precision, pass_rows)) * n_sess;
    o->tokenizer = b->tokenizer;
    /* Two phases, each measured whole (docs/budgets.md, "Two phases").
     * The load: the model, the tokenizer and the compile, before
     * miser_budget_release_freed: RssAnon is the load's high-water (the
     * tokenizer's parse tree and the passes' temporaries, freed into pages
     * glibc keeps), RssFile the weights (generate prefaults them first;
     * serve before its compile) and the binary's pages so far
     * (MISER_BUDGET_LOAD_FILE: no kernel has run yet). The run: the
     * release gave those pages back, the sessions' buffers land in fresh
     * pages, so RssAnon is the steady load plus the sessions (plus, for
     * serve, the sampler and the connection threads), RssFile the weights
     * and every page of code the run touched (MISER_BUDGET_FIXED_FILE,
     * serve's MISER_BUDGET_SERVE_FILE more). A small model peaks in the
     * load, a large one (or a long context) in the run: the peak is the
     * larger, and rss_anon / rss_file are that phase's. */
    const uint64_t V = (uint64_t)miser_model_config(b->model)->n_vocab;
    const uint64_t serve = c->engine == MISER_BUDGET_GENERATE
                               ? 0
                               : MISER_BUDGET_SERVE_ANON + MISER_BUDGET_SERVE_SAMPLER_PER_VOCAB * V +
                                     MISER_BUDGET_SERVE_PER_SEQ * (uint64_t)par;
    const uint64_t sessions = o->kv + o->arena + o->scratch + f.other_bytes * n_sess + serve;
    const uint64_t file = MISER_BUDGET_FIXED_FILE + (c->engine == MISER_BUDGET_GENERATE ? 0 : MISER_BUDGET_SERVE_FILE);
    o->run_anon = MISER_BUDGET_FIXED_ANON + b->steady + sessions;
    o->run_file = o->weights + file;
    o->load_anon = MISER_BUDGET_FIXED_ANON + b->load_peak;
    o->load_file = o->weights + MISER_BUDGET_LOAD_FILE;
    const uint64_t run = o->run_anon + o->run_file, load = o->load_anon + o->load_file;
    o->peak_in_load = load > run;
    o->transient = o->peak_in_load ? load - run : 0;
    o->fixed = MISER_BUDGET_FIXED_ANON + file + (b->steady - b->tokenizer) + f.other_bytes * n_sess + serve +
               o->transient;
    o->rss_anon = o->peak_in_load ? o->load_anon : o->run_anon;
    o->rss_file = o->peak_in_load ? o->load_file : o->run_file;
    o->rss = o->rss_anon + o->rss_file; /* = weights + kv + arena + scratch + tokenizer + fixed */
    return MISER_OK;
}

int miser_budget_parse_size(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+' || isspace((unsigned char)*s)) return -1;
    const char *num_end = s; /* digits and one '.', then the unit */
    int dots = 0;
    for (; *num_end && !isalpha((unsigned char)*num_end); num_end++) {
        if (*num_end == '.') dots++;
        else if (!isdigit((unsigned char)*num_end)) return -1;
    }
    if (dots > 1 || num_end == s) return -1;
    errno = 0;
    char *end;
    const double v = strtod(s, &end);
    if (end != num_end || errno || !(v > 0) || !isfinite(v)) return -1;
    double mul = 1;
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'K': mul = 1024.0; break;
        case 'M': mul = 1024.0 * 1024; break;
        case 'G': mul = 1024.0 * 1024 * 1024; break;
        case 'T': mul = 1024.0 * 1024 * 1024 * 1024; break;
        case 'B': /* "512B": bytes */
            if (end[1] || v != floor(v)) return -1;
            break;
        default: return -1;
        }
        end++;
        if (mul > 1 && (*end == 'i' || *end == 'I')) end++;
        if (mul > 1 && (*end == 'b' || *end == 'B')) end++;
        if (*end) return -1;
    } else if (v != floor(v)) return -1; /* bytes are whole */
    const double bytes = v * mul;
    if (bytes < 1 || bytes > 1.8e19) return -1;
    *out = (uint64_t)bytes;
    return 0;
}

static void cache_path(char *out, size_t cap)
{
    const char *root = getenv("MISER_CACHE_DIR");
    if (root && *root) snprintf(out, cap, "%s/read-bandwidth", root);
    else {
        const char *home = getenv("HOME");
        snprintf(out, cap, "%s/.cache/miser/read-bandwidth", home && *home ? home : "/tmp");
    }
}

double miser_budget_read_bandwidth(int *cached)
{
    char path[4096];
    cache_path(path, sizeof path);
    if (cached) *cached = 0;
    FILE *f = fopen(path, "r");
    double bw = 0;
    if (f) {
        if (fscanf(f, "%lf", &bw) != 1) bw = 0;
        fclose(f);
        if (bw > 1e6) {
            if (cached) *cached = 1;
            return bw;
        }
    }
    /* 64 MiB (past any cache) summed 4 times; the best pass counts */
    const size_t n = (64u << 20) / sizeof(uint64_t);
    uint64_t *buf = miser_malloc(MISER_MEM_SCRATCH, n * sizeof *buf);
    if (!buf) return 0;
    for (size_t i = 0; i < n; i++) buf[i] = i;
    double best = 1e30;
    volatile uint64_t sink = 0;
    for (int pass = 0; pass < 4; pass++) {
        const double t0 = miser_now_s();
        uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (size_t i = 0; i < n; i += 4) {
            a0 += buf[i];
            a1 += buf[i + 1];
            a2 += buf[i + 2];
            a3 += buf[i + 3];
        }
        sink += a0 + a1 + a2 + a3;
        const double dt = miser_now_s() - t0;
        if (dt < best) best = dt;
    }
    miser_free(buf);
    bw = best > 0 ? (double)(n * sizeof(uint64_t)) / best : 0;
    /* best effort: the directory may not exist (then the probe reruns) */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        mkdir(dir, 0755);
    }
    if ((f = fopen(path, "w"))) {
        fprintf(f, "%.0f\n", bw);
        fclose(f);
    }
    return bw;
}

double miser_budget_decode_estimate(const miser_budget_prediction *p, double bandwidth)
{
    const double bytes = (double)p->weights + 0.5 * (double)p->kv;
    return bytes > 0 ? bandwidth / bytes : 0;
}

static double mb(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

void miser_budget_describe(const miser_budget_prediction *p, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "needed %.1f MB (weights %.1f + KV %.1f + arena %.1f + scratch %.1f + tokenizer %.1f + fixed %.1f MB)",
             mb(p->rss), mb(p->weights), mb(p->kv), mb(p->arena), mb(p->scratch), mb(p->tokenizer), mb(p->fixed));
}

int miser_budget_precisions(const miser_budget_model *b, miser_dtype out[MISER_BUDGET_NPREC])
{
    static const miser_dtype all[] = {MISER_DTYPE_F32,  MISER_DTYPE_F16,  MISER_DTYPE_BF16,
                                      MISER_DTYPE_Q8_0, MISER_DTYPE_Q4_K, MISER_DTYPE_Q4_0};
    int n = 0;
    if (!miser_budget_precision_ok(b, MISER_DTYPE_F32) && !miser_budget_precision_ok(b, MISER_DTYPE_F16) &&
        !miser_budget_precision_ok(b, MISER_DTYPE_BF16) && !miser_budget_precision_ok(b, MISER_DTYPE_Q8_0)) {
        out[n++] = b->stored; /* a 4-bit GGUF: what it is stored in */
        return n;
    }
    for (int i = 0; i < MISER_BUDGET_NPREC; i++)
        /* bf16 only when stored so (f32 -> f16 is the narrower step listed) */
        if (miser_budget_precision_ok(b, all[i]) && (all[i] != MISER_DTYPE_BF16 || b->stored == MISER_DTYPE_BF16))
            out[n++] = all[i];
    return n;
}

int miser_budget_fit(const miser_budget_model *b, uint64_t budget, const miser_budget_config *want, int precision,
                     miser_budget_config *cfg, miser_budget_prediction *pred)
{
    miser_dtype ps[MISER_BUDGET_NPREC];
    int np = 0;
    if (precision >= 0) ps[np++] = (miser_dtype)precision;
    else np = miser_budget_precisions(b, ps);
    const int64_t wctx = want->ctx > 0 && want->ctx < b->n_ctx ? want->ctx : b->n_ctx;
    int found = 0;
    miser_budget_config best = *want;
    miser_budget_prediction bp = {0}, small = {0};
    for (int i = 0; i < np; i++) {
        miser_budget_config c = *want;
        c.precision = ps[i];
        c.ctx = 1;
        miser_budget_prediction p;
        if (miser_budget_predict(b, &c, &p)) continue;
        if (!small.rss || p.rss < small.rss) small = p;
        if (p.rss > budget) continue;
        int64_t lo = 1, hi = wctx; /* largest ctx in [lo, hi] that fits: rss grows with ctx */
        while (lo < hi) {
            c.ctx = lo + (hi - lo + 1) / 2;
            if (!miser_budget_predict(b, &c, &p) && p.rss <= budget) lo = c.ctx;
            else hi = c.ctx - 1;
        }
        c.ctx = lo;
        miser_budget_predict(b, &c, &p);
        if (!found || lo > best.ctx) {
            best = c;
            bp = p;
            found = 1;
        }
        if (lo == wctx) break;
    }
    if (!found) {
        *pred = small;
        return -1;
    }
    *cfg = best;
    *pred = bp;
    return 0;
}
