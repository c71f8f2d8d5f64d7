/* The Llama family in the architecture registry (LlamaForCausalLM,
 * MistralForCausalLM, Qwen2ForCausalLM checkpoints in Hugging Face's
 * layout): config parser, tensor-name table and graph builder.
 *
 * The graph is Keras Hub's LlamaBackbone / LlamaCausalLM structure:
 *   x = token_embedding(ids)
 *   per block:  h = RMSNorm(x)
 *               q = EinsumDense "bqm,muh->bquh" (kernel [C, H, D]) (+ bias [H, D], Qwen2)
 *               k = EinsumDense "bkm,mvh->bkvh" (kernel [C, KV, D]); v likewise
 *               q, k = RoPE(q), RoPE(k)      (rotate-half, rope_theta, rope_scaling)
 *               k, v -> KV cache (KV heads only)
 *               scores = einsum "bquh,bkuh->buqk" (q, k cache); causal softmax, 1/sqrt(D)
 *               ctx = einsum "buqk,bkuh->bquh" (probs, v cache)
 *               attn = EinsumDense "bquh,uhm->bqm" (kernel [H, D, C])
 *               -- grouped-query attention (KV < H) without repeating K/V: q viewed
 *                  as [1, T, KV, H/KV, D], scores "bqvrh,bkvh->bvrqk", combine
 *                  "bvrqk,bkvh->bqvrh", attn = "bqvrh,vrhm->bqm" (kernel [KV, H/KV, D, C])
 *               x = x + attn
 *               h = RMSNorm(x);  x = x + down(silu(gate(h)) * up(h))   (Dense = matmul)
 *   logits = RMSNorm(x) @ transpose(lm_head or, tied, embed_tokens)
 * Every kernel is a strided view of the PyTorch Linear weight [out, in]:
 * e.g. q_proj [H*D, C] as [C, H, D] with strides {1, D*C, C}, which the
 * passes fold into the dot layout [C, H*D] with strides {1, C} (wsk = 1) that
 * the linear kernels read in place, as the q8_0 cache's transposed Conv1D
 * weights. Nothing is copied. */
#include "model/arch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- config.json ---------------------------------------------------------- */

/* A string value, NULL when absent or null; MISER_ERR_FORMAT when not a string. */
static miser_status cfg_str(const char *path, const cJSON *root, const char *key, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return MISER_OK;
    if (!cJSON_IsString(v) || !v->valuestring)
        return miser_error_set(MISER_ERR_FORMAT, "%s: \"%s\" is not a string", path, key);
    *out = v->valuestring;
    return MISER_OK;
}

/* A token id (or the first of a list of them, as Llama 3 lists its eos
 * ids); -1 when absent. */
static miser_status cfg_token(const char *path, const cJSON *root, const char *key, int64_t n_vocab, int32_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = -1;
    if (!v || cJSON_IsNull(v)) return MISER_OK;
    if (cJSON_IsArray(v)) v = v->child;
    if (!v) return MISER_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble >= (double)n_vocab)
        return miser_error_set(MISER_ERR_RANGE, "%s: \"%s\" is not a token id below vocab_size %lld", path, key,
                               (long long)n_vocab);
    *out = (int32_t)v->valuedouble;
    return MISER_OK;
}

static miser_status parse_rope_scaling(const char *path, const cJSON *root, miser_config *c)
{
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    c->rope.type = MISER_ROPE_DEFAULT;
    c->rope.factor = 1.0;
    if (!rs || cJSON_IsNull(rs)) return MISER_OK;
    if (!cJSON_IsObject(rs)) return miser_error_set(MISER_ERR_FORMAT, "%s: \"rope_scaling\" is not an object", path);
    const char *type = NULL;
    miser_status st = cfg_str(path, rs, "rope_type", &type);
    if (!st && !type) st = cfg_str(path, rs, "type", &type);
    if (st) return miser_error_prefix(st, "rope_scaling");
    if (!type || !strcmp(type, "default")) return MISER_OK;
    if (!strcmp(type, "linear")) c->rope.type = MISER_ROPE_LINEAR;
    else if (!strcmp(type, "llama3")) c->rope.type = MISER_ROPE_LLAMA3;
    else
        return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: \"rope_scaling\" type \"%.32s\" is not supported (default, "
                               "linear, llama3)", path, type);
    if ((st = miser_cfg_num(path, rs, "factor", 0, 1e6, -1, &c->rope.factor))) return st;
    if (!(c->rope.factor > 0))
        return miser_error_set(MISER_ERR_FORMAT, "%s: \"rope_scaling\" needs a positive \"factor\"", path);
    if (c->rope.type == MISER_ROPE_LLAMA3) {
        int64_t old;
        if ((st = miser_cfg_num(path, rs, "low_freq_factor", 0, 1e6, 1.0, &c->rope.low_freq_factor))) return st;
        if ((st = miser_cfg_num(path, rs, "high_freq_factor", 0, 1e6, 4.0, &c->rope.high_freq_factor))) return st;
        if ((st = miser_cfg_int(path, rs, "original_max_position_embeddings", 1, 1 << 24, 8192, &old))) return st;
        c->rope.original_ctx = old;
        if (!(c->rope.high_freq_factor > c->rope.low_freq_factor))
            return miser_error_set(MISER_ERR_RANGE, "%s: \"rope_scaling\": high_freq_factor must exceed low_freq_factor",
                                   path);
    }
    return MISER_OK;
}

static miser_status llama_parse_config(const char *path, const cJSON *root, miser_config *c)
{
    miser_status st;
    const char *mt = NULL;
    if ((st = cfg_str(path, root, "model_type", &mt))) return st;
    const int qwen2 = mt && !strcmp(mt, "qwen2");
    if ((st = miser_cfg_int(path, root, "hidden_size", 1, 1 << 16, -1, &c->n_embd))) return st;
    if ((st = miser_cfg_int(path, root, "num_attention_heads", 1, 1 << 12, -1, &c->n_head))) return st;
    if ((st = miser_cfg_int(path, root, "num_key_value_heads", 1, 1 << 12, c->n_head, &c->n_kv_head))) return st;
    if ((st = miser_cfg_int(path, root, "num_hidden_layers", 1, 1 << 12, -1, &c->n_layer))) return st;
    if ((st = miser_cfg_int(path, root, "intermediate_size", 1, 1 << 20, -1, &c->n_inner))) return st;
    if ((st = miser_cfg_int(path, root, "vocab_size", 1, 1 << 24, -1, &c->n_vocab))) return st;
    if ((st = miser_cfg_int(path, root, "max_position_embeddings", 1, 1 << 24, -1, &c->n_ctx))) return st;
    if (c->n_ctx > (1 << 20)) c->n_ctx = 1 << 20; /* long-context models: the runtime's limit */
    if (c->n_head % c->n_kv_head)
        return miser_error_set(MISER_ERR_RANGE, "%s: num_attention_heads %lld is not a multiple of num_key_value_heads "
                               "%lld", path, (long long)c->n_head, (long long)c->n_kv_head);
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    if ((!hd || cJSON_IsNull(hd)) && c->n_embd % c->n_head)
        return miser_error_set(MISER_ERR_RANGE, "%s: hidden_size %lld is not divisible by num_attention_heads %lld "
                               "and \"head_dim\" is not given", path, (long long)c->n_embd, (long long)c->n_head);
    if ((st = miser_cfg_int(path, root, "head_dim", 2, 1 << 12, c->n_embd / c->n_head, &c->head_dim))) return st;
    if (c->head_dim % 2)
        return miser_error_set(MISER_ERR_RANGE, "%s: \"head_dim\" %lld is odd (rotary embeddings rotate pairs)", path,
                               (long long)c->head_dim);
    double eps;
    if ((st = miser_cfg_num(path, root, "rms_norm_eps", 0, 1, 1e-6, &eps))) return st;
    c->eps = (float)eps;
    if ((st = miser_cfg_num(path, root, "rope_theta", 0, 1e12, 10000.0, &c->rope.theta))) return st;
    if ((st = parse_rope_scaling(path, root, c))) return st;
    if ((st = miser_cfg_bool(path, root, "tie_word_embeddings", 0, &c->tied))) return st;
    const char *act = NULL;
    if ((st = cfg_str(path, root, "hidden_act", &act))) return st;
    if (act && strcmp(act, "silu"))
        return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: \"hidden_act\" \"%.32s\" is not supported (silu)", path, act);
    int b = 0;
    if ((st = miser_cfg_bool(path, root, "mlp_bias", 0, &b))) return st;
    if (b) return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: \"mlp_bias\": true is not supported", path);
    if ((st = miser_cfg_bool(path, root, "attention_bias", 0, &b))) return st;
    /* Qwen2 has Q/K/V biases (no output bias); Llama's attention_bias puts
     * a bias on all four projections */
    c->qkv_bias = qwen2 || b;
    c->o_bias = !qwen2 && b;
    /* sliding-window attention: only a window that covers the context */
    int use_sw = 1;
    if (qwen2 && (st = miser_cfg_bool(path, root, "use_sliding_window", 0, &use_sw))) return st;
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    if (use_sw && sw && !cJSON_IsNull(sw)) {
        if (!cJSON_IsNumber(sw))
            return miser_error_set(MISER_ERR_FORMAT, "%s: \"sliding_window\" is not a number", path);
        if (sw->valuedouble < (double)c->n_ctx)
            return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: \"sliding_window\" %g is shorter than the context %lld: "
                                   "sliding-window attention is not supported", path, sw->valuedouble,
                                   (long long)c->n_ctx);
    }
    if ((st = cfg_token(path, root, "bos_token_id", c->n_vocab, &c->bos_token_id))) return st;
    if ((st = cfg_token(path, root, "eos_token_id", c->n_vocab, &c->eos_token_id))) return st;
    c->norm = MISER_NORM_RMSNORM;
    c->pos = MISER_POS_ROPE;
    c->mlp = MISER_MLP_SWIGLU;
    return MISER_OK;
}

/* ---- tensors ---------------------------------------------------------------- */

#define P "model."

static miser_status llama_validate(const miser_model *m)
{
    const miser_config *c = miser_model_config(m);
    const int64_t C = c->n_embd, F = c->n_inner, QD = c->n_head * c->head_dim, KD = c->n_kv_head * c->head_dim;
    miser_status st;
    char nm[96];
    if ((st = miser_model_need(m, P "embed_tokens.weight", c->n_vocab, C, "vocab_size x hidden_size"))) return st;
    for (int64_t l = 0; l < c->n_layer; l++) {
        const struct { const char *suffix; int64_t d0, d1; const char *why; int when; } L[] = {
            {"input_layernorm.weight", C, -1, "hidden_size", 1},
            {"self_attn.q_proj.weight", QD, C, "num_attention_heads x head_dim, hidden_size", 1},
            {"self_attn.k_proj.weight", KD, C, "num_key_value_heads x head_dim, hidden_size", 1},
            {"self_attn.v_proj.weight", KD, C, "num_key_value_heads x head_dim, hidden_size", 1},
            {"self_attn.q_proj.bias", QD, -1, "num_attention_heads x head_dim", c->qkv_bias},
            {"self_attn.k_proj.bias", KD, -1, "num_key_value_heads x head_dim", c->qkv_bias},
            {"self_attn.v_proj.bias", KD, -1, "num_key_value_heads x head_dim", c->qkv_bias},
            {"self_attn.o_proj.weight", C, QD, "hidden_size, num_attention_heads x head_dim", 1},
            {"self_attn.o_proj.bias", C, -1, "hidden_size", c->o_bias},
            {"post_attention_layernorm.weight", C, -1, "hidden_size", 1},
            {"mlp.gate_proj.weight", F, C, "intermediate_size, hidden_size", 1},
            {"mlp.up_proj.weight", F, C, "intermediate_size, hidden_size", 1},
            {"mlp.down_proj.weight", C, F, "hidden_size, intermediate_size", 1},
        };
        for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
            if (!L[i].when) continue;
            snprintf(nm, sizeof nm, P "layers.%lld.%s", (long long)l, L[i].suffix);
            if ((st = miser_model_need(m, nm, L[i].d0, L[i].d1, L[i].why))) return st;
        }
    }
    if ((st = miser_model_need(m, P "norm.weight", C, -1, "hidden_size"))) return st;
    /* untied: lm_head.weight is required; tied: a stored copy is ignored */
    if (!c->tied && (st = miser_model_need(m, "lm_head.weight", c->n_vocab, C, "vocab_size x hidden_size "
                                                                             "(tie_word_embeddings is false)")))
        return st;
    return MISER_OK;
}

/* ---- graph -------------------------------------------------------------------- */

#define TRY_ID(x)                                                                                                      \
    do {                                                                                                               \
        if ((x) < 0)                                                                                                   \
            return miser_error_prefix(g->last_error ? g->last_error : MISER_ERR_INTERNAL, "building Llama graph");    \
    } while (0)

/* the checkpoint tensor `name` as a constant, or -1 with *st set */
static int32_t cst(miser_graph *g, const miser_model *m, const char *name, miser_status *st)
{
    return miser_model_const(g, m, name, "building Llama graph", st);
}

/* A view of the 2-D constant w, PyTorch Linear [out, in] with element
 * strides (s0, s1), as the Dense kernel [in, out]: strides (s1, s0). */
static int32_t dense_kernel(miser_graph *g, int32_t w, const char *name)
{
    const miser_node *n = &g->nodes[w];
    int64_t shape[2] = {n->shape[1], n->shape[0]}, stride[2] = {n->cst.stride[1], n->cst.stride[0]};
    return miser_g_const_view(g, w, 0, 2, shape, stride, name);
}

/* The EinsumDense kernel [in, heads, D] of a Linear [heads*D, in]: element
 * (m, u, h) is W[u*D + h, m]. */
static int32_t heads_kernel(miser_graph *g, int32_t w, int64_t heads, int64_t D, const char *name)
{
    const miser_node *n = &g->nodes[w];
    const int64_t s0 = n->cst.stride[0], s1 = n->cst.stride[1];
    int64_t shape[3] = {n->shape[1], heads, D}, stride[3] = {s1, D * s0, s0};
    return miser_g_const_view(g, w, 0, 3, shape, stride, name);
}

static int32_t matmul(miser_graph *g, int32_t x, int32_t w, const char *name)
{
    int32_t in[2] = {x, w};
    return miser_g_op(g, MISER_OP_MATMUL, 2, in, name);
}

static int32_t rmsnorm(miser_graph *g, int32_t x, int32_t w, float eps, const char *name)
{
    int32_t in[2] = {x, w};
    int32_t y = miser_g_op(g, MISER_OP_RMSNORM, 2, in, name);
    if (y >= 0) g->nodes[y].attr.f[0] = eps;
    return y;
}

miser_status miser_llama_build(miser_graph *g, const miser_model *m, int all_logits)
{
    const miser_config *c = miser_model_config(m);
    const int64_t H = c->n_head, KV = c->n_kv_head, D = c->head_dim, R = H / KV;
    miser_status st = MISER_OK;
    char nm[96], gn[96];
    g->n_layer = c->n_layer;
    g->n_head = H;
    g->n_kv_head = KV;
    g->head_dim = D;
    g->rope = c->rope;

    int32_t ids = miser_g_input(g, MISER_INPUT_TOKENS, "token_ids");
    int32_t pos = miser_g_input(g, MISER_INPUT_POSITIONS, "positions");
    int32_t emb = cst(g, m, P "embed_tokens.weight", &st);
    if (st) return st;
    int32_t in[3] = {emb, ids};
    int32_t x = miser_g_op(g, MISER_OP_GATHER, 2, in, "token_embedding");
    TRY_ID(x);

#define W(field) (snprintf(nm, sizeof nm, P "layers.%lld." field, (long long)l), cst(g, m, nm, &st))
#define N(field) (snprintf(gn, sizeof gn, "layers.%lld." field, (long long)l), gn)
    for (int64_t l = 0; l < c->n_layer; l++) {
        int32_t ln1 = W("input_layernorm.weight");
        if (st) return st;
        int32_t h = rmsnorm(g, x, ln1, c->eps, N("attention_norm"));
        TRY_ID(h);

        static const char *const which[3] = {"q_proj", "k_proj", "v_proj"};
        static const char *const kname[3] = {"query", "key", "value"};
        static const char *const eq[3] = {"bqm,muh->bquh", "bkm,mvh->bkvh", "bkm,mvh->bkvh"};
        int32_t qkv[3];
        for (int j = 0; j < 3; j++) {
            snprintf(nm, sizeof nm, P "layers.%lld.self_attn.%s.weight", (long long)l, which[j]);
            int32_t w = cst(g, m, nm, &st);
            if (st) return st;
            const int64_t heads = j ? KV : H;
            snprintf(gn, sizeof gn, "layers.%lld.attention.%s.kernel", (long long)l, kname[j]);
            int32_t k = heads_kernel(g, w, heads, D, gn);
            snprintf(gn, sizeof gn, "layers.%lld.attention.%s.einsum", (long long)l, kname[j]);
            int32_t e = miser_g_einsum(g, eq[j], h, k, gn);
            TRY_ID(e);
            if (c->qkv_bias) {
                snprintf(nm, sizeof nm, P "layers.%lld.self_attn.%s.bias", (long long)l, which[j]);
                int32_t b = cst(g, m, nm, &st);
                if (st) return st;
                int64_t bshape[2] = {heads, D}, bstride[2] = {D * g->nodes[b].cst.stride[0], g->nodes[b].cst.stride[0]};
                snprintf(gn, sizeof gn, "layers.%lld.attention.%s.bias", (long long)l, kname[j]);
                int32_t bv = miser_g_const_view(g, b, 0, 2, bshape, bstride, gn);
                in[0] = e, in[1] = bv;
                snprintf(gn, sizeof gn, "layers.%lld.attention.%s", (long long)l, kname[j]);
                e = miser_g_op(g, MISER_OP_ADD, 2, in, gn);
                TRY_ID(e);
            }
            qkv[j] = e;
        }
        /* rotary embeddings on the query and the key (before the cache) */
        in[0] = qkv[0], in[1] = pos;
        int32_t q = miser_g_op(g, MISER_OP_ROPE, 2, in, N("attention.query_rope"));
        in[0] = qkv[1];
        int32_t kr = miser_g_op(g, MISER_OP_ROPE, 2, in, N("attention.key_rope"));
        TRY_ID(q);
        TRY_ID(kr);
        miser_node kw = {.op = MISER_OP_KV_WRITE, .n_in = 1, .in = {kr}};
        kw.attr.i[0] = l, kw.attr.i[1] = 0;
        snprintf(kw.name, sizeof kw.name, "layers.%lld.attention.k_cache", (long long)l);
        int32_t kc = miser_graph_add(g, &kw);
        TRY_ID(kc);
        if ((st = miser_graph_infer(g, kc))) return st;
        miser_node vw = kw;
        vw.in[0] = qkv[2];
        vw.attr.i[1] = 1;
        snprintf(vw.name, sizeof vw.name, "layers.%lld.attention.v_cache", (long long)l);
        int32_t vc = miser_graph_add(g, &vw);
        TRY_ID(vc);
        if ((st = miser_graph_infer(g, vc))) return st;

        miser_node sm = {.op = MISER_OP_SOFTMAX, .n_in = 1};
        sm.attr.f[0] = (float)(1.0 / sqrt((double)D));
        sm.attr.i[0] = 1; /* causal */
        snprintf(sm.name, sizeof sm.name, "layers.%lld.attention.probs", (long long)l);
        int32_t wo = W("self_attn.o_proj.weight");
        if (st) return st;
        const int64_t os0 = g->nodes[wo].cst.stride[0], os1 = g->nodes[wo].cst.stride[1];
        int32_t ao;
        if (R == 1) {
            sm.in[0] = miser_g_einsum(g, "bquh,bkuh->buqk", q, kc, N("attention.scores"));
            TRY_ID(sm.in[0]);
            int32_t pr = miser_graph_add(g, &sm);
            TRY_ID(pr);
            if ((st = miser_graph_infer(g, pr))) return st;
            int32_t ctx = miser_g_einsum(g, "buqk,bkuh->bquh", pr, vc, N("attention.context"));
            /* output kernel [H, D, C] of o_proj [C, H*D]: element (u, h, m) = W[m, u*D + h] */
            int64_t oshape[3] = {H, D, c->n_embd}, ostride[3] = {D * os1, os1, os0};
            int32_t ok = miser_g_const_view(g, wo, 0, 3, oshape, ostride, N("attention.output.kernel"));
            ao = miser_g_einsum(g, "bquh,uhm->bqm", ctx, ok, N("attention.output.einsum"));
        } else {
            /* grouped-query attention: query head u = v*R + r reads KV head v.
             * Keras Hub repeats K and V to H heads (a copy per step); here the
             * query is viewed in groups instead, and the context stays
             * grouped into the output projection, whose kernel [KV, R, D, C]
             * is another view of o_proj */
            int64_t q5s[5] = {1, MISER_DIM_T, KV, R, D};
            int32_t q5 = miser_g_reshape(g, q, 5, q5s, N("attention.query_groups"));
            sm.in[0] = miser_g_einsum(g, "bqvrh,bkvh->bvrqk", q5, kc, N("attention.scores"));
            TRY_ID(sm.in[0]);
            int32_t pr = miser_graph_add(g, &sm);
            TRY_ID(pr);
            if ((st = miser_graph_infer(g, pr))) return st;
            int32_t ctx = miser_g_einsum(g, "bvrqk,bkvh->bqvrh", pr, vc, N("attention.context"));
            int64_t oshape[4] = {KV, R, D, c->n_embd}, ostride[4] = {R * D * os1, D * os1, os1, os0};
            int32_t ok = miser_g_const_view(g, wo, 0, 4, oshape, ostride, N("attention.output.kernel"));
            ao = miser_g_einsum(g, "bqvrh,vrhm->bqm", ctx, ok, N("attention.output.einsum"));
        }
        TRY_ID(ao);
        if (c->o_bias) {
            int32_t bo = W("self_attn.o_proj.bias");
            if (st) return st;
            in[0] = ao, in[1] = bo;
            ao = miser_g_op(g, MISER_OP_ADD, 2, in, N("attention.output"));
        }
        in[0] = x, in[1] = ao;
        x = miser_g_op(g, MISER_OP_ADD, 2, in, N("attention.residual"));
        TRY_ID(x);

        int32_t ln2 = W("post_attention_layernorm.weight");
        if (st) return st;
        int32_t h2 = rmsnorm(g, x, ln2, c->eps, N("ffn_norm"));
        int32_t wg = W("mlp.gate_proj.weight");
        if (st) return st;
        int32_t wu = W("mlp.up_proj.weight");
        if (st) return st;
        int32_t wd = W("mlp.down_proj.weight");
        if (st) return st;
        int32_t gk = dense_kernel(g, wg, N("ffn.gate.kernel"));
        int32_t uk = dense_kernel(g, wu, N("ffn.intermediate.kernel"));
        int32_t dk = dense_kernel(g, wd, N("ffn.output.kernel"));
        int32_t gt = matmul(g, h2, gk, N("ffn.gate"));
        in[0] = gt;
        int32_t sg = miser_g_op(g, MISER_OP_SILU, 1, in, N("ffn.gate.silu"));
        int32_t up = matmul(g, h2, uk, N("ffn.intermediate"));
        in[0] = sg, in[1] = up;
        int32_t gu = miser_g_op(g, MISER_OP_MUL, 2, in, N("ffn.gated"));
        int32_t dn = matmul(g, gu, dk, N("ffn.output"));
        in[0] = x, in[1] = dn;
        x = miser_g_op(g, MISER_OP_ADD, 2, in, N("ffn.residual"));
        TRY_ID(x);
    }
#undef W
#undef N
    int32_t lnf = cst(g, m, P "norm.weight", &st);
    if (st) return st;
    int32_t hf = rmsnorm(g, x, lnf, c->eps, "final_norm");
    TRY_ID(hf);
    if (!all_logits) {
        in[0] = hf;
        hf = miser_g_op(g, MISER_OP_LAST_TOKEN, 1, in, "last_token");
    }
    int32_t head = emb;
    if (!c->tied) {
        head = cst(g, m, "lm_head.weight", &st);
        if (st) return st;
    }
    int32_t perm[2] = {1, 0};
    int32_t wt = miser_g_transpose(g, head, 2, perm, c->tied ? "token_embedding.transposed" : "lm_head.transposed");
    int32_t logits = matmul(g, hf, wt, "logits");
    in[0] = logits;
    int32_t out = miser_g_op(g, MISER_OP_OUTPUT, 1, in, "output");
    TRY_ID(out);
    return miser_graph_verify(g);
}

static const char *const llama_types[] = {"llama", "mistral", "qwen2", NULL};
static const char *const llama_archs[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", NULL};

const miser_arch miser_arch_llama = {
    .name = "llama",
    .model_types = llama_types,
    .architectures = llama_archs,
    .strip_prefix = NULL,
    .parse_config = llama_parse_config,
    .validate = llama_validate,
    .build = miser_llama_build,
    /* f16 KV by default, as llama.cpp: halves the cache (84 -> 42 MB for
     * SmolLM2-360M at context 1024); --kv-f32 keeps f32 */
    .kv_dtype = MISER_DTYPE_F16,
};
