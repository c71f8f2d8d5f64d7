/* The scheduler: one thread owns the engine and runs steps. Between steps,
 * finished, cancelled and timed-out sequences leave and queued requests join
 * free slots (first come, first served; an engine with a paged pool admits
 * the head only when it can promise the request's blocks, else it waits). A
 * step gives every decoding sequence its last sampled token, then prefill
 * chunks (at most MISER_SERVE_MAX_BATCH tokens each, so a long prompt does not
 * stall the other streams for its whole length) while the engine's step_rows
 * allow; then each sequence that finished its prompt
 * samples one token (miser_sample_token, the sampler `miser generate` uses,
 * with the request's own splitmix64 state).
 *
 * Text: a token's bytes are appended to the job's text; stop strings are
 * searched in the bytes (never across the prompt); what may be sent (safe)
 * stops short of a suffix that could still become a stop string and of a
 * UTF-8 sequence that is not complete yet, so a stream never has to take
 * text back and every chunk is valid UTF-8. */
#include "serve/internal.h"
#include "miser/alloc.h"

#include <stdio.h>
#include <string.h>

static void job_free(miser_job *j)
{
    if (!j) return;
    miser_free(j->prompt);
    for (int i = 0; i < j->n_stop; i++) miser_free(j->stop[i]);
    miser_sb_free(&j->text);
    pthread_cond_destroy(&j->cv);
    miser_free(j);
}

/* mu held */
static void job_unref(miser_job *j)
{
    if (--j->refs == 0) job_free(j);
}

miser_job *miser_job_new(miser_server *s, const int32_t *ids, int64_t n, const miser_serve_request *r,
                         const char *extra_stop)
{
    miser_job *j = miser_calloc(MISER_MEM_OTHER, 1, sizeof *j);
    if (!j) return NULL;
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    j->slot = -1;
    j->prompt = miser_malloc(MISER_MEM_OTHER, sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (!j->prompt) goto fail;
    memcpy(j->prompt, ids, sizeof(int32_t) * (size_t)n);
    j->n_prompt = n;
    for (int i = 0; i < r->n_stop; i++) {
        if (!(j->stop[j->n_stop] = miser_strndup(MISER_MEM_OTHER, r->stop[i], r->stop_len[i]))) goto fail;
        j->stop_len[j->n_stop++] = r->stop_len[i];
    }
    if (extra_stop) {
        if (!(j->stop[j->n_stop] = miser_strdup(MISER_MEM_OTHER, extra_stop))) goto fail;
        j->stop_len[j->n_stop++] = strlen(extra_stop);
    }
    int64_t cap = s->eng->seq_capacity;
    int64_t mt = r->max_tokens > 0 ? r->max_tokens : r->kind == MISER_SERVE_CHAT ? cap : s->o.default_max_tokens;
    j->max_tokens = mt;
    j->limit = cap - n + 1; /* the last token is never fed back, as miser_generate */
    if (mt < j->limit) j->limit = mt;
    j->go.temperature = r->temperature;
    j->go.top_p = r->top_p;
    j->go.top_k = r->top_k;
    j->go.seed = r->has_seed ? r->seed : (uint64_t)(miser_now_s() * 1e9) ^ atomic_fetch_add(&s->next_id, 1) << 32;
    j->go.stop_at_eos = !r->ignore_eos && s->cfg->eos_token_id >= 0;
    j->go.eos_token = s->cfg->eos_token_id;
    j->rng = j->go.seed;
    j->t_submit = miser_now_s();
    j->deadline = s->o.request_timeout_s > 0 ? j->t_submit + s->o.request_timeout_s : 1e300;
    return j;
fail:
    job_free(j);
    miser_error_set(MISER_ERR_NOMEM, "out of memory");
    return NULL;
}

int miser_job_submit(miser_server *s, miser_job *j)
{
    pthread_mutex_lock(&s->mu);
    /* checked under mu with stop: a job queued after the scheduler left would wait forever */
    int ok = atomic_load(&s->phase) == PHASE_READY && !s->stop && s->qlen < s->o.queue + (s->eng->n_seqs - s->n_active);
    if (ok) {
        j->refs++;
        j->state = JOB_QUEUED;
        j->next = NULL;
        if (s->qtail) s->qtail->next = j;
        else s->qhead = j;
        s->qtail = j;
        s->qlen++;
        s->m.prompt_tokens += (uint64_t)j->n_prompt;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return ok ? 0 : -1;
}

/* mu held: tell drain when nothing is left */
static void note_idle(miser_server *s)
{
    if (!s->n_active && !s->qlen) pthread_cond_broadcast(&s->idle_cv);
}

void miser_job_release(miser_server *s, miser_job *j)
{
    if (!j) return;
    pthread_mutex_lock(&s->mu);
    atomic_store(&j->cancel, 1);
    if (j->state == JOB_QUEUED) { /* never started: leave the queue now */
        miser_job **pp = &s->qhead, *prev = NULL;
        while (*pp && *pp != j) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = j->next;
            if (s->qtail == j) s->qtail = prev;
            s->qlen--;
            j->state = JOB_DONE;
            j->outcome = "cancelled";
            job_unref(j); /* the scheduler's reference */
            note_idle(s);
        }
    }
    pthread_cond_signal(&s->cv);
    job_unref(j);
    pthread_mutex_unlock(&s->mu);
}

/* mu held: the job leaves its slot. */
static void finish(miser_server *s, miser_job *j, const char *reason, const char *outcome, const char *error)
{
    j->finish = reason;
    j->outcome = outcome;
    if (error) snprintf(j->error, sizeof j->error, "%s", error);
    j->safe = j->text.len;
    j->state = JOB_DONE;
    if (j->slot >= 0 && s->slots[j->slot] == j) {
        s->slots[j->slot] = NULL;
        s->n_active--;
        if (s->eng->seq_release) s->eng->seq_release(s->eng, j->slot);
        if (s->eng->kv_blocks) s->eng->kv_blocks(s->eng, &s->m.kv_blocks_used, &s->m.kv_blocks_total);
    }
    pthread_cond_broadcast(&j->cv);
    job_unref(j);
    note_idle(s);
}

/* Longest suffix of t[from..n) that is a proper prefix of a stop string. */
static size_t stop_hold(const miser_job *j, const char *t, size_t from, size_t n)
{
    size_t best = 0;
    for (int i = 0; i < j->n_stop; i++) {
        size_t L = j->stop_len[i];
        for (size_t k = L - 1 < n - from ? L - 1 : n - from; k > best; k--)
            if (!memcmp(t + n - k, j->stop[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

/* mu held: one sampled token reaches its job. */
static void publish(miser_server *s, miser_job *j, int32_t tok)
{
    double now = miser_now_s();
    j->n_gen++;
    s->m.generated_tokens++;
    if (j->n_gen == 1) {
        j->t_first = now;
        miser_hist_add(&s->m.ttft, now - j->t_submit);
    } else
        miser_hist_add(&s->m.itl, now - j->t_last);
    j->t_last = now;
    if (j->go.stop_at_eos && tok == j->go.eos_token) {
        finish(s, j, "stop", "ok", NULL);
        return;
    }
    size_t len = 0;
    const char *b = miser_tokenizer_token_bytes(s->tok, tok, &len);
    if (b) miser_sb_put(&j->text, b, len);
    if (j->text.failed) {
        finish(s, j, NULL, "error", "out of memory");
        return;
    }
    const char *t = j->text.data ? j->text.data : "";
    size_t n = j->text.len, cut = SIZE_MAX;
    for (int i = 0; i < j->n_stop; i++) {
        const char *p = n > j->safe ? memmem(t + j->safe, n - j->safe, j->stop[i], j->stop_len[i]) : NULL;
        if (p && (size_t)(p - t) < cut) cut = (size_t)(p - t);
    }
    if (cut != SIZE_MAX) {
        j->text.len = cut;
        j->text.data[cut] = 0;
        finish(s, j, "stop", "ok", NULL);
        return;
    }
    if (j->n_gen >= j->limit) {
        finish(s, j, "length", "ok", NULL);
        return;
    }
    size_t upto = n - stop_hold(j, t, j->safe, n);
    j->safe += miser_utf8_stable_prefix(t + j->safe, upto - j->safe);
    pthread_cond_broadcast(&j->cv);
}

static void *sched_main(void *arg)
{
    miser_server *s = arg;
    miser_serve_engine *e = s->eng;
    int N = e->n_seqs;
    int64_t V = s->cfg->n_vocab;
    miser_serve_item items[256];
    miser_job *jobs[256];
    int fresh[256] = {0};
    int32_t toks[256];
    pthread_mutex_lock(&s->mu);
    for (;;) {
        double now = miser_now_s();
        /* leave */
        for (int k = 0; k < N; k++) {
            miser_job *j = s->slots[k];
            if (!j) continue;
            if (s->stop) finish(s, j, NULL, "cancelled", "the server is shutting down");
            else if (atomic_load(&j->cancel)) finish(s, j, NULL, "cancelled", "cancelled");
            else if (now > j->deadline) finish(s, j, "length", "timeout", NULL);
        }
        if (s->stop) {
            while (s->qhead) {
                miser_job *j = s->qhead;
                s->qhead = j->next;
                s->qlen--;
                finish(s, j, NULL, "cancelled", "the server is shutting down");
            }
            s->qtail = NULL;
            break;
        }
        /* join */
        while (s->qhead && s->n_active < N) {
            miser_job *j = s->qhead;
            int k = 0;
            while (s->slots[k]) k++;
            /* first come, first served: the head waits until it fits */
            if (e->admit && !e->admit(e, k, j->n_prompt, j->limit)) break;
            s->qhead = j->next;
            if (!s->qhead) s->qtail = NULL;
            s->qlen--;
            s->slots[k] = j;
            j->slot = k;
            j->state = JOB_RUNNING;
            s->n_active++;
            fresh[k] = 1;
        }
        if (!s->n_active) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        /* decoding sequences first (one row each), then prefill chunks
         * while the engine's rows per step allow (every step makes progress:
         * the first item always goes) */
        int n = 0;
        int64_t rows = 0, budget = e->step_rows > 0 ? e->step_rows : INT64_MAX;
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < N; k++) {
                miser_job *j = s->slots[k];
                if (!j || (j->fed < j->n_prompt) != pass) continue;
                miser_serve_item *it = &items[n];
                it->seq = k;
                it->status = MISER_OK;
                if (pass) {
                    int64_t c = j->n_prompt - j->fed < e->chunk ? j->n_prompt - j->fed : e->chunk;
                    if (n && c > budget - rows) c = budget - rows;
                    if (c < 1) continue;
                    it->ids = j->prompt + j->fed;
                    it->n = c;
                    it->no_logits = j->fed + c < j->n_prompt;
                } else {
                    it->ids = &j->last;
                    it->n = 1;
                    it->no_logits = 0;
                }
                rows += it->n;
                jobs[n++] = j;
            }
        s->m.steps++;
        pthread_mutex_unlock(&s->mu);

        for (int i = 0; i < n; i++)
            if (fresh[items[i].seq]) {
                e->seq_reset(e, items[i].seq);
                fresh[items[i].seq] = 0;
            }
        e->step(e, items, n);
        for (int i = 0; i < n; i++) {
            miser_job *j = jobs[i];
            toks[i] = -1;
            if (items[i].status) continue;
            /* fed is the scheduler's but read by /metrics: written under mu below */
            if (j->fed < j->n_prompt && j->fed + items[i].n < j->n_prompt) continue;
            toks[i] = miser_sample_token(items[i].logits, V, &j->go, &j->rng, s->p, s->idx);
            j->last = toks[i];
        }

        pthread_mutex_lock(&s->mu);
        if (e->kv_blocks) e->kv_blocks(e, &s->m.kv_blocks_used, &s->m.kv_blocks_total);
        for (int i = 0; i < n; i++) {
            miser_job *j = jobs[i];
            if (j->fed < j->n_prompt) j->fed += items[i].n;
            if (items[i].status) {
                char msg[256];
                snprintf(msg, sizeof msg, "evaluation failed: %s", miser_error_message());
                finish(s, j, NULL, "error", msg);
            } else if (toks[i] >= 0)
                publish(s, j, toks[i]);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

miser_status miser_sched_start(miser_server *s)
{
    int64_t V = s->cfg->n_vocab;
    if (s->eng->n_seqs > 256) return miser_error_set(MISER_ERR_RANGE, "at most 256 slots");
    s->p = miser_malloc(MISER_MEM_SCRATCH, sizeof(float) * (size_t)V);
    s->idx = miser_malloc(MISER_MEM_SCRATCH, sizeof(int32_t) * (size_t)V);
    s->slots = miser_calloc(MISER_MEM_OTHER, (size_t)s->eng->n_seqs, sizeof *s->slots);
    if (!s->p || !s->idx || !s->slots) return MISER_ERR_NOMEM;
    if (s->eng->kv_blocks) s->eng->kv_blocks(s->eng, &s->m.kv_blocks_used, &s->m.kv_blocks_total);
    if (pthread_create(&s->sched, NULL, sched_main, s))
        return miser_error_set(MISER_ERR_INTERNAL, "cannot start the scheduler thread");
    s->sched_started = 1;
    return MISER_OK;
}

void miser_sched_stop(miser_server *s)
{
    if (!s->sched_started) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->sched, NULL);
    s->sched_started = 0;
}
