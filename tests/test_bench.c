/* Suite `bench`: `miser bench` and `miser compare` end to end on the tiny
 * Hugging Face reference checkpoint (greedy ids checked against the ids that
 * transformers produced, in tests/data/hf-tiny-a/reference.json), a peer that
 * is not installed, the soak mode, and the aggregation helpers on values
 * computed here by hand. */
#include <criterion/criterion.h>

#include "json_support.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "miser/bench.h"

#define MISER_BIN MISER_BUILD_DIR "/miser"
#define TINY MISER_SOURCE_DIR "/tests/data/hf-tiny-a"

/* Run a shell command, capture stdout into out (malloc'd); returns exit code. */
static int run_capture(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    size_t k;
    while ((k = fread(b + len, 1, cap - len - 1, p)) > 0) {
        len += k;
        if (cap - len < 4096) b = realloc(b, cap *= 2);
    }
    b[len] = 0;
    int st = pclose(p);
    *out = b;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void make_tmpdir(char *dir)
{
    strcpy(dir, "/tmp/miser-test-bench-XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The first `n` greedy ids for the first prompt, from the HF reference. */
static int reference_greedy(int32_t *ids, int n)
{
    cJSON *ref = test_read_json(TINY "/reference.json");
    cJSON *pr = cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "prompts"), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(pr, "prompt")->valuestring, "Hello");
    cJSON *g = cJSON_GetObjectItem(pr, "greedy20");
    int k = 0;
    for (; k < n && k < cJSON_GetArraySize(g); k++) ids[k] = (int32_t)cJSON_GetArrayItem(g, k)->valuedouble;
    cJSON_Delete(ref);
    return k;
}

Test(bench, runs_stage_lines_medians_and_hf_tokens, .timeout = 120)
{
    char dir[64], cmd[1024], json[128];
    make_tmpdir(dir);
    snprintf(json, sizeof json, "%s/bench.json", dir);
    snprintf(cmd, sizeof cmd, "cd %s && %s bench --model %s --runs 2 --json %s 2>/dev/null", MISER_SOURCE_DIR,
             MISER_BIN, TINY, json);
    char *out;
    cr_assert_eq(run_capture(cmd, &out), 0, "bench failed:\n%s", out);
    /* The study's stage-line format, six stages per run, in order. */
    regex_t re;
    cr_assert_eq(regcomp(&re,
                         "^\\[STAGE\\] ([0-5]_[A-Z_]+): [0-9]+\\.[0-9]{2} MB \\(swap: [0-9]+\\.[0-9]{2} MB\\) - .+$",
                         REG_EXTENDED | REG_NEWLINE),
                 0);
    static const char *names[6] = {"0_INITIAL",          "1_MODEL_LOADED",     "2_BEFORE_INFERENCE",
                                   "3_FIRST_INFERENCE", "4_SECOND_INFERENCE", "5_FINAL"};
    int count = 0;
    regmatch_t m[2];
    for (const char *p = out; !regexec(&re, p, 2, m, 0); p += m[0].rm_eo) {
        int len = (int)(m[1].rm_eo - m[1].rm_so);
        cr_assert_eq((int)strlen(names[count % 6]), len);
        cr_assert(!strncmp(p + m[1].rm_so, names[count % 6], (size_t)len), "stage %d out of order", count);
        count++;
    }
    regfree(&re);
    cr_assert_eq(count, 12, "expected 6 stage lines per run for 2 runs, got %d", count);

    cJSON *j = test_read_json(json);
    cJSON *rt = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "runtimes"), 0);
    cr_assert(rt);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(rt, "runs")), 2);
    cJSON *med = cJSON_GetObjectItem(rt, "median");
    static const char *need[] = {"model_loading_mb", "compilation_mb", "first_inference_s", "second_inference_s",
                                 "ttft_s", "decode_tok_s", "compile_s", "peak_rss_mb", "model_loading_file_mb"};
    for (size_t k = 0; k < sizeof need / sizeof need[0]; k++)
        cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(med, need[k])), "median %s missing", need[k]);
    /* The median of two runs lies between them. */
    cJSON *runs = cJSON_GetObjectItem(rt, "runs");
    double a = cJSON_GetObjectItem(cJSON_GetArrayItem(runs, 0), "first_inference_s")->valuedouble;
    double b = cJSON_GetObjectItem(cJSON_GetArrayItem(runs, 1), "first_inference_s")->valuedouble;
    cr_assert_float_eq(cJSON_GetObjectItem(med, "first_inference_s")->valuedouble, (a + b) / 2, 1e-5);
    cr_assert(cJSON_GetObjectItem(med, "ttft_s")->valuedouble <= cJSON_GetObjectItem(med, "first_inference_s")->valuedouble);
    /* max_length 10, one-token prompt: 9 new tokens, the first 9 of HF's greedy ids. */
    int32_t want[9];
    cr_assert_eq(reference_greedy(want, 9), 9);
    cJSON *ids = cJSON_GetArrayItem(cJSON_GetObjectItem(rt, "generated_ids"), 0);
    cr_assert_eq(cJSON_GetArraySize(ids), 9);
    for (int k = 0; k < 9; k++) cr_assert_eq((int32_t)cJSON_GetArrayItem(ids, k)->valuedouble, want[k], "token %d", k);
    cJSON_Delete(j);
    free(out);
    rm_rf(dir);
}

Test(bench, soak_reports_iterations_and_drift, .timeout = 60)
{
    char dir[64], cmd[1024], json[128];
    make_tmpdir(dir);
    snprintf(json, sizeof json, "%s/soak.json", dir);
    snprintf(cmd, sizeof cmd, "%s bench --model %s --soak 5 --json %s", MISER_BIN, TINY, json);
    char *out;
    cr_assert_eq(run_capture(cmd, &out), 0, "%s", out);
    cr_assert(strstr(out, "drift per iteration"), "%s", out);
    cJSON *j = test_read_json(json);
    cJSON *it = cJSON_GetObjectItem(j, "iterations");
    cr_assert_eq(cJSON_GetArraySize(it), 5);
    for (int k = 0; k < 5; k++) {
        cJSON *e = cJSON_GetArrayItem(it, k);
        cr_assert_eq((int)cJSON_GetObjectItem(e, "iter")->valuedouble, k + 1);
        cr_assert(cJSON_GetObjectItem(e, "rss_kb")->valuedouble > 0);
        cr_assert(cJSON_GetObjectItem(e, "anon_kb")->valuedouble > 0);
    }
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(j, "drift_anon_kb_per_iter")));
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(j, "drift_rss_kb_per_iter")));
    /* A generate loop that reuses its buffers must not grow miser's heap. */
    cr_assert_float_eq(cJSON_GetObjectItem(j, "drift_heap_bytes_per_iter")->valuedouble, 0.0, 1e-9);
    cJSON_Delete(j);
    free(out);
    rm_rf(dir);
}

Test(bench, compare_report_missing_peer_and_agreement, .timeout = 120)
{
    char dir[64], cmd[1024], path[160];
    make_tmpdir(dir);
    /* A peers folder whose PyTorch adapter finds no PyTorch: it exits 3, as
     * the adapters' contract says (tools/peers/peer_common.py). */
    snprintf(path, sizeof path, "%s/peers", dir);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/peers/torch_gpt2.py", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs("import sys\nprint('PyTorch is not installed', file=sys.stderr)\nsys.exit(3)\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "%s compare --model %s --runs 1 --runtimes miser,miser-naive,pytorch --peers-dir %s/peers "
             "--out %s/rep 2>%s/stderr.txt",
             MISER_BIN, TINY, dir, dir, dir);
    char *out;
    cr_assert_eq(run_capture(cmd, &out), 0, "%s", out);
    snprintf(path, sizeof path, "%s/stderr.txt", dir);
    char *err = test_read_file(path, NULL);
    cr_assert(strstr(err, "skipping pytorch") && strstr(err, "make peers"), "stderr: %s", err);
    snprintf(path, sizeof path, "%s/rep/report.html", dir);
    char *html = test_read_file(path, NULL);
    cr_assert(html && strstr(html, "<svg") && strstr(html, "<table>"));
    snprintf(path, sizeof path, "%s/rep/report.md", dir);
    char *md = test_read_file(path, NULL);
    cr_assert(md);
    cr_assert(strstr(md, "skipped pytorch") && strstr(md, "make peers"), "%s", md);
    cr_assert(!strstr(md, "FLAGGED"), "miser and miser-naive should agree:\n%s", md);
    cr_assert(strstr(md, "another machine"), "published figures must be marked");
    snprintf(path, sizeof path, "%s/rep/report.json", dir);
    cJSON *j = test_read_json(path);
    cJSON *rts = cJSON_GetObjectItem(j, "runtimes");
    cr_assert_eq(cJSON_GetArraySize(rts), 3);
    cJSON *naive = cJSON_GetArrayItem(rts, 1), *pt = cJSON_GetArrayItem(rts, 2);
    cr_assert_str_eq(cJSON_GetObjectItem(naive, "name")->valuestring, "miser-naive");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(naive, "tokens_agree")));
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(pt, "skipped")));
    /* Both miser rows produced HF's greedy ids. */
    int32_t want[9];
    reference_greedy(want, 9);
    for (int r = 0; r < 2; r++) {
        cJSON *ids = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(rts, r), "generated_ids"), 0);
        cr_assert_eq(cJSON_GetArraySize(ids), 9);
        for (int k = 0; k < 9; k++) cr_assert_eq((int32_t)cJSON_GetArrayItem(ids, k)->valuedouble, want[k]);
    }
    cJSON_Delete(j);
    free(out);
    free(err);
    free(html);
    free(md);
    rm_rf(dir);
}

Test(bench, usage_errors)
{
    char *out;
    cr_assert_eq(run_capture(MISER_BIN " bench --runs 0 2>/dev/null", &out), 2);
    free(out);
    cr_assert_eq(run_capture(MISER_BIN " bench --pipeline fast --model " TINY " 2>/dev/null", &out), 2);
    free(out);
    cr_assert_eq(run_capture(MISER_BIN " compare --runtimes miser,tensorflow 2>/dev/null", &out), 2);
    free(out);
}

Test(bench, stat_median_spread_cv)
{
    double v[] = {3, NAN, 1, 2, 6};
    miser_bench_stat s = miser_bench_stat_of(v, 5);
    cr_assert_eq(s.n, 4);
    cr_assert_float_eq(s.median, 2.5, 1e-12);
    cr_assert_float_eq(s.min, 1, 1e-12);
    cr_assert_float_eq(s.max, 6, 1e-12);
    /* mean 3, sample variance (0+4+1+9)/3 */
    cr_assert_float_eq(s.cv, sqrt(14.0 / 3.0) / 3.0, 1e-12);
    double odd[] = {5, 1, 9};
    cr_assert_float_eq(miser_bench_stat_of(odd, 3).median, 5, 1e-12);
    double none[] = {NAN};
    cr_assert(isnan(miser_bench_stat_of(none, 1).median));
}

Test(bench, agreement_flags_a_difference)
{
    static miser_bench_row rows[3];
    memset(rows, 0, sizeof rows);
    for (int r = 0; r < 3; r++) {
        rows[r].has_ids = 1;
        rows[r].nids[0] = rows[r].nids[1] = 3;
        for (int k = 0; k < 3; k++) rows[r].ids[0][k] = rows[r].ids[1][k] = 10 + k;
        snprintf(rows[r].name, sizeof rows[r].name, "r%d", r);
    }
    rows[2].ids[1][2] = 99;
    miser_bench_report rep = {.nrows = 3, .rows = rows, .reference = 0};
    cr_assert_eq(miser_bench_check_agreement(&rep), 1);
    cr_assert_eq(rows[0].agree, 1);
    cr_assert_eq(rows[1].agree, 1);
    cr_assert_eq(rows[2].agree, 0);
    cr_assert(strstr(rows[2].agree_note, "second prompt, token 2 is 99"), "%s", rows[2].agree_note);
}
