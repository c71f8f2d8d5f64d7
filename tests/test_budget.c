/* Memory budgets (issue 17): the predictor (include/miser/budget.h) against
 * the profiler's exact peaks of real `miser generate` processes, against
 * what a session really allocates, and against the page cache (mincore: a
 * prediction reads no weight page); a run inside a memory cgroup limited to
 * the predicted peak + 5 %; size parsing and the CLI's refusals. */
#include "support.h"
#include "miser/alloc.h"
#include "miser/batch.h"
#include "miser/budget.h"
#include "miser/model.h"
#include "miser/runtime.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Under ASan the binary's shadow memory and redzones are part of every RSS:
 * the calibrated constants describe the normal build only. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define TINY MISER_SOURCE_DIR "/tests/data/hf-tiny-a"
#define MISER MISER_BUILD_DIR "/miser"

static char g_tmp[64];

static void setup(void)
{
    strcpy(g_tmp, "/var/tmp/miser-test-budget-XXXXXX"); /* on disk: fadvise can evict it */
    cr_assert(mkdtemp(g_tmp));
    char c[128];
    snprintf(c, sizeof c, "%s/cache", g_tmp);
    setenv("MISER_CACHE_DIR", c, 1);
}

static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", g_tmp);
    unsetenv("MISER_CACHE_DIR");
}

TestSuite(budget, .init = setup, .fini = teardown, .timeout = 120);

Test(budget, parse_size)
{
    struct { const char *s; uint64_t v; } ok[] = {
        {"512M", 512ull << 20}, {"1.5G", 3ull << 29}, {"2GiB", 2ull << 30}, {"4096", 4096},
        {"300MB", 300ull << 20}, {"64k", 64ull << 10}, {"1T", 1ull << 40}, {"100B", 100}};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        uint64_t v = 0;
        cr_assert_eq(miser_budget_parse_size(ok[i].s, &v), 0, "%s refused", ok[i].s);
        cr_assert_eq(v, ok[i].v, "%s: %llu", ok[i].s, (unsigned long long)v);
    }
    const char *bad[] = {"0", "0M", "-5", "-1G", "12XB", "", "G", "1.5", "1e3", " 5M", "5M ", "5MiBx", "0x10",
                         "1.2.3M", "99999999999T", "nan", "inf"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t v = 7;
        cr_assert_eq(miser_budget_parse_size(bad[i], &v), -1, "'%s' accepted as %llu", bad[i], (unsigned long long)v);
    }
}

/* resident pages of [off, len) of fd's file in the page cache */
static size_t resident(int fd, off_t size, off_t from)
{
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    cr_assert(m != MAP_FAILED);
    const long pg = sysconf(_SC_PAGESIZE);
    const size_t np = (size_t)((size + pg - 1) / pg);
    unsigned char *vec = malloc(np);
    cr_assert(!mincore(m, (size_t)size, vec));
    size_t n = 0;
    for (size_t i = (size_t)(from / pg); i < np; i++) n += vec[i] & 1;
    free(vec);
    munmap(m, (size_t)size);
    return n;
}

static void evict(int fd)
{
    cr_assert(fdatasync(fd) == 0);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
}

/* The kernel reads ahead around the header's page fault (read_ahead_kb:
 * 8 MB on this VM's disk), so "no weight page" means: a prediction leaves
 * no more of the file in the page cache than opening the checkpoint alone
 * (which parses the header and nothing else), on a file several times that
 * window; and the method sees a real read (a prefault fills the cache). */
Test(budget, prediction_reads_no_weight_page)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/m", g_tmp);
    cr_assert_eq(test_sh("'%s' synth --layers 6 --embd 384 --heads 6 --ctx 256 --out '%s' --quiet", MISER, dir), 0);
    char path[160];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int fd = open(path, O_RDONLY);
    cr_assert(fd >= 0);
    struct stat sb;
    cr_assert(!fstat(fd, &sb));
    const long pg = sysconf(_SC_PAGESIZE);
    const size_t total = (size_t)((sb.st_size + pg - 1) / pg);
    evict(fd);
    if (resident(fd, sb.st_size, 0) > 0) {
        close(fd);
        cr_skip_test("the page cache kept pages of a synced file after POSIX_FADV_DONTNEED: cannot observe");
        return;
    }
    miser_model *m = NULL;
    cr_assert_eq(miser_model_open(dir, &m), MISER_OK);
    miser_model_free(m);
    usleep(300 * 1000); /* let the readahead land */
    const size_t base = resident(fd, sb.st_size, 0);
    evict(fd);
    miser_budget_model *b = NULL;
    cr_assert_eq(miser_budget_open(dir, &b), MISER_OK, "%s", miser_error_message());
    miser_budget_config c = {.precision = MISER_DTYPE_F32, .ctx = 64, .parallel = 4, .threads = 2};
    miser_budget_prediction p;
    cr_assert_eq(miser_budget_predict(b, &c, &p), MISER_OK);
    c.precision = MISER_DTYPE_Q8_0;
    cr_assert_eq(miser_budget_predict(b, &c, &p), MISER_OK);
    miser_budget_free(b);
    usleep(300 * 1000);
    const size_t after = resident(fd, sb.st_size, 0);
    m = NULL;
    cr_assert_eq(miser_model_open(dir, &m), MISER_OK);
    cr_assert_eq(miser_model_prefault(m), MISER_OK);
    miser_model_free(m);
    const size_t read = resident(fd, sb.st_size, 0);
    close(fd);
    cr_log_info("budget: %zu pages; resident after open %zu, after a prediction %zu, after a prefault %zu", total, base,
                after, read);
    if (base * 2 > total) cr_skip_test("readahead after the header covers %zu of %zu pages: cannot observe", base, total);
    cr_assert_leq(after, base + 16, "the prediction left %zu pages of %zu in the page cache (the open alone: %zu)", after,
                  total, base);
    cr_assert_geq(read, total - 1, "mincore saw only %zu of %zu pages after a prefault", read, total);
}

/* The predictor's KV / arena / scratch are what a session compiled by the
 * full default pipeline (share_constants included) really allocates. */
Test(budget, parts_equal_a_real_session)
{
    const char *dirs[2] = {TINY, NULL};
    char llama[128];
    snprintf(llama, sizeof llama, "%s/llama", g_tmp);
    cr_assert_eq(test_sh("'%s' synth --arch llama --shape tiny --out '%s' --quiet", MISER, llama), 0);
    dirs[1] = llama;
    for (int d = 0; d < 2; d++)
        for (int ctx = 16; ctx <= 128; ctx *= 8) {
            miser_budget_model *b = NULL;
            cr_assert_eq(miser_budget_open(dirs[d], &b), MISER_OK, "%s", miser_error_message());
            miser_budget_config c = {.precision = miser_budget_stored_dtype(b), .ctx = ctx, .parallel = 1, .threads = 3};
            miser_budget_prediction p;
            cr_assert_eq(miser_budget_predict(b, &c, &p), MISER_OK);
            miser_budget_free(b);
            miser_model *m = NULL;
            miser_plan *plan = NULL;
            miser_session *s = NULL;
            cr_assert_eq(miser_model_open(dirs[d], &m), MISER_OK);
            /* as generate compiles it: for the context it runs */
            miser_compile_options co = {.pipeline = "default", .max_batch = 64, .max_context = ctx};
            cr_assert_eq(miser_plan_compile(m, &co, &plan), MISER_OK);
            const uint64_t kv0 = miser_mem_get(MISER_MEM_KV).current, sc0 = miser_mem_get(MISER_MEM_SCRATCH).current;
            miser_session_options so = {.capacity = ctx, .threads = 3};
            cr_assert_eq(miser_session_create(plan, &so, &s), MISER_OK);
            const uint64_t kv = miser_mem_get(MISER_MEM_KV).current - kv0,
                           sc = miser_mem_get(MISER_MEM_SCRATCH).current - sc0;
            /* KV: the caches plus the two per-layer pointer tables */
            const uint64_t L = (uint64_t)miser_plan_graph(plan)->n_layer;
            cr_assert_eq(kv, p.kv + 2 * L * sizeof(void *), "%s ctx %d: KV %llu, predicted %llu", dirs[d], ctx,
                         (unsigned long long)kv, (unsigned long long)p.kv);
            cr_assert_eq(miser_plan_graph(plan)->arena_bytes, p.arena, "%s: arena %llu, predicted %llu", dirs[d],
                         (unsigned long long)miser_plan_graph(plan)->arena_bytes, (unsigned long long)p.arena);
            /* plus each of the 3 compute threads' stack: frames and (a
             * float precision) the GEMM's panels, for min(64, ctx) rows and
             * the hidden size's K block */
            const uint64_t C = (uint64_t)miser_model_config(m)->n_embd, kb = C < 256 ? C : 256;
            const uint64_t stack = MISER_BUDGET_THREAD_FRAMES + 4 * kb * ((ctx < 64 ? ctx : 64) + 64);
            cr_assert_eq(sc + 3 * stack, p.scratch, "%s: scratch %llu, predicted %llu", dirs[d],
                         (unsigned long long)sc, (unsigned long long)p.scratch);
            miser_session_free(s);
            miser_plan_free(plan);
            /* serve's batched engine: 4 sequences, max_batch + 4 rows per
             * pass; the pool and the executor's arena are what the
             * prediction says (one formula: miser_batch_footprint_get) */
            co.max_batch = 64 + 4; /* and max_context = ctx, as server.c compiles */
            cr_assert_eq(miser_plan_compile(m, &co, &plan), MISER_OK);
            cr_assert_eq(miser_budget_open(dirs[d], &b), MISER_OK, "%s", miser_error_message());
            c.parallel = 4;
            c.engine = MISER_BUDGET_SERVE_BATCH;
            cr_assert_eq(miser_budget_predict(b, &c, &p), MISER_OK);
            miser_budget_free(b);
            const uint64_t kvb = miser_mem_get(MISER_MEM_KV).current;
            miser_batch *bt = NULL;
            miser_batch_options bo = {.n_seqs = 4, .capacity = ctx, .threads = 3};
            cr_assert_eq(miser_batch_create(plan, &bo, &bt), MISER_OK, "%s", miser_error_message());
            const uint64_t pool = miser_mem_get(MISER_MEM_KV).current - kvb;
            cr_assert_eq(pool, p.kv, "%s ctx %d: batch KV %llu, predicted %llu", dirs[d], ctx,
                         (unsigned long long)pool, (unsigned long long)p.kv);
            cr_assert_geq(p.arena, miser_plan_graph(plan)->arena_bytes);
            miser_batch_free(bt);
            miser_plan_free(plan);
            miser_model_free(m);
        }
}

/* `miser profile --json` of `miser generate --max-length ctx`: the exact
 * whole-run peak and RssAnon at it, the peak less RssFile then. A run has
 * two phases (docs/budgets.md): a peak in the `load` or `compile` interval
 * is the load's high-water, released right before the `compile` mark, whose
 * RssFile it takes; a later one is the run's, and RssFile only grows (the
 * kernels' code faults in as they first run): the largest any mark or
 * timeline sample saw. The prompt ("a a a ...", a token each) has min(64,
 * ctx - 1) tokens, so its chunk fills the planned arena (max_batch 64) as
 * the prediction assumes. */
static void measure(const char *dir, const char *prec, int ctx, double *peak, double *anon)
{
    char pj[128], prompt[160] = "a";
    snprintf(pj, sizeof pj, "%s/p.json", g_tmp);
    for (int i = 1; i < (ctx - 1 < 64 ? ctx - 1 : 64); i++) strcat(prompt, " a");
    if (strcmp(prec, "f32")) /* make the cache outside the measured run */
        cr_assert_eq(test_sh("'%s' generate --model '%s' --precision %s --prompt a --max-new-tokens 1 --threads 2 "
                        ">/dev/null 2>&1", MISER, dir, prec), 0);
    cr_assert_eq(test_sh("'%s' profile --json '%s' --format none -- '%s' generate --model '%s' --precision %s --prompt '%s' "
                    "--ignore-eos --max-length %d --threads 2 >/dev/null 2>&1",
                    MISER, pj, MISER, dir, prec, prompt, ctx), 0);
    size_t n = 0;
    char *t = test_read_file(pj, &n);
    cr_assert(t);
    cJSON *root = cJSON_Parse(t);
    free(t);
    cr_assert(root, "%s is not JSON", pj);
    const cJSON *stages = cJSON_GetObjectItem(root, "stages"), *s;
    double pk = 0, file_compile = -1, file_max = -1;
    const char *at = "";
    cJSON_ArrayForEach(s, stages)
    {
        const cJSON *p = cJSON_GetObjectItem(s, "peak_rss_kb"), *f = cJSON_GetObjectItem(s, "file_kb");
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(s, "name"));
        if (cJSON_IsNumber(p) && p->valuedouble > pk) {
            pk = p->valuedouble;
            at = name ? name : "";
        }
        if (cJSON_IsNumber(f)) {
            if (f->valuedouble > file_max) file_max = f->valuedouble;
            if (name && !strcmp(name, "compile")) file_compile = f->valuedouble;
        }
    }
    const cJSON *tl = cJSON_GetObjectItem(root, "timeline"), *row;
    int fi = -1, i = 0;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(tl, "columns"))
    {
        if (cJSON_IsString(row) && !strcmp(row->valuestring, "file_kb")) fi = i;
        i++;
    }
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(tl, "rows"))
    {
        const cJSON *f = fi >= 0 ? cJSON_GetArrayItem(row, fi) : NULL;
        if (cJSON_IsNumber(f) && f->valuedouble > file_max) file_max = f->valuedouble;
    }
    const int in_load = !strcmp(at, "load") || !strcmp(at, "compile");
    const double file = in_load ? file_compile : file_max;
    cJSON_Delete(root);
    cr_assert(pk > 0 && file > 0, "no peak or file_kb in %s", pj);
    *peak = pk * 1024;
    *anon = (pk - file) * 1024;
}

/* A prediction's peak matches a measurement within 3 %, or within 0.75 MB
 * for these small test processes: the process's own file pages (the
 * binary's and libraries' text resident through fault-around) are a
 * calibrated constant that differs between machines by about 0.6 MB (a
 * CI machine measured the hf-tiny-a q8_0 conversion 0.56 MB below this
 * one), which is 3 % of a 20 MB process but 0.2 % of GPT-2 small's. The
 * full-size grid (bench/budget_grid.py, docs/budgets.md) holds to 3 %. */
static bool peak_close(double predicted, double measured)
{
    const double d = predicted - measured;
    return (d >= -0.03 * measured && d <= 0.03 * measured) || (d >= -0.75 * 1048576 && d <= 0.75 * 1048576);
}

Test(budget, prediction_within_3_percent_of_exact_peaks, .timeout = 300)
{
    if (SANITIZED) {
        cr_skip_test("a sanitized build: the calibrated process constants do not describe it");
        return;
    }
    char llama[128], gpt2[128];
    snprintf(llama, sizeof llama, "%s/llama", g_tmp);
    snprintf(gpt2, sizeof gpt2, "%s/gpt2", g_tmp);
    cr_assert_eq(test_sh("'%s' synth --arch llama --shape tiny --out '%s' --quiet", MISER, llama), 0);
    cr_assert_eq(test_sh("'%s' synth --layers 4 --embd 256 --heads 4 --ctx 256 --out '%s' --quiet", MISER, gpt2), 0);
    struct { const char *dir, *prec; int ctx; } grid[] = {
        {TINY, "f32", 32}, {TINY, "f32", 128}, {TINY, "f16", 128},
        {TINY, "q8_0", 32}, {llama, "f32", 64}, {gpt2, "q8_0", 160}};
    for (size_t i = 0; i < sizeof grid / sizeof *grid; i++) {
        miser_budget_model *b = NULL;
        cr_assert_eq(miser_budget_open(grid[i].dir, &b), MISER_OK, "%s", miser_error_message());
        miser_budget_config c = {.ctx = grid[i].ctx, .parallel = 1, .threads = 2};
        cr_assert(!miser_dtype_parse(grid[i].prec, &c.precision));
        miser_budget_prediction p;
        cr_assert_eq(miser_budget_predict(b, &c, &p), MISER_OK);
        miser_budget_free(b);
        double peak, anon;
        measure(grid[i].dir, grid[i].prec, grid[i].ctx, &peak, &anon);
        const double e = ((double)p.rss - peak) / peak, ea = ((double)p.rss_anon - anon) / 1048576.0;
        cr_log_info("budget: %s %s ctx %d: predicted %.2f MB measured %.2f MB (%+.1f %%), anon %.2f vs %.2f MB",
                    grid[i].dir, grid[i].prec, grid[i].ctx, p.rss / 1048576.0, peak / 1048576.0, e * 100,
                    p.rss_anon / 1048576.0, anon / 1048576.0);
        cr_expect(peak_close((double)p.rss, peak), "%s %s ctx %d: predicted peak %.2f MB, measured exact peak %.2f MB (%+.1f %%)",
                  grid[i].dir, grid[i].prec, grid[i].ctx, p.rss / 1048576.0, peak / 1048576.0, e * 100);
        cr_expect(ea >= -2 && ea <= 2, "%s %s ctx %d: predicted RssAnon %.2f MB, measured %.2f MB", grid[i].dir,
                  grid[i].prec, grid[i].ctx, p.rss_anon / 1048576.0, anon / 1048576.0);
    }
}

/* `miser serve --parallel 4` measured from outside, as bench/budget_serve.py
 * does (a shell script: the profiler around serve, 4 concurrent sampling
 * requests with curl, /proc/PID/status of serve when ready and at the end):
 * the exact peak, RssAnon at the peak in its phase (the load's: less
 * RssFile at ready; the run's: less RssFile at the end) and at the end. */
static const char SERVE_MEAS_SH[] =
    "#!/bin/sh\n"
    "# serve_meas.sh MISER MODEL DIR: serve --parallel 4 under `miser profile`, 4 concurrent\n"
    "# sampling requests to the full context; writes DIR/s.json (the profile) and DIR/meas\n"
    "# (\"ready_file_kb end_anon_kb end_file_kb\")\n"
    "M=$1; MODEL=$2; D=$3\n"
    "rm -f \"$D/out\" \"$D/err\" \"$D/meas\"\n"
    "\"$M\" profile --json \"$D/s.json\" --format none -- \"$M\" serve --model \"$MODEL\" --port 0 --parallel 4 --ctx 128 \\\n"
    "    --threads 2 >\"$D/out\" 2>\"$D/err\" &\n"
    "P=$!\n"
    "i=0\n"
    "until grep -q \"ready in\" \"$D/err\" 2>/dev/null; do i=$((i+1)); [ $i -gt 600 ] && { kill $P; exit 1; }; sleep 0.05; done\n"
    "S=$(pgrep -P $P | head -1)\n"
    "PORT=$(sed -n 's/.*127\\.0\\.0\\.1:\\([0-9]*\\).*/\\1/p' \"$D/out\" | head -1)\n"
    "[ -n \"$S\" ] && [ -n \"$PORT\" ] || { kill $P; exit 1; }\n"
    "RF=$(awk '/^RssFile:/{print $2}' /proc/$S/status)\n"
    "IDS=64; for k in $(seq 63); do IDS=\"$IDS,257\"; done\n"
    "C=\"\"\n"
    "for k in 1 2 3 4; do\n"
    "  curl -s -m 120 -o \"$D/r$k\" -H 'Content-Type: application/json' \\\n"
    "    -d \"{\\\"prompt\\\":[$IDS],\\\"max_tokens\\\":64,\\\"ignore_eos\\\":true,\\\"temperature\\\":1.0}\" \\\n"
    "    \"http://127.0.0.1:$PORT/v1/completions\" &\n"
    "  C=\"$C $!\"\n"
    "done\n"
    "wait $C\n"
    "for k in 1 2 3 4; do grep -q '\"completion_tokens\":64' \"$D/r$k\" || { kill $S; exit 1; }; done\n"
    "EA=$(awk '/^RssAnon:/{print $2}' /proc/$S/status); EF=$(awk '/^RssFile:/{print $2}' /proc/$S/status)\n"
    "kill -TERM $S; wait $P\n"
    "echo \"$RF $EA $EF\" >\"$D/meas\"\n";

/* The predicted serve process, against a real one (hf-tiny-a, f32, ctx 128,
 * 4 sequences on the batched engine, 2 threads): a model this small peaks in
 * the load (the tokenizer's freed parse tree, before the release), and the
 * prediction must say so; RssAnon at the peak and at the end (what the
 * server keeps: the KV pool, the arena, the compute and connection threads,
 * the sampler) within 2 MB, the peak within 3 % / 0.75 MB. */
Test(budget, serve_parallel_4_matches_its_exact_peak, .timeout = 120)
{
    if (SANITIZED) {
        cr_skip_test("a sanitized build: the calibrated process constants do not describe it");
        return;
    }
    if (test_sh("command -v curl >/dev/null 2>&1")) {
        cr_skip_test("no curl to send the requests");
        return;
    }
    miser_budget_model *b = NULL;
    cr_assert_eq(miser_budget_open(TINY, &b), MISER_OK, "%s", miser_error_message());
    miser_budget_config c = {.precision = MISER_DTYPE_F32, .ctx = 128, .parallel = 4, .threads = 2,
                             .engine = MISER_BUDGET_SERVE_BATCH};
    miser_budget_prediction p;
    cr_assert_eq(miser_budget_predict(b, &c, &p), MISER_OK);
    miser_budget_free(b);
    char sh[128], meas[128], pj[128];
    snprintf(sh, sizeof sh, "%s/serve_meas.sh", g_tmp);
    snprintf(meas, sizeof meas, "%s/meas", g_tmp);
    snprintf(pj, sizeof pj, "%s/s.json", g_tmp);
    cr_assert_eq(test_write_file(sh, SERVE_MEAS_SH), 0, "cannot write %s", sh);
    cr_assert_eq(test_sh("timeout 100 sh '%s' '%s' '%s' '%s'", sh, MISER, TINY, g_tmp), 0, "the serve run failed");
    double rf = 0, ea = 0, ef = 0;
    FILE *f = fopen(meas, "r");
    cr_assert(f);
    cr_assert_eq(fscanf(f, "%lf %lf %lf", &rf, &ea, &ef), 3);
    fclose(f);
    size_t n = 0;
    char *t = test_read_file(pj, &n);
    cr_assert(t);
    double pk = 0;
    for (const char *q = t; (q = strstr(q, "\"peak_rss_kb\": ")); q++) {
        const double v = atof(q + 15);
        if (v > pk) pk = v;
    }
    free(t);
    cr_assert(pk > 0 && ea > 0 && ef > 0);
    const int in_load = pk > ea + ef + 256; /* kB: above the end's RSS, so the load's */
    const double peak = pk * 1024, anon = (pk - (in_load ? rf : ef)) * 1024, end_anon = ea * 1024;
    cr_log_info("budget: serve --parallel 4: predicted %.2f MB (%s) measured %.2f MB (%s), anon %.2f vs %.2f MB, "
                "run anon %.2f vs end %.2f MB", p.rss / 1048576.0, p.peak_in_load ? "load" : "run", peak / 1048576.0,
                in_load ? "load" : "run", p.rss_anon / 1048576.0, anon / 1048576.0, p.run_anon / 1048576.0,
                end_anon / 1048576.0);
    cr_expect_eq(p.peak_in_load, in_load, "predicted the peak in the %s, measured it in the %s",
                 p.peak_in_load ? "load" : "run", in_load ? "load" : "run");
    cr_expect(peak_close((double)p.rss, peak), "serve: predicted peak %.2f MB, measured exact peak %.2f MB",
              p.rss / 1048576.0, peak / 1048576.0);
    const double da = ((double)p.rss_anon - anon) / 1048576.0, dr = ((double)p.run_anon - end_anon) / 1048576.0;
    cr_expect(da >= -2 && da <= 2, "serve: predicted RssAnon at the peak %.2f MB, measured %.2f MB",
              p.rss_anon / 1048576.0, anon / 1048576.0);
    cr_expect(dr >= -2 && dr <= 2, "serve: predicted RssAnon while serving %.2f MB, measured at the end %.2f MB",
              p.run_anon / 1048576.0, end_anon / 1048576.0);
}

/* The first run at a converted precision makes the cache: its exact peak
 * is the conversion's (the source mapped and read whole), predicted by
 * miser_budget_convert_peak; the run itself is predicted apart. */
Test(budget, conversion_peak_within_3_percent)
{
    if (SANITIZED) {
        cr_skip_test("a sanitized build: the calibrated process constants do not describe it");
        return;
    }
    const char *precs[] = {"q8_0", "f16"};
    for (int i = 0; i < 2; i++) {
        char cache[128], pj[128];
        snprintf(cache, sizeof cache, "%s/fresh-%s", g_tmp, precs[i]);
        snprintf(pj, sizeof pj, "%s/c.json", g_tmp);
        setenv("MISER_CACHE_DIR", cache, 1); /* nothing cached: this run converts */
        miser_budget_model *b = NULL;
        cr_assert_eq(miser_budget_open(TINY, &b), MISER_OK, "%s", miser_error_message());
        miser_dtype d;
        cr_assert(!miser_dtype_parse(precs[i], &d));
        const uint64_t cp = miser_budget_convert_peak(b, d);
        cr_assert_eq(miser_budget_convert_peak(b, miser_budget_stored_dtype(b)), 0);
        miser_budget_free(b);
        cr_assert_eq(test_sh("'%s' profile --json '%s' --format none -- '%s' generate --model '%s' --precision %s --prompt a "
                        "--max-new-tokens 1 --threads 2 >/dev/null 2>'%s/conv.err'", MISER, pj, MISER, TINY, precs[i], g_tmp),
                     0);
        char errf[160];
        snprintf(errf, sizeof errf, "%s/conv.err", g_tmp);
        size_t n = 0;
        char *e = test_read_file(errf, &n);
        cr_assert(e && strstr(e, "converted the weights"), "the run did not convert: %s", e ? e : "");
        free(e);
        char *t = test_read_file(pj, &n);
        cr_assert(t);
        double pk = 0;
        for (const char *q = t; (q = strstr(q, "\"peak_rss_kb\": ")); q++)
            if (atof(q + 15) > pk) pk = atof(q + 15);
        free(t);
        const double err = ((double)cp - pk * 1024) / (pk * 1024);
        cr_log_info("budget: hf-tiny-a first run at %s: conversion predicted %.2f MB, measured exact peak %.2f MB (%+.1f %%)",
                    precs[i], cp / 1048576.0, pk / 1024, err * 100);
        cr_expect(peak_close((double)cp, pk * 1024), "%s conversion: predicted %.2f MB, measured %.2f MB (%+.1f %%)", precs[i],
                  cp / 1048576.0, pk / 1024, err * 100);
    }
}

/* stderr of the last run: exactly one line containing a and b */
static void one_line(const char *err, const char *a, const char *b)
{
    size_t n = 0;
    char *e = test_read_file(err, &n);
    cr_assert(e);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += e[i] == '\n';
    cr_assert(lines == 1, "expected one line, got:\n%s", e);
    cr_assert(!a || strstr(e, a), "'%s' not in: %s", a, e);
    cr_assert(!b || strstr(e, b), "'%s' not in: %s", b, e);
    free(e);
}

/* A memory cgroup (v1 memory.limit_in_bytes + memsw, else v2 memory.max)
 * limited to `limit` bytes; `cmd` runs inside it (sh -c, exec'd). Returns
 * the command's exit status (-1: no cgroup could be made, *why says so);
 * *usage: the group's peak charge (max_usage_in_bytes / memory.peak, -1
 * when not readable), *oom: its oom_kill count (-1 when not readable). */
static int in_cgroup(unsigned long long limit, const char *cmd, long long *usage, long long *oom, char *why, size_t wcap)
{
    char cg[160], f[256], line[256];
    int v1 = 1;
    *usage = *oom = -1;
    snprintf(cg, sizeof cg, "/sys/fs/cgroup/memory/miser-test-budget-%d", (int)getpid());
    if (mkdir(cg, 0755)) {
        v1 = 0;
        snprintf(cg, sizeof cg, "/sys/fs/cgroup/unified/miser-test-budget-%d", (int)getpid());
        if (mkdir(cg, 0755)) {
            snprintf(cg, sizeof cg, "/sys/fs/cgroup/miser-test-budget-%d", (int)getpid());
            if (mkdir(cg, 0755)) {
                snprintf(why, wcap, "no writable memory cgroup (v1 /sys/fs/cgroup/memory or v2): not run");
                return -1;
            }
        }
    }
    snprintf(f, sizeof f, "%s/%s", cg, v1 ? "memory.limit_in_bytes" : "memory.max");
    FILE *lf = fopen(f, "w");
    int set = lf && fprintf(lf, "%llu\n", limit) > 0;
    if (lf) set &= fclose(lf) == 0;
    if (!set) {
        rmdir(cg);
        snprintf(why, wcap, "cannot set %s (v2 without the memory controller?): not run", f);
        return -1;
    }
    /* no swap to escape to: memsw (v1) / swap.max (v2) as well when the kernel has them */
    snprintf(f, sizeof f, "%s/%s", cg, v1 ? "memory.memsw.limit_in_bytes" : "memory.swap.max");
    if ((lf = fopen(f, "w"))) {
        if (v1) fprintf(lf, "%llu\n", limit);
        else fprintf(lf, "0\n");
        fclose(lf);
    }
    const int rc = test_sh("sh -c 'echo $$ > %s/cgroup.procs && exec %s'", cg, cmd);
    /* cgroup files report a size of 0: read them line by line */
    snprintf(f, sizeof f, "%s/%s", cg, v1 ? "memory.oom_control" : "memory.events");
    if ((lf = fopen(f, "r"))) {
        while (fgets(line, sizeof line, lf))
            if (!strncmp(line, "oom_kill ", 9)) *oom = atoll(line + 9);
        fclose(lf);
    }
    snprintf(f, sizeof f, "%s/%s", cg, v1 ? "memory.max_usage_in_bytes" : "memory.peak");
    if ((lf = fopen(f, "r"))) {
        if (fgets(line, sizeof line, lf)) *usage = atoll(line);
        fclose(lf);
    }
    if (rmdir(cg)) { /* page cache still charged: v1 moves it to the parent on force_empty */
        snprintf(f, sizeof f, "%s/memory.force_empty", cg);
        if ((lf = fopen(f, "w"))) {
            fputs("0\n", lf);
            fclose(lf);
        }
        rmdir(cg);
    }
    return rc;
}

/* a private copy of src's checkpoint in dir, then (drop_weights) out of
 * the page cache: its pages are read, and charged, inside the group that
 * runs on it (page cache is charged to the group that first reads a page) */
static void private_copy(const char *src, const char *dir)
{
    cr_assert_eq(test_sh("mkdir -p '%s' && cp '%s/config.json' '%s/model.safetensors' '%s/'", dir, src, src, dir), 0);
}

/* after the prediction: its header parse reads ahead (charged to this
 * process's group), so the file is dropped again right before the run */
static void drop_weights(const char *dir)
{
    char path[200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int fd = open(path, O_RDONLY);
    cr_assert(fd >= 0);
    evict(fd);
    cr_assert_eq(resident(fd, lseek(fd, 0, SEEK_END), 0), 0, "%s stayed in the page cache after POSIX_FADV_DONTNEED",
                 path);
    close(fd);
}

/* At the predicted peak + 5 %: generation completes, no OOM kill, and the
 * group was charged the whole run (its peak holds at least the weights, so
 * the file pages were read inside it). */
Test(budget, runs_inside_a_cgroup_at_the_predicted_peak)
{
    if (SANITIZED) {
        cr_skip_test("a sanitized build: the calibrated process constants do not describe it");
        return;
    }
    char dir[128], cmd[512], why[320];
    snprintf(dir, sizeof dir, "%s/m", g_tmp);
    private_copy(TINY, dir);
    miser_budget_model *b = NULL;
    cr_assert_eq(miser_budget_open(dir, &b), MISER_OK);
    miser_budget_config c = {.precision = MISER_DTYPE_F32, .ctx = 128, .parallel = 1, .threads = 2};
    miser_budget_prediction p;
    cr_assert_eq(miser_budget_predict(b, &c, &p), MISER_OK);
    miser_budget_free(b);
    drop_weights(dir);
    const unsigned long long limit = (unsigned long long)((double)p.rss * 1.05);
    char prompt[140] = "a";
    for (int i = 1; i < 64; i++) strcat(prompt, " a");
    snprintf(cmd, sizeof cmd, "\"%s\" generate --model \"%s\" --prompt \"%s\" --ignore-eos --max-length 128 --threads 2 >/dev/null",
             MISER, dir, prompt);
    long long usage, oom;
    const int rc = in_cgroup(limit, cmd, &usage, &oom, why, sizeof why);
    if (rc == -1) {
        cr_skip_test("%s", why);
        return;
    }
    cr_log_info("budget: cgroup limit %llu bytes (predicted %.2f MB + 5 %%), peak charge %lld, oom_kill %lld", limit,
                p.rss / 1048576.0, usage, oom);
    cr_assert_eq(rc, 0, "generate exited %d inside a cgroup of %llu bytes", rc, limit);
    cr_assert_eq(oom, 0, "oom_kill %lld (-1: not readable)", oom);
    cr_assert_geq(usage, (long long)(p.weights + p.rss_anon / 2),
                  "the cgroup's peak charge is %lld bytes, below the weights (%llu) and half the anonymous memory: the "
                  "run was not charged to it", usage, (unsigned long long)p.weights);
    cr_assert_leq(usage, (long long)limit);
}

/* Half the weights' size, --allow-paging: the weights cannot all stay
 * resident, the kernel evicts and re-reads them, and generation completes
 * (bench/budget_paging.sh reports what it costs). */
Test(budget, runs_paged_at_half_the_weights, .timeout = 180)
{
    if (SANITIZED) {
        cr_skip_test("a sanitized build: the calibrated process constants do not describe it");
        return;
    }
    char src[128], dir[128], cmd[512], why[320];
    snprintf(src, sizeof src, "%s/g", g_tmp);
    snprintf(dir, sizeof dir, "%s/gp", g_tmp);
    /* 61 MB of weights, RssAnon ~8 MB: half the weights leaves room for the anonymous part */
    cr_assert_eq(test_sh("'%s' synth --layers 4 --embd 256 --heads 4 --ctx 256 --out '%s' --quiet", MISER, src), 0);
    private_copy(src, dir);
    miser_budget_model *b = NULL;
    cr_assert_eq(miser_budget_open(dir, &b), MISER_OK);
    miser_budget_config c = {.precision = MISER_DTYPE_F32, .ctx = 24, .parallel = 1, .threads = 2};
    miser_budget_prediction p;
    cr_assert_eq(miser_budget_predict(b, &c, &p), MISER_OK);
    miser_budget_free(b);
    drop_weights(dir);
    const unsigned long long limit = p.weights / 2;
    cr_assert_lt(p.rss_anon + (8u << 20), limit, "the anonymous part (%.1f MB) does not fit half the weights", p.rss_anon / 1048576.0);
    snprintf(cmd, sizeof cmd, "\"%s\" generate --model \"%s\" --prompt Hello --ignore-eos --max-new-tokens 4 --threads 2 "
             "--precision f32 --memory-budget %llu --allow-paging >/dev/null 2>\"%s/paging.err\"", MISER, dir, limit, g_tmp);
    long long usage, oom;
    const int rc = in_cgroup(limit, cmd, &usage, &oom, why, sizeof why);
    if (rc == -1) {
        cr_skip_test("%s", why);
        return;
    }
    cr_log_info("budget: paged run in a cgroup of %llu bytes (weights %llu): peak charge %lld, oom_kill %lld", limit,
                (unsigned long long)p.weights, usage, oom);
    cr_assert_eq(rc, 0, "generate --allow-paging exited %d inside a cgroup of half the weights (%llu bytes)", rc, limit);
    cr_assert_eq(oom, 0, "oom_kill %lld (-1: not readable)", oom);
    char err[160];
    snprintf(err, sizeof err, "%s/paging.err", g_tmp);
    one_line(err, "--allow-paging: running anyway", "evicted and re-read");
}

Test(budget, refusals)
{
    char err[128];
    snprintf(err, sizeof err, "%s/err", g_tmp);
    const char *bad[] = {"0", "-5", "12XB", "-1G"};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(test_sh("'%s' plan --model '%s' --memory-budget '%s' >/dev/null 2>'%s'", MISER, TINY, bad[i], err), 2);
        one_line(err, "--memory-budget", bad[i]);
        cr_assert_eq(test_sh("'%s' generate --model '%s' --prompt Hi --memory-budget '%s' >/dev/null 2>'%s'", MISER, TINY, bad[i],
                        err), 2);
        one_line(err, "--memory-budget", bad[i]);
    }
    /* the same on serve and bench */
    cr_assert_eq(test_sh("'%s' serve --model '%s' --port 0 --memory-budget 12XB >/dev/null 2>'%s'", MISER, TINY, err), 2);
    one_line(err, "invalid --memory-budget '12XB'", NULL);
    cr_assert_eq(test_sh("'%s' bench --model '%s' --memory-budget -5 >/dev/null 2>'%s'", MISER, TINY, err), 2);
    one_line(err, "invalid --memory-budget '-5'", NULL);
    /* below the fixed overhead */
    cr_assert_eq(test_sh("'%s' serve --model '%s' --port 0 --memory-budget 4M >/dev/null 2>'%s'", MISER, TINY, err), 3);
    one_line(err, "fixed process overhead", "4M");
    cr_assert_eq(test_sh("'%s' generate --model '%s' --prompt Hi --memory-budget 4M >/dev/null 2>'%s'", MISER, TINY, err), 3);
    one_line(err, "fixed process overhead", "4M");
    cr_assert_eq(test_sh("'%s' plan --model '%s' --memory-budget 4M >/dev/null 2>'%s'", MISER, TINY, err), 3);
    one_line(err, "fixed process overhead", "4M");
    cr_assert_eq(test_sh("'%s' bench --model '%s' --memory-budget 4M >/dev/null 2>'%s'", MISER, TINY, err), 3);
    one_line(err, "fixed process overhead", "4M");
    /* fits nothing: even q8_0 needs more than 15 MB (hf-tiny-a: 3.4 MB of weights + process) */
    cr_assert_eq(test_sh("'%s' plan --model '%s' --memory-budget 15M >/dev/null 2>'%s'", MISER, TINY, err), 3);
    one_line(err, "fits no configuration", "needed");
    cr_assert_eq(test_sh("'%s' generate --model '%s' --prompt Hi --memory-budget 15M >/dev/null 2>'%s'", MISER, TINY, err), 3);
    one_line(err, "does not fit", "needed");
    cr_assert_eq(test_sh("'%s' bench --model '%s' --memory-budget 15M >/dev/null 2>'%s'", MISER, TINY, err), 3);
    one_line(err, "does not fit", "needed");
    cr_assert_eq(test_sh("'%s' serve --model '%s' --port 0 --parallel 4 --memory-budget 15M >/dev/null 2>'%s'", MISER, TINY, err),
                 3);
    one_line(err, "does not fit", "needed");
    /* a precision given that does not fit: refused before loading, with its parts and the budget */
    cr_assert_eq(test_sh("'%s' generate --model '%s' --prompt Hi --precision f32 --memory-budget 20M >/dev/null 2>'%s'", MISER,
                    TINY, err), 3);
    one_line(err, "weights 12.7", "20M");
    if (SANITIZED) return; /* ASan's shadow pages enter the measured tokenizer part: 22M fits nothing there */
    /* no precision: the widest that fits is picked and said (the f16 cache made first: its note is another line) */
    cr_assert_eq(test_sh("'%s' generate --model '%s' --prompt Hi --max-new-tokens 1 --precision f16 >/dev/null 2>&1", MISER, TINY), 0);
    cr_assert_eq(test_sh("'%s' generate --model '%s' --prompt Hi --max-new-tokens 2 --memory-budget 22M >/dev/null 2>'%s'", MISER,
                    TINY, err), 0);
    one_line(err, "picked --precision f16", "22M");
    /* plan recommends the same */
    char out[128];
    snprintf(out, sizeof out, "%s/plan.json", g_tmp);
    cr_assert_eq(test_sh("'%s' plan --model '%s' --memory-budget 22M --parallel 1 --json >'%s'", MISER, TINY, out), 0);
    size_t n;
    char *t = test_read_file(out, &n);
    cr_assert(t && strstr(t, "\"recommended\":{\"precision\":\"f16\""), "%s", t);
    free(t);
}
