/* AVX2 row dots for GGUF's 4-bit weights on quantised x (quant4.h): the
 * weight nibbles / 6-bit values are unpacked to unsigned bytes and
 * multiplied with the int8 activations by vpmaddubsw (u8 x s8 -> pairs of
 * i16; at most 63 * 127 * 2 fits), widened by vpmaddwd, and summed per
 * block or sub-block exactly as miser_q4_dot_int_ref does; the f32 scaling
 * is the same scalar code, so the results are bit for bit the reference's.
 * Compiled with -mavx2 (Makefile: *_avx2.c); called only after the CPU check
 * of the avx2 / avx512 kernel sets. */
#include "kernels/quant4.h"

#include <immintrin.h>
#include <string.h>

static inline float half(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline int32_t hsum8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static inline int32_t hsum4(__m128i s)
{
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* 32 u8 x 32 s8 -> 8 i32 partial sums (lanes 0-3: bytes 0-15, 4-7: 16-31) */
static inline __m256i dot32(__m256i u, const int8_t *x)
{
    const __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)x));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

float miser_q4_dot_avx2(miser_dtype dt, const void *wrow, const void *xq, int64_t K)
{
    const uint8_t *w = wrow;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    float acc = 0;
    if (dt == MISER_DTYPE_Q4_0) {
        const miser_q8a *x = xq;
        for (int64_t b = 0; b < K / 32; b++, w += MISER_Q4_0_BYTES) {
            const __m128i raw = _mm_loadu_si128((const __m128i *)(w + 2));
            const __m256i u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
            int32_t isum = hsum8(dot32(u, x[b].q)) - 8 * x[b].sum;
            const float t = half(w) * x[b].d * (float)isum; /* no fma: the same f32 ops in every set */
            acc += t;
        }
        return acc;
    }
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
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
                const int32_t lo = hsum8(dot32(_mm256_and_si256(raw, m4), q8 + 64 * p));
                const int32_t hi = hsum8(dot32(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), q8 + 64 * p + 32));
                sumi += sc0 * lo + sc1 * hi;
                summ += m0 * (x[b].bsums[4 * p] + x[b].bsums[4 * p + 1]) + m1 * (x[b].bsums[4 * p + 2] + x[b].bsums[4 * p + 3]);
            }
            const float t = half(w) * x[b].d * (float)sumi, u = half(w + 2) * x[b].d * (float)summ;
            acc += t - u;
            w += MISER_Q4_K_BYTES;
        } else { /* Q6_K */
            const uint8_t *ql = w, *qh = w + 128;
            const int8_t *sc = (const int8_t *)(w + 192);
            int32_t isum[16];
            for (int h = 0; h < 2; h++) {
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)(ql + 64 * h));
                const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 64 * h + 32));
                const __m256i hb = _mm256_loadu_si256((const __m256i *)(qh + 32 * h));
                const __m256i q[4] = {
                    _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4)),
                    _mm256_or_si256(_mm256_and_si256(l1, m4),
                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4)),
                };
                for (int i = 0; i < 4; i++) {
                    const __m256i d = dot32(q[i], q8 + 128 * h + 32 * i);
                    isum[8 * h + 2 * i] = hsum4(_mm256_castsi256_si128(d));
                    isum[8 * h + 2 * i + 1] = hsum4(_mm256_extracti128_si256(d, 1));
                }
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

void miser_q4_linear_avx2(const miser_linear_args *a, int ith, int nth)
{
    miser_q4_linear_int(a, ith, nth, miser_q4_dot_avx2);
}
