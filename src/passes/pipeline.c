/* The pass registry and named pipelines. Each pass records what it did to
 * the graph (node/einsum/constant counts and bytes) and what it cost (time,
 * RssAnon, allocator bytes), which `miser inspect` prints. */
#include "miser/alloc.h"
#include "miser/passes.h"
#include "miser/profiler.h"

#include <stdio.h>
#include <string.h>

static const miser_pass_info g_passes[] = {
    {"decompose_einsum", "einsum -> transpose/reshape views + matmul (+ reshape/transpose of the result)",
     miser_pass_decompose_einsum},
    {"eliminate_noops", "remove identity reshapes/transposes/broadcasts and redundant copies; collapse view chains",
     miser_pass_eliminate_noops},
    {"fold_constants", "layout ops on constants -> strided views of the same storage (never a copy, never widened)",
     miser_pass_fold_constants},
    {"share_constants", "identical constants (dtype, shape, content hash + compare) become one", miser_pass_share_constants},
    {"cse", "common-subexpression elimination", miser_pass_cse},
    {"dce", "dead-code elimination; releases unreferenced materialised constants", miser_pass_dce},
    {"fuse", "matmul+bias(+gelu) -> linear; scores/softmax/combine -> attention; Q|K|V -> one linear over c_attn",
     miser_pass_fuse},
    {"group_linears", "linears of one input (Q|K|V; gate|up with SiLU x up) -> one LINEARS dispatch over the separate weights",
     miser_pass_group_linears},
    {"plan_memory", "liveness-based offsets in one activation arena, in-place reuse", miser_pass_plan_memory},
};

static const struct {
    const char *name, *passes;
} g_pipelines[] = {
    {"default", "decompose_einsum,eliminate_noops,fold_constants,share_constants,cse,dce,fuse,group_linears,dce,plan_memory"},
    {"naive", "decompose_einsum,fold_constants,dce,plan_memory"},
    {"none", "plan_memory"},
};

const miser_pass_info *miser_passes_all(int *n)
{
    *n = (int)(sizeof g_passes / sizeof g_passes[0]);
    return g_passes;
}

const miser_pass_info *miser_pass_find(const char *name)
{
    for (size_t i = 0; i < sizeof g_passes / sizeof g_passes[0]; i++)
        if (!strcmp(g_passes[i].name, name)) return &g_passes[i];
    return NULL;
}

const char *miser_pipeline_passes(const char *pipeline)
{
    for (size_t i = 0; i < sizeof g_pipelines / sizeof g_pipelines[0]; i++)
        if (!strcmp(g_pipelines[i].name, pipeline)) return g_pipelines[i].passes;
    return NULL;
}

/* RssAnon of this process in bytes (0 where the kernel does not report it) */
static int64_t rss_anon_bytes(void)
{
    miser_proc_status ps;
    return miser_proc_read_status(0, &ps) == MISER_OK && ps.anon_kb > 0 ? ps.anon_kb * 1024 : 0;
}


static int listed(const char *list, const char *name, size_t len)
{
    if (!list) return 0;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == len && !strncmp(p, name, len)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

miser_status miser_passes_run_pipeline(miser_graph *g, const char *pipeline, const char *disabled,
                                       miser_pass_record *records, int max_records, int *n_records)
{
    const char *list = miser_pipeline_passes(pipeline ? pipeline : "default");
    if (!list)
        return miser_error_set(MISER_ERR_INVALID, "unknown pipeline '%s' (known: default, naive, none)", pipeline);
    /* validate the disabled names first, so typos are errors, not no-ops */
    for (const char *p = disabled; p && *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char nm[64];
        snprintf(nm, sizeof nm, "%.*s", (int)l, p);
        if (l && !miser_pass_find(nm)) return miser_error_set(MISER_ERR_INVALID, "unknown pass '%s'", nm);
        if (!strcmp(nm, "plan_memory"))
            return miser_error_set(MISER_ERR_INVALID, "pass plan_memory cannot be disabled: the executor needs its arena plan");
        if (!e) break;
        p = e + 1;
    }
    miser_pass_options opt = {.naive = !strcmp(pipeline ? pipeline : "default", "naive"), .in_place = 1};
    int nr = 0;
    if (n_records) *n_records = 0;
    if (records && max_records > 0) {
        memset(&records[0], 0, sizeof records[0]);
        snprintf(records[0].name, sizeof records[0].name, "(built)");
        records[0].stats = miser_graph_get_stats(g);
        nr = 1;
    }
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char nm[64];
        snprintf(nm, sizeof nm, "%.*s", (int)l, p);
        p = e ? e + 1 : p + l;
        if (listed(disabled, nm, l)) continue;
        const miser_pass_info *pi = miser_pass_find(nm);
        if (!pi) return miser_error_set(MISER_ERR_INTERNAL, "pipeline names unknown pass '%s'", nm);
        int64_t anon0 = records ? rss_anon_bytes() : 0;
        miser_mem_stats h0 = miser_mem_total();
        miser_mem_reset_peaks();
        double t0 = miser_now_s();
        miser_status st = pi->run(g, &opt);
        double t1 = miser_now_s();
        if (st) return miser_error_prefix(st, "pass %s", nm);
        if (records && nr < max_records) {
            miser_pass_record *r = &records[nr++];
            memset(r, 0, sizeof *r);
            snprintf(r->name, sizeof r->name, "%.31s", nm);
            r->seconds = t1 - t0;
            miser_mem_stats h1 = miser_mem_total();
            r->heap_delta = (int64_t)h1.current - (int64_t)h0.current;
            r->heap_peak = h1.peak > h0.current ? h1.peak - h0.current : 0;
            r->rss_anon_delta = rss_anon_bytes() - anon0;
            r->stats = miser_graph_get_stats(g);
        }
        miser_status vs = miser_graph_verify(g);
        if (vs) return miser_error_prefix(vs, "after pass %s", nm);
    }
    if (n_records) *n_records = nr;
    return MISER_OK;
}
