/* Integer-dot linear for q8_0 and q4_0 weights in the dot layout (W rows
 * along K, 32-value blocks: the q8_0 cache and GGUF files) on x quantised
 * per 32-block to int8 (kernels.h q8_dots_int8_min_m, quant4.h
 * miser_q8a_quantize_row), for CPUs with AVX2, with AVX-VNNI or with
 * AVX512-VNNI (+VL). Before this, the AVX2 set widened every q8_0 weight to
 * f32 (16 instructions per block) and only the AVX-512 VNNI set multiplied
 * in int8.
 *
 * One block's products: |w| (unsigned) times x * sign(w) (signed), summed in
 * groups of 4 bytes into 8 int32 lanes: vpmaddubsw + vpmaddwd on AVX2,
 * vpdpbusd where the CPU has VNNI (a direct replacement: the same lanes).
 * vpmaddubsw saturates pairs at int16, which never happens here: |w| <= 128
 * (a q8_0 byte of -128 included) and |x * sign(w)| <= 127 (x is rounded from
 * x / (max|x| / 127)), so a pair is at most 2 * 128 * 127 = 32512 < 32767;
 * vpdpbusd adds the 4 products in 32 bits and cannot overflow either.
 * Then lane l of output (m, n) accumulates fma(float(lane), dw * dx, acc_l)
 * over the blocks in order and the 8 lanes are summed in one fixed tree
 * (quant4.h "32-value blocks"), so y does not depend on M, on the tile a row
 * lands in, on the thread count or on the instruction set; it equals
 * miser_q32_dot_ref's bit for bit.
 *
 * x is quantised once per call per thread (each thread quantises every row:
 * it is K/32 small blocks per row against N/nth weight rows of work), in
 * chunks of rows that fit a 256 KB per-thread buffer. Tiles: 4 rows of x by
 * 2 weight rows (decode, M = 1: 1 x 4), weight rows outermost.
 * Compiled with -mavx2 -mfma -mf16c (Makefile: *_avx2.c); the VNNI copies
 * carry their own target attributes and run only after the CPUID check
 * below. */
#include "kernels/quant4.h"

#ifdef MISER_EMULATE_X86 /* the test-only emulated build (emu_x86.h, make test-emu-avx512) */
#include "emu_x86.h"
#else
#include <immintrin.h>
#endif
#include <math.h>
#include <string.h>

#include "avx2_shared.h"

/* ---- the three copies of the tiles ---- */
#define QD_NAME(x) x##_avx2
#define QD_TARGET
#define QD_VNNI 0
#define QD_DOT(aw, sx) _mm256_madd_epi16(_mm256_maddubs_epi16((aw), (sx)), _mm256_set1_epi16(1))
#define QD_DOTACC(acc, aw, sx) _mm256_add_epi32((acc), QD_DOT(aw, sx))
#include "qdot_tile.h"
#undef QD_NAME
#undef QD_TARGET
#undef QD_VNNI
#undef QD_DOT
#undef QD_DOTACC

#define QD_NAME(x) x##_avxvnni
#ifdef MISER_EMULATE_X86
#define QD_TARGET /* emulated: no extra ISA */
#else
#define QD_TARGET __attribute__((target("avxvnni")))
#endif
#define QD_VNNI 1
#define QD_DOT(aw, sx) _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), (aw), (sx))
#define QD_DOTACC(acc, aw, sx) _mm256_dpbusd_avx_epi32((acc), (aw), (sx))
#include "qdot_tile.h"
#undef QD_NAME
#undef QD_TARGET
#undef QD_VNNI
#undef QD_DOT
#undef QD_DOTACC

#define QD_NAME(x) x##_avx512vnni
#ifdef MISER_EMULATE_X86
#define QD_TARGET
#else
#define QD_TARGET __attribute__((target("avx512vnni,avx512vl")))
#endif
#define QD_VNNI 1
#define QD_DOT(aw, sx) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (aw), (sx))
#define QD_DOTACC(acc, aw, sx) _mm256_dpbusd_epi32((acc), (aw), (sx))
#include "qdot_tile.h"
#undef QD_NAME
#undef QD_TARGET
#undef QD_VNNI
#undef QD_DOT
#undef QD_DOTACC

/* ---- which copy ---- */

#include <cpuid.h>

static int g_isa = -1; /* 0 AVX2, 1 AVX-VNNI, 2 AVX512-VNNI; -1 not probed yet (relaxed atomics) */
static int g_forced = -1;

/* AVX-VNNI is CPUID.(EAX=7,ECX=1):EAX bit 4 (GCC 12's __builtin_cpu_supports
 * has no name for it); AVX512-VNNI also needs the OS to save the zmm state
 * (the EVEX encoding), which the avx512 set's check covers, so it is only
 * used when that set is offered too. */
static int probe(void)
{
#ifdef MISER_EMULATE_X86
    return 1; /* emulated (emu_x86.h): both VNNI forms, AVX-VNNI first as below */
#endif
    unsigned a, b, c, d;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4))) return 1;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
        miser_kernels_by_name("avx512"))
        return 2;
    return 0;
}

int miser_qdot_isa(void)
{
    const int f = __atomic_load_n(&g_forced, __ATOMIC_RELAXED);
    if (f >= 0) return f;
    int isa = __atomic_load_n(&g_isa, __ATOMIC_RELAXED);
    if (isa < 0) __atomic_store_n(&g_isa, isa = probe(), __ATOMIC_RELAXED); /* a race stores the same value */
    return isa;
}

const char *miser_qdot_isa_name(int isa) { return isa == 1 ? "avxvnni" : isa == 2 ? "avx512vnni" : "avx2"; }

int miser_qdot_force(int isa)
{
    __atomic_store_n(&g_forced, -1, __ATOMIC_RELAXED);
    if (isa < 0) return 0;
#ifdef MISER_EMULATE_X86
    if (isa > 2) return -1; /* emulated (emu_x86.h): every copy runs */
#else
    if (isa != 0 && isa != miser_qdot_isa()) return -1;
#endif
    __atomic_store_n(&g_forced, isa, __ATOMIC_RELAXED);
    return 0;
}

/* ---- x ---- */

void miser_q8a_quantize_row_avx2(const float *x, int64_t K, miser_q8a *out)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < K / 32; b++, x += 32) {
        __m256 v[4], mx = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            mx = _mm256_max_ps(_mm256_and_ps(v[i], absmask), mx);
        }
        const float d = miser_hmax8_ps(mx) / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int i = 0; i < 4; i++) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], vid)); /* nearest even */
        const __m256i qv = miser_pack32_epi8(q);
        _mm256_storeu_si256((__m256i *)out[b].q, qv);
        const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), qv);
        const __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
        out[b].d = d;
        out[b].sum = _mm_cvtsi128_si32(s);
    }
}

/* ---- the linear ---- */

void miser_qdot_cols(const miser_linear_args *a, int64_t n0, int64_t n1)
{
    if (n0 >= n1) return;
    const miser_dtype dt = a->wdt;
    size_t room;
    miser_q8a *xq = miser_qdot_scratch(&room);
    const int64_t nb = a->K / 32, per = (int64_t)(room / sizeof *xq);
    if (!xq || nb > per) { /* a row of x over 200k values: the scalar definition, the same y */
        miser_q32_cols_ref(a, n0, n1);
        return;
    }
    const int isa = miser_qdot_isa();
    const int64_t chunk = per / (nb > 0 ? nb : 1);
    for (int64_t m0 = 0; m0 < a->M; m0 += chunk) {
        const int64_t mc = a->M - m0 < chunk ? a->M - m0 : chunk;
        for (int64_t m = 0; m < mc; m++) miser_q8a_quantize_row_avx2(a->x + (m0 + m) * a->ldx, a->K, xq + m * nb);
        if (isa == 1) cols_avxvnni(dt, xq, mc, nb, a, m0, n0, n1);
        else if (isa == 2) cols_avx512vnni(dt, xq, mc, nb, a, m0, n0, n1);
        else cols_avx2(dt, xq, mc, nb, a, m0, n0, n1);
    }
}
