/* The integer-dot linear for 32-value weight blocks (q8_0, q4_0) in the dot
 * layout, written once and stamped out per instruction set by qdot_avx2.c:
 * it includes this file with QD_NAME(x) (a suffix for every function),
 * QD_TARGET (a function attribute: the extra ISA of that copy) and
 * QD_DOT(aw, sx) (8 int32 lanes, lane l = sum over bytes 4l..4l+3 of
 * aw (unsigned) * sx (signed)): maddubs + madd on AVX2, vpdpbusd with VNNI.
 * Every copy computes the same integers and the same f32 operations, so
 * they give the same y bit for bit (quant4.h, "32-value blocks").
 * Internal to src/kernels; not a public header (no include guard on purpose). */

#ifndef QD_PF_TILES
#define QD_PF_TILES 2 /* prefetch distance in tiles of NR weight rows */
#endif

/* weight block b of row `row` as 32 signed bytes (q4_0: nibble - 8) */
static inline __attribute__((always_inline)) QD_TARGET __m256i QD_NAME(wload)(miser_dtype dt, const uint8_t *blk)
{
    if (dt == MISER_DTYPE_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
    const __m128i raw = _mm_loadu_si128((const __m128i *)(blk + 2));
    return _mm256_sub_epi8(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F)),
                           _mm256_set1_epi8(8));
}

/* y[m0 + r, n + j] (r < MR, j < NR) = the lane sums of x rows r (xq + r * nb
 * blocks) against W rows j (w + j * rb bytes), before bias. */
static inline __attribute__((always_inline)) QD_TARGET void QD_NAME(tile)(const int MR, const int NR, miser_dtype dt,
                                                                          const miser_q8a *xq, int64_t nb,
                                                                          const uint8_t *w, int64_t rb, float *y,
                                                                          int64_t ldy)
{
    const int64_t bb = dt == MISER_DTYPE_Q8_0 ? MISER_Q8_0_BYTES : MISER_Q4_0_BYTES;
    __m256 acc[4][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) acc[r][j] = _mm256_setzero_ps();
    /* The NR rows after these are contiguous with them (rb = nb * bb): the
     * hardware prefetcher does not keep up with NR interleaved short rows
     * (a 1024-wide Q4_0 row is 576 bytes), so block b prefetches the b-th
     * NR * bb bytes of the next QD_PF_TILES-th tile's rows. Past the end of
     * the weights it prefetches nothing that faults. */
    const char *pf = (const char *)w + QD_PF_TILES * NR * rb;
    for (int64_t b = 0; b < nb; b++) {
        _Pragma("GCC unroll 4") for (int64_t o = 0; o < NR * bb + 63; o += 64)
            _mm_prefetch(pf + b * NR * bb + (o < NR * bb ? o : NR * bb - 1), _MM_HINT_T0);
        if (MR == 1) { /* decode: x's block once, against the NR weight rows */
            const __m256i xv = _mm256_loadu_si256((const __m256i *)xq[b].q);
            const __m256 dx = _mm256_set1_ps(xq[b].d);
            _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
            {
                const uint8_t *blk = w + j * rb + b * bb;
                const __m256i wv = QD_NAME(wload)(dt, blk);
                uint16_t h;
                memcpy(&h, blk, 2);
                const __m256i p = QD_DOT(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
                acc[0][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(h)), dx),
                                            acc[0][j]);
            }
            continue;
        }
        /* one weight block at a time against the tile's rows of x (fewer
         * live registers than holding all NR blocks: no spills at 4 x 2) */
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
        {
            const uint8_t *blk = w + j * rb + b * bb;
            const __m256i wv = QD_NAME(wload)(dt, blk);
            const __m256i aw = _mm256_sign_epi8(wv, wv); /* |w|: -128 becomes 128 as an unsigned byte */
            uint16_t h;
            memcpy(&h, blk, 2);
            const __m256 dw = _mm256_set1_ps(_cvtsh_ss(h));
            _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
            {
                const miser_q8a *xb = xq + r * nb + b;
                const __m256i xv = _mm256_loadu_si256((const __m256i *)xb->q);
                /* x * sign(w): |x| <= 127, so the product never wraps */
                const __m256i p = QD_DOT(aw, _mm256_sign_epi8(xv, wv));
                acc[r][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw, _mm256_set1_ps(xb->d)), acc[r][j]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
    {
        /* ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)): quant4.h's order */
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[r][j]), _mm256_extractf128_ps(acc[r][j], 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        y[r * ldy + j] = _mm_cvtss_f32(s);
    }
}

/* rows [0, M) of quantised x (nb blocks each) against W rows [n0, n1):
 * tiles of QD_MR x QD_NR, then the leftovers. W rows are the outer loop, so
 * one tile's weight rows stay in L1 while every row of x passes them. */
static inline __attribute__((always_inline)) QD_TARGET void QD_NAME(cols_dt)(const miser_dtype dt,
                                                                             const miser_q8a *xq, int64_t M,
                                                                             int64_t nb, const miser_linear_args *a,
                                                                             int64_t m0, int64_t n0, int64_t n1)
{
    const int64_t bb = dt == MISER_DTYPE_Q8_0 ? MISER_Q8_0_BYTES : MISER_Q4_0_BYTES, rb = a->wsn / 32 * bb;
    const uint8_t *w = a->w;
    float *y = a->y + m0 * a->ldy;
    const int64_t ldy = a->ldy;
#define QD_ROWS(NR)                                                                                                    \
    for (int64_t m = 0; m < M;) {                                                                                      \
        if (M - m >= 4) QD_NAME(tile)(4, NR, dt, xq + m * nb, nb, w + n * rb, rb, y + m * ldy + n, ldy), m += 4;      \
        else if (M - m == 3) QD_NAME(tile)(3, NR, dt, xq + m * nb, nb, w + n * rb, rb, y + m * ldy + n, ldy), m += 3; \
        else if (M - m == 2) QD_NAME(tile)(2, NR, dt, xq + m * nb, nb, w + n * rb, rb, y + m * ldy + n, ldy), m += 2; \
        else QD_NAME(tile)(1, NR, dt, xq + m * nb, nb, w + n * rb, rb, y + m * ldy + n, ldy), m += 1;                 \
    }
    int64_t n = n0;
    if (M == 1) /* decode: 4 weight streams, one row of x */
        for (; n + 4 <= n1; n += 4) QD_NAME(tile)(1, 4, dt, xq, nb, w + n * rb, rb, y + n, ldy);
    else
        for (; n + 2 <= n1; n += 2) { QD_ROWS(2) }
    for (; n < n1; n++) { QD_ROWS(1) }
#undef QD_ROWS
}

/* One copy per weight type, so the tiles' loops carry no type test and
 * their prefetch strides are constants. */
static QD_TARGET __attribute__((noinline)) void QD_NAME(cols)(miser_dtype dt, const miser_q8a *xq, int64_t M,
                                                               int64_t nb, const miser_linear_args *a, int64_t m0,
                                                               int64_t n0, int64_t n1)
{
    if (dt == MISER_DTYPE_Q8_0) QD_NAME(cols_dt)(MISER_DTYPE_Q8_0, xq, M, nb, a, m0, n0, n1);
    else QD_NAME(cols_dt)(MISER_DTYPE_Q4_0, xq, M, nb, a, m0, n0, n1);
}
