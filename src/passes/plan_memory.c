/* Memory planning: give every non-view activation an offset in one arena,
 * sized for the worst case (T = t_max, S = s_max) and reserved once.
 * Liveness: a buffer lives from its producer to the last use of it or of any
 * view of it; graph outputs live to the end. Offsets are chosen first-fit
 * among buffers alive at the same time. Element-wise ops (and rmsnorm,
 * rope) may take over an input buffer that dies at that op (in place). */
#include "miser/alloc.h"
#include "miser/passes.h"

#include <string.h>

#define ALIGN 64u

static int produces_buffer(const miser_node *n)
{
    return n->op != MISER_OP_NONE && n->op != MISER_OP_CONST && n->op != MISER_OP_INPUT &&
           !(n->flags & MISER_NODE_VIEW);
}

/* the buffer-owning node a value lives in (-1: constant, input or KV cache) */
static int32_t root_of(const miser_graph *g, int32_t id)
{
    for (;;) {
        const miser_node *n = &g->nodes[id];
        if (n->op == MISER_OP_KV_WRITE || n->op == MISER_OP_CONST || n->op == MISER_OP_INPUT) return -1;
        if (!(n->flags & MISER_NODE_VIEW)) return id;
        id = n->in[0];
    }
}

static int elementwise(const miser_graph *g, const miser_node *n, int32_t in)
{
    /* rope reads each (i, i + D/2) pair before writing it; swiglu, silu and
     * rmsnorm read element i (rmsnorm: its row, summed first) before writing it */
    if (n->op != MISER_OP_GELU && n->op != MISER_OP_SCALE && n->op != MISER_OP_ADD && n->op != MISER_OP_MUL &&
        n->op != MISER_OP_LAYERNORM && n->op != MISER_OP_RMSNORM && n->op != MISER_OP_SILU &&
        n->op != MISER_OP_SWIGLU && n->op != MISER_OP_ROPE)
        return 0;
    const miser_node *a = &g->nodes[in];
    if (a->ndim != n->ndim || memcmp(a->shape, n->shape, sizeof(int64_t) * (size_t)n->ndim)) return 0;
    return !(a->flags & MISER_NODE_VIEW);
}

miser_status miser_pass_plan_memory(miser_graph *g, const miser_pass_options *o)
{
    int32_t n = g->n_nodes;
    int32_t *last = miser_malloc(MISER_MEM_COMPILE, sizeof(int32_t) * (size_t)(n ? n : 1));
    int32_t *active = miser_malloc(MISER_MEM_COMPILE, sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!last || !active) {
        miser_free(last);
        miser_free(active);
        return MISER_ERR_NOMEM;
    }
    for (int32_t i = 0; i < n; i++) last[i] = i;
    for (int32_t i = 0; i < n; i++) {
        const miser_node *nd = &g->nodes[i];
        if (nd->op == MISER_OP_NONE) continue;
        for (int k = 0; k < nd->n_in; k++) {
            int32_t r = root_of(g, nd->in[k]);
            if (r >= 0 && last[r] < i) last[r] = i;
        }
        if (nd->op == MISER_OP_OUTPUT) {
            int32_t r = root_of(g, nd->in[0]);
            if (r >= 0) last[r] = n; /* outputs survive the step */
        }
    }
    int32_t n_active = 0;
    uint64_t arena = 0;
    for (int32_t i = 0; i < n; i++) {
        miser_node *nd = &g->nodes[i];
        nd->flags &= ~MISER_NODE_INPLACE;
        if (!produces_buffer(nd)) {
            nd->bytes = 0;
            continue;
        }
        uint64_t bytes = (miser_graph_numel_max(g, i) * 4 + ALIGN - 1) / ALIGN * ALIGN;
        nd->bytes = bytes;
        /* in place: an element-wise op whose same-shaped input dies here */
        int done = 0;
        if (o && o->in_place)
            for (int k = 0; k < nd->n_in && !done; k++) {
                int32_t in = nd->in[k];
                if (root_of(g, in) == in && last[in] == i && elementwise(g, nd, in) && g->nodes[in].bytes == bytes) {
                    nd->offset = g->nodes[in].offset;
                    nd->flags |= MISER_NODE_INPLACE;
                    for (int32_t a = 0; a < n_active; a++)
                        if (active[a] == in) active[a] = i;
                    done = 1;
                }
            }
        if (!done) {
            /* drop buffers that are dead before this node */
            int32_t w = 0;
            for (int32_t a = 0; a < n_active; a++)
                if (last[active[a]] >= i) active[w++] = active[a];
            n_active = w;
            /* first fit: sort active by offset (insertion), scan gaps */
            for (int32_t a = 1; a < n_active; a++) {
                int32_t v = active[a], b = a - 1;
                while (b >= 0 && g->nodes[active[b]].offset > g->nodes[v].offset) {
                    active[b + 1] = active[b];
                    b--;
                }
                active[b + 1] = v;
            }
            /* the naive pipeline plans like the default one: its difference
             * is folding only, so the comparison isolates that */
            uint64_t off = 0;
            for (int32_t a = 0; a < n_active; a++) {
                const miser_node *q = &g->nodes[active[a]];
                if (q->offset >= off + bytes) break;
                if (q->offset + q->bytes > off) off = q->offset + q->bytes;
            }
            nd->offset = off;
            active[n_active++] = i;
        }
        if (nd->offset + bytes > arena) arena = nd->offset + bytes;
    }
    g->arena_bytes = arena;
    miser_free(last);
    miser_free(active);
    return MISER_OK;
}
