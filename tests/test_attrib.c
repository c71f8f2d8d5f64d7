/* Per-stage peak attribution (`miser profile --attribute`, docs/attribution.md).
 *
 * Known truth: tests/attrib/truth.c allocates from named call sites with
 * sizes fixed in its source, frees some between the stages it announces, and
 * forks + execs a child; the expected bytes per site at every stage's peak
 * are derived here from that sequence, not from miser's output. The study's
 * bug: the naive pipeline's fold-constants pass copies weights per consumer,
 * so >= 95 % of the compile stage's extra peak must sit under
 * src/passes/fold_constants.c (the pass's own source file, named by DWARF
 * line information), and none with the default pipeline.
 *
 * The interposer is built without sanitizers and must not be preloaded into
 * sanitized binaries: under ASan these tests are skipped (the plain build
 * runs them). */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attrib/attrib_format.h"
#include "miser/profiler.h"
#include "profiler/attrib.h"
#include "support.h"

#if defined(__SANITIZE_ADDRESS__)
#define ATTRIB_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ATTRIB_UNDER_ASAN 1
#endif
#endif
#ifndef ATTRIB_UNDER_ASAN
#define ATTRIB_UNDER_ASAN 0
#endif

#define SKIP_UNDER_ASAN()                                                                                          \
    do {                                                                                                           \
        if (ATTRIB_UNDER_ASAN)                                                                                     \
            cr_skip_test("attribution: the interposer is not preloaded into sanitized binaries (tested in the "   \
                         "plain build)");                                                                          \
    } while (0)

static const char *lib_path(void) { return MISER_BUILD_DIR "/libmiser-attrib.so"; }

/* Run argv under the profiler with attribution; the profile as parsed JSON
 * (what a user reads), written and loaded through the public writer. */
static cJSON *profile_json(char *const argv[], miser_profile **keep)
{
    miser_watch_options o = {0};
    o.marker_pipe = 1;
    o.stdout_markers = 1; /* the command's stdout (generated text) goes to /dev/null */
    o.stdout_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    o.attribute_lib = lib_path();
    miser_profile *p = NULL;
    miser_status st = miser_profile_command(&o, argv, &p);
    close(o.stdout_fd);
    cr_assert_eq(st, MISER_OK, "%s", miser_error_message());
    cr_assert(miser_profile_has_attribution(p));
    char path[] = "/tmp/miser-attrib-test-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(miser_profile_write_file(p, MISER_REPORT_JSON, path), MISER_OK, "%s", miser_error_message());
    char *text = test_read_file(path, NULL);
    unlink(path);
    cr_assert(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert(j, "the profile JSON does not parse");
    if (keep) *keep = p;
    else miser_profile_free(p);
    return j;
}

static const cJSON *stage(const cJSON *j, const char *name)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(j, "stages"))
    {
        const cJSON *n = cJSON_GetObjectItem(s, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return s;
    }
    cr_assert_fail("no stage '%s'", name);
    return NULL;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    cr_assert(cJSON_IsNumber(v), "%s is not a number", k);
    return v->valuedouble;
}

/* Sum of bytes (and count) of the entries in list `key` whose innermost
 * frame is `fn`, optionally only for pid == want_pid (>0) or pid != -want_pid
 * (<0). Returns the number of matching entries. */
static int site(const cJSON *s, const char *key, const char *fn, int pid_sel, double *bytes, double *count,
                const char **kind)
{
    *bytes = *count = 0;
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(s, key))
    {
        const cJSON *st = cJSON_GetObjectItem(e, "stack");
        const cJSON *f0 = cJSON_GetArrayItem(st, 0);
        if (!cJSON_IsString(f0) || strcmp(f0->valuestring, fn)) continue;
        int pid = (int)num(e, "pid");
        if (pid_sel > 0 && pid != pid_sel) continue;
        if (pid_sel < 0 && pid == -pid_sel) continue;
        *bytes += num(e, "bytes");
        *count += num(e, "count");
        if (kind) *kind = cJSON_GetObjectItem(e, "kind")->valuestring;
        n++;
    }
    return n;
}

static void expect_site(const cJSON *s, const char *key, const char *fn, int pid_sel, double bytes, double count,
                        const char *kind)
{
    double b, c;
    const char *k = NULL;
    int n = site(s, key, fn, pid_sel, &b, &c, &k);
    const char *sn = cJSON_GetObjectItem(s, "name") ? cJSON_GetObjectItem(s, "name")->valuestring : "(top)";
    if (bytes == 0) {
        cr_expect_eq(n, 0, "stage %s %s: %s should not be listed (%.0f bytes)", sn, key, fn, b);
        return;
    }
    cr_expect_eq(n, 1, "stage %s %s: %s listed %d times", sn, key, fn, n);
    cr_expect_eq(b, bytes, "stage %s %s: %s has %.0f bytes, expected %.0f", sn, key, fn, b, bytes);
    cr_expect_eq(c, count, "stage %s %s: %s has %.0f blocks, expected %.0f", sn, key, fn, c, count);
    if (kind && k) cr_expect_str_eq(k, kind, "stage %s: %s kind", sn, fn);
}

static int parent_pid(const cJSON *j)
{
    /* the profiled command is the process whose parent is not in the list */
    const cJSON *procs = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "attribution"), "processes"), *p, *q;
    cJSON_ArrayForEach(p, procs)
    {
        int in = 0;
        cJSON_ArrayForEach(q, procs) in |= num(q, "pid") == num(p, "ppid");
        if (!in) return (int)num(p, "pid");
    }
    cr_assert_fail("no root process");
    return 0;
}

Test(attrib, known_truth_every_site_at_every_stage_peak)
{
    SKIP_UNDER_ASAN();
    char *argv[] = {MISER_BUILD_DIR "/attrib-truth", NULL};
    cJSON *j = profile_json(argv, NULL);
    int me = parent_pid(j);
    const double MiB8 = 8388608;
    const cJSON *one = stage(j, "one"), *two = stage(j, "two"), *three = stage(j, "three");
    /* one: A 2 x 1,000,000 + B 4,000,000 */
    expect_site(one, "attribution", "site_a", me, 2000000, 2, "heap");
    expect_site(one, "attribution", "site_b", me, 4000000, 1, "heap");
    cr_expect_geq(num(one, "attribution_peak_bytes"), 6000000);
    /* two: B freed; A's 3,000,000 came and went; C mapped */
    expect_site(two, "attribution", "site_a", me, 2000000, 2, "heap");
    expect_site(two, "attribution", "site_b", me, 0, 0, NULL);
    expect_site(two, "attribution", "site_c", me, MiB8, 1, "mmap-anon");
    expect_site(two, "attribution_temporary", "site_a", me, 3000000, 1, NULL);
    /* three: the parent's peak is before munmap(C) and before A's third block */
    expect_site(three, "attribution", "site_a", me, 2000000, 2, "heap");
    expect_site(three, "attribution", "site_b_realloc", me, 6000000, 1, "heap");
    expect_site(three, "attribution", "site_c", me, MiB8, 1, "mmap-anon");
    /* the exec'd child's allocation is its own, under its own pid */
    expect_site(three, "attribution", "site_d", -me, 5000000, 1, "heap");
    expect_site(three, "attribution", "site_d", me, 0, 0, NULL);
    expect_site(three, "attribution_temporary", "site_d", -me, 5000000, 1, NULL);
    double b, c;
    site(three, "attribution", "site_d", -me, &b, &c, NULL);
    /* the child's stack names its own caller */
    const cJSON *e;
    int saw_child_frame = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(three, "attribution"))
    {
        const cJSON *st = cJSON_GetObjectItem(e, "stack");
        if (strcmp(cJSON_GetArrayItem(st, 0)->valuestring, "site_d")) continue;
        saw_child_frame = !strcmp(cJSON_GetArrayItem(st, 1)->valuestring, "child");
        const cJSON *f0 = cJSON_GetArrayItem(cJSON_GetObjectItem(e, "frames"), 0);
        const cJSON *file = cJSON_GetObjectItem(f0, "file");
        cr_expect(cJSON_IsString(file) && strstr(file->valuestring, "truth.c"), "site_d's frame has no source file");
        cr_expect_gt(num(f0, "line"), 0);
    }
    cr_expect(saw_child_frame, "site_d's caller is not child()");
    /* growth over the stage start: B's 6,000,000 is new in three, C's is not */
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(three, "attribution"))
    {
        const char *f0 = cJSON_GetArrayItem(cJSON_GetObjectItem(e, "stack"), 0)->valuestring;
        if (!strcmp(f0, "site_c")) cr_expect_eq(num(e, "start_bytes"), MiB8);
        if (!strcmp(f0, "site_b_realloc")) cr_expect_eq(num(e, "start_bytes"), 0);
    }
    /* at exit: A's three blocks and B's realloc'd block leak; C was unmapped */
    const cJSON *top = cJSON_GetObjectItem(j, "attribution");
    expect_site(top, "leaks", "site_a", me, 3000000, 3, NULL);
    expect_site(top, "leaks", "site_b_realloc", me, 6000000, 1, NULL);
    expect_site(top, "leaks", "site_c", me, 0, 0, NULL);
    expect_site(top, "leaks", "site_d", -me, 0, 0, NULL);
    const cJSON *p;
    int nproc = 0;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(top, "processes"))
    {
        nproc++;
        cr_expect_str_eq(cJSON_GetObjectItem(p, "allocator")->valuestring, "interposed");
    }
    cr_expect_eq(nproc, 2, "parent and exec'd child (the fork child made no allocation before exec)");
    cJSON_Delete(j);
}

Test(attrib, threads_fork_in_thread_and_a_crashing_child)
{
    SKIP_UNDER_ASAN();
    char *argv[] = {MISER_BUILD_DIR "/attrib-truth", "threads", NULL};
    cJSON *j = profile_json(argv, NULL);
    int me = parent_pid(j);
    const cJSON *top = cJSON_GetObjectItem(j, "attribution");
    expect_site(top, "leaks", "site_t", me, 400000, 400, NULL);
    expect_site(top, "leaks", "site_churn", me, 0, 0, NULL);
    /* the child died of SIGSEGV after allocating: its bytes are kept */
    expect_site(stage(j, "exit"), "attribution", "site_crash", -me, 777777, 1, "heap");
    cJSON_Delete(j);
}

/* A realloc that moves by copying has both blocks live at once (glibc:
 * malloc, copy, free); one that glibc serves by mremap never has. Sizes from
 * tests/attrib/truth.c's "realloc" mode, not from miser's output. */
Test(attrib, realloc_that_moves_counts_both_blocks_while_copying)
{
    SKIP_UNDER_ASAN();
    char *argv[] = {MISER_BUILD_DIR "/attrib-truth", "realloc", NULL};
    cJSON *j = profile_json(argv, NULL);
    int me = parent_pid(j);
    const cJSON *copy = stage(j, "copy"), *remap = stage(j, "remap");
    /* at the copy's peak: the old 10,000,000, the new 15,000,000 and the fence */
    expect_site(copy, "attribution", "site_r1", me, 10000000, 1, "heap");
    expect_site(copy, "attribution", "site_r2", me, 15000000, 1, "heap");
    expect_site(copy, "attribution", "site_fence", me, 1000, 1, "heap");
    cr_expect_geq(num(copy, "attribution_peak_bytes"), 25001000);
    cr_expect_lt(num(copy, "attribution_peak_bytes"), 25001000 + 1000000, "%.0f", num(copy, "attribution_peak_bytes"));
    /* the mremap: only the new 60,000,000 at the peak, never 100,000,000 */
    expect_site(remap, "attribution", "site_r1", me, 0, 0, NULL);
    expect_site(remap, "attribution", "site_r2", me, 60000000, 1, "heap");
    cr_expect_lt(num(remap, "attribution_peak_bytes"), 60000000 + 1000000, "%.0f", num(remap, "attribution_peak_bytes"));
    /* both old blocks came and went inside their stage */
    expect_site(copy, "attribution_temporary", "site_r1", me, 10000000, 1, NULL);
    expect_site(remap, "attribution_temporary", "site_r1", me, 40000000, 1, NULL);
    /* and the process says how its reallocs moved (at least these two) */
    const cJSON *pr;
    cJSON_ArrayForEach(pr, cJSON_GetObjectItem(cJSON_GetObjectItem(j, "attribution"), "processes"))
    {
        if ((int)num(pr, "pid") != me) continue;
        cr_expect_geq(num(pr, "realloc_copies"), 1);
        cr_expect_geq(num(pr, "realloc_remaps"), 1);
    }
    cJSON_Delete(j);
}

/* A process crosses a boundary it did not announce at its next event. Its
 * values are still exact: nothing changed in it between the boundary and
 * that event, so the closing stage's peak, start and temporaries are the
 * state it had at the boundary (tests/attrib/truth.c "cross": a fork child
 * whose first event after "alpha" is an allocation). */
Test(attrib, unannounced_boundary_is_exact_in_another_process)
{
    SKIP_UNDER_ASAN();
    char *argv[] = {MISER_BUILD_DIR "/attrib-truth", "cross", NULL};
    cJSON *j = profile_json(argv, NULL);
    int me = parent_pid(j);
    const cJSON *alpha = stage(j, "alpha"), *beta = stage(j, "beta");
    expect_site(alpha, "attribution", "site_k1", -me, 3000000, 1, "heap");
    expect_site(alpha, "attribution", "site_k2", -me, 0, 0, NULL);
    expect_site(alpha, "attribution_temporary", "site_k2", -me, 0, 0, NULL);
    expect_site(beta, "attribution", "site_k1", -me, 3000000, 1, "heap");
    expect_site(beta, "attribution", "site_k2", -me, 2000000, 1, "heap");
    expect_site(beta, "attribution_temporary", "site_k2", -me, 2000000, 1, NULL);
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(beta, "attribution"))
    {
        const char *f0 = cJSON_GetArrayItem(cJSON_GetObjectItem(e, "stack"), 0)->valuestring;
        if (!strcmp(f0, "site_k1")) cr_expect_eq(num(e, "start_bytes"), 3000000, "K1 was live when beta began");
        if (!strcmp(f0, "site_k2")) cr_expect_eq(num(e, "start_bytes"), 0);
        if (!strcmp(f0, "site_p")) cr_expect_eq(num(e, "start_bytes"), 1500000);
    }
    /* the parent's block, made before alpha and untouched since: carried into beta */
    expect_site(alpha, "attribution", "site_p", me, 1500000, 1, "heap");
    expect_site(beta, "attribution", "site_p", me, 1500000, 1, "heap");
    cJSON_Delete(j);
}

/* Bounded tables: with room for one stack (MISER_ATTRIB_MAX_STACKS=4, three
 * of them the per-kind overflow buckets) the known-truth run's stacks are
 * truncated to their innermost frames or charged to "[stack table full]",
 * counted and warned about, and no byte is dropped: at every stage's peak
 * the entries plus the remainder still add up to the process's peak. */
Test(attrib, full_stack_table_is_counted_and_loses_no_bytes)
{
    SKIP_UNDER_ASAN();
    setenv("MISER_ATTRIB_MAX_STACKS", "4", 1);
    setenv("MISER_ATTRIB_MAX_NODES", "8", 1);
    char *argv[] = {MISER_BUILD_DIR "/attrib-truth", NULL};
    miser_profile *p = NULL;
    cJSON *j = profile_json(argv, &p);
    unsetenv("MISER_ATTRIB_MAX_STACKS");
    unsetenv("MISER_ATTRIB_MAX_NODES");
    int me = parent_pid(j);
    const char *names[] = {"one", "two", "three"};
    for (size_t k = 0; k < 3; k++) {
        const cJSON *s = stage(j, names[k]), *e;
        double sum = num(cJSON_GetObjectItem(s, "attribution_other"), "bytes"), mine = 0;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(s, "attribution"))
        {
            sum += num(e, "bytes");
            if ((int)num(e, "pid") == me) mine += num(e, "bytes");
        }
        cr_expect_eq(sum, num(s, "attribution_peak_bytes"), "stage %s: %.0f listed of %.0f", names[k], sum,
                     num(s, "attribution_peak_bytes"));
        if (k == 0) cr_expect_geq(mine, 6000000, "stage one: A and B, wherever they were charged");
    }
    const cJSON *pr;
    double over = 0, trunc = 0;
    cJSON_ArrayForEach(pr, cJSON_GetObjectItem(cJSON_GetObjectItem(j, "attribution"), "processes"))
    {
        over += num(pr, "stack_overflow");
        trunc += num(pr, "stack_truncated");
    }
    cr_expect_gt(over, 0);
    cr_expect_gt(trunc, 0);
    int warned = 0;
    for (size_t i = 0; i < miser_profile_warning_count(p); i++)
        warned |= strstr(miser_profile_warning(p, i), "stack table full") != NULL;
    cr_expect(warned, "no warning names the full stack table");
    miser_profile_free(p);
    cJSON_Delete(j);
}

/* A signal handler that calls the hooked mmap/munmap while the main thread
 * is inside malloc's hook: no deadlock, the run completes. */
Test(attrib, signal_handler_inside_a_hook_does_not_deadlock, .timeout = 60)
{
    SKIP_UNDER_ASAN();
    char *argv[] = {MISER_BUILD_DIR "/attrib-truth", "signals", NULL};
    cJSON *j = profile_json(argv, NULL);
    const cJSON *pr = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "attribution"), "processes"), 0);
    cr_assert(pr);
    cr_expect_geq(num(pr, "calls"), 600000, "%.0f calls", num(pr, "calls"));
    cr_expect_gt(num(pr, "map_calls"), 0, "the handler's mappings outside hooks are tracked");
    cJSON_Delete(j);
}

Test(attrib, own_allocator_is_reported)
{
    SKIP_UNDER_ASAN();
    char *argv[] = {MISER_BUILD_DIR "/attrib-own", NULL};
    miser_profile *p = NULL;
    cJSON *j = profile_json(argv, &p);
    const cJSON *pr = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "attribution"), "processes"), 0);
    cr_assert(pr);
    cr_expect(!strncmp(cJSON_GetObjectItem(pr, "allocator")->valuestring, "own: ", 5), "allocator: %s",
              cJSON_GetObjectItem(pr, "allocator")->valuestring);
    int warned = 0;
    for (size_t i = 0; i < miser_profile_warning_count(p); i++)
        warned |= strstr(miser_profile_warning(p, i), "brings its own allocator") != NULL;
    cr_expect(warned);
    miser_profile_free(p);
    cJSON_Delete(j);
}

/* Bytes of a stage's growth (bytes - start_bytes, allocations only) under
 * frames from src/passes/fold_constants.c, and the stage's total growth. */
static void fold_share(const cJSON *s, double *fold, double *extra)
{
    *extra = num(s, "attribution_peak_bytes") - num(s, "attribution_start_bytes");
    *fold = 0;
    const cJSON *e, *f;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(s, "attribution"))
    {
        if (!strcmp(cJSON_GetObjectItem(e, "kind")->valuestring, "mmap-file")) continue;
        int through = 0;
        cJSON_ArrayForEach(f, cJSON_GetObjectItem(e, "frames"))
        {
            const cJSON *file = cJSON_GetObjectItem(f, "file");
            through |= cJSON_IsString(file) && strstr(file->valuestring, "passes/fold_constants.c") != NULL;
        }
        if (through) *fold += num(e, "bytes") - num(e, "start_bytes");
    }
}

static cJSON *generate_profile(const char *pipeline, miser_profile **keep)
{
    char *argv[] = {MISER_BUILD_DIR "/miser", "generate", "--model", MISER_SOURCE_DIR "/tests/data/hf-tiny-a",
                    "--prompt", "Hello", "--max-new-tokens", "2", "--pipeline", (char *)pipeline, NULL};
    return profile_json(argv, keep);
}

Test(attrib, naive_pipeline_peak_is_fold_constants_copies)
{
    SKIP_UNDER_ASAN();
    miser_profile *naive = NULL, *dflt = NULL;
    cJSON *n = generate_profile("naive", &naive), *d = generate_profile("default", &dflt);
    double fold, extra;
    fold_share(stage(n, "compile"), &fold, &extra);
    cr_expect_gt(extra, 1e6, "the naive compile should grow by the weights' copies (%.0f bytes)", extra);
    cr_expect_geq(fold, 0.95 * extra, "only %.0f of %.0f bytes (%.1f %%) under fold_constants", fold, extra,
                  100.0 * fold / extra);
    fold_share(stage(d, "compile"), &fold, &extra);
    cr_expect_eq(fold, 0, "the default pipeline keeps %.0f bytes from fold_constants at the compile peak", fold);
    /* miser check: the stacks that grew most from default to naive name the pass */
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    size_t k = miser_profile_write_attribution_growth(dflt, naive, 3, m);
    fclose(m);
    cr_expect_gt(k, 0);
    cr_expect(buf && strstr(buf, "miser_pass_fold_constants"), "growth report:\n%s", buf ? buf : "");
    free(buf);
    buf = NULL;
    m = open_memstream(&buf, &len);
    k = miser_profile_write_attribution_growth(dflt, dflt, 3, m);
    fclose(m);
    cr_expect_eq(k, 0, "a profile against itself grew:\n%s", buf);
    free(buf);
    /* the SVG icicle names the pass too */
    buf = NULL;
    m = open_memstream(&buf, &len);
    cr_expect_eq(miser_profile_write_attribution_svg(naive, m), MISER_OK);
    fclose(m);
    cr_expect(strstr(buf, "<svg") && strstr(buf, "miser_pass_fold_constants"));
    free(buf);
    miser_profile_free(naive);
    miser_profile_free(dflt);
    cJSON_Delete(n);
    cJSON_Delete(d);
}

Test(attrib, json_round_trip_keeps_attribution)
{
    SKIP_UNDER_ASAN();
    char *argv[] = {MISER_BUILD_DIR "/attrib-truth", NULL};
    miser_profile *p = NULL;
    cJSON *j = profile_json(argv, &p);
    char *a = cJSON_PrintUnformatted(j);
    miser_profile *q = NULL;
    cr_assert_eq(miser_profile_parse_json(a, strlen(a), &q), MISER_OK, "%s", miser_error_message());
    cr_assert(miser_profile_has_attribution(q));
    /* written again, the attribution members are the same */
    char *b1 = NULL, *b2 = NULL;
    size_t l1 = 0, l2 = 0;
    FILE *f1 = open_memstream(&b1, &l1), *f2 = open_memstream(&b2, &l2);
    attrib_json_top(p, f1);
    attrib_json_top(q, f2);
    for (size_t i = 0; i < miser_profile_stage_count(p); i++) attrib_json_stage(p, i, f1), attrib_json_stage(q, i, f2);
    fclose(f1);
    fclose(f2);
    cr_expect_str_eq(b1, b2);
    free(b1);
    free(b2);
    /* a wrong type is refused, naming attribution */
    cJSON *bad = cJSON_Duplicate(j, 1);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(bad, "attribution"), "processes", cJSON_CreateString("x"));
    char *t = cJSON_PrintUnformatted(bad);
    miser_profile *r = NULL;
    cr_expect_eq(miser_profile_parse_json(t, strlen(t), &r), MISER_ERR_FORMAT);
    cr_expect(strstr(miser_error_message(), "attribution"));
    miser_profile_free(r);
    free(t);
    cJSON_Delete(bad);
    free(a);
    miser_profile_free(p);
    miser_profile_free(q);
    cJSON_Delete(j);
}

Test(attrib, interposer_without_the_watcher_only_forwards)
{
    SKIP_UNDER_ASAN();
    pid_t pid = fork();
    if (pid == 0) {
        unsetenv(MATTR_ENV_DIR);
        setenv("LD_PRELOAD", lib_path(), 1);
        execl(MISER_BUILD_DIR "/attrib-truth", "attrib-truth", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
}

Test(attrib, image_parser_rejects_damage)
{
    /* a minimal valid image built here, then damaged field by field */
    size_t len = MATTR_HEADER_SIZE + 4 * sizeof(mattr_stack) + 16 * 12 + 4 * MATTR_SNAP_MAX_BYTES + 64;
    unsigned char *buf = calloc(1, len);
    mattr_header *h = (mattr_header *)buf;
    h->magic = MATTR_MAGIC;
    h->version = MATTR_VERSION;
    h->header_size = MATTR_HEADER_SIZE;
    h->stacks_off = MATTR_HEADER_SIZE;
    h->max_stacks = 4;
    h->nodes_off = h->stacks_off + 4 * sizeof(mattr_stack);
    h->max_nodes = 16;
    h->parents_off = h->nodes_off + 16 * 8;
    h->snaps_off = h->parents_off + 16 * 4;
    h->snaps_cap = 4 * MATTR_SNAP_MAX_BYTES;
    h->maps_off = h->snaps_off + h->snaps_cap;
    h->max_maps = 64;
    h->nstacks = 2;
    h->nnodes = 3;
    h->interval = 2;
    h->peak_gen = 5;
    mattr_stack *s = (mattr_stack *)(buf + h->stacks_off);
    /* the frame tree: root, outer frame 0x1000, inner frame 0x2000 called from it */
    uint64_t *nip = (uint64_t *)(buf + h->nodes_off);
    uint32_t *npar = (uint32_t *)(buf + h->parents_off);
    nip[1] = 0x1000, npar[1] = 0;
    nip[2] = 0x2000, npar[2] = 1;
    s[1] = (mattr_stack){.node = 2, .kind = MATTR_KIND_HEAP, .cur_bytes = 100, .cur_count = 1, .mod_gen = 1};
    /* interval 0: peak 70, 90 at its end; interval 1 has no record (unchanged) */
    const mattr_snap rec = {.first = 0, .last = 0, .stack = 1, .peak_bytes = 70, .peak_count = 1, .end_bytes = 90,
                            .end_count = 1};
    h->snaps_len = (uint32_t)mattr_snap_encode(buf + h->snaps_off, &rec);
    cr_assert_lt(h->snaps_len, 20, "a record of small values takes %u bytes", h->snaps_len);
    mattr_snap back;
    cr_assert_eq(mattr_snap_decode(buf + h->snaps_off, h->snaps_len, &back), h->snaps_len);
    cr_expect(back.stack == 1 && back.peak_bytes == 70 && back.end_bytes == 90 && back.end_count == 1);
    const mattr_snap big = {.first = 7, .last = 9, .stack = MATTR_TOTALS, .peak_bytes = INT64_MAX,
                            .start_bytes = INT64_MIN, .temp_count = -5, .peak_count = INT32_MIN, .end_count = INT32_MAX};
    uint8_t enc[MATTR_SNAP_MAX_BYTES];
    size_t en = mattr_snap_encode(enc, &big);
    cr_assert(en <= MATTR_SNAP_MAX_BYTES && mattr_snap_decode(enc, en, &back) == en);
    cr_expect(!memcmp(&back, &big, sizeof back), "extreme values survive the varint stream");
    cr_expect_eq(mattr_snap_decode(enc, en - 1, &back), 0, "a truncated record");
    attrib_image im;
    cr_assert_eq(attrib_image_parse(buf, len, &im), MISER_OK, "%s", miser_error_message());
    cr_expect_eq(im.nintervals, 3);
    cr_expect_eq(im.intervals[0].nvals, 1);
    cr_expect_eq(im.intervals[0].vals[0].peak_bytes, 70);
    cr_assert_eq(im.intervals[1].nvals, 1, "the unchanged stack is carried into interval 1");
    cr_expect_eq(im.intervals[1].vals[0].peak_bytes, 90);
    cr_expect_eq(im.intervals[1].vals[0].start_bytes, 90);
    cr_expect_eq(im.intervals[1].vals[0].temp_bytes, 0);
    cr_expect_eq(im.intervals[2].vals[0].peak_bytes, 100, "not modified since the peak: the current value");
    cr_expect_eq(im.leak[1].peak_bytes, 100);
    uint64_t ips[MATTR_MAX_DEPTH];
    cr_expect_eq(attrib_stack_ips(&im, 1, ips), 2);
    cr_expect(ips[0] == 0x2000 && ips[1] == 0x1000, "innermost first: %#llx %#llx", (unsigned long long)ips[0],
              (unsigned long long)ips[1]);
    attrib_image_free(&im);
    struct {
        size_t off;
        uint64_t v;
        int width;
    } damage[] = {
        {offsetof(mattr_header, magic), 1, 8},
        {offsetof(mattr_header, nstacks), 5, 4},
        {offsetof(mattr_header, max_stacks), 1u << 30, 4},
        {offsetof(mattr_header, maps_len), 65, 4},
        {offsetof(mattr_header, interval_first), 2, 8},
        {h->stacks_off + sizeof(mattr_stack) + offsetof(mattr_stack, node), 3, 4},
        {h->parents_off + 2 * 4, 2, 4}, /* its own parent: a cycle */
        {h->parents_off + 1 * 4, 7, 4}, /* a parent after its child */
        {offsetof(mattr_header, parents_off), 1ull << 40, 8},
        {offsetof(mattr_header, nnodes), 0, 4},
        {h->stacks_off + sizeof(mattr_stack) + offsetof(mattr_stack, kind), 7, 4},
        {h->snaps_off + 0, 4, 1},                         /* stack 3 of 2 */
        {h->snaps_off + 2, 2, 1},                         /* last = 2: the interval in progress */
        {offsetof(mattr_header, snaps_len), h->snaps_len - 1, 4}, /* the record runs past the stream */
        {offsetof(mattr_header, snaps_len), h->snaps_cap + 1, 4},
        {offsetof(mattr_header, snaps_off), len - 8, 8},  /* the stream's capacity past the file */
    };
    for (size_t k = 0; k < sizeof damage / sizeof *damage; k++) {
        unsigned char *c = malloc(len);
        memcpy(c, buf, len);
        if (damage[k].width == 8) memcpy(c + damage[k].off, &damage[k].v, 8);
        else if (damage[k].width == 1) c[damage[k].off] = (unsigned char)damage[k].v;
        else {
            uint32_t v = (uint32_t)damage[k].v;
            memcpy(c + damage[k].off, &v, 4);
        }
        cr_expect_eq(attrib_image_parse(c, len, &im), MISER_ERR_FORMAT, "damage %zu accepted", k);
        free(c);
    }
    /* a varint that never ends (11 continuation bytes) */
    unsigned char *c = malloc(len);
    memcpy(c, buf, len);
    memset(c + h->snaps_off + 3, 0x80, 12);
    ((mattr_header *)c)->snaps_len = 15;
    cr_expect_eq(attrib_image_parse(c, len, &im), MISER_ERR_FORMAT, "an overlong varint accepted");
    free(c);
    cr_expect_eq(attrib_image_parse(buf, MATTR_HEADER_SIZE - 1, &im), MISER_ERR_FORMAT);
    cr_expect_eq(attrib_image_parse(buf, h->maps_off, &im), MISER_ERR_FORMAT, "truncated before the maps");
    free(buf);
}

Test(attrib, size_option)
{
    int64_t v;
    cr_expect_eq(miser_attrib_parse_size("4096", &v), 0);
    cr_expect_eq(v, 4096);
    cr_expect_eq(miser_attrib_parse_size("64K", &v), 0);
    cr_expect_eq(v, 65536);
    cr_expect_eq(miser_attrib_parse_size("1.5MiB", &v), 0);
    cr_expect_eq(v, 1572864);
    cr_expect_eq(miser_attrib_parse_size("2G", &v), 0);
    cr_expect_eq(v, 2147483648LL);
    cr_expect_neq(miser_attrib_parse_size("", &v), 0);
    cr_expect_neq(miser_attrib_parse_size("-1", &v), 0);
    cr_expect_neq(miser_attrib_parse_size("12Q", &v), 0);
    cr_expect_neq(miser_attrib_parse_size("1e30", &v), 0);
}

/* Runs under ASan too: a stored profile with attribution (the known-truth
 * run, also a fuzz seed) through the loader and every writer. */
Test(attrib, stored_profile_through_loader_and_writers)
{
    miser_profile *p = NULL;
    cr_assert_eq(miser_profile_load_json(MISER_SOURCE_DIR "/tests/fuzz/seeds/fuzz_profile_json/attribution.json", &p),
                 MISER_OK, "%s", miser_error_message());
    cr_assert(miser_profile_has_attribution(p));
    const miser_report_format fmts[] = {MISER_REPORT_TABLE, MISER_REPORT_MARKDOWN, MISER_REPORT_JSON};
    for (size_t k = 0; k < 3; k++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        cr_assert_eq(miser_profile_write(p, fmts[k], m), MISER_OK);
        fclose(m);
        cr_expect(strstr(buf, "site_b_realloc"), "format %zu lacks the stacks", k);
        if (fmts[k] == MISER_REPORT_JSON) {
            miser_profile *q = NULL;
            cr_expect_eq(miser_profile_parse_json(buf, len, &q), MISER_OK, "%s", miser_error_message());
            cr_expect(miser_profile_has_attribution(q));
            miser_profile_free(q);
        }
        free(buf);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    cr_expect_eq(miser_profile_write_attribution_svg(p, m), MISER_OK);
    attrib_write_html(p, m);
    fclose(m);
    cr_expect(strstr(buf, "site_d") && strstr(buf, "<section id=\"attribution\">"));
    free(buf);
    miser_profile_free(p);
}

/* ---- C++ names ----
 * The reference is binutils' c++filt in its --no-verbose form (-i), which
 * prints the C++ ABI's short names for the standard substitutions
 * (std::string rather than std::basic_string<char, ...>), as
 * __cxa_demangle and heaptrack do; the names come from nm, not from miser. */

static int have_tool(const char *name) { return test_sh("command -v %s >/dev/null 2>&1", name) == 0; }

/* Lines of a file (malloc'd array of malloc'd strings, newline removed). */
static char **read_lines(const char *path, size_t *n)
{
    char *text = test_read_file(path, NULL);
    *n = 0;
    if (!text) return NULL;
    size_t cap = 16;
    char **v = malloc(cap * sizeof *v);
    for (char *p = text, *e; *p; p = e + 1) {
        e = strchr(p, '\n');
        if (!e) e = p + strlen(p);
        if (*n == cap) v = realloc(v, (cap *= 2) * sizeof *v);
        v[(*n)++] = strndup(p, (size_t)(e - p));
        if (!*e) break;
    }
    free(text);
    return v;
}
static void free_lines(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Runs under ASan too (no interposer involved): every C++ symbol libstdc++
 * exports, demangled by attrib_demangle and by c++filt -i. */
Test(attrib, demangle_matches_cxxfilt_on_libstdcxx_symbols)
{
    if (!have_tool("nm") || !have_tool("c++filt")) {
        test_note("attrib/demangle: nm or c++filt (binutils) missing: not checked");
        return;
    }
    char *probe = attrib_demangle("_Znwm");
    if (!probe) {
        test_note("attrib/demangle: libstdc++.so.6 not found: C++ names stay mangled, not checked");
        return;
    }
    miser_free(probe);
    /* the libstdc++ the demangler came from, as this process mapped it */
    char lib[512] = "";
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[1024];
    while (maps && fgets(line, sizeof line, maps))
        if (strstr(line, "/libstdc++.so.6")) {
            char *p = strchr(line, '/');
            p[strcspn(p, "\n")] = 0;
            snprintf(lib, sizeof lib, "%s", p);
            break;
        }
    if (maps) fclose(maps);
    cr_assert(lib[0], "libstdc++ is not mapped after demangling");
    char dir[64];
    cr_assert_eq(test_tmpdir_make(dir, sizeof dir, "/tmp/miser-demangle-XXXXXX"), 0);
    /* with their symbol versions as nm prints them ("_Znwm@@GLIBCXX_3.4") */
    cr_assert_eq(test_sh("nm -D --defined-only '%s' | awk '$3 ~ /^_Z/ {print $3}' | sort -u >%s/names"
                         " && c++filt -i <%s/names >%s/ref",
                         lib, dir, dir, dir),
                 0);
    char path[128];
    size_t nn = 0, nr = 0;
    snprintf(path, sizeof path, "%s/names", dir);
    char **names = read_lines(path, &nn);
    snprintf(path, sizeof path, "%s/ref", dir);
    char **ref = read_lines(path, &nr);
    cr_assert_eq(nn, nr);
    cr_assert_gt(nn, 1000, "only %zu C++ symbols in %s", nn, lib);
    size_t differ = 0, demangled = 0;
    for (size_t i = 0; i < nn; i++) {
        char *d = attrib_demangle(names[i]);
        const char *got = d ? d : names[i]; /* c++filt echoes what it cannot demangle */
        if (d) demangled++;
        if (strcmp(got, ref[i]) && differ++ < 5)
            cr_expect_str_eq(got, ref[i], "%s", names[i]);
        miser_free(d);
    }
    cr_expect_eq(differ, 0, "%zu of %zu names differ from c++filt -i", differ, nn);
    cr_expect_gt(demangled, nn * 9 / 10);
    /* not C++: left alone (a C function may be called "i", a type's mangling) */
    cr_expect_null(attrib_demangle("malloc"));
    cr_expect_null(attrib_demangle("i"));
    cr_expect_null(attrib_demangle("_Z"));
    cr_expect_null(attrib_demangle(NULL));
    free_lines(names, nn);
    free_lines(ref, nr);
    test_tmpdir_remove(dir);
}

/* A C++ program built here with g++: two allocations under namespaced,
 * templated functions, through operator new / new[] (libstdc++) and
 * std::vector. Its frames must carry the names c++filt -i gives for the
 * symbols nm finds in the program and in libstdc++, with the mangled
 * symbol beside them. */
static const char *cxx_demo =
    "#include <cstddef>\n#include <cstring>\n#include <vector>\n"
    "namespace miser_demo {\n"
    "template <typename T> struct Pool {\n"
    "  std::vector<T> v;\n"
    "  __attribute__((noinline)) void reserve_weights(std::size_t n) { v.resize(n); }\n"
    "};\n"
    "struct Loader {\n"
    "  __attribute__((noinline)) static char *load_weights(std::size_t n) {\n"
    "    char *p = new char[n]; std::memset(p, 1, n); return p; }\n"
    "};\n"
    "}\n"
    "int main() {\n"
    "  char *w = miser_demo::Loader::load_weights(7000000);\n"
    "  miser_demo::Pool<double> pool;\n"
    "  pool.reserve_weights(1000000);\n"
    "  int r = w[10] + (int)pool.v[5];\n"
    "  delete[] w;\n"
    "  return r - 1;\n"
    "}\n";

static const cJSON *entry_of(const cJSON *j, double bytes)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(j, "stages"))
    {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(s, "attribution"))
        if (num(e, "bytes") == bytes && !strcmp(cJSON_GetObjectItem(e, "kind")->valuestring, "heap")) return e;
    }
    return NULL;
}

Test(attrib, cxx_frames_are_demangled_as_cxxfilt)
{
    SKIP_UNDER_ASAN();
    if (!have_tool("g++") || !have_tool("nm") || !have_tool("c++filt")) {
        test_note("attrib/cxx: g++, nm or c++filt missing: C++ demangling end to end not checked");
        return;
    }
    char *probe = attrib_demangle("_Znwm");
    if (!probe) {
        test_note("attrib/cxx: libstdc++.so.6 not found: C++ names stay mangled, not checked");
        return;
    }
    miser_free(probe);
    char dir[64], src[128], bin[128], path[160];
    cr_assert_eq(test_tmpdir_make(dir, sizeof dir, "/tmp/miser-cxx-XXXXXX"), 0);
    snprintf(src, sizeof src, "%s/demo.cc", dir);
    snprintf(bin, sizeof bin, "%s/cxxdemo", dir);
    cr_assert_eq(test_write_file(src, cxx_demo), 0, "cannot write %s", src);
    cr_assert_eq(test_sh("g++ -O1 -g -fno-inline -o %s %s", bin, src), 0, "g++ failed");
    /* the reference names: the program's symbols (nm) and libstdc++'s
     * operator new (operator new[] tail-calls it: no frame of its own) */
    cr_assert_eq(test_sh("{ nm %s | awk '{print $NF}' | grep -E 'load_weights|reserve_weights'; echo _Znwm; }"
                         " >%s/want && c++filt -i <%s/want >%s/want.ref",
                         bin, dir, dir, dir),
                 0);
    size_t nw = 0, nwr = 0;
    snprintf(path, sizeof path, "%s/want", dir);
    char **want = read_lines(path, &nw);
    snprintf(path, sizeof path, "%s/want.ref", dir);
    char **want_ref = read_lines(path, &nwr);
    cr_assert_eq(nw, 3, "nm found %zu of the demo's functions", nw - 1);
    cr_assert_eq(nwr, nw);

    char *argv[] = {bin, NULL};
    miser_profile *prof = NULL;
    cJSON *j = profile_json(argv, &prof);
    /* the reports escape what C++ names bring ('<', '>', '&') */
    for (int svg = 0; svg < 2; svg++) {
        char *rb = NULL;
        size_t rl = 0;
        FILE *m = open_memstream(&rb, &rl);
        cr_assert_eq(svg ? miser_profile_write_attribution_svg(prof, m) : miser_profile_write(prof, MISER_REPORT_MARKDOWN, m),
                     MISER_OK);
        fclose(m);
        cr_expect(strstr(rb, "vector&lt;double"), "%s lacks the escaped std::vector<double> frames", svg ? "SVG" : "Markdown");
        cr_expect(!strstr(rb, "<double>"), "an unescaped C++ template name in the %s", svg ? "SVG" : "Markdown");
        free(rb);
    }
    miser_profile_free(prof);
    const cJSON *load = entry_of(j, 7000000), *vec = entry_of(j, 8000000);
    cr_assert(load && vec, "no heap entry of 7,000,000 / 8,000,000 bytes");
    /* every demangled frame of both: its mangled symbol through c++filt -i */
    snprintf(path, sizeof path, "%s/mangled", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    size_t nm = 0, mangled_left = 0;
    const cJSON *es[2] = {load, vec};
    for (int q = 0; q < 2; q++) {
        const cJSON *st = cJSON_GetObjectItem(es[q], "stack"), *fr;
        int k = 0;
        cJSON_ArrayForEach(fr, cJSON_GetObjectItem(es[q], "frames"))
        {
            const char *fn = cJSON_GetObjectItem(fr, "function")->valuestring;
            cr_expect_str_eq(cJSON_GetArrayItem(st, k)->valuestring, fn, "stack and frames disagree at %d", k);
            const cJSON *m = cJSON_GetObjectItem(fr, "mangled");
            if (cJSON_IsString(m)) {
                fprintf(f, "%s\n%s\n", m->valuestring, fn);
                nm++;
            } else if (!strncmp(fn, "_Z", 2)) mangled_left++;
            k++;
        }
    }
    fclose(f);
    cr_expect_eq(mangled_left, 0, "%zu frames still mangled", mangled_left);
    cr_assert_gt(nm, 0, "no frame has a mangled name");
    size_t npairs = 0, nref = 0;
    char **pairs = read_lines(path, &npairs);
    cr_assert_eq(test_sh("awk 'NR %% 2 == 1' %s | c++filt -i >%s.ref", path, path), 0);
    snprintf(path + strlen(path), sizeof path - strlen(path), ".ref");
    char **ref = read_lines(path, &nref);
    cr_assert_eq(nref * 2, npairs);
    for (size_t i = 0; i < nref; i++)
        cr_expect_str_eq(pairs[2 * i + 1], ref[i], "frame %s: miser says '%s', c++filt -i '%s'", pairs[2 * i],
                         pairs[2 * i + 1], ref[i]);
    /* and the functions the program allocated from are there by name */
    for (size_t w = 0; w < nw; w++) {
        int found = 0;
        for (int q = 0; q < 2; q++) {
            const cJSON *fr;
            cJSON_ArrayForEach(fr, cJSON_GetObjectItem(es[q], "frames"))
            {
                const cJSON *m = cJSON_GetObjectItem(fr, "mangled");
                if (cJSON_IsString(m) && !strcmp(m->valuestring, want[w]) &&
                    !strcmp(cJSON_GetObjectItem(fr, "function")->valuestring, want_ref[w]))
                    found = 1;
            }
        }
        cr_expect(found, "no frame '%s' (%s)", want_ref[w], want[w]);
    }
    free_lines(pairs, npairs);
    free_lines(ref, nref);
    free_lines(want, nw);
    free_lines(want_ref, nwr);
    cJSON_Delete(j);
    test_tmpdir_remove(dir);
}

/* Birth tags: the live table keeps 8 bits of a block's birth interval and
 * re-tags every block each 64 intervals. A block born in interval 44 and
 * freed in interval 300 (44 + 256: the same 8-bit tag) must count as live
 * at 300's start (and at its peak, which is there: the smaller block made
 * after the free does not reach it), not as made and freed there; one made
 * and freed in 300 is temporary there. The program advances the stage counter itself. */
static const char *tag_prog =
    "#include <fcntl.h>\n#include <stdint.h>\n#include <stdlib.h>\n#include <sys/mman.h>\n#include <unistd.h>\n"
    "__attribute__((noinline)) static void *site_a(void) { return malloc(1000); }\n"
    "__attribute__((noinline)) static void *site_b(void) { return malloc(500); }\n"
    "int main(int argc, char **argv) {\n"
    "  int fd = open(argv[1], O_RDWR); if (fd < 0) return 1;\n"
    "  uint64_t *ctr = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0); if (ctr == MAP_FAILED) return 1;\n"
    "  void *a = 0;\n"
    "  for (uint64_t i = 1; i < 300; i++) {\n"
    "    __atomic_store_n(ctr, i, __ATOMIC_RELEASE);\n"
    "    if (i == 44) a = site_a(); else free(malloc(16));\n"
    "  }\n"
    "  __atomic_store_n(ctr, 300, __ATOMIC_RELEASE);\n"
    "  free(a); free(site_b());\n"
    "  return 0;\n"
    "}\n";

Test(attrib, birth_tags_survive_256_intervals)
{
    SKIP_UNDER_ASAN();
    test_box b;
    cr_assert_eq(test_box_init(&b, "attrib-tag", tag_prog, "tags"), 0, "cannot build the test program");
    char path[256];
    snprintf(path, sizeof path, "%s/%s", b.dir, MATTR_STAGE_FILE);
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    cr_assert(fd >= 0 && ftruncate(fd, 4096) == 0);
    close(fd);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("LD_PRELOAD", lib_path(), 1);
        setenv(MATTR_ENV_DIR, b.dir, 1);
        execl(b.bin, b.bin, path, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
    snprintf(path, sizeof path, "%s/%d.0.mattr", b.dir, (int)pid);
    size_t len = 0;
    char *buf = test_read_file(path, &len);
    cr_assert(buf, "no attribution file %s", path);
    attrib_image im;
    cr_assert_eq(attrib_image_parse(buf, len, &im), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(im.interval_last, 300);
    const attrib_interval *last = &im.intervals[im.nintervals - 1];
    int seen_a = 0, seen_b = 0;
    for (size_t q = 0; q < last->nvals; q++) {
        const attrib_val *v = &last->vals[q];
        if (v->start_bytes == 1000) {
            seen_a = 1;
            cr_expect_eq(v->temp_bytes, 0, "a block born 256 intervals earlier counted as temporary");
            cr_expect_eq(v->peak_bytes, 1000);
        }
        if (v->temp_bytes == 500) seen_b = 1;
    }
    cr_expect(seen_a, "site_a's block is not live at interval 300's start");
    cr_expect(seen_b, "site_b's block is not temporary in interval 300");
    /* and in interval 44 it was made (and not freed) there */
    const attrib_interval *i44 = &im.intervals[44 - im.interval_first];
    int born = 0;
    for (size_t q = 0; q < i44->nvals; q++)
        if (i44->vals[q].peak_bytes == 1000 && i44->vals[q].start_bytes == 0 && i44->vals[q].temp_bytes == 0) born = 1;
    cr_expect(born, "site_a's block not made in interval 44");
    attrib_image_free(&im);
    free(buf);
    test_box_free(&b);
}
