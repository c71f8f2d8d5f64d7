/* GGUF reader (include/miser/gguf.h): one bounds-checked pass over the
 * header, the metadata and the tensor infos, then the layout checks of the
 * data section (alignment, ranges, overlaps). Every count is bounded by the
 * bytes left before anything is allocated from it, so a lying header costs
 * neither time nor memory. What survives the parse is the kv and tensor
 * arrays and one blob of NUL-terminated keys and names; values and weights
 * stay in the (read-only) mapping. */
#include "miser/gguf.h"

#include "miser/alloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 8
#define MAX_NAME 65535 /* ggml's GGUF_MAX_STRING? no limit in the spec; names longer than this are lies */

/* ggml_type_traits: block size and bytes per block, by type id (0 = unknown
 * or removed id). From ggml.c's type_traits table. */
static const struct {
    const char *name;
    uint32_t blck, size;
} k_types[] = {
    [0] = {"f32", 1, 4},        [1] = {"f16", 1, 2},        [2] = {"q4_0", 32, 18},     [3] = {"q4_1", 32, 20},
    [6] = {"q5_0", 32, 22},     [7] = {"q5_1", 32, 24},     [8] = {"q8_0", 32, 34},     [9] = {"q8_1", 32, 36},
    [10] = {"q2_K", 256, 84},   [11] = {"q3_K", 256, 110},  [12] = {"q4_K", 256, 144},  [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210},  [15] = {"q8_K", 256, 292},  [16] = {"iq2_xxs", 256, 66}, [17] = {"iq2_xs", 256, 74},
    [18] = {"iq3_xxs", 256, 98}, [19] = {"iq1_s", 256, 50}, [20] = {"iq4_nl", 32, 18},  [21] = {"iq3_s", 256, 110},
    [22] = {"iq2_s", 256, 82},  [23] = {"iq4_xs", 256, 136}, [24] = {"i8", 1, 1},       [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},       [27] = {"i64", 1, 8},       [28] = {"f64", 1, 8},       [29] = {"iq1_m", 256, 56},
    [30] = {"bf16", 1, 2},      [34] = {"tq1_0", 256, 54},  [35] = {"tq2_0", 256, 66},  [39] = {"mxfp4", 32, 17},
};
#define N_TYPES (sizeof k_types / sizeof k_types[0])

const char *miser_ggml_type_name(uint32_t type)
{
    static _Thread_local char buf[24];
    if (type < N_TYPES && k_types[type].name) return k_types[type].name;
    snprintf(buf, sizeof buf, "type %u", type);
    return buf;
}

static miser_dtype to_dtype(uint32_t type)
{
    switch (type) {
    case MISER_GGML_F32: return MISER_DTYPE_F32;
    case MISER_GGML_F16: return MISER_DTYPE_F16;
    case MISER_GGML_BF16: return MISER_DTYPE_BF16;
    case MISER_GGML_Q8_0: return MISER_DTYPE_Q8_0;
    case MISER_GGML_Q4_0: return MISER_DTYPE_Q4_0;
    case MISER_GGML_Q4_K: return MISER_DTYPE_Q4_K;
    case MISER_GGML_Q6_K: return MISER_DTYPE_Q6_K;
    default: return MISER_DTYPE_COUNT;
    }
}

const char *miser_gguf_type_name(miser_gguf_type t)
{
    static const char *const n[] = {"uint8", "int8",  "uint16", "int16", "uint32", "int32",  "float32",
                                    "bool",  "string", "array", "uint64", "int64", "float64"};
    return (unsigned)t < MISER_GGUF_TYPE_COUNT ? n[t] : "invalid type";
}

static const unsigned k_scalar_size[MISER_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* ---- a bounds-checked cursor ------------------------------------------------ */

typedef struct {
    const unsigned char *p;
    size_t size, pos;
    const char *label;
    char what[160]; /* where we are, for messages */
} cursor;

static uint64_t rd(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;) v = v << 8 | p[i];
    return v;
}

static miser_status short_read(cursor *c, const char *item)
{
    return miser_error_set(MISER_ERR_FORMAT, "%s: truncated: %s%s%s ends past the end of the file (%zu bytes)",
                           c->label, item, c->what[0] ? " of " : "", c->what, c->size);
}

static miser_status get(cursor *c, unsigned n, const char *item, uint64_t *out)
{
    if (c->size - c->pos < n) return short_read(c, item);
    *out = rd(c->p + c->pos, n);
    c->pos += n;
    return MISER_OK;
}

/* A string: u64 length then bytes; *s points into the buffer. */
static miser_status get_str(cursor *c, const char *item, const unsigned char **s, uint64_t *len)
{
    miser_status st = get(c, 8, item, len);
    if (st) return st;
    if (*len > c->size - c->pos)
        return miser_error_set(MISER_ERR_FORMAT, "%s: %s%s%s says %llu bytes but only %zu remain in the file",
                               c->label, item, c->what[0] ? " of " : "", c->what, (unsigned long long)*len,
                               c->size - c->pos);
    *s = c->p + c->pos;
    c->pos += (size_t)*len;
    return MISER_OK;
}

/* Skip (validating) one value of type t; depth counts array nesting. */
static miser_status skip_value(cursor *c, uint32_t t, int depth)
{
    if (t >= MISER_GGUF_TYPE_COUNT)
        return miser_error_set(MISER_ERR_FORMAT, "%s: %s has value type %u, not a GGUF type (0..12)", c->label,
                               c->what, t);
    if (t == MISER_GGUF_STRING) {
        const unsigned char *s;
        uint64_t n = 0;
        return get_str(c, "string", &s, &n);
    }
    if (t == MISER_GGUF_ARRAY) {
        if (depth >= MAX_DEPTH)
            return miser_error_set(MISER_ERR_FORMAT, "%s: %s nests arrays more than %d deep", c->label, c->what,
                                   MAX_DEPTH);
        uint64_t et = 0, n = 0;
        miser_status st;
        if ((st = get(c, 4, "array element type", &et)) || (st = get(c, 8, "array length", &n))) return st;
        if (et >= MISER_GGUF_TYPE_COUNT)
            return miser_error_set(MISER_ERR_FORMAT, "%s: %s is an array of type %llu, not a GGUF type (0..12)",
                                   c->label, c->what, (unsigned long long)et);
        /* the smallest element: a scalar's size, 8 for a string, 12 for an array */
        uint64_t min = et == MISER_GGUF_STRING ? 8 : et == MISER_GGUF_ARRAY ? 12 : k_scalar_size[et];
        if (n > (c->size - c->pos) / min)
            return miser_error_set(MISER_ERR_FORMAT, "%s: %s says %llu %s elements, more than the %zu bytes left "
                                   "can hold", c->label, c->what, (unsigned long long)n,
                                   miser_gguf_type_name((miser_gguf_type)et), c->size - c->pos);
        if (et != MISER_GGUF_STRING && et != MISER_GGUF_ARRAY) {
            c->pos += (size_t)(n * min);
            if (et == MISER_GGUF_BOOL)
                for (uint64_t i = 0; i < n; i++)
                    if (c->p[c->pos - n + i] > 1)
                        return miser_error_set(MISER_ERR_FORMAT, "%s: %s: bool element %llu is %u (0 or 1)",
                                               c->label, c->what, (unsigned long long)i, c->p[c->pos - n + i]);
            return MISER_OK;
        }
        for (uint64_t i = 0; i < n; i++)
            if ((st = skip_value(c, (uint32_t)et, depth + 1))) return st;
        return MISER_OK;
    }
    uint64_t v = 0;
    miser_status st = get(c, k_scalar_size[t], miser_gguf_type_name((miser_gguf_type)t), &v);
    if (!st && t == MISER_GGUF_BOOL && v > 1)
        return miser_error_set(MISER_ERR_FORMAT, "%s: %s is a bool of value %llu (0 or 1)", c->label, c->what,
                               (unsigned long long)v);
    return st;
}

static void decode_scalar(miser_gguf_kv *kv, const unsigned char *p)
{
    uint64_t v = rd(p, k_scalar_size[kv->type]);
    switch (kv->type) {
    case MISER_GGUF_INT8: kv->i = (int8_t)v; break;
    case MISER_GGUF_INT16: kv->i = (int16_t)v; break;
    case MISER_GGUF_INT32: kv->i = (int32_t)v; break;
    case MISER_GGUF_INT64: kv->i = (int64_t)v; break;
    case MISER_GGUF_FLOAT32: {
        float f;
        uint32_t b = (uint32_t)v;
        memcpy(&f, &b, 4);
        kv->f = f;
        break;
    }
    case MISER_GGUF_FLOAT64: memcpy(&kv->f, &v, 8); break;
    default: kv->u = v; break;
    }
}

double miser_gguf_arr_f64(const miser_gguf_kv *a, uint64_t i)
{
    miser_gguf_kv t = {.type = a->elem};
    decode_scalar(&t, a->data + i * k_scalar_size[a->elem]);
    return t.type == MISER_GGUF_FLOAT32 || t.type == MISER_GGUF_FLOAT64 ? t.f
           : (t.type == MISER_GGUF_INT8 || t.type == MISER_GGUF_INT16 || t.type == MISER_GGUF_INT32 ||
              t.type == MISER_GGUF_INT64)
               ? (double)t.i
               : (double)t.u;
}

int64_t miser_gguf_arr_i64(const miser_gguf_kv *a, uint64_t i)
{
    miser_gguf_kv t = {.type = a->elem};
    decode_scalar(&t, a->data + i * k_scalar_size[a->elem]);
    return t.type == MISER_GGUF_FLOAT32 || t.type == MISER_GGUF_FLOAT64 ? (int64_t)t.f
           : (t.type == MISER_GGUF_INT8 || t.type == MISER_GGUF_INT16 || t.type == MISER_GGUF_INT32 ||
              t.type == MISER_GGUF_INT64)
               ? t.i
               : (int64_t)t.u;
}

static int name_ok(const unsigned char *s, uint64_t n)
{
    if (n == 0 || n > MAX_NAME) return 0;
    for (uint64_t i = 0; i < n; i++)
        if (s[i] == 0) return 0;
    return 1;
}

static int cmp_off(const void *a, const void *b)
{
    const miser_gguf_tensor *x = *(const miser_gguf_tensor *const *)a, *y = *(const miser_gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

typedef struct {
    const char *s;
    size_t i;
} name_ref;

static int cmp_name(const void *a, const void *b) { return strcmp(((const name_ref *)a)->s, ((const name_ref *)b)->s); }

/* Duplicate check over n names: the first duplicate, or NULL. */
static const char *first_dup(const char *const *names, size_t stride_bytes, size_t n, miser_status *st)
{
    *st = MISER_OK;
    if (n < 2) return NULL;
    name_ref *r = miser_malloc(MISER_MEM_SCRATCH, n * sizeof *r);
    if (!r) {
        *st = MISER_ERR_NOMEM;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) r[i] = (name_ref){*(const char *const *)((const char *)names + i * stride_bytes), i};
    qsort(r, n, sizeof *r, cmp_name);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(r[i - 1].s, r[i].s)) dup = r[i].s;
    miser_free(r);
    return dup;
}

miser_status miser_gguf_parse(const void *buf, size_t size, const char *label, miser_gguf_file *out)
{
    memset(out, 0, sizeof *out);
    cursor c = {.p = buf, .size = size, .label = label};
    miser_status st;
    uint64_t version = 0, n_t = 0, n_kv = 0;
    if (size < 4 || memcmp(buf, "GGUF", 4))
        return miser_error_set(MISER_ERR_FORMAT, "%s: not a GGUF file (no \"GGUF\" magic)", label);
    c.pos = 4;
    if ((st = get(&c, 4, "version", &version))) return st;
    if (version != 2 && version != 3) {
        if (version == 0x02000000u || version == 0x03000000u)
            return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: a big-endian GGUF file (miser reads little-endian)",
                                   label);
        return miser_error_set(version == 1 ? MISER_ERR_UNSUPPORTED : MISER_ERR_FORMAT,
                               "%s: GGUF version %llu (miser reads versions 2 and 3)", label,
                               (unsigned long long)version);
    }
    if ((st = get(&c, 8, "tensor count", &n_t)) || (st = get(&c, 8, "metadata count", &n_kv))) return st;
    /* a key-value pair is at least 8 + 1 + 4 + 1 bytes, a tensor info 8 + 1 + 4 + 8 + 4 + 8 */
    if (n_kv > (size - c.pos) / 14)
        return miser_error_set(MISER_ERR_FORMAT, "%s: header says %llu metadata entries, more than the file's %zu "
                               "bytes can hold", label, (unsigned long long)n_kv, size);
    if (n_t > (size - c.pos) / 33)
        return miser_error_set(MISER_ERR_FORMAT, "%s: header says %llu tensors, more than the file's %zu bytes "
                               "can hold", label, (unsigned long long)n_t, size);
    out->version = (uint32_t)version;
    out->n_kv = (size_t)n_kv;
    out->n_tensors = (size_t)n_t;
    out->path = miser_strdup(MISER_MEM_OTHER, label);
    out->kv = miser_calloc(MISER_MEM_OTHER, n_kv ? n_kv : 1, sizeof *out->kv);
    out->tensors = miser_calloc(MISER_MEM_OTHER, n_t ? n_t : 1, sizeof *out->tensors);
    if (!out->path || !out->kv || !out->tensors) {
        st = MISER_ERR_NOMEM;
        goto fail;
    }

    /* pass 1: metadata; names are collected as (pointer, length) in the
     * buffer and copied into one blob at the end */
    size_t blob = 0;
    const unsigned char **kname = miser_calloc(MISER_MEM_SCRATCH, n_kv + n_t ? n_kv + n_t : 1, sizeof *kname);
    uint64_t *klen = miser_calloc(MISER_MEM_SCRATCH, n_kv + n_t ? n_kv + n_t : 1, sizeof *klen);
    if (!kname || !klen) {
        miser_free(kname);
        miser_free(klen);
        st = MISER_ERR_NOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n_kv; i++) {
        miser_gguf_kv *kv = &out->kv[i];
        snprintf(c.what, sizeof c.what, "metadata entry %zu", i);
        if ((st = get_str(&c, "key", &kname[i], &klen[i]))) goto fail_names;
        if (!name_ok(kname[i], klen[i])) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: metadata entry %zu has an empty key, one with a NUL byte or "
                                 "one of %llu bytes", label, i, (unsigned long long)klen[i]);
            goto fail_names;
        }
        snprintf(c.what, sizeof c.what, "key '%.*s'", (int)(klen[i] > 80 ? 80 : klen[i]), (const char *)kname[i]);
        blob += (size_t)klen[i] + 1;
        uint64_t t = 0;
        if ((st = get(&c, 4, "value type", &t))) goto fail_names;
        if (t >= MISER_GGUF_TYPE_COUNT) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: %s has value type %llu, not a GGUF type (0..12)", label,
                                 c.what, (unsigned long long)t);
            goto fail_names;
        }
        kv->type = (miser_gguf_type)t;
        size_t at = c.pos;
        if ((st = skip_value(&c, (uint32_t)t, 0))) goto fail_names;
        if (t == MISER_GGUF_STRING) {
            kv->n = rd(c.p + at, 8);
            kv->data = c.p + at + 8;
        } else if (t == MISER_GGUF_ARRAY) {
            kv->elem = (miser_gguf_type)rd(c.p + at, 4);
            kv->n = rd(c.p + at + 4, 8);
            kv->data = c.p + at + 12;
        } else
            decode_scalar(kv, c.p + at);
    }

    /* pass 2: tensor infos */
    for (size_t i = 0; i < n_t; i++) {
        miser_gguf_tensor *t = &out->tensors[i];
        size_t k = n_kv + i;
        snprintf(c.what, sizeof c.what, "tensor info %zu", i);
        if ((st = get_str(&c, "name", &kname[k], &klen[k]))) goto fail_names;
        if (!name_ok(kname[k], klen[k])) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: tensor info %zu has an empty name, one with a NUL byte or "
                                 "one of %llu bytes", label, i, (unsigned long long)klen[k]);
            goto fail_names;
        }
        blob += (size_t)klen[k] + 1;
        snprintf(c.what, sizeof c.what, "tensor '%.*s'", (int)(klen[k] > 80 ? 80 : klen[k]), (const char *)kname[k]);
        uint64_t nd = 0, type = 0, off = 0;
        if ((st = get(&c, 4, "n_dims", &nd))) goto fail_names;
        if (nd < 1 || nd > 4) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: %s has %llu dimensions (1 to 4)", label, c.what,
                                 (unsigned long long)nd);
            goto fail_names;
        }
        t->n_dims = (int32_t)nd;
        uint64_t numel = 1;
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint64_t d = 0; d < nd; d++) {
            uint64_t v = 0;
            if ((st = get(&c, 8, "dimension", &v))) goto fail_names;
            if (v < 1 || v > (uint64_t)INT64_MAX || numel > (uint64_t)INT64_MAX / v) {
                st = miser_error_set(MISER_ERR_FORMAT, "%s: %s: dimension %llu is %llu (zero, or the element count "
                                     "overflows)", label, c.what, (unsigned long long)d, (unsigned long long)v);
                goto fail_names;
            }
            t->ne[d] = (int64_t)v;
            numel *= v;
        }
        if ((st = get(&c, 4, "type", &type)) || (st = get(&c, 8, "offset", &off))) goto fail_names;
        if (type >= N_TYPES || !k_types[type].name) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: %s has type %llu, not a ggml tensor type", label, c.what,
                                 (unsigned long long)type);
            goto fail_names;
        }
        t->type = (uint32_t)type;
        t->dtype = to_dtype(t->type);
        t->offset = off;
        const uint64_t bl = k_types[type].blck, bs = k_types[type].size;
        if ((uint64_t)t->ne[0] % bl) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: %s: %s needs ne[0] a multiple of %llu, got %lld", label,
                                 c.what, k_types[type].name, (unsigned long long)bl, (long long)t->ne[0]);
            goto fail_names;
        }
        if (numel / bl > (uint64_t)size / bs) { /* cannot fit: the range check below would too */
            st = miser_error_set(MISER_ERR_FORMAT, "%s: %s: %llu %s elements are more than the file's %zu bytes",
                                 label, c.what, (unsigned long long)numel, k_types[type].name, size);
            goto fail_names;
        }
        t->nbytes = numel / bl * bs;
    }
    c.what[0] = 0;

    /* names into one blob */
    out->names = miser_malloc(MISER_MEM_OTHER, blob ? blob : 1);
    if (!out->names) {
        st = MISER_ERR_NOMEM;
        goto fail_names;
    }
    {
        char *w = out->names;
        for (size_t i = 0; i < n_kv + n_t; i++) {
            memcpy(w, kname[i], (size_t)klen[i]);
            w[klen[i]] = 0;
            if (i < n_kv) out->kv[i].key = w;
            else out->tensors[i - n_kv].name = w;
            w += klen[i] + 1;
        }
    }
    miser_free(kname);
    miser_free(klen);
    kname = NULL;

    const char *dup = first_dup(&out->kv[0].key, sizeof *out->kv, out->n_kv, &st);
    if (st) goto fail;
    if (dup) {
        st = miser_error_set(MISER_ERR_FORMAT, "%s: metadata key '%.80s' appears twice", label, dup);
        goto fail;
    }
    dup = first_dup(&out->tensors[0].name, sizeof *out->tensors, out->n_tensors, &st);
    if (st) goto fail;
    if (dup) {
        st = miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%.80s' appears twice", label, dup);
        goto fail;
    }

    /* general.alignment */
    out->alignment = 32;
    const miser_gguf_kv *al = miser_gguf_find(out, "general.alignment");
    if (al) {
        if (al->type != MISER_GGUF_UINT32) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: general.alignment is %s, expected uint32", label,
                                 miser_gguf_type_name(al->type));
            goto fail;
        }
        if (al->u == 0 || (al->u & (al->u - 1)) || al->u > (1u << 20)) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: general.alignment is %llu, not a power of two up to 1 MiB",
                                 label, (unsigned long long)al->u);
            goto fail;
        }
        out->alignment = al->u;
    }
    {
        uint64_t d = ((uint64_t)c.pos + out->alignment - 1) / out->alignment * out->alignment;
        if (n_t && d > size) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: truncated: the data section (at byte %llu) starts past the "
                                 "end of the file (%zu bytes)", label, (unsigned long long)d, size);
            goto fail;
        }
        out->data_offset = d > size ? size : d;
    }
    const uint64_t data_size = size - out->data_offset;

    /* tensor ranges: aligned, inside the data section, not overlapping */
    if (n_t) {
        const miser_gguf_tensor **by = miser_malloc(MISER_MEM_SCRATCH, n_t * sizeof *by);
        if (!by) {
            st = MISER_ERR_NOMEM;
            goto fail;
        }
        for (size_t i = 0; i < n_t; i++) {
            const miser_gguf_tensor *t = &out->tensors[i];
            by[i] = t;
            if (t->offset % out->alignment) {
                st = miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%.80s': offset %llu is not a multiple of the "
                                     "alignment %llu", label, t->name, (unsigned long long)t->offset,
                                     (unsigned long long)out->alignment);
                break;
            }
            if (t->offset > data_size || t->nbytes > data_size - t->offset) {
                st = miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%.80s': bytes %llu..%llu of the data section are "
                                     "past its end (%llu bytes; truncated file?)", label, t->name,
                                     (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes),
                                     (unsigned long long)data_size);
                break;
            }
        }
        if (!st) {
            qsort(by, n_t, sizeof *by, cmp_off);
            for (size_t i = 1; i < n_t; i++)
                if (by[i - 1]->offset + by[i - 1]->nbytes > by[i]->offset) {
                    st = miser_error_set(MISER_ERR_FORMAT, "%s: tensors '%.80s' and '%.80s' overlap in the data "
                                         "section", label, by[i - 1]->name, by[i]->name);
                    break;
                }
        }
        miser_free(by);
        if (st) goto fail;
    }
    out->map = buf;
    out->map_size = size;
    return MISER_OK;

fail_names:
    miser_free(kname);
    miser_free(klen);
fail:
    miser_gguf_release(out);
    return st;
}

void miser_gguf_release(miser_gguf_file *f)
{
    if (!f) return;
    miser_free(f->path);
    miser_free(f->kv);
    miser_free(f->tensors);
    miser_free(f->names);
    memset(f, 0, sizeof *f);
}

miser_status miser_gguf_open(const char *path, miser_gguf_file **out)
{
    *out = NULL;
    miser_gguf_file *f = miser_calloc(MISER_MEM_OTHER, 1, sizeof *f);
    if (!f) return MISER_ERR_NOMEM;
    miser_mapping mp = {0};
    miser_status st = miser_file_map(path, 4, MISER_MEM_WEIGHTS, &mp);
    if (st) {
        miser_free(f);
        return st;
    }
    if ((st = miser_gguf_parse(mp.data, mp.size, path, f))) {
        miser_file_unmap(&mp, MISER_MEM_WEIGHTS);
        miser_free(f);
        return st;
    }
    f->mapped = 1;
    *out = f;
    return MISER_OK;
}

void miser_gguf_close(miser_gguf_file *f)
{
    if (!f) return;
    if (f->mapped) {
        miser_mapping mp = {.data = f->map, .size = f->map_size};
        miser_file_unmap(&mp, MISER_MEM_WEIGHTS);
    }
    miser_gguf_release(f);
    miser_free(f);
}

const miser_gguf_kv *miser_gguf_find(const miser_gguf_file *f, const char *key)
{
    for (size_t i = 0; f && i < f->n_kv; i++)
        if (!strcmp(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const miser_gguf_tensor *miser_gguf_find_tensor(const miser_gguf_file *f, const char *name)
{
    for (size_t i = 0; f && i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

static miser_status missing(const miser_gguf_file *f, const char *key, int *found)
{
    if (found) {
        *found = 0;
        return MISER_OK;
    }
    return miser_error_set(MISER_ERR_FORMAT, "%s: metadata key %s is missing", f->path, key);
}

static miser_status wrong(const miser_gguf_file *f, const miser_gguf_kv *kv, const char *want)
{
    return miser_error_set(MISER_ERR_FORMAT, "%s: metadata key %s is %s%s%s, expected %s", f->path, kv->key,
                           kv->type == MISER_GGUF_ARRAY ? "an array of " : "",
                           miser_gguf_type_name(kv->type == MISER_GGUF_ARRAY ? kv->elem : kv->type),
                           kv->type == MISER_GGUF_ARRAY ? "" : "", want);
}

miser_status miser_gguf_get_int(const miser_gguf_file *f, const char *key, int64_t lo, int64_t hi, int *found,
                                int64_t *out)
{
    const miser_gguf_kv *kv = miser_gguf_find(f, key);
    if (!kv) return missing(f, key, found);
    if (found) *found = 1;
    int64_t v;
    switch (kv->type) {
    case MISER_GGUF_UINT8: case MISER_GGUF_UINT16: case MISER_GGUF_UINT32: case MISER_GGUF_UINT64:
        if (kv->u > (uint64_t)INT64_MAX) goto range;
        v = (int64_t)kv->u;
        break;
    case MISER_GGUF_INT8: case MISER_GGUF_INT16: case MISER_GGUF_INT32: case MISER_GGUF_INT64: v = kv->i; break;
    default: return wrong(f, kv, "an integer");
    }
    if (v < lo || v > hi) {
    range:
        return miser_error_set(MISER_ERR_FORMAT, "%s: metadata key %s = %lld is outside %lld..%lld", f->path, key,
                               kv->type <= MISER_GGUF_UINT64 && kv->type != MISER_GGUF_INT64 ? (long long)kv->u
                                                                                             : (long long)kv->i,
                               (long long)lo, (long long)hi);
    }
    *out = v;
    return MISER_OK;
}

miser_status miser_gguf_get_float(const miser_gguf_file *f, const char *key, int *found, double *out)
{
    const miser_gguf_kv *kv = miser_gguf_find(f, key);
    if (!kv) return missing(f, key, found);
    if (found) *found = 1;
    if (kv->type != MISER_GGUF_FLOAT32 && kv->type != MISER_GGUF_FLOAT64) return wrong(f, kv, "a float");
    *out = kv->f;
    return MISER_OK;
}

miser_status miser_gguf_get_bool(const miser_gguf_file *f, const char *key, int *found, int *out)
{
    const miser_gguf_kv *kv = miser_gguf_find(f, key);
    if (!kv) return missing(f, key, found);
    if (found) *found = 1;
    if (kv->type != MISER_GGUF_BOOL) return wrong(f, kv, "a bool");
    *out = kv->u != 0;
    return MISER_OK;
}

miser_status miser_gguf_get_str(const miser_gguf_file *f, const char *key, int *found, const char **s, size_t *len)
{
    const miser_gguf_kv *kv = miser_gguf_find(f, key);
    if (!kv) return missing(f, key, found);
    if (found) *found = 1;
    if (kv->type != MISER_GGUF_STRING) return wrong(f, kv, "a string");
    *s = (const char *)kv->data;
    *len = (size_t)kv->n;
    return MISER_OK;
}

miser_status miser_gguf_get_arr(const miser_gguf_file *f, const char *key, miser_gguf_type elem, int *found,
                                const miser_gguf_kv **out)
{
    const miser_gguf_kv *kv = miser_gguf_find(f, key);
    if (!kv) return missing(f, key, found);
    if (found) *found = 1;
    if (kv->type != MISER_GGUF_ARRAY || (elem != MISER_GGUF_TYPE_COUNT && kv->elem != elem)) {
        char want[48];
        snprintf(want, sizeof want, "an array of %s", elem == MISER_GGUF_TYPE_COUNT ? "values" : miser_gguf_type_name(elem));
        return wrong(f, kv, want);
    }
    *out = kv;
    return MISER_OK;
}
