/* Checkpoint loading: a Hugging Face directory (config.json +
 * model.safetensors or a sharded model.safetensors.index.json) of a
 * registered architecture (GPT-2, the Llama family), mmapped read-only and
 * validated before anything reads a weight. */
#ifndef MISER_MODEL_H
#define MISER_MODEL_H

#include "miser/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a family's builder implements, as the registry's config parsers
 * fill it in (src/model/registry.c). Zero is GPT-2's choice for each. */
typedef enum { MISER_NORM_LAYERNORM = 0, MISER_NORM_RMSNORM = 1 } miser_norm_kind;
typedef enum { MISER_POS_LEARNED = 0, MISER_POS_ROPE = 1 } miser_pos_kind;
typedef enum { MISER_MLP_GELU = 0, MISER_MLP_SWIGLU = 1 } miser_mlp_kind;
typedef enum { MISER_ROPE_DEFAULT = 0, MISER_ROPE_LINEAR = 1, MISER_ROPE_LLAMA3 = 2 } miser_rope_type;

/* Rotary embeddings (Hugging Face's rope_theta / rope_scaling): inverse
 * frequency i (of head_dim / 2) is theta^(-2i / head_dim), divided by
 * `factor` (linear), or by the llama3 rule: wavelengths longer than
 * original_ctx / low_freq_factor are divided by factor, shorter than
 * original_ctx / high_freq_factor kept, and those between interpolated. */
typedef struct miser_rope_config {
    double theta;            /* rope_theta (default 10000) */
    miser_rope_type type;
    double factor, low_freq_factor, high_freq_factor;
    int64_t original_ctx;    /* original_max_position_embeddings (llama3) */
    /* 1: rotate adjacent pairs (2i, 2i + 1) instead of the halves (i, i + D/2):
     * llama.cpp's rope "normal", for GGUF llama files whose q/k rows its
     * converter permuted (gguf_model.c); 0 (Hugging Face) otherwise */
    int pairs;
} miser_rope_config;

/* A checkpoint's architecture as the runtime needs it: the same struct for
 * every family (the first fields are GPT-2's names, kept for callers that
 * predate the registry; miser_gpt2_config is an alias). */
typedef struct miser_config {
    int64_t n_vocab;     /* vocab_size */
    int64_t n_ctx;       /* n_positions / max_position_embeddings */
    int64_t n_embd;      /* C: n_embd / hidden_size */
    int64_t n_head;      /* H: query heads */
    int64_t n_layer;
    int64_t n_inner;     /* MLP width; GPT-2: 4*C when config says null */
    float eps;           /* layer_norm_epsilon / rms_norm_eps (default 1e-5) */
    int32_t eos_token_id; /* -1 when absent (GPT-2: 50256 when the vocabulary has it) */
    /* set by every family's parser */
    const char *arch;    /* registry name: "gpt2", "llama" (static string) */
    int64_t n_kv_head;   /* KV heads (n_head unless grouped-query attention) */
    int64_t head_dim;    /* D (GPT-2: C / H; Llama: head_dim or C / H) */
    int32_t bos_token_id; /* -1 when absent */
    miser_norm_kind norm;
    miser_pos_kind pos;
    miser_mlp_kind mlp;
    int tied;            /* logits use the token embedding (no separate lm_head) */
    int qkv_bias;        /* the Q/K/V projections have biases */
    int o_bias;          /* the attention output projection has a bias (GPT-2: in c_proj) */
    miser_rope_config rope; /* pos == MISER_POS_ROPE */
    /* The KV cache's dtype when a session does not choose one (the
     * registry entry's kv_dtype: f32 for GPT-2, f16 for the Llama family,
     * llama.cpp's default); miser_session_options.kv_f16 overrides it. */
    miser_dtype kv_dtype;
} miser_config;
typedef miser_config miser_gpt2_config;

#define MISER_MAX_DIMS 6

/* One tensor of the checkpoint. `data` points into the read-only mapping and
 * lives as long as the model. `name` is canonical: without "transformer.".
 * `shape` is the logical shape and `stride` the element strides: element
 * (i0, i1, ..) is number sum(i_d * stride[d]) from `data` (for Q8_0, in the
 * 32-element blocks along the stored rows). Every tensor is row-major except
 * those a converted-weights cache lists in its "miser_transposed" metadata
 * (q8_0 Conv1D weights, see precision.h): stored [N][K], shown as their
 * logical [K][N] with strides {1, K}. Read `data` through the strides. */
typedef struct miser_tensor_info {
    const char *name;
    miser_dtype dtype;
    int32_t ndim;
    int64_t shape[MISER_MAX_DIMS];
    int64_t stride[MISER_MAX_DIMS];
    const void *data;
    uint64_t nbytes;
    int32_t shard; /* index of the file it came from */
} miser_tensor_info;

typedef struct miser_model miser_model;

/* Open and validate a checkpoint directory: config.json plus either
 * model.safetensors or model.safetensors.index.json (whose weight_map names
 * the shard files, each mapped once). config.json's "model_type" (else
 * "architectures"; neither: GPT-2) selects the architecture in the registry,
 * which parses the config and checks the tensors its builder needs. GPT-2
 * keys may carry the "transformer." prefix; the table uses canonical names.
 * A stored lm_head.weight shaped like wte is accepted (the builder uses wte);
 * buffers such as h.N.attn.bias and unknown tensors are ignored (listed in
 * the table when miser can represent their dtype, otherwise left out). Heap
 * use is the tensor table and names only: weights stay in the read-only
 * mappings.
 *
 * On error *out is NULL and the message names the file (and tensor or
 * config field) at fault:
 *   MISER_ERR_IO           a file is missing or unreadable (config.json,
 *                          weights, a shard named by the index)
 *   MISER_ERR_FORMAT       a file is malformed or lies (JSON, header length,
 *                          byte ranges, overlaps, duplicate tensors, a
 *                          "miser_transposed" entry that names a tensor the
 *                          file lacks, twice, or one that is not 2-D), a
 *                          required tensor is missing, or a tensor's
 *                          (logical) shape disagrees with config.json
 *   MISER_ERR_RANGE        a config value is outside what the architecture
 *                          allows (non-positive, absurdly large, n_embd % n_head)
 *   MISER_ERR_UNSUPPORTED  a model_type / architectures value that is not
 *                          registered, a config asking for something the
 *                          builder does not implement (named), a dtype miser
 *                          cannot read on a tensor it needs, an untied GPT-2
 *                          lm_head, more than MISER_MAX_DIMS dims
 *   MISER_ERR_NOMEM        an allocation failed (nothing leaks)
 * Free with miser_model_free (NULL is a no-op); every tensor's data pointer
 * and name die with the model. */
miser_status miser_model_open(const char *dir, miser_model **out);
void miser_model_free(miser_model *m);

const miser_config *miser_model_config(const miser_model *m);
/* Registry name of the checkpoint's architecture ("gpt2", "llama"). */
const char *miser_model_arch(const miser_model *m);
/* Names of every registered architecture and the model_type / architectures
 * values each accepts, for --help and error messages (static string). */
const char *miser_model_archs_known(void);
const char *miser_model_dir(const miser_model *m);
/* Canonical name, e.g. "h.0.attn.c_attn.weight"; NULL when absent. */
const miser_tensor_info *miser_model_tensor(const miser_model *m, const char *name);
size_t miser_model_tensor_count(const miser_model *m);
const miser_tensor_info *miser_model_tensor_at(const miser_model *m, size_t i);
/* Map every page of the weights now (reading the files into the page cache
 * if needed), so the first inference does not pay tens of thousands of page
 * faults. The pages stay file-backed (RssFile), shared and reclaimable. */
miser_status miser_model_prefault(const miser_model *m);
/* Total bytes mapped from the checkpoint's files. */
uint64_t miser_model_mapped_bytes(const miser_model *m);
/* Files the weights came from (1 for model.safetensors); paths owned by m. */
size_t miser_model_shard_count(const miser_model *m);
const char *miser_model_shard_path(const miser_model *m, size_t i);

#ifdef __cplusplus
}
#endif
#endif
