/* build/miser-bench: runs benchmark suites by name (miser-bench [SUITE
 * [ARGS...]], default: every suite). Suites in the other bench sources are
 * declared weak here and run only when linked in. Benchmarks report figures;
 * they are not timed tests and never fail on a slow machine. */
#include <stdio.h>
#include <string.h>

int miser_bench_kernels(int argc, char **argv);
int miser_bench_e2e(int argc, char **argv);
int miser_bench_profiler(int argc, char **argv) __attribute__((weak));
int miser_bench_compile(int argc, char **argv) __attribute__((weak));
int miser_bench_serve(int argc, char **argv) __attribute__((weak));

typedef struct {
    const char *name, *what;
    int (*fn)(int, char **);
} suite;

int main(int argc, char **argv)
{
    const suite suites[] = {
        {"kernels", "read-bandwidth probe, pool sync, GEMV/GEMM/attention per dtype, 1 and 2 threads, ref vs SIMD",
         miser_bench_kernels},
        {"e2e", "decode (1-token prompt, 128 new) and prefill (128-token prompt) on a GPT-2-medium-shaped checkpoint",
         miser_bench_e2e},
        {"profiler", "profiler overhead and peak capture", miser_bench_profiler},
        {"compile", "compiler pass figures", miser_bench_compile},
        {"serve", "miser serve: 1 vs 16 streams, ITL, TTFT, idle RssAnon, request rates, llama.cpp batched, replicas",
         miser_bench_serve},
    };
    const size_t n = sizeof suites / sizeof suites[0];
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: miser-bench [SUITE [ARGS...]]   (no suite: all)\n\nsuites:\n");
        for (size_t i = 0; i < n; i++)
            printf("  %-10s %s%s\n", suites[i].name, suites[i].what, suites[i].fn ? "" : " (not linked)");
        return 0;
    }
    if (argc > 1) {
        for (size_t i = 0; i < n; i++)
            if (!strcmp(argv[1], suites[i].name)) {
                if (!suites[i].fn) {
                    fprintf(stderr, "miser-bench: suite '%s' is not linked into this build\n", argv[1]);
                    return 2;
                }
                return suites[i].fn(argc - 1, argv + 1);
            }
        fprintf(stderr, "miser-bench: unknown suite '%s' (see --help)\n", argv[1]);
        return 2;
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!suites[i].fn) continue;
        printf("== %s ==\n", suites[i].name);
        fflush(stdout);
        char *av[] = {(char *)suites[i].name, NULL};
        if (suites[i].fn(1, av)) rc = 1;
    }
    return rc;
}
