/* Constant folding of layout ops. A TRANSPOSE, RESHAPE, BROADCAST, SLICE or
 * CONTIGUOUS
 * of a constant becomes a new CONST node that views the SAME storage with
 * new strides: no bytes are copied and the dtype is kept (f16/bf16/q8_0 are
 * never widened). Only a reshape whose layout strides cannot express is
 * materialised (as is a CONTIGUOUS of a strided constant), once per distinct
 * source view (every consumer shares it),
 * into owned storage (MISER_MEM_CONSTANTS); storage no constant refers to
 * any more is released at the end.
 *
 * Naive mode (the `naive` pipeline) reproduces the buggy compiler on
 * purpose: every consumer of a folded chain gets its own freshly
 * materialised contiguous copy, in real memory counted in
 * g->materialized_bytes, so the cost of that design can be measured. */
#include "rewrite.h"
#include "miser/alloc.h"

#include <string.h>

static int foldable_op(miser_op op)
{
    return op == MISER_OP_TRANSPOSE || op == MISER_OP_RESHAPE || op == MISER_OP_BROADCAST || op == MISER_OP_SLICE ||
           op == MISER_OP_CONTIGUOUS;
}

static size_t elem_size(miser_dtype dt)
{
    return miser_dtype_block(dt) > 1 ? 0 : miser_dtype_bytes(dt, 1); /* q8_0, 4-bit blocks: views only */
}

/* dst (row-major) = the strided view; the last two dims are walked in
 * 32 x 32 tiles so a transposed source is read cache line by cache line. */
#define TILE 32
#define COPY_TILES(T)                                                                                                  \
    do {                                                                                                               \
        T *d = (T *)dst;                                                                                               \
        const T *s = (const T *)src;                                                                                   \
        for (int64_t r0 = 0; r0 < R; r0 += TILE)                                                                       \
            for (int64_t c0 = 0; c0 < Cn; c0 += TILE) {                                                                \
                int64_t r1 = r0 + TILE < R ? r0 + TILE : R, c1 = c0 + TILE < Cn ? c0 + TILE : Cn;                      \
                for (int64_t r = r0; r < r1; r++)                                                                      \
                    for (int64_t k = c0; k < c1; k++) d[o * R * Cn + r * Cn + k] = s[base + r * sr + k * sc];          \
            }                                                                                                          \
    } while (0)

static void copy_view(char *dst, const char *src, int nd, const int64_t *shape, const int64_t *stride, size_t es)
{
    int64_t R = nd >= 2 ? shape[nd - 2] : 1, Cn = nd >= 1 ? shape[nd - 1] : 1;
    int64_t sr = nd >= 2 ? stride[nd - 2] : 0, sc = nd >= 1 ? stride[nd - 1] : 0;
    int outer_nd = nd >= 2 ? nd - 2 : 0;
    int64_t outer = 1, idx[MISER_MAX_DIMS] = {0};
    for (int i = 0; i < outer_nd; i++) outer *= shape[i];
    for (int64_t o = 0; o < outer; o++) {
        int64_t base = 0;
        for (int i = 0; i < outer_nd; i++) base += idx[i] * stride[i];
        if (es == 4) COPY_TILES(uint32_t);
        else if (es == 2) COPY_TILES(uint16_t);
        else COPY_TILES(uint8_t);
        for (int i = outer_nd - 1; i >= 0; i--) {
            if (++idx[i] < shape[i]) break;
            idx[i] = 0;
        }
    }
}

/* A contiguous copy of constant c (new graph) in fresh owned storage.
 * Returns the storage index, or -1 with *unsupported for q8_0 views. */
static int32_t materialize(miser_graph *g, const miser_node *c, int *unsupported, const void **data_out)
{
    size_t es = elem_size(c->dtype);
    *unsupported = 0;
    if (!es) {
        *unsupported = 1;
        return -1;
    }
    uint64_t numel = 1;
    for (int i = 0; i < c->ndim; i++) numel *= (uint64_t)c->shape[i];
    char *dst = miser_malloc(MISER_MEM_CONSTANTS, numel ? numel * es : 1);
    if (!dst) return -1;
    copy_view(dst, c->cst.data, c->ndim, c->shape, c->cst.stride, es);
    int32_t s = miser_graph_add_storage(g, dst, numel * es, 1, c->name);
    if (s < 0) {
        miser_free(dst);
        return -1;
    }
    *data_out = dst;
    return s;
}

static void contiguous_strides(miser_node *n)
{
    int64_t st = 1;
    for (int i = n->ndim - 1; i >= 0; i--) {
        n->cst.stride[i] = st;
        st *= n->shape[i];
    }
}

/* cache of shared materialisations: source view -> storage (default mode) */
typedef struct {
    const void *data;
    miser_dtype dtype;
    int32_t ndim;
    int64_t shape[MISER_MAX_DIMS], stride[MISER_MAX_DIMS];
    int32_t storage;
    const void *copy;
} mat_entry;

static int same_view(const mat_entry *e, const miser_node *c)
{
    return e->data == c->cst.data && e->dtype == c->dtype && e->ndim == c->ndim &&
           !memcmp(e->shape, c->shape, sizeof(int64_t) * (size_t)c->ndim) &&
           !memcmp(e->stride, c->cst.stride, sizeof(int64_t) * (size_t)c->ndim);
}

/* Fold layout op `n` (old node, input already a new CONST id) into a CONST
 * node description `out`. Returns 1 when folded, 0 when left, -1 on error. */
static int fold(miser_graph *g, const miser_node *n, miser_node *out, mat_entry **cache, int *n_cache, int *cap_cache)
{
    const miser_node *c = &g->nodes[n->in[0]];
    size_t es = elem_size(c->dtype);
    miser_node v = *c;
    v.ndim = n->ndim;
    memset(v.shape, 0, sizeof v.shape);
    memset(v.cst.stride, 0, sizeof v.cst.stride);
    memcpy(v.shape, n->shape, sizeof(int64_t) * (size_t)n->ndim);
    v.cst.hash = 0;
    memcpy(v.name, n->name, sizeof v.name);
    for (int i = 0; i < n->ndim; i++)
        if (n->shape[i] < 0) return 0; /* symbolic: not a constant layout */
    switch (n->op) {
    case MISER_OP_TRANSPOSE:
        for (int i = 0; i < n->ndim; i++) v.cst.stride[i] = c->cst.stride[n->attr.perm[i]];
        break;
    case MISER_OP_SLICE: {
        int64_t ax = n->attr.i[0];
        memcpy(v.cst.stride, c->cst.stride, sizeof v.cst.stride);
        if (!es && n->attr.i[1] != 0) return 0;
        v.cst.data = (const char *)c->cst.data + n->attr.i[1] * c->cst.stride[ax] * (int64_t)es;
        break;
    }
    case MISER_OP_BROADCAST:
        for (int i = 0; i < n->ndim; i++) {
            int j = i - (n->ndim - c->ndim);
            v.cst.stride[i] = (j < 0 || (c->shape[j] == 1 && n->shape[i] != 1)) ? 0 : c->cst.stride[j];
        }
        break;
    case MISER_OP_RESHAPE:
        if (!miser_pass_reshape_strides(c->ndim, c->shape, c->cst.stride, n->ndim, n->shape, v.cst.stride)) break;
        /* not expressible as strides: one shared contiguous copy */
        /* fall through */
    case MISER_OP_CONTIGUOUS: {
        if (n->op == MISER_OP_CONTIGUOUS && miser_pass_known_contiguous(g, n->in[0])) {
            memcpy(v.cst.stride, c->cst.stride, sizeof v.cst.stride);
            break;
        }
        int32_t s = -1;
        const void *copy = NULL;
        for (int k = 0; k < *n_cache; k++)
            if (same_view(&(*cache)[k], c)) {
                s = (*cache)[k].storage;
                copy = (*cache)[k].copy;
            }
        if (s < 0) {
            int unsupported;
            s = materialize(g, c, &unsupported, &copy);
            if (s < 0) return unsupported ? 0 : -1;
            if (*n_cache == *cap_cache) {
                int nc = *cap_cache ? *cap_cache * 2 : 16;
                mat_entry *ne = miser_realloc(MISER_MEM_COMPILE, *cache, (size_t)nc * sizeof *ne);
                if (!ne) return -1;
                *cache = ne;
                *cap_cache = nc;
            }
            mat_entry *e = &(*cache)[(*n_cache)++];
            memset(e, 0, sizeof *e);
            e->data = c->cst.data;
            e->dtype = c->dtype;
            e->ndim = c->ndim;
            memcpy(e->shape, c->shape, sizeof(int64_t) * (size_t)c->ndim);
            memcpy(e->stride, c->cst.stride, sizeof(int64_t) * (size_t)c->ndim);
            e->storage = s;
            e->copy = copy;
        }
        v.cst.storage = s;
        v.cst.data = copy;
        contiguous_strides(&v);
        break;
    }
    default: return 0;
    }
    *out = v;
    return 1;
}

miser_status miser_pass_fold_constants(miser_graph *g, const miser_pass_options *o)
{
    int naive = o && o->naive;
    miser_rw r;
    miser_status st = miser_rw_begin(g, &r);
    if (st) return st;
    char *folded = miser_calloc(MISER_MEM_COMPILE, (size_t)r.n_old + 1, 1);
    mat_entry *cache = NULL;
    int n_cache = 0, cap_cache = 0;
    if (!folded) st = MISER_ERR_NOMEM;
    for (int32_t i = 0; i < r.n_old && !st; i++) {
        const miser_node *n = &r.old[i];
        if (n->op == MISER_OP_NONE) continue;
        if (foldable_op(n->op) && g->nodes[r.map[n->in[0]]].op == MISER_OP_CONST) {
            miser_node v, tmp = *n;
            tmp.in[0] = r.map[n->in[0]];
            int f = fold(g, &tmp, &v, &cache, &n_cache, &cap_cache);
            if (f < 0) {
                st = MISER_ERR_NOMEM;
                break;
            }
            if (f > 0) {
                int32_t id = miser_rw_emit(&r, &v);
                if (id < 0) {
                    st = MISER_ERR_INVALID;
                    break;
                }
                r.map[i] = id;
                folded[i] = 1;
                continue;
            }
        }
        if (naive && !foldable_op(n->op)) {
            /* the buggy design: each consumer of a folded chain gets its own copy */
            miser_node c = *n;
            for (int k = 0; k < c.n_in && !st; k++) {
                c.in[k] = r.map[n->in[k]];
                if (!folded[n->in[k]]) continue;
                const miser_node *src = &g->nodes[c.in[k]];
                int unsupported;
                const void *copy;
                int32_t s = materialize(g, src, &unsupported, &copy);
                if (s < 0) {
                    if (!unsupported) st = MISER_ERR_NOMEM;
                    continue;
                }
                miser_node m = *src;
                m.cst.storage = s;
                m.cst.data = copy;
                contiguous_strides(&m);
                miser_pass_name(&m, src->name, ".copy");
                int32_t id = miser_rw_emit(&r, &m);
                if (id < 0) st = MISER_ERR_INVALID;
                else c.in[k] = id;
            }
            if (st) break;
            int32_t id = miser_rw_emit(&r, &c);
            if (id < 0) st = MISER_ERR_INVALID;
            else r.map[i] = id;
            continue;
        }
        if (miser_rw_keep(&r, i) < 0) st = MISER_ERR_INVALID;
    }
    miser_free(folded);
    miser_free(cache);
    st = miser_rw_end(&r, st);
    if (!st) miser_pass_release_storage(g);
    return st;
}
