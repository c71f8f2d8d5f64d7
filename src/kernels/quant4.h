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
#endif
