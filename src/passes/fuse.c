/* Fusions that pay, in three in-order walks:
 *
 * 1. Linear: MATMUL(x, constant W [K, N]) becomes LINEAR(x, W), which runs
 *    the fast kernel over W's stored layout (any strides: a transposed view
 *    of wte is read in place). A following ADD of a constant bias — directly
 *    or after a reshape that only splits N, as EinsumDense's [H, D] bias —
 *    moves into the LINEAR (a [N] view of the same bias storage), and a
 *    following GELU becomes the LINEAR's activation.
 *    MUL(SILU(gate), up) becomes one SWIGLU(gate, up).
 * 2. Attention: TRANSPOSE(MATMUL(causal SOFTMAX(MATMUL(q^T, k^T)), v^T)) as
 *    einsum decomposition leaves GPT-2's (and multi-head Llama's)
 *    scores/combine einsums becomes one ATTENTION(q, k, v) reading the KV
 *    cache in place; so does the 5-D grouped-query chain of the Llama
 *    builder's "bqvrh,bkvh->bvrqk" / "bvrqk,bkvh->bqvrh" (match_gqa), whose
 *    K/V have the KV heads only. A SCALE on the query is folded into the
 *    attention scale. Copies made redundant by this (CONTIGUOUS of a now
 *    contiguous value) are dropped.
 * 3. QKV: LINEARs with the same input whose weights (and biases) are
 *    adjacent column blocks of one stored tensor — Q|K|V of c_attn [C, 3C],
 *    stored row-major or (q8_0 cache) transposed — become one LINEAR over
 *    the whole block, and each original value becomes a SLICE view of its
 *    output (row stride 3C), which KV_WRITE and ATTENTION accept.
 * Nodes left unused are removed by the DCE that follows in the pipeline. */
#include "rewrite.h"
#include "miser/alloc.h"

#include <string.h>

static int is_const(const miser_graph *g, int32_t id) { return g->nodes[id].op == MISER_OP_CONST; }

static int64_t prod(const int64_t *s, int n)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++) p *= s[i];
    return p;
}

/* A [N] view of bias constant b (new id) when its shape (leading 1s
 * stripped) equals the trailing dims of `shape` and multiplies to N. */
static int bias_view(const miser_node *c, const miser_node *y, int64_t N, miser_node *out)
{
    int lead = 0;
    while (lead < c->ndim - 1 && c->shape[lead] == 1) lead++;
    int nb = c->ndim - lead;
    if (nb > y->ndim || prod(c->shape + lead, nb) != N) return 0;
    if (memcmp(c->shape + lead, y->shape + y->ndim - nb, sizeof(int64_t) * (size_t)nb)) return 0;
    int64_t st[MISER_MAX_DIMS];
    if (miser_pass_reshape_strides(c->ndim, c->shape, c->cst.stride, 1, &N, st) || st[0] != 1) return 0;
    *out = *c;
    out->ndim = 1;
    memset(out->shape, 0, sizeof out->shape);
    memset(out->cst.stride, 0, sizeof out->cst.stride);
    out->shape[0] = N;
    out->cst.stride[0] = 1;
    out->cst.hash = 0;
    miser_pass_name(out, c->name, ".flat");
    return 1;
}

static int same_shape(const miser_node *a, const miser_node *b)
{
    return a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim);
}

static miser_status fuse_linear(miser_graph *g)
{
    miser_rw r;
    miser_status st = miser_rw_begin(g, &r);
    if (st) return st;
    const miser_node *old = r.old;
    /* ADDs moved into a LINEAR: 1 + the old id whose value replaces them */
    int32_t *absorbed = miser_calloc(MISER_MEM_COMPILE, (size_t)r.n_old + 1, sizeof(int32_t));
    if (!absorbed) st = MISER_ERR_NOMEM;
    for (int32_t i = 0; i < r.n_old && !st; i++) {
        const miser_node *n = &old[i];
        if (n->op == MISER_OP_NONE) continue;
        if (n->op == MISER_OP_MATMUL && is_const(g, r.map[n->in[1]]) && g->nodes[r.map[n->in[1]]].ndim == 2 &&
            miser_pass_known_contiguous(g, r.map[n->in[0]])) {
            int32_t x = r.map[n->in[0]], w = r.map[n->in[1]];
            int64_t N = g->nodes[w].shape[1];
            miser_node lin = {.op = MISER_OP_LINEAR, .n_in = 2, .in = {x, w}};
            memcpy(lin.name, n->name, sizeof lin.name);
            /* bias: MATMUL -> ADD(c) or MATMUL -> RESHAPE -> ADD(c), single users */
            int32_t add = -1, via = i;
            if (r.uses[i] == 1 && old[r.user1[i]].op == MISER_OP_RESHAPE && r.uses[r.user1[i]] == 1)
                via = r.user1[i];
            if (r.uses[via] == 1 && old[r.user1[via]].op == MISER_OP_ADD) add = r.user1[via];
            miser_node bv;
            if (add >= 0) {
                const miser_node *a = &old[add];
                int32_t other = a->in[0] == via ? a->in[1] : a->in[0];
                if (a->in[0] == a->in[1] || old[other].op != MISER_OP_CONST || !same_shape(a, &old[via]) ||
                    !bias_view(&old[other], &old[via], N, &bv))
                    add = -1;
            }
            if (add >= 0) {
                int32_t b = miser_rw_emit(&r, &bv);
                if (b < 0) {
                    st = MISER_ERR_INVALID;
                    break;
                }
                lin.in[2] = b;
                lin.n_in = 3;
                absorbed[add] = via + 1;
                miser_pass_name(&lin, old[add].name, "");
            }
            int32_t id = miser_rw_emit(&r, &lin);
            if (id < 0) {
                st = MISER_ERR_INVALID;
                break;
            }
            r.map[i] = id;
            continue;
        }
        if (n->op == MISER_OP_ADD && absorbed[i]) {
            r.map[i] = r.map[absorbed[i] - 1];
            continue;
        }
        /* SwiGLU: MUL(SILU(gate), up) -> SWIGLU(gate, up), one pass instead of two */
        if (n->op == MISER_OP_MUL && n->in[0] != n->in[1]) {
            int side = old[n->in[0]].op == MISER_OP_SILU ? 0 : old[n->in[1]].op == MISER_OP_SILU ? 1 : -1;
            if (side >= 0) {
                const miser_node *si = &old[n->in[side]];
                int32_t gate = r.map[si->in[0]], up = r.map[n->in[1 - side]];
                if (r.uses[n->in[side]] == 1 && same_shape(si, &old[n->in[1 - side]]) && same_shape(si, n) &&
                    miser_pass_known_contiguous(g, gate) && miser_pass_known_contiguous(g, up)) {
                    miser_node sw = {.op = MISER_OP_SWIGLU, .n_in = 2, .in = {gate, up}};
                    memcpy(sw.name, n->name, sizeof sw.name);
                    int32_t id = miser_rw_emit(&r, &sw);
                    if (id < 0) {
                        st = MISER_ERR_INVALID;
                        break;
                    }
                    r.map[i] = id;
                    continue;
                }
            }
        }
        if (n->op == MISER_OP_GELU) {
            int32_t src = n->in[0], y = r.map[src];
            miser_node *l = &g->nodes[y];
            if (r.uses[src] == 1 && l->op == MISER_OP_LINEAR && l->attr.i[0] == MISER_ACT_NONE && same_shape(l, n)) {
                l->attr.i[0] = MISER_ACT_GELU;
                r.map[i] = y;
                continue;
            }
        }
        if (miser_rw_keep(&r, i) < 0) st = MISER_ERR_INVALID;
    }
    miser_free(absorbed);
    return miser_rw_end(&r, st);
}

static int is_transpose(const miser_node *nodes, int32_t id, int32_t p0, int32_t p1, int32_t p2, int32_t p3)
{
    const miser_node *t = &nodes[id];
    return t->op == MISER_OP_TRANSPOSE && t->ndim == 4 && t->attr.perm[0] == p0 && t->attr.perm[1] == p1 &&
           t->attr.perm[2] == p2 && t->attr.perm[3] == p3;
}

static int is_transpose5(const miser_node *nodes, int32_t id, const int32_t *p)
{
    const miser_node *t = &nodes[id];
    if (t->op != MISER_OP_TRANSPOSE || t->ndim != 5) return 0;
    for (int i = 0; i < 5; i++)
        if (t->attr.perm[i] != p[i]) return 0;
    return 1;
}

/* The value under a RESHAPE that only inserts a unit dimension at `axis`
 * into a 4-D input (decomposition's broadcast batch dim), or -1. */
static int32_t unit_reshape_of(const miser_node *nodes, int32_t id, int axis)
{
    const miser_node *r = &nodes[id];
    if (r->op != MISER_OP_RESHAPE || r->ndim != 5 || r->shape[axis] != 1) return -1;
    const miser_node *x = &nodes[r->in[0]];
    if (x->ndim != 4) return -1;
    for (int i = 0, j = 0; i < 5; i++) {
        if (i == axis) continue;
        if (r->shape[i] != x->shape[j++]) return -1;
    }
    return r->in[0];
}

/* Grouped-query attention as decomposition leaves the Llama builder's
 * scores "bqvrh,bkvh->bvrqk" and combine "bvrqk,bkvh->bqvrh" einsums:
 *   TRANSPOSE(0,2,1,3,4)( MATMUL( TRANSPOSE(0,1,3,2,4)( causal SOFTMAX(
 *       MATMUL( TRANSPOSE(0,2,3,1,4)(RESHAPE [1,T,KV,R,D] (q)),
 *               RESHAPE [1,KV,1,D,S] (TRANSPOSE(0,2,3,1)(k)) ))),
 *     RESHAPE [1,KV,1,S,D] (TRANSPOSE(0,2,1,3)(v)) ))
 * Returns 1 with q, k, v (old ids) and the softmax's scale when node i is
 * the root of that chain. */
static int match_gqa(const miser_node *old, int32_t i, int32_t *q, int32_t *k, int32_t *v, float *scale)
{
    static const int32_t p_out[5] = {0, 2, 1, 3, 4}, p_pr[5] = {0, 1, 3, 2, 4}, p_q[5] = {0, 2, 3, 1, 4};
    if (!is_transpose5(old, i, p_out)) return 0;
    int32_t mm2 = miser_rw_skip_noops(old, old[i].in[0]);
    if (old[mm2].op != MISER_OP_MATMUL) return 0;
    int32_t tp = miser_rw_skip_noops(old, old[mm2].in[0]);
    if (!is_transpose5(old, tp, p_pr)) return 0;
    int32_t sm = miser_rw_skip_noops(old, old[tp].in[0]);
    if (old[sm].op != MISER_OP_SOFTMAX || !old[sm].attr.i[0]) return 0;
    int32_t mm1 = miser_rw_skip_noops(old, old[sm].in[0]);
    if (old[mm1].op != MISER_OP_MATMUL) return 0;
    int32_t tq = miser_rw_skip_noops(old, old[mm1].in[0]);
    if (!is_transpose5(old, tq, p_q)) return 0;
    int32_t q5 = old[tq].in[0];
    if (old[q5].op != MISER_OP_RESHAPE || old[old[q5].in[0]].ndim != 4) return 0;
    int32_t tk = unit_reshape_of(old, miser_rw_skip_noops(old, old[mm1].in[1]), 2);
    int32_t tv = unit_reshape_of(old, miser_rw_skip_noops(old, old[mm2].in[1]), 2);
    if (tk < 0 || tv < 0 || !is_transpose(old, tk, 0, 2, 3, 1) || !is_transpose(old, tv, 0, 2, 1, 3)) return 0;
    const miser_node *qn = &old[old[q5].in[0]], *q5n = &old[q5];
    /* the groups split the query heads as [KV, R] */
    if (q5n->shape[2] * q5n->shape[3] != qn->shape[2] || q5n->shape[4] != qn->shape[3]) return 0;
    *q = old[q5].in[0];
    *k = old[tk].in[0];
    *v = old[tv].in[0];
    *scale = old[sm].attr.f[0];
    return 1;
}

/* The fused ATTENTION node both matchers below end in (the MHA chain and
 * the GQA chain): old nodes q, k, v with a leading SCALE on q folded into
 * `scale`, named after the chain's last node n. Returns 0 when the mapped q
 * is not [1, T, H, D] (the caller keeps the unfused form); otherwise 1 with
 * *id the emitted node (negative when emitting failed). */
static int emit_attention(miser_graph *g, miser_rw *r, const miser_node *n, int32_t q, int32_t k, int32_t v,
                          float scale, int32_t *id)
{
    const miser_node *old = r->old;
    if (old[q].op == MISER_OP_SCALE) {
        scale *= old[q].attr.f[0];
        q = old[q].in[0];
    }
    miser_node a = {.op = MISER_OP_ATTENTION, .n_in = 3, .in = {r->map[q], r->map[k], r->map[v]}};
    a.attr.f[0] = scale;
    memcpy(a.name, n->name, sizeof a.name);
    const miser_node *qn = &g->nodes[a.in[0]];
    if (qn->ndim != 4 || qn->shape[1] != MISER_DIM_T) return 0;
    *id = miser_rw_emit(r, &a);
    return 1;
}

static miser_status fuse_attention(miser_graph *g)
{
    miser_rw r;
    miser_status st = miser_rw_begin(g, &r);
    if (st) return st;
    const miser_node *old = r.old;
    for (int32_t i = 0; i < r.n_old && !st; i++) {
        const miser_node *n = &old[i];
        if (n->op == MISER_OP_NONE) continue;
        if (is_transpose(old, i, 0, 2, 1, 3)) {
            int32_t mm2 = miser_rw_skip_noops(old, n->in[0]);
            int32_t sm = old[mm2].op == MISER_OP_MATMUL ? miser_rw_skip_noops(old, old[mm2].in[0]) : -1;
            int32_t mm1 = sm >= 0 && old[sm].op == MISER_OP_SOFTMAX && old[sm].attr.i[0]
                              ? miser_rw_skip_noops(old, old[sm].in[0])
                              : -1;
            if (mm1 >= 0 && old[mm1].op == MISER_OP_MATMUL) {
                int32_t tq = miser_rw_skip_noops(old, old[mm1].in[0]), tk = miser_rw_skip_noops(old, old[mm1].in[1]);
                int32_t tv = miser_rw_skip_noops(old, old[mm2].in[1]);
                if (is_transpose(old, tq, 0, 2, 1, 3) && is_transpose(old, tk, 0, 2, 3, 1) &&
                    is_transpose(old, tv, 0, 2, 1, 3)) {
                    int32_t id;
                    if (emit_attention(g, &r, n, old[tq].in[0], old[tk].in[0], old[tv].in[0], old[sm].attr.f[0],
                                       &id)) {
                        if (id >= 0) {
                            r.map[i] = id;
                            continue;
                        }
                        /* shapes did not fit an attention: keep the unfused form */
                    }
                }
            }
        }
        {
            int32_t q, k, v, id;
            float scale;
            if (match_gqa(old, i, &q, &k, &v, &scale)) {
                if (emit_attention(g, &r, n, q, k, v, scale, &id)) {
                    /* the chain's value is [1, T, KV, R, D]: a view of the result */
                    if (id >= 0) id = miser_g_reshape(g, id, n->ndim, n->shape, n->name);
                    if (id >= 0) {
                        r.map[i] = id;
                        continue;
                    }
                    st = MISER_ERR_INVALID;
                    break;
                }
            }
        }
        if (n->op == MISER_OP_CONTIGUOUS && miser_pass_known_contiguous(g, r.map[n->in[0]])) {
            r.map[i] = r.map[n->in[0]];
            continue;
        }
        if (miser_rw_keep(&r, i) < 0) st = MISER_ERR_INVALID;
    }
    return miser_rw_end(&r, st);
}

/* LINEAR i can join a column-block group: a 2-D weight in the rows layout
 * (unit column stride; q8_0: whole blocks along the rows) or in the dot
 * layout (unit row stride, the q8_0 cache's transposed Conv1D weights; q8_0:
 * whole blocks along K, each column starting on a block), and a unit-stride
 * bias. Either way column n starts at element n * stride[1]. */
static int groupable(const miser_graph *g, const miser_node *n)
{
    if (n->op != MISER_OP_LINEAR) return 0;
    const miser_node *w = &g->nodes[n->in[1]];
    const int64_t sk = w->cst.stride[0], sn = w->cst.stride[1];
    const int64_t bl = miser_dtype_block(w->dtype); /* > 1: q8_0 and GGUF's 4-bit blocks */
    const int q8 = bl > 1;
    if (sn == 1) {
        if (q8 && (w->shape[1] % bl || sk % bl)) return 0;
    } else if (sk == 1) {
        if (sn < w->shape[0] || (q8 && (w->shape[0] % bl || sn % bl))) return 0;
    } else
        return 0;
    if (n->n_in == 3 && (g->nodes[n->in[2]].cst.stride[0] != 1 || g->nodes[n->in[2]].op != MISER_OP_CONST)) return 0;
    return 1;
}

static int compatible(const miser_graph *g, const miser_node *a, const miser_node *b)
{
    const miser_node *wa = &g->nodes[a->in[1]], *wb = &g->nodes[b->in[1]];
    if (a->in[0] != b->in[0] || a->n_in != b->n_in || a->attr.i[0] != b->attr.i[0]) return 0;
    if (wa->dtype != wb->dtype || wa->cst.storage != wb->cst.storage || wa->shape[0] != wb->shape[0] ||
        wa->cst.stride[0] != wb->cst.stride[0] || wa->cst.stride[1] != wb->cst.stride[1])
        return 0;
    if (a->n_in == 3) {
        const miser_node *ba = &g->nodes[a->in[2]], *bb = &g->nodes[b->in[2]];
        if (ba->dtype != bb->dtype || ba->cst.storage != bb->cst.storage) return 0;
    }
    return 1;
}

static miser_status fuse_qkv(miser_graph *g)
{
    /* find groups on the current graph first */
    int32_t n = g->n_nodes;
    int32_t *group = miser_malloc(MISER_MEM_COMPILE, sizeof(int32_t) * (size_t)(n + 1)); /* leader id or -1 */
    int32_t *lins = miser_malloc(MISER_MEM_COMPILE, sizeof(int32_t) * (size_t)(n + 1));
    if (!group || !lins) {
        miser_free(group);
        miser_free(lins);
        return MISER_ERR_NOMEM;
    }
    int32_t nl = 0;
    for (int32_t i = 0; i < n; i++) {
        group[i] = -1;
        if (groupable(g, &g->nodes[i])) lins[nl++] = i;
    }
    int any = 0;
    for (int32_t a = 0; a < nl; a++) {
        int32_t lead = lins[a];
        if (group[lead] >= 0) continue;
        int32_t mem[8];
        int nm = 0;
        mem[nm++] = lead;
        for (int32_t b = a + 1; b < nl && nm < 8; b++)
            if (group[lins[b]] < 0 && compatible(g, &g->nodes[lead], &g->nodes[lins[b]])) mem[nm++] = lins[b];
        if (nm < 2) continue;
        /* order by weight address; require adjacency of weights and biases */
        for (int x = 1; x < nm; x++)
            for (int y = x; y > 0 && (const char *)g->nodes[g->nodes[mem[y]].in[1]].cst.data <
                                         (const char *)g->nodes[g->nodes[mem[y - 1]].in[1]].cst.data;
                 y--) {
                int32_t t = mem[y];
                mem[y] = mem[y - 1];
                mem[y - 1] = t;
            }
        int ok = 1;
        for (int x = 0; x + 1 < nm && ok; x++) {
            const miser_node *l0 = &g->nodes[mem[x]], *l1 = &g->nodes[mem[x + 1]];
            const miser_node *w0 = &g->nodes[l0->in[1]], *w1 = &g->nodes[l1->in[1]];
            /* w1's first column follows w0's last: shape[1] columns of stride[1] elements further */
            ok = (const char *)w1->cst.data ==
                 (const char *)w0->cst.data + miser_dtype_bytes(w0->dtype, (uint64_t)(w0->shape[1] * w0->cst.stride[1]));
            if (ok && l0->n_in == 3) {
                const miser_node *b0 = &g->nodes[l0->in[2]], *b1 = &g->nodes[l1->in[2]];
                ok = (const char *)b1->cst.data ==
                     (const char *)b0->cst.data + b0->shape[0] * (int64_t)miser_dtype_bytes(b0->dtype, 1);
            }
        }
        if (!ok) continue;
        for (int x = 0; x < nm; x++) group[mem[x]] = mem[0]; /* mem[0]: lowest address = first columns */
        any = 1;
    }
    miser_free(lins);
    if (!any) {
        miser_free(group);
        return MISER_OK;
    }
    miser_rw r;
    miser_status st = miser_rw_begin(g, &r);
    if (st) {
        miser_free(group);
        return st;
    }
    const miser_node *old = r.old;
    for (int32_t i = 0; i < r.n_old && !st; i++) {
        if (old[i].op == MISER_OP_NONE) continue;
        if (group[i] < 0) {
            if (miser_rw_keep(&r, i) < 0) st = MISER_ERR_INVALID;
            continue;
        }
        if (r.map[i] >= 0) continue; /* emitted with its group */
        int32_t head = group[i];
        /* first member in program order: emit the fused LINEAR and the slices */
        const miser_node *h = &old[head], *hw = &old[h->in[1]];
        int64_t total = 0;
        for (int32_t j = 0; j < r.n_old; j++)
            if (group[j] == head) total += old[old[j].in[1]].shape[1];
        miser_node w = *hw;
        w.shape[1] = total;
        w.cst.hash = 0;
        miser_pass_name(&w, hw->name, ".fused");
        miser_node lin = {.op = MISER_OP_LINEAR, .n_in = h->n_in, .in = {r.map[h->in[0]]}};
        lin.attr.i[0] = h->attr.i[0];
        lin.in[1] = miser_rw_emit(&r, &w);
        if (h->n_in == 3) {
            miser_node b = old[h->in[2]];
            b.shape[0] = total;
            b.cst.hash = 0;
            miser_pass_name(&b, old[h->in[2]].name, ".fused");
            lin.in[2] = miser_rw_emit(&r, &b);
        }
        miser_pass_name(&lin, h->name, ".fused");
        int32_t y = lin.in[1] >= 0 && (lin.n_in < 3 || lin.in[2] >= 0) ? miser_rw_emit(&r, &lin) : -1;
        if (y < 0) {
            st = MISER_ERR_INVALID;
            break;
        }
        const char *base = (const char *)hw->cst.data;
        /* bytes per block of elements: exact for every dtype, q8_0 and the 4-bit blocks included */
        const int64_t hbl = miser_dtype_block(hw->dtype) > 1 ? miser_dtype_block(hw->dtype) : MISER_Q8_0_BLOCK;
        int64_t b32 = (int64_t)miser_dtype_bytes(hw->dtype, (uint64_t)hbl);
        for (int32_t j = 0; j < r.n_old && !st; j++) {
            if (group[j] != head) continue;
            const miser_node *wj = &old[old[j].in[1]];
            int64_t start = ((const char *)wj->cst.data - base) * hbl / b32 / wj->cst.stride[1];
            miser_node s = {.op = MISER_OP_SLICE, .n_in = 1, .in = {y}};
            s.attr.i[0] = g->nodes[y].ndim - 1;
            s.attr.i[1] = start;
            s.attr.i[2] = wj->shape[1];
            memcpy(s.name, old[j].name, sizeof s.name);
            int32_t id = miser_rw_emit(&r, &s);
            if (id < 0) st = MISER_ERR_INVALID;
            else r.map[j] = id;
        }
    }
    miser_free(group);
    return miser_rw_end(&r, st);
}

miser_status miser_pass_fuse(miser_graph *g, const miser_pass_options *o)
{
    (void)o;
    miser_status st = fuse_linear(g);
    if (!st) st = fuse_attention(g);
    if (!st) st = fuse_qkv(g);
    return st;
}
