/* End to end against independent references: the Hugging Face outputs
 * stored with tests/data/hf-tiny-a, and a numpy GPT-2 (tools/ref_gpt2.py) on
 * randomised checkpoints written by tools/make_checkpoint.py in F32, F16 and
 * BF16 with several head and layer counts. Also KV-cache consistency, sampling
 * and the generate CLI's contract (exit codes, max_length). */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include "support.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "miser/alloc.h"
#include "miser/model.h"
#include "miser/runtime.h"
#include "miser/tokenizer.h"

#define TINY MISER_SOURCE_DIR "/tests/data/hf-tiny-a"
#define PY "/usr/bin/python3"

static char *run_capture(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 20, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (n + 65536 > cap) b = realloc(b, cap *= 2);
        size_t r = fread(b + n, 1, cap - n - 1, p);
        if (!r) break;
        n += r;
    }
    b[n] = 0;
    int rc = pclose(p);
    if (rc != 0) {
        free(b);
        return NULL;
    }
    return b;
}

static double rel_l2(const float *a, const double *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / den);
}

/* bytes -> text the way Python's bytes.decode("utf-8", "replace") shows it:
 * each maximal invalid subpart becomes one U+FFFD (Hugging Face decodes so) */
static char *python_replace(const char *in, size_t n)
{
    const unsigned char *s = (const unsigned char *)in;
    char *out = malloc(n * 3 + 1), *o = out;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c < 0x80) { *o++ = (char)c; i++; continue; }
        size_t k = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        size_t j = 1;
        if (k) {
            unsigned char lo = 0x80, hi = 0xBF;
            if (c == 0xE0) lo = 0xA0; else if (c == 0xED) hi = 0x9F; else if (c == 0xF0) lo = 0x90; else if (c == 0xF4) hi = 0x8F;
            while (j < k && i + j < n && s[i + j] >= (j == 1 ? lo : 0x80) && s[i + j] <= (j == 1 ? hi : 0xBF)) j++;
        }
        if (k && j == k) { memcpy(o, s + i, k); o += k; i += k; }
        else { memcpy(o, "\xEF\xBF\xBD", 3); o += 3; i += j; }
    }
    *o = 0;
    return out;
}

typedef struct {
    miser_model *m;
    miser_plan *p;
    miser_session *s;
} rt_t;

static void rt_open(rt_t *r, const char *dir, const char *pipeline, int64_t max_batch, int all_logits)
{
    memset(r, 0, sizeof *r);
    cr_assert_eq(miser_model_open(dir, &r->m), MISER_OK, "%s", miser_error_message());
    miser_compile_options co = {.pipeline = pipeline, .max_batch = max_batch, .all_logits = all_logits};
    cr_assert_eq(miser_plan_compile(r->m, &co, &r->p), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_session_create(r->p, NULL, &r->s), MISER_OK, "%s", miser_error_message());
}

static void rt_close(rt_t *r)
{
    miser_session_free(r->s);
    miser_plan_free(r->p);
    miser_model_free(r->m);
}

static cJSON *reference(void)
{
    char *txt = test_read_file(TINY "/reference.json", NULL);
    cr_assert_not_null(txt);
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    cr_assert_not_null(j);
    return j;
}

Test(e2e, hf_tiny_tokens_and_greedy20)
{
    cJSON *ref = reference();
    miser_tokenizer *tok;
    cr_assert_eq(miser_tokenizer_open(TINY, &tok), MISER_OK, "%s", miser_error_message());
    rt_t r;
    rt_open(&r, TINY, NULL, 0, 0);
    cJSON *pr;
    int n_prompts = 0;
    cJSON_ArrayForEach(pr, cJSON_GetObjectItem(ref, "prompts"))
    {
        const char *text = cJSON_GetObjectItem(pr, "prompt")->valuestring;
        cJSON *want_ids = cJSON_GetObjectItem(pr, "ids"), *want = cJSON_GetObjectItem(pr, "greedy20");
        int32_t *ids;
        size_t n;
        cr_assert_eq(miser_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n), MISER_OK);
        cr_assert_eq((int)n, cJSON_GetArraySize(want_ids), "prompt '%s'", text);
        for (size_t i = 0; i < n; i++) cr_assert_eq(ids[i], cJSON_GetArrayItem(want_ids, (int)i)->valueint);
        miser_session_reset(r.s);
        miser_generate_options go = {.max_new_tokens = 20};
        miser_generate_result res;
        cr_assert_eq(miser_generate(r.s, ids, (int64_t)n, &go, NULL, NULL, &res), MISER_OK, "%s", miser_error_message());
        cr_assert_eq(res.n, 20);
        for (int i = 0; i < 20; i++)
            cr_assert_eq(res.ids[i], cJSON_GetArrayItem(want, i)->valueint, "prompt '%s' token %d", text, i);
        /* decoded text equals Hugging Face's decode */
        char *out;
        size_t olen;
        cr_assert_eq(miser_tokenizer_decode(tok, res.ids, 20, &out, &olen), MISER_OK);
        char *shown = python_replace(out, olen);
        cr_assert_str_eq(shown, cJSON_GetObjectItem(pr, "greedy20_text")->valuestring);
        free(shown);
        miser_free(out);
        miser_free(res.ids);
        miser_free(ids);
        n_prompts++;
    }
    cr_assert_eq(n_prompts, 4);
    rt_close(&r);
    miser_tokenizer_free(tok);
    cJSON_Delete(ref);
}

Test(e2e, hf_tiny_hello_logits)
{
    size_t len;
    float *want32 = (float *)test_read_file(TINY "/hello_last_logits.f32", &len);
    cr_assert_eq(len, 50257 * 4);
    double *want = malloc(sizeof(double) * 50257);
    for (int i = 0; i < 50257; i++) want[i] = want32[i];
    rt_t r;
    rt_open(&r, TINY, NULL, 0, 0);
    int32_t hello = 15496;
    const float *logits;
    cr_assert_eq(miser_session_eval(r.s, &hello, 1, &logits), MISER_OK, "%s", miser_error_message());
    double e = rel_l2(logits, want, 50257);
    cr_assert_lt(e, 1e-4, "relative L2 error %g", e);
    rt_close(&r);
    free(want);
    free(want32);
}

/* every position's first 8 logits, for a 4-token prompt (checks positions and the causal mask) */
Test(e2e, hf_tiny_all_positions)
{
    cJSON *ref = reference();
    cJSON *pr = cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "prompts"), 1);
    cJSON *ids_j = cJSON_GetObjectItem(pr, "ids"), *first8 = cJSON_GetObjectItem(pr, "all_logits_first8");
    int T = cJSON_GetArraySize(ids_j);
    int32_t ids[16];
    for (int i = 0; i < T; i++) ids[i] = cJSON_GetArrayItem(ids_j, i)->valueint;
    rt_t r;
    rt_open(&r, TINY, NULL, 0, 1);
    const float *logits;
    cr_assert_eq(miser_session_eval(r.s, ids, T, &logits), MISER_OK, "%s", miser_error_message());
    for (int t = 0; t < T; t++)
        for (int v = 0; v < 8; v++) {
            double w = cJSON_GetArrayItem(cJSON_GetArrayItem(first8, t), v)->valuedouble;
            cr_assert(fabs(logits[(int64_t)t * 50257 + v] - w) < 1e-4 * (1 + fabs(w)), "t=%d v=%d: %f vs %f", t, v,
                      logits[(int64_t)t * 50257 + v], w);
        }
    rt_close(&r);
    cJSON_Delete(ref);
}

/* prefill in chunks of 1, 3 and all-at-once give the same last logits */
Test(e2e, kv_cache_chunking_consistent)
{
    int32_t ids[11] = {464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13, 198};
    float *first = NULL;
    int64_t batches[3] = {64, 3, 1};
    for (int b = 0; b < 3; b++) {
        rt_t r;
        rt_open(&r, TINY, NULL, batches[b], 0);
        const float *logits;
        cr_assert_eq(miser_session_eval(r.s, ids, 11, &logits), MISER_OK, "%s", miser_error_message());
        if (!first) {
            first = malloc(sizeof(float) * 50257);
            memcpy(first, logits, sizeof(float) * 50257);
        } else {
            double num = 0, den = 0;
            for (int i = 0; i < 50257; i++) {
                num += (logits[i] - first[i]) * (logits[i] - first[i]);
                den += first[i] * first[i];
            }
            cr_assert_lt(sqrt(num / den), 1e-5, "max_batch %lld differs", (long long)batches[b]);
        }
        rt_close(&r);
    }
    free(first);
}

Test(e2e, sampling_reproducible)
{
    rt_t r;
    rt_open(&r, TINY, NULL, 0, 0);
    int32_t hello = 15496;
    miser_generate_options go = {.max_new_tokens = 12, .temperature = 1.5f, .top_k = 40, .top_p = 0.95f, .seed = 7};
    miser_generate_result a, b, c;
    cr_assert_eq(miser_generate(r.s, &hello, 1, &go, NULL, NULL, &a), MISER_OK);
    miser_session_reset(r.s);
    cr_assert_eq(miser_generate(r.s, &hello, 1, &go, NULL, NULL, &b), MISER_OK);
    cr_assert_eq(a.n, 12);
    cr_assert_eq(memcmp(a.ids, b.ids, sizeof(int32_t) * 12), 0, "same seed, same tokens");
    /* top-k 1 is greedy whatever the temperature */
    miser_session_reset(r.s);
    miser_generate_options g1 = {.max_new_tokens = 5, .temperature = 2.0f, .top_k = 1, .seed = 3};
    cr_assert_eq(miser_generate(r.s, &hello, 1, &g1, NULL, NULL, &c), MISER_OK);
    static const int32_t greedy[5] = {32043, 28144, 28144, 44464, 44464};
    cr_assert_eq(memcmp(c.ids, greedy, sizeof greedy), 0);
    miser_free(a.ids);
    miser_free(b.ids);
    miser_free(c.ids);
    rt_close(&r);
}

/* the sampler's distribution: with temperature 1 and no truncation, token
 * frequencies follow softmax(logits) (chi-square-ish bound on 3 tokens) */
Test(e2e, sampler_distribution)
{
    float logits[3] = {0.0f, 1.0f, 2.0f};
    double p[3], z = 1 + exp(1) + exp(2);
    for (int i = 0; i < 3; i++) p[i] = exp(logits[i]) / z;
    miser_generate_options o = {.temperature = 1.0f};
    uint64_t rng = 42;
    float scratch[3];
    int32_t idx[3];
    int counts[3] = {0};
    for (int i = 0; i < 30000; i++) counts[miser_sample_token(logits, 3, &o, &rng, scratch, idx)]++;
    for (int i = 0; i < 3; i++) cr_assert(fabs(counts[i] / 30000.0 - p[i]) < 0.015, "token %d: %d", i, counts[i]);
}

/* numpy reference on randomised checkpoints of several shapes and dtypes */
static void check_numpy(const char *dtype, int layers, int heads, int embd, const char *extra)
{
    char dir[] = "/tmp/miser-e2e-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             PY " " MISER_SOURCE_DIR "/tools/make_checkpoint.py --out %s --layers %d --heads %d --embd %d --vocab 300 "
                "--ctx 32 --dtype %s --std 0.2 --seed %d %s >/dev/null",
             dir, layers, heads, embd, dtype, layers * 10 + heads, extra);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, PY " " MISER_SOURCE_DIR "/tools/ref_gpt2.py --model %s --ids 5,17,250,3,99,42,7 --steps 8",
             dir);
    char *out = run_capture(cmd);
    cr_assert_not_null(out, "%s", cmd);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j);
    cJSON *ll = cJSON_GetObjectItem(j, "last_logits"), *gr = cJSON_GetObjectItem(j, "greedy");
    int V = cJSON_GetArraySize(ll);
    cr_assert_eq(V, 300);
    double *want = malloc(sizeof(double) * (size_t)V);
    for (int i = 0; i < V; i++) want[i] = cJSON_GetArrayItem(ll, i)->valuedouble;
    rt_t r;
    rt_open(&r, dir, NULL, 4, 0);
    int32_t ids[7] = {5, 17, 250, 3, 99, 42, 7};
    const float *logits;
    cr_assert_eq(miser_session_eval(r.s, ids, 7, &logits), MISER_OK, "%s", miser_error_message());
    double e = rel_l2(logits, want, V);
    cr_assert_lt(e, 1e-4, "%s L%d H%d C%d: relative L2 %g", dtype, layers, heads, embd, e);
    miser_session_reset(r.s);
    miser_generate_options go = {.max_new_tokens = 8};
    miser_generate_result res;
    cr_assert_eq(miser_generate(r.s, ids, 7, &go, NULL, NULL, &res), MISER_OK);
    for (int i = 0; i < 8; i++) cr_assert_eq(res.ids[i], cJSON_GetArrayItem(gr, i)->valueint, "step %d", i);
    miser_free(res.ids);
    rt_close(&r);
    free(want);
    cJSON_Delete(j);
    free(out);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(e2e, numpy_f32_h4_l2, .timeout = 120) { check_numpy("f32", 2, 4, 64, "--prefix"); }
Test(e2e, numpy_f16_h2_l3, .timeout = 120) { check_numpy("f16", 3, 2, 48, "--no-prefix --attn-bias"); }
Test(e2e, numpy_bf16_h8_l1, .timeout = 120) { check_numpy("bf16", 1, 8, 64, "--shards 2"); }
Test(e2e, numpy_f32_h1_l4, .timeout = 120) { check_numpy("f32", 4, 1, 32, "--lm-head --extra"); }

Test(e2e, capacity_and_bad_ids)
{
    miser_model *m;
    cr_assert_eq(miser_model_open(TINY, &m), MISER_OK);
    miser_plan *p;
    cr_assert_eq(miser_plan_compile(m, NULL, &p), MISER_OK);
    miser_session *s;
    miser_session_options so = {.capacity = 4};
    cr_assert_eq(miser_session_create(p, &so, &s), MISER_OK);
    int32_t ids[5] = {1, 2, 3, 4, 5};
    const float *l;
    cr_assert_eq(miser_session_eval(s, ids, 5, &l), MISER_ERR_RANGE);
    cr_assert(strstr(miser_error_message(), "capacity") != NULL, "%s", miser_error_message());
    int32_t bad = 50257;
    cr_assert_eq(miser_session_eval(s, &bad, 1, &l), MISER_ERR_RANGE);
    cr_assert_eq(miser_session_position(s), 0, "a failed step does not advance");
    miser_session_free(s);
    miser_plan_free(p);
    miser_model_free(m);
}

/* every allocation of compile + session + a step can fail cleanly, without leaks */
Test(e2e, fault_injection_walk)
{
    miser_model *m;
    cr_assert_eq(miser_model_open(TINY, &m), MISER_OK);
    uint64_t base = miser_mem_total().current;
    int32_t ids[3] = {464, 2068, 7586};
    for (uint64_t n = 1; n < 2000; n++) {
        miser_mem_fail_after(n);
        miser_plan *p = NULL;
        miser_session *s = NULL;
        const float *l;
        miser_status st = miser_plan_compile(m, NULL, &p);
        if (!st) st = miser_session_create(p, NULL, &s);
        if (!st) st = miser_session_eval(s, ids, 3, &l);
        miser_mem_fail_after(0);
        miser_session_free(s);
        miser_plan_free(p);
        cr_assert_eq(miser_mem_total().current, base, "leak after failing allocation %llu", (unsigned long long)n);
        if (st == MISER_OK) {
            cr_assert_gt(n, 3);
            miser_model_free(m);
            return;
        }
        cr_assert_eq(st, MISER_ERR_NOMEM, "allocation %llu: %s", (unsigned long long)n, miser_error_message());
    }
    cr_assert_fail("never succeeded");
}

static int run_cli(const char *args, const char *stdin_data, char **out_text)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s%s 2>/tmp/miser-e2e-stderr.txt", MISER_BUILD_DIR "/miser", args,
             stdin_data ? " < /tmp/miser-e2e-stdin.txt" : " </dev/null");
    if (stdin_data) {
        FILE *f = fopen("/tmp/miser-e2e-stdin.txt", "wb");
        fwrite(stdin_data, 1, strlen(stdin_data), f);
        fclose(f);
    }
    FILE *p = popen(cmd, "r");
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, p);
    buf[n] = 0;
    int rc = pclose(p);
    if (out_text) *out_text = buf;
    else free(buf);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

Test(e2e, cli_generate_contract, .timeout = 60)
{
    char *out;
    /* Keras max_length counts the prompt: 4 prompt tokens, max_length 10 -> 6 new */
    cr_assert_eq(run_cli("generate --model " TINY " --prompt 'The quick brown fox' --max-length 10 --json", NULL, &out), 0);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "%s", out);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "generated_ids")), 6);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "stop_reason")->valuestring, "max_length");
    cJSON_Delete(j);
    free(out);
    /* streamed text equals the reference decode; prompt from stdin */
    cr_assert_eq(run_cli("generate --model " TINY " --max-new-tokens 20 --ignore-eos", "Hello", &out), 0);
    cr_assert_str_eq(out, " PEThandlehandlephansphansphansphansphans************************\n");
    free(out);
    cr_assert_eq(run_cli("generate --model " TINY " --prompt Hi --top-k nope", NULL, NULL), 2);
    cr_assert_eq(run_cli("generate --model " TINY " --prompt Hi --bogus", NULL, NULL), 2);
    cr_assert_eq(run_cli("generate --prompt Hi", NULL, NULL), 2);
    cr_assert_eq(run_cli("generate --model " TINY, "\xff\xfe", NULL), 3);
    /* a missing checkpoint is invalid input data (README's exit codes) */
    cr_assert_eq(run_cli("generate --model /nonexistent/dir --prompt Hi", NULL, NULL), 3);
    char *stderr_txt = test_read_file("/tmp/miser-e2e-stderr.txt", NULL);
    cr_assert(strstr(stderr_txt, "/nonexistent/dir") != NULL, "error names the path: %s", stderr_txt);
    free(stderr_txt);
    /* a prompt longer than the context (128 positions) */
    char *big = malloc(4000);
    big[0] = 0;
    for (int i = 0; i < 300; i++) strcat(big, " word");
    cr_assert_eq(run_cli("generate --model " TINY, big, NULL), 3);
    free(big);
    cr_assert_eq(run_cli("generate --help", NULL, NULL), 0);
}

/* prefault maps every weight page: RssFile grows by the checkpoint's size
 * (13 MB), RssAnon does not */
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) v = atol(line + n + 1);
    fclose(f);
    return v;
}

Test(e2e, prefault_maps_weights_file_backed)
{
    miser_model *m;
    cr_assert_eq(miser_model_open(TINY, &m), MISER_OK);
    long file0 = status_kb("RssFile"), anon0 = status_kb("RssAnon");
    cr_assert_eq(miser_model_prefault(m), MISER_OK, "%s", miser_error_message());
    long file1 = status_kb("RssFile"), anon1 = status_kb("RssAnon");
    cr_assert_geq(file1 - file0, 12 * 1024, "RssFile grew by %ld kB", file1 - file0);
    cr_assert_lt(anon1 - anon0, 1024, "RssAnon grew by %ld kB", anon1 - anon0);
    miser_model_free(m);
}
