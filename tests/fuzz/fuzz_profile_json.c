/* libFuzzer target: a profile's JSON (schema "miser-profile") through
 * miser_profile_parse_json, which `miser check` and `miser compare` run on
 * files users hand them. Whatever the input, the parse returns a status
 * without crashing or leaking; a profile that parses holds no negative size
 * or time, and every writer, the metrics and a check against itself run on
 * it and return. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "miser/alloc.h"
#include "miser/profiler.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    miser_profile *p = NULL;
    if (miser_profile_parse_json((const char *)data, size, &p) == MISER_OK) {
        if (!p) abort();
        for (size_t i = 0; i < miser_profile_stage_count(p); i++) {
            const miser_stage_record *s = miser_profile_stage(p, i);
            if (s->t_s < 0 || s->cpu_s < 0 || s->rss_kb < -1 || s->peak_rss_kb < -1 || s->peak_sampled_kb < -1 ||
                s->reported_rss_kb < -1)
                abort();
            if (s->peak_exact && s->peak_kind != MISER_PEAK_EXACT) abort();
        }
        miser_profile_metrics m;
        miser_profile_metrics_compute(p, &m);
        static const miser_report_format fmts[] = {MISER_REPORT_TABLE, MISER_REPORT_JSON, MISER_REPORT_CSV,
                                                   MISER_REPORT_MARKDOWN, MISER_REPORT_SVG, MISER_REPORT_HTML};
        for (size_t k = 0; k < sizeof fmts / sizeof fmts[0]; k++) {
            FILE *f = fopen("/dev/null", "w");
            if (!f) abort();
            miser_profile_write(p, fmts[k], f);
            fclose(f);
        }
        miser_check_result r;
        miser_check_options o = {0.1, 8, 0.25, 0.1, 0};
        miser_profile_check(p, p, &o, &r);
        if (r.regressions) abort(); /* a profile never regresses against itself */
        miser_profile_free(p);
    } else if (p)
        abort();
    if (miser_mem_total().current != 0) abort(); /* nothing may outlive a parse */
    return 0;
}
