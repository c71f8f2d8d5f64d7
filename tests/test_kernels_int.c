/* Kernel suite, part 2: the integer-dot linears and the row-count / thread-
 * count invariance every linear path promises (kernels.h, "Reduction
 * order"). Checked against independent things:
 *  - the AVX2 activation quantiser against the scalar one (quant4_ref.c,
 *    written from kernels.h's definition), bit for bit, and that scalar one
 *    against the definition computed here in double (scale, round half even);
 *  - q8_0 / q4_0 dot-layout linears of every SIMD set (and of every
 *    integer-dot instruction set this CPU has: AVX2 maddubs, AVX-VNNI,
 *    AVX512-VNNI; the others skip with a message) bit for bit against the
 *    scalar definition miser_q32_linear_int_ref (the avx512 set's VNNI q8_0
 *    GEMM against its own per-block order, written out here), and that
 *    definition against a double dot product of the dequantised weights and
 *    quantised x;
 *  - for every linear path (f32/f16/bf16/q8_0 in both layouts, q4_0, q4_k,
 *    q6_k; with and without the decode K split) and every set: row m of y is
 *    bit-identical whether it is computed alone (M = 1, as decode does, with
 *    the K split's partial sums where it applies) or among 16 or 7 rows at any
 *    position, and for nth = 1, 2, 3 threads. */
#include <criterion/criterion.h>

#include "kernels/kernels.h"
#include "kernels/quant4.h"
#include "miser/graph.h"
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_rng >> 33);
}
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() & 0xffffff) / 16777216.0f; }

static const char *const k_sets[] = {"ref", "avx2", "avx512"};

/* n weights of dt (n a multiple of the block for the block types), random
 * values with small scales as real checkpoints have */
static void *make_w(miser_dtype dt, int64_t n)
{
    const size_t bytes = miser_dtype_bytes(dt, (uint64_t)n);
    uint8_t *p = malloc(bytes + 64);
    cr_assert(p);
    if (dt == MISER_DTYPE_F32 || dt == MISER_DTYPE_F16 || dt == MISER_DTYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            const float v = frand(-1, 1);
            if (dt == MISER_DTYPE_F32) ((float *)p)[i] = v;
            else if (dt == MISER_DTYPE_F16) ((uint16_t *)p)[i] = miser_f32_to_f16(v);
            else ((uint16_t *)p)[i] = miser_f32_to_bf16(v);
        }
        return p;
    }
    const size_t bb = miser_dtype_block_bytes(dt), nb = bytes / bb;
    for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)(rnd() >> 7);
    for (size_t b = 0; b < nb; b++) {
        uint8_t *q = p + b * bb;
        const uint16_t h = miser_f32_to_f16(frand(0.002f, 0.03f)), h2 = miser_f32_to_f16(frand(0.001f, 0.01f));
        if (dt == MISER_DTYPE_Q6_K) memcpy(q + 208, &h, 2);
        else memcpy(q, &h, 2);
        if (dt == MISER_DTYPE_Q4_K) memcpy(q + 2, &h2, 2);
        if (dt == MISER_DTYPE_Q8_0 && b % 7 == 3) q[2 + b % 32] = 0x80; /* -128: the sign trick's edge */
    }
    return p;
}

static float *make_x(int64_t n)
{
    float *p = malloc(sizeof(float) * (size_t)n);
    cr_assert(p);
    for (int64_t i = 0; i < n; i++) p[i] = frand(-2, 2);
    return p;
}

/* one call as the executor makes it: every ith in turn, both phases of the
 * decode K split when the arguments call for it */
static void run(const miser_kernels *k, const miser_linear_args *a0, int nth)
{
    miser_linear_args a = *a0;
    const int64_t need = miser_linear_partial_floats(&a);
    a.partial = need > 0 ? malloc(sizeof(float) * (size_t)need) : NULL;
    cr_assert(need == 0 || a.partial);
    for (a.phase = 0; a.phase < (a.partial ? 2 : 1); a.phase++)
        for (int i = 0; i < nth; i++) k->linear(&a, i, nth);
    free(a.partial);
}

static int same_bits(const float *a, const float *b, int64_t n) { return !memcmp(a, b, sizeof(float) * (size_t)n); }

/* ---- quantisation of x ---- */

Test(kernels_int, quantize_avx2_matches_scalar_and_definition)
{
    enum { K = 32 * 40 };
    float *x = make_x(K);
    for (int j = 0; j < 32; j++) x[32 * 5 + j] = 0.0f;          /* an all-zero block: d = 0 */
    for (int j = 0; j < 32; j++) x[32 * 6 + j] = (float)(j - 16) * 0.5f; /* exact halves: ties to even */
    x[32 * 7 + 3] = -1e-30f;                                     /* a block of one tiny value */
    for (int j = 0; j < 32; j++) if (j != 3) x[32 * 7 + j] = 0.0f;
    miser_q8a s[K / 32], v[K / 32];
    miser_q8a_quantize_row(x, K, s);
    for (int b = 0; b < K / 32; b++) { /* the definition (kernels.h), in double where it can be */
        double amax = 0;
        for (int j = 0; j < 32; j++) amax = fmax(amax, fabs(x[32 * b + j]));
        const float d = (float)amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        cr_assert_eq(s[b].d, d, "block %d: d %.9g, want %.9g", b, s[b].d, d);
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) {
            const double t = (double)(x[32 * b + j] * id), r = floor(t + 0.5);
            const int want = (int)(r - t == 0.5 && fmod(r, 2.0) != 0 ? r - 1 : r); /* half to even */
            cr_assert_eq(s[b].q[j], want, "block %d value %d: q %d, want %d", b, j, s[b].q[j], want);
            sum += want;
        }
        cr_assert_eq(s[b].sum, sum);
    }
    if (!miser_kernels_by_name("avx2")) {
        test_note("kernels_int: no AVX2 on this CPU, the AVX2 quantiser is not checked");
        free(x);
        return;
    }
    memset(v, 0x5a, sizeof v);
    miser_q8a_quantize_row_avx2(x, K, v);
    for (int b = 0; b < K / 32; b++) {
        cr_assert(!memcmp(&s[b].d, &v[b].d, 4) && s[b].sum == v[b].sum && !memcmp(s[b].q, v[b].q, 32),
                  "block %d: AVX2 quantiser differs from the scalar one", b);
    }
    /* the K-quants' 256-value blocks (kpanel_avx2.c), the same halves, zero
     * and tiny runs inside blocks 0 and 1, and the last block all zero */
    for (int j = 1024; j < K; j++) x[j] = 0.0f;
    miser_q8k ks[K / 256], kv[K / 256];
    miser_q8k_quantize_row(x, K, ks);
    memset(kv, 0x5a, sizeof kv);
    miser_q8k_quantize_row_avx2(x, K, kv);
    for (int b = 0; b < K / 256; b++) {
        int32_t g[16] = {0};
        for (int j = 0; j < 256; j++) g[j / 16] += ks[b].q[j];
        for (int j = 0; j < 16; j++) cr_assert_eq(ks[b].bsums[j], g[j], "q8k block %d: bsums[%d] is not its 16 values' sum", b, j);
        cr_assert(!memcmp(&ks[b].d, &kv[b].d, 4) && !memcmp(ks[b].q, kv[b].q, 256) && !memcmp(ks[b].bsums, kv[b].bsums, 32),
                  "q8k block %d: AVX2 quantiser differs from the scalar one", b);
    }
    cr_assert_eq(ks[K / 256 - 1].d, 0.0f);
    free(x);
}

/* ---- q8_0 / q4_0 against the scalar integer definition ---- */

/* The avx512 set on a CPU with AVX512-VNNI runs q8_0 dots through its
 * 512-bit GEMM, whose fixed order is per block: y = fma(float(isum) * dw, dx, y)
 * (kernels_avx512.c); written out here from that description. */
static int avx512_vnni_q8(const miser_kernels *k, miser_dtype dt)
{
    __builtin_cpu_init();
#ifdef MISER_EMULATE_X86 /* make test-emu-avx512: the set runs emulated, VNNI included */
    return dt == MISER_DTYPE_Q8_0 && !strcmp(k->name, "avx512");
#endif
    return dt == MISER_DTYPE_Q8_0 && !strcmp(k->name, "avx512") && __builtin_cpu_supports("avx512vnni");
}

static void q8_vnni512_def(const miser_linear_args *a, float *y)
{
    for (int64_t m = 0; m < a->M; m++)
        for (int64_t n = 0; n < a->N; n++) {
            const uint8_t *row = (const uint8_t *)a->w + (size_t)(n * a->wsn / 32) * MISER_Q8_0_BYTES;
            float f = 0;
            for (int64_t b = 0; b < a->K / 32; b++) {
                miser_q8a xq;
                miser_q8a_quantize_row(a->x + m * a->ldx + 32 * b, 32, &xq);
                int32_t i = 0;
                for (int j = 0; j < 32; j++) i += xq.q[j] * ((const int8_t *)row)[34 * b + 2 + j];
                uint16_t h;
                memcpy(&h, row + 34 * b, 2);
                f = fmaf((float)i * miser_f16_to_f32(h), xq.d, f);
            }
            y[m * a->ldy + n] = f + (a->bias ? ((const float *)a->bias)[n] : 0.0f);
        }
}

static void check_q32(const miser_kernels *k, miser_dtype dt, int64_t M, int64_t N, int64_t K, int bias, int act)
{
    const int64_t wsn = K + 32 * (int64_t)(rnd() % 3); /* rows padded past K */
    void *w = make_w(dt, N * wsn);
    const int64_t ldx = K + (int64_t)(rnd() % 5), ldy = N + (int64_t)(rnd() % 3);
    float *x = make_x(M * ldx), *b = bias ? make_x(N) : NULL;
    float *yr = calloc((size_t)(M * ldy), 4), *ys = calloc((size_t)(M * ldy), 4);
    cr_assert(yr && ys);
    miser_linear_args a = {.M = M, .N = N, .K = K, .x = x, .ldx = ldx, .w = w, .wdt = dt, .wsk = 1, .wsn = wsn,
                           .bias = b, .bdt = MISER_DTYPE_F32, .y = yr, .ldy = ldy, .act = act};
    for (int i = 0; i < 2; i++) miser_q32_linear_int_ref(&a, i, 2);
    float *yv = NULL;
    if (avx512_vnni_q8(k, dt) && act == MISER_ACT_NONE) { /* that set's own order */
        yv = calloc((size_t)(M * ldy), 4);
        cr_assert(yv);
        q8_vnni512_def(&a, yv);
    }
    a.y = ys;
    run(k, &a, 3);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            const float r = yr[m * ldy + n], s = ys[m * ldy + n];
            /* the definition itself: within f32 rounding of a double dot of
             * dequantised weights and quantised x */
            double exact = b ? b[n] : 0, mag = fabs(exact);
            for (int64_t kb = 0; kb < K; kb += 32) {
                miser_q8a xq;
                miser_q8a_quantize_row(x + m * ldx + kb, 32, &xq);
                for (int j = 0; j < 32; j++) {
                    const double t = (double)xq.q[j] * xq.d * miser_load_elem(dt, w, n * wsn + kb + j);
                    exact += t;
                    mag += fabs(t);
                }
            }
            if (act == MISER_ACT_NONE)
                cr_assert(fabs(r - exact) <= (double)(K / 32 + 8) * 1.2e-7 * mag + 1e-30,
                          "definition %s K=%lld: y[%lld,%lld] = %.9g, double %.9g", miser_dtype_name(dt), (long long)K,
                          (long long)m, (long long)n, r, exact);
            int ok = act == MISER_ACT_NONE ? !memcmp(&r, &s, 4) : fabs(r - s) <= 2e-6 * fabs(r) + 1e-7;
            if (avx512_vnni_q8(k, dt))
                ok = yv ? !memcmp(&yv[m * ldy + n], &s, 4)
                        : fabs(r - s) <= (double)(K / 32 + 8) * 1.2e-7 * mag + 2e-6 * fabs(r) + 1e-7;
            if (!ok)
                cr_assert_fail("[%s/%s] %s M=%lld N=%lld K=%lld bias=%d act=%d: y[%lld,%lld] = %.9g, definition %.9g",
                               k->name, miser_qdot_isa_name(miser_qdot_isa()), miser_dtype_name(dt), (long long)M,
                               (long long)N, (long long)K, bias, act, (long long)m, (long long)n, s, r);
        }
    free(w);
    free(x);
    free(b);
    free(yr);
    free(ys);
    free(yv);
}

Test(kernels_int, q8_0_q4_0_int8_bit_exact_every_set_and_isa)
{
    static const int64_t Ms[] = {1, 2, 3, 4, 5, 7, 16, 37};
    int checked = 0;
    for (size_t si = 1; si < 3; si++) {
        const miser_kernels *k = miser_kernels_by_name(k_sets[si]);
        if (!k) {
            test_note("kernels_int: this CPU has no %s set; skipped", k_sets[si]);
            continue;
        }
        cr_assert_eq(k->q8_dots_int8_min_m, 1, "[%s] q8_0 dots should be int8 at every M", k->name);
        for (int isa = 0; isa <= 2; isa++) {
            if (miser_qdot_force(isa) != 0) {
                test_note("kernels_int: this CPU has no %s; its integer dots are not exercised",
                            miser_qdot_isa_name(isa));
                continue;
            }
            for (int d = 0; d < 2; d++) {
                const miser_dtype dt = d ? MISER_DTYPE_Q4_0 : MISER_DTYPE_Q8_0;
                for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++) {
                    const int64_t N = 1 + (int64_t)(rnd() % 23), K = 32 * (1 + (int64_t)(rnd() % 12));
                    check_q32(k, dt, Ms[i], N, K, (int)(i & 1), MISER_ACT_NONE);
                }
                check_q32(k, dt, 5, 9, 96, 1, MISER_ACT_GELU);
                check_q32(k, dt, 1, 37, 32 * 90, 1, MISER_ACT_NONE); /* decode: 8-row tiles, a 5-row tail */
                check_q32(k, dt, 6, 11, 32 * 70, 0, MISER_ACT_NONE); /* panels: K in chunks of 32 blocks */
                checked++;
            }
        }
        miser_qdot_force(-1);
    }
    if (!checked) test_note("kernels_int: no SIMD set on this CPU; the integer definition is not exercised");
}

/* ---- invariance over the row count, the row's position and threads ---- */

typedef struct {
    miser_dtype dt;
    int rows; /* 1: W [K, N] rows (wsn = 1), 0: dot layout (wsk = 1) */
} lin_path;

static void check_invariance(const miser_kernels *k, lin_path p, int64_t N, int64_t K, int bias, int act)
{
    enum { MR = 16 };
    const int64_t bl = miser_dtype_block(p.dt) > 1 ? miser_dtype_block(p.dt) : 1;
    int64_t wsk, wsn, nel;
    if (p.rows) {
        wsn = 1;
        wsk = (N + 3 + bl - 1) / bl * bl;
        nel = K * wsk;
    } else {
        wsk = 1;
        wsn = (K + bl - 1) / bl * bl;
        nel = N * wsn;
    }
    void *w = make_w(p.dt, nel);
    const int64_t ldx = K + 1, ldy = N + 2;
    float *x = make_x(MR * ldx), *xr = make_x(MR * ldx), *b = bias ? make_x(N) : NULL;
    float *y16 = calloc((size_t)(MR * ldy), 4), *yt = calloc((size_t)(MR * ldy), 4);
    cr_assert(y16 && yt);
    miser_linear_args a = {.M = MR, .N = N, .K = K, .x = x, .ldx = ldx, .w = w, .wdt = p.dt, .wsk = wsk, .wsn = wsn,
                           .bias = b, .bdt = MISER_DTYPE_F32, .y = y16, .ldy = ldy, .act = act};
    run(k, &a, 1);
    const char *lay = p.rows ? "rows" : "dots";
#define FAIL_IF(cond, ...)                                                                                             \
    if (cond)                                                                                                          \
        cr_assert_fail("[%s] %s %s N=%lld K=%lld bias=%d: " __VA_ARGS__);
    for (int nth = 1; nth <= 3; nth++) {
        /* M = 16 over nth threads */
        a.x = x, a.M = MR, a.y = yt;
        memset(yt, 0, sizeof(float) * (size_t)(MR * ldy));
        run(k, &a, nth);
        for (int64_t m = 0; m < MR; m++)
            if (!same_bits(yt + m * ldy, y16 + m * ldy, N))
                cr_assert_fail("[%s] %s %s N=%lld K=%lld: M=16, nth=%d: row %lld differs from nth=1", k->name,
                               miser_dtype_name(p.dt), lay, (long long)N, (long long)K, nth, (long long)m);
        /* each row alone (decode) */
        for (int64_t m = 0; m < MR; m++) {
            a.x = x + m * ldx, a.M = 1, a.y = yt;
            run(k, &a, nth);
            if (!same_bits(yt, y16 + m * ldy, N)) {
                int64_t n = 0;
                while (n < N && !memcmp(yt + n, y16 + m * ldy + n, 4)) n++;
                cr_assert_fail("[%s] %s %s N=%lld K=%lld bias=%d: row %lld alone (nth=%d) differs from M=16: "
                               "y[%lld] %.9g vs %.9g", k->name, miser_dtype_name(p.dt), lay, (long long)N, (long long)K,
                               bias, (long long)m, nth, (long long)n, yt[n], y16[m * ldy + n]);
            }
        }
        /* rows rotated (row m at position (m + 5 + nth) % 16), and 7 of them */
        const int64_t sh = 5 + nth;
        for (int64_t m = 0; m < MR; m++) memcpy(xr + ((m + sh) % MR) * ldx, x + m * ldx, sizeof(float) * (size_t)K);
        a.x = xr, a.M = MR, a.y = yt;
        run(k, &a, nth);
        for (int64_t m = 0; m < MR; m++)
            if (!same_bits(yt + ((m + sh) % MR) * ldy, y16 + m * ldy, N))
                cr_assert_fail("[%s] %s %s N=%lld K=%lld: row %lld at position %lld of 16 (nth=%d) differs",
                               k->name, miser_dtype_name(p.dt), lay, (long long)N, (long long)K, (long long)m,
                               (long long)((m + sh) % MR), nth);
        a.x = x + 3 * ldx, a.M = 7, a.y = yt;
        run(k, &a, nth);
        for (int64_t m = 0; m < 7; m++)
            if (!same_bits(yt + m * ldy, y16 + (m + 3) * ldy, N))
                cr_assert_fail("[%s] %s %s N=%lld K=%lld: row %lld among 7 (nth=%d) differs from M=16", k->name,
                               miser_dtype_name(p.dt), lay, (long long)N, (long long)K, (long long)(m + 3), nth);
    }
#undef FAIL_IF
    free(w);
    free(x);
    free(xr);
    free(b);
    free(y16);
    free(yt);
}

Test(kernels_int, every_linear_path_row_count_and_thread_invariant, .timeout = 60)
{
    static const lin_path paths[] = {
        {MISER_DTYPE_F32, 1},  {MISER_DTYPE_F16, 1},  {MISER_DTYPE_BF16, 1}, {MISER_DTYPE_Q8_0, 1},
        {MISER_DTYPE_F32, 0},  {MISER_DTYPE_F16, 0},  {MISER_DTYPE_BF16, 0}, {MISER_DTYPE_Q8_0, 0},
        {MISER_DTYPE_Q4_0, 0}, {MISER_DTYPE_Q4_K, 0}, {MISER_DTYPE_Q6_K, 0},
    };
    for (size_t si = 0; si < 3; si++) {
        const miser_kernels *k = miser_kernels_by_name(k_sets[si]);
        if (!k) {
            test_note("kernels_int: this CPU has no %s set; its invariance is not checked here", k_sets[si]);
            continue;
        }
        for (size_t pi = 0; pi < sizeof paths / sizeof *paths; pi++) {
            const lin_path p = paths[pi];
            const int64_t bl = miser_dtype_block(p.dt) > 1 ? miser_dtype_block(p.dt) : 1;
            const int quant_k = !p.rows && bl > 1; /* blocks along K */
            /* odd N (column tails of every tile width), K below and above the
             * decode K split's chunk (several chunks and a short last one) */
            const int64_t Ks[] = {quant_k ? bl : 37, quant_k ? 3 * bl : 200,
                                  quant_k ? (bl == 32 ? 32 * 21 : 3 * bl) : 3 * MISER_KSPLIT_ROWS + 45};
            const int64_t Ns[] = {1, 13, 45};
            for (int i = 0; i < 3; i++) {
                if (!strcmp(k->name, "ref") && Ks[i] > 300 && bl < 32) continue; /* slow, and trivially invariant */
                check_invariance(k, p, Ns[i] + (p.rows && p.dt == MISER_DTYPE_Q8_0 ? 0 : 0), Ks[i], i != 1,
                                 i == 2 ? MISER_ACT_GELU : MISER_ACT_NONE);
            }
        }
    }
}
