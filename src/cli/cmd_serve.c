/* `miser serve`: the OpenAI-compatible HTTP server (src/serve). This file is
 * the command line and the process's signals: options are checked and the
 * model is opened before anything is bound (bad input exits 2 or 3), the
 * address is printed on stdout once bound, one line per request goes to
 * stderr, and SIGTERM/SIGINT drain in-flight requests before exiting 0. */
#include "cli.h"
#include "miser/budget.h"
#include "serve/serve.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: miser serve --model DIR [options]\n"
            "\n"
            "Serve a checkpoint over HTTP with OpenAI's API: POST /v1/completions,\n"
            "POST /v1/chat/completions (models with a known chat template), GET /v1/models,\n"
            "GET /health, POST /tokenize, POST /detokenize, GET /metrics (Prometheus) and a page\n"
            "at GET / that streams a completion and charts memory. Details: docs/serve.md.\n"
            "Prints \"miser serve: listening on http://HOST:PORT\" on stdout once bound; /health is\n"
            "503 until the model is loaded. SIGTERM or SIGINT: new requests get 503, running ones\n"
            "finish (up to --drain-timeout), then the server exits 0.\n"
            "\n"
            "options:\n"
            "  --model DIR             checkpoint directory (required)\n"
            "  --host ADDR             IPv4 or IPv6 address to bind (default 127.0.0.1: loopback only)\n"
            "  --port N                TCP port (default 8080; 0 picks a free one and prints it)\n"
            "  --parallel N            sequences generated at once (default 1); the KV pool holds N x --ctx positions\n"
            "  --ctx N                 positions per sequence, prompt included (default: the model's)\n"
            "  --memory-budget SIZE    fit the predicted peak RSS in SIZE (see `miser plan`): the widest precision\n"
            "                          (unless --precision) and the longest context per slot that fit; exit 3 if none\n"
            "  --threads N             worker threads (default: the CPUs available)\n"
            "  --precision P           f32, f16, bf16, q8_0, q4_0 or q4_k (as `miser generate --precision`)\n"
            "  --api-key KEY           require \"Authorization: Bearer KEY\" (also $MISER_API_KEY)\n"
            "  --queue N               requests that may wait for a sequence (default 64); beyond, 503\n"
            "  --chat-template NAME    chatml, llama2, llama3 or mistral, instead of the template\n"
            "                          named in the model's tokenizer_config.json\n"
            "  --alias NAME            model id in responses (default: the directory's name)\n"
            "  --max-body BYTES        largest request body (default 1048576); beyond, 413\n"
            "  --max-connections N     open connections at once (default 256)\n"
            "  --request-timeout S     a generation stops after S seconds (default 600)\n"
            "  --drain-timeout S       how long SIGTERM waits for running requests (default 30)\n"
            "  --engine E              batch (default): every step one pass over the weights for all\n"
            "                          sequences, KV in a paged pool; slots: a KV cache and a pass per sequence\n"
            "  --kv-blocks N           batch engine: the KV pool's blocks of 16 positions (default: --parallel x\n"
            "                          --ctx); a request waits in the queue until its prompt + max_tokens fit\n"
            "  --kv-f16, --kv-f32      keep the KV cache in f16 / f32 (default: the architecture's, as\n"
            "                          `miser generate`: f32 for GPT-2, f16 for the Llama family); f16 halves\n"
            "                          the pool's bytes per position and the attention's reads\n"
            "  -h, --help              this help\n"
            "\n"
            "exit codes: 0 ok (also after SIGTERM/SIGINT), 1 failure (cannot bind, ...),\n"
            "            2 bad options, 3 bad model.\n");
}

static void log_line(void *user, const char *line)
{
    char buf[1400];
    snprintf(buf, sizeof buf, "miser serve: %s\n", line);
    fputs(buf, stderr);
}

static int cmd_serve(int argc, char **argv)
{
    const char *cmd = "serve";
    miser_serve_options o = {.host = "127.0.0.1", .port = 8080, .parallel = 1, .threads = miser_cli_default_threads(),
                             .queue = 64, .max_connections = 256, .max_body = 1 << 20, .request_timeout_s = 600,
                             .idle_timeout_s = 30, .default_max_tokens = 16, .log = log_line};
    float drain = 30, req_timeout = 600;
    long long v;
    const char *budget_s = NULL;
    enum { O_HOST = 256, O_PORT, O_PAR, O_CTX, O_THREADS, O_PREC, O_KEY, O_QUEUE, O_CHAT, O_ALIAS, O_BODY, O_CONN,
           O_RTIME, O_DRAIN, O_BUDGET, O_ENGINE, O_KVB, O_KV16, O_KV32 };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT}, {"parallel", required_argument, 0, O_PAR},
        {"ctx", required_argument, 0, O_CTX}, {"threads", required_argument, 0, O_THREADS},
        {"precision", required_argument, 0, O_PREC}, {"api-key", required_argument, 0, O_KEY},
        {"queue", required_argument, 0, O_QUEUE}, {"chat-template", required_argument, 0, O_CHAT},
        {"alias", required_argument, 0, O_ALIAS}, {"max-body", required_argument, 0, O_BODY},
        {"max-connections", required_argument, 0, O_CONN}, {"request-timeout", required_argument, 0, O_RTIME},
        {"drain-timeout", required_argument, 0, O_DRAIN}, {"memory-budget", required_argument, 0, O_BUDGET},
        {"engine", required_argument, 0, O_ENGINE}, {"kv-blocks", required_argument, 0, O_KVB},
        {"kv-f16", no_argument, 0, O_KV16}, {"kv-f32", no_argument, 0, O_KV32},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c, li = -1;
    for (; (c = getopt_long(argc, argv, ":hm:", opts, &li)) != -1; li = -1) {
        int bad = 0;
        switch (c) {
        case 'h': usage(stdout); return MISER_EXIT_OK;
        case 'm': o.model_dir = optarg; break;
        case O_HOST: o.host = optarg; break;
        case O_PORT: bad = miser_cli_parse_i64(optarg, 0, 65535, &v); o.port = (int)v; break;
        case O_PAR: bad = miser_cli_parse_i64(optarg, 1, 256, &v); o.parallel = (int)v; break;
        case O_CTX: bad = miser_cli_parse_i64(optarg, 1, 1 << 24, &v); o.ctx = v; break;
        case O_THREADS: bad = miser_cli_parse_i64(optarg, 1, 256, &v); o.threads = (int)v; break;
        case O_PREC: o.precision = optarg; break;
        case O_KEY: o.api_key = optarg; break;
        case O_QUEUE: bad = miser_cli_parse_i64(optarg, 0, 1 << 16, &v); o.queue = (int)v; break;
        case O_CHAT: o.chat_template = optarg; break;
        case O_ALIAS: o.alias = optarg; break;
        case O_BODY: bad = miser_cli_parse_i64(optarg, 256, 1 << 30, &v); o.max_body = (size_t)v; break;
        case O_CONN: bad = miser_cli_parse_i64(optarg, 1, 4096, &v); o.max_connections = (int)v; break;
        case O_RTIME: bad = miser_cli_parse_f32(optarg, 0.001f, 1e7f, &req_timeout); break;
        case O_DRAIN: bad = miser_cli_parse_f32(optarg, 0, 1e6f, &drain); break;
        case O_BUDGET: budget_s = optarg; break;
        case O_KVB: bad = miser_cli_parse_i64(optarg, 1, 1 << 30, &v); o.kv_blocks = v; break;
        case O_KV16:
        case O_KV32:
            if (o.kv_f16 && o.kv_f16 != (c == O_KV16 ? 1 : -1)) {
                miser_cli_error(cmd, "--kv-f16 and --kv-f32 contradict each other: give one");
                return MISER_EXIT_USAGE;
            }
            o.kv_f16 = c == O_KV16 ? 1 : -1;
            break;
        case O_ENGINE:
            if (strcmp(optarg, "batch") && strcmp(optarg, "slots")) {
                miser_cli_error(cmd, "--engine '%s' is not batch or slots", optarg);
                return MISER_EXIT_USAGE;
            }
            o.engine = optarg;
            break;
        default: return miser_cli_option_error(cmd, c, argv);
        }
        if (bad) return miser_cli_value_error(cmd, opts, li, optarg);
    }
    o.request_timeout_s = req_timeout;
    if (optind < argc) {
        miser_cli_error(cmd, "unexpected argument '%s' (see --help)", argv[optind]);
        return MISER_EXIT_USAGE;
    }
    if (!o.model_dir) {
        miser_cli_error(cmd, "--model DIR is required (see --help)");
        return MISER_EXIT_USAGE;
    }
    unsigned char addr[16];
    if (inet_pton(AF_INET, o.host, addr) != 1 && inet_pton(AF_INET6, o.host, addr) != 1) {
        miser_cli_error(cmd, "--host '%s' is not an IPv4 or IPv6 address", o.host);
        return MISER_EXIT_USAGE;
    }
    if (o.chat_template && miser_chat_format_parse(o.chat_template) == MISER_CHAT_NONE) {
        miser_cli_error(cmd, "unknown --chat-template '%s' (chatml, llama2, llama3, mistral)", o.chat_template);
        return MISER_EXIT_USAGE;
    }
    if (o.precision) {
        miser_dtype dt;
        if (miser_dtype_parse(o.precision, &dt) || dt == MISER_DTYPE_I32 || dt == MISER_DTYPE_Q6_K) {
            miser_cli_error(cmd, "unknown precision '%s' (f32, f16, bf16, q8_0, q4_0, q4_k)", o.precision);
            return MISER_EXIT_USAGE;
        }
    }
    if (!o.api_key) o.api_key = getenv("MISER_API_KEY");
    if (budget_s) { /* the slots' context from what the budget leaves (budget.h); refused when nothing fits */
        miser_dtype dt = MISER_DTYPE_F32;
        if (o.precision) miser_dtype_parse(o.precision, &dt);
        int prec = (int)dt;
        int64_t cap = 0;
        int brc = miser_cli_budget_check(cmd, o.model_dir, budget_s, 0, o.precision != NULL, &prec, o.ctx, o.parallel,
                                         o.engine && !strcmp(o.engine, "slots") ? MISER_BUDGET_SERVE_SLOTS
                                                                                : MISER_BUDGET_SERVE_BATCH,
                                         o.threads, o.kv_f16, &cap);
        if (brc) return brc;
        if (!o.precision && prec >= 0) o.precision = miser_dtype_name((miser_dtype)prec); /* -1: as stored */
        if (!o.ctx || cap < o.ctx) o.ctx = cap;
        fprintf(stderr, "miser serve: --memory-budget %s: %d slot%s of %lld positions, precision %s\n", budget_s,
                o.parallel, o.parallel == 1 ? "" : "s", (long long)o.ctx, o.precision ? o.precision : "as stored");
    }

    /* Signals are taken by sigwait below: blocked before any thread starts,
     * so every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    miser_server *srv = NULL;
    miser_status st = miser_serve_create(&o, &srv);
    if (st) { /* a model directory that cannot be read is bad input too */
        miser_cli_error(cmd, "%s", miser_error_message());
        return st == MISER_ERR_IO ? MISER_EXIT_DATA : miser_cli_exit_for_status(st);
    }
    if ((st = miser_serve_listen(srv))) {
        miser_cli_error(cmd, "%s", miser_error_message());
        miser_serve_free(srv);
        return MISER_EXIT_FAIL;
    }
    int v6 = strchr(o.host, ':') != NULL;
    printf("miser serve: listening on http://%s%s%s:%d\n", v6 ? "[" : "", o.host, v6 ? "]" : "", miser_serve_port(srv));
    fflush(stdout);
    if ((st = miser_serve_load(srv))) {
        miser_cli_error(cmd, "loading the model: %s", miser_error_message());
        miser_serve_free(srv);
        return MISER_EXIT_FAIL;
    }
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "miser serve: %s: draining (up to %.0f s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM", drain);
    int left = miser_serve_drain(srv, drain);
    if (left) fprintf(stderr, "miser serve: %d request%s still running after the drain timeout: cancelled\n", left,
                      left == 1 ? "" : "s");
    miser_serve_free(srv);
    fprintf(stderr, "miser serve: stopped\n");
    return MISER_EXIT_OK;
}

MISER_CLI_COMMAND(serve, "serve", "serve a model over HTTP (OpenAI-compatible API, metrics, a page)", cmd_serve)
