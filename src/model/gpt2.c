/* GPT-2 in the architecture registry: its config.json parser (GPT-2's own
 * key names: n_embd, n_head, n_layer, n_positions, ...) and its tensor-name
 * table, checked against the config before anything reads a weight. The
 * graph builder is src/model/gpt2_graph.c. Canonical names drop the
 * "transformer." prefix GPT2LMHeadModel.save_pretrained writes. */
#include "model/arch.h"

#include "miser/gpt2.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* config.json fields of Hugging Face's GPT2Config that change the
 * computation and that the GPT-2 builder does not implement: refused
 * (MISER_ERR_UNSUPPORTED naming the field and its value), never ignored.
 * The builder computes tanh-GELU (gelu_new; gelu_pytorch_tanh and gelu_fast
 * are the same function), scales attention scores by 1/sqrt(head_dim) only,
 * and ties the output head to wte. Fields that only matter for training
 * (dropouts), other heads (summary_*) or an encoder (add_cross_attention
 * adds layers used only with encoder states) do not change generation. */
static miser_status gpt2_check_unimplemented(const char *path, const cJSON *root)
{
    static const char *const gelus[] = {"gelu_new", "gelu_pytorch_tanh", "gelu_fast"};
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    if (act && !cJSON_IsNull(act)) {
        if (!cJSON_IsString(act) || !act->valuestring)
            return miser_error_set(MISER_ERR_FORMAT, "%s: \"activation_function\" is not a string", path);
        int ok = 0;
        for (size_t i = 0; i < sizeof gelus / sizeof gelus[0]; i++) ok |= !strcmp(act->valuestring, gelus[i]);
        if (!ok)
            return miser_error_set(MISER_ERR_UNSUPPORTED,
                                   "%s: \"activation_function\" \"%.64s\" is not supported (miser implements "
                                   "the tanh GELU: gelu_new, gelu_pytorch_tanh, gelu_fast)",
                                   path, act->valuestring);
    }
    /* {field, the value miser implements} */
    static const struct { const char *key; int implemented; } flags[] = {
        {"scale_attn_weights", 1},
        {"scale_attn_by_inverse_layer_idx", 0},
        {"reorder_and_upcast_attn", 0},
        {"tie_word_embeddings", 1},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        int v;
        miser_status st = miser_cfg_bool(path, root, flags[i].key, flags[i].implemented, &v);
        if (st) return st;
        if (v != flags[i].implemented)
            return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: \"%s\" %s is not supported (miser implements %s)",
                                   path, flags[i].key, v ? "true" : "false",
                                   flags[i].implemented ? "true" : "false");
    }
    return MISER_OK;
}

static miser_status gpt2_parse_config(const char *path, const cJSON *root, miser_config *c)
{
    miser_status st;
    int64_t v;
    if ((st = gpt2_check_unimplemented(path, root))) return st;
    if ((st = miser_cfg_int(path, root, "n_embd", 1, 1 << 16, -1, &c->n_embd))) return st;
    if ((st = miser_cfg_int(path, root, "n_head", 1, 1 << 12, -1, &c->n_head))) return st;
    if ((st = miser_cfg_int(path, root, "n_layer", 1, 1 << 12, -1, &c->n_layer))) return st;
    if ((st = miser_cfg_int(path, root, "vocab_size", 1, 1 << 24, -1, &c->n_vocab))) return st;
    const cJSON *npos = cJSON_GetObjectItemCaseSensitive(root, "n_positions");
    const char *ctx_key = npos && !cJSON_IsNull(npos) ? "n_positions" : "n_ctx";
    if ((st = miser_cfg_int(path, root, ctx_key, 1, 1 << 20, -1, &c->n_ctx))) return st;
    if ((st = miser_cfg_int(path, root, "n_inner", 1, 1 << 20, 4 * c->n_embd, &c->n_inner))) return st;
    int64_t eos_def = c->n_vocab > 50256 ? 50256 : 0;
    if ((st = miser_cfg_int(path, root, "eos_token_id", 0, c->n_vocab - 1, eos_def, &v))) return st;
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    c->eos_token_id = ((!eos || cJSON_IsNull(eos)) && c->n_vocab <= 50256) ? -1 : (int32_t)v;
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
    c->eps = 1e-5f;
    if (eps && !cJSON_IsNull(eps)) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0) || !(eps->valuedouble < 1))
            return miser_error_set(MISER_ERR_RANGE, "%s: \"layer_norm_epsilon\" must be a number in (0, 1)", path);
        c->eps = (float)eps->valuedouble;
    }
    if (c->n_embd % c->n_head)
        return miser_error_set(MISER_ERR_RANGE, "%s: n_embd %lld is not divisible by n_head %lld", path,
                               (long long)c->n_embd, (long long)c->n_head);
    c->n_kv_head = c->n_head;
    c->head_dim = c->n_embd / c->n_head;
    c->bos_token_id = c->eos_token_id;
    c->norm = MISER_NORM_LAYERNORM;
    c->pos = MISER_POS_LEARNED;
    c->mlp = MISER_MLP_GELU;
    c->tied = 1;
    c->qkv_bias = 1;
    c->o_bias = 1;
    return MISER_OK;
}

static miser_status gpt2_validate(const miser_model *m)
{
    const miser_config *c = miser_model_config(m);
    const int64_t C = c->n_embd, F = c->n_inner;
    miser_status st;
    if ((st = miser_model_need(m, "wte.weight", c->n_vocab, C, "vocab_size x n_embd"))) return st;
    if ((st = miser_model_need(m, "wpe.weight", c->n_ctx, C, "n_positions x n_embd"))) return st;
    char nm[64];
    static const struct { const char *suffix; int r, c; } L[] = {
        /* r, c: 1 = C, 3 = 3C, 4 = n_inner, 0 = absent (a vector) */
        {"ln_1.weight", 1, 0},        {"ln_1.bias", 1, 0},         {"attn.c_attn.weight", 1, 3},
        {"attn.c_attn.bias", 3, 0},   {"attn.c_proj.weight", 1, 1}, {"attn.c_proj.bias", 1, 0},
        {"ln_2.weight", 1, 0},        {"ln_2.bias", 1, 0},         {"mlp.c_fc.weight", 1, 4},
        {"mlp.c_fc.bias", 4, 0},      {"mlp.c_proj.weight", 4, 1}, {"mlp.c_proj.bias", 1, 0},
    };
    for (int64_t l = 0; l < c->n_layer; l++)
        for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
            int64_t dim[5] = {0, C, 0, 3 * C, F};
            snprintf(nm, sizeof nm, "h.%lld.%s", (long long)l, L[i].suffix);
            const char *why = L[i].r == 4 || L[i].c == 4 ? "n_embd, n_inner" : "n_embd";
            if ((st = miser_model_need(m, nm, dim[L[i].r], L[i].c ? dim[L[i].c] : -1, why))) return st;
        }
    if ((st = miser_model_need(m, "ln_f.weight", C, -1, "n_embd"))) return st;
    if ((st = miser_model_need(m, "ln_f.bias", C, -1, "n_embd"))) return st;
    /* A stored lm_head shaped like wte is the tied copy; anything else would
     * be an untied head, which the GPT-2 builder does not implement. */
    const miser_tensor_info *lm = miser_model_tensor(m, "lm_head.weight");
    if (lm && (lm->ndim != 2 || lm->shape[0] != c->n_vocab || lm->shape[1] != C))
        return miser_error_set(MISER_ERR_UNSUPPORTED,
                               "%s: tensor 'lm_head.weight' is not shaped like wte [%lld, %lld]: untied output "
                               "heads are not supported",
                               miser_model_tensor_path(m, lm), (long long)c->n_vocab, (long long)C);
    return MISER_OK;
}

static const char *const gpt2_types[] = {"gpt2", NULL};
static const char *const gpt2_archs[] = {"GPT2LMHeadModel", "GPT2Model", NULL};

const miser_arch miser_arch_gpt2 = {
    .name = "gpt2",
    .model_types = gpt2_types,
    .architectures = gpt2_archs,
    .strip_prefix = "transformer.",
    .parse_config = gpt2_parse_config,
    .validate = gpt2_validate,
    .build = miser_gpt2_build,
    .kv_dtype = MISER_DTYPE_F32, /* f32 KV: the HF comparisons' tight tolerances */
};
