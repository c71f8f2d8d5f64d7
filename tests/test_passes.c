/* Unit tests of each compiler pass on tiny hand-built graphs whose constant
 * data lives in this file's arrays: counts of nodes and constants, that
 * folded constants view the same storage, that the default fold never
 * copies while the naive one copies per consumer, sharing by content,
 * CSE, DCE's storage release and the fusions' shapes. */
#include <criterion/criterion.h>
#include <string.h>

#include "miser/alloc.h"
#include "miser/graph.h"
#include "miser/passes.h"

static miser_pass_options g_opt = {0};

static int count_op(const miser_graph *g, miser_op op)
{
    int n = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) n += g->nodes[i].op == op;
    return n;
}

static int32_t find_op(const miser_graph *g, miser_op op, int nth)
{
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == op && nth-- == 0) return i;
    return -1;
}

static int32_t cst(miser_graph *g, const char *name, miser_dtype dt, int nd, const int64_t *shape, const void *data)
{
    miser_tensor_info t = {.name = name, .dtype = dt, .ndim = nd, .data = data};
    int64_t n = 1;
    for (int i = nd - 1; i >= 0; i--) {
        t.stride[i] = n; /* row-major */
        n *= t.shape[i] = shape[i];
    }
    t.nbytes = miser_dtype_bytes(dt, (uint64_t)n);
    int32_t id = miser_g_const(g, &t, name);
    cr_assert_geq(id, 0, "%s", miser_error_message());
    return id;
}

static int32_t op2(miser_graph *g, miser_op op, int32_t a, int32_t b, const char *name)
{
    int32_t in[2] = {a, b};
    int32_t id = miser_g_op(g, op, b >= 0 ? 2 : 1, in, name);
    cr_assert_geq(id, 0, "%s", miser_error_message());
    return id;
}

static const int32_t T10[2] = {1, 0};

/* W [4, 6] -> transpose -> two matmul consumers, each an output */
static float W46[24], A26[8];
static void build_two_consumers(miser_graph *g)
{
    for (int i = 0; i < 24; i++) W46[i] = (float)i;
    cr_assert_eq(miser_graph_init(g, 4, 8), MISER_OK);
    int32_t w = cst(g, "w", MISER_DTYPE_F32, 2, (int64_t[]){4, 6}, W46);
    int32_t a = cst(g, "a", MISER_DTYPE_F32, 2, (int64_t[]){2, 4}, A26);
    int32_t t1 = miser_g_transpose(g, w, 2, T10, "w.t1");
    int32_t t2 = miser_g_transpose(g, w, 2, T10, "w.t2");
    /* [2,4] x [6,4]^T... use w^T as the LEFT operand: [6,4] x [4,2] */
    int32_t at = miser_g_transpose(g, a, 2, T10, "a.t");
    int32_t m1 = op2(g, MISER_OP_MATMUL, t1, at, "m1");
    int32_t m2 = op2(g, MISER_OP_MATMUL, t2, at, "m2");
    op2(g, MISER_OP_OUTPUT, m1, -1, "o1");
    op2(g, MISER_OP_OUTPUT, m2, -1, "o2");
}

Test(passes, noops_removed_and_chains_collapsed)
{
    static float w[6];
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    int32_t c = cst(&g, "w", MISER_DTYPE_F32, 2, (int64_t[]){2, 3}, w);
    int32_t t1 = miser_g_transpose(&g, c, 2, T10, "t1");
    int32_t t2 = miser_g_transpose(&g, t1, 2, T10, "t2"); /* t2 . t1 = identity */
    int32_t r = miser_g_reshape(&g, t2, 2, (int64_t[]){2, 3}, "same-shape reshape");
    int32_t cc = op2(&g, MISER_OP_CONTIGUOUS, r, -1, "copy of contiguous");
    int32_t r1 = miser_g_reshape(&g, cc, 1, (int64_t[]){6}, "r1");
    int32_t r2 = miser_g_reshape(&g, r1, 2, (int64_t[]){3, 2}, "r2");
    int32_t o = op2(&g, MISER_OP_OUTPUT, r2, -1, "out");
    (void)o;
    cr_assert_eq(miser_pass_eliminate_noops(&g, &g_opt), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_pass_dce(&g, &g_opt), MISER_OK);
    cr_assert_eq(miser_graph_verify(&g), MISER_OK);
    miser_graph_stats st = miser_graph_get_stats(&g);
    cr_expect_eq(st.nodes, 3, "const -> one reshape -> output; got %d nodes", st.nodes);
    int32_t rr = find_op(&g, MISER_OP_RESHAPE, 0);
    cr_assert_geq(rr, 0);
    cr_expect_eq(g.nodes[g.nodes[rr].in[0]].op, MISER_OP_CONST, "reshape of reshape reads the constant");
    cr_expect_eq(count_op(&g, MISER_OP_TRANSPOSE), 0);
    cr_expect_eq(count_op(&g, MISER_OP_CONTIGUOUS), 0);
    miser_graph_free(&g);
}

Test(passes, noops_keep_real_layout_changes)
{
    static float w[6];
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    int32_t c = cst(&g, "w", MISER_DTYPE_F32, 2, (int64_t[]){2, 3}, w);
    int32_t t = miser_g_transpose(&g, c, 2, T10, "t");
    int32_t cc = op2(&g, MISER_OP_CONTIGUOUS, t, -1, "needed copy");
    op2(&g, MISER_OP_OUTPUT, cc, -1, "out");
    cr_assert_eq(miser_pass_eliminate_noops(&g, &g_opt), MISER_OK);
    cr_expect_eq(count_op(&g, MISER_OP_TRANSPOSE), 1);
    cr_expect_eq(count_op(&g, MISER_OP_CONTIGUOUS), 1);
    miser_graph_free(&g);
}

Test(passes, fold_makes_views_of_the_same_storage)
{
    miser_graph g;
    build_two_consumers(&g);
    int32_t s0 = g.nodes[0].cst.storage;
    cr_assert_eq(miser_pass_fold_constants(&g, &g_opt), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_pass_dce(&g, &g_opt), MISER_OK);
    cr_expect_eq(count_op(&g, MISER_OP_TRANSPOSE), 0);
    cr_expect_eq(g.materialized_bytes, 0);
    for (int k = 0; k < 2; k++) {
        const miser_node *m = &g.nodes[find_op(&g, MISER_OP_MATMUL, k)];
        const miser_node *w = &g.nodes[m->in[0]];
        cr_assert_eq(w->op, MISER_OP_CONST);
        cr_expect_eq(w->cst.storage, s0, "folded view must use the original storage");
        cr_expect_eq(w->cst.data, (const void *)W46);
        cr_expect_eq(w->shape[0], 6);
        cr_expect_eq(w->cst.stride[0], 1);
        cr_expect_eq(w->cst.stride[1], 6);
        cr_expect_eq(g.storage[w->cst.storage].owned, 0);
    }
    miser_graph_stats st = miser_graph_get_stats(&g);
    cr_expect_eq(st.unique_const_bytes, sizeof W46 + sizeof A26);
    miser_graph_free(&g);
}

Test(passes, naive_fold_copies_per_consumer)
{
    miser_graph g;
    build_two_consumers(&g);
    miser_pass_options naive = {.naive = 1};
    cr_assert_eq(miser_pass_fold_constants(&g, &naive), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_pass_dce(&g, &naive), MISER_OK);
    /* w^T feeds m1 and m2 through two chains; a^T is one chain feeding both:
     * every consumer gets its own copy of each, four copies in all */
    cr_expect_eq(g.materialized_bytes, 2 * (sizeof W46 + sizeof A26));
    const miser_node *w1 = &g.nodes[g.nodes[find_op(&g, MISER_OP_MATMUL, 0)].in[0]];
    const miser_node *w2 = &g.nodes[g.nodes[find_op(&g, MISER_OP_MATMUL, 1)].in[0]];
    cr_expect_neq(w1->cst.storage, w2->cst.storage, "naive mode must give each consumer its own copy");
    cr_expect(g.storage[w1->cst.storage].owned);
    const float *d = w1->cst.data;
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < 4; c++) cr_expect_eq(d[r * 4 + c], W46[c * 6 + r], "copy holds the transposed weight");
    miser_graph_stats st = miser_graph_get_stats(&g);
    cr_expect_eq(st.materialized_bytes, g.materialized_bytes);
    miser_graph_free(&g);
}

Test(passes, fold_shares_one_materialisation_and_keeps_dtype)
{
    /* transpose then flatten cannot be a strided view: one copy, shared */
    static uint16_t h[24];
    for (int i = 0; i < 24; i++) h[i] = miser_f32_to_f16((float)i);
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    int32_t w = cst(&g, "w16", MISER_DTYPE_F16, 2, (int64_t[]){4, 6}, h);
    for (int k = 0; k < 2; k++) {
        int32_t t = miser_g_transpose(&g, w, 2, T10, "t");
        int32_t r = miser_g_reshape(&g, t, 1, (int64_t[]){24}, "flat");
        op2(&g, MISER_OP_OUTPUT, r, -1, "o");
    }
    int32_t t = miser_g_transpose(&g, w, 2, T10, "plain transpose");
    op2(&g, MISER_OP_OUTPUT, t, -1, "o3");
    cr_assert_eq(miser_pass_fold_constants(&g, &g_opt), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_pass_dce(&g, &g_opt), MISER_OK);
    cr_expect_eq(g.materialized_bytes, sizeof h, "one f16 copy (never widened to f32), shared: %llu",
                 (unsigned long long)g.materialized_bytes);
    const miser_node *f0 = &g.nodes[g.nodes[find_op(&g, MISER_OP_OUTPUT, 0)].in[0]];
    const miser_node *f1 = &g.nodes[g.nodes[find_op(&g, MISER_OP_OUTPUT, 1)].in[0]];
    const miser_node *f2 = &g.nodes[g.nodes[find_op(&g, MISER_OP_OUTPUT, 2)].in[0]];
    cr_expect_eq(f0->dtype, MISER_DTYPE_F16);
    cr_expect_eq(f0->cst.storage, f1->cst.storage);
    cr_expect_eq(f0->cst.data, f1->cst.data);
    cr_expect_eq(f2->cst.data, (const void *)h, "an expressible layout stays a view");
    cr_expect_eq(f2->dtype, MISER_DTYPE_F16);
    const uint16_t *d = f0->cst.data;
    for (int i = 0; i < 24; i++) cr_expect_eq(d[i], h[(i % 4) * 6 + i / 4]);
    /* the two identical views become one constant */
    cr_assert_eq(miser_pass_share_constants(&g, &g_opt), MISER_OK);
    cr_expect_eq(g.nodes[find_op(&g, MISER_OP_OUTPUT, 0)].in[0], g.nodes[find_op(&g, MISER_OP_OUTPUT, 1)].in[0]);
    miser_graph_free(&g);
}

Test(passes, dce_releases_unused_materialisation)
{
    miser_graph g;
    build_two_consumers(&g);
    miser_pass_options naive = {.naive = 1};
    cr_assert_eq(miser_pass_fold_constants(&g, &naive), MISER_OK);
    cr_assert_gt(g.materialized_bytes, 0);
    miser_mem_stats before = miser_mem_get(MISER_MEM_CONSTANTS);
    /* drop the outputs: everything is dead */
    for (int32_t i = 0; i < g.n_nodes; i++)
        if (g.nodes[i].op == MISER_OP_OUTPUT) g.nodes[i].op = MISER_OP_NONE;
    cr_assert_eq(miser_pass_dce(&g, &g_opt), MISER_OK);
    cr_expect_eq(g.materialized_bytes, 0);
    miser_mem_stats after = miser_mem_get(MISER_MEM_CONSTANTS);
    cr_expect_eq(before.current - after.current, 2 * (sizeof W46 + sizeof A26), "copies must be freed, not just forgotten");
    miser_graph_free(&g);
}

Test(passes, share_constants_by_content)
{
    static float a[1000], b[1000], c[1000];
    for (int i = 0; i < 1000; i++) a[i] = b[i] = c[i] = (float)(i * 7 % 13);
    c[600] += 1; /* differs beyond the sampled head: the hash agrees, the compare must not */
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    int32_t ca = cst(&g, "a", MISER_DTYPE_F32, 1, (int64_t[]){1000}, a);
    int32_t cb = cst(&g, "b", MISER_DTYPE_F32, 1, (int64_t[]){1000}, b);
    int32_t cc = cst(&g, "c", MISER_DTYPE_F32, 1, (int64_t[]){1000}, c);
    int32_t cd = cst(&g, "a as [10,100]", MISER_DTYPE_F32, 2, (int64_t[]){10, 100}, a);
    int32_t s1 = op2(&g, MISER_OP_ADD, ca, cb, "a+b");
    int32_t s2 = op2(&g, MISER_OP_ADD, s1, cc, "+c");
    op2(&g, MISER_OP_OUTPUT, s2, -1, "o");
    op2(&g, MISER_OP_OUTPUT, cd, -1, "o2");
    cr_assert_eq(miser_pass_share_constants(&g, &g_opt), MISER_OK);
    cr_assert_eq(miser_pass_dce(&g, &g_opt), MISER_OK);
    const miser_node *add1 = &g.nodes[find_op(&g, MISER_OP_ADD, 0)];
    const miser_node *add2 = &g.nodes[find_op(&g, MISER_OP_ADD, 1)];
    cr_expect_eq(add1->in[0], add1->in[1], "a and b are equal and must be one constant");
    cr_expect_neq(add2->in[1], add1->in[0], "c differs and must stay separate");
    cr_expect_neq(g.nodes[add1->in[0]].cst.hash, 0);
    miser_graph_stats st = miser_graph_get_stats(&g);
    cr_expect_eq(st.consts, 3, "a|b, c, and the [10,100] shape are distinct constants");
    cr_expect_eq(st.unique_const_bytes, 2 * sizeof a, "b's storage is no longer referenced");
    miser_graph_free(&g);
}

Test(passes, cse_merges_equal_nodes_only)
{
    static float w[4];
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    int32_t c = cst(&g, "w", MISER_DTYPE_F32, 2, (int64_t[]){2, 2}, w);
    int32_t m1 = op2(&g, MISER_OP_MATMUL, c, c, "m1");
    int32_t m2 = op2(&g, MISER_OP_MATMUL, c, c, "m2");
    int32_t s1 = op2(&g, MISER_OP_SCALE, m1, -1, "s1");
    g.nodes[s1].attr.f[0] = 2;
    int32_t s2 = op2(&g, MISER_OP_SCALE, m2, -1, "s2");
    g.nodes[s2].attr.f[0] = 2;
    int32_t s3 = op2(&g, MISER_OP_SCALE, m2, -1, "s3");
    g.nodes[s3].attr.f[0] = 3;
    int32_t a = op2(&g, MISER_OP_ADD, s1, s2, "a");
    int32_t b = op2(&g, MISER_OP_ADD, a, s3, "b");
    op2(&g, MISER_OP_OUTPUT, b, -1, "o");
    cr_assert_eq(miser_pass_cse(&g, &g_opt), MISER_OK);
    cr_assert_eq(miser_pass_dce(&g, &g_opt), MISER_OK);
    cr_expect_eq(count_op(&g, MISER_OP_MATMUL), 1);
    cr_expect_eq(count_op(&g, MISER_OP_SCALE), 2, "scales by 2 and 3 differ");
    const miser_node *add = &g.nodes[find_op(&g, MISER_OP_ADD, 0)];
    cr_expect_eq(add->in[0], add->in[1]);
    miser_graph_free(&g);
}

Test(passes, dce_removes_dead_nodes_keeps_inputs)
{
    static float w[4];
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    miser_g_input(&g, MISER_INPUT_TOKENS, "ids");
    int32_t c = cst(&g, "w", MISER_DTYPE_F32, 2, (int64_t[]){2, 2}, w);
    op2(&g, MISER_OP_MATMUL, c, c, "dead");
    op2(&g, MISER_OP_OUTPUT, c, -1, "o");
    cr_assert_eq(miser_pass_dce(&g, &g_opt), MISER_OK);
    cr_expect_eq(miser_graph_get_stats(&g).nodes, 3);
    cr_expect_eq(count_op(&g, MISER_OP_MATMUL), 0);
    cr_expect_eq(count_op(&g, MISER_OP_INPUT), 1);
    miser_graph_free(&g);
}

Test(passes, fuse_matmul_bias_gelu_into_linear)
{
    static float table[10 * 4], w[4 * 6], b[6];
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    int32_t ids = miser_g_input(&g, MISER_INPUT_TOKENS, "ids");
    int32_t tb = cst(&g, "table", MISER_DTYPE_F32, 2, (int64_t[]){10, 4}, table);
    int32_t cw = cst(&g, "w", MISER_DTYPE_F32, 2, (int64_t[]){4, 6}, w);
    int32_t cb = cst(&g, "b", MISER_DTYPE_F32, 1, (int64_t[]){6}, b);
    int32_t x = op2(&g, MISER_OP_GATHER, tb, ids, "x");
    int32_t m = op2(&g, MISER_OP_MATMUL, x, cw, "mm");
    int32_t a = op2(&g, MISER_OP_ADD, m, cb, "bias");
    int32_t ge = op2(&g, MISER_OP_GELU, a, -1, "gelu");
    op2(&g, MISER_OP_OUTPUT, ge, -1, "o");
    cr_assert_eq(miser_pass_fuse(&g, &g_opt), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_pass_dce(&g, &g_opt), MISER_OK);
    cr_assert_eq(miser_graph_verify(&g), MISER_OK);
    cr_expect_eq(count_op(&g, MISER_OP_MATMUL), 0);
    cr_expect_eq(count_op(&g, MISER_OP_ADD), 0);
    cr_expect_eq(count_op(&g, MISER_OP_GELU), 0);
    int32_t l = find_op(&g, MISER_OP_LINEAR, 0);
    cr_assert_geq(l, 0);
    cr_expect_eq(g.nodes[l].n_in, 3);
    cr_expect_eq(g.nodes[l].attr.i[0], MISER_ACT_GELU);
    cr_expect_eq(g.nodes[g.nodes[l].in[1]].cst.data, (const void *)w);
    cr_expect_eq(g.nodes[g.nodes[l].in[2]].cst.data, (const void *)b);
    cr_expect_eq(g.nodes[find_op(&g, MISER_OP_OUTPUT, 0)].in[0], l);
    miser_graph_free(&g);
}

Test(passes, fuse_matmul_with_non_constant_weight_untouched)
{
    static float table[10 * 4];
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    int32_t ids = miser_g_input(&g, MISER_INPUT_TOKENS, "ids");
    int32_t tb = cst(&g, "table", MISER_DTYPE_F32, 2, (int64_t[]){10, 4}, table);
    int32_t x = op2(&g, MISER_OP_GATHER, tb, ids, "x");
    int32_t xt = miser_g_transpose(&g, x, 3, (int32_t[]){0, 2, 1}, "xt");
    int32_t m = op2(&g, MISER_OP_MATMUL, x, xt, "x x^T");
    op2(&g, MISER_OP_OUTPUT, m, -1, "o");
    cr_assert_eq(miser_pass_fuse(&g, &g_opt), MISER_OK);
    cr_expect_eq(count_op(&g, MISER_OP_MATMUL), 1);
    cr_expect_eq(count_op(&g, MISER_OP_LINEAR), 0);
    miser_graph_free(&g);
}

Test(passes, fuse_qkv_into_one_linear_over_stored_buffer)
{
    enum { C = 4 };
    static float table[10 * C], w[C * 3 * C], b[3 * C];
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    int32_t ids = miser_g_input(&g, MISER_INPUT_TOKENS, "ids");
    int32_t tb = cst(&g, "table", MISER_DTYPE_F32, 2, (int64_t[]){10, C}, table);
    int32_t cw = cst(&g, "c_attn.w", MISER_DTYPE_F32, 2, (int64_t[]){C, 3 * C}, w);
    int32_t cb = cst(&g, "c_attn.b", MISER_DTYPE_F32, 1, (int64_t[]){3 * C}, b);
    int32_t x = op2(&g, MISER_OP_GATHER, tb, ids, "x");
    int32_t y[3];
    for (int j = 0; j < 3; j++) {
        int32_t wv = miser_g_const_view(&g, cw, j * C, 2, (int64_t[]){C, C}, (int64_t[]){3 * C, 1}, "w.view");
        int32_t bv = miser_g_const_view(&g, cb, j * C, 1, (int64_t[]){C}, (int64_t[]){1}, "b.view");
        int32_t m = op2(&g, MISER_OP_MATMUL, x, wv, "mm");
        y[j] = op2(&g, MISER_OP_ADD, m, bv, "proj");
    }
    int32_t s = op2(&g, MISER_OP_ADD, y[0], y[1], "q+k");
    s = op2(&g, MISER_OP_ADD, s, y[2], "+v");
    op2(&g, MISER_OP_OUTPUT, s, -1, "o");
    cr_assert_eq(miser_pass_fuse(&g, &g_opt), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_pass_dce(&g, &g_opt), MISER_OK);
    cr_assert_eq(miser_graph_verify(&g), MISER_OK);
    cr_assert_eq(count_op(&g, MISER_OP_LINEAR), 1);
    int32_t l = find_op(&g, MISER_OP_LINEAR, 0);
    const miser_node *lw = &g.nodes[g.nodes[l].in[1]], *lb = &g.nodes[g.nodes[l].in[2]];
    cr_expect_eq(lw->shape[1], 3 * C);
    cr_expect_eq(lw->cst.data, (const void *)w, "the fused weight is the stored buffer itself");
    cr_expect_eq(lw->cst.stride[0], 3 * C);
    cr_expect_eq(lb->cst.data, (const void *)b);
    cr_expect_eq(lb->shape[0], 3 * C);
    cr_expect_eq(g.materialized_bytes, 0);
    cr_assert_eq(count_op(&g, MISER_OP_SLICE), 3);
    for (int j = 0; j < 3; j++) {
        const miser_node *sl = &g.nodes[find_op(&g, MISER_OP_SLICE, j)];
        cr_expect_eq(sl->in[0], l);
        cr_expect_eq(sl->attr.i[1], j * C);
        cr_expect_eq(sl->attr.i[2], C);
    }
    miser_graph_free(&g);
}

Test(passes, pipeline_records_and_names)
{
    const char *d = miser_pipeline_passes("default");
    cr_assert(d);
    int n;
    const miser_pass_info *all = miser_passes_all(&n);
    for (int i = 0; i < n; i++) cr_expect(strstr(d, all[i].name), "default pipeline lacks %s", all[i].name);
    cr_expect(strstr(miser_pipeline_passes("naive"), "fold_constants"));
    cr_expect_null(strstr(miser_pipeline_passes("naive"), "share_constants"));
    cr_expect_null(miser_pipeline_passes("nope"));

    miser_graph g;
    build_two_consumers(&g);
    miser_pass_record rec[16];
    int nr = 0;
    cr_assert_eq(miser_passes_run_pipeline(&g, "default", "cse", rec, 16, &nr), MISER_OK, "%s", miser_error_message());
    cr_expect_eq(nr, 10, "(built) + 9 passes (cse disabled; group_linears since issue 14)");
    for (int i = 0; i < nr; i++) cr_expect_str_neq(rec[i].name, "cse");
    cr_expect_eq(rec[nr - 1].stats.materialized_bytes, 0);
    cr_expect_gt(rec[nr - 1].stats.arena_bytes, 0);
    miser_graph_free(&g);
}

Test(passes, fuse_qkv_keeps_q8_0_blocks_in_place)
{
    enum { C = 32 };
    static float table[10 * C];
    static uint8_t w[C * 3 * C / 32 * 34]; /* q8_0 [C, 3C]: rows of 3 blocks */
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    int32_t ids = miser_g_input(&g, MISER_INPUT_TOKENS, "ids");
    int32_t tb = cst(&g, "table", MISER_DTYPE_F32, 2, (int64_t[]){10, C}, table);
    int32_t cw = cst(&g, "c_attn.q8", MISER_DTYPE_Q8_0, 2, (int64_t[]){C, 3 * C}, w);
    int32_t x = op2(&g, MISER_OP_GATHER, tb, ids, "x");
    cr_expect_lt(miser_g_const_view(&g, cw, 16, 2, (int64_t[]){C, C}, (int64_t[]){3 * C, 1}, "mid-block"), 0,
                 "a q8_0 view inside a block must be refused");
    int32_t y[3];
    for (int j = 0; j < 3; j++) {
        int32_t wv = miser_g_const_view(&g, cw, j * C, 2, (int64_t[]){C, C}, (int64_t[]){3 * C, 1}, "w.view");
        cr_assert_geq(wv, 0, "%s", miser_error_message());
        cr_expect_eq(g.nodes[wv].cst.data, (const void *)(w + j * 34), "block-aligned view starts at block %d", j);
        y[j] = op2(&g, MISER_OP_MATMUL, x, wv, "mm");
    }
    int32_t s = op2(&g, MISER_OP_ADD, y[0], y[1], "q+k");
    s = op2(&g, MISER_OP_ADD, s, y[2], "+v");
    op2(&g, MISER_OP_OUTPUT, s, -1, "o");
    cr_assert_eq(miser_pass_fuse(&g, &g_opt), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_pass_dce(&g, &g_opt), MISER_OK);
    cr_assert_eq(count_op(&g, MISER_OP_LINEAR), 1);
    const miser_node *lw = &g.nodes[g.nodes[find_op(&g, MISER_OP_LINEAR, 0)].in[1]];
    cr_expect_eq(lw->dtype, MISER_DTYPE_Q8_0);
    cr_expect_eq(lw->cst.data, (const void *)w);
    cr_expect_eq(lw->shape[1], 3 * C);
    for (int j = 0; j < 3; j++) cr_expect_eq(g.nodes[find_op(&g, MISER_OP_SLICE, j)].attr.i[1], j * C);
    miser_graph_free(&g);
}

/* The q8_0 cache stores c_attn transposed: physical [3C, C] (blocks along
 * K = C), loaded as logical [C, 3C] with strides {1, C}. The builder's
 * EinsumDense kernels are [C, H, D] views with strides {1, D*C, C} at
 * offsets j*C*C; the default pipeline must turn the three einsums into one
 * LINEAR over the stored buffer in the dot layout (wsk = 1, wsn = K), each
 * of Q, K, V a slice of its output. */
Test(passes, einsum_qkv_over_transposed_q8_0_is_one_dot_layout_linear)
{
    enum { C = 64, H = 2, D = C / H };
    static float table[10 * C], b[3 * C];
    static uint8_t w[3 * C * C / 32 * 34]; /* stored [3C][C]: each row (a column of W) C/32 blocks */
    for (int i = 0; i < 3 * C; i++) b[i] = (float)i; /* distinct: share_constants must not merge the three */
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    int32_t ids = miser_g_input(&g, MISER_INPUT_TOKENS, "ids");
    int32_t tb = cst(&g, "table", MISER_DTYPE_F32, 2, (int64_t[]){10, C}, table);
    miser_tensor_info ti = {.name = "c_attn.w", .dtype = MISER_DTYPE_Q8_0, .ndim = 2, .shape = {C, 3 * C},
                            .stride = {1, C}, .data = w, .nbytes = sizeof w};
    int32_t cw = miser_g_const(&g, &ti, "c_attn.w");
    cr_assert_geq(cw, 0, "%s", miser_error_message());
    int32_t cb = cst(&g, "c_attn.b", MISER_DTYPE_F32, 1, (int64_t[]){3 * C}, b);
    int32_t x = op2(&g, MISER_OP_GATHER, tb, ids, "x");
    int32_t y[3];
    for (int j = 0; j < 3; j++) {
        int32_t k = miser_g_const_view(&g, cw, (int64_t)j * C * C, 3, (int64_t[]){C, H, D}, (int64_t[]){1, D * C, C},
                                       "kernel");
        cr_assert_geq(k, 0, "%s", miser_error_message());
        cr_expect_eq(g.nodes[k].cst.data, (const void *)(w + j * C * (C / 32) * 34), "view %d starts at stored row j*C", j);
        int32_t bv = miser_g_const_view(&g, cb, j * C, 2, (int64_t[]){H, D}, (int64_t[]){D, 1}, "bias");
        int32_t e = miser_g_einsum(&g, "abc,cde->abde", x, k, "einsum");
        cr_assert_geq(e, 0, "%s", miser_error_message());
        y[j] = op2(&g, MISER_OP_ADD, e, bv, "proj");
    }
    int32_t s = op2(&g, MISER_OP_ADD, y[0], y[1], "q+k");
    s = op2(&g, MISER_OP_ADD, s, y[2], "+v");
    op2(&g, MISER_OP_OUTPUT, s, -1, "o");
    cr_assert_eq(miser_passes_run_pipeline(&g, "default", NULL, NULL, 0, NULL), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(count_op(&g, MISER_OP_EINSUM), 0);
    cr_assert_eq(count_op(&g, MISER_OP_LINEAR), 1);
    const miser_node *l = &g.nodes[find_op(&g, MISER_OP_LINEAR, 0)], *lw = &g.nodes[l->in[1]];
    cr_expect_eq(lw->dtype, MISER_DTYPE_Q8_0);
    cr_expect_eq(lw->cst.data, (const void *)w, "the fused weight is the stored buffer itself");
    cr_expect_eq(lw->shape[0], C);
    cr_expect_eq(lw->shape[1], 3 * C);
    cr_expect_eq(lw->cst.stride[0], 1, "wsk");
    cr_expect_eq(lw->cst.stride[1], C, "wsn = K");
    cr_expect_eq(l->n_in, 3, "bias fused");
    cr_expect_eq(g.materialized_bytes, 0);
    cr_assert_eq(count_op(&g, MISER_OP_SLICE), 3);
    for (int j = 0; j < 3; j++) {
        const miser_node *sl = &g.nodes[find_op(&g, MISER_OP_SLICE, j)];
        cr_expect_eq(sl->attr.i[1], j * C);
        cr_expect_eq(sl->attr.i[2], C);
    }
    miser_graph_free(&g);
}

/* In the dot layout a q8_0 group needs columns of whole blocks along K:
 * views over the first 16 of K = 32 (half a block) stay separate LINEARs. */
Test(passes, fuse_qkv_dot_layout_needs_whole_blocks)
{
    enum { C = 32 };
    static float table[10 * 16];
    static uint8_t w[3 * C * C / 32 * 34];
    miser_graph g;
    cr_assert_eq(miser_graph_init(&g, 4, 8), MISER_OK);
    int32_t ids = miser_g_input(&g, MISER_INPUT_TOKENS, "ids");
    int32_t tb = cst(&g, "table", MISER_DTYPE_F32, 2, (int64_t[]){10, 16}, table);
    miser_tensor_info ti = {.name = "w", .dtype = MISER_DTYPE_Q8_0, .ndim = 2, .shape = {C, 3 * C}, .stride = {1, C},
                            .data = w, .nbytes = sizeof w};
    int32_t cw = miser_g_const(&g, &ti, "w");
    cr_assert_geq(cw, 0, "%s", miser_error_message());
    int32_t x = op2(&g, MISER_OP_GATHER, tb, ids, "x");
    int32_t y[2];
    for (int j = 0; j < 2; j++) {
        int32_t wv = miser_g_const_view(&g, cw, (int64_t)j * C * C, 2, (int64_t[]){16, C}, (int64_t[]){1, C}, "w.half");
        cr_assert_geq(wv, 0, "%s", miser_error_message());
        y[j] = op2(&g, MISER_OP_MATMUL, x, wv, "mm");
    }
    op2(&g, MISER_OP_OUTPUT, op2(&g, MISER_OP_ADD, y[0], y[1], "sum"), -1, "o");
    cr_assert_eq(miser_pass_fuse(&g, &g_opt), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_pass_dce(&g, &g_opt), MISER_OK);
    cr_expect_eq(count_op(&g, MISER_OP_LINEAR), 2);
    cr_expect_eq(count_op(&g, MISER_OP_SLICE), 0);
    miser_graph_free(&g);
}
