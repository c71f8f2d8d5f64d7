/* The accounting allocator: a 32-byte header before each block records the
 * requested size, the category and the distance back to the real malloc
 * block, so one miser_free serves plain and over-aligned allocations. */
#include "miser/alloc.h"
#include "miser/core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define HDR 32u
#define MAGIC 0x6d697365u

typedef struct {
    uint64_t size;
    uint32_t magic;
    uint32_t cat;
    uint64_t back; /* bytes from block start to user pointer */
    uint64_t pad;
} hdr_t;

static _Atomic uint64_t g_cur[MISER_MEM_COUNT], g_peak[MISER_MEM_COUNT], g_n[MISER_MEM_COUNT];
static _Atomic int64_t g_mapped[MISER_MEM_COUNT];
static _Atomic uint64_t g_total_cur, g_total_peak;
static _Atomic uint64_t g_calls, g_fail_at; /* fault injection */

static const char *const g_cat_names[MISER_MEM_COUNT] = {
    "weights", "constants", "activations", "kv", "scratch", "compile", "tokenizer", "profiler", "other"};

const char *miser_mem_category_name(miser_mem_category cat)
{
    return (unsigned)cat < MISER_MEM_COUNT ? g_cat_names[cat] : "?";
}

static void bump_peak(_Atomic uint64_t *peak, uint64_t v)
{
    uint64_t p = atomic_load_explicit(peak, memory_order_relaxed);
    while (v > p && !atomic_compare_exchange_weak_explicit(peak, &p, v, memory_order_relaxed,
                                                           memory_order_relaxed)) {}
}

static void account(unsigned cat, int64_t delta)
{
    uint64_t c = atomic_fetch_add_explicit(&g_cur[cat], (uint64_t)delta, memory_order_relaxed) + (uint64_t)delta;
    uint64_t t = atomic_fetch_add_explicit(&g_total_cur, (uint64_t)delta, memory_order_relaxed) + (uint64_t)delta;
    if (delta > 0) {
        bump_peak(&g_peak[cat], c);
        bump_peak(&g_total_peak, t);
        atomic_fetch_add_explicit(&g_n[cat], 1, memory_order_relaxed);
    }
}

static int injected_failure(void)
{
    uint64_t n = atomic_fetch_add_explicit(&g_calls, 1, memory_order_relaxed) + 1;
    uint64_t at = atomic_load_explicit(&g_fail_at, memory_order_relaxed);
    return at && n >= at;
}

uint64_t miser_mem_fail_after(uint64_t n)
{
    uint64_t made = atomic_exchange(&g_calls, 0);
    atomic_store(&g_fail_at, n);
    return made;
}

static void *alloc_impl(miser_mem_category cat, size_t align, size_t size, int zero)
{
    if ((unsigned)cat >= MISER_MEM_COUNT) cat = MISER_MEM_OTHER;
    if (injected_failure() || size > SIZE_MAX - HDR - align) {
        miser_error_set(MISER_ERR_NOMEM, "out of memory allocating %zu bytes (%s)", size,
                        miser_mem_category_name(cat));
        return NULL;
    }
    size_t extra = align > 16 ? align : 0;
    unsigned char *base = zero ? calloc(1, HDR + extra + size) : malloc(HDR + extra + size);
    if (!base) {
        miser_error_set(MISER_ERR_NOMEM, "out of memory allocating %zu bytes (%s)", size,
                        miser_mem_category_name(cat));
        return NULL;
    }
    uintptr_t user = (uintptr_t)base + HDR;
    if (extra) user = (user + align - 1) & ~(uintptr_t)(align - 1);
    hdr_t *h = (hdr_t *)(user - HDR);
    h->size = size;
    h->magic = MAGIC;
    h->cat = (uint32_t)cat;
    h->back = user - (uintptr_t)base;
    account((unsigned)cat, (int64_t)size);
    return (void *)user;
}

void *miser_malloc(miser_mem_category cat, size_t size) { return alloc_impl(cat, 16, size, 0); }

void *miser_calloc(miser_mem_category cat, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) {
        miser_error_set(MISER_ERR_NOMEM, "allocation size overflow (%zu x %zu)", n, size);
        return NULL;
    }
    return alloc_impl(cat, 16, n * size, 1);
}

void *miser_aligned_alloc(miser_mem_category cat, size_t align, size_t size)
{
    if (align < 16 || (align & (align - 1))) align = 16;
    return alloc_impl(cat, align, size, 0);
}

static hdr_t *header(const void *p) { return (hdr_t *)((uintptr_t)p - HDR); }

size_t miser_alloc_size(const void *p) { return p ? (size_t)header(p)->size : 0; }

void miser_free(void *p)
{
    if (!p) return;
    hdr_t *h = header(p);
    if (h->magic != MAGIC) abort(); /* heap corruption or foreign pointer: a bug, not bad input */
    h->magic = 0;
    account(h->cat, -(int64_t)h->size);
    free((unsigned char *)p - h->back);
}

void *miser_realloc(miser_mem_category cat, void *p, size_t size)
{
    if (!p) return miser_malloc(cat, size);
    hdr_t *h = header(p);
    void *q = alloc_impl((miser_mem_category)h->cat, 16, size, 0);
    if (!q) return NULL;
    memcpy(q, p, h->size < size ? h->size : size);
    miser_free(p);
    return q;
}

char *miser_strndup(miser_mem_category cat, const char *s, size_t n)
{
    char *d = miser_malloc(cat, n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *miser_strdup(miser_mem_category cat, const char *s) { return miser_strndup(cat, s, strlen(s)); }

void miser_mem_note_mapped(miser_mem_category cat, int64_t delta)
{
    if ((unsigned)cat < MISER_MEM_COUNT) atomic_fetch_add(&g_mapped[cat], delta);
}

miser_mem_stats miser_mem_get(miser_mem_category cat)
{
    miser_mem_stats s = {0};
    if ((unsigned)cat >= MISER_MEM_COUNT) return s;
    s.current = atomic_load(&g_cur[cat]);
    s.peak = atomic_load(&g_peak[cat]);
    s.allocs = atomic_load(&g_n[cat]);
    s.mapped = (uint64_t)atomic_load(&g_mapped[cat]);
    return s;
}

miser_mem_stats miser_mem_total(void)
{
    miser_mem_stats s = {0};
    for (unsigned c = 0; c < MISER_MEM_COUNT; c++) {
        s.allocs += atomic_load(&g_n[c]);
        s.mapped += (uint64_t)atomic_load(&g_mapped[c]);
    }
    s.current = atomic_load(&g_total_cur);
    s.peak = atomic_load(&g_total_peak);
    return s;
}

void miser_mem_reset_peaks(void)
{
    for (unsigned c = 0; c < MISER_MEM_COUNT; c++) atomic_store(&g_peak[c], atomic_load(&g_cur[c]));
    atomic_store(&g_total_peak, atomic_load(&g_total_cur));
}
