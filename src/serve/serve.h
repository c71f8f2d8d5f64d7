/* miser serve: an OpenAI-compatible HTTP server over one model (internal
 * header of src/serve; the CLI, the tests and the fuzz target include it).
 *
 * Layers, one file each:
 *   sbuf.c     growable byte buffers (MISER_MEM_OTHER) and JSON string output
 *   request.c  request bodies -> validated miser_serve_request (no model needed)
 *   chat.c     chat templates: recognise a tokenizer_config.json template by
 *              its markers, render messages into one prompt
 *   engine.c   the slots engine (--engine slots): N slots, each its own
 *              miser_session (KV per slot), stepped one after the other
 *   engine_batch.c  the default engine: one pass over the weights per step
 *              for every sequence, KV in a paged pool (miser/batch.h)
 *   sched.c    the scheduler thread: jobs queue, join and leave between steps;
 *              sampling, stop strings, UTF-8 hold-back, timings
 *   metrics.c  counters, histograms and the Prometheus text exposition
 *   http.c     libmicrohttpd: routes, limits, auth, SSE, drain
 *   page.c     the self-contained page served at GET /
 * Library code: never prints or exits; logging goes through a callback. */
#ifndef MISER_SERVE_H
#define MISER_SERVE_H

#include "miser/core.h"
#include "miser/runtime.h"
#include "miser/tokenizer.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ---- byte buffers ------------------------------------------------------ */

/* A growable buffer; .data is NUL-terminated when non-NULL. On allocation
 * failure .failed is set and further appends are dropped (callers check once
 * at the end). Free with miser_sb_free. */
typedef struct miser_sb {
    char *data;
    size_t len, cap;
    int failed;
} miser_sb;

void miser_sb_free(miser_sb *b);
void miser_sb_put(miser_sb *b, const void *s, size_t n);
void miser_sb_puts(miser_sb *b, const char *s);
void miser_sb_printf(miser_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s[0..n) as a JSON string literal: bytes that are not valid UTF-8 become
 * U+FFFD one byte at a time (as `miser generate --json` prints them). */
void miser_sb_json_str(miser_sb *b, const char *s, size_t n);
/* The length of the longest prefix of s[0..n) that ends on a UTF-8 boundary,
 * not counting a trailing sequence that is incomplete but could still be
 * completed by more bytes (those are held back while streaming). */
size_t miser_utf8_stable_prefix(const char *s, size_t n);
/* miser_utf8_valid (miser/core.h) says whether s[0..n) is entirely UTF-8. */

/* ---- requests ---------------------------------------------------------- */

typedef enum miser_serve_kind {
    MISER_SERVE_COMPLETION = 0, /* POST /v1/completions */
    MISER_SERVE_CHAT,           /* POST /v1/chat/completions */
    MISER_SERVE_TOKENIZE,       /* POST /tokenize */
    MISER_SERVE_DETOKENIZE      /* POST /detokenize */
} miser_serve_kind;

#define MISER_SERVE_MAX_STOP 4       /* as OpenAI */
#define MISER_SERVE_MAX_STOP_LEN 256 /* bytes per stop string */

typedef struct miser_serve_message {
    char *role;    /* "system", "developer", "user", "assistant" or "tool" */
    char *content; /* text (parts of type "text" joined) */
    size_t content_len;
} miser_serve_message;

/* A validated request. Every pointer is owned (miser_serve_request_free). */
typedef struct miser_serve_request {
    miser_serve_kind kind;
    char *prompt;            /* completion/tokenize text, or NULL when ids were given */
    size_t prompt_len;
    int32_t *ids;            /* completion prompt / detokenize tokens as ids */
    size_t n_ids;
    int has_ids;
    miser_serve_message *messages; /* chat */
    int n_messages;
    int64_t max_tokens;      /* >= 1; 0: not given (the server's default applies) */
    float temperature;       /* [0, 2]; default 1 as OpenAI */
    float top_p;             /* [0, 1]; default 1 */
    int top_k;               /* >= 0; 0 off (extension) */
    uint64_t seed;
    int has_seed;
    int ignore_eos;          /* extension */
    int stream, include_usage;
    char *stop[MISER_SERVE_MAX_STOP];
    size_t stop_len[MISER_SERVE_MAX_STOP];
    int n_stop;
    int add_special, with_pieces; /* /tokenize (llama-server's fields) */
} miser_serve_request;

/* An error as OpenAI sends it: {"error": {"message", "type", "param", "code"}}. */
typedef struct miser_serve_error {
    int status;              /* HTTP status */
    const char *type;        /* "invalid_request_error", "server_error", ... */
    const char *code;        /* NULL (JSON null) or a static code */
    char param[64];          /* "" = null */
    char message[320];
} miser_serve_error;

void miser_serve_error_set(miser_serve_error *e, int status, const char *type, const char *code, const char *param,
                           const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The error as a JSON body. */
void miser_serve_error_json(miser_sb *b, const miser_serve_error *e);

/* Parse and validate a request body of `kind`. Returns 0, or -1 with *err set
 * (400, naming the field in param; 500 on allocation failure). Unknown fields
 * are ignored, as OpenAI does; known fields miser cannot honour (n > 1, echo,
 * logprobs, best_of > 1, suffix, non-zero penalties) are 400. Never reads
 * outside body[0..len) (body need not be NUL-terminated). */
int miser_serve_request_parse(miser_serve_kind kind, const char *body, size_t len, miser_serve_request *out,
                              miser_serve_error *err);
void miser_serve_request_free(miser_serve_request *r);

/* ---- chat templates ---------------------------------------------------- */

typedef enum miser_chat_format {
    MISER_CHAT_NONE = 0,
    MISER_CHAT_CHATML,   /* <|im_start|>role\n...<|im_end|>\n */
    MISER_CHAT_LLAMA2,   /* <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] */
    MISER_CHAT_LLAMA3,   /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    MISER_CHAT_MISTRAL   /* <s>[INST] ... [/INST]...</s> */
} miser_chat_format;

/* "chatml", "llama2", "llama3", "mistral" -> format; MISER_CHAT_NONE when unknown. */
miser_chat_format miser_chat_format_parse(const char *name);
const char *miser_chat_format_name(miser_chat_format f);
/* Recognise a Jinja chat template by its markers. */
miser_chat_format miser_chat_detect(const char *tmpl);
/* Read dir/tokenizer_config.json's "chat_template" (a string, or a list of
 * {name, template} where "default" or the first is used) and recognise it.
 * *out = NONE when the file or the field is absent. A file that is present
 * but not JSON is MISER_ERR_FORMAT naming it. When the template is present
 * but unrecognised, *out = NONE and *unknown = 1. */
miser_status miser_chat_detect_dir(const char *dir, miser_chat_format *out, int *unknown);
/* Render messages + the assistant's opening into b. */
void miser_chat_render(miser_chat_format f, const miser_serve_message *m, int n, miser_sb *b);
/* The text that ends an assistant turn in format f (an implicit stop string). */
const char *miser_chat_end_marker(miser_chat_format f);

/* ---- the engine: what the scheduler steps ------------------------------ */

/* The plan's max_batch as the server compiles it, and so the most tokens one
 * prefill item carries: the same chunks miser_session_eval makes for a whole
 * prompt, so a served sequence's numbers equal `miser generate`'s. */
#define MISER_SERVE_MAX_BATCH 64

/* One sequence's share of a step: feed n tokens (a prefill chunk or the
 * last sampled token); the engine sets logits (the last position's n_vocab
 * values, valid until that sequence's next item) or status. */
typedef struct miser_serve_item {
    int seq;
    const int32_t *ids;
    int64_t n;
    int no_logits;      /* a prefill chunk before the prompt's last: an engine may skip its logits */
    const float *logits;
    miser_status status;
} miser_serve_item;

/* The interface a batched engine replaces: a fixed set of sequence slots,
 * stepped together. Today's engine (miser_serve_engine_slots) keeps one
 * miser_session per slot and evaluates items one after the other; a
 * multi-sequence engine runs the same items in one pass over the weights.
 * Only the scheduler thread calls it. */
typedef struct miser_serve_engine {
    const char *name;
    int n_seqs;                /* sequences held at once */
    int64_t seq_capacity;      /* positions per sequence */
    int64_t chunk;             /* most tokens one item may carry */
    void *impl;
    /* Make slot `seq` an empty sequence (positions restart at 0). */
    void (*seq_reset)(struct miser_serve_engine *e, int seq);
    /* Evaluate items[0..n) (distinct seqs). Returns MISER_OK when every item
     * was attempted; per-item failures are in item.status. */
    miser_status (*step)(struct miser_serve_engine *e, miser_serve_item *items, int n);
    /* Positions held by a sequence now. */
    int64_t (*seq_used)(const struct miser_serve_engine *e, int seq);
    /* Admission (optional; NULL: a free slot is enough). An engine with a
     * paged KV pool answers whether a sequence of up to n_prompt + max_new
     * positions can be guaranteed its blocks now, and reserves them; the
     * scheduler keeps the request queued otherwise. With no sequence
     * active it must admit any request that fits one sequence's capacity. */
    int (*admit)(struct miser_serve_engine *e, int seq, int64_t n_prompt, int64_t max_new);
    /* The sequence left its slot (optional): return what admit reserved. */
    void (*seq_release)(struct miser_serve_engine *e, int seq);
    void (*destroy)(struct miser_serve_engine *e);
    /* Most rows one step should carry (0: no limit): decode tokens first,
     * then prefill chunks while they fit (chunked prefill, so streams keep
     * their cadence while a long prompt arrives). */
    int64_t step_rows;
    /* KV blocks in use and in the pool (optional; /metrics). Called by the
     * scheduler thread only. */
    void (*kv_blocks)(const struct miser_serve_engine *e, int64_t *used, int64_t *total);
} miser_serve_engine;

/* N slots of `capacity` positions over `plan` (which must outlive it). */
miser_status miser_serve_engine_slots(const miser_plan *plan, int n_slots, int64_t capacity, int threads, int kv_f16,
                                      miser_serve_engine **out);
/* The batched engine (engine_batch.c): n_seqs sequences over one paged KV
 * pool of n_blocks blocks (0: n_seqs x a whole context each), every step one
 * pass over the weights for all rows (miser/batch.h). The plan must be
 * compiled with the default pipeline; step_rows is its max_batch (rows per
 * pass; the scheduler keeps a step within it). */
miser_status miser_serve_engine_batch(const miser_plan *plan, int n_seqs, int64_t capacity, int threads, int kv_f16,
                                      int64_t n_blocks, int64_t step_rows, miser_serve_engine **out);
void miser_serve_engine_free(miser_serve_engine *e);

/* ---- the server -------------------------------------------------------- */

typedef void (*miser_serve_log_fn)(void *user, const char *line);

typedef struct miser_serve_options {
    const char *model_dir;
    const char *host;          /* "127.0.0.1" when NULL */
    int port;                  /* 0: any free port */
    int parallel;              /* slots (1..256) */
    int64_t ctx;               /* positions per slot (0: the model's n_ctx) */
    int threads;
    const char *precision;     /* NULL: as stored */
    const char *api_key;       /* NULL: no authentication */
    int queue;                 /* waiting requests beyond the slots */
    const char *chat_template; /* NULL: from tokenizer_config.json */
    const char *engine;        /* "batch" (NULL: the default) or "slots"; borrowed until miser_serve_load */
    int64_t kv_blocks;         /* batch engine: KV pool blocks of MISER_KV_BLOCK_TOKENS (0: parallel x ctx) */
    int kv_f16;                /* KV cache dtype: > 0 f16, < 0 f32, 0 the architecture's (as generate's) */
    const char *alias;         /* model id in responses (NULL: the directory's name) */
    int max_connections;
    size_t max_body;           /* bytes */
    double request_timeout_s;  /* generation stops at this age ("length") */
    int idle_timeout_s;        /* connection inactivity */
    int64_t default_max_tokens;/* completions without max_tokens (OpenAI: 16) */
    miser_serve_log_fn log;
    void *log_user;
} miser_serve_options;

typedef struct miser_server miser_server;

/* Open the model and tokenizer (validated, mmapped; precision converted) and
 * read the chat template. Nothing is bound yet: bad input is refused here
 * (MISER_ERR_FORMAT/IO/RANGE/UNSUPPORTED with a message). */
miser_status miser_serve_create(const miser_serve_options *o, miser_server **out);
/* Bind and start answering (GET /health is 503 until miser_serve_load). */
miser_status miser_serve_listen(miser_server *s);
int miser_serve_port(const miser_server *s);
/* Compile the plan, create the engine, start the scheduler; then ready. */
miser_status miser_serve_load(miser_server *s);
/* Stop taking requests (503), wait for in-flight ones up to timeout_s, then
 * cancel what is left. Returns the number of requests cancelled. */
int miser_serve_drain(miser_server *s, double timeout_s);
/* Stop the daemon and the scheduler; frees everything. NULL is a no-op. */
void miser_serve_free(miser_server *s);

#endif
