/* Constant sharing: constants that are equal — same dtype, same shape, same
 * content — become one node, so every consumer reads one copy. Identical
 * views (same storage, offset and strides) are recognised without reading
 * data. Otherwise a content hash is the filter: it covers the dtype, the
 * shape and a sample of the elements (the first 1024, 64 spread over the
 * tensor, the last), which costs a few pages per weight instead of reading
 * the whole checkpoint; a hash match is then confirmed element by element,
 * so sharing never depends on the hash being collision-free. The surviving
 * node keeps the hash in cst.hash. Owned storage left unreferenced (a
 * duplicate materialisation) is released. */
#include "rewrite.h"
#include "miser/alloc.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t esize(miser_dtype dt) { return miser_dtype_block(dt) > 1 ? 0 : miser_dtype_bytes(dt, 1); }

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

static int64_t numel(const miser_node *c)
{
    int64_t n = 1;
    for (int i = 0; i < c->ndim; i++) n *= c->shape[i];
    return n;
}

/* element e (row-major order of the view's shape) as raw bits */
static uint64_t elem_bits(const miser_node *c, int64_t e, size_t es)
{
    int64_t off = 0;
    for (int d = c->ndim - 1; d >= 0; d--) {
        off += (e % c->shape[d]) * c->cst.stride[d];
        e /= c->shape[d];
    }
    uint64_t v = 0;
    memcpy(&v, (const char *)c->cst.data + off * (int64_t)es, es);
    return v;
}

static uint64_t content_hash(const miser_node *c)
{
    uint64_t h = mix(0x6d69736572ULL, (uint64_t)c->dtype);
    for (int i = 0; i < c->ndim; i++) h = mix(h, (uint64_t)c->shape[i]);
    size_t es = esize(c->dtype);
    if (!es) return mix(h, (uint64_t)(uintptr_t)c->cst.data); /* q8_0: identical views only */
    int64_t n = numel(c);
    int64_t head = n < 256 ? n : 256;
    for (int64_t e = 0; e < head; e++) h = mix(h, elem_bits(c, e, es));
    return h;
}

static int same_view(const miser_node *a, const miser_node *b)
{
    return a->dtype == b->dtype && a->ndim == b->ndim && a->cst.data == b->cst.data &&
           !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) &&
           !memcmp(a->cst.stride, b->cst.stride, sizeof(int64_t) * (size_t)a->ndim);
}

static int same_content(const miser_node *a, const miser_node *b)
{
    if (a->dtype != b->dtype || a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim))
        return 0;
    if (same_view(a, b)) return 1;
    size_t es = esize(a->dtype);
    if (!es) return 0;
    int64_t n = numel(a);
    int64_t ia[MISER_MAX_DIMS] = {0};
    for (int64_t e = 0; e < n; e++) {
        int64_t oa = 0, ob = 0;
        for (int d = 0; d < a->ndim; d++) {
            oa += ia[d] * a->cst.stride[d];
            ob += ia[d] * b->cst.stride[d];
        }
        if (memcmp((const char *)a->cst.data + oa * (int64_t)es, (const char *)b->cst.data + ob * (int64_t)es, es))
            return 0;
        for (int d = a->ndim - 1; d >= 0; d--) {
            if (++ia[d] < a->shape[d]) break;
            ia[d] = 0;
        }
    }
    return 1;
}

/* Ask the kernel to start reading the pages the hashes will touch, all at
 * once: with a cold page cache the reads then overlap instead of costing
 * one disk round trip per constant. */
static void prefetch_heads(const miser_graph *g)
{
    long page = sysconf(_SC_PAGESIZE);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const miser_node *c = &g->nodes[i];
        size_t es = c->op == MISER_OP_CONST ? esize(c->dtype) : 0;
        if (!es) continue;
        uintptr_t a = (uintptr_t)c->cst.data & ~(uintptr_t)(page - 1);
        size_t len = (size_t)((uintptr_t)c->cst.data - a) + 256 * es;
        madvise((void *)a, len, MADV_WILLNEED);
    }
}

miser_status miser_pass_share_constants(miser_graph *g, const miser_pass_options *o)
{
    prefetch_heads(g);
    (void)o;
    miser_rw r;
    miser_status st = miser_rw_begin(g, &r);
    if (st) return st;
    uint32_t cap = 64;
    while (cap < (uint32_t)r.n_old * 2u) cap <<= 1;
    int32_t *table = miser_malloc(MISER_MEM_COMPILE, sizeof(int32_t) * cap); /* new ids of kept constants */
    if (!table) st = MISER_ERR_NOMEM;
    else
        for (uint32_t k = 0; k < cap; k++) table[k] = -1;
    for (int32_t i = 0; i < r.n_old && !st; i++) {
        const miser_node *n = &r.old[i];
        if (n->op == MISER_OP_NONE) continue;
        if (n->op == MISER_OP_CONST && r.uses[i] > 0) {
            uint64_t h = content_hash(n);
            uint32_t k = (uint32_t)h & (cap - 1);
            int32_t hit = -1;
            for (; table[k] >= 0; k = (k + 1) & (cap - 1)) {
                const miser_node *c = &g->nodes[table[k]];
                if (c->cst.hash == h && same_content(c, n)) {
                    hit = table[k];
                    break;
                }
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
            g->nodes[id].cst.hash = h;
            table[k] = id;
            continue;
        }
        if (miser_rw_keep(&r, i) < 0) st = MISER_ERR_INVALID;
    }
    miser_free(table);
    st = miser_rw_end(&r, st);
    if (!st) miser_pass_release_storage(g);
    return st;
}
