/* The HTTP layer of `miser serve`, on libmicrohttpd (one thread per
 * connection, so a completion's thread may block waiting for its tokens).
 *
 * Routes: GET / (page.c), GET /health, GET /v1/models, GET /metrics,
 * POST /v1/completions, POST /v1/chat/completions (also without /v1),
 * POST /tokenize, POST /detokenize. Nothing is ever read from disk.
 *
 * Limits: bodies over max_body are 413 (at once when Content-Length says
 * so, otherwise once the body has been discarded); header space per
 * connection (libmicrohttpd's connection memory limit, 431 beyond it);
 * connections (max_connections, more are refused); idle connections
 * (idle_timeout_s); generation time (request_timeout_s, sched.c).
 * With an API key, every route but / and /health needs
 * `Authorization: Bearer KEY`, compared in constant time.
 *
 * A request's context (req) lives until both libmicrohttpd's completion
 * notice and, for a stream, the response's free callback have run: the
 * second one logs the request's line, counts its outcome and frees it. A
 * client that goes away is noticed while waiting (poll for POLLRDHUP on
 * the socket) or when a write fails; its job is cancelled and the
 * scheduler frees the sequence at its next step. */
#include "serve/internal.h"
#include "miser/alloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

extern const char miser_serve_page_html[];

enum { R_NONE = 0, R_PAGE, R_HEALTH, R_MODELS, R_METRICS, R_COMPLETIONS, R_CHAT, R_TOKENIZE, R_DETOKENIZE };

typedef struct req {
    miser_server *s;
    struct MHD_Connection *conn;
    atomic_int refs;
    int route, post;
    char method[16], path[96];
    double t0;
    miser_sb body;
    int too_large;
    int status;            /* response code queued */
    const char *outcome;   /* for /metrics (NULL: not counted) */
    int64_t n_prompt, n_gen;
    const char *finish;
    int terminated_ok;     /* libmicrohttpd: completed without error */
    /* streaming */
    miser_job *job;
    int fd, chat, include_usage, phase, stream_done;
    size_t sent;           /* text bytes sent */
    miser_sb out;
    size_t out_pos;
    char id[48];
    long long created;
} req;

/* ---- small helpers ------------------------------------------------------ */

static void logf_(miser_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(miser_server *s, const char *fmt, ...)
{
    if (!s->o.log) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->o.log(s->o.log_user, line);
}

static int outcome_index(const char *o)
{
    static const char *names[OUT_COUNT] = {"ok", "client_error", "unauthorized", "rejected", "cancelled", "timeout", "error"};
    for (int i = 0; o && i < OUT_COUNT; i++)
        if (!strcmp(o, names[i])) return i;
    return OUT_ERROR;
}

static void req_unref(req *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1) return;
    miser_server *s = r->s;
    if (r->job) {
        miser_job_release(s, r->job);
        r->job = NULL;
        atomic_fetch_sub(&s->inflight, 1);
    }
    if (r->outcome) {
        pthread_mutex_lock(&s->mu);
        s->m.requests[outcome_index(r->outcome)]++;
        pthread_mutex_unlock(&s->mu);
    }
    if (r->route != R_HEALTH && r->route != R_METRICS)
        logf_(s, "%s %s %d %.1fms%s%s prompt=%lld gen=%lld%s%s", r->method, r->path, r->status,
              (miser_now_s() - r->t0) * 1e3, r->outcome ? " " : "", r->outcome ? r->outcome : "", (long long)r->n_prompt,
              (long long)r->n_gen, r->finish ? " finish=" : "", r->finish ? r->finish : "");
    miser_sb_free(&r->body);
    miser_sb_free(&r->out);
    miser_free(r);
}

static enum MHD_Result send_buf(req *r, int status, const char *ctype, const char *data, size_t len, const char *extra_h,
                                const char *extra_v)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (extra_h) MHD_add_response_header(resp, extra_h, extra_v);
    r->status = status;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_sb(req *r, int status, const char *ctype, miser_sb *b)
{
    if (b->failed) {
        miser_sb_free(b);
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        if (r->outcome) r->outcome = "error";
        return send_buf(r, 500, "application/json", oom, sizeof oom - 1, NULL, NULL);
    }
    enum MHD_Result ret = send_buf(r, status, ctype, b->data ? b->data : "", b->len, NULL, NULL);
    miser_sb_free(b);
    return ret;
}

static enum MHD_Result send_error(req *r, const miser_serve_error *e)
{
    miser_sb b = {0};
    miser_serve_error_json(&b, e);
    if (r->outcome || r->post) {
        r->outcome = e->status == 401 ? "unauthorized"
                     : e->status == 503 ? "rejected"
                     : e->status >= 500 ? "error"
                                        : "client_error";
    }
    const char *h = NULL, *v = NULL;
    if (e->status == 503) h = "Retry-After", v = "1";
    if (e->status == 401) h = "WWW-Authenticate", v = "Bearer";
    if (e->status == 405) h = "Allow", v = r->post ? "POST" : "GET, HEAD";
    if (b.failed) return send_sb(r, 500, "application/json", &b);
    enum MHD_Result ret = send_buf(r, e->status, "application/json", b.data, b.len, h, v);
    miser_sb_free(&b);
    return ret;
}

static enum MHD_Result fail(req *r, int status, const char *type, const char *code, const char *param, const char *fmt,
                            ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result fail(req *r, int status, const char *type, const char *code, const char *param, const char *fmt, ...)
{
    miser_serve_error e;
    miser_serve_error_set(&e, status, type, code, param, "%s", "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return send_error(r, &e);
}

/* Constant time in the key's length: every byte of the key is compared
 * whatever the candidate holds. */
static int key_matches(const char *given, const char *key)
{
    size_t ng = given ? strlen(given) : 0, nk = strlen(key);
    unsigned char d = ng != nk;
    for (size_t i = 0; i < nk; i++) d |= (unsigned char)((i < ng ? given[i] : 0) ^ key[i]);
    return d == 0;
}

static int client_gone(int fd)
{
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* mu held. Waits until j has text past `sent` or is done; -1 when the
 * client has gone. */
static int wait_job(miser_server *s, miser_job *j, size_t sent, int fd)
{
    while (j->safe == sent && j->state != JOB_DONE) {
        if (client_gone(fd)) return -1;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j->cv, &s->mu, &ts);
    }
    return client_gone(fd) ? -1 : 0;
}

static const char *model_name(const miser_server *s) { return s->alias; }

/* ---- completions ---------------------------------------------------------- */

static void usage_json(miser_sb *b, int64_t p, int64_t g)
{
    miser_sb_printf(b, "{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld}", (long long)p,
                    (long long)g, (long long)(p + g));
}

static void chunk_head(req *r, miser_sb *b)
{
    miser_sb_printf(b, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", r->id,
                    r->chat ? "chat.completion.chunk" : "text_completion", r->created);
    miser_sb_json_str(b, model_name(r->s), strlen(model_name(r->s)));
}

/* One SSE event with a piece of text (or the final one with finish set). */
static void sse_piece(req *r, miser_sb *b, const char *t, size_t n, const char *finish, int role)
{
    chunk_head(r, b);
    miser_sb_puts(b, ",\"choices\":[{\"index\":0,");
    if (r->chat) {
        miser_sb_puts(b, "\"delta\":{");
        if (role) miser_sb_puts(b, "\"role\":\"assistant\",\"content\":\"\"");
        else if (!finish) {
            miser_sb_puts(b, "\"content\":");
            miser_sb_json_str(b, t, n);
        }
        miser_sb_puts(b, "},");
    } else {
        miser_sb_puts(b, "\"text\":");
        miser_sb_json_str(b, t, n);
        miser_sb_puts(b, ",");
    }
    miser_sb_puts(b, "\"logprobs\":null,\"finish_reason\":");
    if (finish) miser_sb_printf(b, "\"%s\"", finish);
    else miser_sb_puts(b, "null");
    miser_sb_puts(b, "}]");
    if (r->include_usage) miser_sb_puts(b, ",\"usage\":null");
    miser_sb_puts(b, "}\n\n");
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    req *r = cls;
    miser_server *s = r->s;
    miser_job *j = r->job;
    for (;;) {
        if (r->out_pos < r->out.len) {
            size_t n = r->out.len - r->out_pos < max ? r->out.len - r->out_pos : max;
            memcpy(buf, r->out.data + r->out_pos, n);
            r->out_pos += n;
            if (r->out_pos == r->out.len) r->out_pos = r->out.len = 0;
            return (ssize_t)n;
        }
        if (r->out.failed) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (r->stream_done) return MHD_CONTENT_READER_END_OF_STREAM;
        miser_sb *b = &r->out;
        if (r->phase == 0) { /* the chat role chunk goes out at once */
            r->phase = 1;
            if (r->chat) {
                sse_piece(r, b, "", 0, NULL, 1);
                continue;
            }
        }
        pthread_mutex_lock(&s->mu);
        if (wait_job(s, j, r->sent, r->fd)) {
            pthread_mutex_unlock(&s->mu);
            r->outcome = "cancelled";
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        size_t upto = j->safe;
        int done = j->state == JOB_DONE;
        if (upto > r->sent) sse_piece(r, b, j->text.data + r->sent, upto - r->sent, NULL, 0);
        r->sent = upto;
        r->n_gen = j->n_gen;
        if (done) {
            r->finish = j->finish;
            r->outcome = j->outcome;
            if (j->error[0]) {
                miser_serve_error e;
                miser_serve_error_set(&e, 500, "server_error", NULL, NULL, "%s", j->error);
                miser_sb_puts(b, "data: ");
                miser_serve_error_json(b, &e);
                miser_sb_puts(b, "\n\n");
            } else {
                sse_piece(r, b, "", 0, j->finish, 0);
                if (r->include_usage) {
                    chunk_head(r, b);
                    miser_sb_puts(b, ",\"choices\":[],\"usage\":");
                    usage_json(b, j->n_prompt, j->n_gen);
                    miser_sb_puts(b, "}\n\n");
                }
            }
            miser_sb_puts(b, "data: [DONE]\n\n");
            r->stream_done = 1;
        }
        pthread_mutex_unlock(&s->mu);
    }
}

static void stream_free(void *cls)
{
    req *r = cls;
    if (!r->stream_done || r->out.len > r->out_pos) r->outcome = "cancelled";
    req_unref(r);
}

static enum MHD_Result handle_generate(req *r)
{
    miser_server *s = r->s;
    miser_serve_request q;
    miser_serve_error e;
    int chat = r->route == R_CHAT;
    if (chat && s->chat == MISER_CHAT_NONE)
        return fail(r, 400, "invalid_request_error", "no_chat_template", "messages",
                    "this model has no chat template miser knows (%s); use /v1/completions, or start the server with "
                    "--chat-template chatml|llama2|llama3|mistral",
                    s->chat_unknown ? "its tokenizer_config.json names one miser does not recognise"
                                    : "its tokenizer_config.json names none");
    if (miser_serve_request_parse(chat ? MISER_SERVE_CHAT : MISER_SERVE_COMPLETION, r->body.data, r->body.len, &q, &e))
        return send_error(r, &e);
    int32_t *ids = NULL;
    size_t n = 0;
    enum MHD_Result ret;
    if (q.has_ids) {
        for (size_t i = 0; i < q.n_ids; i++)
            if (q.ids[i] >= s->cfg->n_vocab) {
                ret = fail(r, 400, "invalid_request_error", NULL, "prompt",
                           "'prompt' token %d (item %zu) is outside the model's vocabulary of %lld", q.ids[i], i,
                           (long long)s->cfg->n_vocab);
                goto out;
            }
        ids = q.ids;
        n = q.n_ids;
        q.ids = NULL;
    } else {
        miser_sb text = {0};
        if (chat) miser_chat_render(s->chat, q.messages, q.n_messages, &text);
        const char *t = chat ? text.data : q.prompt;
        size_t tl = chat ? text.len : q.prompt_len;
        /* a rendered chat carries its own bos marker (as transformers'
         * apply_chat_template, tokenized without adding special tokens) */
        unsigned flags = chat ? MISER_TOKENIZE_NO_ADD_SPECIAL : 0;
        miser_status st = text.failed ? MISER_ERR_NOMEM : miser_tokenizer_encode(s->tok, t ? t : "", tl, flags, &ids, &n);
        miser_sb_free(&text);
        if (st) {
            ret = fail(r, 500, "server_error", NULL, NULL, "tokenizing the prompt failed: %s", miser_error_message());
            goto out;
        }
    }
    r->n_prompt = (int64_t)n;
    if (n == 0) {
        ret = fail(r, 400, "invalid_request_error", NULL, chat ? "messages" : "prompt", "the prompt is empty: give at least one token");
        goto out;
    }
    if ((int64_t)n > s->eng->seq_capacity) {
        ret = fail(r, 400, "invalid_request_error", "context_length_exceeded", chat ? "messages" : "prompt",
                   "the prompt has %zu tokens, more than the context of %lld tokens per sequence", n,
                   (long long)s->eng->seq_capacity);
        goto out;
    }
    miser_job *j = miser_job_new(s, ids, (int64_t)n, &q, chat ? miser_chat_end_marker(s->chat) : NULL);
    if (!j) {
        ret = fail(r, 500, "server_error", NULL, NULL, "out of memory");
        goto out;
    }
    if (miser_job_submit(s, j)) {
        int draining = atomic_load(&s->phase) != PHASE_READY;
        miser_job_release(s, j);
        ret = draining ? fail(r, 503, "server_error", "shutting_down", NULL, "the server is shutting down")
                       : fail(r, 503, "server_error", "overloaded", NULL,
                              "the server is busy: every slot is taken and the queue is full; retry later");
        goto out;
    }
    r->job = j;
    atomic_fetch_add(&s->inflight, 1);
    r->chat = chat;
    r->include_usage = q.include_usage;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->fd = ci ? ci->connect_fd : -1;
    r->created = (long long)time(NULL);
    snprintf(r->id, sizeof r->id, "%s-%016llx%08llx", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)atomic_fetch_add(&s->next_id, 1) * 0x9e3779b97f4a7c15ull, (unsigned long long)r->created);
    r->outcome = "ok";
    if (q.stream) {
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, r, stream_free);
        if (!resp) {
            ret = MHD_NO;
            goto out;
        }
        atomic_fetch_add(&r->refs, 1); /* the response's */
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        r->status = 200;
        ret = MHD_queue_response(r->conn, 200, resp);
        MHD_destroy_response(resp);
        goto out;
    }
    /* not streaming: wait here (this connection's own thread) for the end */
    pthread_mutex_lock(&s->mu);
    while (j->state != JOB_DONE)
        if (wait_job(s, j, j->safe, r->fd)) break;
    int done = j->state == JOB_DONE;
    miser_sb b = {0};
    int status = 200;
    if (!done) {
        pthread_mutex_unlock(&s->mu);
        r->outcome = "cancelled";
        ret = MHD_NO; /* the client is gone: close */
        goto out;
    }
    r->n_gen = j->n_gen;
    r->finish = j->finish;
    r->outcome = j->outcome;
    if (j->error[0]) {
        miser_serve_error_set(&e, 500, "server_error", NULL, NULL, "%s", j->error);
        miser_serve_error_json(&b, &e);
        status = 500;
    } else {
        miser_sb_printf(&b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", r->id,
                        chat ? "chat.completion" : "text_completion", r->created);
        miser_sb_json_str(&b, model_name(s), strlen(model_name(s)));
        miser_sb_puts(&b, ",\"choices\":[{\"index\":0,");
        if (chat) {
            miser_sb_puts(&b, "\"message\":{\"role\":\"assistant\",\"content\":");
            miser_sb_json_str(&b, j->text.data ? j->text.data : "", j->text.len);
            miser_sb_puts(&b, "},");
        } else {
            miser_sb_puts(&b, "\"text\":");
            miser_sb_json_str(&b, j->text.data ? j->text.data : "", j->text.len);
            miser_sb_puts(&b, ",");
        }
        miser_sb_printf(&b, "\"logprobs\":null,\"finish_reason\":\"%s\"}],\"usage\":", j->finish ? j->finish : "stop");
        usage_json(&b, j->n_prompt, j->n_gen);
        miser_sb_puts(&b, "}");
    }
    pthread_mutex_unlock(&s->mu);
    ret = send_sb(r, status, "application/json", &b);
out:
    miser_free(ids);
    miser_serve_request_free(&q);
    return ret;
}

/* ---- the other routes ------------------------------------------------------ */

static enum MHD_Result handle_tokenize(req *r)
{
    miser_server *s = r->s;
    miser_serve_request q;
    miser_serve_error e;
    if (miser_serve_request_parse(MISER_SERVE_TOKENIZE, r->body.data, r->body.len, &q, &e)) return send_error(r, &e);
    int32_t *ids = NULL;
    size_t n = 0;
    /* llama-server's add_special: bos/eos as the tokenizer's config says only when asked */
    if (miser_tokenizer_encode(s->tok, q.prompt, q.prompt_len, q.add_special ? 0 : MISER_TOKENIZE_NO_ADD_SPECIAL, &ids, &n)) {
        miser_serve_request_free(&q);
        return fail(r, 500, "server_error", NULL, NULL, "%s", miser_error_message());
    }
    miser_sb b = {0};
    miser_sb_puts(&b, "{\"tokens\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) miser_sb_puts(&b, ",");
        if (!q.with_pieces) {
            miser_sb_printf(&b, "%d", ids[i]);
            continue;
        }
        size_t len = 0;
        const char *p = miser_tokenizer_token_bytes(s->tok, ids[i], &len);
        miser_sb_printf(&b, "{\"id\":%d,\"piece\":", ids[i]);
        if (p && miser_utf8_valid(p, len)) {
            miser_sb_json_str(&b, p, len);
            miser_sb_puts(&b, "}");
            continue;
        }
        /* not valid UTF-8 on its own: the bytes, as llama-server sends them */
        miser_sb_puts(&b, "[");
        for (size_t k = 0; k < len; k++) miser_sb_printf(&b, "%s%u", k ? "," : "", (unsigned char)p[k]);
        miser_sb_puts(&b, "]}");
    }
    miser_sb_puts(&b, "]}");
    miser_free(ids);
    miser_serve_request_free(&q);
    r->outcome = "ok";
    return send_sb(r, 200, "application/json", &b);
}

static enum MHD_Result handle_detokenize(req *r)
{
    miser_server *s = r->s;
    miser_serve_request q;
    miser_serve_error e;
    if (miser_serve_request_parse(MISER_SERVE_DETOKENIZE, r->body.data, r->body.len, &q, &e)) return send_error(r, &e);
    for (size_t i = 0; i < q.n_ids; i++)
        if (q.ids[i] >= miser_tokenizer_vocab_size(s->tok)) {
            enum MHD_Result ret = fail(r, 400, "invalid_request_error", NULL, "tokens",
                                       "'tokens' item %zu (%d) is outside the vocabulary of %d", i, q.ids[i],
                                       miser_tokenizer_vocab_size(s->tok));
            miser_serve_request_free(&q);
            return ret;
        }
    char *text = NULL;
    size_t len = 0;
    if (miser_tokenizer_decode(s->tok, q.ids, q.n_ids, &text, &len)) {
        miser_serve_request_free(&q);
        return fail(r, 400, "invalid_request_error", NULL, "tokens", "%s", miser_error_message());
    }
    miser_sb b = {0};
    miser_sb_puts(&b, "{\"content\":");
    miser_sb_json_str(&b, text, len);
    miser_sb_puts(&b, "}");
    miser_free(text);
    miser_serve_request_free(&q);
    r->outcome = "ok";
    return send_sb(r, 200, "application/json", &b);
}

static enum MHD_Result handle_models(req *r)
{
    miser_server *s = r->s;
    miser_sb b = {0};
    miser_sb_puts(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    miser_sb_json_str(&b, s->alias, strlen(s->alias));
    miser_sb_printf(&b,
                    ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"miser\",\"meta\":{\"n_vocab\":%lld,"
                    "\"n_ctx_train\":%lld,\"n_embd\":%lld,\"n_layer\":%lld,\"slots\":%d,\"ctx_per_slot\":%lld,"
                    "\"chat_template\":\"%s\",\"engine\":\"%s\"}}]}",
                    (long long)time(NULL) - (long long)(miser_now_s() - s->t_start), (long long)s->cfg->n_vocab,
                    (long long)s->cfg->n_ctx, (long long)s->cfg->n_embd, (long long)s->cfg->n_layer,
                    s->eng ? s->eng->n_seqs : s->o.parallel, (long long)(s->eng ? s->eng->seq_capacity : s->o.ctx),
                    miser_chat_format_name(s->chat), s->eng ? s->eng->name : "loading");
    return send_sb(r, 200, "application/json", &b);
}

static int route_of(const char *url, int *post)
{
    static const struct {
        const char *path;
        int route, post;
    } t[] = {
        {"/", R_PAGE, 0},
        {"/health", R_HEALTH, 0},
        {"/v1/health", R_HEALTH, 0},
        {"/v1/models", R_MODELS, 0},
        {"/models", R_MODELS, 0},
        {"/metrics", R_METRICS, 0},
        {"/v1/completions", R_COMPLETIONS, 1},
        {"/completions", R_COMPLETIONS, 1},
        {"/v1/chat/completions", R_CHAT, 1},
        {"/chat/completions", R_CHAT, 1},
        {"/tokenize", R_TOKENIZE, 1},
        {"/detokenize", R_DETOKENIZE, 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (!strcmp(url, t[i].path)) {
            *post = t[i].post;
            return t[i].route;
        }
    return R_NONE;
}

static enum MHD_Result dispatch(req *r)
{
    miser_server *s = r->s;
    int phase = atomic_load(&s->phase);
    switch (r->route) {
    case R_PAGE: r->outcome = "ok"; return send_buf(r, 200, "text/html; charset=utf-8", miser_serve_page_html, strlen(miser_serve_page_html), "Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'");
    case R_HEALTH:
        if (phase == PHASE_READY) return send_buf(r, 200, "application/json", "{\"status\":\"ok\"}", 15, NULL, NULL);
        return fail(r, 503, "unavailable_error", phase == PHASE_LOADING ? "loading" : "shutting_down", NULL,
                    phase == PHASE_LOADING ? "Loading model" : "the server is shutting down");
    case R_MODELS: r->outcome = "ok"; return handle_models(r);
    case R_METRICS: {
        miser_sb b = {0};
        miser_metrics_render(s, &b);
        return send_sb(r, 200, "text/plain; version=0.0.4; charset=utf-8", &b);
    }
    default: break;
    }
    if (phase != PHASE_READY)
        return fail(r, 503, "server_error", phase == PHASE_LOADING ? "loading" : "shutting_down", NULL,
                    phase == PHASE_LOADING ? "the model is loading; retry shortly" : "the server is shutting down");
    switch (r->route) {
    case R_COMPLETIONS:
    case R_CHAT: return handle_generate(r);
    case R_TOKENIZE: return handle_tokenize(r);
    case R_DETOKENIZE: return handle_detokenize(r);
    default: return fail(r, 500, "server_error", NULL, NULL, "no handler");
    }
}

static void copy_printable(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < cap; i++) dst[i] = src[i] > 0x20 && src[i] < 0x7f ? src[i] : '?';
    dst[i] = 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    miser_server *s = cls;
    req *r = *con_cls;
    if (!r) { /* headers are in: decide what we can now */
        r = miser_calloc(MISER_MEM_OTHER, 1, sizeof *r);
        if (!r) return MHD_NO;
        atomic_init(&r->refs, 1);
        r->s = s;
        r->conn = conn;
        r->fd = -1;
        r->t0 = miser_now_s();
        copy_printable(r->method, sizeof r->method, method);
        copy_printable(r->path, sizeof r->path, url);
        *con_cls = r;
        int post = 0;
        r->route = route_of(url, &post);
        int is_post = !strcmp(method, "POST"), is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        r->post = post;
        if (r->route == R_NONE) {
            r->outcome = "client_error";
            return fail(r, 404, "invalid_request_error", "not_found", NULL, "no route for %s %s", r->method, r->path);
        }
        if ((post && !is_post) || (!post && !is_get)) {
            r->outcome = "client_error";
            return fail(r, 405, "invalid_request_error", "method_not_allowed", NULL, "%s %s: use %s", r->method, r->path,
                        post ? "POST" : "GET");
        }
        if (s->api_key && r->route != R_PAGE && r->route != R_HEALTH) {
            const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
            const char *tok = auth && !strncasecmp(auth, "Bearer ", 7) ? auth + 7 : NULL;
            if (!key_matches(tok, s->api_key)) {
                r->outcome = "unauthorized";
                return fail(r, 401, "invalid_request_error", "invalid_api_key", NULL,
                            auth ? "the API key is not valid" : "an API key is required: send Authorization: Bearer KEY");
            }
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (post && cl) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno || *end || v > s->o.max_body) {
                r->outcome = "client_error";
                return fail(r, 413, "invalid_request_error", "request_too_large", NULL,
                            "the request body is larger than the limit of %zu bytes", s->o.max_body);
            }
        }
        return MHD_YES;
    }
    if (*upload_size) { /* body bytes */
        if (r->post && !r->too_large) {
            if (r->body.len + *upload_size > s->o.max_body) {
                r->too_large = 1;
                miser_sb_free(&r->body);
            } else
                miser_sb_put(&r->body, upload, *upload_size);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->status) return MHD_YES; /* already answered */
    if (r->too_large) {
        r->outcome = "client_error";
        return fail(r, 413, "invalid_request_error", "request_too_large", NULL,
                    "the request body is larger than the limit of %zu bytes", s->o.max_body);
    }
    if (r->body.failed) return fail(r, 500, "server_error", NULL, NULL, "out of memory");
    return dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    r->terminated_ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    if (!r->terminated_ok && r->job && r->outcome && !strcmp(r->outcome, "ok") && !r->stream_done) r->outcome = "cancelled";
    req_unref(r);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx, enum MHD_ConnectionNotificationCode t)
{
    miser_server *s = cls;
    atomic_fetch_add(&s->connections, t == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    miser_server *s = cls;
    if (!s->o.log) return;
    char line[400];
    int n = vsnprintf(line, sizeof line, fmt, ap);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    /* our own END_WITH_ERROR when a client left: the request's line says it */
    if (strstr(line, "application error generating response")) return;
    logf_(s, "http: %s", line);
}

miser_status miser_serve_listen(miser_server *s)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, s->host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)s->o.port);
    } else if (inet_pton(AF_INET6, s->host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)s->o.port);
        flags |= MHD_USE_IPv6;
    } else
        return miser_error_set(MISER_ERR_INVALID, "--host '%s' is not an IPv4 or IPv6 address", s->host);
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)s->o.port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)s->o.idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1024 * 1024), MHD_OPTION_END);
    if (!s->daemon)
        return miser_error_set(MISER_ERR_IO, "cannot listen on %s port %d (in use, or not an address of this host?)",
                               s->host, s->o.port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->o.port;
    return MISER_OK;
}

void miser_serve_http_stop(miser_server *s);
void miser_serve_http_stop(miser_server *s)
{
    if (s->daemon) MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}
