/* GGUF files (include/miser/gguf.h, src/model/gguf*.c, src/kernels/quant4*.c,
 * src/tokenizer/gguf_vocab.c), checked against independent references:
 *  - a corpus of truncated and lying headers built byte by byte here (each
 *    refused with one line naming the file and the problem; exit 3 from the
 *    CLI);
 *  - block decoding of Q4_0, Q4_K, Q6_K, Q8_0 bit for bit against gguf-py's
 *    quants.dequantize (llama.cpp's Python decoder) on random blocks;
 *  - the 4-bit linear kernels of every kernel set against a double-precision
 *    dot product of the decoded weights on odd shapes;
 *  - GPT-2 and Llama GGUF files written from random checkpoints with the gguf
 *    writer `make peers` installs (tools/peers/to_gguf*.py, then
 *    tools/gguf/quantize_gguf.py for the 4-bit types): last-position logits
 *    within 1e-4 relative L2 of a numpy float64 forward of the same
 *    (dequantised) weights (tools/gguf/ref_gguf.py), greedy tokens identical
 *    to numpy's where its top-2 margin exceeds 1e-3, and to llama.cpp's on
 *    the same file where numpy's margin exceeds the per-type tolerance below
 *    (llama.cpp quantises activations to 8 bits for quantised weights);
 *  - tokenizer ids identical to llama.cpp's own tokenize on the same GGUF
 *    for >= 400 strings, per pre-tokenizer and for a SentencePiece file.
 * Tests that need gguf-py or node-llama-cpp skip with a message when
 * `make peers` has not run. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include "json_support.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "kernels/quant4.h"
#include "miser/alloc.h"
#include "miser/gguf.h"
#include "miser/graph.h"
#include "miser/model.h"
#include "miser/runtime.h"
#include "miser/tokenizer.h"

#define PY "/usr/bin/python3"
#define TOOLS MISER_SOURCE_DIR "/tools"
#define MISER MISER_BUILD_DIR "/miser"
#define GGUF_PY TOOLS "/peers/node_modules/.miser-llama.cpp/gguf-py/gguf/__init__.py"

static char g_tmp[64];

static void setup_tmp(void) { cr_assert_eq(test_tmpdir_make(g_tmp, sizeof g_tmp, "/tmp/miser-gguf-XXXXXX"), 0); }

static void teardown_tmp(void) { test_tmpdir_remove(g_tmp); }

TestSuite(gguf, .init = setup_tmp, .fini = teardown_tmp);

static int have_gguf_py(void) { return access(GGUF_PY, R_OK) == 0; }
static int have_llamacpp(void)
{
    return have_gguf_py() && access(TOOLS "/peers/node_modules/node-llama-cpp/package.json", R_OK) == 0 &&
           access("/usr/bin/node", X_OK) == 0;
}

/* ---- a GGUF file built byte by byte ---------------------------------------- */

typedef struct {
    unsigned char b[4096];
    size_t n;
} wbuf;

static size_t put(wbuf *w, const void *p, size_t n)
{
    size_t at = w->n;
    memcpy(w->b + w->n, p, n);
    w->n += n;
    return at;
}
static size_t u32(wbuf *w, uint32_t v) { return put(w, &v, 4); }
static size_t u64(wbuf *w, uint64_t v) { return put(w, &v, 8); }
static size_t str(wbuf *w, const char *s)
{
    size_t at = u64(w, strlen(s));
    put(w, s, strlen(s));
    return at;
}

/* positions of the fields the corpus lies about */
typedef struct {
    size_t version, n_tensors, n_kv, key0, sval, vtype1, align, outer_n, inner_t, boolv, t0_nd, t0_d0, t0_type, t0_off,
        t1_name, t1_d0, t1_off, data;
} layout;

/* A valid v3 file: 5 keys (a string, general.alignment 64, an array of two
 * u8 arrays, a bool, a float64), tensors "a" f32 [2][4] at 0 and "b" q8_0
 * [32] at 64. */
static void build(wbuf *w, layout *L)
{
    memset(w, 0, sizeof *w);
    put(w, "GGUF", 4);
    L->version = u32(w, 3);
    L->n_tensors = u64(w, 2);
    L->n_kv = u64(w, 5);
    L->key0 = str(w, "general.architecture");
    u32(w, MISER_GGUF_STRING);
    L->sval = str(w, "gpt2");
    str(w, "general.alignment");
    L->vtype1 = u32(w, MISER_GGUF_UINT32);
    L->align = u32(w, 64);
    str(w, "x.nested");
    u32(w, MISER_GGUF_ARRAY);
    L->inner_t = u32(w, MISER_GGUF_ARRAY);
    L->outer_n = u64(w, 2);
    L->inner_t = u32(w, MISER_GGUF_UINT8);
    u64(w, 3);
    put(w, "\1\2\3", 3);
    u32(w, MISER_GGUF_UINT8);
    u64(w, 1);
    put(w, "\7", 1);
    str(w, "x.flag");
    u32(w, MISER_GGUF_BOOL);
    L->boolv = put(w, "\1", 1);
    str(w, "x.f64");
    u32(w, MISER_GGUF_FLOAT64);
    double d = 2.5;
    put(w, &d, 8);
    str(w, "a");
    L->t0_nd = u32(w, 2);
    L->t0_d0 = u64(w, 4);
    u64(w, 2);
    L->t0_type = u32(w, MISER_GGML_F32);
    L->t0_off = u64(w, 0);
    L->t1_name = str(w, "b");
    u32(w, 1);
    L->t1_d0 = u64(w, 32);
    u32(w, MISER_GGML_Q8_0);
    L->t1_off = u64(w, 64);
    while (w->n % 64) w->b[w->n++] = 0;
    L->data = w->n;
    for (int i = 0; i < 8; i++) {
        float f = (float)i;
        put(w, &f, 4);
    }
    while (w->n % 64) w->b[w->n++] = 0;
    uint16_t h = miser_f32_to_f16(0.5f);
    put(w, &h, 2);
    for (int i = 0; i < 32; i++) w->b[w->n++] = (unsigned char)(i - 16);
}

static void patch32(wbuf *w, size_t at, uint32_t v) { memcpy(w->b + at, &v, 4); }
static void patch64(wbuf *w, size_t at, uint64_t v) { memcpy(w->b + at, &v, 8); }

Test(gguf, parses_every_value_type)
{
    wbuf w;
    layout L;
    build(&w, &L);
    miser_gguf_file f;
    cr_assert_eq(miser_gguf_parse(w.b, w.n, "mem.gguf", &f), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(f.version, 3);
    cr_assert_eq(f.alignment, 64);
    cr_assert_eq(f.data_offset, L.data);
    const char *s;
    size_t n;
    cr_assert_eq(miser_gguf_get_str(&f, "general.architecture", NULL, &s, &n), MISER_OK);
    cr_assert(n == 4 && !memcmp(s, "gpt2", 4));
    int b = 0, found = 1;
    cr_assert_eq(miser_gguf_get_bool(&f, "x.flag", NULL, &b), MISER_OK);
    cr_assert_eq(b, 1);
    double d = 0;
    cr_assert_eq(miser_gguf_get_float(&f, "x.f64", NULL, &d), MISER_OK);
    cr_assert_eq(d, 2.5);
    const miser_gguf_kv *a;
    cr_assert_eq(miser_gguf_get_arr(&f, "x.nested", MISER_GGUF_ARRAY, NULL, &a), MISER_OK);
    cr_assert_eq(a->n, 2);
    int64_t v;
    cr_assert_eq(miser_gguf_get_int(&f, "missing.key", 0, 10, &found, &v), MISER_OK);
    cr_assert_eq(found, 0);
    cr_assert_eq(miser_gguf_get_int(&f, "x.f64", 0, 10, NULL, &v), MISER_ERR_FORMAT, "a float is not an integer");
    cr_assert(strstr(miser_error_message(), "x.f64 is float64, expected an integer"), "%s", miser_error_message());
    cr_assert_eq(f.n_tensors, 2);
    const miser_gguf_tensor *t = miser_gguf_find_tensor(&f, "a");
    cr_assert(t && t->n_dims == 2 && t->ne[0] == 4 && t->ne[1] == 2 && t->nbytes == 32 && t->dtype == MISER_DTYPE_F32);
    cr_assert_eq(((const float *)miser_gguf_data(&f, t))[5], 5.0f);
    t = miser_gguf_find_tensor(&f, "b");
    cr_assert(t && t->nbytes == 34 && t->dtype == MISER_DTYPE_Q8_0);
    float dq[32];
    miser_to_f32(MISER_DTYPE_Q8_0, miser_gguf_data(&f, t), 0, 32, dq);
    cr_assert_eq(dq[0], -8.0f);
    cr_assert_eq(dq[31], 7.5f);
    miser_gguf_release(&f);
    /* version 2 has the same layout */
    patch32(&w, L.version, 2);
    cr_assert_eq(miser_gguf_parse(w.b, w.n, "mem.gguf", &f), MISER_OK, "%s", miser_error_message());
    miser_gguf_release(&f);
}

typedef struct {
    const char *what, *expect;
    miser_status st;
} lie;

Test(gguf, lying_headers_refused_with_one_line)
{
    wbuf w;
    layout L;
    build(&w, &L);
    const lie lies[] = {
        {"magic", "not a GGUF file", MISER_ERR_FORMAT},
        {"version 1", "GGUF version 1", MISER_ERR_UNSUPPORTED},
        {"version 7", "GGUF version 7", MISER_ERR_FORMAT},
        {"big-endian", "big-endian", MISER_ERR_UNSUPPORTED},
        {"tensor count", "tensors, more than", MISER_ERR_FORMAT},
        {"kv count", "metadata entries, more than", MISER_ERR_FORMAT},
        {"kv count short", "name of tensor info 0 says 562949953421312 bytes", MISER_ERR_FORMAT},
        {"key length", "says 1099511627776 bytes but only", MISER_ERR_FORMAT},
        {"string length", "says 4096 bytes but only", MISER_ERR_FORMAT},
        {"value type", "value type 13, not a GGUF type", MISER_ERR_FORMAT},
        {"nested count", "elements, more than", MISER_ERR_FORMAT},
        {"nested type", "an array of type 99", MISER_ERR_FORMAT},
        {"bool", "a bool of value 2", MISER_ERR_FORMAT},
        {"alignment", "general.alignment is 48, not a power of two", MISER_ERR_FORMAT},
        {"alignment type", "general.alignment is int32, expected uint32", MISER_ERR_FORMAT},
        {"n_dims 5", "has 5 dimensions (1 to 4)", MISER_ERR_FORMAT},
        {"n_dims 0", "has 0 dimensions (1 to 4)", MISER_ERR_FORMAT},
        {"dim 0", "dimension 0 is 0", MISER_ERR_FORMAT},
        {"dims overflow", "are more than the file's", MISER_ERR_FORMAT},
        {"tensor type", "has type 99, not a ggml tensor type", MISER_ERR_FORMAT},
        {"removed type", "has type 4, not a ggml tensor type", MISER_ERR_FORMAT},
        {"misaligned", "offset 8 is not a multiple of the alignment 64", MISER_ERR_FORMAT},
        {"overlap", "tensors 'a' and 'b' overlap", MISER_ERR_FORMAT},
        {"past end", "are past its end", MISER_ERR_FORMAT},
        {"block", "q8_0 needs ne[0] a multiple of 32, got 16", MISER_ERR_FORMAT},
        {"duplicate", "tensor 'a' appears twice", MISER_ERR_FORMAT},
        {"duplicate key", "metadata key 'general.architecture' appears twice", MISER_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        build(&w, &L);
        switch (i) {
        case 0: w.b[3] = 'X'; break;
        case 1: patch32(&w, L.version, 1); break;
        case 2: patch32(&w, L.version, 7); break;
        case 3: patch32(&w, L.version, 0x03000000u); break;
        case 4: patch64(&w, L.n_tensors, 1ull << 40); break;
        case 5: patch64(&w, L.n_kv, 1ull << 40); break;
        case 6: patch64(&w, L.n_kv, 6); break; /* the 6th key runs into the tensor infos */
        case 7: patch64(&w, L.key0, 1ull << 40); break;
        case 8: patch64(&w, L.sval, 4096); break;
        case 9: patch32(&w, L.vtype1, 13); break;
        case 10: patch64(&w, L.outer_n, 1ull << 33); break;
        case 11: patch32(&w, L.inner_t - 0, 99); break;
        case 12: w.b[L.boolv] = 2; break;
        case 13: patch32(&w, L.align, 48); break;
        case 14: patch32(&w, L.vtype1, MISER_GGUF_INT32); break;
        case 15: patch32(&w, L.t0_nd, 5); break;
        case 16: patch32(&w, L.t0_nd, 0); break;
        case 17: patch64(&w, L.t0_d0, 0); break;
        case 18: patch64(&w, L.t0_d0, 1ull << 61); break;
        case 19: patch32(&w, L.t0_type, 99); break;
        case 20: patch32(&w, L.t0_type, 4); break;
        case 21: patch64(&w, L.t0_off, 8); break;
        case 22: patch64(&w, L.t1_off, 0); break;
        case 23: patch64(&w, L.t1_off, 1024); break;
        case 24: patch64(&w, L.t1_d0, 16); break;
        case 25: w.b[L.t1_name + 8] = 'a'; break;
        default: break;
        }
        if (i == 26) { /* a key given twice: a small file of its own */
            wbuf d = {0};
            put(&d, "GGUF", 4);
            u32(&d, 3);
            u64(&d, 0);
            u64(&d, 2);
            for (int k = 0; k < 2; k++) {
                str(&d, "general.architecture");
                u32(&d, MISER_GGUF_STRING);
                str(&d, "gpt2");
            }
            w = d;
        }
        miser_gguf_file f;
        miser_status st = miser_gguf_parse(w.b, w.n, "lie.gguf", &f);
        cr_assert_eq(st, lies[i].st, "%s: status %d (%s)", lies[i].what, st, miser_error_message());
        const char *msg = miser_error_message();
        cr_assert(!strncmp(msg, "lie.gguf: ", 10), "%s: message does not name the file: %s", lies[i].what, msg);
        cr_assert(strstr(msg, lies[i].expect), "%s: '%s' does not say '%s'", lies[i].what, msg, lies[i].expect);
        cr_assert_null(strchr(msg, '\n'), "%s: one line", lies[i].what);
    }
    /* every truncation of the valid file is refused (the data section's last
     * tensor ends at the end of the file) */
    build(&w, &L);
    for (size_t n = 0; n < w.n; n++) {
        miser_gguf_file f;
        miser_status st = miser_gguf_parse(w.b, n, "cut.gguf", &f);
        cr_assert_eq(st, MISER_ERR_FORMAT, "truncated to %zu bytes: status %d", n, st);
        cr_assert(!strncmp(miser_error_message(), "cut.gguf: ", 10), "%s", miser_error_message());
    }
}

/* A model-shaped file whose one tensor is q5_K, and one of another
 * architecture: refused naming the tensor and its type / the key. */
static void write_file(const char *path, const wbuf *w)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(w->b, 1, w->n, f), w->n);
    fclose(f);
}

static void model_file(wbuf *w, const char *arch, uint32_t type)
{
    memset(w, 0, sizeof *w);
    put(w, "GGUF", 4);
    u32(w, 3);
    u64(w, 1);
    u64(w, 1);
    str(w, "general.architecture");
    u32(w, MISER_GGUF_STRING);
    str(w, arch);
    str(w, "token_embd.weight");
    u32(w, 2);
    u64(w, 256);
    u64(w, 2);
    u32(w, type);
    u64(w, 0);
    while (w->n % 32) w->b[w->n++] = 0;
    memset(w->b + w->n, 0, 2048);
    w->n += 2048;
}

Test(gguf, unsupported_architecture_and_type_exit_3)
{
    wbuf w;
    char path[128], err[160];
    miser_model *m = NULL;
    model_file(&w, "bert", MISER_GGML_F32);
    snprintf(path, sizeof path, "%s/bert.gguf", g_tmp);
    write_file(path, &w);
    cr_assert_eq(miser_model_open(path, &m), MISER_ERR_UNSUPPORTED);
    cr_assert(strstr(miser_error_message(), "general.architecture \"bert\""), "%s", miser_error_message());
    snprintf(err, sizeof err, "%s/err", g_tmp);
    cr_assert_eq(test_sh("%s generate --model '%s' --prompt hi --max-new-tokens 1 >/dev/null 2>'%s'", MISER, path, err), 3);
    char *e = test_read_file(err, NULL);
    cr_assert(e && strstr(e, path) && strstr(e, "bert") && strchr(e, '\n') == e + strlen(e) - 1, "stderr: %s", e);
    free(e);
    model_file(&w, "gpt2", 13 /* q5_K */);
    snprintf(path, sizeof path, "%s/q5k.gguf", g_tmp);
    write_file(path, &w);
    cr_assert_eq(miser_model_open(path, &m), MISER_ERR_UNSUPPORTED);
    cr_assert(strstr(miser_error_message(), "tensor 'token_embd.weight' has type q5_K"), "%s", miser_error_message());
    cr_assert_eq(test_sh("%s generate --model '%s' --prompt hi --max-new-tokens 1 >/dev/null 2>'%s'", MISER, path, err), 3);
    e = test_read_file(err, NULL);
    cr_assert(e && strstr(e, path) && strstr(e, "q5_K"), "stderr: %s", e);
    free(e);
    /* lying headers from the CLI: exit 3, one line naming the file */
    layout L;
    build(&w, &L);
    patch64(&w, L.t1_off, 1024);
    snprintf(path, sizeof path, "%s/lie.gguf", g_tmp);
    write_file(path, &w);
    cr_assert_eq(test_sh("%s generate --model '%s' --prompt hi >/dev/null 2>'%s'", MISER, path, err), 3);
    e = test_read_file(err, NULL);
    cr_assert(e && strstr(e, path) && strstr(e, "past its end") && strchr(e, '\n') == e + strlen(e) - 1, "stderr: %s", e);
    free(e);
    w.n = 20; /* truncated in the header */
    write_file(path, &w);
    cr_assert_eq(test_sh("%s generate --model '%s' --prompt hi >/dev/null 2>'%s'", MISER, path, err), 3);
    e = test_read_file(err, NULL);
    cr_assert(e && strstr(e, path) && strstr(e, "truncated"), "stderr: %s", e);
    free(e);
}

/* ---- blocks, bit for bit against gguf-py ------------------------------------ */

Test(gguf, blocks_bit_exact_against_gguf_py)
{
    if (!have_gguf_py()) {
        cr_skip_test("gguf-py is not installed (make peers)");
    }
    static const struct { const char *name; miser_dtype dt; } T[] = {
        {"Q4_0", MISER_DTYPE_Q4_0}, {"Q4_K", MISER_DTYPE_Q4_K}, {"Q6_K", MISER_DTYPE_Q6_K}, {"Q8_0", MISER_DTYPE_Q8_0}};
    char script[2048];
    snprintf(script, sizeof script,
             "import sys; sys.path.insert(0, '" TOOLS "/peers/node_modules/.miser-llama.cpp/gguf-py')\n"
             "import numpy as np, gguf\n"
             "rng = np.random.default_rng(7)\n"
             "for name in ['Q4_0', 'Q4_K', 'Q6_K', 'Q8_0']:\n"
             "    qt = gguf.GGMLQuantizationType[name]\n"
             "    bs, ts = gguf.GGML_QUANT_SIZES[qt]\n"
             "    raw = rng.integers(0, 256, size=(64, ts), dtype=np.uint8)\n"
             "    # f16 scales: random finite values of both signs and magnitudes, zero and subnormal included\n"
             "    pos = {'Q4_0': [0], 'Q8_0': [0], 'Q4_K': [0, 2], 'Q6_K': [ts - 2]}[name]\n"
             "    sc = rng.normal(0, 1, size=(64, len(pos))) * 10.0 ** rng.integers(-8, 3, size=(64, len(pos)))\n"
             "    sc[0, 0] = 0; sc[1, 0] = 3e-7\n"
             "    for j, p in enumerate(pos): raw[:, p:p + 2] = sc[:, j].astype(np.float16).view(np.uint8).reshape(64, 2)\n"
             "    raw.tofile('%s/' + name + '.bin')\n"
             "    gguf.quants.dequantize(raw.reshape(1, -1), qt).astype('<f4').tofile('%s/' + name + '.f32')\n",
             g_tmp, g_tmp);
    char sp[128];
    snprintf(sp, sizeof sp, "%s/blocks.py", g_tmp);
    FILE *f = fopen(sp, "w");
    fputs(script, f);
    fclose(f);
    cr_assert_eq(test_sh(PY " '%s'", sp), 0);
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        char p[160];
        size_t nb = 0, nf = 0;
        snprintf(p, sizeof p, "%s/%s.bin", g_tmp, T[i].name);
        char *raw = test_read_file(p, &nb);
        snprintf(p, sizeof p, "%s/%s.f32", g_tmp, T[i].name);
        char *want = test_read_file(p, &nf);
        const int64_t bl = miser_dtype_block(T[i].dt);
        cr_assert_eq(nb, 64 * miser_dtype_block_bytes(T[i].dt));
        cr_assert_eq(nf, (size_t)(64 * bl) * 4);
        float *got = malloc(nf);
        miser_to_f32(T[i].dt, raw, 0, (uint64_t)(64 * bl), got);
        for (int64_t k = 0; k < 64 * bl; k++) {
            float w;
            memcpy(&w, want + 4 * k, 4);
            uint32_t a, b;
            memcpy(&a, &got[k], 4);
            memcpy(&b, &w, 4);
            cr_assert(a == b || (w != w && got[k] != got[k]), "%s element %lld: miser %.9g, gguf-py %.9g", T[i].name,
                      (long long)k, got[k], w);
            /* element access agrees with the block decoder */
            if (k % 37 == 0) cr_assert_eq(miser_load_elem(T[i].dt, raw, k), got[k]);
        }
        free(got);
        free(raw);
        free(want);
    }
}

/* ---- 4-bit linear kernels of every set, against double dot products --------- */

static uint32_t g_rng = 12345;
static float frand(void)
{
    g_rng = g_rng * 1664525u + 1013904223u;
    return (float)((g_rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* random valid blocks (random bytes, f16 scales small and finite) */
static void rand_blocks(miser_dtype dt, unsigned char *w, size_t nblocks)
{
    const size_t bb = miser_dtype_block_bytes(dt);
    for (size_t i = 0; i < nblocks * bb; i++) w[i] = (unsigned char)((g_rng = g_rng * 1664525u + 1013904223u) >> 24);
    for (size_t b = 0; b < nblocks; b++) {
        unsigned char *p = w + b * bb;
        uint16_t h = miser_f32_to_f16(0.01f * (1.0f + frand())), h2 = miser_f32_to_f16(0.005f * (1.0f + frand()));
        if (dt == MISER_DTYPE_Q6_K) memcpy(p + 208, &h, 2);
        else memcpy(p, &h, 2);
        if (dt == MISER_DTYPE_Q4_K) memcpy(p + 2, &h2, 2);
    }
}

Test(gguf, q4_linear_every_kernel_set)
{
    static const miser_dtype dts[] = {MISER_DTYPE_Q4_0, MISER_DTYPE_Q4_K, MISER_DTYPE_Q6_K};
    static const char *const sets[] = {"ref", "avx2", "avx512"};
    /* M: decode, the row tiles, and from 4 rows the packed panels with each
     * tail of 1-3 rows; K: one panel of K and, at 9 blocks, three (the
     * K-quant panels hold MISER_KQ_PANEL_BLOCKS) */
    static const int64_t Ms[] = {1, 3, 5, 6, 7, 17};
    static const int64_t Ns[] = {1, 7, 33};
    for (size_t dk = 0; dk < 6; dk++) {
        const miser_dtype dt = dts[dk % 3];
        const int64_t bl = miser_dtype_block(dt), K = (dk < 3 ? 3 : 9) * bl;
        for (size_t ni = 0; ni < 3; ni++) {
            const int64_t N = Ns[ni];
            unsigned char *w = malloc((size_t)(N * K / bl) * miser_dtype_block_bytes(dt));
            rand_blocks(dt, w, (size_t)(N * K / bl));
            float *wf = malloc(sizeof(float) * (size_t)(N * K)); /* decoded: verified bit-exact above */
            miser_to_f32(dt, w, 0, (uint64_t)(N * K), wf);
            float bias[64];
            for (int64_t n = 0; n < N; n++) bias[n] = frand();
            for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
                const int64_t M = Ms[mi];
                float *x = malloc(sizeof(float) * (size_t)(M * K)), *y = malloc(sizeof(float) * (size_t)(M * N));
                for (int64_t i = 0; i < M * K; i++) x[i] = frand();
                float *yi = malloc(sizeof(float) * (size_t)(M * N));
                miser_linear_args ai = {.M = M, .N = N, .K = K, .x = x, .ldx = K, .w = w, .wdt = dt, .wsk = 1,
                                        .wsn = K, .bias = bias, .bdt = MISER_DTYPE_F32, .y = yi, .ldy = N};
                for (int th = 0; th < 2; th++) miser_q4_linear_int_ref(&ai, th, 2);
                for (size_t si = 0; si < 3; si++) {
                    const miser_kernels *k = miser_kernels_by_name(sets[si]);
                    if (!k) continue; /* the CPU lacks it */
                    miser_linear_args a = ai;
                    a.y = y;
                    memset(y, 0xff, sizeof(float) * (size_t)(M * N));
                    for (int th = 0; th < 3; th++) k->linear(&a, th, 3);
                    for (int64_t m = 0; m < M; m++)
                        for (int64_t n = 0; n < N; n++) {
                            /* exact: double dot of the decoded weights; the integer path's error is
                             * bounded by |w| times half a quantisation step of x's block */
                            const int64_t xb = dt == MISER_DTYPE_Q4_0 ? 32 : 256;
                            double ref = bias[n], mag = fabs(bias[n]), qerr = 0;
                            for (int64_t kk = 0; kk < K; kk++) {
                                ref += (double)x[m * K + kk] * wf[n * K + kk];
                                mag += fabs((double)x[m * K + kk] * wf[n * K + kk]);
                                if (kk % xb == 0) {
                                    double amax = 0;
                                    for (int64_t j = 0; j < xb; j++) amax = fmax(amax, fabs(x[m * K + kk + j]));
                                    for (int64_t j = 0; j < xb; j++) qerr += fabs(wf[n * K + kk + j]) * amax / 254.0;
                                }
                            }
                            const float got = y[m * N + n];
                            if (si == 0)
                                cr_assert(fabs(got - ref) <= 1e-5 * mag + 1e-6,
                                          "ref %s M=%lld N=%lld: y[%lld,%lld] = %.7g, want %.7g", miser_dtype_name(dt),
                                          (long long)M, (long long)N, (long long)m, (long long)n, got, ref);
                            else {
                                /* every type: the same integers and f32 ops as the scalar integer
                                 * reference, bit for bit (Q4_0: quant4.h's 32-value definition) */
                                uint32_t g1, g2;
                                memcpy(&g1, &got, 4);
                                memcpy(&g2, &yi[m * N + n], 4);
                                cr_assert_eq(g1, g2, "%s %s M=%lld N=%lld: y[%lld,%lld] = %.9g, integer reference %.9g",
                                             sets[si], miser_dtype_name(dt), (long long)M, (long long)N,
                                             (long long)m, (long long)n, got, yi[m * N + n]);
                                cr_assert(fabs(got - ref) <= 1.001 * qerr + 1e-5 * mag + 1e-6,
                                          "%s %s: y[%lld,%lld] = %.7g, exact %.7g, bound %.3g", sets[si],
                                          miser_dtype_name(dt), (long long)m, (long long)n, got, ref, qerr);
                            }
                        }
                }
                free(yi);
                free(x);
                free(y);
            }
            free(w);
            free(wf);
        }
    }
}

/* ---- models against numpy and llama.cpp ------------------------------------ */

static const int32_t PROMPT[] = {1, 2, 3, 17, 4};
/* Where llama.cpp may pick another token: numpy's top-2 margin (of the same
 * dequantised weights) below these, by weight type. llama.cpp computes f32
 * files in f32, but multiplies f16 weights with f16-rounded activations and
 * quantised ones with activations quantised to 8 bits (q8_0 / q8_K blocks),
 * which moves these random models' logits by up to a few tenths. */
#define TOL_F32 1e-3
#define TOL_F16 0.05
#define TOL_Q8 0.3
#define TOL_Q4 0.5
/* last logits of the best kernel set vs numpy, relative L2: q8_0 and 4-bit
 * weights both go through integer dots on 8-bit activations (q8_0 on every
 * SIMD set since the AVX2 integer kernels: quant4.h), whose rounding these
 * random 2-layer models amplify to a few percent of the logits (0.031 for
 * the GPT-2 q8_0 file; llama.cpp's own logits on the same q4_K file are as
 * far from numpy's: 0.014 vs numpy's 0.154 for the top-2 gap of the Llama
 * file): the same bound for both */
#define L2_Q8 0.1
#define L2_Q4 0.1
#define N_PROMPT 5
#define N_GREEDY 12

static void check_model(const char *base, const char *type, const char *conv_prec, double lc_margin, double l2_tol,
                        int use_lc)
{
    char f[200], ref[256], lc[256];
    if (type[0]) snprintf(f, sizeof f, "%s/%s.%s.gguf", g_tmp, base, type);
    else snprintf(f, sizeof f, "%s/%s.%s.gguf", g_tmp, base, conv_prec);
    snprintf(ref, sizeof ref, "%s.ref.json", f);
    snprintf(lc, sizeof lc, "%s.lc.json", f);
    cJSON *r = test_read_json(ref);
    const cJSON *last = cJSON_GetObjectItem(r, "last_logits"), *greedy = cJSON_GetObjectItem(r, "greedy"),
                *margins = cJSON_GetObjectItem(r, "margins");
    miser_model *m;
    miser_plan *p;
    miser_session *s;
    /* the reference kernels: numpy's arithmetic on the same weights */
    cr_assert_eq(miser_kernels_select("ref"), 0);
    cr_assert_eq(miser_model_open(f, &m), MISER_OK, "%s", miser_error_message());
    const int64_t V = miser_model_config(m)->n_vocab;
    cr_assert_eq(cJSON_GetArraySize(last), V);
    cr_assert_eq(miser_plan_compile(m, NULL, &p), MISER_OK, "%s", miser_error_message());
    /* an f32 KV cache (the Llama family's default is f16): the 1e-4 / l2_tol bounds are f32 arithmetic's */
    const miser_session_options kv32 = {.kv_f16 = -1};
    cr_assert_eq(miser_session_create(p, &kv32, &s), MISER_OK, "%s", miser_error_message());
    const float *lg;
    cr_assert_eq(miser_session_eval(s, PROMPT, N_PROMPT, &lg), MISER_OK, "%s", miser_error_message());
    double num = 0, den = 0;
    for (int64_t v = 0; v < V; v++) {
        double want = cJSON_GetArrayItem(last, (int)v)->valuedouble;
        num += (lg[v] - want) * (lg[v] - want);
        den += want * want;
    }
    cr_assert(sqrt(num / den) < 1e-4, "%s: last logits %.3g relative L2 from numpy", f, sqrt(num / den));
    int32_t ids[N_GREEDY];
    int agree = N_GREEDY; /* tokens miser and numpy share (numpy's margins hold up to there) */
    for (int i = 0; i < N_GREEDY; i++) {
        int b = 0;
        for (int64_t v = 1; v < V; v++)
            if (lg[v] > lg[b]) b = (int)v;
        ids[i] = b;
        if (agree == N_GREEDY && b != cJSON_GetArrayItem(greedy, i)->valueint) {
            cr_assert(cJSON_GetArrayItem(margins, i)->valuedouble < 1e-3, "%s: token %d: miser %d, numpy %d", f, i, b,
                      cJSON_GetArrayItem(greedy, i)->valueint);
            agree = i;
        }
        cr_assert_eq(miser_session_eval(s, &ids[i], 1, &lg), MISER_OK);
    }
    miser_session_free(s);
    miser_plan_free(p);
    /* the best set of this CPU: llama.cpp's arithmetic (x quantised per block
     * for the 4-bit weights), within l2_tol of numpy; its tokens are the ones
     * compared with llama.cpp */
    cr_assert_eq(miser_kernels_select("auto"), 0);
    cr_assert_eq(miser_plan_compile(m, NULL, &p), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_session_create(p, &kv32, &s), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_session_eval(s, PROMPT, N_PROMPT, &lg), MISER_OK, "%s", miser_error_message());
    num = 0;
    for (int64_t v = 0; v < V; v++) {
        double want = cJSON_GetArrayItem(last, (int)v)->valuedouble;
        num += (lg[v] - want) * (lg[v] - want);
    }
    cr_assert(sqrt(num / den) < l2_tol, "%s: %s kernels: last logits %.3g relative L2 from numpy", f,
              miser_kernels_get()->name, sqrt(num / den));
    int agree_auto = N_GREEDY;
    for (int i = 0; i < N_GREEDY; i++) {
        int b = 0;
        for (int64_t v = 1; v < V; v++)
            if (lg[v] > lg[b]) b = (int)v;
        if (agree_auto == N_GREEDY && b != ids[i]) agree_auto = i;
        ids[i] = b;
        cr_assert_eq(miser_session_eval(s, &ids[i], 1, &lg), MISER_OK);
    }
    if (agree_auto < agree) { /* the quantised activations flipped a token: only where numpy's margin is small */
        cr_assert(cJSON_GetArrayItem(margins, agree_auto)->valuedouble < lc_margin,
                  "%s: %s kernels: token %d differs from the reference kernels' (numpy margin %.3g)", f,
                  miser_kernels_get()->name, agree_auto, cJSON_GetArrayItem(margins, agree_auto)->valuedouble);
        agree = agree_auto;
    }
    if (use_lc) {
        cJSON *l = test_read_json(lc);
        const cJSON *li = cJSON_GetObjectItem(l, "ids");
        cr_assert_eq(cJSON_GetArraySize(li), N_GREEDY, "%s: llama.cpp ran", f);
        int same = 0;
        for (int i = 0; i < agree; i++) {
            int want = cJSON_GetArrayItem(li, i)->valueint;
            if (ids[i] != want) {
                cr_assert(cJSON_GetArrayItem(margins, i)->valuedouble < lc_margin,
                          "%s: token %d: miser %d, llama.cpp %d (numpy margin %.3g)", f, i, ids[i], want,
                          cJSON_GetArrayItem(margins, i)->valuedouble);
                break;
            }
            same++;
        }
        if (lc_margin <= 1e-3) /* the f32 file: llama.cpp's f32 arithmetic, every token compared */
            cr_assert(same >= 8 || same == agree, "%s: only %d tokens compared with llama.cpp", f, same);
        cJSON_Delete(l);
    }
    cJSON_Delete(r);
    miser_session_free(s);
    miser_plan_free(p);
    miser_model_free(m);
}

/* checkpoint -> GGUF files (one converter run per converter precision, then
 * the requantised ones) -> numpy references and llama.cpp runs, in parallel */
static void prepare(const char *base, const char *mk, const char *conv, const char *const *convs, size_t nconv,
                    const char *const *types, size_t ntypes, int use_lc)
{
    char ids[64];
    size_t k = 0;
    for (int i = 0; i < N_PROMPT; i++) k += (size_t)snprintf(ids + k, sizeof ids - k, "%s%d", i ? "," : "", PROMPT[i]);
    char cmd[8192];
    size_t n = (size_t)snprintf(cmd, sizeof cmd, "set -e; cd '%s'; " PY " " TOOLS "/%s --out %s >/dev/null; ", g_tmp,
                                mk, base);
    for (size_t i = 0; i < nconv; i++)
        n += (size_t)snprintf(cmd + n, sizeof cmd - n, PY " " TOOLS "/peers/%s --model %s --out %s.%s.gguf --precision %s "
                              "2>/dev/null & ", conv, base, base, convs[i], convs[i]);
    n += (size_t)snprintf(cmd + n, sizeof cmd - n, "wait; ");
    for (size_t i = 0; i < ntypes; i++)
        n += (size_t)snprintf(cmd + n, sizeof cmd - n, PY " " TOOLS "/gguf/quantize_gguf.py %s.f32.gguf %s.%s.gguf %s & ",
                              base, base, types[i], types[i]);
    n += (size_t)snprintf(cmd + n, sizeof cmd - n, "wait; L=\\$(ls %s.*.gguf | paste -sd, -); " PY " " TOOLS
                          "/gguf/ref_gguf.py --model \\$L --ids %s --steps %d & ", base, ids, N_GREEDY);
    if (use_lc)
        n += (size_t)snprintf(cmd + n, sizeof cmd - n, "node " TOOLS "/gguf/llamacpp_gguf.js --models \\$L --prompt-ids "
                              "%s --max-new-tokens %d 2>/dev/null & ", ids, N_GREEDY);
    snprintf(cmd + n, sizeof cmd - n, "wait");
    cr_assert_eq(test_sh("bash -c \"%s\"", cmd), 0, "%s", cmd);
}

Test(gguf, gpt2_files_against_numpy_and_llamacpp, .timeout = 120)
{
    if (!have_gguf_py()) cr_skip_test("gguf-py is not installed (make peers)");
    const int lc = have_llamacpp();
    if (!lc) fprintf(stderr, "gguf: node-llama-cpp is not installed (make peers): llama.cpp comparisons skipped\n");
    static const char *const convs[] = {"f32", "q8_0"};
    static const char *const types[] = {"q4_0", "q4_k_m"};
    prepare("g", "make_checkpoint.py --layers 2 --embd 256 --heads 4 --vocab 512 --ctx 64 --std 0.2 --seed 4",
            "to_gguf.py", convs, 2, types, 2, lc);
    check_model("g", "", "f32", TOL_F32, 1e-4, lc);
    check_model("g", "", "q8_0", TOL_Q8, L2_Q8, lc);
    check_model("g", "q4_0", "", TOL_Q4, L2_Q4, lc);
    check_model("g", "q4_k_m", "", TOL_Q4, L2_Q4, lc);
    /* the CLI on the file as it is: tokenizer from its metadata; --precision leaves it as stored */
    char err[128];
    snprintf(err, sizeof err, "%s/err", g_tmp);
    cr_assert_eq(test_sh("%s generate --model '%s/g.q4_0.gguf' --prompt 'Hello world' --max-new-tokens 3 --precision f16 "
                    ">/dev/null 2>'%s'", MISER, g_tmp, err), 0);
    char *e = test_read_file(err, NULL);
    cr_assert(e && strstr(e, "used as stored: --precision f16 is not applied"), "stderr: %s", e);
    free(e);
}

Test(gguf, llama_files_against_numpy_and_llamacpp, .timeout = 120)
{
    if (!have_gguf_py()) cr_skip_test("gguf-py is not installed (make peers)");
    const int lc = have_llamacpp();
    if (!lc) fprintf(stderr, "gguf: node-llama-cpp is not installed (make peers): llama.cpp comparisons skipped\n");
    static const char *const convs[] = {"f32", "f16"};
    static const char *const types[] = {"q4_k", "q6_k"};
    prepare("l", "make_llama_checkpoint.py --layers 2 --hidden 256 --heads 8 --kv-heads 2 --inner 512 --vocab 512 "
            "--seed 5 --std 0.05 --untied", "to_gguf_llama.py", convs, 2, types, 2, lc);
    check_model("l", "", "f32", TOL_F32, 1e-4, lc);
    check_model("l", "", "f16", TOL_F16, 1e-4, lc);
    check_model("l", "q4_k", "", TOL_Q4, L2_Q4, lc);
    check_model("l", "q6_k", "", TOL_Q4, L2_Q4, lc);
}

/* ---- tokenizer ids against llama.cpp's tokenize on the same files ----------- */

static const char *const FRAG[] = {
    "Hello", " world", "  two  spaces", "\n", "\n\n", "\t", "\r\n", "don't", " I'LL", " we've", "'s", "12345",
    " 6789012", "3.14159", "naïve", " café", " résumé", "日本語", "のテキスト", " 中文字符", "한국어", " 🤖", "🎉🎉",
    " emoji👍🏽", "<|endoftext|>", "<|user|>", " hello world", "<|im_start|>", "$100", "+200<=300", "^2~|x", "   ",
    "a1b2c3", " ABC123def", "\x01\x02", "Ünïcödé", " ÀÉÎÕÜ", "x_y-z", "(paren)", "[bracket]", "{brace}", "...",
    "!?", " --flag=value", "über", " straße", "ﬁ ligature", "Ωμέγα", " привет", " мир", "end.",
};
#define N_FRAG (sizeof FRAG / sizeof FRAG[0])

/* >= 400 strings: every fragment alone, then seeded concatenations of 2-5 */
static cJSON *tok_strings(void)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < N_FRAG; i++) cJSON_AddItemToArray(a, cJSON_CreateString(FRAG[i]));
    uint32_t r = 99;
    for (int i = 0; i < 400; i++) {
        char s[512] = "";
        r = r * 1664525u + 1013904223u;
        int n = 2 + (int)((r >> 24) % 4);
        for (int k = 0; k < n; k++) {
            r = r * 1664525u + 1013904223u;
            strncat(s, FRAG[(r >> 16) % N_FRAG], sizeof s - strlen(s) - 1);
        }
        cJSON_AddItemToArray(a, cJSON_CreateString(s));
    }
    return a;
}

Test(gguf, tokenizer_ids_as_llamacpp, .timeout = 120)
{
    if (!have_llamacpp()) cr_skip_test("gguf-py or node-llama-cpp is not installed (make peers)");
    cJSON *strs = tok_strings();
    char path[160], *txt = cJSON_PrintUnformatted(strs);
    snprintf(path, sizeof path, "%s/strings.json", g_tmp);
    FILE *f = fopen(path, "w");
    fputs(txt, f);
    fclose(f);
    free(txt);
    static const char *const pres[] = {"gpt-2", "llama-bpe", "qwen2", "smollm", "default"};
    char cmd[4096];
    size_t n = (size_t)snprintf(cmd, sizeof cmd, "cd '%s' || exit 1; ", g_tmp);
    n += (size_t)snprintf(cmd + n, sizeof cmd - n, PY " " TOOLS "/gguf/vocab_gguf.py bpe --pre %s,%s,%s,%s,%s --out v.gguf & ",
                          pres[0], pres[1], pres[2], pres[3], pres[4]);
    /* a SentencePiece BPE vocabulary trained here (byte fallback, a user-defined symbol) */
    n += (size_t)snprintf(cmd + n, sizeof cmd - n,
                          PY " -c \"import json, sentencepiece as s; l = json.load(open('strings.json')); "
                          "s.SentencePieceTrainer.train(sentence_iterator=iter(l * 3), model_prefix='sp', vocab_size=400, "
                          "model_type='bpe', byte_fallback=True, character_coverage=1.0, "
                          "user_defined_symbols=['<|im_start|>'], minloglevel=2)\" && " PY " " TOOLS
                          "/gguf/vocab_gguf.py spm --sp-model sp.model --out v_spm.gguf & wait; node " TOOLS
                          "/gguf/llamacpp_gguf.js --models v.gpt-2.gguf,v.llama-bpe.gguf,v.qwen2.gguf,v.smollm.gguf,"
                          "v.default.gguf,v_spm.gguf --vocab-only 1 --tokenize strings.json 2>/dev/null");
    cr_assert_eq(test_sh("%s", cmd), 0, "%s", cmd);
    const char *files[] = {"v.gpt-2", "v.llama-bpe", "v.qwen2", "v.smollm", "v.default", "v_spm"};
    const int ns = cJSON_GetArraySize(strs);
    cr_assert_geq(ns, 400);
    for (int fi = 0; fi < 6; fi++) {
        char gg[160], lj[180];
        snprintf(gg, sizeof gg, "%s/%s.gguf", g_tmp, files[fi]);
        snprintf(lj, sizeof lj, "%s.lc.json", gg);
        cJSON *l = test_read_json(lj);
        const cJSON *toks = cJSON_GetObjectItem(l, "tokens");
        cr_assert_eq(cJSON_GetArraySize(toks), ns);
        miser_tokenizer *t;
        cr_assert_eq(miser_tokenizer_open(gg, &t), MISER_OK, "%s", miser_error_message());
        for (int i = 0; i < ns; i++) {
            const char *s = cJSON_GetArrayItem(strs, i)->valuestring;
            int32_t *ids;
            size_t k;
            cr_assert_eq(miser_tokenizer_encode(t, s, strlen(s), MISER_TOKENIZE_SPECIAL_AS_TEXT |
                                                MISER_TOKENIZE_NO_ADD_SPECIAL, &ids, &k), MISER_OK);
            const cJSON *w = cJSON_GetArrayItem(toks, i);
            cr_assert_eq((int)k, cJSON_GetArraySize(w), "%s: string %d '%s': %zu ids, llama.cpp %d", files[fi], i, s,
                         k, cJSON_GetArraySize(w));
            for (size_t q = 0; q < k; q++)
                cr_assert_eq(ids[q], cJSON_GetArrayItem(w, (int)q)->valueint, "%s: string %d '%s': id %zu", files[fi],
                             i, s, q);
            miser_free(ids);
        }
        /* the file's own flags: SentencePiece adds bos, BPE gpt-2 does not */
        int32_t *ids;
        size_t k;
        cr_assert_eq(miser_tokenizer_encode(t, "hi", 2, 0, &ids, &k), MISER_OK);
        if (fi == 5) cr_assert(k >= 1 && ids[0] == miser_tokenizer_bos(t), "spm: bos first");
        miser_free(ids);
        miser_tokenizer_free(t);
        cJSON_Delete(l);
    }
    cJSON_Delete(strs);
    /* an unknown pre-tokenizer is refused, never replaced */
    cr_assert_eq(test_sh("cd '%s' && " PY " " TOOLS "/gguf/vocab_gguf.py bpe --pre made-up --out v_bad.gguf", g_tmp), 0);
    snprintf(path, sizeof path, "%s/v_bad.gguf", g_tmp);
    miser_tokenizer *t = NULL;
    cr_assert_eq(miser_tokenizer_open(path, &t), MISER_ERR_UNSUPPORTED);
    cr_assert(strstr(miser_error_message(), "tokenizer.ggml.pre \"made-up\""), "%s", miser_error_message());
}

/* every allocation failure while opening a GGUF model and its tokenizer is
 * MISER_ERR_NOMEM and leaks nothing */
Test(gguf, allocation_failures_clean)
{
    if (!have_gguf_py()) cr_skip_test("gguf-py is not installed (make peers)");
    char path[160];
    snprintf(path, sizeof path, "%s/s.gguf", g_tmp);
    cr_assert_eq(test_sh("cd '%s' && " PY " " TOOLS "/make_llama_checkpoint.py --out s --layers 1 --hidden 256 --heads 2 "
                    "--inner 256 --vocab 300 >/dev/null && " PY " " TOOLS "/peers/to_gguf_llama.py --model s --out s.f32.gguf "
                    "2>/dev/null && " PY " " TOOLS "/gguf/quantize_gguf.py s.f32.gguf s.gguf q4_k_m", g_tmp), 0);
    const int64_t base = miser_mem_total().current;
    int done = 0;
    for (uint64_t n = 1; n < 400 && !done; n++) {
        miser_mem_fail_after(n);
        miser_model *m = NULL;
        miser_tokenizer *t = NULL;
        miser_status st = miser_model_open(path, &m);
        if (!st) st = miser_tokenizer_open(path, &t);
        miser_mem_fail_after(0);
        if (st == MISER_OK) done = 1;
        else cr_assert_eq(st, MISER_ERR_NOMEM, "failure %llu: status %d (%s)", (unsigned long long)n, st,
                          miser_error_message());
        miser_tokenizer_free(t);
        miser_model_free(m);
        cr_assert_eq(miser_mem_total().current, base, "failure %llu leaked %lld bytes", (unsigned long long)n,
                     (long long)(miser_mem_total().current - base));
    }
    cr_assert(done, "open + tokenizer did not succeed within 400 allocations");
}
