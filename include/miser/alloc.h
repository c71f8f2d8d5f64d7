/* miser's accounting allocator. Every byte the library allocates goes
 * through here, tagged with a category; current and peak bytes are kept per
 * category (atomically, so kernels on several threads may allocate).
 * Mapped files are not allocations but are recorded with miser_mem_note_mapped
 * so reports can show them beside the heap. */
#ifndef MISER_ALLOC_H
#define MISER_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum miser_mem_category {
    MISER_MEM_WEIGHTS = 0,  /* converted/materialised weights (mmap noted separately) */
    MISER_MEM_CONSTANTS,    /* constants produced by the compiler */
    MISER_MEM_ACTIVATIONS,  /* the planned activation arena */
    MISER_MEM_KV,           /* KV cache */
    MISER_MEM_SCRATCH,      /* short-lived buffers in kernels and tools */
    MISER_MEM_COMPILE,      /* graph IR, pass temporaries */
    MISER_MEM_TOKENIZER,    /* vocabulary and merge tables */
    MISER_MEM_PROFILER,     /* profiler records and timelines */
    MISER_MEM_OTHER,
    MISER_MEM_COUNT
} miser_mem_category;

typedef struct miser_mem_stats {
    uint64_t current;      /* bytes live now */
    uint64_t peak;         /* max of current since start or last reset */
    uint64_t allocs;       /* number of successful allocations */
    uint64_t mapped;       /* bytes currently mapped from files (not heap) */
} miser_mem_stats;

/* All returned pointers are aligned to at least 16 bytes. Return NULL on
 * failure (and set the error message to MISER_ERR_NOMEM). size 0 gives a
 * valid unique pointer. */
void *miser_malloc(miser_mem_category cat, size_t size);
void *miser_calloc(miser_mem_category cat, size_t n, size_t size);
/* Keeps the category the block was allocated with. NULL p acts as malloc. */
void *miser_realloc(miser_mem_category cat, void *p, size_t size);
/* align: power of two >= 16. Freed with miser_free like any other block. */
void *miser_aligned_alloc(miser_mem_category cat, size_t align, size_t size);
char *miser_strdup(miser_mem_category cat, const char *s);
char *miser_strndup(miser_mem_category cat, const char *s, size_t n);
/* Freeing NULL is a no-op. */
void miser_free(void *p);
/* Size that was requested for a block from this allocator. */
size_t miser_alloc_size(const void *p);

void miser_mem_note_mapped(miser_mem_category cat, int64_t delta_bytes);
miser_mem_stats miser_mem_get(miser_mem_category cat);
/* Sum over categories (peak is the max reached by the total). */
miser_mem_stats miser_mem_total(void);
/* Reset every peak to the current value (used at profiler stage starts). */
void miser_mem_reset_peaks(void);
const char *miser_mem_category_name(miser_mem_category cat);

/* Fault injection for tests: the n-th allocation from now (1-based) and
 * every one after it fail until miser_mem_fail_after(0) disables it.
 * Returns the number of allocations made since the last call. */
uint64_t miser_mem_fail_after(uint64_t n);

#ifdef __cplusplus
}
#endif
#endif
