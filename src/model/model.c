/* Checkpoint directory loader: reads config.json and hands it to the
 * architecture it names (the registry, arch.h: "model_type" /
 * "architectures"), maps model.safetensors (or the shards listed by
 * model.safetensors.index.json), builds a name-sorted table of canonical
 * tensor names pointing into the mappings, and has the architecture check
 * every tensor its builder needs against the config before anyone reads a
 * weight. Names in the table point into the shards' name blobs, so the only
 * heap is the table itself plus one name blob per shard. */
#include "miser/model.h"

#include "miser/alloc.h"
#include "model/arch.h"
#include "model/gguf_model.h"
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

struct miser_model {
    char *dir;
    char *source; /* model.safetensors or the index file: named when a tensor is missing */
    miser_config cfg;
    const miser_arch *arch;
    miser_st_file **shards;
    size_t n_shards;
    miser_tensor_info *tensors; /* sorted by name */
    size_t n_tensors;
    uint64_t mapped;
    miser_gguf_file *gguf; /* a .gguf file instead of shards (gguf_model.c) */
    char *gguf_names;      /* canonical names of its table */
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
miser_status miser_cfg_int(const char *path, const cJSON *root, const char *key, int64_t lo, int64_t hi,
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

miser_status miser_cfg_num(const char *path, const cJSON *root, const char *key, double lo, double hi, double def,
                           double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return MISER_OK;
    }
    if (!cJSON_IsNumber(v)) return miser_error_set(MISER_ERR_FORMAT, "%s: \"%s\" is not a number", path, key);
    if (!(v->valuedouble > lo) || !(v->valuedouble < hi))
        return miser_error_set(MISER_ERR_RANGE, "%s: \"%s\" = %g is outside (%g, %g)", path, key, v->valuedouble,
                               lo, hi);
    *out = v->valuedouble;
    return MISER_OK;
}

miser_status miser_cfg_bool(const char *path, const cJSON *root, const char *key, int def, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return MISER_OK;
    }
    if (!cJSON_IsBool(v)) return miser_error_set(MISER_ERR_FORMAT, "%s: \"%s\" is not true or false", path, key);
    *out = cJSON_IsTrue(v);
    return MISER_OK;
}

/* config.json -> the architecture it selects and its parsed config */
static miser_status read_config(miser_model *m)
{
    char *path = join(m->dir, "config.json");
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
    if ((st = miser_arch_select(path, root, &m->arch))) goto done;
    memset(&m->cfg, 0, sizeof m->cfg);
    m->cfg.arch = m->arch->name;
    st = m->arch->parse_config(path, root, &m->cfg);
    m->cfg.arch = m->arch->name;
    m->cfg.kv_dtype = m->arch->kv_dtype;
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

/* The table's name for a stored key: without the architecture's module
 * prefix ("transformer." for GPT-2), when it has one. */
static const char *canonical(const miser_model *m, const char *stored)
{
    const char *p = m->arch ? m->arch->strip_prefix : NULL;
    size_t n = p ? strlen(p) : 0;
    return n && !strncmp(stored, p, n) ? stored + n : stored;
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
            o->name = canonical(m, t->name);
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
                                   "%s: tensor '%s' is stored twice (with and without \"%s\", or in two shards: %s)",
                                   m->shards[b->shard]->path, b->name,
                                   m->arch && m->arch->strip_prefix ? m->arch->strip_prefix : "a prefix",
                                   m->shards[a->shard]->path);
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
            const miser_tensor_info *info = t && t->dtype != MISER_DTYPE_COUNT ? miser_model_tensor(m, canonical(m, name)) : NULL;
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
            if (t->dtype == MISER_DTYPE_COUNT && !strcmp(canonical(m, t->name), name)) {
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
miser_status miser_model_need(const miser_model *m, const char *name, int64_t d0, int64_t d1, const char *why)
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
    const char *path = miser_model_tensor_path(m, t);
    /* Q8_0 comes from miser's converted-weights cache or a GGUF file, the
     * 4-bit blocks from GGUF files, for matrices only */
    if (t->dtype != MISER_DTYPE_F32 && t->dtype != MISER_DTYPE_F16 && t->dtype != MISER_DTYPE_BF16 &&
        !((t->dtype == MISER_DTYPE_Q8_0 || t->dtype == MISER_DTYPE_Q4_0 || t->dtype == MISER_DTYPE_Q4_K ||
           t->dtype == MISER_DTYPE_Q6_K) && d1 >= 0))
        return miser_error_set(MISER_ERR_UNSUPPORTED,
                               "%s: tensor '%s': dtype %s is not supported for weights (F32, F16, BF16)", path,
                               name, miser_dtype_name(t->dtype));
    int32_t nd = d1 < 0 ? 1 : 2;
    int64_t want[2] = {d0, d1};
    if (t->ndim != nd || t->shape[0] != d0 || (nd == 2 && t->shape[1] != d1)) {
        char got[160], exp[64];
        shape_str(got, sizeof got, t->ndim, t->shape);
        shape_str(exp, sizeof exp, nd, want);
        return miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%s' has shape %s but %s implies %s (%s)",
                               path, name, got, m->gguf ? "the GGUF metadata" : "config.json", exp, why);
    }
    return MISER_OK;
}

int32_t miser_model_const(miser_graph *g, const miser_model *m, const char *name, const char *context,
                          miser_status *st)
{
    const miser_tensor_info *t = miser_model_tensor(m, name);
    if (!t) {
        *st = miser_error_set(MISER_ERR_FORMAT, "%s: missing tensor '%s'", miser_model_dir(m), name);
        return -1;
    }
    int32_t id = miser_g_const(g, t, name);
    *st = id < 0 ? miser_error_prefix(g->last_error ? g->last_error : MISER_ERR_INTERNAL, "%s", context) : MISER_OK;
    return id;
}

const char *miser_model_tensor_path(const miser_model *m, const miser_tensor_info *t)
{
    if (m->gguf) return m->gguf->path;
    return m->shards[t->shard]->path;
}

const char *miser_model_source(const miser_model *m) { return m->source; }

/* A .gguf file: mapped and parsed (gguf.c), its architecture, config and
 * tensor table from gguf_model.c, then the registry's checks as for a
 * directory. */
static miser_status open_gguf(miser_model *m)
{
    miser_status st = miser_gguf_open(m->dir, &m->gguf);
    if (st) return st;
    if (!(m->source = miser_strdup(MISER_MEM_OTHER, m->dir))) return MISER_ERR_NOMEM;
    m->mapped = m->gguf->map_size;
    if ((st = miser_gguf_model_load(m->gguf, &m->cfg, &m->arch, &m->tensors, &m->n_tensors, &m->gguf_names)))
        return st;
    m->cfg.kv_dtype = m->arch->kv_dtype;
    return m->arch->validate(m);
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
    if (miser_gguf_is_path(dir)) {
        if ((st = open_gguf(m))) goto fail;
        *out = m;
        return MISER_OK;
    }
    if ((st = read_config(m))) goto fail;

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
    if ((st = m->arch->validate(m))) goto fail;
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
    miser_gguf_close(m->gguf);
    miser_free(m->gguf_names);
    miser_free(m->tensors);
    miser_free(m->source);
    miser_free(m->dir);
    miser_free(m);
}

const miser_config *miser_model_config(const miser_model *m) { return m ? &m->cfg : NULL; }
const char *miser_model_arch(const miser_model *m) { return m && m->arch ? m->arch->name : NULL; }
const char *miser_model_dir(const miser_model *m) { return m ? m->dir : NULL; }
size_t miser_model_tensor_count(const miser_model *m) { return m ? m->n_tensors : 0; }
uint64_t miser_model_mapped_bytes(const miser_model *m) { return m ? m->mapped : 0; }
size_t miser_model_shard_count(const miser_model *m) { return m ? (m->gguf ? 1 : m->n_shards) : 0; }

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

miser_status miser_model_prefault(const miser_model *m)
{
    long page = sysconf(_SC_PAGESIZE);
    if (m && m->gguf && madvise((void *)m->gguf->map, m->gguf->map_size, MADV_POPULATE_READ) != 0) {
        if (errno != EINVAL)
            return miser_error_set(MISER_ERR_IO, "%s: reading the weights in: %s", m->gguf->path, strerror(errno));
        volatile unsigned char sink = 0;
        for (size_t o = 0; o < m->gguf->map_size; o += (size_t)page) sink ^= m->gguf->map[o];
        (void)sink;
    }
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
    if (m && m->gguf) return i == 0 ? m->gguf->path : NULL;
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
