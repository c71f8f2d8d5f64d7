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
