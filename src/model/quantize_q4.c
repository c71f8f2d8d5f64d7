/* 4- and 6-bit quantisers for the converted-weights cache (precision.h,
 * --precision q4_0 / q4_k): ggml's reference quantizers, written here from
 * the algorithm llama.cpp publishes in ggml-quants.c, so a cache file holds
 * the blocks llama.cpp itself would write (tests/test_quant_convert.c checks
 * them byte for byte against llama.cpp's own quantize_row_*_ref):
 *  - Q4_0 (quantize_row_q4_0_ref): per 32 values, d = x[argmax |x|] / -8,
 *    q = min(15, (int)(x / d + 8.5));
 *  - Q4_K (quantize_row_q4_K_ref): per 32-value sub-block a scale and a min
 *    fitted by make_qkx2_quants (weights |x| + rms, 21 candidate scales,
 *    weighted least squares), then the 8 scales and mins quantised to 6 bits
 *    against the block's f16 d / dmin and the values requantised with them;
 *  - Q6_K (quantize_row_q6_K_ref): per 16-value sub-block make_qx_quants
 *    (rmse_type 1: 19 candidate scales, weights x^2), the 16 scales to int8
 *    against the block's f16 d, values requantised to 6 bits.
 * Float arithmetic follows ggml's order of operations (no fma: this file is
 * built without -mfma and C11 does not contract). Stateless; no allocation. */
#include "miser/precision.h"

#include "kernels/quant4.h"

#include <math.h>
#include <string.h>

#define GROUP_MAX_EPS 1e-15f

/* ggml's nearest_int: round to nearest, ties to even, via the 1.5 * 2^23
 * trick; |v| beyond 2^22 - 1 (ggml asserts it never is) is clamped. */
static int nearest_int(float v)
{
    if (!(v <= 4194303.f)) v = v != v ? 0.f : 4194303.f;
    if (v < -4194303.f) v = -4194303.f;
    float f = v + 12582912.f;
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

void miser_quantize_q4_0(const float *src, int64_t n, void *dst)
{
    uint8_t *o = dst;
    for (int64_t b = 0; b < n / 32; b++, o += MISER_Q4_0_BYTES) {
        const float *x = src + b * 32;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8, id = d ? 1.0f / d : 0.0f;
        const uint16_t h = miser_f32_to_f16(d);
        memcpy(o, &h, 2);
        for (int j = 0; j < 16; j++) {
            const float x0 = x[j] * id, x1 = x[16 + j] * id;
            int q0 = (int)(x0 + 8.5f), q1 = (int)(x1 + 8.5f); /* ggml: (int8_t), same on 0.5..16.5 */
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            o[2 + j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* ggml's make_qkx2_quants: levels L[0..n) in [0, nmax] with scale (return)
 * and offset -*the_min minimising the weighted squared error */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                              uint8_t *Laux, float rmin, float rdelta, int nstep)
{
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float diff = scale * L[i] + min - x[i];
        diff = diff * diff;
        best_error += w[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = diff * diff;
                cur_error += w[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

void miser_quantize_q4_k(const float *src, int64_t n, void *dst)
{
    uint8_t *o = dst;
    for (int64_t b = 0; b < n / MISER_QK_K; b++, o += MISER_Q4_K_BYTES) {
        const float *x = src + b * MISER_QK_K;
        uint8_t L[MISER_QK_K], Laux[32], *sc12 = o + 4, *qs = o + 16;
        float weights[32], mins[8], scales[8], max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; j++) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
            const float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        memset(sc12, 0, 12);
        for (int j = 0; j < 8; j++) {
            uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]), lm = (uint8_t)nearest_int(inv_min * mins[j]);
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
            if (j < 4) {
                sc12[j] = ls;
                sc12[j + 4] = lm;
            } else {
                sc12[j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
                sc12[j - 4] |= (uint8_t)((ls >> 4) << 6);
                sc12[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        const uint16_t hd = miser_f32_to_f16(max_scale / 63.f), hm = miser_f32_to_f16(max_min / 63.f);
        memcpy(o, &hd, 2);
        memcpy(o + 2, &hm, 2);
        const float fd = miser_f16_to_f32(hd), fm = miser_f16_to_f32(hm);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            miser_q4k_scale_min(j, sc12, &sc, &m);
            const float d = fd * sc;
            if (!d) continue;
            const float dm = fm * m;
            for (int i = 0; i < 32; i++) {
                int l = nearest_int((x[32 * j + i] + dm) / d);
                L[32 * j + i] = (uint8_t)(l < 0 ? 0 : l > 15 ? 15 : l);
            }
        }
        for (int j = 0; j < MISER_QK_K; j += 64, qs += 32)
            for (int l = 0; l < 32; l++) qs[l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
    }
}

/* ggml's make_qx_quants with rmse_type 1 and no importance weights:
 * levels L = l + nmax, l in [-nmax, nmax), scale returned */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void miser_quantize_q6_k(const float *src, int64_t n, void *dst)
{
    uint8_t *o = dst;
    for (int64_t b = 0; b < n / MISER_QK_K; b++, o += MISER_Q6_K_BYTES) {
        const float *x = src + b * MISER_QK_K;
        uint8_t *ql = o, *qh = o + 128;
        int8_t *sc = (int8_t *)(o + 192), L[MISER_QK_K];
        float scales[16], max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ib++) {
            const float s = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = s;
            if (fabsf(s) > max_abs_scale) {
                max_abs_scale = fabsf(s);
                max_scale = s;
            }
        }
        memset(o, 0, MISER_Q6_K_BYTES);
        if (max_abs_scale < GROUP_MAX_EPS) continue; /* all zero, d = +0 */
        const float iscale = -128.f / max_scale;
        const uint16_t hd = miser_f32_to_f16(1 / iscale);
        memcpy(o + 208, &hd, 2);
        for (int ib = 0; ib < 16; ib++) {
            const int v = nearest_int(iscale * scales[ib]);
            sc[ib] = (int8_t)(v < 127 ? v : 127);
        }
        const float fd = miser_f16_to_f32(hd);
        for (int j = 0; j < 16; j++) {
            const float d = fd * sc[j];
            if (!d) continue;
            for (int i = 0; i < 16; i++) {
                int l = nearest_int(x[16 * j + i] / d);
                l = l < -32 ? -32 : l > 31 ? 31 : l;
                L[16 * j + i] = (int8_t)(l + 32);
            }
        }
        for (int j = 0; j < MISER_QK_K; j += 128, ql += 64, qh += 32)
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF,
                              q4 = L[j + l + 96] & 0xF;
                ql[l] = (uint8_t)(q1 | q3 << 4);
                ql[l + 32] = (uint8_t)(q2 | q4 << 4);
                qh[l] = (uint8_t)((L[j + l] >> 4) | (L[j + l + 32] >> 4) << 2 | (L[j + l + 64] >> 4) << 4 |
                                  (L[j + l + 96] >> 4) << 6);
            }
    }
}

void miser_quantize_blocks(miser_dtype dt, const float *src, int64_t n, void *dst)
{
    switch (dt) {
    case MISER_DTYPE_Q8_0: miser_quantize_q8_0(src, n, dst); break;
    case MISER_DTYPE_Q4_0: miser_quantize_q4_0(src, n, dst); break;
    case MISER_DTYPE_Q4_K: miser_quantize_q4_k(src, n, dst); break;
    case MISER_DTYPE_Q6_K: miser_quantize_q6_k(src, n, dst); break;
    default: break;
    }
}
