/* Profiler benchmarks (not timed tests):
 *  - overhead: wall time of a busy child alone and under `miser profile`-style
 *    watching with a 1 ms and a 20 ms sampler (median of runs), plus the
 *    watcher's own CPU time;
 *  - spike: hit rate of exact peaks vs a 20 ms sampler on 16 MB spikes that
 *    are touched and freed faster than the interval.
 * Entry point for build/miser-bench: miser_bench_profiler(argc, argv)
 *   argv: [--runs N] [--spikes N] [--threads T]. */
#include "miser/profiler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char busy_src[] =
    "#include <pthread.h>\n#include <stdlib.h>\n#include <sys/mman.h>\n#include <string.h>\n#include \"miser_marker.h\"\n"
    "static void *work(void *a) { (void)a; volatile double x = 0; char *b = malloc(8u << 20);\n"
    "  for (int r = 0; r < 40; r++) { memset(b, r, 8u << 20); for (int i = 0; i < 2000000; i++) x += i * 1e-9; }\n"
    "  free(b); return 0; }\n"
    "static void spike(size_t sz) { char *p = mmap(0, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);\n"
    "  for (size_t i = 0; i < sz; i += 4096) p[i] = 1; munmap(p, sz); }\n"
    "int main(int argc, char **argv) {\n"
    "  if (argc > 2 && !strcmp(argv[1], \"spike\")) { int n = atoi(argv[2]); char d[32];\n"
    "    for (int i = 0; i < n; i++) { snprintf(d, sizeof d, \"i=%d\", i); miser_marker(\"before\", 0, d); usleep(30000);\n"
    "      spike(16u << 20); miser_marker(\"spike\", 0, d); usleep(5000); } return 0; }\n"
    "  int t = argc > 1 ? atoi(argv[1]) : 1; pthread_t th[16];\n"
    "  for (int i = 0; i < t; i++) pthread_create(&th[i], 0, work, 0);\n"
    "  for (int i = 0; i < t; i++) pthread_join(th[i], 0); return 0; }\n";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One run; interval < 0 runs the child without watching. */
static int run_once(char **argv, double interval_ms, double *wall, double *cpu, size_t *samples)
{
    double c0 = self_cpu(), t0 = now();
    *samples = 0;
    if (interval_ms < 0) {
        pid_t pid = fork();
        if (pid == 0) {
            execv(argv[0], argv);
            _exit(127);
        }
        int st;
        waitpid(pid, &st, 0);
    } else {
        miser_watch_options o = {0};
        o.sample_interval_ms = interval_ms;
        o.marker_pipe = 1;
        miser_profile *p = NULL;
        if (miser_profile_command(&o, argv, &p)) return -1;
        *samples = miser_profile_sample_count(p);
        miser_profile_free(p);
    }
    *wall = now() - t0;
    *cpu = self_cpu() - c0;
    return 0;
}

int miser_bench_profiler(int argc, char **argv)
{
    int runs = 5, spikes = 50, threads = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--spikes")) spikes = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    }
    if (runs < 1 || runs > 100) runs = 5;
    char dir[] = "/tmp/miser-bench-prof-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char src[96], bin[96], cmd[512];
    snprintf(src, sizeof src, "%s/busy.c", dir);
    snprintf(bin, sizeof bin, "%s/busy", dir);
    FILE *f = fopen(src, "w");
    if (!f) return 1;
    fputs(busy_src, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cc -O2 -pthread -I%s/tools/markers -o %s %s", MISER_SOURCE_DIR, bin, src);
    if (system(cmd)) {
        fprintf(stderr, "bench profiler: cannot compile the busy child\n");
        return 1;
    }
    char tbuf[16];
    snprintf(tbuf, sizeof tbuf, "%d", threads);
    char *busy_argv[] = {bin, tbuf, NULL};
    const double modes[] = {-1, 20, 1};
    const char *names[] = {"unwatched", "sampler 20 ms", "sampler 1 ms"};
    double base = 0;
    printf("profiler overhead: busy child with %d thread(s), %d runs each, medians\n", threads, runs);
    printf("  %-14s %9s %9s %12s %9s\n", "mode", "wall s", "overhead", "watcher cpu", "samples");
    /* Interleave the modes run by run, so that load from elsewhere on the
     * machine falls on all three alike. */
    double wall[3][100], cpu[3][100];
    size_t ns[3] = {0, 0, 0};
    for (int r = 0; r < runs; r++)
        for (int m = 0; m < 3; m++)
            if (run_once(busy_argv, modes[m], &wall[m][r], &cpu[m][r], &ns[m])) return 1;
    for (int m = 0; m < 3; m++) {
        double w = median(wall[m], runs), c = median(cpu[m], runs);
        if (m == 0) base = w;
        printf("  %-14s %9.3f %8.1f%% %10.3f s %9zu\n", names[m], w, 100 * (w - base) / base, c, ns[m]);
    }
    printf("  (watcher cpu: CPU time of the watching process per run; samples: in the last run)\n");
    /* Spikes: exact peak vs the 20 ms sampler of the same run. */
    char nbuf[16];
    snprintf(nbuf, sizeof nbuf, "%d", spikes);
    char *spike_argv[] = {bin, "spike", nbuf, NULL};
    miser_watch_options o = {0};
    o.sample_interval_ms = 20;
    o.marker_pipe = 1;
    miser_profile *p = NULL;
    if (miser_profile_command(&o, spike_argv, &p)) return 1;
    int exact = 0, sampled = 0, n = 0;
    double seen = 0;
    const miser_stage_record *before = NULL;
    for (size_t i = 0; i < miser_profile_stage_count(p); i++) {
        const miser_stage_record *s = miser_profile_stage(p, i);
        if (!strcmp(s->name, "before")) before = s;
        else if (!strcmp(s->name, "spike") && before) {
            double need = 0.98 * 16 * 1024; /* a hit: the spike to within 2 % */
            n++;
            exact += s->peak_exact && (double)(s->peak_rss_kb - before->rss_kb) >= need;
            sampled += (double)(s->peak_sampled_kb - before->rss_kb) >= need;
            seen += (double)(s->peak_sampled_kb - before->rss_kb) / (16 * 1024);
        }
    }
    printf("spikes of 16 MB (touched and freed between two marks), %d runs:\n", n);
    printf("  exact peak (VmHWM reset)  %d/%d hits\n", exact, n);
    printf("  20 ms sampler             %d/%d hits (mean %.0f%% of the spike seen)\n", sampled, n,
           n ? 100 * seen / n : 0);
    miser_profile_free(p);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 1;
    return 0;
}
