/* The study's benchmark, aggregated: per-runtime rows of profiled runs
 * (miser_profile_metrics per run), medians and spread, derived figures,
 * greedy-token agreement, and the reports of `miser bench` and
 * `miser compare` (terminal table, JSON, Markdown, HTML with inline SVG).
 *
 * The process orchestration (fresh child per run, peer adapters) lives in the
 * CLI; this module only turns measured profiles into figures and reports, so
 * it is testable on profiles loaded from JSON. Units follow profiler.h:
 * MiB ("MB") and seconds; NAN where a figure was not measured. */
#ifndef MISER_BENCH_H
#define MISER_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "miser/core.h"
#include "miser/profiler.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MISER_BENCH_MAX_RUNS 64
#define MISER_BENCH_MAX_IDS 256

/* Median, extremes and coefficient of variation (stddev / mean) of the
 * finite values among v[0..n); every field NAN and n 0 when none is finite. */
typedef struct miser_bench_stat {
    double median, min, max, cv;
    size_t n;
} miser_bench_stat;
miser_bench_stat miser_bench_stat_of(const double *v, size_t n);

/* One metric of a run, by name; see miser_bench_metric_names. Besides the
 * fields of miser_profile_metrics it offers compile_s (stage 2's compile_s=
 * data), setup_mb (rss(2) - rss(1)), mem_per_tok_s (peak_rss_mb /
 * decode_tok_s) and compilation_mb_s (compilation_mb / first_inference_s). */
typedef struct miser_bench_run {
    miser_profile_metrics m;
    double compile_s;
    double setup_mb;
} miser_bench_run;

typedef struct miser_bench_metric {
    const char *name;   /* JSON key */
    const char *label;  /* table header */
    const char *unit;   /* "MB", "s", "tok/s", "x", ... */
    int study;          /* 1: the study's column, 0: corrected or derived */
    int higher_better;  /* for rankings */
} miser_bench_metric;
/* The metrics, in report order; *n receives their count. Static storage. */
const miser_bench_metric *miser_bench_metrics(size_t *n);
/* Value of a named metric for one run (NAN when unknown). */
double miser_bench_run_value(const miser_bench_run *r, const char *name);
/* Fill a run from a profile (metrics + miser's stage data). Never fails. */
void miser_bench_run_from_profile(const miser_profile *p, miser_bench_run *out);

/* One runtime's row. Strings are fixed buffers; `timeline` (owned, may be
 * NULL) is the first run's profile, used for the stage-timeline chart. */
typedef struct miser_bench_row {
    char name[64];          /* "miser", "miser-naive", "pytorch", ... */
    char version[256];      /* what the runtime says it is; "" when unknown */
    int skipped;            /* 1: not run (see note) */
    int failed;             /* 1: a run failed (see note) */
    char note[512];         /* why skipped/failed, with the install hint */
    size_t nruns;
    miser_bench_run runs[MISER_BENCH_MAX_RUNS];
    miser_profile *timeline;
    /* Greedy ids of the first run's two generates (first = "Hello"). */
    int has_ids;
    int32_t ids[2][MISER_BENCH_MAX_IDS];
    size_t nids[2];
    int agree;              /* vs the reference row: 1 same, 0 differ, -1 not checked */
    char agree_note[256];
} miser_bench_row;

typedef struct miser_bench_report {
    char title[128];
    char model[1024];        /* checkpoint directory */
    int synthetic;           /* 1: synthetic weights (labelled wherever shown) */
    char scenario[512];      /* prompts, max_length, pipeline, threads */
    char machine[1024];      /* CPU, cores, memory, kernel */
    const char *published_path; /* data/published-keras-gpt2-medium.json, or NULL */
    size_t nrows;
    miser_bench_row *rows;   /* borrowed */
    int reference;           /* index of the row the tokens are checked against; -1 none */
} miser_bench_report;

/* Compare every row's greedy ids with rows[reference]'s; sets agree and
 * agree_note. Returns how many rows disagree. */
size_t miser_bench_check_agreement(miser_bench_report *r);

/* Describe this machine (CPU model, cores, memory, kernel) into buf. */
void miser_bench_machine(char *buf, size_t cap);

/* Writers. Errors: MISER_ERR_IO when a write fails. The Markdown and HTML
 * reports hold the study's CPU table for the measured rows, the corrected
 * and derived figures (medians, min-max), run-to-run variance, peak memory
 * and time bars, stage timelines overlaid, rankings and recommendations by
 * memory tier (derived from the rows), the token-agreement check, the
 * machine, and the published figures (marked as from another machine) when
 * published_path loads. */
miser_status miser_bench_write_table(const miser_bench_report *r, FILE *f);
miser_status miser_bench_write_json(const miser_bench_report *r, FILE *f);
miser_status miser_bench_write_markdown(const miser_bench_report *r, FILE *f);
miser_status miser_bench_write_html(const miser_bench_report *r, FILE *f);
/* SVG: peak-memory bars, time bars and the overlaid stage timelines. */
miser_status miser_bench_write_svg(const miser_bench_report *r, FILE *f);

/* Read a result file of the peer contract (tools/peers/README.md: "version",
 * "first"/"second" with "ids") into the row's version and ids. Errors: IO,
 * FORMAT (names the file and the missing field). */
miser_status miser_bench_load_result(const char *path, miser_bench_row *row);

typedef miser_status (*miser_bench_writer)(const miser_bench_report *r, FILE *f);
/* Write to path atomically (temp file beside it, fsync, rename). Errors: IO. */
miser_status miser_bench_write_file(const miser_bench_report *r, miser_bench_writer w, const char *path);

#ifdef __cplusplus
}
#endif
#endif
