/* libFuzzer target: miser serve's request parser and validator
 * (src/serve/request.c) on arbitrary bodies. The first byte picks the
 * endpoint (completion, chat, tokenize, detokenize); the rest is the body,
 * passed without a terminating NUL so reads past the end show up under ASan.
 * Accepted requests must satisfy every invariant the server relies on
 * (ranges, counts, lengths); rejected ones must carry a 400/500 and a
 * message; accepted chat requests are also rendered in every format and
 * error bodies written as JSON. Aborts on any violation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "miser/alloc.h"
#include "serve/serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    miser_serve_kind kind = (miser_serve_kind)(data[0] % 4);
    size_t n = size - 1;
    char *body = miser_malloc(MISER_MEM_OTHER, n); /* exactly n bytes: no NUL after */
    if (!body) abort();
    memcpy(body, data + 1, n);
    miser_serve_request r;
    miser_serve_error e;
    int rc = miser_serve_request_parse(kind, body, n, &r, &e);
    if (rc) {
        if (rc != -1 || (e.status != 400 && e.status != 500) || !e.message[0] || !e.type) abort();
        miser_sb b = {0};
        miser_serve_error_json(&b, &e);
        if (b.failed || !b.data || !miser_utf8_valid(b.data, b.len)) abort();
        miser_sb_free(&b);
    } else {
        if (r.kind != kind) abort();
        if (r.max_tokens < 0 || r.max_tokens > (1 << 30)) abort();
        if (!(r.temperature >= 0 && r.temperature <= 2) || !(r.top_p >= 0 && r.top_p <= 1) || r.top_k < 0) abort();
        if (r.n_stop < 0 || r.n_stop > MISER_SERVE_MAX_STOP) abort();
        for (int i = 0; i < r.n_stop; i++)
            if (!r.stop[i] || r.stop_len[i] < 1 || r.stop_len[i] > MISER_SERVE_MAX_STOP_LEN ||
                strlen(r.stop[i]) != r.stop_len[i])
                abort();
        if (r.has_ids && !r.ids) abort();
        for (size_t i = 0; i < r.n_ids; i++)
            if (r.ids[i] < 0) abort();
        if ((kind == MISER_SERVE_COMPLETION && !r.has_ids && !r.prompt) || (kind == MISER_SERVE_TOKENIZE && !r.prompt))
            abort();
        if (r.prompt && strlen(r.prompt) != r.prompt_len) abort();
        if (kind == MISER_SERVE_CHAT) {
            if (r.n_messages < 1) abort();
            for (int f = MISER_CHAT_CHATML; f <= MISER_CHAT_MISTRAL; f++) {
                miser_sb b = {0};
                miser_chat_render((miser_chat_format)f, r.messages, r.n_messages, &b);
                if (b.failed) abort();
                miser_sb j = {0};
                miser_sb_json_str(&j, b.data ? b.data : "", b.len);
                if (j.failed || !miser_utf8_valid(j.data, j.len)) abort();
                miser_sb_free(&j);
                miser_sb_free(&b);
            }
        }
        miser_serve_request_free(&r);
    }
    miser_free(body);
    return 0;
}
