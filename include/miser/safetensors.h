/* Writing safetensors files and synthetic GPT-2 checkpoints. The writer
 * streams: the header is computed from the tensor list up front, then data
 * is appended in order in chunks of any size, so no file is ever held whole
 * in memory. Output goes to a temporary name in the target's directory and is
 * renamed into place only when complete. (Reading is miser_model_open's job,
 * see model.h.) */
#ifndef MISER_SAFETENSORS_H
#define MISER_SAFETENSORS_H

#include "miser/core.h"
#include "miser/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One tensor to write. dtype: F32, F16, BF16, I32, or Q8_0 (miser's
 * extension for its converted-weights cache; last dimension a multiple of 32). */
typedef struct miser_st_entry {
    const char *name;
    miser_dtype dtype;
    int32_t ndim;
    int64_t shape[MISER_MAX_DIMS];
} miser_st_entry;

typedef struct miser_st_writer miser_st_writer;

/* Create `path`'s temporary sibling and write the header for `entries` (data
 * laid out contiguously in the given order; header padded to 8 bytes so every
 * tensor is aligned). meta_kv holds n_meta key/value string pairs
 * (meta_kv[2i], meta_kv[2i+1]) for "__metadata__"; may be NULL when n_meta is
 * 0. The caller's strings are not kept. Errors: MISER_ERR_INVALID (bad entry,
 * duplicate name), MISER_ERR_UNSUPPORTED (dtype), MISER_ERR_IO, MISER_ERR_NOMEM.
 * On success *out must be finished with miser_st_writer_close or _abort. */
miser_status miser_st_writer_open(const char *path, const miser_st_entry *entries, size_t n,
                                  const char *const *meta_kv, size_t n_meta, miser_st_writer **out);
/* Append nbytes of the data section (tensors in entry order, little-endian).
 * Writing past the declared total is MISER_ERR_INVALID. On any error the
 * writer stays open and must still be closed or aborted. */
miser_status miser_st_writer_write(miser_st_writer *w, const void *data, size_t nbytes);
/* Check every declared byte was written, then rename the temporary file to
 * the target (atomic for readers). Frees w whatever happens; on error the
 * temporary file is removed and the target is untouched. */
miser_status miser_st_writer_close(miser_st_writer *w);
/* Remove the temporary file and free w. NULL is a no-op. */
void miser_st_writer_abort(miser_st_writer *w);

/* GPT-2 shapes by name: "tiny" (2 layers, C=64, 4 heads, ctx 128), "small"
 * (124M), "medium" (355M), "large" (774M); all with the 50257-token
 * vocabulary. MISER_ERR_INVALID for an unknown name. */
miser_status miser_gpt2_preset(const char *shape, miser_gpt2_config *out);

typedef void (*miser_progress_fn)(void *user, uint64_t done_bytes, uint64_t total_bytes);

typedef struct miser_synth_options {
    miser_dtype dtype;           /* F32, F16 or BF16 for every tensor */
    uint64_t seed;               /* same seed and config: byte-identical files */
    miser_progress_fn progress;  /* optional; called after each chunk */
    void *progress_user;
} miser_synth_options;

/* Write a synthetic GPT-2 checkpoint into `dir` (created if missing; its
 * parent must exist): model.safetensors with keys without "transformer."
 * and "__metadata__": {"miser_synthetic": "seed=S"}, then config.json. Each
 * file is written under a temporary name and renamed; config.json goes last,
 * so a directory with a config.json holds a complete checkpoint. Weights are
 * deterministic in (seed, tensor name): N(0, 0.02)-like matrices (c_proj
 * scaled by 1/sqrt(2 n_layer), wpe 0.01), LayerNorm weights near 1, small
 * biases; the values do not depend on dtype beyond its rounding. Memory:
 * one 1 MiB scratch buffer. Errors: MISER_ERR_INVALID (config: non-positive
 * sizes, n_embd % n_head, eos outside the vocabulary), MISER_ERR_UNSUPPORTED
 * (dtype), MISER_ERR_IO, MISER_ERR_NOMEM. */
miser_status miser_synth_gpt2(const char *dir, const miser_gpt2_config *cfg, const miser_synth_options *opt);

/* Llama shapes by name (src/model/llama_synth.c): "tiny" (2 layers, hidden
 * 64, 4 heads, 2 KV heads, MLP 160, vocab 512, ctx 256) and "smollm2-360m"
 * (32 layers, hidden 960, 15 heads, 5 KV heads, MLP 2560, vocab 49152, ctx
 * 8192, rope_theta 100000); tied embeddings. MISER_ERR_INVALID otherwise. */
miser_status miser_llama_preset(const char *shape, miser_config *out);
/* Write a synthetic LlamaForCausalLM checkpoint into `dir` as
 * miser_synth_gpt2 does (temporary names, config.json last, deterministic in
 * seed and tensor name): Hugging Face key names ("model.layers.N.self_attn.
 * q_proj.weight", ...), PyTorch Linear layouts [out, in], tensors in name
 * order; lm_head.weight only when cfg->tied is 0. Uses n_embd, n_head,
 * n_kv_head, head_dim, n_layer, n_inner, n_vocab, n_ctx, eps, rope.theta,
 * tied, bos/eos. Errors as miser_synth_gpt2's. */
miser_status miser_synth_llama(const char *dir, const miser_config *cfg, const miser_synth_options *opt);

#ifdef __cplusplus
}
#endif
#endif
