/* Chat templates. miser does not run Jinja: it recognises the template a
 * checkpoint's tokenizer_config.json names by its markers and renders the
 * matching built-in format (ChatML, Llama 2, Llama 3, Mistral), the way
 * llama.cpp's llama_chat_apply_template does for its built-in list. A model
 * without a template (every GPT-2 checkpoint) has no chat endpoint. */
#include "serve/serve.h"
#include "miser/alloc.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static const struct {
    miser_chat_format f;
    const char *name;
} g_names[] = {
    {MISER_CHAT_CHATML, "chatml"},
    {MISER_CHAT_LLAMA2, "llama2"},
    {MISER_CHAT_LLAMA3, "llama3"},
    {MISER_CHAT_MISTRAL, "mistral"},
};

miser_chat_format miser_chat_format_parse(const char *name)
{
    for (size_t i = 0; name && i < sizeof g_names / sizeof *g_names; i++)
        if (!strcmp(name, g_names[i].name)) return g_names[i].f;
    return MISER_CHAT_NONE;
}

const char *miser_chat_format_name(miser_chat_format f)
{
    for (size_t i = 0; i < sizeof g_names / sizeof *g_names; i++)
        if (g_names[i].f == f) return g_names[i].name;
    return "none";
}

miser_chat_format miser_chat_detect(const char *t)
{
    if (!t) return MISER_CHAT_NONE;
    if (strstr(t, "<|im_start|>")) return MISER_CHAT_CHATML;
    if (strstr(t, "<|start_header_id|>")) return MISER_CHAT_LLAMA3;
    if (strstr(t, "[INST]")) return strstr(t, "<<SYS>>") ? MISER_CHAT_LLAMA2 : MISER_CHAT_MISTRAL;
    return MISER_CHAT_NONE;
}

miser_status miser_chat_detect_dir(const char *dir, miser_chat_format *out, int *unknown)
{
    *out = MISER_CHAT_NONE;
    *unknown = 0;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/tokenizer_config.json", dir) >= (int)sizeof path)
        return miser_error_set(MISER_ERR_INVALID, "model path too long");
    FILE *f = fopen(path, "rb");
    if (!f) return MISER_OK;
    miser_sb b = {0};
    char chunk[8192];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len < (64u << 20)) miser_sb_put(&b, chunk, r);
    int bad = ferror(f);
    fclose(f);
    if (b.failed) {
        miser_sb_free(&b);
        return miser_error_set(MISER_ERR_NOMEM, "%s: out of memory", path);
    }
    if (bad) {
        miser_sb_free(&b);
        return miser_error_set(MISER_ERR_IO, "%s: read failed", path);
    }
    cJSON *root = b.data ? cJSON_ParseWithLength(b.data, b.len) : NULL;
    miser_sb_free(&b);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return miser_error_set(MISER_ERR_FORMAT, "%s: not a JSON object", path);
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    const char *tmpl = cJSON_GetStringValue(t);
    if (cJSON_IsArray(t)) { /* [{"name": "default", "template": ...}, ...] */
        const cJSON *e;
        cJSON_ArrayForEach(e, t)
        {
            const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "name"));
            const char *tt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "template"));
            if (tt && (!tmpl || (name && !strcmp(name, "default")))) tmpl = tt;
        }
    }
    if (tmpl) {
        *out = miser_chat_detect(tmpl);
        *unknown = *out == MISER_CHAT_NONE;
    }
    cJSON_Delete(root);
    return MISER_OK;
}

static void put_msg(miser_sb *b, const miser_serve_message *m) { miser_sb_put(b, m->content, m->content_len); }

static int is_system(const miser_serve_message *m) { return !strcmp(m->role, "system") || !strcmp(m->role, "developer"); }

void miser_chat_render(miser_chat_format f, const miser_serve_message *m, int n, miser_sb *b)
{
    switch (f) {
    case MISER_CHAT_CHATML:
        for (int i = 0; i < n; i++) {
            miser_sb_printf(b, "<|im_start|>%s\n", is_system(&m[i]) ? "system" : m[i].role);
            put_msg(b, &m[i]);
            miser_sb_puts(b, "<|im_end|>\n");
        }
        miser_sb_puts(b, "<|im_start|>assistant\n");
        break;
    case MISER_CHAT_LLAMA3:
        miser_sb_puts(b, "<|begin_of_text|>");
        for (int i = 0; i < n; i++) {
            miser_sb_printf(b, "<|start_header_id|>%s<|end_header_id|>\n\n", is_system(&m[i]) ? "system" : m[i].role);
            put_msg(b, &m[i]);
            miser_sb_puts(b, "<|eot_id|>");
        }
        miser_sb_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case MISER_CHAT_LLAMA2:
    case MISER_CHAT_MISTRAL: {
        /* the system prompt goes into the first user turn: Llama 2 wraps it
         * in <<SYS>>, Mistral prepends it with a blank line */
        const miser_serve_message *sys = NULL;
        int open = 0, turns = 0; /* an [INST] is open; user turns opened */
        for (int i = 0; i < n; i++) {
            if (is_system(&m[i])) {
                sys = &m[i];
                continue;
            }
            if (!strcmp(m[i].role, "assistant")) {
                if (open) miser_sb_puts(b, " [/INST]");
                miser_sb_puts(b, f == MISER_CHAT_LLAMA2 ? " " : "");
                put_msg(b, &m[i]);
                miser_sb_puts(b, f == MISER_CHAT_LLAMA2 ? " </s>" : "</s>");
                open = 0;
                continue;
            }
            /* Mistral writes <s> once, Llama 2 before every turn */
            miser_sb_puts(b, open ? "\n\n" : f == MISER_CHAT_MISTRAL && turns ? "[INST] " : "<s>[INST] ");
            turns++;
            if (sys) {
                if (f == MISER_CHAT_LLAMA2) {
                    miser_sb_puts(b, "<<SYS>>\n");
                    put_msg(b, sys);
                    miser_sb_puts(b, "\n<</SYS>>\n\n");
                } else {
                    put_msg(b, sys);
                    miser_sb_puts(b, "\n\n");
                }
                sys = NULL;
            }
            put_msg(b, &m[i]);
            open = 1;
        }
        if (open) miser_sb_puts(b, " [/INST]");
        break;
    }
    default: break;
    }
}

const char *miser_chat_end_marker(miser_chat_format f)
{
    switch (f) {
    case MISER_CHAT_CHATML: return "<|im_end|>";
    case MISER_CHAT_LLAMA3: return "<|eot_id|>";
    case MISER_CHAT_LLAMA2:
    case MISER_CHAT_MISTRAL: return "</s>";
    default: return NULL;
    }
}
