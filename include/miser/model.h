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
    float eps;           /* layer_norm_epsilon */
    int32_t eos_token_id;
} miser_gpt2_config;

#define MISER_MAX_DIMS 6

/* One tensor of the checkpoint. `data` points into the read-only mapping and
 * lives as long as the model. `name` is canonical: without "transformer.". */
typedef struct miser_tensor_info {
    const char *name;
    miser_dtype dtype;
    int32_t ndim;
    int64_t shape[MISER_MAX_DIMS];
    const void *data;
    uint64_t nbytes;
    int32_t shard; /* index of the file it came from */
} miser_tensor_info;

typedef struct miser_model miser_model;

/* Open and validate a checkpoint directory. On error *out is NULL and the
 * message names the file (and tensor) at fault. Free with miser_model_free. */
miser_status miser_model_open(const char *dir, miser_model **out);
void miser_model_free(miser_model *m);

const miser_gpt2_config *miser_model_config(const miser_model *m);
const char *miser_model_dir(const miser_model *m);
/* Canonical name, e.g. "h.0.attn.c_attn.weight"; NULL when absent. */
const miser_tensor_info *miser_model_tensor(const miser_model *m, const char *name);
size_t miser_model_tensor_count(const miser_model *m);
const miser_tensor_info *miser_model_tensor_at(const miser_model *m, size_t i);
/* Total bytes mapped from the checkpoint's files. */
uint64_t miser_model_mapped_bytes(const miser_model *m);

#ifdef __cplusplus
}
#endif
#endif
