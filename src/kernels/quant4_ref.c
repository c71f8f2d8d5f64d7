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
