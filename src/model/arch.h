/* The architecture registry's internal interface (src/model/registry.c):
 * each family (src/model/gpt2.c, src/model/llama.c) is one entry with the
 * config.json values that select it, its config parser, its tensor table
 * check and its graph builder. The loader (model.c) picks the entry from
 * config.json's "model_type" / "architectures", and the runtime builds
 * whatever graph the checkpoint's entry builds. Also the helpers the
 * families share with the loader (config values, required tensors). */
#ifndef MISER_MODEL_ARCH_H
#define MISER_MODEL_ARCH_H

#include "miser/graph.h"
#include "miser/model.h"

#include <cjson/cJSON.h>

typedef struct miser_arch {
    const char *name;                  /* registry name, miser_config.arch */
    const char *const *model_types;    /* NULL-terminated "model_type" values */
    const char *const *architectures;  /* NULL-terminated "architectures" entries */
    const char *strip_prefix;          /* stored key prefix dropped from canonical names, or NULL */
    /* Fill c from config.json (`path` for messages). Values outside what the
     * family allows: MISER_ERR_RANGE / MISER_ERR_FORMAT; something the
     * builder does not implement: MISER_ERR_UNSUPPORTED naming the field. */
    miser_status (*parse_config)(const char *path, const cJSON *root, miser_config *c);
    /* Check every tensor the builder reads against the config. */
    miser_status (*validate)(const miser_model *m);
    /* Build the graph (see miser_model_build in graph.h). */
    miser_status (*build)(miser_graph *g, const miser_model *m, int all_logits);
    /* the family's default KV cache dtype, copied into miser_config.kv_dtype
     * by the loader (directories and GGUF files alike) */
    miser_dtype kv_dtype;
} miser_arch;

/* The entry config.json selects: "model_type" first, then each
 * "architectures" entry; a config with neither is GPT-2 (checkpoints that
 * predate the registry). MISER_ERR_UNSUPPORTED (naming the field and the
 * value) when nothing registered matches, MISER_ERR_FORMAT when the fields
 * are not a string / an array of strings. */
miser_status miser_arch_select(const char *path, const cJSON *root, const miser_arch **out);
const miser_arch *miser_arch_find(const char *name);

extern const miser_arch miser_arch_gpt2, miser_arch_llama;

/* An integer config value in [lo, hi]. `def` < 0 makes it required. A JSON
 * null counts as absent. */
miser_status miser_cfg_int(const char *path, const cJSON *root, const char *key, int64_t lo, int64_t hi, int64_t def,
                           int64_t *out);
/* A number in (lo, hi) (exclusive), `def` when absent or null. */
miser_status miser_cfg_num(const char *path, const cJSON *root, const char *key, double lo, double hi, double def,
                           double *out);
/* A boolean, `def` when absent or null. */
miser_status miser_cfg_bool(const char *path, const cJSON *root, const char *key, int def, int *out);

/* Require tensor `name` with shape [d0] (d1 < 0) or [d0, d1] in a dtype the
 * kernels read; `why` says which config values imply the shape. */
miser_status miser_model_need(const miser_model *m, const char *name, int64_t d0, int64_t d1, const char *why);
/* The graph builders' (gpt2_graph.c, llama.c) way to load checkpoint tensor
 * `name` as a graph constant: its id, or -1 with *st set (a missing tensor
 * names the model directory; a failed miser_g_const is prefixed with
 * `context`, e.g. "building Llama graph"). *st is MISER_OK on success. */
int32_t miser_model_const(miser_graph *g, const miser_model *m, const char *name, const char *context,
                          miser_status *st);
/* The file a tensor came from, and the file a missing one was looked up in
 * (model.safetensors or the index). */
const char *miser_model_tensor_path(const miser_model *m, const miser_tensor_info *t);
const char *miser_model_source(const miser_model *m);

/* The builders (src/model/gpt2_graph.c, src/model/llama.c). */
miser_status miser_gpt2_build(miser_graph *g, const miser_model *m, int all_logits);
miser_status miser_llama_build(miser_graph *g, const miser_model *m, int all_logits);

#endif
