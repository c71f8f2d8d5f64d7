/* The flat C API for bindings (include/miser/capi.h): a model opened and a
 * generation run through it give the Hugging Face reference tokens stored
 * with tests/data/hf-tiny-a (greedy 20 after "Hello"); errors are the
 * statuses its header promises; every allocation failure during open and
 * generate is a clean error without a leak; profiles render in every
 * format by name. */
#include <criterion/criterion.h>
#include <string.h>

#include "miser/alloc.h"
#include "miser/capi.h"

#define TINY MISER_SOURCE_DIR "/tests/data/hf-tiny-a"

/* HF transformers' greedy continuation of "Hello" (reference.json). */
static const int32_t hello_greedy[20] = {32043, 28144, 28144, 44464, 44464, 44464, 44464, 44464, 1174, 1174,
                                         1174,  1174,  1174,  1174,  1174,  1174,  1174,  1174,  1174, 1174};

static int count_cb(void *user, int32_t tok)
{
    int *n = user;
    (*n)++;
    return *n >= 5 && tok >= 0; /* stop after five tokens */
}

Test(capi, open_generate_matches_hf)
{
    cr_assert_eq(miser_capi_version(), MISER_CAPI_VERSION);
    miser_llm *m = NULL;
    cr_assert_eq(miser_llm_open(TINY, NULL, 1, 0, &m), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_llm_max_context(m), 128);
    cr_assert_eq(miser_llm_n_vocab(m), 50257);
    cr_assert_eq(miser_llm_eos(m), 50256);
    cr_assert_str_eq(miser_llm_weights_dir(m), TINY);
    miser_session *s = NULL;
    cr_assert_eq(miser_llm_session(m, 0, 0, &s), MISER_OK);
    cr_assert_eq(miser_session_capacity(s), 128);
    const int32_t prompt[1] = {15496};
    int32_t *ids = NULL;
    int64_t n = 0;
    double pre = -1, dec = -1;
    const char *why = NULL;
    cr_assert_eq(miser_llm_generate(s, prompt, 1, 20, 0, 0, 0, 1, 0, -1, NULL, NULL, NULL, &ids, &n, &pre, &dec, &why),
                 MISER_OK, "%s", miser_error_message());
    cr_assert_eq(n, 20);
    cr_assert_arr_eq(ids, hello_greedy, sizeof hello_greedy);
    cr_assert_str_eq(why, "max_new_tokens");
    cr_assert(pre >= 0 && dec >= 0);
    miser_free(ids);
    /* a callback that returns non-zero stops generation */
    miser_session_reset(s);
    int calls = 0;
    cr_assert_eq(miser_llm_generate(s, prompt, 1, 20, 0, 0, 0, 1, 0, -1, count_cb, &calls, NULL, &ids, &n, NULL, NULL, &why),
                 MISER_OK);
    cr_assert_eq(n, 5);
    cr_assert_eq(calls, 5);
    cr_assert_str_eq(why, "callback");
    miser_free(ids);
    /* so does a set cancel flag, after the first token */
    miser_session_reset(s);
    volatile int cancel = 1;
    cr_assert_eq(miser_llm_generate(s, prompt, 1, 20, 0, 0, 0, 1, 0, -1, NULL, NULL, &cancel, &ids, &n, NULL, NULL,
                                    &why),
                 MISER_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(ids[0], hello_greedy[0]);
    cr_assert_str_eq(why, "callback");
    miser_free(ids);
    miser_session_free(s);
    miser_llm_free(m);
}

Test(capi, errors)
{
    miser_llm *m = (miser_llm *)1;
    cr_assert_eq(miser_llm_open("/nonexistent/dir", NULL, 1, 0, &m), MISER_ERR_IO);
    cr_assert_null(m);
    cr_assert(strstr(miser_error_message(), "/nonexistent/dir"));
    cr_assert_eq(miser_llm_open(TINY, "f8", 1, 0, &m), MISER_ERR_INVALID);
    cr_assert_eq(miser_llm_open(TINY, NULL, 1, 129, &m), MISER_ERR_RANGE);
    cr_assert_eq(miser_llm_open(NULL, NULL, 1, 0, &m), MISER_ERR_INVALID);
    cr_assert_eq(miser_llm_open(TINY, NULL, 1, 16, &m), MISER_OK);
    miser_session *s = NULL;
    cr_assert_eq(miser_llm_session(m, 17, 0, &s), MISER_ERR_RANGE);
    cr_assert_eq(miser_llm_session(m, 8, 1, &s), MISER_OK);
    int32_t prompt[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, *ids = NULL;
    int64_t n = 0;
    const char *why;
    cr_assert_eq(miser_llm_generate(s, prompt, 9, 2, 0, 0, 0, 1, 0, -1, NULL, NULL, NULL, &ids, &n, NULL, NULL, &why),
                 MISER_ERR_RANGE); /* past the session's capacity */
    cr_assert_null(ids);
    cr_assert_eq(miser_llm_generate(s, prompt, 0, 2, 0, 0, 0, 1, 0, -1, NULL, NULL, NULL, &ids, &n, NULL, NULL, &why),
                 MISER_ERR_INVALID);
    cr_assert_eq(miser_llm_generate(s, prompt, 1, 2, 0, -1, 0, 1, 0, -1, NULL, NULL, NULL, &ids, &n, NULL, NULL, &why),
                 MISER_ERR_INVALID); /* negative temperature */
    cr_assert_eq(miser_llm_generate(s, prompt, 1, 2, 0, 1, 0, 1.5, 0, -1, NULL, NULL, NULL, &ids, &n, NULL, NULL, &why),
                 MISER_ERR_INVALID); /* top_p > 1 */
    miser_session_free(s);
    miser_llm_free(m);
    miser_llm_free(NULL);
}

/* One attempt with the k-th allocation failing: open (when m is NULL),
 * session and generate. Returns 1 when everything succeeded. */
static int attempt(uint64_t k, miser_llm *given)
{
    const int32_t prompt[1] = {15496};
    miser_mem_stats before = miser_mem_total();
    miser_mem_fail_after(k);
    miser_llm *m = given;
    miser_session *s = NULL;
    int32_t *ids = NULL;
    int64_t n = 0;
    const char *why;
    miser_status st = given ? MISER_OK : miser_llm_open(TINY, NULL, 1, 16, &m);
    if (!st) st = miser_llm_session(m, 0, 0, &s);
    if (!st) st = miser_llm_generate(s, prompt, 1, 3, 0, 0, 0, 1, 0, -1, NULL, NULL, NULL, &ids, &n, NULL, NULL, &why);
    miser_mem_fail_after(0);
    if (!st) {
        cr_assert_eq(n, 3);
        cr_assert_arr_eq(ids, hello_greedy, 3 * sizeof(int32_t));
    } else {
        cr_assert_eq(st, MISER_ERR_NOMEM, "step %llu: %s", (unsigned long long)k, miser_error_message());
    }
    miser_free(ids);
    miser_session_free(s);
    if (!given) miser_llm_free(m);
    cr_assert_eq(miser_mem_total().current, before.current, "leak after failing allocation %llu",
                 (unsigned long long)k);
    return st == MISER_OK;
}

Test(capi, allocation_failures_are_clean)
{
    /* Every allocation of session + generate; the open's (tens of
     * thousands, mostly the tokenizer's, walked by its own suite) at the
     * first 64 and then at growing steps, so the suite stays fast. */
    miser_llm *m = NULL;
    cr_assert_eq(miser_llm_open(TINY, NULL, 1, 16, &m), MISER_OK);
    uint64_t k = 1;
    while (!attempt(k, m)) k++;
    miser_llm_free(m);
    for (k = 1;; k = k < 64 ? k + 1 : k + k / 4)
        if (attempt(k, NULL)) break;
}

Test(capi, profile_render_formats)
{
    miser_profiler *p = NULL;
    cr_assert_eq(miser_capi_profiler_start(0, 0, 0, 0, &p), MISER_OK);
    cr_assert_eq(miser_profiler_stage(p, "0_INITIAL", "start <&>"), MISER_OK);
    miser_profile *prof = NULL;
    cr_assert_eq(miser_profiler_stop(p, &prof), MISER_OK);
    const char *fmts[] = {"json", "md", "svg", "csv", "table", "html"};
    for (size_t i = 0; i < sizeof fmts / sizeof *fmts; i++) {
        char *out = NULL;
        size_t len = 0;
        cr_assert_eq(miser_capi_profile_render(prof, fmts[i], &out, &len), MISER_OK, "%s: %s", fmts[i],
                     miser_error_message());
        cr_assert(len > 20 && strlen(out) == len, "%s", fmts[i]);
        cr_assert(strstr(out, "0_INITIAL"), "%s", fmts[i]);
        if (!strcmp(fmts[i], "html")) cr_assert(strstr(out, "start &lt;&amp;&gt;"));
        miser_free(out);
    }
    char *out = (char *)1;
    size_t len = 1;
    cr_assert_eq(miser_capi_profile_render(prof, "pdf", &out, &len), MISER_ERR_INVALID);
    cr_assert_null(out);
    cr_assert_eq(miser_capi_profile_save(prof, "json", "/nonexistent-dir/p.json"), MISER_ERR_IO);
    miser_profile_free(prof);
}
