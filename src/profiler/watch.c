/* Out-of-process profiling: run a command, watch it and every descendant,
 * take stage marks from a marker pipe, from the study's "[STAGE]" stdout
 * lines and from the clock; exact peaks come from each process's VmHWM,
 * reset through /proc/PID/clear_refs at every mark.
 *
 * How an interval's peak is put together (docs/profiler.md, "Exact peaks"):
 *  - every reading of a process (at samples and marks) keeps the largest of
 *    its VmHWM and VmRSS seen in the interval (tproc.hwm_max);
 *  - the watcher is a subreaper, so it reaps the command and every orphan;
 *    a reaped process's peak is the larger of its wait4() ru_maxrss and
 *    hwm_max. On this kernel family ru_maxrss follows the clear_refs reset
 *    of the image that exits (the peak since the last mark), keeps the peak
 *    of an image replaced by exec, and includes the peaks of the children
 *    the process reaped itself (a max, not a sum);
 *  - a process reaped by its own parent gives its peak to that parent only
 *    (as a max, never readable from outside). The watcher sees that it
 *    happened: the parent's cminflt (faults of reaped children) grows. Read
 *    at each mark for live processes and from the zombie (waitid WNOWAIT)
 *    for processes the watcher reaps;
 *  - one process in the interval: its peak is exact; several, every peak
 *    accounted for: their sum is an upper bound of the tree's peak; a peak
 *    lost to a parent: the largest reading is a lower bound. The figure is
 *    never below a sample or snapshot of the interval. */
#include "internal.h"
#include "attrib.h" /* --attribute: per-stage peak attribution (attrib.c) */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    pid_t pid;
    int sfd, statfd;
    int seen;
    int64_t hwm_max;  /* largest VmHWM / VmRSS read in this interval; -1 none */
    uint64_t cmin0;   /* cminflt at the interval's start (0 for a process born in it) */
} tproc;

typedef struct {
    char *buf;
    size_t len, cap;
    int overflow;
} linebuf;

typedef struct {
    const miser_watch_options *o;
    miser_profile *prof;
    pid_t self, child;
    tproc *procs;
    size_t nprocs, capprocs;
    int children_files; /* /proc/PID/task/PID/children exists */
    double t0, last_scan;
    long ticks;
    /* Per-interval state. */
    int64_t int_max_rss, int_max_swap, prev_rss, prev_swap;
    int64_t reaped_peak_kb;    /* sum of the peaks of processes reaped in this interval */
    int64_t max_single_kb;     /* largest single-process reading in this interval */
    int interval_procs;        /* processes that lived in this interval */
    int lost_peak;             /* a tree process reaped a child itself: that peak is unknown */
    int inflated;              /* a reaped process's ru_maxrss may hold older children's peaks */
    int interval_inexact;      /* a reset failed for a process in the tree */
    int warned_reset;
    /* Totals of reaped processes. */
    double dead_cpu_s;
    uint64_t dead_minflt, dead_majflt;
    int child_done, child_status;
    int ack_fd;                /* write end of the acknowledgement pipe, or -1 */
    int so_fd;                 /* read end of the command's stdout pipe while open, or -1 */
    int last_source;           /* MARK_* of the newest stage record */
    linebuf out_lb, mk_lb;
    attrib_watch *attrib;      /* --attribute: the interposer's side of the run, or NULL */
} watch;

/* Where a mark came from. A child may announce a stage both ways (a [STAGE]
 * line on stdout and the marker pipe, as the peer adapters do): the two are
 * one stage, recorded once. */
enum { MARK_OTHER = 0, MARK_PIPE = 1, MARK_STDOUT = 2 };

/* The stdout line's own figures, passed to take_mark. */
typedef struct {
    miser_mark_source source;
    int64_t rss_kb, swap_kb;
} mark_info;

static volatile sig_atomic_t g_fwd_pid;
static void forward_signal(int sig)
{
    if (g_fwd_pid > 0) kill((pid_t)g_fwd_pid, sig);
}

static void warn(watch *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(watch *w, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    prof_warn(w->prof, "%s", buf);
    if (w->o->on_warning) w->o->on_warning(buf, w->o->ctx);
}

static tproc *find_proc(watch *w, pid_t pid)
{
    for (size_t i = 0; i < w->nprocs; i++)
        if (w->procs[i].pid == pid) return &w->procs[i];
    return NULL;
}

static void add_proc(watch *w, pid_t pid)
{
    tproc *t = find_proc(w, pid);
    if (t) {
        t->seen = 1;
        return;
    }
    if (w->nprocs == w->capprocs) {
        size_t nc = w->capprocs ? w->capprocs * 2 : 16;
        tproc *n = miser_realloc(MISER_MEM_PROFILER, w->procs, nc * sizeof *n);
        if (!n) return;
        w->procs = n;
        w->capprocs = nc;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    int sfd = open(path, O_RDONLY | O_CLOEXEC);
    if (sfd < 0) return;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int statfd = open(path, O_RDONLY | O_CLOEXEC);
    if (statfd < 0) {
        close(sfd);
        return;
    }
    /* A process that joins the tree after the last mark was born in this
     * interval (every mark scans the whole tree): its high-water mark covers
     * only its own life, and any child it has reaped was reaped in this
     * interval, so its cminflt baseline is 0. */
    w->procs[w->nprocs++] = (tproc){pid, sfd, statfd, 1, -1, 0};
    attrib_watch_saw_pid(w->attrib, (int)pid); /* attribution: processes without the interposer */
    w->interval_procs++;
}

static void drop_unseen(watch *w)
{
    size_t j = 0;
    for (size_t i = 0; i < w->nprocs; i++) {
        if (w->procs[i].seen) w->procs[j++] = w->procs[i];
        else {
            close(w->procs[i].sfd);
            close(w->procs[i].statfd);
        }
    }
    w->nprocs = j;
}

/* Children of pid through the children file of its main thread. */
static int read_children(pid_t pid, pid_t *out, int max)
{
    char path[80], buf[8192];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    if (proc_read_file(path, buf, sizeof buf) < 0) return -1;
    int n = 0;
    for (char *s = buf; *s && n < max;) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) break;
        out[n++] = (pid_t)v;
        s = end;
    }
    return n;
}

/* Full scan of /proc/N/stat ppid links: finds children of any thread. */
static void scan_all(watch *w)
{
    DIR *d = opendir("/proc");
    if (!d) return;
    size_t cap = 1024, n = 0;
    pid_t *pid = miser_malloc(MISER_MEM_PROFILER, cap * sizeof *pid);
    pid_t *ppid = miser_malloc(MISER_MEM_PROFILER, cap * sizeof *ppid);
    struct dirent *e;
    while (pid && ppid && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        miser_proc_stat st;
        if (proc_read_file(path, buf, sizeof buf) < 0 || miser_proc_parse_stat(buf, &st)) continue;
        if (n == cap) {
            cap *= 2;
            pid_t *a = miser_realloc(MISER_MEM_PROFILER, pid, cap * sizeof *pid);
            if (!a) break;
            pid = a;
            pid_t *b = miser_realloc(MISER_MEM_PROFILER, ppid, cap * sizeof *ppid);
            if (!b) break;
            ppid = b;
        }
        pid[n] = st.pid;
        ppid[n] = st.ppid;
        n++;
    }
    closedir(d);
    if (pid && ppid) {
        /* Fixed point: anything whose parent is self or already in the tree. */
        int changed = 1;
        while (changed) {
            changed = 0;
            for (size_t i = 0; i < n; i++) {
                tproc *t = find_proc(w, pid[i]), *pp = find_proc(w, ppid[i]);
                if (pid[i] == w->self || (t && t->seen)) continue;
                if (ppid[i] == w->self || (pp && pp->seen)) {
                    add_proc(w, pid[i]);
                    t = find_proc(w, pid[i]);
                    if (t && t->seen) changed = 1;
                }
            }
        }
    }
    miser_free(pid);
    miser_free(ppid);
}

static void discover(watch *w, int full)
{
    for (size_t i = 0; i < w->nprocs; i++) w->procs[i].seen = 0;
    if (full || !w->children_files) {
        scan_all(w);
    } else {
        pid_t kids[512];
        int n = read_children(w->self, kids, 512);
        for (int i = 0; i < n; i++) add_proc(w, kids[i]);
        /* BFS over the list as it grows. */
        for (size_t i = 0; i < w->nprocs; i++) {
            if (!w->procs[i].seen) continue;
            n = read_children(w->procs[i].pid, kids, 512);
            for (int k = 0; k < n; k++) add_proc(w, kids[k]);
        }
    }
    drop_unseen(w);
}

typedef struct {
    int64_t rss, anon, file, shmem, swap, hwm;
    int n;
} tree_mem;

static void read_tree_mem(watch *w, tree_mem *m, int64_t *hwm_each)
{
    memset(m, 0, sizeof *m);
    int have_anon = 1, have_swap = 1, have_shmem = 1;
    for (size_t i = 0; i < w->nprocs; i++) {
        char buf[4096];
        miser_proc_status st;
        if (hwm_each) hwm_each[i] = -1;
        if (proc_pread(w->procs[i].sfd, buf, sizeof buf) < 0 || miser_proc_parse_status(buf, &st)) {
            /* At a mark, a process that cannot be read is a zombie its own
             * parent has not reaped yet (ours are reaped first): its peak
             * after the last reading is unknown, the interval a lower bound. */
            if (hwm_each) w->lost_peak = 1;
            continue;
        }
        m->rss += st.rss_kb;
        /* VmHWM comes from approximate per-CPU counters, VmRSS from their
         * exact sum: either can be the larger by a few pages. */
        int64_t h = st.hwm_kb > st.rss_kb ? st.hwm_kb : st.rss_kb;
        tproc *t = &w->procs[i];
        if (h > t->hwm_max) t->hwm_max = h;
        if (t->hwm_max > w->max_single_kb) w->max_single_kb = t->hwm_max;
        m->hwm += t->hwm_max;
        if (hwm_each) hwm_each[i] = t->hwm_max;
        if (st.anon_kb < 0 || st.file_kb < 0) have_anon = 0;
        else {
            m->anon += st.anon_kb;
            m->file += st.file_kb;
        }
        if (st.shmem_kb < 0) have_shmem = 0;
        else m->shmem += st.shmem_kb;
        if (st.swap_kb < 0) have_swap = 0;
        else m->swap += st.swap_kb;
        m->n++;
    }
    if (!have_anon) m->anon = m->file = -1;
    if (!have_shmem) m->shmem = -1;
    if (!have_swap) m->swap = -1;
}

static int64_t tree_gpu(watch *w)
{
    if (!w->o->gpu) return -1;
    pid_t pids[256];
    size_t n = 0;
    for (size_t i = 0; i < w->nprocs && n < 256; i++) pids[n++] = w->procs[i].pid;
    return nvml_used_kb_for_pids(pids, n);
}

static void sample(watch *w)
{
    if (prof_now() - w->last_scan > 0.1) {
        discover(w, 1);
        w->last_scan = prof_now();
    } else discover(w, 0);
    tree_mem m;
    read_tree_mem(w, &m, NULL);
    if (m.n == 0) return;
    miser_sample s = {prof_now() - w->t0, m.rss, m.anon, m.file, m.swap, tree_gpu(w)};
    prof_add_sample(w->prof, &s);
    if (m.rss > w->int_max_rss) w->int_max_rss = m.rss;
    if (m.swap > w->int_max_swap) w->int_max_swap = m.swap;
}

/* cminflt of pid (a zombie's too), or -1. */
static int64_t read_cminflt(pid_t pid)
{
    char path[64], buf[2048];
    miser_proc_stat st;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (proc_read_file(path, buf, sizeof buf) < 0 || miser_proc_parse_stat(buf, &st)) return -1;
    return (int64_t)st.cminflt;
}

static void reap(watch *w)
{
    for (;;) {
        /* Look at the zombie before reaping it: its cminflt says whether it
         * reaped children of its own since the last mark (their peaks went
         * to it as a max, not to us). */
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0) break;
        pid_t zp = si.si_pid;
        tproc *t = find_proc(w, zp);
        int64_t cmin = read_cminflt(zp);
        int status;
        struct rusage ru;
        pid_t r = wait4(zp, &status, WNOHANG, &ru);
        if (r <= 0) break;
        if (!WIFEXITED(status) && !WIFSIGNALED(status)) continue;
        if (cmin > (int64_t)(t ? t->cmin0 : 0)) w->lost_peak = 1;
        /* ru_maxrss includes the peaks of every child it ever reaped: one
         * reaped in an earlier interval inflates it (still an upper bound). */
        if (cmin > 0) w->inflated = 1;
        /* Its peak: ru_maxrss (the exiting image's peak since the last reset,
         * the peak of any image it replaced by exec, its reaped children's),
         * or the largest reading of it if larger (counters differ by pages). */
        int64_t pk = (int64_t)ru.ru_maxrss;
        if (t && t->hwm_max > pk) pk = t->hwm_max;
        if (!t) w->interval_procs++; /* born and gone between two readings */
        w->reaped_peak_kb += pk;
        w->dead_cpu_s += (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
                         ru.ru_stime.tv_usec * 1e-6;
        w->dead_minflt += (uint64_t)ru.ru_minflt;
        w->dead_majflt += (uint64_t)ru.ru_majflt;
        if (t) t->seen = 0, drop_unseen(w);
        if (r == w->child) {
            w->child_done = 1;
            w->child_status = status;
            g_fwd_pid = 0;
        }
    }
}

static int same_as_last(const watch *w, int source, const char *name)
{
    size_t n = w->prof->nstages;
    return n && w->last_source == source && !strcmp(w->prof->stages[n - 1].name, name);
}

/* How late a [STAGE] line was read, at least: seconds from the newest sample
 * (or the snapshot itself) whose RSS matches the printed figure to receipt.
 * The command took its reading at or before that sample. */
static double report_delay(const miser_profile *p, const miser_stage_record *s)
{
    if (s->reported_rss_kb < 0) return NAN;
    int64_t tol = s->reported_rss_kb / 100 > 512 ? s->reported_rss_kb / 100 : 512;
    if (s->rss_kb >= 0 && llabs((long long)(s->rss_kb - s->reported_rss_kb)) <= tol) return 0;
    for (size_t i = p->nsamples; i-- > 0;) {
        const miser_sample *x = &p->samples[i];
        if (x->t_s > s->t_s || x->rss_kb < 0) continue;
        if (llabs((long long)(x->rss_kb - s->reported_rss_kb)) <= tol) return s->t_s - x->t_s;
    }
    return NAN;
}

static int kind_rank(miser_peak_kind k)
{
    return k == MISER_PEAK_EXACT ? 0 : k == MISER_PEAK_UPPER_BOUND ? 1 : k == MISER_PEAK_LOWER_BOUND ? 2 : 3;
}

static void take_mark(watch *w, const char *name, const char *desc, const miser_kv *kv, size_t nkv, int implicit,
                      int source, const mark_info *mi)
{
    /* a [STAGE] line echoing the pipe mark just taken adds nothing */
    if (source == MARK_STDOUT && same_as_last(w, MARK_PIPE, name)) return;
    /* a pipe mark (synchronous, exact) replaces the stdout one it follows,
     * keeping the larger peak of the two windows */
    int merge = source == MARK_PIPE && same_as_last(w, MARK_STDOUT, name);
    miser_stage_record prev = {0};
    if (merge) prev = w->prof->stages[w->prof->nstages - 1]; /* the numbers only: freed below */
    reap(w); /* our zombies first: their ru_maxrss belongs to this interval */
    discover(w, 1);
    w->last_scan = prof_now();
    int64_t *hwm = miser_calloc(MISER_MEM_PROFILER, w->nprocs + 1, sizeof *hwm);
    tree_mem m;
    read_tree_mem(w, &m, hwm);
    double cpu = w->dead_cpu_s;
    uint64_t minflt = w->dead_minflt, majflt = w->dead_majflt;
    long tck = w->ticks > 0 ? w->ticks : 100;
    int64_t pss = w->o->pss ? 0 : -1;
    for (size_t i = 0; i < w->nprocs; i++) {
        char buf[2048];
        miser_proc_stat st;
        if (proc_pread(w->procs[i].statfd, buf, sizeof buf) >= 0 && miser_proc_parse_stat(buf, &st) == MISER_OK) {
            cpu += (double)(st.utime + st.stime + st.cutime + st.cstime) / (double)tck;
            minflt += st.minflt + st.cminflt;
            majflt += st.majflt + st.cmajflt;
            /* A child reaped by this process (not by us) took its peak with it. */
            if (st.cminflt > w->procs[i].cmin0) w->lost_peak = 1;
            w->procs[i].cmin0 = st.cminflt;
        }
        if (w->o->pss) {
            char path[64], sb[4096];
            miser_proc_pss ps;
            snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)w->procs[i].pid);
            if (proc_read_file(path, sb, sizeof sb) >= 0 && miser_proc_parse_smaps_rollup(sb, &ps) == MISER_OK)
                pss += ps.pss_kb;
        }
    }
    miser_stage_record *s;
    if (merge) prof_drop_last_stage(w->prof);
    s = prof_add_stage(w->prof, name, desc);
    w->last_source = source;
    if (!s) {
        warn(w, "out of memory recording stage '%s'", name);
        miser_free(hwm);
        return;
    }
    s->implicit = implicit;
    s->source = mi ? mi->source : implicit ? MISER_MARK_END : MISER_MARK_TIME;
    s->t_s = prof_now() - w->t0;
    s->cpu_s = cpu;
    s->nprocs = m.n;
    if (m.n > 0) {
        s->rss_kb = m.rss;
        s->anon_kb = m.anon;
        s->file_kb = m.file;
        s->shmem_kb = m.shmem;
        s->swap_kb = m.swap;
        s->pss_kb = pss;
    }
    s->minflt = minflt;
    s->majflt = majflt;
    s->gpu_kb = tree_gpu(w);
    int64_t cur_rss = m.n > 0 ? m.rss : 0, cur_swap = m.n > 0 && m.swap > 0 ? m.swap : 0;
    int64_t smax = w->o->sample_interval_ms > 0 ? (w->int_max_rss > cur_rss ? w->int_max_rss : cur_rss) : -1;
    s->peak_sampled_kb = smax;
    int64_t sw = w->int_max_swap > cur_swap ? w->int_max_swap : cur_swap;
    s->peak_swap_kb = sw > w->prev_swap ? sw : w->prev_swap;
    /* Lower bound: any reading of the interval (samples, the two snapshots,
     * one process's own peak). Upper bound: every process's peak, summed. */
    int64_t lower = cur_rss > w->prev_rss ? cur_rss : w->prev_rss;
    if (smax > lower) lower = smax;
    int64_t upper = m.hwm + w->reaped_peak_kb;
    s->interval_procs = w->interval_procs;
    if (w->interval_procs == 0) {
        /* Nothing lived in this interval (marks read after the command's end). */
        s->peak_rss_kb = smax;
        s->peak_kind = smax >= 0 ? MISER_PEAK_SAMPLED : MISER_PEAK_UNKNOWN;
    } else if (w->o->no_hwm_reset || w->interval_inexact) {
        s->peak_rss_kb = lower;
        s->peak_kind = MISER_PEAK_SAMPLED;
    } else if (w->lost_peak) {
        if (w->max_single_kb > lower) lower = w->max_single_kb;
        s->peak_rss_kb = lower;
        s->peak_kind = MISER_PEAK_LOWER_BOUND;
    } else {
        s->peak_rss_kb = upper > lower ? upper : lower;
        s->peak_kind = w->interval_procs == 1 && !w->inflated ? MISER_PEAK_EXACT : MISER_PEAK_UPPER_BOUND;
    }
    if (mi && mi->source == MISER_MARK_STDOUT) {
        s->reported_rss_kb = mi->rss_kb;
        s->reported_swap_kb = mi->swap_kb;
        s->report_delay_s = report_delay(w->prof, s);
    }
    if (merge) {
        /* One stage announced both ways covers both windows: the larger peak,
         * the weaker kind, and the [STAGE] line's own figures. */
        if (prev.peak_rss_kb > s->peak_rss_kb) s->peak_rss_kb = prev.peak_rss_kb;
        if (kind_rank(prev.peak_kind) > kind_rank(s->peak_kind)) s->peak_kind = prev.peak_kind;
        s->interval_procs += prev.interval_procs;
        if (prev.reported_rss_kb >= 0) {
            s->reported_rss_kb = prev.reported_rss_kb;
            s->reported_swap_kb = prev.reported_swap_kb;
            s->report_delay_s = isnan(prev.report_delay_s) ? NAN : prev.report_delay_s + (s->t_s - prev.t_s);
        }
    }
    s->peak_exact = s->peak_kind == MISER_PEAK_EXACT;
    for (size_t i = 0; i < nkv; i++)
        if (prof_stage_set_kv(s, kv[i].key, kv[i].value)) warn(w, "out of memory storing marker data");
    /* attribution: the interposers' stage counter moves on before the reset */
    attrib_watch_mark(w->attrib, w->prof->nstages - 1);
    /* Reset for the next interval. */
    w->interval_inexact = 0;
    w->reaped_peak_kb = 0;
    w->max_single_kb = 0;
    w->lost_peak = 0;
    w->inflated = 0;
    w->interval_procs = (int)w->nprocs;
    for (size_t i = 0; i < w->nprocs; i++) w->procs[i].hwm_max = -1;
    w->int_max_rss = cur_rss;
    w->int_max_swap = cur_swap;
    w->prev_rss = cur_rss;
    w->prev_swap = cur_swap;
    if (!w->o->no_hwm_reset)
        for (size_t i = 0; i < w->nprocs; i++) {
            int err = proc_reset_hwm(w->procs[i].pid);
            if (err && err != ESRCH && err != ENOENT) {
                w->interval_inexact = 1;
                if (!w->warned_reset) {
                    warn(w, "clear_refs refused for pid %d (%s): peaks are sampled, not exact", (int)w->procs[i].pid,
                         strerror(err));
                    snprintf(w->prof->peak_method, sizeof w->prof->peak_method, "%s",
                             w->o->sample_interval_ms > 0 ? "sampled" : "marks-only");
                }
                w->warned_reset = 1;
            }
        }
    miser_free(hwm);
}

static int lb_push(linebuf *lb, char c)
{
    if (lb->len + 1 >= lb->cap) {
        lb->overflow = 1;
        return 0;
    }
    lb->buf[lb->len++] = c;
    return 1;
}

static int pump(watch *w, int fd, int is_stdout);

/* Handle the stdout bytes already in the pipe. Called before an ack'd marker
 * line: the command waits for the ack, so whatever its stdout holds now was
 * written before that line (pipe writes are in order per writer), and its
 * [STAGE] lines are marks that came first. The two pipes are read separately,
 * so without this a [STAGE] line printed before the marker would be recorded
 * after it. Bounded (a descendant may write on and on). */
static void drain_stdout(watch *w)
{
    for (int n = 0; w->so_fd >= 0 && n < 64; n++) {
        struct pollfd pf = {w->so_fd, POLLIN, 0};
        if (poll(&pf, 1, 0) <= 0 || !(pf.revents & POLLIN)) return;
        if (pump(w, w->so_fd, 1)) return; /* EOF: the main loop closes it */
    }
}

static void handle_marker_line(watch *w, char *line)
{
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
    if (!len) return;
    char *scratch = miser_malloc(MISER_MEM_PROFILER, len + 1);
    if (!scratch) return;
    const char *name, *desc;
    miser_kv kv[32];
    size_t nkv;
    if (miser_marker_parse(line, scratch, &name, &desc, kv, 32, &nkv) == MISER_OK) {
        /* ack=1 asks for one byte on the acknowledgement pipe once the
         * snapshot is taken, so a child can wait for it (synchronous marks). */
        int ack = 0;
        for (size_t i = 0; i < nkv; i++)
            if (!strcmp(kv[i].key, "ack")) {
                ack = 1;
                kv[i] = kv[--nkv];
                break;
            }
        mark_info mi = {ack ? MISER_MARK_PIPE_ACK : MISER_MARK_PIPE, -1, -1};
        /* Only for ack=1 is the order knowable: a plain pipe line's writer
         * has moved on and may have printed later lines already. */
        if (ack) drain_stdout(w);
        take_mark(w, name, desc, kv, nkv, 0, MARK_PIPE, &mi);
        if (ack && w->ack_fd >= 0) {
            ssize_t r = write(w->ack_fd, "\n", 1);
            (void)r; /* a full or closed pipe: the reader is gone or not reading */
        }
    } else
        warn(w, "malformed marker skipped: %s (line: %.60s)", miser_error_message(), line);
    miser_free(scratch);
}

static void handle_stdout_line(watch *w, const char *line)
{
    char name[MISER_STAGE_NAME_MAX], desc[1024];
    double rss, swap;
    if (!miser_marker_parse_stage_line(line, name, desc, sizeof desc, &rss, &swap)) {
        if (!strncmp(line, "[STAGE]", 7)) warn(w, "malformed [STAGE] line skipped: %.80s", line);
        return;
    }
    char a[32], b[32];
    snprintf(a, sizeof a, "%.2f", rss);
    snprintf(b, sizeof b, "%.2f", swap);
    miser_kv kv[2] = {{"reported_rss_mb", a}, {"reported_swap_mb", b}};
    /* The command's own figures (its reading when it printed the line) stay
     * beside miser's snapshot (taken now, when the line arrives). */
    mark_info mi = {MISER_MARK_STDOUT, rss >= 0 ? (int64_t)llround(rss * 1024) : -1,
                    swap >= 0 ? (int64_t)llround(swap * 1024) : -1};
    take_mark(w, name, desc, kv, 2, 0, MARK_STDOUT, &mi);
}

/* Read what is there; 1 at EOF or error. */
static int pump(watch *w, int fd, int is_stdout)
{
    char buf[65536];
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0) return errno == EINTR || errno == EAGAIN ? 0 : 1;
    if (r == 0) return 1;
    if (is_stdout) {
        for (ssize_t off = 0; off < r;) {
            ssize_t k = write(w->o->stdout_fd, buf + off, (size_t)(r - off));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) break;
            off += k;
        }
    }
    linebuf *lb = is_stdout ? &w->out_lb : &w->mk_lb;
    for (ssize_t i = 0; i < r; i++) {
        if (buf[i] != '\n') {
            lb_push(lb, buf[i]);
            continue;
        }
        lb->buf[lb->len] = 0;
        if (lb->overflow) {
            if (!is_stdout) warn(w, "marker line longer than %zu bytes skipped", lb->cap - 1);
        } else if (is_stdout)
            handle_stdout_line(w, lb->buf);
        else
            handle_marker_line(w, lb->buf);
        lb->len = 0;
        lb->overflow = 0;
    }
    return 0;
}

static void finish_lines(watch *w)
{
    if (w->mk_lb.len && !w->mk_lb.overflow) {
        w->mk_lb.buf[w->mk_lb.len] = 0;
        handle_marker_line(w, w->mk_lb.buf);
    }
    if (w->out_lb.len && !w->out_lb.overflow) {
        w->out_lb.buf[w->out_lb.len] = 0;
        handle_stdout_line(w, w->out_lb.buf);
    }
    w->mk_lb.len = w->out_lb.len = 0;
}

static char *join_argv(char *const argv[])
{
    size_t n = 1;
    for (int i = 0; argv[i]; i++) n += strlen(argv[i]) + 3;
    char *s = miser_malloc(MISER_MEM_PROFILER, n);
    if (!s) return NULL;
    s[0] = 0;
    for (int i = 0; argv[i]; i++) {
        if (i) strcat(s, " ");
        int q = strchr(argv[i], ' ') != NULL || !argv[i][0];
        if (q) strcat(s, "'");
        strcat(s, argv[i]);
        if (q) strcat(s, "'");
    }
    return s;
}

static int cmp_marks(const void *a, const void *b)
{
    double x = (*(const miser_time_mark *const *)a)->at_s, y = (*(const miser_time_mark *const *)b)->at_s;
    return x < y ? -1 : x > y;
}

miser_status miser_profile_command(const miser_watch_options *opts, char *const argv[], miser_profile **out)
{
    if (!opts || !argv || !argv[0] || !out) return miser_error_set(MISER_ERR_INVALID, "profile: no command");
    *out = NULL;
    watch W;
    memset(&W, 0, sizeof W);
    watch *w = &W;
    w->o = opts;
    w->self = getpid();
    w->ticks = sysconf(_SC_CLK_TCK);
    char *label = join_argv(argv);
    if (!label) return miser_error_set(MISER_ERR_NOMEM, "profile: out of memory");
    w->prof = prof_new("command", label);
    miser_free(label);
    w->out_lb.cap = 16384;
    w->mk_lb.cap = 65536;
    w->out_lb.buf = miser_malloc(MISER_MEM_PROFILER, w->out_lb.cap);
    w->mk_lb.buf = miser_malloc(MISER_MEM_PROFILER, w->mk_lb.cap);
    const miser_time_mark **tm = miser_calloc(MISER_MEM_PROFILER, opts->ntime_marks + 1, sizeof *tm);
    if (!w->prof || !w->out_lb.buf || !w->mk_lb.buf || !tm) {
        miser_profile_free(w->prof);
        miser_free(w->out_lb.buf);
        miser_free(w->mk_lb.buf);
        miser_free(tm);
        return miser_error_set(MISER_ERR_NOMEM, "profile: out of memory");
    }
    for (size_t i = 0; i < opts->ntime_marks; i++) tm[i] = &opts->time_marks[i];
    qsort(tm, opts->ntime_marks, sizeof *tm, cmp_marks);
    if (opts->max_samples) w->prof->max_samples = opts->max_samples;
    w->prof->sample_interval_ms = opts->sample_interval_ms > 0 ? opts->sample_interval_ms : 0;
    if (opts->no_hwm_reset) {
        snprintf(w->prof->peak_method, sizeof w->prof->peak_method, "%s",
                 opts->sample_interval_ms > 0 ? "sampled" : "marks-only");
        prof_warn(w->prof, "high-water-mark reset disabled: peaks are sampled, not exact");
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)w->self, (int)w->self);
    w->children_files = access(path, R_OK) == 0;

    int mk[2] = {-1, -1}, so[2] = {-1, -1}, ex[2] = {-1, -1}, ak[2] = {-1, -1};
    char **envp = NULL, env_mk[48], env_ak[48];
    w->ack_fd = -1;
    w->so_fd = -1;
    miser_status rc = MISER_OK;
    if ((opts->marker_pipe && (pipe2(mk, O_CLOEXEC) || pipe2(ak, O_CLOEXEC))) ||
        (opts->stdout_markers && pipe2(so, O_CLOEXEC)) || pipe2(ex, O_CLOEXEC)) {
        rc = miser_error_set(MISER_ERR_IO, "profile: pipe: %s", strerror(errno));
        goto fail;
    }
    /* The child's environment, built before fork (the child may only make
     * async-signal-safe calls): ours plus the two marker descriptors. */
    extern char **environ;
    size_t nenv = 0;
    while (environ[nenv]) nenv++;
    envp = miser_calloc(MISER_MEM_PROFILER, nenv + 5, sizeof *envp);
    if (!envp) {
        rc = miser_error_set(MISER_ERR_NOMEM, "profile: out of memory");
        goto fail;
    }
    /* attribution: LD_PRELOAD (ours first) and the interposers' directory */
    if (opts->attribute_lib && (rc = attrib_watch_begin(opts->attribute_lib, opts->attribute_min, &w->attrib)))
        goto fail;
    size_t ne = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], MISER_MARKER_ENV "=", sizeof MISER_MARKER_ENV) &&
            strncmp(environ[i], MISER_MARKER_ACK_ENV "=", sizeof MISER_MARKER_ACK_ENV) &&
            !(w->attrib && (!strncmp(environ[i], "LD_PRELOAD=", 11) || !strncmp(environ[i], "MISER_ATTRIB_DIR=", 17))))
            envp[ne++] = environ[i];
    for (char *const *ae = w->attrib ? attrib_watch_env(w->attrib) : NULL; ae && *ae; ae++) envp[ne++] = *ae;
    if (mk[1] >= 0) {
        snprintf(env_mk, sizeof env_mk, "%s=%d", MISER_MARKER_ENV, mk[1]);
        snprintf(env_ak, sizeof env_ak, "%s=%d", MISER_MARKER_ACK_ENV, ak[0]);
        envp[ne++] = env_mk;
        envp[ne++] = env_ak;
    }
    int old_subreaper = 0;
    prctl(PR_GET_CHILD_SUBREAPER, &old_subreaper);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    fflush(NULL);
    w->t0 = prof_now();
    pid_t pid = fork();
    if (pid < 0) {
        rc = miser_error_set(MISER_ERR_IO, "profile: fork: %s", strerror(errno));
        prctl(PR_SET_CHILD_SUBREAPER, old_subreaper);
        goto fail;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls until exec. */
        if (mk[1] >= 0) {
            fcntl(mk[1], F_SETFD, 0); /* these two survive the exec */
            fcntl(ak[0], F_SETFD, 0);
        }
        if (so[1] >= 0) dup2(so[1], 1);
        execvpe(argv[0], argv, envp);
        int e = errno;
        ssize_t wr = write(ex[1], &e, sizeof e);
        (void)wr;
        _exit(127);
    }
    w->child = pid;
    close(ex[1]);
    ex[1] = -1;
    if (mk[1] >= 0) close(mk[1]), mk[1] = -1;
    if (ak[0] >= 0) close(ak[0]), ak[0] = -1;
    if (ak[1] >= 0) {
        fcntl(ak[1], F_SETFL, O_NONBLOCK);
        w->ack_fd = ak[1];
    }
    if (so[1] >= 0) close(so[1]), so[1] = -1;
    /* non-blocking: drain_stdout may empty it between the poll and the main loop's read */
    if (so[0] >= 0) fcntl(so[0], F_SETFL, O_NONBLOCK);
    w->so_fd = so[0];
    int exec_errno = 0;
    ssize_t er = read(ex[0], &exec_errno, sizeof exec_errno);
    close(ex[0]);
    ex[0] = -1;
    if (er == (ssize_t)sizeof exec_errno) {
        int st;
        waitpid(pid, &st, 0);
        prctl(PR_SET_CHILD_SUBREAPER, old_subreaper);
        rc = miser_error_set(MISER_ERR_IO, "cannot run '%s': %s", argv[0], strerror(exec_errno));
        goto fail;
    }
    /* The exec happened: the child's clock starts here. */
    struct sigaction ign = {0}, fwd = {0}, old_int, old_quit, old_term, old_hup, old_pipe;
    ign.sa_handler = SIG_IGN;
    fwd.sa_handler = forward_signal;
    g_fwd_pid = pid;
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGQUIT, &ign, &old_quit);
    sigaction(SIGPIPE, &ign, &old_pipe); /* a closed stdout or ack pipe must not kill the watcher */
    sigaction(SIGTERM, &fwd, &old_term);
    sigaction(SIGHUP, &fwd, &old_hup);

    if (!opts->no_hwm_reset) {
        int err = proc_reset_hwm(pid);
        if (err && err != ESRCH && err != ENOENT) {
            w->interval_inexact = 1;
            w->warned_reset = 1;
            warn(w, "clear_refs refused for pid %d (%s): peaks are sampled, not exact", (int)pid, strerror(err));
            snprintf(w->prof->peak_method, sizeof w->prof->peak_method, "%s",
                     opts->sample_interval_ms > 0 ? "sampled" : "marks-only");
        }
    }
    discover(w, 0);
    {
        tree_mem m;
        read_tree_mem(w, &m, NULL);
        w->prev_rss = w->int_max_rss = m.rss;
        w->prev_swap = w->int_max_swap = m.swap > 0 ? m.swap : 0;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    double iv = opts->sample_interval_ms > 0 ? opts->sample_interval_ms * 1e-3 : 0;
    double next_sample = iv > 0 ? iv : 1e300;
    size_t next_tm = 0;
    double child_exit_at = -1;
    for (;;) {
        double now = prof_now() - w->t0;
        if (iv > 0 && now >= next_sample) {
            sample(w);
            next_sample += iv;
            if (next_sample < now) next_sample = now + iv; /* fell behind: skip, do not burst */
        }
        while (next_tm < opts->ntime_marks && now >= tm[next_tm]->at_s && !w->child_done) {
            take_mark(w, tm[next_tm]->name, tm[next_tm]->description, NULL, 0, 0, MARK_OTHER, NULL);
            next_tm++;
        }
        reap(w);
        if (w->child_done) {
            if (child_exit_at < 0) child_exit_at = now;
            /* Drain the pipes for a short while: descendants may hold them open. */
            if ((mk[0] < 0 && so[0] < 0) || now - child_exit_at > 0.2) break;
        }
        struct pollfd pf[3];
        int np = 0;
        if (mk[0] >= 0) pf[np++] = (struct pollfd){mk[0], POLLIN, 0};
        if (so[0] >= 0) pf[np++] = (struct pollfd){so[0], POLLIN, 0};
        if (pidfd >= 0 && !w->child_done) pf[np++] = (struct pollfd){pidfd, POLLIN, 0};
        double wait = 0.05;
        if (iv > 0 && next_sample - now < wait) wait = next_sample - now;
        if (next_tm < opts->ntime_marks && tm[next_tm]->at_s - now < wait) wait = tm[next_tm]->at_s - now;
        if (pidfd < 0 && wait > 0.01) wait = 0.01;
        if (wait < 0) wait = 0;
        /* ppoll: sub-millisecond timeouts, so a 1 ms sampler keeps its pace. */
        struct timespec to = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        int pr = ppoll(pf, (nfds_t)np, &to, NULL);
        if (pr <= 0) continue;
        for (int i = 0; i < np; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (pf[i].fd == mk[0] && pump(w, mk[0], 0)) close(mk[0]), mk[0] = -1;
            else if (pf[i].fd == so[0] && pump(w, so[0], 1)) close(so[0]), so[0] = w->so_fd = -1;
        }
    }
    finish_lines(w);
    if (pidfd >= 0) close(pidfd);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    g_fwd_pid = 0;
    prctl(PR_SET_CHILD_SUBREAPER, old_subreaper);

    int st = w->child_status;
    if (WIFSIGNALED(st)) {
        w->prof->exit.signaled = 1;
        w->prof->exit.signal = WTERMSIG(st);
        warn(w, "command killed by signal %d (%s); the profile so far is kept", WTERMSIG(st), strsignal(WTERMSIG(st)));
    } else {
        w->prof->exit.exited = 1;
        w->prof->exit.code = WEXITSTATUS(st);
    }
    take_mark(w, "exit", w->prof->exit.signaled ? "command killed by a signal" : "command exited", NULL, 0, 1, MARK_OTHER, NULL);
    if (w->nprocs) warn(w, "%zu descendant process(es) still running when the command exited", w->nprocs);
    for (size_t i = 0; i < w->nprocs; i++) close(w->procs[i].sfd), close(w->procs[i].statfd);
    if (mk[0] >= 0) close(mk[0]);
    w->so_fd = -1;
    if (so[0] >= 0) close(so[0]);
    if (ak[1] >= 0) close(ak[1]);
    miser_free(w->procs);
    miser_free(w->out_lb.buf);
    miser_free(w->mk_lb.buf);
    miser_free(tm);
    miser_free(envp);
    attrib_watch_finish(w->attrib, w->prof); /* attribution: read, symbolise, attach */
    attrib_watch_free(w->attrib);
    *out = w->prof;
    return MISER_OK;

fail:
    for (int i = 0; i < 2; i++) {
        if (mk[i] >= 0) close(mk[i]);
        if (so[i] >= 0) close(so[i]);
        if (ex[i] >= 0) close(ex[i]);
        if (ak[i] >= 0) close(ak[i]);
    }
    miser_profile_free(w->prof);
    miser_free(w->out_lb.buf);
    miser_free(w->mk_lb.buf);
    miser_free(tm);
    miser_free(envp);
    attrib_watch_free(w->attrib);
    return rc;
}
