/* Dead-code elimination: remove nodes whose value reaches no graph output,
 * and release owned constant storage that no live constant refers to. */
#include "miser/alloc.h"
#include "miser/passes.h"

#include <string.h>

miser_status miser_pass_dce(miser_graph *g, const miser_pass_options *o)
{
    (void)o;
    int32_t n = g->n_nodes;
    char *live = miser_calloc(MISER_MEM_COMPILE, (size_t)n + 1, 1);
    char *used = miser_calloc(MISER_MEM_COMPILE, (size_t)g->n_storage + 1, 1);
    if (!live || !used) {
        miser_free(live);
        miser_free(used);
        return MISER_ERR_NOMEM;
    }
    for (int32_t i = n - 1; i >= 0; i--) {
        const miser_node *nd = &g->nodes[i];
        if (nd->op == MISER_OP_OUTPUT || nd->op == MISER_OP_KV_WRITE) live[i] = 1; /* KV writes are side effects */
        if (!live[i] || nd->op == MISER_OP_NONE) continue;
        for (int k = 0; k < nd->n_in; k++) live[nd->in[k]] = 1;
    }
    /* inputs are part of the interface: keep them */
    for (int32_t i = 0; i < n; i++) {
        miser_node *nd = &g->nodes[i];
        if (nd->op == MISER_OP_INPUT) live[i] = 1;
        if (!live[i]) {
            memset(nd, 0, sizeof *nd);
            nd->op = MISER_OP_NONE;
        } else if (nd->op == MISER_OP_CONST)
            used[nd->cst.storage] = 1;
    }
    for (int32_t s = 0; s < g->n_storage; s++)
        if (!used[s] && g->storage[s].owned && g->storage[s].base) {
            g->materialized_bytes -= g->storage[s].bytes;
            miser_free((void *)g->storage[s].base);
            g->storage[s].base = NULL;
            g->storage[s].bytes = 0;
        }
    miser_free(live);
    miser_free(used);
    return MISER_OK;
}
