/* Synthetic Llama-family checkpoints (`miser synth --arch llama`): a
 * LlamaForCausalLM directory with Hugging Face's key names and PyTorch
 * Linear layouts, deterministic weights, written through the streaming
 * safetensors writer (st_writer.c) in name order, as safetensors' own
 * serializer orders them; config.json last, so a directory with a
 * config.json holds a complete checkpoint. Shapes by name: "tiny" for tests
 * and "smollm2-360m" (SmolLM2-360M's shape) for the benchmarks. */
#include "miser/safetensors.h"
#include "synth.h"

#include "miser/alloc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

miser_status miser_llama_preset(const char *shape, miser_config *out)
{
    static const struct { const char *name; int64_t L, C, H, KV, F, V, ctx; double theta; } P[] = {
        {"tiny", 2, 64, 4, 2, 160, 512, 256, 10000.0},
        {"smollm2-360m", 32, 960, 15, 5, 2560, 49152, 8192, 100000.0},
    };
    for (size_t i = 0; shape && i < sizeof P / sizeof P[0]; i++)
        if (!strcmp(shape, P[i].name)) {
            *out = (miser_config){.n_vocab = P[i].V, .n_ctx = P[i].ctx, .n_embd = P[i].C, .n_head = P[i].H,
                                  .n_layer = P[i].L, .n_inner = P[i].F, .eps = 1e-5f, .eos_token_id = 2,
                                  .arch = "llama", .n_kv_head = P[i].KV, .head_dim = P[i].C / P[i].H,
                                  .bos_token_id = 1, .norm = MISER_NORM_RMSNORM, .pos = MISER_POS_ROPE,
                                  .mlp = MISER_MLP_SWIGLU, .tied = 1};
            out->rope.theta = P[i].theta;
            out->rope.factor = 1.0;
            return MISER_OK;
        }
    return miser_error_set(MISER_ERR_INVALID, "unknown Llama shape '%s' (tiny, smollm2-360m)", shape ? shape : "");
}

static miser_status write_tensor(miser_st_writer *w, const miser_st_entry *e, const miser_config *c,
                                 const miser_synth_options *o, unsigned char *buf, uint64_t *done, uint64_t total)
{
    float mean = 0, sd = 0.02f;
    if (miser_synth_ends_with(e->name, "norm.weight")) mean = 1.0f, sd = 0.05f;
    else if (miser_synth_ends_with(e->name, "embed_tokens.weight")) sd = 0.5f;
    else if (miser_synth_ends_with(e->name, "o_proj.weight") || miser_synth_ends_with(e->name, "down_proj.weight"))
        sd = 0.02f / sqrtf(2.0f * (float)c->n_layer);
    return miser_synth_fill(w, e, mean, sd, o, buf, done, total);
}

static miser_status write_text_cb(void *f, void *text)
{
    fputs(text, f);
    return MISER_OK;
}

static miser_status write_config(const char *dir, const miser_config *c, const miser_synth_options *o)
{
    char *path = miser_malloc(MISER_MEM_SCRATCH, strlen(dir) + 13);
    if (!path) return MISER_ERR_NOMEM;
    sprintf(path, "%s/config.json", dir);
    char text[1536];
    snprintf(text, sizeof text,
             "{\n  \"model_type\": \"llama\",\n  \"architectures\": [\"LlamaForCausalLM\"],\n"
             "  \"hidden_size\": %lld,\n  \"intermediate_size\": %lld,\n  \"num_hidden_layers\": %lld,\n"
             "  \"num_attention_heads\": %lld,\n  \"num_key_value_heads\": %lld,\n  \"head_dim\": %lld,\n"
             "  \"vocab_size\": %lld,\n  \"max_position_embeddings\": %lld,\n  \"rms_norm_eps\": %.7g,\n"
             "  \"rope_theta\": %.17g,\n  \"rope_scaling\": null,\n  \"hidden_act\": \"silu\",\n"
             "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n  \"tie_word_embeddings\": %s,\n"
             "  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"torch_dtype\": \"%s\",\n"
             "  \"miser_synthetic\": \"seed=%llu\"\n}\n",
             (long long)c->n_embd, (long long)c->n_inner, (long long)c->n_layer, (long long)c->n_head,
             (long long)c->n_kv_head, (long long)c->head_dim, (long long)c->n_vocab, (long long)c->n_ctx,
             (double)c->eps, c->rope.theta, c->tied ? "true" : "false", (int)c->bos_token_id, (int)c->eos_token_id,
             o->dtype == MISER_DTYPE_F32 ? "float32" : o->dtype == MISER_DTYPE_F16 ? "float16" : "bfloat16",
             (unsigned long long)o->seed);
    miser_status st = miser_file_write_atomic(path, write_text_cb, text);
    miser_free(path);
    return st;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const miser_st_entry *)a)->name, ((const miser_st_entry *)b)->name);
}

miser_status miser_synth_llama(const char *dir, const miser_config *c, const miser_synth_options *o)
{
    if (!dir || !c || !o) return miser_error_set(MISER_ERR_INVALID, "miser_synth_llama: missing argument");
    if (c->n_embd < 1 || c->n_head < 1 || c->n_kv_head < 1 || c->head_dim < 2 || c->head_dim % 2 || c->n_layer < 1 ||
        c->n_vocab < 1 || c->n_ctx < 1 || c->n_inner < 1 || c->n_embd > (1 << 16) || c->n_head > (1 << 12) ||
        c->n_layer > (1 << 12) || c->n_vocab > (1 << 24) || c->n_ctx > (1 << 20) || c->n_inner > (1 << 20) ||
        c->n_head % c->n_kv_head || !(c->eps > 0) || !(c->eps < 1) || c->eos_token_id >= c->n_vocab ||
        c->bos_token_id >= c->n_vocab || !(c->rope.theta > 0))
        return miser_error_set(MISER_ERR_INVALID,
                               "%s: invalid Llama shape (layers %lld, hidden %lld, heads %lld, KV heads %lld, head_dim "
                               "%lld, vocab %lld, ctx %lld, inner %lld): sizes must be positive, head_dim even and "
                               "heads a multiple of KV heads",
                               dir, (long long)c->n_layer, (long long)c->n_embd, (long long)c->n_head,
                               (long long)c->n_kv_head, (long long)c->head_dim, (long long)c->n_vocab,
                               (long long)c->n_ctx, (long long)c->n_inner);
    if (o->dtype != MISER_DTYPE_F32 && o->dtype != MISER_DTYPE_F16 && o->dtype != MISER_DTYPE_BF16)
        return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: synthetic weights are f32, f16 or bf16, not %s", dir,
                               miser_dtype_name(o->dtype));
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return miser_error_set(MISER_ERR_IO, "%s: mkdir: %s", dir, strerror(errno));
    const int64_t C = c->n_embd, F = c->n_inner, QD = c->n_head * c->head_dim, KD = c->n_kv_head * c->head_dim;
    size_t n = 3 + 9 * (size_t)c->n_layer, k = 0;
    enum { NAME = 96 };
    miser_st_entry *e = miser_calloc(MISER_MEM_SCRATCH, n, sizeof *e);
    char *names = miser_malloc(MISER_MEM_SCRATCH, n * NAME);
    unsigned char *buf = miser_malloc(MISER_MEM_SCRATCH, MISER_SYNTH_CHUNK);
    char *path = miser_malloc(MISER_MEM_SCRATCH, strlen(dir) + 20);
    miser_st_writer *w = NULL;
    miser_status st = MISER_OK;
    if (!e || !names || !buf || !path) {
        st = MISER_ERR_NOMEM;
        goto done;
    }
#define ADD(nd, d0, d1, ...)                                                                                 \
    do {                                                                                                     \
        char *nm = names + NAME * k;                                                                         \
        snprintf(nm, NAME, __VA_ARGS__);                                                                     \
        e[k] = (miser_st_entry){.name = nm, .dtype = o->dtype, .ndim = nd, .shape = {d0, d1}};               \
        k++;                                                                                                 \
    } while (0)
    ADD(2, c->n_vocab, C, "model.embed_tokens.weight");
    for (int64_t l = 0; l < c->n_layer; l++) {
        long long L = (long long)l;
        ADD(1, C, 0, "model.layers.%lld.input_layernorm.weight", L);
        ADD(2, QD, C, "model.layers.%lld.self_attn.q_proj.weight", L);
        ADD(2, KD, C, "model.layers.%lld.self_attn.k_proj.weight", L);
        ADD(2, KD, C, "model.layers.%lld.self_attn.v_proj.weight", L);
        ADD(2, C, QD, "model.layers.%lld.self_attn.o_proj.weight", L);
        ADD(1, C, 0, "model.layers.%lld.post_attention_layernorm.weight", L);
        ADD(2, F, C, "model.layers.%lld.mlp.gate_proj.weight", L);
        ADD(2, F, C, "model.layers.%lld.mlp.up_proj.weight", L);
        ADD(2, C, F, "model.layers.%lld.mlp.down_proj.weight", L);
    }
    ADD(1, C, 0, "model.norm.weight");
    if (!c->tied) ADD(2, c->n_vocab, C, "lm_head.weight");
    else n--;
#undef ADD
    qsort(e, n, sizeof *e, cmp_entry);
    char seed[40];
    snprintf(seed, sizeof seed, "seed=%llu", (unsigned long long)o->seed);
    const char *meta[] = {"miser_synthetic", seed};
    sprintf(path, "%s/model.safetensors", dir);
    if ((st = miser_st_writer_open(path, e, n, meta, 1, &w))) goto done;
    uint64_t done_b = 0, total = 0;
    for (size_t i = 0; i < n; i++)
        total += miser_dtype_bytes(o->dtype, (uint64_t)e[i].shape[0] * (uint64_t)(e[i].ndim == 2 ? e[i].shape[1] : 1));
    for (size_t i = 0; i < n; i++)
        if ((st = write_tensor(w, &e[i], c, o, buf, &done_b, total))) goto done;
    st = miser_st_writer_close(w);
    w = NULL;
    if (!st) st = write_config(dir, c, o);
done:
    miser_st_writer_abort(w);
    miser_free(path);
    miser_free(buf);
    miser_free(names);
    miser_free(e);
    return st;
}
