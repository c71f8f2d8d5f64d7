/* No-op elimination: views that change nothing are removed before constant
 * folding, so that folding sees a constant directly and the same weight
 * reached through different no-op chains folds to one shared view (the
 * ordering the OpenVINO fix needed). Removed: reshapes and broadcasts to the
 * input's own shape, identity transposes (only unit dims move), copies of
 * values already known to be contiguous. Chains collapse: a transpose of a
 * transpose becomes one transpose (or nothing), a reshape of a reshape one
 * reshape. */
#include "rewrite.h"

#include <string.h>

static int same_shape(const miser_node *a, const miser_node *b)
{
    return a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim);
}

static int identity_perm(const miser_node *t)
{
    for (int i = 0; i < t->ndim; i++)
        if (t->attr.perm[i] != i && t->shape[i] != 1) return 0;
    return 1;
}

miser_status miser_pass_eliminate_noops(miser_graph *g, const miser_pass_options *o)
{
    (void)o;
    miser_rw r;
    miser_status st = miser_rw_begin(g, &r);
    if (st) return st;
    for (int32_t i = 0; i < r.n_old && !st; i++) {
        miser_node n = r.old[i];
        if (n.op == MISER_OP_NONE) continue;
        if (n.op == MISER_OP_RESHAPE || n.op == MISER_OP_TRANSPOSE || n.op == MISER_OP_BROADCAST ||
            n.op == MISER_OP_CONTIGUOUS) {
            int32_t x = r.map[n.in[0]];
            n.in[0] = x;
            const miser_node *xn = &g->nodes[x];
            /* collapse chains first */
            if (n.op == MISER_OP_TRANSPOSE && xn->op == MISER_OP_TRANSPOSE) {
                int32_t p[MISER_MAX_DIMS];
                for (int d = 0; d < n.ndim; d++) p[d] = xn->attr.perm[n.attr.perm[d]];
                memcpy(n.attr.perm, p, sizeof p);
                n.in[0] = x = xn->in[0];
                xn = &g->nodes[x];
            } else if (n.op == MISER_OP_RESHAPE && xn->op == MISER_OP_RESHAPE) {
                n.in[0] = x = xn->in[0];
                xn = &g->nodes[x];
            }
            int noop = 0;
            if (n.op == MISER_OP_CONTIGUOUS) noop = miser_pass_known_contiguous(g, x);
            else if (same_shape(&n, xn)) noop = n.op != MISER_OP_TRANSPOSE || identity_perm(&n);
            if (noop) {
                r.map[i] = x;
                continue;
            }
            int32_t id = miser_rw_emit(&r, &n); /* input already a new id */
            if (id < 0) st = MISER_ERR_INVALID;
            else r.map[i] = id;
            continue;
        }
        if (miser_rw_keep(&r, i) < 0) st = MISER_ERR_INVALID;
    }
    return miser_rw_end(&r, st);
}
