/* --precision q4_0 / q4_k suite: the converted-weights cache's 4-bit blocks
 * and how it is laid out and run, against independent references:
 *  - the quantizers (src/model/quantize_q4.c) byte for byte against
 *    llama.cpp's own quantize_row_q4_0_ref / _q4_K_ref / _q6_K_ref (the C
 *    functions of the libggml-base.so node-llama-cpp ships, called by
 *    tools/gguf/ggml_quantize.py through ctypes) and, for Q4_0, gguf-py's
 *    numpy quantizer, on awkward blocks (zeros, constants, one outlier,
 *    tiny and huge magnitudes, one sign, ties);
 *  - round trip within the documented bounds (docs/gguf.md) against the
 *    float64 values: Q4_0 per element |d|, Q4_K and Q6_K relative RMS;
 *  - the target rules (which tensors stay wider, the fallbacks);
 *  - a GPT-2 checkpoint at q4_0 and q4_k and a Llama one at q4_k (hidden
 *    384: Q4_K falls back to Q4_0 there) converted with
 *    miser_precision_prepare: a Conv1D weight's cache blocks equal
 *    llama.cpp's quantizer on the transposed source; the blocks carried into
 *    a GGUF file (tools/gguf/cache_to_gguf.py) give with the reference
 *    kernels the last logits of a numpy float64 forward of that file
 *    (tools/gguf/ref_gguf.py, gguf-py's decoder) within 1e-4 relative L2
 *    (f32 KV cache), with the best kernels the same logits as miser on that
 *    GGUF bit for bit (GPT-2; Llama within 1e-5: permuted q/k rows),
 *    and greedy tokens identical to llama.cpp's on it where numpy's top-2
 *    margin exceeds 0.5 (tests/test_gguf.c's 4-bit tolerance);
 *  - the cache is reused on the next run, and a cache file that no longer
 *    matches what its header says is exit 3 naming it.
 * Tests that need `make peers` skip with a message without it. */
#include <criterion/criterion.h>

#include "json_support.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "kernels/quant4.h"
#include "miser/alloc.h"
#include "miser/model.h"
#include "miser/precision.h"
#include "miser/runtime.h"

#define PY "/usr/bin/python3"
#define TOOLS MISER_SOURCE_DIR "/tools"
#define MISER MISER_BUILD_DIR "/miser"
#define TINY MISER_SOURCE_DIR "/tests/data/hf-tiny-a"
#define GGUF_PY TOOLS "/peers/node_modules/.miser-llama.cpp/gguf-py/gguf/__init__.py"

static char g_tmp[64];

static void setup_tmp(void) { cr_assert_eq(test_tmpdir_make(g_tmp, sizeof g_tmp, "/tmp/miser-q4c-XXXXXX"), 0); }

static void teardown_tmp(void) { test_tmpdir_remove(g_tmp); }

TestSuite(quant_convert, .init = setup_tmp, .fini = teardown_tmp);

static int have_ggml(void) { return test_sh(PY " " TOOLS "/gguf/ggml_quantize.py --check 2>/dev/null") == 0; }
static int have_gguf_py(void) { return access(GGUF_PY, R_OK) == 0; }
static int have_llamacpp(void)
{
    return have_gguf_py() && access(TOOLS "/peers/node_modules/node-llama-cpp/package.json", R_OK) == 0 &&
           access("/usr/bin/node", X_OK) == 0;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f && fwrite(p, 1, n, f) == n);
    fclose(f);
}

/* llama.cpp's blocks of x (n floats) for type `ty`, into out (cap bytes) */
static size_t ggml_blocks(const char *ty, const float *x, int64_t n, unsigned char *out, size_t cap)
{
    char in[128], res[128];
    snprintf(in, sizeof in, "%s/x.f32", g_tmp);
    snprintf(res, sizeof res, "%s/x.%s", g_tmp, ty);
    write_bytes(in, x, sizeof(float) * (size_t)n);
    cr_assert_eq(test_sh(PY " " TOOLS "/gguf/ggml_quantize.py %s '%s' '%s' %s", ty, in, res,
                    strcmp(ty, "q4_0") ? "" : "--gguf-py"), 0, "ggml_quantize.py %s", ty);
    size_t len = 0;
    char *b = test_read_file(res, &len);
    cr_assert(b && len <= cap);
    memcpy(out, b, len);
    free(b);
    return len;
}

static uint32_t g_rng = 12345;
static float urand(void)
{
    g_rng = g_rng * 1664525u + 1013904223u;
    return (float)((g_rng >> 8) + 0.5) / 16777216.0f;
}
static float nrand(void) { return sqrtf(-2.0f * logf(urand())) * cosf(6.2831853f * urand()); }

/* 48 blocks of 256 values with the cases a quantizer gets wrong */
#define NB 48
static void awkward(float *x)
{
    for (int b = 0; b < NB; b++) {
        float *v = x + b * 256;
        const float scale = b < 8 ? 1.0f : b < 12 ? 1e-3f : b < 14 ? 1e3f : b < 16 ? 1e-6f : 0.05f;
        for (int i = 0; i < 256; i++) v[i] = nrand() * scale;
        switch (b) {
        case 16: memset(v, 0, 256 * sizeof *v); break;                 /* all zero */
        case 17: for (int i = 0; i < 256; i++) v[i] = 0.25f; break;    /* constant positive */
        case 18: for (int i = 0; i < 256; i++) v[i] = -fabsf(v[i]); break; /* one sign */
        case 19: for (int i = 0; i < 256; i++) v[i] = fabsf(v[i]); break;
        case 20: memset(v, 0, 256 * sizeof *v); v[77] = 3.0f; break;   /* one outlier in zeros */
        case 21: v[5] = 40.0f; break;                                   /* one outlier */
        case 22: for (int i = 0; i < 256; i++) v[i] = (float)((i % 17) - 8) * 0.125f; break; /* ties */
        case 23: for (int i = 0; i < 128; i++) v[i] = 0; break;        /* zero sub-blocks */
        case 24: for (int i = 0; i < 256; i++) v[i] = i % 32 == 3 ? -1.0f : 0.01f * nrand(); break;
        case 25: for (int i = 0; i < 256; i++) v[i] = 1e-20f * nrand(); break; /* below f16 */
        case 26: for (int i = 0; i < 256; i++) v[i] = -0.0f; break;
        default: break;
        }
    }
}

Test(quant_convert, blocks_identical_to_llamacpp_quantizers, .timeout = 60)
{
    if (!have_ggml()) cr_skip_test("llama.cpp's libggml-base.so is not installed (make peers)");
    static float x[NB * 256];
    static unsigned char mine[NB * 8 * MISER_Q8_0_BYTES], ref[NB * 8 * MISER_Q8_0_BYTES]; /* the largest */
    awkward(x);
    static const struct { const char *ty; miser_dtype dt; } ts[] = {
        {"q4_0", MISER_DTYPE_Q4_0}, {"q4_k", MISER_DTYPE_Q4_K}, {"q6_k", MISER_DTYPE_Q6_K}, {"q8_0", MISER_DTYPE_Q8_0}};
    for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
        const size_t bytes = miser_dtype_bytes(ts[t].dt, NB * 256);
        miser_quantize_blocks(ts[t].dt, x, NB * 256, mine);
        cr_assert_eq(ggml_blocks(ts[t].ty, x, NB * 256, ref, sizeof ref), bytes);
        for (size_t i = 0; i < bytes; i++)
            cr_assert_eq(mine[i], ref[i], "%s: byte %zu (block %zu) differs from llama.cpp's: %u vs %u", ts[t].ty, i,
                         i / miser_dtype_block_bytes(ts[t].dt), mine[i], ref[i]);
    }
}

Test(quant_convert, round_trip_within_documented_bounds)
{
    enum { N = 64 * 256 };
    static float x[N], back[N];
    static unsigned char q[N];
    g_rng = 777;
    for (int i = 0; i < N; i++) x[i] = nrand() * 0.02f;
    x[100] = 0.5f; /* an outlier */
    /* Q4_0: per element at most |d| (the clipped end of the range), d the
     * block's f16 scale */
    miser_quantize_q4_0(x, N, q);
    miser_to_f32(MISER_DTYPE_Q4_0, q, 0, N, back);
    for (int b = 0; b < N / 32; b++) {
        uint16_t h;
        memcpy(&h, q + b * MISER_Q4_0_BYTES, 2);
        const double d = fabs(miser_f16_to_f32(h));
        for (int i = b * 32; i < b * 32 + 32; i++)
            cr_assert(fabs((double)back[i] - x[i]) <= d * (1 + 1e-6), "q4_0 [%d]: %g vs %g (d %g)", i, back[i], x[i], d);
    }
    /* Q4_K and Q6_K: relative RMS error over the Gaussian values (docs/gguf.md:
     * 4-bit 0.12, 6-bit 0.03; measured 0.09 and 0.02 here) */
    static const struct { miser_dtype dt; double bound; } ks[] = {{MISER_DTYPE_Q4_K, 0.12}, {MISER_DTYPE_Q6_K, 0.03},
                                                                   {MISER_DTYPE_Q4_0, 0.15}};
    for (int k = 0; k < 3; k++) {
        miser_quantize_blocks(ks[k].dt, x, N, q);
        miser_to_f32(ks[k].dt, q, 0, N, back);
        double num = 0, den = 0;
        for (int i = 0; i < N; i++) {
            num += ((double)back[i] - x[i]) * ((double)back[i] - x[i]);
            den += (double)x[i] * x[i];
        }
        cr_log_info("%s: relative RMS error %.4f", miser_dtype_name(ks[k].dt), sqrt(num / den));
        cr_assert(sqrt(num / den) <= ks[k].bound, "%s: relative RMS error %.4f > %.2f", miser_dtype_name(ks[k].dt),
                  sqrt(num / den), ks[k].bound);
    }
}

Test(quant_convert, target_rules)
{
    const miser_dtype F32 = MISER_DTYPE_F32, F16 = MISER_DTYPE_F16, Q40 = MISER_DTYPE_Q4_0, Q4K = MISER_DTYPE_Q4_K;
    cr_assert_eq(miser_precision_target(F32, 2, 256, Q40), Q40);
    cr_assert_eq(miser_precision_target(F32, 2, 96, Q40), Q40);
    cr_assert_eq(miser_precision_target(F32, 2, 50, Q40), F16);  /* no whole blocks */
    cr_assert_eq(miser_precision_target(F32, 1, 256, Q40), F32); /* norms, biases */
    cr_assert_eq(miser_precision_target(F32, 2, 512, Q4K), Q4K);
    cr_assert_eq(miser_precision_target(F32, 2, 960, Q4K), Q40); /* K % 256 != 0: q4_0 */
    cr_assert_eq(miser_precision_target(F32, 2, 40, Q4K), F16);
    cr_assert_eq(miser_precision_target(MISER_DTYPE_BF16, 2, 256, Q4K), Q4K);
    cr_assert_eq(miser_precision_target(MISER_DTYPE_Q8_0, 2, 256, Q40), MISER_DTYPE_Q8_0); /* never twice */
    cr_assert_eq(miser_precision_target(Q40, 2, 256, MISER_DTYPE_F16), Q40);
    /* the embeddings and the head stay wider */
    cr_assert_eq(miser_precision_tensor_target("wte.weight", F32, 2, 1024, Q40), MISER_DTYPE_Q6_K);
    cr_assert_eq(miser_precision_tensor_target("lm_head.weight", F32, 2, 960, Q4K), MISER_DTYPE_Q8_0);
    cr_assert_eq(miser_precision_tensor_target("model.embed_tokens.weight", F16, 2, 40, Q4K), F16);
    cr_assert_eq(miser_precision_tensor_target("wpe.weight", F32, 2, 256, MISER_DTYPE_Q8_0), MISER_DTYPE_Q8_0);
    cr_assert_eq(miser_precision_tensor_target("h.0.mlp.c_fc.weight", F32, 2, 1024, Q40), Q40);
    /* the CLI takes them; q6_k is a block type, not a precision */
    char err[128];
    snprintf(err, sizeof err, "%s/err", g_tmp);
    cr_assert_eq(test_sh("'%s' generate --model '%s' --prompt Hi --precision q6_k >/dev/null 2>'%s'", MISER, TINY, err), 2);
    char *e = test_read_file(err, NULL);
    cr_assert(e && strstr(e, "q4_0, q4_k"), "%s", e);
    free(e);
}

/* ---- checkpoints through the cache, against numpy and llama.cpp ----------- */

static const int32_t PROMPT[] = {1, 2, 3, 17, 4};
#define N_PROMPT 5
#define N_GREEDY 12
#define TOL_Q4 0.5

static float *run_logits(const char *path, const char *kernels, int32_t *greedy)
{
    cr_assert_eq(miser_kernels_select(kernels), 0);
    miser_model *m;
    miser_plan *p;
    miser_session *s;
    cr_assert_eq(miser_model_open(path, &m), MISER_OK, "%s", miser_error_message());
    const int64_t V = miser_model_config(m)->n_vocab;
    cr_assert_eq(miser_plan_compile(m, NULL, &p), MISER_OK, "%s", miser_error_message());
    /* an f32 KV cache (the Llama family's default is f16): numpy's arithmetic */
    const miser_session_options so = {.kv_f16 = -1};
    cr_assert_eq(miser_session_create(p, &so, &s), MISER_OK, "%s", miser_error_message());
    const float *lg;
    cr_assert_eq(miser_session_eval(s, PROMPT, N_PROMPT, &lg), MISER_OK, "%s", miser_error_message());
    float *last = malloc(sizeof(float) * (size_t)(V + 1));
    memcpy(last, lg, sizeof(float) * (size_t)V);
    last[V] = (float)V;
    for (int i = 0; greedy && i < N_GREEDY; i++) {
        int b = 0;
        for (int64_t v = 1; v < V; v++)
            if (lg[v] > lg[b]) b = (int)v;
        greedy[i] = b;
        cr_assert_eq(miser_session_eval(s, &greedy[i], 1, &lg), MISER_OK);
    }
    miser_session_free(s);
    miser_plan_free(p);
    miser_model_free(m);
    cr_assert_eq(miser_kernels_select("auto"), 0);
    return last;
}

static const miser_tensor_info *need(const miser_model *m, const char *name, miser_dtype dt)
{
    const miser_tensor_info *t = miser_model_tensor(m, name);
    cr_assert(t, "cache lacks %s", name);
    cr_assert_eq(t->dtype, dt, "%s: %s, expected %s", name, miser_dtype_name(t->dtype), miser_dtype_name(dt));
    return t;
}

typedef struct {
    const char *base, *prec;
    miser_dtype pdt;
} conv_case;

static const conv_case CASES[] = {{"g", "q4_0", MISER_DTYPE_Q4_0}, {"g", "q4_k", MISER_DTYPE_Q4_K},
                                  {"l", "q4_k", MISER_DTYPE_Q4_K}};
#define N_CASES (sizeof CASES / sizeof CASES[0])

Test(quant_convert, checkpoints_against_numpy_and_llamacpp, .timeout = 180)
{
    if (!have_gguf_py() || !have_ggml()) cr_skip_test("gguf-py or llama.cpp's libggml is not installed (make peers)");
    const int lc = have_llamacpp();
    if (!lc) fprintf(stderr, "quant_convert: node-llama-cpp is not installed: llama.cpp comparisons skipped\n");
    cr_assert_eq(test_sh("set -e; cd '%s'; " PY " " TOOLS "/make_checkpoint.py --out g --layers 2 --embd 256 --heads 4 "
                    "--vocab 512 --ctx 64 --std 0.2 --seed 4 >/dev/null; " PY " " TOOLS "/make_llama_checkpoint.py --out l "
                    "--layers 2 --hidden 384 --heads 6 --kv-heads 2 --inner 512 --vocab 512 --seed 5 --std 0.05 --untied "
                    ">/dev/null; " PY " " TOOLS "/peers/to_gguf.py --model g --out g.f32.gguf --precision f32 2>/dev/null & "
                    PY " " TOOLS "/peers/to_gguf_llama.py --model l --out l.f32.gguf --precision f32 2>/dev/null & wait",
                    g_tmp), 0);
    char cache[128], dirs[N_CASES][512], list[2048] = "";
    snprintf(cache, sizeof cache, "%s/cache", g_tmp);
    miser_precision_options o = {.cache_dir = cache};
    for (size_t c = 0; c < N_CASES; c++) {
        char src[128], *dir = NULL, note[512];
        int conv = 0;
        snprintf(src, sizeof src, "%s/%s", g_tmp, CASES[c].base);
        cr_assert_eq(miser_precision_prepare(src, CASES[c].pdt, &o, &dir, note, sizeof note, &conv), MISER_OK, "%s",
                     miser_error_message());
        cr_assert_eq(conv, 1);
        snprintf(dirs[c], sizeof dirs[c], "%s", dir);
        miser_free(dir);
        /* reused on the next run */
        cr_assert_eq(miser_precision_prepare(src, CASES[c].pdt, &o, &dir, note, sizeof note, &conv), MISER_OK);
        cr_assert_eq(conv, 0);
        cr_assert_str_eq(dir, dirs[c]);
        miser_free(dir);
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s/%s.%sc.gguf", l ? "," : "", g_tmp, CASES[c].base, CASES[c].prec);
        cr_assert_eq(test_sh(PY " " TOOLS "/gguf/cache_to_gguf.py '%s/%s.f32.gguf' '%s' '%s/%s.%sc.gguf'", g_tmp,
                        CASES[c].base, dirs[c], g_tmp, CASES[c].base, CASES[c].prec), 0);
    }
    char ids[64];
    size_t k = 0;
    for (int i = 0; i < N_PROMPT; i++) k += (size_t)snprintf(ids + k, sizeof ids - k, "%s%d", i ? "," : "", PROMPT[i]);
    cr_assert_eq(test_sh("bash -c \"" PY " " TOOLS "/gguf/ref_gguf.py --model %s --ids %s --steps %d >/dev/null & %s%s%s%s%s "
                    "wait\"", list, ids, N_GREEDY, lc ? "node " TOOLS "/gguf/llamacpp_gguf.js --models " : "", lc ? list : "",
                    lc ? " --prompt-ids " : "", lc ? ids : "", lc ? " --max-new-tokens 12 2>/dev/null &" : ""), 0);

    /* the layout: what is 4-bit, what stays wider */
    {
        miser_model *m;
        cr_assert_eq(miser_model_open(dirs[0], &m), MISER_OK, "%s", miser_error_message());
        const miser_tensor_info *t = need(m, "h.0.mlp.c_fc.weight", MISER_DTYPE_Q4_0);
        cr_assert(t->shape[0] == 256 && t->shape[1] == 1024 && t->stride[0] == 1 && t->stride[1] == 256,
                  "Conv1D weight shown as [K, N] with strides {1, K}");
        need(m, "wte.weight", MISER_DTYPE_Q6_K);
        need(m, "wpe.weight", MISER_DTYPE_Q6_K);
        need(m, "h.1.ln_2.weight", MISER_DTYPE_F32);
        need(m, "h.1.attn.c_attn.bias", MISER_DTYPE_F32);
        /* its blocks: llama.cpp's quantizer on the transposed source, row by row */
        miser_model *s;
        char src[128];
        snprintf(src, sizeof src, "%s/g", g_tmp);
        cr_assert_eq(miser_model_open(src, &s), MISER_OK);
        const miser_tensor_info *w = need(s, "h.0.mlp.c_fc.weight", MISER_DTYPE_F32);
        float *tr = malloc(sizeof(float) * 256 * 1024);
        for (int n = 0; n < 1024; n++)
            for (int kk = 0; kk < 256; kk++) tr[n * 256 + kk] = ((const float *)w->data)[kk * 1024 + n];
        const size_t bytes = miser_dtype_bytes(MISER_DTYPE_Q4_0, 256 * 1024);
        unsigned char *ref = malloc(bytes);
        cr_assert_eq(ggml_blocks("q4_0", tr, 256 * 1024, ref, bytes), bytes);
        cr_assert(!memcmp(ref, t->data, bytes), "h.0.mlp.c_fc.weight: cache blocks differ from llama.cpp's");
        free(tr);
        free(ref);
        miser_model_free(s);
        miser_model_free(m);
        cr_assert_eq(miser_model_open(dirs[2], &m), MISER_OK, "%s", miser_error_message());
        need(m, "model.layers.0.self_attn.q_proj.weight", MISER_DTYPE_Q4_0); /* K 384: q4_k falls back */
        need(m, "model.layers.0.mlp.down_proj.weight", MISER_DTYPE_Q4_K);    /* K 512 */
        need(m, "model.embed_tokens.weight", MISER_DTYPE_Q8_0);              /* row 384: not Q6_K */
        need(m, "lm_head.weight", MISER_DTYPE_Q8_0);
        need(m, "model.norm.weight", MISER_DTYPE_F32);
        miser_model_free(m);
    }

    for (size_t c = 0; c < N_CASES; c++) {
        char gg[160], ref[200], lcp[200];
        snprintf(gg, sizeof gg, "%s/%s.%sc.gguf", g_tmp, CASES[c].base, CASES[c].prec);
        snprintf(ref, sizeof ref, "%s.ref.json", gg);
        snprintf(lcp, sizeof lcp, "%s.lc.json", gg);
        cJSON *r = test_read_json(ref);
        const cJSON *last = cJSON_GetObjectItem(r, "last_logits"), *margins = cJSON_GetObjectItem(r, "margins");
        /* reference kernels on the cache: numpy's forward of the same blocks */
        float *lg = run_logits(dirs[c], "ref", NULL);
        const int64_t V = (int64_t)lg[cJSON_GetArraySize(last)];
        cr_assert_eq(cJSON_GetArraySize(last), V);
        double num = 0, den = 0;
        for (int64_t v = 0; v < V; v++) {
            const double want = cJSON_GetArrayItem(last, (int)v)->valuedouble;
            num += (lg[v] - want) * (lg[v] - want);
            den += want * want;
        }
        cr_assert(sqrt(num / den) < 1e-4, "%s: last logits %.3g relative L2 from numpy", dirs[c], sqrt(num / den));
        free(lg);
        /* the best kernels: the cache runs as the GGUF file with its blocks —
         * bit for bit for GPT-2; for Llama the GGUF's q/k rows are permuted
         * (adjacent-pair rotation), which reorders each q . k sum */
        int32_t gc[N_GREEDY], gf[N_GREEDY];
        float *a = run_logits(dirs[c], "auto", gc), *b = run_logits(gg, "auto", gf);
        if (CASES[c].base[0] == 'g') {
            cr_assert(!memcmp(a, b, sizeof(float) * (size_t)V), "%s: logits differ from the GGUF file's", dirs[c]);
            cr_assert(!memcmp(gc, gf, sizeof gc));
        } else {
            num = den = 0;
            for (int64_t v = 0; v < V; v++) {
                num += ((double)a[v] - b[v]) * ((double)a[v] - b[v]);
                den += (double)b[v] * b[v];
            }
            cr_assert(sqrt(num / den) < 1e-5, "%s: logits %.3g relative L2 from the GGUF file's", dirs[c], sqrt(num / den));
        }
        free(a);
        free(b);
        if (lc) {
            cJSON *l = test_read_json(lcp);
            const cJSON *li = cJSON_GetObjectItem(l, "ids");
            cr_assert_eq(cJSON_GetArraySize(li), N_GREEDY, "%s: llama.cpp ran", gg);
            int same = 0;
            for (int i = 0; i < N_GREEDY; i++) {
                const int want = cJSON_GetArrayItem(li, i)->valueint;
                if (gc[i] != want) {
                    cr_assert(cJSON_GetArrayItem(margins, i)->valuedouble < TOL_Q4,
                              "%s: token %d: miser %d, llama.cpp %d (numpy margin %.3g)", dirs[c], i, gc[i], want,
                              cJSON_GetArrayItem(margins, i)->valuedouble);
                    break;
                }
                same++;
            }
            cr_log_info("%s %s: %d of %d greedy tokens as llama.cpp", CASES[c].base, CASES[c].prec, same, N_GREEDY);
            cJSON_Delete(l);
        }
        cJSON_Delete(r);
    }
}

Test(quant_convert, bad_cache_file_exit_3_naming_it, .timeout = 60)
{
    char err[128], cache[128];
    snprintf(err, sizeof err, "%s/err", g_tmp);
    snprintf(cache, sizeof cache, "%s/cache", g_tmp);
    cr_assert_eq(test_sh("MISER_CACHE_DIR='%s' '%s' generate --model '%s' --prompt Hi --max-new-tokens 2 --precision q4_0 "
                    ">/dev/null 2>'%s'", cache, MISER, TINY, err), 0);
    /* the same command again reuses it (no "converted" line) */
    cr_assert_eq(test_sh("MISER_CACHE_DIR='%s' '%s' generate --model '%s' --prompt Hi --max-new-tokens 2 --precision q4_0 "
                    ">/dev/null 2>'%s'", cache, MISER, TINY, err), 0);
    char *e = test_read_file(err, NULL);
    cr_assert(e && !strstr(e, "converted the weights"), "%s", e);
    free(e);
    /* its header intact (so it still matches its source) but its data cut short */
    char cmd[512], file[400];
    snprintf(cmd, sizeof cmd, "ls %s/converted/*-q4_0/model.safetensors", cache);
    FILE *p = popen(cmd, "r");
    cr_assert(p && fgets(file, sizeof file, p));
    pclose(p);
    file[strcspn(file, "\n")] = 0;
    struct stat sb;
    cr_assert_eq(stat(file, &sb), 0);
    cr_assert_eq(truncate(file, sb.st_size - 1000), 0);
    cr_assert_eq(test_sh("MISER_CACHE_DIR='%s' '%s' generate --model '%s' --prompt Hi --max-new-tokens 2 --precision q4_0 "
                    ">/dev/null 2>'%s'", cache, MISER, TINY, err), 3);
    e = test_read_file(err, NULL);
    cr_assert(e && strstr(e, file) && strchr(e, '\n') == e + strlen(e) - 1, "one line naming %s: %s", file, e);
    free(e);
}
