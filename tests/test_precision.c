/* Precision suite: the converted-weights cache (conversion rules, reuse,
 * stale rebuild, interrupted and cancelled writes leave no file under the
 * final name) and end-to-end accuracy of f16/bf16/q8_0 against f32 on the
 * reference checkpoint tests/data/hf-tiny-a, within the tolerances
 * documented in docs/kernels.md. */
#include <criterion/criterion.h>

#include "miser/alloc.h"
#include "miser/model.h"
#include "miser/precision.h"
#include "miser/runtime.h"
#include "miser/safetensors.h"

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
 * logits' spread (max - min). */
static void check_precision(miser_dtype prec, float rel_tol)
{
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

Test(precision, f16_logits_within_tolerance, .timeout = 60) { check_precision(MISER_DTYPE_F16, 2e-3f); }
Test(precision, bf16_logits_within_tolerance, .timeout = 60) { check_precision(MISER_DTYPE_BF16, 1.5e-2f); }
Test(precision, q8_0_logits_within_tolerance, .timeout = 60) { check_precision(MISER_DTYPE_Q8_0, 1.5e-2f); }

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
