/* Checkpoint loading: a Hugging Face GPT-2 directory (config.json +
 * model.safetensors or a sharded model.safetensors.index.json), mmapped
 * read-only and validated before anything reads a weight. */
#ifndef MISER_MODEL_H
#define MISER_MODEL_H

#include "miser/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct miser_gpt2_config {
    int64_t n_vocab;     /* vocab_size */
    int64_t n_ctx;       /* n_positions */
    int64_t n_embd;      /* C */
    int64_t n_head;      /* H; head_dim = C / H */
    int64_t n_layer;
    int64_t n_inner;     /* MLP width; 4*C when config says null */
    float eps;           /* layer_norm_epsilon (default 1e-5) */
    int32_t eos_token_id; /* default 50256; -1 when absent and vocab_size <= 50256 */
} miser_gpt2_config;

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
 * the shard files, each mapped once). Keys may carry the "transformer."
 * prefix; the table uses canonical names. A stored lm_head.weight shaped like
 * wte is accepted (the builder uses wte); buffers such as h.N.attn.bias and
 * unknown tensors are ignored (listed in the table when miser can represent
 * their dtype, otherwise left out). Heap use is the tensor table and names
 * only: weights stay in the read-only mappings.
 *
 * On error *out is NULL and the message names the file (and tensor) at fault:
 *   MISER_ERR_IO           a file is missing or unreadable (config.json,
 *                          weights, a shard named by the index)
 *   MISER_ERR_FORMAT       a file is malformed or lies (JSON, header length,
 *                          byte ranges, overlaps, duplicate tensors, a
 *                          "miser_transposed" entry that names a tensor the
 *                          file lacks, twice, or one that is not 2-D), a
 *                          required tensor is missing, or a tensor's
 *                          (logical) shape disagrees with config.json
 *   MISER_ERR_RANGE        a config value is outside what GPT-2 allows
 *                          (non-positive, absurdly large, n_embd % n_head)
 *   MISER_ERR_UNSUPPORTED  a dtype miser cannot read on a tensor it needs, an
 *                          untied lm_head, more than MISER_MAX_DIMS dims
 *   MISER_ERR_NOMEM        an allocation failed (nothing leaks)
 * Free with miser_model_free (NULL is a no-op); every tensor's data pointer
 * and name die with the model. */
miser_status miser_model_open(const char *dir, miser_model **out);
void miser_model_free(miser_model *m);

const miser_gpt2_config *miser_model_config(const miser_model *m);
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
