/* Element types: names, sizes and scalar conversions (the reference path;
 * SIMD conversions live in the kernels module). */
#include "miser/core.h"

#include "kernels/quant4.h"

#include <math.h>
#include <string.h>
#include <strings.h>

static const char *const g_names[MISER_DTYPE_COUNT] = {"f32", "f16", "bf16", "q8_0", "i32", "q4_0", "q4_k", "q6_k"};

const char *miser_dtype_name(miser_dtype dt)
{
    return (unsigned)dt < MISER_DTYPE_COUNT ? g_names[dt] : "?";
}

int miser_dtype_parse(const char *s, miser_dtype *out)
{
    static const struct { const char *n; miser_dtype d; } tab[] = {
        {"f32", MISER_DTYPE_F32}, {"float32", MISER_DTYPE_F32}, {"fp32", MISER_DTYPE_F32},
        {"f16", MISER_DTYPE_F16}, {"float16", MISER_DTYPE_F16}, {"fp16", MISER_DTYPE_F16},
        {"bf16", MISER_DTYPE_BF16}, {"bfloat16", MISER_DTYPE_BF16},
        {"q8_0", MISER_DTYPE_Q8_0}, {"i32", MISER_DTYPE_I32}, {"int32", MISER_DTYPE_I32},
        {"q4_0", MISER_DTYPE_Q4_0}, {"q4_k", MISER_DTYPE_Q4_K}, {"q6_k", MISER_DTYPE_Q6_K},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcasecmp(s, tab[i].n) == 0) { *out = tab[i].d; return 0; }
    return -1;
}

size_t miser_dtype_bytes(miser_dtype dt, uint64_t n)
{
    uint64_t per;
    switch (dt) {
    case MISER_DTYPE_F32: case MISER_DTYPE_I32: per = 4; break;
    case MISER_DTYPE_F16: case MISER_DTYPE_BF16: per = 2; break;
    case MISER_DTYPE_Q8_0: case MISER_DTYPE_Q4_0: case MISER_DTYPE_Q4_K: case MISER_DTYPE_Q6_K:
        if (n % (uint64_t)miser_dtype_block(dt)) return 0;
        n /= (uint64_t)miser_dtype_block(dt); per = miser_dtype_block_bytes(dt); break;
    default: return 0;
    }
    if (n > SIZE_MAX / per) return 0;
    return (size_t)(n * per);
}

int64_t miser_dtype_block(miser_dtype dt)
{
    switch (dt) {
    case MISER_DTYPE_Q8_0: case MISER_DTYPE_Q4_0: return 32;
    case MISER_DTYPE_Q4_K: case MISER_DTYPE_Q6_K: return 256;
    default: return 1;
    }
}

size_t miser_dtype_block_bytes(miser_dtype dt)
{
    switch (dt) {
    case MISER_DTYPE_F32: case MISER_DTYPE_I32: return 4;
    case MISER_DTYPE_F16: case MISER_DTYPE_BF16: return 2;
    case MISER_DTYPE_Q8_0: return MISER_Q8_0_BYTES;
    case MISER_DTYPE_Q4_0: return MISER_Q4_0_BYTES;
    case MISER_DTYPE_Q4_K: return MISER_Q4_K_BYTES;
    case MISER_DTYPE_Q6_K: return MISER_Q6_K_BYTES;
    default: return 0;
    }
}

float miser_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | (uint32_t)(112 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | man << 13;
    else bits = sign | (exp + 112) << 23 | man << 13;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t miser_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffff;
    if (ax >= 0x7f800000) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
    if (ax >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (ax < 0x38800000) { /* subnormal or zero in f16 */
        if (ax < 0x33000000) return (uint16_t)sign; /* < half the smallest subnormal */
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((ax - 0x38000000) >> 13);
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

float miser_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t miser_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

void miser_to_f32(miser_dtype dt, const void *src, uint64_t start, uint64_t n, float *dst)
{
    switch (dt) {
    case MISER_DTYPE_F32: memcpy(dst, (const float *)src + start, n * 4); break;
    case MISER_DTYPE_F16: {
        const uint16_t *s = (const uint16_t *)src + start;
        for (uint64_t i = 0; i < n; i++) dst[i] = miser_f16_to_f32(s[i]);
        break;
    }
    case MISER_DTYPE_BF16: {
        const uint16_t *s = (const uint16_t *)src + start;
        for (uint64_t i = 0; i < n; i++) dst[i] = miser_bf16_to_f32(s[i]);
        break;
    }
    case MISER_DTYPE_Q8_0: {
        const uint8_t *b = (const uint8_t *)src + (start / MISER_Q8_0_BLOCK) * MISER_Q8_0_BYTES;
        for (uint64_t i = 0; i < n; i += MISER_Q8_0_BLOCK, b += MISER_Q8_0_BYTES) {
            uint16_t h;
            memcpy(&h, b, 2);
            float d = miser_f16_to_f32(h);
            const int8_t *q = (const int8_t *)(b + 2);
            for (int j = 0; j < MISER_Q8_0_BLOCK; j++) dst[i + j] = d * q[j];
        }
        break;
    }
    case MISER_DTYPE_Q4_0: case MISER_DTYPE_Q4_K: case MISER_DTYPE_Q6_K: { /* start, n: whole blocks */
        const int64_t bl = miser_dtype_block(dt);
        const uint8_t *b = (const uint8_t *)src + (start / (uint64_t)bl) * miser_dtype_block_bytes(dt);
        for (uint64_t i = 0; i < n; i += (uint64_t)bl, b += miser_dtype_block_bytes(dt)) miser_q4_dequant_block(dt, b, dst + i);
        break;
    }
    case MISER_DTYPE_I32: {
        const int32_t *s = (const int32_t *)src + start;
        for (uint64_t i = 0; i < n; i++) dst[i] = (float)s[i];
        break;
    }
    default: break;
    }
}
