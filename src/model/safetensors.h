/* Internal safetensors reader: validates a header held in memory and maps
 * files read-only. The model loader (model.c) builds its tensor table from
 * these records; the fuzz target calls miser_st_parse directly.
 *
 * File layout (https://github.com/huggingface/safetensors): an 8-byte little-
 * endian header length N, N bytes of JSON, then the data section. The JSON is
 * an object mapping tensor names to {"dtype", "shape", "data_offsets"} with
 * offsets relative to the data section, plus an optional "__metadata__" of
 * string values (miser reads one: "miser_transposed", see below). */
#ifndef MISER_MODEL_SAFETENSORS_H
#define MISER_MODEL_SAFETENSORS_H

#include "miser/core.h"
#include "miser/model.h"

/* Largest header accepted (the safetensors reference implementation's limit). */
#define MISER_ST_MAX_HEADER (100u * 1024u * 1024u)

/* One tensor record. `dtype` is MISER_DTYPE_COUNT for dtypes the format
 * defines but miser does not compute with (BOOL, U8, F64, ...): their byte
 * ranges are still validated so such buffers can be skipped safely. */
typedef struct miser_st_tensor {
    const char *name;       /* as stored (points into the header's name blob) */
    miser_dtype dtype;
    const char *st_dtype;   /* the file's dtype string, static storage */
    int32_t ndim;
    int64_t shape[MISER_MAX_DIMS];
    uint64_t begin, end;    /* byte range relative to the data section */
} miser_st_tensor;

/* A parsed header: tensors sorted by name (bytewise), names unique. */
typedef struct miser_st_header {
    miser_st_tensor *tensors;
    size_t n_tensors;
    char *names;            /* one blob holding every name */
    uint64_t data_offset;   /* 8 + header length: where the data section starts */
    uint64_t data_size;     /* bytes in the data section */
    /* "__metadata__"."miser_transposed" (miser's converted-weights cache):
     * comma-separated names, as stored, of 2-D tensors whose stored [N, K]
     * is the transpose of their logical [K, N]; NULL when absent. Owned. The
     * parser only copies it; miser_model_open checks the names. */
    char *transposed;
} miser_st_header;

/* Validate and parse the safetensors bytes in buf[0..size) (the whole file, or
 * at least its header: size is taken as the file size, so ranges are checked
 * against it). `label` names the file in messages. On success *out owns its
 * arrays (free with miser_st_header_free); on error *out is zeroed and the
 * status is MISER_ERR_FORMAT (malformed / lying file), MISER_ERR_UNSUPPORTED
 * (a dtype the format does not define or an unaligned tensor) or
 * MISER_ERR_NOMEM. Reads nothing outside buf. */
miser_status miser_st_parse(const void *buf, size_t size, const char *label, miser_st_header *out);
void miser_st_header_free(miser_st_header *h);

/* Binary search by stored name; NULL when absent. */
const miser_st_tensor *miser_st_find(const miser_st_header *h, const char *name);

/* A mapped file: the mapping is PROT_READ and lives until miser_st_close. */
typedef struct miser_st_file {
    char *path;
    const unsigned char *map;
    size_t map_size;
    miser_st_header hdr;
} miser_st_file;

/* Open, mmap and parse `path`. Errors: MISER_ERR_IO (open/stat/mmap, not a
 * regular file) or those of miser_st_parse; messages name the path. The
 * mapping is noted with miser_mem_note_mapped(MISER_MEM_WEIGHTS, ...). */
miser_status miser_st_open(const char *path, miser_st_file **out);
/* Unmap and free; NULL is a no-op. */
void miser_st_close(miser_st_file *f);

static inline const void *miser_st_data(const miser_st_file *f, const miser_st_tensor *t)
{
    return f->map + f->hdr.data_offset + t->begin;
}

#endif
