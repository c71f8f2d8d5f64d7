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
