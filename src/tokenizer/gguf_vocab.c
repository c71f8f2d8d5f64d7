/* The tokenizer of a GGUF file, from its tokenizer.ggml.* metadata, built
 * with miser_tokenizer_build (tokenizer.h) the way llama.cpp's
 * llama-vocab.cpp reads the same keys:
 *  - model "gpt2": byte-level BPE from tokens + merges, split first by the
 *    regexes llama.cpp uses for tokenizer.ggml.pre (absent: "default", as
 *    llama.cpp; a name not in the table below is refused, never guessed);
 *    llama-bpe also ignores merges for whole-token pieces;
 *  - model "llama": SentencePiece from tokens + scores + token_type, <0xNN>
 *    byte tokens, the ▁ space prefix (tokenizer.ggml.add_space_prefix,
 *    default on); bos 1 / eos 2 / unk 0 and add_bos on unless the file says;
 *  - control and user-defined tokens (token_type 3 / 4) are split out of the
 *    text before anything else (control ones are special).
 * Token strings are passed as pointers into the mapping; the builder copies
 * them, so the file is unmapped when this returns. */
#include "miser/gguf.h"
#include "miser/tokenizer.h"

#include "miser/alloc.h"

#include <stdio.h>
#include <string.h>

/* llama.cpp's llm_tokenizer_bpe regexes by pre-tokenizer type. */
#define RX_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RX_LLAMA3                                                                                                      \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "            \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_QWEN2                                                                                                       \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "                 \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const char *const k_rx_gpt2[] = {RX_GPT2};
static const char *const k_rx_llama3[] = {RX_LLAMA3};
static const char *const k_rx_qwen2[] = {RX_QWEN2};
static const char *const k_rx_smollm[] = {"\\p{N}", RX_GPT2};
static const char *const k_rx_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RX_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"};

static const struct {
    const char *name;
    const char *const *rx;
    size_t n;
    int ignore_merges, add_bos;
} k_pre[] = {
    {"default", k_rx_default, 4, 0, 0},
    {"gpt-2", k_rx_gpt2, 1, 0, 0},     {"mpt", k_rx_gpt2, 1, 0, 0},      {"olmo", k_rx_gpt2, 1, 0, 0},
    {"llama-bpe", k_rx_llama3, 1, 1, 1}, {"llama3", k_rx_llama3, 1, 1, 1}, {"llama-v3", k_rx_llama3, 1, 1, 1},
    {"qwen2", k_rx_qwen2, 1, 0, 0},     {"stablelm2", k_rx_qwen2, 1, 0, 0},
    {"smollm", k_rx_smollm, 2, 0, 0},   {"starcoder", k_rx_smollm, 2, 0, 0}, {"refact", k_rx_smollm, 2, 0, 0},
    {"command-r", k_rx_smollm, 2, 0, 0},
};

static miser_status tok_id(const miser_gguf_file *f, const char *key, int64_t n, int32_t def, int32_t *out)
{
    int found = 0;
    int64_t v = def;
    miser_status st = miser_gguf_get_int(f, key, 0, n - 1, &found, &v);
    *out = found ? (int32_t)v : def;
    return st;
}

static miser_status get_flag(const miser_gguf_file *f, const char *key, int def, int *out)
{
    int found = 0, v = def;
    miser_status st = miser_gguf_get_bool(f, key, &found, &v);
    *out = found ? v : def;
    return st;
}

miser_status miser_gguf_tokenizer(const miser_gguf_file *f, miser_tokenizer **out)
{
    *out = NULL;
    const char *model = NULL;
    size_t ml = 0;
    miser_status st = miser_gguf_get_str(f, "tokenizer.ggml.model", NULL, &model, &ml);
    if (st) return st;
    miser_tokenizer_spec sp = {.name = f->path, .bos = -1, .eos = -1, .unk = -1};
    int spm = ml == 5 && !memcmp(model, "llama", 5);
    if (!spm && !(ml == 4 && !memcmp(model, "gpt2", 4)))
        return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model \"%.*s\" is not supported (gpt2, "
                               "llama)", f->path, (int)(ml > 32 ? 32 : ml), model);
    const miser_gguf_kv *toks = NULL, *types = NULL, *scores = NULL, *merges = NULL;
    int found = 0;
    if ((st = miser_gguf_get_arr(f, "tokenizer.ggml.tokens", MISER_GGUF_STRING, NULL, &toks))) return st;
    if (toks->n == 0 || toks->n > (1u << 24))
        return miser_error_set(MISER_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu entries", f->path,
                               (unsigned long long)toks->n);
    const size_t n = (size_t)toks->n;
    if ((st = miser_gguf_get_arr(f, "tokenizer.ggml.token_type", MISER_GGUF_INT32, &found, &types))) return st;
    if (found && types->n != n)
        return miser_error_set(MISER_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries for %zu tokens",
                               f->path, (unsigned long long)types->n, n);
    if (!found) types = NULL;
    if (spm) {
        if ((st = miser_gguf_get_arr(f, "tokenizer.ggml.scores", MISER_GGUF_FLOAT32, NULL, &scores))) return st;
        if (scores->n != n)
            return miser_error_set(MISER_ERR_FORMAT, "%s: tokenizer.ggml.scores has %llu entries for %zu tokens",
                                   f->path, (unsigned long long)scores->n, n);
    } else {
        if ((st = miser_gguf_get_arr(f, "tokenizer.ggml.merges", MISER_GGUF_STRING, NULL, &merges))) return st;
        const char *pre = "default";
        size_t pl = 7;
        if ((st = miser_gguf_get_str(f, "tokenizer.ggml.pre", &found, &pre, &pl))) return st;
        if (!found) pre = "default", pl = 7;
        size_t i = 0;
        while (i < sizeof k_pre / sizeof k_pre[0] && !(strlen(k_pre[i].name) == pl && !memcmp(k_pre[i].name, pre, pl))) i++;
        if (i == sizeof k_pre / sizeof k_pre[0])
            return miser_error_set(MISER_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre \"%.*s\" is not a pre-tokenizer "
                                   "miser knows (default, gpt-2, llama-bpe, qwen2, smollm, ...)", f->path,
                                   (int)(pl > 40 ? 40 : pl), pre);
        sp.regexes = k_pre[i].rx;
        sp.n_regexes = k_pre[i].n;
        sp.ignore_merges = k_pre[i].ignore_merges;
        sp.add_bos = k_pre[i].add_bos;
        sp.byte_level = 1;
    }
    sp.model = spm ? MISER_TOKMODEL_SPM : MISER_TOKMODEL_BPE;
    if ((st = tok_id(f, "tokenizer.ggml.bos_token_id", (int64_t)n, spm ? 1 : -1, &sp.bos)) ||
        (st = tok_id(f, "tokenizer.ggml.eos_token_id", (int64_t)n, spm ? 2 : -1, &sp.eos)) ||
        (st = tok_id(f, "tokenizer.ggml.unknown_token_id", (int64_t)n, spm ? 0 : -1, &sp.unk)) ||
        (st = get_flag(f, "tokenizer.ggml.add_bos_token", spm ? 1 : sp.add_bos, &sp.add_bos)) ||
        (st = get_flag(f, "tokenizer.ggml.add_eos_token", 0, &sp.add_eos)) ||
        (st = get_flag(f, "tokenizer.ggml.add_space_prefix", spm, &sp.add_space_prefix)))
        return st;
    if (sp.bos >= (int64_t)n) sp.bos = -1;
    if (sp.eos >= (int64_t)n) sp.eos = -1;
    if (sp.unk >= (int64_t)n) sp.unk = -1;
    if (sp.add_bos && sp.bos < 0) sp.add_bos = 0;
    if (sp.add_eos && sp.eos < 0) sp.add_eos = 0;

    const char **tp = miser_malloc(MISER_MEM_SCRATCH, n * sizeof *tp);
    size_t *tl = miser_malloc(MISER_MEM_SCRATCH, n * sizeof *tl);
    int32_t *ty = types ? miser_malloc(MISER_MEM_SCRATCH, n * sizeof *ty) : NULL;
    float *sc = scores ? miser_malloc(MISER_MEM_SCRATCH, n * sizeof *sc) : NULL;
    size_t nm = merges ? (size_t)merges->n : 0;
    const char **mp = nm ? miser_malloc(MISER_MEM_SCRATCH, nm * sizeof *mp) : NULL;
    size_t *mlen = nm ? miser_malloc(MISER_MEM_SCRATCH, nm * sizeof *mlen) : NULL;
    if (!tp || !tl || (types && !ty) || (scores && !sc) || (nm && (!mp || !mlen))) {
        st = MISER_ERR_NOMEM;
        goto done;
    }
    const unsigned char *pos = toks->data;
    for (size_t i = 0; i < n; i++) miser_gguf_next_str(&pos, &tp[i], &tl[i]);
    for (size_t i = 0; ty && i < n; i++) ty[i] = (int32_t)miser_gguf_arr_i64(types, i);
    for (size_t i = 0; sc && i < n; i++) sc[i] = (float)miser_gguf_arr_f64(scores, i);
    pos = nm ? merges->data : NULL;
    for (size_t i = 0; i < nm; i++) miser_gguf_next_str(&pos, &mp[i], &mlen[i]);
    sp.n_tokens = n;
    sp.tokens = tp;
    sp.token_lens = tl;
    sp.token_types = ty;
    sp.scores = sc;
    sp.n_merges = nm;
    sp.merges = mp;
    sp.merge_lens = mlen;
    st = miser_tokenizer_build(&sp, out);
done:
    miser_free(tp);
    miser_free(tl);
    miser_free(ty);
    miser_free(sc);
    miser_free(mp);
    miser_free(mlen);
    return st;
}

miser_status miser_tokenizer_open_gguf(const char *path, miser_tokenizer **out)
{
    *out = NULL;
    miser_gguf_file *f = NULL;
    miser_status st = miser_gguf_open(path, &f);
    if (st) return st;
    st = miser_gguf_tokenizer(f, out);
    miser_gguf_close(f);
    return st;
}
