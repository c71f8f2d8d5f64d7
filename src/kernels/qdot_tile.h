/* The integer-dot linear for 32-value weight blocks (q8_0, q4_0) in the dot
 * layout, written once and stamped out per instruction set by qdot_avx2.c:
 * it includes this file with QD_NAME(x) (a suffix for every function),
 * QD_TARGET (a function attribute: the extra ISA of that copy), QD_VNNI (1
 * when the copy has vpdpbusd) and QD_DOT(aw, sx) (8 int32 lanes, lane l =
 * sum over bytes 4l..4l+3 of aw (unsigned) * sx (signed)): maddubs + madd
 * on AVX2, vpdpbusd with VNNI. Every copy computes each block's exact
 * integer dot and then the same f32 operations (quant4.h, "32-value
 * blocks"), so they give the same y bit for bit.
 * Internal to src/kernels; not a public header (no include guard on purpose). */

#ifndef QD_PF_TILES
/* decode's prefetch distance in tiles of 8 weight rows: one (8 KB ahead for
 * SmolLM2's 1020-byte q8_0 rows) measured faster end to end than two, the
 * distance of the 4-row tiles before (SmolLM2 q8_0 1 thread 17.7 -> 20.2
 * tok/s, GPT-2 Q4_0 29.9 -> 32.4, medians of 3 interleaved) */
#define QD_PF_TILES 1
#endif
#ifndef QD_KEEP
/* v as it is here: a compiler barrier that keeps a tile's sums in program
 * order. Without it GCC reassociates a block's chain of adds into a tree
 * over all its products and spills them to the stack (the AVX2 q4_0 / q8_0
 * panel tile: 132 spill stores; kpanel_avx2.c measured 80 against 100
 * GFLOP/s for the same fix). Not in the emulated build, whose vectors may
 * not be registers. */
#ifdef MISER_EMULATE_X86
#define QD_KEEP(v) ((void)0)
#else
#define QD_KEEP(v) __asm__("" : "+x"(v))
#endif
#endif
#define QD_PACK_PF_TILES 2 /* the panel packing's, measured at M = 16 */
#define QD_PANEL_M MISER_QDOT_PANEL_MIN_M /* rows of x from which W is packed into panels (below: row tiles) */
#define QD_KC MISER_QDOT_PANEL_BLOCKS      /* blocks of K per panel: 9 KB, in L1 */

/* Weight block as 32 bytes: q8_0 its signed values; q4_0 its nibbles 0..15
 * (the value + 8: unsigned, so they are vpmaddubsw's unsigned operand and
 * the 8 comes back as 8 * sum(qx), which x's block carries). */
static inline __attribute__((always_inline)) QD_TARGET __m256i QD_NAME(wraw)(miser_dtype dt, const uint8_t *blk)
{
    if (dt == MISER_DTYPE_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
    const __m128i raw = _mm_loadu_si128((const __m128i *)(blk + 2));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
}

/* lane j = the sum of p[j]'s 8 lanes (exact: |a block's dot| < 2^20) */
static inline __attribute__((always_inline)) QD_TARGET __m256i QD_NAME(hsum8)(const __m256i *p)
{
    /* unpacks and adds (one operation each, where a horizontal add is
     * several: a compute-bound decode pass 5.6 against 6.3 ms with vphaddd) */
    __m256i q[4];
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) q[i] =
        _mm256_add_epi32(_mm256_unpacklo_epi32(p[2 * i], p[2 * i + 1]), _mm256_unpackhi_epi32(p[2 * i], p[2 * i + 1]));
    const __m256i e = _mm256_add_epi32(_mm256_unpacklo_epi64(q[0], q[1]), _mm256_unpackhi_epi64(q[0], q[1]));
    const __m256i f = _mm256_add_epi32(_mm256_unpacklo_epi64(q[2], q[3]), _mm256_unpackhi_epi64(q[2], q[3]));
    /* e: rows 0-3's sums of lanes 0-3 | of lanes 4-7; f: rows 4-7 */
    return _mm256_add_epi32(_mm256_permute2x128_si256(e, f, 0x20), _mm256_permute2x128_si256(e, f, 0x31));
}

/* One row of x (nb blocks) against the 8 weight rows r[] (decode, and M
 * below QD_PANEL_M): per block the 8 exact dots side by side in one vector,
 * then y8 = fma(float(isum) * dw, dx, y8). The rows after these (pf, 8 * bb
 * bytes per block) are prefetched: the hardware prefetcher does not keep up
 * with 8 interleaved short rows (a 1024-wide Q4_0 row is 576 bytes); past
 * the end of the weights a prefetch faults on nothing. */
static inline __attribute__((always_inline)) QD_TARGET __m256 QD_NAME(rows8)(const miser_dtype dt,
                                                                             const miser_q8a *xq, int64_t nb,
                                                                             const uint8_t *const *r, const char *pf)
{
    const int64_t bb = dt == MISER_DTYPE_Q8_0 ? MISER_Q8_0_BYTES : MISER_Q4_0_BYTES;
    __m256 f = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        _Pragma("GCC unroll 8") for (int64_t o = 0; o < 8 * bb + 63; o += 64)
            _mm_prefetch(pf + b * 8 * bb + (o < 8 * bb ? o : 8 * bb - 1), _MM_HINT_T0);
        const __m256i xv = _mm256_loadu_si256((const __m256i *)xq[b].q);
        __m256i p[8];
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)
        {
            const __m256i wv = QD_NAME(wraw)(dt, r[j] + b * bb);
            p[j] = dt == MISER_DTYPE_Q8_0 ? QD_DOT(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)) : QD_DOT(wv, xv);
        }
        __m256i is = QD_NAME(hsum8)(p);
        if (dt == MISER_DTYPE_Q4_0) is = _mm256_sub_epi32(is, _mm256_set1_epi32(8 * xq[b].sum));
        const __m256 dw = miser_f16x8_ps(r, b * bb);
        f = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(is), dw), _mm256_set1_ps(xq[b].d), f);
    }
    return f;
}

/* 8 weight rows over QD_KC blocks, transposed so that lane j of w[b][g] is
 * bytes 4g..4g+3 of row j's block b, and the blocks' scales as f32. */
typedef struct {
    __m256i w[QD_KC][8];
    __m256 dw[QD_KC];
} QD_NAME(panel);

static inline __attribute__((always_inline)) QD_TARGET void QD_NAME(pack)(const miser_dtype dt,
                                                                          const uint8_t *const *r, int64_t b0,
                                                                          int64_t kc, QD_NAME(panel) *p,
                                                                          const char *pf, int64_t rb)
{
    const int64_t bb = dt == MISER_DTYPE_Q8_0 ? MISER_Q8_0_BYTES : MISER_Q4_0_BYTES;
    for (int64_t b = 0; b < kc; b++) {
        const int64_t off = (b0 + b) * bb;
        /* the same blocks of the 8 rows QD_PACK_PF_TILES tiles on (few rows of x
         * per panel, as a server's batch, leave the packing waiting on
         * memory otherwise); a block spans at most 2 lines */
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)
        {
            _mm_prefetch(pf + j * rb + off, _MM_HINT_T0);
            _mm_prefetch(pf + j * rb + off + bb - 1, _MM_HINT_T0);
        }
        __m256i R[8];
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) R[j] = QD_NAME(wraw)(dt, r[j] + off);
        miser_tr8x8_epi32(R, p->w[b]);
        p->dw[b] = miser_f16x8_ps(r, off);
    }
}

/* MR rows of x (xq, row stride nb blocks; block b0 is the panel's first)
 * against a panel's 8 columns over kc blocks, continuing y's f32 sums
 * (first: from 0). q4_0 on AVX2 sums a block's 8 maddubs in int16: a lane is
 * 16 products nibble x qx, at most 16 * 15 * 127 = 30480 < 32767, exact. */
static inline __attribute__((always_inline)) QD_TARGET void QD_NAME(ptile)(const int MR, const miser_dtype dt,
                                                                           const miser_q8a *xq, int64_t nb, int64_t b0,
                                                                           const QD_NAME(panel) *p, int64_t kc,
                                                                           float *y, int64_t ldy, __m256i mask,
                                                                           int first)
{
    __m256 f[QD_PANEL_M];
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) f[r] =
        first ? _mm256_setzero_ps() : _mm256_maskload_ps(y + r * ldy, mask);
    for (int64_t b = 0; b < kc; b++) {
        __m256i acc[QD_PANEL_M];
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) acc[r] = _mm256_setzero_si256();
        _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++)
        {
            const __m256i wg = p->w[b][g];
            const __m256i ag = dt == MISER_DTYPE_Q8_0 ? _mm256_sign_epi8(wg, wg) : wg; /* |w| */
            _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
            {
                int32_t x4;
                memcpy(&x4, xq[r * nb + b0 + b].q + 4 * g, 4);
                const __m256i xb = _mm256_set1_epi32(x4);
                if (dt == MISER_DTYPE_Q8_0) acc[r] = QD_DOTACC(acc[r], ag, _mm256_sign_epi8(xb, wg));
                else if (QD_VNNI) acc[r] = QD_DOTACC(acc[r], wg, xb);
                else acc[r] = _mm256_add_epi16(acc[r], _mm256_maddubs_epi16(wg, xb));
                QD_KEEP(acc[r]);
            }
        }
        const __m256 dw = p->dw[b];
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
        {
            const miser_q8a *xb = xq + r * nb + b0 + b;
            __m256i is = acc[r];
            if (dt == MISER_DTYPE_Q4_0) {
                if (!QD_VNNI) is = _mm256_madd_epi16(is, _mm256_set1_epi16(1));
                is = _mm256_sub_epi32(is, _mm256_set1_epi32(8 * xb->sum));
            }
            f[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(is), dw), _mm256_set1_ps(xb->d), f[r]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++) _mm256_maskstore_ps(y + r * ldy, mask, f[r]);
}

/* rows [0, M) of quantised x (nb blocks each) against W rows [n0, n1), 8
 * weight rows at a time (a tail repeats its last row, and its surplus
 * outputs are masked off): below QD_PANEL_M rows of x each row runs the row
 * tile; from there the 8 rows are packed, QD_KC blocks at a time, and every
 * row of x passes the panel in tiles of QD_PANEL_M rows. */
static inline __attribute__((always_inline)) QD_TARGET void QD_NAME(cols_dt)(const miser_dtype dt,
                                                                             const miser_q8a *xq, int64_t M,
                                                                             int64_t nb, const miser_linear_args *a,
                                                                             int64_t m0, int64_t n0, int64_t n1)
{
    const int64_t bb = dt == MISER_DTYPE_Q8_0 ? MISER_Q8_0_BYTES : MISER_Q4_0_BYTES, rb = a->wsn / 32 * bb;
    const uint8_t *w = a->w;
    float *y = a->y + m0 * a->ldy;
    const int64_t ldy = a->ldy;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    QD_NAME(panel) pan __attribute__((aligned(32)));
    for (int64_t n = n0; n < n1; n += 8) {
        const int64_t nv = n1 - n < 8 ? n1 - n : 8;
        const uint8_t *r[8];
        for (int j = 0; j < 8; j++) r[j] = w + (n + (j < nv ? j : nv - 1)) * rb;
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nv), lanes);
        if (M < QD_PANEL_M) {
            const char *pf = (const char *)(w + n * rb) + QD_PF_TILES * 8 * rb;
            for (int64_t m = 0; m < M; m++)
                _mm256_maskstore_ps(y + m * ldy + n, mask, QD_NAME(rows8)(dt, xq + m * nb, nb, r, pf));
            continue;
        }
        for (int64_t b0 = 0; b0 < nb; b0 += QD_KC) {
            const int64_t kc = nb - b0 < QD_KC ? nb - b0 : QD_KC;
            QD_NAME(pack)(dt, r, b0, kc, &pan, (const char *)(w + n * rb) + QD_PACK_PF_TILES * 8 * rb, rb);
            int64_t m = 0;
            for (; m + QD_PANEL_M <= M; m += QD_PANEL_M)
                QD_NAME(ptile)(QD_PANEL_M, dt, xq + m * nb, nb, b0, &pan, kc, y + m * ldy + n, ldy, mask, b0 == 0);
            if (M - m == 3) QD_NAME(ptile)(3, dt, xq + m * nb, nb, b0, &pan, kc, y + m * ldy + n, ldy, mask, b0 == 0);
            else if (M - m == 2) QD_NAME(ptile)(2, dt, xq + m * nb, nb, b0, &pan, kc, y + m * ldy + n, ldy, mask, b0 == 0);
            else if (M - m == 1) QD_NAME(ptile)(1, dt, xq + m * nb, nb, b0, &pan, kc, y + m * ldy + n, ldy, mask, b0 == 0);
        }
    }
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
