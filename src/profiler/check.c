/* Regression check between two profiles (baseline and current): lower is
 * better for every figure compared; a figure regresses when it exceeds
 * baseline + |baseline| * tolerance + slack. */
#include "internal.h"

#include <math.h>
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
    it->skipped = isnan(base) || isnan(cur);
    if (it->skipped) return;
    it->limit = base + fabs(base) * tol + slack;
    if (cur > it->limit) {
        it->regressed = 1;
        r->regressions++;
    }
}

void miser_profile_check(const miser_profile *baseline, const miser_profile *current, const miser_check_options *opts,
                         miser_check_result *out)
{
    memset(out, 0, sizeof *out);
    miser_check_options o = {0.10, 8.0, 0.0};
    if (opts) o = *opts;
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
        item(out, "first_inference_s", b.first_inference_s, c.first_inference_s, o.time_tolerance, 0);
        item(out, "second_inference_s", b.second_inference_s, c.second_inference_s, o.time_tolerance, 0);
    }
}
