/* Dead-code elimination: remove nodes whose value reaches no graph output,
 * and release owned constant storage that no live constant refers to. */
#include "miser/alloc.h"
#include "miser/passes.h"
#include "rewrite.h"

#include <string.h>

miser_status miser_pass_dce(miser_graph *g, const miser_pass_options *o)
{
    (void)o;
    int32_t n = g->n_nodes;
    char *live = miser_calloc(MISER_MEM_COMPILE, (size_t)n + 1, 1);
    if (!live) return MISER_ERR_NOMEM;
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
        }
    }
    miser_free(live);
    miser_pass_release_storage(g);
    return MISER_OK;
}
