/* Run-time kernel selection: the reference set is always present; SIMD sets
 * are offered when the CPU (and the OS, for the wider register state)
 * supports them, best first: avx512, avx2, ref. MISER_KERNELS=NAME or
 * miser_kernels_select(NAME) forces a set ("ref" forces the scalar
 * reference path). */
#include "kernels.h"

#include <stdlib.h>
#include <string.h>

/* The SIMD sets live in kernels_avx2.c / kernels_avx512.c (compiled with
 * their SIMD flags). They are referenced directly, not weakly: a weak
 * reference would not pull their objects out of the static library. They are
 * only called after the CPU checks below, so the binary still runs on CPUs
 * without them. */
#if defined(__x86_64__) || defined(__i386__)
#define MISER_HAVE_X86_SETS 1
const miser_kernels *miser_kernels_avx2(void);
const miser_kernels *miser_kernels_avx512(void);
#include <cpuid.h>
#else
#define MISER_HAVE_X86_SETS 0
#endif

static const miser_kernels *g_selected;

#if MISER_HAVE_X86_SETS
/* F16C is CPUID.1:ECX bit 29; clang's __builtin_cpu_supports has no "f16c". */
static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}

/* The OS saves the opmask and all 32 zmm registers: XCR0 bits 1, 2, 5, 6, 7
 * (OSXSAVE, CPUID.1:ECX bit 27, must be set to read XCR0 at all). */
static int os_saves_zmm(void)
{
    unsigned a, b, c, d, lo, hi;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xe6u) == 0xe6u;
}

static int have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
}

static int have_avx512(void)
{
#ifdef MISER_EMULATE_X86 /* the test-only emulated build: SIMDe runs the set (kernels/emu_x86.h) */
    return have_avx2();
#endif
    return have_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && os_saves_zmm();
}
#endif

const miser_kernels *miser_kernels_by_name(const char *name)
{
    if (!strcmp(name, "ref")) return miser_kernels_ref();
#if MISER_HAVE_X86_SETS
    if (!strcmp(name, "avx2") && have_avx2()) return miser_kernels_avx2();
    if (!strcmp(name, "avx512") && have_avx512()) return miser_kernels_avx512();
#endif
    return NULL;
}

static const miser_kernels *best(void)
{
    const char *order[] = {"avx512", "avx2"};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        const miser_kernels *k = miser_kernels_by_name(order[i]);
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
    const miser_kernels *k = !strcmp(name, "auto") ? best() : miser_kernels_by_name(name);
    if (!k) return -1;
    g_selected = k;
    return 0;
}

const char *miser_kernels_available(void)
{
    if (miser_kernels_by_name("avx512")) return "avx512 avx2 ref";
    if (miser_kernels_by_name("avx2")) return "avx2 ref";
    return "ref";
}
