/* The executor of MISER_OP_LINEARS (made by passes/group_linears.c): the
 * linears of one input in ONE dispatch of the session's thread pool. The
 * threads split the output columns of all the weights together, in units
 * of 16 columns, and each runs the set's ordinary linear kernel on its
 * column range of each weight (a sub-problem of the same arguments: the
 * weight pointer moved by whole dot-layout rows, y by columns), so no
 * weight is copied or concatenated and every kernel set (ref, avx2,
 * avx512, the q8_0 and 4-bit paths) works unchanged. With the SwiGLU
 * epilogue the gate and up weights are split by the same columns and each
 * thread applies silu(gate) * up to the columns it has just computed: no
 * barrier and no separate pass between them.
 *
 * Each output column is summed as by the separate LINEAR nodes (the
 * dot-layout kernels split by columns themselves); tests/test_llama.c
 * compares the grouped and ungrouped pipelines. Nothing is allocated. */
#include "internal.h"

#define UNIT 16 /* columns per work unit: whole 16-column tiles of the SIMD kernels */

typedef struct {
    const miser_kernels *k;
    miser_linear_args la[MISER_MAX_INPUTS - 1];
    int nw, swiglu;
    int64_t ntot;
} linears_task;

/* la restricted to its output columns [c0, c1) */
static void sub_run(const miser_kernels *k, const miser_linear_args *la, int64_t c0, int64_t c1)
{
    miser_linear_args s = *la;
    s.N = c1 - c0;
    s.w = (const char *)la->w + miser_dtype_bytes(la->wdt, (uint64_t)(c0 * la->wsn)); /* whole rows */
    s.y = la->y + c0;
    k->linear(&s, 0, 1);
}

static void cols_of(int64_t N, int ith, int nth, int64_t *c0, int64_t *c1)
{
    int64_t u0, u1;
    miser_split((N + UNIT - 1) / UNIT, ith, nth, &u0, &u1);
    *c0 = u0 * UNIT;
    *c1 = u1 * UNIT < N ? u1 * UNIT : N;
}

static void linears_run(void *ctx, int ith, int nth)
{
    const linears_task *t = ctx;
    int64_t c0, c1;
    if (t->swiglu) {
        const miser_linear_args *g = &t->la[0], *u = &t->la[1];
        cols_of(g->N, ith, nth, &c0, &c1);
        if (c0 >= c1) return;
        sub_run(t->k, g, c0, c1);
        sub_run(t->k, u, c0, c1);
        for (int64_t m = 0; m < g->M; m++) {
            float *gy = g->y + m * g->ldy + c0;
            t->k->silu_mul(gy, gy, u->y + m * u->ldy + c0, c1 - c0, 0, 1);
        }
        return;
    }
    cols_of(t->ntot, ith, nth, &c0, &c1);
    int64_t off = 0;
    for (int j = 0; j < t->nw; off += t->la[j].N, j++) {
        const int64_t lo = c0 > off ? c0 : off, hi = c1 < off + t->la[j].N ? c1 : off + t->la[j].N;
        if (lo < hi) sub_run(t->k, &t->la[j], lo - off, hi - off);
    }
}

miser_status miser_linears_exec(miser_session *s, const miser_node *n, int32_t id, const miser_tview *const *in,
                                miser_tview *v)
{
    const miser_tview *x = in[0];
    /* x's rows: M rows of K with one stride (as the LINEAR executor's rows_of) */
    const int nd = x->ndim;
    int64_t M = 1, ldx = x->shape[nd - 1], prev = -1;
    int ok = x->dtype == MISER_DTYPE_F32 && (x->stride[nd - 1] == 1 || x->shape[nd - 1] == 1);
    for (int i = nd - 2; i >= 0 && ok; i--) {
        if (x->shape[i] == 1) continue;
        if (prev < 0) ldx = x->stride[i];
        else ok = x->stride[i] == prev;
        prev = x->stride[i] * x->shape[i];
        M *= x->shape[i];
    }
    if (!ok || n->n_in < 3 || n->n_in > MISER_MAX_INPUTS)
        return miser_error_set(MISER_ERR_INTERNAL, "executing node %d (linears '%s'): input rows are not evenly "
                               "strided f32", id, n->name);
    linears_task t = {.k = s->k, .nw = n->n_in - 1, .swiglu = n->attr.i[0] == MISER_LINEARS_SWIGLU};
    const int64_t ldy = v->shape[v->ndim - 1];
    float *y = v->data;
    for (int j = 0; j < t.nw; j++) {
        const miser_tview *w = in[1 + j];
        t.la[j] = (miser_linear_args){.M = M, .N = w->shape[1], .K = w->shape[0], .x = x->data, .ldx = ldx, .w = w->data,
                                      .wdt = w->dtype, .wsk = w->stride[0], .wsn = w->stride[1], .y = y + t.ntot,
                                      .ldy = ldy};
        if (miser_linear_partial_floats(&t.la[j]) > 0) /* the pass takes the dot layout only */
            return miser_error_set(MISER_ERR_INTERNAL, "executing node %d (linears '%s'): weight %d is not in the dot "
                                   "layout", id, n->name, j);
        t.ntot += w->shape[1];
    }
    miser_threadpool_run(s->pool, linears_run, &t);
    return MISER_OK;
}
