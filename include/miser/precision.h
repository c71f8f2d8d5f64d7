/* Precision hint (as OpenVINO's INFERENCE_PRECISION_HINT): run a checkpoint
 * with its matrices in f32, f16, bf16, q8_0, q4_0 or q4_k. The conversion is made once,
 * tensor by tensor in bounded chunks (peak heap: one chunk, not the model),
 * into a cache directory holding config.json and a model.safetensors that
 * the normal loader mmaps; later runs reuse it while it matches its source.
 *
 * Rules:
 *  - never widen: a tensor stored narrower than asked (bf16 with f32) keeps
 *    its dtype, and f16 <-> bf16 is not converted either (lossy both ways);
 *    the note says so;
 *  - 2-D tensors (the matrices, wte, wpe) take the requested dtype; 1-D
 *    tensors (biases, LayerNorm) follow it for f16/bf16 and stay as stored
 *    for q8_0 (as llama.cpp keeps norms in f32);
 *  - q8_0 quantises blocks of 32 along the stored contiguous (last)
 *    dimension, ggml's Q8_0 (scale = max|x| / 127 as f16, int8 values); a
 *    tensor whose last dimension is not a multiple of 32 becomes f16;
 *  - q8_0 stores GPT-2's Conv1D weights (h.N.attn.c_attn, attn.c_proj,
 *    mlp.c_fc, mlp.c_proj: logical [K, N] = [in, out]) transposed, as
 *    [N][K] with the blocks along K, when K % 32 == 0 (llama.cpp's layout:
 *    an int8 kernel sums a whole block in integers and scales once per
 *    block); the header's "miser_transposed" metadata names them and the
 *    loader shows them as [K, N] with strides {1, K} (model.h). A source
 *    tensor already stored transposed keeps its layout; a source already in
 *    q8_0 is copied, never quantised twice;
 *  - q4_0 / q4_k (llama.cpp's Q4_0 and Q4_K blocks, its reference
 *    quantizers, src/model/quantize_q4.c): the weight matrices (GPT-2's
 *    Conv1D weights, stored transposed as for q8_0, and Llama's Linear
 *    [out, in]) take the type along K; q4_k falls back to q4_0 where K is
 *    not a multiple of 256 (llama.cpp falls back to Q5_0, which miser does
 *    not run), and either to f16 where K is not a multiple of 32. The
 *    token and position embeddings and the head (wte, wpe,
 *    model.embed_tokens, lm_head) stay wider, in Q6_K (as llama.cpp's
 *    Q4_0 / Q4_K_M files keep the output tensor), or q8_0 where their row
 *    is not a multiple of 256; norms and biases stay as stored;
 *  - a source tensor already block-quantised (q8_0, q4_0, q4_k, q6_k) is
 *    copied as stored, never quantised twice;
 *  - the cache file records its source's total size, newest mtime and a
 *    content hash (FNV-1a over the first and last MiB and 64 spread 4 KiB
 *    samples of each weight file, plus config.json whole) and its format
 *    ("miser_cache_format" "2": Conv1D q8_0 transposed); a mismatch rebuilds
 *    it (the note says so);
 *  - the file is written to a temporary name and renamed into place when
 *    complete, so an interrupted conversion never leaves a file under the
 *    final name (stale temporaries are removed by the next conversion).
 * Cache location: opts->cache_dir, else $MISER_CACHE_DIR, else
 * $HOME/.cache/miser; entries go to <base>/converted/<name>-<hash>-<dtype>/. */
#ifndef MISER_PRECISION_H
#define MISER_PRECISION_H

#include "miser/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct miser_precision_options {
    const char *cache_dir; /* NULL: $MISER_CACHE_DIR, else $HOME/.cache/miser */
    /* Called after each written chunk; returning non-zero cancels the
     * conversion (MISER_ERR_INVALID, nothing left under the final name). */
    int (*progress)(void *user, uint64_t done_bytes, uint64_t total_bytes);
    void *user;
} miser_precision_options;

/* Make `model_dir` available at `precision` (F32, F16, BF16, Q8_0, Q4_0 or Q4_K).
 * *out_dir (miser_free) receives the directory to open with
 * miser_model_open: model_dir itself when nothing needs converting, else the
 * cache entry (converted now or reused). `note` (may be NULL) receives a
 * one-line remark for the user, or "" (e.g. "weights stored as bf16 are kept:
 * --precision never widens", "cache ... was stale: rebuilt"); *converted (may
 * be NULL) is 1 when a conversion ran.
 * Errors: MISER_ERR_INVALID (precision, cancelled), MISER_ERR_IO (cache dir
 * not writable, source unreadable), the loader's errors for a bad source,
 * MISER_ERR_NOMEM. On error *out_dir is NULL and no partial cache file is
 * left under its final name (a complete one is when only the last step, the
 * copy of *out_dir, fails). */
miser_status miser_precision_prepare(const char *model_dir, miser_dtype precision, const miser_precision_options *opts,
                                     char **out_dir, char *note, size_t note_cap, int *converted);

/* The dtype one tensor gets: `stored` is its dtype, `ndim`/`last_dim` its
 * rank and contiguous extent. Exposed for tests and reports. */
miser_dtype miser_precision_target(miser_dtype stored, int ndim, int64_t last_dim, miser_dtype precision);
/* The same for the tensor `name` (canonical): for q4_0 / q4_k the
 * embeddings and the head get Q6_K (q8_0 where last_dim % 256 != 0). */
miser_dtype miser_precision_tensor_target(const char *name, miser_dtype stored, int ndim, int64_t last_dim,
                                          miser_dtype precision);

/* Quantise n values (n % 32 == 0) to Q8_0 blocks at dst (n / 32 * 34 bytes). */
void miser_quantize_q8_0(const float *src, int64_t n, void *dst);
/* llama.cpp's reference quantizers (quantize_row_q4_0_ref, _q4_K_ref,
 * _q6_K_ref): n values, a multiple of the block (32 for Q4_0, 256 for the
 * K types), into n / block blocks of 18, 144 or 210 bytes at dst. */
void miser_quantize_q4_0(const float *src, int64_t n, void *dst);
void miser_quantize_q4_k(const float *src, int64_t n, void *dst);
void miser_quantize_q6_k(const float *src, int64_t n, void *dst);
/* One of the four above by dtype (Q8_0, Q4_0, Q4_K, Q6_K); others: nothing. */
void miser_quantize_blocks(miser_dtype dt, const float *src, int64_t n, void *dst);

#ifdef __cplusplus
}
#endif
#endif
