/* The graph IR: a model is a list of nodes in topological order, built by a
 * model builder (the registry's: src/model/gpt2_graph.c, src/model/llama.c), rewritten by compiler passes
 * (src/passes/) and run by the executor (src/runtime/).
 *
 * Shapes may use two symbols resolved at run time, so one compiled plan
 * serves the prompt prefill and every one-token decode step:
 *   MISER_DIM_T  tokens processed in this step (1..t_max)
 *   MISER_DIM_S  total positions visible to attention, past + T (1..s_max)
 * A symbolic dimension is always a whole entry of a shape (never a product).
 *
 * Values: every node produces one tensor. Activations are row-major and
 * contiguous unless the node is a view (MISER_NODE_VIEW: RESHAPE, TRANSPOSE,
 * SLICE, LAST_TOKEN, KV_WRITE's cache view), whose element strides derive
 * from its input. Constants are strided views into weight storage (the
 * checkpoint mapping or one buffer materialised by the compiler); a layout
 * change of a constant is a new view of the same storage, never a copy. */
#ifndef MISER_GRAPH_H
#define MISER_GRAPH_H

#include "miser/core.h"
#include "miser/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MISER_DIM_T (-1)
#define MISER_DIM_S (-2)
#define MISER_MAX_INPUTS 4

typedef enum miser_op {
    MISER_OP_NONE = 0,   /* a deleted node (removed by DCE's compaction) */
    MISER_OP_INPUT,      /* attr.i[0]: MISER_INPUT_TOKENS or MISER_INPUT_POSITIONS; i32 [1, T] */
    MISER_OP_CONST,      /* weight view: cst.* */
    MISER_OP_GATHER,     /* in0 table [V, C] (const), in1 ids i32 [1, T] -> [1, T, C] */
    MISER_OP_ADD,        /* in0 + in1, numpy broadcasting (right-aligned) */
    MISER_OP_MUL,        /* in0 * in1, numpy broadcasting */
    MISER_OP_SCALE,      /* in0 * attr.f[0] */
    MISER_OP_LAYERNORM,  /* in0 x [..., C], in1 gamma [C], in2 beta [C]; attr.f[0] eps */
    MISER_OP_GELU,       /* tanh approximation (GPT-2's gelu_new) */
    MISER_OP_SOFTMAX,    /* over the last axis; attr.f[0] scale applied first; attr.i[0] causal:
                            input [.., T, S], row t sees s <= S - T + t */
    MISER_OP_EINSUM,     /* attr.eq: two operands (or one), any strides */
    MISER_OP_MATMUL,     /* in0 [b.., M, K] x in1 [b.., K, N] -> [b.., M, N]; batch dims broadcast;
                            operands may be strided views */
    MISER_OP_LINEAR,     /* in0 x [.., K] (contiguous rows) x in1 W [K, N] (2-D strided const)
                            (+ in2 bias [N]) -> [.., N]; attr.i[0] activation (MISER_ACT_*) */
    MISER_OP_RESHAPE,    /* view; attr.shape (new shape; may contain symbols) */
    MISER_OP_TRANSPOSE,  /* attr.perm: out dim i = in dim perm[i]; view of the input */
    MISER_OP_SLICE,      /* view; attr.i[0] axis, attr.i[1] start, attr.i[2] length */
    MISER_OP_BROADCAST,  /* view with stride 0 on expanded dims; attr.shape */
    MISER_OP_CONTIGUOUS, /* copy of a (strided) view into row-major order */
    MISER_OP_KV_WRITE,   /* in0 new [1, T, H, D]; attr.i[0] layer, attr.i[1] 0=K 1=V;
                            writes rows [S-T, S) of the cache; output: view [1, S, H, D] */
    MISER_OP_LAST_TOKEN, /* view: [1, T, C] -> [1, 1, C], the last position */
    MISER_OP_ATTENTION,  /* fused causal attention: in0 q [1, T, H, D], in1 K [1, S, KV, D],
                            in2 V [1, S, KV, D] (row-strided views allowed) -> [1, T, H, D];
                            KV divides H: query head h reads KV head h / (H / KV)
                            (grouped-query attention); attr.f[0] scale */
    MISER_OP_OUTPUT,     /* marks in0 as a graph output (logits); no data of its own */
    MISER_OP_RMSNORM,    /* in0 x [..., C], in1 gamma [C]; attr.f[0] eps:
                            x / sqrt(mean(x^2) + eps) * gamma */
    MISER_OP_ROPE,       /* rotary embedding, Hugging Face's rotate-half convention:
                            in0 x [1, T, H, D] (rows may be strided, [H, D] contiguous),
                            in1 positions i32 [1, T] -> [1, T, H, D]; frequencies from
                            the graph's `rope` and head_dim */
    MISER_OP_SILU,       /* x * sigmoid(x) */
    MISER_OP_SWIGLU,     /* silu(in0) * in1, same shapes (fuse's MUL(SILU(gate), up)) */
    MISER_OP_LINEARS,    /* several linears of one input in one dispatch (group_linears.c):
                            in0 x [.., K] (evenly strided rows), in1..in3 W_j [K, N_j] (2-D
                            strided consts in the dot layout, stride[0] == 1; each read in
                            place, never concatenated) -> [.., sum N_j], W_j's outputs at
                            columns sum_{i<j} N_i; attr.i[0] epilogue: MISER_LINEARS_PLAIN, or
                            MISER_LINEARS_SWIGLU (two weights of one N: columns [0, N) become
                            silu(x W_0) * (x W_1), [N, 2N) keep x W_1) */
    MISER_OP_COUNT
} miser_op;

enum { MISER_INPUT_TOKENS = 0, MISER_INPUT_POSITIONS = 1 };
enum { MISER_ACT_NONE = 0, MISER_ACT_GELU = 1 };
enum { MISER_LINEARS_PLAIN = 0, MISER_LINEARS_SWIGLU = 1 };

/* node flags */
#define MISER_NODE_VIEW 1u      /* output aliases its first input (or the KV cache) */
#define MISER_NODE_INPLACE 2u   /* planner let the output reuse in0's buffer */

typedef struct miser_node {
    miser_op op;
    uint32_t flags;
    int32_t n_in;
    int32_t in[MISER_MAX_INPUTS];   /* node ids */
    miser_dtype dtype;              /* of the output */
    int32_t ndim;
    int64_t shape[MISER_MAX_DIMS];  /* may contain MISER_DIM_T / MISER_DIM_S */
    struct {
        int64_t i[4];
        float f[2];
        int64_t shape[MISER_MAX_DIMS];
        int32_t perm[MISER_MAX_DIMS];
        int32_t ndim;                /* of attr.shape / attr.perm */
        char eq[64];                 /* einsum equation */
    } attr;
    struct {                         /* MISER_OP_CONST only */
        const void *data;            /* first element of the view */
        int64_t stride[MISER_MAX_DIMS]; /* element strides; 0 = broadcast */
        int32_t storage;             /* index into graph storage table */
        uint64_t hash;               /* content hash (0 = not computed) */
    } cst;
    char name[48];                   /* for dumps and errors: "h.3.attn.q" */
    /* set by memory planning */
    uint64_t offset;                 /* byte offset in the activation arena */
    uint64_t bytes;                  /* worst-case bytes (0 for views/consts) */
} miser_node;

/* Where constant data lives. Mapped storage belongs to the model; owned
 * storage was materialised by the compiler (miser_malloc, MISER_MEM_CONSTANTS)
 * and is freed with the graph, or earlier when no constant refers to it. */
typedef struct miser_storage {
    const void *base;
    uint64_t bytes;
    int owned;
    char name[64];
} miser_storage;

typedef struct miser_graph {
    miser_node *nodes;
    int32_t n_nodes, cap_nodes;
    miser_storage *storage;
    int32_t n_storage, cap_storage;
    int64_t t_max, s_max;            /* worst-case symbols, for planning */
    uint64_t arena_bytes;            /* set by memory planning */
    uint64_t materialized_bytes;     /* bytes of constants the compiler created */
    /* facts the executor needs (set by the builder): the KV cache holds
     * n_layer x [capacity, n_kv_head, head_dim] per K and V; n_kv_head 0
     * means n_head (graphs built before grouped-query attention) */
    int64_t n_layer, n_head, head_dim, n_kv_head;
    miser_rope_config rope;          /* for MISER_OP_ROPE nodes */
    miser_status last_error;         /* status of the last failed constructor */
} miser_graph;

miser_status miser_graph_init(miser_graph *g, int64_t t_max, int64_t s_max);
void miser_graph_free(miser_graph *g);   /* frees owned storage too; NULL ok */

/* Append a node (copied); returns its id or -1 (error set). */
int32_t miser_graph_add(miser_graph *g, const miser_node *n);
/* Register constant storage; returns its index or -1. */
int32_t miser_graph_add_storage(miser_graph *g, const void *base, uint64_t bytes, int owned,
                                const char *name);

/* Convenience constructors used by builders and passes. All return a node id
 * or -1 with the error message set; shape inference happens inside. */
int32_t miser_g_input(miser_graph *g, int kind, const char *name);
int32_t miser_g_const(miser_graph *g, const miser_tensor_info *t, const char *name);
/* A strided view of constant `c` (or of any constant storage). */
int32_t miser_g_const_view(miser_graph *g, int32_t c, int64_t elem_offset, int32_t ndim,
                           const int64_t *shape, const int64_t *stride, const char *name);
int32_t miser_g_op(miser_graph *g, miser_op op, int32_t n_in, const int32_t *in, const char *name);
int32_t miser_g_einsum(miser_graph *g, const char *eq, int32_t a, int32_t b, const char *name);
int32_t miser_g_reshape(miser_graph *g, int32_t x, int32_t ndim, const int64_t *shape, const char *name);
int32_t miser_g_transpose(miser_graph *g, int32_t x, int32_t ndim, const int32_t *perm, const char *name);
int32_t miser_g_slice(miser_graph *g, int32_t x, int32_t axis, int64_t start, int64_t len, const char *name);

/* Build the graph of `m`'s architecture (the registry entry its config.json
 * selected: miser_gpt2_build, the Llama builder, ...) into an initialised
 * graph: t_max = most tokens per step, s_max = longest context. Logits of
 * the last position ([1, 1, V]) or of every position ([1, T, V]) with
 * all_logits. Constants are views of the model's mappings. */
miser_status miser_model_build(miser_graph *g, const miser_model *m, int all_logits);

/* Recompute a node's output dtype/shape from its inputs and attributes
 * (used after passes rewrite a node). */
miser_status miser_graph_infer(miser_graph *g, int32_t id);
/* Check structural invariants: inputs precede users, shapes consistent. */
miser_status miser_graph_verify(const miser_graph *g);

/* Counters for `miser inspect`. */
typedef struct miser_graph_stats {
    int32_t nodes, einsums, einsums_const, consts;
    uint64_t const_bytes;        /* sum over CONST nodes of their view's bytes */
    uint64_t unique_const_bytes; /* bytes of distinct storage actually referenced */
    uint64_t materialized_bytes; /* owned storage the compiler created */
    uint64_t arena_bytes;
} miser_graph_stats;
miser_graph_stats miser_graph_get_stats(const miser_graph *g);

const char *miser_op_name(miser_op op);
/* Number of elements of a node's worst-case shape (symbols at t_max/s_max). */
uint64_t miser_graph_numel_max(const miser_graph *g, int32_t id);
/* Human-readable text dump, one node per line. */
void miser_graph_dump(const miser_graph *g, void *file /* FILE* */);
/* Graphviz DOT dump. */
void miser_graph_dump_dot(const miser_graph *g, void *file /* FILE* */);

/* Einsum equations: parse and resolve against operand ranks. */
typedef struct miser_einsum {
    int32_t n_ops;                   /* 1 or 2 */
    int32_t rank[2], out_rank;
    char labels[2][MISER_MAX_DIMS];  /* per operand dim: a label char */
    char out[MISER_MAX_DIMS];
} miser_einsum;
/* Parse `eq` for operands of the given ranks; handles implicit output
 * (labels appearing once, sorted) and "..." (expanded to upper-case labels).
 * Errors name the problem (MISER_ERR_INVALID). */
miser_status miser_einsum_parse(const char *eq, int32_t n_ops, const int32_t *ranks, miser_einsum *out);

#ifdef __cplusplus
}
#endif
#endif
