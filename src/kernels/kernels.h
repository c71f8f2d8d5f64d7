/* Kernel interface. Every kernel has a scalar reference (ref.c), always
 * compiled; SIMD versions (*_avx2.c, *_avx512.c) are chosen at run time from CPU
 * detection (dispatch.c), and MISER_KERNELS=NAME or miser_kernels_select(NAME)
 * forces a set ("ref": the reference path).
 *
 * Threading: kernels take (ith, nth) and process their share of the work;
 * the executor calls them from every thread of the pool (ggml style). A
 * kernel must not allocate. */
#ifndef MISER_KERNELS_H
#define MISER_KERNELS_H

#include "miser/core.h"

/* y[m, n] = act(sum_k x[m*ldx + k] * W(k, n) + bias[n]) for m < M, n < N.
 * W(k, n) is element k*wsk + n*wsn of `w` (dtype wdt). For Q8_0 one of wsk,
 * wsn is 1, the other a multiple of 32: blocks run along the stored rows. */
typedef struct miser_linear_args {
    int64_t M, N, K;
    const float *x;
    int64_t ldx;
    const void *w;
    miser_dtype wdt;
    int64_t wsk, wsn;
    const void *bias; /* N elements of bdt, or NULL */
    miser_dtype bdt;
    float *y;
    int64_t ldy;
    int act; /* MISER_ACT_NONE / MISER_ACT_GELU */
    /* Decode K split (miser_linear_partial_floats): when `partial` is set the
     * caller runs linear twice over every thread, phase 0 then phase 1, with
     * the pool's barrier between. A set may ignore it; then phase 0 does all
     * the work and phase 1 returns at once. */
    float *partial;
    int phase;
} miser_linear_args;

/* Rows of W per chunk of the decode K split. With M = 1 in the rows layout
 * (every Conv1D weight in decode), splitting N between threads gives each a
 * short piece of every row (1-4 KB for GPT-2 medium in f16), a pattern the
 * hardware prefetchers stream badly; splitting K gives each thread a
 * contiguous run of whole rows. Phase 0 writes one partial y per chunk of
 * MISER_KSPLIT_ROWS rows, phase 1 sums the chunks in order (plus bias and
 * activation). Chunks are fixed, so the result does not depend on the
 * thread count; a set with the split (avx512) sums every rows-layout call
 * in the same chunks (the GEMM's K block is one chunk), so it does not
 * depend on M either (see "Reduction order" below).
 *
 * Reduction order (the invariant batching relies on: issue 16's batch
 * invariance). For every set and every linear path (f32/f16/bf16/q8_0
 * weights in both layouts, q4_0, q4_k, q6_k, with or without the K split),
 * y[m, n] is computed by one fixed sequence of f32 operations that depends
 * only on row m of x, column n of W, the bias and K: not on M, on m's
 * position among the rows, on the tile or thread that computes it, on the
 * thread count, nor on whether the K split ran. So row m of a 16-row call is
 * bit-identical to the same row alone (decode). How each set fixes it:
 *   ref: one double sum per output, k ascending (q4_k/q6_k/q4_0 and the
 *     int8 definitions: quant4.h).
 *   avx2, rows layout: k ascending with fma from 0 in the GEMV (M < 4), the
 *     GEMM (M >= 4) and their column tails alike; dots: per column 8 lanes of
 *     fma over k, one horizontal sum, the k % 8 tail scalar.
 *   avx512, rows layout: each MISER_KSPLIT_ROWS chunk summed from 0 with fma
 *     (k ascending), chunks added in order (GEMV, GEMM, K split); dots: 16
 *     lanes, _mm512_reduce_add_ps.
 *   q8_0 / q4_0 dots on int8 x: quant4.h's 32-value definition, per block
 *     y = fma(float(isum) * dw, dx, y), in every set and instruction set
 *     (the AVX2 / VNNI tiles, the avx512 set's VNNI q8_0 GEMM).
 *   q4_k / q6_k: one row dot per output (quant4.h), whatever M.
 * tests/test_kernels_int.c checks it for every path of every set the CPU
 * has (M = 1 vs 16 vs 7 rows, rows rotated, nth = 1, 2, 3). */
#define MISER_KSPLIT_ROWS 128

/* Floats of partial sums the K split needs for these arguments, 0 when it
 * does not apply (M > 1, the dot layout, or a single chunk). */
static inline int64_t miser_linear_partial_floats(const miser_linear_args *a)
{
    if (a->M != 1 || a->wsn != 1 || a->K <= MISER_KSPLIT_ROWS) return 0;
    return (a->K + MISER_KSPLIT_ROWS - 1) / MISER_KSPLIT_ROWS * a->N;
}

/* Causal attention over a KV cache: for t < T, h < H, with j = h / group
 * the KV head of query head h (grouped-query attention; group 0 or 1: one
 * KV head per query head),
 *   out[t, h, :] = softmax_s<=S-T+t(scale * q[t,h,:] . k[s,j,:]) . v[s,j,:]
 * q[t, h, d] = q[t*q_row + h*D + d]; k[s, j, d] = k[s*k_row + j*D + d],
 * likewise v (f32 or f16 via kvdt), out. scratch: at least S * max(group, 1)
 * floats per thread (scratch + ith * S * max(group, 1)): a set may score a
 * whole query group against each K row it reads (AVX2).
 *
 * Paged cache (kblk set; the batch's KV pool): K position s is row s % blk_rows
 * of block kblk[s / blk_rows], k[s, j, d] = kblk[s / blk_rows][(s % blk_rows)
 * * k_row + j*D + d], likewise V with vblk; k and v are then unused. Each
 * (t, h) is computed by one thread in a fixed order, so the result depends
 * neither on the thread count nor on T (given the same S - T + t). */
typedef struct miser_attention_args {
    int64_t T, S, H, D;
    int64_t group;
    const float *q;
    int64_t q_row;
    const void *k, *v;
    miser_dtype kvdt;
    int64_t k_row, v_row;
    float *out;
    int64_t o_row;
    float scale;
    float *scratch;
    const void *const *kblk, *const *vblk; /* NULL: contiguous k / v */
    int64_t blk_rows;
} miser_attention_args;

/* The base of K (which 0) or V (1) row s: add j*D + d to index it. */
static inline const void *miser_attn_row(const miser_attention_args *a, int which, int64_t s)
{
    const size_t es = a->kvdt == MISER_DTYPE_F16 ? 2 : 4;
    const int64_t row = which ? a->v_row : a->k_row;
    if (a->kblk)
        return (const char *)(which ? a->vblk : a->kblk)[s / a->blk_rows] + (size_t)((s % a->blk_rows) * row) * es;
    return (const char *)(which ? a->v : a->k) + (size_t)(s * row) * es;
}

typedef struct miser_kernels {
    const char *name;
    void (*linear)(const miser_linear_args *a, int ith, int nth);
    void (*attention)(const miser_attention_args *a, int ith, int nth);
    /* rows x C, contiguous; gamma/beta of dtype pdt */
    void (*layernorm)(float *y, const float *x, const void *gamma, const void *beta, miser_dtype pdt, int64_t rows,
                      int64_t C, float eps, int ith, int nth);
    void (*gelu)(float *y, const float *x, int64_t n, int ith, int nth);
    /* rows x C, contiguous: y = x / sqrt(mean(x^2) + eps) * gamma (dtype pdt) */
    void (*rmsnorm)(float *y, const float *x, const void *gamma, miser_dtype pdt, int64_t rows, int64_t C, float eps,
                    int ith, int nth);
    /* y = silu(g) * u, all n contiguous (may alias g or u) */
    void (*silu_mul)(float *y, const float *g, const float *u, int64_t n, int ith, int nth);
    /* y = a + b, all n contiguous */
    void (*add)(float *y, const float *a, const float *b, int64_t n, int ith, int nth);
    /* rows x n contiguous; row r sees its first valid[r] entries (the rest
     * become 0); valid == NULL means all n. scale applied before exp. */
    void (*softmax)(float *y, const float *x, int64_t rows, int64_t n, float scale, const int64_t *valid_base,
                    int64_t valid_step_rows, int ith, int nth);
    /* Activation quantisation: for q8_0 weights in the dot layout (wsk == 1)
     * and M >= q8_dots_int8_min_m (0: never), linear multiplies in int8 as
     * llama.cpp does: each row of x is quantised per 32-k block to
     * qx = round_half_even(x / d), d = max|x| / 127 (d kept as f32; an
     * all-zero block has d = 0), and y = sum over blocks of d * scale_w *
     * (integer dot of qx and the weight block). Otherwise x is used as is. */
    int q8_dots_int8_min_m;
    /* Rotary embedding: miser_ref_rope's contract, or miser_rope_pairs'
     * when `pairs`; NULL: the set uses those references (ref.c). */
    void (*rope)(float *y, int64_t y_row, const float *x, int64_t x_row, int64_t T, int64_t H, int64_t D,
                 const float *cs, const float *sn, int pairs, int ith, int nth);
    /* dst[i] = miser_f32_to_f16(src[i]) for i < n, bit for bit (the f16 KV
     * cache's store); NULL: that function per element */
    void (*to_f16)(uint16_t *dst, const float *src, int64_t n);
} miser_kernels;

/* Rotary embedding, rotate-half convention, for rows r < T (token r) and
 * heads h < H: with c = cs[r*D/2 + i], s = sn[r*D/2 + i] for i < D/2,
 *   y[i]       = x[i] c - x[i + D/2] s
 *   y[i + D/2] = x[i + D/2] c + x[i] s
 * x row r, head h at x + r*x_row + h*D; y likewise with y_row. y may alias
 * x (each pair is read before it is written). Rows are split by thread. */
void miser_ref_rope(float *y, int64_t y_row, const float *x, int64_t x_row, int64_t T, int64_t H, int64_t D,
                    const float *cs, const float *sn, int ith, int nth);
/* The same with adjacent pairs (llama.cpp's rope "normal", GGUF llama files:
 * miser_rope_config.pairs): y[2i] = x[2i] c - x[2i+1] s,
 * y[2i+1] = x[2i+1] c + x[2i] s (src/kernels/quant4_rope.c). */
void miser_rope_pairs(float *y, int64_t y_row, const float *x, int64_t x_row, int64_t T, int64_t H, int64_t D,
                      const float *cs, const float *sn, int ith, int nth);
/* The reference rmsnorm / silu_mul, for SIMD sets that do not have their own. */
void miser_ref_rmsnorm(float *y, const float *x, const void *gamma, miser_dtype pdt, int64_t rows, int64_t C, float eps,
                       int ith, int nth);
void miser_ref_silu_mul(float *y, const float *g, const float *u, int64_t n, int ith, int nth);
/* AVX2 + FMA rope for the avx2 / avx512 tables (llama_avx2.c): work split by
 * (row, head), so decode's single row spreads over the threads. */
void miser_avx2_rope(float *y, int64_t y_row, const float *x, int64_t x_row, int64_t T, int64_t H, int64_t D,
                     const float *cs, const float *sn, int pairs, int ith, int nth);
void miser_avx2_f32_to_f16(uint16_t *dst, const float *src, int64_t n); /* F16C (llama_avx2.c) */

/* The best kernels for this CPU (or the reference when forced). */
const miser_kernels *miser_kernels_get(void);
const miser_kernels *miser_kernels_ref(void);
/* The set named "ref", "avx2" or "avx512" when this CPU can run it, else NULL. */
const miser_kernels *miser_kernels_by_name(const char *name);
/* "auto", "ref", or a SIMD set's name; returns 0 on success. */
int miser_kernels_select(const char *name);
/* Names of the kernel sets this CPU can run, for --help and reports. */
const char *miser_kernels_available(void);

/* Load element i of a dtype array as f32 (reference helper, not fast). */
float miser_load_elem(miser_dtype dt, const void *p, int64_t i);

/* Split [0, n) among nth threads: this thread's [*lo, *hi). */
static inline void miser_split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

/* The first work item of thread ith when item w = t*H + h of causal
 * attention costs S - T + t + 1 (the keys it reads): boundaries where the
 * running cost crosses ith/nth of the total, so threads finish together in
 * prefill (an even split of items gives the last thread the longest rows:
 * 3x the first's work at T = S = 128). */
static inline int64_t miser_causal_split_at(int64_t T, int64_t H, int64_t S, int ith, int nth)
{
    if (ith <= 0) return 0;
    if (ith >= nth) return T * H;
    const int64_t total = H * (T * (S - T + 1) + T * (T - 1) / 2); /* sum over t of H (S - T + t + 1) */
    const int64_t target = total / nth * ith + total % nth * ith / nth;
    int64_t cum = 0;
    for (int64_t t = 0; t < T; t++) {
        const int64_t v = S - T + t + 1;
        if (cum + H * v > target) return t * H + (target - cum + v - 1) / v;
        cum += H * v;
    }
    return T * H;
}

static inline void miser_causal_split(int64_t T, int64_t H, int64_t S, int ith, int nth, int64_t *lo, int64_t *hi)
{
    *lo = miser_causal_split_at(T, H, S, ith, nth);
    *hi = miser_causal_split_at(T, H, S, ith + 1, nth);
}

#endif
