/* Einsum decomposition: every two-operand einsum becomes
 *     [TRANSPOSE] [CONTIGUOUS] [RESHAPE] of each operand
 *     -> MATMUL over [batch.., M, K] x [batch.., K, N]
 *     -> [RESHAPE] [TRANSPOSE] to the requested output order,
 * and a one-operand einsum that only permutes becomes a TRANSPOSE.
 *
 * Labels are classified as batch (in both operands and the output), M (left
 * operand and output), N (right operand and output) and K (both operands,
 * summed). Groups of several labels are merged into one matmul dimension by
 * a reshape when that is expressible (at most one symbolic size, and then
 * all other sizes are 1); otherwise the extra labels ride along as
 * broadcast batch dimensions. Operands are swapped when the output lists
 * the right operand's free labels first, so GPT-2's attention scores need no
 * output transpose. Reshapes of constants are left for fold_constants, which
 * turns them into strided views (a constant layout strides cannot express
 * gets a CONTIGUOUS, which fold_constants materialises once); an activation
 * is made contiguous before a merging reshape only when the compiler cannot
 * prove it already is.
 *
 * Left as einsums (still correct, run by the reference kernel): labels
 * summed out of a single operand (they need a reduction op), "..." dims that
 * broadcast between the operands (size 1 against n), one-operand einsums
 * other than permutations, and layouts over MISER_MAX_DIMS dims. */
#include "rewrite.h"

#include <stdio.h>
#include <string.h>

#define UNSUPPORTED (-2)

static int mergeable(const int64_t *sizes, int n, int64_t *merged)
{
    int64_t p = 1, sym = 0;
    int n_sym = 0;
    for (int i = 0; i < n; i++) {
        if (sizes[i] < 0) {
            n_sym++;
            sym = sizes[i];
        } else
            p *= sizes[i];
    }
    if (n_sym > 1 || (n_sym == 1 && p != 1)) return 0;
    *merged = n_sym ? sym : p;
    return 1;
}

static int find(const char *s, int n, char c)
{
    for (int i = 0; i < n; i++)
        if (s[i] == c) return i;
    return -1;
}

static int same_dims(int na, const int64_t *a, int nb, const int64_t *b)
{
    return na == nb && !memcmp(a, b, sizeof(int64_t) * (size_t)na);
}

static int32_t emit_view(miser_rw *r, miser_op op, int32_t x, int32_t nd, const int64_t *shape, const int32_t *perm,
                         const char *base, const char *suffix)
{
    miser_node n = {.op = op, .n_in = 1, .in = {x}};
    n.attr.ndim = nd;
    if (shape) memcpy(n.attr.shape, shape, sizeof(int64_t) * (size_t)nd);
    if (perm) memcpy(n.attr.perm, perm, sizeof(int32_t) * (size_t)nd);
    miser_pass_name(&n, base, suffix);
    return miser_rw_emit(r, &n);
}

/* Prepare one operand: permute its dims to `order` (positions in the
 * operand), then reshape to `target`. `merges` says the reshape joins
 * several non-unit dims (which needs a contiguous input). */
static int32_t prepare(miser_rw *r, int32_t x, const int32_t *order, int32_t rank, int32_t t_nd, const int64_t *target,
                       int merges, const char *base, const char *suffix)
{
    miser_graph *g = r->g;
    int ident = 1;
    for (int i = 0; i < rank; i++) ident &= order[i] == i;
    char sfx[16];
    if (!ident) {
        snprintf(sfx, sizeof sfx, "%s.t", suffix);
        x = emit_view(r, MISER_OP_TRANSPOSE, x, rank, NULL, order, base, sfx);
        if (x < 0) return -1;
    }
    const miser_node *xn = &g->nodes[x];
    if (same_dims(xn->ndim, xn->shape, t_nd, target)) return x;
    int need_copy = 0;
    if (merges) {
        /* a constant (or a transpose of one) whose layout strides can express
         * is left to fold_constants as a view; anything else is copied once */
        int64_t cs[MISER_MAX_DIMS], ts[MISER_MAX_DIMS];
        int32_t c = x;
        if (g->nodes[c].op == MISER_OP_TRANSPOSE) c = g->nodes[c].in[0];
        if (g->nodes[c].op == MISER_OP_CONST) {
            const miser_node *cn = &g->nodes[c];
            for (int i = 0; i < xn->ndim; i++) cs[i] = c == x ? cn->cst.stride[i] : cn->cst.stride[xn->attr.perm[i]];
            need_copy = miser_pass_reshape_strides(xn->ndim, xn->shape, cs, t_nd, target, ts) != 0;
        } else
            need_copy = !miser_pass_known_contiguous(g, x);
    }
    if (need_copy) {
        miser_node c = {.op = MISER_OP_CONTIGUOUS, .n_in = 1, .in = {x}};
        snprintf(sfx, sizeof sfx, "%s.c", suffix);
        miser_pass_name(&c, base, sfx);
        x = miser_rw_emit(r, &c);
        if (x < 0) return -1;
    }
    snprintf(sfx, sizeof sfx, "%s.r", suffix);
    return emit_view(r, MISER_OP_RESHAPE, x, t_nd, target, NULL, base, sfx);
}

/* Returns the new id of the einsum's value, UNSUPPORTED, or -1 (error). */
static int32_t decompose(miser_rw *r, const miser_node *e)
{
    miser_graph *g = r->g;
    int32_t x[2] = {r->map[e->in[0]], e->n_in > 1 ? r->map[e->in[1]] : -1};
    int32_t ranks[2] = {g->nodes[x[0]].ndim, x[1] >= 0 ? g->nodes[x[1]].ndim : 0};
    miser_einsum q;
    if (miser_einsum_parse(e->attr.eq, e->n_in, ranks, &q)) return -1;
    const int64_t *shp[2] = {g->nodes[x[0]].shape, x[1] >= 0 ? g->nodes[x[1]].shape : NULL};

    if (q.n_ops == 1) {
        if (q.out_rank != q.rank[0]) return UNSUPPORTED; /* a reduction */
        int32_t perm[MISER_MAX_DIMS];
        int ident = 1;
        for (int i = 0; i < q.out_rank; i++) {
            perm[i] = find(q.labels[0], q.rank[0], q.out[i]);
            ident &= perm[i] == i;
        }
        if (ident) return x[0];
        return emit_view(r, MISER_OP_TRANSPOSE, x[0], q.out_rank, NULL, perm, e->name, "");
    }

    /* classify labels */
    char bt[MISER_MAX_DIMS], m[MISER_MAX_DIMS], nn[MISER_MAX_DIMS], k[MISER_MAX_DIMS];
    int nbt = 0, nm = 0, nnn = 0, nk = 0;
    for (int o = 0; o < 2; o++)
        for (int d = 0; d < q.rank[o]; d++) {
            char l = q.labels[o][d];
            int pa = find(q.labels[0], q.rank[0], l), pb = find(q.labels[1], q.rank[1], l);
            int po = find(q.out, q.out_rank, l);
            if (pa >= 0 && pb >= 0 && shp[0][pa] != shp[1][pb]) return UNSUPPORTED; /* broadcast "..." */
            if (po < 0 && (pa < 0 || pb < 0)) return UNSUPPORTED;                  /* summed out of one operand */
            if (pa >= 0 && pb >= 0 && po < 0 && o == 0) k[nk++] = l;
        }
    for (int i = 0; i < q.out_rank; i++) {
        char l = q.out[i];
        int pa = find(q.labels[0], q.rank[0], l), pb = find(q.labels[1], q.rank[1], l);
        if (pa >= 0 && pb >= 0) bt[nbt++] = l;
        else if (pa >= 0) m[nm++] = l;
        else nn[nnn++] = l;
    }
    /* swap when the output lists every N label before every M label */
    int swap = nm > 0 && nnn > 0 && find(q.out, q.out_rank, nn[nnn - 1]) < find(q.out, q.out_rank, m[0]);
    if (swap) {
        int32_t t = x[0];
        x[0] = x[1];
        x[1] = t;
        const int64_t *ts = shp[0];
        shp[0] = shp[1];
        shp[1] = ts;
        char tl[MISER_MAX_DIMS];
        memcpy(tl, q.labels[0], sizeof tl);
        memcpy(q.labels[0], q.labels[1], sizeof tl);
        memcpy(q.labels[1], tl, sizeof tl);
        int32_t tr = q.rank[0];
        q.rank[0] = q.rank[1];
        q.rank[1] = tr;
        memcpy(tl, m, sizeof tl);
        memcpy(m, nn, sizeof tl);
        memcpy(nn, tl, sizeof tl);
        int tn = nm;
        nm = nnn;
        nnn = tn;
    }
#define SIZE(l) (find(q.labels[0], q.rank[0], (l)) >= 0 ? shp[0][find(q.labels[0], q.rank[0], (l))] \
                                                        : shp[1][find(q.labels[1], q.rank[1], (l))])
    int64_t ks[MISER_MAX_DIMS], ms[MISER_MAX_DIMS], ns[MISER_MAX_DIMS], bs[MISER_MAX_DIMS];
    for (int i = 0; i < nk; i++) ks[i] = SIZE(k[i]);
    for (int i = 0; i < nm; i++) ms[i] = SIZE(m[i]);
    for (int i = 0; i < nnn; i++) ns[i] = SIZE(nn[i]);
    for (int i = 0; i < nbt; i++) bs[i] = SIZE(bt[i]);
#undef SIZE
    int64_t K = 1, Mv = 1, Nv = 1;
    if (nk > 0 && !mergeable(ks, nk, &K)) return UNSUPPORTED;
    /* M: extras (A-only batch dims) when there is no true batch dim, since
     * then no reshape of the activation is needed; N: merged when possible
     * so a constant right operand becomes a 2-D [K, N] weight view. */
    int m_extra = 0, n_extra = 0, m_merged = 0, n_merged = 0;
    if (nm > 1) {
        if (nbt == 0 || !mergeable(ms, nm, &Mv)) m_extra = nm - 1;
        else m_merged = 1;
    }
    if (nm == 1) Mv = ms[0];
    if (m_extra) Mv = ms[nm - 1];
    if (nnn > 1) {
        if (mergeable(ns, nnn, &Nv)) n_merged = 1;
        else n_extra = nnn - 1;
    }
    if (nnn == 1) Nv = ns[0];
    if (n_extra) Nv = ns[nnn - 1];
    int a_nd = nbt + m_extra + n_extra + 2, b_nd = nbt + (nbt ? m_extra : 0) + n_extra + 2;
    if (a_nd > MISER_MAX_DIMS || b_nd > MISER_MAX_DIMS)
        return UNSUPPORTED;

    /* operand A: [bt.., M.., K..] -> [bt.., Mextra.., 1 x n_extra, Mv, K] */
    int32_t order[MISER_MAX_DIMS];
    int no = 0;
    for (int i = 0; i < nbt; i++) order[no++] = find(q.labels[0], q.rank[0], bt[i]);
    for (int i = 0; i < nm; i++) order[no++] = find(q.labels[0], q.rank[0], m[i]);
    for (int i = 0; i < nk; i++) order[no++] = find(q.labels[0], q.rank[0], k[i]);
    int64_t ta[MISER_MAX_DIMS];
    int nt = 0;
    for (int i = 0; i < nbt; i++) ta[nt++] = bs[i];
    for (int i = 0; i < m_extra; i++) ta[nt++] = ms[i];
    for (int i = 0; i < n_extra; i++) ta[nt++] = 1;
    ta[nt++] = Mv;
    ta[nt++] = K;
    int merges_a = nk > 1 || m_merged;
    int32_t a = prepare(r, x[0], order, q.rank[0], nt, ta, merges_a, e->name, ".a");
    if (a < 0) return -1;

    /* operand B: [bt.., K.., N..] -> [bt.., 1 x m_extra (if bt), Nextra.., K, Nv] */
    no = 0;
    for (int i = 0; i < nbt; i++) order[no++] = find(q.labels[1], q.rank[1], bt[i]);
    for (int i = 0; i < nk; i++) order[no++] = find(q.labels[1], q.rank[1], k[i]);
    for (int i = 0; i < nnn; i++) order[no++] = find(q.labels[1], q.rank[1], nn[i]);
    int64_t tb[MISER_MAX_DIMS];
    nt = 0;
    for (int i = 0; i < nbt; i++) tb[nt++] = bs[i];
    if (nbt)
        for (int i = 0; i < m_extra; i++) tb[nt++] = 1;
    for (int i = 0; i < n_extra; i++) tb[nt++] = ns[i];
    tb[nt++] = K;
    tb[nt++] = Nv;
    int32_t b = prepare(r, x[1], order, q.rank[1], nt, tb, nk > 1 || n_merged, e->name, ".b");
    if (b < 0) return -1;

    miser_node mm = {.op = MISER_OP_MATMUL, .n_in = 2, .in = {a, b}};
    miser_pass_name(&mm, e->name, ".mm");
    int32_t y = miser_rw_emit(r, &mm);
    if (y < 0) return -1;

    /* result labels: bt.., Mextra.., Nextra.., M group, N group */
    char rl[MISER_MAX_DIMS];
    int64_t rs[MISER_MAX_DIMS];
    int nr = 0;
    for (int i = 0; i < nbt; i++) rl[nr] = bt[i], rs[nr++] = bs[i];
    for (int i = 0; i < m_extra; i++) rl[nr] = m[i], rs[nr++] = ms[i];
    for (int i = 0; i < n_extra; i++) rl[nr] = nn[i], rs[nr++] = ns[i];
    for (int i = m_extra; i < nm; i++) rl[nr] = m[i], rs[nr++] = ms[i];
    for (int i = n_extra; i < nnn; i++) rl[nr] = nn[i], rs[nr++] = ns[i];
    if (!same_dims(g->nodes[y].ndim, g->nodes[y].shape, nr, rs)) {
        y = emit_view(r, MISER_OP_RESHAPE, y, nr, rs, NULL, e->name, ".r");
        if (y < 0) return -1;
    }
    int32_t perm[MISER_MAX_DIMS];
    int ident = 1;
    for (int i = 0; i < q.out_rank; i++) {
        perm[i] = find(rl, nr, q.out[i]);
        ident &= perm[i] == i;
    }
    if (!ident) y = emit_view(r, MISER_OP_TRANSPOSE, y, q.out_rank, NULL, perm, e->name, "");
    return y;
}

miser_status miser_pass_decompose_einsum(miser_graph *g, const miser_pass_options *o)
{
    (void)o;
    miser_rw r;
    miser_status st = miser_rw_begin(g, &r);
    if (st) return st;
    for (int32_t i = 0; i < r.n_old && !st; i++) {
        const miser_node *n = &r.old[i];
        if (n->op == MISER_OP_NONE) continue;
        if (n->op == MISER_OP_EINSUM) {
            int32_t y = decompose(&r, n);
            if (y >= 0) {
                r.map[i] = y;
                continue;
            }
            if (y == -1) {
                st = miser_error_prefix(MISER_ERR_INVALID, "decomposing einsum '%s' (%s)", n->attr.eq, n->name);
                break;
            }
        }
        if (miser_rw_keep(&r, i) < 0) st = MISER_ERR_INVALID;
    }
    return miser_rw_end(&r, st);
}
