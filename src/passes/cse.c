/* Common-subexpression elimination: two nodes with the same op, the same
 * inputs and the same attributes compute the same value; the later one is
 * replaced by the earlier. Inputs are compared after earlier replacements,
 * so whole duplicated chains collapse in one walk. Nodes with side effects
 * or identity (INPUT, KV_WRITE, OUTPUT) are never merged; constants are
 * merged only when they are the very same view (content-equal constants are
 * share_constants' job). */
#include "rewrite.h"
#include "miser/alloc.h"

#include <string.h>

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

static uint64_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint64_t node_hash(const miser_node *n)
{
    uint64_t h = mix((uint64_t)n->op, (uint64_t)n->n_in);
    for (int k = 0; k < n->n_in; k++) h = mix(h, (uint64_t)n->in[k]);
    for (int k = 0; k < 4; k++) h = mix(h, (uint64_t)n->attr.i[k]);
    h = mix(h, fbits(n->attr.f[0]) | fbits(n->attr.f[1]) << 32);
    h = mix(h, (uint64_t)n->ndim);
    for (int k = 0; k < n->ndim; k++) h = mix(h, (uint64_t)n->shape[k]);
    if (n->op == MISER_OP_CONST) h = mix(h, (uint64_t)(uintptr_t)n->cst.data);
    return h;
}

static int equal(const miser_node *a, const miser_node *b)
{
    if (a->op != b->op || a->n_in != b->n_in || a->dtype != b->dtype || a->ndim != b->ndim) return 0;
    for (int k = 0; k < a->n_in; k++)
        if (a->in[k] != b->in[k]) return 0;
    if (memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim)) return 0;
    if (memcmp(a->attr.i, b->attr.i, sizeof a->attr.i) || fbits(a->attr.f[0]) != fbits(b->attr.f[0]) ||
        fbits(a->attr.f[1]) != fbits(b->attr.f[1]) || a->attr.ndim != b->attr.ndim)
        return 0;
    if (memcmp(a->attr.shape, b->attr.shape, sizeof(int64_t) * (size_t)a->attr.ndim) ||
        memcmp(a->attr.perm, b->attr.perm, sizeof(int32_t) * (size_t)a->attr.ndim))
        return 0;
    if (a->op == MISER_OP_EINSUM && strcmp(a->attr.eq, b->attr.eq)) return 0;
    if (a->op == MISER_OP_CONST)
        return a->cst.data == b->cst.data && a->cst.storage == b->cst.storage &&
               !memcmp(a->cst.stride, b->cst.stride, sizeof(int64_t) * (size_t)a->ndim);
    return 1;
}

miser_status miser_pass_cse(miser_graph *g, const miser_pass_options *o)
{
    (void)o;
    miser_rw r;
    miser_status st = miser_rw_begin(g, &r);
    if (st) return st;
    uint32_t cap = 64;
    while (cap < (uint32_t)r.n_old * 2u) cap <<= 1;
    int32_t *table = miser_malloc(MISER_MEM_COMPILE, sizeof(int32_t) * cap);
    uint64_t *hashes = miser_malloc(MISER_MEM_COMPILE, sizeof(uint64_t) * cap);
    if (!table || !hashes) st = MISER_ERR_NOMEM;
    else
        for (uint32_t k = 0; k < cap; k++) table[k] = -1;
    for (int32_t i = 0; i < r.n_old && !st; i++) {
        const miser_node *n = &r.old[i];
        if (n->op == MISER_OP_NONE) continue;
        if (n->op == MISER_OP_INPUT || n->op == MISER_OP_KV_WRITE || n->op == MISER_OP_OUTPUT) {
            if (miser_rw_keep(&r, i) < 0) st = MISER_ERR_INVALID;
            continue;
        }
        miser_node c = *n;
        for (int k = 0; k < c.n_in; k++) c.in[k] = r.map[n->in[k]];
        uint64_t h = node_hash(&c);
        uint32_t k = (uint32_t)h & (cap - 1);
        int32_t hit = -1;
        for (; table[k] >= 0; k = (k + 1) & (cap - 1))
            if (hashes[k] == h && equal(&g->nodes[table[k]], &c)) {
                hit = table[k];
                break;
            }
        if (hit >= 0) {
            r.map[i] = hit;
            continue;
        }
        int32_t id = miser_rw_keep(&r, i);
        if (id < 0) {
            st = MISER_ERR_INVALID;
            break;
        }
        table[k] = id;
        hashes[k] = h;
    }
    miser_free(table);
    miser_free(hashes);
    return miser_rw_end(&r, st);
}
