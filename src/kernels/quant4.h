/* ggml's 4-bit and K-quant block layouts (ggml-common.h) and their scalar
 * kernels (quant4_ref.c: the definition of correct; quant4_avx2.c: integer
 * dot products). Weights in these types come from GGUF files and are read in
 * place: a matrix W(k, n) in the dot layout (wsk == 1, wsn a multiple of the
 * block) is N rows of K values, each row whole blocks along K.
 *
 *   block_q4_0 (32 values, 18 bytes): f16 d; u8 qs[16]
 *     x[j] = d * ((qs[j] & 15) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8)
 *   block_q4_K (256 values, 144 bytes): f16 d, dmin; u8 scales[12]; u8 qs[128]
 *     8 sub-blocks of 32 with 6-bit scale sc and min m (get_scale_min_k4);
 *     sub-block pair p (64 values) reads qs[32p..32p+32): low nibbles are
 *     sub-block 2p, high nibbles 2p + 1; x = d*sc * q - dmin*m
 *   block_q6_K (256 values, 210 bytes): u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
 *     6-bit q = low 4 bits from ql, high 2 from qh, minus 32; 16 sub-blocks
 *     of 16 with an int8 scale; x = d * scale * q */
#ifndef MISER_KERNELS_QUANT4_H
#define MISER_KERNELS_QUANT4_H

#include "kernels.h"

#include <string.h>

#define MISER_Q4_0_BYTES 18
#define MISER_Q4_K_BYTES 144
#define MISER_Q6_K_BYTES 210
#define MISER_QK_K 256

static inline int miser_dtype_is_q4(miser_dtype dt)
{
    return dt == MISER_DTYPE_Q4_0 || dt == MISER_DTYPE_Q4_K || dt == MISER_DTYPE_Q6_K;
}

/* Decode one block of dt (Q4_0, Q4_K, Q6_K; also Q8_0) into
 * miser_dtype_block(dt) floats, in ggml's order of float operations. */
void miser_q4_dequant_block(miser_dtype dt, const void *block, float *out);
/* Element i of a quantised array (reference helper, decodes its block). */
float miser_q4_load_elem(miser_dtype dt, const void *p, int64_t i);
/* Q4_K's 6-bit scale and min of sub-block j (0..7): ggml's get_scale_min_k4. */
static inline void miser_q4k_scale_min(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* Whether the quantised-linear kernels take these arguments: a Q4_0, Q4_K or
 * Q6_K weight in the dot layout. */
static inline int miser_q4_linear_ok(const miser_linear_args *a)
{
    const int64_t bl = miser_dtype_block(a->wdt);
    return miser_dtype_is_q4(a->wdt) && a->wsk == 1 && a->K % bl == 0 && a->wsn % bl == 0 && a->M >= 1 && a->N >= 1;
}

/* The reference: each weight block decoded to f32, dotted with x in double
 * (as ref.c's linear), bias and activation after; columns split by thread. */
void miser_q4_linear_ref(const miser_linear_args *a, int ith, int nth);
/* ---- llama.cpp's arithmetic: integer dot products on quantised x ----
 * x is quantised per block as llama.cpp does before a quantised matmul:
 * q8_0-style blocks of 32 for Q4_0 weights, q8_K blocks of 256 for Q4_K /
 * Q6_K (d = max|x| / 127 kept in f32, q = x / d rounded to nearest even,
 * plus the block's sums of q that the weights' offsets need). Each block's
 * integer dot product is exact; it is scaled and summed in f32 in a fixed
 * order, so every set that computes the integers gives the same y bit for
 * bit. */
typedef struct miser_q8a {
    float d;
    int32_t sum;      /* sum of q */
    int8_t q[32];
} miser_q8a;
typedef struct miser_q8k {
    float d;
    int16_t bsums[16]; /* sums of q[16 j .. 16 j + 15] */
    int8_t q[MISER_QK_K];
} miser_q8k;
/* x[0..K) into K/32 q8a (Q4_0) or K/256 q8k blocks. */
void miser_q8a_quantize_row(const float *x, int64_t K, miser_q8a *out);
void miser_q8k_quantize_row(const float *x, int64_t K, miser_q8k *out);
/* One weight row (K values) dotted with quantised x: scalar reference. */
typedef float (*miser_q4_dot_fn)(miser_dtype dt, const void *wrow, const void *xq, int64_t K);
float miser_q4_dot_int_ref(miser_dtype dt, const void *wrow, const void *xq, int64_t K);
/* The linear kernel on quantised x with a given row dot (the scalar one or
 * a SIMD set's); x rows are quantised into a per-thread buffer in chunks. */
void miser_q4_linear_int(const miser_linear_args *a, int ith, int nth, miser_q4_dot_fn dot);
void miser_q4_linear_int_ref(const miser_linear_args *a, int ith, int nth);
/* AVX2 (vpmaddubsw) row dots, identical to miser_q4_dot_int_ref.
 * Only call when the CPU has AVX2 (the avx2 and avx512 sets route here). */
float miser_q4_dot_avx2(miser_dtype dt, const void *wrow, const void *xq, int64_t K);
void miser_q4_linear_avx2(const miser_linear_args *a, int ith, int nth);
/* The avx2 / avx512 sets' entry for GGUF's 4-bit weights, with the set's
 * own bias + GELU `epi` over y[:, n0..n1) (vector code; the scalar tanhf per
 * output of the plain kernels had held GPT-2-medium Q4_0 at 72.5 prefill /
 * 27.2 decode tok/s on 1 thread against 107.0 / 35.8): Q4_0 runs q8_0's
 * integer tiles then epi, Q4_K / Q6_K their tiles without bias then epi
 * over the same columns (miser_split of N, as the tiles split them); a bias
 * dtype epi does not read takes the plain kernels. Returns 0 when the
 * arguments are not a 4-bit linear. */
typedef void (*miser_linear_epilogue_fn)(const miser_linear_args *a, int64_t n0, int64_t n1);
int miser_q4_linear_set(const miser_linear_args *a, int ith, int nth, miser_linear_epilogue_fn epi);

/* ---- 32-value blocks (q8_0 and q4_0 weights in the dot layout) ----
 * The integer definition every set that multiplies them in int8 follows
 * bit for bit (x quantised by miser_q8a_quantize_row; q4_0 weights are
 * nibble - 8 as int8). For output (m, n), with y = 0:
 *   for each block b in order: isum = sum_{i<32} qw[i] qx[i] (exact int32),
 *     y = fmaf((float) isum * dw_b, dx_b, y)   (dw the block's f16 scale as
 *     f32; the product rounded to f32, then one fma)
 * then y + bias[n] in f32, then the activation. The integer sums are exact
 * whatever instructions compute them (vpmaddubsw + vpmaddwd, int16 sums,
 * horizontal adds, vpdpbusd, q4_0's nibbles with 8 * sum(qx) taken off), and
 * every f32 operation and its order is fixed per output element: nothing
 * depends on M, the row's position, the tiling or the thread count. Summing
 * a block to one integer first lets a tile put 8 outputs in one vector's
 * lanes and scale them with one multiply and one fma per block, where the
 * 8-lane form llama.cpp's AVX2 dots use needs three vector operations per
 * output per block; the avx512 set's VNNI q8_0 GEMM has always used this
 * form. */
float miser_q32_dot_ref(miser_dtype dt, const uint8_t *wrow, const miser_q8a *x, int64_t nblocks);
/* y[:, n0..n1) of a q8_0/q4_0 dot-layout linear by that definition, before
 * bias and activation (scalar; x quantised block by block on the fly). */
void miser_q32_cols_ref(const miser_linear_args *a, int64_t n0, int64_t n1);
/* The whole linear by the definition (bias, GELU as ref.c): columns split by
 * thread. The reference tests hold the SIMD sets to, bit for bit. */
void miser_q32_linear_int_ref(const miser_linear_args *a, int ith, int nth);
/* Whether miser_qdot_cols takes these arguments: q8_0 / q4_0, dot layout,
 * whole blocks. */
static inline int miser_qdot_ok(const miser_linear_args *a)
{
    return (a->wdt == MISER_DTYPE_Q8_0 || a->wdt == MISER_DTYPE_Q4_0) && a->wsk == 1 && a->K % 32 == 0 &&
           a->wsn % 32 == 0 && a->M >= 1 && a->N >= 1;
}
/* qdot_avx2.c (only call when the CPU has AVX2): y[:, n0..n1) before bias
 * and activation, x quantised once per call per thread; the tiles use
 * AVX-VNNI or AVX512-VNNI vpdpbusd where the CPU has it, maddubs+madd
 * otherwise, with identical results. */
void miser_qdot_cols(const miser_linear_args *a, int64_t n0, int64_t n1);
/* Bias and activation on y[.., n0..n1) after a columns kernel wrote the dots
 * (the same operations in every set, so the sets agree bit for bit). */
void miser_q4_cols_epilogue(const miser_linear_args *a, int64_t n0, int64_t n1);
void miser_q8a_quantize_row_avx2(const float *x, int64_t K, miser_q8a *out); /* = miser_q8a_quantize_row */
void miser_q8k_quantize_row_avx2(const float *x, int64_t K, miser_q8k *out); /* = miser_q8k_quantize_row */
/* This thread's MISER_QDOT_SCRATCH_BYTES (64-byte aligned) room for quantised
 * x, shared by the integer kernels (qdot_avx2.c, the Q4_K/Q6_K tiles, the
 * reference's row dots): one call at a time per thread uses it. Allocated on
 * a thread's first call and owned by the thread until it exits (scratch.c);
 * NULL when that allocation fails, and the callers then take a path that
 * needs no room (the scalar definition, or decoded blocks for the 4-bit
 * reference). */
#define MISER_QDOT_SCRATCH_BYTES (256 * 1024)
void *miser_qdot_scratch(size_t *bytes);
/* From MISER_QDOT_PANEL_MIN_M rows of x the q8_0 / q4_0 tiles pack 8 weight
 * rows, MISER_QDOT_PANEL_BLOCKS blocks of K at a time, into a panel on the
 * thread's stack (qdot_tile.h): MISER_QDOT_PANEL_BYTES(kc) for kc blocks,
 * touched as far as K reaches (the budget predictor counts it). */
#define MISER_QDOT_PANEL_MIN_M 4
#define MISER_QDOT_PANEL_BLOCKS 32
#define MISER_QDOT_PANEL_BYTES(kc) ((uint64_t)(kc) * (8 * 32 + 8 * 4))
/* From MISER_KQ_PANEL_MIN_M rows of x the Q4_K / Q6_K linears pack 8 weight
 * rows, MISER_KQ_PANEL_BLOCKS 256-value blocks of K at a time, into a
 * transposed panel on the thread's stack (kpanel_avx2.c), at most
 * MISER_KQ_PANEL_BYTES(kc) for kc blocks (the budget predictor counts it). */
#define MISER_KQ_PANEL_MIN_M 4
#define MISER_KQ_PANEL_BLOCKS 4
#define MISER_KQ_PANEL_BYTES(kc) ((uint64_t)(kc) * 2848)
/* kpanel_avx2.c (only call when the CPU has AVX2): rows m0..m0+M of a Q4_K /
 * Q6_K dot-layout linear's y, columns [n0, n1), before bias and activation,
 * from those rows' quantised x (xq, K/256 blocks per row); bit for bit
 * miser_q4_dot_int_ref per output. */
void miser_kq_cols_avx2(const miser_linear_args *a, const miser_q8k *xq, int64_t M, int64_t m0, int64_t n0, int64_t n1);
/* The tiles' instruction set: 0 AVX2, 1 AVX-VNNI, 2 AVX512-VNNI (the best
 * this CPU has unless forced); miser_qdot_force(0) forces AVX2, (1 or 2)
 * only when the CPU has that one (else -1), (-1) back to automatic. For tests
 * and benchmarks; not thread-safe against running kernels. */
int miser_qdot_isa(void);
int miser_qdot_force(int isa);
const char *miser_qdot_isa_name(int isa);

#endif
