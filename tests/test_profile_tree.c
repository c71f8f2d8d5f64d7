/* The profiler's figures must be true (issue 13): an interval's peak is
 * never below a sample or snapshot of the same interval, for one process and
 * for trees with short-lived children (fork + exec + exit inside an
 * interval, children reaped by their own parent, grandchildren re-parented
 * to the profiler), and it says what it is (exact, upper or lower bound);
 * [STAGE] lines read late keep the command's own figure beside miser's;
 * `miser check` refuses what it cannot compare; output paths are checked
 * before the command runs. Children are real processes: a C program compiled
 * here with cc, /usr/bin/python3 and sh. The reference for "at least" is
 * miser's own sampler (a reading of VmRSS at a moment, summed over the tree)
 * and the sizes the children touch. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "miser/profiler.h"
#include "support.h"

#define MISER MISER_BUILD_DIR "/miser"
#define PY "/usr/bin/python3"

static const char tree_src[] =
    "#include \"miser_marker.h\"\n"
    "#include <sys/wait.h>\n"
    "static void touch(size_t mb){ volatile char *p = malloc(mb << 20); for (size_t i = 0; i < (mb << 20); i += 4096) p[i] = 1; }\n"
    "static const char *py = \"import time; b = bytearray(64 << 20); time.sleep(0.15)\";\n"
    "int main(int argc, char **argv) {\n"
    "  const char *mode = argv[1];\n"
    "  touch(32); /* the parent's own memory, held while its children run */\n"
    "  if (!strcmp(mode, \"reap\")) { /* a child of 64 MB that the parent reaps itself */\n"
    "    pid_t c = fork(); if (c == 0) { touch(64); usleep(150000); _exit(0); }\n"
    "    waitpid(c, NULL, 0); usleep(30000);\n"
    "  } else if (!strcmp(mode, \"exec\")) { /* fork + exec + exit inside one interval */\n"
    "    miser_marker(\"start\", NULL, NULL);\n"
    "    pid_t c = fork(); if (c == 0) { execl(\"/usr/bin/python3\", \"python3\", \"-c\", py, (char *)0); _exit(127); }\n"
    "    waitpid(c, NULL, 0);\n"
    "    miser_marker(\"after\", \"python child gone\", NULL); usleep(30000);\n"
    "  } else if (!strcmp(mode, \"orphan\") || !strcmp(mode, \"orphan-exec\")) {\n"
    "    /* A forks G and exits: G is re-parented to the profiler (a subreaper).\n"
    "     * G holds 48 MB; with orphan-exec it also runs a python child of 64 MB\n"
    "     * and reaps it itself. The parent waits for G through a pipe's EOF. */\n"
    "    int pfd[2]; pipe(pfd);\n"
    "    pid_t a = fork();\n"
    "    if (a == 0) {\n"
    "      if (fork() > 0) _exit(0);\n"
    "      close(pfd[0]); touch(48);\n"
    "      if (!strcmp(mode, \"orphan-exec\")) {\n"
    "        pid_t c = fork(); if (c == 0) { execl(\"/usr/bin/python3\", \"python3\", \"-c\", py, (char *)0); _exit(127); }\n"
    "        waitpid(c, NULL, 0);\n"
    "      } else usleep(150000);\n"
    "      _exit(0);\n"
    "    }\n"
    "    close(pfd[1]); char b; while (read(pfd[0], &b, 1) > 0) {}\n"
    "    usleep(30000);\n"
    "  }\n"
    "  return 0;\n"
    "}\n";

typedef test_box box;

static void box_init(box *b, int build)
{
    cr_assert_eq(test_box_init(b, "ptree", build ? tree_src : NULL, "tree"), 0, "making the test's directory or program failed");
}

static void box_free(box *b) { test_box_free(b); }

/* Exactly one line of text. */
static int one_line(const char *s)
{
    const char *n = strchr(s, '\n');
    return n && n[1] == 0;
}

static miser_profile *load(const box *b, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", b->dir, name);
    miser_profile *p = NULL;
    cr_assert_eq(miser_profile_load_json(path, &p), MISER_OK, "%s", miser_error_message());
    return p;
}

/* The invariant, for every interval: the peak is at least every sample taken
 * in it and both snapshots that bound it. Returns the largest sample of the
 * whole run (KiB). */
static int64_t assert_peaks_cover_samples(const miser_profile *p, const char *what)
{
    size_t ns = miser_profile_sample_count(p);
    const miser_sample *sm = miser_profile_samples(p);
    double prev_t = -1;
    int64_t prev_rss = -1, run_max = -1;
    cr_assert_gt(ns, 3, "%s: the sampler ran", what);
    for (size_t i = 0; i < miser_profile_stage_count(p); i++) {
        const miser_stage_record *s = miser_profile_stage(p, i);
        int64_t smax = -1;
        for (size_t k = 0; k < ns; k++)
            if (sm[k].t_s > prev_t && sm[k].t_s <= s->t_s && sm[k].rss_kb > smax) smax = sm[k].rss_kb;
        if (smax > run_max) run_max = smax;
        if (smax >= 0 || s->rss_kb >= 0 || prev_rss >= 0) {
            cr_assert_geq(s->peak_rss_kb, smax, "%s: interval '%s' peak %lld KiB (%s) below a sample %lld KiB", what,
                          s->name, (long long)s->peak_rss_kb, miser_peak_kind_name(s->peak_kind), (long long)smax);
            cr_assert_geq(s->peak_rss_kb, s->rss_kb, "%s: '%s' peak below its own snapshot", what, s->name);
            cr_assert_geq(s->peak_rss_kb, prev_rss, "%s: '%s' peak below the snapshot that opens it", what, s->name);
            cr_assert_geq(s->peak_rss_kb, s->peak_sampled_kb, "%s: '%s'", what, s->name);
        }
        prev_t = s->t_s;
        prev_rss = s->rss_kb;
    }
    return run_max;
}

static const miser_stage_record *stage(const miser_profile *p, const char *name)
{
    for (size_t i = 0; i < miser_profile_stage_count(p); i++)
        if (!strcmp(miser_profile_stage(p, i)->name, name)) return miser_profile_stage(p, i);
    cr_assert_fail("no stage '%s'", name);
    return NULL;
}

/* One process allocating 3 x 100 MB and exiting (the case): the
 * exit interval's peak is exact and at least what the sampler saw. */
Test(profile_tree, single_process_exit_interval_exact, .timeout = 60)
{
    box b;
    box_init(&b, 0);
    cr_assert_eq(test_sh("%s profile -i 10 --format none --json %s/p.json -- " PY
                    " -c 'import time\nfor i in range(3):\n  b = bytearray(100 << 20); time.sleep(0.05); del b'",
                    MISER, b.dir),
                 0);
    miser_profile *p = load(&b, "p.json");
    int64_t smax = assert_peaks_cover_samples(p, "python 3 x 100 MB");
    const miser_stage_record *e = stage(p, "exit");
    cr_assert_eq(e->peak_kind, MISER_PEAK_EXACT);
    cr_assert(e->peak_exact);
    cr_assert_geq(e->peak_rss_kb, 100 * 1024, "the 100 MB buffer is in the peak");
    cr_assert_geq(smax, 100 * 1024, "the sampler saw the buffer too");
    miser_profile_free(p);
    box_free(&b);
}

/* A child reaped by its own parent takes its peak into the parent's rusage
 * as a max, not a sum: the tree's figure must not fall below the samples
 * (today: max(parent, child) < parent + child) and says it is a lower bound. */
Test(profile_tree, child_reaped_by_parent_is_a_lower_bound, .timeout = 60)
{
    box b;
    box_init(&b, 1);
    cr_assert_eq(test_sh("%s profile -i 10 --format none --json %s/p.json -- %s reap", MISER, b.dir, b.bin), 0);
    miser_profile *p = load(&b, "p.json");
    int64_t smax = assert_peaks_cover_samples(p, "reap");
    const miser_stage_record *e = stage(p, "exit");
    cr_assert_eq(e->peak_kind, MISER_PEAK_LOWER_BOUND, "kind %s", miser_peak_kind_name(e->peak_kind));
    cr_assert_not(e->peak_exact);
    cr_assert_geq(smax, (32 + 64) * 1024, "parent and child were sampled together");
    cr_assert_geq(e->interval_procs, 2);
    miser_profile_free(p);
    /* The shell case: sh forks sleep and reaps it. */
    cr_assert_eq(test_sh("cd %s && %s profile -i 10 --format none --json %s/s.json -- sh -c 'sleep 0.2; touch f'", b.dir,
                    MISER, b.dir),
                 0);
    p = load(&b, "s.json");
    assert_peaks_cover_samples(p, "sh -c 'sleep; touch'");
    cr_assert_eq(stage(p, "exit")->peak_kind, MISER_PEAK_LOWER_BOUND);
    miser_profile_free(p);
    box_free(&b);
}

/* fork + exec (/usr/bin/python3) + exit inside one interval between two
 * synchronous marks: the interval's peak covers the samples that saw the
 * parent and the python child together. */
Test(profile_tree, fork_exec_exit_within_an_interval, .timeout = 60)
{
    box b;
    box_init(&b, 1);
    cr_assert_eq(test_sh("%s profile -i 10 --format none --json %s/p.json -- %s exec", MISER, b.dir, b.bin), 0);
    miser_profile *p = load(&b, "p.json");
    assert_peaks_cover_samples(p, "exec");
    const miser_stage_record *st = stage(p, "start"), *af = stage(p, "after");
    cr_assert_eq(st->source, MISER_MARK_PIPE_ACK, "the C helper waits for the acknowledgement");
    cr_assert_eq(st->peak_kind, MISER_PEAK_EXACT, "one process before the fork: %s",
                 miser_peak_kind_name(st->peak_kind));
    cr_assert_geq(af->peak_rss_kb - st->rss_kb, 64 * 1024, "the python child's 64 MB is in the interval's peak");
    cr_assert_eq(af->peak_kind, MISER_PEAK_LOWER_BOUND);
    miser_profile_free(p);
    box_free(&b);
}

/* Grandchildren re-parented to the profiler are reaped by it, so their peaks
 * are known: the sum is an upper bound. When the re-parented grandchild
 * itself runs and reaps a python child, the zombie's cminflt shows it and
 * the figure becomes a lower bound, still above every sample. */
Test(profile_tree, reparented_grandchildren, .timeout = 60)
{
    box b;
    box_init(&b, 1);
    cr_assert_eq(test_sh("%s profile -i 10 --format none --json %s/p.json -- %s orphan", MISER, b.dir, b.bin), 0);
    miser_profile *p = load(&b, "p.json");
    int64_t smax = assert_peaks_cover_samples(p, "orphan");
    const miser_stage_record *e = stage(p, "exit");
    cr_assert_eq(e->peak_kind, MISER_PEAK_UPPER_BOUND, "kind %s", miser_peak_kind_name(e->peak_kind));
    cr_assert_geq(e->interval_procs, 3, "parent, middle and the re-parented grandchild");
    cr_assert_geq(smax, (32 + 48) * 1024);
    cr_assert_eq(miser_profile_warning_count(p), 0, "nothing was left running");
    miser_profile_free(p);

    cr_assert_eq(test_sh("%s profile -i 10 --format none --json %s/q.json -- %s orphan-exec", MISER, b.dir, b.bin), 0);
    p = load(&b, "q.json");
    smax = assert_peaks_cover_samples(p, "orphan-exec");
    e = stage(p, "exit");
    cr_assert_eq(e->peak_kind, MISER_PEAK_LOWER_BOUND, "kind %s", miser_peak_kind_name(e->peak_kind));
    cr_assert_geq(smax, (32 + 48 + 64) * 1024, "the three were sampled together");
    miser_profile_metrics m;
    miser_profile_metrics_compute(p, &m);
    cr_assert_eq(m.peak_kind, MISER_PEAK_LOWER_BOUND);
    cr_assert_not(m.peaks_exact);
    miser_profile_free(p);
    box_free(&b);
}

/* A [STAGE] line that reaches miser late: the child prints its own RSS with
 * 64 MB held, frees it, then flushes. The profile keeps the child's figure
 * (reported_rss_kb, equal to what it printed) beside miser's reading at
 * receipt, with how late miser's reading was; every report labels which is which. */
Test(profile_tree, late_stage_line_keeps_both_figures, .timeout = 60)
{
    box b;
    box_init(&b, 0);
    const char *script = "import sys, time\n"
                         "def rss():\n"
                         "  return [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:')][0]\n"
                         "b = bytearray(64 << 20)\n"
                         "# what a block-buffered stdout does: the line is written after the free\n"
                         "line = '[STAGE] 3_FIRST_INFERENCE: %.2f MB (swap: 0.00 MB) - held\\n' % (rss() / 1024)\n"
                         "time.sleep(0.2)\n"
                         "del b\n"
                         "time.sleep(0.1)\n"
                         "sys.stdout.write(line)\n"
                         "sys.stdout.flush()\n"
                         "time.sleep(0.05)\n";
    char path[128];
    snprintf(path, sizeof path, "%s/late.py", b.dir);
    FILE *f = fopen(path, "w");
    fputs(script, f);
    fclose(f);
    cr_assert_eq(test_sh("%s profile -i 10 --json %s/p.json --md %s/p.md --csv %s/p.csv -- " PY " %s > %s/out 2> %s/err",
                    MISER, b.dir, b.dir, b.dir, path, b.dir, b.dir),
                 0);
    char op[128];
    snprintf(op, sizeof op, "%s/out", b.dir);
    char *out = test_read_file(op, NULL);
    double printed = 0;
    cr_assert_eq(sscanf(out, "[STAGE] 3_FIRST_INFERENCE: %lf MB", &printed), 1, "passed through: %s", out);
    cr_assert_geq(printed, 64.0);
    miser_profile *p = load(&b, "p.json");
    const miser_stage_record *s = stage(p, "3_FIRST_INFERENCE");
    cr_assert_eq(s->source, MISER_MARK_STDOUT);
    cr_assert_leq(llabs((long long)(s->reported_rss_kb - llround(printed * 1024))), 1, "the child's own figure");
    cr_assert_lt(s->rss_kb, s->reported_rss_kb - 48 * 1024, "miser's reading at receipt is after the free");
    cr_assert(!isnan(s->report_delay_s), "the timeline saw the printed figure");
    cr_assert_geq(s->report_delay_s, 0.08, "at least the 0.1 s between the free and the write");
    cr_assert_leq(s->report_delay_s, 2.0);
    cr_assert_geq(s->peak_rss_kb, s->reported_rss_kb - 1024, "the interval's peak holds the 64 MB");
    miser_profile_free(p);
    /* The JSON keys, read with cJSON (not miser's loader). */
    snprintf(op, sizeof op, "%s/p.json", b.dir);
    char *js = test_read_file(op, NULL);
    cJSON *root = cJSON_Parse(js);
    cr_assert(root);
    const cJSON *st = NULL, *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(root, "stages"))
        if (!strcmp(cJSON_GetObjectItem(it, "name")->valuestring, "3_FIRST_INFERENCE")) st = it;
    cr_assert(st);
    cr_assert_str_eq(cJSON_GetObjectItem(st, "source")->valuestring, "stdout");
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(st, "reported_rss_kb")));
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(st, "report_delay_s")));
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(st, "peak_kind")));
    cJSON_Delete(root);
    free(js);
    /* The table on stderr: miser's [STAGE] lines are labelled, and the one
     * read late names the command's own figure. */
    snprintf(op, sizeof op, "%s/err", b.dir);
    char *err = test_read_file(op, NULL), want[96];
    cr_assert(strstr(err, "miser's readings at each mark"), "%s", err);
    snprintf(want, sizeof want, "the command printed %.2f MB", printed);
    cr_assert(strstr(err, want), "%s", err);
    snprintf(op, sizeof op, "%s/p.md", b.dir);
    char *md = test_read_file(op, NULL);
    cr_assert(strstr(md, "| printed MB |") && strstr(md, "| stdout |"), "%s", md);
    snprintf(want, sizeof want, "| %.2f |", printed);
    cr_assert(strstr(md, want));
    snprintf(op, sizeof op, "%s/p.csv", b.dir);
    char *csv = test_read_file(op, NULL);
    cr_assert(strstr(csv, ",source,reported_rss_kb,reported_swap_kb,report_delay_s\n"), "%s", csv);
    free(out);
    free(err);
    free(md);
    free(csv);
    box_free(&b);
}

/* ---------- miser check ---------- */

/* A profile in the documented schema; %s slots: label, exit object, the
 * 1_MODEL_LOADED stage (or nothing), the rss_kb of 0_INITIAL, and stage 3's
 * seconds. Figures are written here, not taken from miser. */
static void write_profile(const char *path, const char *label, const char *exitobj, int with_stage1,
                          const char *rss0, const char *seconds)
{
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f,
            "{\"schema\": \"miser-profile\", \"version\": 1, \"mode\": \"command\", \"label\": \"%s\", "
            "\"exit\": %s, \"stages\": ["
            "{\"name\": \"0_INITIAL\", \"t_s\": 1.0, \"rss_kb\": %s, \"anon_kb\": 81920, \"file_kb\": 20480, "
            "\"swap_kb\": 0, \"peak_rss_kb\": 102400, \"peak_exact\": true},"
            "%s"
            "{\"name\": \"2_BEFORE_INFERENCE\", \"t_s\": 3.5, \"rss_kb\": 1126400, \"peak_rss_kb\": 1126400, "
            "\"peak_exact\": true},"
            "{\"name\": \"3_FIRST_INFERENCE\", \"t_s\": 9.5, \"rss_kb\": 2150400, \"peak_rss_kb\": 3174400, "
            "\"peak_exact\": true, \"data\": {\"seconds\": \"%s\"}}]}",
            label, exitobj, rss0,
            with_stage1 ? "{\"name\": \"1_MODEL_LOADED\", \"t_s\": 3.0, \"rss_kb\": 1126400, \"anon_kb\": 184320, "
                          "\"file_kb\": 942080, \"swap_kb\": 0, \"peak_rss_kb\": 1146880, \"peak_exact\": true},"
                        : "",
            seconds);
    fclose(f);
}

#define OK_EXIT "{\"exited\": true, \"code\": 0, \"signaled\": false, \"signal\": 0}"

static int check(const box *b, const char *extra, const char *cur, char *err, size_t cap)
{
    int rc = test_sh("%s check --baseline %s/base.json %s %s/%s > %s/chk.out 2> %s/chk.err", MISER, b->dir, extra, b->dir,
                cur, b->dir, b->dir);
    char p[128];
    snprintf(p, sizeof p, "%s/chk.err", b->dir);
    char *t = test_read_file(p, NULL);
    snprintf(err, cap, "%s", t ? t : "");
    free(t);
    return rc;
}

static void put(const box *b, const char *name, const char *label, const char *exitobj, int s1, const char *rss0,
                const char *sec)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", b->dir, name);
    write_profile(p, label, exitobj, s1, rss0, sec);
}

Test(profile_check, refuses_what_it_cannot_compare, .timeout = 30)
{
    box b;
    box_init(&b, 0);
    char err[1024];
    put(&b, "base.json", "run", OK_EXIT, 1, "102400", "0.156");
    put(&b, "same.json", "run", OK_EXIT, 1, "102400", "0.156");
    cr_assert_eq(check(&b, "", "same.json", err, sizeof err), 0, "%s", err);

    /* A figure the baseline has and the current profile lacks. */
    put(&b, "nostage.json", "run", OK_EXIT, 0, "102400", "0.156");
    cr_assert_eq(check(&b, "", "nostage.json", err, sizeof err), 3, "%s", err);
    cr_assert(strstr(err, "model_loading_mb") && one_line(err), "one line naming it: %s", err);
    /* A figure of the wrong type, and a negative size. */
    put(&b, "type.json", "run", OK_EXIT, 1, "\"102400\"", "0.156");
    cr_assert_eq(check(&b, "", "type.json", err, sizeof err), 3, "%s", err);
    cr_assert(strstr(err, "rss_kb") && strstr(err, "0_INITIAL") && strstr(err, "string"), "%s", err);
    put(&b, "neg.json", "run", OK_EXIT, 1, "-5", "0.156");
    cr_assert_eq(check(&b, "", "neg.json", err, sizeof err), 3, "%s", err);
    cr_assert(strstr(err, "rss_kb") && strstr(err, "negative"), "%s", err);
    /* A crashed run: a signal, or a non-zero exit. */
    put(&b, "sig.json", "run", "{\"exited\": false, \"code\": 0, \"signaled\": true, \"signal\": 9}", 1, "102400",
        "0.156");
    cr_assert_eq(check(&b, "", "sig.json", err, sizeof err), 3, "%s", err);
    cr_assert(strstr(err, "signal 9"), "%s", err);
    put(&b, "fail.json", "run", "{\"exited\": true, \"code\": 1, \"signaled\": false, \"signal\": 0}", 1, "102400",
        "0.156");
    cr_assert_eq(check(&b, "", "fail.json", err, sizeof err), 3, "%s", err);
    cr_assert(strstr(err, "code 1"), "%s", err);
    /* A different command; --any-command compares anyway. */
    put(&b, "other.json", "another run", OK_EXIT, 1, "102400", "0.156");
    cr_assert_eq(check(&b, "", "other.json", err, sizeof err), 3, "%s", err);
    cr_assert(strstr(err, "different commands"), "%s", err);
    cr_assert_eq(check(&b, "--any-command", "other.json", err, sizeof err), 0, "%s", err);
    box_free(&b);
}

/* Seconds need an absolute slack beside the relative tolerance: 0.156 ->
 * 0.244 s is noise (the default slack 0.1 s), 0.156 -> 0.5 s is not. */
Test(profile_check, time_slack, .timeout = 30)
{
    box b;
    box_init(&b, 0);
    char err[1024];
    put(&b, "base.json", "run", OK_EXIT, 1, "102400", "0.156");
    put(&b, "noise.json", "run", OK_EXIT, 1, "102400", "0.244");
    put(&b, "slow.json", "run", OK_EXIT, 1, "102400", "0.5");
    cr_assert_eq(check(&b, "--time-tolerance 25%", "noise.json", err, sizeof err), 0, "%s", err);
    cr_assert_eq(check(&b, "--time-tolerance 25% --time-slack 0", "noise.json", err, sizeof err), 4, "%s", err);
    cr_assert_eq(check(&b, "--time-tolerance 25%", "slow.json", err, sizeof err), 4, "%s", err);
    cr_assert_eq(check(&b, "--time-tolerance 25% --time-slack 0.5", "slow.json", err, sizeof err), 0, "%s", err);
    cr_assert_eq(check(&b, "--time-slack -1", "slow.json", err, sizeof err), 2, "%s", err);
    cr_assert_eq(check(&b, "--time-slack abc", "slow.json", err, sizeof err), 2, "%s", err);
    /* The library: the same limit, baseline + |baseline| * tol + slack. */
    miser_profile *pb = NULL, *pc = NULL;
    char p1[128], p2[128];
    snprintf(p1, sizeof p1, "%s/base.json", b.dir);
    snprintf(p2, sizeof p2, "%s/noise.json", b.dir);
    cr_assert_eq(miser_profile_load_json(p1, &pb), MISER_OK);
    cr_assert_eq(miser_profile_load_json(p2, &pc), MISER_OK);
    miser_check_options o = {0.10, 8, 0.25, 0.1, 0};
    miser_check_result r;
    miser_profile_check(pb, pc, &o, &r);
    cr_assert_eq(r.problem[0], 0, "%s", r.problem);
    int seen = 0;
    for (size_t i = 0; i < r.n; i++)
        if (!strcmp(r.items[i].metric, "first_inference_s")) {
            seen = 1;
            cr_assert_float_eq(r.items[i].limit, 0.156 * 1.25 + 0.1, 1e-9);
            cr_assert_not(r.items[i].regressed);
        }
    cr_assert(seen);
    miser_profile_free(pb);
    miser_profile_free(pc);
    box_free(&b);
}

/* ---------- output paths, before the command runs ---------- */

Test(profile_cli, unwritable_output_refused_before_the_command, .timeout = 30)
{
    box b;
    box_init(&b, 0);
    static const char *const opts[] = {"json", "csv", "md", "svg"};
    char blocker[128], err[1024], p[160];
    snprintf(blocker, sizeof blocker, "%s/plainfile", b.dir);
    FILE *f = fopen(blocker, "w");
    fputs("x", f);
    fclose(f);
    for (int i = 0; i < 4; i++) {
        /* A missing folder, a path under a regular file, a folder. */
        const char *bad[3] = {"/nonexistent/x.out", NULL, b.dir};
        char under[200];
        snprintf(under, sizeof under, "%s/x.out", blocker);
        bad[1] = under;
        for (int k = 0; k < 3; k++) {
            int rc = test_sh("cd %s && %s profile --format none --%s %s -- sh -c 'touch ran' 2> %s/err", b.dir, MISER,
                        opts[i], bad[k], b.dir);
            snprintf(p, sizeof p, "%s/err", b.dir);
            char *t = test_read_file(p, NULL);
            snprintf(err, sizeof err, "%s", t);
            free(t);
            cr_assert_eq(rc, 2, "--%s %s: %s", opts[i], bad[k], err);
            char want[300];
            snprintf(want, sizeof want, "miser profile: cannot write --%s %s: ", opts[i], bad[k]);
            cr_assert(!strncmp(err, want, strlen(want)) && one_line(err), "%s", err);
            snprintf(p, sizeof p, "%s/ran", b.dir);
            cr_assert_neq(access(p, F_OK), 0, "the command must not run (--%s %s)", opts[i], bad[k]);
        }
    }
    /* Nothing was left in the folder but the blocker and the error file. */
    cr_assert_eq(test_sh("test $(ls -A %s | wc -l) -eq 2", b.dir), 0);
    box_free(&b);
}
