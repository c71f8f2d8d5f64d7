/* Graph IR: construction, shape inference, verification, statistics, dumps. */
#include "miser/graph.h"
#include "miser/alloc.h"

#include <stdio.h>
#include <string.h>

static const char *const g_op_names[MISER_OP_COUNT] = {
    "none", "input", "const", "gather", "add", "mul", "scale", "layernorm", "gelu", "softmax",
    "einsum", "matmul", "linear", "reshape", "transpose", "slice", "broadcast", "contiguous",
    "kv_write", "last_token", "attention", "output", "rmsnorm", "rope", "silu", "swiglu", "linears"};

const char *miser_op_name(miser_op op) { return (unsigned)op < MISER_OP_COUNT ? g_op_names[op] : "?"; }

miser_status miser_graph_init(miser_graph *g, int64_t t_max, int64_t s_max)
{
    memset(g, 0, sizeof *g);
    if (t_max < 1 || s_max < t_max)
        return miser_error_set(MISER_ERR_INVALID, "graph: invalid worst-case sizes t_max=%lld s_max=%lld",
                               (long long)t_max, (long long)s_max);
    g->t_max = t_max;
    g->s_max = s_max;
    return MISER_OK;
}

void miser_graph_free(miser_graph *g)
{
    if (!g) return;
    for (int32_t i = 0; i < g->n_storage; i++)
        if (g->storage[i].owned) miser_free((void *)g->storage[i].base);
    miser_free(g->storage);
    miser_free(g->nodes);
    memset(g, 0, sizeof *g);
}

int32_t miser_graph_add(miser_graph *g, const miser_node *n)
{
    if (g->n_nodes == g->cap_nodes) {
        int32_t cap = g->cap_nodes ? g->cap_nodes * 2 : 256;
        miser_node *nn = miser_realloc(MISER_MEM_COMPILE, g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) {
            g->last_error = MISER_ERR_NOMEM;
            return -1;
        }
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    g->nodes[g->n_nodes] = *n;
    return g->n_nodes++;
}

int32_t miser_graph_add_storage(miser_graph *g, const void *base, uint64_t bytes, int owned, const char *name)
{
    for (int32_t i = 0; i < g->n_storage; i++)
        if (g->storage[i].base == base && g->storage[i].bytes == bytes && !owned) return i;
    if (g->n_storage == g->cap_storage) {
        int32_t cap = g->cap_storage ? g->cap_storage * 2 : 64;
        miser_storage *ns = miser_realloc(MISER_MEM_COMPILE, g->storage, (size_t)cap * sizeof *ns);
        if (!ns) {
            g->last_error = MISER_ERR_NOMEM;
            return -1;
        }
        g->storage = ns;
        g->cap_storage = cap;
    }
    miser_storage *s = &g->storage[g->n_storage];
    s->base = base;
    s->bytes = bytes;
    s->owned = owned;
    snprintf(s->name, sizeof s->name, "%s", name ? name : "");
    if (owned) g->materialized_bytes += bytes; /* released storage subtracts it again */
    return g->n_storage++;
}

static void set_name(miser_node *n, const char *name)
{
    snprintf(n->name, sizeof n->name, "%s", name ? name : "");
}

static int64_t dim_max(const miser_graph *g, int64_t d)
{
    return d == MISER_DIM_T ? g->t_max : d == MISER_DIM_S ? g->s_max : d;
}

uint64_t miser_graph_numel_max(const miser_graph *g, int32_t id)
{
    const miser_node *n = &g->nodes[id];
    uint64_t e = 1;
    for (int i = 0; i < n->ndim; i++) e *= (uint64_t)dim_max(g, n->shape[i]);
    return e;
}

static const char *dimstr(int64_t d, char *buf)
{
    if (d == MISER_DIM_T) return "T";
    if (d == MISER_DIM_S) return "S";
    sprintf(buf, "%lld", (long long)d);
    return buf;
}

static void shape_str(const int64_t *s, int32_t nd, char *out, size_t cap)
{
    size_t k = 0;
    char b[24];
    k += (size_t)snprintf(out + k, cap - k, "[");
    for (int i = 0; i < nd && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%s", i ? ", " : "", dimstr(s[i], b));
    if (k < cap) snprintf(out + k, cap - k, "]");
}

static miser_status shape_err(const miser_graph *g, int32_t id, const char *why)
{
    const miser_node *n = &g->nodes[id];
    char a[96] = "", b[96] = "";
    if (n->n_in > 0) shape_str(g->nodes[n->in[0]].shape, g->nodes[n->in[0]].ndim, a, sizeof a);
    if (n->n_in > 1) shape_str(g->nodes[n->in[1]].shape, g->nodes[n->in[1]].ndim, b, sizeof b);
    return miser_error_set(MISER_ERR_INVALID, "node %d (%s '%s'): %s (inputs %s %s)", id, miser_op_name(n->op),
                           n->name, why, a, b);
}

/* Broadcast two shapes, numpy rules; symbols must match exactly or face a 1. */
static int broadcast(const int64_t *a, int na, const int64_t *b, int nb, int64_t *out, int *nout)
{
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t da = i < n - na ? 1 : a[i - (n - na)];
        int64_t db = i < n - nb ? 1 : b[i - (n - nb)];
        if (da == db || db == 1) out[i] = da;
        else if (da == 1) out[i] = db;
        else return -1;
    }
    *nout = n;
    return 0;
}

/* Product of concrete dims and the count of each symbol, for reshape checks. */
static void numel_sig(const int64_t *s, int nd, int64_t *prod, int *nt, int *ns)
{
    *prod = 1;
    *nt = *ns = 0;
    for (int i = 0; i < nd; i++) {
        if (s[i] == MISER_DIM_T) (*nt)++;
        else if (s[i] == MISER_DIM_S) (*ns)++;
        else *prod *= s[i];
    }
}

miser_status miser_graph_infer(miser_graph *g, int32_t id)
{
    miser_node *n = &g->nodes[id];
    const miser_node *a = n->n_in > 0 ? &g->nodes[n->in[0]] : NULL;
    const miser_node *b = n->n_in > 1 ? &g->nodes[n->in[1]] : NULL;
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] < 0 || n->in[i] >= id) return shape_err(g, id, "input is not an earlier node");
    static const int8_t want_in[MISER_OP_COUNT] = {
        [MISER_OP_INPUT] = 0, [MISER_OP_CONST] = 0, [MISER_OP_GATHER] = 2, [MISER_OP_ADD] = 2,
        [MISER_OP_MUL] = 2, [MISER_OP_SCALE] = 1, [MISER_OP_LAYERNORM] = 3, [MISER_OP_GELU] = 1,
        [MISER_OP_SOFTMAX] = 1, [MISER_OP_EINSUM] = -1, [MISER_OP_MATMUL] = 2, [MISER_OP_LINEAR] = -1,
        [MISER_OP_RESHAPE] = 1, [MISER_OP_TRANSPOSE] = 1, [MISER_OP_SLICE] = 1, [MISER_OP_BROADCAST] = 1,
        [MISER_OP_CONTIGUOUS] = 1, [MISER_OP_KV_WRITE] = 1, [MISER_OP_LAST_TOKEN] = 1,
        [MISER_OP_ATTENTION] = 3, [MISER_OP_OUTPUT] = 1, [MISER_OP_RMSNORM] = 2, [MISER_OP_ROPE] = 2,
        [MISER_OP_SILU] = 1, [MISER_OP_SWIGLU] = 2, [MISER_OP_LINEARS] = -1};
    if ((unsigned)n->op >= MISER_OP_COUNT || n->op == MISER_OP_NONE) return shape_err(g, id, "unknown op");
    if (want_in[n->op] >= 0 && n->n_in != want_in[n->op]) return shape_err(g, id, "wrong number of inputs");
    n->flags &= ~MISER_NODE_VIEW;
    switch (n->op) {
    case MISER_OP_INPUT:
        n->dtype = MISER_DTYPE_I32;
        n->ndim = 2;
        n->shape[0] = 1;
        n->shape[1] = MISER_DIM_T;
        return MISER_OK;
    case MISER_OP_CONST: return MISER_OK;
    case MISER_OP_GATHER:
        if (a->ndim != 2 || b->dtype != MISER_DTYPE_I32 || a->op != MISER_OP_CONST)
            return shape_err(g, id, "gather needs a 2-D constant table and i32 ids");
        n->dtype = MISER_DTYPE_F32;
        n->ndim = b->ndim + 1;
        memcpy(n->shape, b->shape, sizeof(int64_t) * (size_t)b->ndim);
        n->shape[b->ndim] = a->shape[1];
        return MISER_OK;
    case MISER_OP_ADD:
    case MISER_OP_MUL: {
        int nd;
        if (broadcast(a->shape, a->ndim, b->shape, b->ndim, n->shape, &nd)) return shape_err(g, id, "shapes do not broadcast");
        n->ndim = nd;
        n->dtype = MISER_DTYPE_F32;
        return MISER_OK;
    }
    case MISER_OP_SCALE:
    case MISER_OP_GELU:
    case MISER_OP_SILU:
    case MISER_OP_SOFTMAX:
    case MISER_OP_CONTIGUOUS:
        n->ndim = a->ndim;
        memcpy(n->shape, a->shape, sizeof n->shape);
        n->dtype = MISER_DTYPE_F32;
        if (n->op == MISER_OP_SOFTMAX && n->attr.i[0] &&
            (a->ndim < 2 || a->shape[a->ndim - 1] != MISER_DIM_S || a->shape[a->ndim - 2] != MISER_DIM_T))
            return shape_err(g, id, "causal softmax needs [.., T, S] scores");
        return MISER_OK;
    case MISER_OP_LAYERNORM: {
        int64_t c = a->shape[a->ndim - 1];
        for (int k = 1; k < 3; k++) {
            const miser_node *p = &g->nodes[n->in[k]];
            if (p->ndim != 1 || p->shape[0] != c) return shape_err(g, id, "gamma/beta must be [C]");
        }
        n->ndim = a->ndim;
        memcpy(n->shape, a->shape, sizeof n->shape);
        n->dtype = MISER_DTYPE_F32;
        return MISER_OK;
    }
    case MISER_OP_RMSNORM: {
        const miser_node *p = &g->nodes[n->in[1]];
        if (p->ndim != 1 || p->shape[0] != a->shape[a->ndim - 1]) return shape_err(g, id, "gamma must be [C]");
        n->ndim = a->ndim;
        memcpy(n->shape, a->shape, sizeof n->shape);
        n->dtype = MISER_DTYPE_F32;
        return MISER_OK;
    }
    case MISER_OP_ROPE:
        if (a->ndim != 4 || a->shape[1] != MISER_DIM_T || a->shape[3] != g->head_dim || g->head_dim % 2 ||
            b->dtype != MISER_DTYPE_I32 || b->ndim != 2 || b->shape[1] != MISER_DIM_T)
            return shape_err(g, id, "rope needs x [1, T, H, head_dim] (head_dim even) and i32 positions [1, T]");
        n->ndim = 4;
        memcpy(n->shape, a->shape, sizeof n->shape);
        n->dtype = MISER_DTYPE_F32;
        return MISER_OK;
    case MISER_OP_SWIGLU:
        if (a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim))
            return shape_err(g, id, "swiglu needs gate and up of one shape");
        n->ndim = a->ndim;
        memcpy(n->shape, a->shape, sizeof n->shape);
        n->dtype = MISER_DTYPE_F32;
        return MISER_OK;
    case MISER_OP_EINSUM: {
        if (n->n_in < 1 || n->n_in > 2) return shape_err(g, id, "einsum takes one or two operands");
        int32_t ranks[2] = {a->ndim, b ? b->ndim : 0};
        miser_einsum e;
        miser_status st = miser_einsum_parse(n->attr.eq, n->n_in, ranks, &e);
        if (st) return miser_error_prefix(st, "node %d '%s'", id, n->name);
        int64_t size[128];
        for (int i = 0; i < 128; i++) size[i] = 0;
        for (int k = 0; k < n->n_in; k++) {
            const miser_node *o = &g->nodes[n->in[k]];
            for (int d = 0; d < e.rank[k]; d++) {
                unsigned char l = (unsigned char)e.labels[k][d];
                int64_t s = o->shape[d];
                if (size[l] == 0 || size[l] == s) size[l] = s;
                else if (l < 'A' && (s == 1 || size[l] == 1)) size[l] = s == 1 ? size[l] : s; /* "..." broadcasts */
                else
                    return miser_error_set(MISER_ERR_INVALID,
                                           "einsum '%s' (node %d '%s'): label '%c' has inconsistent sizes", n->attr.eq,
                                           id, n->name, l);
            }
        }
        n->ndim = e.out_rank;
        for (int d = 0; d < e.out_rank; d++) n->shape[d] = size[(unsigned char)e.out[d]];
        n->dtype = MISER_DTYPE_F32;
        return MISER_OK;
    }
    case MISER_OP_MATMUL: {
        if (a->ndim < 2 || b->ndim < 2) return shape_err(g, id, "matmul operands need rank >= 2");
        if (a->shape[a->ndim - 1] != b->shape[b->ndim - 2]) return shape_err(g, id, "contracted sizes differ");
        int nd;
        if (broadcast(a->shape, a->ndim - 2, b->shape, b->ndim - 2, n->shape, &nd))
            return shape_err(g, id, "batch dims do not broadcast");
        n->shape[nd] = a->shape[a->ndim - 2];
        n->shape[nd + 1] = b->shape[b->ndim - 1];
        n->ndim = nd + 2;
        n->dtype = MISER_DTYPE_F32;
        return MISER_OK;
    }
    case MISER_OP_LINEARS: {
        if (n->n_in < 3) return shape_err(g, id, "linears takes x and two or three weights");
        int64_t N = 0;
        for (int j = 1; j < n->n_in; j++) {
            const miser_node *w = &g->nodes[n->in[j]];
            if (w->op != MISER_OP_CONST || w->ndim != 2 || w->shape[0] != a->shape[a->ndim - 1] || w->cst.stride[0] != 1)
                return shape_err(g, id, "linears needs x [.., K] and constant W [K, N] in the dot layout");
            N += w->shape[1];
        }
        if (n->attr.i[0] == MISER_LINEARS_SWIGLU &&
            (n->n_in != 3 || g->nodes[n->in[1]].shape[1] != g->nodes[n->in[2]].shape[1]))
            return shape_err(g, id, "the swiglu epilogue needs gate and up weights of one shape");
        n->ndim = a->ndim;
        memcpy(n->shape, a->shape, sizeof n->shape);
        n->shape[n->ndim - 1] = N;
        n->dtype = MISER_DTYPE_F32;
        return MISER_OK;
    }
    case MISER_OP_LINEAR: {
        if (n->n_in < 2 || n->n_in > 3) return shape_err(g, id, "linear takes x, W and optional bias");
        if (b->ndim != 2 || b->op != MISER_OP_CONST || a->shape[a->ndim - 1] != b->shape[0])
            return shape_err(g, id, "linear needs x [.., K] and constant W [K, N]");
        if (n->n_in == 3) {
            const miser_node *c = &g->nodes[n->in[2]];
            if (c->ndim != 1 || c->shape[0] != b->shape[1]) return shape_err(g, id, "bias must be [N]");
        }
        n->ndim = a->ndim;
        memcpy(n->shape, a->shape, sizeof n->shape);
        n->shape[n->ndim - 1] = b->shape[1];
        n->dtype = MISER_DTYPE_F32;
        return MISER_OK;
    }
    case MISER_OP_RESHAPE: {
        int64_t p1, p2;
        int t1, s1, t2, s2;
        numel_sig(a->shape, a->ndim, &p1, &t1, &s1);
        numel_sig(n->attr.shape, n->attr.ndim, &p2, &t2, &s2);
        if (p1 != p2 || t1 != t2 || s1 != s2) return shape_err(g, id, "reshape changes the number of elements");
        n->ndim = n->attr.ndim;
        memcpy(n->shape, n->attr.shape, sizeof n->shape);
        n->dtype = a->dtype;
        n->flags |= MISER_NODE_VIEW;
        return MISER_OK;
    }
    case MISER_OP_TRANSPOSE: {
        if (n->attr.ndim != a->ndim) return shape_err(g, id, "permutation rank differs from input rank");
        int seen = 0;
        for (int i = 0; i < a->ndim; i++) {
            int p = n->attr.perm[i];
            if (p < 0 || p >= a->ndim || (seen & (1 << p))) return shape_err(g, id, "invalid permutation");
            seen |= 1 << p;
            n->shape[i] = a->shape[p];
        }
        n->ndim = a->ndim;
        n->dtype = a->dtype;
        n->flags |= MISER_NODE_VIEW;
        return MISER_OK;
    }
    case MISER_OP_SLICE: {
        int64_t ax = n->attr.i[0], st = n->attr.i[1], len = n->attr.i[2];
        if (ax < 0 || ax >= a->ndim || a->shape[ax] < 0 || st < 0 || len < 1 || st + len > a->shape[ax])
            return shape_err(g, id, "slice out of range");
        n->ndim = a->ndim;
        memcpy(n->shape, a->shape, sizeof n->shape);
        n->shape[ax] = len;
        n->dtype = a->dtype;
        n->flags |= MISER_NODE_VIEW;
        return MISER_OK;
    }
    case MISER_OP_BROADCAST: {
        int nd;
        int64_t tmp[MISER_MAX_DIMS];
        if (broadcast(a->shape, a->ndim, n->attr.shape, n->attr.ndim, tmp, &nd) || nd != n->attr.ndim)
            return shape_err(g, id, "cannot broadcast to the requested shape");
        for (int i = 0; i < nd; i++)
            if (tmp[i] != n->attr.shape[i]) return shape_err(g, id, "cannot broadcast to the requested shape");
        n->ndim = nd;
        memcpy(n->shape, n->attr.shape, sizeof n->shape);
        n->dtype = a->dtype;
        n->flags |= MISER_NODE_VIEW;
        return MISER_OK;
    }
    case MISER_OP_KV_WRITE:
        if (a->ndim != 4 || a->shape[1] != MISER_DIM_T ||
            a->shape[2] != (g->n_kv_head > 0 ? g->n_kv_head : g->n_head) || a->shape[3] != g->head_dim)
            return shape_err(g, id, "kv_write needs [1, T, KV heads, D]");
        if (n->attr.i[0] < 0 || n->attr.i[0] >= g->n_layer) return shape_err(g, id, "kv_write layer out of range");
        n->ndim = 4;
        memcpy(n->shape, a->shape, sizeof n->shape);
        n->shape[1] = MISER_DIM_S;
        n->dtype = MISER_DTYPE_F32;
        n->flags |= MISER_NODE_VIEW;
        return MISER_OK;
    case MISER_OP_LAST_TOKEN:
        if (a->ndim != 3 || a->shape[1] != MISER_DIM_T) return shape_err(g, id, "last_token needs [1, T, C]");
        n->ndim = 3;
        memcpy(n->shape, a->shape, sizeof n->shape);
        n->shape[1] = 1;
        n->dtype = a->dtype;
        n->flags |= MISER_NODE_VIEW;
        return MISER_OK;
    case MISER_OP_ATTENTION: {
        const miser_node *k = &g->nodes[n->in[1]], *v = &g->nodes[n->in[2]];
        if (a->ndim != 4 || k->ndim != 4 || v->ndim != 4 || a->shape[1] != MISER_DIM_T || k->shape[1] != MISER_DIM_S ||
            v->shape[1] != MISER_DIM_S || k->shape[2] < 1 || a->shape[2] % k->shape[2] || a->shape[3] != k->shape[3] ||
            v->shape[2] != k->shape[2] || v->shape[3] != k->shape[3])
            return shape_err(g, id, "attention needs q [1,T,H,D], k and v [1,S,KV,D] with KV dividing H");
        n->ndim = 4;
        memcpy(n->shape, a->shape, sizeof n->shape);
        n->dtype = MISER_DTYPE_F32;
        return MISER_OK;
    }
    case MISER_OP_OUTPUT:
        n->ndim = a->ndim;
        memcpy(n->shape, a->shape, sizeof n->shape);
        n->dtype = a->dtype;
        n->flags |= MISER_NODE_VIEW;
        return MISER_OK;
    default: return shape_err(g, id, "unknown op");
    }
}

static int32_t add_infer(miser_graph *g, miser_node *n)
{
    int32_t id = miser_graph_add(g, n);
    if (id < 0) return -1;
    miser_status st = miser_graph_infer(g, id);
    if (st) {
        g->last_error = st;
        g->n_nodes--;
        return -1;
    }
    return id;
}

int32_t miser_g_input(miser_graph *g, int kind, const char *name)
{
    miser_node n = {.op = MISER_OP_INPUT};
    n.attr.i[0] = kind;
    set_name(&n, name);
    return add_infer(g, &n);
}

int32_t miser_g_const(miser_graph *g, const miser_tensor_info *t, const char *name)
{
    miser_node n = {.op = MISER_OP_CONST, .dtype = t->dtype, .ndim = t->ndim};
    if (t->ndim < 0 || t->ndim > MISER_MAX_DIMS) {
        g->last_error = miser_error_set(MISER_ERR_INVALID, "constant '%s': %d dimensions", t->name, (int)t->ndim);
        return -1;
    }
    /* the strides are the tensor's own (a converted-weights cache stores some
     * weights transposed): they must be positive and stay inside its bytes */
    size_t esz = miser_dtype_bytes(t->dtype, 1);
    const int64_t tbl = miser_dtype_block(t->dtype); /* > 1: Q8_0 and GGUF's 4-bit blocks */
    if (tbl == 1 && !esz) {
        g->last_error = miser_error_set(MISER_ERR_UNSUPPORTED, "constant '%s': dtype %s", t->name,
                                        miser_dtype_name(t->dtype));
        return -1;
    }
    int64_t last = 0, cap = tbl > 1 ? (int64_t)(t->nbytes / miser_dtype_block_bytes(t->dtype)) * tbl
                                    : (int64_t)(t->nbytes / esz);
    int empty = 0;
    for (int i = 0; i < t->ndim; i++) {
        empty |= t->shape[i] == 0;
        if (t->shape[i] > 1 && t->stride[i] < 1) {
            g->last_error = miser_error_set(MISER_ERR_INVALID, "constant '%s': stride %lld on dimension %d",
                                            t->name, (long long)t->stride[i], i);
            return -1;
        }
        if (t->shape[i] > 0) last += (t->shape[i] - 1) * t->stride[i];
    }
    if (!empty && last >= cap) {
        g->last_error = miser_error_set(MISER_ERR_INVALID, "constant '%s': its strides reach past its %llu bytes",
                                        t->name, (unsigned long long)t->nbytes);
        return -1;
    }
    int32_t s = miser_graph_add_storage(g, t->data, t->nbytes, 0, t->name);
    if (s < 0) return -1;
    memcpy(n.shape, t->shape, sizeof n.shape);
    memcpy(n.cst.stride, t->stride, sizeof n.cst.stride);
    n.cst.data = t->data;
    n.cst.storage = s;
    set_name(&n, name ? name : t->name);
    return add_infer(g, &n);
}

int32_t miser_g_const_view(miser_graph *g, int32_t c, int64_t off, int32_t ndim, const int64_t *shape,
                           const int64_t *stride, const char *name)
{
    const miser_node *src = &g->nodes[c];
    if (src->op != MISER_OP_CONST || ndim < 0 || ndim > MISER_MAX_DIMS) {
        miser_error_set(MISER_ERR_INVALID, "const view of a non-constant node %d", c);
        return -1;
    }
    /* bounds: the view's extreme elements must stay inside the storage.
     * Q8_0 counts elements through whole 32-element blocks of 34 bytes, so
     * a view may start only on a block boundary. */
    const miser_storage *s = &g->storage[src->cst.storage];
    const int64_t bl = miser_dtype_block(src->dtype), bb = (int64_t)miser_dtype_block_bytes(src->dtype);
    int q8 = bl > 1; /* Q8_0 or a GGUF 4-bit type: whole blocks of bl elements in bb bytes */
    int64_t esz = q8 ? 0 : (int64_t)miser_dtype_bytes(src->dtype, 1);
    if (q8 && off % bl) {
        miser_error_set(MISER_ERR_UNSUPPORTED, "const view '%s': a q8_0 view must start on a 32-element block", name);
        return -1;
    }
    int64_t lo = off, hi = off;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) { miser_error_set(MISER_ERR_INVALID, "const view '%s': empty dimension", name); return -1; }
        int64_t span = (shape[i] - 1) * stride[i];
        if (span < 0) lo += span; else hi += span;
    }
    const char *base = (const char *)src->cst.data;
    int64_t base_bytes = (int64_t)(base - (const char *)s->base);
    int64_t base_el = q8 ? base_bytes / bb * bl : base_bytes / esz;
    int64_t cap_el = q8 ? (int64_t)s->bytes / bb * bl : (int64_t)s->bytes / esz;
    if (base_el + lo < 0 || base_el + hi + 1 > cap_el) {
        miser_error_set(MISER_ERR_INVALID, "const view '%s' reaches outside '%s'", name, s->name);
        return -1;
    }
    miser_node n = *src;
    n.ndim = ndim;
    memset(n.shape, 0, sizeof n.shape);
    memset(n.cst.stride, 0, sizeof n.cst.stride);
    memcpy(n.shape, shape, sizeof(int64_t) * (size_t)ndim);
    memcpy(n.cst.stride, stride, sizeof(int64_t) * (size_t)ndim);
    n.cst.data = base + (q8 ? off / bl * bb : off * esz);
    n.cst.hash = 0;
    set_name(&n, name);
    return add_infer(g, &n);
}

int32_t miser_g_op(miser_graph *g, miser_op op, int32_t n_in, const int32_t *in, const char *name)
{
    miser_node n = {.op = op, .n_in = n_in};
    if (n_in > MISER_MAX_INPUTS) return -1;
    for (int i = 0; i < n_in; i++) {
        if (in[i] < 0) return -1; /* an earlier constructor failed; its error stands */
        n.in[i] = in[i];
    }
    set_name(&n, name);
    return add_infer(g, &n);
}

int32_t miser_g_einsum(miser_graph *g, const char *eq, int32_t a, int32_t b, const char *name)
{
    miser_node n = {.op = MISER_OP_EINSUM, .n_in = b >= 0 ? 2 : 1};
    if (a < 0) return -1;
    n.in[0] = a;
    n.in[1] = b;
    if (strlen(eq) >= sizeof n.attr.eq) {
        miser_error_set(MISER_ERR_INVALID, "einsum equation too long: '%s'", eq);
        return -1;
    }
    strcpy(n.attr.eq, eq);
    set_name(&n, name);
    return add_infer(g, &n);
}

int32_t miser_g_reshape(miser_graph *g, int32_t x, int32_t ndim, const int64_t *shape, const char *name)
{
    miser_node n = {.op = MISER_OP_RESHAPE, .n_in = 1, .in = {x}};
    if (x < 0 || ndim < 0 || ndim > MISER_MAX_DIMS) return -1;
    n.attr.ndim = ndim;
    memcpy(n.attr.shape, shape, sizeof(int64_t) * (size_t)ndim);
    set_name(&n, name);
    return add_infer(g, &n);
}

int32_t miser_g_transpose(miser_graph *g, int32_t x, int32_t ndim, const int32_t *perm, const char *name)
{
    miser_node n = {.op = MISER_OP_TRANSPOSE, .n_in = 1, .in = {x}};
    if (x < 0 || ndim < 0 || ndim > MISER_MAX_DIMS) return -1;
    n.attr.ndim = ndim;
    memcpy(n.attr.perm, perm, sizeof(int32_t) * (size_t)ndim);
    set_name(&n, name);
    return add_infer(g, &n);
}

int32_t miser_g_slice(miser_graph *g, int32_t x, int32_t axis, int64_t start, int64_t len, const char *name)
{
    miser_node n = {.op = MISER_OP_SLICE, .n_in = 1, .in = {x}};
    if (x < 0) return -1;
    n.attr.i[0] = axis;
    n.attr.i[1] = start;
    n.attr.i[2] = len;
    set_name(&n, name);
    return add_infer(g, &n);
}

miser_status miser_graph_verify(const miser_graph *g)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const miser_node *n = &g->nodes[i];
        if (n->op == MISER_OP_NONE) continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] < 0 || n->in[k] >= i || g->nodes[n->in[k]].op == MISER_OP_NONE)
                return miser_error_set(MISER_ERR_INTERNAL, "graph: node %d '%s' uses node %d which is not an earlier live node",
                                       i, n->name, n->in[k]);
        if (n->op == MISER_OP_CONST && (n->cst.storage < 0 || n->cst.storage >= g->n_storage))
            return miser_error_set(MISER_ERR_INTERNAL, "graph: constant %d '%s' has no storage", i, n->name);
    }
    return MISER_OK;
}

static uint64_t const_view_bytes(const miser_node *n)
{
    uint64_t e = 1;
    for (int i = 0; i < n->ndim; i++) e *= (uint64_t)n->shape[i];
    return miser_dtype_bytes(n->dtype, e);
}

miser_graph_stats miser_graph_get_stats(const miser_graph *g)
{
    miser_graph_stats s = {0};
    char *used = miser_calloc(MISER_MEM_SCRATCH, (size_t)g->n_storage + 1, 1);
    int32_t *uses = miser_calloc(MISER_MEM_SCRATCH, (size_t)g->n_nodes + 1, sizeof *uses);
    for (int32_t i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in && uses; k++) uses[g->nodes[i].in[k]]++;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const miser_node *n = &g->nodes[i];
        if (n->op == MISER_OP_NONE) continue;
        s.nodes++;
        if (n->op == MISER_OP_EINSUM) {
            s.einsums++;
            for (int k = 0; k < n->n_in; k++)
                if (g->nodes[n->in[k]].op == MISER_OP_CONST) { s.einsums_const++; break; }
        }
        if (n->op == MISER_OP_CONST && (!uses || uses[i] > 0)) {
            s.consts++;
            s.const_bytes += const_view_bytes(n);
            if (used) used[n->cst.storage] = 1;
        }
    }
    for (int32_t i = 0; i < g->n_storage; i++) {
        if (used && !used[i]) continue;
        s.unique_const_bytes += g->storage[i].bytes;
        if (g->storage[i].owned) s.materialized_bytes += g->storage[i].bytes;
    }
    s.arena_bytes = g->arena_bytes;
    miser_free(used);
    miser_free(uses);
    return s;
}

void miser_graph_dump(const miser_graph *g, void *fp)
{
    FILE *f = fp;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const miser_node *n = &g->nodes[i];
        if (n->op == MISER_OP_NONE) continue;
        char sh[128];
        shape_str(n->shape, n->ndim, sh, sizeof sh);
        fprintf(f, "%%%d = %s", i, miser_op_name(n->op));
        if (n->op == MISER_OP_EINSUM) fprintf(f, "[%s]", n->attr.eq);
        if (n->op == MISER_OP_LINEAR && n->attr.i[0] == MISER_ACT_GELU) fprintf(f, "[gelu]");
        if (n->op == MISER_OP_ATTENTION || n->op == MISER_OP_SCALE) fprintf(f, "[scale=%g]", (double)n->attr.f[0]);
        if (n->op == MISER_OP_SLICE)
            fprintf(f, "[axis=%lld,%lld+%lld]", (long long)n->attr.i[0], (long long)n->attr.i[1], (long long)n->attr.i[2]);
        fprintf(f, "(");
        for (int k = 0; k < n->n_in; k++) fprintf(f, "%s%%%d", k ? ", " : "", n->in[k]);
        fprintf(f, ") : %s%s %s", miser_dtype_name(n->dtype), sh, n->name);
        if (n->op == MISER_OP_CONST) {
            fprintf(f, " @%s", g->storage[n->cst.storage].name);
            /* element strides, when they are not row-major (transposed, column blocks, broadcast) */
            int row_major = 1;
            for (int64_t d = n->ndim - 1, st = 1; d >= 0; st *= n->shape[d--])
                row_major &= n->shape[d] == 1 || n->cst.stride[d] == st;
            if (!row_major) {
                fprintf(f, " strides[");
                for (int d = 0; d < n->ndim; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)n->cst.stride[d]);
                fprintf(f, "]");
            }
        }
        if (n->flags & MISER_NODE_VIEW) fprintf(f, " (view)");
        if (n->flags & MISER_NODE_INPLACE) fprintf(f, " (in-place)");
        fprintf(f, "\n");
    }
}

void miser_graph_dump_dot(const miser_graph *g, void *fp)
{
    FILE *f = fp;
    fprintf(f, "digraph miser {\n  rankdir=TB;\n  node [shape=box, fontname=monospace, fontsize=10];\n");
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const miser_node *n = &g->nodes[i];
        if (n->op == MISER_OP_NONE) continue;
        char sh[128];
        shape_str(n->shape, n->ndim, sh, sizeof sh);
        fprintf(f, "  n%d [label=\"%s%s%s\\n%s %s\"%s];\n", i, miser_op_name(n->op), n->op == MISER_OP_EINSUM ? " " : "",
                n->op == MISER_OP_EINSUM ? n->attr.eq : "", n->name, sh,
                n->op == MISER_OP_CONST ? ", style=filled, fillcolor=lightgrey" : "");
        for (int k = 0; k < n->n_in; k++) fprintf(f, "  n%d -> n%d;\n", n->in[k], i);
    }
    fprintf(f, "}\n");
}
