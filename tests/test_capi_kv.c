/* Suite `capi_kv`: the C API's KV-cache choice for bindings
 * (miser_llm_session's kv_f16, miser_llm_session_footprint). On a small
 * Llama-family checkpoint written by tools/make_llama_checkpoint.py (whose
 * family default is an f16 cache) and on the GPT-2 tiny reference (f32):
 * the dtype each kv_f16 value gives, the KV bytes expected from config.json
 * (2 x layers x capacity x KV heads x head_dim x 2 or 4 bytes, computed here
 * from the file, not from miser), the bytes a real session then holds in
 * MISER_MEM_KV, and RANGE past the context. The logits an f32 cache gives
 * are checked against the numpy float64 reference by tests/python
 * (test_llama_kv.py) and test_llama.c. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <string.h>

#include "support.h"

#include "miser/alloc.h"
#include "miser/capi.h"

#define TINY MISER_SOURCE_DIR "/tests/data/hf-tiny-a"

static char g_tmp[64];
static void setup_tmp(void) { cr_assert_eq(test_tmpdir_make(g_tmp, sizeof g_tmp, "/tmp/miser-capi-kv-XXXXXX"), 0); }
static void teardown_tmp(void) { test_tmpdir_remove(g_tmp); }

TestSuite(capi_kv, .init = setup_tmp, .fini = teardown_tmp);

static int64_t cfg_int(const cJSON *c, const char *key, int64_t dflt)
{
    const cJSON *v = cJSON_GetObjectItem(c, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

/* 2 x layers x KV heads x head_dim from config.json (Llama or GPT-2 keys) */
static uint64_t kv_elems_per_position(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *t = test_read_file(path, NULL);
    cr_assert(t, "cannot read %s", path);
    cJSON *c = cJSON_Parse(t);
    free(t);
    cr_assert(c, "%s is not JSON", path);
    const int64_t layers = cfg_int(c, "num_hidden_layers", cfg_int(c, "n_layer", 0));
    const int64_t heads = cfg_int(c, "num_attention_heads", cfg_int(c, "n_head", 0));
    const int64_t hidden = cfg_int(c, "hidden_size", cfg_int(c, "n_embd", 0));
    const int64_t kvh = cfg_int(c, "num_key_value_heads", heads);
    const int64_t hd = cfg_int(c, "head_dim", heads ? hidden / heads : 0);
    cJSON_Delete(c);
    cr_assert(layers > 0 && kvh > 0 && hd > 0, "%s: no layers/heads/head size", path);
    return (uint64_t)(2 * layers * kvh * hd);
}

/* kv_f16 -> (dtype, bytes per element) on `dir`, whose default is `dflt` */
static void check_dir(const char *dir, const char *dflt)
{
    const uint64_t per_pos = kv_elems_per_position(dir);
    miser_llm *m = NULL;
    cr_assert_eq(miser_llm_open(dir, NULL, 1, 0, &m), MISER_OK, "%s", miser_error_message());
    const int64_t cap = 16;
    const struct {
        int kv_f16;
        const char *dtype;
    } cases[3] = {{-1, "f32"}, {1, "f16"}, {0, dflt}};
    uint64_t held[3];
    for (int k = 0; k < 3; k++) {
        uint64_t kv = 0, arena = 0;
        const char *dt = NULL;
        cr_assert_eq(miser_llm_session_footprint(m, cap, cases[k].kv_f16, &kv, &arena, NULL, NULL, &dt), MISER_OK, "%s",
                     miser_error_message());
        cr_assert_str_eq(dt, cases[k].dtype, "%s kv_f16 %d", dir, cases[k].kv_f16);
        const uint64_t want = per_pos * (uint64_t)cap * (strcmp(cases[k].dtype, "f16") ? 4u : 2u);
        cr_assert_eq(kv, want, "%s kv_f16 %d: %llu KV bytes, config.json says %llu", dir, cases[k].kv_f16,
                     (unsigned long long)kv, (unsigned long long)want);
        cr_assert(arena > 0);
        /* the session really allocates that cache: MISER_MEM_KV also holds
         * its per-layer pointer arrays (a few bytes, the same for both
         * dtypes), so the f32 cache holds exactly per_pos x cap x 2 bytes
         * more than the f16 one */
        const uint64_t before = miser_mem_get(MISER_MEM_KV).current;
        miser_session *s = NULL;
        cr_assert_eq(miser_llm_session(m, cap, cases[k].kv_f16, &s), MISER_OK, "%s", miser_error_message());
        held[k] = miser_mem_get(MISER_MEM_KV).current - before;
        cr_assert(held[k] >= want && held[k] - want <= 1024, "%s kv_f16 %d: the session holds %llu KV bytes, "
                  "config.json says %llu", dir, cases[k].kv_f16, (unsigned long long)held[k], (unsigned long long)want);
        miser_session_free(s);
        cr_assert_eq(miser_mem_get(MISER_MEM_KV).current, before);
    }
    cr_assert_eq(held[0] - held[1], per_pos * (uint64_t)cap * 2u, "%s: f32 %llu, f16 %llu KV bytes", dir,
                 (unsigned long long)held[0], (unsigned long long)held[1]);
    /* 0: the model's context; past it: RANGE, as miser_llm_session */
    uint64_t kv = 0;
    cr_assert_eq(miser_llm_session_footprint(m, 0, -1, &kv, NULL, NULL, NULL, NULL), MISER_OK);
    cr_assert_eq(kv, per_pos * (uint64_t)miser_llm_max_context(m) * 4u);
    cr_assert_eq(miser_llm_session_footprint(m, miser_llm_max_context(m) + 1, 0, &kv, NULL, NULL, NULL, NULL),
                 MISER_ERR_RANGE);
    miser_llm_free(m);
    cr_assert_eq(miser_llm_session_footprint(NULL, 1, 0, &kv, NULL, NULL, NULL, NULL), MISER_ERR_INVALID);
}

Test(capi_kv, llama_default_f16_and_forced_f32)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/gqa", g_tmp);
    cr_assert_eq(test_sh("/usr/bin/python3 " MISER_SOURCE_DIR "/tools/make_llama_checkpoint.py --out '%s' --hidden 64 "
                         "--heads 4 --kv-heads 2 --untied --seed 21",
                         dir),
                 0);
    check_dir(dir, "f16");
}

Test(capi_kv, gpt2_default_f32) { check_dir(TINY, "f32"); }
