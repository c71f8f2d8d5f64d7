/* AVX2 row dots for GGUF's 4-bit weights on quantised x (quant4.h): the
 * weight nibbles / 6-bit values are unpacked to unsigned bytes and
 * multiplied with the int8 activations by vpmaddubsw (u8 x s8 -> pairs of
 * i16; at most 63 * 127 * 2 fits), widened by vpmaddwd, and summed per
 * block or sub-block as miser_q4_dot_int_ref does. Q4_K / Q6_K fold the
 * sub-block scales into the widening (vpmaddwd by the scale: exact
 * integers) and scale each 256-value block in the same scalar f32 code, so
 * they are bit for bit the reference's; so is Q4_0 (quant4.h's 32-value
 * definition: each block's exact integer dot, scaled in block order).
 * Compiled with -mavx2 (Makefile: *_avx2.c); called only after the CPU check
 * of the avx2 / avx512 kernel sets. */
#include "kernels/quant4.h"
#include "miser/graph.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "avx2_shared.h"

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

/* Q6_K's sub-block scales s[8h + 2i] (lanes 0-7) and s[8h + 2i + 1]
 * (lanes 8-15) as int16 from s16h: the half's 8 scales (8h .. 8h + 7) widened to
 * int16 in both 128-bit lanes, so the pick is one in-lane pshufb: the low
 * lane takes int16 2i, the high lane 2i + 1. */
static inline __m256i q6k_scale_pick(__m256i s16h, int i)
{
    const short lo = (short)(4 * i | (4 * i + 1) << 8), hi = (short)((4 * i + 2) | (4 * i + 3) << 8);
    return _mm256_shuffle_epi8(s16h, _mm256_setr_epi16(lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi, hi, hi));
}

/* Q4_K's scale j (0-7) in every int16 lane, from the 8 unsigned scales
 * widened once per block into both 128-bit lanes (s16). */
static inline __m256i q4k_scale_at(__m256i s16, int j)
{
    return _mm256_shuffle_epi8(s16, _mm256_set1_epi16((short)(2 * j | (2 * j + 1) << 8)));
}

/* One 256-value block's share of a K-quant row dot, as the f32 the row
 * adds (acc += this, block by block): the row dot, the two-row decode and
 * the tiles all add the same values in the same order. */
static inline __attribute__((always_inline)) float blk_q4k(const uint8_t *w, const miser_q8k *xb)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const int8_t *q8 = xb->q;
    const uint8_t *qs = w + 16;
    const __m128i scm = miser_q4k_scales_mins_v(w + 4);
    const __m256i s16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm));
    __m256i sv = _mm256_setzero_si256(); /* the scale folded into the widening: exact integers */
    _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
        const __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(raw, m4),
                                                _mm256_loadu_si256((const __m256i *)(q8 + 64 * p)));
        const __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4),
                                                _mm256_loadu_si256((const __m256i *)(q8 + 64 * p + 32)));
        sv = _mm256_add_epi32(sv, _mm256_madd_epi16(lo, q4k_scale_at(s16, 2 * p)));
        sv = _mm256_add_epi32(sv, _mm256_madd_epi16(hi, q4k_scale_at(s16, 2 * p + 1)));
    }
    /* sum over sub-blocks j of min_j * (bsums[2j] + bsums[2j+1]): each min
     * twice, as 16 int16 beside the 16 bsums (exact in int32) */
    const __m256i mv = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb->bsums),
                                         _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(scm, scm)));
    /* both sums in one reduction: hadd pairs them lane by lane, then the
     * 128-bit halves and one more hadd; exact int32 either way */
    const __m256i hh = _mm256_hadd_epi32(sv, mv);
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(hh), _mm256_extracti128_si256(hh, 1));
    s4 = _mm_hadd_epi32(s4, s4);
    const int32_t sumi = _mm_cvtsi128_si32(s4), summ = _mm_extract_epi32(s4, 1);
    const float t = half(w) * xb->d * (float)sumi, u = half(w + 2) * xb->d * (float)summ;
    return t - u;
}

/* Q6_K: each value is (4 low bits | 2 high bits << 4) - 32 (miser_q6k_half
 * builds the unsigned part). The -32 comes off as 32 * sum(scale * bsum):
 * one vpmaddwd of the bsums by the scales, taken from the integer sum
 * before the one hsum. */
static inline __attribute__((always_inline)) float blk_q6k(const uint8_t *w, const miser_q8k *xb)
{
    const int8_t *q8 = xb->q;
    const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 192)));
    __m256i sv = _mm256_sub_epi32(_mm256_setzero_si256(),
                                  _mm256_slli_epi32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb->bsums), s16), 5));
    const __m256i s16lo = _mm256_permute2x128_si256(s16, s16, 0x00), s16hi = _mm256_permute2x128_si256(s16, s16, 0x11);
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        const __m256i s16h = h ? s16hi : s16lo;
        __m256i q[4];
        miser_q6k_half(w, h, q);
        _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) {
            /* bytes 0-15: sub-block 8h + 2i, 16-31: the next; each lane half takes its scale */
            const __m256i p = _mm256_maddubs_epi16(q[i], _mm256_loadu_si256((const __m256i *)(q8 + 128 * h + 32 * i)));
            sv = _mm256_add_epi32(sv, _mm256_madd_epi16(p, q6k_scale_pick(s16h, i)));
        }
    }
    const float t = half(w + 208) * xb->d * (float)hsum8(sv);
    return t;
}

float miser_q4_dot_avx2(miser_dtype dt, const void *wrow, const void *xq, int64_t K)
{
    const uint8_t *w = wrow;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float acc = 0;
    if (dt == MISER_DTYPE_Q4_0) {
        /* quant4.h's 32-value definition: each block's exact integer dot
         * (nibbles unsigned against x by vpmaddubsw, 8 * sum(qx) taken off),
         * then acc = fma(float(isum) * dw, dx, acc) in block order */
        const miser_q8a *x = xq;
        const __m256i ones = _mm256_set1_epi16(1);
        for (int64_t b = 0; b < K / 32; b++, w += MISER_Q4_0_BYTES) {
            const __m128i raw = _mm_loadu_si128((const __m128i *)(w + 2));
            const __m256i qw = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
            const __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].q);
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qx), ones);
            __m128i s = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
            s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
            s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
            const int32_t isum = _mm_cvtsi128_si32(s) - 8 * x[b].sum;
            acc = fmaf((float)isum * half(w), x[b].d, acc);
        }
        return acc;
    }
    const miser_q8k *x = xq;
    if (dt == MISER_DTYPE_Q4_K)
        for (int64_t b = 0; b < K / MISER_QK_K; b++) acc += blk_q4k(w + b * MISER_Q4_K_BYTES, x + b);
    else
        for (int64_t b = 0; b < K / MISER_QK_K; b++) acc += blk_q6k(w + b * MISER_Q6_K_BYTES, x + b);
    return acc;
}

/* ---- Q4_K / Q6_K prefill: tiles of up to 4 rows of x per weight row ----
 * Each 256-value weight block is unpacked once (nibbles / 6-bit values to
 * bytes, the sub-block scales and mins to int16 vectors) and reused for
 * every row of the tile; the integers are those of miser_q4_dot_avx2 and the
 * f32 operations per output are the same, in the same order (acc += t - u
 * per block), so y is bit for bit the row dot's whatever M is (kernels.h,
 * reduction order). */
#define KT_MR 4

static inline __attribute__((always_inline)) void tile_q4k(const int MR, const uint8_t *w, const miser_q8k *x,
                                                           int64_t nb, float *acc)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float a[KT_MR] = {0};
    for (int64_t b = 0; b < nb; b++, w += MISER_Q4_K_BYTES) {
        const uint8_t *qs = w + 16;
        const __m128i scm = miser_q4k_scales_mins_v(w + 4);
        const __m256i s16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm));
        const __m256i mv = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(scm, scm)); /* min j beside bsums 2j, 2j+1 */
        __m256i sv[KT_MR];
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) sv[r] = _mm256_setzero_si256();
        /* sub-block pairs outermost: one pair's bytes and scales live at a time */
        _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
            const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            const __m256i s0 = q4k_scale_at(s16, 2 * p), s1 = q4k_scale_at(s16, 2 * p + 1);
            _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
            {
                const int8_t *q8 = x[r * nb + b].q + 64 * p;
                sv[r] = _mm256_add_epi32(sv[r], _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8)), s0));
                sv[r] = _mm256_add_epi32(sv[r], _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32))), s1));
            }
        }
        const float dw = half(w), dmin = half(w + 2);
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
        {
            const miser_q8k *xb = x + r * nb + b;
            const int32_t sumi = hsum8(sv[r]);
            const int32_t summ = hsum8(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xb->bsums), mv));
            const float t = dw * xb->d * (float)sumi, u = dmin * xb->d * (float)summ;
            a[r] += t - u;
        }
    }
    for (int r = 0; r < MR; r++) acc[r] = a[r];
}

/* blk_q6k's unpacking and folded -32 correction, each block's values reused
 * for MR rows of x */
static inline __attribute__((always_inline)) void tile_q6k(const int MR, const uint8_t *w, const miser_q8k *x,
                                                           int64_t nb, float *acc)
{
    float a[KT_MR] = {0};
    for (int64_t b = 0; b < nb; b++, w += MISER_Q6_K_BYTES) {
        const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 192)));
        const __m256i s16lo = _mm256_permute2x128_si256(s16, s16, 0x00), s16hi = _mm256_permute2x128_si256(s16, s16, 0x11);
        __m256i sv[KT_MR];
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) sv[r] = _mm256_sub_epi32(
            _mm256_setzero_si256(),
            _mm256_slli_epi32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x[r * nb + b].bsums), s16), 5));
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
            const __m256i s16h = h ? s16hi : s16lo;
            __m256i q[4];
            miser_q6k_half(w, h, q);
            _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) {
                const __m256i scv = q6k_scale_pick(s16h, i);
                _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
                {
                    const int8_t *q8 = x[r * nb + b].q + 128 * h + 32 * i;
                    sv[r] = _mm256_add_epi32(sv[r], _mm256_madd_epi16(_mm256_maddubs_epi16(q[i], _mm256_loadu_si256((const __m256i *)q8)), scv));
                }
            }
        }
        const float dw = half(w + 208);
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
        {
            const miser_q8k *xb = x + r * nb + b;
            const float t = dw * xb->d * (float)hsum8(sv[r]);
            a[r] += t;
        }
    }
    for (int r = 0; r < MR; r++) acc[r] = a[r];
}

static float gelu1(float x)
{
    const float c = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}


/* M == 1 with Q4_K / Q6_K (decode): two weight rows per pass over x's
 * quantised blocks xq, two independent chains sharing x's loads; each
 * output adds the same per-block values in the same order as the row dot. */
#ifndef K2_PF
#define K2_PF 2
#endif
static void k_rows2(const miser_linear_args *a, const miser_q8k *xq, int64_t n0, int64_t n1)
{
    const miser_dtype dt = a->wdt;
    const int64_t nb = a->K / MISER_QK_K;
    const size_t bb = miser_dtype_block_bytes(dt);
    for (int64_t n = n0; n < n1;) {
        const uint8_t *w0 = (const uint8_t *)a->w + (size_t)(n * a->wsn / MISER_QK_K) * bb;
        float acc[2] = {0, 0};
        int nr = 1;
        if (n + 1 < n1) {
            const uint8_t *w1 = (const uint8_t *)a->w + (size_t)((n + 1) * a->wsn / MISER_QK_K) * bb;
            nr = 2;
            /* the hardware prefetcher loses two interleaved short rows: the
             * pair K2_PF pairs ahead, 2 * bb bytes per block (qdot_tile.h) */
            const char *pf = (const char *)w0 + K2_PF * 2 * (w1 - w0);
            /* the block sizes as constants: the prefetch loops unroll */
            if (dt == MISER_DTYPE_Q4_K)
                for (int64_t b = 0; b < nb; b++) {
                    _Pragma("GCC unroll 8") for (int o = 0; o < 2 * MISER_Q4_K_BYTES; o += 64)
                        _mm_prefetch(pf + b * 2 * MISER_Q4_K_BYTES + o, _MM_HINT_T0);
                    acc[0] += blk_q4k(w0 + b * MISER_Q4_K_BYTES, xq + b);
                    acc[1] += blk_q4k(w1 + b * MISER_Q4_K_BYTES, xq + b);
                }
            else
                for (int64_t b = 0; b < nb; b++) {
                    _Pragma("GCC unroll 8") for (int o = 0; o < 2 * MISER_Q6_K_BYTES; o += 64)
                        _mm_prefetch(pf + b * 2 * MISER_Q6_K_BYTES + o, _MM_HINT_T0);
                    acc[0] += blk_q6k(w0 + b * MISER_Q6_K_BYTES, xq + b);
                    acc[1] += blk_q6k(w1 + b * MISER_Q6_K_BYTES, xq + b);
                }
        } else
            acc[0] = miser_q4_dot_avx2(dt, w0, xq, a->K);
        for (int j = 0; j < nr; j++) {
            const float v = acc[j] + (a->bias ? miser_load_elem(a->bdt, a->bias, n + j) : 0.0f);
            a->y[n + j] = a->act == MISER_ACT_GELU ? gelu1(v) : v;
        }
        n += nr;
    }
}

/* Q4_K / Q6_K: x quantised once per call per thread (chunks of rows),
 * then per weight row, tiles of 4 rows of x; one row of x (decode) goes
 * to k_rows2 */
static void linear_k_tiles(const miser_linear_args *a, int ith, int nth)
{
    if (a->partial && a->phase) return;
    const miser_dtype dt = a->wdt;
    const int64_t nb = a->K / MISER_QK_K;
    size_t room;
    miser_q8k *xq = miser_qdot_scratch(&room);
    const size_t row_q = (size_t)nb * sizeof(miser_q8k), bb = miser_dtype_block_bytes(dt);
    if (!xq || row_q > room) { /* the row dots: the same results */
        miser_q4_linear_int(a, ith, nth, miser_q4_dot_avx2);
        return;
    }
    int64_t n0, n1;
    miser_split(a->N, ith, nth, &n0, &n1);
    if (n0 >= n1) return;
    const int64_t chunk = (int64_t)(room / row_q);
    for (int64_t m0 = 0; m0 < a->M; m0 += chunk) {
        const int64_t mc = a->M - m0 < chunk ? a->M - m0 : chunk;
        for (int64_t m = 0; m < mc; m++) miser_q8k_quantize_row_avx2(a->x + (m0 + m) * a->ldx, a->K, xq + m * nb);
        if (a->M == 1) {
            k_rows2(a, xq, n0, n1);
            return;
        }
        if (a->M >= MISER_KQ_PANEL_MIN_M) { /* the packed panels; bias and activation after the chunks */
            miser_kq_cols_avx2(a, xq, mc, m0, n0, n1);
            continue;
        }
        for (int64_t n = n0; n < n1; n++) {
            const uint8_t *row = (const uint8_t *)a->w + (size_t)(n * a->wsn / MISER_QK_K) * bb;
            const float bias = a->bias ? miser_load_elem(a->bdt, a->bias, n) : 0.0f;
            for (int64_t m = 0; m < mc; m += KT_MR) {
                const int mr = mc - m < KT_MR ? (int)(mc - m) : KT_MR;
                float acc[KT_MR];
                const miser_q8k *xm = xq + m * nb;
                if (dt == MISER_DTYPE_Q4_K) {
                    if (mr == 4) tile_q4k(4, row, xm, nb, acc);
                    else if (mr == 3) tile_q4k(3, row, xm, nb, acc);
                    else if (mr == 2) tile_q4k(2, row, xm, nb, acc);
                    else tile_q4k(1, row, xm, nb, acc);
                } else {
                    if (mr == 4) tile_q6k(4, row, xm, nb, acc);
                    else if (mr == 3) tile_q6k(3, row, xm, nb, acc);
                    else if (mr == 2) tile_q6k(2, row, xm, nb, acc);
                    else tile_q6k(1, row, xm, nb, acc);
                }
                for (int r = 0; r < mr; r++) {
                    const float v = acc[r] + bias;
                    a->y[(m0 + m + r) * a->ldy + n] = a->act == MISER_ACT_GELU ? gelu1(v) : v;
                }
            }
        }
    }
    if (a->M >= MISER_KQ_PANEL_MIN_M) miser_q4_cols_epilogue(a, n0, n1);
}

/* Q4_0 (32-value blocks): the tiled qdot_avx2.c kernel over this thread's
 * columns, then `epi` (bias and activation) over them */
static void q40_linear(const miser_linear_args *a, int ith, int nth, miser_linear_epilogue_fn epi)
{
    if (a->partial && a->phase) return; /* no K split here: phase 0 did it all */
    int64_t n0, n1;
    miser_split(a->N, ith, nth, &n0, &n1);
    if (n0 >= n1) return;
    miser_qdot_cols(a, n0, n1);
    epi(a, n0, n1);
}

void miser_q4_linear_avx2(const miser_linear_args *a, int ith, int nth)
{
    if (a->wdt == MISER_DTYPE_Q4_0 && miser_qdot_ok(a)) {
        q40_linear(a, ith, nth, miser_q4_cols_epilogue);
        return;
    }
    if (a->wdt == MISER_DTYPE_Q4_K || a->wdt == MISER_DTYPE_Q6_K) {
        linear_k_tiles(a, ith, nth);
        return;
    }
    miser_q4_linear_int(a, ith, nth, miser_q4_dot_avx2);
}

int miser_q4_linear_set(const miser_linear_args *a, int ith, int nth, miser_linear_epilogue_fn epi)
{
    if (!miser_q4_linear_ok(a)) return 0;
    const int bias_ok =
        !a->bias || a->bdt == MISER_DTYPE_F32 || a->bdt == MISER_DTYPE_F16 || a->bdt == MISER_DTYPE_BF16;
    if (!bias_ok) { /* a bias the set's epilogue does not read: the plain kernels' scalar one */
        miser_q4_linear_avx2(a, ith, nth);
        return 1;
    }
    if (a->wdt == MISER_DTYPE_Q4_0) {
        q40_linear(a, ith, nth, epi);
        return 1;
    }
    /* Q4_K / Q6_K: the dots alone, then epi's bias and activation over the
     * same columns (miser_split of N, as the tiles split them) */
    if (a->partial && a->phase) return 1;
    miser_linear_args b = *a;
    b.bias = NULL;
    b.act = MISER_ACT_NONE;
    miser_q4_linear_avx2(&b, ith, nth);
    int64_t n0, n1;
    miser_split(a->N, ith, nth, &n0, &n1);
    if (n0 < n1) epi(a, n0, n1);
    return 1;
}
