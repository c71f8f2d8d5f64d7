/* miser core: status codes, thread-local error messages, dtypes, version.
 * Every library function that can fail returns a miser_status and leaves a
 * one-line human-readable message retrievable with miser_error_message(). */
#ifndef MISER_CORE_H
#define MISER_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MISER_VERSION_STRING "0.1.0"

typedef enum miser_status {
    MISER_OK = 0,
    MISER_ERR_NOMEM,       /* an allocation failed (or was made to fail) */
    MISER_ERR_IO,          /* open/read/mmap/write failed */
    MISER_ERR_FORMAT,      /* a file's content is malformed or lies about itself */
    MISER_ERR_INVALID,     /* a caller passed an invalid argument */
    MISER_ERR_UNSUPPORTED, /* valid, but not something miser implements */
    MISER_ERR_RANGE,       /* a value is outside what the model/config allows */
    MISER_ERR_INTERNAL     /* a broken invariant inside miser */
} miser_status;

/* Static name of a status ("out of memory", ...). Never NULL. */
const char *miser_status_str(miser_status st);

/* Record `st` with a printf-style message for the calling thread and return
 * `st`, so callers can write `return miser_error_set(MISER_ERR_IO, ...)`. */
miser_status miser_error_set(miser_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefix the current message with "prefix: " (adds context while unwinding). */
miser_status miser_error_prefix(miser_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The calling thread's last message; "" when none. Valid until the next set. */
const char *miser_error_message(void);
void miser_error_clear(void);

/* Element types of tensors. Q8_0 is ggml's block format: blocks of 32 values,
 * each an f16 scale followed by 32 int8 (34 bytes per block). */
typedef enum miser_dtype {
    MISER_DTYPE_F32 = 0,
    MISER_DTYPE_F16,
    MISER_DTYPE_BF16,
    MISER_DTYPE_Q8_0,
    MISER_DTYPE_I32,
    /* ggml's 4-bit and K-quant blocks, read in place from GGUF files (layouts
     * in src/kernels/quant4.h): Q4_0 32 values in 18 bytes, Q4_K 256 in 144,
     * Q6_K 256 in 210; blocks run along the stored rows like Q8_0's */
    MISER_DTYPE_Q4_0,
    MISER_DTYPE_Q4_K,
    MISER_DTYPE_Q6_K,
    MISER_DTYPE_COUNT
} miser_dtype;

#define MISER_Q8_0_BLOCK 32
#define MISER_Q8_0_BYTES 34

/* Elements per block (1 for f32/f16/bf16/i32) and bytes per block. */
int64_t miser_dtype_block(miser_dtype dt);
size_t miser_dtype_block_bytes(miser_dtype dt);

const char *miser_dtype_name(miser_dtype dt);
/* Parse "f32"/"F32"/"float32", "f16", "bf16", "q8_0", "i32". Returns 0 on success. */
int miser_dtype_parse(const char *s, miser_dtype *out);
/* Bytes needed for n elements (n a multiple of 32 for Q8_0); 0 on overflow. */
size_t miser_dtype_bytes(miser_dtype dt, uint64_t n);

float miser_f16_to_f32(uint16_t h);
uint16_t miser_f32_to_f16(float f);   /* round to nearest even */
float miser_bf16_to_f32(uint16_t h);
uint16_t miser_f32_to_bf16(float f);  /* round to nearest even, NaN kept NaN */

/* Convert n elements starting at element `start` of a dtype array to f32.
 * For Q8_0, start and n must be multiples of 32. */
void miser_to_f32(miser_dtype dt, const void *src, uint64_t start, uint64_t n, float *dst);

/* Monotonic clock in seconds (for durations). */
double miser_now_s(void);

/* A whole file mapped read-only. */
typedef struct miser_mapping {
    const void *data;
    size_t size;
} miser_mapping;

/* Map a regular file read-only (PROT_READ). A file shorter than min_size is
 * MISER_ERR_FORMAT; errors name the path. The mapping's bytes are recorded
 * against the allocator category `cat` as mapped (see alloc.h). */
miser_status miser_file_map(const char *path, size_t min_size, int cat, miser_mapping *out);
/* Unmap; a zeroed mapping is a no-op. */
void miser_file_unmap(miser_mapping *m, int cat);

/* UTF-8 (RFC 3629: shortest form, no surrogates, at most U+10FFFF).
 * miser_utf8_seq: the length (1-4) of the valid sequence starting at s[i]
 * (i < n), 0 when it is invalid, -1 when it is a valid start cut short by n.
 * miser_utf8_valid: 1 when all n bytes are UTF-8, else 0. */
int miser_utf8_seq(const unsigned char *s, size_t i, size_t n);
int miser_utf8_valid(const char *s, size_t n);

/* Write `path` atomically: fn writes the content to a temporary file in the
 * same directory, which is flushed, synced and renamed over `path` only when
 * fn returned MISER_OK; otherwise the temporary file is removed, so a failed
 * or interrupted write never leaves a half-written `path`. fn's status is
 * returned with the path prefixed to its message; I/O errors name the path.
 * A `path` that exists and is not a regular file (a device such as /dev/full,
 * a FIFO, a directory) is MISER_ERR_IO and left untouched: the rename would
 * replace it. `file` is a FILE*. */
typedef miser_status (*miser_write_fn)(void *file, void *ctx);
miser_status miser_file_write_atomic(const char *path, miser_write_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
