/* Q4_K / Q6_K prefill (from MISER_KQ_PANEL_MIN_M rows of x): 8 weight rows
 * packed into a transposed panel, as the q8_0 / Q4_0 tiles do (qdot_tile.h),
 * so that the 8 rows' outputs sit in one vector's lanes and no per-output
 * horizontal sum is left. The row tiles before this (quant4_avx2.c: 4 rows
 * of x against one weight row) summed every output's 8 lanes twice per
 * 256-value block, and converted and scaled it in scalar code: about as many
 * operations as the multiplies, which held GPT-2 medium Q4_K_M prefill at
 * 0.73-0.94x llama.cpp.
 *
 * The panel, per 256-value block of the 8 rows, for sub-block j of 32
 * values and group g of 4 (bytes 32 j + 4 g .. + 3 of x's block): w[j][g],
 * lane n = row n's 4 unsigned values (Q4_K nibbles 0..15, Q6_K 6-bit values
 * 0..63 before their - 32); the sub-block scales as an int16 pair per lane;
 * the terms x's bsums multiply (Q4_K's mins, Q6_K's 32 * scale) likewise;
 * the f16 block scales as f32. A tile of MR rows of x then takes, per group,
 * x's 4 bytes broadcast, vpmaddubsw against w[j][g] (pairs of products in
 * int16) and sums a sub-block's groups in int16 before one vpmaddwd by the
 * scales: Q4_K 8 groups, at most 8 * 2 * 15 * 127 = 30480; Q6_K 2 groups, at
 * most 2 * 2 * 63 * 127 = 32004 (< 32767, exact). The bsums terms are 8
 * vpmaddwd per block (each sub-block's pair of 16-value sums against its
 * term twice). So each output's block is the same two exact int32 (Q4_K's
 * sumi and summ, Q6_K's sumi with 32 * sum(sc * bsums) taken off) as the
 * reference miser_q4_dot_int_ref, then the same f32 operations in the same
 * order (t = dw * dx * sumi, u = dmin * dx * summ, acc += t - u), lane-wise:
 * y is bit for bit the row dot's whatever M, the tile or the thread count
 * (kernels.h, "Reduction order").
 *
 * The panel is MISER_KQ_PANEL_BLOCKS blocks of K (11 KB, in L1) on the
 * stack; y carries the f32 sums from one panel of K to the next.
 * Compiled with -mavx2 -mfma -mf16c (Makefile: *_avx2.c); called only after
 * the CPU check of the avx2 / avx512 kernel sets. */
#include "kernels/quant4.h"

#include <immintrin.h>
#include <string.h>

#include "avx2_shared.h"

#define KP_MR 4                    /* rows of x per tile */
#define KP_KC MISER_KQ_PANEL_BLOCKS /* 256-value blocks of K per panel */
#define KP_PF_TILES 2              /* the packing prefetches the rows this many tiles of 8 on */

typedef struct {
    __m256i w[8][8]; /* [sub-block j][group g] */
    __m256i sc[8];   /* lane n: row n's scale j, twice as int16 */
    __m256i mn[8];   /* lane n: row n's min j, twice as int16 */
    __m256 d, dmin;
} kp_q4k;

typedef struct {
    __m256i w[8][8]; /* [32-value unit u][group g]: groups 0-3 sub-block 2u, 4-7 2u + 1 */
    __m256i sc[16];  /* lane n: row n's signed scale s, twice as int16 */
    __m256i cr[8];   /* lane n: 32 * scale 2i, 32 * scale 2i + 1 (|.| <= 4096) */
    __m256 d;
} kp_q6k;

_Static_assert(sizeof(kp_q4k) <= MISER_KQ_PANEL_BYTES(1) && sizeof(kp_q6k) <= MISER_KQ_PANEL_BYTES(1),
               "quant4.h's MISER_KQ_PANEL_BYTES counts the panel for the budget predictor");

/* 8 int32 as the int16 pair (v, v) each (|v| < 2^15) */
static inline __m256i dup16(__m256i v)
{
    return _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(v, 16));
}

static inline __m256i bcast32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* the blocks of the 8 rows `pf` (rows rb bytes apart) at byte off, bb bytes each */
static inline void pf8(const char *pf, int64_t rb, int64_t off, int64_t bb)
{
    for (int j = 0; j < 8; j++)
        for (int64_t o = 0; o < bb + 63; o += 64) _mm_prefetch(pf + j * rb + off + (o < bb ? o : bb - 1), _MM_HINT_T0);
}

static void pack_q4k(const uint8_t *const *r, int64_t b0, int64_t kc, kp_q4k *p, const char *pf, int64_t rb)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t b = 0; b < kc; b++, p++) {
        const int64_t off = (b0 + b) * MISER_Q4_K_BYTES;
        pf8(pf, rb, off, MISER_Q4_K_BYTES);
        __m256i L[8], H[8];
        for (int pr = 0; pr < 4; pr++) {
            _Pragma("GCC unroll 8") for (int n = 0; n < 8; n++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(r[n] + off + 16 + 32 * pr));
                L[n] = _mm256_and_si256(raw, m4);
                H[n] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            }
            miser_tr8x8_epi32(L, p->w[2 * pr]);
            miser_tr8x8_epi32(H, p->w[2 * pr + 1]);
        }
        _Pragma("GCC unroll 8") for (int n = 0; n < 8; n++) {
            const __m128i scm = miser_q4k_scales_mins_v(r[n] + off + 4); /* scales | mins */
            L[n] = dup16(_mm256_cvtepu8_epi32(scm));
            H[n] = dup16(_mm256_cvtepu8_epi32(_mm_srli_si128(scm, 8)));
        }
        miser_tr8x8_epi32(L, p->sc);
        miser_tr8x8_epi32(H, p->mn);
        p->d = miser_f16x8_ps(r, off);
        p->dmin = miser_f16x8_ps(r, off + 2);
    }
}

static void pack_q6k(const uint8_t *const *r, int64_t b0, int64_t kc, kp_q6k *p, const char *pf, int64_t rb)
{
    for (int64_t b = 0; b < kc; b++, p++) {
        const int64_t off = (b0 + b) * MISER_Q6_K_BYTES;
        pf8(pf, rb, off, MISER_Q6_K_BYTES);
        __m256i R[8];
        /* unit u = 4h + i: values 128 h + 32 i .. + 31 (quant4_ref.c's q1..q4) */
        for (int h = 0; h < 2; h++) {
            __m256i Q[8][4];
            _Pragma("GCC unroll 8") for (int n = 0; n < 8; n++) miser_q6k_half(r[n] + off, h, Q[n]);
            for (int i = 0; i < 4; i++) {
                _Pragma("GCC unroll 8") for (int n = 0; n < 8; n++) R[n] = Q[n][i];
                miser_tr8x8_epi32(R, p->w[4 * h + i]);
            }
        }
        __m256i S[8];
        _Pragma("GCC unroll 8") for (int n = 0; n < 8; n++) {
            const __m128i s8 = _mm_loadu_si128((const __m128i *)(r[n] + off + 192));
            R[n] = dup16(_mm256_cvtepi8_epi32(s8));
            S[n] = dup16(_mm256_cvtepi8_epi32(_mm_srli_si128(s8, 8)));
        }
        miser_tr8x8_epi32(R, p->sc);
        miser_tr8x8_epi32(S, p->sc + 8);
        _Pragma("GCC unroll 8") for (int n = 0; n < 8; n++)
            R[n] = _mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(r[n] + off + 192))), 5);
        miser_tr8x8_epi32(R, p->cr);
        p->d = miser_f16x8_ps(r, off + 208);
    }
}

/* sum over j < 8 of the int16 pairs t[j] (lane n) times x's 16-value sums
 * 2 j, 2 j + 1: Q4_K's mins term, Q6_K's 32 * scale correction */
static inline __attribute__((always_inline)) __m256i bsum_terms(const __m256i *t, const int16_t *bsums)
{
    __m256i v = _mm256_madd_epi16(t[0], bcast32(bsums));
    for (int j = 1; j < 8; j++) v = _mm256_add_epi32(v, _mm256_madd_epi16(t[j], bcast32(bsums + 2 * j)));
    return v;
}

/* MR rows of x (xq, row stride nb blocks; block b0 is the panel's first)
 * against a panel's 8 columns over kc blocks, continuing y's f32 sums
 * (first: from 0); dt (Q4_K or Q6_K) a constant in each copy */
static inline __attribute__((always_inline)) void tile(const miser_dtype dt, const int MR, const miser_q8k *xq,
                                                       int64_t nb, int64_t b0, const void *panel, int64_t kc,
                                                       float *y, int64_t ldy, __m256i mask, int first)
{
    __m256 f[KP_MR];
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) f[r] =
        first ? _mm256_setzero_ps() : _mm256_maskload_ps(y + r * ldy, mask);
    for (int64_t b = 0; b < kc; b++) {
        __m256i acc[KP_MR];
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) acc[r] = _mm256_setzero_si256();
        if (dt == MISER_DTYPE_Q4_K) {
            const kp_q4k *pb = (const kp_q4k *)panel + b;
            for (int j = 0; j < 8; j++) {
                __m256i t[KP_MR];
                _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) t[r] = _mm256_setzero_si256();
                _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++)
                {
                    const __m256i wg = pb->w[j][g];
                    _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
                    {
                        t[r] = _mm256_add_epi16(t[r], _mm256_maddubs_epi16(wg, bcast32(xq[r * nb + b0 + b].q + 32 * j + 4 * g)));
                        /* kept in this order: GCC otherwise reassociates the
                         * sums into a tree of all 32 products and spills them
                         * (GPT-2-shaped Q4_K at M = 128: 80 against 100 GFLOP/s) */
                        __asm__("" : "+x"(t[r]));
                    }
                }
                _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) acc[r] =
                    _mm256_add_epi32(acc[r], _mm256_madd_epi16(t[r], pb->sc[j]));
            }
            _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
            {
                const miser_q8k *xb = xq + r * nb + b0 + b;
                const __m256i ms = bsum_terms(pb->mn, xb->bsums);
                const __m256 xd = _mm256_set1_ps(xb->d);
                const __m256 tt = _mm256_mul_ps(_mm256_mul_ps(pb->d, xd), _mm256_cvtepi32_ps(acc[r]));
                const __m256 uu = _mm256_mul_ps(_mm256_mul_ps(pb->dmin, xd), _mm256_cvtepi32_ps(ms));
                f[r] = _mm256_add_ps(f[r], _mm256_sub_ps(tt, uu));
            }
        } else {
            const kp_q6k *pb = (const kp_q6k *)panel + b;
            for (int u = 0; u < 8; u++)
                _Pragma("GCC unroll 4") for (int e = 0; e < 4; e++)
                { /* groups 2e, 2e + 1: sub-block 2u + e / 2 */
                    const __m256i w0 = pb->w[u][2 * e], w1 = pb->w[u][2 * e + 1], sc = pb->sc[2 * u + e / 2];
                    _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
                    {
                        const int8_t *q8 = xq[r * nb + b0 + b].q + 32 * u + 8 * e;
                        const __m256i t = _mm256_add_epi16(_mm256_maddubs_epi16(w0, bcast32(q8)),
                                                           _mm256_maddubs_epi16(w1, bcast32(q8 + 4)));
                        acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(t, sc));
                        __asm__("" : "+x"(acc[r]));
                    }
                }
            _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
            {
                const miser_q8k *xb = xq + r * nb + b0 + b;
                const __m256i cr = bsum_terms(pb->cr, xb->bsums);
                const __m256 xd = _mm256_set1_ps(xb->d);
                f[r] = _mm256_add_ps(f[r], _mm256_mul_ps(_mm256_mul_ps(pb->d, xd),
                                                         _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r], cr))));
            }
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) _mm256_maskstore_ps(y + r * ldy, mask, f[r]);
}

#define KP_DRIVER(NAME, DT, PANEL, PACK, BB)                                                                           \
    static __attribute__((noinline)) void NAME(const miser_linear_args *a, const miser_q8k *xq, int64_t M,             \
                                               int64_t m0, int64_t n0, int64_t n1)                                     \
    {                                                                                                                  \
        const int64_t nb = a->K / MISER_QK_K, rb = a->wsn / MISER_QK_K * (BB);                                         \
        const uint8_t *w = a->w;                                                                                       \
        float *y = a->y + m0 * a->ldy;                                                                                 \
        const int64_t ldy = a->ldy;                                                                                    \
        const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);                                               \
        PANEL pan[KP_KC] __attribute__((aligned(32)));                                                                 \
        for (int64_t n = n0; n < n1; n += 8) {                                                                         \
            const int64_t nv = n1 - n < 8 ? n1 - n : 8;                                                                \
            const uint8_t *r[8];                                                                                       \
            for (int j = 0; j < 8; j++) r[j] = w + (n + (j < nv ? j : nv - 1)) * rb;                                   \
            const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nv), lanes);                                \
            for (int64_t b0 = 0; b0 < nb; b0 += KP_KC) {                                                               \
                const int64_t kc = nb - b0 < KP_KC ? nb - b0 : KP_KC;                                                  \
                PACK(r, b0, kc, pan, (const char *)(w + n * rb) + KP_PF_TILES * 8 * rb, rb);                           \
                int64_t m = 0;                                                                                         \
                for (; m + KP_MR <= M; m += KP_MR)                                                                     \
                    tile(DT, KP_MR, xq + m * nb, nb, b0, pan, kc, y + m * ldy + n, ldy, mask, b0 == 0);                \
                if (M - m == 3) tile(DT, 3, xq + m * nb, nb, b0, pan, kc, y + m * ldy + n, ldy, mask, b0 == 0);        \
                else if (M - m == 2) tile(DT, 2, xq + m * nb, nb, b0, pan, kc, y + m * ldy + n, ldy, mask, b0 == 0);   \
                else if (M - m == 1) tile(DT, 1, xq + m * nb, nb, b0, pan, kc, y + m * ldy + n, ldy, mask, b0 == 0);   \
            }                                                                                                          \
        }                                                                                                              \
    }

KP_DRIVER(cols_q4k, MISER_DTYPE_Q4_K, kp_q4k, pack_q4k, MISER_Q4_K_BYTES)
KP_DRIVER(cols_q6k, MISER_DTYPE_Q6_K, kp_q6k, pack_q6k, MISER_Q6_K_BYTES)

void miser_kq_cols_avx2(const miser_linear_args *a, const miser_q8k *xq, int64_t M, int64_t m0, int64_t n0, int64_t n1)
{
    if (a->wdt == MISER_DTYPE_Q4_K) cols_q4k(a, xq, M, m0, n0, n1);
    else cols_q6k(a, xq, M, m0, n0, n1);
}

/* = miser_q8k_quantize_row, bit for bit: the same amax, d and 1 / d, and
 * vcvtps2dq rounds to nearest even as nearbyintf does (|x / d| <= 127, so
 * the saturating packs never clip); the 16-value sums by vpmaddubsw against
 * ones and horizontal adds (the scalar loops were 10 % of a Q4_K_M prefill) */
void miser_q8k_quantize_row_avx2(const float *x, int64_t K, miser_q8k *out)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < K / MISER_QK_K; b++, x += MISER_QK_K) {
        __m256 mx = _mm256_setzero_ps();
        for (int i = 0; i < 32; i++) mx = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + 8 * i), absmask), mx);
        const float d = miser_hmax8_ps(mx) / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i s32[8];
        for (int i = 0; i < 8; i++) { /* values 32 i .. 32 i + 31: 16-value groups 2 i, 2 i + 1 */
            __m256i q[4];
            for (int k = 0; k < 4; k++) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * i + 8 * k), vid));
            const __m256i qv = miser_pack32_epi8(q);
            _mm256_storeu_si256((__m256i *)(out[b].q + 32 * i), qv);
            /* lanes 0-3: group 2 i's sums of 4, lanes 4-7 group 2 i + 1's */
            s32[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), qv), _mm256_set1_epi16(1));
        }
        int32_t g[16];
        for (int h = 0; h < 2; h++) {
            const __m256i *s = s32 + 4 * h;
            /* low lane: groups 8h + 0, 2, 4, 6; high lane: 8h + 1, 3, 5, 7 */
            const __m256i v = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
            int32_t t[8];
            _mm256_storeu_si256((__m256i *)t, v);
            for (int k = 0; k < 4; k++) {
                g[8 * h + 2 * k] = t[k];
                g[8 * h + 2 * k + 1] = t[4 + k];
            }
        }
        for (int k = 0; k < 16; k++) out[b].bsums[k] = (int16_t)g[k];
        out[b].d = d;
    }
}
