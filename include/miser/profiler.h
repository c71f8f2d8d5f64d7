/* miser's lifecycle memory profiler.
 *
 * Two ways in, one report:
 *  - in-process: miser_profiler_start / miser_profiler_stage / miser_profiler_stop
 *    around code in this process (used by `miser bench`);
 *  - out-of-process: miser_profile_command runs any program and watches it and
 *    all its descendants (used by `miser profile -- CMD`).
 * Both produce a miser_profile: a list of stage records (a snapshot at each
 * mark plus the exact peak of the interval that the mark closes), an optional
 * sampled timeline, and the child's exit status. Writers turn a profile into a
 * terminal table, JSON (schema "miser-profile", version 1, docs/profiler.md),
 * CSV, Markdown or an SVG timeline; miser_profile_load_json reads the JSON
 * back, and miser_profile_metrics computes the study's figures and the
 * corrected ones from any profile, so several profiles can be compared.
 *
 * Units: memory in KiB (the kernel's unit) in records, MiB ("MB", as the study
 * printed psutil bytes / 1024 / 1024) in metrics; times in seconds. A value
 * that could not be measured is -1 (integers) or NAN (metrics). */
#ifndef MISER_PROFILER_H
#define MISER_PROFILER_H

#include <stdint.h>
#include <stdio.h>

#include "miser/alloc.h"
#include "miser/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MISER_PROFILE_SCHEMA "miser-profile"
#define MISER_PROFILE_SCHEMA_VERSION 1
#define MISER_STAGE_NAME_MAX 64
/* Environment variable that tells a child which descriptor takes markers. */
#define MISER_MARKER_ENV "MISER_MARKER_FD"
/* Descriptor on which the watcher writes one byte per marker that carried
 * ack=1, after its snapshot: helpers wait for it so marks are synchronous. */
#define MISER_MARKER_ACK_ENV "MISER_MARKER_ACK_FD"

/* ---- /proc parsing (exposed for tests and for tools that read /proc) ---- */

/* Fields of /proc/PID/status; -1 where the kernel does not report a field
 * (RssAnon/RssFile/RssShmem appeared in 4.5, VmSwap in 2.6.34). */
typedef struct miser_proc_status {
    int64_t rss_kb, hwm_kb, anon_kb, file_kb, shmem_kb, swap_kb;
    int ppid;
} miser_proc_status;

/* Parse the text of a status file. Returns MISER_ERR_FORMAT when VmRSS is
 * absent (a kernel thread or a zombie has no memory fields). */
miser_status miser_proc_parse_status(const char *text, miser_proc_status *out);
/* Read and parse /proc/PID/status (pid <= 0: this process). */
miser_status miser_proc_read_status(int pid, miser_proc_status *out);

/* Fields of /proc/PID/stat (times in clock ticks). The command name may hold
 * spaces and parentheses; parsing starts after its last ')'. */
typedef struct miser_proc_stat {
    int pid, ppid;
    char state;
    uint64_t minflt, cminflt, majflt, cmajflt;
    uint64_t utime, stime, cutime, cstime;
} miser_proc_stat;
miser_status miser_proc_parse_stat(const char *text, miser_proc_stat *out);

/* Pss from /proc/PID/smaps_rollup (KiB); Pss_Anon/Pss_File are -1 on
 * kernels that only give Pss. */
typedef struct miser_proc_pss {
    int64_t pss_kb, pss_anon_kb, pss_file_kb;
} miser_proc_pss;
miser_status miser_proc_parse_smaps_rollup(const char *text, miser_proc_pss *out);

/* ---- stage records ---- */

typedef struct miser_kv {
    char *key;    /* owned by the profile */
    char *value;  /* owned by the profile; always a string, numbers as text */
} miser_kv;

/* What an interval's peak_rss_kb is (docs/profiler.md, "Exact peaks").
 * Whatever the kind, the figure is never below a sample or a mark snapshot
 * of the same interval. */
typedef enum miser_peak_kind {
    MISER_PEAK_UNKNOWN = 0, /* nothing was measured (no process, no sample) */
    MISER_PEAK_EXACT,       /* one process: its high-water mark (or ru_maxrss when it was reaped) */
    MISER_PEAK_UPPER_BOUND, /* a tree: the sum of every process's own peak; the processes may have
                             * peaked at different moments, so the tree's peak is at most this */
    MISER_PEAK_LOWER_BOUND, /* a tree in which a process was reaped by its parent, not by the
                             * profiler: its peak never reached miser; the figure is the largest
                             * reading (sample, snapshot or one process's own peak) and the real
                             * peak is at least this */
    MISER_PEAK_SAMPLED      /* no high-water-mark reset: the largest sample or snapshot (a lower bound) */
} miser_peak_kind;
/* "unknown", "exact", "upper-bound", "lower-bound", "sampled" (static). */
const char *miser_peak_kind_name(miser_peak_kind k);
/* Inverse of miser_peak_kind_name; 0 on success. */
int miser_peak_kind_parse(const char *s, miser_peak_kind *out);

/* Where a mark came from. Only MISER_MARK_API, MISER_MARK_PIPE_ACK, MISER_MARK_TIME and
 * MISER_MARK_END are taken where the program is: a plain pipe marker and a [STAGE]
 * line on stdout are measured when miser reads them, after the program has moved on. */
typedef enum miser_mark_source {
    MISER_MARK_UNKNOWN = 0, /* a profile from an older miser */
    MISER_MARK_API,         /* miser_profiler_stage in process (synchronous) */
    MISER_MARK_PIPE,        /* a marker-pipe line without ack=1 (asynchronous) */
    MISER_MARK_PIPE_ACK,    /* a marker-pipe line with ack=1 (synchronous: the program waited) */
    MISER_MARK_STDOUT,      /* a "[STAGE] ..." line on the command's stdout (asynchronous) */
    MISER_MARK_TIME,        /* --mark SECONDS:NAME */
    MISER_MARK_END          /* the implicit record at stop / exit */
} miser_mark_source;
/* "unknown", "api", "pipe", "pipe-ack", "stdout", "time", "end" (static). */
const char *miser_mark_source_name(miser_mark_source s);
int miser_mark_source_parse(const char *s, miser_mark_source *out);

typedef struct miser_stage_record {
    char name[MISER_STAGE_NAME_MAX];
    char *description;   /* owned by the profile; "" when none */
    int implicit;        /* 1 for the record that stop/exit adds to close the last interval */
    double t_s;          /* wall seconds since the profile started */
    double cpu_s;        /* user+system CPU seconds used since start (tree total) */
    /* Snapshot at the mark (sum over the process tree out of process). */
    int64_t rss_kb, anon_kb, file_kb, shmem_kb, swap_kb;
    int64_t pss_kb;      /* -1 unless PSS was asked for */
    /* The interval (previous mark, this mark]. */
    int64_t peak_rss_kb;     /* the interval's peak; what it is says peak_kind */
    int peak_exact;          /* 1 when peak_kind is MISER_PEAK_EXACT */
    miser_peak_kind peak_kind;
    int interval_procs;      /* processes that lived in the interval (1 in process) */
    int64_t peak_sampled_kb; /* max sampled total RSS in the interval; -1 without a sampler */
    int64_t peak_swap_kb;    /* max of swap seen (samples and the two marks) */
    uint64_t minflt, majflt; /* page faults since start */
    int nprocs;              /* processes measured at the mark */
    int64_t gpu_kb;          /* GPU memory of the process(es) via NVML; -1 unavailable */
    /* miser's allocator (in-process only; has_alloc 0 otherwise). peak is the
     * peak within the interval (peaks are reset at each mark). */
    int has_alloc;
    miser_mem_stats alloc[MISER_MEM_COUNT];
    miser_mem_stats alloc_total;
    /* key=value data passed with the marker (see docs/profiler.md). */
    size_t nkv;
    miser_kv *kv;
    /* Where the mark came from. For a [STAGE] line the figures the command
     * printed (its own reading, taken when it printed the line) are kept
     * beside miser's snapshot above (taken when miser read the line). */
    miser_mark_source source;
    int64_t reported_rss_kb, reported_swap_kb; /* -1 unless the command printed them */
    double report_delay_s; /* how late miser's reading is, at least: seconds since the sampler
                            * last saw the printed figure (within 1% or 512 KiB; 0 when the
                            * snapshot itself matches); NAN when no sample matched */
} miser_stage_record;

/* One timeline sample. */
typedef struct miser_sample {
    double t_s;
    int64_t rss_kb, anon_kb, file_kb, swap_kb, gpu_kb;
} miser_sample;

typedef struct miser_profile miser_profile;

/* Free a profile and everything it owns. NULL is a no-op. */
void miser_profile_free(miser_profile *p);

size_t miser_profile_stage_count(const miser_profile *p);
/* Borrowed pointer valid until the profile is freed; NULL when i is out of range. */
const miser_stage_record *miser_profile_stage(const miser_profile *p, size_t i);
/* First stage with that name, or NULL. */
const miser_stage_record *miser_profile_find_stage(const miser_profile *p, const char *name);
/* Value of key in a stage's data, or NULL. */
const char *miser_stage_get(const miser_stage_record *s, const char *key);
size_t miser_profile_sample_count(const miser_profile *p);
const miser_sample *miser_profile_samples(const miser_profile *p);
size_t miser_profile_warning_count(const miser_profile *p);
const char *miser_profile_warning(const miser_profile *p, size_t i);
/* "in-process" or "command". */
const char *miser_profile_mode(const miser_profile *p);
/* A short label for the run (the command line, or "in-process"). Never NULL. */
const char *miser_profile_label(const miser_profile *p);
/* "hwm-reset" (exact peaks), "sampled" or "marks-only". */
const char *miser_profile_peak_method(const miser_profile *p);
double miser_profile_sample_interval_ms(const miser_profile *p); /* 0 without a sampler */

/* Exit of the watched command: exited 1 and code, or signaled 1 and the
 * signal number. Both 0 in process. */
typedef struct miser_profile_exit {
    int exited, code, signaled, signal;
} miser_profile_exit;
miser_profile_exit miser_profile_exit_status(const miser_profile *p);

/* ---- in-process API ---- */

typedef struct miser_profiler_options {
    double sample_interval_ms; /* > 0 starts a sampler thread (timeline + sampled peaks) */
    int pss;                   /* read smaps_rollup at each mark (costly on big processes) */
    int gpu;                   /* ask NVML for this process's GPU memory when present */
    int no_hwm_reset;          /* behave as if clear_refs were refused (tests, comparisons) */
    size_t max_samples;        /* timeline cap; 0 means 1,000,000 (older samples are kept) */
} miser_profiler_options;

typedef struct miser_profiler miser_profiler;

/* Start profiling this process: resets the kernel high-water mark and the
 * allocator peaks. opts may be NULL (no sampler). *out is owned by the caller
 * and released by miser_profiler_stop or miser_profiler_free. Errors: NOMEM,
 * IO when /proc/self/status cannot be read, INTERNAL when the thread fails. */
miser_status miser_profiler_start(const miser_profiler_options *opts, miser_profiler **out);

/* Mark a stage: record the snapshot and the exact peak since the previous
 * mark, then reset the peaks. name: 1..63 chars of [A-Za-z0-9_.:-];
 * desc may be NULL. data may be NULL or marker-style key=value pairs
 * ("tokens=9 text=\"a b\""), kept with the record. Errors: INVALID, FORMAT
 * (bad data), NOMEM, IO. */
miser_status miser_profiler_stage(miser_profiler *p, const char *name, const char *desc);
miser_status miser_profiler_stage_data(miser_profiler *p, const char *name, const char *desc,
                                       const char *data);

/* Stop: adds the implicit closing record, stops the sampler and hands the
 * profile to *out (caller frees it with miser_profile_free). The profiler is
 * freed whatever happens. */
miser_status miser_profiler_stop(miser_profiler *p, miser_profile **out);
/* Abandon a profiler without a profile. NULL is a no-op. */
void miser_profiler_free(miser_profiler *p);

/* ---- out-of-process ---- */

typedef struct miser_time_mark {
    double at_s;                     /* seconds after the command starts */
    char name[MISER_STAGE_NAME_MAX];
    const char *description;         /* borrowed for the call */
} miser_time_mark;

typedef struct miser_watch_options {
    double sample_interval_ms; /* 0: no sampler (marks and exact peaks only) */
    int pss, gpu, no_hwm_reset;
    int stdout_markers;        /* 1: pipe the child's stdout, copy it to stdout_fd unchanged
                                * and take "[STAGE] NAME: ..." lines as marks */
    int marker_pipe;           /* 1: pass a marker pipe in MISER_MARKER_FD */
    int stdout_fd;             /* where the child's stdout goes when piped (usually 1) */
    const miser_time_mark *time_marks;
    size_t ntime_marks;
    size_t max_samples;
    /* Called (from the watching thread) for each warning as it happens; may be NULL. */
    void (*on_warning)(const char *msg, void *ctx);
    void *ctx;
    /* Per-stage peak attribution (docs/attribution.md): the interposer
     * library to preload into every process of the tree (NULL: off), and the
     * smallest stack listed (smaller ones are summed as "other"). */
    const char *attribute_lib;
    int64_t attribute_min;
} miser_watch_options;

/* Run argv (argv[0] looked up in PATH) and watch it and its descendants
 * until it exits. The watcher becomes a child subreaper so orphaned
 * grandchildren stay in the tree and are reaped. *out gets the profile even
 * when the command fails or is killed (its exit status is in the profile).
 * SIGINT/SIGQUIT are ignored and SIGTERM/SIGHUP forwarded to the child while
 * it runs, so the profile survives ^C. Errors: INVALID, NOMEM, IO (fork,
 * pipe, exec failure: the exec error is reported as exit code 127). */
miser_status miser_profile_command(const miser_watch_options *opts, char *const argv[],
                                   miser_profile **out);

/* ---- markers ---- */

/* Parse one marker line of the pipe protocol:
 *   stage NAME [key=value | key="quoted \" value"]...
 * (desc=... is the description). On success *name, *desc and the pairs are
 * filled: kv_out receives up to max_kv pairs pointing into `scratch`, which
 * must hold strlen(line)+1 bytes. Returns MISER_ERR_FORMAT with a message on
 * a malformed line. */
miser_status miser_marker_parse(const char *line, char *scratch, const char **name,
                                const char **desc, miser_kv *kv_out, size_t max_kv, size_t *nkv);
/* Recognise the study's stdout line "[STAGE] NAME: 12.34 MB (swap: 0.00 MB) - desc".
 * Returns 1 and fills name (MISER_STAGE_NAME_MAX), desc (desc_cap bytes),
 * the reported MB figures; 0 when the line is not a stage line. */
int miser_marker_parse_stage_line(const char *line, char *name, char *desc, size_t desc_cap,
                                  double *rss_mb, double *swap_mb);

/* ---- metrics ---- */

typedef struct miser_profile_metrics {
    /* The study's columns, computed its way (RSS = anon + file + shmem). */
    double model_loading_mb;   /* rss(1) - rss(0) */
    double compilation_mb;     /* rss(3) - rss(2) */
    double peak_ram_mb;        /* max polled rss - rss(0) */
    double peak_swap_mb;
    double total_growth_mb;    /* rss(5) - rss(0) */
    double first_inference_s;  /* child's seconds= on stage 3, else t(3) - t(2) */
    double second_inference_s; /* child's seconds= on stage 4, else t(4) - t(3) */
    double speedup;
    double throughput_tok_s;   /* words of text= on stage 3 / first_inference_s */
    const char *peak_ram_source; /* "sampled" (the timeline) or "marks" (no sampler); static */
    /* Corrected figures. */
    double peak_rss_mb;          /* absolute whole-run peak: max over exact interval peaks */
    double peak_growth_mb;       /* peak_rss_mb - rss(0) */
    double peak_sampled_mb;      /* max sampled RSS (absolute); NAN without a sampler */
    double model_loading_anon_mb, model_loading_file_mb;
    double compilation_anon_mb, compilation_file_mb;
    double compile_peak_mb;      /* exact peak of the 2->3 interval - rss(2) */
    double total_growth_anon_mb;
    double tokens;               /* tokens= on stage 3 (generated tokens) */
    double ttft_s;               /* ttft_s= on stage 3 */
    double decode_tok_s;         /* (tokens-1)/(first_inference_s-ttft_s), else tokens/second_inference_s */
    double second_decode_tok_s;  /* tokens= on stage 4 / second_inference_s */
    double throughput_tokens_s;  /* tokens / first_inference_s */
    int peaks_exact;             /* every interval peak is exact (MISER_PEAK_EXACT) */
    /* What peak_rss_mb is: EXACT when every interval's is; UPPER_BOUND when each is exact or
     * an upper bound; LOWER_BOUND when each is exact, a lower bound or sampled; UNKNOWN when
     * the intervals mix upper and lower bounds (the figure is then neither). */
    miser_peak_kind peak_kind;
} miser_profile_metrics;

/* Compute metrics; stages are looked up by the study's names (0_INITIAL ...
 * 5_FINAL). Missing stages give NAN. Never fails. */
void miser_profile_metrics_compute(const miser_profile *p, miser_profile_metrics *m);
/* Whitespace-separated words of a text, as the study's throughput counts them
 * (Python's len(text.split())). */
size_t miser_text_word_count(const char *text);

/* ---- reports ---- */

typedef enum miser_report_format {
    MISER_REPORT_TABLE = 0, /* terminal: the study's stage lines, then both tables */
    MISER_REPORT_JSON,
    MISER_REPORT_CSV,
    MISER_REPORT_MARKDOWN,
    MISER_REPORT_SVG,
    MISER_REPORT_HTML /* standalone page: stage table, timeline, attribution icicles */
} miser_report_format;

/* Parse "table", "json", "csv", "md"/"markdown", "svg", "html". Returns 0 on success. */
int miser_report_format_parse(const char *s, miser_report_format *out);
/* Write a report to an open stream. Errors: IO when a write fails. */
miser_status miser_profile_write(const miser_profile *p, miser_report_format fmt, FILE *f);
/* Write to path atomically (temp file in the same directory, fsync, rename):
 * the path holds either its old content or the complete new report. */
miser_status miser_profile_write_file(const miser_profile *p, miser_report_format fmt,
                                      const char *path);
/* Print the study's line for one stage ("[STAGE] NAME: X MB (swap: Y MB) - desc"). */
miser_status miser_profile_write_stage_line(const miser_stage_record *s, FILE *f);

/* Load a profile written with MISER_REPORT_JSON. Errors: IO, FORMAT (with
 * the path and what is wrong), UNSUPPORTED for a newer schema version, NOMEM. */
miser_status miser_profile_load_json(const char *path, miser_profile **out);
miser_status miser_profile_parse_json(const char *text, size_t len, miser_profile **out);

/* ---- per-stage peak attribution (docs/attribution.md) ---- */

/* Parse a size: bytes, or a number with K, M, G (KiB, MiB, GiB; "KB", "MiB"
 * accepted). Returns 0 on success, -1 on anything else or a negative size. */
int miser_attrib_parse_size(const char *s, int64_t *out);
/* Find the interposer libmiser-attrib.so: $MISER_ATTRIB_LIB, then next to
 * the running executable (the build tree), then ../lib/ from it (an
 * installed miser). Errors: UNSUPPORTED with the places looked at. */
miser_status miser_attrib_find_lib(char *path, size_t cap);
/* 1 when the profile carries attribution (`miser profile --attribute`). */
int miser_profile_has_attribution(const miser_profile *p);
/* Write the icicle (flame) graphs of every stage's peak as one standalone
 * SVG (hover: stack, bytes; click: zoom). Errors: INVALID without
 * attribution, IO. miser_profile_write_attribution_svg_file writes atomically. */
miser_status miser_profile_write_attribution_svg(const miser_profile *p, FILE *f);
miser_status miser_profile_write_attribution_svg_file(const miser_profile *p, const char *path);
/* Print the call stacks whose bytes at a stage's peak grew most from
 * baseline to current (at most max lines per stage, stages matched by
 * name); nothing when either profile lacks attribution. Returns the number
 * of stacks printed. */
size_t miser_profile_write_attribution_growth(const miser_profile *baseline, const miser_profile *current,
                                              size_t max, FILE *f);

/* ---- regression check ---- */

typedef struct miser_check_options {
    double mem_tolerance;   /* relative, e.g. 0.10 = 10 % growth allowed */
    double mem_slack_mb;    /* absolute slack added to memory limits (noise floor) */
    double time_tolerance;  /* relative, for seconds (0 or less: times not checked) */
    double time_slack_s;    /* absolute slack added to time limits (the CLI's default: 0.1 s) */
    int any_command;        /* 1: compare profiles of different commands (labels) too */
} miser_check_options;

typedef struct miser_check_item {
    const char *metric;     /* static name */
    double baseline, current, limit;
    int regressed;          /* 1 when current > limit */
    int skipped;            /* 1 when the baseline lacks the figure (nothing to hold it to) */
    int missing;            /* 1 when the baseline has the figure and current does not */
} miser_check_item;

#define MISER_CHECK_MAX_ITEMS 16
typedef struct miser_check_result {
    size_t n;
    miser_check_item items[MISER_CHECK_MAX_ITEMS];
    int regressions;
    /* Why the two profiles cannot be compared ("" when they can): a run that
     * crashed (non-zero exit or a signal), different commands, a figure the
     * baseline has that the current profile lacks. One line, names what is wrong. */
    char problem[256];
} miser_check_result;

/* Compare current against baseline: lower is better for every metric checked
 * (memory figures and, when time_tolerance > 0, inference seconds). A figure
 * regresses when current > baseline + |baseline| * tolerance + slack. When
 * problem is set the verdict is "cannot compare", never "no regression".
 * Never fails. */
void miser_profile_check(const miser_profile *baseline, const miser_profile *current,
                         const miser_check_options *opts, miser_check_result *out);

#ifdef __cplusplus
}
#endif
#endif
