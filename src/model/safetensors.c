/* Safetensors reader: strict validation of the JSON header (every range is
 * checked before anything reads a tensor) and read-only mapping of the file.
 * cJSON builds a short-lived tree of the header only; what survives the parse
 * is one tensor array and one name blob, so a 300-tensor checkpoint costs a
 * few tens of kilobytes of heap however large its weights are. */
#include "model/safetensors.h"

#include "miser/alloc.h"

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

/* Integers in JSON are doubles in cJSON: anything above 2^53 may have been
 * rounded, so it is refused rather than trusted. */
#define MAX_EXACT_INT 9007199254740992.0

/* Every dtype the safetensors format defines with a whole-byte element. Those
 * miser computes with map to a miser_dtype; the rest are MISER_DTYPE_COUNT
 * (accepted so unknown buffers such as a BOOL attn.bias can be skipped). */
static const struct {
    const char *name;
    unsigned size;
    miser_dtype dt;
} k_dtypes[] = {
    {"F32", 4, MISER_DTYPE_F32},   {"F16", 2, MISER_DTYPE_F16},   {"BF16", 2, MISER_DTYPE_BF16},
    {"I32", 4, MISER_DTYPE_I32},   {"F64", 8, MISER_DTYPE_COUNT}, {"I64", 8, MISER_DTYPE_COUNT},
    {"U64", 8, MISER_DTYPE_COUNT}, {"U32", 4, MISER_DTYPE_COUNT}, {"I16", 2, MISER_DTYPE_COUNT},
    {"U16", 2, MISER_DTYPE_COUNT}, {"I8", 1, MISER_DTYPE_COUNT},  {"U8", 1, MISER_DTYPE_COUNT},
    {"BOOL", 1, MISER_DTYPE_COUNT}, {"F8_E4M3", 1, MISER_DTYPE_COUNT},
    {"F8_E5M2", 1, MISER_DTYPE_COUNT}, {"F8_E8M0", 1, MISER_DTYPE_COUNT},
    /* miser's own extension for its converted-weights cache: ggml's Q8_0
     * blocks (34 bytes per 32 values along the last dimension); size 1 here
     * is only the alignment, the byte count is computed below */
    {"Q8_0", 1, MISER_DTYPE_Q8_0},
    /* and its 4-bit caches' ggml blocks (quant4.h; whole blocks along the
     * last dimension) */
    {"Q4_0", 1, MISER_DTYPE_Q4_0}, {"Q4_K", 1, MISER_DTYPE_Q4_K}, {"Q6_K", 1, MISER_DTYPE_Q6_K},
};

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void fmt_shape(char *buf, size_t cap, int32_t ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* A non-negative integral JSON number no larger than 2^53. */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d > MAX_EXACT_INT || d != floor(d)) return d < 0 && d == floor(d) ? -2 : -1;
    *out = (uint64_t)d;
    return 0;
}

static int cmp_begin(const void *a, const void *b)
{
    const miser_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const miser_st_tensor *)a)->name, ((const miser_st_tensor *)b)->name);
}

void miser_st_header_free(miser_st_header *h)
{
    if (!h) return;
    miser_free(h->tensors);
    miser_free(h->names);
    miser_free(h->transposed);
    memset(h, 0, sizeof *h);
}

/* Fill one record from its JSON entry. */
static miser_status parse_entry(const char *label, const cJSON *e, uint64_t data_offset,
                                uint64_t data_size, miser_st_tensor *t)
{
    const char *nm = t->name;
    if (!cJSON_IsObject(e))
        return miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", label, nm);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dt) || !dt->valuestring)
        return miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is missing or not a string",
                               label, nm);
    unsigned esize = 0;
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (!strcmp(dt->valuestring, k_dtypes[i].name)) {
            esize = k_dtypes[i].size;
            t->dtype = k_dtypes[i].dt;
            t->st_dtype = k_dtypes[i].name;
        }
    if (!esize)
        return miser_error_set(MISER_ERR_UNSUPPORTED,
                               "%s: tensor '%s': dtype '%.40s' is not supported (miser reads F32, F16, BF16)",
                               label, nm, dt->valuestring);

    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(sh))
        return miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%s': \"shape\" is missing or not an array",
                               label, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > MISER_MAX_DIMS)
        return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions (miser allows %d)",
                               label, nm, nd, MISER_MAX_DIMS);
    t->ndim = nd;
    uint64_t nelem = 1;
    int overflow = 0, i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        uint64_t v;
        int r = json_uint(d, &v);
        if (r == -2)
            return miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%s': negative dimension %.0f in shape",
                                   label, nm, d->valuedouble);
        if (r)
            return miser_error_set(MISER_ERR_FORMAT,
                                   "%s: tensor '%s': shape entry %d is not a non-negative integer",
                                   label, nm, i);
        t->shape[i] = (int64_t)v;
        overflow |= __builtin_mul_overflow(nelem, v, &nelem);
    }
    uint64_t nbytes = 0;
    overflow |= __builtin_mul_overflow(nelem, (uint64_t)esize, &nbytes);
    char sbuf[160];
    fmt_shape(sbuf, sizeof sbuf, t->ndim, t->shape);
    if (t->dtype < MISER_DTYPE_COUNT && miser_dtype_block(t->dtype) > 1) { /* Q8_0, Q4_0, Q4_K, Q6_K */
        const int64_t bl = miser_dtype_block(t->dtype);
        if (t->ndim < 1 || t->shape[t->ndim - 1] % bl)
            return miser_error_set(MISER_ERR_FORMAT,
                                   "%s: tensor '%s': %s shape %s needs a last dimension that is a multiple of %lld",
                                   label, nm, t->st_dtype, sbuf, (long long)bl);
        overflow |= __builtin_mul_overflow(nelem / (uint64_t)bl, (uint64_t)miser_dtype_block_bytes(t->dtype), &nbytes);
    }
    if (overflow)
        return miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%s': shape %s overflows 64 bits", label, nm,
                               sbuf);

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || json_uint(off->child, &t->begin) ||
        json_uint(off->child->next, &t->end))
        return miser_error_set(MISER_ERR_FORMAT,
                               "%s: tensor '%s': \"data_offsets\" is not an array of two non-negative integers",
                               label, nm);
    if (t->end < t->begin)
        return miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
                               label, nm, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end - t->begin != nbytes)
        return miser_error_set(MISER_ERR_FORMAT,
                               "%s: tensor '%s': shape %s of %s needs %llu bytes but data_offsets [%llu, %llu] "
                               "span %llu",
                               label, nm, sbuf, t->st_dtype, (unsigned long long)nbytes,
                               (unsigned long long)t->begin, (unsigned long long)t->end,
                               (unsigned long long)(t->end - t->begin));
    if (t->end > data_size)
        return miser_error_set(MISER_ERR_FORMAT,
                               "%s: tensor '%s': data_offsets [%llu, %llu] exceed the data section (%llu bytes)",
                               label, nm, (unsigned long long)t->begin, (unsigned long long)t->end,
                               (unsigned long long)data_size);
    /* Kernels read elements in place; a misaligned F32 would be undefined
     * behaviour. Writers pad the header to 8 bytes, so real files pass. */
    if (t->dtype != MISER_DTYPE_COUNT && (data_offset + t->begin) % esize)
        return miser_error_set(MISER_ERR_UNSUPPORTED,
                               "%s: tensor '%s': data at file offset %llu is not aligned to its %u-byte elements",
                               label, nm, (unsigned long long)(data_offset + t->begin), esize);
    return MISER_OK;
}

miser_status miser_st_parse(const void *buf, size_t size, const char *label, miser_st_header *out)
{
    memset(out, 0, sizeof *out);
    if (!label) label = "<safetensors>";
    const unsigned char *b = buf;
    if (!b || size < 8)
        return miser_error_set(MISER_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length",
                               label, b ? size : 0);
    uint64_t hlen = le64(b);
    if (hlen > size - 8)
        return miser_error_set(MISER_ERR_FORMAT, "%s: header length %llu exceeds the file (%zu bytes)", label,
                               (unsigned long long)hlen, size);
    if (hlen < 2 || hlen > MISER_ST_MAX_HEADER)
        return miser_error_set(MISER_ERR_FORMAT, "%s: header length %llu is not plausible (2..%u)", label,
                               (unsigned long long)hlen, MISER_ST_MAX_HEADER);
    const char *json = (const char *)b + 8, *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)hlen, &end, 0);
    if (!root)
        return miser_error_set(MISER_ERR_FORMAT, "%s: header is not valid JSON", label);
    miser_status st = MISER_OK;
    /* Writers pad the header with spaces; anything else after the JSON value
     * means the length field and the JSON disagree. */
    for (const char *p = end; p && p < json + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: header has unexpected bytes after its JSON (offset %zu)",
                                 label, (size_t)(p - (const char *)b));
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        st = miser_error_set(MISER_ERR_FORMAT, "%s: header JSON is not an object", label);
        goto done;
    }

    size_t n = 0, name_bytes = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: header entry without a name", label);
            goto done;
        }
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                st = miser_error_set(MISER_ERR_FORMAT, "%s: \"__metadata__\" is not an object", label);
                goto done;
            }
            const cJSON *tr = cJSON_GetObjectItemCaseSensitive(e, "miser_transposed");
            if (tr && (!cJSON_IsString(tr) || !tr->valuestring)) {
                st = miser_error_set(MISER_ERR_FORMAT, "%s: \"__metadata__\": \"miser_transposed\" is not a string",
                                     label);
                goto done;
            }
            if (tr && !out->transposed && !(out->transposed = miser_strdup(MISER_MEM_OTHER, tr->valuestring))) {
                st = MISER_ERR_NOMEM;
                goto done;
            }
            continue;
        }
        if (!e->string[0]) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: tensor with an empty name", label);
            goto done;
        }
        n++;
        name_bytes += strlen(e->string) + 1;
    }
    out->data_offset = 8 + hlen;
    out->data_size = (uint64_t)size - out->data_offset;
    out->tensors = miser_calloc(MISER_MEM_OTHER, n ? n : 1, sizeof *out->tensors);
    out->names = miser_malloc(MISER_MEM_OTHER, name_bytes ? name_bytes : 1);
    if (!out->tensors || !out->names) {
        st = MISER_ERR_NOMEM;
        goto done;
    }
    char *np = out->names;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        miser_st_tensor *t = &out->tensors[out->n_tensors++];
        size_t len = strlen(e->string) + 1;
        memcpy(np, e->string, len);
        t->name = np;
        np += len;
        st = parse_entry(label, e, out->data_offset, out->data_size, t);
        if (st) goto done;
    }

    /* Ranges must not overlap (empty tensors occupy nothing). */
    qsort(out->tensors, n, sizeof *out->tensors, cmp_begin);
    const miser_st_tensor *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        const miser_st_tensor *t = &out->tensors[i];
        if (t->begin == t->end) continue;
        if (prev && t->begin < prev->end) {
            st = miser_error_set(MISER_ERR_FORMAT,
                                 "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                                 label, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                                 prev->name, (unsigned long long)prev->begin, (unsigned long long)prev->end);
            goto done;
        }
        prev = t;
    }
    qsort(out->tensors, n, sizeof *out->tensors, cmp_name);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(out->tensors[i].name, out->tensors[i - 1].name)) {
            st = miser_error_set(MISER_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", label,
                                 out->tensors[i].name);
            goto done;
        }
done:
    cJSON_Delete(root);
    if (st) miser_st_header_free(out);
    return st;
}

const miser_st_tensor *miser_st_find(const miser_st_header *h, const char *name)
{
    size_t lo = 0, hi = h->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, h->tensors[mid].name);
        if (!c) return &h->tensors[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

miser_status miser_st_open(const char *path, miser_st_file **out)
{
    *out = NULL;
    miser_mapping mp;
    miser_status mst = miser_file_map(path, 8, MISER_MEM_WEIGHTS, &mp);
    if (mst) return mst;
    void *map = (void *)mp.data;
    size_t size = mp.size;

    miser_st_file *f = miser_calloc(MISER_MEM_OTHER, 1, sizeof *f);
    char *p = miser_strdup(MISER_MEM_OTHER, path);
    if (!f || !p) {
        miser_free(f);
        miser_free(p);
        miser_file_unmap(&mp, MISER_MEM_WEIGHTS);
        return MISER_ERR_NOMEM;
    }
    f->path = p;
    f->map = map;
    f->map_size = size;
    miser_status st = miser_st_parse(map, size, path, &f->hdr);
    if (st) {
        miser_file_unmap(&mp, MISER_MEM_WEIGHTS);
        miser_free(p);
        miser_free(f);
        return st;
    }
    *out = f;
    return MISER_OK;
}

void miser_st_close(miser_st_file *f)
{
    if (!f) return;
    munmap((void *)f->map, f->map_size);
    miser_mem_note_mapped(MISER_MEM_WEIGHTS, -(int64_t)f->map_size);
    miser_st_header_free(&f->hdr);
    miser_free(f->path);
    miser_free(f);
}
