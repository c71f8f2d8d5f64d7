/* Sessions: the KV cache, the activation arena and the executor that walks
 * the compiled graph. Each step resolves the symbolic sizes (T tokens this
 * step, S = past + T) into concrete views, then runs the nodes in order. */
#include "internal.h"
#include "miser/alloc.h"

#include <math.h>
#include <string.h>

/* Hugging Face's inverse frequencies (modeling_rope_utils): theta^(-2i/D),
 * then the rope_scaling rule of the config (see miser_rope_config). */
static void rope_inv_freq(const miser_rope_config *r, int64_t D, double *out)
{
    const double pi = 3.14159265358979323846;
    for (int64_t i = 0; i < D / 2; i++) {
        double f = 1.0 / pow(r->theta, (double)(2 * i) / (double)D);
        if (r->type == MISER_ROPE_LINEAR) f /= r->factor;
        else if (r->type == MISER_ROPE_LLAMA3) {
            const double old = (double)r->original_ctx, lo_wl = old / r->low_freq_factor,
                         hi_wl = old / r->high_freq_factor, wl = 2 * pi / f;
            if (wl > lo_wl) f /= r->factor;
            else if (wl >= hi_wl) { /* between: interpolate */
                const double sm = (old / wl - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
                f = (1 - sm) * f / r->factor + sm * f;
            }
        }
        out[i] = f;
    }
}

static void *kv_alloc(miser_session *s, int64_t elems)
{
    return miser_aligned_alloc(MISER_MEM_KV, 64, (size_t)elems * (s->kv_f16 ? 2 : 4));
}

/* The largest decode K split over the graph's linears (M = 1), in floats:
 * the session's partial buffer (shared with miser_session_footprint_get). */
static int64_t decode_partial_floats(const miser_graph *g)
{
    int64_t cap = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const miser_node *n = &g->nodes[i];
        if ((n->op != MISER_OP_LINEAR && n->op != MISER_OP_MATMUL) || n->n_in < 2) continue;
        const miser_node *w = &g->nodes[n->in[1]];
        if (w->ndim != 2 || w->shape[0] < 1 || w->shape[1] < 1) continue;
        /* the layout as stored: the dot layout (wte's transpose, the q8_0
         * cache's Conv1D weights) needs no split */
        const miser_linear_args q = {.M = 1, .K = w->shape[0], .N = w->shape[1],
                                     .wsk = w->op == MISER_OP_CONST ? w->cst.stride[0] : w->shape[1],
                                     .wsn = w->op == MISER_OP_CONST ? w->cst.stride[1] : 1};
        const int64_t need = miser_linear_partial_floats(&q);
        if (need > cap) cap = need;
    }
    return cap;
}

/* What miser_session_create allocates for `o` (the memory-budget predictor
 * reads this instead of repeating the arithmetic; keep the two in step). */
void miser_session_footprint_get(const miser_plan *p, const miser_session_options *o, miser_session_footprint *out)
{
    miser_session_options def = {0};
    if (!o) o = &def;
    const miser_graph *g = &p->g;
    const int64_t cap = o->capacity > 0 && o->capacity < p->max_context ? o->capacity : p->max_context;
    const int64_t L = g->n_layer, HD = (g->n_kv_head > 0 ? g->n_kv_head : g->n_head) * g->head_dim;
    const int64_t group = g->n_kv_head > 0 && g->n_head > g->n_kv_head ? g->n_head / g->n_kv_head : 1;
    const int threads = o->threads > 0 ? o->threads : 1;
    int has_rope = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) has_rope |= g->nodes[i].op == MISER_OP_ROPE;
    const uint64_t half = (uint64_t)(g->head_dim / 2);
    out->capacity = cap;
    out->kv_bytes = (uint64_t)(2 * L) * (uint64_t)(cap * HD) * (miser_kv_f16_resolve(p, o->kv_f16) ? 2u : 4u);
    out->arena_bytes = g->arena_bytes ? g->arena_bytes : 64;
    out->scratch_bytes = sizeof(float) * (uint64_t)(cap * group * threads) +
                         sizeof(float) * (uint64_t)decode_partial_floats(g);
    out->other_bytes = 2 * sizeof(int32_t) * (uint64_t)p->max_batch + ((uint64_t)g->n_nodes + 1) * sizeof(miser_tview) +
                       (has_rope ? sizeof(double) * (half ? half : 1) + 2 * sizeof(float) * ((uint64_t)p->max_batch * half + 1) : 0) +
                       2 * sizeof(void *) * (uint64_t)L;
    out->threads = threads;
}

miser_status miser_session_create(const miser_plan *p, const miser_session_options *o, miser_session **out)
{
    return miser_session_create_exec(p, o, 1, out);
}

miser_status miser_session_create_exec(const miser_plan *p, const miser_session_options *o, int with_kv,
                                       miser_session **out)
{
    *out = NULL;
    miser_session_options def = {0};
    if (!o) o = &def;
    miser_session *s = miser_calloc(MISER_MEM_OTHER, 1, sizeof *s);
    if (!s) return MISER_ERR_NOMEM;
    s->p = p;
    s->k = miser_kernels_get();
    s->kv_f16 = miser_kv_f16_resolve(p, o->kv_f16); /* 0 / 1 from here on */
    s->capacity = o->capacity > 0 && o->capacity < p->max_context ? o->capacity : p->max_context;
    const miser_graph *g = &p->g;
    /* the cache holds the KV heads only (grouped-query attention shares
     * each among n_head / n_kv_head query heads) */
    int64_t L = g->n_layer, HD = (g->n_kv_head > 0 ? g->n_kv_head : g->n_head) * g->head_dim;
    miser_status st = miser_threadpool_create(o->threads > 0 ? o->threads : 1, &s->pool);
    if (st) goto fail;
    if (with_kv) {
        s->kcache = miser_calloc(MISER_MEM_KV, (size_t)L, sizeof(void *));
        s->vcache = miser_calloc(MISER_MEM_KV, (size_t)L, sizeof(void *));
        if (!s->kcache || !s->vcache) goto nomem;
    }
    for (int64_t l = 0; l < L && with_kv; l++) {
        s->kcache[l] = kv_alloc(s, s->capacity * HD);
        s->vcache[l] = kv_alloc(s, s->capacity * HD);
        if (!s->kcache[l] || !s->vcache[l]) goto nomem;
    }
    s->arena = miser_aligned_alloc(MISER_MEM_ACTIVATIONS, 64, g->arena_bytes ? g->arena_bytes : 64);
    s->ids = miser_malloc(MISER_MEM_ACTIVATIONS, sizeof(int32_t) * (size_t)p->max_batch);
    s->positions = miser_malloc(MISER_MEM_ACTIVATIONS, sizeof(int32_t) * (size_t)p->max_batch);
    /* attention rows: capacity floats per query head of a group (kernels.h) */
    const int64_t group = g->n_kv_head > 0 && g->n_head > g->n_kv_head ? g->n_head / g->n_kv_head : 1;
    s->scratch = miser_malloc(MISER_MEM_SCRATCH,
                              sizeof(float) * (size_t)(s->capacity * group * miser_threadpool_size(s->pool)));
    s->partial_cap = decode_partial_floats(g);
    if (s->partial_cap > 0) {
        s->partial = miser_aligned_alloc(MISER_MEM_SCRATCH, 64, sizeof(float) * (size_t)s->partial_cap);
        if (!s->partial) goto nomem;
    }
    int has_rope = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) has_rope |= g->nodes[i].op == MISER_OP_ROPE;
    if (has_rope) {
        const int64_t half = g->head_dim / 2;
        s->inv_freq = miser_malloc(MISER_MEM_OTHER, sizeof(double) * (size_t)(half ? half : 1));
        s->rope_cos = miser_malloc(MISER_MEM_ACTIVATIONS, sizeof(float) * (size_t)(p->max_batch * half + 1));
        s->rope_sin = miser_malloc(MISER_MEM_ACTIVATIONS, sizeof(float) * (size_t)(p->max_batch * half + 1));
        if (!s->inv_freq || !s->rope_cos || !s->rope_sin) goto nomem;
        rope_inv_freq(&g->rope, g->head_dim, s->inv_freq);
    }
    s->views = miser_calloc(MISER_MEM_OTHER, (size_t)g->n_nodes + 1, sizeof *s->views);
    if (!s->arena || !s->ids || !s->positions || !s->scratch || !s->views) goto nomem;
    *out = s;
    return MISER_OK;
nomem:
    st = MISER_ERR_NOMEM;
fail:
    miser_session_free(s);
    return st;
}

void miser_session_free(miser_session *s)
{
    if (!s) return;
    const miser_graph *g = &s->p->g;
    for (int64_t l = 0; l < g->n_layer; l++) {
        if (s->kcache) miser_free(s->kcache[l]);
        if (s->vcache) miser_free(s->vcache[l]);
    }
    miser_free(s->kcache);
    miser_free(s->vcache);
    miser_free(s->arena);
    miser_free(s->ids);
    miser_free(s->positions);
    miser_free(s->scratch);
    miser_free(s->partial);
    miser_free(s->views);
    miser_free(s->inv_freq);
    miser_free(s->rope_cos);
    miser_free(s->rope_sin);
    miser_threadpool_free(s->pool);
    miser_free(s);
}

void miser_session_reset(miser_session *s) { s->past = 0; }
int64_t miser_session_position(const miser_session *s) { return s->past; }
int64_t miser_session_capacity(const miser_session *s) { return s->capacity; }

/* ---- view resolution ---- */

static int64_t resolve_dim(int64_t d, int64_t T, int64_t S) { return d == MISER_DIM_T ? T : d == MISER_DIM_S ? S : d; }

static void contiguous_strides(miser_tview *v)
{
    int64_t st = 1;
    for (int i = v->ndim - 1; i >= 0; i--) {
        v->stride[i] = st;
        st *= v->shape[i];
    }
}

/* Strides for viewing `in` with a new shape without copying (numpy's rule:
 * each group of old dims that maps onto a group of new dims must be
 * contiguous within itself). Returns 0 on success. */
static int reshape_strides(const miser_tview *in, miser_tview *out)
{
    int64_t os[MISER_MAX_DIMS], ot[MISER_MAX_DIMS];
    int on = 0;
    for (int i = 0; i < in->ndim; i++)
        if (in->shape[i] != 1) {
            os[on] = in->shape[i];
            ot[on++] = in->stride[i];
        }
    int ni = 0, oi = 0;
    while (ni < out->ndim && oi < on) {
        int64_t np = out->shape[ni], op = os[oi];
        int nj = ni + 1, oj = oi + 1;
        while (np != op) {
            if (np < op) {
                if (nj >= out->ndim) return -1;
                np *= out->shape[nj++];
            } else {
                if (oj >= on) return -1;
                op *= os[oj++];
            }
        }
        for (int k = oi; k < oj - 1; k++)
            if (ot[k] != os[k + 1] * ot[k + 1]) return -1;
        out->stride[nj - 1] = ot[oj - 1];
        for (int k = nj - 1; k > ni; k--) out->stride[k - 1] = out->stride[k] * out->shape[k];
        ni = nj;
        oi = oj;
    }
    for (; ni < out->ndim; ni++) out->stride[ni] = 1; /* trailing size-1 dims */
    return 0;
}

static miser_status exec_fail(const miser_node *n, int32_t id, const char *why)
{
    return miser_error_set(MISER_ERR_INTERNAL, "executing node %d (%s '%s'): %s", id, miser_op_name(n->op), n->name, why);
}

/* rows view of x[.., K]: M rows with stride ldx; -1 when not expressible */
static int rows_of(const miser_tview *x, int64_t *M, int64_t *ldx)
{
    int nd = x->ndim;
    if (x->stride[nd - 1] != 1 && x->shape[nd - 1] != 1) return -1;
    int64_t m = 1, ld = x->shape[nd - 1], prev = -1;
    for (int i = nd - 2; i >= 0; i--) {
        if (x->shape[i] == 1) continue;
        if (prev < 0) ld = x->stride[i];
        else if (x->stride[i] != prev) return -1;
        prev = x->stride[i] * x->shape[i];
        m *= x->shape[i];
    }
    *M = m;
    *ldx = ld;
    return 0;
}

typedef struct {
    miser_session *s;
    const miser_node *n;
    miser_tview *v;  /* output view */
    const miser_tview *in[MISER_MAX_INPUTS];
    int64_t T, S;
    miser_linear_args la;
    miser_attention_args aa;
    int64_t valid0;
} task_t;

static void task_run(void *ctx, int ith, int nth)
{
    task_t *t = ctx;
    const miser_kernels *k = t->s->k;
    const miser_node *n = t->n;
    float *y = t->v->data;
    switch (n->op) {
    case MISER_OP_LINEAR:
    case MISER_OP_MATMUL: k->linear(&t->la, ith, nth); break;
    case MISER_OP_ATTENTION: k->attention(&t->aa, ith, nth); break;
    case MISER_OP_LAYERNORM: {
        int64_t C = t->in[0]->shape[t->in[0]->ndim - 1];
        k->layernorm(y, t->in[0]->data, t->in[1]->data, t->in[2]->data, t->in[1]->dtype,
                     miser_tview_numel(t->in[0]) / C, C, n->attr.f[0], ith, nth);
        break;
    }
    case MISER_OP_RMSNORM: {
        int64_t C = t->in[0]->shape[t->in[0]->ndim - 1];
        k->rmsnorm(y, t->in[0]->data, t->in[1]->data, t->in[1]->dtype, miser_tview_numel(t->in[0]) / C, C, n->attr.f[0],
                   ith, nth);
        break;
    }
    case MISER_OP_SWIGLU: k->silu_mul(y, t->in[0]->data, t->in[1]->data, miser_tview_numel(t->v), ith, nth); break;
    case MISER_OP_ROPE: {
        const miser_tview *x = t->in[0];
        const int pairs = t->s->p->g.rope.pairs;
        if (k->rope) /* the set's SIMD rope (llama_avx2.c), else the references */
            k->rope(y, x->shape[2] * x->shape[3], x->data, x->stride[1], t->T, x->shape[2], x->shape[3],
                    t->s->rope_cos, t->s->rope_sin, pairs, ith, nth);
        else
            (pairs ? miser_rope_pairs : miser_ref_rope)(y, x->shape[2] * x->shape[3], x->data, x->stride[1], t->T,
                                                        x->shape[2], x->shape[3], t->s->rope_cos, t->s->rope_sin,
                                                        ith, nth);
        break;
    }
    case MISER_OP_GELU: k->gelu(y, t->in[0]->data, miser_tview_numel(t->v), ith, nth); break;
    case MISER_OP_ADD: k->add(y, t->in[0]->data, t->in[1]->data, miser_tview_numel(t->v), ith, nth); break;
    case MISER_OP_SOFTMAX: {
        int64_t n_last = t->v->shape[t->v->ndim - 1], rows = miser_tview_numel(t->v) / n_last;
        k->softmax(y, t->in[0]->data, rows, n_last, n->attr.f[0], n->attr.i[0] ? &t->valid0 : NULL, t->T, ith, nth);
        break;
    }
    default: break;
    }
}

static int is_f32_contig(const miser_tview *v) { return v->dtype == MISER_DTYPE_F32 && miser_tview_contiguous(v); }

static miser_status run_node(miser_session *s, int32_t id, int64_t T, int64_t S)
{
    const miser_graph *g = &s->p->g;
    const miser_node *n = &g->nodes[id];
    miser_tview *v = &s->views[id];
    task_t t = {.s = s, .n = n, .v = v, .T = T, .S = S};
    for (int i = 0; i < n->n_in; i++) t.in[i] = &s->views[n->in[i]];
    const miser_tview *a = t.in[0], *b = t.in[1];
    v->dtype = n->dtype;
    /* a view has its input's run-time dtype (a view of an f16 KV cache is f16) */
    if ((n->flags & MISER_NODE_VIEW) && n->op != MISER_OP_KV_WRITE && a) v->dtype = a->dtype;
    v->ndim = n->ndim;
    for (int i = 0; i < n->ndim; i++) v->shape[i] = resolve_dim(n->shape[i], T, S);
    const miser_step_batch *bt = s->batch;
    if (bt) { /* a batched pass: tail nodes hold the n_out picked rows; the nodes that work per sequence are batch.c's */
        if (bt->tail_node[id] && !bt->n_out) return MISER_OK; /* no sequence wants logits from this pass */
        if (bt->tail_node[id]) v->shape[1] = bt->n_out;
        miser_status bst;
        if (miser_batch_node(s, id, T, &bst)) return bst;
    }
    switch (n->op) {
    case MISER_OP_INPUT:
        v->data = n->attr.i[0] == MISER_INPUT_TOKENS ? (void *)s->ids : (void *)s->positions;
        contiguous_strides(v);
        return MISER_OK;
    case MISER_OP_CONST:
        v->data = (void *)n->cst.data;
        memcpy(v->stride, n->cst.stride, sizeof v->stride);
        return MISER_OK;
    case MISER_OP_RESHAPE:
    case MISER_OP_OUTPUT:
        v->data = a->data;
        if (n->op == MISER_OP_OUTPUT) {
            memcpy(v->stride, a->stride, sizeof v->stride);
            return MISER_OK;
        }
        if (reshape_strides(a, v)) return exec_fail(n, id, "reshape of a non-contiguous view");
        return MISER_OK;
    case MISER_OP_TRANSPOSE:
        v->data = a->data;
        for (int i = 0; i < n->ndim; i++) v->stride[i] = a->stride[n->attr.perm[i]];
        return MISER_OK;
    case MISER_OP_SLICE: {
        int64_t ax = n->attr.i[0];
        memcpy(v->stride, a->stride, sizeof v->stride);
        v->data = (char *)a->data + n->attr.i[1] * a->stride[ax] * (int64_t)miser_dtype_bytes(a->dtype, 1);
        return MISER_OK;
    }
    case MISER_OP_BROADCAST:
        v->data = a->data;
        for (int i = 0; i < n->ndim; i++) {
            int j = i - (n->ndim - a->ndim);
            v->stride[i] = (j < 0 || (a->shape[j] == 1 && v->shape[i] != 1)) ? 0 : a->stride[j];
        }
        return MISER_OK;
    case MISER_OP_LAST_TOKEN:
        memcpy(v->stride, a->stride, sizeof v->stride);
        v->data = (char *)a->data + (T - 1) * a->stride[1] * 4;
        return MISER_OK;
    case MISER_OP_KV_WRITE: {
        int64_t l = n->attr.i[0], H = g->n_kv_head > 0 ? g->n_kv_head : g->n_head, D = g->head_dim, past = S - T;
        void *cache = n->attr.i[1] ? s->vcache[l] : s->kcache[l];
        if (a->stride[3] != 1 || a->stride[2] != D) return exec_fail(n, id, "kv_write input rows must be [H, D] contiguous");
        for (int64_t r = 0; r < T; r++) {
            const float *src = (const float *)a->data + r * a->stride[1];
            if (s->kv_f16) {
                uint16_t *dst = (uint16_t *)cache + (past + r) * H * D;
                if (s->k->to_f16) s->k->to_f16(dst, src, H * D); /* F16C, same bits */
                else
                    for (int64_t i = 0; i < H * D; i++) dst[i] = miser_f32_to_f16(src[i]);
            } else
                memcpy((float *)cache + (past + r) * H * D, src, sizeof(float) * (size_t)(H * D));
        }
        v->data = cache;
        v->dtype = s->kv_f16 ? MISER_DTYPE_F16 : MISER_DTYPE_F32;
        contiguous_strides(v);
        return MISER_OK;
    }
    default: break;
    }
    /* ops that write a fresh buffer in the arena (a batched pass's tail
     * nodes: in the tail buffers, from row out_base) */
    v->data = s->arena + n->offset;
    contiguous_strides(v);
    if (bt && bt->tail_node[id] && bt->tail_off[id] >= 0)
        v->data = bt->tail + bt->tail_off[id] + bt->out_base * (miser_tview_numel(v) / (v->shape[1] ? v->shape[1] : 1)) * 4;
    float *y = v->data;
    switch (n->op) {
    case MISER_OP_GATHER: {
        int64_t C = a->shape[1], V = a->shape[0], cnt = miser_tview_numel(b);
        const int32_t *ids = b->data;
        for (int64_t r = 0; r < cnt; r++) {
            int64_t id_ = ids[r];
            if (id_ < 0 || id_ >= V)
                return miser_error_set(MISER_ERR_RANGE, "token id %lld is outside the table '%s' of %lld rows",
                                       (long long)id_, n->name, (long long)V);
            const int64_t bl = miser_dtype_block(a->dtype), e0 = id_ * a->stride[0];
            if (bl > 1 && a->stride[1] == 1 && e0 % bl == 0 && C % bl == 0)
                /* a row of whole blocks (a GGUF Q6_K / Q4_K table): each block
                 * decoded once, not once per element (5 % of a GPT-2 Q4_K_M
                 * prefill); the same values as miser_load_elem's */
                miser_to_f32(a->dtype, a->data, (uint64_t)e0, (uint64_t)C, y + r * C);
            else
                for (int64_t c = 0; c < C; c++) y[r * C + c] = miser_load_elem(a->dtype, a->data, e0 + c * a->stride[1]);
        }
        return MISER_OK;
    }
    case MISER_OP_ADD:
    case MISER_OP_MUL:
        if (n->op == MISER_OP_ADD && is_f32_contig(a) && is_f32_contig(b) && miser_tview_numel(a) == miser_tview_numel(v) &&
            miser_tview_numel(b) == miser_tview_numel(v)) {
            miser_threadpool_run(s->pool, task_run, &t);
            return MISER_OK;
        }
        miser_ref_binary(n->op == MISER_OP_MUL, a, b, y, v->ndim, v->shape);
        return MISER_OK;
    case MISER_OP_SCALE:
    case MISER_OP_CONTIGUOUS:
        miser_ref_copy(a, y, n->op == MISER_OP_SCALE ? n->attr.f[0] : 1.0f);
        return MISER_OK;
    case MISER_OP_GELU:
    case MISER_OP_LAYERNORM:
    case MISER_OP_RMSNORM:
        if (!is_f32_contig(a)) return exec_fail(n, id, "input must be contiguous f32");
        miser_threadpool_run(s->pool, task_run, &t);
        return MISER_OK;
    case MISER_OP_SILU: {
        miser_ref_copy(a, y, 1.0f); /* any strides in, contiguous out */
        const int64_t cnt = miser_tview_numel(v);
        for (int64_t i = 0; i < cnt; i++) y[i] = y[i] / (1.0f + expf(-y[i]));
        return MISER_OK;
    }
    case MISER_OP_SWIGLU:
        if (!is_f32_contig(a) || !is_f32_contig(b)) return exec_fail(n, id, "swiglu inputs must be contiguous f32");
        miser_threadpool_run(s->pool, task_run, &t);
        return MISER_OK;
    case MISER_OP_ROPE:
        if (a->dtype != MISER_DTYPE_F32 || a->stride[3] != 1 || a->stride[2] != a->shape[3])
            return exec_fail(n, id, "rope input rows must be [H, D] contiguous f32");
        miser_threadpool_run(s->pool, task_run, &t);
        return MISER_OK;
    case MISER_OP_SOFTMAX:
        if (!is_f32_contig(a)) return exec_fail(n, id, "input must be contiguous f32");
        t.valid0 = S - T + 1;
        miser_threadpool_run(s->pool, task_run, &t);
        return MISER_OK;
    case MISER_OP_EINSUM: {
        miser_einsum e;
        int32_t ranks[2] = {a->ndim, b ? b->ndim : 0};
        miser_status st = miser_einsum_parse(n->attr.eq, n->n_in, ranks, &e);
        if (st) return st;
        miser_ref_einsum(&e, a, b, y, v->shape);
        return MISER_OK;
    }
    case MISER_OP_LINEARS: return miser_linears_exec(s, n, id, t.in, v); /* one dispatch, several weights: linears.c */
    case MISER_OP_MATMUL:
    case MISER_OP_LINEAR: {
        int64_t M, ldx;
        int fast = a->dtype == MISER_DTYPE_F32 && b->ndim == 2 && rows_of(a, &M, &ldx) == 0 &&
                   (n->op == MISER_OP_LINEAR || g->nodes[n->in[1]].op == MISER_OP_CONST);
        if (!fast) {
            if (n->op == MISER_OP_LINEAR) return exec_fail(n, id, "linear input rows are not evenly strided");
            miser_ref_matmul(a, b, y, v->ndim, v->shape);
            return MISER_OK;
        }
        t.la = (miser_linear_args){.M = M, .N = b->shape[1], .K = b->shape[0], .x = a->data, .ldx = ldx,
                                   .w = b->data, .wdt = b->dtype, .wsk = b->stride[0], .wsn = b->stride[1],
                                   .y = y, .ldy = b->shape[1]};
        if (n->op == MISER_OP_LINEAR) {
            t.la.act = (int)n->attr.i[0];
            if (n->n_in == 3) {
                t.la.bias = t.in[2]->data;
                t.la.bdt = t.in[2]->dtype;
                if (t.in[2]->stride[0] != 1) return exec_fail(n, id, "bias must be contiguous");
            }
        }
        const int64_t need = miser_linear_partial_floats(&t.la);
        if (need > 0 && need <= s->partial_cap) { /* decode K split: two phases, the pool's barrier between */
            t.la.partial = s->partial;
            miser_threadpool_run(s->pool, task_run, &t);
            t.la.phase = 1;
        }
        miser_threadpool_run(s->pool, task_run, &t);
        return MISER_OK;
    }
    case MISER_OP_ATTENTION: {
        const miser_tview *kv = t.in[1], *vv = t.in[2];
        int64_t H = a->shape[2], D = a->shape[3], KVH = kv->shape[2];
        if (KVH < 1 || H % KVH || a->stride[3] != 1 || a->stride[2] != D || kv->stride[3] != 1 || kv->stride[2] != D || vv->stride[3] != 1 ||
            vv->stride[2] != D || kv->dtype != vv->dtype)
            return exec_fail(n, id, "attention operands must have contiguous [H, D] rows");
        t.aa = (miser_attention_args){.T = T, .S = S, .H = H, .D = D, .group = H / KVH, .q = a->data, .q_row = a->stride[1],
                                      .k = kv->data, .v = vv->data, .kvdt = kv->dtype, .k_row = kv->stride[1],
                                      .v_row = vv->stride[1], .out = y, .o_row = H * D, .scale = n->attr.f[0],
                                      .scratch = s->scratch};
        miser_threadpool_run(s->pool, task_run, &t);
        return MISER_OK;
    }
    default: return exec_fail(n, id, "op not executable");
    }
}

miser_status miser_session_run_pass(miser_session *s, int64_t T, const miser_step_batch *b)
{
    const miser_graph *g = &s->p->g;
    /* a batched pass resolves S per sequence (batch_node); T stands in */
    const int64_t S = b ? T : s->past + T;
    if (s->inv_freq) { /* this step's rotary angles, shared by every layer */
        const int64_t half = g->head_dim / 2;
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = 0; j < half; j++) {
                const double ang = (double)s->positions[i] * s->inv_freq[j];
                s->rope_cos[i * half + j] = (float)cos(ang);
                s->rope_sin[i * half + j] = (float)sin(ang);
            }
    }
    s->batch = b;
    miser_status st = MISER_OK;
    for (int32_t i = 0; i < g->n_nodes && !st; i++)
        if (g->nodes[i].op != MISER_OP_NONE) st = run_node(s, i, T, S);
    s->batch = NULL;
    return st;
}

static miser_status step(miser_session *s, const int32_t *ids, int64_t T)
{
    for (int64_t i = 0; i < T; i++) {
        if (ids[i] < 0 || ids[i] >= s->p->cfg.n_vocab)
            return miser_error_set(MISER_ERR_RANGE, "token id %d is outside the vocabulary (0..%lld)", ids[i],
                                   (long long)s->p->cfg.n_vocab - 1);
        s->ids[i] = ids[i];
        s->positions[i] = (int32_t)(s->past + i);
    }
    miser_status st = miser_session_run_pass(s, T, NULL);
    if (st) return st;
    s->past += T;
    return MISER_OK;
}

miser_status miser_session_eval(miser_session *s, const int32_t *ids, int64_t n, const float **logits)
{
    if (n < 1) return miser_error_set(MISER_ERR_INVALID, "eval needs at least one token");
    if (s->past + n > s->capacity)
        return miser_error_set(MISER_ERR_RANGE, "sequence of %lld tokens exceeds the context capacity of %lld",
                               (long long)(s->past + n), (long long)s->capacity);
    for (int64_t done = 0; done < n;) {
        int64_t T = n - done < s->p->max_batch ? n - done : s->p->max_batch;
        miser_status st = step(s, ids + done, T);
        if (st) return st;
        done += T;
    }
    if (logits) *logits = s->views[s->p->output].data;
    return MISER_OK;
}
