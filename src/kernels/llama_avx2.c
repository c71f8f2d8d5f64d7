/* AVX2 + FMA kernels of the Llama family's own ops (issue 14): rotary
 * embeddings in both conventions miser runs, rotate-half (Hugging Face) and
 * adjacent pairs (llama.cpp's rope "normal", GGUF llama files). Compiled
 * with the SIMD flags (the Makefile's *_avx2.c rule) and reached only
 * through the avx2 / avx512 kernel tables (kernels_avx2.c), which
 * dispatch.c selects after checking the CPU; the scalar references
 * (miser_ref_rope, miser_rope_pairs) stay the definition and the fallback.
 *
 * Why a SIMD rope: a 128-token prefill of SmolLM2-360M rotates 5.2 M
 * elements (Q and K, 32 layers) and the scalar loop was ~1-2 % of the
 * prefill; decode rotates 1280 per layer, where it only needs to spread
 * over the threads (work items are (row, head), not rows: T = 1 in decode).
 *
 * Arithmetic: y0 = x0 c - x1 s and y1 = x1 c + x0 s with one rounding for
 * the product pair (an FMA over the other product), so results may differ
 * from the reference in the last bit; tests compare both against the
 * definition in double (tests/test_llama.c).
 *
 * Also the f32 -> f16 row store of an f16 KV cache (the Llama family's
 * default): F16C's vcvtps2ph rounds to nearest even like miser_f32_to_f16,
 * subnormals, infinities and NaN included, so the cache holds the same bits
 * with either (tests/test_llama.c compares them); the scalar conversion was
 * ~1.7 % of a loaded 128-token SmolLM2 prefill (perf). */
#include "kernels.h"

#include <immintrin.h>

void miser_avx2_f32_to_f16(uint16_t *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = miser_f32_to_f16(src[i]);
}

/* rotate-half: lanes i..i+7 of the first half against i+half.. */
static void rope_half_head(float *yr, const float *xr, const float *c, const float *s, int64_t half)
{
    int64_t i = 0;
    for (; i + 8 <= half; i += 8) {
        const __m256 x0 = _mm256_loadu_ps(xr + i), x1 = _mm256_loadu_ps(xr + i + half);
        const __m256 vc = _mm256_loadu_ps(c + i), vs = _mm256_loadu_ps(s + i);
        const __m256 y0 = _mm256_fmsub_ps(x0, vc, _mm256_mul_ps(x1, vs));
        const __m256 y1 = _mm256_fmadd_ps(x1, vc, _mm256_mul_ps(x0, vs));
        _mm256_storeu_ps(yr + i, y0); /* both loaded before either store: y may alias x */
        _mm256_storeu_ps(yr + i + half, y1);
    }
    for (; i < half; i++) {
        const float x0 = xr[i], x1 = xr[i + half];
        yr[i] = x0 * c[i] - x1 * s[i];
        yr[i + half] = x1 * c[i] + x0 * s[i];
    }
}

/* adjacent pairs: 8 lanes are 4 pairs (2i, 2i+1) sharing cos/sin i */
static void rope_pairs_head(float *yr, const float *xr, const float *c, const float *s, int64_t half)
{
    const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    int64_t i = 0;
    for (; i + 4 <= half; i += 4) {
        const __m256 x = _mm256_loadu_ps(xr + 2 * i);
        const __m256 vc = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(c + i)), dup);
        const __m256 vs = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + i)), dup);
        const __m256 xs = _mm256_permute_ps(x, 0xB1); /* (x1, x0) in each pair */
        /* even lanes x0 c - x1 s, odd lanes x1 c + x0 s */
        _mm256_storeu_ps(yr + 2 * i, _mm256_fmaddsub_ps(x, vc, _mm256_mul_ps(xs, vs)));
    }
    for (; i < half; i++) {
        const float x0 = xr[2 * i], x1 = xr[2 * i + 1];
        yr[2 * i] = x0 * c[i] - x1 * s[i];
        yr[2 * i + 1] = x1 * c[i] + x0 * s[i];
    }
}

void miser_avx2_rope(float *y, int64_t y_row, const float *x, int64_t x_row, int64_t T, int64_t H, int64_t D,
                     const float *cs, const float *sn, int pairs, int ith, int nth)
{
    const int64_t half = D / 2;
    int64_t lo, hi;
    miser_split(T * H, ith, nth, &lo, &hi); /* items (row, head): decode's one row spreads too */
    for (int64_t w = lo; w < hi; w++) {
        const int64_t r = w / H, h = w % H;
        const float *xr = x + r * x_row + h * D, *c = cs + r * half, *s = sn + r * half;
        float *yr = y + r * y_row + h * D;
        if (pairs) rope_pairs_head(yr, xr, c, s, half);
        else rope_half_head(yr, xr, c, s, half);
    }
}
