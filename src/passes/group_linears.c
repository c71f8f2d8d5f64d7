/* Pass group_linears: linears that read the same input become one LINEARS
 * node, run as one dispatch of the thread pool (session's executor,
 * src/runtime/linears.c) instead of one each:
 *
 *   SWIGLU(LINEAR(x, Wg), LINEAR(x, Wu))  ->  SLICE(LINEARS[swiglu](x, Wg, Wu), [0, N))
 *   LINEAR(x, Wq), LINEAR(x, Wk), LINEAR(x, Wv)  ->  SLICEs of LINEARS(x, Wq, Wk, Wv)
 *
 * Why: in a Llama decode step every op ends on the pool's barrier, and a
 * thread that the OS preempts holds the whole op; the two groups take a
 * layer from 15 dispatches to 11 (Q/K/V 3 -> 1; gate, up and SiLU x up 3 ->
 * 1), and SiLU x up runs on columns the thread has just written instead of
 * in a pass of its own. The weights stay separate mmapped tensors: LINEARS
 * runs the linear kernel over each in place (never a concatenated copy).
 *
 * Which linears: no bias, no activation, weights of any dtype in
 * the dot layout (W [K, N] with stride[0] == 1, i.e. PyTorch's [out, in]
 * rows: every Llama-family projection), block dtypes on whole rows, and
 * the same x node; up to three per group (MISER_MAX_INPUTS). GPT-2's
 * linears all have biases (and fuse already made c_attn one linear), so
 * its graphs are untouched. Runs after fuse (which makes the LINEARs and
 * SWIGLUs; uses are counted over live nodes only, since fuse leaves its
 * replaced SILU/MUL for the dce that follows), before plan_memory. */
#include "rewrite.h"
#include "miser/alloc.h"

#include <string.h>

/* LINEAR i qualifies (see above) */
static int candidate(const miser_node *old, int32_t i)
{
    const miser_node *n = &old[i];
    if (n->op != MISER_OP_LINEAR || n->n_in != 2 || n->attr.i[0] != MISER_ACT_NONE) return 0;
    const miser_node *w = &old[n->in[1]];
    if (w->op != MISER_OP_CONST || w->ndim != 2 || w->cst.stride[0] != 1 || w->shape[1] < 1) return 0;
    const int64_t bl = miser_dtype_block(w->dtype);
    return bl <= 1 || (w->shape[0] % bl == 0 && w->cst.stride[1] % bl == 0);
}

/* Emit old constant c now if the walk has not reached it (a constant has no
 * inputs, so it may move earlier); its id. */
static int32_t early_const(miser_rw *r, int32_t c)
{
    if (r->map[c] >= 0) return r->map[c];
    return miser_rw_keep(r, c);
}

static int32_t emit_slice(miser_rw *r, int32_t src, int64_t start, int64_t len, const char *name)
{
    miser_node s = {.op = MISER_OP_SLICE, .n_in = 1, .in = {src}};
    s.attr.i[0] = r->g->nodes[src].ndim - 1;
    s.attr.i[1] = start;
    s.attr.i[2] = len;
    memcpy(s.name, name, sizeof s.name);
    return miser_rw_emit(r, &s);
}

miser_status miser_pass_group_linears(miser_graph *g, const miser_pass_options *o)
{
    (void)o;
    const int32_t n = g->n_nodes;
    /* group[i]: the group's first member (program order) for members, -1
     * otherwise; epi[lead]: the epilogue; swz[lead]: the SWIGLU node it replaces */
    int32_t *group = miser_malloc(MISER_MEM_COMPILE, sizeof(int32_t) * (size_t)(n + 1));
    int32_t *swz = miser_malloc(MISER_MEM_COMPILE, sizeof(int32_t) * (size_t)(n + 1));
    if (!group || !swz) {
        miser_free(group);
        miser_free(swz);
        return MISER_ERR_NOMEM;
    }
    const miser_node *nodes = g->nodes;
    int32_t *uses = miser_calloc(MISER_MEM_COMPILE, (size_t)n + 1, sizeof(int32_t));
    char *live = miser_calloc(MISER_MEM_COMPILE, (size_t)n + 1, 1);
    if (!uses || !live) {
        miser_free(group);
        miser_free(swz);
        miser_free(uses);
        miser_free(live);
        return MISER_ERR_NOMEM;
    }
    /* live: what the outputs and the KV cache writes need (as dce keeps) */
    for (int32_t i = n - 1; i >= 0; i--) {
        if (nodes[i].op == MISER_OP_OUTPUT || nodes[i].op == MISER_OP_KV_WRITE) live[i] = 1;
        if (live[i] && nodes[i].op != MISER_OP_NONE)
            for (int k = 0; k < nodes[i].n_in; k++) live[nodes[i].in[k]] = 1;
    }
    for (int32_t i = 0; i < n; i++) {
        group[i] = swz[i] = -1;
        if (nodes[i].op == MISER_OP_NONE || !live[i]) continue;
        for (int k = 0; k < nodes[i].n_in; k++) uses[nodes[i].in[k]]++;
    }
    int any = 0;
    /* SWIGLU(gate, up) over two candidates of one x, used only there */
    for (int32_t i = 0; i < n; i++) {
        const miser_node *s = &nodes[i];
        if (s->op != MISER_OP_SWIGLU) continue;
        const int32_t ga = s->in[0], up = s->in[1];
        if (ga == up || !candidate(nodes, ga) || !candidate(nodes, up) || uses[ga] != 1 || uses[up] != 1 ||
            group[ga] >= 0 || group[up] >= 0 || nodes[ga].in[0] != nodes[up].in[0] ||
            nodes[nodes[ga].in[1]].shape[1] != nodes[nodes[up].in[1]].shape[1])
            continue;
        const int32_t lead = ga < up ? ga : up;
        group[ga] = group[up] = lead;
        swz[lead] = i;
        any = 1;
    }
    /* plain groups: up to three remaining candidates of one x */
    for (int32_t i = 0; i < n; i++) {
        if (group[i] >= 0 || !uses[i] || !candidate(nodes, i)) continue; /* live ones only */
        int32_t mem[3] = {i}, nm = 1;
        for (int32_t j = i + 1; j < n && nm < 3; j++)
            if (group[j] < 0 && uses[j] && candidate(nodes, j) && nodes[j].in[0] == nodes[i].in[0]) mem[nm++] = j;
        if (nm < 2) continue;
        for (int k = 0; k < nm; k++) group[mem[k]] = i;
        any = 1;
    }
    miser_free(uses);
    if (!any) {
        miser_free(group);
        miser_free(swz);
        miser_free(live);
        return MISER_OK;
    }
    miser_rw r;
    miser_status st = miser_rw_begin(g, &r);
    if (st) {
        miser_free(group);
        miser_free(swz);
        miser_free(live);
        return st;
    }
    const miser_node *old = r.old;
    for (int32_t i = 0; i < r.n_old && !st; i++) {
        if (old[i].op == MISER_OP_NONE || r.map[i] >= 0) continue; /* emitted early (constants, SWIGLUs) */
        if (group[i] < 0) {
            /* fuse's dead SILU/MUL may read a grouped gate: dropped here, as dce would */
            if (!live[i] && old[i].op != MISER_OP_INPUT && old[i].op != MISER_OP_CONST) continue;
            if (miser_rw_keep(&r, i) < 0) st = MISER_ERR_INVALID;
            continue;
        }
        if (group[i] != i) continue; /* a later member: emitted with its lead */
        int32_t mem[3], nm = 0;
        for (int32_t j = i; j < r.n_old && nm < 3; j++)
            if (group[j] == i) mem[nm++] = j;
        miser_node ln = {.op = MISER_OP_LINEARS, .n_in = 1 + nm, .in = {r.map[old[i].in[0]]}};
        ln.attr.i[0] = swz[i] >= 0 ? MISER_LINEARS_SWIGLU : MISER_LINEARS_PLAIN;
        if (swz[i] >= 0) { /* gate first, then up: SWIGLU's operand order */
            mem[0] = old[swz[i]].in[0];
            mem[1] = old[swz[i]].in[1];
        }
        for (int k = 0; k < nm && !st; k++)
            if ((ln.in[1 + k] = early_const(&r, old[mem[k]].in[1])) < 0) st = MISER_ERR_INVALID;
        if (st) break;
        miser_pass_name(&ln, old[swz[i] >= 0 ? swz[i] : i].name, ".grouped");
        const int32_t y = ln.in[0] >= 0 ? miser_rw_emit(&r, &ln) : -1;
        if (y < 0) {
            st = MISER_ERR_INVALID;
            break;
        }
        if (swz[i] >= 0) { /* the result is the first N columns */
            const int32_t v = emit_slice(&r, y, 0, old[old[mem[0]].in[1]].shape[1], old[swz[i]].name);
            if (v < 0) st = MISER_ERR_INVALID;
            else r.map[swz[i]] = v;
            continue; /* gate and up had no other users: they map to nothing */
        }
        int64_t off = 0;
        for (int k = 0; k < nm && !st; k++) {
            const int64_t N = old[old[mem[k]].in[1]].shape[1];
            const int32_t v = emit_slice(&r, y, off, N, old[mem[k]].name);
            if (v < 0) st = MISER_ERR_INVALID;
            else r.map[mem[k]] = v;
            off += N;
        }
    }
    miser_free(group);
    miser_free(swz);
    miser_free(live);
    return miser_rw_end(&r, st);
}
