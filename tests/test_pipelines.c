/* End-to-end checks of the compiler pipelines on the Hugging Face tiny
 * checkpoint: whatever passes run, the last-position logits for "Hello"
 * must match the HF reference (hello_last_logits.f32, computed by
 * transformers in float64) within 1e-4 relative L2, and greedy decoding must
 * reproduce reference.json's greedy20. Also checks the graph-level promises
 * of each pipeline (einsums left, bytes materialised, fusions applied). */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miser/alloc.h"
#include "miser/model.h"
#include "miser/runtime.h"

#define HF_TINY MISER_SOURCE_DIR "/tests/data/hf-tiny-a"

static float *read_ref_logits(int64_t *n)
{
    FILE *f = fopen(HF_TINY "/hello_last_logits.f32", "rb");
    cr_assert(f, "cannot open hello_last_logits.f32");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *v = malloc((size_t)sz);
    cr_assert(fread(v, 1, (size_t)sz, f) == (size_t)sz);
    fclose(f);
    *n = sz / 4;
    return v;
}

static int read_greedy20(int32_t *out)
{
    FILE *f = fopen(HF_TINY "/reference.json", "rb");
    cr_assert(f);
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    cJSON *j = cJSON_Parse(buf);
    cr_assert(j);
    cJSON *p0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "prompts"), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(p0, "prompt")->valuestring, "Hello");
    cJSON *g = cJSON_GetObjectItem(p0, "greedy20");
    int n = cJSON_GetArraySize(g);
    for (int i = 0; i < n; i++) out[i] = cJSON_GetArrayItem(g, i)->valueint;
    cJSON_Delete(j);
    return n;
}

/* compile with (pipeline, disabled), check logits and greedy ids */
static void check_config(const char *pipeline, const char *disable, miser_graph_stats *stats_out)
{
    miser_model *m = NULL;
    cr_assert_eq(miser_model_open(HF_TINY, &m), MISER_OK, "%s", miser_error_message());
    miser_compile_options co = {.pipeline = pipeline, .disable = disable, .max_context = 32, .max_batch = 8};
    miser_plan *p = NULL;
    cr_assert_eq(miser_plan_compile(m, &co, &p), MISER_OK, "%s/%s: %s", pipeline, disable ? disable : "-",
                 miser_error_message());
    if (stats_out) *stats_out = miser_graph_get_stats(miser_plan_graph(p));
    miser_session *s = NULL;
    cr_assert_eq(miser_session_create(p, NULL, &s), MISER_OK, "%s", miser_error_message());
    int64_t n_ref;
    float *ref = read_ref_logits(&n_ref);
    cr_assert_eq(n_ref, miser_model_config(m)->n_vocab);
    const int32_t hello = 15496;
    const float *logits = NULL;
    cr_assert_eq(miser_session_eval(s, &hello, 1, &logits), MISER_OK, "%s", miser_error_message());
    double num = 0, den = 0;
    for (int64_t i = 0; i < n_ref; i++) {
        double d = (double)logits[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    double rel = sqrt(num / den);
    cr_expect(rel < 1e-4, "pipeline %s, disabled %s: relative L2 error %g >= 1e-4", pipeline, disable ? disable : "-",
              rel);
    free(ref);

    int32_t want[32];
    int n_want = read_greedy20(want);
    miser_session_reset(s);
    miser_generate_options go = {.max_new_tokens = n_want, .stop_at_eos = 0};
    miser_generate_result res = {0};
    cr_assert_eq(miser_generate(s, &hello, 1, &go, NULL, NULL, &res), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(res.n, n_want);
    for (int i = 0; i < n_want; i++)
        cr_expect_eq(res.ids[i], want[i], "pipeline %s, disabled %s: token %d is %d, HF says %d", pipeline,
                     disable ? disable : "-", i, res.ids[i], want[i]);
    miser_free(res.ids);
    miser_session_free(s);
    miser_plan_free(p);
    miser_model_free(m);
}

Test(pipelines, none_matches_hf)
{
    miser_graph_stats st;
    check_config("none", NULL, &st);
    /* Keras' layer: Q, K, V and output projections over constant kernels, plus scores and combine */
    cr_expect_eq(st.einsums, 6 * 2, "the built graph keeps Keras' 6 einsums per layer");
    cr_expect_eq(st.einsums_const, 4 * 2);
}

Test(pipelines, naive_matches_hf_and_duplicates)
{
    miser_graph_stats st;
    check_config("naive", NULL, &st);
    cr_expect_eq(st.einsums, 0);
    /* per layer: Q, K, V [C, C] + output [C, C] kernels, plus wte^T [C, V], each copied */
    uint64_t C = 64, V = 50257, L = 2;
    cr_expect_eq(st.materialized_bytes, (L * 4 * C * C + C * V) * 4, "naive materialised %llu bytes",
                 (unsigned long long)st.materialized_bytes);
}

Test(pipelines, default_matches_hf_without_copies)
{
    miser_graph_stats st;
    check_config("default", NULL, &st);
    cr_expect_eq(st.einsums, 0);
    cr_expect_eq(st.materialized_bytes, 0);
}

Test(pipelines, each_pass_disabled_matches_hf)
{
    static const char *const passes[] = {"decompose_einsum", "eliminate_noops", "fold_constants", "share_constants",
                                         "cse", "dce", "fuse"};
    for (size_t i = 0; i < sizeof passes / sizeof passes[0]; i++) check_config("default", passes[i], NULL);
    check_config("default", "eliminate_noops,share_constants,cse", NULL);
}

Test(pipelines, plan_memory_cannot_be_disabled)
{
    miser_model *m = NULL;
    cr_assert_eq(miser_model_open(HF_TINY, &m), MISER_OK);
    miser_compile_options co = {.disable = "plan_memory", .max_context = 16};
    miser_plan *p = NULL;
    cr_expect_eq(miser_plan_compile(m, &co, &p), MISER_ERR_INVALID);
    cr_expect(strstr(miser_error_message(), "plan_memory"));
    co.disable = "no_such_pass";
    cr_expect_eq(miser_plan_compile(m, &co, &p), MISER_ERR_INVALID);
    cr_expect(strstr(miser_error_message(), "no_such_pass"));
    miser_model_free(m);
}

/* The default graph of GPT-2 has the fused shape the executor runs fast,
 * and every weight it reads is a view of the checkpoint mapping. */
Test(pipelines, default_graph_is_fused_and_copy_free)
{
    miser_model *m = NULL;
    cr_assert_eq(miser_model_open(HF_TINY, &m), MISER_OK);
    miser_plan *p = NULL;
    cr_assert_eq(miser_plan_compile(m, NULL, &p), MISER_OK, "%s", miser_error_message());
    const miser_graph *g = miser_plan_graph(p);
    const miser_gpt2_config *c = miser_model_config(m);
    int counts[MISER_OP_COUNT] = {0};
    int qkv_ok = 0, logits_ok = 0, gelu = 0;
    const miser_tensor_info *wte = miser_model_tensor(m, "wte.weight");
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const miser_node *n = &g->nodes[i];
        counts[n->op]++;
        if (n->op == MISER_OP_LINEAR) {
            const miser_node *w = &g->nodes[n->in[1]];
            if (w->shape[1] == 3 * c->n_embd) {
                char nm[64];
                snprintf(nm, sizeof nm, "h.%d.attn.c_attn.weight", qkv_ok);
                const miser_tensor_info *t = miser_model_tensor(m, nm);
                cr_expect_eq(w->cst.data, t->data, "fused QKV weight must be the stored c_attn tensor");
                cr_expect_eq(w->cst.stride[0], 3 * c->n_embd);
                cr_expect_eq(n->n_in, 3);
                qkv_ok++;
            }
            if (w->shape[1] == c->n_vocab) {
                cr_expect_eq(w->cst.data, wte->data, "logits weight must be wte read in place");
                cr_expect_eq(w->cst.stride[0], 1);
                cr_expect_eq(w->cst.stride[1], c->n_embd);
                logits_ok = 1;
            }
            gelu += n->attr.i[0] == MISER_ACT_GELU;
        }
        if (n->op == MISER_OP_CONST) cr_expect_eq(g->storage[n->cst.storage].owned, 0, "constant %s is a copy", n->name);
    }
    cr_expect_eq(counts[MISER_OP_EINSUM], 0);
    cr_expect_eq(counts[MISER_OP_MATMUL], 0);
    cr_expect_eq(counts[MISER_OP_ATTENTION], c->n_layer);
    cr_expect_eq(counts[MISER_OP_LINEAR], 4 * c->n_layer + 1);
    cr_expect_eq(counts[MISER_OP_SOFTMAX], 0);
    cr_expect_eq(counts[MISER_OP_GELU], 0);
    cr_expect_eq(gelu, c->n_layer);
    cr_expect_eq(qkv_ok, c->n_layer);
    cr_expect(logits_ok);
    miser_plan_free(p);
    miser_model_free(m);
}

/* Every allocation of a compile may fail: each failure must come back as an
 * error (never a crash), leaving nothing allocated; the walk ends when the
 * compile succeeds. Both pipelines, since naive mode allocates copies. */
Test(pipelines, compile_survives_every_allocation_failure)
{
    miser_model *m = NULL;
    cr_assert_eq(miser_model_open(HF_TINY, &m), MISER_OK);
    static const char *const pipes[] = {"default", "naive"};
    for (int pi = 0; pi < 2; pi++) {
        uint64_t before = miser_mem_total().current;
        int done = 0;
        uint64_t n = 1;
        for (; n < 5000 && !done; n++) {
            miser_compile_options co = {.pipeline = pipes[pi], .max_context = 16, .max_batch = 4};
            miser_plan *p = NULL;
            miser_mem_fail_after(n);
            miser_status st = miser_plan_compile(m, &co, &p);
            miser_mem_fail_after(0);
            if (st == MISER_OK) {
                done = 1;
                miser_plan_free(p);
            } else
                cr_expect_null(p);
            cr_assert_eq(miser_mem_total().current, before, "%s: failing allocation %llu leaked %lld bytes", pipes[pi],
                         (unsigned long long)n, (long long)(miser_mem_total().current - before));
        }
        cr_expect(done, "%s never compiled", pipes[pi]);
        cr_expect_gt(n, 20, "%s: only %llu allocations were walked", pipes[pi], (unsigned long long)n);
    }
    miser_model_free(m);
}
