/* Regression check between two profiles (baseline and current): lower is
 * better for every figure compared; a figure regresses when it exceeds
 * baseline + |baseline| * tolerance + slack. Two profiles that cannot be
 * compared (a crashed run, different commands, a figure the baseline has
 * and the current profile lacks) give a problem line instead of a verdict:
 * a check never says "no regression" about what it could not compare. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void item(miser_check_result *r, const char *name, double base, double cur, double tol, double slack)
{
    if (r->n >= MISER_CHECK_MAX_ITEMS) return;
    miser_check_item *it = &r->items[r->n++];
    it->metric = name;
    it->baseline = base;
    it->current = cur;
    it->limit = NAN;
    it->regressed = 0;
    it->skipped = isnan(base);
    it->missing = !isnan(base) && isnan(cur);
    if (it->skipped || it->missing) return;
    it->limit = base + fabs(base) * tol + slack;
    if (cur > it->limit) {
        it->regressed = 1;
        r->regressions++;
    }
}

/* "" when the run is usable, else why not. */
static void run_problem(const miser_profile *p, const char *which, char *b, size_t n)
{
    b[0] = 0;
    if (p->exit.signaled)
        snprintf(b, n, "the %s profile is from a run killed by signal %d (%s)", which, p->exit.signal,
                 strsignal(p->exit.signal));
    else if (p->exit.exited && p->exit.code != 0)
        snprintf(b, n, "the %s profile is from a run that exited with code %d", which, p->exit.code);
}

void miser_profile_check(const miser_profile *baseline, const miser_profile *current, const miser_check_options *opts,
                         miser_check_result *out)
{
    memset(out, 0, sizeof *out);
    miser_check_options o = {0.10, 8.0, 0.0, 0.0, 0};
    if (opts) o = *opts;
    if (!baseline || !current) {
        snprintf(out->problem, sizeof out->problem, "no %s profile", !baseline ? "baseline" : "current");
        return;
    }
    miser_profile_metrics b, c;
    miser_profile_metrics_compute(baseline, &b);
    miser_profile_metrics_compute(current, &c);
    item(out, "peak_rss_mb", b.peak_rss_mb, c.peak_rss_mb, o.mem_tolerance, o.mem_slack_mb);
    item(out, "peak_growth_mb", b.peak_growth_mb, c.peak_growth_mb, o.mem_tolerance, o.mem_slack_mb);
    item(out, "model_loading_mb", b.model_loading_mb, c.model_loading_mb, o.mem_tolerance, o.mem_slack_mb);
    item(out, "model_loading_anon_mb", b.model_loading_anon_mb, c.model_loading_anon_mb, o.mem_tolerance,
         o.mem_slack_mb);
    item(out, "compilation_mb", b.compilation_mb, c.compilation_mb, o.mem_tolerance, o.mem_slack_mb);
    item(out, "compile_peak_mb", b.compile_peak_mb, c.compile_peak_mb, o.mem_tolerance, o.mem_slack_mb);
    item(out, "peak_ram_mb", b.peak_ram_mb, c.peak_ram_mb, o.mem_tolerance, o.mem_slack_mb);
    item(out, "total_growth_mb", b.total_growth_mb, c.total_growth_mb, o.mem_tolerance, o.mem_slack_mb);
    item(out, "peak_swap_mb", b.peak_swap_mb, c.peak_swap_mb, o.mem_tolerance, o.mem_slack_mb);
    if (o.time_tolerance > 0) {
        item(out, "first_inference_s", b.first_inference_s, c.first_inference_s, o.time_tolerance, o.time_slack_s);
        item(out, "second_inference_s", b.second_inference_s, c.second_inference_s, o.time_tolerance,
             o.time_slack_s);
    }
    /* The first reason found is the one reported. */
    char *pr = out->problem;
    size_t pn = sizeof out->problem;
    run_problem(current, "current", pr, pn);
    if (!pr[0]) run_problem(baseline, "baseline", pr, pn);
    if (!pr[0] && strcmp(baseline->mode, current->mode))
        snprintf(pr, pn, "the profiles come from different modes (baseline %s, current %s)", baseline->mode,
                 current->mode);
    if (!pr[0] && !o.any_command && strcmp(miser_profile_label(baseline), miser_profile_label(current)))
        snprintf(pr, pn, "the profiles come from different commands (baseline '%.90s', current '%.90s')",
                 miser_profile_label(baseline), miser_profile_label(current));
    for (size_t i = 0; !pr[0] && i < out->n; i++)
        if (out->items[i].missing)
            snprintf(pr, pn, "the current profile has no %s (the baseline's is %.3f): a stage it needs is missing",
                     out->items[i].metric, out->items[i].baseline);
}
