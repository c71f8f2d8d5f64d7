/* The server's life: create (open and validate the model before anything is
 * bound, so bad input is refused at once), listen (http.c), load (compile,
 * one engine, the scheduler thread; /health turns 200), drain (503 to new
 * requests while the in-flight ones finish, up to a timeout) and free. */
#include "serve/internal.h"
#include "miser/alloc.h"
#include "miser/batch.h"
#include "miser/budget.h"
#include "miser/precision.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

void miser_serve_http_stop(miser_server *s);

static char *dup_or_null(const char *s) { return s ? miser_strdup(MISER_MEM_OTHER, s) : NULL; }

static void logf_(miser_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(miser_server *s, const char *fmt, ...)
{
    if (!s->o.log) return;
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->o.log(s->o.log_user, line);
}

miser_status miser_serve_create(const miser_serve_options *o, miser_server **out)
{
    *out = NULL;
    if (!o->model_dir) return miser_error_set(MISER_ERR_INVALID, "a model directory is required");
    miser_server *s = miser_calloc(MISER_MEM_OTHER, 1, sizeof *s);
    if (!s) return MISER_ERR_NOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    miser_metrics_init(&s->m);
    atomic_init(&s->phase, PHASE_LOADING);
    s->t_start = miser_now_s();
    s->o = *o;
    if (s->o.parallel < 1) s->o.parallel = 1;
    if (s->o.threads < 1) s->o.threads = 1;
    if (s->o.queue < 0) s->o.queue = 0;
    if (s->o.max_connections < 1) s->o.max_connections = 256;
    if (!s->o.max_body) s->o.max_body = 1 << 20;
    if (s->o.idle_timeout_s < 1) s->o.idle_timeout_s = 30;
    if (s->o.default_max_tokens < 1) s->o.default_max_tokens = 16;
    s->model_dir = dup_or_null(o->model_dir);
    s->host = dup_or_null(o->host ? o->host : "127.0.0.1");
    s->api_key = o->api_key && o->api_key[0] ? dup_or_null(o->api_key) : NULL;
    s->precision = dup_or_null(o->precision);
    if (o->alias) s->alias = dup_or_null(o->alias);
    else {
        size_t n = strlen(o->model_dir);
        while (n > 1 && o->model_dir[n - 1] == '/') n--;
        size_t b = n;
        while (b > 0 && o->model_dir[b - 1] != '/') b--;
        s->alias = miser_strndup(MISER_MEM_OTHER, o->model_dir + b, n - b);
    }
    s->o.model_dir = s->model_dir;
    s->o.host = s->host;
    s->o.api_key = s->api_key;
    s->o.precision = s->precision;
    s->o.alias = s->alias;
    s->o.chat_template = NULL;
    miser_status st = MISER_OK;
    if (!s->model_dir || !s->host || !s->alias || (o->api_key && o->api_key[0] && !s->api_key) ||
        (o->precision && !s->precision)) {
        st = miser_error_set(MISER_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (s->precision) {
        miser_dtype dt;
        if (miser_dtype_parse(s->precision, &dt) || dt == MISER_DTYPE_I32 || dt == MISER_DTYPE_Q6_K) {
            st = miser_error_set(MISER_ERR_INVALID, "unknown precision '%s' (f32, f16, bf16, q8_0, q4_0, q4_k)",
                                 s->precision);
            goto fail;
        }
        char note[1024];
        int converted = 0;
        if ((st = miser_precision_prepare(s->model_dir, dt, NULL, &s->weights_dir, note, sizeof note, &converted)))
            goto fail;
        if (note[0]) logf_(s, "%s", note);
        if (converted) logf_(s, "converted the weights to %s into %s", s->precision, s->weights_dir);
    }
    if ((st = miser_model_open(s->weights_dir ? s->weights_dir : s->model_dir, &s->model))) goto fail;
    if ((st = miser_tokenizer_open(s->model_dir, &s->tok))) goto fail;
    s->cfg = miser_model_config(s->model);
    if (o->chat_template) {
        s->chat = miser_chat_format_parse(o->chat_template);
        if (s->chat == MISER_CHAT_NONE) {
            st = miser_error_set(MISER_ERR_INVALID, "unknown chat template '%s' (chatml, llama2, llama3, mistral)",
                                 o->chat_template);
            goto fail;
        }
    } else if ((st = miser_chat_detect_dir(s->model_dir, &s->chat, &s->chat_unknown)))
        goto fail;
    if (s->o.ctx <= 0) s->o.ctx = s->cfg->n_ctx;
    if (s->o.ctx > s->cfg->n_ctx) {
        st = miser_error_set(MISER_ERR_INVALID, "--ctx %lld is more than the model's context of %lld",
                             (long long)s->o.ctx, (long long)s->cfg->n_ctx);
        goto fail;
    }
    if (s->o.kv_blocks > 0 && s->o.kv_blocks * MISER_KV_BLOCK_TOKENS < s->o.ctx) {
        st = miser_error_set(MISER_ERR_INVALID, "--kv-blocks %lld holds %lld positions, fewer than one context of %lld",
                             (long long)s->o.kv_blocks, (long long)(s->o.kv_blocks * MISER_KV_BLOCK_TOKENS),
                             (long long)s->o.ctx);
        goto fail;
    }
    *out = s;
    return MISER_OK;
fail:
    miser_serve_free(s);
    return st;
}

int miser_serve_port(const miser_server *s) { return s->port; }

miser_status miser_serve_load(miser_server *s)
{
    miser_status st;
    double t0 = miser_now_s();
    if ((st = miser_model_prefault(s->model))) return st;
    /* the batched engine (default): a pass carries every decoding sequence
     * plus a prefill chunk; the slots engine: one sequence's chunk */
    const int slots = s->o.engine && !strcmp(s->o.engine, "slots");
    if (s->o.engine && !slots && strcmp(s->o.engine, "batch"))
        return miser_error_set(MISER_ERR_INVALID, "unknown engine '%s' (batch, slots)", s->o.engine);
    const int64_t rows = slots ? MISER_SERVE_MAX_BATCH : MISER_SERVE_MAX_BATCH + s->o.parallel;
    miser_compile_options co = {.max_batch = rows, .max_context = s->o.ctx};
    if ((st = miser_plan_compile(s->model, &co, &s->plan))) return st;
    /* the load's freed pages go back to the kernel before the engine's
     * buffers exist, as in generate (budget.h: what `miser plan` counts on) */
    miser_budget_release_freed();
    miser_serve_engine *e = NULL;
    if (slots) st = miser_serve_engine_slots(s->plan, s->o.parallel, s->o.ctx, s->o.threads, s->o.kv_f16, &e);
    else st = miser_serve_engine_batch(s->plan, s->o.parallel, s->o.ctx, s->o.threads, s->o.kv_f16, s->o.kv_blocks, rows, &e);
    if (st) return st;
    pthread_mutex_lock(&s->mu);
    s->eng = e;
    pthread_mutex_unlock(&s->mu);
    if ((st = miser_sched_start(s))) return st;
    atomic_store(&s->phase, PHASE_READY);
    logf_(s, "model %s ready in %.2f s: %s engine, %d slot%s x %lld positions (KV cache %.1f MiB, reserved), %d thread%s, chat template %s",
          s->alias, miser_now_s() - t0, e->name, e->n_seqs, e->n_seqs == 1 ? "" : "s", (long long)e->seq_capacity,
          (double)miser_mem_get(MISER_MEM_KV).current / 1048576.0, s->o.threads, s->o.threads == 1 ? "" : "s",
          miser_chat_format_name(s->chat));
    return MISER_OK;
}

int miser_serve_drain(miser_server *s, double timeout_s)
{
    int expected = PHASE_READY;
    if (!atomic_compare_exchange_strong(&s->phase, &expected, PHASE_DRAINING) && expected == PHASE_LOADING)
        atomic_store(&s->phase, PHASE_DRAINING);
    double until = miser_now_s() + timeout_s;
    int left = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        left = s->n_active + s->qlen;
        pthread_mutex_unlock(&s->mu);
        /* jobs done and their responses flushed: the last SSE bytes may still
         * be on their way out after a job ends */
        if (!left && atomic_load(&s->inflight) == 0) break;
        if (miser_now_s() >= until) break;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return left;
}

void miser_serve_free(miser_server *s)
{
    if (!s) return;
    atomic_store(&s->phase, PHASE_STOPPING);
    miser_sched_stop(s);         /* every job ends; waiting connections wake */
    miser_serve_http_stop(s);    /* joins the connection threads */
    miser_serve_engine_free(s->eng);
    miser_plan_free(s->plan);
    miser_tokenizer_free(s->tok);
    miser_model_free(s->model);
    miser_free(s->p);
    miser_free(s->idx);
    miser_free(s->slots);
    miser_free(s->weights_dir);
    miser_free(s->model_dir);
    miser_free(s->host);
    miser_free(s->api_key);
    miser_free(s->alias);
    miser_free(s->precision);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->idle_cv);
    miser_free(s);
}
