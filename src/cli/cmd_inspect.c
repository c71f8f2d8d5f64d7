/* `miser inspect`: compile a checkpoint and show what each compiler pass did
 * (node/einsum/constant counts, constant and materialised bytes, arena
 * size) and what it cost (time, RssAnon, allocator peak); dump the graph
 * before and after; compare the default pipeline with the naive one in one
 * process (the project's with-fix / without-fix table). */
#include "cli.h"
#include "miser/profiler.h"
#include "miser/alloc.h"
#include "miser/model.h"
#include "miser/runtime.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_REC 32

static void usage(FILE *f)
{
    fprintf(f,
            "usage: miser inspect --model DIR [options]\n"
            "\n"
            "Compile a GPT-2 checkpoint and print one row per compiler pass: nodes, einsums,\n"
            "constants, constant bytes, unique constant bytes, bytes the compiler materialised,\n"
            "activation-arena bytes, and the pass's time, RssAnon change and allocator peak.\n"
            "\n"
            "options:\n"
            "  --model DIR            checkpoint directory (required)\n"
            "  --pipeline NAME        default (the fixed compiler), naive (one weight copy per\n"
            "                         consumer, as the buggy compiler did), none\n"
            "  --disable-pass LIST    comma-separated passes to skip: %s\n"
            "  --compare              compile with default and with naive in this one process and\n"
            "                         print the with-fix / without-fix table\n"
            "  --json                 one JSON object instead of tables\n"
            "  --dump-before FILE     write the graph as built (before any pass)\n"
            "  --dump-after FILE      write the compiled graph\n"
            "  --dot                  dumps in Graphviz DOT instead of text\n"
            "  --max-batch N          most tokens per step the plan is sized for (default 64)\n"
            "  --max-context N        longest sequence, at most the model's n_ctx (the default)\n"
            "  -h, --help             this help\n"
            "\n"
            "The dump paths are checked before the model is opened.\n"
            "\n"
            "exit codes: 0 ok, 1 failure (also: stdout could not be written), 2 bad options (a dump\n"
            "            path that cannot be written, --max-context past the model's context),\n"
            "            3 bad model (missing, unreadable or invalid checkpoint).\n",
            "decompose_einsum, eliminate_noops, fold_constants, share_constants, cse, dce, fuse\n"
            "                         (plan_memory is always run)");
}


/* RssAnon of this process in bytes (0 where the kernel does not report it) */
static int64_t rss_anon(void)
{
    miser_proc_status ps;
    return miser_proc_read_status(0, &ps) == MISER_OK && ps.anon_kb > 0 ? ps.anon_kb * 1024 : 0;
}

typedef struct {
    const char *pipeline;
    miser_pass_record rec[MAX_REC];
    int n_rec;
    double compile_s;
    int64_t anon_added, anon_peak_added;
    uint64_t heap_peak_added;
    miser_graph_stats final;
} run_result;

static double mb(double b) { return b / (1024.0 * 1024.0); }

typedef struct {
    const miser_graph *g;
    int dot;
} dump_ctx;

static miser_status dump_cb(void *f, void *ctx)
{
    const dump_ctx *c = ctx;
    if (c->dot) miser_graph_dump_dot(c->g, f);
    else miser_graph_dump(c->g, f);
    return MISER_OK;
}

/* written atomically, so a failed run never leaves half a file */
static int write_dump(const char *cmd, const char *path, const miser_graph *g, int dot)
{
    dump_ctx c = {g, dot};
    if (miser_file_write_atomic(path, dump_cb, &c)) {
        miser_cli_error(cmd, "%s", miser_error_message());
        return MISER_EXIT_FAIL;
    }
    return MISER_EXIT_OK;
}

static miser_status compile_one(const miser_model *m, const char *pipeline, const char *disable, long long max_batch,
                                long long max_ctx, run_result *r, miser_plan **keep)
{
    memset(r, 0, sizeof *r);
    r->pipeline = pipeline;
    miser_compile_options co = {.pipeline = pipeline, .disable = disable, .max_batch = max_batch,
                                .max_context = max_ctx, .records = r->rec, .max_records = MAX_REC,
                                .n_records = &r->n_rec};
    int64_t a0 = rss_anon();
    miser_plan *p = NULL;
    double t0 = miser_now_s();
    miser_status st = miser_plan_compile(m, &co, &p);
    double t1 = miser_now_s();
    if (st) return st;
    r->compile_s = t1 - t0;
    r->anon_added = rss_anon() - a0;
    int64_t cum = 0, peak = r->anon_added;
    uint64_t hp = 0;
    for (int i = 0; i < r->n_rec; i++) {
        cum += r->rec[i].rss_anon_delta;
        if (cum > peak) peak = cum;
        if (r->rec[i].heap_peak > hp) hp = r->rec[i].heap_peak; /* each pass's peak above its start */
    }
    r->anon_peak_added = peak;
    r->heap_peak_added = hp;
    r->final = miser_graph_get_stats(miser_plan_graph(p));
    if (keep) *keep = p;
    else miser_plan_free(p);
    return MISER_OK;
}

static void print_table(const run_result *r)
{
    printf("pipeline %s: compiled in %.2f ms, RssAnon +%.2f MB (peak +%.2f MB), materialised %.2f MB, %d einsums left\n",
           r->pipeline, r->compile_s * 1e3, mb((double)r->anon_added), mb((double)r->anon_peak_added),
           mb((double)r->final.materialized_bytes), r->final.einsums);
    printf("%-17s %6s %7s %6s %11s %11s %11s %10s %8s %10s %10s\n", "pass", "nodes", "einsums", "consts",
           "const MB", "unique MB", "matrlsd MB", "arena MB", "ms", "dAnon MB", "heapPk MB");
    for (int i = 0; i < r->n_rec; i++) {
        const miser_pass_record *p = &r->rec[i];
        printf("%-17s %6d %7d %6d %11.2f %11.2f %11.2f %10.2f %8.3f %10.2f %10.2f\n", p->name, p->stats.nodes,
               p->stats.einsums, p->stats.consts, mb((double)p->stats.const_bytes),
               mb((double)p->stats.unique_const_bytes), mb((double)p->stats.materialized_bytes),
               mb((double)p->stats.arena_bytes), p->seconds * 1e3, mb((double)p->rss_anon_delta),
               mb((double)p->heap_peak));
    }
}

static void json_run(const run_result *r)
{
    printf("{\"pipeline\":\"%s\",\"compile_ms\":%.3f,\"rss_anon_added\":%lld,\"rss_anon_peak_added\":%lld,"
           "\"heap_peak_added\":%llu,\"materialized_bytes\":%llu,\"einsums\":%d,\"nodes\":%d,\"arena_bytes\":%llu,"
           "\"passes\":[",
           r->pipeline, r->compile_s * 1e3, (long long)r->anon_added, (long long)r->anon_peak_added,
           (unsigned long long)r->heap_peak_added, (unsigned long long)r->final.materialized_bytes, r->final.einsums,
           r->final.nodes, (unsigned long long)r->final.arena_bytes);
    for (int i = 0; i < r->n_rec; i++) {
        const miser_pass_record *p = &r->rec[i];
        printf("%s{\"pass\":\"%s\",\"nodes\":%d,\"einsums\":%d,\"einsums_const\":%d,\"consts\":%d,"
               "\"const_bytes\":%llu,\"unique_const_bytes\":%llu,\"materialized_bytes\":%llu,\"arena_bytes\":%llu,"
               "\"ms\":%.4f,\"rss_anon_delta\":%lld,\"heap_delta\":%lld,\"heap_peak\":%llu}",
               i ? "," : "", p->name, p->stats.nodes, p->stats.einsums, p->stats.einsums_const, p->stats.consts,
               (unsigned long long)p->stats.const_bytes, (unsigned long long)p->stats.unique_const_bytes,
               (unsigned long long)p->stats.materialized_bytes, (unsigned long long)p->stats.arena_bytes,
               p->seconds * 1e3, (long long)p->rss_anon_delta, (long long)p->heap_delta,
               (unsigned long long)p->heap_peak);
    }
    printf("]}");
}

static int cmd_inspect(int argc, char **argv)
{
    const char *cmd = "inspect";
    const char *model_dir = NULL, *pipeline = "default", *disable = NULL, *dump_before = NULL, *dump_after = NULL;
    int json = 0, dot = 0, compare = 0;
    long long max_batch = 64, max_ctx = 0;
    enum { O_PIPE = 256, O_DIS, O_JSON, O_DB, O_DA, O_DOT, O_CMP, O_BATCH, O_CTX };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"pipeline", required_argument, 0, O_PIPE},
        {"disable-pass", required_argument, 0, O_DIS}, {"json", no_argument, 0, O_JSON},
        {"dump-before", required_argument, 0, O_DB}, {"dump-after", required_argument, 0, O_DA},
        {"dot", no_argument, 0, O_DOT}, {"compare", no_argument, 0, O_CMP},
        {"max-batch", required_argument, 0, O_BATCH}, {"max-context", required_argument, 0, O_CTX},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":hm:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return MISER_EXIT_OK;
        case 'm': model_dir = optarg; break;
        case O_PIPE: pipeline = optarg; break;
        case O_DIS: disable = optarg; break;
        case O_JSON: json = 1; break;
        case O_DB: dump_before = optarg; break;
        case O_DA: dump_after = optarg; break;
        case O_DOT: dot = 1; break;
        case O_CMP: compare = 1; break;
        case O_BATCH:
            if (miser_cli_parse_i64(optarg, 1, 1 << 20, &max_batch)) {
                miser_cli_error(cmd, "invalid value '%s' for --max-batch", optarg);
                return MISER_EXIT_USAGE;
            }
            break;
        case O_CTX:
            if (miser_cli_parse_i64(optarg, 1, 1 << 24, &max_ctx)) {
                miser_cli_error(cmd, "invalid value '%s' for --max-context", optarg);
                return MISER_EXIT_USAGE;
            }
            break;
        default: return miser_cli_option_error(cmd, c, argv);
        }
    }
    if (optind < argc) {
        miser_cli_error(cmd, "unexpected argument '%s'", argv[optind]);
        return MISER_EXIT_USAGE;
    }
    if (!model_dir || !*model_dir) {
        miser_cli_error(cmd, "--model DIR is required (see --help)");
        return MISER_EXIT_USAGE;
    }
    if (!miser_pipeline_passes(pipeline)) {
        miser_cli_error(cmd, "unknown pipeline '%s' (default, naive, none)", pipeline);
        return MISER_EXIT_USAGE;
    }
    for (const char *p = disable; p && *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char nm[64];
        snprintf(nm, sizeof nm, "%.*s", (int)l, p);
        if (l && !miser_pass_find(nm)) {
            miser_cli_error(cmd, "unknown pass '%s' in --disable-pass (see --help)", nm);
            return MISER_EXIT_USAGE;
        }
        p = e ? e + 1 : p + l;
    }
    /* the dumps' paths are checked before the model is even opened */
    int rc = dump_before ? miser_cli_check_output(cmd, "dump-before", dump_before) : 0;
    if (!rc && dump_after) rc = miser_cli_check_output(cmd, "dump-after", dump_after);
    if (rc) return rc;
    miser_model *model = NULL;
    miser_plan *plan = NULL;
    miser_status st = miser_model_open(model_dir, &model);
    if (st) {
        miser_cli_error(cmd, "%s", miser_error_message());
        return miser_cli_exit_for_input(st);
    }
    if (max_ctx > miser_model_config(model)->n_ctx) {
        miser_cli_error(cmd, "--max-context %lld is more than the model's context of %lld tokens", max_ctx,
                        (long long)miser_model_config(model)->n_ctx);
        miser_model_free(model);
        return MISER_EXIT_USAGE;
    }
    if (dump_before) {
        /* the graph as built: pipeline none runs only plan_memory, which adds
         * arena offsets and changes nothing the dump shows */
        miser_compile_options co = {.pipeline = "none", .max_batch = max_batch,
                                    .max_context = max_ctx};
        if ((st = miser_plan_compile(model, &co, &plan))) goto fail;
        rc = write_dump(cmd, dump_before, miser_plan_graph(plan), dot);
        miser_plan_free(plan);
        plan = NULL;
        if (rc) goto out;
    }
    run_result *runs = miser_calloc(MISER_MEM_OTHER, 2, sizeof *runs);
    if (!runs) {
        st = MISER_ERR_NOMEM;
        goto fail;
    }
    const char *names[2] = {compare ? "default" : pipeline, "naive"};
    int n_runs = compare ? 2 : 1;
    for (int i = 0; i < n_runs; i++) {
        st = compile_one(model, names[i], compare ? NULL : disable, max_batch, max_ctx, &runs[i],
                         i == 0 && dump_after ? &plan : NULL);
        if (st) {
            miser_free(runs);
            goto fail;
        }
        if (plan) {
            rc = write_dump(cmd, dump_after, miser_plan_graph(plan), dot);
            miser_plan_free(plan);
            plan = NULL;
            if (rc) {
                miser_free(runs);
                goto out;
            }
        }
    }
    if (json) {
        printf("{\"model\":");
        miser_cli_json_string(stdout, (const unsigned char *)model_dir, strlen(model_dir), NULL);
        printf(",\"runs\":[");
        for (int i = 0; i < n_runs; i++) {
            if (i) printf(",");
            json_run(&runs[i]);
        }
        printf("]}\n");
    } else {
        for (int i = 0; i < n_runs; i++) {
            print_table(&runs[i]);
            printf("\n");
        }
        if (compare) {
            const run_result *d = &runs[0], *n = &runs[1];
            printf("with-fix / without-fix (one process, %s):\n", model_dir);
            printf("%-28s %14s %14s\n", "", "default", "naive");
            printf("%-28s %14.2f %14.2f\n", "materialised weights MB", mb((double)d->final.materialized_bytes),
                   mb((double)n->final.materialized_bytes));
            printf("%-28s %14.2f %14.2f\n", "RssAnon added MB", mb((double)d->anon_added), mb((double)n->anon_added));
            printf("%-28s %14.2f %14.2f\n", "peak RssAnon added MB", mb((double)d->anon_peak_added),
                   mb((double)n->anon_peak_added));
            printf("%-28s %14.2f %14.2f\n", "allocator peak (pass) MB", mb((double)d->heap_peak_added),
                   mb((double)n->heap_peak_added));
            printf("%-28s %14.2f %14.2f\n", "compile ms", d->compile_s * 1e3, n->compile_s * 1e3);
            printf("%-28s %14d %14d\n", "einsums left", d->final.einsums, n->final.einsums);
            printf("%-28s %14d %14d\n", "nodes", d->final.nodes, n->final.nodes);
            printf("%-28s %14.2f %14.2f\n", "activation arena MB", mb((double)d->final.arena_bytes),
                   mb((double)n->final.arena_bytes));
        }
    }
    miser_free(runs);
    rc = miser_cli_finish_stdout(cmd);
    goto out;
fail:
    miser_cli_error(cmd, "%s", miser_error_message());
    rc = miser_cli_exit_for_status(st);
out:
    miser_plan_free(plan);
    miser_model_free(model);
    return rc;
}

MISER_CLI_COMMAND(inspect, "inspect", "show what each compiler pass does to a model's graph, and what it costs",
                  cmd_inspect)
