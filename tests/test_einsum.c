/* Einsum: the equation parser's errors, the reference kernel against a
 * direct nested loop written here, and a property test: random equations
 * and shapes, built as a graph, decomposed by the compiler (then folded,
 * cleaned up), executed by a small interpreter over the generic strided
 * kernels, and compared with the direct loop. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/generic.h"
#include "miser/alloc.h"
#include "miser/graph.h"
#include "miser/passes.h"
#include "passes/rewrite.h"

static miser_status parse(const char *eq, int n, int r0, int r1, miser_einsum *e)
{
    int32_t ranks[2] = {r0, r1};
    return miser_einsum_parse(eq, n, ranks, e);
}

Test(einsum, parses_explicit_implicit_and_ellipsis)
{
    miser_einsum e;
    cr_assert_eq(parse("abc,cde->abde", 2, 3, 3, &e), MISER_OK);
    cr_expect_eq(e.out_rank, 4);
    cr_expect(!memcmp(e.out, "abde", 4));
    cr_assert_eq(parse("ij,jk", 2, 2, 2, &e), MISER_OK, "%s", miser_error_message());
    cr_expect_eq(e.out_rank, 2);
    cr_expect(!memcmp(e.out, "ik", 2), "implicit output is the labels seen once, sorted");
    cr_assert_eq(parse("ba,ac", 2, 2, 2, &e), MISER_OK);
    cr_expect(!memcmp(e.out, "bc", 2));
    cr_assert_eq(parse("...ij,...jk->...ik", 2, 4, 3, &e), MISER_OK, "%s", miser_error_message());
    cr_expect_eq(e.rank[0], 4);
    cr_expect_eq(e.rank[1], 3);
    cr_expect_eq(e.out_rank, 4);
    cr_expect_eq(e.out[2], 'i');
    cr_assert_eq(parse("ij->", 1, 2, 0, &e), MISER_OK, "a full sum has a rank-0 output");
    cr_expect_eq(e.out_rank, 0);
    cr_assert_eq(parse("ij->ji", 1, 2, 0, &e), MISER_OK);
}

Test(einsum, rejects_malformed_equations_with_clear_errors)
{
    static const struct {
        const char *eq;
        int n, r0, r1;
        const char *why;
    } bad[] = {
        {"ab,bc->ad", 2, 2, 2, "does not appear"},
        {"ab,bc->aa", 2, 2, 2, "twice"},
        {"ab,bc->a->c", 2, 2, 2, "more than one"},
        {"abc,bc->ac", 2, 2, 2, "rank"},
        {"ab,bc,cd->ad", 2, 2, 2, "operands"},
        {"ab->b", 2, 2, 2, "number of terms"},
        {"a1,1b->ab", 2, 2, 2, "letters"},
        {"a..b,bc->ac", 2, 2, 2, "'...'"},
        {"...a...,a->", 2, 3, 1, "'...'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        miser_einsum e;
        miser_status st = parse(bad[i].eq, bad[i].n, bad[i].r0, bad[i].r1, &e);
        cr_expect_neq(st, MISER_OK, "'%s' accepted", bad[i].eq);
        cr_expect(strstr(miser_error_message(), bad[i].eq) != NULL, "error for '%s' does not name it: %s", bad[i].eq,
                  miser_error_message());
        cr_expect(strstr(miser_error_message(), bad[i].why) != NULL, "error for '%s' is unclear: %s", bad[i].eq,
                  miser_error_message());
    }
    miser_einsum e;
    cr_expect_eq(parse("aab,b->a", 2, 3, 1, &e), MISER_ERR_UNSUPPORTED, "diagonals are refused, not miscomputed");
}

Test(einsum, graph_rejects_inconsistent_sizes)
{
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    static float a[6], b[12];
    miser_tensor_info ta = {.name = "a", .dtype = MISER_DTYPE_F32, .ndim = 2, .shape = {2, 3}, .stride = {3, 1}, .data = a, .nbytes = sizeof a};
    miser_tensor_info tb = {.name = "b", .dtype = MISER_DTYPE_F32, .ndim = 2, .shape = {4, 3}, .stride = {3, 1}, .data = b, .nbytes = sizeof b};
    int32_t ca = miser_g_const(&g, &ta, NULL), cb = miser_g_const(&g, &tb, NULL);
    cr_expect_lt(miser_g_einsum(&g, "ij,jk->ik", ca, cb, "mm"), 0);
    cr_expect(strstr(miser_error_message(), "inconsistent sizes"), "%s", miser_error_message());
    miser_graph_free(&g);
}

/* ---- direct reference: loops over every label assignment ---- */

typedef struct {
    int n_ops;
    char la[8], lb[8], lo[8];
    int ra, rb, ro;
    int nl;
    char labels[12];
    int64_t size[12];
} eq_t;

static int label_index(const eq_t *q, char c)
{
    for (int i = 0; i < q->nl; i++)
        if (q->labels[i] == c) return i;
    return -1;
}

/* a, b: element (i0, i1, ..) at sum(i_d * stride_d) */
static void direct(const eq_t *q, const float *a, const int64_t *sa, const float *b, const int64_t *sb, double *out)
{
    int64_t total = 1, idx[12] = {0};
    for (int i = 0; i < q->nl; i++) total *= q->size[i];
    int64_t on = 1;
    for (int d = 0; d < q->ro; d++) on *= q->size[label_index(q, q->lo[d])];
    for (int64_t o = 0; o < on; o++) out[o] = 0;
    for (int64_t t = 0; t < total; t++) {
        int64_t oa = 0, ob = 0, oo = 0;
        for (int d = 0; d < q->ra; d++) oa += idx[label_index(q, q->la[d])] * sa[d];
        for (int d = 0; d < q->rb; d++) ob += idx[label_index(q, q->lb[d])] * sb[d];
        for (int d = 0; d < q->ro; d++) oo = oo * q->size[label_index(q, q->lo[d])] + idx[label_index(q, q->lo[d])];
        out[oo] += (double)a[oa] * (q->n_ops == 2 ? b[ob] : 1.0);
        for (int i = q->nl - 1; i >= 0; i--) {
            if (++idx[i] < q->size[i]) break;
            idx[i] = 0;
        }
    }
}

/* ---- a tiny interpreter for the ops decomposition produces ---- */

typedef struct {
    miser_tview *v;
    float **bufs;
    int32_t n;
} interp_t;

static void run_graph(const miser_graph *g, interp_t *it)
{
    it->n = g->n_nodes;
    it->v = calloc((size_t)g->n_nodes, sizeof *it->v);
    it->bufs = calloc((size_t)g->n_nodes, sizeof *it->bufs);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const miser_node *n = &g->nodes[i];
        if (n->op == MISER_OP_NONE) continue;
        miser_tview *v = &it->v[i];
        const miser_tview *a = n->n_in > 0 ? &it->v[n->in[0]] : NULL, *b = n->n_in > 1 ? &it->v[n->in[1]] : NULL;
        v->ndim = n->ndim;
        v->dtype = n->dtype;
        memcpy(v->shape, n->shape, sizeof v->shape);
        int64_t numel = 1;
        for (int d = 0; d < n->ndim; d++) numel *= n->shape[d];
        int64_t st = 1;
        switch (n->op) {
        case MISER_OP_CONST:
            v->data = (void *)n->cst.data;
            memcpy(v->stride, n->cst.stride, sizeof v->stride);
            continue;
        case MISER_OP_TRANSPOSE:
            v->data = a->data;
            for (int d = 0; d < n->ndim; d++) v->stride[d] = a->stride[n->attr.perm[d]];
            continue;
        case MISER_OP_RESHAPE:
            v->data = a->data;
            cr_assert_eq(miser_pass_reshape_strides(a->ndim, a->shape, a->stride, v->ndim, v->shape, v->stride), 0,
                         "node %d '%s': reshape of a non-contiguous view would fail at run time", i, n->name);
            continue;
        case MISER_OP_OUTPUT: *v = *a; continue;
        default: break;
        }
        for (int d = n->ndim - 1; d >= 0; d--) {
            v->stride[d] = st;
            st *= n->shape[d];
        }
        it->bufs[i] = calloc((size_t)(numel ? numel : 1), sizeof(float));
        v->data = it->bufs[i];
        v->dtype = MISER_DTYPE_F32;
        switch (n->op) {
        case MISER_OP_CONTIGUOUS: miser_ref_copy(a, it->bufs[i], 1.0f); break;
        case MISER_OP_MATMUL: miser_ref_matmul(a, b, it->bufs[i], n->ndim, n->shape); break;
        case MISER_OP_EINSUM: {
            miser_einsum e;
            int32_t ranks[2] = {a->ndim, b ? b->ndim : 0};
            cr_assert_eq(miser_einsum_parse(n->attr.eq, n->n_in, ranks, &e), MISER_OK);
            miser_ref_einsum(&e, a, b, it->bufs[i], n->shape);
            break;
        }
        default: cr_assert_fail("interpreter: unexpected op %s", miser_op_name(n->op));
        }
    }
}

static void free_interp(interp_t *it)
{
    for (int32_t i = 0; i < it->n; i++) free(it->bufs[i]);
    free(it->bufs);
    free(it->v);
}

static uint64_t rng_state = 88172645463325252ULL;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void shuffle(char *s, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rnd((uint32_t)i + 1);
        char t = s[i];
        s[i] = s[j];
        s[j] = t;
    }
}

/* value of the graph's output as doubles, contiguous in output order */
static void output_values(const miser_graph *g, interp_t *it, int64_t on, double *dst)
{
    int32_t out = -1;
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == MISER_OP_OUTPUT) out = i;
    cr_assert_geq(out, 0);
    const miser_tview *v = &it->v[out];
    float *tmp = malloc(sizeof(float) * (size_t)(on ? on : 1));
    miser_ref_copy(v, tmp, 1.0f);
    for (int64_t k = 0; k < on; k++) dst[k] = tmp[k];
    free(tmp);
}

static void expect_close(const double *got, const double *want, int64_t n, const char *what, const char *eq)
{
    for (int64_t k = 0; k < n; k++)
        cr_assert(fabs(got[k] - want[k]) <= 1e-4 * (1 + fabs(want[k])), "%s, '%s': element %lld is %g, want %g", what,
                  eq, (long long)k, got[k], want[k]);
}

Test(einsum, property_random_equations_decomposed_match_direct_loops)
{
    int decomposed = 0, kept = 0;
    for (int iter = 0; iter < 400; iter++) {
        eq_t q = {.n_ops = 2};
        q.nl = 1 + (int)rnd(5);
        /* roles: 0 batch, 1 M (a only), 2 N (b only), 3 K (contracted), 4 summed out of a, 5 of b */
        int role[12];
        for (int i = 0; i < q.nl; i++) {
            q.labels[i] = (char)('a' + rnd(26));
            for (int j = 0; j < i; j++)
                if (q.labels[j] == q.labels[i]) i--, j = i; /* retry duplicates */
        }
        for (int i = 0; i < q.nl; i++) {
            q.size[i] = 1 + rnd(3);
            uint32_t r = rnd(20);
            role[i] = r < 4 ? 0 : r < 8 ? 1 : r < 12 ? 2 : r < 18 ? 3 : r == 18 ? 4 : 5;
        }
        for (int i = 0; i < q.nl; i++) {
            if (role[i] == 0 || role[i] == 1 || role[i] == 3 || role[i] == 4) q.la[q.ra++] = q.labels[i];
            if (role[i] == 0 || role[i] == 2 || role[i] == 3 || role[i] == 5) q.lb[q.rb++] = q.labels[i];
            if (role[i] <= 2) q.lo[q.ro++] = q.labels[i];
        }
        if (q.ra == 0 || q.rb == 0) continue;
        shuffle(q.la, q.ra);
        shuffle(q.lb, q.rb);
        shuffle(q.lo, q.ro);
        char eq[64];
        int implicit = rnd(5) == 0;
        if (implicit) {
            /* implicit output: labels seen once, sorted; summed-out labels stay */
            q.ro = 0;
            for (int c = 'a'; c <= 'z'; c++) {
                int cnt = (memchr(q.la, c, (size_t)q.ra) != NULL) + (memchr(q.lb, c, (size_t)q.rb) != NULL);
                if (cnt == 1) q.lo[q.ro++] = (char)c;
            }
            snprintf(eq, sizeof eq, "%.*s,%.*s", q.ra, q.la, q.rb, q.lb);
        } else
            snprintf(eq, sizeof eq, "%.*s,%.*s->%.*s", q.ra, q.la, q.rb, q.lb, q.ro, q.lo);

        /* operands: a stored in a random dim order (so its view is strided), b contiguous */
        int64_t na = 1, nb = 1, on = 1;
        int64_t shape_a[8], shape_b[8], sa[8], sb[8];
        for (int d = 0; d < q.ra; d++) na *= shape_a[d] = q.size[label_index(&q, q.la[d])];
        for (int d = 0; d < q.rb; d++) nb *= shape_b[d] = q.size[label_index(&q, q.lb[d])];
        for (int d = 0; d < q.ro; d++) on *= q.size[label_index(&q, q.lo[d])];
        int32_t order[8];
        for (int d = 0; d < q.ra; d++) order[d] = d;
        for (int d = q.ra - 1; d > 0; d--) {
            int j = (int)rnd((uint32_t)d + 1), t = order[d];
            order[d] = order[j];
            order[j] = t;
        }
        int64_t s = 1;
        for (int d = q.ra - 1; d >= 0; d--) {
            sa[order[d]] = s;
            s *= shape_a[order[d]];
        }
        s = 1;
        for (int d = q.rb - 1; d >= 0; d--) {
            sb[d] = s;
            s *= shape_b[d];
        }
        float *a = malloc(sizeof(float) * (size_t)na), *b = malloc(sizeof(float) * (size_t)nb);
        for (int64_t k = 0; k < na; k++) a[k] = (float)((int)rnd(17) - 8) / 4.0f;
        for (int64_t k = 0; k < nb; k++) b[k] = (float)((int)rnd(17) - 8) / 4.0f;
        double *want = malloc(sizeof(double) * (size_t)(on ? on : 1)), *got = malloc(sizeof(double) * (size_t)(on ? on : 1));
        direct(&q, a, sa, b, sb, want);

        /* the reference kernel agrees with the direct loop */
        miser_einsum e;
        int32_t ranks[2] = {q.ra, q.rb};
        cr_assert_eq(miser_einsum_parse(eq, 2, ranks, &e), MISER_OK, "'%s': %s", eq, miser_error_message());
        miser_tview va = {.data = a, .dtype = MISER_DTYPE_F32, .ndim = q.ra}, vb = {.data = b, .dtype = MISER_DTYPE_F32, .ndim = q.rb};
        memcpy(va.shape, shape_a, sizeof(int64_t) * (size_t)q.ra);
        memcpy(va.stride, sa, sizeof(int64_t) * (size_t)q.ra);
        memcpy(vb.shape, shape_b, sizeof(int64_t) * (size_t)q.rb);
        memcpy(vb.stride, sb, sizeof(int64_t) * (size_t)q.rb);
        int64_t oshape[8];
        for (int d = 0; d < q.ro; d++) oshape[d] = q.size[label_index(&q, q.lo[d])];
        float *ref = malloc(sizeof(float) * (size_t)(on ? on : 1));
        miser_ref_einsum(&e, &va, &vb, ref, oshape);
        for (int64_t k = 0; k < on; k++) got[k] = ref[k];
        expect_close(got, want, on, "reference kernel", eq);
        free(ref);

        /* graph: const views -> einsum -> output; decompose, fold, clean up */
        miser_graph g;
        cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
        miser_tensor_info ta = {.name = "a", .dtype = MISER_DTYPE_F32, .ndim = 1, .shape = {na}, .stride = {1}, .data = a,
                                .nbytes = (uint64_t)na * 4};
        miser_tensor_info tb = {.name = "b", .dtype = MISER_DTYPE_F32, .ndim = 1, .shape = {nb}, .stride = {1}, .data = b,
                                .nbytes = (uint64_t)nb * 4};
        int32_t ca = miser_g_const_view(&g, miser_g_const(&g, &ta, NULL), 0, q.ra, shape_a, sa, "a.view");
        int32_t cb = miser_g_const_view(&g, miser_g_const(&g, &tb, NULL), 0, q.rb, shape_b, sb, "b.view");
        int32_t ein = miser_g_einsum(&g, eq, ca, cb, "e");
        cr_assert_geq(ein, 0, "'%s': %s", eq, miser_error_message());
        int32_t out = miser_g_op(&g, MISER_OP_OUTPUT, 1, &ein, "out");
        cr_assert_geq(out, 0);
        miser_pass_options opt = {0};
        cr_assert_eq(miser_pass_decompose_einsum(&g, &opt), MISER_OK, "'%s': %s", eq, miser_error_message());
        cr_assert_eq(miser_graph_verify(&g), MISER_OK);
        int summed_out = 0;
        for (int i = 0; i < q.nl; i++) summed_out |= role[i] >= 4;
        miser_graph_stats st = miser_graph_get_stats(&g);
        if (!summed_out) cr_expect_eq(st.einsums, 0, "'%s' was not decomposed", eq);
        decomposed += st.einsums == 0;
        kept += st.einsums != 0;
        interp_t it;
        run_graph(&g, &it);
        output_values(&g, &it, on, got);
        free_interp(&it);
        expect_close(got, want, on, "decomposed graph", eq);

        cr_assert_eq(miser_pass_eliminate_noops(&g, &opt), MISER_OK);
        cr_assert_eq(miser_pass_fold_constants(&g, &opt), MISER_OK, "%s", miser_error_message());
        cr_assert_eq(miser_pass_cse(&g, &opt), MISER_OK);
        cr_assert_eq(miser_pass_dce(&g, &opt), MISER_OK);
        cr_assert_eq(miser_graph_verify(&g), MISER_OK);
        run_graph(&g, &it);
        output_values(&g, &it, on, got);
        free_interp(&it);
        expect_close(got, want, on, "decomposed + folded graph", eq);

        miser_graph_free(&g);
        free(a);
        free(b);
        free(want);
        free(got);
    }
    cr_expect_gt(decomposed, 200, "only %d equations were decomposed", decomposed);
    cr_expect_gt(kept, 0, "the fallback (summed-out labels) was never exercised");
}

Test(einsum, gpt2_einsums_decompose_to_views_and_matmuls)
{
    /* q/k/v projection "abc,cde->abde" with a [C, H, D] kernel that is a
     * strided column block of c_attn [C, 3C]: one matmul over a folded
     * [C, H*D] view of the same bytes, no copy */
    enum { C = 8, H = 2, D = 4 };
    static float w[C * 3 * C], x[3 * C];
    for (int i = 0; i < C * 3 * C; i++) w[i] = (float)(i % 7) - 3;
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    miser_tensor_info tw = {.name = "c_attn", .dtype = MISER_DTYPE_F32, .ndim = 2, .shape = {C, 3 * C}, .stride = {3 * C, 1}, .data = w, .nbytes = sizeof w};
    miser_tensor_info tx = {.name = "x", .dtype = MISER_DTYPE_F32, .ndim = 3, .shape = {1, 3, C}, .stride = {3 * C, C, 1}, .data = x, .nbytes = sizeof x};
    int32_t cw = miser_g_const(&g, &tw, NULL), cx = miser_g_const(&g, &tx, NULL);
    int64_t ks[3] = {C, H, D}, kst[3] = {3 * C, D, 1};
    int32_t k = miser_g_const_view(&g, cw, C, 3, ks, kst, "key.kernel");
    int32_t e = miser_g_einsum(&g, "abc,cde->abde", cx, k, "key");
    int32_t o = miser_g_op(&g, MISER_OP_OUTPUT, 1, &e, "out");
    cr_assert_geq(o, 0);
    miser_pass_options opt = {0};
    cr_assert_eq(miser_pass_decompose_einsum(&g, &opt), MISER_OK);
    cr_assert_eq(miser_pass_fold_constants(&g, &opt), MISER_OK);
    cr_assert_eq(miser_pass_dce(&g, &opt), MISER_OK);
    int mm = 0;
    for (int32_t i = 0; i < g.n_nodes; i++) {
        const miser_node *n = &g.nodes[i];
        if (n->op != MISER_OP_MATMUL) continue;
        mm++;
        const miser_node *b = &g.nodes[n->in[1]];
        cr_expect_eq(b->op, MISER_OP_CONST);
        cr_expect_eq(b->ndim, 2);
        cr_expect_eq(b->shape[1], H * D);
        cr_expect_eq(b->cst.data, (const void *)(w + C), "the kernel view must point into c_attn");
        cr_expect_eq(b->cst.stride[0], 3 * C);
        cr_expect_eq(b->cst.stride[1], 1);
    }
    cr_expect_eq(mm, 1);
    cr_expect_eq(g.materialized_bytes, 0);
    miser_graph_free(&g);
}
