/* Request bodies of the OpenAI-compatible endpoints, parsed (cJSON) and
 * validated into miser_serve_request before anything touches the model.
 * Every rejection is a 400 whose `param` names the field, so a client can
 * tell what to fix. Unknown fields are ignored, as OpenAI does; fields that
 * would change the answer in a way miser does not implement are refused
 * rather than silently dropped. */
#include "serve/serve.h"
#include "miser/alloc.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

void miser_serve_error_set(miser_serve_error *e, int status, const char *type, const char *code, const char *param,
                           const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

void miser_serve_error_json(miser_sb *b, const miser_serve_error *e)
{
    miser_sb_puts(b, "{\"error\":{\"message\":");
    miser_sb_json_str(b, e->message, strlen(e->message));
    miser_sb_puts(b, ",\"type\":");
    miser_sb_json_str(b, e->type ? e->type : "invalid_request_error", strlen(e->type ? e->type : "invalid_request_error"));
    miser_sb_puts(b, ",\"param\":");
    if (e->param[0]) miser_sb_json_str(b, e->param, strlen(e->param));
    else miser_sb_puts(b, "null");
    miser_sb_puts(b, ",\"code\":");
    if (e->code) miser_sb_json_str(b, e->code, strlen(e->code));
    else miser_sb_puts(b, "null");
    miser_sb_puts(b, "}}");
}

void miser_serve_request_free(miser_serve_request *r)
{
    if (!r) return;
    miser_free(r->prompt);
    miser_free(r->ids);
    for (int i = 0; i < r->n_messages; i++) {
        miser_free(r->messages[i].role);
        miser_free(r->messages[i].content);
    }
    miser_free(r->messages);
    for (int i = 0; i < r->n_stop; i++) miser_free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

#define BAD(param, ...) (miser_serve_error_set(err, 400, "invalid_request_error", NULL, param, __VA_ARGS__), -1)
#define NOMEM() (miser_serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory"), -1)

static const cJSON *field(const cJSON *root, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    return v && !cJSON_IsNull(v) ? v : NULL; /* null = absent, as OpenAI treats it */
}

static int is_integer(const cJSON *v, double lo, double hi)
{
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    return isfinite(d) && d == floor(d) && d >= lo && d <= hi;
}

static int get_int(const cJSON *root, const char *name, double lo, double hi, int64_t *out, miser_serve_error *err)
{
    const cJSON *v = field(root, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !is_integer(v, -9.2e18, 9.2e18)) return BAD(name, "'%s' must be an integer", name);
    if (v->valuedouble < lo || v->valuedouble > hi) {
        if (hi >= 9e18) return BAD(name, "'%s' must be >= %.0f (got %.0f)", name, lo, v->valuedouble);
        return BAD(name, "'%s' must be between %.0f and %.0f (got %.0f)", name, lo, hi, v->valuedouble);
    }
    *out = (int64_t)v->valuedouble;
    return 1;
}

static int get_num(const cJSON *root, const char *name, double lo, double hi, float *out, miser_serve_error *err)
{
    const cJSON *v = field(root, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return BAD(name, "'%s' must be a number", name);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return BAD(name, "'%s' must be between %g and %g (got %g)", name, lo, hi, v->valuedouble);
    *out = (float)v->valuedouble;
    return 1;
}

static int get_bool(const cJSON *root, const char *name, int *out, miser_serve_error *err)
{
    const cJSON *v = field(root, name);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return BAD(name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(v);
    return 1;
}

/* A JSON string's bytes (cJSON's strings end at an embedded "\u0000": the
 * text is what comes before it). */
static int get_text(const cJSON *v, const char *param, char **out, size_t *len, miser_serve_error *err)
{
    const char *s = cJSON_GetStringValue(v);
    if (!s) return BAD(param, "'%s' must be a string", param);
    *len = strlen(s);
    *out = miser_strndup(MISER_MEM_OTHER, s, *len);
    return *out ? 0 : NOMEM();
}

/* An array of token ids. */
static int get_ids(const cJSON *a, const char *param, int32_t **ids, size_t *n, miser_serve_error *err)
{
    int count = cJSON_GetArraySize(a);
    *ids = miser_malloc(MISER_MEM_OTHER, sizeof(int32_t) * (size_t)(count > 0 ? count : 1));
    if (!*ids) return NOMEM();
    *n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (!is_integer(e, 0, 2147483647.0))
            return BAD(param, "'%s' must hold token ids: integers >= 0 (item %zu is not)", param, *n);
        (*ids)[(*n)++] = (int32_t)e->valuedouble;
    }
    return 0;
}

static int parse_prompt(const cJSON *root, miser_serve_request *r, miser_serve_error *err)
{
    const cJSON *p = field(root, "prompt");
    if (!p) return BAD("prompt", "'prompt' is required");
    if (cJSON_IsString(p)) return get_text(p, "prompt", &r->prompt, &r->prompt_len, err);
    if (!cJSON_IsArray(p)) return BAD("prompt", "'prompt' must be a string, an array of token ids, or a one-item array of either");
    int n = cJSON_GetArraySize(p);
    const cJSON *first = cJSON_GetArrayItem(p, 0);
    if (n == 0) return BAD("prompt", "'prompt' is empty");
    if (cJSON_IsNumber(first)) {
        r->has_ids = 1;
        return get_ids(p, "prompt", &r->ids, &r->n_ids, err);
    }
    if (n > 1) return BAD("prompt", "batched prompts are not supported: give one prompt per request");
    if (cJSON_IsString(first)) return get_text(first, "prompt", &r->prompt, &r->prompt_len, err);
    if (cJSON_IsArray(first)) {
        r->has_ids = 1;
        return get_ids(first, "prompt", &r->ids, &r->n_ids, err);
    }
    return BAD("prompt", "'prompt' must be a string, an array of token ids, or a one-item array of either");
}

static int parse_messages(const cJSON *root, miser_serve_request *r, miser_serve_error *err)
{
    const cJSON *m = field(root, "messages");
    if (!m) return BAD("messages", "'messages' is required");
    if (!cJSON_IsArray(m)) return BAD("messages", "'messages' must be an array");
    int n = cJSON_GetArraySize(m);
    if (n == 0) return BAD("messages", "'messages' is empty");
    if (n > 4096) return BAD("messages", "'messages' has more than 4096 items");
    r->messages = miser_calloc(MISER_MEM_OTHER, (size_t)n, sizeof *r->messages);
    if (!r->messages) return NOMEM();
    static const char *roles[] = {"system", "developer", "user", "assistant", "tool"};
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, m)
    {
        char param[64];
        snprintf(param, sizeof param, "messages[%d].role", i);
        if (!cJSON_IsObject(e)) return BAD(param, "messages[%d] must be an object", i);
        const char *role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "role"));
        int known = 0;
        for (size_t k = 0; role && k < sizeof roles / sizeof *roles; k++) known |= !strcmp(role, roles[k]);
        if (!known) return BAD(param, "'%s' must be one of system, developer, user, assistant, tool", param);
        miser_serve_message *msg = &r->messages[i];
        r->n_messages = i + 1;
        if (!(msg->role = miser_strdup(MISER_MEM_OTHER, role))) return NOMEM();
        snprintf(param, sizeof param, "messages[%d].content", i);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (cJSON_IsString(c)) {
            if (get_text(c, param, &msg->content, &msg->content_len, err)) return -1;
        } else if (cJSON_IsArray(c)) {
            /* content parts: only text parts, joined */
            miser_sb b = {0};
            const cJSON *part;
            cJSON_ArrayForEach(part, c)
            {
                const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(part, "type"));
                const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(part, "text"));
                if (!type || strcmp(type, "text") || !text) {
                    miser_sb_free(&b);
                    return BAD(param, "'%s' parts must be {\"type\": \"text\", \"text\": ...}: only text is supported", param);
                }
                miser_sb_puts(&b, text);
            }
            if (b.failed) {
                miser_sb_free(&b);
                return NOMEM();
            }
            msg->content_len = b.len;
            msg->content = b.data ? b.data : miser_strdup(MISER_MEM_OTHER, "");
            if (!msg->content) return NOMEM();
        } else if ((!c || cJSON_IsNull(c)) && !strcmp(role, "assistant")) {
            if (!(msg->content = miser_strdup(MISER_MEM_OTHER, ""))) return NOMEM();
        } else
            return BAD(param, "'%s' must be a string or an array of text parts", param);
        i++;
    }
    return 0;
}

static int parse_stop(const cJSON *root, miser_serve_request *r, miser_serve_error *err)
{
    const cJSON *s = field(root, "stop");
    if (!s) return 0;
    const cJSON *one[1] = {s};
    int n = 1;
    if (cJSON_IsArray(s)) {
        n = cJSON_GetArraySize(s);
        if (n > MISER_SERVE_MAX_STOP) return BAD("stop", "'stop' has more than %d strings", MISER_SERVE_MAX_STOP);
    } else if (!cJSON_IsString(s))
        return BAD("stop", "'stop' must be a string or an array of strings");
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_IsArray(s) ? cJSON_GetArrayItem(s, i) : one[0];
        if (!cJSON_IsString(e)) return BAD("stop", "'stop' must be a string or an array of strings");
        size_t len;
        char *t;
        if (get_text(e, "stop", &t, &len, err)) return -1;
        r->stop[r->n_stop] = t;
        r->stop_len[r->n_stop++] = len;
        if (len == 0) return BAD("stop", "'stop' strings must not be empty");
        if (len > MISER_SERVE_MAX_STOP_LEN) return BAD("stop", "'stop' strings are limited to %d bytes", MISER_SERVE_MAX_STOP_LEN);
    }
    return 0;
}

static int parse_sampling(const cJSON *root, miser_serve_request *r, miser_serve_error *err)
{
    int64_t v;
    int rc;
    if ((rc = get_int(root, "n", -9.2e18, 9.2e18, &v, err)) < 0) return -1;
    if (rc && v != 1) return BAD("n", "'n' must be 1: miser returns one choice per request (got %lld)", (long long)v);
    const char *mt = field(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if ((rc = get_int(root, mt, -9.2e18, 9.2e18, &v, err)) < 0) return -1;
    if (rc && (v < 1 || v > (1 << 30))) return BAD(mt, "'%s' must be between 1 and %d (got %lld)", mt, 1 << 30, (long long)v);
    if (rc) r->max_tokens = v;
    if (get_num(root, "temperature", 0, 2, &r->temperature, err) < 0) return -1;
    if (get_num(root, "top_p", 0, 1, &r->top_p, err) < 0) return -1;
    if ((rc = get_int(root, "top_k", 0, 1 << 30, &v, err)) < 0) return -1;
    if (rc) r->top_k = (int)v;
    if ((rc = get_int(root, "seed", -9.2e18, 9.2e18, &v, err)) < 0) return -1;
    if (rc) {
        r->seed = (uint64_t)v;
        r->has_seed = 1;
    }
    if (get_bool(root, "ignore_eos", &r->ignore_eos, err) < 0) return -1;
    if (get_bool(root, "stream", &r->stream, err) < 0) return -1;
    const cJSON *so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so)) return BAD("stream_options", "'stream_options' must be an object");
        const cJSON *iu = field(so, "include_usage");
        if (iu && !cJSON_IsBool(iu)) return BAD("stream_options.include_usage", "'stream_options.include_usage' must be a boolean");
        r->include_usage = iu && cJSON_IsTrue(iu);
    }
    if (parse_stop(root, r, err)) return -1;
    /* known fields that would change the answer: refused, not ignored */
    const cJSON *f;
    if ((f = field(root, "logprobs")) && !(cJSON_IsFalse(f) || (cJSON_IsNumber(f) && f->valuedouble == 0)))
        return BAD("logprobs", "'logprobs' is not supported");
    if ((f = field(root, "echo")) && !cJSON_IsFalse(f)) return BAD("echo", "'echo' is not supported");
    if ((f = field(root, "best_of")) && !(cJSON_IsNumber(f) && f->valuedouble == 1))
        return BAD("best_of", "'best_of' must be 1");
    if ((f = field(root, "suffix")) && !(cJSON_IsString(f) && !f->valuestring[0]))
        return BAD("suffix", "'suffix' is not supported");
    static const char *pen[] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++)
        if ((f = field(root, pen[i]))) {
            if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble) || f->valuedouble < -2 || f->valuedouble > 2)
                return BAD(pen[i], "'%s' must be a number between -2 and 2", pen[i]);
            if (f->valuedouble != 0) return BAD(pen[i], "'%s' other than 0 is not supported", pen[i]);
        }
    return 0;
}

int miser_serve_request_parse(miser_serve_kind kind, const char *body, size_t len, miser_serve_request *r,
                              miser_serve_error *err)
{
    memset(r, 0, sizeof *r);
    memset(err, 0, sizeof *err);
    r->kind = kind;
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    const char *end = NULL;
    cJSON *root = len ? cJSON_ParseWithLengthOpts(body, len, &end, 0) : NULL;
    if (!root) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        if (!len) return BAD(NULL, "the request body is empty: send a JSON object");
        return BAD(NULL, "the request body is not valid JSON (near byte %zu)", at);
    }
    int rc = 0;
    /* trailing bytes after the value (other than whitespace) are malformed too */
    for (const char *p = end; p && p < body + len; p++)
        if (!strchr(" \t\r\n", *p)) {
            rc = BAD(NULL, "the request body is not valid JSON (trailing bytes at %zu)", (size_t)(p - body));
            break;
        }
    if (!rc && !cJSON_IsObject(root)) rc = BAD(NULL, "the request body must be a JSON object");
    if (!rc) {
        const cJSON *model = field(root, "model");
        if (model && !cJSON_IsString(model)) rc = BAD("model", "'model' must be a string");
    }
    if (!rc) switch (kind) {
        case MISER_SERVE_COMPLETION:
            rc = parse_prompt(root, r, err);
            if (!rc) rc = parse_sampling(root, r, err);
            break;
        case MISER_SERVE_CHAT:
            rc = parse_messages(root, r, err);
            if (!rc) rc = parse_sampling(root, r, err);
            break;
        case MISER_SERVE_TOKENIZE: {
            const cJSON *c = field(root, "content");
            if (!c) rc = BAD("content", "'content' is required");
            else rc = get_text(c, "content", &r->prompt, &r->prompt_len, err);
            if (!rc) rc = get_bool(root, "add_special", &r->add_special, err) < 0 ? -1 : 0;
            if (!rc) rc = get_bool(root, "with_pieces", &r->with_pieces, err) < 0 ? -1 : 0;
            break;
        }
        case MISER_SERVE_DETOKENIZE: {
            const cJSON *t = field(root, "tokens");
            if (!t) rc = BAD("tokens", "'tokens' is required");
            else if (!cJSON_IsArray(t)) rc = BAD("tokens", "'tokens' must be an array of token ids");
            else {
                r->has_ids = 1;
                rc = get_ids(t, "tokens", &r->ids, &r->n_ids, err);
            }
            break;
        }
        default: rc = BAD(NULL, "unknown request kind");
        }
    cJSON_Delete(root);
    if (rc) miser_serve_request_free(r);
    return rc;
}
