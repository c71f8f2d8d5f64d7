/* Run-time kernel selection: the reference set is always present; SIMD sets
 * register here when the CPU supports them. MISER_KERNELS=ref forces the
 * reference path (as does miser_kernels_select("ref")). */
#include "kernels.h"

#include <stdlib.h>
#include <string.h>

/* The AVX2 set lives in kernels_avx2.c (compiled with SIMD flags). It is
 * referenced directly, not weakly: a weak reference would not pull its
 * object out of the static library. It is only called after the CPU checks
 * below, so the binary still runs on CPUs without AVX2. */
#if defined(__x86_64__) || defined(__i386__)
#define MISER_HAVE_AVX2_SET 1
const miser_kernels *miser_kernels_avx2(void);
#else
#define MISER_HAVE_AVX2_SET 0
#endif

static const miser_kernels *g_selected;

#if MISER_HAVE_AVX2_SET
#include <cpuid.h>
/* F16C is CPUID.1:ECX bit 29; clang's __builtin_cpu_supports has no "f16c". */
static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#endif

static const miser_kernels *best(void)
{
#if MISER_HAVE_AVX2_SET
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c())
        return miser_kernels_avx2();
#endif
    return miser_kernels_ref();
}

const miser_kernels *miser_kernels_get(void)
{
    if (!g_selected) {
        const char *env = getenv("MISER_KERNELS");
        if (!env || miser_kernels_select(env) != 0) g_selected = best();
    }
    return g_selected;
}

int miser_kernels_select(const char *name)
{
    if (!strcmp(name, "auto")) g_selected = best();
    else if (!strcmp(name, "ref")) g_selected = miser_kernels_ref();
    else if (!strcmp(name, "avx2") && best() != miser_kernels_ref()) g_selected = best();
    else return -1;
    return 0;
}

const char *miser_kernels_available(void)
{
    return best() != miser_kernels_ref() ? "avx2 ref" : "ref";
}
