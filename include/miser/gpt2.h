/* The GPT-2 graph builder: emits the structure Keras builds (EinsumDense
 * attention projections whose kernels are views of the checkpoint's c_attn /
 * c_proj weights, einsum attention, Dense MLP, tied ReversibleEmbedding head).
 * Registered as "gpt2" in the architecture registry (src/model/gpt2.c);
 * callers normally go through miser_model_build (graph.h). */
#ifndef MISER_GPT2_H
#define MISER_GPT2_H

#include "miser/graph.h"
#include "miser/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Build the graph for `m` into an initialised graph `g` (see miser_graph_init:
 * t_max = most tokens per step, s_max = longest context). The graph outputs
 * the logits of the last position only ([1, 1, V]), or of every position
 * ([1, T, V]) when all_logits is set. Constants are views of the model's
 * mapping: the model must outlive the graph. */
miser_status miser_gpt2_build(miser_graph *g, const miser_model *m, int all_logits);

#ifdef __cplusplus
}
#endif
#endif
