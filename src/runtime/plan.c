/* Compile: build the graph of the checkpoint's architecture (the model
 * registry picks the builder) and run the pass pipeline into a plan. */
#include "internal.h"
#include "miser/alloc.h"

#include <string.h>
#include <time.h>

miser_status miser_plan_compile(const miser_model *m, const miser_compile_options *o, miser_plan **out)
{
    *out = NULL;
    miser_compile_options def = {0};
    if (!o) o = &def;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const miser_config *c = miser_model_config(m);
    miser_plan *p = miser_calloc(MISER_MEM_COMPILE, 1, sizeof *p);
    if (!p) return MISER_ERR_NOMEM;
    p->model = m;
    p->cfg = *c;
    p->max_context = o->max_context > 0 && o->max_context < c->n_ctx ? o->max_context : c->n_ctx;
    p->max_batch = o->max_batch > 0 ? o->max_batch : 64;
    if (p->max_batch > p->max_context) p->max_batch = p->max_context;
    p->all_logits = o->all_logits;
    miser_status st = miser_graph_init(&p->g, p->max_batch, p->max_context);
    if (!st) st = miser_model_build(&p->g, m, o->all_logits);
    if (!st) st = miser_passes_run_pipeline(&p->g, o->pipeline, o->disable, o->records, o->max_records, o->n_records);
    if (st) {
        miser_plan_free(p);
        return st;
    }
    p->output = -1;
    for (int32_t i = 0; i < p->g.n_nodes; i++)
        if (p->g.nodes[i].op == MISER_OP_OUTPUT) p->output = i;
    if (p->output < 0) {
        miser_plan_free(p);
        return miser_error_set(MISER_ERR_INTERNAL, "compiled graph has no output");
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    p->compile_s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    *out = p;
    return MISER_OK;
}

void miser_plan_free(miser_plan *p)
{
    if (!p) return;
    miser_graph_free(&p->g);
    miser_free(p);
}

const miser_graph *miser_plan_graph(const miser_plan *p) { return &p->g; }
double miser_plan_compile_seconds(const miser_plan *p) { return p->compile_s; }
