/* Memory budgets (issue 17): predict, before loading anything, what a
 * configuration of `miser generate` / `serve` will cost in resident memory,
 * from the config and the tensor headers only — no weight page is read.
 *
 * The prediction opens the checkpoint (mmap + header parse), opens the
 * tokenizer and compiles the default pipeline with share_constants disabled
 * (the only pass that samples constant contents; the others compare
 * pointers and shapes), so the activation arena is the memory planner's own
 * figure and the session's buffers come from miser_session_footprint_get,
 * the computation miser_session_create itself uses. tests/test_budget.c
 * checks with mincore() that a prediction leaves the weight pages out of
 * the page cache. Figures and the calibrated constants: docs/budgets.md. */
#ifndef MISER_BUDGET_H
#define MISER_BUDGET_H

#include "miser/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Calibrated fixed overhead of a `miser generate` process (docs/budgets.md,
 * refitted after the kernels' static TLS went, 226baee, and with the two
 * phases): anonymous memory of the binary, libc, the allocator's arenas and
 * the main thread's load; file-backed pages of the binary and its libraries
 * once every kernel has run (the run; LOAD_FILE below for the load). */
#define MISER_BUDGET_FIXED_ANON  (667ull << 10) /* 0.65 MiB */
#define MISER_BUDGET_FIXED_FILE  (7050ull << 10) /* 6.9 MiB: at the end of a run (every kernel has run) */
/* What one compute thread (the caller or a worker) touches in the run
 * (budget.c: per_thread_bytes, docs/budgets.md): its frames (fitted: 20
 * KiB) and, on the float paths, the f32 GEMM's packing panels on its stack,
 * sized by the AVX2 GEMM's blocking (kernels_avx2.c GEMM_MC / GEMM_KB /
 * GEMM_NC: keep these in step); on the integer paths, the quantised-x room
 * it writes (computed from quant4.h). */
#define MISER_BUDGET_THREAD_FRAMES (20ull << 10)
#define MISER_BUDGET_GEMM_MC 132
#define MISER_BUDGET_GEMM_KB 256
#define MISER_BUDGET_GEMM_NC 64
/* The binary's and libraries' file pages at the load's high-water (the
 * model, the tokenizer and the compile done, no kernel run yet): a small
 * model peaks there (docs/budgets.md, "Two phases"). */
#define MISER_BUDGET_LOAD_FILE   (6700ull << 10)
/* The prompt chunk generate compiles for (its --max-batch default); below
 * it, a run of ctx positions compiles for ctx (the arena shrinks). */
#define MISER_BUDGET_MAX_BATCH   64

/* Give the heap pages the process freed back to the kernel (glibc's
 * malloc_trim; nothing elsewhere). `miser generate`, `bench` and `serve`
 * call it once the load is done, before their sessions exist: the load's
 * freed pages (the tokenizer's parse tree, the passes' temporaries) would
 * otherwise stay resident and be reused by whichever buffers come first,
 * which no arithmetic can follow. The predictor measures the load on both
 * sides of it. */
void miser_budget_release_freed(void);

typedef struct miser_budget_model miser_budget_model;

/* What runs the sequences. */
typedef enum miser_budget_engine {
    MISER_BUDGET_GENERATE = 0, /* `miser generate`: one session per sequence */
    MISER_BUDGET_SERVE_BATCH,  /* `miser serve` (default engine): one pass for every sequence, max_batch
                                * + parallel rows, the KV in one paged pool (miser_kv_pool_bytes) */
    MISER_BUDGET_SERVE_SLOTS   /* `miser serve --engine slots`: a session (KV, arena, pool) per sequence */
} miser_budget_engine;
const char *miser_budget_engine_name(miser_budget_engine e); /* "generate", "batch", "slots" */
/* 0 and *out for "generate", "batch", "slots"; -1 otherwise. */
int miser_budget_engine_parse(const char *s, miser_budget_engine *out);

/* `miser serve` beyond what generate has (docs/budgets.md, "Serve"): its
 * own threads (HTTP listener) and their allocator arenas: nothing
 * measurable; per concurrent request, the connection's thread (its touched
 * stack and malloc arena stay, in glibc's stack cache, after it ends):
 * fitted on the smaps of serve at parallel 4 (5 cached stacks of ~11 KB and
 * 7 arenas of ~11 KB for 4 requests); the scheduler is the batch pass's
 * calling thread and counts as a compute thread. Computed: the sampler,
 * written by any request that samples (temperature > 0): its
 * probabilities and indices (4 + 4 bytes per vocabulary entry) and glibc
 * qsort's merge buffer over the indices (4 more, kept in the heap once
 * glibc's dynamic mmap threshold has risen past it). The file pages are
 * the run's less generate's (libmicrohttpd, the server's code). */
#define MISER_BUDGET_SERVE_ANON        (0ull << 10)
#define MISER_BUDGET_SERVE_PER_SEQ     (32ull << 10)
#define MISER_BUDGET_SERVE_SAMPLER_PER_VOCAB 12
#define MISER_BUDGET_SERVE_FILE        (160ull << 10)

/* What is asked: one row of `miser plan`. */
typedef struct miser_budget_config {
    miser_dtype precision; /* F32, F16, BF16, Q8_0, Q4_K, Q4_0 (the --precision cache) */
    int64_t ctx;           /* KV positions per sequence (clamped to n_ctx) */
    int parallel;          /* sequences (>= 1) */
    int threads;           /* worker threads per session (>= 1) */
    int kv_f16;            /* > 0 f16, < 0 f32, 0 the architecture's default */
    miser_budget_engine engine;
} miser_budget_config;

/* The predicted peak, in bytes. rss = rss_anon + rss_file. */
typedef struct miser_budget_prediction {
    uint64_t weights;   /* file-backed: the mapped checkpoint or the cache file's predicted size */
    uint64_t kv;        /* every sequence's KV cache */
    uint64_t arena;     /* every sequence's activation arena */
    uint64_t scratch;   /* attention rows, decode partial sums and thread stacks */
    uint64_t tokenizer; /* RssAnon the tokenizer keeps once the load's freed pages are released
                         * (measured in the predicting process: its tables and their pages) */
    uint64_t fixed;     /* process constant + model table + compiled graph + session bookkeeping
                         * + transient (below) */
    uint64_t transient; /* part of fixed: how far the load phase peaks above the run phase (a
                         * small model peaks while loading, before the sessions exist) */
    /* the peak: RssAnon and RssFile of the phase that peaks; rss = rss_anon + rss_file
     * = weights + kv + arena + scratch + tokenizer + fixed */
    uint64_t rss_anon, rss_file, rss;
    /* the two phases: the load (model, tokenizer, compile, before the
     * freed pages are released) and the run (the sessions; what a server
     * holds while it serves, and what it keeps) */
    uint64_t load_anon, load_file, run_anon, run_file;
    int peak_in_load;   /* 1: the peak is the load's */
    int64_t ctx;        /* the context used (after clamping) */
} miser_budget_prediction;

/* Open `model_dir` for predictions (headers only): maps it, opens the
 * tokenizer and compiles as generate does, measuring this process's RssAnon
 * across the load and after miser_budget_release_freed (called before and
 * after: the process's freed pages are released). Errors: the loader's and the
 * tokenizer's (naming the file), MISER_ERR_NOMEM. */
miser_status miser_budget_open(const char *model_dir, miser_budget_model **out);
void miser_budget_free(miser_budget_model *b);
int64_t miser_budget_n_ctx(const miser_budget_model *b);
/* Dtype most of the matrices are stored in (what running without
 * --precision gives). */
miser_dtype miser_budget_stored_dtype(const miser_budget_model *b);
/* 1 when `precision` is one the model can run in (the cache never widens:
 * asking f32 of an f16 checkpoint gives f16, so only precisions that are
 * not wider than the stored one are listed). */
int miser_budget_precision_ok(const miser_budget_model *b, miser_dtype precision);
miser_status miser_budget_predict(const miser_budget_model *b, const miser_budget_config *c, miser_budget_prediction *out);

/* The configuration to run within `budget` bytes: `want` gives threads,
 * parallel, kv_f16 and the context wanted; precision < 0 lets it choose
 * (widest first), else only that one. The widest precision that fits the
 * whole wanted context wins; when none does, the longest context that fits
 * (wider precision on a tie). 0 with *cfg / *pred filled, or -1 when
 * nothing fits even one position (*pred then holds the smallest
 * configuration tried, for the message). */
int miser_budget_fit(const miser_budget_model *b, uint64_t budget, const miser_budget_config *want, int precision,
                     miser_budget_config *cfg, miser_budget_prediction *pred);
/* The peak RSS of the first run at `precision`, which converts the
 * checkpoint into the cache (miser_precision_prepare) before loading it:
 * the source mapped and read whole (RssFile), the process constants, and
 * the converter's two chunk buffers as far as the largest converted tensor
 * touches them (convert.c: CHUNK_ELEMS floats in, that chunk's output
 * out). 0 when `precision` needs no conversion (the stored dtype). The run
 * peaks at the larger of this and the prediction of the run itself. */
#define MISER_BUDGET_CONVERT_CHUNK ((uint64_t)1 << 20) /* convert.c's CHUNK_ELEMS */
/* The binary's file pages while converting (before the kernels and the
 * runtime run): measured, 1.2 MB below MISER_BUDGET_FIXED_FILE */
#define MISER_BUDGET_CONVERT_FILE  (5630ull << 10)
uint64_t miser_budget_convert_peak(const miser_budget_model *b, miser_dtype precision);

/* Precisions to list, widest first (f32, f16, bf16, q8_0, q4_k, q4_0: at
 * most MISER_BUDGET_NPREC); returns how many. */
#define MISER_BUDGET_NPREC 6
int miser_budget_precisions(const miser_budget_model *b, miser_dtype out[MISER_BUDGET_NPREC]);

/* "512M", "1.5G", "2GiB", "4096", "300MB", "1T": K/M/G/T with or without
 * "i" and "B", all powers of 1024; a plain number is bytes. 0 and the
 * size, or -1 for zero, negative, malformed ("12XB") or overflowing. */
int miser_budget_parse_size(const char *s, uint64_t *out);

/* Read bandwidth of this machine in bytes/s (a short memory-read loop),
 * cached in <cache>/read-bandwidth ($MISER_CACHE_DIR, else
 * $HOME/.cache/miser); *cached set to 1 when the figure came from it. */
double miser_budget_read_bandwidth(int *cached);
/* Estimated decode tokens/s: every weight byte and half the KV cache read
 * once per token at that bandwidth (an estimate, labelled as such). */
double miser_budget_decode_estimate(const miser_budget_prediction *p, double bandwidth);

/* One line "needed N MB (weights A + KV B + arena C + scratch D + tokenizer
 * E + fixed F MB)" into buf. */
void miser_budget_describe(const miser_budget_prediction *p, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
