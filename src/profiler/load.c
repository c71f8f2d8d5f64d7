/* Read a profile back from its JSON report (schema "miser-profile"), so
 * `miser check` and `miser compare` can work from stored runs. Metrics are
 * recomputed from the stages rather than trusted from the file. */
#include "internal.h"
#include "attrib.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every figure is checked: a present value of the wrong type or a negative
 * size is a FORMAT error naming the stage and the key, never read as
 * "unknown" (a profile that cannot be trusted must not pass `miser check`).
 * null and an absent key mean unknown. */
static const char *type_name(const cJSON *v)
{
    return cJSON_IsString(v) ? "a string" : cJSON_IsBool(v) ? "a boolean" : cJSON_IsArray(v) ? "an array"
           : cJSON_IsObject(v) ? "an object" : cJSON_IsNumber(v) ? "a number" : "not a value";
}

#define MAX_FIGURE 1e12 /* seconds, exit codes, Unix times */
#define MAX_SIZE 9.0e18  /* KiB and counts: what an int64_t holds */

typedef struct {
    char where[96]; /* "stage 3 (NAME)" or "profile" */
    int bad;
} ctx;

static int fail(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(ctx *c, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!c->bad) miser_error_set(MISER_ERR_FORMAT, "profile JSON: %s: %s", c->where, msg);
    c->bad = 1;
    return -1;
}

/* A size in KiB (or a count): a non-negative number, or null/absent = -1. */
static int64_t get_i(ctx *c, const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return -1;
    if (!cJSON_IsNumber(v)) return fail(c, "%s is %s, not a number", k, type_name(v));
    if (!(v->valuedouble >= 0) || v->valuedouble > MAX_SIZE) return fail(c, "%s is negative or out of range (%g)", k, v->valuedouble);
    return (int64_t)v->valuedouble;
}

static double get_d(ctx *c, const cJSON *o, const char *k, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return def;
    if (!cJSON_IsNumber(v)) {
        fail(c, "%s is %s, not a number", k, type_name(v));
        return def;
    }
    /* No figure a profile records comes near 1e12 (seconds, exit codes,
     * Unix times); an overflowed 1e999 or a huge value would otherwise put
     * infinities into the charts' axis arithmetic. */
    if (!isfinite(v->valuedouble) || fabs(v->valuedouble) > MAX_FIGURE) {
        fail(c, "%s is out of range (%g)", k, v->valuedouble);
        return def;
    }
    return v->valuedouble;
}

static double get_nonneg(ctx *c, const cJSON *o, const char *k, double def)
{
    double d = get_d(c, o, k, def);
    if (d < 0) fail(c, "%s is negative (%g)", k, d);
    return d;
}

static int get_b(ctx *c, const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return fail(c, "%s is %s, not true or false", k, type_name(v)), 0;
    return cJSON_IsTrue(v);
}

static const char *get_s(ctx *c, const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return NULL;
    if (!cJSON_IsString(v)) {
        fail(c, "%s is %s, not a string", k, type_name(v));
        return NULL;
    }
    return v->valuestring;
}

static miser_status parse(const cJSON *root, miser_profile **out)
{
    if (!cJSON_IsObject(root)) return miser_error_set(MISER_ERR_FORMAT, "profile JSON: not an object");
    ctx c = {"profile", 0};
    const char *schema = get_s(&c, root, "schema");
    if (c.bad) return MISER_ERR_FORMAT;
    if (!schema || strcmp(schema, MISER_PROFILE_SCHEMA))
        return miser_error_set(MISER_ERR_FORMAT, "profile JSON: schema is not \"%s\"", MISER_PROFILE_SCHEMA);
    double ver = get_d(&c, root, "version", -1);
    if (c.bad) return MISER_ERR_FORMAT;
    if (ver < 1) return miser_error_set(MISER_ERR_FORMAT, "profile JSON: missing version");
    if (ver > MISER_PROFILE_SCHEMA_VERSION)
        return miser_error_set(MISER_ERR_UNSUPPORTED, "profile JSON: schema version %g is newer than %d", ver,
                               MISER_PROFILE_SCHEMA_VERSION);
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(root, "stages");
    if (!cJSON_IsArray(stages)) return miser_error_set(MISER_ERR_FORMAT, "profile JSON: no stages array");
    const char *mode = get_s(&c, root, "mode");
    const char *label = get_s(&c, root, "label");
    if (c.bad) return MISER_ERR_FORMAT;
    miser_profile *p = prof_new(mode ? mode : "command", label);
    if (!p) return miser_error_set(MISER_ERR_NOMEM, "profile JSON: out of memory");
    const char *pm = get_s(&c, root, "peak_method");
    if (pm) snprintf(p->peak_method, sizeof p->peak_method, "%s", pm);
    const char *k = get_s(&c, root, "kernel");
    snprintf(p->kernel, sizeof p->kernel, "%s", k ? k : "");
    p->started_unix = get_d(&c, root, "started_unix", 0);
    p->sample_interval_ms = get_nonneg(&c, root, "sample_interval_ms", 0);
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(root, "exit");
    if (ex && !cJSON_IsNull(ex) && !cJSON_IsObject(ex)) fail(&c, "exit is %s, not an object", type_name(ex));
    if (cJSON_IsObject(ex)) {
        snprintf(c.where, sizeof c.where, "exit");
        p->exit.exited = get_b(&c, ex, "exited");
        double code = get_d(&c, ex, "code", 0), sig = get_nonneg(&c, ex, "signal", 0);
        if (fabs(code) > 1e9 || sig > 1e9) fail(&c, "code or signal is out of range");
        p->exit.code = (int)code;
        p->exit.signaled = get_b(&c, ex, "signaled");
        p->exit.signal = (int)sig;
    }
    if (c.bad) goto bad;
    const cJSON *js;
    int idx = 0;
    cJSON_ArrayForEach(js, stages)
    {
        snprintf(c.where, sizeof c.where, "stage %d", idx);
        if (!cJSON_IsObject(js)) {
            fail(&c, "is %s, not an object", type_name(js));
            goto bad;
        }
        const char *name = get_s(&c, js, "name");
        if (c.bad) goto bad;
        if (!name || !prof_valid_stage_name(name)) {
            miser_profile_free(p);
            return miser_error_set(MISER_ERR_FORMAT, "profile JSON: stage %d has no valid name", idx);
        }
        snprintf(c.where, sizeof c.where, "stage %d (%s)", idx, name);
        const char *desc = get_s(&c, js, "description");
        miser_stage_record *s = prof_add_stage(p, name, desc);
        if (!s) goto nomem;
        s->implicit = get_b(&c, js, "implicit");
        s->t_s = get_nonneg(&c, js, "t_s", 0);
        s->cpu_s = get_nonneg(&c, js, "cpu_s", 0);
        s->rss_kb = get_i(&c, js, "rss_kb");
        s->anon_kb = get_i(&c, js, "anon_kb");
        s->file_kb = get_i(&c, js, "file_kb");
        s->shmem_kb = get_i(&c, js, "shmem_kb");
        s->swap_kb = get_i(&c, js, "swap_kb");
        s->pss_kb = get_i(&c, js, "pss_kb");
        s->peak_rss_kb = get_i(&c, js, "peak_rss_kb");
        s->peak_exact = get_b(&c, js, "peak_exact");
        s->peak_sampled_kb = get_i(&c, js, "peak_sampled_kb");
        s->peak_swap_kb = get_i(&c, js, "peak_swap_kb");
        int64_t v = get_i(&c, js, "minflt");
        s->minflt = v > 0 ? (uint64_t)v : 0;
        v = get_i(&c, js, "majflt");
        s->majflt = v > 0 ? (uint64_t)v : 0;
        v = get_i(&c, js, "nprocs");
        s->nprocs = v > 0 && v < 1 << 30 ? (int)v : 0;
        s->gpu_kb = get_i(&c, js, "gpu_kb");
        v = get_i(&c, js, "interval_procs");
        s->interval_procs = v >= 0 && v < 1 << 30 ? (int)v : s->nprocs;
        const char *pk = get_s(&c, js, "peak_kind");
        if (pk) {
            if (miser_peak_kind_parse(pk, &s->peak_kind)) s->peak_kind = MISER_PEAK_UNKNOWN;
        } else if (s->peak_rss_kb < 0) s->peak_kind = MISER_PEAK_UNKNOWN;
        else if (!s->peak_exact) s->peak_kind = MISER_PEAK_SAMPLED;
        else s->peak_kind = s->nprocs > 1 ? MISER_PEAK_UPPER_BOUND : MISER_PEAK_EXACT; /* older miser */
        s->peak_exact = s->peak_kind == MISER_PEAK_EXACT; /* one meaning, whichever miser wrote it */
        const char *src = get_s(&c, js, "source");
        if (src && miser_mark_source_parse(src, &s->source)) s->source = MISER_MARK_UNKNOWN;
        s->reported_rss_kb = get_i(&c, js, "reported_rss_kb");
        s->reported_swap_kb = get_i(&c, js, "reported_swap_kb");
        s->report_delay_s = get_d(&c, js, "report_delay_s", NAN);
        const cJSON *al = cJSON_GetObjectItemCaseSensitive(js, "alloc");
        if (al && !cJSON_IsNull(al) && !cJSON_IsObject(al)) fail(&c, "alloc is %s, not an object", type_name(al));
        if (cJSON_IsObject(al)) {
            s->has_alloc = 1;
            for (int cat = 0; cat <= MISER_MEM_COUNT; cat++) {
                const cJSON *a = cJSON_GetObjectItemCaseSensitive(
                    al, cat < MISER_MEM_COUNT ? miser_mem_category_name((miser_mem_category)cat) : "total");
                miser_mem_stats *d = cat < MISER_MEM_COUNT ? &s->alloc[cat] : &s->alloc_total;
                if (a && !cJSON_IsObject(a)) {
                    fail(&c, "alloc entry is %s, not an object", type_name(a));
                    break;
                }
                int64_t x;
                d->current = (x = get_i(&c, a, "current")) > 0 ? (uint64_t)x : 0;
                d->peak = (x = get_i(&c, a, "peak")) > 0 ? (uint64_t)x : 0;
                d->allocs = (x = get_i(&c, a, "allocs")) > 0 ? (uint64_t)x : 0;
                d->mapped = (x = get_i(&c, a, "mapped")) > 0 ? (uint64_t)x : 0;
            }
        }
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(js, "data"), *kv;
        if (data && !cJSON_IsNull(data) && !cJSON_IsObject(data)) fail(&c, "data is %s, not an object", type_name(data));
        const cJSON *dobj = cJSON_IsObject(data) ? data : NULL;
        cJSON_ArrayForEach(kv, dobj)
        {
            if (!kv->string) continue;
            if (!cJSON_IsString(kv)) {
                fail(&c, "data.%s is %s; marker values are strings", kv->string, type_name(kv));
                break;
            }
            if (prof_stage_set_kv(s, kv->string, kv->valuestring)) goto nomem;
        }
        if (c.bad) goto bad;
        if (s->peak_rss_kb >= 0 && s->peak_sampled_kb > s->peak_rss_kb && s->peak_kind != MISER_PEAK_SAMPLED &&
            s->peak_kind != MISER_PEAK_UNKNOWN && pk) {
            fail(&c, "peak_rss_kb %lld is below its own sampled peak %lld", (long long)s->peak_rss_kb,
                 (long long)s->peak_sampled_kb);
            goto bad;
        }
        idx++;
    }
    snprintf(c.where, sizeof c.where, "timeline");
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(root, "timeline");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(tl, "rows"), *row;
    int ri = 0;
    const cJSON *rarr = cJSON_IsArray(rows) ? rows : NULL;
    cJSON_ArrayForEach(row, rarr)
    {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) < 6) {
            miser_profile_free(p);
            return miser_error_set(MISER_ERR_FORMAT, "profile JSON: timeline row is not [t, rss, anon, file, swap, gpu]");
        }
        miser_sample sm;
        int64_t *dst[] = {&sm.rss_kb, &sm.anon_kb, &sm.file_kb, &sm.swap_kb, &sm.gpu_kb};
        const cJSON *t0 = cJSON_GetArrayItem(row, 0);
        if (!cJSON_IsNumber(t0) || !(t0->valuedouble >= 0) || t0->valuedouble > MAX_FIGURE) {
            fail(&c, "row %d: time is %s", ri, cJSON_IsNumber(t0) ? "negative or out of range" : type_name(t0));
            goto bad;
        }
        sm.t_s = t0->valuedouble;
        for (int i = 0; i < 5; i++) {
            const cJSON *x = cJSON_GetArrayItem(row, i + 1);
            if (cJSON_IsNull(x)) *dst[i] = -1;
            else if (!cJSON_IsNumber(x) || !(x->valuedouble >= 0) || x->valuedouble > MAX_SIZE) {
                fail(&c, "row %d: column %d is %s", ri, i + 1,
                     cJSON_IsNumber(x) ? "a negative or out-of-range size" : type_name(x));
                goto bad;
            } else *dst[i] = (int64_t)x->valuedouble;
        }
        if (prof_add_sample(p, &sm)) goto nomem;
        ri++;
    }
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(root, "warnings"), *wi;
    const cJSON *warr = cJSON_IsArray(ws) ? ws : NULL;
    cJSON_ArrayForEach(wi, warr) if (cJSON_IsString(wi)) prof_warn(p, "%s", wi->valuestring);
    {
        miser_status ast = attrib_json_parse(p, root); /* --attribute data (attrib_report.c) */
        if (ast) {
            miser_profile_free(p);
            return ast;
        }
    }
    *out = p;
    return MISER_OK;
bad:
    miser_profile_free(p);
    return MISER_ERR_FORMAT;
nomem:
    miser_profile_free(p);
    return miser_error_set(MISER_ERR_NOMEM, "profile JSON: out of memory");
}

miser_status miser_profile_parse_json(const char *text, size_t len, miser_profile **out)
{
    if (!text || !out) return miser_error_set(MISER_ERR_INVALID, "profile JSON: NULL argument");
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return miser_error_set(MISER_ERR_FORMAT, "profile JSON: not valid JSON");
    miser_status st = parse(root, out);
    cJSON_Delete(root);
    return st;
}

miser_status miser_profile_load_json(const char *path, miser_profile **out)
{
    if (!path || !out) return miser_error_set(MISER_ERR_INVALID, "profile JSON: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return miser_error_set(MISER_ERR_IO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = miser_malloc(MISER_MEM_PROFILER, cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            char *n = miser_realloc(MISER_MEM_PROFILER, buf, cap * 2);
            if (!n) {
                miser_free(buf);
                buf = NULL;
                break;
            }
            buf = n;
            cap *= 2;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) return miser_error_set(MISER_ERR_NOMEM, "%s: out of memory", path);
    if (err) {
        miser_free(buf);
        return miser_error_set(MISER_ERR_IO, "%s: read error", path);
    }
    miser_status st = miser_profile_parse_json(buf, len, out);
    miser_free(buf);
    if (st) miser_error_prefix(st, "%s", path);
    return st;
}
