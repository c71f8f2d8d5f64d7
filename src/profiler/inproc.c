/* In-process profiler: stage marks with exact per-interval peaks (the
 * kernel's VmHWM, reset through /proc/self/clear_refs at each mark), the
 * allocator's counters, and an optional sampler thread for a timeline. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct miser_profiler {
    miser_profile *prof;
    miser_profiler_options opts;
    double t0, cpu0;
    uint64_t minflt0, majflt0;
    int status_fd;
    int hwm_ok;
    int64_t prev_rss, prev_swap;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thr;
    int thread_running, stop;
    int64_t int_max_rss, int_max_swap; /* sampled maxima since the last mark (under mu) */
};

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static miser_status read_self(miser_profiler *p, miser_proc_status *st)
{
    char buf[4096];
    if (proc_pread(p->status_fd, buf, sizeof buf) < 0)
        return miser_error_set(MISER_ERR_IO, "profiler: cannot read /proc/self/status: %s", strerror(errno));
    return miser_proc_parse_status(buf, st);
}

static void *sampler_main(void *arg)
{
    miser_profiler *p = arg;
    double iv = p->opts.sample_interval_ms * 1e-3;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        long ns = (long)(iv * 1e9);
        next.tv_sec += ns / 1000000000L;
        next.tv_nsec += ns % 1000000000L;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000L;
        }
        /* A condition variable with a monotonic clock, so stop wakes us at once. */
        int rc = 0;
        while (!p->stop && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&p->cv, &p->mu, &next);
        if (p->stop) break;
        pthread_mutex_unlock(&p->mu);
        miser_proc_status st;
        int ok = read_self(p, &st) == MISER_OK;
        double t = prof_now() - p->t0;
        int64_t gpu = p->opts.gpu ? nvml_used_kb_for_pids((pid_t[]){getpid()}, 1) : -1;
        pthread_mutex_lock(&p->mu);
        if (ok) {
            miser_sample s = {t, st.rss_kb, st.anon_kb, st.file_kb, st.swap_kb, gpu};
            prof_add_sample(p->prof, &s);
            if (st.rss_kb > p->int_max_rss) p->int_max_rss = st.rss_kb;
            if (st.swap_kb > p->int_max_swap) p->int_max_swap = st.swap_kb;
        }
        /* After a long stall, do not try to catch up with a burst of samples. */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec + 1) next = now;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static miser_status mark(miser_profiler *p, const char *name, const char *desc, const char *data, int implicit)
{
    miser_proc_status st;
    miser_status rc = read_self(p, &st);
    if (rc) return rc;
    double t = prof_now() - p->t0, cpu = cpu_seconds() - p->cpu0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    miser_mem_stats al[MISER_MEM_COUNT];
    for (int c = 0; c < MISER_MEM_COUNT; c++) al[c] = miser_mem_get((miser_mem_category)c);
    miser_mem_stats tot = miser_mem_total();
    int64_t pss = -1;
    if (p->opts.pss) {
        char buf[4096];
        miser_proc_pss ps;
        if (proc_read_file("/proc/self/smaps_rollup", buf, sizeof buf) >= 0 &&
            miser_proc_parse_smaps_rollup(buf, &ps) == MISER_OK)
            pss = ps.pss_kb;
    }
    int64_t gpu = p->opts.gpu ? nvml_used_kb_for_pids((pid_t[]){getpid()}, 1) : -1;

    pthread_mutex_lock(&p->mu);
    int64_t smax = p->thread_running ? p->int_max_rss : -1;
    int64_t swmax = p->int_max_swap;
    p->int_max_rss = st.rss_kb;
    p->int_max_swap = st.swap_kb;
    miser_stage_record *s = prof_add_stage(p->prof, name, desc);
    if (!s) {
        pthread_mutex_unlock(&p->mu);
        return miser_error_set(MISER_ERR_NOMEM, "profiler: out of memory recording stage '%s'", name);
    }
    s->implicit = implicit;
    s->t_s = t;
    s->cpu_s = cpu;
    s->rss_kb = st.rss_kb;
    s->anon_kb = st.anon_kb;
    s->file_kb = st.file_kb;
    s->shmem_kb = st.shmem_kb;
    s->swap_kb = st.swap_kb;
    s->pss_kb = pss;
    s->nprocs = 1;
    s->gpu_kb = gpu;
    s->minflt = (uint64_t)ru.ru_minflt - p->minflt0;
    s->majflt = (uint64_t)ru.ru_majflt - p->majflt0;
    if (smax >= 0 && st.rss_kb > smax) smax = st.rss_kb;
    s->peak_sampled_kb = smax;
    int64_t sw = swmax > st.swap_kb ? swmax : st.swap_kb;
    s->peak_swap_kb = sw > p->prev_swap ? sw : p->prev_swap;
    s->interval_procs = 1;
    s->source = implicit ? MISER_MARK_END : MISER_MARK_API;
    if (p->hwm_ok && st.hwm_kb >= 0) {
        /* The kernel's hiwater_rss is kept from approximate per-CPU counters
         * while VmRSS is their exact sum, so a sample can read a few pages
         * above VmHWM: the peak is the larger of the two, never below a sample. */
        int64_t pk = st.hwm_kb > st.rss_kb ? st.hwm_kb : st.rss_kb;
        if (smax > pk) pk = smax;
        s->peak_rss_kb = pk;
        s->peak_exact = 1;
        s->peak_kind = MISER_PEAK_EXACT;
    } else {
        s->peak_kind = MISER_PEAK_SAMPLED;
        int64_t pk = st.rss_kb > p->prev_rss ? st.rss_kb : p->prev_rss;
        if (smax > pk) pk = smax;
        s->peak_rss_kb = pk;
    }
    s->has_alloc = 1;
    memcpy(s->alloc, al, sizeof al);
    s->alloc_total = tot;
    miser_status kvrc = MISER_OK;
    if (data && *data) {
        size_t len = strlen(data);
        char *line = miser_malloc(MISER_MEM_PROFILER, len + 16), *scratch = miser_malloc(MISER_MEM_PROFILER, len + 16);
        miser_kv kv[32];
        size_t nkv = 0;
        const char *nm, *ds;
        if (!line || !scratch) kvrc = miser_error_set(MISER_ERR_NOMEM, "profiler: out of memory");
        else {
            memcpy(line, "stage x ", 8);
            memcpy(line + 8, data, len + 1);
            kvrc = miser_marker_parse(line, scratch, &nm, &ds, kv, 32, &nkv);
            for (size_t i = 0; kvrc == MISER_OK && i < nkv; i++)
                kvrc = prof_stage_set_kv(s, kv[i].key, kv[i].value);
        }
        miser_free(line);
        miser_free(scratch);
    }
    p->prev_rss = st.rss_kb;
    p->prev_swap = st.swap_kb;
    pthread_mutex_unlock(&p->mu);

    /* Reset last, so the next interval starts from here. */
    if (p->hwm_ok) {
        int err = proc_reset_hwm(0);
        if (err) {
            p->hwm_ok = 0;
            pthread_mutex_lock(&p->mu);
            prof_warn(p->prof, "clear_refs refused (%s): peaks after stage '%s' are sampled, not exact",
                      strerror(err), name);
            snprintf(p->prof->peak_method, sizeof p->prof->peak_method, "%s",
                     p->thread_running ? "sampled" : "marks-only");
            pthread_mutex_unlock(&p->mu);
        }
    }
    miser_mem_reset_peaks();
    return kvrc;
}

miser_status miser_profiler_start(const miser_profiler_options *opts, miser_profiler **out)
{
    if (!out) return miser_error_set(MISER_ERR_INVALID, "profiler: NULL out");
    *out = NULL;
    miser_profiler *p = miser_calloc(MISER_MEM_PROFILER, 1, sizeof *p);
    if (!p) return miser_error_set(MISER_ERR_NOMEM, "profiler: out of memory");
    if (opts) p->opts = *opts;
    if (p->opts.sample_interval_ms < 0) p->opts.sample_interval_ms = 0;
    p->status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (p->status_fd < 0) {
        miser_free(p);
        return miser_error_set(MISER_ERR_IO, "profiler: cannot open /proc/self/status: %s", strerror(errno));
    }
    p->prof = prof_new("in-process", "in-process");
    if (!p->prof) {
        close(p->status_fd);
        miser_free(p);
        return miser_error_set(MISER_ERR_NOMEM, "profiler: out of memory");
    }
    if (p->opts.max_samples) p->prof->max_samples = p->opts.max_samples;
    p->prof->sample_interval_ms = p->opts.sample_interval_ms;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);

    p->hwm_ok = !p->opts.no_hwm_reset;
    if (p->opts.no_hwm_reset) prof_warn(p->prof, "high-water-mark reset disabled: peaks are sampled, not exact");
    else {
        int err = proc_reset_hwm(0);
        if (err) {
            p->hwm_ok = 0;
            prof_warn(p->prof, "clear_refs refused (%s): peaks are sampled, not exact", strerror(err));
        }
    }
    if (!p->hwm_ok)
        snprintf(p->prof->peak_method, sizeof p->prof->peak_method, "%s",
                 p->opts.sample_interval_ms > 0 ? "sampled" : "marks-only");
    miser_mem_reset_peaks();
    miser_proc_status st;
    miser_status rc = read_self(p, &st);
    if (rc) {
        miser_profiler_free(p);
        return rc;
    }
    p->prev_rss = p->int_max_rss = st.rss_kb;
    p->prev_swap = p->int_max_swap = st.swap_kb;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    p->minflt0 = (uint64_t)ru.ru_minflt;
    p->majflt0 = (uint64_t)ru.ru_majflt;
    p->t0 = prof_now();
    p->cpu0 = cpu_seconds();
    if (p->opts.sample_interval_ms > 0) {
        if (pthread_create(&p->thr, NULL, sampler_main, p)) {
            miser_profiler_free(p);
            return miser_error_set(MISER_ERR_INTERNAL, "profiler: cannot start the sampler thread");
        }
        p->thread_running = 1;
    }
    *out = p;
    return MISER_OK;
}

miser_status miser_profiler_stage(miser_profiler *p, const char *name, const char *desc)
{
    return miser_profiler_stage_data(p, name, desc, NULL);
}

miser_status miser_profiler_stage_data(miser_profiler *p, const char *name, const char *desc, const char *data)
{
    if (!p) return miser_error_set(MISER_ERR_INVALID, "profiler: NULL profiler");
    if (!prof_valid_stage_name(name))
        return miser_error_set(MISER_ERR_INVALID, "profiler: bad stage name '%.80s' (1-63 of A-Z a-z 0-9 _ . : -)",
                               name ? name : "(null)");
    return mark(p, name, desc, data, 0);
}

static void stop_thread(miser_profiler *p)
{
    if (!p->thread_running) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thr, NULL);
    p->thread_running = 0;
}

miser_status miser_profiler_stop(miser_profiler *p, miser_profile **out)
{
    if (out) *out = NULL;
    if (!p) return miser_error_set(MISER_ERR_INVALID, "profiler: NULL profiler");
    miser_status rc = mark(p, "end", "profile stopped", NULL, 1);
    stop_thread(p);
    if (rc == MISER_OK && out) {
        *out = p->prof;
        p->prof = NULL;
    }
    miser_profiler_free(p);
    return rc;
}

void miser_profiler_free(miser_profiler *p)
{
    if (!p) return;
    stop_thread(p);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    if (p->status_fd >= 0) close(p->status_fd);
    miser_profile_free(p->prof);
    miser_free(p);
}
