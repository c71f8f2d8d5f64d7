/* Multi-sequence steps over a paged KV cache (the serve engine's runtime).
 *
 * The KV pool is one allocation (MISER_MEM_KV) of fixed-size blocks, made up
 * front from a block count; a sequence takes blocks as it grows and returns
 * them when it ends. A batch runs several sequences' items in one step: their
 * rows are concatenated, row-wise nodes (linears, norms, activations) run
 * once over all rows (one pass over the weights), and attention, KV writes,
 * rotary positions and the last-token pick work per sequence on its own
 * blocks. A sequence's numbers do not depend on which others share a step
 * (given row-count-invariant linears, kernels.h) nor on the thread count. */
#ifndef MISER_BATCH_H
#define MISER_BATCH_H

#include "miser/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the KV pool ---- */

/* Positions per block unless a caller asks otherwise. */
#define MISER_KV_BLOCK_TOKENS 16

/* What one block holds: block_tokens positions of K and V for every layer,
 * laid out [layer][K, V][block_tokens][kv_heads * head_dim], f32 or f16. */
typedef struct miser_kv_geom {
    int64_t n_layer, kv_heads, head_dim;
    int64_t block_tokens; /* 0: MISER_KV_BLOCK_TOKENS */
    int f16;
} miser_kv_geom;

/* The geometry of a plan's KV cache (kv_f16 / block_tokens as given). */
void miser_kv_geom_of_plan(const miser_plan *p, int kv_f16, int64_t block_tokens, miser_kv_geom *out);
/* Bytes of one block and of a pool of n_blocks: the pool allocates exactly
 * miser_kv_pool_bytes (the memory-budget predictor calls this same function). */
uint64_t miser_kv_block_bytes(const miser_kv_geom *g);
uint64_t miser_kv_pool_bytes(const miser_kv_geom *g, int64_t n_blocks);
/* Blocks a sequence of `positions` needs (ceil(positions / block_tokens)). */
int64_t miser_kv_blocks_for(const miser_kv_geom *g, int64_t positions);

typedef struct miser_kv_pool miser_kv_pool;

/* Owned by its creator; the blocks live until miser_kv_pool_free. */
miser_status miser_kv_pool_create(const miser_kv_geom *g, int64_t n_blocks, miser_kv_pool **out);
void miser_kv_pool_free(miser_kv_pool *p);
const miser_kv_geom *miser_kv_pool_geom(const miser_kv_pool *p);
int64_t miser_kv_pool_blocks_total(const miser_kv_pool *p);
int64_t miser_kv_pool_blocks_used(const miser_kv_pool *p);
/* Blocks promised to sequences but not taken yet. */
int64_t miser_kv_pool_blocks_reserved(const miser_kv_pool *p);
/* Blocks neither taken nor promised. */
int64_t miser_kv_pool_blocks_free(const miser_kv_pool *p);
/* Promise n blocks (0 on success; -1, nothing changed, when fewer are free). */
int miser_kv_pool_reserve(miser_kv_pool *p, int64_t n);
/* Drop n promised blocks that were never taken. */
void miser_kv_pool_unreserve(miser_kv_pool *p, int64_t n);
/* Take a block: from a promise when from_reserved, else a free one. Returns
 * its index, or -1 when none is left. */
int64_t miser_kv_pool_take(miser_kv_pool *p, int from_reserved);
void miser_kv_pool_give(miser_kv_pool *p, int64_t block);
void *miser_kv_pool_block(const miser_kv_pool *p, int64_t block);

/* ---- batched steps ---- */

typedef struct miser_batch_options {
    int n_seqs;          /* sequence slots (>= 1) */
    int64_t capacity;    /* positions per sequence (0: the plan's max_context) */
    int64_t n_blocks;    /* pool blocks (0: n_seqs x ceil(capacity / block_tokens)) */
    int64_t block_tokens;/* 0: MISER_KV_BLOCK_TOKENS */
    int threads;         /* 0: 1 */
    int kv_f16;
} miser_batch_options;

typedef struct miser_batch miser_batch;

/* Bytes a batch with options `o` allocates, by kind (computed, nothing
 * allocated; the memory-budget predictor reads this): the pool
 * (MISER_MEM_KV, miser_kv_pool_bytes), the executor's arena
 * (MISER_MEM_ACTIVATIONS, planned for the plan's max_batch rows) and
 * scratch as a session's (miser_session_footprint_get), the logits head's
 * tail buffers (one row per sequence, MISER_MEM_ACTIVATIONS) and the rest. */
typedef struct miser_batch_footprint {
    int64_t capacity, n_blocks;
    uint64_t kv_bytes, arena_bytes, scratch_bytes, tail_bytes, other_bytes;
} miser_batch_footprint;
void miser_batch_footprint_get(const miser_plan *p, const miser_batch_options *o, miser_batch_footprint *out);

/* One sequence's share of a step: n >= 1 tokens appended to sequence seq.
 * want_logits: set logits to the last position's n_vocab values (valid until
 * the next miser_batch_step). status: per-item failure (the item changed
 * nothing: a bad token id, the sequence's capacity, no KV block left). */
typedef struct miser_batch_item {
    int seq;
    const int32_t *ids;
    int64_t n;
    int want_logits;
    const float *logits;
    miser_status status;
} miser_batch_item;

/* The plan must be compiled with the fused attention (the default pipeline)
 * and outlive the batch; its max_batch is the most rows one pass takes (a
 * step with more rows runs as several passes). */
miser_status miser_batch_create(const miser_plan *p, const miser_batch_options *o, miser_batch **out);
void miser_batch_free(miser_batch *b);
/* Items must name distinct sequences. Returns MISER_OK when every item was
 * attempted (see item.status), else the failure of the whole step. */
miser_status miser_batch_step(miser_batch *b, miser_batch_item *items, int n);
/* Admission: promise sequence seq blocks for `positions` positions in total
 * (capped at the capacity). 0 on success; -1 when the pool cannot promise
 * them now (nothing changed). A sequence with a promise never fails to grow
 * within it. */
int miser_batch_seq_reserve(miser_batch *b, int seq, int64_t positions);
/* End sequence seq: its blocks and promise go back to the pool; positions
 * restart at 0. */
void miser_batch_seq_release(miser_batch *b, int seq);
int64_t miser_batch_seq_position(const miser_batch *b, int seq);
int64_t miser_batch_capacity(const miser_batch *b);
int miser_batch_n_seqs(const miser_batch *b);
miser_kv_pool *miser_batch_pool(miser_batch *b);

#ifdef __cplusplus
}
#endif
#endif
