/* Runtime internals shared by plan, session and generation code. */
#ifndef MISER_RUNTIME_INTERNAL_H
#define MISER_RUNTIME_INTERNAL_H

#include "kernels/generic.h"
#include "kernels/kernels.h"
#include "miser/runtime.h"
#include "threadpool.h"

struct miser_plan {
    miser_graph g;
    const miser_model *model;
    miser_config cfg;
    int64_t max_batch, max_context;
    int all_logits;
    int32_t output;        /* node id of the OUTPUT node */
    double compile_s;
};

/* One sequence's rows in a batched pass (batch.c): rows [row0, row0 + T)
 * of the pass are its positions past .. past + T - 1; its KV lives in
 * `blocks` (one base address per block_tokens positions, kv_pool.c's
 * layout); out_row >= 0: its last row's logits go to that row of the tail
 * buffers (-1: none). */
typedef struct miser_step_seg {
    int64_t row0, T, past;
    void *const *blocks;
    int64_t out_row;
} miser_step_seg;

/* A batched pass's description (NULL in a session's own steps). Tail nodes
 * (the last-token pick and what follows it: the logits head) run over the
 * n_out picked rows and write tail buffers instead of the arena: node i at
 * tail + tail_off[i] (tail_off[i] < 0: not a tail buffer), row out_base
 * onward, so the rows of every pass of one batch step stay valid together. */
typedef struct miser_step_batch {
    int n_seg;
    const miser_step_seg *seg;
    int64_t n_out, out_base;
    int64_t blk_tokens;        /* positions per block */
    int64_t layer_bytes;       /* a layer's K + V within a block */
    int64_t half_bytes;        /* its K (V follows) */
    const unsigned char *tail_node; /* per node: 1 when downstream of LAST_TOKEN */
    const int64_t *tail_off;
    char *tail;
    const void **kt, **vt;     /* scratch block tables: capacity / blk_tokens + 1 each */
} miser_step_batch;

/* A session without its own KV cache (with_kv 0) is the executor of a batch. */
miser_status miser_session_create_exec(const miser_plan *p, const miser_session_options *o, int with_kv,
                                       miser_session **out);
/* Run the graph once over T rows: s->ids / s->positions hold them; b
 * describes a batched pass (NULL: one sequence at s->past, its own cache). */
miser_status miser_session_run_pass(miser_session *s, int64_t T, const miser_step_batch *b);

/* batch.c: run node id of a batched pass when it works per sequence
 * (KV_WRITE, ATTENTION, LAST_TOKEN; the unfused attention's ops are
 * refused). Returns 1 with *st set when it did, 0 for the common executor. */
int miser_batch_node(miser_session *s, int32_t id, int64_t T, miser_status *st);

/* linears.c: run a LINEARS node (passes/group_linears.c) over its inputs'
 * views in[] into v (already in the arena), as one pool dispatch */
miser_status miser_linears_exec(miser_session *s, const miser_node *n, int32_t id, const miser_tview *const *in,
                                miser_tview *v);

/* Whether a session given miser_session_options.kv_f16 = kv_f16 (> 0 f16,
 * < 0 f32, 0 the model's default) keeps its KV cache in f16. The default
 * comes from the checkpoint's registry entry (miser_config.kv_dtype), so
 * the runtime never asks which family it runs. */
static inline int miser_kv_f16_resolve(const miser_plan *p, int kv_f16)
{
    return kv_f16 > 0 || (kv_f16 == 0 && p->cfg.kv_dtype == MISER_DTYPE_F16);
}

struct miser_session {
    const miser_plan *p;
    const miser_step_batch *batch; /* during a batched pass, else NULL */
    const miser_kernels *k;
    miser_threadpool *pool;
    int64_t capacity, past;
    int kv_f16;
    void **kcache, **vcache;   /* per layer [capacity, H, D] */
    char *arena;
    int32_t *ids, *positions;  /* [max_batch] */
    float *scratch;            /* attention rows: threads x capacity */
    float *partial;            /* decode K split's partial sums (kernels.h) */
    int64_t partial_cap;       /* floats in partial */
    miser_tview *views;        /* per node, resolved each step */
    /* rotary embeddings (graphs with ROPE nodes): inverse frequencies
     * [head_dim / 2] from the graph's rope config, and each step's cos / sin
     * [max_batch, head_dim / 2] for its positions, computed once per step */
    double *inv_freq;
    float *rope_cos, *rope_sin;
};

#endif
