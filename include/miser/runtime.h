/* Compiling a model into a plan and running it: sessions with a KV cache,
 * prompt prefill and one-token decode steps through the same plan, and text
 * generation with greedy or sampled decoding. */
#ifndef MISER_RUNTIME_H
#define MISER_RUNTIME_H

#include "miser/graph.h"
#include "miser/model.h"
#include "miser/passes.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct miser_compile_options {
    const char *pipeline;      /* "default" (NULL), "naive", "none" */
    const char *disable;       /* comma-separated pass names to skip, or NULL */
    int64_t max_batch;         /* most tokens per step; longer prompts are chunked (0: 64) */
    int64_t max_context;       /* longest sequence (0: the model's n_ctx) */
    int all_logits;            /* compute logits of every position (tests) */
    miser_pass_record *records;/* optional per-pass figures */
    int max_records;
    int *n_records;
} miser_compile_options;

typedef struct miser_plan miser_plan;

/* Build the graph of `m`'s architecture and run the pass pipeline. The model must
 * outlive the plan. */
miser_status miser_plan_compile(const miser_model *m, const miser_compile_options *o, miser_plan **out);
void miser_plan_free(miser_plan *p);
const miser_graph *miser_plan_graph(const miser_plan *p);
double miser_plan_compile_seconds(const miser_plan *p);

typedef struct miser_session_options {
    int64_t capacity;   /* KV cache positions (0: the plan's max_context) */
    int threads;        /* 0: 1 */
    /* KV cache dtype: > 0 f16, < 0 f32, 0 the model's default
     * (miser_config.kv_dtype: f16 for the Llama family, f32 for GPT-2) */
    int kv_f16;
} miser_session_options;

typedef struct miser_session miser_session;

/* A sequence's state: KV cache (MISER_MEM_KV), the activation arena
 * (MISER_MEM_ACTIVATIONS, reserved once) and a thread pool. */
miser_status miser_session_create(const miser_plan *p, const miser_session_options *o, miser_session **out);
void miser_session_free(miser_session *s);
/* Bytes a session with options `o` allocates, by kind (computed, nothing
 * allocated): the memory-budget predictor (budget.h) and the session share
 * this one computation. */
typedef struct miser_session_footprint {
    int64_t capacity;        /* KV positions */
    int threads;
    uint64_t kv_bytes;       /* MISER_MEM_KV: 2 x layers x capacity x KV heads x head_dim */
    uint64_t arena_bytes;    /* MISER_MEM_ACTIVATIONS: the planned arena */
    uint64_t scratch_bytes;  /* MISER_MEM_SCRATCH: attention rows per thread + decode partial sums */
    uint64_t other_bytes;    /* ids, positions, views, rope tables, per-layer cache pointers */
} miser_session_footprint;
void miser_session_footprint_get(const miser_plan *p, const miser_session_options *o, miser_session_footprint *out);
/* Forget the sequence (positions restart at 0); keeps every buffer. */
void miser_session_reset(miser_session *s);
int64_t miser_session_position(const miser_session *s);
int64_t miser_session_capacity(const miser_session *s);

/* Feed n tokens (any n >= 1; chunked by max_batch). On success *logits
 * points at the last position's n_vocab logits (or, with all_logits, the
 * last chunk's T x n_vocab), valid until the next call. Fails with
 * MISER_ERR_RANGE when the cache would overflow or a token id is invalid. */
miser_status miser_session_eval(miser_session *s, const int32_t *ids, int64_t n, const float **logits);

typedef struct miser_generate_options {
    int64_t max_new_tokens;  /* 0: no limit beyond max_length / capacity */
    int64_t max_length;      /* total length incl. prompt, as Keras' max_length (0: none) */
    float temperature;       /* 0: greedy */
    int top_k;               /* 0: off */
    float top_p;             /* 1 or 0: off */
    uint64_t seed;
    int stop_at_eos;         /* stop after emitting eos_token (default on) */
    int32_t eos_token;
} miser_generate_options;

typedef struct miser_generate_result {
    int32_t *ids;            /* generated ids (miser_free) */
    int64_t n;
    double prefill_s;        /* prompt eval to first token */
    double decode_s;         /* after the first token */
    const char *stop_reason; /* "eos", "max_new_tokens", "max_length", "capacity", "callback" */
} miser_generate_result;

/* Called for each generated token; return non-zero to stop. */
typedef int (*miser_token_fn)(void *user, int32_t token);

/* Generate after `prompt` from the session's current state. */
miser_status miser_generate(miser_session *s, const int32_t *prompt, int64_t n_prompt, const miser_generate_options *o,
                            miser_token_fn cb, void *user, miser_generate_result *res);

/* Pick the next token from logits (exposed for tests). rng: state updated. */
int32_t miser_sample_token(const float *logits, int64_t n, const miser_generate_options *o, uint64_t *rng, float *scratch,
                     int32_t *idx_scratch);

#ifdef __cplusplus
}
#endif
#endif
