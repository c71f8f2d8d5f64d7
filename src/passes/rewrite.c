/* Internal pass helpers: the in-order graph rewriter, static contiguity,
 * compile-time reshape strides and storage release (see rewrite.h). */
#include "rewrite.h"
#include "miser/alloc.h"

#include <stdio.h>
#include <string.h>

miser_status miser_rw_begin(miser_graph *g, miser_rw *r)
{
    memset(r, 0, sizeof *r);
    int32_t n = g->n_nodes;
    int32_t cap = n * 2 + 64;
    miser_node *nn = miser_malloc(MISER_MEM_COMPILE, (size_t)cap * sizeof *nn);
    r->map = miser_malloc(MISER_MEM_COMPILE, sizeof(int32_t) * (size_t)(n + 1));
    r->uses = miser_calloc(MISER_MEM_COMPILE, (size_t)n + 1, sizeof(int32_t));
    r->user1 = miser_malloc(MISER_MEM_COMPILE, sizeof(int32_t) * (size_t)(n + 1));
    if (!nn || !r->map || !r->uses || !r->user1) {
        miser_free(nn);
        miser_free(r->map);
        miser_free(r->uses);
        miser_free(r->user1);
        memset(r, 0, sizeof *r);
        return MISER_ERR_NOMEM;
    }
    for (int32_t i = 0; i < n; i++) {
        r->map[i] = -1;
        r->user1[i] = -1;
    }
    for (int32_t i = 0; i < n; i++) {
        const miser_node *nd = &g->nodes[i];
        if (nd->op == MISER_OP_NONE) continue;
        for (int k = 0; k < nd->n_in; k++) {
            int32_t s = nd->in[k];
            if (r->user1[s] < 0) r->user1[s] = i;
            r->uses[s]++;
        }
    }
    r->g = g;
    r->old = g->nodes;
    r->n_old = n;
    g->nodes = nn;
    g->cap_nodes = cap;
    g->n_nodes = 0;
    return MISER_OK;
}

int32_t miser_rw_emit(miser_rw *r, const miser_node *n)
{
    int32_t id = miser_graph_add(r->g, n);
    if (id < 0) return -1;
    if (miser_graph_infer(r->g, id)) {
        r->g->n_nodes--;
        return -1;
    }
    return id;
}

int32_t miser_rw_keep(miser_rw *r, int32_t old_id)
{
    miser_node n = r->old[old_id];
    for (int k = 0; k < n.n_in; k++) {
        n.in[k] = r->map[n.in[k]];
        if (n.in[k] < 0) {
            miser_error_set(MISER_ERR_INTERNAL, "rewrite: node %d '%s' uses a removed node", old_id, n.name);
            return -1;
        }
    }
    int32_t id = miser_rw_emit(r, &n);
    if (id >= 0) r->map[old_id] = id;
    return id;
}

miser_status miser_rw_end(miser_rw *r, miser_status st)
{
    if (!r->g) return st;
    if (st) {
        miser_free(r->g->nodes);
        r->g->nodes = r->old;
        r->g->n_nodes = r->n_old;
        r->g->cap_nodes = r->n_old;
    } else
        miser_free(r->old);
    miser_free(r->map);
    miser_free(r->uses);
    miser_free(r->user1);
    memset(r, 0, sizeof *r);
    return st;
}

static int same_shape(const miser_node *a, const miser_node *b)
{
    return a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim);
}

int32_t miser_rw_skip_noops(const miser_node *nodes, int32_t id)
{
    for (;;) {
        const miser_node *n = &nodes[id];
        if ((n->op == MISER_OP_RESHAPE || n->op == MISER_OP_TRANSPOSE || n->op == MISER_OP_BROADCAST ||
             n->op == MISER_OP_CONTIGUOUS) &&
            same_shape(n, &nodes[n->in[0]])) {
            int ident = 1;
            if (n->op == MISER_OP_TRANSPOSE)
                for (int i = 0; i < n->ndim; i++)
                    if (n->attr.perm[i] != i && n->shape[i] != 1) ident = 0;
            if (ident) {
                id = n->in[0];
                continue;
            }
        }
        return id;
    }
}

int miser_pass_known_contiguous(const miser_graph *g, int32_t id)
{
    const miser_node *n = &g->nodes[id];
    switch (n->op) {
    case MISER_OP_CONST: {
        int64_t s = 1;
        for (int i = n->ndim - 1; i >= 0; i--) {
            if (n->shape[i] != 1 && n->cst.stride[i] != s) return 0;
            s *= n->shape[i];
        }
        return 1;
    }
    case MISER_OP_KV_WRITE: return 1; /* the cache view [1, S, H, D] is row-major */
    case MISER_OP_RESHAPE:
    case MISER_OP_OUTPUT: return miser_pass_known_contiguous(g, n->in[0]);
    case MISER_OP_LAST_TOKEN: return miser_pass_known_contiguous(g, n->in[0]);
    case MISER_OP_TRANSPOSE: {
        /* contiguous when the non-unit dims keep their order */
        int last = -1;
        for (int i = 0; i < n->ndim; i++) {
            if (n->shape[i] == 1) continue;
            if (n->attr.perm[i] < last) return 0;
            last = n->attr.perm[i];
        }
        return miser_pass_known_contiguous(g, n->in[0]);
    }
    case MISER_OP_SLICE: {
        /* contiguous when every dim before the axis has size 1 */
        for (int i = 0; i < n->attr.i[0]; i++)
            if (n->shape[i] != 1) return 0;
        return miser_pass_known_contiguous(g, n->in[0]);
    }
    case MISER_OP_BROADCAST: return 0;
    default: return !(n->flags & MISER_NODE_VIEW);
    }
}

int miser_pass_reshape_strides(int32_t in_nd, const int64_t *in_shape, const int64_t *in_stride, int32_t out_nd,
                               const int64_t *out_shape, int64_t *out_stride)
{
    int64_t os[MISER_MAX_DIMS], ot[MISER_MAX_DIMS];
    int on = 0;
    for (int i = 0; i < in_nd; i++)
        if (in_shape[i] != 1) {
            os[on] = in_shape[i];
            ot[on++] = in_stride[i];
        }
    int ni = 0, oi = 0;
    for (int i = 0; i < out_nd; i++) out_stride[i] = 1;
    while (ni < out_nd && oi < on) {
        int64_t np = out_shape[ni], op = os[oi];
        int nj = ni + 1, oj = oi + 1;
        while (np != op) {
            if (np < op) {
                if (nj >= out_nd) return -1;
                np *= out_shape[nj++];
            } else {
                if (oj >= on) return -1;
                op *= os[oj++];
            }
        }
        for (int k = oi; k < oj - 1; k++)
            if (ot[k] != os[k + 1] * ot[k + 1]) return -1;
        out_stride[nj - 1] = ot[oj - 1];
        for (int k = nj - 1; k > ni; k--) out_stride[k - 1] = out_stride[k] * out_shape[k];
        ni = nj;
        oi = oj;
    }
    return 0;
}

void miser_pass_release_storage(miser_graph *g)
{
    char *used = miser_calloc(MISER_MEM_COMPILE, (size_t)g->n_storage + 1, 1);
    if (!used) return; /* keeping storage alive is always safe */
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == MISER_OP_CONST) used[g->nodes[i].cst.storage] = 1;
    for (int32_t s = 0; s < g->n_storage; s++)
        if (!used[s] && g->storage[s].owned && g->storage[s].base) {
            g->materialized_bytes -= g->storage[s].bytes;
            miser_free((void *)g->storage[s].base);
            g->storage[s].base = NULL;
            g->storage[s].bytes = 0;
        }
    miser_free(used);
}

void miser_pass_name(miser_node *n, const char *base, const char *suffix)
{
    size_t sl = strlen(suffix), cap = sizeof n->name - 1;
    size_t bl = strlen(base);
    if (bl + sl > cap) bl = cap > sl ? cap - sl : 0;
    char tmp[sizeof n->name];
    snprintf(tmp, sizeof tmp, "%.*s%s", (int)bl, base, suffix);
    memcpy(n->name, tmp, sizeof tmp);
}
