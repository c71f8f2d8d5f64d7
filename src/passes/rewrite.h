/* Internal helpers shared by the compiler passes (not a public header).
 *
 * The graph is a topologically ordered node array, so a pass that inserts
 * nodes (einsum decomposition, fusions, per-consumer copies) cannot append
 * them at the end. Instead a pass walks the old nodes in order and emits the
 * new graph into a fresh array: `map[old]` is the new id of an old node's
 * value (or -1 for deleted nodes). Aliasing a node to another (no-op removal,
 * CSE, constant sharing) is just `map[old] = map[other]`. One walk is O(n)
 * and also compacts away MISER_OP_NONE nodes. */
#ifndef MISER_PASSES_REWRITE_H
#define MISER_PASSES_REWRITE_H

#include "miser/passes.h"

typedef struct miser_rw {
    miser_graph *g;
    miser_node *old;   /* the previous node array (owned until miser_rw_end) */
    int32_t n_old;
    int32_t *map;      /* old id -> new id, -1 when not emitted */
    int32_t *uses;     /* per old node: number of input slots referring to it */
    int32_t *user1;    /* per old node: its first user (-1 when none) */
} miser_rw;

/* Take the graph's nodes as `old`, leave g with an empty node array. On
 * failure the graph is unchanged. */
miser_status miser_rw_begin(miser_graph *g, miser_rw *r);
/* Emit node n (its inputs are NEW ids); shape inference runs. Returns the
 * new id or -1 (error set). */
int32_t miser_rw_emit(miser_rw *r, const miser_node *n);
/* Copy old node `old_id` with its inputs remapped; returns the new id. */
int32_t miser_rw_keep(miser_rw *r, int32_t old_id);
/* Finish: frees the old array and tables. With st != MISER_OK the old nodes
 * are put back (the partial new graph is dropped) and st is returned. */
miser_status miser_rw_end(miser_rw *r, miser_status st);

/* Skip through views that change nothing (identity transposes, reshapes
 * to the same shape) in the OLD graph. */
int32_t miser_rw_skip_noops(const miser_node *nodes, int32_t id);

/* 1 when the value of node id is known at compile time to be row-major
 * contiguous (non-view producers, and views that keep contiguity). */
int miser_pass_known_contiguous(const miser_graph *g, int32_t id);

/* Element strides for viewing a constant of shape/stride `in` with a new
 * concrete shape without copying (numpy's rule). 0 on success. */
int miser_pass_reshape_strides(int32_t in_nd, const int64_t *in_shape, const int64_t *in_stride, int32_t out_nd,
                               const int64_t *out_shape, int64_t *out_stride);

/* Release owned constant storage that no live CONST node refers to. */
void miser_pass_release_storage(miser_graph *g);

/* Set a node's name to "<base><suffix>" (truncated to fit). */
void miser_pass_name(miser_node *n, const char *base, const char *suffix);

#endif
