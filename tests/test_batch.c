/* Batched multi-sequence steps (miser/batch.h, issue 16) and the paged KV
 * pool. Batch invariance: 16 sequences with different prompt lengths, chunk
 * sizes and generation lengths, joining and leaving at different steps, run
 * (a) each alone through miser_session_eval (the path `miser generate`
 * takes, itself checked against Hugging Face elsewhere), (b) each alone
 * through a batch and (c) all together in one batch whose passes are smaller
 * than a step's rows (so items are split across passes), at threads 1 and 2;
 * the logits of every item must be bit-identical (memcmp) to (a). Models:
 * GPT-2 (tests/data/hf-tiny-a), a synthetic GQA Llama (f16 KV cache) and a
 * synthetic GPT-2 with head_dim 64 (the AVX-512 attention kernel's shape),
 * at f32 and q8_0 weights (the converted-weights cache, made in the test's
 * temp dir), with every kernel set this CPU runs. The pool: byte formula =
 * the allocation, blocks back to 0, admission refusals, reuse. */
#include <criterion/criterion.h>

#include "support.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "miser/alloc.h"
#include "miser/batch.h"
#include "miser/model.h"
#include "miser/precision.h"
#include "miser/safetensors.h"

#define NSEQ 16
#define MAXTOK 96

static char g_tmp[64];

static void setup_tmp(void)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/miser-batch-XXXXXX");
    cr_assert_not_null(mkdtemp(g_tmp));
}

static void teardown_tmp(void)
{
    if (g_tmp[0]) (void)test_sh("rm -rf '%s'", g_tmp);
}

TestSuite(batch, .init = setup_tmp, .fini = teardown_tmp);

/* ---- the schedule ---- */

typedef struct {
    int join, plen, chunk, ngen;
    int32_t tok[MAXTOK];
    int n_items;
} seqplan;

static void make_plans(seqplan *sp, int64_t V)
{
    static const int chunks[] = {1, 5, 16, 24, 40, 7, 64, 3};
    uint64_t r = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < NSEQ; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        seqplan *p = &sp[i];
        p->join = (int)((r >> 33) % 9);
        p->plen = 1 + (int)((r >> 40) % 45);
        p->chunk = chunks[(r >> 20) % 8];
        p->ngen = 1 + (int)((r >> 50) % 10);
        for (int k = 0; k < p->plen + p->ngen; k++) p->tok[k] = (int32_t)((i * 7919 + k * 104729 + 13) % (V < 997 ? V : 997));
        p->n_items = (p->plen + p->chunk - 1) / p->chunk + p->ngen - 1;
    }
}

/* item k of sequence p: [*off, *off + *n) of its tokens */
static void item_of(const seqplan *p, int k, int *off, int *n)
{
    const int npre = (p->plen + p->chunk - 1) / p->chunk;
    if (k < npre) {
        *off = k * p->chunk;
        *n = p->plen - *off < p->chunk ? p->plen - *off : p->chunk;
    } else {
        *off = p->plen + (k - npre);
        *n = 1;
    }
}

typedef struct {
    const char *label;
    const char *dir;
    int kv_f16;
} model_case;

static float *g_ref[NSEQ]; /* [n_items][V] per sequence: the session's logits */

static void check_item(const char *what, const model_case *mc, const char *ks, int threads, int i, int k, const float *lg,
                       int64_t V)
{
    cr_assert_not_null(lg, "%s %s %s threads %d: seq %d item %d has no logits", what, mc->label, ks, threads, i, k);
    const float *ref = g_ref[i] + (size_t)k * (size_t)V;
    if (memcmp(lg, ref, sizeof(float) * (size_t)V)) {
        int64_t first = -1, nd = 0;
        double md = 0;
        for (int64_t v = 0; v < V; v++)
            if (memcmp(&lg[v], &ref[v], sizeof(float))) {
                if (first < 0) first = v;
                nd++;
                double d = fabs((double)lg[v] - ref[v]);
                if (d > md) md = d;
            }
        cr_assert_fail("%s %s (kernels %s, threads %d): seq %d item %d logits differ from the lone session's in %lld of "
                       "%lld values (first %lld: %.9g vs %.9g, max |diff| %.3g)",
                       what, mc->label, ks, threads, i, k, (long long)nd, (long long)V, (long long)first, lg[first],
                       ref[first], md);
    }
}

static void run_case(const model_case *mc, const char *ks)
{
    miser_model *m;
    cr_assert_eq(miser_model_open(mc->dir, &m), MISER_OK, "%s", miser_error_message());
    miser_plan *p;
    /* passes of 24 rows: the crowded steps (up to 16 x 64 rows) split items across passes */
    miser_compile_options co = {.max_batch = 24, .max_context = 96};
    cr_assert_eq(miser_plan_compile(m, &co, &p), MISER_OK, "%s", miser_error_message());
    const int64_t V = miser_model_config(m)->n_vocab;
    seqplan sp[NSEQ];
    make_plans(sp, V);
    /* (a) each alone through a session, chunk by chunk as the schedule feeds it */
    for (int i = 0; i < NSEQ; i++) {
        g_ref[i] = malloc(sizeof(float) * (size_t)(V * sp[i].n_items));
        miser_session *s;
        miser_session_options so = {.threads = 1, .kv_f16 = mc->kv_f16};
        cr_assert_eq(miser_session_create(p, &so, &s), MISER_OK, "%s", miser_error_message());
        for (int k = 0; k < sp[i].n_items; k++) {
            int off, n;
            item_of(&sp[i], k, &off, &n);
            const float *lg;
            cr_assert_eq(miser_session_eval(s, sp[i].tok + off, n, &lg), MISER_OK, "%s", miser_error_message());
            memcpy(g_ref[i] + (size_t)k * (size_t)V, lg, sizeof(float) * (size_t)V);
        }
        miser_session_free(s);
    }
    for (int threads = 1; threads <= 2; threads++) {
        miser_batch *b;
        miser_batch_options bo = {.n_seqs = NSEQ, .threads = threads, .kv_f16 = mc->kv_f16};
        cr_assert_eq(miser_batch_create(p, &bo, &b), MISER_OK, "%s", miser_error_message());
        miser_kv_pool *pool = miser_batch_pool(b);
        /* (b) each alone in the batch (in its own slot), then released */
        for (int i = 0; i < NSEQ && threads == 1; i++) {
            cr_assert_eq(miser_batch_seq_reserve(b, i, sp[i].plen + sp[i].ngen), 0);
            for (int k = 0; k < sp[i].n_items; k++) {
                int off, n;
                item_of(&sp[i], k, &off, &n);
                miser_batch_item it = {.seq = i, .ids = sp[i].tok + off, .n = n, .want_logits = 1};
                cr_assert_eq(miser_batch_step(b, &it, 1), MISER_OK, "%s", miser_error_message());
                cr_assert_eq(it.status, MISER_OK, "%s", miser_error_message());
                check_item("alone", mc, ks, threads, i, k, it.logits, V);
            }
            cr_assert_eq(miser_batch_seq_position(b, i), sp[i].plen + sp[i].ngen - 1);
            miser_batch_seq_release(b, i);
            cr_assert_eq(miser_kv_pool_blocks_used(pool), 0);
            cr_assert_eq(miser_kv_pool_blocks_reserved(pool), 0);
        }
        /* (c) together: sequences join at their step and leave when done; the
         * items go in a rotating order so a sequence's rows move around */
        int next[NSEQ] = {0}, max_active = 0;
        for (int t = 0;; t++) {
            miser_batch_item items[NSEQ];
            int who[NSEQ], n = 0, left = 0;
            for (int q = 0; q < NSEQ; q++) {
                const int i = (q + t) % NSEQ;
                if (next[i] >= sp[i].n_items) continue;
                left++;
                if (t < sp[i].join) continue;
                if (next[i] == 0) cr_assert_eq(miser_batch_seq_reserve(b, i, sp[i].plen + sp[i].ngen), 0);
                int off, cnt;
                item_of(&sp[i], next[i], &off, &cnt);
                items[n] = (miser_batch_item){.seq = i, .ids = sp[i].tok + off, .n = cnt, .want_logits = 1};
                who[n++] = i;
            }
            if (!left) break;
            if (n > max_active) max_active = n;
            cr_assert_eq(miser_batch_step(b, items, n), MISER_OK, "%s", miser_error_message());
            for (int j = 0; j < n; j++) {
                const int i = who[j];
                cr_assert_eq(items[j].status, MISER_OK, "%s", miser_error_message());
                check_item("crowded", mc, ks, threads, i, next[i], items[j].logits, V);
                if (++next[i] == sp[i].n_items) miser_batch_seq_release(b, i);
            }
        }
        cr_assert_geq(max_active, 12, "the schedule should run most sequences together (%d)", max_active);
        cr_assert_eq(miser_kv_pool_blocks_used(pool), 0);
        cr_assert_eq(miser_kv_pool_blocks_reserved(pool), 0);
        miser_batch_free(b);
    }
    for (int i = 0; i < NSEQ; i++) {
        free(g_ref[i]);
        g_ref[i] = NULL;
    }
    miser_plan_free(p);
    miser_model_free(m);
}

/* every kernel set (all_sets), or the one this CPU picks: the reference set
 * is slow on GPT-2's 50257-row head */
static void run_sets(const model_case *mc, int all_sets)
{
    char sets[64];
    snprintf(sets, sizeof sets, "%s", all_sets ? miser_kernels_available() : miser_kernels_get()->name);
    for (char *save = NULL, *ks = strtok_r(sets, " ", &save); ks; ks = strtok_r(NULL, " ", &save)) {
        cr_assert_eq(miser_kernels_select(ks), 0);
        run_case(mc, ks);
    }
    miser_kernels_select("auto");
}

static const char *q8(const char *dir)
{
    char cache[128];
    snprintf(cache, sizeof cache, "%s/cache", g_tmp);
    miser_precision_options po = {.cache_dir = cache};
    char *out = NULL, note[512];
    int conv = 0;
    cr_assert_eq(miser_precision_prepare(dir, MISER_DTYPE_Q8_0, &po, &out, note, sizeof note, &conv), MISER_OK, "%s",
                 miser_error_message());
    static char keep[4][256];
    static int nk;
    char *k = keep[nk++ % 4];
    snprintf(k, 256, "%s", out ? out : dir);
    miser_free(out);
    return k;
}

static const char *synth_llama(void)
{
    static char dir[128];
    snprintf(dir, sizeof dir, "%s/llama", g_tmp);
    miser_config c;
    cr_assert_eq(miser_llama_preset("tiny", &c), MISER_OK);
    c.n_ctx = 128;
    miser_synth_options so = {.dtype = MISER_DTYPE_F32, .seed = 11};
    cr_assert_eq(miser_synth_llama(dir, &c, &so), MISER_OK, "%s", miser_error_message());
    return dir;
}

static const char *synth_gpt2_d64(void)
{
    static char dir[128];
    snprintf(dir, sizeof dir, "%s/gpt2d64", g_tmp);
    miser_gpt2_config c = {.n_vocab = 1000, .n_ctx = 128, .n_embd = 128, .n_head = 2, .n_layer = 2, .n_inner = 256,
                           .eps = 1e-5f, .eos_token_id = -1};
    miser_synth_options so = {.dtype = MISER_DTYPE_F32, .seed = 5};
    cr_assert_eq(miser_synth_gpt2(dir, &c, &so), MISER_OK, "%s", miser_error_message());
    return dir;
}

#define GPT2_TINY MISER_SOURCE_DIR "/tests/data/hf-tiny-a"

Test(batch, invariance_gpt2_f32) { run_sets(&(model_case){"gpt2 f32", GPT2_TINY, 0}, 0); }
Test(batch, invariance_gpt2_q8_0) { run_sets(&(model_case){"gpt2 q8_0", q8(GPT2_TINY), 0}, 0); }
Test(batch, invariance_llama_gqa_f32_kv_f16) { run_sets(&(model_case){"llama gqa f32", synth_llama(), 1}, 1); }
Test(batch, invariance_llama_gqa_q8_0)
{
    const char *d = synth_llama();
    run_sets(&(model_case){"llama gqa q8_0", q8(d), 0}, 1);
}
Test(batch, invariance_gpt2_head_dim_64) { run_sets(&(model_case){"gpt2 d64 f32", synth_gpt2_d64(), 0}, 0); }

/* ---- the pool ---- */

Test(batch, pool_bytes_are_the_allocation)
{
    miser_kv_geom g = {.n_layer = 3, .kv_heads = 2, .head_dim = 24, .block_tokens = 16, .f16 = 0};
    /* 2 (K, V) x 3 layers x 16 positions x 48 floats x 4 bytes, a multiple of 64 */
    cr_assert_eq(miser_kv_block_bytes(&g), 2u * 3 * 16 * 48 * 4);
    g.f16 = 1;
    cr_assert_eq(miser_kv_block_bytes(&g), 2u * 3 * 16 * 48 * 2);
    cr_assert_eq(miser_kv_pool_bytes(&g, 10), 10 * miser_kv_block_bytes(&g));
    cr_assert_eq(miser_kv_blocks_for(&g, 0), 0);
    cr_assert_eq(miser_kv_blocks_for(&g, 16), 1);
    cr_assert_eq(miser_kv_blocks_for(&g, 17), 2);
    g.head_dim = 3; /* 2 x 3 x 16 x 6 x 2 = 1152 bytes, already a multiple of 64; 1 KV head x 3: 576 */
    g.kv_heads = 1;
    cr_assert_eq(miser_kv_block_bytes(&g), 576);
    g.block_tokens = 1; /* 2 x 3 x 1 x 3 x 2 = 36 -> 64 */
    cr_assert_eq(miser_kv_block_bytes(&g), 64);
    const uint64_t before = miser_mem_get(MISER_MEM_KV).current;
    miser_kv_pool *p;
    cr_assert_eq(miser_kv_pool_create(&g, 7, &p), MISER_OK);
    cr_assert_eq(miser_mem_get(MISER_MEM_KV).current - before, miser_kv_pool_bytes(&g, 7));
    miser_kv_pool_free(p);
    cr_assert_eq(miser_mem_get(MISER_MEM_KV).current, before);
}

Test(batch, pool_admission_and_reuse)
{
    miser_model *m;
    cr_assert_eq(miser_model_open(GPT2_TINY, &m), MISER_OK, "%s", miser_error_message());
    miser_plan *p;
    miser_compile_options co = {.max_batch = 32, .max_context = 64};
    cr_assert_eq(miser_plan_compile(m, &co, &p), MISER_OK, "%s", miser_error_message());
    miser_batch *b;
    /* 6 blocks of 16 positions: one whole context (64 = 4 blocks) and a bit */
    miser_batch_options bo = {.n_seqs = 3, .n_blocks = 6, .block_tokens = 16};
    const uint64_t kv0 = miser_mem_get(MISER_MEM_KV).current, total0 = miser_mem_total().current;
    cr_assert_eq(miser_batch_create(p, &bo, &b), MISER_OK, "%s", miser_error_message());
    miser_kv_pool *pool = miser_batch_pool(b);
    miser_kv_geom g;
    miser_kv_geom_of_plan(p, 0, 16, &g);
    cr_assert_eq(miser_mem_get(MISER_MEM_KV).current - kv0, miser_kv_pool_bytes(&g, 6));
    /* the footprint the budget predictor reads is what was allocated */
    miser_batch_footprint fp;
    miser_batch_footprint_get(p, &bo, &fp);
    cr_assert_eq(fp.kv_bytes, miser_kv_pool_bytes(&g, 6));
    cr_assert_eq(fp.n_blocks, 6);
    cr_assert_eq(fp.capacity, 64);
    const uint64_t all = fp.kv_bytes + fp.arena_bytes + fp.scratch_bytes + fp.tail_bytes + fp.other_bytes;
    /* within the small structs it does not count (the thread pool's, the pool's own) */
    const uint64_t got = miser_mem_total().current - total0;
    cr_assert(got >= all && got <= all + 1024, "allocated %llu, footprint %llu (arena %llu scratch %llu tail %llu other %llu)",
                 (unsigned long long)(miser_mem_total().current - total0), (unsigned long long)all,
                 (unsigned long long)fp.arena_bytes, (unsigned long long)fp.scratch_bytes, (unsigned long long)fp.tail_bytes,
                 (unsigned long long)fp.other_bytes);
    cr_assert_eq(miser_kv_pool_blocks_total(pool), 6);
    /* promises: 40 positions = 3 blocks, then 40 more fits (6), a third does not */
    cr_assert_eq(miser_batch_seq_reserve(b, 0, 40), 0);
    cr_assert_eq(miser_batch_seq_reserve(b, 1, 33), 0);
    cr_assert_eq(miser_batch_seq_reserve(b, 2, 1), -1, "admission must refuse what the pool cannot promise");
    cr_assert_eq(miser_kv_pool_blocks_reserved(pool), 6);
    cr_assert_eq(miser_kv_pool_blocks_used(pool), 0);
    /* beyond the capacity a promise is capped at it (64 positions: 4 blocks) */
    int32_t ids[64];
    for (int i = 0; i < 64; i++) ids[i] = (i * 37 + 5) % 1000;
    miser_batch_item it[3] = {{.seq = 0, .ids = ids, .n = 20, .want_logits = 1},
                              {.seq = 1, .ids = ids, .n = 33, .want_logits = 1},
                              {.seq = 2, .ids = ids, .n = 1, .want_logits = 1}};
    /* sequence 2 has no promise and no block is free: it fails alone, changing nothing */
    cr_assert_eq(miser_batch_step(b, it, 3), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(it[0].status, MISER_OK);
    cr_assert_eq(it[1].status, MISER_OK);
    cr_assert_eq(it[2].status, MISER_ERR_NOMEM);
    cr_assert_null(it[2].logits);
    cr_assert_eq(miser_batch_seq_position(b, 2), 0);
    cr_assert_eq(miser_kv_pool_blocks_used(pool), 2 + 3);
    cr_assert_eq(miser_kv_pool_blocks_reserved(pool), 1);
    /* a sequence that ends frees its blocks for the next */
    miser_batch_seq_release(b, 1);
    cr_assert_eq(miser_kv_pool_blocks_used(pool), 2);
    cr_assert_eq(miser_batch_seq_reserve(b, 2, 64), -1); /* 4 blocks; 3 free */
    cr_assert_eq(miser_batch_seq_reserve(b, 2, 48), 0);
    cr_assert_eq(miser_kv_pool_blocks_free(pool), 0);
    /* growing within a promise never fails; past the capacity is refused */
    miser_batch_item a = {.seq = 0, .ids = ids, .n = 20, .want_logits = 1};
    cr_assert_eq(miser_batch_step(b, &a, 1), MISER_OK);
    cr_assert_eq(a.status, MISER_OK);
    cr_assert_eq(miser_batch_seq_position(b, 0), 40);
    a.n = 25;
    cr_assert_eq(miser_batch_step(b, &a, 1), MISER_OK);
    cr_assert_eq(a.status, MISER_ERR_RANGE);
    cr_assert_eq(miser_batch_seq_position(b, 0), 40);
    /* a bad token id fails its item only */
    int32_t bad = 1 << 30;
    miser_batch_item c2[2] = {{.seq = 2, .ids = &bad, .n = 1, .want_logits = 1}, {.seq = 0, .ids = ids, .n = 1}};
    cr_assert_eq(miser_batch_step(b, c2, 2), MISER_OK);
    cr_assert_eq(c2[0].status, MISER_ERR_RANGE);
    cr_assert_eq(c2[1].status, MISER_OK);
    cr_assert_null(c2[1].logits); /* want_logits 0 */
    for (int s = 0; s < 3; s++) miser_batch_seq_release(b, s);
    cr_assert_eq(miser_kv_pool_blocks_used(pool), 0);
    cr_assert_eq(miser_kv_pool_blocks_reserved(pool), 0);
    cr_assert_eq(miser_kv_pool_blocks_free(pool), 6);
    miser_batch_free(b);
    cr_assert_eq(miser_mem_get(MISER_MEM_KV).current, kv0);
    miser_plan_free(p);
    miser_model_free(m);
}

Test(batch, unfused_attention_is_refused)
{
    miser_model *m;
    cr_assert_eq(miser_model_open(GPT2_TINY, &m), MISER_OK, "%s", miser_error_message());
    miser_plan *p;
    miser_compile_options co = {.pipeline = "naive", .max_context = 32};
    cr_assert_eq(miser_plan_compile(m, &co, &p), MISER_OK, "%s", miser_error_message());
    miser_batch *b = NULL;
    miser_batch_options bo = {.n_seqs = 2};
    cr_assert_eq(miser_batch_create(p, &bo, &b), MISER_ERR_UNSUPPORTED);
    cr_assert_null(b);
    cr_assert(strstr(miser_error_message(), "fused attention"), "%s", miser_error_message());
    miser_plan_free(p);
    co.pipeline = NULL;
    co.all_logits = 1;
    cr_assert_eq(miser_plan_compile(m, &co, &p), MISER_OK, "%s", miser_error_message());
    cr_assert_eq(miser_batch_create(p, &bo, &b), MISER_ERR_UNSUPPORTED);
    cr_assert(strstr(miser_error_message(), "last-token"), "%s", miser_error_message());
    miser_plan_free(p);
    miser_model_free(m);
}
