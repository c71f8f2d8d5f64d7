/* AVX-512 kernels (F, BW, VL, DQ with FMA and F16C) behind the kernel
 * interface (kernels.h). Compiled with the Makefile's flags for *_avx512.c;
 * dispatch.c hands this set out only after checking the CPU (and that the OS
 * saves the zmm state), so the binary stays portable.
 *
 * linear (decode streams every weight once per token, prefill is
 * GEMM-bound) and attention (head sizes 64 and 128) are written for 512-bit
 * vectors. The elementwise kernels, and attention for other head sizes, are
 * the AVX2 ones (under 1 % of a step each).
 *
 * Why 512 bits matters on the machines this was measured on (Cascade Lake
 * class, two 512-bit FMA ports): a register-only FMA loop runs at ~140
 * GFLOP/s per core with zmm against ~76 with ymm, and widening f16/bf16/q8_0
 * to f32 costs half as many instructions per element.
 *
 * linear, like the AVX2 version, reads W as stored, never a copy:
 *   wsn == 1 (Conv1D [K, N] rows): M < 4 streams 4 rows of W at a time into
 *     an L1-resident y row; column tails use masked loads and stores (q8_0
 *     too: 16 bytes of a block under the mask). Every rows-layout path sums
 *     K in MISER_KSPLIT_ROWS (128) chunks, each from 0, added in order
 *     (kernels.h, reduction order): M = 1 with K > 128 takes the decode K
 *     split (the same stream per chunk into a partial y, then the chunks
 *     summed), the GEMV without it sums each chunk into a 512-column slice
 *     and adds it, and the GEMM's 128-row K block is one chunk.
 *     M >= 4 runs a blocked GEMM: x packed into 12-row tiles, W converted
 *     per 128-row K block into one 32-column f32 micro-panel at a time
 *     (16 KB: it stays in L1 while every x tile streams past it from L2), a
 *     12x32 FMA tile (24 zmm accumulators; 8 or 4 rows for a short last
 *     tile).
 *   wsk == 1 (the tied wte for logits; Conv1D weights in the q8_0 cache,
 *     stored as W^T): dot products, 1-3 rows of x by 4 rows of W, K tails
 *     masked; q8_0 multiplies in int8 at every M (x quantised per 32-k
 *     block, as llama.cpp does): on a CPU with AVX512_VNNI the GEMM below
 *     for every M (one order whatever M), otherwise the AVX2 integer tiles
 *     (qdot_avx2.c).
 * Threads split N in units of 32 columns (whole q8_0 blocks, whole tiles);
 * the K split splits (chunk, 32 columns) units. Summation order per output:
 * fixed whatever M and the thread count (kernels.h, reduction order;
 * tests/test_kernels_int.c checks it). */
#include "kernels.h"
#include "simd_shared.h"
#include "kernels/quant4.h"
#include "miser/graph.h"

/* MISER_EMULATE_X86: the test-only emulated build (emu_x86.h, make
 * test-emu-avx512), where the VNNI functions carry no target of their own */
#ifdef MISER_EMULATE_X86
#include "emu_x86.h"
#define MISER_VNNI_TARGET
#else
#include <immintrin.h>
#define MISER_VNNI_TARGET target("avx512vnni")
#endif
#include <math.h>
#include <pthread.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

static int g_vnni; /* the CPU has AVX512_VNNI (set once with the kernel table) */

const miser_kernels *miser_kernels_avx2(void);

/* ---- loads ---- */

/* 16 elements of an f32/f16/bf16 array from element i; lanes off in `m` read
 * nothing and are 0 */
AI __m512 ld16m(miser_dtype dt, const void *p, int64_t i, __mmask16 m)
{
    if (dt == MISER_DTYPE_F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i));
    if (dt == MISER_DTYPE_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i)), 16));
    return _mm512_maskz_loadu_ps(m, (const float *)p + i);
}

AI __m512 ld16(miser_dtype dt, const void *p, int64_t i)
{
    if (dt == MISER_DTYPE_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i)));
    if (dt == MISER_DTYPE_BF16)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i))), 16));
    return _mm512_loadu_ps((const float *)p + i);
}

/* 16 int8 values as f32 (unscaled) */
AI __m512 q16(const int8_t *q) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q))); }

AI float f16s(const void *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* q8_0 address of element e (block e/32, value e%32) and the block's scale */
AI const int8_t *q8_at(const void *w, int64_t e, float *scale)
{
    const uint8_t *b = (const uint8_t *)w + (e / MISER_Q8_0_BLOCK) * MISER_Q8_0_BYTES;
    *scale = f16s(b);
    return (const int8_t *)(b + 2) + e % MISER_Q8_0_BLOCK;
}

AI const char *w_addr(miser_dtype dt, const void *w, int64_t e)
{
    if (dt == MISER_DTYPE_Q8_0) return (const char *)w + (e / MISER_Q8_0_BLOCK) * MISER_Q8_0_BYTES + 2 + e % 32;
    return (const char *)w + e * (dt == MISER_DTYPE_F32 ? 4 : 2);
}

AI __mmask16 tailmask(int64_t r) { return r >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << r) - 1u); }

/* ---- exp, GELU (same formulas as kernels_avx2.c, 16 lanes) ---- */

AI __m512 exp16(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 y = _mm512_set1_ps(1.9875691500E-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507E-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073E-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894E-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459E-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201E-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i n = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(n));
}

AI __m512 gelu16(__m512 x)
{
    __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    __m512 u = _mm512_mul_ps(_mm512_set1_ps(0.7978845608028654f), _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
    __m512 e = exp16(_mm512_mul_ps(_mm512_set1_ps(-2.0f), u));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* bias and activation over every row of y[:, n0..n1), masked tail */
static void epilogue(const miser_linear_args *a, int64_t n0, int64_t n1)
{
    if (!a->bias && a->act != MISER_ACT_GELU) return;
    const int gelu = a->act == MISER_ACT_GELU;
    for (int64_t m = 0; m < a->M; m++) {
        float *y = a->y + m * a->ldy;
        for (int64_t n = n0; n < n1; n += 16) {
            __mmask16 mk = tailmask(n1 - n);
            __m512 v = _mm512_maskz_loadu_ps(mk, y + n);
            if (a->bias) v = _mm512_add_ps(v, ld16m(a->bdt, a->bias, n, mk));
            if (gelu) v = gelu16(v);
            _mm512_mask_storeu_ps(y + n, mk, v);
        }
    }
}

/* ---- decode GEMV, rows layout (wsn == 1) ---- */

/* 16 weights of row-layout W from element e as f32 (f32/f16/bf16, or q8_0
 * as s * q: the GEMM's conv32 products); lanes off in m read nothing */
AI __m512 wld16m(miser_dtype dt, const void *w, int64_t e, __mmask16 m)
{
    if (dt == MISER_DTYPE_Q8_0) {
        float s;
        const int8_t *q = q8_at(w, e, &s);
        return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, q))), _mm512_set1_ps(s));
    }
    return ld16m(dt, w, e, m);
}

AI __m512 wld16(miser_dtype dt, const void *w, int64_t e)
{
    if (dt == MISER_DTYPE_Q8_0) {
        float s;
        const int8_t *q = q8_at(w, e, &s);
        return _mm512_mul_ps(q16(q), _mm512_set1_ps(s));
    }
    return ld16(dt, w, e);
}

/* y[n - yo] for n in [n0, n1) = sum over k in [k0, k1) of x[k] W[k, n],
 * from 0, k ascending (fma), 4 rows of W per pass over y */
AI void gemv_chunk(miser_dtype dt, const miser_linear_args *a, const float *x, float *yb, int64_t yo, int64_t n0,
                   int64_t n1, int64_t k0, int64_t k1)
{
    const int64_t wsk = a->wsk, nv = n0 + (n1 - n0) / 16 * 16;
#define Y(n) (yb + ((n) - yo)) /* n >= n0 >= yo */
    for (int64_t n = n0; n < n1; n++) *Y(n) = 0.0f;
    int64_t k = k0;
    for (; k + 4 <= k1; k += 4) {
        const __m512 x0 = _mm512_set1_ps(x[k]), x1 = _mm512_set1_ps(x[k + 1]), x2 = _mm512_set1_ps(x[k + 2]),
                     x3 = _mm512_set1_ps(x[k + 3]);
        const int64_t r0 = k * wsk, r1 = r0 + wsk, r2 = r1 + wsk, r3 = r2 + wsk;
        int64_t n = n0;
        for (; n < nv; n += 16) {
            __m512 acc = _mm512_loadu_ps(Y(n));
            acc = _mm512_fmadd_ps(x0, wld16(dt, a->w, r0 + n), acc);
            acc = _mm512_fmadd_ps(x1, wld16(dt, a->w, r1 + n), acc);
            acc = _mm512_fmadd_ps(x2, wld16(dt, a->w, r2 + n), acc);
            acc = _mm512_fmadd_ps(x3, wld16(dt, a->w, r3 + n), acc);
            _mm512_storeu_ps(Y(n), acc);
        }
        if (n < n1) {
            const __mmask16 mk = tailmask(n1 - n);
            __m512 acc = _mm512_maskz_loadu_ps(mk, Y(n));
            acc = _mm512_fmadd_ps(x0, wld16m(dt, a->w, r0 + n, mk), acc);
            acc = _mm512_fmadd_ps(x1, wld16m(dt, a->w, r1 + n, mk), acc);
            acc = _mm512_fmadd_ps(x2, wld16m(dt, a->w, r2 + n, mk), acc);
            acc = _mm512_fmadd_ps(x3, wld16m(dt, a->w, r3 + n, mk), acc);
            _mm512_mask_storeu_ps(Y(n), mk, acc);
        }
    }
    for (; k < k1; k++) {
        const __m512 x0 = _mm512_set1_ps(x[k]);
        for (int64_t n = n0; n < n1; n += 16) {
            const __mmask16 mk = tailmask(n1 - n);
            _mm512_mask_storeu_ps(
                Y(n), mk, _mm512_fmadd_ps(x0, wld16m(dt, a->w, k * wsk + n, mk), _mm512_maskz_loadu_ps(mk, Y(n))));
        }
    }
#undef Y
}

/* y[m, n0..n1) = sum_k x[m, k] W[k, n] in the set's rows-layout order
 * (kernels.h, reduction order): each MISER_KSPLIT_ROWS-row chunk summed from
 * 0, the chunks added to y in order, exactly as the decode K split and the
 * GEMM do, so M, the K split and the thread count do not change a bit. */
#define GV_SLICE 512
AI void gemv_rows(miser_dtype dt, const miser_linear_args *a, int64_t n0, int64_t n1)
{
    const int64_t K = a->K;
    float tmp[GV_SLICE] __attribute__((aligned(64)));
    for (int64_t m = 0; m < a->M; m++) {
        const float *x = a->x + m * a->ldx;
        float *y = a->y + m * a->ldy;
        gemv_chunk(dt, a, x, y, 0, n0, n1, 0, K < MISER_KSPLIT_ROWS ? K : MISER_KSPLIT_ROWS);
        for (int64_t k0 = MISER_KSPLIT_ROWS; k0 < K; k0 += MISER_KSPLIT_ROWS) {
            const int64_t k1 = K - k0 < MISER_KSPLIT_ROWS ? K : k0 + MISER_KSPLIT_ROWS;
            for (int64_t s0 = n0; s0 < n1; s0 += GV_SLICE) { /* n0 and GV_SLICE are whole q8_0 blocks */
                const int64_t s1 = n1 - s0 < GV_SLICE ? n1 : s0 + GV_SLICE;
                gemv_chunk(dt, a, x, tmp, s0, s0, s1, k0, k1);
                for (int64_t n = s0; n < s1; n += 16) {
                    const __mmask16 mk = tailmask(s1 - n);
                    _mm512_mask_storeu_ps(y + n, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, y + n),
                                                                   _mm512_maskz_loadu_ps(mk, tmp + (n - s0))));
                }
            }
        }
    }
}

/* ---- prefill GEMM, rows layout (wsn == 1, M >= 4) ----
 * The AVX2 version's structure (see the comment there) with 512-bit tiles:
 * 12 rows of x x 32 columns of W. The next W block is prefetched a few rows
 * after each tile, spread over the tiles of the current block. */
#define G_KB 128
_Static_assert(G_KB == MISER_KSPLIT_ROWS, "a GEMM K block is one chunk of the rows-layout order (kernels.h)");
#define G_MR 12
#define G_MC 132 /* 11 tiles of 12 rows: a whole 128-token chunk in one pass */
#define G_NR 32
#define G_NC 128
#define G_PF 96 /* most prefetches handed to one micro-tile call */

/* 32 columns of W row k from element e as f32, into dst (64-byte aligned) */
AI void conv32(miser_dtype dt, const void *w, int64_t e, float *dst)
{
    if (dt == MISER_DTYPE_Q8_0) {
        float s;
        const int8_t *q = q8_at(w, e, &s);
        const __m512 sc = _mm512_set1_ps(s);
        _mm512_store_ps(dst, _mm512_mul_ps(q16(q), sc));
        _mm512_store_ps(dst + 16, _mm512_mul_ps(q16(q + 16), sc));
    } else {
        _mm512_store_ps(dst, ld16(dt, w, e));
        _mm512_store_ps(dst + 16, ld16(dt, w, e + 16));
    }
}

/* y[0..rows) x [0..32) = (first ? 0 : y) + ap . bp over kc k's (ap: 12
 * floats per k, bp: 32 per k); bias and GELU applied on the last K block.
 * MR (12, 8 or 4, a constant) rows are computed: a short last tile skips the
 * padding rows' FMAs (a third of a tile's work at M = 64).
 * pf[0..npf) are cache lines to fetch meanwhile, one every two k's: the first
 * ny into L1 (the next tile's partial sums), the rest into L2 (the next block
 * of W). Spread out like this they never fill the line-fill buffers; issued
 * in a burst between tiles they stalled the core for ~15% of the GEMM. */
AI void micro_mrx32(const int MR, const float *ap, const float *bp, int64_t kc, float *y, int64_t ldy, int rows,
                    int first, const __m512 *bias, int gelu, const char *const *pf, int npf, int ny)
{
    /* the K block is one chunk of the rows-layout order (kernels.h): summed
     * from 0, then added to y's running sum as the K split's phase 1 does */
    __m512 acc[G_MR][2];
    _Pragma("GCC unroll 12")
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
#ifdef MISER_EMULATE_X86 /* emu_x86.h: the asm below as intrinsics (the same broadcast and fused products) */
#define MICRO_STEP(kk)                                                                                                 \
    do {                                                                                                               \
        const __m512 w0 = _mm512_load_ps(bp + (kk) * G_NR), w1 = _mm512_load_ps(bp + (kk) * G_NR + 16);               \
        for (int r = 0; r < MR; r++) {                                                                                 \
            const __m512 xb = _mm512_set1_ps(ap[(kk) * G_MR + r]);                                                     \
            acc[r][0] = _mm512_fmadd_ps(xb, w0, acc[r][0]);                                                            \
            acc[r][1] = _mm512_fmadd_ps(xb, w1, acc[r][1]);                                                            \
        }                                                                                                              \
    } while (0)
#else
#define MICRO_STEP(kk)                                                                                                 \
    do {                                                                                                               \
        const __m512 w0 = _mm512_load_ps(bp + (kk) * G_NR), w1 = _mm512_load_ps(bp + (kk) * G_NR + 16);               \
        _Pragma("GCC unroll 12") for (int r = 0; r < MR; r++)                                                          \
        {                                                                                                              \
            __m512 xb;                                                                                                 \
            __asm__("vbroadcastss %[x], %[t]\n\t"                                                                      \
                    "vfmadd231ps %[t], %[w0], %[a0]\n\t"                                                               \
                    "vfmadd231ps %[t], %[w1], %[a1]"                                                                  \
                    : [a0] "+v"(acc[r][0]), [a1] "+v"(acc[r][1]), [t] "=&v"(xb)                                       \
                    : [x] "m"(ap[(kk) * G_MR + r]), [w0] "v"(w0), [w1] "v"(w1));                                      \
        }                                                                                                              \
    } while (0)
#endif
    int i = 0;
    int64_t k = 0;
    for (; k + 2 <= kc; k += 2) {
        if (i < npf) {
            if (i < ny) _mm_prefetch(pf[i], _MM_HINT_T0);
            else _mm_prefetch(pf[i], _MM_HINT_T1);
            i++;
        }
        MICRO_STEP(k);
        MICRO_STEP(k + 1);
    }
    if (k < kc) MICRO_STEP(k);
#undef MICRO_STEP
    for (; i < npf; i++) _mm_prefetch(pf[i], _MM_HINT_T1);
    _Pragma("GCC unroll 12")
    for (int r = 0; r < MR; r++) {
        if (r >= rows) break;
        __m512 v0 = acc[r][0], v1 = acc[r][1];
        if (!first) {
            v0 = _mm512_add_ps(_mm512_loadu_ps(y + r * ldy), v0);
            v1 = _mm512_add_ps(_mm512_loadu_ps(y + r * ldy + 16), v1);
        }
        if (bias) {
            v0 = _mm512_add_ps(v0, bias[0]);
            v1 = _mm512_add_ps(v1, bias[1]);
        }
        if (gelu) {
            v0 = gelu16(v0);
            v1 = gelu16(v1);
        }
        _mm512_storeu_ps(y + r * ldy, v0);
        _mm512_storeu_ps(y + r * ldy + 16, v1);
    }
}

/* The micro-kernel out of line, one copy per tile height shared by every
 * dtype (it only sees packed f32): inlined into each dtype's GEMM, the
 * register allocator spilled accumulators to the stack inside the k loop
 * for some dtypes and not others (q8_0 ran ~8% slower than f16 for it). */
#define MICRO_ENTRY(name, mr)                                                                                          \
    static __attribute__((noinline)) void name(const float *ap, const float *bp, int64_t kc, float *y, int64_t ldy,    \
                                               int rows, int first, const __m512 *bias, int gelu,                      \
                                               const char *const *pf, int npf, int ny)                                 \
    {                                                                                                                  \
        micro_mrx32(mr, ap, bp, kc, y, ldy, rows, first, bias, gelu, pf, npf, ny);                                     \
    }
MICRO_ENTRY(micro_12, 12)
MICRO_ENTRY(micro_8, 8)
MICRO_ENTRY(micro_4, 4)

/* y[:, n0..nv) for M >= 4, nv = the last multiple of 32 columns; returns nv
 * (the caller finishes [nv, n1) with the GEMV and its epilogue). */
AI int64_t gemm_rows(miser_dtype dt, const miser_linear_args *a, int64_t n0, int64_t n1)
{
    float apack[(G_MC + G_MR - 1) / G_MR * G_MR * G_KB] __attribute__((aligned(64)));
    float bpack[G_KB * G_NR] __attribute__((aligned(64)));
    const int64_t M = a->M, K = a->K, wsk = a->wsk, ldx = a->ldx, ldy = a->ldy;
    const int64_t nv = n0 + (n1 - n0) / G_NR * G_NR;
    const int gelu = a->act == MISER_ACT_GELU;
    if (nv == n0) return n0;
    for (int64_t m0 = 0; m0 < M; m0 += G_MC) {
        const int64_t mc = M - m0 < G_MC ? M - m0 : G_MC, tiles_m = (mc + G_MR - 1) / G_MR;
        for (int64_t k0 = 0; k0 < K; k0 += G_KB) {
            const int64_t kc = K - k0 < G_KB ? K - k0 : G_KB;
            const int first = k0 == 0, last = k0 + kc == K;
            /* pack x: tile t, k, row r -> apack[t*12*kc + k*12 + r]; rows past M are 0 */
            for (int64_t t = 0; t < tiles_m; t++) {
                float *dst = apack + t * G_MR * kc;
                for (int r = 0; r < G_MR; r++) {
                    const int64_t m = m0 + t * G_MR + r;
                    if (m < m0 + mc) {
                        const float *src = a->x + m * ldx + k0;
                        for (int64_t k = 0; k < kc; k++) dst[k * G_MR + r] = src[k];
                    } else
                        for (int64_t k = 0; k < kc; k++) dst[k * G_MR + r] = 0.0f;
                }
            }
            for (int64_t nb = n0; nb < nv; nb += G_NC) {
                const int64_t nc = nv - nb < G_NC ? nv - nb : G_NC;
                /* the next block of W: same K block, next columns, or the next K block */
                int64_t pk0 = k0, pnb = nb + G_NC, pk = 0, pkc = kc;
                if (pnb >= nv) {
                    pk0 = k0 + G_KB;
                    pnb = n0;
                    pkc = K - pk0 < G_KB ? K - pk0 : G_KB;
                    if (pkc < 0) pkc = 0;
                }
                const int64_t tiles = tiles_m * (nc / G_NR), pstep = pkc > 0 ? (pkc + tiles - 1) / tiles : 0;
                const int64_t pcols = nv - pnb < G_NC ? nv - pnb : G_NC;
                const int64_t plen = (int64_t)(w_addr(dt, a->w, pcols) - w_addr(dt, a->w, 0));
                for (int64_t j = 0; j < nc; j += G_NR) {
                    /* this panel's 32 columns as f32, just before its tiles run: 16 KB that stay in L1
                     * (converting the whole 128-column block first wrote 64 KB, twice L1, per block) */
                    for (int64_t k = 0; k < kc; k++) conv32(dt, a->w, (k0 + k) * wsk + nb + j, bpack + k * G_NR);
                    __m512 bv[2], *bp = NULL;
                    if (last && a->bias) {
                        bv[0] = ld16(a->bdt, a->bias, nb + j);
                        bv[1] = ld16(a->bdt, a->bias, nb + j + 16);
                        bp = bv;
                    }
                    for (int64_t t = 0; t < tiles_m; t++) {
                        const int rows = mc - t * G_MR < G_MR ? (int)(mc - t * G_MR) : G_MR;
                        const char *pf[G_PF];
                        int npf = 0, ny = 0;
                        if (!first && t + 1 < tiles_m) /* the next tile's partial sums, rows ldy apart */
                            for (int r = 0; r < G_MR && (t + 1) * G_MR + r < mc; r++) {
                                const float *py = a->y + (m0 + (t + 1) * G_MR + r) * ldy + nb + j;
                                pf[npf++] = (const char *)py;
                                pf[npf++] = (const char *)(py + 16);
                            }
                        ny = npf;
                        for (int64_t e = 0; e < pstep && pk < pkc; e++, pk++) {
                            const char *row = w_addr(dt, a->w, (pk0 + pk) * wsk + pnb);
                            for (int64_t o = 0; o < plen; o += 64) {
                                if (npf == G_PF) { /* more than fits beside this tile: fetch the rest now */
                                    _mm_prefetch(row + o, _MM_HINT_T1);
                                    continue;
                                }
                                pf[npf++] = row + o;
                            }
                        }
                        /* a short last tile (M = 64: 4 rows, 128: 8) runs only the rows it has */
                        const float *ap = apack + t * G_MR * kc, *bq = bpack;
                        float *yt = a->y + (m0 + t * G_MR) * ldy + nb + j;
                        if (rows > 8) micro_12(ap, bq, kc, yt, ldy, rows, first, bp, last && gelu, pf, npf, ny);
                        else if (rows > 4) micro_8(ap, bq, kc, yt, ldy, rows, first, bp, last && gelu, pf, npf, ny);
                        else micro_4(ap, bq, kc, yt, ldy, rows, first, bp, last && gelu, pf, npf, ny);
                    }
                }
            }
        }
    }
    return nv;
}

/* Out of line: ~130 KB of stack buffers stay out of the decode path's frame. */
#define GEMM_ENTRY(name, dt)                                                                                            \
    static __attribute__((noinline)) int64_t name(const miser_linear_args *a, int64_t n0, int64_t n1)                  \
    {                                                                                                                  \
        return gemm_rows(dt, a, n0, n1);                                                                               \
    }
GEMM_ENTRY(gemm_f32, MISER_DTYPE_F32)
GEMM_ENTRY(gemm_f16, MISER_DTYPE_F16)
GEMM_ENTRY(gemm_bf16, MISER_DTYPE_BF16)
GEMM_ENTRY(gemm_q8_0, MISER_DTYPE_Q8_0)

/* ---- dot layout (wsk == 1) ---- */

AI float hsum16(__m512 v) { return _mm512_reduce_add_ps(v); }

/* y[m..m+MR, n..n+NR) = x[m+i, :] . W row n+j */
AI void micro_dot(miser_dtype dt, const int MR, const int NR, const miser_linear_args *a, int64_t m, int64_t n)
{
    __m512 acc[3][4];
    _Pragma("GCC unroll 8")
    for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 8")
        for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    const int64_t K = a->K, wsn = a->wsn, ldx = a->ldx;
    const float *x = a->x + m * ldx;
    /* the rows NR further on are the next bytes in memory: prefetch them at
     * the same column (a 4-row group is 4 short streams the hardware
     * prefetcher only ramps up on when they are already half read) */
    const int64_t pf = (int64_t)(w_addr(dt, a->w, NR * wsn) - w_addr(dt, a->w, 0));
    if (dt == MISER_DTYPE_Q8_0) {
        /* K is a multiple of 32 here (dispatch checks); the block's scale is
         * applied once to its two halves' products */
        for (int64_t k = 0; k < K; k += 32) {
            __m512 x0[3], x1[3];
            _Pragma("GCC unroll 8")
            for (int i = 0; i < MR; i++) {
                x0[i] = _mm512_loadu_ps(x + i * ldx + k);
                x1[i] = _mm512_loadu_ps(x + i * ldx + k + 16);
            }
            _Pragma("GCC unroll 8")
            for (int j = 0; j < NR; j++) {
                float s;
                const int8_t *q = q8_at(a->w, (n + j) * wsn + k, &s);
                _mm_prefetch((const char *)q + pf, _MM_HINT_T0);
                const __m512 w0 = q16(q), w1 = q16(q + 16), sc = _mm512_set1_ps(s);
                _Pragma("GCC unroll 8")
                for (int i = 0; i < MR; i++)
                    acc[i][j] = _mm512_fmadd_ps(_mm512_fmadd_ps(x1[i], w1, _mm512_mul_ps(x0[i], w0)), sc, acc[i][j]);
            }
        }
    } else {
        for (int64_t k = 0; k < K; k += 16) {
            const __mmask16 mk = tailmask(K - k);
            __m512 xv[3];
            _Pragma("GCC unroll 8")
            for (int i = 0; i < MR; i++) xv[i] = _mm512_maskz_loadu_ps(mk, x + i * ldx + k);
            _Pragma("GCC unroll 8")
            for (int j = 0; j < NR; j++) {
                if (!(k & 31) || dt == MISER_DTYPE_F32)
                    _mm_prefetch(w_addr(dt, a->w, (n + j) * wsn + k) + pf, _MM_HINT_T0);
                const __m512 w = mk == 0xffff ? ld16(dt, a->w, (n + j) * wsn + k) : ld16m(dt, a->w, (n + j) * wsn + k, mk);
                _Pragma("GCC unroll 8")
                for (int i = 0; i < MR; i++) acc[i][j] = _mm512_fmadd_ps(xv[i], w, acc[i][j]);
            }
        }
    }
    _Pragma("GCC unroll 8")
    for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 8")
        for (int j = 0; j < NR; j++) a->y[(m + i) * a->ldy + n + j] = hsum16(acc[i][j]);
}

MISER_DEFINE_DOT_COLS

/* ---- q8_0 GEMM in the dot layout with int8 products (AVX-512 VNNI) ----
 * W stored as rows of N along K (q8_0 blocks along k: the precision cache
 * writes Conv1D weights this way) lets a 32-k block of products be summed
 * in integers and scaled once: x is quantised per row and 32-k block to int8
 * (scale = max|x| / 127, round to nearest even, as kernels.h describes for
 * q8_dots_int8_min_m), and
 *   y[m, n] = sum_b sx[m, b] sw[n, b] sum_{k in b} qx[m, k] qw[n, k].
 * vpdpbusd multiplies unsigned bytes by signed bytes, so x is offset by 128
 * (u = qx + 128) and each block's sum starts at -128 sum_k qw[n, k]
 * (computed when W is packed). One vpdpbusd does 64 multiply-adds (16 zmm
 * FMAs' worth at f32); a register-only loop measured 175 G multiply-adds/s
 * per core here against 76 G for FMA.
 * Blocking: per 256-k block, x rows are quantised into 6-row tiles
 * (4 bytes per row per k group: a vpbroadcastd operand), each 32-column
 * panel of W is transposed into [k/4][32 n][4] bytes (a 16 x 8 dword
 * transpose per block and 16 rows), then 6 x 32 tiles run with 12 int32 and
 * 12 f32 accumulators. Columns past N in the last panel read a zero block. */
#define V_KB 256
#define V_MR 6
#define V_MC 132
#define V_TILES ((V_MC + V_MR - 1) / V_MR)
#define V_NB (V_KB / 32)

typedef struct {
    int8_t w[V_KB / 4][32][4] __attribute__((aligned(64))); /* k group, n, 4 k */
    int32_t corr[V_NB][32] __attribute__((aligned(64)));    /* -128 sum_k qw per block */
    float sw[V_NB][32] __attribute__((aligned(64)));        /* weight block scales */
} vnni_panel;

typedef struct {
    uint8_t u[V_TILES][V_KB / 4][V_MR][4] __attribute__((aligned(64))); /* qx + 128 */
    float sx[V_TILES][V_NB][V_MR];
} vnni_xpack;

/* MR rows x 32 columns over nb blocks; y (f32) accumulates across K blocks */
static inline __attribute__((always_inline, MISER_VNNI_TARGET)) void vnni_tile(const int MR, const uint8_t (*u)[V_MR][4], const float (*sx)[V_MR], const vnni_panel *p, int nb,
                  float *y, int64_t ldy, int rows, __mmask16 m0, __mmask16 m1, int first, int last,
                  const miser_linear_args *a, int64_t n)
{
    __m512 f[V_MR][2];
    _Pragma("GCC unroll 6")
    for (int r = 0; r < MR; r++) {
        f[r][0] = first || r >= rows ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, y + r * ldy);
        f[r][1] = first || r >= rows ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, y + r * ldy + 16);
    }
    for (int b = 0; b < nb; b++) {
        __m512i acc[V_MR][2];
        const __m512i c0 = _mm512_load_si512(p->corr[b]), c1 = _mm512_load_si512(p->corr[b] + 16);
        _Pragma("GCC unroll 6")
        for (int r = 0; r < MR; r++) acc[r][0] = c0, acc[r][1] = c1;
        _Pragma("GCC unroll 8")
        for (int g = 0; g < 8; g++) {
            const __m512i w0 = _mm512_load_si512(p->w[b * 8 + g][0]), w1 = _mm512_load_si512(p->w[b * 8 + g][16]);
            _Pragma("GCC unroll 6")
            for (int r = 0; r < MR; r++) {
                int32_t xv;
                memcpy(&xv, u[b * 8 + g][r], 4);
                const __m512i xb = _mm512_set1_epi32(xv);
                acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], xb, w0);
                acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], xb, w1);
            }
        }
        const __m512 s0 = _mm512_load_ps(p->sw[b]), s1 = _mm512_load_ps(p->sw[b] + 16);
        _Pragma("GCC unroll 6")
        for (int r = 0; r < MR; r++) {
            const __m512 xs = _mm512_set1_ps(sx[b][r]);
            f[r][0] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][0]), s0), xs, f[r][0]);
            f[r][1] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][1]), s1), xs, f[r][1]);
        }
    }
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    const int gelu = last && a->act == MISER_ACT_GELU, bias = last && a->bias;
    if (bias) {
        b0 = ld16m(a->bdt, a->bias, n, m0);
        b1 = ld16m(a->bdt, a->bias, n + 16, m1);
    }
    _Pragma("GCC unroll 6")
    for (int r = 0; r < MR; r++) {
        if (r >= rows) break;
        __m512 v0 = f[r][0], v1 = f[r][1];
        if (bias) v0 = _mm512_add_ps(v0, b0), v1 = _mm512_add_ps(v1, b1);
        if (gelu) v0 = gelu16(v0), v1 = gelu16(v1);
        _mm512_mask_storeu_ps(y + r * ldy, m0, v0);
        _mm512_mask_storeu_ps(y + r * ldy + 16, m1, v1);
    }
}

#define VNNI_ENTRY(name, mr)                                                                                           \
    static __attribute__((noinline, MISER_VNNI_TARGET)) void name(                                                  \
        const uint8_t (*u)[V_MR][4], const float (*sx)[V_MR], const vnni_panel *p, int nb, float *y, int64_t ldy,      \
        int rows, __mmask16 m0, __mmask16 m1, int first, int last, const miser_linear_args *a, int64_t n)              \
    {                                                                                                                  \
        vnni_tile(mr, u, sx, p, nb, y, ldy, rows, m0, m1, first, last, a, n);                                          \
    }
VNNI_ENTRY(vnni_tile6, 6)
VNNI_ENTRY(vnni_tile4, 4)
VNNI_ENTRY(vnni_tile2, 2)

/* 32 floats of x quantised as kernels.h q8_dots_int8_min_m defines (signed
 * bytes into q, 32-byte aligned); returns the block's scale d */
AI float quant32(const float *src, int8_t *q)
{
    const __m512 v0 = _mm512_loadu_ps(src), v1 = _mm512_loadu_ps(src + 16);
    const float d = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1))) / 127.0f;
    const __m512 id = _mm512_set1_ps(d > 0.0f ? 1.0f / d : 0.0f);
    _mm_store_si128((__m128i *)q, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, id))));
    _mm_store_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, id))));
    return d;
}

/* x rows [m0, m0 + mc), k [k0, k0 + kc) quantised into tiles of V_MR rows;
 * padding rows are zeros (u = 128, scale 0) */
static void vnni_quant_x(const miser_linear_args *a, int64_t m0, int64_t mc, int64_t k0, int64_t kc, vnni_xpack *xp)
{
    const int nb = (int)(kc / 32);
    const int64_t tiles = (mc + V_MR - 1) / V_MR;
    for (int64_t t = 0; t < tiles; t++)
        for (int r = 0; r < V_MR; r++) {
            const int64_t m = t * V_MR + r;
            for (int b = 0; b < nb; b++) {
                int8_t q[32] __attribute__((aligned(32)));
                float d = 0.0f;
                if (m < mc) {
                    d = quant32(a->x + (m0 + m) * a->ldx + k0 + b * 32, q);
                    /* u = qx + 128 */
                    _mm256_store_si256((__m256i *)q, _mm256_xor_si256(_mm256_load_si256((const __m256i *)q),
                                                                      _mm256_set1_epi8((char)0x80)));
                } else
                    memset(q, 0x80, sizeof q);
                xp->sx[t][b][r] = d;
                for (int g = 0; g < 8; g++) memcpy(xp->u[t][b * 8 + g][r], q + 4 * g, 4);
            }
        }
}

static const uint8_t g_zero_block[64] __attribute__((aligned(64)));

/* W rows [n, n + nw) (nw <= 32), k [k0, k0 + kc) into the panel layout */
static __attribute__((MISER_VNNI_TARGET)) void vnni_pack_w(const miser_linear_args *a, int64_t n, int64_t nw,
                                                              int64_t k0, int64_t kc, vnni_panel *p)
{
    const int nb = (int)(kc / 32);
    const __m512i ones = _mm512_set1_epi8(1);
    for (int h = 0; h < 2; h++) {
        const uint8_t *row[16];
        for (int i = 0; i < 16; i++) {
            const int64_t j = h * 16 + i;
            row[i] = j < nw ? (const uint8_t *)a->w + ((n + j) * a->wsn + k0) / 32 * MISER_Q8_0_BYTES : g_zero_block;
        }
        for (int b = 0; b < nb; b++) {
            const int64_t off = (int64_t)b * MISER_Q8_0_BYTES;
            /* Z[i] = [row i | row i + 4], Z[4 + i] = [row 8 + i | row 12 + i]: 32 bytes (8 dwords) each */
            __m512i z[8];
            for (int i = 0; i < 4; i++) {
#define QS(j) (row[j] == g_zero_block ? g_zero_block : row[j] + off + 2) /* block b's 32 values */
                const uint8_t *r0 = QS(i), *r1 = QS(i + 4), *r2 = QS(i + 8), *r3 = QS(i + 12);
#undef QS
                z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)r0)),
                                          _mm256_loadu_si256((const __m256i *)r1), 1);
                z[4 + i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)r2)),
                                              _mm256_loadu_si256((const __m256i *)r3), 1);
            }
            /* per 128-bit lane: 4 x 4 dword transposes */
            __m512i uq[8];
            for (int s = 0; s < 2; s++) {
                __m512i *zz = z + 4 * s;
                const __m512i t0 = _mm512_unpacklo_epi32(zz[0], zz[1]), t1 = _mm512_unpackhi_epi32(zz[0], zz[1]);
                const __m512i t2 = _mm512_unpacklo_epi32(zz[2], zz[3]), t3 = _mm512_unpackhi_epi32(zz[2], zz[3]);
                uq[4 * s + 0] = _mm512_unpacklo_epi64(t0, t2); /* dword 0 (lanes 0, 2) and 4 (lanes 1, 3) */
                uq[4 * s + 1] = _mm512_unpackhi_epi64(t0, t2); /* 1 and 5 */
                uq[4 * s + 2] = _mm512_unpacklo_epi64(t1, t3); /* 2 and 6 */
                uq[4 * s + 3] = _mm512_unpackhi_epi64(t1, t3); /* 3 and 7 */
            }
            __m512i sum = _mm512_setzero_si512();
            for (int g = 0; g < 4; g++) {
                const __m512i lo = _mm512_shuffle_i32x4(uq[g], uq[4 + g], _MM_SHUFFLE(2, 0, 2, 0));
                const __m512i hi = _mm512_shuffle_i32x4(uq[g], uq[4 + g], _MM_SHUFFLE(3, 1, 3, 1));
                _mm512_store_si512(p->w[b * 8 + g][h * 16], lo);
                _mm512_store_si512(p->w[b * 8 + g + 4][h * 16], hi);
                sum = _mm512_dpbusd_epi32(sum, ones, lo);
                sum = _mm512_dpbusd_epi32(sum, ones, hi);
            }
            _mm512_store_si512(p->corr[b] + h * 16, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7)));
            for (int i = 0; i < 16; i++) p->sw[b][h * 16 + i] = row[i] == g_zero_block ? 0.0f : f16s(row[i] + off);
        }
    }
}

/* y[:, n0..n1) for M >= 4 */
static __attribute__((noinline)) void gemm_dots_q8_vnni(const miser_linear_args *a, int64_t n0, int64_t n1)
{
    vnni_xpack xp;  /* 38 KB */
    vnni_panel pan; /* 10 KB */
    const int64_t M = a->M, K = a->K, ldy = a->ldy;
    for (int64_t m0 = 0; m0 < M; m0 += V_MC) {
        const int64_t mc = M - m0 < V_MC ? M - m0 : V_MC, tiles = (mc + V_MR - 1) / V_MR;
        for (int64_t k0 = 0; k0 < K; k0 += V_KB) {
            const int64_t kc = K - k0 < V_KB ? K - k0 : V_KB;
            const int first = k0 == 0, last = k0 + kc == K, nb = (int)(kc / 32);
            vnni_quant_x(a, m0, mc, k0, kc, &xp);
            for (int64_t n = n0; n < n1; n += 32) {
                const int64_t nw = n1 - n < 32 ? n1 - n : 32;
                vnni_pack_w(a, n, nw, k0, kc, &pan);
                const __mmask16 mk0 = tailmask(nw), mk1 = tailmask(nw - 16 > 0 ? nw - 16 : 0);
                /* the next panel's rows of W (32 short pieces of rows far apart, which the hardware
                 * prefetchers do not fetch in time: unfetched, packing waited on memory for a
                 * quarter of the time), into L2, a few rows beside each tile */
                int64_t pn = n + 32, pk0 = k0, pnw;
                if (pn >= n1) pn = n0, pk0 = k0 + V_KB;
                if (pk0 >= K) pk0 = 0, pn = m0 + V_MC < M ? n0 : n1;
                pnw = n1 - pn < 32 ? n1 - pn : 32;
                const int64_t pkc = K - pk0 < V_KB ? K - pk0 : V_KB, pbytes = pkc / 32 * MISER_Q8_0_BYTES;
                for (int64_t t = 0; t < tiles; t++) {
                    const int rows = mc - t * V_MR < V_MR ? (int)(mc - t * V_MR) : V_MR;
                    for (int64_t j = t * pnw / tiles; j < (t + 1) * pnw / tiles; j++) {
                        const char *r = (const char *)a->w + ((pn + j) * a->wsn + pk0) / 32 * MISER_Q8_0_BYTES;
                        for (int64_t o = 0; o < pbytes + 63; o += 64) _mm_prefetch(r + o, _MM_HINT_T1);
                    }
                    float *yt = a->y + (m0 + t * V_MR) * ldy + n;
                    if (rows > 4) vnni_tile6(xp.u[t], xp.sx[t], &pan, nb, yt, ldy, rows, mk0, mk1, first, last, a, n);
                    else if (rows > 2) vnni_tile4(xp.u[t], xp.sx[t], &pan, nb, yt, ldy, rows, mk0, mk1, first, last, a, n);
                    else vnni_tile2(xp.u[t], xp.sx[t], &pan, nb, yt, ldy, rows, mk0, mk1, first, last, a, n);
                }
            }
        }
    }
}

/* ---- decode K split (kernels.h, MISER_KSPLIT_ROWS) ---- */

/* Phase 0: work units are (chunk, 32 columns), chunk-major, so with fewer
 * threads than chunks each thread streams a contiguous run of whole rows.
 * Phase 1: y = partials summed in chunk order, then bias and activation. */
static void gemv_split(miser_dtype dt, const miser_linear_args *a, int ith, int nth)
{
    const int64_t N = a->N, nch = (a->K + MISER_KSPLIT_ROWS - 1) / MISER_KSPLIT_ROWS;
    if (a->phase == 0) {
        const int64_t cu = (N + 31) / 32;
        int64_t u0, u1;
        miser_split(nch * cu, ith, nth, &u0, &u1);
        while (u0 < u1) {
            const int64_t c = u0 / cu, c0 = u0 % cu, c1 = (c + 1) * cu < u1 ? cu : u1 - c * cu;
            const int64_t k0 = c * MISER_KSPLIT_ROWS;
            miser_linear_args sub = *a;
            sub.K = a->K - k0 < MISER_KSPLIT_ROWS ? a->K - k0 : MISER_KSPLIT_ROWS;
            sub.x = a->x + k0;
            sub.w = (const char *)a->w + miser_dtype_bytes(dt, (uint64_t)(k0 * a->wsk));
            sub.y = a->partial + c * N;
            sub.ldy = N;
            MISER_DISPATCH_DT(gemv_rows, dt, &sub, c0 * 32, c1 * 32 < N ? c1 * 32 : N);
            u0 = c * cu + c1;
        }
        return;
    }
    int64_t v0, v1;
    miser_split((N + 15) / 16, ith, nth, &v0, &v1); /* whole cache lines of y per thread */
    const int64_t n0 = v0 * 16, n1 = v1 * 16 < N ? v1 * 16 : N;
    for (int64_t n = n0; n < n1; n += 16) {
        const __mmask16 mk = tailmask(n1 - n);
        __m512 s = _mm512_maskz_loadu_ps(mk, a->partial + n);
        for (int64_t c = 1; c < nch; c++) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(mk, a->partial + c * N + n));
        _mm512_mask_storeu_ps(a->y + n, mk, s);
    }
    if (n0 < n1) epilogue(a, n0, n1);
}

static void avx512_linear(const miser_linear_args *a, int ith, int nth)
{
    if (miser_q4_linear_set(a, ith, nth, epilogue)) return; /* GGUF 4-bit weights (quant4_avx2.c) */
    const miser_dtype dt = a->wdt;
    const int dt_ok = dt == MISER_DTYPE_F32 || dt == MISER_DTYPE_F16 || dt == MISER_DTYPE_BF16 || dt == MISER_DTYPE_Q8_0;
    const int bias_ok = !a->bias || a->bdt == MISER_DTYPE_F32 || a->bdt == MISER_DTYPE_F16 || a->bdt == MISER_DTYPE_BF16;
    const int rows = a->wsn == 1 && (dt != MISER_DTYPE_Q8_0 || a->wsk % MISER_Q8_0_BLOCK == 0);
    const int dots = !rows && a->wsk == 1 &&
                     (dt != MISER_DTYPE_Q8_0 || (a->wsn % MISER_Q8_0_BLOCK == 0 && a->K % MISER_Q8_0_BLOCK == 0));
    if (!dt_ok || !bias_ok || (!rows && !dots) || a->M < 1 || a->N < 1) {
        miser_kernels_ref()->linear(a, ith, nth);
        return;
    }
    if (a->partial && rows && miser_linear_partial_floats(a) > 0) {
        gemv_split(dt, a, ith, nth);
        return;
    }
    if (a->partial && a->phase) return; /* not split: phase 0 did it all */
    int64_t n0, n1;
    if (rows) {
        int64_t units = (a->N + 31) / 32, u0, u1;
        miser_split(units, ith, nth, &u0, &u1);
        n0 = u0 * 32;
        n1 = u1 * 32 < a->N ? u1 * 32 : a->N;
        if (n0 >= n1) return;
        int64_t done = n0;
        if (a->M >= 4) {
            switch (dt) {
            case MISER_DTYPE_F32: done = gemm_f32(a, n0, n1); break;
            case MISER_DTYPE_F16: done = gemm_f16(a, n0, n1); break;
            case MISER_DTYPE_BF16: done = gemm_bf16(a, n0, n1); break;
            case MISER_DTYPE_Q8_0: done = gemm_q8_0(a, n0, n1); break;
            default: break;
            }
        }
        if (done < n1) {
            MISER_DISPATCH_DT(gemv_rows, dt, a, done, n1);
            epilogue(a, done, n1); /* the tiles applied their own */
        }
        return;
    }
    /* q8_0 dots: int8 at every M (kernels.h q8_dots_int8_min_m), one kernel
     * per CPU for every M, so a row's y does not depend on M: the 512-bit
     * VNNI GEMM (its own fixed order: per block fma(float(isum) * sw, sx, y))
     * or, without VNNI, the AVX2 integer tiles (qdot_avx2.c) */
    if (dt == MISER_DTYPE_Q8_0 && g_vnni) {
        int64_t u0, u1;
        miser_split((a->N + 31) / 32, ith, nth, &u0, &u1);
        n0 = u0 * 32;
        n1 = u1 * 32 < a->N ? u1 * 32 : a->N;
        if (n0 < n1) gemm_dots_q8_vnni(a, n0, n1);
        return;
    }
    miser_split(a->N, ith, nth, &n0, &n1);
    if (n0 >= n1) return;
    if (dt == MISER_DTYPE_Q8_0) miser_qdot_cols(a, n0, n1);
    else MISER_DISPATCH_DT(dot_cols, dt, a, n0, n1);
    epilogue(a, n0, n1);
}

/* ---- causal attention over the KV cache ----
 * The AVX2 kernel's order of work (one (t, h) item at a time, fused softmax)
 * with head rows of D = 16 DV floats held in registers: q loaded once, scores
 * for 4 keys at a time reduced together (one shuffle tree instead of four
 * horizontal sums), the output accumulated in registers over two interleaved
 * sets (no store-to-load chain through memory per key). */

/* the sums of a0..a3's lanes in lanes 0, 4, 8 and 12 */
AI __m512 sum4x16(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
    const __m512 x = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 y = _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_f32x4(a2, a3, _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 z = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
    z = _mm512_add_ps(z, _mm512_permute_ps(z, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm512_add_ps(z, _mm512_permute_ps(z, _MM_SHUFFLE(2, 3, 0, 1)));
}

AI void attention_regs(const miser_dtype kdt, const int DV, const miser_attention_args *a, int ith, int nth)
{
    int64_t lo, hi;
    miser_causal_split(a->T, a->H, a->S, ith, nth, &lo, &hi);
    float *p = a->scratch + (int64_t)ith * a->S;
    const int64_t D = a->D;
    const __m512i pick = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
    for (int64_t w = lo; w < hi; w++) {
        const int64_t t = w / a->H, h = w % a->H, valid = a->S - a->T + t + 1;
        const float *q = a->q + t * a->q_row + h * D;
        __m512 qv[8];
        _Pragma("GCC unroll 8")
        for (int j = 0; j < DV; j++) qv[j] = _mm512_loadu_ps(q + 16 * j);
        /* scores p[s] = scale * q . k[s], and their maximum */
        __m512 vmax = _mm512_set1_ps(-INFINITY);
        int64_t s = 0;
        for (; s + 4 <= valid; s += 4) {
            __m512 acc[4];
            _Pragma("GCC unroll 4")
            for (int i = 0; i < 4; i++) {
                const void *kr = miser_attn_row(a, 0, s + i);
                const int64_t kb = h * D;
                acc[i] = _mm512_mul_ps(qv[0], ld16(kdt, kr, kb));
                _Pragma("GCC unroll 8")
                for (int j = 1; j < DV; j++) acc[i] = _mm512_fmadd_ps(qv[j], ld16(kdt, kr, kb + 16 * j), acc[i]);
            }
            const __m512 sc = _mm512_mul_ps(_mm512_permutexvar_ps(pick, sum4x16(acc[0], acc[1], acc[2], acc[3])),
                                            _mm512_set1_ps(a->scale));
            _mm512_mask_storeu_ps(p + s, 0xf, sc);
            vmax = _mm512_mask_max_ps(vmax, 0xf, vmax, sc);
        }
        for (; s < valid; s++) {
            const void *kr = miser_attn_row(a, 0, s);
            const int64_t kb = h * D;
            __m512 acc = _mm512_mul_ps(qv[0], ld16(kdt, kr, kb));
            _Pragma("GCC unroll 8")
            for (int j = 1; j < DV; j++) acc = _mm512_fmadd_ps(qv[j], ld16(kdt, kr, kb + 16 * j), acc);
            p[s] = hsum16(acc) * a->scale;
            vmax = _mm512_mask_max_ps(vmax, 1, vmax, _mm512_set1_ps(p[s]));
        }
        /* fused softmax numerator: p[s] = exp(p[s] - max) */
        const __m512 vm = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
        __m512 vsum = _mm512_setzero_ps();
        for (s = 0; s < valid; s += 16) {
            const __mmask16 mk = tailmask(valid - s);
            const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, p + s), vm));
            _mm512_mask_storeu_ps(p + s, mk, e);
            vsum = _mm512_mask_add_ps(vsum, mk, vsum, e);
        }
        /* out = sum_s p[s] v[s] / sum, two accumulator sets over even/odd s */
        __m512 o0[8], o1[8];
        _Pragma("GCC unroll 8")
        for (int j = 0; j < DV; j++) o0[j] = o1[j] = _mm512_setzero_ps();
        for (s = 0; s + 2 <= valid; s += 2) {
            const __m512 p0 = _mm512_set1_ps(p[s]), p1 = _mm512_set1_ps(p[s + 1]);
            const void *vr0 = miser_attn_row(a, 1, s), *vr1 = miser_attn_row(a, 1, s + 1);
            const int64_t vb = h * D;
            _Pragma("GCC unroll 8")
            for (int j = 0; j < DV; j++) {
                o0[j] = _mm512_fmadd_ps(p0, ld16(kdt, vr0, vb + 16 * j), o0[j]);
                o1[j] = _mm512_fmadd_ps(p1, ld16(kdt, vr1, vb + 16 * j), o1[j]);
            }
        }
        if (s < valid) {
            const __m512 p0 = _mm512_set1_ps(p[s]);
            const void *vr0 = miser_attn_row(a, 1, s);
            const int64_t vb = h * D;
            _Pragma("GCC unroll 8")
            for (int j = 0; j < DV; j++) o0[j] = _mm512_fmadd_ps(p0, ld16(kdt, vr0, vb + 16 * j), o0[j]);
        }
        const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
        float *o = a->out + t * a->o_row + h * D;
        _Pragma("GCC unroll 8")
        for (int j = 0; j < DV; j++) _mm512_storeu_ps(o + 16 * j, _mm512_mul_ps(_mm512_add_ps(o0[j], o1[j]), inv));
    }
}

static void avx512_attention(const miser_attention_args *a, int ith, int nth)
{
    const int f16 = a->kvdt == MISER_DTYPE_F16;
    if (a->group > 1) /* grouped-query attention: the AVX2 kernel reads each KV head once per group */
        miser_kernels_avx2()->attention(a, ith, nth);
    else if ((f16 || a->kvdt == MISER_DTYPE_F32) && a->D == 64) {
        if (f16) attention_regs(MISER_DTYPE_F16, 4, a, ith, nth);
        else attention_regs(MISER_DTYPE_F32, 4, a, ith, nth);
    } else if ((f16 || a->kvdt == MISER_DTYPE_F32) && a->D == 128) {
        if (f16) attention_regs(MISER_DTYPE_F16, 8, a, ith, nth);
        else attention_regs(MISER_DTYPE_F32, 8, a, ith, nth);
    } else
        miser_kernels_avx2()->attention(a, ith, nth); /* other head sizes, other cache dtypes */
}

static miser_kernels g_avx512;
static pthread_once_t g_avx512_once = PTHREAD_ONCE_INIT;

/* attention and the elementwise kernels come from the AVX2 set */
static void avx512_init(void)
{
    g_avx512 = *miser_kernels_avx2();
    g_avx512.name = "avx512";
    g_avx512.linear = avx512_linear;
    g_avx512.attention = avx512_attention;
#ifdef MISER_EMULATE_X86
    g_vnni = 1; /* emulated (emu_x86.h) */
#else
    g_vnni = __builtin_cpu_supports("avx512vnni");
#endif
    g_avx512.q8_dots_int8_min_m = 1; /* the VNNI GEMM, or the AVX2 integer tiles without VNNI */
}

const miser_kernels *miser_kernels_avx512(void)
{
    pthread_once(&g_avx512_once, avx512_init);
    return &g_avx512;
}
