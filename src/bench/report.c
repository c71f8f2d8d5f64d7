/* Reports of `miser bench` and `miser compare`: the terminal summary, JSON,
 * Markdown and HTML (with inline SVG charts). Everything shown is derived
 * from the rows; the only outside data is the study's published file, shown
 * apart and marked as figures from another machine. Markdown and HTML are
 * two renderings of one content (the doc_* functions), so the page says what
 * the Markdown says, escaped, with no Markdown syntax in it; the charts are
 * drawn with the profiler's chart helpers (src/profiler/chart.h). */
#include "miser/alloc.h"
#include "miser/bench.h"
#include "profiler/chart.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
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

/* Terminal figures: fixed decimals where they hold 3 significant digits,
 * significant digits below that (0.00612, never "0.00" for a small value). */
static void fmt_num(char *b, size_t cap, double v, const char *unit)
{
    if (!isfinite(v)) snprintf(b, cap, "n/a");
    else if (!strcmp(unit, "s") && (fabs(v) >= 0.1 || v == 0)) snprintf(b, cap, "%.3f", v);
    else if (fabs(v) >= 100) snprintf(b, cap, "%.0f", v);
    else if (fabs(v) >= 1 || v == 0) snprintf(b, cap, "%.2f", v);
    else miser_chart_fmt_sig(b, cap, v, 3);
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
            char *nb = miser_realloc(MISER_MEM_SCRATCH, buf, cap);
            if (!nb) {
                miser_free(buf);
                fclose(f);
                return 0; /* no memory: the section is left out, as for a missing file */
            }
            buf = nb;
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (!k) break;
    }
    fclose(f);
    if (!buf) return 0;
    p->root = cJSON_ParseWithLength(buf, len);
    miser_free(buf);
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

/* ---- documents: one content, rendered as Markdown or as HTML ---- */

/* The Markdown and HTML reports say the same things: the sections below are
 * written once against these few constructs. In HTML every text is escaped
 * (no Markdown syntax reaches the page) and tables sit in a container that
 * scrolls sideways when the page is narrower than the table. */
typedef struct doc {
    FILE *f;
    int html;
    size_t ncols;     /* header cells so far (Markdown's alignment row) */
    char align[64];   /* 'l' or 'r' per column */
} doc;

static void doc_text(const doc *d, const char *s)
{
    if (d->html) {
        miser_chart_xml_text(d->f, s);
        return;
    }
    for (; s && *s; s++) {
        if (*s == '|') fputs("\\|", d->f);
        else if (*s == '\n' || *s == '\r') fputc(' ', d->f);
        else fputc(*s, d->f);
    }
}

static void doc_textf(const doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void doc_textf(const doc *d, const char *fmt, ...)
{
    char b[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    doc_text(d, b);
}

static void doc_h(const doc *d, int lvl, const char *s)
{
    if (d->html) fprintf(d->f, "<h%d>", lvl);
    else fprintf(d->f, "%s%.*s ", lvl > 1 ? "\n" : "", lvl, "######");
    doc_text(d, s);
    if (d->html) fprintf(d->f, "</h%d>\n", lvl);
    else fputs("\n\n", d->f);
}

static void doc_p_begin(const doc *d) { if (d->html) fputs("<p>", d->f); }
static void doc_p_end(const doc *d) { fputs(d->html ? "</p>\n" : "\n\n", d->f); }
static void doc_p(const doc *d, const char *s)
{
    doc_p_begin(d);
    doc_text(d, s);
    doc_p_end(d);
}
static void doc_note_begin(const doc *d) { fputs(d->html ? "<p class=\"note\">" : "> ", d->f); }

static void doc_strong(const doc *d, const char *s)
{
    fputs(d->html ? "<strong>" : "**", d->f);
    doc_text(d, s);
    fputs(d->html ? "</strong>" : "**", d->f);
}

static void doc_code(const doc *d, const char *s)
{
    fputs(d->html ? "<code>" : "`", d->f);
    doc_text(d, s);
    fputs(d->html ? "</code>" : "`", d->f);
}

/* A note written by the commands (why a runtime was skipped, the token
 * check): `...` spans are inline code, shown as code in HTML. */
static void doc_rich(const doc *d, const char *s)
{
    if (!d->html) {
        doc_text(d, s);
        return;
    }
    char buf[1024];
    while (s && *s) {
        const char *a = strchr(s, '`'), *b = a ? strchr(a + 1, '`') : NULL;
        if (!b) {
            doc_text(d, s);
            return;
        }
        snprintf(buf, sizeof buf, "%.*s", (int)(a - s), s);
        doc_text(d, buf);
        snprintf(buf, sizeof buf, "%.*s", (int)(b - a - 1), a + 1);
        doc_code(d, buf);
        s = b + 1;
    }
}

static void doc_list_begin(const doc *d) { if (d->html) fputs("<ul>\n", d->f); }
static void doc_list_end(const doc *d) { if (d->html) fputs("</ul>\n", d->f); }
static void doc_li_begin(const doc *d) { fputs(d->html ? "<li>" : "- ", d->f); }
static void doc_li_end(const doc *d) { fputs(d->html ? "</li>\n" : "\n", d->f); }

static void doc_table_begin(doc *d)
{
    d->ncols = 0;
    if (d->html) fputs("<div class=\"scroll\"><table>\n<thead><tr>", d->f);
}

static void doc_th(doc *d, const char *s, int left)
{
    if (d->ncols < sizeof d->align) d->align[d->ncols] = left ? 'l' : 'r';
    d->ncols++;
    if (d->html) fputs(left ? "<th class=\"l\">" : "<th>", d->f);
    else fputs(d->ncols == 1 ? "| " : " ", d->f);
    doc_text(d, s);
    fputs(d->html ? "</th>" : " |", d->f);
}

static void doc_thead_end(const doc *d)
{
    if (d->html) {
        fputs("</tr></thead>\n<tbody>\n", d->f);
        return;
    }
    fputs("\n|", d->f);
    for (size_t i = 0; i < d->ncols; i++) fputs(i < sizeof d->align && d->align[i] == 'l' ? "---|" : "---:|", d->f);
    fputc('\n', d->f);
}

static void doc_tr_begin(const doc *d) { fputs(d->html ? "<tr>" : "|", d->f); }
static void doc_tr_end(const doc *d) { fputs(d->html ? "</tr>\n" : "\n", d->f); }
static void doc_td_begin(const doc *d, int left) { fputs(d->html ? (left ? "<td class=\"l\">" : "<td>") : " ", d->f); }
static void doc_td_end(const doc *d) { fputs(d->html ? "</td>" : " |", d->f); }
static void doc_td(const doc *d, const char *s, int left)
{
    doc_td_begin(d, left);
    doc_text(d, s);
    doc_td_end(d);
}
static void doc_table_end(const doc *d) { fputs(d->html ? "</tbody></table></div>\n" : "", d->f); }

/* A figure for the documents: seconds with their unit ("6.21 ms", "1.47 s"),
 * anything else with 3 significant digits (never "0.00" for a small value). */
static void fmt_value(char *b, size_t cap, double v, const char *unit)
{
    if (!strcmp(unit, "s")) miser_chart_fmt_seconds(b, cap, v);
    else miser_chart_fmt_sig(b, cap, v, 3);
}

/* The value with its unit, for running text ("22.6 MB", "6.21 ms"). */
static void fmt_value_unit(char *b, size_t cap, double v, const char *unit)
{
    char n[64];
    fmt_value(n, sizeof n, v, unit);
    if (!strcmp(unit, "s") || !isfinite(v) || !unit[0]) snprintf(b, cap, "%s", n);
    else snprintf(b, cap, "%.40s %.20s", n, unit);
}

/* A column header: the label, with the unit unless the cells carry it (seconds). */
static void metric_head(char *b, size_t cap, const miser_bench_metric *m)
{
    if (!strcmp(m->unit, "s")) snprintf(b, cap, "%s", m->label);
    else snprintf(b, cap, "%s (%s)", m->label, m->unit);
}

static const miser_bench_metric *metric_named(const char *name)
{
    size_t nm;
    const miser_bench_metric *ms = miser_bench_metrics(&nm);
    for (size_t k = 0; k < nm; k++)
        if (!strcmp(ms[k].name, name)) return &ms[k];
    return NULL;
}

/* Median, and the range over runs when there are several. */
static void doc_stat(const doc *d, miser_bench_stat s, const char *unit)
{
    char m[64], lo[64], hi[64];
    fmt_value(m, sizeof m, s.median, unit);
    doc_td_begin(d, 0);
    doc_text(d, m);
    if (s.n > 1) {
        fmt_value(lo, sizeof lo, s.min, unit);
        fmt_value(hi, sizeof hi, s.max, unit);
        if (d->html) {
            fputs("<span class=\"range\">", d->f);
            doc_textf(d, "%s \xe2\x80\x93 %s", lo, hi);
            fputs("</span>", d->f);
        } else
            doc_textf(d, " (%s-%s)", lo, hi);
    }
    doc_td_end(d);
}

static void doc_metric_table(doc *d, const miser_bench_report *r, int study)
{
    size_t nm;
    const miser_bench_metric *ms = miser_bench_metrics(&nm);
    doc_table_begin(d);
    doc_th(d, "runtime", 1);
    for (size_t k = 0; k < nm; k++)
        if (ms[k].study == study) {
            char h[160];
            metric_head(h, sizeof h, &ms[k]);
            doc_th(d, h, 0);
        }
    doc_thead_end(d);
    for (size_t i = 0; i < r->nrows; i++) {
        const miser_bench_row *w = &r->rows[i];
        if (!row_measured(w)) continue;
        doc_tr_begin(d);
        doc_td_begin(d, 1);
        doc_text(d, w->name);
        if (r->synthetic) doc_text(d, " (synthetic weights)");
        doc_td_end(d);
        for (size_t k = 0; k < nm; k++)
            if (ms[k].study == study) doc_stat(d, row_stat(w, ms[k].name), ms[k].unit);
        doc_tr_end(d);
    }
    doc_table_end(d);
}

static void doc_rankings(doc *d, const miser_bench_report *r)
{
    static const struct { const char *metric, *label; int hb; } ranks[] = {
        {"peak_rss_mb", "lowest peak RSS", 0},
        {"total_growth_anon_mb", "lowest anonymous memory growth", 0},
        {"ttft_s", "shortest time to first token", 0},
        {"decode_tok_s", "fastest decode (tokens/s, excluding the prompt)", 1},
        {"first_inference_s", "shortest first inference", 0},
        {"mem_per_tok_s", "least peak memory per decode token/s", 0},
    };
    size_t *idx = miser_malloc(MISER_MEM_OTHER, (r->nrows + 1) * sizeof *idx);
    if (!idx) return;
    doc_h(d, 2, "Rankings");
    doc_list_begin(d);
    for (size_t k = 0; k < sizeof ranks / sizeof ranks[0]; k++) {
        const miser_bench_metric *m = metric_named(ranks[k].metric);
        const char *unit = m ? m->unit : "";
        size_t n = measured_order(r, ranks[k].metric, ranks[k].hb, idx);
        doc_li_begin(d);
        doc_textf(d, "%s: ", ranks[k].label);
        if (!n) doc_text(d, "no data");
        for (size_t i = 0; i < n; i++) {
            char b[64];
            fmt_value_unit(b, sizeof b, row_median(&r->rows[idx[i]], ranks[k].metric), unit);
            doc_textf(d, "%s%zu. %s (%s)", i ? ", " : "", i + 1, r->rows[idx[i]].name, b);
        }
        doc_li_end(d);
    }
    doc_list_end(d);
    /* Tiers: each measured peak is a memory budget; within it, which runtime
     * decodes fastest and which needs least. */
    size_t n = measured_order(r, "peak_rss_mb", 0, idx);
    doc_h(d, 2, "Recommendations by memory tier");
    doc_p(d, "Each tier is a memory budget equal to a measured peak RSS (rounded up to 64 MB); the recommendation is "
             "the runtime with the fastest median decode among those whose median peak fits (derived from the rows "
             "above, nothing hard-coded).");
    doc_table_begin(d);
    doc_th(d, "budget", 0);
    doc_th(d, "runtimes that fit", 1);
    doc_th(d, "fastest decode", 1);
    doc_th(d, "lowest memory", 1);
    doc_thead_end(d);
    double last_budget = -1;
    for (size_t t = 0; t < n; t++) {
        double budget = ceil(row_median(&r->rows[idx[t]], "peak_rss_mb") / 64.0) * 64.0;
        if (budget == last_budget) continue;
        last_budget = budget;
        doc_tr_begin(d);
        char b[64];
        snprintf(b, sizeof b, "%.0f MB", budget);
        doc_td(d, b, 0);
        doc_td_begin(d, 1);
        int best = -1;
        double best_v = -1;
        int first = 1;
        for (size_t i = 0; i < n; i++) {
            const miser_bench_row *w = &r->rows[idx[i]];
            if (row_median(w, "peak_rss_mb") > budget) continue;
            doc_textf(d, "%s%s", first ? "" : ", ", w->name);
            first = 0;
            double v = row_median(w, "decode_tok_s");
            if (isfinite(v) && v > best_v) {
                best_v = v;
                best = (int)idx[i];
            }
        }
        doc_td_end(d);
        doc_td_begin(d, 1);
        if (best >= 0) {
            miser_chart_fmt_sig(b, sizeof b, best_v, 3);
            doc_textf(d, "%s (%s tok/s)", r->rows[best].name, b);
        } else
            doc_text(d, "n/a");
        doc_td_end(d);
        doc_td(d, r->rows[idx[0]].name, 1);
        doc_tr_end(d);
    }
    if (!n) {
        doc_tr_begin(d);
        doc_td(d, "n/a", 0);
        doc_td(d, "no measured runtime", 1);
        doc_td(d, "", 1);
        doc_td(d, "", 1);
        doc_tr_end(d);
    }
    doc_table_end(d);
    miser_free(idx);
}

static void doc_published(doc *d, const miser_bench_report *r)
{
    published p;
    if (!published_load(r->published_path, &p)) return;
    doc_h(d, 2, "Published figures (another machine)");
    doc_p_begin(d);
    doc_strong(d, "Published figures from another machine");
    doc_text(d, ", not measured here: compare shapes and ratios, not absolute values. Source: ");
    doc_text(d, p.source);
    doc_text(d, ". Machine: ");
    doc_text(d, p.machine);
    doc_text(d, " Data file: ");
    doc_code(d, r->published_path);
    doc_text(d, ".");
    doc_p_end(d);
    doc_table_begin(d);
    doc_th(d, "runtime (published, other machine)", 1);
    const cJSON *c;
    cJSON_ArrayForEach(c, p.columns)
    {
        const char *name = cJSON_IsString(c) ? c->valuestring : "?";
        const miser_bench_metric *m = metric_named(name);
        char h[160];
        if (m) metric_head(h, sizeof h, m);
        else snprintf(h, sizeof h, "%s", name);
        doc_th(d, h, 0);
    }
    doc_thead_end(d);
    const cJSON *row;
    cJSON_ArrayForEach(row, p.cpu)
    {
        doc_tr_begin(d);
        doc_td(d, row->string ? row->string : "?", 1);
        cJSON_ArrayForEach(c, p.columns)
        {
            const char *name = cJSON_IsString(c) ? c->valuestring : "";
            const miser_bench_metric *m = metric_named(name);
            char b[64];
            fmt_value(b, sizeof b, published_value(&p, row, name), m ? m->unit : "");
            doc_td(d, b, 0);
        }
        doc_tr_end(d);
    }
    doc_table_end(d);
    cJSON_Delete(p.root);
}

static miser_status write_svg(const miser_bench_report *r, FILE *f);

/* The report, in either rendering; the HTML one has the charts after the header. */
static miser_status doc_report(doc *d, const miser_bench_report *r)
{
    doc_h(d, 1, r->title);
    if (r->synthetic) {
        doc_note_begin(d);
        doc_strong(d, "Synthetic weights.");
        doc_text(d, " The checkpoint holds deterministic synthetic weights of GPT-2's shape (a real safetensors file, so "
                    "loading is real file I/O): memory and timings are real, generated text is meaningless.");
        doc_p_end(d);
    }
    doc_list_begin(d);
    doc_li_begin(d);
    doc_text(d, "model: ");
    doc_code(d, r->model);
    doc_li_end(d);
    doc_li_begin(d);
    doc_textf(d, "scenario: %s", r->scenario);
    doc_li_end(d);
    doc_li_begin(d);
    doc_textf(d, "machine: %s", r->machine);
    doc_li_end(d);
    doc_list_end(d);
    if (d->html) {
        doc_h(d, 2, "Charts");
        fputs("<figure>\n", d->f);
        miser_status st = write_svg(r, d->f);
        if (st) return st;
        fputs("</figure>\n", d->f);
    }
    doc_h(d, 2, "The study's CPU table (measured here)");
    doc_p(d, "Median over runs, with the range (min-max) when there are several. Definitions as in the study: loading "
             "= rss(1)-rss(0), compilation = rss(3)-rss(2), peak = max sampled RSS - rss(0), growth = rss(5)-rss(0), "
             "throughput = words of the output text / first-inference seconds.");
    doc_metric_table(d, r, 1);
    doc_h(d, 2, "Corrected and derived figures");
    doc_p(d, "Time to first token and decode tokens/s (tokens, excluding the prompt) from the runtime's own timings; "
             "peak RSS from the kernel's high-water mark per stage; anon (private allocations) and file-backed "
             "(mmapped weights, shared) memory separately; memory per token/s = peak RSS / decode tok/s; "
             "compilation MB/s = compilation MB / first-inference s.");
    doc_metric_table(d, r, 0);
    doc_h(d, 2, "Run-to-run variance");
    doc_p(d, "Coefficient of variation (sample stddev / mean) over runs.");
    doc_table_begin(d);
    static const char *vcols[] = {"first_inference_s", "second_inference_s", "decode_tok_s", "peak_rss_mb"};
    static const char *vheads[] = {"first inference", "second inference", "decode tok/s", "peak RSS"};
    doc_th(d, "runtime", 1);
    doc_th(d, "runs", 0);
    for (int k = 0; k < 4; k++) doc_th(d, vheads[k], 0);
    doc_thead_end(d);
    for (size_t i = 0; i < r->nrows; i++) {
        const miser_bench_row *w = &r->rows[i];
        if (!row_measured(w)) continue;
        doc_tr_begin(d);
        doc_td(d, w->name, 1);
        char b[64];
        snprintf(b, sizeof b, "%zu", w->nruns);
        doc_td(d, b, 0);
        for (int k = 0; k < 4; k++) {
            double cv = row_stat(w, vcols[k]).cv;
            char n[48];
            miser_chart_fmt_sig(n, sizeof n, cv * 100, 2);
            if (isfinite(cv)) snprintf(b, sizeof b, "%s %%", n);
            else snprintf(b, sizeof b, "n/a");
            doc_td(d, b, 0);
        }
        doc_tr_end(d);
    }
    doc_table_end(d);
    doc_h(d, 2, "Greedy tokens");
    doc_table_begin(d);
    doc_th(d, "runtime", 1);
    doc_th(d, "version", 1);
    doc_th(d, "tokens (first prompt)", 1);
    doc_th(d, "check", 1);
    doc_thead_end(d);
    for (size_t i = 0; i < r->nrows; i++) {
        const miser_bench_row *w = &r->rows[i];
        doc_tr_begin(d);
        doc_td(d, w->name, 1);
        doc_td(d, w->version, 1);
        doc_td_begin(d, 1);
        for (size_t j = 0; w->has_ids && j < w->nids[0]; j++) doc_textf(d, "%s%d", j ? " " : "", w->ids[0][j]);
        doc_td_end(d);
        doc_td_begin(d, 1);
        if (w->agree == 0) {
            doc_strong(d, "FLAGGED");
            doc_text(d, " ");
        }
        doc_rich(d, w->skipped ? "skipped" : w->agree_note);
        doc_td_end(d);
        doc_tr_end(d);
    }
    doc_table_end(d);
    int any = 0;
    for (size_t i = 0; i < r->nrows; i++)
        if (r->rows[i].skipped || r->rows[i].failed) {
            if (!any) doc_h(d, 2, "Skipped or failed"), doc_list_begin(d);
            any = 1;
            doc_li_begin(d);
            doc_textf(d, "%s %s: ", r->rows[i].skipped ? "skipped" : "FAILED", r->rows[i].name);
            doc_rich(d, r->rows[i].note);
            doc_li_end(d);
        }
    if (any) doc_list_end(d);
    doc_rankings(d, r);
    doc_published(d, r);
    return MISER_OK;
}

miser_status miser_bench_write_markdown(const miser_bench_report *r, FILE *f)
{
    doc d = {.f = f, .html = 0};
    miser_status st = doc_report(&d, r);
    return st ? st : io_check(f);
}

/* ---- SVG: bars and one timeline panel per runtime ---- */

#define SVG_W 960.0

static int svg_height_bars(const miser_bench_report *r)
{
    int n = 0;
    for (size_t i = 0; i < r->nrows; i++) n += row_measured(&r->rows[i]);
    return 30 + 20 * n + 8;
}

static void svg_bars(const miser_bench_report *r, FILE *f, const char *metric, const char *title, double y0)
{
    const miser_bench_metric *m = metric_named(metric);
    const char *unit = m ? m->unit : "";
    double maxv = 0;
    for (size_t i = 0; i < r->nrows; i++)
        if (row_measured(&r->rows[i])) {
            double v = row_median(&r->rows[i], metric);
            if (isfinite(v) && v > maxv) maxv = v;
        }
    fprintf(f, "<text x=\"10\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">", y0 + 16);
    miser_chart_xml_text(f, title);
    fputs("</text>\n", f);
    double y = y0 + 26;
    size_t c = 0;
    for (size_t i = 0; i < r->nrows; i++, c++) {
        const miser_bench_row *w = &r->rows[i];
        if (!row_measured(w)) continue;
        double v = row_median(w, metric);
        double len = isfinite(v) && maxv > 0 ? 600.0 * v / maxv : 0;
        char b[64];
        fmt_value_unit(b, sizeof b, v, unit);
        fprintf(f, "<g class=\"bar\"><title>");
        miser_chart_xml_text(f, w->name);
        fprintf(f, ": %s (median)</title><text x=\"10\" y=\"%.1f\">", b, y + 12);
        miser_chart_xml_text_fit(f, w->name, 12, 150);
        fprintf(f, "</text><rect x=\"170\" y=\"%.1f\" width=\"%.1f\" height=\"14\" fill=\"%s\"/>", y, len, palette[i % 8]);
        fprintf(f, "<text class=\"value\" x=\"%.1f\" y=\"%.1f\">%s</text></g>\n", 176 + len, y + 12, b);
        y += 20;
    }
}

/* Each measured runtime's first run as a timeline panel, all on the same
 * scales so the panels compare; the key under the last one. */
static miser_status svg_timelines(const miser_bench_report *r, FILE *f, double y0, double *height)
{
    double tmax = 0, ymax = 0;
    size_t last = r->nrows;
    for (size_t i = 0; i < r->nrows; i++) {
        const miser_profile *p = r->rows[i].timeline;
        if (!row_measured(&r->rows[i]) || !p) continue;
        double t, y;
        miser_chart_timeline_extent(p, &t, &y);
        if (t > tmax) tmax = t;
        if (y > ymax) ymax = y;
        last = i;
    }
    double y = y0;
    if (last == r->nrows) {
        *height = 0;
        return MISER_OK;
    }
    if (f)
        fprintf(f, "<text x=\"10\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">Stage timelines: memory of each "
                   "runtime's first run (same scales)</text>\n",
                y + 16);
    y += 26;
    for (size_t i = 0; i <= last; i++) {
        const miser_profile *p = r->rows[i].timeline;
        if (!row_measured(&r->rows[i]) || !p) continue;
        miser_chart_timeline_opts o = {.x = 0, .y = y, .width = SVG_W, .plot_height = 200, .tmax_s = tmax,
                                       .ymax_mb = ymax, .title = r->rows[i].name, .title_color = palette[i % 8],
                                       .series_key = i == last};
        double h;
        miser_status st = miser_chart_timeline(f, p, &o, &h);
        if (st) return st;
        y += h + 8;
    }
    *height = y - y0;
    return MISER_OK;
}

static miser_status write_svg(const miser_bench_report *r, FILE *f)
{
    double hb = svg_height_bars(r), ht;
    miser_status st = svg_timelines(r, NULL, 3 * hb, &ht);
    if (st) return st;
    double height = 3 * hb + ht + 10;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"miser-charts\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"11\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
            SVG_W, height, SVG_W, height);
    svg_bars(r, f, "peak_rss_mb", r->synthetic ? "Peak RSS (median; synthetic weights)" : "Peak RSS (median)", 0);
    svg_bars(r, f, "first_inference_s", "First inference (median)", hb);
    svg_bars(r, f, "second_inference_s", "Second inference (median)", 2 * hb);
    st = svg_timelines(r, f, 3 * hb, &ht);
    fputs("</svg>\n", f);
    return st;
}

miser_status miser_bench_write_svg(const miser_bench_report *r, FILE *f)
{
    miser_status st = write_svg(r, f);
    return st ? st : io_check(f);
}

/* ---- HTML ---- */

static const char html_style[] =
    "body{font-family:sans-serif;color:#222;line-height:1.4;max-width:1320px;margin:0 auto;padding:0 16px 32px}"
    "h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}"
    ".scroll{max-width:100%;overflow-x:auto;margin:.5em 0}"
    "table{border-collapse:collapse;font-variant-numeric:tabular-nums}"
    "th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:top}"
    "th{background:#f5f5f5;vertical-align:bottom;font-weight:600;min-width:3.5em;hyphens:auto}"
    "td{white-space:nowrap}th.l,td.l{text-align:left}td.l{white-space:normal;overflow-wrap:anywhere;min-width:6em}"
    ".range{display:block;color:#666;font-size:85%}"
    ".note{background:#fff3cd;border-left:4px solid #e0a800;padding:6px 10px}"
    "code{background:#f3f3f3;padding:0 3px;overflow-wrap:anywhere}"
    "li{overflow-wrap:anywhere}figure{margin:0}figure svg{display:block;width:100%;max-width:1200px;height:auto}";

miser_status miser_bench_write_html(const miser_bench_report *r, FILE *f)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>",
          f);
    miser_chart_xml_text(f, r->title);
    fprintf(f, "</title>\n<style>%s</style></head>\n<body>\n", html_style);
    doc d = {.f = f, .html = 1};
    miser_status st = doc_report(&d, r);
    if (st) return st;
    fputs("</body></html>\n", f);
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
