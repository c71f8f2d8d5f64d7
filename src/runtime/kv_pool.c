/* The paged KV cache's pool: one allocation of fixed-size blocks made up
 * front (MISER_MEM_KV), a free list, and promises (reservations) so an
 * admitted sequence can always grow to what it was promised. The byte
 * arithmetic is one pure function (miser_kv_pool_bytes) shared with the
 * memory-budget predictor. Not thread-safe: one owner (the batch, driven by
 * the serve scheduler thread) calls it. */
#include "internal.h"
#include "miser/alloc.h"
#include "miser/batch.h"

#include <string.h>

struct miser_kv_pool {
    miser_kv_geom g;
    int64_t total, used, reserved;
    uint64_t block_bytes;
    char *mem;       /* total x block_bytes, 64-byte aligned */
    int64_t *free_;  /* stack of free block indices */
    int64_t n_free;
};

static int64_t geom_bt(const miser_kv_geom *g) { return g->block_tokens > 0 ? g->block_tokens : MISER_KV_BLOCK_TOKENS; }

void miser_kv_geom_of_plan(const miser_plan *p, int kv_f16, int64_t block_tokens, miser_kv_geom *out)
{
    const miser_graph *g = &p->g;
    out->n_layer = g->n_layer;
    out->kv_heads = g->n_kv_head > 0 ? g->n_kv_head : g->n_head;
    out->head_dim = g->head_dim;
    out->block_tokens = block_tokens > 0 ? block_tokens : MISER_KV_BLOCK_TOKENS;
    out->f16 = miser_kv_f16_resolve(p, kv_f16); /* > 0 f16, < 0 f32, 0 the model's default */
}

uint64_t miser_kv_block_bytes(const miser_kv_geom *g)
{
    /* K and V for every layer; rounded to 64 bytes so every block (and so
     * every layer's rows within it) stays aligned for the SIMD kernels */
    const uint64_t b = (uint64_t)(2 * g->n_layer) * (uint64_t)geom_bt(g) * (uint64_t)(g->kv_heads * g->head_dim) *
                       (g->f16 ? 2u : 4u);
    return (b + 63) / 64 * 64;
}

uint64_t miser_kv_pool_bytes(const miser_kv_geom *g, int64_t n_blocks)
{
    return n_blocks > 0 ? miser_kv_block_bytes(g) * (uint64_t)n_blocks : 0;
}

int64_t miser_kv_blocks_for(const miser_kv_geom *g, int64_t positions)
{
    const int64_t bt = geom_bt(g);
    return positions > 0 ? (positions + bt - 1) / bt : 0;
}

miser_status miser_kv_pool_create(const miser_kv_geom *g, int64_t n_blocks, miser_kv_pool **out)
{
    *out = NULL;
    if (n_blocks < 1 || g->n_layer < 1 || g->kv_heads < 1 || g->head_dim < 1)
        return miser_error_set(MISER_ERR_INVALID, "KV pool: %lld blocks of %lld layers x %lld KV heads x %lld", (long long)n_blocks,
                               (long long)g->n_layer, (long long)g->kv_heads, (long long)g->head_dim);
    miser_kv_pool *p = miser_calloc(MISER_MEM_OTHER, 1, sizeof *p);
    if (!p) return MISER_ERR_NOMEM;
    p->g = *g;
    p->g.block_tokens = geom_bt(g);
    p->total = n_blocks;
    p->block_bytes = miser_kv_block_bytes(&p->g);
    p->mem = miser_aligned_alloc(MISER_MEM_KV, 64, (size_t)miser_kv_pool_bytes(&p->g, n_blocks));
    p->free_ = miser_malloc(MISER_MEM_OTHER, sizeof(int64_t) * (size_t)n_blocks);
    if (!p->mem || !p->free_) {
        miser_kv_pool_free(p);
        return miser_error_set(MISER_ERR_NOMEM, "KV pool: cannot allocate %lld blocks (%.1f MiB)", (long long)n_blocks,
                               (double)miser_kv_pool_bytes(g, n_blocks) / 1048576.0);
    }
    /* lowest index on top: blocks are handed out in address order at first */
    for (int64_t i = 0; i < n_blocks; i++) p->free_[i] = n_blocks - 1 - i;
    p->n_free = n_blocks;
    *out = p;
    return MISER_OK;
}

void miser_kv_pool_free(miser_kv_pool *p)
{
    if (!p) return;
    miser_free(p->mem);
    miser_free(p->free_);
    miser_free(p);
}

const miser_kv_geom *miser_kv_pool_geom(const miser_kv_pool *p) { return &p->g; }
int64_t miser_kv_pool_blocks_total(const miser_kv_pool *p) { return p->total; }
int64_t miser_kv_pool_blocks_used(const miser_kv_pool *p) { return p->used; }
int64_t miser_kv_pool_blocks_reserved(const miser_kv_pool *p) { return p->reserved; }
int64_t miser_kv_pool_blocks_free(const miser_kv_pool *p) { return p->total - p->used - p->reserved; }

int miser_kv_pool_reserve(miser_kv_pool *p, int64_t n)
{
    if (n < 0 || n > miser_kv_pool_blocks_free(p)) return -1;
    p->reserved += n;
    return 0;
}

void miser_kv_pool_unreserve(miser_kv_pool *p, int64_t n)
{
    if (n > p->reserved) n = p->reserved;
    if (n > 0) p->reserved -= n;
}

int64_t miser_kv_pool_take(miser_kv_pool *p, int from_reserved)
{
    if (from_reserved ? p->reserved < 1 : miser_kv_pool_blocks_free(p) < 1) return -1;
    if (p->n_free < 1) return -1; /* cannot happen: used + reserved <= total */
    if (from_reserved) p->reserved--;
    p->used++;
    return p->free_[--p->n_free];
}

void miser_kv_pool_give(miser_kv_pool *p, int64_t block)
{
    if (block < 0 || block >= p->total || p->n_free >= p->total) return;
    p->free_[p->n_free++] = block;
    p->used--;
}

void *miser_kv_pool_block(const miser_kv_pool *p, int64_t block)
{
    return block >= 0 && block < p->total ? p->mem + (uint64_t)block * p->block_bytes : NULL;
}
