/* Text generation: prefill the prompt, then decode one token at a time
 * through the same plan; greedy or temperature / top-k / top-p sampling with
 * a seeded generator (splitmix64), so runs are reproducible. */
#include "internal.h"
#include "miser/alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Thread-local: qsort has no context argument, and two sessions may sample
 * on two threads at once (the Python binding does). */
static _Thread_local const float *g_sort_vals;
static int cmp_desc(const void *a, const void *b)
{
    float x = g_sort_vals[*(const int32_t *)a], y = g_sort_vals[*(const int32_t *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int32_t miser_sample_token(const float *logits, int64_t n, const miser_generate_options *o, uint64_t *rng, float *p,
                     int32_t *idx)
{
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = (int32_t)i; /* first maximum, as argmax */
    if (!o || o->temperature <= 0.0f) return best;
    /* candidates sorted by logit (descending), truncated by top-k */
    int64_t m = n;
    for (int64_t i = 0; i < n; i++) idx[i] = (int32_t)i;
    g_sort_vals = logits;
    qsort(idx, (size_t)n, sizeof *idx, cmp_desc);
    if (o->top_k > 0 && o->top_k < m) m = o->top_k;
    double sum = 0, mx = logits[idx[0]];
    for (int64_t i = 0; i < m; i++) {
        p[i] = (float)exp((logits[idx[i]] - mx) / o->temperature);
        sum += p[i];
    }
    if (o->top_p > 0.0f && o->top_p < 1.0f) {
        double c = 0;
        int64_t keep = m;
        for (int64_t i = 0; i < m; i++) {
            c += p[i] / sum;
            if (c >= o->top_p) {
                keep = i + 1;
                break;
            }
        }
        m = keep;
        sum = 0;
        for (int64_t i = 0; i < m; i++) sum += p[i];
    }
    double r = (double)(splitmix64(rng) >> 11) * (1.0 / 9007199254740992.0) * sum, acc = 0;
    for (int64_t i = 0; i < m; i++) {
        acc += p[i];
        if (r < acc) return idx[i];
    }
    return idx[m - 1];
}

miser_status miser_generate(miser_session *s, const int32_t *prompt, int64_t n_prompt, const miser_generate_options *o,
                            miser_token_fn cb, void *user, miser_generate_result *res)
{
    memset(res, 0, sizeof *res);
    if (n_prompt < 1) return miser_error_set(MISER_ERR_INVALID, "the prompt is empty (at least one token is needed)");
    int64_t V = s->p->cfg.n_vocab;
    int64_t limit = s->capacity - s->past - n_prompt + 1; /* tokens we can emit: the last is never fed back */
    if (s->past + n_prompt > s->capacity)
        return miser_error_set(MISER_ERR_RANGE, "the prompt (%lld tokens) does not fit the context of %lld",
                               (long long)n_prompt, (long long)(s->capacity - s->past));
    int64_t want = limit;
    const char *why = "capacity";
    if (o->max_new_tokens > 0 && o->max_new_tokens <= want) {
        want = o->max_new_tokens;
        why = "max_new_tokens";
    }
    if (o->max_length > 0) {
        int64_t by_len = o->max_length - s->past - n_prompt;
        if (by_len < 0) by_len = 0;
        if (by_len <= want) {
            want = by_len;
            why = "max_length";
        }
    }
    res->ids = miser_malloc(MISER_MEM_OTHER, sizeof(int32_t) * (size_t)(want > 0 ? want : 1));
    float *p = miser_malloc(MISER_MEM_SCRATCH, sizeof(float) * (size_t)V);
    int32_t *idx = miser_malloc(MISER_MEM_SCRATCH, sizeof(int32_t) * (size_t)V);
    if (!res->ids || !p || !idx) {
        miser_free(res->ids);
        res->ids = NULL;
        miser_free(p);
        miser_free(idx);
        return MISER_ERR_NOMEM;
    }
    uint64_t rng = o->seed;
    miser_status st = MISER_OK;
    res->stop_reason = why;
    double t0 = miser_now_s(), t1 = t0;
    const float *logits = NULL;
    if (want > 0) st = miser_session_eval(s, prompt, n_prompt, &logits);
    for (int64_t i = 0; !st && i < want; i++) {
        int32_t tok = miser_sample_token(logits, V, o, &rng, p, idx);
        res->ids[res->n++] = tok;
        if (i == 0) t1 = miser_now_s();
        if (cb && cb(user, tok)) {
            res->stop_reason = "callback";
            break;
        }
        if (o->stop_at_eos && tok == o->eos_token) {
            res->stop_reason = "eos";
            break;
        }
        if (i + 1 < want) st = miser_session_eval(s, &tok, 1, &logits);
    }
    double t2 = miser_now_s();
    res->prefill_s = (res->n ? t1 : t2) - t0;
    res->decode_s = res->n ? t2 - t1 : 0;
    miser_free(p);
    miser_free(idx);
    if (st) {
        miser_free(res->ids);
        res->ids = NULL;
        res->n = 0;
    }
    return st;
}
