/* Precision conversion into a converted-weights cache (see precision.h):
 * tensor by tensor in chunks of at most 1 Mi elements, streamed through the
 * safetensors writer (temp file + rename), validated against its source on
 * reuse. q8_0 / q4_0 / q4_k Conv1D weights are written transposed ([N][K],
 * blocks along K) and named in the header's "miser_transposed" metadata;
 * the 4-bit blocks come from quantize_q4.c (llama.cpp's quantizers). */
#include "miser/precision.h"
#include "miser/alloc.h"
#include "miser/model.h"
#include "miser/safetensors.h"

#include "kernels/quant4.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK_ELEMS ((int64_t)1 << 20)
/* 2: q8_0 Conv1D weights stored transposed, listed in "miser_transposed" */
#define FORMAT_VERSION "2"

static int width(miser_dtype dt)
{
    switch (dt) {
    case MISER_DTYPE_F32: return 32;
    case MISER_DTYPE_F16:
    case MISER_DTYPE_BF16: return 16;
    case MISER_DTYPE_Q8_0: return 8;
    case MISER_DTYPE_Q6_K: return 6;
    case MISER_DTYPE_Q4_0:
    case MISER_DTYPE_Q4_K: return 4;
    default: return 0;
    }
}

/* ggml block types (Q8_0, Q4_0, Q4_K, Q6_K) */
static int blocked(miser_dtype dt) { return miser_dtype_block(dt) > 1; }

miser_dtype miser_precision_target(miser_dtype stored, int ndim, int64_t last_dim, miser_dtype precision)
{
    if (width(stored) == 0 || blocked(stored)) return stored; /* never quantised twice */
    miser_dtype want = precision;
    if (blocked(want) && ndim < 2) return stored; /* norms and biases stay as stored */
    /* q4_k without whole 256-blocks: q4_0 (llama.cpp takes Q5_0, which miser does not run) */
    if (want == MISER_DTYPE_Q4_K && (last_dim % MISER_QK_K || last_dim == 0)) want = MISER_DTYPE_Q4_0;
    if (blocked(want) && (last_dim % MISER_Q8_0_BLOCK || last_dim == 0)) want = MISER_DTYPE_F16;
    if (width(want) >= width(stored)) return stored; /* never widen; f16 <-> bf16 is not a narrowing */
    return want;
}

/* The embeddings and the head (canonical names): kept wider at 4 bits */
static int is_embedding_or_head(const char *name)
{
    return !strcmp(name, "wte.weight") || !strcmp(name, "wpe.weight") || !strcmp(name, "lm_head.weight") ||
           !strcmp(name, "model.embed_tokens.weight");
}

miser_dtype miser_precision_tensor_target(const char *name, miser_dtype stored, int ndim, int64_t last_dim,
                                          miser_dtype precision)
{
    if ((precision == MISER_DTYPE_Q4_0 || precision == MISER_DTYPE_Q4_K) && ndim == 2 && name &&
        is_embedding_or_head(name) && width(stored) > 8 && !blocked(stored))
        /* Q6_K as llama.cpp's output tensor, else q8_0 (or its f16 fallback) */
        return last_dim > 0 && last_dim % MISER_QK_K == 0 ? MISER_DTYPE_Q6_K
                                                          : miser_precision_target(stored, ndim, last_dim, MISER_DTYPE_Q8_0);
    return miser_precision_target(stored, ndim, last_dim, precision);
}

void miser_quantize_q8_0(const float *src, int64_t n, void *dst)
{
    uint8_t *o = dst;
    for (int64_t b = 0; b < n / MISER_Q8_0_BLOCK; b++) {
        const float *x = src + b * MISER_Q8_0_BLOCK;
        float amax = 0;
        for (int i = 0; i < MISER_Q8_0_BLOCK; i++) amax = fmaxf(amax, fabsf(x[i]));
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        uint16_t h = miser_f32_to_f16(d);
        memcpy(o, &h, 2);
        for (int i = 0; i < MISER_Q8_0_BLOCK; i++) {
            float v = roundf(x[i] * id);
            ((int8_t *)o)[2 + i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        o += MISER_Q8_0_BYTES;
    }
}

/* ---- layouts ---- */

/* GPT-2's Conv1D weights, h.N.{attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj}.weight
 * (canonical names): logical [K, N] = [in, out], stored row-major by Hugging Face */
static int is_conv1d_weight(const char *name)
{
    if (strncmp(name, "h.", 2)) return 0;
    const char *p = name + 2;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
    static const char *const sfx[] = {".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight",
                                      ".mlp.c_proj.weight"};
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++)
        if (!strcmp(p, sfx[i])) return 1;
    return 0;
}

/* A 2-D tensor stored transposed (the loader shows it as [K, N], strides {1, K}) */
static int stored_transposed(const miser_tensor_info *t)
{
    return t->ndim == 2 && t->stride[1] != 1 && t->stride[0] == 1;
}

/* How one tensor is written: dtype, stored shape, and whether it is stored
 * transposed. A q8_0 Conv1D weight whose K is a multiple of 32 is written
 * as [N][K] with its blocks along K, so an int8 kernel sums a whole block in
 * integers and scales once per block (llama.cpp's layout). A source tensor
 * already stored transposed (a cache converted again) keeps its stored
 * layout, and a source already in q8_0 (blocks along N: a format-1 cache)
 * is copied, never quantised twice. Everything else is written in its
 * (row-major) stored layout. */
typedef struct {
    miser_dtype dtype;
    int32_t ndim;
    int64_t shape[MISER_MAX_DIMS]; /* as stored in the output */
    int transpose;                 /* 1: written transposed from a row-major source */
    int listed;                    /* 1: listed in "miser_transposed" */
} out_layout;

static void plan_layout(const miser_tensor_info *t, miser_dtype prec, out_layout *o)
{
    memset(o, 0, sizeof *o);
    o->ndim = t->ndim;
    memcpy(o->shape, t->shape, sizeof o->shape);
    if (stored_transposed(t)) {
        o->shape[0] = t->shape[1];
        o->shape[1] = t->shape[0];
        o->listed = 1;
        o->dtype = miser_precision_target(t->dtype, 2, o->shape[1], prec);
        return;
    }
    if (blocked(prec) && t->ndim == 2 && !blocked(t->dtype) && is_conv1d_weight(t->name) &&
        t->shape[0] <= CHUNK_ELEMS /* always: config.json caps n_inner at 2^20 */) {
        const miser_dtype to = miser_precision_target(t->dtype, 2, t->shape[0], prec); /* blocks along K */
        if (blocked(to)) {
            o->dtype = to;
            o->shape[0] = t->shape[1];
            o->shape[1] = t->shape[0];
            o->transpose = o->listed = 1;
            return;
        }
        /* the 4-bit kernels read only the dot layout: no blocks along N */
        if (prec != MISER_DTYPE_Q8_0) {
            o->dtype = to;
            return;
        }
    }
    o->dtype = miser_precision_tensor_target(t->name, t->dtype, t->ndim, t->ndim ? t->shape[t->ndim - 1] : 1, prec);
}

/* snprintf for paths (defined below) */
static int pathf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- source identity ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Adds the file's size, mtime and sampled content to the running figures. */
static miser_status identify_file(const char *path, int whole, uint64_t *size, int64_t *mtime_ns, uint64_t *hash)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return miser_error_set(MISER_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb)) {
        close(fd);
        return miser_error_set(MISER_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    uint64_t sz = (uint64_t)sb.st_size;
    *size += sz;
    int64_t mt = (int64_t)sb.st_mtim.tv_sec * 1000000000ll + sb.st_mtim.tv_nsec;
    if (mt > *mtime_ns) *mtime_ns = mt;
    char buf[65536];
    uint64_t h = fnv(*hash, &sz, sizeof sz);
    /* ranges: whole file, or head MiB, tail MiB and 64 spread 4 KiB pages */
    uint64_t ranges[66][2];
    int nr = 0;
    if (whole || sz <= (4u << 20)) ranges[nr][0] = 0, ranges[nr++][1] = sz;
    else {
        ranges[nr][0] = 0, ranges[nr++][1] = 1u << 20;
        ranges[nr][0] = sz - (1u << 20), ranges[nr++][1] = 1u << 20;
        for (int i = 0; i < 64; i++) ranges[nr][0] = sz / 65 * (uint64_t)(i + 1), ranges[nr++][1] = 4096;
    }
    for (int r = 0; r < nr; r++)
        for (uint64_t off = ranges[r][0], left = ranges[r][1]; left > 0;) {
            size_t want = left < sizeof buf ? (size_t)left : sizeof buf;
            ssize_t got = pread(fd, buf, want, (off_t)off);
            if (got <= 0) {
                close(fd);
                return miser_error_set(MISER_ERR_IO, "%s: read failed at offset %llu", path, (unsigned long long)off);
            }
            h = fnv(h, buf, (size_t)got);
            off += (uint64_t)got;
            left -= (uint64_t)got;
        }
    close(fd);
    *hash = h;
    return MISER_OK;
}

typedef struct {
    char size[32], mtime[32], hash[32];
} source_id;

static miser_status identify(const char *model_dir, const miser_model *m, source_id *id)
{
    uint64_t size = 0, hash = 0xcbf29ce484222325ull;
    int64_t mt = 0;
    char path[PATH_MAX];
    if (pathf(path, sizeof path, "%s/config.json", model_dir))
        return miser_error_set(MISER_ERR_IO, "path too long: %s", model_dir);
    miser_status st = identify_file(path, 1, &size, &mt, &hash);
    for (size_t i = 0; !st && i < miser_model_shard_count(m); i++)
        st = identify_file(miser_model_shard_path(m, i), 0, &size, &mt, &hash);
    if (st) return st;
    snprintf(id->size, sizeof id->size, "%llu", (unsigned long long)size);
    snprintf(id->mtime, sizeof id->mtime, "%lld", (long long)mt);
    snprintf(id->hash, sizeof id->hash, "%016llx", (unsigned long long)hash);
    return MISER_OK;
}

/* 1 when `file`'s header metadata records exactly this source and precision */
static int cache_matches(const char *file, const source_id *id, const char *prec)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    unsigned char lenb[8];
    int ok = 0;
    if (pread(fd, lenb, 8, 0) == 8) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = n << 8 | lenb[i];
        char *h = n > 0 && n < (64u << 20) ? miser_malloc(MISER_MEM_SCRATCH, (size_t)n + 1) : NULL;
        if (h && pread(fd, h, (size_t)n, 8) == (ssize_t)n) {
            h[n] = 0;
            cJSON *j = cJSON_Parse(h);
            const cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "__metadata__");
            const char *keys[5] = {"miser_source_size", "miser_source_mtime_ns", "miser_source_hash", "miser_precision",
                                   "miser_cache_format"};
            const char *want[5] = {id->size, id->mtime, id->hash, prec, FORMAT_VERSION};
            ok = md != NULL;
            for (int k = 0; ok && k < 5; k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(md, keys[k]);
                ok = cJSON_IsString(v) && !strcmp(v->valuestring, want[k]);
            }
            cJSON_Delete(j);
        }
        miser_free(h);
    }
    close(fd);
    return ok;
}

/* ---- files ---- */

/* snprintf for paths: a truncated path is an error, not a silent surprise */
static int pathf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static miser_status mkdir_p(const char *dir)
{
    char p[PATH_MAX];
    if (pathf(p, sizeof p, "%s", dir)) return miser_error_set(MISER_ERR_IO, "cache path too long: %s", dir);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0755) && errno != EEXIST)
                return miser_error_set(MISER_ERR_IO, "%s: cannot create the cache directory: %s", p, strerror(errno));
            *s = c;
            if (!c) break;
        }
    }
    return MISER_OK;
}

static void remove_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[PATH_MAX];
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) {
            if (!pathf(p, sizeof p, "%s/%s", dir, e->d_name)) unlink(p);
        }
    closedir(d);
}

/* copy src to dst through a temporary file and rename */
static miser_status copy_atomic(const char *src, const char *dst)
{
    char tmp[PATH_MAX];
    if (pathf(tmp, sizeof tmp, "%s.tmp.XXXXXX", dst)) return miser_error_set(MISER_ERR_IO, "path too long: %s", dst);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return miser_error_set(MISER_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    int out = mkstemp(tmp);
    if (out < 0) {
        close(in);
        return miser_error_set(MISER_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    fchmod(out, 0644);
    char buf[65536];
    ssize_t n;
    miser_status st = MISER_OK;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n) {
            st = miser_error_set(MISER_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
            break;
        }
    if (n < 0 && !st) st = miser_error_set(MISER_ERR_IO, "%s: read failed: %s", src, strerror(errno));
    close(in);
    if (close(out) && !st) st = miser_error_set(MISER_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (!st && rename(tmp, dst)) st = miser_error_set(MISER_ERR_IO, "%s: cannot rename into place: %s", dst, strerror(errno));
    if (st) unlink(tmp);
    return st;
}

/* ---- conversion ---- */

/* Writes row-major source W [K][N] (dtype of t) transposed as dt (a block
 * type: q8_0, q4_0, q4_k) [N][K],
 * quantised along K, in chunks of R whole output rows (R*K <= CHUNK_ELEMS;
 * plan_layout guarantees K <= CHUNK_ELEMS). Each chunk is filled from
 * R-element segments of 32 source rows at a time, widened into `tmp`
 * (CHUNK_ELEMS floats: 32 segments of R <= CHUNK_ELEMS / 32 fit), then
 * copied 32 values per output row, so the transpose walks the chunk in
 * cache-line runs. `tmp` is free again before the chunk is quantised into it. */
static miser_status write_transposed(miser_st_writer *w, const miser_tensor_info *t, miser_dtype dt, float *fbuf,
                                     void *tmp)
{
    const int64_t K = t->shape[0], N = t->shape[1], R = CHUNK_ELEMS / K < N ? CHUNK_ELEMS / K : N;
    float *seg = tmp;
    miser_status st = MISER_OK;
    for (int64_t n0 = 0; n0 < N && !st; n0 += R) {
        const int64_t r = N - n0 < R ? N - n0 : R;
        for (int64_t kb = 0; kb < K; kb += MISER_Q8_0_BLOCK) {
            for (int j = 0; j < MISER_Q8_0_BLOCK; j++)
                miser_to_f32(t->dtype, t->data, (uint64_t)((kb + j) * N + n0), (uint64_t)r, seg + j * r);
            for (int64_t i = 0; i < r; i++)
                for (int j = 0; j < MISER_Q8_0_BLOCK; j++) fbuf[i * K + kb + j] = seg[j * r + i];
        }
        miser_quantize_blocks(dt, fbuf, r * K, tmp);
        st = miser_st_writer_write(w, tmp, miser_dtype_bytes(dt, (uint64_t)(r * K)));
    }
    return st;
}

static miser_status convert(const miser_model *m, miser_dtype prec, const char *out_file, const source_id *id,
                            const miser_precision_options *o)
{
    size_t n = miser_model_tensor_count(m);
    miser_st_entry *ent = miser_calloc(MISER_MEM_SCRATCH, n ? n : 1, sizeof *ent);
    out_layout *lay = miser_calloc(MISER_MEM_SCRATCH, n ? n : 1, sizeof *lay);
    float *fbuf = miser_malloc(MISER_MEM_SCRATCH, sizeof(float) * (size_t)CHUNK_ELEMS);
    uint8_t *obuf = miser_malloc(MISER_MEM_SCRATCH, sizeof(float) * (size_t)CHUNK_ELEMS);
    char *listed = NULL;
    miser_st_writer *w = NULL;
    miser_status st = MISER_OK;
    if (!ent || !lay || !fbuf || !obuf) {
        st = MISER_ERR_NOMEM;
        goto out;
    }
    uint64_t total = 0, done = 0;
    size_t list_len = 0;
    for (size_t i = 0; i < n; i++) {
        const miser_tensor_info *t = miser_model_tensor_at(m, i);
        plan_layout(t, prec, &lay[i]);
        ent[i].name = t->name;
        ent[i].ndim = lay[i].ndim;
        memcpy(ent[i].shape, lay[i].shape, sizeof ent[i].shape);
        ent[i].dtype = lay[i].dtype;
        total += t->nbytes;
        if (lay[i].listed) list_len += strlen(t->name) + 1;
    }
    /* "miser_transposed": the tensors stored as [N][K] (model.h) */
    if (!(listed = miser_malloc(MISER_MEM_SCRATCH, list_len + 1))) {
        st = MISER_ERR_NOMEM;
        goto out;
    }
    listed[0] = 0;
    for (size_t i = 0, at = 0; i < n; i++)
        if (lay[i].listed) {
            const char *nm = miser_model_tensor_at(m, i)->name;
            size_t l = strlen(nm);
            if (at) listed[at++] = ',';
            memcpy(listed + at, nm, l + 1);
            at += l;
        }
    const char *meta[] = {"miser_source_size", id->size, "miser_source_mtime_ns", id->mtime,
                          "miser_source_hash", id->hash, "miser_precision", miser_dtype_name(prec),
                          "miser_cache_format", FORMAT_VERSION, "miser_transposed", listed};
    if ((st = miser_st_writer_open(out_file, ent, n, meta, listed[0] ? 6 : 5, &w))) goto out;
    for (size_t i = 0; i < n && !st; i++) {
        const miser_tensor_info *t = miser_model_tensor_at(m, i);
        int64_t nel = 1;
        for (int d = 0; d < t->ndim; d++) nel *= t->shape[d];
        /* elements are walked in stored order: a source stored transposed
         * keeps that layout (lay[i].shape), so its stored rows are whole */
        int64_t row = lay[i].ndim ? lay[i].shape[lay[i].ndim - 1] : 1;
        if (row < 1) row = 1;
        int64_t rows_per = CHUNK_ELEMS / row > 0 ? CHUNK_ELEMS / row : 1;
        if (lay[i].transpose)
            st = write_transposed(w, t, lay[i].dtype, fbuf, obuf);
        else if (ent[i].dtype == t->dtype) { /* kept: copy the stored bytes */
            for (uint64_t off = 0; off < t->nbytes && !st;) {
                size_t c = t->nbytes - off < (4u << 20) ? (size_t)(t->nbytes - off) : (4u << 20);
                st = miser_st_writer_write(w, (const char *)t->data + off, c);
                off += c;
            }
        } else
            /* whole rows per chunk; a row longer than a chunk is split at a
             * multiple of 2^20, a block boundary as row is whole blocks */
            for (int64_t e0 = 0, step = row <= CHUNK_ELEMS ? rows_per * row : CHUNK_ELEMS; e0 < nel && !st; e0 += step) {
                int64_t cnt = nel - e0 < step ? nel - e0 : step;
                miser_to_f32(t->dtype, t->data, (uint64_t)e0, (uint64_t)cnt, fbuf);
                size_t bytes;
                if (blocked(ent[i].dtype)) {
                    miser_quantize_blocks(ent[i].dtype, fbuf, cnt, obuf);
                    bytes = miser_dtype_bytes(ent[i].dtype, (uint64_t)cnt);
                } else {
                    uint16_t *h = (uint16_t *)obuf;
                    for (int64_t k = 0; k < cnt; k++)
                        h[k] = ent[i].dtype == MISER_DTYPE_F16 ? miser_f32_to_f16(fbuf[k]) : miser_f32_to_bf16(fbuf[k]);
                    bytes = (size_t)cnt * 2;
                }
                st = miser_st_writer_write(w, obuf, bytes);
            }
        done += t->nbytes;
        if (!st && o && o->progress && o->progress(o->user, done, total))
            st = miser_error_set(MISER_ERR_INVALID, "%s: conversion cancelled", out_file);
    }
    if (!st) {
        st = miser_st_writer_close(w);
        w = NULL;
    }
out:
    miser_st_writer_abort(w);
    miser_free(ent);
    miser_free(lay);
    miser_free(listed);
    miser_free(fbuf);
    miser_free(obuf);
    return st;
}

miser_status miser_precision_prepare(const char *model_dir, miser_dtype prec, const miser_precision_options *o,
                                     char **out_dir, char *note, size_t note_cap, int *converted)
{
    *out_dir = NULL;
    if (note && note_cap) note[0] = 0;
    if (converted) *converted = 0;
    if (prec != MISER_DTYPE_F32 && prec != MISER_DTYPE_F16 && prec != MISER_DTYPE_BF16 && prec != MISER_DTYPE_Q8_0 &&
        prec != MISER_DTYPE_Q4_0 && prec != MISER_DTYPE_Q4_K)
        return miser_error_set(MISER_ERR_INVALID, "precision %s is not one of f32, f16, bf16, q8_0, q4_0, q4_k",
                               miser_dtype_name(prec));
    size_t dl = strlen(model_dir);
    if (dl > 5 && !strcmp(model_dir + dl - 5, ".gguf")) { /* a GGUF file runs as stored (docs/gguf.md) */
        miser_model *g = NULL;
        miser_status gst = miser_model_open(model_dir, &g); /* a bad file is the loader's error, as for a dir */
        miser_model_free(g);
        if (gst) return gst;
        if (!(*out_dir = miser_strdup(MISER_MEM_OTHER, model_dir))) return MISER_ERR_NOMEM;
        if (note && note_cap)
            snprintf(note, note_cap, "%s: a GGUF file's weights are used as stored: --precision %s is not applied",
                     model_dir, miser_dtype_name(prec));
        return MISER_OK;
    }
    miser_model *m = NULL;
    miser_status st = miser_model_open(model_dir, &m);
    if (st) return st;
    /* what changes, and what is kept because it is already narrower */
    int changes = 0;
    miser_dtype kept = MISER_DTYPE_COUNT;
    for (size_t i = 0; i < miser_model_tensor_count(m); i++) {
        const miser_tensor_info *t = miser_model_tensor_at(m, i);
        out_layout lay;
        plan_layout(t, prec, &lay);
        miser_dtype to = lay.dtype;
        if (to != t->dtype || lay.transpose) changes = 1;
        else if (t->ndim >= 2 && t->dtype != prec && kept == MISER_DTYPE_COUNT) kept = t->dtype;
    }
    if (kept != MISER_DTYPE_COUNT && note && note_cap)
        snprintf(note, note_cap, "weights stored as %s are kept as %s: the precision hint never widens",
                 miser_dtype_name(kept), miser_dtype_name(kept));
    if (!changes) {
        miser_model_free(m);
        *out_dir = miser_strdup(MISER_MEM_OTHER, model_dir);
        return *out_dir ? MISER_OK : MISER_ERR_NOMEM;
    }
    char base[PATH_MAX], real[PATH_MAX], dir[PATH_MAX], file[PATH_MAX], cfg[PATH_MAX], dcfg[PATH_MAX];
    const char *env = getenv("MISER_CACHE_DIR"), *home = getenv("HOME");
    if (o && o->cache_dir) snprintf(base, sizeof base, "%s", o->cache_dir);
    else if (env && *env) snprintf(base, sizeof base, "%s", env);
    else snprintf(base, sizeof base, "%s/.cache/miser", home && *home ? home : "/tmp");
    if (!realpath(model_dir, real)) snprintf(real, sizeof real, "%s", model_dir);
    const char *bn = strrchr(real, '/');
    bn = bn && bn[1] ? bn + 1 : real;
    char safe[64];
    size_t k = 0;
    for (; bn[k] && k < sizeof safe - 1; k++) safe[k] = (bn[k] == '.' || bn[k] == '-' || bn[k] == '_' ||
                                                         (bn[k] >= '0' && bn[k] <= '9') || ((bn[k] | 32) >= 'a' && (bn[k] | 32) <= 'z'))
                                                            ? bn[k] : '_';
    safe[k] = 0;
    if (pathf(dir, sizeof dir, "%s/converted/%s-%016llx-%s", base, safe,
              (unsigned long long)fnv(0xcbf29ce484222325ull, real, strlen(real)), miser_dtype_name(prec)) ||
        pathf(file, sizeof file, "%s/model.safetensors", dir) || pathf(dcfg, sizeof dcfg, "%s/config.json", dir) ||
        pathf(cfg, sizeof cfg, "%s/config.json", real)) {
        st = miser_error_set(MISER_ERR_IO, "cache path too long under %s", base);
        goto out;
    }
    source_id id;
    if ((st = identify(model_dir, m, &id))) goto out;
    struct stat sb;
    int exists = stat(file, &sb) == 0;
    if (exists && cache_matches(file, &id, miser_dtype_name(prec)) && stat(dcfg, &sb) == 0) goto done;
    if (exists && note && note_cap) {
        size_t l = strlen(note);
        snprintf(note + l, note_cap - l, "%sconverted-weights cache %s no longer matches its source: rebuilt",
                 l ? "; " : "", dir);
    }
    if ((st = mkdir_p(dir))) goto out;
    remove_temporaries(dir);
    if ((st = copy_atomic(cfg, dcfg))) goto out;
    if ((st = convert(m, prec, file, &id, o))) goto out;
    if (converted) *converted = 1;
done:
    *out_dir = miser_strdup(MISER_MEM_OTHER, dir);
    if (!*out_dir) st = MISER_ERR_NOMEM;
out:
    miser_model_free(m);
    return st;
}
