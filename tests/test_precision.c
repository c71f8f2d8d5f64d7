/* Precision suite: the converted-weights cache (conversion rules, reuse,
 * stale rebuild, interrupted and cancelled writes leave no file under the
 * final name, q8_0 Conv1D weights stored transposed with blocks along K and
 * checked against a column-wise quantisation computed here) and end-to-end
 * accuracy of f16/bf16/q8_0 against f32 on the reference checkpoint
 * tests/data/hf-tiny-a, within the tolerances documented in docs/kernels.md,
 * with every kernel set this CPU runs. */
#include <criterion/criterion.h>

#include "kernels/kernels.h"
#include "miser/alloc.h"
#include "miser/graph.h"
#include "miser/model.h"
#include "miser/precision.h"
#include "miser/runtime.h"
#include "miser/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TINY MISER_SOURCE_DIR "/tests/data/hf-tiny-a"

static char *mk_tmp(void)
{
    char *d = strdup("/tmp/miser-prec-XXXXXX");
    cr_assert(mkdtemp(d));
    return d;
}

static void rm_rf(const char *d)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    cr_assert_eq(system(cmd), 0);
}

/* number of files under dir (recursively) whose name equals `name` */
static int count_named(const char *dir, const char *name)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "find '%s' -name '%s' | wc -l", dir, name);
    FILE *f = popen(cmd, "r");
    int n = -1;
    cr_assert(f && fscanf(f, "%d", &n) == 1);
    pclose(f);
    return n;
}

Test(precision, target_rules)
{
    cr_assert_eq(miser_precision_target(MISER_DTYPE_F32, 2, 64, MISER_DTYPE_F16), MISER_DTYPE_F16);
    cr_assert_eq(miser_precision_target(MISER_DTYPE_BF16, 2, 64, MISER_DTYPE_F32), MISER_DTYPE_BF16); /* never widen */
    cr_assert_eq(miser_precision_target(MISER_DTYPE_F16, 2, 64, MISER_DTYPE_BF16), MISER_DTYPE_F16);  /* no 16<->16 */
    cr_assert_eq(miser_precision_target(MISER_DTYPE_F32, 2, 64, MISER_DTYPE_Q8_0), MISER_DTYPE_Q8_0);
    cr_assert_eq(miser_precision_target(MISER_DTYPE_F32, 2, 50, MISER_DTYPE_Q8_0), MISER_DTYPE_F16); /* no whole blocks */
    cr_assert_eq(miser_precision_target(MISER_DTYPE_F32, 1, 64, MISER_DTYPE_Q8_0), MISER_DTYPE_F32); /* norms, biases */
    cr_assert_eq(miser_precision_target(MISER_DTYPE_F32, 1, 64, MISER_DTYPE_F16), MISER_DTYPE_F16);
    cr_assert_eq(miser_precision_target(MISER_DTYPE_BF16, 2, 64, MISER_DTYPE_Q8_0), MISER_DTYPE_Q8_0);
}

Test(precision, q8_0_quantisation_error_is_half_a_step)
{
    float x[96], back[96];
    uint8_t q[3 * MISER_Q8_0_BYTES];
    for (int i = 0; i < 96; i++) x[i] = sinf((float)i * 0.7f) * (i < 32 ? 1.0f : i < 64 ? 1e-3f : 0.0f);
    miser_quantize_q8_0(x, 96, q);
    miser_to_f32(MISER_DTYPE_Q8_0, q, 0, 96, back);
    for (int b = 0; b < 3; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        /* step d = amax/127 (stored as f16: relative error 2^-11) */
        float d = amax / 127.0f;
        for (int i = 0; i < 32; i++)
            cr_assert(fabsf(back[b * 32 + i] - x[b * 32 + i]) <= 0.5f * d + amax * 1e-3f + 1e-30f, "block %d [%d]: %g vs %g",
                      b, i, back[b * 32 + i], x[b * 32 + i]);
    }
}

/* last-position logits of `prompt` through a fresh plan on dir */
static float *logits_of(const char *dir, const int32_t *ids, int n, int64_t *V, miser_status *st_out)
{
    miser_model *m = NULL;
    miser_plan *p = NULL;
    miser_session *s = NULL;
    float *out = NULL;
    const float *lg;
    miser_status st = miser_model_open(dir, &m);
    if (!st) st = miser_plan_compile(m, NULL, &p);
    if (!st) st = miser_session_create(p, NULL, &s);
    if (!st) st = miser_session_eval(s, ids, n, &lg);
    if (!st) {
        *V = miser_model_config(m)->n_vocab;
        out = malloc(sizeof(float) * (size_t)*V);
        memcpy(out, lg, sizeof(float) * (size_t)*V);
    }
    *st_out = st;
    miser_session_free(s);
    miser_plan_free(p);
    miser_model_free(m);
    return out;
}

static int argmax(const float *v, int64_t n, float *margin)
{
    int64_t b = 0, s = -1;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    for (int64_t i = 0; i < n; i++)
        if (i != b && (s < 0 || v[i] > v[s])) s = i;
    *margin = v[b] - v[s];
    return (int)b;
}

/* Tolerances (docs/kernels.md): max |logit - logit_f32| relative to the f32
 * logits' spread (max - min). `kernels`: a set to force, NULL for the default. */
static void check_precision(miser_dtype prec, float rel_tol, const char *kernels)
{
    if (kernels) cr_assert_eq(miser_kernels_select(kernels), 0, "kernel set %s", kernels);
    cr_log_info("%s with the %s kernels", miser_dtype_name(prec), miser_kernels_get()->name);
    char *cache = mk_tmp();
    miser_precision_options o = {.cache_dir = cache};
    char *dir = NULL, note[512];
    int conv = 0;
    cr_assert_eq(miser_precision_prepare(TINY, prec, &o, &dir, note, sizeof note, &conv), MISER_OK, "%s",
                 miser_error_message());
    cr_assert_eq(conv, 1);
    static const int32_t prompts[3][5] = {{15496, 11, 616, 1438, 318}, {464, 2068, 7586, 21831, 18045}, {40, 1101, 257, 3303, 13}};
    for (int pi = 0; pi < 3; pi++) {
        int64_t V = 0, V2 = 0;
        miser_status st;
        float *ref = logits_of(TINY, prompts[pi], 5, &V, &st);
        cr_assert_eq(st, MISER_OK, "%s", miser_error_message());
        float *got = logits_of(dir, prompts[pi], 5, &V2, &st);
        cr_assert_eq(st, MISER_OK, "%s", miser_error_message());
        cr_assert_eq(V, V2);
        float lo = ref[0], hi = ref[0], maxd = 0;
        for (int64_t i = 0; i < V; i++) {
            lo = fminf(lo, ref[i]);
            hi = fmaxf(hi, ref[i]);
            maxd = fmaxf(maxd, fabsf(got[i] - ref[i]));
        }
        float tol = rel_tol * (hi - lo);
        cr_log_info("%s prompt %d: max |dlogit| %g, spread %g (%.2e of it)", miser_dtype_name(prec), pi, maxd, hi - lo,
                    maxd / (hi - lo));
        cr_assert(maxd <= tol, "%s prompt %d: max |dlogit| %g > tolerance %g", miser_dtype_name(prec), pi, maxd, tol);
        float mr, mg;
        int br = argmax(ref, V, &mr), bg = argmax(got, V, &mg);
        if (mr > 2 * tol) cr_assert_eq(br, bg, "%s prompt %d: greedy token differs with margin %g", miser_dtype_name(prec), pi, mr);
        free(ref);
        free(got);
    }
    miser_free(dir);
    rm_rf(cache);
    free(cache);
}

Test(precision, f16_logits_within_tolerance, .timeout = 60) { check_precision(MISER_DTYPE_F16, 2e-3f, NULL); }
Test(precision, bf16_logits_within_tolerance, .timeout = 60) { check_precision(MISER_DTYPE_BF16, 1.5e-2f, NULL); }
/* the default set (AVX-512 or AVX2 where the CPU has them), then every other
 * set it runs: each reads the transposed q8_0 weights in the dot layout */
Test(precision, q8_0_logits_within_tolerance, .timeout = 60) { check_precision(MISER_DTYPE_Q8_0, 1.5e-2f, NULL); }
Test(precision, q8_0_logits_within_tolerance_every_kernel_set, .timeout = 120)
{
    char sets[64];
    snprintf(sets, sizeof sets, "%s", miser_kernels_available());
    for (char *k = strtok(sets, " "); k; k = strtok(NULL, " ")) check_precision(MISER_DTYPE_Q8_0, 1.5e-2f, k);
}

static void copy_tiny(const char *dst)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp '%s/config.json' '%s/model.safetensors' '%s/'", TINY, TINY, dst);
    cr_assert_eq(system(cmd), 0);
}

Test(precision, cache_reused_then_rebuilt_when_stale, .timeout = 60)
{
    char *src = mk_tmp(), *cache = mk_tmp();
    copy_tiny(src);
    miser_precision_options o = {.cache_dir = cache};
    char *d1 = NULL, *d2 = NULL, *d3 = NULL, note[512];
    int conv = 0;
    cr_assert_eq(miser_precision_prepare(src, MISER_DTYPE_F16, &o, &d1, note, sizeof note, &conv), MISER_OK);
    cr_assert_eq(conv, 1);
    cr_assert_str_neq(d1, src);
    cr_assert_eq(miser_precision_prepare(src, MISER_DTYPE_F16, &o, &d2, note, sizeof note, &conv), MISER_OK);
    cr_assert_eq(conv, 0, "a valid cache must be reused");
    cr_assert_str_eq(d1, d2);
    cr_assert_str_eq(note, "");
    /* change the source's content (same size): the cache is stale */
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", src);
    FILE *f = fopen(p, "r+b");
    cr_assert(f);
    fseek(f, -4, SEEK_END);
    fwrite("\x01\x02\x03\x04", 1, 4, f);
    fclose(f);
    cr_assert_eq(miser_precision_prepare(src, MISER_DTYPE_F16, &o, &d3, note, sizeof note, &conv), MISER_OK, "%s",
                 miser_error_message());
    cr_assert_eq(conv, 1, "a stale cache must be rebuilt");
    cr_assert(strstr(note, "rebuilt"), "note: %s", note);
    miser_free(d1);
    miser_free(d2);
    miser_free(d3);
    rm_rf(src);
    rm_rf(cache);
    free(src);
    free(cache);
}

static int cancel_after_first(void *user, uint64_t done, uint64_t total)
{
    (void)user;
    return done < total; /* cancel at the first call */
}

static int die_midway(void *user, uint64_t done, uint64_t total)
{
    (void)user;
    if (done * 2 >= total) _exit(7); /* as if killed mid-conversion */
    return 0;
}

Test(precision, interrupted_or_cancelled_conversion_leaves_no_file, .timeout = 60)
{
    char *cache = mk_tmp();
    miser_precision_options o = {.cache_dir = cache, .progress = cancel_after_first};
    char *d = NULL, note[256];
    cr_assert_eq(miser_precision_prepare(TINY, MISER_DTYPE_F16, &o, &d, note, sizeof note, NULL), MISER_ERR_INVALID);
    cr_assert_null(d);
    cr_assert_eq(count_named(cache, "model.safetensors"), 0);
    cr_assert_eq(count_named(cache, "model.safetensors.tmp.*"), 0, "a cancelled conversion removes its temporary");
    /* a process that dies mid-write: the temporary may stay, the final name must not exist */
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        miser_precision_options od = {.cache_dir = cache, .progress = die_midway};
        char *dd = NULL;
        miser_precision_prepare(TINY, MISER_DTYPE_F16, &od, &dd, NULL, 0, NULL);
        _exit(0);
    }
    int ws;
    waitpid(pid, &ws, 0);
    cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 7);
    cr_assert_eq(count_named(cache, "model.safetensors"), 0);
    /* the next run converts cleanly and clears the leftover */
    o.progress = NULL;
    int conv = 0;
    cr_assert_eq(miser_precision_prepare(TINY, MISER_DTYPE_F16, &o, &d, note, sizeof note, &conv), MISER_OK);
    cr_assert_eq(conv, 1);
    cr_assert_eq(count_named(cache, "model.safetensors"), 1);
    cr_assert_eq(count_named(cache, "*.tmp.*"), 0);
    miser_free(d);
    rm_rf(cache);
    free(cache);
}

Test(precision, never_widens_a_narrow_checkpoint, .timeout = 60)
{
    char *src = mk_tmp(), *cache = mk_tmp();
    miser_gpt2_config c;
    cr_assert_eq(miser_gpt2_preset("tiny", &c), MISER_OK);
    miser_synth_options so = {.dtype = MISER_DTYPE_BF16, .seed = 3};
    cr_assert_eq(miser_synth_gpt2(src, &c, &so), MISER_OK, "%s", miser_error_message());
    miser_precision_options o = {.cache_dir = cache};
    char *d = NULL, note[512];
    int conv = 1;
    cr_assert_eq(miser_precision_prepare(src, MISER_DTYPE_F32, &o, &d, note, sizeof note, &conv), MISER_OK);
    cr_assert_eq(conv, 0);
    cr_assert_str_eq(d, src, "nothing to convert: the source itself is used");
    cr_assert(strstr(note, "bf16") && strstr(note, "never widens"), "note: %s", note);
    cr_assert_eq(count_named(cache, "model.safetensors"), 0);
    miser_free(d);
    cr_assert_eq(miser_precision_prepare(src, MISER_DTYPE_Q8_0, &o, &d, note, sizeof note, &conv), MISER_OK);
    cr_assert_eq(conv, 1, "narrowing bf16 to q8_0 converts");
    miser_free(d);
    cr_assert_eq(miser_precision_prepare(src, (miser_dtype)MISER_DTYPE_I32, &o, &d, note, sizeof note, &conv),
                 MISER_ERR_INVALID);
    rm_rf(src);
    rm_rf(cache);
    free(src);
    free(cache);
}

/* ---- q8_0 Conv1D weights stored transposed (cache format 2) ----------------- */

static int is_conv1d(const char *name)
{
    return !strncmp(name, "h.", 2) && (strstr(name, ".attn.c_attn.weight") || strstr(name, ".attn.c_proj.weight") ||
                                       strstr(name, ".mlp.c_fc.weight") || strstr(name, ".mlp.c_proj.weight"));
}

/* The cache file's raw header (JSON) */
static cJSON *raw_header(const char *dir)
{
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    FILE *f = fopen(p, "rb");
    cr_assert(f, "%s", p);
    unsigned char lb[8];
    cr_assert_eq(fread(lb, 1, 8, f), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | lb[i];
    char *h = malloc((size_t)n + 1);
    cr_assert_eq(fread(h, 1, (size_t)n, f), (size_t)n);
    h[n] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(h);
    free(h);
    cr_assert(j);
    return j;
}

/* Convert `src` to q8_0 under `cache` and check every tensor of the result
 * against the source: a Conv1D weight W [K, N] with K % 32 == 0 is stored as
 * [N, K], its column n quantised along K — compared byte for byte with
 * miser_quantize_q8_0 applied here to the gathered column, which shares
 * nothing with the converter's chunking — and loads as logical [K, N] with
 * strides {1, K}; everything else keeps its row-major layout. Returns the
 * number of transposed tensors; *out_dir receives the cache entry. */
static int check_transposed_cache(const char *src, const char *cache, char **out_dir)
{
    miser_precision_options o = {.cache_dir = cache};
    char *dir = NULL, note[512];
    int conv = 0;
    cr_assert_eq(miser_precision_prepare(src, MISER_DTYPE_Q8_0, &o, &dir, note, sizeof note, &conv), MISER_OK, "%s",
                 miser_error_message());
    cr_assert_eq(conv, 1);
    miser_model *ms = NULL, *mc = NULL;
    cr_assert_eq(miser_model_open(src, &ms), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_model_open(dir, &mc), MISER_OK, "%s", miser_error_message());
    cJSON *hdr = raw_header(dir);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(hdr, "__metadata__");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(md, "miser_cache_format");
    cr_assert(cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "2"));
    const cJSON *lst = cJSON_GetObjectItemCaseSensitive(md, "miser_transposed");
    const char *listed = cJSON_IsString(lst) ? lst->valuestring : "";
    int n_transposed = 0, n_listed = listed[0] ? 1 : 0;
    for (const char *c = listed; *c; c++) n_listed += *c == ',';
    cr_assert_eq(miser_model_tensor_count(ms), miser_model_tensor_count(mc));
    for (size_t i = 0; i < miser_model_tensor_count(ms); i++) {
        const miser_tensor_info *t = miser_model_tensor_at(ms, i), *c = miser_model_tensor(mc, t->name);
        cr_assert_not_null(c, "%s", t->name);
        cr_assert_eq(c->ndim, t->ndim);
        for (int d = 0; d < t->ndim; d++) cr_assert_eq(c->shape[d], t->shape[d], "%s: logical shape", t->name);
        const cJSON *raw = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(hdr, t->name), "shape");
        cr_assert(cJSON_IsArray(raw) && cJSON_GetArraySize(raw) == t->ndim, "%s", t->name);
        char needle[128], padded[4096];
        snprintf(needle, sizeof needle, ",%s,", t->name);
        snprintf(padded, sizeof padded, ",%s,", listed);
        int is_listed = strstr(padded, needle) != NULL;
        if (t->ndim == 2 && is_conv1d(t->name) && t->shape[0] % 32 == 0) {
            const int64_t K = t->shape[0], N = t->shape[1];
            n_transposed++;
            cr_assert(is_listed, "%s is not listed in miser_transposed (%s)", t->name, listed);
            cr_assert_eq(c->dtype, MISER_DTYPE_Q8_0, "%s", t->name);
            cr_assert_eq(cJSON_GetArrayItem(raw, 0)->valueint, N, "%s: stored [N, K]", t->name);
            cr_assert_eq(cJSON_GetArrayItem(raw, 1)->valueint, K, "%s: stored [N, K]", t->name);
            cr_assert_eq(c->stride[0], 1, "%s", t->name);
            cr_assert_eq(c->stride[1], K, "%s", t->name);
            cr_assert_eq(t->stride[0], N, "the source is row-major");
            size_t row = (size_t)(K / 32 * 34);
            cr_assert_eq(c->nbytes, row * (size_t)N);
            float *col = malloc(sizeof(float) * (size_t)K);
            uint8_t *want = malloc(row);
            for (int64_t n = 0; n < N; n++) {
                for (int64_t k = 0; k < K; k++) miser_to_f32(t->dtype, t->data, (uint64_t)(k * N + n), 1, &col[k]);
                miser_quantize_q8_0(col, K, want);
                cr_assert(!memcmp((const uint8_t *)c->data + (size_t)n * row, want, row),
                          "%s: stored row %lld is not column %lld quantised along K", t->name, (long long)n, (long long)n);
            }
            free(col);
            free(want);
        } else {
            cr_assert(!is_listed, "%s is listed in miser_transposed", t->name);
            for (int d = 0; d < t->ndim; d++)
                cr_assert_eq(cJSON_GetArrayItem(raw, d)->valueint, t->shape[d], "%s: stored as is", t->name);
            for (int64_t d = t->ndim - 1, st = 1; d >= 0; st *= c->shape[d--])
                cr_assert_eq(c->stride[d], st, "%s: row-major", t->name);
            if (c->dtype == t->dtype) cr_assert(!memcmp(c->data, t->data, t->nbytes), "%s: kept bytes", t->name);
        }
    }
    cr_assert_eq(n_listed, n_transposed, "miser_transposed: %s", listed);
    cJSON_Delete(hdr);
    miser_model_free(ms);
    miser_model_free(mc);
    *out_dir = dir;
    return n_transposed;
}

/* Every LINEAR of the compiled q8_0 plan reads its weight in the dot layout
 * (wsk = 1, wsn = K), and Q|K|V stay one LINEAR over c_attn. */
static void check_dot_layout_plan(const char *dir, miser_dtype want_dt)
{
    miser_model *m = NULL;
    miser_plan *p = NULL;
    cr_assert_eq(miser_model_open(dir, &m), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_plan_compile(m, NULL, &p), MISER_OK, "%s", miser_error_message());
    const miser_gpt2_config *c = miser_model_config(m);
    const miser_graph *g = miser_plan_graph(p);
    int lin = 0, qkv = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const miser_node *n = &g->nodes[i];
        if (n->op != MISER_OP_LINEAR) continue;
        const miser_node *w = &g->nodes[n->in[1]];
        lin++;
        cr_expect_eq(w->dtype, want_dt, "%s", n->name);
        cr_expect_eq(w->cst.stride[0], 1, "%s: wsk", n->name);
        cr_expect_eq(w->cst.stride[1], w->shape[0], "%s: wsn = K", n->name);
        if (w->shape[1] == 3 * c->n_embd) {
            char nm[64];
            snprintf(nm, sizeof nm, "h.%d.attn.c_attn.weight", qkv++);
            cr_expect_eq(w->cst.data, miser_model_tensor(m, nm)->data, "fused QKV reads c_attn in place");
        }
        cr_expect_eq(g->storage[w->cst.storage].owned, 0, "%s: a copy", n->name);
    }
    cr_expect_eq(lin, 4 * c->n_layer + 1, "QKV fused, c_proj, c_fc, mlp.c_proj per layer + logits");
    cr_expect_eq(qkv, c->n_layer);
    cr_expect_eq(g->materialized_bytes, 0);
    miser_plan_free(p);
    miser_model_free(m);
}

Test(precision, q8_0_cache_stores_conv1d_weights_transposed, .timeout = 60)
{
    char *cache = mk_tmp(), *dir = NULL;
    cr_assert_eq(check_transposed_cache(TINY, cache, &dir), 8, "2 layers x 4 Conv1D weights");
    check_dot_layout_plan(dir, MISER_DTYPE_Q8_0);
    miser_free(dir);
    rm_rf(cache);
    free(cache);
}

/* C = 576 (18 blocks): c_fc [576, 2304] and mlp.c_proj [2304, 576] take
 * several chunks of 2^20 elements with a short last one; an f16 source */
Test(precision, q8_0_transposed_across_chunks, .timeout = 120)
{
    char *src = mk_tmp(), *cache = mk_tmp(), *dir = NULL;
    miser_gpt2_config c = {.n_vocab = 300, .n_ctx = 16, .n_embd = 576, .n_head = 9, .n_layer = 1, .n_inner = 4 * 576,
                           .eps = 1e-5f, .eos_token_id = -1};
    miser_synth_options so = {.dtype = MISER_DTYPE_F16, .seed = 11};
    cr_assert_eq(miser_synth_gpt2(src, &c, &so), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(check_transposed_cache(src, cache, &dir), 4);
    check_dot_layout_plan(dir, MISER_DTYPE_Q8_0);
    miser_free(dir);
    rm_rf(src);
    rm_rf(cache);
    free(src);
    free(cache);
}

/* C = 48: K % 32 != 0 keeps the old rules (c_attn, attn.c_proj: f16 as their
 * rows are not whole blocks either; c_fc [48, 192]: q8_0 blocks along its
 * rows), while mlp.c_proj [192, 48] (K = 192) is stored transposed as q8_0;
 * the mixed model runs. */
Test(precision, q8_0_transposes_only_when_k_is_whole_blocks, .timeout = 60)
{
    char *src = mk_tmp(), *cache = mk_tmp(), *dir = NULL;
    miser_gpt2_config c = {.n_vocab = 100, .n_ctx = 16, .n_embd = 48, .n_head = 4, .n_layer = 1, .n_inner = 192,
                           .eps = 1e-5f, .eos_token_id = -1};
    miser_synth_options so = {.dtype = MISER_DTYPE_F32, .seed = 5};
    cr_assert_eq(miser_synth_gpt2(src, &c, &so), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(check_transposed_cache(src, cache, &dir), 1);
    miser_model *m = NULL;
    cr_assert_eq(miser_model_open(dir, &m), MISER_OK, "%s", miser_error_message());
    const miser_tensor_info *t = miser_model_tensor(m, "h.0.attn.c_attn.weight");
    cr_expect_eq(t->dtype, MISER_DTYPE_F16);
    cr_expect_eq(t->stride[0], 144);
    t = miser_model_tensor(m, "h.0.mlp.c_fc.weight");
    cr_expect_eq(t->dtype, MISER_DTYPE_Q8_0);
    cr_expect_eq(t->stride[0], 192, "blocks along N, as before");
    cr_expect_eq(t->stride[1], 1);
    t = miser_model_tensor(m, "h.0.mlp.c_proj.weight");
    cr_expect_eq(t->dtype, MISER_DTYPE_Q8_0);
    cr_expect_eq(t->stride[0], 1);
    cr_expect_eq(t->stride[1], 192);
    miser_model_free(m);
    static const int32_t ids[3] = {1, 2, 3};
    int64_t V = 0;
    miser_status st;
    float *lg = logits_of(dir, ids, 3, &V, &st);
    cr_assert_eq(st, MISER_OK, "%s", miser_error_message());
    cr_assert_eq(V, 100);
    for (int64_t i = 0; i < V; i++) cr_assert(isfinite(lg[i]));
    free(lg);
    miser_free(dir);
    rm_rf(src);
    rm_rf(cache);
    free(src);
    free(cache);
}

/* A format-1 cache (q8_0 blocks along N, no "miser_transposed") is stale:
 * prepare rebuilds it as format 2 and says so. */
Test(precision, format_1_cache_is_rebuilt, .timeout = 60)
{
    char *cache = mk_tmp(), *d1 = NULL, *d2 = NULL, note[512];
    miser_precision_options o = {.cache_dir = cache};
    int conv = 0;
    cr_assert_eq(miser_precision_prepare(TINY, MISER_DTYPE_Q8_0, &o, &d1, note, sizeof note, &conv), MISER_OK);
    cr_assert_eq(conv, 1);
    /* turn its header into format 1's: same length, version "1" */
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors", d1);
    size_t len = 0;
    FILE *f = fopen(p, "r+b");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(len);
    cr_assert_eq(fread(b, 1, len, f), len);
    char *v = memmem(b, len < 65536 ? len : 65536, "\"miser_cache_format\":\"2\"", 24);
    cr_assert(v, "the header records the format");
    v[22] = '1';
    fseek(f, 0, SEEK_SET);
    cr_assert_eq(fwrite(b, 1, len, f), len);
    fclose(f);
    free(b);
    cr_assert_eq(miser_precision_prepare(TINY, MISER_DTYPE_Q8_0, &o, &d2, note, sizeof note, &conv), MISER_OK, "%s",
                 miser_error_message());
    cr_assert_eq(conv, 1, "a format-1 cache must be rebuilt");
    cr_assert(strstr(note, "rebuilt"), "note: %s", note);
    cr_assert_str_eq(d1, d2);
    cJSON *h = raw_header(d2);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(h, "__metadata__"),
                                                        "miser_cache_format");
    cr_assert(cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "2"));
    cJSON_Delete(h);
    /* and the rebuilt one is reused */
    miser_free(d2);
    cr_assert_eq(miser_precision_prepare(TINY, MISER_DTYPE_Q8_0, &o, &d2, note, sizeof note, &conv), MISER_OK);
    cr_assert_eq(conv, 0);
    miser_free(d1);
    miser_free(d2);
    rm_rf(cache);
    free(cache);
}

/* Every allocation of a q8_0 conversion may fail: a clean error, nothing
 * leaked, no cache file under its final name; then it succeeds. */
Test(precision, q8_0_conversion_survives_allocation_failures, .timeout = 120)
{
    char *cache = mk_tmp();
    miser_precision_options o = {.cache_dir = cache};
    uint64_t start = miser_mem_total().current;
    int ok = 0;
    for (uint64_t n = 1; n < 1000 && !ok; n++) {
        char *dir = NULL;
        miser_mem_fail_after(n);
        miser_status st = miser_precision_prepare(TINY, MISER_DTYPE_Q8_0, &o, &dir, NULL, 0, NULL);
        miser_mem_fail_after(0);
        if (st == MISER_OK) {
            ok = 1;
            miser_free(dir);
        } else {
            cr_assert_eq(st, MISER_ERR_NOMEM, "n=%llu: %s", (unsigned long long)n, miser_error_message());
            cr_assert_null(dir);
            /* a file under the final name is always complete (only the copy
             * of its path, the very last step, can fail after the rename) */
            if (count_named(cache, "model.safetensors")) {
                char *d2 = NULL;
                int conv = 1;
                cr_assert_eq(miser_precision_prepare(TINY, MISER_DTYPE_Q8_0, &o, &d2, NULL, 0, &conv), MISER_OK);
                cr_assert_eq(conv, 0, "n=%llu: the file left behind is not a valid cache", (unsigned long long)n);
                miser_model *m = NULL;
                cr_assert_eq(miser_model_open(d2, &m), MISER_OK, "%s", miser_error_message());
                miser_model_free(m);
                miser_free(d2);
                ok = 1;
            }
        }
        cr_assert_eq(miser_mem_total().current, start, "leak after failing allocation %llu", (unsigned long long)n);
    }
    cr_assert(ok);
    cr_assert_eq(count_named(cache, "model.safetensors"), 1);
    rm_rf(cache);
    free(cache);
}

/* greedy ids of `n` new tokens after `prompt` on dir with the current kernels */
static void greedy(const char *dir, const int32_t *prompt, int n_prompt, int n, int32_t *out)
{
    miser_model *m = NULL;
    miser_plan *p = NULL;
    miser_session *s = NULL;
    cr_assert_eq(miser_model_open(dir, &m), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_plan_compile(m, NULL, &p), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_session_create(p, NULL, &s), MISER_OK, "%s", miser_error_message());
    miser_generate_options go = {.max_new_tokens = n};
    miser_generate_result r = {0};
    cr_assert_eq(miser_generate(s, prompt, n_prompt, &go, NULL, NULL, &r), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(r.n, n);
    memcpy(out, r.ids, sizeof(int32_t) * (size_t)n);
    miser_free(r.ids);
    miser_session_free(s);
    miser_plan_free(p);
    miser_model_free(m);
}

/* The q8_0 cache generates the same greedy tokens with the reference
 * kernels as with the default set. */
Test(precision, q8_0_greedy_tokens_same_with_every_kernel_set, .timeout = 60)
{
    char *cache = mk_tmp(), *dir = NULL;
    miser_precision_options o = {.cache_dir = cache};
    cr_assert_eq(miser_precision_prepare(TINY, MISER_DTYPE_Q8_0, &o, &dir, NULL, 0, NULL), MISER_OK);
    static const int32_t prompt[5] = {15496, 11, 616, 1438, 318};
    int32_t want[12], got[12];
    cr_assert_eq(miser_kernels_select("ref"), 0);
    greedy(dir, prompt, 5, 12, want);
    char sets[64];
    snprintf(sets, sizeof sets, "%s", miser_kernels_available());
    for (char *k = strtok(sets, " "); k; k = strtok(NULL, " ")) {
        cr_assert_eq(miser_kernels_select(k), 0);
        greedy(dir, prompt, 5, 12, got);
        for (int i = 0; i < 12; i++) cr_expect_eq(got[i], want[i], "%s kernels: token %d is %d, ref says %d", k, i, got[i], want[i]);
    }
    miser_free(dir);
    rm_rf(cache);
    free(cache);
}

/* The loader's strides and the builder's views work for any dtype: hf-tiny-a
 * rewritten with its Conv1D weights stored transposed (f32, listed in
 * "miser_transposed") compiles to dot-layout LINEARs and gives the logits and
 * greedy tokens of the original. */
Test(precision, transposed_f32_checkpoint_matches_the_original, .timeout = 60)
{
    char *dir = mk_tmp();
    miser_model *m = NULL;
    cr_assert_eq(miser_model_open(TINY, &m), MISER_OK);
    size_t n = miser_model_tensor_count(m);
    miser_st_entry *e = calloc(n, sizeof *e);
    char listed[4096] = "";
    for (size_t i = 0; i < n; i++) {
        const miser_tensor_info *t = miser_model_tensor_at(m, i);
        e[i] = (miser_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim};
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
        if (t->ndim == 2 && is_conv1d(t->name)) {
            e[i].shape[0] = t->shape[1];
            e[i].shape[1] = t->shape[0];
            size_t l = strlen(listed);
            snprintf(listed + l, sizeof listed - l, "%s%s", l ? "," : "", t->name);
        }
    }
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const char *meta[] = {"miser_transposed", listed};
    miser_st_writer *w = NULL;
    cr_assert_eq(miser_st_writer_open(path, e, n, meta, 1, &w), MISER_OK, "%s", miser_error_message());
    for (size_t i = 0; i < n; i++) {
        const miser_tensor_info *t = miser_model_tensor_at(m, i);
        cr_assert_eq(t->dtype, MISER_DTYPE_F32);
        if (t->ndim == 2 && is_conv1d(t->name)) {
            const int64_t K = t->shape[0], N = t->shape[1];
            const float *src = t->data;
            float *tr = malloc(sizeof(float) * (size_t)(K * N));
            for (int64_t k = 0; k < K; k++)
                for (int64_t j = 0; j < N; j++) tr[j * K + k] = src[k * N + j];
            cr_assert_eq(miser_st_writer_write(w, tr, t->nbytes), MISER_OK);
            free(tr);
        } else
            cr_assert_eq(miser_st_writer_write(w, t->data, t->nbytes), MISER_OK);
    }
    cr_assert_eq(miser_st_writer_close(w), MISER_OK, "%s", miser_error_message());
    free(e);
    miser_model_free(m);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cp '%s/config.json' '%s/'", TINY, dir);
    cr_assert_eq(system(cmd), 0);

    check_dot_layout_plan(dir, MISER_DTYPE_F32);
    static const int32_t prompt[5] = {464, 2068, 7586, 21831, 18045};
    int64_t V = 0, V2 = 0;
    miser_status st;
    float *ref = logits_of(TINY, prompt, 5, &V, &st);
    cr_assert_eq(st, MISER_OK, "%s", miser_error_message());
    float *got = logits_of(dir, prompt, 5, &V2, &st);
    cr_assert_eq(st, MISER_OK, "%s", miser_error_message());
    cr_assert_eq(V, V2);
    float maxd = 0, spread_lo = ref[0], spread_hi = ref[0];
    for (int64_t i = 0; i < V; i++) {
        maxd = fmaxf(maxd, fabsf(got[i] - ref[i]));
        spread_lo = fminf(spread_lo, ref[i]);
        spread_hi = fmaxf(spread_hi, ref[i]);
    }
    cr_assert(maxd <= 1e-4f * (spread_hi - spread_lo), "max |dlogit| %g (spread %g)", maxd, spread_hi - spread_lo);
    free(ref);
    free(got);
    int32_t want[10], have[10];
    greedy(TINY, prompt, 5, 10, want);
    greedy(dir, prompt, 5, 10, have);
    for (int i = 0; i < 10; i++) cr_expect_eq(have[i], want[i], "token %d", i);
    rm_rf(dir);
    free(dir);
}
