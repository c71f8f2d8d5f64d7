/* The slots engine (--engine slots; the default is engine_batch.c's
 * batched engine): N slots, each its own miser_session (its own KV
 * cache of `capacity` positions, arena and thread pool), all over one plan
 * and so one copy of the weights. A step evaluates its items one after the
 * other, so it reads the weights once per sequence: correct and isolated
 * (a sequence's numbers are exactly those of `miser generate`, since each
 * item is the same session call generate makes), but not yet the one pass
 * over the weights for all rows that the batched engine gives. The scheduler
 * only sees miser_serve_engine. */
#include "serve/serve.h"
#include "miser/alloc.h"

#include <string.h>

typedef struct slots_impl {
    int n;
    miser_session **sess;
} slots_impl;

static void slots_reset(miser_serve_engine *e, int seq)
{
    slots_impl *s = e->impl;
    miser_session_reset(s->sess[seq]);
}

static miser_status slots_step(miser_serve_engine *e, miser_serve_item *items, int n)
{
    slots_impl *s = e->impl;
    for (int i = 0; i < n; i++) {
        miser_serve_item *it = &items[i];
        it->logits = NULL;
        if (it->seq < 0 || it->seq >= s->n || it->n < 1) {
            it->status = miser_error_set(MISER_ERR_INTERNAL, "engine: bad item (seq %d, %lld tokens)", it->seq,
                                         (long long)it->n);
            continue;
        }
        it->status = miser_session_eval(s->sess[it->seq], it->ids, it->n, &it->logits);
    }
    return MISER_OK;
}

static int64_t slots_used(const miser_serve_engine *e, int seq)
{
    const slots_impl *s = e->impl;
    return miser_session_position(s->sess[seq]);
}

static void slots_destroy(miser_serve_engine *e)
{
    slots_impl *s = e->impl;
    if (s) {
        for (int i = 0; i < s->n; i++) miser_session_free(s->sess[i]);
        miser_free(s->sess);
        miser_free(s);
    }
    miser_free(e);
}

miser_status miser_serve_engine_slots(const miser_plan *plan, int n_slots, int64_t capacity, int threads, int kv_f16,
                                      miser_serve_engine **out)
{
    *out = NULL;
    if (n_slots < 1) return miser_error_set(MISER_ERR_INVALID, "engine: at least one slot is needed");
    miser_serve_engine *e = miser_calloc(MISER_MEM_OTHER, 1, sizeof *e);
    slots_impl *s = miser_calloc(MISER_MEM_OTHER, 1, sizeof *s);
    miser_session **sess = miser_calloc(MISER_MEM_OTHER, (size_t)n_slots, sizeof *sess);
    if (!e || !s || !sess) {
        miser_free(e);
        miser_free(s);
        miser_free(sess);
        return MISER_ERR_NOMEM;
    }
    s->sess = sess;
    e->impl = s;
    e->name = "slots";
    e->seq_reset = slots_reset;
    e->step = slots_step;
    e->seq_used = slots_used;
    e->destroy = slots_destroy;
    miser_session_options so = {.capacity = capacity, .threads = threads, .kv_f16 = kv_f16};
    for (int i = 0; i < n_slots; i++) {
        miser_status st = miser_session_create(plan, &so, &sess[i]);
        if (st) {
            s->n = i;
            slots_destroy(e);
            return miser_error_prefix(st, "slot %d", i);
        }
        s->n = i + 1;
    }
    e->n_seqs = n_slots;
    e->seq_capacity = miser_session_capacity(sess[0]);
    e->chunk = MISER_SERVE_MAX_BATCH;
    *out = e;
    return MISER_OK;
}

void miser_serve_engine_free(miser_serve_engine *e)
{
    if (e) e->destroy(e);
}
