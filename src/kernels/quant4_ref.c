/* Scalar reference for ggml's Q4_0, Q4_K and Q6_K blocks (quant4.h): block
 * decoding in ggml's order of float operations (dequantize_row_q4_0 /
 * _q4_K / _q6_K in ggml-quants.c), element access, and the linear kernel
 * the SIMD sets are checked against. Written for clarity. */
#include "kernels/quant4.h"

#include "miser/graph.h"

#include <math.h>
#include <string.h>

static float half(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return miser_f16_to_f32(h);
}

static void dq_q4_0(const uint8_t *b, float *y)
{
    const float d = half(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0x0F) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

static void dq_q4_k(const uint8_t *b, float *y)
{
    const float d = half(b), min = half(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < MISER_QK_K; j += 64) {
        miser_q4k_scale_min(is + 0, scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        miser_q4k_scale_min(is + 1, scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        q += 32;
        is += 2;
    }
}

static void dq_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = half(b + 208);
    for (int n = 0; n < MISER_QK_K; n += 128) {
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

void miser_q4_dequant_block(miser_dtype dt, const void *block, float *out)
{
    const uint8_t *b = block;
    switch (dt) {
    case MISER_DTYPE_Q4_0: dq_q4_0(b, out); break;
    case MISER_DTYPE_Q4_K: dq_q4_k(b, out); break;
    case MISER_DTYPE_Q6_K: dq_q6_k(b, out); break;
    case MISER_DTYPE_Q8_0: {
        const float d = half(b);
        for (int j = 0; j < 32; j++) out[j] = d * (float)((const int8_t *)(b + 2))[j];
        break;
    }
    default: break;
    }
}

float miser_q4_load_elem(miser_dtype dt, const void *p, int64_t i)
{
    const int64_t bl = miser_dtype_block(dt);
    float tmp[MISER_QK_K];
    miser_q4_dequant_block(dt, (const uint8_t *)p + (size_t)(i / bl) * miser_dtype_block_bytes(dt), tmp);
    return tmp[i % bl];
}

static float gelu1(float x)
{
    const float c = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

void miser_q4_linear_ref(const miser_linear_args *a, int ith, int nth)
{
    if (a->partial && a->phase) return;
    const int64_t bl = miser_dtype_block(a->wdt);
    const size_t bb = miser_dtype_block_bytes(a->wdt);
    int64_t n0, n1;
    miser_split(a->N, ith, nth, &n0, &n1);
    float tmp[MISER_QK_K];
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *row = (const uint8_t *)a->w + (size_t)(n * a->wsn / bl) * bb;
        for (int64_t m = 0; m < a->M; m++) {
            const float *x = a->x + m * a->ldx;
            double acc = a->bias ? miser_load_elem(a->bdt, a->bias, n) : 0.0;
            for (int64_t k = 0; k < a->K; k += bl) {
                miser_q4_dequant_block(a->wdt, row + (size_t)(k / bl) * bb, tmp);
                for (int64_t j = 0; j < bl; j++) acc += (double)x[k + j] * tmp[j];
            }
            const float v = (float)acc;
            a->y[m * a->ldy + n] = a->act == MISER_ACT_GELU ? gelu1(v) : v;
        }
    }
}

/* ---- integer dot products on quantised x (quant4.h) ------------------------ */

void miser_q8a_quantize_row(const float *x, int64_t K, miser_q8a *out)
{
    for (int64_t b = 0; b < K / 32; b++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        int32_t s = 0;
        for (int j = 0; j < 32; j++) s += out[b].q[j] = (int8_t)nearbyintf(x[j] * id);
        out[b].d = d;
        out[b].sum = s;
    }
}

void miser_q8k_quantize_row(const float *x, int64_t K, miser_q8k *out)
{
    for (int64_t b = 0; b < K / MISER_QK_K; b++, x += MISER_QK_K) {
        float amax = 0;
        for (int j = 0; j < MISER_QK_K; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        for (int j = 0; j < MISER_QK_K; j++) out[b].q[j] = (int8_t)nearbyintf(x[j] * id);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += out[b].q[16 * g + j];
            out[b].bsums[g] = (int16_t)s;
        }
        out[b].d = d;
    }
}

float miser_q4_dot_int_ref(miser_dtype dt, const void *wrow, const void *xq, int64_t K)
{
    const uint8_t *w = wrow;
    float acc = 0;
    if (dt == MISER_DTYPE_Q4_0) return miser_q32_dot_ref(dt, w, xq, K / 32); /* 32-value blocks: quant4.h */
    const miser_q8k *x = xq;
    for (int64_t b = 0; b < K / MISER_QK_K; b++) {
        const int8_t *q8 = x[b].q;
        if (dt == MISER_DTYPE_Q4_K) {
            const uint8_t *scales = w + 4, *qs = w + 16;
            int32_t sumi = 0, summ = 0;
            for (int p = 0; p < 4; p++) {
                uint8_t sc0, m0, sc1, m1;
                miser_q4k_scale_min(2 * p, scales, &sc0, &m0);
                miser_q4k_scale_min(2 * p + 1, scales, &sc1, &m1);
                int32_t lo = 0, hi = 0;
                for (int l = 0; l < 32; l++) {
                    lo += (qs[32 * p + l] & 15) * q8[64 * p + l];
                    hi += (qs[32 * p + l] >> 4) * q8[64 * p + 32 + l];
                }
                sumi += sc0 * lo + sc1 * hi;
                summ += m0 * (x[b].bsums[4 * p] + x[b].bsums[4 * p + 1]) + m1 * (x[b].bsums[4 * p + 2] + x[b].bsums[4 * p + 3]);
            }
            const float t = half(w) * x[b].d * (float)sumi, u = half(w + 2) * x[b].d * (float)summ;
            acc += t - u;
            w += MISER_Q4_K_BYTES;
        } else { /* Q6_K */
            const uint8_t *ql = w, *qh = w + 128;
            const int8_t *sc = (const int8_t *)(w + 192);
            int32_t isum[16] = {0};
            for (int h = 0; h < 2; h++)
                for (int l = 0; l < 32; l++) {
                    const int q1 = (ql[64 * h + l] & 0xF) | (((qh[32 * h + l] >> 0) & 3) << 4);
                    const int q2 = (ql[64 * h + l + 32] & 0xF) | (((qh[32 * h + l] >> 2) & 3) << 4);
                    const int q3 = (ql[64 * h + l] >> 4) | (((qh[32 * h + l] >> 4) & 3) << 4);
                    const int q4 = (ql[64 * h + l + 32] >> 4) | (((qh[32 * h + l] >> 6) & 3) << 4);
                    const int base = 128 * h + l;
                    isum[(base + 0) / 16] += q1 * q8[base + 0];
                    isum[(base + 32) / 16] += q2 * q8[base + 32];
                    isum[(base + 64) / 16] += q3 * q8[base + 64];
                    isum[(base + 96) / 16] += q4 * q8[base + 96];
                }
            int32_t sumi = 0;
            for (int s = 0; s < 16; s++) sumi += sc[s] * (isum[s] - 32 * x[b].bsums[s]);
            const float t = half(w + 208) * x[b].d * (float)sumi;
            acc += t;
            w += MISER_Q6_K_BYTES;
        }
    }
    return acc;
}

/* ---- 32-value blocks: q8_0 and q4_0 (quant4.h's definition) ---- */

/* weight block `blk` as 32 signed values (q4_0: nibble - 8) */
static void q32_values(miser_dtype dt, const uint8_t *blk, int8_t *qw)
{
    if (dt == MISER_DTYPE_Q8_0) memcpy(qw, blk + 2, 32);
    else
        for (int j = 0; j < 16; j++) {
            qw[j] = (int8_t)((blk[2 + j] & 15) - 8);
            qw[j + 16] = (int8_t)((blk[2 + j] >> 4) - 8);
        }
}

/* one block's term: y = fmaf((float) isum * dw, dx, y) */
static float q32_block(miser_dtype dt, const uint8_t *blk, const miser_q8a *xb, float y)
{
    int8_t qw[32];
    q32_values(dt, blk, qw);
    int32_t isum = 0;
    for (int j = 0; j < 32; j++) isum += qw[j] * xb->q[j];
    return fmaf((float)isum * half(blk), xb->d, y);
}

float miser_q32_dot_ref(miser_dtype dt, const uint8_t *wrow, const miser_q8a *x, int64_t nblocks)
{
    const size_t bb = dt == MISER_DTYPE_Q8_0 ? MISER_Q8_0_BYTES : MISER_Q4_0_BYTES;
    float y = 0;
    for (int64_t b = 0; b < nblocks; b++) y = q32_block(dt, wrow + (size_t)b * bb, x + b, y);
    return y;
}

void miser_q32_cols_ref(const miser_linear_args *a, int64_t n0, int64_t n1)
{
    const size_t bb = a->wdt == MISER_DTYPE_Q8_0 ? MISER_Q8_0_BYTES : MISER_Q4_0_BYTES;
    const int64_t nb = a->K / 32;
    for (int64_t m = 0; m < a->M; m++)
        for (int64_t n = n0; n < n1; n++) {
            const uint8_t *row = (const uint8_t *)a->w + (size_t)(n * a->wsn / 32) * bb;
            float y = 0;
            for (int64_t b = 0; b < nb; b++) { /* miser_q32_dot_ref's operations, one block of x at a time */
                miser_q8a xb;
                miser_q8a_quantize_row(a->x + m * a->ldx + b * 32, 32, &xb);
                y = q32_block(a->wdt, row + (size_t)b * bb, &xb, y);
            }
            a->y[m * a->ldy + n] = y;
        }
}

void miser_q4_cols_epilogue(const miser_linear_args *a, int64_t n0, int64_t n1)
{
    if (!a->bias && a->act != MISER_ACT_GELU) return; /* nothing to add (the sets' dots-only calls) */
    for (int64_t m = 0; m < a->M; m++)
        for (int64_t n = n0; n < n1; n++) {
            float *y = a->y + m * a->ldy + n;
            if (a->bias) *y += miser_load_elem(a->bdt, a->bias, n);
            if (a->act == MISER_ACT_GELU) *y = gelu1(*y);
        }
}

void miser_q32_linear_int_ref(const miser_linear_args *a, int ith, int nth)
{
    if (a->partial && a->phase) return;
    int64_t n0, n1;
    miser_split(a->N, ith, nth, &n0, &n1);
    miser_q32_cols_ref(a, n0, n1);
    miser_q4_cols_epilogue(a, n0, n1);
}

void miser_q4_linear_int(const miser_linear_args *a, int ith, int nth, miser_q4_dot_fn dot)
{
    if (a->partial && a->phase) return;
    const miser_dtype dt = a->wdt;
    const int64_t bl = miser_dtype_block(dt);
    const size_t bb = miser_dtype_block_bytes(dt);
    const size_t row_q = dt == MISER_DTYPE_Q4_0 ? (size_t)(a->K / 32) * sizeof(miser_q8a)
                                               : (size_t)(a->K / MISER_QK_K) * sizeof(miser_q8k);
    size_t room;
    unsigned char *xq = miser_qdot_scratch(&room);
    if (!xq || row_q > room) { /* K past 200k (or no room): decode the blocks instead */
        miser_q4_linear_ref(a, ith, nth);
        return;
    }
    int64_t n0, n1;
    miser_split(a->N, ith, nth, &n0, &n1);
    if (n0 >= n1) return;
    const int64_t chunk = (int64_t)(room / row_q);
    for (int64_t m0 = 0; m0 < a->M; m0 += chunk) {
        const int64_t m1 = m0 + chunk < a->M ? m0 + chunk : a->M;
        for (int64_t m = m0; m < m1; m++) {
            void *q = xq + (size_t)(m - m0) * row_q;
            if (dt == MISER_DTYPE_Q4_0) miser_q8a_quantize_row(a->x + m * a->ldx, a->K, q);
            else miser_q8k_quantize_row(a->x + m * a->ldx, a->K, q);
        }
        for (int64_t n = n0; n < n1; n++) {
            const uint8_t *row = (const uint8_t *)a->w + (size_t)(n * a->wsn / bl) * bb;
            const float b = a->bias ? miser_load_elem(a->bdt, a->bias, n) : 0.0f;
            for (int64_t m = m0; m < m1; m++) {
                const float v = dot(dt, row, xq + (size_t)(m - m0) * row_q, a->K) + b;
                a->y[m * a->ldy + n] = a->act == MISER_ACT_GELU ? gelu1(v) : v;
            }
        }
    }
}

void miser_q4_linear_int_ref(const miser_linear_args *a, int ith, int nth)
{
    miser_q4_linear_int(a, ith, nth, miser_q4_dot_int_ref);
}
