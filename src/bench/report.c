/* Reports of `miser bench` and `miser compare`: the terminal summary, JSON,
 * Markdown and HTML (with inline SVG charts). Everything shown is derived
 * from the rows; the only outside data is the study's published file, shown
 * apart and marked as figures from another machine. */
#include "miser/alloc.h"
#include "miser/bench.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---- */

static miser_bench_stat row_stat(const miser_bench_row *w, const char *metric)
{
    double v[MISER_BENCH_MAX_RUNS];
    for (size_t i = 0; i < w->nruns; i++) v[i] = miser_bench_run_value(&w->runs[i], metric);
    return miser_bench_stat_of(v, w->nruns);
}

static double row_median(const miser_bench_row *w, const char *metric)
{
    return row_stat(w, metric).median;
}

static int row_measured(const miser_bench_row *w)
{
    return !w->skipped && w->nruns > 0;
}

static void fmt_num(char *b, size_t cap, double v, const char *unit)
{
    if (!isfinite(v)) snprintf(b, cap, "n/a");
    else if (!strcmp(unit, "s")) snprintf(b, cap, "%.3f", v);
    else if (fabs(v) >= 100) snprintf(b, cap, "%.0f", v);
    else snprintf(b, cap, "%.2f", v);
}

static void fmt_stat(char *b, size_t cap, miser_bench_stat s, const char *unit)
{
    char m[32], lo[32], hi[32];
    fmt_num(m, sizeof m, s.median, unit);
    if (s.n > 1) {
        fmt_num(lo, sizeof lo, s.min, unit);
        fmt_num(hi, sizeof hi, s.max, unit);
        snprintf(b, cap, "%s (%s-%s)", m, lo, hi);
    } else
        snprintf(b, cap, "%s", m);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (isfinite(v)) fprintf(f, "%.6g", v);
    else fputs("null", f);
}

/* HTML/XML escape (also used for SVG text). */
static void xml_str(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static const char *palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

static miser_status io_check(FILE *f)
{
    if (ferror(f)) return miser_error_set(MISER_ERR_IO, "report: write failed: %s", strerror(errno));
    return MISER_OK;
}

/* ---- terminal ---- */

miser_status miser_bench_write_table(const miser_bench_report *r, FILE *f)
{
    size_t nm;
    const miser_bench_metric *ms = miser_bench_metrics(&nm);
    fprintf(f, "\n%s%s\n", r->title, r->synthetic ? "  [SYNTHETIC WEIGHTS: timings and memory are real, text is not]" : "");
    fprintf(f, "model: %s\n%s\nmachine: %s\n", r->model, r->scenario, r->machine);
    for (int study = 1; study >= 0; study--) {
        fprintf(f, "\n%s (median, min-max over runs)\n", study ? "the study's metrics" : "corrected metrics");
        fprintf(f, "  %-36s", "metric");
        for (size_t i = 0; i < r->nrows; i++)
            if (row_measured(&r->rows[i])) fprintf(f, " %22s", r->rows[i].name);
        fputc('\n', f);
        for (size_t k = 0; k < nm; k++) {
            if (ms[k].study != study) continue;
            char lab[64];
            snprintf(lab, sizeof lab, "%s (%s)", ms[k].label, ms[k].unit);
            fprintf(f, "  %-36.36s", lab);
            for (size_t i = 0; i < r->nrows; i++) {
                if (!row_measured(&r->rows[i])) continue;
                char b[128];
                fmt_stat(b, sizeof b, row_stat(&r->rows[i], ms[k].name), ms[k].unit);
                fprintf(f, " %22s", b);
            }
            fputc('\n', f);
        }
    }
    for (size_t i = 0; i < r->nrows; i++) {
        const miser_bench_row *w = &r->rows[i];
        if (w->skipped) fprintf(f, "skipped %s: %s\n", w->name, w->note);
        else if (w->failed) fprintf(f, "FAILED %s: %s\n", w->name, w->note);
        if (!w->skipped && w->agree == 0) fprintf(f, "TOKENS %s: %s\n", w->name, w->agree_note);
    }
    return io_check(f);
}

/* ---- JSON ---- */

miser_status miser_bench_write_json(const miser_bench_report *r, FILE *f)
{
    size_t nm;
    const miser_bench_metric *ms = miser_bench_metrics(&nm);
    fputs("{\n \"schema\": \"miser-bench\",\n \"version\": 1,\n \"title\": ", f);
    json_str(f, r->title);
    fputs(",\n \"model\": ", f);
    json_str(f, r->model);
    fprintf(f, ",\n \"synthetic\": %s,\n \"scenario\": ", r->synthetic ? "true" : "false");
    json_str(f, r->scenario);
    fputs(",\n \"machine\": ", f);
    json_str(f, r->machine);
    fputs(",\n \"runtimes\": [", f);
    for (size_t i = 0; i < r->nrows; i++) {
        const miser_bench_row *w = &r->rows[i];
        fprintf(f, "%s\n  {\"name\": ", i ? "," : "");
        json_str(f, w->name);
        fputs(", \"version\": ", f);
        json_str(f, w->version);
        fprintf(f, ", \"skipped\": %s, \"failed\": %s, \"note\": ", w->skipped ? "true" : "false",
                w->failed ? "true" : "false");
        json_str(f, w->note);
        fprintf(f, ",\n   \"tokens_agree\": %s, \"tokens_note\": ",
                w->agree < 0 ? "null" : w->agree ? "true" : "false");
        json_str(f, w->agree_note);
        fputs(",\n   \"generated_ids\": [", f);
        for (int k = 0; k < 2 && w->has_ids; k++) {
            fprintf(f, "%s[", k ? "," : "");
            for (size_t j = 0; j < w->nids[k]; j++) fprintf(f, "%s%d", j ? "," : "", w->ids[k][j]);
            fputc(']', f);
        }
        fputs("],\n   \"median\": {", f);
        for (size_t k = 0; k < nm; k++) {
            fprintf(f, "%s\"%s\": ", k ? ", " : "", ms[k].name);
            json_num(f, row_median(w, ms[k].name));
        }
        fputs("},\n   \"spread\": {", f);
        for (size_t k = 0; k < nm; k++) {
            miser_bench_stat s = row_stat(w, ms[k].name);
            fprintf(f, "%s\"%s\": {\"min\": ", k ? ", " : "", ms[k].name);
            json_num(f, s.min);
            fputs(", \"max\": ", f);
            json_num(f, s.max);
            fputs(", \"cv\": ", f);
            json_num(f, s.cv);
            fprintf(f, ", \"n\": %zu}", s.n);
        }
        fputs("},\n   \"runs\": [", f);
        for (size_t j = 0; j < w->nruns; j++) {
            fprintf(f, "%s\n    {", j ? "," : "");
            for (size_t k = 0; k < nm; k++) {
                fprintf(f, "%s\"%s\": ", k ? ", " : "", ms[k].name);
                json_num(f, miser_bench_run_value(&w->runs[j], ms[k].name));
            }
            fputc('}', f);
        }
        fputs("]}", f);
    }
    fputs("\n ]\n}\n", f);
    return io_check(f);
}

/* ---- published figures ---- */

typedef struct published {
    cJSON *root;
    cJSON *columns; /* array of names */
    cJSON *cpu;     /* object: runtime -> array */
    const char *source, *machine;
} published;

static int published_load(const char *path, published *p)
{
    memset(p, 0, sizeof *p);
    if (!path) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (!k) break;
    }
    fclose(f);
    if (!buf) return 0;
    p->root = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!p->root) return 0;
    p->columns = cJSON_GetObjectItemCaseSensitive(p->root, "columns");
    p->cpu = cJSON_GetObjectItemCaseSensitive(p->root, "cpu");
    cJSON *s = cJSON_GetObjectItemCaseSensitive(p->root, "source");
    cJSON *m = cJSON_GetObjectItemCaseSensitive(p->root, "machine");
    p->source = cJSON_IsString(s) ? s->valuestring : "";
    p->machine = cJSON_IsString(m) ? m->valuestring : "";
    if (!cJSON_IsArray(p->columns) || !cJSON_IsObject(p->cpu)) {
        cJSON_Delete(p->root);
        memset(p, 0, sizeof *p);
        return 0;
    }
    return 1;
}

/* Published value of a study column for a runtime, or NAN. */
static double published_value(const published *p, const cJSON *row, const char *col)
{
    int i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, p->columns)
    {
        if (cJSON_IsString(c) && !strcmp(c->valuestring, col)) {
            const cJSON *v = cJSON_GetArrayItem(row, i);
            return cJSON_IsNumber(v) ? v->valuedouble : NAN;
        }
        i++;
    }
    return NAN;
}

/* ---- rankings and tiers (derived from the rows) ---- */

static size_t measured_order(const miser_bench_report *r, const char *metric, int higher_better, size_t *idx)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nrows; i++)
        if (row_measured(&r->rows[i]) && isfinite(row_median(&r->rows[i], metric))) idx[n++] = i;
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0; b--) {
            double x = row_median(&r->rows[idx[b - 1]], metric), y = row_median(&r->rows[idx[b]], metric);
            if (higher_better ? x < y : x > y) {
                size_t t = idx[b];
                idx[b] = idx[b - 1];
                idx[b - 1] = t;
            } else
                break;
        }
    return n;
}

static void write_rankings_md(const miser_bench_report *r, FILE *f)
{
    static const struct { const char *metric, *label; int hb; } ranks[] = {
        {"peak_rss_mb", "lowest peak RSS (MB)", 0},
        {"total_growth_anon_mb", "lowest anonymous memory growth (MB)", 0},
        {"ttft_s", "shortest time to first token (s)", 0},
        {"decode_tok_s", "fastest decode (tokens/s, excluding the prompt)", 1},
        {"first_inference_s", "shortest first inference (s)", 0},
        {"mem_per_tok_s", "least peak memory per decode token/s", 0},
    };
    size_t *idx = malloc((r->nrows + 1) * sizeof *idx);
    if (!idx) return;
    fputs("\n## Rankings\n\n", f);
    for (size_t k = 0; k < sizeof ranks / sizeof ranks[0]; k++) {
        size_t n = measured_order(r, ranks[k].metric, ranks[k].hb, idx);
        fprintf(f, "- %s: ", ranks[k].label);
        if (!n) fputs("no data", f);
        for (size_t i = 0; i < n; i++) {
            char b[32];
            fmt_num(b, sizeof b, row_median(&r->rows[idx[i]], ranks[k].metric), "");
            fprintf(f, "%s%zu. %s (%s)", i ? ", " : "", i + 1, r->rows[idx[i]].name, b);
        }
        fputc('\n', f);
    }
    /* Tiers: each measured peak is a memory budget; within it, which runtime
     * decodes fastest and which needs least. */
    size_t n = measured_order(r, "peak_rss_mb", 0, idx);
    fputs("\n## Recommendations by memory tier\n\n"
          "Each tier is a memory budget equal to a measured peak RSS (rounded up to 64 MB); the recommendation is "
          "the runtime with the fastest median decode among those whose median peak fits (derived from the "
          "rows above, nothing hard-coded).\n\n| budget | runtimes that fit | fastest decode | lowest memory |\n"
          "|---|---|---|---|\n",
          f);
    double last_budget = -1;
    for (size_t t = 0; t < n; t++) {
        double budget = ceil(row_median(&r->rows[idx[t]], "peak_rss_mb") / 64.0) * 64.0;
        if (budget == last_budget) continue;
        last_budget = budget;
        fprintf(f, "| %.0f MB | ", budget);
        int best = -1;
        double best_v = -1;
        for (size_t i = 0; i < n; i++) {
            const miser_bench_row *w = &r->rows[idx[i]];
            if (row_median(w, "peak_rss_mb") > budget) continue;
            fprintf(f, "%s%s", i ? ", " : "", w->name);
            double d = row_median(w, "decode_tok_s");
            if (isfinite(d) && d > best_v) {
                best_v = d;
                best = (int)idx[i];
            }
        }
        fprintf(f, " | %s", best >= 0 ? r->rows[best].name : "n/a");
        if (best >= 0) fprintf(f, " (%.1f tok/s)", best_v);
        fprintf(f, " | %s |\n", r->rows[idx[0]].name);
    }
    if (!n) fputs("| n/a | no measured runtime | | |\n", f);
    free(idx);
}

/* ---- Markdown ---- */

static void md_metric_table(const miser_bench_report *r, FILE *f, int study)
{
    size_t nm;
    const miser_bench_metric *ms = miser_bench_metrics(&nm);
    fputs("| runtime |", f);
    for (size_t k = 0; k < nm; k++)
        if (ms[k].study == study) fprintf(f, " %s (%s) |", ms[k].label, ms[k].unit);
    fputs("\n|---|", f);
    for (size_t k = 0; k < nm; k++)
        if (ms[k].study == study) fputs("---:|", f);
    fputc('\n', f);
    for (size_t i = 0; i < r->nrows; i++) {
        const miser_bench_row *w = &r->rows[i];
        if (!row_measured(w)) continue;
        fprintf(f, "| %s%s |", w->name, r->synthetic ? " (synthetic weights)" : "");
        for (size_t k = 0; k < nm; k++) {
            if (ms[k].study != study) continue;
            char b[128];
            fmt_stat(b, sizeof b, row_stat(w, ms[k].name), ms[k].unit);
            fprintf(f, " %s |", b);
        }
        fputc('\n', f);
    }
}

static void md_published(const miser_bench_report *r, FILE *f)
{
    published p;
    if (!published_load(r->published_path, &p)) return;
    fputs("\n## Published figures (another machine)\n\n**Published figures from another machine**, not measured "
          "here: compare shapes and ratios, not absolute values. Source: ",
          f);
    fputs(p.source, f);
    fprintf(f, ". Machine: %s Data file: `%s`.\n\n| runtime (published) |", p.machine, r->published_path);
    const cJSON *c;
    cJSON_ArrayForEach(c, p.columns) fprintf(f, " %s |", cJSON_IsString(c) ? c->valuestring : "?");
    fputs("\n|---|", f);
    cJSON_ArrayForEach(c, p.columns) fputs("---:|", f);
    fputc('\n', f);
    const cJSON *row;
    cJSON_ArrayForEach(row, p.cpu)
    {
        fprintf(f, "| %s (published, other machine) |", row->string);
        cJSON_ArrayForEach(c, p.columns)
        {
            double v = published_value(&p, row, cJSON_IsString(c) ? c->valuestring : "");
            char b[32];
            fmt_num(b, sizeof b, v, "");
            fprintf(f, " %s |", b);
        }
        fputc('\n', f);
    }
    cJSON_Delete(p.root);
}

miser_status miser_bench_write_markdown(const miser_bench_report *r, FILE *f)
{
    fprintf(f, "# %s\n\n", r->title);
    if (r->synthetic)
        fputs("> **Synthetic weights.** The checkpoint holds deterministic synthetic weights of GPT-2's shape "
              "(a real safetensors file, so loading is real file I/O): memory and timings are real, generated "
              "text is meaningless.\n\n",
              f);
    fprintf(f, "- model: `%s`\n- scenario: %s\n- machine: %s\n", r->model, r->scenario, r->machine);
    fputs("\n## The study's CPU table (measured here)\n\nMedian over runs, (min-max) when there are several. "
          "Definitions as in the study: loading = rss(1)-rss(0), compilation = rss(3)-rss(2), peak = max sampled "
          "RSS - rss(0), growth = rss(5)-rss(0), throughput = words of the output text / first-inference seconds.\n\n",
          f);
    md_metric_table(r, f, 1);
    fputs("\n## Corrected and derived figures\n\nTime to first token and decode tokens/s (tokens, excluding the "
          "prompt) from the runtime's own timings; peak RSS from the kernel's high-water mark per stage; anon "
          "(private allocations) and file-backed (mmapped weights, shared) memory separately; memory per token/s "
          "= peak RSS / decode tok/s; compilation MB/s = compilation MB / first-inference s.\n\n",
          f);
    md_metric_table(r, f, 0);
    fputs("\n## Run-to-run variance\n\nCoefficient of variation (sample stddev / mean) over runs.\n\n"
          "| runtime | runs | first inference | second inference | decode tok/s | peak RSS |\n|---|---:|---:|---:|---:|---:|\n",
          f);
    for (size_t i = 0; i < r->nrows; i++) {
        const miser_bench_row *w = &r->rows[i];
        if (!row_measured(w)) continue;
        fprintf(f, "| %s | %zu |", w->name, w->nruns);
        const char *cols[] = {"first_inference_s", "second_inference_s", "decode_tok_s", "peak_rss_mb"};
        for (int k = 0; k < 4; k++) {
            double cv = row_stat(w, cols[k]).cv;
            if (isfinite(cv)) fprintf(f, " %.1f %% |", cv * 100);
            else fputs(" n/a |", f);
        }
        fputc('\n', f);
    }
    fputs("\n## Greedy tokens\n\n| runtime | version | tokens (first prompt) | check |\n|---|---|---|---|\n", f);
    for (size_t i = 0; i < r->nrows; i++) {
        const miser_bench_row *w = &r->rows[i];
        fprintf(f, "| %s | %s | ", w->name, w->version[0] ? w->version : "");
        for (size_t j = 0; w->has_ids && j < w->nids[0]; j++) fprintf(f, "%s%d", j ? " " : "", w->ids[0][j]);
        fprintf(f, " | %s%s |\n", w->agree == 0 ? "**FLAGGED** " : "", w->skipped ? "skipped" : w->agree_note);
    }
    int any = 0;
    for (size_t i = 0; i < r->nrows; i++)
        if (r->rows[i].skipped || r->rows[i].failed) {
            if (!any) fputs("\n## Skipped or failed\n\n", f);
            any = 1;
            fprintf(f, "- %s %s: %s\n", r->rows[i].skipped ? "skipped" : "FAILED", r->rows[i].name, r->rows[i].note);
        }
    write_rankings_md(r, f);
    md_published(r, f);
    return io_check(f);
}

/* ---- SVG ---- */

static void svg_bars(const miser_bench_report *r, FILE *f, const char *metric, const char *title, int y0)
{
    double maxv = 0;
    for (size_t i = 0; i < r->nrows; i++)
        if (row_measured(&r->rows[i])) {
            double v = row_median(&r->rows[i], metric);
            if (isfinite(v) && v > maxv) maxv = v;
        }
    fprintf(f, "<text x=\"10\" y=\"%d\" font-weight=\"bold\">", y0 + 14);
    xml_str(f, title);
    fputs("</text>\n", f);
    int y = y0 + 24;
    for (size_t i = 0; i < r->nrows; i++) {
        const miser_bench_row *w = &r->rows[i];
        if (!row_measured(w)) continue;
        double v = row_median(w, metric);
        double len = isfinite(v) && maxv > 0 ? 480.0 * v / maxv : 0;
        fprintf(f, "<text x=\"10\" y=\"%d\">", y + 12);
        xml_str(f, w->name);
        fprintf(f, "</text><rect x=\"150\" y=\"%d\" width=\"%.1f\" height=\"14\" fill=\"%s\"/>", y, len,
                palette[i % 8]);
        char b[32];
        fmt_num(b, sizeof b, v, "");
        fprintf(f, "<text x=\"%.1f\" y=\"%d\">%s</text>\n", 155 + len, y + 12, b);
        y += 18;
    }
}

static int svg_height_bars(const miser_bench_report *r)
{
    int n = 0;
    for (size_t i = 0; i < r->nrows; i++) n += row_measured(&r->rows[i]);
    return 30 + 18 * n;
}

static void svg_timeline(const miser_bench_report *r, FILE *f, int y0)
{
    const int H = 220, X0 = 60, W = 640;
    double tmax = 0, mmax = 0;
    for (size_t i = 0; i < r->nrows; i++) {
        const miser_profile *p = r->rows[i].timeline;
        if (!row_measured(&r->rows[i]) || !p) continue;
        for (size_t k = 0; k < miser_profile_stage_count(p); k++) {
            const miser_stage_record *s = miser_profile_stage(p, k);
            if (s->t_s > tmax) tmax = s->t_s;
            double m = (double)(s->peak_rss_kb > s->rss_kb ? s->peak_rss_kb : s->rss_kb) / 1024.0;
            if (m > mmax) mmax = m;
        }
    }
    fprintf(f, "<text x=\"10\" y=\"%d\" font-weight=\"bold\">Stage timelines overlaid (RSS at each stage mark, "
               "first run; x: seconds, y: MB, max %.0f MB over %.1f s)</text>\n",
            y0 + 14, mmax, tmax);
    int top = y0 + 24;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", X0, top, W, H);
    if (tmax <= 0 || mmax <= 0) return;
    int ly = top + H + 16;
    for (size_t i = 0; i < r->nrows; i++) {
        const miser_profile *p = r->rows[i].timeline;
        if (!row_measured(&r->rows[i]) || !p) continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", palette[i % 8]);
        for (size_t k = 0; k < miser_profile_stage_count(p); k++) {
            const miser_stage_record *s = miser_profile_stage(p, k);
            if (s->rss_kb < 0) continue;
            fprintf(f, "%.1f,%.1f ", X0 + W * s->t_s / tmax, top + H - H * ((double)s->rss_kb / 1024.0) / mmax);
        }
        fputs("\"/>\n", f);
        for (size_t k = 0; k < miser_profile_stage_count(p); k++) {
            const miser_stage_record *s = miser_profile_stage(p, k);
            if (s->rss_kb < 0 || s->implicit) continue;
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>", X0 + W * s->t_s / tmax,
                    top + H - H * ((double)s->rss_kb / 1024.0) / mmax, palette[i % 8]);
            xml_str(f, r->rows[i].name);
            fprintf(f, " %s: %.1f MB at %.2f s</title></circle>\n", s->name, (double)s->rss_kb / 1024.0, s->t_s);
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"%s\">", X0, ly, palette[i % 8]);
        xml_str(f, r->rows[i].name);
        fputs("</text>\n", f);
        ly += 16;
    }
}

miser_status miser_bench_write_svg(const miser_bench_report *r, FILE *f)
{
    int hb = svg_height_bars(r);
    int nt = 0;
    for (size_t i = 0; i < r->nrows; i++) nt += row_measured(&r->rows[i]) && r->rows[i].timeline;
    int height = 3 * hb + 260 + 16 * nt + 20;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n",
            height);
    svg_bars(r, f, "peak_rss_mb", r->synthetic ? "Peak RSS, MB (median; synthetic weights)" : "Peak RSS, MB (median)", 0);
    svg_bars(r, f, "first_inference_s", "First inference, s (median)", hb);
    svg_bars(r, f, "second_inference_s", "Second inference, s (median)", 2 * hb);
    svg_timeline(r, f, 3 * hb);
    fputs("</svg>\n", f);
    return io_check(f);
}

/* ---- HTML: the Markdown report's content as a page, with the charts ---- */

miser_status miser_bench_write_html(const miser_bench_report *r, FILE *f)
{
    /* Render the Markdown into memory, then convert its few constructs
     * (headings, tables, list items, quotes, paragraphs) line by line. */
    char *md = NULL;
    size_t mdlen = 0;
    FILE *m = open_memstream(&md, &mdlen);
    if (!m) return miser_error_set(MISER_ERR_NOMEM, "report: cannot buffer the Markdown report");
    miser_status st = miser_bench_write_markdown(r, m);
    fclose(m);
    if (st) {
        free(md);
        return st;
    }
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>", f);
    xml_str(f, r->title);
    fputs("</title><style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child{text-align:left}"
          "blockquote{background:#fff3cd;padding:6px}</style></head><body>\n",
          f);
    int in_table = 0, in_list = 0;
    char *save = NULL;
    for (char *line = strtok_r(md, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int is_row = line[0] == '|';
        if (in_table && !is_row) {
            fputs("</table>\n", f);
            in_table = 0;
        }
        if (in_list && strncmp(line, "- ", 2)) {
            fputs("</ul>\n", f);
            in_list = 0;
        }
        if (is_row) {
            if (!strncmp(line, "|---", 4)) continue;
            if (!in_table) fputs("<table>\n", f);
            fputs("<tr>", f);
            const char *tag = in_table ? "td" : "th";
            in_table = 1;
            char *cs = NULL;
            for (char *cell = strtok_r(line + 1, "|", &cs); cell; cell = strtok_r(NULL, "|", &cs)) {
                while (*cell == ' ') cell++;
                fprintf(f, "<%s>", tag);
                xml_str(f, cell);
                fprintf(f, "</%s>", tag);
            }
            fputs("</tr>\n", f);
        } else if (line[0] == '#') {
            int lvl = 0;
            while (line[lvl] == '#') lvl++;
            fprintf(f, "<h%d>", lvl);
            xml_str(f, line + lvl + 1);
            fprintf(f, "</h%d>\n", lvl);
            if (lvl == 1) {
                fputs("<h2>Charts</h2>\n", f);
                miser_bench_write_svg(r, f);
            }
        } else if (!strncmp(line, "- ", 2)) {
            if (!in_list) fputs("<ul>\n", f);
            in_list = 1;
            fputs("<li>", f);
            xml_str(f, line + 2);
            fputs("</li>\n", f);
        } else if (line[0] == '>') {
            fputs("<blockquote>", f);
            xml_str(f, line + 1);
            fputs("</blockquote>\n", f);
        } else {
            fputs("<p>", f);
            xml_str(f, line);
            fputs("</p>\n", f);
        }
    }
    if (in_table) fputs("</table>\n", f);
    if (in_list) fputs("</ul>\n", f);
    fputs("</body></html>\n", f);
    free(md);
    return io_check(f);
}

/* ---- atomic file ---- */

typedef struct {
    const miser_bench_report *r;
    miser_bench_writer w;
} bench_write_ctx;

static miser_status bench_write_cb(void *f, void *ctx)
{
    const bench_write_ctx *c = ctx;
    return c->w(c->r, f);
}

miser_status miser_bench_write_file(const miser_bench_report *r, miser_bench_writer w, const char *path)
{
    bench_write_ctx c = {r, w};
    return miser_file_write_atomic(path, bench_write_cb, &c);
}
