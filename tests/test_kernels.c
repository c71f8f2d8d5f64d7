/* Kernel suite: every SIMD kernel against the scalar reference (ref.c) on
 * random shapes with odd sizes and tails, for each weight dtype and both
 * stored layouts of linear, with error bounds derived from the arithmetic
 * (f32 accumulation against the reference's f64), and with the work split
 * over nth = 1, 2, 3 threads (each ith called in turn) giving exactly the
 * result of the single-thread run. Also the thread pool's contract. */
#include <criterion/criterion.h>

#include "kernels/kernels.h"
#include "miser/alloc.h"
#include "miser/graph.h"
#include "runtime/threadpool.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 12345;
static uint32_t rnd(void)
{
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_rng >> 33);
}
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() & 0xffffff) / 16777216.0f; }
static int64_t irand(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd() % (uint32_t)(hi - lo + 1)); }

/* The SIMD set under test: each test body runs once per set this CPU has
 * (FOR_EACH_SET); with none (another architecture), the reference is
 * compared with itself. */
static const miser_kernels *g_set;
static const miser_kernels *simd(void) { return g_set; }
static const char *const k_sets[] = {"avx2", "avx512"};
#define FOR_EACH_SET                                                                                                   \
    for (size_t set_i = 0; set_i < sizeof k_sets / sizeof *k_sets + 1; set_i++)                                        \
        if (set_i < sizeof k_sets / sizeof *k_sets ? (g_set = miser_kernels_by_name(k_sets[set_i])) != NULL            \
                                                   : (!miser_kernels_by_name("avx2") && (g_set = miser_kernels_ref())))

/* fill n elements of dtype dt (n a multiple of 32 for Q8_0) */
static void *make_weights(miser_dtype dt, int64_t n)
{
    size_t bytes = miser_dtype_bytes(dt, (uint64_t)n);
    uint8_t *p = malloc(bytes + 64);
    cr_assert(p);
    if (dt == MISER_DTYPE_Q8_0) {
        for (int64_t b = 0; b < n / 32; b++) {
            uint16_t s = miser_f32_to_f16(frand(0.001f, 0.05f));
            memcpy(p + b * 34, &s, 2);
            for (int i = 0; i < 32; i++) ((int8_t *)p)[b * 34 + 2 + i] = (int8_t)irand(-127, 127);
        }
        return p;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = frand(-1, 1);
        if (dt == MISER_DTYPE_F32) ((float *)p)[i] = v;
        else if (dt == MISER_DTYPE_F16) ((uint16_t *)p)[i] = miser_f32_to_f16(v);
        else ((uint16_t *)p)[i] = miser_f32_to_bf16(v);
    }
    return p;
}

static float *make_f32(int64_t n, float lo, float hi)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    cr_assert(p);
    for (int64_t i = 0; i < n; i++) p[i] = frand(lo, hi);
    return p;
}

/* fn over nth threads as the executor runs it: with the decode K split's
 * partial sums when the arguments call for it (both phases, in order) */
static void run_split(void (*fn)(const miser_linear_args *, int, int), const miser_linear_args *a0, int nth)
{
    miser_linear_args a = *a0;
    const int64_t need = miser_linear_partial_floats(&a);
    a.partial = need > 0 ? malloc(sizeof(float) * (size_t)need) : NULL;
    cr_assert(need == 0 || a.partial);
    for (a.phase = 0; a.phase < (a.partial ? 2 : 1); a.phase++)
        for (int i = 0; i < nth; i++) fn(&a, i, nth);
    free(a.partial);
}

/* One linear case: compare the selected kernels with the reference. */
static void check_linear(miser_dtype wdt, int rows_layout, int64_t M, int64_t N, int64_t K, int bias, int act)
{
    int64_t wsk, wsn, nel;
    if (rows_layout) { /* W [K, ld] row-major, ld >= N; q8_0 blocks along n */
        int64_t ld = N + irand(0, 5);
        if (wdt == MISER_DTYPE_Q8_0) ld = (ld + 31) / 32 * 32;
        wsk = ld;
        wsn = 1;
        nel = K * ld;
    } else { /* W rows of length ld >= K along k (wte layout) */
        int64_t ld = K + irand(0, 5);
        if (wdt == MISER_DTYPE_Q8_0) ld = (ld + 31) / 32 * 32;
        wsk = 1;
        wsn = ld;
        nel = N * ld;
    }
    void *w = make_weights(wdt, nel);
    int64_t ldx = K + irand(0, 3), ldy = N + irand(0, 3);
    float *x = make_f32(M * ldx, -1, 1);
    miser_dtype bdt = (miser_dtype)irand(0, 2);
    void *b = bias ? make_weights(bdt, N) : NULL;
    float *yr = calloc((size_t)(M * ldy), sizeof(float)), *ys = calloc((size_t)(M * ldy), sizeof(float)),
          *yt = calloc((size_t)(M * ldy), sizeof(float));
    miser_linear_args a = {.M = M, .N = N, .K = K, .x = x, .ldx = ldx, .w = w, .wdt = wdt, .wsk = wsk, .wsn = wsn,
                           .bias = b, .bdt = bdt, .y = yr, .ldy = ldy, .act = act};
    /* a set that multiplies q8_0 in int8 (kernels.h q8_dots_int8_min_m) is
     * compared with the reference on x quantised as kernels.h defines it */
    const int qx = !rows_layout && wdt == MISER_DTYPE_Q8_0 && simd()->q8_dots_int8_min_m > 0 &&
                   M >= simd()->q8_dots_int8_min_m;
    float *xq = NULL;
    if (qx) {
        xq = malloc(sizeof(float) * (size_t)(M * ldx));
        cr_assert(xq);
        memcpy(xq, x, sizeof(float) * (size_t)(M * ldx));
        for (int64_t m = 0; m < M; m++)
            for (int64_t k0 = 0; k0 < K; k0 += 32) {
                float amax = 0;
                for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(x[m * ldx + k0 + k]));
                const float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
                for (int k = 0; k < 32; k++) xq[m * ldx + k0 + k] = nearbyintf(x[m * ldx + k0 + k] * id) * d;
            }
        a.x = xq;
    }
    run_split(miser_kernels_ref()->linear, &a, 1);
    a.x = x;
    a.y = ys;
    run_split(simd()->linear, &a, 1);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            /* f32 accumulation of K products against f64: |err| <= ~K u sum|x w| */
            double mag = b ? fabs(miser_load_elem(bdt, b, n)) : 0;
            for (int64_t k = 0; k < K; k++) mag += fabs(x[m * ldx + k] * miser_load_elem(wdt, w, k * wsk + n * wsn));
            double tol = (double)(K + 8) * 1.2e-7 * mag + 1e-30;
            float r = yr[m * ldy + n], s = ys[m * ldy + n];
            if (act == MISER_ACT_GELU) tol = 1.2 * tol + 2e-6 * fabs(r) + 1e-7;
            if (!(fabs(r - s) <= tol))
                cr_assert_fail("[%s] linear %s %s M=%lld N=%lld K=%lld bias=%d act=%d: y[%lld,%lld] ref %.9g simd %.9g tol %.3g",
                               simd()->name, miser_dtype_name(wdt), rows_layout ? "rows" : "dots", (long long)M, (long long)N,
                               (long long)K, bias, act, (long long)m, (long long)n, r, s, tol);
        }
    for (int nth = 2; nth <= 3; nth++) {
        memset(yt, 0, sizeof(float) * (size_t)(M * ldy));
        a.y = yt;
        run_split(simd()->linear, &a, nth);
        for (int64_t m = 0; m < M; m++)
            cr_assert(!memcmp(yt + m * ldy, ys + m * ldy, sizeof(float) * (size_t)N),
                      "[%s] linear %s %s M=%lld N=%lld K=%lld: nth=%d differs from the single-thread run",
                      simd()->name, miser_dtype_name(wdt), rows_layout ? "rows" : "dots", (long long)M, (long long)N, (long long)K, nth);
    }
    free(w);
    free(x);
    free(xq);
    free(b);
    free(yr);
    free(ys);
    free(yt);
}

static const miser_dtype k_wdts[] = {MISER_DTYPE_F32, MISER_DTYPE_F16, MISER_DTYPE_BF16, MISER_DTYPE_Q8_0};

Test(kernels, dispatch_selects_simd_and_ref_can_be_forced)
{
    const char *avail = miser_kernels_available();
    cr_assert(strstr(avail, "ref"));
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        cr_assert(strstr(avail, "avx2"), "this CPU has AVX2/FMA/F16C but the set is not available");
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
        cr_assert(strstr(avail, "avx512"), "this CPU has AVX-512 F/BW/VL/DQ but the set is not available");
        cr_assert_eq(miser_kernels_select("avx512"), 0);
        cr_assert_str_eq(miser_kernels_get()->name, "avx512");
    }
    for (size_t i = 0; i < sizeof k_sets / sizeof *k_sets; i++) { /* a set that is offered can be selected */
        const miser_kernels *k = miser_kernels_by_name(k_sets[i]);
        cr_assert_eq(!!k, !!strstr(avail, k_sets[i]));
        if (k) cr_assert_str_eq(k->name, k_sets[i]);
    }
    cr_assert_eq(miser_kernels_select("ref"), 0);
    cr_assert_str_eq(miser_kernels_get()->name, "ref");
    cr_assert_eq(miser_kernels_select("auto"), 0);
    cr_assert_neq(miser_kernels_select("no-such-set"), 0);
}

Test(kernels, linear_rows_layout_all_dtypes)
{
    FOR_EACH_SET {
        static const int64_t Ms[] = {1, 2, 3, 4, 5, 6, 7, 13};
        for (size_t d = 0; d < 4; d++)
            for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++) {
                int64_t N = irand(1, 150), K = irand(1, 300);
                check_linear(k_wdts[d], 1, Ms[i], N, K, (int)(i & 1), i % 3 == 2 ? MISER_ACT_GELU : MISER_ACT_NONE);
            }
        /* K above one cache block, N a multiple of the tiles and not */
        for (size_t d = 0; d < 4; d++) {
            check_linear(k_wdts[d], 1, 9, 96, 700, 1, MISER_ACT_NONE);
            check_linear(k_wdts[d], 1, 1, 77, 513, 1, MISER_ACT_GELU);
        }
        /* decode's K split (M = 1, K > MISER_KSPLIT_ROWS): whole chunks, a
         * short last chunk, more chunks than threads and column tails; the
         * 2- and 3-thread runs inside check_linear split the (chunk, column)
         * units unevenly */
        for (size_t d = 0; d < 4; d++) {
            check_linear(k_wdts[d], 1, 1, 200, 2 * MISER_KSPLIT_ROWS, 1, MISER_ACT_NONE);
            check_linear(k_wdts[d], 1, 1, 45, 4 * MISER_KSPLIT_ROWS + 7, 0, MISER_ACT_GELU);
        }
        /* the prefill GEMMs' blocking: more rows than one 132-row block (and
         * not a multiple of the 6- or 12-row tile), several 64- or 128-column
         * W blocks per thread plus a partial tile and a scalar or masked tail,
         * K = 2 blocks of 256 (4 of 128) + a remainder */
        for (size_t d = 0; d < 4; d++) {
            check_linear(k_wdts[d], 1, 137, 211, 517, 1, d & 1 ? MISER_ACT_GELU : MISER_ACT_NONE);
            check_linear(k_wdts[d], 1, 64, 160, 256, 0, MISER_ACT_NONE);
        }
    }
}

Test(kernels, linear_dots_layout_all_dtypes)
{
    FOR_EACH_SET {
        static const int64_t Ms[] = {1, 2, 3, 4, 5, 7};
        for (size_t d = 0; d < 4; d++)
            for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++) {
                int64_t N = irand(1, 70), K = irand(1, 300);
                if (k_wdts[d] == MISER_DTYPE_Q8_0) K = irand(1, 9) * 32; /* q8_0 blocks along k */
                check_linear(k_wdts[d], 0, Ms[i], N, K, (int)(i & 1), i % 3 == 1 ? MISER_ACT_GELU : MISER_ACT_NONE);
            }
        /* prefill shapes (the q8_0 int8 GEMM's blocking): more rows than one
         * 132-row block with 1-5 rows in the last tile, K over two 256-k
         * blocks, whole 32-column panels and a short last panel (1, 17 or 31
         * columns), split unevenly between 2 and 3 threads */
        static const int64_t Ns[] = {64 + 1, 96 + 17, 31};
        for (size_t d = 0; d < 4; d++)
            for (int i = 0; i < 3; i++)
                check_linear(k_wdts[d], 0, 133 + 2 * i, Ns[i], 32 * (9 + 4 * i), i != 1, i == 2 ? MISER_ACT_GELU : MISER_ACT_NONE);
        /* long decode rows of x (once the AVX-512 GEMV's 8192-value x buffer; now the int8 kernels' row chunking) */
        check_linear(MISER_DTYPE_Q8_0, 0, 1, 9, 8192 + 64, 1, MISER_ACT_NONE);
        check_linear(MISER_DTYPE_Q8_0, 0, 2, 5, 8192 + 32, 0, MISER_ACT_GELU);
    }
}

Test(kernels, linear_general_strides_fall_back)
{
    FOR_EACH_SET {
        /* neither stride is 1: the SIMD set must hand it to the reference */
        int64_t M = 3, N = 5, K = 7;
        float *w = make_f32(2 * K * N * 2, -1, 1), *x = make_f32(M * K, -1, 1), yr[15], ys[15];
        miser_linear_args a = {.M = M, .N = N, .K = K, .x = x, .ldx = K, .w = w, .wdt = MISER_DTYPE_F32, .wsk = 2 * N,
                               .wsn = 2, .y = yr, .ldy = N};
        miser_kernels_ref()->linear(&a, 0, 1);
        a.y = ys;
        simd()->linear(&a, 0, 1);
        for (int i = 0; i < 15; i++) cr_assert_float_eq(yr[i], ys[i], 1e-5f);
        free(w);
        free(x);
    }
}

static void check_attention(int f16, int64_t T, int64_t S, int64_t H, int64_t D)
{
    int64_t row = H * D;
    float *q = make_f32(T * row, -1, 1);
    float *kf = make_f32(S * row, -1, 1), *vf = make_f32(S * row, -2, 2);
    void *k = kf, *v = vf;
    if (f16) {
        uint16_t *kh = malloc(2 * (size_t)(S * row)), *vh = malloc(2 * (size_t)(S * row));
        for (int64_t i = 0; i < S * row; i++) {
            kh[i] = miser_f32_to_f16(kf[i]);
            vh[i] = miser_f32_to_f16(vf[i]);
        }
        k = kh;
        v = vh;
    }
    float *scratch = malloc(sizeof(float) * (size_t)(3 * S));
    float *or_ = calloc((size_t)(T * row), 4), *os = calloc((size_t)(T * row), 4), *ot = calloc((size_t)(T * row), 4);
    miser_attention_args a = {.T = T, .S = S, .H = H, .D = D, .q = q, .q_row = row, .k = k, .v = v,
                              .kvdt = f16 ? MISER_DTYPE_F16 : MISER_DTYPE_F32, .k_row = row, .v_row = row,
                              .out = or_, .o_row = row, .scale = 1.0f / sqrtf((float)D), .scratch = scratch};
    miser_kernels_ref()->attention(&a, 0, 1);
    a.out = os;
    simd()->attention(&a, 0, 1);
    for (int64_t i = 0; i < T * row; i++)
        if (!(fabsf(or_[i] - os[i]) <= 2e-5f * (1 + fabsf(or_[i]))))
            cr_assert_fail("attention f16=%d T=%lld S=%lld H=%lld D=%lld: out[%lld] ref %.9g simd %.9g", f16,
                           (long long)T, (long long)S, (long long)H, (long long)D, (long long)i, or_[i], os[i]);
    for (int nth = 2; nth <= 3; nth++) {
        a.out = ot;
        for (int i = 0; i < nth; i++) simd()->attention(&a, i, nth);
        cr_assert(!memcmp(ot, os, sizeof(float) * (size_t)(T * row)), "attention nth=%d differs", nth);
    }
    free(q);
    if (f16) {
        free(k);
        free(v);
    }
    free(kf);
    free(vf);
    free(scratch);
    free(or_);
    free(os);
    free(ot);
}

Test(kernels, attention_f32_and_f16_cache)
{
    FOR_EACH_SET {
        for (int f16 = 0; f16 < 2; f16++) {
            check_attention(f16, 1, 1, 1, 8);
            check_attention(f16, 1, 37, 3, 64);     /* decode over a cache */
            check_attention(f16, 5, 5, 2, 13);      /* prefill, odd head size */
            check_attention(f16, 4, 21, 3, 24);     /* chunked prefill after a past */
            check_attention(f16, 2, 9, 5, 7);
            /* head sizes the AVX-512 set keeps in registers (64: every GPT-2;
             * 128), key counts around its 4-key and 2-key steps */
            check_attention(f16, 9, 9, 2, 64);      /* prefill: 1..9 keys per row */
            check_attention(f16, 6, 19, 2, 128);    /* chunked prefill, D = 128 */
            check_attention(f16, 1, 130, 4, 64);    /* decode, many keys */
        }
    }
}

/* The causal split partitions the (t, h) items in order, and each thread's
 * cost (keys read, summed by brute force here) is within one item of an
 * even share -- an even split of items is not (3x at T = S = 128). */
Test(kernels, attention_split_balances_causal_cost)
{
    const int64_t cases[][3] = {{128, 16, 128}, {1, 16, 300}, {4, 3, 21}, {7, 1, 7}, {1, 1, 1}, {64, 12, 1024}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int64_t T = cases[c][0], H = cases[c][1], S = cases[c][2];
        int64_t total = 0;
        for (int64_t w = 0; w < T * H; w++) total += S - T + w / H + 1;
        for (int nth = 1; nth <= 5; nth++) {
            int64_t prev = 0;
            for (int ith = 0; ith < nth; ith++) {
                int64_t lo, hi, cost = 0;
                miser_causal_split(T, H, S, ith, nth, &lo, &hi);
                cr_assert_eq(lo, prev, "T=%lld H=%lld S=%lld nth=%d: thread %d starts at %lld, not %lld", (long long)T,
                             (long long)H, (long long)S, nth, ith, (long long)lo, (long long)prev);
                cr_assert_geq(hi, lo);
                for (int64_t w = lo; w < hi; w++) cost += S - T + w / H + 1;
                const double share = (double)total / nth;
                cr_assert_leq(fabs((double)cost - share), (double)S + 1.0,
                              "T=%lld H=%lld S=%lld nth=%d: thread %d costs %lld, an even share is %.1f", (long long)T,
                              (long long)H, (long long)S, nth, ith, (long long)cost, share);
                prev = hi;
            }
            cr_assert_eq(prev, T * H, "the threads' ranges end at %lld, not T*H = %lld", (long long)prev,
                         (long long)(T * H));
        }
    }
    /* the old even split of items at T = S = 128 on 2 threads: 3x apart */
    int64_t lo, hi, c0 = 0, c1 = 0;
    miser_split(128 * 16, 0, 2, &lo, &hi);
    for (int64_t w = lo; w < hi; w++) c0 += w / 16 + 1;
    for (int64_t w = hi; w < 128 * 16; w++) c1 += w / 16 + 1;
    cr_assert_gt(c1, 2 * c0);
}

Test(kernels, layernorm_gelu_add_softmax)
{
    FOR_EACH_SET {
        for (int it = 0; it < 12; it++) {
            int64_t rows = irand(1, 7), C = irand(1, 200);
            miser_dtype pdt = (miser_dtype)(it % 3);
            float *x = make_f32(rows * C, -3, 3);
            if (it % 4 == 0)
                for (int64_t i = 0; i < C; i++) x[i] += 100.0f; /* large mean: two-pass variance matters */
            void *g = make_weights(pdt, C), *b = make_weights(pdt, C);
            float *yr = malloc(4 * (size_t)(rows * C)), *ys = malloc(4 * (size_t)(rows * C)), *yt = malloc(4 * (size_t)(rows * C));
            miser_kernels_ref()->layernorm(yr, x, g, b, pdt, rows, C, 1e-5f, 0, 1);
            simd()->layernorm(ys, x, g, b, pdt, rows, C, 1e-5f, 0, 1);
            for (int64_t i = 0; i < rows * C; i++)
                cr_assert(fabsf(yr[i] - ys[i]) <= 2e-5f * (1 + fabsf(yr[i])), "layernorm C=%lld [%lld] %g vs %g",
                          (long long)C, (long long)i, yr[i], ys[i]);
            for (int nth = 2; nth <= 3; nth++) {
                for (int i = 0; i < nth; i++) simd()->layernorm(yt, x, g, b, pdt, rows, C, 1e-5f, i, nth);
                cr_assert(!memcmp(yt, ys, 4 * (size_t)(rows * C)));
            }
            free(x);
            free(g);
            free(b);
            free(yr);
            free(ys);
            free(yt);
        }
        /* GELU: relative 2e-6, plus the reference's own cancellation for x << 0 */
        for (int it = 0; it < 6; it++) {
            int64_t n = irand(1, 300);
            float *x = make_f32(n, -12, 12), *yr = malloc(4 * (size_t)n), *ys = malloc(4 * (size_t)n), *yt = malloc(4 * (size_t)n);
            x[0] = it == 0 ? -60.0f : it == 1 ? 60.0f : it == 2 ? 0.0f : x[0];
            miser_kernels_ref()->gelu(yr, x, n, 0, 1);
            simd()->gelu(ys, x, n, 0, 1);
            for (int64_t i = 0; i < n; i++)
                cr_assert(fabsf(yr[i] - ys[i]) <= 2e-6f * fabsf(yr[i]) + 1.2e-7f * fabsf(x[i]) + 1e-30f,
                          "gelu(%g): ref %.9g simd %.9g", x[i], yr[i], ys[i]);
            for (int nth = 2; nth <= 3; nth++) {
                for (int i = 0; i < nth; i++) simd()->gelu(yt, x, n, i, nth);
                cr_assert(!memcmp(yt, ys, 4 * (size_t)n));
            }
            float *b = make_f32(n, -5, 5);
            simd()->add(ys, x, b, n, 0, 1);
            for (int64_t i = 0; i < n; i++) cr_assert_eq(ys[i], x[i] + b[i]);
            for (int i = 0; i < 3; i++) simd()->add(yt, x, b, n, i, 3);
            cr_assert(!memcmp(yt, ys, 4 * (size_t)n));
            free(b);
            free(x);
            free(yr);
            free(ys);
            free(yt);
        }
        /* softmax with and without the causal valid pattern */
        for (int it = 0; it < 8; it++) {
            int64_t T = irand(1, 5), heads = irand(1, 3), rows = T * heads, n = irand(T, 70);
            int64_t valid0 = n - T + 1;
            float *x = make_f32(rows * n, -8, 8), *yr = malloc(4 * (size_t)(rows * n)), *ys = malloc(4 * (size_t)(rows * n)),
                  *yt = malloc(4 * (size_t)(rows * n));
            const int64_t *vb = it & 1 ? &valid0 : NULL;
            miser_kernels_ref()->softmax(yr, x, rows, n, 0.37f, vb, T, 0, 1);
            simd()->softmax(ys, x, rows, n, 0.37f, vb, T, 0, 1);
            for (int64_t i = 0; i < rows * n; i++)
                cr_assert(fabsf(yr[i] - ys[i]) <= 1e-6f * (1 + fabsf(yr[i])) && (yr[i] != 0) == (ys[i] != 0),
                          "softmax [%lld] %g vs %g", (long long)i, yr[i], ys[i]);
            for (int nth = 2; nth <= 3; nth++) {
                for (int i = 0; i < nth; i++) simd()->softmax(yt, x, rows, n, 0.37f, vb, T, i, nth);
                cr_assert(!memcmp(yt, ys, 4 * (size_t)(rows * n)));
            }
            free(x);
            free(yr);
            free(ys);
            free(yt);
        }
    }
}

/* ---- thread pool ---- */

typedef struct {
    _Atomic int hits[8];
    _Atomic long sum;
} pool_ctx;

static void pool_task(void *ctx, int ith, int nth)
{
    pool_ctx *c = ctx;
    atomic_fetch_add(&c->hits[ith], 1);
    atomic_fetch_add(&c->sum, nth);
}

Test(kernels, threadpool_runs_every_thread_once_per_call)
{
    for (int n = 1; n <= 4; n++) {
        miser_threadpool *p;
        cr_assert_eq(miser_threadpool_create(n, &p), MISER_OK);
        cr_assert_eq(miser_threadpool_size(p), n);
        pool_ctx c = {0};
        for (int r = 0; r < 2000; r++) miser_threadpool_run(p, pool_task, &c);
        for (int i = 0; i < n; i++) cr_assert_eq(atomic_load(&c.hits[i]), 2000, "n=%d thread %d", n, i);
        cr_assert_eq(atomic_load(&c.sum), 2000L * n * n);
        miser_threadpool_free(p);
    }
    miser_threadpool_free(NULL);
}
