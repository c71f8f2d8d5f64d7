/* `miser compare`: the study's scenario on several runtimes, each run in its
 * own process under the out-of-process profiler (the same watcher for all),
 * on the same weights: miser (default and naive pipelines) and the peer
 * adapters of tools/peers (PyTorch, ONNX Runtime, llama.cpp), which follow
 * one contract (--prompt-ids, the six [STAGE] marks, --json-out with the
 * generated ids). Writes report.md, report.html and report.json to --out.
 *
 * Each runtime first makes one unrecorded warm-up run: the peers convert the
 * checkpoint (ONNX export, GGUF) into their cache on first use, and every
 * runtime then starts from the same warm page cache.
 *
 * Precisions (--precision LIST; by default f32, f16 and q8_0 for a
 * Llama-family checkpoint, the weights as stored otherwise): one row per
 * runtime and precision, grouped by precision. miser's weights are converted
 * once into the precision cache before the first run
 * (miser_bench_prepare_precision, the path `miser bench --precision` and
 * `miser-bench e2e` take) and each run opens them with `miser bench --child
 * --precision P`; llama.cpp's adapter writes its GGUF from the same
 * checkpoint at P (tools/peers/to_gguf_llama.py, cached). Greedy tokens are
 * checked within each precision against that precision's miser row. */
#include "bench_cli.h"
#include "cli.h"
#include "miser/alloc.h"
#include "miser/bench.h"
#include "miser/model.h"
#include "miser/profiler.h"
#include "miser/tokenizer.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: miser compare [--model DIR] [options]\n"
            "\n"
            "Run the memory study's scenario (\"Hello\" then \"Test\", greedy, max_length 10) on each\n"
            "runtime in its own process under `miser profile`, on the same weights, and write a\n"
            "report (Markdown + HTML with SVG charts): the study's CPU table, corrected and derived\n"
            "figures, variance, rankings and recommendations by memory tier, a greedy-token check\n"
            "against miser, the machine, and the study's published figures (another machine).\n"
            "\n"
            "Without --model: the synthetic GPT-2 medium-shaped checkpoint of `miser bench`.\n"
            "\n"
            "options:\n"
            "  --model DIR         checkpoint directory, or a GGUF file (miser and llama.cpp run it as\n"
            "                      it is; the PyTorch and ONNX Runtime adapters are skipped)\n"
            "  --runtimes LIST     comma-separated: miser, miser-naive, pytorch, onnxruntime, llamacpp\n"
            "                      (default: all)\n"
            "  --runs N            recorded runs per runtime (default 3; plus one warm-up run)\n"
            "  --prompt TEXT       first prompt (default \"Hello\")\n"
            "  --prompt2 TEXT      second prompt (default \"Test\")\n"
            "  --max-length N      total length counting the prompt (default 10)\n"
            "  --threads N         compute threads for every runtime (default: the CPUs available)\n"
            "  --precision LIST    comma-separated weight precisions, one row per runtime and precision\n"
            "                      (f32, f16, bf16, q8_0, q4_0, q4_k for miser; llama.cpp: f32, f16, q8_0,\n"
            "                      its GGUF written from the same checkpoint); default: f32,f16,q8_0 for a\n"
            "                      Llama-family checkpoint, the weights as stored otherwise. miser converts\n"
            "                      once into its precision cache before the runs; PyTorch and ONNX Runtime\n"
            "                      run in the f32 group only. Tokens are checked within each precision.\n"
            "  --out DIR           report directory, created with its parents (default ./miser-report)\n"
            "  --peers-dir DIR     peer adapters (default: the source tree's tools/peers;\n"
            "                      also $MISER_PEERS_DIR)\n"
            "  -h, --help          this help\n"
            "\n"
            "A peer that is not installed is skipped with a one-line message (install: `make peers`).\n"
            "The report folder (created with its parents), a named peers folder, the checkpoint and\n"
            "the prompts are checked before the first run, as `miser generate` checks them; no\n"
            "report is written when no runtime completed a run.\n"
            "exit codes: 0 ok, 1 a runtime failed, tokens disagree, nothing was measured or stdout\n"
            "            could not be written, 2 bad options (a --out that cannot be written, a\n"
            "            --peers-dir that is not a peers folder, --max-length past the context, an\n"
            "            unknown --precision or one given with a GGUF file), 3 bad model or prompt.\n");
}

typedef struct runtime_def {
    const char *name;
    const char *interp;  /* NULL: miser itself */
    const char *script;
    const char *pipeline;
} runtime_def;

static const runtime_def all_runtimes[] = {
    {"miser", NULL, NULL, "default"},
    {"miser-naive", NULL, NULL, "naive"},
    {"pytorch", "/usr/bin/python3", "torch_gpt2.py", NULL},
    {"onnxruntime", "node", "ort_gpt2.js", NULL},
    {"llamacpp", "node", "llamacpp_gpt2.js", NULL},
};
#define N_RUNTIMES (sizeof all_runtimes / sizeof all_runtimes[0])

/* The adapters report ids, not text: the study's throughput (words of the
 * whole output text, prompt included, per first-inference second) is
 * computed here from the first generate's ids with miser's tokenizer. */
static void peer_throughput(const char *model_dir, const char *prompt, const char *result_path, miser_bench_run *run)
{
    static miser_bench_row tmp;
    memset(&tmp, 0, sizeof tmp);
    miser_tokenizer *tok = NULL;
    char *text = NULL;
    size_t tlen = 0;
    if (!isnan(run->m.throughput_tok_s) || !(run->m.first_inference_s > 0)) return;
    if (miser_bench_load_result(result_path, &tmp) || miser_tokenizer_open(model_dir, &tok) ||
        miser_tokenizer_decode(tok, tmp.ids[0], tmp.nids[0], &text, &tlen)) {
        miser_tokenizer_free(tok);
        return;
    }
    size_t plen = strlen(prompt);
    char *whole = miser_malloc(MISER_MEM_SCRATCH, plen + tlen + 1);
    if (whole) {
        memcpy(whole, prompt, plen);
        memcpy(whole + plen, text, tlen + 1);
        run->m.throughput_tok_s = (double)miser_text_word_count(whole) / run->m.first_inference_s;
    }
    miser_free(whole);
    miser_free(text);
    miser_tokenizer_free(tok);
}

/* A peers folder someone named (--peers-dir or $MISER_PEERS_DIR) must be
 * one: a directory holding at least one adapter. A wrong folder is a bad
 * command line, never "PyTorch is not installed". */
static int check_peers_dir(const char *cmd, const char *from, const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
        miser_cli_error(cmd, "%s %s: %s", from, dir, stat(dir, &sb) ? strerror(errno) : strerror(ENOTDIR));
        return MISER_EXIT_USAGE;
    }
    char p[4200];
    for (size_t i = 0; i < N_RUNTIMES; i++) {
        if (!all_runtimes[i].script) continue;
        snprintf(p, sizeof p, "%s/%s", dir, all_runtimes[i].script);
        if (access(p, R_OK) == 0) return MISER_EXIT_OK;
    }
    miser_cli_error(cmd, "%s %s is not a peers folder: it holds none of torch_gpt2.py, ort_gpt2.js, llamacpp_gpt2.js "
                    "(the default is the source tree's tools/peers)", from, dir);
    return MISER_EXIT_USAGE;
}

static void on_warning(const char *msg, void *ctx)
{
    fprintf(stderr, "miser compare: %s: %s\n", (const char *)ctx, msg);
}

/* Run one runtime once under the watcher. Returns the child's exit code
 * (127: could not start) and hands the profile to *out. */
static int run_once(const char *cmd, char *const argv[], const char *label, miser_profile **out)
{
    miser_watch_options o = {0};
    o.sample_interval_ms = 20; /* the study polled RSS every 20 ms */
    o.marker_pipe = 1;         /* stage marks with the adapters' data (seconds=, tokens=, ttft_s=) */
    o.stdout_markers = 0;      /* their [STAGE] lines go to our stdout unchanged */
    o.stdout_fd = 1;
    o.on_warning = on_warning;
    o.ctx = (void *)label;
    fflush(stdout);
    *out = NULL;
    if (miser_profile_command(&o, argv, out)) {
        miser_cli_error(cmd, "%s: %s", label, miser_error_message());
        return 127;
    }
    miser_profile_exit ex = miser_profile_exit_status(*out);
    if (ex.signaled) return 128 + ex.signal;
    return ex.exited ? ex.code : 1;
}

#define MAX_PRECISIONS 6

/* --precision LIST into precs[] (pointers into buf), duplicates dropped;
 * a name miser does not convert to is a bad command line. */
static int parse_precisions(const char *cmd, const char *list, char *buf, size_t cap, const char **precs, size_t *n)
{
    *n = 0;
    if (strlen(list) >= cap) {
        miser_cli_error(cmd, "--precision: list too long");
        return MISER_EXIT_USAGE;
    }
    memcpy(buf, list, strlen(list) + 1);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        miser_dtype dt;
        if (miser_dtype_parse(t, &dt) || dt == MISER_DTYPE_I32 || dt == MISER_DTYPE_Q6_K) {
            miser_cli_error(cmd, "--precision: unknown precision '%s' (f32, f16, bf16, q8_0, q4_0, q4_k)", t);
            return MISER_EXIT_USAGE;
        }
        int dup = 0;
        for (size_t i = 0; i < *n; i++) dup |= !strcmp(precs[i], t);
        if (dup) continue;
        if (*n == MAX_PRECISIONS) {
            miser_cli_error(cmd, "--precision: at most %d precisions", MAX_PRECISIONS);
            return MISER_EXIT_USAGE;
        }
        precs[(*n)++] = t;
    }
    if (!*n) {
        miser_cli_error(cmd, "--precision lists no precision");
        return MISER_EXIT_USAGE;
    }
    return MISER_EXIT_OK;
}

static int cmd_compare(int argc, char **argv)
{
    const char *cmd = "compare";
    const char *model_dir = NULL, *prompt = "Hello", *prompt2 = "Test", *out_dir = "miser-report";
    const char *runtimes = NULL, *peers_dir = getenv("MISER_PEERS_DIR"), *peers_from = "MISER_PEERS_DIR";
    const char *precisions = NULL;
    long long runs = 3, max_length = 10, threads = miser_cli_default_threads();
    if (!peers_dir || !*peers_dir) peers_dir = NULL;
    enum { O_RT = 256, O_RUNS, O_P2, O_MAXLEN, O_THREADS, O_OUT, O_PEERS, O_PREC };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"prompt", required_argument, 0, 'p'},
        {"prompt2", required_argument, 0, O_P2},    {"runtimes", required_argument, 0, O_RT},
        {"runs", required_argument, 0, O_RUNS},     {"max-length", required_argument, 0, O_MAXLEN},
        {"threads", required_argument, 0, O_THREADS}, {"out", required_argument, 0, O_OUT},
        {"peers-dir", required_argument, 0, O_PEERS}, {"precision", required_argument, 0, O_PREC},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c, li = -1;
    /* li is reset each time: getopt_long sets it only for long options */
    for (; (c = getopt_long(argc, argv, ":hm:p:", opts, &li)) != -1; li = -1) {
        int bad = 0;
        switch (c) {
        case 'h': usage(stdout); return MISER_EXIT_OK;
        case 'm': model_dir = optarg; break;
        case 'p': prompt = optarg; break;
        case O_P2: prompt2 = optarg; break;
        case O_RT: runtimes = optarg; break;
        case O_RUNS: bad = miser_cli_parse_i64(optarg, 1, MISER_BENCH_MAX_RUNS, &runs); break;
        case O_MAXLEN: bad = miser_cli_parse_i64(optarg, 2, 1 << 20, &max_length); break;
        case O_THREADS: bad = miser_cli_parse_i64(optarg, 1, 256, &threads); break;
        case O_OUT: out_dir = optarg; break;
        case O_PREC: precisions = optarg; break;
        case O_PEERS:
            peers_dir = optarg;
            peers_from = "--peers-dir";
            break;
        default: return miser_cli_option_error(cmd, c, argv);
        }
        if (bad) return miser_cli_value_error(cmd, opts, li, optarg);
    }
    if (optind < argc) {
        miser_cli_error(cmd, "unexpected argument '%s'", argv[optind]);
        return MISER_EXIT_USAGE;
    }
    /* Which runtimes, in the order asked. */
    const runtime_def *sel[N_RUNTIMES];
    size_t nsel = 0;
    if (!runtimes) {
        for (size_t i = 0; i < N_RUNTIMES; i++) sel[nsel++] = &all_runtimes[i];
    } else {
        char list[512];
        snprintf(list, sizeof list, "%s", runtimes);
        char *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            const runtime_def *d = NULL;
            for (size_t i = 0; i < N_RUNTIMES; i++)
                if (!strcmp(t, all_runtimes[i].name)) d = &all_runtimes[i];
            if (!d) {
                miser_cli_error(cmd, "unknown runtime '%s' (miser, miser-naive, pytorch, onnxruntime, llamacpp)", t);
                return MISER_EXIT_USAGE;
            }
            int dup = 0;
            for (size_t i = 0; i < nsel; i++) dup |= sel[i] == d;
            if (!dup) sel[nsel++] = d;
        }
        if (!nsel) {
            miser_cli_error(cmd, "--runtimes lists no runtime");
            return MISER_EXIT_USAGE;
        }
    }
    /* Which precisions, in the order asked (NULL: the weights as stored, or
     * the Llama family's default, decided once the checkpoint is known). */
    char prec_buf[256];
    const char *precs[MAX_PRECISIONS];
    size_t nprec = 0;
    if (precisions) {
        int rc0 = parse_precisions(cmd, precisions, prec_buf, sizeof prec_buf, precs, &nprec);
        if (rc0) return rc0;
        const size_t ml = model_dir ? strlen(model_dir) : 0;
        if (ml > 5 && !strcmp(model_dir + ml - 5, ".gguf")) {
            miser_cli_error(cmd, "--precision does not apply to a GGUF file (miser and llama.cpp run it as stored)");
            return MISER_EXIT_USAGE;
        }
    }
    /* Everything the runs need is checked before the first one: the report
     * folder, the peers folder when one is named, the checkpoint and the
     * prompts (as `miser generate` checks them). */
    if (model_dir && !*model_dir) {
        miser_cli_error(cmd, "--model needs a directory (without --model: the synthetic checkpoint)");
        return MISER_EXIT_USAGE;
    }
    int rc = miser_cli_check_output_dir(cmd, "out", out_dir);
    if (rc) return rc;
    if (peers_dir) {
        rc = check_peers_dir(cmd, peers_from, peers_dir);
        if (rc) return rc;
    } else
        peers_dir = MISER_SOURCE_DIR "/tools/peers"; /* missing in an installed copy: each peer is skipped */
    char *p1 = NULL, *p2 = NULL;
    if ((rc = miser_bench_validate(cmd, model_dir, prompt, prompt2, max_length, &p1, &p2))) return rc;
    char synth_dir[4096];
    int synthetic = 0;
    if (!model_dir) {
        if ((rc = miser_bench_synthetic_dir(cmd, synth_dir, sizeof synth_dir))) goto early;
        model_dir = synth_dir;
        synthetic = 1;
    }
    /* a Llama-family checkpoint: llama.cpp through its Llama adapter; the
     * PyTorch and ONNX Runtime adapters are GPT-2 only */
    int llama = 0;
    {
        miser_model *mm = NULL;
        if (miser_model_open(model_dir, &mm) == MISER_OK) llama = !strcmp(miser_model_arch(mm), "llama");
        miser_model_free(mm);
    }
    if (!precisions && llama) /* issue 14's rows: f32, f16 and q8_0 beside llama.cpp on the same weights */
        parse_precisions(cmd, "f32,f16,q8_0", prec_buf, sizeof prec_buf, precs, &nprec);
    /* miser's weights at each precision, converted before any run */
    for (size_t k = 0; k < nprec; k++) {
        int any_miser = 0;
        for (size_t i = 0; i < nsel; i++) any_miser |= !sel[i]->interp;
        if (any_miser && (rc = miser_bench_prepare_precision(cmd, model_dir, precs[k]))) goto early;
    }
    /* The rows: each selected runtime per precision, grouped by precision
     * (group g holds rows [gstart[g], gstart[g + 1])); PyTorch and ONNX
     * Runtime run at f32 only, so they are listed in the f32 group. */
    const size_t ngroups = nprec ? nprec : 1;
    size_t gstart[MAX_PRECISIONS + 1];
    const runtime_def *job_def[N_RUNTIMES * MAX_PRECISIONS];
    const char *job_prec[N_RUNTIMES * MAX_PRECISIONS];
    size_t njobs = 0;
    int have_f32 = 0;
    for (size_t k = 0; k < nprec; k++) have_f32 |= !strcmp(precs[k], "f32");
    for (size_t g = 0; g < ngroups; g++) {
        gstart[g] = njobs;
        const char *pg = nprec ? precs[g] : NULL;
        for (size_t i = 0; i < nsel; i++) {
            const int f32_only = sel[i]->interp && strcmp(sel[i]->name, "llamacpp");
            if (f32_only && pg && strcmp(pg, "f32") && (have_f32 || g > 0)) continue;
            job_def[njobs] = sel[i];
            job_prec[njobs++] = pg;
        }
    }
    gstart[ngroups] = njobs;
    char made[4096];
    if (miser_cli_mkdirs(out_dir, made, sizeof made)) {
        rc = MISER_EXIT_USAGE;
        miser_cli_error(cmd, "cannot write --out %s: %s", out_dir, strerror(errno));
        goto early;
    }
    char tmpdir[] = "/tmp/miser-compare-XXXXXX";
    if (!mkdtemp(tmpdir)) {
        miser_cli_error(cmd, "mkdtemp: %s", strerror(errno));
        rc = MISER_EXIT_FAIL;
        miser_cli_rmdirs(out_dir, made);
        goto early;
    }
    miser_bench_row *rows = miser_calloc(MISER_MEM_OTHER, njobs, sizeof *rows);
    if (!rows) {
        miser_cli_error(cmd, "out of memory");
        rmdir(tmpdir);
        miser_cli_rmdirs(out_dir, made);
        rc = MISER_EXIT_FAIL;
        goto early;
    }
    char self[4096], maxlen[32], thr[32], script[4200], res[4200];
    miser_bench_self_exe(self, sizeof self);
    snprintf(maxlen, sizeof maxlen, "%lld", max_length);
    snprintf(thr, sizeof thr, "%lld", threads);
    int failed = 0;
    for (size_t r = 0; r < njobs; r++) {
        const runtime_def *d = job_def[r];
        const char *prec = job_prec[r];
        miser_bench_row *w = &rows[r];
        const int f32_only = d->interp && strcmp(d->name, "llamacpp"); /* PyTorch, ONNX Runtime */
        if (prec && !(f32_only && strcmp(prec, "f32"))) snprintf(w->name, sizeof w->name, "%s %s", d->name, prec);
        else snprintf(w->name, sizeof w->name, "%s", d->name);
        snprintf(res, sizeof res, "%s/%s-%zu.json", tmpdir, d->name, r);
        char *argvv[32];
        int a = 0;
        if (!d->interp) {
            argvv[a++] = self;
            argvv[a++] = "bench";
            argvv[a++] = "--child";
            argvv[a++] = "--model";
            argvv[a++] = (char *)model_dir;
            argvv[a++] = "--prompt";
            argvv[a++] = (char *)prompt;
            argvv[a++] = "--prompt2";
            argvv[a++] = (char *)prompt2;
            argvv[a++] = "--pipeline";
            argvv[a++] = (char *)d->pipeline;
            if (prec) {
                argvv[a++] = "--precision";
                argvv[a++] = (char *)prec;
            }
        } else {
            snprintf(script, sizeof script, "%s/%s", peers_dir,
                     llama && !strcmp(d->name, "llamacpp") ? "llamacpp_llama.js" : d->script);
            const size_t ml = strlen(model_dir);
            const int gguf = ml > 5 && !strcmp(model_dir + ml - 5, ".gguf"); /* llama.cpp runs it as it is */
            if ((llama || gguf) && strcmp(d->name, "llamacpp")) {
                w->skipped = 1;
                snprintf(w->note, sizeof w->note, "no %s adapter for %s", d->name,
                         gguf ? "GGUF files" : "Llama-family checkpoints");
                fprintf(stderr, "miser compare: skipping %s: %s\n", w->name, w->note);
                continue;
            }
            if (access(script, R_OK)) {
                w->skipped = 1;
                snprintf(w->note, sizeof w->note, "not installed: adapter %.300s not found (install the peers with `make peers`)",
                         script);
                fprintf(stderr, "miser compare: skipping %s: %s\n", w->name, w->note);
                continue;
            }
            argvv[a++] = (char *)d->interp;
            argvv[a++] = script;
            argvv[a++] = "--model";
            argvv[a++] = (char *)model_dir;
            argvv[a++] = "--prompt-ids";
            argvv[a++] = p1;
            argvv[a++] = "--prompt2-ids";
            argvv[a++] = p2;
            if (prec && !strcmp(d->name, "llamacpp")) {
                if (strcmp(prec, "f32") && strcmp(prec, "f16") && strcmp(prec, "q8_0")) {
                    w->skipped = 1;
                    snprintf(w->note, sizeof w->note, "the llama.cpp adapter writes f32, f16 or q8_0 GGUF files, not %s",
                             prec);
                    fprintf(stderr, "miser compare: skipping %s: %s\n", w->name, w->note);
                    continue;
                }
                argvv[a++] = "--precision";
                argvv[a++] = (char *)prec;
            } else if (prec && strcmp(prec, "f32")) { /* no f32 group: listed once, skipped */
                w->skipped = 1;
                snprintf(w->note, sizeof w->note, "runs f32 only here (add f32 to --precision)");
                fprintf(stderr, "miser compare: skipping %s: %s\n", w->name, w->note);
                continue;
            }
        }
        argvv[a++] = "--max-length";
        argvv[a++] = maxlen;
        argvv[a++] = "--threads";
        argvv[a++] = thr;
        argvv[a++] = "--json-out";
        argvv[a++] = res;
        argvv[a] = NULL;
        for (long long i = -1; i < runs; i++) {
            if (i < 0) printf("== %s: warm-up run (not recorded)\n", w->name);
            else printf("== %s: run %lld/%lld%s\n", w->name, i + 1, runs, synthetic ? " [synthetic weights]" : "");
            miser_profile *p = NULL;
            unlink(res);
            int crc = run_once(cmd, argvv, w->name, &p);
            if (crc == 3 && d->interp) {
                w->skipped = 1;
                snprintf(w->note, sizeof w->note, "not installed (the adapter exited 3): install the peers with `make peers`");
                fprintf(stderr, "miser compare: skipping %s: %s\n", w->name, w->note);
                miser_profile_free(p);
                break;
            }
            if (crc != 0) {
                w->failed = 1;
                failed = 1;
                snprintf(w->note, sizeof w->note, "%s run exited with %d (its stderr is above)",
                         i < 0 ? "the warm-up" : "a", crc);
                fprintf(stderr, "miser compare: %s failed: %s\n", w->name, w->note);
                miser_profile_free(p);
                break;
            }
            if (i < 0) {
                miser_profile_free(p);
                continue;
            }
            miser_bench_run *run = &w->runs[w->nruns++];
            miser_bench_run_from_profile(p, run);
            if (d->interp) peer_throughput(model_dir, prompt, res, run);
            if (!w->timeline) w->timeline = p;
            else miser_profile_free(p);
            if (i == 0 && miser_bench_load_result(res, w)) {
                w->failed = 1;
                failed = 1;
                snprintf(w->note, sizeof w->note, "%s", miser_error_message());
            }
        }
        unlink(res);
    }
    rmdir(tmpdir);
    miser_bench_report rep = {.nrows = njobs, .rows = rows, .reference = -1, .synthetic = synthetic,
                              .published_path = MISER_SOURCE_DIR "/data/published-keras-gpt2-medium.json"};
    snprintf(rep.title, sizeof rep.title, "miser compare: the study's scenario on %zu runtime(s)%s", nsel,
             nprec ? " per precision" : "");
    snprintf(rep.model, sizeof rep.model, "%.900s%s", model_dir, synthetic ? " (synthetic weights)" : "");
    snprintf(rep.scenario, sizeof rep.scenario,
             "prompts \"%.40s\" (ids %.40s) then \"%.40s\" (ids %.40s), greedy, max_length %lld, %lld thread(s), %lld recorded "
             "run(s) per runtime after one warm-up run, each in its own process under miser's out-of-process "
             "profiler (RSS sampled every 20 ms, exact peaks per stage)%s%.60s%s",
             prompt, p1, prompt2, p2, max_length, threads, runs, nprec ? "; weights at " : "", nprec ? precisions ? precisions : "f32,f16,q8_0" : "",
             nprec ? " (a row per runtime and precision, tokens checked within each precision)" : "");
    miser_bench_machine(rep.machine, sizeof rep.machine);
    /* greedy tokens: within each precision group, against its miser row
     * (else its miser-naive row) */
    size_t disagree = 0;
    for (size_t g = 0; g < ngroups; g++) {
        miser_bench_report sub = rep;
        sub.rows = rows + gstart[g];
        sub.nrows = gstart[g + 1] - gstart[g];
        sub.reference = -1;
        for (int pass = 0; pass < 2 && sub.reference < 0; pass++)
            for (size_t r = 0; r < sub.nrows && sub.reference < 0; r++)
                if (!strcmp(job_def[gstart[g] + r]->name, pass ? "miser-naive" : "miser") && sub.rows[r].has_ids)
                    sub.reference = (int)r;
        disagree += miser_bench_check_agreement(&sub);
    }
    size_t measured = 0;
    for (size_t r = 0; r < njobs; r++) measured += rows[r].nruns;
    if (!measured) {
        /* nothing was measured: no report of empty rows */
        miser_cli_error(cmd, "no runtime completed a run: no report written");
        for (size_t r = 0; r < njobs; r++) miser_profile_free(rows[r].timeline);
        miser_free(rows);
        miser_cli_rmdirs(out_dir, made);
        rc = MISER_EXIT_FAIL;
        goto early;
    }
    miser_bench_write_table(&rep, stdout);
    char path[4200];
    struct { const char *name; miser_bench_writer w; } outs[] = {
        {"report.md", miser_bench_write_markdown}, {"report.html", miser_bench_write_html},
        {"report.json", miser_bench_write_json}};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s", out_dir, outs[k].name);
        if (miser_bench_write_file(&rep, outs[k].w, path)) {
            miser_cli_error(cmd, "%s", miser_error_message());
            failed = 1;
        }
    }
    printf("report: %s/report.md, %s/report.html\n", out_dir, out_dir);
    if (disagree) fprintf(stderr, "miser compare: %zu runtime(s) generated different greedy tokens (see the report)\n", disagree);
    for (size_t r = 0; r < njobs; r++) miser_profile_free(rows[r].timeline);
    miser_free(rows);
    miser_free(p1);
    miser_free(p2);
    int frc = miser_cli_finish_stdout(cmd);
    return failed || disagree ? MISER_EXIT_FAIL : frc;
early:
    miser_free(p1);
    miser_free(p2);
    return rc;
}

MISER_CLI_COMMAND(compare, "compare", "run the memory study's scenario on miser and other runtimes", cmd_compare)
