/* Profiler: /proc parsers on fixtures (tests/data/proc), the marker
 * protocol, exact peaks against a sampler on a real short spike, anonymous vs
 * file-backed memory, markers from C/Python/node children, descendants,
 * exit codes and signals, atomic report files, JSON round trip, metrics by
 * the study's definitions, and `miser check`. Children are real processes:
 * a small C program compiled here with cc, /usr/bin/python3, node and sh. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "miser/alloc.h"
#include "miser/profiler.h"
#include "support.h"

#define DATA MISER_SOURCE_DIR "/tests/data/proc/"
#define MISER MISER_BUILD_DIR "/miser"
#define MB (1024 * 1024)

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "open %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* ---------- /proc parsers ---------- */

Test(profiler_proc, status_modern_kernel)
{
    miser_proc_status st;
    cr_assert_eq(miser_proc_parse_status(slurp(DATA "status_6x"), &st), MISER_OK);
    cr_assert_eq(st.rss_kb, 1602560);
    cr_assert_eq(st.hwm_kb, 1873412);
    cr_assert_eq(st.anon_kb, 123456);
    cr_assert_eq(st.file_kb, 1478080);
    cr_assert_eq(st.shmem_kb, 1024);
    cr_assert_eq(st.swap_kb, 7777);
    cr_assert_eq(st.ppid, 4100);
    /* The kernel's own identity: VmRSS = RssAnon + RssFile + RssShmem. */
    cr_assert_eq(st.rss_kb, st.anon_kb + st.file_kb + st.shmem_kb);
}

Test(profiler_proc, status_without_rssanon_or_swap)
{
    miser_proc_status st;
    cr_assert_eq(miser_proc_parse_status(slurp(DATA "status_2632"), &st), MISER_OK);
    cr_assert_eq(st.rss_kb, 250200);
    cr_assert_eq(st.hwm_kb, 300100);
    cr_assert_eq(st.anon_kb, -1);
    cr_assert_eq(st.file_kb, -1);
    cr_assert_eq(st.shmem_kb, -1);
    cr_assert_eq(st.swap_kb, 512);
    cr_assert_eq(miser_proc_parse_status(slurp(DATA "status_2618"), &st), MISER_OK);
    cr_assert_eq(st.rss_kb, 8192);
    cr_assert_eq(st.swap_kb, -1);
    cr_assert_eq(st.anon_kb, -1);
    cr_assert_eq(miser_proc_parse_status(slurp(DATA "status_kthread"), &st), MISER_ERR_FORMAT);
}

Test(profiler_proc, status_live_matches_statm)
{
    /* Independent source: /proc/self/statm gives resident pages. */
    char buf[4096];
    FILE *f = fopen("/proc/self/status", "r");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    miser_proc_status st;
    cr_assert_eq(miser_proc_parse_status(buf, &st), MISER_OK);
    long size, res;
    f = fopen("/proc/self/statm", "r");
    cr_assert_eq(fscanf(f, "%ld %ld", &size, &res), 2);
    fclose(f);
    long kb = res * (sysconf(_SC_PAGESIZE) / 1024);
    cr_assert(labs(kb - (long)st.rss_kb) < 2048, "statm %ld kB vs status %lld kB", kb, (long long)st.rss_kb);
}

Test(profiler_proc, stat_with_parens_in_comm)
{
    miser_proc_stat st;
    cr_assert_eq(miser_proc_parse_stat(slurp(DATA "stat_tricky"), &st), MISER_OK);
    cr_assert_eq(st.pid, 31337);
    cr_assert_eq(st.state, 'R');
    cr_assert_eq(st.ppid, 4100);
    cr_assert_eq(st.minflt, 5321);
    cr_assert_eq(st.cminflt, 987);
    cr_assert_eq(st.majflt, 12);
    cr_assert_eq(st.cmajflt, 3);
    cr_assert_eq(st.utime, 250);
    cr_assert_eq(st.stime, 75);
    cr_assert_eq(st.cutime, 40);
    cr_assert_eq(st.cstime, 10);
    cr_assert_eq(miser_proc_parse_stat(slurp(DATA "stat_short_old"), &st), MISER_OK);
    cr_assert_eq(st.ppid, 0);
    cr_assert_eq(st.minflt, 100);
    cr_assert_eq(st.cstime, 800);
    cr_assert_eq(miser_proc_parse_stat(slurp(DATA "stat_truncated"), &st), MISER_ERR_FORMAT);
    cr_assert_eq(miser_proc_parse_stat("no parens here", &st), MISER_ERR_FORMAT);
}

Test(profiler_proc, smaps_rollup)
{
    miser_proc_pss ps;
    cr_assert_eq(miser_proc_parse_smaps_rollup(slurp(DATA "smaps_rollup_6x"), &ps), MISER_OK);
    cr_assert_eq(ps.pss_kb, 901234);
    cr_assert_eq(ps.pss_anon_kb, 123000);
    cr_assert_eq(ps.pss_file_kb, 777234);
    cr_assert_eq(miser_proc_parse_smaps_rollup(slurp(DATA "smaps_rollup_414"), &ps), MISER_OK);
    cr_assert_eq(ps.pss_kb, 3210);
    cr_assert_eq(ps.pss_anon_kb, -1);
    cr_assert_eq(miser_proc_parse_smaps_rollup(slurp(DATA "status_6x"), &ps), MISER_ERR_FORMAT);
}

/* ---------- marker protocol ---------- */

Test(profiler_marker, parse_pairs_and_quotes)
{
    const char *line = "stage 3_FIRST_INFERENCE desc=\"generate('Hello')\" tokens=9 "
                       "text=\"Hello, I am \\\"here\\\"\\nnext\" seconds=1.25\n";
    char scratch[512];
    const char *name, *desc;
    miser_kv kv[8];
    size_t n;
    cr_assert_eq(miser_marker_parse(line, scratch, &name, &desc, kv, 8, &n), MISER_OK);
    cr_assert_str_eq(name, "3_FIRST_INFERENCE");
    cr_assert_str_eq(desc, "generate('Hello')");
    cr_assert_eq(n, 3);
    cr_assert_str_eq(kv[0].key, "tokens");
    cr_assert_str_eq(kv[0].value, "9");
    cr_assert_str_eq(kv[1].key, "text");
    cr_assert_str_eq(kv[1].value, "Hello, I am \"here\"\nnext");
    cr_assert_str_eq(kv[2].value, "1.25");
    cr_assert_eq(miser_marker_parse("stage A", scratch, &name, &desc, kv, 8, &n), MISER_OK);
    cr_assert_str_eq(name, "A");
    cr_assert_null(desc);
    cr_assert_eq(n, 0);
}

Test(profiler_marker, malformed_lines_rejected)
{
    const char *bad[] = {"STAGE A", "stage", "stage bad!name", "stage A x", "stage A x=\"open",
                         "stage A =v", "stage A x=\"a\"b", "stage A x=a\"b", "stage A x=\"\\q\"",
                         "stage 0123456789012345678901234567890123456789012345678901234567890123456789"};
    char scratch[512];
    const char *name, *desc;
    miser_kv kv[8];
    size_t n;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(miser_marker_parse(bad[i], scratch, &name, &desc, kv, 8, &n), MISER_ERR_FORMAT, "%s", bad[i]);
}

Test(profiler_marker, study_stage_line)
{
    char name[MISER_STAGE_NAME_MAX], desc[128];
    double rss, swap;
    cr_assert(miser_marker_parse_stage_line("[STAGE] 1_MODEL_LOADED: 2314.67 MB (swap: 0.00 MB) - Model loaded\n", name,
                                            desc, sizeof desc, &rss, &swap));
    cr_assert_str_eq(name, "1_MODEL_LOADED");
    cr_assert_str_eq(desc, "Model loaded");
    cr_assert_float_eq(rss, 2314.67, 1e-9);
    cr_assert_float_eq(swap, 0.0, 1e-9);
    cr_assert(miser_marker_parse_stage_line("[STAGE] 5_FINAL: 1.00 MB (swap: 877.10 MB)", name, desc, sizeof desc,
                                            &rss, &swap));
    cr_assert_float_eq(swap, 877.10, 1e-9);
    cr_assert_str_eq(desc, "");
    cr_assert_not(miser_marker_parse_stage_line("[STAGE] X: lots of memory", name, desc, sizeof desc, &rss, &swap));
    cr_assert_not(miser_marker_parse_stage_line("STAGE X: 1.00 MB (swap: 0.00 MB)", name, desc, sizeof desc, &rss, &swap));
    cr_assert_not(miser_marker_parse_stage_line("[STAGE] X: 1.00 MB", name, desc, sizeof desc, &rss, &swap));
}

/* ---------- helpers for children ---------- */

static const char child_src[] =
    "#include \"miser_marker.h\"\n"
    "#include <signal.h>\n#include <sys/mman.h>\n#include <sys/wait.h>\n#include <fcntl.h>\n"
    "static void touch(char *p, size_t n){ for (size_t i = 0; i < n; i += 4096) p[i] = 1; }\n"
    "int main(int argc, char **argv) {\n"
    "  const char *mode = argv[1];\n"
    "  if (!strcmp(mode, \"spike\")) { /* spike N MB */\n"
    "    int n = atoi(argv[2]); size_t sz = (size_t)atol(argv[3]) << 20; char d[32];\n"
    "    for (int i = 0; i < n; i++) {\n"
    "      snprintf(d, sizeof d, \"i=%d\", i); miser_marker(\"before\", NULL, d); usleep(30000);\n"
    "      char *p = mmap(0, sz, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0); touch(p, sz); munmap(p, sz);\n"
    "      miser_marker(\"spike\", \"touched and freed\", d); usleep(5000);\n"
    "    }\n"
    "  } else if (!strcmp(mode, \"mmap\")) { /* mmap FILE */\n"
    "    miser_marker(\"before\", NULL, NULL); usleep(20000);\n"
    "    int fd = open(argv[2], O_RDONLY); off_t sz = lseek(fd, 0, SEEK_END);\n"
    "    volatile char *p = mmap(0, (size_t)sz, PROT_READ, MAP_SHARED, fd, 0); long s = 0;\n"
    "    for (off_t i = 0; i < sz; i += 4096) s += p[i];\n"
    "    char d[32]; snprintf(d, sizeof d, \"sum=%ld\", s); miser_marker(\"mapped\", \"file read through mmap\", d);\n"
    "    usleep(20000); munmap((void *)p, (size_t)sz); close(fd);\n"
    "  } else if (!strcmp(mode, \"tree\")) { /* two children and an orphaned grandchild, 24 MB each */\n"
    "    int pfd[2]; pipe(pfd); size_t sz = 24u << 20;\n"
    "    miser_marker(\"start\", NULL, NULL); usleep(20000);\n"
    "    for (int k = 0; k < 3; k++) {\n"
    "      pid_t c = fork();\n"
    "      if (c == 0) {\n"
    "        if (k == 2 && fork() > 0) _exit(0); /* middle exits: the grandchild is orphaned */\n"
    "        char *p = malloc(sz); touch(p, sz); write(pfd[1], \"x\", 1); usleep(400000); _exit(0);\n"
    "      }\n"
    "    }\n"
    "    char b; for (int k = 0; k < 3; k++) read(pfd[0], &b, 1);\n"
    "    usleep(20000); miser_marker(\"all\", \"three processes hold 24 MB each\", NULL);\n"
    "    while (wait(NULL) > 0) {}\n"
    "    usleep(500000); miser_marker(\"done\", NULL, NULL);\n"
    "  } else if (!strcmp(mode, \"exit\")) { miser_marker(\"a\", NULL, NULL); return atoi(argv[2]); }\n"
    "  else if (!strcmp(mode, \"kill\")) { miser_marker(\"a\", \"before the signal\", NULL); usleep(20000); raise(atoi(argv[2])); }\n"
    "  return 0;\n"
    "}\n";

typedef test_box sandbox;

static void sandbox_init(sandbox *s, int with_child)
{
    cr_assert_eq(test_box_init(s, "prof", with_child ? child_src : NULL, "child"), 0, "compiling the test child failed");
}

static void sandbox_free(sandbox *s) { test_box_free(s); }

static miser_profile *load(const sandbox *s, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", s->dir, name);
    miser_profile *p = NULL;
    cr_assert_eq(miser_profile_load_json(path, &p), MISER_OK, "%s", miser_error_message());
    return p;
}

/* The n-th record with this name. */
static const miser_stage_record *nth(const miser_profile *p, const char *name, int k)
{
    for (size_t i = 0; i < miser_profile_stage_count(p); i++) {
        const miser_stage_record *s = miser_profile_stage(p, i);
        if (!strcmp(s->name, name) && k-- == 0) return s;
    }
    return NULL;
}

/* ---------- out-of-process ---------- */

Test(profiler_watch, short_spike_exact_vs_sampler_20ms, .timeout = 60)
{
    sandbox s;
    sandbox_init(&s, 1);
    enum { N = 16, SPIKE_MB = 16 };
    cr_assert_eq(test_sh("%s profile -i 20 --format none --json %s/p.json -- %s spike %d %d", MISER, s.dir, s.bin, N,
                    SPIKE_MB),
                 0);
    miser_profile *p = load(&s, "p.json");
    int exact_hits = 0, sampled_hits = 0;
    for (int i = 0; i < N; i++) {
        const miser_stage_record *b = nth(p, "before", i), *k = nth(p, "spike", i);
        cr_assert(b && k);
        cr_assert_str_eq(miser_stage_get(k, "i"), miser_stage_get(b, "i"));
        cr_assert(k->peak_exact);
        /* A hit: the interval's peak shows the spike above the baseline to within 2 %. */
        double need = 0.98 * SPIKE_MB * 1024;
        exact_hits += (double)(k->peak_rss_kb - b->rss_kb) >= need;
        sampled_hits += (double)(k->peak_sampled_kb - b->rss_kb) >= need;
        /* And the memory was really given back: the mark after shows no growth. */
        cr_assert_lt(k->rss_kb - b->rss_kb, 4 * 1024);
    }
    fprintf(stderr, "spike %d MB x %d: exact peak hits %d/%d, 20 ms sampler hits %d/%d\n", SPIKE_MB, N, exact_hits, N,
            sampled_hits, N);
    cr_assert_eq(exact_hits, N);
    cr_assert_lt(sampled_hits, N / 2, "the sampler should mostly miss a spike shorter than its interval");
    miser_profile_free(p);
    sandbox_free(&s);
}

Test(profiler_watch, mmapped_file_is_rssfile_not_anon, .timeout = 60)
{
    sandbox s;
    sandbox_init(&s, 1);
    cr_assert_eq(test_sh("head -c %d /dev/urandom > %s/blob", 64 * MB, s.dir), 0);
    cr_assert_eq(test_sh("%s profile -i 0 --format none --json %s/p.json -- %s mmap %s/blob", MISER, s.dir, s.bin, s.dir), 0);
    miser_profile *p = load(&s, "p.json");
    const miser_stage_record *b = miser_profile_find_stage(p, "before"), *m = miser_profile_find_stage(p, "mapped");
    cr_assert(b && m);
    int64_t dfile = m->file_kb - b->file_kb, danon = m->anon_kb - b->anon_kb;
    fprintf(stderr, "mmap 64 MB file: RssFile +%.1f MB, RssAnon +%.1f MB\n", dfile / 1024.0, danon / 1024.0);
    cr_assert_geq(dfile, 60 * 1024);
    cr_assert_lt(danon, 4 * 1024);
    miser_profile_free(p);
    sandbox_free(&s);
}

Test(profiler_watch, descendants_and_orphans_summed, .timeout = 60)
{
    sandbox s;
    sandbox_init(&s, 1);
    cr_assert_eq(test_sh("%s profile -i 10 --format none --json %s/p.json -- %s tree", MISER, s.dir, s.bin), 0);
    miser_profile *p = load(&s, "p.json");
    const miser_stage_record *a = miser_profile_find_stage(p, "start"), *b = miser_profile_find_stage(p, "all"),
                             *d = miser_profile_find_stage(p, "done");
    cr_assert(a && b && d);
    /* Main, two children and the orphaned grandchild (reparented to miser). */
    cr_assert_eq(b->nprocs, 4, "nprocs %d", b->nprocs);
    cr_assert_geq(b->anon_kb - a->anon_kb, 3 * 24 * 1024 - 1024);
    cr_assert_geq(b->peak_rss_kb - a->rss_kb, 3 * 24 * 1024 - 1024);
    cr_assert_eq(d->nprocs, 1);
    miser_profile_free(p);
    sandbox_free(&s);
}

Test(profiler_watch, exit_codes_and_signals, .timeout = 60)
{
    sandbox s;
    sandbox_init(&s, 1);
    cr_assert_eq(test_sh("%s profile --format none -- %s exit 7", MISER, s.bin), 7);
    cr_assert_eq(test_sh("%s profile --format none -- %s exit 0", MISER, s.bin), 0);
    cr_assert_eq(test_sh("%s profile --format none -- /nonexistent/cmd 2>/dev/null", MISER), 127);
    cr_assert_eq(test_sh("%s profile --bogus -- true 2>/dev/null", MISER), 2);
    cr_assert_eq(test_sh("%s profile --format none --json %s/k.json -- %s kill 9 2>%s/err", MISER, s.dir, s.bin, s.dir),
                 128 + 9);
    miser_profile *p = load(&s, "k.json");
    miser_profile_exit e = miser_profile_exit_status(p);
    cr_assert(e.signaled);
    cr_assert_eq(e.signal, 9);
    const miser_stage_record *a = miser_profile_find_stage(p, "a");
    cr_assert(a, "the profile so far is kept");
    cr_assert_str_eq(a->description, "before the signal");
    char path[128];
    snprintf(path, sizeof path, "%s/err", s.dir);
    cr_assert(strstr(slurp(path), "signal 9"));
    miser_profile_free(p);
    sandbox_free(&s);
}

Test(profiler_watch, study_stdout_lines_pass_through, .timeout = 60)
{
    sandbox s;
    sandbox_init(&s, 0);
    const char *lines = "hello\n"
                        "[STAGE] 0_INITIAL: 772.00 MB (swap: 0.00 MB) - Initial state\n"
                        "[STAGE] 1_MODEL_LOADED: 2533.10 MB (swap: 0.00 MB) - Model loaded\n"
                        "[STAGE] broken line\n"
                        "no newline at the end";
    char path[128];
    snprintf(path, sizeof path, "%s/expected", s.dir);
    FILE *f = fopen(path, "w");
    fputs(lines, f);
    fclose(f);
    cr_assert_eq(test_sh("%s profile --format none --json %s/p.json -- sh -c 'cat %s; sleep 0.2' > %s/out 2>%s/err", MISER, s.dir, path, s.dir,
                    s.dir),
                 0);
    snprintf(path, sizeof path, "%s/out", s.dir);
    cr_assert_str_eq(slurp(path), lines, "stdout must pass through byte for byte");
    snprintf(path, sizeof path, "%s/err", s.dir);
    cr_assert(strstr(slurp(path), "malformed [STAGE] line"));
    miser_profile *p = load(&s, "p.json");
    const miser_stage_record *a = miser_profile_find_stage(p, "0_INITIAL"), *b = miser_profile_find_stage(p, "1_MODEL_LOADED");
    cr_assert(a && b);
    cr_assert_str_eq(b->description, "Model loaded");
    cr_assert_str_eq(miser_stage_get(b, "reported_rss_mb"), "2533.10");
    cr_assert_gt(a->rss_kb, 0);
    miser_profile_free(p);
    sandbox_free(&s);
}

static void check_lang_markers(const miser_profile *p)
{
    const miser_stage_record *s0 = miser_profile_find_stage(p, "0_INITIAL");
    const miser_stage_record *s1 = miser_profile_find_stage(p, "1_MODEL_LOADED");
    const miser_stage_record *s3 = miser_profile_find_stage(p, "3_FIRST_INFERENCE");
    cr_assert(s0 && s1 && s3);
    cr_assert_str_eq(s1->description, "loaded \"big\" buffer");
    cr_assert_str_eq(miser_stage_get(s3, "tokens"), "9");
    cr_assert_str_eq(miser_stage_get(s3, "text"), "Hello, I am a \"model\"\nand more");
    /* The child allocated 32 MB between 0 and 1. */
    cr_assert_geq(s1->anon_kb - s0->anon_kb, 30 * 1024);
    cr_assert_eq(miser_profile_warning_count(p), 0);
}

Test(profiler_watch, markers_from_c_python_node, .timeout = 60)
{
    sandbox s;
    sandbox_init(&s, 0);
    /* C */
    char src[160], cmd[512];
    snprintf(src, sizeof src, "%s/m.c", s.dir);
    FILE *f = fopen(src, "w");
    fputs("#include \"miser_marker.h\"\nint main(void){ miser_marker(\"0_INITIAL\", \"start\", NULL);\n"
          "char *p = malloc(32u<<20); memset(p, 1, 32u<<20);\n"
          "miser_marker(\"1_MODEL_LOADED\", \"loaded \\\"big\\\" buffer\", NULL);\n"
          "miser_marker(\"3_FIRST_INFERENCE\", NULL, \"tokens=9 text=\\\"Hello, I am a \\\\\\\"model\\\\\\\"\\\\nand more\\\"\");\n"
          "free(p); return 0; }\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cc -w -I%s/tools/markers -o %s/m %s", MISER_SOURCE_DIR, s.dir, src);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(test_sh("%s profile -i 0 --format none --json %s/c.json -- %s/m", MISER, s.dir, s.dir), 0);
    miser_profile *p = load(&s, "c.json");
    check_lang_markers(p);
    miser_profile_free(p);
    /* Python (Debian's interpreter) */
    cr_assert_eq(test_sh("%s profile -i 0 --format none --json %s/py.json -- /usr/bin/python3 -c '"
                    "import sys; sys.path.insert(0, \"%s/tools/markers\"); from miser_marker import marker\n"
                    "marker(\"0_INITIAL\", \"start\")\nb = bytearray(32 << 20)\nb[::4096] = bytes([1]) * len(b[::4096])\n"
                    "marker(\"1_MODEL_LOADED\", \"loaded \\\"big\\\" buffer\")\n"
                    "marker(\"3_FIRST_INFERENCE\", tokens=9, text=\"Hello, I am a \\\"model\\\"\\nand more\")'",
                    MISER, s.dir, MISER_SOURCE_DIR),
                 0);
    p = load(&s, "py.json");
    check_lang_markers(p);
    miser_profile_free(p);
    /* node */
    if (access("/usr/bin/node", X_OK) == 0) {
        cr_assert_eq(test_sh("%s profile -i 0 --format none --json %s/js.json -- /usr/bin/node -e '"
                        "const { marker } = require(\"%s/tools/markers/miser_marker.js\");\n"
                        "marker(\"0_INITIAL\", \"start\");\nconst b = Buffer.alloc(32 << 20, 1);\n"
                        "marker(\"1_MODEL_LOADED\", \"loaded \\\"big\\\" buffer\");\n"
                        "marker(\"3_FIRST_INFERENCE\", null, { tokens: 9, text: \"Hello, I am a \\\"model\\\"\\nand more\" });\n"
                        "if (b[5] !== 1) process.exit(3);'",
                        MISER, s.dir, MISER_SOURCE_DIR),
                     0);
        p = load(&s, "js.json");
        check_lang_markers(p);
        miser_profile_free(p);
    } else
        test_note("node not installed: node markers not tested");
    sandbox_free(&s);
}

Test(profiler_watch, malformed_markers_warned_and_skipped, .timeout = 60)
{
    sandbox s;
    sandbox_init(&s, 0);
    cr_assert_eq(test_sh("%s profile -i 0 --format none --json %s/p.json -- /bin/sh -c '"
                    "echo \"stage good1\" >&$MISER_MARKER_FD; echo \"nonsense\" >&$MISER_MARKER_FD; "
                    "echo \"stage bad! x=1\" >&$MISER_MARKER_FD; echo \"stage b x=\\\"open\" >&$MISER_MARKER_FD; "
                    "echo \"stage good2 k=v\" >&$MISER_MARKER_FD' 2>%s/err",
                    MISER, s.dir, s.dir),
                 0);
    miser_profile *p = load(&s, "p.json");
    cr_assert_eq(miser_profile_stage_count(p), 3); /* good1, good2, implicit exit */
    cr_assert_str_eq(miser_profile_stage(p, 0)->name, "good1");
    cr_assert_str_eq(miser_profile_stage(p, 1)->name, "good2");
    cr_assert_str_eq(miser_stage_get(miser_profile_stage(p, 1), "k"), "v");
    cr_assert(miser_profile_stage(p, 2)->implicit);
    cr_assert_eq(miser_profile_warning_count(p), 3);
    char path[128];
    snprintf(path, sizeof path, "%s/err", s.dir);
    const char *err = slurp(path);
    cr_assert(strstr(err, "malformed marker skipped"));
    cr_assert(strstr(err, "nonsense"));
    miser_profile_free(p);
    sandbox_free(&s);
}

Test(profiler_watch, time_marks_and_library_call, .timeout = 60)
{
    miser_time_mark tm[2] = {{0.10, "late", "second"}, {0.05, "early", "first"}};
    miser_watch_options o = {0};
    o.sample_interval_ms = 5;
    o.time_marks = tm;
    o.ntime_marks = 2;
    char *argv[] = {"sleep", "0.3", NULL};
    miser_profile *p = NULL;
    cr_assert_eq(miser_profile_command(&o, argv, &p), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_profile_stage_count(p), 3);
    const miser_stage_record *a = miser_profile_stage(p, 0), *b = miser_profile_stage(p, 1);
    cr_assert_str_eq(a->name, "early");
    cr_assert_str_eq(b->name, "late");
    cr_assert(a->t_s >= 0.05 && a->t_s < 0.09, "t=%f", a->t_s);
    cr_assert(b->t_s >= 0.10 && b->t_s < 0.14, "t=%f", b->t_s);
    cr_assert_gt(miser_profile_sample_count(p), 20);
    cr_assert_eq(miser_profile_exit_status(p).exited, 1);
    cr_assert_eq(miser_profile_exit_status(p).code, 0);
    miser_profile_free(p);
}

/* ---------- in-process ---------- */

Test(profiler_inproc, exact_peak_of_a_freed_spike)
{
    miser_profiler *pr;
    miser_profiler_options o = {.sample_interval_ms = 0};
    cr_assert_eq(miser_profiler_start(&o, &pr), MISER_OK);
    cr_assert_eq(miser_profiler_stage(pr, "a", "before"), MISER_OK);
    size_t sz = 16u << 20;
    char *m = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < sz; i += 4096) m[i] = 1;
    munmap(m, sz);
    cr_assert_eq(miser_profiler_stage(pr, "b", "after"), MISER_OK);
    miser_profile *p;
    cr_assert_eq(miser_profiler_stop(pr, &p), MISER_OK);
    const miser_stage_record *a = miser_profile_find_stage(p, "a"), *b = miser_profile_find_stage(p, "b");
    cr_assert(b->peak_exact);
    cr_assert_str_eq(miser_profile_peak_method(p), "hwm-reset");
    cr_assert_geq(b->peak_rss_kb - a->rss_kb, 16 * 1024 - 512);
    cr_assert_lt(b->rss_kb - a->rss_kb, 2048);
    cr_assert_gt(b->minflt - a->minflt, 4000); /* 4096 pages were faulted in */
    miser_profile_free(p);
}

Test(profiler_inproc, fallback_without_reset_is_flagged)
{
    miser_profiler *pr;
    miser_profiler_options o = {.no_hwm_reset = 1};
    cr_assert_eq(miser_profiler_start(&o, &pr), MISER_OK);
    cr_assert_eq(miser_profiler_stage(pr, "a", NULL), MISER_OK);
    size_t sz = 16u << 20;
    char *m = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < sz; i += 4096) m[i] = 1;
    munmap(m, sz);
    cr_assert_eq(miser_profiler_stage(pr, "b", NULL), MISER_OK);
    miser_profile *p;
    cr_assert_eq(miser_profiler_stop(pr, &p), MISER_OK);
    const miser_stage_record *a = miser_profile_find_stage(p, "a"), *b = miser_profile_find_stage(p, "b");
    cr_assert_not(b->peak_exact);
    cr_assert_str_eq(miser_profile_peak_method(p), "marks-only");
    cr_assert_geq(miser_profile_warning_count(p), 1);
    /* Without the reset, the marks alone cannot see the spike. */
    cr_assert_lt(b->peak_rss_kb - a->rss_kb, 8 * 1024);
    miser_profile_free(p);
}

Test(profiler_inproc, allocator_counters_sampler_and_roundtrip)
{
    miser_profiler *pr;
    miser_profiler_options o = {.sample_interval_ms = 1, .pss = 1};
    cr_assert_eq(miser_profiler_start(&o, &pr), MISER_OK);
    cr_assert_eq(miser_profiler_stage(pr, "0_INITIAL", "start"), MISER_OK);
    size_t sz = 32u << 20;
    char *buf = miser_malloc(MISER_MEM_SCRATCH, sz);
    cr_assert(buf);
    memset(buf, 1, sz);
    usleep(20000);
    cr_assert_eq(miser_profiler_stage_data(pr, "1_MODEL_LOADED", "allocated", "tokens=3 text=\"a b c d\""), MISER_OK);
    miser_free(buf);
    cr_assert_eq(miser_profiler_stage(pr, "5_FINAL", "freed"), MISER_OK);
    cr_assert_eq(miser_profiler_stage_data(pr, "x", NULL, "bad=\"open"), MISER_ERR_FORMAT);
    cr_assert_eq(miser_profiler_stage(pr, "bad name", NULL), MISER_ERR_INVALID);
    miser_profile *p;
    cr_assert_eq(miser_profiler_stop(pr, &p), MISER_OK);
    const miser_stage_record *s0 = miser_profile_find_stage(p, "0_INITIAL"), *s1 = miser_profile_find_stage(p, "1_MODEL_LOADED"),
                             *s5 = miser_profile_find_stage(p, "5_FINAL");
    cr_assert(s1->has_alloc);
    cr_assert_geq(s1->alloc[MISER_MEM_SCRATCH].current - s0->alloc[MISER_MEM_SCRATCH].current, sz);
    cr_assert_geq(s5->alloc[MISER_MEM_SCRATCH].peak, sz, "peak within the interval in which it was freed");
    cr_assert_lt(s5->alloc[MISER_MEM_SCRATCH].current, sz);
    cr_assert_geq(s1->anon_kb - s0->anon_kb, 31 * 1024);
    cr_assert_gt(s1->pss_kb, 0);
    cr_assert_gt(miser_profile_sample_count(p), 10);
    cr_assert_str_eq(miser_stage_get(s1, "text"), "a b c d");

    /* Round trip through JSON: every field that the writer emits comes back. */
    char path[] = "/tmp/miser-prof-rt-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    cr_assert_eq(miser_profile_write_file(p, MISER_REPORT_JSON, path), MISER_OK, "%s", miser_error_message());
    miser_profile *q;
    cr_assert_eq(miser_profile_load_json(path, &q), MISER_OK, "%s", miser_error_message());
    unlink(path);
    cr_assert_eq(miser_profile_stage_count(q), miser_profile_stage_count(p));
    for (size_t i = 0; i < miser_profile_stage_count(p); i++) {
        const miser_stage_record *x = miser_profile_stage(p, i), *y = miser_profile_stage(q, i);
        cr_assert_str_eq(x->name, y->name);
        cr_assert_str_eq(x->description, y->description);
        cr_assert_eq(x->rss_kb, y->rss_kb);
        cr_assert_eq(x->anon_kb, y->anon_kb);
        cr_assert_eq(x->peak_rss_kb, y->peak_rss_kb);
        cr_assert_eq(x->peak_sampled_kb, y->peak_sampled_kb);
        cr_assert_eq(x->pss_kb, y->pss_kb);
        cr_assert_eq(x->implicit, y->implicit);
        cr_assert_eq(x->alloc[MISER_MEM_SCRATCH].peak, y->alloc[MISER_MEM_SCRATCH].peak);
        cr_assert_float_eq(x->t_s, y->t_s, 1e-6);
        cr_assert_eq(x->nkv, y->nkv);
    }
    cr_assert_eq(miser_profile_sample_count(q), miser_profile_sample_count(p));
    miser_profile_metrics m1, m2;
    miser_profile_metrics_compute(p, &m1);
    miser_profile_metrics_compute(q, &m2);
    cr_assert_float_eq(m1.model_loading_mb, m2.model_loading_mb, 1e-9);
    cr_assert_float_eq(m1.peak_rss_mb, m2.peak_rss_mb, 1e-9);
    miser_profile_free(p);
    miser_profile_free(q);
}

/* ---------- metrics, reports, check ---------- */

/* A hand-written profile in the documented schema; expected figures below
 * are worked out from the study's definitions, not from miser's output. */
static const char study_json[] =
    "{\"schema\": \"miser-profile\", \"version\": 1, \"mode\": \"command\", \"label\": \"keras\", "
    "\"peak_method\": \"hwm-reset\", \"sample_interval_ms\": 20, "
    "\"exit\": {\"exited\": true, \"code\": 0, \"signaled\": false, \"signal\": 0}, \"stages\": ["
    "{\"name\": \"0_INITIAL\", \"t_s\": 1.0, \"rss_kb\": 102400, \"anon_kb\": 81920, \"file_kb\": 20480, "
    "  \"swap_kb\": 0, \"peak_rss_kb\": 102400, \"peak_exact\": true},"
    "{\"name\": \"1_MODEL_LOADED\", \"t_s\": 3.0, \"rss_kb\": 1126400, \"anon_kb\": 184320, \"file_kb\": 942080, "
    "  \"swap_kb\": 0, \"peak_rss_kb\": 1146880, \"peak_exact\": true},"
    "{\"name\": \"2_BEFORE_INFERENCE\", \"t_s\": 3.5, \"rss_kb\": 1126400, \"anon_kb\": 184320, \"file_kb\": 942080, "
    "  \"swap_kb\": 0, \"peak_rss_kb\": 1126400, \"peak_exact\": true},"
    "{\"name\": \"3_FIRST_INFERENCE\", \"t_s\": 9.5, \"rss_kb\": 2150400, \"anon_kb\": 1208320, \"file_kb\": 942080, "
    "  \"swap_kb\": 10240, \"peak_rss_kb\": 3174400, \"peak_exact\": true, "
    "  \"data\": {\"text\": \"Hello, I am a model of\", \"tokens\": \"9\", \"ttft_s\": \"5.0\"}},"
    "{\"name\": \"4_SECOND_INFERENCE\", \"t_s\": 11.0, \"rss_kb\": 2150400, \"anon_kb\": 1208320, \"file_kb\": 942080, "
    "  \"swap_kb\": 0, \"peak_rss_kb\": 2160640, \"peak_exact\": true, \"data\": {\"seconds\": \"1.2\", \"tokens\": \"9\"}},"
    "{\"name\": \"5_FINAL\", \"t_s\": 11.5, \"rss_kb\": 2048000, \"anon_kb\": 1105920, \"file_kb\": 942080, "
    "  \"swap_kb\": 0, \"peak_rss_kb\": 2150400, \"peak_exact\": true}],"
    "\"timeline\": {\"rows\": [[5.0, 2662400, 1720320, 942080, 0, null], [6.0, 1536000, 593920, 942080, 0, null]]}}";

Test(profiler_report, study_metrics_by_definition)
{
    miser_profile *p;
    cr_assert_eq(miser_profile_parse_json(study_json, strlen(study_json), &p), MISER_OK, "%s", miser_error_message());
    miser_profile_metrics m;
    miser_profile_metrics_compute(p, &m);
    cr_assert_float_eq(m.model_loading_mb, 1000.0, 1e-9); /* 1100 - 100 */
    cr_assert_float_eq(m.compilation_mb, 1000.0, 1e-9);   /* 2100 - 1100 */
    cr_assert_float_eq(m.total_growth_mb, 1900.0, 1e-9);  /* 2000 - 100 */
    cr_assert_float_eq(m.peak_ram_mb, 2500.0, 1e-9);      /* max polled 2600 - 100 */
    cr_assert_float_eq(m.peak_swap_mb, 10.0, 1e-9);
    cr_assert_float_eq(m.first_inference_s, 6.0, 1e-9);   /* 9.5 - 3.5 */
    cr_assert_float_eq(m.second_inference_s, 1.2, 1e-9);  /* the child's own figure */
    cr_assert_float_eq(m.speedup, 5.0, 1e-9);
    cr_assert_float_eq(m.throughput_tok_s, 6.0 / 6.0, 1e-9); /* 6 words / 6 s */
    cr_assert_float_eq(m.peak_rss_mb, 3100.0, 1e-9);         /* exact peaks see what polling missed */
    cr_assert_float_eq(m.peak_growth_mb, 3000.0, 1e-9);
    cr_assert_float_eq(m.model_loading_anon_mb, 100.0, 1e-9);
    cr_assert_float_eq(m.model_loading_file_mb, 900.0, 1e-9);
    cr_assert_float_eq(m.compilation_anon_mb, 1000.0, 1e-9);
    cr_assert_float_eq(m.compile_peak_mb, 2000.0, 1e-9); /* 3100 - 1100 */
    cr_assert_float_eq(m.throughput_tokens_s, 1.5, 1e-9);
    cr_assert_float_eq(m.decode_tok_s, 8.0, 1e-9); /* (9-1) / (6-5) */
    cr_assert_float_eq(m.second_decode_tok_s, 7.5, 1e-9);
    cr_assert(m.peaks_exact);
    miser_profile_free(p);
}

Test(profiler_report, all_formats_and_atomic_files)
{
    miser_profile *p;
    cr_assert_eq(miser_profile_parse_json(study_json, strlen(study_json), &p), MISER_OK);
    char dir[] = "/tmp/miser-prof-rep-XXXXXX";
    cr_assert(mkdtemp(dir));
    const char *ext[] = {"txt", "json", "csv", "md", "svg"};
    for (int f = 0; f <= MISER_REPORT_SVG; f++) {
        char path[128];
        snprintf(path, sizeof path, "%s/r.%s", dir, ext[f]);
        FILE *o = fopen(path, "w");
        fputs("old content", o);
        fclose(o);
        cr_assert_eq(miser_profile_write_file(p, (miser_report_format)f, path), MISER_OK);
        const char *t = slurp(path);
        cr_assert(!strstr(t, "old content"));
        if (f == MISER_REPORT_TABLE) cr_assert(strstr(t, "[STAGE] 1_MODEL_LOADED: 1100.00 MB (swap: 0.00 MB) - \n"));
        if (f == MISER_REPORT_CSV) cr_assert(strstr(t, "\"3_FIRST_INFERENCE\",0,9.500000,"));
        if (f == MISER_REPORT_MARKDOWN) cr_assert(strstr(t, "| 1000.00 | 1000.00 | 2500.00 |"));
        if (f == MISER_REPORT_SVG) {
            cr_assert(!strncmp(t, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39));
            cr_assert(strstr(t, "</svg>\n"));
        }
    }
    /* Valid SVG/XML when python's parser is present. */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c 'import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])' %s/r.svg",
             dir);
    if (access("/usr/bin/python3", X_OK) == 0) cr_assert_eq(test_sh("%s", cmd), 0);
    /* No temporary left behind; an unwritable path leaves nothing. */
    cr_assert_eq(test_sh("ls %s | grep -c tmp > /dev/null", dir), 1); /* grep -c prints 0 and exits 1 */
    cr_assert_neq(miser_profile_write_file(p, MISER_REPORT_JSON, "/nonexistent-dir/r.json"), MISER_OK);
    cr_assert_neq(access("/nonexistent-dir", F_OK), 0);
    FILE *full = fopen("/dev/full", "w");
    if (full) {
        cr_assert_eq(miser_profile_write(p, MISER_REPORT_JSON, full), MISER_ERR_IO);
        fclose(full);
    }
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    cr_assert_eq(system(rm), 0);
    miser_profile_free(p);
}

Test(profiler_report, load_rejects_bad_files)
{
    miser_profile *p = NULL;
    cr_assert_eq(miser_profile_parse_json("{", 1, &p), MISER_ERR_FORMAT);
    const char *other = "{\"schema\": \"x\", \"version\": 1, \"stages\": []}";
    cr_assert_eq(miser_profile_parse_json(other, strlen(other), &p), MISER_ERR_FORMAT);
    const char *newer = "{\"schema\": \"miser-profile\", \"version\": 99, \"stages\": []}";
    cr_assert_eq(miser_profile_parse_json(newer, strlen(newer), &p), MISER_ERR_UNSUPPORTED);
    const char *badname = "{\"schema\": \"miser-profile\", \"version\": 1, \"stages\": [{\"name\": \"a b\"}]}";
    cr_assert_eq(miser_profile_parse_json(badname, strlen(badname), &p), MISER_ERR_FORMAT);
    cr_assert_eq(miser_profile_load_json("/nonexistent/p.json", &p), MISER_ERR_IO);
    cr_assert_null(p);
}

/* A number that overflows a double (1e999 parses as infinity) or is far out
 * of any profile's range is refused by name; it once reached the timeline's
 * axis arithmetic and made its tick loop run forever (found by fuzzing). A
 * large value the loader accepts still renders, in bounded time. */
Test(profiler_report, load_rejects_overflowed_numbers, .timeout = 20)
{
    static const char *bad[] = {
        "{\"schema\": \"miser-profile\", \"version\": 1, \"stages\": [{\"name\": \"a\", \"t_s\": 1e999}]}",
        "{\"schema\": \"miser-profile\", \"version\": 1, \"stages\": [{\"name\": \"a\", \"cpu_s\": 1e300}]}",
        "{\"schema\": \"miser-profile\", \"version\": 1, \"started_unix\": -1e999, \"stages\": []}",
        "{\"schema\": \"miser-profile\", \"version\": 1, \"exit\": {\"code\": 1e30}, \"stages\": []}",
        "{\"schema\": \"miser-profile\", \"version\": 1, \"stages\": [], \"timeline\": {\"rows\": "
        "[[1e999, 1, 1, 1, 0, null]]}}",
        "{\"schema\": \"miser-profile\", \"version\": 1, \"stages\": [], \"timeline\": {\"rows\": "
        "[[1, 1e999, 1, 1, 0, null]]}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        miser_profile *p = NULL;
        cr_assert_eq(miser_profile_parse_json(bad[i], strlen(bad[i]), &p), MISER_ERR_FORMAT, "accepted: %s", bad[i]);
        cr_assert_null(p);
        cr_assert(strstr(miser_error_message(), "out of range") || strstr(miser_error_message(), "row"), "%s",
                  miser_error_message());
    }
    const char *big = "{\"schema\": \"miser-profile\", \"version\": 1, \"stages\": [{\"name\": \"a\", "
                      "\"t_s\": 9e11, \"rss_kb\": 9e17}], \"timeline\": {\"rows\": [[9e11, 9e17, 1, 1, 0, null]]}}";
    miser_profile *p = NULL;
    cr_assert_eq(miser_profile_parse_json(big, strlen(big), &p), MISER_OK, "%s", miser_error_message());
    FILE *f = fopen("/dev/null", "w");
    cr_assert(f);
    cr_assert_eq(miser_profile_write(p, MISER_REPORT_SVG, f), MISER_OK);
    cr_assert_eq(miser_profile_write(p, MISER_REPORT_HTML, f), MISER_OK);
    fclose(f);
    miser_profile_free(p);
}

Test(profiler_check, regression_exit_codes, .timeout = 60)
{
    char dir[] = "/tmp/miser-prof-chk-XXXXXX";
    cr_assert(mkdtemp(dir));
    char base[128], same[128], worse[128];
    snprintf(base, sizeof base, "%s/base.json", dir);
    snprintf(same, sizeof same, "%s/same.json", dir);
    snprintf(worse, sizeof worse, "%s/worse.json", dir);
    FILE *f = fopen(base, "w");
    fputs(study_json, f);
    fclose(f);
    f = fopen(same, "w");
    fputs(study_json, f);
    fclose(f);
    /* The same run with the compile peak 3100 -> 3600 MB (+16 %). */
    char *w = strdup(study_json);
    char *at = strstr(w, "\"peak_rss_kb\": 3174400");
    cr_assert(at);
    memcpy(at, "\"peak_rss_kb\": 3686400", 22);
    f = fopen(worse, "w");
    fputs(w, f);
    fclose(f);
    free(w);
    miser_profile *pb, *pw;
    cr_assert_eq(miser_profile_load_json(base, &pb), MISER_OK);
    cr_assert_eq(miser_profile_load_json(worse, &pw), MISER_OK);
    miser_check_result r;
    miser_check_options o = {0.10, 8, 0, 0, 0};
    miser_profile_check(pb, pw, &o, &r);
    cr_assert_geq(r.regressions, 1);
    int found = 0;
    for (size_t i = 0; i < r.n; i++)
        if (!strcmp(r.items[i].metric, "compile_peak_mb")) {
            found = 1;
            cr_assert(r.items[i].regressed);
            cr_assert_float_eq(r.items[i].current, 2500.0, 1e-9);
        } else if (!strcmp(r.items[i].metric, "model_loading_mb"))
            cr_assert_not(r.items[i].regressed);
    cr_assert(found);
    miser_profile_check(pb, pb, &o, &r);
    cr_assert_eq(r.regressions, 0);
    miser_profile_free(pb);
    miser_profile_free(pw);
    cr_assert_eq(test_sh("%s check --baseline %s %s > /dev/null", MISER, base, same), 0);
    cr_assert_eq(test_sh("%s check --baseline %s %s > /dev/null 2>&1", MISER, base, worse), 4);
    cr_assert_eq(test_sh("%s check --baseline %s --tolerance 30%% %s > /dev/null", MISER, base, worse), 0);
    cr_assert_eq(test_sh("%s check --baseline %s /nonexistent.json 2>/dev/null", MISER, base), 3);
    cr_assert_eq(test_sh("%s check %s 2>/dev/null", MISER, base), 2);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    cr_assert_eq(system(rm), 0);
}

/* A child that announces each stage both on stdout and on the marker pipe
 * (as the peer adapters do) gets one record per stage, carrying the pipe's
 * data, whichever channel is read first. */
Test(profiler_watch, stage_on_both_channels_recorded_once, .timeout = 60)
{
    sandbox s;
    sandbox_init(&s, 0);
    char path[160];
    snprintf(path, sizeof path, "%s/both.py", s.dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "import sys\nsys.path.insert(0, '%s/tools/markers')\nfrom miser_marker import marker\n"
               "for i, n in enumerate(['0_INITIAL', '1_MODEL_LOADED', '5_FINAL']):\n"
               "    print(f'[STAGE] {n}: 1.00 MB (swap: 0.00 MB) - d{i}', flush=True)\n"
               "    marker(n, f'd{i}', tokens=i)\n",
            MISER_SOURCE_DIR);
    fclose(f);
    cr_assert_eq(test_sh("%s profile --format none --json %s/p.json -- /usr/bin/python3 %s > /dev/null 2>&1", MISER, s.dir, path), 0);
    miser_profile *p = load(&s, "p.json");
    static const char *const names[3] = {"0_INITIAL", "1_MODEL_LOADED", "5_FINAL"};
    size_t n = miser_profile_stage_count(p), seen[3] = {0};
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 3; k++)
            if (!strcmp(miser_profile_stage(p, i)->name, names[k])) {
                seen[k]++;
                char want[16];
                snprintf(want, sizeof want, "%d", k);
                cr_assert_str_eq(miser_stage_get(miser_profile_stage(p, i), "tokens"), want);
            }
    for (int k = 0; k < 3; k++) cr_assert_eq(seen[k], 1, "%s recorded %zu times", names[k], seen[k]);
    miser_profile_free(p);
    sandbox_free(&s);
}
