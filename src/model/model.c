/* Checkpoint directory loader: reads config.json, maps model.safetensors (or
 * the shards listed by model.safetensors.index.json), builds a name-sorted
 * table of canonical tensor names pointing into the mappings, and checks
 * every tensor GPT-2 needs against the config before anyone reads a weight.
 * Names in the table point into the shards' name blobs, so the only heap is
 * the table itself plus one name blob per shard. */
#include "miser/model.h"

#include "miser/alloc.h"
#include "model/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MAX_BYTES (1u << 20)
#define INDEX_MAX_BYTES (64u << 20)
#define PREFIX "transformer."

struct miser_model {
    char *dir;
    char *source; /* model.safetensors or the index file: named when a tensor is missing */
    miser_gpt2_config cfg;
    miser_st_file **shards;
    size_t n_shards;
    miser_tensor_info *tensors; /* sorted by name */
    size_t n_tensors;
    uint64_t mapped;
};

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = miser_malloc(MISER_MEM_OTHER, a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* Read a small file whole (NUL-terminated) into a scratch buffer. */
static miser_status slurp(const char *path, size_t limit, char **out, size_t *len)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return miser_error_set(MISER_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return miser_error_set(MISER_ERR_IO, "%s: not a readable regular file", path);
    }
    if ((uint64_t)sb.st_size > limit) {
        close(fd);
        return miser_error_set(MISER_ERR_FORMAT, "%s: %lld bytes, more than the %zu-byte limit", path,
                               (long long)sb.st_size, limit);
    }
    size_t n = (size_t)sb.st_size, got = 0;
    char *buf = miser_malloc(MISER_MEM_SCRATCH, n + 1);
    if (!buf) {
        close(fd);
        return MISER_ERR_NOMEM;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            close(fd);
            miser_free(buf);
            return miser_error_set(MISER_ERR_IO, "%s: read: %s", path, r < 0 ? strerror(e) : "file shrank");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return MISER_OK;
}

/* ---- config.json ---------------------------------------------------------- */

/* An integer config value in [lo, hi]. `def` < 0 makes it required. A JSON
 * null counts as absent. */
static miser_status cfg_int(const char *path, const cJSON *root, const char *key, int64_t lo, int64_t hi,
                            int64_t def, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < 0) return miser_error_set(MISER_ERR_FORMAT, "%s: \"%s\" is missing", path, key);
        *out = def;
        return MISER_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 9e15)
        return miser_error_set(MISER_ERR_FORMAT, "%s: \"%s\" is not an integer", path, key);
    int64_t x = (int64_t)v->valuedouble;
    if (x < lo || x > hi)
        return miser_error_set(MISER_ERR_RANGE, "%s: \"%s\" = %lld is outside %lld..%lld", path, key,
                               (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return MISER_OK;
}

static miser_status read_config(const char *dir, miser_gpt2_config *c)
{
    char *path = join(dir, "config.json");
    if (!path) return MISER_ERR_NOMEM;
    char *text = NULL;
    size_t len = 0;
    miser_status st = slurp(path, CONFIG_MAX_BYTES, &text, &len);
    cJSON *root = NULL;
    if (st) goto done;
    root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) {
        st = miser_error_set(MISER_ERR_FORMAT, "%s: %s", path, root ? "not a JSON object" : "invalid JSON");
        goto done;
    }
    memset(c, 0, sizeof *c);
    int64_t v;
    if ((st = cfg_int(path, root, "n_embd", 1, 1 << 16, -1, &c->n_embd))) goto done;
    if ((st = cfg_int(path, root, "n_head", 1, 1 << 12, -1, &c->n_head))) goto done;
    if ((st = cfg_int(path, root, "n_layer", 1, 1 << 12, -1, &c->n_layer))) goto done;
    if ((st = cfg_int(path, root, "vocab_size", 1, 1 << 24, -1, &c->n_vocab))) goto done;
    const cJSON *npos = cJSON_GetObjectItemCaseSensitive(root, "n_positions");
    const char *ctx_key = npos && !cJSON_IsNull(npos) ? "n_positions" : "n_ctx";
    if ((st = cfg_int(path, root, ctx_key, 1, 1 << 20, -1, &c->n_ctx))) goto done;
    if ((st = cfg_int(path, root, "n_inner", 1, 1 << 20, 4 * c->n_embd, &c->n_inner))) goto done;
    int64_t eos_def = c->n_vocab > 50256 ? 50256 : 0;
    if ((st = cfg_int(path, root, "eos_token_id", 0, c->n_vocab - 1, eos_def, &v))) goto done;
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    c->eos_token_id = ((!eos || cJSON_IsNull(eos)) && c->n_vocab <= 50256) ? -1 : (int32_t)v;
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
    c->eps = 1e-5f;
    if (eps && !cJSON_IsNull(eps)) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0) || !(eps->valuedouble < 1)) {
            st = miser_error_set(MISER_ERR_RANGE, "%s: \"layer_norm_epsilon\" must be a number in (0, 1)", path);
            goto done;
        }
        c->eps = (float)eps->valuedouble;
    }
    if (c->n_embd % c->n_head)
        st = miser_error_set(MISER_ERR_RANGE, "%s: n_embd %lld is not divisible by n_head %lld", path,
                             (long long)c->n_embd, (long long)c->n_head);
done:
    cJSON_Delete(root);
    miser_free(text);
    miser_free(path);
    return st;
}

/* ---- weights --------------------------------------------------------------- */

static miser_status add_shard(miser_model *m, const char *name)
{
    char *path = join(m->dir, name);
    if (!path) return MISER_ERR_NOMEM;
    miser_st_file *f = NULL;
    miser_status st = miser_st_open(path, &f);
    miser_free(path);
    if (st) return st;
    m->shards[m->n_shards++] = f;
    m->mapped += f->map_size;
    return MISER_OK;
}

/* A shard file name from an index: a plain name inside the directory. */
static int plain_name(const char *s)
{
    return s[0] && strcmp(s, ".") && strcmp(s, "..") && !strchr(s, '/');
}

static miser_status open_sharded(miser_model *m)
{
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    const char **uniq = NULL;
    miser_status st = slurp(m->source, INDEX_MAX_BYTES, &text, &len);
    if (st) return st;
    root = cJSON_ParseWithLength(text, len);
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        st = miser_error_set(MISER_ERR_FORMAT, "%s: %s", m->source,
                             root ? "no \"weight_map\" object" : "invalid JSON");
        goto done;
    }
    size_t n = 0;
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring || !plain_name(e->valuestring)) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%s': shard must be a file name in the directory",
                                 m->source, e->string ? e->string : "");
            goto done;
        }
        n++;
    }
    if (!n) {
        st = miser_error_set(MISER_ERR_FORMAT, "%s: \"weight_map\" is empty", m->source);
        goto done;
    }
    uniq = miser_malloc(MISER_MEM_SCRATCH, n * sizeof *uniq);
    m->shards = miser_calloc(MISER_MEM_OTHER, n, sizeof *m->shards);
    if (!uniq || !m->shards) {
        st = MISER_ERR_NOMEM;
        goto done;
    }
    size_t nu = 0;
    for (const cJSON *e = wm->child; e; e = e->next) {
        size_t j = 0;
        while (j < nu && strcmp(uniq[j], e->valuestring)) j++;
        if (j == nu) uniq[nu++] = e->valuestring;
    }
    for (size_t j = 0; j < nu; j++)
        if ((st = add_shard(m, uniq[j]))) goto done;
    /* The index must not promise tensors its shards lack. */
    for (const cJSON *e = wm->child; e; e = e->next) {
        size_t j = 0;
        while (strcmp(uniq[j], e->valuestring)) j++;
        if (!miser_st_find(&m->shards[j]->hdr, e->string)) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%s' is mapped to %s, which does not store it",
                                 m->source, e->string, e->valuestring);
            goto done;
        }
    }
done:
    miser_free(uniq);
    cJSON_Delete(root);
    miser_free(text);
    return st;
}

static const char *canonical(const char *stored)
{
    return strncmp(stored, PREFIX, sizeof PREFIX - 1) ? stored : stored + sizeof PREFIX - 1;
}

static int cmp_info(const void *a, const void *b)
{
    return strcmp(((const miser_tensor_info *)a)->name, ((const miser_tensor_info *)b)->name);
}

static miser_status build_table(miser_model *m)
{
    size_t n = 0;
    for (size_t s = 0; s < m->n_shards; s++) n += m->shards[s]->hdr.n_tensors;
    m->tensors = miser_calloc(MISER_MEM_OTHER, n ? n : 1, sizeof *m->tensors);
    if (!m->tensors) return MISER_ERR_NOMEM;
    for (size_t s = 0; s < m->n_shards; s++) {
        const miser_st_file *f = m->shards[s];
        for (size_t i = 0; i < f->hdr.n_tensors; i++) {
            const miser_st_tensor *t = &f->hdr.tensors[i];
            if (t->dtype == MISER_DTYPE_COUNT) continue; /* opaque buffer: see find_opaque */
            miser_tensor_info *o = &m->tensors[m->n_tensors++];
            o->name = canonical(t->name);
            o->dtype = t->dtype;
            o->ndim = t->ndim;
            memcpy(o->shape, t->shape, sizeof o->shape);
            for (int64_t d = t->ndim - 1, st = 1; d >= 0; st *= t->shape[d--]) o->stride[d] = st;
            o->data = miser_st_data(f, t);
            o->nbytes = t->end - t->begin;
            o->shard = (int32_t)s;
        }
    }
    qsort(m->tensors, m->n_tensors, sizeof *m->tensors, cmp_info);
    for (size_t i = 1; i < m->n_tensors; i++) {
        const miser_tensor_info *a = &m->tensors[i - 1], *b = &m->tensors[i];
        if (!strcmp(a->name, b->name))
            return miser_error_set(MISER_ERR_FORMAT,
                                   "%s: tensor '%s' is stored twice (with and without \"" PREFIX
                                   "\", or in two shards: %s)",
                                   m->shards[b->shard]->path, b->name, m->shards[a->shard]->path);
    }
    return MISER_OK;
}

/* Tensors a converted-weights cache stores transposed ("miser_transposed":
 * comma-separated names as stored in that file): each must be a 2-D tensor
 * of the same file, listed once; its entry shows the logical shape [K, N] of
 * the stored [N, K] with strides {1, K}. Runs on the sorted table. */
static miser_status apply_transposed(miser_model *m)
{
    unsigned char *seen = NULL;
    miser_status st = MISER_OK;
    for (size_t s = 0; s < m->n_shards && !st; s++) {
        const miser_st_file *f = m->shards[s];
        if (!f->hdr.transposed) continue;
        if (!seen && !(seen = miser_calloc(MISER_MEM_SCRATCH, m->n_tensors ? m->n_tensors : 1, 1))) return MISER_ERR_NOMEM;
        char *list = miser_strdup(MISER_MEM_SCRATCH, f->hdr.transposed);
        if (!list) {
            st = MISER_ERR_NOMEM;
            break;
        }
        for (char *name = list, *next; name && !st; name = next) {
            next = strchr(name, ',');
            if (next) *next++ = 0;
            if (!*name) {
                if (!next && name == list) break; /* "": nothing is transposed */
                st = miser_error_set(MISER_ERR_FORMAT, "%s: \"miser_transposed\" has an empty name", f->path);
                break;
            }
            const miser_st_tensor *t = miser_st_find(&f->hdr, name);
            const miser_tensor_info *info = t && t->dtype != MISER_DTYPE_COUNT ? miser_model_tensor(m, canonical(name)) : NULL;
            if (!info || info->shard != (int32_t)s) {
                st = miser_error_set(MISER_ERR_FORMAT, "%s: \"miser_transposed\" lists tensor '%s', which the file does "
                                     "not store%s", f->path, name, t ? " in a dtype miser reads" : "");
                break;
            }
            if (t->ndim != 2) {
                st = miser_error_set(MISER_ERR_FORMAT, "%s: \"miser_transposed\" lists tensor '%s', which has %d "
                                     "dimensions (a transposed tensor is 2-D)", f->path, name, (int)t->ndim);
                break;
            }
            size_t i = (size_t)(info - m->tensors);
            if (seen[i]) {
                st = miser_error_set(MISER_ERR_FORMAT, "%s: \"miser_transposed\" lists tensor '%s' twice", f->path, name);
                break;
            }
            seen[i] = 1;
            miser_tensor_info *o = &m->tensors[i];
            o->shape[0] = t->shape[1];
            o->shape[1] = t->shape[0];
            o->stride[0] = 1;
            o->stride[1] = t->shape[1];
        }
        miser_free(list);
    }
    miser_free(seen);
    return st;
}

/* A tensor miser cannot represent, by canonical name (for error messages). */
static const miser_st_tensor *find_opaque(const miser_model *m, const char *name, const char **path)
{
    for (size_t s = 0; s < m->n_shards; s++)
        for (size_t i = 0; i < m->shards[s]->hdr.n_tensors; i++) {
            const miser_st_tensor *t = &m->shards[s]->hdr.tensors[i];
            if (t->dtype == MISER_DTYPE_COUNT && !strcmp(canonical(t->name), name)) {
                *path = m->shards[s]->path;
                return t;
            }
        }
    return NULL;
}

static void shape_str(char *buf, size_t cap, int32_t nd, const int64_t *sh)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < nd && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)sh[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Require tensor `name` with shape [d0] (d1 < 0) or [d0, d1]; `why` says
 * which config values imply it. */
static miser_status need(const miser_model *m, const char *name, int64_t d0, int64_t d1, const char *why)
{
    const miser_tensor_info *t = miser_model_tensor(m, name);
    if (!t) {
        const char *path = NULL;
        const miser_st_tensor *o = find_opaque(m, name, &path);
        if (o)
            return miser_error_set(MISER_ERR_UNSUPPORTED,
                                   "%s: tensor '%s': dtype %s is not supported (miser reads F32, F16, BF16)",
                                   path, o->name, o->st_dtype);
        return miser_error_set(MISER_ERR_FORMAT, "%s: required tensor '%s' is missing", m->source, name);
    }
    const char *path = m->shards[t->shard]->path;
    /* Q8_0 only comes from miser's converted-weights cache, for matrices */
    if (t->dtype != MISER_DTYPE_F32 && t->dtype != MISER_DTYPE_F16 && t->dtype != MISER_DTYPE_BF16 &&
        !(t->dtype == MISER_DTYPE_Q8_0 && d1 >= 0))
        return miser_error_set(MISER_ERR_UNSUPPORTED,
                               "%s: tensor '%s': dtype %s is not supported for weights (F32, F16, BF16)", path,
                               name, miser_dtype_name(t->dtype));
    int32_t nd = d1 < 0 ? 1 : 2;
    int64_t want[2] = {d0, d1};
    if (t->ndim != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
        char got[160], exp[64];
        shape_str(got, sizeof got, t->ndim, t->shape);
        shape_str(exp, sizeof exp, nd, want);
        return miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%s' has shape %s but config.json implies %s (%s)",
                               path, name, got, exp, why);
    }
    return MISER_OK;
}

static miser_status validate(const miser_model *m)
{
    const miser_gpt2_config *c = &m->cfg;
    const int64_t C = c->n_embd, F = c->n_inner;
    miser_status st;
    if ((st = need(m, "wte.weight", c->n_vocab, C, "vocab_size x n_embd"))) return st;
    if ((st = need(m, "wpe.weight", c->n_ctx, C, "n_positions x n_embd"))) return st;
    char nm[64];
    static const struct { const char *suffix; int r, c; } L[] = {
        /* r, c: 1 = C, 3 = 3C, 4 = n_inner, 0 = absent (a vector) */
        {"ln_1.weight", 1, 0},        {"ln_1.bias", 1, 0},         {"attn.c_attn.weight", 1, 3},
        {"attn.c_attn.bias", 3, 0},   {"attn.c_proj.weight", 1, 1}, {"attn.c_proj.bias", 1, 0},
        {"ln_2.weight", 1, 0},        {"ln_2.bias", 1, 0},         {"mlp.c_fc.weight", 1, 4},
        {"mlp.c_fc.bias", 4, 0},      {"mlp.c_proj.weight", 4, 1}, {"mlp.c_proj.bias", 1, 0},
    };
    for (int64_t l = 0; l < c->n_layer; l++)
        for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
            int64_t dim[5] = {0, C, 0, 3 * C, F};
            snprintf(nm, sizeof nm, "h.%lld.%s", (long long)l, L[i].suffix);
            const char *why = L[i].r == 4 || L[i].c == 4 ? "n_embd, n_inner" : "n_embd";
            if ((st = need(m, nm, dim[L[i].r], L[i].c ? dim[L[i].c] : -1, why))) return st;
        }
    if ((st = need(m, "ln_f.weight", C, -1, "n_embd"))) return st;
    if ((st = need(m, "ln_f.bias", C, -1, "n_embd"))) return st;
    /* A stored lm_head shaped like wte is the tied copy; anything else would
     * be an untied head, which the GPT-2 builder does not implement. */
    const miser_tensor_info *lm = miser_model_tensor(m, "lm_head.weight");
    if (lm && (lm->ndim != 2 || lm->shape[0] != c->n_vocab || lm->shape[1] != C))
        return miser_error_set(MISER_ERR_UNSUPPORTED,
                               "%s: tensor 'lm_head.weight' is not shaped like wte [%lld, %lld]: untied output "
                               "heads are not supported",
                               m->shards[lm->shard]->path, (long long)c->n_vocab, (long long)C);
    return MISER_OK;
}

miser_status miser_model_open(const char *dir, miser_model **out)
{
    if (!out) return miser_error_set(MISER_ERR_INVALID, "miser_model_open: out is NULL");
    *out = NULL;
    if (!dir || !dir[0]) return miser_error_set(MISER_ERR_INVALID, "miser_model_open: no directory given");
    miser_model *m = miser_calloc(MISER_MEM_OTHER, 1, sizeof *m);
    if (!m) return MISER_ERR_NOMEM;
    miser_status st = MISER_OK;
    if (!(m->dir = miser_strdup(MISER_MEM_OTHER, dir))) {
        st = MISER_ERR_NOMEM;
        goto fail;
    }
    if ((st = read_config(dir, &m->cfg))) goto fail;

    if (!(m->source = join(dir, "model.safetensors"))) {
        st = MISER_ERR_NOMEM;
        goto fail;
    }
    if (access(m->source, F_OK) == 0) {
        if (!(m->shards = miser_calloc(MISER_MEM_OTHER, 1, sizeof *m->shards))) {
            st = MISER_ERR_NOMEM;
            goto fail;
        }
        if ((st = add_shard(m, "model.safetensors"))) goto fail;
    } else {
        miser_free(m->source);
        if (!(m->source = join(dir, "model.safetensors.index.json"))) {
            st = MISER_ERR_NOMEM;
            goto fail;
        }
        if (access(m->source, F_OK) != 0) {
            st = miser_error_set(MISER_ERR_IO, "%s: neither model.safetensors nor model.safetensors.index.json "
                                 "exists", dir);
            goto fail;
        }
        if ((st = open_sharded(m))) goto fail;
    }
    if ((st = build_table(m))) goto fail;
    if ((st = apply_transposed(m))) goto fail;
    if ((st = validate(m))) goto fail;
    *out = m;
    return MISER_OK;
fail:
    miser_model_free(m);
    return st;
}

void miser_model_free(miser_model *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n_shards; i++) miser_st_close(m->shards[i]);
    miser_free(m->shards);
    miser_free(m->tensors);
    miser_free(m->source);
    miser_free(m->dir);
    miser_free(m);
}

const miser_gpt2_config *miser_model_config(const miser_model *m) { return m ? &m->cfg : NULL; }
const char *miser_model_dir(const miser_model *m) { return m ? m->dir : NULL; }
size_t miser_model_tensor_count(const miser_model *m) { return m ? m->n_tensors : 0; }
uint64_t miser_model_mapped_bytes(const miser_model *m) { return m ? m->mapped : 0; }
size_t miser_model_shard_count(const miser_model *m) { return m ? m->n_shards : 0; }

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

miser_status miser_model_prefault(const miser_model *m)
{
    long page = sysconf(_SC_PAGESIZE);
    for (size_t i = 0; m && i < m->n_shards; i++) {
        const miser_st_file *f = m->shards[i];
        /* one call maps every page (reading the file as needed); kernels
         * without MADV_POPULATE_READ get a read of one byte per page */
        if (madvise((void *)f->map, f->map_size, MADV_POPULATE_READ) == 0) continue;
        if (errno != EINVAL)
            return miser_error_set(MISER_ERR_IO, "%s: reading the weights in: %s", f->path, strerror(errno));
        volatile unsigned char sink = 0;
        for (size_t o = 0; o < f->map_size; o += (size_t)page) sink ^= f->map[o];
        (void)sink;
    }
    return MISER_OK;
}

const char *miser_model_shard_path(const miser_model *m, size_t i)
{
    return m && i < m->n_shards ? m->shards[i]->path : NULL;
}

const miser_tensor_info *miser_model_tensor_at(const miser_model *m, size_t i)
{
    return m && i < m->n_tensors ? &m->tensors[i] : NULL;
}

const miser_tensor_info *miser_model_tensor(const miser_model *m, const char *name)
{
    if (!m || !name) return NULL;
    size_t lo = 0, hi = m->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, m->tensors[mid].name);
        if (!c) return &m->tensors[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}
