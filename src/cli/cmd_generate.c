/* `miser generate`: load a checkpoint, compile it, and stream generated text. */
#include "cli.h"
#include "miser/alloc.h"
#include "miser/budget.h"
#include "miser/model.h"
#include "miser/precision.h"
#include "miser/runtime.h"
#include "miser/tokenizer.h"
#include "kernels/kernels.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: miser generate --model DIR [--prompt TEXT] [options]\n"
            "\n"
            "Generate text with a GPT-2 checkpoint (a Hugging Face directory with config.json and\n"
            "model.safetensors). Without --prompt the prompt is read from stdin, verbatim.\n"
            "Tokens stream to stdout as they are made.\n"
            "\n"
            "options:\n"
            "  --model DIR            checkpoint directory (required)\n"
            "  --prompt TEXT          the prompt (UTF-8)\n"
            "  --max-new-tokens N     stop after N new tokens, N >= 1 (default 50 unless --max-length)\n"
            "  --max-length N         stop when prompt + generated reach N tokens (Keras' max_length);\n"
            "                         it must leave room for one new token\n"
            "  --temperature F        0 = greedy (default); > 0 samples\n"
            "  --top-k N              sample among the N most likely tokens\n"
            "  --top-p P              sample within the smallest set with probability >= P\n"
            "  --seed N               random seed for sampling (default 0)\n"
            "  --ignore-eos           keep going past <|endoftext|>\n"
            "  --special-as-text      treat \"<|endoftext|>\" in the prompt as plain text\n"
            "  --threads N            worker threads (default: the CPUs available)\n"
            "  --pipeline NAME        compiler pipeline: default, naive, none\n"
            "  --disable-pass LIST    comma-separated passes to skip (see `miser inspect --help`)\n"
            "  --max-batch N          most prompt tokens per step (default 64)\n"
            "  --kv-f16, --kv-f32     keep the KV cache in f16 / f32 (default: the architecture's,\n"
            "                         f16 for the Llama family as llama.cpp, f32 for GPT-2)\n"
            "  --precision P          f32, f16, bf16, q8_0, q4_0 or q4_k: run the matrices in P, converted\n"
            "                         once into a cache ($MISER_CACHE_DIR or ~/.cache/miser) and mmapped;\n"
            "                         never widens (4-bit: embeddings and head in q6_k, docs/gguf.md)\n"
            "  --memory-budget SIZE   predicted peak RSS must fit SIZE (512M, 1.5G, bytes; see `miser plan`):\n"
            "                         with --precision a configuration that does not is refused (exit 3),\n"
            "                         without, the widest precision that fits is picked (said on stderr)\n"
            "  --allow-paging         run even when only the file-backed weights exceed the budget\n"
            "  --kernels NAME         auto (default: the best this CPU runs), ref (the scalar\n"
            "                         reference), avx2, avx512\n"
            "  --json                 print one JSON object instead of streaming text\n"
            "  -h, --help             this help\n"
            "\n"
            "Generation stops at <|endoftext|>, --max-new-tokens, --max-length, or when the model's\n"
            "context (n_positions) is full; the last case is said in one line on stderr.\n"
            "\n"
            "exit codes: 0 ok, 1 failure (also: stdout could not be written), 2 bad options,\n"
            "            3 bad model or prompt (a missing, unreadable or invalid checkpoint, a config\n"
            "            field miser does not implement, a prompt that is empty, not UTF-8, longer\n"
            "            than the context, or leaves no room under --max-length).\n");
}

typedef struct {
    const miser_tokenizer *tok;
    int stream;
} stream_ctx;

/* Under `miser profile`, announce the lifecycle stages (load, compile,
 * session, generate) on the marker pipe and wait for the snapshot (ack=1),
 * so each stage's peak and attribution (--attribute) cover exactly that
 * work. Outside the profiler this does nothing (docs/profiler.md). */
static void stage_mark(const char *name)
{
    const char *fd = getenv("MISER_MARKER_FD"), *ack = getenv("MISER_MARKER_ACK_FD");
    if (!fd || !*fd) return;
    char line[96];
    int n = snprintf(line, sizeof line, "stage %s%s\n", name, ack && *ack ? " ack=1" : "");
    char c;
    if (write(atoi(fd), line, (size_t)n) == n && ack && *ack && read(atoi(ack), &c, 1) < 0) return;
}

static int on_token(void *user, int32_t token)
{
    stream_ctx *c = user;
    if (!c->stream) return 0;
    size_t len;
    const char *b = miser_tokenizer_token_bytes(c->tok, token, &len);
    if (b) fwrite(b, 1, len, stdout);
    fflush(stdout);
    return 0;
}


static void json_ids(FILE *f, const int32_t *ids, int64_t n)
{
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", ids[i]);
    fputc(']', f);
}

static int cmd_generate(int argc, char **argv)
{
    const char *cmd = "generate";
    const char *model_dir = NULL, *precision = NULL, *prompt = NULL, *pipeline = "default", *disable = NULL, *kernels = NULL;
    long long max_new = -1, max_len = 0, top_k = 0, seed = 0, threads = miser_cli_default_threads(), max_batch = 64;
    float temperature = 0, top_p = 1;
    int json = 0, ignore_eos = 0, special_text = 0, kv_f16 = 0, allow_paging = 0;
    const char *budget_s = NULL;
    enum { O_MAXNEW = 256, O_MAXLEN, O_TEMP, O_TOPK, O_TOPP, O_SEED, O_IGNEOS, O_SPECIAL, O_THREADS, O_PIPE, O_DIS,
           O_BATCH, O_KV16, O_KV32, O_KERN, O_JSON, O_PREC, O_BUDGET, O_PAGING };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
        {"max-new-tokens", required_argument, 0, O_MAXNEW}, {"max-length", required_argument, 0, O_MAXLEN},
        {"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP}, {"seed", required_argument, 0, O_SEED},
        {"ignore-eos", no_argument, 0, O_IGNEOS}, {"special-as-text", no_argument, 0, O_SPECIAL},
        {"threads", required_argument, 0, O_THREADS}, {"pipeline", required_argument, 0, O_PIPE},
        {"disable-pass", required_argument, 0, O_DIS}, {"max-batch", required_argument, 0, O_BATCH},
        {"kv-f16", no_argument, 0, O_KV16}, {"kv-f32", no_argument, 0, O_KV32}, {"kernels", required_argument, 0, O_KERN},
        {"json", no_argument, 0, O_JSON}, {"precision", required_argument, 0, O_PREC},
        {"memory-budget", required_argument, 0, O_BUDGET}, {"allow-paging", no_argument, 0, O_PAGING}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
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
        case O_MAXNEW:
            if (miser_cli_parse_i64(optarg, 1, 1 << 30, &max_new)) {
                miser_cli_error(cmd, "invalid value '%s' for --max-new-tokens: give a number of tokens >= 1 "
                                "(without it, 50 or up to --max-length)", optarg);
                return MISER_EXIT_USAGE;
            }
            break;
        case O_MAXLEN: bad = miser_cli_parse_i64(optarg, 1, 1 << 30, &max_len); break;
        case O_TEMP: bad = miser_cli_parse_f32(optarg, 0, 100, &temperature); break;
        case O_TOPK: bad = miser_cli_parse_i64(optarg, 0, 1 << 30, &top_k); break;
        case O_TOPP: bad = miser_cli_parse_f32(optarg, 0, 1, &top_p); break;
        case O_SEED: bad = miser_cli_parse_i64(optarg, 0, INT64_MAX, &seed); break;
        case O_IGNEOS: ignore_eos = 1; break;
        case O_SPECIAL: special_text = 1; break;
        case O_THREADS: bad = miser_cli_parse_i64(optarg, 1, 256, &threads); break;
        case O_PIPE: pipeline = optarg; break;
        case O_DIS: disable = optarg; break;
        case O_BATCH: bad = miser_cli_parse_i64(optarg, 1, 1 << 20, &max_batch); break;
        case O_KV16:
        case O_KV32:
            if (kv_f16 && kv_f16 != (c == O_KV16 ? 1 : -1)) {
                miser_cli_error(cmd, "--kv-f16 and --kv-f32 contradict each other: give one");
                return MISER_EXIT_USAGE;
            }
            kv_f16 = c == O_KV16 ? 1 : -1; /* 0: the architecture's default */
            break;
        case O_KERN: kernels = optarg; break;
        case O_JSON: json = 1; break;
        case O_PREC: precision = optarg; break;
        case O_BUDGET: budget_s = optarg; break;
        case O_PAGING: allow_paging = 1; break;
        default: return miser_cli_option_error(cmd, c, argv);
        }
        if (bad) return miser_cli_value_error(cmd, opts, li, optarg);
    }
    if (optind < argc) {
        miser_cli_error(cmd, "unexpected argument '%s' (use --prompt TEXT)", argv[optind]);
        return MISER_EXIT_USAGE;
    }
    if (!model_dir || !*model_dir) {
        miser_cli_error(cmd, "--model DIR is required (see --help)");
        return MISER_EXIT_USAGE;
    }
    if (kernels && miser_kernels_select(kernels)) {
        miser_cli_error(cmd, "unknown or unsupported kernel set '%s' (available: %s)", kernels, miser_kernels_available());
        return MISER_EXIT_USAGE;
    }
    miser_dtype prec = MISER_DTYPE_F32;
    if (precision && (miser_dtype_parse(precision, &prec) || prec == MISER_DTYPE_I32 || prec == MISER_DTYPE_Q6_K)) {
        miser_cli_error(cmd, "unknown precision '%s' (f32, f16, bf16, q8_0, q4_0, q4_k)", precision);
        return MISER_EXIT_USAGE;
    }
    if (!miser_pipeline_passes(pipeline)) {
        miser_cli_error(cmd, "unknown pipeline '%s' (default, naive, none)", pipeline);
        return MISER_EXIT_USAGE;
    }
    char *stdin_buf = NULL;
    size_t plen;
    if (!prompt) {
        stdin_buf = miser_cli_read_stdin(cmd, &plen);
        if (!stdin_buf) return MISER_EXIT_FAIL;
        prompt = stdin_buf;
    } else plen = strlen(prompt);
    int rc = MISER_EXIT_OK;
    miser_model *model = NULL;
    char *weights_dir = NULL;
    miser_tokenizer *tok = NULL;
    miser_plan *plan = NULL;
    miser_session *sess = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    miser_generate_result res = {0};
    miser_status st;
    const char *what = stdin_buf ? "the prompt on stdin" : "--prompt";
    if (!miser_cli_utf8_valid((const unsigned char *)prompt, plen)) {
        miser_cli_error(cmd, "%s is not valid UTF-8", what);
        rc = MISER_EXIT_DATA;
        goto out;
    }
    int64_t budget_ctx = 0; /* KV positions the budget leaves (0: no budget) */
    if (budget_s) {
        /* prompt tokens <= prompt bytes + 1: an upper bound on the context wanted */
        int64_t want = max_len ? max_len : (int64_t)plen + 1 + (max_new > 0 ? max_new : 50);
        int p = (int)prec;
        if ((rc = miser_cli_budget_check(cmd, model_dir, budget_s, allow_paging, precision != NULL, &p, want, 1,
                                         MISER_BUDGET_GENERATE, (int)threads, kv_f16, &budget_ctx)))
            goto out;
        if (!precision && p >= 0) { /* -1: as stored */
            prec = (miser_dtype)p;
            precision = miser_dtype_name(prec);
        }
    }
    double t0 = miser_now_s();
    if (precision) {
        char note[1024];
        int converted = 0;
        /* the source is checked first, so that a bad checkpoint is exit 3
         * and only a failure to make the cache is a runtime failure */
        if ((st = miser_model_open(model_dir, &model))) {
            miser_cli_error(cmd, "%s", miser_error_message());
            rc = miser_cli_exit_for_input(st);
            goto out;
        }
        miser_model_free(model);
        model = NULL;
        if ((st = miser_precision_prepare(model_dir, prec, NULL, &weights_dir, note, sizeof note, &converted))) {
            miser_cli_error(cmd, "%s", miser_error_message());
            rc = miser_cli_exit_for_status(st);
            goto out;
        }
        if (note[0]) fprintf(stderr, "miser generate: %s\n", note);
        if (converted) fprintf(stderr, "miser generate: converted the weights to %s into %s\n", precision, weights_dir);
    }
    if ((st = miser_model_open(weights_dir ? weights_dir : model_dir, &model)) || (st = miser_model_prefault(model)) ||
        (st = miser_tokenizer_open(model_dir, &tok))) {
        miser_cli_error(cmd, "%s", miser_error_message());
        rc = miser_cli_exit_for_input(st);
        goto out;
    }
    double t1 = miser_now_s();
    stage_mark("load");
    const miser_gpt2_config *cfg = miser_model_config(model);
    if ((rc = miser_cli_prompt_ids(cmd, what, tok, cfg->n_ctx, cfg->n_vocab, prompt, plen,
                                   special_text ? MISER_TOKENIZE_SPECIAL_AS_TEXT : 0, &ids, &n_ids)))
        goto out;
    if (max_len && max_len <= (long long)n_ids) {
        miser_cli_error(cmd, "%s has %zu tokens: --max-length %lld leaves no room for a new token", what, n_ids,
                        max_len);
        rc = MISER_EXIT_DATA;
        goto out;
    }
    if (max_new < 0) max_new = max_len ? 0 : 50;
    int64_t want_ctx = (int64_t)n_ids + (max_new ? max_new : cfg->n_ctx);
    if (max_len && max_len < want_ctx) want_ctx = max_len > (long long)n_ids ? max_len : (long long)n_ids;
    if (want_ctx > cfg->n_ctx) want_ctx = cfg->n_ctx;
    if (budget_ctx > 0 && want_ctx > budget_ctx) want_ctx = budget_ctx;
    /* planned for the context this run uses (below --max-batch, the
     * arena shrinks with it), as `miser plan` predicts */
    miser_compile_options co = {.pipeline = pipeline, .disable = disable, .max_batch = max_batch, .max_context = want_ctx};
    if ((st = miser_plan_compile(model, &co, &plan))) {
        miser_cli_error(cmd, "%s", miser_error_message());
        rc = miser_cli_exit_for_status(st);
        goto out;
    }
    /* the load's freed pages go back to the kernel before the session's
     * buffers exist (budget.h: what the predictor counts on) */
    miser_budget_release_freed();
    stage_mark("compile");
    miser_session_options so = {.capacity = want_ctx, .threads = (int)threads, .kv_f16 = kv_f16};
    if ((st = miser_session_create(plan, &so, &sess))) {
        miser_cli_error(cmd, "%s", miser_error_message());
        rc = miser_cli_exit_for_status(st);
        goto out;
    }
    stage_mark("session");
    miser_generate_options go = {.max_new_tokens = max_new, .max_length = max_len, .temperature = temperature,
                                 .top_k = (int)top_k, .top_p = top_p, .seed = (uint64_t)seed,
                                 .stop_at_eos = !ignore_eos, .eos_token = cfg->eos_token_id};
    stream_ctx sc = {tok, !json};
    if ((st = miser_generate(sess, ids, (int64_t)n_ids, &go, on_token, &sc, &res))) {
        if (!json) fputc('\n', stdout);
        miser_cli_error(cmd, "%s", miser_error_message());
        rc = miser_cli_exit_for_status(st);
        goto out;
    }
    if (!strcmp(res.stop_reason, "capacity")) {
        if (!json) fputc('\n', stdout);
        fprintf(stderr, "miser generate: stopped after %lld new tokens: the model's context of %lld tokens is full\n",
                (long long)res.n, (long long)cfg->n_ctx);
    }
    if (json) {
        char *text = NULL;
        size_t tlen = 0;
        if ((st = miser_tokenizer_decode(tok, res.ids, (size_t)res.n, &text, &tlen))) {
            miser_cli_error(cmd, "%s", miser_error_message());
            rc = MISER_EXIT_FAIL;
            goto out;
        }
        printf("{\"prompt_ids\":");
        json_ids(stdout, ids, (int64_t)n_ids);
        printf(",\"generated_ids\":");
        json_ids(stdout, res.ids, res.n);
        printf(",\"text\":");
        miser_cli_json_string(stdout, (const unsigned char *)text, tlen, NULL);
        printf(",\"stop_reason\":\"%s\",\"timings\":{\"load_s\":%.6f,\"compile_s\":%.6f,\"prefill_s\":%.6f,"
               "\"decode_s\":%.6f,\"ttft_s\":%.6f,\"decode_tok_s\":%.3f},\"threads\":%lld,\"kernels\":\"%s\","
               "\"pipeline\":\"%s\"}\n",
               res.stop_reason, t1 - t0, miser_plan_compile_seconds(plan), res.prefill_s, res.decode_s, res.prefill_s,
               res.n > 1 && res.decode_s > 0 ? (double)(res.n - 1) / res.decode_s : 0.0, threads,
               miser_kernels_get()->name, pipeline);
        miser_free(text);
    } else if (strcmp(res.stop_reason, "capacity"))
        fputc('\n', stdout);
    rc = miser_cli_finish_stdout(cmd);
out:
    miser_free(weights_dir);
    miser_free(res.ids);
    miser_free(ids);
    miser_session_free(sess);
    miser_plan_free(plan);
    miser_tokenizer_free(tok);
    miser_model_free(model);
    miser_free(stdin_buf);
    return rc;
}

MISER_CLI_COMMAND(generate, "generate", "generate text with a model (checkpoint directory or GGUF file)", cmd_generate)
