/* GGUF reader (ggml's file format, versions 2 and 3, little-endian): the
 * header, typed key-value metadata (every value type, nested arrays), the
 * tensor infos and the aligned data section, all validated before anything
 * reads a weight, the file mapped read-only and used in place.
 *
 * Layout (ggml docs/gguf.md): "GGUF" magic, u32 version, u64 tensor_count,
 * u64 kv_count; kv_count pairs of (string key, u32 value type, value);
 * tensor_count infos of (string name, u32 n_dims <= 4, u64 ne[n_dims],
 * u32 ggml type, u64 offset); padding to general.alignment (u32, default 32);
 * the data section, every tensor at an offset (relative to it) that is a
 * multiple of the alignment. A string is a u64 length and that many bytes
 * (no NUL); an array is a u32 element type, a u64 count and the elements.
 * ne[0] is the contiguous dimension: a weight matrix of ne = {K, N} is N
 * rows of K values, quantised types in blocks along K (ggml-common.h). */
#ifndef MISER_GGUF_H
#define MISER_GGUF_H

#include "miser/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum miser_gguf_type {
    MISER_GGUF_UINT8 = 0, MISER_GGUF_INT8 = 1, MISER_GGUF_UINT16 = 2, MISER_GGUF_INT16 = 3,
    MISER_GGUF_UINT32 = 4, MISER_GGUF_INT32 = 5, MISER_GGUF_FLOAT32 = 6, MISER_GGUF_BOOL = 7,
    MISER_GGUF_STRING = 8, MISER_GGUF_ARRAY = 9, MISER_GGUF_UINT64 = 10, MISER_GGUF_INT64 = 11,
    MISER_GGUF_FLOAT64 = 12, MISER_GGUF_TYPE_COUNT
} miser_gguf_type;

/* ggml's tensor type ids (ggml.h enum ggml_type) that miser computes with. */
enum {
    MISER_GGML_F32 = 0, MISER_GGML_F16 = 1, MISER_GGML_Q4_0 = 2, MISER_GGML_Q8_0 = 8,
    MISER_GGML_Q4_K = 12, MISER_GGML_Q6_K = 14, MISER_GGML_BF16 = 30
};

/* One metadata value. Scalars are decoded into `u`/`i`/`f` (by type:
 * unsigned and bool in u, signed in i, floats in f); a string is `str`/`len`
 * (pointing into the mapping, not NUL-terminated); an array is `elem` (its
 * element type), `n` elements starting at `data` in the mapping (walk string
 * and nested arrays with the iterators below). */
typedef struct miser_gguf_kv {
    const char *key;           /* NUL-terminated copy, owned by the file */
    miser_gguf_type type;
    miser_gguf_type elem;      /* arrays */
    uint64_t n;                /* arrays: element count; strings: byte length */
    const unsigned char *data; /* arrays: first element; strings: the bytes */
    uint64_t u;
    int64_t i;
    double f;
} miser_gguf_kv;

typedef struct miser_gguf_tensor {
    const char *name;      /* NUL-terminated copy, owned by the file */
    uint32_t type;         /* ggml type id */
    int32_t n_dims;
    int64_t ne[4];         /* ne[0] contiguous; unused dims are 1 */
    uint64_t offset;       /* relative to the data section */
    uint64_t nbytes;
    miser_dtype dtype;     /* MISER_DTYPE_COUNT when miser cannot compute with `type` */
} miser_gguf_tensor;

typedef struct miser_gguf_file {
    char *path;            /* label for messages (the path when opened from a file) */
    const unsigned char *map;
    size_t map_size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;  /* where the data section starts in the file */
    miser_gguf_kv *kv;     /* in file order, keys unique */
    size_t n_kv;
    miser_gguf_tensor *tensors; /* in file order, names unique */
    size_t n_tensors;
    char *names;           /* one blob holding every key and tensor name */
    int mapped;            /* map is ours (miser_gguf_open) */
} miser_gguf_file;

/* Validate and parse the GGUF bytes buf[0..size) (the whole file). `label`
 * names the file in messages. Everything is checked: magic, version (2 or
 * 3; big-endian files and version 1 are refused), counts against the bytes
 * left, string lengths, value types, nested array depth (<= 8), key and
 * tensor name uniqueness, general.alignment (u32, a power of two), n_dims
 * (1..4), dims (>= 1, product without overflow, ne[0] a multiple of the
 * type's block), known ggml type ids, offsets aligned, every tensor inside
 * the data section and no two overlapping. Tensor types miser does not
 * compute with are parsed (dtype MISER_DTYPE_COUNT). On success *out owns
 * its arrays and points into buf (free with miser_gguf_close, which does not
 * unmap buf unless miser_gguf_open mapped it). Errors: MISER_ERR_FORMAT with
 * one line "label: problem", MISER_ERR_UNSUPPORTED (version, endianness),
 * MISER_ERR_NOMEM. Reads nothing outside buf. */
miser_status miser_gguf_parse(const void *buf, size_t size, const char *label, miser_gguf_file *out);

/* Open, map read-only and parse `path` (errors name it). *out is NULL on
 * error. The mapping is recorded as MISER_MEM_WEIGHTS mapped bytes. */
miser_status miser_gguf_open(const char *path, miser_gguf_file **out);
/* Free a parsed file (and its mapping when miser_gguf_open made it); a
 * heap-allocated one from miser_gguf_open is freed too. NULL is a no-op. */
void miser_gguf_close(miser_gguf_file *f);
/* For a miser_gguf_parse'd struct on the stack: free its arrays only. */
void miser_gguf_release(miser_gguf_file *f);

const miser_gguf_kv *miser_gguf_find(const miser_gguf_file *f, const char *key);
const miser_gguf_tensor *miser_gguf_find_tensor(const miser_gguf_file *f, const char *name);
static inline const void *miser_gguf_data(const miser_gguf_file *f, const miser_gguf_tensor *t)
{
    return f->map + f->data_offset + t->offset;
}

/* Typed getters: MISER_OK and the value, MISER_ERR_FORMAT "label: key K is
 * <type>, expected ..." when the type is wrong, or `missing` (MISER_OK with
 * *found = 0 when found is non-NULL; else MISER_ERR_FORMAT "key K is
 * missing"). Integers accept any integer type whose value fits. */
miser_status miser_gguf_get_int(const miser_gguf_file *f, const char *key, int64_t lo, int64_t hi, int *found,
                                int64_t *out);
miser_status miser_gguf_get_float(const miser_gguf_file *f, const char *key, int *found, double *out);
miser_status miser_gguf_get_bool(const miser_gguf_file *f, const char *key, int *found, int *out);
/* A string value: pointer into the mapping and its length. */
miser_status miser_gguf_get_str(const miser_gguf_file *f, const char *key, int *found, const char **s, size_t *len);
/* An array of element type `elem` (MISER_GGUF_TYPE_COUNT: any); *kv is it. */
miser_status miser_gguf_get_arr(const miser_gguf_file *f, const char *key, miser_gguf_type elem, int *found,
                                const miser_gguf_kv **kv);

/* Walk a string array: *pos starts at arr->data; each call returns the next
 * string and advances *pos. Only for arrays that passed the parser. */
static inline void miser_gguf_next_str(const unsigned char **pos, const char **s, size_t *len)
{
    uint64_t n = 0;
    for (int b = 7; b >= 0; b--) n = n << 8 | (*pos)[b];
    *s = (const char *)*pos + 8;
    *len = (size_t)n;
    *pos += 8 + n;
}

/* Element i of a numeric array as double / int64 (validated arrays only). */
double miser_gguf_arr_f64(const miser_gguf_kv *arr, uint64_t i);
int64_t miser_gguf_arr_i64(const miser_gguf_kv *arr, uint64_t i);

/* The tokenizer of a GGUF file from its tokenizer.ggml.* keys
 * (src/tokenizer/gguf_vocab.c): model "gpt2" (byte-level BPE, the
 * pre-tokenizer regexes llama.cpp uses for tokenizer.ggml.pre: default,
 * gpt-2, llama-bpe, qwen2, smollm and their aliases; another name is
 * MISER_ERR_UNSUPPORTED) or "llama" (SentencePiece with scores, byte tokens,
 * space prefix); control / user-defined tokens, bos/eos/unk ids,
 * add_bos_token / add_eos_token. Errors name the file and key. */
struct miser_tokenizer;
miser_status miser_gguf_tokenizer(const miser_gguf_file *f, struct miser_tokenizer **out);
/* Open `path`, build its tokenizer, unmap. */
miser_status miser_tokenizer_open_gguf(const char *path, struct miser_tokenizer **out);

const char *miser_gguf_type_name(miser_gguf_type t);
/* ggml's name of a tensor type id ("q4_K", ...), "type N" when unknown. */
const char *miser_ggml_type_name(uint32_t type);

#ifdef __cplusplus
}
#endif
#endif
