/* Run-time kernel selection: the reference set is always present; SIMD sets
 * register here when the CPU supports them. MISER_KERNELS=ref forces the
 * reference path (as does miser_kernels_select("ref")). */
#include "kernels.h"

#include <stdlib.h>
#include <string.h>

/* SIMD sets are weak so a build without them still links. */
const miser_kernels *miser_kernels_avx2(void) __attribute__((weak));

static const miser_kernels *g_selected;

static const miser_kernels *best(void)
{
    if (miser_kernels_avx2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c")) {
        const miser_kernels *k = miser_kernels_avx2();
        if (k) return k;
    }
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
    else if (!strcmp(name, "avx2") && best() != miser_kernels_ref() && miser_kernels_avx2) g_selected = miser_kernels_avx2();
    else return -1;
    return 0;
}

const char *miser_kernels_available(void)
{
    return best() != miser_kernels_ref() ? "avx2 ref" : "ref";
}
