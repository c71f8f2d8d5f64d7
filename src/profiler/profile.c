/* The profile: stage records, timeline and warnings, shared by the
 * in-process and out-of-process paths and by the JSON loader. */
#include "internal.h"
#include "attrib.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

miser_profile *prof_new(const char *mode, const char *label)
{
    miser_profile *p = miser_calloc(MISER_MEM_PROFILER, 1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->mode, sizeof p->mode, "%s", mode);
    snprintf(p->peak_method, sizeof p->peak_method, "hwm-reset");
    p->label = miser_strdup(MISER_MEM_PROFILER, label ? label : "");
    if (!p->label) {
        miser_free(p);
        return NULL;
    }
    p->max_samples = 1000000;
    p->started_unix = prof_unix_now();
    struct utsname u;
    if (uname(&u) == 0) snprintf(p->kernel, sizeof p->kernel, "%s %s", u.sysname, u.release);
    return p;
}

static void free_stage(miser_stage_record *s)
{
    miser_free(s->description);
    for (size_t i = 0; i < s->nkv; i++) {
        miser_free(s->kv[i].key);
        miser_free(s->kv[i].value);
    }
    miser_free(s->kv);
}

void prof_drop_last_stage(miser_profile *p)
{
    if (p->nstages) free_stage(&p->stages[--p->nstages]);
}

void miser_profile_free(miser_profile *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nstages; i++) free_stage(&p->stages[i]);
    miser_free(p->stages);
    miser_free(p->samples);
    for (size_t i = 0; i < p->nwarnings; i++) miser_free(p->warnings[i]);
    miser_free(p->warnings);
    miser_free(p->label);
    miser_attribution_free(p->attribution); /* attrib.c */
    miser_free(p);
}

int prof_valid_stage_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= MISER_STAGE_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *n = miser_realloc(MISER_MEM_PROFILER, *arr, nc * elem);
    if (!n) return -1;
    *arr = n;
    *cap = nc;
    return 0;
}

miser_stage_record *prof_add_stage(miser_profile *p, const char *name, const char *desc)
{
    if (grow((void **)&p->stages, &p->cap_stages, p->nstages + 1, sizeof *p->stages)) return NULL;
    char *d = miser_strdup(MISER_MEM_PROFILER, desc ? desc : "");
    if (!d) return NULL;
    miser_stage_record *s = &p->stages[p->nstages++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->description = d;
    s->rss_kb = s->anon_kb = s->file_kb = s->shmem_kb = s->swap_kb = s->pss_kb = -1;
    s->peak_rss_kb = s->peak_sampled_kb = s->peak_swap_kb = s->gpu_kb = -1;
    s->reported_rss_kb = s->reported_swap_kb = -1;
    s->report_delay_s = NAN;
    return s;
}

static const char *const peak_kind_names[] = {"unknown", "exact", "upper-bound", "lower-bound", "sampled"};
static const char *const mark_source_names[] = {"unknown", "api", "pipe", "pipe-ack", "stdout", "time", "end"};

/* The enum <-> name tables above, shared by the peak-kind and mark-source
 * functions: names[k] for k in range, else "unknown"; parse gives the index
 * of `s` in names, or -1 (s NULL or not a name). */
static const char *table_name(const char *const *names, size_t n, unsigned k)
{
    return k < n ? names[k] : "unknown";
}

static int table_parse(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; s && i < n; i++)
        if (!strcmp(s, names[i])) return (int)i;
    return -1;
}

#define N_OF(a) (sizeof a / sizeof *a)

const char *miser_peak_kind_name(miser_peak_kind k)
{
    return table_name(peak_kind_names, N_OF(peak_kind_names), (unsigned)k);
}

int miser_peak_kind_parse(const char *s, miser_peak_kind *out)
{
    int i = table_parse(peak_kind_names, N_OF(peak_kind_names), s);
    if (i < 0) return -1;
    *out = (miser_peak_kind)i;
    return 0;
}

const char *miser_mark_source_name(miser_mark_source k)
{
    return table_name(mark_source_names, N_OF(mark_source_names), (unsigned)k);
}

int miser_mark_source_parse(const char *s, miser_mark_source *out)
{
    int i = table_parse(mark_source_names, N_OF(mark_source_names), s);
    if (i < 0) return -1;
    *out = (miser_mark_source)i;
    return 0;
}

miser_status prof_stage_set_kv(miser_stage_record *s, const char *key, const char *value)
{
    for (size_t i = 0; i < s->nkv; i++)
        if (!strcmp(s->kv[i].key, key)) {
            char *v = miser_strdup(MISER_MEM_PROFILER, value);
            if (!v) return MISER_ERR_NOMEM;
            miser_free(s->kv[i].value);
            s->kv[i].value = v;
            return MISER_OK;
        }
    miser_kv *n = miser_realloc(MISER_MEM_PROFILER, s->kv, (s->nkv + 1) * sizeof *n);
    if (!n) return MISER_ERR_NOMEM;
    s->kv = n;
    char *k = miser_strdup(MISER_MEM_PROFILER, key);
    char *v = miser_strdup(MISER_MEM_PROFILER, value);
    if (!k || !v) {
        miser_free(k);
        miser_free(v);
        return MISER_ERR_NOMEM;
    }
    s->kv[s->nkv].key = k;
    s->kv[s->nkv].value = v;
    s->nkv++;
    return MISER_OK;
}

miser_status prof_add_sample(miser_profile *p, const miser_sample *s)
{
    if (p->nsamples >= p->max_samples) {
        p->dropped_samples++;
        return MISER_OK;
    }
    if (grow((void **)&p->samples, &p->cap_samples, p->nsamples + 1, sizeof *p->samples))
        return MISER_ERR_NOMEM;
    p->samples[p->nsamples++] = *s;
    return MISER_OK;
}

void prof_warn(miser_profile *p, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (grow((void **)&p->warnings, &p->cap_warnings, p->nwarnings + 1, sizeof *p->warnings)) return;
    char *w = miser_strdup(MISER_MEM_PROFILER, buf);
    if (w) p->warnings[p->nwarnings++] = w;
}

size_t miser_profile_stage_count(const miser_profile *p) { return p ? p->nstages : 0; }

const miser_stage_record *miser_profile_stage(const miser_profile *p, size_t i)
{
    return p && i < p->nstages ? &p->stages[i] : NULL;
}

const miser_stage_record *miser_profile_find_stage(const miser_profile *p, const char *name)
{
    if (!p || !name) return NULL;
    for (size_t i = 0; i < p->nstages; i++)
        if (!p->stages[i].implicit && !strcmp(p->stages[i].name, name)) return &p->stages[i];
    return NULL;
}

const char *miser_stage_get(const miser_stage_record *s, const char *key)
{
    if (!s || !key) return NULL;
    for (size_t i = 0; i < s->nkv; i++)
        if (!strcmp(s->kv[i].key, key)) return s->kv[i].value;
    return NULL;
}

size_t miser_profile_sample_count(const miser_profile *p) { return p ? p->nsamples : 0; }
const miser_sample *miser_profile_samples(const miser_profile *p) { return p ? p->samples : NULL; }
size_t miser_profile_warning_count(const miser_profile *p) { return p ? p->nwarnings : 0; }
const char *miser_profile_warning(const miser_profile *p, size_t i)
{
    return p && i < p->nwarnings ? p->warnings[i] : NULL;
}
const char *miser_profile_mode(const miser_profile *p) { return p ? p->mode : ""; }
const char *miser_profile_label(const miser_profile *p) { return p && p->label ? p->label : ""; }
const char *miser_profile_peak_method(const miser_profile *p) { return p ? p->peak_method : ""; }
double miser_profile_sample_interval_ms(const miser_profile *p) { return p ? p->sample_interval_ms : 0; }
miser_profile_exit miser_profile_exit_status(const miser_profile *p)
{
    miser_profile_exit e = {0, 0, 0, 0};
    return p ? p->exit : e;
}
