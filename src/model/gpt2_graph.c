/* GPT-2 as Keras builds it (keras_hub GPT2Backbone + GPT2CausalLM):
 *   x = token_embedding(ids) + position_embedding(positions)
 *   per block:  h = LN1(x)
 *               q|k|v = EinsumDense "abc,cde->abde", kernels [C, H, D] (+ bias [H, D])
 *               q = q * 1/sqrt(D)
 *               scores = einsum "aecd,abcd->acbe" (k, q) -> [1, H, T, S]; causal softmax
 *               ctx = einsum "acbe,aecd->abcd" (probs, v) -> [1, T, H, D]
 *               attn = EinsumDense "abcd,cde->abe", kernel [H, D, C] (+ bias [C])
 *               x = x + attn;  x = x + c_proj(gelu(c_fc(LN2(x))))   (Dense = matmul + add)
 *   logits = LN_f(x) @ transpose(wte)
 * Every kernel is a strided view of the Hugging Face tensors (c_attn weight is
 * [C, 3C] with columns Q|K|V), derived from the tensor's own strides (a q8_0
 * cache stores the Conv1D weights transposed): nothing is copied here. */
#include "miser/gpt2.h"
#include "miser/alloc.h"
#include "model/arch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define TRY_ID(x)                                                                                                      \
    do {                                                                                                               \
        if ((x) < 0)                                                                                                   \
            return miser_error_prefix(g->last_error ? g->last_error : MISER_ERR_INTERNAL, "building GPT-2 graph");    \
    } while (0)

/* the checkpoint tensor `name` as a constant, or -1 with *st set */
static int32_t cst(miser_graph *g, const miser_model *m, const char *name, miser_status *st)
{
    return miser_model_const(g, m, name, "building GPT-2 graph", st);
}

static int32_t dense(miser_graph *g, int32_t x, int32_t w, int32_t b, const char *name)
{
    char nm[48];
    snprintf(nm, sizeof nm, "%s.mm", name);
    int32_t in[2] = {x, w};
    int32_t y = miser_g_op(g, MISER_OP_MATMUL, 2, in, nm);
    int32_t in2[2] = {y, b};
    return miser_g_op(g, MISER_OP_ADD, 2, in2, name);
}

miser_status miser_gpt2_build(miser_graph *g, const miser_model *m, int all_logits)
{
    const miser_config *c = miser_model_config(m);
    const int64_t C = c->n_embd, H = c->n_head, D = C / H;
    miser_status st = MISER_OK;
    char nm[48];
    g->n_layer = c->n_layer;
    g->n_head = H;
    g->head_dim = D;
    g->n_kv_head = H;

    int32_t ids = miser_g_input(g, MISER_INPUT_TOKENS, "token_ids");
    int32_t pos = miser_g_input(g, MISER_INPUT_POSITIONS, "positions");
    int32_t wte = cst(g, m, "wte.weight", &st);
    if (st) return st;
    int32_t wpe = cst(g, m, "wpe.weight", &st);
    if (st) return st;
    int32_t in[3];
    in[0] = wte, in[1] = ids;
    int32_t te = miser_g_op(g, MISER_OP_GATHER, 2, in, "token_embedding");
    in[0] = wpe, in[1] = pos;
    int32_t pe = miser_g_op(g, MISER_OP_GATHER, 2, in, "position_embedding");
    in[0] = te, in[1] = pe;
    int32_t x = miser_g_op(g, MISER_OP_ADD, 2, in, "embeddings");
    TRY_ID(x);

    for (int64_t l = 0; l < c->n_layer; l++) {
#define T(field) (snprintf(nm, sizeof nm, "h.%lld." field, (long long)l), nm)
        int32_t ln1w = cst(g, m, T("ln_1.weight"), &st);
        if (st) return st;
        int32_t ln1b = cst(g, m, T("ln_1.bias"), &st);
        if (st) return st;
        int32_t wqkv = cst(g, m, T("attn.c_attn.weight"), &st);
        if (st) return st;
        int32_t bqkv = cst(g, m, T("attn.c_attn.bias"), &st);
        if (st) return st;
        int32_t wo = cst(g, m, T("attn.c_proj.weight"), &st);
        if (st) return st;
        int32_t bo = cst(g, m, T("attn.c_proj.bias"), &st);
        if (st) return st;
        int32_t ln2w = cst(g, m, T("ln_2.weight"), &st);
        if (st) return st;
        int32_t ln2b = cst(g, m, T("ln_2.bias"), &st);
        if (st) return st;
        int32_t wfc = cst(g, m, T("mlp.c_fc.weight"), &st);
        if (st) return st;
        int32_t bfc = cst(g, m, T("mlp.c_fc.bias"), &st);
        if (st) return st;
        int32_t wpr = cst(g, m, T("mlp.c_proj.weight"), &st);
        if (st) return st;
        int32_t bpr = cst(g, m, T("mlp.c_proj.bias"), &st);
        if (st) return st;

        in[0] = x, in[1] = ln1w, in[2] = ln1b;
        int32_t h = miser_g_op(g, MISER_OP_LAYERNORM, 3, in, T("ln_1"));
        TRY_ID(h);
        g->nodes[h].attr.f[0] = c->eps;

        /* Q, K, V kernels: [C, H, D] views of column blocks of c_attn [C, 3C],
         * whose strides (s0, s1) are row-major {3C, 1} or, stored transposed
         * by the q8_0 cache, {1, C}: column block j starts at j*C*s1 */
        const int64_t qs0 = g->nodes[wqkv].cst.stride[0], qs1 = g->nodes[wqkv].cst.stride[1];
        const int64_t os0 = g->nodes[wo].cst.stride[0], os1 = g->nodes[wo].cst.stride[1];
        int32_t qkv[3];
        static const char *const which[3] = {"query", "key", "value"};
        for (int j = 0; j < 3; j++) {
            int64_t kshape[3] = {C, H, D}, kstride[3] = {qs0, D * qs1, qs1};
            snprintf(nm, sizeof nm, "h.%lld.attn.%s.kernel", (long long)l, which[j]);
            int32_t k = miser_g_const_view(g, wqkv, j * C * qs1, 3, kshape, kstride, nm);
            int64_t bshape[2] = {H, D}, bstride[2] = {D, 1};
            snprintf(nm, sizeof nm, "h.%lld.attn.%s.bias", (long long)l, which[j]);
            int32_t b = miser_g_const_view(g, bqkv, j * C, 2, bshape, bstride, nm);
            snprintf(nm, sizeof nm, "h.%lld.attn.%s.einsum", (long long)l, which[j]);
            int32_t e = miser_g_einsum(g, "abc,cde->abde", h, k, nm);
            in[0] = e, in[1] = b;
            snprintf(nm, sizeof nm, "h.%lld.attn.%s", (long long)l, which[j]);
            qkv[j] = miser_g_op(g, MISER_OP_ADD, 2, in, nm);
            TRY_ID(qkv[j]);
        }
        miser_node kw = {.op = MISER_OP_KV_WRITE, .n_in = 1, .in = {qkv[1]}};
        kw.attr.i[0] = l, kw.attr.i[1] = 0;
        snprintf(kw.name, sizeof kw.name, "h.%lld.attn.k_cache", (long long)l);
        int32_t kc = miser_graph_add(g, &kw);
        TRY_ID(kc);
        if ((st = miser_graph_infer(g, kc))) return st;
        miser_node vw = kw;
        vw.in[0] = qkv[2];
        vw.attr.i[1] = 1;
        snprintf(vw.name, sizeof vw.name, "h.%lld.attn.v_cache", (long long)l);
        int32_t vc = miser_graph_add(g, &vw);
        TRY_ID(vc);
        if ((st = miser_graph_infer(g, vc))) return st;

        in[0] = qkv[0];
        int32_t q = miser_g_op(g, MISER_OP_SCALE, 1, in, T("attn.query_scaled"));
        TRY_ID(q);
        g->nodes[q].attr.f[0] = (float)(1.0 / sqrt((double)D));
        int32_t sc = miser_g_einsum(g, "aecd,abcd->acbe", kc, q, T("attn.scores"));
        miser_node sm = {.op = MISER_OP_SOFTMAX, .n_in = 1, .in = {sc}};
        sm.attr.f[0] = 1.0f; /* the query is already scaled, as in Keras */
        sm.attr.i[0] = 1;    /* causal */
        snprintf(sm.name, sizeof sm.name, "h.%lld.attn.probs", (long long)l);
        TRY_ID(sc);
        int32_t pr = miser_graph_add(g, &sm);
        TRY_ID(pr);
        if ((st = miser_graph_infer(g, pr))) return st;
        int32_t ctx = miser_g_einsum(g, "acbe,aecd->abcd", pr, vc, T("attn.context"));
        /* output kernel: c_proj [C, C] with its rows split into [H, D] */
        int64_t oshape[3] = {H, D, C}, ostride[3] = {D * os0, os0, os1};
        int32_t ok = miser_g_const_view(g, wo, 0, 3, oshape, ostride, T("attn.output.kernel"));
        int32_t ao = miser_g_einsum(g, "abcd,cde->abe", ctx, ok, T("attn.output.einsum"));
        in[0] = ao, in[1] = bo;
        int32_t a = miser_g_op(g, MISER_OP_ADD, 2, in, T("attn.output"));
        in[0] = x, in[1] = a;
        x = miser_g_op(g, MISER_OP_ADD, 2, in, T("attn.residual"));
        TRY_ID(x);

        in[0] = x, in[1] = ln2w, in[2] = ln2b;
        int32_t h2 = miser_g_op(g, MISER_OP_LAYERNORM, 3, in, T("ln_2"));
        TRY_ID(h2);
        g->nodes[h2].attr.f[0] = c->eps;
        int32_t f = dense(g, h2, wfc, bfc, T("mlp.c_fc"));
        in[0] = f;
        int32_t ge = miser_g_op(g, MISER_OP_GELU, 1, in, T("mlp.gelu"));
        int32_t p = dense(g, ge, wpr, bpr, T("mlp.c_proj"));
        in[0] = x, in[1] = p;
        x = miser_g_op(g, MISER_OP_ADD, 2, in, T("mlp.residual"));
        TRY_ID(x);
#undef T
    }
    int32_t lnfw = cst(g, m, "ln_f.weight", &st);
    if (st) return st;
    int32_t lnfb = cst(g, m, "ln_f.bias", &st);
    if (st) return st;
    in[0] = x, in[1] = lnfw, in[2] = lnfb;
    int32_t hf = miser_g_op(g, MISER_OP_LAYERNORM, 3, in, "ln_f");
    TRY_ID(hf);
    g->nodes[hf].attr.f[0] = c->eps;
    if (!all_logits) {
        in[0] = hf;
        hf = miser_g_op(g, MISER_OP_LAST_TOKEN, 1, in, "last_token");
    }
    /* ReversibleEmbedding: logits = h @ transpose(wte) */
    int32_t perm[2] = {1, 0};
    int32_t wt = miser_g_transpose(g, wte, 2, perm, "wte.transposed");
    in[0] = hf, in[1] = wt;
    int32_t logits = miser_g_op(g, MISER_OP_MATMUL, 2, in, "logits");
    in[0] = logits;
    int32_t out = miser_g_op(g, MISER_OP_OUTPUT, 1, in, "output");
    TRY_ID(out);
    return miser_graph_verify(g);
}
