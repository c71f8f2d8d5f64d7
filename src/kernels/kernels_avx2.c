/* AVX2/FMA/F16C kernels behind the kernel interface (kernels.h). Compiled
 * with -mavx2 -mfma -mf16c (the Makefile's rule for *_avx2.c); dispatch.c
 * calls miser_kernels_avx2() only after __builtin_cpu_supports checks, so the
 * binary stays portable.
 *
 * linear reads the weights in the layout they are stored in, never a
 * transposed or widened copy; f16/bf16/q8_0 are converted in registers:
 *   wsn == 1 (Conv1D [K, N] rows): M < 4 streams rows of W into an L1-resident
 *     y row (4 rows of W per pass, 4 sequential streams); M >= 4 runs a
 *     blocked GEMM (see "prefill GEMM" below): x packed into 6-row tiles, W
 *     converted once per (256-row K block, 64-column block) into f32
 *     micro-panels shared by all rows, a 6x16 FMA tile.
 *   wsk == 1 (rows of W contiguous along K, e.g. the tied wte for logits):
 *     dot products, tiles of 3 rows of x by 4 rows of W.
 * Threads split N (in units of 32 columns for wsn == 1, so a q8_0 block never
 * straddles two threads): in decode every thread streams its own slice of W.
 * Any other stride pattern falls back to the reference kernel.
 *
 * Accuracy (tests/test_kernels.c checks these against ref.c): linear and
 * attention accumulate in f32 (the reference in f64): relative error grows
 * like K * 2^-24. exp is a Cephes-style polynomial (<= 2 ulp on the range it
 * is used); GELU = x / (1 + exp(-2u)), u = sqrt(2/pi)(x + 0.044715 x^3), the
 * tanh form rewritten so it never cancels: relative error <= ~1e-6. */
#include "kernels.h"
#include "simd_shared.h"
#include "kernels/quant4.h"
#include "miser/graph.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

/* ---- element loads ---- */

AI __m256 load8(miser_dtype dt, const void *p, int64_t i)
{
    if (dt == MISER_DTYPE_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
    if (dt == MISER_DTYPE_BF16)
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i))), 16));
    return _mm256_loadu_ps((const float *)p + i);
}

AI __m256 load8_q8(const int8_t *q, __m256 scale)
{
    __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
    return _mm256_mul_ps(v, scale);
}

AI float f16s(const void *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

AI float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI float hmax(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- exp and GELU ---- */

AI __m256 exp8(__m256 x)
{
    /* exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2/2; Cephes' expf
     * polynomial. Clamped so 2^n stays a normal float. */
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(n));
}

/* The attention kernels' softmax numerators (one head, attention_impl; each
 * head of a group, attention_group_impl): p[s] = exp(p[s] - mx) in place for
 * s < n, 8 lanes at a time then a scalar tail. Returns their sum (lane sums
 * first, then the tail in order). */
AI float softmax_numer(float *p, int64_t n, float mx)
{
    __m256 vm = _mm256_set1_ps(mx), vsum = _mm256_setzero_ps();
    int64_t s = 0;
    for (; s + 8 <= n; s += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p + s), vm));
        _mm256_storeu_ps(p + s, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum(vsum);
    for (; s < n; s++) {
        p[s] = expf(p[s] - mx);
        sum += p[s];
    }
    return sum;
}

AI __m256 gelu8(__m256 x)
{
    /* 0.5 x (1 + tanh u) == x * sigmoid(2u) == x / (1 + exp(-2u)) */
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
    __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* GELU of the last n < 8 values through the same vector formula, so a
 * result never depends on where a thread's range happens to end. */
static void gelu_tail(float *y, const float *x, int64_t n)
{
    float buf[8] = {0};
    memcpy(buf, x, sizeof(float) * (size_t)n);
    _mm256_storeu_ps(buf, gelu8(_mm256_loadu_ps(buf)));
    memcpy(y, buf, sizeof(float) * (size_t)n);
}

/* ---- linear ---- */

/* bias and activation over y[m0..m1) x [n0..n1) */
static void linear_epilogue(const miser_linear_args *a, int64_t n0, int64_t n1)
{
    if (!a->bias && a->act != MISER_ACT_GELU) return;
    int gelu = a->act == MISER_ACT_GELU;
    for (int64_t m = 0; m < a->M; m++) {
        float *y = a->y + m * a->ldy;
        int64_t n = n0;
        for (; n + 8 <= n1; n += 8) {
            __m256 v = _mm256_loadu_ps(y + n);
            if (a->bias) v = _mm256_add_ps(v, load8(a->bdt, a->bias, n));
            if (gelu) v = gelu8(v);
            _mm256_storeu_ps(y + n, v);
        }
        for (int64_t j = n; j < n1; j++) y[j] += a->bias ? miser_load_elem(a->bdt, a->bias, j) : 0.0f;
        if (gelu && n < n1) gelu_tail(y + n, y + n, n1 - n);
    }
}

/* y[m, n] = sum_k x[m, k] W(k, n), scalar, for column tails */
static void linear_scalar_cols(const miser_linear_args *a, int64_t n0, int64_t n1)
{
    for (int64_t m = 0; m < a->M; m++) {
        const float *x = a->x + m * a->ldx;
        for (int64_t n = n0; n < n1; n++) {
            float acc = 0;
            for (int64_t k = 0; k < a->K; k++) acc += x[k] * miser_load_elem(a->wdt, a->w, k * a->wsk + n * a->wsn);
            a->y[m * a->ldy + n] = acc;
        }
    }
}

/* q8_0 address of element e: block e/32, value e%32 */
AI const int8_t *q8_at(const void *w, int64_t e, float *scale)
{
    const uint8_t *b = (const uint8_t *)w + (e / MISER_Q8_0_BLOCK) * MISER_Q8_0_BYTES;
    *scale = f16s(b);
    return (const int8_t *)(b + 2) + e % MISER_Q8_0_BLOCK;
}

/* wsn == 1, M small: y[m, n0..n1) streamed row by row of W.
 *   y[n] += x[k] W[k, n] + x[k+1] W[k+1, n] + x[k+2] W[k+2, n] + x[k+3] W[k+3, n] */
AI void gemv_rows(miser_dtype dt, const miser_linear_args *a, int64_t n0, int64_t n1)
{
    const int64_t K = a->K, wsk = a->wsk;
    int q8 = dt == MISER_DTYPE_Q8_0;
    int64_t step = q8 ? 32 : 8;
    int64_t nv = n0 + (n1 - n0) / step * step; /* vector part [n0, nv) */
    for (int64_t m = 0; m < a->M; m++) {
        const float *x = a->x + m * a->ldx;
        float *y = a->y + m * a->ldy;
        for (int64_t n = n0; n < nv; n++) y[n] = 0.0f;
        int64_t k = 0;
        for (; k + 4 <= K; k += 4) {
            if (q8) {
                for (int64_t n = n0; n < nv; n += 32) {
                    /* x[k] * (s q): the GEMM's products (kernels.h, reduction order) */
                    __m256 c[4], xs[4];
                    const int8_t *q[4];
                    _Pragma("GCC unroll 8")
                    for (int j = 0; j < 4; j++) {
                        float s;
                        q[j] = q8_at(a->w, (k + j) * wsk + n, &s);
                        c[j] = _mm256_set1_ps(s);
                        xs[j] = _mm256_set1_ps(x[k + j]);
                    }
                    _Pragma("GCC unroll 8")
                    for (int v = 0; v < 4; v++) {
                        __m256 acc = _mm256_loadu_ps(y + n + 8 * v);
                        _Pragma("GCC unroll 8")
                        for (int j = 0; j < 4; j++) acc = _mm256_fmadd_ps(xs[j], load8_q8(q[j] + 8 * v, c[j]), acc);
                        _mm256_storeu_ps(y + n + 8 * v, acc);
                    }
                }
            } else {
                __m256 x0 = _mm256_set1_ps(x[k]), x1 = _mm256_set1_ps(x[k + 1]), x2 = _mm256_set1_ps(x[k + 2]),
                       x3 = _mm256_set1_ps(x[k + 3]);
                int64_t r0 = k * wsk, r1 = r0 + wsk, r2 = r1 + wsk, r3 = r2 + wsk;
                for (int64_t n = n0; n < nv; n += 8) {
                    __m256 acc = _mm256_loadu_ps(y + n);
                    acc = _mm256_fmadd_ps(x0, load8(dt, a->w, r0 + n), acc);
                    acc = _mm256_fmadd_ps(x1, load8(dt, a->w, r1 + n), acc);
                    acc = _mm256_fmadd_ps(x2, load8(dt, a->w, r2 + n), acc);
                    acc = _mm256_fmadd_ps(x3, load8(dt, a->w, r3 + n), acc);
                    _mm256_storeu_ps(y + n, acc);
                }
            }
        }
        for (; k < K; k++) {
            if (q8) {
                for (int64_t n = n0; n < nv; n += 32) {
                    float s;
                    const int8_t *q = q8_at(a->w, k * wsk + n, &s);
                    const __m256 c = _mm256_set1_ps(s), xk = _mm256_set1_ps(x[k]);
                    _Pragma("GCC unroll 8")
                    for (int v = 0; v < 4; v++)
                        _mm256_storeu_ps(y + n + 8 * v,
                                         _mm256_fmadd_ps(xk, load8_q8(q + 8 * v, c), _mm256_loadu_ps(y + n + 8 * v)));
                }
            } else {
                __m256 x0 = _mm256_set1_ps(x[k]);
                for (int64_t n = n0; n < nv; n += 8)
                    _mm256_storeu_ps(y + n, _mm256_fmadd_ps(x0, load8(dt, a->w, k * wsk + n), _mm256_loadu_ps(y + n)));
            }
        }
    }
    if (nv < n1) linear_scalar_cols(a, nv, n1);
}

/* ---- prefill GEMM (wsn == 1, M >= 4) ----
 *
 * Blocked like BLIS, with the weights in the role of B:
 *   for each block of up to GEMM_MC rows of x and each K block of GEMM_KB:
 *     pack x[m-block, k-block] into 6-row tiles (6 floats per k, contiguous),
 *     then for each GEMM_NC-column block of the thread's N range:
 *       convert W[k-block, n-block] once into 16-column f32 micro-panels
 *       (GEMM_KB x 16 floats, 16 KB each), prefetching the next block's rows,
 *       and run every 6-row tile of x over each micro-panel (6x16 FMA tile).
 * Why each piece:
 *   - x rows are ldx floats apart (4 KB or 16 KB for GPT-2): 6 broadcast
 *     streams from rows that far apart share one L1 set; packed, a tile's
 *     values for one k are 24 contiguous bytes.
 *   - rows of W are 12-16 KB apart: reading a strip in place would walk a
 *     different page every k; converted once per (K block, N block), the
 *     conversion of f16/bf16/q8_0 is paid once for all M rows.
 *   - the W block's rows are touched once per block, a page or more apart:
 *     more streams than the hardware prefetcher follows, so the next block's
 *     lines are prefetched by hand, a few rows after each tile (a burst of
 *     prefetches would stall on the line-fill buffers).
 *   - GEMM_MC = 132 covers a whole prompt chunk of up to 128 tokens, so W is
 *     read and converted once per call.
 * Stack use: GEMM_MC * GEMM_KB + GEMM_KB * GEMM_NC floats (132 + 64 KB).
 * Summation order for y[m, n]: k blocks in order, k ascending inside a block,
 * independent of the thread count and of the column's position in a block. */
#ifndef GEMM_KB
#define GEMM_KB 256
#endif
#define GEMM_MC 132 /* 22 tiles of 6 rows */
#ifndef GEMM_NC
#define GEMM_NC 64
#endif
#ifndef GEMM_PF_HINT
#define GEMM_PF_HINT _MM_HINT_T1 /* L2: the next block (64 KB) does not fit L1 beside the current one */
#endif

/* 16 columns of W row k starting at element e (e % 16 == 0 within a q8_0 block) */
AI void load16(miser_dtype dt, const void *w, int64_t e, __m256 *w0, __m256 *w1)
{
    if (dt == MISER_DTYPE_Q8_0) {
        float s;
        const int8_t *q = q8_at(w, e, &s);
        __m256 sc = _mm256_set1_ps(s);
        *w0 = load8_q8(q, sc);
        *w1 = load8_q8(q + 8, sc);
    } else {
        *w0 = load8(dt, w, e);
        *w1 = load8(dt, w, e + 8);
    }
}

AI const char *w_addr(miser_dtype dt, const void *w, int64_t e)
{
    if (dt == MISER_DTYPE_Q8_0) return (const char *)w + (e / MISER_Q8_0_BLOCK) * MISER_Q8_0_BYTES + 2 + e % 32;
    return (const char *)w + e * (dt == MISER_DTYPE_F32 ? 4 : 2);
}

/* 6 x 16 tile: y[0..rows) x [0..16) = (first ? 0 : y) + ap . bp over kc k's;
 * ap: 6 floats per k, bp: 16 floats per k. On the last K block (fin) the
 * bias and activation are applied before the store. */
/* The next W block's lines, prefetched one every other k from inside the
 * tiles rather than in a burst between them (a burst stalls on the
 * line-fill buffers; at decode batch sizes a block has few tiles, so
 * bursts would be large): `row` is the next row's address, `col` the next
 * 64-byte line in it of `lpr`, rows `stride` bytes apart; `left` lines
 * remain for the current tile (one every other k, the rest after it). */
typedef struct {
    const char *row;
    int64_t stride, left;
    int lpr, col;
} gemm_pf;

AI void pf_rest(gemm_pf *pf)
{
    for (; pf->left > 0; pf->left--) {
        _mm_prefetch(pf->row + pf->col * 64, GEMM_PF_HINT);
        if (++pf->col == pf->lpr) {
            pf->col = 0;
            pf->row += pf->stride;
        }
    }
}

AI void micro_tile(const int MR, const float *ap, const float *bp, int64_t kc, float *y, int64_t ldy, int rows,
                   int first, const __m256 *bias, int gelu, gemm_pf *pf)
{
    __m256 acc[6][2];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++) {
        acc[r][0] = first || r >= rows ? _mm256_setzero_ps() : _mm256_loadu_ps(y + r * ldy);
        acc[r][1] = first || r >= rows ? _mm256_setzero_ps() : _mm256_loadu_ps(y + r * ldy + 8);
    }
    /* the prefetch cursor in locals: one line every other k */
    const char *prow = pf->row;
    int64_t pleft = pf->left;
    int pcol = pf->col;
    _Pragma("GCC unroll 4")
    for (int64_t k = 0; k < kc; k++) {
        __m256 w0 = _mm256_load_ps(bp + k * 16), w1 = _mm256_load_ps(bp + k * 16 + 8);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < MR; r++) {
            __m256 xb = _mm256_broadcast_ss(ap + k * 6 + r);
            acc[r][0] = _mm256_fmadd_ps(xb, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(xb, w1, acc[r][1]);
        }
        if ((k & 1) && pleft > 0) {
            _mm_prefetch(prow + pcol * 64, GEMM_PF_HINT);
            pleft--;
            if (++pcol == pf->lpr) {
                pcol = 0;
                prow += pf->stride;
            }
        }
    }
    pf->row = prow;
    pf->left = pleft;
    pf->col = pcol;
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++) {
        if (r >= rows) break;
        __m256 v0 = acc[r][0], v1 = acc[r][1];
        if (bias) {
            v0 = _mm256_add_ps(v0, bias[0]);
            v1 = _mm256_add_ps(v1, bias[1]);
        }
        if (gelu) {
            v0 = gelu8(v0);
            v1 = gelu8(v1);
        }
        _mm256_storeu_ps(y + r * ldy, v0);
        _mm256_storeu_ps(y + r * ldy + 8, v1);
    }
}

/* The tile for `rows` (<= 6) rows of x: the 6-row kernel, or a 4- or 2-row
 * copy where the rows are fewer (M = 16 is 6 + 6 + 4), so no FMAs go to
 * packed zero rows. The packed x keeps 6 floats per k either way; each
 * y element is summed in the same order whichever copy runs. */
AI void micro_6x16(const float *ap, const float *bp, int64_t kc, float *y, int64_t ldy, int rows, int first,
                   const __m256 *bias, int gelu, gemm_pf *pf)
{
    if (rows > 4) micro_tile(6, ap, bp, kc, y, ldy, rows, first, bias, gelu, pf);
    else if (rows > 2) micro_tile(4, ap, bp, kc, y, ldy, rows, first, bias, gelu, pf);
    else micro_tile(2, ap, bp, kc, y, ldy, rows, first, bias, gelu, pf);
}

/* y[:, n0..n1) for M >= 4; columns past the last multiple of 16 go to the
 * scalar path (the epilogue handles their bias/activation). Returns the end
 * of the columns whose bias/activation were applied here. */
AI int64_t gemm_rows(miser_dtype dt, const miser_linear_args *a, int64_t n0, int64_t n1)
{
    float apack[(GEMM_MC + 5) / 6 * 6 * GEMM_KB] __attribute__((aligned(32)));
    float bpack[GEMM_KB * GEMM_NC] __attribute__((aligned(32)));
    const int64_t M = a->M, K = a->K, wsk = a->wsk, ldx = a->ldx, ldy = a->ldy;
    /* whole 32-column q8_0 blocks for the tiles: the GEMV takes the rest */
    const int64_t nv = n0 + (n1 - n0) / (dt == MISER_DTYPE_Q8_0 ? 32 : 16) * (dt == MISER_DTYPE_Q8_0 ? 32 : 16);
    const int gelu = a->act == MISER_ACT_GELU;
    for (int64_t m0 = 0; m0 < M; m0 += GEMM_MC) {
        const int64_t mc = M - m0 < GEMM_MC ? M - m0 : GEMM_MC;
        for (int64_t k0 = 0; k0 < K; k0 += GEMM_KB) {
            const int64_t kc = K - k0 < GEMM_KB ? K - k0 : GEMM_KB;
            const int first = k0 == 0, last = k0 + kc == K;
            /* pack x: tile t, k, row r -> apack[t*6*kc + k*6 + r]; rows past M are 0 */
            for (int64_t t = 0; t * 6 < mc; t++) {
                float *dst = apack + t * 6 * kc;
                for (int r = 0; r < 6; r++) {
                    int64_t m = m0 + t * 6 + r;
                    if (m < m0 + mc) {
                        const float *src = a->x + m * ldx + k0;
                        for (int64_t k = 0; k < kc; k++) dst[k * 6 + r] = src[k];
                    } else
                        for (int64_t k = 0; k < kc; k++) dst[k * 6 + r] = 0.0f;
                }
            }
            for (int64_t nb = n0; nb < nv; nb += GEMM_NC) {
                const int64_t nc = nv - nb < GEMM_NC ? nv - nb : GEMM_NC;
                /* convert W[k0.., nb..nb+nc) into nc/16 micro-panels of kc x 16 */
                for (int64_t k = 0; k < kc; k++) {
                    int64_t e = (k0 + k) * wsk + nb;
                    for (int64_t j = 0; j < nc; j += 16) {
                        __m256 w0, w1;
                        load16(dt, a->w, e + j, &w0, &w1);
                        float *dst = bpack + j * kc + k * 16;
                        _mm256_store_ps(dst, w0);
                        _mm256_store_ps(dst + 8, w1);
                    }
                }
                /* the next W block, prefetched from inside this block's tiles */
                int64_t pk0 = k0, pnb = nb + GEMM_NC, pkc = kc;
                if (pnb >= nv) {
                    pk0 = k0 + GEMM_KB;
                    pnb = n0;
                    pkc = K - pk0 < GEMM_KB ? K - pk0 : GEMM_KB;
                }
                const int64_t tiles = (mc + 5) / 6 * (nc / 16);
                const int64_t plen = (int64_t)(w_addr(dt, a->w, (nv - pnb < GEMM_NC ? nv - pnb : GEMM_NC)) - w_addr(dt, a->w, 0));
                gemm_pf pf = {.row = pkc > 0 ? w_addr(dt, a->w, pk0 * wsk + pnb) : NULL,
                              .stride = (int64_t)(w_addr(dt, a->w, wsk) - w_addr(dt, a->w, 0)),
                              .lpr = (int)((plen + 63) / 64)};
                const int64_t plines = pkc > 0 ? pkc * pf.lpr : 0, per_tile = (plines + tiles - 1) / tiles;
                int64_t issued = 0;
                for (int64_t j = 0; j < nc; j += 16) {
                    __m256 bv[2], *bp = NULL;
                    if (last && a->bias) {
                        bv[0] = load8(a->bdt, a->bias, nb + j);
                        bv[1] = load8(a->bdt, a->bias, nb + j + 8);
                        bp = bv;
                    }
                    for (int64_t t = 0; t * 6 < mc; t++) {
                        int rows = mc - t * 6 < 6 ? (int)(mc - t * 6) : 6;
                        if (!first && (t + 1) * 6 < mc) /* the next tile's partial sums (rows ldy apart) */
                            for (int r = 0; r < 6; r++) {
                                const float *py = a->y + (m0 + t * 6 + 6 + r) * ldy + nb + j;
                                _mm_prefetch((const char *)py, _MM_HINT_T0);
                                _mm_prefetch((const char *)(py + 15), _MM_HINT_T0);
                            }
                        pf.left = per_tile < plines - issued ? per_tile : plines - issued;
                        issued += pf.left;
                        micro_6x16(apack + t * 6 * kc, bpack + j * kc, kc, a->y + (m0 + t * 6) * ldy + nb + j, ldy,
                                   rows, first, bp, last && gelu, &pf);
                        pf_rest(&pf); /* what a short kc left */
                    }
                }
            }
        }
    }
    /* the column tail by the GEMV: the same products in the same order
     * (vector columns with fma, the last n % 8 scalar) as a call with M < 4 */
    if (nv < n1) gemv_rows(dt, a, nv, n1);
    return nv;
}

/* Out of line: their ~200 KB of stack buffers are not part of the decode
 * path's frame (stack-clash probing would touch every page of it per call). */
#define GEMM_ENTRY(name, dt)                                                                                            \
    static __attribute__((noinline)) int64_t name(const miser_linear_args *a, int64_t n0, int64_t n1)                  \
    {                                                                                                                  \
        return gemm_rows(dt, a, n0, n1);                                                                               \
    }
GEMM_ENTRY(gemm_f32, MISER_DTYPE_F32)
GEMM_ENTRY(gemm_f16, MISER_DTYPE_F16)
GEMM_ENTRY(gemm_bf16, MISER_DTYPE_BF16)
GEMM_ENTRY(gemm_q8_0, MISER_DTYPE_Q8_0)

#ifndef DOT_PF_TILES
#define DOT_PF_TILES 2
#endif

/* wsk == 1: y[m..m+MR, n..n+NR) = dot(x[m, :], W row n) */
AI void micro_dot(miser_dtype dt, const int MR, const int NR, const miser_linear_args *a, int64_t m, int64_t n)
{
    __m256 acc[3][4];
    _Pragma("GCC unroll 8")
    for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 8")
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    const int64_t K = a->K, wsn = a->wsn;
    const float *x = a->x + m * a->ldx;
    int64_t k = 0;
    if (dt == MISER_DTYPE_Q8_0) {
        for (; k < K; k += 32) {
            __m256 sc[4];
            const int8_t *q[4];
            _Pragma("GCC unroll 8")
            for (int j = 0; j < NR; j++) {
                float s;
                q[j] = q8_at(a->w, (n + j) * wsn + k, &s);
                sc[j] = _mm256_set1_ps(s);
            }
            _Pragma("GCC unroll 8")
            for (int v = 0; v < 4; v++)
                _Pragma("GCC unroll 8")
                for (int j = 0; j < NR; j++) {
                    __m256 w = load8_q8(q[j] + 8 * v, sc[j]);
                    _Pragma("GCC unroll 8")
                    for (int i = 0; i < MR; i++)
                        acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i * a->ldx + k + 8 * v), w, acc[i][j]);
                }
        }
    } else {
        /* Short rows (a 960-wide f16 row is 1920 bytes) stream badly through
         * the hardware prefetcher, four at a time: the first row tile of x
         * (m == 0; later tiles find W in L1) prefetches, k-step by k-step,
         * the contiguous NR rows DOT_PF_TILES tiles ahead, NR * 8 elements a
         * step, so the whole tile is requested by the time it is reached.
         * Only where rows are contiguous (wsn == K); past the end of W it
         * prefetches addresses that do not fault. Two-byte weights only: f32
         * rows are twice as long, and there the prefetches measured slower
         * (Zen 3, 1 thread, medians of 3: 14.3 -> 12.0 GB/s), f16 faster
         * (71.5 -> 50.2 ms a GPT-2-medium-shaped pass; docs/kernels.md). */
        const char *pf = dt != MISER_DTYPE_F32 && NR == 4 && m == 0 && wsn == K
                             ? (const char *)a->w + (n + DOT_PF_TILES * NR) * wsn * 2 : NULL;
        for (; k + 8 <= K; k += 8) {
            __m256 xv[3];
            if (pf) _mm_prefetch(pf + k * NR * 2, _MM_HINT_T0);
            _Pragma("GCC unroll 8")
            for (int i = 0; i < MR; i++) xv[i] = _mm256_loadu_ps(x + i * a->ldx + k);
            _Pragma("GCC unroll 8")
            for (int j = 0; j < NR; j++) {
                __m256 w = load8(dt, a->w, (n + j) * wsn + k);
                _Pragma("GCC unroll 8")
                for (int i = 0; i < MR; i++) acc[i][j] = _mm256_fmadd_ps(xv[i], w, acc[i][j]);
            }
        }
    }
    _Pragma("GCC unroll 8")
    for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 8")
        for (int j = 0; j < NR; j++) {
            float s = hsum(acc[i][j]);
            for (int64_t kk = k; kk < K; kk++) s += x[i * a->ldx + kk] * miser_load_elem(dt, a->w, (n + j) * wsn + kk);
            a->y[(m + i) * a->ldy + n + j] = s;
        }
}

MISER_DEFINE_DOT_COLS

static void avx2_linear(const miser_linear_args *a, int ith, int nth)
{
    if (miser_q4_linear_set(a, ith, nth, linear_epilogue)) return; /* GGUF 4-bit weights (quant4_avx2.c) */
    if (a->partial && a->phase) return; /* no K split in this set: phase 0 did it all */
    miser_dtype dt = a->wdt;
    int dt_ok = dt == MISER_DTYPE_F32 || dt == MISER_DTYPE_F16 || dt == MISER_DTYPE_BF16 || dt == MISER_DTYPE_Q8_0;
    int bias_ok = !a->bias || a->bdt == MISER_DTYPE_F32 || a->bdt == MISER_DTYPE_F16 || a->bdt == MISER_DTYPE_BF16;
    int rows = a->wsn == 1 && (dt != MISER_DTYPE_Q8_0 || a->wsk % MISER_Q8_0_BLOCK == 0);
    int dots = !rows && a->wsk == 1 &&
               (dt != MISER_DTYPE_Q8_0 || (a->wsn % MISER_Q8_0_BLOCK == 0 && a->K % MISER_Q8_0_BLOCK == 0));
    if (!dt_ok || !bias_ok || (!rows && !dots) || a->M < 1 || a->N < 1) {
        miser_kernels_ref()->linear(a, ith, nth);
        return;
    }
    int64_t n0, n1;
    if (rows) {
        /* units of 32 columns: whole q8_0 blocks and 16-column tiles per thread */
        int64_t units = (a->N + 31) / 32, u0, u1;
        miser_split(units, ith, nth, &u0, &u1);
        n0 = u0 * 32;
        n1 = u1 * 32 < a->N ? u1 * 32 : a->N;
        if (n0 >= n1) return;
        if (a->M < 4) MISER_DISPATCH_DT(gemv_rows, dt, a, n0, n1);
        else {
            int64_t done = n0;
            switch (dt) {
            case MISER_DTYPE_F32: done = gemm_f32(a, n0, n1); break;
            case MISER_DTYPE_F16: done = gemm_f16(a, n0, n1); break;
            case MISER_DTYPE_BF16: done = gemm_bf16(a, n0, n1); break;
            case MISER_DTYPE_Q8_0: done = gemm_q8_0(a, n0, n1); break;
            default: break;
            }
            linear_epilogue(a, done, n1); /* the tail columns; the tiles applied theirs */
            return;
        }
    } else {
        miser_split(a->N, ith, nth, &n0, &n1);
        if (n0 >= n1) return;
        if (dt == MISER_DTYPE_Q8_0) miser_qdot_cols(a, n0, n1); /* int8 products, every M (qdot_avx2.c) */
        else MISER_DISPATCH_DT(dot_cols, dt, a, n0, n1);
    }
    linear_epilogue(a, n0, n1);
}

/* ---- attention ---- */

AI __m256 kv8(int f16, const void *base, int64_t i)
{
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)))
               : _mm256_loadu_ps((const float *)base + i);
}

AI float kv1(int f16, const void *base, int64_t i)
{
    return f16 ? _cvtsh_ss(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

/* Prefetch of the KV row ATTN_PF positions on: a head's D values of one
 * position are 2-4 cache lines, and the next position's are a row (all KV
 * heads) further on, often the next page, where the hardware prefetcher
 * does not follow; the score and combine loops had waited on those loads
 * (87 % of the kernel's samples on the two instructions after them). */
#define ATTN_PF 8
AI void attn_prefetch(const miser_attention_args *a, int which, int64_t s, int64_t valid, int64_t off)
{
    if (s + ATTN_PF >= valid) return;
    const size_t es = a->kvdt == MISER_DTYPE_F16 ? 2 : 4;
    const char *r = (const char *)miser_attn_row(a, which, s + ATTN_PF) + (size_t)off * es;
    for (size_t o = 0; o < (size_t)a->D * es; o += 64) _mm_prefetch(r + o, _MM_HINT_T0);
    _mm_prefetch(r + (size_t)a->D * es - 1, _MM_HINT_T0);
}

AI void attention_impl(const int f16, const miser_attention_args *a, int ith, int nth)
{
    int64_t lo, hi;
    miser_causal_split(a->T, a->H, a->S, ith, nth, &lo, &hi);
    float *p = a->scratch + (int64_t)ith * a->S;
    const int64_t D = a->D, Dv = D / 8 * 8;
    const int64_t group = a->group > 1 ? a->group : 1;
    for (int64_t w = lo; w < hi; w++) {
        int64_t t = w / a->H, h = w % a->H, j = h / group; /* j: the KV head */
        int64_t valid = a->S - a->T + t + 1;
        const float *q = a->q + t * a->q_row + h * D;
        /* scores: p[s] = scale * q . k[s] */
        float mx = -INFINITY;
        for (int64_t s = 0; s < valid; s++) {
            const void *kr = miser_attn_row(a, 0, s);
            int64_t kb = j * D;
            attn_prefetch(a, 0, s, valid, kb);
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
            int64_t d = 0;
            for (; d + 16 <= Dv; d += 16) {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), kv8(f16, kr, kb + d), acc0);
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), kv8(f16, kr, kb + d + 8), acc1);
            }
            for (; d < Dv; d += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), kv8(f16, kr, kb + d), acc0);
            float dot = hsum(_mm256_add_ps(acc0, acc1));
            for (; d < D; d++) dot += q[d] * kv1(f16, kr, kb + d);
            p[s] = dot * a->scale;
            if (p[s] > mx) mx = p[s];
        }
        /* fused softmax numerator: p[s] = exp(p[s] - mx) */
        float sum = softmax_numer(p, valid, mx);
        /* out = sum_s p[s] v[s] / sum */
        float *o = a->out + t * a->o_row + h * D;
        if (D == 64) { /* out in registers: no loads and stores of it per position */
            __m256 ov[8];
            _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) ov[c] = _mm256_setzero_ps();
            for (int64_t s = 0; s < valid; s++) {
                const void *vr = miser_attn_row(a, 1, s);
                attn_prefetch(a, 1, s, valid, j * D);
                const __m256 ps = _mm256_set1_ps(p[s]);
                _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) ov[c] =
                    _mm256_fmadd_ps(ps, kv8(f16, vr, j * D + 8 * c), ov[c]);
            }
            const __m256 inv = _mm256_set1_ps(1.0f / sum);
            _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) _mm256_storeu_ps(o + 8 * c, _mm256_mul_ps(ov[c], inv));
            continue;
        }
        for (int64_t d = 0; d < D; d++) o[d] = 0.0f;
        for (int64_t s = 0; s < valid; s++) {
            __m256 ps = _mm256_set1_ps(p[s]);
            const void *vr = miser_attn_row(a, 1, s);
            int64_t vb = j * D, d = 0;
            attn_prefetch(a, 1, s, valid, vb);
            for (; d < Dv; d += 8)
                _mm256_storeu_ps(o + d, _mm256_fmadd_ps(ps, kv8(f16, vr, vb + d), _mm256_loadu_ps(o + d)));
            for (; d < D; d++) o[d] += p[s] * kv1(f16, vr, vb + d);
        }
        __m256 inv = _mm256_set1_ps(1.0f / sum);
        int64_t d = 0;
        for (; d < Dv; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), inv));
        for (; d < D; d++) o[d] *= 1.0f / sum;
    }
}

#define GQA_MAX_GROUP 16

/* Grouped-query attention: one work item is (t, KV head j) with its group of
 * R = H / KV query heads h = j*R + r, so each K and V row is read from the
 * cache once for the group (and reused from L1 for the R heads) instead of
 * once per query head. Scores of head r go to p + r*S. */
AI void attention_group_impl(const int f16, const miser_attention_args *a, int ith, int nth)
{
    const int64_t R = a->group, KV = a->H / R, D = a->D, Dv = D / 8 * 8, S = a->S;
    int64_t lo, hi;
    miser_causal_split(a->T, KV, S, ith, nth, &lo, &hi);
    float *p = a->scratch + (int64_t)ith * S * R;
    float sums[GQA_MAX_GROUP];
    for (int64_t w = lo; w < hi; w++) {
        const int64_t t = w / KV, j = w % KV, valid = S - a->T + t + 1;
        const float *q0 = a->q + t * a->q_row + j * R * D;
        /* scores: p[r*S + s] = scale * q_r . k[s] */
        for (int64_t s = 0; s < valid; s++) {
            const void *kr = miser_attn_row(a, 0, s);
            const int64_t kb = j * D;
            attn_prefetch(a, 0, s, valid, kb);
            if (D == 64) { /* the common head size: the K row converted once for the R heads, in registers */
                __m256 kv[8];
                _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) kv[c] = kv8(f16, kr, kb + 8 * c);
                for (int64_t r = 0; r < R; r++) {
                    const float *q = q0 + r * D;
                    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
                    _Pragma("GCC unroll 4") for (int c = 0; c < 8; c += 2) { /* the general loop's order */
                        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + 8 * c), kv[c], acc0);
                        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + 8 * c + 8), kv[c + 1], acc1);
                    }
                    p[r * S + s] = hsum(_mm256_add_ps(acc0, acc1)) * a->scale;
                }
                continue;
            }
            for (int64_t r = 0; r < R; r++) {
                const float *q = q0 + r * D;
                __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
                int64_t d = 0;
                for (; d + 16 <= Dv; d += 16) {
                    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), kv8(f16, kr, kb + d), acc0);
                    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), kv8(f16, kr, kb + d + 8), acc1);
                }
                for (; d < Dv; d += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), kv8(f16, kr, kb + d), acc0);
                float dot = hsum(_mm256_add_ps(acc0, acc1));
                for (; d < D; d++) dot += q[d] * kv1(f16, kr, kb + d);
                p[r * S + s] = dot * a->scale;
            }
        }
        /* softmax numerators per head */
        for (int64_t r = 0; r < R; r++) {
            float *pr = p + r * S, mx = -INFINITY;
            for (int64_t s = 0; s < valid; s++) mx = pr[s] > mx ? pr[s] : mx;
            sums[r] = softmax_numer(pr, valid, mx);
            float *o = a->out + t * a->o_row + (j * R + r) * D;
            for (int64_t d = 0; d < D; d++) o[d] = 0.0f;
        }
        /* out_r = sum_s p_r[s] v[s] / sum_r */
        if (D == 64) { /* head by head with out_r in registers: no loads and stores of it per position */
            for (int64_t r = 0; r < R; r++) {
                __m256 o[8];
                _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) o[c] = _mm256_setzero_ps();
                const float *pr = p + r * S;
                for (int64_t s = 0; s < valid; s++) {
                    const void *vr = miser_attn_row(a, 1, s);
                    if (r == 0) attn_prefetch(a, 1, s, valid, j * D);
                    const __m256 ps = _mm256_set1_ps(pr[s]);
                    _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) o[c] =
                        _mm256_fmadd_ps(ps, kv8(f16, vr, j * D + 8 * c), o[c]);
                }
                float *out = a->out + t * a->o_row + (j * R + r) * D;
                const __m256 inv = _mm256_set1_ps(1.0f / sums[r]);
                _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) _mm256_storeu_ps(out + 8 * c, _mm256_mul_ps(o[c], inv));
            }
            continue;
        }
        /* any other head size: each V row read once for the group */
        for (int64_t s = 0; s < valid; s++) {
            const void *vr = miser_attn_row(a, 1, s);
            const int64_t vb = j * D;
            attn_prefetch(a, 1, s, valid, vb);
            int64_t d = 0;
            for (; d < Dv; d += 8) {
                const __m256 v = kv8(f16, vr, vb + d);
                for (int64_t r = 0; r < R; r++) {
                    float *o = a->out + t * a->o_row + (j * R + r) * D + d;
                    _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_set1_ps(p[r * S + s]), v, _mm256_loadu_ps(o)));
                }
            }
            for (; d < D; d++) {
                const float v = kv1(f16, vr, vb + d);
                for (int64_t r = 0; r < R; r++) a->out[t * a->o_row + (j * R + r) * D + d] += p[r * S + s] * v;
            }
        }
        for (int64_t r = 0; r < R; r++) {
            float *o = a->out + t * a->o_row + (j * R + r) * D;
            const __m256 inv = _mm256_set1_ps(1.0f / sums[r]);
            int64_t d = 0;
            for (; d < Dv; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), inv));
            for (; d < D; d++) o[d] *= 1.0f / sums[r];
        }
    }
}

static void avx2_attention(const miser_attention_args *a, int ith, int nth)
{
    const int grouped = a->group > 1 && a->group <= GQA_MAX_GROUP && a->H % a->group == 0;
    if (grouped && a->kvdt == MISER_DTYPE_F16) attention_group_impl(1, a, ith, nth);
    else if (grouped && a->kvdt == MISER_DTYPE_F32) attention_group_impl(0, a, ith, nth);
    else if (a->kvdt == MISER_DTYPE_F16) attention_impl(1, a, ith, nth);
    else if (a->kvdt == MISER_DTYPE_F32) attention_impl(0, a, ith, nth);
    else miser_kernels_ref()->attention(a, ith, nth);
}

/* ---- layernorm, gelu, add, softmax ---- */

AI void layernorm_impl(miser_dtype pdt, float *y, const float *x, const void *gamma, const void *beta, int64_t rows,
                       int64_t C, float eps, int ith, int nth)
{
    int64_t lo, hi;
    miser_split(rows, ith, nth, &lo, &hi);
    const int64_t Cv = C / 8 * 8;
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        /* two passes (mean, then centred squares) as the reference: no
         * cancellation for rows with a large mean */
        __m256 s0 = _mm256_setzero_ps();
        int64_t c = 0;
        for (; c < Cv; c += 8) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + c));
        float sum = hsum(s0);
        for (; c < C; c++) sum += xr[c];
        float mean = sum / (float)C;
        __m256 vmean = _mm256_set1_ps(mean), v0 = _mm256_setzero_ps();
        for (c = 0; c < Cv; c += 8) {
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xr + c), vmean);
            v0 = _mm256_fmadd_ps(d, d, v0);
        }
        float var = hsum(v0);
        for (; c < C; c++) var += (xr[c] - mean) * (xr[c] - mean);
        float inv = 1.0f / sqrtf(var / (float)C + eps);
        __m256 vinv = _mm256_set1_ps(inv);
        for (c = 0; c < Cv; c += 8) {
            __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + c), vmean), vinv);
            _mm256_storeu_ps(yr + c, _mm256_fmadd_ps(d, load8(pdt, gamma, c), load8(pdt, beta, c)));
        }
        for (; c < C; c++)
            yr[c] = (xr[c] - mean) * inv * miser_load_elem(pdt, gamma, c) + miser_load_elem(pdt, beta, c);
    }
}

static void avx2_layernorm(float *y, const float *x, const void *gamma, const void *beta, miser_dtype pdt,
                           int64_t rows, int64_t C, float eps, int ith, int nth)
{
    switch (pdt) {
    case MISER_DTYPE_F32: layernorm_impl(MISER_DTYPE_F32, y, x, gamma, beta, rows, C, eps, ith, nth); break;
    case MISER_DTYPE_F16: layernorm_impl(MISER_DTYPE_F16, y, x, gamma, beta, rows, C, eps, ith, nth); break;
    case MISER_DTYPE_BF16: layernorm_impl(MISER_DTYPE_BF16, y, x, gamma, beta, rows, C, eps, ith, nth); break;
    default: miser_kernels_ref()->layernorm(y, x, gamma, beta, pdt, rows, C, eps, ith, nth); break;
    }
}

AI void rmsnorm_impl(miser_dtype pdt, float *y, const float *x, const void *gamma, int64_t rows, int64_t C, float eps,
                     int ith, int nth)
{
    int64_t lo, hi;
    miser_split(rows, ith, nth, &lo, &hi);
    const int64_t Cv = C / 8 * 8;
    for (int64_t r = lo; r < hi; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        __m256 s0 = _mm256_setzero_ps();
        int64_t c = 0;
        for (; c < Cv; c += 8) {
            const __m256 v = _mm256_loadu_ps(xr + c);
            s0 = _mm256_fmadd_ps(v, v, s0);
        }
        float ss = hsum(s0);
        for (; c < C; c++) ss += xr[c] * xr[c];
        const float inv = 1.0f / sqrtf(ss / (float)C + eps);
        const __m256 vinv = _mm256_set1_ps(inv);
        for (c = 0; c < Cv; c += 8)
            _mm256_storeu_ps(yr + c, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + c), vinv), load8(pdt, gamma, c)));
        for (; c < C; c++) yr[c] = xr[c] * inv * miser_load_elem(pdt, gamma, c);
    }
}

static void avx2_rmsnorm(float *y, const float *x, const void *gamma, miser_dtype pdt, int64_t rows, int64_t C,
                         float eps, int ith, int nth)
{
    switch (pdt) {
    case MISER_DTYPE_F32: rmsnorm_impl(MISER_DTYPE_F32, y, x, gamma, rows, C, eps, ith, nth); break;
    case MISER_DTYPE_F16: rmsnorm_impl(MISER_DTYPE_F16, y, x, gamma, rows, C, eps, ith, nth); break;
    case MISER_DTYPE_BF16: rmsnorm_impl(MISER_DTYPE_BF16, y, x, gamma, rows, C, eps, ith, nth); break;
    default: miser_ref_rmsnorm(y, x, gamma, pdt, rows, C, eps, ith, nth); break;
    }
}

/* elementwise work in chunks of 8 floats so threads never share a vector */
static void split8(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    int64_t u = (n + 7) / 8, u0, u1;
    miser_split(u, ith, nth, &u0, &u1);
    *lo = u0 * 8;
    *hi = u1 * 8 < n ? u1 * 8 : n;
}

static void avx2_gelu(float *y, const float *x, int64_t n, int ith, int nth)
{
    int64_t lo, hi, i;
    split8(n, ith, nth, &lo, &hi);
    for (i = lo; i + 8 <= hi; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
    if (i < hi) gelu_tail(y + i, x + i, hi - i);
}

static void avx2_silu_mul(float *y, const float *g, const float *u, int64_t n, int ith, int nth)
{
    int64_t lo, hi, i;
    split8(n, ith, nth, &lo, &hi);
    for (i = lo; i + 8 <= hi; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 sig = _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), x)));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_div_ps(x, sig), _mm256_loadu_ps(u + i)));
    }
    for (; i < hi; i++) y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void avx2_add(float *y, const float *a, const float *b, int64_t n, int ith, int nth)
{
    int64_t lo, hi, i;
    split8(n, ith, nth, &lo, &hi);
    for (i = lo; i + 8 <= hi; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < hi; i++) y[i] = a[i] + b[i];
}

static void avx2_softmax(float *y, const float *x, int64_t rows, int64_t n, float scale, const int64_t *valid_base,
                         int64_t valid_step_rows, int ith, int nth)
{
    int64_t lo, hi;
    miser_split(rows, ith, nth, &lo, &hi);
    __m256 vs = _mm256_set1_ps(scale);
    for (int64_t r = lo; r < hi; r++) {
        int64_t valid = valid_base ? valid_base[0] + (r % valid_step_rows) : n;
        if (valid > n) valid = n;
        const float *xr = x + r * n;
        float *yr = y + r * n;
        int64_t i = 0;
        __m256 vm = _mm256_set1_ps(-INFINITY);
        for (; i + 8 <= valid; i += 8) vm = _mm256_max_ps(vm, _mm256_mul_ps(_mm256_loadu_ps(xr + i), vs));
        float mx = hmax(vm);
        for (; i < valid; i++) mx = fmaxf(mx, xr[i] * scale);
        vm = _mm256_set1_ps(mx);
        __m256 vsum = _mm256_setzero_ps();
        for (i = 0; i + 8 <= valid; i += 8) {
            __m256 e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(xr + i), vs, vm));
            _mm256_storeu_ps(yr + i, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        float sum = hsum(vsum);
        for (; i < valid; i++) {
            yr[i] = expf(xr[i] * scale - mx);
            sum += yr[i];
        }
        __m256 inv = _mm256_set1_ps(1.0f / sum);
        for (i = 0; i + 8 <= valid; i += 8) _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_loadu_ps(yr + i), inv));
        for (; i < valid; i++) yr[i] /= sum;
        for (i = valid; i < n; i++) yr[i] = 0.0f;
    }
}

static const miser_kernels g_avx2 = {
    .name = "avx2",
    .linear = avx2_linear,
    .attention = avx2_attention,
    .layernorm = avx2_layernorm,
    .gelu = avx2_gelu,
    .rmsnorm = avx2_rmsnorm,
    .silu_mul = avx2_silu_mul,
    .add = avx2_add,
    .softmax = avx2_softmax,
    .q8_dots_int8_min_m = 1, /* q8_0 dot layout: int8 at every M (qdot_avx2.c) */
    .rope = miser_avx2_rope,          /* llama_avx2.c */
    .to_f16 = miser_avx2_f32_to_f16, /* llama_avx2.c */
};

const miser_kernels *miser_kernels_avx2(void) { return &g_avx2; }
