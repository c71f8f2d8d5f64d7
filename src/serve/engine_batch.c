/* The batched serve engine: every step is one miser_batch_step over all the
 * scheduler's items, so the weights are read once per step for every
 * sequence (linears over all rows at once, attention per sequence over its
 * own blocks of the paged KV pool). Admission promises a request the blocks
 * it can need (prompt + max_new, capped at the context), so an accepted
 * request never fails mid-stream for lack of KV memory; what cannot be
 * promised waits in the scheduler's queue. Only the scheduler thread calls
 * it (kv_blocks included). */
#include "miser/alloc.h"
#include "miser/batch.h"
#include "serve/serve.h"

typedef struct batch_impl {
    miser_batch *b;
    miser_batch_item *bi; /* [n_seqs] */
    int64_t *promise;     /* [n_seqs] positions admit promised */
} batch_impl;

static void eb_reset(miser_serve_engine *e, int seq)
{
    batch_impl *s = e->impl;
    if (!miser_batch_seq_position(s->b, seq)) return; /* fresh: keep what admit promised */
    miser_batch_seq_release(s->b, seq);
    if (s->promise[seq]) miser_batch_seq_reserve(s->b, seq, s->promise[seq]);
}

static miser_status eb_step(miser_serve_engine *e, miser_serve_item *items, int n)
{
    batch_impl *s = e->impl;
    if (n > e->n_seqs) return miser_error_set(MISER_ERR_INTERNAL, "engine: %d items for %d sequences", n, e->n_seqs);
    for (int i = 0; i < n; i++)
        s->bi[i] = (miser_batch_item){.seq = items[i].seq, .ids = items[i].ids, .n = items[i].n,
                                      .want_logits = !items[i].no_logits};
    miser_status st = miser_batch_step(s->b, s->bi, n);
    for (int i = 0; i < n; i++) {
        items[i].logits = s->bi[i].logits;
        items[i].status = st && !s->bi[i].status ? st : s->bi[i].status;
    }
    return MISER_OK;
}

static int64_t eb_used(const miser_serve_engine *e, int seq)
{
    const batch_impl *s = e->impl;
    return miser_batch_seq_position(s->b, seq);
}

static int eb_admit(miser_serve_engine *e, int seq, int64_t n_prompt, int64_t max_new)
{
    batch_impl *s = e->impl;
    /* the last sampled token is never fed back: n_prompt + max_new - 1 positions */
    int64_t need = n_prompt + (max_new > 0 ? max_new - 1 : 0);
    if (need > e->seq_capacity) need = e->seq_capacity;
    if (need < 1) need = 1;
    if (miser_batch_seq_reserve(s->b, seq, need)) return 0;
    s->promise[seq] = need;
    return 1;
}

static void eb_release(miser_serve_engine *e, int seq)
{
    batch_impl *s = e->impl;
    miser_batch_seq_release(s->b, seq);
    s->promise[seq] = 0;
}

static void eb_blocks(const miser_serve_engine *e, int64_t *used, int64_t *total)
{
    const batch_impl *s = e->impl;
    miser_kv_pool *p = miser_batch_pool(s->b);
    *used = miser_kv_pool_blocks_used(p);
    *total = miser_kv_pool_blocks_total(p);
}

static void eb_destroy(miser_serve_engine *e)
{
    batch_impl *s = e->impl;
    if (s) {
        miser_batch_free(s->b);
        miser_free(s->bi);
        miser_free(s->promise);
        miser_free(s);
    }
    miser_free(e);
}

miser_status miser_serve_engine_batch(const miser_plan *plan, int n_seqs, int64_t capacity, int threads, int kv_f16,
                                      int64_t n_blocks, int64_t step_rows, miser_serve_engine **out)
{
    *out = NULL;
    if (n_seqs < 1) return miser_error_set(MISER_ERR_INVALID, "engine: at least one sequence is needed");
    miser_serve_engine *e = miser_calloc(MISER_MEM_OTHER, 1, sizeof *e);
    batch_impl *s = miser_calloc(MISER_MEM_OTHER, 1, sizeof *s);
    if (!e || !s) {
        miser_free(e);
        miser_free(s);
        return MISER_ERR_NOMEM;
    }
    e->impl = s;
    e->name = "batch";
    e->seq_reset = eb_reset;
    e->step = eb_step;
    e->seq_used = eb_used;
    e->admit = eb_admit;
    e->seq_release = eb_release;
    e->kv_blocks = eb_blocks;
    e->destroy = eb_destroy;
    s->bi = miser_calloc(MISER_MEM_OTHER, (size_t)n_seqs, sizeof *s->bi);
    s->promise = miser_calloc(MISER_MEM_OTHER, (size_t)n_seqs, sizeof *s->promise);
    if (!s->bi || !s->promise) {
        eb_destroy(e);
        return MISER_ERR_NOMEM;
    }
    miser_batch_options bo = {.n_seqs = n_seqs, .capacity = capacity, .n_blocks = n_blocks, .threads = threads,
                              .kv_f16 = kv_f16};
    miser_status st = miser_batch_create(plan, &bo, &s->b);
    if (st) {
        eb_destroy(e);
        return st;
    }
    e->n_seqs = n_seqs;
    e->seq_capacity = miser_batch_capacity(s->b);
    e->chunk = MISER_SERVE_MAX_BATCH;
    /* the plan's rows per pass (its max_batch): every decoding sequence plus prefill chunks */
    e->step_rows = step_rows;
    *out = e;
    return MISER_OK;
}
