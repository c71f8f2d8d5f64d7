/* Scalar reference kernels: the definition of correct. Written for clarity;
 * SIMD versions are tested against these. */
#include "kernels.h"
#include "kernels/quant4.h"
#include "miser/graph.h"

#include <math.h>
#include <string.h>

float miser_load_elem(miser_dtype dt, const void *p, int64_t i)
{
    switch (dt) {
    case MISER_DTYPE_F32: return ((const float *)p)[i];
    case MISER_DTYPE_F16: return miser_f16_to_f32(((const uint16_t *)p)[i]);
    case MISER_DTYPE_BF16: return miser_bf16_to_f32(((const uint16_t *)p)[i]);
    case MISER_DTYPE_I32: return (float)((const int32_t *)p)[i];
    case MISER_DTYPE_Q8_0: {
        const uint8_t *b = (const uint8_t *)p + (i / MISER_Q8_0_BLOCK) * MISER_Q8_0_BYTES;
        uint16_t h;
        memcpy(&h, b, 2);
        return miser_f16_to_f32(h) * (float)((const int8_t *)(b + 2))[i % MISER_Q8_0_BLOCK];
    }
    case MISER_DTYPE_Q4_0: case MISER_DTYPE_Q4_K: case MISER_DTYPE_Q6_K: return miser_q4_load_elem(dt, p, i);
    default: return 0.0f;
    }
}

static float gelu1(float x)
{
    /* GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    const float c = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

static void ref_linear(const miser_linear_args *a, int ith, int nth)
{
    if (a->partial && a->phase) return; /* no K split here: phase 0 did it all */
    if (miser_q4_linear_ok(a)) { /* GGUF 4-bit blocks: decoded per block, quant4_ref.c */
        miser_q4_linear_ref(a, ith, nth);
        return;
    }
    int64_t n0, n1;
    miser_split(a->N, ith, nth, &n0, &n1);
    for (int64_t m = 0; m < a->M; m++) {
        const float *x = a->x + m * a->ldx;
        float *y = a->y + m * a->ldy;
        for (int64_t n = n0; n < n1; n++) {
            double acc = a->bias ? miser_load_elem(a->bdt, a->bias, n) : 0.0;
            for (int64_t k = 0; k < a->K; k++)
                acc += (double)x[k] * miser_load_elem(a->wdt, a->w, k * a->wsk + n * a->wsn);
            float v = (float)acc;
            y[n] = a->act == MISER_ACT_GELU ? gelu1(v) : v;
        }
    }
}

static float kv_elem(const miser_attention_args *a, const void *base, int64_t i)
{
    return a->kvdt == MISER_DTYPE_F16 ? miser_f16_to_f32(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

static void ref_attention(const miser_attention_args *a, int ith, int nth)
{
    /* work items: (t, h) pairs */
    int64_t lo, hi;
    miser_causal_split(a->T, a->H, a->S, ith, nth, &lo, &hi);
    const int64_t group = a->group > 1 ? a->group : 1;
    float *p = a->scratch + (int64_t)ith * a->S * group;
    for (int64_t w = lo; w < hi; w++) {
        int64_t t = w / a->H, h = w % a->H, j = h / group;
        int64_t valid = a->S - a->T + t + 1;
        const float *q = a->q + t * a->q_row + h * a->D;
        double mx = -INFINITY;
        for (int64_t s = 0; s < valid; s++) {
            double dot = 0;
            for (int64_t d = 0; d < a->D; d++) dot += (double)q[d] * kv_elem(a, miser_attn_row(a, 0, s), j * a->D + d);
            p[s] = (float)(dot * a->scale);
            if (p[s] > mx) mx = p[s];
        }
        double sum = 0;
        for (int64_t s = 0; s < valid; s++) {
            p[s] = expf(p[s] - (float)mx);
            sum += p[s];
        }
        float *o = a->out + t * a->o_row + h * a->D;
        for (int64_t d = 0; d < a->D; d++) {
            double acc = 0;
            for (int64_t s = 0; s < valid; s++) acc += (double)p[s] * kv_elem(a, miser_attn_row(a, 1, s), j * a->D + d);
            o[d] = (float)(acc / sum);
        }
    }
}

static void ref_layernorm(float *y, const float *x, const void *gamma, const void *beta, miser_dtype pdt,
                          int64_t rows, int64_t C, float eps, int ith, int nth)
{
    int64_t lo, hi;
    miser_split(rows, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = x + r * C;
        double mean = 0, var = 0;
        for (int64_t c = 0; c < C; c++) mean += xr[c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++) var += (xr[c] - mean) * (xr[c] - mean);
        var /= (double)C;
        double inv = 1.0 / sqrt(var + eps);
        for (int64_t c = 0; c < C; c++)
            y[r * C + c] = (float)((xr[c] - mean) * inv * miser_load_elem(pdt, gamma, c) + miser_load_elem(pdt, beta, c));
    }
}

void miser_ref_rmsnorm(float *y, const float *x, const void *gamma, miser_dtype pdt, int64_t rows, int64_t C, float eps,
                       int ith, int nth)
{
    int64_t lo, hi;
    miser_split(rows, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = x + r * C;
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        double inv = 1.0 / sqrt(ss / (double)C + eps);
        for (int64_t c = 0; c < C; c++) y[r * C + c] = (float)(xr[c] * inv * miser_load_elem(pdt, gamma, c));
    }
}

void miser_ref_rope(float *y, int64_t y_row, const float *x, int64_t x_row, int64_t T, int64_t H, int64_t D,
                    const float *cs, const float *sn, int ith, int nth)
{
    int64_t lo, hi, half = D / 2;
    miser_split(T, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        for (int64_t h = 0; h < H; h++) {
            const float *xr = x + r * x_row + h * D;
            float *yr = y + r * y_row + h * D;
            for (int64_t i = 0; i < half; i++) {
                const float c = cs[r * half + i], s = sn[r * half + i], x0 = xr[i], x1 = xr[i + half];
                yr[i] = x0 * c - x1 * s;
                yr[i + half] = x1 * c + x0 * s;
            }
        }
}

void miser_ref_silu_mul(float *y, const float *g, const float *u, int64_t n, int ith, int nth)
{
    int64_t lo, hi;
    miser_split(n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void ref_gelu(float *y, const float *x, int64_t n, int ith, int nth)
{
    int64_t lo, hi;
    miser_split(n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) y[i] = gelu1(x[i]);
}

static void ref_add(float *y, const float *a, const float *b, int64_t n, int ith, int nth)
{
    int64_t lo, hi;
    miser_split(n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) y[i] = a[i] + b[i];
}

static void ref_softmax(float *y, const float *x, int64_t rows, int64_t n, float scale, const int64_t *valid_base,
                        int64_t valid_step_rows, int ith, int nth)
{
    /* valid_base: when non-NULL, row r sees valid_base[0] + (r % valid_step_rows)
     * entries (causal rows of each head repeat every T rows). */
    int64_t lo, hi;
    miser_split(rows, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t valid = valid_base ? valid_base[0] + (r % valid_step_rows) : n;
        if (valid > n) valid = n;
        const float *xr = x + r * n;
        float *yr = y + r * n;
        float mx = -INFINITY;
        for (int64_t i = 0; i < valid; i++) mx = fmaxf(mx, xr[i] * scale);
        double sum = 0;
        for (int64_t i = 0; i < valid; i++) {
            yr[i] = expf(xr[i] * scale - mx);
            sum += yr[i];
        }
        for (int64_t i = 0; i < valid; i++) yr[i] = (float)(yr[i] / sum);
        for (int64_t i = valid; i < n; i++) yr[i] = 0.0f;
    }
}

static const miser_kernels g_ref = {
    .name = "ref",
    .linear = ref_linear,
    .attention = ref_attention,
    .layernorm = ref_layernorm,
    .gelu = ref_gelu,
    .rmsnorm = miser_ref_rmsnorm,
    .silu_mul = miser_ref_silu_mul,
    .add = ref_add,
    .softmax = ref_softmax,
};

const miser_kernels *miser_kernels_ref(void) { return &g_ref; }
