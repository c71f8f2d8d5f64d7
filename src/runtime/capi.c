/* The flat C API for language bindings (include/miser/capi.h): a model
 * opened the way `miser generate` opens one, sessions over it, generation
 * with plain arguments, and profiler entry points a binding can call
 * without mirroring structs or handling FILE*. Composition only: every
 * figure and every token comes from the same library functions the CLI
 * calls. */
#include "miser/capi.h"

#include "miser/alloc.h"
#include "miser/model.h"
#include "miser/precision.h"
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int miser_capi_version(void) { return MISER_CAPI_VERSION; }

const char *miser_capi_library_version(void) { return MISER_VERSION_STRING; }

int miser_capi_default_threads(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n > 64 ? 64 : n;
    }
    return 1;
}

/* Owns everything it points to; the plan refers to the model, so the plan
 * is freed first. Immutable after miser_llm_open. */
struct miser_llm {
    miser_model *model;
    miser_tokenizer *tok;
    miser_plan *plan;
    char *weights_dir;   /* miser_malloc'd copy */
    char note[1024];
    int threads;
    int64_t max_context;
    double load_s;
};

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = miser_malloc(MISER_MEM_OTHER, n);
    if (d) memcpy(d, s, n);
    return d;
}

void miser_llm_free(miser_llm *m)
{
    if (!m) return;
    miser_plan_free(m->plan);
    miser_tokenizer_free(m->tok);
    miser_model_free(m->model);
    miser_free(m->weights_dir);
    miser_free(m);
}

miser_status miser_llm_open(const char *path, const char *precision, int threads, int64_t max_context,
                            miser_llm **out)
{
    if (!out) return miser_error_set(MISER_ERR_INVALID, "miser_llm_open: NULL out");
    *out = NULL;
    if (!path || !*path) return miser_error_set(MISER_ERR_INVALID, "no model path given");
    miser_dtype prec = MISER_DTYPE_F32;
    if (precision && (miser_dtype_parse(precision, &prec) || prec == MISER_DTYPE_I32 || prec == MISER_DTYPE_Q6_K))
        return miser_error_set(MISER_ERR_INVALID, "unknown precision '%.40s' (f32, f16, bf16, q8_0, q4_0, q4_k)",
                               precision);
    miser_llm *m = miser_calloc(MISER_MEM_OTHER, 1, sizeof *m);
    if (!m) return miser_error_set(MISER_ERR_NOMEM, "out of memory opening %s", path);
    miser_status st;
    double t0 = miser_now_s();
    if (precision) {
        if ((st = miser_precision_prepare(path, prec, NULL, &m->weights_dir, m->note, sizeof m->note, NULL)))
            goto fail;
    } else if (!(m->weights_dir = dup_str(path))) {
        st = miser_error_set(MISER_ERR_NOMEM, "out of memory opening %s", path);
        goto fail;
    }
    if ((st = miser_model_open(m->weights_dir, &m->model)) || (st = miser_model_prefault(m->model)) ||
        (st = miser_tokenizer_open(path, &m->tok)))
        goto fail;
    m->load_s = miser_now_s() - t0;
    const miser_gpt2_config *cfg = miser_model_config(m->model);
    if (max_context > cfg->n_ctx) {
        st = miser_error_set(MISER_ERR_RANGE, "ctx %lld is more than the model's context of %lld",
                             (long long)max_context, (long long)cfg->n_ctx);
        goto fail;
    }
    m->max_context = max_context > 0 ? max_context : cfg->n_ctx;
    m->threads = threads > 0 ? threads : miser_capi_default_threads();
    miser_compile_options co = {.pipeline = "default", .max_context = m->max_context};
    if ((st = miser_plan_compile(m->model, &co, &m->plan))) goto fail;
    *out = m;
    return MISER_OK;
fail:
    miser_llm_free(m);
    return st;
}

const miser_model *miser_llm_model(const miser_llm *m) { return m ? m->model : NULL; }
const miser_tokenizer *miser_llm_tokenizer(const miser_llm *m) { return m ? m->tok : NULL; }
const miser_plan *miser_llm_plan(const miser_llm *m) { return m ? m->plan : NULL; }
const char *miser_llm_weights_dir(const miser_llm *m) { return m ? m->weights_dir : ""; }
const char *miser_llm_note(const miser_llm *m) { return m ? m->note : ""; }
int miser_llm_threads(const miser_llm *m) { return m ? m->threads : 0; }
int64_t miser_llm_max_context(const miser_llm *m) { return m ? m->max_context : 0; }
int64_t miser_llm_n_vocab(const miser_llm *m) { return m ? miser_model_config(m->model)->n_vocab : 0; }
int32_t miser_llm_eos(const miser_llm *m) { return m ? miser_model_config(m->model)->eos_token_id : -1; }
double miser_llm_load_seconds(const miser_llm *m) { return m ? m->load_s : 0; }
double miser_llm_compile_seconds(const miser_llm *m) { return m ? miser_plan_compile_seconds(m->plan) : 0; }

miser_status miser_llm_session(const miser_llm *m, int64_t capacity, int kv_f16, miser_session **out)
{
    if (!out) return miser_error_set(MISER_ERR_INVALID, "miser_llm_session: NULL out");
    *out = NULL;
    if (!m) return miser_error_set(MISER_ERR_INVALID, "miser_llm_session: NULL model");
    if (capacity > m->max_context)
        return miser_error_set(MISER_ERR_RANGE, "a session of %lld positions does not fit the model's context of %lld",
                               (long long)capacity, (long long)m->max_context);
    miser_session_options so = {.capacity = capacity > 0 ? capacity : m->max_context, .threads = m->threads,
                                .kv_f16 = kv_f16};
    return miser_session_create(m->plan, &so, out);
}

miser_status miser_llm_session_footprint(const miser_llm *m, int64_t capacity, int kv_f16, uint64_t *kv_bytes,
                                         uint64_t *arena_bytes, uint64_t *scratch_bytes, uint64_t *other_bytes,
                                         const char **kv_dtype)
{
    if (!m) return miser_error_set(MISER_ERR_INVALID, "miser_llm_session_footprint: NULL model");
    if (capacity > m->max_context)
        return miser_error_set(MISER_ERR_RANGE, "a session of %lld positions does not fit the model's context of %lld",
                               (long long)capacity, (long long)m->max_context);
    /* the same options miser_llm_session passes, so the figures are that session's */
    miser_session_options so = {.capacity = capacity > 0 ? capacity : m->max_context, .threads = m->threads,
                                .kv_f16 = kv_f16};
    miser_session_footprint f;
    miser_session_footprint_get(m->plan, &so, &f);
    if (kv_bytes) *kv_bytes = f.kv_bytes;
    if (arena_bytes) *arena_bytes = f.arena_bytes;
    if (scratch_bytes) *scratch_bytes = f.scratch_bytes;
    if (other_bytes) *other_bytes = f.other_bytes;
    if (kv_dtype) {
        *kv_dtype = miser_kv_f16_resolve(m->plan, kv_f16) ? "f16" : "f32"; /* the session's own rule */
    }
    return MISER_OK;
}

/* The token callback miser_generate sees: the caller's, then the flag. */
typedef struct {
    miser_token_fn cb;
    void *user;
    const volatile int *cancel;
} gen_hook;

static int gen_token(void *u, int32_t tok)
{
    gen_hook *h = u;
    if (h->cb && h->cb(h->user, tok)) return 1;
    return h->cancel && *h->cancel;
}

miser_status miser_llm_generate(miser_session *s, const int32_t *prompt, int64_t n_prompt, int64_t max_new_tokens,
                                int64_t max_length, double temperature, int top_k, double top_p, uint64_t seed,
                                int32_t eos_token, miser_token_fn cb, void *user, const volatile int *cancel,
                                int32_t **ids, int64_t *n_ids, double *prefill_s, double *decode_s,
                                const char **stop_reason)
{
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!s || !ids || !n_ids || (!prompt && n_prompt))
        return miser_error_set(MISER_ERR_INVALID, "miser_llm_generate: NULL argument");
    if (max_new_tokens < 0 || max_length < 0 || top_k < 0 || !(temperature >= 0) || !(top_p >= 0 && top_p <= 1))
        return miser_error_set(MISER_ERR_INVALID,
                               "generation options out of range (max_new_tokens, max_length, top_k >= 0; "
                               "temperature >= 0; 0 <= top_p <= 1)");
    miser_generate_options go = {.max_new_tokens = max_new_tokens, .max_length = max_length,
                                 .temperature = (float)temperature, .top_k = top_k, .top_p = (float)top_p,
                                 .seed = seed, .stop_at_eos = eos_token >= 0, .eos_token = eos_token};
    miser_generate_result res = {0};
    gen_hook hook = {cb, user, cancel};
    miser_status st = miser_generate(s, prompt, n_prompt, &go, cb || cancel ? gen_token : NULL, &hook, &res);
    if (st) return st;
    *ids = res.ids;
    *n_ids = res.n;
    if (prefill_s) *prefill_s = res.prefill_s;
    if (decode_s) *decode_s = res.decode_s;
    if (stop_reason) *stop_reason = res.stop_reason;
    return MISER_OK;
}

/* ---- profiler ---- */

miser_status miser_capi_profiler_start(double sample_interval_ms, int pss, int gpu, int no_hwm_reset,
                                       miser_profiler **out)
{
    miser_profiler_options o = {.sample_interval_ms = sample_interval_ms, .pss = pss, .gpu = gpu,
                                .no_hwm_reset = no_hwm_reset};
    return miser_profiler_start(&o, out);
}

/* Every format, HTML included, is the profiler's own writer (src/profiler/report.c). */
typedef struct {
    const miser_profile *p;
    miser_report_format fmt;
} render_ctx;

static miser_status parse_format(const char *format, render_ctx *rc)
{
    if (!format) return miser_error_set(MISER_ERR_INVALID, "no report format given");
    if (miser_report_format_parse(format, &rc->fmt) == 0) return MISER_OK;
    return miser_error_set(MISER_ERR_INVALID, "unknown report format '%.40s' (table, json, csv, md, svg, html)", format);
}

static miser_status render_to(void *file, void *ctx)
{
    render_ctx *rc = ctx;
    return miser_profile_write(rc->p, rc->fmt, file);
}

miser_status miser_capi_profile_render(const miser_profile *p, const char *format, char **out, size_t *len)
{
    if (!out || !len) return miser_error_set(MISER_ERR_INVALID, "miser_capi_profile_render: NULL out");
    *out = NULL;
    *len = 0;
    if (!p) return miser_error_set(MISER_ERR_INVALID, "miser_capi_profile_render: NULL profile");
    render_ctx rc = {.p = p};
    miser_status st = parse_format(format, &rc);
    if (st) return st;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return miser_error_set(MISER_ERR_NOMEM, "cannot open a memory stream: %s", strerror(errno));
    st = render_to(f, &rc);
    if (fclose(f) && !st) st = miser_error_set(MISER_ERR_NOMEM, "memory stream: %s", strerror(errno));
    if (!st) {
        /* open_memstream's buffer is libc's; hand out one of ours. */
        *out = miser_malloc(MISER_MEM_PROFILER, n + 1);
        if (!*out) st = miser_error_set(MISER_ERR_NOMEM, "out of memory rendering a %zu-byte report", n);
        else {
            memcpy(*out, buf, n);
            (*out)[n] = 0;
            *len = n;
        }
    }
    free(buf);
    return st;
}

miser_status miser_capi_profile_save(const miser_profile *p, const char *format, const char *path)
{
    if (!p || !path) return miser_error_set(MISER_ERR_INVALID, "miser_capi_profile_save: NULL argument");
    render_ctx rc = {.p = p};
    miser_status st = parse_format(format, &rc);
    if (st) return st;
    return miser_file_write_atomic(path, render_to, &rc);
}
