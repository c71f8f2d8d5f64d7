/* A GGUF file as a miser model: general.architecture picks the registry
 * entry (gpt2; llama, and the llama-math names mistral / qwen2), the
 * architecture's GGUF keys fill the generic miser_config, and every tensor
 * is renamed to the Hugging Face name the registry's tables and builders use
 * (token_embd.weight -> wte.weight / model.embed_tokens.weight, ...), with
 * the shape and strides that show GGUF's layout in place:
 *  - GGUF stores a matrix of ne = {K, N} as N rows of K (blocks along K).
 *    Llama's Linear [out, in] is exactly that, row-major [N, K]. GPT-2's
 *    Conv1D weights are logical [K, N] = [in, out]: shown as shape [K, N]
 *    with strides {1, K} (the dot layout, like the q8_0 cache's transposed
 *    weights), so nothing is copied or transposed.
 *  - llama.cpp's llama architecture rotates adjacent pairs, and its
 *    converter permutes the rows of attn_q / attn_k per head to match
 *    (to_gguf_llama.py). Attention only needs q . k within a head, which the
 *    same permutation of both leaves unchanged, so the weights are used as
 *    stored and the rotation is switched to adjacent pairs
 *    (miser_rope_config.pairs). qwen2 files are not permuted (rotate-half).
 * Heap: the tensor table and one blob of canonical names. */
#include "model/gguf_model.h"

#include "miser/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *gguf; /* suffix after "blk.N." or a whole name */
    const char *hf;   /* printf format with %lld for the layer, or whole name */
    int conv1d;       /* GPT-2 Conv1D weight: logical [K, N] */
} name_map;

static const name_map k_gpt2_global[] = {
    {"token_embd.weight", "wte.weight", 0},       {"position_embd.weight", "wpe.weight", 0},
    {"output_norm.weight", "ln_f.weight", 0},     {"output_norm.bias", "ln_f.bias", 0},
    {"output.weight", "lm_head.weight", 0},
};
static const name_map k_gpt2_layer[] = {
    {"attn_norm.weight", "h.%lld.ln_1.weight", 0},        {"attn_norm.bias", "h.%lld.ln_1.bias", 0},
    {"attn_qkv.weight", "h.%lld.attn.c_attn.weight", 1},  {"attn_qkv.bias", "h.%lld.attn.c_attn.bias", 0},
    {"attn_output.weight", "h.%lld.attn.c_proj.weight", 1}, {"attn_output.bias", "h.%lld.attn.c_proj.bias", 0},
    {"ffn_norm.weight", "h.%lld.ln_2.weight", 0},         {"ffn_norm.bias", "h.%lld.ln_2.bias", 0},
    {"ffn_up.weight", "h.%lld.mlp.c_fc.weight", 1},       {"ffn_up.bias", "h.%lld.mlp.c_fc.bias", 0},
    {"ffn_down.weight", "h.%lld.mlp.c_proj.weight", 1},   {"ffn_down.bias", "h.%lld.mlp.c_proj.bias", 0},
};
static const name_map k_llama_global[] = {
    {"token_embd.weight", "model.embed_tokens.weight", 0},
    {"output_norm.weight", "model.norm.weight", 0},
    {"output.weight", "lm_head.weight", 0},
};
static const name_map k_llama_layer[] = {
    {"attn_norm.weight", "model.layers.%lld.input_layernorm.weight", 0},
    {"attn_q.weight", "model.layers.%lld.self_attn.q_proj.weight", 0},
    {"attn_k.weight", "model.layers.%lld.self_attn.k_proj.weight", 0},
    {"attn_v.weight", "model.layers.%lld.self_attn.v_proj.weight", 0},
    {"attn_q.bias", "model.layers.%lld.self_attn.q_proj.bias", 0},
    {"attn_k.bias", "model.layers.%lld.self_attn.k_proj.bias", 0},
    {"attn_v.bias", "model.layers.%lld.self_attn.v_proj.bias", 0},
    {"attn_output.weight", "model.layers.%lld.self_attn.o_proj.weight", 0},
    {"ffn_norm.weight", "model.layers.%lld.post_attention_layernorm.weight", 0},
    {"ffn_gate.weight", "model.layers.%lld.mlp.gate_proj.weight", 0},
    {"ffn_up.weight", "model.layers.%lld.mlp.up_proj.weight", 0},
    {"ffn_down.weight", "model.layers.%lld.mlp.down_proj.weight", 0},
};

#define ARR(a) a, sizeof a / sizeof a[0]

/* "<arch>.<key>" */
static const char *akey(char *buf, size_t cap, const char *arch, const char *key)
{
    snprintf(buf, cap, "%s.%s", arch, key);
    return buf;
}

static miser_status get_i(const miser_gguf_file *f, const char *arch, const char *key, int64_t lo, int64_t hi,
                          int64_t def, int64_t *out)
{
    char k[128];
    int found = 0;
    miser_status st = miser_gguf_get_int(f, akey(k, sizeof k, arch, key), lo, hi, def < 0 ? NULL : &found, out);
    if (!st && def >= 0 && !found) *out = def;
    return st;
}

static miser_status token_id(const miser_gguf_file *f, const char *key, int64_t n_vocab, int32_t *out)
{
    int found = 0;
    int64_t v = -1;
    miser_status st = miser_gguf_get_int(f, key, 0, n_vocab - 1, &found, &v);
    *out = found ? (int32_t)v : -1;
    return st;
}

static miser_status parse_config(const miser_gguf_file *f, const char *arch, int gpt2, miser_config *c)
{
    miser_status st;
    char k[128];
    const miser_gguf_tensor *emb = miser_gguf_find_tensor(f, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return miser_error_set(MISER_ERR_FORMAT, "%s: tensor token_embd.weight is %s", f->path,
                               emb ? "not 2-D" : "missing");
    c->n_vocab = emb->ne[1];
    if (c->n_vocab > (1 << 24)) return miser_error_set(MISER_ERR_RANGE, "%s: vocabulary of %lld tokens", f->path, (long long)c->n_vocab);
    if ((st = get_i(f, arch, "embedding_length", 1, 1 << 16, -1, &c->n_embd))) return st;
    if ((st = get_i(f, arch, "attention.head_count", 1, 1 << 12, -1, &c->n_head))) return st;
    if ((st = get_i(f, arch, "block_count", 1, 1 << 12, -1, &c->n_layer))) return st;
    if ((st = get_i(f, arch, "context_length", 1, (int64_t)1 << 40, -1, &c->n_ctx))) return st;
    if ((st = get_i(f, arch, "feed_forward_length", 1, 1 << 20, gpt2 ? 4 * c->n_embd : -1, &c->n_inner))) return st;
    if (c->n_ctx > (1 << 20)) c->n_ctx = 1 << 20; /* the runtime's limit, as llama.c */
    int found = 0;
    double eps = 1e-5;
    if ((st = miser_gguf_get_float(f, akey(k, sizeof k, arch, gpt2 ? "attention.layer_norm_epsilon"
                                                                   : "attention.layer_norm_rms_epsilon"),
                                   &found, &eps)))
        return st;
    if (!(eps > 0 && eps < 1)) return miser_error_set(MISER_ERR_RANGE, "%s: %s = %g is outside (0, 1)", f->path, k, eps);
    c->eps = (float)eps;
    if ((st = token_id(f, "tokenizer.ggml.bos_token_id", c->n_vocab, &c->bos_token_id))) return st;
    if ((st = token_id(f, "tokenizer.ggml.eos_token_id", c->n_vocab, &c->eos_token_id))) return st;
    c->tied = !miser_gguf_find_tensor(f, "output.weight");
    if (gpt2) {
        if (c->n_embd % c->n_head)
            return miser_error_set(MISER_ERR_RANGE, "%s: gpt2.embedding_length %lld is not divisible by "
                                   "gpt2.attention.head_count %lld", f->path, (long long)c->n_embd, (long long)c->n_head);
        if (!c->tied)
            return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: tensor output.weight: an untied GPT-2 output "
                                   "projection is not supported", f->path);
        c->n_kv_head = c->n_head;
        c->head_dim = c->n_embd / c->n_head;
        c->norm = MISER_NORM_LAYERNORM;
        c->pos = MISER_POS_LEARNED;
        c->mlp = MISER_MLP_GELU;
        c->qkv_bias = c->o_bias = 1;
        return MISER_OK;
    }
    if ((st = get_i(f, arch, "attention.head_count_kv", 1, c->n_head, c->n_head, &c->n_kv_head))) return st;
    if (c->n_head % c->n_kv_head)
        return miser_error_set(MISER_ERR_RANGE, "%s: %s.attention.head_count %lld is not a multiple of "
                               "head_count_kv %lld", f->path, arch, (long long)c->n_head, (long long)c->n_kv_head);
    int64_t hd_def = c->n_embd % c->n_head ? -1 : c->n_embd / c->n_head, vd = 0, rd = 0;
    if ((st = get_i(f, arch, "attention.key_length", 2, 1 << 12, hd_def, &c->head_dim))) return st;
    if ((st = get_i(f, arch, "attention.value_length", 2, 1 << 12, c->head_dim, &vd))) return st;
    if (vd != c->head_dim)
        return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: %s.attention.value_length %lld differs from key_length "
                               "%lld", f->path, arch, (long long)vd, (long long)c->head_dim);
    if (c->head_dim % 2) return miser_error_set(MISER_ERR_RANGE, "%s: odd head size %lld", f->path, (long long)c->head_dim);
    if ((st = get_i(f, arch, "rope.dimension_count", 1, 1 << 12, c->head_dim, &rd))) return st;
    if (rd != c->head_dim)
        return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: %s.rope.dimension_count %lld: rotary embeddings on part "
                               "of a head are not supported (head size %lld)", f->path, arch, (long long)rd,
                               (long long)c->head_dim);
    c->rope.theta = 10000.0;
    if ((st = miser_gguf_get_float(f, akey(k, sizeof k, arch, "rope.freq_base"), &found, &c->rope.theta))) return st;
    if (!(c->rope.theta > 0 && c->rope.theta < 1e12))
        return miser_error_set(MISER_ERR_RANGE, "%s: %s = %g is outside (0, 1e12)", f->path, k, c->rope.theta);
    c->rope.type = MISER_ROPE_DEFAULT;
    c->rope.factor = 1.0;
    const char *s = NULL;
    size_t sl = 0;
    if ((st = miser_gguf_get_str(f, akey(k, sizeof k, arch, "rope.scaling.type"), &found, &s, &sl))) return st;
    if (found && !(sl == 4 && !memcmp(s, "none", 4))) {
        if (!(sl == 6 && !memcmp(s, "linear", 6)))
            return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: %s \"%.*s\" is not supported (none, linear)", f->path,
                                   k, (int)(sl > 32 ? 32 : sl), s);
        c->rope.type = MISER_ROPE_LINEAR;
        if ((st = miser_gguf_get_float(f, akey(k, sizeof k, arch, "rope.scaling.factor"), NULL, &c->rope.factor)))
            return st;
        if (!(c->rope.factor > 0 && c->rope.factor < 1e6))
            return miser_error_set(MISER_ERR_RANGE, "%s: %s = %g is outside (0, 1e6)", f->path, k, c->rope.factor);
    }
    if (miser_gguf_find_tensor(f, "rope_freqs.weight"))
        return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: tensor rope_freqs.weight (per-frequency rope factors, "
                               "llama3 scaling) is not supported", f->path);
    const int qwen2 = !strcmp(arch, "qwen2");
    c->qkv_bias = miser_gguf_find_tensor(f, "blk.0.attn_q.bias") != NULL;
    c->o_bias = 0;
    if (miser_gguf_find_tensor(f, "blk.0.attn_output.bias"))
        return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: tensor blk.0.attn_output.bias: an attention output bias "
                               "is not supported", f->path);
    c->rope.pairs = !qwen2; /* llama.cpp's rope "normal" on permuted rows; qwen2 is NEOX = rotate-half */
    c->norm = MISER_NORM_RMSNORM;
    c->pos = MISER_POS_ROPE;
    c->mlp = MISER_MLP_SWIGLU;
    return MISER_OK;
}

static int cmp_info(const void *a, const void *b)
{
    return strcmp(((const miser_tensor_info *)a)->name, ((const miser_tensor_info *)b)->name);
}

/* The HF name for GGUF name `g`, or 0 when the table has none. */
static int rename_one(const char *g, int gpt2, char *out, size_t cap, int *conv1d)
{
    const name_map *glob = gpt2 ? k_gpt2_global : k_llama_global, *lay = gpt2 ? k_gpt2_layer : k_llama_layer;
    size_t ng = gpt2 ? sizeof k_gpt2_global / sizeof *glob : sizeof k_llama_global / sizeof *glob;
    size_t nl = gpt2 ? sizeof k_gpt2_layer / sizeof *lay : sizeof k_llama_layer / sizeof *lay;
    *conv1d = 0;
    for (size_t i = 0; i < ng; i++)
        if (!strcmp(g, glob[i].gguf)) {
            snprintf(out, cap, "%s", glob[i].hf);
            return 1;
        }
    long long l;
    int used = 0;
    if (sscanf(g, "blk.%lld.%n", &l, &used) == 1 && used > 0 && l >= 0 && g[4] >= '0' && g[4] <= '9')
        for (size_t i = 0; i < nl; i++)
            if (!strcmp(g + used, lay[i].gguf)) {
                snprintf(out, cap, lay[i].hf, l);
                *conv1d = lay[i].conv1d;
                return 1;
            }
    return 0;
}

miser_status miser_gguf_model_load(const miser_gguf_file *f, miser_config *cfg, const miser_arch **arch,
                                   miser_tensor_info **tensors, size_t *n_tensors, char **names)
{
    *tensors = NULL;
    *names = NULL;
    *n_tensors = 0;
    *arch = NULL;
    const char *a = NULL;
    size_t al = 0;
    miser_status st = miser_gguf_get_str(f, "general.architecture", NULL, &a, &al);
    if (st) return st;
    char an[32];
    if (al >= sizeof an) al = sizeof an - 1;
    memcpy(an, a, al);
    an[al] = 0;
    if (memchr(an, 0, al)) an[0] = 0;
    int gpt2 = !strcmp(an, "gpt2");
    if (!gpt2 && strcmp(an, "llama") && strcmp(an, "mistral") && strcmp(an, "qwen2"))
        return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: general.architecture \"%s\" is not supported (gpt2, "
                               "llama, mistral, qwen2)", f->path, an);
    *arch = miser_arch_find(gpt2 ? "gpt2" : "llama");
    if (!*arch) return miser_error_set(MISER_ERR_INTERNAL, "%s: architecture not registered", f->path);
    /* every tensor: a type miser computes with, a known name */
    size_t blob = 0;
    char nm[160];
    int conv;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const miser_gguf_tensor *t = &f->tensors[i];
        if (t->dtype == MISER_DTYPE_COUNT)
            return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s (miser reads f32, f16, bf16, "
                                   "q8_0, q4_0, q4_K, q6_K)", f->path, t->name, miser_ggml_type_name(t->type));
        if (rename_one(t->name, gpt2, nm, sizeof nm, &conv)) blob += strlen(nm) + 1;
    }
    memset(cfg, 0, sizeof *cfg);
    if ((st = parse_config(f, an, gpt2, cfg))) return st;
    cfg->arch = (*arch)->name;
    miser_tensor_info *tab = miser_calloc(MISER_MEM_OTHER, f->n_tensors ? f->n_tensors : 1, sizeof *tab);
    char *nb = miser_malloc(MISER_MEM_OTHER, blob ? blob : 1);
    if (!tab || !nb) {
        miser_free(tab);
        miser_free(nb);
        return MISER_ERR_NOMEM;
    }
    size_t n = 0, w = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const miser_gguf_tensor *t = &f->tensors[i];
        if (!rename_one(t->name, gpt2, nm, sizeof nm, &conv)) continue; /* unknown tensors are ignored */
        miser_tensor_info *o = &tab[n++];
        size_t len = strlen(nm);
        memcpy(nb + w, nm, len + 1);
        o->name = nb + w;
        w += len + 1;
        o->dtype = t->dtype;
        o->ndim = t->n_dims;
        o->data = miser_gguf_data(f, t);
        o->nbytes = t->nbytes;
        o->shard = 0;
        if (conv && t->n_dims == 2) { /* logical [K, N], stored N rows of K */
            o->shape[0] = t->ne[0];
            o->shape[1] = t->ne[1];
            o->stride[0] = 1;
            o->stride[1] = t->ne[0];
        } else { /* row-major, ggml's dims reversed */
            for (int d = 0; d < t->n_dims; d++) o->shape[d] = t->ne[t->n_dims - 1 - d];
            for (int64_t d = t->n_dims - 1, s = 1; d >= 0; s *= o->shape[d--]) o->stride[d] = s;
        }
    }
    qsort(tab, n, sizeof *tab, cmp_info);
    *tensors = tab;
    *n_tensors = n;
    *names = nb;
    return MISER_OK;
}

int miser_gguf_is_path(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    return n > 5 && !strcmp(path + n - 5, ".gguf");
}
