/* Suite `reports`: the reports people look at. The SVG timeline of `miser
 * profile` and the HTML of `miser compare` / `miser bench` are checked in C
 * on profiles built here (tick values and axis units, step lines that end at
 * the last sample with the final drop, stage labels that do not collide, the
 * command's own [STAGE] figure beside miser's reading, HTML without Markdown
 * syntax and with enough digits), and then rendered by a real browser
 * (Debian's chromium, headless, through tests/browser/report_check.js) with
 * `miser bench --html` and the C API's profile page (Python's
 * Profiler.save("x.html")), which
 * checks what was drawn: no literal Markdown, nothing wider than the page,
 * tick values present, labels' rendered boxes apart. The browser's
 * screenshots stay in $(BUILD)/report-check/ as the test's artefacts. */
#include <criterion/criterion.h>

#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "miser/alloc.h"
#include "miser/bench.h"
#include "miser/capi.h"
#include "miser/profiler.h"
#include "profiler/chart.h"
#include "profiler/internal.h"

/* The attribution interposer is not preloaded into sanitized binaries (as
 * tests/test_attrib.c): the browser check's attribution page is skipped there. */
#if defined(__SANITIZE_ADDRESS__)
#define REPORTS_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REPORTS_UNDER_ASAN 1
#endif
#endif
#ifndef REPORTS_UNDER_ASAN
#define REPORTS_UNDER_ASAN 0
#endif

#define MISER_BIN MISER_BUILD_DIR "/miser"
#define TINY MISER_SOURCE_DIR "/tests/data/hf-tiny-a"
#define MB 1024

/* ---- a profile with stages close together at the right edge ---- */

typedef struct {
    const char *name;
    double t;
    int64_t rss_mb;
} stage_def;

/* Stages 2..5 and the exit within 40 ms at the end of a 1 s run; RSS grows
 * 8 -> 40 MB at 0.20 s and 40 -> 60 MB at 0.50 s, and drops to 8 MB at the
 * last sample (0.99 s, after the last mark): the final drop. */
static const stage_def stages[] = {
    {"0_INITIAL", 0.05, 8},           {"1_MODEL_LOADED", 0.40, 40},    {"2_BEFORE_INFERENCE", 0.95, 60},
    {"3_FIRST_INFERENCE", 0.96, 60}, {"4_SECOND_INFERENCE", 0.97, 60}, {"5_FINAL", 0.975, 60},
};
#define NSTAGES (sizeof stages / sizeof stages[0])
#define LAST_T 0.99

static int64_t rss_at(double t)
{
    return t >= LAST_T - 1e-9 ? 8 : t >= 0.5 - 1e-9 ? 60 : t >= 0.2 - 1e-9 ? 40 : 8;
}

static miser_profile *make_profile(void)
{
    miser_profile *p = prof_new("command", "python3 child.py <\"quoted\" & \xff>");
    cr_assert(p);
    p->sample_interval_ms = 50;
    for (int i = 0; i * 0.05 < LAST_T - 1e-9; i++) {
        miser_sample s = {.t_s = i * 0.05, .rss_kb = rss_at(i * 0.05) * MB, .anon_kb = (rss_at(i * 0.05) - 5) * MB,
                          .file_kb = 5 * MB, .swap_kb = 0, .gpu_kb = -1};
        cr_assert_eq(prof_add_sample(p, &s), MISER_OK);
    }
    miser_sample last = {.t_s = LAST_T, .rss_kb = 8 * MB, .anon_kb = 3 * MB, .file_kb = 5 * MB, .swap_kb = 0, .gpu_kb = -1};
    cr_assert_eq(prof_add_sample(p, &last), MISER_OK);
    for (size_t i = 0; i < NSTAGES; i++) {
        miser_stage_record *s = prof_add_stage(p, stages[i].name, "a stage");
        cr_assert(s);
        s->t_s = stages[i].t;
        s->rss_kb = stages[i].rss_mb * MB;
        s->anon_kb = (stages[i].rss_mb - 5) * MB;
        s->file_kb = 5 * MB;
        s->swap_kb = 0;
        s->peak_rss_kb = s->rss_kb + MB;
        s->peak_exact = 1;
        s->peak_kind = MISER_PEAK_EXACT;
    }
    miser_stage_record *e = prof_add_stage(p, "exit", "");
    cr_assert(e);
    e->implicit = 1;
    e->t_s = 1.0;
    e->peak_rss_kb = 61 * MB;
    e->peak_exact = 1;
    e->peak_kind = MISER_PEAK_EXACT;
    return p;
}

static char *svg_of(const miser_profile *p)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert(f);
    cr_assert_eq(miser_profile_write(p, MISER_REPORT_SVG, f), MISER_OK, "%s", miser_error_message());
    fclose(f);
    return buf;
}

/* ---- reading the SVG back ---- */

typedef struct {
    double x, y;
    char text[160];
} svg_text;

static double attr(const char *tag, const char *tag_end, const char *name)
{
    char key[32];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *a = strstr(tag, key);
    cr_assert(a && a < tag_end, "attribute %s missing in %.*s", name, (int)(tag_end - tag), tag);
    return atof(a + strlen(key));
}

/* Every <text> whose class attribute is cls: position and visible text (a
 * <title> child, the tooltip, is skipped). */
static size_t texts_of(const char *svg, const char *cls, svg_text *out, size_t max)
{
    char key[64];
    snprintf(key, sizeof key, "<text class=\"%s\"", cls);
    size_t n = 0;
    for (const char *p = strstr(svg, key); p && n < max; p = strstr(p + 1, key)) {
        const char *end = strchr(p, '>');
        cr_assert(end);
        out[n].x = attr(p, end, "x");
        out[n].y = attr(p, end, "y");
        const char *c = end + 1;
        if (!strncmp(c, "<title>", 7)) {
            c = strstr(c, "</title>");
            cr_assert(c);
            c += 8;
        }
        const char *ce = strchr(c, '<');
        cr_assert(ce);
        snprintf(out[n].text, sizeof out[n].text, "%.*s", (int)(ce - c), c);
        n++;
    }
    return n;
}

/* A path's d attribute as points: M x y, then H x / V y, one point each. */
typedef struct {
    char cmd;
    double x, y;
} path_pt;

static size_t path_points(const char *svg, const char *cls, path_pt *pt, size_t max)
{
    char key[80];
    snprintf(key, sizeof key, "<path class=\"series %s\"", cls);
    const char *p = strstr(svg, key);
    cr_assert(p, "no %s path", cls);
    const char *d = strstr(p, " d=\"");
    cr_assert(d);
    d += 4;
    size_t n = 0;
    double x = 0, y = 0;
    while (*d && *d != '"' && n < max) {
        while (*d == ' ') d++;
        char c = *d++;
        char *e;
        if (c == 'M') {
            x = strtod(d, &e);
            y = strtod(e, &e);
        } else if (c == 'H') x = strtod(d, &e);
        else if (c == 'V') y = strtod(d, &e);
        else cr_assert_fail("path command %c: a step line has only M, H and V", c);
        pt[n++] = (path_pt){c, x, y};
        d = e;
    }
    return n;
}

/* Linear map from tick value to position, fitted on the first and last tick. */
typedef struct {
    double a, b;
} lin;

static lin fit_ticks(const svg_text *t, size_t n, int use_y)
{
    cr_assert_geq(n, 3);
    double v0 = atof(t[0].text), v1 = atof(t[n - 1].text);
    double p0 = use_y ? t[0].y : t[0].x, p1 = use_y ? t[n - 1].y : t[n - 1].x;
    lin l = {0, (p1 - p0) / (v1 - v0)};
    l.a = p0 - l.b * v0;
    /* Every tick lies on the same line (an axis, not labels placed anyhow). */
    for (size_t i = 0; i < n; i++)
        cr_assert_float_eq(use_y ? t[i].y : t[i].x, l.a + l.b * atof(t[i].text), 0.02, "tick %s off the axis", t[i].text);
    return l;
}

/* ---- the profile's SVG timeline ---- */

Test(reports, profile_svg_has_tick_values_and_units)
{
    miser_profile *p = make_profile();
    char *svg = svg_of(p);
    svg_text t[64];
    size_t nx = texts_of(svg, "tick tick-x", t, 64);
    cr_assert_geq(nx, 4, "x tick values: %zu\n%s", nx, svg);
    /* A 1 s run is shown in ms: ticks 0, 200, ... up to at least the end (1000 ms). */
    cr_assert_str_eq(t[0].text, "0");
    cr_assert_geq(atof(t[nx - 1].text), 1000.0);
    fit_ticks(t, nx, 0);
    size_t ny = texts_of(svg, "tick tick-y", t, 64);
    cr_assert_geq(ny, 3);
    cr_assert_str_eq(t[0].text, "0");
    cr_assert_geq(atof(t[ny - 1].text), 61.0, "the y axis reaches the largest peak (61 MB)");
    fit_ticks(t, ny, 1);
    cr_assert(strstr(svg, "time since start (ms)</text>"), "x axis title with its unit");
    cr_assert(strstr(svg, "memory (MB = MiB)</text>"), "y axis title with its unit");
    /* The label is escaped and the byte that is not UTF-8 replaced: well-formed XML. */
    cr_assert(strstr(svg, "python3 child.py &lt;&quot;quoted&quot; &amp; \xef\xbf\xbd&gt;"));
    free(svg);
    miser_profile_free(p);
}

Test(reports, profile_svg_steps_end_at_last_sample_with_the_final_drop)
{
    miser_profile *p = make_profile();
    char *svg = svg_of(p);
    svg_text t[64];
    size_t nx = texts_of(svg, "tick tick-x", t, 64);
    lin X = fit_ticks(t, nx, 0); /* ms -> px */
    size_t ny = texts_of(svg, "tick tick-y", t, 64);
    lin Y = fit_ticks(t, ny, 1); /* MB -> px (plus the text's baseline offset, which cancels in differences) */
    path_pt pt[512];
    size_t n = path_points(svg, "series-rss", pt, 512);
    cr_assert_geq(n, 4);
    cr_assert_eq(pt[0].cmd, 'M');
    /* Ends at the last sample's time, and the last move is the drop 60 -> 8 MB. */
    cr_assert_float_eq(pt[n - 1].x, X.a + X.b * LAST_T * 1000, 0.6, "path ends at x %.2f", pt[n - 1].x);
    cr_assert_eq(pt[n - 1].cmd, 'V', "the final drop is a vertical step");
    cr_assert_float_eq(pt[n - 1].y - pt[n - 2].y, Y.b * (8 - 60), 0.6, "drop of %.2f px", pt[n - 1].y - pt[n - 2].y);
    cr_assert_eq(pt[n - 2].cmd, 'H');
    cr_assert_float_eq(pt[n - 2].x, pt[n - 1].x, 1e-9);
    /* The allocation at 0.20 s is a step: the level holds until 0.20 s, then rises there. */
    int found = 0;
    for (size_t i = 1; i + 1 < n; i++)
        if (pt[i].cmd == 'H' && fabs(pt[i].x - (X.a + X.b * 200)) < 0.6 && pt[i + 1].cmd == 'V' &&
            fabs((pt[i + 1].y - pt[i].y) - Y.b * (40 - 8)) < 0.6)
            found = 1;
    cr_assert(found, "no vertical step 8 -> 40 MB at 200 ms");
    /* Nothing drawn past the last reading. */
    for (size_t i = 0; i < n; i++) cr_assert_leq(pt[i].x, pt[n - 1].x + 1e-9);
    free(svg);
    miser_profile_free(p);
}

Test(reports, profile_svg_stage_labels_do_not_collide)
{
    miser_profile *p = make_profile();
    char *svg = svg_of(p);
    svg_text l[32];
    size_t n = texts_of(svg, "stage-label", l, 32);
    cr_assert_geq(n, 4, "%s", svg);
    for (size_t i = 0; i < n; i++) {
        double wi = miser_chart_text_width(l[i].text, 11);
        cr_assert_geq(l[i].x, 0);
        cr_assert_leq(l[i].x + wi, 960, "%s runs off the right edge", l[i].text);
        for (size_t j = i + 1; j < n; j++) {
            if (fabs(l[i].y - l[j].y) >= 11) continue; /* different rows */
            double wj = miser_chart_text_width(l[j].text, 11);
            cr_assert(l[i].x + wi <= l[j].x || l[j].x + wj <= l[i].x, "labels %s and %s overlap", l[i].text, l[j].text);
        }
    }
    /* Every stage is named: by its label, or by a number listed under the axis. */
    svg_text k[32];
    size_t nk = texts_of(svg, "stage-key", k, 32);
    for (size_t s = 0; s <= NSTAGES; s++) {
        const char *name = s < NSTAGES ? stages[s].name : "exit";
        int named = 0;
        for (size_t i = 0; i < n; i++) named |= !strcmp(l[i].text, name);
        char num[16];
        snprintf(num, sizeof num, "%zu", s + 1);
        for (size_t i = 0; i < n && !named; i++)
            if (!strcmp(l[i].text, num))
                for (size_t j = 0; j < nk; j++) {
                    char want[96];
                    snprintf(want, sizeof want, "%zu = %s (", s + 1, name);
                    named |= !strncmp(k[j].text, want, strlen(want));
                }
        cr_assert(named, "stage %s is not named", name);
    }
    free(svg);
    miser_profile_free(p);
}

Test(reports, label_layout_crowded_right_edge)
{
    static const char *names[] = {"2_BEFORE_INFERENCE", "3_FIRST_INFERENCE", "4_SECOND_INFERENCE", "5_FINAL",
                                  "6_SOMETHING_ELSE", "7_AND_ANOTHER_ONE", "8_LAST", "exit"};
    miser_chart_label l[8];
    char nums[8][12];
    const double lo = 0, hi = 960;
    for (int i = 0; i < 8; i++) {
        snprintf(nums[i], sizeof nums[i], "%d", i + 1);
        l[i] = (miser_chart_label){.text = names[i], .short_text = nums[i], .x = hi - 12 + i};
    }
    int rows = miser_chart_layout_labels(l, 8, lo, hi, 11, 3);
    cr_assert_leq(rows, 3);
    int placed = 0;
    for (int i = 0; i < 8; i++) {
        if (l[i].row < 0) continue;
        placed++;
        cr_assert_geq(l[i].left, lo);
        cr_assert_leq(l[i].left + l[i].width, hi + 1e-9, "%s off the edge", names[i]);
        cr_assert_geq(l[i].width, miser_chart_text_width(l[i].shortened ? nums[i] : names[i], 11));
        for (int j = 0; j < i; j++)
            if (l[j].row == l[i].row)
                cr_assert(l[i].left >= l[j].left + l[j].width || l[j].left >= l[i].left + l[i].width, "%s / %s", names[i],
                          names[j]);
    }
    /* Full names in the three rows, then numbers beside them while they stay near their point; the rest
     * are left for the caller's list (row -1), never drawn over another. */
    cr_assert_geq(placed, 3);
    /* With room, every label keeps its full text centred on its point. */
    for (int i = 0; i < 4; i++) l[i] = (miser_chart_label){.text = names[i], .x = 100 + 200.0 * i};
    miser_chart_layout_labels(l, 4, lo, hi, 11, 3);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(l[i].row, 0);
        cr_assert_float_eq(l[i].left + l[i].width / 2, l[i].x, 1e-9);
    }
}

Test(reports, profile_svg_with_too_many_marks_lists_them)
{
    miser_profile *p = prof_new("command", "many marks");
    cr_assert(p);
    for (int i = 0; i < 500; i++) {
        char name[32];
        snprintf(name, sizeof name, "M%d", i);
        miser_stage_record *s = prof_add_stage(p, name, "");
        cr_assert(s);
        s->t_s = 0.01 * (i + 1);
        s->rss_kb = (i + 1) * MB;
    }
    char *svg = svg_of(p);
    svg_text k[80];
    cr_assert_eq(texts_of(svg, "stage-label", k, 80), 0, "500 marks cannot be labelled in rows");
    cr_assert_eq(texts_of(svg, "stage-key", k, 80), 61);
    cr_assert_str_eq(k[0].text, "1 = M0 (10.0 ms)");
    cr_assert_str_eq(k[60].text, "and 440 more marks (each band's tooltip names its stage)");
    free(svg);
    miser_profile_free(p);
}

Test(reports, profile_svg_shows_the_commands_figure_and_miser_reading)
{
    miser_profile *p = make_profile();
    miser_stage_record *s = &p->stages[3]; /* 3_FIRST_INFERENCE */
    s->source = MISER_MARK_STDOUT;
    s->reported_rss_kb = 70 * MB; /* what the command printed */
    s->report_delay_s = 0.0264;    /* before miser's reading (60 MB) */
    char *svg = svg_of(p);
    cr_assert(strstr(svg, "3_FIRST_INFERENCE: the command's own [STAGE] figure 70.0 MB; miser read 60.0 MB at receipt, "
                          "26.4 ms later"),
              "%s", svg);
    cr_assert(strstr(svg, ">the command's own [STAGE] figure (earlier: the delay)</text>"), "key entry");
    cr_assert(strstr(svg, ">miser's reading at the mark</text>"), "key entry");
    free(svg);
    miser_profile_free(p);
}

Test(reports, number_formats_keep_significant_digits)
{
    char b[64];
    miser_chart_fmt_seconds(b, sizeof b, 0.0042);
    cr_assert_str_eq(b, "4.20 ms");
    miser_chart_fmt_seconds(b, sizeof b, 0.000085);
    cr_assert_str_eq(b, "85.0 \xc2\xb5s");
    miser_chart_fmt_seconds(b, sizeof b, 1.4712);
    cr_assert_str_eq(b, "1.47 s");
    miser_chart_fmt_seconds(b, sizeof b, 0.9999);
    cr_assert_str_eq(b, "1.00 s");
    miser_chart_fmt_sig(b, sizeof b, 0.00612, 3);
    cr_assert_str_eq(b, "0.00612");
    miser_chart_fmt_sig(b, sizeof b, 9.996, 3);
    cr_assert_str_eq(b, "10.0");
    miser_chart_fmt_sig(b, sizeof b, 1566.4, 3);
    cr_assert_str_eq(b, "1566");
    miser_chart_fmt_sig(b, sizeof b, 0, 3);
    cr_assert_str_eq(b, "0");
}

/* ---- the bench / compare HTML ---- */

static void fill_run(miser_bench_run *r, double second_s)
{
    memset(r, 0, sizeof *r);
    r->m = (miser_profile_metrics){
        .model_loading_mb = 20.17, .compilation_mb = 0.19, .peak_ram_mb = 20.46, .peak_swap_mb = 0,
        .total_growth_mb = 20.46, .first_inference_s = 0.0061, .second_inference_s = second_s, .speedup = 1.45,
        .throughput_tok_s = 325, .peak_rss_mb = 22.55, .peak_growth_mb = 20.4, .peak_sampled_mb = 22.4,
        .model_loading_anon_mb = 5.89, .model_loading_file_mb = 14.27, .compilation_anon_mb = 0,
        .compilation_file_mb = 0, .compile_peak_mb = 0.1, .total_growth_anon_mb = 5.91, .tokens = 9,
        .ttft_s = 0.0011, .decode_tok_s = 1566, .second_decode_tok_s = 1489, .throughput_tokens_s = 1475};
    r->compile_s = 0.0009;
    r->setup_mb = 0.11;
}

__attribute__((noinline)) static char *html_of(miser_bench_report *rep)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert(f);
    cr_assert_eq(miser_bench_write_html(rep, f), MISER_OK, "%s", miser_error_message());
    fclose(f);
    return buf;
}

Test(reports, bench_html_is_html_with_enough_digits)
{
    static miser_bench_row rows[2];
    memset(rows, 0, sizeof rows);
    snprintf(rows[0].name, sizeof rows[0].name, "miser");
    rows[0].nruns = 2;
    fill_run(&rows[0].runs[0], 0.0042);
    fill_run(&rows[0].runs[1], 0.0044);
    rows[0].timeline = make_profile();
    rows[0].agree = -1;
    snprintf(rows[1].name, sizeof rows[1].name, "peer<x>&");
    rows[1].skipped = 1;
    snprintf(rows[1].note, sizeof rows[1].note, "not installed: install the peers with `make peers`");
    miser_bench_report rep = {.nrows = 2, .rows = rows, .reference = 0,
                              .published_path = MISER_SOURCE_DIR "/data/published-keras-gpt2-medium.json"};
    snprintf(rep.title, sizeof rep.title, "a report");
    snprintf(rep.model, sizeof rep.model, "tests/data/hf-tiny-a");
    snprintf(rep.scenario, sizeof rep.scenario, "a scenario");
    snprintf(rep.machine, sizeof rep.machine, "a machine");
    char *html = html_of(&rep);
    /* No Markdown syntax anywhere in the page. */
    cr_assert_null(strstr(html, "**"), "%s", html);
    cr_assert_null(strstr(html, "`"), "%s", html);
    cr_assert_null(strstr(html, "|---"), "%s", html);
    cr_assert_null(strstr(html, "\n#"), "%s", html);
    cr_assert(strstr(html, "<strong>Published figures from another machine</strong>"));
    cr_assert(strstr(html, "<code>tests/data/hf-tiny-a</code>"));
    cr_assert(strstr(html, "install the peers with <code>make peers</code>"), "inline code in notes becomes <code>");
    cr_assert(strstr(html, "peer&lt;x&gt;&amp;"), "names are escaped");
    /* Every table sits in a container that scrolls sideways. */
    size_t ntab = 0;
    const char *t = strstr(html, "<table>");
    while (t) {
        cr_assert(t - html >= 20 && !strncmp(t - 20, "<div class=\"scroll\">", 20), "a table outside a scroll container");
        ntab++;
        t = strstr(t + 1, "<table>");
    }
    cr_assert_geq(ntab, 5);
    /* Small times keep their digits: the median second inference is 4.30 ms. */
    cr_assert(strstr(html, "4.30 ms"), "%s", html);
    cr_assert_null(strstr(html, ">0.00<"));
    cr_assert_null(strstr(html, "(0.00)"));
    /* The chart: one timeline panel, with tick values. */
    cr_assert(strstr(html, "<g class=\"timeline\">"));
    cr_assert(strstr(html, "class=\"tick tick-x\""));
    free(html);
    miser_profile_free(rows[0].timeline);
}

/* ---- in a real browser ---- */

static int run_status(const char *cmd)
{
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The child for `miser profile`: allocates in steps, announces its stages
 * with the study's [STAGE] lines (its own RSS reading) and on the marker
 * pipe, the last four within a few ms of each other, then frees most of its
 * memory and exits after one more sample (the final drop). */
static const char child_py[] =
    "import os, sys, time\n"
    "fd = int(os.environ.get('MISER_MARKER_FD', '-1'))\n"
    "ack = int(os.environ.get('MISER_MARKER_ACK_FD', '-1'))\n"
    "def rss():\n"
    "    for l in open('/proc/self/status'):\n"
    "        if l.startswith('VmRSS:'): return int(l.split()[1]) / 1024\n"
    "def stage(n, sync):\n"
    "    if sync and fd >= 0:\n"
    "        os.write(fd, ('stage %s ack=1\\n' % n).encode())\n"
    "        if ack >= 0: os.read(ack, 1)\n"
    "    else:\n"
    "        print('[STAGE] %s: %.2f MB (swap: 0.00 MB) - step' % (n, rss()), flush=True)\n"
    "stage('0_INITIAL', True)\n"
    "a = bytearray(40 << 20)\n"
    "for i in range(0, len(a), 4096): a[i] = 1\n"
    "time.sleep(0.15)\n"
    "stage('1_MODEL_LOADED', True)\n"
    "b = bytearray(20 << 20)\n"
    "for i in range(0, len(b), 4096): b[i] = 1\n"
    "time.sleep(0.15)\n"
    "stage('2_BEFORE_INFERENCE', False)\n"
    "stage('3_FIRST_INFERENCE', False)\n"
    "time.sleep(0.004)\n"
    "stage('4_SECOND_INFERENCE', False)\n"
    "stage('5_FINAL', True)\n"
    "del a, b\n"
    "time.sleep(0.06)\n";

/* ---- the profile's HTML page (report.c; Python's Profiler.save("x.html"), miser profile --html) ---- */

Test(reports, profile_html_page_names_peak_kinds_sources_and_printed_figures)
{
    miser_profile *p = make_profile();
    p->stages[1].peak_kind = MISER_PEAK_UPPER_BOUND, p->stages[1].peak_exact = 0;
    p->stages[2].peak_kind = MISER_PEAK_LOWER_BOUND, p->stages[2].peak_exact = 0;
    p->stages[3].peak_kind = MISER_PEAK_SAMPLED, p->stages[3].peak_exact = 0;
    p->stages[4].source = MISER_MARK_STDOUT;
    p->stages[4].reported_rss_kb = 59 * MB;
    p->stages[4].report_delay_s = 0.125;
    p->stages[5].source = MISER_MARK_PIPE_ACK;
    p->stages[0].source = MISER_MARK_API;
    miser_report_format fmt;
    cr_assert_eq(miser_report_format_parse("html", &fmt), 0);
    cr_assert_eq(fmt, MISER_REPORT_HTML);
    char *page = NULL, *direct = NULL;
    size_t plen = 0, dlen = 0;
    cr_assert_eq(miser_capi_profile_render(p, "html", &page, &plen), MISER_OK, "%s", miser_error_message());
    FILE *f = open_memstream(&direct, &dlen);
    cr_assert(f);
    cr_assert_eq(miser_profile_write(p, MISER_REPORT_HTML, f), MISER_OK, "%s", miser_error_message());
    fclose(f);
    /* The C API's page is the profiler's writer, byte for byte. */
    cr_expect(plen == dlen && !memcmp(page, direct, plen), "capi's HTML differs from MISER_REPORT_HTML");
    cr_expect(strstr(page, "<!DOCTYPE html>") && strstr(page, "</html>"));
    cr_expect(strstr(page, ">exact<") && strstr(page, ">upper-bound<") && strstr(page, ">lower-bound<") &&
                  strstr(page, ">sampled<"),
              "each stage's peak kind by name");
    cr_expect(!strstr(page, "<th>exact</th>") && !strstr(page, ">yes<"), "no exact yes/no column");
    cr_expect(strstr(page, ">stdout<") && strstr(page, ">pipe-ack<") && strstr(page, ">api<"), "mark sources");
    /* The command's own figure (59 MB) beside miser's reading (60 MB) and the delay. */
    const char *row = strstr(page, ">4_SECOND_INFERENCE<");
    cr_assert(row);
    const char *end = strstr(row, "</tr>");
    cr_assert(end);
    char r[2048];
    snprintf(r, sizeof r, "%.*s", (int)(end - row), row);
    cr_expect(strstr(r, "<td>59.0</td>") && strstr(r, "<td>60.0</td>") && strstr(r, "<td>125 ms</td>"), "row: %s", r);
    cr_expect(strstr(page, "class=\"miser-timeline\""), "the SVG timeline");
    /* Text is escaped (the label has < " & and a non-UTF-8 byte). */
    cr_expect(strstr(page, "&lt;&quot;quoted&quot; &amp;") || strstr(page, "&lt;\"quoted\" &amp;"));
    cr_expect(!strstr(page, "<\"quoted\""));
    miser_free(page);
    free(direct);
    miser_profile_free(p);
}

Test(reports, profile_cli_html_refuses_an_unwritable_file_before_the_command_runs)
{
    char dir[64] = "/tmp/miser-test-html-XXXXXX", cmd[1024], marker[128];
    cr_assert(mkdtemp(dir));
    snprintf(marker, sizeof marker, "%s/ran", dir);
    snprintf(cmd, sizeof cmd, "%s profile --html %s/no/such/dir/p.html -- /bin/sh -c 'touch %s' 2>/dev/null", MISER_BIN,
             dir, marker);
    cr_expect_eq(run_status(cmd), 2);
    cr_expect_neq(access(marker, F_OK), 0, "the command ran");
    snprintf(cmd, sizeof cmd, "%s profile --html %s/p.html --format none -- /bin/sh -c 'touch %s' 2>/dev/null", MISER_BIN,
             dir, marker);
    cr_expect_eq(run_status(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/p.html", dir);
    char *page = test_read_file(cmd, NULL);
    cr_assert(page, "no %s", cmd);
    cr_expect(strstr(page, "<!DOCTYPE html>") && strstr(page, ">exit<") && strstr(page, "</html>"));
    free(page);
    snprintf(cmd, sizeof cmd, "%s profile --format html -- /bin/true 2>&1 >/dev/null | grep -q '</html>'", MISER_BIN);
    cr_expect_eq(run_status(cmd), 0, "--format html prints the page on stderr");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(run_status(cmd), 0);
}

Test(reports, browser_renders_reports_legibly, .timeout = 120)
{
    if (access("/usr/bin/chromium", X_OK)) cr_skip_test("/usr/bin/chromium is not installed (tools/deps.sh test)");
    if (run_status("command -v node >/dev/null 2>&1")) cr_skip_test("node is not installed (tools/deps.sh test)");
    char dir[64] = "/tmp/miser-test-reports-XXXXXX", cmd[4096];
    cr_assert(mkdtemp(dir));
    /* A compare report (two miser rows and a peer whose adapter is missing), a bench SVG, a profile SVG. */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/peers && echo 'import sys; sys.exit(3)' >%s/peers/torch_gpt2.py && %s compare --model %s --runtimes miser,miser-naive,pytorch --runs 1 "
                              "--peers-dir %s/peers --out %s/rep >%s/compare.log 2>&1",
             dir, dir, MISER_BIN, TINY, dir, dir, dir);
    int rc = run_status(cmd);
    snprintf(cmd, sizeof cmd, "%s/compare.log", dir);
    char *log = test_read_file(cmd, NULL);
    cr_assert_eq(rc, 0, "miser compare failed:\n%s", log ? log : "");
    free(log);
    snprintf(cmd, sizeof cmd, "%s bench --model %s --runs 1 --svg %s/bench.svg --html %s/bench.html >/dev/null 2>&1",
             MISER_BIN, TINY, dir, dir);
    cr_assert_eq(run_status(cmd), 0, "miser bench --svg --html failed");
    snprintf(cmd, sizeof cmd, "%s/child.py", dir);
    FILE *f = fopen(cmd, "w");
    cr_assert(f);
    fputs(child_py, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s profile --svg %s/profile.svg --html %s/profile-cli.html --format none -- /usr/bin/python3 %s/child.py >/dev/null",
             MISER_BIN, dir, dir, dir);
    cr_assert_eq(run_status(cmd), 0, "miser profile failed");
    /* `miser profile --attribute --html` of the known-truth C program: the
     * page's icicle per stage peak is checked as rendered (--icicle). */
    char icicle[512] = "";
    if (!REPORTS_UNDER_ASAN) {
        snprintf(cmd, sizeof cmd, "%s profile --attribute --html %s/profile-attrib.html --format none -- %s/attrib-truth >/dev/null 2>&1",
                 MISER_BIN, dir, MISER_BUILD_DIR);
        cr_assert_eq(run_status(cmd), 0, "miser profile --attribute --html failed");
        snprintf(cmd, sizeof cmd, "%s/profile-attrib.html", dir);
        char *ap = test_read_file(cmd, NULL);
        cr_assert(ap, "no %s", cmd);
        cr_expect(strstr(ap, "<section id=\"attribution\">") && strstr(ap, "<section id=\"top-consumers\">") &&
                      strstr(ap, "site_b"),
                  "the attribution page has the icicle and the top consumers (site_b)");
        free(ap);
        snprintf(icicle, sizeof icicle, "--icicle %s/profile-attrib.html", dir);
    }
    /* The profile page of the C API (Python's Profiler.save("x.html")), on the crowded profile built here. */
    miser_profile *p = make_profile();
    char *page = NULL;
    size_t plen = 0;
    cr_assert_eq(miser_capi_profile_render(p, "html", &page, &plen), MISER_OK, "%s", miser_error_message());
    snprintf(cmd, sizeof cmd, "%s/profile-page.html", dir);
    f = fopen(cmd, "w");
    cr_assert(f);
    fwrite(page, 1, plen, f);
    fclose(f);
    miser_free(page);
    miser_profile_free(p);
    snprintf(cmd, sizeof cmd, "cp %s/rep/report.html %s/report.html && node %s/tests/browser/report_check.js --out "
                              "%s/report-check %s/report.html %s/bench.html %s/bench.svg %s/profile.svg %s/profile-page.html "
                              "%s/profile-cli.html %s >%s/check.log 2>&1",
             dir, dir, MISER_SOURCE_DIR, MISER_BUILD_DIR, dir, dir, dir, dir, dir, dir, icicle, dir);
    rc = run_status(cmd);
    snprintf(cmd, sizeof cmd, "%s/check.log", dir);
    log = test_read_file(cmd, NULL);
    cr_assert_neq(rc, 3, "the browser did not start:\n%s", log ? log : "");
    cr_assert_eq(rc, 0, "the rendered reports fail their checks:\n%s", log ? log : "");
    free(log);
    snprintf(cmd, sizeof cmd, "%s/report-check/report.png", MISER_BUILD_DIR);
    cr_assert_eq(access(cmd, R_OK), 0, "no screenshot at %s", cmd);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(run_status(cmd), 0);
}
