/* AVX2 pieces the integer kernels share (qdot_avx2.c with its qdot_tile.h,
 * kpanel_avx2.c, quant4_avx2.c): the 8 x 8 dword transpose their panels are
 * packed with, 8 rows' f16 block scales as f32 lanes, the parts of
 * quantising x (the block's largest |x|, int32 back to int8 in order), and
 * the Q4_K / Q6_K unpacking the row dots and the panels both use. Include
 * after <immintrin.h> (or emu_x86.h in the emulated build); only for files
 * compiled with -mavx2 whose callers checked the CPU. Internal to src/kernels. */
#ifndef MISER_KERNELS_AVX2_SHARED_H
#define MISER_KERNELS_AVX2_SHARED_H

#include <stdint.h>
#include <string.h>

/* out[g] lane n = dword g of R[n] (g, n = 0..7) */
static inline __attribute__((always_inline)) void miser_tr8x8_epi32(const __m256i *R, __m256i *out)
{
    __m256i u[8];
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)
    {
        const __m256i *s = R + 4 * h;
        const __m256i t0 = _mm256_unpacklo_epi32(s[0], s[1]), t1 = _mm256_unpackhi_epi32(s[0], s[1]);
        const __m256i t2 = _mm256_unpacklo_epi32(s[2], s[3]), t3 = _mm256_unpackhi_epi32(s[2], s[3]);
        u[4 * h + 0] = _mm256_unpacklo_epi64(t0, t2); /* dword 0 | 4 of rows 4h..4h+3 */
        u[4 * h + 1] = _mm256_unpackhi_epi64(t0, t2); /* 1 | 5 */
        u[4 * h + 2] = _mm256_unpacklo_epi64(t1, t3); /* 2 | 6 */
        u[4 * h + 3] = _mm256_unpackhi_epi64(t1, t3); /* 3 | 7 */
    }
    _Pragma("GCC unroll 4") for (int g = 0; g < 4; g++)
    {
        out[g] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x20);
        out[g + 4] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x31);
    }
}

/* the f16 at byte off of each of the 8 rows r[], as f32 lanes: eight loads
 * and a tree of unpacks (insert-word chains are serial) */
static inline __attribute__((always_inline)) __m256 miser_f16x8_ps(const uint8_t *const *r, int64_t off)
{
    __m128i v[8];
    _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)
    {
        uint16_t h;
        memcpy(&h, r[j] + off, 2);
        v[j] = _mm_cvtsi32_si128(h);
    }
    const __m128i a = _mm_unpacklo_epi32(_mm_unpacklo_epi16(v[0], v[1]), _mm_unpacklo_epi16(v[2], v[3]));
    const __m128i b = _mm_unpacklo_epi32(_mm_unpacklo_epi16(v[4], v[5]), _mm_unpacklo_epi16(v[6], v[7]));
    return _mm256_cvtph_ps(_mm_unpacklo_epi64(a, b));
}

/* the largest of mx's 8 lanes */
static inline __attribute__((always_inline)) float miser_hmax8_ps(__m256 mx)
{
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    return _mm_cvtss_f32(m4);
}

/* q[0..3] (32 int32 in [-127, 127], in order) as 32 int8 in the same order */
static inline __attribute__((always_inline)) __m256i miser_pack32_epi8(const __m256i *q)
{
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Q4_K's 8 scales and 8 mins (quant4.h's miser_q4k_scale_min for j = 0..7)
 * in one vector: bytes 0-7 the scales, 8-15 the mins. q is the block's 12 scale bytes; 16 are read (the 4 after them
 * are the block's first quants, inside the block). Scales / mins 0-3 are
 * the low 6 bits of bytes 0-3 / 4-7; 4-7 take 4 bits from bytes 8-11 (low
 * nibble: scales, high: mins) and their top 2 from bits 6-7 of bytes 0-3 /
 * 4-7. Byte shifts are 16-bit shifts whose carry the masks drop. */
static inline __attribute__((always_inline)) __m128i miser_q4k_scales_mins_v(const uint8_t *q)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)q);
    const __m128i a = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i b = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const __m128i lo = _mm_and_si128(a, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0));
    const __m128i hn = _mm_and_si128(_mm_srli_epi16(a, 4), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15));
    const __m128i top = _mm_and_si128(_mm_srli_epi16(b, 2), _mm_set1_epi8(0x30));
    return _mm_or_si128(_mm_or_si128(lo, hn), top);
}

/* Q6_K half h's 128 values as 4 x 32 bytes (0..63): low nibbles of the
 * ql bytes with the qh bits moved into bits 4-5 by a 16-bit shift and the
 * 0x30 mask (the shift's carry into the next byte is masked off) */
static inline __attribute__((always_inline)) void miser_q6k_half(const uint8_t *w, int h, __m256i q[4])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i l0 = _mm256_loadu_si256((const __m256i *)(w + 64 * h));
    const __m256i l1 = _mm256_loadu_si256((const __m256i *)(w + 64 * h + 32));
    const __m256i hb = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * h));
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m30));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
}

#endif
