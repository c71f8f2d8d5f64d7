/* The study's metrics, computed exactly as the study defined them (so
 * numbers compare with its published tables), and the corrected figures
 * beside them: anonymous vs file-backed growth, exact peaks, tokens. */
#include "internal.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static double mb(int64_t kb) { return kb < 0 ? NAN : (double)kb / 1024.0; }
static double field_mb(const miser_stage_record *s, size_t off)
{
    return s ? mb(*(const int64_t *)((const char *)s + off)) : NAN;
}
#define F(s, f) field_mb(s, offsetof(miser_stage_record, f))

static double kv_num(const miser_stage_record *s, const char *key)
{
    const char *v = miser_stage_get(s, key);
    if (!v || !*v) return NAN;
    char *end;
    double d = strtod(v, &end);
    return *end ? NAN : d;
}

size_t miser_text_word_count(const char *t)
{
    size_t n = 0;
    int in = 0;
    for (; *t; t++) {
        int sp = isspace((unsigned char)*t);
        if (!sp && !in) n++;
        in = !sp;
    }
    return n;
}

static size_t index_of(const miser_profile *p, const miser_stage_record *s)
{
    return (size_t)(s - p->stages);
}

void miser_profile_metrics_compute(const miser_profile *p, miser_profile_metrics *m)
{
    double nan = NAN;
    *m = (miser_profile_metrics){nan, nan, nan, nan, nan, nan, nan, nan, nan, "marks",
                                 nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, 0, MISER_PEAK_UNKNOWN};
    if (!p) return;
    const miser_stage_record *s0 = miser_profile_find_stage(p, "0_INITIAL");
    const miser_stage_record *s1 = miser_profile_find_stage(p, "1_MODEL_LOADED");
    const miser_stage_record *s2 = miser_profile_find_stage(p, "2_BEFORE_INFERENCE");
    const miser_stage_record *s3 = miser_profile_find_stage(p, "3_FIRST_INFERENCE");
    const miser_stage_record *s4 = miser_profile_find_stage(p, "4_SECOND_INFERENCE");
    const miser_stage_record *s5 = miser_profile_find_stage(p, "5_FINAL");
    double r0 = F(s0, rss_kb);
    m->model_loading_mb = F(s1, rss_kb) - r0;
    m->compilation_mb = F(s3, rss_kb) - F(s2, rss_kb);
    m->total_growth_mb = F(s5, rss_kb) - r0;

    /* Study peak: the maximum a poller saw (samples and the stage snapshots). */
    int64_t polled = -1, swap = -1, sampled = -1;
    for (size_t i = 0; i < p->nsamples; i++) {
        if (p->samples[i].rss_kb > sampled) sampled = p->samples[i].rss_kb;
        if (p->samples[i].swap_kb > swap) swap = p->samples[i].swap_kb;
    }
    polled = sampled;
    int64_t exact = -1;
    int all_exact = p->nstages > 0, has_upper = 0, has_lower = 0;
    for (size_t i = 0; i < p->nstages; i++) {
        const miser_stage_record *s = &p->stages[i];
        if (s->rss_kb > polled) polled = s->rss_kb;
        if (s->swap_kb > swap) swap = s->swap_kb;
        if (s->peak_swap_kb > swap) swap = s->peak_swap_kb;
        if (s->peak_rss_kb > exact) exact = s->peak_rss_kb;
        if (s->peak_rss_kb < 0) continue;
        if (s->peak_kind != MISER_PEAK_EXACT) all_exact = 0;
        if (s->peak_kind == MISER_PEAK_UPPER_BOUND) has_upper = 1;
        else if (s->peak_kind != MISER_PEAK_EXACT) has_lower = 1;
    }
    if (p->nsamples) m->peak_ram_source = "sampled"; /* at sample_interval_ms */
    m->peak_ram_mb = mb(polled) - r0;
    m->peak_swap_mb = mb(swap);
    m->peak_rss_mb = mb(exact);
    m->peak_growth_mb = mb(exact) - r0;
    m->peak_sampled_mb = mb(sampled);
    m->peaks_exact = all_exact && exact >= 0;
    m->peak_kind = exact < 0 ? MISER_PEAK_UNKNOWN
                   : has_upper && has_lower ? MISER_PEAK_UNKNOWN
                   : has_upper ? MISER_PEAK_UPPER_BOUND
                   : has_lower ? MISER_PEAK_LOWER_BOUND
                               : MISER_PEAK_EXACT;

    double f = kv_num(s3, "seconds");
    if (isnan(f) && s3 && s2) f = s3->t_s - s2->t_s;
    double g = kv_num(s4, "seconds");
    if (isnan(g) && s4 && s3) g = s4->t_s - s3->t_s;
    m->first_inference_s = f;
    m->second_inference_s = g;
    m->speedup = f / g;
    const char *text = miser_stage_get(s3, "text");
    if (text) m->throughput_tok_s = (double)miser_text_word_count(text) / f;

    m->model_loading_anon_mb = F(s1, anon_kb) - F(s0, anon_kb);
    m->model_loading_file_mb = F(s1, file_kb) - F(s0, file_kb);
    m->compilation_anon_mb = F(s3, anon_kb) - F(s2, anon_kb);
    m->compilation_file_mb = F(s3, file_kb) - F(s2, file_kb);
    m->total_growth_anon_mb = F(s5, anon_kb) - F(s0, anon_kb);
    if (s2 && s3 && index_of(p, s3) > index_of(p, s2)) {
        int64_t pk = -1;
        for (size_t i = index_of(p, s2) + 1; i <= index_of(p, s3); i++)
            if (p->stages[i].peak_rss_kb > pk) pk = p->stages[i].peak_rss_kb;
        m->compile_peak_mb = mb(pk) - F(s2, rss_kb);
    }
    m->tokens = kv_num(s3, "tokens");
    m->ttft_s = kv_num(s3, "ttft_s");
    if (m->tokens > 1 && m->ttft_s >= 0 && f > m->ttft_s) m->decode_tok_s = (m->tokens - 1) / (f - m->ttft_s);
    m->throughput_tokens_s = m->tokens / f;
    m->second_decode_tok_s = kv_num(s4, "tokens") / g;
}
