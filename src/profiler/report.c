/* Report writers shared by the in-process and out-of-process paths:
 * terminal table, JSON (schema "miser-profile" v1), CSV, Markdown, SVG and
 * a standalone HTML page (stage table, timeline, attribution icicles).
 * JSON is written by hand (streaming, no allocation); files are written to a
 * temporary in the same directory and renamed, never left half-written. */
#include "chart.h"
#include "internal.h"
#include "attrib.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int miser_report_format_parse(const char *s, miser_report_format *out)
{
    static const struct { const char *n; miser_report_format f; } t[] = {
        {"table", MISER_REPORT_TABLE}, {"text", MISER_REPORT_TABLE}, {"json", MISER_REPORT_JSON},
        {"csv", MISER_REPORT_CSV},     {"md", MISER_REPORT_MARKDOWN}, {"markdown", MISER_REPORT_MARKDOWN},
        {"svg", MISER_REPORT_SVG},     {"html", MISER_REPORT_HTML}};
    for (size_t i = 0; s && i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(s, t[i].n)) {
            *out = t[i].f;
            return 0;
        }
    return -1;
}

static double mb(int64_t kb) { return kb < 0 ? NAN : (double)kb / 1024.0; }

/* ---------- JSON ---------- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void json_i(FILE *f, int64_t v)
{
    if (v < 0) fputs("null", f);
    else fprintf(f, "%lld", (long long)v);
}

static void json_d(FILE *f, double v)
{
    if (isnan(v) || isinf(v)) fputs("null", f);
    else fprintf(f, "%.6f", v);
}

static void json_metrics(FILE *f, const miser_profile_metrics *m)
{
    fprintf(f, "  \"metrics\": {\n    \"study\": {");
    const char *sn[] = {"model_loading_mb", "compilation_mb", "peak_ram_mb", "peak_swap_mb", "total_growth_mb",
                        "first_inference_s", "second_inference_s", "speedup", "throughput_tok_s"};
    double sv[] = {m->model_loading_mb, m->compilation_mb, m->peak_ram_mb, m->peak_swap_mb, m->total_growth_mb,
                   m->first_inference_s, m->second_inference_s, m->speedup, m->throughput_tok_s};
    for (size_t i = 0; i < 9; i++) {
        fprintf(f, "%s\"%s\": ", i ? ", " : "", sn[i]);
        json_d(f, sv[i]);
    }
    fprintf(f, ", \"peak_ram_source\": ");
    json_str(f, m->peak_ram_source);
    fprintf(f, "},\n    \"corrected\": {");
    const char *cn[] = {"peak_rss_mb", "peak_growth_mb", "peak_sampled_mb", "model_loading_anon_mb",
                        "model_loading_file_mb", "compilation_anon_mb", "compilation_file_mb", "compile_peak_mb",
                        "total_growth_anon_mb", "tokens", "ttft_s", "decode_tok_s", "second_decode_tok_s",
                        "throughput_tokens_s"};
    double cv[] = {m->peak_rss_mb, m->peak_growth_mb, m->peak_sampled_mb, m->model_loading_anon_mb,
                   m->model_loading_file_mb, m->compilation_anon_mb, m->compilation_file_mb, m->compile_peak_mb,
                   m->total_growth_anon_mb, m->tokens, m->ttft_s, m->decode_tok_s, m->second_decode_tok_s,
                   m->throughput_tokens_s};
    for (size_t i = 0; i < sizeof cn / sizeof cn[0]; i++) {
        fprintf(f, "%s\"%s\": ", i ? ", " : "", cn[i]);
        json_d(f, cv[i]);
    }
    fprintf(f, ", \"peaks_exact\": %s, \"peak_kind\": \"%s\"}\n  }", m->peaks_exact ? "true" : "false",
            miser_peak_kind_name(m->peak_kind));
}

static void write_json(const miser_profile *p, FILE *f)
{
    miser_profile_metrics m;
    miser_profile_metrics_compute(p, &m);
    fprintf(f, "{\n  \"schema\": \"%s\",\n  \"version\": %d,\n  \"tool\": \"miser %s\",\n", MISER_PROFILE_SCHEMA,
            MISER_PROFILE_SCHEMA_VERSION, MISER_VERSION_STRING);
    fprintf(f, "  \"mode\": ");
    json_str(f, p->mode);
    fprintf(f, ",\n  \"label\": ");
    json_str(f, p->label);
    fprintf(f, ",\n  \"started_unix\": %.3f,\n  \"kernel\": ", p->started_unix);
    json_str(f, p->kernel);
    fprintf(f, ",\n  \"peak_method\": ");
    json_str(f, p->peak_method);
    fprintf(f, ",\n  \"sample_interval_ms\": ");
    if (p->sample_interval_ms > 0) json_d(f, p->sample_interval_ms);
    else fputs("null", f);
    fprintf(f, ",\n  \"exit\": {\"exited\": %s, \"code\": %d, \"signaled\": %s, \"signal\": %d},\n",
            p->exit.exited ? "true" : "false", p->exit.code, p->exit.signaled ? "true" : "false", p->exit.signal);
    fprintf(f, "  \"stages\": [");
    for (size_t i = 0; i < p->nstages; i++) {
        const miser_stage_record *s = &p->stages[i];
        fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
        json_str(f, s->name);
        fprintf(f, ", \"description\": ");
        json_str(f, s->description);
        fprintf(f, ", \"implicit\": %s, \"t_s\": %.6f, \"cpu_s\": %.6f,\n     \"rss_kb\": ", s->implicit ? "true" : "false",
                s->t_s, s->cpu_s);
        json_i(f, s->rss_kb);
        fputs(", \"anon_kb\": ", f); json_i(f, s->anon_kb);
        fputs(", \"file_kb\": ", f); json_i(f, s->file_kb);
        fputs(", \"shmem_kb\": ", f); json_i(f, s->shmem_kb);
        fputs(", \"swap_kb\": ", f); json_i(f, s->swap_kb);
        fputs(", \"pss_kb\": ", f); json_i(f, s->pss_kb);
        fputs(",\n     \"peak_rss_kb\": ", f); json_i(f, s->peak_rss_kb);
        fprintf(f, ", \"peak_exact\": %s, \"peak_sampled_kb\": ", s->peak_exact ? "true" : "false");
        json_i(f, s->peak_sampled_kb);
        fputs(", \"peak_swap_kb\": ", f); json_i(f, s->peak_swap_kb);
        fprintf(f, ", \"peak_kind\": \"%s\", \"interval_procs\": %d", miser_peak_kind_name(s->peak_kind),
                s->interval_procs);
        fprintf(f, ", \"minflt\": %llu, \"majflt\": %llu, \"nprocs\": %d, \"gpu_kb\": ", (unsigned long long)s->minflt,
                (unsigned long long)s->majflt, s->nprocs);
        json_i(f, s->gpu_kb);
        fprintf(f, ",\n     \"source\": \"%s\", \"reported_rss_kb\": ", miser_mark_source_name(s->source));
        json_i(f, s->reported_rss_kb);
        fputs(", \"reported_swap_kb\": ", f); json_i(f, s->reported_swap_kb);
        fputs(", \"report_delay_s\": ", f); json_d(f, s->report_delay_s);
        if (s->has_alloc) {
            fputs(",\n     \"alloc\": {", f);
            for (int c = 0; c <= MISER_MEM_COUNT; c++) {
                const miser_mem_stats *a = c < MISER_MEM_COUNT ? &s->alloc[c] : &s->alloc_total;
                fprintf(f, "%s\"%s\": {\"current\": %llu, \"peak\": %llu, \"allocs\": %llu, \"mapped\": %llu}", c ? ", " : "",
                        c < MISER_MEM_COUNT ? miser_mem_category_name((miser_mem_category)c) : "total",
                        (unsigned long long)a->current, (unsigned long long)a->peak, (unsigned long long)a->allocs,
                        (unsigned long long)a->mapped);
            }
            fputc('}', f);
        }
        fputs(",\n     \"data\": {", f);
        for (size_t k = 0; k < s->nkv; k++) {
            if (k) fputs(", ", f);
            json_str(f, s->kv[k].key);
            fputs(": ", f);
            json_str(f, s->kv[k].value);
        }
        fputc('}', f);
        attrib_json_stage(p, i, f); /* --attribute: per-stage attribution (attrib_report.c) */
        fputc('}', f);
    }
    fprintf(f, "\n  ],\n  \"timeline\": {\"columns\": [\"t_s\", \"rss_kb\", \"anon_kb\", \"file_kb\", \"swap_kb\", "
               "\"gpu_kb\"], \"dropped\": %zu, \"rows\": [",
            p->dropped_samples);
    for (size_t i = 0; i < p->nsamples; i++) {
        const miser_sample *s = &p->samples[i];
        fprintf(f, "%s\n    [%.6f, ", i ? "," : "", s->t_s);
        json_i(f, s->rss_kb); fputs(", ", f);
        json_i(f, s->anon_kb); fputs(", ", f);
        json_i(f, s->file_kb); fputs(", ", f);
        json_i(f, s->swap_kb); fputs(", ", f);
        json_i(f, s->gpu_kb); fputc(']', f);
    }
    fprintf(f, "%s]},\n  \"warnings\": [", p->nsamples ? "\n  " : "");
    for (size_t i = 0; i < p->nwarnings; i++) {
        if (i) fputs(", ", f);
        json_str(f, p->warnings[i]);
    }
    fputs("],\n", f);
    attrib_json_top(p, f); /* --attribute: processes and leaks (attrib_report.c) */
    json_metrics(f, &m);
    fputs("\n}\n", f);
}

/* ---------- CSV ---------- */

static void csv_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_i(FILE *f, int64_t v)
{
    if (v >= 0) fprintf(f, "%lld", (long long)v);
}

static void write_csv(const miser_profile *p, FILE *f)
{
    /* New columns go after description, so readers by position keep working. */
    fputs("stage,implicit,t_s,cpu_s,rss_kb,anon_kb,file_kb,shmem_kb,swap_kb,pss_kb,peak_rss_kb,peak_exact,"
          "peak_sampled_kb,peak_swap_kb,minflt,majflt,nprocs,gpu_kb,description,peak_kind,interval_procs,source,"
          "reported_rss_kb,reported_swap_kb,report_delay_s\n",
          f);
    for (size_t i = 0; i < p->nstages; i++) {
        const miser_stage_record *s = &p->stages[i];
        csv_str(f, s->name);
        fprintf(f, ",%d,%.6f,%.6f,", s->implicit, s->t_s, s->cpu_s);
        int64_t v[] = {s->rss_kb, s->anon_kb, s->file_kb, s->shmem_kb, s->swap_kb, s->pss_kb, s->peak_rss_kb};
        for (size_t k = 0; k < 7; k++) csv_i(f, v[k]), fputc(',', f);
        fprintf(f, "%d,", s->peak_exact);
        csv_i(f, s->peak_sampled_kb);
        fputc(',', f);
        csv_i(f, s->peak_swap_kb);
        fprintf(f, ",%llu,%llu,%d,", (unsigned long long)s->minflt, (unsigned long long)s->majflt, s->nprocs);
        csv_i(f, s->gpu_kb);
        fputc(',', f);
        csv_str(f, s->description);
        fprintf(f, ",%s,%d,%s,", miser_peak_kind_name(s->peak_kind), s->interval_procs, miser_mark_source_name(s->source));
        csv_i(f, s->reported_rss_kb);
        fputc(',', f);
        csv_i(f, s->reported_swap_kb);
        fputc(',', f);
        if (!isnan(s->report_delay_s)) fprintf(f, "%.6f", s->report_delay_s);
        fputc('\n', f);
    }
}

/* ---------- terminal table and Markdown ---------- */

static void fmt_num(char *b, size_t n, double v, const char *fmt)
{
    if (isnan(v) || isinf(v)) snprintf(b, n, "-");
    else snprintf(b, n, fmt, v);
}

/* The memory columns of a stage row (MB, "-" where unknown), shared by the
 * terminal and Markdown tables: RSS, anon, file, swap, peak, sampled peak. */
static void stage_cells(const miser_stage_record *s, char c[6][24])
{
    const int64_t kb[6] = {s->rss_kb, s->anon_kb, s->file_kb, s->swap_kb, s->peak_rss_kb, s->peak_sampled_kb};
    for (int i = 0; i < 6; i++) fmt_num(c[i], 24, mb(kb[i]), "%.2f");
}

miser_status miser_profile_write_stage_line(const miser_stage_record *s, FILE *f)
{
    double rss = s->rss_kb >= 0 ? (double)s->rss_kb / 1024 : 0, swap = s->swap_kb >= 0 ? (double)s->swap_kb / 1024 : 0;
    if (fprintf(f, "[STAGE] %s: %.2f MB (swap: %.2f MB) - %s\n", s->name, rss, swap, s->description) < 0)
        return miser_error_set(MISER_ERR_IO, "report: write failed");
    return MISER_OK;
}

/* Short labels for the tables. */
static const char *kind_short(miser_peak_kind k)
{
    switch (k) {
    case MISER_PEAK_EXACT: return "exact";
    case MISER_PEAK_UPPER_BOUND: return "<= this";
    case MISER_PEAK_LOWER_BOUND: return ">= this";
    case MISER_PEAK_SAMPLED: return "sampled";
    default: return "-";
    }
}

static const char *kind_phrase(miser_peak_kind k)
{
    switch (k) {
    case MISER_PEAK_EXACT: return "exact";
    case MISER_PEAK_UPPER_BOUND: return "an upper bound (sum of per-process peaks)";
    case MISER_PEAK_LOWER_BOUND: return "a lower bound (a process's peak was not readable)";
    case MISER_PEAK_SAMPLED: return "sampled (a lower bound)";
    default: return "of mixed bounds (neither an upper nor a lower bound)";
    }
}

/* Is a mark's snapshot taken after the program moved on? */
static int is_late_source(miser_mark_source s) { return s == MISER_MARK_STDOUT || s == MISER_MARK_PIPE; }

/* The note under a [STAGE] line that came from the command's stdout. */
static void reported_note(const miser_stage_record *s, char *b, size_t n)
{
    if (isnan(s->report_delay_s))
        snprintf(b, n, "the command printed %.2f MB; miser's reading is from when the line arrived, delay unknown",
                 mb(s->reported_rss_kb));
    else
        snprintf(b, n, "the command printed %.2f MB; miser's reading is from when the line arrived, >= %.3f s later",
                 mb(s->reported_rss_kb), s->report_delay_s);
}

typedef struct {
    const char *name, *fmt, *note;
    double v;
} mrow;

static size_t study_rows(const miser_profile_metrics *m, mrow *r)
{
    mrow t[] = {{"model_loading_mb", "%.2f", "rss(1)-rss(0)", m->model_loading_mb},
                {"compilation_mb", "%.2f", "rss(3)-rss(2)", m->compilation_mb},
                {"peak_ram_mb", "%.2f", "max polled rss - rss(0)", m->peak_ram_mb},
                {"peak_swap_mb", "%.2f", "max swap seen", m->peak_swap_mb},
                {"total_growth_mb", "%.2f", "rss(5)-rss(0)", m->total_growth_mb},
                {"first_inference_s", "%.3f", "t(3)-t(2) or seconds=", m->first_inference_s},
                {"second_inference_s", "%.3f", "t(4)-t(3) or seconds=", m->second_inference_s},
                {"speedup", "%.2f", "first/second", m->speedup},
                {"throughput_tok_s", "%.2f", "words of text= / first", m->throughput_tok_s}};
    memcpy(r, t, sizeof t);
    return sizeof t / sizeof t[0];
}

static size_t corrected_rows(const miser_profile_metrics *m, mrow *r)
{
    mrow t[] = {{"peak_rss_mb", "%.2f", "whole-run peak (max of interval peaks)", m->peak_rss_mb},
                {"peak_growth_mb", "%.2f", "peak_rss - rss(0)", m->peak_growth_mb},
                {"peak_sampled_mb", "%.2f", "max sampled rss (what a poller sees)", m->peak_sampled_mb},
                {"model_loading_anon_mb", "%.2f", "allocations while loading", m->model_loading_anon_mb},
                {"model_loading_file_mb", "%.2f", "file-backed (mmapped weights)", m->model_loading_file_mb},
                {"compilation_anon_mb", "%.2f", "anon(3)-anon(2)", m->compilation_anon_mb},
                {"compilation_file_mb", "%.2f", "file(3)-file(2)", m->compilation_file_mb},
                {"compile_peak_mb", "%.2f", "peak within 2->3 - rss(2)", m->compile_peak_mb},
                {"total_growth_anon_mb", "%.2f", "anon(5)-anon(0)", m->total_growth_anon_mb},
                {"tokens", "%.0f", "generated tokens (tokens=)", m->tokens},
                {"ttft_s", "%.3f", "time to first token (ttft_s=)", m->ttft_s},
                {"decode_tok_s", "%.2f", "(tokens-1)/(first-ttft)", m->decode_tok_s},
                {"second_decode_tok_s", "%.2f", "tokens(4)/second", m->second_decode_tok_s},
                {"throughput_tokens_s", "%.2f", "tokens/first", m->throughput_tokens_s}};
    memcpy(r, t, sizeof t);
    return sizeof t / sizeof t[0];
}

static void exit_line(const miser_profile *p, char *b, size_t n)
{
    if (p->exit.signaled) snprintf(b, n, "killed by signal %d (%s)", p->exit.signal, strsignal(p->exit.signal));
    else if (p->exit.exited) snprintf(b, n, "exited with code %d", p->exit.code);
    else snprintf(b, n, "in-process");
}

static void write_table(const miser_profile *p, FILE *f)
{
    miser_profile_metrics m;
    miser_profile_metrics_compute(p, &m);
    char ex[96];
    exit_line(p, ex, sizeof ex);
    fprintf(f, "miser profile: %s\n", p->label);
    fprintf(f, "peaks: %s; sampler: ", p->peak_method);
    if (p->sample_interval_ms > 0) fprintf(f, "%g ms (%zu samples)", p->sample_interval_ms, p->nsamples);
    else fputs("off", f);
    fprintf(f, "; %s\n\n", ex);
    /* miser's own readings in the study's line format, labelled as such: the
     * command's own [STAGE] lines (passed through on stdout) carry its figures,
     * which differ when miser read the line late; each such line says so. */
    int any_stage = 0, any_late = 0;
    for (size_t i = 0; i < p->nstages; i++) {
        const miser_stage_record *s = &p->stages[i];
        if (s->implicit) continue;
        if (!any_stage) fputs("miser's readings at each mark, in the study's format:\n", f);
        any_stage = 1;
        miser_profile_write_stage_line(s, f);
        if (s->reported_rss_kb >= 0) {
            char note[200];
            reported_note(s, note, sizeof note);
            fprintf(f, "        (%s)\n", note);
        }
        if (is_late_source(s->source)) any_late = 1;
    }
    if (any_late)
        fputs("(marks from [STAGE] lines on stdout and from marker-pipe lines without ack=1 are measured when miser\n"
              " reads them, after the command has moved on; ack=1 on the marker pipe measures where the command is)\n",
              f);
    fprintf(f, "\n%-22s %8s %8s %9s %9s %9s %8s %9s %-8s %9s %8s %-8s %9s\n", "stage", "t s", "cpu s", "RSS MB",
            "anon MB", "file MB", "swap MB", "peak MB", "peak is", "sampled", "faults", "mark", "printed");
    for (size_t i = 0; i < p->nstages; i++) {
        const miser_stage_record *s = &p->stages[i];
        char c[6][24], rep_mb[24];
        stage_cells(s, c);
        fmt_num(rep_mb, sizeof rep_mb, mb(s->reported_rss_kb), "%.2f");
        fprintf(f, "%-22s %8.3f %8.3f %9s %9s %9s %8s %9s %-8s %9s %8llu %-8s %9s\n", s->name, s->t_s, s->cpu_s, c[0],
                c[1], c[2], c[3], c[4], kind_short(s->peak_kind), c[5], (unsigned long long)(s->minflt + s->majflt),
                miser_mark_source_name(s->source), rep_mb);
    }
    fputs("(peak is: exact = one process's high-water mark; <= this = a tree's sum of per-process peaks, an upper\n"
          " bound; >= this = a process's peak was lost to its parent's wait(), a lower bound; sampled = no reset.\n"
          " printed = the figure on the command's own [STAGE] line.)\n",
          f);
    mrow r[16];
    size_t n = study_rows(&m, r);
    fprintf(f, "\nstudy metrics (its definitions, for comparison with published tables):\n");
    for (size_t i = 0; i < n; i++) {
        char b[32];
        fmt_num(b, sizeof b, r[i].v, r[i].fmt);
        fprintf(f, "  %-22s %12s   %s\n", r[i].name, b, r[i].note);
    }
    n = corrected_rows(&m, r);
    fprintf(f, "corrected (the whole-run peak is %s):\n", kind_phrase(m.peak_kind));
    for (size_t i = 0; i < n; i++) {
        char b[32];
        fmt_num(b, sizeof b, r[i].v, r[i].fmt);
        fprintf(f, "  %-22s %12s   %s\n", r[i].name, b, r[i].note);
    }
    attrib_write_table(p, f); /* --attribute: top consumers per stage peak (attrib_report.c) */
    for (size_t i = 0; i < p->nwarnings; i++) fprintf(f, "warning: %s\n", p->warnings[i]);
}

static void md_text(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else if (*s == '\n') fputc(' ', f);
        else fputc(*s, f);
    }
}

static void write_md(const miser_profile *p, FILE *f)
{
    miser_profile_metrics m;
    miser_profile_metrics_compute(p, &m);
    char ex[96];
    exit_line(p, ex, sizeof ex);
    fputs("# miser profile: `", f);
    md_text(f, p->label);
    fprintf(f, "`\n\nPeaks: %s. Sampler: ", p->peak_method);
    if (p->sample_interval_ms > 0) fprintf(f, "%g ms (%zu samples). ", p->sample_interval_ms, p->nsamples);
    else fputs("off. ", f);
    fprintf(f, "Command %s. MB = MiB.\n\n## Study metrics\n\n", ex);
    mrow r[16];
    size_t n = study_rows(&m, r);
    for (size_t i = 0; i < n; i++) fprintf(f, "| %s ", r[i].name);
    fputs("|\n", f);
    for (size_t i = 0; i < n; i++) fputs("|---:", f);
    fputs("|\n", f);
    for (size_t i = 0; i < n; i++) {
        char b[32];
        fmt_num(b, sizeof b, r[i].v, r[i].fmt);
        fprintf(f, "| %s ", b);
    }
    fputs("|\n\n## Corrected figures\n\n| metric | value | meaning |\n|---|---:|---|\n", f);
    n = corrected_rows(&m, r);
    for (size_t i = 0; i < n; i++) {
        char b[32];
        fmt_num(b, sizeof b, r[i].v, r[i].fmt);
        fprintf(f, "| %s | %s | %s |\n", r[i].name, b, r[i].note);
    }
    fprintf(f, "\nThe whole-run peak is %s.\n", kind_phrase(m.peak_kind));
    fputs("\n## Stages\n\nRSS is miser's snapshot at the mark. *mark* says where the mark came from: `api` and "
          "`pipe-ack` (marker pipe with ack=1) are measured where the program is; `stdout` ([STAGE] lines) and `pipe` "
          "are measured when miser reads the line, after the program has moved on. *printed MB* is the figure on the "
          "program's own [STAGE] line and *delay s* how much later miser read, at least (since the sampler last saw "
          "the printed figure). *peak is*: exact "
          "(one process), upper-bound (sum of per-process peaks), lower-bound (a process's peak was lost to its "
          "parent's wait()), sampled.\n\n"
          "| stage | t s | RSS MB | anon MB | file MB | swap MB | peak MB | peak is | sampled peak MB | mark | printed MB "
          "| delay s | description |\n|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---|\n",
          f);
    for (size_t i = 0; i < p->nstages; i++) {
        const miser_stage_record *s = &p->stages[i];
        char c[6][24], rep_mb[24], delay[24];
        stage_cells(s, c);
        fmt_num(rep_mb, sizeof rep_mb, mb(s->reported_rss_kb), "%.2f");
        fmt_num(delay, sizeof delay, s->report_delay_s, "%.3f");
        fprintf(f, "| %s | %.3f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | ", s->name, s->t_s, c[0], c[1], c[2],
                c[3], c[4], miser_peak_kind_name(s->peak_kind), c[5], miser_mark_source_name(s->source), rep_mb, delay);
        md_text(f, s->description);
        fputs(" |\n", f);
    }
    attrib_write_md(p, f); /* --attribute: top consumers per stage peak (attrib_report.c) */
    if (p->nwarnings) fputs("\n## Warnings\n\n", f);
    for (size_t i = 0; i < p->nwarnings; i++) {
        fputs("- ", f);
        md_text(f, p->warnings[i]);
        fputc('\n', f);
    }
}

/* ---------- SVG ---------- */

/* The timeline (chart.c draws it, as it does each runtime's panel in the
 * bench reports) under a header naming the command and how peaks were taken. */
static miser_status write_svg(const miser_profile *p, FILE *f)
{
    const double W = 960, HEAD = 44;
    miser_chart_timeline_opts o = {.x = 0, .y = HEAD, .width = W, .plot_height = 300, .series_key = 1};
    double h;
    miser_status st = miser_chart_timeline(NULL, p, &o, &h);
    if (st) return st;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"miser-timeline\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"11\">\n",
            W, HEAD + h, W, HEAD + h);
    fputs("<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n<text x=\"10\" y=\"18\" font-size=\"14\" "
          "font-weight=\"bold\">",
          f);
    miser_chart_xml_text_fit(f, p->label, 14, W - 20);
    fputs("</text>\n<text x=\"10\" y=\"34\" fill=\"#555\">peaks: ", f);
    miser_chart_xml_text(f, p->peak_method);
    fputs("; sampler: ", f);
    if (p->sample_interval_ms > 0) fprintf(f, "%g ms (%zu samples)", p->sample_interval_ms, p->nsamples);
    else fputs("off (lines join the marks' readings)", f);
    fputs("; lines hold each reading until the next</text>\n", f);
    st = miser_chart_timeline(f, p, &o, NULL);
    fputs("</svg>\n", f);
    return st;
}


/* ---------- HTML ---------- */

/* MB with 3 significant digits (a small figure never reads 0.00); "-" when unknown. */
static void html_mb(FILE *f, int64_t kb)
{
    char b[48];
    if (kb < 0) fputs("<td>-</td>", f);
    else miser_chart_fmt_sig(b, sizeof b, (double)kb / 1024.0, 3), fprintf(f, "<td>%s</td>", b);
}

/* A standalone page (Profiler.save('x.html'), `miser profile --html`): the
 * stage table with each peak's kind, each mark's source, the command's own
 * [STAGE] figure beside miser's reading and how late miser read; the SVG
 * timeline; with --attribute the icicle per stage peak and the top
 * consumers. Text goes through the chart's XML escaper (well-formed whatever
 * the bytes). */
static miser_status write_html(const miser_profile *p, FILE *f)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>miser profile</title>\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
          "<style>body{font-family:sans-serif;margin:2em auto;padding:0 1em;max-width:1200px}"
          "table{border-collapse:collapse}.scroll{max-width:100%;overflow-x:auto}"
          "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child,td.l,"
          "th{text-align:left}td.l{overflow-wrap:anywhere}svg{display:block;max-width:100%;height:auto}"
          "</style></head><body>\n<h1>miser profile</h1>\n<p>",
          f);
    miser_chart_xml_text(f, p->label);
    fputs(" &middot; peaks: ", f);
    miser_chart_xml_text(f, p->peak_method);
    fputs(" &middot; sampler: ", f);
    if (p->sample_interval_ms > 0) fprintf(f, "%g ms (%zu samples)", p->sample_interval_ms, p->nsamples);
    else fputs("off", f);
    char ex[96];
    exit_line(p, ex, sizeof ex);
    fputs(" &middot; ", f);
    miser_chart_xml_text(f, ex);
    fputs("</p>\n<h2>Stages</h2>\n<p><em>peak is</em>: exact (one process's high-water mark), upper-bound (a tree's "
          "sum of per-process peaks), lower-bound (a process's peak was lost to its parent's wait()), sampled (no "
          "reset). <em>mark</em>: api and pipe-ack measure the program where it is; stdout ([STAGE] lines) and pipe "
          "are read after it has moved on. <em>printed</em> is the figure on the program's own [STAGE] line, "
          "<em>delay</em> how much later miser read (at least). MB = MiB.</p>\n"
          "<div class=\"scroll\"><table><tr><th>stage</th><th>description</th><th>t</th><th>RSS (MB)</th>"
          "<th>anon (MB)</th><th>file (MB)</th><th>swap (MB)</th><th>peak (MB)</th><th>peak is</th>"
          "<th>sampled peak (MB)</th><th>mark</th><th>printed (MB)</th><th>delay</th></tr>\n",
          f);
    for (size_t i = 0; i < p->nstages; i++) {
        const miser_stage_record *s = &p->stages[i];
        fputs("<tr class=\"stage\"><td class=\"l\">", f);
        miser_chart_xml_text(f, s->name);
        fputs("</td><td class=\"l\">", f);
        miser_chart_xml_text(f, s->description);
        char t[48];
        miser_chart_fmt_seconds(t, sizeof t, s->t_s);
        fprintf(f, "</td><td>%s</td>", t);
        html_mb(f, s->rss_kb);
        html_mb(f, s->anon_kb);
        html_mb(f, s->file_kb);
        html_mb(f, s->swap_kb);
        html_mb(f, s->peak_rss_kb);
        fprintf(f, "<td class=\"l peak-kind\">%s</td>", miser_peak_kind_name(s->peak_kind));
        html_mb(f, s->peak_sampled_kb);
        fprintf(f, "<td class=\"l source\">%s</td>", miser_mark_source_name(s->source));
        html_mb(f, s->reported_rss_kb);
        if (s->reported_rss_kb >= 0 && !isnan(s->report_delay_s)) {
            miser_chart_fmt_seconds(t, sizeof t, s->report_delay_s);
            fprintf(f, "<td>%s</td>", t);
        } else
            fputs("<td>-</td>", f);
        fputs("</tr>\n", f);
    }
    fputs("</table></div>\n", f);
    if (p->nsamples || p->nstages) {
        fputs("<h2>Timeline</h2>\n", f);
        miser_status st = write_svg(p, f);
        if (st) return st;
    }
    if (p->attribution) {
        attrib_write_html(p, f);     /* icicle per stage peak (attrib_report.c) */
        attrib_write_html_top(p, f); /* top consumers table */
    }
    if (p->nwarnings) fputs("<h2>Warnings</h2>\n", f);
    for (size_t i = 0; i < p->nwarnings; i++) {
        fputs("<p class=\"warning\">", f);
        miser_chart_xml_text(f, p->warnings[i]);
        fputs("</p>\n", f);
    }
    fputs("</body></html>\n", f);
    return MISER_OK;
}

miser_status miser_profile_write(const miser_profile *p, miser_report_format fmt, FILE *f)
{
    if (!p || !f) return miser_error_set(MISER_ERR_INVALID, "report: NULL argument");
    clearerr(f);
    switch (fmt) {
    case MISER_REPORT_TABLE: write_table(p, f); break;
    case MISER_REPORT_JSON: write_json(p, f); break;
    case MISER_REPORT_CSV: write_csv(p, f); break;
    case MISER_REPORT_MARKDOWN: write_md(p, f); break;
    case MISER_REPORT_SVG: {
        miser_status st = write_svg(p, f);
        if (st) return st;
        break;
    }
    case MISER_REPORT_HTML: {
        miser_status st = write_html(p, f);
        if (st) return st;
        break;
    }
    default: return miser_error_set(MISER_ERR_INVALID, "report: unknown format %d", (int)fmt);
    }
    if (fflush(f) || ferror(f)) return miser_error_set(MISER_ERR_IO, "report: write failed: %s", strerror(errno));
    return MISER_OK;
}

typedef struct {
    const miser_profile *p;
    miser_report_format fmt;
} profile_write_ctx;

static miser_status profile_write_cb(void *f, void *ctx)
{
    const profile_write_ctx *c = ctx;
    return miser_profile_write(c->p, c->fmt, f);
}

miser_status miser_profile_write_file(const miser_profile *p, miser_report_format fmt, const char *path)
{
    if (!p || !path || !*path) return miser_error_set(MISER_ERR_INVALID, "report: no path");
    profile_write_ctx c = {p, fmt};
    return miser_file_write_atomic(path, profile_write_cb, &c);
}
