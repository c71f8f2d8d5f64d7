/* Test-only stand-in for <immintrin.h> in the emulated build (make
 * test-emu-avx512, docs/kernels.md "Checking the AVX-512 / VNNI paths
 * without the hardware"): the AVX-512 and VNNI kernel files include this
 * instead when MISER_EMULATE_X86 is defined, so their code runs on a CPU with
 * AVX2 only. The instructions the CPU has (AVX2, FMA, F16C: the files are
 * still compiled with -mavx2 -mfma -mf16c) stay native; every AVX-512 /
 * VNNI intrinsic becomes SIMDe's portable implementation (Debian
 * libsimde-dev, header-only) through SIMDE_ENABLE_NATIVE_ALIASES, and the few
 * that SIMDe 0.7.4 lacks are written out below, lane by lane from Intel's
 * definition of the instruction. An intrinsic that neither covers is a
 * compile error (GCC's own AVX-512 inline cannot be inlined without
 * -mavx512f), never a silent native instruction.
 * Never part of the shipped library: the normal build never defines
 * MISER_EMULATE_X86. Internal to src/kernels. */
#ifndef MISER_KERNELS_EMU_X86_H
#define MISER_KERNELS_EMU_X86_H

#if defined(__AVX512F__) || defined(__AVX512VNNI__) || defined(__AVXVNNI__)
#error "MISER_EMULATE_X86: compile without -mavx512* / -mavxvnni, or nothing is emulated"
#endif

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx2.h>
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#include <simde/x86/fma.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#define MISER_EMU static inline __attribute__((always_inline, unused))

/* vcvtdq2ps: int32 to f32, rounded as MXCSR says (nearest even: a C cast) */
MISER_EMU __m512 miser_emu_mm512_cvtepi32_ps(__m512i a)
{
    int32_t s[16];
    float d[16];
    memcpy(s, &a, 64);
    for (int i = 0; i < 16; i++) d[i] = (float)s[i];
    __m512 r;
    memcpy(&r, d, 64);
    return r;
}
#undef _mm512_cvtepi32_ps
#define _mm512_cvtepi32_ps(a) miser_emu_mm512_cvtepi32_ps(a)

/* vcvtps2dq: f32 to int32 rounded as MXCSR says (nearest even: nearbyintf
 * in the default mode); NaN and out of range give 0x80000000 */
MISER_EMU __m512i miser_emu_mm512_cvtps_epi32(__m512 a)
{
    float s[16];
    int32_t d[16];
    memcpy(s, &a, 64);
    for (int i = 0; i < 16; i++) {
        const float t = nearbyintf(s[i]);
        d[i] = t >= -2147483648.0f && t < 2147483648.0f ? (int32_t)t : INT32_MIN;
    }
    __m512i r;
    memcpy(&r, d, 64);
    return r;
}
#undef _mm512_cvtps_epi32
#define _mm512_cvtps_epi32(a) miser_emu_mm512_cvtps_epi32(a)

/* vpmovsxbd: 16 int8 sign-extended to int32 */
MISER_EMU __m512i miser_emu_mm512_cvtepi8_epi32(__m128i a)
{
    int8_t s[16];
    int32_t d[16];
    memcpy(s, &a, 16);
    for (int i = 0; i < 16; i++) d[i] = s[i];
    __m512i r;
    memcpy(&r, d, 64);
    return r;
}
#undef _mm512_cvtepi8_epi32
#define _mm512_cvtepi8_epi32(a) miser_emu_mm512_cvtepi8_epi32(a)

/* vpmovzxwd: 16 uint16 zero-extended to int32 */
MISER_EMU __m512i miser_emu_mm512_cvtepu16_epi32(__m256i a)
{
    uint16_t s[16];
    uint32_t d[16];
    memcpy(s, &a, 32);
    for (int i = 0; i < 16; i++) d[i] = s[i];
    __m512i r;
    memcpy(&r, d, 64);
    return r;
}
#undef _mm512_cvtepu16_epi32
#define _mm512_cvtepu16_epi32(a) miser_emu_mm512_cvtepu16_epi32(a)

/* vpmovdb: the low byte of each int32 (truncation, no saturation) */
MISER_EMU __m128i miser_emu_mm512_cvtepi32_epi8(__m512i a)
{
    uint32_t s[16];
    uint8_t d[16];
    memcpy(s, &a, 64);
    for (int i = 0; i < 16; i++) d[i] = (uint8_t)(s[i] & 0xffu);
    __m128i r;
    memcpy(&r, d, 16);
    return r;
}
#undef _mm512_cvtepi32_epi8
#define _mm512_cvtepi32_epi8(a) miser_emu_mm512_cvtepi32_epi8(a)

/* vcvtph2ps zmm: 16 halves to f32, through the CPU's own F16C (exact) */
MISER_EMU __m512 miser_emu_mm512_cvtph_ps(__m256i a)
{
    uint16_t s[16];
    float d[16];
    memcpy(s, &a, 32);
    for (int i = 0; i < 16; i++) d[i] = _cvtsh_ss(s[i]);
    __m512 r;
    memcpy(&r, d, 64);
    return r;
}
#undef _mm512_cvtph_ps
#define _mm512_cvtph_ps(a) miser_emu_mm512_cvtph_ps(a)

/* masked loads: lanes off in k read nothing (so no fault, no ASan report
 * past the end) and are 0 */
MISER_EMU __m512 miser_emu_mm512_maskz_loadu_ps(__mmask16 k, const void *p)
{
    float d[16];
    for (int i = 0; i < 16; i++) {
        d[i] = 0.0f;
        if (k >> i & 1) memcpy(&d[i], (const char *)p + 4 * i, 4);
    }
    __m512 r;
    memcpy(&r, d, 64);
    return r;
}
#undef _mm512_maskz_loadu_ps
#define _mm512_maskz_loadu_ps(k, p) miser_emu_mm512_maskz_loadu_ps((k), (p))

MISER_EMU __m256i miser_emu_mm256_maskz_loadu_epi16(__mmask16 k, const void *p)
{
    uint16_t d[16];
    for (int i = 0; i < 16; i++) {
        d[i] = 0;
        if (k >> i & 1) memcpy(&d[i], (const char *)p + 2 * i, 2);
    }
    __m256i r;
    memcpy(&r, d, 32);
    return r;
}
#undef _mm256_maskz_loadu_epi16
#define _mm256_maskz_loadu_epi16(k, p) miser_emu_mm256_maskz_loadu_epi16((k), (p))

MISER_EMU __m128i miser_emu_mm_maskz_loadu_epi8(__mmask16 k, const void *p)
{
    uint8_t d[16];
    for (int i = 0; i < 16; i++) d[i] = k >> i & 1 ? ((const uint8_t *)p)[i] : 0;
    __m128i r;
    memcpy(&r, d, 16);
    return r;
}
#undef _mm_maskz_loadu_epi8
#define _mm_maskz_loadu_epi8(k, p) miser_emu_mm_maskz_loadu_epi8((k), (p))

/* masked store: lanes off in k write nothing */
MISER_EMU void miser_emu_mm512_mask_storeu_ps(void *p, __mmask16 k, __m512 a)
{
    float s[16];
    memcpy(s, &a, 64);
    for (int i = 0; i < 16; i++)
        if (k >> i & 1) memcpy((char *)p + 4 * i, &s[i], 4);
}
#undef _mm512_mask_storeu_ps
#define _mm512_mask_storeu_ps(p, k, a) miser_emu_mm512_mask_storeu_ps((p), (k), (a))

/* vpermilps zmm, imm: in each 128-bit lane, element j = lane[imm >> 2j & 3] */
MISER_EMU __m512 miser_emu_mm512_permute_ps(__m512 a, int imm)
{
    float s[16], d[16];
    memcpy(s, &a, 64);
    for (int l = 0; l < 4; l++)
        for (int j = 0; j < 4; j++) d[4 * l + j] = s[4 * l + (imm >> (2 * j) & 3)];
    __m512 r;
    memcpy(&r, d, 64);
    return r;
}
#undef _mm512_permute_ps
#define _mm512_permute_ps(a, imm) miser_emu_mm512_permute_ps((a), (imm))

/* vshuff32x4: 128-bit lanes 0, 1 from a, 2, 3 from b, each chosen by 2 bits of imm */
MISER_EMU __m512 miser_emu_mm512_shuffle_f32x4(__m512 a, __m512 b, int imm)
{
    float sa[16], sb[16], d[16];
    memcpy(sa, &a, 64);
    memcpy(sb, &b, 64);
    for (int l = 0; l < 4; l++) memcpy(d + 4 * l, (l < 2 ? sa : sb) + 4 * (imm >> (2 * l) & 3), 16);
    __m512 r;
    memcpy(&r, d, 64);
    return r;
}
#undef _mm512_shuffle_f32x4
#define _mm512_shuffle_f32x4(a, b, imm) miser_emu_mm512_shuffle_f32x4((a), (b), (imm))

/* _mm512_reduce_add_ps / _max_ps are sequences, not instructions: the same
 * order as GCC 12's avx512fintrin.h (what the shipped build runs), so the
 * emulated sums are those bits: halves, then 128-bit halves, then
 * {0+2, 1+3}, then the two. max is x86's (a > b ? a : b). */
MISER_EMU float miser_emu_mm512_reduce_add_ps(__m512 a)
{
    float s[16], t3[8], t6[4];
    memcpy(s, &a, 64);
    for (int i = 0; i < 8; i++) t3[i] = s[8 + i] + s[i];
    for (int i = 0; i < 4; i++) t6[i] = t3[4 + i] + t3[i];
    const float t80 = t6[0] + t6[2], t81 = t6[1] + t6[3];
    return t80 + t81;
}
#undef _mm512_reduce_add_ps
#define _mm512_reduce_add_ps(a) miser_emu_mm512_reduce_add_ps(a)

MISER_EMU float miser_emu_max(float a, float b) { return a > b ? a : b; }
MISER_EMU float miser_emu_mm512_reduce_max_ps(__m512 a)
{
    float s[16], t3[8], t6[4];
    memcpy(s, &a, 64);
    for (int i = 0; i < 8; i++) t3[i] = miser_emu_max(s[8 + i], s[i]);
    for (int i = 0; i < 4; i++) t6[i] = miser_emu_max(t3[4 + i], t3[i]);
    const float t80 = miser_emu_max(t6[0], t6[2]), t81 = miser_emu_max(t6[1], t6[3]);
    return miser_emu_max(t80, t81);
}
#undef _mm512_reduce_max_ps
#define _mm512_reduce_max_ps(a) miser_emu_mm512_reduce_max_ps(a)

/* AVX-VNNI vpdpbusd ymm (VEX): lane l = acc_l + the 4 products of unsigned
 * bytes a[4l..4l+3] by signed bytes b[4l..4l+3], wrapping (no saturation) */
MISER_EMU __m256i miser_emu_mm256_dpbusd_avx_epi32(__m256i acc, __m256i a, __m256i b)
{
    uint8_t ua[32];
    int8_t sb[32];
    uint32_t d[8];
    memcpy(ua, &a, 32);
    memcpy(sb, &b, 32);
    memcpy(d, &acc, 32);
    for (int l = 0; l < 8; l++) {
        int32_t s = 0; /* |4 products| <= 4 * 255 * 128: no overflow */
        for (int j = 0; j < 4; j++) s += (int32_t)ua[4 * l + j] * (int32_t)sb[4 * l + j];
        d[l] += (uint32_t)s;
    }
    __m256i r;
    memcpy(&r, d, 32);
    return r;
}
#undef _mm256_dpbusd_avx_epi32
#define _mm256_dpbusd_avx_epi32(acc, a, b) miser_emu_mm256_dpbusd_avx_epi32((acc), (a), (b))

#endif
