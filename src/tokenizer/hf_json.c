/* Loaders of the Hugging Face pipeline (hf_model.c): tokenizer.json (+
 * tokenizer_config.json), and miser_tokenizer_build from arrays (GGUF).
 *
 * tokenizer.json is read whole with cJSON (its own malloc, outside the
 * accounting, for the duration of the load only). Every field is checked
 * for its type; an error is one line "FILE: FIELD: problem". Ids are capped
 * at 2^24 so that a lying file cannot make the loader allocate gigabytes.
 * Components miser does not implement are MISER_ERR_UNSUPPORTED naming the
 * field and the type, never silently ignored (except post-processor parts
 * that only concern pairs of sequences, and truncation/padding). */
#include "tok_internal.h"

#include "miser/alloc.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_ID (1 << 24)

typedef struct {
    const char *file;
    miser_tokenizer *t;
} ctx;

static miser_status ferr(const ctx *c, const char *field, const char *fmt, const char *arg)
{
    char msg[256], shown[84];
    snprintf(msg, sizeof msg, fmt, arg ? miser_tok_printable(arg, strlen(arg), shown, sizeof shown) : "");
    return miser_error_set(MISER_ERR_FORMAT, "%s: %s: %s", c->file, field, msg);
}

static miser_status unsup(const ctx *c, const char *field, const char *type)
{
    char shown[64];
    return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: %s: type \"%s\" is not supported", c->file, field,
                           miser_tok_printable(type, strlen(type), shown, sizeof shown));
}

/* Optional boolean: absent/null -> def; else must be a bool. */
static int get_bool(const cJSON *o, const char *key, int def, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v)) return -1;
    *out = cJSON_IsTrue(v);
    return 0;
}

static int get_id(const cJSON *v, int32_t *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d < MAX_ID) || d != floor(d)) return -1;
    *out = (int32_t)d;
    return 0;
}

static const char *type_of(const cJSON *o)
{
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

static miser_status push_step(miser_hf_step **arr, size_t *n, const miser_hf_step *s)
{
    miser_hf_step *q = miser_realloc(MISER_MEM_TOKENIZER, *arr, (*n + 1) * sizeof *q);
    if (!q) return MISER_ERR_NOMEM;
    *arr = q;
    q[(*n)++] = *s;
    return MISER_OK;
}

static char *dup_n(const char *s, size_t n)
{
    char *p = miser_malloc(MISER_MEM_TOKENIZER, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static void step_clear(miser_hf_step *s)
{
    miser_tok_regex_free(s->re);
    miser_free(s->s1);
    miser_free(s->s2);
}

/* pattern: {"String": s} or {"Regex": r}. */
static miser_status get_pattern(const ctx *c, const cJSON *o, const char *field, miser_hf_step *s)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    char f[160];
    snprintf(f, sizeof f, "%s.pattern", field);
    if (!cJSON_IsObject(p)) return ferr(c, f, "expected an object {\"String\": ...} or {\"Regex\": ...}", NULL);
    const cJSON *str = cJSON_GetObjectItemCaseSensitive(p, "String"), *re = cJSON_GetObjectItemCaseSensitive(p, "Regex");
    if (cJSON_IsString(str)) {
        s->n1 = strlen(str->valuestring);
        if (!(s->s1 = dup_n(str->valuestring, s->n1))) return MISER_ERR_NOMEM;
        return MISER_OK;
    }
    if (cJSON_IsString(re)) {
        char what[256];
        snprintf(what, sizeof what, "%s: %s", c->file, f);
        return miser_tok_regex_compile(re->valuestring, strlen(re->valuestring), what, &s->re);
    }
    return ferr(c, f, "expected a \"String\" or \"Regex\" string", NULL);
}

static miser_status get_string(const ctx *c, const cJSON *o, const char *key, const char *field, const char *def,
                               char **out, size_t *n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    const char *s = def;
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v)) {
            char f[160];
            snprintf(f, sizeof f, "%s.%s", field, key);
            return ferr(c, f, "expected a string", NULL);
        }
        s = v->valuestring;
    }
    if (!s) return ferr(c, field, "missing \"%s\"", key);
    *n = strlen(s);
    return (*out = dup_n(s, *n)) ? MISER_OK : MISER_ERR_NOMEM;
}

/* ---- the opening every pipeline component shares ---- */
typedef miser_status (*component_fn)(const ctx *c, const cJSON *o, const char *field, int depth);

/* For the normalizer, pre-tokenizer, decoder and post-processor parsers: an
 * absent or null component is nothing; otherwise it must be an object with a
 * "type", nested at most 8 deep, and a "Sequence" applies `self` to each entry
 * of its `list` array (entries named field.list[i] in messages). Returns 1
 * when the component is done (*st the result), 0 with *ty its type for the
 * caller to parse. */
static int component_open(const ctx *c, const cJSON *o, const char *field, int depth, const char *list,
                          component_fn self, const char **ty, miser_status *st)
{
    *st = MISER_OK;
    if (!o || cJSON_IsNull(o)) return 1;
    if (!cJSON_IsObject(o)) return (*st = ferr(c, field, "expected an object or null", NULL)), 1;
    if (depth > 8) return (*st = ferr(c, field, "nested too deeply", NULL)), 1;
    *ty = type_of(o);
    if (!*ty) return (*st = ferr(c, field, "missing \"type\"", NULL)), 1;
    if (strcmp(*ty, "Sequence")) return 0;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, list);
    if (!cJSON_IsArray(arr)) return (*st = ferr(c, field, "Sequence needs a \"%s\" array", list)), 1;
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        char f[160];
        snprintf(f, sizeof f, "%.100s.%s[%d]", field, list, i);
        if ((*st = self(c, e, f, depth + 1))) return 1;
    }
    return 1;
}

/* ---- normalizers ---- */
static miser_status parse_normalizer(const ctx *c, const cJSON *o, const char *field, int depth)
{
    miser_tok_hf *h = c->t->hf;
    const char *ty;
    miser_status st;
    if (component_open(c, o, field, depth, "normalizers", parse_normalizer, &ty, &st)) return st;
    miser_hf_step s = {0};
    int b1, b2;
    st = MISER_OK;
    if (!strcmp(ty, "NFC")) s.kind = MISER_HF_NFC;
    else if (!strcmp(ty, "NFD")) s.kind = MISER_HF_NFD;
    else if (!strcmp(ty, "NFKC")) s.kind = MISER_HF_NFKC;
    else if (!strcmp(ty, "NFKD")) s.kind = MISER_HF_NFKD;
    else if (!strcmp(ty, "Lowercase")) s.kind = MISER_HF_LOWER;
    else if (!strcmp(ty, "StripAccents")) s.kind = MISER_HF_STRIP_ACCENTS;
    else if (!strcmp(ty, "Replace")) {
        s.kind = MISER_HF_REPLACE;
        if (!(st = get_pattern(c, o, field, &s))) st = get_string(c, o, "content", field, NULL, &s.s2, &s.n2);
    } else if (!strcmp(ty, "Prepend")) {
        s.kind = MISER_HF_PREPEND;
        st = get_string(c, o, "prepend", field, NULL, &s.s1, &s.n1);
    } else if (!strcmp(ty, "Strip")) {
        s.kind = MISER_HF_STRIP;
        if (get_bool(o, "strip_left", 1, &b1) || get_bool(o, "strip_right", 1, &b2))
            return ferr(c, field, "strip_left/strip_right must be booleans", NULL);
        s.a = b1;
        s.b = b2;
    } else {
        return unsup(c, field, ty);
    }
    if (!st) st = push_step(&h->norm, &h->n_norm, &s);
    if (st) step_clear(&s);
    return st;
}

static int parse_behavior(const cJSON *o, int def, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "behavior");
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsString(v)) return -1;
    static const char *const names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int k = 0; k < 5; k++)
        if (!strcmp(v->valuestring, names[k])) {
            *out = k;
            return 0;
        }
    return -1;
}

static miser_status regex_step(const ctx *c, const char *field, const char *re, int behavior, int invert)
{
    miser_hf_step s = {0};
    s.kind = MISER_HF_SPLIT;
    s.behavior = behavior;
    s.invert = invert;
    miser_status st = miser_tok_regex_compile(re, strlen(re), field, &s.re);
    if (!st) st = push_step(&c->t->hf->pre, &c->t->hf->n_pre, &s);
    if (st) step_clear(&s);
    return st;
}

/* ---- pre-tokenizers ---- */
static miser_status parse_pre(const ctx *c, const cJSON *o, const char *field, int depth)
{
    miser_tok_hf *h = c->t->hf;
    const char *ty;
    miser_status st;
    if (component_open(c, o, field, depth, "pretokenizers", parse_pre, &ty, &st)) return st;
    miser_hf_step s = {0};
    int b1, b2;
    st = MISER_OK;
    if (!strcmp(ty, "ByteLevel")) {
        s.kind = MISER_HF_BYTELEVEL;
        if (get_bool(o, "add_prefix_space", 1, &b1) || get_bool(o, "use_regex", 1, &b2))
            return ferr(c, field, "add_prefix_space/use_regex must be booleans", NULL);
        s.a = b1;
        s.b = b2;
    } else if (!strcmp(ty, "Split")) {
        s.kind = MISER_HF_SPLIT;
        if (parse_behavior(o, MISER_HF_ISOLATED, &s.behavior))
            return ferr(c, field, "behavior must be Isolated, Removed, MergedWithPrevious, MergedWithNext or Contiguous", NULL);
        if (get_bool(o, "invert", 0, &s.invert)) return ferr(c, field, "invert must be a boolean", NULL);
        st = get_pattern(c, o, field, &s);
    } else if (!strcmp(ty, "Digits")) {
        s.kind = MISER_HF_DIGITS;
        if (get_bool(o, "individual_digits", 0, &s.a)) return ferr(c, field, "individual_digits must be a boolean", NULL);
    } else if (!strcmp(ty, "Metaspace")) {
        s.kind = MISER_HF_METASPACE;
        if ((st = get_string(c, o, "replacement", field, "\xe2\x96\x81", &s.s1, &s.n1))) return st;
        if (!s.n1) {
            step_clear(&s);
            return ferr(c, field, "empty replacement", NULL);
        }
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(o, "prepend_scheme");
        s.a = 2;
        if (cJSON_IsString(ps)) {
            if (!strcmp(ps->valuestring, "never")) s.a = 0;
            else if (!strcmp(ps->valuestring, "first")) s.a = 1;
            else if (!strcmp(ps->valuestring, "always")) s.a = 2;
            else st = ferr(c, field, "prepend_scheme must be always, first or never", NULL);
        } else if (ps && !cJSON_IsNull(ps)) {
            st = ferr(c, field, "prepend_scheme must be a string", NULL);
        } else {
            int aps = 1;
            if (get_bool(o, "add_prefix_space", 1, &aps)) st = ferr(c, field, "add_prefix_space must be a boolean", NULL);
            s.a = aps ? 2 : 0;
        }
        if (!st && get_bool(o, "split", 1, &s.b)) st = ferr(c, field, "split must be a boolean", NULL);
    } else if (!strcmp(ty, "Whitespace")) {
        return regex_step(c, field, "\\w+|[^\\w\\s]+", MISER_HF_REMOVED, 1);
    } else if (!strcmp(ty, "WhitespaceSplit")) {
        return regex_step(c, field, "\\S+", MISER_HF_REMOVED, 1);
    } else if (!strcmp(ty, "Punctuation")) {
        int beh;
        if (parse_behavior(o, MISER_HF_ISOLATED, &beh)) return ferr(c, field, "bad behavior", NULL);
        return regex_step(c, field, "[\\p{P}!-/:-@\\[-`{-~]", beh, 0);
    } else {
        return unsup(c, field, ty);
    }
    if (!st) st = push_step(&h->pre, &h->n_pre, &s);
    if (st) step_clear(&s);
    return st;
}

/* ---- decoders ---- */
static miser_status parse_decoder(const ctx *c, const cJSON *o, const char *field, int depth)
{
    miser_tok_hf *h = c->t->hf;
    const char *ty;
    miser_status st;
    if (component_open(c, o, field, depth, "decoders", parse_decoder, &ty, &st)) return st;
    miser_hf_step s = {0};
    st = MISER_OK;
    if (!strcmp(ty, "ByteLevel")) s.kind = MISER_HF_DEC_BYTELEVEL;
    else if (!strcmp(ty, "ByteFallback")) s.kind = MISER_HF_DEC_BYTEFALLBACK;
    else if (!strcmp(ty, "Fuse")) s.kind = MISER_HF_DEC_FUSE;
    else if (!strcmp(ty, "Replace")) {
        s.kind = MISER_HF_DEC_REPLACE;
        if (!(st = get_pattern(c, o, field, &s)) && s.re) {
            step_clear(&s);
            return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: %s: a Replace decoder with a Regex pattern is not supported",
                                   c->file, field);
        }
        if (!st) st = get_string(c, o, "content", field, NULL, &s.s2, &s.n2);
    } else if (!strcmp(ty, "Strip")) {
        s.kind = MISER_HF_DEC_STRIP;
        if ((st = get_string(c, o, "content", field, " ", &s.s1, &s.n1))) return st;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "start"), *b = cJSON_GetObjectItemCaseSensitive(o, "stop");
        int32_t va = 0, vb = 0;
        if ((a && get_id(a, &va)) || (b && get_id(b, &vb)) || s.n1 != 1 || va > 64 || vb > 64) {
            step_clear(&s);
            return ferr(c, field, "Strip needs a one-byte content and small integer start/stop", NULL);
        }
        s.a = va;
        s.b = vb;
    } else if (!strcmp(ty, "Metaspace")) {
        s.kind = MISER_HF_DEC_METASPACE;
        if ((st = get_string(c, o, "replacement", field, "\xe2\x96\x81", &s.s1, &s.n1))) return st;
        if (!(s.s2 = dup_n(" ", 1))) st = MISER_ERR_NOMEM;
        s.n2 = 1;
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(o, "prepend_scheme");
        int aps = 1;
        if (cJSON_IsString(ps)) aps = strcmp(ps->valuestring, "never") != 0;
        else if (get_bool(o, "add_prefix_space", 1, &aps)) st = ferr(c, field, "add_prefix_space must be a boolean", NULL);
        s.a = aps;
    } else {
        return unsup(c, field, ty);
    }
    if (!st) st = push_step(&h->dec, &h->n_dec, &s);
    if (st) step_clear(&s);
    return st;
}

/* ---- post-processor: the single-sequence prefix and suffix ---- */
static miser_status affix_push(const ctx *c, const char *field, int32_t id, int suffix)
{
    miser_tok_hf *h = c->t->hf;
    int *n = suffix ? &h->n_suffix : &h->n_prefix;
    int32_t *a = suffix ? h->suffix : h->prefix;
    if (*n >= MISER_HF_MAX_AFFIX) return ferr(c, field, "more than 8 special tokens around the sequence", NULL);
    if (id < 0 || id >= c->t->n_vocab) return ferr(c, field, "a special token id is outside the vocabulary", NULL);
    a[(*n)++] = id;
    return MISER_OK;
}

static miser_status parse_post(const ctx *c, const cJSON *o, const char *field, int depth)
{
    const char *ty;
    miser_status st;
    if (component_open(c, o, field, depth, "processors", parse_post, &ty, &st)) return st;
    if (!strcmp(ty, "ByteLevel")) return MISER_OK;
    if (!strcmp(ty, "BertProcessing") || !strcmp(ty, "RobertaProcessing")) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(o, "cls"), *sep = cJSON_GetObjectItemCaseSensitive(o, "sep");
        int32_t ic, is;
        if (!cJSON_IsArray(cls) || !cJSON_IsArray(sep) || cJSON_GetArraySize(cls) != 2 || cJSON_GetArraySize(sep) != 2 ||
            get_id(cJSON_GetArrayItem(cls, 1), &ic) || get_id(cJSON_GetArrayItem(sep, 1), &is))
            return ferr(c, field, "cls and sep must be [token, id] pairs", NULL);
        if ((st = affix_push(c, field, ic, 0))) return st;
        return affix_push(c, field, is, 1);
    }
    if (strcmp(ty, "TemplateProcessing")) return unsup(c, field, ty);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(o, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
    if (!cJSON_IsArray(single)) return ferr(c, field, "TemplateProcessing needs a \"single\" array", NULL);
    if (specials && !cJSON_IsObject(specials)) return ferr(c, field, "special_tokens must be an object", NULL);
    int seen_a = 0;
    for (const cJSON *e = single->child; e; e = e->next) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
        if (cJSON_IsObject(sq)) {
            seen_a = 1;
            continue;
        }
        const cJSON *nm = cJSON_IsObject(sp) ? cJSON_GetObjectItemCaseSensitive(sp, "id") : NULL;
        if (!cJSON_IsString(nm)) return ferr(c, field, "single: each item is {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": ...}", NULL);
        const cJSON *def = specials ? cJSON_GetObjectItemCaseSensitive(specials, nm->valuestring) : NULL;
        const cJSON *ids = def ? cJSON_GetObjectItemCaseSensitive(def, "ids") : NULL;
        if (!cJSON_IsArray(ids)) return ferr(c, field, "special_tokens has no ids for \"%.60s\"", nm->valuestring);
        for (const cJSON *i = ids->child; i; i = i->next) {
            int32_t id;
            if (get_id(i, &id)) return ferr(c, field, "special_tokens[\"%.60s\"].ids: not a valid id", nm->valuestring);
            if ((st = affix_push(c, field, id, seen_a))) return st;
        }
    }
    return MISER_OK;
}

/* ---- the model ---- */
static miser_status parse_model(const ctx *c, const cJSON *root, cJSON *model)
{
    miser_tokenizer *t = c->t;
    miser_tok_hf *h = t->hf;
    if (!cJSON_IsObject(model)) return ferr(c, "model", "missing or not an object", NULL);
    const char *ty = type_of(model);
    if (ty && strcmp(ty, "BPE")) return unsup(c, "model.type", ty);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab)) return ferr(c, "model.vocab", "missing or not an object mapping tokens to ids", NULL);
    if (merges && !cJSON_IsArray(merges)) return ferr(c, "model.merges", "not an array", NULL);
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (drop && !cJSON_IsNull(drop) && !(cJSON_IsNumber(drop) && drop->valuedouble == 0))
        return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: model.dropout: BPE dropout is not supported", c->file);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, affixes[k]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !v->valuestring[0]))
            return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: model.%s is not supported", c->file, affixes[k]);
    }
    if (get_bool(model, "byte_fallback", 0, &h->byte_fallback)) return ferr(c, "model.byte_fallback", "not a boolean", NULL);
    if (get_bool(model, "fuse_unk", 0, &h->fuse_unk)) return ferr(c, "model.fuse_unk", "not a boolean", NULL);
    if (get_bool(model, "ignore_merges", 0, &h->ignore_merges)) return ferr(c, "model.ignore_merges", "not a boolean", NULL);

    /* ids: vocab and added tokens */
    int32_t max_id = -1;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id;
        if (get_id(e, &id)) return ferr(c, "model.vocab", "the id of \"%.60s\" is not an integer in [0, 2^24)", e->string);
        if (!e->string || !e->string[0]) return ferr(c, "model.vocab", "a token is an empty string", NULL);
        if (id > max_id) max_id = id;
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) return ferr(c, "added_tokens", "not an array", NULL);
    if (cJSON_IsArray(added)) {
        int i = 0;
        for (const cJSON *e = added->child; e; e = e->next, i++) {
            char f[64];
            snprintf(f, sizeof f, "added_tokens[%d]", i);
            int32_t id;
            const cJSON *ct = cJSON_GetObjectItemCaseSensitive(e, "content");
            if (!cJSON_IsObject(e) || get_id(cJSON_GetObjectItemCaseSensitive(e, "id"), &id))
                return ferr(c, f, "needs an integer \"id\" in [0, 2^24)", NULL);
            if (!cJSON_IsString(ct) || !ct->valuestring[0]) return ferr(c, f, "needs a non-empty string \"content\"", NULL);
            if (id > max_id) max_id = id;
        }
    }
    if (max_id < 0) return ferr(c, "model.vocab", "the vocabulary is empty", NULL);
    int32_t n_vocab = max_id + 1;
    const char **strs = miser_calloc(MISER_MEM_TOKENIZER, (size_t)n_vocab, sizeof *strs);
    uint32_t *lens = miser_calloc(MISER_MEM_TOKENIZER, (size_t)n_vocab, sizeof *lens);
    int32_t *ml = NULL, *mr = NULL;
    miser_status st = MISER_OK;
    if (!strs || !lens) {
        st = MISER_ERR_NOMEM;
        goto out;
    }
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id = (int32_t)e->valuedouble;
        if (strs[id]) {
            st = ferr(c, "model.vocab", "two tokens have the id of \"%.60s\"", e->string);
            goto out;
        }
        strs[id] = e->string;
        lens[id] = (uint32_t)strlen(e->string);
    }
    if (cJSON_IsArray(added))
        for (const cJSON *e = added->child; e; e = e->next) {
            int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
            if (!strs[id]) {
                strs[id] = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
                lens[id] = (uint32_t)strlen(strs[id]);
            }
        }
    if ((st = miser_tok_hf_set_vocab(t, n_vocab, strs, lens))) goto out;

    /* merges */
    size_t nm = merges ? (size_t)cJSON_GetArraySize(merges) : 0, r = 0;
    ml = miser_malloc(MISER_MEM_TOKENIZER, (nm + 1) * sizeof *ml);
    mr = miser_malloc(MISER_MEM_TOKENIZER, (nm + 1) * sizeof *mr);
    if (!ml || !mr) {
        st = MISER_ERR_NOMEM;
        goto out;
    }
    for (const cJSON *e = merges ? merges->child : NULL; e; e = e->next, r++) {
        const char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        char f[64];
        snprintf(f, sizeof f, "model.merges[%zu]", r);
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp || sp == e->valuestring || !sp[1] || strchr(sp + 1, ' ')) {
                st = ferr(c, f, "\"%.60s\" is not two tokens separated by one space", e->valuestring);
                goto out;
            }
            a = e->valuestring;
            na = (size_t)(sp - a);
            b = sp + 1;
            nb = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            b = e->child->next->valuestring;
            na = strlen(a);
            nb = strlen(b);
        } else {
            st = ferr(c, f, "expected \"a b\" or [\"a\", \"b\"]", NULL);
            goto out;
        }
        ml[r] = miser_tok_hf_lookup(t, a, na);
        mr[r] = miser_tok_hf_lookup(t, b, nb);
        if (ml[r] < 0 || mr[r] < 0) {
            char tok[80];
            snprintf(tok, sizeof tok, "%.*s", (int)(ml[r] < 0 ? (na > 60 ? 60 : na) : (nb > 60 ? 60 : nb)), ml[r] < 0 ? a : b);
            st = ferr(c, f, "token \"%s\" is not in model.vocab", tok);
            goto out;
        }
    }
    if ((st = miser_tok_hf_set_merges(t, nm, ml, mr, "model.merges"))) goto out;

    /* unk */
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (unk && !cJSON_IsNull(unk)) {
        if (!cJSON_IsString(unk)) {
            st = ferr(c, "model.unk_token", "not a string", NULL);
            goto out;
        }
        h->unk = miser_tok_hf_lookup(t, unk->valuestring, strlen(unk->valuestring));
        if (h->unk < 0) {
            st = ferr(c, "model.unk_token", "\"%.60s\" is not in the vocabulary", unk->valuestring);
            goto out;
        }
    }
    /* added tokens */
    if (cJSON_IsArray(added)) {
        int i = 0;
        for (const cJSON *e = added->child; e; e = e->next, i++) {
            char f[64];
            snprintf(f, sizeof f, "added_tokens[%d]", i);
            int sp, nz, ls, rs, sw;
            if (get_bool(e, "special", 0, &sp) || get_bool(e, "lstrip", 0, &ls) || get_bool(e, "rstrip", 0, &rs) ||
                get_bool(e, "single_word", 0, &sw) || get_bool(e, "normalized", !sp, &nz)) {
                st = ferr(c, f, "special/normalized/lstrip/rstrip/single_word must be booleans", NULL);
                goto out;
            }
            const char *ct = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
            int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
            if ((st = miser_tok_hf_add_token(t, id, ct, strlen(ct), sp, nz, ls, rs, sw))) goto out;
        }
    }
out:
    miser_free(strs);
    miser_free(lens);
    miser_free(ml);
    miser_free(mr);
    return st;
}

/* bos/eos from tokenizer_config.json: a string or {"content": ...}. */
static int config_token(const miser_tokenizer *t, const cJSON *cfg, const char *key, int32_t *id)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) return -1;
    *id = miser_tok_hf_lookup(t, v->valuestring, strlen(v->valuestring));
    return *id < 0 ? -2 : 1;
}

/* Every string of the file (keys and values) must be UTF-8, as JSON requires
 * and as the tokenizers crate enforces: cJSON copies raw bytes as they are
 * (it refuses only bad escapes), and such a string inserted into
 * the text (an added token, a Replace or Prepend content) would reach PCRE2,
 * which matches with PCRE2_NO_UTF_CHECK and may read outside its tables on an
 * invalid sequence. Returns the first offending string, or NULL. */
static const cJSON *first_non_utf8(const cJSON *v, const char **key)
{
    for (; v; v = v->next) {
        if (v->string && !miser_utf8_valid(v->string, strlen(v->string))) {
            *key = v->string;
            return v;
        }
        if (cJSON_IsString(v) && !miser_utf8_valid(v->valuestring, strlen(v->valuestring))) {
            *key = v->string;
            return v;
        }
        const cJSON *bad = first_non_utf8(v->child, key);
        if (bad) return bad;
    }
    return NULL;
}

static cJSON *parse_buffer(const char *path, const char *data, size_t size, miser_status *st)
{
    const char *end = NULL;
    const char *key = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(data, size, &end, 0);
    if (!root) {
        size_t off = end && end >= data && end <= data + size ? (size_t)(end - data) : 0;
        *st = miser_error_set(MISER_ERR_FORMAT, "%s: malformed JSON near byte %zu", path, off);
    } else if (first_non_utf8(root->child, &key)) {
        char shown[84];
        *st = miser_error_set(MISER_ERR_FORMAT, "%s: a string%s%s%s is not valid UTF-8", path, key ? " under \"" : "",
                              key ? miser_tok_printable(key, strlen(key), shown, sizeof shown) : "", key ? "\"" : "");
        cJSON_Delete(root);
        root = NULL;
    } else if (!cJSON_IsObject(root)) {
        *st = miser_error_set(MISER_ERR_FORMAT, "%s: expected a JSON object", path);
        cJSON_Delete(root);
        root = NULL;
    }
    return root;
}

static cJSON *parse_file(const char *path, miser_status *st)
{
    miser_mapping m;
    *st = miser_file_map(path, 1, MISER_MEM_TOKENIZER, &m);
    if (*st) return NULL;
    cJSON *root = parse_buffer(path, m.data, m.size, st);
    miser_file_unmap(&m, MISER_MEM_TOKENIZER);
    return root;
}

static void default_eos(miser_tokenizer *t)
{
    static const char *const names[] = {"<|endoftext|>", "</s>", "<|end_of_text|>", "<|im_end|>"};
    if (t->eot >= 0) return;
    if (t->hf->n_suffix) {
        t->eot = t->hf->suffix[t->hf->n_suffix - 1];
        return;
    }
    for (int k = 0; k < 4 && t->eot < 0; k++) t->eot = miser_tok_hf_lookup(t, names[k], strlen(names[k]));
}

static miser_status load(const char *json_path, cJSON *root, const char *cfg_path, cJSON *cfg, miser_tokenizer **out);

miser_status miser_tokenizer_open_json(const char *json_path, const char *cfg_path, miser_tokenizer **out)
{
    if (!out || !json_path) return miser_error_set(MISER_ERR_INVALID, "miser_tokenizer_open_json: NULL argument");
    *out = NULL;
    miser_status st;
    cJSON *root = parse_file(json_path, &st), *cfg = NULL;
    if (!root) return st;
    if (cfg_path && !(cfg = parse_file(cfg_path, &st))) {
        cJSON_Delete(root);
        return st;
    }
    return load(json_path, root, cfg_path, cfg, out);
}

miser_status miser_tok_hf_load_buffer(const char *name, const char *json, size_t len, miser_tokenizer **out)
{
    *out = NULL;
    miser_status st;
    cJSON *root = parse_buffer(name, json, len, &st);
    if (!root) return st;
    return load(name, root, NULL, NULL, out);
}

/* Takes ownership of root and cfg. */
static miser_status load(const char *json_path, cJSON *root, const char *cfg_path, cJSON *cfg, miser_tokenizer **out)
{
    miser_status st;
    miser_tokenizer *t = NULL;
    if ((st = miser_tok_hf_new(json_path, &t))) goto out;
    ctx c = {json_path, t};
    if ((st = parse_model(&c, root, cJSON_GetObjectItemCaseSensitive(root, "model")))) goto out;
    if ((st = parse_normalizer(&c, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizer", 0))) goto out;
    if ((st = parse_pre(&c, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pre_tokenizer", 0))) goto out;
    if ((st = parse_post(&c, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), "post_processor", 0))) goto out;
    if ((st = parse_decoder(&c, cJSON_GetObjectItemCaseSensitive(root, "decoder"), "decoder", 0))) goto out;
    miser_tok_hf *h = t->hf;
    if (h->n_prefix) h->bos = h->prefix[0];
    if (cfg) {
        ctx cc = {cfg_path, t};
        int32_t id;
        int r = config_token(t, cfg, "bos_token", &id);
        if (r < 0) {
            st = ferr(&cc, "bos_token", r == -1 ? "not a string" : "not in the vocabulary", NULL);
            goto out;
        }
        if (r > 0) h->bos = id;
        r = config_token(t, cfg, "eos_token", &id);
        if (r < 0) {
            st = ferr(&cc, "eos_token", r == -1 ? "not a string" : "not in the vocabulary", NULL);
            goto out;
        }
        if (r > 0) t->eot = id;
        int ab, ae;
        const cJSON *vb = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
        const cJSON *ve = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
        if (get_bool(cfg, "add_bos_token", 0, &ab) || get_bool(cfg, "add_eos_token", 0, &ae)) {
            st = ferr(&cc, "add_bos_token/add_eos_token", "not a boolean", NULL);
            goto out;
        }
        if (vb && !cJSON_IsNull(vb)) {
            if (ab && h->bos < 0) {
                st = ferr(&cc, "add_bos_token", "true, but there is no bos_token", NULL);
                goto out;
            }
            h->n_prefix = 0;
            if (ab) h->prefix[h->n_prefix++] = h->bos;
        }
        if (ve && !cJSON_IsNull(ve)) {
            if (ae && t->eot < 0) {
                st = ferr(&cc, "add_eos_token", "true, but there is no eos_token", NULL);
                goto out;
            }
            h->n_suffix = 0;
            if (ae) h->suffix[h->n_suffix++] = t->eot;
        }
    }
    default_eos(t);
    st = miser_tok_hf_finish(t);
out:
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    if (st) {
        miser_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MISER_OK;
}

/* ---- from arrays ---- */
miser_status miser_tokenizer_build(const miser_tokenizer_spec *sp, miser_tokenizer **out)
{
    if (!out || !sp || !sp->tokens || !sp->n_tokens)
        return miser_error_set(MISER_ERR_INVALID, "miser_tokenizer_build: no tokens");
    *out = NULL;
    const char *name = sp->name ? sp->name : "tokenizer";
    if (sp->n_tokens > MAX_ID) return miser_error_set(MISER_ERR_FORMAT, "%s: %zu tokens is too many", name, sp->n_tokens);
    if (sp->model == MISER_TOKMODEL_SPM && !sp->scores)
        return miser_error_set(MISER_ERR_INVALID, "%s: a SentencePiece vocabulary needs scores", name);
    miser_tokenizer *t = NULL;
    miser_status st = miser_tok_hf_new(name, &t);
    if (st) return st;
    miser_tok_hf *h = t->hf;
    int32_t n = (int32_t)sp->n_tokens;
    uint32_t *lens = miser_malloc(MISER_MEM_TOKENIZER, (size_t)n * sizeof *lens);
    int32_t *ml = NULL, *mr = NULL;
    if (!lens) {
        st = MISER_ERR_NOMEM;
        goto out;
    }
    for (int32_t i = 0; i < n; i++) {
        size_t l = sp->tokens[i] ? (sp->token_lens ? sp->token_lens[i] : strlen(sp->tokens[i])) : 0;
        if (l > (1u << 20)) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: token %d is longer than 1 MB", name, (int)i);
            goto out;
        }
        lens[i] = (uint32_t)l;
    }
    if ((st = miser_tok_hf_set_vocab(t, n, sp->tokens, lens))) goto out;
    for (int32_t i = 0; i < n; i++) {
        int ty = sp->token_types ? sp->token_types[i] : MISER_TOKTYPE_NORMAL;
        if ((ty == MISER_TOKTYPE_CONTROL || ty == MISER_TOKTYPE_USER_DEFINED) && lens[i] &&
            (st = miser_tok_hf_add_token(t, i, sp->tokens[i], lens[i], ty == MISER_TOKTYPE_CONTROL, 0, 0, 0, 0)))
            goto out;
    }
    miser_hf_step s = {0};
    if (sp->model == MISER_TOKMODEL_SPM) {
        h->byte_fallback = 1;
        if ((st = miser_tok_hf_spm_merges(t, sp->scores, sp->token_types))) goto out;
        if (sp->add_space_prefix) {
            s.kind = MISER_HF_PREPEND;
            if (!(s.s1 = dup_n("\xe2\x96\x81", 3)) || (s.n1 = 3, st = push_step(&h->norm, &h->n_norm, &s))) {
                step_clear(&s);
                if (!st) st = MISER_ERR_NOMEM;
                goto out;
            }
        }
        memset(&s, 0, sizeof s);
        s.kind = MISER_HF_REPLACE;
        s.n1 = 1;
        s.n2 = 3;
        if (!(s.s1 = dup_n(" ", 1)) || !(s.s2 = dup_n("\xe2\x96\x81", 3)) || (st = push_step(&h->norm, &h->n_norm, &s))) {
            step_clear(&s);
            if (!st) st = MISER_ERR_NOMEM;
            goto out;
        }
        static const int kinds[] = {MISER_HF_DEC_REPLACE, MISER_HF_DEC_BYTEFALLBACK, MISER_HF_DEC_FUSE, MISER_HF_DEC_STRIP};
        for (int k = 0; k < (sp->add_space_prefix ? 4 : 3); k++) {
            memset(&s, 0, sizeof s);
            s.kind = kinds[k];
            if (k == 0 && (!(s.s1 = dup_n("\xe2\x96\x81", 3)) || !(s.s2 = dup_n(" ", 1)))) st = MISER_ERR_NOMEM;
            if (k == 0) {
                s.n1 = 3;
                s.n2 = 1;
            }
            if (k == 3) {
                if (!(s.s1 = dup_n(" ", 1))) st = MISER_ERR_NOMEM;
                s.n1 = 1;
                s.a = 1;
            }
            if (st || (st = push_step(&h->dec, &h->n_dec, &s))) {
                step_clear(&s);
                goto out;
            }
        }
    } else {
        ml = miser_malloc(MISER_MEM_TOKENIZER, (sp->n_merges + 1) * sizeof *ml);
        mr = miser_malloc(MISER_MEM_TOKENIZER, (sp->n_merges + 1) * sizeof *mr);
        if (!ml || !mr) {
            st = MISER_ERR_NOMEM;
            goto out;
        }
        for (size_t r = 0; r < sp->n_merges; r++) {
            const char *m = sp->merges[r];
            size_t l = m ? (sp->merge_lens ? sp->merge_lens[r] : strlen(m)) : 0;
            const char *spc = m ? memchr(m, ' ', l) : NULL;
            if (!spc || spc == m || spc + 1 == m + l) {
                st = miser_error_set(MISER_ERR_FORMAT, "%s: merges[%zu] is not two tokens separated by a space", name, r);
                goto out;
            }
            ml[r] = miser_tok_hf_lookup(t, m, (size_t)(spc - m));
            mr[r] = miser_tok_hf_lookup(t, spc + 1, (size_t)(m + l - spc - 1));
            if (ml[r] < 0 || mr[r] < 0) {
                st = miser_error_set(MISER_ERR_FORMAT, "%s: merges[%zu] names a token that is not in the vocabulary",
                                     name, r);
                goto out;
            }
        }
        if ((st = miser_tok_hf_set_merges(t, sp->n_merges, ml, mr, "merges"))) goto out;
        h->ignore_merges = sp->ignore_merges;
        for (size_t k = 0; k < sp->n_regexes; k++) {
            char f[128];
            snprintf(f, sizeof f, "%s: pre-tokenizer regex %zu", name, k);
            memset(&s, 0, sizeof s);
            s.kind = MISER_HF_SPLIT;
            if ((st = miser_tok_regex_compile(sp->regexes[k], strlen(sp->regexes[k]), f, &s.re)) ||
                (st = push_step(&h->pre, &h->n_pre, &s))) {
                step_clear(&s);
                goto out;
            }
        }
        if (sp->byte_level) {
            memset(&s, 0, sizeof s);
            s.kind = MISER_HF_BYTELEVEL;
            s.b = sp->n_regexes == 0;
            if ((st = push_step(&h->pre, &h->n_pre, &s))) goto out;
            memset(&s, 0, sizeof s);
            s.kind = MISER_HF_DEC_BYTELEVEL;
            if ((st = push_step(&h->dec, &h->n_dec, &s))) goto out;
        }
    }
    if (sp->unk >= n || sp->bos >= n || sp->eos >= n) {
        st = miser_error_set(MISER_ERR_FORMAT, "%s: the unk/bos/eos id is outside the vocabulary", name);
        goto out;
    }
    h->unk = sp->unk;
    h->bos = sp->bos;
    t->eot = sp->eos;
    if (sp->add_bos) {
        if (sp->bos < 0) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: add_bos is set but there is no bos id", name);
            goto out;
        }
        h->prefix[h->n_prefix++] = sp->bos;
    }
    if (sp->add_eos) {
        if (sp->eos < 0) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: add_eos is set but there is no eos id", name);
            goto out;
        }
        h->suffix[h->n_suffix++] = sp->eos;
    }
    st = miser_tok_hf_finish(t);
out:
    miser_free(lens);
    miser_free(ml);
    miser_free(mr);
    if (st) {
        miser_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MISER_OK;
}
