/* Batched multi-sequence steps over the paged KV pool. A step's items (one
 * per sequence) become consecutive rows of one pass of session.c's executor:
 * row-wise nodes run once over all rows, so the weights are read once for
 * every sequence; the nodes that depend on the sequence are handled here per
 * segment (miser_batch_node): KV_WRITE writes each row into its sequence's
 * blocks, ATTENTION runs per sequence over its own blocks (kernels.h's block
 * table), LAST_TOKEN picks each sequence's last row into the tail buffers
 * where the logits head runs over just those rows. ROPE and the position
 * embedding read the per-row positions the pass is given.
 *
 * Ownership: the batch owns its executor session (no KV of its own), the
 * pool, the per-sequence block lists and the tail buffers; the plan (and so
 * the model) must outlive it. One thread drives it. */
#include "internal.h"
#include "miser/alloc.h"
#include "miser/batch.h"

#include <string.h>

typedef struct batch_seq {
    int64_t past;     /* positions written */
    int64_t n_blk;    /* blocks held */
    int64_t promised; /* blocks promised in total (taken ones included) */
    int64_t *blk;     /* [max_blk] pool indices */
    void **base;      /* [max_blk] their addresses */
} batch_seq;

struct miser_batch {
    const miser_plan *p;
    miser_session *x;
    miser_kv_pool *pool;
    int n_seqs;
    int64_t capacity, max_blk, bt;
    batch_seq *seq;
    unsigned char *tail_node;
    int64_t *tail_off;
    char *tail;
    const void **kt, **vt;
    miser_step_seg *segs;  /* [n_seqs] */
    int64_t *done;         /* [n_seqs] rows of each item done this step */
    int64_t *taken;        /* [n_seqs] blocks each item took this step */
    miser_step_batch sb;
};

static void strides_of(miser_tview *v)
{
    int64_t st = 1;
    for (int i = v->ndim - 1; i >= 0; i--) {
        v->stride[i] = st;
        st *= v->shape[i];
    }
}

/* the KV_WRITE node whose cache a K or V operand reads (through views) */
static int32_t kv_source(const miser_graph *g, int32_t id)
{
    while (id >= 0 && g->nodes[id].op != MISER_OP_KV_WRITE && (g->nodes[id].flags & MISER_NODE_VIEW) &&
           g->nodes[id].n_in >= 1)
        id = g->nodes[id].in[0];
    return id >= 0 && g->nodes[id].op == MISER_OP_KV_WRITE ? id : -1;
}

typedef struct {
    const miser_kernels *k;
    miser_attention_args aa;
} attn_task;

static void attn_run(void *ctx, int ith, int nth)
{
    attn_task *t = ctx;
    t->k->attention(&t->aa, ith, nth);
}

static int node_fail(miser_status *st, const miser_node *n, int32_t id, const char *why)
{
    *st = miser_error_set(MISER_ERR_UNSUPPORTED, "batched step, node %d (%s '%s'): %s", id, miser_op_name(n->op), n->name,
                          why);
    return 1;
}

int miser_batch_node(miser_session *s, int32_t id, int64_t T, miser_status *st)
{
    const miser_step_batch *b = s->batch;
    const miser_graph *g = &s->p->g;
    const miser_node *n = &g->nodes[id];
    miser_tview *v = &s->views[id];
    const miser_tview *a = n->n_in ? &s->views[n->in[0]] : NULL;
    const size_t es = s->kv_f16 ? 2 : 4;
    (void)T;
    *st = MISER_OK;
    switch (n->op) {
    case MISER_OP_KV_WRITE: {
        const int64_t l = n->attr.i[0], H = g->n_kv_head > 0 ? g->n_kv_head : g->n_head, D = g->head_dim;
        if (a->dtype != MISER_DTYPE_F32 || a->stride[3] != 1 || a->stride[2] != D)
            return node_fail(st, n, id, "kv_write input rows must be [H, D] contiguous f32");
        const int64_t off = l * b->layer_bytes + (n->attr.i[1] ? b->half_bytes : 0);
        for (int i = 0; i < b->n_seg; i++) {
            const miser_step_seg *sg = &b->seg[i];
            for (int64_t r = 0; r < sg->T; r++) {
                const int64_t pos = sg->past + r;
                char *dst = (char *)sg->blocks[pos / b->blk_tokens] + off + (size_t)((pos % b->blk_tokens) * H * D) * es;
                const float *src = (const float *)a->data + (sg->row0 + r) * a->stride[1];
                if (s->kv_f16 && s->k->to_f16) s->k->to_f16((uint16_t *)dst, src, H * D); /* F16C, same bits */
                else if (s->kv_f16) {
                    uint16_t *d16 = (uint16_t *)dst;
                    for (int64_t e = 0; e < H * D; e++) d16[e] = miser_f32_to_f16(src[e]);
                } else
                    memcpy(dst, src, sizeof(float) * (size_t)(H * D));
            }
        }
        /* no contiguous cache: the view stands for the blocks (ATTENTION reads them through b) */
        v->data = b->seg[0].blocks[0];
        v->dtype = s->kv_f16 ? MISER_DTYPE_F16 : MISER_DTYPE_F32;
        strides_of(v);
        return 1;
    }
    case MISER_OP_ATTENTION: {
        const miser_tview *kv = &s->views[n->in[1]], *vv = &s->views[n->in[2]];
        const int32_t kw = kv_source(g, n->in[1]), vw = kv_source(g, n->in[2]);
        if (kw < 0 || vw < 0 || g->nodes[kw].attr.i[0] != g->nodes[vw].attr.i[0] || g->nodes[kw].attr.i[1] != 0 ||
            g->nodes[vw].attr.i[1] != 1)
            return node_fail(st, n, id, "attention must read the KV cache directly");
        const int64_t l = g->nodes[kw].attr.i[0], H = a->shape[2], D = a->shape[3], KVH = kv->shape[2];
        if (KVH < 1 || H % KVH || a->dtype != MISER_DTYPE_F32 || a->stride[3] != 1 || a->stride[2] != D ||
            vv->shape[2] != KVH)
            return node_fail(st, n, id, "attention operands must have contiguous [H, D] rows");
        v->data = s->arena + n->offset;
        strides_of(v);
        float *y = v->data;
        attn_task t = {.k = s->k};
        for (int i = 0; i < b->n_seg; i++) {
            const miser_step_seg *sg = &b->seg[i];
            const int64_t S = sg->past + sg->T, nb = (S + b->blk_tokens - 1) / b->blk_tokens;
            for (int64_t j = 0; j < nb; j++) {
                b->kt[j] = (const char *)sg->blocks[j] + l * b->layer_bytes;
                b->vt[j] = (const char *)sg->blocks[j] + l * b->layer_bytes + b->half_bytes;
            }
            t.aa = (miser_attention_args){.T = sg->T, .S = S, .H = H, .D = D, .group = H / KVH,
                                          .q = (const float *)a->data + sg->row0 * a->stride[1], .q_row = a->stride[1],
                                          .kvdt = s->kv_f16 ? MISER_DTYPE_F16 : MISER_DTYPE_F32, .k_row = KVH * D,
                                          .v_row = KVH * D, .out = y + sg->row0 * H * D, .o_row = H * D,
                                          .scale = n->attr.f[0], .scratch = s->scratch, .kblk = b->kt, .vblk = b->vt,
                                          .blk_rows = b->blk_tokens};
            miser_threadpool_run(s->pool, attn_run, &t);
        }
        return 1;
    }
    case MISER_OP_LAST_TOKEN: {
        const int64_t C = a->shape[a->ndim - 1];
        if (a->dtype != MISER_DTYPE_F32 || a->ndim != 3 || a->stride[2] != 1)
            return node_fail(st, n, id, "last_token input must be [1, T, C] f32 rows");
        v->dtype = MISER_DTYPE_F32;
        strides_of(v);
        v->data = b->tail + b->tail_off[id] + b->out_base * C * 4;
        float *y = v->data;
        for (int i = 0; i < b->n_seg; i++) {
            const miser_step_seg *sg = &b->seg[i];
            if (sg->out_row < 0) continue;
            memcpy(y + (sg->out_row - b->out_base) * C, (const float *)a->data + (sg->row0 + sg->T - 1) * a->stride[1],
                   sizeof(float) * (size_t)C);
        }
        return 1;
    }
    case MISER_OP_SOFTMAX:
    case MISER_OP_EINSUM:
        return node_fail(st, n, id,
                         "the unfused attention runs one sequence at a time (batched steps need the default pipeline)");
    default: return 0;
    }
}

/* ---- the batch ---- */

/* The tail: LAST_TOKEN and everything computed from it, one row per
 * sequence ([1, 1, C] in the graph, [1, n_out, C] in a batched pass). Marks
 * tail nodes (tail_node may be NULL), sets their offsets (tail_off may be
 * NULL) and returns the bytes, or -1 with the error set. */
static int64_t tail_layout(const miser_graph *g, int n_seqs, unsigned char *tail_node, int64_t *tail_off)
{
    int64_t bytes = 0;
    unsigned char *mark = tail_node ? tail_node : miser_calloc(MISER_MEM_SCRATCH, (size_t)g->n_nodes + 1, 1);
    if (!mark) return miser_error_set(MISER_ERR_NOMEM, "out of memory"), -1;
    for (int32_t i = 0; i < g->n_nodes && bytes >= 0; i++) {
        const miser_node *n = &g->nodes[i];
        if (tail_off) tail_off[i] = -1;
        int t = n->op == MISER_OP_LAST_TOKEN;
        for (int k = 0; k < n->n_in && !t; k++) t = mark[n->in[k]];
        if (!t || n->op == MISER_OP_NONE) continue;
        mark[i] = 1;
        if (n->ndim != 3 || n->shape[0] != 1 || n->shape[1] != 1 || n->shape[2] < 1) {
            miser_error_set(MISER_ERR_UNSUPPORTED, "batched steps: node '%s' after the last-token pick is not [1, 1, C]", n->name);
            bytes = -1;
            break;
        }
        if ((n->flags & MISER_NODE_VIEW) && n->op != MISER_OP_LAST_TOKEN) continue;
        if (n->dtype != MISER_DTYPE_F32) {
            miser_error_set(MISER_ERR_UNSUPPORTED, "batched steps: node '%s' after the last-token pick is not f32", n->name);
            bytes = -1;
            break;
        }
        if (tail_off) tail_off[i] = bytes;
        bytes += (4 * n->shape[2] * n_seqs + 63) / 64 * 64;
    }
    if (!tail_node) miser_free(mark);
    return bytes;
}

void miser_batch_footprint_get(const miser_plan *p, const miser_batch_options *o, miser_batch_footprint *out)
{
    memset(out, 0, sizeof *out);
    const int n_seqs = o->n_seqs > 0 ? o->n_seqs : 1;
    miser_session_options so = {.capacity = o->capacity, .threads = o->threads, .kv_f16 = o->kv_f16};
    miser_session_footprint f;
    miser_session_footprint_get(p, &so, &f);
    miser_kv_geom kg;
    miser_kv_geom_of_plan(p, o->kv_f16, o->block_tokens, &kg);
    const int64_t max_blk = miser_kv_blocks_for(&kg, f.capacity);
    out->capacity = f.capacity;
    out->n_blocks = o->n_blocks > 0 ? o->n_blocks : max_blk * n_seqs;
    out->kv_bytes = miser_kv_pool_bytes(&kg, out->n_blocks);
    out->arena_bytes = f.arena_bytes;
    out->scratch_bytes = f.scratch_bytes;
    const int64_t tail = tail_layout(&p->g, n_seqs, NULL, NULL);
    out->tail_bytes = tail > 0 ? (uint64_t)tail : 64;
    /* the executor's ids/positions/views/rope tables (no per-layer cache
     * pointers: it has no cache of its own), the block lists and tables, the
     * tail marks and offsets, the sequences and items */
    out->other_bytes = f.other_bytes - 2 * sizeof(void *) * (uint64_t)p->g.n_layer +
                       (uint64_t)n_seqs * (uint64_t)max_blk * (sizeof(int64_t) + sizeof(void *)) +
                       2 * sizeof(void *) * (uint64_t)(max_blk + 1) +
                       ((uint64_t)p->g.n_nodes + 1) * (1 + sizeof(int64_t)) +
                       (uint64_t)n_seqs * (sizeof(batch_seq) + sizeof(miser_step_seg) + 2 * sizeof(int64_t)) +
                       sizeof(miser_batch) + sizeof(miser_session) + (uint64_t)out->n_blocks * sizeof(int64_t);
}

miser_status miser_batch_create(const miser_plan *p, const miser_batch_options *o, miser_batch **out)
{
    *out = NULL;
    const miser_graph *g = &p->g;
    if (o->n_seqs < 1) return miser_error_set(MISER_ERR_INVALID, "batch: at least one sequence is needed");
    int n_attn = 0, n_last = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const miser_node *n = &g->nodes[i];
        if (n->op == MISER_OP_EINSUM || (n->op == MISER_OP_SOFTMAX && n->attr.i[0]))
            return miser_error_set(MISER_ERR_UNSUPPORTED,
                                   "batched steps need the fused attention (the default pipeline); node '%s' is the "
                                   "unfused form",
                                   n->name);
        if (n->op == MISER_OP_ATTENTION) {
            n_attn++;
            if (kv_source(g, n->in[1]) < 0 || kv_source(g, n->in[2]) < 0)
                return miser_error_set(MISER_ERR_UNSUPPORTED, "batched steps: attention '%s' does not read the KV cache",
                                       n->name);
        }
        n_last += n->op == MISER_OP_LAST_TOKEN;
    }
    if (!n_attn) return miser_error_set(MISER_ERR_UNSUPPORTED, "batched steps need the fused attention (the default pipeline)");
    if (n_last != 1) return miser_error_set(MISER_ERR_UNSUPPORTED, "batched steps need a plan with last-token logits (not all_logits)");
    miser_batch *b = miser_calloc(MISER_MEM_OTHER, 1, sizeof *b);
    if (!b) return MISER_ERR_NOMEM;
    b->p = p;
    b->n_seqs = o->n_seqs;
    miser_status st;
    miser_session_options so = {.capacity = o->capacity, .threads = o->threads, .kv_f16 = o->kv_f16};
    if ((st = miser_session_create_exec(p, &so, 0, &b->x))) goto fail;
    b->capacity = b->x->capacity;
    miser_kv_geom kg;
    miser_kv_geom_of_plan(p, o->kv_f16, o->block_tokens, &kg);
    b->bt = kg.block_tokens;
    b->max_blk = miser_kv_blocks_for(&kg, b->capacity);
    const int64_t n_blocks = o->n_blocks > 0 ? o->n_blocks : b->max_blk * o->n_seqs;
    if ((st = miser_kv_pool_create(&kg, n_blocks, &b->pool))) goto fail;
    b->seq = miser_calloc(MISER_MEM_OTHER, (size_t)o->n_seqs, sizeof *b->seq);
    b->segs = miser_calloc(MISER_MEM_OTHER, (size_t)o->n_seqs, sizeof *b->segs);
    b->done = miser_calloc(MISER_MEM_OTHER, (size_t)o->n_seqs, sizeof *b->done);
    b->taken = miser_calloc(MISER_MEM_OTHER, (size_t)o->n_seqs, sizeof *b->taken);
    b->kt = miser_calloc(MISER_MEM_OTHER, (size_t)b->max_blk + 1, sizeof *b->kt);
    b->vt = miser_calloc(MISER_MEM_OTHER, (size_t)b->max_blk + 1, sizeof *b->vt);
    b->tail_node = miser_calloc(MISER_MEM_OTHER, (size_t)g->n_nodes + 1, 1);
    b->tail_off = miser_malloc(MISER_MEM_OTHER, sizeof(int64_t) * ((size_t)g->n_nodes + 1));
    if (!b->seq || !b->segs || !b->done || !b->taken || !b->kt || !b->vt || !b->tail_node || !b->tail_off) goto nomem;
    for (int i = 0; i < o->n_seqs; i++) {
        b->seq[i].blk = miser_malloc(MISER_MEM_OTHER, sizeof(int64_t) * (size_t)b->max_blk);
        b->seq[i].base = miser_malloc(MISER_MEM_OTHER, sizeof(void *) * (size_t)b->max_blk);
        if (!b->seq[i].blk || !b->seq[i].base) goto nomem;
    }
    const int64_t tail_bytes = tail_layout(g, o->n_seqs, b->tail_node, b->tail_off);
    if (tail_bytes < 0) {
        st = MISER_ERR_UNSUPPORTED;
        goto fail;
    }
    b->tail = miser_aligned_alloc(MISER_MEM_ACTIVATIONS, 64, (size_t)(tail_bytes ? tail_bytes : 64));
    if (!b->tail) goto nomem;
    const int64_t HD = kg.kv_heads * kg.head_dim;
    b->sb = (miser_step_batch){.blk_tokens = b->bt, .layer_bytes = 2 * b->bt * HD * (kg.f16 ? 2 : 4),
                               .half_bytes = b->bt * HD * (kg.f16 ? 2 : 4), .tail_node = b->tail_node,
                               .tail_off = b->tail_off, .tail = b->tail, .kt = b->kt, .vt = b->vt};
    *out = b;
    return MISER_OK;
nomem:
    st = MISER_ERR_NOMEM;
fail:
    miser_batch_free(b);
    return st;
}

void miser_batch_free(miser_batch *b)
{
    if (!b) return;
    for (int i = 0; b->seq && i < b->n_seqs; i++) {
        miser_free(b->seq[i].blk);
        miser_free(b->seq[i].base);
    }
    miser_free(b->seq);
    miser_free(b->segs);
    miser_free(b->done);
    miser_free(b->taken);
    miser_free(b->kt);
    miser_free(b->vt);
    miser_free(b->tail_node);
    miser_free(b->tail_off);
    miser_free(b->tail);
    miser_kv_pool_free(b->pool);
    miser_session_free(b->x);
    miser_free(b);
}

int64_t miser_batch_seq_position(const miser_batch *b, int seq)
{
    return seq >= 0 && seq < b->n_seqs ? b->seq[seq].past : 0;
}
int64_t miser_batch_capacity(const miser_batch *b) { return b->capacity; }
int miser_batch_n_seqs(const miser_batch *b) { return b->n_seqs; }
miser_kv_pool *miser_batch_pool(miser_batch *b) { return b->pool; }

int miser_batch_seq_reserve(miser_batch *b, int seq, int64_t positions)
{
    if (seq < 0 || seq >= b->n_seqs) return -1;
    batch_seq *q = &b->seq[seq];
    if (positions > b->capacity) positions = b->capacity;
    const int64_t need = miser_kv_blocks_for(miser_kv_pool_geom(b->pool), positions);
    const int64_t have = q->promised > q->n_blk ? q->promised : q->n_blk;
    if (need <= have) return 0;
    if (miser_kv_pool_reserve(b->pool, need - have)) return -1;
    q->promised = need;
    return 0;
}

void miser_batch_seq_release(miser_batch *b, int seq)
{
    if (seq < 0 || seq >= b->n_seqs) return;
    batch_seq *q = &b->seq[seq];
    if (q->promised > q->n_blk) miser_kv_pool_unreserve(b->pool, q->promised - q->n_blk);
    for (int64_t j = 0; j < q->n_blk; j++) miser_kv_pool_give(b->pool, q->blk[j]);
    q->n_blk = q->promised = q->past = 0;
}

/* Blocks for positions up to `upto`: from the promise first. -1 when the
 * pool has none left (what was taken stays with the sequence). */
static int seq_grow(miser_batch *b, batch_seq *q, int64_t upto, int64_t *taken)
{
    const int64_t need = miser_kv_blocks_for(miser_kv_pool_geom(b->pool), upto);
    while (q->n_blk < need) {
        const int64_t blk = miser_kv_pool_take(b->pool, q->n_blk < q->promised);
        if (blk < 0) return -1;
        q->blk[q->n_blk] = blk;
        q->base[q->n_blk++] = miser_kv_pool_block(b->pool, blk);
        (*taken)++;
    }
    return 0;
}

/* give back the blocks an item took this step (it failed before running) */
static void seq_shrink(miser_batch *b, batch_seq *q, int64_t taken)
{
    for (; taken > 0 && q->n_blk > 0; taken--) miser_kv_pool_give(b->pool, q->blk[--q->n_blk]);
}

miser_status miser_batch_step(miser_batch *b, miser_batch_item *items, int n)
{
    const miser_plan *p = b->p;
    miser_session *x = b->x;
    const int64_t V = p->cfg.n_vocab, R = p->max_batch;
    if (n < 0 || n > b->n_seqs) return miser_error_set(MISER_ERR_INVALID, "batch step: %d items for %d sequences", n, b->n_seqs);
    /* validate and take blocks; an item that fails changes nothing */
    int live = 0;
    for (int i = 0; i < n; i++) {
        miser_batch_item *it = &items[i];
        it->logits = NULL;
        it->status = MISER_OK;
        b->done[i] = b->taken[i] = 0;
        if (it->seq < 0 || it->seq >= b->n_seqs || it->n < 1 || !it->ids) {
            it->status = miser_error_set(MISER_ERR_INVALID, "batch step: bad item (sequence %d, %lld tokens)", it->seq,
                                         (long long)it->n);
            continue;
        }
        for (int k = 0; k < i && !it->status; k++)
            if (items[k].seq == it->seq)
                it->status = miser_error_set(MISER_ERR_INVALID, "batch step: sequence %d has two items", it->seq);
        if (it->status) continue;
        batch_seq *q = &b->seq[it->seq];
        if (q->past + it->n > b->capacity) {
            it->status = miser_error_set(MISER_ERR_RANGE, "sequence of %lld tokens exceeds the context capacity of %lld",
                                         (long long)(q->past + it->n), (long long)b->capacity);
            continue;
        }
        for (int64_t r = 0; r < it->n && !it->status; r++)
            if (it->ids[r] < 0 || it->ids[r] >= V)
                it->status = miser_error_set(MISER_ERR_RANGE, "token id %d is outside the vocabulary (0..%lld)", it->ids[r],
                                             (long long)V - 1);
        if (it->status) continue;
        if (seq_grow(b, q, q->past + it->n, &b->taken[i])) {
            seq_shrink(b, q, b->taken[i]);
            it->status = miser_error_set(MISER_ERR_NOMEM, "the KV pool has no free block left (%lld blocks)",
                                         (long long)miser_kv_pool_blocks_total(b->pool));
            continue;
        }
        live++;
    }
    /* passes of at most R rows: items in order, a long one continued in the next */
    int64_t out_total = 0;
    while (live > 0) {
        int64_t rows = 0, n_out = 0;
        int nseg = 0;
        for (int i = 0; i < n && rows < R; i++) {
            miser_batch_item *it = &items[i];
            if (it->status || b->done[i] >= it->n) continue;
            batch_seq *q = &b->seq[it->seq];
            const int64_t c = it->n - b->done[i] < R - rows ? it->n - b->done[i] : R - rows;
            miser_step_seg *sg = &b->segs[nseg++];
            const int last = b->done[i] + c == it->n;
            *sg = (miser_step_seg){.row0 = rows, .T = c, .past = q->past, .blocks = q->base,
                                   .out_row = last && it->want_logits ? out_total + n_out++ : -1};
            for (int64_t r = 0; r < c; r++) {
                x->ids[rows + r] = it->ids[b->done[i] + r];
                x->positions[rows + r] = (int32_t)(q->past + r);
            }
            rows += c;
        }
        b->sb.n_seg = nseg;
        b->sb.seg = b->segs;
        b->sb.n_out = n_out;
        b->sb.out_base = out_total;
        miser_status st = miser_session_run_pass(x, rows, &b->sb);
        if (st) { /* the sequences' positions stay where they were (their new rows were not all written) */
            for (int i = 0; i < n; i++) {
                if (items[i].status) continue;
                items[i].status = st;
                items[i].logits = NULL;
            }
            return st;
        }
        const float *lg = x->views[p->output].data;
        int si = 0;
        for (int i = 0; i < n && si < nseg; i++) {
            miser_batch_item *it = &items[i];
            if (it->status || b->done[i] >= it->n) continue;
            const miser_step_seg *sg = &b->segs[si++];
            b->seq[it->seq].past += sg->T;
            b->done[i] += sg->T;
            if (sg->out_row >= 0) it->logits = lg + (sg->out_row - out_total) * V;
            if (b->done[i] >= it->n) live--;
        }
        out_total += n_out;
    }
    return MISER_OK;
}
