/* `miser plan`: the memory a configuration will need, before loading it
 * (issue 17). For each precision the checkpoint can run in x a few context
 * lengths x parallel sequences, the predicted peak RSS split into its parts
 * (include/miser/budget.h), with an estimated decode speed from this
 * machine's read bandwidth; with --memory-budget, what fits and the
 * recommendation (widest precision, then longest context). */
#include "cli.h"
#include "miser/budget.h"
#include "miser/core.h"

#include <getopt.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: miser plan --model PATH [--memory-budget SIZE] [--ctx N] [--parallel N] [--threads N] [--json]\n"
            "\n"
            "Predict the peak resident memory of running PATH (a checkpoint directory) for each precision\n"
            "it can run in x context lengths x parallel sequences, from its config and tensor headers\n"
            "only (no weight page is read). Parts: weights (file-backed; for a converted precision the\n"
            "cache file's size), KV cache, activation arena, per-thread scratch, tokenizer, fixed\n"
            "process overhead; RssAnon and RssFile at the peak, which is the larger of the load's (the\n"
            "tokenizer's and the compile's temporaries, before the sessions exist) and the run's\n"
            "(--json gives both phases: load_* and run_*, the run's being what a server keeps while it\n"
            "serves). The decode tok/s is an ESTIMATE: weights + half the\n"
            "KV cache read once per token at this machine's read bandwidth (probed once, cached in\n"
            "$MISER_CACHE_DIR or ~/.cache/miser/read-bandwidth).\n"
            "\n"
            "options:\n"
            "  --model PATH           checkpoint directory (required)\n"
            "  --memory-budget SIZE   mark what fits and recommend a configuration; SIZE: bytes or\n"
            "                         K/M/G/T (KiB/MiB.., KB/MB..: all powers of 1024), e.g. 512M, 1.5G\n"
            "  --ctx N                only this context length (default: 128, n_ctx/4, n_ctx/2, n_ctx)\n"
            "  --parallel N           only N parallel sequences (default: 1 and 4)\n"
            "  --engine E             what runs them: generate (one session per sequence; the default at\n"
            "                         parallel 1), batch (`miser serve`'s default: one pass for all, the KV\n"
            "                         in a paged pool; the default above 1) or slots (`serve --engine slots`)\n"
            "  --threads N            worker threads per sequence (default: the CPUs available)\n"
            "  --kv-f16, --kv-f32     KV cache in f16 / f32 (default: the architecture's, f16 for\n"
            "                         the Llama family, f32 for GPT-2)\n"
            "  --json                 one JSON object\n"
            "  -h, --help             this help\n"
            "\n"
            "exit codes: 0 ok, 1 failure, 2 bad options (a SIZE that is zero, negative or malformed),\n"
            "            3 bad model, or a budget that fits no configuration (one line: what the\n"
            "            smallest needs, by part).\n");
}

static double mb(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

static int cmd_plan(int argc, char **argv)
{
    const char *cmd = "plan";
    const char *model_dir = NULL, *budget_s = NULL;
    long long ctx = 0, parallel = 0, threads = miser_cli_default_threads();
    int json = 0, kv_f16 = 0;
    enum { O_BUDGET = 256, O_CTX, O_PAR, O_THREADS, O_JSON, O_KV16, O_KV32, O_ENGINE };
    int engine = -1; /* -1: generate at parallel 1, serve's batch above */
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"memory-budget", required_argument, 0, O_BUDGET},
                                         {"ctx", required_argument, 0, O_CTX},
                                         {"parallel", required_argument, 0, O_PAR},
                                         {"threads", required_argument, 0, O_THREADS},
                                         {"kv-f16", no_argument, 0, O_KV16},
                                         {"kv-f32", no_argument, 0, O_KV32},
                                         {"engine", required_argument, 0, O_ENGINE},
                                         {"json", no_argument, 0, O_JSON},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c, li = -1;
    uint64_t budget = 0;
    for (; (c = getopt_long(argc, argv, ":hm:", opts, &li)) != -1; li = -1) {
        int bad = 0;
        switch (c) {
        case 'h': usage(stdout); return MISER_EXIT_OK;
        case 'm': model_dir = optarg; break;
        case O_BUDGET:
            budget_s = optarg;
            if (miser_budget_parse_size(optarg, &budget)) {
                miser_cli_error(cmd, "invalid --memory-budget '%s': give a size > 0 such as 512M, 1.5G, 2GiB or bytes",
                                optarg);
                return MISER_EXIT_USAGE;
            }
            break;
        case O_CTX: bad = miser_cli_parse_i64(optarg, 1, 1 << 24, &ctx); break;
        case O_PAR: bad = miser_cli_parse_i64(optarg, 1, 4096, &parallel); break;
        case O_THREADS: bad = miser_cli_parse_i64(optarg, 1, 256, &threads); break;
        case O_KV16:
        case O_KV32:
            if (kv_f16 && kv_f16 != (c == O_KV16 ? 1 : -1)) {
                miser_cli_error(cmd, "--kv-f16 and --kv-f32 contradict each other: give one");
                return MISER_EXIT_USAGE;
            }
            kv_f16 = c == O_KV16 ? 1 : -1; /* 0: the architecture's default */
            break;
        case O_JSON: json = 1; break;
        case O_ENGINE: {
            miser_budget_engine e;
            if (miser_budget_engine_parse(optarg, &e)) {
                miser_cli_error(cmd, "--engine '%s' is not generate, batch or slots", optarg);
                return MISER_EXIT_USAGE;
            }
            engine = (int)e;
            break;
        }
        default: return miser_cli_option_error(cmd, c, argv);
        }
        if (bad) return miser_cli_value_error(cmd, opts, li, optarg);
    }
    if (optind < argc) {
        miser_cli_error(cmd, "unexpected argument '%s'", argv[optind]);
        return MISER_EXIT_USAGE;
    }
    if (!model_dir || !*model_dir) {
        miser_cli_error(cmd, "--model PATH is required (see --help)");
        return MISER_EXIT_USAGE;
    }
    if (budget_s && budget < MISER_BUDGET_FIXED_ANON + MISER_BUDGET_FIXED_FILE) {
        miser_cli_error(cmd, "--memory-budget %s (%.1f MB) is below the fixed process overhead of %.1f MB (anon %.1f + file %.1f MB)",
                        budget_s, mb(budget), mb(MISER_BUDGET_FIXED_ANON + MISER_BUDGET_FIXED_FILE),
                        mb(MISER_BUDGET_FIXED_ANON), mb(MISER_BUDGET_FIXED_FILE));
        return MISER_EXIT_DATA;
    }
    miser_budget_model *b = NULL;
    miser_status st = miser_budget_open(model_dir, &b);
    if (st) {
        miser_cli_error(cmd, "%s", miser_error_message());
        return miser_cli_exit_for_input(st);
    }
    const int64_t n_ctx = miser_budget_n_ctx(b);
    int64_t ctxs[4];
    int nc = 0;
    if (ctx) ctxs[nc++] = ctx < n_ctx ? ctx : n_ctx;
    else {
        int64_t cand[4] = {128, n_ctx / 4, n_ctx / 2, n_ctx};
        for (int i = 1; i < 4; i++) /* ascending */
            for (int j = i; j > 0 && cand[j] < cand[j - 1]; j--) {
                const int64_t t = cand[j];
                cand[j] = cand[j - 1];
                cand[j - 1] = t;
            }
        for (int i = 0; i < 4; i++) {
            const int64_t v = cand[i] < 1 ? 1 : cand[i] > n_ctx ? n_ctx : cand[i];
            if (!nc || v > ctxs[nc - 1]) ctxs[nc++] = v;
        }
    }
    int pars[2], npar = 0;
    if (parallel) pars[npar++] = (int)parallel;
    else {
        pars[npar++] = 1;
        pars[npar++] = 4;
    }
    miser_dtype precs[MISER_BUDGET_NPREC];
    const int nprec = miser_budget_precisions(b, precs);
    int cached = 0;
    const double bw = miser_budget_read_bandwidth(&cached);
    miser_budget_config best = {0};
    miser_budget_prediction bestp = {0};
    int have_best = -1;
    if (budget_s) {
        miser_budget_config want = {.ctx = n_ctx, .parallel = pars[0], .threads = (int)threads, .kv_f16 = kv_f16,
                                    .engine = engine >= 0 ? (miser_budget_engine)engine
                                              : pars[0] > 1 ? MISER_BUDGET_SERVE_BATCH : MISER_BUDGET_GENERATE};
        if (ctx) want.ctx = ctxs[0];
        have_best = miser_budget_fit(b, budget, &want, -1, &best, &bestp);
    }
    /* the KV dtype the rows use: --kv-f16 / --kv-f32, else the model's
     * default (the predictor follows the session's rule; read it back) */
    int kv_is_f16 = kv_f16 > 0;
    if (!kv_f16 && nprec > 0) {
        miser_budget_config q0 = {.precision = precs[0], .ctx = n_ctx, .parallel = 1, .threads = 1}, q1 = q0;
        miser_budget_prediction p0, p1;
        q1.kv_f16 = 1;
        kv_is_f16 = !miser_budget_predict(b, &q0, &p0) && !miser_budget_predict(b, &q1, &p1) && p0.kv == p1.kv;
    }
    if (json) {
        printf("{\"model\":");
        miser_cli_json_string(stdout, (const unsigned char *)model_dir, strlen(model_dir), NULL);
        printf(",\"n_ctx\":%lld,\"threads\":%lld,\"kv_f16\":%s,\"read_bandwidth_gb_s\":%.2f,\"bandwidth_cached\":%s,"
               "\"tok_s_is_estimate\":true,\"budget_bytes\":",
               (long long)n_ctx, threads, kv_is_f16 ? "true" : "false", bw / 1e9, cached ? "true" : "false");
        if (budget_s) printf("%llu", (unsigned long long)budget);
        else printf("null");
        printf(",\"rows\":[");
    } else {
        printf("model %s: n_ctx %lld, %lld threads per sequence%s; read bandwidth %.1f GB/s (%s)\n", model_dir,
               (long long)n_ctx, threads, kv_is_f16 ? ", KV f16" : ", KV f32", bw / 1e9, cached ? "cached probe" : "probed now");
        printf("%-6s %6s %4s %-8s %10s %10s %10s %9s %9s %9s %9s %9s %9s %9s%s\n", "prec", "ctx", "par", "engine", "peak MB",
               "anon MB", "file MB", "weights", "KV", "arena", "scratch", "tokenizer", "fixed", "~tok/s",
               budget_s ? "  fits" : "");
    }
    int first = 1;
    for (int i = 0; i < nprec; i++)
        for (int j = 0; j < nc; j++)
            for (int k = 0; k < npar; k++) {
                miser_budget_config cfg = {.precision = precs[i], .ctx = ctxs[j], .parallel = pars[k],
                                           .threads = (int)threads, .kv_f16 = kv_f16,
                                           .engine = engine >= 0 ? (miser_budget_engine)engine
                                                     : pars[k] > 1 ? MISER_BUDGET_SERVE_BATCH : MISER_BUDGET_GENERATE};
                miser_budget_prediction p;
                if (miser_budget_predict(b, &cfg, &p)) continue;
                const double tps = miser_budget_decode_estimate(&p, bw);
                const int fits = budget_s && p.rss <= budget;
                if (json) {
                    printf("%s{\"precision\":\"%s\",\"ctx\":%lld,\"parallel\":%d,\"engine\":\"%s\",\"peak_rss_bytes\":%llu,"
                           "\"rss_anon_bytes\":%llu,\"rss_file_bytes\":%llu,\"weights_bytes\":%llu,\"kv_bytes\":%llu,"
                           "\"arena_bytes\":%llu,\"scratch_bytes\":%llu,\"tokenizer_bytes\":%llu,\"fixed_bytes\":%llu,"
                           "\"transient_bytes\":%llu,\"peak_phase\":\"%s\",\"load_anon_bytes\":%llu,"
                           "\"load_file_bytes\":%llu,\"run_anon_bytes\":%llu,\"run_file_bytes\":%llu,"
                           "\"decode_tok_s_estimate\":%.1f",
                           first ? "" : ",", miser_dtype_name(cfg.precision), (long long)p.ctx, cfg.parallel,
                           miser_budget_engine_name(cfg.engine), (unsigned long long)p.rss, (unsigned long long)p.rss_anon, (unsigned long long)p.rss_file,
                           (unsigned long long)p.weights, (unsigned long long)p.kv, (unsigned long long)p.arena,
                           (unsigned long long)p.scratch, (unsigned long long)p.tokenizer, (unsigned long long)p.fixed,
                           (unsigned long long)p.transient, p.peak_in_load ? "load" : "run",
                           (unsigned long long)p.load_anon, (unsigned long long)p.load_file,
                           (unsigned long long)p.run_anon, (unsigned long long)p.run_file, tps);
                    if (budget_s) printf(",\"fits\":%s", fits ? "true" : "false");
                    printf("}");
                } else
                    printf("%-6s %6lld %4d %-8s %10.1f %10.1f %10.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.0f%s\n",
                           miser_dtype_name(cfg.precision), (long long)p.ctx, cfg.parallel,
                           miser_budget_engine_name(cfg.engine), mb(p.rss), mb(p.rss_anon),
                           mb(p.rss_file), mb(p.weights), mb(p.kv), mb(p.arena), mb(p.scratch), mb(p.tokenizer),
                           mb(p.fixed), tps, budget_s ? (fits ? "  yes" : "  no") : "");
                first = 0;
            }
    int rc = MISER_EXIT_OK;
    /* the first run at a converted precision makes the cache first: the
     * source mapped and read whole, a peak of its own */
    if (json) {
        printf("],\"convert_peak_bytes\":{");
        for (int i = 0, n = 0; i < nprec; i++) {
            const uint64_t cp = miser_budget_convert_peak(b, precs[i]);
            if (cp) printf("%s\"%s\":%llu", n++ ? "," : "", miser_dtype_name(precs[i]), (unsigned long long)cp);
        }
        printf("}");
    } else
        for (int i = 0; i < nprec; i++) {
            const uint64_t cp = miser_budget_convert_peak(b, precs[i]);
            if (cp)
                printf("%s first run converts: peak %.1f MB (the checkpoint read whole from its map into the cache; "
                       "later runs: the rows above)\n", miser_dtype_name(precs[i]), mb(cp));
        }
    if (json) {
        printf(",\"recommended\":");
        if (have_best == 0)
            printf("{\"precision\":\"%s\",\"ctx\":%lld,\"parallel\":%d,\"peak_rss_bytes\":%llu}}\n",
                   miser_dtype_name(best.precision), (long long)best.ctx, best.parallel,
                   (unsigned long long)bestp.rss);
        else printf("null}\n");
    } else if (have_best == 0)
        printf("recommended within %.1f MB: --precision %s --ctx %lld (%d sequence%s): predicted peak %.1f MB\n",
               mb(budget), miser_dtype_name(best.precision), (long long)best.ctx, best.parallel,
               best.parallel == 1 ? "" : "s", mb(bestp.rss));
    if (have_best < 0 && budget_s) {
        char why[256];
        miser_budget_describe(&bestp, why, sizeof why);
        miser_cli_error(cmd, "--memory-budget %s (%.1f MB) fits no configuration: the smallest (1 position) %s",
                        budget_s, mb(budget), why);
        rc = MISER_EXIT_DATA;
    }
    miser_budget_free(b);
    if (!rc) rc = miser_cli_finish_stdout(cmd);
    return rc;
}

MISER_CLI_COMMAND(plan, "plan", "predict the memory of a configuration before loading it (memory budgets)", cmd_plan)

int miser_cli_budget_check(const char *cmd, const char *model_dir, const char *budget_s, int allow_paging,
                           int have_prec, int *prec, int64_t want_ctx, int parallel, int engine, int threads,
                           int kv_f16, int64_t *ctx_cap)
{
    uint64_t budget;
    if (miser_budget_parse_size(budget_s, &budget)) {
        miser_cli_error(cmd, "invalid --memory-budget '%s': give a size > 0 such as 512M, 1.5G, 2GiB or bytes", budget_s);
        return MISER_EXIT_USAGE;
    }
    if (budget < MISER_BUDGET_FIXED_ANON + MISER_BUDGET_FIXED_FILE) {
        miser_cli_error(cmd, "--memory-budget %s (%.1f MB) is below the fixed process overhead of %.1f MB", budget_s,
                        mb(budget), mb(MISER_BUDGET_FIXED_ANON + MISER_BUDGET_FIXED_FILE));
        return MISER_EXIT_DATA;
    }
    miser_budget_model *b = NULL;
    miser_status st = miser_budget_open(model_dir, &b);
    if (st) {
        miser_cli_error(cmd, "%s", miser_error_message());
        return miser_cli_exit_for_input(st);
    }
    miser_budget_config want = {.precision = have_prec && *prec >= 0 ? (miser_dtype)*prec : miser_budget_stored_dtype(b),
                                .ctx = want_ctx, .parallel = parallel > 0 ? parallel : 1, .threads = threads,
                                .kv_f16 = kv_f16, .engine = (miser_budget_engine)engine};
    miser_budget_config got = {0};
    miser_budget_prediction p;
    char why[256];
    int rc = 0;
    if (have_prec && !miser_budget_precision_ok(b, want.precision)) {
        /* the cache keeps what is narrower than asked: predict what runs */
        want.precision = miser_budget_stored_dtype(b);
    }
    if (!miser_budget_fit(b, budget, &want, have_prec ? (int)want.precision : -1, &got, &p) &&
        got.ctx >= (want_ctx < miser_budget_n_ctx(b) ? want_ctx : miser_budget_n_ctx(b))) {
        if (!have_prec) {
            *prec = got.precision == miser_budget_stored_dtype(b) ? -1 : (int)got.precision;
            fprintf(stderr, "miser %s: --memory-budget %s: picked --precision %s (context %lld): predicted peak %.1f MB\n",
                    cmd, budget_s, miser_dtype_name(got.precision), (long long)got.ctx, mb(p.rss));
        }
        *ctx_cap = got.ctx;
    } else if (!have_prec && got.ctx > 0 && !miser_budget_fit(b, budget, &want, -1, &got, &p)) {
        /* nothing holds the whole context: the longest that fits */
        *prec = got.precision == miser_budget_stored_dtype(b) ? -1 : (int)got.precision;
        *ctx_cap = got.ctx;
        fprintf(stderr, "miser %s: --memory-budget %s: picked --precision %s with the context cut to %lld: predicted peak %.1f MB\n",
                cmd, budget_s, miser_dtype_name(got.precision), (long long)got.ctx, mb(p.rss));
    } else {
        /* does not fit: the whole wanted configuration, for the message */
        miser_dtype ps[MISER_BUDGET_NPREC];
        if (!have_prec) want.precision = ps[miser_budget_precisions(b, ps) - 1]; /* the narrowest */
        miser_budget_predict(b, &want, &p);
        miser_budget_describe(&p, why, sizeof why);
        if (allow_paging && p.rss_anon <= budget) {
            if (!have_prec) *prec = want.precision == miser_budget_stored_dtype(b) ? -1 : (int)want.precision;
            *ctx_cap = p.ctx;
            fprintf(stderr, "miser %s: --memory-budget %s is below the predicted peak (%s); --allow-paging: running "
                    "anyway, the %.1f MB of file-backed weights will be evicted and re-read by the kernel\n",
                    cmd, budget_s, why, mb(p.weights));
        } else {
            miser_cli_error(cmd, "%s --precision %s at context %lld does not fit --memory-budget %s (%.1f MB): %s%s", model_dir,
                            miser_dtype_name(want.precision), (long long)p.ctx, budget_s, mb(budget), why,
                            p.rss_anon <= budget && strcmp(cmd, "serve") ? " (--allow-paging runs it with the weights paged)"
                                                                          : "");
            rc = MISER_EXIT_DATA;
        }
    }
    miser_budget_free(b);
    return rc;
}
