/* Model loading: the Hugging Face tiny checkpoint, checkpoints written by the
 * independent numpy writer (tools/make_checkpoint.py) compared byte for byte,
 * lying and truncated files, config/shape disagreements, allocation-failure
 * walks, the C writer (`miser synth`) read back by miser and by the numpy
 * reference, and the numpy reference itself against Hugging Face's outputs. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miser/alloc.h"
#include "miser/model.h"
#include "miser/safetensors.h"
#include "model/safetensors.h"

#define PY "/usr/bin/python3"
#define MAKE_CKPT PY " " MISER_SOURCE_DIR "/tools/make_checkpoint.py"
#define REF_GPT2 PY " " MISER_SOURCE_DIR "/tools/ref_gpt2.py"
#define HF_TINY MISER_SOURCE_DIR "/tests/data/hf-tiny-a"

/* ---- helpers -------------------------------------------------------------- */

static char *tmpdir_new(void)
{
    char *d = strdup("/tmp/miser-model-XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int r = system(cmd);
    return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

static void tmpdir_free(char *d)
{
    sh("rm -rf '%s'", d);
    free(d);
}

static char *path_of(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static void write_file(const char *dir, const char *name, const void *data, size_t n)
{
    char *p = path_of(dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f, "%s", p);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
    free(p);
}

static unsigned char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    b[len] = 0;
    *n = (size_t)len;
    return b;
}

/* Run a command and capture its stdout. */
static char *capture(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (cap - n < 4096) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    cr_assert_eq(pclose(p), 0, "command failed: %s", cmd);
    return buf;
}

static const char TINY_CONFIG[] =
    "{\"n_embd\": 8, \"n_head\": 2, \"n_layer\": 1, \"n_positions\": 4, \"vocab_size\": 10}";

/* A model.safetensors with the given header text (padded to 8) and `data`
 * zero bytes, beside a small valid config.json. */
static void write_st(const char *dir, const char *header, size_t data)
{
    size_t h = strlen(header), hp = (h + 7) / 8 * 8;
    size_t n = 8 + hp + data;
    unsigned char *b = calloc(1, n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hp >> (8 * i));
    memcpy(b + 8, header, h);
    memset(b + 8 + h, ' ', hp - h);
    write_file(dir, "model.safetensors", b, n);
    write_file(dir, "config.json", TINY_CONFIG, strlen(TINY_CONFIG));
    free(b);
}

static void expect_open_fails(const char *dir, miser_status want, const char *const *needles)
{
    miser_model *m = (miser_model *)1;
    miser_status st = miser_model_open(dir, &m);
    const char *msg = miser_error_message();
    cr_assert_eq(st, want, "status %s, want %s: %s", miser_status_str(st), miser_status_str(want), msg);
    cr_assert_null(m);
    for (; needles && *needles; needles++)
        cr_assert(strstr(msg, *needles), "message lacks '%s': %s", *needles, msg);
}

/* ---- the Hugging Face checkpoint ----------------------------------------- */

Test(model, hf_tiny_a_config_and_shapes)
{
    miser_model *m = NULL;
    cr_assert_eq(miser_model_open(HF_TINY, &m), MISER_OK, "%s", miser_error_message());
    /* Values from tests/data/hf-tiny-a/config.json (n_inner null -> 4*64). */
    const miser_gpt2_config *c = miser_model_config(m);
    cr_assert_eq(c->n_embd, 64);
    cr_assert_eq(c->n_head, 4);
    cr_assert_eq(c->n_layer, 2);
    cr_assert_eq(c->n_ctx, 128);
    cr_assert_eq(c->n_vocab, 50257);
    cr_assert_eq(c->n_inner, 256);
    cr_assert_float_eq(c->eps, 1e-5f, 1e-12);
    cr_assert_eq(c->eos_token_id, 50256);
    cr_assert_str_eq(miser_model_dir(m), HF_TINY);

    /* 12 tensors per layer + wte, wpe, ln_f.{weight,bias}; keys lose "transformer.". */
    cr_assert_eq(miser_model_tensor_count(m), 28);
    const miser_tensor_info *t = miser_model_tensor(m, "h.1.mlp.c_proj.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[0], 256);
    cr_assert_eq(t->shape[1], 64);
    cr_assert_eq(t->dtype, MISER_DTYPE_F32);
    cr_assert_eq(t->nbytes, 256 * 64 * 4);
    t = miser_model_tensor(m, "h.0.attn.c_attn.bias");
    cr_assert_eq(t->ndim, 1);
    cr_assert_eq(t->shape[0], 192);
    cr_assert_null(miser_model_tensor(m, "transformer.wte.weight"));
    cr_assert_null(miser_model_tensor(m, "lm_head.weight"));
    for (size_t i = 1; i < miser_model_tensor_count(m); i++)
        cr_assert_lt(strcmp(miser_model_tensor_at(m, i - 1)->name, miser_model_tensor_at(m, i)->name), 0);

    /* wte is stored last in this file: its bytes are the file's tail. */
    size_t n;
    unsigned char *file = read_file(HF_TINY "/model.safetensors", &n);
    t = miser_model_tensor(m, "wte.weight");
    cr_assert_eq(t->nbytes, 50257ull * 64 * 4);
    cr_assert_eq(memcmp(t->data, file + n - t->nbytes, t->nbytes), 0);
    cr_assert_eq(miser_model_mapped_bytes(m), n);
    cr_assert_eq(miser_model_shard_count(m), 1);
    cr_assert(strstr(miser_model_shard_path(m, 0), "model.safetensors"));
    cr_assert_eq(miser_mem_get(MISER_MEM_WEIGHTS).mapped, n);
    free(file);
    miser_model_free(m);
    cr_assert_eq(miser_mem_get(MISER_MEM_WEIGHTS).mapped, 0);
    miser_model_free(NULL);
}

Test(model, fault_injection_walk)
{
    uint64_t start = miser_mem_total().current;
    int ok = 0;
    for (uint64_t n = 1; n < 10000 && !ok; n++) {
        miser_model *m = NULL;
        miser_mem_fail_after(n);
        miser_status st = miser_model_open(HF_TINY, &m);
        miser_mem_fail_after(0);
        if (st == MISER_OK) {
            ok = 1;
            cr_assert_gt(n, 3, "open made suspiciously few allocations");
            miser_model_free(m);
        } else {
            cr_assert_eq(st, MISER_ERR_NOMEM, "n=%llu: %s", (unsigned long long)n, miser_error_message());
            cr_assert_null(m);
        }
        cr_assert_eq(miser_mem_total().current, start, "leak after failing allocation %llu",
                     (unsigned long long)n);
        cr_assert_eq(miser_mem_get(MISER_MEM_WEIGHTS).mapped, 0, "mapping leaked at n=%llu",
                     (unsigned long long)n);
    }
    cr_assert(ok);
}

/* ---- checkpoints from the numpy writer --------------------------------- */

/* Every tensor numpy dumped must be in the table with identical bytes (BOOL
 * buffers excepted: miser leaves dtypes it cannot represent out). */
static void compare_dump(const miser_model *m, const char *dump, const char *variant)
{
    DIR *d = opendir(dump);
    cr_assert_not_null(d);
    struct dirent *e;
    size_t seen = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".bin")) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len - 4), e->d_name);
        const miser_tensor_info *t = miser_model_tensor(m, name);
        if (!strcmp(name, "miser_test.flags")) {
            cr_assert_null(t, "%s: BOOL buffer should be left out", variant);
            continue;
        }
        cr_assert_not_null(t, "%s: tensor %s missing", variant, name);
        char *p = path_of(dump, e->d_name);
        size_t n;
        unsigned char *want = read_file(p, &n);
        cr_assert_eq(t->nbytes, n, "%s: %s size", variant, name);
        cr_assert_eq(memcmp(t->data, want, n), 0, "%s: %s bytes differ", variant, name);
        free(want);
        free(p);
        seen++;
    }
    closedir(d);
    cr_assert_eq(seen, miser_model_tensor_count(m), "%s: table has tensors numpy did not write", variant);
}

Test(model, numpy_checkpoints_byte_exact)
{
    static const struct { const char *args; miser_dtype dt; size_t shards; int64_t inner; } V[] = {
        {"--prefix", MISER_DTYPE_F32, 1, 128},
        {"--no-prefix --dtype f16", MISER_DTYPE_F16, 1, 128},
        {"--prefix --dtype bf16 --shards 3", MISER_DTYPE_BF16, 3, 128},
        {"--dtype f16 --shards 2 --attn-bias --lm-head --extra --inner 96", MISER_DTYPE_F16, 2, 96},
        {"--prefix --attn-bias --lm-head --extra --eps 1e-6", MISER_DTYPE_F32, 1, 128},
    };
    for (size_t v = 0; v < sizeof V / sizeof V[0]; v++) {
        char *dir = tmpdir_new(), *ck = path_of(dir, "ck"), *dump = path_of(dir, "dump");
        cr_assert_eq(sh(MAKE_CKPT " --out %s --dump %s --layers 2 --embd 32 --heads 4 --vocab 200 --ctx 16 "
                                  "--seed %zu %s",
                        ck, dump, v, V[v].args),
                     0, "make_checkpoint.py %s", V[v].args);
        miser_model *m = NULL;
        cr_assert_eq(miser_model_open(ck, &m), MISER_OK, "%s: %s", V[v].args, miser_error_message());
        const miser_gpt2_config *c = miser_model_config(m);
        cr_assert_eq(c->n_embd, 32);
        cr_assert_eq(c->n_vocab, 200);
        cr_assert_eq(c->n_inner, V[v].inner, "%s", V[v].args);
        cr_assert_eq(c->eos_token_id, -1, "vocab 200 has no <|endoftext|>");
        cr_assert_float_eq(c->eps, strstr(V[v].args, "1e-6") ? 1e-6f : 1e-5f, 1e-13);
        cr_assert_eq(miser_model_shard_count(m), V[v].shards, "%s", V[v].args);
        cr_assert_eq(miser_model_tensor(m, "wte.weight")->dtype, V[v].dt);
        if (strstr(V[v].args, "--attn-bias")) {
            cr_assert_not_null(miser_model_tensor(m, "h.1.attn.masked_bias"));
            cr_assert_eq(miser_model_tensor(m, "h.1.attn.masked_bias")->ndim, 0);
        }
        compare_dump(m, dump, V[v].args);
        miser_model_free(m);
        free(ck);
        free(dump);
        tmpdir_free(dir);
    }
}

/* ---- lying files ---------------------------------------------------------- */

Test(model, lying_safetensors)
{
    static const struct {
        const char *header;
        size_t data;
        miser_status st;
        const char *needle1, *needle2;
    } C[] = {
        {"{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [2, 3]", 0, MISER_ERR_FORMAT, "not valid JSON", NULL},
        {"[1, 2, 3]", 0, MISER_ERR_FORMAT, "not an object", NULL},
        {"{\"wte.weight\": {\"dtype\": \"Q99\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
         MISER_ERR_UNSUPPORTED, "'wte.weight'", "Q99"},
        {"{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [10, 8], \"data_offsets\": [0, 316]}}", 320,
         MISER_ERR_FORMAT, "'wte.weight'", "needs 320 bytes"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
         " \"wte.weight\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}",
         32, MISER_ERR_FORMAT, "'wte.weight'", "overlap tensor 'a'"},
        {"{\"h.0.ln_1.bias\": {\"dtype\": \"F16\", \"shape\": [8], \"data_offsets\": [16, 32]}}", 24,
         MISER_ERR_FORMAT, "'h.0.ln_1.bias'", "exceed the data section (24 bytes)"},
        {"{\"wpe.weight\": {\"dtype\": \"F32\", \"shape\": [-2, 8], \"data_offsets\": [0, 64]}}", 64,
         MISER_ERR_FORMAT, "'wpe.weight'", "negative dimension"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4,
         MISER_ERR_UNSUPPORTED, "'w'", "dimensions"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [2, 6]}}", 8, MISER_ERR_UNSUPPORTED,
         "'w'", "aligned"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0.5, 4.5]}}", 8, MISER_ERR_FORMAT,
         "'w'", "data_offsets"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8, MISER_ERR_FORMAT, "'w'",
         "end before"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 0]}}", 8,
         MISER_ERR_FORMAT, "'w'", "overflows"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 8, MISER_ERR_FORMAT, "'w'", "data_offsets"},
        {"{\"w\": 5}", 0, MISER_ERR_FORMAT, "'w'", "not a JSON object"},
        {"{\"__metadata__\": 5}", 0, MISER_ERR_FORMAT, "__metadata__", NULL},
        {"{} x", 0, MISER_ERR_FORMAT, "unexpected bytes", NULL},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
         " \"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
         8, MISER_ERR_FORMAT, "'w'", "twice"},
        /* Valid file, but a dtype miser does not compute with on a tensor it needs. */
        {"{\"wte.weight\": {\"dtype\": \"F64\", \"shape\": [10, 8], \"data_offsets\": [0, 640]}}", 640,
         MISER_ERR_UNSUPPORTED, "'wte.weight'", "F64"},
        /* The same tensor with and without the "transformer." prefix. */
        {"{\"transformer.ln_f.bias\": {\"dtype\": \"F32\", \"shape\": [8], \"data_offsets\": [0, 32]},"
         " \"ln_f.bias\": {\"dtype\": \"F32\", \"shape\": [8], \"data_offsets\": [32, 64]}}",
         64, MISER_ERR_FORMAT, "'ln_f.bias'", "stored twice"},
        /* "miser_transposed" (the q8_0 cache's list of tensors stored [N, K])
         * must name 2-D tensors of the file, once each. */
        {"{\"__metadata__\": {\"miser_transposed\": \"a,missing\"},"
         " \"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]}}",
         24, MISER_ERR_FORMAT, "'missing'", "miser_transposed"},
        {"{\"__metadata__\": {\"miser_transposed\": \"b\"},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}",
         16, MISER_ERR_FORMAT, "'b'", "1 dimensions (a transposed tensor is 2-D)"},
        {"{\"__metadata__\": {\"miser_transposed\": \"a,a\"},"
         " \"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]}}",
         24, MISER_ERR_FORMAT, "'a'", "twice"},
        {"{\"__metadata__\": {\"miser_transposed\": \"a,\"},"
         " \"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]}}",
         24, MISER_ERR_FORMAT, "miser_transposed", "empty name"},
        {"{\"__metadata__\": {\"miser_transposed\": 5}}", 0, MISER_ERR_FORMAT, "miser_transposed", "not a string"},
        /* Valid file without the tensors GPT-2 needs. */
        {"{\"__metadata__\": {\"format\": \"pt\"}}", 0, MISER_ERR_FORMAT, "required tensor 'wte.weight'",
         NULL},
    };
    char *dir = tmpdir_new();
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        write_st(dir, C[i].header, C[i].data);
        const char *needles[] = {"model.safetensors", C[i].needle1, C[i].needle2, NULL};
        cr_log_info("case %zu: %s", i, C[i].header);
        expect_open_fails(dir, C[i].st, needles);
    }
    tmpdir_free(dir);
}

Test(model, truncated_and_short_files)
{
    char *dir = tmpdir_new(), *ck = path_of(dir, "ck");
    cr_assert_eq(sh(MAKE_CKPT " --out %s --layers 1 --embd 16 --heads 2 --vocab 50 --ctx 8", ck), 0);
    char *st = path_of(ck, "model.safetensors");
    size_t n;
    unsigned char *full = read_file(st, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | full[i];

    /* Cut inside the data section: whichever tensors now run past the end. */
    cr_assert_eq(truncate(st, (off_t)(n - 5)), 0);
    const char *n1[] = {"model.safetensors", "tensor '", "exceed the data section", NULL};
    expect_open_fails(ck, MISER_ERR_FORMAT, n1);
    /* Cut inside the header: the length field now points past the file. */
    cr_assert_eq(truncate(st, (off_t)(8 + hlen / 2)), 0);
    const char *n2[] = {"model.safetensors", "header length", "exceeds the file", NULL};
    expect_open_fails(ck, MISER_ERR_FORMAT, n2);
    /* Shorter than the length field itself. */
    cr_assert_eq(truncate(st, 5), 0);
    const char *n3[] = {"model.safetensors", "too short", NULL};
    expect_open_fails(ck, MISER_ERR_FORMAT, n3);
    cr_assert_eq(truncate(st, 0), 0);
    expect_open_fails(ck, MISER_ERR_FORMAT, n3);
    /* A length field claiming far more than the file holds. */
    write_file(ck, "model.safetensors", full, n);
    full[5] = 0x10;
    write_file(ck, "model.safetensors", full, n);
    expect_open_fails(ck, MISER_ERR_FORMAT, n2);

    free(full);
    free(st);
    free(ck);
    tmpdir_free(dir);
}

Test(model, parse_in_memory)
{
    miser_st_header h;
    cr_assert_eq(miser_st_parse(NULL, 0, "mem", &h), MISER_ERR_FORMAT);
    cr_assert_eq(miser_st_parse("\x02\0\0\0\0\0\0\0{}", 10, "mem", &h), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(h.n_tensors, 0);
    cr_assert_eq(h.data_offset, 10);
    miser_st_header_free(&h);
    /* An opaque BOOL buffer is validated and kept with dtype COUNT. */
    static const char hdr[] = "{\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}  ";
    unsigned char buf[8 + sizeof hdr - 1 + 3] = {0};
    buf[0] = sizeof hdr - 1;
    memcpy(buf + 8, hdr, sizeof hdr - 1);
    cr_assert_eq(miser_st_parse(buf, sizeof buf, "mem", &h), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(h.n_tensors, 1);
    cr_assert_eq(h.tensors[0].dtype, MISER_DTYPE_COUNT);
    cr_assert_str_eq(h.tensors[0].st_dtype, "BOOL");
    cr_assert_not_null(miser_st_find(&h, "m"));
    cr_assert_null(miser_st_find(&h, "n"));
    miser_st_header_free(&h);
    miser_st_header_free(NULL);
}

/* ---- config against shapes ------------------------------------------------ */

static char *numpy_ckpt(const char *dir, const char *extra)
{
    char *ck = path_of(dir, "ck");
    sh("rm -rf '%s'", ck);
    cr_assert_eq(sh(MAKE_CKPT " --out %s --layers 2 --embd 32 --heads 4 --vocab 100 --ctx 8 %s", ck, extra), 0);
    return ck;
}

Test(model, config_inconsistent_with_shapes)
{
    char *dir = tmpdir_new(), *ck;

    ck = numpy_ckpt(dir, "--prefix");
    cr_assert_eq(sh("sed -i 's/\"n_embd\": 32/\"n_embd\": 48/' %s/config.json", ck), 0);
    const char *n1[] = {"model.safetensors", "'wte.weight'", "[100, 48]", NULL};
    expect_open_fails(ck, MISER_ERR_FORMAT, n1);
    free(ck);

    ck = numpy_ckpt(dir, "");
    cr_assert_eq(sh("sed -i 's/\"vocab_size\": 100/\"vocab_size\": 101/' %s/config.json", ck), 0);
    const char *n1b[] = {"'wte.weight'", "vocab_size", NULL};
    expect_open_fails(ck, MISER_ERR_FORMAT, n1b);
    free(ck);

    ck = numpy_ckpt(dir, "--inner 40");
    cr_assert_eq(sh("sed -i 's/\"n_inner\": 40/\"n_inner\": 64/' %s/config.json", ck), 0);
    const char *n1c[] = {"'h.0.mlp.c_fc.weight'", "[32, 64]", NULL};
    expect_open_fails(ck, MISER_ERR_FORMAT, n1c);
    free(ck);

    ck = numpy_ckpt(dir, "--drop h.1.mlp.c_fc.bias");
    const char *n2[] = {"model.safetensors", "required tensor 'h.1.mlp.c_fc.bias' is missing", NULL};
    expect_open_fails(ck, MISER_ERR_FORMAT, n2);
    free(ck);

    ck = numpy_ckpt(dir, "");
    cr_assert_eq(sh("sed -i 's/\"n_head\": 4/\"n_head\": 5/' %s/config.json", ck), 0);
    const char *n3[] = {"config.json", "not divisible by n_head 5", NULL};
    expect_open_fails(ck, MISER_ERR_RANGE, n3);
    cr_assert_eq(sh("sed -i 's/\"n_head\": 5/\"n_head\": -4/' %s/config.json", ck), 0);
    const char *n3b[] = {"config.json", "n_head", NULL};
    expect_open_fails(ck, MISER_ERR_RANGE, n3b);
    cr_assert_eq(sh("sed -i 's/\"n_head\": -4/\"n_head\": 4.5/' %s/config.json", ck), 0);
    expect_open_fails(ck, MISER_ERR_FORMAT, n3b);
    cr_assert_eq(sh("sed -i 's/\"n_layer\": 2/\"n_layer\": 3/; s/\"n_head\": 4.5/\"n_head\": 4/' %s/config.json",
                    ck),
                 0);
    const char *n3c[] = {"required tensor 'h.2.ln_1.weight'", NULL};
    expect_open_fails(ck, MISER_ERR_FORMAT, n3c);

    cr_assert_eq(sh("echo '{\"n_embd\": 32' > %s/config.json", ck), 0);
    const char *n4[] = {"config.json", "invalid JSON", NULL};
    expect_open_fails(ck, MISER_ERR_FORMAT, n4);
    cr_assert_eq(sh("rm %s/config.json", ck), 0);
    const char *n5[] = {"config.json", NULL};
    expect_open_fails(ck, MISER_ERR_IO, n5);
    free(ck);

    ck = numpy_ckpt(dir, "--shards 3");
    cr_assert_eq(sh("rm %s/model-00002-of-00003.safetensors", ck), 0);
    const char *n6[] = {"model-00002-of-00003.safetensors", NULL};
    expect_open_fails(ck, MISER_ERR_IO, n6);
    cr_assert_eq(sh("rm %s/model.safetensors.index.json", ck), 0);
    const char *n7[] = {"neither model.safetensors", NULL};
    expect_open_fails(ck, MISER_ERR_IO, n7);
    free(ck);

    ck = numpy_ckpt(dir, "--shards 2");
    cr_assert_eq(sh("sed -i 's/model-00002-of-00002/..\\/..\\/etc\\/passwd/' %s/model.safetensors.index.json", ck),
                 0);
    const char *n8[] = {"model.safetensors.index.json", "file name", NULL};
    expect_open_fails(ck, MISER_ERR_FORMAT, n8);
    free(ck);

    tmpdir_free(dir);
}

/* ---- the C writer -------------------------------------------------------------- */

static void stats(const miser_tensor_info *t, double *mean, double *sd)
{
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    float *f = malloc(n * sizeof *f);
    miser_to_f32(t->dtype, t->data, 0, n, f);
    double s = 0, s2 = 0;
    for (uint64_t i = 0; i < n; i++) s += f[i], s2 += (double)f[i] * f[i];
    *mean = s / (double)n;
    *sd = sqrt(s2 / (double)n - *mean * *mean);
    free(f);
}

Test(model, synth_roundtrip)
{
    char *dir = tmpdir_new(), *a = path_of(dir, "a"), *b = path_of(dir, "b");
    const char *args = "--layers 2 --embd 64 --heads 4 --vocab 500 --ctx 32 --dtype f16 --seed 3";
    cr_assert_eq(sh(MISER_BUILD_DIR "/miser synth --out %s %s", a, args), 0);
    cr_assert_eq(sh(MISER_BUILD_DIR "/miser synth --out %s %s", b, args), 0);
    cr_assert_eq(sh("cmp -s %s/model.safetensors %s/model.safetensors", a, b), 0, "same seed, different bytes");
    cr_assert_eq(sh("ls %s | grep -q tmp", a), 1, "temporary file left behind");

    miser_model *m = NULL;
    cr_assert_eq(miser_model_open(a, &m), MISER_OK, "%s", miser_error_message());
    const miser_gpt2_config *c = miser_model_config(m);
    cr_assert_eq(c->n_layer, 2);
    cr_assert_eq(c->n_embd, 64);
    cr_assert_eq(c->n_vocab, 500);
    cr_assert_eq(c->n_ctx, 32);
    cr_assert_eq(miser_model_tensor_count(m), 4 + 2 * 12);
    double mean, sd;
    stats(miser_model_tensor(m, "h.1.attn.c_attn.weight"), &mean, &sd);
    cr_assert_lt(fabs(mean), 0.002);
    cr_assert(sd > 0.017 && sd < 0.023, "c_attn sd %g", sd);
    stats(miser_model_tensor(m, "h.0.ln_2.weight"), &mean, &sd);
    cr_assert(fabs(mean - 1) < 0.03 && sd > 0.01 && sd < 0.1, "ln weight mean %g sd %g", mean, sd);
    stats(miser_model_tensor(m, "h.0.mlp.c_fc.bias"), &mean, &sd);
    cr_assert(sd > 0.002 && sd < 0.02, "bias sd %g", sd);
    cr_assert_eq(miser_model_tensor(m, "wte.weight")->dtype, MISER_DTYPE_F16);
    miser_model_free(m);

    size_t n;
    char *cfgp = path_of(a, "model.safetensors");
    unsigned char *file = read_file(cfgp, &n);
    cr_assert(memmem(file, 200, "\"miser_synthetic\":\"seed=3\"", 26), "metadata label missing");
    free(file);
    free(cfgp);

    /* A different seed gives different weights. */
    cr_assert_eq(sh(MISER_BUILD_DIR "/miser synth --out %s --layers 2 --embd 64 --heads 4 --vocab 500 --ctx 32 "
                                    "--dtype f16 --seed 4",
                    b),
                 0);
    cr_assert_neq(sh("cmp -s %s/model.safetensors %s/model.safetensors", a, b), 0);

    /* The independent numpy reference reads miser's file too. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, REF_GPT2 " --model %s --ids 1,2,3 --steps 3", a);
    char *out = capture(cmd);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "last_logits")), 500);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "greedy")), 3);
    cJSON_Delete(j);
    free(out);

    /* Bad command lines: usage errors, no directory created. */
    cr_assert_eq(sh(MISER_BUILD_DIR "/miser synth --out %s/c --embd 30 --heads 4 2>/dev/null", dir), 2);
    cr_assert_eq(sh(MISER_BUILD_DIR "/miser synth --out %s/c --dtype q8_0 2>/dev/null", dir), 2);
    cr_assert_eq(sh(MISER_BUILD_DIR "/miser synth 2>/dev/null"), 2);
    cr_assert_eq(sh("test -e %s/c", dir), 1);
    free(a);
    free(b);
    tmpdir_free(dir);
}

Test(model, st_writer_api)
{
    char *dir = tmpdir_new(), *p = path_of(dir, "x.safetensors");
    miser_st_entry e[2] = {
        {.name = "ids \"quoted\"", .dtype = MISER_DTYPE_I32, .ndim = 1, .shape = {3}},
        {.name = "w", .dtype = MISER_DTYPE_BF16, .ndim = 2, .shape = {2, 2}},
    };
    const char *meta[] = {"k", "v\\1"};
    miser_st_writer *w;
    uint64_t start = miser_mem_total().current;

    /* Too few bytes: error, and nothing appears under the real name. */
    cr_assert_eq(miser_st_writer_open(p, e, 2, meta, 1, &w), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_st_writer_write(w, "abcd", 4), MISER_OK);
    cr_assert_eq(miser_st_writer_close(w), MISER_ERR_INVALID);
    cr_assert_eq(access(p, F_OK), -1);
    cr_assert_eq(sh("ls %s | grep -q tmp", dir), 1);

    int32_t ids[3] = {7, -1, 9};
    uint16_t bf[4] = {0x3f80, 0x4000, 0xbf80, 0};
    cr_assert_eq(miser_st_writer_open(p, e, 2, meta, 1, &w), MISER_OK);
    cr_assert_eq(miser_st_writer_write(w, ids, 6), MISER_OK);
    cr_assert_eq(miser_st_writer_write(w, (char *)ids + 6, 6), MISER_OK);
    cr_assert_eq(miser_st_writer_write(w, bf, 8), MISER_OK);
    cr_assert_eq(miser_st_writer_write(w, bf, 1), MISER_ERR_INVALID);
    cr_assert_eq(miser_st_writer_close(w), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_mem_total().current, start);

    miser_st_file *f;
    cr_assert_eq(miser_st_open(p, &f), MISER_OK, "%s", miser_error_message());
    const miser_st_tensor *t = miser_st_find(&f->hdr, "ids \"quoted\"");
    cr_assert_not_null(t);
    cr_assert_eq(memcmp(miser_st_data(f, t), ids, 12), 0);
    t = miser_st_find(&f->hdr, "w");
    cr_assert_eq(t->dtype, MISER_DTYPE_BF16);
    cr_assert_eq(memcmp(miser_st_data(f, t), bf, 8), 0);
    cr_assert_eq(f->hdr.data_offset % 8, 0);
    miser_st_close(f);

    /* Python's json module agrees about the escaped names and metadata. */
    static const char check[] =
        "import json, struct, sys\n"
        "b = open(sys.argv[1], 'rb').read()\n"
        "n = struct.unpack('<Q', b[:8])[0]\n"
        "h = json.loads(b[8:8 + n])\n"
        "ok = h['__metadata__'] == {'k': 'v\\\\1'} and h['ids \"quoted\"']['data_offsets'] == [0, 12]\n"
        "sys.exit(0 if ok else 1)\n";
    write_file(dir, "check.py", check, strlen(check));
    cr_assert_eq(sh(PY " %s/check.py %s", dir, p), 0);
    e[1].dtype = MISER_DTYPE_Q8_0;
    cr_assert_eq(miser_st_writer_open(p, e, 2, NULL, 0, &w), MISER_ERR_UNSUPPORTED);
    free(p);
    tmpdir_free(dir);
}

/* ---- tensors stored transposed (the q8_0 cache's Conv1D weights) --------------- */

/* A synthetic checkpoint (C = 8, n_inner 32) rewritten into `dst` with
 * `physical` stored transposed ([N, K]) and "miser_transposed" = `listed`. */
static void write_transposed(const char *dst, const char *physical, const char *listed)
{
    char *src = tmpdir_new();
    miser_gpt2_config c = {.n_vocab = 10, .n_ctx = 4, .n_embd = 8, .n_head = 2, .n_layer = 1, .n_inner = 32,
                           .eps = 1e-5f, .eos_token_id = -1};
    miser_synth_options so = {.dtype = MISER_DTYPE_F32, .seed = 9};
    cr_assert_eq(miser_synth_gpt2(src, &c, &so), MISER_OK, "%s", miser_error_message());
    miser_model *m = NULL;
    cr_assert_eq(miser_model_open(src, &m), MISER_OK, "%s", miser_error_message());
    size_t n = miser_model_tensor_count(m);
    miser_st_entry *e = calloc(n, sizeof *e);
    for (size_t i = 0; i < n; i++) {
        const miser_tensor_info *t = miser_model_tensor_at(m, i);
        e[i] = (miser_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim};
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
        if (!strcmp(t->name, physical)) e[i].shape[0] = t->shape[1], e[i].shape[1] = t->shape[0];
    }
    char *p = path_of(dst, "model.safetensors");
    const char *meta[] = {"miser_transposed", listed};
    miser_st_writer *w = NULL;
    cr_assert_eq(miser_st_writer_open(p, e, n, meta, 1, &w), MISER_OK, "%s", miser_error_message());
    for (size_t i = 0; i < n; i++) {
        const miser_tensor_info *t = miser_model_tensor_at(m, i);
        if (!strcmp(t->name, physical)) {
            const int64_t K = t->shape[0], N = t->shape[1];
            float *tr = malloc(t->nbytes);
            for (int64_t k = 0; k < K; k++)
                for (int64_t j = 0; j < N; j++) tr[j * K + k] = ((const float *)t->data)[k * N + j];
            cr_assert_eq(miser_st_writer_write(w, tr, t->nbytes), MISER_OK);
            free(tr);
        } else
            cr_assert_eq(miser_st_writer_write(w, t->data, t->nbytes), MISER_OK);
    }
    cr_assert_eq(miser_st_writer_close(w), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(sh("cp '%s/config.json' '%s/'", src, dst), 0);
    free(e);
    free(p);
    miser_model_free(m);
    tmpdir_free(src);
}

Test(model, transposed_tensor_has_logical_shape_and_strides)
{
    char *dir = tmpdir_new(), *orig = tmpdir_new();
    write_transposed(dir, "h.0.mlp.c_fc.weight", "h.0.mlp.c_fc.weight");
    write_transposed(orig, "", ""); /* the same weights, nothing transposed */
    miser_model *m = NULL, *o = NULL;
    cr_assert_eq(miser_model_open(dir, &m), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_model_open(orig, &o), MISER_OK, "%s", miser_error_message());
    const miser_tensor_info *t = miser_model_tensor(m, "h.0.mlp.c_fc.weight"), *r = miser_model_tensor(o, t->name);
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[0], 8, "logical [K, N] = [n_embd, n_inner]");
    cr_assert_eq(t->shape[1], 32);
    cr_assert_eq(t->stride[0], 1);
    cr_assert_eq(t->stride[1], 8);
    cr_assert_eq(r->stride[0], 32, "row-major");
    cr_assert_eq(r->stride[1], 1);
    for (int64_t k = 0; k < 8; k++)
        for (int64_t n = 0; n < 32; n++)
            cr_assert_eq(((const float *)t->data)[k * t->stride[0] + n * t->stride[1]], ((const float *)r->data)[k * 32 + n],
                         "element (%lld, %lld) through the strides", (long long)k, (long long)n);
    /* every other tensor is row-major */
    for (size_t i = 0; i < miser_model_tensor_count(m); i++) {
        const miser_tensor_info *x = miser_model_tensor_at(m, i);
        if (x == t) continue;
        for (int64_t d = x->ndim - 1, st = 1; d >= 0; st *= x->shape[d--]) cr_assert_eq(x->stride[d], st, "%s", x->name);
    }
    miser_model_free(m);
    miser_model_free(o);
    tmpdir_free(orig);

    /* reading the list allocates: every failure is clean */
    uint64_t start = miser_mem_total().current;
    int ok = 0;
    for (uint64_t n = 1; n < 1000 && !ok; n++) {
        miser_mem_fail_after(n);
        miser_status st = miser_model_open(dir, &m);
        miser_mem_fail_after(0);
        if (st == MISER_OK) {
            ok = 1;
            miser_model_free(m);
        } else
            cr_assert_eq(st, MISER_ERR_NOMEM, "n=%llu: %s", (unsigned long long)n, miser_error_message());
        cr_assert_eq(miser_mem_total().current, start, "leak after failing allocation %llu", (unsigned long long)n);
    }
    cr_assert(ok);

    /* listed but stored [K, N]: its logical shape [N, K] disagrees with config.json */
    write_transposed(dir, "", "h.0.mlp.c_fc.weight");
    const char *needles[] = {"model.safetensors", "'h.0.mlp.c_fc.weight' has shape [32, 8]", "implies [8, 32]", NULL};
    expect_open_fails(dir, MISER_ERR_FORMAT, needles);
    tmpdir_free(dir);
}

/* ---- the numpy reference against Hugging Face ----------------------------------- */

Test(model, ref_gpt2_matches_hf_reference, .timeout = 120)
{
    size_t n;
    char *text = (char *)read_file(HF_TINY "/reference.json", &n);
    cJSON *ref = cJSON_Parse(text);
    cr_assert_not_null(ref);
    float *hello = (float *)read_file(HF_TINY "/hello_last_logits.f32", &n);
    cr_assert_eq(n, 50257 * 4);
    char *dir = tmpdir_new(), *lpath = path_of(dir, "last.f32");
    const cJSON *pr;
    int checked = 0;
    cJSON_ArrayForEach(pr, cJSON_GetObjectItem(ref, "prompts"))
    {
        char ids[512] = "", cmd[1024];
        const cJSON *id;
        cJSON_ArrayForEach(id, cJSON_GetObjectItem(pr, "ids"))
        {
            size_t l = strlen(ids);
            snprintf(ids + l, sizeof ids - l, "%s%d", l ? "," : "", id->valueint);
        }
        snprintf(cmd, sizeof cmd, REF_GPT2 " --model " HF_TINY " --ids %s --steps 20 --top 10 --logits none "
                                  "--logits-out %s",
                 ids, lpath);
        char *out = capture(cmd);
        cJSON *got = cJSON_Parse(out);
        cr_assert_not_null(got);
        const cJSON *g = cJSON_GetObjectItem(got, "greedy"), *w = cJSON_GetObjectItem(pr, "greedy20");
        cr_assert_eq(cJSON_GetArraySize(g), 20);
        for (int i = 0; i < 20; i++)
            cr_assert_eq(cJSON_GetArrayItem(g, i)->valueint, cJSON_GetArrayItem(w, i)->valueint, "prompt %s step %d",
                         ids, i);
        const cJSON *top = cJSON_GetObjectItem(got, "top"), *wt = cJSON_GetObjectItem(pr, "last_logits_top10");
        for (int i = 0; i < 10; i++) {
            cr_assert_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(top, "ids"), i)->valueint,
                         cJSON_GetArrayItem(cJSON_GetObjectItem(wt, "ids"), i)->valueint);
            cr_assert_float_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(top, "vals"), i)->valuedouble,
                               cJSON_GetArrayItem(cJSON_GetObjectItem(wt, "vals"), i)->valuedouble, 1e-6);
        }
        if (!strcmp(cJSON_GetObjectItem(pr, "prompt")->valuestring, "Hello")) {
            float *l = (float *)read_file(lpath, &n);
            cr_assert_eq(n, 50257 * 4);
            for (size_t i = 0; i < 50257; i++) cr_assert_float_eq(l[i], hello[i], 1e-5, "logit %zu", i);
            free(l);
        }
        cJSON_Delete(got);
        free(out);
        checked++;
    }
    cr_assert_geq(checked, 2);
    cJSON_Delete(ref);
    free(text);
    free(hello);
    free(lpath);
    tmpdir_free(dir);
}
