/* Streaming safetensors writer and the synthetic GPT-2 checkpoint generator
 * behind `miser synth` (and the benchmark's cached medium-sized model). The
 * header is built as text with exact escaping (no JSON tree), data is
 * appended chunk by chunk, and the file appears under its real name only
 * once complete. */
#include "miser/safetensors.h"
#include "synth.h"

#include "miser/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct miser_st_writer {
    int fd;
    char *path, *tmp;
    uint64_t total, written;
};

/* ---- a small growable text buffer ----------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = miser_realloc(MISER_MEM_SCRATCH, b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string literal. */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* ---- writer ------------------------------------------------------------------ */

static const char *st_name(miser_dtype dt)
{
    switch (dt) {
    case MISER_DTYPE_F32: return "F32";
    case MISER_DTYPE_F16: return "F16";
    case MISER_DTYPE_BF16: return "BF16";
    case MISER_DTYPE_I32: return "I32";
    case MISER_DTYPE_Q8_0: return "Q8_0"; /* miser's extension, see safetensors.c */
    case MISER_DTYPE_Q4_0: return "Q4_0";
    case MISER_DTYPE_Q4_K: return "Q4_K";
    case MISER_DTYPE_Q6_K: return "Q6_K";
    default: return NULL;
    }
}

static miser_status write_all(int fd, const void *p, size_t n, const char *path)
{
    const char *c = p;
    while (n) {
        ssize_t r = write(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return miser_error_set(MISER_ERR_IO, "%s: write: %s", path, strerror(errno));
        c += r;
        n -= (size_t)r;
    }
    return MISER_OK;
}

static void writer_free(miser_st_writer *w)
{
    if (w->fd >= 0) close(w->fd);
    miser_free(w->path);
    miser_free(w->tmp);
    miser_free(w);
}

void miser_st_writer_abort(miser_st_writer *w)
{
    if (!w) return;
    if (w->tmp) unlink(w->tmp);
    writer_free(w);
}

/* Open a temporary sibling of `path` (mode 0644 less the umask). */
static miser_status open_temp(const char *path, char **tmp_out, int *fd_out)
{
    size_t n = strlen(path);
    char *tmp = miser_malloc(MISER_MEM_SCRATCH, n + 12);
    if (!tmp) return MISER_ERR_NOMEM;
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        miser_status st = miser_error_set(MISER_ERR_IO, "%s: cannot create a temporary file: %s", path,
                                          strerror(errno));
        miser_free(tmp);
        return st;
    }
    mode_t um = umask(0);
    umask(um);
    fchmod(fd, 0644 & ~um);
    *tmp_out = tmp;
    *fd_out = fd;
    return MISER_OK;
}

miser_status miser_st_writer_open(const char *path, const miser_st_entry *entries, size_t n,
                                  const char *const *meta_kv, size_t n_meta, miser_st_writer **out)
{
    *out = NULL;
    if (!path || (n && !entries) || (n_meta && !meta_kv))
        return miser_error_set(MISER_ERR_INVALID, "miser_st_writer_open: missing argument");
    sbuf h = {0};
    uint64_t off = 0;
    miser_status st = MISER_OK;
    sb_put(&h, "{", 1);
    if (n_meta) {
        sb_put(&h, "\"__metadata__\":{", 16);
        for (size_t i = 0; i < n_meta; i++) {
            if (i) sb_put(&h, ",", 1);
            sb_json_str(&h, meta_kv[2 * i]);
            sb_put(&h, ":", 1);
            sb_json_str(&h, meta_kv[2 * i + 1]);
        }
        sb_put(&h, "}", 1);
    }
    for (size_t i = 0; i < n; i++) {
        const miser_st_entry *e = &entries[i];
        const char *dt = st_name(e->dtype);
        if (!e->name || !e->name[0] || !strcmp(e->name, "__metadata__") || e->ndim < 0 ||
            e->ndim > MISER_MAX_DIMS) {
            st = miser_error_set(MISER_ERR_INVALID, "%s: tensor %zu has no usable name or rank", path, i);
            goto fail;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(entries[j].name, e->name)) {
                st = miser_error_set(MISER_ERR_INVALID, "%s: tensor '%s' listed twice", path, e->name);
                goto fail;
            }
        if (!dt) {
            st = miser_error_set(MISER_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s cannot be stored in safetensors",
                                 path, e->name, miser_dtype_name(e->dtype));
            goto fail;
        }
        uint64_t nelem = 1;
        int ovf = 0;
        for (int32_t d = 0; d < e->ndim; d++) {
            if (e->shape[d] < 0) {
                st = miser_error_set(MISER_ERR_INVALID, "%s: tensor '%s': negative dimension", path, e->name);
                goto fail;
            }
            ovf |= __builtin_mul_overflow(nelem, (uint64_t)e->shape[d], &nelem);
        }
        uint64_t bytes = 0, end = 0;
        if (miser_dtype_block(e->dtype) > 1) { /* Q8_0, Q4_0, Q4_K, Q6_K */
            const int64_t bl = miser_dtype_block(e->dtype);
            if (e->ndim < 1 || e->shape[e->ndim - 1] % bl) {
                st = miser_error_set(MISER_ERR_UNSUPPORTED, "%s: tensor '%s': %s can only be stored with a last "
                                     "dimension that is a multiple of %lld", path, e->name, dt, (long long)bl);
                goto fail;
            }
            ovf |= __builtin_mul_overflow(nelem / (uint64_t)bl, (uint64_t)miser_dtype_block_bytes(e->dtype), &bytes);
        } else
            ovf |= __builtin_mul_overflow(nelem, (uint64_t)miser_dtype_bytes(e->dtype, 1), &bytes);
        ovf |= __builtin_add_overflow(off, bytes, &end);
        if (ovf) {
            st = miser_error_set(MISER_ERR_INVALID, "%s: tensor '%s': size overflows", path, e->name);
            goto fail;
        }
        sb_put(&h, (n_meta || i) ? "," : "", (n_meta || i) ? 1 : 0);
        sb_json_str(&h, e->name);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", dt);
        for (int32_t d = 0; d < e->ndim; d++) sb_printf(&h, "%s%lld", d ? "," : "", (long long)e->shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)end);
        off = end;
    }
    sb_put(&h, "}", 1);
    while (!h.oom && h.len % 8) sb_put(&h, " ", 1); /* aligns the data section */
    if (h.oom) {
        st = MISER_ERR_NOMEM;
        goto fail;
    }

    miser_st_writer *w = miser_calloc(MISER_MEM_SCRATCH, 1, sizeof *w);
    if (!w) {
        st = MISER_ERR_NOMEM;
        goto fail;
    }
    w->fd = -1;
    w->total = off;
    if (!(w->path = miser_strdup(MISER_MEM_SCRATCH, path)) || (st = open_temp(path, &w->tmp, &w->fd))) {
        if (!st) st = MISER_ERR_NOMEM;
        miser_st_writer_abort(w);
        goto fail;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    if ((st = write_all(w->fd, len8, 8, path)) || (st = write_all(w->fd, h.p, h.len, path))) {
        miser_st_writer_abort(w);
        goto fail;
    }
    miser_free(h.p);
    *out = w;
    return MISER_OK;
fail:
    miser_free(h.p);
    return st;
}

miser_status miser_st_writer_write(miser_st_writer *w, const void *data, size_t nbytes)
{
    if (!w) return miser_error_set(MISER_ERR_INVALID, "miser_st_writer_write: no writer");
    if (nbytes > w->total - w->written)
        return miser_error_set(MISER_ERR_INVALID, "%s: %zu bytes written past the declared %llu", w->path, nbytes,
                               (unsigned long long)w->total);
    miser_status st = write_all(w->fd, data, nbytes, w->path);
    if (!st) w->written += nbytes;
    return st;
}

miser_status miser_st_writer_close(miser_st_writer *w)
{
    if (!w) return miser_error_set(MISER_ERR_INVALID, "miser_st_writer_close: no writer");
    miser_status st = MISER_OK;
    if (w->written != w->total)
        st = miser_error_set(MISER_ERR_INVALID, "%s: only %llu of %llu data bytes were written", w->path,
                             (unsigned long long)w->written, (unsigned long long)w->total);
    else if (close(w->fd) != 0)
        st = miser_error_set(MISER_ERR_IO, "%s: close: %s", w->path, strerror(errno));
    else if ((w->fd = -1, rename(w->tmp, w->path) != 0))
        st = miser_error_set(MISER_ERR_IO, "%s: rename: %s", w->path, strerror(errno));
    if (st) {
        miser_st_writer_abort(w);
        return st;
    }
    writer_free(w);
    return MISER_OK;
}

/* ---- synthetic GPT-2 ----------------------------------------------------------- */

miser_status miser_gpt2_preset(const char *shape, miser_gpt2_config *out)
{
    static const struct { const char *name; int64_t L, C, H, ctx; } P[] = {
        {"tiny", 2, 64, 4, 128}, {"small", 12, 768, 12, 1024},
        {"medium", 24, 1024, 16, 1024}, {"large", 36, 1280, 20, 1024},
    };
    for (size_t i = 0; shape && i < sizeof P / sizeof P[0]; i++)
        if (!strcmp(shape, P[i].name)) {
            *out = (miser_gpt2_config){.n_vocab = 50257, .n_ctx = P[i].ctx, .n_embd = P[i].C,
                                       .n_head = P[i].H, .n_layer = P[i].L, .n_inner = 4 * P[i].C,
                                       .eps = 1e-5f, .eos_token_id = 50256};
            return MISER_OK;
        }
    return miser_error_set(MISER_ERR_INVALID, "unknown model shape '%s' (tiny, small, medium, large)",
                           shape ? shape : "");
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Roughly N(0, 1): the sum of four 16-bit uniforms (Irwin-Hall), rescaled.
 * One PRNG draw per value keeps a 355M-parameter model quick to generate. */
static float approx_normal(uint64_t *s)
{
    uint64_t r = splitmix64(s);
    double sum = (double)(r & 0xffff) + (double)((r >> 16) & 0xffff) + (double)((r >> 32) & 0xffff) +
                 (double)(r >> 48);
    return (float)((sum / 65535.0 - 2.0) * 1.7320508075688772); /* var of the sum is 4/12 */
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

int miser_synth_ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Shared with llama_synth.c (declared in synth.h): one tensor's seeded values. */
miser_status miser_synth_fill(miser_st_writer *w, const miser_st_entry *e, float mean, float sd,
                              const miser_synth_options *o, unsigned char *buf, uint64_t *done, uint64_t total)
{
    uint64_t s = o->seed ^ fnv1a(e->name);
    uint64_t n = 1;
    for (int32_t d = 0; d < e->ndim; d++) n *= (uint64_t)e->shape[d];
    size_t esz = miser_dtype_bytes(o->dtype, 1), per = MISER_SYNTH_CHUNK / esz;
    while (n) {
        size_t k = n < per ? (size_t)n : per;
        for (size_t i = 0; i < k; i++) {
            float v = mean + sd * approx_normal(&s);
            if (o->dtype == MISER_DTYPE_F32) memcpy(buf + 4 * i, &v, 4);
            else {
                uint16_t h = o->dtype == MISER_DTYPE_F16 ? miser_f32_to_f16(v) : miser_f32_to_bf16(v);
                memcpy(buf + 2 * i, &h, 2);
            }
        }
        miser_status st = miser_st_writer_write(w, buf, k * esz);
        if (st) return st;
        n -= k;
        *done += k * esz;
        if (o->progress) o->progress(o->progress_user, *done, total);
    }
    return MISER_OK;
}

static miser_status synth_tensor(miser_st_writer *w, const miser_st_entry *e, const miser_gpt2_config *c,
                                 const miser_synth_options *o, unsigned char *buf, uint64_t *done,
                                 uint64_t total)
{
    float mean = 0, sd = 0.02f;
    if (miser_synth_ends_with(e->name, "ln_1.weight") || miser_synth_ends_with(e->name, "ln_2.weight") ||
        !strcmp(e->name, "ln_f.weight"))
        mean = 1.0f, sd = 0.05f;
    else if (miser_synth_ends_with(e->name, ".bias")) sd = 0.01f;
    else if (!strcmp(e->name, "wpe.weight")) sd = 0.01f;
    else if (miser_synth_ends_with(e->name, "c_proj.weight")) sd = 0.02f / sqrtf(2.0f * (float)c->n_layer);
    return miser_synth_fill(w, e, mean, sd, o, buf, done, total);
}

static miser_status write_text_cb(void *f, void *text)
{
    fputs(text, f);
    return MISER_OK;
}

static miser_status write_config(const char *dir, const miser_gpt2_config *c, const miser_synth_options *o)
{
    size_t n = strlen(dir);
    char *path = miser_malloc(MISER_MEM_SCRATCH, n + 13);
    if (!path) return MISER_ERR_NOMEM;
    memcpy(path, dir, n);
    memcpy(path + n, "/config.json", 13);
    char inner[32], eos[96], text[1024];
    if (c->n_inner == 4 * c->n_embd) snprintf(inner, sizeof inner, "null");
    else snprintf(inner, sizeof inner, "%lld", (long long)c->n_inner);
    eos[0] = 0;
    if (c->eos_token_id >= 0)
        snprintf(eos, sizeof eos, "  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n", (int)c->eos_token_id,
                 (int)c->eos_token_id);
    snprintf(text, sizeof text,
                       "{\n  \"model_type\": \"gpt2\",\n  \"architectures\": [\"GPT2LMHeadModel\"],\n"
                       "  \"activation_function\": \"gelu_new\",\n  \"n_embd\": %lld,\n  \"n_head\": %lld,\n"
                       "  \"n_layer\": %lld,\n  \"n_positions\": %lld,\n  \"n_ctx\": %lld,\n"
                       "  \"n_inner\": %s,\n  \"vocab_size\": %lld,\n  \"layer_norm_epsilon\": %.7g,\n%s"
                       "  \"tie_word_embeddings\": true,\n  \"torch_dtype\": \"%s\",\n"
                       "  \"miser_synthetic\": \"seed=%llu\"\n}\n",
                       (long long)c->n_embd, (long long)c->n_head, (long long)c->n_layer, (long long)c->n_ctx,
                       (long long)c->n_ctx, inner, (long long)c->n_vocab, (double)c->eps, eos,
                       o->dtype == MISER_DTYPE_F32 ? "float32" : o->dtype == MISER_DTYPE_F16 ? "float16" : "bfloat16",
                       (unsigned long long)o->seed);
    miser_status st = miser_file_write_atomic(path, write_text_cb, text);
    miser_free(path);
    return st;
}

miser_status miser_synth_gpt2(const char *dir, const miser_gpt2_config *c, const miser_synth_options *o)
{
    if (!dir || !c || !o) return miser_error_set(MISER_ERR_INVALID, "miser_synth_gpt2: missing argument");
    if (c->n_embd < 1 || c->n_head < 1 || c->n_layer < 1 || c->n_vocab < 1 || c->n_ctx < 1 || c->n_inner < 1 ||
        c->n_embd > (1 << 16) || c->n_head > (1 << 12) || c->n_layer > (1 << 12) || c->n_vocab > (1 << 24) ||
        c->n_ctx > (1 << 20) || c->n_inner > (1 << 20) || c->n_embd % c->n_head || !(c->eps > 0) ||
        !(c->eps < 1) || c->eos_token_id >= c->n_vocab)
        return miser_error_set(MISER_ERR_INVALID,
                               "%s: invalid GPT-2 shape (layers %lld, embd %lld, heads %lld, vocab %lld, ctx %lld, "
                               "inner %lld): sizes must be positive and embd divisible by heads",
                               dir, (long long)c->n_layer, (long long)c->n_embd, (long long)c->n_head,
                               (long long)c->n_vocab, (long long)c->n_ctx, (long long)c->n_inner);
    if (o->dtype != MISER_DTYPE_F32 && o->dtype != MISER_DTYPE_F16 && o->dtype != MISER_DTYPE_BF16)
        return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: synthetic weights are f32, f16 or bf16, not %s", dir,
                               miser_dtype_name(o->dtype));
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return miser_error_set(MISER_ERR_IO, "%s: mkdir: %s", dir, strerror(errno));

    const int64_t C = c->n_embd, F = c->n_inner;
    size_t n = 4 + 12 * (size_t)c->n_layer, k = 0;
    miser_st_entry *e = miser_calloc(MISER_MEM_SCRATCH, n, sizeof *e);
    char *names = miser_malloc(MISER_MEM_SCRATCH, n * 40);
    unsigned char *buf = miser_malloc(MISER_MEM_SCRATCH, MISER_SYNTH_CHUNK);
    char *path = miser_malloc(MISER_MEM_SCRATCH, strlen(dir) + 20);
    miser_st_writer *w = NULL;
    miser_status st = MISER_OK;
    if (!e || !names || !buf || !path) {
        st = MISER_ERR_NOMEM;
        goto done;
    }
#define ADD(nd, d0, d1, ...)                                                                                 \
    do {                                                                                                     \
        char *nm = names + 40 * k;                                                                           \
        snprintf(nm, 40, __VA_ARGS__);                                                                       \
        e[k] = (miser_st_entry){.name = nm, .dtype = o->dtype, .ndim = nd, .shape = {d0, d1}};               \
        k++;                                                                                                 \
    } while (0)
    ADD(2, c->n_vocab, C, "wte.weight");
    ADD(2, c->n_ctx, C, "wpe.weight");
    for (int64_t l = 0; l < c->n_layer; l++) {
        long long L = (long long)l;
        ADD(1, C, 0, "h.%lld.ln_1.weight", L);
        ADD(1, C, 0, "h.%lld.ln_1.bias", L);
        ADD(2, C, 3 * C, "h.%lld.attn.c_attn.weight", L);
        ADD(1, 3 * C, 0, "h.%lld.attn.c_attn.bias", L);
        ADD(2, C, C, "h.%lld.attn.c_proj.weight", L);
        ADD(1, C, 0, "h.%lld.attn.c_proj.bias", L);
        ADD(1, C, 0, "h.%lld.ln_2.weight", L);
        ADD(1, C, 0, "h.%lld.ln_2.bias", L);
        ADD(2, C, F, "h.%lld.mlp.c_fc.weight", L);
        ADD(1, F, 0, "h.%lld.mlp.c_fc.bias", L);
        ADD(2, F, C, "h.%lld.mlp.c_proj.weight", L);
        ADD(1, C, 0, "h.%lld.mlp.c_proj.bias", L);
    }
    ADD(1, C, 0, "ln_f.weight");
    ADD(1, C, 0, "ln_f.bias");
#undef ADD
    char seed[40];
    snprintf(seed, sizeof seed, "seed=%llu", (unsigned long long)o->seed);
    const char *meta[] = {"miser_synthetic", seed};
    sprintf(path, "%s/model.safetensors", dir);
    if ((st = miser_st_writer_open(path, e, n, meta, 1, &w))) goto done;
    uint64_t done_b = 0, total = w->total;
    for (size_t i = 0; i < n; i++)
        if ((st = synth_tensor(w, &e[i], c, o, buf, &done_b, total))) goto done;
    st = miser_st_writer_close(w);
    w = NULL;
    if (!st) st = write_config(dir, c, o);
done:
    miser_st_writer_abort(w);
    miser_free(path);
    miser_free(buf);
    miser_free(names);
    miser_free(e);
    return st;
}
