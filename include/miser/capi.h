/* A flat C API for language bindings (the Python package in python/miser
 * calls it through ctypes, in ABI mode): plain integer, double and pointer
 * arguments only, no structs whose layout a binding would have to mirror,
 * so a field added to runtime.h's option structs does not silently shift
 * what a binding passes. Every function here is a thin composition of the
 * public API (model.h, precision.h, tokenizer.h, runtime.h, profiler.h): the
 * same code paths the CLI takes, not a second implementation.
 *
 * Errors follow the house rule: a miser_status, with the calling thread's
 * one-line message in miser_error_message(). Freeing NULL is a no-op. */
#ifndef MISER_CAPI_H
#define MISER_CAPI_H

#include <stddef.h>
#include <stdint.h>

#include "miser/core.h"
#include "miser/profiler.h"
#include "miser/runtime.h"
#include "miser/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a function below changes its signature or meaning; a
 * binding refuses a library whose version it was not written for. */
#define MISER_CAPI_VERSION 2 /* 2: miser_llm_session_footprint */
int miser_capi_version(void);
/* MISER_VERSION_STRING of the library actually loaded (static). */
const char *miser_capi_library_version(void);
/* Worker threads `miser generate` uses by default: the CPUs this process
 * may run on (sched_getaffinity), at most 64. */
int miser_capi_default_threads(void);

/* ---- a runnable model: checkpoint + tokenizer + compiled plan ---- */

typedef struct miser_llm miser_llm;

/* Open a checkpoint directory the way `miser generate` does: when
 * `precision` is non-NULL ("f32", "f16", "bf16", "q8_0") the weights are
 * made available at that precision through the conversion cache
 * (miser_precision_prepare), then the model is mapped (miser_model_open) and
 * prefaulted, the tokenizer read from `path` (or the built-in GPT-2
 * vocabulary), and the graph compiled with the default pipeline.
 * threads <= 0: miser_capi_default_threads(). max_context <= 0: the model's
 * n_ctx; larger than n_ctx is MISER_ERR_RANGE. *out is owned by the caller
 * (miser_llm_free) and must outlive every session made from it.
 * Errors: INVALID (NULL path/out, unknown precision), RANGE, and those of
 * miser_precision_prepare, miser_model_open, miser_tokenizer_open and
 * miser_plan_compile (IO/FORMAT/UNSUPPORTED name the file); NOMEM. On error
 * *out is NULL and nothing leaks. */
miser_status miser_llm_open(const char *path, const char *precision, int threads, int64_t max_context,
                            miser_llm **out);
void miser_llm_free(miser_llm *m);

/* Borrowed handles, valid while m lives. */
const miser_model *miser_llm_model(const miser_llm *m);
const miser_tokenizer *miser_llm_tokenizer(const miser_llm *m);
const miser_plan *miser_llm_plan(const miser_llm *m);
/* The directory the weights were mapped from (the checkpoint, or the
 * precision cache entry) and the conversion's one-line note ("" if none). */
const char *miser_llm_weights_dir(const miser_llm *m);
const char *miser_llm_note(const miser_llm *m);
int miser_llm_threads(const miser_llm *m);
int64_t miser_llm_max_context(const miser_llm *m);
int64_t miser_llm_n_vocab(const miser_llm *m);
int32_t miser_llm_eos(const miser_llm *m); /* -1 when the model has none */
double miser_llm_load_seconds(const miser_llm *m);    /* prepare + map + prefault + tokenizer */
double miser_llm_compile_seconds(const miser_llm *m);

/* A fresh session (KV cache, arena, thread pool of miser_llm_threads) over
 * m's plan. capacity <= 0: miser_llm_max_context(m); larger is RANGE.
 * kv_f16: > 0 an f16 cache, < 0 f32, 0 the architecture's default (f16 for
 * the Llama family, f32 for GPT-2). Free with miser_session_free before m.
 * A session is used by one thread at a time; two sessions of one model may
 * run at the same time on two threads (the model, tokenizer and plan are
 * read-only after open). Errors: INVALID, RANGE, NOMEM, INTERNAL. */
miser_status miser_llm_session(const miser_llm *m, int64_t capacity, int kv_f16, miser_session **out);
/* What a session of m made with the same (capacity, kv_f16) allocates,
 * computed without allocating (miser_session_footprint_get, the computation
 * miser_session_create itself sizes its buffers with): bytes of KV cache
 * (2 x layers x capacity x KV heads x head_dim x the element size), of the
 * activation arena, of scratch and of the rest, and the KV cache's dtype
 * ("f16" or "f32", static) after kv_f16's rule above. Every out pointer may
 * be NULL. Errors: INVALID (NULL m), RANGE (capacity past the context, as
 * miser_llm_session). */
miser_status miser_llm_session_footprint(const miser_llm *m, int64_t capacity, int kv_f16, uint64_t *kv_bytes,
                                         uint64_t *arena_bytes, uint64_t *scratch_bytes, uint64_t *other_bytes,
                                         const char **kv_dtype);

/* miser_generate with its options as plain arguments (runtime.h documents
 * each: max_new_tokens 0 = no limit but max_length/capacity, max_length 0 =
 * none, temperature 0 = greedy, top_k 0 = off, top_p 0 or 1 = off).
 * eos_token < 0 disables stopping at eos. `cb` (may be NULL) is called for
 * each generated token from the calling thread; non-zero stops generation
 * ("callback"). `cancel` (may be NULL) is read after each token: non-zero
 * stops generation the same way, so another thread (a binding's Ctrl-C
 * handler) can stop it between tokens without a callback into the binding;
 * the prompt's prefill is not interrupted. On success *ids (miser_free)
 * holds *n_ids tokens; *stop_reason is static. Errors: INVALID (NULL
 * arguments, options out of range) and miser_generate's (INVALID empty
 * prompt, RANGE prompt past the session's capacity or a bad id, NOMEM); on
 * error *ids is NULL. */
miser_status miser_llm_generate(miser_session *s, const int32_t *prompt, int64_t n_prompt, int64_t max_new_tokens,
                                int64_t max_length, double temperature, int top_k, double top_p, uint64_t seed,
                                int32_t eos_token, miser_token_fn cb, void *user, const volatile int *cancel,
                                int32_t **ids, int64_t *n_ids, double *prefill_s, double *decode_s,
                                const char **stop_reason);

/* ---- profiler ---- */

/* miser_profiler_start with its options as arguments (profiler.h). */
miser_status miser_capi_profiler_start(double sample_interval_ms, int pss, int gpu, int no_hwm_reset,
                                       miser_profiler **out);

/* Render a profile in memory: format is any name miser_report_format_parse
 * takes ("table", "json", "csv", "md", "svg", ...) or "html" (a standalone
 * page: the stage table and the SVG timeline inline) while the profiler has
 * no HTML writer of its own. *out (miser_free) is
 * NUL-terminated, *len excludes the NUL. Errors: INVALID (unknown format),
 * IO, NOMEM. */
miser_status miser_capi_profile_render(const miser_profile *p, const char *format, char **out, size_t *len);
/* Write the same to `path` atomically (miser_file_write_atomic). Errors:
 * INVALID, IO (naming the path), NOMEM. */
miser_status miser_capi_profile_save(const miser_profile *p, const char *format, const char *path);

#ifdef __cplusplus
}
#endif
#endif
