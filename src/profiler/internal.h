/* Internals shared by the profiler's files: the profile structure itself,
 * growable arrays, /proc readers and the NVML shim. Not installed. */
#ifndef MISER_PROFILER_INTERNAL_H
#define MISER_PROFILER_INTERNAL_H

#include "miser/profiler.h"

#include <stddef.h>
#include <sys/types.h>

struct miser_profile {
    char mode[16];          /* "in-process" | "command" */
    char *label;            /* command line or "in-process" */
    char peak_method[16];   /* "hwm-reset" | "sampled" | "marks-only" */
    double sample_interval_ms;
    double started_unix;    /* wall clock at start (seconds since the epoch) */
    char kernel[160];
    miser_stage_record *stages;
    size_t nstages, cap_stages;
    miser_sample *samples;
    size_t nsamples, cap_samples, max_samples;
    size_t dropped_samples;
    char **warnings;
    size_t nwarnings, cap_warnings;
    miser_profile_exit exit;
    struct miser_attribution *attribution; /* owned; NULL unless --attribute ran (attrib.h) */
};

miser_profile *prof_new(const char *mode, const char *label);
/* Append a zeroed record (numbers -1); returns NULL on NOMEM. */
miser_stage_record *prof_add_stage(miser_profile *p, const char *name, const char *desc);
miser_status prof_stage_set_kv(miser_stage_record *s, const char *key, const char *value);
/* Remove (and free) the newest stage record. */
void prof_drop_last_stage(miser_profile *p);
miser_status prof_add_sample(miser_profile *p, const miser_sample *s);
/* Records a warning (printf-style); a failed allocation drops it silently. */
void prof_warn(miser_profile *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int prof_valid_stage_name(const char *name);

/* Read a whole small /proc file into buf (NUL-terminated). Returns bytes or -1. */
ssize_t proc_read_file(const char *path, char *buf, size_t cap);
/* Read the same from an open descriptor with pread at offset 0. */
ssize_t proc_pread(int fd, char *buf, size_t cap);
/* Write "5" to /proc/PID/clear_refs (pid 0 = self). Returns 0 or errno. */
int proc_reset_hwm(pid_t pid);

/* Monotonic seconds. */
double prof_now(void);
double prof_unix_now(void);

/* NVML loaded with dlopen on first use. gpu_kb_for_pids sums the used GPU
 * memory of the listed processes over all devices; -1 when NVML is absent. */
int nvml_available(void);
int64_t nvml_used_kb_for_pids(const pid_t *pids, size_t n);

#endif
