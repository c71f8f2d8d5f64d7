/* Compiler passes over the graph IR. Each pass is its own file in
 * src/passes/ and is registered in the table in src/passes/pipeline.c, so
 * it can be switched on or off by name (`--passes`, `--disable-pass`). */
#ifndef MISER_PASSES_H
#define MISER_PASSES_H

#include "miser/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct miser_pass_options {
    int naive;       /* fold the way the buggy compiler did: one copy per consumer */
    int in_place;    /* memory planning may reuse an input's buffer for the output */
} miser_pass_options;

typedef miser_status (*miser_pass_fn)(miser_graph *g, const miser_pass_options *o);

typedef struct miser_pass_info {
    const char *name;
    const char *summary;
    miser_pass_fn run;
} miser_pass_info;

/* All known passes, in default pipeline order; *n set to the count. */
const miser_pass_info *miser_passes_all(int *n);
const miser_pass_info *miser_pass_find(const char *name);

/* Figures recorded after each pass for `miser inspect`. */
typedef struct miser_pass_record {
    char name[32];
    miser_graph_stats stats;
    double seconds;
    int64_t rss_anon_delta;   /* bytes, RssAnon after - before */
    int64_t heap_delta;       /* miser allocator bytes after - before */
    uint64_t heap_peak;       /* allocator peak during the pass, above its start */
} miser_pass_record;

/* Named pipelines: "default" (decompose_einsum, eliminate_noops,
 * fold_constants, share_constants, cse, dce, fuse, dce, plan_memory),
 * "naive" (decompose + fold with one copy per consumer, no sharing, dce,
 * planning without reuse), "none" (nothing but memory planning). `disabled` is a
 * comma-separated list of pass names to skip (may be NULL). records (may be
 * NULL) receives up to max_records entries; *n_records is set. */
miser_status miser_passes_run_pipeline(miser_graph *g, const char *pipeline, const char *disabled,
                                       miser_pass_record *records, int max_records, int *n_records);
/* The pass names of a pipeline, comma separated; NULL for unknown names. */
const char *miser_pipeline_passes(const char *pipeline);

/* Individual passes (also reachable through the table). Each rewrites g in
 * place and returns MISER_OK, or an error status with the graph left valid
 * (MISER_ERR_NOMEM on allocation failure). Described in docs/compiler.md. */
miser_status miser_pass_decompose_einsum(miser_graph *g, const miser_pass_options *o);
miser_status miser_pass_eliminate_noops(miser_graph *g, const miser_pass_options *o);
/* o->naive: give each consumer of a folded constant chain its own copy. */
miser_status miser_pass_fold_constants(miser_graph *g, const miser_pass_options *o);
miser_status miser_pass_share_constants(miser_graph *g, const miser_pass_options *o);
miser_status miser_pass_cse(miser_graph *g, const miser_pass_options *o);
miser_status miser_pass_fuse(miser_graph *g, const miser_pass_options *o);
/* linears of one input (Llama's Q/K/V; gate/up with their SWIGLU) -> one
 * LINEARS node run as one dispatch (src/passes/group_linears.c) */
miser_status miser_pass_group_linears(miser_graph *g, const miser_pass_options *o);
miser_status miser_pass_plan_memory(miser_graph *g, const miser_pass_options *o);
miser_status miser_pass_dce(miser_graph *g, const miser_pass_options *o);

#ifdef __cplusplus
}
#endif
#endif
