/* Read a profile back from its JSON report (schema "miser-profile"), so
 * `miser check` and `miser compare` can work from stored runs. Metrics are
 * recomputed from the stages rather than trusted from the file. */
#include "internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t get_i(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 ? (int64_t)v->valuedouble : -1;
}

static double get_d(const cJSON *o, const char *k, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static int get_b(const cJSON *o, const char *k)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static const char *get_s(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static miser_status parse(const cJSON *root, miser_profile **out)
{
    if (!cJSON_IsObject(root)) return miser_error_set(MISER_ERR_FORMAT, "profile JSON: not an object");
    const char *schema = get_s(root, "schema");
    if (!schema || strcmp(schema, MISER_PROFILE_SCHEMA))
        return miser_error_set(MISER_ERR_FORMAT, "profile JSON: schema is not \"%s\"", MISER_PROFILE_SCHEMA);
    double ver = get_d(root, "version", -1);
    if (ver < 1) return miser_error_set(MISER_ERR_FORMAT, "profile JSON: missing version");
    if (ver > MISER_PROFILE_SCHEMA_VERSION)
        return miser_error_set(MISER_ERR_UNSUPPORTED, "profile JSON: schema version %g is newer than %d", ver,
                               MISER_PROFILE_SCHEMA_VERSION);
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(root, "stages");
    if (!cJSON_IsArray(stages)) return miser_error_set(MISER_ERR_FORMAT, "profile JSON: no stages array");
    const char *mode = get_s(root, "mode");
    miser_profile *p = prof_new(mode ? mode : "command", get_s(root, "label"));
    if (!p) return miser_error_set(MISER_ERR_NOMEM, "profile JSON: out of memory");
    const char *pm = get_s(root, "peak_method");
    if (pm) snprintf(p->peak_method, sizeof p->peak_method, "%s", pm);
    const char *k = get_s(root, "kernel");
    snprintf(p->kernel, sizeof p->kernel, "%s", k ? k : "");
    p->started_unix = get_d(root, "started_unix", 0);
    p->sample_interval_ms = get_d(root, "sample_interval_ms", 0);
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(root, "exit");
    if (cJSON_IsObject(ex)) {
        p->exit.exited = get_b(ex, "exited");
        p->exit.code = (int)get_d(ex, "code", 0);
        p->exit.signaled = get_b(ex, "signaled");
        p->exit.signal = (int)get_d(ex, "signal", 0);
    }
    const cJSON *js;
    int idx = 0;
    cJSON_ArrayForEach(js, stages)
    {
        const char *name = get_s(js, "name");
        if (!name || !prof_valid_stage_name(name)) {
            miser_profile_free(p);
            return miser_error_set(MISER_ERR_FORMAT, "profile JSON: stage %d has no valid name", idx);
        }
        miser_stage_record *s = prof_add_stage(p, name, get_s(js, "description"));
        if (!s) goto nomem;
        s->implicit = get_b(js, "implicit");
        s->t_s = get_d(js, "t_s", 0);
        s->cpu_s = get_d(js, "cpu_s", 0);
        s->rss_kb = get_i(js, "rss_kb");
        s->anon_kb = get_i(js, "anon_kb");
        s->file_kb = get_i(js, "file_kb");
        s->shmem_kb = get_i(js, "shmem_kb");
        s->swap_kb = get_i(js, "swap_kb");
        s->pss_kb = get_i(js, "pss_kb");
        s->peak_rss_kb = get_i(js, "peak_rss_kb");
        s->peak_exact = get_b(js, "peak_exact");
        s->peak_sampled_kb = get_i(js, "peak_sampled_kb");
        s->peak_swap_kb = get_i(js, "peak_swap_kb");
        s->minflt = (uint64_t)get_d(js, "minflt", 0);
        s->majflt = (uint64_t)get_d(js, "majflt", 0);
        s->nprocs = (int)get_d(js, "nprocs", 0);
        s->gpu_kb = get_i(js, "gpu_kb");
        const cJSON *al = cJSON_GetObjectItemCaseSensitive(js, "alloc");
        if (cJSON_IsObject(al)) {
            s->has_alloc = 1;
            for (int c = 0; c <= MISER_MEM_COUNT; c++) {
                const cJSON *a = cJSON_GetObjectItemCaseSensitive(
                    al, c < MISER_MEM_COUNT ? miser_mem_category_name((miser_mem_category)c) : "total");
                miser_mem_stats *d = c < MISER_MEM_COUNT ? &s->alloc[c] : &s->alloc_total;
                d->current = (uint64_t)get_d(a, "current", 0);
                d->peak = (uint64_t)get_d(a, "peak", 0);
                d->allocs = (uint64_t)get_d(a, "allocs", 0);
                d->mapped = (uint64_t)get_d(a, "mapped", 0);
            }
        }
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(js, "data"), *kv;
        cJSON_ArrayForEach(kv, data)
        {
            if (!cJSON_IsString(kv) || !kv->string) continue;
            if (prof_stage_set_kv(s, kv->string, kv->valuestring)) goto nomem;
        }
        idx++;
    }
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(root, "timeline");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(tl, "rows"), *row;
    cJSON_ArrayForEach(row, rows)
    {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) < 6) {
            miser_profile_free(p);
            return miser_error_set(MISER_ERR_FORMAT, "profile JSON: timeline row is not [t, rss, anon, file, swap, gpu]");
        }
        miser_sample sm;
        int64_t *dst[] = {&sm.rss_kb, &sm.anon_kb, &sm.file_kb, &sm.swap_kb, &sm.gpu_kb};
        const cJSON *t0 = cJSON_GetArrayItem(row, 0);
        sm.t_s = cJSON_IsNumber(t0) ? t0->valuedouble : 0;
        for (int i = 0; i < 5; i++) {
            const cJSON *v = cJSON_GetArrayItem(row, i + 1);
            *dst[i] = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
        }
        if (prof_add_sample(p, &sm)) goto nomem;
    }
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(root, "warnings"), *wi;
    cJSON_ArrayForEach(wi, ws) if (cJSON_IsString(wi)) prof_warn(p, "%s", wi->valuestring);
    *out = p;
    return MISER_OK;
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
