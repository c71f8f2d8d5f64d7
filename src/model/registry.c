/* The architecture registry: every model family miser builds, selected by
 * the checkpoint's config.json ("model_type", else "architectures"), so the
 * architecture is a property of the checkpoint rather than of the runtime.
 * Adding a family is one entry here plus its file (config parser, tensor
 * table, graph builder; see arch.h). */
#include "model/arch.h"

#include <stdio.h>
#include <string.h>

static const miser_arch *const g_archs[] = {&miser_arch_gpt2, &miser_arch_llama};
#define N_ARCHS (sizeof g_archs / sizeof g_archs[0])

const miser_arch *miser_arch_find(const char *name)
{
    for (size_t i = 0; name && i < N_ARCHS; i++)
        if (!strcmp(g_archs[i]->name, name)) return g_archs[i];
    return NULL;
}

static int listed(const char *const *list, const char *s)
{
    for (; list && *list; list++)
        if (!strcmp(*list, s)) return 1;
    return 0;
}

const char *miser_model_archs_known(void)
{
    return "gpt2 (model_type gpt2, GPT2LMHeadModel), llama (model_type llama / mistral / qwen2, "
           "LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM)";
}

miser_status miser_arch_select(const char *path, const cJSON *root, const miser_arch **out)
{
    *out = NULL;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    if (mt && !cJSON_IsNull(mt)) {
        if (!cJSON_IsString(mt) || !mt->valuestring)
            return miser_error_set(MISER_ERR_FORMAT, "%s: \"model_type\" is not a string", path);
        for (size_t i = 0; i < N_ARCHS; i++)
            if (listed(g_archs[i]->model_types, mt->valuestring)) return (*out = g_archs[i]), MISER_OK;
        return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: \"model_type\" \"%.64s\" is not a registered architecture "
                               "(known: %s)", path, mt->valuestring, miser_model_archs_known());
    }
    if (ar && !cJSON_IsNull(ar)) {
        if (!cJSON_IsArray(ar))
            return miser_error_set(MISER_ERR_FORMAT, "%s: \"architectures\" is not an array of strings", path);
        const char *first = NULL;
        for (const cJSON *e = ar->child; e; e = e->next) {
            if (!cJSON_IsString(e) || !e->valuestring)
                return miser_error_set(MISER_ERR_FORMAT, "%s: \"architectures\" is not an array of strings", path);
            if (!first) first = e->valuestring;
            for (size_t i = 0; i < N_ARCHS; i++)
                if (listed(g_archs[i]->architectures, e->valuestring)) return (*out = g_archs[i]), MISER_OK;
        }
        if (first)
            return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: \"architectures\" [\"%.64s\"%s] is not a registered "
                                   "architecture (known: %s)", path, first, ar->child->next ? ", ..." : "",
                                   miser_model_archs_known());
    }
    *out = &miser_arch_gpt2; /* neither field: a GPT-2 config from before the registry */
    return MISER_OK;
}

miser_status miser_model_build(miser_graph *g, const miser_model *m, int all_logits)
{
    const miser_arch *a = miser_arch_find(miser_model_arch(m));
    if (!a) return miser_error_set(MISER_ERR_INVALID, "miser_model_build: model has no registered architecture");
    return a->build(g, m, all_logits);
}
