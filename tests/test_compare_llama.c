/* Suite `compare_llama`: `miser compare` on a Llama-family checkpoint gives
 * one row per runtime and precision (f32, f16, q8_0 by default), miser's
 * weights converted into its precision cache and llama.cpp's GGUF written
 * from the same checkpoint at the same precision, with the memory columns of
 * every row. References: the greedy tokens of tools/ref_llama.py (a float64
 * numpy forward, Hugging Face's convention) wherever its top-2 margin
 * exceeds the precision's tolerance, and llama.cpp's own tokens (node-llama-
 * cpp, `make peers`; skipped with a note when it is not installed). The
 * checkpoint is small (2 layers, hidden 64, GQA 4/2, vocabulary 300) with
 * weights of std 0.2, whose greedy margins are large (0.5 - 3.6 logits),
 * so each precision's tokens are a real check rather than a repeated id.
 * Also `miser bench --precision P`, the runs compare makes. Caches (miser's
 * and the peers') go to the test's temp dir. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include "json_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MISER MISER_BUILD_DIR "/miser"
#define TOOLS MISER_SOURCE_DIR "/tools"

static char g_tmp[64];
static void setup_tmp(void) { cr_assert_eq(test_tmpdir_make(g_tmp, sizeof g_tmp, "/tmp/miser-cmpl-XXXXXX"), 0); }
static void teardown_tmp(void) { test_tmpdir_remove(g_tmp); }
TestSuite(compare_llama, .init = setup_tmp, .fini = teardown_tmp);

static int have_llamacpp(void)
{
    return access(TOOLS "/peers/node_modules/node-llama-cpp/package.json", R_OK) == 0 &&
           access(TOOLS "/peers/node_modules/.miser-llama.cpp/gguf-py/gguf/__init__.py", R_OK) == 0 &&
           access("/usr/bin/node", X_OK) == 0;
}

static const char *make_ck(void)
{
    static char dir[128];
    snprintf(dir, sizeof dir, "%s/ck", g_tmp);
    cr_assert_eq(test_sh("/usr/bin/python3 " TOOLS "/make_llama_checkpoint.py --out '%s' --tokenizer-json --seed 3 "
                         "--std 0.2 --hidden 64 --heads 4 --kv-heads 2 --untied",
                         dir),
                 0);
    return dir;
}

/* numpy's greedy continuation of the prompt ids and its margins */
static int ref_greedy(const char *dir, const char *ids, int steps, int *greedy, double *margin)
{
    char cmd[512], path[160];
    snprintf(path, sizeof path, "%s/ref.json", g_tmp);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 " TOOLS "/ref_llama.py --model '%s' --ids %s --steps %d > '%s'", dir,
             ids, steps, path);
    cr_assert_eq(test_sh("%s", cmd), 0, "%s", cmd);
    cJSON *j = test_read_json(path);
    const cJSON *g = cJSON_GetObjectItem(j, "greedy"), *m = cJSON_GetObjectItem(j, "margins");
    const int n = cJSON_GetArraySize(g);
    for (int i = 0; i < n && i < steps; i++) {
        greedy[i] = cJSON_GetArrayItem(g, i)->valueint;
        margin[i] = cJSON_GetArrayItem(m, i)->valuedouble;
    }
    cJSON_Delete(j);
    return n;
}

static const cJSON *row_named(const cJSON *rts, const char *name)
{
    const cJSON *r;
    cJSON_ArrayForEach(r, rts)
    {
        const cJSON *n = cJSON_GetObjectItem(r, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return r;
    }
    return NULL;
}

/* a measured row: its memory columns are numbers, its first generate's ids
 * follow numpy's greedy tokens while numpy's margin exceeds tol */
static void check_row(const cJSON *rts, const char *name, const int *greedy, const double *margin, int n, double tol)
{
    const cJSON *r = row_named(rts, name);
    cr_assert(r, "no row '%s' in report.json", name);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(r, "skipped")) && cJSON_IsFalse(cJSON_GetObjectItem(r, "failed")),
              "%s: skipped or failed: %s", name, cJSON_GetObjectItem(r, "note")->valuestring);
    const cJSON *med = cJSON_GetObjectItem(r, "median");
    static const char *const mem[] = {"model_loading_mb", "peak_ram_mb", "peak_rss_mb", "model_loading_anon_mb",
                                      "model_loading_file_mb", "total_growth_anon_mb"};
    for (size_t k = 0; k < sizeof mem / sizeof mem[0]; k++) {
        const cJSON *v = cJSON_GetObjectItem(med, mem[k]);
        cr_assert(cJSON_IsNumber(v), "%s: no %s", name, mem[k]);
    }
    cr_assert_gt(cJSON_GetObjectItem(med, "peak_rss_mb")->valuedouble, 0.5, "%s", name);
    const cJSON *ids = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "generated_ids"), 0);
    cr_assert_eq(cJSON_GetArraySize(ids), n, "%s", name);
    int compared = 0;
    for (int i = 0; i < n; i++) {
        const int got = cJSON_GetArrayItem(ids, i)->valueint;
        if (got != greedy[i]) {
            cr_assert(margin[i] < tol, "%s: token %d is %d, numpy says %d (margin %.3g >= %g)", name, i, got, greedy[i],
                      margin[i], tol);
            break;
        }
        compared++;
    }
    cr_assert(compared >= 3, "%s: only %d tokens compared with numpy", name, compared);
}

#define ENV "MISER_CACHE_DIR='%s/cache' XDG_CACHE_HOME='%s/xdg' "

/* numpy's continuation of "Hello" (through the checkpoint's tokenizer.json,
 * as the scenario tokenizes it) up to max_length 10; returns its length */
static int hello_reference(const char *dir, int *greedy, double *margin)
{
    char path[160];
    snprintf(path, sizeof path, "%s/ids.txt", g_tmp);
    cr_assert_eq(test_sh(MISER " tokenize --model '%s' 'Hello' > '%s'", dir, path), 0);
    char *tx = test_read_file(path, NULL), ids[128] = "";
    size_t k = 0;
    for (char *sv = NULL, *t = strtok_r(tx, " \n", &sv); t; t = strtok_r(NULL, " \n", &sv))
        k += (size_t)snprintf(ids + k, sizeof ids - k, "%s%s", k ? "," : "", t);
    free(tx);
    int np = 1;
    for (const char *c = ids; *c; c++) np += *c == ',';
    const int n = 10 - np; /* max_length 10 */
    cr_assert(n >= 3 && n <= 9, "\"Hello\" is %d tokens", np);
    cr_assert_geq(ref_greedy(dir, ids, n, greedy, margin), n);
    return n;
}

/* `miser compare` on dir with `args` (--runs 1 --threads 1, the report in
 * g_tmp/out, stderr in g_tmp/err): its report, whose runtimes must be
 * `names` in that order (the caller cJSON_Deletes it). */
static cJSON *compare_rows(const char *dir, const char *args, const char *out, const char *err,
                           const char *const *names, int n)
{
    char cmd[1024], path[160];
    snprintf(cmd, sizeof cmd,
             ENV MISER " compare --model '%s' --runs 1 %s --threads 1 --out '%s/%s' >/dev/null 2>'%s/%s'", g_tmp,
             g_tmp, dir, args, g_tmp, out, g_tmp, err);
    cr_assert_eq(test_sh("%s", cmd), 0, "%s", cmd);
    snprintf(path, sizeof path, "%s/%s/report.json", g_tmp, out);
    cJSON *j = test_read_json(path);
    const cJSON *rts = cJSON_GetObjectItem(j, "runtimes");
    cr_assert_eq(cJSON_GetArraySize(rts), n);
    for (int i = 0; i < n; i++)
        cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(rts, i), "name")->valuestring, names[i]);
    return j;
}

Test(compare_llama, precision_rows_and_llamacpp, .timeout = 240)
{
    const char *dir = make_ck();
    char path[160];
    int greedy[16];
    double margin[16];
    const int n = hello_reference(dir, greedy, margin);

    /* the default for a Llama-family checkpoint: f32, f16, q8_0 */
    static const char *const names[3] = {"miser f32", "miser f16", "miser q8_0"};
    cJSON *j = compare_rows(dir, "--runtimes miser", "rep", "err.txt", names, 3);
    const cJSON *rts = cJSON_GetObjectItem(j, "runtimes");
    /* f32 weights (f16 KV cache, the family's default): numpy's tokens
     * wherever its margin exceeds 1e-2; f16 weights 5e-2, q8_0 0.3 */
    check_row(rts, "miser f32", greedy, margin, n, 1e-2);
    check_row(rts, "miser f16", greedy, margin, n, 5e-2);
    check_row(rts, "miser q8_0", greedy, margin, n, 0.3);
    cr_assert(strstr(cJSON_GetObjectItem(j, "scenario")->valuestring, "f32,f16,q8_0"));
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/err.txt", g_tmp);
    char *err = test_read_file(path, NULL);
    cr_assert(err && strstr(err, "converted the weights to q8_0"), "stderr: %s", err ? err : "");
    free(err);

    if (!have_llamacpp()) {
        test_note("compare_llama: llama.cpp peer not installed (`make peers`): its rows not checked");
        return;
    }
    /* beside llama.cpp on a GGUF written from the same weights: q8_0 only,
     * to keep the run short (test_llama checks llama.cpp's f32/f16 tokens);
     * the rows' tokens are checked against numpy and against each other */
    static const char *const names2[2] = {"miser q8_0", "llamacpp q8_0"};
    j = compare_rows(dir, "--runtimes miser,llamacpp --precision q8_0", "rep2", "err2.txt", names2, 2);
    rts = cJSON_GetObjectItem(j, "runtimes");
    check_row(rts, "llamacpp q8_0", greedy, margin, n, 0.3);
    /* llama.cpp's row is checked against miser's of the same precision */
    const cJSON *r = cJSON_GetArrayItem(rts, 1);
    const char *note = cJSON_GetObjectItem(r, "tokens_note")->valuestring;
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(r, "tokens_agree")), "%s: %s", names2[1], note);
    cr_assert(strstr(note, names2[0]), "%s checked against %s", names2[1], note);
    cJSON_Delete(j);
    /* the adapter wrote its GGUF at q8_0 from the checkpoint, and only that */
    cr_assert_eq(test_sh("ls '%s'/xdg/miser/peers/*/llama-q8_0-v1.gguf >/dev/null 2>&1", g_tmp), 0);
    cr_assert_neq(test_sh("ls '%s'/xdg/miser/peers/*/llama-f32-v1.gguf >/dev/null 2>&1", g_tmp), 0);
}

/* `miser bench --precision P`, which compare's runs take: the weights from
 * the precision cache, numpy's tokens, the precision in the scenario */
Test(compare_llama, bench_precision, .timeout = 120)
{
    const char *dir = make_ck();
    char path[160];
    snprintf(path, sizeof path, "%s/b.json", g_tmp);
    cr_assert_eq(test_sh(ENV MISER " bench --model '%s' --runs 1 --threads 1 --precision q8_0 --json '%s' >/dev/null "
                             "2>'%s/berr.txt'",
                         g_tmp, g_tmp, dir, path, g_tmp),
                 0);
    cJSON *j = test_read_json(path);
    const cJSON *sc = cJSON_GetObjectItem(j, "scenario");
    cr_assert(cJSON_IsString(sc) && strstr(sc->valuestring, "precision q8_0"), "scenario: %s",
              cJSON_IsString(sc) ? sc->valuestring : "(none)");
    int greedy[16];
    double margin[16];
    const int n = hello_reference(dir, greedy, margin);
    check_row(cJSON_GetObjectItem(j, "runtimes"), "miser", greedy, margin, n, 0.3);
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/berr.txt", g_tmp);
    char *err = test_read_file(path, NULL);
    cr_assert(err && strstr(err, "converted the weights to q8_0"), "stderr: %s", err ? err : "");
    free(err);
    cr_assert_eq(test_sh(MISER " bench --model '%s' --precision q6_k 2>/dev/null", dir), 2);
    cr_assert_eq(test_sh(MISER " bench --model '%s' --soak 2 --precision f16 2>/dev/null", dir), 2);
}

Test(compare_llama, precision_usage_errors)
{
    cr_assert_eq(test_sh(MISER " compare --precision f8 --runtimes miser --out '%s/r' 2>/dev/null", g_tmp), 2);
    cr_assert_eq(test_sh(MISER " compare --precision , --runtimes miser --out '%s/r' 2>/dev/null", g_tmp), 2);
    cr_assert_eq(test_sh(MISER " compare --model '%s/x.gguf' --precision q8_0 --runtimes miser --out '%s/r' 2>/dev/null",
                         g_tmp, g_tmp),
                 2);
    cr_assert_eq(test_sh("test ! -e '%s/r'", g_tmp), 0, "a refused run wrote its --out folder");
}
